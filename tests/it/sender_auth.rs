//! Sender authentication over a real SMTP session, offline: the service's
//! resolver answers only from preloaded records. A sender whose domain
//! passes DMARC threads and reopens as usual; one that fails never joins or
//! reopens a record where the alias monitors, and is quarantined where it
//! enforces.

use crate::helpers::{Backend, TestApp, mail, messages, spawn_app_with};
use crate::on_both_backends;
use emailin::config::{AuthPolicy, ResolverKind, StaticTxtRecord};

on_both_backends!(dmarc_decides_threading_reopening_and_quarantine);

async fn spawn(backend: Backend) -> TestApp {
    spawn_app_with(backend, |s| {
        // The test client is on 127.0.0.1: check it like any other client.
        s.auth.trusted_networks = vec![];
        s.auth.resolver = ResolverKind::Static;
        s.auth.static_records = [
            ("good.test", "v=spf1 ip4:127.0.0.1 -all"),
            ("_dmarc.good.test", "v=DMARC1; p=reject"),
            ("bank.test", "v=spf1 ip4:192.0.2.1 -all"),
            ("_dmarc.bank.test", "v=DMARC1; p=reject"),
        ]
        .iter()
        .map(|(name, value)| StaticTxtRecord {
            name: (*name).into(),
            value: (*value).into(),
        })
        .collect();
        for alias in &mut s.aliases {
            if alias.address == "sales@localhost" {
                alias.auth = AuthPolicy::Enforce;
            }
        }
    })
    .await
}

/// Sends `from` → `to` with MAIL FROM = `from`, waits for processing.
async fn send(
    app: &TestApp,
    from: &str,
    to: &str,
    subject: &str,
    id: &str,
    extra: &[(&str, &str)],
) {
    app.deliver(from, &[to], &mail(from, to, subject, id, extra, "x"))
        .await;
}

async fn dmarc_decides_threading_reopening_and_quarantine(backend: Backend) {
    let app = spawn(backend).await;

    // Aligned SPF pass: DMARC passes, the reply threads and reopens.
    send(
        &app,
        "ann@good.test",
        "service@localhost",
        "Printer",
        "g1@good.test",
        &[],
    )
    .await;
    let ann = app.records("Service").await[0].clone();
    let detail = app.record(ann["id"].as_str().unwrap()).await;
    let results = messages(&detail)[0]["authentication_results"]
        .as_str()
        .expect("verdict recorded")
        .to_string();
    assert!(results.starts_with("localhost;"), "{results}");
    assert!(
        results.contains("spf=pass") && results.contains("dmarc=pass"),
        "{results}"
    );
    app.move_to_stage(&ann, "Resolved").await;
    send(
        &app,
        "ann@good.test",
        "service@localhost",
        "Re: Printer",
        "g2@good.test",
        &[("In-Reply-To", "<g1@good.test>")],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["stage"], "Reopened");

    // SPF fails for bank.test from this client, so DMARC fails. Under
    // monitor, the first message still becomes a record...
    send(
        &app,
        "carl@bank.test",
        "service@localhost",
        "Wire",
        "b1@bank.test",
        &[],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 2);
    let carl = records[0].clone();
    assert_eq!(carl["contact"]["email"], "carl@bank.test");
    let detail = app.record(carl["id"].as_str().unwrap()).await;
    let results = messages(&detail)[0]["authentication_results"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        results.contains("spf=fail") && results.contains("dmarc=fail"),
        "{results}"
    );

    // ...but a reply naming its thread, from its own contact, joins nothing
    // and reopens nothing: it gets a new record linked to the one it named.
    app.move_to_stage(&carl, "Resolved").await;
    send(
        &app,
        "carl@bank.test",
        "service@localhost",
        "Re: Wire",
        "b2@bank.test",
        &[("In-Reply-To", "<b1@bank.test>")],
    )
    .await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 3, "the failing reply did not thread");
    assert_eq!(records[0]["related_record_id"], carl["id"]);
    let carl_now = app.record(carl["id"].as_str().unwrap()).await;
    assert_eq!(carl_now["stage"], "Resolved", "nor did it reopen");

    // Under enforce it is quarantined, with the reason; released, it is processed.
    send(
        &app,
        "carl@bank.test",
        "sales@localhost",
        "Invoice",
        "b3@bank.test",
        &[],
    )
    .await;
    assert!(app.records("Sales").await.is_empty());
    let held = app.inbound(Some("quarantined")).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["outcome"], "quarantined: dmarc-fail");
    assert!(
        held[0]["auth_results"]
            .as_str()
            .unwrap()
            .contains("dmarc=fail")
    );
    let (status, _) = app
        .post_json(&format!(
            "/api/v1/inbound/{}/release",
            held[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 202);
    app.wait_idle().await;
    assert_eq!(app.records("Sales").await.len(), 1);

    // Passing mail to the enforcing alias goes straight through.
    send(
        &app,
        "ann@good.test",
        "sales@localhost",
        "Order",
        "g3@good.test",
        &[],
    )
    .await;
    assert_eq!(app.records("Sales").await.len(), 2);
    app.stop().await;
}
