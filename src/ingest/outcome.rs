//! Outcomes: what processing made of a stored message, as written on its row.
//!
//! Statuses are a closed set: `pending`, `processed`, `ignored`,
//! `quarantined`, `failed`.

use serde::Serialize;

use super::classify::FailedRecipient;
use crate::store::OutcomeRow;

/// What processing found out about a message, kept on its inbound row
/// whatever the outcome, so an ignored message can be read and judged.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    /// The classification rule that fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    /// Why the outcome is what it is, in words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decided_by: Vec<String>,
    /// The charset a body without one was read in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detected_charset: Option<&'static str>,
    /// The From named several addresses or none (never authenticated).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub from_ambiguous: bool,
    /// Per-recipient results of a bounce.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bounce: Vec<BounceResult>,
}

/// One recipient of a bounce, as stored and shown.
#[derive(Debug, Clone, Serialize)]
pub struct BounceResult {
    pub address: String,
    pub action: Option<String>,
    pub status: Option<String>,
    /// The status was inferred from the report's words, not stated.
    pub status_inferred: bool,
    pub reason: &'static str,
    pub diagnostic: Option<String>,
    /// The address itself is bad: it is not mailed again.
    pub hard: bool,
}

impl From<&FailedRecipient> for BounceResult {
    fn from(r: &FailedRecipient) -> Self {
        Self {
            address: r.address.clone(),
            action: r.action.clone(),
            status: r.status.clone(),
            status_inferred: r.status_inferred,
            reason: r.reason.as_str(),
            diagnostic: r.diagnostic.clone(),
            hard: r.hard,
        }
    }
}

impl Report {
    /// Subject, sender and Message-ID read from `raw` (a header, or a whole
    /// message processing will not read further).
    pub fn header_of(&mut self, raw: &[u8]) {
        if let Ok(head) = super::parse(raw) {
            self.subject = head.subject;
            self.from = head.from.map(|f| f.address);
            self.message_id = Some(head.message_id);
        }
    }

    /// The JSON stored on the inbound row; `None` when nothing was found out.
    pub fn to_json(&self) -> Option<String> {
        let json = serde_json::to_string(self).ok()?;
        (json != "{}").then_some(json)
    }
}

/// Why a stored message produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The same Message-ID was already applied in every pipeline it reaches.
    Duplicate,
    /// No enabled alias among its recipients (e.g. disabled after RCPT).
    NoAlias,
    /// No header could be read.
    Unparseable,
    /// An automatic reply that belongs to no known thread.
    AutoReply,
    /// A bounce of no message we know of.
    Bounce,
    /// An abuse/feedback report (the contact is marked).
    Complaint,
    /// Our own mail coming back.
    Loop,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Duplicate => "duplicate",
            IgnoreReason::NoAlias => "no-alias",
            IgnoreReason::Unparseable => "unparseable",
            IgnoreReason::AutoReply => "auto-reply",
            IgnoreReason::Bounce => "bounce",
            IgnoreReason::Complaint => "complaint",
            IgnoreReason::Loop => "loop",
        }
    }
}

/// What happened in one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineResult {
    Created {
        record: i64,
    },
    Appended {
        record: i64,
        reopened: bool,
    },
    Duplicate {
        record: i64,
    },
    /// A replay of a message this row already applied.
    AlreadyApplied,
    /// Nothing done in this pipeline, for this reason.
    Ignored(IgnoreReason),
}

/// Why a stored message is held for an operator instead of processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineReason {
    /// The sender is on `blocked_senders`.
    Blocked,
    /// DMARC failed for an alias that enforces it.
    DmarcFail,
    /// The From names several addresses, or none, for an alias that
    /// enforces DMARC: no verdict can cover it (RFC 7489 §6.6.1).
    AmbiguousFrom,
}

impl QuarantineReason {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineReason::Blocked => "blocked",
            QuarantineReason::DmarcFail => "dmarc-fail",
            QuarantineReason::AmbiguousFrom => "ambiguous-from",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Processed(Vec<PipelineResult>),
    Ignored(IgnoreReason),
    Quarantined(QuarantineReason),
    /// Kept for the operator to see but never processed: only its header
    /// was stored (a polled message over the size limit).
    Rejected(&'static str),
    Failed(String),
}

impl Outcome {
    /// Collapses per-pipeline results: when no pipeline got anything, the
    /// message is ignored (for the first pipeline's reason, else as a duplicate).
    pub fn from_results(results: Vec<PipelineResult>) -> Self {
        let nothing = |r: &PipelineResult| {
            matches!(
                r,
                PipelineResult::Duplicate { .. } | PipelineResult::Ignored(_)
            )
        };
        if results.iter().all(nothing) {
            let reason = results.iter().find_map(|r| match r {
                PipelineResult::Ignored(reason) => Some(*reason),
                _ => None,
            });
            Outcome::Ignored(reason.unwrap_or(IgnoreReason::Duplicate))
        } else {
            Outcome::Processed(results)
        }
    }

    pub fn to_row(&self) -> OutcomeRow {
        match self {
            Outcome::Processed(results) => {
                let parts: Vec<String> = results
                    .iter()
                    .map(|r| match r {
                        PipelineResult::Created { record } => format!("created #{record}"),
                        PipelineResult::Appended {
                            record,
                            reopened: true,
                        } => {
                            format!("appended to #{record}, reopened")
                        }
                        PipelineResult::Appended {
                            record,
                            reopened: false,
                        } => {
                            format!("appended to #{record}")
                        }
                        PipelineResult::Duplicate { record } => format!("duplicate of #{record}"),
                        PipelineResult::AlreadyApplied => "already applied".into(),
                        PipelineResult::Ignored(reason) => format!("ignored: {}", reason.as_str()),
                    })
                    .collect();
                OutcomeRow {
                    status: "processed",
                    outcome: format!("processed: {}", parts.join("; ")),
                    error: None,
                    details: None,
                }
            }
            Outcome::Ignored(reason) => OutcomeRow {
                status: "ignored",
                outcome: format!("ignored: {}", reason.as_str()),
                error: None,
                details: None,
            },
            Outcome::Quarantined(reason) => OutcomeRow {
                status: "quarantined",
                outcome: format!("quarantined: {}", reason.as_str()),
                error: None,
                details: None,
            },
            Outcome::Rejected(reason) => OutcomeRow {
                status: "rejected",
                outcome: format!("rejected: {reason}"),
                error: None,
                details: None,
            },
            Outcome::Failed(error) => OutcomeRow {
                status: "failed",
                outcome: "failed".into(),
                error: Some(error.clone()),
                details: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_duplicates_is_ignored() {
        let o = Outcome::from_results(vec![PipelineResult::Duplicate { record: 1 }]);
        assert_eq!(o.to_row().outcome, "ignored: duplicate");
        assert_eq!(o.to_row().status, "ignored");
    }

    #[test]
    fn mixed_results_are_processed_and_listed() {
        let o = Outcome::from_results(vec![
            PipelineResult::Created { record: 3 },
            PipelineResult::Appended {
                record: 1,
                reopened: true,
            },
        ]);
        assert_eq!(
            o.to_row().outcome,
            "processed: created #3; appended to #1, reopened"
        );
    }
}
