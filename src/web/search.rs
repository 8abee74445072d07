//! `/search?q=`: the records a search finds, best first, with the same
//! search as `GET /api/v1/records?q=`.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;

use super::contacts::records_table;
use super::layout::{self, Nav};
use super::session::Viewer;
use super::{PageResult, escape_query};
use crate::api::ApiState;
use crate::domain::limits;

const PAGE: i64 = 50;

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

pub async fn page(
    State(state): State<ApiState>,
    viewer: Viewer,
    Query(query): Query<SearchQuery>,
) -> PageResult<Markup> {
    let q = query.q.trim();
    let problem = limits::check_chars("q", q, limits::FILTER_CHARS).err();
    let page = match (&problem, q.is_empty()) {
        (None, false) => {
            Some(crate::api::records::search(&state, q, None, query.cursor.as_deref(), PAGE).await?)
        }
        _ => None,
    };
    let body = html! {
        h1 { "Search" }
        form.inline role="search" method="get" action="/search" {
            label for="search-q" { "Words in titles, messages, comments and contacts" }
            input #search-q type="search" name="q" value=(q) maxlength="200" autofocus;
            button.primary type="submit" { "Search" }
        }
        @if let Some(problem) = &problem {
            p.notice.error role="alert" { (problem) }
        }
        @if let Some(page) = &page {
            @if page.items.is_empty() {
                p.empty { "Nothing found for “" (q) "”." }
            } @else {
                (records_table(&page.items))
                @if let Some(next) = &page.next_cursor {
                    p { a href=(format!("/search?q={}&cursor={next}", escape_query(q))) { "More results" } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, Nav::Board, "Search", body))
}
