//! Parse: raw bytes → the fields processing and storage need (mail-parser).
//!
//! Never panics on input: mail-parser is wrapped in `catch_unwind` so even a
//! parser bug becomes an outcome on the raw row, not a dead task.

use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

use crate::domain::{EmailAddress, normalize_message_id, synthetic_message_id};
use crate::store::{Mailbox, NewAttachment};

/// The parts of a message emailin keeps and reasons about.
#[derive(Debug, Clone)]
pub struct ParsedMail {
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub date: Option<DateTime<Utc>>,
    /// The Message-ID without brackets; synthetic (content hash) when absent.
    pub message_id: String,
    pub message_id_synthetic: bool,
    pub in_reply_to: Option<String>,
    /// Oldest first, as in the header.
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<NewAttachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a mail message (no header could be read)")]
    NotMail,
    #[error("parser failure")]
    ParserPanic,
}

/// Parses `raw` into a [`ParsedMail`].
///
/// # Errors
/// [`ParseError`] when no header can be read at all.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    catch_unwind(AssertUnwindSafe(|| parse_inner(raw))).unwrap_or(Err(ParseError::ParserPanic))
}

fn parse_inner(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    let msg = MessageParser::default()
        .parse(raw)
        .ok_or(ParseError::NotMail)?;
    if msg.headers().is_empty() {
        return Err(ParseError::NotMail);
    }
    let (message_id, message_id_synthetic) = match msg.message_id().and_then(normalize_message_id) {
        Some(id) => (id, false),
        None => (synthetic_message_id(raw), true),
    };
    let in_reply_to = id_list(msg.in_reply_to()).into_iter().last();
    let references = id_list(msg.references());
    let attachments = msg
        .attachments()
        .map(|part| {
            let bytes = part.contents().to_vec();
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            NewAttachment {
                name: part.attachment_name().map(str::to_string),
                content_type,
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes,
            }
        })
        .collect();
    Ok(ParsedMail {
        from: msg.from().and_then(|a| mailboxes(a).into_iter().next()),
        to: msg.to().map(mailboxes).unwrap_or_default(),
        cc: msg.cc().map(mailboxes).unwrap_or_default(),
        reply_to: msg
            .reply_to()
            .and_then(|a| mailboxes(a).into_iter().next())
            .map(|m| m.address),
        date: msg
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        message_id,
        message_id_synthetic,
        in_reply_to,
        references,
        subject: msg
            .subject()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()),
        text: msg.body_text(0).map(|s| s.into_owned()),
        html: msg.body_html(0).map(|s| s.into_owned()),
        attachments,
    })
}

/// Message-IDs from In-Reply-To / References, normalised, empties dropped.
fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(t) => normalize_message_id(t).into_iter().collect(),
        HeaderValue::TextList(list) => list
            .iter()
            .filter_map(|t| normalize_message_id(t))
            .collect(),
        _ => Vec::new(),
    }
}

/// Every address in a header (groups flattened), lower-cased; unusable ones dropped.
fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
    address
        .iter()
        .filter_map(|a| {
            let parsed = EmailAddress::parse(a.address()?).ok()?;
            Some(Mailbox {
                address: parsed.to_string(),
                name: a
                    .name()
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_threading_headers_and_addresses() {
        let raw = b"From: Ann Lee <Ann@Example.com>\r\nTo: sales@localhost, Bob <bob@x.org>\r\n\
Message-ID: <m2@example.com>\r\nIn-Reply-To: <m1@example.com>\r\n\
References: <m0@example.com> <m1@example.com>\r\nSubject: Re: Quote\r\n\r\nHello\r\n";
        let m = parse(raw).unwrap();
        let from = m.from.unwrap();
        assert_eq!(from.address, "ann@example.com");
        assert_eq!(from.name.as_deref(), Some("Ann Lee"));
        assert_eq!(m.to.len(), 2);
        assert_eq!(m.message_id, "m2@example.com");
        assert!(!m.message_id_synthetic);
        assert_eq!(m.in_reply_to.as_deref(), Some("m1@example.com"));
        assert_eq!(m.references, ["m0@example.com", "m1@example.com"]);
        assert_eq!(m.subject.as_deref(), Some("Re: Quote"));
        assert_eq!(m.text.as_deref().map(str::trim), Some("Hello"));
    }

    #[test]
    fn missing_message_id_gets_a_stable_synthetic_one() {
        let raw = b"From: a@b.c\r\nSubject: x\r\n\r\nbody\r\n";
        let a = parse(raw).unwrap();
        let b = parse(raw).unwrap();
        assert!(a.message_id_synthetic);
        assert_eq!(a.message_id, b.message_id);
    }

    #[test]
    fn empty_input_is_not_mail() {
        assert_eq!(parse(b"").unwrap_err(), ParseError::NotMail);
    }
}
