//! Compose: a reply from a record, as the wire message and the rows that
//! queue it. Pure: no I/O, the clock is passed in.
//!
//! Headers that make the customer's answer come back to the same record,
//! whatever their mail client keeps: a `Message-ID` on our domain (entered
//! in the thread index), `In-Reply-To`/`References` continuing the thread,
//! `Reply-To: alias+r-<signed token>@…`, and the subject tag `[#<number>]`.
//! `X-Emailin-Loop` marks it as ours should it ever come back as is; there
//! is no `Auto-Submitted`: a person wrote it.

use chrono::{DateTime, Utc};
use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::address::Address;
use mail_send::mail_builder::headers::message_id::MessageId;
use mail_send::mail_builder::headers::raw::Raw;
use uuid::Uuid;

use crate::domain::{EmailAddress, ReplyKey, quoted_for_sending};
use crate::domain::{REPLY_TOKEN_TAG, is_role_address, subject_tag, without_reply_prefixes};
use crate::store::{ContactView, Mailbox, QueuedReply, ReplyContext};

/// How many Message-IDs a reply's `References` keeps (the newest).
pub const MAX_REFERENCES: usize = 20;

/// The header that marks mail this service sent.
pub const LOOP_HEADER: &str = "X-Emailin-Loop";

/// What a person asked to send.
#[derive(Debug, Clone)]
pub struct ReplyRequest {
    pub text: String,
    pub html: Option<String>,
    pub cc: Vec<EmailAddress>,
    /// Who sends it (the API token's name), for the outbox and events.
    pub actor: String,
    /// Send even to an address that bounced or complained.
    pub force: bool,
}

/// Why a reply cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    #[error("the record has no contact to reply to")]
    NoContact,
    #[error("the record's pipeline has no alias to send from")]
    NoAlias,
    /// Reply safety: the contact's address must not get mail from us.
    #[error("{0}")]
    Refused(String),
    /// Reply safety: a Cc address must not get mail from us (the reason).
    #[error("cc: {0}")]
    RefusedCc(String),
}

/// Reply safety: no mail to role or no-reply addresses; none to an address
/// that hard-bounced or complained unless the person insists (`force`).
///
/// # Errors
/// [`ComposeError::Refused`] saying why.
pub fn check_recipient(contact: &ContactView, force: bool) -> Result<(), ComposeError> {
    if contact.erased_at.is_some() {
        return Err(ComposeError::Refused(
            "this contact's data was erased; there is no address to reply to".into(),
        ));
    }
    if is_role_address(&contact.email) {
        return Err(ComposeError::Refused(format!(
            "{} is a role or no-reply address; replies never go to one",
            contact.email
        )));
    }
    if force {
        return Ok(());
    }
    if let Some(at) = contact.bounced_at {
        return Err(ComposeError::Refused(format!(
            "{} bounced ({}) on {at}; send with \"force\": true to try anyway",
            contact.email,
            contact.bounce_status.as_deref().unwrap_or("no status")
        )));
    }
    if let Some(at) = contact.unsubscribed_at {
        return Err(ComposeError::Refused(format!(
            "{} unsubscribed on {at}; send with \"force\": true to write anyway",
            contact.email
        )));
    }
    if let Some(at) = contact.complained_at {
        return Err(ComposeError::Refused(format!(
            "{} reported our mail as spam on {at}; send with \"force\": true to try anyway",
            contact.email
        )));
    }
    Ok(())
}

/// `Re: <subject> [#<number>]`, without stacking reply prefixes (`Re:`,
/// `RE:`, `AW:`, `SV:`, `回复:` …) or a second tag.
pub fn reply_subject(subject: &str, number: i64) -> String {
    let base = without_reply_prefixes(subject);
    if subject_tag(base) == Some(number) {
        format!("Re: {base}")
    } else if base.is_empty() {
        format!("Re: [#{number}]")
    } else {
        format!("Re: {base} [#{number}]")
    }
}

/// Who mail from a record comes from: the alias, under the assigned
/// person's name, with the record's signed reply address.
pub(crate) struct Identity {
    pub alias: EmailAddress,
    pub from: Mailbox,
    pub reply_to: String,
}

impl Identity {
    /// # Errors
    /// [`ComposeError::NoAlias`] when the record has no alias to send from.
    pub(crate) fn of(ctx: &ReplyContext, key: &ReplyKey) -> Result<Self, ComposeError> {
        let alias = ctx
            .alias_address
            .as_deref()
            .and_then(|a| EmailAddress::parse(a).ok())
            .ok_or(ComposeError::NoAlias)?;
        // Send as the assigned person: their name on the alias address.
        let name = ctx
            .owner
            .as_ref()
            .and_then(|o| o.name.clone())
            .filter(|n| !n.trim().is_empty())
            .or_else(|| Some(ctx.alias_name.clone()).filter(|n| !n.trim().is_empty()));
        let from = Mailbox {
            address: alias.as_str().to_string(),
            name,
        };
        let reply_to = format!(
            "{}+{REPLY_TOKEN_TAG}{}@{}",
            alias.local(),
            key.sign(&ctx.reply_token),
            alias.domain()
        );
        Ok(Self {
            alias,
            from,
            reply_to,
        })
    }
}

/// Builds the reply to `ctx`'s contact.
///
/// # Errors
/// No contact or alias, or reply safety refusing the recipient.
pub fn compose(
    ctx: &ReplyContext,
    req: &ReplyRequest,
    domain: &str,
    key: &ReplyKey,
    now: DateTime<Utc>,
) -> Result<QueuedReply, ComposeError> {
    let contact = ctx.contact.as_ref().ok_or(ComposeError::NoContact)?;
    check_recipient(contact, req.force)?;
    let identity = Identity::of(ctx, key)?;
    let automatic = |address: &str| ctx.auto_responders.iter().any(|a| a == address);
    if automatic(&contact.email) {
        return Err(ComposeError::Refused(format!(
            "{} has only sent automatic replies on this record; replies never go to an auto-responder",
            contact.email
        )));
    }
    for cc in &req.cc {
        if is_role_address(cc.as_str()) {
            return Err(ComposeError::RefusedCc(format!(
                "{cc} is a role or no-reply address; replies never go to one"
            )));
        }
        if automatic(cc.as_str()) {
            return Err(ComposeError::RefusedCc(format!(
                "{cc} has only sent automatic replies on this record; replies never go to an auto-responder"
            )));
        }
    }

    let to = vec![Mailbox {
        address: contact.email.clone(),
        name: Some(contact.name.clone()).filter(|n| !n.is_empty()),
    }];
    let (in_reply_to, references) = match &ctx.last_message {
        Some((last, refs)) => {
            let mut chain: Vec<String> = refs.iter().filter(|r| *r != last).cloned().collect();
            chain.push(last.clone());
            let skip = chain.len().saturating_sub(MAX_REFERENCES);
            (Some(last.clone()), chain.split_off(skip))
        }
        None => (None, Vec::new()),
    };
    let outgoing = Outgoing {
        identity,
        to,
        cc: mailboxes(&req.cc),
        subject: reply_subject(
            ctx.latest_subject.as_deref().unwrap_or(&ctx.title),
            ctx.number,
        ),
        text: req.text.clone(),
        html: req.html.clone(),
        actor: req.actor.clone(),
    };
    let id = Uuid::now_v7();
    let message_id = format!("{}@{domain}", id.simple());
    let mut builder = outgoing.builder(&message_id, domain, now);
    if let Some(parent) = &in_reply_to {
        builder = builder
            .in_reply_to(parent.clone())
            .references(MessageId::new_list(references.iter().cloned()));
    }
    // Writing into a Vec cannot fail.
    let raw = builder.write_to_vec().unwrap_or_default();
    Ok(QueuedReply {
        in_reply_to,
        references,
        ..outgoing.queued(ctx, id, message_id, raw, now)
    })
}

/// Addresses as mailboxes without names.
pub(crate) fn mailboxes(list: &[EmailAddress]) -> Vec<Mailbox> {
    list.iter()
        .map(|a| Mailbox {
            address: a.as_str().to_string(),
            name: None,
        })
        .collect()
}

/// A message from a record, before its threading headers and files.
pub(crate) struct Outgoing {
    pub identity: Identity,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Who sends it, for the outbox and events.
    pub actor: String,
}

impl Outgoing {
    /// The wire message with the headers every mail from a record carries.
    pub(crate) fn builder(
        &self,
        message_id: &str,
        domain: &str,
        now: DateTime<Utc>,
    ) -> MessageBuilder<'static> {
        let mut builder = MessageBuilder::new()
            .from(mailbox_address(&self.identity.from))
            .reply_to(self.identity.reply_to.clone())
            .to(self.to.iter().map(mailbox_address).collect::<Vec<_>>())
            .subject(self.subject.clone())
            .message_id(message_id.to_string())
            .date(now.timestamp())
            .header(LOOP_HEADER, Raw::new(domain.to_string()))
            .text_body(self.text.clone());
        if !self.cc.is_empty() {
            builder = builder.cc(self.cc.iter().map(mailbox_address).collect::<Vec<_>>());
        }
        if let Some(html) = &self.html {
            builder = builder.html_body(html.clone());
        }
        builder
    }

    /// The rows that queue it as `raw`: no threading headers, no files.
    pub(crate) fn queued(
        self,
        ctx: &ReplyContext,
        id: Uuid,
        message_id: String,
        raw: Vec<u8>,
        now: DateTime<Utc>,
    ) -> QueuedReply {
        let Identity {
            alias,
            from,
            reply_to,
        } = self.identity;
        QueuedReply {
            id,
            record_id: ctx.record_id,
            pipeline_id: ctx.pipeline_id,
            actor: self.actor,
            message_id,
            in_reply_to: None,
            references: Vec::new(),
            rcpt_to: self
                .to
                .iter()
                .chain(&self.cc)
                .map(|m| quoted_for_sending(&m.address))
                .collect(),
            from,
            to: self.to,
            cc: self.cc,
            reply_to,
            subject: self.subject,
            text: self.text,
            html: self.html,
            mail_from: alias.as_str().to_string(),
            raw,
            first_attempt_at_ms: now.timestamp_millis(),
            forward_of: None,
            attachments: Vec::new(),
        }
    }
}

pub(crate) fn mailbox_address(m: &Mailbox) -> Address<'static> {
    Address::new_address(m.name.clone(), quoted_for_sending(&m.address))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse;

    fn contact(email: &str) -> ContactView {
        ContactView {
            id: Uuid::now_v7(),
            email: email.into(),
            name: "Ann Buyer".into(),
            created_at: Utc::now(),
            bounced_at: None,
            bounce_status: None,
            complained_at: None,
            unsubscribed_at: None,
            erased_at: None,
        }
    }

    fn context() -> ReplyContext {
        ReplyContext {
            record_id: Uuid::now_v7(),
            number: 42,
            title: "Re: Quote for 40 chairs".into(),
            pipeline_id: Uuid::now_v7(),
            reply_token: "0193abcdef".into(),
            alias_address: Some("sales@in.acme.example".into()),
            alias_name: "Acme Sales".into(),
            owner: Some(Mailbox {
                address: "bob@acme.example".into(),
                name: Some("Bob Seller".into()),
            }),
            contact: Some(contact("ann@customer.example")),
            last_message: Some(("m2@customer.example".into(), vec!["m1@acme.example".into()])),
            latest_subject: None,
            auto_responders: vec!["ooo@customer.example".into()],
        }
    }

    fn request() -> ReplyRequest {
        ReplyRequest {
            text: "Here is the quote.".into(),
            html: None,
            cc: vec![EmailAddress::parse("boss@customer.example").unwrap()],
            actor: "bob".into(),
            force: false,
        }
    }

    #[test]
    fn the_reply_carries_every_threading_header() {
        let key = ReplyKey::new(&[1; 32]);
        let reply = compose(
            &context(),
            &request(),
            "mail.acme.example",
            &key,
            Utc::now(),
        )
        .unwrap();
        let mail = parse(&reply.raw).unwrap();
        assert_eq!(
            mail.subject.as_deref(),
            Some("Re: Quote for 40 chairs [#42]")
        );
        assert_eq!(mail.message_id, reply.message_id);
        assert!(reply.message_id.ends_with("@mail.acme.example"));
        assert_eq!(mail.in_reply_to.as_deref(), Some("m2@customer.example"));
        assert_eq!(mail.references, ["m1@acme.example", "m2@customer.example"]);
        let from = mail.from.unwrap();
        assert_eq!(from.address, "sales@in.acme.example");
        assert_eq!(from.name.as_deref(), Some("Bob Seller"));
        let token = key.sign("0193abcdef");
        assert_eq!(
            mail.reply_to.as_deref(),
            Some(format!("sales+r-{token}@in.acme.example").as_str())
        );
        assert_eq!(mail.to[0].address, "ann@customer.example");
        assert_eq!(mail.cc[0].address, "boss@customer.example");
        assert!(mail.signals.header("x-emailin-loop").is_some());
        assert!(mail.signals.header("auto-submitted").is_none());
        assert_eq!(
            reply.rcpt_to,
            ["ann@customer.example", "boss@customer.example"]
        );
        assert_eq!(reply.mail_from, "sales@in.acme.example");
    }

    #[test]
    fn reply_safety_refuses_role_bounced_and_complaining_addresses() {
        let key = ReplyKey::new(&[1; 32]);
        let mut ctx = context();
        ctx.contact = Some(contact("no-reply@shop.example"));
        let err = compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap_err();
        assert!(matches!(err, ComposeError::Refused(_)), "{err}");

        let mut bounced = contact("ann@customer.example");
        bounced.bounced_at = Some(Utc::now());
        bounced.bounce_status = Some("5.1.1".into());
        ctx.contact = Some(bounced);
        let err = compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("5.1.1"), "{err}");
        let mut forced = request();
        forced.force = true;
        assert!(compose(&ctx, &forced, "d.example", &key, Utc::now()).is_ok());

        let mut complained = contact("ann@customer.example");
        complained.complained_at = Some(Utc::now());
        ctx.contact = Some(complained);
        assert!(compose(&ctx, &request(), "d.example", &key, Utc::now()).is_err());

        let mut unsubscribed = contact("ann@customer.example");
        unsubscribed.unsubscribed_at = Some(Utc::now());
        ctx.contact = Some(unsubscribed);
        let err = compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("unsubscribed"), "{err}");
        assert!(compose(&ctx, &forced, "d.example", &key, Utc::now()).is_ok());

        let mut erased = contact("erased@invalid");
        erased.erased_at = Some(Utc::now());
        ctx.contact = Some(erased);
        assert!(compose(&ctx, &forced, "d.example", &key, Utc::now()).is_err());

        ctx.contact = Some(contact("ann@customer.example"));
        let mut cc_daemon = request();
        cc_daemon.cc = vec![EmailAddress::parse("mailer-daemon@x.example").unwrap()];
        assert!(compose(&ctx, &cc_daemon, "d.example", &key, Utc::now()).is_err());

        let mut cc_ooo = request();
        cc_ooo.cc = vec![EmailAddress::parse("ooo@customer.example").unwrap()];
        let err = compose(&ctx, &cc_ooo, "d.example", &key, Utc::now()).unwrap_err();
        assert!(err.to_string().contains("auto-responder"), "{err}");
        ctx.contact = Some(contact("ooo@customer.example"));
        let err = compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap_err();
        assert!(matches!(err, ComposeError::Refused(_)), "{err}");

        ctx.contact = None;
        assert_eq!(
            compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap_err(),
            ComposeError::NoContact
        );
    }

    #[test]
    fn subjects_do_not_stack() {
        assert_eq!(reply_subject("Quote", 7), "Re: Quote [#7]");
        assert_eq!(reply_subject("RE: re: Quote", 7), "Re: Quote [#7]");
        assert_eq!(reply_subject("Re: Quote [#7]", 7), "Re: Quote [#7]");
        assert_eq!(reply_subject("", 7), "Re: [#7]");
        assert_eq!(reply_subject("AW: 回复：Quote", 7), "Re: Quote [#7]");
        assert_eq!(
            reply_subject("Reply needed: Quote", 7),
            "Re: Reply needed: Quote [#7]"
        );
    }

    #[test]
    fn a_first_reply_has_no_parent() {
        let mut ctx = context();
        ctx.last_message = None;
        let key = ReplyKey::new(&[1; 32]);
        let reply = compose(&ctx, &request(), "d.example", &key, Utc::now()).unwrap();
        let mail = parse(&reply.raw).unwrap();
        assert!(mail.in_reply_to.is_none());
        assert!(reply.references.is_empty());
    }
}
