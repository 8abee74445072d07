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
        impl MailboxStore for $store {
            async fn imap_cursor(&self, account: &str, folder: &str) -> StoreResult<Option<(u32, u32)>> {
                let row = sqlx::query("SELECT uidvalidity, last_uid FROM imap_state WHERE account = $1 AND folder = $2")
                    .bind(account)
                    .bind(folder)
                    .fetch_optional(self.read_pool())
                    .await?;
                let Some(r) = row else { return Ok(None) };
                let (v, u): (i64, i64) = (r.try_get("uidvalidity")?, r.try_get("last_uid")?);
                Ok(Some((
                    u32::try_from(v).map_err(|_| StoreError::Corrupt("uidvalidity".into()))?,
                    u32::try_from(u).map_err(|_| StoreError::Corrupt("last_uid".into()))?,
                )))
            }

            async fn set_imap_cursor(&self, account: &str, folder: &str, uidvalidity: u32, uid: u32) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                upsert_cursor(&mut tx, account, folder, uidvalidity, uid).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn known_sha256(&self, origin: &str, hashes: &[String]) -> StoreResult<Vec<String>> {
                let mut found = Vec::new();
                for chunk in hashes.chunks(INSERT_CHUNK) {
                    let mut q: QueryBuilder<$db> =
                        QueryBuilder::new("SELECT DISTINCT sha256 FROM inbound WHERE source = 'imap' AND helo = ");
                    q.push_bind(origin).push(" AND sha256 IN (");
                    let mut list = q.separated(", ");
                    for h in chunk {
                        list.push_bind(h.as_str());
                    }
                    q.push(")");
                    for row in q.build().fetch_all(self.read_pool()).await? {
                        found.push(row.try_get("sha256")?);
                    }
                }
                Ok(found)
            }

            async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> StoreResult<bool> {
                let now = Utc::now().timestamp_millis();
                let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) ON CONFLICT (name) \
                     DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE leases.holder = excluded.holder OR leases.expires_at < $4 RETURNING holder",
                )
                .bind(name)
                .bind(holder)
                .bind(until)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(row.is_some())
            }

            async fn release_lease(&self, name: &str, holder: &str) -> StoreResult<()> {
                let q = sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2").bind(name).bind(holder);
                self.write_one(q).await.map(|_| ())
            }
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

            async fn reset_for_replay(&self, status: Option<&str>, id: Option<Uuid>) -> StoreResult<u64> {
                let mut q: QueryBuilder<$db> =
                    QueryBuilder::new("UPDATE inbound SET status = 'pending' WHERE status <> 'pending'");
                if let Some(status) = status {
                    q.push(" AND status = ").push_bind(status);
                }
                if let Some(id) = id {
                    q.push(" AND id = ").push_bind(id);
                }
                let mut tx = self.begin_write().await?;
                let n = q.build().execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok(n)
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

            async fn release_inbound(&self, id: Uuid) -> StoreResult<bool> {
                self.write_one(
                    sqlx::query(
                        "UPDATE inbound SET status = 'pending', released = TRUE WHERE id = $1 AND status = 'quarantined'",
                    )
                    .bind(id),
                )
                .await
            }

            async fn drop_inbound(&self, id: Uuid) -> StoreResult<bool> {
                self.write_one(
                    sqlx::query(
                        "UPDATE inbound SET status = 'dropped', outcome = 'dropped by an operator' \
                         WHERE id = $1 AND status = 'quarantined'",
                    )
                    .bind(id),
                )
                .await
            }

            async fn create_token(&self, name: &str, role: Role, token_hash: &str) -> StoreResult<TokenView> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name) DO NOTHING RETURNING id, name, role, created_at, revoked_at",
                )
                .bind(Uuid::now_v7())
                .bind(name)
                .bind(role.as_str())
                .bind(token_hash)
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                match row {
                    Some(r) => token_view(&r),
                    None => Err(StoreError::Conflict(format!("a token named {name:?} exists"))),
                }
            }

            async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenView>> {
                sqlx::query(
                    "SELECT id, name, role, created_at, revoked_at FROM api_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(self.read_pool())
                .await?
                .as_ref()
                .map(token_view)
                .transpose()
            }

            async fn list_tokens(&self) -> StoreResult<Vec<TokenView>> {
                sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(token_view)
                    .collect()
            }

            async fn revoke_token(&self, id_or_name: &str) -> StoreResult<bool> {
                let q = match Uuid::parse_str(id_or_name) {
                    Ok(id) => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(Utc::now())
                        .bind(id),
                    Err(_) => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                        .bind(Utc::now())
                        .bind(id_or_name.to_string()),
                };
                self.write_one(q).await
            }

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

            async fn pending_count(&self) -> StoreResult<i64> {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM inbound WHERE status = 'pending'")
                    .fetch_one(self.read_pool())
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn inbound_counts(&self) -> StoreResult<Vec<(String, i64)>> {
                sqlx::query("SELECT status, COUNT(*) AS n FROM inbound GROUP BY status ORDER BY status")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
                    .collect()
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

            async fn list_inbound(&self, f: &InboundFilter) -> StoreResult<Page<InboundView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(INBOUND_SELECT);
                q.push(" WHERE 1 = 1");
                if let Some(status) = &f.status {
                    q.push(" AND status = ").push_bind(status.as_str());
                }
                if let Some(cursor) = f.cursor {
                    q.push(" AND id < ").push_bind(cursor);
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit + 1);
                let rows = q.build().fetch_all(self.read_pool()).await?;
                let mut items = rows.iter().map(inbound_view).collect::<StoreResult<Vec<_>>>()?;
                let next_cursor = page_cursor(&mut items, f.limit, |r| r.id);
                Ok(Page { items, next_cursor })
            }

            async fn get_inbound(&self, id: Uuid) -> StoreResult<Option<InboundView>> {
                let mut q: QueryBuilder<$db> = QueryBuilder::new(INBOUND_SELECT);
                q.push(" WHERE id = ").push_bind(id);
                q.build().fetch_optional(self.read_pool()).await?.as_ref().map(inbound_view).transpose()
            }

            async fn inbound_messages(&self, id: Uuid) -> StoreResult<Vec<InboundMessageLink>> {
                let rows = sqlx::query(
                    "SELECT m.id, m.record_id, r.number, p.name FROM messages m \
                     JOIN records r ON r.id = m.record_id JOIN pipelines p ON p.id = r.pipeline_id \
                     WHERE m.inbound_id = $1 ORDER BY r.number",
                )
                .bind(id)
                .fetch_all(self.read_pool())
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(InboundMessageLink {
                            message_id: r.try_get("id")?,
                            record_id: r.try_get("record_id")?,
                            record_number: r.try_get("number")?,
                            pipeline: r.try_get("name")?,
                        })
                    })
                    .collect()
            }

            async fn inbound_raw(&self, id: Uuid) -> StoreResult<Option<Vec<u8>>> {
                let row = sqlx::query("SELECT r.raw FROM inbound i JOIN inbound_raw r ON r.seq = i.seq WHERE i.id = $1")
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?;
                Ok(row.map(|r| r.try_get("raw")).transpose()?)
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

        pub struct $tx {
            tx: ::sqlx::Transaction<'static, $db>,
            /// Rows not yet written (see `behind.rs`).
            behind: WriteBehind,
            /// The number the next record created here gets.
            next_number: Option<i64>,
        }

        impl $tx {
            fn new(tx: ::sqlx::Transaction<'static, $db>) -> Self {
                Self { tx, behind: WriteBehind::default(), next_number: None }
            }

            /// The number of the next record this transaction creates.
            async fn take_number(&mut self) -> StoreResult<i64> {
                let number = match self.next_number {
                    Some(n) => n,
                    None => {
                        let max: Option<i64> = sqlx::query("SELECT MAX(number) AS n FROM records")
                            .fetch_one(&mut *self.tx)
                            .await?
                            .try_get("n")?;
                        max.unwrap_or(0) + 1
                    }
                };
                self.next_number = Some(number + 1);
                Ok(number)
            }

            /// Writes the buffered rows, one multi-row statement per table
            /// (per 500 rows), in the order their foreign keys need, then
            /// `outcomes`. Where the backend takes several statements in one
            /// call (SQLite: one round trip to its driver's thread), they go
            /// in one; elsewhere one call each.
            async fn write_behind(&mut self, outcomes: &[(Uuid, OutcomeRow)]) -> StoreResult<()> {
                if self.behind.is_empty() && outcomes.is_empty() {
                    return Ok(());
                }
                let w = std::mem::take(&mut self.behind);
                let tx = &mut self.tx;
                let mut q = Statements::new();
                for chunk in w.contacts.chunks(INSERT_CHUNK) {
                    q.push("INSERT INTO contacts (id, email, name, created_at) ");
                    q.push_values(chunk, |mut b, c| {
                        b.push_bind(c.id).push_bind(c.email.as_str()).push_bind(c.name.as_str()).push_bind(c.at);
                    });
                    q.push(
                        " ON CONFLICT (email) DO UPDATE SET name = excluded.name \
                         WHERE contacts.name = '' AND excluded.name <> ''",
                    );
                    q.end(tx).await?;
                }
                for chunk in w.records.chunks(INSERT_CHUNK) {
                    q.push(
                        "INSERT INTO records (id, number, pipeline_id, stage_id, contact_id, owner_id, alias_id, \
                         title, tags, reply_token, related_record_id, created_at, updated_at, stage_changed_at) ",
                    );
                    q.push_values(chunk, |mut b, r| {
                        b.push_bind(r.id).push_bind(r.number).push_bind(r.pipeline_id).push_bind(r.stage_id);
                        b.push("(SELECT id FROM contacts WHERE email = ");
                        b.push_bind_unseparated(r.contact_email.as_deref());
                        b.push_unseparated(")");
                        b.push_bind(r.owner_id)
                            .push_bind(r.alias_id)
                            .push_bind(r.title.as_str())
                            .push_bind(r.tags.as_str())
                            .push_bind(r.reply_token.as_str())
                            .push_bind(r.related_record)
                            .push_bind(r.at)
                            .push_bind(r.at)
                            .push_bind(r.at);
                    });
                    q.end(tx).await?;
                }
                for chunk in w.messages.chunks(INSERT_CHUNK) {
                    q.push(
                        "INSERT INTO messages (id, record_id, inbound_id, direction, message_id, in_reply_to, refs, \
                         from_addr, from_name, to_addrs, cc_addrs, reply_to, subject, sent_at, text_body, html_body, \
                         thread_rule, thread_value, created_at, class, reply_text) ",
                    );
                    q.push_values(chunk, |mut b, m| {
                        b.push_bind(m.id)
                            .push_bind(m.record_id)
                            .push_bind(m.inbound_id)
                            .push_bind(m.direction)
                            .push_bind(m.message_id.as_str())
                            .push_bind(m.in_reply_to.as_deref())
                            .push_bind(m.references.as_str())
                            .push_bind(m.from_addr.as_deref())
                            .push_bind(m.from_name.as_deref())
                            .push_bind(m.to.as_str())
                            .push_bind(m.cc.as_str())
                            .push_bind(m.reply_to.as_deref())
                            .push_bind(m.subject.as_deref())
                            .push_bind(m.sent_at)
                            .push_bind(m.text_body.as_deref())
                            .push_bind(m.html_body.as_deref())
                            .push_bind(m.thread_rule)
                            .push_bind(m.thread_value.as_deref())
                            .push_bind(m.at)
                            .push_bind(m.class)
                            .push_bind(m.reply_text.as_deref());
                    });
                    q.end(tx).await?;
                    q.push("INSERT INTO message_ids (pipeline_id, message_id, record_id, content_hash) ");
                    q.push_values(chunk, |mut b, m| {
                        b.push_bind(m.pipeline_id)
                            .push_bind(index_key(&m.message_id).into_owned())
                            .push_bind(m.record_id)
                            .push_bind(m.content_hash.as_deref());
                    });
                    q.push(" ON CONFLICT (message_id, pipeline_id) DO NOTHING");
                    q.end(tx).await?;
                }
                for chunk in w.touches.chunks(INSERT_CHUNK) {
                    q.push(
                        "UPDATE records SET stage_id = COALESCE(v.column2, records.stage_id), updated_at = v.column3, \
                         stage_changed_at = CASE WHEN v.column2 IS NULL THEN records.stage_changed_at ELSE v.column3 END FROM (",
                    );
                    q.push_values(chunk, |mut b, t| {
                        b.push_bind(t.record_id).push_bind(t.new_stage).push_bind(t.at);
                    });
                    q.push(") AS v WHERE records.id = v.column1");
                    q.end(tx).await?;
                }
                for chunk in w.events.chunks(INSERT_CHUNK) {
                    q.push(
                        "INSERT INTO record_events (id, record_id, kind, from_stage_id, to_stage_id, message_id, actor, detail, created_at) ",
                    );
                    q.push_values(chunk, |mut b, e| {
                        b.push_bind(e.id)
                            .push_bind(e.record_id)
                            .push_bind(e.kind)
                            .push_bind(e.from_stage)
                            .push_bind(e.to_stage)
                            .push_bind(e.message_id)
                            .push_bind("system")
                            .push_bind(e.detail.as_deref())
                            .push_bind(e.at);
                    });
                    q.end(tx).await?;
                }
                let now = Utc::now();
                for chunk in outcomes.chunks(INSERT_CHUNK) {
                    q.push("UPDATE inbound SET processed_at = ");
                    q.push_bind(now);
                    q.push(
                        ", status = v.column2, outcome = v.column3, error = v.column4, \
                         details = v.column5, attempts = attempts + 1 FROM (",
                    );
                    q.push_values(chunk, |mut b, (id, o)| {
                        b.push_bind(*id)
                            .push_bind(o.status)
                            .push_bind(o.outcome.as_str())
                            .push_bind(o.error.as_deref())
                            .push_bind(o.details.as_deref());
                    });
                    q.push(") AS v WHERE inbound.id = v.column1");
                    q.end(tx).await?;
                }
                q.send(tx).await
            }

            /// A message with attachments or large bodies goes out at once.
            async fn written(&mut self, message: &NewMessage<'_>) -> StoreResult<()> {
                if write_at_once(message) {
                    self.flush().await?;
                    insert_attachments(&mut self.tx, message).await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Tx for $tx {
            async fn pending(&mut self, limit: usize) -> StoreResult<Vec<PendingInbound>> {
                self.flush().await?;
                let rows = sqlx::query(
                    "SELECT i.id, i.source, i.mail_from, i.rcpt_to, i.client_ip, i.helo, i.tls, r.raw, i.attempts, i.released, \
                     i.auth_results, i.size FROM inbound i JOIN inbound_raw r ON r.seq = i.seq \
                     WHERE i.status = 'pending' ORDER BY i.seq LIMIT $1",
                )
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(PendingInbound {
                            id: r.try_get("id")?,
                            source: Source::from_columns(
                                source_kind(&r.try_get::<String, _>("source")?)?,
                                r.try_get("client_ip")?,
                                r.try_get("helo")?,
                                r.try_get("tls")?,
                            ),
                            envelope: Envelope {
                                mail_from: r.try_get("mail_from")?,
                                rcpt_to: string_list(&r.try_get::<String, _>("rcpt_to")?)?,
                                auth_results: r.try_get("auth_results")?,
                            },
                            raw: r.try_get("raw")?,
                            attempts: r.try_get("attempts")?,
                            released: r.try_get("released")?,
                            size: r.try_get("size")?,
                        })
                    })
                    .collect()
            }

            async fn only_pending(&mut self, ids: &[Uuid]) -> StoreResult<bool> {
                let n = i64::try_from(ids.len()).unwrap_or(i64::MAX);
                let mut mine = 0i64;
                // One query per 500 ids (a batch is rarely more); every one
                // also counts all that wait.
                for chunk in ids.chunks(INSERT_CHUNK) {
                    let mut q: QueryBuilder<$db> = QueryBuilder::new(
                        "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(") THEN 1 ELSE 0 END), 0) AS mine FROM inbound WHERE status = 'pending'");
                    let row = q.build().fetch_one(&mut *self.tx).await?;
                    mine += row.try_get::<i64, _>("mine")?;
                    if row.try_get::<i64, _>("total")? != n {
                        return Ok(false);
                    }
                }
                Ok(n > 0 && mine == n)
            }

            async fn insert_inbound(&mut self, batch: &[&InboundMessage]) -> StoreResult<Vec<Uuid>> {
                self.flush().await?;
                insert_inbound_rows(&mut self.tx, batch).await
            }

            async fn savepoint(&mut self) -> StoreResult<()> {
                self.flush().await?;
                sqlx::query("SAVEPOINT emailin_message").execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn release_savepoint(&mut self) -> StoreResult<()> {
                self.flush().await?;
                sqlx::query("RELEASE SAVEPOINT emailin_message").execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
                // What was buffered since the savepoint is dropped with it, and
                // the numbers it took are free again.
                self.behind = WriteBehind::default();
                self.next_number = None;
                sqlx::query("ROLLBACK TO SAVEPOINT emailin_message").execute(&mut *self.tx).await?;
                sqlx::query("RELEASE SAVEPOINT emailin_message").execute(&mut *self.tx).await?;
                Ok(())
            }

            async fn record_by_token(&mut self, pipeline: Uuid, token: &str) -> StoreResult<Option<RecordState>> {
                self.flush().await?;
                sqlx::query(
                    "SELECT t.id, t.number, t.pipeline_id, t.stage_id, t.stage_changed_at FROM records r \
                     JOIN records t ON t.id = COALESCE(r.merged_into, r.id) WHERE r.reply_token = $1 AND r.pipeline_id = $2",
                )
                .bind(token)
                .bind(pipeline)
                .fetch_optional(&mut *self.tx)
                .await?
                .as_ref()
                .map(record_state)
                .transpose()
            }

            async fn lookup_message_ids(
                &mut self,
                pipeline: Uuid,
                message_ids: &[&str],
            ) -> StoreResult<Vec<(String, RecordState)>> {
                if message_ids.is_empty() {
                    return Ok(Vec::new());
                }
                self.flush().await?;
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT m.message_id, r.id, r.number, r.pipeline_id, r.stage_id, r.stage_changed_at FROM message_ids m \
                     JOIN records r ON r.id = m.record_id WHERE m.pipeline_id = ",
                );
                let keys: std::collections::HashMap<_, &str> =
                    message_ids.iter().map(|id| (index_key(id), *id)).collect();
                q.push_bind(pipeline).push(" AND m.message_id IN (");
                let mut list = q.separated(", ");
                for key in keys.keys() {
                    list.push_bind(key.as_ref());
                }
                q.push(")");
                let mut found = Vec::new();
                for r in q.build().fetch_all(&mut *self.tx).await? {
                    let key: String = r.try_get("message_id")?;
                    if let Some(id) = keys.get(key.as_str()) {
                        found.push(((*id).to_string(), record_state(&r)?));
                    }
                }
                Ok(found)
            }

            async fn indexed_content_hash(
                &mut self,
                pipeline: Uuid,
                message_id: &str,
            ) -> StoreResult<Option<Option<String>>> {
                self.flush().await?;
                let row = sqlx::query(
                    "SELECT content_hash FROM message_ids WHERE message_id = $1 AND pipeline_id = $2",
                )
                .bind(index_key(message_id).as_ref())
                .bind(pipeline)
                .fetch_optional(&mut *self.tx)
                .await?;
                row.map(|r| r.try_get("content_hash")).transpose().map_err(Into::into)
            }

            async fn record_by_number(&mut self, pipeline: Uuid, number: i64) -> StoreResult<Option<RecordState>> {
                self.flush().await?;
                sqlx::query(
                    "SELECT t.id, t.number, t.pipeline_id, t.stage_id, t.stage_changed_at FROM records r \
                     JOIN records t ON t.id = COALESCE(r.merged_into, r.id) WHERE r.number = $1 AND r.pipeline_id = $2",
                )
                .bind(number)
                .bind(pipeline)
                .fetch_optional(&mut *self.tx)
                .await?
                .as_ref()
                .map(record_state)
                .transpose()
            }

            async fn already_applied(&mut self, inbound: Uuid, pipeline: Uuid) -> StoreResult<bool> {
                self.flush().await?;
                let row = sqlx::query(
                    "SELECT 1 AS hit FROM messages m JOIN records r ON r.id = m.record_id \
                     WHERE m.inbound_id = $1 AND r.pipeline_id = $2 LIMIT 1",
                )
                .bind(inbound)
                .bind(pipeline)
                .fetch_optional(&mut *self.tx)
                .await?;
                Ok(row.is_some())
            }

            async fn create_record(
                &mut self,
                record: &NewRecord,
                contact: Option<(&str, &str)>,
                message: &NewMessage<'_>,
            ) -> StoreResult<RecordState> {
                let number = self.take_number().await?;
                let state = self.behind.create_record(record, number, contact, message);
                self.written(message).await?;
                Ok(state)
            }

            async fn append_message(
                &mut self,
                record: &RecordState,
                message: &NewMessage<'_>,
                new_stage: Option<Uuid>,
            ) -> StoreResult<()> {
                self.behind.append_message(record, message, new_stage);
                self.written(message).await
            }

            async fn participants(&mut self, records: &[Uuid]) -> StoreResult<Vec<(Uuid, String)>> {
                let mut out = Vec::new();
                if records.is_empty() {
                    return Ok(out);
                }
                self.flush().await?;
                for chunk in records.chunks(INSERT_CHUNK) {
                    // The contact, and From/To/Cc of every message on the record
                    // (an IN list each: both backends then read by index).
                    let in_list = |q: &mut QueryBuilder<$db>| {
                        let mut list = q.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        q.push(")");
                    };
                    let mut q: QueryBuilder<$db> = QueryBuilder::new(
                        "SELECT r.id AS record_id, c.email AS from_addr, '[]' AS to_addrs, '[]' AS cc_addrs \
                         FROM records r JOIN contacts c ON c.id = r.contact_id WHERE r.id IN (",
                    );
                    in_list(&mut q);
                    q.push(" UNION ALL SELECT record_id, from_addr, to_addrs, cc_addrs FROM messages WHERE record_id IN (");
                    in_list(&mut q);
                    for row in q.build().fetch_all(&mut *self.tx).await? {
                        let record: Uuid = row.try_get("record_id")?;
                        if let Some(from) = row.try_get::<Option<String>, _>("from_addr")? {
                            out.push((record, from.to_ascii_lowercase()));
                        }
                        for column in ["to_addrs", "cc_addrs"] {
                            for m in mailbox_list(&row.try_get::<String, _>(column)?)? {
                                out.push((record, m.address.to_ascii_lowercase()));
                            }
                        }
                    }
                }
                Ok(out)
            }

            async fn is_user(&mut self, email: &str) -> StoreResult<bool> {
                self.flush().await?;
                let row = sqlx::query("SELECT 1 AS hit FROM users WHERE email = $1")
                    .bind(email.to_lowercase())
                    .fetch_optional(&mut *self.tx)
                    .await?;
                Ok(row.is_some())
            }

            async fn mark_contact(&mut self, email: &str, mark: &ContactMark) -> StoreResult<bool> {
                self.flush().await?;
                let q = match mark {
                    ContactMark::Bounced { status } => {
                        sqlx::query("UPDATE contacts SET bounced_at = $1, bounce_status = $2 WHERE email = $3")
                            .bind(Utc::now())
                            .bind(status.as_str())
                    }
                    ContactMark::Complained => {
                        sqlx::query("UPDATE contacts SET complained_at = $1 WHERE email = $2").bind(Utc::now())
                    }
                };
                Ok(q.bind(email).execute(&mut *self.tx).await?.rows_affected() > 0)
            }

            async fn set_outcomes(&mut self, outcomes: &[(Uuid, OutcomeRow)]) -> StoreResult<()> {
                self.write_behind(outcomes).await
            }

            /// Writes the buffered rows, one multi-row statement per table
            /// (per 500 rows), in the order their foreign keys need.
            async fn flush(&mut self) -> StoreResult<()> {
                self.write_behind(&[]).await
            }

            async fn commit(mut self: Box<Self>) -> StoreResult<()> {
                self.flush().await?;
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use sql_store;
