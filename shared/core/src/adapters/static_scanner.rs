//! A [`DomainScanner`] that answers from a table instead of DNS: for tests, benchmarks and runs
//! that must not touch the network.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use hunter_domain::clock;
use hunter_domain::rules::Domain;
use hunter_domain::scan::{DnsAnswers, DomainScan, ScanState, Signals};

use crate::ports::DomainScanner;

/// Answers each domain's scan from its [`DnsAnswers`] (no MX: `no_mx`), or as
/// [`Otherwise`] says for a domain the table does not hold; counts the scans it answered.
#[derive(Debug)]
pub struct StaticScanner {
    answers: HashMap<Domain, DnsAnswers>,
    otherwise: Otherwise,
    scans: Mutex<HashMap<Domain, u32>>,
}

/// The scan of a domain a [`StaticScanner`]'s table does not hold.
#[derive(Debug, Clone)]
pub enum Otherwise {
    /// This state, with no signals (e.g. `Nxdomain`, `Timeout`).
    State(ScanState),
    /// These answers.
    Answers(DnsAnswers),
}

impl StaticScanner {
    pub fn new(answers: HashMap<Domain, DnsAnswers>, otherwise: Otherwise) -> Self {
        Self {
            answers,
            otherwise,
            scans: Mutex::new(HashMap::new()),
        }
    }

    /// How often `domain` was scanned.
    pub fn scans_of(&self, domain: &Domain) -> u32 {
        self.lock().get(domain).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Domain, u32>> {
        self.scans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl DomainScanner for StaticScanner {
    async fn scan(&self, domain: &Domain) -> DomainScan {
        *self.lock().entry(domain.clone()).or_default() += 1;
        let answers = match (self.answers.get(domain), &self.otherwise) {
            (Some(answers), _) | (None, Otherwise::Answers(answers)) => Some(answers),
            (None, Otherwise::State(_)) => None,
        };
        let (state, signals) = match (answers, &self.otherwise) {
            (Some(answers), _) if answers.mx.is_empty() => {
                (ScanState::NoMx, Signals::read(answers))
            }
            (Some(answers), _) => (ScanState::Ok, Signals::read(answers)),
            (None, Otherwise::State(state)) => (*state, Signals::default()),
            (None, Otherwise::Answers(_)) => (ScanState::Timeout, Signals::default()),
        };
        DomainScan {
            domain: domain.clone(),
            state,
            signals,
            scanned_at: clock::now(),
            detail: (state != ScanState::Ok).then(|| format!("static answer: {}", state.as_str())),
        }
    }
}
