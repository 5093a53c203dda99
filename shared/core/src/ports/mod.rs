//! The ports: what the handlers need from the world, as traits and the types they speak. Each
//! port's error says whether retrying may help. Adapters (`crate::adapters`, the Partner Center
//! and Dataverse clients) implement them; handlers take them as parameters.

mod auth;
mod certificates;
mod crm_changes;
mod queue;
mod scanner;
mod sink;
mod source;
mod store;
mod trigger;

pub use auth::{AccessTokenVerifier, AuthError, Caller};
pub use certificates::{CertificateError, CertificateSource};
pub use crm_changes::{CrmChangeSource, CrmChanges, CrmPullError};
pub use hunter_domain::rules::UpsertOutcome;
pub use queue::{OutgoingMessage, Queue, QueueDepth, QueueError, ReceivedMessage, SendFailure};
pub use scanner::DomainScanner;
pub use sink::{LeadSink, LeadUpsert, PushedLead, SinkError};
pub use source::{
    ReferralFilter, ReferralLookup, ReferralPage, ReferralSource, ReferralWriteBack,
    SIGN_IN_REQUIRED, SourceError, is_sign_in_required,
};
pub use store::{
    DEFAULT_PAGE_SIZE, FailureStore, LeadQuery, LeadSort, LeadStore, MAX_PAGE_SIZE, MessageFailure,
    Page, PayloadStore, ReferralQuery, ReferralStore, RunCount, Store, StoreError, SyncStore,
    page_size, upsert_each,
};
pub use trigger::{SyncTrigger, TriggerError};
