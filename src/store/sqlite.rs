//! SQLite, the embedded default.
//!
//! WAL journal with `synchronous = FULL`: every commit fsyncs the WAL before
//! it returns, so a message acknowledged with `250` survives a power cut (with
//! `NORMAL` the last commits may roll back after one). Group commit makes that
//! fsync cheap per message. All writes go through one connection, so writers
//! queue in the pool instead of spinning on SQLite's busy handler; reads use
//! their own pool and never block on writes (WAL). Temporary data (the
//! statement journals of multi-row writes inside a transaction, sort trees)
//! stays in memory: on disk it cost a fifth of all bytes written per message.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio_util::sync::CancellationToken;

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

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Stops the background checkpointer when the store goes away.
    checkpointer: CancellationToken,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.cancel();
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and its folder.
    ///
    /// # Errors
    /// A malformed URL, a folder that cannot be created, or the open failing.
    pub async fn connect(settings: &DatabaseSettings) -> super::StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(&settings.url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(settings.busy_timeout_ms))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", format!("-{}", settings.sqlite_cache_kib))
            .pragma(
                "wal_autocheckpoint",
                settings.sqlite_wal_autocheckpoint.to_string(),
            );
        let path = options.get_filename();
        if let Some(dir) = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                super::StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot create {}: {e}", dir.display()),
                )))
            })?;
        }
        // One writer connection that never goes away: checking it before
        // every transaction would cost a round trip to the driver's thread.
        // Another process migrating a fresh file holds its lock for a while
        // (switching it to WAL needs the lock too): wait for it, a few times.
        let mut attempt = 0u64;
        let writer = loop {
            let opened = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .test_before_acquire(false)
                .connect_with(options.clone())
                .await;
            match opened {
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("5") && attempt < 10 =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "database locked while opening; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                other => break other?,
            }
        };
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await?;
        let checkpointer = CancellationToken::new();
        if settings.sqlite_checkpoint_interval_ms > 0 {
            tokio::spawn(checkpoint_in_background(
                reader.clone(),
                Duration::from_millis(settings.sqlite_checkpoint_interval_ms),
                checkpointer.clone(),
            ));
        }
        Ok(Self {
            writer,
            reader,
            checkpointer,
        })
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    /// Readers first, then the writer: SQLite checkpoints the WAL into the
    /// database file and deletes it when the last connection closes.
    async fn close_pools(&self) {
        self.checkpointer.cancel();
        self.reader.close().await;
        self.writer.close().await;
    }

    /// A write transaction on the one writer connection. After a failed
    /// `COMMIT` that SQLite rolled back by itself (`SQLITE_FULL`,
    /// `SQLITE_IOERR`), the driver still counts the transaction as open and
    /// refuses every later `BEGIN`: that connection is closed and a fresh
    /// one opened, so intake recovers once the cause is gone.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        match self.writer.begin_with("BEGIN IMMEDIATE").await {
            Err(sqlx::Error::InvalidSavePointStatement) => {
                let stuck = self.writer.acquire().await?;
                tracing::warn!("sqlite writer left in a failed transaction: reconnecting");
                stuck.close().await?;
                self.writer.begin_with("BEGIN IMMEDIATE").await
            }
            other => other,
        }
    }

    async fn begin_processing(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_write().await
    }

    /// SQLite has no lock the migrator could take, so two processes starting
    /// on a fresh file (say `serve` and `token create`) can collide on the
    /// same migration; the loser retries and finds it applied.
    async fn run_migrations(&self) -> super::StoreResult<()> {
        let mut attempt = 0u64;
        loop {
            match sqlx::migrate!("./migrations/sqlite")
                .run(&self.writer)
                .await
            {
                Ok(()) => return Ok(()),
                Err(
                    err @ (sqlx::migrate::MigrateError::Execute(_)
                    | sqlx::migrate::MigrateError::ExecuteMigration(..)),
                ) if attempt < 10 => {
                    attempt += 1;
                    tracing::debug!(error = %err, attempt, "migration collided; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(err) => return Err(err.into()),
            }
        }
    }
}

/// Copies committed WAL pages into the database file from a reader
/// connection, beside the writer (a passive checkpoint never blocks it). The
/// writer's own automatic checkpoint then has little left to copy, so a
/// commit, and the `250`s waiting on it, does not stall behind a large copy;
/// it also still resets the WAL, which a checkpoint racing a busy writer
/// cannot.
async fn checkpoint_in_background(pool: SqlitePool, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_all(&pool)
            .await
        {
            tracing::debug!(error = %err, "background checkpoint failed");
        }
    }
}

sql_store!(
    SqliteStore,
    SqliteTx,
    Sqlite,
    several_statements_per_call = true,
    intake_in_processing = true
);
sql_inbound_store!(SqliteStore, Sqlite);
sql_mailbox_store!(SqliteStore, Sqlite);
sql_token_store!(SqliteStore, Sqlite);
sql_record_store!(SqliteStore, Sqlite);
sql_processing_tx!(SqliteTx, Sqlite);
sql_team_store!(SqliteStore, Sqlite);
sql_outbox_store!(SqliteStore, Sqlite);
sql_session_store!(SqliteStore, Sqlite);
sql_oauth_store!(SqliteStore, Sqlite);
sql_webhook_store!(SqliteStore, Sqlite);
sql_conversation_store!(SqliteStore, Sqlite);
sql_lifecycle_store!(SqliteStore, Sqlite);
sql_merge_store!(SqliteStore, Sqlite);
sql_search_store!(SqliteStore, Sqlite, fts5);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_durable_and_temporary_data_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            url: format!("sqlite://{}/t.db", dir.path().display()),
            max_connections: 1,
            busy_timeout_ms: 1000,
            sqlite_cache_kib: 2048,
            sqlite_wal_autocheckpoint: 1000,
            sqlite_checkpoint_interval_ms: 0,
        };
        let store = SqliteStore::connect(&settings).await.unwrap();
        for (pragma, want) in [
            ("SELECT journal_mode FROM pragma_journal_mode", "wal"),
            // FULL: every commit fsyncs the WAL before a 250 goes out.
            (
                "SELECT CAST(synchronous AS TEXT) FROM pragma_synchronous",
                "2",
            ),
            // MEMORY: statement journals and sort b-trees never hit the disk.
            (
                "SELECT CAST(temp_store AS TEXT) FROM pragma_temp_store",
                "2",
            ),
        ] {
            let (got,): (String,) = sqlx::query_as(pragma)
                .fetch_one(&store.writer)
                .await
                .unwrap();
            assert_eq!(got, want, "{pragma}");
        }
    }
}
