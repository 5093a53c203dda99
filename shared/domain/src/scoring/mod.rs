//! Hunter's scoring: what a domain's DNS scan says about a company as a lead, as data-driven
//! rules (the `[scoring]` sections of `rules/hunter-rules.toml`, see
//! `docs/reference/hunter-rules.md`).
//!
//! [`assess`] takes a lead's scan ([`ScoreInput`]) through these steps, each one a lookup in
//! [`ScoringRules`] (get them from [`Rules::scoring`](crate::rules::Rules::scoring)):
//!
//! 1. **Scan state.** `no_mx` and `nxdomain` give a fixed answer (`[scoring.no_mail]`: score 0,
//!    segment Skip, the no-MX provider, one line saying why); `pending`, `servfail` and
//!    `timeout` give none (`None`: the pipeline keeps the last good assessment).
//! 2. **Provider** (`[scoring.providers]`): the registrable root of the preferred MX host looked
//!    up in the provider table; a root in no row is `Local`, no root `Unknown`. Optionally
//!    (`[scoring.azure_tenant]`, off by default) a customer Azure tenant makes it M365.
//! 3. **Tenant size** (`[[scoring.tenant_sizes]]`): for M365 and Google, from MX host patterns.
//! 4. **Score**: the provider's points, then every `[[scoring.score_rules]]` row whose
//!    conditions hold (signals and risks), then the co-sell bonus (`[scoring.co_sell_bonus]`,
//!    off by default); each is one [`ScoreLine`]. The sum is clamped to 0..=100 and a clamp
//!    line (`[scoring.clamp]`) makes the lines add up to the score.
//! 5. **Segment** (`[scoring.segments]`): the first rule matching provider and score.
//! 6. **Priority** (`[scoring.priorities]`): the segment's table, first row the score reaches.
//! 7. **Commercial segment** (`[scoring.commercial_segments]`), then its **heat**
//!    (`[scoring.heat]`): first rule that matches.
//! 8. **Priority category** (`[scoring.priority_categories]`): P1..P6 of the commercial
//!    segment, with its label and what it asks of a seller.

mod assessment;
mod file;
mod host_pattern;
mod rules;
#[cfg(test)]
mod tests;

pub use assessment::{
    Assessment, CommercialSegment, Heat, PriorityCategory, ScoreInput, ScoreLine, Segment,
    TenantSize, UnknownName,
};
pub(crate) use file::ScoringSection;
pub use rules::{PriorityCategoryInfo, ScoringRules};

use crate::scan::ScanState;

/// Assesses one lead from its scan, or `None` when the scan says nothing yet (`pending`) or
/// failed (`servfail`, `timeout`).
pub fn assess(input: &ScoreInput<'_>, rules: &ScoringRules) -> Option<Assessment> {
    let score = match input.state {
        ScanState::Ok => score_mail(input, rules),
        ScanState::NoMx => no_mail(rules, &rules.no_mail.no_mx_label),
        ScanState::Nxdomain => no_mail(rules, &rules.no_mail.nxdomain_label),
        ScanState::Pending | ScanState::Servfail | ScanState::Timeout => return None,
    };
    Some(classify(score, rules))
}

/// The provider, tenant size and score of a lead, before its classification.
struct Scored {
    provider: String,
    tenant_size: Option<TenantSize>,
    score: u8,
    breakdown: Vec<ScoreLine>,
    /// Set when the scan state decides the segment.
    segment: Option<Segment>,
}

fn no_mail(rules: &ScoringRules, reason: &str) -> Scored {
    Scored {
        provider: rules.no_mx_provider.clone(),
        tenant_size: None,
        score: 0,
        breakdown: vec![line(reason, 0)],
        segment: Some(rules.no_mail.segment),
    }
}

fn score_mail(input: &ScoreInput<'_>, rules: &ScoringRules) -> Scored {
    let signals = input.signals;
    let mx_host = signals.preferred_mx();
    let by_mx = rules.provider_for_mx(mx_host);
    let (provider, provider_label) = match &rules.azure_tenant {
        Some(tenant) if input.azure_tenant && tenant.provider != by_mx => {
            (tenant.provider.as_str(), Some(tenant.label.as_str()))
        }
        _ => (by_mx, None),
    };
    // The provider's line, the score rules', the co-sell bonus and the clamp.
    let mut breakdown = Vec::with_capacity(rules.score_rules.len() + 3);
    if let Some(row) = rules.provider(provider) {
        breakdown.push(line(provider_label.unwrap_or(&row.label), row.points));
    }
    breakdown.extend(
        rules
            .score_rules
            .iter()
            .filter(|rule| rule.when.matches(provider, signals))
            .map(|rule| line(&rule.label, rule.points)),
    );
    if let Some(bonus) = rules.co_sell_bonus.as_ref().filter(|_| input.co_sell) {
        breakdown.push(line(&bonus.label, bonus.points));
    }
    let sum: i32 = breakdown.iter().map(|l| l.points).sum();
    let score = sum.clamp(0, i32::from(MAX_SCORE));
    if score != sum {
        let label = if sum < 0 {
            &rules.clamp.raised_to_0
        } else {
            &rules.clamp.lowered_to_100
        };
        breakdown.push(line(label, score - sum));
    }
    Scored {
        provider: provider.to_owned(),
        tenant_size: rules.tenant_size(provider, mx_host),
        score: u8::try_from(score).unwrap_or(MAX_SCORE),
        breakdown,
        segment: None,
    }
}

fn classify(scored: Scored, rules: &ScoringRules) -> Assessment {
    let Scored {
        provider,
        tenant_size,
        score,
        breakdown,
        segment,
    } = scored;
    let segment = segment.unwrap_or_else(|| rules.segment(&provider, score));
    let commercial_segment = rules.commercial_segment(segment, &provider, score);
    let category = rules.priority_category(commercial_segment);
    Assessment {
        tenant_size,
        score,
        breakdown,
        segment,
        priority: rules.priority(segment, score),
        commercial_segment,
        commercial_heat: rules.heat(commercial_segment, score),
        priority_category: category.category,
        priority_category_label: category.label.clone(),
        seller_action: category.seller_action.clone(),
        provider,
    }
}

const MAX_SCORE: u8 = 100;

fn line(label: &str, points: i32) -> ScoreLine {
    ScoreLine {
        label: label.to_owned(),
        points,
    }
}
