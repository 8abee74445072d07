//! Admin resources: API tokens, users, pipelines with their stages, and
//! aliases. Changes to pipelines and aliases reach the running SMTP
//! listener and processor at once (the routing snapshot is swapped).

use std::collections::HashSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::{self, Admin};
use super::{
    ApiError, ApiResult, ApiState, Body, ErrorBody, PageQuery, Params, docs, limit, page_by_key,
    page_of, path_id, store_error,
};
use crate::config::AliasConfig;
use crate::domain::{BlockList, EmailAddress, StageKind, limits};
use crate::store::{
    BlockedSender, Page, PipelineView, Role, StageInput, StoreError, TokenView, UserChange,
    UserView,
};

/// API tokens (never the tokens themselves), oldest first.
#[utoipa::path(get, path = "/api/v1/tokens", params(PageQuery), responses(
    (status = 200, body = Page<TokenView>),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_tokens(
    _: Admin,
    State(state): State<ApiState>,
    Params(q): Params<PageQuery>,
) -> ApiResult<Json<Page<TokenView>>> {
    Ok(Json(page_of(state.store.list_tokens().await?, &q, |t| {
        t.id
    })?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// `admin` or `member`.
    role: String,
}

/// Creates a token; the answer is the only time the token is shown.
#[utoipa::path(post, path = "/api/v1/tokens", request_body = NewToken, responses(
    (status = 201, description = "the token (shown once), its id, name and role"),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn create_token(
    _: Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let (token, view) = new_token(&state, &body.name, &body.role).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "id": view.id, "name": view.name, "role": view.role })),
    ))
}

/// Creates a token; returns it (to show once) and what is stored of it.
pub(crate) async fn new_token(
    state: &ApiState,
    name: &str,
    role: &str,
) -> ApiResult<(String, TokenView)> {
    let name = check_name(name)?;
    let role = Role::parse(role)
        .ok_or_else(|| ApiError::Unprocessable("role: must be admin or member".into()))?;
    let token = auth::new_token();
    let view = state
        .store
        .create_token(name, role, &auth::token_hash(&token))
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => {
                ApiError::Conflict("name: a token with this name exists".into())
            }
            other => other.into(),
        })?;
    Ok((token, view))
}

/// Revokes a token by id or name.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", params(("id" = String, Path, description = "id or name")), responses(
    (status = 204, description = "revoked"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn revoke_token(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if state.store.revoke_token(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token not found"))
    }
}

/// Users (the people records and aliases are assigned to), oldest first.
#[utoipa::path(get, path = "/api/v1/users", params(PageQuery), responses(
    (status = 200, body = Page<UserView>),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_users(
    _: Admin,
    State(state): State<ApiState>,
    Params(q): Params<PageQuery>,
) -> ApiResult<Json<Page<UserView>>> {
    Ok(Json(state.store.list_users(&q.request()?).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub(crate) email: String,
    /// Shown as the sender of their replies.
    #[serde(default)]
    pub(crate) name: String,
    /// `admin` or `member` (the default).
    pub(crate) role: Option<Role>,
    /// Lets the user log in to the web UI (at least 10 characters).
    pub(crate) password: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/users", request_body = NewUser, responses(
    (status = 201, body = UserView),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn create_user(
    _: Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewUser>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(new_user(&state, body).await?)))
}

/// Creates a user, with a password when one is given.
pub(crate) async fn new_user(state: &ApiState, body: NewUser) -> ApiResult<UserView> {
    let email = EmailAddress::parse(&body.email)
        .map_err(|e| ApiError::Unprocessable(format!("email: {e}")))?;
    limits::check_chars("name", &body.name, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    let hash = body
        .password
        .as_deref()
        .map(auth::hash_password)
        .transpose()
        .map_err(ApiError::Unprocessable)?;
    let user = state
        .store
        .create_user(
            email.as_str(),
            body.name.trim(),
            body.role.unwrap_or(Role::Member),
        )
        .await
        .map_err(|e| store_error(e, "user not found"))?;
    match hash {
        Some(hash) => {
            state.store.set_password(user.id, Some(&hash)).await?;
            let user = state.store.get_user(user.id).await?;
            user.ok_or(ApiError::NotFound("user not found"))
        }
        None => Ok(user),
    }
}

#[utoipa::path(get, path = "/api/v1/users/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = UserView),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn get_user(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let user = state.store.get_user(path_id(&id)?).await?;
    user.map(Json).ok_or(ApiError::NotFound("user not found"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub(crate) name: Option<String>,
    pub(crate) role: Option<Role>,
    /// A new password (ends the user's web sessions); `null` leaves it.
    pub(crate) password: Option<String>,
    /// Ends every web session of the user.
    #[serde(default)]
    pub(crate) sign_out: bool,
    /// Mail about their records and mentions (on by default).
    pub(crate) notify: Option<bool>,
}

/// Renames a user, changes their role or password, or signs them out
/// everywhere (their address is their identity).
#[utoipa::path(patch, path = "/api/v1/users/{id}", params(("id" = uuid::Uuid, Path)), request_body = UserPatch, responses(
    (status = 200, body = UserView),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Invalid,
))]
pub async fn update_user(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<UserPatch>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(change_user(&state, path_id(&id)?, body).await?))
}

/// Changes a user's name, role or password, or ends their sessions.
pub(crate) async fn change_user(
    state: &ApiState,
    id: Uuid,
    body: UserPatch,
) -> ApiResult<UserView> {
    if let Some(name) = &body.name {
        limits::check_chars("name", name, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    }
    let hash = body
        .password
        .as_deref()
        .map(auth::hash_password)
        .transpose()
        .map_err(ApiError::Unprocessable)?;
    let change = UserChange {
        name: body.name.map(|n| n.trim().to_string()),
        role: body.role,
        notify: body.notify,
    };
    state
        .store
        .update_user(id, &change)
        .await
        .map_err(|e| store_error(e, "user not found"))?;
    if let Some(hash) = hash {
        state.store.set_password(id, Some(&hash)).await?;
    }
    if body.sign_out {
        state.store.revoke_user_sessions(id).await?;
    }
    let user = state.store.get_user(id).await?;
    user.ok_or(ApiError::NotFound("user not found"))
}

/// Deletes a user who owns nothing (409 otherwise: reassign first).
#[utoipa::path(delete, path = "/api/v1/users/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 204, description = "deleted"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Conflict,
))]
pub async fn delete_user(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_user(path_id(&id)?)
        .await
        .map_err(|e| store_error(e, "user not found"))?;
    Ok(StatusCode::NO_CONTENT)
}

mod blocked;
mod pipelines;
pub use blocked::*;
pub use pipelines::*;
