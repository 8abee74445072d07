//! Stored inbound messages (with their outcome), quarantine release and
//! drop, raw bytes, and the IMAP pollers' state.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::Admin;
use super::{ApiError, ApiResult, ApiState, ErrorBody, Params, cursor, docs, limit, path_id};
use crate::store::{InboundFilter, InboundMessageLink, InboundView, Page};

/// One stored message, with the messages (and records) it became.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct InboundDetail {
    #[serde(flatten)]
    pub inbound: InboundView,
    /// Empty when processing made no message of it (see `outcome` and `details`).
    pub messages: Vec<InboundMessageLink>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InboundQuery {
    /// `pending`, `processed`, `ignored`, `quarantined`, `rejected`, `failed` or `dropped`.
    status: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Stored messages, newest first, with what processing made of them.
#[utoipa::path(get, path = "/api/v1/inbound", params(InboundQuery), responses(
    (status = 200, body = Page<InboundView>),
    docs::BadRequest,
    docs::Unauthorized,
))]
pub async fn list_inbound(
    State(state): State<ApiState>,
    Params(q): Params<InboundQuery>,
) -> ApiResult<Json<Page<InboundView>>> {
    let filter = InboundFilter {
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit)?,
        status: q.status,
    };
    Ok(Json(state.store.list_inbound(&filter).await?))
}

#[utoipa::path(get, path = "/api/v1/inbound/{id}", params(("id" = Uuid, Path)), responses(
    (status = 200, body = InboundDetail),
    docs::Unauthorized,
    docs::NotFound,
))]
pub async fn get_inbound(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InboundDetail>> {
    let id = path_id(&id)?;
    let inbound = state
        .store
        .get_inbound(id)
        .await?
        .ok_or(ApiError::NotFound("inbound message not found"))?;
    let messages = state.store.inbound_messages(id).await?;
    Ok(Json(InboundDetail { inbound, messages }))
}

/// The message exactly as received.
#[utoipa::path(get, path = "/api/v1/inbound/{id}/raw", params(("id" = Uuid, Path)), responses(
    (status = 200, description = "the raw bytes", content_type = "message/rfc822"),
    docs::Unauthorized,
    docs::NotFound,
))]
pub async fn inbound_raw(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let raw = raw_or_why(&state, id).await?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw))
}

/// A stored message's raw bytes; 410 when they were removed.
pub async fn raw_or_why(state: &ApiState, id: Uuid) -> ApiResult<Vec<u8>> {
    if let Some(raw) = state.store.inbound_raw(id).await? {
        return Ok(raw);
    }
    let inbound = state.store.get_inbound(id).await?;
    match inbound.and_then(|i| i.raw_removed) {
        Some(removed) => Err(ApiError::Gone(match removed.why.as_str() {
            "erased" => format!(
                "the raw message was erased with its contact on {}",
                removed.at
            ),
            _ => format!(
                "the raw message was removed on {} (older than [retention] raw_days)",
                removed.at
            ),
        })),
        None => Err(ApiError::NotFound("inbound message not found")),
    }
}

/// Every IMAP folder this process polls: state, cursor, counts, last error.
#[utoipa::path(get, path = "/api/v1/imap", responses(
    (status = 200, description = "one item per polled folder"),
    docs::Unauthorized,
))]
pub async fn imap_status(State(state): State<ApiState>) -> impl IntoResponse {
    Json(json!({ "items": state.imap.snapshot() }))
}

/// Releases a quarantined message: it is processed as if its reason did not apply.
#[utoipa::path(post, path = "/api/v1/inbound/{id}/release", params(("id" = Uuid, Path)), responses(
    (status = 202, body = InboundView),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    (status = 409, description = "not quarantined", body = ErrorBody),
))]
pub async fn release_inbound(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    release(&state, id).await?;
    let row = state
        .store
        .get_inbound(id)
        .await?
        .ok_or(ApiError::NotFound("inbound message not found"))?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Drops a quarantined message (its raw bytes stay stored).
#[utoipa::path(delete, path = "/api/v1/inbound/{id}", params(("id" = Uuid, Path)), responses(
    (status = 200, body = InboundView),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    (status = 409, description = "not quarantined", body = ErrorBody),
))]
pub async fn drop_inbound(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InboundView>> {
    let id = path_id(&id)?;
    drop_quarantined(&state, id).await?;
    let row = state
        .store
        .get_inbound(id)
        .await?
        .ok_or(ApiError::NotFound("inbound message not found"))?;
    Ok(Json(row))
}

/// Releases a quarantined message to processing and wakes the processor.
pub(crate) async fn release(state: &ApiState, id: Uuid) -> ApiResult<()> {
    if !state.store.release_inbound(id).await? {
        return Err(quarantine_error(state, id).await?);
    }
    state.processor.notify_one();
    Ok(())
}

/// Drops a quarantined message (its raw bytes stay stored).
pub(crate) async fn drop_quarantined(state: &ApiState, id: Uuid) -> ApiResult<()> {
    if !state.store.drop_inbound(id).await? {
        return Err(quarantine_error(state, id).await?);
    }
    Ok(())
}

/// 404 for an unknown message, 409 for one that is not quarantined.
async fn quarantine_error(state: &ApiState, id: Uuid) -> ApiResult<ApiError> {
    Ok(match state.store.get_inbound(id).await? {
        Some(_) => ApiError::Conflict("the message is not quarantined".into()),
        None => ApiError::NotFound("inbound message not found"),
    })
}
