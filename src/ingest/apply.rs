//! Apply: one message in one pipeline, from the thread lookups through
//! [`decide`](super::decide) to the writes (record, message, contact, index).

use uuid::Uuid;

use super::classify::Class;
use super::decide::{Action, Decision, Facts, Refusal, Rules, decide, must_check_sender};
use super::outcome::{IgnoreReason, PipelineResult, Report};
use super::parse::ParsedMail;
use super::plan::PlannedRoute;
use super::policy::Policy;
use super::process::{InboundRef, ProcessError};
use super::thread::ThreadKey;
use super::thread_index::{ThreadIndex, index_ids, lookup_keys};
use crate::store::{NewMessage, NewRecord, RecordState, Tx};

/// What processing found out about a message before it meets a pipeline.
#[derive(Clone, Copy)]
pub(super) struct Judged<'a> {
    pub(super) mail: &'a ParsedMail,
    pub(super) class: &'a Class,
    /// The sender as a contact (`(address, name)`), unless a role address.
    pub(super) contact: Option<(&'a str, &'a str)>,
    /// It failed DMARC and the route's alias checks senders.
    pub(super) unauthenticated: bool,
    /// The team member who forwarded it, when the contact is the original
    /// sender of a forwarded mail.
    pub(super) agent: Option<&'a str>,
}

/// Thread and apply for one pipeline.
pub(super) async fn apply(
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
        agent,
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
        now: chrono::Utc::now(),
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
    let decision = decide(facts, rules)?;
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
        reply_text: mail.reply_text.as_deref(),
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
        Action::Create {
            stage_id,
            related,
            follow_up_of,
        } => {
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
                reply_token: crate::domain::new_reply_token(),
                related_record: related,
                follow_up_of,
                forwarded_by: agent.map(str::to_string),
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
                    stage_since: match reopen_to {
                        Some(_) => Some(chrono::Utc::now()),
                        None => record.stage_since,
                    },
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
pub(super) fn people_of<'m>(message: &'m NewMessage<'_>) -> impl Iterator<Item = &'m str> {
    let from = message.from.map(|f| f.address.as_str());
    from.into_iter().chain(
        message
            .to
            .iter()
            .chain(message.cc)
            .map(|m| m.address.as_str()),
    )
}
