//! Scale check for Hugging Face checkpoints: a checkpoint with Qwen2.5-0.5B's exact shapes and
//! random weights, made here (nothing downloaded), then loaded, pruned and exported, with wall
//! times and peak resident memory (`VmHWM`) against the weights' size.
//!
//!     cargo run --release -p p2law-backend --example hf_scale -- make DIR [bf16|f32]
//!     cargo run --release -p p2law-backend --example hf_scale -- load DIR OUT
//!
//! Run the two steps as separate processes so each peak is its own.

use burn::prelude::*;
use p2law_backend::lab::hf::{self, HfParent, st};
use p2law_backend::lab::prune::{self, calib};
use std::path::Path;
use std::time::Instant;

/// Qwen2.5-0.5B's config.json (transformers 4 layout), as published.
fn config(dtype: &str) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "hidden_act": "silu",
        "hidden_size": 896,
        "initializer_range": 0.02,
        "intermediate_size": 4864,
        "max_position_embeddings": 32768,
        "max_window_layers": 24,
        "model_type": "qwen2",
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": true,
        "torch_dtype": dtype,
        "transformers_version": "4.40.1",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": 151936
    })
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|k| k.parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A fast seeded generator (SplitMix64) for N(0, 0.02)-ish values.
fn random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
        })
        .collect()
}

fn make(dir: &Path, dtype: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let (h, i, v, layers, q, kv) = (896usize, 4864usize, 151936usize, 24usize, 14 * 64, 2 * 64);
    let mut entries: Vec<st::Entry<'static>> = Vec::new();
    let mut seed = 0u64;
    let mut add = |name: String, shape: Vec<usize>, scale: f32| {
        seed += 1;
        let s = seed;
        let n: usize = shape.iter().product();
        let values = move || burn::tensor::TensorData::new(if scale == 0.0 { vec![1.0f32; n] } else { random(n, s, scale) }, [n]);
        entries.push(st::Entry { name, shape, transpose: false, values: Box::new(values) });
    };
    add("model.embed_tokens.weight".into(), vec![v, h], 0.02);
    for l in 0..layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        add(p("input_layernorm.weight"), vec![h], 0.0);
        add(p("self_attn.q_proj.weight"), vec![q, h], 0.02);
        add(p("self_attn.q_proj.bias"), vec![q], 0.02);
        add(p("self_attn.k_proj.weight"), vec![kv, h], 0.02);
        add(p("self_attn.k_proj.bias"), vec![kv], 0.02);
        add(p("self_attn.v_proj.weight"), vec![kv, h], 0.02);
        add(p("self_attn.v_proj.bias"), vec![kv], 0.02);
        add(p("self_attn.o_proj.weight"), vec![h, q], 0.02);
        add(p("post_attention_layernorm.weight"), vec![h], 0.0);
        add(p("mlp.gate_proj.weight"), vec![i, h], 0.02);
        add(p("mlp.up_proj.weight"), vec![i, h], 0.02);
        add(p("mlp.down_proj.weight"), vec![h, i], 0.02);
    }
    add("model.norm.weight".into(), vec![h], 0.0);
    let dt = if dtype == "f32" { hf::DType::F32 } else { hf::DType::BF16 };
    let bytes = st::write(&dir.join("model.safetensors"), &entries, dt).map_err(|e| e.to_string())?;
    let cfg = config(if dtype == "f32" { "float32" } else { "bfloat16" });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&cfg).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    // Any fast tokenizer will do for loading; the fixtures' is small and committed.
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/qwen2-tied/tokenizer.json");
    std::fs::copy(tok, dir.join("tokenizer.json")).map_err(|e| e.to_string())?;
    println!("wrote {} ({bytes} bytes, {dtype})", dir.display());
    Ok(())
}

fn load(dir: &Path, out: &Path) -> Result<(), String> {
    let device = Device::flex();
    let t = Instant::now();
    let parent = HfParent::open(dir).map_err(|e| e.to_string())?;
    let stored = parent.stored_bytes() as f64 / (1 << 20) as f64;
    let model = parent.load(64, &device).map_err(|e| e.to_string())?;
    let n = model.parameters();
    let f32_mib = n as f64 * 4.0 / (1 << 20) as f64;
    let load_s = t.elapsed().as_secs_f64();
    let load_peak = peak_mib();
    println!("parameters {n} ({}); stored {stored:.0} MiB ({:?}), in memory as f32 {f32_mib:.0} MiB", parent.shape().parameters(), parent.dtype);
    println!("load: {load_s:.1} s, peak RSS {load_peak:.0} MiB = {:.2}x stored, {:.2}x f32 weights", load_peak / stored, load_peak / f32_mib);
    let t = Instant::now();
    // Calibration: 4 windows of 32 random ids (the scale test is about memory and time).
    let ids: Vec<u32> = (0..1024u32).map(|k| (k * 7919) % 151_936).collect();
    let stats = calib::collect(&model, &ids, 32, 4, 4);
    let pruned = prune::depth::prune(model, &parent.shape(), &stats, 0.25).map_err(|e| e.to_string())?;
    println!("prune depth 0.25: {:.1} s, rho {:.4}, peak RSS so far {:.0} MiB; {}", t.elapsed().as_secs_f64(), pruned.rho, peak_mib(), pruned.detail);
    let t = Instant::now();
    let _ = std::fs::remove_dir_all(out);
    let written = hf::export(&pruned.model, &pruned.shape, &parent, serde_json::json!({"scale-test": true}), out, 4 << 30).map_err(|e| e.to_string())?;
    println!("export: {:.1} s, {} bytes in {:?}", t.elapsed().as_secs_f64(), written.bytes, written.files);
    let peak = peak_mib();
    println!("overall peak RSS {peak:.0} MiB = {:.2}x stored, {:.2}x f32 weights", peak / stored, peak / f32_mib);
    let back = HfParent::open(out).map_err(|e| e.to_string())?;
    println!("export reopens: {} layers, {} parameters", back.shape().num_hidden_layers, back.shape().parameters());
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["make", dir] => make(Path::new(dir), "bf16"),
        ["make", dir, dtype] => make(Path::new(dir), dtype),
        ["load", dir, out] => load(Path::new(dir), Path::new(out)),
        _ => Err("usage: hf_scale make DIR [bf16|f32] | hf_scale load DIR OUT".into()),
    };
    if let Err(e) = r {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
