//! One row per rule of `decide`, over the messages in `tests/fixtures/decide/`.

use super::*;
use crate::domain::{
    AliasConfig, AuthPolicy, BlockList, Directory, Dmarc, EmailAddress, PipelineConfig,
    ReopenRuleConfig, StageConfig, StageKind,
};
use crate::ingest::QuarantineReason;
use crate::ingest::{classify, parse};

/// The class of a fixture, as processing would find it.
fn class_of(fixture: &str) -> Class {
    let path = format!(
        "{}/tests/fixtures/decide/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mail = parse(&raw).expect("parses");
    classify(&mail, false).class
}

/// Sales: New, Won (closed), Lost (closed, no reopen rule); the alias
/// reopens Won to New, for 30 days after it closed.
fn sales() -> Directory {
    let stage = |name: &str, kind| StageConfig {
        name: name.into(),
        kind,
    };
    let pipeline = PipelineConfig {
        name: "Sales".into(),
        stages: vec![
            stage("New", StageKind::Open),
            stage("Won", StageKind::Closed),
            stage("Lost", StageKind::Closed),
        ],
    };
    let alias = AliasConfig {
        address: "sales@in.example".into(),
        name: "Sales".into(),
        pipeline: "Sales".into(),
        owner: None,
        tags: vec![],
        enabled: true,
        reopen_on_reply: true,
        reopen: vec![ReopenRuleConfig {
            from: "Won".into(),
            to: "New".into(),
        }],
        also: vec![],
        auth: AuthPolicy::Monitor,
        follow_up_days: Some(30),
    };
    Directory::from_config(&[pipeline], &[alias])
}

/// Where the record a key found sits (for a day, or this many days).
#[derive(Clone, Copy)]
enum Found {
    Nothing,
    InStage(&'static str),
    InStageFor(&'static str, i64),
}

struct Row {
    rule: &'static str,
    fixture: &'static str,
    key: fn() -> ThreadKey,
    found: Found,
    unauthenticated: bool,
    untrusted: UntrustedThread,
    sender_on_record: bool,
    /// The expected action, by stage names: `create New`, `create New related`,
    /// `create New follow-up`, `append`, `append reopen New`, `ignore auto-reply`,
    /// `ignore bounce`.
    want: &'static str,
    want_rule: &'static str,
    want_refused: Option<Refusal>,
}

fn in_reply_to() -> ThreadKey {
    ThreadKey::InReplyTo("r1@in.example".into())
}

fn token() -> ThreadKey {
    ThreadKey::Token("abc".into())
}

const MERGE: UntrustedThread = UntrustedThread::Merge;
const RELATED: UntrustedThread = UntrustedThread::Related;

#[rustfmt::skip]
const ROWS: &[Row] = &[
    Row { rule: "4: no thread, a new record in the first open stage", fixture: "new-mail.eml", key: in_reply_to, found: Found::Nothing, unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "create New", want_rule: "new", want_refused: None },
    Row { rule: "5: a reply joins its open record", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("New"), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "5: a reply reopens a record closed in a stage the alias's rule covers", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("Won"), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append reopen New", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "5: a closed stage without a rule stays closed", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("Lost"), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "5: an auto-reply joins its thread but never reopens", fixture: "auto-reply.eml", key: in_reply_to, found: Found::InStage("Won"), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "3: an auto-reply of no thread creates nothing", fixture: "auto-reply.eml", key: in_reply_to, found: Found::Nothing, unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "ignore auto-reply", want_rule: "new", want_refused: None },
    Row { rule: "3: a bounce of no thread creates nothing", fixture: "bounce.eml", key: in_reply_to, found: Found::Nothing, unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "ignore bounce", want_rule: "new", want_refused: None },
    Row { rule: "1: a DMARC failure never joins, even by headers", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("New"), unauthenticated: true, untrusted: MERGE, sender_on_record: true, want: "create New related", want_rule: "related", want_refused: Some(Refusal::DmarcFail) },
    Row { rule: "1: a DMARC failure never joins, even by reply token", fixture: "reply.eml", key: token, found: Found::InStage("Won"), unauthenticated: true, untrusted: MERGE, sender_on_record: true, want: "create New related", want_rule: "related", want_refused: Some(Refusal::DmarcFail) },
    Row { rule: "2: a stranger naming a thread by headers starts a related record", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("New"), unauthenticated: false, untrusted: RELATED, sender_on_record: false, want: "create New related", want_rule: "related", want_refused: Some(Refusal::NotAParticipant) },
    Row { rule: "2: a participant naming it by headers joins", fixture: "reply.eml", key: in_reply_to, found: Found::InStage("Won"), unauthenticated: false, untrusted: RELATED, sender_on_record: true, want: "append reopen New", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "2: a reply token is proof enough", fixture: "reply.eml", key: token, found: Found::InStage("New"), unauthenticated: false, untrusted: RELATED, sender_on_record: false, want: "append", want_rule: "reply-token", want_refused: None },
    Row { rule: "5: a reply to a record closed longer than the follow-up window starts a new one", fixture: "reply.eml", key: in_reply_to, found: Found::InStageFor("Won", 31), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "create New follow-up", want_rule: "follow-up", want_refused: None },
    Row { rule: "5: within the window it reopens", fixture: "reply.eml", key: in_reply_to, found: Found::InStageFor("Won", 29), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append reopen New", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "5: an auto-reply to a long-closed record joins it, closed", fixture: "auto-reply.eml", key: in_reply_to, found: Found::InStageFor("Won", 31), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "5: an open record is joined at any age", fixture: "reply.eml", key: in_reply_to, found: Found::InStageFor("New", 400), unauthenticated: false, untrusted: MERGE, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
    Row { rule: "2: machine mail is not held to it", fixture: "auto-reply.eml", key: in_reply_to, found: Found::InStage("New"), unauthenticated: false, untrusted: RELATED, sender_on_record: false, want: "append", want_rule: "in-reply-to", want_refused: None },
];

#[test]
fn each_rule_decides_as_its_row_says() {
    let directory = sales();
    let alias = directory
        .alias_for(&EmailAddress::parse("sales@in.example").unwrap())
        .unwrap()
        .0;
    let pipeline = directory.pipeline(alias.pipeline_id).unwrap();
    let stage = |name: &str| pipeline.stages.iter().find(|s| s.name == name).unwrap().id;
    let named = |id: Uuid| {
        pipeline
            .stages
            .iter()
            .find(|s| s.id == id)
            .map_or("?", |s| s.name.as_str())
    };
    let now = chrono::Utc::now();
    for row in ROWS {
        let class = class_of(row.fixture);
        let in_stage = |name, days| RecordState {
            id: Uuid::now_v7(),
            number: 7,
            pipeline_id: pipeline.id,
            stage_id: stage(name),
            stage_since: Some(now - chrono::Duration::days(days)),
        };
        let record = match row.found {
            Found::Nothing => None,
            Found::InStage(name) => Some(in_stage(name, 1)),
            Found::InStageFor(name, days) => Some(in_stage(name, days)),
        };
        let mut facts = Facts {
            class: &class,
            from_ambiguous: false,
            unauthenticated: row.unauthenticated,
            hit: record.clone().map(|r| ((row.key)(), r)),
            sender_on_record: None,
            now,
        };
        if must_check_sender(&facts, row.untrusted) {
            facts.sender_on_record = Some(row.sender_on_record);
        }
        let rules = Rules {
            pipeline,
            alias,
            untrusted_thread: row.untrusted,
        };
        let decision = decide(facts, rules).unwrap();
        let got = match &decision.action {
            Action::Ignore(IgnoreReason::AutoReply) => "ignore auto-reply".to_owned(),
            Action::Ignore(IgnoreReason::Bounce) => "ignore bounce".to_owned(),
            Action::Ignore(other) => format!("ignore {other:?}"),
            Action::Create {
                stage_id,
                related,
                follow_up_of,
            } => {
                assert_eq!(
                    *related,
                    record.as_ref().filter(|_| related.is_some()).map(|r| r.id)
                );
                let tail = match (related, follow_up_of) {
                    (_, Some(old)) => {
                        assert_eq!(Some(old), record.as_ref(), "{}", row.rule);
                        " follow-up"
                    }
                    (Some(_), None) => " related",
                    (None, None) => "",
                };
                format!("create {}{tail}", named(*stage_id))
            }
            Action::Append {
                record: joined,
                reopen_to,
            } => {
                assert_eq!(Some(joined), record.as_ref(), "{}", row.rule);
                match reopen_to {
                    Some(to) => format!("append reopen {}", named(*to)),
                    None => "append".to_owned(),
                }
            }
        };
        assert_eq!(got, row.want, "rule {}", row.rule);
        assert_eq!(decision.rule, row.want_rule, "rule {}", row.rule);
        assert_eq!(
            decision.refused.map(|(why, _, _)| why),
            row.want_refused,
            "rule {}",
            row.rule
        );
    }
}

#[test]
fn a_pipeline_without_an_open_stage_cannot_take_a_new_record() {
    let directory = sales();
    let alias = directory
        .alias_for(&EmailAddress::parse("sales@in.example").unwrap())
        .unwrap()
        .0;
    let mut pipeline = directory.pipeline(alias.pipeline_id).unwrap().clone();
    pipeline.stages.retain(|s| s.kind == StageKind::Closed);
    let class = class_of("new-mail.eml");
    let facts = Facts {
        class: &class,
        from_ambiguous: false,
        unauthenticated: false,
        hit: None,
        sender_on_record: None,
        now: chrono::Utc::now(),
    };
    let rules = Rules {
        pipeline: &pipeline,
        alias,
        untrusted_thread: UntrustedThread::Merge,
    };
    assert_eq!(decide(facts, rules), Err(NoOpenStage("Sales".into())));
}

#[test]
fn the_sender_is_looked_up_only_where_rule_2_applies() {
    let person = class_of("reply.eml");
    let record = RecordState {
        id: Uuid::now_v7(),
        number: 1,
        pipeline_id: Uuid::now_v7(),
        stage_id: Uuid::now_v7(),
        stage_since: None,
    };
    let facts = |key: ThreadKey, unauthenticated| Facts {
        class: &person,
        from_ambiguous: false,
        unauthenticated,
        hit: Some((key, record.clone())),
        sender_on_record: None,
        now: chrono::Utc::now(),
    };
    assert!(must_check_sender(&facts(in_reply_to(), false), RELATED));
    assert!(!must_check_sender(&facts(in_reply_to(), false), MERGE));
    assert!(!must_check_sender(&facts(token(), false), RELATED));
    assert!(!must_check_sender(&facts(in_reply_to(), true), RELATED));
    let ambiguous = Facts {
        from_ambiguous: true,
        ..facts(in_reply_to(), false)
    };
    assert!(must_check_sender(&ambiguous, MERGE));
}

fn message(class: &Class) -> Message<'_> {
    Message {
        class,
        from: Some(("ann@customer.example", "Ann")),
        from_ambiguous: false,
        envelope_from: Some("bounces@customer.example"),
        envelope_sender: Some("bounces@customer.example"),
        released: false,
        dmarc: None,
        enforced: false,
    }
}

fn stopped(judgement: &Judgement<'_>) -> Option<Outcome> {
    match &judgement.verdict {
        Verdict::Stop { outcome, .. } => Some(outcome.clone()),
        Verdict::Go { .. } => None,
    }
}

#[test]
fn the_whole_message_is_judged_before_its_pipelines() {
    let person = class_of("new-mail.eml");
    let none = BlockList::new::<&str>(&[]);
    let blocked = BlockList::new(&["customer.example"]);
    let quarantined = |reason| Some(Outcome::Quarantined(reason));

    // A person's mail goes on, its From as the contact.
    let go = judge(message(&person), &none);
    assert_eq!(
        go.verdict,
        Verdict::Go {
            contact: Some(("ann@customer.example", "Ann")),
            dmarc_failed: false
        }
    );
    // Blocked (From or envelope), unless released.
    assert_eq!(
        stopped(&judge(message(&person), &blocked)),
        quarantined(QuarantineReason::Blocked)
    );
    let released = Message {
        released: true,
        ..message(&person)
    };
    assert_eq!(stopped(&judge(released, &blocked)), None);
    // DMARC: quarantined only where an alias enforces it; otherwise noted.
    let failed = Message {
        dmarc: Some(Dmarc::Fail),
        ..message(&person)
    };
    assert_eq!(
        stopped(&judge(
            Message {
                enforced: true,
                ..failed
            },
            &none
        )),
        quarantined(QuarantineReason::DmarcFail)
    );
    assert!(matches!(
        judge(failed, &none).verdict,
        Verdict::Go {
            dmarc_failed: true,
            ..
        }
    ));
    let ambiguous = Message {
        from_ambiguous: true,
        enforced: true,
        ..message(&person)
    };
    assert_eq!(
        stopped(&judge(ambiguous, &none)),
        quarantined(QuarantineReason::AmbiguousFrom)
    );
    // Our own mail back, and complaints, stop; a complaint marks its contact.
    assert_eq!(
        stopped(&judge(message(&Class::Loop), &none)),
        Some(Outcome::Ignored(IgnoreReason::Loop))
    );
    let complaint = Class::Complaint {
        about: Some("Kim@Customer.example".into()),
    };
    let judged = judge(message(&complaint), &none);
    assert_eq!(
        stopped(&judged),
        Some(Outcome::Ignored(IgnoreReason::Complaint))
    );
    assert_eq!(
        judged.marks,
        [("kim@customer.example".to_owned(), ContactMark::Complained)]
    );
    // A hard bounce marks its recipient and goes on to its pipelines.
    let bounce = class_of("bounce.eml");
    let judged = judge(message(&bounce), &none);
    assert_eq!(stopped(&judged), None);
    assert_eq!(
        judged.marks,
        [(
            "gone@customer.example".to_owned(),
            ContactMark::Bounced {
                status: "5.1.1".into()
            }
        )]
    );
    // The contact: the From, else the envelope sender, never a role address.
    let no_from = Message {
        from: None,
        ..message(&person)
    };
    assert!(matches!(
        judge(no_from, &none).verdict,
        Verdict::Go {
            contact: Some(("bounces@customer.example", "")),
            ..
        }
    ));
    let daemon = Message {
        from: Some(("MAILER-DAEMON@mx.example", "")),
        ..message(&person)
    };
    assert!(matches!(
        judge(daemon, &none).verdict,
        Verdict::Go { contact: None, .. }
    ));
}
