//! Scanning a lead's domain and recording what the scan says on the lead: the one way ingest
//! (a scan that is due) and the API (a rescan a person asked for) score leads.

use hunter_domain::clock;
use hunter_domain::lead_scan::apply_scan;
use hunter_domain::model::Lead;
use hunter_domain::rules::Domain;
use hunter_domain::scan::DomainScan;
use hunter_domain::scoring::{ScoreInput, ScoringRules, assess};

use crate::optimistic::{Change, update_lead};
use crate::ports::{DomainScanner, LeadStore, StoreError};

/// A lead after a scan was recorded on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scanned {
    pub lead: Lead,
    pub scan: DomainScan,
    /// What the lead says (score, provider, segment, ...) changed: a push is due.
    pub changed: bool,
}

/// Scans `domain`, assesses the scan with `rules`, and records both on the domain's lead. `None`
/// when there is no lead (the scan is not kept).
pub async fn scan_lead(
    store: &(impl LeadStore + ?Sized),
    scanner: &dyn DomainScanner,
    rules: &ScoringRules,
    domain: &Domain,
) -> Result<Option<Scanned>, StoreError> {
    let scan = scanner.scan(domain).await;
    tracing::info!(
        event = "domain_scanned",
        domain = %domain,
        state = scan.state.as_str(),
        detail = scan.detail.as_deref(),
        mx = scan.signals.preferred_mx(),
    );
    let now = clock::now();
    update_lead(store, domain, |stored| {
        let Some(mut lead) = stored else {
            return Change::Keep(None);
        };
        let input = ScoreInput {
            state: scan.state,
            signals: &scan.signals,
            co_sell: lead.has_co_sell(),
            azure_tenant: false,
        };
        let changed = apply_scan(&mut lead, &scan, assess(&input, rules), now);
        let scanned = Scanned {
            lead: lead.clone(),
            scan: scan.clone(),
            changed,
        };
        Change::Write(lead, Some(scanned))
    })
    .await
}
