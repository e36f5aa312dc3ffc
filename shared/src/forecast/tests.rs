use super::*;
use rand::{Rng, SeedableRng};

/// A healing curve whose truth is known: `1.8 + 0.9·(D/1e6)^-0.3`, checkpoints every `step`
/// steps of 4096 tokens, with Gaussian noise of `noise` (relative) and an AR(1) correlation 0.5
/// between neighbours, as consecutive evaluations of one model have.
fn truth(d: f64) -> f64 {
    1.8 + 0.9 * (d / 1e6).powf(-0.3)
}

fn log(steps: usize, every: usize, noise: f64, seed: u64) -> Vec<Obs> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut e = 0.0;
    (1..=steps / every)
        .map(|i| {
            let step = (i * every) as f64;
            let d = step * 4096.0;
            e = 0.5 * e + (1.0f64 - 0.25).sqrt() * normal(&mut rng) * noise;
            let _ = rng.random::<u8>();
            Obs { tokens: d, loss: truth(d) * (1.0 + e), step: Some(step) }
        })
        .collect()
}

#[test]
fn a_known_curve_is_forecast_within_its_band() {
    // 2 000 steps logged every 10: 8.2 M tokens; forecast to 10× and 100×.
    let mut covered = 0;
    let mut rule_covered = 0;
    let trials = 20;
    for seed in 0..trials {
        let obs = log(2000, 10, 0.003, seed);
        let o = ForecastOptions { at: vec![8.192e7, 8.192e8], rule: Some(Rule::Gap(0.1)), ..Default::default() };
        let f = forecast(&obs, None, &o).expect("forecast");
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        for p in &f.points {
            assert!(p.lo <= p.loss && p.loss <= p.hi, "{p:?}");
            assert!((p.loss / truth(p.tokens) - 1.0).abs() < 0.03, "{p:?} vs {}", truth(p.tokens));
        }
        if f.points.iter().all(|p| p.lo <= truth(p.tokens) && truth(p.tokens) <= p.hi) {
            covered += 1;
        }
        // gap 0.1: 0.9 (D/1e6)^-0.3 = 0.1 → D = 1e6 · 9^(1/0.3).
        let want = 1e6 * 9f64.powf(1.0 / 0.3);
        let r = f.rule.as_ref().expect("rule");
        let t = r.tokens.expect("met");
        // 185× past the log, where a small change of β moves it far: within a factor 2.5.
        assert!((t / want).ln().abs() < 2.5f64.ln(), "{t:e} vs {want:e}");
        assert!(r.lo.unwrap() <= t && r.hi.is_none_or(|h| h >= t));
        if r.lo.unwrap() <= want && r.hi.is_none_or(|h| h >= want) {
            rule_covered += 1;
        }
        assert!((r.progress.unwrap() - 8.192e6 / t).abs() < 1e-12);
    }
    // A 90 % band: most truths inside, not all by construction.
    assert!(covered >= 15, "{covered} of {trials}");
    assert!(rule_covered >= 12, "{rule_covered} of {trials}");
}

#[test]
fn nan_cuts_the_log_and_names_its_step() {
    let mut obs = log(1000, 10, 0.002, 1);
    obs[60].loss = f64::NAN;
    obs[61].loss = f64::INFINITY;
    let f = forecast(&obs, None, &ForecastOptions::default()).expect("forecast from before the NaN");
    let w: Vec<_> = f.warnings.iter().filter(|w| w.kind == WarningKind::Nan).collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].step, Some(610.0));
    assert!(w[0].message.contains("step 610") && w[0].message.contains("60 checkpoints"), "{}", w[0].message);
    assert_eq!(f.last_step, Some(600.0));
    // A NaN at the very start leaves nothing.
    obs[0].loss = f64::NAN;
    let e = forecast(&obs, None, &ForecastOptions::default()).unwrap_err();
    assert!(matches!(e, ForecastError::TooFew(_)), "{e}");
}

#[test]
fn divergence_is_found_where_the_rise_begins() {
    // Healing until step 1500, then the loss climbs 1 % per 100 steps.
    let mut obs = log(3000, 10, 0.001, 2);
    let d_turn = 1500.0 * 4096.0;
    for o in &mut obs {
        if o.tokens > d_turn {
            o.loss = truth(d_turn) * (1.0 + 0.01 * (o.tokens - d_turn) / (100.0 * 4096.0));
        }
    }
    let f = forecast(&obs, None, &ForecastOptions::default()).expect("forecast");
    let w = f.warnings.iter().find(|w| w.kind == WarningKind::Diverging).expect("diverging");
    let step = w.step.unwrap();
    // Bins are 1/16 decade wide: the minimum is found within a bin of the turn.
    assert!((step / 1500.0).ln().abs() < std::f64::consts::LN_10 / 16.0 * 1.5, "{step}: {}", w.message);
    // A healthy log has none.
    let f = forecast(&log(3000, 10, 0.001, 2), None, &ForecastOptions::default()).unwrap();
    assert!(f.warnings.iter().all(|w| w.kind != WarningKind::Diverging));
}

#[test]
fn a_spike_is_named_at_its_step() {
    let mut obs = log(2000, 10, 0.001, 3);
    obs[120].loss *= 1.4;
    let f = forecast(&obs, None, &ForecastOptions::default()).expect("forecast");
    let s: Vec<_> = f.warnings.iter().filter(|w| w.kind == WarningKind::Spike).collect();
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].step, Some(1210.0));
}

#[test]
fn overfitting_is_found_from_train_and_eval() {
    // Eval every 100 steps falls until step 1200, then rises; train keeps falling.
    let train = log(2400, 10, 0.0, 4);
    let eval: Vec<Obs> = (1..=24)
        .map(|i| {
            let step = i as f64 * 100.0;
            let d = step * 4096.0;
            let l = if step <= 1200.0 { truth(d) } else { truth(1200.0 * 4096.0) * (1.0 + 0.004 * (step - 1200.0) / 100.0) };
            Obs { tokens: d, loss: l, step: Some(step) }
        })
        .collect();
    let f = forecast(&eval, Some(&train), &ForecastOptions::default()).expect("forecast");
    let w = f.warnings.iter().find(|w| w.kind == WarningKind::Overfitting).expect("overfitting");
    assert_eq!(w.step, Some(1200.0), "{}", w.message);
    // Train alone rising with eval: no over-fitting, that is divergence.
    let f = forecast(&eval, Some(&eval), &ForecastOptions::default()).unwrap();
    assert!(f.warnings.iter().all(|w| w.kind != WarningKind::Overfitting));
}

#[test]
fn too_early_says_what_is_needed() {
    let obs: Vec<Obs> = (1..=4).map(|i| Obs { tokens: i as f64 * 1e6, loss: truth(i as f64 * 1e6), step: Some(i as f64) }).collect();
    let f = forecast(&obs, None, &ForecastOptions::default()).expect("forecast");
    let w = f.warnings.iter().find(|w| w.kind == WarningKind::TooEarly).expect("too early");
    assert!(w.message.contains("1.000e7 tokens"), "{}", w.message);
    let e = forecast(&obs[..2], None, &ForecastOptions::default()).unwrap_err().to_string();
    assert!(e.contains("2 usable checkpoint(s)"), "{e}");
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let mut obs = log(1000, 10, 0.0, 5);
    obs.swap(10, 11);
    let e = forecast(&obs, None, &ForecastOptions::default()).unwrap_err();
    assert!(matches!(e, ForecastError::NotAscending { index: 11, .. }), "{e}");
    let obs = log(1000, 10, 0.0, 5);
    // The asymptote is 1.8: a target of 1.5 is never met.
    let o = ForecastOptions { rule: Some(Rule::Target(1.5)), ..Default::default() };
    let e = forecast(&obs, None, &o).unwrap_err().to_string();
    assert!(e.contains("can never be met") && e.contains("1.8"), "{e}");
    let o = ForecastOptions { at: vec![-1.0], ..Default::default() };
    assert!(forecast(&obs, None, &o).unwrap_err().to_string().contains("field `at`"));
    // A reachable target is met where the truth meets it.
    let o = ForecastOptions { rule: Some(Rule::Target(2.2)), ..Default::default() };
    let f = forecast(&obs, None, &o).unwrap();
    let want = 1e6 * (0.9f64 / 0.4).powf(1.0 / 0.3);
    let t = f.rule.unwrap().tokens.unwrap();
    assert!((t / want - 1.0).abs() < 0.02, "{t:e} vs {want:e}");
}

#[test]
fn warning_names_are_what_json_carries() {
    for k in [WarningKind::Diverging, WarningKind::Nan, WarningKind::Spike, WarningKind::Overfitting, WarningKind::TooEarly] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.name());
    }
}

#[test]
fn a_decayed_learning_rate_is_named() {
    let s = Schedule { lr: vec![(1e6, 3e-4), (5e6, 2e-4), (9e6, 1e-4)], total_tokens: Some(1e7) };
    let n = schedule_notes(Some(&s), 9e6);
    assert!(n[0].contains("33 % of its peak"), "{n:?}");
    let s = Schedule { lr: vec![(1e6, 3e-4), (5e6, 3e-4)], total_tokens: Some(1e8) };
    assert!(schedule_notes(Some(&s), 5e6)[0].contains("runs to 1.000e8"));
}

/// A p2-reduced prior whose curve at its inputs is `1.8 + amp·0.9·(D/1e6)^-beta`: [`truth`]
/// itself at `amp = 1`, `beta = 0.3` (γ = δ = 0, so N0 and ρ do not move it).
fn prior(amp: f64, beta: f64) -> Prior {
    Prior {
        source: "test prior".into(),
        law: LawForm::P2Reduced,
        params: vec![amp * 0.9 * 1e6f64.powf(beta), beta, 0.0, 0.0],
        inputs: Inputs { n0: 1e6, rho: 0.25, l0: Some(1.8), tokens: 1.0 },
        caveat: None,
    }
}

#[test]
fn a_prior_with_the_right_shape_corrects_a_short_log() {
    // 300 steps (1.2 M tokens, a factor 30 of tokens) forecast 100× ahead, where the free fit's
    // exponent and asymptote are poorly fixed; the prior knows both but not the amplitude (×1.5).
    let at = 1.2288e8;
    let (mut free, mut with) = (Vec::new(), Vec::new());
    let mut covered = 0;
    for seed in 0..12 {
        let obs = log(300, 10, 0.003, 100 + seed);
        let o = ForecastOptions { at: vec![at], ..Default::default() };
        let a = forecast(&obs, None, &o).expect("forecast");
        let b = forecast(&obs, None, &ForecastOptions { prior: Some(prior(1.5, 0.3)), ..o }).expect("forecast with a prior");
        let p = b.fit.prior.as_ref().expect("the prior is used");
        assert!(p.weight > 0.1, "a prior of the right shape gets weight: {p:?}");
        // The preset alone is off by its amplitude; the forecast is not.
        assert!((p.preset_at_last / truth(b.last.tokens) - 1.0).abs() > 0.05);
        assert!(b.notes.iter().any(|n| n.contains("blends") && n.contains("test prior")), "{:?}", b.notes);
        free.push((a.points[0].loss / truth(at) - 1.0).abs());
        with.push((b.points[0].loss / truth(at) - 1.0).abs());
        if b.points[0].lo <= truth(at) && truth(at) <= b.points[0].hi {
            covered += 1;
        }
    }
    let (mf, mw) = (median(&mut free), median(&mut with));
    // Hindcasts are no evidence below HINDCAST_TOLERANCE, so the blend keeps some of the free
    // fit even here, where the prior's shape is exact: half the free fit's error, not less.
    assert!(mw < 0.5 * mf && mw < 0.008, "median |error| with the prior {mw:.4}, without {mf:.4}");
    assert!(covered >= 9, "{covered} of 12");
}

#[test]
fn a_prior_with_the_wrong_slope_yields_to_a_long_log() {
    // Two decades of a clean log: the run's own fit hindcasts far better than a prior whose
    // exponent is twice the truth's.
    let obs = log(2000, 10, 0.001, 7);
    let at = 8.192e8;
    let f = forecast(&obs, None, &ForecastOptions { at: vec![at], prior: Some(prior(1.0, 0.6)), ..Default::default() }).unwrap();
    let p = f.fit.prior.as_ref().unwrap();
    assert!(p.weight < 0.2, "{p:?}");
    assert!((f.points[0].loss / truth(at) - 1.0).abs() < 0.02, "{:?} vs {}", f.points[0], truth(at));
}

#[test]
fn a_blend_meets_each_rule_where_its_curve_does() {
    let obs = log(1000, 10, 0.002, 8);
    for rule in [Rule::Gap(0.1), Rule::Target(2.2), Rule::Slope(1e-3)] {
        let f = forecast(&obs, None, &ForecastOptions { rule: Some(rule), prior: Some(prior(1.2, 0.35)), ..Default::default() }).unwrap();
        let p = f.fit.prior.as_ref().unwrap();
        let (w, a, b) = (p.weight, f.fit.curve, p.curve);
        let value = |d: f64| (1.0 - w) * a.value(d) + w * b.value(d);
        let t = f.rule.as_ref().unwrap().tokens.expect("met");
        let c = (1.0 - w) * a.c + w * b.c;
        let miss = match rule {
            Rule::Gap(eps) => value(t) - c - eps,
            Rule::Target(l) => value(t) - l,
            Rule::Slope(tau) => {
                // The slope by central differences, per SLOPE_UNIT_TOKENS.
                let h = t * 1e-5;
                -(value(t + h) - value(t - h)) / (2.0 * h) * SLOPE_UNIT_TOKENS - tau
            }
        };
        let scale = match rule {
            Rule::Slope(tau) => tau,
            _ => 1.0,
        };
        assert!(miss.abs() < 1e-6 * scale, "{rule}: {miss:e} at {t:e}");
    }
}

#[test]
fn a_prior_outside_its_form_is_refused_by_field() {
    let preset = crate::presets::study_presets().presets.into_iter().next().expect("a study preset ships");
    let e = Prior::from_preset(&preset, Inputs { n0: 1e6, rho: 0.0, l0: Some(2.0), tokens: 1.0 }).unwrap_err();
    assert!(matches!(&e, ForecastError::Invalid { field: "rho", .. }), "{e}");
    let e = Prior::from_preset(&preset, Inputs { n0: 1e6, rho: 0.25, l0: None, tokens: 1.0 }).unwrap_err();
    assert!(matches!(&e, ForecastError::Invalid { field: "l0", .. }), "{e}");
    let p = Prior::from_preset(&preset, Inputs { n0: 1e6, rho: 0.25, l0: Some(2.0), tokens: 1.0 }).unwrap();
    assert!(p.term().is_some() && (p.value(1e30) - 2.0).abs() < 1e-9, "p2-reduced heals back to L0");
}

/// A healing run along a cosine schedule to a tenth over 4.096e7 tokens (10 000 steps of 4096),
/// whose truth follows the schedule-aware form: `1.8 + 0.9·(S(D)/1e6)^-0.3 + 0.05·u(D)`.
fn cosine() -> Shape {
    "cosine:4.096e7:0.1".parse().unwrap()
}

fn scheduled_truth(d: f64) -> f64 {
    let s = cosine();
    1.8 + 0.9 * (s.area(d) / 1e6).powf(-0.3) + 0.05 * s.rate(d)
}

fn scheduled_log(until_step: usize, noise: f64, seed: u64) -> Vec<Obs> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut e = 0.0;
    (1..=until_step / 10)
        .map(|i| {
            let d = (i * 10) as f64 * 4096.0;
            e = 0.5 * e + 0.75f64.sqrt() * normal(&mut rng) * noise;
            Obs { tokens: d, loss: scheduled_truth(d) * (1.0 + e), step: Some((i * 10) as f64) }
        })
        .collect()
}

#[test]
fn a_known_schedule_bends_the_forecast_with_its_anneal() {
    let end = 4.096e7;
    let truth_end = scheduled_truth(end);
    let (mut given, mut missing, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut covered = 0;
    for seed in 0..10 {
        // The first 20 % of the run: its rate is still above 90 % of the peak.
        let obs = scheduled_log(2000, 0.002, 300 + seed);
        let o = ForecastOptions { at: vec![end], shape: Some(cosine()), anneal: Some(0.05), ..Default::default() };
        let f = forecast(&obs, None, &o).expect("forecast");
        assert_eq!(f.fit.curve.anneal, 0.05);
        assert!(f.notes.iter().any(|n| n.contains("follows the schedule cosine") && n.contains("K = 0.0500 given")), "{:?}", f.notes);
        given.push((f.points[0].loss / truth_end - 1.0).abs());
        if f.points[0].lo <= truth_end && truth_end <= f.points[0].hi {
            covered += 1;
        }
        // Without the anneal it says it does not know the drop, and stands higher.
        let g = forecast(&obs, None, &ForecastOptions { anneal: None, ..o.clone() }).unwrap();
        assert!(g.notes.iter().any(|n| n.contains("not known from this log") && n.contains("likely too high")), "{:?}", g.notes);
        missing.push(g.points[0].loss / truth_end - 1.0);
        let h = forecast(&obs, None, &ForecastOptions { shape: None, anneal: None, ..o }).unwrap();
        plain.push((h.points[0].loss / truth_end - 1.0).abs());
    }
    let (mg, mp) = (median(&mut given), median(&mut plain));
    assert!(mg < 0.005 && mg < mp, "median |error| with the schedule and its anneal {mg:.4}, without the schedule {mp:.4}");
    assert!(median(&mut missing) > 0.0, "without the anneal the forecast is high: {missing:?}");
    assert!(covered >= 7, "{covered} of 10");

    // 60 % of the way the rate has fallen to about 40 % of its peak: the log fits the anneal itself.
    let obs = scheduled_log(6000, 0.0005, 7);
    let f = forecast(&obs, None, &ForecastOptions { at: vec![end], shape: Some(cosine()), ..Default::default() }).unwrap();
    assert!((f.fit.curve.anneal - 0.05).abs() < 0.02, "{:?}", f.fit.curve);
    assert!(f.notes.iter().any(|n| n.contains("fitted from the log")), "{:?}", f.notes);
    assert!((f.points[0].loss / truth_end - 1.0).abs() < 0.005, "{:?} vs {truth_end}", f.points[0]);
    // Every rule meets the fitted curve along the schedule.
    for rule in [Rule::Gap(0.05), Rule::Target(1.95), Rule::Slope(1.0)] {
        let t = f.fit.tokens_for(rule).expect("met");
        let c = f.fit.curve;
        let miss = match rule {
            Rule::Gap(eps) => c.value(t) - c.limit() - eps,
            Rule::Target(l) => c.value(t) - l,
            Rule::Slope(tau) => -c.slope(t) * SLOPE_UNIT_TOKENS - tau,
        };
        assert!(miss.abs() < 1e-6, "{rule}: {miss:e} at {t:e}");
    }
    // The slope against finite differences, inside the decay.
    let (c, d) = (f.fit.curve, 2.5e7);
    let fd = (c.value(d * (1.0 + 1e-6)) - c.value(d * (1.0 - 1e-6))) / (2e-6 * d);
    assert!((c.slope(d) - fd).abs() < 1e-6 * fd.abs(), "{} vs {fd}", c.slope(d));
}

#[test]
fn a_bad_schedule_or_anneal_is_refused_by_field() {
    let obs = log(1000, 10, 0.002, 9);
    let bad = Shape { floor: 2.0, ..cosine() };
    let e = forecast(&obs, None, &ForecastOptions { shape: Some(bad), ..Default::default() }).unwrap_err();
    assert!(matches!(&e, ForecastError::Invalid { field: "schedule", .. }), "{e}");
    let e = forecast(&obs, None, &ForecastOptions { shape: Some(cosine()), anneal: Some(-0.1), ..Default::default() }).unwrap_err();
    assert!(matches!(&e, ForecastError::Invalid { field: "anneal", .. }), "{e}");
    // An anneal with no schedule given or logged.
    let e = forecast(&obs, None, &ForecastOptions { anneal: Some(0.05), ..Default::default() }).unwrap_err();
    assert!(matches!(&e, ForecastError::Invalid { field: "anneal", .. }) && e.to_string().contains("give the schedule"), "{e}");
}

#[test]
fn a_logged_learning_rate_gives_the_schedule() {
    // The scheduled run's first 30 %, its rate logged every 50 steps as a trainer_state.json
    // does, and where it ends: the forecast reads the cosine from it and follows it, as if given.
    let obs = scheduled_log(3000, 0.001, 11);
    let lr: Vec<(f64, f64)> = (1..=60).map(|i| ((i * 50) as f64 * 4096.0, 3e-4 * cosine().rate((i * 50) as f64 * 4096.0))).collect();
    let logged = Schedule { lr, total_tokens: Some(4.096e7) };
    let o = ForecastOptions { at: vec![4.096e7], anneal: Some(0.05), schedule: Some(logged), ..Default::default() };
    let f = forecast(&obs, None, &o).unwrap();
    let s = f.fit.curve.schedule.expect("read from the log");
    assert!(s.decay == schedule::Decay::Cosine && (s.floor - 0.1).abs() < 1e-6, "{s:?}");
    assert!(f.notes.iter().any(|n| n.contains("read from the log's learning rate")), "{:?}", f.notes);
    let given = forecast(&obs, None, &ForecastOptions { shape: Some(cosine()), ..o }).unwrap();
    assert!((f.points[0].loss - given.points[0].loss).abs() < 1e-9);
}
