//! Webhooks: events to other systems, signed as Standard Webhooks, and the
//! notification mails the same events cause (see [`Notifier`]).
//!
//! Database triggers write every event into `event_log` in the transaction
//! that made the change. The dispatcher, run by one replica at a time (a
//! lease), turns each event into one delivery per webhook that wants it,
//! with its body fixed then. Any replica delivers: it claims a delivery,
//! posts it, and records the answer. A network error, a timeout or a
//! non-2xx answer is retried with backoff until `max_attempts`. A record's
//! deliveries to one webhook go out in order: one waits while an older one
//! of the same record is queued.
//!
//! A target is `https://`, or `http://` to a loopback address. Link-local
//! and cloud metadata addresses are always refused. The host is resolved,
//! every address is checked, and the connection goes to a checked address.

mod deliver;
mod notify;
mod target;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

pub use deliver::Webhooks;
pub use notify::Notifier;
pub use target::Target;

/// Every event a webhook can get.
pub const EVENTS: [&str; 10] = [
    "record.created",
    "record.reopened",
    "record.stage_changed",
    "message.received",
    "message.sent",
    "comment.created",
    "contact.bounced",
    "contact.complained",
    "inbound.quarantined",
    "inbound.failed",
];

/// The signing key of a `whsec_` secret.
///
/// # Errors
/// A message for a secret of the wrong shape.
pub fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret
        .strip_prefix("whsec_")
        .ok_or("secret: must start with whsec_")?;
    let key = BASE64
        .decode(b64)
        .map_err(|_| "secret: the part after whsec_ must be base64")?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "secret: must hold 24 to 64 bytes, not {}",
            key.len()
        ));
    }
    Ok(key)
}

/// A new random secret.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("whsec_{}", BASE64.encode(key))
}

/// The `webhook-signature` header value: `v1,` and the base64 of
/// HMAC-SHA256 over `id.timestamp.body`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        // HMAC takes keys of any length; this branch is never taken.
        return String::new();
    };
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Checks a webhook's URL, secret and events as a person typed them.
///
/// # Errors
/// A message naming the field.
pub fn check_webhook(url: &str, secret: &str, events: &[String]) -> Result<(), String> {
    Target::parse(url)?;
    secret_key(secret)?;
    if let Some(unknown) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(format!(
            "events: {unknown:?} is not one of {}",
            EVENTS.join(", ")
        ));
    }
    Ok(())
}

/// The id of a webhook of the configuration file: fixed by its URL, so its
/// deliveries stay its own across restarts.
pub fn config_webhook_id(url: &str) -> Uuid {
    let digest = crate::domain::sha256_hex(format!("config webhook {url}").as_bytes());
    let bytes = hex::decode(&digest[..32]).unwrap_or_default();
    Uuid::from_slice(&bytes).unwrap_or_default()
}

/// A webhook the service delivers to (from the file or the API).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: Uuid,
    pub url: String,
    pub key: Vec<u8>,
    /// Empty: every event.
    pub events: Vec<String>,
    /// `config` or `api`.
    pub source: &'static str,
}

impl Webhook {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signatures_match_the_specification_example() {
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("key");
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_and_events_are_checked() {
        assert!(secret_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(secret_key("whsec_c2hvcnQ=").is_err());
        assert!(secret_key(&new_secret()).is_ok());
        let events = vec!["record.created".to_string(), "record.deleted".to_string()];
        let err = check_webhook("https://example.com/h", &new_secret(), &events).unwrap_err();
        assert!(err.contains("record.deleted"), "{err}");
        assert_eq!(
            config_webhook_id("https://a.example/"),
            config_webhook_id("https://a.example/")
        );
    }
}
