//! `p2law budget`: how many post-training tokens, and what they cost.

use super::ModelArgs;
use super::table::num;
use anyhow::Result;
use p2law_shared::budget::{Hardware, Rule};
use p2law_shared::report::recommend;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Rule: target:<loss>, slope:<tau> (loss per 1e9 tokens) or gap:<eps> (to the asymptote).
    #[arg(long)]
    pub rule: Rule,
    /// Peak FLOP/s of one GPU (e.g. 9.89e14, H100 SXM dense bf16).
    #[arg(long)]
    pub gpu_flops: Option<f64>,
    /// Model FLOP utilisation, 0..1.
    #[arg(long, default_value_t = 0.4)]
    pub mfu: f64,
    /// Price of one GPU-hour.
    #[arg(long, default_value_t = 0.0)]
    pub price: f64,
    /// Teacher parameters when healing by distillation (adds 2·N_teacher·D FLOPs).
    #[arg(long)]
    pub teacher: Option<f64>,
}

pub fn run(a: Args) -> Result<()> {
    let report = super::read_fit(&a.model.fit)?;
    let x = a.model.inputs(report.law)?;
    let hw = a.gpu_flops.map(|gpu_flops| Hardware { gpu_flops, mfu: a.mfu, price_per_gpu_hour: a.price });
    let r = recommend(&report, &x, a.rule, a.teacher, hw.as_ref())?;
    let beyond = report.extrapolation(&x, Some(r.tokens));
    let degenerate = report.degeneracy();
    if a.model.json {
        let out = serde_json::json!({ "law": report.law, "inputs": x, "recommendation": r, "extrapolation": beyond, "degenerate": degenerate });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    super::warn_fit(degenerate.as_deref(), &beyond);
    println!("rule              {}", r.rule);
    println!("tokens            {}", num(r.tokens));
    if let Some([lo, hi]) = r.tokens_band {
        println!("tokens band       [{}, {}]", num(lo), num(hi));
    }
    if let Some(s) = r.unreachable_share.filter(|s| *s > 0.0) {
        println!("unreachable in    {:.1}% of bootstrap resamples", s * 100.0);
    }
    println!("loss at budget    {:.6}", r.loss_at_budget);
    if let Some(a) = r.asymptote {
        println!("asymptote         {a:.6}");
    }
    println!("training FLOPs    {}", num(r.cost.flops));
    if let (Some(h), Some(p)) = (r.cost.gpu_hours, r.cost.price) {
        println!("GPU-hours         {h:.2}");
        println!("price             {p:.2}");
    }
    Ok(())
}
