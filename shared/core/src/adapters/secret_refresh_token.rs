//! [`RefreshTokenStore`] in a Secrets Manager secret of its own
//! (`HUNTER_PC_REFRESH_TOKEN_SECRET_ARN`), whose value is `{"refreshToken": "..."}` (an empty
//! string: none stored yet). Only the functions that renew the token may read it.
//!
//! A save is a compare-and-swap on the `AWSCURRENT` staging label: `PutSecretValue` stores the
//! new token as a version staged `AWSPENDING` only (nobody reads it yet), then
//! `UpdateSecretVersionStage` moves `AWSCURRENT` to it *from the version that was read*
//! (`RemoveFromVersionId`). Secrets Manager refuses that move when `AWSCURRENT` is no longer on
//! that version (another renewal saved first): [`StoreError::Conflict`], and the caller keeps
//! the other renewal's token.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use serde::{Deserialize, Serialize};

use crate::partner_center::{RefreshTokenStore, StoredRefreshToken, TokenVersion};
use crate::ports::StoreError;
use crate::secret::Secret;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";

/// The secret's JSON value.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenValue {
    #[serde(default)]
    refresh_token: String,
}

/// The rotating Partner Center refresh token in Secrets Manager.
#[derive(Clone)]
pub struct SecretsManagerRefreshTokenStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl std::fmt::Debug for SecretsManagerRefreshTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsManagerRefreshTokenStore")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

fn unavailable<E, R>(what: &str, err: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(format!("{what}: {}", DisplayErrorContext(err)))
}

/// What `GetSecretValue` found: the `AWSCURRENT` version and its token (empty: none), or no
/// current value at all.
struct Current {
    version: String,
    token: String,
}

impl SecretsManagerRefreshTokenStore {
    /// The secret `secret_id` (an ARN or a name).
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        Self {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// The secret `secret_id` through the AWS configuration `sdk`.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, secret_id: impl Into<String>) -> Self {
        Self::new(aws_sdk_secretsmanager::Client::new(sdk), secret_id)
    }

    /// The secret `name`, created with no token in it when missing (as template.yaml creates
    /// it; for tests and local set-ups).
    pub async fn ensure(sdk: &aws_config::SdkConfig, name: &str) -> Result<Self, StoreError> {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let empty = serde_json::to_string(&TokenValue {
            refresh_token: String::new(),
        })
        .map_err(|e| StoreError::InvalidItem(e.to_string()))?;
        let created = client
            .create_secret()
            .name(name)
            .description(
                "Hunter: the current Partner Center refresh token, {\"refreshToken\": \"...\"}",
            )
            .secret_string(empty)
            .send()
            .await;
        let secret_id = match created {
            Ok(output) => output.arn().unwrap_or(name).to_owned(),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_exists_exception()) =>
            {
                name.to_owned()
            }
            Err(err) => return Err(unavailable("CreateSecret", &err)),
        };
        Ok(Self::new(client, secret_id))
    }

    /// The secret's id (ARN or name).
    pub fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The `AWSCURRENT` value; `None` when the secret has no value yet.
    async fn current(&self) -> Result<Option<Current>, StoreError> {
        let answer = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            // AWS's default; named, because moto answers the version last *put* as AWSCURRENT
            // otherwise, even after UpdateSecretVersionStage moved the label.
            .version_stage(CURRENT)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            // A secret created without a value has no AWSCURRENT version yet; a secret that does
            // not exist at all is a configuration error, said as such.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                let exists = self
                    .client
                    .describe_secret()
                    .secret_id(&self.secret_id)
                    .send()
                    .await
                    .is_ok();
                return if exists {
                    Ok(None)
                } else {
                    Err(StoreError::InvalidItem(format!(
                        "secret {} does not exist (HUNTER_PC_REFRESH_TOKEN_SECRET_ARN)",
                        self.secret_id
                    )))
                };
            }
            Err(err) => return Err(unavailable("GetSecretValue", &err)),
        };
        let version = output
            .version_id()
            .ok_or_else(|| StoreError::InvalidItem("GetSecretValue without VersionId".to_owned()))?
            .to_owned();
        let text = output.secret_string().unwrap_or_default();
        let token = if text.trim().is_empty() {
            String::new()
        } else {
            serde_json::from_str::<TokenValue>(text)
                .map_err(|_| {
                    StoreError::InvalidItem(format!(
                        "secret {} is not {{\"refreshToken\": \"...\"}}",
                        self.secret_id
                    ))
                })?
                .refresh_token
        };
        Ok(Some(Current { version, token }))
    }
}

#[async_trait]
impl RefreshTokenStore for SecretsManagerRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        Ok(self
            .current()
            .await?
            .filter(|c| !c.token.is_empty())
            .map(|c| StoredRefreshToken {
                token: Secret::new(c.token),
                version: TokenVersion(c.version),
            }))
    }

    async fn save(
        &self,
        token: &Secret,
        expected: Option<&TokenVersion>,
    ) -> Result<TokenVersion, StoreError> {
        // The version AWSCURRENT must still be on: the one read, or (nothing read) the empty one.
        let from = match expected {
            Some(version) => Some(version.0.clone()),
            None => match self.current().await? {
                Some(current) if !current.token.is_empty() => {
                    return Err(StoreError::Conflict(format!(
                        "secret {} holds a refresh token now",
                        self.secret_id
                    )));
                }
                Some(current) => Some(current.version),
                None => None,
            },
        };
        let value = serde_json::to_string(&TokenValue {
            refresh_token: token.expose().to_owned(),
        })
        .map_err(|e| StoreError::InvalidItem(e.to_string()))?;
        let new_version = uuid::Uuid::new_v4().to_string();
        let put = self
            .client
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(&new_version)
            .secret_string(value);
        let Some(from) = from else {
            // No value at all yet: the first one becomes AWSCURRENT (PutSecretValue's default).
            put.send()
                .await
                .map_err(|e| unavailable("PutSecretValue", &e))?;
            return Ok(TokenVersion(new_version));
        };
        put.version_stages(PENDING)
            .send()
            .await
            .map_err(|e| unavailable("PutSecretValue", &e))?;
        let moved = self
            .client
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(&new_version)
            .remove_from_version_id(&from)
            .send()
            .await;
        match moved {
            Ok(_) => Ok(TokenVersion(new_version)),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_parameter_exception()) =>
            {
                tracing::info!(
                    event = "partner_center_refresh_token_save_conflict",
                    code = err.code().unwrap_or_default()
                );
                Err(StoreError::Conflict(format!(
                    "secret {}: AWSCURRENT moved off the version read",
                    self.secret_id
                )))
            }
            Err(err) => Err(unavailable("UpdateSecretVersionStage", &err)),
        }
    }
}
