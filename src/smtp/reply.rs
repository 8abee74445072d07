//! Every SMTP reply the listener sends, in one place.
//!
//! Texts never reveal configuration (which aliases exist, database names);
//! enhanced status codes follow RFC 3463.

use std::borrow::Cow;

use smtp_proto::Response;

/// One reply line.
pub struct Reply(Response<Cow<'static, str>>);

impl Reply {
    const fn new(code: u16, esc: [u8; 3], text: &'static str) -> Self {
        Reply(Response {
            code,
            esc,
            message: Cow::Borrowed(text),
        })
    }

    fn owned(code: u16, esc: [u8; 3], text: String) -> Self {
        Reply(Response {
            code,
            esc,
            message: Cow::Owned(text),
        })
    }

    /// Appends the wire form (`250 2.0.0 text\r\n`) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if self.0.esc == [0, 0, 0] {
            // Greeting and 354 carry no enhanced code (RFC 2034 covers 2xx/4xx/5xx only).
            out.extend_from_slice(format!("{} {}\r\n", self.0.code, self.0.message).as_bytes());
        } else {
            // Writing into a Vec cannot fail.
            let _ = self.0.write(&mut *out);
        }
    }
}

pub fn greeting(hostname: &str) -> Reply {
    Reply::owned(220, [0, 0, 0], format!("{hostname} ESMTP emailin"))
}
/// The EHLO reply: our own greeting line, then the extensions we offer.
pub fn ehlo(hostname: &str, max_message_bytes: usize) -> Ehlo {
    Ehlo {
        lines: vec![
            format!("{hostname} Hello, emailin is ready"),
            "PIPELINING".into(),
            format!("SIZE {max_message_bytes}"),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ],
    }
}

/// A multi-line `250` reply.
pub struct Ehlo {
    lines: Vec<String>,
}

impl Ehlo {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("250{sep}{line}\r\n").as_bytes());
        }
    }
}

pub fn helo(hostname: &str) -> Reply {
    Reply::owned(250, [0, 0, 0], hostname.to_string())
}
pub fn closing(hostname: &str) -> Reply {
    Reply::owned(221, [2, 0, 0], format!("{hostname} closing connection"))
}
pub fn queued(id: &uuid::Uuid) -> Reply {
    Reply::owned(250, [2, 0, 0], format!("Ok: stored as {id}"))
}

pub const OK: Reply = Reply::new(250, [2, 0, 0], "Ok");
pub const SENDER_OK: Reply = Reply::new(250, [2, 1, 0], "Sender ok");
pub const RECIPIENT_OK: Reply = Reply::new(250, [2, 1, 5], "Recipient ok");
pub const START_DATA: Reply = Reply::new(354, [0, 0, 0], "End data with <CR><LF>.<CR><LF>");
pub const CANNOT_VRFY: Reply =
    Reply::new(252, [2, 5, 2], "Cannot VRFY user, but will accept message");
pub const HELP: Reply = Reply::new(214, [2, 0, 0], "See RFC 5321");

pub const TOO_BUSY_FOR_IP: Reply = Reply::new(
    421,
    [4, 7, 0],
    "Too many connections from your address, try again later",
);
pub const TOO_BUSY: Reply = Reply::new(421, [4, 3, 2], "Too many connections, try again later");
pub const TIMEOUT: Reply = Reply::new(421, [4, 4, 2], "Timeout, closing connection");
pub const SHUTTING_DOWN: Reply =
    Reply::new(421, [4, 3, 2], "Service shutting down, try again later");
pub const STORAGE_FAILED: Reply = Reply::new(
    451,
    [4, 3, 0],
    "Temporary failure storing the message, try again later",
);
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, [4, 5, 3], "Too many recipients");

pub const LINE_TOO_LONG: Reply = Reply::new(500, [5, 5, 2], "Line too long");
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, [5, 5, 1], "Command unrecognized");
pub const NOT_IMPLEMENTED: Reply = Reply::new(502, [5, 5, 1], "Command not implemented");
pub const HELO_FIRST: Reply = Reply::new(503, [5, 5, 1], "Send EHLO or HELO first");
pub const MAIL_FIRST: Reply = Reply::new(503, [5, 5, 1], "Send MAIL first");
pub const NESTED_MAIL: Reply = Reply::new(503, [5, 5, 1], "Sender already specified");
pub const RCPT_FIRST: Reply = Reply::new(554, [5, 5, 1], "No valid recipients");
pub const BLOCKED_SENDER: Reply = Reply::new(550, [5, 7, 1], "Sender rejected");
pub const UNKNOWN_RECIPIENT: Reply = Reply::new(550, [5, 1, 1], "No such recipient here");
pub const BAD_SENDER: Reply = Reply::new(553, [5, 1, 7], "Bad sender address syntax");
pub const NON_ASCII_WITHOUT_SMTPUTF8: Reply = Reply::new(
    553,
    [5, 6, 7],
    "Non-ASCII address needs the SMTPUTF8 parameter",
);
pub const EMPTY_MESSAGE: Reply = Reply::new(554, [5, 6, 0], "Empty message, nothing stored");
pub const BINARYMIME_UNSUPPORTED: Reply =
    Reply::new(555, [5, 5, 4], "BODY=BINARYMIME is not supported here");
pub const BAD_RECIPIENT: Reply = Reply::new(553, [5, 1, 3], "Bad recipient address syntax");
pub const TOO_BIG: Reply = Reply::new(
    552,
    [5, 3, 4],
    "Message size exceeds fixed maximum message size",
);

pub fn syntax_error(syntax: &str) -> Reply {
    Reply::owned(501, [5, 5, 4], format!("Syntax: {syntax}"))
}
pub fn bad_parameter(param: &str) -> Reply {
    Reply::owned(501, [5, 5, 4], format!("Invalid parameter {param}"))
}
pub fn unsupported_parameter(param: &str) -> Reply {
    Reply::owned(555, [5, 5, 4], format!("Unsupported parameter {param}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_render_with_enhanced_codes() {
        let mut out = Vec::new();
        UNKNOWN_RECIPIENT.write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 No such recipient here\r\n");
        out.clear();
        greeting("mx").write_to(&mut out);
        assert_eq!(out, b"220 mx ESMTP emailin\r\n");
        out.clear();
        START_DATA.write_to(&mut out);
        assert_eq!(out, b"354 End data with <CR><LF>.<CR><LF>\r\n");
    }
}
