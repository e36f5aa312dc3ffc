//! The Refit page's logic, independent of the DOM: files parsed in the browser with the shared
//! parsers (the same code the server runs), a preview of their curves, and the picture of a fit —
//! observed points over fitted curves with bands — whether the fit ran here or on the server.

use p2law_shared::data::Curve;
use p2law_shared::logs::{self, LogOptions, ParsedLog, RunMeta};
use std::collections::BTreeMap;
use p2law_shared::FitReport;

/// A file the user dropped, with the options it is read with.
#[derive(Debug, Clone, PartialEq)]
pub struct FileEntry {
    pub name: String,
    /// The file as dropped: text, or a TensorBoard event file.
    pub bytes: Vec<u8>,
    pub options: LogOptions,
}

/// Parses a file as the server does (the same shared parsers, TensorBoard event files too), then
/// applies the metadata given for single runs.
pub fn parse_entry(e: &FileEntry, runs: Option<&BTreeMap<String, RunMeta>>) -> Result<ParsedLog, String> {
    let mut log = logs::parse_bytes(&e.name, &e.bytes, &e.options).map_err(|err| err.to_string())?;
    if let Some(runs) = runs {
        logs::apply_run_meta(&e.name, &mut log.curves, runs).map_err(|err| err.to_string())?;
    }
    Ok(log)
}

/// The preview and the fit's picture: the shared renderer's, as `p2law fit --plot` draws them
/// (each run's fitted curve over its own token range, D = 0 checkpoints apart).
pub use p2law_shared::plot::{fit_svg, observed, preview_svg};

/// Per-run residual summary: (run, points, mean residual, max |residual|) of `L_pred - L_obs`.
pub fn residuals(curves: &[Curve], report: &FitReport) -> Vec<(String, usize, f64, f64)> {
    let Ok(params) = report.coefficients() else { return Vec::new() };
    curves
        .iter()
        .filter_map(|c| {
            let r: Vec<f64> = c.points.iter().map(|p| Some(p2law_shared::fit::predict(report.law, &params, &c.inputs(p.tokens)?) - p.loss)).collect::<Option<_>>()?;
            let n = r.len().max(1) as f64;
            Some((c.run.clone(), r.len(), r.iter().sum::<f64>() / n, r.iter().fold(0.0f64, |m, v| m.max(v.abs()))))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2law_shared::api::FitRequest;
    use p2law_shared::report::run_fit;

    fn p2_csv() -> String {
        let mut csv = String::from("run,n0,rho,l0,tokens,loss\n");
        for (n0, l0, rho) in [(1.2e8f64, 3.3f64, 0.15f64), (1.4e9, 2.6, 0.3), (8e9, 1.9, 0.5)] {
            for k in 0..10 {
                let d = 1e7 * 10f64.powf(k as f64 * 0.3);
                let x = p2law_shared::Inputs { n0, rho, l0: Some(l0), tokens: d };
                let loss = p2law_shared::fit::predict(p2law_shared::LawForm::P2, &[40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05], &x);
                csv.push_str(&format!("r{n0}-{rho},{n0},{rho},{l0},{d},{loss}\n"));
            }
        }
        csv
    }

    #[test]
    fn fit_here_is_the_servers_pipeline() {
        let entry = FileEntry { name: "p2.csv".into(), bytes: p2_csv().into_bytes(), options: LogOptions::default() };
        let log = parse_entry(&entry, None).expect("parses");
        let req: FitRequest = serde_json::from_value(serde_json::json!({"run_ids": [1], "law": "p2", "holdout": "last20", "bootstrap": 5})).expect("request");
        let (o, p, b) = req.resolve().expect("valid");
        let report = run_fit(&log.curves, &o, p, b).expect("fit");
        assert!(report.metrics.rmse < 1e-5);
        let svg = fit_svg(&log.curves, &report);
        assert_eq!(svg.matches(r#"class="curve""#).count(), 3);
        assert_eq!(svg.matches(r#"class="observed""#).count(), 30);
        assert!(residuals(&log.curves, &report).iter().all(|r| r.3 < 1e-4));
        assert!(preview_svg(&log.curves).contains(r#"class="observed""#));
    }
}
