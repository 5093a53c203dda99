//! The hot path's input, shared by the bench and `examples/hot_path_loop.rs`.

use hunter_domain::scan::{DnsAnswers, MxRecord};

/// One referral's JSON text per line.
const CORPUS: &str = include_str!("seed-300.jsonl");

/// The corpus's referrals, as text.
pub fn texts() -> Vec<&'static str> {
    CORPUS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect()
}

/// Every domain answers like a Google Workspace customer.
pub fn google_mail() -> DnsAnswers {
    DnsAnswers {
        mx: vec![MxRecord {
            preference: 1,
            host: "aspmx.l.google.com".to_owned(),
        }],
        apex_txt: vec!["v=spf1 include:_spf.google.com ~all".to_owned()],
        dkim_txt: vec![("google".to_owned(), vec!["v=DKIM1; p=MIIB".to_owned()])],
        dmarc_txt: vec!["v=DMARC1; p=quarantine".to_owned()],
    }
}
