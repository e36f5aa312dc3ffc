//! Uploads and the runs parsed from them: stored in one transaction per batch, read back as
//! summaries, details and curves; their original bytes kept, served raw, and dropped by
//! retention.

use super::*;

impl Store {
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

    pub(super) async fn insert_upload_tx(dialect: Dialect, tx: &mut sqlx::Transaction<'_, sqlx::Any>, f: &NewUpload<'_>) -> Result<(i64, Vec<RunSummary>), StoreError> {
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

    /// A run with its checkpoints and, for a calibration job's run, its schedule.
    pub async fn run(&self, id: i64) -> Result<Option<RunDetail>, StoreError> {
        let Some(mut d) = self.run_points(id).await? else { return Ok(None) };
        d.schedule = self.run_schedule(id).await?;
        Ok(Some(d))
    }

    /// A run with its checkpoints only (a fit needs no schedule).
    async fn run_points(&self, id: i64) -> Result<Option<RunDetail>, StoreError> {
        let Some(row) = sqlx::query(&sql(self.dialect, &format!("SELECT {} FROM runs r WHERE r.id = ?", Self::RUN_COLUMNS))).bind(id).fetch_optional(&self.pool).await?
        else {
            return Ok(None);
        };
        let points = sqlx::query(&sql(self.dialect, "SELECT tokens, loss FROM points WHERE run_id = ? ORDER BY idx")).bind(id).fetch_all(&self.pool).await?;
        Ok(Some(RunDetail {
            summary: Self::run_summary(&row),
            checkpoints: points.iter().map(|p| CurvePoint { tokens: p.get(0), loss: p.get(1) }).collect(),
            schedule: None,
        }))
    }

    /// The runs as curves, in the order asked; an unknown id is an error.
    pub async fn curves(&self, ids: &[i64]) -> Result<Vec<Curve>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let d = self.run_points(id).await?.ok_or(StoreError::MissingRun { id })?;
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

    /// Deletes an upload and its runs; false if there was none.
    pub async fn delete_upload(&self, id: i64) -> Result<bool, StoreError> {
        Ok(sqlx::query(&sql(self.dialect, "DELETE FROM uploads WHERE id = ?")).bind(id).execute(&self.pool).await?.rows_affected() > 0)
    }
}
