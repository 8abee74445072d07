//! The one struct every source hands to intake.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The kind of source, as stored in `inbound.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Smtp,
    Imap,
    Import,
    Api,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Smtp => "smtp",
            SourceKind::Imap => "imap",
            SourceKind::Import => "import",
            SourceKind::Api => "api",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "smtp" => Ok(SourceKind::Smtp),
            "imap" => Ok(SourceKind::Imap),
            "import" => Ok(SourceKind::Import),
            "api" => Ok(SourceKind::Api),
            other => Err(format!("unknown source {other:?}")),
        }
    }
}

/// What the SMTP listener knows of the session a message came in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpSession {
    pub client_ip: Option<String>,
    /// The client's EHLO/HELO name.
    pub helo: Option<String>,
    /// The session ran over TLS.
    pub tls: bool,
}

/// The team mailbox a polled message was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapMailbox {
    /// The `[[imap]]` account's name.
    pub account: String,
    pub folder: String,
}

impl ImapMailbox {
    /// `imap:ACCOUNT/FOLDER`, as the inbound row's `helo` column shows it.
    pub fn origin(&self) -> String {
        format!("{IMAP_ORIGIN}{}/{}", self.account, self.folder)
    }

    /// The mailbox an `imap:ACCOUNT/FOLDER` origin names.
    pub fn from_origin(origin: &str) -> Option<Self> {
        let (account, folder) = origin.strip_prefix(IMAP_ORIGIN)?.split_once('/')?;
        Some(Self {
            account: account.to_owned(),
            folder: folder.to_owned(),
        })
    }
}

const IMAP_ORIGIN: &str = "imap:";

/// Where a message came from, with what that source knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Smtp(SmtpSession),
    Imap(ImapMailbox),
    Import,
    Api,
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Smtp(_) => SourceKind::Smtp,
            Source::Imap(_) => SourceKind::Imap,
            Source::Import => SourceKind::Import,
            Source::Api => SourceKind::Api,
        }
    }

    /// The stored columns `(client_ip, helo, tls)`: the SMTP session's,
    /// or for polled mail the mailbox as `helo` (`imap:ACCOUNT/FOLDER`).
    pub fn columns(&self) -> (Option<&str>, Option<Cow<'_, str>>, bool) {
        match self {
            Source::Smtp(s) => (
                s.client_ip.as_deref(),
                s.helo.as_deref().map(Cow::Borrowed),
                s.tls,
            ),
            Source::Imap(mailbox) => (None, Some(Cow::Owned(mailbox.origin())), false),
            Source::Import | Source::Api => (None, None, false),
        }
    }

    /// The source stored as `kind` with [`Source::columns`].
    pub fn from_columns(
        kind: SourceKind,
        client_ip: Option<String>,
        helo: Option<String>,
        tls: bool,
    ) -> Self {
        match kind {
            SourceKind::Smtp => Source::Smtp(SmtpSession {
                client_ip,
                helo,
                tls,
            }),
            // A polled row whose mailbox cannot be read is still processed (as
            // from no known account: no provider verdict is believed for it),
            // never refused: refusing would hold up every message behind it.
            SourceKind::Imap => Source::Imap(
                helo.as_deref()
                    .and_then(ImapMailbox::from_origin)
                    .unwrap_or(ImapMailbox {
                        account: String::new(),
                        folder: String::new(),
                    }),
            ),
            SourceKind::Import => Source::Import,
            SourceKind::Api => Source::Api,
        }
    }
}

/// The SMTP envelope, or its equivalent for other sources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// MAIL FROM; `None` or empty for the null sender `<>`.
    pub mail_from: Option<String>,
    /// RCPT TO addresses as the client gave them (already checked against
    /// aliases); for polled mail, the account's alias.
    pub rcpt_to: Vec<String>,
    /// Our own sender-authentication verdict (an `Authentication-Results`
    /// value): SPF, DKIM and DMARC for SMTP mail from an untrusted client,
    /// DKIM for polled mail.
    pub auth_results: Option<String>,
}

/// Where a polled message sits in its mailbox. Stored with the message, in
/// the same transaction, as its mailbox's new cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImapCursor {
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
    /// For polled mail: its position in the mailbox of `source`.
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

    /// Marks the message as polled from `cursor`'s position in its mailbox.
    pub fn with_cursor(mut self, cursor: ImapCursor) -> Self {
        self.cursor = Some(cursor);
        self
    }

    /// The mailbox and position of a polled message.
    pub fn imap_position(&self) -> Option<(&ImapMailbox, ImapCursor)> {
        match (&self.source, self.cursor) {
            (Source::Imap(mailbox), Some(cursor)) => Some((mailbox, cursor)),
            _ => None,
        }
    }
}

/// Hex SHA-256, as stored in `inbound.sha256`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_comes_back_from_its_columns() {
        let sources = [
            Source::Smtp(SmtpSession {
                client_ip: Some("192.0.2.1".into()),
                helo: Some("mx.example".into()),
                tls: true,
            }),
            Source::Imap(ImapMailbox {
                account: "support".into(),
                folder: "INBOX/Sub".into(),
            }),
            Source::Import,
            Source::Api,
        ];
        for source in sources {
            let (ip, helo, tls) = source.columns();
            let kind: SourceKind = source.kind().as_str().parse().unwrap();
            let back =
                Source::from_columns(kind, ip.map(str::to_owned), helo.map(Cow::into_owned), tls);
            assert_eq!(back, source);
        }
        assert_eq!(ImapMailbox::from_origin("smtp-ish"), None);
    }
}
