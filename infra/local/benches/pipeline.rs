//! Throughput of the ingest path per referral: the pure rules, then the whole ingest handler on
//! the embedded adapters. Input: the seed generator's realistic mix.

#![allow(clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;

use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore, Otherwise, StaticScanner};
use hunter_core::messages::ReferralMessage;
use hunter_core::retry::Backoff;
use hunter_domain::referral::parse_referral;
use hunter_domain::rules::{Rules, eligibility, extract_domain};
use hunter_local::sim::seed::generate_referrals;
use ingest_referral::{DomainTurns, IngestDeps, ingest_message};

// hunter-domain's bench fixtures: the DNS answers every domain gets here.
#[path = "../../../shared/domain/benches/corpus/mod.rs"]
#[allow(
    dead_code,
    reason = "this bench takes the DNS answers, not the corpus texts"
)]
mod corpus;

use corpus::google_mail;

const REFERRALS: usize = 1000;

fn bodies() -> Vec<String> {
    generate_referrals(REFERRALS, 7)
        .into_iter()
        .map(|referral| {
            ReferralMessage {
                run_id: None,
                arrived_by: Default::default(),
                referral,
            }
            .to_body()
        })
        .collect()
}

fn rules(c: &mut Criterion) {
    let texts: Vec<String> = generate_referrals(REFERRALS, 7)
        .iter()
        .map(ToString::to_string)
        .collect();
    let rules = Rules::embedded();
    let mut group = c.benchmark_group("rules");
    group.throughput(Throughput::Elements(REFERRALS as u64));
    group.bench_function("parse_extract_eligibility", |b| {
        b.iter(|| {
            let mut eligible = 0;
            for text in &texts {
                if let Ok(referral) = parse_referral(text) {
                    let domain = extract_domain(&referral, rules);
                    eligible += usize::from(
                        eligibility(&referral, domain.as_ref().map(|d| &d.domain), rules)
                            .is_eligible(),
                    );
                }
            }
            eligible
        });
    });
    group.finish();
}

fn ingest(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let bodies = bodies();
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(REFERRALS as u64));
    group.bench_function("ingest_message_embedded", |b| {
        b.iter_batched(
            || {
                (
                    EmbeddedStore::new(),
                    EmbeddedQueue::new("push", Duration::from_secs(60), 5),
                    // Every domain answers like a Google Workspace customer: the scan and the
                    // scoring run, DNS does not.
                    StaticScanner::new(HashMap::new(), Otherwise::Answers(google_mail())),
                )
            },
            |(store, push, scanner)| {
                let deps = IngestDeps {
                    store: &store,
                    push_queue: &push,
                    scanner: &scanner,
                    rules: Rules::embedded(),
                    rescan_after: Duration::from_secs(7 * 86_400),
                    send_backoff: Backoff::default(),
                    max_receives: None,
                    referrals_queue: None,
                    turns: &DomainTurns::default(),
                };
                runtime.block_on(async {
                    for body in &bodies {
                        ingest_message(&deps, body).await.unwrap();
                    }
                });
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = rules, ingest
}
criterion_main!(benches);
