//! The Leptos components: the form, the plot with its hover read-out, the results table and the
//! exports. Thin over signals: all numbers come from `state`, `compute` and `plot`.

use crate::compute::{Series, SeriesError, compute};
use crate::fits::parse_fit_json;
use crate::plot::{Axes, HEIGHT, WIDTH, render};
use crate::state::{FieldError, FitSource, Form, Scenario, resolve};
use leptos::prelude::*;
use p2law_shared::models::KNOWN_MODELS;
use std::collections::BTreeMap;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;

/// Everything drawn for one state.
#[derive(Clone, PartialEq)]
struct View {
    series: Vec<Series>,
    errors: Vec<SeriesError>,
    axes: Axes,
    svg: String,
}

fn now_ms() -> f64 {
    window().performance().map_or(0.0, |p| p.now())
}

/// Records how long the last recompute + render took, for the in-browser benchmark.
fn record_redraw(ms: f64) {
    let _ = js_sys::Reflect::set(&window(), &JsValue::from_str("__p2law_redraw_ms"), &JsValue::from_f64(ms));
    let count = js_sys::Reflect::get(&window(), &JsValue::from_str("__p2law_redraws")).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
    let _ = js_sys::Reflect::set(&window(), &JsValue::from_str("__p2law_redraws"), &JsValue::from_f64(count + 1.0));
}

fn fmt_sci(v: f64) -> String {
    if v.is_finite() { format!("{v:.3e}") } else { "—".into() }
}

/// The page for the current path: `/refit` or the calculator.
#[component]
pub fn App() -> impl IntoView {
    let path = window().location().pathname().unwrap_or_default();
    view! {
        <nav class="pages">
            <a href="/" class:current=!path.starts_with("/refit") && !path.starts_with("/calibrate") && !path.starts_with("/forecast")>"Calculator"</a>
            <a href="/refit" class:current=path.starts_with("/refit")>"Refit from run logs"</a>
            <a href="/calibrate" class:current=path.starts_with("/calibrate")>"Calibrate"</a>
            <a href="/forecast" class:current=path.starts_with("/forecast")>"Forecast a run"</a>
        </nav>
        {if path.starts_with("/refit") {
            crate::refit_page::RefitPage().into_any()
        } else if path.starts_with("/forecast") {
            crate::forecast_page::ForecastPage().into_any()
        } else if path.starts_with("/calibrate") {
            crate::calibrate_page::CalibratePage().into_any()
        } else {
            Calculator().into_any()
        }}
    }
}

/// Fetches `GET /api/fits/{id}`.
pub async fn fetch_fit(id: i64) -> Result<p2law_shared::api::StoredFit, String> {
    crate::api::get(&format!("server fit {id}"), &format!("/api/fits/{id}")).await
}

#[component]
pub fn Calculator() -> impl IntoView {
    let search = window().location().search().unwrap_or_default();
    let (initial, link_notes) = Form::from_query(&search);
    let form = RwSignal::new(initial);
    let custom: RwSignal<BTreeMap<String, FitSource>> = RwSignal::new(BTreeMap::new());
    let load_error = RwSignal::new(None::<String>);
    let hover = RwSignal::new(None::<f64>);

    // Fits stored on the server, named in the link as `server:<id>`.
    for key in form.with_untracked(|f| f.fits.split(',').map(|k| k.trim().to_string()).collect::<Vec<_>>()) {
        let Some(id) = key.strip_prefix("server:").and_then(|i| i.parse::<i64>().ok()) else { continue };
        leptos::task::spawn_local(async move {
            match fetch_fit(id).await {
                Ok(stored) => custom.update(|c| {
                    let label = format!("server fit #{id} ({})", stored.report.law);
                    c.insert(key.clone(), FitSource { key, label, report: stored.report });
                }),
                Err(e) => load_error.set(Some(e)),
            }
        });
    }

    let resolved: Memo<(Scenario, Vec<FieldError>)> = Memo::new(move |_| form.with(|f| custom.with(|c| resolve(f, c))));
    let view_state: Memo<View> = Memo::new(move |_| {
        let t0 = now_ms();
        let (series, errors) = resolved.with(|(s, _)| compute(s));
        let (dmin, dmax) = resolved.with(|(s, _)| (s.dmin, s.dmax));
        let axes = Axes::fit(&series, &[], dmin, dmax);
        let svg = render(&series, &[], &axes);
        record_redraw(now_ms() - t0);
        View { series, errors, axes, svg }
    });

    // The URL always holds the whole state.
    Effect::new(move |_| {
        let query = form.with(Form::to_query);
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(&JsValue::NULL, "", Some(&format!("?{query}")));
        }
    });

    let field = move |key: &'static str| {
        let value = move || form.with(|f| f.get(key).to_string());
        let set = move |ev: leptos::ev::Event| form.update(|f| f.set(key, event_target_value(&ev)));
        (value, set)
    };
    let error_of = move |key: &'static str| {
        move || resolved.with(|(_, errs)| errs.iter().filter(|e| e.field == key).map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))
    };

    let text_input = move |key: &'static str, label: &'static str, hint: &'static str| {
        let (value, set) = field(key);
        let err = error_of(key);
        view! {
            <label class="field" for=key>
                <span class="label">{label}</span>
                <input id=key name=key type="text" inputmode="decimal" prop:value=value on:input=set aria-describedby=format!("{key}-msg") />
                <span class="hint">{hint}</span>
                <span class="error" id=format!("{key}-msg") role="alert">{err}</span>
            </label>
        }
    };

    let presets = p2law_shared::presets::presets();
    let auto_box = {
        let checked = move || form.with(|f| f.fits.split(',').any(|k| k.trim() == crate::state::AUTO_P2));
        let toggle = move |ev: leptos::ev::Event| form.update(|f| toggle_fit(f, crate::state::AUTO_P2, event_target_checked(&ev)));
        view! {
            <li>
                <label><input type="checkbox" class="preset" data-id="p2" prop:checked=checked on:change=toggle /> "P² preset of the pruning method below (p2law study)"</label>
            </li>
        }
    };
    let preset_boxes = presets
        .iter()
        .map(|p| {
            let key = format!("preset:{}", p.id);
            let key2 = key.clone();
            let checked = move || form.with(|f| f.fits.split(',').any(|k| k.trim() == key));
            let toggle = move |ev: leptos::ev::Event| form.update(|f| toggle_fit(f, &key2, event_target_checked(&ev)));
            view! {
                <li>
                    <label><input type="checkbox" class="preset" data-id=p.id.clone() prop:checked=checked on:change=toggle /> {p.title.clone()}</label>
                    <details><summary>"provenance"</summary><p class="provenance">{p.provenance.clone()}</p></details>
                </li>
            }
        })
        .collect_view();

    let add_fit = move |name: String, text: String| match parse_fit_json(&name, &text) {
        Ok(mut fit) => {
            let method = form.with_untracked(|f| f.method.trim().to_string());
            if !method.is_empty() {
                fit.label = format!("{method} — {}", fit.label);
            }
            let key = fit.key.clone();
            custom.update(|c| {
                c.insert(key.clone(), fit);
            });
            form.update(|f| {
                if !f.fits.split(',').any(|k| k == key) {
                    f.fits = if f.fits.is_empty() { key } else { format!("{},{}", f.fits, key) };
                }
            });
            load_error.set(None);
        }
        Err(e) => load_error.set(Some(e)),
    };
    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(file) = input.files().and_then(|l| l.get(0)) else { return };
        let name = file.name();
        let file = gloo_file::File::from(file);
        leptos::task::spawn_local(async move {
            match gloo_file::futures::read_as_text(&file).await {
                Ok(text) => add_fit(name, text),
                Err(e) => load_error.set(Some(format!("{name}: {e}"))),
            }
        });
    };
    let pasted = RwSignal::new(String::new());
    let custom_boxes = move || {
        custom.with(|c| {
            c.values()
                .map(|fit| {
                    let key = fit.key.clone();
                    let key2 = key.clone();
                    let checked = move || form.with(|f| f.fits.split(',').any(|k| k.trim() == key));
                    let toggle = move |ev: leptos::ev::Event| form.update(|f| toggle_fit(f, &key2, event_target_checked(&ev)));
                    let band = if fit.report.intervals.is_some() { " (with band)" } else { "" };
                    view! { <li><label><input type="checkbox" class="custom-fit" prop:checked=checked on:change=toggle /> {format!("{}{band}", fit.label)}</label></li> }
                })
                .collect_view()
        })
    };

    let model_options = KNOWN_MODELS
        .iter()
        .map(|m| view! { <option value=m.name>{format!("{} ({:.3e} params)", m.name, m.shape.parameters() as f64)}</option> })
        .collect_view();
    let (model_value, model_set) = field("model");
    let (by_value, by_set) = field("by");
    let rule_kind = move || form.with(|f| f.rule.split_once(':').map_or("slope".to_string(), |(k, _)| k.to_string()));
    let rule_value = move || form.with(|f| f.rule.split_once(':').map_or(String::new(), |(_, v)| v.to_string()));
    let set_rule_kind = move |ev: leptos::ev::Event| {
        let kind = event_target_value(&ev);
        form.update(|f| {
            let v = f.rule.split_once(':').map_or("0.01".to_string(), |(_, v)| v.to_string());
            f.rule = format!("{kind}:{v}");
        })
    };
    let set_rule_value = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        form.update(|f| {
            let k = f.rule.split_once(':').map_or("slope".to_string(), |(k, _)| k.to_string());
            f.rule = format!("{k}:{v}");
        })
    };

    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some(target) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let rect = target.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let x = (f64::from(ev.client_x()) - rect.left()) / rect.width() * WIDTH;
        hover.set(Some(view_state.with(|v| v.axes.tokens_at(x))));
    };
    let readout = move || {
        let Some(d) = hover.get() else { return "Hover over the plot to read (tokens, loss).".to_string() };
        view_state.with(|v| {
            let parts: Vec<String> = v
                .series
                .iter()
                .map(|s| {
                    let x = p2law_shared::Inputs { tokens: d, ..s.inputs };
                    resolved.with(|(sc, _)| {
                        let fit = sc.fits.iter().find(|f| f.label == s.fit_label);
                        let loss = fit.and_then(|f| f.report.coefficients().ok().map(|p| p2law_shared::fit::predict(f.report.law, &p, &x)));
                        format!("{}: {:.4}", s.label, loss.unwrap_or(f64::NAN))
                    })
                })
                .collect();
            format!("D = {d:.3e} tokens — {}", parts.join(" · "))
        })
    };

    let rows = move || {
        view_state.with(|v| {
            v.series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let n = s.inputs.n();
                    let (budget, band, at, asym, flops, hours, price, budget_value) = match &s.budget {
                        Ok(b) => (
                            fmt_sci(b.tokens),
                            b.tokens_band.map_or(String::new(), |[lo, hi]| format!("[{}, {}]", fmt_sci(lo), fmt_sci(hi))),
                            format!("{:.4}", b.loss_at_budget),
                            b.asymptote.map_or(String::new(), |a| format!("{a:.4}")),
                            fmt_sci(b.cost.flops),
                            b.cost.gpu_hours.map_or(String::new(), |h| format!("{h:.1}")),
                            b.cost.price.map_or(String::new(), |p| format!("{p:.0}")),
                            b.tokens.to_string(),
                        ),
                        Err(e) => (e.clone(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new(), String::new()),
                    };
                    view! {
                        <tr data-series=i>
                            <td><span class="swatch" style=format!("background:{}", crate::plot::PALETTE[i % crate::plot::PALETTE.len()])></span>{s.label.clone()}</td>
                            <td>{format!("{:.3e}", n)}</td>
                            <td class="budget" data-value=budget_value>{budget}</td>
                            <td>{band}</td>
                            <td>{at}</td>
                            <td class="final-loss" data-value=s.final_loss.to_string() data-tokens=s.tokens.last().copied().unwrap_or(f64::NAN).to_string()>{format!("{:.4}", s.final_loss)}</td>
                            <td>{asym}</td>
                            <td>{flops}</td>
                            <td>{hours}</td>
                            <td>{price}</td>
                        </tr>
                    }
                })
                .collect_view()
        })
    };

    let messages = move || {
        let mut all: Vec<String> = link_notes.clone();
        resolved.with(|(_, errs)| all.extend(errs.iter().map(|e| format!("{}: {}", e.field, e.message))));
        view_state.with(|v| all.extend(v.errors.iter().map(|e| format!("{}: {}", e.label, e.message))));
        if let Some(e) = load_error.get() {
            all.push(e);
        }
        let mut items: Vec<(&'static str, String)> = all.into_iter().map(|m| ("message", m)).collect();
        // A degenerate fit and every extrapolation are warnings, once each.
        resolved.with(|(s, _)| {
            items.extend(s.fits.iter().filter_map(|f| f.report.degeneracy().map(|w| ("warning degenerate", format!("{}: {w}", f.label)))));
        });
        view_state.with(|v| {
            let mut seen = std::collections::BTreeSet::new();
            for s in &v.series {
                for m in &s.extrapolation {
                    let line = format!("{}: extrapolation: {m}", s.fit_label);
                    if seen.insert(line.clone()) {
                        items.push(("warning extrapolation", line));
                    }
                }
            }
        });
        items.into_iter().map(|(class, m)| view! { <li class=class>{m}</li> }).collect_view()
    };

    let export_svg = move |_| download("p2law-curves.svg", "image/svg+xml", &view_state.with(|v| v.svg.clone()));
    let export_csv = move |_| download("p2law-curves.csv", "text/csv", &view_state.with(|v| crate::compute::curves_csv(&v.series)));
    let export_png = move |_| export_png(view_state.with(|v| v.svg.clone()));

    view! {
        <header>
            <h1>"p2law"</h1>
            <p class="tagline">"How many tokens does a pruned LLM need to heal? Predictions computed in your browser."</p>
        </header>
        <main>
            <form class="controls" on:submit=|ev| ev.prevent_default()>
                <fieldset>
                    <legend>"Law and fit"</legend>
                    <ul class="presets">{auto_box}{preset_boxes}{custom_boxes}</ul>
                    <label class="field" for="fit-file"><span class="label">"Fit file (p2law fit --out)"</span>
                        <input id="fit-file" type="file" accept=".json,application/json" on:change=on_file />
                    </label>
                    <label class="field" for="fit-paste"><span class="label">"…or paste a fit"</span>
                        <textarea id="fit-paste" rows="2" prop:value=move || pasted.get() on:input=move |ev| pasted.set(event_target_value(&ev))></textarea>
                    </label>
                    <button type="button" id="fit-paste-add" on:click=move |_| add_fit("pasted fit".into(), pasted.get_untracked())>"Use pasted fit"</button>
                </fieldset>
                <fieldset>
                    <legend>"Model"</legend>
                    <label class="field" for="model"><span class="label">"Model before pruning"</span>
                        <select id="model" prop:value=model_value on:change=model_set>
                            {model_options}
                            <option value="custom">"custom N0…"</option>
                        </select>
                        <span class="error" role="alert">{error_of("model")}</span>
                    </label>
                    {text_input("n0", "N0 (parameters, used with custom)", "e.g. 1.2e9")}
                    {text_input("l0", "L0, loss before pruning (nats/token)", "used by P² forms")}
                    <label class="field" for="by"><span class="label">"Prune by"</span>
                        <select id="by" prop:value=by_value on:change=by_set>
                            <option value="rho">"rate ρ (fraction removed)"</option>
                            <option value="n">"size N after pruning"</option>
                        </select>
                    </label>
                    {text_input("rates", "Rates ρ or sizes N (comma-separated)", "one curve each")}
                    {text_input("method", "Pruning method (label)", "depth, width, 2:4")}
                </fieldset>
                <fieldset>
                    <legend>"Tokens and budget"</legend>
                    {text_input("dmin", "Tokens from", "e.g. 1e8")}
                    {text_input("dmax", "Tokens to", "e.g. 1e12")}
                    {text_input("points", "Points per curve", "2–5000")}
                    <label class="field" for="rule-kind"><span class="label">"Budget rule"</span>
                        <select id="rule-kind" prop:value=rule_kind on:change=set_rule_kind>
                            <option value="slope">"slope below τ (loss per 1e9 tokens)"</option>
                            <option value="target">"reach target loss"</option>
                            <option value="gap">"within ε of the asymptote"</option>
                        </select>
                    </label>
                    <label class="field" for="rule-value"><span class="label">"τ / target / ε"</span>
                        <input id="rule-value" type="text" inputmode="decimal" prop:value=rule_value on:input=set_rule_value />
                        <span class="error" role="alert">{error_of("rule")}</span>
                    </label>
                </fieldset>
                <fieldset>
                    <legend>"Hardware"</legend>
                    {text_input("flops", "GPU peak FLOP/s", "H100 SXM bf16: 9.89e14")}
                    {text_input("mfu", "Utilisation (MFU)", "0–1")}
                    {text_input("price", "Price per GPU-hour", "")}
                    {text_input("teacher", "Distillation teacher parameters (optional)", "adds 2·N_t·D FLOPs")}
                </fieldset>
            </form>
            <section class="output">
                <ul id="messages" class="messages" aria-live="polite">{messages}</ul>
                <div id="plot" class="plot" on:mousemove=on_move on:mouseleave=move |_| hover.set(None) inner_html=move || view_state.with(|v| v.svg.clone())></div>
                <p id="readout" class="readout" aria-live="polite">{readout}</p>
                <div class="exports">
                    <button type="button" id="export-svg" on:click=export_svg>"Export SVG"</button>
                    <button type="button" id="export-png" on:click=export_png>"Export PNG"</button>
                    <button type="button" id="export-csv" on:click=export_csv>"Export CSV"</button>
                    <button type="button" id="copy-link" on:click=move |_| copy_link()>"Copy link"</button>
                </div>
                <div class="table-wrap">
                    <table id="results">
                        <thead><tr>
                            <th>"curve"</th><th>"N"</th><th>"budget (tokens)"</th><th>"band"</th><th>"loss at budget"</th>
                            <th>"loss at end"</th><th>"asymptote"</th><th>"FLOPs"</th><th>"GPU-hours"</th><th>"cost"</th>
                        </tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                </div>
            </section>
        </main>
        <footer>"Plot " {WIDTH} "×" {HEIGHT} " · law core compiled to WebAssembly · P² law: Chen et al., arXiv 2411.10272"</footer>
    }
}

/// Adds or removes one fit key in the form's list.
fn toggle_fit(f: &mut Form, key: &str, on: bool) {
    let mut keys: Vec<String> = f.fits.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty() && k != key).collect();
    if on {
        keys.push(key.to_string());
    }
    f.fits = keys.join(",");
}


fn download(name: &str, mime: &str, text: &str) {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type(mime);
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else { return };
    download_blob(name, &blob);
}

fn download_blob(name: &str, blob: &web_sys::Blob) {
    let Ok(url) = web_sys::Url::create_object_url_with_blob(blob) else { return };
    let document = window().document().expect("a document");
    if let Ok(a) = document.create_element("a").map(|e| e.unchecked_into::<web_sys::HtmlAnchorElement>()) {
        a.set_href(&url);
        a.set_download(name);
        a.click();
    }
    let _ = web_sys::Url::revoke_object_url(&url);
}

/// Rasterises the SVG on a canvas at 2× and downloads it as PNG.
fn export_png(svg: String) {
    let parts = js_sys::Array::of1(&JsValue::from_str(&svg));
    let opts = web_sys::BlobPropertyBag::new();
    opts.set_type("image/svg+xml");
    let Ok(blob) = web_sys::Blob::new_with_str_sequence_and_options(&parts, &opts) else { return };
    let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob) else { return };
    let Ok(img) = web_sys::HtmlImageElement::new() else { return };
    let img2 = img.clone();
    let url2 = url.clone();
    let onload = Closure::once(move || {
        let document = window().document().expect("a document");
        let Ok(canvas) = document.create_element("canvas").map(|e| e.unchecked_into::<web_sys::HtmlCanvasElement>()) else { return };
        canvas.set_width((WIDTH * 2.0) as u32);
        canvas.set_height((HEIGHT * 2.0) as u32);
        if let Ok(Some(ctx)) = canvas.get_context("2d") {
            let ctx: web_sys::CanvasRenderingContext2d = ctx.unchecked_into();
            let _ = ctx.draw_image_with_html_image_element_and_dw_and_dh(&img2, 0.0, 0.0, WIDTH * 2.0, HEIGHT * 2.0);
            if let Ok(data) = canvas.to_data_url_with_type("image/png") {
                if let Ok(a) = document.create_element("a").map(|e| e.unchecked_into::<web_sys::HtmlAnchorElement>()) {
                    a.set_href(&data);
                    a.set_download("p2law-curves.png");
                    a.click();
                }
            }
        }
        let _ = web_sys::Url::revoke_object_url(&url2);
    });
    img.set_onload(Some(onload.as_ref().unchecked_ref()));
    onload.forget();
    img.set_src(&url);
}

fn copy_link() {
    let href = window().location().href().unwrap_or_default();
    let _ = window().navigator().clipboard().write_text(&href);
}
