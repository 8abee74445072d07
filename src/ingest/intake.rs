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
//! the batch it has just acknowledged, from the bytes still in memory,
//! provided nothing else waits for processing (so a reply never overtakes
//! its original). No sender waits for its own message's processing: a `250`
//! needs the raw rows only. Where the store allows it (SQLite, whose one
//! connection writes everything anyway), that processing shares its
//! transaction with the next batch: whatever queued up while the batch was
//! processed is stored after it and both commit at once, so that batch's
//! `250`s go out with the commit that ends the processing instead of waiting
//! for a second one. Elsewhere processing commits on its own. If processing
//! any message fails, it is rolled back and the batch stays pending (a batch
//! waiting to be stored is then stored alone); the processor then takes the
//! messages one by one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::process::{BatchError, InboundRef, Processor};
use crate::config::IntakeSettings;
use crate::domain::InboundMessage;
use crate::store::{Store, StoreError, Tx};

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
    health: IntakeHealth,
    /// Longest a submitter waits for its commit.
    deadline: Duration,
}

/// Whether intake's last commit got through (readiness reads it), and how
/// many commits there were (background work yields while the count moves).
#[derive(Clone, Default)]
pub struct IntakeHealth {
    failure: Arc<std::sync::Mutex<Option<CommitFailure>>>,
    commits: Arc<std::sync::atomic::AtomicU64>,
}

/// The last intake commit failed, and nothing has committed since.
#[derive(Debug, Clone)]
pub struct CommitFailure {
    pub error: String,
    /// The largest message of the batch that failed: a probe writes as much.
    pub bytes: usize,
    pub at: chrono::DateTime<chrono::Utc>,
}

impl IntakeHealth {
    /// `Some` while intake cannot commit.
    pub fn failure(&self) -> Option<CommitFailure> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// A commit (or a probe of the failed size) got through.
    pub fn committed(&self) {
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut failure) = self.failure.lock() {
            failure.take();
        }
    }

    /// Commits so far in this process.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn failed(&self, error: &str, bytes: usize) {
        if let Ok(mut failure) = self.failure.lock() {
            *failure = Some(CommitFailure {
                error: error.to_string(),
                bytes,
                at: chrono::Utc::now(),
            });
        }
    }
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
        let health = IntakeHealth::default();
        let deadline = Duration::from_secs(settings.commit_timeout_secs.max(1));
        let writer = Writer {
            store,
            settings,
            fast_path,
            stored,
            health: health.clone(),
        };
        // The writer gets a thread and an event loop of its own: every
        // statement is a round trip to the database driver's thread, and on
        // the shared runtime each wake-up would queue behind the sessions'
        // work, stretching every commit (and every `250`) under load. The
        // thread is named, so its CPU time shows apart (`top -H`, `bench`).
        // The task ends with the thread; a panic there resurfaces in it.
        let (finished, done) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("emailin-intake".into())
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(async {
                            writer.run(rx, shutdown).await;
                            settle().await;
                        }),
                        Err(err) => tracing::error!(error = %err, "intake writer could not start"),
                    }
                }));
                let _ = finished.send(outcome);
            });
        if let Err(err) = spawned {
            // Its queue is closed with it: every submit fails, and senders
            // are told to retry.
            tracing::error!(error = %err, "intake writer thread could not start");
        }
        let task = tokio::spawn(async move {
            if let Ok(Err(panic)) = done.await {
                std::panic::resume_unwind(panic);
            }
        });
        (
            Self {
                tx,
                health,
                deadline,
            },
            task,
        )
    }

    /// Whether the last commit got through.
    pub fn health(&self) -> IntakeHealth {
        self.health.clone()
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
        let committed = async {
            self.tx
                .send((messages, reply))
                .await
                .map_err(|_| IntakeError::ShuttingDown)?;
            answer.await.map_err(|_| IntakeError::ShuttingDown)?
        };
        // A database that stopped answering must not hold every sender: past
        // the deadline the sender is told to retry. Should the commit land
        // after all, the message is kept and the retry is its duplicate.
        match tokio::time::timeout(self.deadline, committed).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(
                    secs = self.deadline.as_secs(),
                    "intake commit deadline passed; the sender is told to retry"
                );
                Err(IntakeError::Unavailable(format!(
                    "no commit within {} s",
                    self.deadline.as_secs()
                )))
            }
        }
    }
}

/// Lets the tasks still on the writer's event loop finish before it ends.
/// The database driver hands a connection back to its pool in a task of the
/// loop that used it; dropped with the loop, that connection would close on
/// the driver's thread after the store was closed, beside the other
/// connections' close, and SQLite could leave its WAL beside the database
/// file. Bounded, so a hung driver cannot hold up the stop.
async fn settle() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metrics.num_alive_tasks() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

struct Writer {
    store: Arc<dyn Store>,
    settings: IntakeSettings,
    fast_path: Option<Processor>,
    stored: Arc<Notify>,
    health: IntakeHealth,
}

/// A batch committed and acknowledged, not processed yet: its ids and the
/// bytes still in memory.
struct Stored {
    ids: Vec<Uuid>,
    messages: Vec<InboundMessage>,
}

impl Writer {
    async fn run(self, mut rx: mpsc::Receiver<Request>, shutdown: CancellationToken) {
        // Where the store allows it, a batch is processed in the transaction
        // that then stores the next one: one commit for both.
        let together = self.fast_path.is_some() && self.store.intake_in_processing();
        let mut previous = 0usize;
        let mut unprocessed: Option<Stored> = None;
        loop {
            if let Some(stored) = unprocessed.take() {
                let take_next = together && !shutdown.is_cancelled();
                unprocessed = self
                    .process(stored, &mut rx, &mut previous, take_next)
                    .await;
                if unprocessed.is_some() {
                    continue;
                }
            }
            let Some(requests) = self.next_batch(&mut rx, &shutdown, &mut previous).await else {
                break;
            };
            unprocessed = self.store_alone(requests).await;
        }
        if let Some(stored) = unprocessed {
            self.process(stored, &mut rx, &mut previous, false).await;
        }
        // Refuse what is still queued so its senders retry instead of hanging.
        rx.close();
        while let Ok((_, reply)) = rx.try_recv() {
            let _ = reply.send(Err(IntakeError::ShuttingDown));
        }
    }

    /// Waits for the first request, then takes what else is queued (see
    /// [`Writer::take_queued`]); `None` once intake stops.
    async fn next_batch(
        &self,
        rx: &mut mpsc::Receiver<Request>,
        shutdown: &CancellationToken,
        previous: &mut usize,
    ) -> Option<Vec<Request>> {
        let first = tokio::select! {
            biased;
            msg = rx.recv() => msg,
            () = shutdown.cancelled() => None,
        }?;
        let mut batch = vec![first];
        self.take_queued(rx, &mut batch, previous, true).await;
        Some(batch)
    }

    /// Adds what is queued to `batch`, up to the batch limits. With `wait`,
    /// after a batch of several it waits a little for the rest of its
    /// senders, whose next messages are on their way.
    async fn take_queued(
        &self,
        rx: &mut mpsc::Receiver<Request>,
        batch: &mut Vec<Request>,
        previous: &mut usize,
        wait: bool,
    ) {
        let max_messages = self.settings.batch_max_messages.max(1);
        let pause = Duration::from_micros(self.settings.batch_wait_us);
        let size = |r: &Request| r.0.iter().map(|m| m.raw.len()).sum::<usize>();
        let mut count: usize = batch.iter().map(|r| r.0.len()).sum();
        let mut bytes: usize = batch.iter().map(size).sum();
        let target = (*previous).min(max_messages);
        let deadline = tokio::time::Instant::now() + pause;
        while count < max_messages && bytes < self.settings.batch_max_bytes {
            let next = match rx.try_recv() {
                Ok(next) => next,
                Err(_) if wait && *previous > 1 && count < target && !pause.is_zero() => {
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
        if count > 0 {
            *previous = count;
        }
    }

    /// Stores a batch in a transaction of its own and answers its senders.
    async fn store_alone(&self, batch: Vec<Request>) -> Option<Stored> {
        if batch.is_empty() {
            return None;
        }
        let started = std::time::Instant::now();
        let stored = self.store.insert_inbound(&messages(&batch)).await;
        answer(&self.health, batch, stored, started)
    }

    /// The fast path: processes `stored` (committed and acknowledged) in one
    /// transaction, when nothing older waits for processing (a reply never
    /// overtakes its original). With `take_next`, what queued up meanwhile
    /// is stored in that transaction after the processing and its senders
    /// are answered when the one commit returns. If processing fails, it is
    /// rolled back and `stored` stays pending for the processor, which takes
    /// the messages one by one; if the shared commit fails, the new batch is
    /// stored alone. Returns the new batch, to be processed next.
    async fn process(
        &self,
        stored: Stored,
        rx: &mut mpsc::Receiver<Request>,
        previous: &mut usize,
        take_next: bool,
    ) -> Option<Stored> {
        let Some(processor) = &self.fast_path else {
            self.stored.notify_one();
            return None;
        };
        let started = std::time::Instant::now();
        let processing = self.begin_and_process(processor, &stored).await;
        let mut batch = Vec::new();
        if take_next {
            self.take_queued(rx, &mut batch, previous, false).await;
        }
        let (processed, next) = match processing {
            Ok((tx, processed)) => self.commit_with(tx, processed, batch).await,
            Err(err) => {
                tracing::warn!(error = %err, "fast path failed; the batch is left for one-by-one processing");
                (false, self.store_alone(batch).await)
            }
        };
        tracing::debug!(
            messages = stored.ids.len(),
            processed,
            micros = started.elapsed().as_micros() as u64,
            "intake batch processed"
        );
        if !processed {
            self.stored.notify_one();
        }
        next
    }

    /// Begins a transaction and processes `stored` in it unless older
    /// messages wait for processing; returns it and whether it did. On an
    /// error the transaction is gone (rolled back).
    async fn begin_and_process(
        &self,
        processor: &Processor,
        stored: &Stored,
    ) -> Result<(Box<dyn Tx>, bool), BatchError> {
        let mut tx = self.store.begin().await?;
        if !tx.only_pending(&stored.ids).await? {
            return Ok((tx, false));
        }
        processor
            .process_fresh(tx.as_mut(), &items(&stored.ids, &stored.messages))
            .await?;
        Ok((tx, true))
    }

    /// Stores `batch` (possibly empty) in `tx`, commits, and answers its
    /// senders. Returns whether the processing in `tx` was kept, and the
    /// batch once stored; if this commit fails, the batch is stored alone.
    async fn commit_with(
        &self,
        mut tx: Box<dyn Tx>,
        processed: bool,
        batch: Vec<Request>,
    ) -> (bool, Option<Stored>) {
        let started = std::time::Instant::now();
        let written = match tx.insert_inbound(&messages(&batch)).await {
            Ok(ids) => tx.commit().await.map(|()| ids),
            Err(err) => Err(err),
        };
        match written {
            Ok(ids) => (processed, answer(&self.health, batch, Ok(ids), started)),
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "processing commit failed; its batch is left pending, the batch waiting to be stored is stored alone"
                );
                (false, self.store_alone(batch).await)
            }
        }
    }
}

/// The messages of a batch's requests, in order, as the store takes them.
fn messages(batch: &[Request]) -> Vec<&InboundMessage> {
    batch.iter().flat_map(|r| &r.0).collect()
}

/// Answers the senders of a batch: their ids once it is committed, else the
/// error, and notes in `health` whether intake can commit. Returns the
/// batch, to be processed, when it was stored.
fn answer(
    health: &IntakeHealth,
    batch: Vec<Request>,
    stored: Result<Vec<Uuid>, StoreError>,
    started: std::time::Instant,
) -> Option<Stored> {
    match &stored {
        Ok(_) => health.committed(),
        Err(err) => {
            let largest = messages(&batch).iter().map(|m| m.raw.len()).max();
            health.failed(&err.to_string(), largest.unwrap_or_default());
        }
    }
    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let count: usize = requests.iter().map(Vec::len).sum();
    match stored {
        Ok(ids) if count == 0 => {
            debug_assert!(ids.is_empty());
            None
        }
        Ok(ids) => {
            tracing::debug!(
                messages = count,
                micros = started.elapsed().as_micros() as u64,
                "intake batch committed"
            );
            let mut answer = ids.iter();
            for (request, reply) in requests.iter().zip(replies) {
                let mine: Vec<Uuid> = answer.by_ref().take(request.len()).copied().collect();
                // The caller may have gone (client disconnected): the messages
                // are stored all the same and will be processed.
                let _ = reply.send(Ok(mine));
            }
            Some(Stored {
                ids,
                messages: requests.into_iter().flatten().collect(),
            })
        }
        Err(err) => {
            tracing::error!(error = %err, messages = count, "intake commit failed");
            let err = IntakeError::Unavailable(err.to_string());
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
            None
        }
    }
}

/// Stored messages, as processing reads them, from the bytes still in memory.
fn items<'a>(ids: &[Uuid], messages: &'a [InboundMessage]) -> Vec<InboundRef<'a>> {
    ids.iter()
        .zip(messages)
        .map(|(id, m)| InboundRef {
            id: *id,
            source: &m.source,
            envelope: &m.envelope,
            raw: &m.raw,
            replay: false,
            released: false,
            too_large: super::process::too_large(m.declared_size, m.raw.len()),
        })
        .collect()
}
