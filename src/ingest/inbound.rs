//! The one struct every source hands to intake.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Smtp,
    Imap,
    Import,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Smtp => "smtp",
            Source::Imap => "imap",
            Source::Import => "import",
            Source::Api => "api",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "smtp" => Ok(Source::Smtp),
            "imap" => Ok(Source::Imap),
            "import" => Ok(Source::Import),
            "api" => Ok(Source::Api),
            other => Err(format!("unknown source {other:?}")),
        }
    }
}

/// The SMTP envelope, or its equivalent for other sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// MAIL FROM; `None` or empty for the null sender `<>`.
    pub mail_from: Option<String>,
    /// RCPT TO addresses as the client gave them (already checked against aliases).
    pub rcpt_to: Vec<String>,
    pub client_ip: Option<String>,
    /// The client's EHLO/HELO name; for polled mail, the mailbox it was read
    /// from (`imap:ACCOUNT/FOLDER`).
    pub helo: Option<String>,
    pub tls: bool,
    /// Sender authentication verdict (an `Authentication-Results` value),
    /// for SMTP mail from an untrusted client whose aliases check it.
    pub auth_results: Option<String>,
}

/// Where a polled message sits in its mailbox. Stored with the message, in
/// the same transaction, as the account/folder's new cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapCursor {
    pub account: String,
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
}

/// A message as received: the exact bytes and the envelope.
#[derive(Debug, Clone)]
pub struct InboundMessage {
    pub source: Source,
    pub envelope: Envelope,
    pub raw: Vec<u8>,
    /// Hex SHA-256 of `raw`, computed by the source's own task so the
    /// intake writer does no per-byte work.
    pub sha256: String,
    pub cursor: Option<ImapCursor>,
    /// The message was over the size limit and only its header is kept in
    /// `raw`: the size its source declared. Processing records it as
    /// `rejected: too large`.
    pub declared_size: Option<u64>,
}

impl InboundMessage {
    pub fn new(source: Source, envelope: Envelope, raw: Vec<u8>) -> Self {
        let sha256 = sha256_hex(&raw);
        Self {
            source,
            envelope,
            raw,
            sha256,
            cursor: None,
            declared_size: None,
        }
    }

    /// Marks `raw` as the header of a message of `size` bytes, too large to keep whole.
    pub fn header_only(mut self, size: u64) -> Self {
        self.declared_size = Some(size);
        self
    }

    /// Marks the message as polled from `cursor`'s position.
    pub fn with_cursor(mut self, cursor: ImapCursor) -> Self {
        self.cursor = Some(cursor);
        self
    }
}

/// Hex SHA-256, as stored in `inbound.sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
