//! The store: one SQLite file in the data dir (WAL mode), migrations from `backend/migrations`.
//!
//! Every write that belongs together is one transaction, so a rejected or interrupted upload
//! leaves nothing behind. Handlers see only this module's methods: a PostgreSQL store can be
//! added behind the same methods without touching them.

use p2law_shared::api::{FitRequest, FitSummary, RunDetail, RunSummary, StoredFit};
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, CalibrationRequest, JobStatus};
use p2law_shared::data::{Curve, CurvePoint};
use p2law_shared::logs::{LogOptions, ParsedLog, TokenSource};
use p2law_shared::report::FitReport;
use sha2::{Digest, Sha256};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{Row, SqlitePool};
use std::path::Path;

/// Store failures (I/O, SQL, corrupt rows).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON in {table} #{id}: {source}")]
    Json { table: &'static str, id: i64, source: serde_json::Error },
    #[error("run {id} does not exist")]
    MissingRun { id: i64 },
    #[error("the operating system's random source failed: {0}")]
    Entropy(String),
    #[error("the configured token (--token or P2LAW_TOKEN) was revoked at {at} by `p2law token` or a newer --token; use the current token or give a new one")]
    TokenRevoked { at: String },
}

impl StoreError {
    /// The database stayed locked by another writer past the busy timeout (SQLITE_BUSY or
    /// SQLITE_LOCKED): the same write may succeed a moment later.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sql(sqlx::Error::Database(e)) => {
                // Extended result codes keep the primary code in their low byte.
                let code = e.code().and_then(|c| c.parse::<i64>().ok()).map(|c| c & 0xff);
                matches!(code, Some(5 | 6))
            }
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
    pool: SqlitePool,
}

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Points per multi-row `INSERT` (4 values each, well under SQLite's 32 766 bound parameters).
const POINTS_PER_INSERT: usize = 4096;

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
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("p2law.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    /// Stores files and their runs in one transaction; returns each file's upload id and runs.
    pub async fn insert_uploads(&self, files: &[NewUpload<'_>]) -> Result<Vec<(i64, Vec<RunSummary>)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::new();
        for f in files {
            out.push(Self::insert_upload_tx(&mut tx, f).await?);
        }
        crate::fault_point("upload");
        tx.commit().await?;
        Ok(out)
    }

    async fn insert_upload_tx(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, f: &NewUpload<'_>) -> Result<(i64, Vec<RunSummary>), StoreError> {
        {
            let sha = format!("{:x}", Sha256::digest(f.bytes));
            let options = serde_json::to_string(f.options).unwrap_or_default();
            let summary = serde_json::json!({
                "format": f.parsed.format, "token_source": f.parsed.token_source, "skipped": f.parsed.skipped,
                "deduplicated": f.parsed.deduplicated, "warmup_dropped": f.parsed.warmup_dropped,
            })
            .to_string();
            let upload_id: i64 = sqlx::query(&format!(
                "INSERT INTO uploads (created_at, filename, format, sha256, bytes, options, summary) VALUES ({NOW}, ?, ?, ?, ?, ?, ?) RETURNING id"
            ))
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
                let row = sqlx::query(&format!(
                    "INSERT INTO runs (upload_id, name, n0, rho, l0, method, family, split, token_source, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, {NOW}) RETURNING id, created_at"
                ))
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
                    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO points (run_id, idx, tokens, loss) ");
                    q.push_values(chunk.iter().enumerate(), |mut b, (i, p)| {
                        b.push_bind(run_id).push_bind((chunk_no * POINTS_PER_INSERT + i) as i64).push_bind(p.tokens).push_bind(p.loss);
                    });
                    q.build().execute(&mut **tx).await?;
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
        let row = sqlx::query("SELECT filename, bytes FROM uploads WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    fn run_summary(r: &sqlx::sqlite::SqliteRow) -> RunSummary {
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
        let rows = sqlx::query(&format!("SELECT {} FROM runs r ORDER BY r.id", Self::RUN_COLUMNS)).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(Self::run_summary).collect())
    }

    pub async fn run(&self, id: i64) -> Result<Option<RunDetail>, StoreError> {
        let Some(row) = sqlx::query(&format!("SELECT {} FROM runs r WHERE r.id = ?", Self::RUN_COLUMNS)).bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let points = sqlx::query("SELECT tokens, loss FROM points WHERE run_id = ? ORDER BY idx").bind(id).fetch_all(&self.pool).await?;
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
        let row = sqlx::query(&format!("INSERT INTO fits (created_at, law, options, run_ids, report) VALUES ({NOW}, ?, ?, ?, ?) RETURNING id, created_at"))
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
        let Some(r) = sqlx::query("SELECT id, created_at, options, run_ids, report FROM fits WHERE id = ?").bind(id).fetch_optional(&self.pool).await?
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
        let rows = sqlx::query("SELECT id, created_at, report, run_ids FROM fits ORDER BY id").fetch_all(&self.pool).await?;
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
        Ok(sqlx::query("DELETE FROM fits WHERE id = ?").bind(id).execute(&self.pool).await?.rows_affected() > 0)
    }

    /// Deletes an upload and its runs; false if there was none.
    pub async fn delete_upload(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query("DELETE FROM uploads WHERE id = ?").bind(id).execute(&self.pool).await?.rows_affected() > 0)
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
            if let Some(row) = sqlx::query("SELECT revoked_at FROM revoked_tokens WHERE sha256 = ?").bind(hash(t)).fetch_optional(&mut *tx).await? {
                return Err(StoreError::TokenRevoked { at: row.get(0) });
            }
            sqlx::query(&format!("INSERT OR IGNORE INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {NOW} FROM api_tokens WHERE sha256 != ?")).bind(hash(t)).execute(&mut *tx).await?;
            let replaced = sqlx::query("DELETE FROM api_tokens WHERE sha256 != ?").bind(hash(t)).execute(&mut *tx).await?.rows_affected();
            sqlx::query(&format!("INSERT OR IGNORE INTO api_tokens (sha256, created_at) VALUES (?, {NOW})")).bind(hash(t)).execute(&mut *tx).await?;
            tx.commit().await?;
            return Ok(if replaced > 0 { TokenChange::Replaced(replaced) } else { TokenChange::Kept });
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM api_tokens").fetch_one(&self.pool).await?.get(0);
        if count > 0 {
            return Ok(TokenChange::Kept);
        }
        let token = new_token()?;
        sqlx::query(&format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {NOW})")).bind(hash(&token)).execute(&self.pool).await?;
        Ok(TokenChange::Generated(token))
    }

    /// Replaces every token with a new one, returned once; the old ones are revoked for good.
    pub async fn rotate_token(&self) -> Result<String, StoreError> {
        let token = new_token()?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("INSERT OR IGNORE INTO revoked_tokens (sha256, revoked_at) SELECT sha256, {NOW} FROM api_tokens")).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM api_tokens").execute(&mut *tx).await?;
        sqlx::query(&format!("INSERT INTO api_tokens (sha256, created_at) VALUES (?, {NOW})")).bind(hash(&token)).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(token)
    }

    pub async fn token_valid(&self, token: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM api_tokens WHERE sha256 = ?").bind(hash(token)).fetch_one(&self.pool).await?.get(0);
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
        let id: i64 = sqlx::query(&format!("INSERT INTO calibrations (created_at, updated_at, status, request, units) VALUES ({NOW}, {NOW}, 'queued', ?, ?) RETURNING id"))
            .bind(text)
            .bind(units as i64)
            .fetch_one(&self.pool)
            .await?
            .get(0);
        self.calibration(id).await?.ok_or(StoreError::MissingRun { id })
    }

    pub async fn calibration(&self, id: i64) -> Result<Option<CalibrationJob>, StoreError> {
        let row = sqlx::query("SELECT id, created_at, updated_at, status, request, units, device, fit_id, error FROM calibrations WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(self.job_from_row(r).await?)),
        }
    }

    async fn job_from_row(&self, r: sqlx::sqlite::SqliteRow) -> Result<CalibrationJob, StoreError> {
        let id: i64 = r.get(0);
        let run_ids: Vec<i64> =
            sqlx::query("SELECT run_id FROM calibration_runs WHERE job_id = ? ORDER BY rowid").bind(id).fetch_all(&self.pool).await?.iter().map(|r| r.get(0)).collect();
        let status: String = r.get(3);
        let fit_id: Option<i64> = r.get(7);
        let fit_warning = match fit_id {
            Some(f) => sqlx::query("SELECT report FROM fits WHERE id = ?")
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
        let rows = sqlx::query("SELECT id, created_at, updated_at, status, request, units, device, fit_id, error FROM calibrations ORDER BY id DESC").fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.job_from_row(r).await?);
        }
        Ok(out)
    }

    /// The next job to run: one left running (interrupted: it resumes) before the oldest queued.
    pub async fn next_calibration(&self) -> Result<Option<CalibrationJob>, StoreError> {
        let id: Option<i64> = sqlx::query(
            "SELECT id FROM calibrations WHERE status IN ('running', 'queued') AND cancel_requested = 0 ORDER BY status = 'running' DESC, id LIMIT 1",
        )
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
        sqlx::query(&format!(
            "UPDATE calibrations SET status = ?, device = COALESCE(?, device), error = COALESCE(?, error), fit_id = COALESCE(?, fit_id), updated_at = {NOW} WHERE id = ?"
        ))
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
        let n = sqlx::query(&format!("UPDATE calibrations SET cancel_requested = 1, updated_at = {NOW} WHERE id = ?")).bind(id).execute(&mut *tx).await?.rows_affected();
        let queued = sqlx::query(&format!("UPDATE calibrations SET status = 'cancelled', updated_at = {NOW} WHERE id = ? AND status = 'queued'"))
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
        let row = sqlx::query(&format!(
            "UPDATE calibrations SET status = 'running', attempts = attempts + 1, updated_at = {NOW} WHERE id = ? AND status IN ('queued', 'running') AND cancel_requested = 0 RETURNING attempts"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Gives back a start counted by [`Store::claim_calibration`]: the job was stopped by a clean
    /// shutdown, not by its own run.
    pub async fn release_start(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE calibrations SET attempts = MAX(attempts - 1, 0) WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Ends a job: its status and its final event in one transaction, so a reader never sees a
    /// finished job without its last event (or the reverse). Returns the stored event.
    pub async fn finish_calibration(&self, id: i64, status: JobStatus, error: Option<&str>, fit_id: Option<i64>, event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("UPDATE calibrations SET status = ?, error = COALESCE(?, error), fit_id = COALESCE(?, fit_id), updated_at = {NOW} WHERE id = ?"))
            .bind(status.as_str())
            .bind(error)
            .bind(fit_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let event = Self::append_event_tx(&mut tx, id, event).await?;
        tx.commit().await?;
        Ok(event)
    }

    /// Jobs whose cancellation was asked before a restart are cancelled, not resumed.
    pub async fn settle_cancelled(&self) -> Result<(), StoreError> {
        sqlx::query(&format!("UPDATE calibrations SET status = 'cancelled', updated_at = {NOW} WHERE cancel_requested = 1 AND status IN ('queued', 'running')"))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn cancel_requested(&self, id: i64) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query("SELECT cancel_requested FROM calibrations WHERE id = ?").bind(id).fetch_one(&self.pool).await?.get(0);
        Ok(n != 0)
    }

    /// Stores a finished unit's curve as a run (an upload of its canonical CSV) and links it to
    /// the job, in one transaction.
    pub async fn insert_calibration_run(&self, job: i64, unit: &str, file: &NewUpload<'_>) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let (_, runs) = Self::insert_upload_tx(&mut tx, file).await?;
        let run_id = runs.first().map(|r| r.id).ok_or(StoreError::MissingRun { id: job })?;
        sqlx::query("INSERT INTO calibration_runs (job_id, unit, run_id) VALUES (?, ?, ?)").bind(job).bind(unit).bind(run_id).execute(&mut *tx).await?;
        sqlx::query(&format!("UPDATE calibrations SET updated_at = {NOW} WHERE id = ?")).bind(job).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(run_id)
    }

    /// Units already finished, by key.
    pub async fn calibration_units(&self, job: i64) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT unit, run_id FROM calibration_runs WHERE job_id = ? ORDER BY rowid").bind(job).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Appends an event, numbering it; returns it with its `seq`.
    pub async fn append_event(&self, job: i64, event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        let mut tx = self.pool.begin().await?;
        let event = Self::append_event_tx(&mut tx, job, event).await?;
        tx.commit().await?;
        Ok(event)
    }

    async fn append_event_tx(tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>, job: i64, mut event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
        let seq: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 FROM calibration_events WHERE job_id = ?").bind(job).fetch_one(&mut **tx).await?.get(0);
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
        sqlx::query("INSERT INTO calibration_events (job_id, seq, event) VALUES (?, ?, ?)")
            .bind(job)
            .bind(seq)
            .bind(serde_json::to_string(&event).map_err(|e| StoreError::Json { table: "calibration_events", id: job, source: e })?)
            .execute(&mut **tx)
            .await?;
        Ok(event)
    }

    /// At most `limit` events after `after`, in order.
    pub async fn events_page(&self, job: i64, after: u64, limit: usize) -> Result<Vec<CalibrationEvent>, StoreError> {
        let rows = sqlx::query("SELECT event FROM calibration_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?")
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
        let r = sqlx::query(
            "DELETE FROM calibration_events WHERE job_id IN (SELECT id FROM calibrations WHERE status IN ('done', 'failed', 'cancelled') \
             AND updated_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)) \
             AND json_extract(event, '$.stage') IN ('train', 'pretrain') AND json_extract(event, '$.point') IS NULL",
        )
        .bind(format!("-{} seconds", (days * 86_400.0).round() as i64))
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Rewrites the database file without its free pages (after [`Store::compact_events`] or
    /// deleted uploads). Waits for other connections' transactions like any write.
    pub async fn vacuum(&self) -> Result<(), StoreError> {
        sqlx::query("VACUUM").execute(&self.pool).await?;
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
        let mut c = sqlx::SqliteConnection::connect_with(&SqliteConnectOptions::new().filename(dir.join("p2law.sqlite"))).await.unwrap();
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
