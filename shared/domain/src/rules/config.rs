//! Data-driven rules (ingestion and scoring): embedded `rules/hunter-rules.toml`, overridable by
//! a file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use serde::Deserialize;

use super::domain::{Domain, ascii_host};
use crate::scoring::{ScoringRules, ScoringSection};

/// The rules file compiled into the binary.
pub const EMBEDDED_RULES_TOML: &str = include_str!("../../rules/hunter-rules.toml");

static EMBEDDED: LazyLock<Rules> =
    LazyLock::new(|| match Rules::from_toml_str(EMBEDDED_RULES_TOML) {
        Ok(rules) => rules,
        // The embedded file is a compile-time constant pinned by tests; this cannot happen at runtime.
        Err(err) => panic!("embedded rules/hunter-rules.toml is invalid: {err}"),
    });

/// Why a rules file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file could not be read.
    #[error("cannot read rules file {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error("invalid rules TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// A value is present but unusable.
    #[error("invalid rules: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    eligibility: EligibilitySection,
    extraction: ExtractionSection,
    consumer_domains: ConsumerSection,
    /// Optional: a file without it (or without some of its sections) scores with the embedded
    /// scoring sections.
    scoring: Option<ScoringSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EligibilitySection {
    incoming_directions: Vec<String>,
    eligible_statuses: Vec<String>,
    excluded_substatuses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtractionSection {
    external_id_profile_types: Vec<String>,
    website_fields: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerSection {
    domains: Vec<String>,
}

/// Hunter's rules: referral ingestion (eligibility values, extraction fields, consumer domains)
/// and scoring ([`Rules::scoring`]).
///
/// Ingestion values are stored lowercased and compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    incoming_directions: BTreeSet<String>,
    eligible_statuses: BTreeSet<String>,
    excluded_substatuses: BTreeSet<String>,
    external_id_profile_types: BTreeSet<String>,
    website_fields: Vec<String>,
    consumer_domains: BTreeSet<String>,
    scoring: ScoringRules,
}

impl Default for Rules {
    /// The embedded rules (parsed once).
    fn default() -> Self {
        EMBEDDED.clone()
    }
}

impl Rules {
    /// The embedded rules, parsed once and shared.
    pub fn embedded() -> &'static Rules {
        &EMBEDDED
    }

    /// Parses rules from TOML text of the same shape as `rules/hunter-rules.toml`.
    pub fn from_toml_str(s: &str) -> Result<Self, RulesError> {
        let file: RulesFile = toml::from_str(s)?;
        let rules = Rules {
            incoming_directions: value_set(
                "eligibility.incoming_directions",
                file.eligibility.incoming_directions,
            )?,
            eligible_statuses: value_set(
                "eligibility.eligible_statuses",
                file.eligibility.eligible_statuses,
            )?,
            excluded_substatuses: lower_set(file.eligibility.excluded_substatuses),
            external_id_profile_types: lower_set(file.extraction.external_id_profile_types),
            website_fields: unique_lower(file.extraction.website_fields),
            consumer_domains: file
                .consumer_domains
                .domains
                .iter()
                .map(|d| {
                    ascii_host(d)
                        .map_err(|e| RulesError::Invalid(format!("consumer domain {d:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
            scoring: ScoringRules::from_section(file.scoring)?,
        };
        Ok(rules)
    }

    /// Loads rules from `path`, or the embedded rules when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, RulesError> {
        match path {
            None => Ok(Self::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| RulesError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_toml_str(&text)
            }
        }
    }

    /// True when the registrable domain (or a suffix of it) is a consumer/free-mail provider.
    pub fn is_consumer_domain(&self, d: &Domain) -> bool {
        let mut name = d.as_str();
        loop {
            if self.consumer_domains.contains(name) {
                return true;
            }
            match name.split_once('.') {
                Some((_, parent)) => name = parent,
                None => return false,
            }
        }
    }

    /// True when `direction` is an incoming direction (case-insensitive).
    pub fn is_incoming(&self, direction: &str) -> bool {
        contains_ci(&self.incoming_directions, direction)
    }

    /// True when `status` is an open status (case-insensitive).
    pub fn is_eligible_status(&self, status: &str) -> bool {
        contains_ci(&self.eligible_statuses, status)
    }

    /// True when `substatus` ends a referral (case-insensitive).
    pub fn is_excluded_substatus(&self, substatus: &str) -> bool {
        contains_ci(&self.excluded_substatuses, substatus)
    }

    /// True when a `customerProfile.ids[].profileType` may hold the customer's domain.
    pub fn is_external_profile_type(&self, profile_type: &str) -> bool {
        contains_ci(&self.external_id_profile_types, profile_type)
    }

    /// Lowercased `customerProfile` field names that may hold a website, in priority order.
    pub fn website_fields(&self) -> &[String] {
        &self.website_fields
    }

    /// The consumer domains, lowercase ASCII.
    pub fn consumer_domains(&self) -> impl Iterator<Item = &str> {
        self.consumer_domains.iter().map(String::as_str)
    }

    /// The scoring rules (providers, points, segments, priorities, commercial segments).
    pub fn scoring(&self) -> &ScoringRules {
        &self.scoring
    }
}

/// Whether `set` (lowercase values) holds `value` lowercased; ASCII text, the usual case, is
/// compared in place.
fn contains_ci(set: &BTreeSet<String>, value: &str) -> bool {
    let value = value.trim();
    if value.is_ascii() {
        set.iter().any(|v| v.eq_ignore_ascii_case(value))
    } else {
        set.contains(&value.to_lowercase())
    }
}

fn lower_set(values: Vec<String>) -> BTreeSet<String> {
    values
        .into_iter()
        .map(|v| v.trim().to_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

fn value_set(key: &str, values: Vec<String>) -> Result<BTreeSet<String>, RulesError> {
    let set = lower_set(values);
    if set.is_empty() {
        return Err(RulesError::Invalid(format!("{key} must not be empty")));
    }
    Ok(set)
}

fn unique_lower(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = v.trim().to_lowercase();
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rules::domain::normalize_domain;

    fn d(s: &str) -> Domain {
        normalize_domain(s).unwrap()
    }

    #[test]
    fn when_embedded_rules_parse_should_equal_default() {
        let parsed = Rules::from_toml_str(EMBEDDED_RULES_TOML).unwrap();
        assert_eq!(parsed, Rules::default());
        assert_eq!(&parsed, Rules::embedded());
        assert_eq!(Rules::load(None).unwrap(), parsed);
    }

    #[test]
    fn when_required_consumer_domain_should_be_consumer() {
        let rules = Rules::default();
        for name in [
            "gmail.com",
            "googlemail.com",
            "outlook.com",
            "hotmail.com",
            "hotmail.co.uk",
            "live.com",
            "msn.com",
            "yahoo.com",
            "yahoo.co.uk",
            "ymail.com",
            "aol.com",
            "icloud.com",
            "me.com",
            "mac.com",
            "protonmail.com",
            "proton.me",
            "zoho.com",
            "mail.com",
            "yandex.com",
            "gmx.com",
            "outlook.com.tr",
            "hotmail.fr",
            "hotmail.de",
            "hotmail.it",
            "hotmail.es",
            "live.co.uk",
            "live.fr",
            "yahoo.de",
            "yahoo.fr",
            "yahoo.es",
            "yahoo.it",
            "yahoo.co.jp",
            "yahoo.com.br",
            "gmx.de",
            "gmx.net",
            "web.de",
            "t-online.de",
            "yandex.ru",
            "mail.ru",
            "qq.com",
            "163.com",
            "126.com",
            "naver.com",
            "daum.net",
            "seznam.cz",
            "orange.fr",
            "free.fr",
            "laposte.net",
            "libero.it",
        ] {
            assert!(rules.is_consumer_domain(&d(name)), "{name}");
        }
        assert!(rules.is_consumer_domain(&d("eu.mail.GMAIL.com.")));
        assert!(!rules.is_consumer_domain(&d("contoso.com")));
        assert!(!rules.is_consumer_domain(&d("gmail.contoso.com")));
    }

    #[test]
    fn when_embedded_consumer_domain_should_be_its_own_registrable_domain() {
        for name in Rules::default().consumer_domains() {
            let reg = normalize_domain(name).unwrap();
            assert_eq!(
                reg.as_str(),
                name,
                "consumer domain {name} is not registrable"
            );
        }
    }

    #[test]
    fn when_values_differ_in_case_should_match() {
        let rules = Rules::default();
        assert!(rules.is_incoming("incoming"));
        assert!(rules.is_incoming(" INCOMING "));
        assert!(!rules.is_incoming("Outgoing"));
        assert!(rules.is_eligible_status("active"));
        assert!(!rules.is_eligible_status("Closed"));
        assert!(rules.is_excluded_substatus("ERROR"));
        assert!(!rules.is_excluded_substatus("Pending"));
        assert!(rules.is_external_profile_type("external"));
        assert!(rules.website_fields().contains(&"websiteurl".to_owned()));
    }

    #[test]
    fn when_override_toml_should_replace_values() {
        let toml = r#"
[eligibility]
incoming_directions = ["Incoming"]
eligible_statuses = ["New"]
excluded_substatuses = []
[extraction]
external_id_profile_types = ["External", "Website"]
website_fields = ["Homepage"]
[consumer_domains]
domains = ["Example.ORG."]
"#;
        let rules = Rules::from_toml_str(toml).unwrap();
        assert!(!rules.is_eligible_status("Active"));
        assert!(!rules.is_excluded_substatus("Lost"));
        assert!(rules.is_external_profile_type("website"));
        assert_eq!(rules.website_fields(), ["homepage".to_owned()]);
        assert!(rules.is_consumer_domain(&d("example.org")));
        assert!(!rules.is_consumer_domain(&d("gmail.com")));
    }

    #[test]
    fn when_toml_is_invalid_should_error() {
        assert!(matches!(
            Rules::from_toml_str("not = [toml"),
            Err(RulesError::Toml(_))
        ));
        assert!(matches!(
            Rules::from_toml_str("[eligibility]\n"),
            Err(RulesError::Toml(_))
        ));
        let bad_domain = EMBEDDED_RULES_TOML.replace("\"gmail.com\"", "\"not a domain\"");
        assert!(matches!(
            Rules::from_toml_str(&bad_domain),
            Err(RulesError::Invalid(_))
        ));
        let no_status = EMBEDDED_RULES_TOML.replace(
            "eligible_statuses = [\"New\", \"Active\"]",
            "eligible_statuses = []",
        );
        assert!(matches!(
            Rules::from_toml_str(&no_status),
            Err(RulesError::Invalid(_))
        ));
    }

    #[test]
    fn when_rules_file_missing_should_error_with_path() {
        let err = Rules::load(Some(Path::new("/nonexistent/hunter-rules.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/hunter-rules.toml"));
    }

    #[test]
    fn when_rules_file_exists_should_load_it() {
        let path = std::env::temp_dir().join(format!("hunter-rules-{}.toml", std::process::id()));
        std::fs::write(&path, EMBEDDED_RULES_TOML).unwrap();
        let loaded = Rules::load(Some(&path));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap(), Rules::default());
    }
}
