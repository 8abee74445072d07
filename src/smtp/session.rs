//! One SMTP session: bytes → smtp-proto requests → transaction state → intake.
//!
//! The `250` after DATA is written only when [`Intake::submit`] returned,
//! i.e. after the commit. DATA is always read to its terminating
//! `<CRLF>.<CRLF>` ([`DataReader`]), also when the message is too large (the
//! rest is discarded, not interpreted), so nothing in a body is ever taken
//! for a command.
//!
//! Deadlines are per request, not per read: a command line must be complete
//! within `command_timeout_secs`, a message within `data_timeout_secs` plus
//! a second per `min_data_rate` bytes, and the whole session within
//! `session_timeout_secs`, so a client sending a byte now and then cannot
//! hold a session.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::{Error as ProtoError, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::SmtpContext;
use super::data::{DataReader, Progress};
use super::reply::{self, Reply};
use crate::config::AuthPolicy;
use crate::domain::EmailAddress;
use crate::domain::{Envelope, InboundMessage, SmtpSession, Source};

const READ_CHUNK: usize = 16 * 1024;

enum State {
    Command,
    Data(DataReader),
}

/// What the connection does after a chunk of input was handled.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

pub(super) struct Session {
    ctx: Arc<SmtpContext>,
    stream: TcpStream,
    peer: SocketAddr,
    state: State,
    /// The unfinished command line received so far.
    line: Vec<u8>,
    /// Discarding the remainder of a line that was too long.
    skip_line: bool,
    /// When the command line or message being received must be complete.
    deadline: Instant,
    helo: Option<String>,
    mail_from: Option<String>,
    /// The client declared SMTPUTF8 on MAIL FROM (RFC 6531).
    smtputf8: bool,
    rcpt_to: Vec<String>,
    out: Vec<u8>,
}

impl Session {
    pub(super) fn new(ctx: Arc<SmtpContext>, stream: TcpStream, peer: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(ctx.settings.command_timeout_secs);
        Self {
            ctx,
            stream,
            peer,
            state: State::Command,
            line: Vec::new(),
            skip_line: false,
            deadline,
            helo: None,
            mail_from: None,
            smtputf8: false,
            rcpt_to: Vec::new(),
            out: Vec::with_capacity(512),
        }
    }

    #[tracing::instrument(name = "smtp_session", skip_all, fields(peer = %self.peer))]
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        if let Err(err) = self.serve(shutdown).await {
            tracing::debug!(error = %err, "session ended with an I/O error");
        }
    }

    async fn serve(&mut self, shutdown: CancellationToken) -> std::io::Result<()> {
        self.send(reply::greeting(&self.ctx.settings.hostname));
        self.flush().await?;
        let session_end =
            Instant::now() + Duration::from_secs(self.ctx.settings.session_timeout_secs);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let in_data = matches!(self.state, State::Data(_));
            let until = self.deadline.min(session_end);
            let read = tokio::select! {
                r = tokio::time::timeout_at(until, self.stream.read(&mut buf)) => r,
                // A message being received is finished first; idle sessions are told to come back.
                () = shutdown.cancelled(), if !in_data => {
                    self.send(reply::SHUTTING_DOWN);
                    return self.flush().await;
                }
            };
            let n = match read {
                Ok(Ok(0)) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(err)) => return Err(err),
                Err(_) => {
                    tracing::info!(
                        in_data,
                        whole_session = until == session_end,
                        "smtp_session_timeout"
                    );
                    self.send(reply::TIMEOUT);
                    return self.flush().await;
                }
            };
            let next = self.ingest(&buf[..n]).await;
            self.flush().await?;
            if next == Next::Close {
                return Ok(());
            }
        }
    }

    /// Handles one chunk of input completely: commands, data, or both
    /// (PIPELINING lets a client send MAIL, RCPT and DATA in one packet).
    async fn ingest(&mut self, chunk: &[u8]) -> Next {
        let mut rest = chunk;
        while !rest.is_empty() {
            match &mut self.state {
                State::Command => {
                    let newline = memchr::memchr(b'\n', rest);
                    if self.skip_line {
                        let Some(pos) = newline else {
                            return Next::Continue;
                        };
                        rest = &rest[pos + 1..];
                        self.skip_line = false;
                        continue;
                    }
                    let taken = newline.map_or(rest.len(), |p| p + 1);
                    if self.line.len() + taken > self.ctx.settings.max_line_bytes {
                        self.line.clear();
                        self.send(reply::LINE_TOO_LONG);
                        match newline {
                            Some(pos) => rest = &rest[pos + 1..],
                            None => {
                                self.skip_line = true;
                                return Next::Continue;
                            }
                        }
                        continue;
                    }
                    self.line.extend_from_slice(&rest[..taken]);
                    rest = &rest[taken..];
                    if newline.is_none() {
                        return Next::Continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    self.restart_deadline(self.ctx.settings.command_timeout_secs);
                    let next = match parse(&line) {
                        Ok(request) => self.command(request),
                        Err(err) => {
                            self.protocol_error(&err);
                            Next::Continue
                        }
                    };
                    if next == Next::Close {
                        return Next::Close;
                    }
                }
                State::Data(reader) => {
                    let progress = reader.ingest(rest);
                    let consumed = match progress {
                        Progress::More => rest.len(),
                        Progress::Done(n) => n,
                    };
                    rest = &rest[consumed..];
                    let rate = self.ctx.settings.min_data_rate;
                    if rate > 0 {
                        self.deadline += Duration::from_secs_f64(consumed as f64 / rate as f64);
                    }
                    if progress == Progress::More {
                        continue;
                    }
                    let State::Data(reader) = std::mem::replace(&mut self.state, State::Command)
                    else {
                        continue;
                    };
                    self.restart_deadline(self.ctx.settings.command_timeout_secs);
                    if reader.too_big() {
                        self.reject_too_big();
                    } else if reader.is_empty() {
                        // Nothing to store: the client is told, not left waiting.
                        self.reset_transaction();
                        tracing::info!(reason = "empty", "message_rejected");
                        self.send(reply::EMPTY_MESSAGE);
                    } else {
                        let reply = self.deliver(reader.into_message()).await;
                        self.send(reply);
                    }
                }
            }
        }
        Next::Continue
    }

    fn restart_deadline(&mut self, secs: u64) {
        self.deadline = Instant::now() + Duration::from_secs(secs);
    }

    fn command(&mut self, request: Request<String>) -> Next {
        let ctx = Arc::clone(&self.ctx);
        let settings = &ctx.settings;
        let reply = match request {
            Request::Ehlo { host } => {
                self.reset_transaction();
                self.helo = Some(host.replace('\0', ""));
                reply::ehlo(&settings.hostname, settings.max_message_bytes).write_to(&mut self.out);
                return Next::Continue;
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.reset_transaction();
                self.helo = Some(host.replace('\0', ""));
                reply::helo(&settings.hostname)
            }
            Request::Mail { from } => {
                let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
                if self.helo.is_none() {
                    reply::HELO_FIRST
                } else if self.mail_from.is_some() {
                    reply::NESTED_MAIL
                } else if from.flags & MAIL_BODY_BINARYMIME != 0 {
                    reply::BINARYMIME_UNSUPPORTED
                } else if from.size > settings.max_message_bytes {
                    tracing::info!(
                        reason = "too-large",
                        declared = from.size,
                        "message_rejected"
                    );
                    reply::TOO_BIG
                } else if !from.address.is_ascii() && !smtputf8 {
                    reply::NON_ASCII_WITHOUT_SMTPUTF8
                } else if !from.address.is_empty() && EmailAddress::parse(&from.address).is_err() {
                    reply::BAD_SENDER
                } else if ctx.blocked.current().blocks_str(&from.address) {
                    tracing::info!(reason = "blocked-sender", "message_rejected");
                    reply::BLOCKED_SENDER
                } else {
                    self.mail_from = Some(from.address);
                    self.smtputf8 = smtputf8;
                    reply::SENDER_OK
                }
            }
            Request::Rcpt { to } => {
                // `<postmaster>` without a domain (RFC 5321 §4.1.1.3) is ours.
                let address = if to.address.is_empty() {
                    ctx.postmaster().unwrap_or_default()
                } else {
                    to.address
                };
                if self.mail_from.is_none() {
                    reply::MAIL_FIRST
                } else if self.rcpt_to.len() >= settings.max_recipients {
                    reply::TOO_MANY_RECIPIENTS
                } else if !address.is_ascii() && !self.smtputf8 {
                    reply::NON_ASCII_WITHOUT_SMTPUTF8
                } else if EmailAddress::parse(&address).is_err() {
                    reply::BAD_RECIPIENT
                } else if self.ctx.accepts(&address) {
                    self.rcpt_to.push(address);
                    reply::RECIPIENT_OK
                } else {
                    tracing::info!(reason = "unknown-recipient", "message_rejected");
                    reply::UNKNOWN_RECIPIENT
                }
            }
            Request::Data => {
                if self.mail_from.is_none() {
                    reply::MAIL_FIRST
                } else if self.rcpt_to.is_empty() {
                    reply::RCPT_FIRST
                } else {
                    self.state = State::Data(DataReader::new(settings.max_message_bytes));
                    self.restart_deadline(settings.data_timeout_secs);
                    reply::START_DATA
                }
            }
            Request::Rset => {
                self.reset_transaction();
                reply::OK
            }
            Request::Noop { .. } => reply::OK,
            Request::Vrfy { .. } => reply::CANNOT_VRFY,
            Request::Help { .. } => reply::HELP,
            Request::Quit => {
                self.send(reply::closing(&settings.hostname));
                return Next::Close;
            }
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Auth { .. }
            | Request::StartTls
            | Request::Bdat { .. }
            | Request::Burl { .. } => reply::NOT_IMPLEMENTED,
        };
        self.send(reply);
        Next::Continue
    }

    fn protocol_error(&mut self, err: &ProtoError) {
        let reply = match err {
            ProtoError::ResponseTooLong => reply::LINE_TOO_LONG,
            ProtoError::UnknownCommand | ProtoError::InvalidResponse { .. } => {
                reply::UNKNOWN_COMMAND
            }
            ProtoError::InvalidSenderAddress => reply::BAD_SENDER,
            ProtoError::InvalidRecipientAddress => reply::BAD_RECIPIENT,
            ProtoError::SyntaxError { syntax } => reply::syntax_error(syntax),
            ProtoError::InvalidParameter { param } => reply::bad_parameter(param),
            ProtoError::UnsupportedParameter { param } => reply::unsupported_parameter(param),
            ProtoError::NeedsMoreData { .. } => reply::UNKNOWN_COMMAND,
        };
        self.send(reply);
    }

    /// Hands a complete message to intake and chooses the reply.
    async fn deliver(&mut self, raw: Vec<u8>) -> Reply {
        let auth_results = self.authenticate(&raw).await;
        let envelope = Envelope {
            mail_from: self.mail_from.take().filter(|m| !m.is_empty()),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            auth_results,
        };
        let source = Source::Smtp(SmtpSession {
            client_ip: Some(self.peer.ip().to_string()),
            helo: self.helo.clone(),
            // The listener offers no STARTTLS: every session is plain text.
            tls: false,
        });
        let size = raw.len();
        match self
            .ctx
            .intake
            .submit(InboundMessage::new(source, envelope, raw))
            .await
        {
            Ok(id) => {
                tracing::info!(inbound_id = %id, size, "message_stored");
                reply::queued(&id)
            }
            Err(err) => {
                tracing::warn!(error = %err, "message_rejected");
                reply::STORAGE_FAILED
            }
        }
    }

    /// SPF, DKIM and DMARC for this message, unless the client is trusted or
    /// no alias it is for checks senders.
    async fn authenticate(&self, raw: &[u8]) -> Option<String> {
        let auth = self.ctx.auth.as_ref()?;
        let ip = self.peer.ip();
        if auth.is_trusted(ip) {
            return None;
        }
        let directory = self.ctx.directory.current();
        let checked = self.rcpt_to.iter().any(|rcpt| {
            EmailAddress::parse(rcpt)
                .ok()
                .and_then(|a| directory.alias_for(&a).map(|(alias, _)| alias.auth))
                .is_some_and(|policy| policy != AuthPolicy::Off)
        });
        if !checked {
            return None;
        }
        let helo = self.helo.as_deref().unwrap_or_default();
        let mail_from = self.mail_from.as_deref().unwrap_or_default();
        Some(auth.verify(raw, ip, helo, mail_from).await)
    }

    fn reject_too_big(&mut self) {
        self.reset_transaction();
        tracing::info!(reason = "too-large", "message_rejected");
        self.send(reply::TOO_BIG);
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.smtputf8 = false;
        self.rcpt_to.clear();
    }

    fn send(&mut self, reply: Reply) {
        reply.write_to(&mut self.out);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.stream.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }
}

/// One complete command line (LF included) as a request.
///
/// smtp-proto's address parser refuses local parts that RFC 5321 forbids
/// but mail systems use: `taro..yamada.@docomo.ne.jp` (consecutive dots, a
/// dot before `@`) is how many Japanese carriers' customers are addressed.
/// Such an address is taken as written when [`EmailAddress`] accepts it.
fn parse(line: &[u8]) -> Result<Request<String>, ProtoError> {
    let strict = Request::parse(&mut line.iter()).map(Request::into_owned);
    match strict {
        Err(ProtoError::InvalidSenderAddress | ProtoError::InvalidRecipientAddress) => {
            lenient(line).ok_or_else(|| strict.err().unwrap_or(ProtoError::UnknownCommand))
        }
        other => other,
    }
}

fn lenient(line: &[u8]) -> Option<Request<String>> {
    const STAND_IN: &[u8] = b"stand-in@invalid";
    let open = memchr::memchr(b'<', line)?;
    let close = open + 1 + memchr::memchr(b'>', &line[open + 1..])?;
    let written = std::str::from_utf8(&line[open + 1..close]).ok()?;
    // A source route (`@relay:user@host`) is ignored, as RFC 5321 §4.1.2 allows.
    let written = match written.strip_prefix('@') {
        Some(route) => route.split_once(':')?.1,
        None => written,
    };
    let address = unquote_local_part(written)?;
    EmailAddress::parse(&address).ok()?;
    let mut substituted = line[..=open].to_vec();
    substituted.extend_from_slice(STAND_IN);
    substituted.extend_from_slice(&line[close..]);
    match Request::parse(&mut substituted.iter()).ok()? {
        Request::Mail { from } => {
            let mut from = from.into_owned();
            from.address = address;
            Some(Request::Mail { from })
        }
        Request::Rcpt { to } => {
            let mut to = to.into_owned();
            to.address = address;
            Some(Request::Rcpt { to })
        }
        _ => None,
    }
}

/// `"taro..yamada."@docomo.ne.jp` → `taro..yamada.@docomo.ne.jp`, as
/// smtp-proto does for the addresses it accepts; `None` when the quoted
/// form would need its quotes (a space or special in it).
fn unquote_local_part(address: &str) -> Option<String> {
    let (local, domain) = address.rsplit_once('@')?;
    let Some(inner) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) else {
        return Some(address.to_string());
    };
    let unescaped: Cow<'_, str> = if inner.contains('\\') {
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            out.push(if c == '\\' { chars.next()? } else { c });
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(inner)
    };
    let needs_quotes = unescaped
        .chars()
        .any(|c| c.is_whitespace() || "()<>[]:;@\\,\"".contains(c));
    (!needs_quotes).then(|| format!("{unescaped}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(line: &str) -> Result<String, ProtoError> {
        match parse(line.as_bytes())? {
            Request::Mail { from } => Ok(from.address),
            Request::Rcpt { to } => Ok(to.address),
            other => panic!("not MAIL or RCPT: {other:?}"),
        }
    }

    #[test]
    fn legacy_japanese_carrier_addresses_are_taken_as_written() {
        for (line, want) in [
            (
                "MAIL FROM:<taro..yamada.@docomo.ne.jp>\r\n",
                "taro..yamada.@docomo.ne.jp",
            ),
            (
                "MAIL FROM:<.hanako@ezweb.ne.jp> SIZE=100\r\n",
                ".hanako@ezweb.ne.jp",
            ),
            (
                "RCPT TO:<\"taro..yamada.\"@docomo.ne.jp>\r\n",
                "taro..yamada.@docomo.ne.jp",
            ),
            (
                "MAIL FROM:<@relay.example:a..b@softbank.ne.jp>\r\n",
                "a..b@softbank.ne.jp",
            ),
        ] {
            assert_eq!(address(line).expect(line), want, "{line}");
        }
        let Ok(Request::Mail { from }) = parse(b"MAIL FROM:<a..b@docomo.ne.jp> SIZE=1234\r\n")
        else {
            panic!("parses");
        };
        assert_eq!(from.size, 1234, "parameters are still read");
    }

    #[test]
    fn addresses_that_are_no_addresses_are_still_refused() {
        for line in [
            "MAIL FROM:<no-at-sign..>\r\n",
            "MAIL FROM:<a..b@>\r\n",
            "RCPT TO:<a b@example.com>\r\n",
        ] {
            assert!(address(line).is_err(), "{line}");
        }
    }
}
