//! The Forecast page: drop one run's partial log (read and forecast here, nothing uploaded), or
//! name a run stored on the server, or follow a calibration job's unit as it trains (its
//! server-sent events; `/forecast?job=ID&unit=KEY` opens on it): see where its loss is going
//! with a band, when the rule is met, and what is going wrong.

use crate::calibrate::LiveCurves;
use crate::forecast::{View, along_from_fields, compute, compute_live, compute_stored, prior_from_fields};
use p2law_shared::api::RunDetail;
use leptos::prelude::*;
use p2law_shared::budget::Rule;
use p2law_shared::forecast::log::LogChoice;

/// A number typed into a field: `Ok(None)` when empty.
fn number(label: &str, text: &str) -> Result<Option<f64>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        _ => Err(format!("{label}: `{t}` is not a positive number")),
    }
}

#[component]
pub fn ForecastPage() -> impl IntoView {
    let file: RwSignal<Option<(String, Result<Vec<u8>, String>)>> = RwSignal::new(None);
    let tps = RwSignal::new(String::new());
    let metric = RwSignal::new(String::new());
    let run = RwSignal::new(String::new());
    let rule = RwSignal::new("gap:0.05".to_string());
    let horizon = RwSignal::new(String::new());
    // The run's learning-rate schedule and its anneal, for any source.
    let schedule = RwSignal::new(String::new());
    let anneal = RwSignal::new(String::new());
    // The pruned model behind a dropped log, for the P² prior (a stored run or a job has its own).
    let method = RwSignal::new(String::new());
    let n0 = RwSignal::new(String::new());
    let rho = RwSignal::new(String::new());
    let l0 = RwSignal::new(String::new());
    let server_id = RwSignal::new(String::new());
    // A run stored on the server, fetched by id (the file, when one is dropped later, wins).
    let stored: RwSignal<Option<Result<RunDetail, String>>> = RwSignal::new(None);
    // A calibration job followed live: its id, the unit asked for (empty: the one training now),
    // and the curves its events have brought so far.
    let query = web_sys::UrlSearchParams::new_with_str(&window().location().search().unwrap_or_default()).ok();
    let param = |k: &str| query.as_ref().and_then(|q| q.get(k)).unwrap_or_default();
    let job_id = RwSignal::new(param("job"));
    let job_unit = RwSignal::new(param("unit"));
    let live: RwSignal<Option<(i64, LiveCurves)>> = RwSignal::new(None);
    let follow = move || {
        let text = job_id.get_untracked();
        let Ok(id) = text.trim().parse::<i64>() else {
            stored.set(Some(Err(format!("calibration job: `{}` is not a job id", text.trim()))));
            return;
        };
        file.set(None);
        stored.set(None);
        live.set(Some((id, LiveCurves::default())));
        crate::api::follow_job(id, move |e| live.update(|l| if let Some((_, c)) = l { c.apply(&e) }));
    };
    if !job_id.get_untracked().trim().is_empty() {
        follow();
    }
    let load_stored = move |_| {
        let text = server_id.get();
        let Ok(id) = text.trim().parse::<i64>() else {
            stored.set(Some(Err(format!("server run: `{}` is not a run id", text.trim()))));
            return;
        };
        file.set(None);
        live.set(None);
        leptos::task::spawn_local(async move {
            let got = async {
                crate::api::get::<RunDetail>(&format!("server run {id}"), &format!("/api/runs/{id}")).await
            }
            .await;
            stored.set(Some(got));
        });
    };

    let on_file = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(f) = input.files().and_then(|l| l.get(0)) else { return };
        let name = f.name();
        let f = gloo_file::File::from(f);
        leptos::task::spawn_local(async move {
            let bytes = gloo_file::futures::read_as_bytes(&f).await.map_err(|e| format!("{name}: {e}"));
            stored.set(None);
            live.set(None);
            file.set(Some((name, bytes)));
        });
    };

    let result = Memo::new(move |_| -> Option<Result<View, String>> {
        let rule_of = |t: String| -> Result<Option<Rule>, String> { if t.trim().is_empty() { Ok(None) } else { t.trim().parse().map(Some).map_err(|e| format!("rule: {e}")) } };
        if let Some((id, curves)) = live.get() {
            let unit = job_unit.get();
            let unit = if unit.trim().is_empty() { curves.latest.clone()? } else { unit.trim().to_string() };
            curves.curves.get(&unit)?;
            return Some((|| compute_live(id, &curves, &unit, number("horizon", &horizon.get())?, rule_of(rule.get())?, along_from_fields(&schedule.get(), &anneal.get())?))());
        }
        if let Some(s) = stored.get() {
            return Some((|| compute_stored(&s?, number("horizon", &horizon.get())?, rule_of(rule.get())?, along_from_fields(&schedule.get(), &anneal.get())?))());
        }
        let (name, bytes) = file.get()?;
        Some((|| {
            let bytes = bytes?;
            let choice = LogChoice {
                tokens_per_step: number("tokens per step", &tps.get())?,
                metric: Some(metric.get()).filter(|m| !m.trim().is_empty()),
                run: Some(run.get()).filter(|m| !m.trim().is_empty()),
                ..Default::default()
            };
            let rule_text = rule.get();
            let r: Option<Rule> = if rule_text.trim().is_empty() { None } else { Some(rule_text.trim().parse().map_err(|e| format!("rule: {e}"))?) };
            let prior = prior_from_fields(&method.get(), number("N0", &n0.get())?, number("ρ", &rho.get())?, number("L0", &l0.get())?)?;
            compute(&name, &bytes, &choice, number("horizon", &horizon.get())?, r, prior, along_from_fields(&schedule.get(), &anneal.get())?)
        })())
    });

    let field = move |id: &'static str, label: &'static str, sig: RwSignal<String>, hint: &'static str| {
        view! {
            <label class="field" for=id><span class="label">{label}</span>
                <input id=id type="text" placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev)) />
            </label>
        }
    };

    // What the followed job is doing, above the forecast.
    let live_line = move || {
        live.get().map(|(id, c)| {
            let unit = job_unit.get();
            let unit = if unit.trim().is_empty() { c.latest.clone().unwrap_or_default() } else { unit.trim().to_string() };
            let n = c.curves.get(&unit).map_or(0, |k| k.points.len());
            let state = match &c.finished {
                Some(e) => format!("the job ended: {}", e.stage),
                None => c.status.clone(),
            };
            view! { <p id="forecast-live" class="status">{format!("following job {id}, unit {unit}: {n} held-out checkpoints so far · {state}")}</p> }
        })
    };

    let output = move || match result.get() {
        None => view! { <p class="status">"Drop a run's log: trainer_state.json, W&B CSV, TensorBoard events, CSV or JSONL. It is read here; nothing is uploaded."</p> }.into_any(),
        Some(Err(e)) => view! { <p id="forecast-error" class="status error">{e}</p> }.into_any(),
        Some(Ok(v)) => {
            let f = v.forecast.clone();
            let c = f.fit.curve;
            let pct = 100.0 * f.fit.level;
            let summary = format!(
                "{}: {} loss {:.4} at {:.3e} tokens ({} checkpoints); L = {:.4} + {:.4}·(D/{:.2e})^-{:.3}, asymptote {:.4} ({pct:.0} % band {:.4}..{:.4})",
                v.run.run,
                v.run.metric,
                f.last.loss,
                f.last.tokens,
                f.fit.checkpoints,
                c.c,
                c.a,
                c.d_ref,
                c.beta,
                f.fit.asymptote_value(),
                f.fit.asymptote[0],
                f.fit.asymptote[1]
            );
            // The preset's caveat, when it has one, is among the notes below.
            let prior_line = f.fit.prior.as_ref().map(|p| view! { <p id="forecast-prior" class="status" data-source=p.source.clone()>{format!("prior {}", p.summary())}</p> });
            let rule_line = f.rule.as_ref().map(|r| match (r.tokens, r.progress) {
                (Some(t), Some(p)) if p >= 1.0 => format!("{} already met, at {t:.3e} tokens", r.rule),
                (Some(t), Some(p)) => format!(
                    "{} met at {t:.3e} tokens (band {} .. {}): the run is {:.1} % of the way",
                    r.rule,
                    r.lo.map_or("?".into(), |v| format!("{v:.3e}")),
                    r.hi.map_or("never".into(), |v| format!("{v:.3e}")),
                    100.0 * p
                ),
                _ => format!("{}: the fitted curve never meets it", r.rule),
            });
            let progress = f.rule.as_ref().and_then(|r| r.progress).unwrap_or(0.0).min(1.0);
            let last = f.points.last().copied();
            let rows = [f.points.first().copied(), f.points.get(f.points.len() / 2).copied(), last]
                .into_iter()
                .flatten()
                .map(|p| view! { <tr><td class="tokens">{format!("{:.3e}", p.tokens)}</td><td class="loss">{format!("{:.4}", p.loss)}</td><td class="band">{format!("{:.4} .. {:.4}", p.lo, p.hi)}</td></tr> })
                .collect_view();
            let warnings = f.warnings.iter().map(|w| view! { <li class="warning" data-kind=w.kind.name()>{w.message.clone()}</li> }).collect_view();
            let notes = f.notes.iter().map(|n| view! { <li class="note">{n.clone()}</li> }).collect_view();
            view! {
                <p id="forecast-summary" class="status">{summary}</p>
                {prior_line}
                {rule_line.map(|l| view! { <p id="forecast-rule-met"><progress max="1" value=progress></progress>" "{l}</p> })}
                <div class="plot" id="forecast-plot" inner_html=v.svg.clone()></div>
                <table id="forecast-points"><thead><tr><th>"tokens"</th><th>"loss"</th><th>{format!("{pct:.0} % band")}</th></tr></thead><tbody>{rows}</tbody></table>
                <ul id="forecast-warnings" class="messages">{warnings}</ul>
                <ul id="forecast-notes" class="notes">{notes}</ul>
            }
            .into_any()
        }
    };

    view! {
        <main class="forecast">
            <form class="controls" on:submit=|ev| ev.prevent_default()>
                <fieldset>
                    <legend>"Run log"</legend>
                    <label class="field" for="forecast-file"><span class="label">"One run's partial log"</span>
                        <input id="forecast-file" type="file" on:change=on_file />
                    </label>
                    {field("forecast-tps", "Tokens per step (logs that count steps)", tps, "e.g. 524288")}
                    {field("forecast-metric", "Loss key or column", metric, "default: the eval loss")}
                    {field("forecast-run", "Run (logs with several)", run, "")}
                    {field("forecast-method", "Pruning method, for the P² prior", method, "depth, width or 2:4")}
                    {field("forecast-n0", "N0 (parameters before pruning)", n0, "e.g. 8.0e9")}
                    {field("forecast-rho", "ρ (pruning rate)", rho, "e.g. 0.25")}
                    {field("forecast-l0", "L0 (loss before pruning)", l0, "e.g. 1.92")}
                </fieldset>
                <fieldset>
                    <legend>"Or a run stored on this server"</legend>
                    {field("forecast-server-run", "Run id (GET /api/runs/{id})", server_id, "e.g. 1")}
                    <div class="exports"><button type="button" id="forecast-load" on:click=load_stored>"Forecast the stored run"</button></div>
                </fieldset>
                <fieldset>
                    <legend>"Or a calibration job as it trains"</legend>
                    {field("forecast-job", "Job id", job_id, "e.g. 1")}
                    {field("forecast-unit", "Unit (default: the one training now)", job_unit, "p2-nano/depth/0.25")}
                    <div class="exports"><button type="button" id="forecast-follow" on:click=move |_| follow()>"Follow the job"</button></div>
                </fieldset>
                <fieldset>
                    <legend>"Forecast"</legend>
                    {field("forecast-rule", "Rule (slope:τ, gap:ε, target:L)", rule, "gap:0.05")}
                    {field("forecast-horizon", "Forecast to (tokens)", horizon, "default: 100× the log")}
                    {field("forecast-schedule", "Learning-rate schedule (kind:total tokens:floor:warm-up)", schedule, "e.g. cosine:2.1e10:0.1:2e8")}
                    {field("forecast-anneal", "Anneal K, nats (from a finished run of the recipe)", anneal, "e.g. 0.04")}
                </fieldset>
            </form>
            <section class="output">{live_line}{output}</section>
        </main>
    }
}
