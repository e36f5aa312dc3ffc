//! Benchmark: the full 4500-start Huber-on-log grid on Epoch AI's 240 Chinchilla points.
//!
//! Prints the wall time of the whole grid, the time per start, and the optimum. Run by
//! `bench/epoch_grid.sh`, which times scipy's L-BFGS-B on the same starts beside it.
//!
//! `cargo run --release -p p2law-shared --example epoch_grid [-- --single-thread]`

use p2law_shared::fit::{Dataset, FitOptions, Objective, Starts, fit_dataset, start_points};
use p2law_shared::{Curve, CurvePoint, LawForm};
use std::time::Instant;

/// Epoch's 240 points: drop the 5 highest losses, `D = FLOP / (6 N)`, one curve per model size.
fn epoch_curves() -> Vec<Curve> {
    let text = include_str!("../data/external/epoch_chinchilla_svg_extracted_data.csv");
    let mut rows: Vec<(f64, f64, f64)> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            Some((c.get(3)?.parse().ok()?, c.get(4)?.parse().ok()?, c.get(6)?.parse().ok()?))
        })
        .collect();
    rows.sort_by(|a, b| a.2.total_cmp(&b.2));
    rows.truncate(rows.len() - 5);
    rows.iter()
        .map(|&(n, flop, loss)| {
            let mut c = Curve::new(format!("n={n:e}"));
            c.n0 = Some(n);
            c.rho = Some(0.0);
            c.points.push(CurvePoint { tokens: flop / (6.0 * n), loss });
            c
        })
        .collect()
}

fn main() {
    let single = std::env::args().any(|a| a == "--single-thread");
    let curves = epoch_curves();
    let mut o = FitOptions::new(LawForm::Chinchilla);
    o.objective = Objective::HuberLog;
    o.starts = Starts::Full;
    let data = Dataset::new(&curves, LawForm::Chinchilla).expect("Epoch data is valid");
    let starts = start_points(LawForm::Chinchilla.law(), Starts::Full, 0);
    let t = Instant::now();
    let r = if single {
        // One start at a time on this thread: the per-start figure compared with scipy.
        starts
            .iter()
            .filter_map(|s| fit_dataset(&data, &o, std::slice::from_ref(s)).ok())
            .min_by(|a, b| a.objective.total_cmp(&b.objective))
            .expect("some start converges")
    } else {
        fit_dataset(&data, &o, &starts).expect("fit")
    };
    let secs = t.elapsed().as_secs_f64();
    println!("points            {}", data.len());
    println!("starts            {}", starts.len());
    println!("threads           {}", if single { "1".to_string() } else { format!("{}", std::thread::available_parallelism().map_or(1, |n| n.get())) });
    println!("grid wall time    {secs:.3} s");
    println!("per start         {:.3} ms", secs * 1e3 / starts.len() as f64);
    println!("best objective    {:.10}", r.objective);
    for (n, v) in LawForm::Chinchilla.law().params().iter().zip(&r.params) {
        println!("{n:<17} {v:.6}");
    }
}
