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

    /// Stores files and their runs in one transaction; returns each file's upload id and runs.
    pub async fn insert_uploads(&self, files: &[NewUpload<'_>]) -> Result<Vec<(i64, Vec<RunSummary>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::new();
        for f in files {
            out.push(Self::insert_upload_tx(self.dialect, &mut tx, f).await?);
        }
        crate::fault_point("upload");
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_upload_tx(dialect: Dialect, tx: &mut sqlx::Transaction<'_, sqlx::Any>, f: &NewUpload<'_>) -> Result<(i64, Vec<RunSummary>), StoreError> {
        {
            let sha = format!("{:x}", Sha256::digest(f.bytes));
            let options = serde_json::to_string(f.options).unwrap_or_default();
            let summary = serde_json::json!({
                "format": f.parsed.format, "token_source": f.parsed.token_source, "skipped": f.parsed.skipped,
                "deduplicated": f.parsed.deduplicated, "warmup_dropped": f.parsed.warmup_dropped,
            })
            .to_string();
            let upload_id: i64 = sqlx::query(&sql(dialect, &format!(
                "INSERT INTO uploads (created_at, filename, format, sha256, bytes, options, summary) VALUES ({{now}}, ?, ?, ?, ?, ?, ?) RETURNING id"
            )))
            .bind(f.filename)
            .bind(serde_json::to_value(f.parsed.format).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
            .bind(sha)
            .bind(f.bytes)
            .bind(options)
            .bind(summary)
            .fetch_one(&mut **tx)
            .await?
            .get(0);
            let mut runs = Vec::new();
            for c in &f.parsed.curves {
                let row = sqlx::query(&sql(dialect, &format!(
                    "INSERT INTO runs (upload_id, name, n0, rho, l0, method, family, split, token_source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {{now}}) RETURNING id, created_at"
                )))
                .bind(upload_id)
                .bind(&c.run)
                .bind(c.n0)
                .bind(c.rho)
                .bind(c.l0)
                .bind(&c.method)
                .bind(&c.family)
                .bind(&c.split)
                .bind(token_source_name(f.parsed.token_source))
                .fetch_one(&mut **tx)
                .await?;
                let run_id: i64 = row.get(0);
                // Many rows per statement: a 2 M-point upload is a few hundred statements, not
                // 2 M, so the write lock is held for seconds rather than minutes.
                for (chunk_no, chunk) in c.points.chunks(POINTS_PER_INSERT).enumerate() {
                    // Numbered placeholders written here: sqlx's QueryBuilder writes `?` for `Any`.
                    let mut text = String::from("INSERT INTO points (run_id, idx, tokens, loss) VALUES ");
                    for i in 0..chunk.len() {
                        let b = 4 * i;
                        text.push_str(&format!("{}(${}, ${}, ${}, ${})", if i == 0 { "" } else { ", " }, b + 1, b + 2, b + 3, b + 4));
                    }
                    let mut q = sqlx::query(&text);
                    for (i, p) in chunk.iter().enumerate() {
                        q = q.bind(run_id).bind((chunk_no * POINTS_PER_INSERT + i) as i64).bind(p.tokens).bind(p.loss);
                    }
                    q.execute(&mut **tx).await?;
                }
                runs.push(RunSummary {
                    id: run_id,
                    upload_id: Some(upload_id),
                    name: c.run.clone(),
                    n0: c.n0,
                    rho: c.rho,
                    l0: c.l0,
                    method: c.method.clone(),
                    family: c.family.clone(),
                    split: c.split.clone(),
                    token_source: f.parsed.token_source,
                    points: c.points.len(),
                    created_at: row.get(1),
                });
            }
            Ok((upload_id, runs))
        }
    }

    /// The original bytes of an upload.
    pub async fn upload_bytes(&self, id: i64) -> Result<Option<(String, Vec<u8>)>, StoreError> {
        Ok(match self.upload_original(id).await? {
            Some(Original::Kept { filename, bytes }) => Some((filename, bytes)),
            _ => None,
        })
    }

    /// An upload's original file, or when retention dropped it.
    pub async fn upload_original(&self, id: i64) -> Result<Option<Original>, StoreError> {
        let row = sqlx::query(&sql(self.dialect, "SELECT filename, bytes, bytes_dropped_at FROM uploads WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| match r.get::<Option<String>, _>(2) {
            Some(at) => Original::Dropped { filename: r.get(0), at },
            None => Original::Kept { filename: r.get(0), bytes: r.get(1) },
        }))
    }

    /// Retention of originals: drops the stored bytes of uploads made over `days` days ago
    /// (their runs and the fits made from them stay; the upload reads back as dropped, with
    /// when). Returns the uploads and bytes dropped; `dry_run` only counts them.
    pub async fn drop_upload_bytes(&self, days: f64, dry_run: bool) -> Result<(u64, u64), StoreError> {
        let d = self.dialect;
        let age = shift(days);
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&sql(d, "SELECT COUNT(*), COALESCE(SUM(LENGTH(bytes)), 0) FROM uploads WHERE bytes_dropped_at IS NULL AND created_at < {ago}"))
            .bind(&age)
            .fetch_one(&mut *tx)
            .await?;
        let (n, bytes): (i64, i64) = (row.get(0), row.get(1));
        if !dry_run {
            sqlx::query(&sql(d, "UPDATE uploads SET bytes = ?, bytes_dropped_at = {now} WHERE bytes_dropped_at IS NULL AND created_at < {ago}"))
                .bind(Vec::<u8>::new())
                .bind(&age)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((n as u64, bytes as u64))
    }

    fn run_summary(r: &AnyRow) -> RunSummary {
        RunSummary {
            id: r.get("id"),
            upload_id: r.get("upload_id"),
            name: r.get("name"),
            n0: r.get("n0"),
            rho: r.get("rho"),
            l0: r.get("l0"),
            method: r.get("method"),
            family: r.get("family"),
            split: r.get("split"),
            token_source: if r.get::<String, _>("token_source") == "steps" { TokenSource::Steps } else { TokenSource::Logged },
            points: r.get::<i64, _>("points") as usize,
            created_at: r.get("created_at"),
        }
    }

    const RUN_COLUMNS: &'static str = "r.id, r.upload_id, r.name, r.n0, r.rho, r.l0, r.method, r.family, r.split, r.token_source, r.created_at, \
         (SELECT COUNT(*) FROM points p WHERE p.run_id = r.id) AS points";

    pub async fn runs(&self) -> Result<Vec<RunSummary>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, &format!("SELECT {} FROM runs r ORDER BY r.id", Self::RUN_COLUMNS))).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(Self::run_summary).collect())
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunDetail>, StoreError> {
        let Some(row) = sqlx::query(&sql(self.dialect, &format!("SELECT {} FROM runs r WHERE r.id = ?", Self::RUN_COLUMNS))).bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let points = sqlx::query(&sql(self.dialect, "SELECT tokens, loss FROM points WHERE run_id = ? ORDER BY idx")).bind(id).fetch_all(&self.pool).await?;
        Ok(Some(RunDetail {
            summary: Self::run_summary(&row),
            checkpoints: points.iter().map(|p| CurvePoint { tokens: p.get(0), loss: p.get(1) }).collect(),
        }))
    }

    /// The runs as curves, in the order asked; an unknown id is an error.
    pub async fn curves(&self, ids: &[i64]) -> Result<Vec<Curve>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let d = self.run(id).await?.ok_or(StoreError::MissingRun { id })?;
            out.push(Curve {
                run: d.summary.name,
                n0: d.summary.n0,
                rho: d.summary.rho,
                l0: d.summary.l0,
                method: d.summary.method,
                family: d.summary.family,
                split: d.summary.split,
                points: d.checkpoints,
            });
        }
        Ok(out)
    }

    pub async fn insert_fit(&self, request: &FitRequest, report: &FitReport) -> Result<StoredFit, StoreError> {
        let row = sqlx::query(&sql(self.dialect, &format!("INSERT INTO fits (created_at, law, options, run_ids, report) VALUES ({{now}}, ?, ?, ?, ?) RETURNING id, created_at")))
            .bind(report.law.name())
            .bind(serde_json::to_string(request).unwrap_or_default())
            .bind(serde_json::to_string(&request.run_ids).unwrap_or_default())
            .bind(serde_json::to_string(report).unwrap_or_default())
            .fetch_one(&self.pool)
            .await?;
        Ok(StoredFit {
            id: row.get(0),
            created_at: row.get(1),
            run_ids: request.run_ids.clone(),
            request: request.clone(),
            degenerate: report.degeneracy(),
            report: report.clone(),
        })
    }

    pub async fn fit(&self, id: i64) -> Result<Option<StoredFit>, StoreError> {
        let Some(r) = sqlx::query(&sql(self.dialect, "SELECT id, created_at, options, run_ids, report FROM fits WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let report: FitReport = json("fits", id, r.get(4))?;
        Ok(Some(StoredFit {
            id,
            created_at: r.get(1),
            request: json("fits", id, r.get(2))?,
            run_ids: json("fits", id, r.get(3))?,
            degenerate: report.degeneracy(),
            report,
        }))
    }

    pub async fn fits(&self) -> Result<Vec<FitSummary>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, "SELECT id, created_at, report, run_ids FROM fits ORDER BY id")).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let id: i64 = r.get(0);
                let report: FitReport = json("fits", id, r.get(2))?;
                let runs: Vec<i64> = json("fits", id, r.get(3))?;
                Ok(FitSummary {
                    id,
                    created_at: r.get(1),
                    law: report.law,
                    objective_kind: report.objective_kind,
                    rmse: report.metrics.rmse,
                    r2: report.metrics.r2,
                    runs: runs.len(),
                    degenerate: report.degeneracy(),
                })
            })
            .collect()
    }

    /// Deletes a fit; false if there was none.
    pub async fn delete_fit(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(&sql(self.dialect, "DELETE FROM fits WHERE id = ?")).bind(id).execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Deletes an upload and its runs; false if there was none.
    pub async fn delete_upload(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(&sql(self.dialect, "DELETE FROM uploads WHERE id = ?")).bind(id).execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Makes sure an API token exists: the configured one (stored hashed) replaces any other; with
    /// none configured, one is generated on first start. Returns a newly generated token, to be
    /// shown once.
    pub async fn ensure_token(&self, configured: Option<&str>) -> Result<Option<String>, StoreError> {
        Ok(match self.set_token(configured).await? {
            TokenChange::Generated(t) => Some(t),
            _ => None,
        })
    }

    /// Makes `configured` the one token (earlier ones are revoked), or with none keeps the stored
    /// tokens, generating one when there is none. A configured token that a rotation revoked is
    /// refused: a restart with an old `--token` must not undo `p2law token`.
    pub async fn set_token(&self, configured: Option<&str>) -> Result<TokenChange, StoreError> {
        if let Some(t) = configured {
            let mut tx = self.pool.begin().await?;
            if let Some(row) = sqlx::query(&sql(self.dialect, "SELECT revoked_at FROM revoked_tokens WHERE sha256 = ?")).bind(hash(t)).fetch_optional(&mut *tx).await? {
                return Err(StoreError::TokenRevoked { at: row.get(0) });
            }
            sqlx::query(&sql(self.dialect, &format!("INSERT INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {{now}} FROM api_tokens WHERE sha256 != ? ON CONFLICT DO NOTHING"))).bind(hash(t)).execute(&mut *tx).await?;
            let replaced = sqlx::query(&sql(self.dialect, "DELETE FROM api_tokens WHERE sha256 != ?")).bind(hash(t)).execute(&mut *tx).await?.rows_affected();
            sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}}) ON CONFLICT DO NOTHING"))).bind(hash(t)).execute(&mut *tx).await?;
            tx.commit().await?;
            return Ok(if replaced > 0 { TokenChange::Replaced(replaced) } else { TokenChange::Kept });
        }
        let count: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM api_tokens")).fetch_one(&self.pool).await?.get(0);
        if count > 0 {
            return Ok(TokenChange::Kept);
        }
        let token = new_token()?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}})"))).bind(hash(&token)).execute(&self.pool).await?;
        Ok(TokenChange::Generated(token))
    }

    /// Replaces every token with a new one, returned once; the old ones are revoked for good.
    pub async fn rotate_token(&self) -> Result<String, StoreError> {
        let token = new_token()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {{now}} FROM api_tokens WHERE true ON CONFLICT DO NOTHING"))).execute(&mut *tx).await?;
        sqlx::query(&sql(self.dialect, "DELETE FROM api_tokens")).execute(&mut *tx).await?;
        sqlx::query(&sql(self.dialect, &format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {{now}})"))).bind(hash(&token)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(token)
    }

    pub async fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM api_tokens WHERE sha256 = ?")).bind(hash(token)).fetch_one(&self.pool).await?.get(0);
        Ok(n > 0)
    }
}

fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

fn new_token() -> Result<String, StoreError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).map_err(|e| StoreError::Entropy(e.to_string()))?;
    Ok(format!("p2l_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
}

/// Calibration jobs.
impl Store {
    /// Queues a job.
    pub async fn insert_calibration(&self, request: &CalibrationRequest, units: usize) -> Result<CalibrationJob, StoreError> {
        let text = serde_json::to_string(request).unwrap_or_default();
        let id: i64 = sqlx::query(&sql(self.dialect, &format!("INSERT INTO calibrations (created_at, updated_at, status, request, units) VALUES ({{now}}, {{now}}, 'queued', ?, ?) RETURNING id")))
            .bind(text)
            .bind(units as i64)
            .fetch_one(&self.pool)
            .await?
            .get(0);
        self.calibration(id).await?.ok_or(StoreError::MissingJob { id })
    }

    pub async fn calibration(&self, id: i64) -> Result<Option<CalibrationJob>, StoreError> {
        let row = sqlx::query(&sql(self.dialect, "SELECT id, created_at, updated_at, status, request, units, device, fit_id, error FROM calibrations WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(self.job_from_row(r).await?)),
        }
    }

    async fn job_from_row(&self, r: AnyRow) -> Result<CalibrationJob, StoreError> {
        let id: i64 = r.get(0);
        let run_ids: Vec<i64> =
            sqlx::query(&sql(self.dialect, "SELECT run_id FROM calibration_runs WHERE job_id = ? ORDER BY run_id")).bind(id).fetch_all(&self.pool).await?.iter().map(|r| r.get(0)).collect();
        let status: String = r.get(3);
        let fit_id: Option<i64> = r.get(7);
        let fit_warning = match fit_id {
            Some(f) => sqlx::query(&sql(self.dialect, "SELECT report FROM fits WHERE id = ?"))
                .bind(f)
                .fetch_optional(&self.pool)
                .await?
                .and_then(|row| serde_json::from_str::<FitReport>(&row.get::<String, _>(0)).ok())
                .and_then(|report| report.degeneracy()),
            None => None,
        };
        Ok(CalibrationJob {
            id,
            created_at: r.get(1),
            updated_at: r.get(2),
            status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
            request: json("calibrations", id, &r.get::<String, _>(4))?,
            units_done: run_ids.len(),
            units: r.get::<i64, _>(5) as usize,
            run_ids,
            device: r.get(6),
            fit_id,
            fit_warning,
            error: r.get(8),
        })
    }

    /// Every job, newest first.
    pub async fn calibrations(&self) -> Result<Vec<CalibrationJob>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, "SELECT id, created_at, updated_at, status, request, units, device, fit_id, error FROM calibrations ORDER BY id DESC")).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.job_from_row(r).await?);
        }
        Ok(out)
    }

    /// The next job to run: one left running (interrupted: it resumes) before the oldest queued.
    pub async fn next_calibration(&self) -> Result<Option<CalibrationJob>, StoreError> {
        let id: Option<i64> = sqlx::query(&sql(self.dialect, 
            "SELECT id FROM calibrations WHERE status IN ('running', 'queued') AND cancel_requested = 0 ORDER BY status = 'running' DESC, id LIMIT 1",
        ))
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.get(0));
        match id {
            Some(id) => self.calibration(id).await,
            None => Ok(None),
        }
    }

    /// Sets a job's status (and device, error, fit when given).
    pub async fn set_calibration_status(&self, id: i64, status: JobStatus, device: Option<&str>, error: Option<&str>, fit_id: Option<i64>) -> Result<(), StoreError> {
        sqlx::query(&sql(self.dialect, &format!(
            "UPDATE calibrations SET status = ?, device = COALESCE(?, device), error = COALESCE(?, error), fit_id = COALESCE(?, fit_id), updated_at = {{now}} WHERE id = ?"
        )))
        .bind(status.as_str())
        .bind(device)
        .bind(error)
        .bind(fit_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Asks a job to stop. Returns `None` if it is unknown, else whether it was still queued (and
    /// is now cancelled).
    pub async fn request_cancel(&self, id: i64) -> Result<Option<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(&sql(self.dialect, &format!("UPDATE calibrations SET cancel_requested = 1, updated_at = {{now}} WHERE id = ?"))).bind(id).execute(&mut *tx).await?.rows_affected();
        let queued = sqlx::query(&sql(self.dialect, &format!("UPDATE calibrations SET status = 'cancelled', updated_at = {{now}} WHERE id = ? AND status = 'queued'")))
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok((n > 0).then_some(queued > 0))
    }

    /// Marks a job running unless it was cancelled meanwhile, counting the start; returns the
    /// starts so far (this one included), or `None` when the job is not the worker's.
    pub async fn claim_calibration(&self, id: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(&sql(self.dialect, &format!(
            "UPDATE calibrations SET status = 'running', attempts = attempts + 1, updated_at = {{now}} WHERE id = ? AND status IN ('queued', 'running') AND cancel_requested = 0 RETURNING attempts"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Gives back a start counted by [`Store::claim_calibration`]: the job was stopped by a clean
    /// shutdown, not by its own run.
    pub async fn release_start(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query(&sql(self.dialect, "UPDATE calibrations SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END WHERE id = ?")).bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends a job: its status and its final event in one transaction, so a reader never sees a
    /// finished job without its last event (or the reverse). Returns the stored event.
    pub async fn finish_calibration(&self, id: i64, status: JobStatus, error: Option<&str>, fit_id: Option<i64>, event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&sql(self.dialect, &format!("UPDATE calibrations SET status = ?, error = COALESCE(?, error), fit_id = COALESCE(?, fit_id), updated_at = {{now}} WHERE id = ?")))
            .bind(status.as_str())
            .bind(error)
            .bind(fit_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let event = Self::append_event_tx(self.dialect, &mut tx, id, event).await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Jobs whose cancellation was asked before a restart are cancelled, not resumed.
    pub async fn settle_cancelled(&self) -> Result<(), StoreError> {
        sqlx::query(&sql(self.dialect, &format!("UPDATE calibrations SET status = 'cancelled', updated_at = {{now}} WHERE cancel_requested = 1 AND status IN ('queued', 'running')")))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn cancel_requested(&self, id: i64) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(&sql(self.dialect, "SELECT cancel_requested FROM calibrations WHERE id = ?")).bind(id).fetch_one(&self.pool).await?.get(0);
        Ok(n != 0)
    }

    /// Stores a finished unit's curve as a run (an upload of its canonical CSV) and links it to
    /// the job, in one transaction.
    pub async fn insert_calibration_run(&self, job: i64, unit: &str, file: &NewUpload<'_>) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (_, runs) = Self::insert_upload_tx(self.dialect, &mut tx, file).await?;
        let run_id = runs.first().map(|r| r.id).ok_or(StoreError::EmptyCurve { job })?;
        sqlx::query(&sql(self.dialect, "INSERT INTO calibration_runs (job_id, unit, run_id) VALUES (?, ?, ?)")).bind(job).bind(unit).bind(run_id).execute(&mut *tx).await?;
        sqlx::query(&sql(self.dialect, &format!("UPDATE calibrations SET updated_at = {{now}} WHERE id = ?"))).bind(job).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(run_id)
    }

    /// Units already finished, by key.
    pub async fn calibration_units(&self, job: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, "SELECT unit, run_id FROM calibration_runs WHERE job_id = ? ORDER BY run_id")).bind(job).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Appends an event, numbering it; returns it with its `seq`.
    pub async fn append_event(&self, job: i64, event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        let mut tx = self.pool.begin().await?;
        let event = Self::append_event_tx(self.dialect, &mut tx, job, event).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn append_event_tx(dialect: Dialect, tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: i64, mut event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        if dialect == Dialect::Postgres {
            // Workers append to one job at once: the job's row orders them (SQLite has one
            // writer at a time anyway).
            sqlx::query(&sql(dialect, "SELECT id FROM calibrations WHERE id = ? FOR UPDATE")).bind(job).fetch_optional(&mut **tx).await?;
        }
        let seq: i64 = sqlx::query(&sql(dialect, "SELECT COALESCE(MAX(seq), 0) + 1 FROM calibration_events WHERE job_id = ?")).bind(job).fetch_one(&mut **tx).await?.get(0);
        event.seq = seq as u64;
        // JSON has no NaN or infinity (serde writes `null`, which would not read back): a
        // non-finite figure is left out and said in the message instead.
        if event.eta_s.is_some_and(|v| !v.is_finite()) {
            event.eta_s = None;
        }
        if let Some(p) = event.point.filter(|p| !(p.tokens.is_finite() && p.loss.is_finite())) {
            event.point = None;
            let note = format!("non-finite checkpoint left out: tokens {}, loss {}", p.tokens, p.loss);
            event.message = Some(match event.message.take() {
                Some(m) => format!("{m}; {note}"),
                None => note,
            });
        }
        sqlx::query(&sql(dialect, "INSERT INTO calibration_events (job_id, seq, event) VALUES (?, ?, ?)"))
            .bind(job)
            .bind(seq)
            .bind(serde_json::to_string(&event).map_err(|e| StoreError::Json { table: "calibration_events", id: job, source: e })?)
            .execute(&mut **tx)
            .await?;
        Ok(event)
    }

    /// At most `limit` events after `after`, in order.
    pub async fn events_page(&self, job: i64, after: u64, limit: usize) -> Result<Vec<CalibrationEvent>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, "SELECT event FROM calibration_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?"))
            .bind(job)
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| json("calibration_events", job, &r.get::<String, _>(0))).collect()
    }

    /// Drops the progress events (`train` and `pretrain` steps without a held-out checkpoint) of
    /// jobs that finished over `days` days ago: the bulk of an event log, and nothing a replay
    /// needs (checkpoints, stage changes and the final event stay; `seq` keeps its numbers, with
    /// gaps). Returns the events removed.
    pub async fn compact_events(&self, days: f64) -> Result<u64, StoreError> {
        let (stage, point) = match self.dialect {
            Dialect::Sqlite => ("json_extract(event, '$.stage')", "json_extract(event, '$.point')"),
            Dialect::Postgres => ("(event::jsonb ->> 'stage')", "(event::jsonb -> 'point')"),
        };
        let r = sqlx::query(&sql(
            self.dialect,
            &format!(
                "DELETE FROM calibration_events WHERE job_id IN (SELECT id FROM calibrations WHERE status IN ('done', 'failed', 'cancelled') \
                 AND updated_at < {{ago}}) AND {stage} IN ('train', 'pretrain') AND ({point} IS NULL OR {point} = 'null')"
            ),
        ))
        .bind(shift(days))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Rewrites the database file without its free pages (after [`Store::compact_events`] or
    /// deleted uploads). Waits for other connections' transactions like any write.
    pub async fn vacuum(&self) -> Result<(), StoreError> {
        sqlx::query(&sql(self.dialect, "VACUUM")).execute(&self.pool).await?;
        Ok(())
    }

    /// Events after `after`, in order.
    pub async fn events(&self, job: i64, after: u64) -> Result<Vec<CalibrationEvent>, StoreError> {
        self.events_page(job, after, i64::MAX as usize).await
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
