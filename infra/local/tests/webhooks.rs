//! Partner Center webhooks end to end: hunter-local serving against the Partner Center,
//! Dataverse and DNS simulators, its webhook registered with `hunter-local webhooks register`,
//! referral changes made in the simulator. With no sweep, every change arrives by webhook alone;
//! with 30 % of the events lost and the sweep on, every referral ends stored at its latest
//! version and every eligible lead in Dataverse exactly once.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use hunter_domain::crm::DynamicsMapping;
use hunter_domain::referral::parse_referral_value;
use hunter_domain::rules::{Eligibility, Rules, eligibility, extract_domain};
use hunter_local::dns::{DnsSim, RunningDns};
use hunter_local::sim::dataverse::{DataverseConfig, DataverseSim, RunningDataverse};
use hunter_local::sim::partner_center::{
    DEFAULT_REFRESH_TOKEN, Faults, PartnerCenterSim, RunningSim, SimConfig,
    WEBHOOK_CERTIFICATE_PATH,
};
use hunter_local::sim::seed::generate_referrals;
use serde_json::{Value, json};

const TOKEN: &str = "webhook-test-token";

/// The simulators, a data directory, and hunter-local serving (killed on drop).
struct Setup {
    pc: RunningSim,
    dv: RunningDataverse,
    dns: RunningDns,
    data_dir: PathBuf,
    served: Option<Child>,
    api: String,
    mapping: DynamicsMapping,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut child) = self.served.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl Setup {
    /// `referrals` generated referrals in Partner Center, which loses `loss_rate` of its
    /// webhook events; hunter-local serving with `serve_args`.
    async fn start(referrals: usize, loss_rate: f64, serve_args: &[&str]) -> Self {
        let initial = generate_referrals(referrals, 31);
        let dns = DnsSim::seeded(&initial, false)
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let pc = PartnerCenterSim::new(
            initial,
            SimConfig {
                faults: Faults {
                    webhook_loss_rate: loss_rate,
                    ..Faults::default()
                },
                rng_seed: 5,
                ..SimConfig::default()
            },
        )
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
        let mapping = DynamicsMapping::embedded().clone();
        let dv = DataverseSim::new(DataverseConfig {
            key_column: mapping.key_column().to_owned(),
            ..DataverseConfig::default()
        })
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
        let data_dir = std::env::temp_dir().join(format!(
            "hunter-webhooks-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let mut setup = Self {
            pc,
            dv,
            dns,
            data_dir,
            served: None,
            api: String::new(),
            mapping,
        };
        let mut served = setup
            .command()
            .args(["--port", "0", "--queue-visibility", "3"])
            .args(serve_args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut banner = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(served.stdout.take().unwrap()),
            &mut banner,
        )
        .unwrap();
        setup.api = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .unwrap_or_else(|| panic!("no URL in {banner:?}"))
            .trim_end_matches('/')
            .to_owned();
        setup.served = Some(served);
        setup
    }

    /// hunter-local against the simulators and the data directory.
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hunter-local"));
        command
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--partner-center-url", &self.pc.base_url])
            .args(["--partner-center-token-url", &self.pc.token_url])
            .args(["--dynamics-url", &self.dv.base_url])
            .args(["--dynamics-token-url", &self.dv.token_url])
            .args(["--dns", &self.dns.addr.to_string()])
            .env("HUNTER_API_TOKEN", TOKEN)
            .env("HUNTER_PC_CLIENT_ID", "webhook-test-app")
            .env("HUNTER_PC_REFRESH_TOKEN", DEFAULT_REFRESH_TOKEN)
            .env("HUNTER_D365_CLIENT_ID", "sim-client-id")
            .env("HUNTER_D365_CLIENT_SECRET", "sim-client-secret")
            .env("HUNTER_D365_TENANT", "webhook-test-tenant")
            .env(
                "HUNTER_PC_WEBHOOK_CERTIFICATE_URLS",
                // The directory of the simulator's certificate, as a deployment names
                // Microsoft's.
                format!(
                    "{}{}/",
                    self.pc.base_url,
                    WEBHOOK_CERTIFICATE_PATH
                        .rsplit_once('/')
                        .map_or("", |(directory, _)| directory)
                ),
            )
            .env("RUST_LOG", "warn")
            .env_remove("HUNTER_DATA_DIR")
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// `hunter-local webhooks ARGS`, which must succeed: its stdout.
    fn webhooks(&self, args: &[&str]) -> String {
        let Output {
            status,
            stdout,
            stderr,
        } = self
            .command()
            .args(["webhooks", "--api-url", &self.pc.base_url])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stdout = String::from_utf8(stdout).unwrap();
        assert!(
            status.success(),
            "webhooks {args:?}: {status} {stdout} {}",
            String::from_utf8_lossy(&stderr)
        );
        stdout
    }

    fn webhook_url(&self) -> String {
        format!("{}/api/v1/webhooks/partner-center", self.api)
    }

    async fn get(&self, path: &str) -> Value {
        let answer = reqwest::Client::new()
            .get(format!("{}{path}", self.api))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.unwrap()
    }

    /// Every referral Hunter stored: id → (updatedDateTime, arrivedBy).
    async fn stored(&self) -> BTreeMap<String, (Value, Value)> {
        let mut stored = BTreeMap::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .get(&format!("/api/v1/referrals?limit=200{cursor}"))
                .await;
            for item in page["items"].as_array().unwrap() {
                stored.insert(
                    item["id"].as_str().unwrap().to_owned(),
                    (item["updatedDateTime"].clone(), item["arrivedBy"].clone()),
                );
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => return stored,
            }
        }
    }

    /// Partner Center's readable referrals now (the generated corpus has unreadable ones too,
    /// which Hunter keeps under a digest as `invalid_payload`): id → updatedDateTime as Hunter
    /// stores it.
    fn in_partner_center(&self) -> BTreeMap<String, Value> {
        self.pc
            .sim
            .referrals()
            .into_iter()
            .filter_map(|raw| parse_referral_value(raw).ok())
            .map(|r| (r.id.clone(), json!(r.updated)))
            .collect()
    }

    /// Distinct domains of the eligible referrals Partner Center holds now.
    fn eligible_domains(&self) -> BTreeSet<String> {
        let rules = Rules::load(None).unwrap();
        let mut domains = BTreeSet::new();
        for raw in self.pc.sim.referrals() {
            let Ok(referral) = parse_referral_value(raw) else {
                continue;
            };
            let domain = extract_domain(&referral, &rules).map(|d| d.domain);
            if eligibility(&referral, domain.as_ref(), &rules) == Eligibility::Eligible {
                domains.extend(domain.map(|d| d.as_str().to_owned()));
            }
        }
        domains
    }

    /// Dataverse's lead records by Hunter's key: domain → how many.
    fn dataverse_leads(&self) -> BTreeMap<String, usize> {
        let key = self.mapping.key_column();
        let mut by_key = BTreeMap::new();
        for record in self.dv.sim.records(self.mapping.entity_set()) {
            *by_key
                .entry(record[key].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        by_key
    }

    /// Changes `count` referrals in Partner Center (status, updatedDateTime, eTag) and adds
    /// `new` ones, as sellers and Microsoft would; returns the ids touched.
    fn change(&self, count: usize, new: usize, seed: u64) -> Vec<String> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let readable = self.in_partner_center();
        let mut current: Vec<Value> = self
            .pc
            .sim
            .referrals()
            .into_iter()
            .filter(|r| r["id"].as_str().is_some_and(|id| readable.contains_key(id)))
            .collect();
        rng.shuffle(&mut current);
        let now = Utc::now();
        let mut changed: Vec<Value> = current
            .into_iter()
            .take(count)
            .enumerate()
            .map(|(i, mut referral)| {
                let at = now + chrono::Duration::milliseconds(i64::try_from(i).unwrap());
                referral["updatedDateTime"] =
                    json!(at.to_rfc3339_opts(SecondsFormat::Micros, true));
                referral["status"] = json!(["New", "Active"][rng.usize(..2)]);
                referral["eTag"] = json!(format!("\"{}\"", uuid::Uuid::new_v4()));
                referral
            })
            .collect();
        // New referrals are dated now, as Partner Center dates them (the generator's dates are
        // older than the sweep's watermark).
        let stamp = json!(now.to_rfc3339_opts(SecondsFormat::Micros, true));
        changed.extend(
            generate_referrals(new, seed)
                .into_iter()
                .filter(|r| parse_referral_value(r.clone()).is_ok())
                .map(|mut r| {
                    r["createdDateTime"] = stamp.clone();
                    r["updatedDateTime"] = stamp.clone();
                    r
                }),
        );
        let ids = changed
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        self.pc.sim.upsert_referrals(changed);
        ids
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.served.as_mut().unwrap().try_wait().unwrap() {
            panic!("hunter-local exited: {status}");
        }
    }

    /// Polls `check` until it holds, for at most `limit`; on timeout, fails with what the last
    /// check said.
    async fn eventually(
        &mut self,
        limit: Duration,
        check: impl AsyncFn(&Self) -> Result<(), String>,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            self.assert_running();
            match check(self).await {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => panic!("timed out: {why}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

/// Every referral of Partner Center is stored at its latest version, and every eligible lead is
/// in Dataverse exactly once.
async fn converged(setup: &Setup) -> Result<(), String> {
    let stored = setup.stored().await;
    let behind: Vec<_> = setup
        .in_partner_center()
        .into_iter()
        .filter(|(id, updated)| stored.get(id).map(|s| &s.0) != Some(updated))
        .map(|(id, _)| id)
        .collect();
    if !behind.is_empty() {
        return Err(format!(
            "{} referrals not stored at their latest version",
            behind.len()
        ));
    }
    let in_dataverse = setup.dataverse_leads();
    let expected = setup.eligible_domains();
    let missing: Vec<_> = expected
        .iter()
        .filter(|d| !in_dataverse.contains_key(*d))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} eligible leads not in Dataverse: {missing:?}",
            missing.len()
        ));
    }
    let pending = setup
        .get("/api/v1/stats")
        .await
        .pointer("/syncStatuses/pending")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if pending > 0 {
        return Err(format!("{pending} leads still pending"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_sweep_is_off_every_referral_change_should_arrive_by_webhook_alone() {
    let mut setup = Setup::start(20, 0.0, &["--no-sweep"]).await;
    let registered = setup.webhooks(&["register", "--url", &setup.webhook_url()]);
    assert!(registered.contains(&setup.webhook_url()), "{registered}");
    let listed = setup.webhooks(&["list"]);
    assert!(
        listed.contains(&setup.webhook_url()) && listed.contains("referral-updated"),
        "{listed}"
    );

    let mut touched = setup.change(8, 0, 1);
    touched.extend(setup.change(0, 6, 2));
    setup
        .eventually(Duration::from_secs(60), async |s| {
            let stored = s.stored().await;
            let now = s.in_partner_center();
            let arrived = touched
                .iter()
                .filter(|id| stored.get(*id).map(|r| &r.0) == now.get(*id))
                .count();
            (arrived == touched.len())
                .then_some(())
                .ok_or(format!("{arrived} of {} changes arrived", touched.len()))
        })
        .await;
    let stored = setup.stored().await;
    assert_eq!(
        stored.len(),
        touched.len(),
        "only the changed referrals: nothing swept"
    );
    assert!(stored.values().all(|(_, by)| by == "webhook"), "{stored:?}");
    assert_eq!(
        setup.get("/api/v1/sync-runs").await["items"],
        json!([]),
        "no sync ran"
    );
    let activity = setup.get("/api/v1/webhooks").await;
    assert_eq!(activity["queued"], json!(touched.len()), "{activity}");
    assert_eq!(activity["refused"], json!(0));
    assert_eq!(activity["registration"]["url"], json!(setup.webhook_url()));
    let stats = setup.pc.sim.webhook_stats();
    assert_eq!(stats.delivered, touched.len() as u64, "{stats:?}");

    let deleted = setup.webhooks(&["delete"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(setup.webhooks(&["list"]).contains("no webhook"));
    assert_eq!(setup.pc.sim.webhook_registration(), None);
    setup.change(3, 0, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        setup.pc.sim.webhook_stats().queued,
        stats.queued,
        "no event after the registration is deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_30_percent_of_events_are_lost_the_sweep_should_reconcile_and_push_each_lead_once() {
    let mut setup = Setup::start(40, 0.3, &["--sync-interval", "2"]).await;
    setup.webhooks(&["register", "--url", &setup.webhook_url()]);
    setup
        .eventually(Duration::from_secs(120), async |s| converged(s).await)
        .await;
    for round in 0..4 {
        setup.change(10, 5, 100 + round);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    setup
        .eventually(Duration::from_secs(180), async |s| converged(s).await)
        .await;
    let duplicates: Vec<_> = setup
        .dataverse_leads()
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert_eq!(duplicates, vec![], "every lead in Dataverse exactly once");
    let stats = setup.pc.sim.webhook_stats();
    assert!(
        stats.dropped > 0 && stats.delivered > 0,
        "some events lost, some delivered: {stats:?}"
    );
    let arrivals: BTreeMap<String, usize> =
        setup
            .stored()
            .await
            .into_values()
            .fold(BTreeMap::new(), |mut by, (_, arrived)| {
                *by.entry(arrived.as_str().unwrap().to_owned()).or_default() += 1;
                by
            });
    assert!(
        arrivals.get("webhook").copied().unwrap_or(0) > 0,
        "{arrivals:?}"
    );
}

/// Eligible referrals of new domains (not among Partner Center's leads yet), dated now when
/// created.
fn new_leads(setup: &Setup, count: usize, seed: u64) -> Vec<(String, Value)> {
    let rules = Rules::load(None).unwrap();
    let mut taken = setup.eligible_domains();
    let mut picked = Vec::new();
    for raw in generate_referrals(400, seed) {
        let Ok(referral) = parse_referral_value(raw.clone()) else {
            continue;
        };
        let Some(domain) = extract_domain(&referral, &rules).map(|d| d.domain) else {
            continue;
        };
        if eligibility(&referral, Some(&domain), &rules) != Eligibility::Eligible
            || !taken.insert(domain.as_str().to_owned())
        {
            continue;
        }
        picked.push((domain.as_str().to_owned(), raw));
        if picked.len() == count {
            break;
        }
    }
    picked
}

/// Seconds from each referral created in Partner Center to its lead in Dataverse, `count` of
/// them, created `spacing` apart (created and watched for in one loop, so that each is timed
/// from its own creation).
async fn latencies(setup: &mut Setup, count: usize, spacing: Duration, seed: u64) -> Vec<f64> {
    let mut pending = new_leads(setup, count, seed);
    assert_eq!(
        pending.len(),
        count,
        "enough new leads in the generated pool"
    );
    pending.reverse();
    let started = Instant::now();
    let mut created: Vec<(String, Instant)> = Vec::new();
    let mut seconds = Vec::new();
    let deadline = started + spacing * u32::try_from(count).unwrap() + Duration::from_secs(240);
    while seconds.len() < count {
        setup.assert_running();
        assert!(Instant::now() < deadline, "leads never reached Dataverse");
        let due = started + spacing * u32::try_from(count - pending.len()).unwrap();
        if Instant::now() >= due
            && let Some((domain, mut referral)) = pending.pop()
        {
            let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
            referral["createdDateTime"] = json!(now);
            referral["updatedDateTime"] = json!(now);
            setup.pc.sim.upsert_referrals(vec![referral]);
            created.push((domain, Instant::now()));
        }
        let in_dataverse = setup.dataverse_leads();
        created.retain(|(domain, at)| {
            let arrived = in_dataverse.contains_key(domain);
            if arrived {
                seconds.push(at.elapsed().as_secs_f64());
            }
            !arrived
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seconds
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `make bench`: the median time from a referral created in Partner Center to its lead in
/// Dataverse, with webhooks (and the default 60 s sweep) and with the sweep alone; printed, and
/// written to `BENCH_OUT` when set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark (make bench), about three minutes"]
async fn latency_from_partner_center_to_dataverse() {
    let mut by_webhook = {
        let mut setup = Setup::start(20, 0.0, &[]).await;
        setup.webhooks(&["register", "--url", &setup.webhook_url()]);
        setup
            .eventually(Duration::from_secs(120), async |s| converged(s).await)
            .await;
        latencies(&mut setup, 10, Duration::from_millis(500), 901).await
    };
    let mut by_sweep = {
        let mut setup = Setup::start(20, 0.0, &[]).await;
        setup
            .eventually(Duration::from_secs(120), async |s| converged(s).await)
            .await;
        // Spread over one sweep interval, as changes come at any time.
        latencies(&mut setup, 6, Duration::from_secs(10), 902).await
    };
    let result = json!({
        "webhooks": {"medianS": median(&mut by_webhook), "samples": by_webhook},
        "sweepEvery60s": {"medianS": median(&mut by_sweep), "samples": by_sweep},
    });
    println!("referral created in Partner Center → lead in Dataverse: {result}");
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(path, result.to_string()).unwrap();
    }
}
