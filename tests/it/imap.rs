//! The IMAP poller against a real Dovecot started by the test on 127.0.0.1.

use std::process::Stdio;
use std::time::{Duration, Instant};

use emailin::config::{ImapAccountConfig, ImapTls, LoginMethod, Secret, Settings};
use std::path::PathBuf;

use tokio::process::{Child, Command};

use crate::helpers::{Backend, TestApp, mail, postgres_url, spawn_app_with};

/// A Dovecot of the test's own: temp Maildir, plaintext auth, one user.
pub struct Dovecot {
    dir: tempfile::TempDir,
    pub port: u16,
    /// Implicit-TLS port, when started with TLS.
    pub tls_port: Option<u16>,
    /// Submission (SMTP) port, when started with a relay for it.
    pub submission_port: Option<u16>,
    child: Option<Child>,
}

/// What a test's Dovecot serves besides plain IMAP with passwords.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// IMAPS and STARTTLS with a certificate of the test's own CA.
    pub tls: bool,
    /// XOAUTH2 and OAUTHBEARER, checking tokens at this RFC 7662
    /// introspection URL (the `username` it answers must be the user's).
    pub oauth_introspection: Option<String>,
    /// A submission service that relays what it takes to this SMTP port
    /// on 127.0.0.1 (AUTH required, as at a provider).
    pub submission_relay: Option<u16>,
}

pub const USER: &str = "support";
pub const PASSWORD: &str = "s3cret-imap";

impl Dovecot {
    /// Starts Dovecot, or returns `None` (with a "skipped" line) where it is
    /// not installed. In CI a missing Dovecot fails the test.
    pub async fn start() -> Option<Self> {
        Self::start_with(false).await
    }

    /// With `tls`, also serves IMAPS and STARTTLS with a certificate for
    /// 127.0.0.1 signed by a CA of the test's own (`ca.pem` in its folder).
    pub async fn start_with(tls: bool) -> Option<Self> {
        Self::start_options(Options {
            tls,
            ..Options::default()
        })
        .await
    }

    /// Starts Dovecot with `options`, or `None` where it is not installed.
    pub async fn start_options(options: Options) -> Option<Self> {
        let tls = options.tls;
        let binary = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "Dovecot must be installed in CI (apt-get install -y dovecot-imapd)"
            );
            eprintln!("skipped: IMAP test (dovecot is not installed)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for sub in ["run", "state", "mail"] {
            std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        }
        // Mail is stored as `nobody`; the test's folders must be reachable for it.
        run("chmod", &["755", &root.display().to_string()]).await;
        run(
            "chown",
            &["nobody:nogroup", &root.join("mail").display().to_string()],
        )
        .await;
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n"))
            .expect("passwd");
        let port = free_port();
        let tls_port = tls.then(free_port);
        let submission_port = options.submission_relay.map(|_| free_port());
        let mut mechanisms = "plain login".to_string();
        let mut extra = String::new();
        let mut protocols = "imap".to_string();
        if let Some(url) = &options.oauth_introspection {
            mechanisms.push_str(" xoauth2 oauthbearer");
            std::fs::write(
                root.join("oauth2.conf"),
                format!(
                    "introspection_mode = post\nintrospection_url = {url}\nusername_attribute = username\n\
active_attribute = active\nactive_value = true\nforce_introspection = yes\n"
                ),
            )
            .expect("oauth2 conf");
            extra.push_str(&format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}/oauth2.conf\n}}\n",
                root.display()
            ));
        }
        if let (Some(relay), Some(sub)) = (options.submission_relay, submission_port) {
            assert!(
                std::path::Path::new("/usr/lib/dovecot/submission").exists()
                    || std::env::var("CI").map_or(true, |v| v != "true"),
                "Dovecot's submission service must be installed in CI (apt-get install -y dovecot-submissiond)"
            );
            protocols.push_str(" submission");
            extra.push_str(&format!(
                "hostname = submission.test\nsubmission_relay_host = 127.0.0.1\nsubmission_relay_port = {relay}\n\
submission_relay_ssl = no\nsubmission_relay_trusted = no\n\
service submission-login {{\n  inet_listener submission {{\n    port = {sub}\n  }}\n}}\n"
            ));
        }
        let ssl = match tls_port {
            Some(_) => {
                make_certificates(root).await;
                format!(
                    "ssl = yes\nssl_cert = <{r}/server.pem\nssl_key = <{r}/server.key\n",
                    r = root.display()
                )
            }
            None => "ssl = no\n".to_string(),
        };
        let conf = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\nprotocols = {protocols}\n\
listen = 127.0.0.1\n{ssl}disable_plaintext_auth = no\nauth_mechanisms = {mechanisms}\n{extra}\
mail_location = maildir:{r}/mail/%u\ndefault_internal_user = dovecot\ndefault_login_user = dovenull\n\
passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {r}/passwd\n}}\n\
userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={r}/mail/%u\n}}\n\
service imap-login {{\n  inet_listener imap {{\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = {imaps}\n  }}\n}}\n\
service stats {{\n  unix_listener stats-reader {{\n    mode = 0666\n  }}\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n",
            r = root.display(),
            imaps = tls_port.unwrap_or(0),
        );
        std::fs::write(root.join("dovecot.conf"), conf).expect("conf");
        let mut d = Self {
            dir,
            port,
            tls_port,
            submission_port,
            child: None,
        };
        d.spawn(binary).await;
        Some(d)
    }

    async fn spawn(&mut self, binary: &str) {
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start dovecot");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "dovecot did not open its port: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (its connections drop), as an outage would.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                run("kill", &["-TERM", &pid.to_string()]).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        }
        // Let the imap processes notice their master is gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn("/usr/sbin/dovecot").await;
    }

    /// The test CA's certificate (TLS servers only).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// An account config for this server.
    pub fn account(&self, name: &str, folder: &str, alias: &str) -> ImapAccountConfig {
        ImapAccountConfig {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: Some(self.port),
            tls: ImapTls::None,
            username: USER.into(),
            auth: LoginMethod::Password,
            oauth2: None,
            password: Secret::new(PASSWORD),
            password_env: None,
            password_file: None,
            folders: vec![folder.into()],
            alias: alias.into(),
            poll_interval_secs: 1,
            after: "keep".into(),
            backfill_days: 0,
            ca_file: None,
            authserv_id: None,
        }
    }

    /// A logged-in client session (the same async-imap client the poller uses).
    pub async fn client(&self) -> emailin::imap::ImapSession {
        let account = self.account("client", "INBOX", "service@localhost");
        emailin::imap::connect(
            &account,
            &emailin::imap::Credential::Password(Secret::new(PASSWORD)),
        )
        .await
        .expect("IMAP login")
    }

    /// Appends messages to `folder` (created if needed) with optional flags.
    pub async fn append(&self, folder: &str, messages: &[Vec<u8>], flags: Option<&str>) {
        let mut s = self.client().await;
        let _ = s.create(folder).await;
        for m in messages {
            s.append(folder, flags, None, m).await.expect("APPEND");
        }
        let _ = s.logout().await;
    }

    /// UIDs and flags of `folder`, for checking what the poller did there.
    pub async fn contents(&self, folder: &str) -> Vec<(u32, Vec<String>)> {
        use futures::TryStreamExt;
        let mut s = self.client().await;
        let mailbox = s.select(folder).await.expect("SELECT");
        let mut out = Vec::new();
        if mailbox.exists > 0 {
            let fetches: Vec<_> = s
                .fetch("1:*", "(UID FLAGS)")
                .await
                .expect("FETCH")
                .try_collect()
                .await
                .expect("fetch");
            for f in fetches {
                out.push((
                    f.uid.unwrap_or(0),
                    f.flags().map(|fl| format!("{fl:?}")).collect(),
                ));
            }
        }
        let _ = s.logout().await;
        out
    }
}

/// A CA and a server certificate for 127.0.0.1, made with openssl.
async fn make_certificates(dir: &std::path::Path) {
    let d = dir.display().to_string();
    let ssl = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.replace("{d}", &d)).collect();
        async move {
            let status = Command::new("openssl")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            assert!(status.is_ok_and(|s| s.success()), "openssl {args:?} failed");
        }
    };
    ssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "{d}/ca.key",
        "-out",
        "{d}/ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=emailin test CA",
    ])
    .await;
    ssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "{d}/server.key",
        "-out",
        "{d}/server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])
    .await;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    ssl(&[
        "x509",
        "-req",
        "-in",
        "{d}/server.csr",
        "-CA",
        "{d}/ca.pem",
        "-CAkey",
        "{d}/ca.key",
        "-CAcreateserial",
        "-out",
        "{d}/server.pem",
        "-days",
        "2",
        "-extfile",
        "{d}/ext.cnf",
    ])
    .await;
}

async fn run(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().await.expect(cmd);
    assert!(status.success(), "{cmd} {args:?} failed");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Settings for a service polling `account`; Service also answers for support@acme.example.
pub fn with_account(s: &mut Settings, account: ImapAccountConfig) {
    s.aliases[1].also = vec!["support@acme.example".into()];
    s.imap = vec![account];
}

/// Waits until `n` inbound rows exist and none is pending.
pub async fn wait_for(app: &TestApp, n: usize, within: Duration) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let rows = app.inbound(None).await;
        if rows.len() >= n && rows.iter().all(|r| r["status"] != "pending") {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} stored messages within {within:?}, have {}",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn msg(i: usize, subject: &str) -> Vec<u8> {
    mail(
        &format!("Customer {i} <customer{i}@example.com>"),
        "support@acme.example",
        subject,
        &format!("imap-{i}-{}@x", subject.replace(' ', "-")),
        &[],
        "hello",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn backfill_ingests_old_mail_once_and_idle_brings_new_mail_within_two_seconds() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    dovecot
        .append("INBOX", &[msg(1, "old one"), msg(2, "old two")], None)
        .await;
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 7;
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;

    wait_for(&app, 2, Duration::from_secs(10)).await;
    // Wait for the poller to settle in IDLE, then deliver.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/api/v1/imap").await.1["items"][0]["state"] != "idle" {
        assert!(Instant::now() < deadline, "poller never reached IDLE");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let appended = Instant::now();
    dovecot.append("INBOX", &[msg(3, "new one")], None).await;
    let rows = wait_for(&app, 3, Duration::from_secs(2)).await;
    println!(
        "IDLE: new mail stored and processed {:?} after APPEND",
        appended.elapsed()
    );

    assert_eq!(rows.len(), 3, "each message once");
    assert!(
        rows.iter()
            .all(|r| r["source"] == "imap" && r["status"] == "processed")
    );
    assert_eq!(app.records("Service").await.len(), 3);
    let (_, status) = app.get("/api/v1/imap").await;
    assert_eq!(status["items"][0]["messages_stored"], 3);
    assert_eq!(status["items"][0]["last_uid"], 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn first_run_without_backfill_starts_at_the_end_of_the_mailbox() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    dovecot.append("INBOX", &[msg(1, "years old")], None).await;
    let account = dovecot.account("support", "INBOX", "service@localhost");
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    dovecot.append("INBOX", &[msg(2, "fresh")], None).await;
    let rows = wait_for(&app, 1, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.inbound(None).await.len(),
        1,
        "old mail is not flooded in"
    );
    assert_eq!(rows[0]["status"], "processed");
    assert_eq!(app.records("Service").await[0]["title"], "fresh");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn forwarded_mail_lands_in_the_alias_that_answers_for_it_with_the_customer_as_contact() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let mut account = dovecot.account("support", "INBOX", "sales@localhost");
    account.backfill_days = 1;
    let forwarded = mail(
        "Carla Customer <carla@customer.example>",
        "support@acme.example",
        "Invoice question",
        "fwd1@customer.example",
        &[("Delivered-To", "support@acme.example")],
        "hi",
    );
    let unaddressed = mail(
        "dan@customer.example",
        "someone-else@acme.example",
        "Stray",
        "stray@x",
        &[],
        "hi",
    );
    dovecot
        .append("INBOX", &[forwarded, unaddressed], None)
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;
    wait_for(&app, 2, Duration::from_secs(10)).await;

    let service = app.records("Service").await;
    assert_eq!(service.len(), 1, "Delivered-To names the Service alias");
    assert_eq!(service[0]["title"], "Invoice question");
    assert_eq!(service[0]["contact"]["email"], "carla@customer.example");
    let sales = app.records("Sales").await;
    assert_eq!(
        sales.len(),
        1,
        "no alias named: the account's default alias"
    );
    assert_eq!(sales[0]["contact"]["email"], "dan@customer.example");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn message_marked_seen_by_another_client_is_still_ingested() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 1;
    dovecot
        .append("INBOX", &[msg(1, "already read")], Some("(\\Seen)"))
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;
    let rows = wait_for(&app, 1, Duration::from_secs(10)).await;
    assert_eq!(rows[0]["status"], "processed");
    // Fetched with BODY.PEEK: a kept message's flags are untouched.
    assert_eq!(dovecot.contents("INBOX").await[0].1, ["Seen"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn move_and_delete_happen_after_the_commit() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    dovecot
        .append("Moving", &[msg(1, "to move"), msg(2, "to move too")], None)
        .await;
    dovecot
        .append("Deleting", &[msg(3, "to delete")], None)
        .await;
    dovecot.append("Processed", &[], None).await;
    let mut moving = dovecot.account("mover", "Moving", "service@localhost");
    moving.backfill_days = 1;
    moving.after = "move:Processed".into();
    let mut deleting = dovecot.account("deleter", "Deleting", "service@localhost");
    deleting.backfill_days = 1;
    deleting.after = "delete".into();
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_account(s, moving);
        s.imap.push(deleting);
    })
    .await;
    wait_for(&app, 3, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (moved, left, deleted) = (
            dovecot.contents("Processed").await,
            dovecot.contents("Moving").await,
            dovecot.contents("Deleting").await,
        );
        if moved.len() == 2 && left.is_empty() && deleted.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "moved {moved:?}, left {left:?}, deleted {deleted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.records("Service").await.len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn uidvalidity_change_adds_only_the_new_message() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let batch: Vec<Vec<u8>> = (1..=3).map(|i| msg(i, "resync")).collect();
    dovecot.append("Team", &batch, None).await;
    let mut account = dovecot.account("team", "Team", "service@localhost");
    account.backfill_days = 1;
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;
    wait_for(&app, 3, Duration::from_secs(10)).await;

    // Recreate the mailbox: same messages plus one, under a new UIDVALIDITY.
    let mut s = dovecot.client().await;
    s.delete("Team").await.expect("DELETE");
    let _ = s.logout().await;
    let mut again = batch.clone();
    again.push(msg(4, "resync"));
    dovecot.append("Team", &again, None).await;

    // The poller notices at its next IDLE renewal (10 s) and resynchronises.
    let rows = wait_for(&app, 4, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.inbound(None).await.len(),
        4,
        "nothing stored twice: {rows:?}"
    );
    assert_eq!(app.records("Service").await.len(), 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn server_outage_mid_stream_loses_nothing_and_duplicates_nothing() {
    let Some(mut dovecot) = Dovecot::start().await else {
        return;
    };
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 1;
    let first: Vec<Vec<u8>> = (0..300).map(|i| msg(i, "outage")).collect();
    dovecot.append("INBOX", &first, None).await;
    let app = spawn_app_with(Backend::Sqlite, |s| with_account(s, account)).await;
    // Cut the server while the poller works through the backlog.
    tokio::time::sleep(Duration::from_millis(150)).await;
    dovecot.restart().await;
    let second: Vec<Vec<u8>> = (300..320).map(|i| msg(i, "outage")).collect();
    dovecot.append("INBOX", &second, None).await;

    wait_for(&app, 320, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = app.inbound(None).await;
    assert_eq!(rows.len(), 320, "every message exactly once");
    assert!(rows.iter().all(|r| r["status"] == "processed"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(emailin_no_dovecot, emailin_no_postgres),
    ignore = "skipped: Dovecot or PostgreSQL is absent"
)]
async fn two_pollers_on_one_postgresql_database_store_each_message_once() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    if postgres_url().is_none() {
        return;
    }
    let mut account = dovecot.account("shared", "INBOX", "service@localhost");
    account.backfill_days = 1;
    let first: Vec<Vec<u8>> = (0..100).map(|i| msg(i, "replicas")).collect();
    dovecot.append("INBOX", &first, None).await;
    let a = spawn_app_with(Backend::Postgres, |s| with_account(s, account.clone())).await;
    // The second replica uses the first one's database.
    let url = a.db.url.clone();
    let b = spawn_app_on(url, account).await;
    let more: Vec<Vec<u8>> = (100..150).map(|i| msg(i, "replicas")).collect();
    dovecot.append("INBOX", &more, None).await;

    wait_for(&a, 150, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.inbound(None).await.len(), 150, "each message once");
    let states: Vec<String> = [&a, &b]
        .iter()
        .map(|app| async {
            app.get("/api/v1/imap").await.1["items"][0]["state"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect::<futures::future::JoinAll<_>>()
        .await;
    assert!(
        states.contains(&"standby".to_string()),
        "one replica waits for the lease: {states:?}"
    );
    b.stop_keeping_db().await;
    a.stop().await;
}

/// A second service on an existing database (a replica).
async fn spawn_app_on(url: String, account: ImapAccountConfig) -> TestApp {
    crate::helpers::spawn_app_on_url(url, |s| with_account(s, account)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn killed_mid_batch_and_restarted_every_message_is_stored_exactly_once() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    const N: usize = 1500;
    let messages: Vec<Vec<u8>> = (0..N).map(|i| msg(i, "crash")).collect();
    dovecot.append("INBOX", &messages, None).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let db_url = format!("sqlite://{}/emailin.db", dir.path().display());
    let config = dir.path().join("emailin.toml");
    std::fs::write(
        &config,
        format!(
            "[smtp]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[intake]\nbatch_max_messages = 64\n\
[[imap]]\nname = \"support\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nusername = \"{USER}\"\n\
password_env = \"SUPPORT_IMAP_PASSWORD\"\nalias = \"service@localhost\"\nbackfill_days = 1\n",
            dovecot.port
        ),
    )
    .expect("config");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_emailin"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .env("EMAILIN__DATABASE__URL", &db_url)
            .env("SUPPORT_IMAP_PASSWORD", PASSWORD)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start emailin")
    };
    let settings = {
        let mut s = Settings::defaults().expect("defaults");
        s.database.url = db_url.clone();
        s
    };
    let count = || async {
        match emailin::store::connect(&settings.database).await {
            Ok(store) => store
                .inbound_counts()
                .await
                .map(|c| c.iter().map(|(_, n)| *n).sum::<i64>())
                .unwrap_or(0),
            Err(_) => 0,
        }
    };

    // Kill -9 while the backlog is being stored.
    let mut first = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = count().await;
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "nothing stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill().await.expect("kill");
    let at_kill = count().await;
    println!("killed with {at_kill} of {N} stored");

    // The new process takes the folder over once the dead one's lease (30 s) expires.
    let mut second = start();
    let deadline = Instant::now() + Duration::from_secs(90);
    while count().await < N as i64 {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} after restart",
            count().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.kill().await.expect("kill");

    let store = emailin::store::connect(&settings.database)
        .await
        .expect("store");
    let total: i64 = store
        .inbound_counts()
        .await
        .expect("counts")
        .iter()
        .map(|(_, n)| *n)
        .sum();
    assert_eq!(total, N as i64, "every message exactly once");
    let ids: Vec<String> = (0..N).map(|i| format!("imap-{i}-crash@x")).collect();
    assert_eq!(store.stored_message_ids(&ids).await.expect("ids").len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn implicit_tls_and_starttls_with_an_extra_ca_file_and_a_refused_unknown_ca() {
    let Some(dovecot) = Dovecot::start_with(true).await else {
        return;
    };
    dovecot
        .append("INBOX", &[msg(1, "over tls"), msg(2, "over tls")], None)
        .await;
    let mut implicit = dovecot.account("implicit", "INBOX", "service@localhost");
    implicit.tls = ImapTls::Implicit;
    implicit.port = dovecot.tls_port;
    implicit.ca_file = Some(dovecot.ca_file());
    implicit.backfill_days = 1;
    let mut starttls = dovecot.account("starttls", "INBOX", "sales@localhost");
    starttls.tls = ImapTls::Starttls;
    starttls.ca_file = Some(dovecot.ca_file());
    starttls.backfill_days = 1;
    let mut untrusted = dovecot.account("untrusted", "INBOX", "sales@localhost");
    untrusted.tls = ImapTls::Implicit;
    untrusted.port = dovecot.tls_port;
    untrusted.backfill_days = 1;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.imap = vec![implicit, starttls, untrusted];
    })
    .await;

    // Both trusted accounts read the same two messages: once per pipeline.
    wait_for(&app, 4, Duration::from_secs(15)).await;
    assert_eq!(app.records("Service").await.len(), 2, "implicit TLS");
    assert_eq!(app.records("Sales").await.len(), 2, "STARTTLS");
    let (_, status) = app.get("/api/v1/imap").await;
    let untrusted = status["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["account"] == "untrusted")
        .unwrap()
        .clone();
    assert_eq!(untrusted["state"], "backoff");
    assert!(
        untrusted["last_error"].as_str().unwrap().contains("TLS"),
        "{untrusted}"
    );
    assert_eq!(untrusted["messages_stored"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn an_oversized_message_is_recorded_with_its_header_and_never_blocks_the_mailbox() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let big = mail(
        "Big Sender <big@example.com>",
        "support@acme.example",
        "huge",
        "huge@x",
        &[],
        &"y".repeat(5000),
    );
    let big_size = big.len();
    dovecot
        .append("INBOX", &[msg(1, "small"), big, msg(2, "small")], None)
        .await;
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 1;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.smtp.max_message_bytes = 2000;
        with_account(s, account);
    })
    .await;
    wait_for(&app, 3, Duration::from_secs(10)).await;
    dovecot.append("INBOX", &[msg(3, "small")], None).await;
    let rows = wait_for(&app, 4, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.inbound(None).await.len(), 4, "every message has a row");
    assert_eq!(app.records("Service").await.len(), 3, "the rest flow");

    // The oversized one: an outcome an operator sees, with its header.
    let big_row = rows
        .iter()
        .find(|r| r["status"] == "rejected")
        .expect("a rejected row")
        .clone();
    assert_eq!(big_row["outcome"], "rejected: too large");
    assert_eq!(big_row["size"], big_size as u64, "the size it had");
    assert_eq!(big_row["details"]["subject"], "huge", "{big_row}");
    assert_eq!(big_row["details"]["from"], "big@example.com");
    let (status, head) = app
        .get_bytes(&format!(
            "/api/v1/inbound/{}/raw",
            big_row["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let head = String::from_utf8(head).unwrap();
    assert!(head.contains("Message-ID: <huge@x>"), "{head}");
    assert!(!head.contains("yyyy"), "the body is not kept");

    let (_, status) = app.get("/api/v1/imap").await;
    assert_eq!(status["items"][0]["last_uid"], 4);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(emailin_no_dovecot, ignore = "skipped: Dovecot is not installed")]
async fn polled_mail_trusts_only_its_providers_dmarc_verdict() {
    let Some(dovecot) = Dovecot::start().await else {
        return;
    };
    let mut account = dovecot.account("support", "INBOX", "service@localhost");
    account.backfill_days = 1;
    account.authserv_id = Some("mx.provider.test".into());
    let with_results = |i: usize, results: &str| {
        mail(
            &format!("Customer {i} <customer{i}@bank.test>"),
            "support@acme.example",
            &format!("Message {i}"),
            &format!("ar{i}@bank.test"),
            &[("Authentication-Results", results)],
            "hello",
        )
    };
    dovecot
        .append(
            "INBOX",
            &[
                with_results(
                    1,
                    "mx.provider.test; spf=fail; dmarc=fail header.from=bank.test",
                ),
                with_results(
                    2,
                    "mx.provider.test; spf=pass; dmarc=pass header.from=bank.test",
                ),
                with_results(3, "someone.else.test; dmarc=fail header.from=bank.test"),
                [
                    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=bank.test; s=s1;\r\n\
                      h=from:subject; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hi/Fk=; b=AAAA\r\n"
                        .to_vec(),
                    with_results(4, "mx.provider.test; dmarc=pass header.from=bank.test"),
                ]
                .concat(),
            ],
            None,
        )
        .await;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_account(s, account);
        s.aliases[1].auth = emailin::config::AuthPolicy::Enforce;
        s.auth.resolver = emailin::config::ResolverKind::Static;
    })
    .await;
    let rows = wait_for(&app, 4, Duration::from_secs(10)).await;
    // DKIM is checked here (the key is not published: it cannot pass);
    // unsigned mail gets no verdict of ours.
    let verdicts: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["auth_results"].as_str())
        .collect();
    assert_eq!(verdicts.len(), 1, "{rows:?}");
    assert!(
        verdicts[0].starts_with("localhost; dkim="),
        "{}",
        verdicts[0]
    );
    assert!(!verdicts[0].contains("dkim=pass"), "{}", verdicts[0]);
    let quarantined = app.inbound(Some("quarantined")).await;
    assert_eq!(quarantined.len(), 1, "only the provider's failure counts");
    assert_eq!(quarantined[0]["outcome"], "quarantined: dmarc-fail");
    let (_, raw) = app
        .get_bytes(&format!(
            "/api/v1/inbound/{}/raw",
            quarantined[0]["id"].as_str().unwrap()
        ))
        .await;
    assert!(String::from_utf8_lossy(&raw).contains("ar1@bank.test"));
    let titles: Vec<String> = app
        .records("Service")
        .await
        .iter()
        .map(|r| r["title"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(titles, ["Message 4", "Message 3", "Message 2"]);
    app.stop().await;
}
