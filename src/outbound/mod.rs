//! Outbound: replies people send from records.
//!
//! The API composes a reply ([`compose()`]) and queues it in the outbox in the
//! same transaction that stores it on the record and indexes its Message-ID;
//! the [`sender`] delivers queued replies to the configured relay with
//! mail-send, retrying with backoff, and records the relay's answer.

pub mod compose;
pub mod dkim;
pub mod domains;
pub mod forward;
pub mod forwarding;
pub mod notify;
pub mod sender;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Settings;
use crate::domain::ReplyKey;

pub use compose::{ComposeError, ReplyRequest, compose};
pub use forward::{ForwardRequest, compose_forward};
pub use sender::Sender;

/// What the API needs to queue replies.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// A relay is configured.
    pub enabled: bool,
    /// Domain of reply Message-IDs.
    pub domain: String,
    pub key: ReplyKey,
    /// Wakes the sender when a reply was queued.
    pub wake: Arc<Notify>,
    /// The relay, for mail sent at once (invitations); `None` without one.
    pub relay: Option<sender::Relay>,
    /// The sender of the service's own mail (`[outbound] system_from`, by
    /// default `emailin@` the outbound domain).
    pub system_from: String,
    /// The DKIM key everything sent is signed with.
    pub dkim: Option<dkim::Dkim>,
    /// SPF, DKIM and DMARC reports of the domains mail is sent from.
    pub domains: Arc<domains::DomainChecks>,
    /// The latest forwarding check of each alias.
    pub probes: Arc<forwarding::Probes>,
}

impl Outbound {
    pub fn new(
        settings: &Settings,
        key: ReplyKey,
        dkim: Option<dkim::Dkim>,
        tokens: Option<Arc<crate::oauth::TokenSource>>,
        auth: Option<Arc<crate::auth::Authenticator>>,
    ) -> Self {
        let domain = match settings.outbound.domain.trim() {
            "" => settings.smtp.hostname.clone(),
            d => d.to_string(),
        };
        let enabled = settings.outbound.enabled();
        let system_from = match settings.outbound.system_from.trim() {
            "" => format!("emailin@{domain}"),
            from => from.to_string(),
        };
        let domains = Arc::new(domains::DomainChecks::new(
            &settings.outbound,
            auth,
            dkim.as_ref(),
        ));
        Self {
            enabled,
            domains,
            probes: Arc::default(),
            relay: enabled.then(|| {
                sender::Relay::new(
                    settings.outbound.clone(),
                    settings.smtp.hostname.clone(),
                    dkim.clone(),
                    tokens,
                )
            }),
            dkim,
            system_from,
            domain,
            key,
            wake: Arc::new(Notify::new()),
        }
    }
}
