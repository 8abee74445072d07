//! Email addresses as emailin compares them: trimmed, lower-cased, with the
//! `+tag` sub-address separable from the base address.

use std::fmt;

/// A syntactically plausible `local@domain` address, lower-cased.
///
/// Lower-casing the local part is not what RFC 5321 promises, but it is what
/// every mailbox provider does and what users expect: `Ann@Example.com` and
/// `ann@example.com` are one contact.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no '@'")]
    NoAt,
    #[error("address has an empty local part or domain")]
    EmptyPart,
    #[error("address contains whitespace or control characters")]
    BadCharacter,
    #[error("address is longer than 320 bytes")]
    TooLong,
    #[error("address contains one of <>()[]:;,\\\" outside quotes")]
    Special,
}

impl EmailAddress {
    /// Parses `s`, accepting an optional pair of angle brackets.
    ///
    /// # Errors
    /// An [`AddressError`] saying what is wrong.
    pub fn parse(s: &str) -> Result<Self, AddressError> {
        let s = s.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s)
            .trim();
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        if s.len() > 320 {
            return Err(AddressError::TooLong);
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(AddressError::BadCharacter);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(AddressError::NoAt)?;
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::EmptyPart);
        }
        // RFC 5322 specials stand in a local part only inside quotes
        // (`"a:b"@x`), and never in a domain name (an address literal
        // `[192.0.2.1]` aside): `Message-ID:<id@host>` is no address.
        const SPECIALS: &[char] = &['<', '>', '(', ')', '[', ']', ':', ';', ',', '\\', '"', '@'];
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        let literal = domain.starts_with('[') && domain.ends_with(']');
        if (!quoted && local.contains(SPECIALS)) || (!literal && domain.contains(SPECIALS)) {
            return Err(AddressError::Special);
        }
        Ok(Self(s.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn local(&self) -> &str {
        self.split().0
    }

    pub fn domain(&self) -> &str {
        self.split().1
    }

    fn split(&self) -> (&str, &str) {
        // Invariant of `parse`: there is an '@'.
        self.0.rsplit_once('@').unwrap_or((&self.0, ""))
    }

    /// The address without its `+tag`, and the tag: `sales+r-x@d` → (`sales@d`, `r-x`).
    pub fn base_and_tag(&self) -> (EmailAddress, Option<&str>) {
        let (local, domain) = self.split();
        match local.split_once('+') {
            Some((base, tag)) if !base.is_empty() => {
                (EmailAddress(format!("{base}@{domain}")), Some(tag))
            }
            _ => (self.clone(), None),
        }
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The addresses mentioned as `@user@example.com` in a text, lower-cased,
/// in order, without repeats.
pub fn mentions(text: &str) -> Vec<EmailAddress> {
    let mut found: Vec<EmailAddress> = Vec::new();
    for word in text.split_whitespace() {
        let Some(rest) = word.strip_prefix('@') else {
            continue;
        };
        let rest = rest.trim_end_matches(|c: char| !c.is_alphanumeric());
        if let Ok(address) = EmailAddress::parse(rest)
            && !found.contains(&address)
        {
            found.push(address);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_trimmed_and_deduplicated() {
        let found = mentions("ping @Bob@Example.com, and @bob@example.com. Not mail@x or @nobody");
        assert_eq!(found, [EmailAddress::parse("bob@example.com").unwrap()]);
    }

    #[test]
    fn parse_lowercases_and_strips_brackets() {
        let a = EmailAddress::parse(" <Ann@Example.COM> ").unwrap();
        assert_eq!(a.as_str(), "ann@example.com");
        assert_eq!(a.local(), "ann");
        assert_eq!(a.domain(), "example.com");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert_eq!(EmailAddress::parse(""), Err(AddressError::Empty));
        assert_eq!(EmailAddress::parse("ann"), Err(AddressError::NoAt));
        assert_eq!(EmailAddress::parse("@x"), Err(AddressError::EmptyPart));
        assert_eq!(
            EmailAddress::parse("a b@x"),
            Err(AddressError::BadCharacter)
        );
        for bad in [
            "message-id:<id@host.example>",
            "to:<ann@example.com",
            "a,b@x",
            "ann@exa(mple).com",
            "a@b@x",
        ] {
            assert_eq!(
                EmailAddress::parse(bad),
                Err(AddressError::Special),
                "{bad}"
            );
        }
        // Quoted local parts and address literals keep their specials.
        assert!(EmailAddress::parse("\"a:b\"@example.com").is_ok());
        assert!(EmailAddress::parse("postmaster@[192.0.2.1]").is_ok());
    }

    #[test]
    fn base_and_tag_splits_sub_address() {
        let a = EmailAddress::parse("Sales+r-abc@in.acme.example").unwrap();
        let (base, tag) = a.base_and_tag();
        assert_eq!(base.as_str(), "sales@in.acme.example");
        assert_eq!(tag, Some("r-abc"));
        let plain = EmailAddress::parse("sales@x").unwrap();
        assert_eq!(plain.base_and_tag(), (plain.clone(), None));
    }
}
