//! The static UI (`ui/` in the repository) at `/`, with the `config.json` it starts from.
//!
//! Debug builds read the files from `ui/` at every request (edit and reload); release builds
//! carry them in the binary.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

#[derive(rust_embed::Embed)]
#[folder = "$CARGO_MANIFEST_DIR/../../ui/"]
struct UiFiles;

/// What the UI reads from `/config.json` before anything else (on AWS the deploy writes the same
/// document next to the files).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UiConfig {
    /// Where the API is, relative to the UI's origin or absolute.
    pub api_base: String,
    pub auth: UiAuth,
}

/// How people sign in to the UI.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "mode", rename_all = "camelCase")]
pub enum UiAuth {
    /// The API token, from the `#token=` fragment of the URL hunter-local prints.
    Token,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            api_base: "/api/v1".to_owned(),
            auth: UiAuth::Token,
        }
    }
}

/// `/config.json` and the UI's files; everything under `/api/` that the API did not answer is
/// the API's JSON 404.
pub fn router(config: UiConfig) -> Router {
    Router::new()
        .route("/config.json", get(config_json))
        .fallback(asset)
        .with_state(config)
}

async fn config_json(State(config): State<UiConfig>) -> Response {
    let mut response = axum::Json(config).into_response();
    secure(response.headers_mut());
    response
}

async fn asset(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if path == "/api" || path.starts_with("/api/") {
        return http_api::not_found(format!("no route {path}")).into_response();
    }
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    let name = match path.trim_start_matches('/') {
        "" => "index.html",
        name => name,
    };
    let Some(file) = UiFiles::get(name) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, file.metadata.mimetype().to_owned())],
            file.data.into_owned(),
        )
            .into_response()
    };
    let out = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, etag);
    }
    // No build step, so no content hashes in file names: every load revalidates (cheap: ETag).
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(out);
    response
}

/// What a browser is allowed to do with the UI: its own scripts and styles only, no framing, no
/// referrer (the token travels in the fragment, which is never sent, but no need to test that).
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'; object-src 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
