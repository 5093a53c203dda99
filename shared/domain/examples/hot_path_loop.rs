//! Runs the hot path (parse → extract domain → eligibility → score) over the bench corpus
//! `ROUNDS` times (first argument, default 10), for instruction counts under callgrind:
//! the difference between two round counts is the per-referral cost without the start-up.

#![allow(missing_docs)]

use hunter_domain::referral::parse_referral;
use hunter_domain::rules::{Rules, eligibility, extract_domain};
use hunter_domain::scan::{ScanState, Signals};
use hunter_domain::scoring::{ScoreInput, assess};

#[path = "../benches/corpus/mod.rs"]
mod corpus;

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let texts = corpus::texts();
    let rules = Rules::embedded();
    let signals = Signals::read(&corpus::google_mail());
    let mut scored = 0u64;
    for _ in 0..rounds {
        for text in &texts {
            let Ok(referral) = parse_referral(std::hint::black_box(text)) else {
                continue;
            };
            let domain = extract_domain(&referral, rules);
            if eligibility(&referral, domain.as_ref().map(|d| &d.domain), rules).is_eligible() {
                let input = ScoreInput {
                    state: ScanState::Ok,
                    signals: &signals,
                    co_sell: referral.referral_type.as_deref() == Some("Shared"),
                    azure_tenant: false,
                };
                scored += assess(&input, rules.scoring()).map_or(0, |a| u64::from(a.score));
            }
        }
    }
    println!(
        "{} referrals × {rounds} rounds, score sum {scored}",
        texts.len()
    );
}
