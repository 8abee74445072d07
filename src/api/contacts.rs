//! Contacts: list and search, read with their records, mark unsubscribed,
//! and erase for good.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::auth::Admin;
use super::{ApiError, ApiResult, ApiState, Body, Params, cursor, docs, limit, path_id};
use crate::domain::limits;
use crate::store::{ContactDetail, ContactFilter, ContactView, Erasure, Page, StoreError};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ContactQuery {
    /// Part of the address or the name, any case.
    q: Option<String>,
    /// Exactly this address.
    email: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Items per page, 1 to 500 (default 50).
    limit: Option<i64>,
}

/// Contacts, searched by address or name.
#[utoipa::path(get, path = "/api/v1/contacts", params(ContactQuery), responses(
    (status = 200, body = Page<ContactView>),
    docs::BadRequest,
    docs::Unauthorized,
))]
pub async fn list_contacts(
    State(state): State<ApiState>,
    Params(q): Params<ContactQuery>,
) -> ApiResult<Json<Page<ContactView>>> {
    for value in [&q.q, &q.email].into_iter().flatten() {
        limits::check_chars("q", value, limits::FILTER_CHARS).map_err(ApiError::BadRequest)?;
    }
    let filter = ContactFilter {
        q: q.q.filter(|s| !s.trim().is_empty()),
        email: q.email,
        cursor: cursor(q.cursor.as_deref())?,
        limit: limit(q.limit)?,
    };
    Ok(Json(state.store.list_contacts(&filter).await?))
}

/// A contact with its records, newest first.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = ContactDetail),
    docs::Unauthorized,
    docs::NotFound,
))]
pub async fn get_contact(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ContactDetail>> {
    let contact = state.store.get_contact(path_id(&id)?).await?;
    contact
        .map(Json)
        .ok_or(ApiError::NotFound("contact not found"))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    /// `true`: the contact asked for no more mail (replies then need
    /// `"force": true`); `false` clears it.
    unsubscribed: Option<bool>,
}

/// Marks a contact unsubscribed, or clears the mark.
#[utoipa::path(patch, path = "/api/v1/contacts/{id}", params(("id" = uuid::Uuid, Path)),
    request_body = ContactPatch, responses(
    (status = 200, body = ContactDetail),
    docs::BadRequest,
    docs::Unauthorized,
    docs::NotFound,
    docs::Invalid,
))]
pub async fn update_contact(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Body(patch): Body<ContactPatch>,
) -> ApiResult<Json<ContactDetail>> {
    let id = path_id(&id)?;
    if let Some(unsubscribed) = patch.unsubscribed {
        state.store.set_unsubscribed(id, unsubscribed).await?;
    }
    let contact = state.store.get_contact(id).await?;
    contact
        .map(Json)
        .ok_or(ApiError::NotFound("contact not found"))
}

/// Erases a contact for good: their raw mail, message bodies, subjects and
/// attachments everywhere; the contact and its records stay, anonymised,
/// with a `contact_erased` event. It cannot be undone.
#[utoipa::path(post, path = "/api/v1/contacts/{id}/erase", params(("id" = uuid::Uuid, Path)), responses(
    (status = 200, body = Erasure, description = "what was erased"),
    docs::Unauthorized,
    docs::Forbidden,
    docs::NotFound,
    docs::Conflict,
))]
pub async fn erase_contact(
    Admin(caller): Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Erasure>> {
    let id = path_id(&id)?;
    let erased = erase(&state, id, &caller.0.name).await?;
    Ok(Json(erased))
}

/// Erases a contact as `actor` and says so in the log.
pub async fn erase(state: &ApiState, id: uuid::Uuid, actor: &str) -> ApiResult<Erasure> {
    let erased = state
        .store
        .erase_contact(id, actor)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("contact not found"),
            StoreError::Conflict(why) => ApiError::Conflict(why),
            other => other.into(),
        })?;
    tracing::warn!(contact = %id, actor, records = erased.records, messages = erased.messages,
        attachments = erased.attachments, raw = erased.raw, "contact_erased");
    Ok(erased)
}
