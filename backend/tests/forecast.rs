//! `p2law forecast` and `p2law watch` end to end, on logs whose truth is known: generated from
//! `L(D) = 1.8 + 0.9·(D/1e6)^-0.3` with small correlated noise, written in every format p2law
//! reads, and on logs that break (diverging, NaN, over-fitting), whose warnings must name the
//! step where the trouble starts.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TPS: f64 = 4096.0;

fn p2law(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_p2law")).args(args).output().expect("p2law runs")
}

fn truth(d: f64) -> f64 {
    1.8 + 0.9 * (d / 1e6).powf(-0.3)
}

/// `(step, loss)` every 10 steps to `steps`, with a deterministic AR(1) noise of 0.2 %.
fn points(steps: u64) -> Vec<(u64, f64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut e = 0.0;
    (1..=steps / 10)
        .map(|i| {
            // xorshift, two uniforms → an approximately normal draw
            let mut u = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64
            };
            let z = (u() + u() + u() + u() - 2.0) * 3f64.sqrt();
            e = 0.5 * e + 0.866 * z * 0.002;
            let step = i * 10;
            (step, truth(step as f64 * TPS) * (1.0 + e))
        })
        .collect()
}

fn hf(eval: &[(u64, f64)], train: &[(u64, f64)], max_steps: u64) -> String {
    let mut h: Vec<Value> = Vec::new();
    for &(s, l) in train {
        h.push(json!({"epoch": s as f64 / 1e4, "learning_rate": 3e-4, "loss": l, "step": s, "num_input_tokens_seen": 0}));
    }
    for &(s, l) in eval {
        h.push(json!({"epoch": s as f64 / 1e4, "eval_loss": l, "step": s, "num_input_tokens_seen": 0}));
    }
    h.sort_by_key(|e| e["step"].as_u64());
    serde_json::to_string_pretty(&json!({"global_step": max_steps, "log_history": h, "max_steps": max_steps})).unwrap()
}

fn forecast_json(args: &[&str]) -> Value {
    let out = p2law(args);
    assert!(out.status.success(), "p2law {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn every_format_gives_the_same_forecast_of_a_known_curve() {
    let dir = tempfile::tempdir().unwrap();
    let p = points(2000);
    let path = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(path("trainer_state.json"), hf(&p, &[], 2000)).unwrap();
    let mut csv = String::from("step,loss\n");
    let mut jsonl = String::new();
    let mut panel = String::from("\"Step\",\"heal - eval/loss\",\"heal - eval/loss__MIN\",\"heal - eval/loss__MAX\"\n");
    let mut tb: Vec<(i64, &str, f32)> = Vec::new();
    for &(s, l) in &p {
        csv.push_str(&format!("{s},{l:?}\n"));
        jsonl.push_str(&format!("{{\"tokens\": {:?}, \"loss\": {l:?}}}\n", s as f64 * TPS));
        panel.push_str(&format!("{s},{l:?},{l:?},{l:?}\n"));
        tb.push((s as i64, "eval/loss", l as f32));
    }
    std::fs::write(path("log.csv"), csv).unwrap();
    std::fs::write(path("log.jsonl"), jsonl).unwrap();
    std::fs::write(path("panel.csv"), panel).unwrap();
    std::fs::write(path("events.out.tfevents.1.host"), p2law_shared::logs::tensorboard::write_scalars(&tb)).unwrap();
    let at = "8.192e7";
    let tps = TPS.to_string();
    let mut got = Vec::new();
    for (file, extra) in [
        ("trainer_state.json", vec!["--tokens-per-step", tps.as_str()]),
        ("log.csv", vec!["--tokens-per-step", tps.as_str()]),
        ("log.jsonl", vec![]),
        ("panel.csv", vec!["--tokens-per-step", tps.as_str()]),
        ("events.out.tfevents.1.host", vec!["--tokens-per-step", tps.as_str()]),
    ] {
        let f = path(file);
        let mut args = vec!["forecast", f.as_str(), "--json", "--at", at, "--rule", "gap:0.1"];
        args.extend(extra);
        let v = forecast_json(&args);
        let pt = &v["points"][0];
        let (loss, lo, hi) = (pt["loss"].as_f64().unwrap(), pt["lo"].as_f64().unwrap(), pt["hi"].as_f64().unwrap());
        let want = truth(8.192e7);
        assert!((loss / want - 1.0).abs() < 0.01, "{file}: {loss} vs {want}");
        assert!(lo <= want && want <= hi, "{file}: band {lo}..{hi} misses {want}");
        assert!(v["warnings"].as_array().unwrap().is_empty(), "{file}: {}", v["warnings"]);
        assert!(v["rule"]["progress"].as_f64().unwrap() > 0.0);
        got.push((file, loss));
    }
    // The same checkpoints in any format give the same forecast (TensorBoard stores f32).
    for (file, loss) in &got[1..] {
        assert!((loss - got[0].1).abs() < 1e-5, "{file}: {loss} vs trainer_state {}", got[0].1);
    }
    // A constant schedule is the plain form: the same forecast, the schedule and its anneal in JSON.
    let csv = path("log.csv");
    let v = forecast_json(&["forecast", &csv, "--json", "--at", at, "--rule", "gap:0.1", "--tokens-per-step", &tps, "--schedule", "constant:1e12", "--anneal", "0"]);
    assert!((v["points"][0]["loss"].as_f64().unwrap() - got[1].1).abs() < 1e-9, "{}", v["points"][0]);
    assert_eq!(v["fit"]["schedule"]["decay"], "constant");
    assert_eq!(v["fit"]["anneal"], 0.0);
    assert!(v["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().contains("follows the schedule constant")), "{}", v["notes"]);
    // The human view says the same.
    let out = p2law(&["forecast", &path("log.csv"), "--tokens-per-step", &tps, "--at", at]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("asymptote") && text.contains("8.1920e7"), "{text}");
}

#[test]
fn broken_runs_are_named_at_the_step_they_break() {
    let dir = tempfile::tempdir().unwrap();
    let tps = TPS.to_string();
    // Diverging from step 1500: the loss climbs 1 % every 100 steps.
    let p: Vec<(u64, f64)> = points(3000)
        .into_iter()
        .map(|(s, l)| if s > 1500 { (s, truth(1500.0 * TPS) * (1.0 + 0.01 * (s - 1500) as f64 / 100.0)) } else { (s, l) })
        .collect();
    let f = dir.path().join("diverging.json");
    std::fs::write(&f, hf(&p, &[], 3000)).unwrap();
    let v = forecast_json(&["forecast", f.to_str().unwrap(), "--json", "--tokens-per-step", &tps]);
    let w = v["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "diverging").cloned().expect("diverging");
    let step = w["step"].as_f64().unwrap();
    assert!((1300.0..=1700.0).contains(&step), "{w}");

    // NaN at step 810, as Python's json writes it (a bare NaN).
    let p = points(2000);
    let text = hf(&p, &[], 2000).replace(&format!("\"eval_loss\": {:?}", p[80].1), "\"eval_loss\": NaN");
    assert!(text.contains("NaN"));
    let f = dir.path().join("nan.json");
    std::fs::write(&f, text).unwrap();
    let v = forecast_json(&["forecast", f.to_str().unwrap(), "--json", "--tokens-per-step", &tps]);
    let w = v["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "nan").cloned().expect("nan");
    assert_eq!(w["step"].as_f64(), Some(810.0), "{w}");
    assert_eq!(v["last_step"].as_f64(), Some(800.0));
    // `p2law fit` still refuses the file, naming the record and field.
    let out = p2law(&["convert", f.to_str().unwrap(), "--tokens-per-step", &tps]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("field `eval_loss`") && err.contains("NaN"), "{err}");

    // Over-fitting: eval falls to step 1200 then rises 0.4 % per eval; train keeps falling.
    let train = points(2400);
    let eval: Vec<(u64, f64)> = (1..=24)
        .map(|i| {
            let s = i * 100;
            (s, if s <= 1200 { truth(s as f64 * TPS) } else { truth(1200.0 * TPS) * (1.0 + 0.004 * (s - 1200) as f64 / 100.0) })
        })
        .collect();
    let f = dir.path().join("overfit.json");
    std::fs::write(&f, hf(&eval, &train, 2400)).unwrap();
    let v = forecast_json(&["forecast", f.to_str().unwrap(), "--json", "--tokens-per-step", &tps]);
    let w = v["warnings"].as_array().unwrap().iter().find(|w| w["kind"] == "overfitting").cloned().expect("overfitting");
    assert_eq!(w["step"].as_f64(), Some(1200.0), "{w}");
}

#[test]
fn bad_logs_and_rules_exit_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let tps = TPS.to_string();
    let f = dir.path().join("state.json");
    std::fs::write(&f, hf(&points(2000), &[], 2000)).unwrap();
    let f = f.to_str().unwrap();
    // Exit 1 for a bad log or rule; 2 for a malformed command line (clap's usage errors).
    let check = |args: &[&str], want: &[&str]| {
        let out = p2law(args);
        let err = String::from_utf8_lossy(&out.stderr);
        let usage = args.iter().any(|a| a.starts_with("speed") || a.contains(",-"));
        assert_eq!(out.status.code(), Some(if usage { 2 } else { 1 }), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: printed a forecast from nothing");
        for w in want {
            assert!(err.contains(w), "{args:?}: `{w}` not in {err}");
        }
    };
    // Tokens that cannot be derived: the record and field.
    check(&["forecast", f], &["state.json", "record 0", "num_input_tokens_seen", "--tokens-per-step"]);
    // A target below the asymptote's band.
    check(&["forecast", f, "--tokens-per-step", &tps, "--rule", "target:1.2"], &["state.json", "can never be met", "levels off at 1.7"]);
    check(&["forecast", f, "--tokens-per-step", &tps, "--rule", "speed:3"], &["--rule"]);
    check(&["forecast", f, "--tokens-per-step", &tps, "--at", "1e9,-5"], &["--at", "positive"]);
    // A schedule that is not one, and an anneal without a schedule: the flag and the reason.
    check(&["forecast", f, "--tokens-per-step", &tps, "--schedule", "step:1e9"], &["--schedule", "`step`", "cosine"]);
    check(&["forecast", f, "--tokens-per-step", &tps, "--schedule", "cosine:1e9:1.5"], &["--schedule", "floor"]);
    check(&["forecast", f, "--tokens-per-step", &tps, "--anneal", "0.05"], &["state.json", "anneal", "give the schedule"]);
    // No usable points.
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "step,loss\n10,3.0\n20,2.9\n").unwrap();
    check(&["forecast", empty.to_str().unwrap(), "--tokens-per-step", &tps], &["empty.csv", "2 usable checkpoint(s)"]);
    let none = dir.path().join("none.json");
    std::fs::write(&none, r#"{"log_history": [{"learning_rate": 1e-4, "step": 1}]}"#).unwrap();
    check(&["forecast", none.to_str().unwrap(), "--tokens-per-step", &tps], &["none.json", "no checkpoints"]);
}

/// Appends checkpoints to a CSV log while `p2law watch` follows it; the view grows with the
/// log, a half-written line is waited out, and Ctrl-C (SIGINT) ends it with status 0.
#[test]
fn watch_follows_a_growing_log_and_stops_on_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("run.csv");
    let p = points(3000);
    let write_upto = |n: usize, partial: bool| {
        let mut s = String::from("step,loss\n");
        for (st, l) in &p[..n] {
            s.push_str(&format!("{st},{l:?}\n"));
        }
        if partial {
            s.push_str("99");
        }
        std::fs::write(&log, s).unwrap();
    };
    write_upto(40, false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2law"))
        .args(["watch", log.to_str().unwrap(), "--every", "100ms", "--plain", "--tokens-per-step", "4096", "--rule", "gap:0.1", "--resamples", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("watch starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |what: &str| {
        let t0 = Instant::now();
        while !seen.contains(what) {
            assert!(t0.elapsed() < Duration::from_secs(60), "`{what}` never shown; saw:\n{seen}");
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&l);
                seen.push('\n');
            }
        }
    };
    wait_for("40 checkpoints");
    for n in [80usize, 160, 300] {
        write_upto(n, true);
        std::thread::sleep(Duration::from_millis(150));
        write_upto(n, false);
        wait_for(&format!("{n} checkpoints"));
    }
    assert!(seen.contains("toward gap:0.1"), "{seen}");
    let status = Command::new("sh").args(["-c", &format!("kill -INT {}", child.id())]).status().unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "watch ignored Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
        seen.push_str(&l);
        seen.push('\n');
    }
    assert!(code.success(), "{code:?}");
    assert!(seen.contains("stopped after"), "{seen}");
}
