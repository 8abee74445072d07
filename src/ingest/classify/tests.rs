//! Classification of real-shaped messages, rule by rule.

use super::*;

/// A message from `tests/fixtures/classify/`.
fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/classify/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

use crate::ingest::parse;

fn class_of(raw: &str) -> Classification {
    classify(&parse(raw.as_bytes()).expect("parses"), false)
}

fn bounce_recipients(raw: &str) -> Vec<FailedRecipient> {
    match class_of(raw).class {
        Class::Bounce(b) => b.recipients,
        other => panic!("not a bounce: {other:?}"),
    }
}

/// Asserts that `raw` names one failed recipient, `address`, with a
/// status starting `status`.
fn only_recipient(raw: &str, address: &str, status: &str) {
    let got = text_recipients(raw);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, address);
    assert!(
        got[0].1.as_deref().is_some_and(|s| s.starts_with(status)),
        "{got:?}"
    );
}

fn text_recipients(raw: &str) -> Vec<(String, Option<String>, bool)> {
    bounce_recipients(raw)
        .into_iter()
        .map(|r| (r.address, r.status, r.hard))
        .collect()
}

#[test]
fn a_generic_dsn_status_yields_to_the_servers_specific_code() {
    let raw: &str = &fixture("a-generic-dsn-status-yields-to-the-servers-specific-code-raw.eml");
    let got = text_recipients(raw);
    assert_eq!(
        got,
        [("a@b.example".to_string(), Some("5.7.1".to_string()), false)]
    );
    // `4.4.7` (retries ran out) yields to the failure the report says they met.
    let exchange: &str =
        &fixture("a-generic-dsn-status-yields-to-the-servers-specific-code-exchange.eml");
    assert_eq!(text_recipients(exchange)[0].1.as_deref(), Some("4.4.1"));
    // `5.0.0` with a diagnostic that gives no code yields to the transcript's;
    // one the server's own diagnostic repeats stays.
    let sendmail = |diagnostic: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
--b\r\n\r\n   ----- The following addresses had permanent fatal errors -----\r\n\"|/home/kim/catch.pl\"\r\n\
(expanded from: <kim@b.example>)\r\n\r\n   ----- Transcript of session follows -----\r\n\
554 5.3.0 unknown mailer error 255\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: RFC822; kim@b.example\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: {diagnostic}\r\n\r\n--b--\r\n"
        )
    };
    assert_eq!(
        text_recipients(&sendmail("X-Unix; 255"))[0].1.as_deref(),
        Some("5.3.0")
    );
    assert_eq!(
        text_recipients(&sendmail("SMTP; 550 5.0.0 <kim@b.example>... User unknown"))[0]
            .1
            .as_deref(),
        Some("5.0.0")
    );
}

#[test]
fn a_success_code_in_a_quoted_transcript_is_not_the_failure() {
    let raw: &str = &fixture("a-success-code-in-a-quoted-transcript-is-not-the-failure-raw.eml");
    let got = text_recipients(raw);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "kim@b.example");
    assert_eq!(got[0].1.as_deref(), Some("4.3.0"));
}

#[test]
fn a_report_without_a_readable_returned_message_names_its_original_in_in_reply_to() {
    // Gmail's delay report: its inner multipart is never closed, so the
    // returned message's part cannot be reached; its In-Reply-To names it.
    let report = |in_reply_to: &str| {
        format!(
            "From: Mail Delivery Subsystem <mailer-daemon@mx.example>\r\n{in_reply_to}\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"outer\"\r\n\r\n\
--outer\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nDelivery to kim@b.example has been delayed.\r\n\r\n\
--outer\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; kim@b.example\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
--outer\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <orig@example.org>\r\nSubject: Hi\r\n\r\nhello\r\n\
--outer--\r\n"
        )
    };
    let original = |raw: &str| match class_of(raw).class {
        Class::Bounce(b) => b.original_message_id,
        other => panic!("not a bounce: {other:?}"),
    };
    assert_eq!(
        original(&report("In-Reply-To: <orig@example.org>\r\n")).as_deref(),
        Some("orig@example.org")
    );
    assert_eq!(original(&report("")), None);
}

#[test]
fn a_refused_envelope_sender_in_a_transcript_is_not_a_failed_recipient() {
    let raw: &str =
        &fixture("a-refused-envelope-sender-in-a-transcript-is-not-a-failed-recipient-raw.eml");
    let got: Vec<String> = text_recipients(raw)
        .into_iter()
        .map(|(a, _, _)| a)
        .collect();
    assert_eq!(got, ["kim@b.example"]);
}

#[test]
fn exim3_lists_failed_addresses_before_the_message_text() {
    // Exim 3: `addr ... reason` lines, then the returned message (sent to
    // a list that expanded to the address), whose `Message-Id:` names no
    // recipient.
    let raw: &str = &fixture("exim3-lists-failed-addresses-before-the-message-text-raw.eml");
    let got = text_recipients(raw);
    assert_eq!(
        got,
        [(
            "kim@nowhere.example".to_string(),
            Some("5.0.912".to_string()),
            true
        )]
    );
}

#[test]
fn a_delay_report_names_its_recipient_in_an_address_field() {
    // Zoho's warning: the recipient's line carries the server's 421, and
    // the quoted original's `To:` (the same address) is not its line.
    let raw: &str = &fixture("a-delay-report-names-its-recipient-in-an-address-field-raw.eml");
    let got = text_recipients(raw);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "kim@b.example");
    assert_eq!(got[0].1.as_deref(), Some("4.0.947"), "temporary: 421");
}

#[test]
fn a_vague_dsn_status_yields_to_the_code_the_server_gave() {
    let prefer = |status: &str, diagnostic: &str| preferred_status(status.into(), Some(diagnostic));
    assert_eq!(
        prefer("4.4.7", "554 4.4.7 expired <421 4.4.2 timed out"),
        "4.4.2"
    );
    assert_eq!(prefer("5.1.1", "550 5.7.1 IP address blacklisted"), "5.7.1");
    assert_eq!(prefer("5.0.0", "550 5.2.2 Mailbox full"), "5.2.2");
    // A specific field stands; a temporary answer never makes a permanent failure.
    assert_eq!(prefer("5.2.2", "552 5.1.1 full"), "5.2.2");
    assert_eq!(prefer("5.0.0", "421 4.4.2 timed out"), "5.0.0");
    assert_eq!(prefer("5.1.1", "550 5.1.0 unknown"), "5.1.1");
}

#[test]
fn a_report_naming_thousands_of_recipients_reads_a_bounded_number() {
    let mut blocks = String::new();
    for i in 0..10_000 {
        blocks.push_str(&format!(
            "Final-Recipient: rfc822; u{i}@b.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        ));
    }
    let raw = format!(
        "From: MAILER-DAEMON@mx.example\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n--b\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example\r\n\r\n{blocks}--b--\r\n"
    );
    let got = text_recipients(&raw);
    assert_eq!(got.len(), MAX_BOUNCE_RECIPIENTS);
    assert_eq!(got[0].0, "u0@b.example");
    assert!(got.iter().all(|r| r.2), "all unknown users");
}

#[test]
fn hard_means_the_recipient_address_is_bad() {
    let is_hard = |status: Option<&str>, diagnostic: Option<&str>| {
        let evidence = words_of(diagnostic.unwrap_or_default());
        failed_recipient(
            "a@b.example".into(),
            Some("failed".into()),
            status.map(str::to_string),
            diagnostic.map(str::to_string),
            Said {
                words: &evidence,
                local_program: false,
            },
            None::<&LazyCell<ReportWords>>,
        )
        .hard
    };
    assert!(is_hard(Some("5.1.1"), None));
    assert!(is_hard(None, Some("User x not listed in Domino Directory")));
    assert!(
        !is_hard(Some("5.2.1"), Some("mailbox disabled")),
        "may come back"
    );
    assert!(!is_hard(Some("4.1.1"), Some("user unknown")), "temporary");
    // An address that reads like a reason is not one.
    assert!(!is_hard(
        Some("5.0.0"),
        Some("550 <this-does-not-exist@docomo.ne.jp>: rejected by policy")
    ));
    // About the sender, or a filter's verdict after DATA: not the recipient's fault.
    assert!(!is_hard(
        Some("5.1.8"),
        Some("Domain of sender address root@x.example does not exist")
    ));
    assert!(!is_hard(
        None,
        Some("SMTP error after end of data: 550 User unknown")
    ));
    // An address status answered at MAIL FROM is about the sender's address.
    assert!(!is_hard(
        Some("5.1.0"),
        Some(
            "SMTP error from remote mail server after MAIL FROM:<a@b.example> SIZE=1022: 553 5.1.0 b.example does not exist"
        )
    ));
}

#[test]
fn a_local_delivery_programs_failure_is_a_mailer_error() {
    let dsn = |status: &str, diagnostic: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.example.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example\r\n\r\n\
Final-Recipient: rfc822; kim@example.org\r\nAction: failed\r\nStatus: {status}\r\n\
Diagnostic-Code: {diagnostic}\r\n\r\n--b--\r\n"
        )
    };
    let read = |status: &str, diagnostic: &str| {
        let r = &bounce_recipients(&dsn(status, diagnostic))[0];
        (r.reason, r.hard)
    };
    // procmail's "No such user" is the program's complaint, no server's
    // verdict on the address: never a hard bounce.
    assert_eq!(
        read(
            "5.1.1",
            "x-unix; procmail: Couldn't create \"/var/spool/mail/kim\" id: kim: No such user"
        ),
        (BounceReason::MailerError, false)
    );
    assert_eq!(
        read(
            "4.3.0",
            "x-unix; /var/mail/kim/tmp/1.neko: Disk quota exceeded"
        ),
        (BounceReason::MailboxFull, false)
    );
    // The same words from a server are its verdict.
    assert_eq!(
        read("5.1.1", "smtp; 550 5.1.1 <kim@example.org>: No such user"),
        (BounceReason::UserUnknown, true)
    );
}

#[test]
fn plain_text_bounces_without_mime_or_with_the_original_quoted_are_read() {
    let want = |a: &str, s: &str, hard| (a.to_string(), Some(s.to_string()), hard);
    // Sendmail without MIME: its opening line names the original, its
    // delivery-status fields are lines of text.
    let sendmail: &str = &fixture(
        "plain-text-bounces-without-mime-or-with-the-original-quoted-are-read-sendmail.eml",
    );
    assert_eq!(
        text_recipients(sendmail),
        [want("kijitora@mx.example", "4.4.7", false)]
    );
    let listed: &str =
        &fixture("plain-text-bounces-without-mime-or-with-the-original-quoted-are-read-listed.eml");
    assert_eq!(text_recipients(listed)[0].0, "gone@example.co.jp");
    // No address in the report: the quoted original's To: failed.
    let quoted: &str =
        &fixture("plain-text-bounces-without-mime-or-with-the-original-quoted-are-read-quoted.eml");
    assert_eq!(
        text_recipients(quoted),
        [want("555@pix.example", "5.0.911", true)]
    );
    let phrased: &str = &fixture(
        "plain-text-bounces-without-mime-or-with-the-original-quoted-are-read-phrased.eml",
    );
    let got = text_recipients(phrased);
    assert_eq!(got[0], want("gone@example.org", "5.1.1", true));
    assert_eq!(got[1].0, "loop@example.org");
    assert!(!got[1].2, "a mail loop is not a bad address: {got:?}");
}

#[test]
fn amazon_ses_notifications_are_bounces_and_complaints() {
    let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"Gone@Example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}]},"mail":{"headers":[{"name":"Message-ID","value":"<orig@example.org>"}]}}"#;
    // Folded as SNS sends it, with its footer after the JSON.
    let folded = format!(
        "{}\r\n {}\r\n\r\n--\r\nIf you wish to stop receiving notifications, unsubscribe.\r\n",
        &bounce[..60],
        &bounce[60..]
    );
    let mail = |body: &str| {
        format!(
            "From: AWS Notifications <no-reply@sns.amazonaws.com>\r\nSubject: AWS Notification Message\r\n\r\n{body}"
        )
    };
    let c = class_of(&mail(&folded));
    assert_eq!(c.rule, "amazon-ses-notification");
    let Class::Bounce(b) = c.class else {
        panic!("not a bounce: {c:?}")
    };
    assert_eq!(b.original_message_id.as_deref(), Some("orig@example.org"));
    let r = &b.recipients[0];
    assert_eq!(
        (r.address.as_str(), r.status.as_deref(), r.reason, r.hard),
        (
            "gone@example.com",
            Some("5.1.1"),
            BounceReason::UserUnknown,
            true
        )
    );
    // Inside SNS's own envelope; a transient bounce never marks the address.
    let transient = bounce.replace("Permanent", "Transient");
    let wrapped = serde_json::json!({"Type": "Notification", "Message": transient}).to_string();
    let Class::Bounce(b) = class_of(&mail(&wrapped)).class else {
        panic!("the wrapped notification is a bounce")
    };
    assert!(!b.recipients[0].hard);
    let complaint = r#"{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":"ann@example.com"}]}}"#;
    assert_eq!(
        class_of(&mail(complaint)).class,
        Class::Complaint {
            about: Some("ann@example.com".into())
        }
    );
    // A delivery notification, the same JSON from anyone else, or broken JSON: no bounce.
    let delivery =
        r#"{"notificationType":"Delivery","delivery":{"recipients":["ann@example.com"]}}"#;
    assert_eq!(class_of(&mail(delivery)).class, Class::Normal);
    let elsewhere = format!("From: Ann <ann@example.com>\r\nSubject: json\r\n\r\n{bounce}");
    assert_eq!(class_of(&elsewhere).class, Class::Normal);
    assert_eq!(class_of(&mail(&bounce[..80])).class, Class::Normal);
}

/// Each recipient's (address, reason, status).
fn reasons(raw: &str) -> Vec<(String, BounceReason, Option<String>)> {
    bounce_recipients(raw)
        .into_iter()
        .map(|r| (r.address, r.reason, r.status))
        .collect()
}

#[test]
fn a_report_that_says_little_about_a_recipient_is_read_for_what_it_says() {
    let one = |a: &str, r: BounceReason, s: &str| vec![(a.to_string(), r, Some(s.to_string()))];
    // Postfix's report without per-recipient fields: the failed address is
    // the returned message's; the report's greeting says nothing of it.
    let postfix: &str = &fixture(
        "a-report-that-says-little-about-a-recipient-is-read-for-what-it-says-postfix.eml",
    );
    assert_eq!(
        reasons(postfix),
        one("kim@example.fr", BounceReason::Undefined, "5.0.900")
    );
    // ... but the whole report's reply tells whether the failure was temporary:
    // sendmail v5's 421 before the quoted original.
    let v5 = "From: MAILER-DAEMON@mx.example\r\nSubject: Returned mail: Deferred\r\n\r\n\
   ----- Transcript of session follows -----\r\n\
421 example.com (smtp)... Deferred: Connection timed out during user open with example.com\r\n\r\n\
   ----- Unsent message follows -----\r\nFrom: a@example.org\r\nTo: kim@example.com\r\n\r\nhi\r\n";
    let got = reasons(v5);
    assert_eq!(got.len(), 1);
    assert!(
        got[0].2.as_deref().is_some_and(|s| s.starts_with("4.0.")),
        "{got:?}"
    );
    // A bullet and an address: nothing said.
    let x3 = "From: MAILER-DAEMON@x3.example\r\nSubject: Delivery status notification\r\n\r\n\
Delivery to the following recipients failed permanently:\r\n\r\n   * gone@example.com\r\n\r\n";
    assert_eq!(
        reasons(x3),
        one("gone@example.com", BounceReason::Undefined, "5.0.900")
    );
    // Lotus Notes puts the reason above the address; one no phrase names is
    // still something said: on hold, not undefined.
    let notes: &str =
        &fixture("a-report-that-says-little-about-a-recipient-is-read-for-what-it-says-notes.eml");
    assert_eq!(
        reasons(notes),
        one("ann@example.com", BounceReason::OnHold, "5.0.901")
    );
    // The report's text says more than its subject ("Mail System Error").
    let ezweb: &str =
        &fixture("a-report-that-says-little-about-a-recipient-is-read-for-what-it-says-ezweb.eml");
    assert_eq!(
        reasons(ezweb),
        one("kim@ezweb.example", BounceReason::Expired, "5.0.947")
    );
    // Exim's words for a delivery retried until it expired are a temporary failure's.
    let exim: &str =
        &fixture("a-report-that-says-little-about-a-recipient-is-read-for-what-it-says-exim.eml");
    assert_eq!(
        reasons(exim),
        one("kim@example.org", BounceReason::Expired, "4.0.947")
    );
}

#[test]
fn a_transcript_gives_each_recipient_the_dialogue_before_its_result() {
    let reasons_of =
        |raw: &str| -> Vec<BounceReason> { reasons(raw).into_iter().map(|(_, r, _)| r).collect() };
    let v5 = |transcript: &str| {
        format!(
            "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example>\r\nSubject: Returned mail: Host unknown\r\n\r\n\
   ----- Transcript of session follows -----\r\n{transcript}\r\n   ----- Unsent message follows -----\r\n\r\nhi\r\n"
        )
    };
    // Sendmail v5 ends each recipient's dialogue with `554 <addr>... reason`;
    // the host line after it (`550 example.org (smtp)...`) is the next one's.
    let raw = v5(
        "While talking to mx.example.org:\r\n>>> MAIL From:<ann@example.jp>\r\n\
<<< 501 <ann@example.jp>... no access from mail server [192.0.2.55] which is an open relay.\r\n\
554 <kim@example.org>... Remote protocol error\r\n550 example.org (smtp)... 550 Host unknown\r\n\
554 <lee@example.org>... 550 Host unknown (Authoritative answer from name server)\r\n\
While talking to smtp.example.edu:\r\n>>> RCPT To:<max@example.edu>\r\n<<< 550 <max@example.edu>... User unknown\r\n\
550 <max@example.edu>... User unknown\r\n",
    );
    assert_eq!(
        reasons_of(&raw),
        [
            BounceReason::Blocked,
            BounceReason::HostUnknown,
            BounceReason::UserUnknown
        ]
    );
    let raw = v5(
        "While talking to mx.example.edu:\r\n>>> MAIL From:<ann@example.jp>\r\n<<< 550 Insecure Mail Relay\r\n\
554 <kim@example.edu>... Remote protocol error\r\n",
    );
    assert_eq!(reasons_of(&raw), [BounceReason::NoRelaying]);
    // With several recipients, one whose lines say nothing known does not
    // take another's words from the rest of the report.
    let raw = v5("554 <kim@example.org>... Remote protocol error\r\n\
While talking to smtp.example.edu:\r\n>>> RCPT To:<max@example.edu>\r\n<<< 550 <max@example.edu>... User unknown\r\n\
550 <max@example.edu>... User unknown\r\n");
    assert_eq!(
        reasons_of(&raw),
        [BounceReason::OnHold, BounceReason::UserUnknown]
    );
}

#[test]
fn a_bounce_relayed_inside_a_gateways_notice_is_read_from_within() {
    let raw: &str =
        &fixture("a-bounce-relayed-inside-a-gateways-notice-is-read-from-within-raw.eml");
    let Class::Bounce(b) = class_of(raw).class else {
        panic!("not a bounce")
    };
    let r = &b.recipients[0];
    assert_eq!(
        (
            b.recipients.len(),
            r.address.as_str(),
            r.status.as_deref(),
            r.hard
        ),
        (1, "kim@example.org", Some("5.1.1"), true)
    );
    assert_eq!(b.original_message_id.as_deref(), Some("orig@example.com"));
}

#[test]
fn report_readings_that_other_mtas_need() {
    // A multipart/report in which no boundary line occurs is read as text.
    let unparted: &str = &fixture("report-readings-that-other-mtas-need-unparted.eml");
    assert_eq!(text_recipients(unparted)[0].0, "gone@example.net");
    // Lotus Notes' "Returned Message" ends the report (the Received lines
    // below it hold no status of the failure); "undeliverable to addr".
    let notes: &str = &fixture("report-readings-that-other-mtas-need-notes.eml");
    assert_eq!(
        text_recipients(notes),
        [(
            "ann@example.com".to_string(),
            Some("5.0.911".to_string()),
            true
        )]
    );
    // MXLogic quotes the original's header after "Included is a copy of the
    // message header:"; its Received line's `mxl_mta-5.5.0-3` is no status,
    // its Message-ID and Errors-To no recipients.
    let mxlogic: &str = &fixture("report-readings-that-other-mtas-need-mxlogic.eml");
    only_recipient(mxlogic, "kim@example.co.jp", "5.0.9");
    // Quoted header lines name no recipient: a Message-Id is no address,
    // MailMarshal's "Original Sender:" is the sender.
    let marshal: &str = &fixture("report-readings-that-other-mtas-need-marshal.eml");
    let got: Vec<_> = text_recipients(marshal).into_iter().map(|r| r.0).collect();
    assert_eq!(got, ["kim@example.com"]);
    let imail: &str = &fixture("report-readings-that-other-mtas-need-imail.eml");
    assert_eq!(text_recipients(imail)[0].0, "kijitora@example.jp");
    // A status code given away from the recipient's own lines brings its words:
    // "SMTP:RCPT ... No such user here" is an unknown recipient, not a system error.
    let x3 = "From: MAILER-DAEMON@x3.example\r\nSubject: Delivery status notification\r\n\r\n\
Delivery to the following recipients failed permanently:\r\n\r\n   * gone@example.com\r\n\r\n\r\n\
Technical details:\r\n\r\nSMTP:RCPT host 192.0.2.8: 553 5.3.0 <gone@example.com>... No such user here\r\n";
    assert_eq!(
        text_recipients(x3),
        [(
            "gone@example.com".to_string(),
            Some("5.3.0".to_string()),
            true
        )]
    );
    // Zoho: `addr Invalid Address, …`; the quoted original's
    // `Message-ID:<…>` and `To:<…>` lines name no recipient.
    let zoho: &str = &fixture("report-readings-that-other-mtas-need-zoho.eml");
    let got: Vec<_> = text_recipients(zoho)
        .into_iter()
        .map(|(a, s, _)| (a, s))
        .collect();
    assert_eq!(
        got,
        [
            ("gone@example.co.jp".to_string(), Some("5.2.1".to_string())),
            ("full@example.co.jp".to_string(), Some("5.2.2".to_string())),
        ]
    );
    // Zoho's temporary failure: `addr Error, ERROR_CODE :421, …` is the
    // recipient's line (its 421 makes the failure temporary).
    let zoho: &str = &fixture("report-readings-that-other-mtas-need-zoho-2.eml");
    only_recipient(zoho, "kim@example.co.jp", "4.");
    // Exchange 2003 names the original's MTS-ID under each recipient;
    // that line does not start the quoted original.
    let exchange: &str = &fixture("report-readings-that-other-mtas-need-exchange.eml");
    let got: Vec<_> = text_recipients(exchange)
        .into_iter()
        .map(|(a, _, hard)| (a, hard))
        .collect();
    assert_eq!(
        got,
        [
            ("ann@example.co.jp".to_string(), true),
            ("bob@example.co.jp".to_string(), true),
        ]
    );
    // 5.1.8 refuses the sender's address: the recipient is not unknown.
    let sender: &str = &fixture("report-readings-that-other-mtas-need-sender.eml");
    let got = text_recipients(sender);
    assert_eq!(got[0].0, "ann@example.jp");
    assert!(!got[0].2, "a refused sender is no bad recipient: {got:?}");
}

#[test]
fn a_vague_report_status_yields_to_the_servers_own_words_for_that_recipient() {
    let report = |text: &str, fields: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example\r\nSubject: Delivery status notification\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\n{text}--b\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.example\r\n\r\n{fields}--b--\r\n"
        )
    };
    // OpenSMTPD: one line per recipient, its code in it; the DSN says 5.0.0 for both.
    let opensmtpd = report(
        "An error has occurred while attempting to deliver a message for\r\n\
the following list of recipients:\r\n\r\n\
gone@example.net: 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown\r\n\
full@example.net: 552 5.2.2 <full@example.net>: Recipient address rejected: Mailbox full\r\n\r\n",
        "Final-Recipient: rfc822; gone@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\n\r\n\
Final-Recipient: rfc822; full@example.net\r\nAction: failed\r\nStatus: 5.0.0\r\n",
    );
    let Class::Bounce(b) = class_of(&opensmtpd).class else {
        panic!("a bounce")
    };
    let got: Vec<_> = b
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.status.as_deref(), r.reason, r.hard))
        .collect();
    assert_eq!(
        got,
        [
            (
                "gone@example.net",
                Some("5.1.1"),
                BounceReason::UserUnknown,
                true
            ),
            (
                "full@example.net",
                Some("5.2.2"),
                BounceReason::MailboxFull,
                false
            ),
        ]
    );
    // The most specific of the codes a diagnostic gives.
    let ses = report(
        "The following message to <ann@example.jp> was undeliverable.\r\n",
        "Final-Recipient: rfc822;ann@example.jp\r\nAction: failed\r\nStatus: 5.0.0 (permanent failure)\r\n\
Diagnostic-Code: smtp; 5.1.0 - Unknown address error 550-'5.2.2 <ann@example.jp>... Mailbox Full'\r\n",
    );
    assert_eq!(
        text_recipients(&ses),
        [(
            "ann@example.jp".to_string(),
            Some("5.2.2".to_string()),
            false
        )]
    );
}

#[test]
fn plain_text_bounces_name_each_recipient_with_its_own_status() {
    let qmail: &str =
        &fixture("plain-text-bounces-name-each-recipient-with-its-own-status-qmail.eml");
    assert_eq!(
        text_recipients(qmail),
        [
            (
                "gone@example.jp".to_string(),
                Some("5.1.1".to_string()),
                true
            ),
            (
                "full@example.jp".to_string(),
                Some("5.2.2".to_string()),
                false
            ),
        ]
    );
    let exim: &str =
        &fixture("plain-text-bounces-name-each-recipient-with-its-own-status-exim.eml");
    assert_eq!(
        text_recipients(exim),
        [(
            "kijitora@example.ed.jp".to_string(),
            Some("5.7.0".to_string()),
            false
        )]
    );
    // A daemon whose From has no address, naming the recipient in a sentence.
    let dma: &str = &fixture("plain-text-bounces-name-each-recipient-with-its-own-status-dma.eml");
    for (line, want) in [
        ("   * kijitora@example.com", "kijitora@example.com"),
        (
            ">>> kijitora@example.org <kijitora@example.org>",
            "kijitora@example.org",
        ),
        (
            "kijitora@example.co.jp [User unknown]",
            "kijitora@example.co.jp",
        ),
        (
            "kijitora@example.com<mailto:kijitora@example.com>",
            "kijitora@example.com",
        ),
        ("Unknown user: kijitora@example.com", "kijitora@example.com"),
        (
            "User's mailbox is full: <full@example.jp>",
            "full@example.jp",
        ),
    ] {
        let raw = format!(
            "From: MAILER-DAEMON@mx.example\r\nSubject: Undeliverable Mail\r\n\r\nSorry.\r\n{line}\r\n"
        );
        let got = text_recipients(&raw);
        assert_eq!(got.first().map(|r| r.0.as_str()), Some(want), "{line}");
    }
    // Quoted headers name no recipient.
    let quoted: &str =
        &fixture("plain-text-bounces-name-each-recipient-with-its-own-status-quoted.eml");
    assert!(text_recipients(quoted).is_empty());
    assert_eq!(
        text_recipients(dma),
        [(
            "who@google.example.com".to_string(),
            Some("5.1.1".to_string()),
            true
        )]
    );
}

#[test]
fn auto_submitted_other_than_no_is_an_auto_reply() {
    assert_eq!(
        class_of("From: a@b.c\r\nAuto-Submitted: auto-replied (vacation)\r\n\r\nx").class,
        Class::AutoReply
    );
    assert_eq!(
        class_of("From: a@b.c\r\nAuto-Submitted: no\r\n\r\nx").class,
        Class::Normal
    );
}

#[test]
fn exchange_suppress_header_alone_is_not_an_auto_reply() {
    assert_eq!(
        class_of("From: a@b.c\r\nX-Auto-Response-Suppress: All\r\n\r\nx").class,
        Class::Normal
    );
    let both: &str = &fixture("exchange-suppress-header-alone-is-not-an-auto-reply-both.eml");
    assert_eq!(class_of(both).rule, "exchange-inbox-rules-loop");
}

#[test]
fn precedence_bulk_is_bulk_list_is_list() {
    for bulk in ["bulk", "junk"] {
        let raw = format!("From: a@b.c\r\nPrecedence: {bulk}\r\n\r\nx");
        assert_eq!(class_of(&raw).class, Class::Bulk, "{bulk}");
    }
    // A person's post through Mailman or Google Groups.
    assert_eq!(
        class_of("From: a@b.c\r\nList-Id: <dev.example.org>\r\nPrecedence: bulk\r\n\r\nx").class,
        Class::List
    );
    assert_eq!(
        class_of("From: a@b.c\r\nPrecedence: bulk\r\nAuto-Submitted: auto-replied\r\n\r\nx").class,
        Class::AutoReply
    );
    assert_eq!(
        class_of("From: a@b.c\r\nPrecedence: list\r\n\r\nx").class,
        Class::List
    );
    assert_eq!(
        class_of("From: a@b.c\r\nList-Id: <dev.example.org>\r\n\r\nx").class,
        Class::List
    );
}

#[test]
fn rfc3464_report_yields_recipients_and_the_original_message_id() {
    let raw: &str =
        &fixture("rfc3464-report-yields-recipients-and-the-original-message-id-raw.eml");
    let Classification {
        class: Class::Bounce(b),
        rule,
    } = class_of(raw)
    else {
        panic!("a bounce")
    };
    assert_eq!(rule, "delivery-status");
    assert_eq!(
        b.original_message_id.as_deref(),
        Some("out-1@in.acme.example")
    );
    assert_eq!(b.recipients.len(), 1);
    let r = &b.recipients[0];
    assert_eq!(r.address, "gone@customer.example");
    assert_eq!(r.status.as_deref(), Some("5.1.1"));
    assert!(r.hard);
    assert_eq!(r.diagnostic.as_deref(), Some("550 5.1.1 no such user"));
}

#[test]
fn complaint_addresses_are_read_in_every_form() {
    for field in [
        "Original-Rcpt-To: <Ann@Customer.example>",
        "Original-Rcpt-To: rfc822; ann@customer.example",
        "Original-Rcpt-To: rfc822;<ann@customer.example>",
        "Original-Rcpt-To: Ann Buyer <ann@customer.example>",
        "Removal-Recipient: ann@customer.example",
    ] {
        let raw = format!(
            "From: fbl@isp.example\r\nTo: sales@localhost\r\nSubject: FBL\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n\
--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: x/1\r\nVersion: 1\r\n{field}\r\n\r\n--b--\r\n"
        );
        assert_eq!(
            class_of(&raw).class,
            Class::Complaint {
                about: Some("ann@customer.example".into())
            },
            "{field}"
        );
    }
}

#[test]
fn loop_header_wins() {
    assert_eq!(
        class_of("From: a@b.c\r\nX-Emailin-Loop: 1\r\nPrecedence: bulk\r\n\r\nx").class,
        Class::Loop
    );
}

#[test]
fn words_alone_say_a_recipient_does_not_exist_and_the_status_is_marked_inferred() {
    let raw: &str = &fixture(
        "words-alone-say-a-recipient-does-not-exist-and-the-status-is-marked-inferred-raw.eml",
    );
    let got = bounce_recipients(raw);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].reason, BounceReason::UserUnknown);
    assert!(got[0].hard, "{got:?}");
    assert_eq!(got[0].status.as_deref(), Some("5.0.911"));
    assert!(got[0].status_inferred);
}

#[test]
fn a_stated_status_is_never_replaced_by_an_inferred_one() {
    for raw in [
        "From: MAILER-DAEMON@mx.example\r\nTo: sales@localhost\r\nSubject: Returned mail\r\n\r\n\
<gone@example.org>: host mx said: 550 5.1.2 Host unknown, user does not exist\r\n",
        "From: MAILER-DAEMON@mx.example\r\nTo: sales@localhost\r\nSubject: Returned mail\r\n\r\n\
Delivery to gone@example.org failed: no such mailbox.\r\n\r\nStatus: 5.1.2\r\n",
    ] {
        let got = bounce_recipients(raw);
        assert_eq!(got[0].status.as_deref(), Some("5.1.2"), "{got:?}");
        assert!(!got[0].status_inferred, "{got:?}");
    }
}

#[test]
fn a_bounce_quoting_the_originals_headers_inline_names_its_message_id() {
    let raw: &str =
        &fixture("a-bounce-quoting-the-originals-headers-inline-names-its-message-id-raw.eml");
    let Class::Bounce(b) = class_of(raw).class else {
        panic!("a bounce")
    };
    assert_eq!(b.original_message_id.as_deref(), Some("q1@x"));
}
