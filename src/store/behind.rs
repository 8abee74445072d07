//! The rows a processing transaction has yet to write.
//!
//! Processing creates records and appends messages one message at a time;
//! written as it goes, every message would cost several statements (on
//! SQLite each one a round trip to the driver's thread, on PostgreSQL one to
//! the server). Instead a transaction keeps them here and writes a whole
//! batch's contacts, records, messages, thread-index entries, record touches
//! and events as one multi-row statement per table: before any read that
//! could see them, at a savepoint, and at the latest before commit. What is
//! written is exactly what writing them one by one would have left.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql::to_json;
use super::{NewMessage, NewRecord, RecordState};

/// A message whose bodies together exceed this is written at once (the
/// buffer stays small, and a huge message is not held twice for long).
pub(super) const BUFFERED_BODY_MAX: usize = 256 * 1024;

#[derive(Debug, Default)]
pub(super) struct WriteBehind {
    pub contacts: Vec<ContactRow>,
    /// Contact email → index in `contacts`.
    contact_index: HashMap<String, usize>,
    pub records: Vec<RecordRow>,
    pub messages: Vec<MessageRow>,
    pub touches: Vec<Touch>,
    /// Record id → index in `touches`.
    touch_index: HashMap<Uuid, usize>,
    pub events: Vec<EventRow>,
}

#[derive(Debug)]
pub(super) struct ContactRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub(super) struct RecordRow {
    pub id: Uuid,
    pub number: i64,
    pub pipeline_id: Uuid,
    pub stage_id: Uuid,
    pub contact_email: Option<String>,
    pub owner_id: Option<Uuid>,
    pub alias_id: Uuid,
    pub title: String,
    pub tags: String,
    pub reply_token: String,
    pub related_record: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub(super) struct MessageRow {
    pub id: Uuid,
    pub record_id: Uuid,
    pub pipeline_id: Uuid,
    pub inbound_id: Option<Uuid>,
    pub direction: &'static str,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: String,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    pub to: String,
    pub cc: String,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub reply_text: Option<String>,
    pub thread_rule: &'static str,
    pub thread_value: Option<String>,
    pub class: &'static str,
    pub content_hash: Option<String>,
    pub at: DateTime<Utc>,
}

/// A record a message was appended to: touched, and maybe moved.
#[derive(Debug)]
pub(super) struct Touch {
    pub record_id: Uuid,
    pub new_stage: Option<Uuid>,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub(super) struct EventRow {
    pub id: Uuid,
    pub record_id: Uuid,
    pub kind: &'static str,
    pub from_stage: Option<Uuid>,
    pub to_stage: Uuid,
    pub message_id: Uuid,
    /// What the event names besides its stages (`#12` for a follow-up).
    pub detail: Option<String>,
    pub at: DateTime<Utc>,
}

impl WriteBehind {
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
            && self.records.is_empty()
            && self.messages.is_empty()
            && self.touches.is_empty()
            && self.events.is_empty()
    }

    /// Buffers what `Tx::create_record` writes; `number` is the record's.
    pub fn create_record(
        &mut self,
        record: &NewRecord,
        number: i64,
        contact: Option<(&str, &str)>,
        message: &NewMessage<'_>,
    ) -> RecordState {
        // Microseconds, as PostgreSQL keeps them: the state returned is the
        // state a later read finds.
        let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        if let Some((email, name)) = contact {
            self.upsert_contact(email, name, at);
        }
        self.records.push(RecordRow {
            id: message.record_id,
            number,
            pipeline_id: record.pipeline_id,
            stage_id: record.stage_id,
            contact_email: contact.map(|(email, _)| email.to_string()),
            owner_id: record.owner_id,
            alias_id: record.alias_id,
            title: record.title.clone(),
            tags: to_json(&record.tags),
            reply_token: record.reply_token.clone(),
            related_record: record.related_record,
            at,
        });
        self.push_message(message, record.pipeline_id, at);
        self.events.push(EventRow {
            id: Uuid::now_v7(),
            record_id: message.record_id,
            kind: "created",
            from_stage: None,
            to_stage: record.stage_id,
            message_id: message.id,
            detail: None,
            at,
        });
        if let Some(agent) = &record.forwarded_by {
            self.events.push(EventRow {
                id: Uuid::now_v7(),
                record_id: message.record_id,
                kind: "forwarded_by",
                from_stage: None,
                to_stage: record.stage_id,
                message_id: message.id,
                detail: Some(agent.clone()),
                at,
            });
        }
        if let Some(old) = &record.follow_up_of {
            // Each names the other: the old one stays closed.
            self.events.push(EventRow {
                id: Uuid::now_v7(),
                record_id: old.id,
                kind: "followed_up",
                from_stage: None,
                to_stage: old.stage_id,
                message_id: message.id,
                detail: Some(format!("#{number}")),
                at,
            });
            self.events.push(EventRow {
                id: Uuid::now_v7(),
                record_id: message.record_id,
                kind: "follow_up_of",
                from_stage: None,
                to_stage: record.stage_id,
                message_id: message.id,
                detail: Some(format!("#{}", old.number)),
                at,
            });
        }
        RecordState {
            id: message.record_id,
            number,
            pipeline_id: record.pipeline_id,
            stage_id: record.stage_id,
            stage_since: Some(at),
        }
    }

    /// Buffers what `Tx::append_message` writes.
    pub fn append_message(
        &mut self,
        record: &RecordState,
        message: &NewMessage<'_>,
        new_stage: Option<Uuid>,
    ) {
        let at = Utc::now();
        self.push_message(message, record.pipeline_id, at);
        // Later appends to the same record: the last time, the last move.
        match self.touch_index.get(&record.id) {
            Some(&i) => {
                let touch = &mut self.touches[i];
                touch.at = at;
                touch.new_stage = new_stage.or(touch.new_stage);
            }
            None => {
                self.touch_index.insert(record.id, self.touches.len());
                self.touches.push(Touch {
                    record_id: record.id,
                    new_stage,
                    at,
                });
            }
        }
        if let Some(to) = new_stage {
            self.events.push(EventRow {
                id: Uuid::now_v7(),
                record_id: record.id,
                kind: "reopened",
                from_stage: Some(record.stage_id),
                to_stage: to,
                message_id: message.id,
                detail: None,
                at,
            });
        }
    }

    /// One row per address, as the upserts one by one would leave it: an
    /// existing name is kept, an empty one takes the first name given.
    fn upsert_contact(&mut self, email: &str, name: &str, at: DateTime<Utc>) {
        match self.contact_index.get(email) {
            Some(&i) => {
                let row = &mut self.contacts[i];
                if row.name.is_empty() {
                    name.clone_into(&mut row.name);
                }
            }
            None => {
                self.contact_index
                    .insert(email.to_string(), self.contacts.len());
                self.contacts.push(ContactRow {
                    id: Uuid::now_v7(),
                    email: email.to_string(),
                    name: name.to_string(),
                    at,
                });
            }
        }
    }

    fn push_message(&mut self, m: &NewMessage<'_>, pipeline_id: Uuid, at: DateTime<Utc>) {
        self.messages.push(MessageRow {
            id: m.id,
            record_id: m.record_id,
            pipeline_id,
            inbound_id: m.inbound_id,
            direction: m.direction,
            message_id: m.message_id.to_string(),
            in_reply_to: m.in_reply_to.map(str::to_string),
            references: to_json(&m.references),
            from_addr: m.from.map(|f| f.address.clone()),
            from_name: m.from.and_then(|f| f.name.clone()),
            to: to_json(&m.to),
            cc: to_json(&m.cc),
            reply_to: m.reply_to.map(str::to_string),
            subject: m.subject.map(str::to_string),
            sent_at: m.sent_at,
            text_body: m.text_body.map(str::to_string),
            html_body: m.html_body.map(str::to_string),
            reply_text: m.reply_text.map(str::to_string),
            thread_rule: m.thread_rule,
            thread_value: m.thread_value.clone(),
            class: m.class,
            content_hash: m.content_hash.map(str::to_string),
            at,
        });
    }
}

/// Whether `message` must be written at once: it has attachments (written
/// after it, borrowed, never copied) or large bodies.
pub(super) fn write_at_once(message: &NewMessage<'_>) -> bool {
    !message.attachments.is_empty()
        || message.text_body.map_or(0, str::len) + message.html_body.map_or(0, str::len)
            > BUFFERED_BODY_MAX
}
