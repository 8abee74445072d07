//! The HTTP API (read side): records, contacts, stored inbound messages,
//! health. Handlers call the store; no SQL here.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::imap::StatusBoard;
use crate::store::{InboundFilter, RecordFilter, Store, StoreError};

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub imap: StatusBoard,
    /// Wakes the processor (after a release).
    pub processor: Arc<Notify>,
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/records", get(list_records))
        .route("/api/v1/records/{id}", get(get_record))
        .route("/api/v1/contacts", get(find_contact))
        .route("/api/v1/inbound", get(list_inbound))
        .route(
            "/api/v1/inbound/{id}",
            get(get_inbound).delete(drop_inbound),
        )
        .route("/api/v1/inbound/{id}/release", post(release_inbound))
        .route("/api/v1/inbound/{id}/raw", get(inbound_raw))
        .route("/api/v1/imap", get(imap_status))
        .fallback(|| async { ApiError::NotFound("no such route") })
        .with_state(state)
}

/// One error shape for every route: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub enum ApiError {
    NotFound(&'static str),
    BadRequest(String),
    Conflict(&'static str),
    Unavailable(StoreError),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("not found"),
            other => ApiError::Unavailable(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", what.to_string()),
            ApiError::BadRequest(msg) => (StatusCode::BAD_REQUEST, "bad_request", msg),
            ApiError::Conflict(msg) => (StatusCode::CONFLICT, "conflict", msg.to_string()),
            ApiError::Unavailable(err) => {
                tracing::error!(error = %err, "api storage error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable".to_string(),
                )
            }
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;

fn limit(requested: Option<i64>) -> ApiResult<i64> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        ))),
    }
}

fn cursor(raw: Option<&str>) -> ApiResult<Option<Uuid>> {
    raw.map(|c| Uuid::parse_str(c).map_err(|_| ApiError::BadRequest("cursor is not valid".into())))
        .transpose()
}

fn path_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("not found"))
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok"}))).into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "database unavailable"})),
            )
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordQuery {
    pipeline: Option<String>,
    stage: Option<String>,
    contact: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_records(
    State(state): State<ApiState>,
    Query(q): Query<RecordQuery>,
) -> ApiResult<impl IntoResponse> {
    let filter = RecordFilter {
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit)?,
        pipeline: q.pipeline,
        stage: q.stage,
        contact: q.contact,
    };
    Ok(Json(state.store.list_records(&filter).await?))
}

async fn get_record(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let record = state.store.get_record(path_id(&id)?).await?;
    record
        .map(Json)
        .ok_or(ApiError::NotFound("record not found"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactQuery {
    email: String,
}

async fn find_contact(
    State(state): State<ApiState>,
    Query(q): Query<ContactQuery>,
) -> ApiResult<impl IntoResponse> {
    let contact = state.store.find_contact(&q.email).await?;
    contact
        .map(Json)
        .ok_or(ApiError::NotFound("contact not found"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundQuery {
    status: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn list_inbound(
    State(state): State<ApiState>,
    Query(q): Query<InboundQuery>,
) -> ApiResult<impl IntoResponse> {
    let filter = InboundFilter {
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit)?,
        status: q.status,
    };
    Ok(Json(state.store.list_inbound(&filter).await?))
}

async fn get_inbound(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let inbound = state.store.get_inbound(path_id(&id)?).await?;
    inbound
        .map(Json)
        .ok_or(ApiError::NotFound("inbound message not found"))
}

async fn inbound_raw(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let raw = state.store.inbound_raw(path_id(&id)?).await?;
    let raw = raw.ok_or(ApiError::NotFound("inbound message not found"))?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw))
}

/// Every IMAP folder this process polls: state, cursor, counts, last error.
async fn imap_status(State(state): State<ApiState>) -> impl IntoResponse {
    Json(json!({ "items": state.imap.snapshot() }))
}

/// Releases a quarantined message: it is processed as if its reason did not apply.
async fn release_inbound(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    if !state.store.release_inbound(id).await? {
        return Err(quarantine_error(&state, id).await?);
    }
    state.processor.notify_one();
    let row = state
        .store
        .get_inbound(id)
        .await?
        .ok_or(ApiError::NotFound("inbound message not found"))?;
    Ok((StatusCode::ACCEPTED, Json(row)))
}

/// Drops a quarantined message (its raw bytes stay stored).
async fn drop_inbound(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    if !state.store.drop_inbound(id).await? {
        return Err(quarantine_error(&state, id).await?);
    }
    let row = state
        .store
        .get_inbound(id)
        .await?
        .ok_or(ApiError::NotFound("inbound message not found"))?;
    Ok(Json(row))
}

/// 404 for an unknown message, 409 for one that is not quarantined.
async fn quarantine_error(state: &ApiState, id: Uuid) -> ApiResult<ApiError> {
    Ok(match state.store.get_inbound(id).await? {
        Some(_) => ApiError::Conflict("the message is not quarantined"),
        None => ApiError::NotFound("inbound message not found"),
    })
}
