//! Webhooks (admin): list, add, remove, their deliveries, and replaying
//! failed deliveries.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Admin;
use super::{ApiError, ApiResult, ApiState, Body, docs, path_id, store_error};
use crate::store::{DeliveryRow, StoredWebhook};
use crate::webhooks::{check_webhook, new_secret};

/// A webhook as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Empty: every event.
    pub events: Vec<String>,
    /// `config` (the configuration file) or `api`.
    pub source: String,
}

/// Every webhook the service delivers to.
pub(crate) async fn all(state: &ApiState) -> ApiResult<Vec<WebhookView>> {
    Ok(state
        .webhooks
        .all()
        .await?
        .into_iter()
        .map(|w| WebhookView {
            id: w.id,
            url: w.url,
            events: w.events,
            source: w.source.to_string(),
        })
        .collect())
}

/// Webhooks: the configuration file's and those added here.
#[utoipa::path(get, path = "/api/v1/webhooks", responses(
    (status = 200, body = Vec<WebhookView>),
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_webhooks(
    _: Admin,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<WebhookView>>> {
    Ok(Json(all(&state).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `https://…`, or `http://` to a loopback address.
    pub(crate) url: String,
    /// `whsec_` + base64 of 24 to 64 bytes; made for you when left out.
    pub(crate) secret: Option<String>,
    /// Default: every event.
    #[serde(default)]
    pub(crate) events: Vec<String>,
}

/// Adds a webhook; returns its secret (the only time it is shown).
pub(crate) async fn add(state: &ApiState, body: NewWebhook) -> ApiResult<(Uuid, String)> {
    let secret = body.secret.unwrap_or_else(new_secret);
    check_webhook(&body.url, &secret, &body.events).map_err(ApiError::Unprocessable)?;
    let url = body.url.trim().to_string();
    if state.settings.webhooks.iter().any(|w| w.url == url) {
        return Err(ApiError::Conflict(
            "url: the configuration file has a webhook with this URL".into(),
        ));
    }
    let webhook = StoredWebhook {
        id: Uuid::now_v7(),
        url,
        secret: secret.clone(),
        events: body.events,
        created_at: chrono::Utc::now(),
    };
    state
        .store
        .add_webhook(&webhook)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(msg) => ApiError::Conflict(msg),
            other => other.into(),
        })?;
    Ok((webhook.id, secret))
}

/// Adds a webhook. The answer carries its secret, shown only this once.
#[utoipa::path(post, path = "/api/v1/webhooks", request_body = NewWebhook, responses(
    (status = 201, description = "the webhook's id and secret"),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn add_webhook(
    _: Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewWebhook>,
) -> ApiResult<impl IntoResponse> {
    let (id, secret) = add(&state, body).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "secret": secret })),
    ))
}

/// Removes a webhook added through the API (its deliveries stay listed).
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", params(("id" = Uuid, Path)), responses(
    (status = 204, description = "removed"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn remove_webhook(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.remove_webhook(path_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook not found"))
    }
}

/// Whether a webhook exists, by id.
pub(crate) async fn known(state: &ApiState, id: Uuid) -> ApiResult<()> {
    let found = all(state).await?.iter().any(|w| w.id == id);
    found
        .then_some(())
        .ok_or(ApiError::NotFound("webhook not found"))
}

/// A webhook's latest 200 deliveries, newest first, with the receiver's answers.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", params(("id" = Uuid, Path)), responses(
    (status = 200, body = Vec<DeliveryRow>),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn list_deliveries(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<DeliveryRow>>> {
    let id = path_id(&id)?;
    known(&state, id).await?;
    Ok(Json(state.store.list_deliveries(id, 200).await?))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// One delivery's id; left out: every failed delivery of the webhook.
    pub(crate) delivery: Option<String>,
}

/// Queues failed deliveries again.
pub(crate) async fn replay(state: &ApiState, id: Uuid, only: Option<&str>) -> ApiResult<u64> {
    known(state, id).await?;
    let n = state
        .store
        .replay_deliveries(id, only)
        .await
        .map_err(|e| store_error(e, "webhook not found"))?;
    state.webhooks.wake();
    Ok(n)
}

/// Sends failed deliveries again (one, or all of the webhook's), under
/// their own `webhook-id`.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/replay", params(("id" = Uuid, Path)), request_body = Replay, responses(
    (status = 202, description = "how many deliveries were queued again"),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Invalid,
))]
pub async fn replay_deliveries(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<Replay>,
) -> ApiResult<impl IntoResponse> {
    let n = replay(&state, path_id(&id)?, body.delivery.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "queued": n }))))
}
