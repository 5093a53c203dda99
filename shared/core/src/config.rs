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
    /// `HUNTER_PC_REFRESH_TOKEN_SECRET_ARN`: the Secrets Manager secret holding the rotating
    /// Partner Center refresh token, `{"refreshToken": "..."}` (fetch-referrals, and push-dynamics
    /// with write-back). Unset: hunter-local keeps it in its data directory.
    pub pc_refresh_token_secret_arn: Option<String>,
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
    /// `HUNTER_MIRROR_CRM_OUTCOMES`: when a pull sees a lead's opportunity won or lost, or the
    /// lead disqualified, close its open referrals in Partner Center as `Won` / `Lost`
    /// (`If-Match` on their eTag, audited; default off).
    #[serde(default)]
    pub mirror_crm_outcomes: bool,
    /// `HUNTER_D365_OPPORTUNITIES`: accepted referrals become account + contact + opportunity
    /// in Dynamics (default on).
    pub d365_opportunities: Option<bool>,
    /// `HUNTER_D365_REQUEST_LIMIT`: the service-protection request limit of each Dataverse
    /// application user, `<requests>/<window>` (`6000/300s`, Microsoft's default when unset; a
    /// lower one for an org with lower limits). Pushes are paced just below it.
    #[serde(default, deserialize_with = "request_limit_text")]
    pub d365_request_limit: Option<RequestLimit>,
    /// `HUNTER_DNS_SERVER`: the one nameserver domain scans ask (`HOST:PORT`, UDP and TCP);
    /// unset: the system's resolvers.
    pub dns_server: Option<String>,
    /// `HUNTER_RESCAN_AFTER`: a lead's domain is scanned again once its last scan is this old
    /// (`7d`, `12h`, `30m`, `90s` or seconds; default 7 days).
    #[serde(default = "default_rescan_after", deserialize_with = "duration_text")]
    pub rescan_after: std::time::Duration,
    /// `HUNTER_SYNC_OVERLAP`: how far before its watermark a sync asks Partner Center again, for
    /// referrals committed late with an earlier `updatedDateTime` (`10m`, `1h`, `90s` or
    /// seconds; default 10 minutes). Fetching some twice is free: ingest checks versions.
    #[serde(default = "default_sync_overlap", deserialize_with = "duration_text")]
    pub sync_overlap: std::time::Duration,
    /// The queues' maxReceiveCount (`HUNTER_MAX_RECEIVE_COUNT`, as template.yaml sets it), so a
    /// handler knows when a failure sends a message to the dead-letter queue.
    #[serde(default)]
    pub max_receive_count: Option<u32>,
    /// `HUNTER_UI_ORIGIN`: comma-separated origins of a UI served elsewhere than the API that
    /// browsers may call the API from (CORS); unset: the UI's own origin only.
    #[serde(default)]
    pub ui_origin: Vec<String>,
    /// `HUNTER_PC_WEBHOOK_CERTIFICATE_URLS`: comma-separated URL prefixes a Partner Center
    /// webhook event's signing certificate may come from (default: where Microsoft publishes
    /// it, [`crate::partner_center::webhook::MICROSOFT_CERTIFICATE_PREFIX`]).
    #[serde(default)]
    pub pc_webhook_certificate_urls: Vec<String>,
    /// `HUNTER_ENTRA_TENANT_ID`: the Entra ID tenant whose users may sign in to the UI.
    pub entra_tenant_id: Option<String>,
    /// `HUNTER_ENTRA_AUDIENCE`: the `aud` an Entra access token must carry to be accepted by the
    /// API (its app id URI, e.g. `api://hunter`, or its client id). Unset: only the API token.
    pub entra_audience: Option<String>,
    /// `HUNTER_ENTRA_ISSUER` (default `https://login.microsoftonline.com/<tenant>/v2.0`).
    pub entra_issuer: Option<String>,
    /// `HUNTER_ENTRA_JWKS_URL`: the tenant's signing keys (default
    /// `https://login.microsoftonline.com/<tenant>/discovery/v2.0/keys`).
    pub entra_jwks_url: Option<String>,
    /// `HUNTER_ENTRA_AUTHORITY`: where the UI signs people in (default
    /// `https://login.microsoftonline.com/<tenant>/oauth2/v2.0`).
    pub entra_authority: Option<String>,
    /// `HUNTER_ENTRA_UI_CLIENT_ID`: the UI's app registration (a single-page application).
    pub entra_ui_client_id: Option<String>,
    /// `HUNTER_ENTRA_API_SCOPE`: the scope the UI asks for (e.g. `api://hunter/access_as_user`).
    pub entra_api_scope: Option<String>,
}

/// A request limit over a sliding window (`6000/300s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    pub requests: u32,
    pub window: std::time::Duration,
}

impl RequestLimit {
    /// Reads `<requests>/<window>`, the window as [`parse_duration`] reads it (`300s`, `5m`).
    pub fn parse(text: &str) -> Option<Self> {
        let (requests, window) = text.split_once('/')?;
        let requests: u32 = requests.trim().parse().ok().filter(|n| *n > 0)?;
        let window = parse_duration(window).filter(|w| !w.is_zero())?;
        Some(Self { requests, window })
    }
}

fn request_limit_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<RequestLimit>, D::Error> {
    let text = String::deserialize(deserializer)?;
    RequestLimit::parse(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "HUNTER_D365_REQUEST_LIMIT {text:?} is not <requests>/<window> (e.g. 6000/300s)"
        ))
    })
}

/// How the API checks Entra ID access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraApi {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
}

/// How the UI signs people in with Entra ID (authorization code with PKCE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraUi {
    /// `<authority>/authorize` and `<authority>/token`.
    pub authority: String,
    pub client_id: String,
    pub scope: String,
}

const ENTRA_LOGIN: &str = "https://login.microsoftonline.com";

impl Config {
    /// The Entra ID check of the API, when `HUNTER_ENTRA_AUDIENCE` and a tenant (or both the
    /// issuer and the keys URL) are set.
    pub fn entra_api(&self) -> Result<Option<EntraApi>, ConfigError> {
        let Some(audience) = self.entra_audience.clone() else {
            return Ok(None);
        };
        let tenant = self.entra_tenant_id.as_deref();
        let or_tenant = |value: &Option<String>, name: &str, url: &dyn Fn(&str) -> String| {
            value.clone().or_else(|| tenant.map(url)).ok_or_else(|| {
                ConfigError(format!(
                    "HUNTER_ENTRA_AUDIENCE is set: set HUNTER_ENTRA_TENANT_ID or {name}"
                ))
            })
        };
        Ok(Some(EntraApi {
            issuer: or_tenant(&self.entra_issuer, "HUNTER_ENTRA_ISSUER", &|t| {
                format!("{ENTRA_LOGIN}/{t}/v2.0")
            })?,
            jwks_url: or_tenant(&self.entra_jwks_url, "HUNTER_ENTRA_JWKS_URL", &|t| {
                format!("{ENTRA_LOGIN}/{t}/discovery/v2.0/keys")
            })?,
            audience,
        }))
    }

    /// The UI's Entra ID sign-in, when `HUNTER_ENTRA_UI_CLIENT_ID` is set.
    pub fn entra_ui(&self) -> Result<Option<EntraUi>, ConfigError> {
        let Some(client_id) = self.entra_ui_client_id.clone() else {
            return Ok(None);
        };
        let authority = self
            .entra_authority
            .clone()
            .or_else(|| {
                self.entra_tenant_id
                    .as_deref()
                    .map(|t| format!("{ENTRA_LOGIN}/{t}/oauth2/v2.0"))
            })
            .ok_or_else(|| {
                ConfigError(
                    "HUNTER_ENTRA_UI_CLIENT_ID is set: set HUNTER_ENTRA_TENANT_ID or \
                     HUNTER_ENTRA_AUTHORITY"
                        .to_owned(),
                )
            })?;
        let scope = self.entra_api_scope.clone().ok_or_else(|| {
            ConfigError("HUNTER_ENTRA_UI_CLIENT_ID is set: set HUNTER_ENTRA_API_SCOPE".to_owned())
        })?;
        Ok(Some(EntraUi {
            authority: authority.trim_end_matches('/').to_owned(),
            client_id,
            scope,
        }))
    }
}

fn default_rescan_after() -> std::time::Duration {
    std::time::Duration::from_secs(7 * 24 * 3600)
}

fn default_sync_overlap() -> std::time::Duration {
    std::time::Duration::from_secs(10 * 60)
}

/// A duration written `<number><unit>` (`s`, `m`, `h`, `d`) or as seconds.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let seconds_per_unit = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    let number: u64 = number.parse().ok()?;
    Some(std::time::Duration::from_secs(
        number.checked_mul(seconds_per_unit)?,
    ))
}

fn duration_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<std::time::Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration (e.g. 7d, 12h, 30m, 90s)"
        ))
    })
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
pub struct ConfigError(pub(crate) String);

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
        assert_eq!(config.dns_server, None);
        assert_eq!(config.pc_refresh_token_secret_arn, None);
    }

    #[test]
    fn when_rescan_after_is_set_should_read_its_unit() {
        let read = |text: &str| {
            Config::from_vars(vars(&[("HUNTER_RESCAN_AFTER", text)])).map(|c| c.rescan_after)
        };
        assert_eq!(
            Config::from_vars(vars(&[])).unwrap().rescan_after,
            std::time::Duration::from_secs(7 * 86_400)
        );
        assert_eq!(read("12h").unwrap().as_secs(), 12 * 3600);
        assert_eq!(read("30m").unwrap().as_secs(), 1800);
        assert_eq!(read("90").unwrap().as_secs(), 90);
        assert_eq!(read("2d").unwrap().as_secs(), 2 * 86_400);
        let err = read("soon").unwrap_err().to_string();
        assert!(err.contains("not a duration"), "{err}");
        assert!(read("5w").is_err());
    }

    #[test]
    fn when_a_sync_overlap_is_set_should_read_it_and_default_to_10_minutes() {
        let read = |text: &str| {
            Config::from_vars(vars(&[("HUNTER_SYNC_OVERLAP", text)])).map(|c| c.sync_overlap)
        };
        assert_eq!(
            Config::from_vars(vars(&[])).unwrap().sync_overlap,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(read("30m").unwrap().as_secs(), 1800);
        assert_eq!(read("0").unwrap().as_secs(), 0);
        assert!(read("a while").is_err());
    }

    #[test]
    fn when_entra_is_configured_by_tenant_should_derive_microsofts_urls() {
        let config = Config::from_vars(vars(&[
            ("HUNTER_ENTRA_TENANT_ID", "contoso-tenant"),
            ("HUNTER_ENTRA_AUDIENCE", "api://hunter"),
            ("HUNTER_ENTRA_UI_CLIENT_ID", "ui-app"),
            ("HUNTER_ENTRA_API_SCOPE", "api://hunter/access_as_user"),
        ]))
        .unwrap();
        let api = config.entra_api().unwrap().unwrap();
        assert_eq!(
            api.issuer,
            "https://login.microsoftonline.com/contoso-tenant/v2.0"
        );
        assert_eq!(
            api.jwks_url,
            "https://login.microsoftonline.com/contoso-tenant/discovery/v2.0/keys"
        );
        assert_eq!(api.audience, "api://hunter");
        let ui = config.entra_ui().unwrap().unwrap();
        assert_eq!(
            ui.authority,
            "https://login.microsoftonline.com/contoso-tenant/oauth2/v2.0"
        );
        assert_eq!(ui.client_id, "ui-app");
    }

    #[test]
    fn when_entra_is_half_configured_should_say_what_is_missing() {
        let none = Config::from_vars(vars(&[])).unwrap();
        assert_eq!(none.entra_api().unwrap(), None);
        assert_eq!(none.entra_ui().unwrap(), None);
        let audience_only =
            Config::from_vars(vars(&[("HUNTER_ENTRA_AUDIENCE", "api://hunter")])).unwrap();
        let err = audience_only.entra_api().unwrap_err().to_string();
        assert!(err.contains("HUNTER_ENTRA_TENANT_ID"), "{err}");
        let ui_only = Config::from_vars(vars(&[
            ("HUNTER_ENTRA_UI_CLIENT_ID", "ui-app"),
            (
                "HUNTER_ENTRA_AUTHORITY",
                "http://127.0.0.1:9/t/oauth2/v2.0/",
            ),
        ]))
        .unwrap();
        let err = ui_only.entra_ui().unwrap_err().to_string();
        assert!(err.contains("HUNTER_ENTRA_API_SCOPE"), "{err}");
    }

    #[test]
    fn when_a_dataverse_request_limit_is_set_should_read_requests_and_window() {
        let read = |text: &str| {
            Config::from_vars(vars(&[("HUNTER_D365_REQUEST_LIMIT", text)]))
                .map(|c| c.d365_request_limit)
        };
        assert_eq!(
            Config::from_vars(vars(&[])).unwrap().d365_request_limit,
            None
        );
        assert_eq!(
            read("600/30s").unwrap(),
            Some(RequestLimit {
                requests: 600,
                window: std::time::Duration::from_secs(30)
            })
        );
        assert_eq!(read("6000/5m").unwrap().unwrap().window.as_secs(), 300);
        for bad in ["600", "0/30s", "600/0", "x/30s", "600/soon"] {
            let err = read(bad).unwrap_err().to_string();
            assert!(err.contains("HUNTER_D365_REQUEST_LIMIT"), "{bad}: {err}");
        }
    }

    #[test]
    fn when_a_dns_server_is_set_should_read_it() {
        let config = Config::from_vars(vars(&[("HUNTER_DNS_SERVER", "127.0.0.1:5353")])).unwrap();
        assert_eq!(config.dns_server.as_deref(), Some("127.0.0.1:5353"));
        let blank = Config::from_vars(vars(&[("HUNTER_DNS_SERVER", " ")])).unwrap();
        assert_eq!(blank.dns_server, None);
    }

    #[test]
    fn when_variables_are_set_should_read_them_and_treat_empty_as_unset() {
        let config = Config::from_vars(vars(&[
            ("HUNTER_TABLE", "prod-hunter"),
            ("HUNTER_REFERRALS_QUEUE_URL", "http://q/hunter-referrals"),
            ("HUNTER_DYNAMICS_URL", "  "),
            ("HUNTER_PC_DIRECTIONS", "Incoming"),
            ("HUNTER_PC_STATUSES", "New,Active"),
            (
                "HUNTER_PC_REFRESH_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:1:secret:rt",
            ),
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
        assert_eq!(
            config.pc_refresh_token_secret_arn.as_deref(),
            Some("arn:aws:secretsmanager:eu-west-1:1:secret:rt")
        );
    }
}
