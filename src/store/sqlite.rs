//! SQLite, the embedded default.
//!
//! WAL journal with `synchronous = FULL`: every commit fsyncs the WAL before
//! it returns, so a message acknowledged with `250` survives a power cut (with
//! `NORMAL` the last commits may roll back after one). Group commit makes that
//! fsync cheap per message. All writes go through one connection, so writers
//! queue in the pool instead of spinning on SQLite's busy handler; reads use
//! their own pool and never block on writes (WAL).

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::sql::sql_store;
use crate::config::DatabaseSettings;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    const BACKEND: super::Backend = super::Backend::Sqlite;

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
            .foreign_keys(true);
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await?;
        Ok(Self { writer, reader })
    }

    fn read_pool(&self) -> &SqlitePool {
        &self.reader
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    async fn begin_processing(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_write().await
    }

    async fn run_migrations(&self) -> super::StoreResult<()> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }
}

sql_store!(SqliteStore, SqliteTx, Sqlite);
