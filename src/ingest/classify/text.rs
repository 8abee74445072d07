//! Text bounces: reports without a delivery-status part (qmail, Exim,
//! Gmail, Exchange, …), read for their failed recipients and codes.

use super::*;

/// A bounce without a delivery-status part: recipients read from its text.
pub(super) fn text_bounce(mail: &ParsedMail) -> Bounce {
    let text = mail.text.as_deref().unwrap_or_default();
    let context = LazyCell::new(|| ReportWords::of(mail));
    // A report sent without MIME structure still carries its per-recipient
    // fields as lines of text: they are read as a delivery-status part.
    let embedded = line_starting(head(text, MAX_EVIDENCE_BYTES), "final-recipient:")
        .map(|at| dsn_recipients(&text[at..], mail, &context))
        .unwrap_or_default();
    let mut recipients = if embedded.is_empty() {
        text_bounce_recipients(text, &context, mail.signals.header("x-failed-recipients"))
    } else {
        embedded
    };
    // The report names no address and returns a delivery report: a gateway
    // relays the bounce it got, whose fields and original are the ones to read.
    let relayed = mail
        .signals
        .returned_report
        .as_deref()
        .filter(|_| recipients.is_empty())
        .and_then(|inner| Some((inner.delivery_status.as_deref()?, inner)));
    if let Some((report, inner)) = relayed {
        recipients = dsn_recipients(report, mail, &context);
        if !recipients.is_empty() {
            return Bounce {
                recipients,
                original_message_id: inner
                    .returned
                    .as_ref()
                    .and_then(|r| r.message_id.clone())
                    .or_else(|| returned_message_id(mail)),
            };
        }
    }
    if recipients.is_empty() {
        // The report names no address: the returned message's recipients
        // failed, from its own part or quoted after the report.
        let to = mail
            .signals
            .returned
            .as_ref()
            .map(|r| r.to.join(","))
            .filter(|t| !t.is_empty())
            .or_else(|| quoted_to(text));
        recipients = text_bounce_recipients(text, &context, to.as_deref());
    }
    Bounce {
        recipients,
        original_message_id: returned_message_id(mail),
    }
}

/// Where the first line of `text` that starts with `prefix` (any ASCII case) begins.
pub(super) fn line_starting(text: &str, prefix: &str) -> Option<usize> {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            return Some(at);
        }
        at += line.len();
    }
    None
}

/// The `To:` of an original quoted as text after the report.
pub(super) fn quoted_to(text: &str) -> Option<String> {
    let text = head(text, MAX_EVIDENCE_BYTES);
    text.lines()
        .skip(report_lines(text).len())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("to")
                .then(|| value.replace(['<', '>'], " ").trim().to_string())
        })
        .filter(|to| !to.is_empty())
}

/// The Message-ID of the returned original, when the report tells.
pub(super) fn returned_message_id(mail: &ParsedMail) -> Option<String> {
    mail.signals
        .returned
        .as_ref()
        .and_then(|r| r.message_id.clone())
        // No returned message to read it from (none attached, or a part the
        // parser could not reach): the original's headers quoted inline
        // after the report, else the report's own In-Reply-To, as Gmail's
        // name the message they return.
        .or_else(|| quoted_message_id(mail.text.as_deref().unwrap_or_default()))
        .or_else(|| mail.in_reply_to.clone())
}

/// The `Message-ID:` of an original quoted as text after the report.
pub(super) fn quoted_message_id(text: &str) -> Option<String> {
    let text = head(text, MAX_EVIDENCE_BYTES);
    text.lines()
        .skip(report_lines(text).len())
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            if !name.trim().eq_ignore_ascii_case("message-id") {
                return None;
            }
            // `<id@host>`, possibly followed by a comment.
            let id = match value.split_once('<') {
                Some((_, rest)) => rest.split_once('>').map_or(rest, |(id, _)| id),
                None => value,
            };
            crate::domain::normalize_message_id(id).filter(|id| id.contains('@'))
        })
}

/// Lines after which a plain-text bounce quotes the returned message.
pub(super) const RETURNED_MARKERS: &[&str] = &[
    "this is a copy of the message",
    "below this line is a copy",
    "original message",
    "unsent message follows",
    "message headers follow",
    "returned message follows",
    "original message follows",
    "headers of your message follow",
    "- returned message -",
    "message text follows",
    // MXLogic: "Included is a copy of the message header:"
    "copy of the message header",
];

/// Most recipients read from one bounce: a report naming thousands costs no
/// more than this many.
pub(super) const MAX_BOUNCE_RECIPIENTS: usize = 50;

/// Most bytes of a report's text read as evidence for its reasons.
pub(super) const MAX_EVIDENCE_BYTES: usize = 16 * 1024;

/// Best effort for a bounce without a delivery-status part (qmail, Exim,
/// Gmail, Exchange, DragonFly, …): the failed addresses are those of
/// `X-Failed-Recipients`, else lines that name one address (`addr`, `<addr>`,
/// `<addr>:`, `addr on <date>`) or a "… to <addr>" phrase, before the quoted
/// original. Each recipient's status is the first enhanced status code of
/// its own paragraph, else of the whole report.
pub(super) fn text_bounce_recipients(
    text: &str,
    context: &LazyCell<ReportWords, impl FnOnce() -> ReportWords>,
    failed_header: Option<&str>,
) -> Vec<FailedRecipient> {
    let lines = report_lines(text);
    // The envelope sender a transcript names (`>>> MAIL From:<addr>`), or
    // Exim's "A message sent by" followed by `<addr>`: a refusal that quotes
    // it is about the sender, not a recipient.
    let mut senders: Vec<String> = Vec::new();
    let mut sent_by = false;
    for line in &lines {
        let lower = line.to_ascii_lowercase();
        if let Some(a) = bracketed_after(line, &lower, "mail from:<") {
            senders.push(a.to_string());
        } else if sent_by && let Some(a) = recipient_line(line) {
            senders.push(a.to_string());
        }
        if !line.trim().is_empty() {
            sent_by = lower.trim_end().ends_with("a message sent by");
        }
    }
    let mut found: Vec<(String, usize)> = Vec::new();
    let mut add = |address: crate::domain::EmailAddress, at: usize| {
        let address = address.to_string();
        if !senders.contains(&address)
            && !found.iter().any(|(a, _)| *a == address)
            && found.len() < MAX_BOUNCE_RECIPIENTS
        {
            found.push((address, at));
        }
    };
    if let Some(header) = failed_header {
        for part in header.split([',', ' ']).filter(|p| !p.is_empty()) {
            if let Ok(address) = crate::domain::EmailAddress::parse(part.trim_matches(['<', '>'])) {
                // An address the report's text never names has no lines of its own.
                let at = lines
                    .iter()
                    .position(|l| l.contains(part))
                    .unwrap_or(lines.len());
                add(address, at);
            }
        }
    } else {
        for (at, line) in lines.iter().enumerate() {
            if let Some(address) = recipient_line(line).or_else(|| recipient_phrase(line)) {
                add(address, at);
            }
        }
    }
    let starts: Vec<usize> = found.iter().map(|(_, at)| *at).collect();
    // The report's first line with a status code, for recipients whose own
    // lines give none (looked up once, not per recipient).
    let status_line = LazyCell::new(|| {
        lines
            .iter()
            .enumerate()
            .find_map(|(i, line)| first_status_code(line).map(|code| (i, code, words_of(line))))
    });
    // The whole report speaks for a recipient only when it is the only one:
    // with several, the others' lines would be taken for its own.
    let context = (found.len() == 1).then_some(context);
    found
        .iter()
        .map(|(address, at)| {
            let next = starts
                .iter()
                .copied()
                .filter(|s| s > at)
                .min()
                .unwrap_or(lines.len())
                .max(at + 1)
                .min(lines.len());
            // The recipient's own block: up to the first blank line after its text.
            let blank = |i: usize| lines.get(i).is_some_and(|l| l.trim().is_empty());
            let mut end = at + 1;
            while end < next && blank(end) {
                end += 1;
            }
            while end < next && !blank(end) {
                end += 1;
            }
            let mut start = *at;
            if lines
                .get(*at)
                .is_some_and(|l| is_transcript_result(l, address))
            {
                // Sendmail's transcript ends each recipient's dialogue with its
                // result (`554 <addr>... reason`): the lines since the previous
                // recipient's are its own, those after it the next one's.
                start = starts
                    .iter()
                    .copied()
                    .filter(|s| s < at)
                    .max()
                    .map_or(0, |s| s + 1);
                end = at + 1;
            } else if crate::ingest::reason::says_nothing(&words_of(
                &lines.get(*at..end).unwrap_or_default().join(" "),
            )) {
                // A bare address: its reason is the lines just above it, as
                // Lotus Notes lists them ("User not listed ...", then the address).
                while start > 0 && !blank(start - 1) && !starts.contains(&(start - 1)) {
                    start -= 1;
                }
            }
            let paragraph = lines.get(start..end).unwrap_or_default().join("\n");
            let mut evidence = words_of(&paragraph);
            let status = first_status_code(&paragraph).or_else(|| {
                // A code given elsewhere in the report comes with the words
                // of its own line ("553 5.3.0 <addr>... No such user").
                let (line, status, words) = LazyCell::force(&status_line).as_ref()?;
                // Not when that line is another recipient's own.
                let owner = starts.iter().copied().filter(|s| s <= line).max();
                if owner.is_some_and(|o| o != *at) {
                    return None;
                }
                evidence.push(' ');
                evidence.push_str(words);
                Some(status.clone())
            });
            let diagnostic = clip(paragraph.trim());
            let said = Said {
                words: &evidence,
                local_program: false,
            };
            failed_recipient(
                address.clone(),
                Some("failed".into()),
                status,
                diagnostic,
                said,
                context,
            )
        })
        .collect()
}

/// Sendmail's result line for a recipient: `554 <addr>... reason`.
pub(super) fn is_transcript_result(line: &str, address: &str) -> bool {
    let line = line.trim_start();
    let Some((code, rest)) = line.split_once(' ') else {
        return false;
    };
    code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && rest
            .strip_prefix('<')
            .and_then(|r| r.get(..address.len()))
            .is_some_and(|a| a.eq_ignore_ascii_case(address))
        && rest
            .get(address.len() + 1..)
            .is_some_and(|r| r.starts_with(">..."))
}

/// A line that is one address: `addr`, `<addr>`, `<addr>: …`, `addr:`, `addr on <date>`.
pub(super) fn recipient_line(line: &str) -> Option<crate::domain::EmailAddress> {
    let line = line.trim();
    let mut words = line.split_whitespace().peekable();
    // Transcripts (`550 <addr>... User unknown`) and list marks (`* addr`, `>>> addr`).
    while words.peek().is_some_and(|w| {
        (w.len() == 3 && w.chars().all(|c| c.is_ascii_digit()))
            || matches!(*w, "*" | "-" | ">>>" | "<<<" | "•")
    }) {
        words.next();
    }
    let first = words.next()?;
    // `addr<mailto:addr>` (Office 365).
    let first = match first.find("<mailto:") {
        Some(i) if i > 0 => &first[..i],
        _ => first,
    };
    let rest: Vec<&str> = words.collect();
    let bracketed = first.starts_with('<');
    let token = first
        .trim_end_matches([':', ',', '.'])
        .trim_start_matches('<')
        .trim_end_matches('>');
    let alone = rest.is_empty()
        || first.ends_with(':')
        || bracketed
        || rest.first() == Some(&"on")
        || rest.first().is_some_and(|w| w.starts_with(['[', '(', '<']))
        // Exim 3: `addr ... unknown host`.
        || rest.first() == Some(&"...")
        // Zoho: `addr Invalid Address, ERROR_CODE :550, …`, `addr Error, ERROR_CODE :421, …`
        || rest.starts_with(&["Invalid", "Address,"])
        || rest.iter().take(3).any(|w| *w == "ERROR_CODE");
    if !alone || !token.contains('@') {
        return None;
    }
    crate::domain::EmailAddress::parse(token).ok()
}

/// "… delivering your mail to <addr>", "… could not be delivered to <addr>",
/// "… rejected recipient <addr>", "… permanent errors: addr.",
/// "Unknown user: addr", "User's mailbox is full: <addr>".
pub(super) fn recipient_phrase(line: &str) -> Option<crate::domain::EmailAddress> {
    let lower = line.to_ascii_lowercase();
    if let Some((label, value)) = line.trim().rsplit_once(": ") {
        let label = label.trim().to_ascii_lowercase();
        let header_like = [
            "from",
            "to",
            "cc",
            "bcc",
            "reply-to",
            "return-path",
            "message-id",
            "in-reply-to",
            "references",
            "errors-to",
            "delivered-to",
        ]
        .contains(&label.as_str())
            || label.starts_with("x-")
            || label.contains("envelope")
            // `Sender:`, and MailMarshal's "Original Sender: <addr>".
            || label.contains("sender");
        let value = value.trim().trim_matches(['<', '>']);
        if !header_like
            && !value.contains(char::is_whitespace)
            && let Ok(address) = crate::domain::EmailAddress::parse(value)
        {
            return Some(address);
        }
    }
    // "The following recipients returned permanent errors: addr. Reason: …",
    // "undeliverable to addr", Zoho's "[Status: Error, Address: <addr>, …]",
    // "unable to deliver your message to addr.", "Delivery to addr failed"
    for phrase in [
        "errors: ",
        "undeliverable to ",
        "address: <",
        "deliver your message to ",
        "could not be delivered to ",
        "delivery to ",
    ] {
        let Some(i) = lower.find(phrase) else {
            continue;
        };
        let token = line[i + phrase.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_default();
        if let Ok(address) =
            crate::domain::EmailAddress::parse(token.trim_matches(['<', '>', '.', ',', ';']))
        {
            return Some(address);
        }
    }
    let marker = [" to <", " recipient <", "to:<"]
        .into_iter()
        .find(|m| lower.contains(m))?;
    bracketed_after(line, &lower, marker)
}

/// The address between `marker` (lower case, ending in `<`) and the next
/// `>` in `line`; `lower` is `line` in lower case.
pub(super) fn bracketed_after(
    line: &str,
    lower: &str,
    marker: &str,
) -> Option<crate::domain::EmailAddress> {
    let rest = &line[lower.find(marker)? + marker.len()..];
    crate::domain::EmailAddress::parse(&rest[..rest.find('>')?]).ok()
}
