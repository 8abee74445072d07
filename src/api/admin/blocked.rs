//! Blocked senders: the configuration file's and those added through the API.

use super::*;

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
