//! PostgreSQL, for many stateless replicas on one database.
//!
//! Commits use the server's `synchronous_commit` (on by default), so a
//! committed intake batch is on disk before any `250` goes out. Processing
//! transactions take a transaction-scoped advisory lock: replicas apply
//! stored messages one batch at a time, in arrival order.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::sql::{insert_message_id_sql, insert_message_sql, sql_store};
use super::team::sql_team_store;
use crate::config::DatabaseSettings;

/// Key of the advisory lock that serialises processing across replicas.
const PROCESSING_LOCK: i64 = 0x656d_6169_6c69_6e01;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects a pool to the database named by the URL.
    ///
    /// # Errors
    /// A malformed URL or the server not answering.
    pub async fn connect(settings: &DatabaseSettings) -> super::StoreResult<Self> {
        let options: PgConnectOptions = settings.url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(2))
            .acquire_timeout(Duration::from_millis(settings.busy_timeout_ms.max(1000)))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    fn read_pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    async fn begin_processing(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PROCESSING_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    async fn run_migrations(&self) -> super::StoreResult<()> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }
}

/// Contact upsert, record, first message, thread index, `created` event, as
/// one statement of data-modifying CTEs (PostgreSQL prepares one command at
/// a time). Binds as in the SQLite backend. An existing contact whose name is
/// set is not rewritten, so `c` returns no row and the record takes the
/// contact from the statement's snapshot.
const CREATE_RECORD_SQL: &str = concat!(
    "WITH c AS (INSERT INTO contacts (id, email, name, created_at) \
     SELECT $23::uuid, $24::text, $25::text, $19 WHERE $24::text IS NOT NULL \
     ON CONFLICT (email) DO UPDATE SET name = excluded.name WHERE contacts.name = '' AND excluded.name <> '' \
     RETURNING id), ",
    "r AS (INSERT INTO records (id, number, pipeline_id, stage_id, contact_id, owner_id, alias_id, title, tags, \
     reply_token, related_record_id, created_at, updated_at) VALUES ($2, (SELECT COALESCE(MAX(number), 0) + 1 FROM records), \
     $20, $26, COALESCE((SELECT id FROM c), (SELECT id FROM contacts WHERE email = $24::text)), \
     $27, $28, $29, $30, $31, $32::uuid, $19, $19) \
     RETURNING id, number, pipeline_id, stage_id), ",
    "m AS (",
    insert_message_sql!(),
    "), i AS (",
    insert_message_id_sql!(),
    "), e AS (INSERT INTO record_events (id, record_id, kind, from_stage_id, to_stage_id, message_id, actor, created_at) \
     VALUES ($21, $2, 'created', NULL, $26, $1, 'system', $19)) ",
    "SELECT id, number, pipeline_id, stage_id FROM r"
);

/// Message, thread index, record touched (and moved), `reopened` event.
const APPEND_MESSAGE_SQL: &str = concat!(
    "WITH m AS (",
    insert_message_sql!(),
    "), i AS (",
    insert_message_id_sql!(),
    "), u AS (UPDATE records SET stage_id = COALESCE($23::uuid, stage_id), updated_at = $19 WHERE id = $2), ",
    "e AS (INSERT INTO record_events (id, record_id, kind, from_stage_id, to_stage_id, message_id, actor, created_at) \
     SELECT $21, $2, 'reopened', $24::uuid, $23::uuid, $1, 'system', $19 WHERE $23::uuid IS NOT NULL) ",
    "SELECT 1 AS done"
);

sql_store!(PgStore, PgTx, Postgres);
sql_team_store!(PgStore, Postgres);
