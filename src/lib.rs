//! emailin turns email into sales and support pipeline records.
//!
//! Mail to a pipeline's alias arrives over SMTP, from a polled IMAP mailbox or
//! by import, is stored raw and durably by intake, and is then processed into
//! a new record or a message on an existing one, reopening closed records
//! when the alias says so.
//!
//! # Layout
//! Dependencies flow one way, down this list: a module uses only those
//! below it (`app` and `cli` wire everything).
//! - [`app`]: `App::build` constructs the parts; `run_until_stopped` runs
//!   them under the [`supervise`] module's supervisor and stops them in order.
//! - [`cli`]: the commands behind the `emailin` binary.
//! - [`web`]: the team's web UI (axum + maud, embedded htmx): login,
//!   board, record page, contacts, admin pages; it works records through
//!   the same functions as the API.
//! - [`api`]: the HTTP API (axum, OpenAPI): records, contacts, inbound, admin.
//! - [`smtp`]: the SMTP listener (tokio + smtp-proto): session, DATA, replies.
//! - [`imap`]: the IMAP poller (async-imap): team mailboxes, exactly once.
//! - [`outbound`]: replies from records: compose, outbox sender.
//! - [`webhooks`]: events to other systems (Standard Webhooks): the event
//!   log the database triggers fill, fan-out, signed deliveries with retries.
//! - [`oauth`]: OAuth 2.0 access tokens for IMAP accounts and the relay
//!   (client credentials, sealed refresh tokens, the device code sign-in),
//!   presented as SASL XOAUTH2 or OAUTHBEARER.
//! - [`search`]: the indexer: queued records and messages become search
//!   documents (terms of `domain::search`), one replica at a time.
//! - [`retention`]: raw bytes past `[retention] raw_days`, removed in the
//!   background (erasure of a contact is `api::contacts` over the store).
//! - [`auth`]: SPF, DKIM and DMARC checks of received mail (mail-auth).
//! - [`ingest`]: THE path: `intake` (group commit: durable, then the 250),
//!   then `process` (batches, savepoints): `plan` (route by envelope),
//!   `parse` (mail-parser), `shape` (MIME limits), `classify` (auto-replies,
//!   bounces, complaints, with their reasons), `thread` (the keys that find
//!   a record), [`decide`](ingest::decide) (every rule, pure), `apply`
//!   (lookups and writes), `outcome`.
//! - [`store`]: the only place SQL lives, one trait and file per feature
//!   (inbound, processing, records, outbox, mailbox, team…); SQLite and
//!   PostgreSQL behind them.
//! - [`config`]: typed settings, defaults → file → `EMAILIN__*` env.
//! - [`domain`]: types and rules without I/O: addresses, messages and their
//!   [`Source`](domain::Source), pipelines with their stage and reopen rules
//!   ([`reopen_target`](domain::reopen_target)), reply tokens, DMARC verdicts,
//!   the new part of a reply ([`reply_text`](domain::reply_text)).
//! - [`supervise`], [`telemetry`], [`tls`]: running parts, logs, TLS roots.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod imap;
pub mod ingest;
pub mod oauth;
pub mod outbound;
pub mod retention;
pub mod search;
pub mod smtp;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
pub mod web;
pub mod webhooks;
