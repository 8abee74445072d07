//! Storage for a contact's life and the data's: unsubscribing, erasing a
//! contact's mail for good, and removing raw bytes past the retention
//! window.
//!
//! The queries are plain SQL constants both dialects accept; the
//! `sql_lifecycle_store!` glue only binds and runs them, once per backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

/// What an erasure removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Erasure {
    /// Records that named the contact: they stay, anonymised.
    pub records: u64,
    /// Messages whose bodies, subject and addresses were removed.
    pub messages: u64,
    /// Attachments removed (their bytes too, where nothing else uses them).
    pub attachments: u64,
    /// Stored raw messages removed.
    pub raw: u64,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawRemoval {
    pub messages: u64,
    pub bytes: i64,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// Marks a contact unsubscribed (keeping the first time) or clears it.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] for an unknown or erased contact.
    async fn set_unsubscribed(&self, contact: Uuid, unsubscribed: bool) -> StoreResult<()>;
    /// Erases a contact's raw mail, message bodies and attachments
    /// everywhere, anonymises the contact and its records' titles, and
    /// writes a `contact_erased` event (by `actor`) on each record, in one
    /// transaction.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] for an unknown contact,
    /// [`super::StoreError::Conflict`] for one erased already.
    async fn erase_contact(&self, contact: Uuid, actor: &str) -> StoreResult<Erasure>;
    /// Removes the raw bytes of up to `limit` messages received before
    /// `before` whose processing is over (processed, ignored or dropped),
    /// oldest first. Pending, failed and quarantined mail keeps its bytes.
    async fn remove_old_raw(&self, before: DateTime<Utc>, limit: i64) -> StoreResult<RawRemoval>;
}

pub(super) const SET_UNSUBSCRIBED: &str = "
    UPDATE contacts SET unsubscribed_at = CASE WHEN $1 THEN COALESCE(unsubscribed_at, $2) ELSE NULL END
    WHERE id = $3 AND erased_at IS NULL";

pub(super) const CONTACT_FOR_ERASURE: &str = "SELECT email, erased_at FROM contacts WHERE id = $1";

/// The messages an erasure empties: every message in and out on the
/// contact's records (comments are the team's own), and whatever the
/// contact sent elsewhere. `$1` the contact, `$2` its address.
macro_rules! erased_messages {
    () => {
        "SELECT id FROM messages WHERE (direction <> 'comment' AND record_id IN \
         (SELECT id FROM records WHERE contact_id = $1)) OR LOWER(from_addr) = $2"
    };
}

pub(super) const ERASED_HASHES: &str = concat!(
    "SELECT DISTINCT sha256 FROM attachments WHERE message_id IN (",
    erased_messages!(),
    ")"
);

pub(super) const DELETE_ATTACHMENTS: &str = concat!(
    "DELETE FROM attachments WHERE message_id IN (",
    erased_messages!(),
    ")"
);

pub(super) const DELETE_UNUSED_BLOB: &str = "
    DELETE FROM attachment_blobs WHERE sha256 = $1
    AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.sha256 = $1)";

pub(super) const ERASED_INBOUND: &str = concat!(
    "SELECT id, seq FROM inbound WHERE id IN (SELECT inbound_id FROM messages WHERE id IN (",
    erased_messages!(),
    ")) OR LOWER(mail_from) = $2"
);

pub(super) const DELETE_RAW: &str = "DELETE FROM inbound_raw WHERE seq = $1";

/// Mail not yet through processing is dropped with its bytes.
pub(super) const MARK_RAW_ERASED: &str = "
    UPDATE inbound SET raw_removed_at = $1, raw_removed_why = 'erased', mail_from = NULL,
        details = NULL, auth_results = NULL,
        status = CASE WHEN status IN ('pending', 'failed', 'quarantined') THEN 'dropped' ELSE status END
    WHERE seq = $2";

/// Replies and notifications about the contact's records lose their bytes;
/// one not yet sent is never sent.
pub(super) const ERASE_OUTBOX: &str = concat!(
    "UPDATE outbox SET raw = $3, rcpt_to = '[]', \
     last_reply = CASE WHEN status = 'queued' THEN 'not sent: the contact was erased' ELSE last_reply END, \
     status = CASE WHEN status = 'queued' THEN 'failed' ELSE status END \
     WHERE record_id IN (SELECT id FROM records WHERE contact_id = $1) OR id IN (",
    erased_messages!(),
    ")"
);

/// Their words leave the search index with their mail (the indexer then
/// writes the anonymised records again).
pub(super) const ERASE_SEARCH: &str = concat!(
    "DELETE FROM search_docs WHERE (message_id IS NULL AND record_id IN \
     (SELECT id FROM records WHERE contact_id = $1)) OR message_id IN (",
    erased_messages!(),
    ")"
);

pub(super) const ERASE_DELIVERIES: &str = "
    UPDATE webhook_deliveries SET body = '{\"erased\":true}'
    WHERE record_id IN (SELECT id FROM records WHERE contact_id = $1)";

pub(super) const ERASE_MESSAGES: &str = concat!(
    "UPDATE messages SET text_body = NULL, html_body = NULL, reply_text = NULL, subject = NULL, \
     from_addr = CASE WHEN direction = 'in' THEN NULL ELSE from_addr END, \
     from_name = CASE WHEN direction = 'in' THEN NULL ELSE from_name END, \
     to_addrs = '[]', cc_addrs = '[]', reply_to = NULL WHERE id IN (",
    erased_messages!(),
    ")"
);

pub(super) const CONTACT_RECORDS: &str = "SELECT id FROM records WHERE contact_id = $1";

pub(super) const ANONYMISE_RECORD: &str =
    "UPDATE records SET title = '(erased)', updated_at = $1 WHERE id = $2";

pub(super) const ERASED_EVENT: &str = "
    INSERT INTO record_events (id, record_id, kind, actor, detail, created_at)
    VALUES ($1, $2, 'contact_erased', $3, $4, $5)";

pub(super) const ANONYMISE_CONTACT: &str = "
    UPDATE contacts SET email = $1, name = '', erased_at = $2, bounce_status = NULL
    WHERE id = $3";

pub(super) const OLD_RAW: &str = "
    SELECT seq, size FROM inbound
    WHERE received_at < $1 AND raw_removed_at IS NULL
      AND status IN ('processed', 'ignored', 'dropped')
    ORDER BY received_at LIMIT $2";

pub(super) const MARK_RAW_EXPIRED: &str =
    "UPDATE inbound SET raw_removed_at = $1, raw_removed_why = 'retention' WHERE seq = $2";

/// The address an erased contact keeps: unique, and never deliverable.
pub fn erased_address(contact: Uuid) -> String {
    format!("erased-{}@erased.invalid", contact.simple())
}

macro_rules! sql_lifecycle_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::LifecycleStore for $store {
            async fn set_unsubscribed(
                &self,
                contact: ::uuid::Uuid,
                unsubscribed: bool,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::lifecycle::SET_UNSUBSCRIBED)
                    .bind(unsubscribed)
                    .bind(::chrono::Utc::now())
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn erase_contact(
                &self,
                contact: ::uuid::Uuid,
                actor: &str,
            ) -> StoreResult<$crate::store::Erasure> {
                use $crate::store::lifecycle as q;
                let now = ::chrono::Utc::now();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(q::CONTACT_FOR_ERASURE)
                    .bind(contact)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if row
                    .try_get::<Option<::chrono::DateTime<::chrono::Utc>>, _>("erased_at")?
                    .is_some()
                {
                    return Err(StoreError::Conflict(
                        "this contact was erased already".into(),
                    ));
                }
                let email: String = row.try_get("email")?;
                let email = email.to_lowercase();
                let mut report = $crate::store::Erasure::default();

                let hashes: Vec<String> = sqlx::query(q::ERASED_HASHES)
                    .bind(contact)
                    .bind(&email)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("sha256"))
                    .collect::<Result<_, _>>()?;
                report.attachments = sqlx::query(q::DELETE_ATTACHMENTS)
                    .bind(contact)
                    .bind(&email)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                for hash in &hashes {
                    sqlx::query(q::DELETE_UNUSED_BLOB)
                        .bind(hash)
                        .execute(&mut *tx)
                        .await?;
                }

                let inbound = sqlx::query(q::ERASED_INBOUND)
                    .bind(contact)
                    .bind(&email)
                    .fetch_all(&mut *tx)
                    .await?;
                for r in &inbound {
                    let seq: i64 = r.try_get("seq")?;
                    report.raw += sqlx::query(q::DELETE_RAW)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    sqlx::query(q::MARK_RAW_ERASED)
                        .bind(now)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                }

                sqlx::query(q::ERASE_OUTBOX)
                    .bind(contact)
                    .bind(&email)
                    .bind(Vec::<u8>::new())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(q::ERASE_DELIVERIES)
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(q::ERASE_SEARCH)
                    .bind(contact)
                    .bind(&email)
                    .execute(&mut *tx)
                    .await?;
                report.messages = sqlx::query(q::ERASE_MESSAGES)
                    .bind(contact)
                    .bind(&email)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();

                let records: Vec<::uuid::Uuid> = sqlx::query(q::CONTACT_RECORDS)
                    .bind(contact)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get("id"))
                    .collect::<Result<_, _>>()?;
                report.records = u64::try_from(records.len()).unwrap_or(u64::MAX);
                let detail = format!(
                    "{} messages, {} attachments and {} raw messages erased",
                    report.messages, report.attachments, report.raw
                );
                for record in &records {
                    sqlx::query(q::ANONYMISE_RECORD)
                        .bind(now)
                        .bind(record)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(q::ERASED_EVENT)
                        .bind(::uuid::Uuid::now_v7())
                        .bind(record)
                        .bind(actor)
                        .bind(&detail)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(q::ANONYMISE_CONTACT)
                    .bind(q::erased_address(contact))
                    .bind(now)
                    .bind(contact)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(report)
            }

            async fn remove_old_raw(
                &self,
                before: ::chrono::DateTime<::chrono::Utc>,
                limit: i64,
            ) -> StoreResult<$crate::store::RawRemoval> {
                use $crate::store::lifecycle as q;
                let now = ::chrono::Utc::now();
                let mut tx = self.begin_write().await?;
                let rows = sqlx::query(q::OLD_RAW)
                    .bind(before)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut removed = $crate::store::RawRemoval::default();
                for r in &rows {
                    let seq: i64 = r.try_get("seq")?;
                    sqlx::query(q::DELETE_RAW)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(q::MARK_RAW_EXPIRED)
                        .bind(now)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                    removed.messages += 1;
                    removed.bytes += r.try_get::<i64, _>("size")?;
                }
                tx.commit().await?;
                Ok(removed)
            }
        }
    };
}

pub(super) use sql_lifecycle_store;
