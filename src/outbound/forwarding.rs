//! The forwarding check: for a team mailbox that forwards to an alias (an
//! address in the alias's `also`), a test message goes to the team address
//! through the relay, and the check reports when it arrives through the
//! alias (SMTP) or an IMAP account, with the headers that routed it.
//!
//! The test message carries the service's loop header, so when it comes
//! back it is stored and ignored (`ignored: loop`), never a record; it is
//! found again by the token in its Message-ID.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use mail_send::mail_builder::MessageBuilder;
use mail_send::mail_builder::headers::raw::Raw;
use serde::Serialize;
use uuid::Uuid;

use super::Outbound;
use super::compose::LOOP_HEADER;
use crate::config::AliasConfig;
use crate::store::{InboundFilter, Store, StoreResult};

/// Headers that show how a message was routed, in the order they are listed.
const ROUTING_HEADERS: &[&str] = &[
    "received",
    "delivered-to",
    "x-original-to",
    "x-forwarded-to",
    "x-forwarded-for",
    "envelope-to",
    "resent-from",
    "resent-to",
    "return-path",
    "arc-authentication-results",
    "authentication-results",
];

/// Stored messages looked at per look, newest first.
const LOOK_BACK: i64 = 200;

/// A test message that was handed to the relay.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub alias: String,
    /// The team address it was sent to.
    pub to: String,
    pub message_id: String,
    pub sent_at: DateTime<Utc>,
    /// What the relay answered.
    pub relay_answer: String,
}

/// Where and how the test message came in.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Arrival {
    pub inbound_id: Uuid,
    pub received_at: DateTime<Utc>,
    /// Seconds from handing it to the relay to storing it.
    pub after_secs: f64,
    /// `smtp` or `imap:ACCOUNT`.
    pub source: String,
    /// The envelope recipients it was stored for.
    pub rcpt_to: Vec<String>,
    /// The routing headers, top (newest) first.
    pub headers: Vec<(String, String)>,
}

/// Why a test message could not be sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("no relay is configured ([outbound] host): nothing can be sent")]
    NoRelay,
    #[error(
        "alias {0} has no team address to check (its `also` is empty): give --to or add the address the team mailbox forwards from"
    )]
    NoTeamAddress(String),
    #[error("the relay refused the test message: {0}")]
    Refused(String),
    #[error("the test message could not be written: {0}")]
    Compose(String),
}

/// The test message to `to`, for `alias`, with a token of its own.
fn compose(
    outbound: &Outbound,
    alias: &str,
    to: &str,
    now: DateTime<Utc>,
) -> Result<(String, Vec<u8>), ProbeError> {
    let token = Uuid::new_v4().simple().to_string();
    let message_id = format!("forwarding-check.{token}@{}", outbound.domain);
    let text = format!(
        "This is a test message from emailin, sent to {to} to check that it is forwarded to the alias {alias}.\n\
         It is recorded when it arrives and becomes no record. Nothing needs to be done with it.\n"
    );
    let raw = MessageBuilder::new()
        .from(("emailin", outbound.system_from.as_str()))
        .to(to)
        .subject(format!("emailin forwarding check for {alias}"))
        .message_id(message_id.clone())
        .date(now.timestamp())
        .header(LOOP_HEADER, Raw::new(outbound.domain.clone()))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
        .map_err(|e| ProbeError::Compose(e.to_string()))?;
    Ok((message_id, raw))
}

/// Sends the test message for `alias` to `to`, or to its first `also`
/// address.
///
/// # Errors
/// [`ProbeError`]: no relay, no team address, or the relay refused it.
pub async fn send_probe(
    outbound: &Outbound,
    alias: &AliasConfig,
    to: Option<&str>,
) -> Result<Probe, ProbeError> {
    let relay = outbound.relay.as_ref().ok_or(ProbeError::NoRelay)?;
    let to = match to.map(str::trim).filter(|t| !t.is_empty()) {
        Some(to) => to.to_string(),
        None => alias
            .also
            .first()
            .cloned()
            .ok_or_else(|| ProbeError::NoTeamAddress(alias.address.clone()))?,
    };
    let now = Utc::now();
    let (message_id, raw) = compose(outbound, &alias.address, &to, now)?;
    let relay_answer = relay
        .send_now(&outbound.system_from, std::slice::from_ref(&to), &raw)
        .await
        .map_err(ProbeError::Refused)?;
    Ok(Probe {
        alias: alias.address.clone(),
        to,
        message_id,
        sent_at: now,
        relay_answer,
    })
}

/// The stored message the probe became, if it has arrived. `looked_at`
/// keeps the rows already read, so a caller that asks again (every second,
/// while it waits) reads each stored message's bytes once.
///
/// # Errors
/// The store's.
pub async fn find_arrival(
    store: &dyn Store,
    probe: &Probe,
    looked_at: &mut HashSet<Uuid>,
) -> StoreResult<Option<Arrival>> {
    let page = store
        .list_inbound(&InboundFilter {
            status: None,
            cursor: None,
            limit: LOOK_BACK,
        })
        .await?;
    let needle = probe.message_id.as_bytes();
    // A second's slack: the relay's clock and ours are the same, but the
    // row's time is taken when intake stored it, rounded by the database.
    let since = probe.sent_at - chrono::Duration::seconds(1);
    for row in page.items.iter().filter(|r| r.received_at >= since) {
        if !looked_at.insert(row.id) {
            continue;
        }
        let Some(raw) = store.inbound_raw(row.id).await? else {
            continue;
        };
        if memchr::memmem::find(&raw, needle).is_none() {
            continue;
        }
        let after = (row.received_at - probe.sent_at).num_milliseconds().max(0) as f64 / 1000.0;
        return Ok(Some(Arrival {
            inbound_id: row.id,
            received_at: row.received_at,
            after_secs: after,
            source: row.source.clone(),
            rcpt_to: row.rcpt_to.clone(),
            headers: routing_headers(&raw),
        }));
    }
    Ok(None)
}

/// The routing headers of `raw`, unfolded, top first.
fn routing_headers(raw: &[u8]) -> Vec<(String, String)> {
    let end = memchr::memmem::find(raw, b"\r\n\r\n")
        .or_else(|| memchr::memmem::find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    headers
        .into_iter()
        .filter(|(name, _)| ROUTING_HEADERS.contains(&name.to_ascii_lowercase().as_str()))
        .collect()
}

/// The latest probe of each alias in this process (the admin page's).
#[derive(Debug, Default)]
pub struct Probes(Mutex<BTreeMap<String, Probe>>);

impl Probes {
    pub fn remember(&self, probe: Probe) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(probe.alias.to_ascii_lowercase(), probe);
        }
    }

    pub fn latest(&self, alias: &str) -> Option<Probe> {
        self.0
            .lock()
            .ok()
            .and_then(|m| m.get(&alias.to_ascii_lowercase()).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_headers_are_unfolded_in_order() {
        let raw = b"Return-Path: <emailin@acme.test>\r\nReceived: from a\r\n\tby b; Mon, 7 Dec 2026\r\n\
Subject: x\r\nX-Forwarded-To: service@in.acme.test\r\nReceived: from c by d\r\n\r\nReceived: not a header\r\n";
        assert_eq!(
            routing_headers(raw),
            [
                ("Return-Path".to_string(), "<emailin@acme.test>".to_string()),
                ("Received".into(), "from a by b; Mon, 7 Dec 2026".into()),
                ("X-Forwarded-To".into(), "service@in.acme.test".into()),
                ("Received".into(), "from c by d".into()),
            ]
        );
    }
}
