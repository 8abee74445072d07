//! Contacts: list and search, read with their records.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, ApiResult, ApiState, Params, cursor, docs, limit, path_id};
use crate::domain::limits;
use crate::store::{ContactDetail, ContactFilter, ContactView, Page};

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
