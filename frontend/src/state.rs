//! The calculator's state: every input as the user typed it, its round trip through the URL
//! query string, and its resolution into a validated [`Scenario`].
//!
//! Text stays text until resolution so that a half-typed number never loses what was typed; a
//! value that does not resolve gets a message naming the field and the default is used instead.

use p2law_shared::budget::{Hardware, Rule};
use p2law_shared::models::KNOWN_MODELS;
use std::collections::BTreeMap;

/// Every input, as text. Field names are the URL query keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    /// Fit sources, comma-separated: `preset:<id>`, `preset:p2` (the P² preset of `method`, see
    /// [`p2law_shared::presets::study_preset_for`]) or `inline:<law>:<name>=<v>;...`.
    pub fits: String,
    /// A known model name, or `custom` to type `n0`.
    pub model: String,
    pub n0: String,
    pub l0: String,
    /// `rho` (rates) or `n` (sizes after pruning).
    pub by: String,
    /// Comma-separated rates or sizes.
    pub rates: String,
    pub method: String,
    pub dmin: String,
    pub dmax: String,
    pub points: String,
    pub rule: String,
    pub flops: String,
    pub mfu: String,
    pub price: String,
    pub teacher: String,
}

impl Default for Form {
    fn default() -> Self {
        Form {
            fits: AUTO_P2.into(),
            model: "Llama-3.1-8B".into(),
            n0: "8030261248".into(),
            l0: "1.9".into(),
            by: "rho".into(),
            rates: "0.2,0.35,0.5".into(),
            method: "depth".into(),
            dmin: "1e8".into(),
            dmax: "1e12".into(),
            points: "400".into(),
            rule: "slope:0.01".into(),
            flops: "9.89e14".into(),
            mfu: "0.4".into(),
            price: "2.5".into(),
            teacher: String::new(),
        }
    }
}

/// The fit key of the P² preset of the selected method.
pub const AUTO_P2: &str = "preset:p2";

/// The dense reference shown when no P² preset ships.
const DENSE: &str = "chinchilla-epoch-refit";

/// The query keys in order.
const KEYS: [&str; 15] =
    ["fits", "model", "n0", "l0", "by", "rates", "method", "dmin", "dmax", "points", "rule", "flops", "mfu", "price", "teacher"];

impl Form {
    pub fn get(&self, key: &str) -> &str {
        match key {
            "fits" => &self.fits,
            "model" => &self.model,
            "n0" => &self.n0,
            "l0" => &self.l0,
            "by" => &self.by,
            "rates" => &self.rates,
            "method" => &self.method,
            "dmin" => &self.dmin,
            "dmax" => &self.dmax,
            "points" => &self.points,
            "rule" => &self.rule,
            "flops" => &self.flops,
            "mfu" => &self.mfu,
            "price" => &self.price,
            _ => &self.teacher,
        }
    }

    pub fn set(&mut self, key: &str, value: String) {
        match key {
            "fits" => self.fits = value,
            "model" => self.model = value,
            "n0" => self.n0 = value,
            "l0" => self.l0 = value,
            "by" => self.by = value,
            "rates" => self.rates = value,
            "method" => self.method = value,
            "dmin" => self.dmin = value,
            "dmax" => self.dmax = value,
            "points" => self.points = value,
            "rule" => self.rule = value,
            "flops" => self.flops = value,
            "mfu" => self.mfu = value,
            "price" => self.price = value,
            "teacher" => self.teacher = value,
            _ => {}
        }
    }

    /// The query string (without `?`), every field included so a link restores the state exactly.
    pub fn to_query(&self) -> String {
        KEYS.iter().map(|k| format!("{k}={}", encode(self.get(k)))).collect::<Vec<_>>().join("&")
    }

    /// Reads a query string; unknown keys are reported, missing keys keep their defaults.
    pub fn from_query(query: &str) -> (Form, Vec<String>) {
        let mut form = Form::default();
        let mut notes = Vec::new();
        for pair in query.trim_start_matches('?').split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let Some(v) = decode(v) else {
                notes.push(format!("link: `{k}` is not valid percent-encoding; using the default"));
                continue;
            };
            if KEYS.contains(&k) {
                form.set(k, v);
            } else {
                notes.push(format!("link: unknown setting `{k}` ignored"));
            }
        }
        (form, notes)
    }
}

/// What a link's values keep as they are: letters, digits, `-_.~` (RFC 3986's unreserved) and
/// `,` and `:`, which the fit lists and rules are made of, so that a shared link stays readable
/// (`fits=preset:p2&rule=slope:0.01`, not `preset%3Ap2`). Everything else is percent-encoded.
const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b',').remove(b':');

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// A value of a link, `+` read as a space; `None` for a `%` not followed by two hex digits (which
/// the decoder would keep as typed) or bytes that are not UTF-8, so the page can say so.
fn decode(s: &str) -> Option<String> {
    let escapes_ok = s.split('%').skip(1).all(|rest| rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit));
    if !escapes_ok {
        return None;
    }
    percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8().ok().map(|v| v.into_owned())
}

/// One fit to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct FitSource {
    pub key: String,
    pub label: String,
    pub report: p2law_shared::FitReport,
}

/// The validated scenario the page computes.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub fits: Vec<FitSource>,
    pub n0: f64,
    pub l0: Option<f64>,
    /// Pruning rates, one curve per rate per fit.
    pub rates: Vec<f64>,
    pub method: String,
    pub dmin: f64,
    pub dmax: f64,
    pub points: usize,
    pub rule: Rule,
    pub hardware: Hardware,
    pub teacher: Option<f64>,
}

/// A field that did not resolve: its message, and that the default stood in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn number(field: &'static str, text: &str, errors: &mut Vec<FieldError>) -> Option<f64> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Some(v),
        _ => {
            errors.push(FieldError { field, message: format!("`{text}` is not a number") });
            None
        }
    }
}

/// Resolves the form. `custom` holds fits the user loaded (by key); every field that does not
/// resolve is reported and replaced by its default, so the page always has something to draw.
pub fn resolve(form: &Form, custom: &BTreeMap<String, FitSource>) -> (Scenario, Vec<FieldError>) {
    let d = Form::default();
    let mut errors = Vec::new();
    let presets = p2law_shared::presets::presets();
    let mut fits = Vec::new();
    let auto = |method: &str, errors: &mut Vec<FieldError>| -> Option<FitSource> {
        let Some(p) = p2law_shared::presets::study_preset_in(&presets, method.trim()) else {
            errors.push(FieldError {
                field: "fits",
                message: format!(
                    "no P² preset ships for `{}`: the study's fits of this method, and the pooled one, leave coefficients unidentified; showing the dense Chinchilla reference instead",
                    method.trim()
                ),
            });
            let p = presets.iter().find(|p| p.id == DENSE)?;
            return Some(FitSource { key: AUTO_P2.into(), label: p.title.clone(), report: p.report.clone() });
        };
        Some(FitSource { key: AUTO_P2.into(), label: format!("{} (P² preset for `{}`)", p.title, method.trim()), report: p.report.clone() })
    };
    for key in form.fit_keys() {
        if key == AUTO_P2 {
            fits.extend(auto(&form.method, &mut errors));
        } else if let Some(id) = key.strip_prefix("preset:") {
            match presets.iter().find(|p| p.id == id) {
                Some(p) => fits.push(FitSource { key: key.to_string(), label: p.title.clone(), report: p.report.clone() }),
                None => errors.push(FieldError { field: "fits", message: format!("no preset `{id}`") }),
            }
        } else if let Some(f) = custom.get(key) {
            fits.push(f.clone());
        } else if key.starts_with("server:") {
            // Fetched from the server by the page; it joins `custom` when it arrives.
        } else if key.starts_with("inline:") {
            match crate::fits::parse_inline(key) {
                Ok(f) => fits.push(f),
                Err(e) => errors.push(FieldError { field: "fits", message: e }),
            }
        } else {
            errors.push(FieldError { field: "fits", message: format!("unknown fit `{key}`") });
        }
    }
    if fits.is_empty() {
        match auto(&form.method, &mut errors) {
            Some(f) => fits.push(f),
            None => fits.push(FitSource { key: d.fits.clone(), label: presets[0].title.clone(), report: presets[0].report.clone() }),
        }
    }
    let n0 = match KNOWN_MODELS.iter().find(|m| m.name == form.model) {
        Some(m) => m.shape.parameters() as f64,
        None => {
            if form.model != "custom" {
                errors.push(FieldError { field: "model", message: format!("unknown model `{}`", form.model) });
            }
            match number("n0", &form.n0, &mut errors) {
                Some(v) if v > 0.0 => v,
                Some(v) => {
                    errors.push(FieldError { field: "n0", message: format!("must be > 0, got {v}") });
                    8_030_261_248.0
                }
                None => 8_030_261_248.0,
            }
        }
    };
    let l0 = if form.l0.trim().is_empty() {
        None
    } else {
        match number("l0", &form.l0, &mut errors) {
            Some(v) if v > 0.0 => Some(v),
            Some(v) => {
                errors.push(FieldError { field: "l0", message: format!("must be > 0, got {v}") });
                Some(1.9)
            }
            None => Some(1.9),
        }
    };
    let by_size = match form.by.as_str() {
        "rho" => false,
        "n" => true,
        other => {
            errors.push(FieldError { field: "by", message: format!("`{other}`: expected rho or n") });
            false
        }
    };
    let mut rates = Vec::new();
    for t in form.rates.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let Some(v) = number("rates", t, &mut errors) else { continue };
        let rho = if by_size { 1.0 - v / n0 } else { v };
        if (0.0..1.0).contains(&rho) {
            rates.push(rho);
        } else if by_size {
            errors.push(FieldError { field: "rates", message: format!("size {v} must be in (0, N0 = {n0:.4e}]") });
        } else {
            errors.push(FieldError { field: "rates", message: format!("rate {v} must be in [0, 1)") });
        }
    }
    if rates.is_empty() {
        if !form.rates.trim().is_empty() || errors.iter().all(|e| e.field != "rates") {
            errors.push(FieldError { field: "rates", message: "no usable pruning rate; using the defaults".into() });
        }
        rates = vec![0.2, 0.35, 0.5];
    }
    rates.truncate(8);
    let positive = |field: &'static str, text: &str, default: f64, errors: &mut Vec<FieldError>| match number(field, text, errors) {
        Some(v) if v > 0.0 => v,
        Some(v) => {
            errors.push(FieldError { field, message: format!("must be > 0, got {v}") });
            default
        }
        None => default,
    };
    let mut dmin = positive("dmin", &form.dmin, 1e8, &mut errors);
    let mut dmax = positive("dmax", &form.dmax, 1e12, &mut errors);
    if dmin >= dmax {
        errors.push(FieldError { field: "dmax", message: format!("must exceed the start of the range ({dmin:e})") });
        (dmin, dmax) = (1e8, 1e12);
    }
    let points = match form.points.trim().parse::<usize>() {
        Ok(p) if (2..=5000).contains(&p) => p,
        _ => {
            errors.push(FieldError { field: "points", message: format!("`{}`: expected 2..5000", form.points) });
            400
        }
    };
    let rule = match form.rule.parse::<Rule>() {
        Ok(r) => r,
        Err(e) => {
            errors.push(FieldError { field: "rule", message: e.to_string() });
            Rule::Slope(0.01)
        }
    };
    let gpu_flops = positive("flops", &form.flops, 9.89e14, &mut errors);
    let mfu = match number("mfu", &form.mfu, &mut errors) {
        Some(v) if v > 0.0 && v <= 1.0 => v,
        Some(v) => {
            errors.push(FieldError { field: "mfu", message: format!("must be in (0, 1], got {v}") });
            0.4
        }
        None => 0.4,
    };
    let price = match number("price", &form.price, &mut errors) {
        Some(v) if v >= 0.0 => v,
        Some(v) => {
            errors.push(FieldError { field: "price", message: format!("must be >= 0, got {v}") });
            2.5
        }
        None => 2.5,
    };
    let teacher = if form.teacher.trim().is_empty() { None } else { Some(positive("teacher", &form.teacher, 1.0, &mut errors)) };
    let scenario = Scenario {
        fits,
        n0,
        l0,
        rates,
        method: form.method.clone(),
        dmin,
        dmax,
        points,
        rule,
        hardware: Hardware { gpu_flops, mfu, price_per_gpu_hour: price },
        teacher,
    };
    (scenario, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_stay_readable_and_bad_escapes_are_refused() {
        assert_eq!(encode("preset:p2,inline:p2:D_C=3e4;x y+é"), "preset:p2,inline:p2:D_C%3D3e4%3Bx%20y%2B%C3%A9");
        assert_eq!(decode("preset:p2,inline:p2:D_C%3D3e4%3Bx%20y%2B%C3%A9").as_deref(), Some("preset:p2,inline:p2:D_C=3e4;x y+é"));
        assert_eq!(decode("x+y").as_deref(), Some("x y"));
        for bad in ["%ZZ", "a%2", "%", "%C3%28"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    /// The URL is outside input: any query string gives a form, the form resolves to a scenario
    /// (bad fields fall back with a message), and every form round-trips through its link.
    #[test]
    fn the_url_state_survives_the_fuzzer() {
        use p2law_shared::fuzz::{Campaign, TEXT_DICTIONARY, assert_clean, inputs_from_env};
        let mut f = Form::default();
        f.rates = "0.1,0.3".into();
        f.method = "2:4".into();
        f.rule = "target:2.35".into();
        let seeds = vec![f.to_query().into_bytes(), Form::default().to_query().into_bytes(), b"rates=abc&dmin=5e9&dmax=1e9&rule=speed:3&bogus=1&model=%ZZ".to_vec()];
        let mut dictionary: Vec<&[u8]> = TEXT_DICTIONARY.to_vec();
        dictionary.extend([&b"%"[..], b"%2", b"%ZZ", b"%C3%28", b"&", b"=", b"+", b"?", b"preset:p2", b"preset:", b"model=", b"n0=", b"rates=", b"by=size"]);
        let c = Campaign { name: "calculator URL state", seeds, dictionary: &dictionary, fixup: None };
        let out = c.run(inputs_from_env(3000), 31, |b| {
            let query = String::from_utf8_lossy(b);
            let (form, _notes) = Form::from_query(&query);
            let _ = resolve(&form, &BTreeMap::new());
            let (again, notes) = Form::from_query(&form.to_query());
            if again != form || !notes.is_empty() {
                return Err(format!("the form's link does not restore it: {notes:?}"));
            }
            Ok(true)
        });
        assert_clean(&[out]);
    }

    #[test]
    fn query_round_trips_exactly() {
        let mut f = Form::default();
        f.rates = "0.1, 0.3".into();
        f.rule = "target:2.35".into();
        f.method = "2:4 & friends".into();
        let (g, notes) = Form::from_query(&format!("?{}", f.to_query()));
        assert_eq!(g, f);
        assert!(notes.is_empty());
    }

    #[test]
    fn bad_values_fall_back_with_a_message() {
        let (form, notes) = Form::from_query("rates=abc&dmin=5e9&dmax=1e9&rule=speed:3&bogus=1&model=%ZZ");
        assert_eq!(notes.len(), 2);
        let (s, errors) = resolve(&form, &BTreeMap::new());
        assert_eq!(s.rates, vec![0.2, 0.35, 0.5]);
        assert_eq!((s.dmin, s.dmax), (1e8, 1e12));
        assert_eq!(s.rule, Rule::Slope(0.01));
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert!(fields.contains(&"rates") && fields.contains(&"dmax") && fields.contains(&"rule"), "{fields:?}");
    }

    #[test]
    fn sizes_become_rates_and_models_give_n0() {
        let mut f = Form { fits: "preset:chinchilla-epoch-refit".into(), ..Form::default() };
        f.model = "Qwen2.5-0.5B".into();
        f.by = "n".into();
        f.rates = "247016384".into();
        let (s, errors) = resolve(&f, &BTreeMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(s.n0, 494_032_768.0);
        assert!((s.rates[0] - 0.5).abs() < 1e-12);
    }
}
