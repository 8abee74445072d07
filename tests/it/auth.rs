//! Bearer tokens on the API: 401 without one, 403 for a member on admin
//! routes, tokens created once and revoked; an exposed listener needs one.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{Backend, TestDb, spawn_app, test_settings};
use crate::on_both_backends;

on_both_backends!(api_requires_a_valid_token_and_admin_routes_an_admin_one);

async fn api_requires_a_valid_token_and_admin_routes_an_admin_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = |resp: reqwest::Response| resp.status().as_u16();

    // Health stays open; the API does not.
    assert_eq!(
        status(app.request_as(Method::GET, "/healthz", None).await),
        200
    );
    let resp = app.request_as(Method::GET, "/api/v1/records", None).await;
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(
        status(
            app.request_as(Method::GET, "/api/v1/records", Some("emi_nonsense"))
                .await
        ),
        401
    );

    // A member reads and works records but manages nothing.
    let member = app.member_token.clone();
    assert_eq!(
        status(
            app.request_as(Method::GET, "/api/v1/records", Some(&member))
                .await
        ),
        200
    );
    let resp = app
        .request_as(Method::GET, "/api/v1/tokens", Some(&member))
        .await;
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "forbidden"
    );
    let random = uuid::Uuid::new_v4();
    assert_eq!(
        status(
            app.request_as(
                Method::POST,
                &format!("/api/v1/inbound/{random}/release"),
                Some(&member)
            )
            .await
        ),
        403
    );

    // An admin creates a token (shown once), it works, then it is revoked.
    let (created_status, created) = app
        .send_json(
            Method::POST,
            "/api/v1/tokens",
            &app.admin_token,
            serde_json::json!({"name": "ci-bot", "role": "member"}),
        )
        .await;
    assert_eq!(created_status, 201);
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("emi_") && token.len() == 68);
    assert_eq!(
        status(
            app.request_as(Method::GET, "/api/v1/contacts?email=x@y.z", Some(&token))
                .await
        ),
        200
    );
    let (_, listed) = app.get("/api/v1/tokens").await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"ci-bot"));
    assert!(
        !listed.to_string().contains(&token),
        "tokens are never listed"
    );
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        status(
            app.request_as(
                Method::DELETE,
                &format!("/api/v1/tokens/{id}"),
                Some(&app.admin_token)
            )
            .await
        ),
        204
    );
    assert_eq!(
        status(
            app.request_as(Method::GET, "/api/v1/records", Some(&token))
                .await
        ),
        401
    );

    // Validation and conflicts.
    let (invalid, _) = app
        .send_json(
            Method::POST,
            "/api/v1/tokens",
            &app.admin_token,
            serde_json::json!({"name": "ci-bot", "role": "owner"}),
        )
        .await;
    assert_eq!(invalid, 422);
    app.stop().await;
}

#[tokio::test]
async fn an_exposed_api_without_any_token_refuses_to_start() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut settings = test_settings(&db);
    settings.http.listen = "0.0.0.0:0".parse().unwrap();
    let err = emailin::app::App::build(settings.clone())
        .await
        .err()
        .expect("must refuse");
    assert!(err.to_string().contains("without an API token"), "{err}");

    // With a token it starts.
    let store = emailin::app::open_store(&settings).await.unwrap();
    store
        .create_token("ops", emailin::store::Role::Admin, "hash")
        .await
        .unwrap();
    emailin::app::App::build(settings)
        .await
        .expect("starts with a token");
}

#[tokio::test]
async fn token_cli_creates_prints_once_lists_and_revokes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let run = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_emailin"));
        cmd.env("EMAILIN__DATABASE__URL", &db.url)
            .env("RUST_LOG", "warn")
            .args(args);
        async move { cmd.output().await.unwrap() }
    };
    let out = run(&["token", "create", "--name", "ops", "--role", "admin"]).await;
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("emi_"));
    let listed = String::from_utf8_lossy(&run(&["token", "list"]).await.stdout).to_string();
    assert!(
        listed.contains("ops")
            && listed.contains("admin")
            && listed.contains("active")
            && !listed.contains(&token)
    );
    assert!(run(&["token", "revoke", "ops"]).await.status.success());
    assert!(String::from_utf8_lossy(&run(&["token", "list"]).await.stdout).contains("revoked"));
    assert!(
        !run(&["token", "create", "--name", "x", "--role", "owner"])
            .await
            .status
            .success()
    );
}
