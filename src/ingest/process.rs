//! Processing: stored raw message → records, contacts, messages, events.
//!
//! parse → route → contact → thread → apply, per message, inside a batch
//! transaction. Each message runs under a savepoint: if it fails, only its
//! own writes are undone and its raw row is marked `failed` with the error;
//! the batch goes on. Messages are taken in arrival order, so a reply never
//! overtakes the message it answers.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::classify::{Class, Classification};
use super::decide::{Action, Decision, Facts, Refusal, Rules, decide, must_check_sender};
use super::outcome::QuarantineReason;
use super::outcome::{BounceResult, IgnoreReason, Outcome, PipelineResult, Report};
use super::parse::ParsedMail;
use super::plan::{Plan, PlanError, PlannedRoute, plan};
use super::shape::{ShapeLimits, header_bytes};
use super::thread::ThreadKey;
use crate::config::{Settings, UntrustedThread};
use crate::domain::{
    AuthPolicy, BlockList, BlockListHandle, Directory, DirectoryHandle, Dmarc, EmailAddress,
    ReplyKey, dmarc_verdict, is_role_address, trusted_header_verdict,
};
use crate::domain::{Envelope, Source};
use crate::store::{
    ContactMark, NewMessage, NewRecord, PendingInbound, RecordState, Store, StoreError, Tx,
};

/// The trust rules processing applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub blocked: BlockListHandle,
    pub untrusted_thread: UntrustedThread,
    /// Verifies the reply tokens of `alias+r-<token>` recipients.
    pub reply_key: ReplyKey,
    /// Our own `Authentication-Results` authserv-id (SMTP mail).
    pub authserv_id: String,
    /// IMAP account name → the provider's authserv-id trusted for its mail.
    pub imap_authserv: HashMap<String, String>,
    /// Messages over these are recorded as rejected, never parsed.
    pub shape: ShapeLimits,
}

impl Policy {
    pub fn new(settings: &Settings, reply_key: ReplyKey, blocked: BlockList) -> Self {
        Self {
            blocked: BlockListHandle::new(blocked),
            untrusted_thread: settings.processing.untrusted_thread,
            reply_key,
            authserv_id: settings.smtp.hostname.clone(),
            imap_authserv: settings
                .imap
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.authserv_id.clone()?)))
                .collect(),
            shape: ShapeLimits {
                max_parts: settings.processing.max_mime_parts,
                max_depth: settings.processing.max_mime_depth,
            },
        }
    }

    /// The policy of `settings` with the deployment's reply-token key from the database.
    ///
    /// # Errors
    /// The key cannot be read or created.
    pub async fn load(settings: &Settings, store: &dyn Store) -> Result<Self, StoreError> {
        let secret = store.server_secret(REPLY_KEY_SECRET).await?;
        let blocked = block_list(settings, store).await?;
        Ok(Self::new(settings, ReplyKey::new(&secret), blocked))
    }
}

/// The blocked senders in force: the config file's and the API's.
///
/// # Errors
/// The API's list cannot be read.
pub async fn block_list(settings: &Settings, store: &dyn Store) -> Result<BlockList, StoreError> {
    let mut entries = settings.blocked_senders.clone();
    entries.extend(
        store
            .list_blocked_senders()
            .await?
            .into_iter()
            .map(|b| b.entry),
    );
    Ok(BlockList::new(&entries))
}

/// The name of the reply-token signing secret in the database.
pub const REPLY_KEY_SECRET: &str = "reply-token-key";

/// Runs stored messages through processing.
#[derive(Clone)]
pub struct Processor {
    store: Arc<dyn Store>,
    directory: DirectoryHandle,
    policy: Arc<Policy>,
    batch: usize,
}

impl Processor {
    pub fn new(
        store: Arc<dyn Store>,
        directory: DirectoryHandle,
        policy: Policy,
        batch: usize,
    ) -> Self {
        Self {
            store,
            directory,
            policy: Arc::new(policy),
            batch: batch.max(1),
        }
    }

    /// Processes until nothing is pending, woken by `stored` (intake commits)
    /// or by `poll` elapsing; stops when `shutdown` fires, after the batch in hand.
    pub async fn run(self, stored: Arc<Notify>, poll: Duration, shutdown: CancellationToken) {
        let mut failures = 0u32;
        loop {
            match self.drain().await {
                Ok(_) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(error = %err, "processing batch failed; will retry");
                }
            }
            let wait = if failures == 0 {
                poll
            } else {
                backoff(failures).min(poll.max(Duration::from_secs(1)) * 4)
            };
            tokio::select! {
                () = stored.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => break,
            }
        }
    }

    /// Processes batches until none is pending; returns how many messages were processed.
    ///
    /// # Errors
    /// A store error that aborted a batch (its messages stay `pending`).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.process_batch().await?;
            total += n;
            if n < self.batch {
                return Ok(total);
            }
        }
    }

    async fn process_batch(&self) -> Result<usize, StoreError> {
        let started = std::time::Instant::now();
        let mut tx = self.store.begin().await?;
        let pending = tx.pending(self.batch).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let directory = self.directory.current();
        let mut outcomes = Vec::with_capacity(pending.len());
        for inbound in &pending {
            tx.savepoint().await?;
            let mut report = Report::default();
            // Flushed inside the savepoint, so a failing write is this message's.
            let processed = match process_guarded(
                tx.as_mut(),
                &self.policy,
                &inbound.as_ref(),
                Planned::From(&directory),
                &mut ThreadIndex::Database,
                &mut report,
            )
            .await
            {
                Ok(outcome) => tx
                    .flush()
                    .await
                    .map(|()| outcome)
                    .map_err(ProcessError::from),
                Err(err) => Err(err),
            };
            let outcome = match processed {
                Ok(outcome) => {
                    tx.release_savepoint().await?;
                    outcome
                }
                Err(err) => {
                    // If the connection itself is gone this fails too and the
                    // whole batch stays pending for the next attempt.
                    tx.rollback_to_savepoint().await?;
                    tracing::warn!(inbound_id = %inbound.id, error = %err, "message_failed");
                    Outcome::Failed(err.to_string())
                }
            };
            let mut row = outcome.to_row();
            row.details = report.to_json();
            outcomes.push((inbound.id, row));
        }
        tx.set_outcomes(&outcomes).await?;
        tx.commit().await?;
        tracing::debug!(
            messages = pending.len(),
            micros = started.elapsed().as_micros() as u64,
            "processing batch committed"
        );
        Ok(pending.len())
    }

    /// The fast path: processes messages just stored (and the only ones
    /// pending, see [`Tx::only_pending`]), in order, without savepoints, and
    /// records their outcomes. Any processing error aborts the whole call:
    /// the caller must roll `tx` back, so the messages stay pending and are
    /// processed one by one later.
    ///
    /// # Errors
    /// The first message's error that stopped processing.
    pub async fn process_fresh(
        &self,
        tx: &mut dyn Tx,
        items: &[InboundRef<'_>],
    ) -> Result<(), String> {
        let directory = self.directory.current();
        let mut plans = Vec::with_capacity(items.len());
        for item in items {
            let limits = self.policy.shape;
            let planned = std::panic::catch_unwind(|| plan_of(&directory, &limits, item))
                .map_err(|_| format!("planning {} panicked", item.id))?;
            plans.push(planned);
        }
        // One lookup in the thread index for the whole batch, not one per message.
        let keys: Vec<(Uuid, &str, Cow<'_, [ThreadKey]>)> = plans
            .iter()
            .flatten()
            .flat_map(|plan| {
                plan.routes.iter().map(|route| {
                    (
                        route.route.pipeline.id,
                        plan.mail.message_id.as_str(),
                        lookup_keys(&plan.classification.class, &route.keys),
                    )
                })
            })
            .collect();
        let mut wanted: HashMap<Uuid, Vec<&str>> = HashMap::new();
        for (pipeline, message_id, keys) in &keys {
            wanted
                .entry(*pipeline)
                .or_default()
                .extend(index_ids(message_id, keys));
        }
        let mut index = ThreadIndex::prefetch(tx, wanted)
            .await
            .map_err(|e| e.to_string())?;
        let mut outcomes = Vec::with_capacity(items.len());
        for (item, planned) in items.iter().zip(plans) {
            let mut report = Report::default();
            let outcome = process_guarded(
                tx,
                &self.policy,
                item,
                Planned::Made(planned),
                &mut index,
                &mut report,
            )
            .await
            .map_err(|e| e.to_string())?;
            let mut row = outcome.to_row();
            row.details = report.to_json();
            outcomes.push((item.id, row));
        }
        // The batch's rows and outcomes, written together (what is still
        // buffered goes with the outcomes): a failing write fails the call.
        tx.set_outcomes(&outcomes).await.map_err(|e| e.to_string())
    }
}

/// A stored message as processing reads it, borrowed from wherever it is held.
#[derive(Debug, Clone, Copy)]
pub struct InboundRef<'a> {
    pub id: Uuid,
    pub source: &'a Source,
    pub envelope: &'a Envelope,
    pub raw: &'a [u8],
    /// Processing ran on it before (a replay): check what it already applied.
    pub replay: bool,
    /// Released from quarantine by an operator.
    pub released: bool,
    /// Only the header of a message this large was kept (over the limit).
    pub too_large: Option<u64>,
}

/// The size of a message only part of which (`kept` bytes, its header) was
/// stored, if that is so.
pub(super) fn too_large(size: Option<u64>, kept: usize) -> Option<u64> {
    size.filter(|size| *size > kept as u64)
}

impl PendingInbound {
    fn as_ref(&self) -> InboundRef<'_> {
        InboundRef {
            id: self.id,
            source: &self.source,
            envelope: &self.envelope,
            raw: &self.raw,
            replay: self.attempts > 0,
            released: self.released,
            too_large: too_large(u64::try_from(self.size).ok(), self.raw.len()),
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(8)))
}

/// Why one message could not be processed (its raw row keeps the error).
#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("pipeline {0} has no open stage")]
    NoOpenStage(String),
    #[error("processing panicked: {0}")]
    Panic(String),
}

/// [`process_one`], with a panic turned into an error: a bug met by one
/// message marks that message `failed`; it never ends the intake writer or
/// the processor task, which every later message needs.
async fn process_guarded(
    tx: &mut dyn Tx,
    policy: &Policy,
    inbound: &InboundRef<'_>,
    planned: Planned<'_>,
    index: &mut ThreadIndex,
    report: &mut Report,
) -> Result<Outcome, ProcessError> {
    match AssertUnwindSafe(process_one(tx, policy, inbound, planned, index, report))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(inbound_id = %inbound.id, panic = %what, "processing panicked");
            Err(ProcessError::Panic(what))
        }
    }
}

#[tracing::instrument(skip_all, fields(inbound_id = %inbound.id, source = %inbound.source.kind(), message_id))]
async fn process_one(
    tx: &mut dyn Tx,
    policy: &Policy,
    inbound: &InboundRef<'_>,
    planned: Planned<'_>,
    index: &mut ThreadIndex,
    report: &mut Report,
) -> Result<Outcome, ProcessError> {
    if let Some(size) = inbound.too_large {
        // Only the header was kept: shown to the operator, never a record.
        report.header_of(inbound.raw);
        report.decided_by.push(format!(
            "the message is {size} bytes, over the size limit: only its header was kept"
        ));
        tracing::info!(size, "message_too_large");
        return Ok(Outcome::Rejected("too large"));
    }
    // Parse, route, thread keys (unless the batch did)
    let planned = match planned {
        Planned::Made(planned) => planned,
        Planned::From(directory) => plan_of(directory, &policy.shape, inbound),
    };
    let Plan {
        mail,
        classification,
        routes,
    } = match planned {
        Ok(plan) => plan,
        Err(PlanError::NoAlias) => {
            report
                .decided_by
                .push("no enabled alias among the recipients".into());
            return Ok(Outcome::Ignored(IgnoreReason::NoAlias));
        }
        Err(PlanError::TooComplex { reason, shape }) => {
            // Kept and shown (raw bytes, header), never parsed whole.
            report.header_of(header_bytes(inbound.raw));
            report.decided_by.push(format!(
                "{} MIME parts, multiparts nested {} deep: over [processing] max_mime_parts = {} / \
                 max_mime_depth = {} (counting stopped at the limit)",
                shape.parts, shape.depth, policy.shape.max_parts, policy.shape.max_depth
            ));
            tracing::info!(
                parts = shape.parts,
                depth = shape.depth,
                reason,
                "message_too_complex"
            );
            return Ok(Outcome::Rejected(reason));
        }
        Err(PlanError::Unparseable(err)) => {
            // Failed, not ignored: it is listed, and `emailin replay` retries it.
            tracing::warn!(reason = %err, "message_unparseable");
            return Ok(Outcome::Failed(format!("unparseable: {err}")));
        }
    };
    tracing::Span::current().record("message_id", mail.message_id.as_str());
    report.subject.clone_from(&mail.subject);
    report.from = mail.from.as_ref().map(|f| f.address.clone());
    report.message_id = Some(mail.message_id.clone());
    report.class = Some(classification.class.as_str());
    report.rule = Some(classification.rule);
    report.detected_charset = mail.detected_charset;
    report.from_ambiguous = mail.from_ambiguous;
    if let Class::Bounce(bounce) = &classification.class {
        report.bounce = bounce.recipients.iter().map(BounceResult::from).collect();
    }

    // Blocked senders (SMTP refuses them at MAIL FROM; this covers other sources and the From header).
    let blocked_senders = policy.blocked.current();
    let blocked = mail
        .from
        .as_ref()
        .is_some_and(|f| blocked_senders.blocks_str(&f.address))
        || inbound
            .envelope
            .mail_from
            .as_deref()
            .is_some_and(|f| blocked_senders.blocks_str(f));
    if blocked && !inbound.released {
        report.decided_by.push("the sender is blocked".into());
        tracing::info!(reason = "blocked", "message_quarantined");
        return Ok(Outcome::Quarantined(QuarantineReason::Blocked));
    }

    // Sender authentication: a DMARC failure is quarantined where an alias
    // enforces it, and never threads where one monitors it.
    let dmarc_failed = dmarc_of(policy, inbound, &mail) == Some(Dmarc::Fail);
    if dmarc_failed
        && !inbound.released
        && routes
            .iter()
            .any(|r| r.route.alias.auth == AuthPolicy::Enforce)
    {
        report
            .decided_by
            .push("DMARC failed for an alias that enforces it".into());
        tracing::info!(reason = "dmarc-fail", "message_quarantined");
        return Ok(Outcome::Quarantined(QuarantineReason::DmarcFail));
    }
    // RFC 7489 §6.6.1: a From with several addresses, or none, has no DMARC
    // verdict that could vouch for it.
    if mail.from_ambiguous
        && !inbound.released
        && routes
            .iter()
            .any(|r| r.route.alias.auth == AuthPolicy::Enforce)
    {
        report.decided_by.push(
            "the From names several addresses or none, for an alias that enforces DMARC".into(),
        );
        tracing::info!(reason = "ambiguous-from", "message_quarantined");
        return Ok(Outcome::Quarantined(QuarantineReason::AmbiguousFrom));
    }

    // Classification effects
    let Classification { class, rule } = classification;
    if class.is_automatic() {
        tracing::info!(class = class.as_str(), rule, "message_classified");
    }
    match &class {
        Class::Loop => {
            report.decided_by.push("our own mail came back".into());
            return Ok(Outcome::Ignored(IgnoreReason::Loop));
        }
        Class::Complaint { about } => {
            report.decided_by.push(match about {
                Some(a) => format!("a complaint (feedback report) about mail to {a}"),
                None => "a complaint (feedback report) naming no address".into(),
            });
            if let Some(address) = about {
                tx.mark_contact(&address.to_ascii_lowercase(), &ContactMark::Complained)
                    .await?;
            }
            return Ok(Outcome::Ignored(IgnoreReason::Complaint));
        }
        Class::Bounce(bounce) => {
            for r in bounce.recipients.iter().filter(|r| r.hard) {
                let status = r.status.clone().unwrap_or_else(|| "5.0.0".into());
                tx.mark_contact(&r.address, &ContactMark::Bounced { status })
                    .await?;
            }
        }
        Class::Normal | Class::AutoReply | Class::List | Class::Bulk => {}
    }

    // Contact: the sender found by parse, else the envelope sender; never a
    // daemon or no-reply address.
    let envelope_sender = inbound
        .envelope
        .mail_from
        .as_deref()
        .and_then(|from| EmailAddress::parse(from).ok())
        .map(|a| a.to_string());
    let contact = match &mail.from {
        Some(m) => Some((m.address.as_str(), m.name.as_deref().unwrap_or_default())),
        None => envelope_sender.as_deref().map(|a| (a, "")),
    }
    .filter(|(address, _)| !is_role_address(address));

    let mut results = Vec::with_capacity(routes.len());
    for route in &routes {
        let unauthenticated = dmarc_failed && route.route.alias.auth != AuthPolicy::Off;
        let judged = Judged {
            mail: &mail,
            class: &class,
            contact,
            unauthenticated,
        };
        results.push(apply(tx, policy, inbound, judged, route, index, report).await?);
    }
    Ok(Outcome::from_results(results))
}

/// What processing found out about a message before it meets a pipeline.
#[derive(Clone, Copy)]
struct Judged<'a> {
    mail: &'a ParsedMail,
    class: &'a Class,
    /// The sender as a contact (`(address, name)`), unless a role address.
    contact: Option<(&'a str, &'a str)>,
    /// It failed DMARC and the route's alias checks senders.
    unauthenticated: bool,
}

/// Thread and apply for one pipeline.
async fn apply(
    tx: &mut dyn Tx,
    policy: &Policy,
    inbound: &InboundRef<'_>,
    judged: Judged<'_>,
    planned: &PlannedRoute<'_>,
    index: &mut ThreadIndex,
    report: &mut Report,
) -> Result<PipelineResult, ProcessError> {
    let Judged {
        mail,
        class,
        contact,
        unauthenticated,
    } = judged;
    let route = &planned.route;
    let pipeline = route.pipeline;
    if inbound.replay && tx.already_applied(inbound.id, pipeline.id).await? {
        return Ok(PipelineResult::AlreadyApplied);
    }

    // One indexed lookup for the message's own id (duplicates) and every id it refers to.
    let keys = lookup_keys(class, &planned.keys);
    let ids: Vec<&str> = index_ids(&mail.message_id, &keys).collect();
    let known = index.lookup(tx, pipeline.id, &ids).await?;

    // Same message twice (retried SMTP delivery, SMTP and IMAP): once per
    // pipeline. The same Message-ID with other content (clients and bounces
    // reuse ids) is a new message.
    if let Some(existing) = known.get(&mail.message_id) {
        let indexed = tx
            .indexed_content_hash(pipeline.id, &mail.message_id)
            .await?;
        match indexed {
            Some(Some(hash)) if hash != mail.content_hash => {
                tracing::info!(record = existing.number, "message_id_reused");
                report.decided_by.push(format!(
                    "{}: Message-ID already on #{} with other content: a new message",
                    pipeline.name, existing.number
                ));
            }
            _ => {
                report.decided_by.push(format!(
                    "{}: the same message (Message-ID and content) is already on #{}",
                    pipeline.name, existing.number
                ));
                return Ok(PipelineResult::Duplicate {
                    record: existing.number,
                });
            }
        }
    }

    // Thread
    let mut hit: Option<(ThreadKey, RecordState)> = None;
    for key in keys.iter() {
        let found = match key {
            ThreadKey::Token(t) => match policy.reply_key.verify(t) {
                Some(token) => tx.record_by_token(pipeline.id, &token).await?,
                None => {
                    tracing::info!(pipeline = %pipeline.name, "reply_token_unverified");
                    None
                }
            },
            ThreadKey::InReplyTo(id) | ThreadKey::References(id) => known.get(id).cloned(),
            ThreadKey::SubjectTag(n) => tx.record_by_number(pipeline.id, *n).await?,
        };
        if let Some(record) = found {
            hit = Some((key.clone(), record));
            break;
        }
    }

    // Facts gathered; the rules are in `decide`.
    let mut facts = Facts {
        class,
        from_ambiguous: mail.from_ambiguous,
        unauthenticated,
        hit,
        sender_on_record: None,
    };
    if must_check_sender(&facts, policy.untrusted_thread)
        && let Some((_, record)) = &facts.hit
    {
        // A From with several addresses or none never matches a participant.
        facts.sender_on_record = Some(match contact {
            Some((address, _)) if !mail.from_ambiguous => {
                index.is_participant(tx, record.id, address).await?
            }
            _ => false,
        });
    }
    let rules = Rules {
        pipeline,
        alias: route.alias,
        untrusted_thread: policy.untrusted_thread,
    };
    let decision = decide(facts, rules).map_err(|e| ProcessError::NoOpenStage(e.0))?;
    if let Some((why, record, rule)) = decision.refused {
        match why {
            Refusal::DmarcFail => tracing::info!(record, rule, "thread_refused_dmarc_fail"),
            Refusal::NotAParticipant => tracing::info!(record, rule, "thread_from_non_participant"),
        }
    }
    let Decision {
        action,
        rule,
        value,
        ..
    } = decision;
    let record_id = match &action {
        Action::Append { record, .. } => record.id,
        Action::Create { .. } | Action::Ignore(_) => Uuid::now_v7(),
    };
    let message = NewMessage {
        id: Uuid::now_v7(),
        record_id,
        inbound_id: Some(inbound.id),
        direction: "in",
        message_id: &mail.message_id,
        in_reply_to: mail.in_reply_to.as_deref(),
        references: &mail.references,
        from: mail.from.as_ref(),
        to: &mail.to,
        cc: &mail.cc,
        reply_to: mail.reply_to.as_deref(),
        subject: mail.subject.as_deref(),
        sent_at: mail.date,
        text_body: mail.text.as_deref(),
        html_body: mail.html.as_deref(),
        thread_rule: rule,
        thread_value: value,
        class: class.as_str(),
        attachments: &mail.attachments,
        content_hash: Some(&mail.content_hash),
    };

    match action {
        Action::Ignore(reason) => {
            report.decided_by.push(match reason {
                IgnoreReason::AutoReply => {
                    format!("{}: an auto-reply that belongs to no thread", pipeline.name)
                }
                _ => format!("{}: a bounce of no message known here", pipeline.name),
            });
            Ok(PipelineResult::Ignored(reason))
        }
        Action::Create { stage_id, related } => {
            let new = NewRecord {
                pipeline_id: pipeline.id,
                stage_id,
                owner_id: route.alias.owner_id,
                alias_id: route.alias.id,
                title: mail
                    .subject
                    .clone()
                    .unwrap_or_else(|| "(no subject)".into()),
                tags: route.alias.tags.clone(),
                reply_token: new_reply_token(),
                related_record: related,
            };
            let record = tx.create_record(&new, contact, &message).await?;
            let people = contact.map(|(address, _)| address).into_iter();
            index.note(
                pipeline.id,
                &mail.message_id,
                &record,
                people.chain(people_of(&message)),
            );
            tracing::info!(pipeline = %pipeline.name, record = record.number, "record_created");
            Ok(PipelineResult::Created {
                record: record.number,
            })
        }
        Action::Append { record, reopen_to } => {
            tx.append_message(&record, &message, reopen_to).await?;
            index.note(
                pipeline.id,
                &mail.message_id,
                &RecordState {
                    stage_id: reopen_to.unwrap_or(record.stage_id),
                    ..record.clone()
                },
                people_of(&message),
            );
            tracing::info!(pipeline = %pipeline.name, record = record.number, rule, "message_threaded");
            if reopen_to.is_some() {
                tracing::info!(pipeline = %pipeline.name, record = record.number, "record_reopened");
            }
            Ok(PipelineResult::Appended {
                record: record.number,
                reopened: reopen_to.is_some(),
            })
        }
    }
}

/// The addresses a message puts on its record: From, To and Cc.
fn people_of<'m>(message: &'m NewMessage<'_>) -> impl Iterator<Item = &'m str> {
    let from = message.from.map(|f| f.address.as_str());
    from.into_iter().chain(
        message
            .to
            .iter()
            .chain(message.cc)
            .map(|m| m.address.as_str()),
    )
}

/// A message's plan: made with its batch, or to be made from the directory.
// Moved once per message into `process_one`, never stored: boxing would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
enum Planned<'d> {
    Made(Result<Plan<'d>, PlanError>),
    From(&'d Directory),
}

/// Parses and routes a stored message.
fn plan_of<'d>(
    directory: &'d Directory,
    limits: &ShapeLimits,
    inbound: &InboundRef<'_>,
) -> Result<Plan<'d>, PlanError> {
    if let Some((reason, shape)) = limits.check(inbound.raw) {
        return Err(PlanError::TooComplex { reason, shape });
    }
    let by_headers = matches!(inbound.source, Source::Imap(_));
    let null_sender =
        matches!(inbound.source, Source::Smtp(_)) && inbound.envelope.mail_from.is_none();
    plan(
        inbound.raw,
        directory,
        &inbound.envelope.rcpt_to,
        by_headers,
        null_sender,
    )
}

/// The keys a message may thread by: a bounce only by the message it returns.
fn lookup_keys<'k>(class: &Class, keys: &'k [ThreadKey]) -> Cow<'k, [ThreadKey]> {
    match class {
        Class::Bounce(b) => Cow::Owned(
            b.original_message_id
                .iter()
                .map(|id| ThreadKey::InReplyTo(id.clone()))
                .collect(),
        ),
        _ => Cow::Borrowed(keys),
    }
}

/// The Message-IDs to look up in the thread index: the message's own (is it
/// a duplicate?) and every one it refers to.
fn index_ids<'m>(message_id: &'m str, keys: &'m [ThreadKey]) -> impl Iterator<Item = &'m str> {
    std::iter::once(message_id).chain(keys.iter().filter_map(|k| match k {
        ThreadKey::InReplyTo(id) | ThreadKey::References(id) => Some(id.as_str()),
        _ => None,
    }))
}

/// Where `apply` looks Message-IDs up: the database, or what a batch read in
/// one query beforehand, kept current as the batch adds messages and moves
/// records (the same transaction holds the only writer, so nothing else
/// changes it meanwhile).
enum ThreadIndex {
    Database,
    Prefetched {
        /// Pipeline → Message-ID → record.
        ids: HashMap<Uuid, HashMap<String, Uuid>>,
        records: HashMap<Uuid, RecordState>,
        /// Record → its participants (lower case), for every record above.
        participants: HashMap<Uuid, HashSet<String>>,
    },
}

/// Most Message-IDs bound in one lookup statement.
const LOOKUP_CHUNK: usize = 500;

impl ThreadIndex {
    async fn prefetch(
        tx: &mut dyn Tx,
        wanted: HashMap<Uuid, Vec<&str>>,
    ) -> Result<Self, StoreError> {
        let mut ids: HashMap<Uuid, HashMap<String, Uuid>> = HashMap::new();
        let mut records = HashMap::new();
        for (pipeline, mut message_ids) in wanted {
            message_ids.sort_unstable();
            message_ids.dedup();
            let known = ids.entry(pipeline).or_default();
            for chunk in message_ids.chunks(LOOKUP_CHUNK) {
                for (message_id, record) in tx.lookup_message_ids(pipeline, chunk).await? {
                    known.insert(message_id, record.id);
                    records.insert(record.id, record);
                }
            }
        }
        // Whoever is on those records, for the trust check of replies to them.
        let mut participants: HashMap<Uuid, HashSet<String>> =
            records.keys().map(|id| (*id, HashSet::new())).collect();
        let wanted: Vec<Uuid> = records.keys().copied().collect();
        for (record, address) in tx.participants(&wanted).await? {
            participants.entry(record).or_default().insert(address);
        }
        Ok(Self::Prefetched {
            ids,
            records,
            participants,
        })
    }

    /// Whether `address` (any letter case) is on `record` (see [`Tx::participants`]).
    async fn is_participant(
        &self,
        tx: &mut dyn Tx,
        record: Uuid,
        address: &str,
    ) -> Result<bool, StoreError> {
        let address = address.to_ascii_lowercase();
        if let Self::Prefetched { participants, .. } = self
            && let Some(known) = participants.get(&record)
        {
            return Ok(known.contains(&address));
        }
        Ok(tx
            .participants(&[record])
            .await?
            .iter()
            .any(|(_, a)| *a == address))
    }

    async fn lookup(
        &self,
        tx: &mut dyn Tx,
        pipeline: Uuid,
        message_ids: &[&str],
    ) -> Result<HashMap<String, RecordState>, StoreError> {
        match self {
            Self::Database => Ok(tx
                .lookup_message_ids(pipeline, message_ids)
                .await?
                .into_iter()
                .collect()),
            Self::Prefetched { ids, records, .. } => {
                let Some(known) = ids.get(&pipeline) else {
                    return Ok(HashMap::new());
                };
                Ok(message_ids
                    .iter()
                    .filter_map(|m| {
                        let record = records.get(known.get(*m)?)?;
                        Some(((*m).to_string(), record.clone()))
                    })
                    .collect())
            }
        }
    }

    /// `message_id` now belongs to `record` (whose stage is current) in `pipeline`.
    /// `people` (its contact, its From, To and Cc) are now on it.
    fn note<'p>(
        &mut self,
        pipeline: Uuid,
        message_id: &str,
        record: &RecordState,
        people: impl IntoIterator<Item = &'p str>,
    ) {
        if let Self::Prefetched {
            ids,
            records,
            participants,
        } = self
        {
            let known = ids.entry(pipeline).or_default();
            if !known.contains_key(message_id) {
                known.insert(message_id.to_string(), record.id);
            }
            records.insert(record.id, record.clone());
            participants
                .entry(record.id)
                .or_default()
                .extend(people.into_iter().map(str::to_ascii_lowercase));
        }
    }
}

/// The DMARC verdict for a stored message: ours for SMTP mail, the mailbox
/// provider's (a configured authserv-id) for polled mail; `None` when unknown.
fn dmarc_of(policy: &Policy, inbound: &InboundRef<'_>, mail: &ParsedMail) -> Option<Dmarc> {
    let account = match inbound.source {
        Source::Smtp(_) => {
            let results = inbound.envelope.auth_results.as_deref()?;
            return dmarc_verdict(results, &policy.authserv_id);
        }
        Source::Imap(mailbox) => &mailbox.account,
        Source::Import | Source::Api => return None,
    };
    let authserv_id = policy.imap_authserv.get(account.as_str())?;
    trusted_header_verdict(&mail.signals.headers, authserv_id)
}

/// A token for reply addresses (`alias+r-<token>@domain`): a UUIDv7 in hex,
/// 74 random bits behind a time prefix, so the unique index on it grows at
/// its end instead of at random pages.
fn new_reply_token() -> String {
    Uuid::now_v7().simple().to_string()
}
