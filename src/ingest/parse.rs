//! Parse: raw bytes → the fields processing and storage need (mail-parser).
//!
//! Never panics on input: mail-parser is wrapped in `catch_unwind` so even a
//! parser bug becomes an outcome on the raw row, not a dead task.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MimeHeaders, PartType,
};
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
    /// Recipient addresses a forwarded copy carries, by header, most telling
    /// first: Delivered-To, X-Original-To, X-Forwarded-To, Envelope-To, To, Cc.
    pub forward_targets: Vec<Vec<String>>,
    /// Shared, so a message routed to several pipelines holds its attachments once.
    pub attachments: Arc<[NewAttachment]>,
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
    let mut msg = MessageParser::default()
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
    let charsets = declared_charsets(&msg);
    let mut from = msg.from().and_then(|a| mailboxes(a).into_iter().next());
    if let (Some(from), Some(decoded)) = (
        from.as_mut(),
        raw_8bit_header(&msg, HeaderName::From, &charsets),
    ) {
        // Recover a display name written in raw 8-bit (not RFC 2047).
        let reparsed = format!("From: {decoded}\r\n\r\n");
        if let Some(name) = MessageParser::default()
            .parse(reparsed.as_bytes())
            .and_then(|m| {
                m.from()
                    .and_then(|a| a.first())
                    .and_then(|a| a.name().map(str::to_string))
            })
        {
            from.name = Some(name.trim().to_string());
        }
    }
    // The person to answer: From, else Sender, else Reply-To (some mailers
    // send an empty or missing From and a usable Reply-To).
    let from = from
        .or_else(|| msg.sender().and_then(|a| mailboxes(a).into_iter().next()))
        .or_else(|| msg.reply_to().and_then(|a| mailboxes(a).into_iter().next()));
    let subject = raw_8bit_header(&msg, HeaderName::Subject, &charsets)
        .or_else(|| msg.subject().map(str::to_string))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let mut forward_targets: Vec<Vec<String>> = [
        "Delivered-To",
        "X-Original-To",
        "X-Forwarded-To",
        "Envelope-To",
    ]
    .iter()
    .map(|name| {
        msg.header_values(*name)
            .filter_map(|v| v.as_text())
            .flat_map(|t| t.split(','))
            .filter_map(|a| EmailAddress::parse(a).ok().map(|a| a.to_string()))
            .collect()
    })
    .collect();
    for header in [msg.to(), msg.cc()] {
        forward_targets.push(
            header
                .map(mailboxes)
                .unwrap_or_default()
                .into_iter()
                .map(|m| m.address)
                .collect(),
        );
    }
    let text = msg.body_text(0).map(|s| s.into_owned());
    // Only a real text/html part: mail-parser would otherwise render the
    // plain text as HTML, which costs time and stores nothing new.
    let html = msg
        .html_part(0)
        .filter(|p| p.is_text_html())
        .and_then(|p| p.text_contents())
        .map(str::to_string);
    Ok(ParsedMail {
        attachments: take_attachments(&mut msg).into(),
        forward_targets,
        from,
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
        subject,
        text,
        html,
    })
}

/// Moves the attachments' decoded bytes out of the parsed message instead of
/// copying them: a 25 MB attachment is held once, not twice.
fn take_attachments(msg: &mut Message<'_>) -> Vec<NewAttachment> {
    let ids = msg.attachments.clone();
    ids.iter()
        .filter_map(|&id| {
            let part = msg.parts.get_mut(usize::try_from(id).ok()?)?;
            let name = part.attachment_name().map(str::to_string);
            let content_type = part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let bytes = match std::mem::take(&mut part.body) {
                PartType::Text(t) | PartType::Html(t) => t.into_owned().into_bytes(),
                PartType::Binary(b) | PartType::InlineBinary(b) => b.into_owned(),
                PartType::Message(m) => m.raw_message.into_owned(),
                PartType::Multipart(_) => Vec::new(),
            };
            Some(NewAttachment {
                name,
                content_type,
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes,
            })
        })
        .collect()
}

/// Charsets the message declares on any part, multi-byte ones first (they
/// are the likelier source of raw 8-bit header bytes, and a single-byte
/// charset decodes anything without error).
fn declared_charsets(msg: &Message<'_>) -> Vec<String> {
    fn collect(msg: &Message<'_>, charsets: &mut Vec<String>, depth: usize) {
        for part in &msg.parts {
            if let Some(cs) = part.content_type().and_then(|ct| ct.attribute("charset")) {
                let cs = cs.trim().to_ascii_lowercase();
                if !matches!(cs.as_str(), "us-ascii" | "utf-8" | "utf8") && !charsets.contains(&cs)
                {
                    charsets.push(cs);
                }
            }
            // Forwarded or returned messages often carry the original's charset.
            if let Some(inner) = part.message().filter(|_| depth < 4) {
                collect(inner, charsets, depth + 1);
            }
        }
    }
    let mut charsets: Vec<String> = Vec::new();
    collect(msg, &mut charsets, 0);
    let multibyte = |cs: &str| {
        [
            "gb", "big5", "shift", "sjis", "euc", "2022", "ks_c", "korean",
        ]
        .iter()
        .any(|m| cs.contains(m))
    };
    charsets.sort_by_key(|cs| !multibyte(cs));
    // Mislabelled Japanese mail: ISO-2022-JP declared, Shift_JIS or EUC-JP sent.
    if charsets.iter().any(|cs| cs.contains("2022-jp")) {
        charsets.extend(["shift_jis".to_string(), "euc-jp".to_string()]);
    }
    charsets.push("windows-1252".into());
    charsets
}

/// A header whose raw value is not UTF-8 (8-bit text without RFC 2047
/// encoding), decoded with the first declared charset that decodes it
/// cleanly. `None` when the header is absent or valid UTF-8, in which case
/// mail-parser's own decoding stands.
fn raw_8bit_header(msg: &Message<'_>, name: HeaderName<'_>, charsets: &[String]) -> Option<String> {
    let header = msg.headers().iter().find(|h| h.name == name)?;
    let raw = msg
        .raw_message()
        .get(header.offset_start() as usize..header.offset_end() as usize)?;
    if std::str::from_utf8(raw).is_ok() {
        return None;
    }
    let unfolded: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    charsets.iter().find_map(|cs| {
        let decoded = charset_decoder(cs.as_bytes())?(&unfolded);
        (!decoded.contains('\u{FFFD}')).then_some(decoded)
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
