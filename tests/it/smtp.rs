//! The SMTP listener against real clients: limits, codes, 8-bit bodies,
//! pipelining and smuggling attempts.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, mail, reply_code, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    unknown_alias_gets_550_and_nothing_is_stored,
    oversized_by_declared_size_gets_552,
    oversized_by_actual_bytes_gets_552_and_nothing_is_stored,
    eight_bit_latin1_body_is_stored_byte_for_byte,
    commands_inside_an_oversized_body_are_never_executed,
    bare_lf_dot_in_a_body_does_not_end_data,
);

#[tokio::test]
async fn ehlo_advertises_the_extensions_and_size() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::connect(&app).await;
    assert_eq!(c.reply().await.0, 220);
    c.send(b"EHLO client.test\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(code, 250);
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(text.contains(ext), "{ext} missing in {text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn recipients_match_case_insensitively_and_with_plus_tags() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<a@example.com>\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    for rcpt in ["SALES@LocalHost", "sales+anything@localhost"] {
        c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await;
        assert_eq!(c.reply().await.0, 250, "{rcpt}");
    }
    for rcpt in ["sales@elsewhere.example", "salesx@localhost"] {
        c.send(format!("RCPT TO:<{rcpt}>\r\n").as_bytes()).await;
        let (code, text) = c.reply().await;
        assert_eq!(
            (code, text.as_str()),
            (550, "5.1.1 No such recipient here"),
            "{rcpt} must be refused: no open relay"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn too_many_recipients_gets_452() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.max_recipients = 2).await;
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<sales@localhost>\r\nRCPT TO:<service@localhost>\r\nRCPT TO:<sales+x@localhost>\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    let (code, text) = c.reply().await;
    assert_eq!((code, text.as_str()), (452, "4.5.3 Too many recipients"));
    app.stop().await;
}

#[tokio::test]
async fn pipelined_transaction_gets_one_reply_per_command_in_order() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::ehlo(&app).await;
    let body = mail(
        "P <p@example.com>",
        "sales@localhost",
        "Pipelined",
        "pipe@x",
        &[],
        "x",
    );
    let mut burst = b"MAIL FROM:<p@example.com>\r\nRCPT TO:<nobody@localhost>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n".to_vec();
    burst.extend_from_slice(&body);
    burst.extend_from_slice(b".\r\nNOOP\r\nQUIT\r\n");
    c.send(&burst).await;
    let codes: Vec<u16> = c.all_replies().await.into_iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 550, 250, 354, 250, 250, 221]);
    app.wait_idle().await;
    assert_eq!(app.records("Sales").await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn overlong_command_line_gets_500_and_the_session_continues() {
    let app = spawn_app(Backend::Sqlite).await;
    let mut c = Raw::ehlo(&app).await;
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 10_000));
    line.extend_from_slice(b"\r\nNOOP\r\n");
    c.send(&line).await;
    let (code, text) = c.reply().await;
    assert_eq!((code, text.as_str()), (500, "5.5.2 Line too long"));
    assert_eq!(c.reply().await.0, 250, "the next command is read normally");
    app.stop().await;
}

#[tokio::test]
async fn idle_client_is_disconnected_after_the_command_timeout() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.command_timeout_secs = 1).await;
    let mut c = Raw::ehlo(&app).await;
    let (code, text) = tokio::time::timeout(Duration::from_secs(5), c.reply())
        .await
        .expect("server acts on the timeout");
    assert_eq!(
        (code, text.as_str()),
        (421, "4.4.2 Timeout, closing connection")
    );
    app.stop().await;
}

#[tokio::test]
async fn sessions_beyond_the_limit_get_421() {
    let app = spawn_app_with(Backend::Sqlite, |s| s.smtp.max_sessions = 1).await;
    let mut first = Raw::ehlo(&app).await;
    let mut second = Raw::connect(&app).await;
    let (code, text) = second.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (421, "4.3.2 Too many connections, try again later")
    );
    first.send(b"NOOP\r\n").await;
    assert_eq!(first.reply().await.0, 250);
    app.stop().await;
}

async fn unknown_alias_gets_550_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let raw = mail("a@example.com", "nobody@localhost", "x", "u1@x", &[], "x");
    let err = app
        .send("a@example.com", &["nobody@localhost"], &raw)
        .await
        .expect_err("refused");
    assert_eq!(reply_code(&err), 550);
    assert!(app.inbound(None).await.is_empty());
    app.stop().await;
}

async fn oversized_by_declared_size_gets_552(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.smtp.max_message_bytes = 10_000).await;
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<a@example.com> SIZE=10001\r\n").await;
    let (code, text) = c.reply().await;
    assert_eq!(
        (code, text.as_str()),
        (552, "5.3.4 Message size exceeds fixed maximum message size")
    );
    c.send(b"MAIL FROM:<a@example.com> SIZE=10000\r\n").await;
    assert_eq!(c.reply().await.0, 250, "at the limit is fine");
    app.stop().await;
}

async fn oversized_by_actual_bytes_gets_552_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.smtp.max_message_bytes = 10_000).await;
    let body = format!("{}\n", "y".repeat(70)).repeat(200);
    let raw = mail(
        "a@example.com",
        "sales@localhost",
        "big",
        "big@x",
        &[],
        &body,
    );
    assert!(raw.len() > 10_000);
    let err = app
        .send("a@example.com", &["sales@localhost"], &raw)
        .await
        .expect_err("too big");
    assert_eq!(reply_code(&err), 552);
    // The session is usable afterwards and a normal message still gets through.
    let small = mail(
        "a@example.com",
        "sales@localhost",
        "small",
        "small@x",
        &[],
        "ok",
    );
    app.deliver("a@example.com", &["sales@localhost"], &small)
        .await;
    let inbound = app.inbound(None).await;
    assert_eq!(inbound.len(), 1);
    assert_eq!(app.records("Sales").await[0]["title"], "small");
    app.stop().await;
}

async fn eight_bit_latin1_body_is_stored_byte_for_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut raw = b"From: =?iso-8859-1?q?Ren=E9?= <rene@example.fr>\r\nTo: sales@localhost\r\nSubject: Caf\xe9\r\n\
Message-ID: <latin1@x>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    raw.extend_from_slice(
        b"Cr\xe8me br\xfbl\xe9e \xe0 la fran\xe7aise, \xbfs\xed?\r\n\xff\xfe raw high bytes\r\n",
    );
    let mut c = Raw::ehlo(&app).await;
    c.send(b"MAIL FROM:<rene@example.fr> BODY=8BITMIME\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n")
        .await;
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 250);
    assert_eq!(c.reply().await.0, 354);
    c.send(&raw).await;
    c.send(b".\r\n").await;
    assert_eq!(c.reply().await.0, 250);
    app.wait_idle().await;

    let inbound = app.inbound(None).await;
    let id = inbound[0]["id"].as_str().unwrap();
    let (status, stored) = app.get_bytes(&format!("/api/v1/inbound/{id}/raw")).await;
    assert_eq!(status, 200);
    assert_eq!(stored, raw, "stored bytes differ from the bytes sent");
    let record = &app.records("Sales").await[0];
    assert_eq!(record["title"], "Café");
    assert_eq!(record["contact"]["name"], "René");
    app.stop().await;
}

async fn commands_inside_an_oversized_body_are_never_executed(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.smtp.max_message_bytes = 2_000).await;
    let mut c = Raw::ehlo(&app).await;
    let mut session =
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n".to_vec();
    session.extend_from_slice(b"Subject: big\r\n\r\n");
    session.extend(
        std::iter::repeat_n(
            b"filler filler filler filler filler filler\r\n".as_slice(),
            100,
        )
        .flatten(),
    );
    // What a smuggler hopes is read as commands once the server gives up on the body:
    session.extend_from_slice(
        b"\n.\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n\
From: ceo@example.com\r\nSubject: smuggled\r\n\r\nwire money\r\n\r\n.\n\r\n",
    );
    session.extend_from_slice(b".\r\nQUIT\r\n");
    c.send(&session).await;
    let codes: Vec<u16> = c.all_replies().await.into_iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 250, 354, 552, 221]);
    app.wait_idle().await;
    assert!(app.inbound(None).await.is_empty(), "nothing was stored");
    app.stop().await;
}

async fn bare_lf_dot_in_a_body_does_not_end_data(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut c = Raw::ehlo(&app).await;
    let mut session =
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\n".to_vec();
    session.extend_from_slice(b"From: a@example.com\r\nSubject: honest\r\nMessage-ID: <honest@x>\r\n\r\nhello\n.\n\
MAIL FROM:<evil@example.com>\r\nRCPT TO:<sales@localhost>\r\nDATA\r\nFrom: ceo@example.com\r\nSubject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n");
    c.send(&session).await;
    let codes: Vec<u16> = c.all_replies().await.into_iter().map(|r| r.0).collect();
    assert_eq!(codes, [250, 250, 354, 250, 221], "one message, one 250");
    app.wait_idle().await;
    let records = app.records("Sales").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["title"], "honest");
    app.stop().await;
}

/// A bare TCP client for what a library client would not send.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(app: &TestApp) -> Self {
        Self::from_stream(TcpStream::connect(app.smtp_addr).await.expect("connect"))
    }

    pub fn from_stream(stream: TcpStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connected, greeted, EHLO answered.
    pub async fn ehlo(app: &TestApp) -> Self {
        let mut c = Self::connect(app).await;
        assert_eq!(c.reply().await.0, 220);
        c.send(b"EHLO client.test\r\n").await;
        assert_eq!(c.reply().await.0, 250);
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one (possibly multi-line) reply: code and its lines' text joined by newlines.
    pub async fn reply(&mut self) -> (u16, String) {
        self.try_reply()
            .await
            .expect("a reply before the connection closed")
    }

    /// The next reply, or `None` when the server closed the connection.
    pub async fn reply_or_close(&mut self) -> Option<(u16, String)> {
        self.try_reply().await
    }

    async fn try_reply(&mut self) -> Option<(u16, String)> {
        let mut text = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line.get(..3)?.parse().ok()?;
            text.push(line.get(4..).unwrap_or_default().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some((code, text.join("\n")));
            }
        }
    }

    /// Every reply until the server closes the connection.
    pub async fn all_replies(&mut self) -> Vec<(u16, String)> {
        let mut replies = Vec::new();
        while let Ok(Some(r)) =
            tokio::time::timeout(Duration::from_secs(10), self.try_reply()).await
        {
            replies.push(r);
        }
        replies
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..pos]).into_owned();
                self.buf.drain(..pos + 2);
                return Some(line);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}
