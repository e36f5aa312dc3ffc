//! `config.json` of a Hugging Face `LlamaForCausalLM` or `Qwen2ForCausalLM` checkpoint: the fields
//! the model needs, checked, and the whole object kept so an export changes only what pruning
//! changed.
//!
//! Both rope layouts are read: transformers 4's `rope_theta` + `rope_scaling` (the published
//! Llama 3.x and Qwen2.5 configs) and transformers 5's `rope_parameters`.

use super::HfError;
use crate::lab::model::{Llama3Scaling, ModelOptions};
use p2law_shared::models::DecoderShape;
use serde_json::{Map, Value};
use std::path::Path;

/// The two architectures p2law loads; they differ in Qwen2's q/k/v biases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    pub fn class(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
        }
    }
}

/// Weight storage types p2law reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
    /// The safetensors name.
    pub fn st_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        }
    }
    pub fn from_st(name: &str) -> Option<Self> {
        match name {
            "F32" => Some(DType::F32),
            "F16" => Some(DType::F16),
            "BF16" => Some(DType::BF16),
            _ => None,
        }
    }
    fn from_torch(name: &str) -> Option<Self> {
        match name {
            "float32" => Some(DType::F32),
            "float16" => Some(DType::F16),
            "bfloat16" => Some(DType::BF16),
            _ => None,
        }
    }
}

/// A parsed, supported configuration.
#[derive(Debug, Clone)]
pub struct HfConfig {
    pub arch: Arch,
    pub shape: DecoderShape,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3Scaling>,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: u64,
    /// The dtype the config names (`torch_dtype` or `dtype`), if any.
    pub dtype: Option<DType>,
    /// The whole object, as read.
    pub raw: Map<String, Value>,
}

/// The largest size (width, layer count, vocabulary, positions) a config may state: far above
/// any published model, small enough that parameter counts stay exact in `u64`.
pub const MAX_SIZE: u64 = 1 << 24;

struct Reader<'a> {
    path: &'a Path,
    raw: &'a Map<String, Value>,
}

impl Reader<'_> {
    fn err(&self, field: &str, message: impl Into<String>) -> HfError {
        HfError::Config { path: self.path.display().to_string(), field: field.into(), message: message.into() }
    }
    fn unsupported(&self, field: &str, value: &Value) -> HfError {
        HfError::Unsupported { path: self.path.display().to_string(), field: field.into(), value: value.to_string() }
    }
    /// A positive size of at most [`MAX_SIZE`] (so products of sizes never overflow), or the
    /// default, which must be one too (`head_dim` defaults to `hidden_size / heads`).
    fn uint(&self, field: &str, default: Option<u64>) -> Result<u64, HfError> {
        let ok = |n: &u64| (1..=MAX_SIZE).contains(n);
        match self.raw.get(field) {
            None | Some(Value::Null) => match default {
                Some(d) if ok(&d) => Ok(d),
                Some(d) => Err(self.err(field, format!("is missing and its default {d} is not a size in 1..={MAX_SIZE}"))),
                None => Err(self.err(field, "is missing")),
            },
            Some(v) => v.as_u64().filter(ok).ok_or_else(|| self.err(field, format!("must be an integer in 1..={MAX_SIZE}, not {v}"))),
        }
    }
    fn float_in(&self, obj: &Map<String, Value>, prefix: &str, field: &str, default: Option<f64>) -> Result<f64, HfError> {
        let name = format!("{prefix}{field}");
        match obj.get(field) {
            None | Some(Value::Null) => default.ok_or_else(|| self.err(&name, "is missing")),
            Some(v) => v.as_f64().filter(|f| f.is_finite() && *f > 0.0).ok_or_else(|| self.err(&name, format!("must be a positive number, not {v}"))),
        }
    }
    fn bool(&self, field: &str, default: bool) -> Result<bool, HfError> {
        match self.raw.get(field) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.err(field, format!("must be true or false, not {v}"))),
        }
    }
}

impl HfConfig {
    /// Reads and checks `<dir>/config.json`.
    pub fn read(dir: &Path) -> Result<Self, HfError> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|source| HfError::Io { path: path.display().to_string(), source })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| HfError::Config { path: path.display().to_string(), field: "(file)".into(), message: format!("not JSON: {e}") })?;
        let Value::Object(raw) = value else {
            return Err(HfError::Config { path: path.display().to_string(), field: "(file)".into(), message: "is not a JSON object".into() });
        };
        Self::parse(&path, raw)
    }

    pub fn parse(path: &Path, raw: Map<String, Value>) -> Result<Self, HfError> {
        let r = Reader { path, raw: &raw };
        let arch = match raw.get("architectures").and_then(|a| a.as_array()).and_then(|a| a.first()) {
            Some(Value::String(s)) if s == "LlamaForCausalLM" => Arch::Llama,
            Some(Value::String(s)) if s == "Qwen2ForCausalLM" => Arch::Qwen2,
            Some(other) => return Err(r.unsupported("architectures", other)),
            None => match raw.get("model_type").and_then(|m| m.as_str()) {
                Some("llama") => Arch::Llama,
                Some("qwen2") => Arch::Qwen2,
                _ => return Err(r.err("architectures", "is missing (and `model_type` is neither \"llama\" nor \"qwen2\")")),
            },
        };
        if let Some(act) = raw.get("hidden_act")
            && act.as_str() != Some("silu")
        {
            return Err(r.unsupported("hidden_act", act));
        }
        for field in ["quantization_config", "rope_local_base_freq"] {
            if let Some(v) = raw.get(field).filter(|v| !v.is_null()) {
                return Err(r.unsupported(field, v));
            }
        }
        if r.bool("mlp_bias", false)? {
            return Err(r.unsupported("mlp_bias", &Value::Bool(true)));
        }
        // Llama's `attention_bias` puts a bias on o_proj too, which no published Llama has.
        if arch == Arch::Llama && r.bool("attention_bias", false)? {
            return Err(r.unsupported("attention_bias", &Value::Bool(true)));
        }
        if r.bool("use_sliding_window", false)? {
            return Err(r.unsupported("use_sliding_window", &Value::Bool(true)));
        }
        let hidden = r.uint("hidden_size", None)?;
        let heads = r.uint("num_attention_heads", None)?;
        let kv = r.uint("num_key_value_heads", Some(heads))?;
        let layers = r.uint("num_hidden_layers", None)?;
        if let Some(types) = raw.get("layer_types").filter(|v| !v.is_null()) {
            let list = types.as_array().ok_or_else(|| r.err("layer_types", "must be a list"))?;
            if list.len() as u64 != layers {
                return Err(r.err("layer_types", format!("has {} entries for {layers} layers", list.len())));
            }
            if let Some(bad) = list.iter().find(|t| t.as_str() != Some("full_attention")) {
                return Err(r.unsupported("layer_types[]", bad));
            }
        }
        let head_dim = r.uint("head_dim", Some(hidden / heads))?;
        if heads % kv != 0 {
            return Err(r.err("num_key_value_heads", format!("{kv} does not divide num_attention_heads = {heads}")));
        }
        if head_dim % 2 != 0 {
            return Err(r.err("head_dim", format!("{head_dim} is odd; rotary embeddings need an even head size")));
        }
        let shape = DecoderShape {
            vocab_size: r.uint("vocab_size", None)?,
            hidden_size: hidden,
            intermediate_size: r.uint("intermediate_size", None)?,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: kv,
            head_dim,
            // transformers' LlamaConfig and Qwen2Config both default to untied.
            tie_word_embeddings: r.bool("tie_word_embeddings", false)?,
            attention_bias: arch == Arch::Qwen2,
        };
        let (rope_theta, rope_scaling) = Self::rope(&r)?;
        let dtype = match raw.get("torch_dtype").or_else(|| raw.get("dtype")).filter(|v| !v.is_null()) {
            None => None,
            Some(v) => Some(v.as_str().and_then(DType::from_torch).ok_or_else(|| r.unsupported("torch_dtype", v))?),
        };
        let rms_norm_eps = r.float_in(&raw, "", "rms_norm_eps", Some(1e-6))?;
        let max_position_embeddings = r.uint("max_position_embeddings", Some(2048))?;
        Ok(Self { arch, shape, rope_theta, rope_scaling, rms_norm_eps, max_position_embeddings, dtype, raw: raw.clone() })
    }

    fn rope(r: &Reader<'_>) -> Result<(f64, Option<Llama3Scaling>), HfError> {
        // transformers 5: everything in `rope_parameters`; 4: `rope_theta` and `rope_scaling`.
        let (params, prefix, theta) = match r.raw.get("rope_parameters").filter(|v| !v.is_null()) {
            Some(Value::Object(p)) => (Some(p), "rope_parameters.", r.float_in(p, "rope_parameters.", "rope_theta", Some(10_000.0))?),
            Some(other) => return Err(r.unsupported("rope_parameters", other)),
            None => match r.raw.get("rope_scaling").filter(|v| !v.is_null()) {
                Some(Value::Object(p)) => (Some(p), "rope_scaling.", r.float_in(r.raw, "", "rope_theta", Some(10_000.0))?),
                Some(other) => return Err(r.unsupported("rope_scaling", other)),
                None => (None, "", r.float_in(r.raw, "", "rope_theta", Some(10_000.0))?),
            },
        };
        let Some(p) = params else { return Ok((theta, None)) };
        let kind = p.get("rope_type").or_else(|| p.get("type"));
        match kind.and_then(|k| k.as_str()) {
            None | Some("default") => Ok((theta, None)),
            Some("llama3") => {
                let scaling = Llama3Scaling {
                    factor: r.float_in(p, prefix, "factor", None)?,
                    low_freq_factor: r.float_in(p, prefix, "low_freq_factor", None)?,
                    high_freq_factor: r.float_in(p, prefix, "high_freq_factor", None)?,
                    original_max_position_embeddings: r.float_in(p, prefix, "original_max_position_embeddings", None)?,
                };
                if scaling.high_freq_factor <= scaling.low_freq_factor {
                    return Err(r.err(&format!("{prefix}high_freq_factor"), "must exceed low_freq_factor"));
                }
                Ok((theta, Some(scaling)))
            }
            Some(_) => Err(r.unsupported(&format!("{prefix}rope_type"), kind.unwrap_or(&Value::Null))),
        }
    }

    /// Model options for sequences up to `max_seq_len` tokens.
    pub fn options(&self, max_seq_len: usize) -> ModelOptions {
        ModelOptions { rope_theta: self.rope_theta, rope_scaling: self.rope_scaling, rms_norm_eps: self.rms_norm_eps, max_seq_len }
    }

    /// The config of a pruned model: the source's object with the shape's fields replaced,
    /// `layer_types` cut to the new depth (every entry is `full_attention`, checked on reading),
    /// and p2law's record under `p2law`.
    pub fn pruned(&self, shape: &DecoderShape, record: Value) -> Map<String, Value> {
        let mut raw = self.raw.clone();
        raw.insert("num_hidden_layers".into(), shape.num_hidden_layers.into());
        raw.insert("intermediate_size".into(), shape.intermediate_size.into());
        raw.insert("num_attention_heads".into(), shape.num_attention_heads.into());
        raw.insert("num_key_value_heads".into(), shape.num_key_value_heads.into());
        // Explicit, so transformers does not derive it from hidden_size / num_attention_heads.
        raw.insert("head_dim".into(), shape.head_dim.into());
        if let Some(Value::Array(types)) = raw.get("layer_types") {
            let types: Vec<Value> = types.iter().take(shape.num_hidden_layers as usize).cloned().collect();
            raw.insert("layer_types".into(), Value::Array(types));
        }
        raw.insert("p2law".into(), record);
        raw
    }
}
