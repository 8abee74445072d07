//! Thread: the ordered keys that may place a message in an existing record.
//!
//! Order (DESIGN.md), first hit wins: reply token in a recipient address,
//! In-Reply-To, References newest first, `[#ref]` tag in the subject. The
//! lookups themselves happen in `process`, always within one pipeline.

use super::ParsedMail;
use crate::domain::subject_tag;

/// One way a message may name the record it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadKey {
    Token(String),
    InReplyTo(String),
    References(String),
    SubjectTag(i64),
}

/// How many References (newest first) are looked up.
pub const MAX_REFERENCES: usize = 50;

/// The rule name stored on a message that named a thread it may not join
/// (its sender is not on the record); its record links the named one.
pub const RELATED_RECORD_RULE: &str = "related";

/// The rule name stored on a message that matched no key.
pub const NEW_RECORD_RULE: &str = "new";

/// The rule of a message that answered a record closed for longer than its
/// alias's follow-up window, and so started a new record related to it.
pub const FOLLOW_UP_RULE: &str = "follow-up";

impl ThreadKey {
    /// The rule name stored on the message.
    pub fn rule(&self) -> &'static str {
        match self {
            ThreadKey::Token(_) => "reply-token",
            ThreadKey::InReplyTo(_) => "in-reply-to",
            ThreadKey::References(_) => "references",
            ThreadKey::SubjectTag(_) => "subject-tag",
        }
    }

    /// The value it matched on, stored next to the rule.
    pub fn value(&self) -> String {
        match self {
            ThreadKey::Token(v) | ThreadKey::InReplyTo(v) | ThreadKey::References(v) => v.clone(),
            ThreadKey::SubjectTag(n) => format!("[#{n}]"),
        }
    }
}

/// The keys to try for `mail`, in order, without repeats.
pub fn thread_keys(token: Option<&str>, mail: &ParsedMail) -> Vec<ThreadKey> {
    let mut keys = Vec::new();
    if let Some(token) = token {
        keys.push(ThreadKey::Token(token.to_string()));
    }
    // Every id In-Reply-To names, the last (the usual parent) first.
    for id in mail.in_reply_to_all.iter().rev().take(MAX_REFERENCES) {
        let key = ThreadKey::InReplyTo(id.clone());
        if *id != mail.message_id && !keys.contains(&key) {
            keys.push(key);
        }
    }
    // Newest first, and only the newest few: a thread's recent ids are what
    // matter, and a header with thousands of ids must not become a huge query.
    for id in mail.references.iter().rev().take(MAX_REFERENCES) {
        if !mail.in_reply_to_all.contains(id) && *id != mail.message_id {
            keys.push(ThreadKey::References(id.clone()));
        }
    }
    if let Some(n) = mail.subject.as_deref().and_then(subject_tag) {
        keys.push(ThreadKey::SubjectTag(n));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::parse;

    #[test]
    fn keys_follow_the_design_order() {
        let raw = b"From: a@b.c\r\nMessage-ID: <m3@x>\r\nIn-Reply-To: <m2@x>\r\n\
References: <m0@x> <m1@x> <m2@x>\r\nSubject: Re: hi [#5]\r\n\r\nx\r\n";
        let mail = parse(raw).unwrap();
        let keys = thread_keys(Some("tok"), &mail);
        assert_eq!(
            keys,
            [
                ThreadKey::Token("tok".into()),
                ThreadKey::InReplyTo("m2@x".into()),
                ThreadKey::References("m1@x".into()),
                ThreadKey::References("m0@x".into()),
                ThreadKey::SubjectTag(5),
            ]
        );
    }

    #[test]
    fn a_fresh_message_has_no_keys() {
        let mail = parse(b"From: a@b.c\r\nSubject: Hello\r\n\r\nx\r\n").unwrap();
        assert!(thread_keys(None, &mail).is_empty());
    }
}
