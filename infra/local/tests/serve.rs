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

/// The first line hunter-local prints.
fn banner(served: &mut Served) -> String {
    let mut banner = String::new();
    BufReader::new(served.0.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    banner
}

/// The URL in `banner`.
fn url_in(banner: &str) -> String {
    banner
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .to_owned()
}

fn start(args: &[&str], token: Option<&str>) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hunter-local"));
    command
        .args(["--port", "0", "--in-memory"])
        .args(args)
        .env_remove("HUNTER_API_TOKEN")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(token) = token {
        command.env("HUNTER_API_TOKEN", token);
    }
    Served(command.spawn().unwrap())
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
    let mut served = start(&["--seed", "30", "--sync-interval", "3600"], Some(TOKEN));
    // The first line, for the person at the terminal: the URL (port 0: the one it got); a token
    // of theirs (HUNTER_API_TOKEN) is never printed.
    let banner = banner(&mut served);
    assert!(!banner.contains(TOKEN), "{banner}");
    let url = url_in(&banner);
    let url = url.trim_end_matches('/').to_owned();
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

#[tokio::test]
async fn when_started_without_a_token_should_print_a_url_that_signs_the_ui_in_with_a_new_one() {
    let mut served = start(&["--seed", "5", "--sync-interval", "3600"], None);
    let url = url_in(&banner(&mut served));
    let (origin, token) = url
        .split_once("/#token=")
        .unwrap_or_else(|| panic!("no #token= in {url}"));
    assert!(token.len() >= 32, "a guessable token: {token:?}");
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut request = http.get(format!("{origin}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move { request.send().await.ok() }
    };
    eventually(&mut served, "the health check", || {
        get("/api/v1/health", None)
    })
    .await;

    // The token from the fragment is the API's; without it the API refuses.
    let stats = get("/api/v1/stats", Some(token)).await.unwrap();
    assert_eq!(stats.status(), reqwest::StatusCode::OK);
    let refused = get("/api/v1/stats", Some("a-guess")).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    // The UI: its page at `/`, and the config it starts from, both with a strict CSP.
    let page = get("/", None).await.unwrap();
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.unwrap().contains("<html"));
    let revalidated = http
        .get(format!("{origin}/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), reqwest::StatusCode::NOT_MODIFIED);
    let config: Value = get("/config.json", None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["apiBase"], "/api/v1");
    assert_eq!(config["auth"]["mode"], "token");

    // Unknown UI files are a plain 404; unknown API routes the API's JSON 404.
    let missing = get("/no-such-file.js", None).await.unwrap();
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    let unknown = get("/api/v1/no-such-route", Some(token)).await.unwrap();
    assert_eq!(unknown.status(), reqwest::StatusCode::NOT_FOUND);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

/// The durable backend commits its writes in groups, a few milliseconds apart; what the API
/// has accepted is committed before it answers. Killed (SIGKILL) right after the answer, the
/// push it queued is in the database.
#[tokio::test]
async fn when_killed_right_after_a_push_was_accepted_should_keep_the_push_request() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_hunter-local"));
    command
        .args(["--port", "0", "--data-dir", data.to_str().unwrap()])
        .args(["--seed", "30", "--sync-interval", "3600", "--no-dynamics"])
        .env("HUNTER_API_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut served = Served(command.spawn().unwrap());
    let url = url_in(&banner(&mut served));
    let base = format!("{}/api/v1", url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let domain = eventually(&mut served, "a stored lead", || async {
        let page: Value = http
            .get(format!("{base}/leads?limit=1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        Some(page["items"].get(0)?["domain"].as_str()?.to_owned())
    })
    .await;

    let accepted = http
        .post(format!("{base}/dynamics/sync/{domain}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), reqwest::StatusCode::ACCEPTED);
    served.0.kill().unwrap();
    served.0.wait().unwrap();

    let db = hunter_sqlite::SqliteDb::open(&data.join("hunter.db")).unwrap();
    let pushes =
        hunter_sqlite::SqliteQueue::new(db, "hunter-dynamics-push", Duration::from_secs(60), 5);
    let mut forced = Vec::new();
    loop {
        use hunter_core::ports::Queue as _;
        let batch = pushes.receive(10, None, Duration::ZERO).await.unwrap();
        if batch.is_empty() {
            break;
        }
        forced.extend(
            batch
                .into_iter()
                .map(|m| serde_json::from_str::<Value>(&m.body).unwrap())
                .filter(|body| body["force"] == true),
        );
    }
    assert_eq!(forced.len(), 1, "{forced:?}");
    assert_eq!(forced[0]["domain"], domain.as_str());
}
