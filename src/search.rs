//! The search indexer: turns what the database queued (new and changed
//! records and messages) into search documents, off the path mail takes
//! in. One replica at a time holds its lease; the documents of a batch are
//! written in one transaction with the queue entries they consume.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::ingest::{IntakeHealth, Pace, Pacing};
use crate::store::Store;

const LEASE: &str = "search-index";
const LEASE_TTL: Duration = Duration::from_secs(30);
/// Queue entries one transaction indexes.
pub const BATCH: i64 = 500;
/// While intake commits mail, indexing waits (search lags by at most this),
/// so intake's commits (one writer on SQLite) do not queue behind index
/// writes; the backlog is caught up in full batches once mail stops.
pub const MAX_DEFER: Duration = Duration::from_secs(30);
/// Queue entries one transaction indexes once mail has been arriving for
/// longer than [`MAX_DEFER`], with a pause of `idle` after each: short
/// write transactions, so commits never wait long behind one.
pub const ARRIVING_BATCH: i64 = 50;
/// Documents written since the last statistics refresh that call for one.
pub const ANALYZE_AFTER: usize = 10_000;

/// Indexes until `stop`; when the queue is empty it looks again after
/// `idle`. While intake commits mail (`intake`) it waits, for at most
/// [`MAX_DEFER`], then indexes in small steps until mail stops.
pub async fn run(
    store: Arc<dyn Store>,
    holder: String,
    idle: Duration,
    intake: Option<IntakeHealth>,
    stop: CancellationToken,
) {
    let mut leased_at: Option<Instant> = None;
    let mut since_analyze = 0;
    let mut pacing = Pacing::new(intake, MAX_DEFER);
    while !stop.is_cancelled() {
        let pace = pacing.round();
        let batch = if pace == Pace::Busy {
            ARRIVING_BATCH
        } else {
            BATCH
        };
        let held = leased_at.is_some_and(|at| at.elapsed() < LEASE_TTL / 2)
            || match store.try_lease(LEASE, &holder, LEASE_TTL).await {
                Ok(true) => {
                    leased_at = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(e) => {
                    tracing::warn!(error = %e, "search index: lease");
                    false
                }
            };
        let busy = if pace == Pace::Defer {
            false
        } else if held {
            match store.index_pending(batch).await {
                Ok(n) => {
                    since_analyze += n;
                    // A large backlog drained (a migration, a reindex): the
                    // planner learns which words are rare.
                    if n == 0 && since_analyze >= ANALYZE_AFTER {
                        since_analyze = 0;
                        if let Err(e) = store.analyze_search().await {
                            tracing::warn!(error = %e, "search index: analyze");
                        }
                    }
                    n > 0 && pace == Pace::Quiet
                }
                Err(e) => {
                    tracing::warn!(error = %e, "search index: batch failed; trying again");
                    false
                }
            }
        } else {
            leased_at = None;
            false
        };
        if !busy {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(idle) => {}
            }
        }
    }
    if leased_at.is_some() {
        let _ = store.release_lease(LEASE, &holder).await;
    }
}

/// Indexes everything queued now (the CLI's `search reindex`, benchmarks).
///
/// # Errors
/// The store's.
pub async fn index_all(store: &dyn Store) -> crate::store::StoreResult<usize> {
    let mut total = 0;
    loop {
        let n = store.index_pending(BATCH).await?;
        total += n;
        if n == 0 {
            store.analyze_search().await?;
            return Ok(total);
        }
    }
}
