//! `/contacts` and `/contacts/{id}`: the people who wrote in, with their
//! records and their address's state (bounced, complained).

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, Nav, display_name, when};
use super::session::Viewer;
use super::{PageError, PageResult, escape_query};
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
    }
}

/// `GET /contacts/{id}`.
pub async fn page(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> PageResult<Markup> {
    let missing = PageError::NotFound("There is no such contact.");
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such contact."))?;
    let detail = state.store.get_contact(id).await?.ok_or(missing)?;
    let c = &detail.contact;
    let body = html! {
        p.crumbs { a href="/contacts" { "Contacts" } }
        h1 { (display_name(&c.name, &c.email)) }
        p.mono { (c.email) " " (state_badges(c)) }
        h2 { "Records" }
        (records_table(&detail.records))
    };
    Ok(layout::page(
        &viewer,
        Nav::Contacts,
        display_name(&c.name, &c.email),
        body,
    ))
}

fn records_table(records: &[RecordView]) -> Markup {
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
