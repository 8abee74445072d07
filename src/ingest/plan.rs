//! The I/O-free part of processing: parse, route, and the thread keys to
//! look up in each pipeline. Pure and cheap to benchmark; `process` adds
//! the lookups and writes.

use super::parse::{ParseError, ParsedMail, parse};
use super::route::{Route, route};
use super::thread::{ThreadKey, thread_keys};
use crate::domain::Directory;

/// What processing will do with one message, before any lookup.
#[derive(Debug)]
pub struct Plan<'a> {
    pub mail: ParsedMail,
    pub routes: Vec<PlannedRoute<'a>>,
}

/// One pipeline the message goes to, with the keys that may thread it there.
#[derive(Debug)]
pub struct PlannedRoute<'a> {
    pub route: Route<'a>,
    pub keys: Vec<ThreadKey>,
}

/// Why a message needs no lookups at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Unparseable(#[from] ParseError),
    #[error("no enabled alias among the recipients")]
    NoAlias,
}

/// Parses `raw` and decides where it goes and how it may thread.
///
/// # Errors
/// [`PlanError`] when the message cannot be parsed or reaches no alias.
pub fn plan<'a>(
    raw: &[u8],
    directory: &'a Directory,
    rcpt_to: &[String],
) -> Result<Plan<'a>, PlanError> {
    let routes = route(directory, rcpt_to);
    if routes.is_empty() {
        return Err(PlanError::NoAlias);
    }
    let mail = parse(raw)?;
    let routes = routes
        .into_iter()
        .map(|route| {
            let keys = thread_keys(route.token.as_deref(), &mail);
            PlannedRoute { route, keys }
        })
        .collect();
    Ok(Plan { mail, routes })
}
