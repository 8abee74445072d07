//! Sender authentication with mail-auth: SPF (client IP, HELO, MAIL FROM),
//! DKIM and DMARC for mail received over SMTP, written as the value of an
//! `Authentication-Results` header under our hostname (the authserv-id).
//!
//! The check runs in the SMTP session after DATA and before intake, so the
//! verdict is stored with the raw message; what it means for the message
//! (record, quarantine, threading) is decided by processing, per alias.
//! Every lookup of one message shares one deadline: a DNS error or a timeout
//! is `temperror`, never a failure and never a crash. Answers are cached for
//! their TTL; `static_records` are answers known without asking DNS (and,
//! with `resolver = "static"`, the only ones: offline).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::FutureExt;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dmarc::Dmarc as DmarcRecord;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::Spf;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DnsError, MX, MessageAuthenticator, Parameters,
    RecordSet, ResolverCache, Txt,
};

use crate::config::{AuthSettings, ResolverKind};

pub mod domain;
use crate::domain::Cidr;
pub use domain::{Check, CheckStatus, DomainReport, Sending};

/// Entries one cache keeps before it starts over.
const CACHE_CAPACITY: usize = 10_000;

/// A DNS answer cache keyed by name (or address), honouring each answer's TTL.
struct MapCache<K, V>(Mutex<HashMap<K, (V, Instant)>>);

impl<K: Hash + Eq, V: Clone> MapCache<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for MapCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= CACHE_CAPACITY {
                map.clear();
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// Checks senders; one per process, shared by every SMTP session.
pub struct Authenticator {
    resolver: MessageAuthenticator,
    txt: MapCache<Box<str>, Txt>,
    /// Static answers never expire and never leave the cache.
    statics: HashMap<Box<str>, Txt>,
    /// The same answers as text, for the sending-domain checks.
    static_raw: HashMap<Box<str>, String>,
    /// Only static answers exist (`resolver = "static"`).
    static_only: bool,
    mx: MapCache<Box<str>, RecordSet<MX>>,
    ipv4: MapCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: MapCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: MapCache<IpAddr, RecordSet<Box<str>>>,
    trusted: Vec<Cidr>,
    timeout: Duration,
    hostname: String,
}

/// TXT lookups: static answers first, then the TTL cache.
struct TxtCache<'a>(&'a Authenticator);

impl ResolverCache<Box<str>, Txt> for TxtCache<'_> {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let known = self.0.statics.get(name).cloned();
        if self.0.static_only {
            // Offline: a name not listed does not exist.
            return Some(known.unwrap_or_else(|| {
                Txt::Error(mail_auth::Error::Dns(DnsError::RecordNotFound(
                    ResponseCode::NXDomain,
                )))
            }));
        }
        known.or_else(|| self.0.txt.get(name))
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.txt.remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: Instant) {
        self.0.txt.insert(key, value, valid_until);
    }
}

/// Parses one TXT record the way a lookup of its name would.
fn parse_txt(name: &str, value: &str) -> Txt {
    let bytes = value.as_bytes();
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("_dmarc.") {
        DmarcRecord::parse(bytes).into()
    } else if lower.contains("._domainkey.") {
        DomainKey::parse(bytes).into()
    } else {
        Spf::parse(bytes).into()
    }
}

/// A fully qualified, lower-case DNS name (the cache's key form).
fn fqdn(name: &str) -> Box<str> {
    let mut name = name.trim().to_ascii_lowercase();
    if !name.ends_with('.') {
        name.push('.');
    }
    name.into_boxed_str()
}

impl Authenticator {
    /// # Errors
    /// The system resolver configuration cannot be read.
    pub fn new(settings: &AuthSettings, hostname: &str) -> Result<Self, String> {
        let timeout = Duration::from_millis(settings.dns_timeout_ms.max(1));
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        let config = match settings.resolver {
            ResolverKind::System => {
                let (config, _) = mail_auth::hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| format!("auth.resolver = \"system\": {e}"))?;
                config
            }
            ResolverKind::Static => ResolverConfig::from_name_servers(Vec::new()),
        };
        let resolver = MessageAuthenticator::new(config, opts).map_err(|e| e.to_string())?;
        let statics = settings
            .static_records
            .iter()
            .map(|r| (fqdn(&r.name), parse_txt(&r.name, &r.value)))
            .collect();
        let static_raw = settings
            .static_records
            .iter()
            .map(|r| (fqdn(&r.name), r.value.clone()))
            .collect();
        Ok(Self {
            resolver,
            txt: MapCache::new(),
            statics,
            static_raw,
            static_only: settings.resolver == ResolverKind::Static,
            mx: MapCache::new(),
            ipv4: MapCache::new(),
            ipv6: MapCache::new(),
            ptr: MapCache::new(),
            trusted: settings
                .trusted_networks
                .iter()
                .filter_map(|n| Cidr::parse(n))
                .collect(),
            timeout,
            hostname: hostname.to_string(),
        })
    }

    /// Whether mail from `ip` is taken without checks.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// The `Authentication-Results` value (`<hostname>; dkim=…; spf=…; dmarc=…`).
    pub async fn verify(&self, raw: &[u8], ip: IpAddr, helo: &str, mail_from: &str) -> String {
        let host = self.hostname.as_str();
        let work = async {
            let Some(message) = AuthenticatedMessage::parse(raw) else {
                return format!("{host}; none (the message cannot be parsed)");
            };
            let txt = TxtCache(self);
            let dkim = self.resolver.verify_dkim(self.params(&message, &txt)).await;
            let spf_params = SpfParameters::verify(ip, helo, host, mail_from);
            let spf = self
                .resolver
                .verify_spf(self.params(spf_params, &txt))
                .await;
            let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
            let dmarc_params = DmarcParameters {
                message: &message,
                dkim_output: &dkim,
                dkim2_output: None,
                rfc5321_mail_from_domain: mail_from_domain,
                spf_output: &spf,
            };
            let dmarc = self
                .resolver
                .verify_dmarc(self.params(dmarc_params, &txt))
                .await;
            let results = AuthenticationResults::new(host)
                .with_dkim_results(&dkim, message.from())
                .with_spf_mailfrom_result(&spf, ip, mail_from, helo)
                .with_dmarc_result(&dmarc);
            one_line(&results.to_string())
        };
        match self.bounded(work).await {
            Ok(results) => results,
            Err(why) => format!("{host}; dkim=temperror; spf=temperror; dmarc=temperror ({why})"),
        }
    }

    /// DKIM only (polled mail: no SMTP client to check SPF for): the
    /// `Authentication-Results` value, or `None` for an unsigned message.
    pub async fn verify_dkim(&self, raw: &[u8]) -> Option<String> {
        let host = self.hostname.as_str();
        let work = async {
            let message = AuthenticatedMessage::parse(raw)?;
            if message.dkim_headers.is_empty() && !message.has_dkim_errors {
                return None;
            }
            let txt = TxtCache(self);
            let dkim = self.resolver.verify_dkim(self.params(&message, &txt)).await;
            if dkim.is_empty() {
                // Only signatures that could not even be read.
                return Some(format!("{host}; dkim=permerror (unreadable signature)"));
            }
            let results = AuthenticationResults::new(host).with_dkim_results(&dkim, message.from());
            Some(one_line(&results.to_string()))
        };
        self.bounded(work)
            .await
            .unwrap_or_else(|why| Some(format!("{host}; dkim=temperror ({why})")))
    }

    /// Runs a check under the deadline; a timeout or a panic in the verifier
    /// becomes an inconclusive result instead of ending the caller's task.
    async fn bounded<T>(&self, work: impl Future<Output = T>) -> Result<T, &'static str> {
        match tokio::time::timeout(self.timeout, AssertUnwindSafe(work).catch_unwind()).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => {
                tracing::error!("sender authentication panicked");
                Err("verifier failed")
            }
            Err(_) => Err("lookups timed out"),
        }
    }

    #[allow(clippy::type_complexity)]
    fn params<'x, P>(
        &'x self,
        params: P,
        txt: &'x TxtCache<'x>,
    ) -> Parameters<
        'x,
        P,
        TxtCache<'x>,
        MapCache<Box<str>, RecordSet<MX>>,
        MapCache<Box<str>, RecordSet<Ipv4Addr>>,
        MapCache<Box<str>, RecordSet<Ipv6Addr>>,
        MapCache<IpAddr, RecordSet<Box<str>>>,
    > {
        Parameters::new(params)
            .with_txt_cache(txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }
}

/// Folded header text on one line.
fn one_line(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaticTxtRecord;
    use crate::domain::{Dmarc, dmarc_verdict};

    /// Offline settings answering only `records` (also the domain checks').
    pub(super) fn settings(records: &[(&str, &str)]) -> AuthSettings {
        AuthSettings {
            trusted_networks: vec!["127.0.0.0/8".into()],
            dns_timeout_ms: 2000,
            resolver: ResolverKind::Static,
            static_records: records
                .iter()
                .map(|(name, value)| StaticTxtRecord {
                    name: (*name).into(),
                    value: (*value).into(),
                })
                .collect(),
        }
    }

    /// A message from `from`, DKIM-signed for `d` with `key` when given.
    fn message(
        from: &str,
        signer: Option<(mail_auth::common::crypto::Ed25519Key, &str)>,
    ) -> Vec<u8> {
        let body = format!(
            "From: {from}\r\nTo: sales@in.example\r\nSubject: hi\r\nMessage-ID: <m1@x>\r\n\r\nhello\r\n"
        );
        let Some((key, d)) = signer else {
            return body.into_bytes();
        };
        use mail_auth::common::headers::HeaderWriter;
        let signature = mail_auth::dkim::DkimSigner::from_key(key)
            .domain(d)
            .selector("s1")
            .headers(["From", "To", "Subject", "Message-ID"])
            .sign(body.as_bytes())
            .expect("signs");
        format!("{}{body}", signature.to_header()).into_bytes()
    }

    fn ed25519() -> (mail_auth::common::crypto::Ed25519Key, String) {
        use mail_auth::common::crypto::Ed25519Key;
        let pkcs8 = Ed25519Key::generate_pkcs8().expect("key");
        let key = Ed25519Key::from_pkcs8_der(&pkcs8).expect("key");
        let public = base64_encode(&key.public_key());
        (key, format!("v=DKIM1; k=ed25519; p={public}"))
    }

    fn base64_encode(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    const CLIENT: &str = "192.0.2.10";

    /// Checks a message from `sender` (domain `domain`) signed with `signer`,
    /// against a domain publishing `key_record`, SPF `spf` and `p=reject`.
    async fn verdict_for(
        domain: &str,
        key_record: &str,
        spf: &str,
        sender: &str,
        signer: mail_auth::common::crypto::Ed25519Key,
    ) -> String {
        let selector = format!("s1._domainkey.{domain}");
        let dmarc = format!("_dmarc.{domain}");
        let records = [
            (selector.as_str(), key_record),
            (domain, spf),
            (dmarc.as_str(), "v=DMARC1; p=reject"),
        ];
        let auth = Authenticator::new(&settings(&records), "mx.emailin.test").unwrap();
        let raw = message(&format!("Someone <{sender}>"), Some((signer, domain)));
        auth.verify(&raw, CLIENT.parse().unwrap(), "mail.client.test", sender)
            .await
    }

    #[tokio::test]
    async fn aligned_dkim_and_spf_pass_dmarc() {
        let (key, record) = ed25519();
        let results = verdict_for(
            "good.test",
            &record,
            "v=spf1 ip4:192.0.2.10 -all",
            "ann@good.test",
            key,
        )
        .await;
        assert!(results.starts_with("mx.emailin.test;"), "{results}");
        assert!(results.contains("dkim=pass"), "{results}");
        assert!(results.contains("spf=pass"), "{results}");
        let verdict = dmarc_verdict(&results, "mx.emailin.test");
        assert_eq!(verdict, Some(Dmarc::Pass), "{results}");
    }

    #[tokio::test]
    async fn a_forged_sender_fails_dmarc() {
        let (_, record) = ed25519();
        let (other_key, _) = ed25519();
        // Signed with a key that is not the published one, from an unlisted IP.
        let spf = "v=spf1 ip4:198.51.100.1 -all";
        let results = verdict_for("bank.test", &record, spf, "alerts@bank.test", other_key).await;
        assert!(results.contains("dkim=fail"), "{results}");
        assert!(results.contains("spf=fail"), "{results}");
        let verdict = dmarc_verdict(&results, "mx.emailin.test");
        assert_eq!(verdict, Some(Dmarc::Fail), "{results}");
    }

    #[tokio::test]
    async fn polled_mail_gets_its_dkim_signatures_checked() {
        let (key, record) = ed25519();
        let records = [("s1._domainkey.good.test", record.as_str())];
        let auth = Authenticator::new(&settings(&records), "mx.emailin.test").unwrap();
        let signed = message("Ann <ann@good.test>", Some((key, "good.test")));
        let results = auth.verify_dkim(&signed).await.expect("signed");
        assert!(
            results.starts_with("mx.emailin.test; dkim=pass"),
            "{results}"
        );
        let mut tampered = signed.clone();
        let len = tampered.len();
        tampered[len - 3] = b'X';
        let results = auth.verify_dkim(&tampered).await.expect("signed");
        assert!(!results.contains("dkim=pass"), "{results}");
        let unsigned = message("Ann <ann@good.test>", None);
        assert_eq!(auth.verify_dkim(&unsigned).await, None);
    }

    #[tokio::test]
    async fn names_a_static_resolver_does_not_list_do_not_exist() {
        let auth = Authenticator::new(&settings(&[]), "mx.emailin.test").unwrap();
        let raw = message("Ann <ann@nowhere.test>", None);
        let results = auth
            .verify(
                &raw,
                CLIENT.parse().unwrap(),
                "nowhere.test",
                "ann@nowhere.test",
            )
            .await;
        assert!(
            results.contains("spf=none") && results.contains("dmarc=none"),
            "{results}"
        );
    }

    #[tokio::test]
    async fn lookups_that_cannot_be_answered_are_temperror_not_fail() {
        // A resolver with no server to ask: every lookup is a DNS error.
        let mut auth = Authenticator::new(&settings(&[]), "mx.emailin.test").unwrap();
        auth.static_only = false;
        let raw = message("Ann <ann@nowhere.test>", None);
        let results = auth
            .verify(
                &raw,
                CLIENT.parse().unwrap(),
                "nowhere.test",
                "ann@nowhere.test",
            )
            .await;
        assert!(results.contains("spf=temperror"), "{results}");
        assert!(results.contains("dmarc=temperror"), "{results}");
        assert_eq!(
            dmarc_verdict(&results, "mx.emailin.test"),
            Some(Dmarc::Other)
        );
    }

    #[test]
    fn trusted_networks_skip_checks() {
        let auth = Authenticator::new(&settings(&[]), "h").unwrap();
        assert!(auth.is_trusted("127.0.0.1".parse().unwrap()));
        assert!(!auth.is_trusted(CLIENT.parse().unwrap()));
    }
}
