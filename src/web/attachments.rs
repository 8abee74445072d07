//! Attachments and the HTML view of a message, for the record page.
//!
//! A message's HTML is mail from outside: it is served on its own, under a
//! policy that runs no script, loads nothing from elsewhere (no tracking
//! pixels) and shows only this service's images, and the record page
//! frames it in a sandbox.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use uuid::Uuid;

use super::session::Viewer;
use super::{PageError, PageResult};
use crate::api::ApiState;
use crate::api::attachments::{find, rewrite_cids};

/// Where the UI serves an attachment's bytes.
pub fn url(id: Uuid) -> String {
    format!("/attachments/{id}")
}

/// Where the UI serves a message's HTML.
pub fn html_url(message: Uuid) -> String {
    format!("/messages/{message}/html")
}

/// The policy an HTML message is shown under.
const HTML_POLICY: &str = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; \
     font-src data:; sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox";

fn id_of(raw: &str) -> Result<Uuid, PageError> {
    Uuid::parse_str(raw).map_err(|_| PageError::NotFound("There is no such attachment."))
}

pub(super) async fn file(
    State(state): State<ApiState>,
    _: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    find(state.store.as_ref(), id_of(&id)?)
        .await?
        .ok_or(PageError::NotFound("There is no such attachment."))
}

pub(super) async fn message_html(
    State(state): State<ApiState>,
    _: Viewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such message."))?;
    let found = state
        .store
        .message_html(id)
        .await?
        .ok_or(PageError::NotFound("There is no such message."))?;
    let html = found
        .html
        .ok_or(PageError::NotFound("This message has no HTML part."))?;
    let html = rewrite_cids(&html, &found.attachments, |a| url(a.id));
    // Links open outside the frame.
    let body = format!("<!doctype html><base target=\"_blank\">{html}");
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(HTML_POLICY),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            ),
        ],
        body,
    )
        .into_response())
}
