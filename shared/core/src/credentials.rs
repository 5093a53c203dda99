//! Credentials: from the Secrets Manager secret `HUNTER_SECRET_ARN` names, else from the environment.

use std::collections::HashMap;

use crate::secret::Secret;

/// The credential names (environment variables, and keys of the secret's JSON object).
pub const CREDENTIAL_NAMES: [&str; 7] = [
    "HUNTER_PC_CLIENT_ID",
    "HUNTER_PC_CLIENT_SECRET",
    "HUNTER_PC_REFRESH_TOKEN",
    "HUNTER_D365_CLIENT_ID",
    "HUNTER_D365_CLIENT_SECRET",
    "HUNTER_D365_TENANT",
    "HUNTER_API_TOKEN",
];

/// Every credential Hunter may use; absent ones are empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub pc_client_id: String,
    pub pc_client_secret: Secret,
    pub pc_refresh_token: Secret,
    pub d365_client_id: String,
    pub d365_client_secret: Secret,
    pub d365_tenant: String,
    pub api_token: Secret,
}

/// Credentials that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Secrets Manager did not answer (retryable).
    #[error("cannot read secret {arn}: {message}")]
    Unavailable { arn: String, message: String },
    /// The secret is not a JSON object of strings.
    #[error("secret {arn} is not a JSON object of strings")]
    Malformed { arn: String },
}

impl CredentialsError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

impl Credentials {
    /// Reads the credential names from `vars` (empty values count as unset).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .filter(|(name, value)| {
                CREDENTIAL_NAMES.contains(&name.as_str()) && !value.trim().is_empty()
            })
            .collect();
        let text = |name: &str| vars.get(name).cloned().unwrap_or_default();
        Self {
            pc_client_id: text("HUNTER_PC_CLIENT_ID"),
            pc_client_secret: Secret::new(text("HUNTER_PC_CLIENT_SECRET")),
            pc_refresh_token: Secret::new(text("HUNTER_PC_REFRESH_TOKEN")),
            d365_client_id: text("HUNTER_D365_CLIENT_ID"),
            d365_client_secret: Secret::new(text("HUNTER_D365_CLIENT_SECRET")),
            d365_tenant: text("HUNTER_D365_TENANT"),
            api_token: Secret::new(text("HUNTER_API_TOKEN")),
        }
    }

    /// Reads a secret string: a JSON object whose keys are the credential names.
    pub fn from_secret_json(arn: &str, json: &str) -> Result<Self, CredentialsError> {
        let malformed = || CredentialsError::Malformed {
            arn: arn.to_owned(),
        };
        let map: HashMap<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|_| malformed())?;
        let mut vars = Vec::with_capacity(map.len());
        for (name, value) in map {
            match value {
                serde_json::Value::String(text) => vars.push((name, text)),
                serde_json::Value::Null => {}
                _ => return Err(malformed()),
            }
        }
        Ok(Self::from_vars(vars))
    }

    /// The secret `secret_arn` when given, else the process environment.
    pub async fn load(
        sdk: &aws_config::SdkConfig,
        secret_arn: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        let Some(arn) = secret_arn else {
            return Ok(Self::from_vars(std::env::vars()));
        };
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let output = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| CredentialsError::Unavailable {
                arn: arn.to_owned(),
                message: aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })?;
        let text = output
            .secret_string()
            .ok_or_else(|| CredentialsError::Malformed {
                arn: arn.to_owned(),
            })?;
        Self::from_secret_json(arn, text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_read_from_variables_should_take_only_credential_names() {
        let creds = Credentials::from_vars([
            ("HUNTER_PC_CLIENT_ID".to_owned(), "app".to_owned()),
            ("HUNTER_PC_REFRESH_TOKEN".to_owned(), "rt".to_owned()),
            ("HUNTER_API_TOKEN".to_owned(), " ".to_owned()),
            ("PATH".to_owned(), "/bin".to_owned()),
        ]);
        assert_eq!(creds.pc_client_id, "app");
        assert_eq!(creds.pc_refresh_token.expose(), "rt");
        assert!(creds.api_token.is_empty());
    }

    #[test]
    fn when_the_secret_is_a_json_object_should_read_it_and_never_print_values() {
        let creds = Credentials::from_secret_json(
            "arn:s",
            r#"{"HUNTER_PC_CLIENT_SECRET":"s3cr3t","HUNTER_D365_TENANT":"t","other":"x"}"#,
        )
        .unwrap();
        assert_eq!(creds.pc_client_secret.expose(), "s3cr3t");
        assert_eq!(creds.d365_tenant, "t");
        assert!(!format!("{creds:?}").contains("s3cr3t"));
    }

    #[test]
    fn when_the_secret_is_not_an_object_of_strings_should_be_malformed_and_not_retryable() {
        for text in ["[1]", "not json", r#"{"HUNTER_PC_CLIENT_ID": 5}"#] {
            let err = Credentials::from_secret_json("arn:s", text).unwrap_err();
            assert!(matches!(err, CredentialsError::Malformed { .. }), "{text}");
            assert!(!err.is_retryable());
        }
    }
}
