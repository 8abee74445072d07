//! Storage: the only place SQL lives.
//!
//! [`Store`] is what the rest of the service sees; [`Tx`] is one processing
//! transaction. Both are implemented once, in `sql.rs`, for SQLite (the
//! embedded default) and PostgreSQL (many replicas, one database): the SQL is
//! written for both dialects, and each backend supplies only how it connects,
//! migrates and begins a write. No policy lives here: which record a message
//! joins, or whether a stage reopens, is decided in `ingest`.

mod behind;
pub(crate) mod conversations;
pub(crate) mod lifecycle;
pub(crate) mod merge;
pub(crate) mod oauth;
mod postgres;
pub(crate) mod search;
pub(crate) mod sessions;
mod sql;
mod sqlite;
mod team;
mod types;
pub(crate) mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::{AliasConfig, DatabaseSettings, PipelineConfig};
use crate::domain::Directory;
use crate::domain::InboundMessage;

pub use conversations::{ConversationStore, MessageHtml, StoredAttachment};
pub use lifecycle::{Erasure, LifecycleStore, RawRemoval};
pub use merge::{MergeStore, Moved, RecordLink};
pub use oauth::OAuthStore;
pub use postgres::PgStore;
pub use search::{Hit, SearchStore};
pub use sessions::{NewSession, SessionStore, SessionUser};
pub use sqlite::SqliteStore;
pub use team::{TeamStore, now_ms};
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

/// What an IMAP poller needs of the database: its folder's cursor, the
/// content hashes already stored from its mailbox, and the lease that lets
/// one replica poll a folder at a time. Messages themselves go through intake.
#[async_trait]
pub trait MailboxStore: Send + Sync {
    /// The stored cursor of an IMAP account's folder: (UIDVALIDITY, last UID).
    async fn imap_cursor(&self, account: &str, folder: &str) -> StoreResult<Option<(u32, u32)>>;

    /// Sets a cursor without storing messages (first run, skipped messages).
    async fn set_imap_cursor(
        &self,
        account: &str,
        folder: &str,
        uidvalidity: u32,
        uid: u32,
    ) -> StoreResult<()>;

    /// Which of these content hashes are already stored from the IMAP
    /// mailbox `origin` (the envelope's `helo` of polled mail).
    async fn known_sha256(&self, origin: &str, hashes: &[String]) -> StoreResult<Vec<String>>;

    /// Takes or renews the lease `name` for `holder` until `ttl` from now;
    /// `false` while another holder's lease is unexpired.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool>;

    /// Gives a lease up early (on shutdown), if `holder` has it.
    async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()>;
}

/// The service's view of the database.
#[async_trait]
pub trait Store:
    TeamStore
    + MailboxStore
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

    /// Puts stored messages back to `pending` so processing runs again; by id,
    /// by status, or both. Returns how many rows were reset.
    async fn reset_for_replay(&self, status: Option<&str>, id: Option<Uuid>) -> StoreResult<u64>;

    /// Which of these Message-IDs are in the thread index (for load checks).
    async fn stored_message_ids(&self, message_ids: &[String]) -> StoreResult<Vec<String>>;

    /// Releases a quarantined message: back to `pending`, processed
    /// normally (its quarantine reason no longer applies). `false` when it
    /// is not quarantined.
    async fn release_inbound(&self, id: Uuid) -> StoreResult<bool>;

    /// Drops a quarantined message: status `dropped`, raw bytes kept.
    /// `false` when it is not quarantined.
    async fn drop_inbound(&self, id: Uuid) -> StoreResult<bool>;

    /// Stores a new API token's hash under a unique name.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the name is taken.
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> StoreResult<TokenView>;

    /// The unrevoked token with this hash.
    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenView>>;

    async fn list_tokens(&self) -> StoreResult<Vec<TokenView>>;

    /// Revokes a token by id or name; `false` when there is no such active token.
    async fn revoke_token(&self, id_or_name: &str) -> StoreResult<bool>;

    /// Applies a person's change to a record, writing one event per field
    /// that changed (`stage_changed`, `owner_changed`, `tags_changed`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown record; [`StoreError::Conflict`]
    /// naming the field for a stage not in its pipeline or an unknown owner.
    async fn update_record(&self, id: Uuid, change: &RecordChange, actor: &str) -> StoreResult<()>;

    /// Adds an internal comment (never emailed) with its resolved mentions
    /// and a `commented` event; returns the comment's id.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for an unknown record.
    async fn add_comment(
        &self,
        record: Uuid,
        text: &str,
        actor: &str,
        mentions: &[String],
    ) -> StoreResult<Uuid>;

    /// Which of these addresses are users.
    async fn existing_users(&self, emails: &[String]) -> StoreResult<Vec<String>>;

    /// Creates or updates one alias by address (pipeline and stages by name).
    /// Disabling keeps every record; nothing is deleted.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] naming what does not resolve.
    async fn save_alias(&self, alias: &AliasConfig) -> StoreResult<()>;

    /// Counts inbound rows per status.
    async fn inbound_counts(&self) -> StoreResult<Vec<(String, i64)>>;

    /// How many stored messages wait for processing. Reads the index of
    /// pending rows alone, so it costs the same on a database of any size
    /// (counting every status reads an entry per stored message).
    async fn pending_count(&self) -> StoreResult<i64>;

    async fn list_records(&self, filter: &RecordFilter) -> StoreResult<Page<RecordView>>;
    /// These records, in the order given (unknown ids are left out).
    async fn records_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<RecordView>>;
    async fn get_record(&self, id: Uuid) -> StoreResult<Option<RecordDetail>>;
    async fn list_inbound(&self, filter: &InboundFilter) -> StoreResult<Page<InboundView>>;
    async fn get_inbound(&self, id: Uuid) -> StoreResult<Option<InboundView>>;
    /// The messages (and their records) an inbound row became.
    async fn inbound_messages(&self, id: Uuid) -> StoreResult<Vec<InboundMessageLink>>;

    async fn inbound_raw(&self, id: Uuid) -> StoreResult<Option<Vec<u8>>>;
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
