//! `GET /api/v1/attachments/{id}`: an attachment's exact bytes, with its
//! type and a `Content-Disposition` browsers and mail tools read safely.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, ApiResult, ApiState, docs, path_id};
use crate::store::{Store, StoredAttachment};

/// Types a browser may show in place: raster images only. Anything else
/// (HTML, SVG, PDF …) is offered as a download, so no attachment runs as
/// a page of this service.
const SHOWN_IN_PLACE: &[&str] = &["image/png", "image/jpeg", "image/gif", "image/webp"];

/// An attachment's bytes.
#[utoipa::path(get, path = "/api/v1/attachments/{id}", params(("id" = Uuid, Path)), responses(
    (status = 200, description = "the exact bytes, with Content-Type and Content-Disposition"),
    docs::Unauthorized,
    docs::NotFound,
))]
pub async fn get_attachment(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let found = state.store.attachment(path_id(&id)?).await?;
    found
        .map(attachment_response)
        .ok_or(ApiError::NotFound("attachment not found"))
}

/// Looks an attachment up for the web UI's route.
pub async fn find(store: &dyn Store, id: uuid::Uuid) -> ApiResult<Option<Response>> {
    Ok(store.attachment(id).await?.map(attachment_response))
}

/// The response serving `a`: its type (as a safe `type/subtype`), a
/// disposition with its name (RFC 6266: an ASCII `filename` and the exact
/// UTF-8 name in `filename*`), no sniffing and no active content.
pub fn attachment_response(a: StoredAttachment) -> Response {
    let content_type = safe_type(&a.view.content_type);
    let kind = if SHOWN_IN_PLACE.contains(&content_type.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    let name = a.view.name.as_deref().map(file_name).unwrap_or_default();
    let name = if name.is_empty() {
        format!("attachment-{}", a.view.id.simple())
    } else {
        name
    };
    let disposition = content_disposition(kind, &name);
    let header = |v: &str| {
        HeaderValue::from_str(v)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
    };
    (
        [
            (header::CONTENT_TYPE, header(&content_type)),
            (header::CONTENT_DISPOSITION, header(&disposition)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; sandbox"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            ),
        ],
        a.bytes,
    )
        .into_response()
}

/// `html` with each `cid:` URL naming one of `attachments` replaced by
/// `url(attachment)` (RFC 2392; the Content-ID may be percent-encoded).
pub fn rewrite_cids(
    html: &str,
    attachments: &[crate::store::AttachmentView],
    url: impl Fn(&crate::store::AttachmentView) -> String,
) -> String {
    let mut out = html.to_string();
    // Longest first: `cid:logo@x` must not rewrite part of `cid:logo@xy`.
    let mut attachments: Vec<_> = attachments.iter().collect();
    attachments.sort_by_key(|a| std::cmp::Reverse(a.content_id.as_deref().map_or(0, str::len)));
    for a in attachments {
        let Some(cid) = a.content_id.as_deref() else {
            continue;
        };
        let target = url(a);
        // RFC 3986 lets a URL keep its sub-delimiters, `@` and unreserved.
        for form in [cid.to_string(), percent_encoded(cid, b"-._~@!$&'()*+,;=")] {
            for prefix in ["cid:", "CID:", "Cid:"] {
                out = out.replace(&format!("{prefix}{form}"), &target);
            }
        }
    }
    out
}

/// `text` with every byte but ASCII letters, digits and `keep` as `%XX`.
fn percent_encoded(text: &str, keep: &[u8]) -> String {
    let mut encoded = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

/// `type/subtype` when it is one, else `application/octet-stream`.
fn safe_type(content_type: &str) -> String {
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match content_type.trim().split_once('/') {
        Some((t, s)) if ok(t) && ok(s) => content_type.trim().to_ascii_lowercase(),
        _ => "application/octet-stream".to_string(),
    }
}

/// The last path segment of a sender's name, without control characters.
fn file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = last.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().trim_start_matches('.');
    clean.chars().take(200).collect()
}

/// `inline; filename="a.pdf"; filename*=UTF-8''a.pdf` for `name`: the ASCII
/// fallback replaces what a quoted string cannot carry.
pub fn content_disposition(kind: &str, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' && c != '%' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // RFC 8187's attr-char.
    let encoded = percent_encoded(name, b"!#$&+-.^_`|~");
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_carry_japanese_names_and_a_safe_fallback() {
        assert_eq!(
            content_disposition("attachment", "見積書.pdf"),
            "attachment; filename=\"___.pdf\"; filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8.pdf"
        );
        assert_eq!(
            content_disposition("inline", "a \"b\".png"),
            "inline; filename=\"a _b_.png\"; filename*=UTF-8''a%20%22b%22.png"
        );
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("C:\\x\\..evil.exe"), "evil.exe");
        assert_eq!(safe_type("text/html\r\nX: y"), "application/octet-stream");
        assert_eq!(safe_type("Image/PNG"), "image/png");
    }
}
