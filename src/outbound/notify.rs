//! Notification mail: tells a person about new work on a record. It says
//! what happened, quotes the first lines, links to the record page, and is
//! marked as machine mail (`Auto-Submitted: auto-generated`, the loop
//! header, `X-Auto-Response-Suppress`). It carries no reply token and no
//! `[#n]` subject tag, so a reply to it can never join or create a record.

use chrono::{DateTime, Utc};
use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::raw::Raw;
use uuid::Uuid;

use super::compose::LOOP_HEADER;
use crate::store::{QueuedNotification, RecordView, UserView};

/// What the mail is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Happened {
    Created,
    Reopened,
    /// A comment by this person mentions the recipient.
    Mentioned {
        by: String,
    },
}

/// What a notification needs.
#[derive(Debug, Clone)]
pub struct Notice<'a> {
    pub to: &'a UserView,
    pub happened: Happened,
    pub record: &'a RecordView,
    /// The message or comment that caused it.
    pub text: Option<&'a str>,
    /// `[http] public_url`, or empty for paths.
    pub base_url: &'a str,
    /// The one-click unsubscribe token of the recipient (RFC 8058), used
    /// with a `base_url`.
    pub unsubscribe: Option<String>,
    pub quote_lines: usize,
}

fn quote(text: &str, lines: usize) -> String {
    let mut kept: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .skip_while(|l| l.is_empty())
        .take(lines)
        .collect();
    while kept.last().is_some_and(|l| l.is_empty()) {
        kept.pop();
    }
    let more = text.lines().filter(|l| !l.trim().is_empty()).count() > kept.len();
    let mut out: String = kept.iter().map(|l| format!("> {l}\n")).collect();
    if more {
        out.push_str("> …\n");
    }
    out
}

/// The notification, ready for the outbox.
pub fn compose(n: &Notice<'_>, from: &str, domain: &str, now: DateTime<Utc>) -> QueuedNotification {
    let r = n.record;
    let contact = r
        .contact
        .as_ref()
        .map(|c| match c.name.trim() {
            "" => c.email.clone(),
            name => format!("{name} <{}>", c.email),
        })
        .unwrap_or_else(|| "no contact".to_string());
    // "#12", never "[#12]": that is a thread key.
    let number = format!("#{}", r.number);
    let (subject, lead) = match &n.happened {
        Happened::Created => (
            format!("New record {number}: {}", r.title),
            format!("A new record in {} is assigned to you.", r.pipeline),
        ),
        Happened::Reopened => (
            format!("Reopened {number}: {}", r.title),
            format!(
                "The customer wrote again, so your record is back in {} ({}).",
                r.stage, r.pipeline
            ),
        ),
        Happened::Mentioned { by } => (
            format!("{by} mentioned you on {number}: {}", r.title),
            format!(
                "{by} mentioned you in a comment on a record in {}.",
                r.pipeline
            ),
        ),
    };
    let why = match &n.happened {
        Happened::Mentioned { .. } => "you were mentioned",
        _ => "you own this record",
    };
    let link = format!("{}/records/{}", n.base_url, r.number);
    let mut body = format!("{lead}\n\n  {}\n  {contact}\n\n", r.title);
    if let Some(text) = n.text {
        let quoted = quote(text, n.quote_lines);
        if !quoted.is_empty() {
            body.push_str(&quoted);
            body.push('\n');
        }
    }
    body.push_str(&format!(
        "Open it: {link}\n\n-- \nYou get this mail because {why}. Replies to it reach no one.\n\
         Turn these mails off on your page: {}/me\n",
        n.base_url
    ));
    let id = Uuid::now_v7();
    let mut builder = MessageBuilder::new();
    if let Some(token) = n.unsubscribe.as_deref().filter(|_| !n.base_url.is_empty()) {
        builder = builder
            .header(
                "List-Unsubscribe",
                Raw::new(format!("<{}/unsubscribe/{token}>", n.base_url)),
            )
            .header(
                "List-Unsubscribe-Post",
                Raw::new("List-Unsubscribe=One-Click"),
            );
    }
    let raw = builder
        .from(("emailin", from))
        .to((
            if n.to.name.trim().is_empty() {
                n.to.email.as_str()
            } else {
                n.to.name.as_str()
            },
            n.to.email.as_str(),
        ))
        .subject(subject)
        .message_id(format!("notify.{}@{domain}", id.simple()))
        .date(now.timestamp())
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("X-Auto-Response-Suppress", Raw::new("All"))
        .header(LOOP_HEADER, Raw::new(domain.to_string()))
        .text_body(body)
        .write_to_vec()
        .unwrap_or_default();
    QueuedNotification {
        id,
        record_id: r.id,
        mail_from: from.to_string(),
        rcpt_to: vec![n.to.email.clone()],
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_keep_the_first_lines_and_say_when_there_is_more() {
        assert_eq!(
            quote("\nHello\nsecond\n\nthird\n", 2),
            "> Hello\n> second\n> …\n"
        );
        assert_eq!(quote("one line", 6), "> one line\n");
        assert_eq!(quote("", 6), "");
    }
}

#[cfg(test)]
mod subject_tests {
    #[test]
    fn a_notification_subject_is_no_thread_key() {
        assert_eq!(crate::domain::subject_tag("New record #12: Quote"), None);
    }
}
