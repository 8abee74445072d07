//! Search terms, made the same way for both databases: words of letters
//! and digits, lowercased; runs of Chinese, Japanese or Korean characters
//! (written without spaces) as overlapping two-character terms, so that a
//! two-character word such as 見積 is found inside 見積書をお願いします.
//!
//! The database only matches terms: SQLite's FTS5 (`unicode61`, which
//! keeps these terms whole) and PostgreSQL's `tsvector` (written here as
//! a literal, so its parser never splits them) index the same list, and a
//! query is the same terms: a word matches as a prefix, a CJK run as the
//! phrase of its two-character terms, and every part must match.

/// The most terms one document is indexed by; what lies beyond is not
/// searchable. With [`MAX_TERM_BYTES`] it keeps a document inside what
/// PostgreSQL takes (positions up to 16,383, a `tsvector` under 1 MB).
pub const MAX_TERMS: usize = 10_000;

/// A longer "word" (base64, a pasted token) is no search term, and
/// PostgreSQL refuses lexemes over 2,047 bytes: one would fail the
/// indexer's whole batch, again and again.
pub const MAX_TERM_BYTES: usize = 60;

/// Whether `c` is written without spaces between words.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF    // Katakana extensions
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xAC00..=0xD7AF    // Hangul syllables
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0xFF66..=0xFF9F    // half-width Katakana
        | 0x20000..=0x2FA1F) // CJK extensions B and later
}

/// One piece of a text: a word, or a run of CJK characters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Word(String),
    Cjk(Vec<char>),
}

fn pieces(text: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut run: Vec<char> = Vec::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if is_cjk(c) || c == 'ー' && !run.is_empty() {
            if !word.is_empty() {
                out.push(Piece::Word(std::mem::take(&mut word)));
            }
            run.push(c);
        } else if c.is_alphanumeric() {
            if !run.is_empty() {
                out.push(Piece::Cjk(std::mem::take(&mut run)));
            }
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(Piece::Word(std::mem::take(&mut word)));
            }
            if !run.is_empty() {
                out.push(Piece::Cjk(std::mem::take(&mut run)));
            }
        }
    }
    if !word.is_empty() {
        out.push(Piece::Word(word));
    }
    if !run.is_empty() {
        out.push(Piece::Cjk(run));
    }
    out
}

/// The terms of a run: its two-character terms, or the one character.
fn bigrams(run: &[char]) -> Vec<String> {
    if run.len() == 1 {
        return vec![run[0].to_string()];
    }
    run.windows(2).map(|w| w.iter().collect()).collect()
}

/// The terms `text` is indexed by, in order.
pub fn index_terms(text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    for piece in pieces(text) {
        match piece {
            Piece::Word(w) if w.len() <= MAX_TERM_BYTES => terms.push(w),
            Piece::Word(_) => {}
            Piece::Cjk(run) => terms.extend(bigrams(&run)),
        }
        if terms.len() >= MAX_TERMS {
            terms.truncate(MAX_TERMS);
            break;
        }
    }
    terms
}

/// What a search asks for: each part must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryPart {
    /// A word, matched as the start of an indexed word.
    Prefix(String),
    /// Terms that must follow each other (a CJK run).
    Phrase(Vec<String>),
}

/// The parts of a typed query; empty when it has nothing to search by.
pub fn query_parts(q: &str) -> Vec<QueryPart> {
    pieces(q)
        .into_iter()
        .map(|p| match p {
            Piece::Word(w) => QueryPart::Prefix(w),
            Piece::Cjk(run) if run.len() == 1 => QueryPart::Prefix(run[0].to_string()),
            Piece::Cjk(run) => QueryPart::Phrase(bigrams(&run)),
        })
        .take(16)
        .collect()
}

/// The indexed terms as SQLite stores them: separated by spaces.
pub fn fts5_document(terms: &[String]) -> String {
    terms.join(" ")
}

/// A query in FTS5 syntax: `"word"*` and `"見積 積書"`, all required.
pub fn fts5_query(parts: &[QueryPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            QueryPart::Prefix(w) => format!("\"{w}\"*"),
            QueryPart::Phrase(terms) => format!("\"{}\"", terms.join(" ")),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn ts_lexeme(term: &str) -> String {
    format!("'{}'", term.replace('\\', "\\\\").replace('\'', "''"))
}

/// The indexed terms as a PostgreSQL `tsvector` literal, with positions.
pub fn tsvector_literal(terms: &[String]) -> String {
    let mut positions: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, t) in terms.iter().enumerate() {
        positions.entry(t.as_str()).or_default().push(i + 1);
    }
    positions
        .iter()
        .map(|(t, at)| {
            let at: Vec<String> = at.iter().map(ToString::to_string).collect();
            format!("{}:{}", ts_lexeme(t), at.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A query as a PostgreSQL `tsquery` literal: `'word':*`, `'見積' <-> '積書'`.
pub fn tsquery_literal(parts: &[QueryPart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            QueryPart::Prefix(w) => format!("{}:*", ts_lexeme(w)),
            QueryPart::Phrase(terms) => {
                let terms: Vec<String> = terms.iter().map(|t| ts_lexeme(t)).collect();
                format!("({})", terms.join(" <-> "))
            }
        })
        .collect::<Vec<_>>()
        .join(" & ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_runs_become_two_character_terms() {
        assert_eq!(
            index_terms("見積書をお願いします (Quote #12)"),
            [
                "見積", "積書", "書を", "をお", "お願", "願い", "いし", "しま", "ます", "quote",
                "12"
            ]
        );
        assert_eq!(index_terms("椅子40脚"), ["椅子", "40", "脚"]);
        assert_eq!(index_terms("Ünïcode café"), ["ünïcode", "café"]);
        let blob = "QUJD".repeat(1_000);
        assert_eq!(
            index_terms(&format!("see {blob} attached")),
            ["see", "attached"]
        );
        let long: String = (0..50_000).map(|i| format!("w{i} ")).collect();
        assert_eq!(index_terms(&long).len(), MAX_TERMS);
    }

    #[test]
    fn queries_in_both_dialects() {
        let parts = query_parts("見積 Quo");
        assert_eq!(
            parts,
            [
                QueryPart::Phrase(vec!["見積".into()]),
                QueryPart::Prefix("quo".into())
            ]
        );
        assert_eq!(fts5_query(&parts), "\"見積\" \"quo\"*");
        assert_eq!(tsquery_literal(&parts), "('見積') & 'quo':*");
        assert_eq!(
            tsquery_literal(&query_parts("見積書")),
            "('見積' <-> '積書')"
        );
        assert_eq!(
            tsvector_literal(&index_terms("o'neil o'neil")),
            "'neil':2,4 'o':1,3"
        );
        assert!(query_parts("  -- ").is_empty());
    }
}
