//! Message-IDs as keys of the thread index.

use sha2::{Digest, Sha256};

/// The form a Message-ID is stored and looked up in: without angle brackets
/// or surrounding whitespace, case kept (RFC 5322 ids are case-sensitive).
/// Returns `None` for an empty id.
pub fn normalize_message_id(raw: &str) -> Option<String> {
    let id = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    // A NUL byte is no part of an id (and PostgreSQL text cannot hold one).
    (!id.is_empty()).then(|| id.replace('\0', ""))
}

/// A stable id for a message that has none: the same bytes always give the
/// same id, so a retried delivery is still recognised as a duplicate.
pub fn synthetic_message_id(raw: &[u8]) -> String {
    let digest = Sha256::digest(raw);
    format!("{}@emailin.synthetic", hex::encode(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_strips_brackets_and_rejects_empty() {
        assert_eq!(normalize_message_id(" <a@b> ").as_deref(), Some("a@b"));
        assert_eq!(normalize_message_id("<>"), None);
    }

    #[test]
    fn synthetic_id_is_stable_and_content_dependent() {
        assert_eq!(synthetic_message_id(b"x"), synthetic_message_id(b"x"));
        assert_ne!(synthetic_message_id(b"x"), synthetic_message_id(b"y"));
    }
}
