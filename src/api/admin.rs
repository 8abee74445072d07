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
    pub(crate) name: String,
    /// In order; at least one `open`.
    pub(crate) stages: Vec<StageInput>,
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
    Ok((StatusCode::CREATED, Json(new_pipeline(&state, body).await?)))
}

/// Creates a pipeline with its stages.
pub(crate) async fn new_pipeline(state: &ApiState, body: NewPipeline) -> ApiResult<PipelineView> {
    let name = check_name(&body.name)?;
    check_stages(&body.stages)?;
    let pipeline = state
        .store
        .create_pipeline(name, &body.stages)
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(state).await?;
    Ok(pipeline)
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
    pub(crate) name: Option<String>,
    /// The whole new stage list, in order: stages match by `id`, else by
    /// name; one left out is removed only if nothing refers to it.
    pub(crate) stages: Option<Vec<StageInput>>,
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
    Ok(Json(change_pipeline(&state, path_id(&id)?, body).await?))
}

/// Renames a pipeline or replaces its stages.
pub(crate) async fn change_pipeline(
    state: &ApiState,
    id: Uuid,
    body: PipelinePatch,
) -> ApiResult<PipelineView> {
    let name = body.name.as_deref().map(check_name).transpose()?;
    if let Some(stages) = &body.stages {
        check_stages(stages)?;
    }
    let pipeline = state
        .store
        .update_pipeline(id, name, body.stages.as_deref())
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(state).await?;
    Ok(pipeline)
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
    remove_pipeline(&state, path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a pipeline without records or aliases.
pub(crate) async fn remove_pipeline(state: &ApiState, id: Uuid) -> ApiResult<()> {
    state
        .store
        .delete_pipeline(id)
        .await
        .map_err(|e| store_error(e, "pipeline not found"))?;
    reload_directory(state).await
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
    alias.address = address;
    store_alias(&state, &alias).await?;
    Ok(Json(alias))
}

/// Creates or updates an alias; routing uses it at once.
pub(crate) async fn store_alias(state: &ApiState, alias: &AliasConfig) -> ApiResult<()> {
    alias.check_lengths().map_err(ApiError::Unprocessable)?;
    match state.store.save_alias(alias).await {
        Ok(()) => {}
        Err(StoreError::Conflict(msg)) => return Err(ApiError::Unprocessable(msg)),
        Err(err) => return Err(err.into()),
    }
    reload_directory(state).await
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
    let all = all_blocked(&state).await?;
    Ok(Json(page_by_key(all, q.cursor, limit, |b| b.entry.clone())))
}

/// Every blocked sender: the configuration file's and those added since, by entry.
pub(crate) async fn all_blocked(state: &ApiState) -> ApiResult<Vec<BlockedSender>> {
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
    Ok(all)
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
    Ok((StatusCode::CREATED, Json(block(&state, &body.entry).await?)))
}

/// Blocks an address or a domain; SMTP and processing use it at once.
pub(crate) async fn block(state: &ApiState, entry: &str) -> ApiResult<BlockedSender> {
    let entry = BlockList::normalize(entry);
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
    if in_config(state, &entry) {
        return Err(ApiError::Conflict(
            "entry: it is blocked in the configuration file".into(),
        ));
    }
    let added = state
        .store
        .add_blocked_sender(&entry)
        .await
        .map_err(|e| store_error(e, "blocked sender not found"))?;
    reload_blocked(state).await?;
    Ok(added)
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
    unblock(&state, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unblocks an entry added through the API or the UI.
pub(crate) async fn unblock(state: &ApiState, entry: &str) -> ApiResult<()> {
    let entry = BlockList::normalize(entry);
    if in_config(state, &entry) {
        return Err(ApiError::Conflict(
            "the entry is set in the configuration file; remove it there".into(),
        ));
    }
    if !state.store.remove_blocked_sender(&entry).await? {
        return Err(ApiError::NotFound("blocked sender not found"));
    }
    reload_blocked(state).await
}
