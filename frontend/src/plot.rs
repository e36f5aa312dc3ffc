//! The calculator's series drawn by the shared renderer ([`p2law_shared::plot`]): a series is a
//! [`Line`] with its band and its budget as the marker.

pub use p2law_shared::plot::*;

use crate::compute::Series;

impl Line for Series {
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
    fn marker(&self) -> Option<(f64, f64)> {
        self.budget.as_ref().ok().map(|b| (b.tokens, b.loss_at_budget))
    }
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
        // One budget marker per series, at its budget.
        assert_eq!(svg.matches(r#"class="budget""#).count(), series.iter().filter(|c| c.marker().is_some_and(|(t, _)| t >= s.dmin && t <= s.dmax)).count());
        assert!((axes.x(s.dmin) - LEFT).abs() < 1e-9);
    }
}
