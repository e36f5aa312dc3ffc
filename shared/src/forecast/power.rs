//! The per-curve form `L(D) = c + a·(D/D_ref)^-β` (the P² law with N0, ρ and L0 fixed), fitted by
//! least squares profiled over β: for each β the best `c >= 0`, `a >= 0` are a two-variable
//! linear least squares with bounds, so the search is one-dimensional (a log-spaced grid, then a
//! golden-section polish between the best grid point's neighbours) and has no starting point to
//! get wrong.
//!
//! With a known learning-rate schedule ([`Form`], [`super::schedule`]) the same search fits
//! `c + a·(S(D)/S(D_ref))^-β + K·u(D)`: for each β a bounded linear least squares in `c`, `a`
//! and, when it is fitted, `K`.
//!
//! Checkpoints are first averaged into bins of equal width in `ln D` ([`bin`]), so that a
//! per-step training log (Pythia logs 143 000 steps) neither swamps the early decades nor costs a
//! bootstrap its time, and every decade of tokens weighs the same.

use super::schedule::Shape;
use crate::budget::{Rule, SLOPE_UNIT_TOKENS};
use serde::{Deserialize, Serialize};

/// Bins per decade of tokens.
pub const BINS_PER_DECADE: f64 = 16.0;

/// The β search range: slower than any healing or pretraining curve on record at one end, a
/// curve that has all but stopped moving at the other.
pub const BETA_RANGE: [f64; 2] = [0.005, 3.0];

/// One averaged checkpoint: geometric-mean tokens and mean loss of a bin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bin {
    pub tokens: f64,
    pub loss: f64,
    /// How many checkpoints it averages.
    pub count: usize,
}

/// Averages `(tokens, loss)` pairs (tokens > 0, ascending) into bins of width
/// `ln 10 / BINS_PER_DECADE` in `ln D`, anchored at the last checkpoint so that it keeps a bin
/// of its own.
pub fn bin(points: &[(f64, f64)]) -> Vec<Bin> {
    let Some(&(last, _)) = points.last() else { return Vec::new() };
    let width = std::f64::consts::LN_10 / BINS_PER_DECADE;
    let mut bins: Vec<(i64, f64, f64, usize)> = Vec::new();
    for &(d, l) in points {
        // Bin 0 holds (last·e^-width, last]; bin k the k-th width below it.
        let k = ((last / d).ln() / width).floor() as i64;
        match bins.last_mut() {
            Some(b) if b.0 == k => {
                b.1 += d.ln();
                b.2 += l;
                b.3 += 1;
            }
            _ => bins.push((k, d.ln(), l, 1)),
        }
    }
    bins.into_iter().map(|(_, ln_d, l, n)| Bin { tokens: (ln_d / n as f64).exp(), loss: l / n as f64, count: n }).collect()
}

/// How the fit treats the learning rate: as constant (no schedule: progress in tokens), or as a
/// known [`Shape`] (progress in the rate's area, and a loss excess `K·u(D)` proportional to the
/// rate, `K` given or fitted).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Form {
    pub schedule: Option<Shape>,
    /// With a schedule: `K` given (`Some(Fixed)`), fitted (`Some(Free)`), or left out (`None`).
    pub anneal: Option<Anneal>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Anneal {
    Fixed(f64),
    Free,
}

impl Form {
    pub const PLAIN: Form = Form { schedule: None, anneal: None };

    fn x(&self, d: f64) -> f64 {
        self.schedule.map_or(d, |s| s.area(d))
    }

    fn u(&self, d: f64) -> f64 {
        self.schedule.map_or(0.0, |s| s.rate(d))
    }

    fn fixed_anneal(&self) -> f64 {
        match (self.schedule, self.anneal) {
            (Some(_), Some(Anneal::Fixed(k))) => k,
            _ => 0.0,
        }
    }

    fn free_anneal(&self) -> bool {
        self.schedule.is_some() && self.anneal == Some(Anneal::Free)
    }
}

/// A fitted `c + a·(S(D)/S(d_ref))^-β + K·u(D)`: with no schedule `S(D) = D` and `K = 0`, the
/// plain `c + a·(D/d_ref)^-β`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PowerFit {
    /// The asymptote at a rate of zero (with no schedule, the loss as `D → ∞`).
    pub c: f64,
    /// The reducible loss at `D = d_ref`.
    pub a: f64,
    pub beta: f64,
    /// Reference tokens (the last checkpoint fitted), which keeps `a` well scaled.
    pub d_ref: f64,
    /// Root mean square residual over the bins fitted, in loss units.
    pub rmse: f64,
    /// `K`: the loss's excess at the peak rate, which a decay to zero anneals away (nats; 0
    /// without a schedule).
    #[serde(default)]
    pub anneal: f64,
    /// The learning-rate schedule the curve follows, when it is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Shape>,
}

impl PowerFit {
    fn form(&self) -> Form {
        Form { schedule: self.schedule, anneal: None }
    }

    pub fn value(&self, d: f64) -> f64 {
        let f = self.form();
        self.c + self.a * (f.x(d) / f.x(self.d_ref)).powf(-self.beta) + self.anneal * f.u(d)
    }

    /// The loss as `D → ∞`: the asymptote plus what is left of the excess at the schedule's last
    /// rate.
    pub fn limit(&self) -> f64 {
        self.c + self.anneal * self.schedule.map_or(0.0, |s| s.end_rate())
    }

    /// `dL/dD` at `d`.
    pub fn slope(&self, d: f64) -> f64 {
        let f = self.form();
        let (x, dx) = (f.x(d), self.schedule.map_or(1.0, |s| s.rate(d)));
        -self.a * self.beta / x * dx * (x / f.x(self.d_ref)).powf(-self.beta) + self.anneal * self.schedule.map_or(0.0, |s| s.rate_slope(d))
    }

    /// Tokens at which the reducible part `a·(D/d_ref)^-β` equals `gap`; `None` if it never does.
    pub fn tokens_for_gap(&self, gap: f64) -> Option<f64> {
        if self.schedule.is_some() {
            return self.tokens_for(Rule::Gap(gap));
        }
        (self.a > 0.0 && gap > 0.0).then(|| self.d_ref * (self.a / gap).powf(1.0 / self.beta)).filter(|d| d.is_finite())
    }

    /// Tokens at which the curve meets `rule` (closed form without a schedule, a search along
    /// the schedule with one), or `None` if it never does.
    pub fn tokens_for(&self, rule: Rule) -> Option<f64> {
        if self.schedule.is_some() {
            let (from, top) = (self.d_ref / super::MAX_RULE_FACTOR, self.d_ref * super::MAX_RULE_FACTOR);
            let limit = self.limit();
            return match rule {
                Rule::Gap(eps) => super::first_crossing_to(from, top, |d| self.value(d) - limit - eps),
                Rule::Slope(tau) => super::first_crossing_to(from, top, |d| -self.slope(d) - tau / SLOPE_UNIT_TOKENS),
                Rule::Target(l) => (l > limit).then(|| super::first_crossing_to(from, top, |d| self.value(d) - l)).flatten(),
            };
        }
        match rule {
            Rule::Gap(eps) => self.tokens_for_gap(eps),
            Rule::Slope(tau) => self.tokens_for_slope(tau / SLOPE_UNIT_TOKENS),
            Rule::Target(l) => (l > self.c).then(|| self.tokens_for_gap(l - self.c)).flatten(),
        }
    }

    /// Tokens at which the loss falls slower than `rate` per token (`rate > 0`).
    pub fn tokens_for_slope(&self, rate: f64) -> Option<f64> {
        if self.schedule.is_some() {
            return self.tokens_for(Rule::Slope(rate * SLOPE_UNIT_TOKENS));
        }
        // a β / d_ref · (D/d_ref)^-(β+1) = rate
        (self.a > 0.0 && rate > 0.0)
            .then(|| self.d_ref * (self.a * self.beta / (self.d_ref * rate)).powf(1.0 / (self.beta + 1.0)))
            .filter(|d| d.is_finite())
    }
}

/// Least squares `y ≈ Σ θ_j col_j` with every `θ_j >= 0`, for up to 3 columns: the best feasible
/// solution over every subset of free columns (a convex problem's optimum lies on one face), by
/// the normal equations. Returns `θ` (0 for columns left out) and the sum of squared residuals.
fn nonneg_lsq(cols: &[&[f64]], y: &[f64]) -> (Vec<f64>, f64) {
    let k = cols.len();
    let ssr = |theta: &[f64]| -> f64 { (0..y.len()).map(|i| (y[i] - (0..k).map(|j| theta[j] * cols[j][i]).sum::<f64>()).powi(2)).sum() };
    let mut best = (vec![0.0; k], y.iter().map(|v| v * v).sum::<f64>());
    for mask in 1u32..(1 << k) {
        let idx: Vec<usize> = (0..k).filter(|j| mask & (1 << j) != 0).collect();
        let m = idx.len();
        // Normal equations G θ = b, by Gaussian elimination with partial pivoting.
        let mut g = vec![vec![0.0; m + 1]; m];
        for (r, &jr) in idx.iter().enumerate() {
            for (c, &jc) in idx.iter().enumerate() {
                g[r][c] = (0..y.len()).map(|i| cols[jr][i] * cols[jc][i]).sum();
            }
            g[r][m] = (0..y.len()).map(|i| cols[jr][i] * y[i]).sum();
        }
        let scale = (0..m).map(|r| g[r][r].abs()).fold(0.0, f64::max);
        let mut ok = scale > 0.0;
        for p in 0..m {
            if !ok {
                break;
            }
            let piv = (p..m).max_by(|&a, &b| g[a][p].abs().total_cmp(&g[b][p].abs())).unwrap_or(p);
            g.swap(p, piv);
            if g[p][p].abs() <= 1e-12 * scale {
                ok = false;
                break;
            }
            let (upper, lower) = g.split_at_mut(p + 1);
            let pivot = &upper[p];
            for row in lower.iter_mut() {
                let f = row[p] / pivot[p];
                for (x, y) in row[p..].iter_mut().zip(&pivot[p..]) {
                    *x -= f * y;
                }
            }
        }
        if !ok {
            continue;
        }
        let mut sol = vec![0.0; m];
        for r in (0..m).rev() {
            sol[r] = (g[r][m] - (r + 1..m).map(|c| g[r][c] * sol[c]).sum::<f64>()) / g[r][r];
        }
        if sol.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
            continue;
        }
        let mut theta = vec![0.0; k];
        for (s, &j) in sol.iter().zip(&idx) {
            theta[j] = *s;
        }
        let s = ssr(&theta);
        if s < best.1 {
            best = (theta, s);
        }
    }
    best
}

/// Best `(c, a, K, ssr)` for a fixed β under `form`, every coefficient `>= 0`.
fn solve(bins: &[Bin], d_ref: f64, beta: f64, form: &Form) -> (f64, f64, f64, f64) {
    let x_ref = form.x(d_ref);
    let k_fixed = form.fixed_anneal();
    let ones = vec![1.0; bins.len()];
    let x: Vec<f64> = bins.iter().map(|b| (form.x(b.tokens) / x_ref).powf(-beta)).collect();
    let y: Vec<f64> = bins.iter().map(|b| b.loss - k_fixed * form.u(b.tokens)).collect();
    if form.free_anneal() {
        let u: Vec<f64> = bins.iter().map(|b| form.u(b.tokens)).collect();
        let (t, s) = nonneg_lsq(&[&ones, &x, &u], &y);
        (t[0], t[1], t[2], s)
    } else {
        let (t, s) = nonneg_lsq(&[&ones, &x], &y);
        (t[0], t[1], k_fixed, s)
    }
}

/// The amplitude alone, for an asymptote `c` and exponent `beta` given (a prior's): the least
/// squares `a >= 0` of `c + a·(S(D)/S(d_ref))^-β` (plus the form's anneal term, fitted `>= 0`
/// with `a` when it is free) over the bins (at least 2), `d_ref` their last.
pub fn fit_amplitude(bins: &[Bin], c: f64, beta: f64, form: &Form) -> Option<PowerFit> {
    let d_ref = bins.last()?.tokens;
    if bins.len() < 2 || !(c.is_finite() && beta.is_finite() && beta > 0.0) {
        return None;
    }
    let x_ref = form.x(d_ref);
    let k_fixed = form.fixed_anneal();
    let x: Vec<f64> = bins.iter().map(|b| (form.x(b.tokens) / x_ref).powf(-beta)).collect();
    let y: Vec<f64> = bins.iter().map(|b| b.loss - c - k_fixed * form.u(b.tokens)).collect();
    let (a, anneal, ssr) = if form.free_anneal() {
        let u: Vec<f64> = bins.iter().map(|b| form.u(b.tokens)).collect();
        let (t, s) = nonneg_lsq(&[&x, &u], &y);
        (t[0], t[1], s)
    } else {
        let (t, s) = nonneg_lsq(&[&x], &y);
        (t[0], k_fixed, s)
    };
    let fit = PowerFit { c, a, beta, d_ref, rmse: (ssr / bins.len() as f64).sqrt(), anneal, schedule: form.schedule };
    fit.a.is_finite().then_some(fit)
}

/// Fits the plain form to the bins (at least 3, tokens ascending and positive).
pub fn fit(bins: &[Bin]) -> Option<PowerFit> {
    fit_form(bins, &Form::PLAIN)
}

/// Fits `form` to the bins (at least 3, tokens ascending and positive).
pub fn fit_form(bins: &[Bin], form: &Form) -> Option<PowerFit> {
    let d_ref = bins.last()?.tokens;
    if bins.len() < 3 {
        return None;
    }
    const GRID: usize = 120;
    let [lo, hi] = BETA_RANGE;
    let beta_at = |i: usize| lo * (hi / lo).powf(i as f64 / (GRID - 1) as f64);
    let ssr: Vec<f64> = (0..GRID).map(|i| solve(bins, d_ref, beta_at(i), form).3).collect();
    let best = (0..GRID).min_by(|&i, &j| ssr[i].total_cmp(&ssr[j]))?;
    // Golden-section search on ln β between the neighbours of the best grid point.
    let (mut a, mut b) = (beta_at(best.saturating_sub(1)).ln(), beta_at((best + 1).min(GRID - 1)).ln());
    let g = 0.5 * (5f64.sqrt() - 1.0);
    let f = |lb: f64| solve(bins, d_ref, lb.exp(), form).3;
    let (mut x1, mut x2) = (b - g * (b - a), a + g * (b - a));
    let (mut f1, mut f2) = (f(x1), f(x2));
    for _ in 0..40 {
        if f1 <= f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - g * (b - a);
            f1 = f(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + g * (b - a);
            f2 = f(x2);
        }
    }
    let beta = if f1.min(f2) <= ssr[best] { if f1 <= f2 { x1.exp() } else { x2.exp() } } else { beta_at(best) };
    let (c, amp, anneal, s) = solve(bins, d_ref, beta, form);
    let fit = PowerFit { c, a: amp, beta, d_ref, rmse: (s / bins.len() as f64).sqrt(), anneal, schedule: form.schedule };
    (fit.c.is_finite() && fit.a.is_finite()).then_some(fit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(c: f64, a: f64, beta: f64, ds: &[f64]) -> Vec<Bin> {
        ds.iter().map(|&d| Bin { tokens: d, loss: c + a * (d / 1e6).powf(-beta), count: 1 }).collect()
    }

    #[test]
    fn recovers_an_exact_power_law() {
        let ds: Vec<f64> = (0..20).map(|i| 1e4 * 10f64.powf(i as f64 / 6.0)).collect();
        let bins = curve(1.7, 0.4, 0.33, &ds);
        let f = fit(&bins).expect("fits");
        assert!((f.c - 1.7).abs() < 1e-6 && (f.beta - 0.33).abs() < 1e-5, "{f:?}");
        // a is quoted at d_ref, the last point: 0.4 (d_ref/1e6)^-0.33.
        let a_ref = 0.4 * (ds[19] / 1e6f64).powf(-0.33);
        assert!((f.a - a_ref).abs() < 1e-6, "{f:?}");
        assert!(f.rmse < 1e-9);
        // The value and the slope against finite differences.
        let d = 3e5;
        assert!((f.value(d) - (1.7 + 0.4 * (d / 1e6f64).powf(-0.33))).abs() < 1e-6);
        let h = d * 1e-6;
        let fd = (f.value(d + h) - f.value(d - h)) / (2.0 * h);
        assert!((f.slope(d) - fd).abs() < 1e-6 * fd.abs(), "{} vs {fd}", f.slope(d));
        // The rules invert the form.
        let t = f.tokens_for_gap(0.05).unwrap();
        assert!((f.value(t) - f.c - 0.05).abs() < 1e-9);
        let t = f.tokens_for_slope(1e-8).unwrap();
        assert!((f.slope(t) + 1e-8).abs() < 1e-14);
    }

    #[test]
    fn the_amplitude_alone_is_recovered_given_asymptote_and_exponent() {
        let ds: Vec<f64> = (0..12).map(|i| 1e4 * 10f64.powf(i as f64 / 6.0)).collect();
        let bins = curve(1.7, 0.4, 0.33, &ds);
        let f = fit_amplitude(&bins, 1.7, 0.33, &Form::PLAIN).expect("fits");
        assert!((f.value(3e7) - (1.7 + 0.4 * 30f64.powf(-0.33))).abs() < 1e-9, "{f:?}");
        assert!(f.rmse < 1e-12);
        // A wrong exponent still passes through the data's level, at a least-squares amplitude:
        // by hand, a = Σ x (y - c) / Σ x².
        let g = fit_amplitude(&bins, 1.7, 0.5, &Form::PLAIN).unwrap();
        let x: Vec<f64> = ds.iter().map(|d| (d / ds[11]).powf(-0.5)).collect();
        let a = x.iter().zip(&bins).map(|(x, b)| x * (b.loss - 1.7)).sum::<f64>() / x.iter().map(|x| x * x).sum::<f64>();
        assert!((g.a - a).abs() < 1e-12);
        assert_eq!(fit_amplitude(&bins[..1], 1.7, 0.33, &Form::PLAIN), None);
        assert_eq!(fit_amplitude(&bins, f64::NAN, 0.33, &Form::PLAIN), None);
    }

    #[test]
    fn a_rising_or_flat_curve_fits_flat() {
        let bins: Vec<Bin> = (1..10).map(|i| Bin { tokens: i as f64 * 1e3, loss: 2.0 + 0.01 * i as f64, count: 1 }).collect();
        let f = fit(&bins).unwrap();
        assert_eq!(f.a, 0.0);
        assert!((f.c - 2.05).abs() < 1e-12);
        assert_eq!(f.tokens_for_gap(0.1), None);
    }

    #[test]
    fn bins_are_equal_in_log_tokens_and_keep_the_last_point() {
        let pts: Vec<(f64, f64)> = (1..=100_000).map(|s| (s as f64, 1.0)).collect();
        let b = bin(&pts);
        // 5 decades at 16 per decade, less the bins that fall between the first integers.
        assert!((70..=81).contains(&b.len()), "{}: {:?}", b.len(), &b[..3]);
        assert_eq!(b.iter().map(|b| b.count).sum::<usize>(), 100_000);
        assert!(b.windows(2).all(|w| w[0].tokens < w[1].tokens));
        let last = b.last().unwrap();
        assert!(last.tokens <= 100_000.0 && last.tokens > 100_000.0 * 10f64.powf(-1.0 / 16.0));
    }
}
