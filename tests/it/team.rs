//! The team side of a record: stage, owner and tags changes with events,
//! internal comments with mentions.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, events, messages, spawn_app};
use crate::on_both_backends;

on_both_backends!(members_move_stages_change_owner_and_tags_and_comment);

async fn members_move_stages_change_owner_and_tags_and_comment(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Cy <cy@example.com>",
        "service@localhost",
        "VPN down",
        "v1@x",
        &[],
    )
    .await;
    let id = app.records("Service").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/v1/records/{id}");
    let member = app.member_token.clone();

    // sales-team@localhost exists as the Sales alias's owner.
    let (status, record) = app
        .send_json(
            Method::PATCH,
            &path,
            &member,
            json!({"stage": "Resolved", "owner": "sales-team@localhost", "tags": ["vip", "vpn"]}),
        )
        .await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["stage"], "Resolved");
    assert_eq!(record["owner"], "sales-team@localhost");
    assert_eq!(record["tags"], json!(["vip", "vpn"]));
    let kinds: Vec<String> = events(&record)
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["created", "stage_changed", "owner_changed", "tags_changed"]
    );
    let moved = &events(&record)[1];
    assert_eq!(
        (moved["from_stage"].as_str(), moved["to_stage"].as_str()),
        (Some("Open"), Some("Resolved"))
    );
    assert!(
        moved["actor"].as_str().unwrap().starts_with("test-"),
        "the token's name is the actor"
    );

    // The same values again change nothing and write no event.
    let (_, again) = app
        .send_json(Method::PATCH, &path, &member, json!({"stage": "Resolved"}))
        .await;
    assert_eq!(events(&again).len(), 4);

    // Validation names the field; unknown records are 404.
    let (status, err) = app
        .send_json(Method::PATCH, &path, &member, json!({"stage": "Won"}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("invalid"))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("stage:")
    );
    let (status, err) = app
        .send_json(
            Method::PATCH,
            &path,
            &member,
            json!({"owner": "nobody@example.com"}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("owner:")
    );
    let unknown = format!("/api/v1/records/{}", uuid::Uuid::new_v4());
    assert_eq!(
        app.send_json(Method::PATCH, &unknown, &member, json!({"stage": "Open"}))
            .await
            .0,
        404
    );

    // Comments are internal; mentions of users are resolved and kept.
    let (status, comment) = app
        .send_json(
            Method::POST,
            &format!("{path}/comments"),
            &member,
            json!({"text": "@service-team@localhost please call them; cc @stranger@example.com"}),
        )
        .await;
    assert_eq!(status, 201, "{comment}");
    assert_eq!(comment["mentions"], json!(["service-team@localhost"]));
    let (status, _) = app
        .send_json(
            Method::POST,
            &format!("{path}/comments"),
            &member,
            json!({"text": "  "}),
        )
        .await;
    assert_eq!(status, 422);
    let record = app.record(&id).await;
    let last = messages(&record).pop().unwrap();
    assert_eq!(last["direction"], "comment");
    assert_eq!(last["mentions"], json!(["service-team@localhost"]));
    assert_eq!(events(&record).last().unwrap()["kind"], "commented");

    // Malformed bodies and queries get the API's error shape, naming the field.
    let (status, err) = app
        .send_json(Method::PATCH, &path, &member, json!({"tags": "vip"}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (422, Some("invalid"))
    );
    assert!(
        err["error"]["message"].as_str().unwrap().contains("tags"),
        "{err}"
    );
    let (status, err) = app
        .send_json(Method::PATCH, &path, &member, json!({"colour": "red"}))
        .await;
    assert_eq!(status, 422);
    assert!(
        err["error"]["message"].as_str().unwrap().contains("colour"),
        "{err}"
    );
    let (status, err) = app.get("/api/v1/records?limit=ten").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );

    // Without a token: 401.
    let resp = app.request_as(Method::PATCH, &path, None).await;
    assert_eq!(resp.status().as_u16(), 401);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_an_alias_refuses_new_mail_at_once_and_keeps_its_records() {
    let app = spawn_app(Backend::Sqlite).await;
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Before",
        "b1@x",
        &[],
    )
    .await;
    let (_, listed) = app.get("/api/v1/aliases").await;
    let mut sales = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["address"] == "sales@localhost")
        .unwrap()
        .clone();
    assert_eq!(sales["enabled"], true);

    let body = json!({"address": "sales@localhost", "name": "Sales", "pipeline": "Sales", "enabled": false,
                      "owner": "sales-team@localhost", "tags": ["sales"]});
    let (status, _) = app
        .send_json(
            Method::PUT,
            "/api/v1/aliases/sales@localhost",
            &app.member_token,
            body.clone(),
        )
        .await;
    assert_eq!(status, 403, "only admins manage aliases");
    let (status, saved) = app
        .send_json(
            Method::PUT,
            "/api/v1/aliases/sales@localhost",
            &app.admin_token,
            body,
        )
        .await;
    assert_eq!(status, 200, "{saved}");

    let raw = crate::helpers::mail(
        "ann@example.com",
        "sales@localhost",
        "After",
        "a1@x",
        &[],
        "x",
    );
    let err = app
        .send("ann@example.com", &["sales@localhost"], &raw)
        .await
        .expect_err("disabled alias refuses");
    assert_eq!(crate::helpers::reply_code(&err), 550);
    assert_eq!(app.records("Sales").await.len(), 1, "its records stay");

    sales["enabled"] = json!(true);
    sales["owner"] = json!("sales-team@localhost");
    let (status, _) = app
        .send_json(
            Method::PUT,
            "/api/v1/aliases/sales@localhost",
            &app.admin_token,
            sales,
        )
        .await;
    assert_eq!(status, 200);
    app.deliver("ann@example.com", &["sales@localhost"], &raw)
        .await;
    assert_eq!(app.records("Sales").await.len(), 2);

    let bad = json!({"address": "new@localhost", "pipeline": "Nope"});
    let (status, err) = app
        .send_json(
            Method::PUT,
            "/api/v1/aliases/new@localhost",
            &app.admin_token,
            bad,
        )
        .await;
    assert_eq!(status, 422);
    assert!(err["error"]["message"].as_str().unwrap().contains("Nope"));
    app.stop().await;
}
