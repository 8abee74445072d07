//! A conversation's shape: which messages answer which, and the subject a
//! conversation goes by once reply prefixes and record tags are taken off.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::subject_prefix;

/// One message of a record, as threading sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadNode {
    pub id: Uuid,
    /// Its Message-ID (without brackets).
    pub message_id: String,
    pub in_reply_to: Option<String>,
    /// `References`, oldest first.
    pub references: Vec<String>,
}

/// `root` and every message threaded below it, in the order given.
///
/// A message's parent is its `In-Reply-To` when that names a message of
/// `nodes`, else the newest of its `References` that does: clients that
/// drop `In-Reply-To` still keep the chain. A message whose parent is not
/// among `nodes` starts a thread of its own and stays where it is.
pub fn replies_below(nodes: &[ThreadNode], root: Uuid) -> Vec<Uuid> {
    let by_message_id: HashMap<&str, Uuid> = nodes
        .iter()
        .map(|n| (n.message_id.as_str(), n.id))
        .collect();
    let parent: HashMap<Uuid, Uuid> = nodes
        .iter()
        .filter_map(|n| {
            let known = |id: &String| by_message_id.get(id.as_str()).copied();
            let parent = n
                .in_reply_to
                .as_ref()
                .and_then(known)
                .or_else(|| n.references.iter().rev().find_map(known))?;
            (parent != n.id).then_some((n.id, parent))
        })
        .collect();
    let mut below = HashSet::from([root]);
    // Each pass settles at least one more generation; a cycle of parents
    // (forged headers) never reaches the root and is left alone.
    loop {
        let before = below.len();
        for (child, parent) in &parent {
            if below.contains(parent) {
                below.insert(*child);
            }
        }
        if below.len() == before {
            break;
        }
    }
    nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| below.contains(id))
        .collect()
}

/// `subject` without leading reply prefixes (`Re:`, `RE:`, `AW:`, `SV:`,
/// `回复:` …), however many are stacked.
pub fn without_reply_prefixes(subject: &str) -> &str {
    const PREFIXES: &[&str] = &[
        "re", "aw", "sv", "vs", "antw", "odp", "ynt", "回复", "答复", "回覆",
    ];
    let mut base = subject.trim();
    while let Some((word, rest)) = subject_prefix(base) {
        if !PREFIXES.contains(&word.as_str()) {
            break;
        }
        base = rest;
    }
    base
}

/// The title a conversation goes by: the subject without reply prefixes
/// and without record tags (`[#12]`), which belong to the record it was on.
pub fn conversation_title(subject: &str) -> String {
    let mut title = without_reply_prefixes(subject).to_string();
    let mut from = 0;
    while let Some(found) = title[from..].find("[#") {
        let start = from + found;
        let after = &title[start + 2..];
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        if digits > 0 && after[digits..].starts_with(']') {
            title.replace_range(start..start + 2 + digits + 1, "");
            from = start;
        } else {
            from = start + 2;
        }
    }
    title.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u128, message_id: &str, parent: Option<&str>, refs: &[&str]) -> ThreadNode {
        ThreadNode {
            id: Uuid::from_u128(n),
            message_id: message_id.into(),
            in_reply_to: parent.map(Into::into),
            references: refs.iter().map(|r| (*r).to_string()).collect(),
        }
    }

    #[test]
    fn a_message_takes_its_replies_and_theirs_but_not_its_siblings() {
        let nodes = [
            node(1, "a@x", None, &[]),
            node(2, "b@x", Some("a@x"), &["a@x"]),
            node(3, "c@x", Some("b@x"), &["a@x", "b@x"]),
            node(4, "d@x", Some("a@x"), &["a@x"]),
            // No In-Reply-To: the newest known reference is its parent.
            node(5, "e@x", None, &["a@x", "b@x", "gone@x"]),
            // Its parent is not on the record: a thread of its own.
            node(6, "f@x", Some("elsewhere@x"), &[]),
        ];
        let ids = |v: &[u128]| v.iter().map(|n| Uuid::from_u128(*n)).collect::<Vec<_>>();
        assert_eq!(replies_below(&nodes, Uuid::from_u128(2)), ids(&[2, 3, 5]));
        assert_eq!(replies_below(&nodes, Uuid::from_u128(4)), ids(&[4]));
        assert_eq!(
            replies_below(&nodes, Uuid::from_u128(1)),
            ids(&[1, 2, 3, 4, 5])
        );
        assert_eq!(replies_below(&nodes, Uuid::from_u128(6)), ids(&[6]));
    }

    #[test]
    fn forged_cycles_and_self_references_end() {
        let nodes = [
            node(1, "a@x", Some("b@x"), &[]),
            node(2, "b@x", Some("a@x"), &[]),
            node(3, "c@x", Some("c@x"), &[]),
        ];
        assert_eq!(
            replies_below(&nodes, Uuid::from_u128(3)),
            vec![Uuid::from_u128(3)]
        );
        assert_eq!(replies_below(&nodes, Uuid::from_u128(1)).len(), 2);
    }

    #[test]
    fn titles_lose_reply_prefixes_and_record_tags() {
        for (subject, title) in [
            ("Re: Quote please [#12]", "Quote please"),
            ("RE: AW: Re: Quote", "Quote"),
            ("回复: 見積もり [#3] の件", "見積もり の件"),
            ("Fwd: Quote", "Fwd: Quote"),
            ("[#] odd [#x] [#4]", "[#] odd [#x]"),
            ("Re: [#7]", ""),
        ] {
            assert_eq!(conversation_title(subject), title, "{subject}");
        }
    }
}
