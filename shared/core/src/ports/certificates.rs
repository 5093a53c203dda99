//! Where a signing certificate comes from (a webhook event names its URL).

use std::sync::Arc;

use async_trait::async_trait;
use url::Url;

/// Why a certificate could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// It could not be fetched now; a later attempt may succeed.
    #[error("certificate unavailable: {0}")]
    Unavailable(String),
    /// More bytes than a certificate has.
    #[error("certificate larger than {0} bytes")]
    TooLarge(usize),
}

impl CertificateError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Gets a certificate's bytes (DER, or PEM) from its URL.
#[async_trait]
pub trait CertificateSource: Send + Sync {
    async fn certificate(&self, url: &Url) -> Result<Arc<[u8]>, CertificateError>;
}
