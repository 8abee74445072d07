//! `/records/{number}`: a record with its conversation in time order, the
//! stage, owner and tags, a reply box and a comment box.
//!
//! Each action posts a form and, when it worked, redirects back (303) to
//! the record; when it did not, the page is shown again with the error and
//! what was typed, so nothing is lost.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::board::{all_pipelines, all_users};
use super::layout::{self, Nav, csrf, display_name, when};
use super::session::Viewer;
use super::{PageError, PageResult, see_other};
use crate::api::records::{NewReply, change_record};
use crate::api::{ApiError, ApiState};
use crate::store::{ConversationItem, MessageView, RecordChange, RecordDetail, UserView};

/// What to show again after an action that failed.
#[derive(Debug, Default)]
pub(super) struct Draft {
    pub error: Option<String>,
    pub reply: String,
    pub cc: String,
    pub comment: String,
    /// A forward: the message, the recipients and the note typed.
    pub forward: Option<(Uuid, String, String)>,
}

pub(super) async fn record_id(state: &ApiState, number: &str) -> PageResult<Uuid> {
    let number: i64 = number
        .trim_start_matches('#')
        .parse()
        .map_err(|_| PageError::NotFound("There is no record with that number."))?;
    state
        .store
        .record_id(number)
        .await?
        .ok_or(PageError::NotFound("There is no record with that number."))
}

/// `GET /records/{number}`; marks it read for the viewer.
pub async fn page(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    show(&state, &viewer, id, Draft::default(), StatusCode::OK).await
}

async fn show(
    state: &ApiState,
    viewer: &Viewer,
    id: Uuid,
    draft: Draft,
    status: StatusCode,
) -> PageResult {
    let detail = state
        .store
        .get_record(id)
        .await?
        .ok_or(PageError::NotFound("There is no record with that number."))?;
    state.store.mark_read(viewer.user.id, id).await?;
    let pipelines = all_pipelines(state).await?;
    let stages: Vec<(String, String)> = pipelines
        .iter()
        .find(|p| p.name == detail.record.pipeline)
        .map(|p| {
            p.stages
                .iter()
                .map(|s| (s.name.clone(), s.kind.clone()))
                .collect()
        })
        .unwrap_or_default();
    let users = all_users(state).await?;
    let title = format!("{} {}", detail.record.reference, detail.record.title);
    let body = render(
        viewer,
        &detail,
        &stages,
        &users,
        state.outbound.enabled,
        &draft,
    );
    Ok((status, layout::page(viewer, Nav::Board, &title, body)).into_response())
}

/// An action's answer: back to the record, or the page with the error.
pub(super) async fn after(
    state: &ApiState,
    viewer: &Viewer,
    id: Uuid,
    number: &str,
    result: Result<(), ApiError>,
    draft: Draft,
) -> PageResult {
    match result {
        Ok(()) => Ok(see_other(&format!("/records/{number}"))),
        Err(err) => {
            let (status, _, message) = err.parts();
            if status == StatusCode::NOT_FOUND {
                return Err(PageError::NotFound("There is no record with that number."));
            }
            let draft = Draft {
                error: Some(message),
                ..draft
            };
            show(state, viewer, id, draft, status).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StageForm {
    stage: String,
}

/// `POST /records/{number}/stage`.
pub async fn set_stage(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<StageForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let change = RecordChange {
        stage: Some(form.stage),
        ..RecordChange::default()
    };
    let result = change_record(&state, id, &change, &viewer.actor()).await;
    after(&state, &viewer, id, &number, result, Draft::default()).await
}

#[derive(Debug, Deserialize)]
pub struct OwnerForm {
    owner: String,
}

/// `POST /records/{number}/owner` (an empty owner unassigns).
pub async fn set_owner(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<OwnerForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let change = RecordChange {
        owner: Some(form.owner.trim().to_string()),
        ..RecordChange::default()
    };
    let result = change_record(&state, id, &change, &viewer.actor()).await;
    after(&state, &viewer, id, &number, result, Draft::default()).await
}

#[derive(Debug, Deserialize)]
pub struct TagsForm {
    tags: String,
}

/// `POST /records/{number}/tags`: comma-separated.
pub async fn set_tags(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<TagsForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let tags: Vec<String> = form
        .tags
        .split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let change = RecordChange {
        tags: Some(tags),
        ..RecordChange::default()
    };
    let result = change_record(&state, id, &change, &viewer.actor()).await;
    after(&state, &viewer, id, &number, result, Draft::default()).await
}

#[derive(Debug, Deserialize)]
pub struct ReplyForm {
    #[serde(default)]
    text: String,
    #[serde(default)]
    cc: String,
    force: Option<String>,
}

/// `POST /records/{number}/reply`: queued for the relay.
pub async fn reply(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<ReplyForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let body = NewReply {
        text: form.text.clone(),
        html: None,
        cc: form
            .cc
            .split([',', ' ', ';'])
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        force: form.force.is_some(),
    };
    let result = crate::api::records::reply(&state, id, body, &viewer.actor())
        .await
        .map(|_| ());
    let draft = Draft {
        reply: form.text,
        cc: form.cc,
        ..Draft::default()
    };
    after(&state, &viewer, id, &number, result, draft).await
}

#[derive(Debug, Deserialize)]
pub struct CommentForm {
    #[serde(default)]
    text: String,
}

/// `POST /records/{number}/comment`.
pub async fn comment(
    State(state): State<ApiState>,
    viewer: Viewer,
    Path(number): Path<String>,
    Form(form): Form<CommentForm>,
) -> PageResult {
    let id = record_id(&state, &number).await?;
    let result = crate::api::records::comment(&state, id, &form.text, &viewer.actor())
        .await
        .map(|_| ());
    let draft = Draft {
        comment: form.text,
        ..Draft::default()
    };
    after(&state, &viewer, id, &number, result, draft).await
}

fn render(
    viewer: &Viewer,
    detail: &RecordDetail,
    stages: &[(String, String)],
    users: &[UserView],
    can_reply: bool,
    draft: &Draft,
) -> Markup {
    let r = &detail.record;
    let base = format!("/records/{}", r.number);
    html! {
        div.record {
            div.record-main {
                p.crumbs {
                    a href=(format!("/?pipeline={}", super::escape_query(&r.pipeline))) { (r.pipeline) }
                    " · " span.ref { (r.reference) }
                }
                h1 { (r.title) }
                (super::conversation::merged_banner(r))
                @if let Some(c) = &r.contact {
                    p.contact-line {
                        a href=(format!("/contacts/{}", c.id)) { (display_name(&c.name, &c.email)) }
                        " " span.muted { "<" (c.email) ">" }
                        @if c.bounced_at.is_some() { " " span.badge.warn { "bounced" } }
                        @if c.complained_at.is_some() { " " span.badge.warn { "complained" } }
                    }
                }
                (layout::notice(draft.error.as_deref(), None))
                ol.conversation aria-label="Conversation" {
                    @for item in &detail.conversation {
                        (conversation_item(item, viewer, r, can_reply, draft))
                    }
                }
                section.compose aria-labelledby="reply-h" {
                    h2 #reply-h { "Reply to the contact" }
                    @if !can_reply {
                        p.muted { "Replies need an outbound relay: an admin sets [outbound] host." }
                    }
                    form method="post" action=(format!("{base}/reply")) {
                        (csrf(viewer))
                        label for="reply-text" { "Message" }
                        textarea #reply-text name="text" rows="6" required disabled[!can_reply] { (draft.reply) }
                        label for="reply-cc" { "Cc (optional, comma-separated)" }
                        input #reply-cc type="text" name="cc" value=(draft.cc) disabled[!can_reply];
                        @if r.contact.as_ref().is_some_and(|c| c.bounced_at.is_some() || c.complained_at.is_some()) {
                            label.check {
                                input type="checkbox" name="force" value="1";
                                " Send even though this address bounced or complained"
                            }
                        }
                        button.primary type="submit" disabled[!can_reply] { "Send reply" }
                    }
                }
                section.compose aria-labelledby="comment-h" {
                    h2 #comment-h { "Internal comment" }
                    form method="post" action=(format!("{base}/comment")) {
                        (csrf(viewer))
                        label for="comment-text" { "Comment (only your team sees it; @address mentions a teammate)" }
                        textarea #comment-text name="text" rows="3" required { (draft.comment) }
                        @if !users.is_empty() {
                            div.mentions aria-label="Mention a teammate" {
                                @for u in users {
                                    button.chip type="button" data-mention=(u.email) { "@" (display_name(&u.name, &u.email)) }
                                }
                            }
                        }
                        button type="submit" { "Add comment" }
                    }
                }
            }
            aside.record-side aria-label="Record" {
                form method="post" action=(format!("{base}/stage")) {
                    (csrf(viewer))
                    label for="stage" { "Stage" }
                    select #stage name="stage" data-autosubmit {
                        @for (name, kind) in stages {
                            option value=(name) selected[*name == r.stage] {
                                (name) @if kind == "closed" { " (closed)" }
                            }
                        }
                    }
                    button type="submit" { "Move" }
                }
                form method="post" action=(format!("{base}/owner")) {
                    (csrf(viewer))
                    label for="owner" { "Owner" }
                    select #owner name="owner" data-autosubmit {
                        option value="" { "Unassigned" }
                        @for u in users {
                            option value=(u.email) selected[r.owner.as_deref() == Some(u.email.as_str())] {
                                (display_name(&u.name, &u.email))
                            }
                        }
                    }
                    button type="submit" { "Assign" }
                }
                form method="post" action=(format!("{base}/tags")) {
                    (csrf(viewer))
                    label for="tags" { "Tags (comma-separated)" }
                    input #tags type="text" name="tags" value=(r.tags.join(", "));
                    button type="submit" { "Save tags" }
                }
                (super::conversation::merge_panel(viewer, r))
                dl.facts {
                    dt { "Created" } dd { (when(r.created_at)) }
                    dt { "Updated" } dd { (when(r.updated_at)) }
                    @if let Some(related) = r.related_record_id {
                        dt { "Related" } dd.mono { (related) }
                    }
                }
            }
        }
    }
}

fn conversation_item(
    item: &ConversationItem,
    viewer: &Viewer,
    r: &crate::store::RecordView,
    can_send: bool,
    draft: &Draft,
) -> Markup {
    match item {
        ConversationItem::Message(m) if m.direction == "comment" => html! {
            li.item.comment id=(format!("m-{}", m.id)) {
                div.item-head {
                    span.who { (m.author.as_deref().unwrap_or("someone")) }
                    " commented · " (when(m.created_at))
                }
                (layout::text_block(m.text.as_deref().unwrap_or_default()))
                @if !m.mentions.is_empty() {
                    p.muted { "Mentions: " (m.mentions.join(", ")) }
                }
            }
        },
        ConversationItem::Message(m) => html! {
            (message(m))
            @if r.merged_into.is_none() {
                (super::conversation::message_tools(viewer, r.number, m, can_send, draft))
            }
        },
        ConversationItem::Event(e) => html! {
            li.item.event {
                (event_text(e)) " · " (when(e.created_at))
            }
        },
    }
}

fn event_text(e: &crate::store::EventView) -> String {
    let by = |what: String| format!("{what} by {}", e.actor);
    let detail = e.detail.as_deref().unwrap_or("");
    match e.kind.as_str() {
        "created" => by(format!(
            "Created in {}",
            e.to_stage.as_deref().unwrap_or("?")
        )),
        "stage_changed" => by(format!(
            "Moved from {} to {}",
            e.from_stage.as_deref().unwrap_or("?"),
            e.to_stage.as_deref().unwrap_or("?")
        )),
        "reopened" => by(format!(
            "Reopened from {} to {}",
            e.from_stage.as_deref().unwrap_or("?"),
            e.to_stage.as_deref().unwrap_or("?")
        )),
        "owner_changed" => by(format!(
            "Assigned to {}",
            e.detail
                .as_deref()
                .filter(|d| !d.is_empty())
                .unwrap_or("nobody")
        )),
        "tags_changed" => by(format!(
            "Tags set to {}",
            e.detail.as_deref().unwrap_or("[]")
        )),
        "forwarded_by" => format!(
            "Forwarded by {}: the contact is the customer who wrote the forwarded mail",
            e.detail.as_deref().unwrap_or("a team member")
        ),
        "followed_up" => format!(
            "A later message started record {}: this one had been closed longer than the follow-up window",
            e.detail.as_deref().unwrap_or("")
        ),
        "follow_up_of" => format!(
            "Follows up record {}, which had been closed longer than the follow-up window",
            e.detail.as_deref().unwrap_or("")
        ),
        "merged_into" => by(format!("Merged into record {detail}")),
        "merged" => by(format!("Record {detail} merged into this one")),
        "split_from" => by(format!("Split off from record {detail}")),
        "split_to" => by(format!("Thread split off to record {detail}")),
        "forward_queued" => by(format!("Forwarded to {detail}")),
        "notified" => format!("Notified by mail: {}", e.detail.as_deref().unwrap_or("")),
        "notify_failed" => format!(
            "A notification could not be sent: {}",
            e.detail.as_deref().unwrap_or("")
        ),
        other => {
            let words = other.replace('_', " ");
            let mut chars = words.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
            by(format!("{}{}", first.unwrap_or_default(), chars.as_str()))
        }
    }
}

fn message(m: &MessageView) -> Markup {
    let inbound = m.direction == "in";
    let from = m
        .from
        .as_ref()
        .map(|f| match &f.name {
            Some(name) if !name.is_empty() => format!("{name} <{}>", f.address),
            _ => f.address.clone(),
        })
        .unwrap_or_else(|| "(no sender)".to_string());
    let threading = threading(&m.thread);
    html! {
        li.item.message.in[inbound].out[!inbound] id=(format!("m-{}", m.id)) {
            div.item-head title=(threading) {
                span.who { (from) }
                @if inbound {
                    " wrote"
                } @else if m.thread.rule == "forward" {
                    " forwarded to " (m.to.iter().map(|t| t.address.as_str()).collect::<Vec<_>>().join(", "))
                } @else {
                    " (reply sent by the team)"
                }
                " · " (when(m.date.unwrap_or(m.created_at)))
                @if m.class != "normal" { " " span.badge { (m.class.replace('_', " ")) } }
                @if let Some(d) = &m.delivery {
                    " " span.badge.delivery.(d.status) title=[d.last_reply.as_deref()] { (d.status) }
                }
            }
            @if let Some(subject) = &m.subject {
                p.subject { (subject) }
            }
            @match (&m.text, &m.html) {
                (Some(text), _) => {
                    @let new = m.reply_text.as_deref().unwrap_or(text);
                    (layout::text_block(if new.is_empty() { text } else { new }))
                    @if !new.is_empty() && new != crate::domain::normalized(text) {
                        details.quoted {
                            summary { "Show the whole message, with quoted text" }
                            (layout::text_block(text))
                        }
                    }
                }
                (None, Some(_)) => (html_frame(m)),
                (None, None) => p.muted { "(no text)" },
            }
            @if m.text.is_some() && m.html.is_some() {
                details.html-view {
                    summary { "Show the HTML version" }
                    (html_frame(m))
                }
            }
            @if !m.attachments.is_empty() {
                ul.attachments aria-label="Attachments" {
                    @for a in &m.attachments {
                        li {
                            a href=(super::attachments::url(a.id)) download[!a.inline] {
                                (a.name.as_deref().unwrap_or("(unnamed)"))
                            }
                            " " span.muted {
                                (a.content_type) ", " (human_size(a.size))
                                @if a.inline { ", shown in the message" }
                            }
                        }
                    }
                }
            }
            p.thread-rule.muted { (threading) }
        }
    }
}

/// A message's HTML, framed in a sandbox (no script, nothing loaded from
/// elsewhere; see `attachments::message_html`).
fn html_frame(m: &MessageView) -> Markup {
    html! {
        iframe.mail-html sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"
            src=(super::attachments::html_url(m.id)) loading="lazy"
            title=(format!("HTML of the message from {}", m.from.as_ref().map_or("", |f| f.address.as_str()))) {}
    }
}

/// Why a message is on this record, in words, with the key that decided it.
fn threading(t: &crate::store::ThreadDecision) -> String {
    let why = match t.rule.as_str() {
        "new" => "Started this record",
        "reply" => "Sent from this record",
        "forward" => "Forwarded from this record",
        "reply-token" => "Joined by the reply address",
        "in-reply-to" => "Joined by In-Reply-To",
        "references" => "Joined by References",
        "subject-tag" => "Joined by the [#n] tag in the subject",
        "related" => "Started a related record",
        "follow-up" => {
            "Started a new record: the record it answers was closed longer than the follow-up window"
        }
        "comment" => "Comment",
        other => other,
    };
    match &t.value {
        Some(value) => format!("Threading: {why} ({value})"),
        None => format!("Threading: {why}"),
    }
}

/// `2.3 MB`, `14 KB`, `512 B`.
pub fn human_size(bytes: i64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1_000_000.0),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} B"),
    }
}
