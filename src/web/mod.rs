//! The team's web UI: server-rendered pages (maud templates, checked at
//! compile time) with a little embedded JS (htmx, and `app.js` for the live
//! board). Served by the HTTP listener next to the API; it needs a login
//! (see [`session`]), never a bearer token, and works records through the
//! same functions the API handlers use.
//!
//! Every page reads without JS; forms post and redirect back (303), and
//! state-changing requests carry the session's CSRF token.

mod admin;
pub mod assets;
mod attachments;
mod board;
mod contacts;
mod conversation;
pub mod invite;
mod layout;
mod login;
mod me;
mod record;
mod search;
pub mod session;
mod unsubscribe;
mod webhooks;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::api::{ApiError, ApiState};

/// The UI's routes, to merge into the API's router.
pub fn routes(state: &ApiState) -> Router<ApiState> {
    let limiter = session::LoginLimiter::new(&state.settings.http);
    let pages = Router::new()
        .route("/", get(board::page))
        .route("/board/columns", get(board::columns))
        .route("/events", get(board::events))
        .route("/logout", post(login::logout))
        .route("/records/{number}", get(record::page))
        .route("/records/{number}/stage", post(record::set_stage))
        .route("/records/{number}/owner", post(record::set_owner))
        .route("/records/{number}/tags", post(record::set_tags))
        .route("/records/{number}/reply", post(record::reply))
        .route("/records/{number}/comment", post(record::comment))
        .route("/records/{number}/merge", post(conversation::merge_into))
        .route("/records/{number}/split", post(conversation::split_off))
        .route(
            "/records/{number}/forward",
            post(conversation::forward_message),
        )
        .route("/search", get(search::page))
        .route("/me", get(me::page))
        .route("/me/notify", post(me::set_notify))
        .route("/me/password", post(me::set_password))
        .route("/contacts", get(contacts::list))
        .route("/contacts/{id}", get(contacts::page))
        .route("/contacts/{id}/unsubscribe", post(contacts::unsubscribe))
        .route("/contacts/{id}/erase", post(contacts::erase))
        .route("/attachments/{id}", get(attachments::file))
        .route("/messages/{id}/html", get(attachments::message_html))
        .merge(admin::routes())
        .merge(webhooks::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::guard,
        ));
    Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/set-password", get(invite::form).post(invite::submit))
        .route("/assets/{name}", get(assets::serve))
        .route(
            "/unsubscribe/{token}",
            get(unsubscribe::form).post(unsubscribe::submit),
        )
        .merge(pages)
        .layer(Extension(limiter))
}

/// A 303 to `to`.
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// `text` percent-encoded for a query string.
pub fn escape_query(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum PageError {
    /// No session: to the login page.
    Login,
    /// An admin page, asked by a member.
    Forbidden,
    /// A state-changing request without the session's CSRF token.
    Csrf,
    NotFound(&'static str),
    /// A link that was used or expired.
    Gone(&'static str),
    TooLarge,
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        PageError::Api(err)
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        PageError::Api(err.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::Login => return see_other("/login"),
            PageError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Admins only",
                "This page is for admins. Ask an admin if you need something changed here."
                    .to_string(),
            ),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "This form has expired",
                "The form was sent without its security token (or from another page). \
                 Go back, reload the page and send it again."
                    .to_string(),
            ),
            PageError::NotFound(what) => (StatusCode::NOT_FOUND, "Not found", what.to_string()),
            PageError::Gone(what) => (
                StatusCode::GONE,
                "This link no longer works",
                what.to_string(),
            ),
            PageError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "What you sent is over the size this server takes.".to_string(),
            ),
            PageError::Api(err) => {
                let (status, _, message) = err.parts();
                (status, "Something went wrong", message)
            }
        };
        (status, layout::bare(title, &message)).into_response()
    }
}

/// A page's result.
pub type PageResult<T = Response> = Result<T, PageError>;
