//! Validated types without I/O: addresses, stage kinds, Message-IDs.
//!
//! Everything here is pure and cheap; parsing an input into one of these
//! types is the only way to obtain it, so code further in can trust it.

mod address;
mod auth_results;
mod blocklist;
mod cidr;
mod directory;
mod inbound;
pub mod limits;
mod message_id;
mod pipeline;
mod reply;
mod reply_token;
pub mod search;
mod thread;

pub use address::{
    AddressError, EmailAddress, is_role_address, is_shared_mailbox, mentions, quoted_for_sending,
};
pub use auth_results::{Dmarc, dmarc_verdict, trusted_header_verdict};
pub use blocklist::{BlockList, BlockListHandle};
pub use cidr::Cidr;
pub use directory::{AliasEntry, Directory, DirectoryHandle, PipelineEntry, Snapshot, StageEntry};
pub use inbound::{
    Envelope, ImapCursor, ImapMailbox, InboundMessage, SmtpSession, Source, SourceKind, sha256_hex,
};
pub use message_id::{normalize_message_id, synthetic_message_id};
pub use pipeline::{
    AliasConfig, AuthPolicy, PipelineConfig, ReopenRuleConfig, StageConfig, StageKind,
    reopen_target,
};
pub use reply::{forwarded_sender, html_new_part, normalized, reply_text, subject_prefix};
pub use reply_token::{REPLY_TOKEN_TAG, ReplyKey, new_reply_token, subject_tag};
pub use thread::{ThreadNode, conversation_title, replies_below, without_reply_prefixes};
