//! The webhook worker: fans logged events out to deliveries (one replica at
//! a time, under a lease) and delivers due ones (any replica, each claimed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Target, Webhook, config_webhook_id, secret_key, sign};
use crate::config::{WebhookConfig, WebhookDeliverySettings};
use crate::ingest::{Pace, Pacing};
use crate::store::{
    AttemptResult, ClaimedDelivery, ConversationItem, LoggedEvent, NewDelivery, Store, StoreResult,
    now_ms,
};

/// The lease the dispatcher holds.
const DISPATCH_LEASE: &str = "webhooks-dispatch";
/// Events fanned out per transaction.
const EVENTS_PER_ROUND: i64 = 1000;
/// Deliveries claimed per round (sent at once, recorded in one transaction).
const DELIVERIES_PER_ROUND: i64 = 50;
/// Longest the worker holds back while intake is busy; then it catches up.
const MAX_DEFER: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Webhooks {
    store: Arc<dyn Store>,
    settings: WebhookDeliverySettings,
    configured: Vec<WebhookConfig>,
    /// This process's name for leases.
    holder: String,
    wake: Arc<Notify>,
    tls: Result<TlsConnector, String>,
    /// Mails people about events; `None` without a relay.
    notifier: Option<super::Notifier>,
    /// Intake's commits: while they move, this worker yields.
    intake: Option<crate::ingest::IntakeHealth>,
}

impl Webhooks {
    pub fn new(
        store: Arc<dyn Store>,
        settings: WebhookDeliverySettings,
        configured: Vec<WebhookConfig>,
        wake: Arc<Notify>,
        notifier: Option<super::Notifier>,
    ) -> Self {
        Webhooks {
            store,
            settings,
            configured,
            holder: format!("webhooks-{}", Uuid::new_v4().simple()),
            wake,
            tls: super::target::tls_connector(),
            notifier,
            intake: None,
        }
    }

    /// Yields to intake: while mail is being taken in, work in small,
    /// paced batches, for at most 30 s at a stretch.
    pub fn yielding_to(mut self, intake: crate::ingest::IntakeHealth) -> Self {
        self.intake = Some(intake);
        self
    }

    /// The webhooks of the file and of the API; an API one whose secret no
    /// longer reads is left out (and logged).
    pub async fn all(&self) -> StoreResult<Vec<Webhook>> {
        all_webhooks(self.store.as_ref(), &self.configured).await
    }

    /// Looks for due deliveries now (after a replay).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Works until `stop` fires. Under load it works in batches at most
    /// every poll interval (unless a batch was full), so its writes stay few
    /// beside intake's.
    pub async fn run(self, stop: CancellationToken) {
        let every = Duration::from_millis(self.settings.poll_interval_ms);
        let lease = Duration::from_millis(self.settings.poll_interval_ms.max(1000) * 10);
        // When this worker last took the lease; it is renewed at half its time.
        let mut leased_at: Option<Instant> = None;
        let mut pacing = Pacing::new(self.intake.clone(), MAX_DEFER);
        while !stop.is_cancelled() {
            let defer = pacing.round() == Pace::Defer;
            let (events, deliveries) = if defer {
                (EVENTS_PER_ROUND / 10, DELIVERIES_PER_ROUND / 5)
            } else {
                (EVENTS_PER_ROUND, DELIVERIES_PER_ROUND)
            };
            let mut full = false;
            // A read first: the lease (a write) is taken only when there is work.
            match self.store.pending_events(1).await.map(|e| !e.is_empty()) {
                Ok(true) if self.hold_lease(&mut leased_at, lease).await => {
                    match self.dispatch(events).await {
                        Ok(n) => full |= n as i64 >= events,
                        Err(e) => tracing::warn!(error = %e, "webhooks: fanning out events"),
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhooks: event log"),
            }
            match self.deliver_due(deliveries).await {
                Ok(n) => full |= n as i64 >= deliveries,
                Err(e) => tracing::warn!(error = %e, "webhooks: delivering"),
            }
            if full && !defer {
                continue;
            }
            // Paced, a wake-up (new deliveries, a replay) waits its turn.
            let woken = async {
                match defer {
                    true => std::future::pending().await,
                    false => self.wake.notified().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => {}
                () = woken => {}
                () = tokio::time::sleep(every) => {}
            }
        }
        let _ = self.store.release_lease(DISPATCH_LEASE, &self.holder).await;
    }

    /// Whether this worker holds the dispatch lease, taking or renewing it
    /// when half of it has passed.
    async fn hold_lease(&self, leased_at: &mut Option<Instant>, lease: Duration) -> bool {
        if leased_at.is_some_and(|at| at.elapsed() < lease / 2) {
            return true;
        }
        match self
            .store
            .try_lease(DISPATCH_LEASE, &self.holder, lease)
            .await
        {
            Ok(true) => {
                *leased_at = Some(Instant::now());
                true
            }
            Ok(false) => {
                *leased_at = None;
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: lease");
                false
            }
        }
    }

    /// Turns the oldest logged events into deliveries; how many events.
    pub async fn dispatch(&self, limit: i64) -> StoreResult<usize> {
        let events = self.store.pending_events(limit).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let hooks = self.all().await?;
        let mut deliveries = Vec::new();
        let mut notifications = Vec::new();
        let mut users: Option<Vec<crate::store::UserView>> = None;
        let mut records = RecordCache::default();
        for event in &events {
            if let (Some(notifier), Some(record)) = (&self.notifier, event.record_id)
                && matches!(
                    event.kind.as_str(),
                    "record.created" | "record.reopened" | "comment.created"
                )
                && let Some(detail) = records.get(self.store.as_ref(), record).await?
            {
                if users.is_none() {
                    users = Some(crate::store::all_users(self.store.as_ref()).await?);
                }
                let known = users.as_deref().unwrap_or_default();
                notifications.extend(notifier.notices(
                    &event.kind,
                    event.subject_id,
                    detail,
                    known,
                ));
            }
            let wanting: Vec<&Webhook> = hooks.iter().filter(|h| h.wants(&event.kind)).collect();
            if wanting.is_empty() {
                continue;
            }
            let body = json!({
                "type": event.kind,
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "data": self.data(event, &mut records).await?,
            })
            .to_string();
            for hook in wanting {
                deliveries.push(NewDelivery {
                    id: format!("msg_{}", Uuid::now_v7().simple()),
                    webhook_id: hook.id,
                    event_seq: event.seq,
                    kind: event.kind.clone(),
                    record_id: event.record_id,
                    body: body.clone(),
                });
            }
        }
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        self.store
            .fan_out(&seqs, &deliveries, &notifications)
            .await?;
        if !deliveries.is_empty() {
            self.wake.notify_one();
        }
        if let (Some(notifier), false) = (&self.notifier, notifications.is_empty()) {
            notifier.wake.notify_one();
        }
        Ok(events.len())
    }

    /// The API's view of what an event is about (`null` if it is gone).
    async fn data(&self, event: &LoggedEvent, records: &mut RecordCache) -> StoreResult<Value> {
        let store = &self.store;
        let value = match event.kind.split('.').next() {
            Some("record") => records
                .get(store.as_ref(), event.subject_id)
                .await?
                .map(|d| json!({ "record": d.record })),
            Some("message" | "comment") => match event.record_id {
                Some(record) => records.get(store.as_ref(), record).await?.map(|d| {
                    let message = d.conversation.iter().find_map(|item| match item {
                        ConversationItem::Message(m) if m.id == event.subject_id => Some(m),
                        _ => None,
                    });
                    json!({ "record": d.record, "message": message })
                }),
                None => None,
            },
            Some("contact") => store
                .get_contact(event.subject_id)
                .await?
                .map(|d| json!({ "contact": d.contact })),
            Some("inbound") => store
                .get_inbound(event.subject_id)
                .await?
                .map(|i| json!({ "inbound": i })),
            _ => None,
        };
        Ok(value.unwrap_or(Value::Null))
    }

    /// Delivers what is due; how many were tried.
    pub async fn deliver_due(&self, limit: i64) -> StoreResult<usize> {
        let now = now_ms();
        let timeout = Duration::from_secs(self.settings.timeout_secs);
        let lease_until = now + i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX) + 5_000;
        let claimed = self.store.claim_deliveries(now, lease_until, limit).await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let hooks = self.all().await?;
        // A batch never holds two deliveries of one record to one webhook
        // (the later one waits), so they can go out side by side.
        let attempts = claimed.iter().map(|delivery| async {
            let result = match hooks.iter().find(|h| h.id == delivery.webhook_id) {
                Some(hook) => self.attempt(hook, delivery, timeout).await,
                None => AttemptResult {
                    status: "failed",
                    next_attempt_at: now,
                    http_status: None,
                    response: "the webhook was removed".into(),
                },
            };
            (delivery.id.clone(), result)
        });
        let results = futures::future::join_all(attempts).await;
        self.store.finish_deliveries(&results).await?;
        Ok(claimed.len())
    }

    async fn attempt(
        &self,
        hook: &Webhook,
        delivery: &ClaimedDelivery,
        timeout: Duration,
    ) -> AttemptResult {
        let timestamp = chrono::Utc::now().timestamp();
        let headers = [
            ("webhook-id", delivery.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                sign(&hook.key, &delivery.id, timestamp, &delivery.body),
            ),
        ];
        let outcome = match (&self.tls, Target::parse(&hook.url)) {
            (Err(e), _) => Err(e.clone()),
            (_, Err(e)) => Err(e),
            (Ok(tls), Ok(target)) => target.post(tls, &headers, &delivery.body, timeout).await,
        };
        let attempts = u32::try_from(delivery.attempts).unwrap_or(u32::MAX) + 1;
        let (ok, http_status, response) = match outcome {
            Ok((status, body)) => ((200..300).contains(&status), Some(status), body),
            Err(e) => (false, None, e),
        };
        let status = match (ok, attempts >= self.settings.max_attempts) {
            (true, _) => "delivered",
            (false, true) => "failed",
            (false, false) => "queued",
        };
        if !ok {
            tracing::info!(webhook = %hook.url, id = %delivery.id, attempts, ?http_status,
                %response, "webhook delivery not accepted");
        }
        AttemptResult {
            status,
            next_attempt_at: now_ms() + backoff(&self.settings, attempts),
            http_status,
            response,
        }
    }
}

/// The records one dispatch round has read: a new record's `created` and
/// its first message need one read, not two.
#[derive(Default)]
struct RecordCache(std::collections::HashMap<Uuid, Option<crate::store::RecordDetail>>);

impl RecordCache {
    async fn get(
        &mut self,
        store: &dyn Store,
        id: Uuid,
    ) -> StoreResult<Option<&crate::store::RecordDetail>> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(id) {
            slot.insert(store.get_record(id).await?);
        }
        Ok(self.0.get(&id).and_then(Option::as_ref))
    }
}

/// The wait before attempt `attempts + 1`, in milliseconds: doubling from
/// `retry_initial_secs`, at most `retry_max_secs`, less up to a fifth.
fn backoff(s: &WebhookDeliverySettings, attempts: u32) -> i64 {
    let base = s
        .retry_initial_secs
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(s.retry_max_secs.max(s.retry_initial_secs));
    let ms = i64::try_from(base.saturating_mul(1000)).unwrap_or(i64::MAX);
    ms - rand::rng().random_range(0..=ms / 5)
}

/// The webhooks of the file and of the API.
///
/// # Errors
/// Storage errors.
pub async fn all_webhooks(
    store: &dyn Store,
    configured: &[WebhookConfig],
) -> StoreResult<Vec<Webhook>> {
    let mut hooks: Vec<Webhook> = configured
        .iter()
        .filter_map(|c| {
            let key = secret_key(c.secret.expose()).ok()?;
            Some(Webhook {
                id: config_webhook_id(&c.url),
                url: c.url.clone(),
                key,
                events: c.events.clone(),
                source: "config",
            })
        })
        .collect();
    for stored in store.list_webhooks().await? {
        match secret_key(&stored.secret) {
            Ok(key) => hooks.push(Webhook {
                id: stored.id,
                url: stored.url,
                key,
                events: stored.events,
                source: "api",
            }),
            Err(e) => {
                tracing::error!(webhook = %stored.url, error = %e, "webhook secret unreadable")
            }
        }
    }
    Ok(hooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = WebhookDeliverySettings {
            max_attempts: 8,
            retry_initial_secs: 5,
            retry_max_secs: 60,
            timeout_secs: 10,
            poll_interval_ms: 500,
        };
        let first = backoff(&s, 1);
        assert!((4_000..=5_000).contains(&first), "{first}");
        let third = backoff(&s, 3);
        assert!((16_000..=20_000).contains(&third), "{third}");
        let late = backoff(&s, 20);
        assert!((48_000..=60_000).contains(&late), "{late}");
    }
}
