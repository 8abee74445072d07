//! Storage for reshaping conversations: merging a record into another and
//! splitting messages off to a new record.
//!
//! Both run in a processing transaction (on PostgreSQL under the lock
//! processing takes), so no message being threaded meanwhile lands on a
//! record that is being emptied. The queries are plain SQL constants both
//! dialects accept; `sql_merge_store!` only binds and runs them.

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use super::StoreResult;

/// A record named in an answer: its id and number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecordLink {
    pub id: Uuid,
    pub number: i64,
    /// `[#<number>]`.
    pub reference: String,
}

impl RecordLink {
    pub fn new(id: Uuid, number: i64) -> Self {
        Self {
            id,
            number,
            reference: format!("[#{number}]"),
        }
    }
}

/// What a merge or a split moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Moved {
    /// Where the messages came from.
    pub from: RecordLink,
    /// Where they are now.
    pub into: RecordLink,
    /// Messages (and comments) moved.
    pub messages: u64,
}

#[async_trait]
pub trait MergeStore: Send + Sync {
    /// Moves `from`'s whole conversation (messages, comments, their thread
    /// index entries and replies in the outbox) to `into`; mail naming
    /// `from` (its reply address or `[#number]`) goes to `into` from then
    /// on. `from` moves to its pipeline's first closed stage and both get
    /// an event by `actor`.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] when either record is unknown;
    /// [`super::StoreError::Conflict`] when they are one record, in
    /// different pipelines, or either was merged already.
    async fn merge_record(&self, from: Uuid, into: Uuid, actor: &str) -> StoreResult<Moved>;

    /// Moves `message` and every message threaded below it (see
    /// [`crate::domain::replies_below`]) from `record` to a new record of
    /// the same pipeline, owner, alias and tags, in the first open stage,
    /// titled after the message's subject, with the message's sender as
    /// contact (created when new). Both records get an event by `actor`.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] when the record is unknown or the
    /// message is not one of its messages; [`super::StoreError::Conflict`]
    /// for a comment, a merged record, or when nothing would stay behind.
    async fn split_record(&self, record: Uuid, message: Uuid, actor: &str) -> StoreResult<Moved>;
}

pub(super) const RECORD: &str = "
    SELECT id, number, pipeline_id, stage_id, contact_id, owner_id, alias_id, tags, merged_into
    FROM records WHERE id = $1";

pub(super) const STAGE_OF_KIND: &str = "
    SELECT id FROM stages WHERE pipeline_id = $1 AND kind = $2 ORDER BY position, id LIMIT 1";

pub(super) const STAGE_KIND: &str = "SELECT kind FROM stages WHERE id = $1";

pub(super) const MOVE_MESSAGES: &str = "UPDATE messages SET record_id = $1 WHERE record_id = $2";

pub(super) const MOVE_THREAD_INDEX: &str =
    "UPDATE message_ids SET record_id = $1 WHERE record_id = $2";

pub(super) const MOVE_OUTBOX: &str = "UPDATE outbox SET record_id = $1 WHERE record_id = $2";

/// Records merged into the one being merged now follow it: every merged
/// record names its final record, so a lookup takes one step.
pub(super) const FOLLOW_MERGE: &str = "UPDATE records SET merged_into = $1 WHERE merged_into = $2";

pub(super) const MARK_MERGED: &str = "
    UPDATE records SET merged_into = $1, stage_id = $2, updated_at = $3,
        stage_changed_at = CASE WHEN stage_id = $2 THEN stage_changed_at ELSE $3 END
    WHERE id = $4";

pub(super) const TOUCH: &str = "UPDATE records SET updated_at = $1 WHERE id = $2";

pub(super) const EVENT: &str = "
    INSERT INTO record_events (id, record_id, kind, from_stage_id, to_stage_id, message_id, actor,
        detail, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

pub(super) const THREAD_NODES: &str = "
    SELECT id, direction, message_id, in_reply_to, refs, subject, from_addr, from_name
    FROM messages WHERE record_id = $1 ORDER BY created_at, id";

/// The sender as a contact, created when new (as processing does).
pub(super) const ADD_CONTACT: &str = "
    INSERT INTO contacts (id, email, name, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (email) DO NOTHING";

pub(super) const CONTACT_BY_EMAIL: &str =
    "SELECT id FROM contacts WHERE email = $1 AND erased_at IS NULL";

pub(super) const NEXT_NUMBER: &str = "SELECT MAX(number) AS n FROM records";

pub(super) const INSERT_RECORD: &str = "
    INSERT INTO records (id, number, pipeline_id, stage_id, contact_id, owner_id, alias_id, title,
        tags, reply_token, related_record_id, created_at, updated_at, stage_changed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $12)";

/// The heads of the split's moves: `<head> $record WHERE id IN (…)`.
pub(super) const MOVE_SOME_MESSAGES: &str = "UPDATE messages SET record_id = ";
pub(super) const MOVE_SOME_OUTBOX: &str = "UPDATE outbox SET record_id = ";
/// `<head> $record WHERE pipeline_id = $p AND message_id IN (…)`.
pub(super) const MOVE_SOME_INDEX: &str = "UPDATE message_ids SET record_id = ";

macro_rules! sql_merge_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// One event of a merge or a split, by `actor`.
            #[allow(clippy::too_many_arguments)]
            async fn reshape_event(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                record: ::uuid::Uuid,
                kind: &str,
                stages: (Option<::uuid::Uuid>, Option<::uuid::Uuid>),
                actor: &str,
                detail: String,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> StoreResult<()> {
                sqlx::query($crate::store::merge::EVENT)
                    .bind(::uuid::Uuid::now_v7())
                    .bind(record)
                    .bind(kind)
                    .bind(stages.0)
                    .bind(stages.1)
                    .bind(None::<::uuid::Uuid>)
                    .bind(actor)
                    .bind(detail)
                    .bind(now)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::MergeStore for $store {
            async fn merge_record(
                &self,
                from: ::uuid::Uuid,
                into: ::uuid::Uuid,
                actor: &str,
            ) -> StoreResult<$crate::store::Moved> {
                use $crate::store::merge as q;
                use $crate::store::RecordLink;
                let now = ::chrono::Utc::now();
                let mut tx = self.begin_processing().await?;
                let mut rows = Vec::new();
                for id in [from, into] {
                    rows.push(
                        sqlx::query(q::RECORD)
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(StoreError::NotFound)?,
                    );
                }
                let number = |i: usize| rows[i].try_get::<i64, _>("number");
                let (from_number, into_number) = (number(0)?, number(1)?);
                if from == into {
                    return Err(StoreError::Conflict(
                        "a record cannot be merged into itself".into(),
                    ));
                }
                for (row, n) in rows.iter().zip([from_number, into_number]) {
                    if row.try_get::<Option<::uuid::Uuid>, _>("merged_into")?.is_some() {
                        return Err(StoreError::Conflict(format!(
                            "[#{n}] was merged into another record already"
                        )));
                    }
                }
                let pipeline: ::uuid::Uuid = rows[0].try_get("pipeline_id")?;
                if rows[1].try_get::<::uuid::Uuid, _>("pipeline_id")? != pipeline {
                    return Err(StoreError::Conflict(format!(
                        "[#{from_number}] and [#{into_number}] are in different pipelines, and a conversation never crosses pipelines"
                    )));
                }
                let moved = sqlx::query(q::MOVE_MESSAGES)
                    .bind(into)
                    .bind(from)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                for sql in [q::MOVE_THREAD_INDEX, q::MOVE_OUTBOX, q::FOLLOW_MERGE] {
                    sqlx::query(sql).bind(into).bind(from).execute(&mut *tx).await?;
                }
                // The merged record is done with: its pipeline's first closed
                // stage (it stays where it is when it is closed already, or
                // when the pipeline has no closed stage).
                let stage: ::uuid::Uuid = rows[0].try_get("stage_id")?;
                let kind: String = sqlx::query(q::STAGE_KIND)
                    .bind(stage)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("kind")?;
                let closed: Option<::uuid::Uuid> = if kind == "closed" {
                    None
                } else {
                    sqlx::query(q::STAGE_OF_KIND)
                        .bind(pipeline)
                        .bind("closed")
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| r.try_get("id"))
                        .transpose()?
                };
                sqlx::query(q::MARK_MERGED)
                    .bind(into)
                    .bind(closed.unwrap_or(stage))
                    .bind(now)
                    .bind(from)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(q::TOUCH).bind(now).bind(into).execute(&mut *tx).await?;
                Self::reshape_event(&mut tx, from, "merged_into", (None, None), actor, format!("[#{into_number}]"), now).await?;
                if let Some(closed) = closed {
                    let detail = format!("merged into [#{into_number}]");
                    Self::reshape_event(&mut tx, from, "stage_changed", (Some(stage), Some(closed)), actor, detail, now).await?;
                }
                let detail = format!("[#{from_number}]: {moved} messages");
                Self::reshape_event(&mut tx, into, "merged", (None, None), actor, detail, now).await?;
                tx.commit().await?;
                Ok($crate::store::Moved {
                    from: RecordLink::new(from, from_number),
                    into: RecordLink::new(into, into_number),
                    messages: moved,
                })
            }

            async fn split_record(
                &self,
                record: ::uuid::Uuid,
                message: ::uuid::Uuid,
                actor: &str,
            ) -> StoreResult<$crate::store::Moved> {
                use $crate::store::merge as q;
                use $crate::store::RecordLink;
                let now = ::chrono::Utc::now();
                let mut tx = self.begin_processing().await?;
                let row = sqlx::query(q::RECORD)
                    .bind(record)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let from_number: i64 = row.try_get("number")?;
                if row.try_get::<Option<::uuid::Uuid>, _>("merged_into")?.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "[#{from_number}] was merged into another record; split that one"
                    )));
                }
                let messages = sqlx::query(q::THREAD_NODES)
                    .bind(record)
                    .fetch_all(&mut *tx)
                    .await?;
                let mut nodes = Vec::new();
                let mut chosen = None;
                for m in &messages {
                    let id: ::uuid::Uuid = m.try_get("id")?;
                    let direction: String = m.try_get("direction")?;
                    if id == message {
                        if direction == "comment" {
                            return Err(StoreError::Conflict(
                                "a comment is no mail: split at a message".into(),
                            ));
                        }
                        chosen = Some(m);
                    }
                    if direction != "comment" {
                        nodes.push($crate::domain::ThreadNode {
                            id,
                            message_id: m.try_get("message_id")?,
                            in_reply_to: m.try_get("in_reply_to")?,
                            references: string_list(&m.try_get::<String, _>("refs")?)?,
                        });
                    }
                }
                let chosen = chosen.ok_or(StoreError::NotFound)?;
                let moving = $crate::domain::replies_below(&nodes, message);
                if moving.len() == nodes.len() {
                    return Err(StoreError::Conflict(format!(
                        "every message of [#{from_number}] is in that thread, so nothing would stay: split at a later message"
                    )));
                }

                let pipeline: ::uuid::Uuid = row.try_get("pipeline_id")?;
                let stage: ::uuid::Uuid = sqlx::query(q::STAGE_OF_KIND)
                    .bind(pipeline)
                    .bind("open")
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::Conflict("the pipeline has no open stage for a new record".into()))?
                    .try_get("id")?;
                // Whoever wrote the message that starts the thread is the new
                // record's contact (created when new); for one the team sent,
                // the record's contact stays.
                let mut contact: Option<::uuid::Uuid> = row.try_get("contact_id")?;
                let direction: String = chosen.try_get("direction")?;
                if direction == "in"
                    && let Some(from) = chosen.try_get::<Option<String>, _>("from_addr")?
                {
                    let email = from.to_lowercase();
                    let name: Option<String> = chosen.try_get("from_name")?;
                    sqlx::query(q::ADD_CONTACT)
                        .bind(::uuid::Uuid::now_v7())
                        .bind(&email)
                        .bind(name.unwrap_or_default())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(found) = sqlx::query(q::CONTACT_BY_EMAIL)
                        .bind(&email)
                        .fetch_optional(&mut *tx)
                        .await?
                    {
                        contact = Some(found.try_get("id")?);
                    }
                }
                let subject: Option<String> = chosen.try_get("subject")?;
                let title = subject
                    .as_deref()
                    .map($crate::domain::conversation_title)
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "(no subject)".into());
                let max: Option<i64> = sqlx::query(q::NEXT_NUMBER).fetch_one(&mut *tx).await?.try_get("n")?;
                let number = max.unwrap_or(0) + 1;
                let id = ::uuid::Uuid::now_v7();
                sqlx::query(q::INSERT_RECORD)
                    .bind(id)
                    .bind(number)
                    .bind(pipeline)
                    .bind(stage)
                    .bind(contact)
                    .bind(row.try_get::<Option<::uuid::Uuid>, _>("owner_id")?)
                    .bind(row.try_get::<Option<::uuid::Uuid>, _>("alias_id")?)
                    .bind(title.as_str())
                    .bind(row.try_get::<String, _>("tags")?)
                    .bind($crate::domain::new_reply_token())
                    .bind(Some(record))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                // The moves, a statement per table and chunk.
                let keys: Vec<String> = nodes
                    .iter()
                    .filter(|n| moving.contains(&n.id))
                    .map(|n| index_key(&n.message_id).into_owned())
                    .collect();
                for chunk in moving.chunks(INSERT_CHUNK) {
                    for head in [q::MOVE_SOME_MESSAGES, q::MOVE_SOME_OUTBOX] {
                        let mut b: ::sqlx::QueryBuilder<$db> = ::sqlx::QueryBuilder::new(head);
                        b.push_bind(id).push(" WHERE id IN ");
                        b.push_tuples(chunk, |mut t, m| {
                            t.push_bind(*m);
                        });
                        b.build().execute(&mut *tx).await?;
                    }
                }
                for chunk in keys.chunks(INSERT_CHUNK) {
                    let mut b: ::sqlx::QueryBuilder<$db> = ::sqlx::QueryBuilder::new(q::MOVE_SOME_INDEX);
                    b.push_bind(id).push(" WHERE pipeline_id = ").push_bind(pipeline).push(" AND message_id IN ");
                    b.push_tuples(chunk, |mut t, k| {
                        t.push_bind(k.as_str());
                    });
                    b.build().execute(&mut *tx).await?;
                }
                sqlx::query(q::TOUCH).bind(now).bind(record).execute(&mut *tx).await?;
                let count = u64::try_from(moving.len()).unwrap_or(u64::MAX);
                for (on, kind, stages, detail) in [
                    (id, "created", (None, Some(stage)), format!("split from [#{from_number}]")),
                    (id, "split_from", (None, None), format!("[#{from_number}]: {count} messages")),
                    (record, "split_to", (None, None), format!("[#{number}]: {count} messages")),
                ] {
                    Self::reshape_event(&mut tx, on, kind, stages, actor, detail, now).await?;
                }
                tx.commit().await?;
                Ok($crate::store::Moved {
                    from: RecordLink::new(record, from_number),
                    into: RecordLink::new(id, number),
                    messages: count,
                })
            }
        }
    };
}

pub(super) use sql_merge_store;
