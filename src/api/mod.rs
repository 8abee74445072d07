//! The HTTP API: records, replies and comments, contacts, stored inbound
//! messages, IMAP state, and the admin resources (tokens, users, pipelines,
//! aliases). Every `/api/v1` route needs a bearer token (see `auth`);
//! `/healthz` and `/metrics` are open. Handlers call the store; no SQL here.
//!
//! Routes are registered only through utoipa's router, so the OpenAPI
//! document served at `/api/v1/openapi.json` lists exactly what is served.

pub(crate) mod admin;
pub(crate) mod attachments;
pub mod auth;
pub(crate) mod contacts;
pub(crate) mod conversation;
pub(crate) mod inbound;
pub(crate) mod records;
pub(crate) mod webhooks;

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{BlockListHandle, DirectoryHandle};
use crate::imap::StatusBoard;
use crate::outbound::Outbound;
use crate::store::{ListRequest, Page, Store, StoreError};

/// Shared state of every handler.
#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub imap: StatusBoard,
    /// Wakes the processor (after a release).
    pub processor: Arc<Notify>,
    /// The routing snapshot SMTP and processing use; swapped after alias changes.
    pub directory: DirectoryHandle,
    /// Queues replies and wakes their sender.
    pub outbound: Arc<Outbound>,
    /// The blocked senders SMTP and processing check; swapped after API changes.
    pub blocked: BlockListHandle,
    /// The configuration the service runs with (its blocked senders, for one).
    pub settings: Arc<crate::config::Settings>,
    /// Whether intake's last commit got through (readiness).
    pub intake: crate::ingest::IntakeHealth,
    /// The running parts (intake, processor, pollers, outbox, servers).
    pub parts: crate::supervise::Health,
    /// Fires when the service stops: long-lived responses (the live board's
    /// event stream) end, so the server can shut down.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The webhook worker (its list of webhooks, its wake-up).
    pub webhooks: crate::webhooks::Webhooks,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "emailin", description = "Email into sales and support pipeline records."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(ErrorBody, ErrorDetail))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Every `/api/v1` route with its documentation.
fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(records::list_records))
        .routes(routes!(records::get_record, records::update_record))
        .routes(routes!(records::add_comment))
        .routes(routes!(records::send_reply))
        .routes(routes!(conversation::send_forward))
        .routes(routes!(conversation::merge_record))
        .routes(routes!(conversation::split_record))
        .routes(routes!(attachments::get_attachment))
        .routes(routes!(contacts::list_contacts))
        .routes(routes!(contacts::get_contact, contacts::update_contact))
        .routes(routes!(contacts::erase_contact))
        .routes(routes!(inbound::list_inbound))
        .routes(routes!(inbound::get_inbound, inbound::drop_inbound))
        .routes(routes!(inbound::release_inbound))
        .routes(routes!(inbound::inbound_raw))
        .routes(routes!(inbound::imap_status))
        .routes(routes!(admin::list_tokens, admin::create_token))
        .routes(routes!(admin::revoke_token))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(
            admin::get_user,
            admin::update_user,
            admin::delete_user
        ))
        .routes(routes!(admin::list_pipelines, admin::create_pipeline))
        .routes(routes!(
            admin::get_pipeline,
            admin::update_pipeline,
            admin::delete_pipeline
        ))
        .routes(routes!(admin::list_aliases))
        .routes(routes!(admin::get_alias, admin::save_alias))
        .routes(routes!(admin::list_blocked, admin::add_blocked))
        .routes(routes!(admin::remove_blocked))
        .routes(routes!(webhooks::list_webhooks, webhooks::add_webhook))
        .routes(routes!(webhooks::remove_webhook))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::replay_deliveries))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every route (including the open ones).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, api) = api_routes().split_for_parts();
    let (_, open) = open_routes().split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(api);
    doc.merge(open);
    doc
}

fn open_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Builds the router of the API alone.
pub fn router(state: ApiState) -> Router {
    router_with(state, Router::new())
}

/// Builds the router: the API, the open routes and `pages` (the web UI),
/// with one fallback and one body limit.
pub fn router_with(state: ApiState, pages: Router<ApiState>) -> Router {
    let (api, _) = api_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .split_for_parts();
    let (open, _) = open_routes().split_for_parts();
    let max_body = state.settings.http.max_body_bytes;
    Router::new()
        .merge(open)
        .merge(api)
        .merge(pages)
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// One error shape for every route: `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub enum ApiError {
    NotFound(&'static str),
    BadRequest(String),
    Conflict(String),
    /// It was there and was removed for good (erasure, retention).
    Gone(String),
    Unauthorized,
    Forbidden,
    Unprocessable(String),
    MethodNotAllowed,
    /// The body is over `[http] max_body_bytes`.
    TooLarge,
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

impl ApiError {
    /// The status, the error code and the message this error answers with.
    pub fn parts(self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::NotFound(what) => (StatusCode::NOT_FOUND, "not_found", what.to_string()),
            ApiError::BadRequest(msg) => (StatusCode::BAD_REQUEST, "bad_request", msg),
            ApiError::Conflict(msg) => (StatusCode::CONFLICT, "conflict", msg),
            ApiError::Gone(msg) => (StatusCode::GONE, "gone", msg),
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
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not answer that method".to_string(),
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is over [http] max_body_bytes".to_string(),
            ),
            ApiError::Unavailable(err) => {
                tracing::error!(error = %err, "api storage error");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage is unavailable".to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
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
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
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

/// The error body of every route.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `invalid`,
    /// `gone`, `too_large`, `unavailable`.
    pub code: String,
    pub message: String,
}

/// The documented error answers, one type per status, combined in the
/// handlers' `responses(...)`; their body is always [`ErrorBody`].
#[allow(dead_code)] // never built: they only describe answers
pub mod docs {
    use super::ErrorBody;

    #[derive(utoipa::IntoResponses)]
    #[response(status = 400, description = "a query or body that cannot be read")]
    pub struct BadRequest(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 401, description = "no valid bearer token")]
    pub struct Unauthorized(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 403, description = "an admin token is needed")]
    pub struct Forbidden(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 404, description = "no such resource")]
    pub struct NotFound(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 409, description = "conflicts with what is stored")]
    pub struct Conflict(ErrorBody);

    #[derive(utoipa::IntoResponses)]
    #[response(status = 422, description = "invalid; the message names the field")]
    pub struct Invalid(ErrorBody);
}

/// Maps a store conflict to 409 and a missing row to 404 with `what`.
fn store_error(err: StoreError, what: &'static str) -> ApiError {
    match err {
        StoreError::NotFound => ApiError::NotFound(what),
        StoreError::Conflict(msg) => ApiError::Conflict(msg),
        other => ApiError::Unavailable(other),
    }
}

/// A page of a list: `cursor` from the previous page's `next_cursor`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    pub limit: Option<i64>,
}

impl PageQuery {
    fn request(&self) -> ApiResult<ListRequest> {
        Ok(ListRequest {
            cursor: cursor(self.cursor.as_deref())?,
            limit: limit(self.limit)?,
        })
    }
}

/// Pages an in-memory list (already in id order) by the same cursor rules.
fn page_of<T>(all: Vec<T>, q: &PageQuery, id: impl Fn(&T) -> Uuid) -> ApiResult<Page<T>> {
    let req = q.request()?;
    Ok(page_by_key(all, req.cursor, req.limit, id))
}

/// Pages an in-memory list sorted by `key`: the items after `cursor`, and
/// the key of the last one when more follow.
fn page_by_key<T, K: PartialOrd + ToString>(
    all: Vec<T>,
    cursor: Option<K>,
    limit: i64,
    key: impl Fn(&T) -> K,
) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(0);
    let mut items: Vec<T> = all
        .into_iter()
        .filter(|t| cursor.as_ref().is_none_or(|c| key(t) > *c))
        .take(limit + 1)
        .collect();
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|t| key(t).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
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

/// Longest a readiness probe may take: a database that does not answer in
/// this time is not ready.
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready to take mail: the database answers and intake can commit. After a
/// failed intake commit (a full disk, a database refusing writes) it stays
/// `503` until a commit as large as the failed batch's largest message gets
/// through again — a later message, or the probe this route writes.
#[utoipa::path(get, path = "/readyz", security(()), responses(
    (status = 200, description = "the database answers and intake can commit"),
    (status = 503, description = "intake cannot commit, or the database does not answer"),
))]
async fn readyz(State(state): State<ApiState>) -> Response {
    let unready = |status: &str, error: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": status, "error": error})),
        )
            .into_response()
    };
    if let Some(failure) = state.intake.failure() {
        let probe = tokio::time::timeout(PROBE_DEADLINE, state.store.probe_write(failure.bytes));
        match probe.await {
            Ok(Ok(())) => state.intake.committed(),
            Ok(Err(err)) => {
                tracing::warn!(error = %err, since = %failure.at, "intake still cannot commit");
                return unready("intake cannot commit", failure.error);
            }
            Err(_) => return unready("intake cannot commit", "the probe timed out".into()),
        }
    }
    match tokio::time::timeout(PROBE_DEADLINE, state.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Ok(Err(err)) => unready("database unavailable", err.to_string()),
        Err(_) => unready("database unavailable", "no answer in time".into()),
    }
}

fn cursor(raw: Option<&str>) -> ApiResult<Option<Uuid>> {
    raw.map(|c| Uuid::parse_str(c).map_err(|_| ApiError::BadRequest("cursor is not valid".into())))
        .transpose()
}

fn path_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("not found"))
}

/// Liveness: every running part is up and the database answers. The body
/// lists the parts, each `running`, `restarting` (it died and starts again
/// after a backoff), `failed` or `stopped`.
#[utoipa::path(get, path = "/healthz", security(()), responses(
    (status = 200, description = "every part runs and the database answers"),
    (status = 503, description = "a part is down, or the database does not answer"),
))]
async fn healthz(State(state): State<ApiState>) -> Response {
    let parts = state.parts.parts();
    let (code, status) = match state.store.ping().await {
        Ok(()) if state.parts.all_running() => (StatusCode::OK, "ok"),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "a part is down"),
        Err(err) => {
            tracing::warn!(error = %err, "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    };
    (code, Json(json!({"status": status, "parts": parts}))).into_response()
}

/// Prometheus text: stored messages by status, replies by delivery status.
#[utoipa::path(get, path = "/metrics", security(()), responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 503, description = "the database does not answer", body = ErrorBody),
))]
async fn metrics(State(state): State<ApiState>) -> ApiResult<Response> {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP emailin_inbound_messages Stored inbound messages by processing status.\n\
         # TYPE emailin_inbound_messages gauge"
    );
    for (status, n) in state.store.inbound_counts().await? {
        let _ = writeln!(out, "emailin_inbound_messages{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP emailin_outbox_messages Replies by delivery status.\n\
         # TYPE emailin_outbox_messages gauge"
    );
    for (status, n) in state.store.outbox_counts().await? {
        let _ = writeln!(out, "emailin_outbox_messages{{status=\"{status}\"}} {n}");
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses(
    (status = 200, description = "the OpenAPI document of every route"),
    docs::Unauthorized,
))]
async fn openapi_json() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(openapi))
}

#[cfg(test)]
mod tests {
    /// Routes are only added through utoipa's `routes!`, so the document
    /// cannot miss one (the integration test checks the document against
    /// the running router).
    #[test]
    fn no_route_bypasses_the_document() {
        for (file, source) in [
            ("mod.rs", include_str!("mod.rs")),
            ("admin/mod.rs", include_str!("admin/mod.rs")),
            ("admin/pipelines.rs", include_str!("admin/pipelines.rs")),
            ("admin/blocked.rs", include_str!("admin/blocked.rs")),
            ("contacts.rs", include_str!("contacts.rs")),
            ("inbound.rs", include_str!("inbound.rs")),
            ("records.rs", include_str!("records.rs")),
            ("auth.rs", include_str!("auth.rs")),
        ] {
            let bypass = [".route(", ".route_service(", ".nest("];
            for needle in bypass {
                let hits = source.matches(needle).count();
                // This test's own list names each needle once.
                let allowed = usize::from(file == "mod.rs");
                assert_eq!(hits, allowed, "{file} calls {needle}");
            }
        }
    }

    #[test]
    fn the_document_describes_every_schema_it_names() {
        let doc = serde_json::to_value(super::openapi()).expect("serialisable");
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for reference in text.split("\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap_or_default();
            assert!(
                schemas.contains_key(name),
                "schema {name} is referenced but missing"
            );
        }
    }
}
