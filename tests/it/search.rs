//! Search on both databases: words, prefixes, Japanese without spaces
//! (a two-character word inside a longer run), titles, message texts,
//! comments and contacts; ranked and paged; erased mail leaves the index.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, mail, spawn_app};
use crate::on_both_backends;
use crate::replies::eventually;

on_both_backends!(search_finds_words_and_japanese_in_every_part_of_a_record);

/// The numbers of the records `q` finds, in order (`extra` is more of
/// the query string).
async fn found(app: &TestApp, q: &str, extra: &str) -> Vec<i64> {
    let q: String = form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let (status, page) = app.get(&format!("/api/v1/records?q={q}{extra}")).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["number"].as_i64().expect("number"))
        .collect()
}

async fn search_finds_words_and_japanese_in_every_part_of_a_record(backend: Backend) {
    let app = spawn_app(backend).await;
    let send = async |from: &str, to: &str, subject: &str, id: &str, body: &str| {
        let raw = mail(from, to, subject, id, &[], body);
        let envelope = from
            .rsplit('<')
            .next()
            .unwrap_or(from)
            .trim_end_matches('>');
        app.deliver(envelope, &[to], &raw).await;
    };
    send(
        "山田 太郎 <yamada@customer.jp>",
        "sales@localhost",
        "お問い合わせ",
        "j1@customer.jp",
        "椅子40脚の見積書をお願いします。",
    )
    .await;
    send(
        "Ann <ann@customer.example>",
        "service@localhost",
        "Printer on fire",
        "p1@customer.example",
        "Smoke everywhere.",
    )
    .await;
    send(
        "Ben <ben@customer.example>",
        "sales@localhost",
        "Widget order",
        "w1@customer.example",
        "Ten widgets.",
    )
    .await;
    send(
        "Cy <cy@customer.example>",
        "sales@localhost",
        "Question",
        "w2@customer.example",
        "Do you sell widgets?",
    )
    .await;
    // A "word" no index takes (a pasted blob) must not stop the indexer.
    let blob = "QUJD".repeat(1_000);
    send(
        "Dee <dee@customer.example>",
        "service@localhost",
        "Log attached",
        "l1@customer.example",
        &blob,
    )
    .await;
    let records = app.records("Sales").await;
    let widget = records
        .iter()
        .find(|r| r["title"] == "Widget order")
        .expect("widget record");
    let (status, _) = app
        .send_json(
            Method::POST,
            &format!(
                "/api/v1/records/{}/comments",
                widget["id"].as_str().expect("id")
            ),
            &app.member_token,
            json!({"text": "Invoice INV-2041 sent"}),
        )
        .await;
    assert_eq!(status, 201);
    eventually("everything indexed", || async {
        (found(&app, "inv-2041", "").await.len() == 1).then_some(())
    })
    .await;

    // Japanese: a two-character word inside a run, a longer one, the name.
    assert_eq!(found(&app, "見積", "").await, vec![1]);
    assert_eq!(found(&app, "見積書", "").await, vec![1]);
    assert_eq!(found(&app, "山田", "").await, vec![1]);
    assert_eq!(found(&app, "見積もり", "").await, Vec::<i64>::new());
    // Words match as prefixes, any case; every part must match.
    assert_eq!(found(&app, "PRINT", "").await, vec![2]);
    assert_eq!(found(&app, "smoke fire", "").await, vec![2]);
    assert_eq!(found(&app, "smoke widgets", "").await, Vec::<i64>::new());
    assert_eq!(found(&app, "yamada@customer", "").await, vec![1]);
    assert_eq!(found(&app, "INV-2041", "").await, vec![3]);
    // A title match ranks above a message match; pages follow.
    assert_eq!(found(&app, "widget", "").await, vec![3, 4]);
    assert_eq!(
        found(&app, "widget", "&pipeline=Service").await,
        Vec::<i64>::new()
    );
    let (_, page) = app.get("/api/v1/records?q=widget&limit=1").await;
    assert_eq!(page["next_cursor"], "1");
    let (_, next) = app.get("/api/v1/records?q=widget&limit=1&cursor=1").await;
    assert_eq!(next["items"][0]["number"], 4);
    assert_eq!(next["next_cursor"], Value::Null);
    let (status, _) = app.get("/api/v1/records?q=widget&tag=sales").await;
    assert_eq!(status, 400, "q combines with pipeline only");

    // Erased mail is found no more, at once.
    let contact = app.contact("yamada@customer.jp").await.expect("contact");
    let (status, _) = app
        .post_json(&format!(
            "/api/v1/contacts/{}/erase",
            contact["id"].as_str().expect("id")
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(found(&app, "見積", "").await, Vec::<i64>::new());
    assert_eq!(found(&app, "山田", "").await, Vec::<i64>::new());
    app.stop().await;
}
