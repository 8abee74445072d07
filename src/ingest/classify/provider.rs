//! Provider notifications: Amazon SES bounce and complaint notices sent
//! by SNS to an email subscriber.

use super::*;

/// Most bytes of a notification read as JSON.
pub(super) const MAX_NOTIFICATION_BYTES: usize = 256 * 1024;

/// An Amazon SES notification sent by SNS to an email subscriber: JSON,
/// bare or inside SNS's own envelope (`"Message": "<json>"`). A bounce lists
/// its recipients with their DSN fields; a complaint names who complained.
/// Delivery notifications and anything unreadable are left to the other rules.
pub(super) fn ses_notification(mail: &ParsedMail) -> Option<Class> {
    let from_sns = mail.from.as_ref().is_some_and(|f| {
        let domain = f.address.rsplit('@').next().unwrap_or_default();
        domain == "amazonaws.com" || domain.ends_with(".amazonaws.com")
    });
    let text = mail.text.as_deref()?.trim();
    if !from_sns || !text.starts_with('{') || text.len() > MAX_NOTIFICATION_BYTES {
        return None;
    }
    // Long lines arrive folded (a line break and a space inserted); SNS's
    // unsubscribe footer follows the JSON.
    let unfolded = text.replace('\r', "").replace("\n ", "");
    let first_value = |json: &str| {
        serde_json::Deserializer::from_str(json)
            .into_iter::<serde_json::Value>()
            .next()
            .and_then(Result::ok)
    };
    let mut json = first_value(&unfolded)?;
    if let Some(inner) = json.get("Message").and_then(|m| m.as_str()) {
        json = first_value(inner)?;
    }
    let kind = json
        .get("notificationType")
        .or_else(|| json.get("eventType"))?
        .as_str()?;
    let str_of = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(|x| x.as_str())
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_string)
    };
    let listed = |section: &str, list: &str| {
        json.get(section)
            .and_then(|b| b.get(list))
            .and_then(|r| r.as_array())
            .map_or(&[][..], Vec::as_slice)
    };
    match kind {
        "Bounce" => {
            let permanent = json
                .get("bounce")
                .and_then(|b| str_of(b, "bounceType"))
                .is_some_and(|t| t == "Permanent");
            let recipients = listed("bounce", "bouncedRecipients")
                .iter()
                .take(MAX_BOUNCE_RECIPIENTS)
                .filter_map(|r| {
                    let address = str_of(r, "emailAddress")?.to_ascii_lowercase();
                    let diagnostic = str_of(r, "diagnosticCode").map(strip_address_type);
                    let status = str_of(r, "status")
                        .or_else(|| diagnostic.as_deref().and_then(first_status_code));
                    let evidence = words_of(diagnostic.as_deref().unwrap_or_default());
                    let said = Said {
                        words: &evidence,
                        local_program: false,
                    };
                    let mut failed = failed_recipient(
                        address,
                        str_of(r, "action").map(|a| a.to_ascii_lowercase()),
                        status,
                        diagnostic,
                        said,
                        None::<&LazyCell<ReportWords>>,
                    );
                    // SES says itself whether the address is worth retrying.
                    failed.hard &= permanent;
                    Some(failed)
                })
                .collect();
            let original_message_id = json
                .get("mail")
                .and_then(|m| m.get("headers"))
                .and_then(|h| h.as_array())
                .and_then(|headers| {
                    headers.iter().find_map(|h| {
                        let name = str_of(h, "name")?;
                        name.eq_ignore_ascii_case("message-id")
                            .then(|| str_of(h, "value"))
                            .flatten()
                    })
                })
                .map(|id| id.trim_matches(['<', '>']).to_string())
                .filter(|id| !id.is_empty());
            Some(Class::Bounce(Bounce {
                recipients,
                original_message_id,
            }))
        }
        "Complaint" => {
            let about = listed("complaint", "complainedRecipients")
                .first()
                .and_then(|r| str_of(r, "emailAddress"))
                .map(|a| a.to_ascii_lowercase());
            Some(Class::Complaint { about })
        }
        _ => None,
    }
}
