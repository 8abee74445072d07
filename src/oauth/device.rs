//! The device authorization grant (RFC 8628) behind `emailin oauth login`:
//! the service prints where to go and which code to enter, waits while the
//! person signs in and consents, and keeps the refresh token it is given.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Cached, OAuthError, TokenAnswer, TokenSource};

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Debug, Deserialize)]
struct DeviceAnswer {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    /// Google's name for it.
    verification_url: Option<String>,
    expires_in: Option<u64>,
    interval: Option<u64>,
    message: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Runs the flow to its end: the refresh token is stored sealed, and the
/// first access token cached.
///
/// # Errors
/// No device endpoint configured, the endpoints refused, the person
/// declined, or the code expired first.
pub async fn login(source: &TokenSource, out: &mut dyn Write) -> Result<(), OAuthError> {
    if source.settings.grant != crate::config::OAuthGrant::RefreshToken {
        return Err(OAuthError::Config(format!(
            "{}: grant = \"client_credentials\" needs no sign-in (only grant = \"refresh_token\" does)",
            source.login_name
        )));
    }
    let url = source.settings.device_endpoint();
    if url.trim().is_empty() {
        return Err(OAuthError::Config(format!(
            "{}: oauth2.device_url is not set (the provider's device authorization endpoint)",
            source.login_name
        )));
    }
    let scope = source.settings.scopes.join(" ");
    let device: DeviceAnswer = source.post(&url, &[("scope", &scope)]).await?;
    if let Some(code) = device.error {
        return Err(source.refused(code, device.error_description));
    }
    let (Some(device_code), Some(user_code)) = (device.device_code, device.user_code) else {
        return Err(OAuthError::Unreachable {
            url,
            reason: "the answer has no device_code or user_code".into(),
        });
    };
    let verify = device
        .verification_uri
        .or(device.verification_url)
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "To let emailin read {:?}, open {verify} and enter the code {user_code}",
        source.login_name
    );
    if let Some(message) = device.message {
        let _ = writeln!(out, "{message}");
    }
    let _ = out.flush();

    let deadline = Instant::now() + Duration::from_secs(device.expires_in.unwrap_or(900));
    let mut interval = Duration::from_secs(device.interval.unwrap_or(5).max(1));
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err(OAuthError::Refused {
                code: "expired_token".into(),
                hint: "the code expired before sign-in finished; run the command again. ".into(),
                description: String::new(),
            });
        }
        let answer: TokenAnswer = source
            .post(
                &source.settings.token_endpoint(),
                &[("grant_type", DEVICE_GRANT), ("device_code", &device_code)],
            )
            .await?;
        match answer.error.as_deref() {
            Some("authorization_pending") => continue,
            Some("slow_down") => {
                interval += Duration::from_secs(5);
                continue;
            }
            Some(_) => {
                let code = answer.error.unwrap_or_default();
                return Err(source.refused(code, answer.error_description));
            }
            None => {}
        }
        if answer.refresh_token.as_deref().is_none_or(str::is_empty) {
            return Err(OAuthError::Config(format!(
                "the provider gave no refresh token: add the scope that grants one (offline_access at Microsoft) to {}'s oauth2.scopes",
                source.login_name
            )));
        }
        // Stores the refresh token, sealed.
        let cached: Cached = source.accept(answer).await?;
        *source.cached.lock().await = Some(cached);
        let _ = writeln!(
            out,
            "Signed in: the refresh token for {:?} is stored (sealed).",
            source.login_name
        );
        return Ok(());
    }
}
