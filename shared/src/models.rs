//! Published model shapes and exact parameter counts, so `N0` is computed, not typed.
//!
//! Shapes are those of each model's Hugging Face `config.json`; the counts they give equal the
//! published safetensors totals (checked in the tests below).

use serde::{Deserialize, Serialize};

/// The shape of a Llama-style decoder (Llama, Qwen2): what fixes its parameter count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DecoderShape {
    pub vocab_size: u64,
    pub hidden_size: u64,
    pub intermediate_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: u64,
    pub head_dim: u64,
    pub tie_word_embeddings: bool,
    /// Biases on the q, k, v projections (Qwen2).
    pub attention_bias: bool,
}

impl DecoderShape {
    /// Parameters of one decoder layer: attention, SwiGLU MLP, two RMSNorms.
    pub fn layer_parameters(&self) -> u64 {
        let (h, hd) = (self.hidden_size, self.head_dim);
        let (q, kv) = (self.num_attention_heads * hd, self.num_key_value_heads * hd);
        let attention = h * q + 2 * h * kv + q * h + if self.attention_bias { q + 2 * kv } else { 0 };
        attention + 3 * h * self.intermediate_size + 2 * h
    }

    /// All parameters, embeddings included (the P² law's `N0`).
    pub fn parameters(&self) -> u64 {
        let embedding = self.vocab_size * self.hidden_size;
        let head = if self.tie_word_embeddings { 0 } else { embedding };
        embedding + self.num_hidden_layers * self.layer_parameters() + self.hidden_size + head
    }
}

/// A named published configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownModel {
    pub name: &'static str,
    pub shape: DecoderShape,
}

pub(crate) const fn shape(v: u64, h: u64, i: u64, l: u64, heads: u64, kv: u64, hd: u64, tied: bool, bias: bool) -> DecoderShape {
    DecoderShape {
        vocab_size: v,
        hidden_size: h,
        intermediate_size: i,
        num_hidden_layers: l,
        num_attention_heads: heads,
        num_key_value_heads: kv,
        head_dim: hd,
        tie_word_embeddings: tied,
        attention_bias: bias,
    }
}

/// Llama 3.x and Qwen2.5 base models, from their `config.json`.
pub const KNOWN_MODELS: [KnownModel; 7] = [
    KnownModel { name: "Llama-3.2-1B", shape: shape(128_256, 2048, 8192, 16, 32, 8, 64, true, false) },
    KnownModel { name: "Llama-3.2-3B", shape: shape(128_256, 3072, 8192, 28, 24, 8, 128, true, false) },
    KnownModel { name: "Llama-3.1-8B", shape: shape(128_256, 4096, 14_336, 32, 32, 8, 128, false, false) },
    KnownModel { name: "Qwen2.5-0.5B", shape: shape(151_936, 896, 4864, 24, 14, 2, 64, true, true) },
    KnownModel { name: "Qwen2.5-1.5B", shape: shape(151_936, 1536, 8960, 28, 12, 2, 128, true, true) },
    KnownModel { name: "Qwen2.5-3B", shape: shape(151_936, 2048, 11_008, 36, 16, 2, 128, true, true) },
    KnownModel { name: "Qwen2.5-7B", shape: shape(152_064, 3584, 18_944, 28, 28, 4, 128, false, true) },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_equal_the_published_safetensors_totals() {
        let published = [
            ("Llama-3.2-1B", 1_235_814_400u64),
            ("Llama-3.2-3B", 3_212_749_824),
            ("Llama-3.1-8B", 8_030_261_248),
            ("Qwen2.5-0.5B", 494_032_768),
            ("Qwen2.5-1.5B", 1_543_714_304),
            ("Qwen2.5-3B", 3_085_938_688),
            ("Qwen2.5-7B", 7_615_616_512),
        ];
        for (m, (name, n)) in KNOWN_MODELS.iter().zip(published) {
            assert_eq!(m.name, name);
            assert_eq!(m.shape.parameters(), n, "{name}");
        }
    }
}
