//! `--plot`: observed points and fitted curves on log-token axes, as SVG (plotters). The axes
//! span the checkpoints after D = 0; each fitted curve is drawn through its run's token range;
//! the D = 0 checkpoints (the loss right after pruning, where the law is not defined) are drawn
//! apart, as triangles at the left edge.

use anyhow::{Context, Result};
use p2law_shared::{Curve, FitReport};
use plotters::prelude::*;
use std::path::Path;

pub fn fit_svg(path: &Path, curves: &[Curve], report: &FitReport) -> Result<()> {
    let params = report.coefficients()?;
    let law = report.law.law();
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| c.points.iter().map(|p| (p.tokens, p.loss))).collect();
    let positive: Vec<(f64, f64)> = all.iter().copied().filter(|p| p.0 > 0.0).collect();
    let (tmin, tmax) = positive.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (lmin, lmax) = all.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    anyhow::ensure!(tmin < tmax && lmin.is_finite(), "--plot: the data spans no token range after D = 0");
    let left = tmin / 1.5;
    let pad = 0.05 * (lmax - lmin).max(1e-3);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{} fit, RMSE {:.4} (triangles at the left edge: D = 0)", report.law, report.metrics.rmse), ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((left..tmax * 1.2).log_scale(), lmin - pad..lmax + pad)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("post-training tokens D")
            .y_desc("loss (nats/token)")
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, c) in curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(c.points.iter().filter(|p| p.tokens > 0.0).map(|p| Circle::new((p.tokens, p.loss), 3, color.filled())))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            chart
                .draw_series(c.points.iter().filter(|p| p.tokens <= 0.0).map(|p| TriangleMarker::new((left * 1.08, p.loss), 5, color.filled())))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (Some(feats), true) = (c.features(), c.points.iter().filter(|p| p.tokens > 0.0).count() > 1) else { continue };
            let f0 = feats[0];
            let (a, b) = c.points.iter().filter(|p| p.tokens > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.tokens), b.max(p.tokens)));
            let line = (0..=100).map(|k| {
                let d = a * (b / a).powf(k as f64 / 100.0);
                (d, law.value(&params, &f0.at_tokens(d)))
            });
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(c.run.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        if curves.len() <= 12 {
            chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    super::write_atomic(path, svg.as_bytes()).with_context(|| format!("--plot {}", path.display()))
}
