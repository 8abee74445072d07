//! `/me`: the signed-in user's own settings — mail about their records and
//! mentions, and their password.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, Nav, csrf};
use super::session::Viewer;
use super::{PageResult, see_other};
use crate::api::ApiState;
use crate::api::auth::{hash_password, verify_password};
use crate::store::UserChange;

#[derive(Debug, Deserialize)]
pub struct MeQuery {
    done: Option<String>,
}

fn render(viewer: &Viewer, notify: bool, error: Option<&str>, done: Option<&str>) -> Markup {
    let body = html! {
        h1 { "Your settings" }
        p.muted { (viewer.user.email) " · " (viewer.user.role.as_str()) }
        (layout::notice(error, done))
        h2 { "Mail" }
        form.stacked method="post" action="/me/notify" {
            (csrf(viewer))
            label.check {
                input type="checkbox" name="notify" value="1" checked[notify];
                " Mail me when a record is created for me or one of mine is reopened, and when a comment mentions me"
            }
            button type="submit" { "Save" }
        }
        h2 { "Password" }
        form.stacked method="post" action="/me/password" {
            (csrf(viewer))
            label for="current" { "Current password" }
            input #current type="password" name="current" autocomplete="current-password" required;
            label for="new-password" { "New password (at least 10 characters)" }
            input #new-password type="password" name="password" autocomplete="new-password" required;
            button type="submit" { "Change password" }
        }
    };
    layout::page(viewer, Nav::Me, "Your settings", body)
}

/// `GET /me`.
pub async fn page(viewer: Viewer, Query(q): Query<MeQuery>) -> Markup {
    let done = match q.done.as_deref() {
        Some("saved") => Some("Saved."),
        Some("password") => Some("Your password is changed; other sessions are ended."),
        _ => None,
    };
    render(&viewer, viewer.user.notify, None, done)
}

#[derive(Debug, Deserialize)]
pub struct NotifyForm {
    notify: Option<String>,
}

/// `POST /me/notify`.
pub async fn set_notify(
    State(state): State<ApiState>,
    viewer: Viewer,
    Form(form): Form<NotifyForm>,
) -> PageResult {
    let change = UserChange {
        notify: Some(form.notify.is_some()),
        ..UserChange::default()
    };
    state.store.update_user(viewer.user.id, &change).await?;
    Ok(see_other("/me?done=saved"))
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    password: String,
}

/// `POST /me/password`: needs the current one; ends the other sessions
/// (and this one: the user logs in again).
pub async fn set_password(
    State(state): State<ApiState>,
    viewer: Viewer,
    Form(form): Form<PasswordForm>,
) -> PageResult {
    let refuse = |msg: &str| {
        Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            render(&viewer, viewer.user.notify, Some(msg), None),
        )
            .into_response())
    };
    let stored = state.store.login_user(&viewer.user.email).await?;
    let matches = stored
        .and_then(|(_, hash)| hash)
        .is_some_and(|hash| verify_password(&form.current, &hash));
    if !matches {
        return refuse("The current password is not right.");
    }
    let hash = match hash_password(&form.password) {
        Ok(hash) => hash,
        Err(msg) => return refuse(&msg),
    };
    state
        .store
        .set_password(viewer.user.id, Some(&hash))
        .await?;
    Ok(see_other("/login?set=1"))
}
