//! emailin turns email into sales and support pipeline records.
//!
//! Mail to a pipeline's alias arrives over SMTP (or, later, IMAP and
//! import), is stored raw and durably by intake, and is then processed into
//! a new record or a message on an existing one, reopening closed records
//! when the alias says so.
//!
//! # Layout
//! - [`config`]: typed settings, defaults → file → `EMAILIN__*` env.
//! - [`domain`]: validated types without I/O (addresses, stages, directory).
//! - [`ingest`]: THE path: intake (group commit), parse, route, thread, apply.
//! - [`store`]: the only place SQL lives; SQLite and PostgreSQL behind one trait.
//! - [`smtp`]: the SMTP listener (tokio + smtp-proto).
//! - [`imap`]: the IMAP poller (async-imap): team mailboxes, exactly once.
//! - [`api`]: the HTTP API (axum).
//! - [`app`]: wiring, start and graceful stop.
//! - [`cli`]: the commands behind the `emailin` binary.

pub mod api;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod imap;
pub mod ingest;
pub mod outbound;
pub mod smtp;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod tls;
