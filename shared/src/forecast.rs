//! Forecasting one healing run from its own partial log: where the loss is going, when a budget
//! rule will be met, and what is going wrong.
//!
//! With N0, ρ and L0 fixed, the P² law of one run reduces to `L(D) = c + a·D^-β`. The forecast
//! fits that form ([`power`]) to the run's log-binned checkpoints over the last
//! [`WINDOW_DECADES`] decades of tokens (the first minutes after pruning recover the broken
//! function faster than the law's slope; they tell little about the tail), and draws its band
//! from two sources:
//!
//! - **noise**, by a moving-block bootstrap of the fit's residuals (blocks of `⌈n^⅓⌉` consecutive
//!   bins, since consecutive checkpoints of one run are correlated, which an i.i.d. resample
//!   ignores and so draws bands too narrow);
//! - **the form's own error**, by a hindcast: the same fit on the first half of the window (in
//!   `ln D`) predicts the window's end; its log error, scaled by how much farther the forecast
//!   reaches than the hindcast did (in `ln D`), is the spread of a log-normal factor drawn once
//!   per bootstrap curve. A curve the form follows well hindcasts well and keeps a narrow band;
//!   one whose slope keeps changing (a decaying learning rate, a plateau) widens its own band.
//!
//! With a **known learning-rate schedule** ([`schedule`]: given with the log, since no log says
//! what its rate will do) the form follows it: `c + a·(S(D)/S(D_ref))^-β + K·u(D)`, progress in
//! the rate's area `S` and a loss excess `K·u` proportional to the rate `u` (relative to its
//! peak), which a decay anneals away. A cosine or linear decay bends a healing curve down near its
//! end, which no power of D follows and a prefix taken at the peak rate cannot show; the anneal
//! `K` comes from a finished run of the same recipe, or from the log itself once its rate has
//! fallen by [`MIN_ANNEAL_SPAN`] of the peak within the window, and the forecast says which (or
//! that it has neither, and is then likely too high).
//!
//! With a **prior** ([`Prior`]: the P² preset of the run's method at its N0, ρ and L0) the
//! forecast is a blend of two curves over the same window: the free fit above, and the prior's
//! asymptote and exponent with the amplitude (and, when free, the anneal) fitted to the window
//! (the preset says where the curve levels off and how fast it bends; the run says how far above
//! that it is now). Each gets the same hindcast, and they are weighted by the inverse of their
//! squared hindcast errors, each plus [`HINDCAST_TOLERANCE`] squared: a prior that misjudges this
//! run's slope by far loses its weight to the run's own fit, a short or noisy window that the free
//! fit extrapolates badly leans on the prior, and hindcasts that differ by less than the tolerance
//! leave the blend near even (on the study's curves the two err on opposite sides, the free fit of
//! an early window too steep a fall and the preset's curve too shallow, and unshrunk weights lost
//! to an even blend at every cut of the validation). The
//! band's form error is the two-curve mixture's spread: each curve's own error, from its own
//! hindcast, weighted, plus the spread between the curves, so that where they disagree the band
//! says so.
//!
//! The warnings ([`warnings`]) run on the whole log, and a non-finite loss cuts the forecast
//! to the checkpoints before it.

pub mod log;
pub mod power;
pub mod schedule;
pub mod validation;
pub mod warnings;

use crate::bootstrap::percentile_interval;
use crate::budget::{Rule, SLOPE_UNIT_TOKENS};
use crate::law::{Features, Inputs, LawForm, TokensTerm};
use power::{Anneal, Bin, Form, PowerFit};
use schedule::Shape;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Decades of tokens, back from the last checkpoint, that the fit uses.
pub const WINDOW_DECADES: f64 = 2.0;
/// Fewer bins than this in the window, or less than a decade of tokens in the log, and the
/// forecast says it is too early.
pub const MIN_BINS: usize = 5;
/// The least the hindcast may claim for the form's error, relative: a curve fitted perfectly
/// over a short window still extrapolates with some error.
pub const MIN_MODEL_ERROR: f64 = 1e-3;
/// Tokens searched for a rule, beyond the last checkpoint.
pub const MAX_RULE_FACTOR: f64 = 1e9;
/// With a known schedule and no anneal given, the window's learning rate must span this much of
/// its peak for the log to fit the anneal `K` itself.
pub const MIN_ANNEAL_SPAN: f64 = 0.3;
/// The prior's share of a forecast whose window is too short for hindcasts.
pub const PRIOR_WEIGHT: f64 = 0.5;
/// How well a hindcast's error is known (relative): the blend weighs the two curves by the
/// inverse of their squared hindcast errors each plus this squared, so hindcasts that differ by
/// less than about this are no evidence either way and leave the blend near even, while a prior
/// whose hindcast misses by far more than the run's own fit still yields to it.
pub const HINDCAST_TOLERANCE: f64 = 0.02;

/// One checkpoint of a run's log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Obs {
    pub tokens: f64,
    /// May be NaN or infinite: a broken run's log is still a log.
    pub loss: f64,
    /// The optimizer step, when the log has one.
    pub step: Option<f64>,
}

/// The learning rate as logged, for saying when the schedule undermines the forecast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `(tokens, learning rate)` as logged.
    pub lr: Vec<(f64, f64)>,
    /// The tokens at which the schedule ends (`max_steps` × tokens per step), when known.
    pub total_tokens: Option<f64>,
}

/// A law's curve for one run from its model inputs alone: the P² preset of the run's method at
/// its N0, ρ and L0.
#[derive(Debug, Clone, PartialEq)]
pub struct Prior {
    /// Where it comes from, in words (a preset id; "refitted without the curve's parent").
    pub source: String,
    pub law: LawForm,
    /// Coefficients in the law's order.
    pub params: Vec<f64>,
    /// N0, ρ and L0 of the run (`tokens` is set per prediction).
    pub inputs: Inputs,
    /// Why the preset's coefficients cannot be trusted one by one, when they cannot (its
    /// degeneracy line): said with every forecast that leans on it.
    pub caveat: Option<String>,
}

impl Prior {
    /// A preset at a run's inputs, checked against the form's domain (N0, ρ and, where the form
    /// needs it, L0).
    pub fn from_preset(preset: &crate::presets::Preset, inputs: Inputs) -> Result<Self, ForecastError> {
        let law = preset.report.law;
        law.check(&Inputs { tokens: 1.0, ..inputs }, false).map_err(|e| ForecastError::Invalid { field: e.field, message: format!("{} (for the prior {})", e.message, preset.id) })?;
        let params = preset.report.coefficients().map_err(|e| ForecastError::Invalid { field: "prior", message: format!("preset {}: {e}", preset.id) })?;
        Ok(Self { source: preset.id.clone(), law, params, inputs, caveat: preset.report.degeneracy() })
    }

    pub fn value(&self, tokens: f64) -> f64 {
        self.law.law().value(&self.params, &Features::new(&Inputs { tokens, ..self.inputs }))
    }

    /// `asymptote + coef·D^-β` at the run's inputs, when the form has that shape there.
    pub fn term(&self) -> Option<TokensTerm> {
        let t = self.law.law().tokens_term(&self.params, &Features::new(&Inputs { tokens: 1.0, ..self.inputs }))?;
        (t.asymptote.is_finite() && t.coef.is_finite() && t.beta.is_finite() && t.beta > 0.0).then_some(t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForecastOptions {
    /// Tokens to predict the loss at (default: 2×, 10× and 100× the last checkpoint, and the
    /// schedule's end when the log names it).
    pub at: Vec<f64>,
    pub rule: Option<Rule>,
    /// Band level (0.9: a 90 % band).
    pub level: f64,
    pub resamples: usize,
    pub seed: u64,
    pub schedule: Option<Schedule>,
    /// The preset's curve for this run, blended in by hindcast (see the module's notes).
    pub prior: Option<Prior>,
    /// The run's learning-rate schedule, past and ahead, when known: the forecast then follows it
    /// ([`schedule`]).
    pub shape: Option<Shape>,
    /// The anneal `K` (nats: the loss's drop from the peak rate to zero), from a finished run of
    /// the same recipe; without it the log fits `K` when its rate has moved enough.
    pub anneal: Option<f64>,
}

impl Default for ForecastOptions {
    fn default() -> Self {
        Self { at: Vec::new(), rule: None, level: 0.9, resamples: 400, seed: 0x5eed, schedule: None, prior: None, shape: None, anneal: None }
    }
}

/// What a warning is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WarningKind {
    Diverging,
    Nan,
    Spike,
    Overfitting,
    TooEarly,
}

impl WarningKind {
    /// The name JSON carries (`too_early`, ...).
    pub fn name(self) -> &'static str {
        match self {
            WarningKind::Diverging => "diverging",
            WarningKind::Nan => "nan",
            WarningKind::Spike => "spike",
            WarningKind::Overfitting => "overfitting",
            WarningKind::TooEarly => "too_early",
        }
    }
}

/// The median of `v` (reordered), NaN when empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The anneal `K` of a finished run along its schedule: its whole curve past the warm-up fitted
/// with `K` free (`None` when too few checkpoints remain or the fit fails).
pub fn anneal_of(points: &[(f64, f64)], shape: &Shape) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points.iter().copied().filter(|&(d, l)| d > shape.warmup && l.is_finite()).collect();
    power::fit_form(&power::bin(&pts), &Form { schedule: Some(*shape), anneal: Some(Anneal::Free) }).map(|f| f.anneal)
}

/// The anneal for a run from finished runs of the same recipe (each `(points, schedule)`): the
/// median of [`anneal_of`] over those whose schedule is `shape`, with how many gave one.
pub fn family_anneal<'a>(finished: impl IntoIterator<Item = (&'a [(f64, f64)], &'a Shape)>, shape: &Shape) -> Option<(f64, usize)> {
    let mut k: Vec<f64> = finished.into_iter().filter(|(_, s)| *s == shape).filter_map(|(p, s)| anneal_of(p, s)).collect();
    (!k.is_empty()).then(|| (median(&mut k), k.len()))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Warning {
    pub kind: WarningKind,
    /// The step it starts at, when the log has steps.
    pub step: Option<f64>,
    /// The tokens it starts at.
    pub tokens: f64,
    pub message: String,
}

/// A predicted loss with its band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastPoint {
    pub tokens: f64,
    pub loss: f64,
    pub lo: f64,
    pub hi: f64,
}

/// When the rule is met.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleForecast {
    pub rule: String,
    /// Tokens at which the fitted curve meets the rule (`None`: it never does, though part of the
    /// band does).
    pub tokens: Option<f64>,
    pub lo: Option<f64>,
    /// `None`: some of the band never meets the rule.
    pub hi: Option<f64>,
    /// The run's tokens so far over `tokens` (1 or more: already met).
    pub progress: Option<f64>,
}

/// The fitted curve and how it was fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForecastFit {
    pub form: String,
    #[serde(flatten)]
    pub curve: PowerFit,
    /// Band of the asymptote `c` at the forecast's level.
    pub asymptote: [f64; 2],
    /// Checkpoints used (finite, tokens > 0), the bins they make and the bins fitted.
    pub checkpoints: usize,
    pub bins: usize,
    pub window_bins: usize,
    /// Token range of the bins fitted.
    pub window: [f64; 2],
    /// The hindcast's log error (relative), when the window allowed one.
    pub hindcast_error: Option<f64>,
    pub level: f64,
    pub resamples: usize,
    pub block: usize,
    /// The prior's part, when the forecast has one: `curve` above is then the free fit alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior: Option<PriorFit>,
}

impl ForecastFit {
    fn mix(&self) -> Mix {
        Mix { fit: self.curve, prior: self.prior.as_ref().map(|p| (p.curve, p.weight)) }
    }

    /// The forecast's central curve at `d` tokens: the free fit, or its blend with the prior's.
    pub fn value(&self, d: f64) -> f64 {
        self.mix().value(d)
    }

    /// The central curve's asymptote.
    pub fn asymptote_value(&self) -> f64 {
        self.mix().asymptote()
    }

    /// Tokens at which the central curve meets `rule`, or `None` if it never does.
    pub fn tokens_for(&self, rule: Rule) -> Option<f64> {
        self.mix().tokens_for(rule)
    }
}

/// How the prior entered a forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorFit {
    pub source: String,
    /// The prior's asymptote and exponent, with the amplitude fitted to the window.
    pub curve: PowerFit,
    /// Its share of the forecast, 0 to 1 (the free fit has the rest).
    pub weight: f64,
    /// Its hindcast's log error (relative), when the window allowed one.
    pub hindcast_error: Option<f64>,
    /// The preset alone (nothing of the log) at the last checkpoint.
    pub preset_at_last: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
}

impl PriorFit {
    /// One line for a reader: the prior's curve, its share, its hindcast and what the preset alone
    /// says at the last checkpoint (the CLI and the Forecast page print it).
    pub fn summary(&self) -> String {
        let c = &self.curve;
        format!(
            "{}: L = {:.4} + {:.4}·(D/{:.3e})^-{:.3}, {:.0} % of the forecast{} (the preset alone says {:.4} now)",
            self.source,
            c.c,
            c.a,
            c.d_ref,
            c.beta,
            100.0 * self.weight,
            self.hindcast_error.map_or(String::new(), |h| format!(", hindcast error {:.2} %", 100.0 * h)),
            self.preset_at_last
        )
    }
}

/// The forecast's curve: the free fit, or its blend with the prior-anchored one (`weight` the
/// prior's share). Linear in the two, so values, slopes and asymptotes blend alike.
#[derive(Debug, Clone, Copy)]
struct Mix {
    fit: PowerFit,
    prior: Option<(PowerFit, f64)>,
}

impl Mix {
    fn blend(&self, f: impl Fn(&PowerFit) -> f64) -> f64 {
        match &self.prior {
            Some((p, w)) => (1.0 - w) * f(&self.fit) + w * f(p),
            None => f(&self.fit),
        }
    }

    fn value(&self, d: f64) -> f64 {
        self.blend(|f| f.value(d))
    }

    fn asymptote(&self) -> f64 {
        self.blend(PowerFit::limit)
    }

    /// Tokens at which the curve meets `rule`: the free fit's closed form, or on a blend a search
    /// over tokens around the window (every rule's quantity falls monotonically along a blend of
    /// two falling power curves).
    fn tokens_for(&self, rule: Rule) -> Option<f64> {
        if self.prior.is_none() {
            return self.fit.tokens_for(rule);
        }
        let c = self.asymptote();
        let (from, top) = (self.fit.d_ref / MAX_RULE_FACTOR, self.fit.d_ref * MAX_RULE_FACTOR);
        match rule {
            Rule::Target(l) => (l > c).then(|| first_crossing_to(from, top, |d| self.value(d) - l)).flatten(),
            Rule::Gap(eps) => first_crossing_to(from, top, |d| self.value(d) - c - eps),
            Rule::Slope(tau) => first_crossing_to(from, top, |d| -self.blend(|f| f.slope(d)) - tau / SLOPE_UNIT_TOKENS),
        }
    }
}

/// A run's forecast: `--json` prints this.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Forecast {
    pub points: Vec<ForecastPoint>,
    pub rule: Option<RuleForecast>,
    pub warnings: Vec<Warning>,
    /// What the reader should know that is not a fault (the schedule, the rule's band).
    pub notes: Vec<String>,
    /// The last finite checkpoint.
    pub last: ForecastPoint,
    pub last_step: Option<f64>,
    pub fit: ForecastFit,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("{0}")]
    TooFew(String),
    #[error("checkpoint {index} ({tokens:e} tokens) comes after {previous:e}: tokens must increase along the log")]
    NotAscending { index: usize, tokens: f64, previous: f64 },
    #[error("`{rule}` can never be met: the loss levels off at {asymptote:.4} (band {lo:.4} to {hi:.4}), above the target")]
    Unreachable { rule: String, asymptote: f64, lo: f64, hi: f64 },
    #[error("field `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

/// Standard normal draw (Box–Muller).
fn normal(rng: &mut impl Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// The fit window: bins within [`WINDOW_DECADES`] of the last and from `not_before` tokens on, or
/// the last [`MIN_BINS`] when that leaves too few.
fn window(bins: &[Bin], not_before: f64) -> &[Bin] {
    let Some(last) = bins.last() else { return bins };
    let from = (last.tokens / 10f64.powf(WINDOW_DECADES)).max(not_before);
    let start = bins.iter().position(|b| b.tokens >= from).unwrap_or(bins.len());
    if bins.len() - start >= MIN_BINS.min(bins.len()) { &bins[start..] } else { &bins[bins.len().saturating_sub(MIN_BINS)..] }
}

/// Relative log error of a curve fitted by `fit` on the first half (in `ln D`) of `w` and asked
/// for `w`'s end (against `full`, the free fit of the whole window), and the last tokens that half
/// fitted; `None` when the half is too short.
fn hindcast(w: &[Bin], full: &PowerFit, fit: impl Fn(&[Bin]) -> Option<PowerFit>) -> Option<(f64, f64)> {
    if w.len() < 6 {
        return None;
    }
    let (d0, d1) = (w[0].tokens, w[w.len() - 1].tokens);
    let split = (d0 * d1).sqrt();
    let half: Vec<Bin> = w.iter().copied().filter(|b| b.tokens <= split).collect();
    if half.len() < 4 {
        return None;
    }
    let h = fit(&half)?;
    let e = (h.value(d1) / full.value(d1)).ln();
    Some((e.abs(), half[half.len() - 1].tokens))
}

/// The model-error spread (log scale) at `d` tokens.
fn model_sigma(d: f64, d_last: f64, hc: Option<(f64, f64)>, floor: f64) -> f64 {
    if d <= d_last {
        return 0.0;
    }
    let reach = (d / d_last).ln();
    match hc {
        Some((e, d_half)) => e.max(floor) * reach / (d_last / d_half).ln().max(1e-9),
        None => floor * reach / std::f64::consts::LN_10,
    }
}

/// Forecasts `eval` (the loss forecast) with `train` (the training loss, when the log has it
/// beside a held-out loss) for the over-fitting check.
pub fn forecast(eval: &[Obs], train: Option<&[Obs]>, o: &ForecastOptions) -> Result<Forecast, ForecastError> {
    if !(o.level > 0.0 && o.level < 1.0) {
        return Err(ForecastError::Invalid { field: "level", message: format!("must be between 0 and 1, got {}", o.level) });
    }
    if o.resamples < 50 {
        return Err(ForecastError::Invalid { field: "resamples", message: format!("must be at least 50, got {}", o.resamples) });
    }
    if let Some(&t) = o.at.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(ForecastError::Invalid { field: "at", message: format!("token counts must be positive, got {t}") });
    }
    for i in 1..eval.len() {
        if eval[i].tokens < eval[i - 1].tokens || !eval[i].tokens.is_finite() {
            return Err(ForecastError::NotAscending { index: i, tokens: eval[i].tokens, previous: eval[i - 1].tokens });
        }
    }
    let mut warnings = Vec::new();
    let cut = warnings::first_non_finite(eval).unwrap_or(eval.len());
    warnings.extend(warnings::nan(eval));
    let usable: Vec<(f64, f64)> = eval[..cut].iter().filter(|p| p.tokens > 0.0).map(|p| (p.tokens, p.loss)).collect();
    if usable.len() < 3 {
        return Err(ForecastError::TooFew(format!(
            "{} usable checkpoint(s) (finite loss, tokens > 0){}: a forecast needs at least 3, and {MIN_BINS} over a decade of tokens to be worth reading",
            usable.len(),
            if cut < eval.len() { " before the first non-finite loss" } else { "" }
        )));
    }
    let bins = power::bin(&usable);
    if let Some(s) = &o.shape {
        s.check().map_err(|message| ForecastError::Invalid { field: "schedule", message })?;
    }
    // The schedule: given, or read from the log's learning rate and where it ends.
    let inferred = o.shape.is_none().then(|| o.schedule.as_ref().and_then(|s| schedule::infer(&s.lr, s.total_tokens?))).flatten();
    let shape = o.shape.or(inferred);
    if o.anneal.is_some() && shape.is_none() {
        return Err(ForecastError::Invalid {
            field: "anneal",
            message: "the anneal is the loss's drop along a schedule: give the schedule (the log's learning rate does not tell it)".into(),
        });
    }
    if let Some(k) = o.anneal.filter(|k| !(k.is_finite() && *k >= 0.0)) {
        return Err(ForecastError::Invalid { field: "anneal", message: format!("the anneal is a loss drop in nats, 0 or more, got {k}") });
    }
    // Along a schedule the window starts after the warm-up, whose rising rate is a regime of its
    // own (the fit would read its fast early fall as an anneal).
    let w = window(&bins, shape.map_or(0.0, |s| s.warmup));
    // The form: with a schedule, its anneal given, fitted where the window's rate has moved
    // enough to show it, or left out (said below).
    let rate_span = shape.map_or(0.0, |s| {
        let (lo, hi) = w.iter().map(|b| s.rate(b.tokens)).fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(r), hi.max(r)));
        hi - lo
    });
    let form = Form {
        schedule: shape,
        anneal: shape.and(match o.anneal {
            Some(k) => Some(Anneal::Fixed(k)),
            None if rate_span >= MIN_ANNEAL_SPAN => Some(Anneal::Free),
            None => None,
        }),
    };
    let fit = power::fit_form(w, &form).ok_or_else(|| ForecastError::TooFew(format!("{} bins of checkpoints: too few distinct token counts to fit", bins.len())))?;
    let last_obs = eval[..cut].iter().rev().find(|p| p.tokens > 0.0).copied().expect("usable is not empty");
    let d_last = last_obs.tokens;
    let span = d_last / usable[0].0;
    if bins.len() < MIN_BINS || span < 10.0 {
        warnings.push(Warning {
            kind: WarningKind::TooEarly,
            step: last_obs.step,
            tokens: d_last,
            message: format!(
                "too early for a forecast worth reading: {} bin(s) of checkpoints over a factor {:.1} of tokens; it needs {MIN_BINS} bins over at least a decade (log until about {:.3e} tokens)",
                bins.len(),
                span,
                usable[0].0 * 10.0
            ),
        });
    }
    warnings.extend(warnings::spikes(&eval[..cut]));
    let binned: Vec<(f64, f64)> = bins.iter().map(|b| (b.tokens, b.loss)).collect();
    warnings.extend(warnings::diverging(&eval[..cut], &binned));
    if let Some(t) = train {
        warnings.extend(warnings::overfitting(&eval[..cut], t));
    }

    let mut at = o.at.clone();
    if at.is_empty() {
        at = vec![2.0 * d_last, 10.0 * d_last, 100.0 * d_last];
        if let Some(t) = shape.map(|s| s.total).or(o.schedule.as_ref().and_then(|s| s.total_tokens)).filter(|t| *t > d_last) {
            at.push(t);
        }
        at.sort_by(f64::total_cmp);
    }

    let hc_free = hindcast(w, &fit, |b| power::fit_form(b, &form));
    let floor = MIN_MODEL_ERROR.max(fit.rmse / fit.value(d_last));
    let mut notes = Vec::new();
    // The prior: its asymptote and exponent, the amplitude fitted to the window, its share by
    // the two hindcasts shrunk toward even (see HINDCAST_TOLERANCE), or even when the window is
    // too short for them.
    let term = o.prior.as_ref().and_then(Prior::term);
    if let (Some(p), None) = (&o.prior, &term) {
        notes.push(format!("the prior {} has no falling token term at this run's inputs: the forecast is the run's own fit alone", p.source));
    }
    let anchor = |bins: &[Bin]| term.and_then(|t| power::fit_amplitude(bins, t.asymptote, t.beta, &form));
    let anchored = anchor(w);
    let hc_prior = anchored.and_then(|_| hindcast(w, &fit, anchor));
    let weight = match (anchored, hc_free, hc_prior) {
        (None, ..) => 0.0,
        (Some(_), Some((ef, _)), Some((ea, _))) => {
            let (ef, ea, t) = (ef.max(floor), ea.max(floor), HINDCAST_TOLERANCE);
            (ef * ef + t * t) / (ef * ef + ea * ea + 2.0 * t * t)
        }
        (Some(_), ..) => PRIOR_WEIGHT,
    };
    let mix = Mix { fit, prior: anchored.map(|a| (a, weight)) };
    // The form's error at `d` (log scale): each curve's own, grown from its hindcast, and on a
    // blend the spread of the two-curve mixture, `Σ w σ² + w (1 - w) Δ²` with `Δ` the two curves'
    // log distance: where they disagree, the truth is not known better than that.
    let sigma = |d: f64| match anchored {
        None => model_sigma(d, d_last, hc_free, floor),
        Some(a) => {
            let (sf, sa) = (model_sigma(d, d_last, hc_free, floor), model_sigma(d, d_last, hc_prior, floor));
            let gap = if d > d_last { (fit.value(d) / a.value(d)).ln() } else { 0.0 };
            ((1.0 - weight) * sf * sf + weight * sa * sa + weight * (1.0 - weight) * gap * gap).sqrt()
        }
    };
    let resid: Vec<f64> = w.iter().map(|b| b.loss - fit.value(b.tokens)).collect();
    let n = w.len();
    let block = (n as f64).cbrt().ceil() as usize;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(o.seed);
    let mut preds: Vec<Vec<f64>> = vec![Vec::with_capacity(o.resamples); at.len()];
    let mut asym = Vec::with_capacity(o.resamples);
    let mut rule_draws: Vec<f64> = Vec::with_capacity(o.resamples);
    for _ in 0..o.resamples {
        let mut r = Vec::with_capacity(n);
        while r.len() < n {
            let s = rng.random_range(0..=n - block.min(n));
            r.extend_from_slice(&resid[s..(s + block).min(n)]);
        }
        let star: Vec<Bin> = w.iter().zip(&r).map(|(b, e)| Bin { loss: fit.value(b.tokens) + e, ..*b }).collect();
        let z = normal(&mut rng);
        let Some(f) = power::fit_form(&star, &form) else { continue };
        let f = Mix { fit: f, prior: mix.prior.map(|(_, w)| (anchor(&star).unwrap_or(f), w)) };
        asym.push(f.asymptote());
        for (k, &d) in at.iter().enumerate() {
            preds[k].push(f.value(d) * (sigma(d) * z).exp());
        }
        if let Some(rule) = o.rule {
            // A target and a gap depend on the level, so the form's error moves them too; a
            // slope is the bootstrap curve's own.
            let level_at = |d: f64| f.value(d) * (sigma(d) * z).exp();
            let t = match rule {
                Rule::Target(l) => first_crossing(d_last, |d| level_at(d) - l),
                Rule::Gap(eps) => first_crossing(d_last, |d| level_at(d) - f.asymptote() - eps),
                Rule::Slope(_) => f.tokens_for(rule),
            };
            rule_draws.push(t.unwrap_or(f64::INFINITY));
        }
    }
    let level = o.level;
    let c = mix.asymptote();
    let asymptote = percentile_interval(&asym, level).unwrap_or([c, c]);
    let points: Vec<ForecastPoint> = at
        .iter()
        .zip(&preds)
        .map(|(&d, p)| {
            let v = mix.value(d);
            let [lo, hi] = percentile_interval(p, level).unwrap_or([v, v]);
            ForecastPoint { tokens: d, loss: v, lo: lo.min(v), hi: hi.max(v) }
        })
        .collect();

    let rule = match o.rule {
        None => None,
        Some(rule) => {
            if let Rule::Target(l) = rule {
                if l <= asymptote[0] {
                    return Err(ForecastError::Unreachable { rule: rule.to_string(), asymptote: c, lo: asymptote[0], hi: asymptote[1] });
                }
            }
            let tokens = match rule {
                Rule::Target(l) if l >= last_obs.loss => Some(d_last.min(first_observed(&usable, l))),
                _ => mix.tokens_for(rule),
            };
            let mut finite: Vec<f64> = rule_draws.iter().copied().filter(|t| t.is_finite()).collect();
            let never = rule_draws.len() - finite.len();
            let [lo, hi] = crate::bootstrap::percentile_interval_in_place(&mut finite, level).map_or([None, None], |[a, b]| [Some(a), Some(b)]);
            // When more of the draws than the band's upper tail never meet the rule, the upper end is open.
            let open = (never as f64) > (1.0 - level) / 2.0 * rule_draws.len() as f64;
            if open {
                notes.push(format!("{never} of {} bootstrap curves never meet `{rule}`: the band's upper end is open", rule_draws.len()));
            }
            if matches!(rule, Rule::Slope(_)) {
                notes.push(format!("the band of `{rule}` is the bootstrap's (noise and the window's data); the form's own error moves a level, not a slope"));
            }
            Some(RuleForecast { rule: rule.to_string(), tokens, lo: lo.map(|v| v.min(tokens.unwrap_or(v))), hi: if open { None } else { hi }, progress: tokens.map(|t| d_last / t) })
        }
    };
    match (shape, form.anneal) {
        (None, _) => notes.extend(schedule_notes(o.schedule.as_ref(), d_last)),
        (Some(s), anneal) => notes.push(shape_note(&s, inferred.is_some(), anneal, fit.anneal, rate_span, d_last, at.iter().copied().fold(d_last, f64::max))),
    }
    let prior = match (&o.prior, mix.prior) {
        (Some(p), Some((curve, weight))) => {
            notes.push(format!(
                "the forecast blends this run's own fit ({:.0} %) with the prior {} ({:.0} %: its asymptote {:.4} and exponent {:.3}, the amplitude fitted to the log), weighted by their hindcast errors{}",
                100.0 * (1.0 - weight),
                p.source,
                100.0 * weight,
                curve.c,
                curve.beta,
                match (hc_free, hc_prior) {
                    (Some((ef, _)), Some((ea, _))) => format!(" ({:.2} % and {:.2} %)", 100.0 * ef, 100.0 * ea),
                    _ => ", half each: the window is too short for a hindcast".into(),
                }
            ));
            if let Some(cv) = &p.caveat {
                notes.push(format!("the prior {}: {cv}", p.source));
            }
            Some(PriorFit { source: p.source.clone(), curve, weight, hindcast_error: hc_prior.map(|h| h.0), preset_at_last: p.value(d_last), caveat: p.caveat.clone() })
        }
        _ => None,
    };
    Ok(Forecast {
        points,
        rule,
        warnings,
        notes,
        last: ForecastPoint { tokens: d_last, loss: last_obs.loss, lo: last_obs.loss, hi: last_obs.loss },
        last_step: last_obs.step,
        fit: ForecastFit {
            form: format!(
                "{}{}",
                if shape.is_some() { "c + a·(S(D)/S(d_ref))^-beta + K·u(D) along the schedule" } else { "c + a·(D/d_ref)^-beta" },
                if prior.is_some() { ", blended with the prior's curve" } else { "" }
            ),
            curve: fit,
            asymptote,
            checkpoints: usable.len(),
            bins: bins.len(),
            window_bins: w.len(),
            window: [w[0].tokens, w[w.len() - 1].tokens],
            hindcast_error: hc_free.map(|h| h.0),
            level,
            resamples: o.resamples,
            block,
            prior,
        },
    })
}

/// The first observed tokens at which the loss was at or below `l`.
fn first_observed(points: &[(f64, f64)], l: f64) -> f64 {
    points.iter().find(|p| p.1 <= l).map_or(f64::INFINITY, |p| p.0)
}

/// The first `d >= from` where `g` turns non-positive, up to `from` × [`MAX_RULE_FACTOR`]: a scan
/// over log-spaced tokens, then bisection.
fn first_crossing(from: f64, g: impl Fn(f64) -> f64) -> Option<f64> {
    first_crossing_to(from, from * MAX_RULE_FACTOR, g)
}

/// [`first_crossing`] up to `top`, scanned at 27 steps a decade.
fn first_crossing_to(from: f64, top: f64, g: impl Fn(f64) -> f64) -> Option<f64> {
    if g(from) <= 0.0 {
        return Some(from);
    }
    let steps = ((top / from).log10() * 27.0).ceil().max(1.0) as usize;
    let at = |i: usize| from * (top / from).powf(i as f64 / steps as f64);
    let i = (1..=steps).find(|&i| g(at(i)) <= 0.0)?;
    let (mut lo, mut hi) = (at(i - 1).ln(), at(i).ln());
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if g(mid.exp()) <= 0.0 { hi = mid } else { lo = mid }
    }
    Some(hi.exp())
}

/// What the forecast made of a known schedule: its anneal, given, fitted or missing.
fn shape_note(s: &Shape, read_from_log: bool, anneal: Option<Anneal>, k: f64, span: f64, d_last: f64, d_far: f64) -> String {
    let (now, ahead) = (s.rate(d_last), s.rate(d_far));
    let from = if read_from_log { "read from the log's learning rate and its end, " } else { "" };
    let follows = format!("the forecast follows the schedule {from}{s} (rate now {:.0} % of its peak, {:.0} % at {d_far:.3e} tokens)", 100.0 * now, 100.0 * ahead);
    match anneal {
        Some(Anneal::Fixed(_)) => format!("{follows}, with the anneal K = {k:.4} given"),
        Some(Anneal::Free) => format!("{follows}, with the anneal K = {k:.4} fitted from the log (its rate spans {:.0} % of the peak in the window)", 100.0 * span),
        None if now - ahead > 0.05 => format!(
            "{follows}; the loss's drop as the rate decays (the anneal K) is not known from this log, whose rate spans only {:.0} % of the peak in the window: the forecast leaves it out and is likely too high once the rate falls (give the anneal of a finished run of the same recipe: `fit.anneal` of its forecast)",
            100.0 * span
        ),
        None => follows,
    }
}

/// What the logged learning rate says about the forecast.
pub fn schedule_notes(s: Option<&Schedule>, d_last: f64) -> Vec<String> {
    let mut out = Vec::new();
    let Some(s) = s else { return out };
    let lr: Vec<(f64, f64)> = s.lr.iter().copied().filter(|(t, v)| t.is_finite() && v.is_finite() && *v >= 0.0).collect();
    let Some(&(t_now, now)) = lr.iter().rfind(|p| p.0 <= d_last) else { return out };
    let peak = lr.iter().map(|p| p.1).fold(0.0, f64::max);
    if peak > 0.0 && now < 0.9 * peak {
        out.push(format!(
            "the learning rate has decayed to {:.0} % of its peak ({now:.3e} at {t_now:.3e} tokens): a decaying schedule bends the loss down toward its end, faster than the fitted form follows, so the forecast there is likely too high",
            100.0 * now / peak
        ));
    } else if let Some(total) = s.total_tokens.filter(|t| *t > d_last) {
        out.push(format!(
            "the learning rate is still {:.0} % of its peak and the schedule runs to {total:.3e} tokens: if it decays (cosine, linear), the loss will bend down before then, below this forecast",
            100.0 * now / peak.max(f64::MIN_POSITIVE)
        ));
    }
    out
}

#[cfg(test)]
mod tests;
