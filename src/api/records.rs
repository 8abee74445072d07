//! Records: list, read with the conversation, move and reassign, comment,
//! and reply to the contact.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::{
    ApiError, ApiResult, ApiState, Body, ErrorBody, Params, cursor, docs, limit, path_id,
    store_error,
};
use crate::domain::{EmailAddress, limits};
use crate::outbound::{ComposeError, ReplyRequest, compose};
use crate::store::{Page, QueuedReply, RecordChange, RecordDetail, RecordFilter, RecordView};
use uuid::Uuid;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// Pipeline name.
    pipeline: Option<String>,
    /// Stage name.
    stage: Option<String>,
    /// The contact's address.
    contact: Option<String>,
    /// The owner's address.
    owner: Option<String>,
    /// One of the record's tags.
    tag: Option<String>,
    /// Part of the title, any case.
    text: Option<String>,
    /// Search: words (each matches the start of a word) and Japanese,
    /// Chinese or Korean text (matched inside the text) in titles, message
    /// texts, comments and contacts' names and addresses; every part must
    /// match. Best first; combines with `pipeline` only.
    q: Option<String>,
    /// Changed at or after this time (RFC 3339).
    updated_since: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Records, newest first; with `q`, the records a search finds, best first.
#[utoipa::path(get, path = "/api/v1/records", params(RecordQuery), responses(
    (status = 200, body = Page<RecordView>),
    docs::BadRequest,
    docs::Unauthorized,
))]
pub async fn list_records(
    State(state): State<ApiState>,
    Params(q): Params<RecordQuery>,
) -> ApiResult<Json<Page<RecordView>>> {
    let updated_since = q
        .updated_since
        .as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| ApiError::BadRequest("updated_since: not an RFC 3339 time".into()))
        })
        .transpose()?;
    for (field, value) in [
        ("pipeline", &q.pipeline),
        ("stage", &q.stage),
        ("contact", &q.contact),
        ("owner", &q.owner),
        ("tag", &q.tag),
        ("text", &q.text),
        ("q", &q.q),
    ] {
        if let Some(value) = value {
            limits::check_chars(field, value, limits::FILTER_CHARS)
                .map_err(ApiError::BadRequest)?;
        }
    }
    if let Some(text) = q.q.as_deref().filter(|t| !t.trim().is_empty()) {
        let others = [&q.stage, &q.contact, &q.owner, &q.tag, &q.text];
        if others.iter().any(|o| o.is_some()) || updated_since.is_some() {
            return Err(ApiError::BadRequest(
                "q: a search combines with pipeline only".into(),
            ));
        }
        let page = search(
            &state,
            text,
            q.pipeline.as_deref(),
            q.cursor.as_deref(),
            limit(q.limit)?,
        )
        .await?;
        return Ok(Json(page));
    }
    let filter = RecordFilter {
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit)?,
        pipeline: q.pipeline,
        stage: q.stage,
        contact: q.contact,
        owner: q.owner,
        tag: q.tag,
        text: q.text,
        updated_since,
    };
    Ok(Json(state.store.list_records(&filter).await?))
}

/// One page of the records a search for `text` finds, best first; the
/// cursor is the offset of the next page.
pub async fn search(
    state: &ApiState,
    text: &str,
    pipeline: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> ApiResult<Page<RecordView>> {
    let offset = match cursor {
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| ApiError::BadRequest("cursor: not a cursor of a search".into()))?,
        None => 0,
    };
    let pipeline_id =
        match pipeline {
            Some(name) => {
                let directory = state.directory.current();
                let found = directory
                    .pipelines
                    .values()
                    .find(|p| p.name == name)
                    .map(|p| p.id);
                Some(found.ok_or_else(|| {
                    ApiError::BadRequest(format!("pipeline: no pipeline {name:?}"))
                })?)
            }
            None => None,
        };
    let parts = crate::domain::search::query_parts(text);
    let hits = state
        .store
        .search_records(&parts, pipeline_id, limit + 1, offset)
        .await?;
    let more = usize::try_from(limit).is_ok_and(|l| hits.len() > l);
    let ids: Vec<Uuid> = hits
        .iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|h| h.record_id)
        .collect();
    let items = state.store.records_by_ids(&ids).await?;
    Ok(Page {
        next_cursor: more.then(|| (offset + limit).to_string()),
        items,
    })
}

/// A record with its conversation (messages in and out, comments, events) in time order.
#[utoipa::path(get, path = "/api/v1/records/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = RecordDetail),
    docs::Unauthorized,
    docs::NotFound,
))]
pub async fn get_record(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<RecordDetail>> {
    let mut record = state
        .store
        .get_record(path_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound("record not found"))?;
    // Inline images: `cid:` URLs point at their attachments' route.
    for item in &mut record.conversation {
        if let crate::store::ConversationItem::Message(m) = item
            && let Some(html) = &m.html
        {
            let html = super::attachments::rewrite_cids(html, &m.attachments, |a| a.url.clone());
            m.html = Some(html);
        }
    }
    Ok(Json(record))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPatch {
    /// A stage name of the record's pipeline.
    stage: Option<String>,
    /// A user's address.
    owner: Option<String>,
    tags: Option<Vec<String>>,
}

/// Moves a record to a stage, changes its owner or tags; each change is an event.
#[utoipa::path(patch, path = "/api/v1/records/{id}", params(("id" = uuid::Uuid, Path)),
    request_body = RecordPatch, responses(
    (status = 200, body = RecordDetail),
    docs::BadRequest,
    docs::Unauthorized,
    docs::NotFound,
    docs::Invalid,
))]
pub async fn update_record(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(patch): Body<RecordPatch>,
) -> ApiResult<Json<RecordDetail>> {
    let id = path_id(&id)?;
    let change = RecordChange {
        stage: patch.stage,
        owner: patch.owner,
        tags: patch.tags,
    };
    change_record(&state, id, &change, &caller.0.name).await?;
    get_record(State(state), Path(id.to_string())).await
}

/// Checks and applies a change to a record (each change is an event by `actor`).
///
/// # Errors
/// 422 for a stage, owner or tags the record cannot take; 404 for no record.
pub(crate) async fn change_record(
    state: &ApiState,
    id: Uuid,
    change: &RecordChange,
    actor: &str,
) -> ApiResult<()> {
    if let Some(stage) = &change.stage {
        limits::check_chars("stage", stage, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    }
    if let Some(tags) = &change.tags {
        limits::check_tags("tags", tags).map_err(ApiError::Unprocessable)?;
    }
    match state.store.update_record(id, change, actor).await {
        Ok(()) => Ok(()),
        Err(crate::store::StoreError::Conflict(msg)) => Err(ApiError::Unprocessable(msg)),
        Err(err) => Err(store_error(err, "record not found")),
    }
}

/// Stores an internal comment by `actor`; returns its id and the existing
/// users it mentions.
///
/// # Errors
/// 422 for an empty or overlong text; 404 for no record.
pub(crate) async fn comment(
    state: &ApiState,
    id: Uuid,
    text: &str,
    actor: &str,
) -> ApiResult<(Uuid, Vec<String>)> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::Unprocessable("text: must not be empty".into()));
    }
    limits::check_chars("text", text, limits::TEXT_CHARS).map_err(ApiError::Unprocessable)?;
    let named: Vec<String> = crate::domain::mentions(text)
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    let users = state.store.existing_users(&named).await?;
    let mentions: Vec<String> = named.into_iter().filter(|m| users.contains(m)).collect();
    let comment = state
        .store
        .add_comment(id, text, actor, &mentions)
        .await
        .map_err(|e| store_error(e, "record not found"))?;
    Ok((comment, mentions))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    text: String,
}

/// An internal comment (never emailed); `@user@example.com` mentions of
/// existing users are stored with it.
#[utoipa::path(post, path = "/api/v1/records/{id}/comments", params(("id" = uuid::Uuid, Path)),
    request_body = NewComment, responses(
    (status = 201, description = "the comment's id and the users it mentions"),
    docs::BadRequest,
    docs::Unauthorized,
    docs::NotFound,
    docs::Invalid,
))]
pub async fn add_comment(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<NewComment>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let (comment, mentions) = comment(&state, id, &body.text, &caller.0.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": comment, "mentions": mentions })),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReply {
    /// The reply's text.
    pub(crate) text: String,
    /// An HTML alternative.
    pub(crate) html: Option<String>,
    /// Further recipients.
    #[serde(default)]
    pub(crate) cc: Vec<String>,
    /// Send even though the contact's address bounced or complained.
    #[serde(default)]
    pub(crate) force: bool,
}

/// Replies to the record's contact through the outbound relay. The reply
/// is queued at once (202) and shows `queued`, `sent` or `failed` with the
/// relay's answer in the conversation.
#[utoipa::path(post, path = "/api/v1/records/{id}/replies", params(("id" = uuid::Uuid, Path)),
    request_body = NewReply, responses(
    (status = 202, description = "queued: the message's id, Message-ID and headers"),
    docs::BadRequest,
    docs::Unauthorized,
    docs::NotFound,
    (status = 409, description = "no relay configured, no contact, or reply safety refused the address", body = ErrorBody),
    docs::Invalid,
))]
pub async fn send_reply(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<NewReply>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let reply = reply(&state, id, body, &caller.0.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": reply.id,
            "message_id": reply.message_id,
            "status": "queued",
            "subject": reply.subject,
            "from": reply.from,
            "to": reply.to,
            "cc": reply.cc,
            "reply_to": reply.reply_to,
        })),
    ))
}

/// Composes a reply by `actor` to the record's contact and queues it.
///
/// # Errors
/// 422 for an empty text or a refused cc; 409 without a relay or a contact,
/// or when reply safety refuses the address; 404 for no record.
pub(crate) async fn reply(
    state: &ApiState,
    id: Uuid,
    body: NewReply,
    actor: &str,
) -> ApiResult<QueuedReply> {
    if body.text.trim().is_empty() {
        return Err(ApiError::Unprocessable("text: must not be empty".into()));
    }
    limits::check_chars("text", &body.text, limits::TEXT_CHARS)
        .and_then(|()| match &body.html {
            Some(html) => limits::check_chars("html", html, limits::TEXT_CHARS),
            None => Ok(()),
        })
        .and_then(|()| limits::check_items("cc", &body.cc, limits::CC))
        .map_err(ApiError::Unprocessable)?;
    let cc = body
        .cc
        .iter()
        .map(|c| {
            EmailAddress::parse(c).map_err(|e| ApiError::Unprocessable(format!("cc: {c:?} {e}")))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let context = state
        .store
        .reply_context(id)
        .await?
        .ok_or(ApiError::NotFound("record not found"))?;
    let outbound = &state.outbound;
    if !outbound.enabled {
        return Err(ApiError::Conflict(
            "no outbound relay is configured: set [outbound] host".into(),
        ));
    }
    let request = ReplyRequest {
        text: body.text,
        html: body.html,
        cc,
        actor: actor.to_string(),
        force: body.force,
    };
    let reply = compose(
        &context,
        &request,
        &outbound.domain,
        &outbound.key,
        Utc::now(),
    )
    .map_err(|e| match e {
        ComposeError::RefusedCc(_) => ApiError::Unprocessable(e.to_string()),
        other => ApiError::Conflict(other.to_string()),
    })?;
    state.store.queue_reply(&reply).await?;
    outbound.wake.notify_one();
    Ok(reply)
}
