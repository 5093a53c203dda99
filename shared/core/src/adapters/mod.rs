//! Implementations of the ports: DynamoDB and SQS for AWS, embedded ones for local mode.
//! One contract suite (workspace `tests/contract`) runs against both.

pub mod keys;

pub mod dns_scanner;
pub mod dynamo_store;
pub mod entra_tokens;
pub mod file_refresh_token;
pub mod http_certificates;
pub mod lambda_trigger;
pub mod lz4_text;
pub mod memory_queue;
pub mod memory_store;
pub mod secret_refresh_token;
pub mod sqs_queue;
pub mod static_scanner;

pub use dynamo_store::DynamoStore;
pub use entra_tokens::EntraTokenVerifier;
pub use file_refresh_token::{FileRefreshTokenStore, MemoryRefreshTokenStore};
pub use http_certificates::HttpCertificateSource;
pub use lambda_trigger::LambdaSyncTrigger;
pub use memory_queue::EmbeddedQueue;
pub use memory_store::EmbeddedStore;
pub use secret_refresh_token::SecretsManagerRefreshTokenStore;
pub use sqs_queue::SqsQueue;
pub use static_scanner::{Otherwise, StaticScanner};
