//! A Llama-style decoder in burn: RMSNorm, rotary embeddings (the `rotate_half` convention of
//! Hugging Face's Llama and Qwen2), SwiGLU MLP, grouped-query attention, tied or untied embeddings.
//!
//! The wire shape ([`DecoderShape`], the `config.json` fields) is kept apart from the module; a
//! pruned model is the same module built from a smaller shape. RMSNorm, SwiGLU's activation,
//! attention (with its rotary embeddings) and the loss are `p2law_kernels::fused` operations:
//! one pass each way on the CPU backend, burn's own tensor ops elsewhere.

use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use p2law_kernels::fused;
use p2law_shared::models::DecoderShape;

/// What a model needs beyond its shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelOptions {
    pub rope_theta: f64,
    /// Llama 3.1's frequency-dependent rope scaling, when the checkpoint uses it.
    pub rope_scaling: Option<Llama3Scaling>,
    pub rms_norm_eps: f64,
    pub max_seq_len: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self { rope_theta: 10_000.0, rope_scaling: None, rms_norm_eps: 1e-5, max_seq_len: 256 }
    }
}

/// `rope_type: "llama3"`: frequencies whose wavelength exceeds the original context over
/// `low_freq_factor` are divided by `factor`, those shorter than it over `high_freq_factor` are
/// kept, and the band between is interpolated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Llama3Scaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

/// The rotary inverse frequencies `theta^(-2i/head_dim)`, `i < head_dim / 2`, scaled as the
/// checkpoint says; rounded to f32, as transformers computes them.
pub fn inv_freq(head_dim: usize, theta: f64, scaling: Option<&Llama3Scaling>) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|i| {
            let f = (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32 as f64;
            let Some(s) = scaling else { return f as f32 };
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let (low_wavelen, high_wavelen) = (s.original_max_position_embeddings / s.low_freq_factor, s.original_max_position_embeddings / s.high_freq_factor);
            let scaled = if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            };
            scaled as f32
        })
        .collect()
}

/// Rotary position tables, `[max_seq_len, head_dim]` each.
#[derive(Module, Debug)]
pub struct Rope {
    pub cos: Tensor<2>,
    pub sin: Tensor<2>,
}

impl Rope {
    pub fn new(head_dim: usize, max_seq_len: usize, theta: f64, scaling: Option<&Llama3Scaling>, device: &Device) -> Self {
        let half = head_dim / 2;
        let freqs = inv_freq(head_dim, theta, scaling);
        let mut cos = Vec::with_capacity(max_seq_len * head_dim);
        let mut sin = Vec::with_capacity(max_seq_len * head_dim);
        for pos in 0..max_seq_len {
            // The first and second halves share frequencies (rotate_half layout); the angle is
            // an f32 product, as in transformers.
            for i in 0..head_dim {
                let angle = f64::from(pos as f32 * freqs[i % half]);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let table = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [max_seq_len, head_dim]), device);
        Self { cos: table(cos), sin: table(sin) }
    }
}

/// Grouped-query self-attention.
#[derive(Module, Debug)]
pub struct Attention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    pub fn forward(&self, x: Tensor<3>, rope: &Rope) -> Tensor<3> {
        self.o.forward(self.mix(x, rope))
    }

    /// The heads' outputs, concatenated (`[batch, seq, heads * head_dim]`): the input of `o`.
    /// Rotary embeddings, the causal mask and the sharing of each key/value head by
    /// `heads / kv_heads` query heads happen inside the fused operation.
    pub fn mix(&self, x: Tensor<3>, rope: &Rope) -> Tensor<3> {
        let (q, k, v) = (self.q.forward(x.clone()), self.k.forward(x.clone()), self.v.forward(x));
        fused::attention(q, k, v, &rope.cos, &rope.sin, self.heads, self.kv_heads)
    }
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down.forward(self.act(x))
    }

    /// `silu(gate(x)) * up(x)`: the input of `down`.
    pub fn act(&self, x: Tensor<3>) -> Tensor<3> {
        fused::swiglu(self.gate.forward(x.clone()), self.up.forward(x))
    }
}

/// One pre-norm decoder layer.
#[derive(Module, Debug)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub attn: Attention,
    pub mlp_norm: RmsNorm,
    pub mlp: Mlp,
}

/// `norm` applied to `x` (the fused RMSNorm, with the module's scale and epsilon).
pub fn rms(norm: &RmsNorm, x: Tensor<3>) -> Tensor<3> {
    fused::rms_norm(x, norm.gamma.val(), norm.epsilon)
}

impl Block {
    pub fn forward(&self, x: Tensor<3>, rope: &Rope) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(rms(&self.attn_norm, x), rope);
        x.clone() + self.mlp.forward(rms(&self.mlp_norm, x))
    }
}

/// The decoder.
#[derive(Module, Debug)]
pub struct Llama {
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub norm: RmsNorm,
    /// `None` when the output projection is the embedding, transposed.
    pub head: Option<Linear>,
    pub rope: Rope,
}

impl Llama {
    pub fn new(shape: &DecoderShape, options: &ModelOptions, device: &Device) -> Self {
        let (h, i) = (shape.hidden_size as usize, shape.intermediate_size as usize);
        let (heads, kv, hd) = (shape.num_attention_heads as usize, shape.num_key_value_heads as usize, shape.head_dim as usize);
        let linear = |d_in, d_out, bias| LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
        let norm = || RmsNormConfig::new(h).with_epsilon(options.rms_norm_eps).init(device);
        let blocks = (0..shape.num_hidden_layers)
            .map(|_| Block {
                attn_norm: norm(),
                attn: Attention {
                    q: linear(h, heads * hd, shape.attention_bias),
                    k: linear(h, kv * hd, shape.attention_bias),
                    v: linear(h, kv * hd, shape.attention_bias),
                    o: linear(heads * hd, h, false),
                    heads,
                    kv_heads: kv,
                    head_dim: hd,
                },
                mlp_norm: norm(),
                mlp: Mlp { gate: linear(h, i, false), up: linear(h, i, false), down: linear(i, h, false) },
            })
            .collect();
        Self {
            // N(0, 0.02), as Llama and Qwen2 initialise it: with tied embeddings, unit-variance
            // rows would start the logits at a loss of about 30 nats.
            embed: EmbeddingConfig::new(shape.vocab_size as usize, h).with_initializer(burn::nn::Initializer::Normal { mean: 0.0, std: 0.02 }).init(device),
            blocks,
            norm: norm(),
            head: (!shape.tie_word_embeddings).then(|| linear(h, shape.vocab_size as usize, false)),
            rope: Rope::new(hd, options.max_seq_len, options.rope_theta, options.rope_scaling.as_ref(), device),
        }
    }

    /// Logits `[batch, seq, vocab]` for token ids `[batch, seq]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let mut x = self.embed.forward(tokens); // [batch, seq, hidden]
        for block in &self.blocks {
            x = block.forward(x, &self.rope);
        }
        let x = rms(&self.norm, x);
        match &self.head {
            Some(head) => head.forward(x),
            // As a linear layer, not a batched matmul against the broadcast weight: burn folds
            // the batch into the rows (one GEMM) and takes the weight's gradient as one GEMM over
            // every token, not a product per sequence summed afterwards.
            None => burn::tensor::module::linear(x, self.embed.weight.val().transpose(), None),
        }
    }

    /// Mean next-token cross-entropy (nats/token) of `tokens: [batch, seq + 1]`.
    pub fn loss(&self, tokens: Tensor<2, Int>) -> Tensor<1> {
        let [batch, len] = tokens.dims();
        let inputs = tokens.clone().slice([0..batch, 0..len - 1]);
        let targets = tokens.slice([0..batch, 1..len]).reshape([batch * (len - 1)]);
        let logits = self.forward(inputs);
        let [_, seq, vocab] = logits.dims();
        fused::cross_entropy(logits.reshape([batch * seq, vocab]), targets)
    }

    /// Trainable parameters, counted from the module (not from the shape).
    pub fn parameters(&self) -> usize {
        self.num_params()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A two-layer byte-level model with GQA; tied embeddings, or untied with QKV biases.
    pub(crate) fn tiny(tied: bool) -> DecoderShape {
        DecoderShape {
            vocab_size: 256,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            tie_word_embeddings: tied,
            attention_bias: !tied,
        }
    }

    #[test]
    fn parameter_count_equals_the_shapes_count() {
        let device = Device::flex();
        for tied in [true, false] {
            let shape = tiny(tied);
            let model = Llama::new(&shape, &ModelOptions::default(), &device);
            // The rope tables are constants, not parameters.
            assert_eq!(model.parameters() as u64, shape.parameters(), "tied = {tied}");
        }
    }

    #[test]
    fn logits_have_the_right_shape_and_are_causal() {
        let device = Device::flex();
        let model = Llama::new(&tiny(true), &ModelOptions::default(), &device);
        let a = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 4, 5, 6], [1, 6]), &device);
        let b = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3, 9, 9, 9], [1, 6]), &device);
        let (la, lb) = (model.forward(a), model.forward(b));
        assert_eq!(la.dims(), [1, 6, 256]);
        // Changing later tokens must not change earlier logits.
        let diff = (la.slice([0..1, 0..3, 0..256]) - lb.slice([0..1, 0..3, 0..256])).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }
}
