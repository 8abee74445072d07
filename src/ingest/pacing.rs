//! How background writers (webhook fan-out, the search indexer) give way to
//! intake: while mail is being committed they hold back, for at most a
//! while, so the database's writer serves intake first.

use std::time::{Duration, Instant};

use super::IntakeHealth;

/// What one round of a background writer should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// No mail was committed since the last round: full speed.
    Quiet,
    /// Mail is arriving, and has been for less than the longest deferral.
    Defer,
    /// Mail has been arriving for longer than that: catch up, gently.
    Busy,
}

/// Watches intake's commit count from round to round.
pub struct Pacing {
    intake: Option<IntakeHealth>,
    commits: Option<u64>,
    since: Option<Instant>,
    max_defer: Duration,
}

impl Pacing {
    /// Without `intake` every round is [`Pace::Quiet`].
    pub fn new(intake: Option<IntakeHealth>, max_defer: Duration) -> Self {
        let commits = intake.as_ref().map(IntakeHealth::commits);
        Self {
            intake,
            commits,
            since: None,
            max_defer,
        }
    }

    /// This round's pace: whether intake committed since the last call, and
    /// for how long that has gone on.
    pub fn round(&mut self) -> Pace {
        let now = self.intake.as_ref().map(IntakeHealth::commits);
        if std::mem::replace(&mut self.commits, now) == now {
            self.since = None;
            return Pace::Quiet;
        }
        if self.since.get_or_insert_with(Instant::now).elapsed() < self.max_defer {
            Pace::Defer
        } else {
            Pace::Busy
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_defer_then_busy_then_quiet() {
        let health = IntakeHealth::default();
        let mut pacing = Pacing::new(Some(health.clone()), Duration::from_millis(30));
        assert_eq!(pacing.round(), Pace::Quiet);
        health.committed();
        assert_eq!(pacing.round(), Pace::Defer);
        std::thread::sleep(Duration::from_millis(40));
        health.committed();
        assert_eq!(pacing.round(), Pace::Busy);
        assert_eq!(pacing.round(), Pace::Quiet);
        health.committed();
        assert_eq!(pacing.round(), Pace::Defer, "a new burst defers again");
        assert_eq!(Pacing::new(None, Duration::ZERO).round(), Pace::Quiet);
    }
}
