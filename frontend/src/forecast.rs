//! The Forecast page's logic, independent of the DOM: a dropped log parsed here by the shared
//! parsers (nothing is uploaded), forecast by the same code as `p2law forecast`, and drawn —
//! observed checkpoints, the forecast with its band out to the horizon, and the rule's marker.

use crate::compute::{Series, token_grid};
use crate::plot::{Axes, Observed, PALETTE, render};
use p2law_shared::budget::Rule;
use p2law_shared::forecast::log::{self, LogChoice, RunLog};
use p2law_shared::forecast::schedule::Shape;
use p2law_shared::forecast::{Forecast, ForecastOptions, Prior};
use p2law_shared::logs;
use p2law_shared::Inputs;
use std::fmt::Write;

/// Bootstrap resamples in the browser: enough for a 90 % band's ends, quick on a phone.
pub const RESAMPLES: usize = 200;
/// Points of the drawn forecast.
pub const GRID: usize = 32;

/// What the page shows for one log.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub run: RunLog,
    pub forecast: Forecast,
    pub horizon: f64,
    pub svg: String,
}

/// The horizon to draw to: as given, else 100× the last checkpoint (and past the rule when the
/// fitted curve meets it sooner than 10 000×).
fn horizon(given: Option<f64>, f: &Forecast, rule: Option<Rule>) -> f64 {
    if let Some(h) = given.filter(|h| *h > f.last.tokens) {
        return h;
    }
    let mut h = 100.0 * f.last.tokens;
    if let Some(t) = rule.and_then(|r| f.fit.tokens_for(r)).filter(|t| *t < 1e4 * f.last.tokens) {
        h = h.max(1.5 * t);
    }
    h
}

/// Parses `bytes` (a log in any format, TensorBoard too) and forecasts it to `horizon` with `rule`,
/// and with `prior` when the page was told the pruned model's inputs ([`prior_from_fields`]).
pub fn compute(name: &str, bytes: &[u8], choice: &LogChoice, horizon_tokens: Option<f64>, rule: Option<Rule>, prior: Option<Prior>, along: Along) -> Result<View, String> {
    let run = log::read(name, std::str::from_utf8(bytes).ok(), choice, &|o| logs::parse_bytes(name, bytes, o)).map_err(|e| e.to_string())?;
    compute_run(run, horizon_tokens, rule, prior, along)
}

/// The run's learning-rate schedule and its anneal, from the page's fields.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Along {
    pub shape: Option<Shape>,
    pub anneal: Option<f64>,
}

/// The schedule (`cosine:TOTAL[:FLOOR[:WARMUP]]`) and anneal fields, resolved as the API resolves
/// them: both empty is none; a bad one is named as the page labels it.
pub fn along_from_fields(schedule: &str, anneal: &str) -> Result<Along, String> {
    let schedule = Some(schedule.trim()).filter(|s| !s.is_empty()).map(str::to_string);
    let anneal = match anneal.trim() {
        "" => None,
        t => Some(t.parse::<f64>().map_err(|_| format!("anneal K: `{t}` is not a number"))?),
    };
    let r = p2law_shared::api::ForecastRequest { schedule, anneal, ..Default::default() };
    let o = r.resolve().map_err(|e| format!("{}: {}", if e.field == "anneal" { "anneal K" } else { "learning-rate schedule" }, e.message))?;
    Ok(Along { shape: o.shape, anneal: o.anneal })
}

/// The prior from the page's fields (method, N0, ρ, L0): none while all are empty, else the
/// method's P² preset at those inputs or the first bad field, named as the page labels it.
pub fn prior_from_fields(method: &str, n0: Option<f64>, rho: Option<f64>, l0: Option<f64>) -> Result<Option<Prior>, String> {
    let method = Some(method.trim()).filter(|m| !m.is_empty()).map(str::to_string);
    if method.is_none() && n0.is_none() && rho.is_none() && l0.is_none() {
        return Ok(None);
    }
    let r = p2law_shared::api::ForecastRequest { n0, rho, l0, method, ..Default::default() };
    let label = |f: &str| match f {
        "n0" => "N0",
        "rho" => "ρ",
        "l0" => "L0",
        "method" => "pruning method",
        other => other,
    }
    .to_string();
    // Under `auto` a method alone asks for nothing: say what is missing.
    match r.resolve() {
        Ok(o) if o.prior.is_none() => Err("the prior needs N0, ρ and L0 besides the method".into()),
        Ok(o) => Ok(o.prior),
        Err(e) => Err(format!("{}: {}", label(e.field), e.message)),
    }
}

/// The P² preset of a run's method at its N0, ρ and L0, when it has them all and a preset
/// covers it (a control at ρ = 0 has none).
fn prior_of(n0: Option<f64>, rho: Option<f64>, l0: Option<f64>, method: Option<&str>) -> Option<Prior> {
    prior_from_fields(method.unwrap_or_default(), n0, rho, l0).ok().flatten()
}

/// A run stored on the server (`GET /api/runs/{id}`), forecast here; along the schedule the
/// server knows for it (a calibration job's run) unless the page's field gives one.
pub fn compute_stored(detail: &p2law_shared::api::RunDetail, horizon_tokens: Option<f64>, rule: Option<Rule>, along: Along) -> Result<View, String> {
    let run = RunLog {
        file: format!("server run {}", detail.summary.id),
        run: detail.summary.name.clone(),
        metric: "loss".into(),
        eval: detail.checkpoints.iter().map(|p| p2law_shared::forecast::Obs { tokens: p.tokens, loss: p.loss, step: None }).collect(),
        train: None,
        schedule: None,
    };
    let s = &detail.summary;
    let known = detail.schedule.filter(|_| along.shape.is_none());
    let along = Along { shape: along.shape.or(known), ..along };
    let mut view = compute_run(run, horizon_tokens, rule, prior_of(s.n0, s.rho, s.l0, s.method.as_deref()), along)?;
    if let Some(k) = known {
        view.forecast.notes.push(format!("the schedule {k} is the post-training recipe of the calibration job that made this run, from its events"));
    }
    Ok(view)
}

/// A calibration job's unit as it trains (its held-out checkpoints from the job's events so
/// far), forecast here. Unless the page's fields give them, the forecast follows the unit's own
/// learning-rate schedule from the job's events, with the anneal of the job's units that have
/// run the same schedule to its end.
pub fn compute_live(job: i64, live: &crate::calibrate::LiveCurves, unit: &str, horizon_tokens: Option<f64>, rule: Option<Rule>, along: Along) -> Result<View, String> {
    let curve = live.curves.get(unit).ok_or_else(|| format!("calibration job {job}: no checkpoint of {unit} yet"))?;
    let run = RunLog {
        file: format!("calibration job {job}"),
        run: curve.run.clone(),
        metric: "held-out".into(),
        eval: curve.points.iter().map(|p| p2law_shared::forecast::Obs { tokens: p.tokens, loss: p.loss, step: None }).collect(),
        train: None,
        schedule: None,
    };
    let mut notes = Vec::new();
    let shape = along.shape.or_else(|| {
        let s = live.schedules.get(unit).copied()?;
        notes.push(format!("the schedule {s} is this unit's post-training recipe, from the job's events"));
        Some(s)
    });
    let anneal = along.anneal.or_else(|| {
        // Only along the job's own schedule: a typed one is another recipe.
        let (k, n) = along.shape.is_none().then(|| live.anneal_for(unit)).flatten()?;
        notes.push(format!("the anneal K = {k:.4} is the median of {n} finished unit(s) of this job with the same schedule, each fitted on its whole curve"));
        Some(k)
    });
    let mut view = compute_run(run, horizon_tokens, rule, prior_of(curve.n0, curve.rho, curve.l0, curve.method.as_deref()), Along { shape, anneal })?;
    view.forecast.notes.extend(notes);
    Ok(view)
}

fn compute_run(run: RunLog, horizon_tokens: Option<f64>, rule: Option<Rule>, prior: Option<Prior>, along: Along) -> Result<View, String> {
    let name = run.file.clone();
    let base = ForecastOptions { rule, resamples: RESAMPLES, prior, shape: along.shape, anneal: along.anneal, ..Default::default() };
    // First the fit alone, to place the horizon (only its point estimates are read: no rule,
    // the fewest resamples), then the drawn grid with its band and the rule to the horizon.
    let probe = ForecastOptions { at: vec![2.0 * run.eval.iter().map(|o| o.tokens).fold(1.0, f64::max)], rule: None, resamples: 50, ..base.clone() };
    let first = run.forecast(&probe).map_err(|e| format!("{name}: {e}"))?;
    let h = horizon(horizon_tokens, &first, rule);
    let grid = token_grid(first.last.tokens, h, GRID);
    let f = run.forecast(&ForecastOptions { at: grid, ..base }).map_err(|e| format!("{name}: {e}"))?;
    let svg = svg(&run, &f, h);
    Ok(View { run, forecast: f, horizon: h, svg })
}

/// Observed checkpoints, the forecast with its band, and the rule's marker.
pub fn svg(run: &RunLog, f: &Forecast, horizon: f64) -> String {
    let observed = vec![Observed {
        color: 0,
        label: format!("{} ({})", run.run, run.metric),
        points: run.eval.iter().filter(|o| o.tokens > 0.0 && o.loss.is_finite()).map(|o| (o.tokens, o.loss)).collect(),
        at_zero: Vec::new(),
    }];
    let series = vec![Series {
        label: format!("forecast, {:.0} % band", 100.0 * f.fit.level),
        fit_label: f.fit.form.clone(),
        rho: 0.0,
        inputs: Inputs { n0: 1.0, rho: 0.0, l0: None, tokens: horizon },
        tokens: f.points.iter().map(|p| p.tokens).collect(),
        loss: f.points.iter().map(|p| p.loss).collect(),
        band: Some(f.points.iter().map(|p| [p.lo, p.hi]).collect()),
        budget: Err("a forecast's rule is drawn apart".into()),
        final_loss: f.points.last().map_or(f.last.loss, |p| p.loss),
        extrapolation: Vec::new(),
    }];
    let dmin = observed[0].points.first().map_or(f.last.tokens / 10.0, |p| p.0) / 1.5;
    let axes = Axes::fit(&series, &observed, dmin, horizon * 1.2);
    let mut s = render(&series, &observed, &axes);
    // The rule's marker, on the fitted curve where it is met.
    if let Some(t) = f.rule.as_ref().and_then(|r| r.tokens).filter(|t| *t >= axes.dmin && *t <= axes.dmax) {
        let (x, y) = (axes.x(t), axes.y(f.fit.value(t)));
        let color = PALETTE[0];
        let mut m = String::new();
        let _ = write!(
            m,
            r#"<g class="rule-marker" data-tokens="{t}"><line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-dasharray="4 3"/><circle cx="{x:.1}" cy="{y:.1}" r="5" fill="white" stroke="{color}" stroke-width="2"><title>rule met at {t:.3e} tokens</title></circle></g>"#,
            crate::plot::HEIGHT - crate::plot::BOTTOM
        );
        if let Some(i) = s.rfind("</svg>") {
            s.insert_str(i, &m);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_csv(nan_at: Option<usize>) -> String {
        let mut s = String::from("step,loss\n");
        for i in 1..=200usize {
            let d = i as f64 * 10.0 * 4096.0;
            let l = 1.8 + 0.9 * (d / 1e6).powf(-0.3);
            if Some(i) == nan_at {
                s.push_str(&format!("{},nan\n", i * 10));
            } else {
                s.push_str(&format!("{},{l}\n", i * 10));
            }
        }
        s
    }

    /// A unit followed live from a job's events forecasts along the schedule the events carry,
    /// with the anneal of the job's units that ran it to the end: a curve made from a known
    /// `c + a·(S/S_end)^-0.4 + K·u` with K = 0.08 is forecast from its first 20 % to within a
    /// few thousandths of its truth at the end, and the notes say where the schedule and K came from.
    #[test]
    fn a_live_unit_follows_its_jobs_schedule_and_the_anneal_of_its_finished_units() {
        use p2law_shared::calibrate::{CalibrationEvent, Stage};
        use p2law_shared::forecast::schedule::{Decay, Shape};
        let shape = Shape { decay: Decay::Cosine, total: 2_097_152.0, floor: 0.1, warmup: 0.0 };
        let truth = |d: f64, c: f64, a: f64| c + a * (shape.area(d) / shape.area(shape.total)).powf(-0.4) + 0.08 * shape.rate(d);
        let mut live = crate::calibrate::LiveCurves::default();
        let mut seq = 0;
        let mut feed = |live: &mut crate::calibrate::LiveCurves, unit: &str, upto: f64, c: f64, a: f64| {
            for i in 0..=40 {
                let d = 2048.0 * 1024f64.powf(i as f64 / 40.0);
                if d > upto {
                    break;
                }
                seq += 1;
                let point = Some(p2law_shared::data::CurvePoint { tokens: d, loss: truth(d, c, a) });
                live.apply(&CalibrationEvent { seq, stage: Stage::Train, unit: Some(unit.into()), step: 0, steps: 0, tokens: 0, point, eta_s: None, message: None, run_id: None, fit_id: None, worker: None, schedule: Some(shape) });
            }
        };
        feed(&mut live, "p/depth/0.15", shape.total, 1.6, 0.10);
        feed(&mut live, "p/depth/0.35", shape.total, 1.7, 0.25);
        feed(&mut live, "p/depth/0.25", 0.2 * shape.total, 1.65, 0.18);
        assert_eq!(live.schedules.len(), 3);
        let (k, n) = live.anneal_for("p/depth/0.25").expect("two finished units");
        assert_eq!(n, 2);
        assert!((k - 0.08).abs() < 0.005, "K from the finished units: {k}");
        let view = compute_live(7, &live, "p/depth/0.25", Some(shape.total), None, Along::default()).unwrap();
        let notes = view.forecast.notes.join("\n");
        assert!(notes.contains("post-training recipe, from the job's events") && notes.contains("median of 2 finished unit(s)"), "{notes}");
        let (got, want) = (view.forecast.fit.value(shape.total), truth(shape.total, 1.65, 0.18));
        assert!((got - want).abs() / want < 0.003, "forecast {got}, truth {want}");
        // A schedule typed on the page is another recipe: the job's K is not borrowed for it.
        let typed = Shape { total: 4.0 * shape.total, ..shape };
        let view = compute_live(7, &live, "p/depth/0.25", None, None, Along { shape: Some(typed), anneal: None }).unwrap();
        assert!(!view.forecast.notes.join("\n").contains("finished unit"), "{:?}", view.forecast.notes);
        // A unit with no checkpoint yet is named.
        assert!(compute_live(7, &live, "p/width/0.5", None, None, Along::default()).unwrap_err().contains("p/width/0.5"));
    }

    #[test]
    fn a_log_is_forecast_and_drawn_with_its_rule() {
        let choice = LogChoice { tokens_per_step: Some(4096.0), ..Default::default() };
        let v = compute("run.csv", log_csv(None).as_bytes(), &choice, None, Some(Rule::Gap(0.1)), None, Along::default()).expect("forecast");
        assert_eq!(v.forecast.points.len(), GRID);
        assert_eq!(v.svg.matches(r#"class="observed""#).count(), 200);
        assert_eq!(v.svg.matches(r#"class="band""#).count(), 1);
        assert_eq!(v.svg.matches(r#"class="rule-marker""#).count(), 1);
        // Met at 1e6 · 9^(1/0.3) on the exact curve; the horizon reaches past it.
        let t = v.forecast.rule.as_ref().unwrap().tokens.unwrap();
        assert!((t / (1e6 * 9f64.powf(1.0 / 0.3)) - 1.0).abs() < 0.05, "{t:e}");
        assert!(v.horizon > t);
    }

    #[test]
    fn a_stored_pruned_run_leans_on_its_methods_preset_and_a_control_does_not() {
        use p2law_shared::api::{RunDetail, RunSummary};
        let checkpoints = (1..=200usize)
            .map(|i| {
                let d = i as f64 * 40960.0;
                p2law_shared::data::CurvePoint { tokens: d, loss: 1.8 + 0.9 * (d / 1e6).powf(-0.3) }
            })
            .collect();
        let summary = RunSummary {
            id: 7,
            upload_id: None,
            name: "p/width/0.25".into(),
            n0: Some(3e6),
            rho: Some(0.25),
            l0: Some(1.7),
            method: Some("width".into()),
            family: None,
            split: None,
            token_source: p2law_shared::logs::TokenSource::Logged,
            points: 200,
            created_at: String::new(),
        };
        let mut detail = RunDetail { summary, checkpoints, schedule: None };
        let v = compute_stored(&detail, None, Some(Rule::Gap(0.1)), Along::default()).expect("forecast");
        let p = v.forecast.fit.prior.as_ref().expect("the run's method has a preset");
        assert_eq!(p.source, "p2-study-width");
        // The marker sits on the drawn (blended) curve.
        let t = v.forecast.rule.as_ref().unwrap().tokens.unwrap();
        assert!((v.forecast.fit.value(t) - v.forecast.fit.asymptote_value() - 0.1).abs() < 1e-6);
        detail.summary.rho = Some(0.0);
        assert!(compute_stored(&detail, None, None, Along::default()).unwrap().forecast.fit.prior.is_none());
        // A calibration job's run comes with its schedule: the forecast follows it and says
        // where it came from; a schedule typed on the page wins.
        use p2law_shared::forecast::schedule::{Decay, Shape};
        let last = detail.checkpoints.last().unwrap().tokens;
        let shape = Shape { decay: Decay::Cosine, total: 4.0 * last, floor: 0.1, warmup: 0.0 };
        detail.schedule = Some(shape);
        let notes = compute_stored(&detail, None, None, Along::default()).unwrap().forecast.notes.join("\n");
        assert!(notes.contains("follows the schedule cosine") && notes.contains("recipe of the calibration job that made this run"), "{notes}");
        let typed = Along { shape: Some(Shape { total: 8.0 * last, ..shape }), anneal: None };
        let notes = compute_stored(&detail, None, None, typed).unwrap().forecast.notes.join("\n");
        assert!(notes.contains("follows the schedule cosine") && !notes.contains("calibration job"), "{notes}");
    }

    #[test]
    fn the_page_fields_make_a_prior_or_name_what_is_wrong() {
        assert_eq!(prior_from_fields("", None, None, None), Ok(None));
        let p = prior_from_fields("2:4", Some(3e6), Some(0.5), Some(1.7)).unwrap().expect("a prior");
        assert_eq!(p.source, "p2-study-nm");
        assert!(prior_from_fields("depth", Some(3e6), None, Some(1.7)).unwrap_err().starts_with("ρ:"));
        assert!(prior_from_fields("", Some(3e6), Some(0.25), Some(1.7)).unwrap_err().starts_with("pruning method:"));
        assert!(prior_from_fields("depth", None, None, None).unwrap_err().contains("N0, ρ and L0"));
        // A dropped log forecast with it names it.
        let choice = LogChoice { tokens_per_step: Some(4096.0), ..Default::default() };
        let p = prior_from_fields("width", Some(3e6), Some(0.25), Some(1.7)).unwrap();
        let v = compute("run.csv", log_csv(None).as_bytes(), &choice, None, None, p, Along::default()).unwrap();
        assert_eq!(v.forecast.fit.prior.as_ref().unwrap().source, "p2-study-width");
    }

    #[test]
    fn a_broken_log_warns_and_a_bad_one_says_why() {
        let choice = LogChoice { tokens_per_step: Some(4096.0), ..Default::default() };
        let v = compute("run.csv", log_csv(Some(150)).as_bytes(), &choice, Some(1e9), None, None, Along::default()).expect("forecast from before the NaN");
        assert_eq!(v.forecast.warnings[0].step, Some(1500.0));
        let e = compute("run.csv", log_csv(None).as_bytes(), &LogChoice::default(), None, None, None, Along::default()).unwrap_err();
        assert!(e.contains("run.csv") && e.contains("tokens"), "{e}");
    }

    #[test]
    fn a_tensorboard_file_of_an_independent_writer_is_read_here() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tensorboard/tensor/events.out.tfevents.fixture");
        let bytes = std::fs::read(path).unwrap();
        let choice = LogChoice { metric: Some("eval/loss".into()), ..Default::default() };
        let v = compute("events.out.tfevents.fixture", &bytes, &choice, None, None, None, Along::default()).expect("forecast");
        assert_eq!(v.forecast.fit.checkpoints, 20);
        assert_eq!(v.run.metric, "eval/loss");
    }

    #[test]
    fn the_schedule_fields_are_resolved_or_named() {
        assert_eq!(along_from_fields(" ", "").unwrap(), Along::default());
        let a = along_from_fields("cosine:8.192e7:0.1", "0.05").unwrap();
        assert_eq!((a.shape.unwrap().total, a.anneal), (8.192e7, Some(0.05)));
        assert!(along_from_fields("step:1e9", "").unwrap_err().starts_with("learning-rate schedule:"));
        // An anneal alone waits for the log: a CSV tells no schedule, so the forecast names it.
        let alone = along_from_fields("", "0.05").unwrap();
        let choice = LogChoice { tokens_per_step: Some(4096.0), ..Default::default() };
        let e = compute("run.csv", log_csv(None).as_bytes(), &choice, None, None, None, alone).unwrap_err();
        assert!(e.contains("anneal") && e.contains("give the schedule"), "{e}");
        assert!(along_from_fields("cosine:1e9", "x").unwrap_err().starts_with("anneal K:"));
        // Along a schedule the forecast follows it and says so.
        let v = compute("run.csv", log_csv(None).as_bytes(), &choice, None, None, None, a).unwrap();
        assert_eq!(v.forecast.fit.curve.anneal, 0.05);
        assert!(v.forecast.notes.iter().any(|n| n.contains("follows the schedule cosine")), "{:?}", v.forecast.notes);
    }
}
