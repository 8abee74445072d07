//! Processing: stored raw message → records, contacts, messages, events.
//!
//! parse → route → contact → thread → apply, per message, inside a batch
//! transaction. Each message runs under a savepoint: if it fails, only its
//! own writes are undone and its raw row is marked `failed` with the error;
//! the batch goes on. Messages are taken in arrival order, so a reply never
//! overtakes the message it answers.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::apply::{Judged, apply};
use super::classify::{Class, Classification};
use super::decide::{Judgement, Message, Verdict, judge};
use super::outcome::{BounceResult, IgnoreReason, Outcome, Report};
use super::plan::{Plan, PlanError, plan};
use super::policy::dmarc_of;
pub use super::policy::{Policy, REPLY_KEY_SECRET, block_list};
use super::shape::{ShapeLimits, header_bytes};
use super::thread::ThreadKey;
use super::thread_index::{ThreadIndex, index_ids, lookup_keys};
use crate::domain::{AuthPolicy, Directory, DirectoryHandle, EmailAddress};
use crate::domain::{Envelope, Source};
use crate::store::{PendingInbound, Store, StoreError, Tx};

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
    ) -> Result<(), BatchError> {
        let directory = self.directory.current();
        let mut plans = Vec::with_capacity(items.len());
        for item in items {
            let limits = self.policy.shape;
            let planned = std::panic::catch_unwind(|| plan_of(&directory, &limits, item))
                .map_err(|_| BatchError::PlanPanicked(item.id))?;
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
        let mut index = ThreadIndex::prefetch(tx, wanted).await?;
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
            .map_err(|error| BatchError::Message { id: item.id, error })?;
            let mut row = outcome.to_row();
            row.details = report.to_json();
            outcomes.push((item.id, row));
        }
        // The batch's rows and outcomes, written together (what is still
        // buffered goes with the outcomes): a failing write fails the call.
        Ok(tx.set_outcomes(&outcomes).await?)
    }
}

/// Why a batch could not be processed on the fast path (its messages stay
/// pending, for the processor to take one by one).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("planning {0} panicked")]
    PlanPanicked(Uuid),
    #[error("message {id}: {error}")]
    Message { id: Uuid, error: ProcessError },
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
pub enum ProcessError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    NoOpenStage(#[from] super::decide::NoOpenStage),
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
            let what = crate::supervise::panic_message(&*panic).unwrap_or_default();
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

    // The whole message first (blocked, DMARC, loops, complaints, bounces,
    // its contact): the rules are in `decide::judge`.
    let envelope_sender = inbound
        .envelope
        .mail_from
        .as_deref()
        .and_then(|from| EmailAddress::parse(from).ok())
        .map(|a| a.to_string());
    let Classification { class, rule } = classification;
    let message = Message {
        class: &class,
        from: mail
            .from
            .as_ref()
            .map(|m| (m.address.as_str(), m.name.as_deref().unwrap_or_default())),
        from_ambiguous: mail.from_ambiguous,
        envelope_from: inbound.envelope.mail_from.as_deref(),
        envelope_sender: envelope_sender.as_deref(),
        released: inbound.released,
        dmarc: dmarc_of(policy, inbound, &mail),
        enforced: routes
            .iter()
            .any(|r| r.route.alias.auth == AuthPolicy::Enforce),
    };
    let Judgement { verdict, marks } = judge(message, &policy.blocked.current());
    let quarantined = matches!(
        verdict,
        Verdict::Stop {
            outcome: Outcome::Quarantined(_),
            ..
        }
    );
    if class.is_automatic() && !quarantined {
        tracing::info!(class = class.as_str(), rule, "message_classified");
    }
    for (address, mark) in &marks {
        tx.mark_contact(address, mark).await?;
    }
    let (contact, dmarc_failed) = match verdict {
        Verdict::Stop { outcome, why } => {
            report.decided_by.push(why);
            if let Outcome::Quarantined(reason) = &outcome {
                tracing::info!(reason = reason.as_str(), "message_quarantined");
            }
            return Ok(outcome);
        }
        Verdict::Go {
            contact,
            dmarc_failed,
        } => (contact, dmarc_failed),
    };

    // A team member who forwards a customer's mail: the customer is the
    // contact, the member is noted. Only for a sender whose mail did not
    // fail DMARC, and a subject that says it is a forward.
    let forwarded = match contact {
        Some((from, _))
            if !dmarc_failed && class.is_person() && is_forward(mail.subject.as_deref()) =>
        {
            // The inline forward block, else the forwarded message attached
            // (`message/rfc822`, as Outlook's "Forward as attachment").
            let original = mail
                .text
                .as_deref()
                .and_then(crate::domain::forwarded_sender)
                .or_else(|| {
                    let (name, address) = mail.signals.returned.as_ref()?.from.clone()?;
                    Some((name, crate::domain::EmailAddress::parse(&address).ok()?))
                });
            match original {
                Some((name, address))
                    if !crate::domain::is_role_address(address.as_str())
                        && !address.as_str().eq_ignore_ascii_case(from)
                        && tx.is_user(from).await? =>
                {
                    report.decided_by.push(format!(
                        "forwarded by the team member {from}: the contact is the original sender {address}"
                    ));
                    Some((
                        address.to_string(),
                        name.unwrap_or_default(),
                        from.to_string(),
                    ))
                }
                _ => None,
            }
        }
        _ => None,
    };
    let (contact, agent) = match &forwarded {
        Some((address, name, agent)) => (
            Some((address.as_str(), name.as_str())),
            Some(agent.as_str()),
        ),
        None => (contact, None),
    };

    let mut results = Vec::with_capacity(routes.len());
    for route in &routes {
        let unauthenticated = dmarc_failed && route.route.alias.auth != AuthPolicy::Off;
        let judged = Judged {
            mail: &mail,
            class: &class,
            contact,
            unauthenticated,
            agent,
        };
        results.push(apply(tx, policy, inbound, judged, route, index, report).await?);
    }
    Ok(Outcome::from_results(results))
}

/// Whether a subject says its mail is a forward (`Fwd:`, `FW:`, `WG:`,
/// `TR:`, `転送:` …), before any reply prefix is taken off.
fn is_forward(subject: Option<&str>) -> bool {
    const PREFIXES: &[&str] = &[
        "fwd", "fw", "wg", "tr", "rv", "enc", "doorst", "転送", "转发", "轉寄",
    ];
    let mut rest = subject.unwrap_or("").trim();
    for _ in 0..3 {
        let Some((word, after)) = crate::domain::subject_prefix(rest) else {
            return false;
        };
        if PREFIXES.contains(&word.as_str()) {
            return true;
        }
        if !["re", "aw", "sv", "antw"].contains(&word.as_str()) {
            return false;
        }
        rest = after;
    }
    false
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

#[cfg(test)]
mod tests {
    use super::is_forward;

    #[test]
    fn forward_subjects_in_the_clients_languages() {
        for s in [
            "Fwd: Quote",
            "FW: Quote",
            "Re: Fwd: Quote",
            "WG: Angebot",
            "転送: 見積",
            "TR : devis",
        ] {
            assert!(is_forward(Some(s)), "{s}");
        }
        for s in ["Quote", "Re: Quote", "Forward planning: Q3", "Tr"] {
            assert!(!is_forward(Some(s)), "{s}");
        }
        assert!(!is_forward(None));
    }
}
