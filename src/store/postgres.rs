//! PostgreSQL, for many stateless replicas on one database.
//!
//! Commits use the server's `synchronous_commit` (on by default), so a
//! committed intake batch is on disk before any `250` goes out. Processing
//! transactions take a transaction-scoped advisory lock: replicas apply
//! stored messages one batch at a time, in arrival order. They commit
//! asynchronously: what they write is derived from the stored messages.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::sql::{insert_message_sql, sql_store};
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

    /// A processing transaction, holding the processing lock. What it writes
    /// is derived from stored raw messages, so it commits asynchronously
    /// (`synchronous_commit = off` for this transaction only): the server
    /// flushes it with the next synchronous commit, or within three times
    /// `wal_writer_delay`. A server crash before then loses the transaction
    /// whole, leaving its messages `pending` to be processed again.
    async fn begin_processing(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1), set_config('synchronous_commit', 'off', true)",
        )
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

sql_store!(PgStore, PgTx, Postgres, several_statements_per_call = false);
sql_team_store!(PgStore, Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous_commit(tx: &mut Transaction<'static, Postgres>) -> String {
        let (level,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&mut **tx)
            .await
            .unwrap();
        level
    }

    #[tokio::test]
    async fn only_processing_commits_are_asynchronous() {
        let url = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => url,
            _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("DATABASE_URL must be set in CI: PostgreSQL tests may not be skipped")
            }
            _ => {
                eprintln!("skipped: PostgreSQL test (DATABASE_URL is not set)");
                return;
            }
        };
        let settings = DatabaseSettings {
            url,
            max_connections: 2,
            busy_timeout_ms: 5000,
            sqlite_cache_kib: 0,
            sqlite_wal_autocheckpoint: 0,
            sqlite_checkpoint_interval_ms: 0,
        };
        let store = PgStore::connect(&settings).await.unwrap();
        let (default,): (String,) = sqlx::query_as("SHOW synchronous_commit")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let mut processing = store.begin_processing().await.unwrap();
        assert_eq!(synchronous_commit(&mut processing).await, "off");
        processing.commit().await.unwrap();
        // The setting was the transaction's own: the next one, on whichever
        // connection, commits as the server is configured to.
        for _ in 0..2 {
            let mut write = store.begin_write().await.unwrap();
            assert_eq!(synchronous_commit(&mut write).await, default);
            write.rollback().await.unwrap();
        }
    }
}
