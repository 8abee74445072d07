//! Reshaping and passing on a conversation: merge a record into another,
//! split a thread off to a new record, forward a message to a third party.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Caller;
use super::{ApiError, ApiResult, ApiState, Body, ErrorBody, docs, path_id, store_error};
use crate::domain::{EmailAddress, limits};
use crate::outbound::{ComposeError, ForwardRequest, compose_forward};
use crate::store::{ConversationItem, Moved, NewAttachment, QueuedReply};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The record that takes the conversation.
    pub into: Uuid,
}

/// Merges the record into another of its pipeline: its messages and
/// comments move there, later replies to either thread land there, and the
/// merged record is closed with an event naming the other.
#[utoipa::path(post, path = "/api/v1/records/{id}/merge", params(("id" = uuid::Uuid, Path)),
    request_body = MergeRequest, responses(
    (status = 200, body = Moved),
    docs::BadRequest,
    docs::Unauthorized,
    docs::NotFound,
    (status = 409, description = "the records are in different pipelines, or one was merged already", body = ErrorBody),
    docs::Invalid,
))]
pub async fn merge_record(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<MergeRequest>,
) -> ApiResult<Json<Moved>> {
    let id = path_id(&id)?;
    Ok(Json(merge(&state, id, body.into, &caller.0.name).await?))
}

/// Merges `from` into `into` by `actor`.
///
/// # Errors
/// 422 for a record merged into itself; 404 for an unknown record; 409 as
/// [`crate::store::MergeStore::merge_record`] says.
pub(crate) async fn merge(
    state: &ApiState,
    from: Uuid,
    into: Uuid,
    actor: &str,
) -> ApiResult<Moved> {
    if from == into {
        return Err(ApiError::Unprocessable(
            "into: a record cannot be merged into itself".into(),
        ));
    }
    state
        .store
        .merge_record(from, into, actor)
        .await
        .map_err(|e| store_error(e, "record not found"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// The message that starts the new record; the replies threaded below
    /// it go with it.
    pub message: Uuid,
}

/// Splits a thread off to a new record: the message and every message
/// threaded below it (by In-Reply-To, else References) move to a new record
/// of the same pipeline, owner and tags, related to this one; both get an
/// event.
#[utoipa::path(post, path = "/api/v1/records/{id}/split", params(("id" = uuid::Uuid, Path)),
    request_body = SplitRequest, responses(
    (status = 201, body = Moved),
    docs::BadRequest,
    docs::Unauthorized,
    (status = 404, description = "no such record, or the message is not on it", body = ErrorBody),
    (status = 409, description = "a comment, a merged record, or nothing would stay behind", body = ErrorBody),
    docs::Invalid,
))]
pub async fn split_record(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<SplitRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let moved = split(&state, id, body.message, &caller.0.name).await?;
    Ok((StatusCode::CREATED, Json(moved)))
}

/// Splits `message`'s thread off `record` by `actor`.
///
/// # Errors
/// 404 for an unknown record or a message not on it; 409 as
/// [`crate::store::MergeStore::split_record`] says.
pub(crate) async fn split(
    state: &ApiState,
    record: Uuid,
    message: Uuid,
    actor: &str,
) -> ApiResult<Moved> {
    state
        .store
        .split_record(record, message, actor)
        .await
        .map_err(|e| store_error(e, "no such message on this record"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewForward {
    /// The message of this record to forward.
    pub message: Uuid,
    /// Who gets it.
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// A note above the forwarded message.
    #[serde(default)]
    pub text: String,
}

/// Forwards a message of the record, with its attachments and a note, to
/// someone outside the conversation. It is kept on the record as an
/// outbound message (`thread.rule` `forward`), goes through the outbox like
/// a reply, and carries the record's reply address, so an answer comes back
/// to the record.
#[utoipa::path(post, path = "/api/v1/records/{id}/forwards", params(("id" = uuid::Uuid, Path)),
    request_body = NewForward, responses(
    (status = 202, description = "queued: the message's id, Message-ID and headers"),
    docs::BadRequest,
    docs::Unauthorized,
    (status = 404, description = "no such record, or the message is not on it", body = ErrorBody),
    (status = 409, description = "no relay configured", body = ErrorBody),
    docs::Invalid,
))]
pub async fn send_forward(
    Extension(caller): Extension<Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<NewForward>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let queued = forward(&state, id, body, &caller.0.name).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "id": queued.id,
            "message_id": queued.message_id,
            "status": "queued",
            "subject": queued.subject,
            "from": queued.from,
            "to": queued.to,
            "cc": queued.cc,
            "reply_to": queued.reply_to,
            "attachments": queued.attachments.len(),
        })),
    ))
}

fn addresses(field: &str, list: &[String]) -> ApiResult<Vec<EmailAddress>> {
    limits::check_items(field, list, limits::CC).map_err(ApiError::Unprocessable)?;
    list.iter()
        .map(|a| {
            EmailAddress::parse(a.trim())
                .map_err(|e| ApiError::Unprocessable(format!("{field}: {a:?} {e}")))
        })
        .collect()
}

/// Composes the forward by `actor` and queues it.
///
/// # Errors
/// 422 for no or a refused recipient; 409 without a relay; 404 for no
/// record or a message not on it.
pub(crate) async fn forward(
    state: &ApiState,
    id: Uuid,
    body: NewForward,
    actor: &str,
) -> ApiResult<QueuedReply> {
    limits::check_chars("text", &body.text, limits::TEXT_CHARS).map_err(ApiError::Unprocessable)?;
    let request = ForwardRequest {
        to: addresses("to", &body.to)?,
        cc: addresses("cc", &body.cc)?,
        note: body.text,
        actor: actor.to_string(),
    };
    let detail = state
        .store
        .get_record(id)
        .await?
        .ok_or(ApiError::NotFound("record not found"))?;
    let original = detail
        .conversation
        .into_iter()
        .find_map(|item| match item {
            ConversationItem::Message(m) if m.id == body.message && m.direction != "comment" => {
                Some(m)
            }
            _ => None,
        })
        .ok_or(ApiError::NotFound("no such message on this record"))?;
    let outbound = &state.outbound;
    if !outbound.enabled {
        return Err(ApiError::Conflict(
            "no outbound relay is configured: set [outbound] host".into(),
        ));
    }
    let context = state
        .store
        .reply_context(id)
        .await?
        .ok_or(ApiError::NotFound("record not found"))?;
    let mut files = Vec::with_capacity(original.attachments.len());
    for a in &original.attachments {
        // Erased meanwhile: forwarded without it.
        if let Some(stored) = state.store.attachment(a.id).await? {
            files.push(NewAttachment {
                name: a.name.clone(),
                content_type: a.content_type.clone(),
                sha256: a.sha256.clone(),
                bytes: stored.bytes,
                content_id: a.content_id.clone(),
                inline: a.inline,
            });
        }
    }
    let queued = compose_forward(
        &context,
        &original,
        files,
        &request,
        &outbound.domain,
        &outbound.key,
        Utc::now(),
    )
    .map_err(|e| match e {
        ComposeError::RefusedCc(msg) => ApiError::Unprocessable(msg),
        other => ApiError::Conflict(other.to_string()),
    })?;
    state.store.queue_reply(&queued).await?;
    outbound.wake.notify_one();
    Ok(queued)
}
