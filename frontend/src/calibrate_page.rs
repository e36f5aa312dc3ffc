//! The Calibrate page: the sweep form with its cost estimate, a job's loss curves live as its
//! server-sent events arrive, the job history, and each finished job's fit opened in the
//! calculator.

use crate::calibrate::{DEFAULT_GFLOPS, LiveCurves, estimate};
use leptos::prelude::*;
use p2law_shared::calibrate::{CalibrationEvent, CalibrationJob, CalibrationRequest, DeviceChoice, FAMILY, NmPattern, PruneMethod, Stage};

const TOKEN_KEY: &str = "p2law-token";

fn storage() -> Option<web_sys::Storage> {
    window().local_storage().ok().flatten()
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

async fn fetch_jobs() -> Result<Vec<CalibrationJob>, String> {
    crate::api::get("jobs", "/api/calibrations").await
}

fn refresh(jobs: RwSignal<Vec<CalibrationJob>>) {
    leptos::task::spawn_local(async move {
        if let Ok(j) = fetch_jobs().await {
            jobs.set(j);
        }
    });
}

/// Follows job `id`'s events into `live`, replacing any stream already open.
fn watch(id: i64, live: RwSignal<LiveCurves>, watching: RwSignal<Option<i64>>, jobs: RwSignal<Vec<CalibrationJob>>) {
    live.set(LiveCurves::default());
    watching.set(Some(id));
    crate::api::follow_job(id, move |e: CalibrationEvent| {
        live.update(|l| l.apply(&e));
        if e.stage == Stage::Run || e.stage.is_final() {
            refresh(jobs);
        }
    });
}

#[component]
pub fn CalibratePage() -> impl IntoView {
    let token = RwSignal::new(storage().and_then(|s| s.get_item(TOKEN_KEY).ok().flatten()).unwrap_or_default());
    let smoke = CalibrationRequest::preset("smoke").unwrap_or_else(|_| unreachable!("the smoke preset exists"));
    let parents = RwSignal::new(smoke.parents.clone());
    let methods = RwSignal::new(smoke.methods.iter().map(|m| m.to_string()).collect::<Vec<_>>());
    let rates = RwSignal::new("0.25".to_string());
    let patterns = RwSignal::new("2:4".to_string());
    let tokens = RwSignal::new(smoke.tokens.to_string());
    let scale = RwSignal::new(smoke.pretrain_scale.to_string());
    let device = RwSignal::new("auto".to_string());
    let gflops = RwSignal::new(DEFAULT_GFLOPS.to_string());
    let jobs: RwSignal<Vec<CalibrationJob>> = RwSignal::new(Vec::new());
    let live = RwSignal::new(LiveCurves::default());
    let watching: RwSignal<Option<i64>> = RwSignal::new(None);
    let message = RwSignal::new(String::new());
    let lr = RwSignal::new(String::new());
    let export = RwSignal::new(false);
    // Hugging Face checkpoints in the server's models directory, from `/api/lab`.
    let models: RwSignal<Vec<(String, String)>> = RwSignal::new(Vec::new());
    let models_dir = RwSignal::new(String::new());
    refresh(jobs);
    leptos::task::spawn_local(async move {
        let Ok(lab) = crate::api::get::<p2law_shared::api::LabInfo>("lab", "/api/lab").await else { return };
        models_dir.set(lab.models_dir.clone());
        models.set(
            lab.models
                .iter()
                .filter(|m| m.error.is_none())
                .map(|m| {
                    let layers = m.layers.map_or("?".to_string(), |l| l.to_string());
                    let label = format!("{} ({}, {:.2e} params, {layers} layers)", m.name, m.architecture.as_deref().unwrap_or("?"), m.parameters.unwrap_or(0) as f64);
                    (m.name.clone(), label)
                })
                .collect(),
        );
    });

    let apply_preset = move |name: &str| {
        if let Ok(p) = CalibrationRequest::preset(name) {
            parents.set(p.parents.clone());
            methods.set(p.methods.iter().map(|m| m.to_string()).collect());
            rates.set(p.rates.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "));
            patterns.set(p.patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "));
            tokens.set(p.tokens.to_string());
            scale.set(p.pretrain_scale.to_string());
        }
    };

    let request = Memo::new(move |_| -> Result<CalibrationRequest, String> {
        let rates = list(&rates.get()).iter().map(|r| r.parse::<f64>().map_err(|_| format!("rates: `{r}` is not a number"))).collect::<Result<Vec<_>, _>>()?;
        let tokens = tokens.get().trim().parse::<u64>().map_err(|_| format!("tokens: `{}` is not a whole number", tokens.get()))?;
        let pretrain_scale = scale.get().trim().parse::<f64>().map_err(|_| format!("pretrain scale: `{}` is not a number", scale.get()))?;
        let r = CalibrationRequest {
            parents: parents.get(),
            methods: methods.get().iter().map(|m| m.parse::<PruneMethod>()).collect::<Result<_, _>>().map_err(|e| e.to_string())?,
            rates,
            patterns: list(&patterns.get()).iter().map(|p| p.parse::<NmPattern>().map_err(|e| format!("patterns: {e}"))).collect::<Result<_, _>>()?,
            tokens,
            pretrain_scale,
            device: device.get().parse::<DeviceChoice>().map_err(|e| e.to_string())?,
            corpus: None,
            seed: 0,
            lr: match lr.get().trim() {
                "" => None,
                t => Some(t.parse::<f64>().map_err(|_| format!("learning rate: `{t}` is not a number"))?),
            },
            export: export.get(),
        };
        r.units().map_err(|(f, m)| format!("{f}: {m}"))?;
        Ok(r)
    });
    let estimate_line = move || {
        let g = gflops.get().trim().parse::<f64>().unwrap_or(DEFAULT_GFLOPS);
        request.with(|r| r.as_ref().map_err(Clone::clone).and_then(|r| estimate(r, g))).unwrap_or_else(|e| e)
    };

    let start = move |_: leptos::ev::MouseEvent| {
        let Ok(req) = request.get() else { return };
        let t = token.get();
        if let Some(s) = storage() {
            let _ = s.set_item(TOKEN_KEY, &t);
        }
        message.set("starting…".into());
        leptos::task::spawn_local(async move {
            let result: Result<CalibrationJob, String> = crate::api::post_json("refused", "/api/calibrations", Some(&t), &req).await;
            match result {
                Ok(job) => {
                    message.set(format!("job #{} queued", job.id));
                    refresh(jobs);
                    watch(job.id, live, watching, jobs);
                }
                Err(e) => message.set(e),
            }
        });
    };

    let cancel = move |id: i64| {
        let t = token.get();
        leptos::task::spawn_local(async move {
            if let Err(e) = crate::api::post::<CalibrationJob>("cancel refused", &format!("/api/calibrations/{id}/cancel"), Some(&t)).await {
                message.set(e);
            }
            refresh(jobs);
        });
    };

    let checkbox_list = move |items: Vec<(String, String)>, sig: RwSignal<Vec<String>>, class: &'static str| {
        items
            .into_iter()
            .map(|(value, label)| {
                let v = value.clone();
                let checked = move || sig.with(|s| s.contains(&v));
                let v2 = value.clone();
                let toggle = move |ev: leptos::ev::Event| {
                    let on = event_target_checked(&ev);
                    sig.update(|s| {
                        s.retain(|x| x != &v2);
                        if on {
                            s.push(v2.clone());
                        }
                    })
                };
                view! { <label class=class><input type="checkbox" value=value prop:checked=checked on:change=toggle /> {label}</label> }
            })
            .collect_view()
    };
    let parent_items: Vec<(String, String)> = FAMILY.iter().map(|p| (p.name.to_string(), format!("{} ({:.2e} params)", p.name, p.shape.parameters() as f64))).collect();
    let method_items: Vec<(String, String)> =
        [("depth", "depth (layers, block influence)"), ("width", "width (heads & channels)"), ("sparse", "N:M sparsity (Wanda)")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let text = move |id: &'static str, label: &'static str, sig: RwSignal<String>| {
        view! { <label class="field" for=id><span class="label">{label}</span><input id=id type="text" prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev)) /></label> }
    };

    let history = move || {
        jobs.get()
            .into_iter()
            .map(|j| {
                let id = j.id;
                let fit = j.fit_id.map(|f| view! { <a class="open-fit" href=format!("/?fits=server:{f}")>"open fit in calculator"</a> });
                let can_cancel = !j.status.finished();
                view! {
                    <tr class="job" data-id=id.to_string() data-status=j.status.as_str()>
                        <td>{format!("#{id}")}</td>
                        <td class="status">{j.status.as_str()}</td>
                        <td>{format!("{}/{}", j.units_done, j.units)}</td>
                        <td>{j.request.parents.join(", ")}</td>
                        <td>{j.device.clone().unwrap_or_default()}</td>
                        <td>
                            {j.error.clone().unwrap_or_default()}
                            {j.fit_warning.clone().map(|w| view! { <span class="warning fit-warning" role="alert">{w}</span> })}
                        </td>
                        <td>
                            <button class="watch" on:click=move |_| watch(id, live, watching, jobs)>"watch"</button>
                            {can_cancel.then(|| view! { <button class="cancel" on:click=move |_| cancel(id)>"cancel"</button> })}
                            {fit}
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };

    view! {
        <main class="calibrate">
            <h1>"Calibrate: prune, post-train and fit on this server"</h1>
            <section class="sweep">
                <div class="presets">
                    <button id="preset-smoke" on:click=move |_| apply_preset("smoke")>"smoke preset"</button>
                    <button id="preset-mini" on:click=move |_| apply_preset("mini")>"mini preset"</button>
                </div>
                <fieldset><legend>"Parents"</legend>{checkbox_list(parent_items, parents, "parent")}</fieldset>
                <fieldset id="hf-models"><legend>"Hugging Face checkpoints"</legend>
                    {move || checkbox_list(models.get(), parents, "parent hf")}
                    <p class="hint">{move || if models.with(Vec::is_empty) {
                        format!("none: put a LlamaForCausalLM or Qwen2ForCausalLM directory (config.json, safetensors, tokenizer.json) in {}", models_dir.get())
                    } else {
                        "N0 and L0 are measured on the corpus with each model's own tokenizer; pretraining is skipped.".to_string()
                    }}</p>
                    <label class="export"><input id="export" type="checkbox" prop:checked=move || export.get() on:change=move |ev| export.set(event_target_checked(&ev)) />" write each healed model back as a Hugging Face directory"</label>
                </fieldset>
                <fieldset><legend>"Methods"</legend>{checkbox_list(method_items, methods, "method")}</fieldset>
                {text("rates", "Rates (depth, width)", rates)}
                {text("patterns", "N:M patterns (sparse)", patterns)}
                {text("tokens", "Post-training tokens per model", tokens)}
                {text("pretrain-scale", "Pretraining scale", scale)}
                {text("lr", "Peak post-training learning rate (blank: the parent's recipe)", lr)}
                <label class="field" for="device"><span class="label">"Device"</span>
                    <select id="device" on:change=move |ev| device.set(event_target_value(&ev))>
                        <option value="auto">"auto (a GPU if present, else CPU)"</option>
                        <option value="cpu">"cpu (burn flex)"</option>
                        <option value="wgpu">"wgpu"</option>
                    </select>
                </label>
                {text("gflops", "Assumed throughput (GFLOP/s)", gflops)}
                <p id="estimate">{estimate_line}</p>
                <label class="field" for="token"><span class="label">"API token"</span><input id="token" type="password" prop:value=move || token.get() on:input=move |ev| token.set(event_target_value(&ev)) /></label>
                <button id="start" on:click=start prop:disabled=move || request.with(|r| r.is_err())>"Start calibration"</button>
                <p id="message">{move || message.get()}</p>
            </section>
            <section id="live">
                <h2>{move || watching.get().map_or("No job watched".to_string(), |id| format!("Job #{id}"))}</h2>
                <p id="progress">{move || live.with(|l| l.status.clone())}</p>
                <div class="plot" id="live-plot" inner_html=move || live.with(LiveCurves::svg)></div>
            </section>
            <section id="history">
                <h2>"Jobs"</h2>
                <table><thead><tr><th>"job"</th><th>"status"</th><th>"units"</th><th>"parents"</th><th>"device"</th><th>"note"</th><th></th></tr></thead>
                <tbody>{history}</tbody></table>
            </section>
        </main>
    }
}
