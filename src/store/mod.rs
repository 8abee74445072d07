//! Storage: the only place SQL lives.
//!
//! [`Store`] is what the rest of the service sees: one trait per feature,
//! each in its own file with its queries — `inbound` (stored mail, for
//! people), `processing` ([`Tx`], one processing transaction), `records`,
//! `outbox`, `mailbox` (IMAP cursors, known hashes, leases), `tokens`,
//! `team` (users, pipelines, aliases, contacts, blocked senders),
//! `sessions`, `webhooks`, `conversations`, `lifecycle`, `merge`, `search`,
//! `oauth`; `sql.rs` keeps intake, bootstrap, the directory and the helpers
//! the others share. A consumer that needs one feature takes its trait
//! (the IMAP poller takes [`MailboxStore`]). Each file's macro is expanded
//! once per backend, SQLite (the embedded default) and PostgreSQL (many
//! replicas, one database): the SQL is written for both dialects, and each
//! backend supplies only how it connects, migrates and begins a write. No
//! policy lives here: which record a message joins, or whether a stage
//! reopens, is decided in `ingest`.

mod behind;
pub(crate) mod conversations;
pub(crate) mod inbound;
pub(crate) mod lifecycle;
mod mailbox;
pub(crate) mod merge;
pub(crate) mod oauth;
pub(crate) mod outbox;
mod postgres;
mod processing;
pub(crate) mod records;
pub(crate) mod search;
pub(crate) mod sessions;
mod sql;
mod sqlite;
mod team;
pub(crate) mod tokens;
mod types;
pub(crate) mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::{AliasConfig, DatabaseSettings, PipelineConfig};
use crate::domain::Directory;
use crate::domain::InboundMessage;

pub use conversations::{ConversationStore, MessageHtml, StoredAttachment};
pub use inbound::InboundStore;
pub use lifecycle::{Erasure, LifecycleStore, RawRemoval};
pub use mailbox::MailboxStore;
pub use merge::{MergeStore, Moved, RecordLink};
pub use oauth::OAuthStore;
pub use outbox::OutboxStore;
pub use postgres::PgStore;
pub use records::RecordStore;
pub use search::{Hit, SearchStore};
pub use sessions::{NewSession, SessionStore, SessionUser};
pub use sqlite::SqliteStore;
pub use team::{TeamStore, now_ms};
pub use tokens::TokenStore;
pub use types::*;
pub use webhooks::{
    AttemptResult, ClaimedDelivery, DeliveryRow, LoggedEvent, NewDelivery, StoredWebhook,
    WebhookStore,
};

/// What can go wrong below the service.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unreadable row: {0}")]
    Corrupt(String),
    #[error("unsupported database url {0:?}: use sqlite://PATH or postgres://...")]
    BadUrl(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Every user, read page by page.
///
/// # Errors
/// Storage errors.
pub async fn all_users(store: &dyn Store) -> StoreResult<Vec<UserView>> {
    let mut users = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_users(&ListRequest { cursor, limit: 500 })
            .await?;
        let last = page.items.last().map(|u| u.id);
        users.extend(page.items);
        match (page.next_cursor, last) {
            (Some(_), Some(last)) => cursor = Some(last),
            _ => return Ok(users),
        }
    }
}

/// Opens the database named by `settings.url` (without migrating it).
///
/// # Errors
/// [`StoreError::BadUrl`] for an unknown scheme, or the connection error.
pub async fn connect(settings: &DatabaseSettings) -> StoreResult<Arc<dyn Store>> {
    let url = settings.url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(settings).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(settings).await?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// The service's view of the database.
#[async_trait]
pub trait Store:
    TeamStore
    + MailboxStore
    + TokenStore
    + OutboxStore
    + RecordStore
    + InboundStore
    + SessionStore
    + WebhookStore
    + ConversationStore
    + LifecycleStore
    + MergeStore
    + SearchStore
    + OAuthStore
{
    /// Runs the backend's migrations (`migrations/sqlite` or `migrations/postgres`).
    async fn migrate(&self) -> StoreResult<()>;

    /// A cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Commits `bytes` bytes to a probe row, then frees them again: whether
    /// a write of that size gets through (readiness after a failed intake
    /// commit, sized as its largest message).
    async fn probe_write(&self, bytes: usize) -> StoreResult<()>;

    /// Closes every connection once the ones in use are returned; later calls
    /// fail. On SQLite the last connection to go copies the WAL into the
    /// database file and removes it, so a cleanly stopped service leaves one
    /// self-contained file.
    async fn close(&self);

    /// Creates or updates pipelines, stages, users (alias owners), aliases and
    /// reopen rules by name/address. Never deletes anything.
    async fn bootstrap(
        &self,
        pipelines: &[PipelineConfig],
        aliases: &[AliasConfig],
    ) -> StoreResult<()>;

    /// Loads every pipeline, stage and alias, for routing and RCPT checks.
    async fn load_directory(&self) -> StoreResult<Directory>;

    /// Stores raw messages in ONE transaction and returns their ids in order.
    /// When this returns `Ok`, every message is durable; on `Err`, none is.
    async fn insert_inbound(&self, batch: &[&InboundMessage]) -> StoreResult<Vec<Uuid>>;

    /// Begins a processing transaction. On PostgreSQL it holds the processing
    /// lock, so replicas apply messages one batch at a time in arrival order.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;

    /// Whether intake may store a batch in a processing transaction
    /// ([`Tx::insert_inbound`]), so one commit carries both. SQLite writes
    /// through one connection anyway; on PostgreSQL a processing transaction
    /// holds the lock all replicas' processing shares, and intake must never
    /// wait for it.
    fn intake_in_processing(&self) -> bool;

    /// Which of these Message-IDs are in the thread index (for load checks).
    async fn stored_message_ids(&self, message_ids: &[String]) -> StoreResult<Vec<String>>;

    /// Which of these addresses are users.
    async fn existing_users(&self, emails: &[String]) -> StoreResult<Vec<String>>;

    /// Creates or updates one alias by address (pipeline and stages by name).
    /// Disabling keeps every record; nothing is deleted.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] naming what does not resolve.
    async fn save_alias(&self, alias: &AliasConfig) -> StoreResult<()>;
}

/// One processing transaction. Dropping it without [`Tx::commit`] rolls back.
///
/// `savepoint` / `release` / `rollback_to_savepoint` bracket one message, so
/// a failing message is undone alone and the rest of the batch commits.
#[async_trait]
pub trait Tx: Send {
    /// Stored messages waiting for processing, oldest first.
    async fn pending(&mut self, limit: usize) -> StoreResult<Vec<PendingInbound>>;

    /// Whether exactly these stored messages, and no others, wait for
    /// processing: then nothing older can be overtaken by applying them now.
    /// `false` for an empty list.
    async fn only_pending(&mut self, ids: &[Uuid]) -> StoreResult<bool>;

    /// Stores raw messages as [`Store::insert_inbound`] does, in this
    /// transaction: durable only once it commits.
    async fn insert_inbound(&mut self, batch: &[&InboundMessage]) -> StoreResult<Vec<Uuid>>;

    async fn savepoint(&mut self) -> StoreResult<()>;
    async fn release_savepoint(&mut self) -> StoreResult<()>;
    async fn rollback_to_savepoint(&mut self) -> StoreResult<()>;

    /// The record whose reply token this is (or the one it was merged
    /// into).
    async fn record_by_token(
        &mut self,
        pipeline: Uuid,
        token: &str,
    ) -> StoreResult<Option<RecordState>>;
    /// The record with this number (or the one it was merged into).
    async fn record_by_number(
        &mut self,
        pipeline: Uuid,
        number: i64,
    ) -> StoreResult<Option<RecordState>>;

    /// The records these Message-IDs belong to in one pipeline's thread
    /// index, in one indexed lookup (the message's own id, In-Reply-To and
    /// References at once).
    async fn lookup_message_ids(
        &mut self,
        pipeline: Uuid,
        message_ids: &[&str],
    ) -> StoreResult<Vec<(String, RecordState)>>;

    /// The content hash indexed with a Message-ID in one pipeline: `None`
    /// when the id is not indexed, `Some(None)` when it was indexed without
    /// one (a message we sent, or one stored before hashes were kept).
    async fn indexed_content_hash(
        &mut self,
        pipeline: Uuid,
        message_id: &str,
    ) -> StoreResult<Option<Option<String>>>;

    /// Whether this inbound row already produced a message in this pipeline
    /// (a replay of something already applied).
    async fn already_applied(&mut self, inbound: Uuid, pipeline: Uuid) -> StoreResult<bool>;

    /// Finds or creates the contact (`(email, name)`), creates the record
    /// (next number) with `message` as its first message, indexes its
    /// Message-ID and writes the `created` event, then the attachments.
    ///
    /// Like [`Tx::append_message`], this may only buffer the rows (a batch's
    /// rows are written together): every later read of this transaction sees
    /// them, and [`Tx::flush`] or the commit writes them, so errors of the
    /// write may surface there.
    async fn create_record(
        &mut self,
        record: &NewRecord,
        contact: Option<(&str, &str)>,
        message: &NewMessage<'_>,
    ) -> StoreResult<RecordState>;

    /// Appends `message` to `record`, indexes its Message-ID, touches the
    /// record, and when `new_stage` is given moves it there with a
    /// `reopened` event naming the message; then the attachments.
    async fn append_message(
        &mut self,
        record: &RecordState,
        message: &NewMessage<'_>,
        new_stage: Option<Uuid>,
    ) -> StoreResult<()>;

    /// Who is on each of `records` — its contact, and everyone in From, To
    /// or Cc of its messages — as `(record, lower-case address)` pairs, in
    /// one read.
    async fn participants(&mut self, records: &[Uuid]) -> StoreResult<Vec<(Uuid, String)>>;

    /// Records what a bounce or complaint said about an existing contact's
    /// address; `false` when no contact has it (none is created).
    async fn mark_contact(&mut self, email: &str, mark: &ContactMark) -> StoreResult<bool>;

    /// Whether a user (a team member) has this address.
    async fn is_user(&mut self, email: &str) -> StoreResult<bool>;

    /// Writes what processing made of inbound rows (one statement per 500),
    /// together with whatever is still buffered (see [`Tx::flush`]).
    async fn set_outcomes(&mut self, outcomes: &[(Uuid, OutcomeRow)]) -> StoreResult<()>;

    /// Writes what [`Tx::create_record`] and [`Tx::append_message`]
    /// buffered; an error here belongs to the messages since the last flush.
    async fn flush(&mut self) -> StoreResult<()>;

    /// Writes what is buffered and commits.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
}
