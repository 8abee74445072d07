//! The HTTP API: records, contacts, stored inbound messages, IMAP state,
//! tokens, health. Every `/api/v1` route needs a bearer token (see `auth`);
//! `/healthz` is open. Handlers call the store; no SQL here.

pub mod auth;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::config::AliasConfig;
use crate::domain::DirectoryHandle;
use crate::imap::StatusBoard;
use crate::store::{InboundFilter, RecordChange, RecordFilter, Role, Store, StoreError};

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub imap: StatusBoard,
    /// Wakes the processor (after a release).
    pub processor: Arc<Notify>,
    /// The routing snapshot SMTP and processing use; swapped after alias changes.
    pub directory: DirectoryHandle,
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    let api = Router::new()
        .route("/api/v1/records", get(list_records))
        .route("/api/v1/records/{id}", get(get_record).patch(update_record))
        .route("/api/v1/records/{id}/comments", post(add_comment))
        .route("/api/v1/contacts", get(find_contact))
        .route("/api/v1/inbound", get(list_inbound))
        .route(
            "/api/v1/inbound/{id}",
            get(get_inbound).delete(drop_inbound),
        )
        .route("/api/v1/inbound/{id}/release", post(release_inbound))
        .route("/api/v1/inbound/{id}/raw", get(inbound_raw))
        .route("/api/v1/imap", get(imap_status))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/aliases", get(list_aliases))
        .route("/api/v1/aliases/{address}", axum::routing::put(save_alias))
        .route("/api/v1/tokens/{id}", axum::routing::delete(revoke_token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(api)
        .fallback(|| async { ApiError::NotFound("no such route") })
        .with_state(state)
}

/// One error shape for every route: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub enum ApiError {
    NotFound(&'static str),
    BadRequest(String),
    Conflict(&'static str),
    Unauthorized,
    Forbidden,
    Unprocessable(String),
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
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required".to_string(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "this needs an admin token".to_string(),
            ),
            ApiError::Unprocessable(msg) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", msg),
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

/// A JSON body whose rejections use the API's error shape: 422 naming the
/// field for well-formed JSON of the wrong shape, 400 otherwise.
pub struct Body<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Body<T>
where
    Json<T>: axum::extract::FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::Unprocessable(e.body_text())),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Query parameters whose rejections use the API's error shape (400).
pub struct Params<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Params<T>
where
    Query<T>:
        axum::extract::FromRequestParts<S, Rejection = axum::extract::rejection::QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(Params(value)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

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
    Params(q): Params<RecordQuery>,
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
    Params(q): Params<ContactQuery>,
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
    Params(q): Params<InboundQuery>,
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
    _: auth::Admin,
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
    _: auth::Admin,
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

async fn list_tokens(
    _: auth::Admin,
    State(state): State<ApiState>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(json!({ "items": state.store.list_tokens().await? })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: String,
}

/// Creates a token; the answer is the only time the token is shown.
async fn create_token(
    _: auth::Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::Unprocessable("name: must not be empty".into()));
    }
    let role = Role::parse(&body.role)
        .ok_or_else(|| ApiError::Unprocessable("role: must be admin or member".into()))?;
    let token = auth::new_token();
    let view = match state
        .store
        .create_token(name, role, &auth::token_hash(&token))
        .await
    {
        Ok(view) => view,
        Err(StoreError::Conflict(_)) => {
            return Err(ApiError::Conflict("a token with this name exists"));
        }
        Err(err) => return Err(err.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "id": view.id, "name": view.name, "role": view.role })),
    ))
}

async fn revoke_token(
    _: auth::Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    if state.store.revoke_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token not found"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordPatch {
    stage: Option<String>,
    owner: Option<String>,
    tags: Option<Vec<String>>,
}

/// Moves a record to a stage, changes its owner or tags; each change is an event.
async fn update_record(
    axum::Extension(caller): axum::Extension<auth::Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(patch): Body<RecordPatch>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let change = RecordChange {
        stage: patch.stage,
        owner: patch.owner,
        tags: patch.tags,
    };
    match state.store.update_record(id, &change, &caller.0.name).await {
        Ok(()) => {}
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("record not found")),
        Err(StoreError::Conflict(msg)) => return Err(ApiError::Unprocessable(msg)),
        Err(err) => return Err(err.into()),
    }
    let record = state.store.get_record(id).await?;
    record
        .map(Json)
        .ok_or(ApiError::NotFound("record not found"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewComment {
    text: String,
}

/// An internal comment (never emailed); `@user@example.com` mentions of
/// existing users are stored with it.
async fn add_comment(
    axum::Extension(caller): axum::Extension<auth::Caller>,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<NewComment>,
) -> ApiResult<impl IntoResponse> {
    let id = path_id(&id)?;
    let text = body.text.trim();
    if text.is_empty() {
        return Err(ApiError::Unprocessable("text: must not be empty".into()));
    }
    let named: Vec<String> = crate::domain::mentions(text)
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    let users = state.store.existing_users(&named).await?;
    let mentions: Vec<String> = named.into_iter().filter(|m| users.contains(m)).collect();
    let comment = match state
        .store
        .add_comment(id, text, &caller.0.name, &mentions)
        .await
    {
        Ok(comment) => comment,
        Err(StoreError::NotFound) => return Err(ApiError::NotFound("record not found")),
        Err(err) => return Err(err.into()),
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": comment, "mentions": mentions })),
    ))
}

/// Every alias, with what it answers for and where it routes.
async fn list_aliases(
    _: auth::Admin,
    State(state): State<ApiState>,
) -> ApiResult<impl IntoResponse> {
    let directory = state.store.load_directory().await?;
    let mut items: Vec<Value> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for alias in directory.aliases.values() {
        if !seen.insert(alias.id) {
            continue; // listed under its own address only
        }
        items.push(json!({
            "address": alias.address.as_str(),
            "name": alias.name,
            "pipeline": directory.pipeline(alias.pipeline_id).map(|p| p.name.clone()),
            "tags": alias.tags,
            "enabled": alias.enabled,
            "reopen_on_reply": alias.reopen_on_reply,
            "also": alias.also.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        }));
    }
    items.sort_by(|a, b| a["address"].as_str().cmp(&b["address"].as_str()));
    Ok(Json(json!({ "items": items })))
}

/// Creates or updates an alias; the running listener and processor use it at
/// once (disabling one makes RCPT answer 550 and keeps every record).
async fn save_alias(
    _: auth::Admin,
    State(state): State<ApiState>,
    Path(address): Path<String>,
    Body(mut alias): Body<AliasConfig>,
) -> ApiResult<impl IntoResponse> {
    if !alias.address.eq_ignore_ascii_case(&address) {
        return Err(ApiError::Unprocessable(
            "address: must match the address in the path".into(),
        ));
    }
    alias.address = address;
    match state.store.save_alias(&alias).await {
        Ok(()) => {}
        Err(StoreError::Conflict(msg)) => return Err(ApiError::Unprocessable(msg)),
        Err(err) => return Err(err.into()),
    }
    state.directory.replace(state.store.load_directory().await?);
    Ok(Json(alias))
}
