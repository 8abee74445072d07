//! One-time links to set a password: an admin invites a user (or resets
//! their password) from the Users page; the link is mailed through the
//! relay when one is configured and `[http] public_url` says where the UI
//! is, and shown to the admin otherwise. A link works once, for
//! [`LINK_HOURS`]; using it ends the user's other sessions.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{
    CSRF_FIELD, LOGIN_COOKIE, cookie, pre_session_form, random_token, same_token, session_hash,
};
use super::{PageError, PageResult, layout, see_other};
use crate::api::auth::hash_password;
use crate::api::{ApiError, ApiState};
use crate::outbound::compose::LOOP_HEADER;
use crate::store::UserView;

/// How long a set-password link works.
pub const LINK_HOURS: i64 = 72;

/// A link made for a user, and whether it went out by mail.
#[derive(Debug)]
pub struct Invite {
    pub link: String,
    /// `None`: not mailed (no relay or no `public_url`); otherwise the
    /// relay's answer or why it failed.
    pub mailed: Option<Result<String, String>>,
}

/// Makes a link for `user` and mails it when the service can.
///
/// # Errors
/// Storage errors.
pub async fn issue(state: &ApiState, user: &UserView) -> Result<Invite, ApiError> {
    let base = state.settings.http.public_url.trim().trim_end_matches('/');
    let link = make_link(state.store.as_ref(), base, user).await?;
    let mailed = match (&state.outbound.relay, base.is_empty()) {
        (Some(relay), false) => {
            let raw = invitation(state, user, &link);
            let from = state.outbound.system_from.clone();
            Some(
                relay
                    .send_now(&from, std::slice::from_ref(&user.email), &raw)
                    .await,
            )
        }
        _ => None,
    };
    tracing::info!(user = %user.email, mailed = ?mailed, "set-password link issued");
    Ok(Invite { link, mailed })
}

/// Stores a new link for `user` and returns it, under `base` (the UI's
/// public address, or empty for a path).
///
/// # Errors
/// Storage errors.
pub async fn make_link(
    store: &dyn crate::store::Store,
    base: &str,
    user: &UserView,
) -> crate::store::StoreResult<String> {
    let token = random_token();
    let expires = chrono::Utc::now() + chrono::Duration::hours(LINK_HOURS);
    store
        .create_password_link(&session_hash(&token), user.id, expires)
        .await?;
    Ok(format!("{base}/set-password?token={token}"))
}

/// The invitation: says who it is for and where to go, and is marked as
/// machine mail so no auto-responder answers it.
fn invitation(state: &ApiState, user: &UserView, link: &str) -> Vec<u8> {
    use mail_send::mail_builder::MessageBuilder;
    use mail_send::mail_builder::headers::raw::Raw;
    let name = super::layout::display_name(&user.name, &user.email);
    let text = format!(
        "Hello {name},\n\n\
         you have an account on your team's emailin, where mail to the team's\n\
         addresses becomes records to work. Set your password here:\n\n\
         {link}\n\n\
         The link works once, for {LINK_HOURS} hours. Then log in with {email}.\n",
        email = user.email
    );
    let domain = &state.outbound.domain;
    MessageBuilder::new()
        .from(("emailin", state.outbound.system_from.as_str()))
        .to((name, user.email.as_str()))
        .subject("Set your emailin password")
        .message_id(format!("{}@{domain}", uuid::Uuid::now_v7().simple()))
        .date(chrono::Utc::now().timestamp())
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header(LOOP_HEADER, Raw::new(domain.clone()))
        .text_body(text)
        .write_to_vec()
        .unwrap_or_default()
}

fn page(token: &str, csrf: &str, user: &UserView, error: Option<&str>) -> Markup {
    layout::card(
        "Set your password",
        html! {
            h1 { "Set your password" }
            p.muted { "For " (user.email) ". At least 10 characters." }
            @if let Some(error) = error {
                p.notice.error role="alert" { (error) }
            }
            form method="post" action="/set-password" {
                input type="hidden" name=(CSRF_FIELD) value=(csrf);
                input type="hidden" name="token" value=(token);
                label for="password" { "New password" }
                input #password type="password" name="password" autocomplete="new-password" required autofocus;
                label for="confirm" { "The same again" }
                input #confirm type="password" name="confirm" autocomplete="new-password" required;
                button.primary type="submit" { "Set password" }
            }
        },
    )
}

fn form_response(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    token: &str,
    user: &UserView,
    error: Option<&str>,
) -> Response {
    pre_session_form(&state.settings.http, headers, status, |csrf| {
        page(token, csrf, user, error)
    })
}

fn dead_link() -> PageError {
    PageError::Gone("This link has been used or has expired. Ask an admin for a new one.")
}

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    token: String,
}

/// `GET /set-password?token=…`.
pub async fn form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> PageResult {
    let user = state
        .store
        .password_link_user(&session_hash(&q.token), chrono::Utc::now())
        .await?
        .ok_or_else(dead_link)?;
    Ok(form_response(
        &state,
        &headers,
        StatusCode::OK,
        &q.token,
        &user,
        None,
    ))
}

#[derive(Debug, Deserialize)]
pub struct SetForm {
    csrf: Option<String>,
    #[serde(default)]
    token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /set-password`: sets it and sends the user to log in.
pub async fn submit(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<SetForm>,
) -> PageResult {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(form.csrf.as_deref().unwrap_or_default(), expected) {
        return Err(PageError::Csrf);
    }
    let hash = session_hash(&form.token);
    let now = chrono::Utc::now();
    let user = state
        .store
        .password_link_user(&hash, now)
        .await?
        .ok_or_else(dead_link)?;
    let refused = |msg: &str| {
        form_response(
            &state,
            &headers,
            StatusCode::UNPROCESSABLE_ENTITY,
            &form.token,
            &user,
            Some(msg),
        )
    };
    if form.password != form.confirm {
        return Ok(refused("The two passwords differ."));
    }
    let password_hash = match hash_password(&form.password) {
        Ok(h) => h,
        Err(msg) => return Ok(refused(&msg)),
    };
    match state
        .store
        .use_password_link(&hash, &password_hash, now)
        .await?
    {
        Some(_) => Ok(see_other("/login?set=1")),
        None => Err(dead_link()),
    }
}
