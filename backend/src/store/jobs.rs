//! Calibration jobs and their events: queued, claimed, cancelled and finished; events numbered
//! and stored before they are broadcast, paged for replay, compacted by retention.

use super::*;

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

    /// The learning-rate schedule of a run a calibration job made: the last one its unit's train
    /// events gave (`None` for an uploaded run, or a job's from before events carried it).
    pub async fn run_schedule(&self, run_id: i64) -> Result<Option<p2law_shared::forecast::schedule::Shape>, StoreError> {
        let Some(link) = sqlx::query(&sql(self.dialect, "SELECT job_id, unit FROM calibration_runs WHERE run_id = ?")).bind(run_id).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let (job, unit): (i64, String) = (link.get(0), link.get(1));
        // Only an attempt's first train event carries it: a few rows per unit.
        let rows = sqlx::query(&sql(self.dialect, "SELECT event FROM calibration_events WHERE job_id = ? AND event LIKE '%\"schedule\":%' ORDER BY seq DESC"))
            .bind(job)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| serde_json::from_str::<CalibrationEvent>(&r.get::<String, _>(0)).ok())
            .find(|e| e.unit.as_deref() == Some(unit.as_str()) && e.schedule.is_some())
            .and_then(|e| e.schedule))
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

    pub(super) async fn append_event_tx(dialect: Dialect, tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: i64, mut event: CalibrationEvent) -> Result<CalibrationEvent, StoreError> {
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
