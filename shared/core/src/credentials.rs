//! Credentials: from the Secrets Manager secret `HUNTER_SECRET_ARN` names, else from the environment.

use std::collections::HashMap;

use crate::secret::Secret;

/// The credential names (environment variables, and keys of the secret's JSON object).
pub const CREDENTIAL_NAMES: [&str; 8] = [
    "HUNTER_PC_CLIENT_ID",
    "HUNTER_PC_CLIENT_SECRET",
    "HUNTER_PC_REFRESH_TOKEN",
    "HUNTER_D365_CLIENT_ID",
    "HUNTER_D365_CLIENT_SECRET",
    "HUNTER_D365_CLIENTS",
    "HUNTER_D365_TENANT",
    "HUNTER_API_TOKEN",
];

/// One Dataverse application user: an app registration of its own, with its own limits.
#[derive(Debug, Clone, PartialEq)]
pub struct D365Client {
    pub client_id: String,
    pub client_secret: Secret,
}

/// Every credential Hunter may use; absent ones are empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Credentials {
    pub pc_client_id: String,
    pub pc_client_secret: Secret,
    pub pc_refresh_token: Secret,
    pub d365_client_id: String,
    pub d365_client_secret: Secret,
    /// `HUNTER_D365_CLIENTS` as given: a JSON array of `{"clientId", "clientSecret"}`, several
    /// application users to spread pushes over (read with [`Credentials::d365_clients`]).
    pub d365_clients: Secret,
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
    /// A credential cannot be read (the message never quotes a value); not retryable.
    #[error("{name} {message}")]
    Invalid { name: &'static str, message: String },
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
            d365_clients: Secret::new(text("HUNTER_D365_CLIENTS")),
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

    /// The Dataverse application users: those of `HUNTER_D365_CLIENTS` when it is set, else the
    /// one of `HUNTER_D365_CLIENT_ID` / `HUNTER_D365_CLIENT_SECRET` (none when that is unset).
    /// Errors say where the JSON is wrong, never what it holds.
    pub fn d365_clients(&self) -> Result<Vec<D365Client>, CredentialsError> {
        const NAME: &str = "HUNTER_D365_CLIENTS";
        let invalid = |message: String| CredentialsError::Invalid {
            name: NAME,
            message,
        };
        let text = self.d365_clients.expose().trim();
        if text.is_empty() {
            return Ok(match self.d365_client_id.is_empty() {
                true => Vec::new(),
                false => vec![D365Client {
                    client_id: self.d365_client_id.clone(),
                    client_secret: self.d365_client_secret.clone(),
                }],
            });
        }
        let shape = "must be a JSON array of {\"clientId\": \"...\", \"clientSecret\": \"...\"}";
        // Values are never echoed: serde's messages for wrong types quote them.
        let items: Vec<serde_json::Value> = serde_json::from_str(text).map_err(|e| {
            invalid(match e.classify() {
                serde_json::error::Category::Data => shape.to_owned(),
                _ => format!(
                    "{shape}: not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            })
        })?;
        if items.is_empty() {
            return Err(invalid(format!("{shape}: the array is empty")));
        }
        let mut clients: Vec<D365Client> = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            let field = |name: &str| {
                item.get(name)
                    .and_then(serde_json::Value::as_str)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{shape}: item {} has no {name} (a non-empty string)",
                            n + 1
                        ))
                    })
            };
            let client_id = field("clientId")?.to_owned();
            let client_secret = Secret::new(field("clientSecret")?);
            if clients.iter().any(|c| c.client_id == client_id) {
                return Err(invalid(format!(
                    "{shape}: item {} repeats the clientId of an earlier one",
                    n + 1
                )));
            }
            clients.push(D365Client {
                client_id,
                client_secret,
            });
        }
        Ok(clients)
    }

    /// The secret `secret_arn` when given, else the process environment; `HUNTER_D365_CLIENTS`
    /// is checked here so a mistake stops the function at start.
    pub async fn load(
        sdk: &aws_config::SdkConfig,
        secret_arn: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        let credentials = Self::load_unchecked(sdk, secret_arn).await?;
        credentials.d365_clients()?;
        Ok(credentials)
    }

    async fn load_unchecked(
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
    fn when_several_dataverse_users_are_given_should_read_them_all_and_hide_their_secrets() {
        let creds = Credentials::from_secret_json(
            "arn:s",
            r#"{"HUNTER_D365_CLIENTS":"[{\"clientId\":\"app-1\",\"clientSecret\":\"s3cr3t-1\"},{\"clientId\":\"app-2\",\"clientSecret\":\"s3cr3t-2\"}]","HUNTER_D365_CLIENT_ID":"single"}"#,
        )
        .unwrap();
        let clients = creds.d365_clients().unwrap();
        let ids: Vec<&str> = clients.iter().map(|c| c.client_id.as_str()).collect();
        assert_eq!(
            ids,
            ["app-1", "app-2"],
            "the list wins over the single user"
        );
        assert_eq!(clients[1].client_secret.expose(), "s3cr3t-2");
        for printed in [format!("{creds:?}"), format!("{clients:?}")] {
            assert!(!printed.contains("s3cr3t"), "{printed}");
        }
    }

    #[test]
    fn when_only_one_dataverse_user_is_given_should_keep_it() {
        let creds = Credentials::from_vars([
            ("HUNTER_D365_CLIENT_ID".to_owned(), "app".to_owned()),
            ("HUNTER_D365_CLIENT_SECRET".to_owned(), "pw".to_owned()),
        ]);
        let clients = creds.d365_clients().unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(
            (
                clients[0].client_id.as_str(),
                clients[0].client_secret.expose()
            ),
            ("app", "pw")
        );
        assert!(Credentials::default().d365_clients().unwrap().is_empty());
    }

    #[test]
    fn when_the_dataverse_users_are_not_valid_json_should_say_where_and_never_quote_a_secret() {
        let read = |text: &str| {
            Credentials::from_vars([("HUNTER_D365_CLIENTS".to_owned(), text.to_owned())])
                .d365_clients()
                .unwrap_err()
        };
        let err = read(r#"[{"clientId":"a","clientSecret":"s3cr3t"}"#);
        assert!(!err.is_retryable());
        let message = err.to_string();
        assert!(
            message.starts_with("HUNTER_D365_CLIENTS must be a JSON array"),
            "{message}"
        );
        assert!(message.contains("not JSON (line 1"), "{message}");
        for (text, expected) in [
            (r#"["s3cr3t"]"#, "item 1 has no clientId"),
            (r#"[{"clientId":"a"}]"#, "item 1 has no clientSecret"),
            (r#"[{"clientId":"a","clientSecret":5}]"#, "no clientSecret"),
            (
                r#"{"clientId":"a","clientSecret":"s3cr3t"}"#,
                "must be a JSON array",
            ),
            ("[]", "the array is empty"),
            (
                r#"[{"clientId":"a","clientSecret":"s3cr3t"},{"clientId":"a","clientSecret":"x"}]"#,
                "item 2 repeats the clientId",
            ),
        ] {
            let message = read(text).to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
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
