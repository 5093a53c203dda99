//! Prints N seeded referrals, one JSON document per line.
#![allow(missing_docs)]
use std::io::Write as _;

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for seeded in hunter_local::sim::seed::seeded_referrals(count, seed) {
        if writeln!(out, "{}", seeded.text()).is_err() {
            return;
        }
    }
}
