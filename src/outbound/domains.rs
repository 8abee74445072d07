//! Sending domains: each domain mail is sent from is checked (SPF lets the
//! relay send, the DKIM key is published, DMARC aligns) before its first
//! message goes out, and again on request. An unverified domain is logged
//! and shown in red on the admin page; the mail still goes (a reply is never
//! held back for DNS).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::auth::{Authenticator, DomainReport, Sending};
use crate::config::OutboundSettings;

use super::dkim::Dkim;

/// The latest report of every domain checked in this process.
pub struct DomainChecks {
    auth: Option<Arc<Authenticator>>,
    relay_host: String,
    relay_port: u16,
    dkim: Option<(String, String, String)>,
    reports: Mutex<BTreeMap<String, DomainReport>>,
}

impl std::fmt::Debug for DomainChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainChecks")
            .field("relay_host", &self.relay_host)
            .finish_non_exhaustive()
    }
}

impl DomainChecks {
    /// `auth` is the resolver the checks use; without one nothing is checked.
    pub fn new(
        settings: &OutboundSettings,
        auth: Option<Arc<Authenticator>>,
        dkim: Option<&Dkim>,
    ) -> Self {
        Self {
            auth,
            relay_host: settings.host.trim().to_string(),
            relay_port: settings.port,
            dkim: dkim.map(|d| (d.domain().to_string(), d.selector().to_string(), d.record())),
            reports: Mutex::new(BTreeMap::new()),
        }
    }

    /// The relay and key, with the relay's addresses looked up now.
    async fn sending(&self) -> Sending {
        let relay_ips = if self.relay_host.is_empty() {
            Vec::new()
        } else {
            tokio::net::lookup_host((self.relay_host.as_str(), self.relay_port))
                .await
                .map(|addrs| {
                    let mut ips: Vec<_> = addrs.map(|a| a.ip()).collect();
                    ips.dedup();
                    ips
                })
                .unwrap_or_default()
        };
        Sending {
            relay_host: self.relay_host.clone(),
            relay_ips,
            dkim: self.dkim.clone(),
        }
    }

    /// Checks `domain` now and keeps the report; `None` without a resolver.
    pub async fn check(&self, domain: &str) -> Option<DomainReport> {
        let auth = self.auth.as_ref()?;
        let report = auth.check_domain(domain, &self.sending().await).await;
        if !report.verified() {
            tracing::warn!(
                domain = %report.domain,
                spf = %report.spf.detail,
                dkim = %report.dkim.detail,
                dmarc = %report.dmarc.detail,
                "sending_domain_unverified: mail from it may be marked as spam"
            );
        }
        if let Ok(mut reports) = self.reports.lock() {
            reports.insert(report.domain.clone(), report.clone());
        }
        Some(report)
    }

    /// Checks `domain` unless it was checked already (before its first mail).
    pub async fn check_once(&self, domain: &str) {
        let known = self
            .reports
            .lock()
            .map(|r| r.contains_key(&domain.to_ascii_lowercase()))
            .unwrap_or(true);
        if !known {
            self.check(domain).await;
        }
    }

    /// The latest report of `domain`, if it was checked.
    pub fn report(&self, domain: &str) -> Option<DomainReport> {
        self.reports
            .lock()
            .ok()
            .and_then(|r| r.get(&domain.to_ascii_lowercase()).cloned())
    }
}
