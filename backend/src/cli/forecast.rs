//! `p2law forecast`: one run's partial log in, where it is going out; `--validate` scores the
//! method on curves whose end is known. `p2law watch` (in `watch.rs`) re-runs it as the log grows.

use anyhow::{Context, Result, bail};
use p2law_shared::api::ForecastRequest;
use p2law_shared::budget::Rule;
use p2law_shared::forecast::validation::{self, Series};
use p2law_shared::forecast::log::{self, LogChoice, RunLog};
use p2law_shared::forecast::schedule::{Decay, Shape};
use p2law_shared::forecast::{Forecast, ForecastOptions};
use p2law_shared::logs::{self, Format, LogOptions};
use std::path::{Path, PathBuf};

/// Which log, and how to read it.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Input format; `auto` tells it from the content (TensorBoard event files included).
    #[arg(long, default_value = "auto")]
    pub format: Format,
    /// Loss key, column or tag to forecast (each format has a default: the eval loss when logged).
    #[arg(long)]
    pub metric: Option<String>,
    /// The training-loss key beside it, for the over-fitting check (default: `loss` in a
    /// trainer_state.json whose forecast metric is an eval loss).
    #[arg(long)]
    pub train_metric: Option<String>,
    /// Which run, in a log that holds several (a W&B panel export).
    #[arg(long)]
    pub run: Option<String>,
    /// Tokens per optimizer step, for logs that count steps only.
    #[arg(long)]
    pub tokens_per_step: Option<f64>,
}

/// Comma-separated token counts (`1e9,5e9`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenList(pub Vec<f64>);

fn token_list(s: &str) -> Result<TokenList, String> {
    s.split(',')
        .map(|t| {
            let v: f64 = t.trim().parse().map_err(|_| format!("`{t}` is not a number"))?;
            if v.is_finite() && v > 0.0 { Ok(v) } else { Err(format!("`{t}`: token counts must be positive")) }
        })
        .collect::<Result<Vec<f64>, String>>()
        .map(TokenList)
}

#[derive(Debug, Clone, clap::Args)]
pub struct ForecastArgs {
    /// Token counts to forecast the loss at, comma-separated (default: 2×, 10×, 100× the last
    /// checkpoint, and the schedule's end when the log names it).
    #[arg(long, value_parser = token_list)]
    pub at: Option<TokenList>,
    /// Budget rule: `slope:<tau>` (loss per 1e9 tokens), `gap:<eps>` (to the asymptote), `target:<loss>`.
    #[arg(long)]
    pub rule: Option<Rule>,
    /// Band level.
    #[arg(long, default_value_t = 0.9)]
    pub level: f64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 400)]
    pub resamples: usize,
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// The prior blended into the forecast: `auto` (the P² preset of `--method`, once `--n0`,
    /// `--rho` and `--l0` are given), `none`, or a preset id.
    #[arg(long, default_value = "auto")]
    pub prior: String,
    /// The run's pruning method, for the prior: `depth`, `width` or an N:M pattern (`2:4`).
    #[arg(long)]
    pub method: Option<String>,
    /// Parameters of the model before pruning, for the prior.
    #[arg(long)]
    pub n0: Option<f64>,
    /// Pruning rate, for the prior.
    #[arg(long)]
    pub rho: Option<f64>,
    /// Loss before pruning (on the metric forecast), for the prior.
    #[arg(long)]
    pub l0: Option<f64>,
    /// The run's learning-rate schedule, past and ahead: `KIND:TOTAL_TOKENS[:FLOOR[:WARMUP_TOKENS]]`
    /// with KIND `cosine`, `linear` or `constant` and FLOOR the last rate over the peak (default
    /// 0), e.g. `cosine:2.1e10:0.1:2e8`. The forecast then follows the rate's decay. A
    /// trainer_state.json's logged rate and `max_steps` give it when they show a cosine or linear
    /// decay.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Along the schedule (`--schedule`, or read from a trainer_state.json's learning rate): the
    /// anneal K, the loss's drop from the peak rate to zero (nats), from a finished run of the same
    /// recipe (`fit.anneal` in its `--json`).
    #[arg(long)]
    pub anneal: Option<f64>,
}

impl ForecastArgs {
    /// The options, resolved as the API resolves a `ForecastRequest` (one path, one set of caps).
    pub fn options(&self) -> Result<ForecastOptions> {
        let request = ForecastRequest {
            at: self.at.clone().map(|t| t.0).unwrap_or_default(),
            rule: self.rule.map(|r| r.to_string()),
            level: Some(self.level),
            resamples: Some(self.resamples),
            seed: Some(self.seed),
            prior: Some(self.prior.clone()),
            method: self.method.clone(),
            n0: self.n0,
            rho: self.rho,
            l0: self.l0,
            schedule: self.schedule.clone(),
            anneal: self.anneal,
        };
        request.resolve().map_err(|e| anyhow::anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub forecast: ForecastArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Score the method instead: cut every curve of DATA (a canonical curves CSV, or a folder
    /// holding `curves.csv` and/or p2law's external data) at 10 %, 20 % and 40 % of its tokens
    /// and forecast its final loss.
    #[arg(long, value_name = "DATA", conflicts_with = "files")]
    pub validate: Vec<PathBuf>,
    /// The run's log (one file).
    #[arg(required_unless_present = "validate")]
    pub files: Vec<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if !a.validate.is_empty() {
        return validate(&a.validate, &a.forecast, a.json);
    }
    let [file] = a.files.as_slice() else { bail!("give one log file (a run's log); got {}", a.files.len()) };
    let run = read_run(file, &a.log)?;
    let f = run.forecast(&a.forecast.options()?).map_err(|e| anyhow::anyhow!("{}: {e}", run.file))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        print!("{}", render(&run, &f));
    }
    Ok(())
}


/// Reads a run's log: the loss to forecast, the training loss beside it, the learning rate.
pub fn read_run(path: &Path, a: &LogArgs) -> Result<RunLog> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).with_context(|| format!("reading {name}"))?;
    read_run_bytes(&name, &bytes, a)
}

pub fn read_run_bytes(name: &str, bytes: &[u8], a: &LogArgs) -> Result<RunLog> {
    let choice = LogChoice { format: a.format, metric: a.metric.clone(), train_metric: a.train_metric.clone(), run: a.run.clone(), tokens_per_step: a.tokens_per_step };
    Ok(log::read(name, std::str::from_utf8(bytes).ok(), &choice, &|o| logs::parse_bytes(name, bytes, o))?)
}

fn fmt_step(step: Option<f64>) -> String {
    step.map_or(String::new(), |s| format!(", step {s}"))
}

/// The human view of a forecast.
pub fn render(run: &RunLog, f: &Forecast) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let pct = 100.0 * f.fit.level;
    let c = &f.fit.curve;
    let _ = writeln!(s, "run        {} ({} loss, {} checkpoints up to {:.4e} tokens{})", run.run, run.metric, f.fit.checkpoints, f.last.tokens, fmt_step(f.last_step));
    let _ = writeln!(s, "now        loss {:.4}", f.last.loss);
    let _ = writeln!(
        s,
        "fit        L = {:.4} + {:.4}·({}/{:.3e})^-{:.3}{}   ({} of {} bins, {:.3e}..{:.3e} tokens, RMSE {:.4}{})",
        c.c,
        c.a,
        if c.schedule.is_some() { "S(D)" } else { "D" },
        if c.schedule.is_some() { c.schedule.map_or(c.d_ref, |s| s.area(c.d_ref)) } else { c.d_ref },
        c.beta,
        if c.schedule.is_some() { format!(" + {:.4}·u(D)", c.anneal) } else { String::new() },
        f.fit.window_bins,
        f.fit.bins,
        f.fit.window[0],
        f.fit.window[1],
        c.rmse,
        f.fit.hindcast_error.map_or(String::new(), |h| format!(", hindcast error {:.2} %", 100.0 * h))
    );
    if let Some(p) = &f.fit.prior {
        let _ = writeln!(s, "prior      {}", p.summary());
    }
    let _ = writeln!(s, "asymptote  {:.4} ({pct:.0} % band {:.4} .. {:.4})", f.fit.asymptote_value(), f.fit.asymptote[0], f.fit.asymptote[1]);
    let _ = writeln!(s, "\n{:>14}  {:>8}  {pct:.0} % band", "tokens", "loss");
    for p in &f.points {
        let _ = writeln!(s, "{:>14.4e}  {:>8.4}  {:.4} .. {:.4}", p.tokens, p.loss, p.lo, p.hi);
    }
    if let Some(r) = &f.rule {
        let band = match (r.lo, r.hi) {
            (Some(lo), Some(hi)) => format!("band {lo:.3e} .. {hi:.3e}"),
            (Some(lo), None) => format!("band {lo:.3e} .. never"),
            _ => "no band".into(),
        };
        let _ = match (r.tokens, r.progress) {
            (Some(t), Some(p)) if p >= 1.0 => writeln!(s, "\nrule       {} already met, at {t:.4e} tokens", r.rule),
            (Some(t), Some(p)) => writeln!(s, "\nrule       {} met at {t:.4e} tokens ({band}); the run is {:.1} % of the way", r.rule, 100.0 * p),
            _ => writeln!(s, "\nrule       {}: the fitted curve never meets it ({band})", r.rule),
        };
    }
    if !f.warnings.is_empty() {
        let _ = writeln!(s, "\nwarnings");
        for w in &f.warnings {
            let _ = writeln!(s, "  [{}] {}", w.kind.name(), w.message);
        }
    }
    if !f.notes.is_empty() {
        let _ = writeln!(s, "\nnotes");
        for n in &f.notes {
            let _ = writeln!(s, "  {n}");
        }
    }
    s
}

/// Loads validation curves: canonical curve CSVs (grouped `study <method>` when they carry a
/// method), Pythia-70M's per-step training loss and OPT's trajectories from p2law's external data.
pub fn validation_series(paths: &[PathBuf]) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    for p in paths {
        let mut files: Vec<PathBuf> = Vec::new();
        if p.is_dir() {
            for f in ["curves.csv", "pythia_train_lm_loss_70m-0.csv", "colpret_opt_trajectories.csv"] {
                if p.join(f).exists() {
                    files.push(p.join(f));
                }
            }
            if files.is_empty() {
                bail!("--validate {}: holds no curves.csv and none of p2law's external curves", p.display());
            }
        } else {
            files.push(p.clone());
        }
        for f in files {
            let name = f.display().to_string();
            let text = std::fs::read_to_string(&f).with_context(|| format!("reading {name}"))?;
            match f.file_name().and_then(|n| n.to_str()) {
                Some("pythia_train_lm_loss_70m-0.csv") => {
                    // 2 097 152 tokens per step (Pythia paper, arXiv 2304.01373).
                    let o = LogOptions { tokens_per_step: Some(2_097_152.0), metric: Some("train/lm_loss".into()), ..Default::default() };
                    let log = logs::canonical::parse_csv(&name, &text, &o)?;
                    for c in log.curves {
                        let points = c.points.iter().map(|p| (p.tokens, p.loss)).collect();
                        out.push(Series { group: "pythia-70m train".into(), name: "pythia-70m".into(), points, baseline: None, schedule: Some(PYTHIA_SCHEDULE), anneal: None });
                    }
                }
                Some("colpret_opt_trajectories.csv") => out.extend(opt_trajectories(&name, &text)?),
                _ => {
                    // Study data (a manifest beside the curves), read once: its curves, and the
                    // preset-alone baseline, each curve predicted by its method's preset refitted
                    // without its parent.
                    let manifest = f.with_file_name("manifest.json");
                    let (curves, mut baselines, schedules) = if manifest.exists() {
                        let mname = manifest.display().to_string();
                        let mtext = std::fs::read_to_string(&manifest).with_context(|| format!("reading {mname}"))?;
                        let data = p2law_shared::study::StudyData::parse(&name, &text, &mname, &mtext)?;
                        let baselines = validation::study_baselines(&data);
                        let schedules = validation::study_schedules(&data);
                        (data.curves, baselines, schedules)
                    } else {
                        (logs::canonical::parse_csv(&name, &text, &LogOptions::default())?.curves, Default::default(), Default::default())
                    };
                    for c in curves {
                        let group = match c.method.as_deref() {
                            Some("1:4" | "2:4" | "3:4") => "study N:M".to_string(),
                            Some(m) => format!("study {m}"),
                            None => "curves".to_string(),
                        };
                        let baseline = baselines.remove(&c.run);
                        let (schedule, anneal) = schedules.get(&c.run).map_or((None, None), |&(s, k)| (Some(s), Some(k)));
                        out.push(Series { group, name: c.run.clone(), points: c.points.iter().map(|p| (p.tokens, p.loss)).collect(), baseline, schedule, anneal });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Pythia-70M's schedule (the Pythia paper, arXiv 2304.01373, and its GPT-NeoX configs): warm-up
/// over 1 % of 143 000 steps of 2 097 152 tokens, then cosine decay to a tenth of the peak at the
/// last step.
const PYTHIA_SCHEDULE: Shape = Shape { decay: Decay::Cosine, total: 143_000.0 * 2_097_152.0, floor: 0.1, warmup: 1_430.0 * 2_097_152.0 };

/// OPT's schedule (Zhang et al. 2022, arXiv 2205.01068, §2.2): warm-up over the first 375 M
/// tokens (2 000 steps for 175B), then linear decay to a tenth of the peak over 300 B tokens.
/// OPT-175B's rate was also lowered by hand mid-run (its logbook), which this does not follow.
const OPT_SCHEDULE: Shape = Shape { decay: Decay::Linear, total: 300e9, floor: 0.1, warmup: 375e6 };

/// OPT's checkpoints: `log10` tokens and perplexity, one curve per size; loss = ln perplexity. Each
/// size's anneal is the median of the other sizes' (fitted on their whole curves past the warm-up).
fn opt_trajectories(name: &str, text: &str) -> Result<Vec<Series>> {
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let h = rdr.headers()?.clone();
    let col = |c: &str| h.iter().position(|x| x == c).with_context(|| format!("{name}: no `{c}` column"));
    let (size, tok, ppl) = (col("model_size")?, col("num_token")?, col("ppl")?);
    let mut by: Vec<Series> = Vec::new();
    for (i, r) in rdr.records().enumerate() {
        let r = r.with_context(|| format!("{name}, line {}", i + 2))?;
        let num = |c: usize, field: &str| -> Result<f64> { r.get(c).and_then(|v| v.parse().ok()).with_context(|| format!("{name}, line {}, field `{field}`: not a number", i + 2)) };
        let (t, l) = (10f64.powf(num(tok, "num_token")?), num(ppl, "ppl")?.ln());
        let s = r.get(size).unwrap_or_default().to_string();
        match by.iter_mut().find(|x| x.name == format!("opt-{s}")) {
            Some(x) => x.points.push((t, l)),
            None => by.push(Series { group: "opt eval".into(), name: format!("opt-{s}"), points: vec![(t, l)], baseline: None, schedule: Some(OPT_SCHEDULE), anneal: None }),
        }
    }
    for s in &mut by {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    // The anneal of each size from the other sizes' whole curves (same schedule, leave one
    // out), as the study's curves get theirs from the other parents.
    let whole: Vec<Vec<(f64, f64)>> = by.iter().map(|s| s.points.clone()).collect();
    for (i, s) in by.iter_mut().enumerate() {
        let others = whole.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, p)| (p.as_slice(), &OPT_SCHEDULE));
        s.anneal = p2law_shared::forecast::family_anneal(others, &OPT_SCHEDULE).map(|(k, _)| k);
    }
    Ok(by)
}

pub const FRACTIONS: [f64; 3] = [0.1, 0.2, 0.4];

fn validate(paths: &[PathBuf], f: &ForecastArgs, json: bool) -> Result<()> {
    let series = validation_series(paths)?;
    let v = validation::validate(&series, &FRACTIONS, &f.options()?);
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("Forecast of each curve's final loss from its first 10 %, 20 % and 40 % of tokens ({} curves); |error| relative; band {:.0} %.", series.len(), 100.0 * v.level);
    println!("Plain: least squares of c + a·D^-β on the same prefix (every checkpoint, unbinned, no window).");
    println!(
        "Schedules: each study curve follows its unit's recipe (cosine to a tenth), with the anneal K fitted on the other parents' whole curves; \
         Pythia-70M and OPT follow their published schedules; each OPT size gets its anneal from the other sizes' whole curves (leave one size out), \
         Pythia-70M, alone of its kind, none (the log fits its own once its rate has fallen enough)."
    );
    println!(
        "Preset: the study's P² preset of the curve's method refitted without the curve's parent (leave one parent out), from N0, ρ and L0 alone; \
         only where a preset covers the curve (the study's pruned curves, each by its method's preset; n: how many).\n"
    );
    println!("| curves | cut | n | forecast median | forecast max | band coverage | plain median | plain max | preset median | preset max |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for s in &v.scores {
        let pm = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.2} %", 100.0 * v));
        let preset = |x: Option<f64>| if s.preset_curves == 0 { "–".to_string() } else { format!("{} (n {})", pm(x), s.preset_curves) };
        println!(
            "| {} | {:.0} % | {}{} | {:.2} % | {:.2} % | {:.0} % | {} | {} | {} | {} |",
            s.group,
            100.0 * s.fraction,
            s.curves,
            if s.skipped > 0 { format!(" (+{} too short)", s.skipped) } else { String::new() },
            100.0 * s.median_abs_error,
            100.0 * s.max_abs_error,
            100.0 * s.coverage,
            pm(s.plain_median_abs_error),
            pm(s.plain_max_abs_error),
            preset(s.preset_median_abs_error),
            preset(s.preset_max_abs_error)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_opt_size_gets_an_anneal_from_the_other_sizes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/external/colpret_opt_trajectories.csv");
        let text = std::fs::read_to_string(path).expect("the committed OPT trajectories");
        let series = super::opt_trajectories(path, &text).expect("parsed");
        assert_eq!(series.len(), 6, "six OPT sizes");
        let k: Vec<f64> = series.iter().map(|s| s.anneal.unwrap_or_else(|| panic!("{}: no anneal", s.name))).collect();
        // A decay to a tenth of the peak takes some tenths of a nat off these curves, never more
        // than their whole fall; each size leaves a different one out, so they differ.
        assert!(k.iter().all(|&k| k > 0.01 && k < 0.5), "{k:?}");
        assert!(k.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-4), "{k:?}");
    }
}
