//! `/admin/webhooks`: the webhooks, each with its latest deliveries and the
//! receiver's answers; add one (its secret is shown once), remove one,
//! send failed deliveries again.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use maud::{Markup, html};
use uuid::Uuid;

use super::layout::{self, Nav, csrf, when};
use super::session::{AdminViewer, Viewer};
use super::{PageError, PageResult, see_other};
use crate::api::webhooks::{NewWebhook, add, all, replay};
use crate::api::{ApiError, ApiState};
use crate::webhooks::EVENTS;

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/webhooks", get(list).post(create))
        .route("/admin/webhooks/{id}/remove", post(remove))
        .route("/admin/webhooks/{id}/replay", post(replay_failed))
}

/// Deliveries shown per webhook.
const SHOWN: i64 = 20;

async fn list(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
) -> PageResult<Markup> {
    render(&state, &viewer, None, None).await
}

async fn render(
    state: &ApiState,
    viewer: &Viewer,
    error: Option<&str>,
    secret: Option<&str>,
) -> PageResult<Markup> {
    let hooks = all(state).await?;
    let mut sections = Vec::new();
    for hook in &hooks {
        sections.push((hook, state.store.list_deliveries(hook.id, SHOWN).await?));
    }
    let body = html! {
        h1 { "Webhooks" }
        p.muted {
            "Other systems are told about events as signed JSON posts (Standard Webhooks). "
            "Failed deliveries are retried with growing waits; a record's events arrive in order."
        }
        (layout::notice(error, None))
        @if let Some(secret) = secret {
            div.notice.done role="status" {
                p { "The webhook is added. Its signing secret, shown only now:" }
                p { code #new-secret { (secret) } }
            }
        }
        @if hooks.is_empty() {
            p.empty { "No webhooks yet." }
        }
        @for (hook, deliveries) in &sections {
            section.panel aria-label=(hook.url) {
                h2.mono { (hook.url) }
                p.muted {
                    @if hook.events.is_empty() { "Every event" } @else { (hook.events.join(", ")) }
                    " · " @if hook.source == "config" { "from the configuration file" } @else { "added here" }
                }
                div.actions {
                    form method="post" action=(format!("/admin/webhooks/{}/replay", hook.id)) {
                        (csrf(viewer))
                        button type="submit" disabled[!deliveries.iter().any(|d| d.status == "failed")] { "Send failed deliveries again" }
                    }
                    @if hook.source == "api" {
                        form method="post" action=(format!("/admin/webhooks/{}/remove", hook.id)) {
                            (csrf(viewer))
                            button.danger type="submit" { "Remove" }
                        }
                    }
                }
                @if deliveries.is_empty() {
                    p.empty { "No deliveries yet." }
                } @else {
                    table.list {
                        thead { tr { th { "Event" } th { "State" } th { "Attempts" } th { "Answer" } th { "Made" } } }
                        tbody {
                            @for d in deliveries {
                                tr {
                                    td { (d.kind) br; span.mono.muted { (d.id) } }
                                    td { span.badge.(d.status) { (d.status) } }
                                    td { (d.attempts) }
                                    td {
                                        @if let Some(code) = d.last_status { (code) " " }
                                        span.muted { (d.last_response.as_deref().unwrap_or("")) }
                                    }
                                    td { (when(d.created_at)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a webhook" }
        form.stacked method="post" action="/admin/webhooks" {
            (csrf(viewer))
            label for="hook-url" { "URL (https://, or http:// to this machine)" }
            input #hook-url type="text" name="url" required placeholder="https://crm.example.com/hooks/emailin";
            fieldset {
                legend { "Events (none ticked: every event)" }
                @for e in EVENTS {
                    label.check { input type="checkbox" name="events" value=(e); " " (e) }
                }
            }
            button.primary type="submit" { "Add webhook" }
        }
    };
    Ok(layout::page(viewer, Nav::Webhooks, "Webhooks", body))
}

async fn create(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    body: axum::body::Bytes,
) -> PageResult {
    let mut url = String::new();
    let mut events = Vec::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match k.as_ref() {
            "url" => url = v.into_owned(),
            "events" => events.push(v.into_owned()),
            _ => {}
        }
    }
    let new = NewWebhook {
        url,
        secret: None,
        events,
    };
    match add(&state, new).await {
        Ok((_, secret)) => {
            let page = render(&state, &viewer, None, Some(&secret)).await?;
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(err) => {
            let (status, _, message) = err.parts();
            let page = render(&state, &viewer, Some(&message), None).await?;
            Ok((status, page).into_response())
        }
    }
}

fn hook_id(id: &str) -> PageResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| PageError::NotFound("There is no such webhook."))
}

async fn remove(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    if !state.store.remove_webhook(hook_id(&id)?).await? {
        return Err(PageError::NotFound("There is no such webhook."));
    }
    Ok(see_other("/admin/webhooks"))
}

async fn replay_failed(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    match replay(&state, hook_id(&id)?, None).await {
        Ok(_) => Ok(see_other("/admin/webhooks")),
        Err(ApiError::NotFound(_)) => Err(PageError::NotFound("There is no such webhook.")),
        Err(e) => Err(e.into()),
    }
}
