//! One hunter-local per data directory: a lock held while it runs, so that whatever the store
//! says a previous process was doing (a lease on the sync) is known to be over.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;
use hunter_core::cursor::{load_cursor, renew_lease};
use hunter_core::ports::SyncStore;
use hunter_domain::clock;
use rustix::fs::{FlockOperation, flock};

/// The lock file in the data directory.
pub const LOCK_FILE: &str = "hunter.lock";

/// The data directory's lock, held until dropped (or the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock of `dir`, or says which directory another hunter-local is using.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the data directory {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|_| {
            anyhow::anyhow!(
                "another hunter-local is running on {} (one process per data directory)",
                dir.display()
            )
        })?;
        Ok(Self { _file: file })
    }
}

/// Ends the sync lease a previous process left behind (it was killed mid-sync): with the data
/// directory locked, no other process holds it. The next run takes over from the stored cursor
/// and records the interrupted run as `abandoned`.
pub async fn end_stale_lease(store: &dyn SyncStore) -> anyhow::Result<()> {
    let now = clock::now();
    let cursor = load_cursor(store).await?;
    if let Some(lease) = cursor.lease.filter(|lease| lease.is_live(now)) {
        if renew_lease(store, &lease.holder, now).await? {
            tracing::warn!(event = "stale_sync_lease_ended", run_id = %lease.run_id, holder = %lease.holder);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn when_a_data_directory_is_in_use_should_refuse_a_second_lock_until_the_first_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let second = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(
            second.to_string().contains("another hunter-local"),
            "{second}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
