//! The database: one SQLite file in WAL mode, its versioned schema, and the connection the
//! adapters share.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use hunter_core::ports::{QueueError, StoreError};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, TransactionBehavior};

/// The schema this build reads and writes (`PRAGMA user_version`; 0 is a new, empty file).
/// Version 2 writes records and message bodies packed (`crate::packed`); the tables are those of
/// version 1, whose text values read as they are, so a build of version 1 refuses such a file
/// instead of failing on its values.
pub const SCHEMA_VERSION: i64 = 2;

/// SQLite's page cache per connection, in KiB.
const PAGE_CACHE_KIB: i64 = 16 * 1024;

/// WAL pages after which a commit checkpoints.
const WAL_CHECKPOINT_PAGES: i64 = 10_000;

/// Prepared statements kept per connection: more than the adapters use.
const STATEMENT_CACHE: usize = 128;

/// How long a statement waits for another connection's lock before it fails as busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema version 1. Records are JSON in `data`; the other columns are keys, sort keys and
/// filters derived from it.
const SCHEMA_V1: &str = "
CREATE TABLE referrals (
    id TEXT PRIMARY KEY NOT NULL,
    sort_key TEXT NOT NULL,
    status TEXT,
    substatus TEXT,
    eligible INTEGER NOT NULL,
    skip_reason TEXT,
    search TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX referrals_by_created ON referrals (sort_key);

CREATE TABLE leads (
    domain TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    key_score TEXT NOT NULL,
    key_domain TEXT NOT NULL,
    key_referrals TEXT NOT NULL,
    key_updated TEXT NOT NULL,
    score INTEGER,
    provider TEXT,
    segment TEXT,
    priority_category TEXT,
    sync_status TEXT NOT NULL,
    scan_state TEXT NOT NULL,
    search TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX leads_by_score ON leads (key_score);
CREATE INDEX leads_by_domain ON leads (key_domain);
CREATE INDEX leads_by_referrals ON leads (key_referrals);
CREATE INDEX leads_by_updated ON leads (key_updated);

CREATE TABLE contributions (
    domain TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (domain, referral_id)
);

CREATE TABLE audit (
    domain TEXT NOT NULL,
    id TEXT NOT NULL,
    sort_key TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (domain, id)
);
CREATE INDEX audit_by_time ON audit (domain, sort_key);

CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY NOT NULL,
    sort_key TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX sync_runs_by_start ON sync_runs (sort_key);

CREATE TABLE run_counted (
    run_id TEXT NOT NULL,
    referral_id TEXT NOT NULL,
    PRIMARY KEY (run_id, referral_id)
);

CREATE TABLE sync_state (
    key TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL
);

CREATE TABLE message_failures (
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (queue, message_id)
);

CREATE TABLE queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    receipt TEXT
);
CREATE INDEX queue_messages_in_order ON queue_messages (queue, seq);
CREATE UNIQUE INDEX queue_messages_by_receipt ON queue_messages (receipt)
    WHERE receipt IS NOT NULL;

CREATE TABLE queue_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    receive_count INTEGER NOT NULL
);
CREATE INDEX queue_dead_letters_in_order ON queue_dead_letters (queue, seq);
";

/// A failure to open, migrate or back up the database.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file's directory cannot be created.
    #[error("database directory: {0}")]
    Io(#[from] std::io::Error),
    /// The file was written by a newer build; this one must not touch it.
    #[error("database schema version {found} is newer than this build's {SCHEMA_VERSION}")]
    NewerSchema { found: i64 },
    /// The file cannot be put in WAL mode (so commits would not be crash-safe as promised).
    #[error("journal mode is {0}, not wal")]
    NotWal(String),
    /// Another connection kept the database locked for longer than the busy timeout.
    #[error("database is busy")]
    Busy,
}

/// One SQLite database file shared by [`crate::SqliteStore`] and any number of
/// [`crate::SqliteQueue`]s: WAL journal, `synchronous = NORMAL` (a committed write survives a
/// crash or SIGKILL of the process), busy timeout, schema created or checked on open. Cheap to
/// clone; every clone uses the same connection, and the adapters only use it off the async
/// runtime (`spawn_blocking`).
///
/// Opened with [`SqliteDb::open_grouped`], commits are grouped: every call joins one open
/// transaction, committed every `window` (and by [`SqliteDb::commit`] and on drop), instead of
/// one commit per call. All of a process's writes go through this one connection in the order
/// it makes them, so a crash loses the last window's calls as a whole suffix — as if the
/// process had died that much earlier: a message whose writes were lost was not deleted
/// either, and comes back. Each call stays atomic on its own (a savepoint).
#[derive(Clone)]
pub struct SqliteDb {
    inner: Arc<Inner>,
}

struct Inner {
    path: Option<PathBuf>,
    conn: Mutex<Connection>,
    /// Commits are grouped (see [`SqliteDb::open_grouped`]).
    grouped: bool,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the connection rolled its transaction back (the `Transaction`
        // was dropped), so the connection is still sound.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Commits the open group, if any. A failed commit rolls the group back (the calls in it
    /// are lost as in a crash, and their messages come back) so that the next call starts
    /// afresh.
    fn commit_group(&self) -> Result<(), SqliteError> {
        let conn = self.lock();
        if conn.is_autocommit() {
            return Ok(());
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            tracing::error!(event = "sqlite_group_commit_failed", error = %e);
            return Err(e.into());
        }
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A connection dropped inside a transaction rolls it back: keep the last group.
        let _ = self.commit_group();
    }
}

impl fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDb")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl SqliteDb {
    /// Opens (or creates) the database file at `path`, e.g. `DIR/hunter.db`. Blocking.
    /// Creates the file's directory if it is missing.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        Self::ready(connect(path)?, Some(path.to_owned()), false)
    }

    /// [`SqliteDb::open`] with grouped commits (see the type's docs): a commit every `window`
    /// at most, from a thread of its own that ends with the last clone. For the only process
    /// writing the file (hunter-local holds its data directory's lock); readers in other
    /// processes see each group once it is committed.
    pub fn open_grouped(path: &Path, window: Duration) -> Result<Self, SqliteError> {
        let db = Self::ready(connect(path)?, Some(path.to_owned()), true)?;
        spawn_committer(Arc::downgrade(&db.inner), window)?;
        Ok(db)
    }

    /// A private in-memory database (tests); gone when the last clone is dropped.
    pub fn open_in_memory() -> Result<Self, SqliteError> {
        Self::ready(Connection::open_in_memory()?, None, false)
    }

    fn ready(
        mut conn: Connection,
        path: Option<PathBuf>,
        grouped: bool,
    ) -> Result<Self, SqliteError> {
        migrate(&mut conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                grouped,
            }),
        })
    }

    /// Makes every call so far durable: commits the open group now (grouped commits; without
    /// them every call has committed already). Blocking: from async code, inside
    /// `spawn_blocking` or `block_in_place`.
    pub fn commit(&self) -> Result<(), SqliteError> {
        self.inner.commit_group()
    }

    /// The file it was opened from (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, SqliteError> {
        Ok(self
            .lock()
            .pragma_query_value(None, "user_version", |row| row.get(0))?)
    }

    /// Copies a consistent snapshot of the whole database to the file `dest` (replacing what
    /// it holds) with SQLite's online backup, while other connections go on writing. Blocking:
    /// from async code, call it inside `spawn_blocking`.
    pub fn backup_to(&self, dest: &Path) -> Result<(), SqliteError> {
        self.commit()?;
        let source = self.lock();
        let mut target = Connection::open(dest)?;
        target.busy_timeout(BUSY_TIMEOUT)?;
        let backup = Backup::new(&source, &mut target)?;
        let started = Instant::now();
        loop {
            // All pages in one step: one read snapshot, so concurrent writers never restart it.
            match backup.step(-1)? {
                StepResult::Done => return Ok(()),
                StepResult::More => {}
                StepResult::Busy | StepResult::Locked if started.elapsed() > BUSY_TIMEOUT => {
                    return Err(SqliteError::Busy);
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.inner.lock()
    }

    /// The connection for one call: inside the open group when commits are grouped (one is
    /// begun if none is open). Deferred: a group that only reads never takes the write lock,
    /// so another process's write (`hunter-local redrive`) gets in while this one is idle.
    fn connection(&self) -> Result<MutexGuard<'_, Connection>, DbError> {
        let conn = self.lock();
        if self.inner.grouped && conn.is_autocommit() {
            run_cached(&conn, "BEGIN DEFERRED")?;
        }
        Ok(conn)
    }

    /// Runs `f` with the connection off the async scheduler: in place on a multi-threaded
    /// runtime ([`tokio::task::block_in_place`]: the worker hands its other tasks to another
    /// thread; `f` itself is not sent anywhere), else on the blocking thread pool. A statement
    /// takes tens of microseconds; a handoff to the pool per call cost more than the statement.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, DbError> + Send + 'static,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
            return tokio::task::block_in_place(|| f(&mut *self.connection()?));
        }
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&mut *db.connection()?))
            .await
            .map_err(|e| DbError::Task(e.to_string()))?
    }
}

/// Opens (or creates) the file at `path` in WAL mode, creating its directory if missing.
fn connect(path: &Path) -> Result<Connection, SqliteError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(SqliteError::NotWal(mode));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Savepoints keep the pages they change in a sub-journal: in memory, not a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A checkpoint (WAL pages copied into the file, then fsync) every ~40 MB of WAL rather than
    // SQLite's 4 MB: a durable sync spent a tenth of its time checkpointing.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)?;
    // A grouped commit dirties more pages than SQLite's 2 MiB cache holds: with this one, no
    // pages spilled to the WAL mid-group or read back (100,000 durable: 18 % faster, +15 MB).
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    // Every statement the adapters use stays prepared (rusqlite keeps 16 by default: fewer
    // than the adapters have, so they were prepared again and again).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Commits `db`'s open group every `window` until the last clone of it is dropped.
fn spawn_committer(db: Weak<Inner>, window: Duration) -> Result<(), SqliteError> {
    std::thread::Builder::new()
        .name("sqlite-commit".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(window);
                let Some(inner) = db.upgrade() else { return };
                // Logged where it fails; the next group starts afresh.
                let _ = inner.commit_group();
            }
        })?;
    Ok(())
}

/// One call's transaction: a transaction of its own on a connection outside any (committed by
/// [`Tx::commit`]), else a savepoint inside the open one (released by it). Dropped without
/// [`Tx::commit`], it undoes its own statements only.
pub(crate) struct Tx<'c> {
    conn: &'c Connection,
    nested: bool,
    done: bool,
}

impl<'c> Tx<'c> {
    /// Begins a write transaction: `BEGIN IMMEDIATE` (the write lock at once, so that another
    /// connection's write between a read and a write cannot fail it), or a savepoint.
    pub(crate) fn write(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::begin(conn, "BEGIN IMMEDIATE")
    }

    /// Begins a read transaction (one snapshot for several statements), or a savepoint.
    pub(crate) fn read(conn: &'c Connection) -> rusqlite::Result<Self> {
        Self::begin(conn, "BEGIN DEFERRED")
    }

    fn begin(conn: &'c Connection, begin: &str) -> rusqlite::Result<Self> {
        let nested = !conn.is_autocommit();
        run_cached(conn, if nested { "SAVEPOINT call" } else { begin })?;
        Ok(Self {
            conn,
            nested,
            done: false,
        })
    }

    pub(crate) fn commit(mut self) -> rusqlite::Result<()> {
        self.done = true;
        run_cached(
            self.conn,
            if self.nested {
                "RELEASE call"
            } else {
                "COMMIT"
            },
        )
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let undo: &[&str] = if self.nested {
            &["ROLLBACK TO call", "RELEASE call"]
        } else {
            &["ROLLBACK"]
        };
        // Also after a statement error; SQLite may have ended the transaction itself.
        for statement in undo {
            if !self.conn.is_autocommit() {
                let _ = run_cached(self.conn, statement);
            }
        }
    }
}

/// Runs one statement without parameters, prepared once per connection.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
}

/// Creates the schema of a new file, or checks that an existing one is not newer.
fn migrate(conn: &mut Connection) -> Result<(), SqliteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema { found });
    }
    if found < 1 {
        tx.execute_batch(SCHEMA_V1)?;
    }
    // Version 2 changed what new values look like, not the tables: nothing to migrate.
    // Later versions migrate here, one step at a time, in this same transaction.
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// What can go wrong inside one database call; mapped to the port's error at the boundary.
#[derive(Debug)]
pub(crate) enum DbError {
    Sql(rusqlite::Error),
    Json(serde_json::Error),
    Store(StoreError),
    Queue(QueueError),
    /// The blocking task panicked or was cancelled.
    Task(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<serde_json::Error> for DbError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl From<StoreError> for DbError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<QueueError> for DbError {
    fn from(e: QueueError) -> Self {
        Self::Queue(e)
    }
}

/// Whether a SQLite error says a stored value is not what its column should hold.
fn is_bad_value(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sql(e) if is_bad_value(&e) => StoreError::InvalidItem(e.to_string()),
            // Busy, locked, I/O, full disk and the rest: the database may answer later.
            DbError::Sql(e) => StoreError::Unavailable(format!("sqlite: {e}")),
            DbError::Json(e) => StoreError::InvalidItem(e.to_string()),
            DbError::Store(e) => e,
            DbError::Queue(e) => StoreError::Unavailable(e.to_string()),
            DbError::Task(e) => StoreError::Unavailable(format!("sqlite task: {e}")),
        }
    }
}

impl From<DbError> for QueueError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Sql(e) => QueueError::Unavailable(format!("sqlite: {e}")),
            DbError::Json(e) => QueueError::Invalid(e.to_string()),
            DbError::Store(e) => QueueError::Unavailable(e.to_string()),
            DbError::Queue(e) => e,
            DbError::Task(e) => QueueError::Unavailable(format!("sqlite task: {e}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_gets_the_current_schema_version() {
        let db = SqliteDb::open_in_memory().unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_file_is_opened_in_wal_mode_and_reopened_without_migrating_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("hunter.db");
        let db = SqliteDb::open(&path).unwrap();
        let pragma = |name: &str| -> String {
            db.lock()
                .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("synchronous"), "1", "NORMAL");
        assert_eq!(
            pragma("wal_autocheckpoint"),
            WAL_CHECKPOINT_PAGES.to_string()
        );
        assert_eq!(pragma("temp_store"), "2", "MEMORY");
        assert_eq!(pragma("cache_size"), (-PAGE_CACHE_KIB).to_string());
        drop(db);
        let again = SqliteDb::open(&path).unwrap();
        assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(again.path(), Some(path.as_path()));
    }

    #[test]
    fn a_file_of_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hunter.db");
        drop(SqliteDb::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            SqliteDb::open(&path),
            Err(SqliteError::NewerSchema { found }) if found == SCHEMA_VERSION + 1
        ));
    }

    /// A group whose COMMIT fails (here a deferred foreign key left broken inside it, the way
    /// a full disk would fail it) is rolled back whole and reported; the next group starts
    /// afresh and commits.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_group_commit_rolls_the_group_back_and_the_next_one_commits() {
        use hunter_core::ports::{OutgoingMessage, Queue as _};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hunter.db");
        let db = SqliteDb::open_grouped(&path, Duration::from_secs(3600)).unwrap();
        db.lock()
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
            )
            .unwrap();
        let queue = crate::SqliteQueue::new(db.clone(), "referrals", Duration::from_secs(30), 5);
        let message = |id: &str| OutgoingMessage::new(id.to_owned(), format!("\"{id}\""));
        queue.send_batch(&[message("lost")]).await.unwrap();
        db.connection()
            .unwrap()
            .execute_batch("INSERT INTO child (parent) VALUES (42)")
            .unwrap();

        let failed = db.commit();
        assert!(
            matches!(&failed, Err(SqliteError::Sqlite(e)) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)),
            "{failed:?}"
        );
        assert!(
            db.lock().is_autocommit(),
            "the failed group is not left open"
        );
        assert_eq!(queue.depth().await.unwrap().visible, 0, "rolled back whole");

        queue.send_batch(&[message("kept")]).await.unwrap();
        db.commit().unwrap();
        let other = crate::SqliteQueue::new(
            SqliteDb::open(&path).unwrap(),
            "referrals",
            Duration::from_secs(30),
            5,
        );
        let received = other.receive(10, None, Duration::ZERO).await.unwrap();
        let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["\"kept\""]);
    }

    #[test]
    fn errors_map_to_retryable_or_not() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(StoreError::from(DbError::Sql(busy)).is_retryable());
        let json = serde_json::from_str::<u8>("x").unwrap_err();
        assert!(matches!(
            StoreError::from(DbError::Json(json)),
            StoreError::InvalidItem(_)
        ));
        let io = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
            None,
        );
        assert!(QueueError::from(DbError::Sql(io)).is_retryable());
    }
}
