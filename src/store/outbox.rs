//! The outbox: replies and forwards queued with their message rows, taken
//! by the sender under a lease, and their delivery results.
//!
//! `sql_outbox_store!` is expanded in each backend beside `sql_team_store!`,
//! whose imports and helpers it uses.

use async_trait::async_trait;
use uuid::Uuid;

use super::{DeliveryResult, OutboxItem, QueuedReply, ReplyContext, StoreResult};

/// Replies from records on their way to the relay.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// What a reply from `record` needs: its alias, contact, subject and threading.
    async fn reply_context(&self, record: Uuid) -> StoreResult<Option<ReplyContext>>;
    /// In one transaction: the reply's (or forward's) message row with its
    /// attachments, its Message-ID in the thread index, the outbox row and
    /// a `reply_queued` (`forward_queued`, naming the recipients) event.
    async fn queue_reply(&self, reply: &QueuedReply) -> StoreResult<()>;
    /// Takes up to `limit` due replies for `lease_ms`, counting an attempt
    /// on each; another replica does not take them while the lease runs.
    async fn claim_outbox(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> StoreResult<Vec<OutboxItem>>;
    /// Records how an attempt ended (`reply_sent` / `reply_failed` events).
    async fn finish_outbox(&self, id: Uuid, result: &DeliveryResult) -> StoreResult<()>;
    /// When the next queued reply is due, in ms since the epoch.
    async fn next_outbox_due(&self) -> StoreResult<Option<i64>>;
    /// Replies per delivery status.
    async fn outbox_counts(&self) -> StoreResult<Vec<(String, i64)>>;
}

macro_rules! sql_outbox_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl $crate::store::OutboxStore for $store {
            async fn reply_context(&self, record: Uuid) -> StoreResult<Option<ReplyContext>> {
                let pool = self.read_pool();
                let Some(row) = sqlx::query(
                    "SELECT r.id, r.number, r.title, r.pipeline_id, r.reply_token, a.address AS alias_address, \
                     a.name AS alias_name, u.email AS owner_email, u.name AS owner_name, r.contact_id \
                     FROM records r LEFT JOIN aliases a ON a.id = r.alias_id LEFT JOIN users u ON u.id = r.owner_id \
                     WHERE r.id = $1",
                )
                .bind(record)
                .fetch_optional(pool)
                .await?
                else {
                    return Ok(None);
                };
                let pipeline_id: Uuid = row.try_get("pipeline_id")?;
                let (mut alias_address, mut alias_name): (Option<String>, Option<String>) =
                    (row.try_get("alias_address")?, row.try_get("alias_name")?);
                if alias_address.is_none() {
                    if let Some(a) = sqlx::query(
                        "SELECT address, name FROM aliases WHERE pipeline_id = $1 ORDER BY enabled DESC, address LIMIT 1",
                    )
                    .bind(pipeline_id)
                    .fetch_optional(pool)
                    .await?
                    {
                        alias_address = a.try_get("address")?;
                        alias_name = a.try_get("name")?;
                    }
                }
                let owner = match row.try_get::<Option<String>, _>("owner_email")? {
                    Some(address) => Some(Mailbox {
                        address,
                        name: row.try_get::<Option<String>, _>("owner_name")?.filter(|n| !n.is_empty()),
                    }),
                    None => None,
                };
                let contact = match row.try_get::<Option<Uuid>, _>("contact_id")? {
                    Some(id) => {
                        let mut q: QueryBuilder<$db> = QueryBuilder::new(CONTACT_SELECT);
                        q.push(" WHERE id = ").push_bind(id);
                        q.build().fetch_optional(pool).await?.as_ref().map(contact_view).transpose()?
                    }
                    None => None,
                };
                // The message a reply answers: the latest one a person wrote or sent.
                let last = sqlx::query(
                    "SELECT message_id, refs, subject FROM messages WHERE record_id = $1 AND direction IN ('in', 'out') \
                     AND class IN ('normal', 'list') ORDER BY created_at DESC, id DESC LIMIT 1",
                )
                .bind(record)
                .fetch_optional(pool)
                .await?;
                let (last_message, latest_subject) = match last {
                    Some(m) => (
                        Some((m.try_get("message_id")?, string_list(&m.try_get::<String, _>("refs")?)?)),
                        m.try_get::<Option<String>, _>("subject")?.filter(|s| !s.trim().is_empty()),
                    ),
                    None => (None, None),
                };
                let auto_responders = sqlx::query(
                    "SELECT from_addr FROM messages WHERE record_id = $1 AND direction = 'in' \
                     AND from_addr IS NOT NULL GROUP BY from_addr \
                     HAVING SUM(CASE WHEN class = 'auto-reply' THEN 1 ELSE 0 END) > 0 \
                     AND SUM(CASE WHEN class = 'auto-reply' THEN 0 ELSE 1 END) = 0",
                )
                .bind(record)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Ok(r.try_get::<String, _>("from_addr")?.to_lowercase()))
                .collect::<StoreResult<Vec<_>>>()?;
                Ok(Some(ReplyContext {
                    record_id: row.try_get("id")?,
                    number: row.try_get("number")?,
                    title: row.try_get("title")?,
                    pipeline_id,
                    reply_token: row.try_get("reply_token")?,
                    alias_address,
                    alias_name: alias_name.unwrap_or_default(),
                    owner,
                    contact,
                    last_message,
                    latest_subject,
                    auto_responders,
                }))
            }

            async fn queue_reply(&self, m: &QueuedReply) -> StoreResult<()> {
                let now = Utc::now();
                let mut tx = self.begin_write().await?;
                // The same message insert processing uses, for an outbound message.
                let message = NewMessage {
                    id: m.id,
                    record_id: m.record_id,
                    inbound_id: None,
                    direction: "out",
                    message_id: &m.message_id,
                    in_reply_to: m.in_reply_to.as_deref(),
                    references: &m.references,
                    from: Some(&m.from),
                    to: &m.to,
                    cc: &m.cc,
                    reply_to: Some(&m.reply_to),
                    subject: Some(&m.subject),
                    sent_at: Some(now),
                    text_body: Some(&m.text),
                    html_body: m.html.as_deref(),
                    reply_text: None,
                    thread_rule: if m.forward_of.is_some() { "forward" } else { "reply" },
                    thread_value: m.forward_of.map(|id| id.to_string()),
                    class: "normal",
                    attachments: &m.attachments,
                    content_hash: None,
                };
                bind_message(sqlx::query(insert_message_sql!()), &message, m.pipeline_id)
                    .execute(&mut *tx)
                    .await?;
                insert_attachments(&mut tx, &message).await?;
                sqlx::query(
                    "INSERT INTO message_ids (pipeline_id, message_id, record_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (message_id, pipeline_id) DO NOTHING",
                )
                .bind(m.pipeline_id)
                .bind(super::sql::index_key(&m.message_id).as_ref())
                .bind(m.record_id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO outbox (id, record_id, actor, mail_from, rcpt_to, raw, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(m.id)
                .bind(m.record_id)
                .bind(m.actor.as_str())
                .bind(m.mail_from.as_str())
                .bind(to_json(&m.rcpt_to))
                .bind(m.raw.as_slice())
                .bind(m.first_attempt_at_ms)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                let (kind, detail) = match m.forward_of {
                    Some(_) => ("forward_queued", Some(m.rcpt_to.join(", "))),
                    None => ("reply_queued", None),
                };
                sqlx::query(
                    "INSERT INTO record_events (id, record_id, kind, message_id, actor, detail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(Uuid::now_v7())
                .bind(m.record_id)
                .bind(kind)
                .bind(m.id)
                .bind(m.actor.as_str())
                .bind(detail)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE records SET updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(m.record_id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn claim_outbox(&self, now_ms: i64, lease_ms: i64, limit: i64) -> StoreResult<Vec<OutboxItem>> {
                let mut tx = self.begin_write().await?;
                // The outer conditions are checked again on the row a waiting
                // PostgreSQL replica finally sees, so two never claim one reply.
                let rows = sqlx::query(
                    "UPDATE outbox SET locked_until = $2, attempts = attempts + 1 \
                     WHERE status = 'queued' AND next_attempt_at <= $1 AND locked_until <= $1 AND id IN \
                     (SELECT id FROM outbox WHERE status = 'queued' AND next_attempt_at <= $1 AND locked_until <= $1 \
                      ORDER BY next_attempt_at LIMIT $3) \
                     RETURNING id, mail_from, rcpt_to, raw, attempts",
                )
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
                tx.commit().await?;
                rows.iter()
                    .map(|r| {
                        Ok(OutboxItem {
                            id: r.try_get("id")?,
                            mail_from: r.try_get("mail_from")?,
                            rcpt_to: string_list(&r.try_get::<String, _>("rcpt_to")?)?,
                            raw: r.try_get("raw")?,
                            attempts: r.try_get("attempts")?,
                        })
                    })
                    .collect()
            }

            async fn finish_outbox(&self, id: Uuid, result: &DeliveryResult) -> StoreResult<()> {
                let now = Utc::now();
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("SELECT record_id, actor, kind, rcpt_to FROM outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let (record, actor): (Uuid, String) = (row.try_get("record_id")?, row.try_get("actor")?);
                let kind: String = row.try_get("kind")?;
                let notification = kind == "notification";
                let (status, reply, next, event) = match (result, notification) {
                    (DeliveryResult::Sent { reply }, false) => ("sent", reply, 0, Some("reply_sent")),
                    (DeliveryResult::Sent { reply }, true) => ("sent", reply, 0, Some("notified")),
                    (DeliveryResult::Retry { error, next_attempt_at_ms }, _) => ("queued", error, *next_attempt_at_ms, None),
                    (DeliveryResult::Failed { error }, false) => ("failed", error, 0, Some("reply_failed")),
                    (DeliveryResult::Failed { error }, true) => ("failed", error, 0, Some("notify_failed")),
                };
                // A notification is no message of the record: its event names the recipient.
                let (message_id, detail) = if notification {
                    let rcpt: String = row.try_get("rcpt_to")?;
                    let to: Vec<String> = serde_json::from_str(&rcpt).unwrap_or_default();
                    (None, format!("{}: {reply}", to.join(", ")))
                } else {
                    (Some(id), reply.clone())
                };
                sqlx::query(
                    "UPDATE outbox SET status = $1, last_reply = $2, next_attempt_at = $3, locked_until = 0, \
                     sent_at = $4 WHERE id = $5",
                )
                .bind(status)
                .bind(reply.as_str())
                .bind(next)
                .bind((status == "sent").then_some(now))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if let Some(kind) = event {
                    sqlx::query(
                        "INSERT INTO record_events (id, record_id, kind, message_id, actor, detail, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(record)
                    .bind(kind)
                    .bind(message_id)
                    .bind(actor)
                    .bind(detail)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn next_outbox_due(&self) -> StoreResult<Option<i64>> {
                let row = sqlx::query("SELECT MIN(next_attempt_at) AS due FROM outbox WHERE status = 'queued'")
                    .fetch_one(self.read_pool())
                    .await?;
                Ok(row.try_get("due")?)
            }

            async fn outbox_counts(&self) -> StoreResult<Vec<(String, i64)>> {
                sqlx::query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status ORDER BY status")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                    .collect()
            }
        }
    };
}
pub(super) use sql_outbox_store;
