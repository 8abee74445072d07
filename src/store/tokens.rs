//! API bearer tokens: only their SHA-256 is stored; created, found on each
//! request, listed and revoked.
//!
//! `sql_token_store!` is expanded in each backend beside `sql_store!`,
//! whose imports and helpers (`token_view`) it uses.

use async_trait::async_trait;

use super::{Role, StoreResult, TokenView};

/// The API's bearer tokens.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new API token's hash under a unique name.
    ///
    /// # Errors
    /// [`super::StoreError::Conflict`] when the name is taken.
    async fn create_token(
        &self,
        name: &str,
        role: Role,
        token_hash: &str,
    ) -> StoreResult<TokenView>;

    /// The unrevoked token with this hash.
    async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenView>>;

    async fn list_tokens(&self) -> StoreResult<Vec<TokenView>>;

    /// Revokes a token by id or name; `false` when there is no such active token.
    async fn revoke_token(&self, id_or_name: &str) -> StoreResult<bool>;
}

macro_rules! sql_token_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl $crate::store::TokenStore for $store {
            async fn create_token(&self, name: &str, role: Role, token_hash: &str) -> StoreResult<TokenView> {
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(
                    "INSERT INTO api_tokens (id, name, role, token_hash, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (name) DO NOTHING RETURNING id, name, role, created_at, revoked_at",
                )
                .bind(Uuid::now_v7())
                .bind(name)
                .bind(role.as_str())
                .bind(token_hash)
                .bind(Utc::now())
                .fetch_optional(&mut *tx)
                .await?;
                tx.commit().await?;
                match row {
                    Some(r) => token_view(&r),
                    None => Err(StoreError::Conflict(format!("a token named {name:?} exists"))),
                }
            }

            async fn find_token(&self, token_hash: &str) -> StoreResult<Option<TokenView>> {
                sqlx::query(
                    "SELECT id, name, role, created_at, revoked_at FROM api_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(token_hash)
                .fetch_optional(self.read_pool())
                .await?
                .as_ref()
                .map(token_view)
                .transpose()
            }

            async fn list_tokens(&self) -> StoreResult<Vec<TokenView>> {
                sqlx::query("SELECT id, name, role, created_at, revoked_at FROM api_tokens ORDER BY id")
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(token_view)
                    .collect()
            }

            async fn revoke_token(&self, id_or_name: &str) -> StoreResult<bool> {
                let q = match Uuid::parse_str(id_or_name) {
                    Ok(id) => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                        .bind(Utc::now())
                        .bind(id),
                    Err(_) => sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                        .bind(Utc::now())
                        .bind(id_or_name.to_string()),
                };
                self.write_one(q).await
            }
        }
    };
}
pub(super) use sql_token_store;
