//! Stored fits: the request and the report of each, listed newest first.

use super::*;

impl Store {
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
}
