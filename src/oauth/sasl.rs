//! The SASL messages an access token is presented in.

/// `XOAUTH2` (Google, Microsoft): user and bearer token.
pub fn xoauth2(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// `OAUTHBEARER` (RFC 7628): GS2 header with the authorization identity,
/// then host, port and the bearer token.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> String {
    let user = user.replace('=', "=3D").replace(',', "=2C");
    format!("n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")
}

/// What a server's error challenge (a JSON object, RFC 7628 §3.2.2, also
/// sent for XOAUTH2) says, for people: the status and the scope it wants.
pub fn describe_failure(challenge: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(challenge).ok()?;
    let status = value.get("status").and_then(|v| v.as_str()).unwrap_or("?");
    let mut text = format!("the server refused the token (status {status}");
    if let Some(scope) = value.get("scope").and_then(|v| v.as_str()) {
        text.push_str(&format!(", it wants scope {scope:?}"));
    }
    text.push(')');
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_mechanisms() {
        assert_eq!(
            xoauth2("support@acme.test", "ya29.x"),
            "user=support@acme.test\x01auth=Bearer ya29.x\x01\x01"
        );
        assert_eq!(
            oauthbearer("a,b=c@acme.test", "imap.acme.test", 993, "t"),
            "n,a=a=2Cb=3Dc@acme.test,\x01host=imap.acme.test\x01port=993\x01auth=Bearer t\x01\x01"
        );
        assert_eq!(
            describe_failure(
                br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#
            )
            .as_deref(),
            Some(
                "the server refused the token (status 401, it wants scope \"https://mail.google.com/\")"
            )
        );
        assert_eq!(describe_failure(b"not json"), None);
    }
}
