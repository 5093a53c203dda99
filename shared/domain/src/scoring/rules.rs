//! The scoring rules as the scorer uses them (read and checked by `file.rs`), and the lookup each
//! step of an assessment makes.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use serde::Deserialize;

use super::assessment::{CommercialSegment, Heat, PriorityCategory, Segment, TenantSize};
use super::host_pattern::HostPattern;
use crate::rules::normalize_domain;
use crate::scan::{DmarcPolicy, Signals};

/// The priority of a score no row of its segment's table reaches (cannot happen with checked
/// rules: every table has a row from 0).
const LAST_PRIORITY: u8 = 7;

/// Hunter's scoring rules: providers, score points, segments, priorities, commercial segments,
/// heat and priority categories (the `[scoring]` part of `rules/hunter-rules.toml`).
///
/// Built by [`Rules`](crate::rules::Rules) from its file; [`Rules::scoring`](crate::rules::Rules::scoring)
/// hands them out. The lookups below are the steps [`assess`](super::assess) takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoringRules {
    pub(super) providers: Vec<ProviderRule>,
    pub(super) other_mx_provider: String,
    pub(super) no_mx_provider: String,
    /// `Some` only when the rule is enabled.
    pub(super) azure_tenant: Option<AzureTenantRule>,
    pub(super) tenant_sizes: Vec<TenantSizeRule>,
    pub(super) score_rules: Vec<ScoreRule>,
    /// `Some` only when the bonus is enabled.
    pub(super) co_sell_bonus: Option<LabelledPoints>,
    pub(super) no_mail: NoMailRule,
    pub(super) clamp: ClampLabels,
    pub(super) segments: Classification<Segment>,
    /// One table per segment, indexed by `Segment as usize`, rows by falling `min_score`.
    pub(super) priorities: [Vec<PriorityStep>; Segment::ALL.len()],
    pub(super) commercial_segments: Classification<CommercialSegment>,
    pub(super) heat: Classification<Heat>,
    /// Indexed by `CommercialSegment as usize`.
    pub(super) priority_categories: [PriorityCategoryInfo; CommercialSegment::ALL.len()],
}

impl Default for ScoringRules {
    /// The embedded rules' scoring.
    fn default() -> Self {
        crate::rules::Rules::embedded().scoring().clone()
    }
}

/// A priority category and what it tells a seller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityCategoryInfo {
    pub category: PriorityCategory,
    /// e.g. "High Potential Greenfield".
    pub label: String,
    /// e.g. "act within 48 h".
    pub seller_action: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProviderRule {
    pub name: String,
    pub label: String,
    pub points: i32,
    /// Registrable domains, lowercase ASCII.
    pub mx_roots: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AzureTenantRule {
    pub provider: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TenantSizeRule {
    pub provider: String,
    pub hosts: Vec<(HostPattern, TenantSize)>,
    pub otherwise: TenantSize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LabelledPoints {
    pub label: String,
    pub points: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScoreRule {
    pub label: String,
    pub points: i32,
    pub when: SignalMatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NoMailRule {
    pub segment: Segment,
    pub no_mx_label: String,
    pub nxdomain_label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClampLabels {
    pub raised_to_0: String,
    pub lowered_to_100: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PriorityStep {
    pub min_score: u8,
    pub priority: u8,
}

/// What a DMARC condition of a score rule asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum DmarcMatch {
    /// A DMARC record with `p=none`.
    None,
    Quarantine,
    Reject,
    /// No DMARC record at all.
    Missing,
}

/// The conditions of a score rule; all present ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct SignalMatch {
    pub providers: Option<BTreeSet<String>>,
    pub spf: Option<bool>,
    pub dkim: Option<bool>,
    pub dmarc: Option<DmarcMatch>,
    pub spf_includes_more_than: Option<usize>,
}

impl SignalMatch {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn matches(&self, provider: &str, signals: &Signals) -> bool {
        let dmarc_matches = |wanted: DmarcMatch| match (wanted, signals.dmarc_policy) {
            (DmarcMatch::None, Some(DmarcPolicy::None))
            | (DmarcMatch::Quarantine, Some(DmarcPolicy::Quarantine))
            | (DmarcMatch::Reject, Some(DmarcPolicy::Reject))
            | (DmarcMatch::Missing, None) => true,
            (DmarcMatch::None | DmarcMatch::Quarantine | DmarcMatch::Reject, _)
            | (DmarcMatch::Missing, Some(_)) => false,
        };
        self.providers.as_ref().is_none_or(|p| p.contains(provider))
            && self.spf.is_none_or(|spf| spf == signals.spf.is_some())
            && self.dkim.is_none_or(|dkim| dkim == signals.dkim)
            && self.dmarc.is_none_or(dmarc_matches)
            && self
                .spf_includes_more_than
                .is_none_or(|limit| signals.spf_includes.len() > limit)
    }
}

/// Which leads a classification rule is for; a part left out matches any lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LeadMatch {
    pub segments: Option<BTreeSet<Segment>>,
    pub commercial_segments: Option<BTreeSet<CommercialSegment>>,
    pub providers: Option<BTreeSet<String>>,
    pub scores: RangeInclusive<u8>,
}

/// What a classification rule is matched against.
#[derive(Debug, Clone, Copy)]
struct LeadFacts<'a> {
    provider: &'a str,
    score: u8,
    segment: Option<Segment>,
    commercial_segment: Option<CommercialSegment>,
}

impl LeadMatch {
    fn matches(&self, facts: &LeadFacts<'_>) -> bool {
        fn within<T: Ord>(set: Option<&BTreeSet<T>>, value: Option<T>) -> bool {
            set.is_none_or(|set| value.is_some_and(|v| set.contains(&v)))
        }
        within(self.segments.as_ref(), facts.segment)
            && within(self.commercial_segments.as_ref(), facts.commercial_segment)
            && self
                .providers
                .as_ref()
                .is_none_or(|p| p.contains(facts.provider))
            && self.scores.contains(&facts.score)
    }
}

/// An ordered list of rules, the first that matches gives the value, else `otherwise`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Classification<T> {
    pub rules: Vec<(LeadMatch, T)>,
    pub otherwise: T,
}

impl<T: Copy> Classification<T> {
    fn classify(&self, facts: &LeadFacts<'_>) -> T {
        self.rules
            .iter()
            .find(|(rule, _)| rule.matches(facts))
            .map_or(self.otherwise, |(_, value)| *value)
    }
}

impl ScoringRules {
    /// The provider of a domain whose preferred MX host is `mx_host`: the row listing the host's
    /// registrable root (or a domain the root lies under: the public suffix list makes some
    /// provider subdomains suffixes, e.g. `us-east-1.amazonaws.com`), else the provider of other
    /// MX roots (`Local`); the no-MX provider (`Unknown`) when there is no host or it has no
    /// registrable root.
    pub fn provider_for_mx(&self, mx_host: Option<&str>) -> &str {
        let Some(root) = mx_host.and_then(|host| normalize_domain(host).ok()) else {
            return &self.no_mx_provider;
        };
        let root = root.as_str();
        self.providers
            .iter()
            .find(|provider| {
                provider.mx_roots.iter().any(|listed| {
                    root == listed
                        || root
                            .strip_suffix(listed.as_str())
                            .is_some_and(|head| head.ends_with('.'))
                })
            })
            .map_or(&self.other_mx_provider, |provider| &provider.name)
    }

    /// The points a provider's line gives, `None` for a name the rules do not know.
    pub fn provider_points(&self, provider: &str) -> Option<i32> {
        self.provider(provider).map(|p| p.points)
    }

    /// The tenant size of a provider that has a tenant-size table, from its MX host: the first
    /// host pattern the host matches, else the table's default.
    pub fn tenant_size(&self, provider: &str, mx_host: Option<&str>) -> Option<TenantSize> {
        let table = self.tenant_sizes.iter().find(|t| t.provider == provider)?;
        let size = mx_host
            .and_then(|host| {
                table
                    .hosts
                    .iter()
                    .find(|(pattern, _)| pattern.matches(host))
            })
            .map_or(table.otherwise, |(_, size)| *size);
        Some(size)
    }

    /// The segment of a lead: the first segment rule that matches its provider and score.
    pub fn segment(&self, provider: &str, score: u8) -> Segment {
        self.segments.classify(&LeadFacts {
            provider,
            score,
            segment: None,
            commercial_segment: None,
        })
    }

    /// The priority (1 best ..= 7) of a score in its segment's table.
    pub fn priority(&self, segment: Segment, score: u8) -> u8 {
        self.priorities[segment as usize]
            .iter()
            .find(|step| score >= step.min_score)
            .map_or(LAST_PRIORITY, |step| step.priority)
    }

    /// The commercial segment: the first rule that matches the segment, provider and score.
    pub fn commercial_segment(
        &self,
        segment: Segment,
        provider: &str,
        score: u8,
    ) -> CommercialSegment {
        self.commercial_segments.classify(&LeadFacts {
            provider,
            score,
            segment: Some(segment),
            commercial_segment: None,
        })
    }

    /// The heat of a commercial segment at a score: the first heat rule that matches.
    pub fn heat(&self, commercial_segment: CommercialSegment, score: u8) -> Heat {
        self.heat.classify(&LeadFacts {
            provider: "",
            score,
            segment: None,
            commercial_segment: Some(commercial_segment),
        })
    }

    /// The priority category of a commercial segment, its label and what it asks of a seller.
    pub fn priority_category(
        &self,
        commercial_segment: CommercialSegment,
    ) -> &PriorityCategoryInfo {
        &self.priority_categories[commercial_segment as usize]
    }

    /// Whether the co-sell bonus is on.
    pub fn co_sell_bonus_enabled(&self) -> bool {
        self.co_sell_bonus.is_some()
    }

    /// Whether a customer Azure tenant decides the provider.
    pub fn azure_tenant_rule_enabled(&self) -> bool {
        self.azure_tenant.is_some()
    }

    pub(super) fn provider(&self, name: &str) -> Option<&ProviderRule> {
        self.providers.iter().find(|p| p.name == name)
    }
}
