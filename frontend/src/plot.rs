//! The loss-vs-tokens plot as an SVG string: log token axis, bands, curves, budget markers,
//! legend. A string (not DOM nodes) so the same bytes are shown, exported, and tested natively.

use crate::compute::Series;
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

    /// The loss range covering every curve, band and observed point, padded by 5 %.
    pub fn fit(series: &[Series], observed: &[Observed], dmin: f64, dmax: f64) -> Axes {
        let values = series
            .iter()
            .flat_map(|s| s.loss.iter().copied().chain(s.band.iter().flatten().flat_map(|b| b.iter().copied())))
            .chain(observed.iter().flat_map(|o| o.points.iter().map(|p| p.1)));
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

/// Observed checkpoints drawn as dots in the colour of series `color`.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub color: usize,
    pub label: String,
    /// `(tokens, loss)`
    pub points: Vec<(f64, f64)>,
}

/// The whole plot.
pub fn render(series: &[Series], observed: &[Observed], axes: &Axes) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="plot-svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-label="Predicted loss against post-training tokens" font-family="system-ui, sans-serif" font-size="12">"#
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
    let _ = write!(s, r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#111">predicted loss (nats/token)</text>"##, (y0 + y1) / 2.0);
    let _ = write!(s, r#"<g clip-path="url(#plot-area)"><clipPath id="plot-area"><rect x="{x0}" y="{y0}" width="{}" height="{}"/></clipPath>"#, x1 - x0, y1 - y0);
    // Bands under curves.
    for (i, c) in series.iter().enumerate() {
        let Some(band) = &c.band else { continue };
        let color = PALETTE[i % PALETTE.len()];
        s.push_str(r#"<path class="band" d=""#);
        for (k, (d, b)) in c.tokens.iter().zip(band).enumerate() {
            let _ = write!(s, "{}{:.2},{:.2}", if k == 0 { "M" } else { "L" }, axes.x(*d), axes.y(b[1]));
        }
        for (d, b) in c.tokens.iter().zip(band).rev() {
            let _ = write!(s, "L{:.2},{:.2}", axes.x(*d), axes.y(b[0]));
        }
        let _ = write!(s, r#"Z" fill="{color}" fill-opacity="0.15" stroke="none"/>"#);
    }
    for (i, c) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(s, r#"<path class="curve" data-series="{i}" fill="none" stroke="{color}" stroke-width="2" d=""#);
        for (k, (d, l)) in c.tokens.iter().zip(&c.loss).enumerate() {
            let _ = write!(s, "{}{:.2},{:.2}", if k == 0 { "M" } else { "L" }, axes.x(*d), axes.y(*l));
        }
        s.push_str(r#""/>"#);
        if let Ok(b) = &c.budget {
            if b.tokens >= axes.dmin && b.tokens <= axes.dmax {
                let (x, y) = (axes.x(b.tokens), axes.y(b.loss_at_budget));
                let _ = write!(
                    s,
                    r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y1}" stroke="{color}" stroke-dasharray="4 3"/><circle class="budget" data-series="{i}" data-tokens="{}" cx="{x:.1}" cy="{y:.1}" r="5" fill="white" stroke="{color}" stroke-width="2"><title>{}: budget {:.3e} tokens</title></circle>"#,
                    b.tokens,
                    escape(&c.label),
                    b.tokens
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
    }
    s.push_str("</g>");
    // Legend.
    let mut labels: Vec<(usize, &str)> = series.iter().enumerate().map(|(i, c)| (i, c.label.as_str())).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::compute;
    use crate::state::{Form, resolve};

    #[test]
    fn svg_has_a_curve_band_and_marker_per_series() {
        let (s, _) = resolve(&Form::default(), &Default::default());
        let (series, _) = compute(&s);
        let axes = Axes::fit(&series, &[], s.dmin, s.dmax);
        let svg = render(&series, &[], &axes);
        assert_eq!(svg.matches(r#"class="curve""#).count(), 3);
        assert_eq!(svg.matches(r#"class="band""#).count(), 3);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // The axis maps the range ends to the plot edges and back.
        assert!((axes.x(s.dmin) - LEFT).abs() < 1e-9);
        assert!((axes.tokens_at(axes.x(3e10)) / 3e10 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ticks_are_round() {
        let t = nice_ticks(1.9, 3.05, 6);
        assert!((t[0] - 2.0).abs() < 1e-12 && (t[1] - t[0] - 0.2).abs() < 1e-12);
    }
}
