//! Storage for search: the indexer's queue and documents, and the query.
//!
//! What a document holds is decided in Rust (`domain::search`): SQLite
//! stores the terms as text in an FTS5 table, PostgreSQL as a `tsvector`
//! literal under a GIN index. The two dialects differ only in the
//! [`fts5`] and [`tsvector`] constants; `sql_search_store!` is the glue.

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::search::QueryPart;

/// Matching documents a search ranks at most: the newest ones. A term in
/// nearly every message is answered in bounded time.
pub const CANDIDATES: i64 = 20_000;

/// A record a search found, and how well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub record_id: Uuid,
    /// Matching documents: the record's own (title, contact) counts 5, each
    /// message 1.
    pub score: i64,
}

#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Indexes up to `limit` queued records and messages, in one
    /// transaction; how many queue entries it took.
    async fn index_pending(&self, limit: i64) -> StoreResult<usize>;
    /// Queue entries not yet indexed.
    async fn search_backlog(&self) -> StoreResult<i64>;
    /// Refreshes the planner's statistics of the documents: PostgreSQL
    /// picks the GIN index for a rare word only when it knows the word is
    /// rare (without them, a backward scan of every document).
    async fn analyze_search(&self) -> StoreResult<()>;
    /// Records matching every part, best first (then newest), `offset` on.
    async fn search_records(
        &self,
        parts: &[QueryPart],
        pipeline: Option<Uuid>,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<Hit>>;
}

pub(super) const QUEUE_TAKE: &str =
    "SELECT seq, record_id, message_id FROM search_queue ORDER BY seq LIMIT $1";

pub(super) const BACKLOG: &str = "SELECT COUNT(*) AS n FROM search_queue";

pub(super) const RECORD_DOCS: &str = "
    SELECT r.id, r.title, c.name AS contact_name, c.email AS contact_email
    FROM records r LEFT JOIN contacts c ON c.id = r.contact_id WHERE r.id IN ";

pub(super) const MESSAGE_DOCS: &str = "
    SELECT id, record_id, subject, COALESCE(reply_text, text_body) AS body
    FROM messages WHERE id IN ";

pub(super) const DELETE_RECORD_DOCS: &str =
    "DELETE FROM search_docs WHERE message_id IS NULL AND record_id IN ";

pub(super) const DELETE_MESSAGE_DOCS: &str = "DELETE FROM search_docs WHERE message_id IN ";

pub(super) const QUEUE_DONE: &str = "DELETE FROM search_queue WHERE seq IN ";

/// SQLite: the terms as text, matched by FTS5.
pub(super) mod fts5 {
    use crate::domain::search::{QueryPart, fts5_document, fts5_query};

    pub const INSERT_DOCS: &str = "INSERT INTO search_docs (record_id, message_id, terms) ";

    pub const SEARCH: &str = "
        SELECT d.record_id, SUM(CASE WHEN d.message_id IS NULL THEN 5 ELSE 1 END) AS score
        FROM (SELECT rowid FROM search_fts WHERE search_fts MATCH $1 ORDER BY rowid DESC LIMIT $2) f
        JOIN search_docs d ON d.id = f.rowid
        JOIN records r ON r.id = d.record_id
        WHERE $3 IS NULL OR r.pipeline_id = $3
        GROUP BY d.record_id ORDER BY score DESC, d.record_id DESC LIMIT $4 OFFSET $5";

    pub fn document(terms: &[String]) -> String {
        fts5_document(terms)
    }

    pub fn query(parts: &[QueryPart]) -> String {
        fts5_query(parts)
    }

    /// How a document's terms are written in the INSERT.
    pub const TERMS_CAST: &str = "";

    pub const ANALYZE: &str = "ANALYZE search_docs";
}

/// PostgreSQL: the terms as a `tsvector`, matched with `@@` under GIN.
pub(super) mod tsvector {
    use crate::domain::search::{QueryPart, tsquery_literal, tsvector_literal};

    pub const INSERT_DOCS: &str = "INSERT INTO search_docs (record_id, message_id, terms) ";

    pub const SEARCH: &str = "
        SELECT d.record_id, SUM(CASE WHEN d.message_id IS NULL THEN 5 ELSE 1 END) AS score
        FROM (SELECT id, record_id, message_id FROM search_docs WHERE terms @@ $1::tsquery
              ORDER BY id DESC LIMIT $2) d
        JOIN records r ON r.id = d.record_id
        WHERE $3::uuid IS NULL OR r.pipeline_id = $3
        GROUP BY d.record_id ORDER BY score DESC, d.record_id DESC LIMIT $4 OFFSET $5";

    pub fn document(terms: &[String]) -> String {
        tsvector_literal(terms)
    }

    pub fn query(parts: &[QueryPart]) -> String {
        tsquery_literal(parts)
    }

    pub const TERMS_CAST: &str = "::tsvector";

    pub const ANALYZE: &str = "ANALYZE search_docs";
}

/// The terms of a record's own document.
pub(super) fn record_terms(title: &str, name: Option<&str>, email: Option<&str>) -> Vec<String> {
    let text = format!("{title} {} {}", name.unwrap_or(""), email.unwrap_or(""));
    crate::domain::search::index_terms(&text)
}

/// The terms of a message's document: its subject and new part.
pub(super) fn message_terms(subject: Option<&str>, body: Option<&str>) -> Vec<String> {
    let text = format!("{} {}", subject.unwrap_or(""), body.unwrap_or(""));
    crate::domain::search::index_terms(&text)
}

macro_rules! sql_search_store {
    ($store:ty, $db:ty, $dialect:ident) => {
        #[::async_trait::async_trait]
        impl $crate::store::SearchStore for $store {
            async fn index_pending(&self, limit: i64) -> StoreResult<usize> {
                use ::sqlx::QueryBuilder;
                use $crate::store::search as q;
                use $crate::store::search::$dialect as d;
                let mut tx = self.begin_write().await?;
                let queued = sqlx::query(q::QUEUE_TAKE)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                if queued.is_empty() {
                    return Ok(0);
                }
                let mut seqs = Vec::with_capacity(queued.len());
                let mut records = std::collections::BTreeSet::new();
                let mut messages = std::collections::BTreeSet::new();
                for r in &queued {
                    seqs.push(r.try_get::<i64, _>("seq")?);
                    match r.try_get::<Option<::uuid::Uuid>, _>("message_id")? {
                        Some(m) => messages.insert(m),
                        None => records.insert(r.try_get::<::uuid::Uuid, _>("record_id")?),
                    };
                }
                // (record, message, terms) of every document to write.
                let mut docs: Vec<(::uuid::Uuid, Option<::uuid::Uuid>, String)> = Vec::new();
                if !records.is_empty() {
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(q::RECORD_DOCS);
                    b.push_tuples(&records, |mut t, id| {
                        t.push_bind(*id);
                    });
                    for r in b.build().fetch_all(&mut *tx).await? {
                        let title: String = r.try_get("title")?;
                        let name: Option<String> = r.try_get("contact_name")?;
                        let email: Option<String> = r.try_get("contact_email")?;
                        let terms = q::record_terms(&title, name.as_deref(), email.as_deref());
                        if !terms.is_empty() {
                            docs.push((r.try_get("id")?, None, d::document(&terms)));
                        }
                    }
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(q::DELETE_RECORD_DOCS);
                    b.push_tuples(&records, |mut t, id| {
                        t.push_bind(*id);
                    });
                    b.build().execute(&mut *tx).await?;
                }
                if !messages.is_empty() {
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(q::MESSAGE_DOCS);
                    b.push_tuples(&messages, |mut t, id| {
                        t.push_bind(*id);
                    });
                    for r in b.build().fetch_all(&mut *tx).await? {
                        let subject: Option<String> = r.try_get("subject")?;
                        let body: Option<String> = r.try_get("body")?;
                        let terms = q::message_terms(subject.as_deref(), body.as_deref());
                        if !terms.is_empty() {
                            docs.push((
                                r.try_get("record_id")?,
                                Some(r.try_get("id")?),
                                d::document(&terms),
                            ));
                        }
                    }
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(q::DELETE_MESSAGE_DOCS);
                    b.push_tuples(&messages, |mut t, id| {
                        t.push_bind(*id);
                    });
                    b.build().execute(&mut *tx).await?;
                }
                for chunk in docs.chunks(300) {
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(d::INSERT_DOCS);
                    b.push_values(chunk, |mut v, (record, message, terms)| {
                        v.push_bind(*record)
                            .push_bind(*message)
                            .push_bind(terms.as_str())
                            .push_unseparated(d::TERMS_CAST);
                    });
                    b.build().execute(&mut *tx).await?;
                }
                for chunk in seqs.chunks(500) {
                    let mut b: QueryBuilder<$db> = QueryBuilder::new(q::QUEUE_DONE);
                    b.push_tuples(chunk, |mut t, seq| {
                        t.push_bind(*seq);
                    });
                    b.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(queued.len())
            }

            async fn search_backlog(&self) -> StoreResult<i64> {
                let row = sqlx::query($crate::store::search::BACKLOG)
                    .fetch_one(self.read_pool())
                    .await?;
                Ok(row.try_get("n")?)
            }

            async fn analyze_search(&self) -> StoreResult<()> {
                use $crate::store::search::$dialect as d;
                sqlx::query(d::ANALYZE).execute(self.read_pool()).await?;
                Ok(())
            }

            async fn search_records(
                &self,
                parts: &[$crate::domain::search::QueryPart],
                pipeline: Option<::uuid::Uuid>,
                limit: i64,
                offset: i64,
            ) -> StoreResult<Vec<$crate::store::Hit>> {
                use $crate::store::search::$dialect as d;
                if parts.is_empty() {
                    return Ok(Vec::new());
                }
                let rows = sqlx::query(d::SEARCH)
                    .bind(d::query(parts))
                    .bind($crate::store::search::CANDIDATES)
                    .bind(pipeline)
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(self.read_pool())
                    .await?;
                rows.iter()
                    .map(|r| {
                        Ok($crate::store::Hit {
                            record_id: r.try_get("record_id")?,
                            score: r.try_get("score")?,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(super) use sql_search_store;
