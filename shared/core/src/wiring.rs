//! Adapters built from configuration: the one place the Lambda composition roots and
//! hunter-local get their AWS clients, HTTP client and Partner Center client from.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::dns_scanner::{
    DnsScanner, DnsScannerError, DnsScannerSettings, parse_nameserver,
};
use crate::adapters::{
    DynamoStore, EntraTokenVerifier, HttpCertificateSource, LambdaSyncTrigger,
    SecretsManagerRefreshTokenStore, SqsQueue,
};
use crate::config::{Config, ConfigError};
use crate::credentials::{Credentials, D365Client};
use crate::dynamics::{
    DataverseAuth, DataverseClient, DataverseError, DataverseLeadSink, PacerSettings,
};
use crate::http::TokenEndpoint;
use crate::partner_center::webhook::{MICROSOFT_CERTIFICATE_PREFIX, WebhookVerifier};
use crate::partner_center::{
    PartnerCenterAuth, PartnerCenterClient, PartnerCenterError, RefreshTokenStore,
};
use crate::ports::{AccessTokenVerifier, QueueError};
use crate::retry::Backoff;
use hunter_domain::crm::DynamicsMapping;

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
        .map_err(|e| PartnerCenterError::InvalidRequest {
            service: "HTTP client",
            message: e.to_string(),
        })
}

/// The table `HUNTER_TABLE`.
pub fn dynamo_store(sdk: &aws_config::SdkConfig, config: &Config) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), config.table.clone())
}

/// The referrals queue, `HUNTER_REFERRALS_QUEUE_URL` (required).
pub async fn referrals_queue(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<SqsQueue, QueueError> {
    sqs_queue(
        sdk,
        config.referrals_queue_url.as_deref(),
        "HUNTER_REFERRALS_QUEUE_URL",
    )
    .await
}

/// The dynamics-push queue, `HUNTER_DYNAMICS_QUEUE_URL` (required).
pub async fn dynamics_queue(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<SqsQueue, QueueError> {
    sqs_queue(
        sdk,
        config.dynamics_queue_url.as_deref(),
        "HUNTER_DYNAMICS_QUEUE_URL",
    )
    .await
}

async fn sqs_queue(
    sdk: &aws_config::SdkConfig,
    url: Option<&str>,
    variable: &str,
) -> Result<SqsQueue, QueueError> {
    let url = url.ok_or_else(|| QueueError::Invalid(format!("{variable} is not set")))?;
    SqsQueue::from_url(aws_sdk_sqs::Client::new(sdk), url).await
}

/// The check of Entra ID access tokens, when `HUNTER_ENTRA_AUDIENCE` turns it on.
pub fn entra_token_verifier(
    config: &Config,
) -> Result<Option<Arc<dyn AccessTokenVerifier>>, ConfigError> {
    Ok(config.entra_api()?.map(|settings| {
        Arc::new(EntraTokenVerifier::new(reqwest::Client::new(), settings))
            as Arc<dyn AccessTokenVerifier>
    }))
}

/// The trigger of on-demand syncs: the fetch-referrals function `HUNTER_FETCH_FUNCTION` names.
pub fn lambda_sync_trigger(sdk: &aws_config::SdkConfig, config: &Config) -> LambdaSyncTrigger {
    LambdaSyncTrigger::new(
        aws_sdk_lambda::Client::new(sdk),
        config.fetch_function.clone(),
    )
}

/// Where the Lambda functions keep the rotating Partner Center refresh token: the secret
/// `HUNTER_PC_REFRESH_TOKEN_SECRET_ARN` names (required; never the table every function reads).
pub fn refresh_token_store(
    sdk: &aws_config::SdkConfig,
    config: &Config,
) -> Result<Arc<dyn RefreshTokenStore>, ConfigError> {
    let arn = config
        .pc_refresh_token_secret_arn
        .as_deref()
        .ok_or_else(|| {
            ConfigError(
            "HUNTER_PC_REFRESH_TOKEN_SECRET_ARN is not set: the rotating Partner Center refresh \
             token is kept in a secret of its own"
                .to_owned(),
        )
        })?;
    Ok(Arc::new(SecretsManagerRefreshTokenStore::new(
        aws_sdk_secretsmanager::Client::new(sdk),
        arn,
    )))
}

/// The Partner Center client; the rotated refresh token is kept in `tokens` (see
/// [`refresh_token_store`]); `HUNTER_PC_REFRESH_TOKEN` is used while `tokens` holds none.
pub fn partner_center(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
    tokens: Arc<dyn RefreshTokenStore>,
) -> Result<PartnerCenterClient, PartnerCenterError> {
    let auth = partner_center_auth(http.clone(), config, credentials, tokens);
    PartnerCenterClient::new(http, &config.partner_center_url, auth, Backoff::default())
}

/// Partner Center tokens for the app of the credentials, from the refresh token kept in `tokens`
/// (`HUNTER_PC_REFRESH_TOKEN` while it holds none).
pub fn partner_center_auth(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
    tokens: Arc<dyn RefreshTokenStore>,
) -> PartnerCenterAuth {
    PartnerCenterAuth::new(
        TokenEndpoint::new(
            http,
            &config.partner_center_token_url,
            &credentials.pc_client_id,
            credentials.pc_client_secret.clone(),
        ),
        credentials.pc_refresh_token.clone(),
        tokens,
    )
}

/// Checks Partner Center webhook signatures against certificates under
/// `HUNTER_PC_WEBHOOK_CERTIFICATE_URLS` (default: Microsoft's).
pub fn webhook_verifier(config: &Config) -> Result<WebhookVerifier, ConfigError> {
    let mut prefixes = config.pc_webhook_certificate_urls.clone();
    if prefixes.is_empty() {
        prefixes.push(MICROSOFT_CERTIFICATE_PREFIX.to_owned());
    }
    let certificates = HttpCertificateSource::new()
        .map_err(|e| ConfigError(format!("webhook certificate client: {e}")))?;
    Ok(WebhookVerifier::new(prefixes, Arc::new(certificates)))
}

/// The Partner Center client that writes Dynamics ids back, when `HUNTER_PC_WRITE_BACK` is on;
/// it shares fetch-referrals' refresh token secret.
pub fn write_back(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    credentials: &Credentials,
) -> Result<Option<PartnerCenterClient>, PartnerCenterError> {
    if !config.pc_write_back {
        return Ok(None);
    }
    partner_center_writer(sdk, config, credentials).map(Some)
}

/// The Partner Center client CRM outcomes are mirrored through, when
/// `HUNTER_MIRROR_CRM_OUTCOMES` is on (it then needs the Partner Center credentials and the
/// refresh token secret).
pub fn outcome_mirror(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    credentials: &Credentials,
) -> Result<Option<PartnerCenterClient>, PartnerCenterError> {
    if !config.mirror_crm_outcomes {
        return Ok(None);
    }
    partner_center_writer(sdk, config, credentials).map(Some)
}

/// A Partner Center client for writes, with the refresh token store of the environment.
fn partner_center_writer(
    sdk: &aws_config::SdkConfig,
    config: &Config,
    credentials: &Credentials,
) -> Result<PartnerCenterClient, PartnerCenterError> {
    let tokens =
        refresh_token_store(sdk, config).map_err(|e| PartnerCenterError::InvalidRequest {
            service: "Partner Center",
            message: e.to_string(),
        })?;
    partner_center(http_client()?, config, credentials, tokens)
}

/// The Dataverse lead sink of `HUNTER_DYNAMICS_URL` (required) with the D365 credentials (every
/// application user of `HUNTER_D365_CLIENTS`, else the one of `HUNTER_D365_CLIENT_ID`), paced
/// for `HUNTER_D365_REQUEST_LIMIT`; the token URL defaults to the tenant's Entra endpoint. Build
/// it once per process: its pacers are shared by everything that pushes through it.
pub fn dataverse_sink(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
    mapping: &DynamicsMapping,
) -> Result<DataverseLeadSink, DataverseError> {
    Ok(DataverseLeadSink::new(
        dataverse_client(http, config, credentials)?,
        mapping,
    ))
}

/// The Dataverse client of `HUNTER_DYNAMICS_URL`, as the application users the credentials name
/// (`HUNTER_D365_CLIENTS`, else `HUNTER_D365_CLIENT_ID`), paced for `HUNTER_D365_REQUEST_LIMIT`.
pub fn dataverse_client(
    http: reqwest::Client,
    config: &Config,
    credentials: &Credentials,
) -> Result<DataverseClient, DataverseError> {
    let org_url = config
        .dynamics_url
        .as_deref()
        .ok_or_else(|| DataverseError::InvalidRequest {
            service: "Dataverse",
            message: "HUNTER_DYNAMICS_URL is not set".to_owned(),
        })?;
    let token_url = config.dynamics_token_url.clone().unwrap_or_else(|| {
        let tenant = if credentials.d365_tenant.is_empty() {
            "organizations"
        } else {
            credentials.d365_tenant.as_str()
        };
        format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token")
    });
    let clients = credentials
        .d365_clients()
        .map_err(|e| DataverseError::InvalidRequest {
            service: "Dataverse",
            message: e.to_string(),
        })?;
    // No user configured: one without credentials, which the token endpoint refuses (as before).
    let clients = match clients.is_empty() {
        true => vec![D365Client {
            client_id: credentials.d365_client_id.clone(),
            client_secret: credentials.d365_client_secret.clone(),
        }],
        false => clients,
    };
    let users = clients
        .into_iter()
        .map(|client| {
            let endpoint = TokenEndpoint::new(
                http.clone(),
                token_url.clone(),
                client.client_id,
                client.client_secret,
            );
            DataverseAuth::new(endpoint, org_url)
        })
        .collect::<Vec<_>>();
    let limits = config
        .d365_request_limit
        .map_or_else(PacerSettings::default, |limit| {
            PacerSettings::limit(limit.requests, limit.window)
        });
    tracing::info!(
        event = "dataverse_users",
        users = users.len(),
        max_requests = limits.max_requests,
        window_s = limits.window.as_secs()
    );
    DataverseClient::with_users(http, org_url, users, Backoff::default(), limits)
}

/// The domain scanner: the nameserver `HUNTER_DNS_SERVER` names (UDP and TCP), else the
/// system's resolvers; the default deadline (10 s), limit (32 scans at once) and DKIM selectors.
pub fn dns_scanner(config: &Config) -> Result<DnsScanner, DnsScannerError> {
    let nameserver = config
        .dns_server
        .as_deref()
        .map(parse_nameserver)
        .transpose()?;
    DnsScanner::new(DnsScannerSettings {
        nameserver,
        ..DnsScannerSettings::default()
    })
}
