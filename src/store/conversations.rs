//! Storage for reading and reshaping conversations: attachment bytes.
//!
//! The queries are plain SQL constants both dialects accept; the
//! `sql_conversation_store!` glue only binds and reads them, once per backend.

use async_trait::async_trait;
use sqlx::Row;

use super::{AttachmentView, StoreResult};

/// An attachment and its bytes.
#[derive(Debug, Clone)]
pub struct StoredAttachment {
    pub view: AttachmentView,
    pub bytes: Vec<u8>,
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// One attachment with its bytes.
    async fn attachment(&self, id: uuid::Uuid) -> StoreResult<Option<StoredAttachment>>;
    /// A message's HTML part and its attachments (`None` for no message).
    async fn message_html(&self, id: uuid::Uuid) -> StoreResult<Option<MessageHtml>>;
}

/// What the HTML view of a message shows.
#[derive(Debug, Clone)]
pub struct MessageHtml {
    pub html: Option<String>,
    pub attachments: Vec<AttachmentView>,
}

pub(super) const ATTACHMENT: &str = "
    SELECT a.id, a.name, a.content_type, a.size, a.sha256, a.content_id, a.inline, b.bytes
    FROM attachments a JOIN attachment_blobs b ON b.sha256 = a.sha256
    WHERE a.id = $1";

pub(super) const MESSAGE_HTML: &str = "SELECT html_body FROM messages WHERE id = $1";

pub(super) const MESSAGE_ATTACHMENTS: &str = "
    SELECT id, name, content_type, size, sha256, content_id, inline
    FROM attachments WHERE message_id = $1 ORDER BY id";

/// An attachment row's view (`id`, `name`, `content_type`, `size`,
/// `sha256`, `content_id`, `inline`).
pub(super) fn attachment_view<R: Row>(r: &R) -> StoreResult<AttachmentView>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'q> uuid::Uuid: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> String: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> i64: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
    for<'q> bool: sqlx::Decode<'q, R::Database> + sqlx::Type<R::Database>,
{
    let id: uuid::Uuid = r.try_get("id")?;
    Ok(AttachmentView {
        id,
        name: r.try_get("name")?,
        content_type: r.try_get("content_type")?,
        size: r.try_get("size")?,
        sha256: r.try_get("sha256")?,
        content_id: r.try_get("content_id")?,
        inline: r.try_get("inline")?,
        url: AttachmentView::url_of(id),
    })
}

macro_rules! sql_conversation_store {
    ($store:ty, $db:ty) => {
        #[::async_trait::async_trait]
        impl $crate::store::ConversationStore for $store {
            async fn attachment(
                &self,
                id: ::uuid::Uuid,
            ) -> StoreResult<Option<$crate::store::StoredAttachment>> {
                use $crate::store::conversations as q;
                let row = sqlx::query(q::ATTACHMENT)
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?;
                match row {
                    Some(r) => Ok(Some($crate::store::StoredAttachment {
                        view: q::attachment_view(&r)?,
                        bytes: r.try_get("bytes")?,
                    })),
                    None => Ok(None),
                }
            }

            async fn message_html(
                &self,
                id: ::uuid::Uuid,
            ) -> StoreResult<Option<$crate::store::MessageHtml>> {
                use $crate::store::conversations as q;
                let Some(row) = sqlx::query(q::MESSAGE_HTML)
                    .bind(id)
                    .fetch_optional(self.read_pool())
                    .await?
                else {
                    return Ok(None);
                };
                let attachments = sqlx::query(q::MESSAGE_ATTACHMENTS)
                    .bind(id)
                    .fetch_all(self.read_pool())
                    .await?
                    .iter()
                    .map(q::attachment_view)
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Some($crate::store::MessageHtml {
                    html: row.try_get("html_body")?,
                    attachments,
                }))
            }
        }
    };
}

pub(super) use sql_conversation_store;
