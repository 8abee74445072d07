//! The OpenAPI document against the running router: every documented
//! operation is served, answers 401 without a token, 403 to a member where
//! it says so, 404 for an unknown id, 422 for a body of the wrong shape; and
//! a documented path answers 405 to every method the document does not list
//! (so the router serves nothing the document leaves out).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    every_documented_route_is_served_and_guarded,
    healthz_lists_every_running_part
);

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// A body that passes validation, for routes that must reach their 404.
fn valid_body(method: &str, path: &str) -> Value {
    match (method, path) {
        ("post", "/api/v1/records/{id}/comments" | "/api/v1/records/{id}/replies") => {
            json!({"text": "x"})
        }
        ("patch", "/api/v1/users/{id}") => json!({"name": "x"}),
        ("post", "/api/v1/records/{id}/forwards") => {
            json!({"message": uuid::Uuid::now_v7(), "to": ["x@example.com"]})
        }
        ("post", "/api/v1/records/{id}/merge") => json!({"into": uuid::Uuid::now_v7()}),
        ("post", "/api/v1/records/{id}/split") => json!({"message": uuid::Uuid::now_v7()}),
        _ => json!({}),
    }
}

async fn call(
    app: &TestApp,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let resp = app.request_json_as(method.clone(), path, token, body).await;
    let status = resp.status().as_u16();
    (status, resp.json::<Value>().await.unwrap_or(Value::Null))
}

async fn every_documented_route_is_served_and_guarded(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", &uuid::Uuid::now_v7().to_string())
            .replace("{address}", "nobody@localhost")
            .replace("{entry}", "nobody.test");
        let open = !path.starts_with("/api/v1/");
        for method in METHODS {
            let http = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let Some(op) = item.get(method) else {
                let resp = app
                    .request_as(http, &concrete, Some(&app.admin_token))
                    .await;
                assert_eq!(
                    resp.status().as_u16(),
                    405,
                    "{method} {path} is not documented"
                );
                continue;
            };
            operations += 1;
            let responses = op["responses"].as_object().expect("responses");
            let (status, body) = call(&app, &http, &concrete, None, valid_body(method, path)).await;
            if open {
                assert_eq!(status, 200, "{method} {path} is open: {body}");
                continue;
            }
            assert_eq!(status, 401, "{method} {path} without a token: {body}");
            assert_eq!(body["error"]["code"], "unauthorized");
            if responses.contains_key("403") {
                let (status, body) = call(
                    &app,
                    &http,
                    &concrete,
                    Some(&app.member_token),
                    valid_body(method, path),
                )
                .await;
                assert_eq!(status, 403, "{method} {path} as a member: {body}");
            } else {
                let (status, body) = call(
                    &app,
                    &http,
                    &concrete,
                    Some(&app.member_token),
                    valid_body(method, path),
                )
                .await;
                assert_ne!(status, 403, "{method} {path} is open to members: {body}");
            }
            if responses.contains_key("404") {
                let (status, body) = call(
                    &app,
                    &http,
                    &concrete,
                    Some(&app.admin_token),
                    valid_body(method, path),
                )
                .await;
                assert_eq!(status, 404, "{method} {path} with an unknown id: {body}");
                assert_eq!(body["error"]["code"], "not_found");
            }
            if op.get("requestBody").is_some() {
                assert!(
                    responses.contains_key("422"),
                    "{method} {path} documents 422"
                );
                let (status, body) = call(
                    &app,
                    &http,
                    &concrete,
                    Some(&app.admin_token),
                    json!({"no_such_field": 1}),
                )
                .await;
                assert_eq!(status, 422, "{method} {path} with a wrong body: {body}");
                assert_eq!(body["error"]["code"], "invalid");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("no_such_field"),
                    "the error names the field: {body}"
                );
            }
        }
    }
    assert!(operations >= 30, "{operations} operations documented");
    for must in [
        "/healthz",
        "/metrics",
        "/api/v1/records/{id}/replies",
        "/api/v1/pipelines/{id}",
        "/api/v1/users/{id}",
        "/api/v1/contacts/{id}",
        "/api/v1/aliases/{address}",
    ] {
        assert!(paths.contains_key(must), "{must} is documented");
    }
    // An unknown route answers in the API's error shape.
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    app.stop().await;
}

async fn healthz_lists_every_running_part(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = 9;
        s.outbound.tls = emailin::config::RelayTls::None;
    })
    .await;
    let (status, body) = app.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ok");
    let mut parts: Vec<(String, String)> = body["parts"]
        .as_array()
        .expect("parts")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    parts.sort();
    let running = |name: &str| (name.to_owned(), "running".to_owned());
    assert_eq!(
        parts,
        vec![
            running("http"),
            running("intake"),
            running("outbox"),
            running("processor"),
            running("search"),
            running("smtp"),
            running("webhooks")
        ]
    );
}
