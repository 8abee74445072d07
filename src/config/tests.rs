//! Settings: defaults, unknown keys, secrets and the semantic checks.

use super::*;

#[test]
fn compiled_in_defaults_are_valid_and_ship_two_demo_pipelines() {
    let s = Settings::defaults().expect("defaults");
    let names: Vec<_> = s.pipelines.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Sales", "Service"]);
    assert_eq!(s.aliases.len(), 2);
    assert_eq!(s.smtp.listen.port(), 2525);
    assert!(s.database.url.starts_with("sqlite://"));
}

#[test]
fn unknown_key_is_an_error_that_names_it() {
    let err = Settings::from_figment(
        Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string("[smtp]\nlisten_port = 25\n")),
    )
    .expect_err("unknown key must fail");
    assert!(err.to_string().contains("listen_port"), "{err}");
}

#[test]
fn alias_pointing_at_a_missing_pipeline_is_rejected() {
    let mut s = Settings::defaults().expect("defaults");
    s.aliases[0].pipeline = "Nope".into();
    let err = s.validate().expect_err("must fail");
    assert!(err.to_string().contains("Nope"), "{err}");
}

#[test]
fn names_and_tags_over_their_length_are_refused_at_start() {
    let mut s = Settings::defaults().expect("defaults");
    s.aliases[0].tags.push("t".repeat(65));
    let err = s.validate().expect_err("long tag").to_string();
    assert!(err.contains("tags[1]: at most 64 characters"), "{err}");
    let mut s = Settings::defaults().expect("defaults");
    s.pipelines[1].stages[0].name = "s".repeat(201);
    let err = s.validate().expect_err("long stage").to_string();
    assert!(err.contains("stage: at most 200 characters"), "{err}");
    let mut s = Settings::defaults().expect("defaults");
    s.http.max_body_bytes = 10;
    assert!(s.validate().is_err());
}

#[test]
fn imap_password_is_redacted_everywhere() {
    let account: ImapAccountConfig = toml_account("password = \"hunter2\"");
    assert!(!format!("{account:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&account).unwrap().contains("hunter2"));
    assert_eq!(account.resolve_password().unwrap().expose(), "hunter2");
    assert_eq!(account.port(), 993);
    assert_eq!(account.after_store(), AfterStore::Keep);
}

#[test]
fn imap_plaintext_only_on_loopback() {
    let mut s = Settings::defaults().expect("defaults");
    let mut account = toml_account("password = \"x\"\ntls = \"none\"");
    s.imap.push(account.clone());
    assert!(s.validate().is_err());
    account.host = "127.0.0.1".into();
    s.imap = vec![account];
    s.validate().expect("loopback plaintext is fine");
}

#[test]
fn after_store_forms() {
    assert_eq!(
        AfterStore::parse("move:Processed"),
        Some(AfterStore::Move("Processed".into()))
    );
    assert_eq!(AfterStore::parse("move:"), None);
    assert_eq!(AfterStore::parse("archive"), None);
}

fn toml_account(extra: &str) -> ImapAccountConfig {
    Figment::from(Toml::string(&format!(
        "name = \"support\"\nhost = \"imap.example.com\"\nusername = \"u\"\nalias = \"service@localhost\"\n{extra}\n"
    )))
    .extract()
    .expect("account")
}

#[test]
fn oauth2_accounts_are_checked_for_what_their_grant_needs() {
    let cc = "auth = \"oauth2\"\n[oauth2]\ngrant = \"client_credentials\"\n\
token_url = \"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token\"\ntenant = \"contoso\"\n\
client_id = \"c\"\nscopes = [\"https://outlook.office365.com/.default\"]\n";
    let check = |extra: &str, key: &str| {
        let mut s = Settings::defaults().expect("defaults");
        s.imap = vec![toml_account(extra)];
        s.oauth.key = Secret::new(key);
        s.validate().map_err(|e| e.to_string())
    };
    let err = check(cc, "").unwrap_err();
    assert!(err.contains("needs a client secret"), "{err}");
    check(&format!("{cc}client_secret = \"s\"\n"), "").expect("valid");
    let account = toml_account(&format!("{cc}client_secret = \"s\"\n"));
    assert_eq!(
        account.oauth2.unwrap().token_endpoint(),
        "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
    );

    let rt = cc.replace("client_credentials", "refresh_token");
    let err = check(&rt, "").unwrap_err();
    assert!(err.contains("set [oauth] key"), "{err}");
    check(&rt, "k").expect("valid with a key");
    let err = check(&format!("password = \"p\"\n{rt}"), "k").unwrap_err();
    assert!(err.contains("takes no password"), "{err}");
    let err = check("auth = \"oauth2\"\n", "k").unwrap_err();
    assert!(err.contains("needs [imap.oauth2]"), "{err}");
    let err = check(&rt.replace("https://login", "http://login"), "k").unwrap_err();
    assert!(err.contains("must be https://"), "{err}");

    let mut s = Settings::defaults().expect("defaults");
    s.oauth.key = Secret::new("c2hvcnQ=");
    let err = s.oauth.resolve_key().unwrap_err().to_string();
    assert!(err.contains("must be 32 bytes"), "{err}");
}

#[test]
fn reopen_rule_from_an_open_stage_is_rejected() {
    let mut s = Settings::defaults().expect("defaults");
    s.aliases[1].reopen[0].from = "Open".into();
    assert!(s.validate().is_err());
}
