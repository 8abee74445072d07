//! OAuth 2.0 settings: how an IMAP account or the relay gets the access
//! token it logs in with (`auth = "oauth2"`), and the key that seals the
//! refresh tokens kept in the database.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret};

/// How an IMAP account or the relay logs in.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoginMethod {
    /// LOGIN / AUTH PLAIN with a password.
    #[default]
    Password,
    /// SASL XOAUTH2 or OAUTHBEARER with an access token from `[….oauth2]`.
    Oauth2,
}

/// The SASL mechanism an access token is presented with.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SaslMechanism {
    /// What Microsoft 365 and Gmail accept.
    #[default]
    Xoauth2,
    /// RFC 7628.
    Oauthbearer,
}

impl SaslMechanism {
    /// The name the protocol uses.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Xoauth2 => "XOAUTH2",
            SaslMechanism::Oauthbearer => "OAUTHBEARER",
        }
    }
}

/// Where access tokens come from.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OAuthGrant {
    /// The app's own identity (Microsoft 365 application access to a
    /// shared mailbox): client id and secret only.
    ClientCredentials,
    /// A person's consent, given once with `emailin oauth login` (device
    /// code flow); the refresh token is kept sealed in the database.
    RefreshToken,
}

/// One account's token endpoint and client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Settings {
    #[serde(default)]
    pub mechanism: SaslMechanism,
    pub grant: OAuthGrant,
    /// Token endpoint; `{tenant}` is replaced by `tenant`.
    pub token_url: String,
    /// Device authorization endpoint, for `emailin oauth login`; `{tenant}` as above.
    #[serde(default)]
    pub device_url: String,
    #[serde(default)]
    pub tenant: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Secret,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// File holding the client secret (trailing newline ignored).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for, e.g. `https://outlook.office365.com/.default`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl OAuth2Settings {
    /// The token endpoint with the tenant filled in.
    pub fn token_endpoint(&self) -> String {
        self.token_url.replace("{tenant}", &self.tenant)
    }

    /// The device authorization endpoint with the tenant filled in.
    pub fn device_endpoint(&self) -> String {
        self.device_url.replace("{tenant}", &self.tenant)
    }

    /// The client secret from wherever it is configured; empty when none is.
    ///
    /// # Errors
    /// The variable is unset or the file unreadable.
    pub fn resolve_secret(&self, owner: &str) -> Result<Secret, ConfigError> {
        super::resolve_secret(
            owner,
            &self.client_secret,
            self.client_secret_env.as_deref(),
            self.client_secret_file.as_deref(),
        )
    }

    /// Checks one account's settings; `owner` names it in the message.
    ///
    /// # Errors
    /// What is missing or contradictory.
    pub fn check(&self, owner: &str, key_set: bool) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(format!("{owner}: oauth2: {msg}")));
        let url = self.token_endpoint();
        if !(url.starts_with("https://") || url.starts_with("http://127.0.0.1")) {
            return invalid(format!(
                "token_url {url:?} must be https:// (http only on 127.0.0.1)"
            ));
        }
        if self.client_id.trim().is_empty() {
            return invalid("client_id is empty".into());
        }
        let secrets = [
            !self.client_secret.expose().is_empty(),
            self.client_secret_env.is_some(),
            self.client_secret_file.is_some(),
        ];
        if secrets.iter().filter(|s| **s).count() > 1 {
            return invalid(
                "set at most one of client_secret, client_secret_env, client_secret_file".into(),
            );
        }
        match self.grant {
            OAuthGrant::ClientCredentials if !secrets.contains(&true) => {
                invalid("the client_credentials grant needs a client secret".into())
            }
            OAuthGrant::RefreshToken if !key_set => invalid(
                "the refresh_token grant keeps the token sealed: set [oauth] key, key_env or key_file"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

/// The key refresh tokens are sealed with in the database.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthSettings {
    /// 32 random bytes, base64 (`openssl rand -base64 32`).
    #[serde(default)]
    pub key: Secret,
    #[serde(default)]
    pub key_env: Option<String>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl OAuthSettings {
    /// Whether a key is configured (it is read and checked at start).
    pub fn key_set(&self) -> bool {
        !self.key.expose().is_empty() || self.key_env.is_some() || self.key_file.is_some()
    }

    /// The key's 32 bytes; `None` when no key is configured.
    ///
    /// # Errors
    /// The key cannot be read or is not 32 bytes of base64.
    pub fn resolve_key(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        if !self.key_set() {
            return Ok(None);
        }
        let text = super::resolve_secret(
            "oauth",
            &self.key,
            self.key_env.as_deref(),
            self.key_file.as_deref(),
        )?;
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.expose().trim())
            .map_err(|e| ConfigError::Invalid(format!("oauth: key is not base64: {e}")))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| {
                ConfigError::Invalid(format!(
                    "oauth: key must be 32 bytes (openssl rand -base64 32), not {}",
                    bytes.len()
                ))
            })
    }
}
