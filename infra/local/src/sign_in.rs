//! `hunter-local sign-in`: a person signs Hunter in to Partner Center once with Entra's device
//! code flow; the refresh token it yields is kept where syncs read it (the data directory's
//! 0600 token file, or with `--aws` the refresh token secret).

use anyhow::{Context as _, bail};
use hunter_core::config::Config;
use hunter_core::credentials::Credentials;
use hunter_core::partner_center::device_code::DeviceCodeFlow;
use hunter_core::partner_center::replace_refresh_token;
use hunter_core::wiring;

use crate::cli::{Args, Backend};
use crate::refresh_token::token_store;

/// Shows the verification URL and user code (stderr), waits for the sign-in, keeps the refresh
/// token and prints `signed in`. The token endpoint is `--partner-center-token-url`, else
/// `HUNTER_PARTNER_CENTER_TOKEN_URL` (Microsoft's by default); the app is `HUNTER_PC_CLIENT_ID`
/// (and `HUNTER_PC_CLIENT_SECRET` for a confidential one).
pub async fn sign_in(args: &Args) -> anyhow::Result<()> {
    if args.backend.backend() == Backend::Memory {
        bail!("sign-in with --in-memory would keep the token nowhere: use --data-dir DIR or --aws");
    }
    let mut config = Config::from_env().context("reading HUNTER_* configuration")?;
    if let Some(token_url) = &args.partner_center_token_url {
        config.partner_center_token_url.clone_from(token_url);
    }
    let credentials = Credentials::from_vars(std::env::vars());
    let flow = DeviceCodeFlow::new(
        wiring::http_client()?,
        &config.partner_center_token_url,
        &credentials.pc_client_id,
        credentials.pc_client_secret.clone(),
    )?;
    // Opened first: a store that cannot work says so before anyone signs in.
    let tokens = token_store(&args.backend, &config).await?;
    let code = flow
        .start()
        .await
        .context("starting the Partner Center sign-in")?;
    tracing::info!(
        event = "partner_center_sign_in_started",
        expires_in_secs = code.expires_in.as_secs()
    );
    eprintln!("{}", code.message);
    let signed_in = flow
        .wait(&code)
        .await
        .context("signing in to Partner Center")?;
    replace_refresh_token(tokens.store.as_ref(), &signed_in.refresh_token)
        .await
        .with_context(|| format!("keeping the refresh token in {}", tokens.location))?;
    tracing::info!(event = "partner_center_signed_in", location = %tokens.location);
    eprintln!("The refresh token is kept in {}.", tokens.location);
    println!("signed in");
    Ok(())
}
