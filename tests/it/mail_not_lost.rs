//! Mail real senders write that the service once refused, dropped or
//! misread: each case over a real SMTP session, on both backends.

use serde_json::Value;

use crate::helpers::{Backend, TestApp, mail, messages, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::smtp::Raw;
use emailin::config::AuthPolicy;

on_both_backends!(
    legacy_carrier_address_is_accepted_and_kept_as_written,
    list_and_bulk_posts_are_records_not_auto_replies,
    blank_lines_before_the_headers_and_bare_cr_still_parse,
    what_is_not_mail_is_failed_listed_and_replayable,
    reused_message_id_with_new_content_is_a_new_message,
    complaint_with_a_bracketed_original_rcpt_to_marks_the_contact,
    shift_jis_body_without_a_charset_is_read,
    every_in_reply_to_id_is_looked_up,
    group_relay_takes_the_original_sender_as_contact,
    html_after_text_in_mixed_is_kept,
    ignored_mail_is_readable_and_processed_mail_links_its_record,
    ambiguous_from_never_joins_a_thread_and_is_quarantined_under_enforce,
    nul_bytes_and_very_long_message_ids_store_alike,
    plain_text_bounce_quoting_the_original_joins_its_record_with_each_result,
    mail_over_the_mime_shape_limits_is_rejected_with_its_header_and_others_flow,
);

/// The newest inbound row, in full (`GET /api/v1/inbound/{id}`).
async fn newest_inbound(app: &TestApp) -> Value {
    let id = app.inbound(None).await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (status, body) = app.get(&format!("/api/v1/inbound/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn legacy_carrier_address_is_accepted_and_kept_as_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "taro..yamada.@docomo.ne.jp";
    let raw = mail(
        &format!("Taro <{from}>"),
        "sales@localhost",
        "見積もり",
        "docomo1@x",
        &[("Reply-To", &format!("<{from}>"))],
        "よろしくお願いします",
    );
    app.deliver(from, &["sales@localhost"], &raw).await;

    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1, "the carrier's customer has a record");
    assert_eq!(records[0]["contact"]["email"], from, "stored as written");
    assert_eq!(app.inbound(None).await[0]["mail_from"], from);
    app.stop().await;
}

async fn list_and_bulk_posts_are_records_not_auto_replies(backend: Backend) {
    let app = spawn_app(backend).await;
    // A person's post through a Mailman list.
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "Printer on floor 3",
        "list1@x",
        &[
            ("List-Id", "<users.lists.example.com>"),
            ("Precedence", "list"),
        ],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 1, "a list post is a record");
    let first = app.record(records[0]["id"].as_str().unwrap()).await;
    assert_eq!(messages(&first)[0]["class"], "list");

    // `Precedence: bulk` alone is bulk mail, not an auto-reply.
    app.post(
        "Newsletter <news@vendor.example>",
        "service@localhost",
        "Release notes",
        "bulk1@x",
        &[("Precedence", "bulk")],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 2, "bulk mail is a record too");
    let bulk = app.record(records[0]["id"].as_str().unwrap()).await;
    assert_eq!(messages(&bulk)[0]["class"], "bulk");

    // A list reply joins its thread but never reopens a closed record.
    app.move_to_stage(&records[1], "Resolved").await;
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "Re: Printer on floor 3",
        "list2@x",
        &[
            ("In-Reply-To", "<list1@x>"),
            ("List-Id", "<users.lists.example.com>"),
            ("Precedence", "junk"),
        ],
    )
    .await;
    let thread = app.record(records[1]["id"].as_str().unwrap()).await;
    assert_eq!(messages(&thread).len(), 2, "joined its thread");
    assert_eq!(messages(&thread)[1]["class"], "list");
    assert_eq!(thread["stage"], "Resolved", "list mail never reopens");
    app.stop().await;
}

async fn blank_lines_before_the_headers_and_bare_cr_still_parse(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = b"\r\n \r\nFrom: Ann <ann@example.com>\r\nTo: sales@localhost\r\nSubject: Leading blank\r\nMessage-ID: <blank1@x>\r\n\r\nHello\r\n";
    app.deliver("ann@example.com", &["sales@localhost"], raw)
        .await;
    // Old gateways end lines with a bare CR.
    let cr = b"From: Bo <bo@example.com>\rTo: sales@localhost\rSubject: Bare CR\rMessage-ID: <cr1@x>\r\rBody line\r\r\n";
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<bo@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n")
        .await;
    for code in [250, 250, 354] {
        assert_eq!(c.reply().await.0, code);
    }
    c.send(cr).await;
    c.send(b".\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    app.wait_idle().await;

    let records = app.records("Sales").await;
    let titles: Vec<&str> = records.iter().filter_map(|r| r["title"].as_str()).collect();
    assert_eq!(titles, ["Bare CR", "Leading blank"]);
    assert_eq!(records[0]["contact"]["email"], "bo@example.com");
    let detail = app.record(records[0]["id"].as_str().unwrap()).await;
    assert!(
        messages(&detail)[0]["text"]
            .as_str()
            .unwrap()
            .contains("Body line")
    );
    // The stored bytes stay exactly as received.
    let id = app.inbound(None).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, bytes) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, cr);
    app.stop().await;
}

async fn what_is_not_mail_is_failed_listed_and_replayable(backend: Backend) {
    let app = spawn_app(backend).await;
    app.deliver(
        "x@example.com",
        &["sales@localhost"],
        b"\x00\x01 not a message at all\r\n",
    )
    .await;
    let failed = app.inbound(Some("failed")).await;
    assert_eq!(failed.len(), 1, "listed as failed, not ignored");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("unparseable"),
        "{}",
        failed[0]
    );
    // `emailin replay` (failed by default) takes it up again.
    let reset = app
        .store
        .reset_for_replay(Some("failed"), None)
        .await
        .expect("replay");
    assert_eq!(reset, 1);
    app.wait_idle().await;
    assert_eq!(app.inbound(Some("failed")).await.len(), 1);
    app.stop().await;
}

async fn reused_message_id_with_new_content_is_a_new_message(backend: Backend) {
    let app = spawn_app(backend).await;
    let first = mail(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Order 1",
        "reused@client",
        &[],
        "first order",
    );
    app.deliver("ann@example.com", &["sales@localhost"], &first)
        .await;
    // The same message again (a retry) is a duplicate.
    app.deliver("ann@example.com", &["sales@localhost"], &first)
        .await;
    assert_eq!(app.inbound(None).await[0]["outcome"], "ignored: duplicate");

    // A broken client reuses the id for a different message.
    let second = mail(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Order 2",
        "reused@client",
        &[],
        "second order, nothing to do with the first",
    );
    app.deliver("ann@example.com", &["sales@localhost"], &second)
        .await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 2, "a new message, in a record of its own");
    assert_eq!(records[0]["title"], "Order 2");

    // Replies naming the id still reach the message it first named.
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Re: Order 1",
        "reply1@client",
        &[("In-Reply-To", "<reused@client>")],
    )
    .await;
    assert_eq!(app.records("Sales").await.len(), 2);
    let order1 = app.record(records[1]["id"].as_str().unwrap()).await;
    assert_eq!(messages(&order1).len(), 2);
    app.stop().await;
}

async fn complaint_with_a_bracketed_original_rcpt_to_marks_the_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    for (who, id) in [("ann@example.com", "c1@x"), ("bo@example.com", "c2@x")] {
        app.post(who, "sales@localhost", "Hello", id, &[]).await;
    }
    // No `rfc822;` type, angle brackets: as several feedback loops write it.
    let arf = |rcpt_field: &str, returned_to: &str, id: &str| {
        format!(
            "From: abuse@isp.example\r\nTo: sales@localhost\r\nSubject: Abuse report\r\nMessage-ID: <{id}@isp.example>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n{rcpt_field}\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: sales@localhost\r\nTo: {returned_to}\r\nSubject: Re: Hello\r\n\r\nx\r\n--b--\r\n"
        )
    };
    let bracketed = arf(
        "Original-Rcpt-To: <ann@example.com>\r\n",
        "someone@else.example",
        "arf1",
    );
    app.deliver(
        "abuse@isp.example",
        &["sales@localhost"],
        bracketed.as_bytes(),
    )
    .await;
    // No address field at all: the returned message's To names the complainant.
    let returned_only = arf("", "Bo <bo@example.com>", "arf2");
    app.deliver(
        "abuse@isp.example",
        &["sales@localhost"],
        returned_only.as_bytes(),
    )
    .await;

    for who in ["ann@example.com", "bo@example.com"] {
        let contact = app.contact(who).await.expect("contact");
        assert!(contact["complained_at"].is_string(), "{contact}");
    }
    assert!(
        app.contact("someone@else.example").await.is_none(),
        "the stated recipient wins over the returned To"
    );
    app.stop().await;
}

async fn shift_jis_body_without_a_charset_is_read(backend: Backend) {
    let app = spawn_app(backend).await;
    let text = "お世話になっております。先日お送りいただいた見積書について、数量を変更したいのでご確認をお願いいたします。";
    let (body, _, _) = encoding_rs::SHIFT_JIS.encode(text);
    // No MIME headers at all, as older Japanese clients send.
    let mut raw = b"From: yamada@example.jp\r\nTo: sales@localhost\r\nSubject: quote\r\nMessage-ID: <sjis1@x>\r\n\r\n".to_vec();
    raw.extend_from_slice(&body);
    raw.extend_from_slice(b"\r\n");
    app.deliver("yamada@example.jp", &["sales@localhost"], &raw)
        .await;

    let record = app.records("Sales").await[0].clone();
    let detail = app.record(record["id"].as_str().unwrap()).await;
    let read = messages(&detail)[0]["text"].as_str().unwrap().to_string();
    assert!(read.contains("見積書"), "{read}");
    assert!(!read.contains('\u{FFFD}'), "{read}");
    let inbound = newest_inbound(&app).await;
    assert_eq!(inbound["details"]["detected_charset"], "Shift_JIS");
    app.stop().await;
}

async fn every_in_reply_to_id_is_looked_up(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "VPN",
        "first@x",
        &[],
    )
    .await;
    // Several ids; the last one is unknown to us.
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "Re: VPN",
        "second@x",
        &[("In-Reply-To", "<first@x> <elsewhere@other.example>")],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 1, "threaded by the first id");
    let detail = app.record(records[0]["id"].as_str().unwrap()).await;
    assert_eq!(messages(&detail).len(), 2);
    app.stop().await;
}

async fn group_relay_takes_the_original_sender_as_contact(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = mail(
        "'Ann Lee' via Support <support@googlegroups.com>",
        "service@localhost",
        "Cannot log in",
        "grp1@x",
        &[
            ("Sender", "support@googlegroups.com"),
            ("X-Original-Sender", "ann@example.com"),
            ("List-Id", "<support.googlegroups.com>"),
            ("Precedence", "list"),
        ],
        "Hello",
    );
    app.deliver(
        "support+bncBC@googlegroups.com",
        &["service@localhost"],
        &raw,
    )
    .await;
    let record = app.records("Service").await[0].clone();
    assert_eq!(record["contact"]["email"], "ann@example.com");
    assert_eq!(record["contact"]["name"], "Ann Lee");
    assert!(app.contact("support@googlegroups.com").await.is_none());
    app.stop().await;
}

async fn html_after_text_in_mixed_is_kept(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = "From: ann@example.com\r\nTo: sales@localhost\r\nSubject: Mixed\r\nMessage-ID: <mixed1@x>\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain part\r\n\
--m\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>HTML part</p>\r\n\
--m\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Second HTML part</p>\r\n\
--m--\r\n";
    app.deliver("ann@example.com", &["sales@localhost"], raw.as_bytes())
        .await;
    let record = app.records("Sales").await[0].clone();
    let detail = app.record(record["id"].as_str().unwrap()).await;
    let message = &messages(&detail)[0];
    assert!(message["text"].as_str().unwrap().contains("Plain part"));
    assert!(
        message["html"].as_str().unwrap().contains("HTML part"),
        "{message}"
    );
    // What is neither body is an attachment, never dropped.
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 1, "{message}");
    assert_eq!(attachments[0]["content_type"], "text/html");
    app.stop().await;
}

async fn ignored_mail_is_readable_and_processed_mail_links_its_record(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Quote",
        "linked1@x",
        &[],
    )
    .await;
    let processed = newest_inbound(&app).await;
    let record = app.records("Sales").await[0].clone();
    let links = processed["messages"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{processed}");
    assert_eq!(links[0]["record_id"], record["id"]);
    assert_eq!(links[0]["record_number"], record["number"]);
    assert_eq!(links[0]["pipeline"], "Sales");

    app.post(
        "Away <away@example.com>",
        "sales@localhost",
        "Out of office",
        "ooo1@x",
        &[("Auto-Submitted", "auto-replied")],
    )
    .await;
    let ignored = newest_inbound(&app).await;
    assert_eq!(ignored["outcome"], "ignored: auto-reply");
    let details = &ignored["details"];
    assert_eq!(details["subject"], "Out of office", "{ignored}");
    assert_eq!(details["from"], "away@example.com");
    assert_eq!(details["class"], "auto-reply");
    assert!(details["rule"].is_string(), "{details}");
    assert!(details["decided_by"][0].is_string(), "{details}");
    assert_eq!(ignored["messages"], serde_json::json!([]));
    app.stop().await;
}

async fn ambiguous_from_never_joins_a_thread_and_is_quarantined_under_enforce(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        for alias in &mut s.aliases {
            if alias.address == "sales@localhost" {
                alias.auth = AuthPolicy::Enforce;
            }
        }
    })
    .await;
    app.post(
        "Ann <ann@example.com>",
        "service@localhost",
        "Invoice",
        "amb1@x",
        &[],
    )
    .await;
    let original = app.records("Service").await[0].clone();
    app.move_to_stage(&original, "Resolved").await;

    // From names the customer and another address: never trusted as her.
    let two = mail(
        "ann@example.com, mallory@evil.example",
        "service@localhost",
        "Re: Invoice",
        "amb2@x",
        &[("In-Reply-To", "<amb1@x>")],
        "x",
    );
    app.deliver("ann@example.com", &["service@localhost"], &two)
        .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 2, "a new record, not her thread");
    assert_eq!(records[0]["related_record_id"], original["id"]);
    let original_now = app.record(original["id"].as_str().unwrap()).await;
    assert_eq!(original_now["stage"], "Resolved", "nothing reopened");
    assert_eq!(
        newest_inbound(&app).await["details"]["from_ambiguous"],
        true
    );

    // No From, only a Sender, to an alias that enforces: quarantined.
    let raw = b"Sender: ann@example.com\r\nTo: sales@localhost\r\nSubject: Wire\r\nMessage-ID: <amb3@x>\r\n\r\nPay now\r\n";
    app.deliver("ann@example.com", &["sales@localhost"], raw)
        .await;
    let quarantined = app.inbound(Some("quarantined")).await;
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0]["outcome"], "quarantined: ambiguous-from");
    assert!(app.records("Sales").await.is_empty());
    app.stop().await;
}

async fn nul_bytes_and_very_long_message_ids_store_alike(backend: Backend) {
    let app = spawn_app(backend).await;
    let long_id = format!("{}@x", "a".repeat(3000));
    let raw = mail(
        "Ann\0 <ann@example.com>",
        "sales@localhost",
        "Nul\0 subject",
        &long_id,
        &[],
        "body with a \0 NUL",
    );
    app.deliver("ann@example.com", &["sales@localhost"], &raw)
        .await;
    let inbound = app.inbound(None).await;
    assert_eq!(inbound[0]["status"], "processed", "{}", inbound[0]);
    let record = app.records("Sales").await[0].clone();
    assert_eq!(record["title"], "Nul subject");
    let detail = app.record(record["id"].as_str().unwrap()).await;
    assert!(
        !messages(&detail)[0]["text"]
            .as_str()
            .unwrap()
            .contains('\0')
    );

    // A reply naming the long id threads to it.
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Re: Nul subject",
        "longreply@x",
        &[("In-Reply-To", &format!("<{long_id}>"))],
    )
    .await;
    assert_eq!(app.records("Sales").await.len(), 1);
    assert_eq!(
        messages(&app.record(record["id"].as_str().unwrap()).await).len(),
        2
    );
    app.stop().await;
}

async fn plain_text_bounce_quoting_the_original_joins_its_record_with_each_result(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    app.post(
        "Gone <gone@customer.example>",
        "sales@localhost",
        "Quote",
        "q1@x",
        &[],
    )
    .await;
    let record = app.records("Sales").await[0].clone();
    // No MIME report, no status code for the first recipient, the
    // original's headers quoted inline: as Exim and many gateways write it.
    let bounce = "From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\nTo: sales@localhost\r\n\
Subject: Mail delivery failed: returning message to sender\r\nMessage-ID: <txtdsn1@mx.example>\r\n\r\n\
This message was created automatically by mail delivery software.\r\n\r\n\
A message that you sent could not be delivered to one or more of its\r\n\
recipients. This is a permanent error. The following address(es) failed:\r\n\r\n\
  gone@customer.example\r\n    The user does not exist.\r\n\r\n\
  nobody@stranger.example\r\n    host mx.stranger.example said: 550 5.1.2 Bad destination system\r\n\r\n\
------ This is a copy of the message, including all the headers. ------\r\n\r\n\
From: sales@localhost\r\nTo: gone@customer.example, nobody@stranger.example\r\nMessage-ID: <q1@x>\r\nSubject: Quote\r\n\r\nx\r\n";
    app.deliver("", &["sales@localhost"], bounce.as_bytes())
        .await;

    assert_eq!(app.records("Sales").await.len(), 1, "no record of its own");
    let detail = app.record(record["id"].as_str().unwrap()).await;
    let msgs = messages(&detail);
    assert_eq!(msgs.len(), 2, "joined the original's record");
    assert_eq!(msgs[1]["class"], "bounce");
    let results = msgs[1]["bounce"]
        .as_array()
        .expect("results on the message");
    assert_eq!(results.len(), 2, "{results:?}");
    let gone = &results[0];
    assert_eq!(gone["address"], "gone@customer.example");
    assert_eq!(gone["reason"], "userunknown", "{gone}");
    assert_eq!(gone["hard"], true);
    assert_eq!(gone["status"], "5.0.911");
    assert_eq!(gone["status_inferred"], true);
    let nobody = &results[1];
    assert_eq!(nobody["address"], "nobody@stranger.example");
    assert_eq!(nobody["status"], "5.1.2", "the stated status is kept");
    assert_eq!(nobody["status_inferred"], false);
    assert_eq!(nobody["action"], "failed");
    assert!(nobody["diagnostic"].as_str().unwrap().contains("550 5.1.2"));

    // The same on the inbound row, also for the address that is no contact.
    let inbound = newest_inbound(&app).await;
    assert_eq!(inbound["details"]["bounce"], msgs[1]["bounce"]);
    assert!(app.contact("nobody@stranger.example").await.is_none());
    let contact = app.contact("gone@customer.example").await.expect("contact");
    assert_eq!(contact["bounce_status"], "5.0.911");
    app.stop().await;
}

/// A multipart/mixed message of `parts` parts, or of one part nested `depth` deep.
fn shaped(subject: &str, id: &str, parts: usize, depth: usize) -> Vec<u8> {
    let mut m = format!(
        "From: Mass <mass@example.com>\r\nTo: sales@localhost\r\nSubject: {subject}\r\n\
Message-ID: <{id}>\r\nMIME-Version: 1.0\r\n"
    );
    for level in 0..depth {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"level{level}\"\r\n\r\n--level{level}\r\n"
        ));
    }
    m.push_str("Content-Type: multipart/mixed; boundary=p\r\n\r\n");
    for i in 0..parts {
        m.push_str(&format!(
            "--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n"
        ));
    }
    m.push_str("--p--\r\n");
    for level in (0..depth).rev() {
        m.push_str(&format!("--level{level}--\r\n"));
    }
    m.into_bytes()
}

async fn mail_over_the_mime_shape_limits_is_rejected_with_its_header_and_others_flow(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |s| {
        s.processing.max_mime_parts = 200;
        s.processing.max_mime_depth = 6;
    })
    .await;
    let cases = [
        (
            "Many parts",
            "parts@x",
            shaped("Many parts", "parts@x", 5000, 0),
        ),
        ("Deep", "deep@x", shaped("Deep", "deep@x", 1, 10)),
        ("Within", "within@x", shaped("Within", "within@x", 150, 4)),
    ];
    for (_, _, raw) in &cases {
        app.send("mass@example.com", &["sales@localhost"], raw)
            .await
            .expect("250: the bytes are kept whatever their shape");
    }
    app.wait_idle().await;
    let rows = app.inbound(None).await;
    let row = |subject: &str| {
        rows.iter()
            .find(|r| r["details"]["subject"] == subject)
            .unwrap_or_else(|| panic!("{subject}: {rows:?}"))
            .clone()
    };
    let many = row("Many parts");
    assert_eq!(many["status"], "rejected");
    assert_eq!(many["outcome"], "rejected: too many parts");
    assert_eq!(many["details"]["from"], "mass@example.com");
    let why = many["details"]["decided_by"].to_string();
    assert!(why.contains("max_mime_parts = 200"), "{why}");
    let deep = row("Deep");
    assert_eq!(deep["outcome"], "rejected: nested too deep", "{deep}");

    // Kept whole: the operator can read it, and replay it after raising the limit.
    let (status, raw) = app
        .get_bytes(&format!(
            "/api/v1/inbound/{}/raw",
            many["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    // As sent (the SMTP client ends the data with one more CRLF).
    assert!(raw.starts_with(&cases[0].2), "{} bytes kept", raw.len());

    // The one within the limits is a record, with every part read.
    assert_eq!(row("Within")["status"], "processed");
    let records = app.records("Sales").await;
    assert_eq!(
        records.len(),
        1,
        "only the message within the limits: {records:?}"
    );
    assert_eq!(records[0]["title"], "Within");
    app.stop().await;
}
