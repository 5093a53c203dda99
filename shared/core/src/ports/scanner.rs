//! Scanning a company domain's DNS (MX, SPF, DKIM, DMARC).

use async_trait::async_trait;
use hunter_domain::rules::Domain;
use hunter_domain::scan::DomainScan;

/// Asks DNS about a domain's mail. Never fails: NXDOMAIN, SERVFAIL and timeouts are scan states
/// ([`hunter_domain::scan::ScanState`]), so a scan always has an answer within its deadline.
#[async_trait]
pub trait DomainScanner: Send + Sync {
    async fn scan(&self, domain: &Domain) -> DomainScan;
}
