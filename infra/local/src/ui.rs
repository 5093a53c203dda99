//! The static UI (`ui/` in the repository) at `/`, with the `config.json` it starts from.
//!
//! Debug builds read the files from `ui/` at every request (edit and reload); release builds
//! carry them in the binary.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

use hunter_core::config::{Config, ConfigError};
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
    /// Entra ID: authorization code with PKCE against `authority`.
    #[serde(rename_all = "camelCase")]
    Entra {
        /// `<authority>/authorize` and `<authority>/token`.
        authority: String,
        client_id: String,
        scopes: Vec<String>,
    },
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            api_base: "/api/v1".to_owned(),
            auth: UiAuth::Token,
        }
    }
}

impl UiConfig {
    /// Entra ID sign-in when `HUNTER_ENTRA_UI_CLIENT_ID` is set, else the API token.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let auth = match config.entra_ui()? {
            Some(entra) => UiAuth::Entra {
                authority: entra.authority,
                client_id: entra.client_id,
                scopes: entra.scope.split_whitespace().map(str::to_owned).collect(),
            },
            None => UiAuth::Token,
        };
        Ok(Self {
            auth,
            ..Self::default()
        })
    }

    /// The Content-Security-Policy of the UI: its own files only, and the sign-in authority's
    /// token endpoint for Entra ID.
    fn content_security_policy(&self) -> HeaderValue {
        let authority = match &self.auth {
            UiAuth::Entra { authority, .. } => url::Url::parse(authority)
                .ok()
                .map(|url| url.origin().ascii_serialization())
                .filter(|origin| origin != "null"),
            UiAuth::Token => None,
        };
        let connect = match authority {
            Some(origin) => format!("connect-src 'self' {origin}; "),
            None => String::new(),
        };
        HeaderValue::from_str(&format!(
            "default-src 'self'; {connect}img-src 'self' data:; frame-ancestors 'none'; \
             base-uri 'none'; form-action 'self'; object-src 'none'"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'"))
    }
}

#[derive(Debug)]
struct UiState {
    config: UiConfig,
    csp: HeaderValue,
}

/// `/config.json` and the UI's files; everything under `/api/` that the API did not answer is
/// the API's JSON 404.
pub fn router(config: UiConfig) -> Router {
    let state = Arc::new(UiState {
        csp: config.content_security_policy(),
        config,
    });
    Router::new()
        .route("/config.json", get(config_json))
        .fallback(asset)
        .with_state(state)
}

async fn config_json(State(ui): State<Arc<UiState>>) -> Response {
    let mut response = axum::Json(&ui.config).into_response();
    secure(response.headers_mut(), &ui.csp);
    response
}

async fn asset(
    State(ui): State<Arc<UiState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
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
    secure(out, &ui.csp);
    response
}

/// What a browser is allowed to do with the UI: its own scripts and styles only, no framing, no
/// referrer (the token travels in the fragment, which is never sent, but no need to test that).
fn secure(headers: &mut HeaderMap, csp: &HeaderValue) {
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> UiConfig {
        let vars = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        UiConfig::from_config(&Config::from_vars(vars).unwrap()).unwrap()
    }

    #[test]
    fn when_entra_sign_in_is_configured_should_tell_the_ui_and_allow_only_its_token_endpoint() {
        let ui = config(&[
            (
                "HUNTER_ENTRA_AUTHORITY",
                "http://127.0.0.1:9999/t/oauth2/v2.0/",
            ),
            ("HUNTER_ENTRA_UI_CLIENT_ID", "hunter-ui"),
            ("HUNTER_ENTRA_API_SCOPE", "api://hunter/access_as_user"),
        ]);
        assert_eq!(
            serde_json::to_value(&ui).unwrap(),
            serde_json::json!({
                "apiBase": "/api/v1",
                "auth": {
                    "mode": "entra",
                    "authority": "http://127.0.0.1:9999/t/oauth2/v2.0",
                    "clientId": "hunter-ui",
                    "scopes": ["api://hunter/access_as_user"],
                },
            })
        );
        let csp = ui.content_security_policy();
        let csp = csp.to_str().unwrap();
        assert!(
            csp.contains("connect-src 'self' http://127.0.0.1:9999;"),
            "{csp}"
        );
    }

    #[test]
    fn when_nothing_is_configured_should_sign_in_with_the_api_token_and_connect_nowhere_else() {
        let ui = config(&[]);
        assert_eq!(ui.auth, UiAuth::Token);
        let csp = ui.content_security_policy();
        assert!(!csp.to_str().unwrap().contains("connect-src"));
    }
}
