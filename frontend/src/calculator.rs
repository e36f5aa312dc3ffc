//! What the calculator page shows, as plain functions of the form and the computed series: the
//! fit list's toggles, the budget rule's two fields, the results table's cells, the messages and
//! warnings, and the hover read-out. The Leptos component (`app`, wasm only) only wires these to
//! signals, so everything here is tested natively.

use crate::compute::{Series, SeriesError};
use crate::state::{FieldError, FitSource, Form};

/// A number in the table: three significant decimals in scientific notation, a dash when not
/// finite.
pub fn fmt_sci(v: f64) -> String {
    if v.is_finite() { format!("{v:.3e}") } else { "—".into() }
}

impl Form {
    /// The fit keys listed, trimmed, empty entries skipped.
    pub fn fit_keys(&self) -> impl Iterator<Item = &str> {
        self.fits.split(',').map(str::trim).filter(|k| !k.is_empty())
    }

    /// Whether the fit `key` is shown.
    pub fn has_fit(&self, key: &str) -> bool {
        self.fit_keys().any(|k| k == key)
    }

    /// Shows (`on`) or hides the fit `key`; a shown key moves to the end of the list.
    pub fn toggle_fit(&mut self, key: &str, on: bool) {
        let mut keys: Vec<String> = self.fit_keys().filter(|k| *k != key).map(str::to_string).collect();
        if on {
            keys.push(key.to_string());
        }
        self.fits = keys.join(",");
    }

    /// Shows the fit `key` where it is not shown yet (a loaded fit joins the plot).
    pub fn add_fit(&mut self, key: &str) {
        if !self.has_fit(key) {
            self.toggle_fit(key, true);
        }
    }

    /// The budget rule's kind (`slope`, `target`, `gap`); `slope` when the rule has none.
    pub fn rule_kind(&self) -> &str {
        self.rule.split_once(':').map_or("slope", |(k, _)| k)
    }

    /// The budget rule's value, as typed.
    pub fn rule_value(&self) -> &str {
        self.rule.split_once(':').map_or("", |(_, v)| v)
    }

    /// A new kind keeps the value typed (`0.01` when there is none).
    pub fn set_rule_kind(&mut self, kind: &str) {
        let v = self.rule.split_once(':').map_or("0.01", |(_, v)| v);
        self.rule = format!("{kind}:{v}");
    }

    /// A new value keeps the kind.
    pub fn set_rule_value(&mut self, value: &str) {
        self.rule = format!("{}:{value}", self.rule_kind());
    }
}

/// One row of the results table, as its cells read.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub budget: String,
    /// The budget's exact value for `data-value` (empty without a budget).
    pub budget_value: String,
    pub band: String,
    pub loss_at_budget: String,
    pub asymptote: String,
    pub flops: String,
    pub gpu_hours: String,
    pub price: String,
}

impl Row {
    pub fn of(s: &Series) -> Row {
        match &s.budget {
            Ok(b) => Row {
                budget: fmt_sci(b.tokens),
                budget_value: b.tokens.to_string(),
                band: b.tokens_band.map_or(String::new(), |[lo, hi]| format!("[{}, {}]", fmt_sci(lo), fmt_sci(hi))),
                loss_at_budget: format!("{:.4}", b.loss_at_budget),
                asymptote: b.asymptote.map_or(String::new(), |a| format!("{a:.4}")),
                flops: fmt_sci(b.cost.flops),
                gpu_hours: b.cost.gpu_hours.map_or(String::new(), |h| format!("{h:.1}")),
                price: b.cost.price.map_or(String::new(), |p| format!("{p:.0}")),
            },
            // Why there is no budget, in the budget's cell.
            Err(e) => Row {
                budget: e.clone(),
                budget_value: String::new(),
                band: String::new(),
                loss_at_budget: String::new(),
                asymptote: String::new(),
                flops: String::new(),
                gpu_hours: String::new(),
                price: String::new(),
            },
        }
    }
}

/// A line of the messages list with its CSS class: `message`, `warning degenerate` or
/// `warning extrapolation`.
pub type Message = (&'static str, String);

/// The messages list: notes on the link, fields that did not resolve, series that cannot be
/// drawn, a fit that did not load; then a warning per degenerate fit and each extrapolation,
/// once each.
pub fn messages(link_notes: &[String], field_errors: &[FieldError], series_errors: &[SeriesError], load_error: Option<&str>, fits: &[FitSource], series: &[Series]) -> Vec<Message> {
    let mut items: Vec<Message> = link_notes.iter().cloned().map(|m| ("message", m)).collect();
    items.extend(field_errors.iter().map(|e| ("message", format!("{}: {}", e.field, e.message))));
    items.extend(series_errors.iter().map(|e| ("message", format!("{}: {}", e.label, e.message))));
    items.extend(load_error.map(|e| ("message", e.to_string())));
    items.extend(fits.iter().filter_map(|f| f.report.degeneracy().map(|w| ("warning degenerate", format!("{}: {w}", f.label)))));
    let mut seen = std::collections::BTreeSet::new();
    for s in series {
        for m in &s.extrapolation {
            let line = format!("{}: extrapolation: {m}", s.fit_label);
            if seen.insert(line.clone()) {
                items.push(("warning extrapolation", line));
            }
        }
    }
    items
}

/// The hover read-out at `tokens`: each series' loss there, by its own fit.
pub fn readout(tokens: f64, series: &[Series], fits: &[FitSource]) -> String {
    let parts: Vec<String> = series
        .iter()
        .map(|s| {
            let x = p2law_shared::Inputs { tokens, ..s.inputs };
            let fit = fits.iter().find(|f| f.label == s.fit_label);
            let loss = fit.and_then(|f| f.report.coefficients().ok().map(|p| p2law_shared::fit::predict(f.report.law, &p, &x)));
            format!("{}: {:.4}", s.label, loss.unwrap_or(f64::NAN))
        })
        .collect();
    format!("D = {tokens:.3e} tokens — {}", parts.join(" · "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::compute;
    use crate::state::resolve;

    #[test]
    fn fits_toggle_on_and_off_without_duplicates() {
        let mut f = Form { fits: " p2, preset:a ,,".into(), ..Form::default() };
        assert!(f.has_fit("preset:a") && f.has_fit("p2") && !f.has_fit(""));
        f.toggle_fit("preset:a", false);
        assert_eq!(f.fits, "p2");
        f.toggle_fit("preset:b", true);
        f.toggle_fit("p2", true);
        assert_eq!(f.fits, "preset:b,p2", "a key shown again moves to the end, once");
        f.add_fit("preset:b");
        assert_eq!(f.fits, "preset:b,p2", "adding a shown fit changes nothing");
        f.add_fit("server:3");
        assert_eq!(f.fits, "preset:b,p2,server:3");
        f.toggle_fit("nothing", false);
        assert_eq!(f.fits, "preset:b,p2,server:3");
    }

    #[test]
    fn the_rule_splits_into_kind_and_value() {
        let mut f = Form { rule: "gap:0.05".into(), ..Form::default() };
        assert_eq!((f.rule_kind(), f.rule_value()), ("gap", "0.05"));
        f.set_rule_kind("target");
        assert_eq!(f.rule, "target:0.05");
        f.set_rule_value("2.1");
        assert_eq!(f.rule, "target:2.1");
        let mut bare = Form { rule: "slope".into(), ..Form::default() };
        assert_eq!((bare.rule_kind(), bare.rule_value()), ("slope", ""));
        bare.set_rule_kind("gap");
        assert_eq!(bare.rule, "gap:0.01");
    }

    #[test]
    fn rows_and_readout_read_the_series() {
        let (s, _) = resolve(&Form::default(), &Default::default());
        let (series, _) = compute(&s);
        let row = Row::of(&series[0]);
        let b = series[0].budget.as_ref().expect("the default view has a budget");
        assert_eq!(row.budget_value.parse::<f64>().unwrap(), b.tokens);
        assert_eq!(row.budget, format!("{:.3e}", b.tokens));
        assert!(row.band.starts_with('[') && row.band.ends_with(']'), "{}", row.band);
        let mut failed = series[0].clone();
        failed.budget = Err("no budget: the rule is never met".into());
        let row = Row::of(&failed);
        assert_eq!((row.budget.as_str(), row.budget_value.as_str(), row.flops.as_str()), ("no budget: the rule is never met", "", ""));
        // The read-out is each series' own law at the hovered tokens.
        let d = 3e9;
        let text = readout(d, &series, &s.fits);
        assert!(text.starts_with("D = 3.000e9 tokens — "), "{text}");
        let p = s.fits[0].report.coefficients().unwrap();
        let want = p2law_shared::fit::predict(s.fits[0].report.law, &p, &p2law_shared::Inputs { tokens: d, ..series[1].inputs });
        assert!(text.contains(&format!("{}: {want:.4}", series[1].label)), "{text}");
        assert_eq!(fmt_sci(f64::NAN), "—");
    }

    #[test]
    fn messages_keep_their_order_and_say_each_extrapolation_once() {
        let (s, errs) = resolve(&Form { rates: "0.2,0.2,x".into(), ..Form::default() }, &Default::default());
        let (series, series_errors) = compute(&s);
        let m = messages(&["link: note".into()], &errs, &series_errors, Some("fit.json: bad"), &s.fits, &series);
        assert_eq!(m[0], ("message", "link: note".to_string()));
        let rates = m.iter().position(|(_, t)| t.starts_with("rates: ")).expect("the bad rate is said");
        let load = m.iter().position(|(_, t)| t == "fit.json: bad").expect("the load error is said");
        assert!(rates < load);
        let extrapolations: Vec<&String> = m.iter().filter(|(c, _)| *c == "warning extrapolation").map(|(_, t)| t).collect();
        assert!(!extrapolations.is_empty(), "Llama-3.1-8B lies beyond the study's parents");
        let unique: std::collections::BTreeSet<&&String> = extrapolations.iter().collect();
        assert_eq!(unique.len(), extrapolations.len(), "each extrapolation once: {extrapolations:?}");
        assert!(m.iter().all(|(c, _)| *c != "warning degenerate"), "the default preset is identified: {m:?}");
    }
}
