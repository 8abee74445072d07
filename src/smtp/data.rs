//! The DATA reader: un-stuffs dots and finds the end of the message.
//!
//! Only `<CRLF>.<CRLF>` ends DATA (RFC 5321 §4.1.1.4); the CRLF that ends
//! the `DATA` command line counts as the first CRLF, so `.` straight after
//! `354` is an empty message. A bare CR or bare LF never starts or ends a
//! line here: `<LF>.<LF>`, `<CR>.<CR>`, `<CRLF>.<CR><CR><LF>` and every
//! other mix from the SMTP smuggling research stay message content, so no
//! second message can hide inside the first. A dot at the start of a line
//! is removed (RFC 5321 §4.5.2), the first line included.

/// Where the reader is within the current line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// After a CRLF (or the DATA command's own CRLF).
    LineStart,
    /// Inside a line.
    InLine,
    /// After a CR inside a line (held back until the next byte shows whether it ends the line).
    Cr,
    /// After a dot at the start of a line.
    Dot,
    /// After `.` `CR` at the start of a line.
    DotCr,
}

/// Reads one message body, keeping at most `limit` bytes of it.
#[derive(Debug)]
pub(super) struct DataReader {
    at: At,
    limit: usize,
    /// Content bytes seen (kept or not), after un-stuffing.
    seen: usize,
    message: Vec<u8>,
}

/// What [`DataReader::ingest`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// The end was not reached; every input byte was consumed.
    More,
    /// The end was reached after this many input bytes; the rest are commands.
    Done(usize),
}

impl DataReader {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            at: At::LineStart,
            limit,
            seen: 0,
            message: Vec::new(),
        }
    }

    /// True once the content went past the limit (it is then no longer kept).
    pub(super) fn too_big(&self) -> bool {
        self.seen > self.limit
    }

    /// True when no content came before the end (`.` right after `354`).
    pub(super) fn is_empty(&self) -> bool {
        self.seen == 0
    }

    /// The message, once [`Progress::Done`] was returned and it was not too big.
    pub(super) fn into_message(mut self) -> Vec<u8> {
        self.message.shrink_to_fit();
        self.message
    }

    pub(super) fn ingest(&mut self, input: &[u8]) -> Progress {
        let mut i = 0;
        while i < input.len() {
            match self.at {
                At::InLine => {
                    // Fast path: everything up to the next CR is content.
                    let rest = &input[i..];
                    match memchr::memchr(b'\r', rest) {
                        Some(pos) => {
                            self.emit(&rest[..pos]);
                            self.at = At::Cr;
                            i += pos + 1;
                        }
                        None => {
                            self.emit(rest);
                            return Progress::More;
                        }
                    }
                    continue;
                }
                At::LineStart => match input[i] {
                    b'.' => self.at = At::Dot,
                    b'\r' => self.at = At::Cr,
                    b => {
                        self.emit(&[b]);
                        self.at = At::InLine;
                    }
                },
                At::Cr => match input[i] {
                    b'\n' => {
                        self.emit(b"\r\n");
                        self.at = At::LineStart;
                    }
                    // The held CR was a bare one; this one is held in its place.
                    b'\r' => self.emit(b"\r"),
                    b => {
                        self.emit(&[b'\r', b]);
                        self.at = At::InLine;
                    }
                },
                At::Dot => match input[i] {
                    b'\r' => self.at = At::DotCr,
                    // The dot was stuffing: drop it, the byte is content.
                    b => {
                        self.emit(&[b]);
                        self.at = At::InLine;
                    }
                },
                At::DotCr => match input[i] {
                    b'\n' => return Progress::Done(i + 1),
                    // `.` CR CR: the first CR was bare content, the second is held.
                    b'\r' => {
                        self.emit(b"\r");
                        self.at = At::Cr;
                    }
                    b => {
                        self.emit(&[b'\r', b]);
                        self.at = At::InLine;
                    }
                },
            }
            i += 1;
        }
        Progress::More
    }

    fn emit(&mut self, bytes: &[u8]) {
        self.seen = self.seen.saturating_add(bytes.len());
        if self.seen <= self.limit {
            self.message.extend_from_slice(bytes);
        } else if !self.message.is_empty() {
            self.message = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and the bytes after its end, read in chunks of `step` bytes.
    fn read(input: &[u8], step: usize) -> Option<(Vec<u8>, Vec<u8>)> {
        let mut reader = DataReader::new(1 << 20);
        let mut offset = 0;
        while offset < input.len() {
            let end = (offset + step).min(input.len());
            if let Progress::Done(n) = reader.ingest(&input[offset..end]) {
                return Some((reader.into_message(), input[offset + n..].to_vec()));
            }
            offset = end;
        }
        None
    }

    fn read_all_ways(input: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let whole = read(input, input.len().max(1));
        for step in 1..8 {
            assert_eq!(read(input, step), whole, "chunked by {step}");
        }
        whole
    }

    #[test]
    fn a_dot_right_after_354_is_an_empty_message() {
        let (message, rest) = read_all_ways(b".\r\nQUIT\r\n").expect("ends");
        assert_eq!(message, b"");
        assert_eq!(rest, b"QUIT\r\n");
    }

    #[test]
    fn a_leading_dot_is_removed_on_every_line_the_first_included() {
        let (message, _) = read_all_ways(b"..Hidden: x\r\n\r\n..dots\r\n.\r\n").expect("ends");
        assert_eq!(message, b".Hidden: x\r\n\r\n.dots\r\n");
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        // The variants of the SMTP smuggling research: none of them ends DATA.
        for end in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r.\r",
            b"\r.\n",
            b"\r\n.\r",
            b"\r\n.\n",
            b"\r\n.\r\r\n",
            b"\r\n\x00.\r\n",
            b"\n.\r\r\n",
            b"\r\r\n.\r\r\n",
        ] {
            let mut input = b"Subject: a\r\n\r\nbody".to_vec();
            input.extend_from_slice(end);
            input.extend_from_slice(b"MAIL FROM:<evil@example.com>\r\n");
            assert_eq!(read_all_ways(&input), None, "{end:?} must not end DATA");
            input.extend_from_slice(b"\r\n.\r\n");
            let (message, rest) = read_all_ways(&input).expect("the real end");
            assert!(rest.is_empty());
            assert!(message.ends_with(b"MAIL FROM:<evil@example.com>\r\n\r\n"));
        }
    }

    #[test]
    fn bare_line_ends_are_kept_as_written() {
        let (message, _) = read_all_ways(b"a\rb\nc\r\r\n.\r\n").expect("ends");
        assert_eq!(message, b"a\rb\nc\r\r\n");
    }

    #[test]
    fn content_past_the_limit_is_counted_not_kept() {
        let mut reader = DataReader::new(4);
        assert_eq!(reader.ingest(b"12345\r\n.\r\nNOOP"), Progress::Done(10));
        assert!(reader.too_big());
    }
}
