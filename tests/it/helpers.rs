//! `spawn_app()` and friends: a real service on port 0 over a real database
//! (a fresh SQLite file, or a fresh PostgreSQL database from `DATABASE_URL`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emailin::app::App;
use emailin::config::Settings;
use emailin::store::Store;
use mail_send::SmtpClientBuilder;
use mail_send::smtp::message::{Address, Message, Parameters};
use serde_json::Value;
use sqlx::Connection;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn(Backend)`;
/// the PostgreSQL ones are reported ignored where it is absent (see `build.rs`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[cfg_attr(emailin_no_postgres, ignore = "skipped: PostgreSQL is absent (DATABASE_URL is not set)")]
                async fn $name() {
                    if $crate::helpers::postgres_url().is_some() {
                        super::$name($crate::helpers::Backend::Postgres).await;
                    }
                }
            )*
        }
    };
}

/// `DATABASE_URL`, or `None` with a "skipped" line. In CI its absence fails the test.
pub fn postgres_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("DATABASE_URL must be set in CI: PostgreSQL tests may not be skipped")
        }
        _ => {
            eprintln!("skipped: PostgreSQL test (DATABASE_URL is not set)");
            None
        }
    }
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/emailin.db", dir.path().display());
                Self {
                    url,
                    _dir: Some(dir),
                    pg_admin: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_url().expect("DATABASE_URL");
                let name = format!("emailin_t_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("connect to DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.split('?').next().unwrap_or(&admin);
                let (server, _) = base
                    .rsplit_once('/')
                    .expect("DATABASE_URL has a database name");
                Self {
                    url: format!("{server}/{name}"),
                    _dir: None,
                    pg_admin: Some((admin, name)),
                }
            }
        }
    }

    /// A database another test app already created (a replica's view).
    pub fn existing(url: String) -> Self {
        Self {
            url,
            _dir: None,
            pg_admin: None,
        }
    }

    /// Drops a PostgreSQL test database; SQLite files go with their temp dir.
    pub async fn drop_db(&self) {
        if let Some((admin, name)) = &self.pg_admin
            && let Ok(mut conn) = sqlx::PgConnection::connect(admin).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Settings for a test: defaults, ports 0, this database.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut s = Settings::defaults().expect("defaults");
    s.database.url = db.url.clone();
    s.database.max_connections = 4;
    s.smtp.listen = "127.0.0.1:0".parse().expect("addr");
    s.http.listen = "127.0.0.1:0".parse().expect("addr");
    s.processing.poll_interval_secs = 1;
    s
}

pub struct TestApp {
    /// An admin token, sent with every request unless a test says otherwise.
    pub admin_token: String,
    pub member_token: String,
    pub smtp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub db: TestDb,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    http: reqwest::Client,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(TestDb::new(backend).await, configure).await
}

/// A service on a database a stopped test app handed over.
pub async fn spawn_app_on_db(db: TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(db, configure).await
}

/// A further service on a database another test app created.
pub async fn spawn_app_on_url(url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(TestDb::existing(url), configure).await
}

async fn spawn_app_in(db: TestDb, configure: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let mut settings = test_settings(&db);
    configure(&mut settings);
    let app = App::build(settings).await.expect("app builds");
    let (smtp_addr, http_addr, store) = (app.smtp_addr(), app.http_addr(), app.store());
    let token = |role| {
        let store = Arc::clone(&store);
        async move {
            let token = emailin::api::auth::new_token();
            let name = format!("test-{}", uuid::Uuid::new_v4().simple());
            store
                .create_token(&name, role, &emailin::api::auth::token_hash(&token))
                .await
                .expect("token");
            token
        }
    };
    let admin_token = token(emailin::store::Role::Admin).await;
    let member_token = token(emailin::store::Role::Member).await;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        admin_token,
        member_token,
        smtp_addr,
        http_addr,
        store,
        db,
        shutdown,
        task,
        http: reqwest::Client::new(),
    }
}

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        emailin::telemetry::init(emailin::config::LogFormat::Pretty);
    }
}

impl TestApp {
    /// A connected SMTP client (EHLO done).
    pub async fn smtp(&self) -> mail_send::SmtpClient<TcpStream> {
        SmtpClientBuilder::new("127.0.0.1".to_string(), self.smtp_addr.port())
            .expect("builder")
            .implicit_tls(false)
            .helo_host("client.test")
            .timeout(Duration::from_secs(30))
            .connect_plain()
            .await
            .expect("SMTP connect")
    }

    /// Sends `raw` from `from` to `to` over a fresh SMTP session; returns the
    /// final reply (or the rejecting one).
    pub async fn send(
        &self,
        from: &str,
        to: &[&str],
        raw: &[u8],
    ) -> Result<String, mail_send::Error> {
        let mut client = self.smtp().await;
        let message = Message {
            mail_from: Address::new(from.to_string(), Parameters::default()),
            rcpt_to: to
                .iter()
                .map(|t| Address::new(t.to_string(), Parameters::default()))
                .collect(),
            body: raw.to_vec().into(),
        };
        let reply = client.send(message).await?;
        let _ = client.quit().await;
        Ok(reply.message)
    }

    /// Sends and waits until processing has handled everything stored.
    pub async fn deliver(&self, from: &str, to: &[&str], raw: &[u8]) {
        self.send(from, to, raw)
            .await
            .expect("message accepted with 250");
        self.wait_idle().await;
    }

    /// Delivers a short message from `from` (a From header value) to one
    /// alias, the envelope sender taken from it, and waits for processing.
    pub async fn post(
        &self,
        from: &str,
        to: &str,
        subject: &str,
        message_id: &str,
        extra: &[(&str, &str)],
    ) {
        let envelope_from = from
            .rsplit('<')
            .next()
            .unwrap_or(from)
            .trim_end_matches('>');
        self.deliver(
            envelope_from,
            &[to],
            &mail(from, to, subject, message_id, extra, "x"),
        )
        .await;
    }

    /// Moves a record (as the API returns it) to a stage of its pipeline
    /// through the store, as a team member would.
    pub async fn move_to_stage(&self, record: &Value, stage: &str) {
        let id = uuid::Uuid::parse_str(record["id"].as_str().expect("id")).expect("uuid");
        let change = emailin::store::RecordChange {
            stage: Some(stage.to_string()),
            ..Default::default()
        };
        self.store
            .update_record(id, &change, "test")
            .await
            .expect("stage change");
    }

    /// Waits until no stored message is pending.
    pub async fn wait_idle(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pending = self.store.pending_count().await.expect("pending count");
            if pending == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processing did not finish: {pending} messages pending"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn request(&self, path: &str) -> reqwest::Response {
        self.send_request(reqwest::Method::GET, path).await
    }

    async fn send_request(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.request_as(method, path, Some(&self.admin_token)).await
    }

    /// A JSON request with a token; status and JSON answer.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Value,
    ) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("http://{}{path}", self.http_addr))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("HTTP request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A request with the given token (or none).
    pub async fn request_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.http_addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("HTTP request")
    }

    /// A request with a JSON body and an optional token.
    pub async fn request_json_as(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.http_addr))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("HTTP request")
    }

    /// POST without a body; status and JSON answer.
    pub async fn post_json(&self, path: &str) -> (u16, Value) {
        let resp = self.send_request(reqwest::Method::POST, path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// DELETE; status and JSON answer.
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let resp = self.send_request(reqwest::Method::DELETE, path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.request(path).await;
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The contact with this address, through the API's search (`None` when there is none).
    pub async fn contact(&self, email: &str) -> Option<Value> {
        let (status, page) = self
            .get(&format!(
                "/api/v1/contacts?email={}",
                email.replace('+', "%2B")
            ))
            .await;
        assert_eq!(status, 200, "{page}");
        page["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    }

    pub async fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let resp = self.request(path).await;
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    /// Records of a pipeline, newest first, through the API.
    pub async fn records(&self, pipeline: &str) -> Vec<Value> {
        let (status, body) = self
            .get(&format!("/api/v1/records?pipeline={pipeline}&limit=500"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// One record with its conversation, through the API.
    pub async fn record(&self, id: &str) -> Value {
        let (status, body) = self.get(&format!("/api/v1/records/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Inbound rows, newest first, through the API.
    pub async fn inbound(&self, status: Option<&str>) -> Vec<Value> {
        let path = match status {
            Some(s) => format!("/api/v1/inbound?status={s}&limit=500"),
            None => "/api/v1/inbound?limit=500".to_string(),
        };
        let (code, body) = self.get(&path).await;
        assert_eq!(code, 200, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// Stops the service gracefully, leaving the database to its owner.
    pub async fn stop_keeping_db(self) {
        self.stop_into_db().await;
    }

    /// Stops the service gracefully and hands its database over, to be
    /// worked on without a service or given to the next one.
    pub async fn stop_into_db(self) -> TestDb {
        self.shutdown.cancel();
        self.task
            .await
            .expect("app task")
            .expect("app stopped cleanly");
        self.db
    }

    /// Stops the service gracefully and removes the test database.
    pub async fn stop(self) {
        self.stop_into_db().await.drop_db().await;
    }
}

/// The counts `queries` (each `SELECT COUNT(*) …`) read from the database
/// directly, over its own connection.
pub async fn count_rows(db: &TestDb, queries: &[&'static str]) -> Vec<i64> {
    let mut out = Vec::new();
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        for q in queries {
            out.push(sqlx::query_scalar(*q).fetch_one(&mut conn).await.expect(q));
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        for q in queries {
            out.push(sqlx::query_scalar(*q).fetch_one(&mut conn).await.expect(q));
        }
    }
    out
}

/// Runs `sql` (an UPDATE) with `$1` a time `days` ago and, when given,
/// `$2` an id: as if that long had passed.
pub async fn backdate(db: &TestDb, sql: &'static str, days: i64, id: Option<uuid::Uuid>) {
    let at = chrono::Utc::now() - chrono::Duration::days(days);
    if db.url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url)
            .await
            .expect("connect");
        let q = sqlx::query(sql).bind(at);
        let q = match id {
            Some(id) => q.bind(id),
            None => q,
        };
        q.execute(&mut conn).await.expect("update");
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let q = sqlx::query(sql).bind(at);
        let q = match id {
            Some(id) => q.bind(id),
            None => q,
        };
        q.execute(&mut conn).await.expect("update");
    }
}

/// Builds a raw message with CRLF line ends.
pub fn mail(
    from: &str,
    to: &str,
    subject: &str,
    message_id: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
    );
    for (k, v) in extra {
        m.push_str(&format!("{k}: {v}\r\n"));
    }
    m.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    m.push_str(&body.replace('\n', "\r\n"));
    m.push_str("\r\n");
    m.into_bytes()
}

/// The reply code carried by a mail-send error.
pub fn reply_code(err: &mail_send::Error) -> u16 {
    match err {
        mail_send::Error::UnexpectedReply(r) => r.code,
        other => panic!("expected an SMTP reply, got {other:?}"),
    }
}

/// The conversation's entries of one type ("message" or "event").
fn entries(record: &Value, kind: &str) -> Vec<Value> {
    record["conversation"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i["type"] == kind)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The conversation's message entries.
pub fn messages(record: &Value) -> Vec<Value> {
    entries(record, "message")
}

/// The conversation's event entries.
pub fn events(record: &Value) -> Vec<Value> {
    entries(record, "event")
}
