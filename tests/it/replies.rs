//! Replies from records, end to end: the API queues a reply, the sender
//! hands it to a real SMTP relay on 127.0.0.1 (a second emailin listener,
//! which stores exactly what it received), and the customer's answer —
//! from a client that keeps only one of the threading clues — comes back
//! to the same record and reopens it.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, events, mail, messages, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_reply_reaches_the_relay_and_every_client_behaviour_threads_back,
    a_reply_waits_for_a_relay_that_is_down_and_goes_out_once,
    a_relay_refusal_fails_the_reply_with_its_answer,
    a_reply_to_a_legacy_carrier_address_quotes_its_local_part,
);

const CUSTOMER: &str = "ann@customer.example";
const COLLEAGUE: &str = "boss@customer.example";

/// Polls `check` until it yields a value, for at most 20 s.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A second emailin acting as the relay: it accepts mail for the customer's
/// addresses and keeps the raw bytes. `port` 0 picks a free one.
pub async fn spawn_relay(port: u16, accepts: &[&str]) -> TestApp {
    let accepts: Vec<String> = accepts.iter().map(|a| a.to_string()).collect();
    spawn_app_with(Backend::Sqlite, move |s| {
        s.smtp.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        let template = s.aliases[0].clone();
        s.aliases = accepts
            .iter()
            .map(|address| emailin::config::AliasConfig {
                address: address.clone(),
                ..template.clone()
            })
            .collect();
    })
    .await
}

/// The service under test, sending through the relay on `relay_port`.
pub async fn spawn_sender(backend: Backend, relay_port: u16) -> TestApp {
    spawn_sender_with(backend, relay_port, |_| {}).await
}

/// [`spawn_sender`] with further settings.
pub async fn spawn_sender_with(
    backend: Backend,
    relay_port: u16,
    configure: impl FnOnce(&mut emailin::config::Settings),
) -> TestApp {
    spawn_app_with(backend, move |s| {
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = relay_port;
        s.outbound.tls = emailin::config::RelayTls::None;
        s.outbound.domain = "mail.acme.test".into();
        s.outbound.retry_initial_secs = 1;
        s.outbound.retry_max_secs = 1;
        s.outbound.timeout_secs = 5;
        configure(s);
    })
    .await
}

/// `customer` writes to Sales on `app` (at `alias`), and the record
/// replies: the inbound row of that reply at `relay`, the service that
/// received it.
pub async fn reply_from_a_new_record(
    app: &TestApp,
    relay: &TestApp,
    customer: &str,
    alias: &str,
) -> Value {
    app.post(customer, alias, "Quote", "q1@customer.example", &[])
        .await;
    let record = &app.records("Sales").await[0];
    let (status, body) = reply(
        app,
        record,
        json!({"text": "Here is the quote.\n\nBest,\nBob"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    eventually("the reply at the receiver", || async {
        relay.inbound(None).await.into_iter().next()
    })
    .await
}

/// A customer's first message to the Service alias; returns its record.
async fn customer_writes(app: &TestApp, subject: &str, message_id: &str) -> Value {
    app.post(
        &format!("Ann Buyer <{CUSTOMER}>"),
        "service@localhost",
        subject,
        message_id,
        &[],
    )
    .await;
    let records = app.records("Service").await;
    app.record(records[0]["id"].as_str().expect("id")).await
}

async fn reply(app: &TestApp, record: &Value, body: Value) -> (u16, Value) {
    app.send_json(
        Method::POST,
        &format!(
            "/api/v1/records/{}/replies",
            record["id"].as_str().expect("id")
        ),
        &app.admin_token,
        body,
    )
    .await
}

/// The delivery state of the reply with `message_id` on the record.
pub async fn delivery(app: &TestApp, record: &Value, message_id: &str) -> Value {
    let detail = app.record(record["id"].as_str().expect("id")).await;
    messages(&detail)
        .into_iter()
        .find(|m| m["message_id"] == message_id)
        .map(|m| m["delivery"].clone())
        .expect("the reply is on the record")
}

/// The raw messages the relay stored, oldest first.
pub async fn captured(relay: &TestApp) -> Vec<Vec<u8>> {
    let mut raws = Vec::new();
    for row in relay.inbound(None).await.iter().rev() {
        let (status, raw) = relay
            .get_bytes(&format!(
                "/api/v1/inbound/{}/raw",
                row["id"].as_str().expect("id")
            ))
            .await;
        assert_eq!(status, 200);
        raws.push(raw);
    }
    raws
}

fn header<'a>(mail: &'a mail_parser::Message<'a>, name: &str) -> Option<String> {
    mail.header_raw(name).map(|v| v.trim().to_string())
}

/// A threading rule, the recipient, the headers kept, and the subject.
type Clue<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, &'a str);

async fn a_reply_reaches_the_relay_and_every_client_behaviour_threads_back(backend: Backend) {
    let relay = spawn_relay(0, &[CUSTOMER, COLLEAGUE]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    let record = customer_writes(&app, "Printer on fire", "c1@customer.example").await;
    let id = record["id"].as_str().unwrap().to_string();
    let number = record["number"].as_i64().unwrap();

    // The reply goes out as the assigned person.
    let (status, _) = app
        .send_json(
            Method::POST,
            "/api/v1/users",
            &app.admin_token,
            json!({"email": "bob@acme.test", "name": "Bob Fixer"}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .send_json(
            Method::PATCH,
            &format!("/api/v1/records/{id}"),
            &app.member_token,
            json!({"owner": "bob@acme.test"}),
        )
        .await;
    assert_eq!(status, 200);

    let (status, queued) = reply(
        &app,
        &record,
        json!({"text": "We are on our way.", "cc": [COLLEAGUE]}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["status"], "queued");
    let message_id = queued["message_id"].as_str().unwrap().to_string();
    assert!(message_id.ends_with("@mail.acme.test"), "{message_id}");

    let sent = eventually("the relay's 250", || async {
        let d = delivery(&app, &record, &message_id).await;
        (d["status"] == "sent").then_some(d)
    })
    .await;
    assert!(
        sent["last_reply"].as_str().unwrap().starts_with("250"),
        "{sent}"
    );
    assert_eq!(sent["attempts"], 1);
    let detail = app.record(&id).await;
    let kinds: Vec<Value> = events(&detail).iter().map(|e| e["kind"].clone()).collect();
    assert!(kinds.contains(&json!("reply_queued")) && kinds.contains(&json!("reply_sent")));

    // What the relay received.
    let raws = captured(&relay).await;
    assert_eq!(raws.len(), 1, "one message for both recipients");
    let wire = mail_parser::MessageParser::default()
        .parse(&raws[0])
        .expect("parsable");
    assert_eq!(wire.message_id(), Some(message_id.as_str()));
    assert_eq!(
        wire.subject(),
        Some(format!("Re: Printer on fire [#{number}]").as_str())
    );
    assert_eq!(wire.in_reply_to().as_text(), Some("c1@customer.example"));
    assert_eq!(wire.references().as_text(), Some("c1@customer.example"));
    let from = wire.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some("service@localhost"));
    assert_eq!(from.name(), Some("Bob Fixer"));
    let reply_to = wire
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .expect("Reply-To")
        .to_string();
    assert!(reply_to.starts_with("service+r-") && reply_to.ends_with("@localhost"));
    assert_eq!(
        wire.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(CUSTOMER)
    );
    assert_eq!(
        wire.cc().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(COLLEAGUE)
    );
    assert!(header(&wire, "X-Emailin-Loop").is_some());
    assert!(
        header(&wire, "Auto-Submitted").is_none(),
        "a person wrote it"
    );
    assert_eq!(
        wire.body_text(0).as_deref().map(str::trim),
        Some("We are on our way.")
    );
    // Mail we sent that comes back as is is recognised as our own.
    assert_eq!(relay.inbound(None).await[0]["outcome"], "ignored: loop");

    // The customer answers, each time with a client that keeps one clue only;
    // the record was resolved in between, and each answer reopens it.
    let clues: [Clue; 4] = [
        (
            "in-reply-to",
            "service@localhost",
            vec![("In-Reply-To", format!("<{message_id}>"))],
            "Thanks",
        ),
        (
            "references",
            "service@localhost",
            vec![("References", format!("<{message_id}>"))],
            "Thanks again",
        ),
        (
            "reply-token",
            reply_to.as_str(),
            vec![],
            "Answer to the reply address",
        ),
        (
            "subject-tag",
            "service@localhost",
            vec![],
            "About [#NUMBER]",
        ),
    ];
    for (n, (rule, rcpt, headers, subject)) in clues.iter().enumerate() {
        app.move_to_stage(&record, "Resolved").await;
        let subject = subject.replace("NUMBER", &number.to_string());
        let extra: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer_id = format!("answer{n}@customer.example");
        app.deliver(
            CUSTOMER,
            &[rcpt],
            &mail(
                &format!("Ann Buyer <{CUSTOMER}>"),
                rcpt,
                &subject,
                &answer_id,
                &extra,
                "still burning",
            ),
        )
        .await;
        let records = app.records("Service").await;
        assert_eq!(records.len(), 1, "{rule}: the answer joined the record");
        let detail = app.record(&id).await;
        assert_eq!(
            detail["stage"], "Reopened",
            "{rule}: the answer reopened it"
        );
        let answer = messages(&detail)
            .into_iter()
            .find(|m| m["message_id"] == answer_id.as_str())
            .expect("the answer is on the record");
        assert_eq!(answer["thread"]["rule"], *rule);
    }
    app.stop().await;
    relay.stop().await;
}

async fn a_reply_waits_for_a_relay_that_is_down_and_goes_out_once(backend: Backend) {
    // A port nothing listens on, until the relay is started on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let app = spawn_sender(backend, port).await;
    let record = customer_writes(&app, "Invoice copy", "d1@customer.example").await;
    let (status, queued) = reply(&app, &record, json!({"text": "Attached."})).await;
    assert_eq!(status, 202, "{queued}");
    let message_id = queued["message_id"].as_str().unwrap().to_string();

    let deferred = eventually("a failed attempt", || async {
        let d = delivery(&app, &record, &message_id).await;
        (d["attempts"].as_i64() >= Some(1) && d["last_reply"].is_string()).then_some(d)
    })
    .await;
    assert_eq!(deferred["status"], "queued", "{deferred}");

    let relay = spawn_relay(port, &[CUSTOMER]).await;
    let sent = eventually("delivery once the relay is up", || async {
        let d = delivery(&app, &record, &message_id).await;
        (d["status"] == "sent").then_some(d)
    })
    .await;
    assert!(sent["attempts"].as_i64().unwrap() >= 2, "{sent}");
    // Give a second delivery every chance to happen; there must be none.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let raws = captured(&relay).await;
    let copies = raws
        .iter()
        .filter(|raw| String::from_utf8_lossy(raw).contains(&message_id))
        .count();
    assert_eq!(copies, 1, "sent exactly once");
    assert_eq!(delivery(&app, &record, &message_id).await["status"], "sent");
    app.stop().await;
    relay.stop().await;
}

async fn a_relay_refusal_fails_the_reply_with_its_answer(backend: Backend) {
    // The relay knows nobody: RCPT gets 550, which is final.
    let relay = spawn_relay(0, &["someone-else@customer.example"]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    let record = customer_writes(&app, "Refund", "e1@customer.example").await;
    let (status, queued) = reply(&app, &record, json!({"text": "Refunded."})).await;
    assert_eq!(status, 202);
    let message_id = queued["message_id"].as_str().unwrap().to_string();
    let failed = eventually("the refusal", || async {
        let d = delivery(&app, &record, &message_id).await;
        (d["status"] == "failed").then_some(d)
    })
    .await;
    assert!(
        failed["last_reply"].as_str().unwrap().starts_with("550"),
        "{failed}"
    );
    assert_eq!(failed["attempts"], 1, "a 5xx is not retried");
    let detail = app.record(record["id"].as_str().unwrap()).await;
    assert!(events(&detail).iter().any(|e| e["kind"] == "reply_failed"));

    // Replies are validated before anything is queued.
    let cases = [
        (json!({"text": "  "}), 422),
        (json!({"text": "x", "cc": ["not an address"]}), 422),
        (json!({"text": "x", "cc": ["no-reply@shop.example"]}), 422),
        (json!({"text": "x", "bcc": []}), 422),
    ];
    for (body, want) in cases {
        let (status, answer) = reply(&app, &record, body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "invalid");
    }
    let (status, _) = app
        .send_json(
            Method::POST,
            &format!("/api/v1/records/{}/replies", uuid::Uuid::now_v7()),
            &app.member_token,
            json!({"text": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    app.stop().await;
    relay.stop().await;
}

async fn a_reply_to_a_legacy_carrier_address_quotes_its_local_part(backend: Backend) {
    const CARRIER: &str = "taro..yamada.@docomo.ne.jp";
    let relay = spawn_relay(0, &[CARRIER]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    app.post(
        &format!("Taro <{CARRIER}>"),
        "service@localhost",
        "Repair",
        "docomo2@x",
        &[],
    )
    .await;
    let record = app.records("Service").await[0].clone();
    assert_eq!(record["contact"]["email"], CARRIER);
    let (status, queued) = reply(&app, &record, json!({"text": "Received."})).await;
    assert_eq!(status, 202, "{queued}");
    let message_id = queued["message_id"].as_str().unwrap().to_string();
    eventually("the relay's 250", || async {
        let d = delivery(&app, &record, &message_id).await;
        (d["status"] == "sent").then_some(d)
    })
    .await;

    // On the wire the local part is quoted, in RCPT TO and in the To header.
    let row = relay.inbound(None).await[0].clone();
    assert_eq!(row["rcpt_to"], json!([CARRIER]), "{row}");
    let raws = captured(&relay).await;
    let text = String::from_utf8_lossy(&raws[0]).to_string();
    assert!(text.contains("<\"taro..yamada.\"@docomo.ne.jp>"), "{text}");
    let wire = mail_parser::MessageParser::default()
        .parse(&raws[0])
        .expect("parsable");
    let to = wire.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some("\"taro..yamada.\"@docomo.ne.jp"));
    app.stop().await;
    relay.stop().await;
}
