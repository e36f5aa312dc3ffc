//! Hugging Face checkpoints: a local `LlamaForCausalLM` or `Qwen2ForCausalLM` directory in, the
//! lab's [`Llama`] module out, and back.
//!
//! - [`HfParent::open`] reads `config.json` ([`config`]), the safetensors headers (one file, or
//!   shards listed in `model.safetensors.index.json`) and `tokenizer.json` (the `tokenizers`
//!   crate). Nothing is fetched from a hub.
//! - [`HfParent::load`] streams the weights into the module, converting bf16/f16 to f32 and
//!   transposing linear weights (`[out, in]` on disk, `[in, out]` in burn) tensor by tensor.
//! - [`export`] writes a (pruned, healed) model back as a directory transformers loads: the
//!   source's config with the new shape and p2law's record, safetensors in the source dtype
//!   (sharded above a size), and the tokenizer files copied.

pub mod config;
pub mod st;
#[cfg(test)]
mod tests;

use crate::lab::model::{Attention, Block, Llama, Mlp, Rope};
use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::prelude::*;
pub use config::{Arch, DType, HfConfig};
use p2law_shared::models::DecoderShape;
use serde_json::Value;
use st::{Entry, StFile};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be read or written. Every variant names the file, and the field
/// or tensor where there is one.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: field `{field}` {message}")]
    Config { path: String, field: String, message: String },
    #[error("{path}: unsupported `{field}` = {value} (p2law loads LlamaForCausalLM and Qwen2ForCausalLM with full attention, SwiGLU and default or llama3 rope)")]
    Unsupported { path: String, field: String, value: String },
    #[error("{path}: tensor `{tensor}`: {message}")]
    Weights { path: String, tensor: String, message: String },
    #[error("{path}: {message}")]
    Checkpoint { path: String, message: String },
    #[error("{path}: {message}")]
    Tokenizer { path: String, message: String },
    /// A cancel was asked while loading or exporting.
    #[error("cancelled")]
    Cancelled,
}

/// Tokenizer and generation files copied into an export as they are.
const SIDE_FILES: [&str; 9] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "generation_config.json",
    "chat_template.jinja",
];

/// A checkpoint directory, opened: config, tokenizer, and the weights' headers.
#[derive(Debug)]
pub struct HfParent {
    pub dir: PathBuf,
    /// The directory's name.
    pub name: String,
    pub config: HfConfig,
    /// The weights' storage type (what an export writes).
    pub dtype: DType,
    pub tokenizer: tokenizers::Tokenizer,
    files: Vec<StFile>,
    /// Tensor name → index into `files`.
    index: BTreeMap<String, usize>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HfError + '_ {
    move |source| HfError::Io { path: path.display().to_string(), source }
}

/// The safetensors files of a checkpoint and which holds each tensor.
/// Reads a `tokenizer.json`. The tokenizers library panics on some malformed files instead of
/// answering an error (0.22: a `decoder` that is not a decoder object, `.expect("Helper")` in its
/// deserializer); the panic is caught here and becomes the error it should have been.
pub fn load_tokenizer(path: &str, bytes: &[u8]) -> Result<tokenizers::Tokenizer, HfError> {
    let fail = |message: String| HfError::Tokenizer { path: path.to_string(), message };
    match std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(bytes)) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(panic) => {
            let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
            Err(fail(format!("is malformed (the tokenizers library failed reading it: {why})")))
        }
    }
}

/// The shard file names of a `model.safetensors.index.json`, each a plain name inside the
/// checkpoint's directory.
pub fn parse_index(path: &str, text: &str) -> Result<Vec<String>, HfError> {
    let v: Value = serde_json::from_str(text).map_err(|e| HfError::Config { path: path.to_string(), field: "(file)".into(), message: format!("not JSON: {e}") })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HfError::Config { path: path.to_string(), field: "weight_map".into(), message: "is missing or not an object".into() })?;
    let files: BTreeSet<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
    if let Some(bad) = files.iter().find(|f| f.is_empty() || f.contains('/') || f.contains('\\') || f.contains("..")) {
        return Err(HfError::Config { path: path.to_string(), field: "weight_map".into(), message: format!("names a file outside the directory: {bad:?}") });
    }
    if files.is_empty() {
        return Err(HfError::Config { path: path.to_string(), field: "weight_map".into(), message: "names no shard".into() });
    }
    Ok(files.into_iter().collect())
}

fn open_weights(dir: &Path) -> Result<(Vec<StFile>, BTreeMap<String, usize>), HfError> {
    let index_path = dir.join("model.safetensors.index.json");
    let names: Vec<String> = if index_path.exists() {
        let text = std::fs::read_to_string(&index_path).map_err(io(&index_path))?;
        parse_index(&index_path.display().to_string(), &text)?
    } else if dir.join("model.safetensors").exists() {
        vec!["model.safetensors".into()]
    } else if dir.join("pytorch_model.bin").exists() {
        return Err(HfError::Checkpoint {
            path: dir.display().to_string(),
            message: "holds pytorch_model.bin only; p2law reads safetensors (convert with transformers' save_pretrained(safe_serialization=True))".into(),
        });
    } else {
        return Err(HfError::Checkpoint { path: dir.display().to_string(), message: "has no model.safetensors or model.safetensors.index.json".into() });
    };
    let mut files = Vec::new();
    let mut index = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let f = StFile::open(&dir.join(name))?;
        for t in f.tensors.keys() {
            if index.insert(t.clone(), i).is_some() {
                return Err(HfError::Weights { path: f.path.display().to_string(), tensor: t.clone(), message: "appears in more than one shard".into() });
            }
        }
        files.push(f);
    }
    Ok((files, index))
}

/// HF's tensor names, by the lab's module layout.
fn layer_name(i: usize, part: &str) -> String {
    format!("model.layers.{i}.{part}")
}

impl HfParent {
    /// Opens a checkpoint directory: config, tokenizer, and every shard's header (no weights yet).
    pub fn open(dir: &Path) -> Result<Self, HfError> {
        if !dir.is_dir() {
            return Err(HfError::Checkpoint { path: dir.display().to_string(), message: "is not a directory".into() });
        }
        let config = HfConfig::read(dir)?;
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.exists() {
            return Err(HfError::Tokenizer { path: tok_path.display().to_string(), message: "is missing (p2law reads the fast tokenizer's tokenizer.json)".into() });
        }
        let bytes = std::fs::read(&tok_path).map_err(io(&tok_path))?;
        let tokenizer = load_tokenizer(&tok_path.display().to_string(), &bytes)?;
        let (files, index) = open_weights(dir)?;
        let embed = index
            .get("model.embed_tokens.weight")
            .map(|&i| files[i].tensors["model.embed_tokens.weight"].dtype)
            .ok_or_else(|| HfError::Weights { path: dir.display().to_string(), tensor: "model.embed_tokens.weight".into(), message: "is missing".into() })?;
        let name = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).file_name().map_or_else(|| "model".into(), |n| n.to_string_lossy().into_owned());
        Ok(Self { dir: dir.to_path_buf(), name, dtype: config.dtype.unwrap_or(embed), config, tokenizer, files, index })
    }

    pub fn shape(&self) -> DecoderShape {
        self.config.shape
    }

    /// Bytes of the weights as stored.
    pub fn stored_bytes(&self) -> u64 {
        self.files.iter().flat_map(|f| f.tensors.values()).map(|t| t.end - t.start).sum()
    }

    fn tensor<const D: usize>(&self, name: &str, shape: [usize; D], transpose: bool, device: &Device, used: &mut BTreeSet<String>) -> Result<Tensor<D>, HfError> {
        let &i = self.index.get(name).ok_or_else(|| HfError::Weights { path: self.dir.display().to_string(), tensor: name.into(), message: "is missing".into() })?;
        let f = &self.files[i];
        let info = &f.tensors[name];
        if info.shape != shape {
            return Err(HfError::Weights {
                path: f.path.display().to_string(),
                tensor: name.into(),
                message: format!("has shape {:?}; config.json implies {shape:?}", info.shape),
            });
        }
        let values = f.read_f32(name, transpose)?;
        used.insert(name.to_string());
        let mut dims = shape;
        if transpose && D == 2 {
            dims.swap(0, 1);
        }
        Ok(Tensor::from_data(TensorData::new(values, dims), device))
    }

    /// Streams the weights into a module for sequences up to `max_seq_len` tokens.
    pub fn load(&self, max_seq_len: usize, device: &Device) -> Result<Llama, HfError> {
        self.load_until(max_seq_len, device, &std::sync::atomic::AtomicBool::new(false))
    }

    /// [`HfParent::load`], stopping with [`HfError::Cancelled`] before the next layer once
    /// `cancel` is set (a large checkpoint's load is minutes of reading).
    pub fn load_until(&self, max_seq_len: usize, device: &Device, cancel: &std::sync::atomic::AtomicBool) -> Result<Llama, HfError> {
        let s = self.config.shape;
        let (h, i, v) = (s.hidden_size as usize, s.intermediate_size as usize, s.vocab_size as usize);
        let (q, kv) = ((s.num_attention_heads * s.head_dim) as usize, (s.num_key_value_heads * s.head_dim) as usize);
        let eps = self.config.rms_norm_eps;
        let mut used = BTreeSet::new();
        // HF stores linear weights [out, in]; burn's Linear holds [in, out].
        let linear = |name: String, d_out: usize, d_in: usize, bias: bool, used: &mut BTreeSet<String>| -> Result<Linear, HfError> {
            let weight = self.tensor(&format!("{name}.weight"), [d_out, d_in], true, device, used)?;
            let bias = if bias { Some(Param::from_tensor(self.tensor(&format!("{name}.bias"), [d_out], false, device, used)?)) } else { None };
            Ok(Linear { weight: Param::from_tensor(weight), bias })
        };
        let norm = |name: String, used: &mut BTreeSet<String>| -> Result<RmsNorm, HfError> {
            Ok(RmsNorm { gamma: Param::from_tensor(self.tensor(&name, [h], false, device, used)?), epsilon: eps })
        };
        let embed = Embedding { weight: Param::from_tensor(self.tensor("model.embed_tokens.weight", [v, h], false, device, &mut used)?) };
        let mut blocks = Vec::with_capacity(s.num_hidden_layers as usize);
        for l in 0..s.num_hidden_layers as usize {
            crate::slow_point("load", cancel);
            if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(HfError::Cancelled);
            }
            let a = |p: &str| layer_name(l, &format!("self_attn.{p}_proj"));
            let m = |p: &str| layer_name(l, &format!("mlp.{p}_proj"));
            let bias = s.attention_bias;
            blocks.push(Block {
                attn_norm: norm(layer_name(l, "input_layernorm.weight"), &mut used)?,
                attn: Attention {
                    q: linear(a("q"), q, h, bias, &mut used)?,
                    k: linear(a("k"), kv, h, bias, &mut used)?,
                    v: linear(a("v"), kv, h, bias, &mut used)?,
                    o: linear(a("o"), h, q, false, &mut used)?,
                    heads: s.num_attention_heads as usize,
                    kv_heads: s.num_key_value_heads as usize,
                    head_dim: s.head_dim as usize,
                },
                mlp_norm: norm(layer_name(l, "post_attention_layernorm.weight"), &mut used)?,
                mlp: Mlp { gate: linear(m("gate"), i, h, false, &mut used)?, up: linear(m("up"), i, h, false, &mut used)?, down: linear(m("down"), h, i, false, &mut used)? },
            });
        }
        let final_norm = norm("model.norm.weight".into(), &mut used)?;
        let head = if s.tie_word_embeddings { None } else { Some(linear("lm_head".into(), v, h, false, &mut used)?) };
        // Anything left over means the checkpoint is not the architecture its config claims.
        if let Some(extra) = self.index.keys().find(|k| {
            !used.contains(*k) && !k.ends_with("rotary_emb.inv_freq") && !(s.tie_word_embeddings && k.as_str() == "lm_head.weight")
        }) {
            return Err(HfError::Weights {
                path: self.files[self.index[extra]].path.display().to_string(),
                tensor: extra.clone(),
                message: format!("is not part of a {} with this config", self.config.arch.class()),
            });
        }
        let options = self.config.options(max_seq_len);
        Ok(Llama { embed, blocks, norm: final_norm, head, rope: Rope::new(s.head_dim as usize, max_seq_len, options.rope_theta, options.rope_scaling.as_ref(), device) })
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    pub dir: PathBuf,
    pub files: Vec<String>,
    pub bytes: u64,
}

/// A tensor's values on the host, in one copy.
fn host<const D: usize>(t: &Tensor<D>) -> TensorData {
    t.clone().into_data().convert::<f32>()
}

/// The tensors of `model` under HF's names, in HF's layouts.
fn entries<'a>(model: &'a Llama) -> Vec<Entry<'a>> {
    let mut out: Vec<Entry<'a>> = Vec::new();
    let linear = |out: &mut Vec<Entry<'a>>, name: String, l: &'a Linear| {
        let [d_in, d_out] = l.weight.val().dims();
        out.push(Entry { name: format!("{name}.weight"), shape: vec![d_out, d_in], transpose: true, values: Box::new(move || host(&l.weight.val())) });
        if let Some(b) = &l.bias {
            out.push(Entry { name: format!("{name}.bias"), shape: vec![d_out], transpose: false, values: Box::new(move || host(&b.val())) });
        }
    };
    let norm = |out: &mut Vec<Entry<'a>>, name: String, n: &'a RmsNorm| {
        out.push(Entry { name, shape: n.gamma.val().dims().to_vec(), transpose: false, values: Box::new(move || host(&n.gamma.val())) });
    };
    out.push(Entry { name: "model.embed_tokens.weight".into(), shape: model.embed.weight.val().dims().to_vec(), transpose: false, values: Box::new(move || host(&model.embed.weight.val())) });
    for (l, b) in model.blocks.iter().enumerate() {
        norm(&mut out, layer_name(l, "input_layernorm.weight"), &b.attn_norm);
        for (p, lin) in [("q", &b.attn.q), ("k", &b.attn.k), ("v", &b.attn.v), ("o", &b.attn.o)] {
            linear(&mut out, layer_name(l, &format!("self_attn.{p}_proj")), lin);
        }
        norm(&mut out, layer_name(l, "post_attention_layernorm.weight"), &b.mlp_norm);
        for (p, lin) in [("gate", &b.mlp.gate), ("up", &b.mlp.up), ("down", &b.mlp.down)] {
            linear(&mut out, layer_name(l, &format!("mlp.{p}_proj")), lin);
        }
    }
    norm(&mut out, "model.norm.weight".into(), &model.norm);
    if let Some(head) = &model.head {
        linear(&mut out, "lm_head".into(), head);
    }
    out
}

/// Writes `model` (of `shape`, derived from `parent`) as a Hugging Face directory at `out`:
/// config, safetensors in the parent's dtype (shards of at most `max_shard_bytes` with an index
/// when larger), and the parent's tokenizer files. `record` goes into the config under `p2law`.
/// The directory appears complete or not at all; an existing non-empty `out` is refused.
pub fn export(model: &Llama, shape: &DecoderShape, parent: &HfParent, record: Value, out: &Path, max_shard_bytes: u64) -> Result<Exported, HfError> {
    export_until(model, shape, parent, record, out, max_shard_bytes, &std::sync::atomic::AtomicBool::new(false))
}

/// [`export`], stopping with [`HfError::Cancelled`] before the next tensor once `cancel` is set;
/// the partial directory is removed and `out` is left as it was.
pub fn export_until(model: &Llama, shape: &DecoderShape, parent: &HfParent, record: Value, out: &Path, max_shard_bytes: u64, cancel: &std::sync::atomic::AtomicBool) -> Result<Exported, HfError> {
    if out.exists() && std::fs::read_dir(out).map_err(io(out))?.next().is_some() {
        return Err(HfError::Checkpoint { path: out.display().to_string(), message: "exists and is not empty; choose a new directory".into() });
    }
    let parent_dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent_dir).map_err(io(parent_dir))?;
    let name = out.file_name().map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    // Partial directories of this export left by a killed process (another pid) go first.
    let prefix = format!(".{name}.partial-");
    for e in std::fs::read_dir(parent_dir).map_err(io(parent_dir))?.flatten() {
        if e.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let tmp = parent_dir.join(format!("{prefix}{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let result = write_dir(model, shape, parent, record, &tmp, max_shard_bytes, cancel);
    let mut files = match result {
        Ok(files) => files,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    crate::fault_point("export");
    if out.exists() {
        std::fs::remove_dir(out).map_err(io(out))?;
    }
    std::fs::rename(&tmp, out).map_err(io(out))?;
    files.sort();
    let bytes = files.iter().filter_map(|f| std::fs::metadata(out.join(f)).ok()).map(|m| m.len()).sum();
    Ok(Exported { dir: out.to_path_buf(), files, bytes })
}

fn write_dir(model: &Llama, shape: &DecoderShape, parent: &HfParent, record: Value, dir: &Path, max_shard_bytes: u64, cancel: &std::sync::atomic::AtomicBool) -> Result<Vec<String>, HfError> {
    let dtype = parent.dtype;
    if shape.tie_word_embeddings != model.head.is_none() {
        return Err(HfError::Checkpoint {
            path: dir.display().to_string(),
            message: format!("the model {} an output head but the shape says tie_word_embeddings = {}", if model.head.is_some() { "has" } else { "lacks" }, shape.tie_word_embeddings),
        });
    }
    let all = entries(model);
    // Shards: consecutive tensors up to the limit (a larger tensor gets a shard of its own).
    let mut shards: Vec<Vec<Entry<'_>>> = vec![Vec::new()];
    let mut size = 0u64;
    for e in all {
        let bytes = e.shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        if size > 0 && size + bytes > max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        shards.last_mut().expect("one shard at least").push(e);
    }
    let mut files = Vec::new();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    let n = shards.len();
    for (k, shard) in shards.iter().enumerate() {
        let name = if n == 1 { "model.safetensors".to_string() } else { format!("model-{:05}-of-{n:05}.safetensors", k + 1) };
        st::write_until(&dir.join(&name), shard, dtype, cancel)?;
        for e in shard {
            total += e.shape.iter().product::<usize>() as u64 * dtype.size() as u64;
            weight_map.insert(e.name.clone(), Value::String(name.clone()));
        }
        files.push(name);
    }
    if n > 1 {
        let index = serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&index).map_err(|e| io(&path)(std::io::Error::other(e)))?).map_err(io(&path))?;
        files.push("model.safetensors.index.json".into());
    }
    let config = Value::Object(parent.config.pruned(shape, record));
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&config).map_err(|e| io(&path)(std::io::Error::other(e)))?).map_err(io(&path))?;
    files.push("config.json".into());
    for f in SIDE_FILES {
        let src = parent.dir.join(f);
        if src.exists() {
            std::fs::copy(&src, dir.join(f)).map_err(io(&src))?;
            files.push(f.into());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod fuzz {
    //! The checkpoint files p2law reads from outside: safetensors headers, the shard index,
    //! config.json and tokenizer.json, under the fuzzer.
    use super::*;
    use p2law_shared::fuzz::{Campaign, Outcome, TEXT_DICTIONARY, assert_clean, inputs_from_env};

    fn fixture(path: &str) -> Vec<u8> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf").join(path);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A safetensors file's length prefix and JSON header.
    fn header_of(path: &str) -> (Vec<u8>, u64) {
        let bytes = fixture(path);
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        (bytes[..8 + n].to_vec(), bytes.len() as u64)
    }

    fn fix_length(b: &mut Vec<u8>) {
        if b.len() >= 8 {
            let n = (b.len() - 8) as u64;
            b[..8].copy_from_slice(&n.to_le_bytes());
        }
    }

    pub(crate) fn run(inputs: u64) -> Vec<Outcome> {
        let dirs = ["llama-tied-llama3", "llama-untied-bf16-sharded", "qwen2-tied", "qwen2-untied-f16"];
        let (header, file_len) = header_of("qwen2-tied/model.safetensors");
        let (shard, _) = header_of("llama-untied-bf16-sharded/model-00001-of-00003.safetensors");
        let headers = Campaign { name: "safetensors header", seeds: vec![header, shard], dictionary: TEXT_DICTIONARY, fixup: Some(&fix_length) };
        let index = Campaign { name: "safetensors index", seeds: vec![fixture("llama-untied-bf16-sharded/model.safetensors.index.json")], dictionary: TEXT_DICTIONARY, fixup: None };
        let configs = Campaign { name: "config.json", seeds: dirs.iter().map(|d| fixture(&format!("{d}/config.json"))).collect(), dictionary: TEXT_DICTIONARY, fixup: None };
        let tokenizer = Campaign { name: "tokenizer.json", seeds: vec![fixture("qwen2-tied/tokenizer.json")], dictionary: TEXT_DICTIONARY, fixup: None };
        vec![
            headers.run(inputs, 21, |b| match st::parse_header("fuzz.safetensors", b, file_len) {
                Ok(tensors) => {
                    for (name, t) in &tensors {
                        if !(t.start <= t.end && t.end <= file_len) {
                            return Err(format!("tensor {name}: range {}..{} outside {file_len} bytes", t.start, t.end));
                        }
                    }
                    Ok(true)
                }
                Err(_) => Ok(false),
            }),
            index.run(inputs, 22, |b| match parse_index("fuzz.index.json", &String::from_utf8_lossy(b)) {
                Ok(files) if files.iter().any(|f| f.contains('/') || f.contains("..") || f.is_empty()) => Err(format!("accepted shard names {files:?}")),
                Ok(_) => Ok(true),
                Err(_) => Ok(false),
            }),
            configs.run(inputs, 23, |b| {
                let Ok(serde_json::Value::Object(raw)) = serde_json::from_slice::<serde_json::Value>(b) else { return Ok(false) };
                match config::HfConfig::parse(Path::new("fuzz/config.json"), raw) {
                    Ok(c) => {
                        // An accepted shape has a parameter count (no overflow) and sane sizes.
                        let s = c.shape;
                        if s.hidden_size == 0 || s.num_hidden_layers == 0 || s.vocab_size == 0 {
                            return Err(format!("accepted a zero size: {s:?}"));
                        }
                        let _ = s.parameters();
                        Ok(true)
                    }
                    Err(_) => Ok(false),
                }
            }),
            tokenizer.run(inputs / 10, 24, |b| Ok(load_tokenizer("fuzz/tokenizer.json", b).is_ok())),
        ]
    }

    /// The smallest reproduction of the tokenizers library's panic, answered as an error.
    #[test]
    fn a_tokenizer_with_a_malformed_decoder_is_an_error_not_a_panic() {
        // Invalid JSON where the decoder's value starts: the library's inner deserializer errs
        // and its `.expect` turns that into a panic.
        let text = String::from_utf8(fixture("qwen2-tied/tokenizer.json")).expect("utf-8");
        assert!(text.contains("\"decoder\": {"));
        let bytes = text.replacen("\"decoder\": {", "\"decoder\": ~{", 1).into_bytes();
        assert!(std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(&bytes)).is_err(), "the library still panics on this input");
        let e = load_tokenizer("m/tokenizer.json", &bytes).unwrap_err().to_string();
        assert!(e.contains("m/tokenizer.json") && e.contains("malformed"), "{e}");
    }

    #[test]
    fn checkpoint_files_survive_the_fuzzer() {
        assert_clean(&run(inputs_from_env(2000)));
    }
}
