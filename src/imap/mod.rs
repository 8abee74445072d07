//! The IMAP poller: team mailboxes feed pipelines through the same intake
//! as SMTP, exactly once.
//!
//! One task per account and folder, each on its own connection, so one
//! broken account never stalls another. The cursor (UIDVALIDITY + last UID)
//! is written by intake in the same transaction as the messages it covers;
//! `\Seen` is never relied on (messages are fetched with `BODY.PEEK[]`).
//! What happens to a message on the server (`after`) happens only after
//! that commit. With several replicas on one database, a lease lets one
//! process at a time poll a folder. Never touches SQL itself.

mod conn;
mod poller;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::supervise::Supervisor;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

pub use conn::{ConnectError, Credential, ImapSession, ImapStream, connect};
pub use poller::{Poller, PollerContext};

use crate::config::ImapAccountConfig;
use crate::ingest::Intake;
use crate::store::MailboxStore;

/// What a folder's poller is doing.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PollState {
    Connecting,
    Fetching,
    Idle,
    Polling,
    Backoff,
    /// Another replica holds the lease.
    Standby,
    Stopped,
}

/// One account/folder, as `GET /api/v1/imap` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FolderStatus {
    pub account: String,
    pub folder: String,
    pub state: PollState,
    /// How it logs in: `password`, or `OAuth 2.0 (mechanism, grant)`.
    pub login: String,
    pub uidvalidity: Option<u32>,
    pub last_uid: Option<u32>,
    pub messages_stored: u64,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Status of every poller of this process, by "account/folder".
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<BTreeMap<String, FolderStatus>>>);

impl StatusBoard {
    pub fn snapshot(&self) -> Vec<FolderStatus> {
        match self.0.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().values().cloned().collect(),
        }
    }

    fn update(&self, account: &str, folder: &str, change: impl FnOnce(&mut FolderStatus)) {
        let mut map = match self.0.lock() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = map
            .entry(format!("{account}/{folder}"))
            .or_insert_with(|| FolderStatus {
                account: account.to_string(),
                folder: folder.to_string(),
                state: PollState::Connecting,
                login: String::new(),
                uidvalidity: None,
                last_uid: None,
                messages_stored: 0,
                last_error: None,
                updated_at: Utc::now(),
            });
        change(entry);
        entry.updated_at = Utc::now();
    }
}

/// Starts one poller per account and folder under `supervisor` (a poller
/// that dies starts over); they stop when `shutdown` fires. Returns their tasks.
pub fn spawn_all(
    accounts: &[ImapAccountConfig],
    shared: &Shared,
    shutdown: &CancellationToken,
    supervisor: &Supervisor,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    for account in accounts {
        for folder in &account.folders {
            let ctx = PollerContext {
                account: account.clone(),
                folder: folder.clone(),
                store: Arc::clone(&shared.store),
                intake: shared.intake.clone(),
                max_message_bytes: shared.max_message_bytes,
                board: shared.board.clone(),
                auth: shared.auth.clone(),
                holder: holder.clone(),
                tokens: shared.tokens.get(&account.name).cloned(),
            };
            let name = format!("imap:{}/{}", account.name, folder);
            let stop = shutdown.clone();
            tasks.push(supervisor.restartable(&name, shutdown.clone(), move || {
                Poller::new(ctx.clone()).run(stop.clone())
            }));
        }
    }
    tasks
}

/// What every poller of one process shares.
#[derive(Clone)]
pub struct Shared {
    /// Cursors, known hashes and leases (messages go through `intake`).
    pub store: Arc<dyn MailboxStore>,
    pub intake: Intake,
    pub max_message_bytes: usize,
    pub board: StatusBoard,
    /// Verifies DKIM signatures of polled mail.
    pub auth: Option<Arc<crate::auth::Authenticator>>,
    /// Access tokens of the `auth = "oauth2"` accounts, by account name.
    pub tokens: BTreeMap<String, Arc<crate::oauth::TokenSource>>,
}
