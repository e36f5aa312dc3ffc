//! Each kernel against the same computation in burn tensor ops and against a plain elementwise
//! copy over the same bytes (the memory-bound floor), on one wgpu device in one run.
//!
//!     cargo bench --workspace --exclude xtask --bench kernels [-- ROWS COLS TOKENS HIDDEN]
//!
//! GB/s counts the bytes each computation must move at least (its inputs read once, its outputs
//! written once), the same figure for all three columns, so the columns compare times.

use burn::prelude::*;
use p2law_kernels::{adapter, gpu};
use std::time::Instant;

/// Median seconds of `runs` calls of `f`, after two warm-up calls, with the device synchronised
/// around each call.
fn time(device: &Device, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    let _ = device.sync();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            let _ = device.sync();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[runs / 2]
}

/// The 2:4 mask with burn ops: ranks within each group by two argsorts, kept where rank < n.
fn nm_mask_ops(scores: Tensor<2>, n: usize, m: usize) -> Tensor<2> {
    let [rows, cols] = scores.dims();
    let grouped = scores.reshape([rows * cols / m, m]);
    let ranks = grouped.argsort_descending(1).argsort(1);
    ranks.lower_elem(n as i64).float().reshape([rows, cols])
}

fn row(name: &str, bytes: f64, kernel: f64, ops: f64, floor: f64) {
    let gbs = |t: f64| bytes / t / 1e9;
    println!(
        "{name:<22} {:>9.3} ms {:>8.2} GB/s | {:>9.3} ms {:>8.2} GB/s | {:>9.3} ms {:>8.2} GB/s | {:>7.2}× {:>7.2}",
        kernel * 1e3,
        gbs(kernel),
        ops * 1e3,
        gbs(ops),
        floor * 1e3,
        gbs(floor),
        ops / kernel,
        floor / kernel
    );
}

fn main() {
    let Some((device, adapter)) = adapter::wgpu_device() else {
        println!("SKIPPED: no wgpu adapter on this machine (install mesa-vulkan-drivers; ./dev setup does)");
        return;
    };
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (rows, cols, tokens, hidden) = (arg(0, 2048), arg(1, 2048), arg(2, 2048), arg(3, 1024));
    let runs = 9;
    println!("device: wgpu, {adapter}; plane ops (supported, min, max size): {:?}", gpu::bench::planes(&device));
    println!("weight {rows}×{cols} (burn layout [in, out], seen transposed), hidden states {tokens}×{hidden}; median of {runs} runs");
    println!(
        "{:<22} {:>24} | {:>24} | {:>24} | {:>7} {:>7}",
        "computation", "kernel", "burn tensor ops", "elementwise copy (floor)", "ops/k", "floor/k"
    );
    device.seed(1);
    let elems = rows * cols;
    // A burn weight is [in, out]; the kernels see [out, in] through a transposed view.
    let weight = Tensor::<2>::random([cols, rows], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let w = weight.clone().transpose();
    let norms = Tensor::<1>::random([cols], burn::tensor::Distribution::Uniform(0.1, 2.0), &device);
    // The floor: a copy that reads and writes `bytes` in all.
    let floor_for = |bytes: usize| {
        let x = Tensor::<2>::zeros([1, bytes / 8], &device);
        time(&device, runs, || {
            let _ = gpu::bench::copy(&x);
        })
    };

    // N:M selection: read scores, write the mask.
    let scores = w.clone().abs();
    let bytes = elems * 8;
    let k = time(&device, runs, || {
        let _ = gpu::nm_mask(&scores, 2, 4);
    });
    let o = time(&device, runs, || {
        let _ = nm_mask_ops(scores.clone(), 2, 4);
    });
    row("2:4 selection", bytes as f64, k, o, floor_for(bytes));

    // Wanda fused: read the weight, write mask and pruned weight.
    let bytes = elems * 12;
    let k = time(&device, runs, || {
        let _ = gpu::wanda_nm(&w, &norms, 2, 4);
    });
    let o = time(&device, runs, || {
        let s = w.clone().abs() * norms.clone().unsqueeze_dim(0);
        let mask = nm_mask_ops(s, 2, 4);
        let _ = w.clone() * mask;
    });
    row("Wanda 2:4, fused", bytes as f64, k, o, floor_for(bytes));

    // Masked update: read weight and mask, write the weight (in place for the kernel).
    let (mask, _) = gpu::wanda_nm(&w, &norms, 2, 4).expect("mask");
    let mask = mask.transpose();
    let bytes = elems * 12;
    let mut target = Some(weight.clone() + 0.0);
    let k = time(&device, runs, || {
        let t = target.take().expect("target");
        target = gpu::apply_mask(t, &mask).ok();
    });
    let o = time(&device, runs, || {
        let _ = weight.clone() * mask.clone();
    });
    row("masked update", bytes as f64, k, o, floor_for(bytes));

    // Block influence: read both hidden states.
    let x = Tensor::<2>::random([tokens, hidden], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let y = x.clone() + Tensor::<2>::random([tokens, hidden], burn::tensor::Distribution::Normal(0.0, 0.5), &device);
    let bytes = tokens * hidden * 8;
    let k = time(&device, runs, || {
        let _ = gpu::block_influence(&x, &y);
    });
    let o = time(&device, runs, || {
        let dot = (x.clone() * y.clone()).sum_dim(1);
        let norms = x.clone().powi_scalar(2).sum_dim(1).sqrt() * y.clone().powi_scalar(2).sum_dim(1).sqrt();
        let _ = f64::from((dot / norms.clamp_min(1e-12)).mean().into_scalar::<f32>());
    });
    row("block influence", bytes as f64, k, o, floor_for(bytes));
    println!("ops/k: how many times faster the kernel is than burn ops; floor/k: the kernel's share of the memory-bound speed (1 = at the floor)");
}
