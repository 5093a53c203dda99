//! `hunter-local sign-in` (Entra's device code flow) against the Partner Center simulator, the
//! token file it leaves (0600) and the sync that uses it; and "sign in again": a refused refresh
//! token shows in `/api/v1/health`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hunter_core::partner_center::device_code::{DeviceCodeFlow, Poll, SignInError};
use hunter_core::secret::Secret;
use hunter_local::sim::partner_center::{
    Decision, DeviceFlow, PartnerCenterSim, RunningSim, SimConfig,
};
use serde_json::{Value, json};

const CLIENT_ID: &str = "hunter-sign-in-test";
const TOKEN_FILE: &str = "partner-center-refresh-token.json";

/// A data directory of its own, removed on drop.
struct DataDir(PathBuf);

impl DataDir {
    fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("hunter-sign-in-{}", uuid::Uuid::new_v4().simple()));
        Self(dir)
    }

    fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn token_file(&self) -> PathBuf {
        self.0.join(TOKEN_FILE)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn simulator() -> RunningSim {
    PartnerCenterSim::new(Vec::new(), SimConfig::default())
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

/// `hunter-local ARGS` against `sim`, with the data directory `dir`, the test's app id and no
/// Partner Center token or URLs from the environment.
fn hunter_local(sim: &RunningSim, dir: &DataDir, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hunter-local"));
    command
        .args(args)
        .args(["--partner-center-url", &sim.base_url])
        .args(["--partner-center-token-url", &sim.token_url])
        .args(["--data-dir", dir.arg()])
        .env("HUNTER_PC_CLIENT_ID", CLIENT_ID)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for name in [
        "HUNTER_PC_CLIENT_SECRET",
        "HUNTER_PC_REFRESH_TOKEN",
        "HUNTER_PC_REFRESH_TOKEN_SECRET_ARN",
        "HUNTER_PARTNER_CENTER_URL",
        "HUNTER_PARTNER_CENTER_TOKEN_URL",
        "HUNTER_SECRET_ARN",
    ] {
        command.env_remove(name);
    }
    command
}

/// Starts `hunter-local sign-in`, waits for its device code at the simulator, lets the person
/// `decide`, and returns the user code and the command's output.
async fn sign_in(sim: &RunningSim, dir: &DataDir, decide: &str) -> (String, Output) {
    let child = hunter_local(sim, dir, &["sign-in"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(30);
    let user_code = loop {
        if let Some(pending) = sim.sim.pending_sign_ins().first() {
            break pending.user_code.clone();
        }
        if output.is_finished() {
            let output = output.await.unwrap().unwrap();
            panic!(
                "sign-in ended before asking for a device code: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "sign-in asked for no device code"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The person opens the page, enters the code and approves (or declines).
    let decided: Value = reqwest::Client::new()
        .post(format!("{}/_sim/device/{decide}", sim.base_url))
        .json(&json!({ "userCode": user_code }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(decided["decided"], 1, "{decided}");
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("sign-in did not end")
        .unwrap()
        .unwrap();
    (user_code, output)
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn stored_token(dir: &DataDir) -> String {
    let text = std::fs::read_to_string(dir.token_file()).unwrap();
    let file: Value = serde_json::from_str(&text).unwrap();
    file["refreshToken"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_signed_in_with_a_device_code_the_token_file_is_0600_and_the_next_sync_uses_it() {
    let sim = simulator().await;
    // Nobody approves by themselves: the test is the person at the browser.
    sim.sim.set_device_flow(DeviceFlow {
        auto_approve_after_polls: None,
        slow_down_next: 0,
    });
    let dir = DataDir::new();

    let (user_code, output) = sign_in(&sim, &dir, "approve").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.trim(), "signed in", "{stderr}");
    assert!(
        stderr.contains(&user_code) && stderr.contains("https://microsoft.com/devicelogin"),
        "the verification URL and user code are shown: {stderr}"
    );
    assert_eq!(mode(&dir.token_file()), 0o600);
    let signed_in = stored_token(&dir);
    assert_eq!(
        signed_in,
        sim.sim.current_refresh_token(),
        "the sign-in's refresh token is kept"
    );
    assert!(!stdout.contains(&signed_in) && !stderr.contains(&signed_in));

    // The next sync redeems the kept token (the only one the simulator accepts) and keeps its
    // rotated successor in the same file, still 0600.
    let output = hunter_local(&sim, &dir, &["--once", "--no-dynamics"])
        .output()
        .unwrap();
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{summary}");
    assert_eq!(summary["status"], "succeeded", "{summary}");
    let rotated = stored_token(&dir);
    assert_ne!(rotated, signed_in);
    assert_eq!(rotated, sim.sim.current_refresh_token());
    assert_eq!(mode(&dir.token_file()), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_sign_in_is_declined_should_fail_and_keep_nothing() {
    let sim = simulator().await;
    sim.sim.set_device_flow(DeviceFlow {
        auto_approve_after_polls: None,
        slow_down_next: 0,
    });
    let dir = DataDir::new();
    let (_, output) = sign_in(&sim, &dir, "deny").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("declined"), "{stderr}");
    assert!(!dir.token_file().exists());
}

#[tokio::test]
async fn when_polling_the_device_code_should_follow_pending_slow_down_and_approval() {
    let sim = simulator().await;
    sim.sim.set_device_flow(DeviceFlow {
        auto_approve_after_polls: None,
        slow_down_next: 1,
    });
    let flow = DeviceCodeFlow::new(
        reqwest::Client::new(),
        &sim.token_url,
        CLIENT_ID,
        Secret::default(),
    )
    .unwrap();
    let code = flow.start().await.unwrap();
    assert!(code.message.contains(&code.user_code), "{}", code.message);
    assert_eq!(code.interval, Duration::from_secs(1));
    assert_eq!(flow.poll(&code).await.unwrap(), Poll::SlowDown);
    assert_eq!(flow.poll(&code).await.unwrap(), Poll::Pending);
    let pending = sim.sim.pending_sign_ins();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].user_code.as_str(), pending[0].decision),
        (code.user_code.as_str(), Decision::Pending)
    );
    assert_eq!(sim.sim.decide_sign_ins(None, Decision::Approved), 1);
    let Poll::Approved(signed_in) = flow.poll(&code).await.unwrap() else {
        panic!("not approved");
    };
    assert_eq!(
        signed_in.refresh_token.expose(),
        sim.sim.current_refresh_token()
    );
    // A redeemed code is gone.
    assert!(matches!(
        flow.poll(&code).await,
        Err(SignInError::Refused { .. })
    ));

    // The control routes say the same.
    let http = reqwest::Client::new();
    let device: Value = http
        .get(format!("{}/_sim/device", sim.base_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        device,
        json!({"autoApproveAfterPolls": null, "slowDownNext": 0, "pending": []})
    );
    let put = http
        .put(format!("{}/_sim/device", sim.base_url))
        .json(&json!({"autoApproveAfterPolls": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(sim.sim.device_flow().auto_approve_after_polls, Some(2));
}

/// `hunter-local` serving, killed on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_partner_center_refuses_the_refresh_token_health_should_ask_for_a_new_sign_in() {
    const API_TOKEN: &str = "sign-in-health-token";
    let dir = DataDir::new();
    let mut served = Served(
        Command::new(env!("CARGO_BIN_EXE_hunter-local"))
            .args(["--port", "0", "--seed", "5", "--sync-interval", "3600"])
            .args(["--sim-refresh-token-revoked", "--in-memory"])
            .args(["--data-dir", dir.arg()])
            .env("HUNTER_API_TOKEN", API_TOKEN)
            .env_remove("HUNTER_PC_REFRESH_TOKEN")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut banner = String::new();
    BufReader::new(served.0.stdout.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {banner:?}"))
        .trim_end_matches('/')
        .to_owned();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let health = loop {
        let health: Value = http
            .get(format!("{url}/api/v1/health"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if health["lastSync"]["status"] == "failed" {
            break health;
        }
        assert!(Instant::now() < deadline, "no failed run: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        health["partnerCenter"],
        json!({"signIn": "required"}),
        "{health}"
    );
    let error = health["lastSync"]["error"].as_str().unwrap();
    assert!(error.starts_with("sign-in required:"), "{error}");
    assert!(error.contains("hunter-local sign-in"), "{error}");
    // Without the token, /health says only that the API answers.
    let open: Value = http
        .get(format!("{url}/api/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(open, json!({"status": "ok"}));
}

/// Two processes sharing one stored refresh token (fetch-referrals and push-dynamics' write-back):
/// when one rotated the token the other holds, the other's grant is refused once, it loads the
/// stored (newer) token and goes on, instead of failing with "sign in again".
#[tokio::test]
async fn when_another_process_rotated_the_token_should_reload_it_instead_of_failing() {
    use hunter_core::adapters::MemoryRefreshTokenStore;
    use hunter_core::partner_center::RefreshTokenStore as _;
    use hunter_core::ports::{ReferralFilter, ReferralSource as _};
    use hunter_local::sim::control::SimControl as _;

    let sim = PartnerCenterSim::new(
        hunter_local::sim::seed::generate_referrals(3, 1),
        SimConfig::default(),
    )
    .serve(([127, 0, 0, 1], 0).into())
    .await
    .unwrap();
    let config = hunter_core::config::Config {
        partner_center_url: sim.base_url.clone(),
        partner_center_token_url: sim.token_url.clone(),
        ..hunter_core::config::Config::from_vars(Vec::new()).unwrap()
    };
    let credentials = hunter_core::credentials::Credentials {
        pc_client_id: CLIENT_ID.to_owned(),
        pc_refresh_token: SimConfig::default().initial_refresh_token,
        ..Default::default()
    };
    let tokens = std::sync::Arc::new(MemoryRefreshTokenStore::new());
    let client = |tokens| {
        hunter_core::wiring::partner_center(reqwest::Client::new(), &config, &credentials, tokens)
            .unwrap()
    };
    let (first, second) = (client(tokens.clone()), client(tokens.clone()));
    let filter = ReferralFilter {
        page_size: 100,
        ..ReferralFilter::default()
    };
    first.first_page(&filter, None).await.unwrap();
    second.first_page(&filter, None).await.unwrap();
    // `second` rotated the token `first` holds; `first`'s access token expires.
    sim.sim.expire_all_tokens();
    let page = first.first_page(&filter, None).await.unwrap();
    assert_eq!(page.referrals.len(), 3);
    assert_eq!(
        tokens.load().await.unwrap().unwrap().token.expose(),
        sim.sim.current_refresh_token(),
        "the newest token is the stored one"
    );
}
