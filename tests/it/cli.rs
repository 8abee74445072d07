//! The `emailin` binary as an operator runs it.

use tokio::process::Command;

use crate::helpers::{Backend, TestDb, mail, spawn_app};

fn emailin(db_url: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_emailin"));
    cmd.env("EMAILIN__DATABASE__URL", db_url)
        .env("RUST_LOG", "warn");
    cmd
}

#[tokio::test]
async fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[smtp]\nlisten_addr = \"127.0.0.1:25\"\n").unwrap();
    let out = emailin("sqlite://unused.db")
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_addr"), "{stderr}");

    let out = emailin("sqlite://unused.db")
        .env("EMAILIN__SMTP__NO_SUCH_KEY", "1")
        .arg("check-config")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_key"));

    let out = emailin("postgres://user:hunter2@127.0.0.1/db")
        .arg("check-config")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("configuration is valid") && !stdout.contains("hunter2"),
        "{stdout}"
    );
}

#[tokio::test]
async fn ingest_stores_and_processes_eml_and_mbox_files() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("one.eml");
    std::fs::write(
        &eml,
        mail(
            "Ann <ann@example.com>",
            "support@acme.example",
            "From a file",
            "f1@x",
            &[],
            "x",
        ),
    )
    .unwrap();
    let mbox = dir.path().join("two.mbox");
    let mut data = b"From ann@example.com Sun Nov 22 10:00:00 2026\n".to_vec();
    data.extend_from_slice(b"From: ann@example.com\nSubject: Re: From a file\nMessage-ID: <f2@x>\nIn-Reply-To: <f1@x>\n\n>From the mbox\n");
    data.extend_from_slice(b"From bob@example.com Sun Nov 22 10:00:00 2026\n");
    data.extend_from_slice(b"From: bob@example.com\nSubject: Other\nMessage-ID: <f3@x>\n\nhi\n");
    std::fs::write(&mbox, data).unwrap();

    let out = emailin(&db.url)
        .args(["ingest", "--to", "service@localhost"])
        .arg(&eml)
        .arg(&mbox)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("stored 3 message(s) from 2 file(s)"),
        "{stdout}"
    );
    assert!(stdout.contains("processed: 3"), "{stdout}");

    let out = emailin(&db.url)
        .args(["ingest", "--to", "nobody@localhost"])
        .arg(&eml)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an enabled alias"));

    let out = emailin(&db.url).args(["replay"]).output().await.unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("replayed 0 message(s)"));
}

#[tokio::test]
async fn healthcheck_passes_against_a_running_service_and_fails_without_one() {
    let app = spawn_app(Backend::Sqlite).await;
    let out = emailin(&app.db.url)
        .env("EMAILIN__HTTP__LISTEN", app.http_addr.to_string())
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = app.http_addr;
    app.stop().await;
    let out = emailin("sqlite://unused.db")
        .env("EMAILIN__HTTP__LISTEN", addr.to_string())
        .arg("healthcheck")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn processes_starting_together_on_a_fresh_database_all_migrate_it() {
    let db = TestDb::new(Backend::Sqlite).await;
    let runs: Vec<_> = (0..3)
        .map(|_| emailin(&db.url).arg("migrate").output())
        .collect();
    for out in futures::future::join_all(runs).await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
