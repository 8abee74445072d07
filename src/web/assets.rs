//! The UI's static files, embedded in the binary and served under names
//! that carry a hash of their content, so they can be cached for a year.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::domain::sha256_hex;

struct Asset {
    /// `stem.ext` before the hash is put in: `htmx.js` → `htmx.1a2b3c4d5e.js`.
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        stem: "htmx",
        ext: "js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/htmx-2.0.11.min.js"),
    },
    Asset {
        stem: "app",
        ext: "js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        stem: "app",
        ext: "css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/app.css"),
    },
];

/// Each asset's served name, computed once.
fn names() -> &'static [String; 3] {
    static NAMES: OnceLock<[String; 3]> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS.map(|a| format!("{}.{}.{}", a.stem, &sha256_hex(a.bytes)[..10], a.ext))
    })
}

/// The URL of an asset (`"htmx.js"`, `"app.js"`, `"app.css"`).
pub fn url(name: &str) -> String {
    let found = ASSETS
        .iter()
        .zip(names().iter())
        .find(|(a, _)| name.strip_prefix(a.stem) == Some(&format!(".{}", a.ext)));
    match found {
        Some((_, served)) => format!("/assets/{served}"),
        None => format!("/assets/{name}"),
    }
}

/// `GET /assets/{name}`: the file, cached for a year (its name changes
/// with its content); 404 for any other name.
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().zip(names().iter()).find(|(_, n)| **n == name) {
        Some((asset, _)) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
