//! DKIM signing of what the service sends, checked by a second service
//! that receives it: its sender authentication verifies the signature
//! against the public key in its static DNS, as a receiving provider would.

use emailin::config::{ResolverKind, StaticTxtRecord};
use emailin::outbound::dkim::Dkim;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;
use crate::replies::{spawn_relay, spawn_sender_with};

on_both_backends!(replies_are_signed_with_rsa_and_ed25519_keys_a_receiver_verifies);

const CUSTOMER: &str = "ann@customer.example";

/// A PEM private key of `kind` (`rsa` 2048 bits, or `ed25519`), made by
/// OpenSSL as an operator would.
pub fn key_file(dir: &std::path::Path, kind: &str, name: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let mut cmd = std::process::Command::new("openssl");
    cmd.arg("genpkey").arg("-out").arg(&path);
    match kind {
        "rsa" => cmd.args(["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        _ => cmd.args(["-algorithm", "ED25519"]),
    };
    let out = cmd
        .output()
        .expect("openssl runs (Debian's openssl package)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A relay that checks DKIM for `acme.test` against `record` at `mail._domainkey`.
async fn checking_relay(record: &str) -> TestApp {
    let relay = spawn_relay(0, &[CUSTOMER]).await;
    let port = relay.smtp_addr.port();
    relay.stop().await;
    let record = record.to_string();
    spawn_app_with(Backend::Sqlite, move |s| {
        s.smtp.listen = format!("127.0.0.1:{port}").parse().expect("addr");
        let template = s.aliases[0].clone();
        s.aliases = vec![emailin::config::AliasConfig {
            address: CUSTOMER.into(),
            ..template
        }];
        s.auth.trusted_networks = vec![];
        s.auth.resolver = ResolverKind::Static;
        s.auth.static_records = vec![StaticTxtRecord {
            name: "mail._domainkey.acme.test".into(),
            value: record,
        }];
    })
    .await
}

async fn sender(backend: Backend, relay: &TestApp, key: &std::path::Path) -> TestApp {
    let key = key.to_string_lossy().into_owned();
    spawn_sender_with(backend, relay.smtp_addr.port(), move |s| {
        s.outbound.domain = "acme.test".into();
        s.outbound.dkim_domain = "acme.test".into();
        s.outbound.dkim_selector = "mail".into();
        s.outbound.dkim_private_key_file = key;
    })
    .await
}

/// Sends a reply from a new record; the receiver's verdict on it.
async fn verdict(app: &TestApp, relay: &TestApp) -> String {
    let received =
        crate::replies::reply_from_a_new_record(app, relay, CUSTOMER, "sales@localhost").await;
    received["auth_results"]
        .as_str()
        .expect("the receiver checked the reply")
        .to_string()
}

async fn replies_are_signed_with_rsa_and_ed25519_keys_a_receiver_verifies(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    for kind in ["rsa", "ed25519"] {
        let path = key_file(dir.path(), kind, kind);
        let pem = std::fs::read(&path).expect("pem");
        let dkim = Dkim::from_pem(&pem, "acme.test", "mail").expect("key");
        assert!(
            dkim.record().contains(&format!("k={kind};")),
            "{}",
            dkim.record()
        );

        let relay = checking_relay(&dkim.record()).await;
        let app = sender(backend, &relay, &path).await;
        let results = verdict(&app, &relay).await;
        assert!(
            results.contains("dkim=pass") && results.contains("header.d=acme.test"),
            "{kind}: {results}"
        );
        app.stop().await;
        relay.stop().await;

        // The same mail against another key's record: the receiver refuses it.
        let other = Dkim::from_pem(
            &std::fs::read(key_file(dir.path(), kind, &format!("{kind}-other"))).expect("pem"),
            "acme.test",
            "mail",
        )
        .expect("key");
        let relay = checking_relay(&other.record()).await;
        let app = sender(backend, &relay, &path).await;
        let results = verdict(&app, &relay).await;
        assert!(
            results.contains("dkim=fail"),
            "{kind} against another key: {results}"
        );
        app.stop().await;
        relay.stop().await;
    }

    // A key file that holds no key stops the service at start, naming it.
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a key").expect("write");
    let db = crate::helpers::TestDb::new(backend).await;
    let mut settings = crate::helpers::test_settings(&db);
    settings.outbound.dkim_domain = "acme.test".into();
    settings.outbound.dkim_selector = "mail".into();
    settings.outbound.dkim_private_key_file = bad.to_string_lossy().into_owned();
    let err = emailin::app::App::build(settings)
        .await
        .err()
        .expect("refused at start");
    assert!(err.to_string().contains("dkim_private_key_file"), "{err}");
    db.drop_db().await;
}
