//! Storage of the team side: users, pipelines and their stages, contacts,
//! the outbox of replies, and server secrets.
//!
//! Like `sql.rs`, the SQL is written once for both dialects; `sql_team_store!`
//! is expanded next to `sql_store!` in each backend module and uses the
//! helpers (`record_view`, `page_cursor`, imports) that one defines.

use async_trait::async_trait;
use uuid::Uuid;

use crate::config::AliasConfig;

use super::{
    BlockedSender, ContactDetail, ContactFilter, ContactView, ListRequest, Page, PipelineView,
    Role, StageInput, StoreResult, UserChange, UserView,
};

/// The columns a [`UserView`] is read from (a macro, so queries can
/// `concat!` it into static SQL).
macro_rules! user_columns {
    () => {
        "id, email, name, role, password_hash IS NOT NULL AS can_log_in, notify, created_at"
    };
}
pub(super) use user_columns;

/// Users, pipelines, contacts, outbox and secrets.
#[async_trait]
pub trait TeamStore: Send + Sync + 'static {
    /// A random 32-byte secret stored under `name`, created on first use (the
    /// same for every replica of one database).
    async fn server_secret(&self, name: &str) -> StoreResult<Vec<u8>>;

    async fn list_users(&self, page: &ListRequest) -> StoreResult<Page<UserView>>;
    async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserView>>;
    /// # Errors
    /// [`super::StoreError::Conflict`] when the address is a user already.
    async fn create_user(&self, email: &str, name: &str, role: Role) -> StoreResult<UserView>;
    /// Renames a user and/or changes their role.
    async fn update_user(&self, id: Uuid, change: &UserChange) -> StoreResult<UserView>;
    /// # Errors
    /// [`super::StoreError::Conflict`] while records or aliases are assigned to the user.
    async fn delete_user(&self, id: Uuid) -> StoreResult<()>;

    async fn list_pipelines(&self, page: &ListRequest) -> StoreResult<Page<PipelineView>>;
    async fn get_pipeline(&self, id: Uuid) -> StoreResult<Option<PipelineView>>;
    /// # Errors
    /// [`super::StoreError::Conflict`] when the name is taken.
    async fn create_pipeline(&self, name: &str, stages: &[StageInput])
    -> StoreResult<PipelineView>;
    /// Renames a pipeline and/or replaces its stage list: stages are matched
    /// by `id`, else by name; new ones are created; a stage left out is
    /// deleted only when nothing refers to it.
    ///
    /// # Errors
    /// [`super::StoreError::Conflict`] naming the stage or name that blocks it.
    async fn update_pipeline(
        &self,
        id: Uuid,
        name: Option<&str>,
        stages: Option<&[StageInput]>,
    ) -> StoreResult<PipelineView>;
    /// # Errors
    /// [`super::StoreError::Conflict`] while records or aliases use the pipeline.
    async fn delete_pipeline(&self, id: Uuid) -> StoreResult<()>;

    /// Aliases as they are configured, by address, after `after` (or only
    /// the one with address `only`).
    async fn list_aliases(
        &self,
        after: Option<&str>,
        only: Option<&str>,
        limit: i64,
    ) -> StoreResult<Page<AliasConfig>>;

    async fn list_contacts(&self, filter: &ContactFilter) -> StoreResult<Page<ContactView>>;
    /// A contact with its most recent records (at most 100).
    async fn get_contact(&self, id: Uuid) -> StoreResult<Option<ContactDetail>>;

    /// Blocked senders added through the API, by entry.
    async fn list_blocked_senders(&self) -> StoreResult<Vec<BlockedSender>>;
    /// # Errors
    /// [`super::StoreError::Conflict`] when the entry is listed already.
    async fn add_blocked_sender(&self, entry: &str) -> StoreResult<BlockedSender>;
    /// `false` when there is no such entry.
    async fn remove_blocked_sender(&self, entry: &str) -> StoreResult<bool>;
}

/// Milliseconds since the epoch, the outbox's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

macro_rules! sql_team_store {
    ($store:ty, $db:ty) => {
        const PIPELINE_STAGES: &str =
            "SELECT id, name, kind, position FROM stages WHERE pipeline_id = $1 ORDER BY position, id";

        fn user_view(r: &DbRow) -> StoreResult<UserView> {
            Ok(UserView {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                role: {
                    let role: String = r.try_get("role")?;
                    Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("user role {role:?}")))?
                },
                can_log_in: r.try_get("can_log_in")?,
                notify: r.try_get("notify")?,
                created_at: r.try_get("created_at")?,
            })
        }

        impl $store {
            /// Pipelines from their rows, with every stage read in one query.
            async fn pipeline_views<'e, E>(exec: E, rows: &[DbRow]) -> StoreResult<Vec<PipelineView>>
            where
                E: ::sqlx::Executor<'e, Database = $db>,
            {
                let ids = rows.iter().map(|r| r.try_get("id")).collect::<Result<Vec<Uuid>, _>>()?;
                let mut stages: std::collections::HashMap<Uuid, Vec<StageView>> = Default::default();
                if !ids.is_empty() {
                    let mut q: QueryBuilder<$db> = QueryBuilder::new(
                        "SELECT id, pipeline_id, name, kind, position FROM stages WHERE pipeline_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in &ids {
                        list.push_bind(*id);
                    }
                    q.push(") ORDER BY position, id");
                    for s in q.build().fetch_all(exec).await? {
                        stages.entry(s.try_get("pipeline_id")?).or_default().push(StageView {
                            id: s.try_get("id")?,
                            name: s.try_get("name")?,
                            kind: s.try_get("kind")?,
                            position: s.try_get("position")?,
                        });
                    }
                }
                rows.iter()
                    .zip(ids)
                    .map(|(row, id)| {
                        Ok(PipelineView {
                            id,
                            name: row.try_get("name")?,
                            stages: stages.remove(&id).unwrap_or_default(),
                            created_at: row.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            /// Whether a row matches `sql` (a `SELECT 1 ... WHERE x = $1`).
            async fn referenced(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                sql: &'static str,
                id: Uuid,
            ) -> StoreResult<bool> {
                Ok(sqlx::query(sql).bind(id).fetch_optional(&mut **tx).await?.is_some())
            }

            /// Makes the pipeline's stages exactly `stages`, in order.
            async fn replace_stages(
                tx: &mut ::sqlx::Transaction<'static, $db>,
                pipeline: Uuid,
                stages: &[StageInput],
            ) -> StoreResult<()> {
                let existing: Vec<(Uuid, String)> = sqlx::query(PIPELINE_STAGES)
                    .bind(pipeline)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
                    .collect::<StoreResult<_>>()?;
                let mut kept: Vec<(Uuid, &StageInput)> = Vec::new();
                for input in stages {
                    let id = match input.id {
                        Some(id) if existing.iter().any(|(e, _)| *e == id) => id,
                        Some(id) => {
                            return Err(StoreError::Conflict(format!(
                                "stages: {id} is not a stage of this pipeline"
                            )));
                        }
                        None => existing
                            .iter()
                            .find(|(_, name)| *name == input.name)
                            .map_or_else(Uuid::now_v7, |(id, _)| *id),
                    };
                    kept.push((id, input));
                }
                for (id, name) in &existing {
                    if kept.iter().any(|(k, _)| k == id) {
                        continue;
                    }
                    for sql in [
                        "SELECT 1 AS hit FROM records WHERE stage_id = $1 LIMIT 1",
                        "SELECT 1 AS hit FROM reopen_rules WHERE from_stage_id = $1 OR to_stage_id = $1 LIMIT 1",
                        "SELECT 1 AS hit FROM record_events WHERE from_stage_id = $1 OR to_stage_id = $1 LIMIT 1",
                    ] {
                        if Self::referenced(tx, sql, *id).await? {
                            return Err(StoreError::Conflict(format!(
                                "stages: {name:?} is in use (records, history or reopen rules) and cannot be removed"
                            )));
                        }
                    }
                    sqlx::query("DELETE FROM stages WHERE id = $1").bind(*id).execute(&mut **tx).await?;
                }
                // A reopen rule must still go from a closed stage to an open one.
                let from_rule = "SELECT 1 AS hit FROM reopen_rules WHERE from_stage_id = $1 LIMIT 1";
                let to_rule = "SELECT 1 AS hit FROM reopen_rules WHERE to_stage_id = $1 LIMIT 1";
                for (id, input) in &kept {
                    if (input.kind != "closed" && Self::referenced(tx, from_rule, *id).await?)
                        || (input.kind != "open" && Self::referenced(tx, to_rule, *id).await?)
                    {
                        return Err(StoreError::Conflict(format!(
                            "stages: {:?} is used by a reopen rule and must keep its kind",
                            input.name
                        )));
                    }
                }
                // Free every name first, so renames and swaps never collide.
                for (id, _) in &kept {
                    sqlx::query("UPDATE stages SET name = $1 WHERE id = $2")
                        .bind(format!("(renaming {id})"))
                        .bind(*id)
                        .execute(&mut **tx)
                        .await?;
                }
                for (position, (id, input)) in kept.iter().enumerate() {
                    let position = i32::try_from(position).unwrap_or(i32::MAX);
                    sqlx::query(
                        "INSERT INTO stages (id, pipeline_id, name, kind, position) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, \
                         position = excluded.position",
                    )
                    .bind(*id)
                    .bind(pipeline)
                    .bind(input.name.as_str())
                    .bind(input.kind.as_str())
                    .bind(position)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl TeamStore for $store {
            async fn server_secret(&self, name: &str) -> StoreResult<Vec<u8>> {
                let select = "SELECT value FROM secrets WHERE name = $1";
                if let Some(row) = sqlx::query(select).bind(name).fetch_optional(self.read_pool()).await? {
                    return Ok(row.try_get("value")?);
                }
                let value: [u8; 32] = ::rand::random();
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(value.as_slice())
                .bind(Utc::now())
                .execute(&mut *tx)
                .await?;
                // Another replica may have won the insert: read what is stored.
                let row = sqlx::query(select).bind(name).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                Ok(row.try_get("value")?)
            }

            async fn list_users(&self, page: &ListRequest) -> StoreResult<Page<UserView>> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new(concat!("SELECT ", user_columns!(), " FROM users WHERE 1 = 1"));
                if let Some(cursor) = page.cursor {
                    q.push(" AND id > ").push_bind(cursor);
                }
                q.push(" ORDER BY id LIMIT ").push_bind(page.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = rows.iter().map(user_view).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = page_cursor(&mut items, page.limit, |u| u.id);
                Ok(Page { items, next_cursor })
            }

            async fn get_user(&self, id: Uuid) -> StoreResult<Option<UserView>> {
                sqlx::query(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?
                    .as_ref()
                    .map(user_view)
                    .transpose()
            }

            async fn create_user(&self, email: &str, name: &str, role: Role) -> StoreResult<UserView> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(concat!(
                    "INSERT INTO users (id, email, name, role, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (email) DO NOTHING RETURNING ",
                    user_columns!()
                ))
                .bind(Uuid::now_v7())
                .bind(email.to_lowercase())
                .bind(name)
                .bind(role.as_str())
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Conflict("email: a user with this address exists".into()))?;
                tx.commit().await?;
                user_view(&row)
            }

            async fn update_user(&self, id: Uuid, change: &UserChange) -> StoreResult<UserView> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(concat!(
                    "UPDATE users SET name = COALESCE($1, name), role = COALESCE($2, role), \
                     notify = COALESCE($3, notify) WHERE id = $4 RETURNING ",
                    user_columns!()
                ))
                .bind(change.name.as_deref())
                .bind(change.role.map(Role::as_str))
                .bind(change.notify)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
                tx.commit().await?;
                user_view(&row)
            }

            async fn delete_user(&self, id: Uuid) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for sql in [
                    "SELECT 1 AS hit FROM records WHERE owner_id = $1 LIMIT 1",
                    "SELECT 1 AS hit FROM aliases WHERE owner_id = $1 LIMIT 1",
                ] {
                    if Self::referenced(&mut tx, sql, id).await? {
                        return Err(StoreError::Conflict(
                            "the user owns records or aliases; assign them to someone else first".into(),
                        ));
                    }
                }
                for sql in [
                    "DELETE FROM web_sessions WHERE user_id = $1",
                    "DELETE FROM record_reads WHERE user_id = $1",
                    "DELETE FROM password_links WHERE user_id = $1",
                ] {
                    sqlx::query(sql).bind(id).execute(&mut *tx).await?;
                }
                let n = sqlx::query("DELETE FROM users WHERE id = $1").bind(id).execute(&mut *tx).await?;
                if n.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_pipelines(&self, page: &ListRequest) -> StoreResult<Page<PipelineView>> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new("SELECT id, name, created_at FROM pipelines WHERE 1 = 1");
                if let Some(cursor) = page.cursor {
                    q.push(" AND id > ").push_bind(cursor);
                }
                q.push(" ORDER BY id LIMIT ").push_bind(page.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = Self::pipeline_views(self.read_pool(), &rows).await?;
                let next_cursor = page_cursor(&mut items, page.limit, |p| p.id);
                Ok(Page { items, next_cursor })
            }

            async fn get_pipeline(&self, id: Uuid) -> StoreResult<Option<PipelineView>> {
                let row = sqlx::query("SELECT id, name, created_at FROM pipelines WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?;
                match row {
                    Some(row) => Ok(Self::pipeline_views(self.read_pool(), &[row]).await?.pop()),
                    None => Ok(None),
                }
            }

            async fn create_pipeline(&self, name: &str, stages: &[StageInput]) -> StoreResult<PipelineView> {
                let mut tx = self.begin_write().await?;
                let id = Uuid::now_v7();
                let row = sqlx::query(
                    "INSERT INTO pipelines (id, name, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO NOTHING RETURNING id, name, created_at",
                )
                .bind(id)
                .bind(name)
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Conflict("name: a pipeline with this name exists".into()))?;
                Self::replace_stages(&mut tx, id, stages).await?;
                let view = Self::pipeline_views(&mut *tx, &[row])
                    .await?
                    .pop()
                    .ok_or(StoreError::NotFound)?;
                tx.commit().await?;
                Ok(view)
            }

            async fn update_pipeline(
                &self,
                id: Uuid,
                name: Option<&str>,
                stages: Option<&[StageInput]>,
            ) -> StoreResult<PipelineView> {
                let mut tx = self.begin_write().await?;
                if sqlx::query("SELECT 1 AS hit FROM pipelines WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?.is_none() {
                    return Err(StoreError::NotFound);
                }
                if let Some(name) = name {
                    let taken = sqlx::query("SELECT 1 AS hit FROM pipelines WHERE name = $1 AND id <> $2")
                        .bind(name)
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if taken.is_some() {
                        return Err(StoreError::Conflict("name: a pipeline with this name exists".into()));
                    }
                    sqlx::query("UPDATE pipelines SET name = $1 WHERE id = $2").bind(name).bind(id).execute(&mut *tx).await?;
                }
                if let Some(stages) = stages {
                    Self::replace_stages(&mut tx, id, stages).await?;
                }
                let row = sqlx::query("SELECT id, name, created_at FROM pipelines WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let view = Self::pipeline_views(&mut *tx, &[row])
                    .await?
                    .pop()
                    .ok_or(StoreError::NotFound)?;
                tx.commit().await?;
                Ok(view)
            }

            async fn delete_pipeline(&self, id: Uuid) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                for sql in [
                    "SELECT 1 AS hit FROM records WHERE pipeline_id = $1 LIMIT 1",
                    "SELECT 1 AS hit FROM aliases WHERE pipeline_id = $1 LIMIT 1",
                ] {
                    if Self::referenced(&mut tx, sql, id).await? {
                        return Err(StoreError::Conflict(
                            "the pipeline has records or aliases; it can only be renamed".into(),
                        ));
                    }
                }
                sqlx::query("DELETE FROM message_ids WHERE pipeline_id = $1").bind(id).execute(&mut *tx).await?;
                sqlx::query("DELETE FROM stages WHERE pipeline_id = $1").bind(id).execute(&mut *tx).await?;
                let n = sqlx::query("DELETE FROM pipelines WHERE id = $1").bind(id).execute(&mut *tx).await?;
                if n.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_aliases(&self, after: Option<&str>, only: Option<&str>, limit: i64) -> StoreResult<Page<AliasConfig>> {
                let pool = self.read_pool();
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT a.id, a.address, a.name, p.name AS pipeline, u.email AS owner, a.tags, a.enabled, \
                     a.reopen_on_reply, a.extra_addresses, a.auth_policy, a.follow_up_days FROM aliases a JOIN pipelines p ON p.id = a.pipeline_id \
                     LEFT JOIN users u ON u.id = a.owner_id WHERE 1 = 1",
                );
                if let Some(after) = after {
                    q.push(" AND a.address > ").push_bind(after.to_lowercase());
                }
                if let Some(only) = only {
                    q.push(" AND a.address = ").push_bind(only.to_lowercase());
                }
                q.push(" ORDER BY a.address LIMIT ").push_bind(limit + 1);
                let rows = q.build().fetch_all(pool).await?;
                // Every listed alias's reopen rules in one query.
                let mut rules: std::collections::HashMap<Uuid, Vec<$crate::config::ReopenRuleConfig>> =
                    Default::default();
                if !rows.is_empty() {
                    let mut q: QueryBuilder<$db> = QueryBuilder::new(
                        "SELECT x.alias_id, f.name AS from_name, t.name AS to_name FROM reopen_rules x \
                         JOIN stages f ON f.id = x.from_stage_id JOIN stages t ON t.id = x.to_stage_id \
                         WHERE x.alias_id IN (",
                    );
                    let mut list = q.separated(", ");
                    for r in &rows {
                        list.push_bind(r.try_get::<Uuid, _>("id")?);
                    }
                    q.push(") ORDER BY f.position");
                    for x in q.build().fetch_all(pool).await? {
                        rules.entry(x.try_get("alias_id")?).or_default().push(
                            $crate::config::ReopenRuleConfig { from: x.try_get("from_name")?, to: x.try_get("to_name")? },
                        );
                    }
                }
                let mut items = Vec::with_capacity(rows.len());
                for r in &rows {
                    let reopen = rules.remove(&r.try_get::<Uuid, _>("id")?).unwrap_or_default();
                    items.push(AliasConfig {
                        address: r.try_get("address")?,
                        name: r.try_get("name")?,
                        pipeline: r.try_get("pipeline")?,
                        owner: r.try_get("owner")?,
                        tags: string_list(&r.try_get::<String, _>("tags")?)?,
                        enabled: r.try_get("enabled")?,
                        reopen_on_reply: r.try_get("reopen_on_reply")?,
                        reopen,
                        also: string_list(&r.try_get::<String, _>("extra_addresses")?)?,
                        auth: auth_policy(&r.try_get::<String, _>("auth_policy")?)?,
                        follow_up_days: $crate::store::sql::follow_up_days(r.try_get("follow_up_days")?),
                    });
                }
                let next_cursor = if items.len() > usize::try_from(limit).unwrap_or(0) {
                    items.truncate(usize::try_from(limit).unwrap_or(0));
                    items.last().map(|a| a.address.clone())
                } else {
                    None
                };
                Ok(Page { items, next_cursor })
            }

            async fn list_contacts(&self, f: &ContactFilter) -> StoreResult<Page<ContactView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(CONTACT_SELECT);
                q.push(" WHERE 1 = 1");
                if let Some(email) = &f.email {
                    q.push(" AND email = ").push_bind(email.trim().to_lowercase());
                }
                if let Some(text) = &f.q {
                    let pattern = $crate::store::team::like_pattern(text);
                    q.push(" AND (email LIKE ").push_bind(pattern.clone()).push(" ESCAPE '\\'");
                    q.push(" OR LOWER(name) LIKE ").push_bind(pattern).push(" ESCAPE '\\')");
                }
                if let Some(cursor) = f.cursor {
                    q.push(" AND id > ").push_bind(cursor);
                }
                q.push(" ORDER BY id LIMIT ").push_bind(f.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = rows.iter().map(contact_view).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = page_cursor(&mut items, f.limit, |c| c.id);
                Ok(Page { items, next_cursor })
            }

            async fn get_contact(&self, id: Uuid) -> StoreResult<Option<ContactDetail>> {
                let pool = self.read_pool();
                let mut q: QueryBuilder<$db> = QueryBuilder::new(CONTACT_SELECT);
                q.push(" WHERE id = ").push_bind(id);
                let Some(row) = q.build().fetch_optional(pool).await? else {
                    return Ok(None);
                };
                let contact = contact_view(&row)?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(RECORD_SELECT);
                q.push(" WHERE r.contact_id = ").push_bind(id).push(" ORDER BY r.id DESC LIMIT 100");
                let records = q.build().fetch_all(pool).await?.iter().map(record_view).collect::<StoreResult<_>>()?;
                Ok(Some(ContactDetail { contact, records }))
            }

            async fn list_blocked_senders(&self) -> StoreResult<Vec<BlockedSender>> {
                sqlx::query("SELECT entry, created_at FROM blocked_senders ORDER BY entry")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok(BlockedSender { entry: r.try_get("entry")?, source: "api", created_at: r.try_get("created_at")? }))
                    .collect()
            }

            async fn add_blocked_sender(&self, entry: &str) -> StoreResult<BlockedSender> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO blocked_senders (entry, created_at) VALUES ($1, $2) \
                     ON CONFLICT (entry) DO NOTHING RETURNING entry, created_at",
                )
                .bind(entry)
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Conflict("entry: it is blocked already".into()))?;
                tx.commit().await?;
                Ok(BlockedSender { entry: row.try_get("entry")?, source: "api", created_at: row.try_get("created_at")? })
            }

            async fn remove_blocked_sender(&self, entry: &str) -> StoreResult<bool> {
                self.write_one(sqlx::query("DELETE FROM blocked_senders WHERE entry = $1").bind(entry.to_string())).await
            }

        }
    };
}

pub(super) use sql_team_store;

/// A lower-case `LIKE` pattern matching `text` anywhere, `\` escaping.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern(" Ann "), "%ann%");
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
