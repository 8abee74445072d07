//! Blocked senders: addresses and whole domains (with their subdomains).

use super::EmailAddress;

/// The blocked senders the running service checks (config and API entries).
pub type BlockListHandle = super::Snapshot<BlockList>;

#[derive(Debug, Clone, Default)]
pub struct BlockList {
    addresses: Vec<String>,
    domains: Vec<String>,
}

impl BlockList {
    /// Entries with an `@` block one address; others block a domain.
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut list = Self::default();
        for e in entries {
            let e = Self::normalize(e.as_ref());
            if e.is_empty() {
                continue;
            }
            if e.contains('@') {
                list.addresses.push(e);
            } else {
                list.domains.push(e);
            }
        }
        list
    }

    /// An entry as it is stored and matched: trimmed, lower-case, no leading `@`.
    pub fn normalize(entry: &str) -> String {
        entry.trim().trim_start_matches('@').to_ascii_lowercase()
    }

    pub fn blocks(&self, address: &EmailAddress) -> bool {
        let domain = address.domain();
        self.addresses.iter().any(|a| a == address.as_str())
            || self.domains.iter().any(|d| {
                domain == d
                    || domain
                        .strip_suffix(d.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
    }

    /// Whether the (unparsed) address is blocked; unparseable ones are not.
    pub fn blocks_str(&self, address: &str) -> bool {
        EmailAddress::parse(address).is_ok_and(|a| self.blocks(&a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_addresses_domains_and_subdomains_only() {
        let list = BlockList::new(&["spam.example", "bad@ok.example"]);
        assert!(list.blocks_str("x@spam.example"));
        assert!(list.blocks_str("x@mx.spam.example"));
        assert!(!list.blocks_str("x@notspam.example"));
        assert!(list.blocks_str("BAD@ok.example"));
        assert!(!list.blocks_str("good@ok.example"));
    }
}
