//! The I/O-free part of processing: parse, classify, route, and the thread
//! keys to look up in each pipeline. Pure and cheap to benchmark; `process` adds
//! the lookups and writes.

use super::classify::{Classification, classify};
use super::parse::{ParseError, ParsedMail, parse};
use super::route::{Route, route};
use super::thread::{ThreadKey, thread_keys};
use crate::domain::Directory;

/// What processing will do with one message, before any lookup.
#[derive(Debug)]
pub struct Plan<'a> {
    pub mail: ParsedMail,
    pub classification: Classification,
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
    /// Over the shape limits: not parsed.
    #[error("{reason}: {} parts, nested {} deep", shape.parts, shape.depth)]
    TooComplex {
        reason: &'static str,
        shape: super::shape::Shape,
    },
}

/// Parses `raw` and decides where it goes and how it may thread.
///
/// `null_sender` says the envelope sender was `<>` (a bounce hint).
/// `by_headers` is for mail polled from a team mailbox: the first of
/// Delivered-To, X-Original-To, X-Forwarded-To, Envelope-To, To, Cc that
/// names an alias decides the routes; `rcpt_to` (the account's default
/// alias) applies only when none does.
///
/// # Errors
/// [`PlanError`] when the message cannot be parsed or reaches no alias.
pub fn plan<'a>(
    raw: &[u8],
    directory: &'a Directory,
    rcpt_to: &[String],
    by_headers: bool,
    null_sender: bool,
) -> Result<Plan<'a>, PlanError> {
    let (mail, routes) = if by_headers {
        let mail = parse(raw)?;
        let named = mail
            .forward_targets
            .iter()
            .map(|group| {
                group
                    .iter()
                    .filter(|a| directory.accepts(a))
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .find(|group| !group.is_empty());
        let routes = route(directory, named.as_deref().unwrap_or(rcpt_to));
        (mail, routes)
    } else {
        // Envelope routing needs no parse: an unroutable message costs nothing more.
        let routes = route(directory, rcpt_to);
        if routes.is_empty() {
            return Err(PlanError::NoAlias);
        }
        (parse(raw)?, routes)
    };
    if routes.is_empty() {
        return Err(PlanError::NoAlias);
    }
    let routes = routes
        .into_iter()
        .map(|route| {
            let keys = thread_keys(route.token.as_deref(), &mail);
            PlannedRoute { route, keys }
        })
        .collect();
    let classification = classify(&mail, null_sender);
    Ok(Plan {
        mail,
        classification,
        routes,
    })
}
