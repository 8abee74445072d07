//! Storage of the mail intake kept: what the admin pages and the API show
//! of it (lists, counts, raw bytes), and what people do with it (release,
//! drop, process again). Intake writes it (`Store::insert_inbound`).
//!
//! `sql_inbound_store!` is expanded in each backend beside `sql_store!`,
//! whose imports and helpers (`inbound_view`, `page_cursor`) it uses.

use async_trait::async_trait;
use uuid::Uuid;

use super::{InboundFilter, InboundMessageLink, InboundView, Page, StoreResult};

/// Stored inbound mail, for people.
#[async_trait]
pub trait InboundStore: Send + Sync {
    /// Puts stored messages back to `pending` so processing runs again; by id,
    /// by status, or both. Returns how many rows were reset.
    async fn reset_for_replay(&self, status: Option<&str>, id: Option<Uuid>) -> StoreResult<u64>;

    /// Releases a quarantined message: back to `pending`, processed
    /// normally (its quarantine reason no longer applies). `false` when it
    /// is not quarantined.
    async fn release_inbound(&self, id: Uuid) -> StoreResult<bool>;

    /// Drops a quarantined message: status `dropped`, raw bytes kept.
    /// `false` when it is not quarantined.
    async fn drop_inbound(&self, id: Uuid) -> StoreResult<bool>;

    /// Counts inbound rows per status.
    async fn inbound_counts(&self) -> StoreResult<Vec<(String, i64)>>;

    /// How many stored messages wait for processing. Reads the index of
    /// pending rows alone, so it costs the same on a database of any size
    /// (counting every status reads an entry per stored message).
    async fn pending_count(&self) -> StoreResult<i64>;

    async fn list_inbound(&self, filter: &InboundFilter) -> StoreResult<Page<InboundView>>;

    async fn get_inbound(&self, id: Uuid) -> StoreResult<Option<InboundView>>;

    /// The messages (and their records) an inbound row became.
    async fn inbound_messages(&self, id: Uuid) -> StoreResult<Vec<InboundMessageLink>>;

    async fn inbound_raw(&self, id: Uuid) -> StoreResult<Option<Vec<u8>>>;
}

macro_rules! sql_inbound_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl $crate::store::InboundStore for $store {
            async fn reset_for_replay(&self, status: Option<&str>, id: Option<Uuid>) -> StoreResult<u64> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new("UPDATE inbound SET status = 'pending' WHERE status <> 'pending'");
                if let Some(status) = status {
                    q.push(" AND status = ").push_bind(status);
                }
                if let Some(id) = id {
                    q.push(" AND id = ").push_bind(id);
                }
                let mut tx = self.begin_write().await?;
                let n = q.build().execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n)
            }

            async fn release_inbound(&self, id: Uuid) -> StoreResult<bool> {
                self.write_one(
                    sqlx::query(
                        "UPDATE inbound SET status = 'pending', released = TRUE WHERE id = $1 AND status = 'quarantined'",
                    )
                    .bind(id),
                )
                .await
            }

            async fn drop_inbound(&self, id: Uuid) -> StoreResult<bool> {
                self.write_one(
                    sqlx::query(
                        "UPDATE inbound SET status = 'dropped', outcome = 'dropped by an operator' \
                         WHERE id = $1 AND status = 'quarantined'",
                    )
                    .bind(id),
                )
                .await
            }

            async fn inbound_counts(&self) -> StoreResult<Vec<(String, i64)>> {
                sqlx::query("SELECT status, COUNT(*) AS n FROM inbound GROUP BY status ORDER BY status")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                    .collect()
            }

            async fn pending_count(&self) -> StoreResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM inbound WHERE status = 'pending'")
                    .fetch_one(self.read_pool())
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn list_inbound(&self, f: &InboundFilter) -> StoreResult<Page<InboundView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(INBOUND_SELECT);
                q.push(" WHERE 1 = 1");
                if let Some(status) = &f.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(cursor) = f.cursor {
                    q.push(" AND id < ").push_bind(cursor);
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = rows.iter().map(inbound_view).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = page_cursor(&mut items, f.limit, |r| r.id);
                Ok(Page { items, next_cursor })
            }

            async fn get_inbound(&self, id: Uuid) -> StoreResult<Option<InboundView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(INBOUND_SELECT);
                q.push(" WHERE id = ").push_bind(id);
                q.build().fetch_optional(self.read_pool()).await?.as_ref().map(inbound_view).transpose()
            }

            async fn inbound_messages(&self, id: Uuid) -> StoreResult<Vec<InboundMessageLink>> {
                let rows = sqlx::query(
                    "SELECT m.id, m.record_id, r.number, p.name FROM messages m \
                     JOIN records r ON r.id = m.record_id JOIN pipelines p ON p.id = r.pipeline_id \
                     WHERE m.inbound_id = $1 ORDER BY r.number",
                )
                .bind(id)
                .fetch_all(self.read_pool())
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(InboundMessageLink {
                            message_id: r.try_get("id")?,
                            record_id: r.try_get("record_id")?,
                            record_number: r.try_get("number")?,
                            pipeline: r.try_get("name")?,
                        })
                    })
                    .collect()
            }

            async fn inbound_raw(&self, id: Uuid) -> StoreResult<Option<Vec<u8>>> {
                let row = sqlx::query("SELECT r.raw FROM inbound i JOIN inbound_raw r ON r.seq = i.seq WHERE i.id = $1")
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?;
                Ok(row.map(|r| r.try_get("raw")).transpose()?)
            }
        }
    };
}
pub(super) use sql_inbound_store;
