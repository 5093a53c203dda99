//! `hunter-local`: see `hunter-local --help` and the README.

use std::process::ExitCode;

use clap::Parser;
use hunter_core::telemetry;
use hunter_local::cli::Args;

/// jemalloc, configured in `.cargo/config.toml` (one arena, pages given back after 1 s).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
