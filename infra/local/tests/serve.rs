//! `hunter-local` serving, as a user starts it: the API on the given port with the given token,
//! the first sync at start, `POST /api/v1/sync` starting another, Ctrl-C stopping it.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "serve-test-token";

/// The running binary, killed on drop.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Served {
    fn assert_running(&mut self) {
        if let Some(status) = self.0.try_wait().unwrap() {
            panic!("hunter-local exited: {status}");
        }
    }
}

/// Polls `check` until it yields a value, for at most a minute, while `served` runs.
async fn eventually<T, F, Fut>(served: &mut Served, what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        served.assert_running();
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn when_serving_should_sync_at_start_answer_on_its_port_and_sync_again_on_request() {
    let mut served = Served(
        Command::new(env!("CARGO_BIN_EXE_hunter-local"))
            .args(["--port", "0", "--seed", "30"])
            .args(["--sync-interval", "3600"])
            .env("HUNTER_API_TOKEN", TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The first line, for the person at the terminal: the URL (port 0: the one it got) and token.
    let mut banner = String::new();
    BufReader::new(served.0.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    assert!(banner.contains(TOKEN), "{banner}");
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .trim_end_matches('/')
        .to_owned();
    let base = format!("{url}/api/v1");
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let request = http.get(format!("{base}{path}")).bearer_auth(TOKEN);
        async move {
            let response = request.send().await.ok()?;
            response.status().is_success().then_some(())?;
            response.json::<Value>().await.ok()
        }
    };

    eventually(&mut served, "the health check", || get("/health")).await;
    let referrals = eventually(&mut served, "30 stored referrals", || async {
        let page = get("/referrals?limit=200").await?;
        (page["items"].as_array()?.len() == 30).then_some(page)
    })
    .await;
    assert!(
        referrals["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["eligible"] == true)
    );
    let unauthorized = http.get(format!("{base}/referrals")).send().await.unwrap();
    assert_eq!(unauthorized.status(), reqwest::StatusCode::UNAUTHORIZED);

    let first = eventually(&mut served, "the first run to finish", || async {
        let runs = get("/sync-runs").await?;
        let run = runs["items"].get(0)?.clone();
        (run["status"] == "succeeded").then_some(run)
    })
    .await;
    let accepted: Value = http
        .post(format!("{base}/sync"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = accepted["runId"].as_str().unwrap().to_owned();
    assert_ne!(Value::from(run_id.clone()), first["id"]);
    eventually(&mut served, "the requested run", || async {
        let runs = get("/sync-runs").await?;
        runs["items"]
            .as_array()?
            .iter()
            .any(|r| r["id"] == run_id.as_str() && r["status"] == "succeeded")
            .then_some(())
    })
    .await;

    let _ = Command::new("kill")
        .args(["-INT", &served.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "Ctrl-C did not stop hunter-local"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
