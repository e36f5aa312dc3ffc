//! The Refit page: drop run logs, preview their curves (parsed here by the shared code), give
//! each file's metadata, then fit on the server (stored, shareable) or here in WASM (nothing
//! leaves the machine).

use crate::refit::{FileEntry, fit_svg, parse_entry, preview_svg, residuals};
use leptos::prelude::*;
use p2law_shared::api::{FitRequest, StoredFit, UploadMeta, UploadResponse};
use p2law_shared::data::Curve;
use p2law_shared::report::run_fit;
use p2law_shared::logs::RunMeta;
use p2law_shared::{FitReport, LawForm};
use std::collections::BTreeMap;

const TOKEN_KEY: &str = "p2law-token";

/// A finished fit and the curves it was fitted to.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    report: FitReport,
    curves: Vec<Curve>,
    server_id: Option<i64>,
}

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

/// Records (or clears) the message of one input, keyed by `what`.
fn note_error(errors: RwSignal<Vec<String>>, what: String, err: Option<String>) {
    errors.update(|e| {
        e.retain(|m| !m.starts_with(&format!("{what}:")));
        e.extend(err.map(|m| format!("{what}: {m}")));
    });
}

/// The number typed into a numeric field (`None` when empty), or why it is not one; text
/// fields (`method`, `metric`) give neither.
fn numeric_field(key: &str, text: &str) -> (Option<f64>, Option<String>) {
    let t = text.trim();
    if matches!(key, "method" | "metric") || t.is_empty() {
        return (None, None);
    }
    match t.parse::<f64>() {
        Ok(v) => (Some(v), None),
        Err(_) => (None, Some(format!("`{t}` is not a number"))),
    }
}

#[component]
pub fn RefitPage() -> impl IntoView {
    let token = RwSignal::new(storage().and_then(|s| s.get_item(TOKEN_KEY).ok().flatten()).unwrap_or_default());
    let files: RwSignal<Vec<FileEntry>> = RwSignal::new(Vec::new());
    let field_errors: RwSignal<Vec<String>> = RwSignal::new(Vec::new());
    let law = RwSignal::new("p2".to_string());
    let objective = RwSignal::new("lsq".to_string());
    let starts = RwSignal::new("quick".to_string());
    let holdout = RwSignal::new("last20".to_string());
    let boot = RwSignal::new("50".to_string());
    let outcome: RwSignal<Option<Outcome>> = RwSignal::new(None);
    let status = RwSignal::new(String::new());
    let busy = RwSignal::new(false);

    let run_meta: RwSignal<BTreeMap<String, BTreeMap<String, RunMeta>>> = RwSignal::new(BTreeMap::new());
    let parsed = Memo::new(move |_| {
        files.with(|fs| run_meta.with(|rm| fs.iter().map(|f| (f.name.clone(), parse_entry(f, rm.get(&f.name)))).collect::<Vec<_>>()))
    });
    // The forms are rebuilt only when the set of files or of runs changes, never while typing.
    let names = Memo::new(move |_| files.with(|fs| fs.iter().map(|f| f.name.clone()).collect::<Vec<_>>()));
    let run_names = Memo::new(move |_| {
        files.with(|fs| {
            fs.iter()
                .map(|f| parse_entry(f, None).ok().map(|l| l.curves.into_iter().map(|c| c.run).collect::<Vec<_>>()).unwrap_or_default())
                .collect::<Vec<_>>()
        })
    });
    let curves = Memo::new(move |_| {
        parsed.with(|ps| ps.iter().filter_map(|(_, r)| r.as_ref().ok().cloned()).flat_map(|l| l.curves).collect::<Vec<Curve>>())
    });

    let on_files = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(list) = input.files() else { return };
        for i in 0..list.length() {
            let Some(file) = list.get(i) else { continue };
            let name = file.name();
            let file = gloo_file::File::from(file);
            leptos::task::spawn_local(async move {
                match gloo_file::futures::read_as_bytes(&file).await {
                    Ok(bytes) => {
                        files.update(|fs| {
                            fs.retain(|f| f.name != name);
                            fs.push(FileEntry { name, bytes, options: Default::default() });
                        });
                    }
                    Err(e) => status.set(format!("{name}: {e}")),
                }
            });
        }
    };

    // One metadata form per file and per run; every change re-parses (and so re-validates).
    let file_forms = move || {
        names
            .get()
            .into_iter()
            .enumerate()
            .map(|(i, name)| {
                let summary = move || {
                    let result = parsed.with(|ps| ps.get(i).map(|(_, r)| r.clone()));
                    match result {
                        Some(Ok(log)) => (
                            false,
                            format!(
                                "{:?}: {} run(s), {} checkpoint(s), tokens {:?}, {} skipped",
                                log.format,
                                log.curves.len(),
                                log.curves.iter().map(|c| c.points.len()).sum::<usize>(),
                                log.token_source,
                                log.skipped.len()
                            ),
                        ),
                        Some(Err(e)) => (true, e),
                        None => (false, String::new()),
                    }
                };
                let file_input = move |key: &'static str, label: &'static str| {
                    let set = move |ev: leptos::ev::Event| {
                        let v = event_target_value(&ev);
                        let (num, err) = numeric_field(key, &v);
                        files.update(|fs| {
                            let Some(f) = fs.get_mut(i) else { return };
                            let o = &mut f.options;
                            match key {
                                "n0" => o.n0 = num,
                                "rho" => o.rho = num,
                                "l0" => o.l0 = num,
                                "tokens_per_step" => o.tokens_per_step = num,
                                "method" => o.method = Some(v.clone()).filter(|s| !s.is_empty()),
                                "metric" => o.metric = Some(v.clone()).filter(|s| !s.is_empty()),
                                _ => {}
                            }
                        });
                        note_error(field_errors, format!("{}: {key}", names.with_untracked(|n| n.get(i).cloned().unwrap_or_default())), err);
                    };
                    view! {
                        <label class="field"><span class="label">{label}</span>
                            <input type="text" class=format!("meta-{key}") data-file=i on:input=set />
                        </label>
                    }
                };
                let file_name = name.clone();
                let run_rows = move || {
                    let file_name = file_name.clone();
                    run_names
                        .get()
                        .get(i)
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .take(50)
                        .map(|run| {
                            let cell = |key: &'static str| {
                                let (file, run_key) = (file_name.clone(), run.clone());
                                let set = move |ev: leptos::ev::Event| {
                                    let run = &run_key;
                                    let v = event_target_value(&ev);
                                    let (num, err) = numeric_field(key, &v);
                                    run_meta.update(|rm| {
                                        let m = rm.entry(file.clone()).or_default().entry(run.to_string()).or_default();
                                        match key {
                                            "n0" => m.n0 = num,
                                            "rho" => m.rho = num,
                                            "l0" => m.l0 = num,
                                            _ => m.method = Some(v.clone()).filter(|s| !s.is_empty()),
                                        }
                                    });
                                    note_error(field_errors, format!("{file}: run {run}: {key}"), err);
                                };
                                view! { <td><input type="text" class=format!("run-{key}") data-run=run.clone() aria-label=format!("{run} {key}") on:input=set /></td> }
                            };
                            view! { <tr><td>{run.clone()}</td>{cell("n0")}{cell("rho")}{cell("l0")}{cell("method")}</tr> }
                        })
                        .collect_view()
                };
                view! {
                    <fieldset class="file" data-file=i>
                        <legend>{name}</legend>
                        <p class=move || if summary().0 { "parse error" } else { "parse ok" }>{move || summary().1}</p>
                        <div class="meta-grid">
                            {file_input("n0", "N0 (all runs)")}
                            {file_input("rho", "ρ (all runs)")}
                            {file_input("l0", "L0 (all runs)")}
                            {file_input("tokens_per_step", "tokens per step")}
                            {file_input("metric", "loss key")}
                            {file_input("method", "method")}
                        </div>
                        <details open=true>
                            <summary>"Per run (overrides the file's values)"</summary>
                            <table class="run-meta"><thead><tr><th>"run"</th><th>"N0"</th><th>"ρ"</th><th>"L0"</th><th>"method"</th></tr></thead><tbody>{run_rows}</tbody></table>
                        </details>
                    </fieldset>
                }
            })
            .collect_view()
    };

    let request = move || -> Result<FitRequest, String> {
        let law: LawForm = law.get_untracked().parse().map_err(|e: p2law_shared::law::UnknownLaw| e.to_string())?;
        let bootstrap = boot.get_untracked().trim().parse::<usize>().map_err(|_| "bootstrap: expected a whole number".to_string())?;
        let v = serde_json::json!({
            "run_ids": [], "law": law, "objective": objective.get_untracked(), "starts": starts.get_untracked(),
            "holdout": Some(holdout.get_untracked()).filter(|h| !h.is_empty()), "bootstrap": bootstrap,
        });
        let r: FitRequest = serde_json::from_value(v).map_err(|e| e.to_string())?;
        r.resolve().map_err(|e| e.to_string())?;
        Ok(r)
    };

    let fit_here = move |_| {
        let req = match request() {
            Ok(r) => r,
            Err(e) => return status.set(e),
        };
        let cs = curves.get_untracked();
        let Ok((o, p, b)) = req.resolve() else { return };
        match run_fit(&cs, &o, p, b) {
            Ok(report) => {
                status.set("fitted here, in your browser; nothing was uploaded".into());
                outcome.set(Some(Outcome { report, curves: cs, server_id: None }));
            }
            Err(e) => status.set(e.to_string()),
        }
    };

    let fit_on_server = move |_| {
        let mut req = match request() {
            Ok(r) => r,
            Err(e) => return status.set(e),
        };
        let entries = files.get_untracked();
        if entries.is_empty() {
            return status.set("add at least one log file".into());
        }
        let t = token.get_untracked();
        if let Some(s) = storage() {
            let _ = s.set_item(TOKEN_KEY, &t);
        }
        busy.set(true);
        status.set("uploading…".into());
        leptos::task::spawn_local(async move {
            let result = async {
                let form = web_sys::FormData::new().map_err(|_| "FormData".to_string())?;
                let meta = UploadMeta {
                    all: Default::default(),
                    files: entries.iter().map(|f| (f.name.clone(), f.options.clone())).collect(),
                    runs: run_meta.get_untracked(),
                };
                form.append_with_str("meta", &serde_json::to_string(&meta).map_err(|e| e.to_string())?).map_err(|_| "meta".to_string())?;
                for f in &entries {
                    let parts = js_sys::Array::of1(&js_sys::Uint8Array::from(f.bytes.as_slice()).into());
                    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).map_err(|_| "blob".to_string())?;
                    form.append_with_blob_and_filename("file", &blob, &f.name).map_err(|_| "file".to_string())?;
                }
                let up: UploadResponse = crate::api::post_form("upload refused", "/api/uploads", Some(&t), form).await?;
                req.run_ids = up.files.iter().flat_map(|f| f.runs.iter().map(|r| r.id)).collect();
                status.set("fitting on the server…".into());
                crate::api::post_json::<_, StoredFit>("fit refused", "/api/fits", Some(&t), &req).await
            }
            .await;
            busy.set(false);
            match result {
                Ok(stored) => {
                    status.set(format!("stored as fit #{}", stored.id));
                    outcome.set(Some(Outcome { report: stored.report, curves: curves.get_untracked(), server_id: Some(stored.id) }));
                }
                Err(e) => status.set(e),
            }
        });
    };

    let result_view = move || {
        outcome.get().map(|o| {
            let r = &o.report;
            let names = r.law.law().params();
            let coef_rows = names
                .iter()
                .map(|n| {
                    let band = r.intervals.as_ref().and_then(|i| i.params.get(*n)).map_or(String::new(), |[lo, hi]| format!("[{lo:.4e}, {hi:.4e}]"));
                    let weak = if r.is_unidentified(n) { "not identified" } else { "" };
                    view! { <tr><td>{n.to_string()}</td><td class="coef" data-name=n.to_string()>{format!("{:.6e}", r.params[*n])}</td><td>{band}</td><td>{weak}</td></tr> }
                })
                .collect_view();
            let m = r.metrics;
            let holdout = r.holdout.as_ref().map(|h| {
                format!(
                    "held out ({}): {} test points, RMSE {:.5}, mean |err| {:.5}, max |err| {:.5}, mean rel {:.2}%",
                    h.protocol,
                    h.test_points,
                    h.metrics.rmse,
                    h.mean_abs_error,
                    h.max_abs_error,
                    h.mean_rel_error * 100.0
                )
            });
            let link = match o.server_id {
                Some(id) => format!("/?fits=server:{id}"),
                None => format!("/?fits={}", crate::fits::inline_key(r)),
            };
            let resid = residuals(&o.curves, r)
                .into_iter()
                .map(|(run, n, mean, max)| view! { <tr><td>{run}</td><td>{n}</td><td>{format!("{mean:+.5}")}</td><td>{format!("{max:.5}")}</td></tr> })
                .collect_view();
            view! {
                <section id="fit-result">
                    <h2>{format!("{} fit — {}", r.law, r.law.describe())}</h2>
                    <p class="metrics">{format!("R² {}  ·  RMSE {:.5}  ·  Huber {:.3e}  ·  ASD {}  ·  {} points", m.r2.map_or("n/a".into(), |v| format!("{v:.5}")), m.rmse, m.huber, m.asd.map_or("n/a".into(), |v| format!("{v:.4}")), m.points)}</p>
                    <p class="holdout">{holdout}</p>
                    {r.degeneracy().map(|w| view! { <p class="warning degenerate" role="alert">{w}</p> })}
                    <table class="coefficients"><thead><tr><th>"coefficient"</th><th>"value"</th><th>"95% interval"</th><th></th></tr></thead><tbody>{coef_rows}</tbody></table>
                    <div class="plot" id="fit-plot" inner_html=fit_svg(&o.curves, r)></div>
                    <h3>"Residuals (predicted − observed)"</h3>
                    <table class="residuals"><thead><tr><th>"run"</th><th>"points"</th><th>"mean"</th><th>"max |r|"</th></tr></thead><tbody>{resid}</tbody></table>
                    <p><a id="open-in-calculator" href=link>"Open in calculator"</a></p>
                </section>
            }
        })
    };

    let select = move |id: &'static str, label: &'static str, sig: RwSignal<String>, options: Vec<(&'static str, &'static str)>| {
        let opts = options.into_iter().map(|(v, t)| view! { <option value=v>{t}</option> }).collect_view();
        view! {
            <label class="field" for=id><span class="label">{label}</span>
                <select id=id prop:value=move || sig.get() on:change=move |ev| sig.set(event_target_value(&ev))>{opts}</select>
            </label>
        }
    };

    view! {
        <main class="refit">
            <form class="controls" on:submit=|ev| ev.prevent_default()>
                <fieldset>
                    <legend>"Run logs"</legend>
                    <label class="field" for="log-files"><span class="label">"HF trainer_state.json, W&B CSV, TensorBoard events, CSV/JSONL"</span>
                        <input id="log-files" type="file" multiple on:change=on_files />
                    </label>
                </fieldset>
                {file_forms}
                <fieldset>
                    <legend>"Fit"</legend>
                    {select("law", "Law", law, LawForm::ALL.iter().map(|l| (l.name(), l.name())).collect())}
                    {select("objective", "Objective", objective, vec![("lsq", "least squares (LM)"), ("huber-log", "Huber on log loss (L-BFGS)")])}
                    {select("starts", "Starts", starts, vec![("quick", "quick"), ("full", "full grid")])}
                    {select("holdout", "Held-out check", holdout, vec![("last20", "last 20% of each curve"), ("largest-n0", "largest N0"), ("highest-rho", "highest ρ"), ("", "none")])}
                    <label class="field" for="bootstrap"><span class="label">"Bootstrap resamples"</span>
                        <input id="bootstrap" type="text" prop:value=move || boot.get() on:input=move |ev| boot.set(event_target_value(&ev)) />
                    </label>
                    <label class="field" for="token"><span class="label">"API token (for the server)"</span>
                        <input id="token" type="password" autocomplete="off" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) />
                    </label>
                    <div class="exports">
                        <button type="button" id="fit-server" disabled=move || busy.get() on:click=fit_on_server>"Upload and fit on server"</button>
                        <button type="button" id="fit-here" on:click=fit_here>"Fit here (nothing leaves this machine)"</button>
                    </div>
                </fieldset>
            </form>
            <section class="output">
                <p id="refit-status" class="status" aria-live="polite">{move || status.get()}</p>
                <ul class="messages">{move || field_errors.get().into_iter().map(|e| view! { <li>{e}</li> }).collect_view()}</ul>
                <h2>"Preview"</h2>
                <div class="plot" id="preview" inner_html=move || curves.with(|c| preview_svg(c))></div>
                {result_view}
            </section>
        </main>
    }
}

