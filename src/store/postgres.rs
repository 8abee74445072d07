//! PostgreSQL, for many stateless replicas on one database.
//!
//! Commits use the server's `synchronous_commit` (on by default), so a
//! committed intake batch is on disk before any `250` goes out. Processing
//! transactions take a transaction-scoped advisory lock: replicas apply
//! stored messages one batch at a time, in arrival order.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::conversations::sql_conversation_store;
use super::inbound::sql_inbound_store;
use super::lifecycle::sql_lifecycle_store;
use super::mailbox::sql_mailbox_store;
use super::merge::sql_merge_store;
use super::oauth::sql_oauth_store;
use super::outbox::sql_outbox_store;
use super::processing::sql_processing_tx;
use super::records::sql_record_store;
use super::search::sql_search_store;
use super::sessions::sql_session_store;
use super::sql::{insert_message_sql, sql_store};
use super::team::{sql_team_store, user_columns};
use super::tokens::sql_token_store;
use super::webhooks::sql_webhook_store;
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

    async fn close_pools(&self) {
        self.pool.close().await;
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

sql_store!(
    PgStore,
    PgTx,
    Postgres,
    several_statements_per_call = false,
    intake_in_processing = false
);
sql_inbound_store!(PgStore, Postgres);
sql_mailbox_store!(PgStore, Postgres);
sql_token_store!(PgStore, Postgres);
sql_record_store!(PgStore, Postgres);
sql_processing_tx!(PgTx, Postgres);
sql_team_store!(PgStore, Postgres);
sql_outbox_store!(PgStore, Postgres);
sql_session_store!(PgStore, Postgres);
sql_oauth_store!(PgStore, Postgres);
sql_webhook_store!(PgStore, Postgres);
sql_conversation_store!(PgStore, Postgres);
sql_lifecycle_store!(PgStore, Postgres);
sql_merge_store!(PgStore, Postgres);
sql_search_store!(PgStore, Postgres, tsvector);
