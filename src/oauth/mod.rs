//! OAuth 2.0 access tokens for IMAP accounts and the relay (`auth =
//! "oauth2"`): the client-credentials grant, or a refresh token a person
//! granted once with `emailin oauth login` (the [`device`] flow), kept
//! sealed ([`seal`]) in the database and rotated when the provider rotates
//! it. A token is cached and fetched again before it expires; [`sasl`]
//! presents it as XOAUTH2 or OAUTHBEARER.

pub mod device;
pub mod sasl;
pub mod seal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{ConfigError, LoginMethod, OAuth2Settings, OAuthGrant, Secret, Settings};
use crate::store::{OAuthStore, StoreError};

pub use seal::SealKey;

/// Longest wait for a token endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is fetched again when less than this is left of its life (or
/// half its life, for short-lived ones).
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Why no access token could be had, in words for the person who fixes it.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("token endpoint {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("token endpoint refused ({code}): {hint}{description}")]
    Refused {
        code: String,
        hint: String,
        description: String,
    },
    #[error(
        "no refresh token for {0:?} yet: run `emailin oauth login --account {0}` and give consent"
    )]
    NotLoggedIn(String),
    #[error(
        "the stored refresh token for {0:?} does not open with [oauth] key (was the key changed?): run `emailin oauth login --account {0}` again"
    )]
    Sealed(String),
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

impl From<ConfigError> for OAuthError {
    fn from(e: ConfigError) -> Self {
        OAuthError::Config(e.to_string())
    }
}

/// A token endpoint's answer (RFC 6749 §5.1, §5.2).
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Access tokens for one account, shared by its connections.
pub struct TokenSource {
    /// What `--account` names: an IMAP account's name, or `outbound`.
    login_name: String,
    /// The row the sealed refresh token is kept in.
    row: String,
    settings: OAuth2Settings,
    store: Arc<dyn OAuthStore>,
    key: Option<SealKey>,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("account", &self.login_name)
            .field("grant", &self.settings.grant)
            .finish_non_exhaustive()
    }
}

/// The name `emailin oauth login --account` takes for the relay.
pub const OUTBOUND: &str = "outbound";

impl TokenSource {
    /// `account` is an IMAP account's name or [`OUTBOUND`].
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(
        account: &str,
        settings: OAuth2Settings,
        store: Arc<dyn OAuthStore>,
        key: Option<SealKey>,
    ) -> Result<Self, OAuthError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .user_agent(concat!("emailin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OAuthError::Config(format!("HTTP client: {e}")))?;
        let row = if account == OUTBOUND {
            OUTBOUND.to_string()
        } else {
            format!("imap:{account}")
        };
        Ok(Self {
            login_name: account.to_string(),
            row,
            settings,
            store,
            key,
            http,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    pub fn settings(&self) -> &OAuth2Settings {
        &self.settings
    }

    /// A token to log in with: the cached one while it has time left,
    /// otherwise a new one from the grant.
    ///
    /// # Errors
    /// [`OAuthError`], saying what to do about it.
    pub async fn access_token(&self) -> Result<String, OAuthError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        let answer = match self.settings.grant {
            OAuthGrant::ClientCredentials => {
                let scope = self.settings.scopes.join(" ");
                self.request(&[("grant_type", "client_credentials"), ("scope", &scope)])
                    .await?
            }
            OAuthGrant::RefreshToken => {
                let refresh = self.stored_refresh_token().await?;
                let scope = self.settings.scopes.join(" ");
                self.request(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("scope", &scope),
                ])
                .await?
            }
        };
        let token = self.accept(answer).await?;
        *cached = Some(token.clone());
        Ok(token.token)
    }

    /// Drops the cached token (the server refused it): the next login
    /// fetches a new one.
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }

    async fn stored_refresh_token(&self) -> Result<String, OAuthError> {
        let sealed = self
            .store
            .oauth_token(&self.row)
            .await?
            .ok_or_else(|| OAuthError::NotLoggedIn(self.login_name.clone()))?;
        let key = self.key()?;
        let plain = key
            .open(&self.row, &sealed)
            .ok_or_else(|| OAuthError::Sealed(self.login_name.clone()))?;
        String::from_utf8(plain).map_err(|_| OAuthError::Sealed(self.login_name.clone()))
    }

    fn key(&self) -> Result<&SealKey, OAuthError> {
        self.key.as_ref().ok_or_else(|| {
            OAuthError::Config("refresh tokens need [oauth] key, key_env or key_file".into())
        })
    }

    /// Seals and stores a refresh token for this account.
    ///
    /// # Errors
    /// No key, or the store failed.
    pub async fn store_refresh_token(&self, token: &str) -> Result<(), OAuthError> {
        let sealed = self
            .key()?
            .seal(&self.row, token.as_bytes())
            .map_err(OAuthError::Config)?;
        self.store.set_oauth_token(&self.row, &sealed).await?;
        Ok(())
    }

    /// Posts a form to the token endpoint with the client's identity.
    async fn request(&self, form: &[(&str, &str)]) -> Result<TokenAnswer, OAuthError> {
        self.post(&self.settings.token_endpoint(), form).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<T, OAuthError> {
        let secret = self.client_secret()?;
        let mut fields: Vec<(&str, &str)> = vec![("client_id", &self.settings.client_id)];
        if !secret.expose().is_empty() {
            fields.push(("client_secret", secret.expose()));
        }
        fields.extend(form.iter().filter(|(_, v)| !v.is_empty()));
        let unreachable = |reason: String| OAuthError::Unreachable {
            url: url.to_string(),
            reason,
        };
        let response = self
            .http
            .post(url)
            .header("Accept", "application/json")
            .form(&fields)
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|_| {
            unreachable(format!(
                "HTTP {status}, not a JSON answer: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ))
        })
    }

    fn client_secret(&self) -> Result<Secret, OAuthError> {
        Ok(self
            .settings
            .resolve_secret(&format!("{}: oauth2", self.login_name))?)
    }

    /// Takes a successful answer (storing a rotated refresh token) or turns
    /// an error answer into [`OAuthError::Refused`].
    async fn accept(&self, answer: TokenAnswer) -> Result<Cached, OAuthError> {
        if let Some(code) = answer.error {
            return Err(self.refused(code, answer.error_description));
        }
        let Some(token) = answer.access_token.filter(|t| !t.is_empty()) else {
            return Err(OAuthError::Unreachable {
                url: self.settings.token_endpoint(),
                reason: "the answer has no access_token".into(),
            });
        };
        if let Some(refresh) = answer.refresh_token.filter(|t| !t.is_empty())
            && self.settings.grant == OAuthGrant::RefreshToken
        {
            self.store_refresh_token(&refresh).await?;
        }
        let life = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let early = REFRESH_MARGIN.min(life / 2);
        Ok(Cached {
            token,
            refresh_at: Instant::now() + (life - early),
        })
    }

    fn refused(&self, code: String, description: Option<String>) -> OAuthError {
        let hint = match code.as_str() {
            "invalid_grant" => format!(
                "consent expired or was revoked; run `emailin oauth login --account {}` again. ",
                self.login_name
            ),
            "invalid_scope" => format!(
                "the scopes {:?} are not granted to this client. ",
                self.settings.scopes
            ),
            "invalid_client" | "unauthorized_client" => {
                "the client id or secret was refused, or the client may not use this grant. ".into()
            }
            _ => String::new(),
        };
        OAuthError::Refused {
            code,
            hint,
            description: description.unwrap_or_default(),
        }
    }
}

/// The token sources of every `auth = "oauth2"` account and the relay.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// By IMAP account name.
    pub imap: std::collections::BTreeMap<String, Arc<TokenSource>>,
    pub outbound: Option<Arc<TokenSource>>,
}

impl Tokens {
    /// Builds them from the settings, with the `[oauth]` key read and checked.
    ///
    /// # Errors
    /// The key cannot be read, or an HTTP client cannot be built.
    pub fn new(settings: &Settings, store: &Arc<dyn OAuthStore>) -> Result<Self, OAuthError> {
        let key = match settings.oauth.resolve_key()? {
            Some(bytes) => Some(SealKey::new(&bytes).map_err(OAuthError::Config)?),
            None => None,
        };
        let source = |name: &str, o: &OAuth2Settings| {
            TokenSource::new(name, o.clone(), Arc::clone(store), key.clone()).map(Arc::new)
        };
        let mut tokens = Tokens::default();
        for account in &settings.imap {
            if let (LoginMethod::Oauth2, Some(o)) = (account.auth, &account.oauth2) {
                tokens
                    .imap
                    .insert(account.name.clone(), source(&account.name, o)?);
            }
        }
        if let (LoginMethod::Oauth2, Some(o)) = (settings.outbound.auth, &settings.outbound.oauth2)
        {
            tokens.outbound = Some(source(OUTBOUND, o)?);
        }
        Ok(tokens)
    }

    /// The source `emailin oauth login --account NAME` means.
    pub fn named(&self, name: &str) -> Option<&Arc<TokenSource>> {
        if name == OUTBOUND {
            self.outbound.as_ref()
        } else {
            self.imap.get(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_do() {
        let source = TokenSource {
            login_name: "support".into(),
            row: "imap:support".into(),
            settings: OAuth2Settings {
                mechanism: Default::default(),
                grant: OAuthGrant::RefreshToken,
                token_url: "https://login.example/{tenant}/token".into(),
                device_url: String::new(),
                tenant: "acme".into(),
                client_id: "c".into(),
                client_secret: Secret::default(),
                client_secret_env: None,
                client_secret_file: None,
                scopes: vec!["IMAP.AccessAsUser.All".into()],
            },
            store: Arc::new(NoStore),
            key: None,
            http: reqwest::Client::new(),
            cached: tokio::sync::Mutex::new(None),
        };
        let text = source
            .refused("invalid_grant".into(), Some("AADSTS70008: expired".into()))
            .to_string();
        assert_eq!(
            text,
            "token endpoint refused (invalid_grant): consent expired or was revoked; run `emailin oauth login --account support` again. AADSTS70008: expired"
        );
        assert!(
            source
                .refused("invalid_scope".into(), None)
                .to_string()
                .contains("IMAP.AccessAsUser.All")
        );
        assert_eq!(
            source.settings.token_endpoint(),
            "https://login.example/acme/token"
        );
    }

    struct NoStore;

    #[async_trait::async_trait]
    impl OAuthStore for NoStore {
        async fn oauth_token(&self, _: &str) -> crate::store::StoreResult<Option<Vec<u8>>> {
            Ok(None)
        }
        async fn set_oauth_token(&self, _: &str, _: &[u8]) -> crate::store::StoreResult<()> {
            Ok(())
        }
    }
}
