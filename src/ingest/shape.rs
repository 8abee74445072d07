//! The MIME shape of a raw message (how many parts, how deeply nested),
//! read in one linear pass before the parser sees it, so a message built to
//! be expensive (280,000 parts, multiparts nested thousands deep) is
//! recorded as such instead of holding up processing for everyone.
//!
//! Every `boundary=` parameter in the message is collected first; then each
//! line that is `--` followed by one of them opens a part (or, with a
//! trailing `--`, closes its multipart). Text that merely looks like a
//! delimiter but names no declared boundary is not counted.

use std::collections::HashSet;

use memchr::memchr_iter;

/// Parts and nesting depth of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Body parts opened by a delimiter line (a single-part message has 0).
    pub parts: usize,
    /// Deepest nesting of multiparts (a single-part message has 0).
    pub depth: usize,
}

/// Limits on a message's shape; over them it is rejected, not parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    pub max_parts: usize,
    pub max_depth: usize,
}

impl ShapeLimits {
    /// Why `raw` is over the limits, if it is: `"too many parts"` or
    /// `"nested too deep"`, with its shape (counted up to the limit).
    pub fn check(&self, raw: &[u8]) -> Option<(&'static str, Shape)> {
        let shape = shape(raw, self.max_parts.saturating_add(1));
        if shape.parts > self.max_parts {
            Some(("too many parts", shape))
        } else if shape.depth > self.max_depth {
            Some(("nested too deep", shape))
        } else {
            None
        }
    }
}

/// The shape of `raw`, counting parts up to `stop_at` (then it returns).
pub fn shape(raw: &[u8], stop_at: usize) -> Shape {
    let boundaries = boundaries(raw);
    let mut shape = Shape::default();
    if boundaries.is_empty() {
        return shape;
    }
    let mut open: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let ends = memchr_iter(b'\n', raw).chain(std::iter::once(raw.len()));
    for end in ends {
        let line = &raw[start..end];
        start = end + 1;
        let Some(rest) = line.strip_prefix(b"--") else {
            continue;
        };
        let rest = rest.trim_ascii_end();
        let (boundary, closes) = if boundaries.contains(rest) {
            (rest, false)
        } else if let Some(inner) = rest.strip_suffix(b"--")
            && boundaries.contains(inner)
        {
            (inner, true)
        } else {
            continue;
        };
        let at = open.iter().rposition(|b| *b == boundary);
        if closes {
            if let Some(at) = at {
                open.truncate(at);
            }
            continue;
        }
        match at {
            // A sibling part: whatever was nested in the previous one ended.
            Some(at) => open.truncate(at + 1),
            None => open.push(boundary),
        }
        shape.depth = shape.depth.max(open.len());
        shape.parts += 1;
        if shape.parts >= stop_at {
            break;
        }
    }
    shape
}

/// The header of `raw`, read line by line up to the first empty line after
/// it (blank lines before the header are skipped, as the parser does; all
/// of `raw` when no empty line follows).
pub fn header_bytes(raw: &[u8]) -> &[u8] {
    let mut start = 0;
    let mut in_header = false;
    for end in memchr_iter(b'\n', raw) {
        let blank = raw[start..end].trim_ascii().is_empty();
        if blank && in_header {
            return &raw[..=end];
        }
        in_header |= !blank;
        start = end + 1;
    }
    raw
}

/// Every `boundary=` parameter value in `raw` (quoted or not).
fn boundaries(raw: &[u8]) -> HashSet<&[u8]> {
    const KEY: &[u8] = b"boundary";
    let mut found = HashSet::new();
    for at in memchr::memchr2_iter(b'b', b'B', raw) {
        let Some(after) = raw.get(at + KEY.len()..) else {
            break;
        };
        if !raw[at..at + KEY.len()].eq_ignore_ascii_case(KEY) {
            continue;
        }
        let after = after.trim_ascii_start();
        let Some(value) = after.strip_prefix(b"=") else {
            continue;
        };
        let value = value.trim_ascii_start();
        let value = if let Some(quoted) = value.strip_prefix(b"\"") {
            let end = memchr::memchr2(b'"', b'\n', quoted).unwrap_or(quoted.len());
            &quoted[..end]
        } else {
            let end = value
                .iter()
                .position(|b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(value.len());
            &value[..end]
        };
        // RFC 2046: 1 to 70 characters.
        let value = value.trim_ascii_end();
        if (1..=70).contains(&value.len()) {
            found.insert(value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &[u8] = b"Content-Type: multipart/mixed; boundary=\"outer b\"\r\n\r\n\
--outer b\r\nContent-Type: multipart/alternative; Boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nhi\r\n-- \r\nsignature\r\n--not-a-boundary\r\n\
--inner\r\nContent-Type: text/html\r\n\r\n<p>hi</p>\r\n--inner--\r\n\
--outer b\r\nContent-Type: application/pdf\r\n\r\nJVBERi0=\r\n--outer b--\r\n";

    #[test]
    fn parts_and_depth_are_counted_by_declared_boundaries_only() {
        assert_eq!(shape(NESTED, usize::MAX), Shape { parts: 4, depth: 2 });
        let plain = b"Subject: hi\r\n\r\n--just text\r\n-- \r\nsig\r\n";
        assert_eq!(shape(plain, usize::MAX), Shape::default());
    }

    #[test]
    fn a_part_without_a_closing_delimiter_still_ends_at_its_sibling() {
        let unclosed = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\
Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nx\r\n--a\r\ny\r\n--a--\r\n";
        assert_eq!(shape(unclosed, usize::MAX), Shape { parts: 3, depth: 2 });
    }

    #[test]
    fn limits_name_what_is_over() {
        let limits = ShapeLimits {
            max_parts: 3,
            max_depth: 2,
        };
        assert_eq!(
            limits.check(NESTED),
            Some(("too many parts", Shape { parts: 4, depth: 2 }))
        );
        let deep: Vec<u8> = (0..5)
            .flat_map(|i| {
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .into_bytes()
            })
            .collect();
        let roomy = ShapeLimits {
            max_parts: 100,
            max_depth: 4,
        };
        assert_eq!(
            roomy.check(&deep),
            Some(("nested too deep", Shape { parts: 5, depth: 5 }))
        );
        assert_eq!(roomy.check(b"Subject: x\r\n\r\nbody\r\n"), None);
    }

    #[test]
    fn the_header_ends_at_its_first_empty_line() {
        let raw = b"\r\nSubject: a\r\nFrom: b@x\r\n\r\nbody\r\n\r\nmore\r\n";
        assert_eq!(header_bytes(raw), b"\r\nSubject: a\r\nFrom: b@x\r\n\r\n");
        assert_eq!(header_bytes(b"Subject: a\n\nbody"), b"Subject: a\n\n");
        assert_eq!(header_bytes(b"Subject: only"), b"Subject: only");
    }

    #[test]
    fn counting_stops_at_the_limit() {
        let mut many = b"Content-Type: multipart/mixed; boundary=p\r\n\r\n".to_vec();
        for _ in 0..10_000 {
            many.extend_from_slice(b"--p\r\n\r\nx\r\n");
        }
        assert_eq!(shape(&many, 11).parts, 11);
    }
}
