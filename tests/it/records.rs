//! Mail to an alias becomes records; replies join them; closed records reopen.

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, events, mail, messages, spawn_app};
use crate::on_both_backends;

on_both_backends!(
    new_mail_creates_record_and_contact,
    second_mail_outside_thread_creates_second_record_for_same_contact,
    replies_join_the_record_by_each_threading_rule,
    reply_to_resolved_record_moves_it_to_reopened,
    reply_to_closed_stage_without_rule_stays_closed,
    same_message_twice_is_stored_once_per_pipeline,
    message_to_two_pipelines_makes_one_record_in_each,
    thread_never_crosses_pipelines,
    message_without_message_id_gets_a_stable_synthetic_one,
    message_fields_and_attachments_are_stored,
    records_are_filtered_and_paginated,
    one_group_commit_threads_replies_to_messages_of_the_same_batch,
    the_fast_path_never_overtakes_an_older_waiting_message,
    the_pending_check_counts_every_id_of_a_large_batch,
    pending_count_counts_only_messages_waiting_for_processing,
    one_group_commit_writes_records_of_one_new_contact_large_messages_and_attachments,
    a_transactions_buffered_writes_land_as_if_written_one_by_one,
);

async fn first_record(app: &TestApp, pipeline: &str) -> Value {
    let records = app.records(pipeline).await;
    let id = records.first().expect("a record")["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.record(&id).await
}

async fn new_mail_creates_record_and_contact(backend: Backend) {
    let app = spawn_app(backend).await;

    app.post(
        "Ann Lee <Ann@Example.com>",
        "sales@localhost",
        "Quote please",
        "q1@example.com",
        &[],
    )
    .await;

    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["title"], "Quote please");
    assert_eq!(r["stage"], "New");
    assert_eq!(r["owner"], "sales-team@localhost");
    assert_eq!(r["tags"], serde_json::json!(["sales"]));
    assert_eq!(r["contact"]["email"], "ann@example.com");
    assert_eq!(r["contact"]["name"], "Ann Lee");
    let contact = app.contact("ANN@example.com").await.expect("contact");
    assert_eq!(contact["id"], r["contact"]["id"]);
    let detail = app.record(r["id"].as_str().unwrap()).await;
    let msgs = messages(&detail);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["thread"]["rule"], "new");
    assert_eq!(events(&detail)[0]["kind"], "created");
    assert!(app.records("Service").await.is_empty());
    app.stop().await;
}

async fn second_mail_outside_thread_creates_second_record_for_same_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Ann <ann@example.com>";
    app.post(from, "sales@localhost", "First", "a1@x", &[])
        .await;
    app.post(from, "sales@localhost", "Second", "a2@x", &[])
        .await;

    let records = app.records("Sales").await;
    assert_eq!(records.len(), 2);
    assert_ne!(records[0]["id"], records[1]["id"]);
    assert_eq!(records[0]["contact"]["id"], records[1]["contact"]["id"]);
    app.stop().await;
}

async fn replies_join_the_record_by_each_threading_rule(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Bob <bob@example.com>";
    app.post(from, "service@localhost", "Printer broken", "p1@x", &[])
        .await;
    let record = first_record(&app, "Service").await;
    let number = record["number"].as_i64().unwrap();
    let token = reply_token(&app, &record).await;

    // In-Reply-To
    app.post(
        from,
        "service@localhost",
        "Re: Printer broken",
        "p2@x",
        &[("In-Reply-To", "<p1@x>")],
    )
    .await;
    // References only (newest known id wins even when older ones are unknown)
    app.post(
        from,
        "service@localhost",
        "Re: Printer broken",
        "p3@x",
        &[("References", "<unknown@x> <p2@x>")],
    )
    .await;
    // Subject tag only
    app.post(
        from,
        "service@localhost",
        &format!("Still broken [#{number}]"),
        "p4@x",
        &[],
    )
    .await;
    // Reply token in the recipient address only
    let token_rcpt = format!("service+r-{token}@localhost");
    app.deliver(
        "bob@example.com",
        &[&token_rcpt],
        &mail(from, &token_rcpt, "Anything", "p5@x", &[], "more"),
    )
    .await;

    let records = app.records("Service").await;
    assert_eq!(records.len(), 1, "all replies joined one record");
    let detail = app.record(records[0]["id"].as_str().unwrap()).await;
    let rules: Vec<(String, String)> = messages(&detail)
        .iter()
        .map(|m| {
            (
                m["thread"]["rule"].as_str().unwrap().to_string(),
                m["thread"]["value"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        [
            ("new".to_string(), String::new()),
            ("in-reply-to".into(), "p1@x".into()),
            ("references".into(), "p2@x".into()),
            ("subject-tag".into(), format!("[#{number}]")),
            ("reply-token".into(), token.clone()),
        ]
    );

    // A token whose signature does not verify names no record: the stored
    // token alone, or with another signature, gives a new record.
    let stored = stored_reply_token(&app, &record).await;
    for (n, forged) in [stored.clone(), format!("{stored}{}", "0".repeat(20))]
        .iter()
        .enumerate()
    {
        let rcpt = format!("service+r-{forged}@localhost");
        let id = format!("forged{n}@x");
        app.deliver(
            "bob@example.com",
            &[&rcpt],
            &mail(from, &rcpt, "Anything", &id, &[], "more"),
        )
        .await;
    }
    assert_eq!(
        app.records("Service").await.len(),
        3,
        "forged tokens thread nowhere"
    );
    app.stop().await;
}

/// The signed token of a record's reply address, as outbound replies carry it.
async fn reply_token(app: &TestApp, record: &Value) -> String {
    let secret = app
        .store
        .server_secret(emailin::ingest::REPLY_KEY_SECRET)
        .await
        .unwrap();
    emailin::domain::ReplyKey::new(&secret).sign(&stored_reply_token(app, record).await)
}

/// The token stored on the record (not exposed by the API): read where it lives.
async fn stored_reply_token(app: &TestApp, record: &Value) -> String {
    let id = Uuid::parse_str(record["id"].as_str().unwrap()).unwrap();
    let url = &app.db.url;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query_scalar("SELECT reply_token FROM records WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query_scalar("SELECT reply_token FROM records WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
    }
}

async fn reply_to_resolved_record_moves_it_to_reopened(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Cy <cy@example.com>";
    app.post(from, "service@localhost", "VPN down", "v1@x", &[])
        .await;
    let record = first_record(&app, "Service").await;
    app.move_to_stage(&record, "Resolved").await;
    assert_eq!(first_record(&app, "Service").await["stage"], "Resolved");

    app.post(
        from,
        "service@localhost",
        "Re: VPN down",
        "v2@x",
        &[("In-Reply-To", "<v1@x>")],
    )
    .await;

    let detail = first_record(&app, "Service").await;
    assert_eq!(detail["stage"], "Reopened");
    let reopened: Vec<Value> = events(&detail)
        .into_iter()
        .filter(|e| e["kind"] == "reopened")
        .collect();
    assert_eq!(reopened.len(), 1);
    assert_eq!(reopened[0]["from_stage"], "Resolved");
    assert_eq!(reopened[0]["to_stage"], "Reopened");
    let reply = messages(&detail)
        .into_iter()
        .find(|m| m["message_id"] == "v2@x")
        .expect("reply stored");
    assert_eq!(
        reopened[0]["message_id"], reply["id"],
        "the event names the message"
    );
    let outcome = &app.inbound(None).await[0]["outcome"];
    assert_eq!(outcome, "processed: appended to #1, reopened");
    app.stop().await;
}

async fn reply_to_closed_stage_without_rule_stays_closed(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Dee <dee@example.com>";
    app.post(from, "sales@localhost", "Order", "o1@x", &[])
        .await;
    let record = first_record(&app, "Sales").await;
    app.move_to_stage(&record, "Won").await;

    app.post(
        from,
        "sales@localhost",
        "Re: Order",
        "o2@x",
        &[("In-Reply-To", "<o1@x>")],
    )
    .await;

    let detail = first_record(&app, "Sales").await;
    assert_eq!(detail["stage"], "Won");
    assert_eq!(messages(&detail).len(), 2, "the reply is still appended");
    assert!(events(&detail).iter().all(|e| e["kind"] != "reopened"));
    app.stop().await;
}

async fn same_message_twice_is_stored_once_per_pipeline(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = mail(
        "Eve <eve@example.com>",
        "sales@localhost",
        "Hello",
        "dup1@x",
        &[],
        "x",
    );
    // A retried delivery after a lost 250: same bytes, second transaction.
    app.deliver("eve@example.com", &["sales@localhost"], &raw)
        .await;
    app.deliver("eve@example.com", &["sales@localhost"], &raw)
        .await;

    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        messages(&app.record(records[0]["id"].as_str().unwrap()).await).len(),
        1
    );
    let inbound = app.inbound(None).await;
    assert_eq!(inbound.len(), 2, "both deliveries are kept raw");
    assert_eq!(inbound[0]["outcome"], "ignored: duplicate");
    assert_eq!(inbound[1]["outcome"], "processed: created #1");
    app.stop().await;
}

async fn message_to_two_pipelines_makes_one_record_in_each(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = mail(
        "Fay <fay@example.com>",
        "sales@localhost, service@localhost",
        "Both",
        "both@x",
        &[],
        "x",
    );
    app.deliver(
        "fay@example.com",
        &["sales@localhost", "service@localhost"],
        &raw,
    )
    .await;

    let sales = app.records("Sales").await;
    let service = app.records("Service").await;
    assert_eq!((sales.len(), service.len()), (1, 1));
    assert_ne!(sales[0]["id"], service[0]["id"]);
    assert_eq!(sales[0]["contact"]["id"], service[0]["contact"]["id"]);
    app.stop().await;
}

async fn thread_never_crosses_pipelines(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Gus <gus@example.com>";
    app.post(from, "sales@localhost", "Deal", "d1@x", &[]).await;
    app.post(
        from,
        "service@localhost",
        "Re: Deal [#1]",
        "d2@x",
        &[("In-Reply-To", "<d1@x>")],
    )
    .await;

    assert_eq!(app.records("Sales").await.len(), 1);
    let service = first_record(&app, "Service").await;
    assert_eq!(messages(&service)[0]["thread"]["rule"], "new");
    app.stop().await;
}

async fn message_without_message_id_gets_a_stable_synthetic_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw =
        b"From: Hal <hal@example.com>\r\nTo: sales@localhost\r\nSubject: No id\r\n\r\nbody\r\n";
    app.deliver("hal@example.com", &["sales@localhost"], raw)
        .await;
    app.deliver("hal@example.com", &["sales@localhost"], raw)
        .await;

    let records = app.records("Sales").await;
    assert_eq!(
        records.len(),
        1,
        "the retry is recognised by its content hash"
    );
    let detail = app.record(records[0]["id"].as_str().unwrap()).await;
    let id = messages(&detail)[0]["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(id.ends_with("@emailin.synthetic"), "{id}");
    app.stop().await;
}

async fn message_fields_and_attachments_are_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = "From: Ivy <ivy@example.com>\r\nTo: sales@localhost\r\nCc: Boss <boss@example.com>\r\n\
Reply-To: ivy.private@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <att@x>\r\n\
Date: Tue, 03 Nov 2026 09:30:00 +0100\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=\"b2\"\r\n\r\n\
--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n\
--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>See attached.</p>\r\n--b2--\r\n\
--b1\r\nContent-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Disposition: attachment; filename=\"quote.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";
    app.deliver("ivy@example.com", &["sales@localhost"], raw.as_bytes())
        .await;

    let detail = first_record(&app, "Sales").await;
    assert_eq!(detail["title"], "Grüße");
    let m = &messages(&detail)[0];
    assert_eq!(m["from"]["address"], "ivy@example.com");
    assert_eq!(m["cc"][0]["address"], "boss@example.com");
    assert_eq!(m["reply_to"], "ivy.private@example.com");
    assert_eq!(m["date"], "2026-11-03T08:30:00Z");
    assert_eq!(m["text"].as_str().unwrap().trim(), "See attached.");
    assert!(m["html"].as_str().unwrap().contains("<p>See attached.</p>"));
    let att = &m["attachments"][0];
    assert_eq!(att["name"], "quote.pdf");
    assert_eq!(att["content_type"], "application/pdf");
    assert_eq!(att["size"], 9);
    use sha2::Digest;
    assert_eq!(
        att["sha256"],
        hex::encode(sha2::Sha256::digest(b"%PDF-1.4\n"))
    );
    app.stop().await;
}

async fn records_are_filtered_and_paginated(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.post(
            "Ann <ann@example.com>",
            "sales@localhost",
            &format!("Ann {i}"),
            &format!("pa{i}@x"),
            &[],
        )
        .await;
    }
    let raw = b"From: Bob <bob@example.com>\r\nTo: sales@localhost\r\nMessage-ID: <pb@x>\r\n\r\nno subject line\r\n";
    app.deliver("bob@example.com", &["sales@localhost"], raw)
        .await;

    // Pages of two, newest first, until the cursor runs out.
    let mut titles = Vec::new();
    let mut path = "/api/v1/records?pipeline=Sales&limit=2".to_string();
    loop {
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        titles.extend(
            items
                .iter()
                .map(|r| r["title"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/records?pipeline=Sales&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        titles,
        ["(no subject)", "Ann 4", "Ann 3", "Ann 2", "Ann 1", "Ann 0"]
    );

    let (_, by_contact) = app.get("/api/v1/records?contact=BOB@example.com").await;
    assert_eq!(by_contact["items"].as_array().unwrap().len(), 1);
    let (_, by_stage) = app.get("/api/v1/records?pipeline=Sales&stage=Won").await;
    assert!(by_stage["items"].as_array().unwrap().is_empty());
    let (_, open) = app
        .get("/api/v1/records?pipeline=Sales&stage=New&limit=500")
        .await;
    assert_eq!(open["items"].as_array().unwrap().len(), 6);

    let (status, err) = app.get("/api/v1/records?limit=0").await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "bad_request");
    let (status, _) = app
        .get(&format!("/api/v1/records/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
    assert!(app.contact("nobody@example.com").await.is_none());
    app.stop().await;
}

/// Stores `raws` for `to` in ONE intake submission, so they share one group
/// commit and are processed together on its fast path.
///
/// The writer runs on an event loop of its own that ends with it, and a
/// PostgreSQL connection belongs to the loop that opened it: so it gets a
/// store of its own, never the app's pool, which would keep the writer's
/// connections after their loop ended.
async fn submit_together(app: &TestApp, to: &str, raws: Vec<Vec<u8>>) {
    let settings = crate::helpers::test_settings(&app.db);
    let store = emailin::store::connect(&settings.database)
        .await
        .expect("store");
    submit_through_intake(store, &settings, to, raws).await;
}

/// [`submit_together`] on a store of one's own; returns what the intake
/// writer notifies when it leaves messages for the processor.
async fn submit_through_intake(
    store: std::sync::Arc<dyn emailin::store::Store>,
    settings: &emailin::config::Settings,
    to: &str,
    raws: Vec<Vec<u8>>,
) -> std::sync::Arc<tokio::sync::Notify> {
    use emailin::domain::{Envelope, InboundMessage, Source};
    use emailin::ingest::{Intake, Policy, Processor};
    let directory =
        emailin::domain::DirectoryHandle::new(store.load_directory().await.expect("directory"));
    let policy = Policy::load(settings, store.as_ref())
        .await
        .expect("policy");
    let processor = Processor::new(std::sync::Arc::clone(&store), directory, policy, 256);
    let stop = tokio_util::sync::CancellationToken::new();
    let stored = std::sync::Arc::new(tokio::sync::Notify::new());
    let (intake, writer) = Intake::start(
        store,
        settings.intake.clone(),
        Some(processor),
        std::sync::Arc::clone(&stored),
        stop,
    );
    let messages = raws
        .into_iter()
        .map(|raw| {
            let envelope = Envelope {
                mail_from: Some("ann@example.com".into()),
                rcpt_to: vec![to.to_string()],
                ..Envelope::default()
            };
            InboundMessage::new(Source::Smtp(Default::default()), envelope, raw)
        })
        .collect();
    intake.submit_all(messages).await.expect("stored");
    drop(intake);
    writer.await.expect("writer ends");
    stored
}

/// A migrated database with its aliases, and no service processing it.
async fn without_service(
    backend: Backend,
) -> (
    crate::helpers::TestDb,
    emailin::config::Settings,
    std::sync::Arc<dyn emailin::store::Store>,
) {
    let app = spawn_app(backend).await;
    let settings = crate::helpers::test_settings(&app.db);
    let db = app.stop_into_db().await;
    let store = emailin::store::connect(&settings.database)
        .await
        .expect("store");
    (db, settings, store)
}

async fn the_pending_check_counts_every_id_of_a_large_batch(backend: Backend) {
    use emailin::domain::{Envelope, InboundMessage, Source};
    let (db, _, store) = without_service(backend).await;
    // More ids than one query binds.
    let batch: Vec<InboundMessage> = (0..501)
        .map(|i| {
            let envelope = Envelope {
                rcpt_to: vec!["service@localhost".into()],
                ..Envelope::default()
            };
            InboundMessage::new(
                Source::Api,
                envelope,
                format!("Subject: {i}\r\n\r\nx\r\n").into_bytes(),
            )
        })
        .collect();
    let refs: Vec<&InboundMessage> = batch.iter().collect();
    let ids = store.insert_inbound(&refs).await.expect("stored");
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.only_pending(&ids).await.expect("pending check"));
    assert!(
        !tx.only_pending(&ids[1..]).await.expect("pending check"),
        "one left out"
    );
    let mut swapped = ids.clone();
    swapped[500] = Uuid::now_v7();
    assert!(
        !tx.only_pending(&swapped).await.expect("pending check"),
        "an unknown id in the second query"
    );
    drop(tx);
    drop(store);
    db.drop_db().await;
}

/// Stores `n` new messages to sales@localhost; nothing processes them.
async fn store_unprocessed(store: &dyn emailin::store::Store, n: usize) {
    use emailin::domain::{Envelope, InboundMessage, Source};
    let messages: Vec<InboundMessage> = (0..n)
        .map(|_| {
            let envelope = Envelope {
                mail_from: Some("ann@example.com".into()),
                rcpt_to: vec!["sales@localhost".into()],
                ..Envelope::default()
            };
            let id = format!("{}@example.com", Uuid::now_v7());
            let raw = mail("ann@example.com", "sales@localhost", "hi", &id, &[], "x");
            InboundMessage::new(Source::Smtp(Default::default()), envelope, raw)
        })
        .collect();
    let refs: Vec<&InboundMessage> = messages.iter().collect();
    store.insert_inbound(&refs).await.expect("stored");
}

/// What the load tool and the tests wait on: stored messages not yet processed.
async fn pending_count_counts_only_messages_waiting_for_processing(backend: Backend) {
    let (db, settings, store) = without_service(backend).await;
    store_unprocessed(store.as_ref(), 2).await;
    assert_eq!(store.pending_count().await.unwrap(), 2);
    let counts = store.inbound_counts().await.unwrap();
    assert_eq!(counts, [("pending".to_string(), 2)]);

    let processed = emailin::cli::process_pending(&store, &settings)
        .await
        .unwrap();
    assert_eq!(processed, 2);
    assert_eq!(store.pending_count().await.unwrap(), 0);

    store_unprocessed(store.as_ref(), 1).await;
    assert_eq!(store.pending_count().await.unwrap(), 1);
    let counts = store.inbound_counts().await.unwrap();
    assert_eq!(
        counts,
        [("pending".to_string(), 1), ("processed".to_string(), 2)]
    );
    drop(store);
    db.drop_db().await;
}

async fn the_fast_path_never_overtakes_an_older_waiting_message(backend: Backend) {
    use emailin::domain::{Envelope, InboundMessage, Source};
    let (db, settings, store) = without_service(backend).await;
    let to = "service@localhost";
    let from = "Ann <ann@example.com>";
    // Arrange: an original waits for processing.
    let original = InboundMessage::new(
        Source::Api,
        Envelope {
            mail_from: Some("ann@example.com".into()),
            rcpt_to: vec![to.to_string()],
            ..Envelope::default()
        },
        mail(from, to, "Scanner", "s1@x", &[], "text"),
    );
    let stored = store.insert_inbound(&[&original]).await.expect("stored");
    let mut tx = store.begin().await.expect("begin");
    assert!(tx.only_pending(&stored).await.expect("pending check"));
    assert!(
        !tx.only_pending(&[stored[0], Uuid::now_v7()])
            .await
            .expect("pending check"),
        "an id that waits for nothing"
    );
    assert!(!tx.only_pending(&[]).await.expect("pending check"));
    drop(tx);

    // Act: a reply to it arrives through intake's fast path.
    let reply = mail(
        from,
        to,
        "Re: Scanner",
        "s2@x",
        &[("In-Reply-To", "<s1@x>")],
        "text",
    );
    let stored =
        submit_through_intake(std::sync::Arc::clone(&store), &settings, to, vec![reply]).await;

    // Assert: the reply is stored but not applied ahead of its original, and
    // the processor was told.
    let counts = store.inbound_counts().await.expect("counts");
    assert_eq!(counts, [("pending".to_string(), 2)]);
    tokio::time::timeout(std::time::Duration::from_secs(1), stored.notified())
        .await
        .expect("the processor is notified");
    // A service on the database processes both, in arrival order.
    drop(store);
    let app = crate::helpers::spawn_app_on_db(db, |_| {}).await;
    app.wait_idle().await;
    let records = app.records("Service").await;
    assert_eq!(
        records.len(),
        1,
        "the reply joined its original: {records:?}"
    );
    let detail = first_record(&app, "Service").await;
    let ids: Vec<Value> = messages(&detail)
        .iter()
        .map(|m| m["message_id"].clone())
        .collect();
    assert_eq!(ids, ["s1@x", "s2@x"]);
    app.stop().await;
}

async fn one_group_commit_threads_replies_to_messages_of_the_same_batch(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "Ann <ann@example.com>";
    let to = "service@localhost";
    let re = |id: &str| vec![("In-Reply-To", format!("<{id}>"))];
    let with = |subject: &str, id: &str, extra: &[(&str, String)]| {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        mail(from, to, subject, id, &extra, "text")
    };

    // Arrange: an original, a reply to it, a reply to that reply, the original again.
    submit_together(
        &app,
        to,
        vec![
            with("Printer", "b1@x", &[]),
            with("Re: Printer", "b2@x", &re("b1@x")),
            with("Re: Re: Printer", "b3@x", &re("b2@x")),
            with("Printer", "b1@x", &[]),
        ],
    )
    .await;

    // Assert: one record holds all three messages, the duplicate is not stored again.
    let records = app.records("Service").await;
    assert_eq!(records.len(), 1, "{records:?}");
    let detail = first_record(&app, "Service").await;
    let ids: Vec<Value> = messages(&detail)
        .iter()
        .map(|m| m["message_id"].clone())
        .collect();
    assert_eq!(ids, ["b1@x", "b2@x", "b3@x"]);

    // Arrange: the record is resolved; two replies arrive in one commit.
    app.move_to_stage(&detail, "Resolved").await;
    submit_together(
        &app,
        to,
        vec![
            with("Re: Printer", "b4@x", &re("b3@x")),
            with("Re: Printer", "b5@x", &re("b1@x")),
        ],
    )
    .await;

    // Assert: the first reopens it, the second finds it open and only joins.
    let detail = first_record(&app, "Service").await;
    assert_eq!(detail["stage"], "Reopened");
    assert_eq!(messages(&detail).len(), 5);
    let reopened = events(&detail)
        .into_iter()
        .filter(|e| e["kind"] == "reopened")
        .count();
    assert_eq!(reopened, 1);
    let outcomes: Vec<String> = app
        .inbound(None)
        .await
        .iter()
        .map(|i| i["outcome"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        outcomes.iter().any(|o| o.contains("duplicate")),
        "{outcomes:?}"
    );
    app.stop().await;
}

async fn one_group_commit_writes_records_of_one_new_contact_large_messages_and_attachments(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let to = "sales@localhost";
    let large = "0123456789abcdef ".repeat(20_000); // 340 KB: written at once, not buffered
    let attached = format!(
        "From: Bo <bo@example.com>\r\nTo: {to}\r\nSubject: Quote\r\nMessage-ID: <c4@x>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nAttached.\r\n--b\r\nContent-Type: application/pdf; name=\"q.pdf\"\r\n\
Content-Disposition: attachment; filename=\"q.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    );

    // Arrange: a new sender, first without a display name, then with one;
    // a large message and one with an attachment between them; one commit.
    submit_together(
        &app,
        to,
        vec![
            mail("bo@example.com", to, "First", "c1@x", &[], "one"),
            mail("Bo Berg <bo@example.com>", to, "Second", "c2@x", &[], "two"),
            mail("Bo <bo@example.com>", to, "Large", "c3@x", &[], &large),
            attached.into_bytes(),
            mail("Bo <bo@example.com>", to, "Fifth", "c5@x", &[], "five"),
        ],
    )
    .await;

    // Assert: five records numbered in arrival order, one contact named by
    // the first name given, every body and the attachment stored.
    let mut records = app.records("Sales").await;
    records.sort_by_key(|r| r["number"].as_i64());
    let titles: Vec<&str> = records
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["First", "Second", "Large", "Quote", "Fifth"]);
    let numbers: Vec<i64> = records
        .iter()
        .map(|r| r["number"].as_i64().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    for r in &records {
        assert_eq!(r["contact"]["email"], "bo@example.com");
        assert_eq!(r["contact"]["name"], "Bo Berg", "{r}");
        assert_eq!(r["contact"]["id"], records[0]["contact"]["id"]);
    }
    let by_title = |title: &str| {
        records
            .iter()
            .find(|r| r["title"] == title)
            .and_then(|r| r["id"].as_str())
            .unwrap()
            .to_string()
    };
    let detail = app.record(&by_title("Large")).await;
    assert_eq!(
        messages(&detail)[0]["text"].as_str().unwrap().trim(),
        large.trim()
    );
    let detail = app.record(&by_title("Quote")).await;
    assert_eq!(messages(&detail)[0]["attachments"][0]["name"], "q.pdf");
    let created = events(&detail)
        .into_iter()
        .filter(|e| e["kind"] == "created")
        .count();
    assert_eq!(created, 1);
    app.stop().await;
}

/// The store's write buffer on its own, without the fallback a failing fast
/// path would take: records of one new contact, appends that touch and move
/// a record twice, and reads in between that must see what is buffered.
async fn a_transactions_buffered_writes_land_as_if_written_one_by_one(backend: Backend) {
    use emailin::domain::{Envelope, InboundMessage, Source};
    use emailin::store::{Mailbox, NewMessage, NewRecord, OutcomeRow};
    let app = spawn_app(backend).await;
    let directory = app.store.load_directory().await.expect("directory");
    let alias = directory
        .aliases
        .values()
        .find(|a| a.address.as_str() == "service@localhost")
        .expect("alias");
    let pipeline = directory.pipeline(alias.pipeline_id).expect("pipeline");
    let stage = |name: &str| {
        pipeline
            .stages
            .iter()
            .find(|s| s.name == name)
            .expect("stage")
            .id
    };
    let (open, resolved, reopened) = (stage("Open"), stage("Resolved"), stage("Reopened"));
    let from = Mailbox {
        address: "cy@example.com".into(),
        name: None,
    };
    let message = |id: &'static str, record_id: Uuid| NewMessage {
        id: Uuid::now_v7(),
        record_id,
        inbound_id: None,
        direction: "in",
        message_id: id,
        in_reply_to: None,
        references: &[],
        from: Some(&from),
        to: &[],
        cc: &[],
        reply_to: None,
        subject: Some(id),
        sent_at: None,
        text_body: Some("body"),
        html_body: None,
        reply_text: None,
        thread_rule: "new",
        thread_value: None,
        class: "normal",
        attachments: &[],
        content_hash: None,
    };
    let record = |title: &str, stage_id: Uuid| NewRecord {
        pipeline_id: pipeline.id,
        stage_id,
        owner_id: alias.owner_id,
        alias_id: alias.id,
        title: title.into(),
        tags: vec!["t".into()],
        reply_token: Uuid::now_v7().to_string(),
        related_record: None,
        follow_up_of: None,
        forwarded_by: None,
    };

    // A stored message whose outcome this transaction writes. It is for no
    // alias: should the service's processor take it first, it makes no record.
    let inbound = InboundMessage::new(
        Source::Api,
        Envelope {
            rcpt_to: vec!["nobody@nowhere.example".into()],
            ..Envelope::default()
        },
        b"Subject: d5\r\n\r\nbody\r\n".to_vec(),
    );
    let stored = app
        .store
        .insert_inbound(&[&inbound])
        .await
        .expect("inbound");

    let mut tx = app.store.begin().await.expect("begin");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let first = tx
        .create_record(
            &record("A", open),
            Some(("cy@example.com", "")),
            &message("d1@x", a),
        )
        .await
        .expect("create A");
    let second = tx
        .create_record(
            &record("B", resolved),
            Some(("cy@example.com", "Cy")),
            &message("d2@x", b),
        )
        .await
        .expect("create B");
    assert_eq!(second.number, first.number + 1);
    // A read in between sees the buffered rows.
    let on_a = tx.participants(&[a]).await.expect("read");
    assert!(
        on_a.contains(&(a, "cy@example.com".to_string())),
        "{on_a:?}"
    );
    let found = tx
        .lookup_message_ids(pipeline.id, &["d2@x"])
        .await
        .expect("lookup");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, second);
    tx.append_message(&second, &message("d3@x", b), Some(reopened))
        .await
        .expect("append");
    let moved = emailin::store::RecordState {
        stage_id: reopened,
        ..second.clone()
    };
    tx.append_message(&moved, &message("d4@x", b), None)
        .await
        .expect("append");
    tx.append_message(&moved, &message("d2@x", b), None)
        .await
        .expect("append a known id");
    // Outcomes are written with whatever is still buffered, in one write.
    tx.append_message(&moved, &message("d5@x", b), None)
        .await
        .expect("append");
    let outcome = OutcomeRow {
        status: "processed",
        outcome: "appended".into(),
        error: None,
        details: None,
    };
    tx.set_outcomes(&[(stored[0], outcome)])
        .await
        .expect("outcomes with the buffered rows");
    tx.commit().await.expect("commit");

    let records = app.records("Service").await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!(r["contact"]["name"], "Cy");
    }
    let detail = app.record(&b.to_string()).await;
    assert_eq!(detail["stage"], "Reopened");
    let ids: Vec<Value> = messages(&detail)
        .iter()
        .map(|m| m["message_id"].clone())
        .collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
    let kinds: Vec<Value> = events(&detail).iter().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, ["created", "reopened"]);
    let processed = app.inbound(Some("processed")).await;
    let row = processed
        .iter()
        .find(|r| r["id"] == stored[0].to_string())
        .expect("the inbound row is processed");
    assert_eq!(row["outcome"], "appended", "{row}");
    app.stop().await;
}

/// The intake writer runs on a thread of its own, named so that its CPU time
/// shows apart from the sessions' (`top -H`, `bench smtp --pid`); its task
/// ends once every handle is dropped, after storing what it was given.
#[tokio::test]
async fn intake_writer_runs_on_its_named_thread_and_ends_with_its_handles() {
    use emailin::domain::{Envelope, InboundMessage, Source};
    use emailin::ingest::Intake;
    let (db, settings, store) = without_service(Backend::Sqlite).await;
    let (intake, writer) = Intake::start(
        std::sync::Arc::clone(&store),
        settings.intake.clone(),
        None,
        std::sync::Arc::new(tokio::sync::Notify::new()),
        tokio_util::sync::CancellationToken::new(),
    );
    let envelope = Envelope {
        rcpt_to: vec!["service@localhost".into()],
        ..Envelope::default()
    };
    let raw = b"Subject: named\r\n\r\nx\r\n".to_vec();
    intake
        .submit(InboundMessage::new(Source::Api, envelope, raw))
        .await
        .expect("stored");
    // The OS name is set by the new thread itself before it runs any of our
    // code; once a message is stored through it, the name is there.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .expect("/proc")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect();
    assert!(
        threads.iter().any(|name| name == "emailin-intake"),
        "{threads:?}"
    );
    drop(intake);
    tokio::time::timeout(std::time::Duration::from_secs(10), writer)
        .await
        .expect("the writer ends once its handles are gone")
        .expect("writer task");
    assert_eq!(store.pending_count().await.expect("count"), 1);
    drop(store);
    db.drop_db().await;
}
