//! One SMTP session: bytes → smtp-proto requests → transaction state → intake.
//!
//! The `250` after DATA is written only when [`Intake::submit`] returned,
//! i.e. after the commit. DATA is always read to its terminating
//! `<CRLF>.<CRLF>`, also when the message is too large (the rest is
//! discarded, not interpreted), so nothing in a body is ever taken for a
//! command.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver, RequestReceiver};
use smtp_proto::{
    EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_SMTP_UTF8,
    EhloResponse, Error as ProtoError, Request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::SmtpContext;
use super::reply::{self, Reply};
use crate::config::AuthPolicy;
use crate::domain::EmailAddress;
use crate::ingest::{Envelope, InboundMessage, Source};

const READ_CHUNK: usize = 16 * 1024;

enum State {
    Command,
    Data {
        receiver: DataReceiver,
        message: Vec<u8>,
    },
    /// Reading an oversized body to its end without keeping it.
    Discard {
        receiver: DummyDataReceiver,
    },
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
    requests: RequestReceiver,
    state: State,
    /// Discarding the remainder of a line that failed to parse or was too long.
    skip_line: bool,
    /// Bytes of the current, unfinished command line already buffered.
    partial_line: usize,
    helo: Option<String>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    out: Vec<u8>,
}

impl Session {
    pub(super) fn new(ctx: Arc<SmtpContext>, stream: TcpStream, peer: SocketAddr) -> Self {
        Self {
            ctx,
            stream,
            peer,
            requests: RequestReceiver::default(),
            state: State::Command,
            skip_line: false,
            partial_line: 0,
            helo: None,
            mail_from: None,
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
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let in_data = !matches!(self.state, State::Command);
            let limit = Duration::from_secs(if in_data {
                self.ctx.settings.data_timeout_secs
            } else {
                self.ctx.settings.command_timeout_secs
            });
            let read = tokio::select! {
                r = tokio::time::timeout(limit, self.stream.read(&mut buf)) => r,
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
        let mut bytes = chunk.iter();
        while !bytes.as_slice().is_empty() {
            match &mut self.state {
                State::Command => {
                    if self.skip_line {
                        let rest = bytes.as_slice();
                        match rest.iter().position(|&b| b == b'\n') {
                            Some(pos) => {
                                bytes = rest[pos + 1..].iter();
                                self.skip_line = false;
                            }
                            None => return Next::Continue,
                        }
                        continue;
                    }
                    // Line length limit, across reads.
                    let rest = bytes.as_slice();
                    let newline = rest.iter().position(|&b| b == b'\n');
                    let line_len = self.partial_line + newline.map_or(rest.len(), |p| p + 1);
                    if line_len > self.ctx.settings.max_line_bytes {
                        self.requests = RequestReceiver::default();
                        self.partial_line = 0;
                        self.skip_line = true;
                        self.send(reply::LINE_TOO_LONG);
                        continue;
                    }
                    let request = self.requests.ingest(&mut bytes).map(Request::into_owned);
                    match request {
                        Ok(request) => {
                            self.partial_line = 0;
                            if self.command(request) == Next::Close {
                                return Next::Close;
                            }
                        }
                        Err(ProtoError::NeedsMoreData { .. }) => {
                            self.partial_line = line_len;
                            return Next::Continue;
                        }
                        Err(err) => {
                            self.partial_line = 0;
                            self.protocol_error(&err);
                            let consumed = chunk.len() - bytes.as_slice().len();
                            if consumed > 0 && chunk[consumed - 1] != b'\n' {
                                self.skip_line = true;
                            }
                        }
                    }
                }
                State::Data { receiver, message } => {
                    let done = receiver.ingest(&mut bytes, message);
                    let too_big = message.len() > self.ctx.settings.max_message_bytes;
                    if done && too_big {
                        self.state = State::Command;
                        self.reject_too_big();
                    } else if done {
                        let mut message = std::mem::take(message);
                        // Growth by doubling may have reserved up to twice the size.
                        message.shrink_to_fit();
                        self.state = State::Command;
                        let reply = self.deliver(message).await;
                        self.send(reply);
                    } else if too_big {
                        let receiver = DummyDataReceiver::new_data(receiver);
                        self.state = State::Discard { receiver };
                    }
                }
                State::Discard { receiver } => {
                    if receiver.ingest(&mut bytes) {
                        self.state = State::Command;
                        self.reject_too_big();
                    }
                }
            }
        }
        Next::Continue
    }

    fn command(&mut self, request: Request<String>) -> Next {
        let ctx = Arc::clone(&self.ctx);
        let settings = &ctx.settings;
        let reply = match request {
            Request::Ehlo { host } => {
                self.reset_transaction();
                self.helo = Some(host);
                let mut ehlo = EhloResponse::new(settings.hostname.as_str());
                ehlo.capabilities = EXT_PIPELINING
                    | EXT_SIZE
                    | EXT_8BIT_MIME
                    | EXT_SMTP_UTF8
                    | EXT_ENHANCED_STATUS_CODES;
                ehlo.size = settings.max_message_bytes;
                // Writing into a Vec cannot fail.
                let _ = ehlo.write(&mut self.out);
                return Next::Continue;
            }
            Request::Helo { host } | Request::Lhlo { host } => {
                self.reset_transaction();
                self.helo = Some(host);
                reply::helo(&settings.hostname)
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    reply::HELO_FIRST
                } else if self.mail_from.is_some() {
                    reply::NESTED_MAIL
                } else if from.size > settings.max_message_bytes {
                    tracing::info!(
                        reason = "too-large",
                        declared = from.size,
                        "message_rejected"
                    );
                    reply::TOO_BIG
                } else if !from.address.is_empty() && EmailAddress::parse(&from.address).is_err() {
                    reply::BAD_SENDER
                } else if ctx.blocked.current().blocks_str(&from.address) {
                    tracing::info!(reason = "blocked-sender", "message_rejected");
                    reply::BLOCKED_SENDER
                } else {
                    self.mail_from = Some(from.address);
                    reply::SENDER_OK
                }
            }
            Request::Rcpt { to } => {
                if self.mail_from.is_none() {
                    reply::MAIL_FIRST
                } else if self.rcpt_to.len() >= settings.max_recipients {
                    reply::TOO_MANY_RECIPIENTS
                } else if EmailAddress::parse(&to.address).is_err() {
                    reply::BAD_RECIPIENT
                } else if self.ctx.accepts(&to.address) {
                    self.rcpt_to.push(to.address);
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
                    self.state = State::Data {
                        receiver: DataReceiver::new(),
                        message: Vec::new(),
                    };
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
            ProtoError::NeedsMoreData { .. } => return,
        };
        self.send(reply);
    }

    /// Hands a complete message to intake and chooses the reply.
    async fn deliver(&mut self, raw: Vec<u8>) -> Reply {
        let auth_results = self.authenticate(&raw).await;
        let envelope = Envelope {
            mail_from: self.mail_from.take().filter(|m| !m.is_empty()),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            client_ip: Some(self.peer.ip().to_string()),
            helo: self.helo.clone(),
            tls: false,
            auth_results,
        };
        let size = raw.len();
        match self
            .ctx
            .intake
            .submit(InboundMessage::new(Source::Smtp, envelope, raw))
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
