//! `hunter-local`: see `hunter-local --help` and the README.

use std::process::ExitCode;

use clap::Parser;
use hunter_core::telemetry;
use hunter_local::cli::Args;

#[tokio::main]
async fn main() -> ExitCode {
    telemetry::init(telemetry::LogFormat::Local);
    match hunter_local::run(Args::parse()).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(event = "hunter_local_failed", error = %format!("{err:#}"));
            eprintln!("hunter-local: {err:#}");
            ExitCode::from(2)
        }
    }
}
