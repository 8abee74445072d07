//! Fault injection: storage down at intake, a message that fails processing,
//! replay.

use sqlx::Connection;

use crate::helpers::{Backend, TestApp, mail, reply_code, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    storage_failure_answers_451_and_the_retry_is_stored_once,
    failed_processing_keeps_the_raw_message_and_never_blocks_later_ones,
    a_message_failing_among_concurrent_senders_costs_no_other_message,
    a_frozen_database_answers_451_at_the_commit_deadline_and_keeps_what_lands,
);

/// Runs DDL on the test database through a connection of its own.
async fn ddl(app: &TestApp, statements: &[&str]) {
    if app.db.url.starts_with("sqlite:") {
        run::<sqlx::SqliteConnection>(&app.db.url, statements).await;
    } else {
        run::<sqlx::PgConnection>(&app.db.url, statements).await;
    }
}

async fn run<C>(url: &str, statements: &[&str])
where
    C: Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url).await.expect("connect");
    for s in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut conn)
            .await
            .expect(s);
    }
}

/// Makes the insert of a record titled "poison" fail, and only that one.
async fn poison_records_titled_poison(app: &TestApp, backend: Backend) {
    if backend == Backend::Sqlite {
        ddl(
            app,
            &[
                "CREATE TRIGGER poison BEFORE INSERT ON records WHEN NEW.title = 'poison' \
                     BEGIN SELECT RAISE(ABORT, 'poisoned record'); END",
            ],
        )
        .await;
    } else {
        ddl(app, &[
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
             IF NEW.title = 'poison' THEN RAISE EXCEPTION 'poisoned record'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER poison BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION poison()",
        ]).await;
    }
}

async fn storage_failure_answers_451_and_the_retry_is_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = mail(
        "Kim <kim@example.com>",
        "sales@localhost",
        "During outage",
        "outage@x",
        &[],
        "x",
    );

    ddl(&app, &["ALTER TABLE inbound RENAME TO inbound_offline"]).await;
    let err = app
        .send("kim@example.com", &["sales@localhost"], &raw)
        .await
        .expect_err("must not be acknowledged");
    assert_eq!(reply_code(&err), 451);
    ddl(&app, &["ALTER TABLE inbound_offline RENAME TO inbound"]).await;

    // The sender's MTA retries.
    app.deliver("kim@example.com", &["sales@localhost"], &raw)
        .await;
    let inbound = app.inbound(None).await;
    assert_eq!(inbound.len(), 1, "stored exactly once");
    assert_eq!(inbound[0]["status"], "processed");
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
}

async fn failed_processing_keeps_the_raw_message_and_never_blocks_later_ones(backend: Backend) {
    let app = spawn_app(backend).await;
    poison_records_titled_poison(&app, backend).await;

    app.deliver(
        "lu@example.com",
        &["sales@localhost"],
        &mail(
            "lu@example.com",
            "sales@localhost",
            "poison",
            "p@x",
            &[],
            "x",
        ),
    )
    .await;
    app.deliver(
        "lu@example.com",
        &["sales@localhost"],
        &mail("lu@example.com", "sales@localhost", "fine", "f@x", &[], "x"),
    )
    .await;

    let failed = app.inbound(Some("failed")).await;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("poisoned record"),
        "{}",
        failed[0]
    );
    let id = failed[0]["id"].as_str().unwrap().to_string();
    let (status, raw) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&raw).contains("Subject: poison"));
    let titles: Vec<String> = app
        .records("Sales")
        .await
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(titles, ["fine"], "the later message was processed");

    // Fix the cause, replay: processed once, and replaying again changes nothing.
    if backend == Backend::Sqlite {
        ddl(&app, &["DROP TRIGGER poison"]).await;
    } else {
        ddl(&app, &["DROP TRIGGER poison ON records"]).await;
    }
    assert_eq!(
        app.store
            .reset_for_replay(Some("failed"), None)
            .await
            .unwrap(),
        1
    );
    app.wait_idle().await;
    assert_eq!(app.records("Sales").await.len(), 2);
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(
        app.store.reset_for_replay(None, Some(uuid)).await.unwrap(),
        1
    );
    app.wait_idle().await;
    assert_eq!(app.records("Sales").await.len(), 2, "replay is idempotent");
    let row = app.store.get_inbound(uuid).await.unwrap().unwrap();
    assert_eq!(row.status, "processed");
    app.stop().await;
}

/// Many senders at once, one message failing processing. Batches are then
/// processed while the next ones queue up (on SQLite the next batch is stored
/// in the processing transaction): every sender still gets its `250`, every
/// message is stored, only the poisoned one fails and all the others become
/// records.
async fn a_message_failing_among_concurrent_senders_costs_no_other_message(backend: Backend) {
    let app = spawn_app(backend).await;
    poison_records_titled_poison(&app, backend).await;
    let n = 60;
    let mails: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let from = format!("s{i}@example.com");
            let subject = if i == n / 2 {
                "poison".to_string()
            } else {
                format!("fine {i}")
            };
            let raw = mail(
                &from,
                "sales@localhost",
                &subject,
                &format!("c{i}@x"),
                &[],
                "x",
            );
            (from, raw)
        })
        .collect();

    let replies = futures::future::join_all(
        mails
            .iter()
            .map(|(from, raw)| app.send(from, &["sales@localhost"], raw)),
    )
    .await;
    for reply in replies {
        reply.expect("every message accepted with 250");
    }
    app.wait_idle().await;

    assert_eq!(
        app.inbound(None).await.len(),
        n,
        "every acknowledged message stored"
    );
    let failed = app.inbound(Some("failed")).await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("poisoned record")
    );
    let mut titles: Vec<String> = app
        .records("Sales")
        .await
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    titles.sort();
    let mut want: Vec<String> = (0..n)
        .filter(|i| *i != n / 2)
        .map(|i| format!("fine {i}"))
        .collect();
    want.sort();
    assert_eq!(titles, want);
    app.stop().await;
}

/// A clean stop copies SQLite's WAL into the database file and removes it:
/// the file alone, copied away from anything beside it, holds every
/// acknowledged message and what processing made of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_the_sqlite_file_self_contained() {
    let app = spawn_app(Backend::Sqlite).await;
    for i in 0..20 {
        let raw = mail(
            "Kim <kim@example.com>",
            "sales@localhost",
            &format!("Order {i}"),
            &format!("order-{i}@x"),
            &[],
            "x",
        );
        app.send("kim@example.com", &["sales@localhost"], &raw)
            .await
            .expect("250");
    }
    let db = app.stop_into_db().await;
    let path = std::path::PathBuf::from(db.url.trim_start_matches("sqlite://"));
    let wal = path.with_extension("db-wal");
    assert!(!wal.exists(), "{} left behind", wal.display());

    let copy = tempfile::tempdir().expect("temp dir");
    let alone = copy.path().join("alone.db");
    std::fs::copy(&path, &alone).expect("copy the database file");
    let mut conn =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", alone.display()))
            .await
            .expect("open the copy");
    let (processed,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM inbound WHERE status = 'processed'")
            .fetch_one(&mut conn)
            .await
            .expect("count inbound");
    let (records,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM records")
        .fetch_one(&mut conn)
        .await
        .expect("count records");
    assert_eq!((processed, records), (20, 20));
}

/// A tmpfs of its own, unmounted on drop: a disk that really fills.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with a "skipped" line) where mounting needs a root this
    /// process is not; in CI a tmpfs that cannot be mounted fails the test.
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if mounted {
            return Some(Self { dir });
        }
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI runs as root: a tmpfs must mount for the disk-full test"
        );
        eprintln!("skipped: disk-full test (cannot mount a tmpfs; run as root)");
        None
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `path` until a write fails.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 16 * 1024];
    while file.write_all(&block).is_ok() {}
    // The last partial block too, byte by byte.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
}

/// SQLite on a disk that fills up: the message that does not fit gets `451`
/// (never a `250`), `/readyz` says intake cannot commit, and once space
/// returns intake recovers by itself — no restart — and every message that
/// got a `250` is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_451_fails_readiness_and_recovers_when_space_returns() {
    let Some(disk) = Tmpfs::mount(16 * 1024 * 1024) else {
        return;
    };
    let url = format!("sqlite://{}/emailin.db", disk.path().display());
    let app = crate::helpers::spawn_app_on_db(crate::helpers::TestDb::existing(url), |_| {}).await;
    let raw = |i: usize| {
        mail(
            "Kim <kim@example.com>",
            "sales@localhost",
            &format!("Order {i}"),
            &format!("disk-{i}@x"),
            &[],
            &"Order line\n".repeat(2000),
        )
    };
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200, "ready before the disk fills");

    let filler = disk.path().join("filler");
    fill(&filler);
    let mut acknowledged = 0;
    let mut refused = None;
    for i in 0..200 {
        match app
            .send("kim@example.com", &["sales@localhost"], &raw(i))
            .await
        {
            Ok(_) => acknowledged += 1,
            Err(err) => {
                refused = Some(reply_code(&err));
                break;
            }
        }
    }
    assert_eq!(refused, Some(451), "a full disk is a temporary failure");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "not ready while intake cannot commit: {body}");

    // Space returns: the next message is stored, without a restart.
    std::fs::remove_file(&filler).expect("free the disk");
    let mut recovered = false;
    for attempt in 0..20 {
        let i = 1000 + attempt;
        if app
            .send("kim@example.com", &["sales@localhost"], &raw(i))
            .await
            .is_ok()
        {
            acknowledged += 1;
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert!(recovered, "intake recovers once space returns");
    for i in 2000..2005 {
        app.send("kim@example.com", &["sales@localhost"], &raw(i))
            .await
            .expect("250 after recovery");
        acknowledged += 1;
    }
    app.wait_idle().await;
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "ready again: {body}");
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    let stored = app.inbound(None).await;
    assert_eq!(stored.len(), acknowledged, "every 250 is stored");
    assert!(
        stored.iter().all(|r| r["status"] == "processed"),
        "{stored:?}"
    );
    app.stop().await;
}

/// Holds the database's write lock from a connection of its own, as a
/// database that stopped answering writes would.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(url: &str) -> Self {
        if url.starts_with("sqlite:") {
            let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .expect("write lock");
            Self::Sqlite(conn)
        } else {
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql("BEGIN; LOCK TABLE inbound IN ACCESS EXCLUSIVE MODE")
                .execute(&mut conn)
                .await
                .expect("table lock");
            Self::Postgres(conn)
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("release");
            }
            Self::Postgres(mut conn) => {
                sqlx::raw_sql("COMMIT")
                    .execute(&mut conn)
                    .await
                    .expect("release");
            }
        }
    }
}

async fn a_frozen_database_answers_451_at_the_commit_deadline_and_keeps_what_lands(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |s| {
        s.intake.commit_timeout_secs = 1;
        // SQLite would give up on the lock by itself after its busy timeout.
        s.database.busy_timeout_ms = 30_000;
    })
    .await;
    let raw = mail(
        "Kim <kim@example.com>",
        "sales@localhost",
        "While frozen",
        "frozen@x",
        &[],
        "x",
    );
    let lock = WriteLock::take(&app.db.url).await;
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        app.send("kim@example.com", &["sales@localhost"], &raw),
    )
    .await
    .expect("answered at the deadline, not when the database comes back");
    let err = answer.expect_err("no 250 while nothing commits");
    assert_eq!(reply_code(&err), 451, "{err}");
    lock.release().await;

    // The sender retries; the commit that waited landed as well.
    app.deliver("kim@example.com", &["sales@localhost"], &raw)
        .await;
    let mut statuses: Vec<String> = app
        .inbound(None)
        .await
        .iter()
        .map(|r| format!("{} {}", r["status"], r["outcome"]))
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            "\"ignored\" \"ignored: duplicate\"",
            "\"processed\" \"processed: created #1\""
        ],
        "kept once as a record, the retry its duplicate"
    );
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
}
