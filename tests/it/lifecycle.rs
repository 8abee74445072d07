//! Contacts through time: unsubscribing, erasing a contact for good, and
//! the retention window of raw bytes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, count_rows, events, messages, spawn_app_with};
use crate::on_both_backends;
use crate::replies::{eventually, spawn_relay, spawn_sender};

on_both_backends!(
    an_unsubscribed_contact_gets_replies_only_when_forced,
    erasing_a_contact_removes_their_mail_everywhere_and_keeps_the_records,
    raw_bytes_past_the_retention_window_are_removed_and_nothing_else,
    the_retention_task_removes_old_raw_bytes_in_the_background,
);

const ANN: &str = "ann@customer.example";
const BOB: &str = "bob@other.example";

async fn contact_of(app: &TestApp, email: &str) -> Value {
    app.contact(email).await.expect("the contact exists")
}

async fn reply(app: &TestApp, record: &str, body: Value) -> (u16, Value) {
    app.send_json(
        Method::POST,
        &format!("/api/v1/records/{record}/replies"),
        &app.member_token,
        body,
    )
    .await
}

async fn an_unsubscribed_contact_gets_replies_only_when_forced(backend: Backend) {
    let relay = spawn_relay(0, &[ANN]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    app.post(
        ANN,
        "service@localhost",
        "Heater",
        "h1@customer.example",
        &[],
    )
    .await;
    let record = app.records("Service").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let contact = contact_of(&app, ANN).await;
    let path = format!("/api/v1/contacts/{}", contact["id"].as_str().expect("id"));
    let (status, body) = app
        .send_json(
            Method::PATCH,
            &path,
            &app.member_token,
            json!({"unsubscribed": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["unsubscribed_at"].is_string(), "{body}");

    let (status, body) = reply(&app, &record, json!({"text": "Any news?"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("unsubscribed"),
        "{body}"
    );
    let (status, body) = reply(
        &app,
        &record,
        json!({"text": "Your part is here.", "force": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");

    let (status, body) = app
        .send_json(
            Method::PATCH,
            &path,
            &app.member_token,
            json!({"unsubscribed": false}),
        )
        .await;
    assert_eq!((status, &body["unsubscribed_at"]), (200, &Value::Null));
    let (status, _) = reply(&app, &record, json!({"text": "Thanks."})).await;
    assert_eq!(status, 202);
    eventually("both replies at the relay", || async {
        (crate::replies::captured(&relay).await.len() == 2).then_some(())
    })
    .await;
    app.stop().await;
    relay.stop().await;
}

/// A mail from `from` with a PDF (the same bytes for everyone).
fn with_pdf(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: sales@localhost\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nMy address is 1 Main St.\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"plan.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKc2FtZSBieXRlcw==\r\n--b--\r\n"
    )
    .into_bytes()
}

async fn erasing_a_contact_removes_their_mail_everywhere_and_keeps_the_records(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    app.deliver(
        ANN,
        &["sales@localhost"],
        &with_pdf(ANN, "Plan for my house", "a1@customer.example"),
    )
    .await;
    app.deliver(
        ANN,
        &["sales@localhost"],
        &with_pdf(ANN, "Second house", "a2@customer.example"),
    )
    .await;
    app.deliver(
        BOB,
        &["sales@localhost"],
        &with_pdf(BOB, "Bob's plan", "b1@other.example"),
    )
    .await;
    let ann = contact_of(&app, ANN).await;
    let ann_id = ann["id"].as_str().expect("id").to_string();
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 3);
    let ann_records: Vec<String> = records
        .iter()
        .filter(|r| r["contact"]["email"] == ANN)
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    let first = app.record(&ann_records[0]).await;
    let inbound_id = messages(&first)[0]["inbound_id"]
        .as_str()
        .expect("inbound")
        .to_string();
    let attachment_url = messages(&first)[0]["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let (status, _) = app
        .get_bytes(&format!("/api/v1/inbound/{inbound_id}/raw"))
        .await;
    assert_eq!(status, 200);

    // On the contact page: a member marks them unsubscribed but sees no
    // erasure; an admin who mistypes the address erases nothing.
    use emailin::store::Role;
    crate::web::user(&app, "mia@acme.test", "Mia", Role::Member).await;
    crate::web::user(&app, "ada@acme.test", "Ada", Role::Admin).await;
    let page = format!("/contacts/{ann_id}");
    let mut member = crate::web::Web::new(&app);
    member.login("mia@acme.test", crate::web::PASSWORD).await;
    let (status, _, _) = member
        .post(
            &page,
            &format!("{page}/unsubscribe"),
            &[("unsubscribed", "1")],
        )
        .await;
    assert_eq!(status.as_u16(), 303);
    let (_, html, _) = member.get(&page).await;
    assert!(
        html.contains("unsubscribed") && !html.contains("Erase for good"),
        "{html}"
    );
    let (status, _, _) = member
        .post(&page, &format!("{page}/erase"), &[("confirm", ANN)])
        .await;
    assert_eq!(status.as_u16(), 403);
    let mut admin = crate::web::Web::new(&app);
    admin.login("ada@acme.test", crate::web::PASSWORD).await;
    let (status, html, _) = admin
        .post(
            &page,
            &format!("{page}/erase"),
            &[("confirm", "someone@else.example")],
        )
        .await;
    assert_eq!(status.as_u16(), 422);
    assert!(html.contains("nothing was erased"), "{html}");
    assert!(app.contact(ANN).await.is_some());

    // Only an admin erases.
    let path = format!("/api/v1/contacts/{ann_id}/erase");
    let (status, _) = app
        .send_json(Method::POST, &path, &app.member_token, json!({}))
        .await;
    assert_eq!(status, 403);
    let (status, report) = app.post_json(&path).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report,
        json!({"records": 2, "messages": 2, "attachments": 2, "raw": 2})
    );

    // Records stay, anonymised, with an audit event; the mail is gone.
    for id in &ann_records {
        let record = app.record(id).await;
        assert_eq!(record["title"], "(erased)");
        let m = &messages(&record)[0];
        for field in ["text", "reply_text", "html", "subject"] {
            assert!(m[field].is_null(), "{field}: {m}");
        }
        assert!(m["from"].is_null() && m["attachments"] == json!([]), "{m}");
        let audit: Vec<Value> = events(&record)
            .into_iter()
            .filter(|e| e["kind"] == "contact_erased")
            .collect();
        assert_eq!(audit.len(), 1, "{record}");
        assert!(
            audit[0]["actor"]
                .as_str()
                .expect("actor")
                .starts_with("test-"),
            "{audit:?}"
        );
    }
    let (status, body) = app
        .get_bytes(&format!("/api/v1/inbound/{inbound_id}/raw"))
        .await;
    assert_eq!(status, 410, "{}", String::from_utf8_lossy(&body));
    let (status, _) = app.get(&attachment_url).await;
    assert_eq!(status, 404);
    let erased = app.get(&format!("/api/v1/contacts/{ann_id}")).await.1;
    let email = erased["email"].as_str().expect("email");
    assert!(
        email.ends_with("@erased.invalid") && erased["name"] == "",
        "{erased}"
    );
    assert!(erased["erased_at"].is_string());
    assert!(app.contact(ANN).await.is_none(), "the address is nowhere");

    // Bob's mail, with the same PDF, is untouched; the bytes stay for him.
    let bob = records
        .iter()
        .find(|r| r["contact"]["email"] == BOB)
        .expect("bob");
    let bob = app.record(bob["id"].as_str().expect("id")).await;
    assert_eq!(bob["title"], "Bob's plan");
    let url = messages(&bob)[0]["attachments"][0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    let (status, bytes) = app.get_bytes(&url).await;
    assert_eq!((status, bytes.starts_with(b"%PDF")), (200, true));
    assert_eq!(
        count_rows(
            &app.db,
            &[
                "SELECT COUNT(*) FROM attachments",
                "SELECT COUNT(*) FROM attachment_blobs"
            ]
        )
        .await,
        vec![1, 1]
    );

    // It cannot be done twice, or undone.
    let (status, _) = app.post_json(&path).await;
    assert_eq!(status, 409);
    app.stop().await;
}

/// Moves every stored message's arrival `days` back.
async fn received_days_ago(db: &TestDb, days: i64) {
    crate::helpers::backdate(db, "UPDATE inbound SET received_at = $1", days, None).await;
}

async fn raw_bytes_past_the_retention_window_are_removed_and_nothing_else(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.blocked_senders = vec!["spam.example".into()];
    })
    .await;
    for i in 0..3 {
        app.post(
            ANN,
            "sales@localhost",
            &format!("Order {i}"),
            &format!("o{i}@customer.example"),
            &[],
        )
        .await;
    }
    // A blocked From behind an unblocked envelope sender is quarantined.
    let spam = crate::helpers::mail(
        "x@spam.example",
        "sales@localhost",
        "Spam",
        "s1@spam.example",
        &[],
        "Buy.",
    );
    app.deliver("relay@fine.example", &["sales@localhost"], &spam)
        .await;
    assert_eq!(app.inbound(Some("quarantined")).await.len(), 1);
    received_days_ago(&app.db, 40).await;
    // One more, recent.
    app.post(
        ANN,
        "sales@localhost",
        "Order 3",
        "o3@customer.example",
        &[],
    )
    .await;

    let mut settings = crate::helpers::test_settings(&app.db);
    settings.retention.raw_days = None;
    let mut out = Vec::new();
    let err = emailin::cli::retention_run(app.store.as_ref(), &settings.retention, &mut out).await;
    assert!(err.is_err(), "no window, nothing to do");
    settings.retention.raw_days = Some(30);
    settings.retention.batch = 2;
    emailin::cli::retention_run(app.store.as_ref(), &settings.retention, &mut out)
        .await
        .expect("retention run");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("… 2 messages"),
        "a progress line per batch: {out}"
    );
    assert!(out.contains("removed the raw bytes of 3 messages"), "{out}");

    for row in app.inbound(None).await {
        let id = row["id"].as_str().expect("id");
        let (status, _) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
        let old = row["status"] == "processed" && row["raw_removed"].is_object();
        match (row["status"].as_str(), old) {
            (Some("processed"), true) => {
                assert_eq!(status, 410);
                assert_eq!(row["raw_removed"]["why"], "retention");
            }
            // The recent one, and the quarantined one (it has no record).
            _ => assert_eq!(status, 200, "{row}"),
        }
    }
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 4, "the records stay");
    let record = app.record(records[3]["id"].as_str().expect("id")).await;
    assert_eq!(messages(&record)[0]["subject"], "Order 0");
    assert_eq!(
        count_rows(&app.db, &["SELECT COUNT(*) FROM inbound_raw"]).await,
        vec![2]
    );
    app.stop().await;
}

async fn the_retention_task_removes_old_raw_bytes_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.retention.raw_days = Some(30);
        s.retention.interval_secs = 1;
    })
    .await;
    app.post(
        ANN,
        "sales@localhost",
        "Old order",
        "old@customer.example",
        &[],
    )
    .await;
    received_days_ago(&app.db, 31).await;
    let id = app.inbound(None).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    eventually("the raw bytes removed", || async {
        let (status, _) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
        (status == 410).then_some(())
    })
    .await;
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
}
