//! Mail no person wrote: auto-replies never reopen, bounces attach to the
//! record of the message they return, complaints mark the contact.

use emailin::config::UntrustedThread;

use crate::helpers::{Backend, TestApp, mail, messages, reply_code, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    auto_reply_in_a_thread_is_appended_but_never_reopens,
    auto_reply_outside_any_thread_creates_nothing,
    bounce_attaches_to_the_record_and_marks_the_address_bounced,
    complaint_marks_the_contact_and_creates_nothing,
    no_reply_sender_never_becomes_a_contact,
    stranger_naming_a_thread_gets_a_new_related_record,
    blocked_sender_is_refused_at_mail_from_and_quarantined_by_header,
    blocked_senders_added_through_the_api_apply_at_once,
);

async fn resolved_record(app: &TestApp) -> String {
    app.post(
        "Cy <cy@example.com>",
        "service@localhost",
        "VPN down",
        "v1@x",
        &[],
    )
    .await;
    let record = app.records("Service").await[0].clone();
    app.move_to_stage(&record, "Resolved").await;
    record["id"].as_str().unwrap().to_string()
}

async fn auto_reply_in_a_thread_is_appended_but_never_reopens(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = resolved_record(&app).await;
    app.post(
        "Cy <cy@example.com>",
        "service@localhost",
        "Automatic reply: VPN down",
        "v2@x",
        &[
            ("In-Reply-To", "<v1@x>"),
            ("Auto-Submitted", "auto-replied"),
        ],
    )
    .await;

    let record = app.record(&id).await;
    assert_eq!(
        record["stage"], "Resolved",
        "an out-of-office reply never reopens"
    );
    let msgs = messages(&record);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["class"], "auto-reply");
    // A person's reply still reopens.
    app.post(
        "Cy <cy@example.com>",
        "service@localhost",
        "Re: VPN down",
        "v3@x",
        &[("In-Reply-To", "<v1@x>")],
    )
    .await;
    assert_eq!(app.record(&id).await["stage"], "Reopened");
    app.stop().await;
}

async fn auto_reply_outside_any_thread_creates_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Out Of Office <ooo@example.com>",
        "sales@localhost",
        "Away",
        "ooo@x",
        &[("X-Autoreply", "yes")],
    )
    .await;
    assert!(app.records("Sales").await.is_empty());
    assert_eq!(app.inbound(None).await[0]["outcome"], "ignored: auto-reply");
    assert!(
        app.contact("ooo@example.com").await.is_none(),
        "no contact for an auto-responder"
    );
    app.stop().await;
}

async fn bounce_attaches_to_the_record_and_marks_the_address_bounced(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Gone <gone@customer.example>",
        "sales@localhost",
        "Quote",
        "q1@x",
        &[],
    )
    .await;
    let id = app.records("Sales").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let bounce = "From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nTo: sales@localhost\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn1@mx.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nI'm sorry.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; gone@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
--b\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: sales@localhost\r\nTo: gone@customer.example\r\n\
Message-ID: <q1@x>\r\nSubject: Quote\r\n\r\n--b--\r\n";
    app.deliver("", &["sales@localhost"], bounce.as_bytes())
        .await;

    assert_eq!(
        app.records("Sales").await.len(),
        1,
        "a bounce never creates a record"
    );
    let record = app.record(&id).await;
    let msgs = messages(&record);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["class"], "bounce");
    let contact = app.contact("gone@customer.example").await.expect("contact");
    assert_eq!(contact["bounce_status"], "5.1.1");
    assert!(contact["bounced_at"].is_string());
    assert!(
        app.contact("mailer-daemon@mx.example").await.is_none(),
        "the daemon never becomes a contact"
    );
    app.stop().await;
}

async fn complaint_marks_the_contact_and_creates_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Hello",
        "h1@x",
        &[],
    )
    .await;
    let arf = "From: abuse@isp.example\r\nTo: sales@localhost\r\nSubject: Abuse report\r\nMessage-ID: <arf1@isp.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\
Original-Rcpt-To: ann@example.com\r\n\r\n--b--\r\n";
    app.deliver("abuse@isp.example", &["sales@localhost"], arf.as_bytes())
        .await;
    assert_eq!(app.records("Sales").await.len(), 1);
    assert_eq!(app.inbound(None).await[0]["outcome"], "ignored: complaint");
    let contact = app.contact("ann@example.com").await.expect("contact");
    assert!(contact["complained_at"].is_string(), "{contact}");
    app.stop().await;
}

async fn no_reply_sender_never_becomes_a_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Shop <no-reply@shop.example>",
        "sales@localhost",
        "Your order",
        "o1@x",
        &[],
    )
    .await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1);
    assert!(records[0]["contact"].is_null());
    app.stop().await;
}

async fn stranger_naming_a_thread_gets_a_new_related_record(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "My invoice",
        "inv1@x",
        &[],
    )
    .await;
    let original = app.records("Service").await[0].clone();
    let number = original["number"].as_i64().unwrap();

    // A stranger guesses the subject tag and quotes the Message-ID.
    let subject = format!("Re: My invoice [#{number}]");
    app.post(
        "Mallory <mallory@evil.example>",
        "service@localhost",
        &subject,
        "evil1@x",
        &[("In-Reply-To", "<inv1@x>")],
    )
    .await;
    // Someone on the thread (Cc'd by Ann) may join it.
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "Re: My invoice",
        "inv2@x",
        &[("In-Reply-To", "<inv1@x>"), ("Cc", "Bea <bea@example.com>")],
    )
    .await;
    app.post(
        "Bea <bea@example.com>",
        "service@localhost",
        "Re: My invoice",
        "inv3@x",
        &[("In-Reply-To", "<inv2@x>")],
    )
    .await;
    // An address is the same participant whatever its letter case.
    app.post(
        "Bea <Bea@EXAMPLE.com>",
        "service@localhost",
        "Re: My invoice",
        "inv4@x",
        &[("In-Reply-To", "<inv3@x>")],
    )
    .await;

    let records = app.records("Service").await;
    assert_eq!(records.len(), 2);
    let stranger = records
        .iter()
        .find(|r| r["contact"]["email"] == "mallory@evil.example")
        .expect("own record");
    assert_eq!(stranger["related_record_id"], original["id"]);
    let detail = app.record(stranger["id"].as_str().unwrap()).await;
    assert_eq!(messages(&detail)[0]["thread"]["rule"], "related");
    let thread = app.record(original["id"].as_str().unwrap()).await;
    assert_eq!(
        messages(&thread).len(),
        4,
        "Ann and Bea joined, Mallory did not"
    );
    app.stop().await;

    // Configured to merge, the stranger joins the thread.
    let app = spawn_app_with(backend, |s| {
        s.processing.untrusted_thread = UntrustedThread::Merge
    })
    .await;
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "My invoice",
        "inv1@x",
        &[],
    )
    .await;
    app.post(
        "Mallory <mallory@evil.example>",
        "service@localhost",
        "Re",
        "evil1@x",
        &[("In-Reply-To", "<inv1@x>")],
    )
    .await;
    assert_eq!(app.records("Service").await.len(), 1);
    app.stop().await;
}

async fn blocked_sender_is_refused_at_mail_from_and_quarantined_by_header(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.blocked_senders = vec!["spam.example".into(), "bad@ok.example".into()]
    })
    .await;
    let raw = mail(
        "x@spam.example",
        "sales@localhost",
        "Buy",
        "spam1@x",
        &[],
        "x",
    );
    let err = app
        .send("x@mx.spam.example", &["sales@localhost"], &raw)
        .await
        .expect_err("refused");
    assert_eq!(reply_code(&err), 550);
    assert!(app.inbound(None).await.is_empty());

    // An innocent envelope with a blocked From header: stored, held.
    let raw = mail(
        "Bad <bad@ok.example>",
        "sales@localhost",
        "Hello",
        "bad1@x",
        &[],
        "x",
    );
    app.deliver("relay@ok.example", &["sales@localhost"], &raw)
        .await;
    let held = app.inbound(Some("quarantined")).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["outcome"], "quarantined: blocked");
    assert!(app.records("Sales").await.is_empty());

    // An operator releases it: processed normally, once.
    let id = held[0]["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .post_json(&format!("/api/v1/inbound/{id}/release"))
        .await;
    assert_eq!(status, 202);
    app.wait_idle().await;
    assert_eq!(app.records("Sales").await.len(), 1);
    let (status, body) = app
        .post_json(&format!("/api/v1/inbound/{id}/release"))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    // Another held message is dropped; its raw bytes stay.
    let raw = mail(
        "Bad <bad@ok.example>",
        "sales@localhost",
        "Again",
        "bad2@x",
        &[],
        "x",
    );
    app.deliver("relay@ok.example", &["sales@localhost"], &raw)
        .await;
    let id = app.inbound(Some("quarantined")).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = app.delete(&format!("/api/v1/inbound/{id}")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("dropped")));
    let (status, raw) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&raw).contains("Subject: Again"));
    let (status, _) = app
        .delete(&format!("/api/v1/inbound/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
}

async fn blocked_senders_added_through_the_api_apply_at_once(backend: Backend) {
    use reqwest::Method;
    use serde_json::json;
    let app = spawn_app_with(backend, |s| {
        s.blocked_senders = vec!["Config.example".into()]
    })
    .await;
    let send = |from: &'static str| {
        let raw = mail(
            from,
            "sales@localhost",
            "Hi",
            &format!("{from}-{}", uuid::Uuid::new_v4()),
            &[],
            "x",
        );
        let app = &app;
        async move { app.send(from, &["sales@localhost"], &raw).await }
    };
    assert!(send("ann@spam.test").await.is_ok(), "not blocked yet");
    app.wait_idle().await;

    let (status, added) = app
        .send_json(
            Method::POST,
            "/api/v1/blocked-senders",
            &app.admin_token,
            json!({"entry": "@Spam.test"}),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(
        (added["entry"].as_str(), added["source"].as_str()),
        (Some("spam.test"), Some("api"))
    );
    let err = send("ann@spam.test").await.expect_err("blocked at once");
    assert_eq!(reply_code(&err), 550);
    let err = send("bob@mx.spam.test").await.expect_err("subdomains too");
    assert_eq!(reply_code(&err), 550);

    // A blocked From behind an innocent envelope is held.
    let raw = mail(
        "Ann <ann@spam.test>",
        "sales@localhost",
        "Via relay",
        "relayed@x",
        &[],
        "x",
    );
    app.deliver("relay@ok.example", &["sales@localhost"], &raw)
        .await;
    assert_eq!(
        app.inbound(Some("quarantined")).await[0]["outcome"],
        "quarantined: blocked"
    );

    let (_, listed) = app.get("/api/v1/blocked-senders").await;
    let entries: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["entry"].as_str().unwrap(), b["source"].as_str().unwrap()))
        .collect();
    assert_eq!(
        entries,
        [("config.example", "config"), ("spam.test", "api")]
    );
    for (body, want) in [
        (json!({"entry": "spam.test"}), 409),
        (json!({"entry": "config.example"}), 409),
        (json!({"entry": "not a domain"}), 422),
    ] {
        let (status, answer) = app
            .send_json(
                Method::POST,
                "/api/v1/blocked-senders",
                &app.admin_token,
                body.clone(),
            )
            .await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let (status, _) = app.delete("/api/v1/blocked-senders/config.example").await;
    assert_eq!(status, 409, "config entries are changed in the file");

    let (status, _) = app.delete("/api/v1/blocked-senders/spam.test").await;
    assert_eq!(status, 204);
    assert!(send("ann@spam.test").await.is_ok(), "unblocked at once");
    let (status, _) = app.delete("/api/v1/blocked-senders/spam.test").await;
    assert_eq!(status, 404);
    app.stop().await;
}
