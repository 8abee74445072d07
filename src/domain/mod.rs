//! Validated types without I/O: addresses, stage kinds, Message-IDs.
//!
//! Everything here is pure and cheap; parsing an input into one of these
//! types is the only way to obtain it, so code further in can trust it.

mod address;
mod blocklist;
mod cidr;
mod directory;
pub mod limits;
mod message_id;
mod reply_token;

pub use address::{AddressError, EmailAddress, mentions, quoted_for_sending};
pub use blocklist::{BlockList, BlockListHandle};
pub use cidr::Cidr;
pub use directory::{AliasEntry, Directory, DirectoryHandle, PipelineEntry, Snapshot, StageEntry};
pub use message_id::{normalize_message_id, synthetic_message_id};
pub use reply_token::ReplyKey;

use serde::{Deserialize, Serialize};

/// Whether a stage counts as work in progress or as finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Open,
    Closed,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Open => "open",
            StageKind::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(StageKind::Open),
            "closed" => Some(StageKind::Closed),
            _ => None,
        }
    }
}
