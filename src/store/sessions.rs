//! Storage the web UI needs: passwords, browser sessions, what each user
//! has read, record numbers, and the live board's change stamp.
//!
//! The queries are plain SQL constants both dialects accept; the
//! `sql_session_store!` glue only binds and reads them, once per backend.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{StoreResult, UserView};

/// A browser session to store: only the SHA-256 of the cookie's value.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id_hash: String,
    pub user_id: Uuid,
    /// The token every state-changing form of this session carries.
    pub csrf: String,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// A live session and whose it is.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: UserView,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Passwords, sessions and read marks.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Sets (or, with `None`, clears) a user's password hash. Clearing it
    /// or setting a new one ends the user's sessions.
    ///
    /// # Errors
    /// [`super::StoreError::NotFound`] for an unknown user.
    async fn set_password(&self, user: Uuid, hash: Option<&str>) -> StoreResult<()>;
    /// The user with this address and their password hash, if any.
    async fn login_user(&self, email: &str) -> StoreResult<Option<(UserView, Option<String>)>>;
    async fn create_session(&self, session: &NewSession) -> StoreResult<()>;
    /// The session with this hash, unless it expired or was revoked.
    async fn session(&self, id_hash: &str, now: DateTime<Utc>) -> StoreResult<Option<SessionUser>>;
    /// Ends one session; false when it was not live.
    async fn revoke_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Ends every session of a user; how many were live.
    async fn revoke_user_sessions(&self, user: Uuid) -> StoreResult<u64>;
    /// Notes that a user has read a record now.
    async fn mark_read(&self, user: Uuid, record: Uuid) -> StoreResult<()>;
    /// When the user last read each of these records (those never read are left out).
    async fn read_marks(
        &self,
        user: Uuid,
        records: &[Uuid],
    ) -> StoreResult<Vec<(Uuid, DateTime<Utc>)>>;
    /// Stores a one-time set-password link for a user.
    async fn create_password_link(
        &self,
        token_hash: &str,
        user: Uuid,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The user of a live link (unused, not expired), without using it.
    async fn password_link_user(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<UserView>>;
    /// Uses a live link: sets the user's password (ending their sessions)
    /// and marks the link used, at once. `None` when it was not live.
    async fn use_password_link(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>>;
    /// The id of the record with this number.
    async fn record_id(&self, number: i64) -> StoreResult<Option<Uuid>>;
    /// Changes whenever a record is created or changed, or gets a message:
    /// the live board compares it to know when to refresh.
    async fn board_stamp(&self) -> StoreResult<String>;
}

pub(super) const SET_PASSWORD: &str = "UPDATE users SET password_hash = $1 WHERE id = $2";

pub(super) const REVOKE_USER_SESSIONS: &str = "
    UPDATE web_sessions SET revoked_at = $1
    WHERE user_id = $2 AND revoked_at IS NULL AND expires_at > $1";

// The user queries read the columns a `UserView` is made of (`user_columns!`);
// what they join is a subquery that names no column of `users`.
use super::team::user_columns;

pub(super) const LOGIN_USER: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", password_hash FROM users WHERE email = $1"
);

pub(super) const CREATE_SESSION: &str = "
    INSERT INTO web_sessions
        (id_hash, user_id, csrf, client_ip, user_agent, created_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(super) const SESSION: &str = concat!(
    "SELECT ",
    user_columns!(),
    ", s.csrf, s.expires_at FROM users JOIN (
        SELECT user_id, csrf, expires_at FROM web_sessions
        WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > $2
    ) s ON s.user_id = users.id
    WHERE password_hash IS NOT NULL"
);

pub(super) const REVOKE_SESSION: &str = "
    UPDATE web_sessions SET revoked_at = $1
    WHERE id_hash = $2 AND revoked_at IS NULL";

pub(super) const MARK_READ: &str = "
    INSERT INTO record_reads (user_id, record_id, read_at) VALUES ($1, $2, $3)
    ON CONFLICT (user_id, record_id) DO UPDATE SET read_at = excluded.read_at";

pub(super) const CREATE_PASSWORD_LINK: &str = "
    INSERT INTO password_links (token_hash, user_id, created_at, expires_at)
    VALUES ($1, $2, $3, $4)";

pub(super) const PASSWORD_LINK_USER: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE id = (
        SELECT user_id FROM password_links
        WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
    )"
);

pub(super) const USE_PASSWORD_LINK: &str = "
    UPDATE password_links SET used_at = $2
    WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
    RETURNING user_id";

pub(super) const RECORD_ID: &str = "SELECT id FROM records WHERE number = $1";

pub(super) const BOARD_STAMP: &str = "
    SELECT (SELECT COUNT(*) FROM records) AS records,
           (SELECT COUNT(*) FROM messages) AS messages,
           (SELECT MAX(updated_at) FROM records) AS changed";

macro_rules! sql_session_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::SessionStore for $store {
            async fn set_password(&self, user: Uuid, hash: Option<&str>) -> StoreResult<()> {
                use $crate::store::sessions as q;
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(q::SET_PASSWORD)
                    .bind(hash)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query(q::REVOKE_USER_SESSIONS)
                    .bind(Utc::now())
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn login_user(
                &self,
                email: &str,
            ) -> StoreResult<Option<(UserView, Option<String>)>> {
                let row = sqlx::query($crate::store::sessions::LOGIN_USER)
                    .bind(email.to_lowercase())
                    .fetch_optional(self.read_pool())
                    .await?;
                match row {
                    Some(row) => Ok(Some((user_view(&row)?, row.try_get("password_hash")?))),
                    None => Ok(None),
                }
            }

            async fn create_session(&self, s: &$crate::store::NewSession) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query($crate::store::sessions::CREATE_SESSION)
                    .bind(&s.id_hash)
                    .bind(s.user_id)
                    .bind(&s.csrf)
                    .bind(s.client_ip.as_deref())
                    .bind(s.user_agent.as_deref())
                    .bind(Utc::now())
                    .bind(s.expires_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn session(
                &self,
                id_hash: &str,
                now: ::chrono::DateTime<Utc>,
            ) -> StoreResult<Option<$crate::store::SessionUser>> {
                let row = sqlx::query($crate::store::sessions::SESSION)
                    .bind(id_hash)
                    .bind(now)
                    .fetch_optional(self.read_pool())
                    .await?;
                match row {
                    Some(row) => Ok(Some($crate::store::SessionUser {
                        user: user_view(&row)?,
                        csrf: row.try_get("csrf")?,
                        expires_at: row.try_get("expires_at")?,
                    })),
                    None => Ok(None),
                }
            }

            async fn revoke_session(&self, id_hash: &str) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::sessions::REVOKE_SESSION)
                    .bind(Utc::now())
                    .bind(id_hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn revoke_user_sessions(&self, user: Uuid) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let done = sqlx::query($crate::store::sessions::REVOKE_USER_SESSIONS)
                    .bind(Utc::now())
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            async fn mark_read(&self, user: Uuid, record: Uuid) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query($crate::store::sessions::MARK_READ)
                    .bind(user)
                    .bind(record)
                    .bind(Utc::now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn read_marks(
                &self,
                user: Uuid,
                records: &[Uuid],
            ) -> StoreResult<Vec<(Uuid, ::chrono::DateTime<Utc>)>> {
                if records.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q: QueryBuilder<$db> = QueryBuilder::new(
                    "SELECT record_id, read_at FROM record_reads WHERE user_id = ",
                );
                q.push_bind(user).push(" AND record_id IN (");
                let mut list = q.separated(", ");
                for id in records {
                    list.push_bind(*id);
                }
                q.push(")");
                q.build()
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("record_id")?, r.try_get("read_at")?)))
                    .collect()
            }

            async fn create_password_link(
                &self,
                token_hash: &str,
                user: Uuid,
                expires_at: ::chrono::DateTime<Utc>,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query($crate::store::sessions::CREATE_PASSWORD_LINK)
                    .bind(token_hash)
                    .bind(user)
                    .bind(Utc::now())
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn password_link_user(
                &self,
                token_hash: &str,
                now: ::chrono::DateTime<Utc>,
            ) -> StoreResult<Option<UserView>> {
                let row = sqlx::query($crate::store::sessions::PASSWORD_LINK_USER)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(self.read_pool())
                    .await?;
                row.as_ref().map(user_view).transpose()
            }

            async fn use_password_link(
                &self,
                token_hash: &str,
                password_hash: &str,
                now: ::chrono::DateTime<Utc>,
            ) -> StoreResult<Option<Uuid>> {
                use $crate::store::sessions as q;
                let mut tx = self.begin_write().await?;
                let row = sqlx::query(q::USE_PASSWORD_LINK)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let user: Uuid = row.try_get("user_id")?;
                sqlx::query(q::SET_PASSWORD)
                    .bind(password_hash)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(q::REVOKE_USER_SESSIONS)
                    .bind(now)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Some(user))
            }

            async fn record_id(&self, number: i64) -> StoreResult<Option<Uuid>> {
                let row = sqlx::query($crate::store::sessions::RECORD_ID)
                    .bind(number)
                    .fetch_optional(self.read_pool())
                    .await?;
                row.map(|r| r.try_get("id")).transpose().map_err(Into::into)
            }

            async fn board_stamp(&self) -> StoreResult<String> {
                let row = sqlx::query($crate::store::sessions::BOARD_STAMP)
                    .fetch_one(self.read_pool())
                    .await?;
                let records: i64 = row.try_get("records")?;
                let messages: i64 = row.try_get("messages")?;
                let changed: Option<::chrono::DateTime<Utc>> = row.try_get("changed")?;
                Ok(format!(
                    "{records}/{messages}/{}",
                    changed.map(|t| t.timestamp_micros()).unwrap_or_default()
                ))
            }
        }
    };
}

pub(super) use sql_session_store;
