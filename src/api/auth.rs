//! Bearer tokens: every `/api/v1` route needs one; admin routes need an
//! admin's. Tokens are random, shown once, and stored only as SHA-256.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use rand::RngCore;

use super::{ApiError, ApiState};
use crate::domain::sha256_hex;
use crate::store::{Role, TokenView};

/// A new token: `emi_` and 64 hex digits (256 random bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("emi_{}", hex::encode(bytes))
}

/// What is stored of a token.
pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// The token a request was made with.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenView);

/// Middleware: 401 unless the request carries an active token.
pub async fn require_token(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized)?;
    let found = state
        .store
        .find_token(&token_hash(token))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    request.extensions_mut().insert(Caller(found));
    Ok(next.run(request).await)
}

/// Extractor for admin-only handlers: 403 for a member's token.
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)?;
        if caller.0.role == Role::Admin {
            Ok(Admin(caller))
        } else {
            Err(ApiError::Forbidden)
        }
    }
}
