//! Adapters built from configuration: the one place the Lambda composition roots and
//! hunter-local get their AWS clients, HTTP client and Partner Center client from.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::{DynamoStore, SqsQueue};
use crate::config::Config;
use crate::credentials::Credentials;
use crate::error::QueueError;
use crate::partner_center::{
    PartnerCenterAuth, PartnerCenterClient, PartnerCenterError, StateRefreshTokenStore,
};
use crate::ports::SyncStore;
use crate::retry::Backoff;

/// The AWS configuration of the standard environment (region, credentials, `AWS_ENDPOINT_URL`).
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The HTTP client for external APIs: rustls, bounded connect and request times.
pub fn http_client() -> Result<reqwest::Client, PartnerCenterError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("hunter-referral-sync/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| PartnerCenterError::Transport(e.to_string()))
}

/// The table `HUNTER_TABLE`.
pub fn dynamo_store(sdk: &aws_config::SdkConfig, config: &Config) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone())
}

/// The queue at `url` (read from the variable `variable`, which must be set).
pub async fn sqs_queue(
    sdk: &aws_config::SdkConfig,
    url: Option<&str>,
    variable: &str,
) -> Result<SqsQueue, QueueError> {
    let url = url.ok_or_else(|| QueueError::Invalid(format!("{variable} is not set")))?;
    SqsQueue::from_url(aws_sdk_sqs::Client::new(sdk), url).await
}

/// The Partner Center client; the rotated refresh token is kept in `tokens`.
pub fn partner_center(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
    tokens: Arc<dyn SyncStore>,
) -> Result<PartnerCenterClient, PartnerCenterError> {
    let auth = PartnerCenterAuth::new(
        http.clone(),
        config.partner_center_token_url.clone(),
        credentials.pc_client_id.clone(),
        credentials.pc_client_secret.clone(),
        credentials.pc_refresh_token.clone(),
        Arc::new(StateRefreshTokenStore::new(tokens)),
    );
    PartnerCenterClient::new(http, &config.partner_center_url, auth, Backoff::default())
}
