//! `/unsubscribe/{token}`: the one-click link (RFC 8058) of notification
//! mail. A mail client POSTs `List-Unsubscribe=One-Click` to it without a
//! session; a person who opens it gets a button that does the same. The
//! signed token is the only proof needed, and it only turns mail off.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use maud::html;

use super::layout;
use super::{PageError, PageResult};
use crate::api::ApiState;
use crate::store::UserChange;

fn user_of(state: &ApiState, token: &str) -> Result<uuid::Uuid, PageError> {
    state
        .outbound
        .key
        .verify_unsubscribe(token)
        .ok_or(PageError::NotFound("This unsubscribe link is not valid."))
}

/// `GET`: what the link does, and the button.
pub async fn form(State(state): State<ApiState>, Path(token): Path<String>) -> PageResult {
    user_of(&state, &token)?;
    let body = html! {
        p { "Stop the notification mails of emailin (new and reopened records, mentions)? "
            "You can turn them on again on your page." }
        form method="post" action=(format!("/unsubscribe/{token}")) {
            input type="hidden" name="List-Unsubscribe" value="One-Click";
            button.primary type="submit" { "Stop these mails" }
        }
    };
    Ok(layout::card("Stop notification mails", body).into_response())
}

/// `POST`: turns the user's notifications off.
pub async fn submit(State(state): State<ApiState>, Path(token): Path<String>) -> PageResult {
    let user = user_of(&state, &token)?;
    let change = UserChange {
        notify: Some(false),
        ..UserChange::default()
    };
    state.store.update_user(user, &change).await?;
    tracing::info!(user = %user, "notifications_unsubscribed");
    Ok(layout::bare(
        "Notification mails stopped",
        "You will get no more notification mails. You can turn them on again on your page.",
    )
    .into_response())
}
