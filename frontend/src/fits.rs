//! Fits the user brings: a fit file dropped or pasted (the JSON `p2law fit --out` writes), and
//! the compact `inline:` form that carries a fit's coefficients in a shared link.

use crate::state::FitSource;
use p2law_shared::{FitReport, LawForm};

/// Reads a fit file's text.
pub fn parse_fit_json(name: &str, text: &str) -> Result<FitSource, String> {
    let report: FitReport = serde_json::from_str(text).map_err(|e| format!("{name}: not a p2law fit file ({e})"))?;
    report.coefficients().map_err(|e| format!("{name}: {e}"))?;
    Ok(FitSource { key: inline_key(&report), label: format!("{name} ({})", report.law), report })
}

/// `inline:<law>:<name>=<value>;...` — the coefficients only (a band needs the bootstrap samples,
/// which do not fit in a link).
pub fn inline_key(report: &FitReport) -> String {
    let params: Vec<String> = report.params.iter().map(|(k, v)| format!("{k}={v:e}")).collect();
    format!("inline:{}:{}", report.law, params.join(";"))
}

/// Parses an `inline:` key back into a fit without a band.
pub fn parse_inline(key: &str) -> Result<FitSource, String> {
    let rest = key.strip_prefix("inline:").ok_or_else(|| format!("`{key}` is not an inline fit"))?;
    let (law, params) = rest.split_once(':').ok_or_else(|| format!("inline fit `{key}`: expected inline:<law>:<name>=<value>;..."))?;
    let law: LawForm = law.parse().map_err(|e: p2law_shared::law::UnknownLaw| e.to_string())?;
    let mut map = std::collections::BTreeMap::new();
    for kv in params.split(';').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| format!("inline fit: `{kv}` is not name=value"))?;
        let v: f64 = v.parse().map_err(|_| format!("inline fit: `{k}` = `{v}` is not a number"))?;
        map.insert(k.to_string(), v);
    }
    let nan = p2law_shared::fit::Metrics { r2: None, rmse: f64::NAN, huber: f64::NAN, asd: None, points: 0 };
    let report = FitReport::from_coefficients(law, p2law_shared::Objective::Lsq, map, nan, "coefficients from a shared link".into());
    report.coefficients().map_err(|e| e.to_string())?;
    Ok(FitSource { key: key.to_string(), label: format!("linked {law} fit"), report })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refit() -> p2law_shared::presets::Preset {
        p2law_shared::presets::presets().into_iter().find(|p| p.id == "chinchilla-epoch-refit").expect("shipped")
    }

    #[test]
    fn inline_keys_round_trip() {
        let preset = &refit();
        let key = inline_key(&preset.report);
        let back = parse_inline(&key).expect("parses");
        assert_eq!(back.report.coefficients().expect("c"), preset.report.coefficients().expect("c"));
        assert!(parse_inline("inline:p9:A=1").is_err());
        assert!(parse_inline("inline:chinchilla:A=1").unwrap_err().contains("`B`"));
    }

    #[test]
    fn fit_files_parse_or_say_why() {
        let json = serde_json::to_string(&refit().report).expect("json");
        assert!(parse_fit_json("fit.json", &json).is_ok());
        assert!(parse_fit_json("x.json", "{}").unwrap_err().starts_with("x.json: not a p2law fit file"));
    }
}
