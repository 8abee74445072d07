//! `/contacts` and `/contacts/{id}`: the people who wrote in, with their
//! records and their address's state (bounced, complained, unsubscribed);
//! marking one unsubscribed, and erasing one (admins, with the address typed
//! to confirm).

use axum::Form;
use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, Nav, csrf, display_name, when};
use super::session::{AdminViewer, Viewer};
use super::{PageError, PageResult, escape_query, see_other};
use crate::api::ApiState;
use crate::domain::limits;
use crate::store::{ContactFilter, ContactView, RecordView};

const PAGE: i64 = 50;

#[derive(Debug, Deserialize)]
pub struct ContactsQuery {
    q: Option<String>,
    after: Option<Uuid>,
}

/// `GET /contacts`: search by name or address, 50 a page.
pub async fn list(
    State(state): State<ApiState>,
    viewer: Viewer,
    Query(query): Query<ContactsQuery>,
) -> PageResult<Markup> {
    let q = query
        .q
        .map(|q| {
            q.trim()
                .chars()
                .take(limits::FILTER_CHARS)
                .collect::<String>()
        })
        .filter(|q| !q.is_empty());
    let page = state
        .store
        .list_contacts(&ContactFilter {
            q: q.clone(),
            email: None,
            cursor: query.after,
            limit: PAGE,
        })
        .await?;
    let next = page
        .next_cursor
        .as_ref()
        .and(page.items.last())
        .map(|c| match &q {
            Some(q) => format!("/contacts?q={}&after={}", escape_query(q), c.id),
            None => format!("/contacts?after={}", c.id),
        });
    let body = html! {
        h1 { "Contacts" }
        form.filters method="get" action="/contacts" role="search" {
            label for="contact-q" .visually-hidden { "Name or address" }
            input #contact-q type="search" name="q" value=[q.as_deref()] placeholder="Name or address";
            button type="submit" { "Search" }
        }
        @if page.items.is_empty() {
            p.empty { "No contacts found." }
        } @else {
            table.list {
                thead { tr { th { "Name" } th { "Address" } th { "State" } th { "Since" } } }
                tbody {
                    @for c in &page.items {
                        tr {
                            td { a href=(format!("/contacts/{}", c.id)) { (display_name(&c.name, &c.email)) } }
                            td.mono { (c.email) }
                            td { (state_badges(c)) }
                            td { (when(c.created_at)) }
                        }
                    }
                }
            }
        }
        @if let Some(next) = next {
            p { a href=(next) { "Next page" } }
        }
    };
    Ok(layout::page(&viewer, Nav::Contacts, "Contacts", body))
}

fn state_badges(c: &ContactView) -> Markup {
    html! {
        @if let Some(status) = &c.bounce_status {
            span.badge.warn title=[c.bounced_at.map(|t| t.to_rfc3339())] { "bounced " (status) }
        } @else if c.bounced_at.is_some() {
            span.badge.warn { "bounced" }
        }
        @if c.complained_at.is_some() {
            " " span.badge.warn { "complained" }
        }
        @if c.unsubscribed_at.is_some() {
            " " span.badge.warn title=[c.unsubscribed_at.map(|t| t.to_rfc3339())] { "unsubscribed" }
        }
        @if c.erased_at.is_some() {
            " " span.badge { "erased" }
        }
    }
}

/// `GET /contacts/{id}`.
pub async fn page(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult<Markup> {
    show(&state, &viewer, contact_id(&id)?, None).await
}

fn contact_id(raw: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| PageError::NotFound("There is no such contact."))
}

async fn show(
    state: &ApiState,
    viewer: &Viewer,
    id: Uuid,
    problem: Option<&str>,
) -> PageResult<Markup> {
    let missing = PageError::NotFound("There is no such contact.");
    let detail = state.store.get_contact(id).await?.ok_or(missing)?;
    let c = &detail.contact;
    let form_action = |what: &str| format!("/contacts/{id}/{what}");
    let body = html! {
        p.crumbs { a href="/contacts" { "Contacts" } }
        h1 { (display_name(&c.name, &c.email)) }
        p.mono { (c.email) " " (state_badges(c)) }
        @if let Some(problem) = problem {
            p.notice.error role="alert" { (problem) }
        }
        @if let Some(at) = c.erased_at {
            p.notice { "This contact's mail was erased on " (when(at)) ". Their records stay, without their messages." }
        } @else {
            form.inline method="post" action=(form_action("unsubscribe")) {
                (csrf(viewer))
                @if c.unsubscribed_at.is_some() {
                    input type="hidden" name="unsubscribed" value="0";
                    button type="submit" { "They may get mail again" }
                    " " span.muted { "Replies to them now need to be forced." }
                } @else {
                    input type="hidden" name="unsubscribed" value="1";
                    button type="submit" { "Mark unsubscribed" }
                    " " span.muted { "They asked for no more mail: replies will need to be forced." }
                }
            }
        }
        h2 { "Records" }
        (records_table(&detail.records))
        @if viewer.is_admin() && c.erased_at.is_none() {
            details.danger {
                summary { "Erase this contact…" }
                p { "Removes their raw mail, message texts, subjects and attachments everywhere, for good. "
                    "Their records stay, anonymised, with an event saying who erased them. This cannot be undone." }
                form.stacked method="post" action=(form_action("erase")) {
                    (csrf(viewer))
                    label for="erase-confirm" { "Type the address " strong { (c.email) } " to confirm" }
                    input #erase-confirm type="text" name="confirm" autocomplete="off" required;
                    button.danger type="submit" { "Erase for good" }
                }
            }
        }
    };
    Ok(layout::page(
        viewer,
        Nav::Contacts,
        display_name(&c.name, &c.email),
        body,
    ))
}

#[derive(Debug, Deserialize)]
pub struct UnsubscribeForm {
    unsubscribed: String,
}

/// `POST /contacts/{id}/unsubscribe`.
pub async fn unsubscribe(
    State(state): State<ApiState>,
    _: Viewer,
    Path(id): Path<String>,
    Form(form): Form<UnsubscribeForm>,
) -> PageResult {
    let id = contact_id(&id)?;
    state
        .store
        .set_unsubscribed(id, form.unsubscribed == "1")
        .await?;
    Ok(see_other(&format!("/contacts/{id}")))
}

#[derive(Debug, Deserialize)]
pub struct EraseForm {
    confirm: String,
}

/// `POST /contacts/{id}/erase` (admins): only with the address typed.
pub async fn erase(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<EraseForm>,
) -> PageResult {
    use axum::response::IntoResponse;
    let id = contact_id(&id)?;
    let contact = state
        .store
        .get_contact(id)
        .await?
        .ok_or(PageError::NotFound("There is no such contact."))?
        .contact;
    if !form.confirm.trim().eq_ignore_ascii_case(&contact.email) {
        let page = show(
            &state,
            &viewer,
            id,
            Some("The address typed does not match: nothing was erased."),
        )
        .await?;
        return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
    }
    crate::api::contacts::erase(&state, id, &viewer.actor()).await?;
    Ok(see_other(&format!("/contacts/{id}")))
}

pub(super) fn records_table(records: &[RecordView]) -> Markup {
    html! {
        @if records.is_empty() {
            p.empty { "No records." }
        } @else {
            table.list {
                thead { tr { th { "Record" } th { "Pipeline" } th { "Stage" } th { "Owner" } th { "Updated" } } }
                tbody {
                    @for r in records {
                        tr {
                            td { a href=(format!("/records/{}", r.number)) { (r.reference) " " (r.title) } }
                            td { (r.pipeline) }
                            td { (r.stage) }
                            td { (r.owner.as_deref().unwrap_or("unassigned")) }
                            td { (when(r.updated_at)) }
                        }
                    }
                }
            }
        }
    }
}
