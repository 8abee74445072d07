//! The SMTP session against raw clients: the DATA reader (empty messages,
//! dot-stuffing, every smuggling variant), legacy addresses, protocol
//! points of RFC 5321 / 6531, and the deadlines and per-client limits that
//! keep one client from holding the listener.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;

use crate::helpers::{Backend, TestApp, mail, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::smtp::Raw;

on_both_backends!(
    legacy_carrier_address_is_accepted_and_becomes_the_contact_as_written,
    leading_dot_of_the_first_line_is_unstuffed,
    no_smuggling_variant_ends_data,
    postmaster_is_accepted_and_reaches_a_pipeline,
);

const ENVELOPE: &[u8] = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n";

async fn codes(c: &mut Raw) -> Vec<u16> {
    c.all_replies().await.into_iter().map(|r| r.0).collect()
}

async fn legacy_carrier_address_is_accepted_and_becomes_the_contact_as_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let from = "taro..yamada.@docomo.ne.jp";
    app.deliver(
        from,
        &["sales@localhost"],
        &mail(from, "sales@localhost", "見積もり", "k1@docomo", &[], "hi"),
    )
    .await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1, "the message became a record");
    assert_eq!(records[0]["contact"]["email"], from);
    // The quoted form of the same address is the same sender.
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<\"taro..yamada.\"@docomo.ne.jp>\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    app.stop().await;
}

async fn leading_dot_of_the_first_line_is_unstuffed(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = Raw::ehlo(&app).await;
    let mut session = ENVELOPE.to_vec();
    // A client stuffs the dot of `.Hidden:`; the stored message has one dot.
    session.extend_from_slice(
        b"..Hidden: x\r\nFrom: a@example.com\r\nSubject: dots\r\n\r\n..line\r\n.\r\nQUIT\r\n",
    );
    c.send(&session).await;
    assert_eq!(codes(&mut c).await, [250, 250, 354, 250, 221]);
    app.wait_idle().await;
    let inbound = app.inbound(None).await;
    assert_eq!(inbound.len(), 1);
    let id = inbound[0]["id"].as_str().expect("id");
    let (status, raw) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
    assert_eq!(status, 200);
    assert_eq!(
        raw,
        b".Hidden: x\r\nFrom: a@example.com\r\nSubject: dots\r\n\r\n.line\r\n"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_dot_right_after_354_ends_data_at_once() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::ehlo(&app).await;
    let mut session = ENVELOPE.to_vec();
    session.extend_from_slice(b".\r\nNOOP\r\n");
    let started = Instant::now();
    c.send(&session).await;
    for _ in 0..3 {
        c.reply().await;
    }
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (554, "5.6.0 Empty message, nothing stored")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no wait for a timeout"
    );
    assert_eq!(c.reply().await.0, 250, "the session goes on");
    app.stop().await;
}

/// Every end-of-data look-alike of the 2023 SMTP smuggling research, each
/// followed by a forged second transaction: one message, one `250`.
async fn no_smuggling_variant_ends_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let variants: [&[u8]; 9] = [
        b"\n.\n",
        b"\n.\r\n",
        b"\r.\r",
        b"\r.\n",
        b"\r\n.\r",
        b"\r\n.\n",
        b"\r\n.\r\r\n",
        b"\n.\r\r\n",
        b"\r\r\n.\r\r\n",
    ];
    for (i, end) in variants.iter().enumerate() {
        let mut c = Raw::ehlo(&app).await;
        let mut session = ENVELOPE.to_vec();
        session.extend_from_slice(
            format!("From: a@example.com\r\nSubject: honest {i}\r\nMessage-ID: <honest-{i}@x>\r\n\r\nhello").as_bytes(),
        );
        session.extend_from_slice(end);
        session.extend_from_slice(
            format!("MAIL FROM:<ceo@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\nFrom: ceo@example.com\r\nSubject: smuggled {i}\r\n\r\npay\r\n.\r\nQUIT\r\n").as_bytes(),
        );
        c.send(&session).await;
        assert_eq!(
            codes(&mut c).await,
            [250, 250, 354, 250, 221],
            "variant {end:?}"
        );
    }
    app.wait_idle().await;
    let titles: Vec<String> = app
        .records("Sales")
        .await
        .iter()
        .map(|r| r["title"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(titles.len(), variants.len(), "{titles:?}");
    assert!(titles.iter().all(|t| t.starts_with("honest")), "{titles:?}");
    app.stop().await;
}

async fn postmaster_is_accepted_and_reaches_a_pipeline(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<ops@example.net>\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    for rcpt in ["postmaster@localhost", "PostMaster@LOCALHOST", "postmaster"] {
        c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await;
        assert_eq!(c.reply().await.0, 250, "{rcpt}");
    }
    c.send(b"RCPT TO:<postmaster@elsewhere.example>\r\n").await;
    assert_eq!(c.reply().await.0, 550, "only our own domains' postmaster");
    c.send(b"DATA\r\n").await;
    assert_eq!(c.reply().await.0, 354);
    c.send(b"From: ops@example.net\r\nSubject: your server\r\nMessage-ID: <pm@x>\r\n\r\nhello\r\n.\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    app.wait_idle().await;
    let records = app.records("Sales").await;
    assert_eq!(
        records.len(),
        1,
        "postmaster mail goes to the first alias on the domain"
    );
    assert_eq!(records[0]["title"], "your server");
    app.stop().await;
}

#[tokio::test]
async fn protocol_points_of_rfc_5321_and_6531() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::connect(&app).await;
    c.reply().await;
    c.send(b"EHLO client.test\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250);
    assert_eq!(
        text.lines().next(),
        Some("localhost Hello, emailin is ready")
    );
    for (line, want) in [
        (
            "MAIL FROM:<tarō@example.jp>",
            "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter",
        ),
        (
            "MAIL FROM:<a@example.com> BODY=BINARYMIME",
            "555 5.5.4 BODY=BINARYMIME is not supported here",
        ),
        ("MAIL FROM:<a@example.com>", "250 2.1.0 Sender ok"),
        (
            "RCPT TO:<営業@localhost>",
            "553 5.6.7 Non-ASCII address needs the SMTPUTF8 parameter",
        ),
        ("RSET", "250 2.0.0 Ok"),
        (
            "MAIL FROM:<tarō@example.jp> SMTPUTF8",
            "250 2.1.0 Sender ok",
        ),
    ] {
        c.send(format!("{line}\r\n").as_bytes()).await;
        let (code, text) = c.reply().await;
        assert_eq!(format!("{code} {text}"), want, "{line}");
    }
    app.stop().await;
}

async fn connect_from(app: &TestApp, ip: &str) -> Raw {
    let socket = TcpSocket::new_v4().expect("socket");
    let ip: IpAddr = ip.parse().expect("ip");
    socket.bind(SocketAddr::new(ip, 0)).expect("bind");
    Raw::from_stream(socket.connect(app.smtp_addr).await.expect("connect"))
}

#[tokio::test]
async fn one_client_ip_cannot_take_every_session() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.max_sessions_per_ip = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(&app, "127.0.0.1").await;
        assert_eq!(c.reply().await.0, 220);
        held.push(c);
    }
    let mut third = connect_from(&app, "127.0.0.1").await;
    let (code, text) = third.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (
            421,
            "4.7.0 Too many connections from your address, try again later"
        )
    );
    let mut other = connect_from(&app, "127.0.0.2").await;
    assert_eq!(other.reply().await.0, 220, "another client is served");
    // A closed session frees its slot.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(&app, "127.0.0.1").await;
    assert_eq!(again.reply().await.0, 220);
    app.stop().await;
}

/// Sends `bytes` one at a time, `gap` apart, until the server answers.
async fn trickle(c: &mut Raw, bytes: &[u8], gap: Duration) -> Option<(u16, String)> {
    for b in bytes {
        c.send(&[*b]).await;
        if let Ok(reply) = tokio::time::timeout(gap, c.reply_or_close()).await {
            return reply;
        }
    }
    None
}

#[tokio::test]
async fn a_command_trickled_byte_by_byte_meets_the_command_deadline() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.command_timeout_secs = 1).await;
    let mut c = Raw::ehlo(&app).await;
    let started = Instant::now();
    let reply = trickle(
        &mut c,
        b"NOOP NOOP NOOP NOOP\r\n",
        Duration::from_millis(200),
    )
    .await;
    assert_eq!(
        reply,
        Some((421, "4.4.2 Timeout, closing connection".to_string()))
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    app.stop().await;
}

#[tokio::test]
async fn a_busy_session_meets_the_session_deadline() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.session_timeout_secs = 2).await;
    let mut c = Raw::ehlo(&app).await;
    let started = Instant::now();
    let last = loop {
        c.send(b"NOOP\r\n").await;
        match c.reply_or_close().await {
            Some((250, _)) if started.elapsed() < Duration::from_secs(10) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    assert_eq!(
        last,
        Some((421, "4.4.2 Timeout, closing connection".to_string()))
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    app.stop().await;
}

#[tokio::test]
async fn data_slower_than_the_minimum_rate_is_cut_off_and_faster_data_is_not() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.smtp.data_timeout_secs = 1;
        s.smtp.min_data_rate = 100_000;
    })
    .await;
    // 3 MB at full speed earns 30 s beyond the 1 s deadline.
    let mut c = Raw::ehlo(&app).await;
    let mut session = ENVELOPE.to_vec();
    session.extend_from_slice(b"From: a@example.com\r\nSubject: big\r\n\r\n");
    for _ in 0..30_000 {
        session.extend_from_slice(&[b'x'; 98]);
        session.extend_from_slice(b"\r\n");
    }
    session.extend_from_slice(b".\r\n");
    c.send(&session).await;
    let replies: Vec<u16> = [
        c.reply().await,
        c.reply().await,
        c.reply().await,
        c.reply().await,
    ]
    .iter()
    .map(|r| r.0)
    .collect();
    assert_eq!(replies, [250, 250, 354, 250]);
    // A byte every 100 ms earns nothing noticeable.
    let mut slow = Raw::ehlo(&app).await;
    slow.send(ENVELOPE).await;
    for _ in 0..3 {
        slow.reply().await;
    }
    let started = Instant::now();
    let reply = trickle(&mut slow, &[b'x'; 100], Duration::from_millis(100)).await;
    assert_eq!(
        reply,
        Some((421, "4.4.2 Timeout, closing connection".to_string()))
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    app.wait_idle().await;
    assert_eq!(
        app.inbound(None).await.len(),
        1,
        "only the complete message"
    );
    app.stop().await;
}
