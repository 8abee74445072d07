//! Decide: what a message does in one pipeline, as a pure function of what
//! was looked up. `process` gathers the facts (the first thread key that
//! found a record, whether the sender is on it) and applies the decision;
//! every rule about joining, refusing, creating and reopening is here.
//!
//! Before any pipeline, [`judge`] decides for the whole message, in order:
//! a blocked sender is quarantined (unless released), so is a DMARC failure
//! or an ambiguous From where an alias enforces DMARC; our own mail coming
//! back and complaints are ignored (a complaint marks its contact); a hard
//! bounce marks its recipients' contacts and goes on; the contact is the
//! From, else the envelope sender, never a role address.
//!
//! Then per pipeline, in order:
//! 1. A message that failed DMARC, for an alias that checks senders, never
//!    joins a record: it starts a new one, related to the record it named.
//! 2. A thread named by headers or subject (not by a reply token), from a
//!    sender who is not on the record, does not silently join it when
//!    `[processing] untrusted_thread = "related"` (or the From is
//!    ambiguous): a new record, related to the named one. People only;
//!    machine mail is not held to it.
//! 3. An auto-reply or a bounce that belongs to no thread creates nothing.
//! 4. No thread: a new record in the pipeline's first open stage.
//! 5. A person's message to a record that has sat in a closed stage for
//!    longer than the alias's `follow_up_days` starts a new record, related
//!    to the old one, which stays closed.
//! 6. A thread: the message joins the record, and when the record sits in
//!    a closed stage that the alias's reopen rules cover, and the message
//!    is a person's, the record moves to the rule's open stage.

use uuid::Uuid;

use super::classify::Class;
use super::outcome::{IgnoreReason, Outcome, QuarantineReason};
use super::thread::{FOLLOW_UP_RULE, NEW_RECORD_RULE, RELATED_RECORD_RULE, ThreadKey};
use crate::config::UntrustedThread;
use crate::domain::{AliasEntry, BlockList, Dmarc, PipelineEntry, is_role_address, reopen_target};
use crate::store::{ContactMark, RecordState};

/// What is known of a message before it meets any pipeline.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub class: &'a Class,
    /// The From address and display name, as parsed.
    pub from: Option<(&'a str, &'a str)>,
    /// The From names several addresses or none.
    pub from_ambiguous: bool,
    /// MAIL FROM as received, and as a valid address.
    pub envelope_from: Option<&'a str>,
    pub envelope_sender: Option<&'a str>,
    /// An operator released it from quarantine.
    pub released: bool,
    /// The DMARC verdict believed for its source, if any.
    pub dmarc: Option<Dmarc>,
    /// One of its aliases enforces DMARC.
    pub enforced: bool,
}

/// What to do with the whole message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// An outcome for the message; no pipeline sees it.
    Stop { outcome: Outcome, why: String },
    /// On to its pipelines, with its contact.
    Go {
        contact: Option<(&'a str, &'a str)>,
        /// It failed DMARC (each alias's policy says what that means).
        dmarc_failed: bool,
    },
}

/// A verdict and the contacts it marks (complained, hard-bounced).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement<'a> {
    pub verdict: Verdict<'a>,
    pub marks: Vec<(String, ContactMark)>,
}

/// Decides for the whole message, before its pipelines.
pub fn judge<'a>(message: Message<'a>, blocked: &BlockList) -> Judgement<'a> {
    let stop = |outcome, why: &str| Judgement {
        verdict: Verdict::Stop {
            outcome,
            why: why.to_owned(),
        },
        marks: Vec::new(),
    };
    let from = message.from.map(|(address, _)| address);
    let blocks = |a: Option<&str>| a.is_some_and(|a| blocked.blocks_str(a));
    if !message.released && (blocks(from) || blocks(message.envelope_from)) {
        return stop(
            Outcome::Quarantined(QuarantineReason::Blocked),
            "the sender is blocked",
        );
    }
    let dmarc_failed = message.dmarc == Some(Dmarc::Fail);
    if dmarc_failed && !message.released && message.enforced {
        return stop(
            Outcome::Quarantined(QuarantineReason::DmarcFail),
            "DMARC failed for an alias that enforces it",
        );
    }
    // RFC 7489 §6.6.1: a From with several addresses, or none, has no DMARC
    // verdict that could vouch for it.
    if message.from_ambiguous && !message.released && message.enforced {
        return stop(
            Outcome::Quarantined(QuarantineReason::AmbiguousFrom),
            "the From names several addresses or none, for an alias that enforces DMARC",
        );
    }
    let mut marks = Vec::new();
    match message.class {
        Class::Loop => {
            return stop(
                Outcome::Ignored(IgnoreReason::Loop),
                "our own mail came back",
            );
        }
        Class::Complaint { about } => {
            let why = match about {
                Some(a) => format!("a complaint (feedback report) about mail to {a}"),
                None => "a complaint (feedback report) naming no address".into(),
            };
            if let Some(address) = about {
                marks.push((address.to_ascii_lowercase(), ContactMark::Complained));
            }
            return Judgement {
                verdict: Verdict::Stop {
                    outcome: Outcome::Ignored(IgnoreReason::Complaint),
                    why,
                },
                marks,
            };
        }
        Class::Bounce(bounce) => {
            for r in bounce.recipients.iter().filter(|r| r.hard) {
                let status = r.status.clone().unwrap_or_else(|| "5.0.0".into());
                marks.push((r.address.clone(), ContactMark::Bounced { status }));
            }
        }
        Class::Normal | Class::AutoReply | Class::List | Class::Bulk => {}
    }
    let contact = message
        .from
        .or(message.envelope_sender.map(|a| (a, "")))
        .filter(|(address, _)| !is_role_address(address));
    Judgement {
        verdict: Verdict::Go {
            contact,
            dmarc_failed,
        },
        marks,
    }
}

/// What is known of a message in one pipeline.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub class: &'a Class,
    /// The From names several addresses or none.
    pub from_ambiguous: bool,
    /// It failed DMARC and the alias checks senders (`monitor`, `enforce`).
    pub unauthenticated: bool,
    /// The first thread key that found a record here, with the record.
    pub hit: Option<(ThreadKey, RecordState)>,
    /// Whether the sender is on the hit record, when
    /// [`must_check_sender`] asked.
    pub sender_on_record: Option<bool>,
    /// The time the decision is made at (for the follow-up window).
    pub now: chrono::DateTime<chrono::Utc>,
}

/// The pipeline, alias and policy a message meets.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub pipeline: &'a PipelineEntry,
    pub alias: &'a AliasEntry,
    pub untrusted_thread: UntrustedThread,
}

/// What to do with the message in this pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing is created.
    Ignore(IgnoreReason),
    /// A new record in `stage_id`, linked to `related` when a thread was
    /// refused, or following up `follow_up_of` (closed too long ago).
    Create {
        stage_id: Uuid,
        related: Option<Uuid>,
        follow_up_of: Option<RecordState>,
    },
    /// The message joins `record`, moving it to `reopen_to` if set.
    Append {
        record: RecordState,
        reopen_to: Option<Uuid>,
    },
}

/// Why a thread a message named was not joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Rule 1: it failed DMARC.
    DmarcFail,
    /// Rule 2: its sender is not on the record.
    NotAParticipant,
}

/// A decision and how it was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The message's `thread_rule`: the key's rule, `related` or `new`.
    pub rule: &'static str,
    /// The message's `thread_value`: what the key matched.
    pub value: Option<String>,
    /// A thread named and refused: why, the record's number, the key's rule.
    pub refused: Option<(Refusal, i64, &'static str)>,
}

/// The pipeline has no open stage for a new record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pipeline {0} has no open stage")]
pub struct NoOpenStage(pub String);

/// Whether rule 2 applies, so the sender must be looked up on the record.
pub fn must_check_sender(facts: &Facts<'_>, untrusted_thread: UntrustedThread) -> bool {
    match &facts.hit {
        Some((key, _)) => {
            !facts.unauthenticated
                && !matches!(key, ThreadKey::Token(_))
                && (untrusted_thread == UntrustedThread::Related || facts.from_ambiguous)
                && facts.class.is_person()
        }
        None => false,
    }
}

/// Decides what the message does in this pipeline.
///
/// # Errors
/// A new record is due and the pipeline has no open stage.
pub fn decide(facts: Facts<'_>, rules: Rules<'_>) -> Result<Decision, NoOpenStage> {
    let check = must_check_sender(&facts, rules.untrusted_thread);
    let mut hit = facts.hit;
    let mut related: Option<(ThreadKey, Uuid)> = None;
    let mut refused = None;
    if let Some((key, record)) = &hit {
        let refusal = if facts.unauthenticated {
            Some(Refusal::DmarcFail)
        } else if check && facts.sender_on_record != Some(true) {
            Some(Refusal::NotAParticipant)
        } else {
            None
        };
        if let Some(why) = refusal {
            refused = Some((why, record.number, key.rule()));
            related = Some((key.clone(), record.id));
            hit = None;
        }
    }
    // Rule 5: a record closed too long ago is followed up, not reopened.
    let mut follow_up_of = None;
    if let Some((key, record)) = &hit
        && facts.class.is_person()
        && past_follow_up(rules, record, facts.now)
    {
        related = Some((key.clone(), record.id));
        follow_up_of = Some(record.clone());
        hit = None;
    }
    let (rule, value) = match (&hit, &related) {
        (Some((key, _)), _) => (key.rule(), Some(key.value())),
        (None, Some((key, _))) => (
            if follow_up_of.is_some() {
                FOLLOW_UP_RULE
            } else {
                RELATED_RECORD_RULE
            },
            Some(format!("{}: {}", key.rule(), key.value())),
        ),
        (None, None) => (NEW_RECORD_RULE, None),
    };
    let action = match hit {
        None => match facts.class {
            Class::AutoReply => Action::Ignore(IgnoreReason::AutoReply),
            Class::Bounce(_) => Action::Ignore(IgnoreReason::Bounce),
            _ => Action::Create {
                stage_id: rules
                    .pipeline
                    .first_open_stage()
                    .ok_or_else(|| NoOpenStage(rules.pipeline.name.clone()))?
                    .id,
                related: related.map(|(_, id)| id),
                follow_up_of,
            },
        },
        Some((_, record)) => {
            let reopen_to = reopen_target(
                rules.pipeline,
                rules.alias,
                record.stage_id,
                facts.class.is_automatic(),
            );
            Action::Append { record, reopen_to }
        }
    };
    Ok(Decision {
        action,
        rule,
        value,
        refused,
    })
}

/// Whether `record` has sat in a closed stage for longer than the alias's
/// follow-up window. A record whose stage time is unknown is not held to it.
fn past_follow_up(
    rules: Rules<'_>,
    record: &RecordState,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let Some(days) = rules.alias.follow_up_days else {
        return false;
    };
    let closed = rules
        .pipeline
        .stage(record.stage_id)
        .is_some_and(|s| s.kind == crate::domain::StageKind::Closed);
    closed
        && record
            .stage_since
            .is_some_and(|since| now - since > chrono::Duration::days(i64::from(days)))
}

#[cfg(test)]
mod tests;
