//! What can go wrong in a healing run, found in its log: a non-finite loss, spikes, a loss that
//! rises for good (divergence), and a training loss that falls while the held-out loss rises
//! (over-fitting). Each warning names the checkpoint where it starts.

use super::{Obs, Warning, WarningKind, median};

/// A spike: at least this much above the median of the checkpoints before it, relatively...
pub const SPIKE_RELATIVE: f64 = 0.10;
/// ...and this many robust standard deviations (1.4826 · MAD) of their scatter.
pub const SPIKE_SIGMAS: f64 = 6.0;
/// Checkpoints a spike is measured against.
pub const SPIKE_WINDOW: usize = 8;
/// Divergence: the loss ends at least this much above its running minimum, relatively...
pub const DIVERGE_RELATIVE: f64 = 0.02;
/// ...and has risen over at least this many consecutive bins of the log-binned curve.
pub const DIVERGE_BINS: usize = 3;
/// Over-fitting: the held-out loss ends at least this much above its minimum while the training
/// loss fell over the same tokens.
pub const OVERFIT_RELATIVE: f64 = 0.005;
/// The most spikes listed one by one.
pub const MAX_SPIKES: usize = 5;

/// Where a checkpoint is, for a message: its step when the log has one, else its tokens.
pub fn at(o: &Obs) -> String {
    match o.step {
        Some(s) => format!("step {s}"),
        None => format!("{:.4e} tokens", o.tokens),
    }
}

fn warning(kind: WarningKind, o: &Obs, message: String) -> Warning {
    Warning { kind, step: o.step, tokens: o.tokens, message }
}

/// The first non-finite loss, if any.
pub fn first_non_finite(series: &[Obs]) -> Option<usize> {
    series.iter().position(|o| !o.loss.is_finite())
}

pub fn nan(series: &[Obs]) -> Option<Warning> {
    let i = first_non_finite(series)?;
    let o = &series[i];
    Some(warning(
        WarningKind::Nan,
        o,
        format!("the loss is {} at {}: the run has broken down; the forecast uses the {i} checkpoints before it", o.loss, at(o)),
    ))
}

/// Spikes among the finite checkpoints: a loss far above the median of the ones before it.
pub fn spikes(series: &[Obs]) -> Vec<Warning> {
    let mut out = Vec::new();
    let mut found = 0usize;
    for i in SPIKE_WINDOW..series.len() {
        let o = &series[i];
        if !o.loss.is_finite() {
            break;
        }
        let mut prev: Vec<f64> = series[i - SPIKE_WINDOW..i].iter().map(|p| p.loss).collect();
        let med = median(&mut prev);
        let mut dev: Vec<f64> = prev.iter().map(|v| (v - med).abs()).collect();
        let sigma = 1.4826 * median(&mut dev);
        if o.loss > med * (1.0 + SPIKE_RELATIVE) && o.loss - med > SPIKE_SIGMAS * sigma {
            found += 1;
            if found <= MAX_SPIKES {
                out.push(warning(
                    WarningKind::Spike,
                    o,
                    format!("loss spike at {}: {:.4} against {:.4} over the {SPIKE_WINDOW} checkpoints before it (+{:.0} %)", at(o), o.loss, med, 100.0 * (o.loss / med - 1.0)),
                ));
            }
        }
    }
    if found > MAX_SPIKES {
        if let Some(last) = out.last_mut() {
            last.message.push_str(&format!(" ({} more spikes after this one)", found - MAX_SPIKES));
        }
    }
    out
}

/// A loss that ends well above its running minimum and has been rising over the last bins.
/// `bins` are the log-binned finite checkpoints `(tokens, loss)`; the warning names the
/// checkpoint at the minimum, where the rise began.
pub fn diverging(series: &[Obs], bins: &[(f64, f64)]) -> Option<Warning> {
    if bins.len() < DIVERGE_BINS + 2 {
        return None;
    }
    let n = bins.len();
    let rising = bins[n - DIVERGE_BINS - 1..].windows(2).all(|w| w[1].1 > w[0].1);
    let (i_min, min) = bins.iter().enumerate().map(|(i, b)| (i, b.1)).min_by(|a, b| a.1.total_cmp(&b.1))?;
    let last = bins[n - 1].1;
    if !(rising && i_min < n - 1 && last > min * (1.0 + DIVERGE_RELATIVE)) {
        return None;
    }
    let d_min = bins[i_min].0;
    // The raw checkpoint nearest the binned minimum.
    let o = series.iter().filter(|o| o.loss.is_finite()).min_by(|a, b| (a.tokens.ln() - d_min.ln()).abs().total_cmp(&(b.tokens.ln() - d_min.ln()).abs()))?;
    Some(warning(
        WarningKind::Diverging,
        o,
        format!(
            "the loss is rising: {:.4} now against its minimum {:.4} near {} (+{:.1} %), over the last {} bins of the curve; check the learning rate and the data before spending more tokens",
            last,
            min,
            at(o),
            100.0 * (last / min - 1.0),
            DIVERGE_BINS
        ),
    ))
}

/// Held-out loss rising from its minimum while the training loss kept falling over the same tokens.
pub fn overfitting(eval: &[Obs], train: &[Obs]) -> Option<Warning> {
    let finite: Vec<&Obs> = eval.iter().filter(|o| o.loss.is_finite()).collect();
    if finite.len() < 3 || train.len() < 2 {
        return None;
    }
    let (i_min, best) = finite.iter().enumerate().min_by(|a, b| a.1.loss.total_cmp(&b.1.loss))?;
    let last = finite[finite.len() - 1];
    // Rising over the last two evaluations and well above the minimum.
    let n = finite.len();
    let rising = finite[n - 2].loss < last.loss && i_min + 1 < n;
    if !(rising && last.loss > best.loss * (1.0 + OVERFIT_RELATIVE)) {
        return None;
    }
    // Training loss over the same span: mean of the train checkpoints near each end.
    let near = |d: f64| -> Option<f64> {
        let mut v: Vec<(f64, f64)> = train.iter().filter(|t| t.loss.is_finite()).map(|t| ((t.tokens.ln() - d.ln()).abs(), t.loss)).collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        let k = v.len().clamp(1, 5);
        (!v.is_empty()).then(|| v[..k].iter().map(|x| x.1).sum::<f64>() / k as f64)
    };
    let (t0, t1) = (near(best.tokens)?, near(last.tokens)?);
    if t1 >= t0 {
        return None;
    }
    Some(warning(
        WarningKind::Overfitting,
        best,
        format!(
            "over-fitting from {}: the held-out loss rose from {:.4} to {:.4} (+{:.1} %) while the training loss fell from {:.4} to {:.4}; more tokens of this data will not help, fresh data may",
            at(best),
            best.loss,
            last.loss,
            100.0 * (last.loss / best.loss - 1.0),
            t0,
            t1
        ),
    ))
}
