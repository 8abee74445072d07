//! Commands about the mail accounts the service uses: OAuth 2.0 sign-in.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::oauth::{OUTBOUND, Tokens};
use crate::store::{OAuthStore, Store};

/// `emailin oauth login --account NAME`: the device code flow for one
/// `grant = "refresh_token"` account (or `outbound`), printing to `out`.
///
/// # Errors
/// No such OAuth account, or the flow failed (the message says why).
pub async fn oauth_login(
    settings: &Settings,
    store: Arc<dyn Store>,
    account: &str,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let tokens = Tokens::new(settings, &(store as Arc<dyn OAuthStore>))?;
    let Some(source) = tokens.named(account) else {
        let mut known: Vec<&str> = tokens.imap.keys().map(String::as_str).collect();
        if tokens.outbound.is_some() {
            known.push(OUTBOUND);
        }
        anyhow::bail!(
            "no account {account:?} with auth = \"oauth2\" (those with it: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    crate::oauth::device::login(source, out)
        .await
        .with_context(|| format!("oauth login for {account:?}"))
}
