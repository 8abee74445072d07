//! Typed settings: built-in defaults (`config/default.toml`, compiled in) →
//! an optional TOML file → `EMAILIN__SECTION__KEY` environment variables.
//!
//! Unknown keys are an error that names the key, so a typo never silently
//! falls back to a default. Semantic checks (an alias naming a pipeline that
//! does not exist, a reopen rule from an open stage) live in [`Settings::validate`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::EmailAddress;

mod imap;
mod oauth;
pub use crate::domain::{AliasConfig, AuthPolicy, PipelineConfig, ReopenRuleConfig, StageConfig};
pub use imap::{AfterStore, ImapAccountConfig, ImapTls};
pub use oauth::{LoginMethod, OAuth2Settings, OAuthGrant, OAuthSettings, SaslMechanism};

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub smtp: SmtpSettings,
    pub http: HttpSettings,
    pub intake: IntakeSettings,
    pub processing: ProcessingSettings,
    pub log: LogSettings,
    pub outbound: OutboundSettings,
    pub auth: AuthSettings,
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
    #[serde(default)]
    pub aliases: Vec<AliasConfig>,
    #[serde(default)]
    pub imap: Vec<ImapAccountConfig>,
    /// Mail to people about new work (needs `[outbound]`).
    pub notifications: NotificationSettings,
    /// How webhook deliveries are retried.
    pub webhook_delivery: WebhookDeliverySettings,
    /// How long stored raw bytes are kept.
    pub retention: RetentionSettings,
    /// Systems told about events (signed as Standard Webhooks).
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Senders refused at MAIL FROM (SMTP) or quarantined (other sources):
    /// addresses, or domains (with their subdomains).
    #[serde(default)]
    pub blocked_senders: Vec<String>,
    /// The key refresh tokens are sealed with (`auth = "oauth2"` accounts).
    #[serde(default)]
    pub oauth: OAuthSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    pub busy_timeout_ms: u64,
    pub sqlite_cache_kib: u64,
    pub sqlite_wal_autocheckpoint: u64,
    /// Milliseconds between checkpoints by a background connection (0: none).
    pub sqlite_checkpoint_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    pub listen: SocketAddr,
    pub hostname: String,
    pub max_message_bytes: usize,
    pub max_recipients: usize,
    pub max_line_bytes: usize,
    pub max_sessions: usize,
    /// Most sessions from one client IP at once (0: no limit).
    pub max_sessions_per_ip: usize,
    pub command_timeout_secs: u64,
    pub data_timeout_secs: u64,
    /// Slowest DATA accepted, in bytes per second: each byte received extends
    /// the DATA deadline by `1 / min_data_rate` seconds (0: no extension).
    pub min_data_rate: u64,
    /// Longest a whole session may last, in seconds.
    pub session_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Largest request body; a larger one gets `413`.
    pub max_body_bytes: usize,
    /// Mark the web UI's session cookie `Secure` even on plain HTTP (behind a
    /// TLS proxy that does not send `X-Forwarded-Proto: https`).
    pub secure_cookies: bool,
    /// How long a web UI login lasts, in hours.
    pub session_hours: u64,
    /// Failed logins allowed per address within `login_window_secs`.
    pub login_failures_per_address: u32,
    /// Failed logins allowed per client IP within `login_window_secs`.
    pub login_failures_per_ip: u32,
    pub login_window_secs: u64,
    /// The address people open the UI at (`https://crm.acme.example`), for
    /// links in mail; empty: links are given as paths.
    pub public_url: String,
}

/// How long what was received is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days the raw bytes of a processed (or ignored, or dropped) message
    /// are kept; the records, messages and attachments made of them stay.
    /// Unset: kept for ever.
    #[serde(default)]
    pub raw_days: Option<u32>,
    /// Seconds between two runs of the background task.
    pub interval_secs: u64,
    /// Messages whose bytes one transaction removes.
    pub batch: u32,
}

/// Which events mail the people concerned.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// The record's owner, when a record is created for them.
    pub record_created: bool,
    /// The record's owner, when one of theirs is reopened.
    pub record_reopened: bool,
    /// A user a comment mentions.
    pub mentions: bool,
    /// Lines of the message quoted in the mail.
    pub quote_lines: usize,
}

/// A webhook of the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…`, or `http://` to a loopback address.
    pub url: String,
    /// `whsec_` and the base64 of 24 to 64 random bytes.
    pub secret: Secret,
    /// The events it gets; empty: all of them.
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDeliverySettings {
    /// Attempts before a delivery is marked failed.
    pub max_attempts: u32,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    /// Longest one attempt may take (connect, send, answer).
    pub timeout_secs: u64,
    /// How often the event log is looked at, in milliseconds.
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeSettings {
    pub batch_max_messages: usize,
    pub batch_max_bytes: usize,
    /// Longest wait, in microseconds, for the senders of the previous batch
    /// to send again before a smaller batch is committed (0: never wait).
    pub batch_wait_us: u64,
    /// Longest a submitter waits for its commit before it is told to retry.
    pub commit_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessingSettings {
    pub batch_max_messages: usize,
    pub poll_interval_secs: u64,
    pub untrusted_thread: UntrustedThread,
    /// A message with more MIME parts is recorded `rejected: too many parts`.
    pub max_mime_parts: usize,
    /// A message with multiparts nested deeper is recorded `rejected: nested too deep`.
    pub max_mime_depth: usize,
}

/// What to do when a message names a record's thread (In-Reply-To,
/// References, subject tag) but its sender is neither the record's contact
/// nor anyone seen on its messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UntrustedThread {
    /// A new record, linked to the one it named (`related_record_id`).
    Related,
    /// Join the thread anyway.
    Merge,
}

/// The SMTP relay replies from records are sent through.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Relay host; empty means replies cannot be sent (the API says so).
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    pub username: String,
    pub password: Secret,
    /// `password` (AUTH with username and password) or `oauth2` (the
    /// username with a token from `[outbound.oauth2]`).
    #[serde(default)]
    pub auth: LoginMethod,
    #[serde(default)]
    pub oauth2: Option<OAuth2Settings>,
    /// Domain of reply Message-IDs; empty: `smtp.hostname`.
    pub domain: String,
    /// The sender of the service's own mail (invitations); empty:
    /// `emailin@` the outbound domain.
    pub system_from: String,
    /// DKIM signing domain (`d=`); empty: mail goes out unsigned.
    #[serde(default)]
    pub dkim_domain: String,
    /// DKIM selector (`s=`): the key is published at `selector._domainkey.domain`.
    #[serde(default)]
    pub dkim_selector: String,
    /// PEM private key: PKCS#8 RSA (2048 bits or more) or Ed25519, or PKCS#1 RSA.
    #[serde(default)]
    pub dkim_private_key_file: String,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
}

impl OutboundSettings {
    /// Whether a relay is configured.
    pub fn enabled(&self) -> bool {
        !self.host.trim().is_empty()
    }
}

/// Sender authentication (SPF, DKIM, DMARC) of mail received over SMTP.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Clients not checked (a local relay or fetcher that checked already): CIDRs.
    pub trusted_networks: Vec<String>,
    /// How long all lookups for one message may take; then `temperror`.
    pub dns_timeout_ms: u64,
    /// `system` (resolv.conf) or `static` (only `static_records`).
    pub resolver: ResolverKind,
    /// TXT answers known without asking DNS (SPF, DKIM keys, DMARC policies).
    #[serde(default)]
    pub static_records: Vec<StaticTxtRecord>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResolverKind {
    System,
    Static,
}

/// One preloaded TXT record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StaticTxtRecord {
    pub name: String,
    pub value: String,
}

/// How to reach the outbound relay.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RelayTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused if not offered.
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only allowed for a relay on 127.0.0.1.
    None,
}

fn is_loopback_host(host: &str) -> bool {
    ["127.0.0.1", "localhost", "::1"].contains(&host)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// A password: given directly, read from an environment variable, or read
/// from a file. Never printed: `Debug` and serialisation show `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "***" })
    }
}

/// A secret given directly, in an environment variable, or in a file
/// (trailing newline ignored); `owner` names the setting in errors.
///
/// # Errors
/// The variable is unset or the file unreadable.
pub fn resolve_secret(
    owner: &str,
    value: &Secret,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Secret, ConfigError> {
    if let Some(var) = env {
        return std::env::var(var).map(Secret).map_err(|_| {
            ConfigError::Invalid(format!("{owner}: environment variable {var} is not set"))
        });
    }
    if let Some(file) = file {
        return std::fs::read_to_string(file)
            .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| ConfigError::Invalid(format!("{owner}: {}: {e}", file.display())));
    }
    Ok(value.clone())
}

/// A configuration that cannot be used, with the key or item it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// The compiled-in defaults only: no file, no environment.
    ///
    /// # Errors
    /// Only if the compiled-in defaults are broken, which a unit test rules out.
    pub fn defaults() -> Result<Self, ConfigError> {
        Self::from_figment(Figment::from(Toml::string(DEFAULT_TOML)))
    }

    /// Defaults, then `file` when given, then `EMAILIN__*` environment variables.
    ///
    /// # Errors
    /// A missing file, a TOML syntax error, an unknown key, a wrong type, or a
    /// semantic error found by [`Settings::validate`].
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("EMAILIN__").split("__"));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what types cannot: names are unique, aliases point at pipelines
    /// that exist, reopen rules go from a closed stage to an open one.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the offending pipeline, alias or rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if self.smtp.max_message_bytes == 0 || self.smtp.max_recipients == 0 {
            return invalid("smtp.max_message_bytes and smtp.max_recipients must be > 0".into());
        }
        if !(512..=4096).contains(&self.smtp.max_line_bytes) {
            return invalid("smtp.max_line_bytes must be between 512 and 4096".into());
        }
        let from = self.outbound.system_from.trim().to_ascii_lowercase();
        if !from.is_empty()
            && self.aliases.iter().any(|a| {
                a.address.eq_ignore_ascii_case(&from)
                    || a.also.iter().any(|x| x.eq_ignore_ascii_case(&from))
            })
        {
            return invalid(format!(
                "outbound.system_from {from:?} is an alias: replies to notifications would become records"
            ));
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            crate::webhooks::check_webhook(&w.url, w.secret.expose(), &w.events)
                .map_err(|e| ConfigError::Invalid(format!("webhooks[{i}]: {e}")))?;
        }
        let d = &self.webhook_delivery;
        if d.max_attempts == 0 || d.timeout_secs == 0 || d.poll_interval_ms == 0 {
            return invalid(
                "webhook_delivery.max_attempts, timeout_secs and poll_interval_ms must be > 0"
                    .into(),
            );
        }
        if self.http.session_hours == 0 || self.http.login_window_secs == 0 {
            return invalid("http.session_hours and http.login_window_secs must be > 0".into());
        }
        if self.http.login_failures_per_address == 0 || self.http.login_failures_per_ip == 0 {
            return invalid(
                "http.login_failures_per_address and login_failures_per_ip must be > 0".into(),
            );
        }
        let r = &self.retention;
        if r.raw_days == Some(0) || r.interval_secs == 0 || r.batch == 0 {
            return invalid(
                "retention.raw_days (when set), interval_secs and batch must be > 0".into(),
            );
        }
        for (i, a) in self.aliases.iter().enumerate() {
            if a.follow_up_days == Some(0) {
                return invalid(format!(
                    "aliases[{i}].follow_up_days must be > 0 (or unset)"
                ));
            }
        }
        if self.http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes must be at least 1024".into());
        }
        if self.processing.max_mime_parts == 0 || self.processing.max_mime_depth == 0 {
            return invalid("processing.max_mime_parts and max_mime_depth must be > 0".into());
        }
        if self.intake.commit_timeout_secs == 0 {
            return invalid("intake.commit_timeout_secs must be > 0".into());
        }
        if self.intake.batch_max_messages == 0 || self.processing.batch_max_messages == 0 {
            return invalid("batch_max_messages must be > 0".into());
        }
        let out = &self.outbound;
        if out.enabled() && out.tls == RelayTls::None && !is_loopback_host(out.host.trim()) {
            return invalid(
                "outbound: tls = \"none\" is only allowed for a relay on 127.0.0.1".into(),
            );
        }
        if out.max_attempts == 0 || out.retry_initial_secs == 0 || out.timeout_secs == 0 {
            return invalid(
                "outbound: max_attempts, retry_initial_secs and timeout_secs must be > 0".into(),
            );
        }
        let key_set = self.oauth.key_set();
        match (out.auth, &out.oauth2) {
            (LoginMethod::Oauth2, None) => {
                return invalid("outbound: auth = \"oauth2\" needs [outbound.oauth2]".into());
            }
            (LoginMethod::Oauth2, Some(o)) => {
                if out.username.trim().is_empty() {
                    return invalid(
                        "outbound: auth = \"oauth2\" needs the mailbox as username".into(),
                    );
                }
                o.check("outbound", key_set)?;
            }
            (LoginMethod::Password, _) => {}
        }
        if !out.domain.is_empty() && EmailAddress::parse(&format!("x@{}", out.domain)).is_err() {
            return invalid(format!("outbound: domain {:?} is not a domain", out.domain));
        }
        for network in &self.auth.trusted_networks {
            if crate::domain::Cidr::parse(network).is_none() {
                return invalid(format!("auth.trusted_networks: {network:?} is not a CIDR"));
            }
        }
        let mut names = HashSet::new();
        for p in &self.pipelines {
            if !names.insert(p.name.as_str()) {
                return invalid(format!("pipeline {:?} is defined twice", p.name));
            }
            p.check().map_err(ConfigError::Invalid)?;
        }
        let mut addresses = HashSet::new();
        for a in &self.aliases {
            let address = EmailAddress::parse(&a.address)
                .map_err(|e| ConfigError::Invalid(format!("alias {:?}: {e}", a.address)))?;
            a.check_lengths()
                .map_err(|e| ConfigError::Invalid(format!("alias {:?}: {e}", a.address)))?;
            if address.local().contains('+') {
                return invalid(format!(
                    "alias {:?}: an alias may not contain '+'",
                    a.address
                ));
            }
            if !addresses.insert(address) {
                return invalid(format!("alias {:?} is defined twice", a.address));
            }
            if let Some(owner) = &a.owner {
                EmailAddress::parse(owner).map_err(|e| {
                    ConfigError::Invalid(format!("alias {:?}: owner {owner:?}: {e}", a.address))
                })?;
            }
            let Some(pipeline) = self.pipelines.iter().find(|p| p.name == a.pipeline) else {
                return invalid(format!(
                    "alias {:?}: pipeline {:?} is not defined",
                    a.address, a.pipeline
                ));
            };
            for rule in &a.reopen {
                rule.check(pipeline)
                    .map_err(|e| ConfigError::Invalid(format!("alias {:?}: {e}", a.address)))?;
            }
        }
        let mut accounts = HashSet::new();
        for account in &self.imap {
            if !accounts.insert(account.name.as_str()) {
                return invalid(format!("imap account {:?} is defined twice", account.name));
            }
            account.check(&self.aliases, key_set)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
