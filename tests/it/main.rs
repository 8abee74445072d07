//! One integration binary: the real service over real databases, spoken to
//! with a real SMTP client and read through the HTTP API.

mod admin;
mod auth;
mod browser;
mod cli;
mod conversations;
mod corpus;
mod dkim;
mod domains;
mod faults;
mod forwarding;
mod helpers;
mod imap;
mod lifecycle;
mod limits;
mod machine_mail;
mod mail_not_lost;
mod merge;
mod migrations;
mod oauth;
mod records;
mod replies;
mod reply_text;
mod routes;
mod search;
mod sender_auth;
mod smtp;
mod smtp_protocol;
mod team;
mod web;
mod webhooks;
