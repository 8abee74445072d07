//! Rows going in and views coming out of the store.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::{Envelope, Source};

/// A stored message waiting to be processed.
#[derive(Debug, Clone)]
pub struct PendingInbound {
    pub id: Uuid,
    pub source: Source,
    pub envelope: Envelope,
    pub raw: Vec<u8>,
    /// How often processing already ran on it (0 for a fresh message).
    pub attempts: i32,
    /// An operator released it from quarantine: process it normally.
    pub released: bool,
    /// The size received; larger than `raw` when only the header was kept.
    pub size: i64,
}

/// What processing needs to know of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub id: Uuid,
    pub number: i64,
    pub pipeline_id: Uuid,
    pub stage_id: Uuid,
    /// When it entered that stage (unknown for records stored before that
    /// was kept).
    pub stage_since: Option<DateTime<Utc>>,
}

/// A record to create; it gets the id of its first message's `record_id`.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub pipeline_id: Uuid,
    pub stage_id: Uuid,
    pub owner_id: Option<Uuid>,
    pub alias_id: Uuid,
    pub title: String,
    pub tags: Vec<String>,
    pub reply_token: String,
    /// The closed record this one follows up (its follow-up window had
    /// passed): both get an event naming the other.
    pub follow_up_of: Option<RecordState>,
    /// The record a stranger's message named (see `UntrustedThread`).
    pub related_record: Option<Uuid>,
    /// The team member who forwarded the contact's mail here.
    pub forwarded_by: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Mailbox {
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub name: Option<String>,
    pub content_type: String,
    pub sha256: String,
    pub bytes: Vec<u8>,
    /// The part's Content-ID without brackets: what `cid:` URLs in the
    /// message's HTML name.
    pub content_id: Option<String>,
    /// Shown in the message (`Content-Disposition: inline`, or an image
    /// the HTML refers to) rather than offered as a file.
    pub inline: bool,
}

/// A message to store, borrowing its content from the parsed mail (one
/// message routed to several pipelines is stored from the same parse).
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub id: Uuid,
    pub record_id: Uuid,
    pub inbound_id: Option<Uuid>,
    pub direction: &'static str,
    pub message_id: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [String],
    pub from: Option<&'a Mailbox>,
    pub to: &'a [Mailbox],
    pub cc: &'a [Mailbox],
    pub reply_to: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub sent_at: Option<DateTime<Utc>>,
    pub text_body: Option<&'a str>,
    pub html_body: Option<&'a str>,
    /// The new part of an inbound message's text (`domain::reply_text`),
    /// when it differs from the whole text.
    pub reply_text: Option<&'a str>,
    pub thread_rule: &'static str,
    pub thread_value: Option<String>,
    /// What classification made of it: normal, auto-reply, bounce, list.
    pub class: &'static str,
    pub attachments: &'a [NewAttachment],
    /// See `ParsedMail::content_hash`; `None` for messages we wrote.
    pub content_hash: Option<&'a str>,
}

/// The result of processing, written on the inbound row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeRow {
    pub status: &'static str,
    pub outcome: String,
    pub error: Option<String>,
    /// What processing found out (class, deciding rule, bounce results), as JSON.
    pub details: Option<String>,
}

/// One page of a list and the cursor for the next one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RecordFilter {
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub contact: Option<String>,
    /// A user's email.
    pub owner: Option<String>,
    pub tag: Option<String>,
    /// Part of the title, any case.
    pub text: Option<String>,
    pub updated_since: Option<DateTime<Utc>>,
    /// Return records older than this id (ids are time-ordered).
    pub cursor: Option<Uuid>,
    pub limit: i64,
}

#[derive(Debug, Clone, Default)]
pub struct InboundFilter {
    pub status: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContactView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Set when a hard bounce named this address: when, and the DSN status.
    pub bounced_at: Option<DateTime<Utc>>,
    pub bounce_status: Option<String>,
    /// Set when a complaint (ARF) named this address.
    pub complained_at: Option<DateTime<Utc>>,
    /// Set when the contact asked for no more mail: replies need `force`.
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// Set when the contact's data was erased (for good).
    pub erased_at: Option<DateTime<Utc>>,
}

/// What machine mail says about a contact's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContactMark {
    /// A hard bounce, with its DSN status (`5.1.1`).
    Bounced {
        status: String,
    },
    Complained,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordView {
    pub id: Uuid,
    pub number: i64,
    /// The tag outbound replies put in the subject: `[#<number>]`.
    pub reference: String,
    pub pipeline: String,
    pub stage: String,
    pub stage_kind: String,
    pub title: String,
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub contact: Option<ContactView>,
    /// The record this one's first message named but could not join.
    pub related_record_id: Option<Uuid>,
    /// The record this one was merged into: its conversation, and mail
    /// naming this one, are there.
    pub merged_into: Option<super::RecordLink>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttachmentView {
    pub id: Uuid,
    pub name: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    /// The Content-ID that `cid:` URLs in the message's HTML name.
    pub content_id: Option<String>,
    /// Shown in the message rather than offered as a file.
    pub inline: bool,
    /// Where its bytes are: `/api/v1/attachments/{id}`.
    pub url: String,
}

impl AttachmentView {
    /// The API path of an attachment's bytes.
    pub fn url_of(id: Uuid) -> String {
        format!("/api/v1/attachments/{id}")
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ThreadDecision {
    pub rule: String,
    pub value: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub direction: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub subject: Option<String>,
    pub date: Option<DateTime<Utc>>,
    /// The whole text, quoted history included.
    pub text: Option<String>,
    /// The new part of the text: without quoted history and signature.
    pub reply_text: Option<String>,
    pub html: Option<String>,
    pub attachments: Vec<AttachmentView>,
    pub thread: ThreadDecision,
    pub inbound_id: Option<Uuid>,
    pub class: String,
    /// Users a comment mentions.
    pub mentions: Vec<String>,
    /// Who wrote a comment: a user's address, or an API token's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// For a reply sent from the record: where its delivery stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
    /// The sender authentication verdict of an inbound message received over SMTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authentication_results: Option<String>,
    /// For a bounce: each recipient's result (address, action, status,
    /// reason, diagnostic, hard, inferred).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub bounce: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: Uuid,
    pub kind: String,
    pub from_stage: Option<String>,
    pub to_stage: Option<String>,
    pub message_id: Option<Uuid>,
    pub actor: String,
    /// What an owner or tags change set, as text.
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// One entry of a record's conversation, in time order.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ConversationItem {
    Message(Box<MessageView>),
    Event(EventView),
}

impl ConversationItem {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            ConversationItem::Message(m) => m.created_at,
            ConversationItem::Event(e) => e.created_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordDetail {
    #[serde(flatten)]
    pub record: RecordView,
    pub conversation: Vec<ConversationItem>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundView {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub source: String,
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub client_ip: Option<String>,
    pub helo: Option<String>,
    pub tls: bool,
    pub size: i64,
    pub sha256: String,
    pub status: String,
    pub outcome: Option<String>,
    pub error: Option<String>,
    pub processed_at: Option<DateTime<Utc>>,
    /// Sender authentication verdict (an `Authentication-Results` value) for SMTP mail.
    pub auth_results: Option<String>,
    /// What processing found out: `class`, `rule` (what classified it),
    /// `decided_by` (why this outcome), `detected_charset`, `bounce`
    /// (per-recipient results) and the like.
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// Set when its raw bytes were removed (`erased` or `retention`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_removed: Option<RawRemoved>,
}

/// When and why a stored message's raw bytes were removed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RawRemoved {
    pub at: DateTime<Utc>,
    /// `erased` (the contact's data was erased) or `retention` (older than
    /// `[retention] raw_days`).
    pub why: String,
}

/// A message an inbound row became.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboundMessageLink {
    pub message_id: Uuid,
    pub record_id: Uuid,
    pub record_number: i64,
    pub pipeline: String,
}

/// Who an API token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A person's change to a record; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RecordChange {
    /// A stage name of the record's pipeline.
    pub stage: Option<String>,
    /// A user's email.
    pub owner: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// A page request of an admin list: ascending by id, after `cursor`.
#[derive(Debug, Clone, Default)]
pub struct ListRequest {
    pub cursor: Option<Uuid>,
    pub limit: i64,
}

/// A person records are assigned to (an alias owner, a record owner).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    /// `admin` manages the service; `member` works records.
    pub role: Role,
    /// Whether a password is set, so the user can log in to the web UI.
    pub can_log_in: bool,
    /// Whether they get mail about their records and mentions.
    pub notify: bool,
    pub created_at: DateTime<Utc>,
}

/// What an update changes of a user (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub notify: Option<bool>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StageView {
    pub id: Uuid,
    pub name: String,
    /// `open` or `closed`.
    pub kind: String,
    pub position: i32,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PipelineView {
    pub id: Uuid,
    pub name: String,
    /// In order.
    pub stages: Vec<StageView>,
    pub created_at: DateTime<Utc>,
}

/// One stage of a pipeline being saved; `id` renames an existing stage.
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageInput {
    #[serde(default)]
    pub id: Option<Uuid>,
    pub name: String,
    /// `open` or `closed`.
    pub kind: String,
}

/// A contact with the records it is the contact of.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContactDetail {
    #[serde(flatten)]
    pub contact: ContactView,
    pub records: Vec<RecordView>,
}

#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    /// Part of the address or the name, any case.
    pub q: Option<String>,
    /// Exactly this address.
    pub email: Option<String>,
    pub cursor: Option<Uuid>,
    pub limit: i64,
}

/// What composing a reply needs to know of its record.
#[derive(Debug, Clone)]
pub struct ReplyContext {
    pub record_id: Uuid,
    pub number: i64,
    pub title: String,
    pub pipeline_id: Uuid,
    pub reply_token: String,
    /// The alias the record came in through (or the pipeline's first alias).
    pub alias_address: Option<String>,
    pub alias_name: String,
    pub owner: Option<Mailbox>,
    pub contact: Option<ContactView>,
    /// The latest message of the thread (in or out): its id and References.
    pub last_message: Option<(String, Vec<String>)>,
    /// The subject of that latest message: a reply answers it, not the
    /// record's first subject.
    pub latest_subject: Option<String>,
    /// Senders on this record that only ever sent automatic replies.
    pub auto_responders: Vec<String>,
}

/// A notification ready for the outbox (no message of the record).
#[derive(Debug, Clone)]
pub struct QueuedNotification {
    pub id: Uuid,
    pub record_id: Uuid,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub raw: Vec<u8>,
}

/// A reply ready for the outbox: its message row and its wire form.
#[derive(Debug, Clone)]
pub struct QueuedReply {
    pub id: Uuid,
    pub record_id: Uuid,
    pub pipeline_id: Uuid,
    pub actor: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub raw: Vec<u8>,
    pub first_attempt_at_ms: i64,
    /// For a forward to a third party: the message it forwards (it is no
    /// reply to the contact, so it threads as `forward`).
    pub forward_of: Option<Uuid>,
    /// The files it carries (a forward's, the forwarded message's).
    pub attachments: Vec<NewAttachment>,
}

/// An outbox row claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: Uuid,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub raw: Vec<u8>,
    /// Attempts so far, this one included.
    pub attempts: i32,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The relay accepted it; its answer.
    Sent { reply: String },
    /// Try again at `next_attempt_at_ms`.
    Retry {
        error: String,
        next_attempt_at_ms: i64,
    },
    /// Given up: a permanent answer, or too many attempts.
    Failed { error: String },
}

/// The delivery state of an outbound message, shown with it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// `queued`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The relay's answer, or the error of the last attempt.
    pub last_reply: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A blocked sender: an address, or a domain with its subdomains.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BlockedSender {
    pub entry: String,
    /// `config` (the configuration file; changed there) or `api`.
    pub source: &'static str,
    pub created_at: Option<DateTime<Utc>>,
}
