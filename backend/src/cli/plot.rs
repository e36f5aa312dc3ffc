//! `--plot`: the fit over its data as SVG, drawn by the renderer the browser's pages use
//! ([`p2law_shared::plot::fit_svg`]): each run's checkpoints and its fitted curve through the
//! run's own token range (with the band when the fit has a bootstrap), the D = 0 checkpoints
//! (the loss right after pruning, where the law is not defined) apart, as triangles at the left
//! edge.

use anyhow::{Context, Result};
use p2law_shared::{Curve, FitReport};
use std::path::Path;

pub fn fit_svg(path: &Path, curves: &[Curve], report: &FitReport) -> Result<()> {
    report.coefficients()?;
    let svg = p2law_shared::plot::fit_svg(curves, report);
    anyhow::ensure!(!svg.is_empty(), "--plot: the data spans no token range after D = 0");
    super::write_atomic(path, svg.as_bytes()).with_context(|| format!("--plot {}", path.display()))
}
