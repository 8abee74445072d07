//! Every mail of `../shared/corpus` goes through `ingest` and gets an
//! outcome; Zammad's expectations measure sender and subject parsing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use emailin::config::{AliasConfig, PipelineConfig, StageConfig};
use emailin::domain::StageKind;
use emailin::store::{ConversationItem, RecordFilter, Store};
use uuid::Uuid;

use crate::helpers::{Backend, TestDb, test_settings};

#[path = "../support/corpus_files.rs"]
mod corpus_files;

use corpus_files::mail_files;

fn corpus_dir() -> Option<PathBuf> {
    let dir = corpus_files::corpus_dir();
    if dir.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "../shared/corpus is required in CI"
        );
        eprintln!("skipped: corpus test (../shared/corpus not found)");
    }
    dir
}

async fn ingest(store: &Arc<dyn Store>, db: &TestDb, files: &[PathBuf]) -> Vec<(PathBuf, Uuid)> {
    let settings = test_settings(db);
    emailin::cli::ingest_files(store, &settings, files, "service@localhost")
        .await
        .expect("ingest")
        .stored
}

async fn open(db: &TestDb) -> Arc<dyn Store> {
    emailin::app::open_store(&test_settings(db))
        .await
        .expect("store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_corpus_mail_is_ingested_and_gets_an_outcome() {
    let Some(dir) = corpus_dir() else { return };
    let files = mail_files(&dir);
    assert!(
        files.len() > 1000,
        "expected the whole corpus, found {} files",
        files.len()
    );

    let db = TestDb::new(Backend::Sqlite).await;
    let store = open(&db).await;
    let stored = ingest(&store, &db, &files).await;

    let counts = store.inbound_counts().await.unwrap();
    println!(
        "corpus: {} files, {} messages stored; outcomes {counts:?}",
        files.len(),
        stored.len()
    );
    assert!(
        stored.len() >= files.len(),
        "every file gives at least one message"
    );
    assert!(
        !counts.iter().any(|(s, _)| s == "pending"),
        "every message has an outcome"
    );
    let failed = counts
        .iter()
        .find(|(s, _)| s == "failed")
        .map_or(0, |(_, n)| *n);
    assert_eq!(failed, 0, "no corpus mail fails processing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zammad_senders_and_subjects_match_expectations() {
    let Some(dir) = corpus_dir() else { return };
    let zammad = dir.join("zammad");
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(zammad.join("expected-zammad-normalized.json")).unwrap(),
    )
    .unwrap();
    let cases = expected["cases"].as_array().unwrap();
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|c| zammad.join(c["file"].as_str().unwrap()))
        .collect();

    // One pipeline per file: several Zammad mails share a Message-ID, and
    // within one pipeline the later ones would (rightly) be duplicates.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    for i in 0..files.len() {
        settings.pipelines.push(PipelineConfig {
            name: format!("Z{i}"),
            stages: vec![StageConfig {
                name: "Open".into(),
                kind: StageKind::Open,
            }],
        });
        settings.aliases.push(AliasConfig {
            address: format!("z{i}@localhost"),
            name: String::new(),
            pipeline: format!("Z{i}"),
            owner: None,
            tags: vec![],
            enabled: true,
            reopen_on_reply: false,
            reopen: vec![],
            also: vec![],
        });
    }
    let store = emailin::app::open_store(&settings).await.expect("store");
    let mut inbound_of: HashMap<PathBuf, Uuid> = HashMap::new();
    for (i, file) in files.iter().enumerate() {
        let report = emailin::cli::ingest_files(
            &store,
            &settings,
            std::slice::from_ref(file),
            &format!("z{i}@localhost"),
        )
        .await
        .expect("ingest");
        inbound_of.extend(report.stored);
    }

    // What processing stored, by inbound id.
    let mut parsed: HashMap<Uuid, (Option<String>, Option<String>)> = HashMap::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_records(&RecordFilter {
                cursor,
                limit: 200,
                ..Default::default()
            })
            .await
            .unwrap();
        for r in &page.items {
            let detail = store.get_record(r.id).await.unwrap().unwrap();
            for item in detail.conversation {
                if let ConversationItem::Message(m) = item
                    && let Some(inbound) = m.inbound_id
                {
                    parsed.insert(inbound, (m.from.map(|f| f.address), m.subject));
                }
            }
        }
        match page.next_cursor {
            Some(c) => cursor = Some(Uuid::parse_str(&c).unwrap()),
            None => break,
        }
    }

    let (mut from_ok, mut subject_ok) = (0, 0);
    for (case, file) in cases.iter().zip(&files) {
        let got = inbound_of
            .get(file)
            .and_then(|id| parsed.get(id))
            .cloned()
            .unwrap_or_default();
        let want_from = case["from_email"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        // Zammad keeps folding whitespace verbatim; compare words, not spacing.
        let want_subject = collapse(case["subject"].as_str().unwrap_or_default());
        if got.0.as_deref() == Some(want_from.as_str()) {
            from_ok += 1;
        } else {
            println!(
                "from mismatch {}: want {want_from:?} got {:?}",
                file.display(),
                got.0
            );
        }
        if collapse(got.1.as_deref().unwrap_or_default()) == want_subject {
            subject_ok += 1;
        } else {
            println!(
                "subject mismatch {}: want {want_subject:?} got {:?}",
                file.display(),
                got.1
            );
        }
    }
    println!(
        "zammad: from {from_ok}/{n}, subject {subject_ok}/{n}",
        n = cases.len()
    );
    assert!(from_ok >= 101, "from {from_ok}/106 is below 101");
    assert!(subject_ok >= 103, "subject {subject_ok}/106 is below 103");
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
