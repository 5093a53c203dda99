//! Prints N seeded referrals, one JSON document per line.
#![allow(missing_docs)]
fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    for referral in hunter_local::sim::seed::generate_referrals(count, seed) {
        println!("{referral}");
    }
}
