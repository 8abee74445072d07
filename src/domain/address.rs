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

/// `addr` as it must be written on the wire (RFC 5322 §3.4.1, RFC 5321
/// §4.1.2): a local part that is not a dot-atom, such as the legacy carrier
/// form `taro..yamada.@docomo.ne.jp`, is quoted (`"taro..yamada."@docomo.ne.jp`);
/// anything else is returned as it is.
pub fn quoted_for_sending(addr: &str) -> String {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return addr.to_string();
    };
    let atext =
        |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    let dot_atom = !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext));
    if dot_atom || (local.len() >= 2 && local.starts_with('"') && local.ends_with('"')) {
        return addr.to_string();
    }
    let mut quoted = String::with_capacity(local.len() + 2);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    format!("{quoted}@{domain}")
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

/// Addresses that are never people: they never become contacts.
pub fn is_role_address(address: &str) -> bool {
    let local = address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        local.as_str(),
        "mailer-daemon" | "postmaster" | "noreply" | "no-reply" | "donotreply" | "do-not-reply"
    ) || local.starts_with("no-reply")
        || local.starts_with("noreply")
}

/// Shared team mailboxes (`info@`, `support@`, `sales@` …) and role
/// addresses: no person reads mail there as theirs, so nothing is sent to
/// them on someone's behalf (notifications). They still become contacts
/// when customers write from them.
pub fn is_shared_mailbox(address: &str) -> bool {
    let local = address
        .split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    is_role_address(address)
        || matches!(
            local.as_str(),
            "info"
                | "support"
                | "sales"
                | "admin"
                | "office"
                | "team"
                | "hello"
                | "contact"
                | "help"
                | "abuse"
                | "webmaster"
                | "hostmaster"
                | "security"
                | "billing"
                | "root"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_mailboxes_include_role_addresses() {
        assert!(is_shared_mailbox("Info@acme.test"));
        assert!(is_shared_mailbox("noreply@acme.test"));
        assert!(!is_shared_mailbox("ana@acme.test"));
        assert!(!is_role_address("info@acme.test"), "still a contact");
    }

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

    #[test]
    fn local_parts_that_are_not_dot_atoms_are_quoted_for_sending() {
        for (written, sent) in [
            ("ann@example.com", "ann@example.com"),
            ("o'brien+tag@example.com", "o'brien+tag@example.com"),
            (
                "taro..yamada.@docomo.ne.jp",
                "\"taro..yamada.\"@docomo.ne.jp",
            ),
            (".hanako@ezweb.ne.jp", "\".hanako\"@ezweb.ne.jp"),
            (
                "\"already quoted\"@x.example",
                "\"already quoted\"@x.example",
            ),
            ("山田@例え.jp", "山田@例え.jp"),
        ] {
            assert_eq!(quoted_for_sending(written), sent, "{written}");
        }
    }

    #[test]
    fn role_addresses() {
        for a in [
            "MAILER-DAEMON@x.org",
            "postmaster@x",
            "noreply@x",
            "no-reply-billing@x",
        ] {
            assert!(is_role_address(a), "{a}");
        }
        assert!(!is_role_address("ann@x"));
    }
}
