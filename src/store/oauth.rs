//! Storage of OAuth 2.0 refresh tokens, sealed by `oauth` before they get
//! here: this module never sees a token in the clear.
//!
//! The queries are plain SQL both dialects accept; `sql_oauth_store!` only
//! binds and runs them.

use async_trait::async_trait;

use super::StoreResult;

/// Sealed refresh tokens, by account (`imap:NAME` or `outbound`).
#[async_trait]
pub trait OAuthStore: Send + Sync {
    /// The sealed token of an account, if one was stored.
    async fn oauth_token(&self, account: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Stores (or replaces) an account's sealed token.
    async fn set_oauth_token(&self, account: &str, sealed: &[u8]) -> StoreResult<()>;
}

pub(super) const TOKEN: &str = "SELECT sealed FROM oauth_tokens WHERE account = $1";

pub(super) const SET_TOKEN: &str = "
    INSERT INTO oauth_tokens (account, sealed, updated_at) VALUES ($1, $2, $3)
    ON CONFLICT (account) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at";

macro_rules! sql_oauth_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::OAuthStore for $store {
            async fn oauth_token(&self, account: &str) -> StoreResult<Option<Vec<u8>>> {
                Ok(sqlx::query_scalar($crate::store::oauth::TOKEN)
                    .bind(account)
                    .fetch_optional(self.read_pool())
                    .await?)
            }

            async fn set_oauth_token(&self, account: &str, sealed: &[u8]) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query($crate::store::oauth::SET_TOKEN)
                    .bind(account)
                    .bind(sealed)
                    .bind($crate::store::now_ms())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(super) use sql_oauth_store;
