//! `/`: the board of a pipeline — a column per stage, a card per record —
//! with filters, and `/events`, the stream that tells open boards to
//! refresh their columns when records change.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures::Stream;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{self, Nav, display_name};
use super::session::Viewer;
use super::{PageResult, escape_query};
use crate::api::ApiState;
use crate::domain::limits;
use crate::store::{ListRequest, PipelineView, RecordFilter, RecordView, UserView};

/// The most records a board shows (the newest).
pub const BOARD_MAX: usize = 1000;
/// How often the event stream looks for changes.
const EVENTS_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Deserialize)]
pub struct BoardQuery {
    pipeline: Option<String>,
    owner: Option<String>,
    tag: Option<String>,
    q: Option<String>,
}

impl BoardQuery {
    fn cleaned(self) -> Self {
        let keep = |v: Option<String>| {
            v.map(|v| {
                v.trim()
                    .chars()
                    .take(limits::FILTER_CHARS)
                    .collect::<String>()
            })
            .filter(|v| !v.is_empty())
        };
        BoardQuery {
            pipeline: keep(self.pipeline),
            owner: keep(self.owner),
            tag: keep(self.tag),
            q: keep(self.q),
        }
    }

    fn query_string(&self, pipeline: &str) -> String {
        let mut parts = vec![format!("pipeline={}", escape_query(pipeline))];
        for (key, value) in [("owner", &self.owner), ("tag", &self.tag), ("q", &self.q)] {
            if let Some(v) = value {
                parts.push(format!("{key}={}", escape_query(v)));
            }
        }
        parts.join("&")
    }
}

/// Every item of a paged store listing, up to `max`.
pub async fn all_pipelines(state: &ApiState) -> crate::store::StoreResult<Vec<PipelineView>> {
    let page = state
        .store
        .list_pipelines(&ListRequest {
            cursor: None,
            limit: 500,
        })
        .await?;
    Ok(page.items)
}

pub async fn all_users(state: &ApiState) -> crate::store::StoreResult<Vec<UserView>> {
    crate::store::all_users(state.store.as_ref()).await
}

/// What a board shows.
struct Board {
    pipelines: Vec<PipelineView>,
    pipeline: Option<PipelineView>,
    records: Vec<RecordView>,
    unread: HashSet<Uuid>,
    users: Vec<UserView>,
    query: BoardQuery,
}

async fn load(state: &ApiState, viewer: &Viewer, query: BoardQuery) -> PageResult<Board> {
    let query = query.cleaned();
    let pipelines = all_pipelines(state).await?;
    let pipeline = match &query.pipeline {
        Some(name) => pipelines.iter().find(|p| &p.name == name).cloned(),
        None => pipelines.first().cloned(),
    };
    let mut records = Vec::new();
    if let Some(pipeline) = &pipeline {
        let mut cursor = None;
        while records.len() < BOARD_MAX {
            let filter = RecordFilter {
                pipeline: Some(pipeline.name.clone()),
                owner: query.owner.clone(),
                tag: query.tag.clone(),
                text: query.q.clone(),
                cursor,
                limit: (BOARD_MAX - records.len()).min(500) as i64,
                ..RecordFilter::default()
            };
            let page = state.store.list_records(&filter).await?;
            let last = page.items.last().map(|r| r.id);
            records.extend(page.items);
            match (page.next_cursor, last) {
                (Some(_), Some(last)) => cursor = Some(last),
                _ => break,
            }
        }
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let read: HashMap<Uuid, _> = state
        .store
        .read_marks(viewer.user.id, &ids)
        .await?
        .into_iter()
        .collect();
    let unread = records
        .iter()
        .filter(|r| read.get(&r.id).is_none_or(|at| r.updated_at > *at))
        .map(|r| r.id)
        .collect();
    Ok(Board {
        pipelines,
        pipeline,
        records,
        unread,
        users: all_users(state).await?,
        query,
    })
}

/// `GET /`: the board.
pub async fn page(
    State(state): State<ApiState>,
    viewer: Viewer,
    Query(query): Query<BoardQuery>,
) -> PageResult<Markup> {
    let board = load(&state, &viewer, query).await?;
    let title = board
        .pipeline
        .as_ref()
        .map_or("Board".to_string(), |p| p.name.clone());
    Ok(layout::page(&viewer, Nav::Board, &title, render(&board)))
}

/// `GET /board/columns`: the columns alone, for the live refresh.
pub async fn columns(
    State(state): State<ApiState>,
    viewer: Viewer,
    Query(query): Query<BoardQuery>,
) -> PageResult<Markup> {
    let board = load(&state, &viewer, query).await?;
    Ok(render_columns(&board))
}

fn render(board: &Board) -> Markup {
    let q = &board.query;
    let current = board.pipeline.as_ref().map(|p| p.name.as_str());
    html! {
        div.board-head {
            nav.pipelines aria-label="Pipelines" {
                @for p in &board.pipelines {
                    a href=(format!("/?pipeline={}", escape_query(&p.name)))
                        aria-current=[(Some(p.name.as_str()) == current).then_some("page")] { (p.name) }
                }
            }
            form.filters method="get" action="/" role="search" {
                @if let Some(current) = current {
                    input type="hidden" name="pipeline" value=(current);
                }
                label for="f-q" .visually-hidden { "Search titles" }
                input #f-q type="search" name="q" placeholder="Search titles" value=[q.q.as_deref()];
                label for="f-owner" .visually-hidden { "Owner" }
                select #f-owner name="owner" {
                    option value="" { "Any owner" }
                    @for u in &board.users {
                        option value=(u.email) selected[q.owner.as_deref() == Some(u.email.as_str())] {
                            (display_name(&u.name, &u.email))
                        }
                    }
                }
                label for="f-tag" .visually-hidden { "Tag" }
                input #f-tag type="text" name="tag" placeholder="Tag" value=[q.tag.as_deref()] size="10";
                button type="submit" { "Filter" }
                @if q.owner.is_some() || q.tag.is_some() || q.q.is_some() {
                    a href=(format!("/?pipeline={}", escape_query(current.unwrap_or_default()))) { "Clear" }
                }
            }
        }
        @if board.pipeline.is_none() {
            p.empty { "No pipeline yet. An admin creates one on the Pipelines page." }
        } @else {
            (render_columns(board))
        }
    }
}

fn render_columns(board: &Board) -> Markup {
    let Some(pipeline) = &board.pipeline else {
        return html! {};
    };
    let now = Utc::now();
    let source = format!(
        "/board/columns?{}",
        board.query.query_string(&pipeline.name)
    );
    html! {
        div #board .columns hx-get=(source) hx-trigger="board-changed from:body" hx-swap="outerHTML"
            data-records=(board.records.len()) {
            @for stage in &pipeline.stages {
                @let cards: Vec<&RecordView> = board.records.iter().filter(|r| r.stage == stage.name).collect();
                section.column.closed[stage.kind == "closed"] aria-label=(stage.name) data-stage=(stage.name) {
                    h2 {
                        span { (stage.name) }
                        span.count { (cards.len()) }
                    }
                    ol.cards {
                        @for r in cards {
                            li.card.unread[board.unread.contains(&r.id)] data-record=(r.number) {
                                a.title href=(format!("/records/{}", r.number)) { (r.title) }
                                div.meta {
                                    span.ref { (r.reference) }
                                    @if let Some(c) = &r.contact {
                                        span.contact title=(c.email) { (display_name(&c.name, &c.email)) }
                                    }
                                }
                                div.meta {
                                    span.owner { (r.owner.as_deref().unwrap_or("unassigned")) }
                                    span.age title=(r.updated_at.to_rfc3339()) { (layout::age(r.updated_at, now)) }
                                    @if board.unread.contains(&r.id) {
                                        span.dot title="unread" { span.visually-hidden { "unread" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if board.records.len() >= BOARD_MAX {
            p.muted { "Showing the newest " (BOARD_MAX) " records; filter to find older ones." }
        }
    }
}

/// `GET /events`: server-sent events; `board` whenever records change.
pub async fn events(
    State(state): State<ApiState>,
    _viewer: Viewer,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let store = state.store.clone();
    let first = store.board_stamp().await.unwrap_or_default();
    let ticks = tokio_stream_interval(EVENTS_EVERY);
    let stream = futures::stream::unfold((ticks, first), move |(mut ticks, last)| {
        let store = store.clone();
        async move {
            loop {
                ticks.tick().await;
                match store.board_stamp().await {
                    Ok(stamp) if stamp != last => {
                        let event = Event::default().event("board").data(stamp.clone());
                        return Some((Ok(event), (ticks, stamp)));
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "board events: storage"),
                }
            }
        }
    });
    let shutdown = state.shutdown.clone();
    let stream = futures::StreamExt::take_until(stream, shutdown.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn tokio_stream_interval(every: Duration) -> tokio::time::Interval {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks
}
