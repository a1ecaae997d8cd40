//! The kiosk page's files, compiled into the binary (no build step, nothing fetched): the
//! page at `/kiosk`, its script and style at `/kiosk/kiosk.js` and `/kiosk/kiosk.css`.
//! Served with a content security policy that lets the page talk to this endpoint only.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("kiosk/index.html");
const KIOSK_JS: &str = include_str!("kiosk/kiosk.js");
const KIOSK_CSS: &str = include_str!("kiosk/kiosk.css");

/// The page's policy: its own files and its own WebSocket, nothing else; never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// `GET /kiosk`.
pub async fn page() -> Response {
    served("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /kiosk/{file}`.
pub async fn file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "kiosk.js" => served("text/javascript; charset=utf-8", KIOSK_JS),
        "kiosk.css" => served("text/css; charset=utf-8", KIOSK_CSS),
        _ => (StatusCode::NOT_FOUND, "no such kiosk file\n").into_response(),
    }
}

fn served(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}
