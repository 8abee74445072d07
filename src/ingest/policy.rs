//! The trust rules processing applies: blocked senders, the reply-token
//! key, whose DMARC verdict is believed for which source.

use std::collections::HashMap;

use super::parse::ParsedMail;
use super::process::InboundRef;
use super::shape::ShapeLimits;
use crate::config::{Settings, UntrustedThread};
use crate::domain::{
    BlockList, BlockListHandle, Dmarc, ReplyKey, Source, dmarc_verdict, trusted_header_verdict,
};
use crate::store::{Store, StoreError};

/// The trust rules processing applies.
#[derive(Debug, Clone)]
pub struct Policy {
    pub blocked: BlockListHandle,
    pub untrusted_thread: UntrustedThread,
    /// Verifies the reply tokens of `alias+r-<token>` recipients.
    pub reply_key: ReplyKey,
    /// Our own `Authentication-Results` authserv-id (SMTP mail).
    pub authserv_id: String,
    /// IMAP account name → the provider's authserv-id trusted for its mail.
    pub imap_authserv: HashMap<String, String>,
    /// Messages over these are recorded as rejected, never parsed.
    pub shape: ShapeLimits,
}

impl Policy {
    pub fn new(settings: &Settings, reply_key: ReplyKey, blocked: BlockList) -> Self {
        Self {
            blocked: BlockListHandle::new(blocked),
            untrusted_thread: settings.processing.untrusted_thread,
            reply_key,
            authserv_id: settings.smtp.hostname.clone(),
            imap_authserv: settings
                .imap
                .iter()
                .filter_map(|a| Some((a.name.clone(), a.authserv_id.clone()?)))
                .collect(),
            shape: ShapeLimits {
                max_parts: settings.processing.max_mime_parts,
                max_depth: settings.processing.max_mime_depth,
            },
        }
    }

    /// The policy of `settings` with the deployment's reply-token key from the database.
    ///
    /// # Errors
    /// The key cannot be read or created.
    pub async fn load(settings: &Settings, store: &dyn Store) -> Result<Self, StoreError> {
        let secret = store.server_secret(REPLY_KEY_SECRET).await?;
        let blocked = block_list(settings, store).await?;
        Ok(Self::new(settings, ReplyKey::new(&secret), blocked))
    }
}

/// The blocked senders in force: the config file's and the API's.
///
/// # Errors
/// The API's list cannot be read.
pub async fn block_list(settings: &Settings, store: &dyn Store) -> Result<BlockList, StoreError> {
    let mut entries = settings.blocked_senders.clone();
    entries.extend(
        store
            .list_blocked_senders()
            .await?
            .into_iter()
            .map(|b| b.entry),
    );
    Ok(BlockList::new(&entries))
}

/// The name of the reply-token signing secret in the database.
pub const REPLY_KEY_SECRET: &str = "reply-token-key";

/// The DMARC verdict for a stored message: ours for SMTP mail, the mailbox
/// provider's (a configured authserv-id) for polled mail; `None` when unknown.
pub(super) fn dmarc_of(
    policy: &Policy,
    inbound: &InboundRef<'_>,
    mail: &ParsedMail,
) -> Option<Dmarc> {
    let account = match inbound.source {
        Source::Smtp(_) => {
            let results = inbound.envelope.auth_results.as_deref()?;
            return dmarc_verdict(results, &policy.authserv_id);
        }
        Source::Imap(mailbox) => &mailbox.account,
        Source::Import | Source::Api => return None,
    };
    let authserv_id = policy.imap_authserv.get(account.as_str())?;
    trusted_header_verdict(&mail.signals.headers, authserv_id)
}
