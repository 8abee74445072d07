//! `/admin/inbound`: stored mail by status, with release, drop, raw bytes
//! and processing failed mail again; the IMAP mailboxes' states.

use super::*;

pub(super) const INBOUND_TABS: [(&str, &str); 5] = [
    ("quarantined", "Quarantined"),
    ("failed", "Failed"),
    ("pending", "Pending"),
    ("ignored", "Ignored"),
    ("processed", "Processed"),
];

#[derive(Debug, Deserialize)]
pub struct InboundQuery {
    status: Option<String>,
    done: Option<String>,
}

pub(super) async fn inbound(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<InboundQuery>,
) -> PageResult<Markup> {
    let status = q.status.unwrap_or_else(|| "quarantined".to_string());
    let notice = DoneQuery { done: q.done }.notice();
    inbound_page(&state, &viewer, &status, notice).await
}

pub(super) async fn inbound_page(
    state: &ApiState,
    viewer: &Viewer,
    status: &str,
    n: Notice,
) -> PageResult<Markup> {
    let status = INBOUND_TABS
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("quarantined", |(s, _)| *s);
    let page = state
        .store
        .list_inbound(&InboundFilter {
            status: Some(status.to_string()),
            cursor: None,
            limit: 200,
        })
        .await?;
    let counts = state.store.inbound_counts().await?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let mailboxes = state.imap.snapshot();
    let body = html! {
        h1 { "Inbound mail" }
        p.muted { "Every message the service accepted is stored here first. Quarantined mail waits for you; failed mail can be processed again." }
        (notice(&n))
        nav.tabs aria-label="Status" {
            @for (key, label) in INBOUND_TABS {
                a href=(format!("/admin/inbound?status={key}")) aria-current=[(key == status).then_some("page")] {
                    (label) " " span.count { (count(key)) }
                }
            }
        }
        @if status == "failed" && count("failed") > 0 {
            form method="post" action="/admin/inbound/replay" {
                (csrf(viewer))
                button type="submit" { "Process every failed message again" }
            }
        }
        @if page.items.is_empty() {
            p.empty { "Nothing here." }
        } @else {
            table.list {
                thead { tr { th { "Received" } th { "From" } th { "To" } th { "Source" } th { "Outcome" } @if status == "quarantined" { th { "Action" } } } }
                tbody {
                    @for m in &page.items {
                        tr {
                            td { (when(m.received_at)) }
                            td.mono { (m.mail_from.as_deref().unwrap_or("<>")) }
                            td.mono { (m.rcpt_to.join(", ")) }
                            td { (m.source) br; a href=(format!("/admin/inbound/{}/raw", m.id)) download { "raw .eml" } }
                            td {
                                (m.outcome.as_deref().unwrap_or(""))
                                @if let Some(e) = &m.error { br; span.muted { (e) } }
                            }
                            @if status == "quarantined" {
                                td.actions {
                                    form method="post" action=(format!("/admin/inbound/{}/release", m.id)) {
                                        (csrf(viewer)) button type="submit" { "Release" }
                                    }
                                    form method="post" action=(format!("/admin/inbound/{}/drop", m.id)) {
                                        (csrf(viewer)) button.danger type="submit" { "Drop" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        @if !mailboxes.is_empty() {
            h2 { "Polled mailboxes (IMAP)" }
            table.list {
                thead { tr { th { "Mailbox" } th { "Sign-in" } th { "State" } th { "Last UID" } th { "Stored" } th { "Last error" } th { "Updated" } } }
                tbody {
                    @for m in &mailboxes {
                        tr {
                            td.mono { (m.account) "/" (m.folder) }
                            td { (m.login) }
                            td { (serde_json::to_value(m.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                            td { (m.last_uid.map(|u| u.to_string()).unwrap_or_default()) }
                            td { (m.messages_stored) }
                            td { @if let Some(e) = &m.last_error { span.badge.warn { (e) } } }
                            td { (when(m.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(viewer, Nav::Inbound, "Inbound mail", body))
}

pub(super) fn inbound_id(id: &str) -> PageResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| PageError::NotFound("There is no such message."))
}

pub(super) async fn release_one(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let result = release(&state, inbound_id(&id)?).await;
    after(result, "/admin/inbound", "released", |n| {
        inbound_page(&state, &viewer, "quarantined", n)
    })
    .await
}

pub(super) async fn drop_one(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let result = drop_quarantined(&state, inbound_id(&id)?).await;
    after(result, "/admin/inbound", "dropped", |n| {
        inbound_page(&state, &viewer, "quarantined", n)
    })
    .await
}

/// The stored bytes of a message, as received, to download.
pub(super) async fn raw_one(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = inbound_id(&id)?;
    let raw = crate::api::inbound::raw_or_why(&state, id).await?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "message/rfc822".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.eml\""),
            ),
        ],
        raw,
    )
        .into_response())
}

pub(super) async fn replay(State(state): State<ApiState>, _: AdminViewer) -> PageResult {
    state.store.reset_for_replay(Some("failed"), None).await?;
    state.processor.notify_one();
    Ok(see_other("/admin/inbound?status=failed&done=replayed"))
}
