//! Forward: one message of a record sent on to someone outside the
//! conversation (a supplier, a colleague elsewhere), with a note, as the
//! wire message and the rows that queue it. Pure: no I/O, the clock is
//! passed in.
//!
//! It is not a reply: no `In-Reply-To`, a `Fwd:` subject with the record's
//! tag, and the forwarded message's headers and text under the note, its
//! files attached. It carries the record's reply address, so an answer
//! comes back to the record.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::compose::{ComposeError, Identity, Outgoing, mailboxes};
use crate::domain::{EmailAddress, ReplyKey, conversation_title, is_role_address};
use crate::store::{Mailbox, MessageView, NewAttachment, QueuedReply, ReplyContext};

/// What a person asked to forward, and to whom.
#[derive(Debug, Clone)]
pub struct ForwardRequest {
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    /// A note above the forwarded message (may be empty).
    pub note: String,
    /// Who sends it, for the outbox and events.
    pub actor: String,
}

/// `Fwd: <subject> [#<number>]`, the reply prefixes of the original dropped.
pub fn forward_subject(subject: &str, number: i64) -> String {
    let base = conversation_title(subject);
    if base.is_empty() {
        format!("Fwd: [#{number}]")
    } else {
        format!("Fwd: {base} [#{number}]")
    }
}

/// The text of a forward: the note, then the forwarded message's headers
/// and its whole text, as mail clients write it.
pub fn forward_text(note: &str, original: &MessageView) -> String {
    let mailbox = |m: &Mailbox| match &m.name {
        Some(name) if !name.is_empty() => format!("{name} <{}>", m.address),
        _ => m.address.clone(),
    };
    let list = |ms: &[Mailbox]| ms.iter().map(mailbox).collect::<Vec<_>>().join(", ");
    let mut text = String::new();
    if !note.trim().is_empty() {
        text.push_str(note.trim_end());
        text.push_str("\n\n");
    }
    text.push_str("---------- Forwarded message ---------\n");
    if let Some(from) = &original.from {
        text.push_str(&format!("From: {}\n", mailbox(from)));
    }
    let date = original.date.unwrap_or(original.created_at);
    text.push_str(&format!("Date: {}\n", date.to_rfc2822()));
    if let Some(subject) = &original.subject {
        text.push_str(&format!("Subject: {subject}\n"));
    }
    if !original.to.is_empty() {
        text.push_str(&format!("To: {}\n", list(&original.to)));
    }
    if !original.cc.is_empty() {
        text.push_str(&format!("Cc: {}\n", list(&original.cc)));
    }
    text.push('\n');
    match (&original.text, &original.html) {
        (Some(body), _) => text.push_str(body),
        (None, Some(html)) => text.push_str(&mail_parser::decoders::html::html_to_text(html)),
        (None, None) => text.push_str("(no text)"),
    }
    text.push('\n');
    text
}

/// Builds the forward of `original` (a message of `ctx`'s record) with its
/// `files`.
///
/// # Errors
/// No alias to send from, no recipient, or a role / no-reply recipient
/// ([`ComposeError::RefusedCc`] names it).
pub fn compose_forward(
    ctx: &ReplyContext,
    original: &MessageView,
    files: Vec<NewAttachment>,
    req: &ForwardRequest,
    domain: &str,
    key: &ReplyKey,
    now: DateTime<Utc>,
) -> Result<QueuedReply, ComposeError> {
    if req.to.is_empty() {
        return Err(ComposeError::RefusedCc(
            "to: name at least one address to forward to".into(),
        ));
    }
    for address in req.to.iter().chain(&req.cc) {
        if is_role_address(address.as_str()) {
            return Err(ComposeError::RefusedCc(format!(
                "{address} is a role or no-reply address; nothing is sent to one"
            )));
        }
    }
    let outgoing = Outgoing {
        identity: Identity::of(ctx, key)?,
        to: mailboxes(&req.to),
        cc: mailboxes(&req.cc),
        subject: forward_subject(
            original.subject.as_deref().unwrap_or(&ctx.title),
            ctx.number,
        ),
        text: forward_text(&req.note, original),
        html: None,
        actor: req.actor.clone(),
    };
    let id = Uuid::now_v7();
    let message_id = format!("{}@{domain}", id.simple());
    let mut builder = outgoing.builder(&message_id, domain, now);
    for file in &files {
        let name = file.name.clone().unwrap_or_else(|| "attachment".into());
        builder = builder.attachment(file.content_type.clone(), name, file.bytes.clone());
    }
    // Writing into a Vec cannot fail.
    let raw = builder.write_to_vec().unwrap_or_default();
    Ok(QueuedReply {
        forward_of: Some(original.id),
        attachments: files,
        ..outgoing.queued(ctx, id, message_id, raw, now)
    })
}
