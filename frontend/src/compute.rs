//! From a scenario to what the page shows: one series per fit and rate — the predicted curve on a
//! log-spaced token grid, its bootstrap band, the recommended budget and its cost.

use crate::state::Scenario;
use p2law_shared::bootstrap::{Bootstrap, percentile_interval_in_place};
use p2law_shared::law::Law;
use p2law_shared::law::{Features, Inputs};
use p2law_shared::report::{Recommendation, recommend};

/// One drawn curve.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub fit_label: String,
    pub rho: f64,
    pub inputs: Inputs,
    pub tokens: Vec<f64>,
    pub loss: Vec<f64>,
    pub band: Option<Vec<[f64; 2]>>,
    pub budget: Result<Recommendation, String>,
    /// The predicted loss at the end of the token range.
    pub final_loss: f64,
    /// Where this curve lies outside its fit's data (N0, rho, L0, the token range, the budget).
    pub extrapolation: Vec<String>,
}

/// A series that cannot be drawn, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesError {
    pub label: String,
    pub message: String,
}

/// `n` log-spaced token counts from `dmin` to `dmax`.
pub fn token_grid(dmin: f64, dmax: f64, n: usize) -> Vec<f64> {
    let (a, b) = (dmin.ln(), dmax.ln());
    (0..n).map(|i| (a + (b - a) * i as f64 / (n - 1) as f64).exp()).collect()
}

/// Every series of the scenario.
pub fn compute(s: &Scenario) -> (Vec<Series>, Vec<SeriesError>) {
    let tokens = token_grid(s.dmin, s.dmax, s.points);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let multi = s.fits.len() > 1;
    for fit in &s.fits {
        let law = fit.report.law;
        let Ok(params) = fit.report.coefficients() else { continue };
        let boot = fit.report.bootstrap().filter(|b| !b.samples.is_empty());
        for &rho in &s.rates {
            let label = if multi { format!("{} · ρ={rho}", fit.label) } else { format!("ρ = {rho}") };
            let x = Inputs { n0: s.n0, rho, l0: s.l0, tokens: s.dmax };
            if let Err(e) = law.check(&x, true) {
                errors.push(SeriesError { label, message: e.to_string() });
                continue;
            }
            let f0 = Features::new(&x);
            let l = law.law();
            let loss: Vec<f64> = tokens.iter().map(|&d| l.value(&params, &f0.at_tokens(d))).collect();
            let band = boot.as_ref().map(|b| band(l, b, &f0, &tokens));
            let budget = recommend(&fit.report, &x, s.rule, s.teacher, Some(&s.hardware)).map_err(|e| e.to_string());
            let mut extrapolation: Vec<String> = fit.report.extrapolation(&x, None).into_iter().map(|e| e.message).collect();
            let budget_tokens = budget.as_ref().ok().map(|b| b.tokens);
            for (what, d) in [("the plot's start", Some(s.dmin)), ("the plot's end", Some(s.dmax)), ("the budget", budget_tokens)] {
                let Some(d) = d else { continue };
                extrapolation.extend(fit.report.extrapolation(&x, Some(d)).into_iter().filter(|e| e.field == "D").map(|e| format!("{what}: {}", e.message)));
            }
            out.push(Series {
                label,
                fit_label: fit.label.clone(),
                rho,
                inputs: x,
                final_loss: *loss.last().unwrap_or(&f64::NAN),
                tokens: tokens.clone(),
                loss,
                band,
                budget,
                extrapolation,
            });
        }
    }
    (out, errors)
}

/// The bootstrap band at every grid point. Each resample's curve has the closed shape
/// `L_inf + c D^-beta`, and on a log-spaced grid `D^-beta` is a geometric sequence: one
/// multiplication per point instead of an `exp` (3 curves x 400 points x 200 resamples within a frame).
fn band(law: &dyn Law, b: &Bootstrap, f0: &Features, tokens: &[f64]) -> Vec<[f64; 2]> {
    let n = tokens.len();
    let ratio = if n > 1 { tokens[n - 1] / tokens[n - 2] } else { 1.0 };
    let terms: Option<Vec<_>> = b.samples.iter().map(|p| law.tokens_term(p, f0)).collect();
    let mut column = vec![0.0; b.samples.len()];
    let interval = |column: &mut Vec<f64>| {
        column.retain(|v| v.is_finite());
        percentile_interval_in_place(column, b.level).unwrap_or([f64::NAN, f64::NAN])
    };
    match terms {
        Some(terms) => {
            let mut pow: Vec<f64> = terms.iter().map(|t| tokens[0].powf(-t.beta)).collect();
            let step: Vec<f64> = terms.iter().map(|t| ratio.powf(-t.beta)).collect();
            (0..n)
                .map(|_| {
                    column.clear();
                    for ((t, p), s) in terms.iter().zip(pow.iter_mut()).zip(&step) {
                        column.push(t.asymptote + t.coef * *p);
                        *p *= s;
                    }
                    interval(&mut column)
                })
                .collect()
        }
        None => tokens
            .iter()
            .map(|&d| {
                let f = f0.at_tokens(d);
                column.clear();
                column.extend(b.samples.iter().map(|p| law.value(p, &f)));
                interval(&mut column)
            })
            .collect(),
    }
}

/// The curves as CSV (the csv crate: a label with quotes or commas stays whole): one row per
/// point, `curve,rho,n,tokens,loss,band_lo,band_hi`, the band empty without one.
pub fn curves_csv(series: &[Series]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(["curve", "rho", "n", "tokens", "loss", "band_lo", "band_hi"]);
    for s in series {
        for (k, (d, l)) in s.tokens.iter().zip(&s.loss).enumerate() {
            let (lo, hi) = s.band.as_ref().and_then(|b| b.get(k)).map_or((String::new(), String::new()), |b| (b[0].to_string(), b[1].to_string()));
            let _ = w.write_record([s.label.clone(), s.rho.to_string(), s.inputs.n().to_string(), d.to_string(), l.to_string(), lo, hi]);
        }
    }
    String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Form, resolve};

    #[test]
    fn the_csv_export_keeps_quoted_labels_whole_and_reads_back() {
        let (s, _) = resolve(&Form::default(), &Default::default());
        let (mut series, _) = compute(&s);
        series[0].label = "ρ 0.2, \"depth\" fit".into();
        series[1].band = None;
        let text = curves_csv(&series);
        let mut r = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), ["curve", "rho", "n", "tokens", "loss", "band_lo", "band_hi"]);
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), series.iter().map(|c| c.tokens.len()).sum::<usize>());
        // The label with a comma and quotes is one field, as written.
        assert_eq!(&rows[0][0], "ρ 0.2, \"depth\" fit");
        let (d, l): (f64, f64) = (rows[0][3].parse().unwrap(), rows[0][4].parse().unwrap());
        assert_eq!((d, l), (series[0].tokens[0], series[0].loss[0]));
        // A curve without a band leaves its band fields empty.
        let second = &rows[series[0].tokens.len()];
        assert!(second[5].is_empty() && second[6].is_empty(), "{second:?}");
    }

    #[test]
    fn default_scenario_draws_three_banded_curves() {
        let (s, errors) = resolve(&Form::default(), &Default::default());
        assert_eq!(s.fits.len(), 1);
        assert!(errors.is_empty(), "{errors:?}");
        // The calculator opens on the P² preset of its method (depth), with its band: the full law
        // or its reduction, whichever the study identifies, and never the dense reference.
        let want = p2law_shared::presets::study_preset_for("depth").expect("a P² preset ships");
        let shipped = p2law_shared::presets::presets().into_iter().find(|p| p.id == want).expect("shipped");
        assert_eq!(s.fits[0].report, shipped.report, "{}", s.fits[0].label);
        assert!(matches!(s.fits[0].report.law, p2law_shared::LawForm::P2 | p2law_shared::LawForm::P2Reduced), "{}", s.fits[0].label);
        assert!(s.fits[0].label.contains("P² preset for `depth`"), "{}", s.fits[0].label);
        let (series, errs) = compute(&s);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(series.len(), 3);
        for c in &series {
            assert_eq!(c.tokens.len(), 400);
            let band = c.band.as_ref().expect("the study preset carries a bootstrap");
            let [lo, hi] = band[200];
            assert!(lo <= c.loss[200] && c.loss[200] <= hi, "{lo} {} {hi}", c.loss[200]);
            // Llama-3.1-8B is far beyond the study's byte-level parents: the page says so.
            assert!(c.extrapolation.iter().any(|m| m.starts_with("N0 ") && m.contains("the largest calibrated parent")), "{:?}", c.extrapolation);
        }
        // The paper's central finding, which the dense Chinchilla default could not show: a higher
        // pruning rate needs a larger healing budget.
        let budgets: Vec<f64> = series.iter().map(|c| c.budget.as_ref().expect("a budget").tokens).collect();
        assert!(budgets.windows(2).all(|w| w[1] > w[0]), "budgets by rate 0.2, 0.35, 0.5: {budgets:?}");
    }

    #[test]
    fn the_method_picks_its_preset() {
        let study = p2law_shared::presets::study_presets();
        let refused = |id: &str| study.refused.iter().any(|r| r.id == id);
        for (method, id) in [("width", "p2-study-width"), ("2:4", "p2-study-nm"), ("depth", "p2-study-depth")] {
            let f = Form { method: method.into(), ..Form::default() };
            let (s, errors) = resolve(&f, &Default::default());
            match p2law_shared::presets::study_preset_for(method) {
                Some(want) => {
                    let shipped = p2law_shared::presets::presets().into_iter().find(|p| p.id == want).expect("shipped");
                    assert_eq!(s.fits[0].report, shipped.report, "{method}");
                    // Its own preset when that method's fit is identified, the pooled one otherwise.
                    assert!(want == id || (want == "p2-study-pooled" && refused(id)), "{method}: {want}");
                }
                None => {
                    // Neither the method's group nor the pooled one has an identified fit: the
                    // dense reference, labelled, and the page says why.
                    assert!(refused(id) && refused("p2-study-pooled"), "{method}: no preset, yet none refused");
                    assert!(s.fits[0].label.contains("dense, trained from scratch"), "{}", s.fits[0].label);
                    let e = errors.iter().find(|e| e.field == "fits").expect("the fallback is said");
                    assert!(e.message.contains(&format!("no P² preset ships for `{method}`")), "{}", e.message);
                }
            }
        }
        // Chinchilla stays a labelled dense reference.
        let f = Form { fits: "preset:chinchilla-epoch-refit".into(), ..Form::default() };
        let (s, _) = resolve(&f, &Default::default());
        assert!(s.fits[0].label.contains("dense, trained from scratch"), "{}", s.fits[0].label);
    }

    #[test]
    fn fast_band_equals_direct_percentiles() {
        let (s, _) = resolve(&Form::default(), &Default::default());
        let (series, _) = compute(&s);
        let fit = &s.fits[0].report;
        let b = fit.bootstrap().expect("band");
        let l = fit.law.law();
        for c in &series {
            let f0 = Features::new(&c.inputs);
            for k in [0, 137, 399] {
                let f = f0.at_tokens(c.tokens[k]);
                let direct: Vec<f64> = b.samples.iter().map(|p| l.value(p, &f)).collect();
                let want = p2law_shared::bootstrap::percentile_interval(&direct, b.level).expect("finite");
                let got = c.band.as_ref().expect("band")[k];
                for i in 0..2 {
                    assert!((got[i] - want[i]).abs() < 1e-10 * want[i], "point {k}: {got:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn grid_is_log_spaced() {
        let g = token_grid(1e8, 1e12, 5);
        for (a, b) in g.iter().zip([1e8, 1e9, 1e10, 1e11, 1e12]) {
            assert!((a / b - 1.0).abs() < 1e-12);
        }
    }
}
