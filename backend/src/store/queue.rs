//! The unit queue: a job's units as rows that workers sharing one database claim under a lease.
//!
//! A job for workers is queued with one row per unit: a `pretrain:<parent>` unit per built-in
//! parent, a train unit per pruned model (waiting for its parent's pretraining), and a `fit`
//! unit that waits for every other. A worker claims the first unit whose dependency is done,
//! by `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer at a time), and holds it
//! with a lease timed by the database's clock, so a worker's own clock never matters. It
//! renews the lease while it works; a unit whose lease ran out is claimed again by any worker.
//! A unit is done once: the transaction that stores its curve locks the unit's row and stores
//! nothing when another worker already finished it.

use super::{NewUpload, Store, StoreError, sql};
use p2law_shared::api::FitRequest;
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, CalibrationRequest, JobStatus, Unit, parent};
use p2law_shared::report::FitReport;
use sqlx::Row;

/// What a queued unit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Pretrains a built-in parent into the shared parent cache.
    Pretrain,
    /// Prunes a parent and post-trains it; stores the curve.
    Train,
    /// Fits the law to the job's curves and ends the job.
    Fit,
}

impl UnitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Pretrain => "pretrain",
            UnitKind::Train => "train",
            UnitKind::Fit => "fit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [UnitKind::Pretrain, UnitKind::Train, UnitKind::Fit].into_iter().find(|k| k.as_str() == s)
    }
}

/// The key of a parent's pretraining unit.
pub fn pretrain_key(parent: &str) -> String {
    format!("pretrain:{parent}")
}

/// The key of a job's fit unit.
pub const FIT_KEY: &str = "fit";

/// A unit a worker holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: CalibrationJob,
    pub unit: String,
    pub kind: UnitKind,
    /// Claims of this unit so far, this one included.
    pub attempts: i64,
}

/// A unit as the queue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedUnit {
    pub unit: String,
    pub kind: UnitKind,
    pub status: String,
    pub worker: Option<String>,
    pub attempts: i64,
    pub run_id: Option<i64>,
}

/// What a worker learns when it renews its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Still the worker's; `stop` when the job was cancelled or ended meanwhile.
    Held { stop: bool },
    /// The unit is another worker's now (the lease ran out) or is done.
    Lost,
}

/// How a worker's result was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Stored (with the run id for a train unit, the fit id for the fit).
    Stored(Option<i64>),
    /// Another worker had finished the unit first: nothing was stored.
    Duplicate,
}

/// The units a request becomes in the queue, in the order they are handed out.
pub fn queue_units(request: &CalibrationRequest, units: &[Unit]) -> Vec<(String, UnitKind, Option<String>)> {
    let mut out = Vec::new();
    for p in &request.parents {
        let built_in = parent(p).is_ok();
        if built_in {
            out.push((pretrain_key(p), UnitKind::Pretrain, None));
        }
        for u in units.iter().filter(|u| &u.parent == p) {
            out.push((u.key(), UnitKind::Train, built_in.then(|| pretrain_key(p))));
        }
    }
    out.push((FIT_KEY.to_string(), UnitKind::Fit, None));
    out
}

impl Store {
    /// Queues a job for workers: the job and its units in one transaction.
    pub async fn insert_queued_calibration(&self, request: &CalibrationRequest, units: &[Unit]) -> Result<CalibrationJob, StoreError> {
        let d = self.dialect;
        let text = serde_json::to_string(request).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query(&sql(d, "INSERT INTO calibrations (created_at, updated_at, status, request, units) VALUES ({now}, {now}, 'queued', ?, ?) RETURNING id"))
            .bind(text)
            .bind(units.len() as i64)
            .fetch_one(&mut *tx)
            .await?
            .get(0);
        for (ord, (key, kind, depends)) in queue_units(request, units).into_iter().enumerate() {
            sqlx::query(&sql(d, "INSERT INTO calibration_units (job_id, unit, kind, ord, depends) VALUES (?, ?, ?, ?, ?)"))
                .bind(id)
                .bind(key)
                .bind(kind.as_str())
                .bind(ord as i64)
                .bind(depends)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.calibration(id).await?.ok_or(StoreError::MissingJob { id })
    }

    /// Whether a job's units are queued for workers.
    pub async fn is_queued_job(&self, job: i64) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM calibration_units WHERE job_id = ?")).bind(job).fetch_one(&self.pool).await?.get(0);
        Ok(n > 0)
    }

    /// Claims the next unit that is ready (queued, or running under a lease that ran out, with
    /// its dependency done) for `lease_s` seconds of the database's clock; marks its job running.
    pub async fn claim_unit(&self, worker: &str, lease_s: f64) -> Result<Option<Claim>, StoreError> {
        let d = self.dialect;
        let lock = match d {
            super::Dialect::Postgres => "FOR UPDATE OF c SKIP LOCKED",
            super::Dialect::Sqlite => "",
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(&sql(
            d,
            &format!(
                "UPDATE calibration_units SET status = 'running', worker = ?, lease_until = {{epoch}} + ?, attempts = attempts + 1 \
                 WHERE (job_id, unit) IN (SELECT c.job_id, c.unit FROM calibration_units c JOIN calibrations j ON j.id = c.job_id \
                   WHERE j.status IN ('queued', 'running') AND j.cancel_requested = 0 \
                   AND (c.status = 'queued' OR (c.status = 'running' AND c.lease_until < {{epoch}})) \
                   AND NOT EXISTS (SELECT 1 FROM calibration_units w WHERE w.job_id = c.job_id AND w.status <> 'done' \
                     AND (w.unit = c.depends OR (c.kind = 'fit' AND w.kind <> 'fit'))) \
                   ORDER BY c.job_id, c.ord LIMIT 1 {lock}) \
                 RETURNING job_id, unit, kind, attempts"
            ),
        ))
        .bind(worker)
        .bind(lease_s)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (job, unit, kind, attempts): (i64, String, String, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
        sqlx::query(&sql(d, "UPDATE calibrations SET status = 'running', updated_at = {now} WHERE id = ? AND status = 'queued'")).bind(job).execute(&mut *tx).await?;
        tx.commit().await?;
        let job = self.calibration(job).await?.ok_or(StoreError::MissingJob { id: job })?;
        Ok(Some(Claim { job, unit, kind: UnitKind::parse(&kind).unwrap_or(UnitKind::Train), attempts }))
    }

    /// Renews a lease for `lease_s` seconds; says whether the job should stop.
    pub async fn renew_lease(&self, job: i64, unit: &str, worker: &str, lease_s: f64) -> Result<Lease, StoreError> {
        let d = self.dialect;
        let n = sqlx::query(&sql(d, "UPDATE calibration_units SET lease_until = {epoch} + ? WHERE job_id = ? AND unit = ? AND worker = ? AND status = 'running'"))
            .bind(lease_s)
            .bind(job)
            .bind(unit)
            .bind(worker)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Ok(Lease::Lost);
        }
        let row = sqlx::query(&sql(d, "SELECT status, cancel_requested FROM calibrations WHERE id = ?")).bind(job).fetch_one(&self.pool).await?;
        let (status, cancel): (String, i64) = (row.get(0), row.get(1));
        Ok(Lease::Held { stop: cancel != 0 || !matches!(status.as_str(), "queued" | "running") })
    }

    /// Gives a unit back to the queue (a worker stopping cleanly): any worker may claim it at
    /// once, and this claim is not counted.
    pub async fn release_unit(&self, job: i64, unit: &str, worker: &str) -> Result<(), StoreError> {
        sqlx::query(&sql(
            self.dialect,
            "UPDATE calibration_units SET status = 'queued', worker = NULL, lease_until = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END \
             WHERE job_id = ? AND unit = ? AND worker = ? AND status = 'running'",
        ))
        .bind(job)
        .bind(unit)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Locks a unit's row for the rest of `tx`; true when it is already done.
    async fn lock_unit(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: i64, unit: &str) -> Result<bool, StoreError> {
        let lock = if self.dialect == super::Dialect::Postgres { " FOR UPDATE" } else { "" };
        let status: Option<String> = sqlx::query(&sql(self.dialect, &format!("SELECT status FROM calibration_units WHERE job_id = ? AND unit = ?{lock}")))
            .bind(job)
            .bind(unit)
            .fetch_optional(&mut **tx)
            .await?
            .map(|r| r.get(0));
        Ok(status.as_deref() != Some("running") && status.as_deref() != Some("queued"))
    }

    async fn mark_done(&self, tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: i64, unit: &str, worker: &str, run_id: Option<i64>) -> Result<(), StoreError> {
        let d = self.dialect;
        sqlx::query(&sql(d, "UPDATE calibration_units SET status = 'done', worker = ?, lease_until = NULL, run_id = ? WHERE job_id = ? AND unit = ?"))
            .bind(worker)
            .bind(run_id)
            .bind(job)
            .bind(unit)
            .execute(&mut **tx)
            .await?;
        sqlx::query(&sql(d, "UPDATE calibrations SET updated_at = {now} WHERE id = ?")).bind(job).execute(&mut **tx).await?;
        Ok(())
    }

    /// Marks a unit done (a pretraining: its parent is in the shared cache), with `file` as its
    /// curve when it has one; all in one transaction, and nothing when it was done already.
    /// `event` (its `run_id` filled in) is appended in the same transaction.
    pub async fn commit_unit(&self, job: i64, unit: &str, worker: &str, file: Option<&NewUpload<'_>>, event: Option<CalibrationEvent>) -> Result<Commit, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.lock_unit(&mut tx, job, unit).await? {
            tx.rollback().await?;
            return Ok(Commit::Duplicate);
        }
        let run_id = match file {
            Some(f) => {
                let (_, runs) = Self::insert_upload_tx(self.dialect, &mut tx, f).await?;
                let run_id = runs.first().map(|r| r.id).ok_or(StoreError::EmptyCurve { job })?;
                sqlx::query(&sql(self.dialect, "INSERT INTO calibration_runs (job_id, unit, run_id) VALUES (?, ?, ?)")).bind(job).bind(unit).bind(run_id).execute(&mut *tx).await?;
                Some(run_id)
            }
            None => None,
        };
        self.mark_done(&mut tx, job, unit, worker, run_id).await?;
        if let Some(mut e) = event {
            e.run_id = run_id;
            Self::append_event_tx(self.dialect, &mut tx, job, e).await?;
        }
        tx.commit().await?;
        Ok(Commit::Stored(run_id))
    }

    /// Stores the job's fit, marks the fit unit done and the job `done` with its final event:
    /// one transaction, and nothing when another worker did it first.
    pub async fn commit_fit(&self, job: i64, worker: &str, request: &FitRequest, report: Option<&FitReport>, error: Option<&str>, mut event: CalibrationEvent) -> Result<(Commit, Option<CalibrationEvent>), StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        if self.lock_unit(&mut tx, job, FIT_KEY).await? {
            tx.rollback().await?;
            return Ok((Commit::Duplicate, None));
        }
        let fit_id: Option<i64> = match report {
            Some(report) => Some(
                sqlx::query(&sql(d, "INSERT INTO fits (created_at, law, options, run_ids, report) VALUES ({now}, ?, ?, ?, ?) RETURNING id"))
                    .bind(report.law.name())
                    .bind(serde_json::to_string(request).unwrap_or_default())
                    .bind(serde_json::to_string(&request.run_ids).unwrap_or_default())
                    .bind(serde_json::to_string(report).unwrap_or_default())
                    .fetch_one(&mut *tx)
                    .await?
                    .get(0),
            ),
            None => None,
        };
        self.mark_done(&mut tx, job, FIT_KEY, worker, None).await?;
        sqlx::query(&sql(d, "UPDATE calibrations SET status = 'done', error = COALESCE(?, error), fit_id = COALESCE(?, fit_id), updated_at = {now} WHERE id = ?"))
            .bind(error)
            .bind(fit_id)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        event.fit_id = fit_id;
        let event = Self::append_event_tx(d, &mut tx, job, event).await?;
        tx.commit().await?;
        Ok((Commit::Stored(fit_id), Some(event)))
    }

    /// Ends a job that is still open (failed or cancelled) with its final event; returns the
    /// event, or `None` when the job had already ended (another worker ended it).
    pub async fn end_open_job(&self, job: i64, status: JobStatus, error: Option<&str>, event: CalibrationEvent) -> Result<Option<CalibrationEvent>, StoreError> {
        let d = self.dialect;
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(&sql(d, "UPDATE calibrations SET status = ?, error = COALESCE(?, error), updated_at = {now} WHERE id = ? AND status IN ('queued', 'running')"))
            .bind(status.as_str())
            .bind(error)
            .bind(job)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        let event = Self::append_event_tx(d, &mut tx, job, event).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    /// Appends a worker's event unless the job has ended (its final event is the last one a
    /// reader sees, though other workers' units stop a moment later); `None` when dropped.
    pub async fn append_open_event(&self, job: i64, event: CalibrationEvent) -> Result<Option<CalibrationEvent>, StoreError> {
        let d = self.dialect;
        let lock = if d == super::Dialect::Postgres { " FOR UPDATE" } else { "" };
        let mut tx = self.pool.begin().await?;
        let status: Option<String> = sqlx::query(&sql(d, &format!("SELECT status FROM calibrations WHERE id = ?{lock}"))).bind(job).fetch_optional(&mut *tx).await?.map(|r| r.get(0));
        if !matches!(status.as_deref(), Some("queued" | "running")) {
            tx.rollback().await?;
            return Ok(None);
        }
        let event = Self::append_event_tx(d, &mut tx, job, event).await?;
        tx.commit().await?;
        Ok(Some(event))
    }

    /// Whether any worker holds a live lease on one of the job's units.
    pub async fn job_has_live_lease(&self, job: i64) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query(&sql(self.dialect, "SELECT COUNT(*) FROM calibration_units WHERE job_id = ? AND status = 'running' AND lease_until >= {epoch}"))
            .bind(job)
            .fetch_one(&self.pool)
            .await?
            .get(0);
        Ok(n > 0)
    }

    /// A job's units in the queue, in order.
    pub async fn queued_units(&self, job: i64) -> Result<Vec<QueuedUnit>, StoreError> {
        let rows = sqlx::query(&sql(self.dialect, "SELECT unit, kind, status, worker, attempts, run_id FROM calibration_units WHERE job_id = ? ORDER BY ord"))
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| QueuedUnit {
                unit: r.get(0),
                kind: UnitKind::parse(&r.get::<String, _>(1)).unwrap_or(UnitKind::Train),
                status: r.get(2),
                worker: r.get(3),
                attempts: r.get(4),
                run_id: r.get(5),
            })
            .collect())
    }
}
