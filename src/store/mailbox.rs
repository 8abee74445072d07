//! Storage the IMAP poller reaches: cursors, the content hashes already
//! stored from a mailbox, and leases. Messages themselves go through intake.
//!
//! `sql_mailbox_store!` is expanded in each backend beside `sql_store!`,
//! whose imports and helpers (`upsert_cursor`, `INSERT_CHUNK`) it uses.

use async_trait::async_trait;

use super::StoreResult;

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

macro_rules! sql_mailbox_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl MailboxStore for $store {
            async fn imap_cursor(&self, account: &str, folder: &str) -> StoreResult<Option<(u32, u32)>> {
                let row = sqlx::query("SELECT uidvalidity, last_uid FROM imap_state WHERE account = $1 AND folder = $2")
                    .bind(account)
                    .bind(folder)
                    .fetch_optional(self.read_pool())
                    .await?;
                let Some(r) = row else { return Ok(None) };
                let (v, u): (i64, i64) = (r.try_get("uidvalidity")?, r.try_get("last_uid")?);
                Ok(Some((
                    u32::try_from(v).map_err(|_| StoreError::Corrupt("uidvalidity".into()))?,
                    u32::try_from(u).map_err(|_| StoreError::Corrupt("last_uid".into()))?,
                )))
            }

            async fn set_imap_cursor(&self, account: &str, folder: &str, uidvalidity: u32, uid: u32) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                upsert_cursor(&mut tx, account, folder, uidvalidity, uid).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn known_sha256(&self, origin: &str, hashes: &[String]) -> StoreResult<Vec<String>> {
                let mut found = Vec::new();
                for chunk in hashes.chunks(INSERT_CHUNK) {
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("SELECT DISTINCT sha256 FROM inbound WHERE source = 'imap' AND helo = ");
                    q.push_bind(origin).push(" AND sha256 IN (");
                    let mut list = q.separated(", ");
                    for h in chunk {
                        list.push_bind(h.as_str());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(self.read_pool()).await? {
                        found.push(row.try_get("sha256")?);
                    }
                }
                Ok(found)
            }

            async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> StoreResult<bool> {
                let now = Utc::now().timestamp_millis();
                let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) \
                     DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at < $4 RETURNING holder",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row.is_some())
            }

            async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
                let q = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder);
                self.write_one(q).await.map(|_| ())
            }
        }
    };
}
pub(super) use sql_mailbox_store;
