//! The web UI in real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver with fantoccini: a support
//! agent logs in, a customer's mail arrives over SMTP and its card appears
//! on the open board without a reload, the agent opens it, resolves it
//! with the stage select, replies from the box (the reply reaches a local
//! relay), comments with a mention, and the customer's answer to the reply
//! reopens the record, which the board shows in its open stage.
//!
//! Screenshots of each step are written to `target/screenshots/`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::process::{Child, Command};

use crate::helpers::{Backend, mail, messages};
use crate::replies::{captured, eventually, spawn_relay, spawn_sender_with};
use crate::web::{PASSWORD, user};
use emailin::store::Role;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CUSTOMER: &str = "yamada@customer.example";

/// Whether Chromium can run here; in CI its absence is a failure.
fn chromium_present() -> bool {
    let present = [CHROMIUM, CHROMEDRIVER]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "chromium and chromium-driver must be installed in CI"
        );
        eprintln!("skipped: browser test (chromium / chromium-driver are not installed)");
    }
    present
}

/// A chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        eventually("chromedriver to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        Driver { child, port }
    }

    async fn browser(&self, lang: &str) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,900",
                         format!("--lang={lang}")],
                "prefs": {"intl.accept_languages": lang},
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Waits (up to 20 s) for an element, without reloading the page.
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .send_keys(text)
        .await
        .expect("type");
}

async fn click(browser: &Client, what: Locator<'_>) {
    browser
        .find(what)
        .await
        .unwrap_or_else(|e| panic!("{what:?}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Waits until the page's event stream is connected (`app.js` marks it).
async fn live(browser: &Client) {
    eventually("the event stream to connect", || async {
        let live = browser
            .execute("return document.body.getAttribute('data-live');", vec![])
            .await
            .ok()?;
        (live.as_str() == Some("on")).then_some(())
    })
    .await;
}

/// The stage column a record's card is in, read from the page.
async fn column_of(browser: &Client, number: i64) -> Option<String> {
    let script = format!(
        "var c = document.querySelector('li.card[data-record=\"{number}\"]');\
         return c ? c.closest('section.column').getAttribute('data-stage') : null;"
    );
    let value = browser.execute(&script, vec![]).await.expect("script");
    value.as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    emailin_no_chromium,
    ignore = "skipped: chromium / chromium-driver are not installed"
)]
async fn an_agent_works_a_record_end_to_end_in_chromium() {
    if !chromium_present() {
        return;
    }
    let relay = spawn_relay(0, &[CUSTOMER]).await;
    // Offline DNS with nothing published: the sending-domain page shows
    // what to publish.
    let app = spawn_sender_with(Backend::Sqlite, relay.smtp_addr.port(), |s| {
        s.auth.resolver = emailin::config::ResolverKind::Static;
        s.aliases[1].also = vec!["support@acme.example".into()];
    })
    .await;
    user(&app, "ana@acme.test", "佐藤 アナ", Role::Admin).await;
    user(&app, "ben@acme.test", "Ben Carter", Role::Member).await;
    let driver = Driver::start().await;
    let browser = driver.browser("ja").await;
    let base = format!("http://{}", app.http_addr);

    // Log in.
    browser.goto(&format!("{base}/")).await.expect("goto");
    assert!(
        browser
            .current_url()
            .await
            .expect("url")
            .path()
            .starts_with("/login")
    );
    screenshot(&browser, "01-login").await;
    type_into(&browser, "#email", "ana@acme.test").await;
    type_into(&browser, "#password", PASSWORD).await;
    click(&browser, Locator::Css("main.login button[type=submit]")).await;
    wait_for(&browser, "header.top").await;

    // The Service board, live: mark the page so a reload would show.
    browser
        .goto(&format!("{base}/?pipeline=Service"))
        .await
        .expect("goto");
    wait_for(&browser, "#board").await;
    browser
        .execute("window.__sameDocument = true; return true;", vec![])
        .await
        .expect("mark");
    live(&browser).await;

    let first = mail(
        &format!("山田 太郎 <{CUSTOMER}>"),
        "service@localhost",
        "プリンターが接続できません",
        "m1@customer.example",
        &[],
        "お世話になっております。\n昨日のアップデート後、プリンターがネットワークに接続できなくなりました。\nご確認をお願いいたします。",
    );
    app.send(CUSTOMER, &["service@localhost"], &first)
        .await
        .expect("250");
    wait_for(&browser, "li.card[data-record='1']").await;
    let same = browser
        .execute("return window.__sameDocument === true;", vec![])
        .await
        .expect("check");
    assert_eq!(same, json!(true), "the card appeared without a reload");
    assert_eq!(column_of(&browser, 1).await.as_deref(), Some("Open"));
    screenshot(&browser, "02-board-new-card").await;

    // Open it.
    click(&browser, Locator::Css("li.card[data-record='1'] a.title")).await;
    wait_for(&browser, "ol.conversation li.message").await;
    let text = browser
        .find(Locator::Css("ol.conversation"))
        .await
        .expect("conversation")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("プリンターがネットワークに接続できなくなりました"),
        "{text}"
    );
    screenshot(&browser, "03-record").await;

    // Resolve it with the stage select (it submits on change).
    browser
        .find(Locator::Css("#stage"))
        .await
        .expect("stage select")
        .select_by_value("Resolved")
        .await
        .expect("select");
    eventually("the record to be Resolved", || async {
        let records = app.records("Service").await;
        (records[0]["stage"] == "Resolved").then_some(())
    })
    .await;
    wait_for(&browser, "ol.conversation li.event").await;

    // Reply from the box; the relay gets it.
    type_into(&browser, "#reply-text", "山田様\n\nご連絡ありがとうございます。ファームウェア 2.1 で修正済みです。\n\nサポート 佐藤").await;
    click(
        &browser,
        Locator::XPath("//button[normalize-space()='Send reply']"),
    )
    .await;
    wait_for(&browser, "ol.conversation li.message.out").await;
    let raw = eventually("the reply at the relay", || async {
        captured(&relay).await.into_iter().next()
    })
    .await;
    let sent = mail_parser::MessageParser::default()
        .parse(&raw)
        .expect("the relay's copy parses");
    assert!(
        sent.body_text(0)
            .is_some_and(|t| t.contains("ファームウェア 2.1 で修正済みです")),
        "the reply's text"
    );
    let reply_id = sent.message_id().expect("a Message-ID").to_string();

    // Comment with a mention chip.
    click(
        &browser,
        Locator::Css("button.chip[data-mention='ben@acme.test']"),
    )
    .await;
    type_into(&browser, "#comment-text", "修正版の案内をお願いします").await;
    click(
        &browser,
        Locator::XPath("//button[normalize-space()='Add comment']"),
    )
    .await;
    let comment = wait_for(&browser, "ol.conversation li.comment").await;
    let comment = comment.text().await.expect("text");
    assert!(
        comment.contains("@ben@acme.test 修正版の案内をお願いします"),
        "{comment}"
    );
    assert!(comment.contains("Mentions: ben@acme.test"), "{comment}");
    assert!(comment.contains("ana@acme.test commented"), "{comment}");
    screenshot(&browser, "04-record-replied-and-commented").await;

    // Back on the board, the customer answers the reply: the record is
    // reopened and its card moves to the open stage without a reload.
    browser
        .goto(&format!("{base}/?pipeline=Service"))
        .await
        .expect("goto");
    wait_for(&browser, "li.card[data-record='1']").await;
    assert_eq!(column_of(&browser, 1).await.as_deref(), Some("Resolved"));
    // Other customers write meanwhile (the board of a working day).
    for (i, (from, subject)) in [
        (
            "Maria Garcia <maria@acme-corp.example>",
            "Invoice 2026-118 shows the wrong VAT rate",
        ),
        (
            "佐藤 花子 <hanako@example.jp>",
            "パスワードを再設定できません",
        ),
        (
            "Bob Stone <bob@stone.example>",
            "Scanner driver for macOS 16?",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let raw = mail(
            from,
            "service@localhost",
            subject,
            &format!("other{i}@customers.example"),
            &[],
            "Hello",
        );
        app.send("someone@customers.example", &["service@localhost"], &raw)
            .await
            .expect("250");
    }
    wait_for(&browser, "li.card[data-record='4']").await;
    live(&browser).await;
    let answer = mail(
        &format!("山田 太郎 <{CUSTOMER}>"),
        "service@localhost",
        "Re: プリンターが接続できません",
        "m2@customer.example",
        &[
            ("In-Reply-To", &format!("<{reply_id}>")),
            ("References", &format!("<m1@customer.example> <{reply_id}>")),
        ],
        "更新しましたが、まだ接続できません。\n\n2026年12月7日(月) 10:00 Service <service@localhost>:\n> 山田様\n>\n> ご連絡ありがとうございます。ファームウェア 2.1 で修正済みです。\n",
    );
    app.send(CUSTOMER, &["service@localhost"], &answer)
        .await
        .expect("250");
    eventually("the card in Reopened", || async {
        (column_of(&browser, 1).await.as_deref() == Some("Reopened")).then_some(())
    })
    .await;
    screenshot(&browser, "05-board-reopened").await;
    let records = app.records("Service").await;
    let record = records.iter().find(|r| r["number"] == 1).expect("record 1");
    assert_eq!(record["stage"], "Reopened");
    let detail = app.record(record["id"].as_str().expect("id")).await;
    assert_eq!(
        messages(&detail)
            .iter()
            .filter(|m| m["direction"] == "in")
            .count(),
        2
    );

    // The admin pages, as an admin sees them.
    for (page, name) in [
        ("/admin/inbound?status=processed", "06-admin-inbound"),
        (
            "/admin/aliases?edit=service%40localhost",
            "07-admin-aliases",
        ),
        ("/admin/pipelines", "08-admin-pipelines"),
        ("/admin/users", "09-admin-users"),
        ("/contacts", "10-contacts"),
        ("/admin/webhooks", "11-admin-webhooks"),
        ("/admin/domains", "17-admin-domains"),
        ("/me", "12-me"),
        ("/records/1", "13-record-conversation"),
    ] {
        browser.goto(&format!("{base}{page}")).await.expect("goto");
        wait_for(&browser, "main h1").await;
        screenshot(&browser, name).await;
    }
    // The answer shows its new part; the quoted reply is folded away.
    let inbound = browser
        .find_all(Locator::Css("ol.conversation li.message.in"))
        .await
        .expect("messages");
    let shown = inbound
        .last()
        .expect("the answer")
        .text()
        .await
        .expect("text");
    assert!(
        shown.contains("まだ接続できません") && !shown.contains("> 山田様"),
        "{shown}"
    );
    let folded = browser
        .find_all(Locator::Css("ol.conversation li.message details.quoted"))
        .await
        .expect("folds");
    assert_eq!(folded.len(), 1, "only the answer quotes anything");
    // The search box of every page finds the record by a word of its
    // Japanese text (接続, inside 接続できません).
    browser.goto(&format!("{base}/")).await.expect("goto");
    type_into(&browser, "#top-search", "接続").await;
    browser
        .find(Locator::Css("#top-search"))
        .await
        .expect("search box")
        .send_keys("\u{E007}")
        .await
        .expect("enter");
    eventually("the record found", || async {
        let found = browser
            .find(Locator::Css("table.list a[href='/records/1']"))
            .await
            .is_ok();
        if !found {
            let _ = browser.refresh().await;
        }
        found.then_some(())
    })
    .await;
    screenshot(&browser, "14-search").await;

    // Forwarding a message: the form opens under it, in the conversation.
    browser
        .goto(&format!("{base}/records/1"))
        .await
        .expect("goto");
    click(
        &browser,
        Locator::Css("ol.conversation details.forward summary"),
    )
    .await;
    wait_for(&browser, "details.forward[open] input[name=to]").await;
    type_into(
        &browser,
        "details.forward[open] input[name=to]",
        "supplier@vendor.example",
    )
    .await;
    type_into(
        &browser,
        "details.forward[open] textarea",
        "この件の見積をお願いできますか。",
    )
    .await;
    screenshot(&browser, "15-record-forward").await;
    // The contact page: unsubscribe and, for admins, erasure.
    let contact = detail["contact"]["id"]
        .as_str()
        .expect("contact")
        .to_string();
    browser
        .goto(&format!("{base}/contacts/{contact}"))
        .await
        .expect("goto");
    wait_for(&browser, "main h1").await;
    click(&browser, Locator::Css("details.danger summary")).await;
    screenshot(&browser, "16-contact").await;
    let _ = browser.close().await;
    app.stop().await;
    relay.stop().await;
}
