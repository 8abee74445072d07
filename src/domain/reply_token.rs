//! Signed reply tokens: the `r-<token>` sub-address outbound replies carry
//! in `Reply-To` (`sales+r-<token>@…`).
//!
//! A record stores a random token; the address carries that token followed
//! by a truncated HMAC-SHA256 of it under a server secret. Processing trusts
//! a token only when the signature verifies, so an address cannot be
//! guessed from a record number nor forged from a leaked token of another
//! deployment. Everything is lower-case hex: mail systems may fold the case
//! of a local part.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex characters of signature appended to the stored token (80 bits).
pub const SIGNATURE_HEX: usize = 20;

/// The secret reply tokens are signed with.
#[derive(Clone)]
pub struct ReplyKey(Arc<[u8]>);

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyKey(***)")
    }
}

impl ReplyKey {
    /// A key from secret bytes (at least 32 are expected).
    pub fn new(secret: &[u8]) -> Self {
        Self(Arc::from(secret))
    }

    fn mac(&self, token: &str) -> Hmac<Sha256> {
        self.mac_for(b"emailin reply token\0", token)
    }

    /// A MAC of `token` for one purpose: a signature made for one never
    /// verifies for another.
    fn mac_for(&self, purpose: &[u8], token: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        mac.update(purpose);
        mac.update(token.as_bytes());
        mac
    }

    /// The token of a one-click unsubscribe link (RFC 8058) for a user's
    /// notifications: the user's id and its signature.
    pub fn unsubscribe_token(&self, user: uuid::Uuid) -> String {
        let id = user.simple().to_string();
        let tag = self
            .mac_for(b"emailin unsubscribe\0", &id)
            .finalize()
            .into_bytes();
        format!("{id}{}", hex::encode(&tag[..16]))
    }

    /// The user an unsubscribe token names, when its signature verifies.
    pub fn verify_unsubscribe(&self, token: &str) -> Option<uuid::Uuid> {
        let token = token.to_ascii_lowercase();
        let (id, signature) = (token.get(..32)?, token.get(32..)?);
        let signature = hex::decode(signature).ok()?;
        if signature.len() != 16 {
            return None;
        }
        self.mac_for(b"emailin unsubscribe\0", id)
            .verify_truncated_left(&signature)
            .ok()?;
        uuid::Uuid::parse_str(id).ok()
    }

    /// The address form of a stored token: the token and its signature.
    pub fn sign(&self, token: &str) -> String {
        let tag = self.mac(token).finalize().into_bytes();
        let mut signed = token.to_ascii_lowercase();
        signed.push_str(&hex::encode(&tag[..SIGNATURE_HEX / 2]));
        signed
    }

    /// The stored token inside `signed` (in any case), when its signature verifies.
    pub fn verify(&self, signed: &str) -> Option<String> {
        let signed = signed.to_ascii_lowercase();
        let split = signed.len().checked_sub(SIGNATURE_HEX)?;
        if split == 0 || !signed.is_char_boundary(split) {
            return None;
        }
        let (token, signature) = signed.split_at(split);
        let signature = hex::decode(signature).ok()?;
        self.mac(token).verify_truncated_left(&signature).ok()?;
        Some(token.to_string())
    }
}

/// Sub-address tag prefix of reply tokens: `sales+r-<token>@…`.
pub const REPLY_TOKEN_TAG: &str = "r-";

/// The record number in the first `[#<digits>]` of a subject.
pub fn subject_tag(subject: &str) -> Option<i64> {
    let mut rest = subject;
    while let Some(start) = rest.find("[#") {
        let after = &rest[start + 2..];
        let digits: &str = &after[..after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len())];
        if !digits.is_empty()
            && after[digits.len()..].starts_with(']')
            && let Ok(n) = digits.parse()
        {
            return Some(n);
        }
        rest = after;
    }
    None
}

/// A new record's token: a UUIDv7 in hex, 74 random bits behind a time
/// prefix, so the unique index on it grows at its end instead of at random
/// pages.
pub fn new_reply_token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_to_itself() {
        let key = ReplyKey::new(&[7; 32]);
        let signed = key.sign("0193f1c2aa");
        assert_eq!(signed.len(), 10 + SIGNATURE_HEX);
        assert_eq!(key.verify(&signed).as_deref(), Some("0193f1c2aa"));
        // Case folded by a mail system on the way back.
        assert_eq!(
            key.verify(&signed.to_ascii_uppercase()).as_deref(),
            Some("0193f1c2aa")
        );
    }

    #[test]
    fn forged_or_foreign_tokens_do_not_verify() {
        let key = ReplyKey::new(&[7; 32]);
        let other = ReplyKey::new(&[8; 32]);
        let signed = key.sign("0193f1c2aa");
        assert_eq!(other.verify(&signed), None);
        let mut forged = signed.clone();
        forged.replace_range(0..1, "1");
        assert_eq!(key.verify(&forged), None);
        assert_eq!(key.verify("0193f1c2aa"), None);
        assert_eq!(key.verify(""), None);
        assert_eq!(key.verify(&"z".repeat(40)), None);
        assert_eq!(key.verify("é".repeat(15).as_str()), None);
    }

    #[test]
    fn subject_tag_finds_the_first_well_formed_tag() {
        assert_eq!(subject_tag("Re: Quote [#42]"), Some(42));
        assert_eq!(subject_tag("[#x] then [#7] and [#8]"), Some(7));
        assert_eq!(subject_tag("[#] [#12 no close"), None);
        assert_eq!(subject_tag("[#99999999999999999999999]"), None);
    }
}
