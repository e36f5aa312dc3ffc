//! The Leptos components: the form, the plot with its hover read-out, the results table and the
//! exports. Thin over signals: all numbers and text come from `state`, `compute`, `calculator`
//! and `plot`.

use crate::calculator::{self, Row};
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
    for key in form.with_untracked(|f| f.fit_keys().map(str::to_string).collect::<Vec<_>>()) {
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
        let checked = move || form.with(|f| f.has_fit(crate::state::AUTO_P2));
        let toggle = move |ev: leptos::ev::Event| form.update(|f| f.toggle_fit(crate::state::AUTO_P2, event_target_checked(&ev)));
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
            let checked = move || form.with(|f| f.has_fit(&key));
            let toggle = move |ev: leptos::ev::Event| form.update(|f| f.toggle_fit(&key2, event_target_checked(&ev)));
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
            form.update(|f| f.add_fit(&key));
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
                    let checked = move || form.with(|f| f.has_fit(&key));
                    let toggle = move |ev: leptos::ev::Event| form.update(|f| f.toggle_fit(&key2, event_target_checked(&ev)));
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
    let rule_kind = move || form.with(|f| f.rule_kind().to_string());
    let rule_value = move || form.with(|f| f.rule_value().to_string());
    let set_rule_kind = move |ev: leptos::ev::Event| form.update(|f| f.set_rule_kind(&event_target_value(&ev)));
    let set_rule_value = move |ev: leptos::ev::Event| form.update(|f| f.set_rule_value(&event_target_value(&ev)));

    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some(target) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let rect = target.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let x = (f64::from(ev.client_x()) - rect.left()) / rect.width() * WIDTH;
        hover.set(Some(view_state.with(|v| v.axes.tokens_at(x))));
    };
    let readout = move || match hover.get() {
        None => "Hover over the plot to read (tokens, loss).".to_string(),
        Some(d) => view_state.with(|v| resolved.with(|(sc, _)| calculator::readout(d, &v.series, &sc.fits))),
    };

    let rows = move || {
        view_state.with(|v| {
            v.series
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let n = s.inputs.n();
                    let Row { budget, budget_value, band, loss_at_budget: at, asymptote: asym, flops, gpu_hours: hours, price } = Row::of(s);
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
        let load = load_error.get();
        let items = resolved.with(|(sc, errs)| view_state.with(|v| calculator::messages(&link_notes, errs, &v.errors, load.as_deref(), &sc.fits, &v.series)));
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
