//! Benchmark: the full 4500-start Huber-on-log grid on Epoch AI's 240 Chinchilla points.
//!
//! Prints the wall time of the whole grid, the time per start, and the optimum. Run by
//! `bench/epoch_grid.sh`, which times scipy's L-BFGS-B on the same starts beside it.
//!
//! `cargo run --release -p p2law-shared --example epoch_grid [-- --threads N] [--per-start FILE]`
//!
//! `per start` is thread-seconds per start (wall time × threads / starts).

use p2law_shared::fit::{Dataset, FitOptions, Objective, Starts, fit_dataset, start_points};
use p2law_shared::LawForm;
use p2law_shared::presets::epoch_curves;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1));
    let curves = epoch_curves();
    let mut o = FitOptions::new(LawForm::Chinchilla);
    o.objective = Objective::HuberLog;
    o.starts = Starts::Full;
    o.threads = value("--threads").and_then(|t| t.parse().ok()).unwrap_or(0);
    let data = Dataset::new(&curves, LawForm::Chinchilla).expect("Epoch data is valid");
    let starts = start_points(LawForm::Chinchilla.law(), Starts::Full, 0);
    let t = Instant::now();
    let r = fit_dataset(&data, &o, &starts).expect("fit");
    let secs = t.elapsed().as_secs_f64();
    let threads = if o.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { o.threads };
    println!("points            {}", data.len());
    println!("starts            {}", starts.len());
    println!("threads           {threads}");
    println!("grid wall time    {secs:.3} s");
    println!("per start         {:.3} ms", secs * 1e3 * threads as f64 / starts.len() as f64);
    println!("best objective    {:.10}", r.objective);
    for (n, v) in LawForm::Chinchilla.law().params().iter().zip(&r.params) {
        println!("{n:<17} {v:.6}");
    }
    if let Some(path) = value("--per-start") {
        // Untimed: each start on its own, for the start-by-start comparison with scipy.
        let lines: String = starts
            .iter()
            .map(|s| fit_dataset(&data, &o, std::slice::from_ref(s)).map_or("nan\n".to_string(), |r| format!("{:.12e}\n", r.objective)))
            .collect();
        std::fs::write(path, lines).expect("write per-start objectives");
    }
}
