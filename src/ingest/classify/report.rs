//! RFC 3464 delivery status notifications: per-recipient fields, and the
//! report's words read as evidence for each recipient's reason.

use super::*;

/// Reads the per-recipient fields of a delivery-status body; the report's
/// text (`mail.text`) tells the command each one failed at.
pub(super) fn dsn_recipients(
    report: &str,
    mail: &ParsedMail,
    context: &LazyCell<ReportWords, impl FnOnce() -> ReportWords>,
) -> Vec<FailedRecipient> {
    let mut recipients = Vec::new();
    let normalized = report.replace("\r\n", "\n");
    // Lower case once: each recipient's lines are looked up in it.
    let text = mail.text.as_deref().unwrap_or_default();
    let lower = head(text, MAX_EVIDENCE_BYTES).to_ascii_lowercase();
    // The first block is per-message; every block with a recipient is per-recipient.
    let blocks: Vec<(&str, String)> = normalized
        .split("\n\n")
        .filter_map(|block| {
            let address =
                field(block, "final-recipient").or_else(|| field(block, "original-recipient"))?;
            Some((block, address))
        })
        .collect();
    // The whole report speaks for a recipient only when it is the only one.
    let alone = blocks.len() == 1;
    let context = alone.then_some(context);
    for (block, address) in blocks {
        let status =
            field(block, "status").and_then(|s| s.split_whitespace().next().map(str::to_string));
        let action = field(block, "action").map(|a| a.to_ascii_lowercase());
        let diagnostic = field(block, "diagnostic-code");
        // `X-Unix; …`: a local delivery program's own words, not a server's.
        let local_program = diagnostic
            .as_deref()
            .and_then(|d| d.split_once(';'))
            .is_some_and(|(kind, _)| kind.trim().eq_ignore_ascii_case("x-unix"));
        let diagnostic = diagnostic.map(strip_address_type);
        let address = strip_address_type(address).to_ascii_lowercase();
        // The report's own lines about this recipient tell the command it
        // failed at, and the server's own code where no diagnostic field does.
        let paragraph = paragraph_about(&lower, &address);
        let status = match status {
            Some(status) => {
                let status =
                    preferred_status(status, diagnostic.as_deref().or(Some(paragraph.as_str())));
                // "Expired" says only that retries ran out, and `X.0.0` with a
                // diagnostic that gives no code (`X-Unix; 255`) nothing at all:
                // a report about this recipient alone may tell the failure met
                // (`441 4.4.1`, a transcript's `554 5.3.0 unknown mailer error`).
                let unsaid = status.ends_with(".0.0")
                    && diagnostic.as_deref().and_then(first_status_code).is_none();
                if alone && (status == "4.4.7" || unsaid) {
                    Some(preferred_status(
                        status,
                        Some(&report_lines(&lower).join("\n")),
                    ))
                } else {
                    Some(status)
                }
            }
            None => diagnostic.as_deref().and_then(first_status_code),
        };
        let evidence = format!(
            "{} {}",
            words_of(diagnostic.as_deref().unwrap_or_default()),
            words_of(&paragraph)
        );
        let said = Said {
            words: &evidence,
            local_program,
        };
        recipients.push(failed_recipient(
            address, action, status, diagnostic, said, context,
        ));
        if recipients.len() == MAX_BOUNCE_RECIPIENTS {
            break;
        }
    }
    recipients
}

/// What a report says of one recipient itself.
#[derive(Clone, Copy)]
pub(super) struct Said<'a> {
    /// Its own lines' words: lower case, no addresses.
    pub(super) words: &'a str,
    /// Its diagnostic is a local delivery program's (`X-Unix; …`).
    pub(super) local_program: bool,
}

/// One failed recipient, its reason read from what the report says of it,
/// else from the whole report's words (`context`, given when the report is
/// about this recipient alone, and read only then); a missing status is
/// inferred from the reason.
pub(super) fn failed_recipient(
    address: String,
    action: Option<String>,
    status: Option<String>,
    diagnostic: Option<String>,
    said: Said<'_>,
    context: Option<&LazyCell<ReportWords, impl FnOnce() -> ReportWords>>,
) -> FailedRecipient {
    let evidence = said.words;
    let of = |text: &str| {
        reason(&Evidence {
            status: status.as_deref(),
            text,
            action: action.as_deref(),
            local_program: said.local_program,
        })
    };
    // The recipient's own lines first; when they tell nothing, the report's
    // text, then with its subject.
    let mut reason = of(evidence);
    let unknown = |r: BounceReason| matches!(r, BounceReason::OnHold | BounceReason::Undefined);
    if unknown(reason)
        && let Some(report) = context.map(LazyCell::force)
        && let Some(wider) = [report.text(), report.all()]
            .into_iter()
            .map(of)
            .find(|r| !unknown(*r))
    {
        reason = wider;
    }
    // The reply's class from the recipient's own lines; when there are none,
    // from the whole report.
    let own = match context {
        Some(report) if crate::ingest::reason::says_nothing(evidence) => {
            LazyCell::force(report).all()
        }
        _ => evidence,
    };
    let temporary = Evidence {
        status: status.as_deref(),
        text: own,
        ..Evidence::default()
    }
    .is_temporary();
    let status_inferred = status.is_none();
    let status = status.or_else(|| Some(reason.inferred_status(temporary)));
    FailedRecipient {
        address,
        action,
        status,
        status_inferred,
        diagnostic,
        hard: reason.is_hard(!temporary),
        reason,
    }
}

/// The lines of a report's text before it quotes the returned message.
pub(super) fn report_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|line| {
            let lower = line.to_ascii_lowercase();
            // Sendmail's opening line and Exchange's per-recipient MTS-ID
            // line name the original without quoting it.
            [
                "original message was received",
                "mts-id of the original message",
            ]
            .iter()
            .any(|m| lower.contains(m))
                || !RETURNED_MARKERS.iter().any(|m| lower.contains(m))
        })
        .collect()
}

/// The words of a report's text before the returned message, then on a line
/// of their own its subject's (the subject is read only where the text tells
/// nothing: "Mail System Error" says less than "not delivered within 1 hours").
pub(super) struct ReportWords {
    words: String,
    /// Where the subject's words start.
    text_end: usize,
}

impl ReportWords {
    pub(super) fn of(mail: &ParsedMail) -> Self {
        let text = mail.text.as_deref().unwrap_or_default();
        let mut words = words_of(&report_lines(head(text, MAX_EVIDENCE_BYTES)).join(" "));
        let text_end = words.len();
        words.push('\n');
        words.push_str(&words_of(mail.subject.as_deref().unwrap_or_default()));
        Self { words, text_end }
    }

    /// The text's words.
    fn text(&self) -> &str {
        &self.words[..self.text_end]
    }

    /// The text's words and the subject's.
    fn all(&self) -> &str {
        &self.words
    }
}

/// Lower case, addresses left out (`does-not-exist@…` says nothing about
/// the mailbox), whitespace collapsed.
pub(super) fn words_of(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| !w.contains('@'))
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// The lines of a report's text (lower case) about `address`: the first
/// line naming it and those after it, up to a blank line or a line that
/// starts with another address (the next recipient's).
pub(super) fn paragraph_about(lower: &str, address: &str) -> String {
    let lines: Vec<&str> = lower.lines().collect();
    let Some(at) = lines.iter().position(|l| l.contains(address)) else {
        return String::new();
    };
    // `addr: …` or `<addr>: …`, as reports head each recipient's lines.
    let starts_with_other = |line: &str| {
        let rest = line.trim_start().trim_start_matches('<');
        let Some(end) = rest.find(|c: char| c.is_whitespace() || matches!(c, ':' | '>')) else {
            return false;
        };
        let first = &rest[..end];
        rest[end..].trim_start_matches('>').starts_with(':')
            && first != address
            && crate::domain::EmailAddress::parse(first).is_ok()
    };
    std::iter::once(lines[at])
        .chain(
            lines[at + 1..]
                .iter()
                .copied()
                .take_while(|l| !l.trim().is_empty() && !starts_with_other(l)),
        )
        .take(12)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A diagnostic kept to a readable length.
pub(super) fn clip(text: &str) -> Option<String> {
    Some(head(text, 500).to_string()).filter(|t| !t.is_empty())
}

/// The first `max` bytes of `text` at most, cut at a character boundary.
pub(super) fn head(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A `Name: value` field of a header-like block (continuation lines joined).
pub(super) fn field(block: &str, name: &str) -> Option<String> {
    let mut lines = block.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if key.trim().eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}

/// The address in a report field, with or without its type, angle
/// brackets or display name: `rfc822; <Ann@X.example>`, `Ann <ann@x.example>`.
pub(super) fn report_address(value: &str) -> Option<String> {
    let value = match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(['<', '@', ' ']) => rest,
        _ => value,
    };
    let inner = match (value.find('<'), value.rfind('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value,
    };
    EmailAddress::parse(inner).ok().map(|a| a.to_string())
}

/// `rfc822; user@example.com` → `user@example.com`; `smtp; 550 ...` → `550 ...`.
pub(super) fn strip_address_type(v: String) -> String {
    match v.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') => {
            rest.trim().trim_matches(['<', '>']).to_string()
        }
        _ => v.trim().to_string(),
    }
}
