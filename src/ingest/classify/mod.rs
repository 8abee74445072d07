//! Classify: who wrote this, a person or a machine? One pure function over
//! the parsed message, returning a closed class and the rule that fired.
//!
//! Order: our own loop, complaint (ARF), bounce (DSN), auto-reply, mailing
//! list, normal. A DSN often also says `Auto-Submitted`, so bounces are
//! recognised before auto-replies.

use std::cell::LazyCell;

mod phrases;
mod provider;
pub mod reason;
mod report;
mod status;
#[cfg(test)]
mod tests;
mod text;

use self::provider::*;
use self::reason::{BounceReason, Evidence, reason};
use self::report::*;
use self::status::*;
use self::text::*;
use super::parse::ParsedMail;
use crate::domain::EmailAddress;

/// One failed (or delayed) recipient of a delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    pub address: String,
    pub action: Option<String>,
    /// RFC 3463 status, `5.1.1`; for a report that gives none, the one its
    /// reason implies (`5.0.911`, see `status_inferred`).
    pub status: Option<String>,
    /// The status was not in the report but inferred from its words.
    pub status_inferred: bool,
    pub diagnostic: Option<String>,
    /// Why the delivery failed.
    pub reason: BounceReason,
    /// The address itself is bad (see [`BounceReason::is_hard`]): it
    /// should not be mailed again.
    pub hard: bool,
}

/// What a bounce tells.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bounce {
    pub recipients: Vec<FailedRecipient>,
    /// The Message-ID of the message that bounced, when returned.
    pub original_message_id: Option<String>,
}

/// The closed set of classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Normal,
    AutoReply,
    Bounce(Bounce),
    /// An abuse/feedback report about a message to `about`.
    Complaint {
        about: Option<String>,
    },
    /// A mailing-list post (`List-Id`, `Precedence: list`): a person's mail.
    List,
    /// Bulk mail (`Precedence: bulk` or `junk` without an auto-reply marker).
    Bulk,
    Loop,
}

impl Class {
    /// The name stored on messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Normal => "normal",
            Class::AutoReply => "auto-reply",
            Class::Bounce(_) => "bounce",
            Class::Complaint { .. } => "complaint",
            Class::List => "list",
            Class::Bulk => "bulk",
            Class::Loop => "loop",
        }
    }

    /// Not a person's own reply: never reopens a record, never triggers
    /// automatic mail (list and bulk posts included).
    pub fn is_automatic(&self) -> bool {
        !matches!(self, Class::Normal)
    }

    /// Written by a person (directly or through a list): the trust rules
    /// for joining a thread apply to it.
    pub fn is_person(&self) -> bool {
        matches!(self, Class::Normal | Class::List | Class::Bulk)
    }
}

/// A class and the rule that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub class: Class,
    pub rule: &'static str,
}

/// Classifies `mail`. `null_sender` is true when the envelope sender was `<>`.
pub fn classify(mail: &ParsedMail, null_sender: bool) -> Classification {
    let s = &mail.signals;
    let c = |class, rule| Classification { class, rule };
    let header = |name: &str| s.header(name).map(str::to_ascii_lowercase);

    if s.header("x-emailin-loop").is_some() {
        return c(Class::Loop, "x-emailin-loop");
    }

    // Complaint: RFC 5965 feedback report.
    if s.report_type.as_deref() == Some("feedback-report") || s.feedback_report.is_some() {
        // Who complained: the original's recipient, however the report
        // writes it (`rfc822; a@x`, `<a@x>`, `Ann <a@x>`), else the
        // recipient to remove, else the returned message's To.
        let about = s
            .feedback_report
            .as_deref()
            .and_then(|r| {
                ["original-rcpt-to", "removal-recipient"]
                    .iter()
                    .find_map(|name| field(r, name).and_then(|v| report_address(&v)))
            })
            .or_else(|| s.returned.as_ref().and_then(|r| r.to.first().cloned()));
        return c(Class::Complaint { about }, "feedback-report");
    }

    // Amazon SES bounce and complaint notifications, delivered by SNS as JSON.
    if let Some(class) = ses_notification(mail) {
        return c(class, "amazon-ses-notification");
    }

    // Bounce: RFC 3464 report, or a returned message from a null or daemon sender.
    if s.report_type.as_deref() == Some("delivery-status") || s.delivery_status.is_some() {
        let mut b = Bounce {
            recipients: s
                .delivery_status
                .as_deref()
                .map_or_else(Vec::new, |report| {
                    dsn_recipients(report, mail, &LazyCell::new(|| ReportWords::of(mail)))
                }),
            original_message_id: returned_message_id(mail),
        };
        if b.recipients.is_empty() {
            // A report without per-recipient fields: read its text instead.
            b.recipients = text_bounce(mail).recipients;
        }
        return c(Class::Bounce(b), "delivery-status");
    }
    // The From header as written: `MAILER-DAEMON <>` has no usable address.
    let daemon = mail.from.as_ref().is_some_and(|f| {
        matches!(
            f.address.split('@').next(),
            Some("mailer-daemon" | "postmaster" | "post_master")
        )
    }) || header("from").is_some_and(|f| {
        ["mailer-daemon", "postmaster", "post_master"]
            .iter()
            .any(|d| f.contains(d))
    }) || header("return-path").is_some_and(|r| r.contains("mailer-daemon"));
    let return_path_null = s.header("return-path").is_some_and(|v| v.trim() == "<>");
    if (daemon || null_sender || return_path_null) && s.returned.is_some() {
        let rule = if daemon {
            "daemon-sender-with-returned-message"
        } else {
            "null-sender-with-returned-message"
        };
        return c(Class::Bounce(text_bounce(mail)), rule);
    }
    // Plain-text bounces (qmail, Exim, older MTAs): a daemon or null sender and
    // a non-delivery subject; the original is quoted in the text, if at all.
    if (daemon || null_sender || return_path_null)
        && mail.subject.as_deref().is_some_and(is_bounce_subject)
    {
        return c(
            Class::Bounce(text_bounce(mail)),
            "daemon-sender-bounce-subject",
        );
    }

    // Auto-reply (RFC 3834 and the vendors' own headers).
    if header("auto-submitted").is_some_and(|v| token(&v) != "no") {
        return c(Class::AutoReply, "auto-submitted");
    }
    for (name, rule) in [
        ("x-autoreply", "x-autoreply"),
        ("x-autorespond", "x-autorespond"),
        ("x-autoresponder", "x-autoresponder"),
        ("x-autoresponse", "x-autoresponse"),
        ("x-autoreply-from", "x-autoreply-from"),
        ("x-mail-autoreply", "x-mail-autoreply"),
    ] {
        if s.header(name).is_some() {
            return c(Class::AutoReply, rule);
        }
    }
    if header("x-autogenerated").is_some_and(|v| v == "reply") {
        return c(Class::AutoReply, "x-autogenerated");
    }
    // `Precedence: bulk|junk` marks bulk mail, not an RFC 3834 auto-reply:
    // Mailman and Google Groups set it on every person's post.
    for name in ["precedence", "x-precedence"] {
        if header(name).is_some_and(|v| token(&v) == "auto_reply") {
            return c(Class::AutoReply, "precedence");
        }
    }
    // Exchange: X-Auto-Response-Suppress alone is set on ordinary mail too.
    if s.header("x-auto-response-suppress").is_some()
        && s.header("x-ms-exchange-inbox-rules-loop").is_some()
    {
        return c(Class::AutoReply, "exchange-inbox-rules-loop");
    }
    if header("x-ms-exchange-generated-message-source").is_some_and(|v| {
        v.contains("autoreply") || v.contains("auto reply") || v.contains("auto-reply")
    }) {
        return c(Class::AutoReply, "exchange-generated-message-source");
    }
    if header("delivered-to").is_some_and(|v| v.contains("autoresponder")) {
        return c(Class::AutoReply, "delivered-to-autoresponder");
    }
    // iCloud's vacation responder marks itself only this way.
    if header("x-apple-action").is_some_and(|v| v.contains("vacation")) {
        return c(Class::AutoReply, "x-apple-action");
    }

    if s.header("list-id").is_some() {
        return c(Class::List, "list-id");
    }
    if header("precedence").is_some_and(|v| token(&v) == "list") {
        return c(Class::List, "precedence-list");
    }
    for name in ["precedence", "x-precedence"] {
        if header(name).is_some_and(|v| matches!(token(&v), "bulk" | "junk")) {
            return c(Class::Bulk, "precedence-bulk");
        }
    }
    c(Class::Normal, "none")
}

/// Subjects that MTAs give non-delivery reports.
fn is_bounce_subject(subject: &str) -> bool {
    let s = subject.to_ascii_lowercase();
    [
        "undeliver",
        "delivery status notification",
        "delivery failure",
        "delivery failed",
        "mail delivery failed",
        "failure notice",
        "returned mail",
        "delivery notification",
        "non-delivery",
        "nondeliverable",
        "mail system error",
        "could not be delivered",
        "delivery problem",
        "rejected:",
        "mail failure",
        "mail failed",
        "failed delivery",
        "failure delivery",
        "delayed mail",
        "delayed 24 hours",
        "error sending your mail",
        "returning to sender",
        "errors from",
        "не доставлено",
    ]
    .iter()
    .any(|p| s.contains(p))
}

/// The first word of a header value: `auto-replied (zimbra; vacation)` → `auto-replied`.
fn token(v: &str) -> &str {
    v.split(|ch: char| ch == ';' || ch == '(' || ch.is_whitespace())
        .next()
        .unwrap_or_default()
}
