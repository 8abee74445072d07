//! Connecting to an IMAP server: plain (loopback only), implicit TLS or
//! STARTTLS, with the system roots plus an optional extra CA file.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::{Client, Session};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::{ImapAccountConfig, ImapTls, SaslMechanism, Secret};
use crate::oauth::sasl;

/// A plain or TLS connection, as async-imap sees it.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection could not be made; all are retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {0}: {1}")]
    Io(String, io::Error),
    #[error("timed out connecting to {0}")]
    Timeout(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("IMAP: {0}")]
    Imap(#[from] async_imap::error::Error),
    #[error("login failed: {0}")]
    Login(String),
    /// The server refused the OAuth 2.0 token.
    #[error("login with an OAuth token failed: {0}")]
    Token(String),
    #[error("{0}")]
    Config(String),
}

pub type ImapSession = Session<ImapStream>;

/// What an account logs in with.
pub enum Credential {
    Password(Secret),
    /// An OAuth 2.0 access token, presented with this SASL mechanism.
    Token(SaslMechanism, String),
}

/// Connects and logs in.
///
/// # Errors
/// [`ConnectError`]: network, TLS, greeting or authentication failure.
pub async fn connect(
    account: &ImapAccountConfig,
    credential: &Credential,
) -> Result<ImapSession, ConnectError> {
    let addr = format!("{}:{}", account.host, account.port());
    let tcp = tokio::time::timeout(Duration::from_secs(30), TcpStream::connect(&addr))
        .await
        .map_err(|_| ConnectError::Timeout(addr.clone()))?
        .map_err(|e| ConnectError::Io(addr.clone(), e))?;
    let _ = tcp.set_nodelay(true);
    let client = match account.tls {
        ImapTls::None => greeted(Client::new(ImapStream::Plain(tcp))).await?,
        ImapTls::Implicit => {
            let tls = tls_wrap(account, tcp).await?;
            greeted(Client::new(ImapStream::Tls(Box::new(tls)))).await?
        }
        ImapTls::Starttls => {
            let mut plain = greeted(Client::new(ImapStream::Plain(tcp))).await?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            let ImapStream::Plain(tcp) = plain.into_inner() else {
                return Err(ConnectError::Tls("unexpected stream after STARTTLS".into()));
            };
            Client::new(ImapStream::Tls(Box::new(tls_wrap(account, tcp).await?)))
        }
    };
    match credential {
        Credential::Password(password) => client
            .login(&account.username, password.expose())
            .await
            .map_err(|(err, _)| ConnectError::Login(err.to_string())),
        Credential::Token(mechanism, token) => {
            let message = match mechanism {
                SaslMechanism::Xoauth2 => sasl::xoauth2(&account.username, token),
                SaslMechanism::Oauthbearer => {
                    sasl::oauthbearer(&account.username, &account.host, account.port(), token)
                }
            };
            let refusal = Arc::new(std::sync::Mutex::new(None));
            let answer = TokenAnswer {
                message: Some(message),
                refusal: Arc::clone(&refusal),
            };
            client
                .authenticate(mechanism.name(), answer)
                .await
                .map_err(|(err, _)| {
                    let said = refusal.lock().ok().and_then(|mut r| r.take());
                    let answer = server_text(&err);
                    ConnectError::Token(match said {
                        Some(said) => format!("{} {said}: {answer}", mechanism.name()),
                        None => format!("{}: {answer}", mechanism.name()),
                    })
                })
        }
    }
}

/// What the server said in a NO or BAD answer, without the client's framing.
fn server_text(err: &async_imap::error::Error) -> String {
    match err {
        async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => text
            .split_once("info: Some(\"")
            .and_then(|(_, rest)| rest.rsplit_once("\")"))
            .map_or_else(|| text.clone(), |(said, _)| said.to_string()),
        other => other.to_string(),
    }
}

/// Answers the server's challenges: the token first; after a refusal
/// (a JSON error challenge) an empty answer, keeping what it said.
struct TokenAnswer {
    message: Option<String>,
    refusal: Arc<std::sync::Mutex<Option<String>>>,
}

impl async_imap::Authenticator for TokenAnswer {
    type Response = String;

    fn process(&mut self, challenge: &[u8]) -> String {
        if let Some(message) = self.message.take() {
            return message;
        }
        if let (Some(text), Ok(mut slot)) = (sasl::describe_failure(challenge), self.refusal.lock())
        {
            *slot = Some(text);
        }
        String::new()
    }
}

async fn greeted(mut client: Client<ImapStream>) -> Result<Client<ImapStream>, ConnectError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(client),
        Ok(None) => Err(ConnectError::Login(
            "server closed the connection before its greeting".into(),
        )),
        Err(e) => Err(ConnectError::Io("greeting".into(), e)),
    }
}

async fn tls_wrap(
    account: &ImapAccountConfig,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let config = tls_config(account)?;
    let name = ServerName::try_from(account.host.clone())
        .map_err(|e| ConnectError::Config(format!("host {:?}: {e}", account.host)))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectError::Tls(e.to_string()))
}

fn tls_config(account: &ImapAccountConfig) -> Result<ClientConfig, ConnectError> {
    crate::tls::client_config(account.ca_file.as_deref()).map_err(ConnectError::Config)
}
