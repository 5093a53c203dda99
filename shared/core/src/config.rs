//! The one place configuration is read: `HUNTER_*` environment variables (see docs/architecture.md and the README).

use serde::Deserialize;

/// Deployment settings every function reads. Secrets are not here (see the secrets port).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// `HUNTER_TABLE`
    #[serde(default = "default_table")]
    pub table: String,
    /// `HUNTER_REFERRALS_QUEUE_URL`
    pub referrals_queue_url: Option<String>,
    /// `HUNTER_DYNAMICS_QUEUE_URL`
    pub dynamics_queue_url: Option<String>,
    /// `HUNTER_PARTNER_CENTER_URL`
    #[serde(default = "default_partner_center_url")]
    pub partner_center_url: String,
    /// `HUNTER_PARTNER_CENTER_TOKEN_URL`
    #[serde(default = "default_partner_center_token_url")]
    pub partner_center_token_url: String,
    /// `HUNTER_DYNAMICS_URL`
    pub dynamics_url: Option<String>,
    /// `HUNTER_DYNAMICS_TOKEN_URL`
    pub dynamics_token_url: Option<String>,
    /// `HUNTER_SECRET_ARN`: Secrets Manager secret holding the credentials, when set.
    pub secret_arn: Option<String>,
    /// `HUNTER_FETCH_FUNCTION`: name or ARN of fetch-referrals, which http-api invokes for
    /// `POST /api/v1/sync` (default `fetch-referrals`, the function's name; the template sets the
    /// deployed one).
    #[serde(default = "default_fetch_function")]
    pub fetch_function: String,
    /// `HUNTER_RULES_FILE`: a rules file replacing the compiled-in one.
    pub rules_file: Option<String>,
    /// `HUNTER_MAPPING_FILE`: a Dynamics mapping file replacing the compiled-in one.
    pub mapping_file: Option<String>,
    /// `HUNTER_PC_DIRECTIONS`: comma-separated `direction` values a sync fetches (default: all).
    #[serde(default)]
    pub pc_directions: Vec<String>,
    /// `HUNTER_PC_STATUSES`: comma-separated `status` values a sync fetches (default: all).
    #[serde(default)]
    pub pc_statuses: Vec<String>,
    /// `HUNTER_PC_PAGE_SIZE`: the `$top` a sync asks for.
    pub pc_page_size: Option<usize>,
    /// `HUNTER_PC_WRITE_BACK`: after a push, write the Dynamics id into the referral's
    /// `externalReferenceId` in Partner Center (default off).
    #[serde(default)]
    pub pc_write_back: bool,
    /// `HUNTER_D365_OPPORTUNITIES`: accepted referrals become account + contact + opportunity
    /// in Dynamics (default on).
    pub d365_opportunities: Option<bool>,
}

fn default_table() -> String {
    "hunter".to_owned()
}
fn default_fetch_function() -> String {
    "fetch-referrals".to_owned()
}
fn default_partner_center_url() -> String {
    "https://api.partner.microsoft.com".to_owned()
}
fn default_partner_center_token_url() -> String {
    "https://login.microsoftonline.com/common/oauth2/v2.0/token".to_owned()
}

/// Configuration that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Reads the process environment. Empty values count as unset.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads `HUNTER_*` names from `vars`. Empty values count as unset.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let vars = vars
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty());
        envy::prefixed("HUNTER_")
            .from_iter(vars)
            .map_err(|e| ConfigError(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn when_nothing_is_set_should_use_the_documented_defaults() {
        let config = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(config.table, "hunter");
        assert_eq!(
            config.partner_center_url,
            "https://api.partner.microsoft.com"
        );
        assert_eq!(config.referrals_queue_url, None);
        assert_eq!(config.fetch_function, "fetch-referrals");
    }

    #[test]
    fn when_variables_are_set_should_read_them_and_treat_empty_as_unset() {
        let config = Config::from_vars(vars(&[
            ("HUNTER_TABLE", "prod-hunter"),
            ("HUNTER_REFERRALS_QUEUE_URL", "http://q/hunter-referrals"),
            ("HUNTER_DYNAMICS_URL", "  "),
            ("HUNTER_PC_DIRECTIONS", "Incoming"),
            ("HUNTER_PC_STATUSES", "New,Active"),
            ("OTHER", "x"),
        ]))
        .unwrap();
        assert_eq!(config.table, "prod-hunter");
        assert_eq!(
            config.referrals_queue_url.as_deref(),
            Some("http://q/hunter-referrals")
        );
        assert_eq!(config.dynamics_url, None);
        assert_eq!(config.pc_directions, vec!["Incoming"]);
        assert_eq!(config.pc_statuses, vec!["New", "Active"]);
    }
}
