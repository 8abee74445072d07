//! Splitting files into messages for `emailin ingest`: a single `.eml`, or
//! an mbox (messages separated by `From ` lines, `>From ` unescaped).

/// Splits `data` into raw messages. A file that does not start with an mbox
/// `From ` line is one message.
pub fn split(data: &[u8]) -> Vec<Vec<u8>> {
    if !data.starts_with(b"From ") {
        return vec![data.to_vec()];
    }
    let mut messages = Vec::new();
    let mut current: Option<Vec<u8>> = None;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            if let Some(done) = current.take() {
                messages.push(done);
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(msg) = current.as_mut() else {
            continue;
        };
        // mboxrd: one level of '>' quoting before "From " is removed.
        let unquoted = match line.iter().position(|&b| b != b'>') {
            Some(n) if n > 0 && line[n..].starts_with(b"From ") => &line[1..],
            _ => line,
        };
        msg.extend_from_slice(unquoted);
    }
    if let Some(done) = current {
        messages.push(done);
    }
    messages.retain(|m| !m.iter().all(u8::is_ascii_whitespace));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_file_is_one_message() {
        assert_eq!(split(b"Subject: x\n\nbody\n").len(), 1);
    }

    #[test]
    fn mbox_is_split_and_unquoted() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nx\n";
        let msgs = split(mbox);
        assert_eq!(msgs.len(), 2);
        assert_eq!(msgs[0], b"Subject: one\n\nFrom here\n\n");
        assert_eq!(msgs[1], b"Subject: two\n\nx\n");
    }
}
