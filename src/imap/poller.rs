//! One folder of one account: lease → connect → catch up → IDLE or poll,
//! reconnecting with capped exponential backoff and jitter.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{Response, Status};
use futures::TryStreamExt;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::conn::{ConnectError, Credential, ImapSession, connect};
use super::{PollState, StatusBoard};
use crate::config::{AfterStore, ImapAccountConfig};
use crate::domain::{Envelope, ImapCursor, ImapMailbox, InboundMessage, Source, sha256_hex};
use crate::ingest::Intake;
use crate::store::MailboxStore;

/// Messages fetched and committed together (one transaction each)...
const CHUNK: usize = 200;
/// ...and at most this many bytes of them.
const CHUNK_BYTES: usize = 32 * 1024 * 1024;
/// An IDLE is renewed well before the 29 minutes of RFC 2177, often enough
/// to keep the lease and to notice a mailbox that was deleted or recreated
/// (servers do not always tell an idling client).
const IDLE_CYCLE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a folder's lease outlives its last renewal: when a replica dies,
/// another one takes the folder over after this long. Renewed every IDLE
/// cycle, poll and fetched chunk.
const LEASE_TTL: Duration = Duration::from_secs(30);

/// Everything one folder's poller needs.
#[derive(Clone)]
pub struct PollerContext {
    pub account: ImapAccountConfig,
    pub folder: String,
    pub store: Arc<dyn MailboxStore>,
    pub intake: Intake,
    pub max_message_bytes: usize,
    pub board: StatusBoard,
    /// Verifies DKIM signatures (the provider's DMARC verdict is read later).
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// Identifies this process in the lease table.
    pub holder: String,
    /// Access tokens, for an account with `auth = "oauth2"`.
    pub tokens: Option<Arc<crate::oauth::TokenSource>>,
}

pub struct Poller {
    ctx: PollerContext,
    lease: String,
}

#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Connect(#[from] super::ConnectError),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("storage: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("intake: {0}")]
    Intake(#[from] crate::ingest::IntakeError),
    #[error("OAuth: {0}")]
    OAuth(#[from] crate::oauth::OAuthError),
    #[error("the lease was taken over by another process")]
    LeaseLost,
    #[error("{0}")]
    Server(String),
}

impl Poller {
    pub fn new(ctx: PollerContext) -> Self {
        let lease = format!("imap:{}/{}", ctx.account.name, ctx.folder);
        Self { ctx, lease }
    }

    /// Polls until `shutdown` fires.
    #[tracing::instrument(name = "imap", skip_all, fields(account = %self.ctx.account.name, folder = %self.ctx.folder))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_secs(1);
        while !shutdown.is_cancelled() {
            match self
                .ctx
                .store
                .try_lease(&self.lease, &self.ctx.holder, LEASE_TTL)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    self.set_state(PollState::Standby);
                    if sleep_or_stop(LEASE_TTL / 3, &shutdown).await {
                        break;
                    }
                    continue;
                }
                Err(err) => {
                    self.failed(&err.to_string());
                    if sleep_or_stop(jitter(backoff), &shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            }
            match self.session(&shutdown, &mut backoff).await {
                Ok(()) => break,
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "imap_error");
                    self.failed(&err.to_string());
                    if sleep_or_stop(jitter(backoff), &shutdown).await {
                        break;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let _ = self
            .ctx
            .store
            .release_lease(&self.lease, &self.ctx.holder)
            .await;
        self.set_state(PollState::Stopped);
    }

    /// One connection's life: returns `Ok` only on shutdown.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        backoff: &mut Duration,
    ) -> Result<(), PollError> {
        let account = &self.ctx.account;
        self.set_state(PollState::Connecting);
        let login = match &self.ctx.tokens {
            Some(tokens) => {
                let o = tokens.settings();
                let grant = match o.grant {
                    crate::config::OAuthGrant::ClientCredentials => "client credentials",
                    crate::config::OAuthGrant::RefreshToken => "refresh token",
                };
                format!("OAuth 2.0 ({}, {grant})", o.mechanism.name())
            }
            None => "password".to_string(),
        };
        self.ctx
            .board
            .update(&account.name, &self.ctx.folder, |s| s.login = login);
        let credential = match &self.ctx.tokens {
            Some(tokens) => {
                Credential::Token(tokens.settings().mechanism, tokens.access_token().await?)
            }
            None => Credential::Password(
                account
                    .resolve_password()
                    .map_err(|e| PollError::Server(e.to_string()))?,
            ),
        };
        let mut session = match connect(account, &credential).await {
            Ok(session) => session,
            Err(err) => {
                if let (ConnectError::Token(_), Some(tokens)) = (&err, &self.ctx.tokens) {
                    // Perhaps revoked early: the next attempt asks for a new one.
                    tokens.forget().await;
                }
                return Err(err.into());
            }
        };
        let mailbox = session.select(&self.ctx.folder).await?;
        let capabilities = session.capabilities().await?;
        let can_idle = capabilities.has_str("IDLE");
        let can_move = capabilities.has_str("MOVE");
        let uidvalidity = mailbox
            .uid_validity
            .ok_or_else(|| PollError::Server("SELECT returned no UIDVALIDITY".into()))?;
        let uid_next = mailbox.uid_next.unwrap_or(1);
        tracing::info!(uidvalidity, uid_next, idle = can_idle, "imap_connected");
        *backoff = Duration::from_secs(1);

        // Where to start: the stored cursor, or the mailbox's end (or the
        // backfill window) on the first run, or everything again after a
        // UIDVALIDITY change (content hashes keep that from storing twice).
        let cursor = self
            .ctx
            .store
            .imap_cursor(&account.name, &self.ctx.folder)
            .await?;
        let mut since = None;
        let mut last = match cursor {
            Some((v, uid)) if v == uidvalidity => uid,
            Some((v, _)) => {
                tracing::warn!(old = v, new = uidvalidity, "imap_uidvalidity_changed");
                0
            }
            None if account.backfill_days > 0 => {
                since = Some(
                    chrono::Utc::now() - chrono::Duration::days(i64::from(account.backfill_days)),
                );
                0
            }
            None => {
                let end = uid_next.saturating_sub(1);
                self.ctx
                    .store
                    .set_imap_cursor(&account.name, &self.ctx.folder, uidvalidity, end)
                    .await?;
                end
            }
        };
        self.ctx.board.update(&account.name, &self.ctx.folder, |s| {
            s.uidvalidity = Some(uidvalidity);
            s.last_uid = Some(last);
        });

        loop {
            self.renew_lease().await?;
            self.set_state(PollState::Fetching);
            last = self
                .catch_up(&mut session, uidvalidity, last, since.take(), can_move)
                .await?;

            if can_idle {
                self.set_state(PollState::Idle);
                let mut idle = session.idle();
                timed(idle.init()).await?;
                tracing::debug!("imap_idle");
                let (wait, stop) = idle.wait_with_timeout(IDLE_CYCLE);
                let outcome = tokio::select! {
                    r = wait => Some(r),
                    () = shutdown.cancelled() => None,
                };
                drop(stop);
                tracing::debug!(?outcome, "imap_idle_end");
                session = timed(idle.done()).await?;
                match outcome {
                    None => break,
                    Some(Ok(IdleResponse::NewData(data))) => {
                        // An untagged NO/BAD/BYE (e.g. the mailbox was deleted) means
                        // this selection is unusable: reconnect and select again.
                        if let Response::Data {
                            status: Status::No | Status::Bad | Status::Bye,
                            outcome,
                            ..
                        } = data.parsed()
                        {
                            return Err(PollError::Server(format!(
                                "server ended IDLE: {}",
                                outcome.information.as_deref().unwrap_or("no reason given")
                            )));
                        }
                    }
                    Some(Ok(IdleResponse::Timeout | IdleResponse::ManualInterrupt)) => {}
                    Some(Err(err)) => return Err(err.into()),
                }
            } else {
                self.set_state(PollState::Polling);
                let wait =
                    Duration::from_secs(account.poll_interval_secs.max(1)).min(LEASE_TTL / 3);
                if sleep_or_stop(wait, shutdown).await {
                    break;
                }
                session.noop().await?;
            }
        }
        let _ = session.logout().await;
        Ok(())
    }

    /// Stores every message above `last` (or since `since`), chunk by chunk,
    /// each chunk in one intake transaction that also moves the cursor.
    async fn catch_up(
        &self,
        session: &mut ImapSession,
        uidvalidity: u32,
        last: u32,
        since: Option<chrono::DateTime<chrono::Utc>>,
        can_move: bool,
    ) -> Result<u32, PollError> {
        let query = match since {
            Some(date) => format!("SINCE {}", date.format("%d-%b-%Y")),
            None => format!("UID {}:*", last.saturating_add(1)),
        };
        // "n:*" also matches the highest UID when it is below n; filter.
        let mut uids: Vec<u32> = session
            .uid_search(&query)
            .await?
            .into_iter()
            .filter(|u| *u > last)
            .collect();
        uids.sort_unstable();
        let mut last = last;
        for chunk in uids.chunks(CHUNK) {
            self.renew_lease().await?;
            // Sizes first: oversized messages are never downloaded, and one
            // fetch holds at most CHUNK_BYTES of mail in memory.
            let sizes = fetch_sizes(session, chunk).await?;
            let chunk_end = chunk.iter().copied().max().unwrap_or(last);
            let batches = fetch_batches(&sizes, self.ctx.max_message_bytes);
            for (n, batch) in batches.iter().enumerate() {
                // The last batch also carries the cursor past skipped messages.
                let covered = if n + 1 == batches.len() {
                    chunk_end
                } else {
                    batch.last_uid().unwrap_or(last)
                };
                last = self
                    .store_chunk(session, uidvalidity, batch, covered)
                    .await?
                    .max(last);
                // A message over the limit stays where it is: its header alone is stored.
                self.after_store(session, &batch.uids, can_move).await;
            }
            self.ctx
                .board
                .update(&self.ctx.account.name, &self.ctx.folder, |s| {
                    s.last_uid = Some(last)
                });
        }
        Ok(last)
    }

    /// Fetches and stores `uids` in one intake transaction, moving the cursor
    /// to `covered` (which may lie past them: skipped messages); returns it.
    async fn store_chunk(
        &self,
        session: &mut ImapSession,
        uidvalidity: u32,
        batch: &Batch,
        covered: u32,
    ) -> Result<u32, PollError> {
        let account = &self.ctx.account;
        let uids = &batch.uids;
        // (uid, bytes, the declared size when only the header is kept)
        let mut fetched: Vec<(u32, Vec<u8>, Option<u64>)> =
            Vec::with_capacity(uids.len() + batch.oversized.len());
        if !uids.is_empty() {
            let mut stream = session
                .uid_fetch(&uid_set(uids), "(UID BODY.PEEK[])")
                .await?;
            while let Some(fetch) = stream.try_next().await? {
                let Some(uid) = fetch.uid else { continue };
                match fetch.body() {
                    Some(body) => fetched.push((uid, body.to_vec(), None)),
                    None => tracing::warn!(uid, "imap message without a body skipped"),
                }
            }
        }
        if !batch.oversized.is_empty() {
            let over: Vec<u32> = batch.oversized.iter().map(|(uid, _)| *uid).collect();
            let mut stream = session
                .uid_fetch(&uid_set(&over), "(UID BODY.PEEK[HEADER])")
                .await?;
            while let Some(fetch) = stream.try_next().await? {
                let Some(uid) = fetch.uid else { continue };
                let size = batch
                    .oversized
                    .iter()
                    .find(|(u, _)| *u == uid)
                    .map_or(0, |(_, size)| *size as u64);
                let header = fetch.header().unwrap_or_default();
                let kept = &header[..header.len().min(MAX_HEADER_BYTES)];
                fetched.push((uid, kept.to_vec(), Some(size)));
            }
        }
        fetched.sort_unstable_by_key(|(uid, _, _)| *uid);

        // Already stored (a UIDVALIDITY resync, a replayed backfill): skip by content.
        let hashes: Vec<String> = fetched.iter().map(|(_, raw, _)| sha256_hex(raw)).collect();
        let mailbox = ImapMailbox {
            account: account.name.clone(),
            folder: self.ctx.folder.clone(),
        };
        let origin = mailbox.origin();
        let known: HashSet<String> = self
            .ctx
            .store
            .known_sha256(&origin, &hashes)
            .await?
            .into_iter()
            .collect();
        let fresh: Vec<(u32, Vec<u8>, Option<u64>)> = fetched
            .into_iter()
            .zip(hashes)
            .filter(|(_, hash)| !known.contains(hash))
            .map(|(fetched, _)| fetched)
            .collect();
        // DKIM for the whole chunk at once: the lookups overlap, so a slow
        // resolver costs one deadline per chunk, not one per message.
        let verdicts: Vec<Option<String>> = match &self.ctx.auth {
            Some(auth) => {
                futures::future::join_all(fresh.iter().map(|(_, raw, _)| auth.verify_dkim(raw)))
                    .await
            }
            None => vec![None; fresh.len()],
        };
        let mut messages = Vec::with_capacity(fresh.len());
        for ((uid, raw, declared), auth_results) in fresh.into_iter().zip(verdicts) {
            let envelope = Envelope {
                rcpt_to: vec![account.alias.clone()],
                auth_results,
                ..Envelope::default()
            };
            let source = Source::Imap(mailbox.clone());
            let mut message = InboundMessage::new(source, envelope, raw)
                .with_cursor(ImapCursor { uidvalidity, uid });
            if let Some(size) = declared {
                message = message.header_only(size);
            }
            messages.push(message);
        }
        let stored = messages.len() as u64;
        let covers_highest = messages
            .last()
            .and_then(|m| m.cursor.as_ref())
            .is_some_and(|c| c.uid == covered);
        self.ctx.intake.submit_all(messages).await?;
        if !covers_highest {
            // The chunk's last UIDs were skipped: move the cursor past them too.
            self.ctx
                .store
                .set_imap_cursor(&account.name, &self.ctx.folder, uidvalidity, covered)
                .await?;
        }
        tracing::info!(messages = stored, last_uid = covered, "imap_fetched");
        self.ctx.board.update(&account.name, &self.ctx.folder, |s| {
            s.messages_stored += stored
        });
        Ok(covered)
    }

    /// What the account says to do with stored messages. Failures are logged:
    /// the messages are stored and the cursor is past them either way.
    async fn after_store(&self, session: &mut ImapSession, uids: &[u32], can_move: bool) {
        if uids.is_empty() {
            return;
        }
        let set = uid_set(uids);
        let result: Result<(), async_imap::error::Error> = async {
            match self.ctx.account.after_store() {
                AfterStore::Keep => {}
                AfterStore::Seen => {
                    session
                        .uid_store(&set, "+FLAGS.SILENT (\\Seen)")
                        .await?
                        .try_collect::<Vec<_>>()
                        .await?;
                }
                AfterStore::Move(folder) if can_move => session.uid_mv(&set, &folder).await?,
                AfterStore::Move(folder) => {
                    session.uid_copy(&set, &folder).await?;
                    delete(session, &set).await?;
                }
                AfterStore::Delete => delete(session, &set).await?,
            }
            Ok(())
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "imap after-store action failed");
        }
    }

    async fn renew_lease(&self) -> Result<(), PollError> {
        if self
            .ctx
            .store
            .try_lease(&self.lease, &self.ctx.holder, LEASE_TTL)
            .await?
        {
            Ok(())
        } else {
            Err(PollError::LeaseLost)
        }
    }

    fn set_state(&self, state: PollState) {
        self.ctx
            .board
            .update(&self.ctx.account.name, &self.ctx.folder, |s| {
                s.state = state
            });
    }

    fn failed(&self, error: &str) {
        self.ctx
            .board
            .update(&self.ctx.account.name, &self.ctx.folder, |s| {
                s.state = PollState::Backoff;
                s.last_error = Some(error.to_string());
            });
    }
}

/// Groups UIDs (in order) into fetches of at most [`CHUNK_BYTES`]; messages
/// over `max_message` are left out (logged). Always at least one group, so
/// the cursor moves even when every message was left out.
fn fetch_batches(sizes: &[(u32, usize)], max_message: usize) -> Vec<Batch> {
    let mut batches: Vec<Batch> = vec![Batch::default()];
    let mut bytes = 0usize;
    for &(uid, size) in sizes {
        if size > max_message {
            tracing::warn!(
                uid,
                size,
                "imap message larger than smtp.max_message_bytes: only its header is stored"
            );
            if let Some(batch) = batches.last_mut() {
                batch.oversized.push((uid, size));
            }
            continue;
        }
        if bytes + size > CHUNK_BYTES && batches.last().is_some_and(|b| !b.uids.is_empty()) {
            batches.push(Batch::default());
            bytes = 0;
        }
        if let Some(batch) = batches.last_mut() {
            batch.uids.push(uid);
        }
        bytes += size;
    }
    batches
}

/// One fetch: whole messages, and messages over the size limit whose
/// header alone is stored. UIDs ascend across batches.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    uids: Vec<u32>,
    oversized: Vec<(u32, usize)>,
}

impl Batch {
    fn last_uid(&self) -> Option<u32> {
        let over = self.oversized.iter().map(|(uid, _)| *uid);
        self.uids.iter().copied().chain(over).max()
    }
}

/// Most bytes of a header kept for a message over the size limit.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// An IMAP UID set: `1,5,7`.
fn uid_set(uids: &[u32]) -> String {
    uids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `(uid, RFC822.SIZE)` of each message in `uids`, in UID order.
async fn fetch_sizes(
    session: &mut ImapSession,
    uids: &[u32],
) -> Result<Vec<(u32, usize)>, PollError> {
    let set = uid_set(uids);
    let mut sizes: Vec<(u32, usize)> = session
        .uid_fetch(&set, "(UID RFC822.SIZE)")
        .await?
        .try_filter_map(|f| async move { Ok(f.uid.map(|uid| (uid, f.size.unwrap_or(0) as usize))) })
        .try_collect()
        .await?;
    sizes.sort_unstable();
    Ok(sizes)
}

async fn delete(session: &mut ImapSession, set: &str) -> Result<(), async_imap::error::Error> {
    session
        .uid_store(set, "+FLAGS.SILENT (\\Deleted)")
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    session
        .uid_expunge(set)
        .await?
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// Every exchange with the server is bounded: a server that stops answering
/// must not hold the poller forever.
async fn timed<T>(
    fut: impl std::future::Future<Output = Result<T, async_imap::error::Error>>,
) -> Result<T, PollError> {
    match tokio::time::timeout(Duration::from_secs(60), fut).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(PollError::Server(
            "no answer from the server within 60 s".into(),
        )),
    }
}

/// Sleeps; `true` when shutdown came first.
async fn sleep_or_stop(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => false,
        () = shutdown.cancelled() => true,
    }
}

/// ±25 % so reconnecting pollers do not move in step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::rng().random_range(0.75..1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_batches_bound_bytes_and_keep_oversized_for_their_header() {
        let mb = 1024 * 1024;
        let sizes = [(1, 20 * mb), (2, 20 * mb), (3, 100 * mb), (4, mb)];
        let batch = |uids: &[u32], oversized: &[(u32, usize)]| Batch {
            uids: uids.to_vec(),
            oversized: oversized.to_vec(),
        };
        assert_eq!(
            fetch_batches(&sizes, 50 * mb),
            vec![batch(&[1], &[]), batch(&[2, 4], &[(3, 100 * mb)])]
        );
        let only_oversized = fetch_batches(&[(9, 100 * mb)], 50 * mb);
        assert_eq!(only_oversized, vec![batch(&[], &[(9, 100 * mb)])]);
        assert_eq!(only_oversized[0].last_uid(), Some(9));
    }
}
