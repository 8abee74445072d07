//! Pipelines with their stages, and aliases: changes reach the running
//! SMTP listener and processor at once (the routing snapshot is swapped).

use super::*;

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

pub(super) fn check_name(name: &str) -> ApiResult<&str> {
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
    pub(super) cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    pub(super) limit: Option<i64>,
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
