//! The processing transaction ([`super::Tx`]): the lookups threading
//! needs, record and message writes (batched behind, see `behind.rs`),
//! savepoints per message, outcomes.
//!
//! `sql_processing_tx!` is expanded in each backend beside `sql_store!`,
//! whose imports and helpers (`Statements`, `insert_inbound_rows`,
//! `record_state`) it uses.

macro_rules! sql_processing_tx {
    ($tx:ident, $db:ty) => {
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
pub(super) use sql_processing_tx;
