//! The loss-vs-tokens picture as an SVG string, the one renderer for every fit p2law draws: the
//! calculator, the Refit and Forecast pages (in the browser, through WASM) and `p2law fit --plot`.
//! Log token axis, bands, curves, budget markers, observed checkpoints (those at D = 0 apart, as
//! triangles at the left edge) and a legend. A string, not DOM nodes, so the same bytes are
//! shown, exported and tested natively.

use crate::data::Curve;
use crate::report::FitReport;
use std::fmt::Write;

pub const WIDTH: f64 = 820.0;
pub const HEIGHT: f64 = 460.0;
pub const LEFT: f64 = 70.0;
pub const RIGHT: f64 = 20.0;
pub const TOP: f64 = 20.0;
pub const BOTTOM: f64 = 50.0;

/// Colours that stay apart for the colour-blind (Okabe–Ito).
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"];

/// Maps data to the plot area.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axes {
    pub dmin: f64,
    pub dmax: f64,
    pub ymin: f64,
    pub ymax: f64,
}

impl Axes {
    pub fn x(&self, d: f64) -> f64 {
        LEFT + (d.ln() - self.dmin.ln()) / (self.dmax.ln() - self.dmin.ln()) * (WIDTH - LEFT - RIGHT)
    }
    pub fn y(&self, l: f64) -> f64 {
        TOP + (self.ymax - l) / (self.ymax - self.ymin) * (HEIGHT - TOP - BOTTOM)
    }
    /// Tokens under a horizontal position in plot units, clamped to the range.
    pub fn tokens_at(&self, x: f64) -> f64 {
        let t = ((x - LEFT) / (WIDTH - LEFT - RIGHT)).clamp(0.0, 1.0);
        (self.dmin.ln() + t * (self.dmax.ln() - self.dmin.ln())).exp()
    }

    /// The loss range covering every curve, band and observed point (those at D = 0 too),
    /// padded by 5 %.
    pub fn fit<L: Line>(series: &[L], observed: &[Observed], dmin: f64, dmax: f64) -> Axes {
        let values = series
            .iter()
            .flat_map(|s| s.loss().iter().copied().chain(s.band().into_iter().flatten().flat_map(|b| b.iter().copied())))
            .chain(observed.iter().flat_map(|o| o.points.iter().map(|p| p.1).chain(o.at_zero.iter().copied())));
        let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else if lo.is_finite() { (lo - 0.5, lo + 0.5) } else { (0.0, 1.0) };
        let pad = 0.05 * (hi - lo);
        Axes { dmin, dmax, ymin: lo - pad, ymax: hi + pad }
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `1e9` style label of a power of ten.
fn decade_label(e: i32) -> String {
    format!("1e{e}")
}

/// Ticks at 1, 2 or 5 times a power of ten, about `n` of them.
fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// One drawn curve: its label, its loss at its token counts, and optionally a band and a marker.
pub trait Line {
    fn label(&self) -> &str;
    fn tokens(&self) -> &[f64];
    fn loss(&self) -> &[f64];
    /// `[lo, hi]` at each token count.
    fn band(&self) -> Option<&[[f64; 2]]> {
        None
    }
    /// A point marked on the curve (a budget): `(tokens, loss)`.
    fn marker(&self) -> Option<(f64, f64)> {
        None
    }
    /// Its colour in [`PALETTE`]; by default its place in the list.
    fn color(&self, index: usize) -> usize {
        index
    }
}

/// Observed checkpoints drawn as dots in the colour of series `color`; those at D = 0 (the
/// loss right after pruning, which a log axis cannot place) as triangles at the left edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub color: usize,
    pub label: String,
    /// `(tokens, loss)`, tokens > 0.
    pub points: Vec<(f64, f64)>,
    /// Losses at D = 0.
    pub at_zero: Vec<f64>,
}

impl Observed {
    /// A curve's checkpoints, those at D = 0 apart.
    pub fn of(color: usize, c: &Curve) -> Observed {
        Observed {
            color,
            label: c.run.clone(),
            points: c.points.iter().filter(|p| p.tokens > 0.0).map(|p| (p.tokens, p.loss)).collect(),
            at_zero: c.points.iter().filter(|p| p.tokens <= 0.0).map(|p| p.loss).collect(),
        }
    }
}

/// The whole plot.
pub fn render<L: Line>(series: &[L], observed: &[Observed], axes: &Axes) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="plot-svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Loss against post-training tokens" font-family="system-ui, sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    // Grid and axes.
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM);
    let (e0, e1) = (axes.dmin.log10().ceil() as i32, axes.dmax.log10().floor() as i32);
    for e in e0..=e1 {
        let x = axes.x(10f64.powi(e));
        let _ = write!(s, r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#333">{}</text>"##, y1 + 18.0, decade_label(e));
    }
    for t in nice_ticks(axes.ymin, axes.ymax, 6) {
        let y = axes.y(t);
        let _ = write!(s, r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{t:.2}</text>"##, x0 - 6.0, y + 4.0);
    }
    let _ = write!(s, r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#888"/>"##, x1 - x0, y1 - y0);
    let _ = write!(s, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#111">post-training tokens D (log scale)</text>"##, (x0 + x1) / 2.0, HEIGHT - 8.0);
    let _ = write!(s, r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#111">loss (nats/token)</text>"##, (y0 + y1) / 2.0);
    let _ = write!(s, r#"<g clip-path="url(#plot-area)"><clipPath id="plot-area"><rect x="{x0}" y="{y0}" width="{}" height="{}"/></clipPath>"#, x1 - x0, y1 - y0);
    // Bands under curves.
    for (i, c) in series.iter().enumerate() {
        let Some(band) = c.band() else { continue };
        let color = PALETTE[c.color(i) % PALETTE.len()];
        s.push_str(r#"<path class="band" d=""#);
        for (k, (d, b)) in c.tokens().iter().zip(band).enumerate() {
            let _ = write!(s, "{}{:.2},{:.2}", if k == 0 { "M" } else { "L" }, axes.x(*d), axes.y(b[1]));
        }
        for (d, b) in c.tokens().iter().zip(band).rev() {
            let _ = write!(s, "L{:.2},{:.2}", axes.x(*d), axes.y(b[0]));
        }
        let _ = write!(s, r#"Z" fill="{color}" fill-opacity="0.15" stroke="none"/>"#);
    }
    for (i, c) in series.iter().enumerate() {
        let color = PALETTE[c.color(i) % PALETTE.len()];
        let _ = write!(s, r#"<path class="curve" data-series="{i}" fill="none" stroke="{color}" stroke-width="2" d=""#);
        for (k, (d, l)) in c.tokens().iter().zip(c.loss()).enumerate() {
            let _ = write!(s, "{}{:.2},{:.2}", if k == 0 { "M" } else { "L" }, axes.x(*d), axes.y(*l));
        }
        s.push_str(r#""/>"#);
        if let Some((tokens, loss)) = c.marker() {
            if tokens >= axes.dmin && tokens <= axes.dmax {
                let (x, y) = (axes.x(tokens), axes.y(loss));
                let _ = write!(
                    s,
                    r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y1}" stroke="{color}" stroke-dasharray="4 3"/><circle class="budget" data-series="{i}" data-tokens="{tokens}" cx="{x:.1}" cy="{y:.1}" r="5" fill="white" stroke="{color}" stroke-width="2"><title>{}: budget {tokens:.3e} tokens</title></circle>"#,
                    escape(c.label()),
                );
            }
        }
    }
    for o in observed {
        let color = PALETTE[o.color % PALETTE.len()];
        for &(d, l) in &o.points {
            if d >= axes.dmin && d <= axes.dmax {
                let _ = write!(s, r#"<circle class="observed" cx="{:.1}" cy="{:.1}" r="3" fill="{color}" fill-opacity="0.7"/>"#, axes.x(d), axes.y(l));
            }
        }
        for &l in &o.at_zero {
            let (x, y) = (x0 + 7.0, axes.y(l));
            let _ = write!(s, r#"<polygon class="at-zero" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"><title>{}: D = 0, loss {l:.4}</title></polygon>"#, x - 5.0, y + 4.0, x + 5.0, y + 4.0, x, y - 5.0, escape(&o.label));
        }
    }
    s.push_str("</g>");
    // Legend: the labelled curves (or, with none, the observed runs), the first twelve.
    let mut labels: Vec<(usize, &str)> = series.iter().enumerate().map(|(i, c)| (c.color(i), c.label())).filter(|(_, l)| !l.is_empty()).collect();
    if series.is_empty() {
        labels = observed.iter().map(|o| (o.color, o.label.as_str())).collect();
    }
    for (row, (i, label)) in labels.into_iter().take(12).enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let y = y0 + 16.0 + 18.0 * row as f64;
        let _ = write!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" fill="#111">{}</text>"##,
            x1 - 190.0,
            x1 - 170.0,
            x1 - 164.0,
            y + 4.0,
            escape(label)
        );
    }
    s.push_str("</svg>");
    s
}

/// A fitted curve through one run's token range, with the fit's band where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// Shown in the legend unless empty.
    pub label: String,
    pub color: usize,
    pub tokens: Vec<f64>,
    pub loss: Vec<f64>,
    pub band: Option<Vec<[f64; 2]>>,
}

impl Line for Fitted {
    fn label(&self) -> &str {
        &self.label
    }
    fn tokens(&self) -> &[f64] {
        &self.tokens
    }
    fn loss(&self) -> &[f64] {
        &self.loss
    }
    fn band(&self) -> Option<&[[f64; 2]]> {
        self.band.as_deref()
    }
    fn color(&self, _: usize) -> usize {
        self.color
    }
}

/// The token range of the checkpoints after D = 0, widened by half a step each side (a decade
/// each side for a single checkpoint); `None` without one.
pub fn token_range(curves: &[Curve]) -> Option<(f64, f64)> {
    let (lo, hi) = curves.iter().flat_map(|c| c.points.iter().map(|p| p.tokens)).filter(|t| *t > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
    (lo.is_finite() && hi > 0.0).then(|| if lo < hi { (lo / 1.5, hi * 1.5) } else { (lo / 10.0, hi * 10.0) })
}

/// Points per fitted curve.
pub const FITTED_POINTS: usize = 120;

/// Each run's fitted curve over its own checkpoints' token range (the law is not defined at
/// D = 0; a run with one checkpoint gets a decade either side of it), with the bootstrap band
/// where the fit has one. Runs the law cannot be evaluated for (no N0, say) are left out.
pub fn fitted(curves: &[Curve], report: &FitReport) -> Vec<Fitted> {
    let Ok(params) = report.coefficients() else { return Vec::new() };
    let boot = report.bootstrap().filter(|b| !b.samples.is_empty());
    let law = report.law.law();
    curves
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let (lo, hi) = c.points.iter().map(|p| p.tokens).filter(|t| *t > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), t| (a.min(t), b.max(t)));
            if !lo.is_finite() {
                return None;
            }
            let (a, b) = if lo < hi { (lo, hi) } else { (lo / 10.0, hi * 10.0) };
            let x = c.inputs(b)?;
            let f0 = crate::law::Features::new(&x);
            let tokens: Vec<f64> = (0..FITTED_POINTS).map(|k| (a.ln() + (b.ln() - a.ln()) * k as f64 / (FITTED_POINTS - 1) as f64).exp()).collect();
            let loss = tokens.iter().map(|&d| law.value(&params, &f0.at_tokens(d))).collect();
            let band = boot.as_ref().map(|bs| tokens.iter().map(|&d| bs.predict_interval(&crate::law::Inputs { tokens: d, ..x }).unwrap_or([f64::NAN; 2])).collect());
            Some(Fitted { label: c.run.clone(), color: i, tokens, loss, band })
        })
        .collect()
}

/// Every curve's checkpoints, one colour each.
pub fn observed(curves: &[Curve]) -> Vec<Observed> {
    curves.iter().enumerate().map(|(i, c)| Observed::of(i, c)).collect()
}

/// Checkpoints only: what a log looks like before it is fitted. Empty without a checkpoint
/// after D = 0.
pub fn preview_svg(curves: &[Curve]) -> String {
    let Some((dmin, dmax)) = token_range(curves) else { return String::new() };
    let obs = observed(curves);
    render::<Fitted>(&[], &obs, &Axes::fit::<Fitted>(&[], &obs, dmin, dmax))
}

/// A fit drawn over its data: each run's checkpoints and its fitted curve (with band) in one
/// colour. Empty without a checkpoint after D = 0.
pub fn fit_svg(curves: &[Curve], report: &FitReport) -> String {
    let Some((dmin, dmax)) = token_range(curves) else { return String::new() };
    let lines = fitted(curves, report);
    let obs = observed(curves);
    render(&lines, &obs, &Axes::fit(&lines, &obs, dmin, dmax))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        let t = nice_ticks(1.9, 3.05, 6);
        assert!((t[0] - 2.0).abs() < 1e-12 && (t[1] - t[0] - 0.2).abs() < 1e-12);
    }

    #[test]
    fn axes_map_the_range_ends_to_the_plot_edges_and_back() {
        let axes = Axes { dmin: 1e8, dmax: 1e12, ymin: 1.0, ymax: 3.0 };
        assert!((axes.x(1e8) - LEFT).abs() < 1e-9 && (axes.x(1e12) - (WIDTH - RIGHT)).abs() < 1e-9);
        assert!((axes.y(3.0) - TOP).abs() < 1e-9 && (axes.y(1.0) - (HEIGHT - BOTTOM)).abs() < 1e-9);
        assert!((axes.tokens_at(axes.x(3e10)) / 3e10 - 1.0).abs() < 1e-12);
    }
}
