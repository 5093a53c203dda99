//! [`RefreshTokenStore`]s of hunter-local: a file in the data directory
//! (`DIR/partner-center-refresh-token.json`, mode 0600, replaced atomically) and memory
//! (`--in-memory`, tests).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::partner_center::{RefreshTokenStore, StoredRefreshToken, TokenVersion};
use crate::ports::StoreError;
use crate::secret::Secret;

/// The file's name in the data directory.
pub const REFRESH_TOKEN_FILE: &str = "partner-center-refresh-token.json";
/// Held while a save compares and replaces the file (across processes).
const LOCK_FILE: &str = "partner-center-refresh-token.lock";
/// A lock older than this was left by a process that died while saving.
const STALE_LOCK: Duration = Duration::from_secs(10);
/// How long a save waits for another process's save.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The file's content: the token and a counter, +1 on every save.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenFile {
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    version: u64,
}

/// The rotating refresh token in `DIR/partner-center-refresh-token.json`, readable by its owner
/// only (created 0600, never wider), replaced through a temporary file and a rename so a reader
/// never sees half a token. A save compares the file's version with the one read first (under a
/// lock file, so two processes sharing the data directory never lose the newest token).
#[derive(Debug, Clone)]
pub struct FileRefreshTokenStore {
    dir: PathBuf,
}

impl FileRefreshTokenStore {
    /// The token file in `dir` (created, 0700, on the first save when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where the token is kept.
    pub fn path(&self) -> PathBuf {
        self.dir.join(REFRESH_TOKEN_FILE)
    }

    fn read(&self) -> Result<Option<TokenFile>, StoreError> {
        let path = self.path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(&path, &err)),
        };
        serde_json::from_str(&text).map(Some).map_err(|_| {
            StoreError::InvalidItem(format!(
                "{} is not {{\"refreshToken\": \"...\", \"version\": N}}",
                path.display()
            ))
        })
    }

    /// Writes `file` to a new 0600 temporary file next to the token file, then renames it over.
    fn replace(&self, file: &TokenFile) -> Result<(), StoreError> {
        let path = self.path();
        let temp = self.dir.join(format!(
            ".{REFRESH_TOKEN_FILE}.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let json =
            serde_json::to_vec_pretty(file).map_err(|e| StoreError::InvalidItem(e.to_string()))?;
        let written = (|| {
            let mut out = owner_only().write(true).create_new(true).open(&temp)?;
            out.write_all(&json)?;
            out.sync_all()?;
            std::fs::rename(&temp, &path)
        })();
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io_error(&path, &err));
        }
        Ok(())
    }

    /// The lock file, created exclusively; a stale one (its process died) is broken.
    async fn lock(&self) -> Result<LockGuard, StoreError> {
        create_dir_owner_only(&self.dir).map_err(|e| io_error(&self.dir, &e))?;
        let path = self.dir.join(LOCK_FILE);
        let started = tokio::time::Instant::now();
        loop {
            match owner_only().write(true).create_new(true).open(&path) {
                Ok(_) => return Ok(LockGuard(path)),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|at| SystemTime::now().duration_since(at).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        tracing::warn!(event = "refresh_token_stale_lock_removed", path = %path.display());
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        return Err(StoreError::Unavailable(format!(
                            "{} is held by another process",
                            path.display()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(err) => return Err(io_error(&path, &err)),
            }
        }
    }
}

/// Removes the lock file when the save is done.
struct LockGuard(PathBuf);

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn io_error(path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {err}", path.display()))
}

/// Open options that create files readable and writable by their owner only.
fn owner_only() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
}

/// `dir` and its parents, a created `dir` accessible by its owner only.
fn create_dir_owner_only(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn stored(file: TokenFile) -> Option<StoredRefreshToken> {
    (!file.refresh_token.is_empty()).then(|| StoredRefreshToken {
        token: Secret::new(file.refresh_token),
        version: TokenVersion(file.version.to_string()),
    })
}

#[async_trait]
impl RefreshTokenStore for FileRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        Ok(self.read()?.and_then(stored))
    }

    async fn save(
        &self,
        token: &Secret,
        expected: Option<&TokenVersion>,
    ) -> Result<TokenVersion, StoreError> {
        let _lock = self.lock().await?;
        let current = self.read()?;
        let found = current.as_ref().and_then(|file| {
            (!file.refresh_token.is_empty()).then(|| TokenVersion(file.version.to_string()))
        });
        if found.as_ref() != expected {
            return Err(StoreError::Conflict(format!(
                "{} changed since it was read",
                self.path().display()
            )));
        }
        let version = current.map_or(0, |file| file.version) + 1;
        self.replace(&TokenFile {
            refresh_token: token.expose().to_owned(),
            version,
        })?;
        Ok(TokenVersion(version.to_string()))
    }
}

/// The refresh token in memory only (`--in-memory`, the built-in simulator, tests); versions
/// count saves, as in the file.
#[derive(Debug, Default)]
pub struct MemoryRefreshTokenStore {
    stored: Mutex<Option<(Secret, u64)>>,
}

impl MemoryRefreshTokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that already holds `token`.
    pub fn holding(token: Secret) -> Self {
        Self {
            stored: Mutex::new(Some((token, 1))),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Secret, u64)>> {
        self.stored
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl RefreshTokenStore for MemoryRefreshTokenStore {
    async fn load(&self) -> Result<Option<StoredRefreshToken>, StoreError> {
        Ok(self
            .lock()
            .as_ref()
            .map(|(token, version)| StoredRefreshToken {
                token: token.clone(),
                version: TokenVersion(version.to_string()),
            }))
    }

    async fn save(
        &self,
        token: &Secret,
        expected: Option<&TokenVersion>,
    ) -> Result<TokenVersion, StoreError> {
        let mut stored = self.lock();
        let found = stored
            .as_ref()
            .map(|(_, version)| TokenVersion(version.to_string()));
        if found.as_ref() != expected {
            return Err(StoreError::Conflict(
                "the refresh token changed since it was read".to_owned(),
            ));
        }
        let version = stored.as_ref().map_or(0, |(_, v)| *v) + 1;
        *stored = Some((token.clone(), version));
        Ok(TokenVersion(version.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn second_save_with_the_same_read_version_conflicts(store: &dyn RefreshTokenStore) {
        assert_eq!(store.load().await.unwrap(), None);
        let first = store.save(&Secret::new("rt-1"), None).await.unwrap();
        assert!(matches!(
            store.save(&Secret::new("rt-other"), None).await,
            Err(StoreError::Conflict(_))
        ));
        let read = store.load().await.unwrap().unwrap();
        assert_eq!((read.token.expose(), &read.version), ("rt-1", &first));
        // Two renewals read the same version: the first save wins, the second is refused.
        let second = store
            .save(&Secret::new("rt-2"), Some(&read.version))
            .await
            .unwrap();
        assert_ne!(second, first);
        assert!(matches!(
            store.save(&Secret::new("rt-3"), Some(&read.version)).await,
            Err(StoreError::Conflict(_))
        ));
        let newest = store.load().await.unwrap().unwrap();
        assert_eq!((newest.token.expose(), &newest.version), ("rt-2", &second));
        crate::partner_center::replace_refresh_token(store, &Secret::new("signed-in"))
            .await
            .unwrap();
        assert_eq!(
            store.load().await.unwrap().unwrap().token.expose(),
            "signed-in"
        );
    }

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!(
            "hunter-refresh-token-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    #[tokio::test]
    async fn when_two_saves_read_the_same_version_memory_should_keep_the_first() {
        second_save_with_the_same_read_version_conflicts(&MemoryRefreshTokenStore::new()).await;
    }

    #[tokio::test]
    async fn when_two_saves_read_the_same_version_the_file_should_keep_the_first() {
        let dir = temp_dir().join("data");
        let store = FileRefreshTokenStore::new(&dir);
        second_save_with_the_same_read_version_conflicts(&store).await;
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec![REFRESH_TOKEN_FILE], "no temp or lock file left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
            let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        let text = std::fs::read_to_string(store.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["refreshToken"], "signed-in");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn when_a_lock_was_left_by_a_dead_process_the_file_should_still_be_saved() {
        let dir = temp_dir();
        let store = FileRefreshTokenStore::new(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lock = dir.join(LOCK_FILE);
        std::fs::write(&lock, b"").unwrap();
        let old = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&lock)
            .unwrap()
            .set_modified(old)
            .unwrap();
        store.save(&Secret::new("rt"), None).await.unwrap();
        assert!(!lock.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
