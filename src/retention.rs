//! Retention: raw bytes older than `[retention] raw_days` are removed once
//! their message is through processing. The records, messages and
//! attachments made of them stay; the inbound row says when and why.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
use crate::store::{RawRemoval, Store, StoreResult};

/// Removes what is past the window, batch by batch, calling `progress`
/// with the running total after each batch. Stops early when `stop` is
/// cancelled.
///
/// # Errors
/// The store's, with what was removed before it committed.
pub async fn run_once(
    store: &dyn Store,
    settings: &RetentionSettings,
    stop: &CancellationToken,
    mut progress: impl FnMut(RawRemoval),
) -> StoreResult<RawRemoval> {
    let mut total = RawRemoval::default();
    let Some(days) = settings.raw_days else {
        return Ok(total);
    };
    let before = Utc::now() - chrono::Duration::days(i64::from(days));
    let batch = i64::from(settings.batch.max(1));
    while !stop.is_cancelled() {
        let removed = store.remove_old_raw(before, batch).await?;
        total.messages += removed.messages;
        total.bytes += removed.bytes;
        if removed.messages > 0 {
            progress(total);
        }
        if i64::try_from(removed.messages).unwrap_or(i64::MAX) < batch {
            break;
        }
    }
    Ok(total)
}

/// The background task: a run now, then one every `interval_secs`.
pub async fn run(store: Arc<dyn Store>, settings: RetentionSettings, stop: CancellationToken) {
    let interval = Duration::from_secs(settings.interval_secs.max(1));
    loop {
        match run_once(store.as_ref(), &settings, &stop, |_| {}).await {
            Ok(t) if t.messages > 0 => {
                tracing::info!(
                    messages = t.messages,
                    bytes = t.bytes,
                    "retention_removed_raw"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "retention run failed; trying again later"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
