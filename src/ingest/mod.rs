//! THE path every message takes, whatever its source.
//!
//! `intake` makes the raw bytes durable (and only then may a source
//! acknowledge); `process` turns stored messages into records: parse → route
//! → contact → thread → apply, writing an outcome on every raw row. Sender
//! classification (auto-replies, bounces, authentication) slots in between
//! parse and route. This module never sees SMTP, IMAP or HTTP types.

mod apply;
mod classify;
pub mod decide;
mod intake;
pub mod mbox;
mod outcome;
pub mod pacing;
mod parse;
mod plan;
mod policy;
mod process;
mod route;
pub mod shape;
mod thread;
mod thread_index;

pub use classify::reason::{self, BounceReason};
pub use classify::{Bounce, Class, Classification, FailedRecipient, classify};
pub use intake::{CommitFailure, Intake, IntakeError, IntakeHealth};
pub use outcome::{IgnoreReason, Outcome, PipelineResult, QuarantineReason};
pub use pacing::{Pace, Pacing};
pub use parse::{ParseError, ParsedMail, Returned, Signals, parse};
pub use plan::{Plan, PlanError, PlannedRoute, plan};
pub use process::{Policy, Processor, REPLY_KEY_SECRET, block_list};
pub use route::{Route, route};
pub use thread::{ThreadKey, thread_keys};
