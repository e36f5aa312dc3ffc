//! The `p2law` command line end to end: real files in, checked numbers out.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};


/// Runs the `p2law` binary cargo built for this test with `args`.
fn p2law(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_p2law")).args(args).output().expect("p2law runs")
}

/// The external data shipped in the repository (`shared/data/external`).
fn external(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/external").join(name)
}

/// Epoch AI's 240 Chinchilla points as canonical `n,tokens,loss` CSV: the 5 highest losses
/// dropped, `tokens = FLOP / (6 N)` (Besiroglu et al., arXiv 2404.10102).
fn epoch_canonical_csv() -> String {
    let text = std::fs::read_to_string(external("epoch_chinchilla_svg_extracted_data.csv")).expect("Epoch data");
    let mut rows: Vec<(f64, f64, f64)> = text
        .lines()
        .skip(1)
        .map(|l| {
            let c: Vec<f64> = l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect();
            (c[3], c[4], c[6])
        })
        .collect();
    rows.sort_by(|a, b| a.2.total_cmp(&b.2));
    rows.truncate(rows.len() - 5);
    let mut out = String::from("n,tokens,loss\n");
    for (n, flop, loss) in rows {
        out.push_str(&format!("{n:?},{:?},{loss:?}\n", flop / (6.0 * n)));
    }
    out
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "p2law failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p.display().to_string()
}

/// The external check of the fitter: Epoch AI's published Huber optimum on the Chinchilla data.
#[test]
fn epoch_chinchilla_reaches_the_published_optimum() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "epoch.csv", &epoch_canonical_csv());
    let out = p2law(&["fit", "--law", "chinchilla", "--objective", "huber-log", "--starts", "full", "--json", &data]);
    let fit = stdout_json(&out);
    let objective = fit["objective"].as_f64().expect("objective");
    assert!(objective <= 0.001_018_274_0 * (1.0 + 1e-6), "objective {objective}");
    let p = |k: &str| fit["params"][k].as_f64().expect("param");
    for (name, want, tol) in [("E", 1.8172, 0.0005), ("alpha", 0.3473, 0.001), ("beta", 0.3672, 0.002), ("A", 477.84, 5.0), ("B", 2143.86, 60.0)] {
        assert!((p(name) - want).abs() <= tol, "{name} = {} (published {want} ± {tol})", p(name));
    }
    assert_eq!(fit["metrics"]["points"], 240);
}

/// Every sample format converts to canonical CSV with the right number of curves and points.
#[test]
fn convert_reads_every_sample_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A trainer_state.json as transformers writes it with token counting off: eval entries,
    // a predict_* entry, the final summary, num_input_tokens_seen 0.
    let hf = write(
        dir.path(),
        "trainer_state.json",
        r#"{"global_step": 300, "log_history": [
            {"step": 100, "loss": 3.2, "learning_rate": 1e-4, "num_input_tokens_seen": 0},
            {"step": 100, "eval_loss": 3.1, "num_input_tokens_seen": 0},
            {"step": 200, "eval_loss": 2.9, "num_input_tokens_seen": 0},
            {"step": 300, "predict_loss": 2.8, "predict_runtime": 1.0},
            {"step": 300, "eval_loss": 2.8, "num_input_tokens_seen": 0},
            {"step": 300, "train_loss": 3.0, "train_runtime": 99.0, "total_flos": 1e15}]}"#,
    );
    let cases: Vec<(Vec<String>, usize, usize)> = vec![
        (vec![hf.clone(), "--tokens-per-step".into(), "65536".into(), "--n0".into(), "1.2e9".into(), "--rho".into(), "0.25".into(), "--l0".into(), "2.7".into()], 1, 3),
        (vec![external("colpret_olmo_wandb_export_sample.csv").display().to_string(), "--tokens-per-step".into(), "4194304".into()], 36, 0),
        (vec![external("misfitting_wandb_runs_export_spm.csv").display().to_string()], 0, 0),
        (
            vec![
                external("pythia_train_lm_loss_70m-0.csv").display().to_string(),
                "--format".into(),
                "csv".into(),
                "--metric".into(),
                "train/lm_loss".into(),
                "--tokens-per-step".into(),
                "2097152".into(),
            ],
            1,
            142_999,
        ),
    ];
    for (args, curves, points) in cases {
        let mut argv = vec!["convert"];
        argv.extend(args.iter().map(String::as_str));
        let out = p2law(&argv);
        assert!(out.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).expect("utf8");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("run,n0,rho,n,l0,tokens,loss,method,family,split"));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        if curves > 0 {
            let mut runs: Vec<&str> = rows.iter().map(|r| r[0]).collect();
            runs.dedup();
            assert_eq!(runs.len(), curves, "{argv:?}");
        }
        if points > 0 {
            assert_eq!(rows.len(), points, "{argv:?}");
        } else {
            assert!(!rows.is_empty());
        }
        // Canonical output reads back as canonical input.
        let again = write(dir.path(), "again.csv", &text);
        assert!(p2law(&["convert", &again]).status.success());
    }
    // The trainer_state rows, exactly: eval loss at step × 65536 tokens, metadata applied.
    let out = p2law(&["convert", &hf, "--tokens-per-step", "65536", "--n0", "1.2e9", "--rho", "0.25", "--l0", "2.7"]);
    let text = String::from_utf8(out.stdout).expect("utf8");
    assert!(text.contains("trainer_state,1200000000,0.25,900000000,2.7,6553600,3.1,,,eval"), "{text}");
    assert!(text.contains("trainer_state,1200000000,0.25,900000000,2.7,19660800,2.8,,,eval"), "{text}");
}

/// Independent P² formula for the synthetic data and the checks below.
fn p2(p: &[f64; 7], n0: f64, rho: f64, l0: f64, d: f64) -> f64 {
    let [nc, dc, e, alpha, beta, gamma, delta] = *p;
    l0 + (1.0 / rho).powf(gamma) * (1.0 / n0).powf(delta) * (nc / n0.powf(alpha) + dc / d.powf(beta) + e)
}

#[test]
fn fit_then_predict_and_budget_from_the_fit_file() {
    let truth = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05];
    let mut csv = String::from("run,n0,rho,l0,tokens,loss,method\n");
    for (n0, l0) in [(1.2e8, 3.3), (4.1e8, 2.9), (1.4e9, 2.6)] {
        for rho in [0.15, 0.3, 0.5] {
            for k in 0..10 {
                let d = 1e7 * 10f64.powf(k as f64 * 0.3);
                csv.push_str(&format!("m{n0:e}-{rho},{n0},{rho},{l0},{d},{},depth\n", p2(&truth, n0, rho, l0, d)));
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "curves.csv", &csv);
    let fit_path = dir.path().join("fit.json").display().to_string();
    let svg = dir.path().join("fit.svg").display().to_string();
    let out = p2law(&[
        "fit", "--law", "p2", "--starts", "full", "--holdout", "last20", "--bootstrap", "20", "--seed", "3", "--out", &fit_path, "--plot", &svg, &data,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("holdout last20") && human.contains("gamma"), "{human}");
    assert!(std::fs::read_to_string(&svg).expect("svg").contains("<svg"));
    let fit: Value = serde_json::from_str(&std::fs::read_to_string(&fit_path).expect("fit file")).expect("json");
    assert!(fit["metrics"]["rmse"].as_f64().expect("rmse") < 1e-5);
    assert!(fit["holdout"]["mean_abs_error"].as_f64().expect("holdout") < 1e-4);
    assert_eq!(fit["intervals"]["samples"].as_array().expect("samples").len() + fit["intervals"]["failed"].as_u64().expect("failed") as usize, 20);

    // predict equals the P² formula evaluated by hand with the fitted coefficients.
    let names = ["N_C", "D_C", "E", "alpha", "beta", "gamma", "delta"];
    let fitted: [f64; 7] = names.map(|n| fit["params"][n].as_f64().expect("coefficient"));
    let pred = stdout_json(&p2law(&["predict", "--fit", &fit_path, "--n0", "2e9", "--n", "1.5e9", "--l0", "2.5", "--tokens", "1e8,1e10", "--json"]));
    for (i, d) in [1e8, 1e10].into_iter().enumerate() {
        let got = pred["predictions"][i]["loss"].as_f64().expect("loss");
        assert!((got - p2(&fitted, 2e9, 0.25, 2.5, d)).abs() < 1e-12, "{got}");
        let band = &pred["predictions"][i]["band"];
        assert!(band[0].as_f64().expect("lo") <= got + 1e-6 && got - 1e-6 <= band[1].as_f64().expect("hi"));
    }

    // N0 2e9 is 2e9 / 1.4e9 = 1.43× the largest parent, D 1e10 is 1e10 / (1e7 · 10^2.7) = 2.00× the
    // most tokens, L0 2.5 is 0.1 under the lowest (2.6): each said, by how far; rho 0.25 is inside.
    let fields: Vec<&str> = pred["extrapolation"].as_array().expect("extrapolation").iter().map(|e| e["field"].as_str().expect("field")).collect();
    assert_eq!(fields, ["N0", "D", "L0"], "{}", pred["extrapolation"]);
    assert!(pred["extrapolation"][2]["message"].as_str().expect("message").contains("0.1 outside"), "{}", pred["extrapolation"]);
    assert!(pred["extrapolation"][0]["message"].as_str().expect("message").contains("1.43× the largest calibrated parent"), "{}", pred["extrapolation"]);
    assert!(pred["extrapolation"][1]["message"].as_str().expect("message").contains("2.00×"), "{}", pred["extrapolation"]);
    assert!(pred["degenerate"].is_null());
    let text = p2law(&["predict", "--fit", &fit_path, "--n0", "2e9", "--rho", "0.25", "--l0", "2.5", "--tokens", "1e8"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("EXTRAPOLATION: N0 2.000e9 is 1.43×") && !text.contains("EXTRAPOLATION: D"), "{text}");

    // budget: the slope at the recommended D, by finite difference, equals tau per 1e9 tokens.
    let b = stdout_json(&p2law(&[
        "budget", "--fit", &fit_path, "--n0", "2e9", "--rho", "0.25", "--l0", "2.5", "--rule", "slope:0.002", "--gpu-flops", "1e15", "--mfu", "0.5", "--price", "2", "--json",
    ]));
    let d = b["recommendation"]["tokens"].as_f64().expect("tokens");
    let h = d * 1e-5;
    let slope = -(p2(&fitted, 2e9, 0.25, 2.5, d + h) - p2(&fitted, 2e9, 0.25, 2.5, d - h)) / (2.0 * h) * 1e9;
    assert!((slope / 0.002 - 1.0).abs() < 1e-5, "slope {slope}");
    let flops = b["recommendation"]["cost"]["flops"].as_f64().expect("flops");
    assert!((flops - 6.0 * 1.5e9 * d).abs() < 1e-6 * flops);
    let hours = b["recommendation"]["cost"]["gpu_hours"].as_f64().expect("hours");
    assert!((hours - flops / 5e14 / 3600.0).abs() < 1e-9 * hours);
}

/// One parent cannot pin down how the law scales with N0: the fit says so, by name, in every
/// summary, and `budget` repeats it.
#[test]
fn a_degenerate_fit_is_named() {
    let truth = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05];
    let mut csv = String::from("run,n0,rho,l0,tokens,loss,method\n");
    for rho in [0.15, 0.3, 0.5] {
        for k in 0..10 {
            let d = 1e7 * 10f64.powf(k as f64 * 0.3);
            csv.push_str(&format!("m-{rho},4.1e8,{rho},2.9,{d},{},depth\n", p2(&truth, 4.1e8, rho, 2.9, d)));
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "curves.csv", &csv);
    let fit_path = dir.path().join("fit.json").display().to_string();
    let out = p2law(&["fit", "--law", "p2", "--out", &fit_path, &data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("WARNING: degenerate fit: the data do not pin down"), "{human}");
    let b = p2law(&["budget", "--fit", &fit_path, "--n0", "4.1e8", "--rho", "0.3", "--l0", "2.9", "--rule", "slope:0.002"]);
    let text = String::from_utf8_lossy(&b.stdout);
    assert!(b.status.success() && text.starts_with("WARNING: degenerate fit"), "{text}");
}

/// Bad input: a clear message naming the file, line or field, a non-zero exit, never a panic.
#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_fit = dir.path().join("good.json").display().to_string();
    let curves = write(dir.path(), "ok.csv", &epoch_canonical_csv());
    assert!(p2law(&["fit", "--law", "chinchilla", "--out", &good_fit, &curves]).status.success());
    let f = |name: &str, text: &str| write(dir.path(), name, text);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("malformed CSV row", vec!["fit".into(), "--law".into(), "p2".into(), f("short.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0.2,2.5,1e8\n")], "short.csv, line 2"),
        ("NaN loss", vec!["fit".into(), "--law".into(), "p2".into(), f("nan.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0.2,2.5,1e8,NaN\n")], "nan.csv, line 2, field `loss`"),
        ("negative tokens", vec!["fit".into(), "--law".into(), "p2".into(), f("neg.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0.2,2.5,-1e8,2.9\n")], "neg.csv, line 2, field `tokens`"),
        ("NaN tokens", vec!["fit".into(), "--law".into(), "p2".into(), f("nantokens.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0.2,2.5,0,2.9\na,1e9,0.2,2.5,NaN,2.9\n")], "nantokens.csv, line 3, field `tokens`"),
        ("rho above 1", vec!["fit".into(), "--law".into(), "p2".into(), f("rho.csv", "run,n0,rho,l0,tokens,loss\na,1e9,1.5,2.5,1e8,2.9\n")], "rho.csv, line 2, field `rho`"),
        ("unknown law", vec!["fit".into(), "--law".into(), "p3".into(), curves.clone()], "unknown law `p3`"),
        ("empty data", vec!["fit".into(), "--law".into(), "chinchilla".into(), f("empty.csv", "n,tokens,loss\n")], "empty.csv: no data rows"),
        ("empty file", vec!["fit".into(), "--law".into(), "chinchilla".into(), f("blank.csv", "")], "blank.csv: the file is empty"),
        ("missing l0", vec!["fit".into(), "--law".into(), "p2".into(), f("nol0.csv", "run,n0,rho,tokens,loss\na,1e9,0.2,1e8,2.9\na,1e9,0.2,2e8,2.8\n")], "run `a`: field `l0` is missing"),
        ("missing file", vec!["fit".into(), "--law".into(), "p2".into(), "/nonexistent/x.csv".into()], "reading /nonexistent/x.csv"),
        ("bad HF JSON", vec!["convert".into(), f("trainer_state.json", "{\"log_history\": [{\"loss\": \"x\", \"step\": 1}]}")], "trainer_state.json, record 0, field `loss`"),
        ("not a fit file", vec!["predict".into(), "--fit".into(), f("notfit.json", "{\"law\": \"p2\"}"), "--n0".into(), "1e9".into(), "--rho".into(), "0.2".into(), "--l0".into(), "2".into(), "--tokens".into(), "1e9".into()], "notfit.json: not a p2law fit file"),
        ("predict rho outside (0,1)", vec!["predict".into(), "--fit".into(), good_fit.clone(), "--n0".into(), "1e9".into(), "--rho".into(), "1.2".into(), "--tokens".into(), "1e9".into()], "--rho: must be in [0, 1), got 1.2"),
        ("predict zero tokens", vec!["predict".into(), "--fit".into(), good_fit.clone(), "--n0".into(), "1e9".into(), "--rho".into(), "0".into(), "--tokens".into(), "0".into()], "field `tokens`"),
        ("bad budget rule", vec!["budget".into(), "--fit".into(), good_fit.clone(), "--n0".into(), "1e9".into(), "--rho".into(), "0".into(), "--rule".into(), "speed:3".into()], "rule `speed:3`"),
        ("unreachable target", vec!["budget".into(), "--fit".into(), good_fit.clone(), "--n0".into(), "1e9".into(), "--rho".into(), "0".into(), "--rule".into(), "target:0.5".into()], "below the predicted asymptote"),
    ];
    for (what, args, want) in cases {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = p2law(&argv);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: succeeded");
        assert_ne!(out.status.code(), Some(101), "{what}: panicked: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert!(err.contains(want), "{what}: expected `{want}` in: {err}");
    }
    let rho0 = f("rho0.csv", "run,n0,rho,l0,tokens,loss\na,1e9,0,2.5,1e8,2.9\na,1e9,0,2.5,2e8,2.8\n");
    let out = p2law(&["fit", "--law", "p2", &rho0]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `a`: field `rho` must be in (0, 1) for law `p2`"));
}

/// `study run` and `study report` on bad input: the flag, or the file, line and field, and exit
/// 1, before any training and with nothing written.
#[test]
fn study_commands_name_their_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).expect("corpus dir");
    std::fs::write(corpus.join("a.txt"), "To be, or not to be, that is the question. ".repeat(200)).expect("text");
    let out = dir.path().join("study");
    let out_s = out.display().to_string();
    let c = corpus.display().to_string();
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        ("missing corpus", vec!["--out".into(), out_s.clone(), "--corpus".into(), dir.path().join("nope").display().to_string()], "--corpus"),
        ("unwritable out", vec!["--out".into(), "/proc/p2law-study".into(), "--corpus".into(), c.clone()], "--out"),
        ("unknown unit", vec!["--out".into(), out_s.clone(), "--corpus".into(), c.clone(), "--only".into(), "study-h16/depth/0.99/s0".into()], "--only"),
        ("zero budget", vec!["--out".into(), out_s.clone(), "--corpus".into(), c.clone(), "--budget-hours".into(), "0".into()], "--budget-hours"),
    ];
    for (name, args, want) in cases {
        let mut all = vec!["study".to_string(), "run".into(), "--device".into(), "cpu".into()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let o = p2law(&refs);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want) && !err.contains("panicked"), "{name}: {err}");
        assert!(!out.join("curves.csv").exists() && !out.join("manifest.json").exists(), "{name}: nothing half-written");
    }
    // A file that is not study data: which file, line and field.
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).expect("dir");
    std::fs::write(bad.join("curves.csv"), "run,n0,rho,n,l0,tokens,loss,method,family,split\nx/depth/0.25/s0,100,0.25,75,2.0,0,3.0,depth,f,held-out\n").expect("csv");
    std::fs::write(bad.join("manifest.json"), "{\"not\": \"a manifest\"}").expect("manifest");
    let o = p2law(&["study", "report", "--data", &bad.display().to_string(), "--out", &dir.path().join("report").display().to_string()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("manifest.json") && err.contains("line 1") && err.contains("not a study manifest"), "{err}");
}

/// A TensorBoard file written by PyTorch's SummaryWriter (TF2 tensor scalars), converted by the
/// command line: the values the writer stored, tokens from the logged token tag.
#[test]
fn convert_reads_a_tensorboard_file_of_an_independent_writer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tensorboard");
    let values: Value = serde_json::from_str(&std::fs::read_to_string(root.join("values.json")).unwrap()).unwrap();
    let file = root.join("tensor/events.out.tfevents.fixture");
    let out = p2law(&["convert", file.to_str().unwrap(), "--metric", "eval/loss", "--tokens-per-step", "8192"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<(f64, f64)> = csv.lines().skip(1).map(|l| {
        let c: Vec<&str> = l.split(',').collect();
        (c[5].parse().unwrap(), c[6].parse().unwrap())
    }).collect();
    let want: Vec<(f64, f64)> = values["runs"]["tensor"]["eval/loss"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap() * 8192.0, p[1].as_f64().unwrap())).collect();
    let f32s = |v: &[(f64, f64)]| v.iter().map(|&(t, l)| (t, l as f32)).collect::<Vec<_>>();
    assert_eq!(f32s(&rows), f32s(&want));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Tensorboard, 1 curve(s), 20 checkpoint(s), tokens Logged"));
}

/// A calibration event of `stage` (with a held-out checkpoint when `point`).
fn job_event(stage: p2law_shared::calibrate::Stage, point: bool) -> p2law_shared::calibrate::CalibrationEvent {
    p2law_shared::calibrate::CalibrationEvent {
        seq: 0,
        stage,
        unit: Some("p2-nano/depth/0.25".into()),
        step: 3,
        steps: 10,
        tokens: 3000,
        point: point.then_some(p2law_shared::data::CurvePoint { tokens: 3000.0, loss: 2.5 }),
        eta_s: None,
        message: None,
        run_id: None,
        fit_id: None,
        worker: None,
        schedule: None,
    }
}

/// Sets the modification time of `path` (file or directory) to `days` ago.
fn age_by(path: &Path, days: u64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(days * 86_400);
    std::fs::File::open(path).unwrap().set_modified(t).unwrap();
}

#[test]
fn gc_removes_what_no_job_needs_and_keeps_what_one_does() {
    use p2law_backend::store::Store;
    use p2law_shared::calibrate::{CalibrationRequest, JobStatus, Stage};
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let request = CalibrationRequest::preset("smoke").unwrap();
    let (done, queued, events_before) = rt.block_on(async {
        let store = Store::open(d).await.unwrap();
        let done = store.insert_calibration(&request, 6).await.unwrap().id;
        let queued = store.insert_calibration(&request, 6).await.unwrap().id;
        store.append_event(done, job_event(Stage::Train, false)).await.unwrap();
        store.append_event(done, job_event(Stage::Train, true)).await.unwrap();
        store.append_event(done, job_event(Stage::Pretrain, false)).await.unwrap();
        store.finish_calibration(done, JobStatus::Done, None, None, job_event(Stage::Done, false)).await.unwrap();
        store.append_event(queued, job_event(Stage::Train, false)).await.unwrap();
        (done, queued, store.events(done, 0).await.unwrap().len())
    });
    assert_eq!(events_before, 4);
    let mk = |rel: &str| {
        let p = d.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![7u8; 1000]).unwrap();
        p
    };
    mk(&format!("lab/jobs/{done}/run/model.bpk"));
    mk(&format!("lab/jobs/{queued}/run/model.bpk"));
    let stale_tmp = d.join(format!("lab/jobs/{queued}/run/.ckpt-5.tmp"));
    std::fs::create_dir_all(&stale_tmp).unwrap();
    std::fs::write(stale_tmp.join("model.bpk"), b"half").unwrap();
    age_by(&stale_tmp.join("model.bpk"), 1);
    age_by(&stale_tmp, 1);
    let fresh_tmp = mk(&format!("lab/jobs/{queued}/run/.state.json.tmp-4242"));
    mk("lab/jobs/999/run/model.bpk");
    mk(&format!("exports/job-{done}/model.safetensors"));
    mk("exports/job-777/model.safetensors");
    let old_parent = mk("lab/parents/p2-nano-old/model.bpk");
    age_by(&old_parent, 40);
    age_by(old_parent.parent().unwrap(), 40);
    mk("lab/parents/p2-micro-new/model.bpk");
    let dir = d.to_str().unwrap();

    // A dry run lists and removes nothing.
    let out = p2law(&["gc", "--data-dir", dir, "--dry-run"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&format!("would remove lab/jobs/{done}")) && text.contains("would remove exports/job-777"), "{text}");
    assert!(d.join(format!("lab/jobs/{done}")).exists() && d.join("exports/job-777").exists());

    // With a job queued: finished and unknown jobs' folders, unknown exports and stale
    // temporaries go; the queued job's folder, fresh temporaries and every parent stay.
    let out = p2law(&["gc", "--data-dir", dir, "--events-days", "0"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!d.join(format!("lab/jobs/{done}")).exists(), "{text}");
    assert!(!d.join("lab/jobs/999").exists() && !d.join("exports/job-777").exists(), "{text}");
    assert!(!stale_tmp.exists(), "{text}");
    assert!(fresh_tmp.exists() && d.join(format!("lab/jobs/{queued}/run/model.bpk")).exists(), "{text}");
    assert!(d.join(format!("exports/job-{done}")).exists(), "{text}");
    assert!(old_parent.exists() && text.contains("parents kept: a job is queued or running"), "{text}");
    assert!(text.contains("2 progress events dropped"), "{text}");
    let left: Vec<(Stage, bool)> = rt.block_on(async {
        let store = Store::open(d).await.unwrap();
        store.events(done, 0).await.unwrap().iter().map(|e| (e.stage, e.point.is_some())).collect()
    });
    assert_eq!(left, vec![(Stage::Train, true), (Stage::Done, false)]);

    // Once no job is active, the parent unused for 40 days goes, the fresh one stays; with
    // --exports-days 0 the finished job's export goes too.
    rt.block_on(async {
        let store = Store::open(d).await.unwrap();
        store.finish_calibration(queued, JobStatus::Cancelled, Some("test"), None, job_event(Stage::Cancelled, false)).await.unwrap();
    });
    let out = p2law(&["gc", "--data-dir", dir, "--exports-days", "0", "--vacuum"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!old_parent.exists() && d.join("lab/parents/p2-micro-new/model.bpk").exists(), "{text}");
    assert!(!d.join(format!("lab/jobs/{queued}")).exists() && !d.join(format!("exports/job-{done}")).exists(), "{text}");

    // Bad input names itself.
    let out = p2law(&["gc", "--data-dir", d.join("nowhere").to_str().unwrap()]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no p2law store here"));
    let out = p2law(&["gc", "--data-dir", dir, "--parents-days=-1"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--parents-days"));
}

#[test]
fn an_unreachable_database_is_named_with_its_password_masked() {
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://p2law:s3cret-pw@127.0.0.1:1/p2law";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    for args in [vec!["worker", "--database", url, "--data-dir", data], vec!["serve", "--database", url, "--data-dir", data, "--addr", "127.0.0.1:0"]] {
        let started = std::time::Instant::now();
        let out = p2law(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("postgres://p2law:***@127.0.0.1:1/p2law"), "{args:?}: {err}");
        assert!(!err.contains("s3cret-pw"), "{args:?} shows the password: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "{args:?} took {:?}", started.elapsed());
    }
    // Only PostgreSQL URLs are databases to share.
    let out = p2law(&["worker", "--database", "mysql://u:pw@h/db", "--data-dir", data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("mysql://u:***@h/db") && err.contains("postgres://"), "{err}");
}

#[test]
fn gc_drops_old_upload_bytes_only_when_asked_and_keeps_their_runs() {
    use p2law_backend::store::{NewUpload, Original, Store};
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let dir = d.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let csv = "run,tokens,loss\nr,0,3.0\nr,100,2.5\nr,1000,2.2\n";
    let id = rt.block_on(async {
        let store = Store::open(d).await.unwrap();
        let options = Default::default();
        let parsed = p2law_shared::logs::parse("old.csv", csv, &options).unwrap();
        store.insert_uploads(&[NewUpload { filename: "old.csv", bytes: csv.as_bytes(), options: &options, parsed: &parsed }]).await.unwrap()[0].0
    });
    // Without the flag, and in a dry run, the bytes stay.
    let out = p2law(&["gc", "--data-dir", dir]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("original bytes"));
    let out = p2law(&["gc", "--data-dir", dir, "--upload-bytes-days", "0", "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&format!("would drop the original bytes of 1 uploads ({} bytes)", csv.len())), "{text}");
    let store = rt.block_on(Store::open(d)).unwrap();
    assert_eq!(rt.block_on(store.upload_bytes(id)).unwrap().map(|(_, b)| b), Some(csv.as_bytes().to_vec()));
    // A day's retention keeps a minute-old upload; none drops it.
    let out = p2law(&["gc", "--data-dir", dir, "--upload-bytes-days", "1"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("of 0 uploads"), "{}", String::from_utf8_lossy(&out.stdout));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = p2law(&["gc", "--data-dir", dir, "--upload-bytes-days", "0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("dropped the original bytes of 1 uploads"), "{}", String::from_utf8_lossy(&out.stdout));
    match rt.block_on(store.upload_original(id)).unwrap() {
        Some(Original::Dropped { filename, at }) => assert!(filename == "old.csv" && at.starts_with("20"), "{filename} {at}"),
        other => panic!("{other:?}"),
    }
    // The runs parsed from it stay, points and all.
    let runs = rt.block_on(store.runs()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(rt.block_on(store.run(runs[0].id)).unwrap().unwrap().checkpoints.len(), 3);
    // Bad values are named.
    let out = p2law(&["gc", "--data-dir", dir, "--upload-bytes-days=-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upload-bytes-days"));
}

/// The value of attribute `attr` of every `<tag` element whose attributes contain `with`.
fn svg_attr<'a>(text: &'a str, tag: &str, with: &str, attr: &str) -> Vec<&'a str> {
    text.split(&format!("<{tag} "))
        .skip(1)
        .filter_map(|part| {
            let head = part.split('>').next()?;
            head.contains(with).then_some(())?;
            head.split(&format!(" {attr}=\"")).nth(1).or_else(|| head.strip_prefix(&format!("{attr}=\"")))?.split('"').next()
        })
        .collect()
}

/// The vertices of an SVG path `M x,y L x,y ...`.
fn path_points(d: &str) -> Vec<(f64, f64)> {
    d.split(['M', 'L', 'Z']).filter(|p| !p.is_empty()).filter_map(|p| p.split_once(',')).map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap())).collect()
}

#[test]
fn the_fit_plot_draws_each_fitted_curve_through_its_points() {
    let truth = [40.0, 600.0, 0.8, 0.2, 0.35, -0.8, 0.05];
    let mut csv = String::from("run,n0,rho,l0,tokens,loss,method\n");
    for (n0, l0) in [(1.2e8, 3.3), (1.4e9, 2.6)] {
        for rho in [0.2, 0.5] {
            // D = 0: the loss right after pruning (the law is not defined there).
            csv.push_str(&format!("m{n0:e}-{rho},{n0},{rho},{l0},0,{},depth\n", l0 + 1.5));
            for k in 0..8 {
                let d = 1e7 * 10f64.powf(k as f64 * 0.4);
                csv.push_str(&format!("m{n0:e}-{rho},{n0},{rho},{l0},{d},{},depth\n", p2(&truth, n0, rho, l0, d)));
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "curves.csv", &csv);
    let svg = dir.path().join("fit.svg").display().to_string();
    let out = p2law(&["fit", "--law", "p2", "--starts", "full", "--seed", "1", "--plot", &svg, &data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).expect("svg");
    // The page's renderer: an 820 x 460 picture whose plot area is x 70..800, y 20..410.
    assert!(text.contains(r#"viewBox="0 0 820 460""#), "{}", &text[..200.min(text.len())]);
    let (x0, x1, y0, y1) = (70.0, 800.0, 20.0, 410.0);
    let curves: Vec<Vec<(f64, f64)>> = svg_attr(&text, "path", r#"class="curve""#, "d").into_iter().map(path_points).collect();
    assert_eq!(curves.len(), 4, "one fitted curve per run");
    assert!(curves.iter().all(|c| c.len() == p2law_shared::plot::FITTED_POINTS), "each curve has its 120 points");
    let num = |v: Vec<&str>| v.into_iter().map(|x| x.parse::<f64>().unwrap()).collect::<Vec<_>>();
    let circles: Vec<(f64, f64)> = num(svg_attr(&text, "circle", r#"class="observed""#, "cx")).into_iter().zip(num(svg_attr(&text, "circle", r#"class="observed""#, "cy"))).collect();
    assert_eq!(circles.len(), 4 * 8, "every checkpoint after D = 0 is a circle");
    let (xmin, xmax) = circles.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    for c in &curves {
        // Inside the plot area, across the data's token range (not a vertical line at D ≈ 1).
        assert!(c.iter().all(|&(x, y)| (x0..=x1).contains(&x) && (y0..=y1).contains(&y)), "{c:?}");
        let (a, b) = c.iter().fold((f64::INFINITY, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
        assert!((a - xmin).abs() < 1.0 && (b - xmax).abs() < 1.0, "curve spans {a}..{b}, the points {xmin}..{xmax}");
    }
    // Each observed point lies on a fitted curve (the data are the law itself).
    for &(x, y) in &circles {
        let near = curves.iter().flatten().map(|&(cx, cy)| ((cx - x).powi(2) + (cy - y).powi(2)).sqrt()).fold(f64::INFINITY, f64::min);
        assert!(near < 4.0, "the point at ({x}, {y}) is {near:.1} px from every fitted curve");
    }
    // The D = 0 points are drawn apart: one triangle per run, left of every circle, above them
    // (the loss right after pruning is the highest of each run).
    let triangles: Vec<Vec<(f64, f64)>> = svg_attr(&text, "polygon", r#"class="at-zero""#, "points")
        .into_iter()
        .map(|p| p.split(' ').map(|xy| xy.split_once(',').map(|(x, y)| (x.parse().unwrap(), y.parse().unwrap())).unwrap()).collect())
        .collect();
    assert_eq!(triangles.len(), 4, "one D = 0 triangle per run");
    for t in &triangles {
        assert!(t.iter().all(|&(x, y)| x < xmin && (y0..=y1).contains(&y)), "{t:?}");
    }
}

/// `p2law fit` resolves its options through the API's `FitRequest::resolve`: the same checks and
/// caps as `POST /api/fits`, each named as its flag.
#[test]
fn fit_flags_are_checked_as_the_api_checks_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "curves.csv", &epoch_canonical_csv());
    for (flags, named) in [
        (vec!["--level", "5"], "--level: from 0.5 to 0.999, got 5"),
        (vec!["--bootstrap", "5000"], "--bootstrap: at most 2000 resamples, got 5000"),
        (vec!["--starts", "many"], "--starts: `many`: expected quick, full or a positive count"),
    ] {
        let mut args = vec!["fit", "--law", "chinchilla"];
        args.extend(flags.iter().copied());
        args.push(&data);
        let out = p2law(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(named), "{flags:?}: {err}");
    }
}

/// `--fit preset:ID` reads a shipped preset: the study's depth preset recommends more healing
/// tokens at a higher rate (the paper's central finding), says that Llama-scale N0 lies beyond
/// its parents, and an unknown id lists the shipped ones.
#[test]
fn budgets_from_the_study_preset_grow_with_the_rate() {
    let id = p2law_shared::presets::study_preset_for("depth").expect("a P² preset for depth ships");
    let fit = format!("preset:{id}");
    let mut budgets = Vec::new();
    for rho in ["0.2", "0.35", "0.5"] {
        let out = p2law(&["budget", "--fit", &fit, "--n0", "8.03e9", "--rho", rho, "--l0", "1.9", "--rule", "gap:0.01", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        budgets.push(v["recommendation"]["tokens"].as_f64().expect("tokens"));
        let beyond = v["extrapolation"].to_string();
        assert!(beyond.contains("the largest calibrated parent"), "{beyond}");
    }
    assert!(budgets.windows(2).all(|w| w[1] > w[0]), "budgets by rate 0.2, 0.35, 0.5: {budgets:?}");
    // The form's closed budget, by hand: gap = D_C rho^-gamma N0^-delta D^-beta = 0.01.
    let preset = p2law_shared::presets::presets().into_iter().find(|p| p.id == id).unwrap();
    let p = &preset.report.params;
    if preset.report.law == p2law_shared::LawForm::P2Reduced {
        let want = (p["D_C"] * 0.5f64.powf(-p["gamma"]) * 8.03e9f64.powf(-p["delta"]) / 0.01).powf(1.0 / p["beta"]);
        assert!((budgets[2] / want - 1.0).abs() < 1e-9, "{} vs {want}", budgets[2]);
    }
    let out = p2law(&["budget", "--fit", "preset:gpt-9", "--n0", "1e9", "--rho", "0.2", "--l0", "2", "--rule", "gap:0.01"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--fit preset:gpt-9: no such preset") && err.contains(&id), "{err}");
}
