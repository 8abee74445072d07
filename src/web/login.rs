//! `/login` and `/logout`.
//!
//! The login form is protected by a double-submit token: the page sets a
//! random `emailin_login` cookie and puts the same value in a hidden field;
//! a post whose field and cookie differ gets 403. A wrong password gets the
//! form again (401) with an error and no session; too many failures per
//! address or per client IP get 429 until the window passes.

use std::sync::Arc;

use axum::extract::{FromRequest, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{
    self, CSRF_FIELD, LOGIN_COOKIE, LoginLimiter, SESSION_COOKIE, Viewer, cookie, pre_session_form,
    random_token, same_token, secure_cookies, session_hash, set_cookie,
};
use super::{PageError, PageResult, layout, see_other};
use crate::api::ApiState;
use crate::api::auth::{decoy_hash, verify_password};
use crate::store::NewSession;

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    /// Set after a password was set through a link.
    set: Option<String>,
}

/// Only a path of this site is a place to go after logging in.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

fn secure(state: &ApiState, headers: &HeaderMap) -> bool {
    secure_cookies(&state.settings.http, headers)
}

fn login_page(
    token: &str,
    email: &str,
    next: &str,
    error: Option<&str>,
    done: Option<&str>,
) -> Markup {
    layout::card(
        "Log in",
        html! {
            h1 { "emailin" }
            p.muted { "Log in to work your team's records." }
            @if let Some(error) = error {
                p.notice.error role="alert" #login-error { (error) }
            }
            @if let Some(done) = done {
                p.notice.done role="status" { (done) }
            }
            form method="post" action="/login" {
                input type="hidden" name=(CSRF_FIELD) value=(token);
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus[email.is_empty()];
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required autofocus[!email.is_empty()];
                button.primary type="submit" { "Log in" }
            }
        },
    )
}

/// The login form with a fresh double-submit token.
fn form_response(
    state: &ApiState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<&str>,
    done: Option<&str>,
) -> Response {
    pre_session_form(&state.settings.http, headers, status, |token| {
        login_page(token, email, next, error, done)
    })
}

/// `GET /login`.
pub async fn form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    form_response(
        &state,
        &headers,
        StatusCode::OK,
        "",
        safe_next(q.next.as_deref()),
        None,
        q.set
            .is_some()
            .then_some("Your password is set. Log in with it."),
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

/// `POST /login`: 303 with a session cookie, or the form again.
pub async fn submit(
    State(state): State<ApiState>,
    Extension(limiter): Extension<Arc<LoginLimiter>>,
    request: axum::extract::Request,
) -> PageResult {
    let ip = session::client_ip(request.extensions());
    let headers = request.headers().clone();
    let Form(login) = Form::<LoginForm>::from_request(request, &())
        .await
        .map_err(|_| PageError::Csrf)?;
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(login.csrf.as_deref().unwrap_or_default(), expected) {
        return Err(PageError::Csrf);
    }
    let next = safe_next(login.next.as_deref()).to_string();
    let email = login.email.trim().to_lowercase();
    if let Some(wait) = limiter.blocked(&email, ip) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let msg = format!("Too many failed logins. Try again in {minutes} minute(s).");
        return Ok(form_response(
            &state,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            &email,
            &next,
            Some(&msg),
            None,
        ));
    }
    let found = state.store.login_user(&email).await?;
    let user = match found {
        Some((user, Some(hash))) if verify_password(&login.password, &hash) => Some(user),
        Some((_, Some(_))) => None,
        _ => {
            // Same cost for an unknown address as for a wrong password.
            let _ = verify_password(&login.password, decoy_hash());
            None
        }
    };
    let Some(user) = user else {
        limiter.failed(&email, ip);
        tracing::info!(email = %email, ip = ?ip, "failed web login");
        return Ok(form_response(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &email,
            &next,
            Some("That email and password do not match."),
            None,
        ));
    };
    limiter.succeeded(&email);
    let value = random_token();
    let hours = state.settings.http.session_hours;
    let session = NewSession {
        id_hash: session_hash(&value),
        user_id: user.id,
        csrf: random_token(),
        client_ip: ip.map(|i| i.to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(300).collect()),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(hours as i64),
    };
    state.store.create_session(&session).await?;
    tracing::info!(user = %user.email, "web login");
    let secure = secure(&state, &headers);
    let mut response = see_other(&next);
    let cookies = response.headers_mut();
    for value in [
        set_cookie(SESSION_COOKIE, &value, hours * 3600, secure),
        set_cookie(LOGIN_COOKIE, "", 0, secure),
    ] {
        if let Ok(value) = value.parse() {
            cookies.append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// `POST /logout`: ends the session (in the database) and the cookie.
pub async fn logout(
    State(state): State<ApiState>,
    viewer: Viewer,
    headers: HeaderMap,
) -> PageResult {
    state.store.revoke_session(&viewer.session_hash).await?;
    let mut response = see_other("/login");
    let gone = set_cookie(SESSION_COOKIE, "", 0, secure(&state, &headers));
    if let Ok(value) = gone.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}
