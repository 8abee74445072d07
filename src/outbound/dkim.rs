//! DKIM signing of everything the service sends (replies, forwards,
//! notifications, invitations), with mail-auth: RSA-SHA256 or Ed25519-SHA256
//! (RFC 6376, RFC 8463), relaxed/relaxed, over the headers that make a
//! message what it is.
//!
//! The key is read once at start (`[outbound] dkim_private_key_file`, PEM:
//! PKCS#8 `PRIVATE KEY` for either algorithm, or PKCS#1 `RSA PRIVATE KEY`);
//! a key that cannot be read stops the service at start rather than
//! sending unsigned mail later.

use std::sync::Arc;

use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

use crate::config::OutboundSettings;

/// Headers signed: those a reader sees and threading uses. `From` twice
/// (oversigning), so a second `From` added on the way breaks the signature.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// A configured DKIM key, ready to sign.
#[derive(Clone)]
pub struct Dkim {
    signer: Arc<Signer>,
    domain: String,
    selector: String,
    /// The `p=` value to publish at `selector._domainkey.domain`.
    public_key: String,
    algorithm: &'static str,
}

impl std::fmt::Debug for Dkim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dkim")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl Dkim {
    /// The key `settings` name, or `None` when no DKIM domain is set.
    ///
    /// # Errors
    /// A missing selector or key file, or a key that is neither RSA nor
    /// Ed25519, as a sentence naming the setting.
    pub fn load(settings: &OutboundSettings) -> Result<Option<Self>, String> {
        let domain = settings.dkim_domain.trim().to_ascii_lowercase();
        if domain.is_empty() {
            return Ok(None);
        }
        let selector = settings.dkim_selector.trim().to_ascii_lowercase();
        if selector.is_empty() {
            return Err("[outbound] dkim_selector must be set with dkim_domain".into());
        }
        let path = settings.dkim_private_key_file.trim();
        if path.is_empty() {
            return Err("[outbound] dkim_private_key_file must be set with dkim_domain".into());
        }
        let pem = std::fs::read(path)
            .map_err(|e| format!("[outbound] dkim_private_key_file {path:?}: {e}"))?;
        Self::from_pem(&pem, &domain, &selector)
            .map(Some)
            .map_err(|e| format!("[outbound] dkim_private_key_file {path:?}: {e}"))
    }

    /// A key from PEM text.
    ///
    /// # Errors
    /// Text that holds no RSA or Ed25519 private key.
    pub fn from_pem(pem: &[u8], domain: &str, selector: &str) -> Result<Self, String> {
        let der =
            PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no PEM private key ({e})"))?;
        let ed25519 = match &der {
            PrivateKeyDer::Pkcs8(pkcs8) => {
                Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der()).ok()
            }
            _ => None,
        };
        let (signer, public_key, algorithm) = match ed25519 {
            Some(key) => {
                let public = key.public_key();
                (
                    Signer::Ed25519(signer(key, domain, selector)),
                    public,
                    "ed25519",
                )
            }
            None => {
                if matches!(der, PrivateKeyDer::Sec1(_)) {
                    return Err("an EC key: DKIM signs with RSA or Ed25519".into());
                }
                let key = RsaKey::<Sha256>::from_key_der(der)
                    .map_err(|e| format!("neither an Ed25519 nor a usable RSA key: {e}"))?;
                let public = rsa_spki(&key.public_key());
                (Signer::Rsa(signer(key, domain, selector)), public, "rsa")
            }
        };
        Ok(Self {
            signer: Arc::new(signer),
            domain: domain.to_string(),
            selector: selector.to_string(),
            public_key: base64::engine::general_purpose::STANDARD.encode(public_key),
            algorithm,
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn selector(&self) -> &str {
        &self.selector
    }

    /// The TXT record to publish at [`Dkim::record_name`].
    pub fn record(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm, self.public_key)
    }

    /// `selector._domainkey.domain`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// `raw` with a `DKIM-Signature` header in front.
    ///
    /// # Errors
    /// The signing library's, as text (a message it cannot read).
    pub fn sign(&self, raw: &[u8]) -> Result<Vec<u8>, String> {
        let signature = match self.signer.as_ref() {
            Signer::Rsa(s) => s.sign(raw),
            Signer::Ed25519(s) => s.sign(raw),
        }
        .map_err(|e| format!("DKIM signing failed: {e}"))?;
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(raw);
        Ok(signed)
    }
}

fn signer<T: mail_auth::common::crypto::SigningKey>(
    key: T,
    domain: &str,
    selector: &str,
) -> DkimSigner<T, Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// An RSA public key (PKCS#1 `RSAPublicKey`) as the SubjectPublicKeyInfo
/// DKIM records carry (RFC 6376 3.6.1).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x00];
    bits.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// One DER element: tag, definite length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed25519_pem() -> Vec<u8> {
        let der = Ed25519Key::generate_pkcs8().expect("key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n").into_bytes()
    }

    #[test]
    fn an_ed25519_key_signs_and_names_its_record() {
        let dkim = Dkim::from_pem(&ed25519_pem(), "acme.example", "mail").expect("key");
        assert_eq!(dkim.record_name(), "mail._domainkey.acme.example");
        assert!(dkim.record().starts_with("v=DKIM1; k=ed25519; p="));
        let signed = dkim
            .sign(b"From: a@acme.example\r\nTo: b@x.example\r\nSubject: hi\r\n\r\nbody\r\n")
            .expect("signed");
        let text = String::from_utf8(signed).expect("text");
        assert!(
            text.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{text}"
        );
        assert!(
            text.contains("d=acme.example") && text.contains("s=mail"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "From: a@acme.example\r\nTo: b@x.example\r\nSubject: hi\r\n\r\nbody\r\n"
            )
        );
    }

    #[test]
    fn what_is_no_key_is_refused_with_a_reason() {
        for pem in [
            &b"nothing here"[..],
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let err = Dkim::from_pem(pem, "acme.example", "mail").expect_err("no key");
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn der_lengths_use_the_long_form_past_127_bytes() {
        assert_eq!(der(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = der(0x04, &[0; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(long.len(), 304);
    }
}
