//! The store: one SQLite file in the data dir (WAL mode; the embedded default) or a PostgreSQL
//! database (`--database postgres://...`, shared by a server and its workers). Both are reached
//! through sqlx's `Any` driver with one set of queries: each is written once with `?`
//! placeholders and `{now}`/`{epoch}` for the clock, and [`sql`] spells it for the dialect. The
//! schema is the same in both, in each dialect's types (`backend/migrations/{sqlite,postgres}`).
//!
//! Every write that belongs together is one transaction, so a rejected or interrupted upload
//! leaves nothing behind.

use p2law_shared::api::{FitRequest, FitSummary, RunDetail, RunSummary, StoredFit};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, CalibrationRequest, JobStatus};
use p2law_shared::data::{Curve, CurvePoint};
use p2law_shared::logs::{LogOptions, ParsedLog, TokenSource};
use p2law_shared::report::FitReport;
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use std::path::Path;

mod fits;
mod jobs;
mod tokens;
mod uploads;

/// Store failures (I/O, SQL, corrupt rows).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot reach the database at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("{0}")]
    Config(String),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON in {table} #{id}: {source}")]
    Json { table: &'static str, id: i64, source: serde_json::Error },
    #[error("run {id} does not exist")]
    MissingRun { id: i64 },
    /// A calibration job vanished between two statements (deleted meanwhile).
    #[error("calibration job {id} does not exist")]
    MissingJob { id: i64 },
    /// A stored curve upload parsed to no run (a canonical CSV always holds one).
    #[error("the curve of calibration job {job} parsed to no run")]
    EmptyCurve { job: i64 },
    #[error("the operating system's random source failed: {0}")]
    Entropy(String),
    #[error("the configured token (--token or P2LAW_TOKEN) was revoked at {at} by `p2law token` or a newer --token; use the current token or give a new one")]
    TokenRevoked { at: String },
}

impl StoreError {
    /// The database stayed locked by another writer past the busy timeout (SQLITE_BUSY or
    /// SQLITE_LOCKED), or PostgreSQL gave up a transaction to a concurrent one: the same write
    /// may succeed a moment later.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(e)) => match e.code().as_deref() {
                // PostgreSQL: serialization failure, deadlock detected (SQLSTATE, five characters).
                Some("40001" | "40P01") => true,
                // SQLite: BUSY or LOCKED; extended result codes keep the primary code in their
                // low byte.
                Some(c) if c.len() < 5 => matches!(c.parse::<i64>().map(|c| c & 0xff), Ok(5 | 6)),
                _ => false,
            },
            _ => false,
        }
    }
}

/// Attempts of a write that [`retry_busy`] makes in all.
pub const BUSY_ATTEMPTS: u32 = 6;

/// Runs `op` again while it fails with [`StoreError::is_busy`], backing off from 250 ms
/// (doubling; six attempts span about 8 s beyond the busy timeouts): a calibration job's writes
/// (events, curves, its status) wait out a long upload's transaction instead of failing the job.
pub async fn retry_busy<T, F, Fut>(what: &str, mut op: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut wait = std::time::Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if e.is_busy() && attempt < BUSY_ATTEMPTS => {
                tracing::warn!("{what}: the database is busy (attempt {attempt} of {BUSY_ATTEMPTS}); retrying in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// What [`Store::set_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChange {
    /// The configured token was already the one, or none was configured and tokens exist.
    Kept,
    /// The configured token replaced this many stored ones.
    Replaced(u64),
    /// None existed: this one was generated (shown once).
    Generated(String),
}

/// The shortest token `--token` accepts (generated ones have 68 characters).
pub const MIN_TOKEN_LEN: usize = 16;

/// An upload's original file as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Original {
    Kept { filename: String, bytes: Vec<u8> },
    /// `p2law gc --upload-bytes-days` dropped the bytes at `at`; the runs stay.
    Dropped { filename: String, at: String },
}

/// One file to store with what was parsed from it.
#[derive(Debug)]
pub struct NewUpload<'a> {
    pub filename: &'a str,
    pub bytes: &'a [u8],
    pub options: &'a LogOptions,
    pub parsed: &'a ParsedLog,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

/// The SQL spoken by the store's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The current time as stored (`2026-12-02T05:36:31.123Z`, text in both).
    fn now(self) -> &'static str {
        match self {
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            Dialect::Postgres => "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        }
    }

    /// The current time shifted by the bound interval (`?`, as [`shift`] writes it), stored as
    /// `{now}` is: the cutoff of a retention rule.
    fn ago(self) -> &'static str {
        match self {
            Dialect::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
            Dialect::Postgres => "to_char((clock_timestamp() + CAST(? AS interval)) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        }
    }

    /// The database's clock in seconds since 1970 (leases are timed by it, never by a worker's).
    fn epoch(self) -> &'static str {
        match self {
            Dialect::Sqlite => "((julianday('now') - 2440587.5) * 86400.0)",
            Dialect::Postgres => "extract(epoch from clock_timestamp())::float8",
        }
    }
}

/// The interval `{ago}` binds for `days` days back: `-86400 seconds` for one.
fn shift(days: f64) -> String {
    format!("-{} seconds", (days * 86_400.0).round() as i64)
}

/// `query` spelled for `dialect`: `{now}`, `{ago}` and `{epoch}` replaced by its clock, and each `?`
/// outside a string literal numbered `$1`, `$2`, ... (PostgreSQL's placeholders, which SQLite
/// also reads positionally).
pub fn sql(dialect: Dialect, query: &str) -> String {
    let query = query.replace("{now}", dialect.now()).replace("{ago}", dialect.ago()).replace("{epoch}", dialect.epoch());
    let mut out = String::with_capacity(query.len() + 16);
    let (mut n, mut quoted) = (0, false);
    for c in query.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// `url` with its password replaced by `***`, for messages.
pub fn masked(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_string(),
            },
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Points per multi-row `INSERT` (4 values each, well under SQLite's 32 766 bound parameters).
const POINTS_PER_INSERT: usize = 4096;

pub mod queue;

fn token_source_name(t: TokenSource) -> &'static str {
    match t {
        TokenSource::Logged => "logged",
        TokenSource::Steps => "steps",
    }
}

fn json<T: serde::de::DeserializeOwned>(table: &'static str, id: i64, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Json { table, id, source })
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/p2law.sqlite` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with_busy_timeout(data_dir, std::time::Duration::from_secs(10)).await
    }

    /// [`Store::open`] with how long a statement waits for another writer's lock.
    pub async fn open_with_busy_timeout(data_dir: &Path, busy_timeout: std::time::Duration) -> Result<Store, StoreError> {
        let file = std::path::absolute(data_dir.join("p2law.sqlite")).map_err(|e| StoreError::Sql(sqlx::Error::Io(e)))?;
        // sqlx reads the path back percent-decoded.
        let path = file.to_string_lossy().replace('%', "%25").replace('?', "%3F").replace('#', "%23");
        sqlx::any::install_default_drivers();
        let ms = busy_timeout.as_millis();
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // WAL lets readers go on while a job writes; foreign keys are on by sqlx's default.
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query(&format!("PRAGMA busy_timeout = {ms}")).execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect(&format!("sqlite://{path}?mode=rwc"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Store { pool, dialect: Dialect::Sqlite })
    }

    /// Opens a PostgreSQL database (`postgres://user:password@host/db`) and migrates it; the
    /// error names the URL with its password masked.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect { url: masked(url), source })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Store { pool, dialect: Dialect::Postgres })
    }

    /// `--database`: a `postgres://` URL, or none for the SQLite file in `data_dir`.
    pub async fn open_database(database: Option<&str>, data_dir: &Path) -> Result<Store, StoreError> {
        match database {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Self::open_postgres(url).await,
            Some(other) => Err(StoreError::Config(format!("--database `{}`: only postgres:// URLs are supported (leave it out for the SQLite file in the data dir)", masked(other)))),
            None => Self::open(data_dir).await,
        }
    }

    /// The dialect of the database behind this store.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    /// Holds the database's write lock (`BEGIN IMMEDIATE`) from another connection for `ms`.
    async fn hold_lock(dir: &Path, ms: u64) -> tokio::task::JoinHandle<()> {
        let mut c = sqlx::SqliteConnection::connect_with(&sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("p2law.sqlite"))).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut c).await.unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            sqlx::query("COMMIT").execute(&mut c).await.unwrap();
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_write_waits_out_another_writers_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_busy_timeout(dir.path(), std::time::Duration::from_millis(50)).await.unwrap();
        let request = p2law_shared::calibrate::CalibrationRequest::preset("smoke").unwrap();
        // Without a retry, a write behind a 1.5 s transaction fails busy after the timeout...
        let held = hold_lock(dir.path(), 1500).await;
        let err = store.insert_calibration(&request, 6).await.unwrap_err();
        assert!(err.is_busy(), "{err}");
        held.await.unwrap();
        // ...with one, it goes through once the lock is released, and exactly once.
        let held = hold_lock(dir.path(), 1500).await;
        let job = retry_busy("test", || store.insert_calibration(&request, 6)).await.unwrap();
        held.await.unwrap();
        assert_eq!(store.calibrations().await.unwrap().iter().map(|j| j.id).collect::<Vec<_>>(), vec![job.id]);
        // Other errors are not retried.
        let missing = retry_busy("test", || async { Err::<(), _>(StoreError::MissingRun { id: 7 }) }).await.unwrap_err();
        assert!(!missing.is_busy());
    }
}
