//! Request limits over the real router: a body over `[http] max_body_bytes`
//! gets 413 in the API's error shape, and names, tags, comments and reply
//! text over their lengths get 422 naming the field (characters, not bytes:
//! a Japanese name as long as the limit is accepted).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    a_body_over_the_limit_gets_413_and_one_under_it_is_read,
    strings_over_their_length_get_422_naming_the_field
);

async fn a_record(app: &TestApp) -> String {
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Quote",
        "limits-1@example.com",
        &[],
    )
    .await;
    app.records("Sales").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

async fn a_body_over_the_limit_gets_413_and_one_under_it_is_read(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.http.max_body_bytes = 4096).await;
    let record = a_record(&app).await;
    let path = format!("/api/v1/records/{record}/comments");

    let (status, body) = app
        .send_json(
            Method::POST,
            &path,
            &app.admin_token,
            json!({"text": "x".repeat(5000)}),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large", "{body}");

    let (status, body) = app
        .send_json(
            Method::POST,
            &path,
            &app.admin_token,
            json!({"text": "x".repeat(3000)}),
        )
        .await;
    assert_eq!(status, 201, "under the limit: {body}");
    let comments = app.record(&record).await["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .filter(|item| item["direction"] == "comment")
        .count();
    assert_eq!(comments, 1, "only the one under the limit is stored");
    app.stop().await;
}

/// `(method, path, body, field named in the error)`.
fn too_long(record: &str) -> Vec<(Method, String, Value, &'static str)> {
    let long_name = "n".repeat(201);
    let tags: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
    vec![
        (
            Method::POST,
            "/api/v1/pipelines".into(),
            json!({"name": long_name, "stages": [{"name": "New", "kind": "open"}]}),
            "name: at most 200 characters",
        ),
        (
            Method::POST,
            "/api/v1/pipelines".into(),
            json!({"name": "P", "stages": [{"name": long_name, "kind": "open"}]}),
            "stages[0].name: at most 200 characters",
        ),
        (
            Method::POST,
            "/api/v1/tokens".into(),
            json!({"name": long_name, "role": "member"}),
            "name: at most 200 characters",
        ),
        (
            Method::POST,
            "/api/v1/users".into(),
            json!({"email": "long@localhost", "name": long_name}),
            "name: at most 200 characters",
        ),
        (
            Method::PATCH,
            format!("/api/v1/records/{record}"),
            json!({"tags": tags}),
            "tags: at most 50 items",
        ),
        (
            Method::PATCH,
            format!("/api/v1/records/{record}"),
            json!({"tags": ["vip", "t".repeat(65)]}),
            "tags[1]: at most 64 characters",
        ),
        (
            Method::PATCH,
            format!("/api/v1/records/{record}"),
            json!({"tags": ["vip", ""]}),
            "tags[1]: must not be empty",
        ),
        (
            Method::POST,
            format!("/api/v1/records/{record}/comments"),
            json!({"text": "c".repeat(200_001)}),
            "text: at most 200000 characters",
        ),
        (
            Method::PUT,
            "/api/v1/aliases/partners@localhost".into(),
            json!({"address": "partners@localhost", "pipeline": "Sales", "tags": ["p".repeat(65)]}),
            "tags[0]: at most 64 characters",
        ),
        (
            Method::PUT,
            "/api/v1/aliases/partners@localhost".into(),
            json!({"address": "partners@localhost", "pipeline": "Sales", "name": long_name}),
            "name: at most 200 characters",
        ),
    ]
}

async fn strings_over_their_length_get_422_naming_the_field(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let record = a_record(&app).await;
    for (method, path, body, message) in too_long(&record) {
        let (status, answer) = app
            .send_json(method.clone(), &path, &app.admin_token, body)
            .await;
        assert_eq!(status, 422, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["message"], message, "{method} {path}");
    }
    // Nothing over a limit was stored.
    let detail = app.record(&record).await;
    assert_eq!(detail["tags"], json!(["sales"]), "{detail}");
    let (_, aliases) = app.get("/api/v1/aliases").await;
    assert!(
        aliases["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|a| a["address"] != "partners@localhost")
    );

    // Characters are counted, not bytes: 200 Japanese characters are a name.
    let japanese = "見積".repeat(100);
    let (status, pipeline) = app
        .send_json(
            Method::POST,
            "/api/v1/pipelines",
            &app.admin_token,
            json!({"name": japanese, "stages": [{"name": "新規", "kind": "open"}]}),
        )
        .await;
    assert_eq!(status, 201, "{pipeline}");
    assert_eq!(pipeline["name"], japanese);

    // A filter term over its length is a bad query.
    let (status, answer) = app
        .get(&format!("/api/v1/records?text={}", "q".repeat(501)))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["message"], "text: at most 500 characters");
    app.stop().await;
}
