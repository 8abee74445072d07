//! The sender: delivers queued replies to the relay, one at a time.
//!
//! A reply is claimed with a lease (so replicas never send one twice at
//! once), handed to the relay, and marked `sent` with the relay's answer. A
//! 5xx answer fails it at once; anything else (connection refused, timeout,
//! 4xx) is retried with exponential backoff and jitter until
//! `max_attempts`. Nothing is lost when the relay is down: the reply stays
//! `queued` with the last error and goes out once the relay answers.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use mail_send::smtp::message::Message;
use mail_send::{Credentials, SmtpClientBuilder};
use rand::Rng;
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::config::{OutboundSettings, RelayTls, SaslMechanism};
use crate::store::{DeliveryResult, OutboxItem, Store, now_ms};

/// Longest wait between looks at the outbox (also picks up replies whose
/// lease expired on a replica that died).
const MAX_IDLE: Duration = Duration::from_secs(5);
/// Shortest wait when the due reply is leased by someone else.
const MIN_IDLE: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct Sender {
    store: Arc<dyn Store>,
    settings: OutboundSettings,
    wake: Arc<Notify>,
    relay: Relay,
    /// Checks each sending domain before its first mail.
    domains: Option<Arc<super::domains::DomainChecks>>,
}

/// The configured relay: one SMTP transaction per message.
#[derive(Clone)]
pub struct Relay {
    settings: OutboundSettings,
    helo: String,
    /// Built once: loading the system roots reads many files.
    tls: Result<TlsConnector, String>,
    /// Signs every message handed over.
    dkim: Option<super::dkim::Dkim>,
    /// Access tokens, with `auth = "oauth2"`.
    tokens: Option<Arc<crate::oauth::TokenSource>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("host", &self.settings.host)
            .field("port", &self.settings.port)
            .finish_non_exhaustive()
    }
}

impl Relay {
    pub fn new(
        settings: OutboundSettings,
        helo: String,
        dkim: Option<super::dkim::Dkim>,
        tokens: Option<Arc<crate::oauth::TokenSource>>,
    ) -> Self {
        let tls = crate::tls::client_config(None)
            .map(|config| TlsConnector::from(Arc::new(config)))
            .map_err(|e| format!("TLS setup: {e}"));
        Relay {
            settings,
            helo,
            tls,
            dkim,
            tokens,
        }
    }

    /// Hands one message to the relay now: the relay's answer when it took
    /// it, otherwise what went wrong (no retries).
    ///
    /// # Errors
    /// The refusal or the connection error, as text for people.
    pub async fn send_now(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        raw: &[u8],
    ) -> Result<String, String> {
        match self.attempt(mail_from, rcpt_to, raw).await {
            Attempt::Accepted(answer) => Ok(answer),
            Attempt::Permanent(e) | Attempt::Transient(e) => Err(e),
        }
    }
}

/// How one attempt went, before retry policy.
#[derive(Debug)]
enum Attempt {
    Accepted(String),
    Permanent(String),
    Transient(String),
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        settings: OutboundSettings,
        helo: String,
        wake: Arc<Notify>,
        dkim: Option<super::dkim::Dkim>,
        tokens: Option<Arc<crate::oauth::TokenSource>>,
    ) -> Self {
        Self {
            store,
            relay: Relay::new(settings.clone(), helo, dkim, tokens),
            settings,
            wake,
            domains: None,
        }
    }

    /// Checks each domain mail is sent from before its first mail goes out.
    #[must_use]
    pub fn checking_domains(mut self, domains: Arc<super::domains::DomainChecks>) -> Self {
        self.domains = Some(domains);
        self
    }

    /// Delivers due replies until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        // Long enough for connect, every command and DATA, each under the timeout.
        let lease_ms =
            i64::try_from(self.settings.timeout_secs.saturating_mul(4_000)).unwrap_or(i64::MAX);
        loop {
            // A cheap read first: the write transaction of a claim only when a reply is due.
            let due = match self.store.next_outbox_due().await {
                Ok(due) => due,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox_read_failed");
                    None
                }
            };
            if due.is_some_and(|due| due <= now_ms()) {
                match self.store.claim_outbox(now_ms(), lease_ms, 1).await {
                    Ok(items) if !items.is_empty() => {
                        for item in items {
                            let result = self.deliver(&item).await;
                            if let Err(err) = self.store.finish_outbox(item.id, &result).await {
                                // The lease runs out and the reply is tried again.
                                tracing::error!(error = %err, id = %item.id, "outbox_update_failed");
                            }
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "outbox_claim_failed"),
                }
            }
            // Until the next reply is due (one leased elsewhere: check again soon).
            let idle = due.map_or(MAX_IDLE, |due| {
                Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0))
                    .clamp(MIN_IDLE, MAX_IDLE)
            });
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(idle) => {}
            }
        }
    }

    /// One attempt, turned into what the outbox records.
    async fn deliver(&self, item: &OutboxItem) -> DeliveryResult {
        if let (Some(domains), Some((_, domain))) = (&self.domains, item.mail_from.rsplit_once('@'))
        {
            domains.check_once(domain).await;
        }
        // A panic in the SMTP client must not end the sender: it is one failed attempt.
        let attempt = AssertUnwindSafe(self.relay.attempt(
            &item.mail_from,
            &item.rcpt_to,
            &item.raw,
        ))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Attempt::Transient("the SMTP client panicked".into()));
        let attempts = u32::try_from(item.attempts).unwrap_or(u32::MAX);
        match attempt {
            Attempt::Accepted(reply) => {
                tracing::info!(id = %item.id, reply = %reply, "reply_sent");
                DeliveryResult::Sent { reply }
            }
            Attempt::Permanent(error) => {
                tracing::warn!(id = %item.id, error = %error, "reply_failed");
                DeliveryResult::Failed { error }
            }
            Attempt::Transient(error) if attempts >= self.settings.max_attempts => {
                tracing::warn!(id = %item.id, error = %error, attempts, "reply_failed");
                DeliveryResult::Failed {
                    error: format!("gave up after {attempts} attempts: {error}"),
                }
            }
            Attempt::Transient(error) => {
                let wait = backoff(&self.settings, attempts);
                tracing::info!(id = %item.id, error = %error, attempts, retry_in_ms = wait, "reply_deferred");
                DeliveryResult::Retry {
                    error,
                    next_attempt_at_ms: now_ms().saturating_add(wait),
                }
            }
        }
    }
}

impl Relay {
    async fn attempt(&self, mail_from: &str, rcpt_to: &[String], raw: &[u8]) -> Attempt {
        let s = &self.settings;
        let connector = match &self.tls {
            Ok(connector) => connector.clone(),
            Err(e) => return Attempt::Transient(e.clone()),
        };
        let mut builder =
            SmtpClientBuilder::new_with_tls_connector(s.host.clone(), s.port, connector)
                .implicit_tls(s.tls == RelayTls::Implicit)
                .helo_host(self.helo.clone())
                .timeout(Duration::from_secs(s.timeout_secs));
        match &self.tokens {
            Some(tokens) => {
                let token = match tokens.access_token().await {
                    Ok(token) => token,
                    Err(e) => return Attempt::Transient(format!("OAuth: {e}")),
                };
                builder = builder.credentials(match tokens.settings().mechanism {
                    SaslMechanism::Xoauth2 => Credentials::new_xoauth2(s.username.clone(), token),
                    SaslMechanism::Oauthbearer => Credentials::new_oauth(
                        crate::oauth::sasl::oauthbearer(&s.username, &s.host, s.port, &token),
                    ),
                });
            }
            None if !s.username.is_empty() => {
                builder = builder.credentials(Credentials::new(
                    s.username.clone(),
                    s.password.expose().to_string(),
                ));
            }
            None => {}
        }
        let signed;
        let raw = match &self.dkim {
            Some(dkim) => match dkim.sign(raw) {
                Ok(s) => {
                    signed = s;
                    signed.as_slice()
                }
                Err(e) => return Attempt::Permanent(e),
            },
            None => raw,
        };
        let message = Message::new(mail_from, rcpt_to.iter().map(String::as_str), raw);
        let sent = match s.tls {
            RelayTls::None => match builder.connect_plain().await {
                Ok(mut client) => {
                    let r = client.send(message).await;
                    let _ = client.quit().await;
                    r
                }
                Err(e) => Err(e),
            },
            RelayTls::Starttls | RelayTls::Implicit => match builder.connect().await {
                Ok(mut client) => {
                    let r = client.send(message).await;
                    let _ = client.quit().await;
                    r
                }
                Err(e) => Err(e),
            },
        };
        match sent {
            Ok(reply) => Attempt::Accepted(describe(&reply)),
            Err(mail_send::Error::UnexpectedReply(reply)) if reply.code >= 500 => {
                Attempt::Permanent(describe(&reply))
            }
            Err(mail_send::Error::UnexpectedReply(reply)) => Attempt::Transient(describe(&reply)),
            Err(e @ mail_send::Error::AuthenticationFailed(_)) => {
                if let Some(tokens) = &self.tokens {
                    // Perhaps revoked early: the next attempt asks for a new one.
                    tokens.forget().await;
                }
                Attempt::Transient(format!("relay login: {e}"))
            }
            Err(e) => Attempt::Transient(e.to_string()),
        }
    }
}

/// `250 2.0.0 text`, as the relay said it.
fn describe(reply: &smtp_proto::Response<String>) -> String {
    let [a, b, c] = reply.esc;
    if a == 0 {
        format!("{} {}", reply.code, reply.message.trim())
    } else {
        format!("{} {a}.{b}.{c} {}", reply.code, reply.message.trim())
    }
}

/// Milliseconds before attempt `attempts + 1`: the initial wait doubled per
/// attempt made, capped, with up to 10 % jitter so replicas spread out.
fn backoff(s: &OutboundSettings, attempts: u32) -> i64 {
    let base = s
        .retry_initial_secs
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(30))
        .min(s.retry_max_secs.max(s.retry_initial_secs))
        .saturating_mul(1000);
    let jitter = rand::rng().random_range(0..=base / 10);
    i64::try_from(base.saturating_add(jitter)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut s = crate::config::Settings::defaults().unwrap().outbound;
        s.retry_initial_secs = 30;
        s.retry_max_secs = 3600;
        let within = |ms: i64, secs: i64| (secs * 1000..=secs * 1100).contains(&ms);
        assert!(within(backoff(&s, 1), 30));
        assert!(within(backoff(&s, 2), 60));
        assert!(within(backoff(&s, 3), 120));
        assert!(within(backoff(&s, 20), 3600));
        assert!(within(backoff(&s, u32::MAX), 3600));
    }

    #[test]
    fn relay_answers_read_as_sent() {
        let reply = smtp_proto::Response {
            code: 250,
            esc: [2, 0, 0],
            message: "queued as 1A2B ".to_string(),
        };
        assert_eq!(describe(&reply), "250 2.0.0 queued as 1A2B");
    }
}
