//! Commands about the mail accounts and domains the service uses: OAuth
//! 2.0 sign-in, the sending-domain check, the forwarding check.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Settings;
use crate::oauth::{OUTBOUND, Tokens};
use crate::store::{OAuthStore, Store};

/// `emailin oauth login --account NAME`: the device code flow for one
/// `grant = "refresh_token"` account (or `outbound`), printing to `out`.
///
/// # Errors
/// No such OAuth account, or the flow failed (the message says why).
pub async fn oauth_login(
    settings: &Settings,
    store: Arc<dyn Store>,
    account: &str,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let tokens = Tokens::new(settings, &(store as Arc<dyn OAuthStore>))?;
    let Some(source) = tokens.named(account) else {
        let mut known: Vec<&str> = tokens.imap.keys().map(String::as_str).collect();
        if tokens.outbound.is_some() {
            known.push(OUTBOUND);
        }
        anyhow::bail!(
            "no account {account:?} with auth = \"oauth2\" (those with it: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    crate::oauth::device::login(source, out)
        .await
        .with_context(|| format!("oauth login for {account:?}"))
}

/// `emailin check-domain DOMAIN`: each check with what to publish.
///
/// # Errors
/// No resolver or an unreadable DKIM key; the domain is not verified.
pub async fn check_domain(
    settings: &Settings,
    domain: &str,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    let auth = crate::auth::Authenticator::new(&settings.auth, &settings.smtp.hostname)
        .map_err(anyhow::Error::msg)?;
    let dkim = crate::outbound::dkim::Dkim::load(&settings.outbound).map_err(anyhow::Error::msg)?;
    let checks = crate::outbound::domains::DomainChecks::new(
        &settings.outbound,
        Some(Arc::new(auth)),
        dkim.as_ref(),
    );
    let Some(report) = checks.check(domain).await else {
        anyhow::bail!("no resolver to check with");
    };
    let relay = match settings.outbound.host.trim() {
        "" => "no relay".to_string(),
        host => format!("relay {host}"),
    };
    let key = dkim.as_ref().map_or("no DKIM key".to_string(), |d| {
        format!("DKIM {}", d.record_name())
    });
    writeln!(out, "{} ({relay}, {key})", report.domain)?;
    for (name, check) in [
        ("SPF", &report.spf),
        ("DKIM", &report.dkim),
        ("DMARC", &report.dmarc),
    ] {
        let word = match check.status {
            crate::auth::CheckStatus::Pass => "pass",
            crate::auth::CheckStatus::Fail => "FAIL",
            crate::auth::CheckStatus::Unknown => "unknown",
        };
        writeln!(out, "  {name:<6} {word:<8} {}", check.detail)?;
        if let Some(publish) = &check.publish {
            writeln!(out, "  {:<6} {:<8} publish: {publish}", "", "")?;
        }
    }
    if report.verified() {
        writeln!(out, "{} is verified", report.domain)?;
        Ok(())
    } else {
        anyhow::bail!(
            "{} is not verified: mail from it may be marked as spam",
            report.domain
        )
    }
}

/// What `emailin check-forwarding` was asked.
#[derive(Debug, Clone, Copy)]
pub struct ForwardingCheck<'a> {
    pub alias: &'a str,
    pub to: Option<&'a str>,
    pub wait: std::time::Duration,
}

/// `emailin check-forwarding ALIAS`: sends the test message and waits for
/// it, printing where it came in and the headers that routed it.
///
/// # Errors
/// Unknown alias, no relay, a refused message, or no arrival in time.
pub async fn check_forwarding(
    settings: &Settings,
    store: Arc<dyn Store>,
    check: ForwardingCheck<'_>,
    out: &mut (dyn std::io::Write + Send),
) -> anyhow::Result<()> {
    use crate::outbound::forwarding::{find_arrival, send_probe};
    let Some(alias) = store
        .list_aliases(None, Some(check.alias), 1)
        .await?
        .items
        .into_iter()
        .next()
    else {
        anyhow::bail!("no alias {:?}", check.alias);
    };
    let policy = crate::ingest::Policy::load(settings, store.as_ref()).await?;
    let dkim = crate::outbound::dkim::Dkim::load(&settings.outbound).map_err(anyhow::Error::msg)?;
    let tokens = Tokens::new(settings, &(Arc::clone(&store) as Arc<dyn OAuthStore>))?;
    let outbound = crate::outbound::Outbound::new(
        settings,
        policy.reply_key.clone(),
        dkim,
        tokens.outbound.clone(),
        None,
    );
    let probe = send_probe(&outbound, &alias, check.to).await?;
    writeln!(
        out,
        "sent {} to {} through {} ({}); waiting up to {} s for it to arrive through {}",
        probe.message_id,
        probe.to,
        settings.outbound.host,
        probe.relay_answer,
        check.wait.as_secs(),
        alias.address
    )?;
    out.flush()?;
    let deadline = tokio::time::Instant::now() + check.wait;
    let mut looked_at = std::collections::HashSet::new();
    loop {
        if let Some(arrival) = find_arrival(store.as_ref(), &probe, &mut looked_at).await? {
            writeln!(
                out,
                "arrived after {:.1} s through {} for {}",
                arrival.after_secs,
                arrival.source,
                arrival.rcpt_to.join(", ")
            )?;
            for (name, value) in &arrival.headers {
                writeln!(out, "  {name}: {value}")?;
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the test message did not arrive within {} s: check that {} forwards to {} (or that its IMAP account is polled) and that the service is running",
                check.wait.as_secs(),
                probe.to,
                alias.address
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
