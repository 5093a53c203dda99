//! Where hunter-local keeps the rotating Partner Center refresh token: a 0600 file in the data
//! directory (`DIR/partner-center-refresh-token.json`), memory with `--in-memory`, and with
//! `--aws` the Secrets Manager secret `HUNTER_PC_REFRESH_TOKEN_SECRET_ARN` names (else the file).

use std::sync::Arc;

use anyhow::Context as _;
use hunter_core::adapters::{FileRefreshTokenStore, MemoryRefreshTokenStore};
use hunter_core::config::Config;
use hunter_core::partner_center::RefreshTokenStore;
use hunter_core::wiring;

use crate::cli::{Args, Backend, BackendArgs};

/// A refresh token store and, for the person at the terminal, where it keeps the token.
#[allow(missing_debug_implementations, reason = "a trait object")]
pub struct TokenStore {
    pub store: Arc<dyn RefreshTokenStore>,
    /// `memory`, the file's path, or `secret <arn>`.
    pub location: String,
}

/// The store `backend` implies (see the module's documentation).
pub async fn token_store(backend: &BackendArgs, config: &Config) -> anyhow::Result<TokenStore> {
    let file = |dir: &std::path::Path| {
        let store = FileRefreshTokenStore::new(dir);
        TokenStore {
            location: store.path().display().to_string(),
            store: Arc::new(store),
        }
    };
    Ok(match backend.backend() {
        Backend::Memory => TokenStore {
            store: Arc::new(MemoryRefreshTokenStore::new()),
            location: "memory (--in-memory: kept until hunter-local stops)".to_owned(),
        },
        Backend::Sqlite(dir) => file(&dir),
        Backend::Aws => match config.pc_refresh_token_secret_arn.as_deref() {
            Some(arn) => TokenStore {
                store: wiring::refresh_token_store(&wiring::aws_sdk_config().await, config)?,
                location: format!("secret {arn}"),
            },
            None => file(&backend.data_dir),
        },
    })
}

/// The store of a running hunter-local: in memory with the built-in simulator (its tokens mean
/// nothing to another process), else [`token_store`].
pub async fn stack_token_store(
    args: &Args,
    config: &Config,
    built_in_simulator: bool,
) -> anyhow::Result<Arc<dyn RefreshTokenStore>> {
    if built_in_simulator {
        return Ok(Arc::new(MemoryRefreshTokenStore::new()));
    }
    let tokens = token_store(&args.backend, config)
        .await
        .context("opening the Partner Center refresh token store")?;
    tracing::info!(event = "partner_center_refresh_token_store", location = %tokens.location);
    Ok(tokens.store)
}
