//! The SQL of both backends, written once.
//!
//! Every statement here is valid on SQLite and PostgreSQL (`$N` parameters,
//! `ON CONFLICT`, `RETURNING`). `sql_store!` instantiates [`Store`] and [`Tx`]
//! for a backend type that provides `read_pool()`, `begin_write()`,
//! `begin_processing()` and `run_migrations()`.

use std::collections::HashMap;

use crate::domain::{AliasEntry, Directory, PipelineEntry, StageEntry, StageKind};
use crate::store::{ConversationItem, Mailbox, StoreError, StoreResult};

/// One message insert, as `bind_message` binds it: `$1`..`$19` are the
/// message, `$20` the pipeline, `$21` an event id, `$22` the message's class,
/// `$23` its reply text
/// (processing writes its messages in batches instead, see `behind.rs`).
macro_rules! insert_message_sql {
    () => {
        "INSERT INTO messages (id, record_id, inbound_id, direction, message_id, in_reply_to, refs, \
         from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, sent_at, text_body, html_body, \
         thread_rule, thread_value, created_at, class, reply_text) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $22, $23)"
    };
}

pub(super) use insert_message_sql;

/// How many rows one multi-row INSERT carries (well under both backends'
/// bound-parameter limits).
pub(super) const INSERT_CHUNK: usize = 500;

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

pub(super) fn string_list(json: &str) -> StoreResult<Vec<String>> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("list column: {e}")))
}

pub(super) fn mailbox_list(json: &str) -> StoreResult<Vec<Mailbox>> {
    #[derive(serde::Deserialize)]
    struct Row {
        address: String,
        name: Option<String>,
    }
    let rows: Vec<Row> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("address column: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|r| Mailbox {
            address: r.address,
            name: r.name,
        })
        .collect())
}

pub(super) fn source_kind(source: &str) -> StoreResult<crate::domain::SourceKind> {
    source.parse().map_err(StoreError::Corrupt)
}

pub(super) fn auth_policy(policy: &str) -> StoreResult<crate::domain::AuthPolicy> {
    crate::domain::AuthPolicy::parse(policy)
        .ok_or_else(|| StoreError::Corrupt(format!("alias auth policy {policy:?}")))
}

/// A stored follow-up window; a negative one (never written) is none.
pub(super) fn follow_up_days(days: Option<i64>) -> Option<u32> {
    days.and_then(|d| u32::try_from(d).ok())
}

pub(super) fn stage_kind(kind: &str) -> StoreResult<StageKind> {
    StageKind::parse(kind).ok_or_else(|| StoreError::Corrupt(format!("stage kind {kind:?}")))
}

/// Assembles a directory from its rows.
pub(super) struct DirectoryRows {
    pub pipelines: Vec<(uuid::Uuid, String)>,
    pub stages: Vec<(uuid::Uuid, uuid::Uuid, String, String, i32)>,
    pub aliases: Vec<AliasEntry>,
    pub rules: Vec<(uuid::Uuid, uuid::Uuid, uuid::Uuid)>,
}

impl DirectoryRows {
    pub fn build(self) -> StoreResult<Directory> {
        let mut pipelines: HashMap<_, _> = self
            .pipelines
            .into_iter()
            .map(|(id, name)| {
                (
                    id,
                    PipelineEntry {
                        id,
                        name,
                        stages: Vec::new(),
                    },
                )
            })
            .collect();
        for (id, pipeline_id, name, kind, position) in self.stages {
            if let Some(p) = pipelines.get_mut(&pipeline_id) {
                p.stages.push(StageEntry {
                    id,
                    name,
                    kind: stage_kind(&kind)?,
                    position,
                });
            }
        }
        for p in pipelines.values_mut() {
            p.stages.sort_by_key(|s| s.position);
        }
        let mut aliases = self.aliases;
        for (alias_id, from, to) in self.rules {
            if let Some(a) = aliases.iter_mut().find(|a| a.id == alias_id) {
                a.reopen.insert(from, to);
            }
        }
        let mut directory = Directory {
            pipelines,
            aliases: HashMap::new(),
        };
        for alias in aliases {
            if directory.pipelines.contains_key(&alias.pipeline_id) {
                directory.insert_alias(alias);
            }
        }
        Ok(directory)
    }
}

/// Longest Message-ID kept as written in the thread index; a longer one is
/// indexed by its hash (PostgreSQL's btree takes keys up to ~2.7 KB, and no
/// real id comes near this).
const MAX_INDEXED_ID: usize = 255;

/// The thread-index key of a Message-ID: itself, or `sha256:<hex>` when long.
pub(super) fn index_key(message_id: &str) -> std::borrow::Cow<'_, str> {
    use sha2::Digest;
    if message_id.len() <= MAX_INDEXED_ID {
        std::borrow::Cow::Borrowed(message_id)
    } else {
        std::borrow::Cow::Owned(format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(message_id.as_bytes()))
        ))
    }
}

/// Orders a conversation by time; ties keep insertion order (events that
/// announce a message come before it).
pub(super) fn sort_conversation(items: &mut [ConversationItem]) {
    items.sort_by_key(ConversationItem::at);
}

/// `several_statements_per_call`: the backend runs `;`-separated statements
/// with their binds in one call (SQLite does; PostgreSQL prepares one
/// statement per call), so a write-behind flush needs one round trip.
/// `intake_in_processing`: see [`Store::intake_in_processing`].
macro_rules! sql_store {
    ($store:ty, $tx:ident, $db:ty, several_statements_per_call = $several:expr, intake_in_processing = $together:expr) => {
        use ::async_trait::async_trait;
        use ::chrono::Utc;
        use ::sqlx::{QueryBuilder, Row};
        use ::uuid::Uuid;

        use $crate::config::{AliasConfig, PipelineConfig};
        use $crate::domain::{AliasEntry, Directory, EmailAddress};
        use $crate::domain::{Envelope, ImapMailbox, InboundMessage, Source};
        use $crate::store::behind::{WriteBehind, write_at_once};
        use $crate::store::sql::{
            DirectoryRows, INSERT_CHUNK, auth_policy, follow_up_days, index_key, source_kind, mailbox_list, sort_conversation, string_list,
            to_json,
        };
        use $crate::store::*;

        type DbRow = <$db as ::sqlx::Database>::Row;

        const RECORD_SELECT: &str = "SELECT r.id, r.number, p.name AS pipeline, s.name AS stage, \
            s.kind AS stage_kind, r.title, r.tags, u.email AS owner, r.related_record_id, c.id AS contact_id, \
            c.email AS contact_email, c.name AS contact_name, c.created_at AS contact_created_at, \
            c.bounced_at AS contact_bounced_at, c.bounce_status AS contact_bounce_status, \
            c.complained_at AS contact_complained_at, c.unsubscribed_at AS contact_unsubscribed_at, \
            c.erased_at AS contact_erased_at, r.created_at, r.updated_at, r.merged_into, \
            mr.number AS merged_into_number \
            FROM records r JOIN pipelines p ON p.id = r.pipeline_id \
            JOIN stages s ON s.id = r.stage_id \
            LEFT JOIN users u ON u.id = r.owner_id \
            LEFT JOIN contacts c ON c.id = r.contact_id \
            LEFT JOIN records mr ON mr.id = r.merged_into";

        const INBOUND_SELECT: &str = "SELECT id, received_at, source, mail_from, rcpt_to, client_ip, \
            helo, tls, size, sha256, status, outcome, error, processed_at, auth_results, details, \
            raw_removed_at, raw_removed_why FROM inbound";

        fn record_view(row: &DbRow) -> StoreResult<RecordView> {
            let number: i64 = row.try_get("number")?;
            let contact = match row.try_get::<Option<Uuid>, _>("contact_id")? {
                Some(id) => Some(ContactView {
                    id,
                    email: row.try_get("contact_email")?,
                    name: row.try_get("contact_name")?,
                    created_at: row.try_get("contact_created_at")?,
                    bounced_at: row.try_get("contact_bounced_at")?,
                    bounce_status: row.try_get("contact_bounce_status")?,
                    complained_at: row.try_get("contact_complained_at")?,
                    unsubscribed_at: row.try_get("contact_unsubscribed_at")?,
                    erased_at: row.try_get("contact_erased_at")?,
                }),
                None => None,
            };
            Ok(RecordView {
                id: row.try_get("id")?,
                number,
                reference: format!("[#{number}]"),
                pipeline: row.try_get("pipeline")?,
                stage: row.try_get("stage")?,
                stage_kind: row.try_get("stage_kind")?,
                title: row.try_get("title")?,
                tags: string_list(&row.try_get::<String, _>("tags")?)?,
                owner: row.try_get("owner")?,
                contact,
                related_record_id: row.try_get("related_record_id")?,
                merged_into: match (
                    row.try_get::<Option<Uuid>, _>("merged_into")?,
                    row.try_get::<Option<i64>, _>("merged_into_number")?,
                ) {
                    (Some(id), Some(number)) => Some(RecordLink::new(id, number)),
                    _ => None,
                },
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        const CONTACT_SELECT: &str = "SELECT id, email, name, created_at, bounced_at, bounce_status, \
            complained_at, unsubscribed_at, erased_at FROM contacts";

        fn contact_view(r: &DbRow) -> StoreResult<ContactView> {
            Ok(ContactView {
                id: r.try_get("id")?,
                email: r.try_get("email")?,
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
                bounced_at: r.try_get("bounced_at")?,
                bounce_status: r.try_get("bounce_status")?,
                complained_at: r.try_get("complained_at")?,
                unsubscribed_at: r.try_get("unsubscribed_at")?,
                erased_at: r.try_get("erased_at")?,
            })
        }

        fn inbound_view(row: &DbRow) -> StoreResult<InboundView> {
            Ok(InboundView {
                id: row.try_get("id")?,
                received_at: row.try_get("received_at")?,
                source: row.try_get("source")?,
                mail_from: row.try_get("mail_from")?,
                rcpt_to: string_list(&row.try_get::<String, _>("rcpt_to")?)?,
                client_ip: row.try_get("client_ip")?,
                helo: row.try_get("helo")?,
                tls: row.try_get("tls")?,
                size: row.try_get("size")?,
                sha256: row.try_get("sha256")?,
                status: row.try_get("status")?,
                outcome: row.try_get("outcome")?,
                error: row.try_get("error")?,
                processed_at: row.try_get("processed_at")?,
                auth_results: row.try_get("auth_results")?,
                details: row
                    .try_get::<Option<String>, _>("details")?
                    .and_then(|d| serde_json::from_str(&d).ok()),
                raw_removed: match row.try_get::<Option<::chrono::DateTime<Utc>>, _>("raw_removed_at")? {
                    Some(at) => Some(RawRemoved { at, why: row.try_get::<Option<String>, _>("raw_removed_why")?.unwrap_or_default() }),
                    None => None,
                },
            })
        }

        fn token_view(row: &DbRow) -> StoreResult<TokenView> {
            let role: String = row.try_get("role")?;
            Ok(TokenView {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("token role {role:?}")))?,
                created_at: row.try_get("created_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        fn record_state(row: &DbRow) -> StoreResult<RecordState> {
            Ok(RecordState {
                id: row.try_get("id")?,
                number: row.try_get("number")?,
                pipeline_id: row.try_get("pipeline_id")?,
                stage_id: row.try_get("stage_id")?,
                stage_since: row.try_get("stage_changed_at")?,
            })
        }


        #[async_trait]
        impl Store for $store {
            async fn migrate(&self) -> StoreResult<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(self.read_pool()).await?;
                Ok(())
            }

            async fn probe_write(&self, bytes: usize) -> StoreResult<()> {
                for payload in [vec![0u8; bytes], Vec::new()] {
                    let mut tx = self.begin_write().await?;
                    sqlx::query(
                        "INSERT INTO write_probe (id, checked_at, payload) VALUES (1, $1, $2) \
                         ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at, payload = excluded.payload",
                    )
                    .bind(Utc::now())
                    .bind(payload)
                    .execute(&mut *tx)
                    .await?;
                    tx.commit().await?;
                }
                Ok(())
            }

            async fn close(&self) {
                self.close_pools().await;
            }

            async fn bootstrap(
                &self,
                pipelines: &[PipelineConfig],
                aliases: &[AliasConfig],
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let now = Utc::now();
                for p in pipelines {
                    let id: Uuid = sqlx::query(
                        "INSERT INTO pipelines (id, name, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING id",
                    )
                    .bind(Uuid::now_v7())
                    .bind(&p.name)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("id")?;
                    for (position, s) in p.stages.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO stages (id, pipeline_id, name, kind, position) \
                             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (pipeline_id, name) \
                             DO UPDATE SET kind = excluded.kind, position = excluded.position \
                             RETURNING id",
                        )
                        .bind(Uuid::now_v7())
                        .bind(id)
                        .bind(&s.name)
                        .bind(s.kind.as_str())
                        .bind(i32::try_from(position).unwrap_or(i32::MAX))
                        .fetch_one(&mut *tx)
                        .await?;
                    }
                }
                for a in aliases {
                    upsert_alias(&mut tx, a).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn load_directory(&self) -> StoreResult<Directory> {
                let pool = self.read_pool();
                let pipelines = sqlx::query("SELECT id, name FROM pipelines")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("id")?, r.try_get("name")?)))
                    .collect::<StoreResult<Vec<_>>>()?;
                let stages = sqlx::query("SELECT id, pipeline_id, name, kind, position FROM stages")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok((
                            r.try_get("id")?,
                            r.try_get("pipeline_id")?,
                            r.try_get("name")?,
                            r.try_get("kind")?,
                            r.try_get("position")?,
                        ))
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                let aliases = sqlx::query(
                    "SELECT id, address, name, pipeline_id, owner_id, tags, enabled, reopen_on_reply, \
                     extra_addresses, auth_policy, follow_up_days FROM aliases",
                )
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let address: String = r.try_get("address")?;
                    Ok(AliasEntry {
                        id: r.try_get("id")?,
                        address: EmailAddress::parse(&address)
                            .map_err(|e| StoreError::Corrupt(format!("alias {address:?}: {e}")))?,
                        name: r.try_get("name")?,
                        pipeline_id: r.try_get("pipeline_id")?,
                        owner_id: r.try_get("owner_id")?,
                        tags: string_list(&r.try_get::<String, _>("tags")?)?,
                        enabled: r.try_get("enabled")?,
                        reopen_on_reply: r.try_get("reopen_on_reply")?,
                        reopen: Default::default(),
                        also: string_list(&r.try_get::<String, _>("extra_addresses")?)?
                            .iter()
                            .filter_map(|a| EmailAddress::parse(a).ok())
                            .collect(),
                        auth: auth_policy(&r.try_get::<String, _>("auth_policy")?)?,
                        follow_up_days: follow_up_days(r.try_get("follow_up_days")?),
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
                let rules = sqlx::query("SELECT alias_id, from_stage_id, to_stage_id FROM reopen_rules")
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("alias_id")?, r.try_get("from_stage_id")?, r.try_get("to_stage_id")?)))
                    .collect::<StoreResult<Vec<_>>>()?;
                DirectoryRows { pipelines, stages, aliases, rules }.build()
            }

            async fn insert_inbound(&self, batch: &[&InboundMessage]) -> StoreResult<Vec<Uuid>> {
                let mut tx = self.begin_write().await?;
                let ids = insert_inbound_rows(&mut tx, batch).await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
                Ok(Box::new($tx::new(self.begin_processing().await?)))
            }

            fn intake_in_processing(&self) -> bool {
                $together
            }

            async fn stored_message_ids(&self, message_ids: &[String]) -> StoreResult<Vec<String>> {
                let mut found = Vec::with_capacity(message_ids.len());
                for chunk in message_ids.chunks(INSERT_CHUNK) {
                    let keys: std::collections::HashMap<_, &String> =
                        chunk.iter().map(|id| (index_key(id), id)).collect();
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("SELECT DISTINCT message_id FROM message_ids WHERE message_id IN (");
                    let mut list = q.separated(", ");
                    for key in keys.keys() {
                        list.push_bind(key.as_ref());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(self.read_pool()).await? {
                        let key: String = row.try_get("message_id")?;
                        if let Some(id) = keys.get(key.as_str()) {
                            found.push((*id).clone());
                        }
                    }
                }
                Ok(found)
            }

            async fn existing_users(&self, emails: &[String]) -> StoreResult<Vec<String>> {
                if emails.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q: QueryBuilder<$db> = QueryBuilder::new("SELECT email FROM users WHERE email IN (");
                let mut list = q.separated(", ");
                for e in emails {
                    list.push_bind(e.as_str());
                }
                q.push(")");
                q.build()
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok(r.try_get("email")?))
                    .collect()
            }

            async fn save_alias(&self, alias: &AliasConfig) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                upsert_alias(&mut tx, alias).await?;
                tx.commit().await?;
                Ok(())
            }

        }

        /// Creates or updates an alias (by address) and replaces its reopen
        /// rules; its pipeline and stages are looked up by name.
        async fn upsert_alias(tx: &mut ::sqlx::Transaction<'static, $db>, a: &AliasConfig) -> StoreResult<()> {
            let invalid = |what: String| StoreError::Conflict(format!("alias {:?}: {what}", a.address));
            let address = EmailAddress::parse(&a.address).map_err(|e| invalid(e.to_string()))?;
            let pipeline_id: Uuid = sqlx::query("SELECT id FROM pipelines WHERE name = $1")
                .bind(&a.pipeline)
                .fetch_optional(&mut **tx)
                .await?
                .ok_or_else(|| invalid(format!("unknown pipeline {:?}", a.pipeline)))?
                .try_get("id")?;
            let owner_id: Option<Uuid> = match &a.owner {
                Some(owner) => {
                    let owner = EmailAddress::parse(owner).map_err(|e| invalid(format!("owner {owner:?}: {e}")))?;
                    Some(
                        sqlx::query(
                            "INSERT INTO users (id, email, name, created_at) VALUES ($1, $2, '', $3) \
                             ON CONFLICT (email) DO UPDATE SET email = excluded.email RETURNING id",
                        )
                        .bind(Uuid::now_v7())
                        .bind(owner.as_str())
                        .bind(Utc::now())
                        .fetch_one(&mut **tx)
                        .await?
                        .try_get("id")?,
                    )
                }
                None => None,
            };
            let also: Vec<String> =
                a.also.iter().filter_map(|x| EmailAddress::parse(x).ok().map(|e| e.to_string())).collect();
            let alias_id: Uuid = sqlx::query(
                "INSERT INTO aliases (id, address, name, pipeline_id, owner_id, tags, enabled, reopen_on_reply, \
                 extra_addresses, auth_policy, follow_up_days) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (address) DO UPDATE SET \
                 name = excluded.name, pipeline_id = excluded.pipeline_id, owner_id = excluded.owner_id, \
                 tags = excluded.tags, enabled = excluded.enabled, reopen_on_reply = excluded.reopen_on_reply, \
                 extra_addresses = excluded.extra_addresses, auth_policy = excluded.auth_policy, \
                 follow_up_days = excluded.follow_up_days RETURNING id",
            )
            .bind(Uuid::now_v7())
            .bind(address.as_str())
            .bind(&a.name)
            .bind(pipeline_id)
            .bind(owner_id)
            .bind(to_json(&a.tags))
            .bind(a.enabled)
            .bind(a.reopen_on_reply)
            .bind(to_json(&also))
            .bind(a.auth.as_str())
            .bind(a.follow_up_days.map(i64::from))
            .fetch_one(&mut **tx)
            .await?
            .try_get("id")?;
            sqlx::query("DELETE FROM reopen_rules WHERE alias_id = $1").bind(alias_id).execute(&mut **tx).await?;
            for rule in &a.reopen {
                let stage = |name: String| {
                    sqlx::query("SELECT id, kind FROM stages WHERE pipeline_id = $1 AND name = $2")
                        .bind(pipeline_id)
                        .bind(name)
                };
                let from = stage(rule.from.clone())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| invalid(format!("unknown stage {:?}", rule.from)))?;
                let to = stage(rule.to.clone())
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| invalid(format!("unknown stage {:?}", rule.to)))?;
                let (from_kind, to_kind): (String, String) = (from.try_get("kind")?, to.try_get("kind")?);
                if from_kind != "closed" || to_kind != "open" {
                    return Err(invalid(format!("reopen {:?} -> {:?} must go from closed to open", rule.from, rule.to)));
                }
                sqlx::query("INSERT INTO reopen_rules (alias_id, from_stage_id, to_stage_id) VALUES ($1, $2, $3)")
                    .bind(alias_id)
                    .bind(from.try_get::<Uuid, _>("id")?)
                    .bind(to.try_get::<Uuid, _>("id")?)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        }

        impl $store {
            /// Runs one write statement in its own transaction; whether it changed a row.
            async fn write_one(
                &self,
                q: ::sqlx::query::Query<'_, $db, <$db as ::sqlx::Database>::Arguments>,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let n = q.execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n > 0)
            }
        }

        /// The statements of one write, sent as the backend takes them: all
        /// in one call (`;`-separated) where it runs several per call, else
        /// each in its own call as it ends.
        struct Statements(QueryBuilder<$db>);

        impl Statements {
            fn new() -> Self {
                Self(QueryBuilder::new(""))
            }

            /// Ends the statement being built.
            async fn end(&mut self, tx: &mut ::sqlx::Transaction<'static, $db>) -> StoreResult<()> {
                if $several {
                    self.0.push("; ");
                } else {
                    self.0.build().execute(&mut **tx).await?;
                    self.0.reset();
                }
                Ok(())
            }

            /// Sends the statements still queued.
            async fn send(mut self, tx: &mut ::sqlx::Transaction<'static, $db>) -> StoreResult<()> {
                if !self.0.sql().as_str().is_empty() {
                    self.0.build().execute(&mut **tx).await?;
                }
                Ok(())
            }
        }

        impl std::ops::Deref for Statements {
            type Target = QueryBuilder<$db>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl std::ops::DerefMut for Statements {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }

        /// Inserts raw messages with multi-row INSERTs; returns their ids in order.
        async fn insert_inbound_rows(
            tx: &mut ::sqlx::Transaction<'static, $db>,
            batch: &[&InboundMessage],
        ) -> StoreResult<Vec<Uuid>> {
            // Polled messages move their folder's cursor in the same transaction.
            let mut cursors: Vec<(&ImapMailbox, $crate::domain::ImapCursor)> = Vec::new();
            for (mailbox, c) in batch.iter().filter_map(|m| m.imap_position()) {
                match cursors.iter_mut().find(|(k, _)| *k == mailbox) {
                    Some((_, k)) if (c.uidvalidity, c.uid) > (k.uidvalidity, k.uid) || c.uidvalidity != k.uidvalidity => *k = c,
                    Some(_) => {}
                    None => cursors.push((mailbox, c)),
                }
            }
            for (mailbox, c) in cursors {
                upsert_cursor(tx, &mailbox.account, &mailbox.folder, c.uidvalidity, c.uid).await?;
            }
            let now = Utc::now();
            let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
            // The inserts go out as the write-behind's do: in one call where
            // the backend runs several statements per call.
            let mut q = Statements::new();
            for (chunk, chunk_ids) in batch.chunks(INSERT_CHUNK).zip(ids.chunks(INSERT_CHUNK)) {
                q.push(
                    "INSERT INTO inbound (id, received_at, source, mail_from, rcpt_to, client_ip, helo, tls, size, sha256, \
                     auth_results) ",
                );
                q.push_values(chunk.iter().zip(chunk_ids), |mut b, (m, id)| {
                    let (client_ip, helo, tls) = m.source.columns();
                    b.push_bind(*id)
                        .push_bind(now)
                        .push_bind(m.source.kind().as_str())
                        .push_bind(m.envelope.mail_from.as_deref())
                        .push_bind(to_json(&m.envelope.rcpt_to))
                        .push_bind(client_ip)
                        .push_bind(helo)
                        .push_bind(tls)
                        .push_bind(
                            i64::try_from(m.declared_size.unwrap_or(m.raw.len() as u64))
                                .unwrap_or(i64::MAX),
                        )
                        .push_bind(m.sha256.as_str())
                        .push_bind(m.envelope.auth_results.as_deref());
                });
                q.end(tx).await?;
                q.push("INSERT INTO inbound_raw (seq, raw) ");
                q.push_values(chunk.iter().zip(chunk_ids), |mut b, (m, id)| {
                    b.push("(SELECT seq FROM inbound WHERE id = ");
                    b.push_bind_unseparated(*id);
                    b.push_unseparated(")");
                    b.push_bind(m.raw.as_slice());
                });
                q.end(tx).await?;
            }
            q.send(tx).await?;
            Ok(ids)
        }

        async fn upsert_cursor(
            tx: &mut ::sqlx::Transaction<'static, $db>,
            account: &str,
            folder: &str,
            uidvalidity: u32,
            uid: u32,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO imap_state (account, folder, uidvalidity, last_uid, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (account, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, \
                 last_uid = excluded.last_uid, updated_at = excluded.updated_at",
            )
            .bind(account)
            .bind(folder)
            .bind(i64::from(uidvalidity))
            .bind(i64::from(uid))
            .bind(Utc::now())
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Binds `$1`..`$23`, the layout shared by `CREATE_RECORD_SQL` and
        /// `APPEND_MESSAGE_SQL` (see `message_sql!` in `sql.rs`).
        fn bind_message<'q>(
            q: ::sqlx::query::Query<'q, $db, <$db as ::sqlx::Database>::Arguments>,
            m: &'q NewMessage<'_>,
            pipeline: Uuid,
        ) -> ::sqlx::query::Query<'q, $db, <$db as ::sqlx::Database>::Arguments> {
            q.bind(m.id)
                .bind(m.record_id)
                .bind(m.inbound_id)
                .bind(m.direction)
                .bind(m.message_id)
                .bind(m.in_reply_to)
                .bind(to_json(&m.references))
                .bind(m.from.map(|f| f.address.as_str()))
                .bind(m.from.and_then(|f| f.name.as_deref()))
                .bind(to_json(&m.to))
                .bind(to_json(&m.cc))
                .bind(m.reply_to)
                .bind(m.subject)
                .bind(m.sent_at)
                .bind(m.text_body)
                .bind(m.html_body)
                .bind(m.thread_rule)
                .bind(m.thread_value.as_deref())
                .bind(Utc::now())
                .bind(pipeline)
                .bind(Uuid::now_v7())
                .bind(m.class)
                .bind(m.reply_text)
        }

        async fn insert_attachments(
            tx: &mut ::sqlx::Transaction<'static, $db>,
            m: &NewMessage<'_>,
        ) -> StoreResult<()> {
            for a in m.attachments.iter() {
                let size = i64::try_from(a.bytes.len()).unwrap_or(i64::MAX);
                // The bytes once per content; the row for every message.
                sqlx::query(
                    "INSERT INTO attachment_blobs (sha256, size, bytes) VALUES ($1, $2, $3) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&a.sha256)
                .bind(size)
                .bind(a.bytes.as_slice())
                .execute(&mut **tx)
                .await?;
                sqlx::query(
                    "INSERT INTO attachments (id, message_id, name, content_type, size, sha256, content_id, inline) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(Uuid::now_v7())
                .bind(m.id)
                .bind(a.name.as_deref())
                .bind(&a.content_type)
                .bind(size)
                .bind(&a.sha256)
                .bind(a.content_id.as_deref())
                .bind(a.inline)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Trims a page fetched with one extra row and returns the next cursor.
        fn page_cursor<T>(items: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> Option<String> {
            let limit = usize::try_from(limit).unwrap_or(0);
            if items.len() > limit {
                items.truncate(limit);
                items.last().map(|last| id(last).to_string())
            } else {
                None
            }
        }

    };
}

pub(super) use sql_store;
