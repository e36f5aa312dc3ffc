//! Post-training throughput of one built-in or study parent: tokens/s and achieved FLOP/s of the real
//! training step (forward, backward, AdamW) on byte windows of a corpus. `bench/lab_tokens.sh`
//! runs it beside the same model in PyTorch.
//!
//! `cargo run --release -p p2law-backend --example train_throughput -- [PARENT] [STEPS] [cpu|wgpu] [CORPUS]`
//! (`-- --shape PARENT` prints the parent's shape for the PyTorch side).

use p2law_backend::lab::{corpus, device, family, model, train};
use std::time::Instant;

/// A built-in parent, or one of the P² study's family.
fn any_parent(name: &str) -> Result<family::Parent, String> {
    family::parent(name).or_else(|e| p2law_shared::study::study_parent(name).ok_or(format!("{e}; nor is it a study parent")))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `--shape PARENT`: the shape and batch, as bench/torch_train.py takes them.
    if args.first().is_some_and(|a| a == "--shape") {
        let p = any_parent(args.get(1).map_or("p2-xs", String::as_str))?;
        let s = p.shape;
        println!("{} {} {} {} {} {} {} {}", s.hidden_size, s.intermediate_size, s.num_hidden_layers, s.num_attention_heads, s.num_key_value_heads, s.head_dim, p.batch, p.seq_len);
        return Ok(());
    }
    let name = args.first().map_or("p2-xs", String::as_str);
    let steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(30);
    let choice: device::DeviceChoice = args.get(2).map_or("cpu", String::as_str).parse().map_err(|e: p2law_shared::calibrate::SettingError| e.to_string())?;
    let corpus_path = args.get(3).map_or("data/corpus/shakespeare", String::as_str);
    let parent = any_parent(name)?;
    let dev = device::select(choice).map_err(|e| e.to_string())?;
    let text = corpus::load(std::path::Path::new(corpus_path)).map_err(|e| e.to_string())?;
    let opts = model::ModelOptions { max_seq_len: parent.seq_len + 1, ..Default::default() };
    dev.device.seed(0);
    let m = model::Llama::new(&parent.shape, &opts, &dev.device);
    let warmup = 3;
    let mut cfg = <family::Parent as family::Recipe>::post_train_config(&parent, 1, 0);
    cfg.steps = warmup + steps;
    let mut t0 = None;
    let (_m, _, _) = train::train(m, None, &text.train, &cfg, &dev.device, None, |step, _, model, _| {
        if step == warmup {
            // Wait for queued work before starting the clock; from here the peak resident set is
            // the training steps' own (Linux: writing 5 to clear_refs resets VmHWM).
            let _ = model.embed.weight.val().into_data();
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            t0 = Some(Instant::now());
        }
        train::Control::Continue
    });
    let secs = t0.map_or(f64::NAN, |t| t.elapsed().as_secs_f64());
    let peak_rss_mib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmHWM:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())))
        .map_or(f64::NAN, |kb| kb / 1024.0);
    let tokens = (steps * cfg.batch * cfg.seq_len) as f64;
    let s = parent.shape;
    let n = s.parameters() as f64;
    // 6N per token for the weights, plus the attention scores and mixing (forward and backward).
    let attn = 12.0 * (s.num_hidden_layers * s.num_attention_heads * s.head_dim) as f64 * parent.seq_len as f64;
    let flops = (6.0 * n + attn) * tokens / secs;
    println!(
        "{{\"impl\": \"burn\", \"parent\": \"{name}\", \"device\": \"{}\", \"params\": {n}, \"batch\": {}, \"seq_len\": {}, \"steps\": {steps}, \"seconds\": {secs:.3}, \"tokens_per_s\": {:.1}, \"gflops\": {:.2}, \"peak_rss_mib\": {peak_rss_mib:.1}}}",
        dev.describe(),
        cfg.batch,
        cfg.seq_len,
        tokens / secs,
        flops / 1e9
    );
    Ok(())
}
