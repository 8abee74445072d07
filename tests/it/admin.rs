//! Admin resources at run time (users, pipelines with stages, aliases,
//! tokens), contact search, record filters, and cursor pages on every list.

use std::collections::HashSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, mail, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    users_are_created_renamed_listed_and_deleted_only_when_they_own_nothing,
    pipelines_and_stages_change_at_run_time_without_losing_anything,
    contacts_are_searched_and_read_with_their_records,
    records_filter_by_owner_tag_text_and_time,
    every_list_pages_by_cursor,
    replies_never_go_to_bounced_addresses_unless_forced_nor_to_auto_responders,
);

async fn admin(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, Value) {
    app.send_json(method, path, &app.admin_token, body).await
}

/// Every item of a list, following `next_cursor` with pages of `limit`;
/// checks that no item comes twice.
async fn all_pages(app: &TestApp, path: &str, limit: u32, key: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}{sep}limit={limit}&cursor={c}"),
            None => format!("{path}{sep}limit={limit}"),
        };
        let (status, page) = app.get(&url).await;
        assert_eq!(status, 200, "{url}: {page}");
        let got = page["items"].as_array().expect("items").clone();
        assert!(got.len() <= limit as usize);
        items.extend(got);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    let keys: HashSet<String> = items.iter().map(|i| i[key].to_string()).collect();
    assert_eq!(keys.len(), items.len(), "{path}: an item came twice");
    items
}

async fn users_are_created_renamed_listed_and_deleted_only_when_they_own_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, user) = admin(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"email": "Dana@Acme.test", "name": "Dana"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["email"], "dana@acme.test");
    let path = format!("/api/v1/users/{}", user["id"].as_str().unwrap());

    let (status, _) = admin(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"email": "dana@acme.test"}),
    )
    .await;
    assert_eq!(status, 409, "one user per address");
    let (status, err) = admin(
        &app,
        Method::POST,
        "/api/v1/users",
        json!({"email": "not-an-address"}),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("email:")
    );

    let (status, renamed) = admin(&app, Method::PATCH, &path, json!({"name": "Dana Scully"})).await;
    assert_eq!((status, &renamed["name"]), (200, &json!("Dana Scully")));
    let (status, read) = app.get(&path).await;
    assert_eq!((status, &read["name"]), (200, &json!("Dana Scully")));
    let emails: Vec<Value> = all_pages(&app, "/api/v1/users", 1, "id")
        .await
        .iter()
        .map(|u| u["email"].clone())
        .collect();
    assert!(emails.contains(&json!("dana@acme.test")));
    assert!(
        emails.contains(&json!("sales-team@localhost")),
        "alias owners are users"
    );

    // An owner cannot be deleted; once their record moves on, they can.
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Quote",
        "u1@x",
        &[],
    )
    .await;
    let record = app.records("Sales").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let record_path = format!("/api/v1/records/{record}");
    let (status, _) = admin(
        &app,
        Method::PATCH,
        &record_path,
        json!({"owner": "dana@acme.test"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, err) = admin(&app, Method::DELETE, &path, json!({})).await;
    assert_eq!(status, 409, "{err}");
    let (status, _) = admin(
        &app,
        Method::PATCH,
        &record_path,
        json!({"owner": "sales-team@localhost"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin(&app, Method::DELETE, &path, json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&path).await;
    assert_eq!(status, 404);
    // The record's history keeps who owned it.
    let detail = app.record(&record).await;
    let details: Vec<Value> = crate::helpers::events(&detail)
        .iter()
        .map(|e| e["detail"].clone())
        .collect();
    assert!(details.contains(&json!("dana@acme.test")));
    app.stop().await;
}

async fn pipelines_and_stages_change_at_run_time_without_losing_anything(backend: Backend) {
    let app = spawn_app(backend).await;
    let stages = json!([{"name": "Inbox", "kind": "open"}, {"name": "Done", "kind": "closed"}]);
    let (status, pipeline) = admin(
        &app,
        Method::POST,
        "/api/v1/pipelines",
        json!({"name": "Partners", "stages": stages}),
    )
    .await;
    assert_eq!(status, 201, "{pipeline}");
    let path = format!("/api/v1/pipelines/{}", pipeline["id"].as_str().unwrap());
    for (body, field) in [
        (json!({"name": "X", "stages": []}), "stages"),
        (
            json!({"name": "X", "stages": [{"name": "A", "kind": "closed"}]}),
            "stages",
        ),
        (
            json!({"name": "X", "stages": [{"name": "A", "kind": "open"}, {"name": "A", "kind": "open"}]}),
            "stages[1].name",
        ),
        (
            json!({"name": "X", "stages": [{"name": "A", "kind": "half"}]}),
            "stages[0].kind",
        ),
        (
            json!({"name": " ", "stages": [{"name": "A", "kind": "open"}]}),
            "name",
        ),
    ] {
        let (status, err) = admin(&app, Method::POST, "/api/v1/pipelines", body).await;
        assert_eq!(status, 422, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().starts_with(field),
            "{err}"
        );
    }
    let (status, _) = admin(
        &app,
        Method::POST,
        "/api/v1/pipelines",
        json!({"name": "Partners", "stages": [{"name": "A", "kind": "open"}]}),
    )
    .await;
    assert_eq!(status, 409, "pipeline names are unique");

    // An alias on it takes mail at once, without a restart.
    let (status, alias) = admin(
        &app,
        Method::PUT,
        "/api/v1/aliases/partners@localhost",
        json!({"address": "partners@localhost", "pipeline": "Partners", "owner": "pat@localhost",
               "reopen_on_reply": true, "reopen": [{"from": "Done", "to": "Inbox"}]}),
    )
    .await;
    assert_eq!(status, 200, "{alias}");
    app.deliver(
        "ann@example.com",
        &["partners@localhost"],
        &mail(
            "ann@example.com",
            "partners@localhost",
            "Hello",
            "p1@x",
            &[],
            "x",
        ),
    )
    .await;
    let records = app.records("Partners").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["stage"], "Inbox");
    assert_eq!(records[0]["owner"], "pat@localhost");

    // Rename the pipeline, rename a stage by id, reorder, add one.
    let inbox = pipeline["stages"][0]["id"].clone();
    let done = pipeline["stages"][1]["id"].clone();
    let (status, changed) = admin(
        &app,
        Method::PATCH,
        &path,
        json!({"name": "Partner deals", "stages": [
            {"id": inbox, "name": "New", "kind": "open"},
            {"name": "Talking", "kind": "open"},
            {"id": done, "name": "Done", "kind": "closed"}]}),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let names: Vec<&str> = changed["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["New", "Talking", "Done"]);
    let records = app.records("Partner%20deals").await;
    assert_eq!(
        records[0]["stage"], "New",
        "the record kept its stage through the rename"
    );

    // Nothing is lost: a stage with records, or used by a reopen rule, stays;
    // so does a pipeline with records.
    for (stages, what) in [
        (
            json!([{"name": "Talking", "kind": "open"}, {"id": done, "name": "Done", "kind": "closed"}]),
            "New",
        ),
        (
            json!([{"id": inbox, "name": "New", "kind": "open"}, {"name": "Talking", "kind": "open"}]),
            "Done",
        ),
        (
            json!([{"id": inbox, "name": "New", "kind": "open"}, {"id": done, "name": "Done", "kind": "open"}]),
            "Done",
        ),
    ] {
        let (status, err) = admin(&app, Method::PATCH, &path, json!({"stages": stages})).await;
        assert_eq!(status, 409, "{err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(what),
            "{err}"
        );
    }
    let (status, _) = admin(&app, Method::DELETE, &path, json!({})).await;
    assert_eq!(status, 409);
    let (status, _) = admin(&app, Method::PATCH, &path, json!({"name": "Sales"})).await;
    assert_eq!(status, 409, "the name is taken");

    // A stage nothing refers to goes; an unused pipeline goes.
    let (status, changed) = admin(
        &app,
        Method::PATCH,
        &path,
        json!({"stages": [{"id": inbox, "name": "New", "kind": "open"}, {"id": done, "name": "Done", "kind": "closed"}]}),
    )
    .await;
    assert_eq!(
        (status, changed["stages"].as_array().unwrap().len()),
        (200, 2)
    );
    let (status, spare) = admin(
        &app,
        Method::POST,
        "/api/v1/pipelines",
        json!({"name": "Spare", "stages": [{"name": "Open", "kind": "open"}]}),
    )
    .await;
    assert_eq!(status, 201);
    let spare_path = format!("/api/v1/pipelines/{}", spare["id"].as_str().unwrap());
    let (status, _) = admin(&app, Method::DELETE, &spare_path, json!({})).await;
    assert_eq!(status, 204);
    let (status, _) = app.get(&spare_path).await;
    assert_eq!(status, 404);
    let (_, listed) = app.get("/api/v1/pipelines").await;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sales", "Service", "Partner deals"]);

    // The alias reads back as it was saved.
    let (status, alias) = app.get("/api/v1/aliases/PARTNERS@localhost").await;
    assert_eq!(status, 200);
    assert_eq!(alias["pipeline"], "Partner deals");
    assert_eq!(alias["reopen"], json!([{"from": "Done", "to": "New"}]));
    app.stop().await;
}

async fn contacts_are_searched_and_read_with_their_records(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann Lee <ann@alpha.example>",
        "sales@localhost",
        "One",
        "c1@x",
        &[],
    )
    .await;
    app.post(
        "Ann Lee <ann@alpha.example>",
        "service@localhost",
        "Two",
        "c2@x",
        &[],
    )
    .await;
    app.post(
        "Bo Chan <bo@beta.example>",
        "sales@localhost",
        "Three",
        "c3@x",
        &[],
    )
    .await;
    app.post(
        "Cy 50%_off <cy@gamma.example>",
        "sales@localhost",
        "Four",
        "c4@x",
        &[],
    )
    .await;

    let search = |q: &str| format!("/api/v1/contacts?q={q}");
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["email"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = app.get(&search("ALPHA")).await;
    assert_eq!(emails(&page), ["ann@alpha.example"], "by address, any case");
    let (_, page) = app.get(&search("chan")).await;
    assert_eq!(emails(&page), ["bo@beta.example"], "by name");
    let (_, page) = app.get(&search("50%25_")).await;
    assert_eq!(emails(&page), ["cy@gamma.example"], "wildcards are literal");
    let (_, page) = app.get(&search("nobody")).await;
    assert!(emails(&page).is_empty());
    assert_eq!(all_pages(&app, "/api/v1/contacts", 1, "id").await.len(), 3);

    let ann = app.contact("ann@alpha.example").await.unwrap();
    let (status, detail) = app
        .get(&format!("/api/v1/contacts/{}", ann["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(detail["email"], "ann@alpha.example");
    let titles: Vec<&str> = detail["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Two", "One"], "newest first, across pipelines");
    app.stop().await;
}

async fn records_filter_by_owner_tag_text_and_time(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(
        "Ann <ann@example.com>",
        "sales@localhost",
        "Chairs quote",
        "f1@x",
        &[],
    )
    .await;
    let between = chrono::Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.post(
        "Bo <bo@example.com>",
        "service@localhost",
        "Broken CHAIR",
        "f2@x",
        &[],
    )
    .await;
    app.post(
        "Cy <cy@example.com>",
        "sales@localhost",
        "Tables",
        "f3@x",
        &[],
    )
    .await;

    let titles = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, page) = app.get("/api/v1/records?text=chair").await;
    assert_eq!(titles(&page), ["Broken CHAIR", "Chairs quote"]);
    let (_, page) = app.get("/api/v1/records?owner=SALES-TEAM@localhost").await;
    assert_eq!(titles(&page), ["Tables", "Chairs quote"]);
    let (_, page) = app.get("/api/v1/records?tag=service").await;
    assert_eq!(titles(&page), ["Broken CHAIR"]);
    let (_, page) = app.get("/api/v1/records?tag=serv").await;
    assert!(titles(&page).is_empty(), "a tag matches whole");
    let since = between.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (status, page) = app
        .get(&format!("/api/v1/records?updated_since={since}"))
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(titles(&page), ["Tables", "Broken CHAIR"]);
    let (_, page) = app
        .get("/api/v1/records?text=chair&pipeline=Sales&contact=ann@example.com")
        .await;
    assert_eq!(titles(&page), ["Chairs quote"]);
    let (status, err) = app.get("/api/v1/records?updated_since=yesterday").await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("updated_since")
    );
    app.stop().await;
}

async fn every_list_pages_by_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    for n in 0..5 {
        app.post(
            &format!("P{n} <p{n}@example.com>"),
            "sales@localhost",
            &format!("R{n}"),
            &format!("l{n}@x"),
            &[],
        )
        .await;
        let (status, _) = admin(
            &app,
            Method::POST,
            "/api/v1/tokens",
            json!({"name": format!("bot-{n}"), "role": "member"}),
        )
        .await;
        assert_eq!(status, 201);
        let address = format!("extra{n}@localhost");
        let (status, _) = admin(
            &app,
            Method::PUT,
            &format!("/api/v1/aliases/{address}"),
            json!({"address": address, "pipeline": "Sales"}),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(all_pages(&app, "/api/v1/records", 2, "id").await.len(), 5);
    assert_eq!(all_pages(&app, "/api/v1/inbound", 2, "id").await.len(), 5);
    assert_eq!(all_pages(&app, "/api/v1/contacts", 2, "id").await.len(), 5);
    assert_eq!(
        all_pages(&app, "/api/v1/tokens", 2, "id").await.len(),
        7,
        "two test tokens and five"
    );
    let aliases = all_pages(&app, "/api/v1/aliases", 2, "address").await;
    assert_eq!(aliases.len(), 7);
    let addresses: Vec<&str> = aliases
        .iter()
        .map(|a| a["address"].as_str().unwrap())
        .collect();
    let mut sorted = addresses.clone();
    sorted.sort_unstable();
    assert_eq!(addresses, sorted, "aliases come by address");
    assert!(all_pages(&app, "/api/v1/users", 2, "id").await.len() >= 2);
    assert_eq!(all_pages(&app, "/api/v1/pipelines", 1, "id").await.len(), 2);
    for bad in [
        "/api/v1/records?limit=0",
        "/api/v1/users?limit=501",
        "/api/v1/tokens?cursor=nope",
    ] {
        let (status, err) = app.get(bad).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    app.stop().await;
}

async fn replies_never_go_to_bounced_addresses_unless_forced_nor_to_auto_responders(
    backend: Backend,
) {
    // A relay nobody listens on: the reply is only queued here.
    let app = spawn_app_with(backend, |s| {
        s.outbound.host = "127.0.0.1".into();
        s.outbound.port = 9;
        s.outbound.tls = emailin::config::RelayTls::None;
    })
    .await;
    app.post(
        "Gone <gone@customer.example>",
        "sales@localhost",
        "Order",
        "o1@x",
        &[],
    )
    .await;
    let record = app.records("Sales").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let dsn = "From: MAILER-DAEMON@mx.example\r\nTo: sales@localhost\r\nSubject: Undelivered\r\n\
Message-ID: <dsn1@mx.example>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nGone.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; gone@customer.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n\
--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <o1@x>\r\n\r\n--b--\r\n";
    app.deliver("", &["sales@localhost"], dsn.as_bytes()).await;
    assert_eq!(
        app.contact("gone@customer.example").await.unwrap()["bounce_status"],
        "5.1.1"
    );

    let path = format!("/api/v1/records/{record}/replies");
    let (status, err) = admin(&app, Method::POST, &path, json!({"text": "Hello?"})).await;
    assert_eq!(status, 409, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("bounced") && message.contains("5.1.1") && message.contains("force"),
        "{message}"
    );
    let (status, queued) = admin(
        &app,
        Method::POST,
        &path,
        json!({"text": "Hello?", "force": true}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["status"], "queued");

    // A colleague's out-of-office joined the thread: they are an auto-responder here.
    app.post(
        "Away <away@customer.example>",
        "sales@localhost",
        "Out of office",
        "ooo1@customer.example",
        &[
            ("In-Reply-To", "<o1@x>"),
            ("Auto-Submitted", "auto-replied"),
        ],
    )
    .await;
    let (status, err) = admin(
        &app,
        Method::POST,
        &path,
        json!({"text": "Hello?", "force": true, "cc": ["away@customer.example"]}),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("auto-responder"), "{message}");
    app.stop().await;
}
