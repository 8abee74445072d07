//! The new part of a reply: its text without the quoted history below it
//! and without the signature.
//!
//! A message is read line by line. Each line is text, blank, quoted (`> `),
//! a quote header ("On … wrote:", `2026年12月6日(日) 10:00 山田 <…>:`), the
//! first line of a header block (`From: … Sent: …`, `差出人: … 送信日時: …`),
//! a delimiter (`-----Original Message-----`, `-----元のメッセージ-----`) or a
//! client signature (`-- `, "Sent from my iPhone"). The new part ends at the
//! first marker after some text; a quoted block left at its end goes too,
//! while quotes with answers between them stay (an interleaved reply).
//! Code fenced with three backticks is text whatever it holds.

mod markers;

use markers::{
    DELIMITER_LINES, FROM_FIELDS, HEADER_OPENERS, HEADER_VERBS, HTML_QUOTE_MARKERS, OTHER_FIELDS,
    SIGNATURE_OPENERS,
};

/// What one line of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Line {
    Blank,
    Text,
    Quote,
    /// A quoted line that is itself a quote header (`> On … wrote:`).
    QuotedHeader,
    /// A quote header or header block spanning this many lines.
    Header(usize),
    Delimiter,
    Signature,
}

impl Line {
    fn ends_new_part(self) -> bool {
        matches!(
            self,
            Line::Header(_) | Line::Delimiter | Line::Signature | Line::QuotedHeader
        )
    }
}

/// The new part of `text`, trimmed of blank lines at both ends. A message
/// that is only quoted text keeps it, unless it is only a quoted chain of
/// earlier replies (then nothing in it is new).
pub fn reply_text(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    let kinds = classify(&lines);

    let start = bottom_posted_start(&kinds);
    let mut seen_text = false;
    let mut end = lines.len();
    for (i, kind) in kinds.iter().enumerate().skip(start) {
        if *kind == Line::Text {
            seen_text = true;
        } else if seen_text && kind.ends_new_part() {
            end = i;
            break;
        }
    }
    let mut kept = &kinds[start..end];
    // A quoted block at the end (with the blanks around it) is history.
    let last_text = kept.iter().rposition(|k| *k == Line::Text);
    match last_text {
        Some(i) => kept = &kept[..=i],
        None if kept.contains(&Line::QuotedHeader) => kept = &[],
        None => {}
    }
    let lines = &lines[start..start + kept.len()];
    let from = lines.iter().position(|l| !l.trim().is_empty());
    let to = lines.iter().rposition(|l| !l.trim().is_empty());
    match (from, to) {
        (Some(a), Some(b)) => lines[a..=b]
            .iter()
            .map(|l| l.trim_end())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The sender named by the first header block in `text` (`From: …` with
/// `Sent:`/`Date:`/`To:` after it, in the clients' languages: `差出人:`,
/// `Von:`, `De:` …): for a forwarded mail, whom it came from. Its name
/// (when it has one) and address.
pub fn forwarded_sender(text: &str) -> Option<(Option<String>, super::EmailAddress)> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    (0..lines.len()).find_map(|i| {
        let line = lines[i].trim_start_matches(['>', ' ']);
        let quoted_block: Vec<&str> = lines[i..]
            .iter()
            .take(8)
            .map(|l| l.trim_start_matches(['>', ' ']))
            .collect();
        header_block(&quoted_block)?;
        let value = undecorated(line);
        let value = value.split_once([':', '：'])?.1.trim();
        mailbox_of(value)
    })
}

/// `Name <a@b>`, `a@b`, `"Name" <a@b<mailto:a@b>>`, `Name [mailto:a@b]`.
fn mailbox_of(value: &str) -> Option<(Option<String>, super::EmailAddress)> {
    let (name, rest) = match value.find(['<', '[']) {
        Some(at) => (value[..at].trim(), &value[at + 1..]),
        None => ("", value),
    };
    let candidate = rest
        .trim_start_matches("mailto:")
        .split(|c: char| c == '<' || c == '>' || c == ']' || c.is_whitespace())
        .find(|t| t.contains('@'))?
        .trim_end_matches(['.', ',', ';']);
    let address = super::EmailAddress::parse(candidate).ok()?;
    let name = name.trim_matches(['"', '\'', ' ']);
    Some(((!name.is_empty()).then(|| name.to_string()), address))
}

/// Where the new part of a message starts. A message that opens with a
/// quote header or a forward delimiter was written below it: the header,
/// and the quoted block under it, come before the new part.
fn bottom_posted_start(kinds: &[Line]) -> usize {
    let mut at = 0;
    let mut headed = false;
    while let Some(kind) = kinds.get(at) {
        match kind {
            Line::Blank => at += 1,
            Line::Header(n) => {
                headed = true;
                at += n;
            }
            Line::Delimiter => {
                headed = true;
                at += 1;
            }
            _ => break,
        }
    }
    if !headed {
        return 0;
    }
    let quoted = kinds[at..]
        .iter()
        .take_while(|k| matches!(k, Line::Quote | Line::QuotedHeader | Line::Blank))
        .count();
    if kinds[at + quoted..].contains(&Line::Text) {
        at + quoted
    } else {
        at
    }
}

/// `text` as [`reply_text`] writes lines (LF, no trailing spaces), trimmed
/// of blank lines at both ends: what the new part of a message with nothing
/// quoted is.
pub fn normalized(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

/// The first prefix of a subject (`Re`, `FW`, `転送` …, lowercased) and
/// what follows its colon, when it starts with a short word and a colon.
pub fn subject_prefix(subject: &str) -> Option<(String, &str)> {
    let colon = subject.find([':', '：'])?;
    let word = subject[..colon].trim();
    if word.is_empty() || word.chars().count() > 6 || word.contains(' ') {
        return None;
    }
    let rest = subject[colon..]
        .trim_start_matches([':', '：'])
        .trim_start();
    Some((word.to_lowercase(), rest))
}

/// The HTML of a reply before its quoted history (`gmail_quote`,
/// `<blockquote type="cite">`, Outlook's `divRplyFwdMsg` …), or `None` when
/// no marker is found.
pub fn html_new_part(html: &str) -> Option<&str> {
    let lower = html.to_ascii_lowercase();
    HTML_QUOTE_MARKERS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .map(|at| &html[..at])
}

fn classify(lines: &[&str]) -> Vec<Line> {
    let mut kinds = Vec::with_capacity(lines.len());
    let mut fenced = false;
    let mut skip = 0;
    for (i, raw) in lines.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            kinds.push(Line::Blank);
            continue;
        }
        let line = raw.trim();
        if line.starts_with("```") {
            fenced = !fenced;
            kinds.push(Line::Text);
            continue;
        }
        let kind = if fenced {
            Line::Text
        } else if line.is_empty() {
            Line::Blank
        } else if line.starts_with('>') {
            let inner = line.trim_start_matches(['>', ' ']);
            if quote_header(&[inner]).is_some() {
                Line::QuotedHeader
            } else {
                Line::Quote
            }
        } else if *raw == "-- " || line == "--" || line == "—" {
            Line::Signature
        } else if is_delimiter(line) {
            Line::Delimiter
        } else if is_signature(line) {
            Line::Signature
        } else if let Some(n) = quote_header(&lines[i..]).or_else(|| header_block(&lines[i..])) {
            // The header's later lines are part of it, not text.
            skip = n - 1;
            Line::Header(n)
        } else {
            Line::Text
        };
        kinds.push(kind);
    }
    kinds
}

/// `*From:*`, `**Sent:**` and the like, without their emphasis.
fn undecorated(line: &str) -> String {
    line.trim().replace(['*', '_'], "").trim().to_string()
}

/// How many lines (up to three) the quote header at the top of `lines`
/// spans: it ends with a colon and names a writer ("wrote", "schrieb",
/// "写道") or opens with a date or "On …" and names an address.
fn quote_header(lines: &[&str]) -> Option<usize> {
    let first = undecorated(lines.first()?);
    let first = first.trim_matches(|c: char| c == '-' || c.is_whitespace());
    let lower = first.to_lowercase();
    let opener = HEADER_OPENERS.iter().any(|o| lower.starts_with(o));
    let dated = first.starts_with(|c: char| c.is_ascii_digit());
    if !opener && !dated && !HEADER_VERBS.iter().any(|v| lower.contains(v)) {
        return None;
    }
    // Gmail's "2016-03-03 17:21 GMT+01:00 Name" and "On <date> at <time>
    // Name" need no colon: the date and time say enough.
    if (dated && has_time(first) && (lower.contains("gmt") || lower.contains("utc")))
        || (opener && has_time(first) && has_year(first))
    {
        return Some(1);
    }
    let mut joined = String::new();
    for (n, line) in lines.iter().take(3).enumerate() {
        let line = undecorated(line);
        let line = line.trim_matches(|c: char| c == '-' || c.is_whitespace());
        if line.is_empty() || joined.len() > 400 {
            return None;
        }
        if !joined.is_empty() {
            joined.push(' ');
        }
        joined.push_str(line);
        let lower = joined.to_lowercase();
        let verb = HEADER_VERBS.iter().any(|v| {
            lower.contains(v) && (opener || dated || lower.contains('@') || has_digit(&lower))
        });
        let addressed = (opener || dated) && joined.contains('@');
        let colon = joined.ends_with(':') || joined.ends_with('：');
        let verb_last = HEADER_VERBS.iter().any(|v| lower.ends_with(v));
        let dated_address = dated && joined.ends_with('>') && joined.contains('@');
        if (colon && (verb || addressed)) || (verb_last && verb) || dated_address {
            return Some(n + 1);
        }
    }
    None
}

fn has_digit(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_digit())
}

/// Whether `text` holds a time of day (`17:21`).
fn has_time(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(4).enumerate().any(|(i, w)| {
        w[0].is_ascii_digit()
            && ((w[1] == b':' && w[2].is_ascii_digit() && w[3].is_ascii_digit())
                || (w[1].is_ascii_digit()
                    && w[2] == b':'
                    && w[3].is_ascii_digit()
                    && b.get(i + 4).is_some_and(u8::is_ascii_digit)))
    })
}

/// Whether `text` holds a four-digit year.
fn has_year(text: &str) -> bool {
    text.split(|c: char| !c.is_ascii_digit())
        .any(|n| n.len() == 4 && (n.starts_with("19") || n.starts_with("20")))
}

/// How many lines the header block at the top of `lines` spans: a `From`
/// field followed at once by other fields (`Sent`, `To`, `件名` …).
fn header_block(lines: &[&str]) -> Option<usize> {
    let first = undecorated(lines.first()?);
    if !field_of(&first).is_some_and(|f| FROM_FIELDS.contains(&f.as_str())) {
        return None;
    }
    let is_field = |l: &str| field_of(l).is_some_and(|f| OTHER_FIELDS.contains(&f.as_str()));
    let rest: Vec<String> = lines[1..].iter().take(8).map(|l| undecorated(l)).collect();
    // Fields, and a long value's continuation line between two of them.
    let mut n = 0;
    while n < rest.len() {
        if is_field(&rest[n]) {
            n += 1;
        } else if n > 0 && !rest[n].is_empty() && rest.get(n + 1).is_some_and(|l| is_field(l)) {
            n += 2;
        } else {
            break;
        }
    }
    (n > 0).then_some(1 + n)
}

/// The lowercased field name of a `Name: value` line.
fn field_of(line: &str) -> Option<String> {
    let at = line.find([':', '：'])?;
    let name = line[..at].trim();
    (!name.is_empty() && name.chars().count() <= 20).then(|| name.to_lowercase())
}

fn is_delimiter(line: &str) -> bool {
    const RULE: &[char] = &['-', '_', '=', '*', '~', '+', '#', '—'];
    if line.chars().count() >= 3 && line.chars().all(|c| RULE.contains(&c)) {
        return true;
    }
    // Gmail's tracking mark on a line of its own.
    if line == "\u{1427}" {
        return true;
    }
    let inner = line
        .trim_matches(|c: char| RULE.contains(&c) || c.is_whitespace() || c == ':' || c == '：')
        .to_lowercase();
    let ruled = line.starts_with("--") || line.starts_with("__");
    DELIMITER_LINES
        .iter()
        .any(|d| inner == *d || (ruled && inner.contains(d)))
}

fn is_signature(line: &str) -> bool {
    let lower = line.to_lowercase();
    SIGNATURE_OPENERS.iter().any(|s| lower.starts_with(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn japanese_clients() {
        let cases = [
            "ご確認ください。\n\n2026年12月6日(日) 10:00 山田 太郎 <yamada@example.jp>:\n> 見積をお願いします。",
            "ご確認ください。\n\n-----元のメッセージ-----\n差出人: 山田 <yamada@example.jp>\n送信日時: 2026年12月6日 10:00\n件名: 見積",
            "ご確認ください。\n\n差出人: 山田 太郎 <yamada@example.jp>\n送信日時: 2026年12月6日 10:00\n宛先: sales@example.com\n件名: 見積",
            "ご確認ください。\n\niPhoneから送信",
        ];
        for text in cases {
            assert_eq!(reply_text(text), "ご確認ください。", "{text}");
        }
    }

    #[test]
    fn outlook_and_gmail() {
        let outlook = "Yes, Tuesday.\n\n________________________________\nFrom: Ann <ann@example.com>\nSent: Monday, December 7, 2026 9:00 AM\nTo: sales@example.com\nSubject: Visit";
        assert_eq!(reply_text(outlook), "Yes, Tuesday.");
        let gmail = "Yes, Tuesday.\n\nOn Mon, Dec 7, 2026 at 9:00 AM Ann Smith <\nann@example.com> wrote:\n\n> When can you visit?\n";
        assert_eq!(reply_text(gmail), "Yes, Tuesday.");
    }

    #[test]
    fn interleaved_answers_and_plain_text_stay() {
        let text = "> When?\nTuesday.\n> Where?\nHere.";
        assert_eq!(reply_text(text), text);
        assert_eq!(
            reply_text("On Monday we meet at:\n10:00"),
            "On Monday we meet at:\n10:00"
        );
    }

    #[test]
    fn forwarded_senders_in_the_clients_forms() {
        let cases = [
            (
                "FYI\n\n---------- Forwarded message ---------\nFrom: Ann Buyer <ann@customer.example>\nDate: Mon, Dec 7, 2026\nSubject: Quote\nTo: bob@acme.example\n\nHello",
                "ann@customer.example",
            ),
            (
                "-------- 転送メッセージ --------\n差出人: 山田 太郎 <yamada@customer.jp>\n送信日時: 2026年12月6日\n宛先: sales@acme.example\n件名: 見積",
                "yamada@customer.jp",
            ),
            (
                "Begin forwarded message:\n\n> From: \"Ann\" <ann@customer.example>\n> Subject: Quote\n> Date: 7 December 2026",
                "ann@customer.example",
            ),
            (
                "________________________________\nFrom: Ann <ann@customer.example<mailto:ann@customer.example>>\nSent: Monday\nTo: Bob",
                "ann@customer.example",
            ),
        ];
        for (text, want) in cases {
            let (_, address) = forwarded_sender(text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(address.as_str(), want);
        }
        assert!(forwarded_sender("On Monday, Ann <ann@x.example> wrote:\n> hi").is_none());
    }

    #[test]
    fn html_markers() {
        let html = "<div>Yes</div><div class=\"gmail_quote\"><blockquote>old</blockquote></div>";
        assert_eq!(html_new_part(html), Some("<div>Yes</div>"));
        assert_eq!(html_new_part("<p>only new</p>"), None);
    }
}
