//! The per-referral hot path of the domain: parse → extract (and normalize) the domain →
//! eligibility → score, over the seed generator's realistic mix
//! (`benches/corpus/seed-300.jsonl`: the first 300 referrals of seed 7,
//! `cargo run -p hunter-local --example dump_seed -- 300 7`).
//! The scan's signals are read once: DNS is not part of it.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hunter_domain::referral::{Referral, parse_referral};
use hunter_domain::rules::{ExtractedDomain, Rules, eligibility, extract_domain};
use hunter_domain::scan::{ScanState, Signals};
use hunter_domain::scoring::{ScoreInput, assess};

mod corpus;

use corpus::{google_mail, texts};

fn score_input<'a>(referral: &Referral, signals: &'a Signals) -> ScoreInput<'a> {
    ScoreInput {
        state: ScanState::Ok,
        signals,
        co_sell: referral.referral_type.as_deref() == Some("Shared"),
        azure_tenant: false,
    }
}

fn hot_path(c: &mut Criterion) {
    let texts = texts();
    let rules = Rules::embedded();
    let signals = Signals::read(&google_mail());
    let referrals: Vec<Referral> = texts
        .iter()
        .filter_map(|text| parse_referral(text).ok())
        .collect();
    let domains: Vec<Option<ExtractedDomain>> = referrals
        .iter()
        .map(|referral| extract_domain(referral, rules))
        .collect();
    let eligible: Vec<&Referral> = referrals
        .iter()
        .zip(&domains)
        .filter(|(referral, domain)| {
            eligibility(referral, domain.as_ref().map(|d| &d.domain), rules).is_eligible()
        })
        .map(|(referral, _)| referral)
        .collect();

    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(texts.len() as u64));
    group.bench_function("parse_extract_eligibility_score", |b| {
        b.iter(|| {
            let mut scored = 0u32;
            for text in &texts {
                let Ok(referral) = parse_referral(text) else {
                    continue;
                };
                let domain = extract_domain(&referral, rules);
                let decision = eligibility(&referral, domain.as_ref().map(|d| &d.domain), rules);
                if decision.is_eligible() {
                    let input = score_input(&referral, &signals);
                    scored += assess(&input, rules.scoring()).map_or(0, |a| u32::from(a.score));
                }
            }
            scored
        });
    });
    group.bench_function("parse", |b| {
        b.iter(|| {
            texts
                .iter()
                .filter(|text| parse_referral(black_box(text)).is_ok())
                .count()
        });
    });
    group.throughput(Throughput::Elements(referrals.len() as u64));
    group.bench_function("extract_domain", |b| {
        b.iter(|| {
            referrals
                .iter()
                .filter(|referral| extract_domain(black_box(referral), rules).is_some())
                .count()
        });
    });
    group.bench_function("eligibility", |b| {
        b.iter(|| {
            referrals
                .iter()
                .zip(&domains)
                .filter(|(referral, domain)| {
                    eligibility(
                        black_box(referral),
                        domain.as_ref().map(|d| &d.domain),
                        rules,
                    )
                    .is_eligible()
                })
                .count()
        });
    });
    group.throughput(Throughput::Elements(eligible.len() as u64));
    group.bench_function("assess", |b| {
        b.iter(|| {
            eligible
                .iter()
                .filter_map(|referral| {
                    assess(&score_input(black_box(referral), &signals), rules.scoring())
                })
                .map(|a| u32::from(a.score))
                .sum::<u32>()
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = hot_path
}
criterion_main!(benches);
