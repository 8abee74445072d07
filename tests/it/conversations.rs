//! Conversations people can read: the new part of each reply, subjects
//! that follow the conversation, and attachments served once stored once.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, TestDb, events, mail, messages, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::replies::{captured, eventually, spawn_relay, spawn_sender};

on_both_backends!(
    a_reply_keeps_its_new_part_apart_from_the_quoted_history,
    a_reply_answers_the_latest_subject,
    attachments_are_served_exactly_and_stored_once,
    a_reply_after_the_follow_up_window_starts_a_related_record,
    a_customer_mail_forwarded_by_a_team_member_belongs_to_the_customer,
);

const CUSTOMER: &str = "ann@customer.example";

async fn first_record(app: &TestApp, pipeline: &str) -> Value {
    let records = app.records(pipeline).await;
    app.record(records[0]["id"].as_str().expect("id")).await
}

async fn a_reply_keeps_its_new_part_apart_from_the_quoted_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = mail(
        &format!("山田 <{CUSTOMER}>"),
        "sales@localhost",
        "見積のお願い",
        "q1@customer.example",
        &[],
        "椅子40脚の見積をお願いします。",
    );
    app.deliver(CUSTOMER, &["sales@localhost"], &first).await;
    let quoted = "火曜日で大丈夫です。\n\n2026年12月6日(日) 10:00 営業 <sales@localhost>:\n> 納期はいつがよろしいですか。\n>\n> 椅子40脚の見積をお願いします。\n";
    let reply = mail(
        &format!("山田 <{CUSTOMER}>"),
        "sales@localhost",
        "Re: 見積のお願い",
        "q2@customer.example",
        &[("In-Reply-To", "<q1@customer.example>")],
        quoted,
    );
    app.deliver(CUSTOMER, &["sales@localhost"], &reply).await;
    let record = first_record(&app, "Sales").await;
    let m = messages(&record);
    assert_eq!(m.len(), 2, "{record}");
    assert_eq!(m[0]["reply_text"], "椅子40脚の見積をお願いします。");
    assert_eq!(m[1]["reply_text"], "火曜日で大丈夫です。");
    let full = m[1]["text"].as_str().expect("text");
    assert!(full.contains("> 納期はいつがよろしいですか。"), "{full}");
    app.stop().await;
}

async fn a_reply_answers_the_latest_subject(backend: Backend) {
    let relay = spawn_relay(0, &[CUSTOMER]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    let first = mail(
        CUSTOMER,
        "service@localhost",
        "Printer",
        "p1@customer.example",
        &[],
        "It jams.",
    );
    app.deliver(CUSTOMER, &["service@localhost"], &first).await;
    let later = mail(
        CUSTOMER,
        "service@localhost",
        "Now the scanner too",
        "p2@customer.example",
        &[("In-Reply-To", "<p1@customer.example>")],
        "And the scanner.",
    );
    app.deliver(CUSTOMER, &["service@localhost"], &later).await;
    let record = first_record(&app, "Service").await;
    assert_eq!(messages(&record).len(), 2, "{record}");
    let number = record["number"].as_i64().expect("number");
    let (status, body) = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/records/{}/replies",
                record["id"].as_str().expect("id")
            ),
            &app.admin_token,
            json!({"text": "We will bring both."}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let raw = eventually("the reply at the relay", || async {
        captured(&relay).await.into_iter().next()
    })
    .await;
    let wire = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parsable");
    assert_eq!(
        wire.subject(),
        Some(format!("Re: Now the scanner too [#{number}]").as_str())
    );
    // The record keeps the title it was opened with.
    assert_eq!(
        app.record(record["id"].as_str().expect("id")).await["title"],
        "Printer"
    );
    app.stop().await;
    relay.stop().await;
}

/// A multipart/related HTML message with an inline logo and a PDF with a
/// Japanese name (RFC 2231), the PDF attached twice.
fn with_attachments(message_id: &str, pdf: &[u8], logo: &[u8]) -> Vec<u8> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "From: {CUSTOMER}\r\nTo: sales@localhost\r\nSubject: Drawings\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: multipart/related; boundary=\"rel\"\r\n\r\n\
         --rel\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>See the logo: <img src=\"cid:logo.1@customer.example\"></p>\r\n\
         --rel\r\nContent-Type: image/png\r\nContent-ID: <logo.1@customer.example>\r\n\
         Content-Disposition: inline; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{logo}\r\n\
         --rel--\r\n\
         --outer\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename*=UTF-8''%E5%9B%B3%E9%9D%A2.pdf\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n\
         --outer\r\nContent-Type: application/pdf\r\n\
         Content-Disposition: attachment; filename=\"copy.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n\
         --outer--\r\n",
        logo = b64(logo),
        pdf = b64(pdf),
    )
    .into_bytes()
}

async fn attachments_are_served_exactly_and_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let pdf: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    let logo: Vec<u8> = b"\x89PNG\r\n\x1a\n fake but exact bytes".to_vec();
    app.deliver(
        CUSTOMER,
        &["sales@localhost"],
        &with_attachments("d1@customer.example", &pdf, &logo),
    )
    .await;
    // The same files on a second message.
    app.deliver(
        CUSTOMER,
        &["sales@localhost"],
        &with_attachments("d2@customer.example", &pdf, &logo),
    )
    .await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 2);
    let record = app.record(records[1]["id"].as_str().expect("id")).await;
    let m = &messages(&record)[0];
    let attachments = m["attachments"].as_array().expect("attachments");
    assert_eq!(attachments.len(), 3, "{m}");
    let logo_view = attachments
        .iter()
        .find(|a| a["content_type"] == "image/png")
        .expect("logo");
    assert_eq!(logo_view["content_id"], "logo.1@customer.example");
    assert_eq!(logo_view["inline"], true);
    let logo_url = logo_view["url"].as_str().expect("url");
    let html = m["html"].as_str().expect("html");
    assert!(html.contains(&format!("src=\"{logo_url}\"")), "{html}");
    assert!(!html.contains("cid:"), "{html}");

    let japanese = attachments
        .iter()
        .find(|a| a["name"] == "図面.pdf")
        .expect("the named pdf");
    let resp = app.request(japanese["url"].as_str().expect("url")).await;
    assert_eq!(resp.status(), 200);
    let headers = resp.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"__.pdf\"; filename*=UTF-8''%E5%9B%B3%E9%9D%A2.pdf"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), pdf.as_slice());
    let resp = app.request(logo_url).await;
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("inline; filename=\"logo.png\"")
    );
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), logo.as_slice());
    let (status, _) = app
        .get(&format!("/api/v1/attachments/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);

    // Six attachment rows, two stored contents.
    let counts = crate::helpers::count_rows(
        &app.db,
        &[
            "SELECT COUNT(*) FROM attachments",
            "SELECT COUNT(*) FROM attachment_blobs",
        ],
    )
    .await;
    assert_eq!(counts, vec![6, 2]);

    // The record page links the files and frames the HTML, whose inline
    // image is served by the UI's own route, under a policy with no script.
    crate::web::user(&app, "ana@acme.test", "Ana", emailin::store::Role::Member).await;
    let mut web = crate::web::Web::new(&app);
    let logo_id = logo_view["id"].as_str().expect("id");
    let (status, _, location) = web.get(&format!("/attachments/{logo_id}")).await;
    assert_eq!(status.as_u16(), 303);
    assert!(location.expect("location").starts_with("/login"));
    web.login("ana@acme.test", crate::web::PASSWORD).await;
    let number = record["number"].as_i64().expect("number");
    let (_, page, _) = web.get(&format!("/records/{number}")).await;
    let message_id = m["id"].as_str().expect("id");
    assert!(
        page.contains(&format!("src=\"/messages/{message_id}/html\"")),
        "{page}"
    );
    assert!(page.contains(&format!(
        "href=\"/attachments/{}\"",
        japanese["id"].as_str().expect("id")
    )));
    let resp = web.get_raw(&format!("/messages/{message_id}/html")).await;
    let policy = resp.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(
        policy.contains("sandbox") && policy.contains("default-src 'none'"),
        "{policy}"
    );
    let body = resp.text().await.expect("body");
    assert!(
        body.contains(&format!("src=\"/attachments/{logo_id}\"")),
        "{body}"
    );
    let resp = web.get_raw(&format!("/attachments/{logo_id}")).await;
    assert_eq!(resp.bytes().await.expect("bytes").as_ref(), logo.as_slice());
    app.stop().await;
}

/// Moves a record's time in its stage `days` back, as if that long had
/// passed since it closed.
async fn closed_days_ago(db: &TestDb, record: &str, days: i64) {
    let id = uuid::Uuid::parse_str(record).expect("uuid");
    let sql = "UPDATE records SET stage_changed_at = $1 WHERE id = $2";
    crate::helpers::backdate(db, sql, days, Some(id)).await;
}

async fn a_reply_after_the_follow_up_window_starts_a_related_record(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        let service = s
            .aliases
            .iter_mut()
            .find(|a| a.pipeline == "Service")
            .expect("alias");
        service.follow_up_days = Some(30);
    })
    .await;
    let (status, alias) = app.get("/api/v1/aliases/service@localhost").await;
    assert_eq!(
        (status, &alias["follow_up_days"]),
        (200, &json!(30)),
        "{alias}"
    );
    // The customer writes, as a reply to `parent` when given.
    let write = async |id: &str, parent: Option<&str>| {
        let parent = parent.map(|p| format!("<{p}>"));
        let extra: Vec<(&str, &str)> = parent.iter().map(|p| ("In-Reply-To", p.as_str())).collect();
        let raw = mail(
            CUSTOMER,
            "service@localhost",
            "Boiler",
            id,
            &extra,
            "It is cold.",
        );
        app.deliver(CUSTOMER, &["service@localhost"], &raw).await;
    };
    write("b1@customer.example", None).await;
    let old = first_record(&app, "Service").await;
    let old_id = old["id"].as_str().expect("id").to_string();
    app.move_to_stage(&old, "Resolved").await;

    // Within the window: the reply reopens it, as before.
    closed_days_ago(&app.db, &old_id, 29).await;
    write("b2@customer.example", Some("b1@customer.example")).await;
    assert_eq!(app.record(&old_id).await["stage"], "Reopened");
    assert_eq!(app.records("Service").await.len(), 1);

    // Closed 31 days ago: a new record, related, and the old one stays closed.
    app.move_to_stage(&old, "Resolved").await;
    closed_days_ago(&app.db, &old_id, 31).await;
    write("b3@customer.example", Some("b2@customer.example")).await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 2);
    let old = app.record(&old_id).await;
    assert_eq!(old["stage"], "Resolved");
    assert_eq!(messages(&old).len(), 2);
    let new = app.record(records[0]["id"].as_str().expect("id")).await;
    assert_eq!(new["related_record_id"], old_id.as_str());
    assert_eq!(new["stage"], "Open");
    let m = messages(&new);
    assert_eq!(m[0]["thread"]["rule"], "follow-up", "{new}");
    let kinds = |r: &Value| {
        events(r)
            .iter()
            .map(|e| (e["kind"].clone(), e["detail"].clone()))
            .collect::<Vec<_>>()
    };
    assert!(
        kinds(&old).contains(&(json!("followed_up"), json!(format!("#{}", new["number"])))),
        "{old}"
    );
    assert!(
        kinds(&new).contains(&(json!("follow_up_of"), json!(format!("#{}", old["number"])))),
        "{new}"
    );
    app.stop().await;
}

async fn a_customer_mail_forwarded_by_a_team_member_belongs_to_the_customer(backend: Backend) {
    let app = spawn_app(backend).await;
    crate::web::user(&app, "bob@acme.test", "Bob", emailin::store::Role::Member).await;
    let forward = "Can someone quote this?\n\n-------- 転送メッセージ --------\n\
        差出人: 山田 太郎 <yamada@customer.jp>\n送信日時: 2026年12月6日 10:00\n\
        宛先: bob@acme.test\n件名: 見積\n\n椅子40脚の見積をお願いします。";
    let raw = mail(
        "Bob <bob@acme.test>",
        "sales@localhost",
        "Fwd: 見積",
        "f1@acme.test",
        &[],
        forward,
    );
    app.deliver("bob@acme.test", &["sales@localhost"], &raw)
        .await;
    // The same forward from someone not on the team stays theirs.
    let raw = mail(
        "Zed <zed@elsewhere.example>",
        "sales@localhost",
        "Fwd: 見積",
        "f2@elsewhere.example",
        &[],
        forward,
    );
    app.deliver("zed@elsewhere.example", &["sales@localhost"], &raw)
        .await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 2);
    let by_number = |n: i64| {
        records
            .iter()
            .find(|r| r["number"] == n)
            .expect("record")
            .clone()
    };
    let first = app.record(by_number(1)["id"].as_str().expect("id")).await;
    assert_eq!(first["contact"]["email"], "yamada@customer.jp", "{first}");
    assert_eq!(first["contact"]["name"], "山田 太郎");
    let noted: Vec<Value> = events(&first)
        .into_iter()
        .filter(|e| e["kind"] == "forwarded_by")
        .collect();
    assert_eq!(noted.len(), 1, "{first}");
    assert_eq!(noted[0]["detail"], "bob@acme.test");
    assert_eq!(by_number(2)["contact"]["email"], "zed@elsewhere.example");

    // Forwarded as an attachment (message/rfc822): its sender is the contact,
    // and the original stays on the record as a file.
    let attached = "From: Bob <bob@acme.test>\r\nTo: sales@localhost\r\nSubject: FW: Broken chair\r\n\
Message-ID: <f3@acme.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
--o\r\nContent-Type: text/plain\r\n\r\nPlease take this one.\r\n--o\r\nContent-Type: message/rfc822\r\n\
Content-Disposition: attachment; filename=\"Broken chair.eml\"\r\n\r\n\
From: Carla Diaz <carla@customer.example>\r\nTo: bob@acme.test\r\nSubject: Broken chair\r\n\
Message-ID: <orig@customer.example>\r\n\r\nA leg broke.\r\n--o--\r\n";
    app.deliver("bob@acme.test", &["sales@localhost"], attached.as_bytes())
        .await;
    let records = app.records("Sales").await;
    let third = records.iter().find(|r| r["number"] == 3).expect("record 3");
    let third = app.record(third["id"].as_str().expect("id")).await;
    assert_eq!(
        third["contact"]["email"], "carla@customer.example",
        "{third}"
    );
    assert_eq!(third["contact"]["name"], "Carla Diaz");
    assert!(
        events(&third)
            .iter()
            .any(|e| e["kind"] == "forwarded_by" && e["detail"] == "bob@acme.test")
    );
    let files = &crate::helpers::messages(&third)[0]["attachments"];
    assert_eq!(files[0]["content_type"], "message/rfc822", "{files}");
    assert_eq!(files[0]["name"], "Broken chair.eml");
    app.stop().await;
}
