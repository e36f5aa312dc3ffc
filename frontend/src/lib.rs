//! p2law-frontend: the browser calculator, a Leptos (client-side rendered) app that runs the law
//! core compiled to WASM — no server round trip for a prediction.
//!
//! - [`state`]: every input as typed, its URL round trip, and its validation into a scenario;
//! - [`fits`]: fit files the user drops or pastes, and fits carried inline in a link;
//! - [`compute`]: curves, bands and budgets for a scenario;
//! - [`calculator`]: the calculator page's toggles, table cells, messages and read-out;
//! - [`plot`]: the SVG plot;
//! - [`refit`]: the Refit page's parsing preview and fit pictures;
//! - [`calibrate`]: the Calibrate page's cost estimate and live curves;
//! - [`forecast`]: the Forecast page's parse, forecast and picture of one run's partial log;
//! - `app`, `refit_page`, `calibrate_page`, `forecast_page` (wasm only): the Leptos components.

pub mod api;
pub mod calculator;
pub mod calibrate;
pub mod compute;
pub mod fits;
pub mod forecast;
pub mod plot;
pub mod refit;
pub mod state;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod calibrate_page;
#[cfg(target_arch = "wasm32")]
mod forecast_page;
#[cfg(target_arch = "wasm32")]
mod refit_page;

/// Entry point: mounts the app on `<body>`.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
