//! Hunter's durable embedded backend for local mode: the store and queue ports on one SQLite
//! file, with the same semantics as the in-memory adapters and DynamoDB/SQS (one contract suite
//! runs against all of them). Its own crate, so the Lambda binaries never link SQLite.
//!
//! ```no_run
//! # fn main() -> Result<(), hunter_sqlite::SqliteError> {
//! use std::time::Duration;
//! use hunter_sqlite::{SqliteDb, SqliteQueue, SqliteStore};
//!
//! let db = SqliteDb::open(std::path::Path::new("data/hunter.db"))?;
//! let store = SqliteStore::new(db.clone());
//! let referrals = SqliteQueue::new(db.clone(), "referrals", Duration::from_secs(60), 5);
//! db.backup_to(std::path::Path::new("backup.db"))?;
//! # let _ = (store, referrals);
//! # Ok(())
//! # }
//! ```

mod db;
mod packed;
mod payloads;
mod queue;
mod store;

pub use db::{SCHEMA_VERSION, SqliteDb, SqliteError};
pub use queue::SqliteQueue;
pub use store::SqliteStore;
