//! The admin pages: stored inbound mail (quarantine and failures, with
//! release, drop and replay), aliases, pipelines with their stages, users,
//! API tokens and blocked senders. Each action goes through the same
//! function as its API route; members get 403.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

mod aliases;
mod blocked;
mod domains;
mod inbound;
mod pipelines;
mod tokens;
mod users;

use aliases::*;
use blocked::*;
use domains::*;
use inbound::*;
use pipelines::*;
use tokens::*;
use users::*;

use super::board::{all_pipelines, all_users};
use super::layout::{self, Nav, csrf, display_name, when};
use super::session::{AdminViewer, Viewer};
use super::{PageError, PageResult, escape_query, see_other};
use crate::api::admin::{
    NewPipeline, NewUser, PipelinePatch, UserPatch, all_blocked, block, change_pipeline,
    change_user, new_pipeline, new_token, new_user, remove_pipeline, store_alias, unblock,
};
use crate::api::inbound::{drop_quarantined, release};
use crate::api::{ApiError, ApiState};
use crate::config::{AliasConfig, AuthPolicy, ReopenRuleConfig};
use crate::store::{InboundFilter, Role, StageInput};

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/admin/inbound", get(inbound))
        .route("/admin/inbound/replay", post(replay))
        .route("/admin/inbound/{id}/release", post(release_one))
        .route("/admin/inbound/{id}/drop", post(drop_one))
        .route("/admin/inbound/{id}/raw", get(raw_one))
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{id}", post(update_user))
        .route("/admin/users/{id}/delete", post(delete_user))
        .route("/admin/users/{id}/invite", post(invite_user))
        .route("/admin/tokens", get(tokens).post(create_token))
        .route("/admin/tokens/{id}/revoke", post(revoke_token))
        .route("/admin/blocked", get(blocked).post(add_blocked))
        .route("/admin/domains", get(domains))
        .route("/admin/domains/check", post(check_domains))
        .route(
            "/admin/domains/forwarding",
            get(forwarding_fragment).post(check_forwarding),
        )
        .route("/admin/blocked/remove", post(remove_blocked))
        .route("/admin/aliases", get(aliases).post(save_alias))
        .route("/admin/pipelines", get(pipelines).post(create_pipeline))
        .route("/admin/pipelines/{id}", post(update_pipeline))
        .route("/admin/pipelines/{id}/delete", post(delete_pipeline))
}

/// What an admin page says above its content.
#[derive(Debug, Default)]
struct Notice {
    error: Option<String>,
    done: Option<String>,
    /// A link to copy (a set-password link that was not mailed).
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

impl DoneQuery {
    /// Only the messages this module writes are shown.
    fn notice(&self) -> Notice {
        let done = match self.done.as_deref() {
            Some("released") => "Released: it is being processed now.",
            Some("dropped") => "Dropped. Its raw bytes stay stored.",
            Some("replayed") => "Failed messages are being processed again.",
            Some("saved") => "Saved.",
            Some("checked") => "Checked again.",
            Some("sent") => "Test message sent: its arrival shows below.",
            Some("created") => "Created.",
            Some("deleted") => "Deleted.",
            Some("revoked") => "Revoked.",
            Some("signed-out") => "Their sessions are ended.",
            _ => return Notice::default(),
        };
        Notice {
            done: Some(done.to_string()),
            ..Notice::default()
        }
    }
}

/// After an action: back to `page` with a done message, or `page` shown
/// again with the error.
async fn after<F, Fut>(result: Result<(), ApiError>, to: &str, done: &str, again: F) -> PageResult
where
    F: FnOnce(Notice) -> Fut,
    Fut: Future<Output = PageResult<Markup>>,
{
    match result {
        Ok(()) => Ok(see_other(&format!("{to}?done={done}"))),
        Err(err) => {
            let (status, _, message) = err.parts();
            let notice = Notice {
                error: Some(message),
                ..Notice::default()
            };
            let status = if status == StatusCode::NOT_FOUND {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                status
            };
            Ok((status, again(notice).await?).into_response())
        }
    }
}

fn notice(n: &Notice) -> Markup {
    html! {
        (layout::notice(n.error.as_deref(), n.done.as_deref()))
        @if let Some(link) = &n.link {
            p { code #invite-link { (link) } }
        }
    }
}
