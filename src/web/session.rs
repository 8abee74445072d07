//! Who is looking: the session cookie, the CSRF check of every
//! state-changing request, and the login rate limit.
//!
//! The cookie holds 256 random bits; the database keeps only their SHA-256
//! (like API tokens), with the session's CSRF token, expiry and revocation,
//! so sessions survive a restart and work across replicas.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;

use super::{PageError, see_other};
use crate::api::ApiState;
use crate::domain::sha256_hex;
use crate::store::{Role, UserView};

/// The session cookie.
pub const SESSION_COOKIE: &str = "emailin_session";
/// The login form's double-submit CSRF cookie (before there is a session).
pub const LOGIN_COOKIE: &str = "emailin_login";
/// The form field (or `X-CSRF-Token` header) carrying the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
const CSRF_HEADER: &str = "x-csrf-token";

/// 256 random bits as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What is stored of a session cookie's value.
pub fn session_hash(value: &str) -> String {
    sha256_hex(value.as_bytes())
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether the request came over TLS (through a proxy that says so).
pub fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Whether cookies are marked `Secure`: `[http] secure_cookies`, or the
/// request came over TLS.
pub fn secure_cookies(settings: &crate::config::HttpSettings, headers: &HeaderMap) -> bool {
    settings.secure_cookies || over_tls(headers)
}

/// A form shown before there is a session (login, set-password): a fresh
/// double-submit token, set as the `emailin_login` cookie and given to
/// `page` for its hidden field; never cached, never sent as a referrer.
pub fn pre_session_form(
    settings: &crate::config::HttpSettings,
    headers: &HeaderMap,
    status: axum::http::StatusCode,
    page: impl FnOnce(&str) -> maud::Markup,
) -> Response {
    let token = random_token();
    let cookie = set_cookie(
        LOGIN_COOKIE,
        &token,
        3600,
        secure_cookies(settings, headers),
    );
    (
        status,
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::REFERRER_POLICY, "no-referrer".to_string()),
        ],
        page(&token),
    )
        .into_response()
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, path `/`, and Secure when
/// `secure`. `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The logged-in user of a page, with the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: UserView,
    pub csrf: String,
    /// The hash of the session cookie (logout revokes it).
    pub session_hash: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.user.role == Role::Admin
    }

    /// The name shown for the user's work (events, comments, replies).
    pub fn actor(&self) -> String {
        self.user.email.clone()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Viewer>()
            .cloned()
            .ok_or(PageError::Login)
    }
}

/// Extractor of admin pages: 403 for a member.
pub struct AdminViewer(pub Viewer);

impl<S: Send + Sync> FromRequestParts<S> for AdminViewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let viewer = Viewer::from_request_parts(parts, state).await?;
        if viewer.is_admin() {
            Ok(AdminViewer(viewer))
        } else {
            Err(PageError::Forbidden)
        }
    }
}

/// Middleware of every UI page but `/login`: without a live session, 303
/// to `/login`; a state-changing request without the session's CSRF token
/// (form field `csrf` or header `X-CSRF-Token`), 403.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let found = match cookie(request.headers(), SESSION_COOKIE) {
        Some(value) => {
            let hash = session_hash(value);
            match state.store.session(&hash, chrono::Utc::now()).await {
                Ok(found) => found.map(|s| (s, hash)),
                Err(err) => {
                    return PageError::from(crate::api::ApiError::from(err)).into_response();
                }
            }
        }
        None => None,
    };
    let Some((session, hash)) = found else {
        let next_page = match *request.method() {
            Method::GET => request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string()),
            _ => None,
        };
        return match next_page.filter(|p| p != "/") {
            Some(page) => see_other(&format!("/login?next={}", super::escape_query(&page))),
            None => see_other("/login"),
        };
    };
    let viewer = Viewer {
        user: session.user,
        csrf: session.csrf,
        session_hash: hash,
    };
    let request = if is_safe(request.method()) {
        request
    } else {
        match checked(request, &viewer.csrf, state.settings.http.max_body_bytes).await {
            Ok(request) => request,
            Err(response) => return response,
        }
    };
    let mut request = request;
    request.extensions_mut().insert(viewer);
    next.run(request).await
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The request back, when it carries `expected` as its CSRF token; a 403
/// page otherwise. A form body is read (up to `limit`) to find the field.
pub async fn checked(request: Request, expected: &str, limit: usize) -> Result<Request, Response> {
    if let Some(token) = request
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return if same_token(token, expected) {
            Ok(request)
        } else {
            Err(PageError::Csrf.into_response())
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Err(PageError::TooLarge.into_response()),
    };
    let token = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned());
    match token {
        Some(token) if same_token(&token, expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(PageError::Csrf.into_response()),
    }
}

/// The client's address: the TCP peer.
pub fn client_ip(parts: &axum::http::Extensions) -> Option<IpAddr> {
    parts
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Failed logins per address and per client IP in a sliding window.
#[derive(Debug)]
pub struct LoginLimiter {
    per_address: u32,
    per_ip: u32,
    window: Duration,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Keys the limiter keeps before it drops those with no recent failure.
const LIMITER_KEYS: usize = 10_000;

impl LoginLimiter {
    pub fn new(settings: &crate::config::HttpSettings) -> Arc<Self> {
        Arc::new(LoginLimiter {
            per_address: settings.login_failures_per_address,
            per_ip: settings.login_failures_per_ip,
            window: Duration::from_secs(settings.login_window_secs),
            failures: Mutex::new(HashMap::new()),
        })
    }

    fn keys(email: &str, ip: Option<IpAddr>) -> [(String, bool); 2] {
        [
            (format!("a:{}", email.trim().to_lowercase()), true),
            (
                format!("i:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
                false,
            ),
        ]
    }

    /// `Some(wait)` when this address or IP has used up its failures.
    pub fn blocked(&self, email: &str, ip: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        Self::keys(email, ip)
            .iter()
            .filter_map(|(key, is_address)| {
                let limit = if *is_address {
                    self.per_address
                } else {
                    self.per_ip
                };
                let recent: Vec<&Instant> = map
                    .get(key)?
                    .iter()
                    .filter(|t| now.duration_since(**t) < self.window)
                    .collect();
                (recent.len() >= limit as usize)
                    .then(|| self.window.saturating_sub(now.duration_since(*recent[0])))
            })
            .max()
    }

    pub fn failed(&self, email: &str, ip: Option<IpAddr>) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= LIMITER_KEYS {
            let window = self.window;
            map.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < window));
        }
        for (key, _) in Self::keys(email, ip) {
            let times = map.entry(key).or_default();
            times.retain(|t| now.duration_since(*t) < self.window);
            times.push(now);
        }
    }

    /// A successful login clears the address's failures (not the IP's).
    pub fn succeeded(&self, email: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&format!("a:{}", email.trim().to_lowercase()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "a=1; emailin_session=abc".parse().unwrap());
        headers.append(header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
        assert!(!same_token("", ""));
    }

    #[test]
    fn the_limiter_counts_failures_per_address_and_per_ip() {
        let mut settings = crate::config::Settings::load(None).expect("defaults").http;
        settings.login_failures_per_address = 2;
        settings.login_failures_per_ip = 3;
        let limiter = LoginLimiter::new(&settings);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        limiter.failed("A@example.com", Some(ip));
        assert!(limiter.blocked("a@example.com", Some(ip)).is_none());
        limiter.failed("a@example.com", Some(ip));
        assert!(limiter.blocked("a@example.com", None).is_some());
        assert!(limiter.blocked("b@example.com", None).is_none());
        limiter.failed("c@example.com", Some(ip));
        assert!(limiter.blocked("d@example.com", Some(ip)).is_some());
        limiter.succeeded("a@example.com");
        assert!(limiter.blocked("a@example.com", None).is_none());
    }
}
