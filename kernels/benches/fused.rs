//! The fused training operations against the same computation in burn tensor ops (the general
//! path), forward and backward through burn's autodiff, on the CPU (flex) backend in one run.
//!
//!     cargo bench --workspace --exclude xtask --bench fused [-- BATCH SEQ HEADS KV_HEADS HEAD_DIM HIDDEN INTER]
//!
//! Defaults are p2-xs's shapes (16 × 128 tokens, 4 heads over 2 kv heads of 16, hidden 64,
//! MLP 192). Each figure is the median of 9 runs of forward plus backward.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use burn::prelude::*;
use p2law_kernels::fused::{self, unfused};
use std::time::Instant;

fn median(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[runs / 2]
}

fn input<const D: usize>(dims: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::<D>::random(dims, burn::tensor::Distribution::Uniform(-1.0, 1.0), device).require_grad()
}

/// Forward, a weighted sum, backward; the gradients are read so that nothing stays queued.
fn step<const D: usize, const K: usize>(inputs: &[Tensor<D>; K], f: &dyn Fn([Tensor<D>; K]) -> Tensor<D>) {
    let out = f(inputs.clone());
    let grads = out.sum().backward();
    for t in inputs {
        if let Some(g) = t.grad(&grads) {
            let _ = g.into_data();
        }
    }
}

fn row(name: &str, fused: f64, general: f64) {
    println!("| {name:<26} | {:>9.3} ms | {:>9.3} ms | {:>6.1}x |", fused * 1e3, general * 1e3, general / fused);
}

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|x| x.parse().ok()).collect();
    let get = |i: usize, d: usize| a.get(i).copied().unwrap_or(d);
    let (b, s, h, g, d, hidden, inter) = (get(0, 16), get(1, 128), get(2, 4), get(3, 2), get(4, 16), get(5, 64), get(6, 192));
    let device = Device::flex().autodiff();
    println!("fused operations vs burn tensor ops, forward + backward, median of 9 (flex, {} threads)", rayon::current_num_threads());
    println!("batch {b} × seq {s}; attention {h} heads over {g} kv heads of {d}; hidden {hidden}; MLP {inter}\n");
    println!("| operation                  |     fused    | burn ops     | speed-up |");
    println!("|---|---|---|---|");

    let x = [input([b, s, hidden], &device), input([1, 1, hidden], &device)];
    let f = median(9, || step(&x, &|[x, w]| fused::rms_norm(x, w.reshape([hidden]), 1e-5)));
    let u = median(9, || step(&x, &|[x, w]| unfused::rms_norm(x, w.reshape([hidden]), 1e-5)));
    row("RMSNorm", f, u);

    let x = [input([b, s, inter], &device), input([b, s, inter], &device)];
    let f = median(9, || step(&x, &|[a, c]| fused::swiglu(a, c)));
    let u = median(9, || step(&x, &|[a, c]| unfused::swiglu(a, c)));
    row("SwiGLU activation", f, u);

    let ang: Vec<f32> = (0..s * d).map(|i| (i / d) as f32 * 0.01 * (1 + i % (d / 2).max(1)) as f32).collect();
    let cos = Tensor::<2>::from_data(TensorData::new(ang.iter().map(|x| x.cos()).collect::<Vec<_>>(), [s, d]), &device);
    let sin = Tensor::<2>::from_data(TensorData::new(ang.iter().map(|x| x.sin()).collect::<Vec<_>>(), [s, d]), &device);
    let x = [input([b, s, h * d], &device), input([b, s, g * d], &device), input([b, s, g * d], &device)];
    let f = median(9, || step(&x, &|[q, k, v]| fused::attention(q, k, v, &cos, &sin, h, g)));
    let u = median(9, || step(&x, &|[q, k, v]| unfused::attention(q, k, v, &cos, &sin, h, g)));
    row("rotary causal GQA attention", f, u);

    let rows = b * s;
    let targets = Tensor::<1, Int>::from_data(TensorData::new((0..rows as i64).map(|i| i * 7 % 256).collect::<Vec<_>>(), [rows]), &device);
    let x = [input([rows, 256], &device)];
    let f = median(9, || step(&x, &|[l]| fused::cross_entropy(l, targets.clone()).reshape([1, 1])));
    let u = median(9, || step(&x, &|[l]| unfused::cross_entropy(l, targets.clone()).reshape([1, 1])));
    row("cross-entropy (vocab 256)", f, u);
}
