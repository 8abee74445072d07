//! A database an earlier version made keeps what it holds when migrated.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::migrate::Migrator;

use crate::helpers::{Backend, TestDb, test_settings};
use crate::on_both_backends;

on_both_backends!(messages_stored_before_the_raw_bytes_moved_keep_them);

async fn messages_stored_before_the_raw_bytes_moved_keep_them(backend: Backend) {
    let db = TestDb::new(backend).await;
    let folder = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let mut before = Migrator::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(folder))
        .await
        .expect("migrations");
    before.migrations = Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version < 8)
            .cloned()
            .collect(),
    );
    // Arrange: a message stored with the schema before migration 0008.
    let id = uuid::Uuid::now_v7();
    let raw = b"Subject: stored before\r\n\r\nbody\r\n".to_vec();
    let insert = "INSERT INTO inbound (id, received_at, source, rcpt_to, size, sha256, raw) \
                  VALUES ($1, $2, 'smtp', '[\"sales@localhost\"]', $3, 'x', $4)";
    let size = i64::try_from(raw.len()).expect("size");
    // The same steps on either driver's pool.
    macro_rules! store_before {
        ($pool:expr) => {{
            let pool = $pool.await.expect("open");
            before.run(&pool).await.expect("earlier migrations");
            sqlx::query(insert)
                .bind(id)
                .bind(chrono::Utc::now())
                .bind(size)
                .bind(raw.as_slice())
                .execute(&pool)
                .await
                .expect("insert");
            pool.close().await;
        }};
    }
    match backend {
        Backend::Sqlite => store_before!(sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .expect("url")
                .create_if_missing(true),
        )),
        Backend::Postgres => store_before!(sqlx::PgPool::connect(&db.url)),
    }

    // Act: the service migrates the database.
    let store = emailin::store::connect(&test_settings(&db).database)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");

    // Assert: the bytes are served and processed as before.
    assert_eq!(store.inbound_raw(id).await.expect("raw"), Some(raw.clone()));
    let mut tx = store.begin().await.expect("begin");
    let pending = tx.pending(10).await.expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, &pending[0].raw), (id, &raw));
    drop(tx);
    drop(store);
    db.drop_db().await;
}

/// Every lookup of pending messages (the fast path's check, the processor's
/// queue, the pending count) reads the status index, so none scans the
/// table; the partial index once kept beside it served none of them.
#[tokio::test]
async fn pending_messages_are_found_through_the_status_index() {
    let (db, pool) = migrated_sqlite().await;
    for query in [
        "SELECT COUNT(*) FROM inbound WHERE status = 'pending'",
        "SELECT seq FROM inbound WHERE status = 'pending' ORDER BY seq LIMIT 10",
        "SELECT COUNT(*), SUM(CASE WHEN id IN (x'00') THEN 1 ELSE 0 END) FROM inbound WHERE status = 'pending'",
    ] {
        let steps = query_plan(&pool, query).await;
        assert!(
            steps.iter().all(|s| s.contains("INDEX inbound_status")),
            "{query}: {steps:?}"
        );
    }
    let (partial,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM sqlite_master WHERE name = 'inbound_pending'")
            .fetch_one(&pool)
            .await
            .expect("schema");
    assert_eq!(partial, 0, "no second index on pending rows to keep up");
    pool.close().await;
    db.drop_db().await;
}

/// A contact's records are read newest first straight from the index, as
/// the contact's page and the record list filtered by contact ask for them:
/// no step sorts all of that contact's records, however many there are.
#[tokio::test]
async fn a_contacts_records_come_newest_first_from_the_index() {
    let (db, pool) = migrated_sqlite().await;
    let joins = "FROM records r JOIN pipelines p ON p.id = r.pipeline_id \
                 JOIN stages s ON s.id = r.stage_id LEFT JOIN users u ON u.id = r.owner_id \
                 LEFT JOIN contacts c ON c.id = r.contact_id";
    for query in [
        format!("SELECT r.id {joins} WHERE r.contact_id = x'00' ORDER BY r.id DESC LIMIT 100"),
        format!("SELECT r.id {joins} WHERE 1 = 1 AND c.email = 'a@b' ORDER BY r.id DESC LIMIT 51"),
    ] {
        let steps = query_plan(&pool, &query).await;
        assert!(
            steps
                .iter()
                .any(|s| s.contains("INDEX records_contact (contact_id=?)")),
            "{query}: {steps:?}"
        );
        assert!(
            !steps.iter().any(|s| s.contains("TEMP B-TREE")),
            "{query}: {steps:?}"
        );
    }
    pool.close().await;
    db.drop_db().await;
}

/// A fresh SQLite database migrated by the service (then closed), and a
/// pool of its own.
async fn migrated_sqlite() -> (TestDb, sqlx::SqlitePool) {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = emailin::store::connect(&test_settings(&db).database)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    store.close().await;
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("open");
    (db, pool)
}

/// The steps SQLite's planner takes for `query`.
async fn query_plan(pool: &sqlx::SqlitePool, query: &str) -> Vec<String> {
    let plan: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {query}")))
            .fetch_all(pool)
            .await
            .expect("plan");
    plan.into_iter().map(|row| row.3).collect()
}
