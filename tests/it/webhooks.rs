//! Webhooks against real local receivers: an HTTP server in the test that
//! checks each signature with the Standard Webhooks algorithm (written here
//! from the specification, not the service's code), answers as told, and
//! keeps what it got; and notification mail caught by a local relay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::{Backend, TestApp, postgres_url, spawn_app_on_url, spawn_app_with};
use crate::on_both_backends;
use crate::replies::eventually;

on_both_backends!(
    events_arrive_signed_in_order_and_a_failing_receiver_gets_the_same_id_again,
    webhooks_added_through_the_api_filter_events_fail_and_replay,
    owners_and_mentioned_users_are_mailed_and_nobody_else,
    a_reopening_and_a_comment_are_events_in_the_records_order,
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone)]
struct Got {
    id: String,
    kind: String,
    body: Value,
    /// The answer it was given.
    status: u16,
}

#[derive(Clone)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Answers 500 to this many requests first.
    failures: Arc<AtomicUsize>,
    addr: std::net::SocketAddr,
}

/// The specification's check: base64 HMAC-SHA256 of `id.timestamp.body`
/// with the base64-decoded part of the secret after `whsec_`.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return false;
    };
    let Ok(ts_num) = ts.parse::<i64>() else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - ts_num).abs() > 300 {
        return false;
    }
    let key = BASE64
        .decode(SECRET.trim_start_matches("whsec_"))
        .expect("secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("key");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = BASE64.encode(mac.finalize().into_bytes());
    sigs.split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    assert!(verify(&headers, &body), "a valid signature");
    let failing = r
        .failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing { 500 } else { 200 };
    let value: Value = serde_json::from_slice(&body).expect("JSON body");
    r.got.lock().expect("lock").push(Got {
        id: headers["webhook-id"].to_str().expect("id").to_string(),
        kind: value["type"].as_str().expect("type").to_string(),
        body: value,
        status,
    });
    StatusCode::from_u16(status).expect("status")
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let r = Receiver {
        got: Arc::default(),
        failures: Arc::new(AtomicUsize::new(failures)),
        addr: listener.local_addr().expect("addr"),
    };
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    r
}

impl Receiver {
    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits until `n` requests were answered 2xx.
    async fn delivered(&self, n: usize) -> Vec<Got> {
        eventually(&format!("{n} deliveries"), || async {
            let ok: Vec<Got> = self.got().into_iter().filter(|g| g.status == 200).collect();
            (ok.len() >= n).then_some(ok)
        })
        .await
    }
}

fn fast(s: &mut emailin::config::Settings) {
    s.webhook_delivery.retry_initial_secs = 1;
    s.webhook_delivery.retry_max_secs = 1;
    s.webhook_delivery.poll_interval_ms = 100;
}

async fn events_arrive_signed_in_order_and_a_failing_receiver_gets_the_same_id_again(
    backend: Backend,
) {
    let hook = receiver(2).await;
    let url = hook.url();
    let app = spawn_app_with(backend, |s| {
        fast(s);
        s.webhooks = vec![emailin::config::WebhookConfig {
            url,
            secret: emailin::config::Secret::new(SECRET),
            events: vec![],
        }];
    })
    .await;
    app.post(
        "Carla <carla@customer.test>",
        "sales@localhost",
        "Quote for 20 desks",
        "q1@customer.test",
        &[],
    )
    .await;
    let ok = hook.delivered(2).await;
    let all = hook.got();
    // record.created failed twice, then went through: one id, three times.
    let created: Vec<&Got> = all.iter().filter(|g| g.kind == "record.created").collect();
    assert_eq!(created.len(), 3, "{all:?}");
    assert!(created.iter().all(|g| g.id == created[0].id));
    assert_eq!(
        created.iter().map(|g| g.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    // The record's next event waited for it.
    assert_eq!(ok[0].kind, "record.created");
    assert_eq!(ok[1].kind, "message.received");
    let first_received = all
        .iter()
        .position(|g| g.kind == "message.received")
        .expect("received");
    assert_eq!(
        first_received, 3,
        "message.received only after record.created: {all:?}"
    );
    // Bodies: {type, timestamp, data} with the API's views.
    assert_eq!(ok[0].body["data"]["record"]["number"], 1);
    assert_eq!(ok[0].body["data"]["record"]["title"], "Quote for 20 desks");
    assert!(ok[0].body["timestamp"].as_str().is_some());
    assert_eq!(
        ok[1].body["data"]["message"]["message_id"],
        "q1@customer.test"
    );

    // A stage change is an event too, with the record as it is now.
    let record = &app.records("Sales").await[0];
    app.move_to_stage(record, "Won").await;
    let ok = hook.delivered(3).await;
    assert_eq!(ok[2].kind, "record.stage_changed");
    assert_eq!(ok[2].body["data"]["record"]["stage"], "Won");

    // The deliveries as the API lists them.
    let hooks = app.get("/api/v1/webhooks").await.1;
    assert_eq!(hooks[0]["source"], "config");
    let id = hooks[0]["id"].as_str().expect("id").to_string();
    let (status, deliveries) = app.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200);
    let created = deliveries
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["type"] == "record.created")
        .expect("created")
        .clone();
    assert_eq!(created["status"], "delivered");
    assert_eq!(created["attempts"], 3);
    assert_eq!(created["last_status"], 200);
    app.stop().await;
}

async fn webhooks_added_through_the_api_filter_events_fail_and_replay(backend: Backend) {
    let hook = receiver(usize::MAX).await;
    let app = spawn_app_with(backend, |s| {
        fast(s);
        s.webhook_delivery.max_attempts = 2;
    })
    .await;

    // Targets that are refused.
    for bad in [
        "http://example.com/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hook",
    ] {
        let (status, body) = app
            .send_json(
                reqwest::Method::POST,
                "/api/v1/webhooks",
                &app.admin_token,
                json!({"url": bad}),
            )
            .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    let (status, _) = app
        .send_json(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            &app.member_token,
            json!({"url": hook.url()}),
        )
        .await;
    assert_eq!(status, 403);
    let (status, created) = app
        .send_json(
            reqwest::Method::POST,
            "/api/v1/webhooks",
            &app.admin_token,
            json!({"url": hook.url(), "secret": SECRET, "events": ["record.created"]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["secret"], SECRET);

    app.post(
        "Dan <dan@customer.test>",
        "sales@localhost",
        "Hello",
        "h1@customer.test",
        &[],
    )
    .await;
    // Two attempts, both refused: failed, with the receiver's answer.
    let path = format!("/api/v1/webhooks/{id}/deliveries");
    let failed = eventually("the delivery to fail", || async {
        let list = app.get(&path).await.1;
        let first = list.as_array()?.first()?.clone();
        (first["status"] == "failed").then_some(first)
    })
    .await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(failed["last_status"], 500);
    assert!(
        hook.got().iter().all(|g| g.kind == "record.created"),
        "filtered"
    );

    // The receiver recovers; a replay sends the same delivery again.
    hook.failures.store(0, Ordering::SeqCst);
    let (status, body) = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/webhooks/{id}/replay"),
            &app.admin_token,
            json!({}),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(body["queued"], 1);
    let ok = hook.delivered(1).await;
    assert_eq!(ok[0].id, failed["id"].as_str().expect("id"));
    let got = hook.got();
    assert_eq!(got.len(), 3, "two failures, then the replay: {got:?}");

    let (status, _) = app.delete(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(app.get("/api/v1/webhooks").await.1, json!([]));
    app.stop().await;
}

/// Two replicas on one PostgreSQL deliver each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    emailin_no_postgres,
    ignore = "skipped: PostgreSQL is absent (DATABASE_URL is not set)"
)]
async fn two_replicas_deliver_each_event_once() {
    if postgres_url().is_none() {
        return;
    }
    let hook = receiver(0).await;
    let url = hook.url();
    let configure = move |s: &mut emailin::config::Settings| {
        fast(s);
        s.webhooks = vec![emailin::config::WebhookConfig {
            url: url.clone(),
            secret: emailin::config::Secret::new(SECRET),
            events: vec![],
        }];
    };
    let first: TestApp = spawn_app_with(Backend::Postgres, configure.clone()).await;
    let second = spawn_app_on_url(first.db.url.clone(), configure).await;
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        app.post(
            &format!("Customer {i} <c{i}@customer.test>"),
            "sales@localhost",
            &format!("Question {i}"),
            &format!("m{i}@customer.test"),
            &[],
        )
        .await;
    }
    // Ten records, each created and with a message: 20 events.
    hook.delivered(20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = hook.got();
    assert_eq!(got.len(), 20, "{got:?}");
    let mut ids: Vec<&str> = got.iter().map(|g| g.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "each delivery once");
    second.stop().await;
    first.stop().await;
}

/// The service under test with a relay for its mail and Sales owned by Ana.
async fn with_relay(backend: Backend, relay: &TestApp) -> TestApp {
    let port = relay.smtp_addr.port();
    spawn_app_with(backend, move |s| {
        fast(s);
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = port;
        s.outbound.tls = emailin::config::RelayTls::None;
        s.outbound.domain = "mail.acme.test".into();
        s.outbound.retry_initial_secs = 1;
        s.outbound.retry_max_secs = 1;
        s.http.public_url = "https://crm.acme.test".into();
        s.aliases[0].owner = Some("ana@acme.test".into());
        s.aliases[0].reopen_on_reply = true;
        s.aliases[0].reopen = vec![emailin::config::ReopenRuleConfig {
            from: "Won".into(),
            to: "New".into(),
        }];
    })
    .await
}

fn parsed(raw: &[u8]) -> (String, String, Option<String>, String) {
    let mail = mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parses");
    let to = mail
        .to()
        .and_then(|t| t.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    let auto = mail
        .header("Auto-Submitted")
        .and_then(|h| h.as_text())
        .map(str::to_string);
    (
        to,
        mail.subject().unwrap_or_default().to_string(),
        auto,
        mail.body_text(0).unwrap_or_default().to_string(),
    )
}

async fn owners_and_mentioned_users_are_mailed_and_nobody_else(backend: Backend) {
    let relay = crate::replies::spawn_relay(
        0,
        &[
            "ana@acme.test",
            "ben@acme.test",
            "cat@acme.test",
            "info@acme.test",
        ],
    )
    .await;
    let app = with_relay(backend, &relay).await;
    let store = &app.store;
    for (email, name) in [
        ("ben@acme.test", "Ben"),
        ("cat@acme.test", "Cat"),
        ("info@acme.test", "Info desk"),
    ] {
        store
            .create_user(email, name, emailin::store::Role::Member)
            .await
            .expect("user");
    }
    // Ana exists as the alias owner; Cat turns notifications off.
    let cat = store
        .login_user("cat@acme.test")
        .await
        .expect("db")
        .expect("cat")
        .0;
    let off = emailin::store::UserChange {
        notify: Some(false),
        ..Default::default()
    };
    store.update_user(cat.id, &off).await.expect("off");

    // A new record for Ana: she is told, with the first lines and a link.
    app.post(
        "Carla <carla@customer.test>",
        "sales@localhost",
        "Quote for 20 desks",
        "q1@customer.test",
        &[],
    )
    .await;
    let first = eventually("Ana's notification", || async {
        crate::replies::captured(&relay).await.into_iter().next()
    })
    .await;
    let (to, subject, auto, text) = parsed(&first);
    assert_eq!(to, "ana@acme.test", "{subject} {text}");
    assert_eq!(subject, "New record #1: Quote for 20 desks");
    assert_eq!(auto.as_deref(), Some("auto-generated"));
    assert!(text.contains("https://crm.acme.test/records/1"), "{text}");
    assert!(text.contains("> "), "quotes the message: {text}");
    assert!(
        !String::from_utf8_lossy(&first).contains("+r-"),
        "no reply token"
    );

    // A comment mentioning Ben, Cat (off) and a role address: only Ben.
    let record = &app.records("Sales").await[0];
    let id = record["id"].as_str().expect("id");
    let (status, _) = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/records/{id}/comments"),
            &app.admin_token,
            json!({"text": "@ben@acme.test @cat@acme.test @info@acme.test please look"}),
        )
        .await;
    assert_eq!(status, 201);
    let second = eventually("Ben's notification", || async {
        crate::replies::captured(&relay).await.into_iter().nth(1)
    })
    .await;
    let (to, subject, _, text) = parsed(&second);
    assert_eq!(to, "ben@acme.test");
    assert!(subject.contains("mentioned you on #1"), "{subject}");
    assert!(text.contains("please look"), "{text}");

    // Closed, then the customer writes again: reopened, Ana is told.
    app.move_to_stage(record, "Won").await;
    app.post(
        "Carla <carla@customer.test>",
        "sales@localhost",
        "Re: Quote for 20 desks",
        "q2@customer.test",
        &[("In-Reply-To", "<q1@customer.test>")],
    )
    .await;
    let third = eventually("the reopened notification", || async {
        crate::replies::captured(&relay).await.into_iter().nth(2)
    })
    .await;
    let (to, subject, _, _) = parsed(&third);
    assert_eq!(to, "ana@acme.test");
    assert_eq!(subject, "Reopened #1: Quote for 20 desks");

    // An out-of-office answer to the thread tells no one.
    app.post(
        "Carla <carla@customer.test>",
        "sales@localhost",
        "Automatic reply: Quote",
        "ooo@customer.test",
        &[
            ("Auto-Submitted", "auto-replied"),
            ("In-Reply-To", "<q1@customer.test>"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = crate::replies::captured(&relay).await;
    assert_eq!(
        all.len(),
        3,
        "Cat, the role address and the auto-reply got nothing"
    );
    // The record notes each notification.
    let detail = app.record(id).await;
    let notified = crate::helpers::events(&detail)
        .iter()
        .filter(|e| e["kind"] == "notified")
        .count();
    assert_eq!(notified, 3);

    // The one-click unsubscribe of Ana's mail (RFC 8058) turns hers off,
    // without a session; a forged token changes nothing.
    let mail = mail_parser::MessageParser::default()
        .parse(&first)
        .expect("parses");
    let header = |name: &str| mail.header_raw(name).map(|v| v.trim().to_string());
    assert_eq!(
        header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    let link = header("List-Unsubscribe").expect("List-Unsubscribe");
    let path = link
        .trim_matches(['<', '>'])
        .strip_prefix("https://crm.acme.test")
        .expect("under the public URL")
        .to_string();
    let post = |path: String| {
        let url = format!("http://{}{path}", app.http_addr);
        async move {
            reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        }
    };
    let flipped = if path.ends_with('0') { '1' } else { '0' };
    let forged = format!("{}{flipped}", &path[..path.len() - 1]);
    assert_eq!(post(forged).await, 404);
    let ana = || async {
        store
            .login_user("ana@acme.test")
            .await
            .expect("db")
            .expect("ana")
            .0
    };
    assert!(ana().await.notify);
    assert_eq!(post(path).await, 200);
    assert!(!ana().await.notify, "Ana's notifications are off");
    app.stop().await;
    relay.stop().await;
}

async fn a_reopening_and_a_comment_are_events_in_the_records_order(backend: Backend) {
    let hook = receiver(0).await;
    let url = hook.url();
    let app = spawn_app_with(backend, |s| {
        fast(s);
        s.webhooks = vec![emailin::config::WebhookConfig {
            url,
            secret: emailin::config::Secret::new(SECRET),
            events: vec![],
        }];
    })
    .await;
    app.post(
        "Ann <ann@customer.test>",
        "service@localhost",
        "Printer offline",
        "p1@customer.test",
        &[],
    )
    .await;
    let record = &app.records("Service").await[0];
    let id = record["id"].as_str().expect("id").to_string();
    app.move_to_stage(record, "Resolved").await;
    app.post(
        "Ann <ann@customer.test>",
        "service@localhost",
        "Re: Printer offline",
        "p2@customer.test",
        &[("In-Reply-To", "<p1@customer.test>")],
    )
    .await;
    let (status, _) = app
        .send_json(
            reqwest::Method::POST,
            &format!("/api/v1/records/{id}/comments"),
            &app.admin_token,
            json!({"text": "Looking at it"}),
        )
        .await;
    assert_eq!(status, 201);
    let ok = hook.delivered(6).await;
    let kinds: Vec<&str> = ok.iter().map(|g| g.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "record.created",
            "message.received",
            "record.stage_changed",
            "message.received",
            "record.reopened",
            "comment.created"
        ]
    );
    assert_eq!(ok[4].body["data"]["record"]["stage"], "Reopened");
    assert_eq!(ok[5].body["data"]["message"]["text"], "Looking at it");
    app.stop().await;
}
