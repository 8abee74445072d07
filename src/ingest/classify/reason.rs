//! Bounce reasons: why one delivery failed, read from the status code, the
//! remote server's words and the SMTP command it answered. Pure functions,
//! no I/O.
//!
//! The vocabulary is the one bounce processors share (sisimai's reason
//! names), so figures can be compared with theirs. Hard bounces follow from
//! the reason: only an address that does not exist (unknown user or domain,
//! moved away, a domain that takes no mail) is hard; a full mailbox, a
//! filter, a policy or a timeout is soft, whatever its 5xx code.
//!
//! Order matters: the status code names a class, the text narrows it (a
//! `5.1.1` that says "mailbox full" is a full mailbox), and a refusal after
//! DATA is a filter's verdict, never proof that the address is bad.

use super::phrases::{NAMES_THE_RECIPIENT, NO_SUCH_RECIPIENT, PHRASES, POLICY};
pub use super::status::reason_of_status;

/// The closed set of reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BounceReason {
    AuthFailure,
    BadReputation,
    Blocked,
    ContentError,
    ExceedLimit,
    Expired,
    FailedStartTls,
    Filtered,
    HasMoved,
    HostUnknown,
    MailboxFull,
    MailerError,
    MesgTooBig,
    NetworkError,
    NoRelaying,
    NotAccept,
    NotCompliantRfc,
    OnHold,
    PolicyViolation,
    Rejected,
    RequirePtr,
    SecurityError,
    SpamDetected,
    Speeding,
    Suspend,
    SyntaxError,
    SystemError,
    SystemFull,
    TooManyConn,
    Undefined,
    UserUnknown,
    VirusDetected,
}

use BounceReason as R;

impl BounceReason {
    /// The reason's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            R::AuthFailure => "authfailure",
            R::BadReputation => "badreputation",
            R::Blocked => "blocked",
            R::ContentError => "contenterror",
            R::ExceedLimit => "exceedlimit",
            R::Expired => "expired",
            R::FailedStartTls => "failedstarttls",
            R::Filtered => "filtered",
            R::HasMoved => "hasmoved",
            R::HostUnknown => "hostunknown",
            R::MailboxFull => "mailboxfull",
            R::MailerError => "mailererror",
            R::MesgTooBig => "mesgtoobig",
            R::NetworkError => "networkerror",
            R::NoRelaying => "norelaying",
            R::NotAccept => "notaccept",
            R::NotCompliantRfc => "notcompliantrfc",
            R::OnHold => "onhold",
            R::PolicyViolation => "policyviolation",
            R::Rejected => "rejected",
            R::RequirePtr => "requireptr",
            R::SecurityError => "securityerror",
            R::SpamDetected => "spamdetected",
            R::Speeding => "speeding",
            R::Suspend => "suspend",
            R::SyntaxError => "syntaxerror",
            R::SystemError => "systemerror",
            R::SystemFull => "systemfull",
            R::TooManyConn => "toomanyconn",
            R::Undefined => "undefined",
            R::UserUnknown => "userunknown",
            R::VirusDetected => "virusdetected",
        }
    }

    /// Whether mailing the address again cannot work. `permanent`: the
    /// failure was a 5xx (a server that takes no mail today may tomorrow).
    pub fn is_hard(self, permanent: bool) -> bool {
        match self {
            R::UserUnknown | R::HostUnknown | R::HasMoved => true,
            R::NotAccept => permanent,
            _ => false,
        }
    }

    /// The status for a report that carries none: `x.0.9NN`, one detail
    /// number per reason (the convention bounce processors share), class 4
    /// for a temporary failure. A bad address is always permanent.
    pub fn inferred_status(self, temporary: bool) -> String {
        let detail = match self {
            R::NoRelaying => 909,
            R::Filtered if temporary => 924,
            R::Filtered => 910,
            R::UserUnknown => 911,
            R::HostUnknown => 912,
            R::HasMoved => 916,
            R::Rejected => 918,
            R::Suspend => 921,
            R::MailboxFull => 922,
            R::ExceedLimit => 923,
            R::AuthFailure => 926,
            R::SystemError => 930,
            R::SystemFull => 931,
            R::NotAccept => 932,
            R::MesgTooBig => 934,
            R::MailerError => 939,
            R::NetworkError => 944,
            R::TooManyConn => 945,
            R::Speeding => 946,
            R::Expired => 947,
            R::ContentError => 960,
            R::SecurityError => 970,
            R::Blocked => 971,
            R::PolicyViolation => 972,
            R::RequirePtr => 973,
            R::NotCompliantRfc => 974,
            R::BadReputation => 975,
            R::FailedStartTls => 976,
            R::SpamDetected => 980,
            R::VirusDetected => 981,
            R::SyntaxError => 902,
            R::OnHold => 901,
            R::Undefined => 900,
        };
        let class = if temporary && !matches!(self, R::UserUnknown | R::HostUnknown | R::HasMoved) {
            4
        } else {
            5
        };
        format!("{class}.0.{detail}")
    }
}

/// The SMTP command a refusal answered, when the report tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Connect,
    Helo,
    MailFrom,
    RcptTo,
    Data,
}

impl Command {
    /// Commands sent before the message itself: a refusal there is not a
    /// content filter's.
    fn before_data(self) -> bool {
        !matches!(self, Command::Data)
    }
}

/// The command named in `text` (lower case): Postfix's "in reply to RCPT TO
/// command", Exim's "after end of data", sendmail's `>>> DATA` transcript.
pub fn command_in(text: &str) -> Option<Command> {
    const DATA: &[&str] = &[
        "end of data",
        ">>> data",
        "in reply to data",
        "after data",
        "after the data",
        "data command",
        "smtp data",
        "message body",
    ];
    const RCPT: &[&str] = &[
        "rcpt to",
        "rcpt_to",
        "does not like recipient",
        ">>> rcpt",
        "after rcpt",
        "rcpt command",
        "rcpt-to",
        "smtp:rcpt",
    ];
    const MAIL: &[&str] = &["mail from", ">>> mail", "after mail", "mail command"];
    const HELO: &[&str] = &["ehlo", "helo", "my name was rejected"];
    const CONNECT: &[&str] = &["initial connection", "connection greeting", "greeting"];
    let first = |list: &[&str]| list.iter().filter_map(|p| text.find(p)).min();
    [
        (first(DATA), Command::Data),
        (first(RCPT), Command::RcptTo),
        (first(MAIL), Command::MailFrom),
        (first(HELO), Command::Helo),
        (first(CONNECT), Command::Connect),
    ]
    .into_iter()
    .filter_map(|(at, c)| Some((at?, c)))
    // The last command named is the one that failed (a transcript lists them in order).
    .max_by_key(|(at, _)| *at)
    .map(|(_, c)| c)
}

/// Which reasons' phrases a text contains.
#[derive(Clone, Copy)]
struct Said(u64);

impl Said {
    fn of(text: &str) -> Self {
        let (automaton, owners) = &*PHRASES;
        let bits = automaton
            .find_overlapping_iter(text)
            .filter_map(|m| owners.get(m.pattern().as_usize()))
            .fold(0u64, |bits, r| bits | 1 << (*r as u32));
        Self(bits)
    }

    fn has(self, reason: BounceReason) -> bool {
        self.0 & (1 << (reason as u32)) != 0
    }
}

/// What one recipient's failure is known by.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    /// The RFC 3463 status the report gave, if any.
    pub status: Option<&'a str>,
    /// The server's words and the report's lines about this recipient, lower case.
    pub text: &'a str,
    /// The DSN `Action` (`failed`, `delayed`).
    pub action: Option<&'a str>,
    /// The diagnostic is a local delivery program's (`Diagnostic-Code: X-Unix; …`).
    pub local_program: bool,
}

impl Evidence<'_> {
    /// A temporary failure: a `4.x.x` status, else words that read so.
    pub fn is_temporary(&self) -> bool {
        match self.status {
            Some(s) => s.starts_with('4'),
            None => is_temporary(self.text),
        }
    }
}

/// The reason for one failed recipient.
pub fn reason(e: &Evidence<'_>) -> BounceReason {
    let text = e.text;
    let said = Said::of(text);
    let says = |reason: BounceReason| said.has(reason);
    let command = command_in(text);
    // An address status given at MAIL FROM (`553 5.1.0 … does not exist`) is
    // about the sender's address: the recipient's was never asked for.
    let by_status = match e.status.and_then(reason_of_status) {
        Some(R::UserUnknown | R::HostUnknown) if command == Some(Command::MailFrom) => {
            Some(R::Rejected)
        }
        other => other,
    };
    let delayed = e.action.is_some_and(|a| a.starts_with("delayed"));
    let temporary = e.is_temporary();
    // A local delivery program failed (`Diagnostic-Code: X-Unix; ...`): its
    // words are no server's verdict on the address; only a full mailbox is
    // told apart.
    if e.local_program {
        return if says(R::MailboxFull) {
            R::MailboxFull
        } else {
            R::MailerError
        };
    }

    // The text decides first, in this order; the status code where it agrees.
    // A refusal that names its policy says why, whatever the code.
    if POLICY.iter().any(|p| text.contains(p)) {
        return R::PolicyViolation;
    }
    for candidate in [
        R::MailboxFull,
        R::ExceedLimit,
        R::MesgTooBig,
        R::Suspend,
        R::HasMoved,
        R::NoRelaying,
        R::NotCompliantRfc,
        R::AuthFailure,
        R::UserUnknown,
        R::Filtered,
        R::RequirePtr,
        R::BadReputation,
        R::ContentError,
        R::Rejected,
        R::NotAccept,
        R::HostUnknown,
        R::SpamDetected,
        R::TooManyConn,
        R::Speeding,
        R::Blocked,
    ] {
        let hit = match candidate {
            R::UserUnknown => match by_status {
                Some(R::UserUnknown) => ![
                    R::NoRelaying,
                    R::Blocked,
                    R::MailboxFull,
                    R::HasMoved,
                    R::Rejected,
                    R::NotAccept,
                ]
                .iter()
                .any(|r| says(*r)),
                // 5.1.7/5.1.8: the sender's address was refused, not the recipient's.
                Some(R::Suspend | R::Rejected) => false,
                // A mailbox status (5.2.x) names the address only when refused at RCPT.
                Some(R::Filtered) => command == Some(Command::RcptTo) && says(R::UserUnknown),
                _ => match command {
                    Some(Command::RcptTo) => says(R::UserUnknown),
                    // Words that name the recipient itself as unknown, whatever the
                    // command; with no status code at all, the words are all there is.
                    None => {
                        NAMES_THE_RECIPIENT.iter().any(|p| text.contains(p))
                            || (e.status.is_none()
                                && NO_SUCH_RECIPIENT.iter().any(|p| text.contains(p)))
                    }
                    Some(_) => false,
                },
            },
            // After DATA the address was accepted: a refusal is the content's.
            R::Filtered => match by_status {
                Some(R::Filtered) => says(R::UserUnknown) || says(R::Filtered),
                Some(R::Suspend) => false,
                _ => {
                    !command.is_some_and(Command::before_data)
                        && (says(R::Filtered) || says(R::UserUnknown))
                }
            },
            // A lookup that may work tomorrow, or our own name refused, is no proof.
            R::HostUnknown => {
                (by_status == Some(R::HostUnknown) || says(R::HostUnknown))
                    && !temporary
                    && !text.contains("malformed or unexpected")
                    && !text.contains("try again")
                    && !matches!(command, Some(Command::Helo | Command::Connect))
            }
            R::Rejected => {
                by_status == Some(R::Rejected)
                    || (says(R::Rejected) && command != Some(Command::RcptTo))
            }
            // The status decides it below; here only the words count.
            R::NotAccept => says(R::NotAccept),
            other => by_status == Some(other) || says(other),
        };
        if hit {
            return candidate;
        }
    }

    // Then what the status code says, where its class is specific enough.
    let vague = matches!(
        by_status,
        None | Some(
            R::SystemError
                | R::SecurityError
                | R::Expired
                | R::NetworkError
                | R::HostUnknown
                | R::UserUnknown
        )
    );
    if !vague && let Some(r) = by_status {
        return r;
    }
    // The sender's server gave up after retrying.
    if ["requests to connect", "will be retried", "retry timeout"]
        .iter()
        .any(|p| text.contains(p))
    {
        return R::Expired;
    }
    for candidate in [
        R::VirusDetected,
        R::PolicyViolation,
        R::SystemError,
        R::NetworkError,
        R::SystemFull,
        R::NotAccept,
        R::Expired,
        R::FailedStartTls,
        R::SecurityError,
        R::MailerError,
    ] {
        if says(candidate) {
            return candidate;
        }
    }
    if let Some(r) = by_status {
        return r;
    }
    let subject = e.status.and_then(|s| s.get(1..4));
    match subject {
        Some(".6.") => return R::ContentError,
        Some(".7.") => return R::SecurityError,
        _ => {}
    }
    if says(R::SyntaxError) {
        return R::SyntaxError;
    }
    if delayed {
        return R::Expired;
    }
    if matches!(command, Some(Command::Helo | Command::Connect)) {
        return R::Blocked;
    }
    if says_nothing(text) {
        R::Undefined
    } else {
        R::OnHold
    }
}

/// Text without a word (`* `, `:`): the report said nothing about the failure.
pub fn says_nothing(text: &str) -> bool {
    !text.chars().any(char::is_alphanumeric)
}

/// Whether `text` reads as a temporary failure (a 4xx reply, "try again").
pub fn is_temporary(text: &str) -> bool {
    let reply = text.split(|c: char| !c.is_ascii_digit()).find(|w| {
        w.len() == 3 && matches!(w.as_bytes()[0], b'4' | b'5') && w.as_bytes()[1] <= b'5'
    });
    match reply {
        Some(code) if code.starts_with('5') => false,
        Some(_) => true,
        // Words of a transient failure: one to be retried, or one retried until
        // it expired (Exim: "all hosts have been failing for a long time",
        // "retry time not reached").
        None => [
            "temporar",
            "persistent",
            "will be retried",
            "retry timeout",
            "retry time not reached",
            "have been failing for a long time",
        ]
        .iter()
        .any(|w| text.contains(w)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::classify::phrases::ALL;

    fn of(status: Option<&str>, text: &str) -> BounceReason {
        reason(&Evidence {
            status,
            text,
            action: Some("failed"),
            ..Evidence::default()
        })
    }

    #[test]
    fn every_reason_has_its_place_in_the_phrase_table() {
        // `Said` keeps one bit per reason, by discriminant.
        assert_eq!(ALL.len(), R::VirusDetected as usize + 1);
        assert!(ALL.iter().enumerate().all(|(i, r)| *r as usize == i));
    }

    #[test]
    fn status_codes_name_their_class() {
        assert_eq!(of(Some("5.1.1"), ""), R::UserUnknown);
        assert_eq!(of(Some("5.2.2"), ""), R::MailboxFull);
        assert_eq!(of(Some("5.1.2"), ""), R::HostUnknown);
        assert_eq!(of(Some("4.4.7"), ""), R::Expired);
        assert_eq!(of(Some("5.7.1"), ""), R::SecurityError);
    }

    #[test]
    fn the_text_narrows_the_status() {
        assert_eq!(of(Some("5.1.1"), "550 5.2.2 mailbox full"), R::MailboxFull);
        assert_eq!(
            of(
                Some("5.7.1"),
                "550 5.7.1 ip address blacklisted by recipient"
            ),
            R::Blocked
        );
        assert_eq!(of(Some("5.2.1"), "550 5.2.1 user unknown"), R::Filtered);
    }

    #[test]
    fn relaying_rates_outages_and_routing_loops_are_named() {
        assert_eq!(
            of(
                Some("5.7.1"),
                "501 rcpt-to validation failed: 5.7.1 this system is not configured to relay mail"
            ),
            R::NoRelaying
        );
        assert_eq!(
            of(
                Some("5.2.1"),
                "550-5.2.1 the user you are trying to contact is receiving mail at a rate that prevents additional messages from being delivered."
            ),
            R::Speeding
        );
        assert_eq!(
            of(Some("5.0.0"), "554 service currently unavailable"),
            R::SystemError
        );
        assert_eq!(
            of(
                Some("5.0.0"),
                "maximum hop count exceeded. message probably in a routing loop."
            ),
            R::NetworkError,
            "a routing loop is about the network and routing (rfc 3463, x.4.6)"
        );
    }

    #[test]
    fn mta_phrases_without_a_code_name_their_reason() {
        assert_eq!(
            of(
                None,
                "the number of messages in recipient's mailbox exceeded the local limit."
            ),
            R::MailboxFull
        );
        assert_eq!(
            of(
                None,
                "all hosts have been failing for a long time and were last tried after this message arrived"
            ),
            R::Expired
        );
        assert_eq!(
            of(
                None,
                "delevery to the following recipients was aborted after 5.0 hour(s):"
            ),
            R::Expired
        );
        // IMail: "Delivery failed 20 attempts: <addr>".
        assert_eq!(of(None, "delivery failed 20 attempts:"), R::Expired);
        assert_eq!(
            of(None, "500 remote server does not support tls (state 6)."),
            R::FailedStartTls
        );
        assert_eq!(
            of(
                None,
                "smtp error from remote mail server after end of data: 500 line limit exceeded"
            ),
            R::MesgTooBig
        );
        assert_eq!(
            of(
                None,
                "554 invalid ip for sending mail of domain amazonses.com [rcpt_to]"
            ),
            R::Blocked
        );
        // "Temporary failure" tells the class of a failure, not its cause.
        assert_eq!(
            of(
                None,
                "network error on destination mxs please note that this is only a temporary failure report."
            ),
            R::NetworkError
        );
        assert_eq!(
            of(None, "451 temporary failure, please try again"),
            R::OnHold
        );
        // A refusal by the recipient's server that says no more is its filter's;
        // one that says more is read for what it says.
        assert_eq!(
            of(
                None,
                "each of the following recipients was rejected by a remote mail server."
            ),
            R::Filtered
        );
        assert_eq!(
            of(
                Some("5.2.2"),
                "rejected by a remote mail server: 552 5.2.2 mailbox full"
            ),
            R::MailboxFull
        );
        // OpenSMTPD: a domain without a mail exchanger takes no mail.
        assert_eq!(of(Some("4.0.0"), ": no mx found for domain"), R::NotAccept);
        // The sender's own account is at fault.
        assert_eq!(
            of(
                None,
                "you're sending this from a different address or alias using the 'send mail as' feature."
            ),
            R::Rejected
        );
        // A link in the body on a URI block list is spam, not a blocked host.
        assert_eq!(
            of(
                Some("5.0.0"),
                "body of message generated response: 550-rejected - blacklisted url in message. (example.com) in [black]. 550-see http://lookup.uribl.com."
            ),
            R::SpamDetected
        );
    }

    #[test]
    fn specific_words_beat_a_general_code() {
        assert_eq!(
            of(Some("5.2.3"), "552 5.2.3 message length exceeds limit"),
            R::ExceedLimit,
            "the mailbox's own limit"
        );
        assert_eq!(
            of(Some("5.3.4"), "552 message size exceeds fixed maximum"),
            R::MesgTooBig
        );
        assert_eq!(
            of(
                Some("5.7.0"),
                "552 this message was blocked because its content presents a potential security issue"
            ),
            R::PolicyViolation
        );
        assert_eq!(
            of(
                Some("5.4.4"),
                "sorry, i couldn't find a mail exchanger or ip address"
            ),
            R::NotAccept
        );
        assert_eq!(of(None, "552 too many recipients"), R::TooManyConn);
        assert_eq!(
            of(
                Some("5.7.1"),
                "550 messages with multiple addresses in from: header are not accepted"
            ),
            R::NotCompliantRfc
        );
    }

    #[test]
    fn an_unknown_user_after_data_is_a_filter_not_a_bad_address() {
        assert_eq!(
            of(None, "550 user unknown (in reply to rcpt to command)"),
            R::UserUnknown
        );
        assert_eq!(
            of(None, "550 user unknown (in reply to end of data command)"),
            R::Filtered
        );
        // Without a status or a command, the address may well exist.
        assert_eq!(of(Some("5.0.0"), "550 unknown user"), R::Filtered);
    }

    #[test]
    fn only_bad_addresses_are_hard() {
        assert!(R::UserUnknown.is_hard(false));
        assert!(R::HostUnknown.is_hard(true));
        assert!(R::NotAccept.is_hard(true));
        assert!(!R::NotAccept.is_hard(false));
        assert!(!R::MailboxFull.is_hard(true));
        assert!(!R::Filtered.is_hard(true));
    }

    #[test]
    fn reports_without_a_status_get_one_from_the_reason() {
        assert_eq!(R::UserUnknown.inferred_status(false), "5.0.911");
        assert_eq!(R::Expired.inferred_status(true), "4.0.947");
        assert_eq!(R::UserUnknown.inferred_status(true), "5.0.911");
        assert_eq!(R::Filtered.inferred_status(true), "4.0.924");
    }

    #[test]
    fn temporary_failures_read_from_the_reply() {
        assert!(is_temporary("451 try again later"));
        assert!(!is_temporary("550 no such user"));
        assert!(is_temporary("the error is temporary"));
        assert!(is_temporary("message will be retried for 2 more day(s)"));
        assert!(!is_temporary(""));
    }
}
