//! Sending-domain checks over static DNS: `emailin check-domain`, the
//! check before a domain's first reply, and the admin page's red mark.

use emailin::config::{ResolverKind, Settings, StaticTxtRecord};
use emailin::outbound::dkim::Dkim;
use reqwest::StatusCode;

use crate::dkim::key_file;
use crate::helpers::{Backend, TestApp};
use crate::replies::{reply_from_a_new_record, spawn_relay, spawn_sender_with};
use crate::web::{PASSWORD, Web, user};

const CUSTOMER: &str = "ann@customer.example";

/// A signing key, and the DNS of `acme.test` publishing it (or not).
struct Domain {
    _dir: tempfile::TempDir,
    key: String,
    record: String,
}

fn domain() -> Domain {
    let dir = tempfile::tempdir().expect("dir");
    let path = key_file(dir.path(), "ed25519", "mail");
    let dkim =
        Dkim::from_pem(&std::fs::read(&path).expect("pem"), "acme.test", "mail").expect("key");
    Domain {
        key: path.to_string_lossy().into_owned(),
        record: dkim.record(),
        _dir: dir,
    }
}

fn records(d: &Domain, publish: bool) -> Vec<StaticTxtRecord> {
    let txt = |name: &str, value: &str| StaticTxtRecord {
        name: name.into(),
        value: value.into(),
    };
    let mut out = vec![txt("acme.test", "v=spf1 ip4:127.0.0.1 -all")];
    if publish {
        out.push(txt("mail._domainkey.acme.test", &d.record));
        out.push(txt("_dmarc.acme.test", "v=DMARC1; p=reject"));
    }
    out
}

/// Sending through a relay on 127.0.0.1, signing as acme.test, over static DNS.
fn sending(s: &mut Settings, d: &Domain, publish: bool) {
    s.outbound.host = "127.0.0.1".into();
    s.outbound.dkim_domain = "acme.test".into();
    s.outbound.dkim_selector = "mail".into();
    s.outbound.dkim_private_key_file = d.key.clone();
    s.auth.resolver = ResolverKind::Static;
    s.auth.static_records = records(d, publish);
    s.aliases[0].address = "sales@acme.test".into();
}

#[tokio::test]
async fn check_domain_prints_each_result_and_what_to_publish() {
    let d = domain();
    let mut settings = Settings::defaults().expect("defaults");
    sending(&mut settings, &d, true);
    let mut out = Vec::new();
    emailin::cli::mail_accounts::check_domain(&settings, "acme.test", &mut out)
        .await
        .expect("verified");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(out.contains("acme.test is verified"), "{out}");
    for line in [
        "SPF    pass     acme.test's SPF passes for the relay 127.0.0.1",
        "DKIM   pass     the key at mail._domainkey.acme.test is the signing key",
        "DMARC  pass     _dmarc.acme.test (p=reject): From acme.test is aligned (relaxed) with DKIM d=acme.test",
    ] {
        assert!(out.contains(line), "{line:?} in\n{out}");
    }

    // Without the key and DMARC records, and from a domain SPF does not cover.
    sending(&mut settings, &d, false);
    let mut out = Vec::new();
    let err = emailin::cli::mail_accounts::check_domain(&settings, "acme.test", &mut out)
        .await
        .expect_err("not verified");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        err.to_string().contains("acme.test is not verified"),
        "{err}"
    );
    assert!(
        out.contains(&format!(
            "publish: mail._domainkey.acme.test TXT \"{}\"",
            d.record
        )),
        "{out}"
    );
    assert!(
        out.contains("publish: _dmarc.acme.test TXT \"v=DMARC1; p=none"),
        "{out}"
    );
    let mut out = Vec::new();
    emailin::cli::mail_accounts::check_domain(&settings, "other.test", &mut out)
        .await
        .expect_err("no SPF at other.test");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("SPF    FAIL     other.test has no SPF record"),
        "{out}"
    );
    assert!(
        out.contains("publish: other.test TXT \"v=spf1 ip4:127.0.0.1 -all\""),
        "{out}"
    );
}

/// The report's `checked` time on the admin page, for `domain`.
fn checked_at(html: &str, domain: &str) -> chrono::DateTime<chrono::Utc> {
    let row = html
        .split("<tr>")
        .find(|r| r.contains(&format!(">{domain}<")))
        .expect("the domain's row");
    let at = row
        .split("datetime=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a checked time");
    chrono::DateTime::parse_from_rfc3339(at)
        .expect("rfc3339")
        .with_timezone(&chrono::Utc)
}

async fn admin_page(app: &TestApp) -> String {
    user(app, "ada@acme.test", "Ada", emailin::store::Role::Admin).await;
    let mut web = Web::new(app);
    web.login("ada@acme.test", PASSWORD).await;
    let (status, html, _) = web.get("/admin/domains").await;
    assert_eq!(status, StatusCode::OK);
    html
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_is_checked_before_its_first_reply_and_marked_red_until_verified() {
    let d = domain();
    let relay = spawn_relay(0, &[CUSTOMER]).await;
    let app = spawn_sender_with(Backend::Sqlite, relay.smtp_addr.port(), |s| {
        sending(s, &d, false);
    })
    .await;
    let before = chrono::Utc::now();
    reply_from_a_new_record(&app, &relay, CUSTOMER, "sales@acme.test").await;
    let delivered = chrono::Utc::now();
    let html = admin_page(&app).await;
    let at = checked_at(&html, "acme.test");
    assert!(
        before <= at && at <= delivered,
        "checked while the reply was sent ({before} ≤ {at} ≤ {delivered})"
    );
    assert!(html.contains("✗ Unverified"), "the red mark");
    assert!(
        html.contains(&format!(
            "mail._domainkey.acme.test TXT &quot;{}&quot;",
            d.record
        )) || html.contains(&format!("mail._domainkey.acme.test TXT \"{}\"", d.record)),
        "what to publish"
    );
    app.stop().await;

    // Published: verified, no red mark for it.
    let app = spawn_sender_with(Backend::Sqlite, relay.smtp_addr.port(), |s| {
        sending(s, &d, true);
        s.aliases.truncate(1);
        s.outbound.system_from = "emailin@acme.test".into();
    })
    .await;
    let html = admin_page(&app).await;
    assert!(html.contains("✓ Verified"), "verified");
    assert!(!html.contains("✗ Unverified"), "no red mark");
    app.stop().await;
    relay.stop().await;
}
