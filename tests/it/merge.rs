//! Reshaping conversations: merging a record into another, splitting a
//! thread off to a new record, and forwarding a message to a third party.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, events, mail, messages, spawn_app};
use crate::on_both_backends;
use crate::replies::{captured, eventually, spawn_relay, spawn_sender};

on_both_backends!(
    a_merged_record_hands_its_conversation_and_later_replies_to_the_other,
    merging_refuses_itself_twice_and_across_pipelines,
    a_split_moves_a_thread_to_a_new_related_record,
    a_split_refuses_comments_strangers_and_the_whole_conversation,
    a_message_is_forwarded_to_a_third_party_with_its_files,
    a_forward_needs_a_recipient_a_message_of_the_record_and_a_relay,
    a_person_merges_splits_and_forwards_from_the_record_page,
);

const CUSTOMER: &str = "ann@customer.example";

fn id(v: &Value) -> &str {
    v["id"].as_str().expect("id")
}

fn kinds(record: &Value) -> Vec<String> {
    events(record)
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn message_ids(record: &Value) -> Vec<String> {
    messages(record)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The record whose title is `title`.
async fn titled(app: &TestApp, pipeline: &str, title: &str) -> Value {
    let records = app.records(pipeline).await;
    let found = records
        .iter()
        .find(|r| r["title"] == title)
        .unwrap_or_else(|| panic!("no record {title:?} in {records:?}"));
    app.record(id(found)).await
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    app.send_json(Method::POST, path, &app.member_token, body)
        .await
}

async fn a_merged_record_hands_its_conversation_and_later_replies_to_the_other(backend: Backend) {
    let relay = spawn_relay(0, &[CUSTOMER]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    let to = "sales@localhost";
    let first = mail(
        CUSTOMER,
        to,
        "Chairs",
        "a1@customer.example",
        &[],
        "40 chairs.",
    );
    app.deliver(CUSTOMER, &[to], &first).await;
    let again = mail(
        CUSTOMER,
        to,
        "Chairs, again",
        "b1@customer.example",
        &[],
        "Did you get it?",
    );
    app.deliver(CUSTOMER, &[to], &again).await;
    let (a, b) = (
        titled(&app, "Sales", "Chairs").await,
        titled(&app, "Sales", "Chairs, again").await,
    );
    let (a_number, b_number) = (
        a["number"].as_i64().expect("n"),
        b["number"].as_i64().expect("n"),
    );
    // A reply from the record to be merged: its reply address names it.
    let (status, reply) = post(
        &app,
        &format!("/api/v1/records/{}/replies", id(&a)),
        json!({"text": "On it."}),
    )
    .await;
    assert_eq!(status, 202, "{reply}");
    let reply_to = reply["reply_to"].as_str().expect("reply_to").to_string();

    let (status, moved) = post(
        &app,
        &format!("/api/v1/records/{}/merge", id(&a)),
        json!({"into": id(&b)}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["from"]["number"], a_number);
    assert_eq!(moved["into"]["number"], b_number);
    assert_eq!(
        moved["messages"], 2,
        "the customer's mail and the reply: {moved}"
    );

    let merged = app.record(id(&a)).await;
    assert_eq!(merged["merged_into"]["id"], id(&b), "{merged}");
    assert_eq!(merged["merged_into"]["reference"], format!("[#{b_number}]"));
    assert_eq!(merged["stage_kind"], "closed", "{merged}");
    assert!(messages(&merged).is_empty(), "{merged}");
    let merged_kinds = kinds(&merged);
    assert!(
        merged_kinds.contains(&"merged_into".to_string()),
        "{merged_kinds:?}"
    );
    assert!(
        merged_kinds.contains(&"stage_changed".to_string()),
        "{merged_kinds:?}"
    );
    let target = app.record(id(&b)).await;
    assert!(target["merged_into"].is_null());
    assert_eq!(messages(&target).len(), 3, "{target}");
    assert!(kinds(&target).contains(&"merged".to_string()));

    // Later mail naming the merged record, by each threading rule, lands on the other.
    let by_header = mail(
        CUSTOMER,
        to,
        "Re: Chairs",
        "a2@customer.example",
        &[("In-Reply-To", "<a1@customer.example>")],
        "Blue ones.",
    );
    app.deliver(CUSTOMER, &[to], &by_header).await;
    let by_tag = mail(
        CUSTOMER,
        to,
        &format!("Chairs [#{a_number}]"),
        "a3@customer.example",
        &[],
        "And a table.",
    );
    app.deliver(CUSTOMER, &[to], &by_tag).await;
    let by_token = mail(
        CUSTOMER,
        &reply_to,
        "Re: Chairs",
        "a4@customer.example",
        &[],
        "Thanks.",
    );
    app.deliver(CUSTOMER, &[&reply_to], &by_token).await;
    let target = app.record(id(&b)).await;
    let ids = message_ids(&target);
    for joined in [
        "a2@customer.example",
        "a3@customer.example",
        "a4@customer.example",
    ] {
        assert!(
            ids.iter().any(|m| m == joined),
            "{joined} not on the target: {ids:?}"
        );
    }
    assert!(messages(&app.record(id(&a)).await).is_empty());
    assert_eq!(
        app.records("Sales").await.len(),
        2,
        "no new record was started"
    );

    // Merged into a record that is merged in turn: mail still finds the last one.
    let third = mail(
        CUSTOMER,
        to,
        "Tables",
        "c1@customer.example",
        &[],
        "Tables too.",
    );
    app.deliver(CUSTOMER, &[to], &third).await;
    let c = titled(&app, "Sales", "Tables").await;
    let (status, body) = post(
        &app,
        &format!("/api/v1/records/{}/merge", id(&b)),
        json!({"into": id(&c)}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let late = mail(
        CUSTOMER,
        to,
        &format!("Chairs [#{a_number}]"),
        "a5@customer.example",
        &[],
        "Any news?",
    );
    app.deliver(CUSTOMER, &[to], &late).await;
    let c = app.record(id(&c)).await;
    assert!(
        message_ids(&c).iter().any(|m| m == "a5@customer.example"),
        "{c}"
    );
    assert_eq!(app.record(id(&a)).await["merged_into"]["id"], id(&c));
    app.stop().await;
    relay.stop().await;
}

async fn merging_refuses_itself_twice_and_across_pipelines(backend: Backend) {
    let app = spawn_app(backend).await;
    app.post(CUSTOMER, "sales@localhost", "One", "m1@x", &[])
        .await;
    app.post(CUSTOMER, "sales@localhost", "Two", "m2@x", &[])
        .await;
    app.post(CUSTOMER, "service@localhost", "Three", "m3@x", &[])
        .await;
    let one = titled(&app, "Sales", "One").await;
    let two = titled(&app, "Sales", "Two").await;
    let three = titled(&app, "Service", "Three").await;
    let path = |from: &Value| format!("/api/v1/records/{}/merge", id(from));

    let (status, body) = post(&app, &path(&one), json!({"into": id(&one)})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = post(&app, &path(&one), json!({"into": id(&three)})).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("pipelines"),
        "{body}"
    );
    let (status, body) = post(&app, &path(&one), json!({"into": uuid::Uuid::now_v7()})).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = post(&app, &path(&one), json!({"into": "not an id"})).await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = post(&app, &path(&one), json!({"into": id(&two)})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(&app, &path(&one), json!({"into": id(&two)})).await;
    assert_eq!(status, 409, "merged already: {body}");
    let (status, body) = post(&app, &path(&two), json!({"into": id(&one)})).await;
    assert_eq!(status, 409, "into a merged record: {body}");
    // Nothing of the refused merges was written.
    assert_eq!(messages(&app.record(id(&three)).await).len(), 1);
    assert_eq!(messages(&app.record(id(&two)).await).len(), 2);
    app.stop().await;
}

/// A record with two threads: `t1` and its replies, then `t4` (joined by
/// the subject tag, a thread of its own) and its reply `t5`.
async fn two_threads(app: &TestApp) -> Value {
    let to = "service@localhost";
    // Bo is copied from the start: a participant, whose mail joins.
    app.post(
        CUSTOMER,
        to,
        "Printer",
        "t1@customer.example",
        &[("Cc", "bo@other.example")],
    )
    .await;
    let record = titled(app, "Service", "Printer").await;
    let number = record["number"].as_i64().expect("number");
    for (mid, subject, parent, refs) in [
        (
            "t2@customer.example",
            "Re: Printer".to_string(),
            Some("<t1@customer.example>"),
            "<t1@customer.example>",
        ),
        (
            "t3@customer.example",
            "Re: Printer".to_string(),
            Some("<t2@customer.example>"),
            "<t1@customer.example> <t2@customer.example>",
        ),
        (
            "t4@other.example",
            format!("Re: The scanner [#{number}]"),
            None,
            "",
        ),
        (
            "t5@customer.example",
            "Re: The scanner".to_string(),
            None,
            "<t4@other.example>",
        ),
    ] {
        let mut headers = Vec::new();
        if let Some(parent) = parent {
            headers.push(("In-Reply-To", parent));
        }
        if !refs.is_empty() {
            headers.push(("References", refs));
        }
        let from = if mid.ends_with("other.example") {
            "Bo <bo@other.example>"
        } else {
            CUSTOMER
        };
        let raw = mail(from, to, &subject, mid, &headers, "text");
        app.deliver(
            from.trim_start_matches("Bo <").trim_end_matches('>'),
            &[to],
            &raw,
        )
        .await;
    }
    let record = app.record(id(&record)).await;
    assert_eq!(messages(&record).len(), 5, "{record}");
    record
}

fn message_uuid<'a>(record: &'a Value, message_id: &str) -> &'a str {
    record["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .find(|m| m["message_id"] == message_id)
        .and_then(|m| m["id"].as_str())
        .expect("the message")
}

async fn a_split_moves_a_thread_to_a_new_related_record(backend: Backend) {
    let app = spawn_app(backend).await;
    let record = two_threads(&app).await;
    let number = record["number"].as_i64().expect("number");
    let at = message_uuid(&record, "t4@other.example").to_string();

    let (status, moved) = post(
        &app,
        &format!("/api/v1/records/{}/split", id(&record)),
        json!({"message": at}),
    )
    .await;
    assert_eq!(status, 201, "{moved}");
    assert_eq!(moved["messages"], 2, "{moved}");
    assert_eq!(moved["from"]["number"], number);
    let new = app
        .record(moved["into"]["id"].as_str().expect("new id"))
        .await;
    assert_eq!(
        new["title"], "The scanner",
        "reply prefix and record tag dropped: {new}"
    );
    assert_eq!(new["related_record_id"], id(&record));
    assert_eq!(new["pipeline"], "Service");
    assert_eq!(new["stage"], "Open", "the pipeline's first open stage");
    assert_eq!(new["tags"], record["tags"]);
    assert_eq!(
        new["contact"]["email"], "bo@other.example",
        "who started that thread: {new}"
    );
    assert_eq!(
        message_ids(&new),
        ["t4@other.example", "t5@customer.example"]
    );
    let new_kinds = kinds(&new);
    assert!(
        new_kinds.contains(&"created".to_string()) && new_kinds.contains(&"split_from".to_string()),
        "{new_kinds:?}"
    );
    let old = app.record(id(&record)).await;
    assert_eq!(
        message_ids(&old),
        [
            "t1@customer.example",
            "t2@customer.example",
            "t3@customer.example"
        ]
    );
    assert!(kinds(&old).contains(&"split_to".to_string()));
    assert_eq!(old["contact"]["email"], CUSTOMER);

    // A later reply in the split thread follows it to the new record.
    let later = mail(
        CUSTOMER,
        "service@localhost",
        "Re: The scanner",
        "t6@customer.example",
        &[("In-Reply-To", "<t5@customer.example>")],
        "Fixed?",
    );
    app.deliver(CUSTOMER, &["service@localhost"], &later).await;
    assert!(
        message_ids(&app.record(id(&new)).await)
            .iter()
            .any(|m| m == "t6@customer.example")
    );
    assert_eq!(messages(&app.record(id(&record)).await).len(), 3);

    // Search finds the moved words on the new record.
    let found = eventually("the split thread indexed under the new record", || async {
        let (status, page) = app.get("/api/v1/records?q=scanner").await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        items.iter().any(|r| r["id"] == new["id"]).then_some(items)
    })
    .await;
    assert!(!found.is_empty());
    app.stop().await;
}

async fn a_split_refuses_comments_strangers_and_the_whole_conversation(backend: Backend) {
    let app = spawn_app(backend).await;
    let record = two_threads(&app).await;
    let split = format!("/api/v1/records/{}/split", id(&record));
    let (status, body) = post(
        &app,
        &format!("/api/v1/records/{}/comments", id(&record)),
        json!({"text": "Same customer."}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let root = message_uuid(&record, "t1@customer.example").to_string();
    let (status, body) = post(&app, &split, json!({"message": root})).await;
    assert_eq!(
        status, 201,
        "the first thread can go, the second stays: {body}"
    );
    let record = app.record(id(&record)).await;
    let rest = message_uuid(&record, "t4@other.example").to_string();
    let (status, body) = post(&app, &split, json!({"message": rest})).await;
    assert_eq!(status, 409, "every message would go: {body}");
    let (status, body) = post(&app, &split, json!({"message": "t4"})).await;
    assert_eq!(status, 422, "{body}");
    let comment = &record["conversation"]
        .as_array()
        .expect("conversation")
        .iter()
        .find(|m| m["direction"] == "comment")
        .expect("the comment")["id"];
    let (status, body) = post(&app, &split, json!({"message": comment})).await;
    assert_eq!(status, 409, "{body}");
    let (status, body) = post(&app, &split, json!({"message": uuid::Uuid::now_v7()})).await;
    assert_eq!(status, 404, "{body}");
    // The second thread and the comment stayed.
    assert_eq!(messages(&app.record(id(&record)).await).len(), 3);
    app.stop().await;
}

async fn a_message_is_forwarded_to_a_third_party_with_its_files(backend: Backend) {
    const SUPPLIER: &str = "supplier@vendor.example";
    let relay = spawn_relay(0, &[SUPPLIER]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    let to = "sales@localhost";
    let pdf = b"%PDF-1.4\n% drawing\n";
    let raw = format!(
        "From: =?UTF-8?B?5bGx55Sw?= <{CUSTOMER}>\r\nTo: {to}\r\nSubject: =?UTF-8?B?6KaL56mN?=\r\n\
Message-ID: <f1@customer.example>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
椅子40脚の見積をお願いします。\r\n--b\r\nContent-Type: application/pdf\r\n\
Content-Disposition: attachment; filename*=UTF-8''%E5%9B%B3%E9%9D%A2.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
        base64_of(pdf)
    );
    app.deliver(CUSTOMER, &[to], raw.as_bytes()).await;
    let record = titled(&app, "Sales", "見積").await;
    let number = record["number"].as_i64().expect("number");
    let original = message_uuid(&record, "f1@customer.example").to_string();

    let (status, queued) = post(
        &app,
        &format!("/api/v1/records/{}/forwards", id(&record)),
        json!({"message": original, "to": [SUPPLIER], "text": "Can you quote this drawing?"}),
    )
    .await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!(queued["attachments"], 1);
    let wire_raw = eventually("the forward at the relay", || async {
        captured(&relay).await.into_iter().next()
    })
    .await;
    let wire = mail_parser::MessageParser::default()
        .parse(&wire_raw)
        .expect("parsable");
    assert_eq!(
        wire.subject(),
        Some(format!("Fwd: 見積 [#{number}]").as_str())
    );
    assert!(wire.in_reply_to().is_empty(), "a forward answers nobody");
    assert_eq!(
        wire.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some(SUPPLIER)
    );
    let reply_to = wire
        .reply_to()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .expect("Reply-To")
        .to_string();
    assert!(reply_to.starts_with("sales+r-"), "{reply_to}");
    let text = wire.body_text(0).expect("text").to_string();
    assert!(text.starts_with("Can you quote this drawing?"), "{text}");
    assert!(
        text.contains("---------- Forwarded message ---------"),
        "{text}"
    );
    assert!(text.contains(&format!("From: 山田 <{CUSTOMER}>")), "{text}");
    assert!(text.contains("椅子40脚の見積をお願いします。"), "{text}");
    let file = wire.attachments().next().expect("the drawing");
    assert_eq!(
        mail_parser::MimeHeaders::attachment_name(file),
        Some("図面.pdf")
    );
    assert_eq!(file.contents(), pdf);

    let record = app.record(id(&record)).await;
    let forward = messages(&record)
        .into_iter()
        .find(|m| m["thread"]["rule"] == "forward")
        .expect("the forward on the record");
    assert_eq!(forward["direction"], "out");
    assert_eq!(forward["thread"]["value"], original.as_str());
    assert_eq!(forward["to"][0]["address"], SUPPLIER);
    assert_eq!(forward["attachments"][0]["name"], "図面.pdf");
    let event = events(&record)
        .into_iter()
        .find(|e| e["kind"] == "forward_queued")
        .expect("event");
    assert_eq!(event["detail"], SUPPLIER);
    eventually("the forward sent", || async {
        let record = app.record(id(&record)).await;
        messages(&record)
            .into_iter()
            .any(|m| m["thread"]["rule"] == "forward" && m["delivery"]["status"] == "sent")
            .then_some(())
    })
    .await;

    // The supplier's answer comes back to the record.
    let answer = mail(
        SUPPLIER,
        &reply_to,
        "Re: Fwd: 見積",
        "s1@vendor.example",
        &[],
        "40 chairs: 4,000 EUR.",
    );
    app.deliver(SUPPLIER, &[&reply_to], &answer).await;
    let record = app.record(id(&record)).await;
    assert!(
        message_ids(&record)
            .iter()
            .any(|m| m == "s1@vendor.example"),
        "{record}"
    );
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
    relay.stop().await;
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn a_forward_needs_a_recipient_a_message_of_the_record_and_a_relay(backend: Backend) {
    let relay = spawn_relay(0, &["x@vendor.example"]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    app.post(CUSTOMER, "sales@localhost", "One", "n1@x", &[])
        .await;
    app.post(CUSTOMER, "sales@localhost", "Two", "n2@x", &[])
        .await;
    let one = titled(&app, "Sales", "One").await;
    let two = titled(&app, "Sales", "Two").await;
    let path = format!("/api/v1/records/{}/forwards", id(&one));
    let message = message_uuid(&one, "n1@x").to_string();
    for (body, want) in [
        (json!({"message": message, "to": []}), 422),
        (
            json!({"message": message, "to": ["no-reply@vendor.example"]}),
            422,
        ),
        (json!({"message": message, "to": ["not an address"]}), 422),
        (
            json!({"message": message_uuid(&two, "n2@x"), "to": ["x@vendor.example"]}),
            404,
        ),
        (
            json!({"message": message, "to": ["x@vendor.example"], "bcc": []}),
            422,
        ),
    ] {
        let (status, answer) = post(&app, &path, body.clone()).await;
        assert_eq!(status, want, "{body} → {answer}");
    }
    assert_eq!(
        messages(&app.record(id(&one)).await).len(),
        1,
        "nothing queued"
    );
    app.stop().await;
    relay.stop().await;

    let without_relay = spawn_app(backend).await;
    without_relay
        .post(CUSTOMER, "sales@localhost", "One", "n1@x", &[])
        .await;
    let one = titled(&without_relay, "Sales", "One").await;
    let (status, body) = post(
        &without_relay,
        &format!("/api/v1/records/{}/forwards", id(&one)),
        json!({"message": message_uuid(&one, "n1@x"), "to": ["x@vendor.example"]}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    without_relay.stop().await;
}

async fn a_person_merges_splits_and_forwards_from_the_record_page(backend: Backend) {
    use crate::web::{PASSWORD, Web, user};
    use reqwest::StatusCode;
    const SUPPLIER: &str = "supplier@vendor.example";
    let relay = spawn_relay(0, &[SUPPLIER]).await;
    let app = spawn_sender(backend, relay.smtp_addr.port()).await;
    user(&app, "ana@acme.test", "Ana", emailin::store::Role::Member).await;
    let record = two_threads(&app).await;
    app.post(
        CUSTOMER,
        "service@localhost",
        "Toner",
        "o1@customer.example",
        &[],
    )
    .await;
    let other = titled(&app, "Service", "Toner").await;
    let (number, other_number) = (
        record["number"].as_i64().expect("n"),
        other["number"].as_i64().expect("n"),
    );
    let page = format!("/records/{number}");
    let mut web = Web::new(&app);
    assert_eq!(
        web.login("ana@acme.test", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    let (status, html, _) = web.get(&page).await;
    assert_eq!(status, StatusCode::OK);
    for control in [
        "Merge into record",
        "Split into a new record",
        "Forward…",
        "name=\"to\"",
    ] {
        assert!(html.contains(control), "{control} missing");
    }

    // Forward: without a recipient the page comes back with the note kept.
    let first = message_uuid(&record, "t1@customer.example").to_string();
    let form = [
        ("message", first.as_str()),
        ("to", ""),
        ("text", "Please quote, 見積をお願いします"),
    ];
    let (status, html, _) = web.post(&page, &format!("{page}/forward"), &form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("name at least one address"), "{html}");
    assert!(
        html.contains("Please quote, 見積をお願いします"),
        "the note is kept"
    );
    let form = [
        ("message", first.as_str()),
        ("to", SUPPLIER),
        ("text", "Please quote."),
    ];
    let (status, _, location) = web.post(&page, &format!("{page}/forward"), &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some(page.as_str()));
    let (_, html, _) = web.get(&page).await;
    assert!(
        html.contains(&format!("forwarded to {SUPPLIER}")),
        "the forward on the page"
    );
    assert!(
        html.contains(&format!("Forwarded to {SUPPLIER} by ana@acme.test")),
        "its event"
    );

    // Split the second thread off: to the new record.
    let second = message_uuid(&record, "t4@other.example").to_string();
    let (status, _, location) = web
        .post(
            &page,
            &format!("{page}/split"),
            &[("message", second.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let new_page = location.expect("to the new record");
    let (_, html, _) = web.get(&new_page).await;
    assert!(
        html.contains("The scanner")
            && html.contains(&format!("Split off from record [#{number}]")),
        "{html}"
    );

    // Merge: a number that is no record, then the right one.
    let (status, html, _) = web
        .post(&new_page, &format!("{new_page}/merge"), &[("into", "abc")])
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("Type the number of the record"), "{html}");
    let into = format!("#{other_number}");
    let (status, _, location) = web
        .post(
            &new_page,
            &format!("{new_page}/merge"),
            &[("into", into.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, Some(format!("/records/{other_number}")));
    let (_, html, _) = web.get(&new_page).await;
    assert!(html.contains("This record was merged into"), "{html}");
    assert!(html.contains(&format!("href=\"/records/{other_number}\"")));
    assert!(!html.contains("Merge into record") && !html.contains("Split into a new record"));
    let (_, html, _) = web.get(&format!("/records/{other_number}")).await;
    assert!(
        html.contains("The scanner"),
        "the merged thread shows on the record it went to"
    );
    app.stop().await;
    relay.stop().await;
}
