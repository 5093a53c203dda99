//! Dataverse throughput at its limit: leads pushed into the Dataverse simulator, started in-process
//! with a scaled service-protection limit, three ways in one run:
//! - `paced`: Hunter's real push path (`wiring::dataverse_sink` + push-dynamics' `handle_batch`
//!   over the embedded push queue, several batches at once as Lambda would run them), paced by
//!   the headers Dataverse sends;
//! - `naive`: a fixed pool of tasks sending the same requests (a lookup per lead, a `$batch` of
//!   ten upserts) as fast as they can, sleeping a fixed second on a 429;
//! - `paced-2-users`: the paced path with `HUNTER_D365_CLIENTS` naming two application users.
//!
//! Requests are counted as Dataverse counts them (each request inside a `$batch` is one).
//! `cargo bench -p hunter-local --bench dataverse_push`; `BENCH_LEADS` (default 5000),
//! `BENCH_LIMIT` (default `3000/30s`: 100 requests/s per user, below what this harness sustains
//! on a 2-core machine, about 150–220 requests/s, so the limit and not the machine binds; the
//! three runs take about 4½ minutes),
//! `BENCH_OUT=file.json` writes the figures as JSON.

#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hunter_core::adapters::{EmbeddedQueue, EmbeddedStore};
use hunter_core::config::{Config, RequestLimit};
use hunter_core::credentials::Credentials;
use hunter_core::dynamics::batch::{self, Headers, Message, Writer};
use hunter_core::dynamics::odata::odata_string_literal;
use hunter_core::messages::PushMessage;
use hunter_core::ports::{LeadStore as _, OutgoingMessage, Queue};
use hunter_core::secret::Secret;
use hunter_core::wiring;
use hunter_domain::crm::{DynamicsMapping, lead_input};
use hunter_domain::model::Lead;
use hunter_domain::rules::normalize_domain;
use hunter_local::sim::dataverse::{
    DataverseConfig, DataverseSim, Limits, RunningDataverse, Usage,
};
use hunter_local::worker::sqs_event;
use push_dynamics::PushDeps;
use serde::Serialize;
use serde_json::{Map, Value};

/// Lambda-like concurrency of the paced push: batches of ten handled at once.
const PUSH_WORKERS: usize = 8;
/// The naive client's fixed pool.
const NAIVE_TASKS: usize = 16;
/// The naive client's fixed sleep after a 429 (or any failure).
const NAIVE_SLEEP: Duration = Duration::from_secs(1);
/// `Retry-After` of the simulator's 429s.
const RETRY_AFTER_SECS: u64 = 2;
const KEY: &str = "hnt_hunterkey";

/// One client's run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Figures {
    client: String,
    users: usize,
    leads: usize,
    /// As Dataverse counts them (each inside a `$batch` is one).
    requests: u64,
    /// HTTP calls (a `$batch` is one).
    http_requests: u64,
    throttled: u64,
    /// Share of HTTP calls answered 429, in percent.
    throttled_pct: f64,
    /// Records per hnt_hunterkey > 1.
    duplicates: usize,
    /// Leads in Dataverse at the end.
    records: usize,
    wall_secs: f64,
    requests_per_sec: f64,
    /// The limit of all users together, requests per second.
    limit_per_sec: f64,
    pct_of_limit: f64,
    /// Requests per user (client id → requests).
    per_user: Vec<(String, u64)>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    leads: usize,
    limit: String,
    max_concurrent: u32,
    runs: Vec<Figures>,
    /// Paced requests/s over naive requests/s (one user each).
    paced_over_naive_rate: f64,
    /// Naive wall time over paced wall time.
    naive_over_paced_time: f64,
}

fn leads(n: usize) -> Result<Vec<Lead>> {
    (0..n)
        .map(|i| {
            let domain = normalize_domain(&format!("bench-company{i}.com"))
                .map_err(|e| anyhow::anyhow!("domain: {e}"))?;
            let mut lead = Lead::new(domain, chrono::Utc::now());
            lead.company_name = Some(format!("Bench Company {i}"));
            lead.content_version = 1;
            Ok(lead)
        })
        .collect()
}

async fn start_sim(limit: RequestLimit, users: &[(String, Secret)]) -> Result<RunningDataverse> {
    let mut config = DataverseConfig {
        limits: Limits {
            max_requests: limit.requests,
            window: limit.window,
            max_concurrent: 52,
            retry_after_secs: RETRY_AFTER_SECS,
            ..Limits::default()
        },
        dop_hint: 8,
        ..DataverseConfig::default()
    };
    if let Some((id, secret)) = users.first() {
        config.client_id.clone_from(id);
        config.client_secret = secret.clone();
    }
    config.extra_clients = users.iter().skip(1).cloned().collect();
    Ok(DataverseSim::new(config)
        .serve(([127, 0, 0, 1], 0).into())
        .await?)
}

fn user_list(n: usize) -> Vec<(String, Secret)> {
    (1..=n)
        .map(|i| {
            (
                format!("bench-app-{i}"),
                Secret::new(format!("bench-secret-{i}")),
            )
        })
        .collect()
}

fn figures(
    client: &str,
    dv: &RunningDataverse,
    users: usize,
    leads: usize,
    limit: RequestLimit,
    wall: Duration,
) -> Figures {
    let usage: Usage = dv.sim.usage();
    let requests: u64 = usage.values().map(|u| u.requests).sum();
    let http_requests: u64 = usage.values().map(|u| u.http_requests).sum();
    let throttled: u64 = usage.values().map(|u| u.throttled).sum();
    let wall_secs = wall.as_secs_f64();
    let limit_per_sec = f64::from(limit.requests) / limit.window.as_secs_f64() * users as f64;
    let requests_per_sec = requests as f64 / wall_secs;
    Figures {
        client: client.to_owned(),
        users,
        leads,
        requests,
        http_requests,
        throttled,
        throttled_pct: 100.0 * throttled as f64 / http_requests.max(1) as f64,
        duplicates: dv.sim.duplicates("leads"),
        records: dv.sim.records("leads").len(),
        wall_secs,
        requests_per_sec,
        limit_per_sec,
        pct_of_limit: 100.0 * requests_per_sec / limit_per_sec,
        per_user: usage.iter().map(|(k, v)| (k.clone(), v.requests)).collect(),
    }
}

/// Hunter's push path: the wired sink, push-dynamics' batch handler, the embedded queue.
async fn paced(leads: &[Lead], limit: RequestLimit, users: usize) -> Result<Figures> {
    let user_list = user_list(users);
    let dv = start_sim(limit, &user_list).await?;
    let mapping = DynamicsMapping::embedded();
    let config = Config {
        dynamics_url: Some(dv.base_url.clone()),
        dynamics_token_url: Some(dv.token_url.clone()),
        d365_request_limit: Some(limit),
        ..Config::from_vars(Vec::new())?
    };
    let clients: Vec<Value> = user_list
        .iter()
        .map(|(id, secret)| serde_json::json!({"clientId": id, "clientSecret": secret.expose()}))
        .collect();
    let credentials = Credentials {
        d365_clients: Secret::new(Value::Array(clients).to_string()),
        ..Credentials::default()
    };
    let sink = wiring::dataverse_sink(wiring::http_client()?, &config, &credentials, mapping)?;
    let store = EmbeddedStore::new();
    let queue = EmbeddedQueue::new("dynamics-push", Duration::from_secs(360), 5);
    for lead in leads {
        store.put_lead(lead, None, None).await?;
    }
    let messages: Vec<OutgoingMessage> = leads
        .iter()
        .enumerate()
        .map(|(i, lead)| {
            let body = PushMessage {
                domain: lead.domain.to_string(),
                lead_version: lead.content_version,
                force: false,
                deferrals: 0,
            }
            .to_body();
            OutgoingMessage::new(i.to_string(), body)
        })
        .collect();
    for chunk in messages.chunks(10) {
        let failed = queue.send_batch(chunk).await?;
        if !failed.is_empty() {
            bail!("the push queue refused {} messages", failed.len());
        }
    }
    let deps = PushDeps {
        store: &store,
        sink: &sink,
        mapping,
        queue: Some(&queue),
        max_receives: Some(5),
        write_back: None,
        opportunities: false,
    };
    let started = Instant::now();
    let workers = (0..PUSH_WORKERS).map(|_| drain(&deps, &queue));
    for result in futures_util::future::join_all(workers).await {
        result?;
    }
    let wall = started.elapsed();
    let name = match users {
        1 => "paced".to_owned(),
        n => format!("paced-{n}-users"),
    };
    Ok(figures(&name, &dv, users, leads.len(), limit, wall))
}

/// One worker: batches of ten from the queue to push-dynamics until nothing is left.
async fn drain(deps: &PushDeps<'_>, queue: &EmbeddedQueue) -> Result<()> {
    loop {
        let messages = queue.receive(10, None, Duration::ZERO).await?;
        if messages.is_empty() {
            let depth = queue.depth().await?;
            if depth.visible == 0 && depth.in_flight == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let response = push_dynamics::handle_batch(deps, sqs_event(&messages)).await;
        for message in &messages {
            let failed = response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == message.message_id);
            match failed {
                true => {
                    queue
                        .change_visibility(&message.receipt, Duration::from_millis(500))
                        .await?;
                }
                false => queue.delete(&message.receipt).await?,
            }
        }
    }
}

/// The naive client: a fixed pool, each task taking ten leads at a time, a lookup per lead then
/// one `$batch` of ten upserts, each request repeated after a fixed sleep until it succeeds.
async fn naive(leads: &[Lead], limit: RequestLimit) -> Result<Figures> {
    let users = user_list(1);
    let dv = start_sim(limit, &users).await?;
    let http = reqwest::Client::new();
    let token: Value = http
        .post(&dv.token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", users[0].0.as_str()),
            ("client_secret", users[0].1.expose()),
            ("scope", &format!("{}/.default", dv.base_url)),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access token")?
        .to_owned();
    let mapping = DynamicsMapping::embedded();
    let records: Vec<(String, Map<String, Value>)> = leads
        .iter()
        .map(|lead| {
            let record = mapping
                .map(&lead_input(lead, None, mapping))
                .map_err(|e| anyhow::anyhow!("mapping: {e}"))?;
            Ok((lead.domain.to_string(), record))
        })
        .collect::<Result<_>>()?;
    let chunks: Vec<&[(String, Map<String, Value>)]> = records.chunks(10).collect();
    let next = AtomicUsize::new(0);
    let api = dv.api_url();
    let naive = Naive {
        http: &http,
        token: &token,
        api: &api,
    };
    let started = Instant::now();
    let tasks = (0..NAIVE_TASKS).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(chunk) = chunks.get(i) else {
                return Ok::<(), anyhow::Error>(());
            };
            for (domain, _) in chunk.iter() {
                let url = format!(
                    "{api}/leads?$filter=contains(websiteurl,'{domain}') or contains(emailaddress1,'@{domain}')&$select=leadid,{KEY}&$top=50"
                );
                naive.until_ok(|| naive.request(reqwest::Method::GET, &url)).await?;
            }
            let (content_type, body) = batch_body(&api, chunk);
            naive
                .until_ok(|| {
                    naive
                        .request(reqwest::Method::POST, &format!("{api}/$batch"))
                        .header("Content-Type", content_type.as_str())
                        .header("Prefer", "odata.continue-on-error")
                        .body(body.clone())
                })
                .await?;
        }
    });
    for result in futures_util::future::join_all(tasks).await {
        result?;
    }
    let wall = started.elapsed();
    Ok(figures("naive", &dv, 1, leads.len(), limit, wall))
}

struct Naive<'a> {
    http: &'a reqwest::Client,
    token: &'a str,
    api: &'a str,
}

impl Naive<'_> {
    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .bearer_auth(self.token)
            .header("Accept", "application/json")
            .header("OData-MaxVersion", "4.0")
            .header("OData-Version", "4.0")
    }

    /// Sends until a 2xx, sleeping [`NAIVE_SLEEP`] after anything else.
    async fn until_ok(&self, build: impl Fn() -> reqwest::RequestBuilder) -> Result<()> {
        for _ in 0..10_000 {
            match build().send().await {
                Ok(response) if response.status().is_success() => {
                    response.bytes().await?;
                    return Ok(());
                }
                _ => tokio::time::sleep(NAIVE_SLEEP).await,
            }
        }
        bail!("{}: never answered with success", self.api)
    }
}

/// A `$batch` of upserts by key, one change set each (as Hunter's client writes it).
fn batch_body(api: &str, chunk: &[(String, Map<String, Value>)]) -> (String, String) {
    let mut writer = Writer::new(format!("batch_{}", uuid::Uuid::new_v4()));
    for (n, (key, record)) in chunk.iter().enumerate() {
        let mut headers = Headers::default();
        headers.push("Content-Type", "application/json; type=entry");
        let mut body = record.clone();
        body.remove(KEY);
        let message = Message {
            content_id: Some((n + 1).to_string()),
            start_line: format!(
                "PATCH {api}/leads({KEY}={}) HTTP/1.1",
                odata_string_literal(key)
            ),
            headers,
            body: Value::Object(body).to_string(),
        };
        writer.change_set(&format!("changeset_{}", uuid::Uuid::new_v4()), &[message]);
    }
    let (content_type, text) = writer.finish();
    debug_assert!(batch::boundary(&content_type).is_some());
    (content_type, text)
}

fn print_table(report: &Report) {
    println!(
        "\nDataverse push: {} leads, limit {} per user, {} concurrent",
        report.leads, report.limit, report.max_concurrent
    );
    println!(
        "{:<16} {:>5} {:>9} {:>7} {:>9} {:>8} {:>6} {:>8} {:>8} {:>9}",
        "client",
        "users",
        "requests",
        "http",
        "429s",
        "429 %",
        "dups",
        "wall s",
        "req/s",
        "% limit"
    );
    for f in &report.runs {
        println!(
            "{:<16} {:>5} {:>9} {:>7} {:>9} {:>7.2}% {:>6} {:>8.1} {:>8.1} {:>8.1}%",
            f.client,
            f.users,
            f.requests,
            f.http_requests,
            f.throttled,
            f.throttled_pct,
            f.duplicates,
            f.wall_secs,
            f.requests_per_sec,
            f.pct_of_limit
        );
    }
    println!(
        "paced / naive: {:.2}x the rate, naive took {:.2}x the time",
        report.paced_over_naive_rate, report.naive_over_paced_time
    );
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a small smoke.
    let benching = std::env::args().any(|a| a == "--bench");
    let leads_n: usize = match std::env::var("BENCH_LEADS") {
        Ok(text) => text.trim().parse().context("BENCH_LEADS")?,
        Err(_) if benching => 5_000,
        Err(_) => 200,
    };
    let limit_text = std::env::var("BENCH_LIMIT").unwrap_or_else(|_| "3000/30s".to_owned());
    let limit = RequestLimit::parse(&limit_text)
        .with_context(|| format!("BENCH_LIMIT {limit_text:?} is not <requests>/<window>"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let leads = leads(leads_n)?;
        let mut runs = Vec::new();
        for run in 0..3 {
            let figures = match run {
                0 => paced(&leads, limit, 1).await?,
                1 => naive(&leads, limit).await?,
                _ => paced(&leads, limit, 2).await?,
            };
            eprintln!(
                "{}: {} requests in {:.1} s, {} answered 429",
                figures.client, figures.requests, figures.wall_secs, figures.throttled
            );
            if figures.records != leads.len() {
                bail!(
                    "{}: {} leads in Dataverse, {} pushed",
                    figures.client,
                    figures.records,
                    leads.len()
                );
            }
            runs.push(figures);
        }
        let (paced, naive) = (&runs[0], &runs[1]);
        Ok::<_, anyhow::Error>(Report {
            leads: leads_n,
            limit: limit_text.clone(),
            max_concurrent: 52,
            paced_over_naive_rate: paced.requests_per_sec / naive.requests_per_sec,
            naive_over_paced_time: naive.wall_secs / paced.wall_secs,
            runs,
        })
    })?;
    print_table(&report);
    if let Ok(path) = std::env::var("BENCH_OUT") {
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {path}"))?;
        println!("written to {path}");
    }
    Ok(())
}
