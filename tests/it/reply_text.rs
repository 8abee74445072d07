//! `reply_text` measured against the expectations of
//! `../shared/corpus/email-reply-trimmer`: each of its reply bodies and
//! the new part its upstream tests expect.

use std::path::Path;

use emailin::domain::reply_text;

/// Both sides compared without trailing spaces on a line or blank lines
/// at the ends.
fn normal(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.join("\n").trim_matches('\n').to_string()
}

#[test]
fn reply_text_agrees_with_the_email_reply_trimmer_corpus() {
    let Some(dir) = crate::corpus::corpus_dir() else {
        return;
    };
    let dir = dir.join("email-reply-trimmer/test");
    let mut names: Vec<_> = std::fs::read_dir(dir.join("emails"))
        .expect("emails folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let mut agree = 0;
    let mut differ = Vec::new();
    for name in &names {
        let read = |folder: &str| {
            let bytes =
                std::fs::read(Path::new(&dir).join(folder).join(name)).expect("corpus file");
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let got = normal(&reply_text(&read("emails")));
        let want = normal(&read("trimmed"));
        if got == want {
            agree += 1;
        } else {
            differ.push(format!(
                "{}:\n--- want\n{want}\n--- got\n{got}",
                name.to_string_lossy()
            ));
        }
    }
    for d in &differ {
        eprintln!("{d}\n");
    }
    eprintln!(
        "reply_text agrees with email-reply-trimmer on {agree} of {} bodies",
        names.len()
    );
    assert_eq!(names.len(), 64, "the corpus has 64 reply bodies");
    // The floor keeps what is reached from slipping back.
    assert!(
        agree >= 62,
        "reply_text agrees on {agree} of {} (floor 62)",
        names.len()
    );
}

/// The address in the first line of an expected embedded message
/// (`From: Name <a@b>`), when it names one.
fn first_address(text: &str) -> Option<String> {
    let line = text.lines().next()?;
    let at = line.find('<')?;
    let rest = &line[at + 1..];
    let end = rest.find(['<', '>'])?;
    Some(rest[..end].trim_end_matches('.').to_lowercase())
}

#[test]
fn forwarded_senders_agree_with_the_embedded_messages_of_the_corpus() {
    let Some(dir) = crate::corpus::corpus_dir() else {
        return;
    };
    let dir = dir.join("email-reply-trimmer/test");
    let mut names: Vec<_> = std::fs::read_dir(dir.join("embedded"))
        .expect("embedded folder")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    let (mut named, mut agree) = (0, 0);
    for name in &names {
        let read = |folder: &str| {
            let bytes = std::fs::read(dir.join(folder).join(name)).expect("corpus file");
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let Some(want) = first_address(&read("embedded")) else {
            continue;
        };
        named += 1;
        let got =
            emailin::domain::forwarded_sender(&read("emails")).map(|(_, a)| a.as_str().to_string());
        if got.as_deref() == Some(want.as_str()) {
            agree += 1;
        } else {
            eprintln!("{}: want {want}, got {got:?}", name.to_string_lossy());
        }
    }
    eprintln!(
        "forwarded_sender agrees on {agree} of {named} embedded messages that name an address"
    );
    assert!(named >= 7, "{named} embedded messages name an address");
    assert_eq!(agree, named, "every embedded sender is found");
}
