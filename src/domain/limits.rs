//! Length limits on what people type: names, tags, comments, reply text.
//!
//! The API answers 422 naming the field, the configuration file is refused
//! at start, so a megabyte "name" never reaches a board column or a header.
//! Lengths count characters (a Japanese name is as long as it reads), never
//! bytes.

/// A user's, token's, pipeline's, stage's or alias's name.
pub const NAME_CHARS: usize = 200;
/// One tag.
pub const TAG_CHARS: usize = 64;
/// Tags on one record or alias.
pub const TAGS: usize = 50;
/// A comment, or the text (or HTML) of a reply.
pub const TEXT_CHARS: usize = 200_000;
/// Recipients of one reply besides the contact.
pub const CC: usize = 50;
/// Stages of one pipeline, further addresses of one alias, reopen rules.
pub const LIST_ITEMS: usize = 100;
/// A search or filter term in a query.
pub const FILTER_CHARS: usize = 500;

/// `Err` naming `field` when `value` is longer than `max` characters.
///
/// # Errors
/// `"{field}: at most {max} characters"`.
pub fn check_chars(field: &str, value: &str, max: usize) -> Result<(), String> {
    // `chars().count()` only once the byte length could exceed the limit.
    if value.len() > max && value.chars().count() > max {
        return Err(format!("{field}: at most {max} characters"));
    }
    Ok(())
}

/// `Err` naming `field` when `items` has more than `max` entries.
///
/// # Errors
/// `"{field}: at most {max} items"`.
pub fn check_items<T>(field: &str, items: &[T], max: usize) -> Result<(), String> {
    if items.len() > max {
        return Err(format!("{field}: at most {max} items"));
    }
    Ok(())
}

/// Checks a tag list: count, each tag's length, no empty tag.
///
/// # Errors
/// The first problem, naming `field[i]`.
pub fn check_tags(field: &str, tags: &[String]) -> Result<(), String> {
    check_items(field, tags, TAGS)?;
    for (i, tag) in tags.iter().enumerate() {
        if tag.trim().is_empty() {
            return Err(format!("{field}[{i}]: must not be empty"));
        }
        check_chars(&format!("{field}[{i}]"), tag, TAG_CHARS)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_not_bytes_are_counted() {
        let japanese = "見".repeat(NAME_CHARS);
        assert!(japanese.len() > NAME_CHARS);
        assert_eq!(check_chars("name", &japanese, NAME_CHARS), Ok(()));
        let longer = format!("{japanese}積");
        assert_eq!(
            check_chars("name", &longer, NAME_CHARS),
            Err("name: at most 200 characters".into())
        );
    }

    #[test]
    fn tags_are_checked_by_count_length_and_emptiness() {
        let tags = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_tags("tags", &tags(&["vip", "見積"])), Ok(()));
        assert_eq!(
            check_tags("tags", &tags(&["vip", " "])),
            Err("tags[1]: must not be empty".into())
        );
        assert_eq!(
            check_tags("tags", &[String::from("x").repeat(TAG_CHARS + 1)]),
            Err("tags[0]: at most 64 characters".into())
        );
        assert_eq!(
            check_tags("tags", &vec![String::from("t"); TAGS + 1]),
            Err("tags: at most 50 items".into())
        );
    }
}
