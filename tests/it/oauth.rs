//! OAuth 2.0 for IMAP accounts and the relay, against a real Dovecot that
//! checks every token at an introspection endpoint (RFC 7662) the test
//! runs, beside a token endpoint for the grants (RFC 6749 client
//! credentials and refresh, RFC 8628 device code), as Microsoft 365 and
//! Google provide them.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use emailin::config::{LoginMethod, OAuth2Settings, OAuthGrant, SaslMechanism, Secret, Settings};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::imap::{Dovecot, Options, USER, msg, wait_for, with_account};
use crate::replies::{eventually, spawn_relay, spawn_sender_with};

const CLIENT_ID: &str = "emailin-test";
const CLIENT_SECRET: &str = "client-s3cret";
const SCOPE: &str = "https://imap.test/.default";
/// `openssl rand -base64 32`, fixed for the test.
const KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

/// The provider: what it issued, and which grants it was asked for.
#[derive(Default)]
struct Issued {
    access: HashSet<String>,
    refresh: HashSet<String>,
    grants: Vec<String>,
    device_polls: usize,
    next: usize,
    /// Tokens the mailbox refuses though the endpoint issued them (the
    /// app was not granted the mailbox).
    refused_by_mailbox: HashSet<String>,
    /// `expires_in` of the tokens issued (default one hour).
    lifetime: Option<u64>,
}

#[derive(Clone, Default)]
struct Provider(Arc<Mutex<Issued>>);

impl Provider {
    fn issued(&self) -> std::sync::MutexGuard<'_, Issued> {
        self.0.lock().expect("provider state")
    }
}

fn refuse(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn issue(issued: &mut Issued, with_refresh: bool) -> Response {
    issued.next += 1;
    let access = format!("at-{}", issued.next);
    issued.access.insert(access.clone());
    let lifetime = issued.lifetime.unwrap_or(3600);
    let mut answer =
        json!({"access_token": access, "token_type": "Bearer", "expires_in": lifetime});
    if with_refresh {
        let refresh = format!("rt-{}", issued.next);
        issued.refresh.insert(refresh.clone());
        answer["refresh_token"] = json!(refresh);
    }
    Json(answer).into_response()
}

async fn token(State(p): State<Provider>, Form(form): Form<HashMap<String, String>>) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let mut issued = p.issued();
    issued.grants.push(field("grant_type").to_string());
    if field("client_id") != CLIENT_ID {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client");
    }
    match field("grant_type") {
        "client_credentials" => {
            if field("client_secret") != CLIENT_SECRET {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                );
            }
            if field("scope") != SCOPE {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
                );
            }
            issue(&mut issued, false)
        }
        "refresh_token" => {
            // Rotation: a refresh token is good once.
            if !issued.refresh.remove(field("refresh_token")) {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "AADSTS700082: The refresh token has expired due to inactivity.",
                );
            }
            issue(&mut issued, true)
        }
        "urn:ietf:params:oauth:grant-type:device_code" => {
            if field("device_code") != "dev-1" {
                return refuse(StatusCode::BAD_REQUEST, "invalid_grant", "unknown code");
            }
            issued.device_polls += 1;
            if issued.device_polls == 1 {
                // The person has not signed in yet.
                return refuse(StatusCode::BAD_REQUEST, "authorization_pending", "");
            }
            issue(&mut issued, true)
        }
        other => refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", other),
    }
}

async fn device(State(p): State<Provider>, Form(form): Form<HashMap<String, String>>) -> Response {
    p.issued().grants.push("device".into());
    if form.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_client", "unknown client");
    }
    Json(json!({
        "device_code": "dev-1",
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://microsoft.com/devicelogin",
        "expires_in": 60,
        "interval": 1,
        "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code WDJB-MJHT to authenticate."
    }))
    .into_response()
}

/// What Dovecot asks for each login (RFC 7662).
async fn introspect(
    State(p): State<Provider>,
    Form(form): Form<HashMap<String, String>>,
) -> Json<Value> {
    let issued = p.issued();
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let active = issued.access.contains(token) && !issued.refused_by_mailbox.contains(token);
    Json(if active {
        json!({"active": true, "username": USER})
    } else {
        json!({"active": false})
    })
}

/// Serves the provider on 127.0.0.1; its base URL.
async fn start_provider(provider: Provider) -> String {
    let app = Router::new()
        .route("/token", post(token))
        .route("/device", post(device))
        .route("/introspect", post(introspect))
        .with_state(provider);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn oauth2(base: &str, grant: OAuthGrant, mechanism: SaslMechanism) -> OAuth2Settings {
    OAuth2Settings {
        mechanism,
        grant,
        token_url: format!("{base}/token"),
        device_url: format!("{base}/device"),
        tenant: String::new(),
        client_id: CLIENT_ID.into(),
        client_secret: match grant {
            OAuthGrant::ClientCredentials => Secret::new(CLIENT_SECRET),
            OAuthGrant::RefreshToken => Secret::default(),
        },
        client_secret_env: None,
        client_secret_file: None,
        scopes: vec![SCOPE.into()],
    }
}

/// A Dovecot that checks tokens with `provider`, or `None` (skipped).
async fn dovecot(base: &str, submission_relay: Option<u16>) -> Option<Dovecot> {
    Dovecot::start_options(Options {
        oauth_introspection: Some(format!("{base}/introspect")),
        submission_relay,
        ..Options::default()
    })
    .await
}

/// The service, polling `support` on `dovecot` with `o`.
async fn poll_with(backend: Backend, dovecot: &Dovecot, o: OAuth2Settings) -> TestApp {
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.auth = LoginMethod::Oauth2;
    account.password = Secret::default();
    account.oauth2 = Some(o);
    account.backfill_days = 7;
    spawn_app_with(backend, move |s| {
        with_account(s, account);
        s.oauth.key = Secret::new(KEY);
    })
    .await
}

/// The poller's last error, once it has one.
async fn poll_error(app: &TestApp) -> String {
    let error = eventually("the poller's error", || async {
        let (_, body) = app.get("/api/v1/imap").await;
        body["items"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|m| m["last_error"].as_str())
            .map(str::to_string)
    })
    .await;
    eprintln!("the poller says: {error}");
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn an_imap_account_logs_in_with_client_credentials_by_xoauth2_and_oauthbearer() {
    let provider = Provider::default();
    let base = start_provider(provider.clone()).await;
    let Some(dovecot) = dovecot(&base, None).await else {
        return;
    };
    dovecot.append("INBOX", &[msg(1, "by xoauth2")], None).await;
    let app = poll_with(
        Backend::Sqlite,
        &dovecot,
        oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2),
    )
    .await;
    wait_for(&app, 1, Duration::from_secs(15)).await;
    let records = app.records("Service").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["title"], "by xoauth2");
    app.stop().await;

    dovecot
        .append("INBOX", &[msg(2, "by oauthbearer")], None)
        .await;
    let app = poll_with(
        Backend::Sqlite,
        &dovecot,
        oauth2(
            &base,
            OAuthGrant::ClientCredentials,
            SaslMechanism::Oauthbearer,
        ),
    )
    .await;
    wait_for(&app, 2, Duration::from_secs(15)).await;
    app.stop().await;
    let log = dovecot.log();
    assert!(
        log.contains("method=XOAUTH2") && log.contains("method=OAUTHBEARER"),
        "{log}"
    );
    assert_eq!(
        provider.issued().grants,
        ["client_credentials", "client_credentials"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn sqlite_device_login_keeps_a_sealed_refresh_token_the_poller_uses_and_rotates() {
    device_login(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
#[cfg_attr(
    emailin_no_postgres,
    ignore = "skipped: PostgreSQL is absent (DATABASE_URL is not set)"
)]
async fn postgres_device_login_keeps_a_sealed_refresh_token_the_poller_uses_and_rotates() {
    if crate::helpers::postgres_url().is_some() {
        device_login(Backend::Postgres).await;
    }
}

async fn sealed_tokens(app: &TestApp) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for account in ["imap:support"] {
        if let Some(sealed) = emailin::store::OAuthStore::oauth_token(app.store.as_ref(), account)
            .await
            .expect("read")
        {
            out.push(sealed);
        }
    }
    out
}

async fn device_login(backend: Backend) {
    let provider = Provider::default();
    let base = start_provider(provider.clone()).await;
    let Some(dovecot) = dovecot(&base, None).await else {
        return;
    };
    dovecot
        .append("INBOX", &[msg(1, "after consent")], None)
        .await;
    let o = oauth2(&base, OAuthGrant::RefreshToken, SaslMechanism::Xoauth2);
    let app = poll_with(backend, &dovecot, o.clone()).await;

    // Before anyone signed in, the status says what to run.
    let error = poll_error(&app).await;
    assert!(
        error.contains("emailin oauth login --account support"),
        "{error}"
    );
    crate::web::user(&app, "ada@acme.test", "Ada", emailin::store::Role::Admin).await;
    let mut web = crate::web::Web::new(&app);
    web.login("ada@acme.test", crate::web::PASSWORD).await;
    let (_, page, _) = web.get("/admin/inbound").await;
    assert!(
        page.contains("emailin oauth login --account support")
            && page.contains("OAuth 2.0 (XOAUTH2, refresh token)"),
        "the inbound page shows the sign-in and its error: {page}"
    );

    // The operator signs in with the device code the command prints.
    let mut settings = Settings::defaults().expect("defaults");
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.auth = LoginMethod::Oauth2;
    account.password = Secret::default();
    account.oauth2 = Some(o);
    with_account(&mut settings, account);
    settings.oauth.key = Secret::new(KEY);
    let mut out = Vec::new();
    emailin::cli::mail_accounts::oauth_login(
        &settings,
        Arc::clone(&app.store),
        "support",
        &mut out,
    )
    .await
    .expect("login");
    let out = String::from_utf8(out).expect("utf-8");
    assert!(
        out.contains("https://microsoft.com/devicelogin") && out.contains("WDJB-MJHT"),
        "{out}"
    );
    assert_eq!(provider.issued().device_polls, 2, "polled while pending");

    // Stored sealed: the refresh token is not in the row.
    let first = sealed_tokens(&app).await;
    assert_eq!(first.len(), 1);
    assert!(
        !first[0].windows(4).any(|w| w == b"rt-1"),
        "the refresh token is stored in the clear"
    );

    // The poller (retrying with backoff) now logs in with a token from a
    // refresh: the message arrives, and the rotated refresh token replaced
    // the first one.
    let rows = wait_for(&app, 1, Duration::from_secs(40)).await;
    assert_eq!(rows.len(), 1);
    let after = sealed_tokens(&app).await;
    assert_ne!(after, first, "the rotated refresh token is stored");
    {
        let issued = provider.issued();
        assert!(!issued.refresh.contains("rt-1"), "rt-1 was used up");
        assert!(issued.grants.iter().any(|g| g == "refresh_token"));
    }

    // An unknown account is named.
    let err = emailin::cli::mail_accounts::oauth_login(
        &settings,
        Arc::clone(&app.store),
        "sales",
        &mut Vec::new(),
    )
    .await
    .expect_err("no such account");
    assert!(err.to_string().contains("those with it: support"), "{err}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn expired_consent_a_wrong_scope_and_a_refused_token_are_named_in_the_status() {
    let provider = Provider::default();
    let base = start_provider(provider.clone()).await;
    let Some(dovecot) = dovecot(&base, None).await else {
        return;
    };

    // Consent expired: the stored refresh token is refused by the provider.
    let app = poll_with(
        Backend::Sqlite,
        &dovecot,
        oauth2(&base, OAuthGrant::RefreshToken, SaslMechanism::Xoauth2),
    )
    .await;
    let settings = {
        let mut s = Settings::defaults().expect("defaults");
        s.oauth.key = Secret::new(KEY);
        s
    };
    let bytes = settings.oauth.resolve_key().expect("key").expect("set");
    let sealed = emailin::oauth::SealKey::new(&bytes)
        .expect("key")
        .seal("imap:support", b"rt-long-gone")
        .expect("seal");
    emailin::store::OAuthStore::set_oauth_token(app.store.as_ref(), "imap:support", &sealed)
        .await
        .expect("store");
    let error = eventually("the invalid_grant error", || async {
        let e = poll_error(&app).await;
        e.contains("invalid_grant").then_some(e)
    })
    .await;
    assert!(
        error.contains("consent expired or was revoked")
            && error.contains("emailin oauth login --account support")
            && error.contains("AADSTS700082"),
        "{error}"
    );
    app.stop().await;

    // A scope the client is not granted.
    let mut wrong = oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2);
    wrong.scopes = vec!["https://graph.microsoft.com/.default".into()];
    let app = poll_with(Backend::Sqlite, &dovecot, wrong).await;
    let error = poll_error(&app).await;
    assert!(
        error.contains("invalid_scope") && error.contains("graph.microsoft.com"),
        "{error}"
    );
    app.stop().await;

    // The endpoint issues a token but the mailbox refuses it (the app was
    // not granted this mailbox): the server's refusal is shown.
    provider.issued().refused_by_mailbox.insert("at-1".into());
    let app = poll_with(
        Backend::Sqlite,
        &dovecot,
        oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2),
    )
    .await;
    let error = poll_error(&app).await;
    assert!(
        error.contains("login with an OAuth token failed") && error.contains("XOAUTH2"),
        "{error}"
    );
    app.stop().await;
}

/// `customer` writes to Sales on `app` and the new record replies: the
/// record and the queued reply.
async fn reply_to_new_mail(app: &TestApp, customer: &str, message_id: &str) -> (Value, Value) {
    app.post(customer, "sales@localhost", "Order", message_id, &[])
        .await;
    let record = app.records("Sales").await.remove(0);
    let (status, queued) = app
        .send_json(
            reqwest::Method::POST,
            &format!(
                "/api/v1/records/{}/replies",
                record["id"].as_str().expect("id")
            ),
            &app.admin_token,
            json!({"text": "On its way."}),
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    (record, queued)
}

/// The service, replying through a submission server on `port` with `o`.
async fn sender(port: u16, o: OAuth2Settings) -> TestApp {
    spawn_sender_with(Backend::Sqlite, port, move |s| {
        s.outbound.username = USER.into();
        s.outbound.auth = LoginMethod::Oauth2;
        s.outbound.oauth2 = Some(o);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn replies_go_out_through_a_submission_server_that_takes_only_oauth_tokens() {
    let provider = Provider::default();
    let base = start_provider(provider.clone()).await;
    let customer = "ann@customer.example";
    // Where the submission server hands the mail on: a second service.
    let receiver = spawn_relay(0, &[customer]).await;
    let Some(dovecot) = dovecot(&base, Some(receiver.smtp_addr.port())).await else {
        return;
    };
    let submission = dovecot.submission_port.expect("submission port");
    // A client secret the provider refuses: the reply waits, saying why.
    let mut bad = oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2);
    bad.client_secret = Secret::new("expired-secret");
    let app = sender(submission, bad).await;
    let (record, queued) = reply_to_new_mail(&app, customer, "o1@customer.example").await;
    let message_id = queued["message_id"].as_str().expect("id").to_string();
    let waiting = eventually("a failed attempt", || async {
        let d = crate::replies::delivery(&app, &record, &message_id).await;
        d["last_reply"].is_string().then_some(d)
    })
    .await;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    let said = waiting["last_reply"].as_str().unwrap_or_default();
    assert!(
        said.contains("invalid_client") && said.contains("AADSTS7000215"),
        "{said}"
    );
    app.stop().await;

    let app = sender(
        submission,
        oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2),
    )
    .await;
    let received =
        crate::replies::reply_from_a_new_record(&app, &receiver, customer, "sales@localhost").await;
    assert_eq!(
        received["mail_from"].as_str().map(|s| s.is_empty()),
        Some(false)
    );
    assert!(
        provider
            .issued()
            .grants
            .iter()
            .any(|g| g == "client_credentials"),
        "the relay login used a token"
    );
    app.stop().await;

    // OAUTHBEARER (RFC 7628) at the same server.
    let app = sender(
        submission,
        oauth2(
            &base,
            OAuthGrant::ClientCredentials,
            SaslMechanism::Oauthbearer,
        ),
    )
    .await;
    reply_to_new_mail(&app, customer, "q2@customer.example").await;
    eventually("the second reply at the receiver", || async {
        (receiver.inbound(None).await.len() == 2).then_some(())
    })
    .await;
    let log = dovecot.log();
    assert!(
        log.contains("method=XOAUTH2") && log.contains("method=OAUTHBEARER"),
        "{log}"
    );
    app.stop().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_reused_while_fresh_and_fetched_again_before_it_expires() {
    let provider = Provider::default();
    let base = start_provider(provider.clone()).await;
    let app = spawn_app_with(Backend::Sqlite, |_| {}).await;
    let source = emailin::oauth::TokenSource::new(
        "support",
        oauth2(&base, OAuthGrant::ClientCredentials, SaslMechanism::Xoauth2),
        Arc::clone(&app.store) as Arc<dyn emailin::store::OAuthStore>,
        None,
    )
    .expect("source");
    // An hour's token: fetched once, then reused.
    let first = source.access_token().await.expect("token");
    assert_eq!(source.access_token().await.expect("token"), first);
    assert_eq!(provider.issued().grants.len(), 1);

    // A two-second token is fetched again after half its life, before it
    // runs out (long ones five minutes before).
    provider.issued().lifetime = Some(2);
    source.forget().await;
    let short = source.access_token().await.expect("token");
    assert_eq!(source.access_token().await.expect("token"), short);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let next = source.access_token().await.expect("token");
    assert_ne!(next, short, "fetched again before expiry");
    assert_eq!(provider.issued().grants.len(), 3);
    app.stop().await;
}
