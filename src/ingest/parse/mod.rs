//! Parse: raw bytes → the fields processing and storage need (mail-parser).
//!
//! Never panics on input: mail-parser is wrapped in `catch_unwind` so even a
//! parser bug becomes an outcome on the raw row, not a dead task.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{
    Address, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};
use sha2::{Digest, Sha256};

use crate::domain::{EmailAddress, normalize_message_id, synthetic_message_id};
use crate::store::{Mailbox, NewAttachment};

mod signals;
use signals::*;
pub use signals::{Returned, Signals};

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
    /// Every id In-Reply-To names, in header order (`in_reply_to` is the last).
    pub in_reply_to_all: Vec<String>,
    /// Oldest first, as in the header.
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// The new part of the text, without quoted history and signature
    /// (`domain::reply_text`); `None` when that is the whole text.
    pub reply_text: Option<String>,
    /// Recipient addresses a forwarded copy carries, by header, most telling
    /// first: Delivered-To, X-Original-To, X-Forwarded-To, Envelope-To, To, Cc.
    pub forward_targets: Vec<Vec<String>>,
    /// What classification looks at: automation headers, report parts.
    pub signals: Signals,
    pub attachments: Vec<NewAttachment>,
    /// Hash of what makes two messages the same one (addresses, subject,
    /// date, bodies, attachments), not of the transport headers: the copy
    /// delivered by SMTP and the one polled by IMAP hash alike.
    pub content_hash: String,
    /// The charset a body without one was read in, detected from its bytes.
    pub detected_charset: Option<&'static str>,
    /// The `From` header names several addresses, or none (and `from` came
    /// from `Sender` or `Reply-To`): no DMARC verdict covers it (RFC 7489 §6.6.1).
    pub from_ambiguous: bool,
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
    let mut mail = catch_unwind(AssertUnwindSafe(|| parse_inner(raw)))
        .unwrap_or(Err(ParseError::ParserPanic))?;
    without_nul(&mut mail);
    Ok(mail)
}

/// Removes NUL characters from every text kept: no mail text needs one,
/// and PostgreSQL text cannot hold it, so both backends store the same.
fn without_nul(mail: &mut ParsedMail) {
    fn strip(s: &mut String) {
        if s.contains('\0') {
            s.retain(|c| c != '\0');
        }
    }
    let optional = [
        &mut mail.subject,
        &mut mail.text,
        &mut mail.html,
        &mut mail.reply_to,
    ];
    for s in optional.into_iter().flatten() {
        strip(s);
    }
    let mailboxes = mail.from.iter_mut().chain(&mut mail.to).chain(&mut mail.cc);
    for m in mailboxes {
        strip(&mut m.address);
        if let Some(name) = &mut m.name {
            strip(name);
        }
    }
    for a in &mut mail.attachments {
        if let Some(name) = &mut a.name {
            strip(name);
        }
        strip(&mut a.content_type);
    }
}

/// The bytes the parser reads: blank or whitespace lines before the headers
/// skipped, bare CR line ends read as CRLF (bare LF mail-parser reads
/// itself). The stored raw bytes are never changed.
fn for_parsing(raw: &[u8]) -> Cow<'_, [u8]> {
    let mut start = 0;
    while start < raw.len() {
        let line_end = raw[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(raw.len(), |p| start + p);
        if line_end == raw.len()
            || !raw[start..line_end]
                .iter()
                .all(|b| *b == b' ' || *b == b'\t')
        {
            break;
        }
        start = line_end + 1;
        if raw[line_end] == b'\r' && raw.get(start) == Some(&b'\n') {
            start += 1;
        }
    }
    let rest = &raw[start..];
    let bare_cr = |i: usize| rest[i] == b'\r' && rest.get(i + 1) != Some(&b'\n');
    if !memchr::memchr_iter(b'\r', rest).any(bare_cr) {
        return Cow::Borrowed(rest);
    }
    let mut out = Vec::with_capacity(rest.len() + rest.len() / 32);
    for (i, &b) in rest.iter().enumerate() {
        out.push(b);
        if bare_cr(i) {
            out.push(b'\n');
        }
    }
    Cow::Owned(out)
}

fn parse_inner(raw: &[u8]) -> Result<ParsedMail, ParseError> {
    let readable = for_parsing(raw);
    let mut msg = MessageParser::default()
        .parse(readable.as_ref())
        .ok_or(ParseError::NotMail)?;
    if msg.headers().is_empty() {
        return Err(ParseError::NotMail);
    }
    let (message_id, message_id_synthetic) = match msg.message_id().and_then(normalize_message_id) {
        Some(id) => (id, false),
        None => (synthetic_message_id(raw), true),
    };
    let in_reply_to_all = id_list(msg.in_reply_to());
    let in_reply_to = in_reply_to_all.last().cloned();
    let references = id_list(msg.references());
    let charsets = declared_charsets(&msg);
    let from_all = msg.from().map(mailboxes).unwrap_or_default();
    let from_ambiguous = from_all.len() != 1;
    let mut from = from_all.into_iter().next();
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
    // The person to answer: the original sender of a message a list or
    // group relayed under its own address, else From, else Sender, else
    // Reply-To (some mailers send an empty or missing From and a usable Reply-To).
    let from = original_sender(&msg, from.as_ref())
        .or(from)
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
    let detected_charset = detect_body_charset(&msg);
    let text = match detected_charset {
        Some(encoding) => msg.text_body.first().and_then(|&id| {
            let part = msg.parts.get(usize::try_from(id).ok()?)?;
            Some(encoding.decode(part.raw_body_bytes(&msg)).0.into_owned())
        }),
        None => msg.body_text(0).map(|s| s.into_owned()),
    }
    .or_else(|| unparted_body(&msg));
    // Only a real text/html part: mail-parser would otherwise render the
    // plain text as HTML, which costs time and stores nothing new. In a
    // multipart/mixed the first text/html part may come after the plain one.
    let html_id = msg
        .html_body
        .iter()
        .copied()
        .find(|&id| msg.part(id).is_some_and(MessagePart::is_text_html));
    let html = html_id
        .and_then(|id| msg.part(id))
        .and_then(|p| p.text_contents())
        .map(str::to_string);
    let text_id = msg.text_body.first().copied();
    let text_from_html = text_id
        .and_then(|id| msg.part(id))
        .is_some_and(MessagePart::is_text_html);
    let reply_text = new_part(text.as_deref(), html.as_deref(), text_from_html);
    let signals = signals(&msg);
    let mut attachments = take_attachments(&mut msg);
    attachments.extend(leftover_parts(&msg, text_id, html_id));
    let content_hash = content_hash(&msg, text.as_deref(), html.as_deref(), &attachments);
    Ok(ParsedMail {
        signals,
        attachments,
        content_hash,
        detected_charset: detected_charset.map(|e| e.name()),
        from_ambiguous,
        in_reply_to_all,
        forward_targets,
        reply_text,
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

/// The mailbox a list or group relayed a message for, when the message
/// carries it: `X-Original-Sender` (Google Groups), `X-Original-From`, or
/// the `Reply-To` of a list post whose From is the list's own address.
fn original_sender(msg: &Message<'_>, from: Option<&Mailbox>) -> Option<Mailbox> {
    let header_mailbox = |name: &str| {
        let value = msg.header(name)?;
        let text = match value {
            HeaderValue::Address(a) => return mailboxes(a).into_iter().next(),
            HeaderValue::Text(t) => t.to_string(),
            _ => return None,
        };
        let parsed = EmailAddress::parse(&text).ok()?;
        Some(Mailbox {
            address: parsed.to_string(),
            name: None,
        })
    };
    let relayed = header_mailbox("X-Original-Sender").or_else(|| header_mailbox("X-Original-From"));
    let list_post = msg
        .header("List-Post")
        .and_then(|v| v.as_text())
        .and_then(|t| t.split_once("mailto:"))
        .map(|(_, rest)| rest.trim_end_matches(['>', ' ']).to_ascii_lowercase());
    let sender = msg.sender().and_then(|a| mailboxes(a).into_iter().next());
    let from_is_list = from.is_some_and(|f| {
        list_post.as_deref() == Some(f.address.as_str())
            || sender.as_ref().is_some_and(|s| {
                s.address.split('@').nth(1) == f.address.split('@').nth(1)
                    && msg.header("List-Id").is_some()
                    && s.address != f.address
                    && s.address.contains("-bounces")
            })
    });
    let original = match relayed {
        Some(original) => original,
        None if from_is_list => msg
            .reply_to()
            .and_then(|a| mailboxes(a).into_iter().next())?,
        None => return None,
    };
    if from.is_some_and(|f| f.address == original.address) {
        return None;
    }
    // `'Ann Lee' via Sales <sales@googlegroups.com>`: the person's name.
    let name = from
        .and_then(|f| f.name.as_deref())
        .map(|n| {
            n.split(" via ")
                .next()
                .unwrap_or(n)
                .trim_matches(['\'', '"', ' '])
        })
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Some(Mailbox {
        name: original.name.or(name),
        ..original
    })
}

/// The encoding of a text body that declares no charset and is not UTF-8
/// (older Japanese clients and gateways send Shift_JIS or EUC-JP so), as
/// `chardetng` guesses it from the body's bytes.
fn detect_body_charset(msg: &Message<'_>) -> Option<&'static encoding_rs::Encoding> {
    let part = msg.part(*msg.text_body.first()?)?;
    if !matches!(part.body, PartType::Text(_)) {
        return None;
    }
    let declared = part
        .content_type()
        .and_then(|ct| ct.attribute("charset"))
        .is_some();
    let bytes = part.raw_body_bytes(msg);
    if declared || bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        return None;
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(bytes, true);
    Some(detector.guess(None, true))
}

trait RawBody {
    /// The part's body bytes as received, before any decoding.
    fn raw_body_bytes<'m>(&self, msg: &'m Message<'_>) -> &'m [u8];
}

impl RawBody for MessagePart<'_> {
    fn raw_body_bytes<'m>(&self, msg: &'m Message<'_>) -> &'m [u8] {
        msg.raw_message()
            .get(self.offset_body as usize..self.offset_end as usize)
            .unwrap_or_default()
    }
}

/// Text parts that are neither the body, the HTML alternative, nor an
/// attachment (a second text part of a multipart/mixed, say): kept as
/// attachments, so no part of a message is lost.
fn leftover_parts(
    msg: &Message<'_>,
    text_id: Option<u32>,
    html_id: Option<u32>,
) -> Vec<NewAttachment> {
    let used: Vec<u32> = text_id
        .into_iter()
        .chain(html_id)
        .chain(msg.attachments.iter().copied())
        .collect();
    msg.text_body
        .iter()
        .chain(&msg.html_body)
        .copied()
        .filter(|id| !used.contains(id))
        .collect::<std::collections::BTreeSet<u32>>()
        .into_iter()
        .filter_map(|id| {
            let part = msg.part(id)?;
            let content_type = match &part.body {
                PartType::Text(_) => "text/plain",
                PartType::Html(_) => "text/html",
                _ => return None,
            };
            let bytes = part.text_contents()?.as_bytes().to_vec();
            Some(NewAttachment {
                name: part.attachment_name().map(str::to_string),
                content_type: content_type.to_string(),
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes,
                content_id: None,
                inline: false,
            })
        })
        .collect()
}

/// See [`ParsedMail::content_hash`].
fn content_hash(
    msg: &Message<'_>,
    text: Option<&str>,
    html: Option<&str>,
    attachments: &[NewAttachment],
) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        h.update(name.as_bytes());
        h.update((value.len() as u64).to_le_bytes());
        h.update(value);
    };
    for (name, address) in [("from", msg.from()), ("to", msg.to()), ("cc", msg.cc())] {
        for m in address.map(mailboxes).unwrap_or_default() {
            field(name, m.address.as_bytes());
        }
    }
    field("subject", msg.subject().unwrap_or_default().as_bytes());
    field(
        "date",
        &msg.date().map_or(0, |d| d.to_timestamp()).to_le_bytes(),
    );
    field("text", text.unwrap_or_default().trim_end().as_bytes());
    field("html", html.unwrap_or_default().trim_end().as_bytes());
    for a in attachments {
        field("attachment", a.sha256.as_bytes());
    }
    hex::encode(h.finalize())
}

/// The new part of a message's text, when it is not the whole text. A
/// text made from HTML (there was no plain part) is cut where the HTML's
/// quoted history begins, which its text form may no longer show.
fn new_part(text: Option<&str>, html: Option<&str>, text_from_html: bool) -> Option<String> {
    let text = text?;
    let cut_html = html
        .filter(|_| text_from_html)
        .and_then(crate::domain::html_new_part)
        .map(mail_parser::decoders::html::html_to_text);
    let new = crate::domain::reply_text(cut_html.as_deref().unwrap_or(text));
    (new != crate::domain::normalized(text)).then_some(new)
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
            let content_id = part
                .content_id()
                .map(|id| {
                    id.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                })
                .filter(|id| !id.is_empty());
            let inline = part
                .content_disposition()
                .is_some_and(|d| d.ctype().eq_ignore_ascii_case("inline"));
            Some(NewAttachment {
                name,
                content_type,
                sha256: hex::encode(Sha256::digest(&bytes)),
                bytes,
                content_id,
                inline,
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
pub(super) fn mailboxes(address: &Address<'_>) -> Vec<Mailbox> {
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

    #[test]
    fn the_new_part_of_html_only_and_outlook_replies() {
        let gmail =
            b"From: a@b.c\r\nSubject: Re: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
            <div dir=\"ltr\">Tuesday works.</div><br><div class=\"gmail_quote\">\
            <div class=\"gmail_attr\">On Mon, Dec 7, 2026 at 9:00 AM Ann &lt;a@b.c&gt; wrote:</div>\
            <blockquote class=\"gmail_quote\">When?</blockquote></div>\r\n";
        let m = parse(gmail).unwrap();
        assert_eq!(m.reply_text.as_deref(), Some("Tuesday works."));
        let outlook = b"From: a@b.c\r\nSubject: RE: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
            <p>\xe5\xa4\xa7\xe4\xb8\x88\xe5\xa4\xab\xe3\x81\xa7\xe3\x81\x99\xe3\x80\x82</p>\
            <div id=\"divRplyFwdMsg\"><b>\xe5\xb7\xae\xe5\x87\xba\xe4\xba\xba:</b> Ann</div><p>old</p>\r\n";
        let m = parse(outlook).unwrap();
        assert_eq!(m.reply_text.as_deref(), Some("大丈夫です。"));
        let plain = parse(b"From: a@b.c\r\nSubject: x\r\n\r\nNothing quoted.\r\n").unwrap();
        assert_eq!(plain.reply_text, None, "the whole text is new");
    }
}
