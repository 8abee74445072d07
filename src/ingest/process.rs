//! Processing: stored raw message → records, contacts, messages, events.
//!
//! parse → route → contact → thread → apply, per message, inside a batch
//! transaction. Each message runs under a savepoint: if it fails, only its
//! own writes are undone and its raw row is marked `failed` with the error;
//! the batch goes on. Messages are taken in arrival order, so a reply never
//! overtakes the message it answers.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::RngCore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::outcome::{IgnoreReason, Outcome, PipelineResult};
use super::parse::{ParsedMail, parse};
use super::route::{Route, route};
use super::thread::{NEW_RECORD_RULE, ThreadKey, thread_keys};
use crate::domain::{Directory, EmailAddress, StageKind};
use crate::store::{
    NewEvent, NewMessage, NewRecord, PendingInbound, RecordState, Store, StoreError, Tx,
};

/// Shared, swappable routing snapshot.
pub type DirectoryHandle = Arc<RwLock<Arc<Directory>>>;

/// Runs stored messages through processing.
#[derive(Clone)]
pub struct Processor {
    store: Arc<dyn Store>,
    directory: DirectoryHandle,
    batch: usize,
}

impl Processor {
    pub fn new(store: Arc<dyn Store>, directory: DirectoryHandle, batch: usize) -> Self {
        Self {
            store,
            directory,
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
        let mut tx = self.store.begin().await?;
        let pending = tx.pending(self.batch).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let directory = self
            .directory
            .read()
            .map(|d| Arc::clone(&d))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()));
        for inbound in &pending {
            tx.savepoint().await?;
            let outcome = match process_one(tx.as_mut(), &directory, inbound).await {
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
            tx.set_outcome(inbound.id, &outcome.to_row()).await?;
        }
        tx.commit().await?;
        Ok(pending.len())
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
}

#[tracing::instrument(skip_all, fields(inbound_id = %inbound.id, source = %inbound.source, message_id))]
async fn process_one(
    tx: &mut dyn Tx,
    directory: &Directory,
    inbound: &PendingInbound,
) -> Result<Outcome, ProcessError> {
    // Parse
    let mail = match parse(&inbound.raw) {
        Ok(mail) => mail,
        Err(err) => {
            tracing::info!(reason = %err, "message_rejected");
            return Ok(Outcome::Ignored(IgnoreReason::Unparseable));
        }
    };
    tracing::Span::current().record("message_id", mail.message_id.as_str());

    // Route
    let routes = route(directory, &inbound.envelope.rcpt_to);
    if routes.is_empty() {
        return Ok(Outcome::Ignored(IgnoreReason::NoAlias));
    }

    // Contact: the From address, else the envelope sender.
    let sender = mail
        .from
        .as_ref()
        .map(|m| (m.address.clone(), m.name.clone().unwrap_or_default()))
        .or_else(|| {
            let from = inbound.envelope.mail_from.as_deref()?;
            Some((EmailAddress::parse(from).ok()?.to_string(), String::new()))
        });
    let contact_id = match &sender {
        Some((email, name)) => Some(tx.upsert_contact(email, name).await?),
        None => None,
    };

    let mut results = Vec::with_capacity(routes.len());
    for route in &routes {
        results.push(apply(tx, inbound, &mail, route, contact_id).await?);
    }
    Ok(Outcome::from_results(results))
}

/// Thread and apply for one pipeline.
async fn apply(
    tx: &mut dyn Tx,
    inbound: &PendingInbound,
    mail: &ParsedMail,
    route: &Route<'_>,
    contact_id: Option<Uuid>,
) -> Result<PipelineResult, ProcessError> {
    let pipeline = route.pipeline;
    if tx.already_applied(inbound.id, pipeline.id).await? {
        return Ok(PipelineResult::AlreadyApplied);
    }
    // Same message twice (retried SMTP delivery, SMTP and IMAP): once per pipeline.
    if let Some(existing) = tx
        .record_by_message_id(pipeline.id, &mail.message_id)
        .await?
    {
        return Ok(PipelineResult::Duplicate {
            record: existing.number,
        });
    }

    // Thread
    let mut hit: Option<(ThreadKey, RecordState)> = None;
    for key in thread_keys(route.token.as_deref(), mail) {
        let found = match &key {
            ThreadKey::Token(t) => tx.record_by_token(pipeline.id, t).await?,
            ThreadKey::InReplyTo(id) | ThreadKey::References(id) => {
                tx.record_by_message_id(pipeline.id, id).await?
            }
            ThreadKey::SubjectTag(n) => tx.record_by_number(pipeline.id, *n).await?,
        };
        if let Some(record) = found {
            hit = Some((key, record));
            break;
        }
    }

    let message_id = Uuid::now_v7();
    let (record, rule, value, created) = match hit {
        Some((key, record)) => (record, key.rule(), Some(key.value()), false),
        None => {
            let stage = pipeline
                .first_open_stage()
                .ok_or_else(|| ProcessError::NoOpenStage(pipeline.name.clone()))?;
            let record = tx
                .insert_record(&NewRecord {
                    pipeline_id: pipeline.id,
                    stage_id: stage.id,
                    contact_id,
                    owner_id: route.alias.owner_id,
                    alias_id: route.alias.id,
                    title: mail
                        .subject
                        .clone()
                        .unwrap_or_else(|| "(no subject)".into()),
                    tags: route.alias.tags.clone(),
                    reply_token: new_reply_token(),
                })
                .await?;
            (record, NEW_RECORD_RULE, None, true)
        }
    };

    tx.insert_message(&NewMessage {
        id: message_id,
        record_id: record.id,
        pipeline_id: pipeline.id,
        inbound_id: Some(inbound.id),
        direction: "in",
        message_id: mail.message_id.clone(),
        in_reply_to: mail.in_reply_to.clone(),
        references: mail.references.clone(),
        from: mail.from.clone(),
        to: mail.to.clone(),
        cc: mail.cc.clone(),
        reply_to: mail.reply_to.clone(),
        subject: mail.subject.clone(),
        sent_at: mail.date,
        text_body: mail.text.clone(),
        html_body: mail.html.clone(),
        thread_rule: rule,
        thread_value: value,
        attachments: mail.attachments.clone(),
    })
    .await?;

    if created {
        tx.insert_event(&NewEvent {
            record_id: record.id,
            kind: "created",
            from_stage: None,
            to_stage: Some(record.stage_id),
            message_id: Some(message_id),
            actor: "system".into(),
        })
        .await?;
        tracing::info!(pipeline = %pipeline.name, record = record.number, "record_created");
        return Ok(PipelineResult::Created {
            record: record.number,
        });
    }
    tracing::info!(pipeline = %pipeline.name, record = record.number, rule, "message_threaded");

    // Reopen: a reply to a record in a closed stage that the alias's rules cover.
    let alias = route.alias;
    let closed = pipeline
        .stage(record.stage_id)
        .is_some_and(|s| s.kind == StageKind::Closed);
    let target = alias.reopen.get(&record.stage_id).copied();
    match target {
        Some(to) if closed && alias.reopen_on_reply => {
            tx.set_stage(record.id, to).await?;
            tx.insert_event(&NewEvent {
                record_id: record.id,
                kind: "reopened",
                from_stage: Some(record.stage_id),
                to_stage: Some(to),
                message_id: Some(message_id),
                actor: "system".into(),
            })
            .await?;
            tracing::info!(pipeline = %pipeline.name, record = record.number, "record_reopened");
            Ok(PipelineResult::Appended {
                record: record.number,
                reopened: true,
            })
        }
        _ => {
            tx.touch_record(record.id).await?;
            Ok(PipelineResult::Appended {
                record: record.number,
                reopened: false,
            })
        }
    }
}

/// An unguessable token for reply addresses (`alias+r-<token>@domain`).
fn new_reply_token() -> String {
    let mut bytes = [0u8; 10];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
