//! Storage of webhooks: the event log the triggers of migration 0015 fill,
//! the webhooks added through the API, and each delivery with its attempts.
//!
//! The queries are plain SQL constants both dialects accept; the
//! `sql_webhook_store!` glue only binds and reads them, once per backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

/// A change the triggers noted, waiting to be fanned out.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub seq: i64,
    /// `record.created`, `message.received`, … (see [`crate::webhooks::EVENTS`]).
    pub kind: String,
    pub record_id: Option<Uuid>,
    /// The record, message, contact or inbound message it is about.
    pub subject_id: Uuid,
}

/// A webhook added through the API.
#[derive(Debug, Clone)]
pub struct StoredWebhook {
    pub id: Uuid,
    pub url: String,
    pub secret: String,
    /// Empty: every event.
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// One event's body for one webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// The `webhook-id` header: the same on every retry.
    pub id: String,
    pub webhook_id: Uuid,
    pub event_seq: i64,
    pub kind: String,
    pub record_id: Option<Uuid>,
    pub body: String,
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub webhook_id: Uuid,
    pub body: String,
    pub attempts: i32,
}

/// How an attempt went.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    /// `queued` (retry at `next_attempt_at`), `delivered` or `failed`.
    pub status: &'static str,
    pub next_attempt_at: i64,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// The start of its answer, or the error.
    pub response: String,
}

/// A delivery as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub record_id: Option<Uuid>,
    /// `queued`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_response: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn list_webhooks(&self) -> StoreResult<Vec<StoredWebhook>>;
    /// # Errors
    /// [`super::StoreError::Conflict`] when the URL has a webhook already.
    async fn add_webhook(&self, webhook: &StoredWebhook) -> StoreResult<()>;
    async fn remove_webhook(&self, id: Uuid) -> StoreResult<bool>;
    /// The oldest events not yet fanned out.
    async fn pending_events(&self, limit: i64) -> StoreResult<Vec<LoggedEvent>>;
    /// Stores the deliveries and notifications of `events` and removes them
    /// from the log, at once.
    async fn fan_out(
        &self,
        events: &[i64],
        deliveries: &[NewDelivery],
        notifications: &[super::QueuedNotification],
    ) -> StoreResult<()>;
    /// Claims due deliveries (each until `lease_until`), oldest first, none
    /// while an older delivery of the same record to the same webhook waits.
    async fn claim_deliveries(
        &self,
        now_ms: i64,
        lease_until: i64,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Records how attempts went, all in one transaction.
    async fn finish_deliveries(&self, results: &[(String, AttemptResult)]) -> StoreResult<()>;
    /// The soonest `next_attempt_at` of a queued delivery.
    async fn next_delivery_due(&self) -> StoreResult<Option<i64>>;
    /// A webhook's deliveries, newest first.
    async fn list_deliveries(&self, webhook: Uuid, limit: i64) -> StoreResult<Vec<DeliveryRow>>;
    /// Queues failed deliveries of a webhook again (one, or all of them).
    async fn replay_deliveries(&self, webhook: Uuid, only: Option<&str>) -> StoreResult<u64>;
}

pub(super) const LIST_WEBHOOKS: &str =
    "SELECT id, url, secret, events, created_at FROM webhooks ORDER BY created_at, id";

pub(super) const ADD_WEBHOOK: &str = "
    INSERT INTO webhooks (id, url, secret, events, created_at) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (url) DO NOTHING";

pub(super) const REMOVE_WEBHOOK: &str = "DELETE FROM webhooks WHERE id = $1";

pub(super) const PENDING_EVENTS: &str =
    "SELECT seq, kind, record_id, subject_id FROM event_log ORDER BY seq LIMIT $1";

pub(super) const INSERT_DELIVERY: &str = "
    INSERT INTO webhook_deliveries
        (id, webhook_id, event_seq, kind, record_id, body, next_attempt_at, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (id) DO NOTHING";

pub(super) const QUEUE_NOTIFICATION: &str = "
    INSERT INTO outbox (id, record_id, kind, actor, mail_from, rcpt_to, raw, next_attempt_at, created_at)
    VALUES ($1, $2, 'notification', 'emailin', $3, $4, $5, $6, $7)";

pub(super) const DELETE_EVENTS: &str = "DELETE FROM event_log WHERE seq IN (";

pub(super) const DUE_DELIVERIES: &str = "
    SELECT d.id, d.webhook_id, d.body, d.attempts
    FROM webhook_deliveries d
    WHERE d.status = 'queued' AND d.next_attempt_at <= $1 AND d.locked_until < $1
      AND NOT EXISTS (
          SELECT 1 FROM webhook_deliveries e
          WHERE e.webhook_id = d.webhook_id AND e.record_id = d.record_id
            AND e.status = 'queued' AND e.event_seq < d.event_seq)
    ORDER BY d.event_seq
    LIMIT $2";

pub(super) const CLAIM_DELIVERY: &str = "
    UPDATE webhook_deliveries SET locked_until = $1
    WHERE id = $2 AND status = 'queued' AND locked_until < $3";

pub(super) const FINISH_DELIVERY: &str = "
    UPDATE webhook_deliveries
    SET status = $1, attempts = attempts + 1, next_attempt_at = $2, locked_until = 0,
        last_status = $3, last_response = $4,
        delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END
    WHERE id = $6";

pub(super) const NEXT_DUE: &str =
    "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE status = 'queued'";

pub(super) const LIST_DELIVERIES: &str = "
    SELECT id, webhook_id, kind, record_id, status, attempts, last_status, last_response,
           created_at, delivered_at
    FROM webhook_deliveries WHERE webhook_id = $1
    ORDER BY event_seq DESC LIMIT $2";

pub(super) const REPLAY_DELIVERIES: &str = "
    UPDATE webhook_deliveries SET status = 'queued', attempts = 0, next_attempt_at = $1,
        locked_until = 0
    WHERE webhook_id = $2 AND status = 'failed' AND (CAST($3 AS TEXT) IS NULL OR id = $3)";

macro_rules! sql_webhook_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::WebhookStore for $store {
            async fn list_webhooks(&self) -> StoreResult<Vec<$crate::store::StoredWebhook>> {
                let rows = sqlx::query($crate::store::webhooks::LIST_WEBHOOKS)
                    .fetch_all(self.read_pool())
                    .await?;
                rows.iter()
                    .map(|r| {
                        let events: String = r.try_get("events")?;
                        Ok($crate::store::StoredWebhook {
                            id: r.try_get("id")?,
                            url: r.try_get("url")?,
                            secret: r.try_get("secret")?,
                            events: serde_json::from_str(&events)
                                .map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn add_webhook(&self, w: &$crate::store::StoredWebhook) -> StoreResult<()> {
                let events = serde_json::to_string(&w.events)
                    .map_err(|e| StoreError::Corrupt(format!("webhook events: {e}")))?;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::webhooks::ADD_WEBHOOK)
                    .bind(w.id)
                    .bind(&w.url)
                    .bind(&w.secret)
                    .bind(events)
                    .bind(w.created_at)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::Conflict(
                        "url: a webhook with this URL exists".into(),
                    ));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn remove_webhook(&self, id: Uuid) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::webhooks::REMOVE_WEBHOOK)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn pending_events(
                &self,
                limit: i64,
            ) -> StoreResult<Vec<$crate::store::LoggedEvent>> {
                let rows = sqlx::query($crate::store::webhooks::PENDING_EVENTS)
                    .bind(limit)
                    .fetch_all(self.read_pool())
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::LoggedEvent {
                            seq: r.try_get("seq")?,
                            kind: r.try_get("kind")?,
                            record_id: r.try_get("record_id")?,
                            subject_id: r.try_get("subject_id")?,
                        })
                    })
                    .collect()
            }

            async fn fan_out(
                &self,
                events: &[i64],
                deliveries: &[$crate::store::NewDelivery],
                notifications: &[$crate::store::QueuedNotification],
            ) -> StoreResult<()> {
                use $crate::store::webhooks as q;
                let now = Utc::now();
                let mut tx = self.begin_write().await?;
                for n in notifications {
                    sqlx::query(q::QUEUE_NOTIFICATION)
                        .bind(n.id)
                        .bind(n.record_id)
                        .bind(&n.mail_from)
                        .bind(serde_json::to_string(&n.rcpt_to).unwrap_or_default())
                        .bind(n.raw.as_slice())
                        .bind(now.timestamp_millis())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                for d in deliveries {
                    sqlx::query(q::INSERT_DELIVERY)
                        .bind(&d.id)
                        .bind(d.webhook_id)
                        .bind(d.event_seq)
                        .bind(&d.kind)
                        .bind(d.record_id)
                        .bind(&d.body)
                        .bind(now.timestamp_millis())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                if !events.is_empty() {
                    let mut del: QueryBuilder<$db> = QueryBuilder::new(q::DELETE_EVENTS);
                    let mut list = del.separated(", ");
                    for seq in events {
                        list.push_bind(*seq);
                    }
                    del.push(")");
                    del.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn claim_deliveries(
                &self,
                now_ms: i64,
                lease_until: i64,
                limit: i64,
            ) -> StoreResult<Vec<$crate::store::ClaimedDelivery>> {
                use $crate::store::webhooks as q;
                let rows = sqlx::query(q::DUE_DELIVERIES)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(self.read_pool())
                    .await?;
                let mut claimed = Vec::new();
                if rows.is_empty() {
                    return Ok(claimed);
                }
                // One transaction claims them all; a row another replica took
                // first is skipped.
                let mut tx = self.begin_write().await?;
                for r in &rows {
                    let id: String = r.try_get("id")?;
                    let done = sqlx::query(q::CLAIM_DELIVERY)
                        .bind(lease_until)
                        .bind(&id)
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    if done.rows_affected() == 1 {
                        claimed.push($crate::store::ClaimedDelivery {
                            id,
                            webhook_id: r.try_get("webhook_id")?,
                            body: r.try_get("body")?,
                            attempts: r.try_get("attempts")?,
                        });
                    }
                }
                tx.commit().await?;
                Ok(claimed)
            }

            async fn finish_deliveries(
                &self,
                results: &[(String, $crate::store::AttemptResult)],
            ) -> StoreResult<()> {
                let now = Utc::now();
                let mut tx = self.begin_write().await?;
                for (id, result) in results {
                    sqlx::query($crate::store::webhooks::FINISH_DELIVERY)
                        .bind(result.status)
                        .bind(result.next_attempt_at)
                        .bind(result.http_status.map(i32::from))
                        .bind(&result.response)
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn next_delivery_due(&self) -> StoreResult<Option<i64>> {
                let row = sqlx::query($crate::store::webhooks::NEXT_DUE)
                    .fetch_one(self.read_pool())
                    .await?;
                Ok(row.try_get("due")?)
            }

            async fn list_deliveries(
                &self,
                webhook: Uuid,
                limit: i64,
            ) -> StoreResult<Vec<$crate::store::DeliveryRow>> {
                let rows = sqlx::query($crate::store::webhooks::LIST_DELIVERIES)
                    .bind(webhook)
                    .bind(limit)
                    .fetch_all(self.read_pool())
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::DeliveryRow {
                            id: r.try_get("id")?,
                            webhook_id: r.try_get("webhook_id")?,
                            kind: r.try_get("kind")?,
                            record_id: r.try_get("record_id")?,
                            status: r.try_get("status")?,
                            attempts: r.try_get("attempts")?,
                            last_status: r.try_get("last_status")?,
                            last_response: r.try_get("last_response")?,
                            created_at: r.try_get("created_at")?,
                            delivered_at: r.try_get("delivered_at")?,
                        })
                    })
                    .collect()
            }

            async fn replay_deliveries(
                &self,
                webhook: Uuid,
                only: Option<&str>,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::webhooks::REPLAY_DELIVERIES)
                    .bind(Utc::now().timestamp_millis())
                    .bind(webhook)
                    .bind(only)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(super) use sql_webhook_store;
