//! Every mail of `../shared/corpus` goes through `ingest` and gets an
//! outcome; Zammad's expectations measure sender and subject parsing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use emailin::config::{AliasConfig, PipelineConfig, StageConfig};
use emailin::domain::StageKind;
use emailin::store::Store;
use uuid::Uuid;

use crate::helpers::{Backend, TestDb, test_settings};

#[path = "../support/corpus_files.rs"]
mod corpus_files;

use corpus_files::mail_files;

pub(crate) fn corpus_dir() -> Option<PathBuf> {
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
    assert!(
        !counts.iter().any(|(s, _)| s == "rejected"),
        "no real mail is over the MIME shape limits: {counts:?}"
    );
    let failed = counts
        .iter()
        .find(|(s, _)| s == "failed")
        .map_or(0, |(_, n)| *n);
    // The corpus holds a few files that are not mail at all (empty files, a
    // licence, one-line maildir stubs): they are `failed` (listed and
    // replayable), never silently ignored. Nothing else may fail.
    let failures = store
        .list_inbound(&emailin::store::InboundFilter {
            status: Some("failed".into()),
            cursor: None,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(failures.items.len() as i64, failed);
    for f in &failures.items {
        let error = f.error.as_deref().unwrap_or_default();
        assert!(
            error.starts_with("unparseable: "),
            "only what is not mail fails: {} {error}",
            f.sha256
        );
    }
    assert!(
        failed <= 12,
        "{failed} corpus files fail to parse (floor 12)"
    );
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
            auth: Default::default(),
            reopen: vec![],
            also: vec![],
            follow_up_days: None,
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

    // What processing parsed, from the stored raw bytes (machine mail creates
    // no message, but its sender and subject count all the same).
    let mut parsed: HashMap<Uuid, (Option<String>, Option<String>)> = HashMap::new();
    for id in inbound_of.values() {
        let raw = store.inbound_raw(*id).await.unwrap().expect("stored raw");
        if let Ok(mail) = emailin::ingest::parse(&raw) {
            parsed.insert(*id, (mail.from.map(|f| f.address), mail.subject));
        }
    }
    let counts = store.inbound_counts().await.unwrap();
    assert!(
        !counts.iter().any(|(s, _)| s == "pending" || s == "failed"),
        "{counts:?}"
    );

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

/// Classification figures over the labelled corpora (no database needed).
mod machine_mail {
    use std::path::Path;

    use emailin::ingest::{Class, classify, parse};
    use serde_json::Value;

    use super::corpus_dir;

    fn class_of_file(path: &Path) -> Option<Class> {
        let raw = std::fs::read(path).ok()?;
        let raw = emailin::ingest::mbox::split(&raw).into_iter().next()?;
        Some(classify(&parse(&raw).ok()?, false).class)
    }

    fn automatic(class: &Class) -> bool {
        matches!(class, Class::AutoReply | Class::List)
    }

    #[test]
    fn discourse_auto_generated_cases_are_all_correct() {
        let Some(dir) = corpus_dir() else { return };
        let d = dir.join("discourse-autogen");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(d.join("expected-transcribed.json")).unwrap())
                .unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let class = class_of_file(&d.join(case["file"].as_str().unwrap())).expect("parses");
            assert_eq!(
                automatic(&class),
                case["is_auto_generated"].as_bool().unwrap(),
                "{}: {class:?}",
                case["file"]
            );
        }
    }

    #[test]
    fn zammad_out_of_office_header_cases_are_all_correct() {
        let Some(dir) = corpus_dir() else { return };
        let expected: Value = serde_json::from_slice(
            &std::fs::read(dir.join("zammad/expected-out-of-office-header-cases.json")).unwrap(),
        )
        .unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let headers: Vec<&str> = case["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h.as_str().unwrap())
                .collect();
            let raw = format!(
                "From: me@example.com\r\nTo: customer@example.com\r\nSubject: {}\r\n{}{}\r\nSome Text\r\n",
                case["subject"].as_str().unwrap(),
                headers.join("\r\n"),
                if headers.is_empty() { "" } else { "\r\n" }
            );
            let class = classify(&parse(raw.as_bytes()).unwrap(), false).class;
            assert_eq!(
                class == Class::AutoReply,
                case["out_of_office"].as_bool().unwrap(),
                "{}: {class:?}",
                case["name"]
            );
        }
    }

    #[test]
    fn multipart_report_bounces_are_found_with_their_original_message_id() {
        let Some(dir) = corpus_dir() else { return };
        let mut files: Vec<_> =
            std::fs::read_dir(dir.join("mikel-mail/spec/fixtures/emails/multipart_report_emails"))
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect();
        for entry in std::fs::read_dir(dir.join("zammad/test/data/mail"))
            .unwrap()
            .flatten()
        {
            let text = std::fs::read(entry.path()).unwrap_or_default();
            let lower = String::from_utf8_lossy(&text).to_ascii_lowercase();
            if entry.path().extension().is_some_and(|e| e == "box")
                && lower.contains("multipart/report")
                && lower.contains("report-type=delivery-status")
            {
                files.push(entry.path());
            }
        }
        let (mut bounces, mut with_original, mut missed) = (0, 0, Vec::new());
        for f in &files {
            match class_of_file(f) {
                Some(Class::Bounce(b)) => {
                    bounces += 1;
                    if b.original_message_id.is_some() {
                        with_original += 1;
                    } else {
                        println!("no original Message-ID: {}", f.display());
                        // Missing is right only when the returned part carries none.
                        let text = std::fs::read(f).unwrap_or_default();
                        let lower = String::from_utf8_lossy(&text).to_ascii_lowercase();
                        let returned = ["message/rfc822", "rfc822-headers"]
                            .iter()
                            .filter_map(|m| lower.find(m))
                            .min()
                            .map_or("", |at| &lower[at..]);
                        if returned.contains("\nmessage-id:") {
                            missed.push(f.clone());
                        }
                    }
                }
                other => println!("not a bounce: {} -> {other:?}", f.display()),
            }
        }
        println!(
            "multipart/report: {bounces}/{} bounces, {with_original} with the original Message-ID",
            files.len()
        );
        assert_eq!(bounces, files.len());
        assert!(
            missed.is_empty(),
            "the original's Message-ID is in these and was not found: {missed:?}"
        );
    }

    #[test]
    fn sisimai_bounce_figures() {
        let Some(dir) = corpus_dir() else { return };
        let s = dir.join("sisimai-set-of-emails");
        let expected: Value =
            serde_json::from_slice(&std::fs::read(s.join("expected-go-sisimai.json")).unwrap())
                .unwrap();
        let (mut bounce_cases, mut detected, mut vacations, mut vacations_ok) = (0, 0, 0, 0);
        let (mut hard_labelled, mut hard_ok, mut status_labelled, mut status_ok) = (0, 0, 0, 0);
        let (mut reason_labelled, mut reason_ok) = (0, 0);
        // Each recipient whose hard/soft, reason or status disagrees, printed at the end.
        let mut misses = Vec::new();
        for case in expected["cases"].as_array().unwrap() {
            let Some(class) = class_of_file(&s.join(case["file"].as_str().unwrap())) else {
                continue;
            };
            if case["is_auto_reply"].as_bool() == Some(true) {
                vacations += 1;
                vacations_ok += usize::from(class == Class::AutoReply);
            }
            if case["is_bounce"].as_bool() != Some(true) {
                continue;
            }
            bounce_cases += 1;
            let Class::Bounce(b) = class else { continue };
            detected += 1;
            let file = case["file"].as_str().unwrap_or_default();
            for want in case["recipients"].as_array().unwrap() {
                let index = want["index"].as_u64().unwrap_or(1) as usize;
                let got = b.recipients.get(index - 1);
                // Counts one labelled field and lists the recipient when we disagree.
                let mut tally = |field: &str, want: &str, ours: Option<&str>, ok: &mut usize| {
                    if ours == Some(want) {
                        *ok += 1;
                    } else {
                        misses.push(format!(
                            "{field} {file} #{index}: sisimai {want}, ours {}",
                            ours.unwrap_or("-")
                        ));
                    }
                };
                if let Some(hard) = want["hard_bounce"].as_bool() {
                    hard_labelled += 1;
                    let kind = |hard: bool| if hard { "hard" } else { "soft" };
                    tally(
                        "hard/soft",
                        kind(hard),
                        got.map(|g| kind(g.hard)),
                        &mut hard_ok,
                    );
                }
                if let Some(reason) = want["reason"].as_str().filter(|s| !s.is_empty()) {
                    reason_labelled += 1;
                    tally(
                        "reason",
                        reason,
                        got.map(|g| g.reason.as_str()),
                        &mut reason_ok,
                    );
                }
                if let Some(status) = want["status"].as_str().filter(|s| !s.is_empty()) {
                    status_labelled += 1;
                    let ours = got.and_then(|g| g.status.as_deref());
                    tally("status", status, ours, &mut status_ok);
                }
            }
        }
        let not_dir = s.join("maildir/not");
        let mut false_bounces = 0;
        for entry in std::fs::read_dir(&not_dir).unwrap().flatten() {
            false_bounces += usize::from(matches!(
                class_of_file(&entry.path()),
                Some(Class::Bounce(_))
            ));
        }
        let pct = |a: usize, b: usize| {
            if b == 0 {
                100.0
            } else {
                100.0 * a as f64 / b as f64
            }
        };
        for miss in &misses {
            println!("{miss}");
        }
        println!(
            "sisimai: bounces detected {detected}/{bounce_cases} ({:.1} %); maildir/not reported as bounces: {false_bounces}; \
vacations detected {vacations_ok}/{vacations}; hard/soft agreement {hard_ok}/{hard_labelled} ({:.1} %); \
DSN status agreement {status_ok}/{status_labelled} ({:.1} %); reason agreement {reason_ok}/{reason_labelled} ({:.1} %)",
            pct(detected, bounce_cases),
            pct(hard_ok, hard_labelled),
            pct(status_ok, status_labelled),
            pct(reason_ok, reason_labelled)
        );
        assert_eq!(false_bounces, 0, "no bounce reported for maildir/not");
        assert!(
            pct(detected, bounce_cases) >= 98.0,
            "bounce detection below the 98 % bar"
        );
        assert!(
            pct(hard_ok, hard_labelled) >= 95.0,
            "hard/soft agreement below the 95 % bar"
        );
        assert!(
            pct(status_ok, status_labelled) >= 95.0,
            "DSN status agreement below the 95 % bar"
        );
        // Reason has no bar; this floor keeps what is reached from slipping back.
        assert!(
            pct(reason_ok, reason_labelled) >= 86.9,
            "reason agreement fell"
        );
        assert_eq!(
            vacations_ok, vacations,
            "every vacation reply is an auto-reply"
        );
    }
}
