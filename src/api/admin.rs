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

use super::auth::{self, Admin};
use super::{
    ApiError, ApiResult, ApiState, Body, ErrorBody, PageQuery, Params, docs, limit, page_by_key,
    page_of, path_id, store_error,
};
use crate::config::AliasConfig;
use crate::domain::{BlockList, EmailAddress, StageKind, limits};
use crate::store::{
    BlockedSender, Page, PipelineView, Role, StageInput, StoreError, TokenView, UserView,
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
    let name = check_name(&body.name)?;
    let role = Role::parse(&body.role)
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
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "id": view.id, "name": view.name, "role": view.role })),
    ))
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
    email: String,
    /// Shown as the sender of their replies.
    #[serde(default)]
    name: String,
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
    let email = EmailAddress::parse(&body.email)
        .map_err(|e| ApiError::Unprocessable(format!("email: {e}")))?;
    limits::check_chars("name", &body.name, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    let user = state
        .store
        .create_user(email.as_str(), body.name.trim())
        .await
        .map_err(|e| store_error(e, "user not found"))?;
    Ok((StatusCode::CREATED, Json(user)))
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
    name: String,
}

/// Renames a user (their address is their identity).
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
    let id = path_id(&id)?;
    limits::check_chars("name", &body.name, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    let user = state
        .store
        .update_user(id, body.name.trim())
        .await
        .map_err(|e| store_error(e, "user not found"))?;
    Ok(Json(user))
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

/// Pipelines with their stages in order, oldest first.
#[utoipa::path(get, path = "/api/v1/pipelines", params(PageQuery), responses(
    (status = 200, body = Page<PipelineView>),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_pipelines(
    _: Admin,
    State(state): State<ApiState>,
    Params(q): Params<PageQuery>,
) -> ApiResult<Json<Page<PipelineView>>> {
    Ok(Json(state.store.list_pipelines(&q.request()?).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPipeline {
    name: String,
    /// In order; at least one `open`.
    stages: Vec<StageInput>,
}

/// Checks a stage list: names present and unique, kinds known, one open stage.
fn check_stages(stages: &[StageInput]) -> ApiResult<()> {
    limits::check_items("stages", stages, limits::LIST_ITEMS).map_err(ApiError::Unprocessable)?;
    let mut names = HashSet::new();
    for (i, stage) in stages.iter().enumerate() {
        limits::check_chars(
            &format!("stages[{i}].name"),
            &stage.name,
            limits::NAME_CHARS,
        )
        .map_err(ApiError::Unprocessable)?;
        if stage.name.trim().is_empty() || stage.name != stage.name.trim() {
            return Err(ApiError::Unprocessable(format!(
                "stages[{i}].name: must not be empty or padded"
            )));
        }
        if StageKind::parse(&stage.kind).is_none() {
            return Err(ApiError::Unprocessable(format!(
                "stages[{i}].kind: must be open or closed"
            )));
        }
        if !names.insert(stage.name.as_str()) {
            return Err(ApiError::Unprocessable(format!(
                "stages[{i}].name: {:?} appears twice",
                stage.name
            )));
        }
    }
    if !stages.iter().any(|s| s.kind == "open") {
        return Err(ApiError::Unprocessable(
            "stages: a pipeline needs at least one open stage".into(),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> ApiResult<&str> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::Unprocessable("name: must not be empty".into()));
    }
    limits::check_chars("name", name, limits::NAME_CHARS).map_err(ApiError::Unprocessable)?;
    Ok(name)
}

/// Swaps the routing snapshot SMTP and processing use.
async fn reload_directory(state: &ApiState) -> ApiResult<()> {
    state.directory.replace(state.store.load_directory().await?);
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/pipelines", request_body = NewPipeline, responses(
    (status = 201, body = PipelineView),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn create_pipeline(
    _: Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewPipeline>,
) -> ApiResult<impl IntoResponse> {
    let name = check_name(&body.name)?;
    check_stages(&body.stages)?;
    let pipeline = state
        .store
        .create_pipeline(name, &body.stages)
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(&state).await?;
    Ok((StatusCode::CREATED, Json(pipeline)))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = PipelineView),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn get_pipeline(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<PipelineView>> {
    let pipeline = state.store.get_pipeline(path_id(&id)?).await?;
    pipeline
        .map(Json)
        .ok_or(ApiError::NotFound("pipeline not found"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelinePatch {
    name: Option<String>,
    /// The whole new stage list, in order: stages match by `id`, else by
    /// name; one left out is removed only if nothing refers to it.
    stages: Option<Vec<StageInput>>,
}

/// Renames a pipeline or replaces its stages.
#[utoipa::path(patch, path = "/api/v1/pipelines/{id}", params(("id" = uuid::Uuid, Path)), request_body = PipelinePatch, responses(
    (status = 200, body = PipelineView),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn update_pipeline(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(body): Body<PipelinePatch>,
) -> ApiResult<Json<PipelineView>> {
    let id = path_id(&id)?;
    let name = body.name.as_deref().map(check_name).transpose()?;
    if let Some(stages) = &body.stages {
        check_stages(stages)?;
    }
    let pipeline = state
        .store
        .update_pipeline(id, name, body.stages.as_deref())
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(&state).await?;
    Ok(Json(pipeline))
}

/// Deletes a pipeline without records or aliases (409 otherwise).
#[utoipa::path(delete, path = "/api/v1/pipelines/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 204, description = "deleted"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Conflict,
))]
pub async fn delete_pipeline(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .store
        .delete_pipeline(path_id(&id)?)
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AliasQuery {
    /// The `next_cursor` of the previous page (an address).
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Aliases by address, as configured.
#[utoipa::path(get, path = "/api/v1/aliases", params(AliasQuery), responses(
    (status = 200, body = Page<AliasConfig>),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_aliases(
    _: Admin,
    State(state): State<ApiState>,
    Params(q): Params<AliasQuery>,
) -> ApiResult<Json<Page<AliasConfig>>> {
    let limit = limit(q.limit)?;
    Ok(Json(
        state
            .store
            .list_aliases(q.cursor.as_deref(), None, limit)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/aliases/{address}", params(("address" = String, Path)), responses(
    (status = 200, body = AliasConfig),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
))]
pub async fn get_alias(
    _: Admin,
    State(state): State<ApiState>,
    Path(address): Path<String>,
) -> ApiResult<Json<AliasConfig>> {
    let page = state.store.list_aliases(None, Some(&address), 1).await?;
    page.items
        .into_iter()
        .next()
        .map(Json)
        .ok_or(ApiError::NotFound("alias not found"))
}

/// Creates or updates an alias; the running listener and processor use it at
/// once (disabling one makes RCPT answer 550 and keeps every record).
#[utoipa::path(put, path = "/api/v1/aliases/{address}", params(("address" = String, Path)), request_body = AliasConfig, responses(
    (status = 200, body = AliasConfig),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Invalid,
))]
pub async fn save_alias(
    _: Admin,
    State(state): State<ApiState>,
    Path(address): Path<String>,
    Body(mut alias): Body<AliasConfig>,
) -> ApiResult<Json<AliasConfig>> {
    if !alias.address.eq_ignore_ascii_case(&address) {
        return Err(ApiError::Unprocessable(
            "address: must match the address in the path".into(),
        ));
    }
    alias.check_lengths().map_err(ApiError::Unprocessable)?;
    alias.address = address;
    match state.store.save_alias(&alias).await {
        Ok(()) => {}
        Err(StoreError::Conflict(msg)) => return Err(ApiError::Unprocessable(msg)),
        Err(err) => return Err(err.into()),
    }
    reload_directory(&state).await?;
    Ok(Json(alias))
}

/// Blocked senders: the configuration file's and those added here, by entry.
#[utoipa::path(get, path = "/api/v1/blocked-senders", params(AliasQuery), responses(
    (status = 200, body = Page<BlockedSender>),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
))]
pub async fn list_blocked(
    _: Admin,
    State(state): State<ApiState>,
    Params(q): Params<AliasQuery>,
) -> ApiResult<Json<Page<BlockedSender>>> {
    let limit = limit(q.limit)?;
    let mut all: Vec<BlockedSender> = state
        .settings
        .blocked_senders
        .iter()
        .map(|e| BlockedSender {
            entry: BlockList::normalize(e),
            source: "config",
            created_at: None,
        })
        .collect();
    all.extend(state.store.list_blocked_senders().await?);
    all.sort_by(|a, b| a.entry.cmp(&b.entry));
    Ok(Json(page_by_key(all, q.cursor, limit, |b| b.entry.clone())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBlocked {
    /// An address (`spam@example.com`) or a domain (`example.com`, subdomains included).
    entry: String,
}

/// Whether the configuration file blocks `entry` (normalized).
fn in_config(state: &ApiState, entry: &str) -> bool {
    state
        .settings
        .blocked_senders
        .iter()
        .any(|e| BlockList::normalize(e) == entry)
}

/// Refreshes the list SMTP and processing check.
async fn reload_blocked(state: &ApiState) -> ApiResult<()> {
    let list = crate::ingest::block_list(&state.settings, state.store.as_ref()).await?;
    state.blocked.replace(list);
    Ok(())
}

/// Blocks an address or a domain at once: SMTP refuses it at MAIL FROM
/// (`550 5.7.1`), other mail from it is quarantined (`blocked`).
#[utoipa::path(post, path = "/api/v1/blocked-senders", request_body = NewBlocked, responses(
    (status = 201, body = BlockedSender),
    docs::BadRequest,
    docs::Unauthorized,
    docs::Forbidden,
    docs::Conflict,
    docs::Invalid,
))]
pub async fn add_blocked(
    _: Admin,
    State(state): State<ApiState>,
    Body(body): Body<NewBlocked>,
) -> ApiResult<impl IntoResponse> {
    let entry = BlockList::normalize(&body.entry);
    let probe = if entry.contains('@') {
        entry.clone()
    } else {
        format!("x@{entry}")
    };
    if EmailAddress::parse(&probe).is_err() {
        return Err(ApiError::Unprocessable(
            "entry: must be an address or a domain".into(),
        ));
    }
    if in_config(&state, &entry) {
        return Err(ApiError::Conflict(
            "entry: it is blocked in the configuration file".into(),
        ));
    }
    let added = state
        .store
        .add_blocked_sender(&entry)
        .await
        .map_err(|e| store_error(e, "blocked sender not found"))?;
    reload_blocked(&state).await?;
    Ok((StatusCode::CREATED, Json(added)))
}

/// Unblocks an entry added through the API.
#[utoipa::path(delete, path = "/api/v1/blocked-senders/{entry}", params(("entry" = String, Path)), responses(
    (status = 204, description = "unblocked"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    (status = 409, description = "set in the configuration file", body = ErrorBody),
))]
pub async fn remove_blocked(
    _: Admin,
    State(state): State<ApiState>,
    Path(entry): Path<String>,
) -> ApiResult<StatusCode> {
    let entry = BlockList::normalize(&entry);
    if in_config(&state, &entry) {
        return Err(ApiError::Conflict(
            "the entry is set in the configuration file; remove it there".into(),
        ));
    }
    if !state.store.remove_blocked_sender(&entry).await? {
        return Err(ApiError::NotFound("blocked sender not found"));
    }
    reload_blocked(&state).await?;
    Ok(StatusCode::NO_CONTENT)
}
