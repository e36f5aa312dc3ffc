//! `p2law study report`: fits the law to the study per method the way the paper does, runs its
//! three protocols for the P² law, its ablations, its reduction and Chinchilla, picks the fit each
//! preset is made from, tests the paper's trends on the
//! curves, and writes `README.md` with SVG figures. Every number in it is computed here.

use crate::lab::study;
use anyhow::{Context, Result};
use p2law_shared::data::Curve;
use p2law_shared::law::{Features, LawForm};
use p2law_shared::report::FitReport;
use p2law_shared::study::StudyData;
use p2law_shared::study::analysis::{self, FORMS, GROUPS, Group, ProtocolResult};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The study's data: a directory with `curves.csv` and `manifest.json`.
    #[arg(long, default_value = "shared/data/study")]
    pub data: PathBuf,
    /// Where `README.md` and the figures go.
    #[arg(long, default_value = "docs/study")]
    pub out: PathBuf,
    /// Bootstrap resamples (over curves) for the coefficients' intervals (the presets' number, so
    /// that the report's P² fits are the presets' fits).
    #[arg(long, default_value_t = p2law_shared::presets::STUDY_RESAMPLES)]
    pub bootstrap: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Where a protocol's held-out errors lie, for a reader asking why it misses its goal: what the
/// held-out points extrapolate to (tokens and the healing schedule's rate there, N0 or ρ beyond
/// the fitted ones), on which side the law errs, and its worst point.
fn protocol_why(data: &StudyData, g: &Group, p: &ProtocolResult) -> String {
    let held: std::collections::BTreeSet<&str> = p.predictions.iter().map(|x| x.0.as_str()).collect();
    let all = analysis::curves(data, g);
    let (test, train): (Vec<&Curve>, Vec<&Curve>) = all.iter().partition(|c| held.contains(c.run.as_str()));
    let n = p.predictions.len().max(1) as f64;
    let rel = |x: &(String, f64, f64, f64)| (x.3 - x.2) / x.2;
    let high = p.predictions.iter().filter(|x| x.3 > x.2).count() as f64 / n;
    let signed = p.predictions.iter().map(rel).sum::<f64>() / n;
    let what = match p.protocol.as_str() {
        "last20" => {
            let (lo, hi) = range(p.predictions.iter().map(|x| x.1));
            let rate = data.manifest.units.iter().find(|u| held.contains(u.run.as_str())).map(|u| u.post_train.schedule());
            match rate {
                Some(s) => format!(
                    "the held-out checkpoints lie at D {lo:.3e}–{hi:.3e} tokens, where the healing schedule's cosine decay takes the learning rate from {:.0} % to {:.0} % of its peak{}",
                    100.0 * s.rate(lo),
                    100.0 * s.rate(hi),
                    if high > 0.5 && signed > 0.0 { ": the loss falls faster there than the law's single power of D, which has no term for the decay (the forecast's schedule-aware form has one)" } else { "" }
                ),
                None => format!("the held-out checkpoints lie at D {lo:.3e}–{hi:.3e} tokens"),
            }
        }
        "largest-n0" => {
            let (_, fitted) = range(train.iter().filter_map(|c| c.n0));
            let (_, held_n0) = range(test.iter().filter_map(|c| c.n0));
            format!("the held-out parent's N0 {held_n0:.0} is {:.1}× the largest fitted ({fitted:.0}), extrapolated through the size terms", held_n0 / fitted)
        }
        _ => {
            let (lo, hi) = range(test.iter().filter_map(|c| c.rho));
            let (_, fitted) = range(train.iter().filter_map(|c| c.rho));
            format!("the held-out curves are each method's heaviest setting, ρ {lo:.3}–{hi:.3}, against at most {fitted:.3} fitted, extrapolated through (1/ρ)^γ")
        }
    };
    let worst = p.predictions.iter().max_by(|a, b| rel(a).abs().total_cmp(&rel(b).abs()));
    let worst = worst.map_or(String::new(), |x| format!("; the largest error is `{}` at D = {:.3e}: observed {:.4}, predicted {:.4} ({:+.2} %)", x.0, x.1, x.2, x.3, 100.0 * rel(x)));
    format!("{what}. The law predicts too high at {:.0} % of the {} held-out points (mean signed error {:+.2} %){worst}.", 100.0 * high, p.predictions.len(), 100.0 * signed)
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing: {e}")
}

/// `(lo, hi)` of an iterator of floats.
fn range(v: impl Iterator<Item = f64>) -> (f64, f64) {
    v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)))
}

/// Observed checkpoints and the fitted law through each curve's token range, one colour per
/// parent, drawn by the renderer of the pages and `p2law fit --plot`
/// ([`p2law_shared::plot`]); the legend names the parents.
fn curves_svg(path: &Path, curves: &[Curve], report: &FitReport) -> Result<()> {
    use p2law_shared::plot::{Axes, Observed, fitted, render, token_range};
    report.coefficients()?;
    let parents: Vec<f64> = {
        let mut n: Vec<f64> = curves.iter().filter_map(|c| c.n0).collect();
        n.sort_by(f64::total_cmp);
        n.dedup();
        n
    };
    let parent = |c: &Curve| parents.iter().position(|n| Some(*n) == c.n0).unwrap_or(0);
    let mut named = vec![false; parents.len()];
    let mut lines = fitted(curves, report);
    for (line, c) in lines.iter_mut().zip(curves) {
        // Many curves: no bands, one legend entry per parent.
        let i = parent(c);
        line.band = None;
        line.color = i;
        line.label = if std::mem::replace(&mut named[i], true) { String::new() } else { format!("N0 = {:.0}", parents[i]) };
    }
    let observed: Vec<Observed> = curves.iter().map(|c| Observed::of(parent(c), c)).collect();
    let (dmin, dmax) = token_range(curves).context("no checkpoint after D = 0")?;
    let svg = render(&lines, &observed, &Axes::fit(&lines, &observed, dmin, dmax));
    crate::write_atomic(path, svg.as_bytes()).with_context(|| path.display().to_string())
}

/// Residuals (fitted − observed) against D.
fn residuals_svg(path: &Path, title: &str, curves: &[Curve], report: &FitReport) -> Result<()> {
    let params = report.coefficients()?;
    let law = report.law.law();
    let res: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| c.points.iter().filter(|p| p.tokens > 0.0).filter_map(move |p| Some((p.tokens, c.inputs(p.tokens)?, p.loss))))
        .map(|(d, x, o)| (d, law.value(&params, &Features::new(&x)) - o))
        .collect();
    let (t0, t1) = range(res.iter().map(|r| r.0));
    let m = res.iter().map(|r| r.1.abs()).fold(1e-3, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((t0 / 1.3..t1 * 1.3).log_scale(), -m * 1.1..m * 1.1)
            .map_err(plot_err)?;
        chart.configure_mesh().x_desc("post-training tokens D").y_desc("fitted − observed (nats)").draw().map_err(plot_err)?;
        chart.draw_series(LineSeries::new([(t0 / 1.3, 0.0), (t1 * 1.3, 0.0)], BLACK.mix(0.5))).map_err(plot_err)?;
        chart.draw_series(res.iter().map(|&(d, r)| Circle::new((d, r), 2, BLUE.mix(0.6).filled()))).map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    crate::write_atomic(path, svg.as_bytes()).with_context(|| path.display().to_string())
}

/// Predicted against observed loss of each protocol's held-out points, with the diagonal.
fn protocols_svg(path: &Path, title: &str, results: &[&ProtocolResult]) -> Result<()> {
    let all = || results.iter().flat_map(|r| r.predictions.iter());
    let (lo, hi) = range(all().flat_map(|p| [p.2, p.3]));
    if !lo.is_finite() {
        return Ok(());
    }
    let pad = 0.02 * (hi - lo).max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 640)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo - pad..hi + pad, lo - pad..hi + pad)
            .map_err(plot_err)?;
        chart.configure_mesh().x_desc("observed loss").y_desc("predicted loss").draw().map_err(plot_err)?;
        chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.5))).map_err(plot_err)?;
        for (i, r) in results.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(r.predictions.iter().map(|p| Circle::new((p.2, p.3), 3, color.filled())))
                .map_err(plot_err)?
                .label(r.protocol.clone())
                .legend(move |(x, y)| Circle::new((x + 5, y), 3, color.filled()));
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.85)).draw().map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    crate::write_atomic(path, svg.as_bytes()).with_context(|| path.display().to_string())
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

fn r2(r: &FitReport) -> String {
    r.metrics.r2.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// The coefficient table of a fit, with the bootstrap's intervals, and for each scale
/// coefficient the term it multiplies at the data's centre: what the identification tests judge.
fn coefficients(out: &mut String, r: &FitReport) {
    let judged = r.judged();
    let centre = r.centre.map_or(String::new(), |c| {
        format!(" at the data's centre (N0 {:.3e}, ρ {:.3}, D {:.3e}{})", c.n0, c.rho, c.tokens, c.l0.map_or(String::new(), |l| format!(", L0 {l:.3}")))
    });
    let _ = writeln!(out, "| coefficient | value | 95 % interval (bootstrap over curves) | its term{centre}, nats [95 %] |\n|---|---|---|---|");
    for (i, name) in r.law.law().params().iter().enumerate() {
        let v = r.params.get(*name).copied().unwrap_or(f64::NAN);
        let band = r.intervals.as_ref().and_then(|i| i.params.get(*name)).map_or("n/a".into(), |[a, b]| format!("[{a:.4e}, {b:.4e}]"));
        let weak = if r.is_unidentified(name) { " (not identified)" } else { "" };
        let term = judged.as_ref().and_then(|j| j.get(i)).filter(|j| j.scale).map_or("".into(), |j| {
            format!("{:.4e} {}", j.value, j.interval.map_or("n/a".into(), |[a, b]| format!("[{a:.4e}, {b:.4e}]")))
        });
        let _ = writeln!(out, "| `{name}` | {v:.6e}{weak} | {band} | {term} |");
    }
}

/// One fit's summary, coefficient table and figures (`{group}{suffix}-curves.svg`, `-residuals.svg`).
fn fit_section(out: &mut String, a: &Args, g: &Group, curves: &[Curve], r: &FitReport, what: &str, suffix: &str) -> Result<()> {
    let _ = writeln!(
        out,
        "{} curves, {} checkpoints: R² {}, RMSE {:.4} nats, Huber {:.3e}, ASD {}.{}\n",
        curves.len(),
        r.metrics.points,
        r2(r),
        r.metrics.rmse,
        r.metrics.huber,
        r.metrics.asd.map_or("n/a".into(), |v| format!("{v:.4}")),
        match r.degeneracy() {
            Some(why) => format!(" **{why}**; no preset is made from it."),
            None => " Every coefficient is identified.".to_string(),
        }
    );
    coefficients(out, r);
    let fig = format!("{}{suffix}-curves.svg", g.id);
    curves_svg(&a.out.join(&fig), curves, r)?;
    let res = format!("{}{suffix}-residuals.svg", g.id);
    residuals_svg(&a.out.join(&res), &format!("residuals of the {what}, {}", g.id), curves, r)?;
    let _ = writeln!(out, "\n![observed and fitted curves, {0}{suffix}]({fig})\n\n![residuals, {0}{suffix}]({res})\n", g.id);
    Ok(())
}

/// Writes the whole report.
pub fn run(a: Args) -> Result<()> {
    let data = study::load_dir(&a.data)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("--out {}", a.out.display()))?;
    let md = report(&data, &a)?;
    let path = a.out.join("README.md");
    crate::write_atomic(&path, md.as_bytes()).with_context(|| path.display().to_string())?;
    println!("report -> {}", path.display());
    Ok(())
}

fn report(data: &StudyData, a: &Args) -> Result<String> {
    let m = &data.manifest;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The P² study\n\np2law's own data set of pruning-and-healing curves and the P² law fitted to it. Made by `p2law study run --out {}`, \
         analysed by `p2law study report --data {} --out {}`: every number and figure below is generated, none typed.\n",
        a.data.display(),
        a.data.display(),
        a.out.display()
    );
    // The data.
    let _ = writeln!(
        out,
        "## Data\n\n- corpus: `{}`, {} documents, {} training and {} held-out bytes ({}), SHA-256 `{}`\n- device: {}; p2law {} at commit `{}`\n- \
         grid: {} parents; depth rates {:?}, width rates {:?}, N:M patterns {:?}; a second seed for the {} smallest parents; {} post-training tokens per curve, \
         held-out loss ({} windows of 128 bytes) at D = 0 and {} log-spaced checkpoints from one step on\n- {} curves; wall time of the whole study {:.2} h ({:.2} CPU-hours), as the run measured itself across its sittings, whatever else the machine ran then (the data's README says what it ran)\n",
        m.corpus.source,
        m.corpus.documents,
        m.corpus.train_tokens,
        m.corpus.held_out_tokens,
        m.corpus.split,
        m.corpus.sha256,
        m.device,
        m.p2law_version,
        m.p2law_commit,
        m.grid.parents.len(),
        m.grid.depth_rates,
        m.grid.width_rates,
        m.grid.patterns,
        m.grid.extra_seed_parents,
        m.grid.post_train_tokens,
        m.eval_windows,
        m.checkpoints,
        data.curves.len(),
        m.wall_s / 3600.0,
        m.cpu_s / 3600.0
    );
    let grid_units = m.grid.units();
    let done: Vec<&p2law_shared::study::StudyUnit> = grid_units.iter().filter(|u| m.units.iter().any(|d| &d.unit == *u)).collect();
    if done.len() < grid_units.len() {
        let missing: Vec<String> = m.grid.parents.iter().filter(|p| !m.parents.iter().any(|q| &q.name == *p)).cloned().collect();
        let _ = writeln!(
            out,
            "**Partial grid**: {} of the grid's {} units are finished (the study is made across sittings; `p2law study run` carries on where it stopped). \
             Every figure below rests on the finished units only.{}\n",
            done.len(),
            grid_units.len(),
            if missing.is_empty() { String::new() } else { format!(" Parents without a curve yet: {}.", missing.join(", ")) }
        );
    }
    let _ = writeln!(
        out,
        "### Parents\n\n| parent | N0 | hidden / MLP / heads / KV groups / head dim | pretraining tokens (epochs) | L0 | L at half the tokens | gain of the last doubling | converged by it? | pretraining wall / CPU | units' wall / CPU |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for p in &m.parents {
        let s = &p.shape;
        let (uw, uc) = m.units.iter().filter(|u| u.unit.parent == p.name).fold((0.0, 0.0), |(w, c), u| (w + u.wall_s, c + u.cpu_s));
        let _ = writeln!(
            out,
            "| {} | {} | {} / {} / {} / {} / {} | {} ({:.2}) | {:.4} | {:.4} | {} | {} | {} | {:.0} s / {:.0} s |",
            p.name,
            p.n0,
            s.hidden_size,
            s.intermediate_size,
            s.num_attention_heads,
            s.num_key_value_heads,
            s.head_dim,
            p.convergence.tokens,
            p.convergence.epochs,
            p.l0,
            p.convergence.half_loss,
            pct(p.convergence.improvement),
            if p.convergence.converged { "yes" } else { "no" },
            if p.wall_s >= 1.0 {
                format!("{:.0} s / {:.0} s{}", p.wall_s, p.cpu_s, if p.untimed.is_empty() { String::new() } else { format!(" (+ {} cached budgets, untimed)", p.untimed.len()) })
            } else {
                "cached before times were kept".to_string()
            },
            uw,
            uc
        );
    }
    let criterion = m.parents.first().map_or(String::new(), |p| p.convergence.criterion.clone());
    let _ = writeln!(out, "\nConvergence criterion: {criterion}. Each parent has {} layers.\n", m.parents.first().map_or(0, |p| p.shape.num_hidden_layers));

    // Controls against healing.
    let _ = writeln!(
        out,
        "### Controls: healing is not more pretraining\n\nEach parent, unpruned, is post-trained on the same tokens as its pruned models. Drift is its loss at D = 0 minus its loss at the end \
         (positive: it still falls). Healing gain is the same difference for a pruned model. The check: the control falls by at most a tenth of the smallest healing gain.\n\n\
         | parent | seed | control drift | smallest healing gain (unit) | largest healing gain | drift / smallest gain | check |\n|---|---|---|---|---|---|---|"
    );
    let mut all_pass = true;
    for c in data.controls() {
        let Some(u) = p2law_shared::study::StudyUnit::from_run(&c.run) else { continue };
        let drift = c.points.first().map_or(f64::NAN, |p| p.loss) - c.points.last().map_or(f64::NAN, |p| p.loss);
        let gains: Vec<(f64, &str)> = data
            .curves
            .iter()
            .filter(|d| d.rho.is_some_and(|r| r > 0.0) && p2law_shared::study::StudyUnit::from_run(&d.run).is_some_and(|v| v.parent == u.parent && v.seed == u.seed))
            .map(|d| (d.points.first().map_or(f64::NAN, |p| p.loss) - d.points.last().map_or(f64::NAN, |p| p.loss), d.run.as_str()))
            .collect();
        if gains.is_empty() {
            let _ = writeln!(out, "| {} | {} | {drift:+.4} | no pruned unit of this seed yet | | | |", u.parent, u.seed);
            continue;
        }
        let smallest = gains.iter().copied().fold((f64::INFINITY, ""), |a, b| if b.0 < a.0 { b } else { a });
        let largest = gains.iter().map(|g| g.0).fold(f64::NEG_INFINITY, f64::max);
        let pass = drift <= 0.1 * smallest.0;
        all_pass &= pass;
        let _ = writeln!(
            out,
            "| {} | {} | {drift:+.4} | {:.4} (`{}`) | {largest:.4} | {:.3} | {} |",
            u.parent,
            u.seed,
            smallest.0,
            smallest.1,
            drift / smallest.0,
            if pass { "pass" } else { "**fails**: the parent still learns from these tokens" }
        );
    }
    let _ = writeln!(out, "\n{}\n", if all_pass { "Every control passes." } else { "At least one control fails the check; its parent's curves mix healing with further pretraining." });
    let short: Vec<&str> = m.parents.iter().filter(|p| !p.convergence.converged).map(|p| p.name.as_str()).collect();
    if all_pass && !short.is_empty() {
        let _ = writeln!(
            out,
            "{} of {} parents ({}) stop at the epoch cap short of the doubling criterion above. The curves rest on this check instead: what would confound healing is a parent \
             that still learns from the healing tokens, and each control measures exactly that, on those tokens.\n",
            short.len(),
            m.parents.len(),
            short.join(", ")
        );
    }

    // Fits per group.
    let _ = writeln!(out, "## The P² law per method\n\nLeast squares on raw loss (Levenberg–Marquardt) from the law's full grid of starts, on the checkpoints from D = {} tokens (16 optimizer steps) on; {} bootstrap resamples over curves (seed {}). \
         With the default resamples and seed these fits, or their reductions where they are degenerate, are the shipped P² presets' (`shared/presets/p2-study.json`; see [The presets](#the-presets)).\n\n\
         Over the first steps of healing the loss falls by about as much per step as the learning rate allows, linearly in steps rather than as a power of D (the optimizer's regime, not the data's), \
         and no form of the law describes it. The same fits on every checkpoint from the first step:\n\n| method | checkpoints | R² | RMSE | from D = {} tokens: R² | RMSE |\n|---|---|---|---|---|---|",
        analysis::FIT_MIN_TOKENS, a.bootstrap, a.seed, analysis::FIT_MIN_TOKENS);
    // Each group's fits, made once (the P² law, and its reduction where the full form is
    // degenerate): the comparison below, the group's section and the protocols all read them.
    let made: Vec<(Group, Vec<Curve>, Option<analysis::StudyFit>)> = GROUPS
        .into_iter()
        .map(|g| {
            let curves = analysis::curves(data, &g);
            let fit = (!curves.is_empty()).then(|| analysis::fit_study_group(data, &g, a.bootstrap, a.seed));
            (g, curves, fit)
        })
        .collect();
    for (g, _, fits) in &made {
        let every = analysis::curves_from(data, g, 0.0);
        let Some(fits) = fits.as_ref().filter(|_| !every.is_empty()) else { continue };
        let all = analysis::fit_curves(&every, LawForm::P2, 0, a.seed);
        let cell = |r: Result<&FitReport, _>| r.map_or(("failed".to_string(), String::new()), |r| (r2(r), format!("{:.4}", r.metrics.rmse)));
        let ((r2a, ra), (r2b, rb)) = (cell(all.as_ref()), cell(fits.full.as_ref()));
        let points: usize = every.iter().map(|c| c.points.len()).sum();
        let _ = writeln!(out, "| {} | {points} | {r2a} | {ra} | {r2b} | {rb} |", g.id);
    }
    let _ = writeln!(out);
    for (g, curves, study_fit) in &made {
        let _ = writeln!(out, "### {} — {}\n", g.id, g.title);
        let Some(study_fit) = study_fit else {
            let _ = writeln!(out, "No curves yet.\n");
            continue;
        };
        match &study_fit.full {
            Ok(r) => fit_section(&mut out, a, g, curves, r, "P² fit", "")?,
            Err(e) => {
                let _ = writeln!(out, "The fit failed: {e}.\n");
            }
        }
        match &study_fit.reduced {
            Some(Ok(r)) => {
                let _ = writeln!(
                    out,
                    "#### {} — the reduced form, `{}`\n\nThe full law is degenerate here, so the study also fits its nested reduction with N_C = E = 0 \
                     (`L0 + (1/ρ)^γ (1/N0)^δ D_C/D^β`: the asymptote at L0 and no size term of its own), from its full grid of starts with the same bootstrap.\n",
                    g.id,
                    LawForm::P2Reduced
                );
                fit_section(&mut out, a, g, curves, r, "P² reduced fit", "-reduced")?;
            }
            Some(Err(e)) => {
                let _ = writeln!(out, "The reduced form's fit failed: {e}.\n");
            }
            None => {}
        }
    }
    // Each group's fits, read from `made`: the full form's, the reduced form's, and the one its
    // preset is made from (the same rule as `make_presets`) or why none is.
    let studied = || made.iter().filter_map(|(g, _, s)| Some((g, s.as_ref()?)));
    fn full_fit(s: &analysis::StudyFit) -> Option<&FitReport> {
        s.full.as_ref().ok()
    }
    fn reduced_fit(s: &analysis::StudyFit) -> Option<&FitReport> {
        s.reduced.as_ref()?.as_ref().ok()
    }
    let of_group = |id: &str| studied().find(|(h, _)| h.id == id).map(|(_, s)| s);
    let chosen: Vec<(&Group, Result<&FitReport, String>)> = studied().map(|(g, s)| (g, s.chosen())).collect();

    // What ships.
    let _ = writeln!(
        out,
        "## The presets\n\nThe rule, fixed before any metric is read: a group's preset is its P² fit when every coefficient is identified, else its reduced fit when every \
         coefficient of that is, else none. A coefficient is identified when near-optimal starts agree within 5 % and its 95 % bootstrap interval is no wider than \
         twice its estimate; a scale coefficient (`D_C`, `N_C`, `E`) is judged by the term it multiplies at the data's centre (last column of each coefficient table), \
         since its raw value is that term at `N0 = 1`, `ρ = 1`, one token, and its raw interval widens with the unit `N0` is counted in (by `N0^δ` as `δ` moves). \
         Written by `cargo run --release -p p2law-shared --example make_presets -- --study-only` to `shared/presets/p2-study.json`, \
         re-made from the committed data by the test `study_presets_are_what_the_fitter_makes`.\n\n| group | preset | form | R² | RMSE | \
         ∂ log D_ε / ∂ log ρ | ∂ log D_ε / ∂ log N0 |\n|---|---|---|---|---|---|---|"
    );
    for (g, c) in &chosen {
        let id = p2law_shared::presets::study_preset_id(g.id);
        match c {
            Ok(r) => {
                let (gamma, delta, beta) = (r.params["gamma"], r.params["delta"], r.params["beta"]);
                let _ = writeln!(out, "| {} | `{id}` | `{}` | {} | {:.4} | {:.3} | {:.3} |", g.id, r.law, r2(r), r.metrics.rmse, -gamma / beta, -delta / beta);
            }
            Err(_) => {
                let _ = writeln!(out, "| {} | none | — | — | — | — | — |", g.id);
            }
        }
    }
    for (g, c) in &chosen {
        if let Err(why) = c {
            let _ = writeln!(out, "\nNo preset for {}: {why}.", g.id);
        }
    }
    let below: Vec<String> = chosen
        .iter()
        .filter_map(|(g, c)| c.as_ref().ok().filter(|r| r.metrics.r2.is_some_and(|v| v < 0.98)).map(|r| format!("{} (R² {})", g.id, r2(r))))
        .collect();
    if !below.is_empty() {
        let _ = writeln!(
            out,
            "\nBelow the R² 0.98 goal: {}. The reduced form gives up the full form's size terms, which these data cannot fix; the R² it loses is that \
             of seven coefficients against four on the same points (see each group's two fits above).",
            below.join(", ")
        );
    }
    let _ = writeln!(out);

    // Protocols, every form side by side.
    let _ = writeln!(
        out,
        "## The paper's protocols\n\nFit on part of the curves, predict the rest: `last20` (the first 80 % of each curve's checkpoints → the last 20 %), `largest-n0` (the smaller parents → the largest), \
         `highest-rho` (the lower target rates or sparser-kept patterns → the highest of each method). Errors are over the held-out checkpoints; relative errors are |predicted − observed| / observed. \
         The goal for the P² law: mean relative error ≤ 1 %, max ≤ 2 %. \
         The P² law is fitted from its full grid of starts; the other forms from {} starts drawn (seeded) from theirs.\n\n\
         | method | form | fit R² | fit RMSE | protocol | mean abs | max abs | mean rel | max rel |\n|---|---|---|---|---|---|---|---|---|",
        analysis::ABLATION_STARTS
    );
    let n0s = {
        let mut v: Vec<u64> = data.pruned(&[]).iter().filter_map(|c| c.n0).map(|n| n as u64).collect();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    if n0s < 3 {
        let _ = writeln!(
            out,
            "With {n0s} parent size(s), `largest-n0` fits on {} and predicts the other: the N0 terms of the law (N_C, α, E against δ) cannot be fitted from one size, and its errors only say so. \
             The protocol means something from three parents on.\n",
            n0s.saturating_sub(1)
        );
    }
    let mut p2_protocols: Vec<(Group, LawForm, Vec<ProtocolResult>)> = Vec::new();
    for g in GROUPS {
        if analysis::curves(data, &g).is_empty() {
            continue;
        }
        for law in FORMS {
            let fit = match law {
                LawForm::P2 => of_group(g.id).and_then(full_fit).cloned(),
                LawForm::P2Reduced => match of_group(g.id).and_then(reduced_fit) {
                    Some(r) => Some(r.clone()),
                    None => analysis::fit_group(data, &g, law, 0, a.seed).ok(),
                },
                _ => analysis::fit_group(data, &g, law, 0, a.seed).ok(),
            };
            let (fr2, frmse) = fit.as_ref().map_or(("failed".into(), "".into()), |r| (r2(r), format!("{:.4}", r.metrics.rmse)));
            let name = if law == LawForm::Chinchilla { "chinchilla (as dense, N = N0(1 − ρ))".to_string() } else { law.name().to_string() };
            let mut ok = Vec::new();
            for p in analysis::protocols(data, &g, law, a.seed) {
                match p {
                    Ok(p) => {
                        let _ = writeln!(out, "| {} | {name} | {fr2} | {frmse} | {} | {:.4} | {:.4} | {} | {} |", g.id, p.protocol, p.mean_abs_error, p.max_abs_error, pct(p.mean_rel_error), pct(p.max_rel_error));
                        ok.push(p);
                    }
                    Err(e) => {
                        let _ = writeln!(out, "| {} | {name} | {fr2} | {frmse} | — | {e} | | | |", g.id);
                    }
                }
            }
            let preset_form = of_group(g.id).and_then(|s| s.chosen().ok()).map(|r| r.law);
            if law == LawForm::P2 || (law == LawForm::P2Reduced && preset_form == Some(law)) {
                let refs: Vec<&ProtocolResult> = ok.iter().collect();
                let suffix = if law == LawForm::P2 { "" } else { "-reduced" };
                protocols_svg(&a.out.join(format!("{}{suffix}-protocols.svg", g.id)), &format!("{law} protocols, {}: held-out points", g.id), &refs)?;
                p2_protocols.push((g, law, ok));
            }
        }
    }
    let _ = writeln!(out);
    for (g, law, ps) in &p2_protocols {
        let suffix = if *law == LawForm::P2 { "" } else { "-reduced" };
        let _ = writeln!(out, "![{law} protocols, {0}]({0}{suffix}-protocols.svg)\n", g.id);
        let missed: Vec<String> = ps.iter().filter(|p| p.mean_rel_error > 0.01 || p.max_rel_error > 0.02).map(|p| format!("{} (mean {}, max {})", p.protocol, pct(p.mean_rel_error), pct(p.max_rel_error))).collect();
        if !missed.is_empty() {
            let _ = writeln!(out, "For {}, `{law}` misses the 1 % / 2 % goal on: {}. Where the errors lie:\n", g.id, missed.join("; "));
            for p in ps.iter().filter(|p| p.mean_rel_error > 0.01 || p.max_rel_error > 0.02) {
                let _ = writeln!(out, "- {}: {}", p.protocol, protocol_why(data, g, p));
            }
            let _ = writeln!(out);
        }
    }

    // Trends.
    let _ = writeln!(
        out,
        "## The paper's trends, tested on the curves\n\nThe measure needs no law: the tokens a curve takes to achieve 90 % of its healing (its loss at D = 0 minus its last loss), interpolated in log D. \
         Counted over every pair of first-seed curves of one method: a heavier pruning of the same parent, and the same setting on a larger parent.\n\n\
         | method | comparison | took more tokens | took fewer | same | the paper's claim |\n|---|---|---|---|---|---|"
    );
    for t in analysis::trends(data, 0.9) {
        let larger = t.axis.starts_with("larger");
        let (claim, holds) = if larger { ("a larger N0 needs fewer", t.fewer > t.more) } else { ("a higher ρ needs more", t.more > t.fewer) };
        let _ = writeln!(out, "| {} | {} | {} | {} | {} | {claim}: {} |", t.method, t.axis, t.more, t.fewer, t.ties, if holds { "holds" } else { "**not seen in these data**" });
    }
    let _ = writeln!(
        out,
        "\nThe fitted laws answer a different question: the tokens to come within a fixed ε (nats) of the asymptote, which grow as ρ^(−γ/β) N0^(−δ/β) — the budget rules \
         of the calculator and `p2law budget` are of this kind. The two can disagree without contradiction: a heavier pruning starts further from its floor and covers 90 % \
         of its own gain in fewer tokens, yet still needs more tokens to come within the same ε of it.\n"
    );
    let _ = writeln!(out, "| method | form | γ | δ | β | ∂ log D_ε / ∂ log ρ = −γ/β | ∂ log D_ε / ∂ log N0 = −δ/β |\n|---|---|---|---|---|---|---|");
    for (g, r) in studied().filter_map(|(g, s)| Some((g, full_fit(s)?))).chain(studied().filter_map(|(g, s)| Some((g, reduced_fit(s)?)))) {
        let (gamma, delta, beta) = (r.params["gamma"], r.params["delta"], r.params["beta"]);
        let weak = if r.degeneracy().is_some() { " (degenerate)" } else { "" };
        let _ = writeln!(out, "| {} | `{}`{weak} | {gamma:.4} | {delta:.4} | {beta:.4} | {:.3} | {:.3} |", g.id, r.law, -gamma / beta, -delta / beta);
    }
    let _ = writeln!(out, "\nA higher ρ needing more tokens is a positive first slope; a larger N0 needing fewer is a negative second one.");
    Ok(out)
}
