//! IMAP accounts: where a team mailbox is, how the poller signs in, and
//! what it does with a message once it is stored.

use serde::{Deserialize, Serialize};

use super::{
    AliasConfig, ConfigError, LoginMethod, OAuth2Settings, Secret, is_loopback_host, resolve_secret,
};

/// How to reach an IMAP server.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ImapTls {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS (port 143).
    Starttls,
    /// No TLS: only allowed for a server on 127.0.0.1.
    None,
}

/// One polled mailbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImapAccountConfig {
    /// Unique name, used for the cursor, the lease and the status API.
    pub name: String,
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "implicit")]
    pub tls: ImapTls,
    pub username: String,
    /// `password` or `oauth2` (a token from `[imap.oauth2]`).
    #[serde(default)]
    pub auth: LoginMethod,
    #[serde(default)]
    pub oauth2: Option<OAuth2Settings>,
    #[serde(default)]
    pub password: Secret,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<std::path::PathBuf>,
    #[serde(default = "inbox")]
    pub folders: Vec<String>,
    /// Alias for messages whose headers name none.
    pub alias: String,
    /// Seconds between polls when the server has no IDLE.
    #[serde(default = "sixty")]
    pub poll_interval_secs: u64,
    /// After a message is stored: "keep", "seen", "move:FOLDER" or "delete".
    #[serde(default = "keep")]
    pub after: String,
    /// On the first run, ingest the last N days once (0: start at the end of the mailbox).
    #[serde(default)]
    pub backfill_days: u32,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The mailbox provider's `Authentication-Results` authserv-id whose
    /// verdicts are trusted for mail polled from this account.
    #[serde(default)]
    pub authserv_id: Option<String>,
}

fn implicit() -> ImapTls {
    ImapTls::Implicit
}
fn inbox() -> Vec<String> {
    vec!["INBOX".into()]
}
fn sixty() -> u64 {
    60
}
fn keep() -> String {
    "keep".into()
}

/// What the poller does with a message once it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterStore {
    Keep,
    Seen,
    Move(String),
    Delete,
}

impl AfterStore {
    /// Parses `keep`, `seen`, `move:FOLDER`, `delete`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "keep" => Some(AfterStore::Keep),
            "seen" => Some(AfterStore::Seen),
            "delete" => Some(AfterStore::Delete),
            other => other
                .strip_prefix("move:")
                .filter(|f| !f.trim().is_empty())
                .map(|f| AfterStore::Move(f.trim().to_string())),
        }
    }
}

impl ImapAccountConfig {
    /// The port, defaulting by TLS mode (993 implicit, 143 otherwise).
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            ImapTls::Implicit => 993,
            _ => 143,
        })
    }

    pub fn after_store(&self) -> AfterStore {
        AfterStore::parse(&self.after).unwrap_or(AfterStore::Keep)
    }

    /// The password from wherever it is configured.
    ///
    /// # Errors
    /// The variable is unset or the file unreadable.
    pub fn resolve_password(&self) -> Result<Secret, ConfigError> {
        resolve_secret(
            &format!("imap {:?}", self.name),
            &self.password,
            self.password_env.as_deref(),
            self.password_file.as_deref(),
        )
    }

    /// Checks the account against the aliases it may deliver to.
    ///
    /// # Errors
    /// What is wrong, naming the account.
    pub fn check(&self, aliases: &[AliasConfig], key_set: bool) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        let name = &self.name;
        if self.tls == ImapTls::None && !is_loopback_host(&self.host) {
            return invalid(format!(
                "imap {name:?}: tls = \"none\" is only allowed for a server on 127.0.0.1"
            ));
        }
        if AfterStore::parse(&self.after).is_none() {
            return invalid(format!(
                "imap {name:?}: after = {:?} must be keep, seen, move:FOLDER or delete",
                self.after
            ));
        }
        if self.folders.is_empty() {
            return invalid(format!("imap {name:?}: folders is empty"));
        }
        let sources = [
            !self.password.expose().is_empty(),
            self.password_env.is_some(),
            self.password_file.is_some(),
        ];
        let count = sources.iter().filter(|s| **s).count();
        if self.auth == LoginMethod::Oauth2 {
            let Some(o) = &self.oauth2 else {
                return invalid(format!(
                    "imap {name:?}: auth = \"oauth2\" needs [imap.oauth2] (after its [[imap]])"
                ));
            };
            o.check(&format!("imap {name:?}"), key_set)?;
            if count != 0 {
                return invalid(format!(
                    "imap {name:?}: auth = \"oauth2\" takes no password"
                ));
            }
        } else if count != 1 {
            return invalid(format!(
                "imap {name:?}: set exactly one of password, password_env, password_file"
            ));
        }
        let known = aliases.iter().any(|a| {
            a.address.eq_ignore_ascii_case(&self.alias)
                || a.also.iter().any(|x| x.eq_ignore_ascii_case(&self.alias))
        });
        if !known {
            return invalid(format!(
                "imap {name:?}: alias {:?} is not a configured alias",
                self.alias
            ));
        }
        Ok(())
    }
}
