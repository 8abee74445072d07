//! Intake: make raw messages durable, many per transaction (group commit).
//!
//! Every source calls [`Intake::submit`] and acknowledges its sender only
//! when it returns `Ok`: by then the bytes are committed. One writer task
//! owns the write path: it takes everything that queued up while the
//! previous batch was being written, commits it in one transaction, then
//! answers every waiting caller. Under load one fsync carries dozens of
//! messages; with a single sender a batch is one message and nothing waits
//! for a timer.
//!
//! The fast path: when a [`Processor`] is given, the writer then processes
//! the batch it has just acknowledged, from the bytes still in memory, in a
//! second transaction, provided nothing else waits for processing (so a
//! reply never overtakes its original). Senders do not wait for it: their
//! `250` depends on the raw rows only. If processing any message fails, that
//! transaction is rolled back and the batch stays pending; the processor
//! then takes the messages one by one. Meanwhile the next batch queues up.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::InboundMessage;
use super::process::{InboundRef, Processor};
use crate::config::IntakeSettings;
use crate::store::Store;

/// Why a message could not be stored; the sender should retry later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntakeError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("intake is shutting down")]
    ShuttingDown,
}

type Reply = oneshot::Sender<Result<Vec<Uuid>, IntakeError>>;

/// Messages submitted together (committed in the same transaction) and where
/// to send their ids.
type Request = (Vec<InboundMessage>, Reply);

/// Handle to the writer task; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    tx: mpsc::Sender<Request>,
}

impl Intake {
    /// Starts the writer task. With `fast_path`, batches are processed in
    /// their intake transaction when possible. `stored` is notified after
    /// every commit that left messages pending, so the processor wakes up.
    /// The task ends when every handle is dropped or `shutdown` fires, after
    /// answering what it already took.
    pub fn start(
        store: Arc<dyn Store>,
        settings: IntakeSettings,
        fast_path: Option<Processor>,
        stored: Arc<Notify>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let capacity = settings.batch_max_messages.max(1) * 4;
        let (tx, rx) = mpsc::channel(capacity);
        let writer = Writer {
            store,
            settings,
            fast_path,
            stored,
        };
        // The writer gets a thread and an event loop of its own: every
        // statement is a round trip to the database driver's thread, and on
        // the shared runtime each wake-up would queue behind the sessions'
        // work, stretching every commit (and every `250`) under load.
        let task =
            tokio::task::spawn_blocking(
                move || match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(writer.run(rx, shutdown)),
                    Err(err) => tracing::error!(error = %err, "intake writer could not start"),
                },
            );
        (Self { tx }, task)
    }

    /// Stores `message` durably and returns its inbound id.
    ///
    /// # Errors
    /// [`IntakeError`] when the commit failed or intake is stopping; nothing
    /// of the message was kept, so the sender must be told to retry.
    pub async fn submit(&self, message: InboundMessage) -> Result<Uuid, IntakeError> {
        let ids = self.submit_all(vec![message]).await?;
        ids.into_iter().next().ok_or(IntakeError::ShuttingDown)
    }

    /// Stores `messages` durably in ONE transaction (all or none) and returns
    /// their ids in order. A poller uses this so its cursor never passes a
    /// message that was not stored.
    ///
    /// # Errors
    /// As [`Intake::submit`]; then none of the messages was kept.
    pub async fn submit_all(
        &self,
        messages: Vec<InboundMessage>,
    ) -> Result<Vec<Uuid>, IntakeError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((messages, reply))
            .await
            .map_err(|_| IntakeError::ShuttingDown)?;
        answer.await.map_err(|_| IntakeError::ShuttingDown)?
    }
}

struct Writer {
    store: Arc<dyn Store>,
    settings: IntakeSettings,
    fast_path: Option<Processor>,
    stored: Arc<Notify>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        let max_messages = self.settings.batch_max_messages.max(1);
        let wait = std::time::Duration::from_micros(self.settings.batch_wait_us);
        let mut batch: Vec<Request> = Vec::with_capacity(max_messages);
        let mut previous = 0usize;
        loop {
            // Wait for the first request, then take whatever else is already queued.
            let first = tokio::select! {
                biased;
                msg = rx.recv() => msg,
                () = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            let size = |r: &Request| r.0.iter().map(|m| m.raw.len()).sum::<usize>();
            let (mut count, mut bytes) = (first.0.len(), size(&first));
            batch.push(first);
            // Take what is queued; after a batch of several, wait a little for
            // the rest of its senders, whose next messages are on their way.
            let target = previous.min(max_messages);
            let deadline = tokio::time::Instant::now() + wait;
            while count < max_messages && bytes < self.settings.batch_max_bytes {
                let next = match rx.try_recv() {
                    Ok(next) => next,
                    Err(_) if previous > 1 && count < target && !wait.is_zero() => {
                        match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(next)) => next,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    Err(_) => break,
                };
                count += next.0.len();
                bytes += size(&next);
                batch.push(next);
            }
            previous = count;

            let (requests, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
            let messages: Vec<&InboundMessage> = requests.iter().flatten().collect();
            let started = std::time::Instant::now();
            match self.store.insert_inbound(&messages).await {
                Ok(ids) => {
                    tracing::debug!(
                        messages = count,
                        bytes,
                        micros = started.elapsed().as_micros() as u64,
                        "intake batch committed"
                    );
                    let mut answer = ids.iter();
                    for (request, reply) in requests.iter().zip(replies) {
                        let mine: Vec<Uuid> =
                            answer.by_ref().take(request.len()).copied().collect();
                        // The caller may have gone (client disconnected): the messages
                        // are stored all the same and will be processed.
                        let _ = reply.send(Ok(mine));
                    }
                    if !self.process_now(&ids, &messages).await {
                        self.stored.notify_one();
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, messages = count, "intake commit failed");
                    let err = IntakeError::Unavailable(err.to_string());
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
        }
        // Refuse what is still queued so its senders retry instead of hanging.
        rx.close();
        while let Ok((_, reply)) = rx.try_recv() {
            let _ = reply.send(Err(IntakeError::ShuttingDown));
        }
    }

    /// The fast path: processes a batch just committed and acknowledged,
    /// from the bytes still in memory, when nothing else waits for
    /// processing (so a reply never overtakes its original). Returns whether
    /// it did; otherwise, or when processing any message fails, the batch is
    /// left pending for the processor, which takes the messages one by one.
    async fn process_now(&self, ids: &[Uuid], messages: &[&InboundMessage]) -> bool {
        let Some(processor) = &self.fast_path else {
            return false;
        };
        let started = std::time::Instant::now();
        let items: Vec<InboundRef<'_>> = ids
            .iter()
            .zip(messages)
            .map(|(id, m)| InboundRef {
                id: *id,
                source: m.source.as_str(),
                envelope: &m.envelope,
                raw: &m.raw,
                replay: false,
                released: false,
            })
            .collect();
        let result = async {
            let mut tx = self.store.begin().await.map_err(|e| e.to_string())?;
            if !tx.only_pending(ids).await.map_err(|e| e.to_string())? {
                return Ok(false);
            }
            processor.process_fresh(tx.as_mut(), &items).await?;
            tx.commit().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(true)
        }
        .await;
        match result {
            Ok(done) => {
                tracing::debug!(
                    messages = ids.len(),
                    done,
                    micros = started.elapsed().as_micros() as u64,
                    "intake batch processed"
                );
                done
            }
            Err(err) => {
                // Dropping the transaction rolled it back; the rows stay pending.
                tracing::warn!(error = %err, "fast path failed; the batch is left for one-by-one processing");
                false
            }
        }
    }
}
