//! The forwarding check: a test message goes to a team address through a
//! real relay (Dovecot's submission service) and comes back through the
//! alias that answers for that address, by the command and by the admin
//! page's button.

use std::time::Duration;

use emailin::cli::mail_accounts::{ForwardingCheck, check_forwarding};
use emailin::config::{RelayTls, Secret, Settings};
use reqwest::StatusCode;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::imap::{Dovecot, Options, PASSWORD, USER, free_port, with_account};
use crate::replies::{captured, eventually, spawn_relay, spawn_sender_with};
use crate::web::{Web, csrf_of, user};

const TEAM: &str = "support@acme.example";

/// The service, sending through Dovecot's submission on `relay`, which
/// hands everything to this service's own listener on `smtp`: the team
/// address reaches the alias that names it in `also`. Returns its settings too.
async fn service(smtp: u16, relay: u16) -> (TestApp, Settings) {
    let mut used = None;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.smtp.listen = format!("127.0.0.1:{smtp}").parse().expect("addr");
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = relay;
        s.outbound.tls = RelayTls::None;
        s.outbound.username = USER.into();
        s.outbound.password = Secret::new(PASSWORD);
        s.outbound.domain = "mail.acme.test".into();
        s.outbound.timeout_secs = 5;
        s.aliases[1].also = vec![TEAM.into()];
        used = Some(s.clone());
    })
    .await;
    (app, used.expect("settings"))
}

/// The one stored message, once processing has decided about it (the
/// check reports the arrival as soon as it is stored).
async fn processed(app: &TestApp) -> Vec<serde_json::Value> {
    eventually("the test message processed", || async {
        let rows = app.inbound(None).await;
        (rows.len() == 1 && rows[0]["status"] != "pending").then_some(rows)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn a_test_message_to_the_team_address_is_seen_arriving_through_the_alias() {
    let smtp = free_port();
    let Some(dovecot) = Dovecot::start_options(Options {
        submission_relay: Some(smtp),
        ..Options::default()
    })
    .await
    else {
        return;
    };
    let relay = dovecot.submission_port.expect("submission");
    let (app, settings) = service(smtp, relay).await;

    // The command: sent, seen arriving, with the route it took.
    let mut out = Vec::new();
    let check = ForwardingCheck {
        alias: "service@localhost",
        to: None,
        wait: Duration::from_secs(20),
    };
    check_forwarding(&settings, app.store.clone(), check, &mut out)
        .await
        .expect("arrived");
    let out = String::from_utf8(out).expect("utf-8");
    eprintln!("{out}");
    assert!(
        out.contains(&format!("to {TEAM} through 127.0.0.1 (250")),
        "{out}"
    );
    assert!(out.contains(&format!("through smtp for {TEAM}")), "{out}");
    assert!(
        out.contains("  Received: from") && out.contains("by submission.test"),
        "the relay's Received header: {out}"
    );
    // Stored, ignored as the service's own mail: no record.
    let rows = processed(&app).await;
    assert_eq!(rows[0]["outcome"], "ignored: loop", "{}", rows[0]);
    assert!(app.records("Service").await.is_empty());

    // Refusals are named: no team address, a relay that refuses.
    let no_team = ForwardingCheck {
        alias: "sales@localhost",
        to: None,
        wait: Duration::from_secs(1),
    };
    let err = check_forwarding(&settings, app.store.clone(), no_team, &mut Vec::new())
        .await
        .expect_err("no team address");
    assert!(err.to_string().contains("has no team address"), "{err}");
    let nowhere = ForwardingCheck {
        alias: "sales@localhost",
        to: Some("nobody@nowhere.example"),
        wait: Duration::from_secs(1),
    };
    let err = check_forwarding(&settings, app.store.clone(), nowhere, &mut Vec::new())
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("the relay refused the test message"),
        "{err}"
    );

    // The admin page's button: the cell waits, then shows the arrival.
    user(&app, "ada@acme.test", "Ada", emailin::store::Role::Admin).await;
    let mut web = Web::new(&app);
    web.login("ada@acme.test", crate::web::PASSWORD).await;
    let (status, html, _) = web.get("/admin/domains").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Not checked yet."), "{html}");
    let sent = web
        .post_raw(
            "/admin/domains/forwarding",
            &[("csrf", &csrf_of(&html)), ("alias", "service@localhost")],
        )
        .await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let cell = eventually("the arrival on the page", || async {
        let mut web = Web::new(&app);
        web.login("ada@acme.test", crate::web::PASSWORD).await;
        let (_, cell, _) = web
            .get("/admin/domains/forwarding?alias=service%40localhost")
            .await;
        cell.contains("✓ Arrived").then_some(cell)
    })
    .await;
    assert!(
        cell.contains("Headers that routed it") && cell.contains("submission.test"),
        "{cell}"
    );
    assert_eq!(app.inbound(None).await.len(), 2);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn a_test_message_that_lands_in_the_polled_team_mailbox_is_seen_through_imap() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    // The team's provider takes the test message from the relay (a second
    // service stands in for its MX) and puts it in the team mailbox, which
    // the service polls.
    let provider = spawn_relay(0, &[TEAM]).await;
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 1;
    let mut used = None;
    let app = spawn_sender_with(Backend::Sqlite, provider.smtp_addr.port(), |s| {
        with_account(s, account);
        used = Some(s.clone());
    })
    .await;
    let settings = used.expect("settings");
    let store = app.store.clone();
    let check = tokio::spawn(async move {
        let mut out = Vec::new();
        let check = ForwardingCheck {
            alias: "service@localhost",
            to: None,
            wait: Duration::from_secs(30),
        };
        let result = check_forwarding(&settings, store, check, &mut out).await;
        (
            result.map_err(|e| e.to_string()),
            String::from_utf8(out).expect("utf-8"),
        )
    });
    let raw = eventually("the test message at the provider", || async {
        captured(&provider).await.into_iter().next()
    })
    .await;
    dovecot.append("INBOX", &[raw], None).await;
    let (result, out) = check.await.expect("the check");
    eprintln!("{out}");
    result.expect("arrived");
    assert!(out.contains("through imap for service@localhost"), "{out}");
    let rows = processed(&app).await;
    assert_eq!(rows[0]["outcome"], "ignored: loop", "{}", rows[0]);
    assert!(app.records("Service").await.is_empty());
    app.stop().await;
    provider.stop().await;
}
