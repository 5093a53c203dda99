//! What a DNS scan of a company domain found, read from the raw answers: the MX hosts, the SPF
//! record and its includes, the DKIM selectors that answer, the DMARC policy and coverage.
//!
//! The scanner (an adapter) only asks DNS; every reading of what DNS said lives here, so the
//! rules and their tests need no network.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::rules::Domain;

/// Where a domain's scan stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanState {
    /// Not scanned yet.
    #[default]
    Pending,
    /// Scanned: the domain has MX records.
    Ok,
    /// The domain exists but receives no mail (no MX records).
    NoMx,
    /// The domain does not exist.
    Nxdomain,
    /// Its nameservers failed to answer (SERVFAIL, refused).
    Servfail,
    /// No answer within the scan's deadline.
    Timeout,
}

impl ScanState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Ok => "ok",
            Self::NoMx => "no_mx",
            Self::Nxdomain => "nxdomain",
            Self::Servfail => "servfail",
            Self::Timeout => "timeout",
        }
    }

    /// Whether the scan says what the domain's mail looks like, so a score can be given: MX
    /// records, none, or no such domain. SERVFAIL and timeouts say nothing (a rescan that fails
    /// keeps the last score).
    pub fn is_conclusive(self) -> bool {
        matches!(self, Self::Ok | Self::NoMx | Self::Nxdomain)
    }
}

/// One MX record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MxRecord {
    /// Lower is preferred.
    pub preference: u16,
    /// The mail host, lowercase, without the trailing dot.
    pub host: String,
}

/// The DNS answers a scan collected, before any reading.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsAnswers {
    pub mx: Vec<MxRecord>,
    /// TXT records at the apex, each record's strings joined (RFC 7208 §3.3).
    pub apex_txt: Vec<String>,
    /// TXT records at `{selector}._domainkey.{domain}`, per selector that answered.
    pub dkim_txt: Vec<(String, Vec<String>)>,
    /// TXT records at `_dmarc.{domain}`.
    pub dmarc_txt: Vec<String>,
}

/// A DMARC policy (`p=`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// What the scan says about a domain's mail.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signals {
    /// MX hosts, preferred first.
    pub mx: Vec<MxRecord>,
    /// The `v=spf1` record at the apex, if any.
    pub spf: Option<String>,
    /// Its `include:` targets.
    pub spf_includes: Vec<String>,
    /// Whether a DKIM key answered at any probed selector.
    pub dkim: bool,
    /// The selectors that answered with a DKIM key.
    pub dkim_selectors: Vec<String>,
    /// The DMARC policy, if `_dmarc` holds a DMARC record.
    pub dmarc_policy: Option<DmarcPolicy>,
    /// The share of mail the policy covers (`pct=`, 100 when absent).
    pub dmarc_coverage: Option<u8>,
}

impl Signals {
    /// Reads the raw answers.
    pub fn read(answers: &DnsAnswers) -> Self {
        let mut mx = answers.mx.clone();
        mx.sort();
        mx.dedup();
        let spf = answers
            .apex_txt
            .iter()
            .find(|txt| is_spf(txt))
            .map(|txt| txt.trim().to_owned());
        let spf_includes = spf.as_deref().map(spf_includes).unwrap_or_default();
        let dkim_selectors: Vec<String> = answers
            .dkim_txt
            .iter()
            .filter(|(_, records)| records.iter().any(|r| is_dkim_key(r)))
            .map(|(selector, _)| selector.clone())
            .collect();
        let dmarc = answers.dmarc_txt.iter().find_map(|txt| dmarc(txt));
        Self {
            mx,
            spf,
            spf_includes,
            dkim: !dkim_selectors.is_empty(),
            dkim_selectors,
            dmarc_policy: dmarc.map(|(policy, _)| policy),
            dmarc_coverage: dmarc.map(|(_, coverage)| coverage),
        }
    }

    /// The preferred (lowest preference) MX host.
    pub fn preferred_mx(&self) -> Option<&str> {
        self.mx
            .iter()
            .min_by_key(|m| (m.preference, &m.host))
            .map(|m| m.host.as_str())
    }
}

/// One scan of one domain.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DomainScan {
    pub domain: Domain,
    pub state: ScanState,
    pub signals: Signals,
    pub scanned_at: DateTime<Utc>,
    /// Why the scan ended as it did when it was not `ok` (e.g. the failed lookup).
    pub detail: Option<String>,
}

fn is_spf(txt: &str) -> bool {
    let txt = txt.trim_start();
    txt.len() >= 6
        && txt[..6].eq_ignore_ascii_case("v=spf1")
        && txt[6..].chars().next().is_none_or(char::is_whitespace)
}

/// The `include:` targets of an SPF record (qualifiers allowed: `+include:`, `~include:`).
fn spf_includes(spf: &str) -> Vec<String> {
    spf.split_whitespace()
        .filter_map(|term| {
            let term = term.trim_start_matches(['+', '-', '~', '?']);
            let (name, value) = term.split_once(':')?;
            name.eq_ignore_ascii_case("include")
                .then(|| value.trim_end_matches('.').to_ascii_lowercase())
        })
        .filter(|target| !target.is_empty())
        .collect()
}

/// A DKIM key record: `v=DKIM1` or a `p=` tag (the version tag is optional, RFC 6376 §3.6.1).
/// An empty `p=` is a revoked key.
fn is_dkim_key(txt: &str) -> bool {
    let tags = tags(txt);
    let version_ok = tags
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("v"))
        .is_none_or(|(_, v)| v.eq_ignore_ascii_case("DKIM1"));
    let key = tags.iter().find(|(k, _)| k.eq_ignore_ascii_case("p"));
    version_ok && key.is_some_and(|(_, v)| !v.is_empty())
}

/// The policy and coverage of a DMARC record (`v=DMARC1; p=...; pct=...`).
fn dmarc(txt: &str) -> Option<(DmarcPolicy, u8)> {
    let tags = tags(txt);
    let (first, version) = tags.first()?;
    if !first.eq_ignore_ascii_case("v") || !version.eq_ignore_ascii_case("DMARC1") {
        return None;
    }
    let value = |name: &str| {
        tags.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let policy = match value("p")?.to_ascii_lowercase().as_str() {
        "none" => DmarcPolicy::None,
        "quarantine" => DmarcPolicy::Quarantine,
        "reject" => DmarcPolicy::Reject,
        _ => return None,
    };
    let coverage = value("pct")
        .and_then(|p| p.parse::<u8>().ok())
        .map_or(100, |p| p.min(100));
    Some((policy, coverage))
}

/// `tag=value` pairs separated by `;`, trimmed.
fn tags(txt: &str) -> Vec<(String, String)> {
    txt.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mx(preference: u16, host: &str) -> MxRecord {
        MxRecord {
            preference,
            host: host.to_owned(),
        }
    }

    #[test]
    fn when_several_mx_answer_should_prefer_the_lowest_preference() {
        let signals = Signals::read(&DnsAnswers {
            mx: vec![
                mx(20, "alt1.aspmx.l.google.com"),
                mx(10, "aspmx.l.google.com"),
                mx(20, "alt1.aspmx.l.google.com"),
            ],
            ..DnsAnswers::default()
        });
        assert_eq!(signals.preferred_mx(), Some("aspmx.l.google.com"));
        assert_eq!(signals.mx.len(), 2, "duplicates read once");
        assert_eq!(Signals::default().preferred_mx(), None);
    }

    #[test]
    fn when_the_apex_has_an_spf_record_should_read_it_and_its_includes() {
        let signals = Signals::read(&DnsAnswers {
            apex_txt: vec![
                "google-site-verification=abc".to_owned(),
                "v=spf1 include:spf.protection.outlook.com +include:_spf.google.com ~include:mailgun.org. ip4:1.2.3.4 -all".to_owned(),
            ],
            ..DnsAnswers::default()
        });
        assert!(
            signals
                .spf
                .as_deref()
                .is_some_and(|s| s.starts_with("v=spf1 "))
        );
        assert_eq!(
            signals.spf_includes,
            [
                "spf.protection.outlook.com",
                "_spf.google.com",
                "mailgun.org"
            ]
        );
    }

    #[test]
    fn when_a_txt_only_looks_like_spf_should_not_count() {
        for txt in ["v=spf10 -all", "spf1 include:x", "v=DMARC1; p=none", ""] {
            let signals = Signals::read(&DnsAnswers {
                apex_txt: vec![txt.to_owned()],
                ..DnsAnswers::default()
            });
            assert_eq!(signals.spf, None, "{txt}");
        }
        let upper = Signals::read(&DnsAnswers {
            apex_txt: vec!["V=SPF1 -all".to_owned()],
            ..DnsAnswers::default()
        });
        assert!(upper.spf.is_some());
    }

    #[test]
    fn when_dkim_selectors_answer_should_list_those_with_a_key() {
        let signals = Signals::read(&DnsAnswers {
            dkim_txt: vec![
                (
                    "selector1".to_owned(),
                    vec!["v=DKIM1; k=rsa; p=MIGf".to_owned()],
                ),
                ("selector2".to_owned(), vec!["k=rsa; p=MIIB".to_owned()]),
                ("google".to_owned(), vec!["v=DKIM1; p=".to_owned()]),
                ("default".to_owned(), vec!["not a key".to_owned()]),
            ],
            ..DnsAnswers::default()
        });
        assert!(signals.dkim);
        assert_eq!(signals.dkim_selectors, ["selector1", "selector2"]);
        assert!(!Signals::read(&DnsAnswers::default()).dkim);
    }

    #[test]
    fn when_a_dmarc_record_answers_should_read_policy_and_coverage() {
        let read = |txt: &str| {
            let s = Signals::read(&DnsAnswers {
                dmarc_txt: vec![txt.to_owned()],
                ..DnsAnswers::default()
            });
            (s.dmarc_policy, s.dmarc_coverage)
        };
        assert_eq!(
            read("v=DMARC1; p=reject; rua=mailto:d@contoso.com"),
            (Some(DmarcPolicy::Reject), Some(100))
        );
        assert_eq!(
            read("v=DMARC1;p=quarantine;pct=25"),
            (Some(DmarcPolicy::Quarantine), Some(25))
        );
        assert_eq!(
            read("v=DMARC1; p=none; pct=400"),
            (Some(DmarcPolicy::None), Some(100))
        );
        assert_eq!(read("v=DMARC1; p=monitor"), (None, None), "unknown policy");
        assert_eq!(
            read("p=reject; v=DMARC1"),
            (None, None),
            "v= must come first"
        );
        assert_eq!(read("v=spf1 -all"), (None, None));
    }

    #[test]
    fn when_states_are_named_should_match_their_serialized_form() {
        for state in [
            ScanState::Pending,
            ScanState::Ok,
            ScanState::NoMx,
            ScanState::Nxdomain,
            ScanState::Servfail,
            ScanState::Timeout,
        ] {
            assert_eq!(
                serde_json::to_value(state).ok(),
                Some(serde_json::Value::from(state.as_str()))
            );
        }
        assert!(ScanState::NoMx.is_conclusive() && ScanState::Nxdomain.is_conclusive());
        assert!(!ScanState::Timeout.is_conclusive() && !ScanState::Servfail.is_conclusive());
    }
}
