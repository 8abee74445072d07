//! Reading sender-authentication verdicts: the DMARC result of an
//! `Authentication-Results` header, believed only from the named authserv-id.

/// The DMARC verdict of an `Authentication-Results` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dmarc {
    Pass,
    Fail,
    /// none, temperror, permerror, or no dmarc= entry.
    Other,
}

/// The DMARC verdict in `results` when its authserv-id is `authserv_id`
/// (`None` for someone else's header, which proves nothing).
pub fn dmarc_verdict(results: &str, authserv_id: &str) -> Option<Dmarc> {
    let mut parts = results.split(';');
    let id = parts.next()?.split_whitespace().next()?;
    if !id.eq_ignore_ascii_case(authserv_id.trim()) {
        return None;
    }
    for part in parts {
        let Some((method, value)) = part.trim().split_once('=') else {
            continue;
        };
        if method.trim().eq_ignore_ascii_case("dmarc") {
            let result = value.split_whitespace().next().unwrap_or_default();
            return Some(match result.to_ascii_lowercase().as_str() {
                "pass" => Dmarc::Pass,
                "fail" => Dmarc::Fail,
                _ => Dmarc::Other,
            });
        }
    }
    Some(Dmarc::Other)
}

/// The verdict of the topmost `Authentication-Results` header in `headers`
/// (lowercase names, top first)
/// whose authserv-id is `authserv_id` (the mailbox provider, which removes
/// such headers a sender forged).
pub fn trusted_header_verdict(headers: &[(String, String)], authserv_id: &str) -> Option<Dmarc> {
    headers
        .iter()
        .filter(|(name, _)| name == "authentication-results")
        .find_map(|(_, value)| dmarc_verdict(value, authserv_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_authserv_id_is_believed() {
        let ar = "mx.google.com; dkim=pass header.i=@a.test; spf=pass; dmarc=fail (p=REJECT) header.from=a.test";
        assert_eq!(dmarc_verdict(ar, "mx.google.com"), Some(Dmarc::Fail));
        assert_eq!(dmarc_verdict(ar, "MX.GOOGLE.COM"), Some(Dmarc::Fail));
        assert_eq!(dmarc_verdict(ar, "evil.test"), None);
        assert_eq!(
            dmarc_verdict("mx.google.com; dmarc=pass", "mx.google.com"),
            Some(Dmarc::Pass)
        );
        assert_eq!(
            dmarc_verdict("mx.google.com; none", "mx.google.com"),
            Some(Dmarc::Other)
        );
        assert_eq!(dmarc_verdict("", "mx.google.com"), None);
    }

    #[test]
    fn polled_mail_believes_its_provider_only() {
        let header = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        let headers = [
            header(
                "authentication-results",
                "mx.provider.test; dkim=none; dmarc=fail header.from=bank.test",
            ),
            header(
                "authentication-results",
                "mx.provider.test; dmarc=pass (forged further down)",
            ),
            header("from", "a@bank.test"),
        ];
        assert_eq!(
            trusted_header_verdict(&headers, "mx.provider.test"),
            Some(Dmarc::Fail)
        );
        assert_eq!(trusted_header_verdict(&headers, "other.test"), None);
        assert_eq!(
            trusted_header_verdict(&headers[2..], "mx.provider.test"),
            None
        );
    }
}
