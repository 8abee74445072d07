//! `/admin/domains`: the domains mail is sent from, each with its SPF,
//! DKIM and DMARC check (what `emailin check-domain` prints), marked red
//! while unverified; and the forwarding check of each alias with a team
//! address (what `emailin check-forwarding` does).

use super::*;
use crate::auth::{Check, CheckStatus, DomainReport};
use crate::outbound::forwarding::{Arrival, Probe, find_arrival, send_probe};

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
    domains_page(&state, &viewer, q.notice()).await
}

async fn domains_page(state: &ApiState, viewer: &Viewer, n: Notice) -> PageResult<Markup> {
    let checks = &state.outbound.domains;
    let aliases = state.store.list_aliases(None, None, 500).await?.items;
    let names = sending_domains(state).await?;
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
        (notice(&n))
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
            (csrf(viewer))
            button type="submit" { "Check again" }
        }
        p.muted { "The same from the command line: " code { "emailin check-domain DOMAIN" } }
        (forwarding_section(state, viewer, &aliases).await?)
    };
    Ok(layout::page(viewer, Nav::Domains, "Sending domains", body))
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

/// The forwarding check of each enabled alias that has a team address.
async fn forwarding_section(
    state: &ApiState,
    viewer: &Viewer,
    aliases: &[AliasConfig],
) -> PageResult<Markup> {
    let teams: Vec<&AliasConfig> = aliases
        .iter()
        .filter(|a| a.enabled && !a.also.is_empty())
        .collect();
    let mut rows = Vec::new();
    for a in &teams {
        rows.push((a, forwarding_state(state, &a.address).await?));
    }
    Ok(html! {
        h2 #forwarding { "Forwarding to aliases" }
        p.muted { "A team mailbox that forwards to an alias (the alias's other addresses): a test message goes to the team address through the relay, and shows here when it arrives through the alias or a polled IMAP account, with the headers that routed it. It becomes no record." }
        @if teams.is_empty() {
            p.empty { "No alias has a team address (Aliases → other addresses)." }
        } @else {
            table.list.forwarding {
                thead { tr { th { "Alias" } th { "Team address" } th { "Last check" } th { "" } } }
                tbody {
                    @for (a, markup) in &rows {
                        tr {
                            td.mono { (a.address) }
                            td.mono { (a.also.join(", ")) }
                            td { (markup) }
                            td {
                                form method="post" action="/admin/domains/forwarding" {
                                    (csrf(viewer))
                                    input type="hidden" name="alias" value=(a.address);
                                    button type="submit" disabled[!state.outbound.enabled] { "Send a test message" }
                                }
                            }
                        }
                    }
                }
            }
            p.muted { "From the command line: " code { "emailin check-forwarding ALIAS" } }
        }
    })
}

/// The last check of `alias`: waiting (the cell asks again every two
/// seconds), arrived, or never run.
async fn forwarding_state(state: &ApiState, alias: &str) -> PageResult<Markup> {
    let Some(probe) = state.outbound.probes.latest(alias) else {
        return Ok(html! { span.muted { "Not checked yet." } });
    };
    let arrival = find_arrival(state.store.as_ref(), &probe, &mut Default::default()).await?;
    Ok(forwarding_cell(&probe, arrival.as_ref()))
}

fn forwarding_cell(probe: &Probe, arrival: Option<&Arrival>) -> Markup {
    match arrival {
        Some(a) => html! {
            div.forwarding-result {
                span.badge.sent { "✓ Arrived" }
                " after " (format!("{:.1}", a.after_secs)) " s through " strong { (a.source) }
                " for " span.mono { (a.rcpt_to.join(", ")) }
                details {
                    summary { "Headers that routed it" }
                    dl.headers {
                        @for (name, value) in &a.headers { dt { (name) } dd.mono { (value) } }
                    }
                }
            }
        },
        None => {
            let waited = (chrono::Utc::now() - probe.sent_at).num_seconds();
            let source = format!(
                "/admin/domains/forwarding?alias={}",
                escape_query(&probe.alias)
            );
            html! {
                div.forwarding-result hx-get=(source) hx-trigger="every 2s" hx-swap="outerHTML" {
                    @if waited > 300 {
                        span.badge.failed { "✗ Not arrived" }
                        " in " (waited) " s: check that " span.mono { (probe.to) } " forwards to " span.mono { (probe.alias) } "."
                    } @else {
                        span.badge.warn { "Waiting" }
                        " sent " (when(probe.sent_at)) " to " span.mono { (probe.to) } " (relay: " (probe.relay_answer) ")"
                    }
                }
            }
        }
    }
}

/// The alias a forwarding check is about (form and query).
#[derive(Debug, Deserialize)]
pub struct ForwardingForm {
    alias: String,
}

/// Sends a test message for an alias.
pub(super) async fn check_forwarding(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<ForwardingForm>,
) -> PageResult {
    let alias = state
        .store
        .list_aliases(None, Some(&form.alias), 1)
        .await?
        .items
        .into_iter()
        .next()
        .ok_or(PageError::NotFound("There is no such alias."))?;
    match send_probe(&state.outbound, &alias, None).await {
        Ok(probe) => {
            state.outbound.probes.remember(probe);
            Ok(see_other("/admin/domains?done=sent#forwarding"))
        }
        Err(e) => {
            let n = Notice {
                error: Some(e.to_string()),
                ..Notice::default()
            };
            let page = domains_page(&state, &viewer, n).await?;
            Ok((StatusCode::CONFLICT, page).into_response())
        }
    }
}

/// The forwarding cell of one alias (polled while waiting).
pub(super) async fn forwarding_fragment(
    State(state): State<ApiState>,
    AdminViewer(_viewer): AdminViewer,
    Query(q): Query<ForwardingForm>,
) -> PageResult<Markup> {
    forwarding_state(&state, &q.alias).await
}
