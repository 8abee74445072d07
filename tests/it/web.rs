//! The web UI over the real router: login (CSRF, wrong password, rate
//! limit, cookie attributes), sessions (redirects, logout, restart,
//! revocation), CSRF refusal of every form, admin pages for admins only,
//! and the record actions a person takes through forms.

use emailin::api::auth::hash_password;
use emailin::store::{Role, UserView};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};

use crate::helpers::{Backend, TestApp, events, messages, spawn_app, spawn_app_on_db};
use crate::on_both_backends;

on_both_backends!(
    pages_need_a_session_and_login_needs_the_right_password,
    every_form_needs_its_csrf_token_and_admin_pages_need_an_admin,
    sessions_survive_a_restart_and_end_at_logout_or_password_change,
    a_person_works_a_record_through_the_forms,
    an_invited_user_sets_a_password_once_through_the_link,
    webhooks_and_own_settings_are_managed_on_their_pages,
);

pub const PASSWORD: &str = "correct horse battery";

/// A user who can log in.
pub async fn user(app: &TestApp, email: &str, name: &str, role: Role) -> UserView {
    let user = app
        .store
        .create_user(email, name, role)
        .await
        .expect("user");
    let hash = hash_password(PASSWORD).expect("hash");
    app.store
        .set_password(user.id, Some(&hash))
        .await
        .expect("password");
    user
}

/// A browser without JS: keeps cookies, never follows redirects.
pub struct Web {
    base: String,
    http: reqwest::Client,
    cookies: Vec<(String, String)>,
}

fn set_cookies(resp: &Response) -> Vec<(String, String, String)> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = pair.split_once('=')?;
            Some((k.to_string(), val.to_string(), attrs.to_string()))
        })
        .collect()
}

/// The value of the first hidden `csrf` field of a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    html[at..at + 64].to_string()
}

impl Web {
    pub fn new(app: &TestApp) -> Self {
        Web {
            base: format!("http://{}", app.http_addr),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, resp: &Response) {
        for (k, v, _) in set_cookies(resp) {
            self.cookies.retain(|(name, _)| *name != k);
            if !v.is_empty() {
                self.cookies.push((k, v));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == "emailin_session")
            .map(|(_, v)| v.clone())
    }

    /// A GET with the session's cookies, answered as it came.
    pub async fn get_raw(&mut self, path: &str) -> Response {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.keep(&resp);
        resp
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String, Option<String>) {
        let resp = self.get_raw(path).await;
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, resp.text().await.expect("body"), location)
    }

    pub async fn post_raw(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .form(form)
            .send()
            .await
            .expect("POST");
        self.keep(&resp);
        resp
    }

    /// Posts a form with the CSRF token of the page at `page`.
    pub async fn post(
        &mut self,
        page: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let (_, html, _) = self.get(page).await;
        let token = csrf_of(&html);
        let mut fields = vec![("csrf", token.as_str())];
        fields.extend_from_slice(form);
        let resp = self.post_raw(path, &fields).await;
        let status = resp.status();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, resp.text().await.expect("body"), location)
    }

    pub async fn login(&mut self, email: &str, password: &str) -> Response {
        let (status, html, _) = self.get("/login").await;
        assert_eq!(status, StatusCode::OK);
        let token = csrf_of(&html);
        self.post_raw(
            "/login",
            &[("csrf", &token), ("email", email), ("password", password)],
        )
        .await
    }
}

async fn pages_need_a_session_and_login_needs_the_right_password(backend: Backend) {
    let app = spawn_app(backend).await;
    user(&app, "ana@acme.test", "Ana", Role::Member).await;
    let mut web = Web::new(&app);

    for page in ["/", "/contacts", "/records/1", "/admin/users", "/events"] {
        let (status, _, location) = web.get(page).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        let location = location.expect("a Location");
        assert!(location.starts_with("/login"), "{page} → {location}");
    }
    let (_, _, location) = web.get("/contacts?q=x").await;
    assert_eq!(location.as_deref(), Some("/login?next=%2Fcontacts%3Fq%3Dx"));

    // The login page: labelled inputs, the language, a double-submit token.
    let (status, html, _) = web.get("/login").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(html.contains(r#"<label for="email">"#) && html.contains(r#"<label for="password">"#));

    // Without the page's token: 403, no session.
    let resp = web
        .post_raw(
            "/login",
            &[("email", "ana@acme.test"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(web.session().is_none());

    // The wrong password: the form again, with an error and no session.
    let resp = web.login("ana@acme.test", "not the password").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        set_cookies(&resp)
            .iter()
            .all(|(k, _, _)| k != "emailin_session")
    );
    let html = resp.text().await.expect("body");
    assert!(
        html.contains("That email and password do not match."),
        "{html}"
    );
    // An unknown address gets the same answer.
    let resp = web.login("nobody@acme.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // The right one: 303 with an HttpOnly, SameSite=Lax session cookie.
    let resp = web.login("ANA@acme.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/");
    let cookies = set_cookies(&resp);
    let (_, value, attrs) = cookies
        .iter()
        .find(|(k, _, _)| k == "emailin_session")
        .expect("a session cookie");
    assert_eq!(value.len(), 64);
    assert!(
        attrs.contains("HttpOnly") && attrs.contains("SameSite=Lax"),
        "{attrs}"
    );
    assert!(!attrs.contains("Secure"), "plain HTTP: {attrs}");
    let (status, html, _) = web.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sales") && html.contains("Ana"), "{html}");

    // Behind a TLS proxy the cookie is Secure.
    let mut proxied = Web::new(&app);
    let (_, html, _) = proxied.get("/login").await;
    let resp = proxied
        .http
        .post(format!("{}/login", proxied.base))
        .header(COOKIE, proxied.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[
            ("csrf", csrf_of(&html).as_str()),
            ("email", "ana@acme.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .expect("POST");
    let cookies = set_cookies(&resp);
    let (_, _, attrs) = cookies
        .iter()
        .find(|(k, _, _)| k == "emailin_session")
        .expect("a session cookie");
    assert!(attrs.contains("Secure"), "{attrs}");

    // Five failures for one address: the sixth try gets 429, even with the
    // right password, from any client.
    let mut attacker = Web::new(&app);
    for _ in 0..5 {
        let resp = attacker.login("ana@acme.test", "guess guess guess").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = attacker.login("ana@acme.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("Too many failed logins")
    );
    assert!(attacker.session().is_none());

    // Assets: hashed names, cached for a year.
    let (_, html, _) = web.get("/").await;
    let at = html.find("/assets/htmx.").expect("htmx is linked");
    let path = &html[at..at + html[at..].find('"').expect("end")];
    let resp = reqwest::get(format!("http://{}{path}", app.http_addr))
        .await
        .expect("asset");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(resp.text().await.expect("js").contains("htmx"));
    app.stop().await;
}

async fn every_form_needs_its_csrf_token_and_admin_pages_need_an_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    user(&app, "ana@acme.test", "Ana", Role::Member).await;
    user(&app, "root@acme.test", "Root", Role::Admin).await;
    app.post(
        "Carla <carla@customer.test>",
        "sales@localhost",
        "Quote",
        "q1@customer.test",
        &[],
    )
    .await;
    let mut member = Web::new(&app);
    assert_eq!(
        member.login("ana@acme.test", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );

    // Every state-changing route, without a token and with a wrong one.
    let forms = [
        "/records/1/comment",
        "/records/1/stage",
        "/records/1/reply",
        "/records/1/merge",
        "/records/1/split",
        "/records/1/forward",
        "/logout",
        "/admin/users",
        "/admin/blocked",
        "/admin/domains/check",
        "/admin/domains/forwarding",
    ];
    for path in forms {
        let resp = member.post_raw(path, &[("text", "hi")]).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{path} without a token"
        );
        let resp = member
            .post_raw(path, &[("csrf", &"0".repeat(64)), ("text", "hi")])
            .await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "{path} with a wrong token"
        );
    }
    let record = &app.records("Sales").await[0];
    let detail = app.record(record["id"].as_str().expect("id")).await;
    assert!(
        messages(&detail)
            .iter()
            .all(|m| m["direction"] != "comment"),
        "no comment was stored"
    );

    // Members: 403 on every admin page and action, even with the token.
    for page in [
        "/admin/inbound",
        "/admin/users",
        "/admin/tokens",
        "/admin/blocked",
        "/admin/aliases",
        "/admin/pipelines",
        "/admin/domains",
        "/admin/domains/forwarding?alias=sales%40localhost",
    ] {
        let (status, html, _) = member.get(page).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
        assert!(html.contains("Admins only"));
    }
    let (status, _, _) = member
        .post("/", "/admin/blocked", &[("entry", "spam.test")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, board, _) = member.get("/").await;
    assert!(
        !board.contains("/admin/users"),
        "no admin links for members"
    );

    // Admins: every page, and the action works.
    let mut admin = Web::new(&app);
    admin.login("root@acme.test", PASSWORD).await;
    let stored = app.inbound(None).await;
    let raw_path = format!(
        "/admin/inbound/{}/raw",
        stored[0]["id"].as_str().expect("id")
    );
    let (status, raw, _) = admin.get(&raw_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(raw.contains("Message-ID: <q1@customer.test>"), "{raw}");
    assert_eq!(member.get(&raw_path).await.0, StatusCode::FORBIDDEN);
    for page in [
        "/admin/inbound",
        "/admin/users",
        "/admin/tokens",
        "/admin/blocked",
        "/admin/aliases",
        "/admin/pipelines",
        "/contacts",
    ] {
        let (status, _, _) = admin.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
    }
    let (status, _, location) = admin
        .post(
            "/admin/blocked",
            "/admin/blocked",
            &[("entry", "Spam.Test")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/admin/blocked?done=saved"));
    let blocked = app.store.list_blocked_senders().await.expect("list");
    assert!(blocked.iter().any(|b| b.entry == "spam.test"));
    // A refused action shows the page again with the API's message.
    let (status, html, _) = admin
        .post(
            "/admin/blocked",
            "/admin/blocked",
            &[("entry", "not an address")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        html.contains("entry: must be an address or a domain"),
        "{html}"
    );

    // A user made on the page can log in.
    let (status, _, _) = admin
        .post(
            "/admin/users",
            "/admin/users",
            &[
                ("email", "new@acme.test"),
                ("name", "New Person"),
                ("role", "member"),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let mut newcomer = Web::new(&app);
    assert_eq!(
        newcomer
            .login("new@acme.test", "a long enough password")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    // A token made on the page is shown once and works on the API.
    let (status, html, _) = admin
        .post(
            "/admin/tokens",
            "/admin/tokens",
            &[("name", "crm"), ("role", "member")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let at = html.find("emi_").expect("the token is shown");
    let token = &html[at..at + 68];
    let resp = app
        .request_as(reqwest::Method::GET, "/api/v1/records", Some(token))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    app.stop().await;
}

async fn sessions_survive_a_restart_and_end_at_logout_or_password_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = user(&app, "ana@acme.test", "Ana", Role::Member).await;
    let mut web = Web::new(&app);
    web.login("ana@acme.test", PASSWORD).await;
    let cookie = web.session().expect("session");

    // The same cookie works on a restarted service over the same database.
    let db = app.stop_into_db().await;
    let app = spawn_app_on_db(db, |_| {}).await;
    let mut again = Web::new(&app);
    again.cookies = vec![("emailin_session".into(), cookie.clone())];
    let (status, _, _) = again.get("/").await;
    assert_eq!(status, StatusCode::OK, "the session survived the restart");

    // Logout revokes it in the database: replaying the cookie fails.
    let (status, _, location) = again.post("/", "/logout", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login"));
    let mut replay = Web::new(&app);
    replay.cookies = vec![("emailin_session".into(), cookie)];
    let (status, _, _) = replay.get("/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // A new password ends every session of the user.
    let mut web = Web::new(&app);
    web.login("ana@acme.test", PASSWORD).await;
    assert_eq!(web.get("/").await.0, StatusCode::OK);
    let hash = hash_password("another long password").expect("hash");
    app.store
        .set_password(ana.id, Some(&hash))
        .await
        .expect("set");
    assert_eq!(web.get("/").await.0, StatusCode::SEE_OTHER);
    app.stop().await;
}

async fn a_person_works_a_record_through_the_forms(backend: Backend) {
    let app = spawn_app(backend).await;
    user(&app, "ana@acme.test", "Ana", Role::Member).await;
    user(&app, "ben@acme.test", "Ben", Role::Member).await;
    app.post(
        "山田 太郎 <yamada@customer.jp>",
        "sales@localhost",
        "見積もりのお願い",
        "q1@customer.jp",
        &[],
    )
    .await;
    let mut web = Web::new(&app);
    web.login("ana@acme.test", PASSWORD).await;

    // The board shows the card, unread, in the first stage.
    let (_, board, _) = web.get("/?pipeline=Sales").await;
    assert!(board.contains("見積もりのお願い"), "{board}");
    assert!(board.contains(r#"class="card unread""#));
    let (status, page, _) = web.get("/records/1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("山田 太郎") && page.contains("Threading: Started this record"));
    let (_, board, _) = web.get("/?pipeline=Sales").await;
    assert!(
        !board.contains(r#"class="card unread""#),
        "read once opened"
    );

    // Stage, owner, tags, a comment with a mention: each an event or message.
    let (status, _, location) = web
        .post("/records/1", "/records/1/stage", &[("stage", "Won")])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/records/1"));
    web.post(
        "/records/1",
        "/records/1/owner",
        &[("owner", "ben@acme.test")],
    )
    .await;
    web.post("/records/1", "/records/1/tags", &[("tags", "vip, 見積")])
        .await;
    web.post(
        "/records/1",
        "/records/1/comment",
        &[("text", "@ben@acme.test 価格を確認してください")],
    )
    .await;
    let record = &app.records("Sales").await[0];
    assert_eq!(record["stage"], "Won");
    assert_eq!(record["owner"], "ben@acme.test");
    assert_eq!(record["tags"], serde_json::json!(["vip", "見積"]));
    let detail = app.record(record["id"].as_str().expect("id")).await;
    let comment = messages(&detail)
        .into_iter()
        .find(|m| m["direction"] == "comment")
        .expect("the comment");
    assert_eq!(comment["mentions"], serde_json::json!(["ben@acme.test"]));
    let kinds: Vec<String> = events(&detail)
        .iter()
        .map(|e| format!("{} {}", e["kind"], e["actor"]))
        .collect();
    assert!(
        kinds.contains(&r#""stage_changed" "ana@acme.test""#.to_string()),
        "{kinds:?}"
    );

    // A stage the pipeline does not have: the page again with the reason.
    let (status, html, _) = web
        .post("/records/1", "/records/1/stage", &[("stage", "Nowhere")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Nowhere"), "{html}");
    // No relay configured: the reply box says so and a reply keeps its text.
    let (status, html, _) = web
        .post(
            "/records/1",
            "/records/1/reply",
            &[("text", "お見積もりです")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(html.contains("no outbound relay is configured"), "{html}");
    assert!(html.contains("お見積もりです"), "the typed text is kept");
    let (status, _, _) = web.get("/records/999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}

async fn an_invited_user_sets_a_password_once_through_the_link(backend: Backend) {
    // A relay that takes mail for the invitee, and a service that uses it.
    let relay = crate::replies::spawn_relay(0, &["newcomer@acme.test"]).await;
    let app = crate::helpers::spawn_app_with(backend, |s| {
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = relay.smtp_addr.port();
        s.outbound.tls = emailin::config::RelayTls::None;
        s.outbound.domain = "mail.acme.test".into();
        s.http.public_url = "https://crm.acme.test/".into();
    })
    .await;
    user(&app, "root@acme.test", "Root", Role::Admin).await;
    let newcomer = app
        .store
        .create_user("newcomer@acme.test", "新しい 人", Role::Member)
        .await
        .expect("user");
    assert!(!newcomer.can_log_in);
    let mut admin = Web::new(&app);
    admin.login("root@acme.test", PASSWORD).await;

    // Invite: mailed through the relay, as machine mail, with the link.
    let (status, html, _) = admin
        .post(
            "/admin/users",
            &format!("/admin/users/{}/invite", newcomer.id),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("A set-password link was mailed to newcomer@acme.test"),
        "{html}"
    );
    let raw = crate::replies::eventually("the invitation at the relay", || async {
        crate::replies::captured(&relay).await.into_iter().next()
    })
    .await;
    let mail = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("parses");
    assert_eq!(
        mail.header("Auto-Submitted").and_then(|h| h.as_text()),
        Some("auto-generated")
    );
    assert_eq!(
        mail.from()
            .and_then(|f| f.first())
            .and_then(|a| a.address()),
        Some("emailin@mail.acme.test")
    );
    let text = mail.body_text(0).expect("text").to_string();
    let at = text
        .find("https://crm.acme.test/set-password?token=")
        .expect("the link");
    let link = text[at..].split_whitespace().next().expect("link");
    let path = link.trim_start_matches("https://crm.acme.test");

    // The link: a form; too short a password or two different ones are refused.
    let mut web = Web::new(&app);
    let (status, html, _) = web.get(path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("newcomer@acme.test"));
    let token = path.split("token=").nth(1).expect("token");
    let csrf = csrf_of(&html);
    let resp = web
        .post_raw(
            "/set-password",
            &[
                ("csrf", &csrf),
                ("token", token),
                ("password", "short"),
                ("confirm", "short"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        resp.text()
            .await
            .expect("body")
            .contains("at least 10 characters")
    );
    let (_, html, _) = web.get(path).await;
    let csrf = csrf_of(&html);
    let resp = web
        .post_raw(
            "/set-password",
            &[
                ("csrf", &csrf),
                ("token", token),
                ("password", "パスワードは十分に長い"),
                ("confirm", "パスワードは十分に長い"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[LOCATION], "/login?set=1");
    let resp = web
        .login("newcomer@acme.test", "パスワードは十分に長い")
        .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // Once only.
    let (status, html, _) = Web::new(&app).get(path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(html.contains("used or has expired"));

    // When the relay cannot be reached the admin is given the link to hand over.
    relay.stop().await;
    let (status, html, _) = admin
        .post(
            "/admin/users",
            &format!("/admin/users/{}/invite", newcomer.id),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("could not be mailed to newcomer@acme.test"),
        "{html}"
    );
    assert!(html.contains("https://crm.acme.test/set-password?token="));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_create_reads_the_password_from_standard_input() {
    let app = spawn_app(Backend::Sqlite).await;
    let command = emailin::cli::UserCommand::Create {
        email: "Ops@Acme.test".into(),
        name: "Ops".into(),
        role: "admin".into(),
        password_stdin: true,
    };
    let mut input: &[u8] = b"correct horse battery\n";
    emailin::cli::user(app.store.as_ref(), "", command, &mut input)
        .await
        .expect("created");
    // A short password is refused with the rule, and nothing changes.
    let short = emailin::cli::UserCommand::SetPassword {
        email: "ops@acme.test".into(),
    };
    let mut input: &[u8] = b"short\n";
    let err = emailin::cli::user(app.store.as_ref(), "", short, &mut input)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("at least 10 characters"), "{err}");
    let mut web = Web::new(&app);
    let resp = web.login("ops@acme.test", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let (status, _, _) = web.get("/admin/users").await;
    assert_eq!(status, StatusCode::OK, "an admin");
    app.stop().await;
}

async fn webhooks_and_own_settings_are_managed_on_their_pages(backend: Backend) {
    let app = spawn_app(backend).await;
    let ana = user(&app, "ana@acme.test", "Ana", Role::Member).await;
    user(&app, "root@acme.test", "Root", Role::Admin).await;
    let mut member = Web::new(&app);
    member.login("ana@acme.test", PASSWORD).await;
    assert_eq!(member.get("/admin/webhooks").await.0, StatusCode::FORBIDDEN);

    // Her own page: mail off, then a new password (the old one is needed).
    let (status, _, _) = member.post("/me", "/me/notify", &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let stored = app.store.get_user(ana.id).await.expect("db").expect("ana");
    assert!(!stored.notify, "unticked: no mail");
    let (status, html, _) = member
        .post(
            "/me",
            "/me/password",
            &[("current", "wrong"), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("The current password is not right."));
    let (status, _, location) = member
        .post(
            "/me",
            "/me/password",
            &[("current", PASSWORD), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/login?set=1"));
    let mut again = Web::new(&app);
    let resp = again.login("ana@acme.test", "a brand new password").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);

    // An admin adds a webhook on the page: the secret is shown once.
    let mut admin = Web::new(&app);
    admin.login("root@acme.test", PASSWORD).await;
    let (status, html, _) = admin
        .post(
            "/admin/webhooks",
            "/admin/webhooks",
            &[
                ("url", "http://127.0.0.1:9/hook"),
                ("events", "record.created"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{html}");
    assert!(html.contains("whsec_"), "the secret is shown");
    let hooks = app.store.list_webhooks().await.expect("list");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].events, ["record.created"]);
    let (status, html, _) = admin
        .post(
            "/admin/webhooks",
            "/admin/webhooks",
            &[("url", "http://example.com/hook")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("http:// is only for loopback"), "{html}");
    let path = format!("/admin/webhooks/{}/remove", hooks[0].id);
    let (status, _, _) = admin.post("/admin/webhooks", &path, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(app.store.list_webhooks().await.expect("list").is_empty());
    app.stop().await;
}
