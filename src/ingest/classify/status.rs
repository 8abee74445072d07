//! Enhanced status codes (RFC 3463): finding them in text, choosing the
//! telling one, and what each says.

use crate::ingest::classify::reason::BounceReason;

use BounceReason as R;

/// The `Status:` field, or the code the remote server itself gave where the
/// field is vague: a class-only `x.0.0`, a subject-only `x.y.0`, "gave up"
/// (`4.4.7`), a system or protocol error (`5.3.x`, `x.5.y`), or an unknown
/// user that the server says more precisely. The server's code counts only
/// within the same class (a temporary answer never makes a permanent failure).
pub(super) fn preferred_status(status: String, diagnostic: Option<&str>) -> String {
    let is_vague = |code: &str| code.ends_with(".0") || code.contains(".0.");
    // The most specific code the server gave ("5.1.0 - Unknown address
    // error 550-'5.2.2 … Mailbox Full'" says 5.2.2).
    let said: Vec<&str> = diagnostic
        .map(|d| {
            status_codes(d)
                .filter(|c| *c != status && c.get(..1) == status.get(..1))
                .collect()
        })
        .unwrap_or_default();
    let Some(said) = said.iter().find(|c| !is_vague(c)).or(said.first()).copied() else {
        return status;
    };
    let vague_said = is_vague(said);
    let vague = status.ends_with(".0.0")
        || (status.ends_with(".0") && !vague_said)
        || ["4.4.7", "4.7.0"].contains(&status.as_str())
        || status.starts_with("5.3.")
        || ["1", "2", "4", "5"]
            .iter()
            .any(|d| status.get(1..) == Some(&format!(".5.{d}")))
        || (status == "5.1.1" && !vague_said && !said.starts_with("5.5."));
    if vague && !said.ends_with(".0.0") {
        said.to_string()
    } else {
        status
    }
}

/// The enhanced status codes (`5.1.1`) in `text`, in order.
pub(super) fn status_codes(text: &str) -> impl Iterator<Item = &str> {
    text.split(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
        .map(|w| w.trim_end_matches('.'))
        .filter(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && matches!(parts[0], "2" | "4" | "5")
                && parts[1..]
                    .iter()
                    .all(|p| (1..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
        })
}

/// The first failure code (`4.x.x` or `5.x.x`) in `text`: a success code,
/// such as `250 2.1.5 Ok` in a quoted SMTP transcript, never says why a
/// delivery failed.
pub(super) fn first_status_code(text: &str) -> Option<String> {
    status_codes(text)
        .find(|c| !c.starts_with('2'))
        .map(str::to_string)
}

/// What RFC 3463 says a status code is about.
pub fn reason_of_status(status: &str) -> Option<BounceReason> {
    let mut parts = status.splitn(3, '.');
    let class = parts.next()?;
    let subject = parts.next()?;
    let detail = parts.next()?;
    let temporary = class == "4";
    Some(match (subject, detail) {
        ("1", "0" | "1" | "3") if !temporary => R::UserUnknown,
        ("1", "2") if !temporary => R::HostUnknown,
        ("1", "4") if !temporary => R::Filtered,
        ("1", "6") => R::HasMoved,
        ("1", "7" | "8") => R::Rejected,
        ("1", "9") => R::SystemError,
        ("1", "10") if !temporary => R::NotAccept,
        ("2", "1") if temporary => R::Blocked,
        ("2", "0" | "1" | "4") => R::Filtered,
        ("2", "2") => R::MailboxFull,
        ("2", "3") => R::ExceedLimit,
        ("3", "0") if !temporary => R::SystemError,
        ("3", "1") => R::SystemFull,
        ("3", "2") => R::NotAccept,
        ("3", "3" | "5") => R::SystemError,
        ("3", "4") if !temporary => R::MesgTooBig,
        ("4", "0") if !temporary => R::NetworkError,
        ("4", "1" | "7") if temporary => R::Expired,
        ("4", "2" | "6" | "8") if temporary => R::NetworkError,
        ("4", "4") if temporary => R::NetworkError,
        ("4", "4") => R::HostUnknown,
        ("4", "3") => R::SystemError,
        ("4", "5") if temporary => R::SystemFull,
        ("5", "2" | "6") if !temporary => R::SyntaxError,
        ("5", "3") if !temporary => R::TooManyConn,
        ("5", "3" | "4" | "5") => R::SystemError,
        ("6", _) => R::ContentError,
        ("7", "1" | "2") if temporary => R::Blocked,
        ("7", "13") if !temporary => R::Suspend,
        ("7", "16") => R::MesgTooBig,
        ("7", "17" | "18") if !temporary => R::HasMoved,
        ("7", "20" | "21" | "22" | "23" | "24" | "26" | "29") => R::AuthFailure,
        ("7", "25") => R::RequirePtr,
        ("7", "27") if !temporary => R::NotAccept,
        ("7", "28") if !temporary => R::SpamDetected,
        ("7", "30") if !temporary => R::FailedStartTls,
        ("7", "0") if temporary => return None,
        ("7", _) => R::SecurityError,
        _ => return None,
    })
}
