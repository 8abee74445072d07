//! Records as people work them: the board's lists, one record with its
//! conversation and events, stage/owner/tag changes and comments.
//!
//! `sql_record_store!` is expanded in each backend beside `sql_store!`,
//! whose imports and helpers (`record_view`, `sort_conversation`) it uses.

use async_trait::async_trait;
use uuid::Uuid;

use super::{Page, RecordChange, RecordDetail, RecordFilter, RecordView, StoreResult};

/// Records and their comments, read and changed by people.
#[async_trait]
pub trait RecordStore: Send + Sync {
    /// Applies a person's change to a record, writing one event per field
    /// that changed (`stage_changed`, `owner_changed`, `tags_changed`).
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] for an unknown record; [`super::StoreError::Conflict`]
    /// naming the field for a stage not in its pipeline or an unknown owner.
    async fn update_record(&self, id: Uuid, change: &RecordChange, actor: &str) -> StoreResult<()>;

    /// Adds an internal comment (never emailed) with its resolved mentions
    /// and a `commented` event; returns the comment's id.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] for an unknown record.
    async fn add_comment(
        &self,
        record: Uuid,
        text: &str,
        actor: &str,
        mentions: &[String],
    ) -> StoreResult<Uuid>;

    async fn list_records(&self, filter: &RecordFilter) -> StoreResult<Page<RecordView>>;

    /// These records, in the order given (unknown ids are left out).
    async fn records_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<RecordView>>;

    async fn get_record(&self, id: Uuid) -> StoreResult<Option<RecordDetail>>;
}

macro_rules! sql_record_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl $crate::store::RecordStore for $store {
            async fn update_record(&self, id: Uuid, change: &RecordChange, actor: &str) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query("SELECT stage_id, owner_id, tags FROM records WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                let (stage_id, owner_id, tags): (Uuid, Option<Uuid>, String) =
                    (row.try_get("stage_id")?, row.try_get("owner_id")?, row.try_get("tags")?);
                let now = Utc::now();
                let event = |kind: &'static str, from: Option<Uuid>, to: Option<Uuid>, detail: Option<String>| {
                    sqlx::query(
                        "INSERT INTO record_events (id, record_id, kind, from_stage_id, to_stage_id, message_id, actor, \
                         detail, created_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8)",
                    )
                    .bind(Uuid::now_v7())
                    .bind(id)
                    .bind(kind)
                    .bind(from)
                    .bind(to)
                    .bind(actor.to_string())
                    .bind(detail)
                    .bind(now)
                };
                if let Some(stage) = &change.stage {
                    let to: Uuid = sqlx::query(
                        "SELECT s.id FROM stages s JOIN records r ON r.pipeline_id = s.pipeline_id \
                         WHERE r.id = $1 AND s.name = $2",
                    )
                    .bind(id)
                    .bind(stage.as_str())
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::Conflict(format!("stage: {stage:?} is not a stage of this pipeline")))?
                    .try_get("id")?;
                    if to != stage_id {
                        sqlx::query("UPDATE records SET stage_id = $1, updated_at = $2, stage_changed_at = $2 WHERE id = $3")
                            .bind(to)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        event("stage_changed", Some(stage_id), Some(to), None).execute(&mut *tx).await?;
                    }
                }
                if let Some(owner) = &change.owner {
                    let to: Uuid = sqlx::query("SELECT id FROM users WHERE email = $1")
                        .bind(owner.to_lowercase())
                        .fetch_optional(&mut *tx)
                        .await?
                        .ok_or_else(|| StoreError::Conflict(format!("owner: {owner:?} is not a user")))?
                        .try_get("id")?;
                    if Some(to) != owner_id {
                        sqlx::query("UPDATE records SET owner_id = $1, updated_at = $2 WHERE id = $3")
                            .bind(to)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        event("owner_changed", None, None, Some(owner.to_lowercase())).execute(&mut *tx).await?;
                    }
                }
                if let Some(new_tags) = &change.tags {
                    let new_json = to_json(new_tags);
                    if new_json != tags {
                        sqlx::query("UPDATE records SET tags = $1, updated_at = $2 WHERE id = $3")
                            .bind(&new_json)
                            .bind(now)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        event("tags_changed", None, None, Some(new_json)).execute(&mut *tx).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn add_comment(&self, record: Uuid, text: &str, actor: &str, mentions: &[String]) -> StoreResult<Uuid> {
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 AS hit FROM records WHERE id = $1")
                    .bind(record)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::NotFound);
                }
                let id = Uuid::now_v7();
                let now = Utc::now();
                sqlx::query(
                    "INSERT INTO messages (id, record_id, direction, message_id, from_name, text_body, thread_rule, \
                     created_at, class, mentions) VALUES ($1, $2, 'comment', $3, $4, $5, 'comment', $6, 'normal', $7)",
                )
                .bind(id)
                .bind(record)
                .bind(format!("comment-{id}"))
                .bind(actor)
                .bind(text)
                .bind(now)
                .bind(to_json(&mentions))
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO record_events (id, record_id, kind, message_id, actor, created_at) \
                     VALUES ($1, $2, 'commented', $3, $4, $5)",
                )
                .bind(Uuid::now_v7())
                .bind(record)
                .bind(id)
                .bind(actor)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("UPDATE records SET updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(record)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn list_records(&self, f: &RecordFilter) -> StoreResult<Page<RecordView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(RECORD_SELECT);
                q.push(" WHERE 1 = 1");
                if let Some(p) = &f.pipeline {
                    q.push(" AND p.name = ").push_bind(p.as_str());
                }
                if let Some(s) = &f.stage {
                    q.push(" AND s.name = ").push_bind(s.as_str());
                }
                if let Some(c) = &f.contact {
                    q.push(" AND c.email = ").push_bind(c.to_lowercase());
                }
                if let Some(owner) = &f.owner {
                    q.push(" AND u.email = ").push_bind(owner.to_lowercase());
                }
                if let Some(tag) = &f.tag {
                    // Tags are a JSON list: match the quoted element.
                    let element = $crate::store::team::like_pattern(&to_json(tag));
                    q.push(" AND LOWER(r.tags) LIKE ").push_bind(element).push(" ESCAPE '\\'");
                }
                if let Some(text) = &f.text {
                    let pattern = $crate::store::team::like_pattern(text);
                    q.push(" AND LOWER(r.title) LIKE ").push_bind(pattern).push(" ESCAPE '\\'");
                }
                if let Some(since) = f.updated_since {
                    q.push(" AND r.updated_at >= ").push_bind(since);
                }
                if let Some(cursor) = f.cursor {
                    q.push(" AND r.id < ").push_bind(cursor);
                }
                q.push(" ORDER BY r.id DESC LIMIT ").push_bind(f.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = rows.iter().map(record_view).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = page_cursor(&mut items, f.limit, |r| r.id);
                Ok(Page { items, next_cursor })
            }

            async fn records_by_ids(&self, ids: &[Uuid]) -> StoreResult<Vec<RecordView>> {
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q: QueryBuilder<$db> = QueryBuilder::new(RECORD_SELECT);
                q.push(" WHERE r.id IN ");
                q.push_tuples(ids, |mut t, id| {
                    t.push_bind(*id);
                });
                let mut found: std::collections::HashMap<Uuid, RecordView> = Default::default();
                for row in q.build().fetch_all(self.read_pool()).await? {
                    let view = record_view(&row)?;
                    found.insert(view.id, view);
                }
                Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
            }

            async fn get_record(&self, id: Uuid) -> StoreResult<Option<RecordDetail>> {
                let pool = self.read_pool();
                let mut q: QueryBuilder<$db> = QueryBuilder::new(RECORD_SELECT);
                q.push(" WHERE r.id = ").push_bind(id);
                let Some(row) = q.build().fetch_optional(pool).await? else {
                    return Ok(None);
                };
                let record = record_view(&row)?;

                let mut attachments: std::collections::HashMap<Uuid, Vec<AttachmentView>> = Default::default();
                for r in sqlx::query(
                    "SELECT a.id, a.message_id, a.name, a.content_type, a.size, a.sha256, a.content_id, a.inline \
                     FROM attachments a \
                     JOIN messages m ON m.id = a.message_id WHERE m.record_id = $1 ORDER BY a.id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
                {
                    attachments
                        .entry(r.try_get("message_id")?)
                        .or_default()
                        .push($crate::store::conversations::attachment_view(&r)?);
                }

                let mut conversation = Vec::new();
                for r in sqlx::query(
                    "SELECT m.id, m.inbound_id, m.direction, m.message_id, m.in_reply_to, m.refs, m.from_addr, \
                     m.from_name, m.to_addrs, m.cc_addrs, m.reply_to, m.subject, m.sent_at, m.text_body, \
                     m.html_body, m.reply_text, m.thread_rule, m.thread_value, m.created_at, m.class, m.mentions, \
                     o.status AS delivery_status, o.attempts AS delivery_attempts, \
                     o.last_reply AS delivery_reply, o.sent_at AS delivery_sent_at, i.auth_results, i.details \
                     FROM messages m LEFT JOIN outbox o ON o.id = m.id LEFT JOIN inbound i ON i.id = m.inbound_id \
                     WHERE m.record_id = $1 \
                     ORDER BY m.created_at, m.id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
                {
                    let message_uuid: Uuid = r.try_get("id")?;
                    let from_name: Option<String> = r.try_get("from_name")?;
                    let direction: String = r.try_get("direction")?;
                    let author = (direction == "comment").then(|| from_name.clone()).flatten();
                    let from = match r.try_get::<Option<String>, _>("from_addr")? {
                        Some(address) => Some(Mailbox { address, name: from_name }),
                        None => None,
                    };
                    conversation.push(ConversationItem::Message(Box::new(MessageView {
                        id: message_uuid,
                        author,
                        direction,
                        message_id: r.try_get("message_id")?,
                        in_reply_to: r.try_get("in_reply_to")?,
                        references: string_list(&r.try_get::<String, _>("refs")?)?,
                        from,
                        to: mailbox_list(&r.try_get::<String, _>("to_addrs")?)?,
                        cc: mailbox_list(&r.try_get::<String, _>("cc_addrs")?)?,
                        reply_to: r.try_get("reply_to")?,
                        subject: r.try_get("subject")?,
                        date: r.try_get("sent_at")?,
                        reply_text: match r.try_get::<Option<String>, _>("reply_text")? {
                            Some(new) => Some(new),
                            None => r.try_get::<Option<String>, _>("text_body")?.map(|t| $crate::domain::normalized(&t)),
                        },
                        text: r.try_get("text_body")?,
                        html: r.try_get("html_body")?,
                        attachments: attachments.remove(&message_uuid).unwrap_or_default(),
                        thread: ThreadDecision { rule: r.try_get("thread_rule")?, value: r.try_get("thread_value")? },
                        inbound_id: r.try_get("inbound_id")?,
                        class: r.try_get("class")?,
                        mentions: string_list(&r.try_get::<String, _>("mentions")?)?,
                        delivery: match r.try_get::<Option<String>, _>("delivery_status")? {
                            Some(status) => Some(DeliveryView {
                                status,
                                attempts: r.try_get("delivery_attempts")?,
                                last_reply: r.try_get("delivery_reply")?,
                                sent_at: r.try_get("delivery_sent_at")?,
                            }),
                            None => None,
                        },
                        authentication_results: r.try_get("auth_results")?,
                        bounce: r
                            .try_get::<Option<String>, _>("details")?
                            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
                            .and_then(|mut d| d.get_mut("bounce").map(serde_json::Value::take)),
                        created_at: r.try_get("created_at")?,
                    })));
                }
                for r in sqlx::query(
                    "SELECT e.id, e.kind, fs.name AS from_stage, ts.name AS to_stage, e.message_id, e.actor, \
                     e.detail, e.created_at FROM record_events e LEFT JOIN stages fs ON fs.id = e.from_stage_id \
                     LEFT JOIN stages ts ON ts.id = e.to_stage_id WHERE e.record_id = $1 ORDER BY e.created_at, e.id",
                )
                .bind(id)
                .fetch_all(pool)
                .await?
                {
                    conversation.push(ConversationItem::Event(EventView {
                        id: r.try_get("id")?,
                        kind: r.try_get("kind")?,
                        from_stage: r.try_get("from_stage")?,
                        to_stage: r.try_get("to_stage")?,
                        message_id: r.try_get("message_id")?,
                        actor: r.try_get("actor")?,
                        detail: r.try_get("detail")?,
                        created_at: r.try_get("created_at")?,
                    }));
                }
                sort_conversation(&mut conversation);
                Ok(Some(RecordDetail { record, conversation }))
            }
        }
    };
}
pub(super) use sql_record_store;
