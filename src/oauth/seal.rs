//! Sealing refresh tokens for the database: ChaCha20-Poly1305 with the
//! `[oauth]` key, a random nonce per seal, and the account name as
//! associated data (a token copied to another account's row does not open).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// The key refresh tokens are sealed with.
#[derive(Clone)]
pub struct SealKey(std::sync::Arc<LessSafeKey>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(***)")
    }
}

impl SealKey {
    /// # Errors
    /// Never for 32 bytes; the message names the cause otherwise.
    pub fn new(bytes: &[u8; 32]) -> Result<Self, String> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|e| e.to_string())?;
        Ok(Self(std::sync::Arc::new(LessSafeKey::new(key))))
    }

    /// Nonce, then ciphertext and tag.
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn seal(&self, account: &str, plain: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| "no random bytes for a nonce".to_string())?;
        let mut sealed = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(account.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| "sealing failed".to_string())?;
        let mut out = nonce.to_vec();
        out.append(&mut sealed);
        Ok(out)
    }

    /// The plain bytes; `None` when they were sealed with another key, for
    /// another account, or were changed.
    pub fn open(&self, account: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(account.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_account() {
        let key = SealKey::new(&[7; 32]).unwrap();
        let sealed = key.seal("imap:support", b"refresh-123").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"refresh-123"));
        assert_eq!(key.open("imap:support", &sealed).unwrap(), b"refresh-123");
        assert!(key.open("outbound", &sealed).is_none());
        assert!(
            SealKey::new(&[8; 32])
                .unwrap()
                .open("imap:support", &sealed)
                .is_none()
        );
        let mut changed = sealed.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(key.open("imap:support", &changed).is_none());
        assert!(key.open("imap:support", b"short").is_none());
        assert_ne!(key.seal("imap:support", b"refresh-123").unwrap(), sealed);
    }
}
