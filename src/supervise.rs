//! Running parts under watch. Every long-running task of the service is
//! started through a [`Supervisor`]: a part that may start over (the
//! processor, an IMAP poller, the outbox sender) is restarted with backoff
//! when it panics or ends on its own; a vital part (the intake writer, the
//! SMTP and HTTP servers) that ends before it was told to stops the whole
//! service, which then exits non-zero. Never a silent half-alive process:
//! [`Health`] shows each part's state, and `/healthz` answers from it.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a part is doing now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PartState {
    /// Started and not known to have died.
    Running,
    /// Died; waiting out its backoff before starting again.
    Restarting,
    /// A vital part died: the service is stopping.
    Failed,
    /// Ended because it was told to.
    Stopped,
}

/// One part's line on the health board.
#[derive(Debug, Clone, Serialize)]
pub struct PartStatus {
    /// `intake`, `processor`, `imap:ACCOUNT/FOLDER`, …
    pub name: String,
    pub state: PartState,
    /// How often it was started again after dying.
    pub restarts: u32,
    /// Why it last died.
    pub last_error: Option<String>,
    /// When `state` last changed.
    pub since: DateTime<Utc>,
}

/// The state of every supervised part, shared with `/healthz`.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<BTreeMap<String, PartStatus>>>);

impl Health {
    /// Every part, by name.
    pub fn parts(&self) -> Vec<PartStatus> {
        self.with(|parts| parts.values().cloned().collect())
    }

    /// No part is restarting or failed.
    pub fn all_running(&self) -> bool {
        self.with(|parts| {
            parts
                .values()
                .all(|p| matches!(p.state, PartState::Running | PartState::Stopped))
        })
    }

    fn set(&self, name: &str, state: PartState, error: Option<String>) {
        self.with(|parts| {
            let part = parts.entry(name.to_owned()).or_insert_with(|| PartStatus {
                name: name.to_owned(),
                state,
                restarts: 0,
                last_error: None,
                since: Utc::now(),
            });
            if state == PartState::Running && part.state == PartState::Restarting {
                part.restarts = part.restarts.saturating_add(1);
            }
            part.state = state;
            part.since = Utc::now();
            if error.is_some() {
                part.last_error = error;
            }
        });
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, PartStatus>) -> T) -> T {
        f(&mut lock(&self.0))
    }
}

/// Every writer here leaves its value whole, so a poisoned lock still holds a valid one.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts parts and watches them.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    health: Health,
    fatal: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
}

/// The first and the longest wait before a restart.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A part that ran this long before dying starts its backoff over.
const STEADY: Duration = Duration::from_secs(300);

impl Supervisor {
    /// The board `/healthz` reads.
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Fires when a vital part died: the service must stop.
    pub fn fatal(&self) -> CancellationToken {
        self.fatal.clone()
    }

    /// Why the service must stop, once a vital part died.
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }

    /// Runs `make()` until `stop` fires, starting it again (after a backoff
    /// that doubles up to a minute) whenever it panics or ends on its own.
    pub fn restartable<F, Fut>(
        &self,
        name: &str,
        stop: CancellationToken,
        make: F,
    ) -> JoinHandle<()>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let health = self.health.clone();
        let name = name.to_owned();
        health.set(&name, PartState::Running, None);
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                let started = Instant::now();
                let ended = tokio::spawn(make()).await;
                if stop.is_cancelled() {
                    health.set(&name, PartState::Stopped, None);
                    return;
                }
                let why = match ended {
                    Ok(()) => "ended on its own".to_owned(),
                    Err(err) => why_ended(err),
                };
                failures = if started.elapsed() > STEADY {
                    1
                } else {
                    failures.saturating_add(1)
                };
                let wait = backoff(failures);
                tracing::error!(part = %name, error = %why, retry_in_ms = wait.as_millis(), "part_died");
                health.set(&name, PartState::Restarting, Some(why));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => {
                        health.set(&name, PartState::Stopped, None);
                        return;
                    }
                }
                tracing::info!(part = %name, "part_restarted");
                health.set(&name, PartState::Running, None);
            }
        })
    }

    /// Runs a vital part: if it ends before `stop` fires, fails, or
    /// panics, the service stops (see [`Supervisor::fatal`]).
    pub fn vital<Fut>(&self, name: &str, stop: CancellationToken, part: Fut) -> JoinHandle<()>
    where
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let this = self.clone();
        let name = name.to_owned();
        this.health.set(&name, PartState::Running, None);
        tokio::spawn(async move {
            let why = match tokio::spawn(part).await {
                Ok(Ok(())) if stop.is_cancelled() => {
                    this.health.set(&name, PartState::Stopped, None);
                    return;
                }
                Ok(Ok(())) => "ended on its own".to_owned(),
                Ok(Err(err)) => err,
                Err(err) => why_ended(err),
            };
            tracing::error!(part = %name, error = %why, "vital_part_died; stopping the service");
            this.health.set(&name, PartState::Failed, Some(why.clone()));
            lock(&this.failure).get_or_insert(format!("{name}: {why}"));
            this.fatal.cancel();
        })
    }
}

/// Why a task ended with a [`JoinError`](tokio::task::JoinError): its
/// panic message, or that it was cancelled.
pub fn why_ended(err: tokio::task::JoinError) -> String {
    if !err.is_panic() {
        return "cancelled".into();
    }
    let message = panic_message(&*err.into_panic());
    format!("panicked: {}", message.as_deref().unwrap_or("a panic"))
}

/// The message a panic was raised with, when it was a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
}

fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_part_that_dies_is_restarted_with_backoff_and_shows_it() {
        let supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        let starts = Arc::new(AtomicU32::new(0));
        let (counted, told) = (Arc::clone(&starts), stop.clone());
        let task = supervisor.restartable("processor", stop.clone(), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let told = told.clone();
            async move {
                if n < 2 {
                    panic!("boom {n}");
                }
                told.cancelled().await;
            }
        });
        // First death: restarting, with the panic's message.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let part = &supervisor.health().parts()[0];
        assert_eq!(part.state, PartState::Restarting);
        assert_eq!(part.last_error.as_deref(), Some("panicked: boom 0"));
        assert!(!supervisor.health().all_running());
        // 0.5 s, then 1 s of backoff, then it stays up.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let part = &supervisor.health().parts()[0];
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        assert_eq!((part.state, part.restarts), (PartState::Running, 2));
        assert!(supervisor.health().all_running());
        assert!(!supervisor.fatal().is_cancelled());
        stop.cancel();
        task.await.unwrap();
        assert_eq!(supervisor.health().parts()[0].state, PartState::Stopped);
    }

    #[tokio::test]
    async fn a_vital_part_that_ends_unasked_stops_the_service() {
        let supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        supervisor
            .vital("intake", stop.clone(), async { Ok(()) })
            .await
            .unwrap();
        assert!(supervisor.fatal().is_cancelled());
        assert_eq!(
            supervisor.failure().as_deref(),
            Some("intake: ended on its own")
        );
        assert_eq!(supervisor.health().parts()[0].state, PartState::Failed);
        let failed = Supervisor::default();
        failed
            .vital("http", CancellationToken::new(), async {
                Err("address in use".into())
            })
            .await
            .unwrap();
        assert_eq!(failed.failure().as_deref(), Some("http: address in use"));

        // Told to stop first: a normal end.
        let calm = Supervisor::default();
        let stop = CancellationToken::new();
        stop.cancel();
        calm.vital("smtp", stop, async { Ok(()) }).await.unwrap();
        assert!(!calm.fatal().is_cancelled());
        assert_eq!(calm.health().parts()[0].state, PartState::Stopped);
    }

    #[tokio::test]
    async fn a_vital_panic_is_fatal_even_while_stopping() {
        let supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        stop.cancel();
        supervisor
            .vital("intake", stop, async { panic!("disk on fire") })
            .await
            .unwrap();
        assert_eq!(
            supervisor.failure().as_deref(),
            Some("intake: panicked: disk on fire")
        );
    }

    #[test]
    fn backoff_doubles_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
