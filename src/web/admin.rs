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

// ---- inbound ----

const INBOUND_TABS: [(&str, &str); 5] = [
    ("quarantined", "Quarantined"),
    ("failed", "Failed"),
    ("pending", "Pending"),
    ("ignored", "Ignored"),
    ("processed", "Processed"),
];

#[derive(Debug, Deserialize)]
pub struct InboundQuery {
    status: Option<String>,
    done: Option<String>,
}

async fn inbound(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<InboundQuery>,
) -> PageResult<Markup> {
    let status = q.status.unwrap_or_else(|| "quarantined".to_string());
    let notice = DoneQuery { done: q.done }.notice();
    inbound_page(&state, &viewer, &status, notice).await
}

async fn inbound_page(
    state: &ApiState,
    viewer: &Viewer,
    status: &str,
    n: Notice,
) -> PageResult<Markup> {
    let status = INBOUND_TABS
        .iter()
        .find(|(s, _)| *s == status)
        .map_or("quarantined", |(s, _)| *s);
    let page = state
        .store
        .list_inbound(&InboundFilter {
            status: Some(status.to_string()),
            cursor: None,
            limit: 200,
        })
        .await?;
    let counts = state.store.inbound_counts().await?;
    let count = |s: &str| counts.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
    let mailboxes = state.imap.snapshot();
    let body = html! {
        h1 { "Inbound mail" }
        p.muted { "Every message the service accepted is stored here first. Quarantined mail waits for you; failed mail can be processed again." }
        (notice(&n))
        nav.tabs aria-label="Status" {
            @for (key, label) in INBOUND_TABS {
                a href=(format!("/admin/inbound?status={key}")) aria-current=[(key == status).then_some("page")] {
                    (label) " " span.count { (count(key)) }
                }
            }
        }
        @if status == "failed" && count("failed") > 0 {
            form method="post" action="/admin/inbound/replay" {
                (csrf(viewer))
                button type="submit" { "Process every failed message again" }
            }
        }
        @if page.items.is_empty() {
            p.empty { "Nothing here." }
        } @else {
            table.list {
                thead { tr { th { "Received" } th { "From" } th { "To" } th { "Source" } th { "Outcome" } @if status == "quarantined" { th { "Action" } } } }
                tbody {
                    @for m in &page.items {
                        tr {
                            td { (when(m.received_at)) }
                            td.mono { (m.mail_from.as_deref().unwrap_or("<>")) }
                            td.mono { (m.rcpt_to.join(", ")) }
                            td { (m.source) br; a href=(format!("/admin/inbound/{}/raw", m.id)) download { "raw .eml" } }
                            td {
                                (m.outcome.as_deref().unwrap_or(""))
                                @if let Some(e) = &m.error { br; span.muted { (e) } }
                            }
                            @if status == "quarantined" {
                                td.actions {
                                    form method="post" action=(format!("/admin/inbound/{}/release", m.id)) {
                                        (csrf(viewer)) button type="submit" { "Release" }
                                    }
                                    form method="post" action=(format!("/admin/inbound/{}/drop", m.id)) {
                                        (csrf(viewer)) button.danger type="submit" { "Drop" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        @if !mailboxes.is_empty() {
            h2 { "Polled mailboxes (IMAP)" }
            table.list {
                thead { tr { th { "Mailbox" } th { "State" } th { "Last UID" } th { "Stored" } th { "Last error" } th { "Updated" } } }
                tbody {
                    @for m in &mailboxes {
                        tr {
                            td.mono { (m.account) "/" (m.folder) }
                            td { (serde_json::to_value(m.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                            td { (m.last_uid.map(|u| u.to_string()).unwrap_or_default()) }
                            td { (m.messages_stored) }
                            td { @if let Some(e) = &m.last_error { span.badge.warn { (e) } } }
                            td { (when(m.updated_at)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(viewer, Nav::Inbound, "Inbound mail", body))
}

fn inbound_id(id: &str) -> PageResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| PageError::NotFound("There is no such message."))
}

async fn release_one(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let result = release(&state, inbound_id(&id)?).await;
    after(result, "/admin/inbound", "released", |n| {
        inbound_page(&state, &viewer, "quarantined", n)
    })
    .await
}

async fn drop_one(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let result = drop_quarantined(&state, inbound_id(&id)?).await;
    after(result, "/admin/inbound", "dropped", |n| {
        inbound_page(&state, &viewer, "quarantined", n)
    })
    .await
}

/// The stored bytes of a message, as received, to download.
async fn raw_one(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = inbound_id(&id)?;
    let raw = state
        .store
        .inbound_raw(id)
        .await?
        .ok_or(PageError::NotFound("There is no such message."))?;
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "message/rfc822".to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.eml\""),
            ),
        ],
        raw,
    )
        .into_response())
}

async fn replay(State(state): State<ApiState>, _: AdminViewer) -> PageResult {
    state.store.reset_for_replay(Some("failed"), None).await?;
    state.processor.notify_one();
    Ok(see_other("/admin/inbound?status=failed&done=replayed"))
}

// ---- users ----

async fn users(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    users_page(&state, &viewer, q.notice()).await
}

fn role_select(id: &str, current: Role) -> Markup {
    html! {
        select id=(id) name="role" {
            option value="member" selected[current == Role::Member] { "member" }
            option value="admin" selected[current == Role::Admin] { "admin" }
        }
    }
}

async fn users_page(state: &ApiState, viewer: &Viewer, n: Notice) -> PageResult<Markup> {
    let users = all_users(state).await?;
    let body = html! {
        h1 { "Users" }
        p.muted { "Members work records; admins also manage this service. A user without a password cannot log in." }
        (notice(&n))
        table.list {
            thead { tr { th { "Name" } th { "Address" } th { "Role, name and password" } th { "Access" } th { "Delete" } } }
            tbody {
                @for u in &users {
                    tr {
                        td { (display_name(&u.name, &u.email)) @if !u.can_log_in { " " span.badge { "no password" } } }
                        td.mono { (u.email) }
                        td {
                            form.inline method="post" action=(format!("/admin/users/{}", u.id)) {
                                (csrf(viewer))
                                label.visually-hidden for=(format!("role-{}", u.id)) { "Role" }
                                (role_select(&format!("role-{}", u.id), u.role))
                                label.visually-hidden for=(format!("name-{}", u.id)) { "Name" }
                                input id=(format!("name-{}", u.id)) type="text" name="name" value=(u.name) placeholder="Name" size="14";
                                label.visually-hidden for=(format!("pw-{}", u.id)) { "New password" }
                                input id=(format!("pw-{}", u.id)) type="password" name="password" placeholder="New password" autocomplete="new-password" size="14";
                                button type="submit" { "Save" }
                            }
                        }
                        td {
                            form method="post" action=(format!("/admin/users/{}/invite", u.id)) {
                                (csrf(viewer))
                                button type="submit" {
                                    @if u.can_log_in { "Reset link" } @else { "Invite" }
                                }
                            }
                            form method="post" action=(format!("/admin/users/{}", u.id)) {
                                (csrf(viewer))
                                input type="hidden" name="sign_out" value="1";
                                button type="submit" { "Sign out everywhere" }
                            }
                        }
                        td {
                            form method="post" action=(format!("/admin/users/{}/delete", u.id)) {
                                (csrf(viewer))
                                button.danger type="submit" disabled[u.id == viewer.user.id] { "Delete" }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Add a user" }
        form.stacked method="post" action="/admin/users" {
            (csrf(viewer))
            label for="new-email" { "Email" }
            input #new-email type="email" name="email" required;
            label for="new-name" { "Name" }
            input #new-name type="text" name="name";
            label for="new-role" { "Role" }
            (role_select("new-role", Role::Member))
            label for="new-password" { "Password (at least 10 characters; leave empty to set it later)" }
            input #new-password type="password" name="password" autocomplete="new-password";
            button.primary type="submit" { "Add user" }
        }
    };
    Ok(layout::page(viewer, Nav::Users, "Users", body))
}

#[derive(Debug, Deserialize)]
pub struct UserForm {
    email: Option<String>,
    name: Option<String>,
    role: Option<String>,
    password: Option<String>,
    sign_out: Option<String>,
}

fn form_role(role: Option<&str>) -> Result<Option<Role>, ApiError> {
    match role {
        None | Some("") => Ok(None),
        Some(r) => Role::parse(r)
            .map(Some)
            .ok_or_else(|| ApiError::Unprocessable("role: must be admin or member".into())),
    }
}

fn nonempty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

async fn create_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<UserForm>,
) -> PageResult {
    let result = async {
        let body = NewUser {
            email: form.email.unwrap_or_default(),
            name: form.name.unwrap_or_default(),
            role: form_role(form.role.as_deref())?,
            password: nonempty(form.password),
        };
        new_user(&state, body).await.map(|_| ())
    }
    .await;
    after(result, "/admin/users", "created", |n| {
        users_page(&state, &viewer, n)
    })
    .await
}

async fn update_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<UserForm>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such user."))?;
    let sign_out = form.sign_out.is_some();
    let result = async {
        let role = form_role(form.role.as_deref())?;
        if id == viewer.user.id && role == Some(Role::Member) {
            return Err(ApiError::Unprocessable(
                "role: you cannot remove your own admin role".into(),
            ));
        }
        let body = UserPatch {
            name: form.name,
            role,
            password: nonempty(form.password),
            sign_out,
            notify: None,
        };
        change_user(&state, id, body).await.map(|_| ())
    }
    .await;
    let done = if sign_out { "signed-out" } else { "saved" };
    after(result, "/admin/users", done, |n| {
        users_page(&state, &viewer, n)
    })
    .await
}

async fn invite_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let missing = || PageError::NotFound("There is no such user.");
    let id = Uuid::parse_str(&id).map_err(|_| missing())?;
    let user = state.store.get_user(id).await?.ok_or_else(missing)?;
    let invite = super::invite::issue(&state, &user).await?;
    let hours = super::invite::LINK_HOURS;
    let n = match invite.mailed {
        Some(Ok(answer)) => Notice {
            done: Some(format!(
                "A set-password link was mailed to {} (the relay answered {answer}).",
                user.email
            )),
            ..Notice::default()
        },
        Some(Err(why)) => Notice {
            error: Some(format!(
                "The link could not be mailed to {} ({why}). Give them this link instead; \
                 it works once, for {hours} hours:",
                user.email
            )),
            link: Some(invite.link),
            ..Notice::default()
        },
        None => Notice {
            done: Some(format!(
                "Give {} this link to set their password; it works once, for {hours} hours. \
                 (It is mailed when [outbound] host and [http] public_url are set.)",
                user.email
            )),
            link: Some(invite.link),
            ..Notice::default()
        },
    };
    Ok(users_page(&state, &viewer, n).await?.into_response())
}

async fn delete_user(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such user."))?;
    let result = if id == viewer.user.id {
        Err(ApiError::Unprocessable("you cannot delete yourself".into()))
    } else {
        state.store.delete_user(id).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(msg) => ApiError::Conflict(msg),
            other => other.into(),
        })
    };
    after(result, "/admin/users", "deleted", |n| {
        users_page(&state, &viewer, n)
    })
    .await
}

// ---- tokens ----

async fn tokens(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    tokens_page(&state, &viewer, q.notice(), None).await
}

async fn tokens_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
    shown: Option<&str>,
) -> PageResult<Markup> {
    let tokens = state.store.list_tokens().await?;
    let body = html! {
        h1 { "API tokens" }
        p.muted { "Programs use these with the HTTP API (Authorization: Bearer …). People log in instead." }
        (notice(&n))
        @if let Some(token) = shown {
            div.notice.done role="status" {
                p { "Copy the token now; it is not shown again:" }
                p { code #new-token { (token) } }
            }
        }
        table.list {
            thead { tr { th { "Name" } th { "Role" } th { "Created" } th { "State" } } }
            tbody {
                @for t in &tokens {
                    tr {
                        td { (t.name) }
                        td { (t.role.as_str()) }
                        td { (when(t.created_at)) }
                        td {
                            @if let Some(at) = t.revoked_at {
                                "revoked " (when(at))
                            } @else {
                                form method="post" action=(format!("/admin/tokens/{}/revoke", t.id)) {
                                    (csrf(viewer))
                                    button.danger type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create a token" }
        form.stacked method="post" action="/admin/tokens" {
            (csrf(viewer))
            label for="token-name" { "Name (what uses it)" }
            input #token-name type="text" name="name" required;
            label for="token-role" { "Role" }
            (role_select("token-role", Role::Member))
            button.primary type="submit" { "Create token" }
        }
    };
    Ok(layout::page(viewer, Nav::Tokens, "API tokens", body))
}

#[derive(Debug, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

async fn create_token(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<TokenForm>,
) -> PageResult {
    match new_token(&state, &form.name, &form.role).await {
        Ok((token, _)) => {
            let page = tokens_page(&state, &viewer, Notice::default(), Some(&token)).await?;
            Ok((StatusCode::CREATED, page).into_response())
        }
        Err(err) => {
            let (status, _, message) = err.parts();
            let n = Notice {
                error: Some(message),
                ..Notice::default()
            };
            Ok((status, tokens_page(&state, &viewer, n, None).await?).into_response())
        }
    }
}

async fn revoke_token(
    State(state): State<ApiState>,
    _: AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    if !state.store.revoke_token(&id).await? {
        return Err(PageError::NotFound("There is no such active token."));
    }
    Ok(see_other("/admin/tokens?done=revoked"))
}

// ---- blocked senders ----

async fn blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    blocked_page(&state, &viewer, q.notice()).await
}

async fn blocked_page(state: &ApiState, viewer: &Viewer, n: Notice) -> PageResult<Markup> {
    let entries = all_blocked(state).await?;
    let body = html! {
        h1 { "Blocked senders" }
        p.muted { "SMTP refuses these at MAIL FROM; mail from them by other routes is quarantined. A domain blocks its subdomains too." }
        (notice(&n))
        table.list {
            thead { tr { th { "Entry" } th { "From" } th { "Added" } th { "" } } }
            tbody {
                @for b in &entries {
                    tr {
                        td.mono { (b.entry) }
                        td { @if b.source == "config" { "configuration file" } @else { "added here" } }
                        td { @if let Some(at) = b.created_at { (when(at)) } }
                        td {
                            @if b.source != "config" {
                                form method="post" action="/admin/blocked/remove" {
                                    (csrf(viewer))
                                    input type="hidden" name="entry" value=(b.entry);
                                    button type="submit" { "Unblock" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Block a sender" }
        form.inline method="post" action="/admin/blocked" {
            (csrf(viewer))
            label for="block-entry" { "Address or domain" }
            input #block-entry type="text" name="entry" required placeholder="spam@example.com or example.com";
            button.primary type="submit" { "Block" }
        }
    };
    Ok(layout::page(viewer, Nav::Blocked, "Blocked senders", body))
}

#[derive(Debug, Deserialize)]
pub struct EntryForm {
    #[serde(default)]
    entry: String,
}

async fn add_blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<EntryForm>,
) -> PageResult {
    let result = block(&state, &form.entry).await.map(|_| ());
    after(result, "/admin/blocked", "saved", |n| {
        blocked_page(&state, &viewer, n)
    })
    .await
}

async fn remove_blocked(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<EntryForm>,
) -> PageResult {
    let result = unblock(&state, &form.entry).await;
    after(result, "/admin/blocked", "deleted", |n| {
        blocked_page(&state, &viewer, n)
    })
    .await
}

// ---- aliases ----

#[derive(Debug, Deserialize)]
pub struct AliasQuery {
    edit: Option<String>,
    done: Option<String>,
}

async fn aliases(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<AliasQuery>,
) -> PageResult<Markup> {
    let notice = DoneQuery { done: q.done }.notice();
    aliases_page(&state, &viewer, notice, q.edit.as_deref(), None).await
}

async fn aliases_page(
    state: &ApiState,
    viewer: &Viewer,
    n: Notice,
    edit: Option<&str>,
    typed: Option<&AliasForm>,
) -> PageResult<Markup> {
    let list = state.store.list_aliases(None, None, 500).await?.items;
    let pipelines = all_pipelines(state).await?;
    let users = all_users(state).await?;
    let editing = edit.and_then(|a| list.iter().find(|x| x.address.eq_ignore_ascii_case(a)));
    let form = match (typed, editing) {
        (Some(t), _) => t.clone(),
        (None, Some(a)) => AliasForm::from_alias(a),
        (None, None) => AliasForm {
            enabled: Some("1".into()),
            auth: "monitor".into(),
            ..AliasForm::default()
        },
    };
    let body = html! {
        h1 { "Aliases" }
        p.muted { "Mail to an alias becomes a record in its pipeline, owned by its owner, with its tags." }
        (notice(&n))
        table.list {
            thead { tr { th { "Address" } th { "Pipeline" } th { "Owner" } th { "Tags" } th { "Reopen" } th { "Sender checks" } th { "" } } }
            tbody {
                @for a in &list {
                    tr.disabled[!a.enabled] {
                        td.mono { (a.address) @if !a.enabled { " " span.badge { "disabled" } } }
                        td { (a.pipeline) }
                        td { (a.owner.as_deref().unwrap_or("unassigned")) }
                        td { (a.tags.join(", ")) }
                        td { @for r in &a.reopen { (r.from) " → " (r.to) br; } }
                        td { (a.auth.as_str()) }
                        td { a href=(format!("/admin/aliases?edit={}", escape_query(&a.address))) { "Edit" } }
                    }
                }
            }
        }
        h2 { @if editing.is_some() { "Edit " (form.address) } @else { "Add or change an alias" } }
        form.stacked method="post" action="/admin/aliases" {
            (csrf(viewer))
            label for="alias-address" { "Address" }
            input #alias-address type="email" name="address" value=(form.address) required;
            label for="alias-name" { "Name" }
            input #alias-name type="text" name="name" value=(form.name);
            label for="alias-pipeline" { "Pipeline" }
            select #alias-pipeline name="pipeline" {
                @for p in &pipelines {
                    option value=(p.name) selected[p.name == form.pipeline] { (p.name) }
                }
            }
            label for="alias-owner" { "Owner" }
            select #alias-owner name="owner" {
                option value="" { "Unassigned" }
                @for u in &users {
                    option value=(u.email) selected[u.email == form.owner] { (display_name(&u.name, &u.email)) }
                }
            }
            label for="alias-tags" { "Tags (comma-separated)" }
            input #alias-tags type="text" name="tags" value=(form.tags);
            label for="alias-also" { "Also answers for (comma-separated addresses)" }
            input #alias-also type="text" name="also" value=(form.also);
            label for="alias-reopen" { "Reopen rules, one a line: closed stage -> open stage" }
            textarea #alias-reopen name="reopen" rows="3" placeholder="Won -> New" { (form.reopen) }
            label for="alias-auth" { "Sender checks (SPF, DKIM, DMARC)" }
            select #alias-auth name="auth" {
                @for (v, label) in [("off", "off"), ("monitor", "monitor: record the result"), ("enforce", "enforce: quarantine DMARC failures")] {
                    option value=(v) selected[form.auth == v] { (label) }
                }
            }
            label.check { input type="checkbox" name="enabled" value="1" checked[form.enabled.is_some()]; " Enabled (a disabled alias refuses mail at RCPT)" }
            label.check { input type="checkbox" name="reopen_on_reply" value="1" checked[form.reopen_on_reply.is_some()]; " Reopen on any reply (to the pipeline's first open stage)" }
            button.primary type="submit" { "Save alias" }
        }
    };
    Ok(layout::page(viewer, Nav::Aliases, "Aliases", body))
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AliasForm {
    #[serde(default)]
    address: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pipeline: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    also: String,
    #[serde(default)]
    reopen: String,
    #[serde(default)]
    auth: String,
    enabled: Option<String>,
    reopen_on_reply: Option<String>,
}

fn comma_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl AliasForm {
    fn from_alias(a: &AliasConfig) -> Self {
        AliasForm {
            address: a.address.clone(),
            name: a.name.clone(),
            pipeline: a.pipeline.clone(),
            owner: a.owner.clone().unwrap_or_default(),
            tags: a.tags.join(", "),
            also: a.also.join(", "),
            reopen: a
                .reopen
                .iter()
                .map(|r| format!("{} -> {}", r.from, r.to))
                .collect::<Vec<_>>()
                .join("\n"),
            auth: a.auth.as_str().to_string(),
            enabled: a.enabled.then(|| "1".to_string()),
            reopen_on_reply: a.reopen_on_reply.then(|| "1".to_string()),
        }
    }

    fn to_alias(&self) -> Result<AliasConfig, ApiError> {
        let mut reopen = Vec::new();
        for line in self.reopen.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (from, to) = line
                .split_once("->")
                .or_else(|| line.split_once('→'))
                .ok_or_else(|| {
                    ApiError::Unprocessable(format!(
                        "reopen: {line:?} is not \"closed stage -> open stage\""
                    ))
                })?;
            reopen.push(ReopenRuleConfig {
                from: from.trim().to_string(),
                to: to.trim().to_string(),
            });
        }
        let address = crate::domain::EmailAddress::parse(self.address.trim())
            .map_err(|e| ApiError::Unprocessable(format!("address: {e}")))?;
        Ok(AliasConfig {
            address: address.as_str().to_string(),
            name: self.name.trim().to_string(),
            pipeline: self.pipeline.clone(),
            owner: nonempty(Some(self.owner.trim().to_string())),
            tags: comma_list(&self.tags),
            enabled: self.enabled.is_some(),
            reopen_on_reply: self.reopen_on_reply.is_some(),
            reopen,
            also: comma_list(&self.also),
            auth: AuthPolicy::parse(&self.auth).unwrap_or_default(),
        })
    }
}

async fn save_alias(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<AliasForm>,
) -> PageResult {
    let result = match form.to_alias() {
        Ok(alias) => store_alias(&state, &alias).await,
        Err(e) => Err(e),
    };
    after(result, "/admin/aliases", "saved", |n| {
        aliases_page(&state, &viewer, n, None, Some(&form))
    })
    .await
}

// ---- pipelines ----

async fn pipelines(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Query(q): Query<DoneQuery>,
) -> PageResult<Markup> {
    pipelines_page(&state, &viewer, q.notice()).await
}

fn stage_lines(stages: &[crate::store::StageView]) -> String {
    stages
        .iter()
        .map(|s| format!("{}: {}", s.name, s.kind))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn pipelines_page(state: &ApiState, viewer: &Viewer, n: Notice) -> PageResult<Markup> {
    let list = all_pipelines(state).await?;
    let body = html! {
        h1 { "Pipelines" }
        p.muted { "Stages in order, one a line, as \"name: open\" or \"name: closed\". A stage that records or rules use cannot be removed." }
        (notice(&n))
        div.grid {
            @for p in &list {
                section.panel aria-label=(p.name) {
                    form.stacked method="post" action=(format!("/admin/pipelines/{}", p.id)) {
                        (csrf(viewer))
                        label for=(format!("p-name-{}", p.id)) { "Name" }
                        input id=(format!("p-name-{}", p.id)) type="text" name="name" value=(p.name) required;
                        label for=(format!("p-stages-{}", p.id)) { "Stages" }
                        textarea id=(format!("p-stages-{}", p.id)) name="stages" rows=(p.stages.len().max(3)) { (stage_lines(&p.stages)) }
                        button.primary type="submit" { "Save" }
                    }
                    form method="post" action=(format!("/admin/pipelines/{}/delete", p.id)) {
                        (csrf(viewer))
                        button.danger type="submit" { "Delete pipeline" }
                    }
                }
            }
        }
        h2 { "Add a pipeline" }
        form.stacked method="post" action="/admin/pipelines" {
            (csrf(viewer))
            label for="new-pipeline-name" { "Name" }
            input #new-pipeline-name type="text" name="name" required;
            label for="new-pipeline-stages" { "Stages" }
            textarea #new-pipeline-stages name="stages" rows="4" { "New: open\nWorking: open\nDone: closed" }
            button.primary type="submit" { "Add pipeline" }
        }
    };
    Ok(layout::page(viewer, Nav::Pipelines, "Pipelines", body))
}

#[derive(Debug, Deserialize)]
pub struct PipelineForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    stages: String,
}

/// `name: kind` lines (a line without a kind is an open stage).
fn parse_stages(text: &str, existing: &[crate::store::StageView]) -> Vec<StageInput> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (name, kind) = match line.rsplit_once(':') {
                Some((name, kind)) => (name.trim(), kind.trim().to_lowercase()),
                None => (line, "open".to_string()),
            };
            StageInput {
                id: existing.iter().find(|s| s.name == name).map(|s| s.id),
                name: name.to_string(),
                kind,
            }
        })
        .collect()
}

async fn create_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Form(form): Form<PipelineForm>,
) -> PageResult {
    let body = NewPipeline {
        name: form.name,
        stages: parse_stages(&form.stages, &[]),
    };
    let result = new_pipeline(&state, body).await.map(|_| ());
    after(result, "/admin/pipelines", "created", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

async fn update_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
    Form(form): Form<PipelineForm>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such pipeline."))?;
    let existing = state
        .store
        .get_pipeline(id)
        .await?
        .ok_or(PageError::NotFound("There is no such pipeline."))?;
    let body = PipelinePatch {
        name: Some(form.name),
        stages: Some(parse_stages(&form.stages, &existing.stages)),
    };
    let result = change_pipeline(&state, id, body).await.map(|_| ());
    after(result, "/admin/pipelines", "saved", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

async fn delete_pipeline(
    State(state): State<ApiState>,
    AdminViewer(viewer): AdminViewer,
    Path(id): Path<String>,
) -> PageResult {
    let id = Uuid::parse_str(&id).map_err(|_| PageError::NotFound("There is no such pipeline."))?;
    let result = remove_pipeline(&state, id).await;
    after(result, "/admin/pipelines", "deleted", |n| {
        pipelines_page(&state, &viewer, n)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lines_read_name_and_kind() {
        let stages = parse_stages("New: open\n\n Won : closed\nLater", &[]);
        let got: Vec<(&str, &str)> = stages
            .iter()
            .map(|s| (s.name.as_str(), s.kind.as_str()))
            .collect();
        assert_eq!(got, [("New", "open"), ("Won", "closed"), ("Later", "open")]);
    }

    #[test]
    fn reopen_rules_are_read_one_a_line() {
        let form = AliasForm {
            address: "sales@example.com".into(),
            pipeline: "Sales".into(),
            reopen: "Won -> New\nLost → Working\n".into(),
            ..AliasForm::default()
        };
        let alias = form.to_alias().expect("valid");
        assert_eq!(alias.reopen.len(), 2);
        assert_eq!(alias.reopen[1].from, "Lost");
        assert_eq!(alias.reopen[1].to, "Working");
        let bad = AliasForm {
            reopen: "Won to New".into(),
            ..form
        };
        assert!(bad.to_alias().is_err());
    }
}
