//! The `[scoring]` part of the rules file as written, and its checking into [`ScoringRules`].
//!
//! Every section is optional in a file: one that is left out is taken from the embedded
//! `rules/hunter-rules.toml`, so rules files written before scoring existed still load.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use serde::Deserialize;

use super::assessment::{CommercialSegment, Heat, PriorityCategory, Segment, TenantSize};
use super::host_pattern::HostPattern;
use super::rules::{
    AzureTenantRule, ClampLabels, Classification, DmarcMatch, LabelledPoints, LeadMatch,
    NoMailRule, PriorityCategoryInfo, PriorityStep, ProviderRule, ScoreRule, ScoringRules,
    SignalMatch, TenantSizeRule,
};
use crate::rules::{EMBEDDED_RULES_TOML, RulesError, normalize_domain};

/// Points of one rule must lie within this range.
const POINTS_RANGE: std::ops::RangeInclusive<i32> = -100..=100;
/// Scores lie within 0..=100.
const MAX_SCORE: u8 = 100;
/// Priorities run from 1 (best) to 7.
const PRIORITY_RANGE: std::ops::RangeInclusive<u8> = 1..=7;

/// The embedded file's `[scoring]`: the defaults of sections a file leaves out.
static EMBEDDED_SECTION: LazyLock<Result<ScoringSection, String>> = LazyLock::new(|| {
    #[derive(Deserialize)]
    struct OnlyScoring {
        #[serde(default)]
        scoring: ScoringSection,
    }
    toml::from_str::<OnlyScoring>(EMBEDDED_RULES_TOML)
        .map(|file| file.scoring)
        .map_err(|err| err.to_string())
});

/// `[scoring]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScoringSection {
    providers: Option<ProvidersSection>,
    azure_tenant: Option<AzureTenantSection>,
    tenant_sizes: Option<Vec<TenantSizeSection>>,
    score_rules: Option<Vec<ScoreRuleSection>>,
    co_sell_bonus: Option<CoSellBonusSection>,
    no_mail: Option<NoMailSection>,
    clamp: Option<ClampSection>,
    segments: Option<ClassificationSection<SegmentRuleSection, Segment>>,
    priorities: Option<BTreeMap<Segment, Vec<PriorityStepSection>>>,
    commercial_segments: Option<ClassificationSection<CommercialRuleSection, CommercialSegment>>,
    heat: Option<ClassificationSection<HeatRuleSection, Heat>>,
    priority_categories: Option<BTreeMap<CommercialSegment, PriorityCategorySection>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProvidersSection {
    other_mx: String,
    no_mx: String,
    table: Vec<ProviderSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderSection {
    name: String,
    label: String,
    points: i32,
    #[serde(default)]
    mx_roots: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AzureTenantSection {
    enabled: bool,
    provider: String,
    label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantSizeSection {
    provider: String,
    otherwise: TenantSize,
    hosts: Vec<HostSizeSection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSizeSection {
    pattern: String,
    size: TenantSize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScoreRuleSection {
    label: String,
    points: i32,
    when: SignalConditionSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalConditionSection {
    providers: Option<Vec<String>>,
    spf: Option<bool>,
    dkim: Option<bool>,
    dmarc: Option<DmarcMatch>,
    spf_includes_more_than: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoSellBonusSection {
    enabled: bool,
    label: String,
    points: i32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoMailSection {
    segment: Segment,
    no_mx_label: String,
    nxdomain_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClampSection {
    raised_to_0_label: String,
    lowered_to_100_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassificationSection<R, T> {
    otherwise: T,
    rules: Vec<R>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentRuleSection {
    segment: Segment,
    providers: Option<Vec<String>>,
    min_score: Option<u8>,
    max_score: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommercialRuleSection {
    commercial_segment: CommercialSegment,
    segments: Option<Vec<Segment>>,
    providers: Option<Vec<String>>,
    min_score: Option<u8>,
    max_score: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeatRuleSection {
    heat: Heat,
    commercial_segments: Option<Vec<CommercialSegment>>,
    min_score: Option<u8>,
    max_score: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityStepSection {
    min_score: u8,
    priority: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorityCategorySection {
    category: PriorityCategory,
    label: String,
    seller_action: String,
}

impl ScoringRules {
    /// Checks a file's `[scoring]` (sections left out, or the whole of it, taken from the
    /// embedded file) and builds the rules.
    pub(crate) fn from_section(section: Option<ScoringSection>) -> Result<Self, RulesError> {
        let defaults = EMBEDDED_SECTION
            .as_ref()
            .map_err(|err| invalid(format!("embedded rules file: {err}")))?;
        let section = section.unwrap_or_default();
        // The file's section, else the embedded file's.
        macro_rules! own_or_embedded {
            ($name:ident) => {
                own_or_embedded(stringify!($name), section.$name, defaults.$name.as_ref())?
            };
        }
        let providers = own_or_embedded!(providers);
        let providers = check_providers(providers)?;
        let known = ProviderNames(providers.table.iter().map(|p| p.name.clone()).collect());
        let azure_tenant = own_or_embedded!(azure_tenant);
        let tenant_sizes = own_or_embedded!(tenant_sizes);
        let score_rules = own_or_embedded!(score_rules);
        let co_sell_bonus = own_or_embedded!(co_sell_bonus);
        let no_mail = own_or_embedded!(no_mail);
        let clamp = own_or_embedded!(clamp);
        let segments = own_or_embedded!(segments);
        let priorities = own_or_embedded!(priorities);
        let commercial_segments = own_or_embedded!(commercial_segments);
        let heat = own_or_embedded!(heat);
        let priority_categories = own_or_embedded!(priority_categories);

        Ok(Self {
            azure_tenant: check_azure_tenant(azure_tenant, &known)?,
            tenant_sizes: check_tenant_sizes(tenant_sizes, &known)?,
            score_rules: check_score_rules(score_rules, &known)?,
            co_sell_bonus: check_co_sell_bonus(co_sell_bonus)?,
            no_mail: NoMailRule {
                segment: no_mail.segment,
                no_mx_label: label("scoring.no_mail.no_mx_label", no_mail.no_mx_label)?,
                nxdomain_label: label("scoring.no_mail.nxdomain_label", no_mail.nxdomain_label)?,
            },
            clamp: ClampLabels {
                raised_to_0: label("scoring.clamp.raised_to_0_label", clamp.raised_to_0_label)?,
                lowered_to_100: label(
                    "scoring.clamp.lowered_to_100_label",
                    clamp.lowered_to_100_label,
                )?,
            },
            segments: check_segments(segments, &known)?,
            priorities: check_priorities(priorities)?,
            commercial_segments: check_commercial_segments(commercial_segments, &known)?,
            heat: check_heat(heat)?,
            priority_categories: check_priority_categories(priority_categories)?,
            providers: providers.table,
            other_mx_provider: providers.other_mx,
            no_mx_provider: providers.no_mx,
        })
    }
}

/// A file's section, else the embedded file's.
fn own_or_embedded<T: Clone>(
    name: &str,
    own: Option<T>,
    embedded: Option<&T>,
) -> Result<T, RulesError> {
    own.or_else(|| embedded.cloned())
        .ok_or_else(|| invalid(format!("scoring.{name} is missing from the embedded rules")))
}

fn invalid(message: String) -> RulesError {
    RulesError::Invalid(message)
}

/// The provider names the table defines, for checking the rules that name one.
struct ProviderNames(Vec<String>);

impl ProviderNames {
    fn check(&self, key: &str, name: &str) -> Result<String, RulesError> {
        if self.0.iter().any(|known| known == name) {
            Ok(name.to_owned())
        } else {
            Err(invalid(format!(
                "{key}: unknown provider {name:?} (the table has {})",
                self.0.join(", ")
            )))
        }
    }

    fn check_set(
        &self,
        key: &str,
        names: Option<Vec<String>>,
    ) -> Result<Option<BTreeSet<String>>, RulesError> {
        let Some(names) = names else {
            return Ok(None);
        };
        if names.is_empty() {
            return Err(invalid(format!(
                "{key}: an empty provider list matches nothing (leave it out to match any)"
            )));
        }
        names
            .iter()
            .map(|name| self.check(key, name))
            .collect::<Result<_, _>>()
            .map(Some)
    }
}

fn label(key: &str, text: String) -> Result<String, RulesError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(invalid(format!("{key} must not be empty")));
    }
    Ok(text.to_owned())
}

fn points(key: &str, points: i32) -> Result<i32, RulesError> {
    if !POINTS_RANGE.contains(&points) {
        return Err(invalid(format!(
            "{key} = {points} is outside {}..={}",
            POINTS_RANGE.start(),
            POINTS_RANGE.end()
        )));
    }
    Ok(points)
}

fn score_range(
    key: &str,
    min: Option<u8>,
    max: Option<u8>,
) -> Result<std::ops::RangeInclusive<u8>, RulesError> {
    let (min, max) = (min.unwrap_or(0), max.unwrap_or(MAX_SCORE));
    if max > MAX_SCORE || min > max {
        return Err(invalid(format!(
            "{key}: min_score {min} and max_score {max} do not make a range within 0..={MAX_SCORE}"
        )));
    }
    Ok(min..=max)
}

fn non_empty_set<T: Ord>(
    key: &str,
    values: Option<Vec<T>>,
) -> Result<Option<BTreeSet<T>>, RulesError> {
    match values {
        Some(values) if values.is_empty() => Err(invalid(format!(
            "{key}: an empty list matches nothing (leave it out to match any)"
        ))),
        values => Ok(values.map(|v| v.into_iter().collect())),
    }
}

/// The provider table, checked, with the providers of other MX roots and of no MX root.
struct CheckedProviders {
    table: Vec<ProviderRule>,
    other_mx: String,
    no_mx: String,
}

fn check_providers(section: ProvidersSection) -> Result<CheckedProviders, RulesError> {
    let mut providers: Vec<ProviderRule> = Vec::with_capacity(section.table.len());
    for (i, row) in section.table.into_iter().enumerate() {
        let key = format!("scoring.providers.table[{i}]");
        let name = label(&format!("{key}.name"), row.name)?;
        if providers.iter().any(|p| p.name == name) {
            return Err(invalid(format!("{key}: provider {name:?} is listed twice")));
        }
        let mut mx_roots = BTreeSet::new();
        for root in row.mx_roots {
            let normalized = normalize_domain(&root)
                .map_err(|err| invalid(format!("{key}.mx_roots: {root:?}: {err}")))?
                .into_string();
            if normalized != root.trim().trim_end_matches('.').to_ascii_lowercase() {
                return Err(invalid(format!(
                    "{key}.mx_roots: {root:?} is not a registrable domain (its root is {normalized})"
                )));
            }
            if let Some(other) = providers.iter().find(|p| p.mx_roots.contains(&normalized)) {
                return Err(invalid(format!(
                    "{key}.mx_roots: {normalized} is already a root of {}",
                    other.name
                )));
            }
            mx_roots.insert(normalized);
        }
        providers.push(ProviderRule {
            label: label(&format!("{key}.label"), row.label)?,
            points: points(&format!("{key}.points"), row.points)?,
            name,
            mx_roots,
        });
    }
    let known = ProviderNames(providers.iter().map(|p| p.name.clone()).collect());
    let other_mx = known.check("scoring.providers.other_mx", section.other_mx.trim())?;
    let no_mx = known.check("scoring.providers.no_mx", section.no_mx.trim())?;
    Ok(CheckedProviders {
        table: providers,
        other_mx,
        no_mx,
    })
}

fn check_azure_tenant(
    section: AzureTenantSection,
    known: &ProviderNames,
) -> Result<Option<AzureTenantRule>, RulesError> {
    let rule = AzureTenantRule {
        provider: known.check("scoring.azure_tenant.provider", section.provider.trim())?,
        label: label("scoring.azure_tenant.label", section.label)?,
    };
    Ok(section.enabled.then_some(rule))
}

fn check_co_sell_bonus(section: CoSellBonusSection) -> Result<Option<LabelledPoints>, RulesError> {
    let bonus = LabelledPoints {
        label: label("scoring.co_sell_bonus.label", section.label)?,
        points: points("scoring.co_sell_bonus.points", section.points)?,
    };
    Ok(section.enabled.then_some(bonus))
}

fn check_tenant_sizes(
    sections: Vec<TenantSizeSection>,
    known: &ProviderNames,
) -> Result<Vec<TenantSizeRule>, RulesError> {
    let mut tables: Vec<TenantSizeRule> = Vec::with_capacity(sections.len());
    for (i, section) in sections.into_iter().enumerate() {
        let key = format!("scoring.tenant_sizes[{i}]");
        let provider = known.check(&format!("{key}.provider"), section.provider.trim())?;
        if tables.iter().any(|t| t.provider == provider) {
            return Err(invalid(format!(
                "{key}: provider {provider:?} has a tenant-size table already"
            )));
        }
        let hosts = section
            .hosts
            .into_iter()
            .map(|row| {
                HostPattern::parse(&row.pattern)
                    .map(|pattern| (pattern, row.size))
                    .map_err(|err| invalid(format!("{key}.hosts: {err}")))
            })
            .collect::<Result<_, _>>()?;
        tables.push(TenantSizeRule {
            provider,
            hosts,
            otherwise: section.otherwise,
        });
    }
    Ok(tables)
}

fn check_score_rules(
    sections: Vec<ScoreRuleSection>,
    known: &ProviderNames,
) -> Result<Vec<ScoreRule>, RulesError> {
    sections
        .into_iter()
        .enumerate()
        .map(|(i, section)| {
            let key = format!("scoring.score_rules[{i}]");
            let when = section.when;
            let when = SignalMatch {
                providers: known.check_set(&format!("{key}.when.providers"), when.providers)?,
                spf: when.spf,
                dkim: when.dkim,
                dmarc: when.dmarc,
                spf_includes_more_than: when.spf_includes_more_than,
            };
            if when.is_empty() {
                return Err(invalid(format!(
                    "{key}.when has no condition (a rule must say when it applies)"
                )));
            }
            Ok(ScoreRule {
                label: label(&format!("{key}.label"), section.label)?,
                points: points(&format!("{key}.points"), section.points)?,
                when,
            })
        })
        .collect()
}

fn check_segments(
    section: ClassificationSection<SegmentRuleSection, Segment>,
    known: &ProviderNames,
) -> Result<Classification<Segment>, RulesError> {
    let rules = section
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let key = format!("scoring.segments.rules[{i}]");
            let matcher = LeadMatch {
                segments: None,
                commercial_segments: None,
                providers: known.check_set(&format!("{key}.providers"), rule.providers)?,
                scores: score_range(&key, rule.min_score, rule.max_score)?,
            };
            Ok((matcher, rule.segment))
        })
        .collect::<Result<_, RulesError>>()?;
    Ok(Classification {
        rules,
        otherwise: section.otherwise,
    })
}

fn check_commercial_segments(
    section: ClassificationSection<CommercialRuleSection, CommercialSegment>,
    known: &ProviderNames,
) -> Result<Classification<CommercialSegment>, RulesError> {
    let rules = section
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let key = format!("scoring.commercial_segments.rules[{i}]");
            let matcher = LeadMatch {
                segments: non_empty_set(&format!("{key}.segments"), rule.segments)?,
                commercial_segments: None,
                providers: known.check_set(&format!("{key}.providers"), rule.providers)?,
                scores: score_range(&key, rule.min_score, rule.max_score)?,
            };
            Ok((matcher, rule.commercial_segment))
        })
        .collect::<Result<_, RulesError>>()?;
    Ok(Classification {
        rules,
        otherwise: section.otherwise,
    })
}

fn check_heat(
    section: ClassificationSection<HeatRuleSection, Heat>,
) -> Result<Classification<Heat>, RulesError> {
    let rules = section
        .rules
        .into_iter()
        .enumerate()
        .map(|(i, rule)| {
            let key = format!("scoring.heat.rules[{i}]");
            let matcher = LeadMatch {
                segments: None,
                commercial_segments: non_empty_set(
                    &format!("{key}.commercial_segments"),
                    rule.commercial_segments,
                )?,
                providers: None,
                scores: score_range(&key, rule.min_score, rule.max_score)?,
            };
            Ok((matcher, rule.heat))
        })
        .collect::<Result<_, RulesError>>()?;
    Ok(Classification {
        rules,
        otherwise: section.otherwise,
    })
}

fn check_priorities(
    mut tables: BTreeMap<Segment, Vec<PriorityStepSection>>,
) -> Result<[Vec<PriorityStep>; Segment::ALL.len()], RulesError> {
    // In the order of Segment::ALL (declaration order), so `segment as usize` finds its table.
    let checked: Vec<Vec<PriorityStep>> = Segment::ALL
        .iter()
        .map(|&segment| {
            let key = format!("scoring.priorities.{segment}");
            let rows = tables
                .remove(&segment)
                .ok_or_else(|| invalid(format!("{key} is missing: every segment needs a table")))?;
            check_priority_table(&key, rows)
        })
        .collect::<Result<_, _>>()?;
    checked
        .try_into()
        .map_err(|_| invalid("scoring.priorities: one table per segment".to_owned()))
}

fn check_priority_table(
    key: &str,
    rows: Vec<PriorityStepSection>,
) -> Result<Vec<PriorityStep>, RulesError> {
    let mut steps: Vec<PriorityStep> = Vec::with_capacity(rows.len());
    for row in rows {
        if row.min_score > MAX_SCORE || !PRIORITY_RANGE.contains(&row.priority) {
            return Err(invalid(format!(
                "{key}: min_score {} must be within 0..={MAX_SCORE} and priority {} within {}..={}",
                row.min_score,
                row.priority,
                PRIORITY_RANGE.start(),
                PRIORITY_RANGE.end()
            )));
        }
        if steps.iter().any(|s| s.min_score == row.min_score) {
            return Err(invalid(format!(
                "{key}: min_score {} is listed twice",
                row.min_score
            )));
        }
        steps.push(PriorityStep {
            min_score: row.min_score,
            priority: row.priority,
        });
    }
    if !steps.iter().any(|s| s.min_score == 0) {
        return Err(invalid(format!(
            "{key} needs a row with min_score = 0 (the priority of every lower score)"
        )));
    }
    steps.sort_by_key(|s| std::cmp::Reverse(s.min_score));
    Ok(steps)
}

fn check_priority_categories(
    mut categories: BTreeMap<CommercialSegment, PriorityCategorySection>,
) -> Result<[PriorityCategoryInfo; CommercialSegment::ALL.len()], RulesError> {
    // In the order of CommercialSegment::ALL, so `commercial as usize` finds its category.
    let checked: Vec<PriorityCategoryInfo> = CommercialSegment::ALL
        .iter()
        .map(|&commercial| {
            let key = format!("scoring.priority_categories.{commercial}");
            let row = categories.remove(&commercial).ok_or_else(|| {
                invalid(format!(
                    "{key} is missing: every commercial segment needs a category"
                ))
            })?;
            Ok(PriorityCategoryInfo {
                category: row.category,
                label: label(&format!("{key}.label"), row.label)?,
                seller_action: label(&format!("{key}.seller_action"), row.seller_action)?,
            })
        })
        .collect::<Result<_, RulesError>>()?;
    checked.try_into().map_err(|_| {
        invalid("scoring.priority_categories: one category per commercial segment".to_owned())
    })
}
