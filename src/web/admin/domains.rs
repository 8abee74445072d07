//! `/admin/domains`: the domains mail is sent from, each with its SPF,
//! DKIM and DMARC check (what `emailin check-domain` prints), marked red
//! while unverified.

use super::*;
use crate::auth::{Check, CheckStatus, DomainReport};

/// The domains replies and the service's own mail are sent from: those of
/// the enabled aliases and of `system_from`.
pub(super) async fn sending_domains(state: &ApiState) -> PageResult<Vec<String>> {
    let aliases = state.store.list_aliases(None, None, 500).await?.items;
    let mut domains: Vec<String> = aliases
        .iter()
        .filter(|a| a.enabled)
        .map(|a| a.address.as_str())
        .chain([state.outbound.system_from.as_str()])
        .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
        .collect();
    domains.sort();
    domains.dedup();
    Ok(domains)
}

pub(super) async fn domains(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    let checks = &state.outbound.domains;
    let names = sending_domains(&state).await?;
    let reports = futures::future::join_all(names.iter().map(|d| async move {
        match checks.report(d) {
            Some(r) => Some(r),
            None => checks.check(d).await,
        }
    }))
    .await;
    let unverified = reports.iter().flatten().filter(|r| !r.verified()).count();
    let body = html! {
        h1 { "Sending domains" }
        p.muted { "Replies go out from each alias's address. A domain is verified when its SPF lets the relay send, the DKIM key the service signs with is published, and DMARC finds the sender aligned with the signature; mail from an unverified domain often lands in spam." }
        (notice(&q.notice()))
        @if !state.outbound.enabled {
            p.empty { "No relay is configured ([outbound] host): replies cannot be sent yet." }
        }
        @if unverified > 0 {
            p { span.badge.failed { "✗ " (unverified) " unverified" } }
        }
        table.list.domains {
            thead { tr { th { "Domain" } th { "Status" } th { "SPF" } th { "DKIM" } th { "DMARC" } } }
            tbody {
                @for (name, report) in names.iter().zip(&reports) {
                    tr {
                        td.mono { (name) }
                        @match report {
                            Some(r) => {
                                td { (mark(r)) br; span.muted { "checked " (when(r.checked_at)) } }
                                td { (check(&r.spf)) }
                                td { (check(&r.dkim)) }
                                td { (check(&r.dmarc)) }
                            }
                            None => { td colspan="4" { "Not checked: no DNS resolver." } }
                        }
                    }
                }
            }
        }
        form method="post" action="/admin/domains/check" {
            (csrf(&viewer))
            button type="submit" { "Check again" }
        }
        p.muted { "The same from the command line: " code { "emailin check-domain DOMAIN" } }
    };
    Ok(layout::page(&viewer, Nav::Domains, "Sending domains", body))
}

fn mark(r: &DomainReport) -> Markup {
    html! {
        @if r.verified() {
            span.badge.sent { "✓ Verified" }
        } @else {
            span.badge.failed title="Fix what is marked, publish the records shown, then check again." { "✗ Unverified" }
        }
    }
}

fn check(c: &Check) -> Markup {
    let (class, word) = match c.status {
        CheckStatus::Pass => ("badge sent", "pass"),
        CheckStatus::Fail => ("badge failed", "fail"),
        CheckStatus::Unknown => ("badge warn", "unknown"),
    };
    html! {
        span class=(class) { (word) }
        " " (c.detail)
        @if let Some(p) = &c.publish {
            br; span.muted { "Publish: " } code.publish { (p) }
        }
    }
}

/// Checks every sending domain again.
pub(super) async fn check_domains(
    State(state): State<ApiState>,
    AdminViewer(_viewer): AdminViewer,
) -> PageResult {
    let names = sending_domains(&state).await?;
    let checks = &state.outbound.domains;
    futures::future::join_all(names.iter().map(|d| checks.check(d))).await;
    Ok(see_other("/admin/domains?done=checked"))
}
