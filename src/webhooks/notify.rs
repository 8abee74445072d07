//! Who is told by mail of an event: the owner of a record created for them
//! or reopened, and the users a comment mentions — when they want it, never
//! at a role, no-reply or shared team address, never for machine mail.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::NotificationSettings;
use crate::domain::is_shared_mailbox;
use crate::outbound::notify::{Happened, Notice, compose};
use crate::store::{ConversationItem, MessageView, QueuedNotification, RecordDetail, UserView};

/// Where notifications come from and go through.
#[derive(Debug, Clone)]
pub struct Notifier {
    pub settings: NotificationSettings,
    /// The sender address (`[outbound] system_from`).
    pub from: String,
    /// The domain of Message-IDs and the loop header.
    pub domain: String,
    /// `[http] public_url`, without a trailing `/`.
    pub base_url: String,
    /// Wakes the outbox sender.
    pub wake: Arc<Notify>,
    /// Signs the one-click unsubscribe links.
    pub key: crate::domain::ReplyKey,
}

fn messages(detail: &RecordDetail) -> impl Iterator<Item = &MessageView> {
    detail.conversation.iter().filter_map(|item| match item {
        ConversationItem::Message(m) => Some(m.as_ref()),
        ConversationItem::Event(_) => None,
    })
}

impl Notifier {
    /// The mails an event causes (none for other events).
    pub fn notices(
        &self,
        kind: &str,
        subject: uuid::Uuid,
        detail: &RecordDetail,
        users: &[UserView],
    ) -> Vec<QueuedNotification> {
        let s = &self.settings;
        let inbound = || messages(detail).filter(|m| m.direction == "in");
        let (targets, happened, cause): (Vec<String>, Happened, Option<&MessageView>) = match kind {
            "record.created" if s.record_created => (
                detail.record.owner.iter().cloned().collect(),
                Happened::Created,
                inbound().next(),
            ),
            "record.reopened" if s.record_reopened => (
                detail.record.owner.iter().cloned().collect(),
                Happened::Reopened,
                inbound().last(),
            ),
            "comment.created" if s.mentions => {
                let Some(comment) = messages(detail).find(|m| m.id == subject) else {
                    return Vec::new();
                };
                let by = comment.author.clone().unwrap_or_default();
                let targets = comment
                    .mentions
                    .iter()
                    .filter(|m| !m.eq_ignore_ascii_case(&by))
                    .cloned()
                    .collect();
                (targets, Happened::Mentioned { by }, Some(comment))
            }
            _ => return Vec::new(),
        };
        // Auto-replies, bounces and list mail tell no one.
        if !matches!(happened, Happened::Mentioned { .. })
            && cause.is_some_and(|m| m.class != "normal")
        {
            return Vec::new();
        }
        let now = chrono::Utc::now();
        targets
            .iter()
            .filter_map(|email| users.iter().find(|u| u.email.eq_ignore_ascii_case(email)))
            .filter(|u| u.notify && !is_shared_mailbox(&u.email))
            .map(|to| {
                let notice = Notice {
                    to,
                    happened: happened.clone(),
                    record: &detail.record,
                    // The new part, not the history it quotes.
                    text: cause.and_then(|m| m.reply_text.as_deref().or(m.text.as_deref())),
                    base_url: &self.base_url,
                    unsubscribe: Some(self.key.unsubscribe_token(to.id)),
                    quote_lines: s.quote_lines,
                };
                compose(&notice, &self.from, &self.domain, now)
            })
            .collect()
    }
}
