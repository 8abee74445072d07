//! Checking a sending domain before replies go out from it: does its SPF
//! record let the relay send, is the DKIM key we sign with the one
//! published at `selector._domainkey`, and does DMARC find `From` aligned
//! with the DKIM domain. Each answer says what to publish when it fails.
//! Lookups go through the same resolver (and `static_records`) as the
//! checks of received mail, under one deadline.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mail_auth::SpfResult;
use mail_auth::spf::verify::SpfParameters;
use serde::Serialize;

use super::{Authenticator, TxtCache, fqdn};

/// How one check came out.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Fail,
    /// Could not be told (no relay address, DNS failed).
    Unknown,
}

/// One check: its outcome, in words, and the record to publish if it failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub status: CheckStatus,
    pub detail: String,
    /// `NAME TXT "VALUE"` to publish, where that would fix it.
    pub publish: Option<String>,
}

impl Check {
    fn pass(detail: String) -> Self {
        Self {
            status: CheckStatus::Pass,
            detail,
            publish: None,
        }
    }
    fn fail(detail: String, publish: Option<String>) -> Self {
        Self {
            status: CheckStatus::Fail,
            detail,
            publish,
        }
    }
    fn unknown(detail: String) -> Self {
        Self {
            status: CheckStatus::Unknown,
            detail,
            publish: None,
        }
    }
}

/// The three checks of one domain.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DomainReport {
    pub domain: String,
    pub spf: Check,
    pub dkim: Check,
    pub dmarc: Check,
    pub checked_at: DateTime<Utc>,
}

impl DomainReport {
    /// Every check passed.
    pub fn verified(&self) -> bool {
        [&self.spf, &self.dkim, &self.dmarc]
            .iter()
            .all(|c| c.status == CheckStatus::Pass)
    }
}

/// What the service sends with: the relay and the DKIM key.
#[derive(Debug, Clone, Default)]
pub struct Sending {
    /// The relay's host name (empty: none configured).
    pub relay_host: String,
    /// The addresses the relay's name resolves to.
    pub relay_ips: Vec<IpAddr>,
    /// `(domain, selector, "v=DKIM1; k=…; p=…")` of the signing key.
    pub dkim: Option<(String, String, String)>,
}

/// Providers whose relays send from their own networks: their SPF
/// include, which a customer domain must carry (the relay's submission
/// address is not where the mail leaves from).
const PROVIDER_INCLUDES: &[(&str, &str)] = &[
    ("office365.com", "spf.protection.outlook.com"),
    ("outlook.com", "spf.protection.outlook.com"),
    ("gmail.com", "_spf.google.com"),
    ("google.com", "_spf.google.com"),
    ("googlemail.com", "_spf.google.com"),
];

impl Authenticator {
    /// Checks `domain` for mail sent as described by `sending`.
    pub async fn check_domain(&self, domain: &str, sending: &Sending) -> DomainReport {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        let work = async {
            (
                self.check_spf(&domain, sending).await,
                self.check_dkim(sending).await,
                self.check_dmarc(&domain, sending).await,
            )
        };
        let (spf, dkim, dmarc) = match self.bounded(work).await {
            Ok(checks) => checks,
            Err(why) => {
                let unknown = || Check::unknown(format!("DNS: {why}"));
                (unknown(), unknown(), unknown())
            }
        };
        DomainReport {
            domain,
            spf,
            dkim,
            dmarc,
            checked_at: Utc::now(),
        }
    }

    /// A TXT record's text: `Ok(None)` when the name has none.
    async fn txt_raw(&self, name: &str) -> Result<Option<String>, String> {
        if let Some(value) = self.static_raw.get(&fqdn(name)) {
            return Ok(Some(value.clone()));
        }
        if self.static_only {
            return Ok(None);
        }
        match self.resolver.txt_raw_lookup(name).await {
            Ok(bytes) if bytes.is_empty() => Ok(None),
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(_))) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn check_spf(&self, domain: &str, sending: &Sending) -> Check {
        let relay = sending.relay_host.trim().to_ascii_lowercase();
        if relay.is_empty() {
            return Check::unknown("no relay is configured ([outbound] host)".into());
        }
        if let Some((_, include)) = PROVIDER_INCLUDES
            .iter()
            .find(|(suffix, _)| relay == *suffix || relay.ends_with(&format!(".{suffix}")))
        {
            let record = match self.txt_raw(domain).await {
                Ok(r) => r.filter(|r| r.to_ascii_lowercase().starts_with("v=spf1")),
                Err(e) => return Check::unknown(format!("SPF lookup: {e}")),
            };
            let needle = format!("include:{include}");
            return match record {
                Some(r) if r.to_ascii_lowercase().contains(&needle) => {
                    Check::pass(format!("{domain}'s SPF includes {include} ({relay})"))
                }
                Some(r) => Check::fail(
                    format!(
                        "{domain}'s SPF ({r}) does not include {include}, where {relay} sends from"
                    ),
                    Some(format!(
                        "{domain} TXT \"v=spf1 {needle} -all\" (merged into the existing record)"
                    )),
                ),
                None => Check::fail(
                    format!("{domain} has no SPF record"),
                    Some(format!("{domain} TXT \"v=spf1 {needle} -all\"")),
                ),
            };
        }
        if sending.relay_ips.is_empty() {
            return Check::unknown(format!("the relay {relay} has no address here"));
        }
        let txt = TxtCache(self);
        let sender = format!("postmaster@{domain}");
        let host = self.hostname.as_str();
        let mechanisms: Vec<String> = sending
            .relay_ips
            .iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => format!("ip4:{v4}"),
                IpAddr::V6(v6) => format!("ip6:{v6}"),
            })
            .collect();
        let publish = Some(format!(
            "{domain} TXT \"v=spf1 {} -all\" (or the include your relay's provider documents)",
            mechanisms.join(" ")
        ));
        for ip in &sending.relay_ips {
            let params = SpfParameters::verify_mail_from(*ip, domain, host, &sender);
            let result = self.resolver.verify_spf(self.params(params, &txt)).await;
            match result.result() {
                SpfResult::Pass => continue,
                SpfResult::TempError => {
                    return Check::unknown(format!("SPF of {domain}: DNS error (temperror)"));
                }
                SpfResult::None => {
                    return Check::fail(format!("{domain} has no SPF record"), publish);
                }
                other => {
                    return Check::fail(
                        format!(
                            "{domain}'s SPF gives {} for the relay {relay} ({ip})",
                            spf_word(other)
                        ),
                        publish,
                    );
                }
            }
        }
        let ips: Vec<String> = sending.relay_ips.iter().map(IpAddr::to_string).collect();
        Check::pass(format!(
            "{domain}'s SPF passes for the relay {relay} ({})",
            ips.join(", ")
        ))
    }

    async fn check_dkim(&self, sending: &Sending) -> Check {
        let Some((domain, selector, record)) = &sending.dkim else {
            return Check::fail(
                "replies are not signed: set [outbound] dkim_domain, dkim_selector and dkim_private_key_file".into(),
                None,
            );
        };
        let name = format!("{selector}._domainkey.{domain}");
        let publish = Some(format!("{name} TXT \"{record}\""));
        let published = match self.txt_raw(&name).await {
            Ok(Some(p)) => p,
            Ok(None) => return Check::fail(format!("no DKIM key is published at {name}"), publish),
            Err(e) => return Check::unknown(format!("DKIM lookup of {name}: {e}")),
        };
        match (tag(&published, "p"), tag(record, "p")) {
            (Some(theirs), Some(ours)) if theirs == ours => {
                Check::pass(format!("the key at {name} is the signing key"))
            }
            (Some(theirs), _) if theirs.is_empty() => Check::fail(
                format!("the key at {name} is revoked (p= is empty)"),
                publish,
            ),
            _ => Check::fail(format!("the key at {name} is not the signing key"), publish),
        }
    }

    async fn check_dmarc(&self, domain: &str, sending: &Sending) -> Check {
        // The record of the domain, else of the nearest parent that has one.
        let mut at = domain.to_string();
        let record = loop {
            match self.txt_raw(&format!("_dmarc.{at}")).await {
                Ok(Some(r)) if r.to_ascii_uppercase().starts_with("V=DMARC1") => {
                    break Some((at, r));
                }
                Ok(_) => {}
                Err(e) => return Check::unknown(format!("DMARC lookup: {e}")),
            }
            match at.split_once('.') {
                Some((_, parent)) if parent.contains('.') => at = parent.to_string(),
                _ => break None,
            }
        };
        let Some((owner, record)) = record else {
            return Check::fail(
                format!("{domain} has no DMARC record"),
                Some(format!(
                    "_dmarc.{domain} TXT \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\""
                )),
            );
        };
        let policy = tag(&record, "p").unwrap_or_default();
        let strict = tag(&record, "adkim").is_some_and(|a| a.eq_ignore_ascii_case("s"));
        let Some((d, _, _)) = &sending.dkim else {
            return Check::fail(
                format!(
                    "_dmarc.{owner} (p={policy}) needs a DKIM signature aligned with {domain}; replies are not signed"
                ),
                None,
            );
        };
        let aligned = if strict {
            d == domain
        } else {
            organizational(d) == organizational(domain)
        };
        let mode = if strict { "strict" } else { "relaxed" };
        if aligned {
            Check::pass(format!(
                "_dmarc.{owner} (p={policy}): From {domain} is aligned ({mode}) with DKIM d={d}"
            ))
        } else {
            Check::fail(
                format!(
                    "_dmarc.{owner} (p={policy}): From {domain} is not aligned ({mode}) with DKIM d={d}"
                ),
                Some(format!(
                    "sign as {domain}: [outbound] dkim_domain = \"{domain}\", with its key published"
                )),
            )
        }
    }
}

/// The organisational domain, for relaxed alignment: the last two labels,
/// or three under a two-letter country's second-level registry (`co.jp`,
/// `co.uk`, `com.au`).
fn organizational(domain: &str) -> &str {
    let labels: Vec<&str> = domain.rsplit('.').collect();
    let keep = match labels.as_slice() {
        [tld, second, _, ..]
            if tld.len() == 2
                && [
                    "co", "com", "ne", "net", "or", "org", "ac", "go", "gov", "edu",
                ]
                .contains(second) =>
        {
            3
        }
        _ => 2,
    };
    if labels.len() <= keep {
        return domain;
    }
    let cut: usize = labels[..keep].iter().map(|l| l.len() + 1).sum();
    &domain[domain.len() + 1 - cut..]
}

/// One `tag=value` of a DKIM or DMARC record, whitespace removed.
fn tag(record: &str, name: &str) -> Option<String> {
    record.split(';').find_map(|part| {
        let (k, v) = part.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.split_whitespace().collect::<String>())
    })
}

fn spf_word(result: SpfResult) -> &'static str {
    match result {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";

    fn checker(records: &[(&str, &str)]) -> Authenticator {
        Authenticator::new(&crate::auth::tests::settings(records), "mx.emailin.test").unwrap()
    }

    fn sending(relay: &str, ip: &str, dkim_domain: &str) -> Sending {
        Sending {
            relay_host: relay.into(),
            relay_ips: vec![ip.parse().unwrap()],
            dkim: Some((dkim_domain.into(), "mail".into(), OURS.into())),
        }
    }

    #[tokio::test]
    async fn a_domain_that_publishes_everything_is_verified() {
        let a = checker(&[
            ("acme.test", "v=spf1 ip4:192.0.2.0/24 -all"),
            ("mail._domainkey.acme.test", OURS),
            ("_dmarc.acme.test", "v=DMARC1; p=reject"),
        ]);
        let r = a
            .check_domain(
                "acme.test",
                &sending("relay.acme.test", "192.0.2.7", "acme.test"),
            )
            .await;
        assert!(r.verified(), "{r:?}");
        assert!(r.spf.detail.contains("192.0.2.7"), "{}", r.spf.detail);
        assert!(r.dmarc.detail.contains("p=reject"), "{}", r.dmarc.detail);
    }

    #[tokio::test]
    async fn each_failure_says_what_to_publish() {
        let a = checker(&[
            ("acme.test", "v=spf1 ip4:198.51.100.1 ~all"),
            (
                "mail._domainkey.acme.test",
                "v=DKIM1; k=ed25519; p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            ),
        ]);
        let r = a
            .check_domain(
                "acme.test",
                &sending("relay.acme.test", "192.0.2.7", "acme.test"),
            )
            .await;
        assert!(!r.verified());
        assert_eq!(r.spf.status, CheckStatus::Fail);
        assert!(r.spf.detail.contains("softfail"), "{}", r.spf.detail);
        assert!(r.spf.publish.as_deref().unwrap().contains("ip4:192.0.2.7"));
        assert_eq!(r.dkim.status, CheckStatus::Fail);
        assert!(r.dkim.detail.contains("not the signing key"));
        assert_eq!(
            r.dkim.publish.as_deref(),
            Some(format!("mail._domainkey.acme.test TXT \"{OURS}\"").as_str())
        );
        assert_eq!(r.dmarc.status, CheckStatus::Fail);
        assert!(
            r.dmarc
                .publish
                .as_deref()
                .unwrap()
                .starts_with("_dmarc.acme.test TXT")
        );
    }

    #[tokio::test]
    async fn alignment_follows_adkim_and_the_parent_record() {
        let records = [
            ("mail._domainkey.mail.acme.test", OURS),
            ("_dmarc.acme.test", "v=DMARC1; p=quarantine"),
        ];
        let a = checker(&records);
        // Relaxed: a subdomain's signature aligns with the organisation's From.
        let r = a
            .check_domain("acme.test", &sending("", "192.0.2.7", "mail.acme.test"))
            .await;
        assert_eq!(r.dmarc.status, CheckStatus::Pass, "{:?}", r.dmarc);
        assert_eq!(r.spf.status, CheckStatus::Unknown, "no relay: unknown");
        // The record of a parent domain applies to a subdomain's From.
        let r = a
            .check_domain("in.acme.test", &sending("", "192.0.2.7", "mail.acme.test"))
            .await;
        assert!(r.dmarc.detail.contains("_dmarc.acme.test"), "{:?}", r.dmarc);
        assert_eq!(
            r.dmarc.status,
            CheckStatus::Pass,
            "one organisation: aligned"
        );
        let r = a
            .check_domain("acme.test", &sending("", "192.0.2.7", "mail.other.test"))
            .await;
        assert_eq!(r.dmarc.status, CheckStatus::Fail, "another organisation");
        // Strict: only the same domain.
        let a = checker(&[
            ("mail._domainkey.mail.acme.test", OURS),
            ("_dmarc.acme.test", "v=DMARC1; p=reject; adkim=s"),
        ]);
        let r = a
            .check_domain("acme.test", &sending("", "192.0.2.7", "mail.acme.test"))
            .await;
        assert_eq!(r.dmarc.status, CheckStatus::Fail, "{:?}", r.dmarc);
        assert!(r.dmarc.detail.contains("strict"));
    }

    #[test]
    fn organisational_domains() {
        assert_eq!(organizational("mail.acme.test"), "acme.test");
        assert_eq!(organizational("acme.test"), "acme.test");
        assert_eq!(organizational("in.shop.example.co.jp"), "example.co.jp");
        assert_eq!(organizational("example.co.uk"), "example.co.uk");
        assert_eq!(organizational("localhost"), "localhost");
    }

    #[tokio::test]
    async fn a_provider_relay_needs_the_providers_include() {
        let a = checker(&[(
            "acme.test",
            "v=spf1 include:spf.protection.outlook.com -all",
        )]);
        let r = a
            .check_domain(
                "acme.test",
                &sending("smtp.office365.com", "192.0.2.7", "acme.test"),
            )
            .await;
        assert_eq!(r.spf.status, CheckStatus::Pass, "{:?}", r.spf);
        let r = a
            .check_domain(
                "acme.test",
                &sending("smtp.gmail.com", "192.0.2.7", "acme.test"),
            )
            .await;
        assert_eq!(r.spf.status, CheckStatus::Fail, "{:?}", r.spf);
        assert!(r.spf.publish.unwrap().contains("include:_spf.google.com"));
    }
}
