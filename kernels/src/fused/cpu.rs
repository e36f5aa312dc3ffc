//! The fused operations on plain `f32` slices, for burn's flex (CPU) backend: one pass over
//! memory per operation and direction, rows or sequences spread over rayon's pool, and each
//! task's loops compiled for the widest SIMD the processor has (`pulp` picks AVX2+FMA or
//! AVX-512 at run time; the code inside is plain Rust that the compiler vectorises).
//!
//! Layouts are row-major and contiguous. Attention works on the linear layers' own layouts:
//! `q: [batch, seq, heads, head_dim]`, `k, v: [batch, seq, kv_heads, head_dim]`, the rotary
//! tables `[max_seq, head_dim]` in the `rotate_half` convention.

use rayon::prelude::*;

/// Rows of a row-wise operation handed to one rayon task.
const ROWS_PER_TASK: usize = 64;

/// Runs `f` compiled for the best instruction set available (scalar fallback elsewhere).
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `e^x` in single precision, branch-free so that loops over it vectorise: `2^k · e^r` with
/// `k = round(x / ln 2)`, `|r| ≤ ln 2 / 2`, and Cephes' degree-6 polynomial for `e^r` (relative
/// error below 2e-7 over the clamped range; `x` below -87.3 gives about 1e-38, not 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E + ROUND;
    let k = t - ROUND;
    // ln 2 split in two so that `k · ln 2` is exact in the first part (Cephes' C1, C2).
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // The low bits of `t` hold k (offset by ROUND's own bits): 2^k without a float-to-int conversion.
    let ki = t.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(ki.wrapping_add(127) << 23)
}

/// Lanes of the independent partial sums in [`dot`] and [`sum`]: floating-point addition is not
/// associative, so a plain `.sum()` is one serial chain; sixteen chains vectorise.
const LANES: usize = 16;

/// `Σ a_i b_i`, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = x[l].mul_add(y[l], acc[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ f(a_i)`, in [`LANES`] interleaved partial sums.
#[inline(always)]
fn sum_map(a: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let tail: f32 = ca.remainder().iter().map(|&x| f(x)).sum();
    for x in ca {
        for l in 0..LANES {
            acc[l] += f(x[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// RMSNorm of each row of `x: [rows, h]`: `y = x · rstd · gamma`, `rstd = 1 / sqrt(mean(x²) + eps)`.
/// Returns `(y, rstd)`.
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let rows = x.len() / h;
    let mut y = vec![0.0f32; x.len()];
    let mut rstd = vec![0.0f32; rows];
    y.par_chunks_mut(h * ROWS_PER_TASK).zip(rstd.par_chunks_mut(ROWS_PER_TASK)).enumerate().for_each(|(t, (y, rstd))| {
        simd(#[inline(always)] || {
            let x = &x[t * h * ROWS_PER_TASK..];
            for (r, (yr, s)) in y.chunks_exact_mut(h).zip(rstd.iter_mut()).enumerate() {
                let xr = &x[r * h..(r + 1) * h];
                let ss = sum_map(xr, |v| v * v);
                *s = 1.0 / (ss / h as f32 + eps).sqrt();
                for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(gamma) {
                    *o = v * *s * g;
                }
            }
        })
    });
    (y, rstd)
}

/// Gradients of [`rms_norm`]: with `g = dy · gamma` and `x̂ = x · rstd`,
/// `dx = rstd · (g − x̂ · mean(g · x̂))` per row and `dgamma = Σ_rows dy · x̂`.
pub fn rms_norm_backward(x: &[f32], gamma: &[f32], rstd: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let h = gamma.len();
    let mut dx = vec![0.0f32; x.len()];
    let dgamma = dx
        .par_chunks_mut(h * ROWS_PER_TASK)
        .enumerate()
        .map(|(t, dx)| {
            simd(#[inline(always)] || {
                let mut dg = vec![0.0f32; h];
                let mut g = vec![0.0f32; h];
                let base = t * ROWS_PER_TASK;
                for (r, dxr) in dx.chunks_exact_mut(h).enumerate() {
                    let row = base + r;
                    let (xr, dyr, s) = (&x[row * h..(row + 1) * h], &dy[row * h..(row + 1) * h], rstd[row]);
                    for ((gi, &d), &w) in g.iter_mut().zip(dyr).zip(gamma) {
                        *gi = d * w;
                    }
                    // mean(g · x̂) = rstd · Σ (g · x) / h
                    let c = dot(&g, xr) * s * s / h as f32;
                    for ((((o, &v), &d), &gi), acc) in dxr.iter_mut().zip(xr).zip(dyr).zip(&g).zip(dg.iter_mut()) {
                        *o = s * (gi - v * c);
                        *acc += d * v * s;
                    }
                }
                dg
            })
        })
        .reduce(|| vec![0.0f32; h], |mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        });
    (dx, dgamma)
}

/// SwiGLU's activation, `silu(gate) · up` elementwise.
pub fn swiglu(gate: &[f32], up: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0f32; gate.len()];
    let chunk = 16 * 1024;
    y.par_chunks_mut(chunk).enumerate().for_each(|(t, y)| {
        simd(#[inline(always)] || {
            let (g, u) = (&gate[t * chunk..t * chunk + y.len()], &up[t * chunk..t * chunk + y.len()]);
            for ((o, &a), &b) in y.iter_mut().zip(g).zip(u) {
                *o = a * sigmoid(a) * b;
            }
        })
    });
    y
}

/// Gradients of [`swiglu`]: `dgate = dy · up · σ(a) (1 + a (1 − σ(a)))`, `dup = dy · a σ(a)`.
pub fn swiglu_backward(gate: &[f32], up: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dgate = vec![0.0f32; gate.len()];
    let mut dup = vec![0.0f32; gate.len()];
    let chunk = 16 * 1024;
    dgate.par_chunks_mut(chunk).zip(dup.par_chunks_mut(chunk)).enumerate().for_each(|(t, (dg, du))| {
        simd(#[inline(always)] || {
            let r = t * chunk..t * chunk + dg.len();
            let (g, u, d) = (&gate[r.clone()], &up[r.clone()], &dy[r]);
            for ((dg, du), ((&a, &b), &dy)) in dg.iter_mut().zip(du.iter_mut()).zip(g.iter().zip(u).zip(d)) {
                let s = sigmoid(a);
                *dg = dy * b * s * (1.0 + a * (1.0 - s));
                *du = dy * a * s;
            }
        })
    });
    (dgate, dup)
}

/// Mean cross-entropy of `logits: [rows, vocab]` against `targets`; returns the loss and the
/// log-sum-exp of every row (kept for the backward pass). Sums are in f64.
pub fn cross_entropy(logits: &[f32], targets: &[i64], vocab: usize) -> (f64, Vec<f32>) {
    let rows = targets.len();
    let mut lse = vec![0.0f32; rows];
    let total: f64 = lse
        .par_chunks_mut(ROWS_PER_TASK)
        .enumerate()
        .map(|(t, lse)| {
            simd(#[inline(always)] || {
                let mut sum = 0.0f64;
                for (r, l) in lse.iter_mut().enumerate() {
                    let row = t * ROWS_PER_TASK + r;
                    let x = &logits[row * vocab..(row + 1) * vocab];
                    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let s = sum_map(x, |v| exp(v - m));
                    *l = m + s.ln();
                    sum += f64::from(*l - x[targets[row] as usize]);
                }
                sum
            })
        })
        .sum();
    (total / rows as f64, lse)
}

/// Gradient of [`cross_entropy`] for an upstream gradient `dloss`:
/// `(softmax(x) − onehot(target)) · dloss / rows`.
pub fn cross_entropy_backward(logits: &[f32], targets: &[i64], lse: &[f32], dloss: f32, vocab: usize) -> Vec<f32> {
    let rows = targets.len();
    let scale = dloss / rows as f32;
    let mut dx = vec![0.0f32; logits.len()];
    dx.par_chunks_mut(vocab * ROWS_PER_TASK).enumerate().for_each(|(t, dx)| {
        simd(#[inline(always)] || {
            for (r, d) in dx.chunks_exact_mut(vocab).enumerate() {
                let row = t * ROWS_PER_TASK + r;
                let x = &logits[row * vocab..(row + 1) * vocab];
                let l = lse[row];
                for (o, &v) in d.iter_mut().zip(x) {
                    *o = exp(v - l) * scale;
                }
                d[targets[row] as usize] -= scale;
            }
        })
    });
    dx
}

/// The shape of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn q_row(&self) -> usize {
        self.heads * self.head_dim
    }
    fn kv_row(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// `x · cos + rotate_half(x) · sin` at one position, into `out`.
#[inline(always)]
fn rope(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = x.len() / 2;
    for k in 0..half {
        out[k] = x[k] * cos[k] - x[k + half] * sin[k];
        out[k + half] = x[k + half] * cos[k + half] + x[k] * sin[k + half];
    }
}

/// The transpose of [`rope`]: the gradient with respect to `x` of a gradient `g` at the output.
#[inline(always)]
fn rope_transpose(g: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = g.len() / 2;
    for k in 0..half {
        out[k] = g[k] * cos[k] + g[k + half] * sin[k + half];
        out[k + half] = g[k + half] * cos[k + half] - g[k] * sin[k];
    }
}

/// Head dimensions the attention kernels are compiled for (a constant lets every per-row loop
/// unroll and keep its accumulators in registers); others take the general path.
pub const HEAD_DIMS: [usize; 9] = [4, 8, 12, 16, 24, 32, 48, 64, 128];

/// Keys per block of the attention loops: one AVX-512 register, two AVX2 ones.
const BLOCK: usize = 16;

/// `seq` rounded up to whole blocks: the row stride of the transposed, zero-padded key and value
/// tiles.
fn padded(seq: usize) -> usize {
    seq.div_ceil(BLOCK) * BLOCK
}

/// The rotated keys (or values, `rotate = None`) of kv head `g` of one sequence, transposed to
/// `[D, padded(seq)]` so that the loops over key positions run along contiguous memory.
#[inline(always)]
fn gather_transposed<const D: usize>(src: &[f32], s: &AttnShape, g: usize, rotate: Option<(&[f32], &[f32])>, out: &mut [f32]) {
    let sp = padded(s.seq);
    let mut tmp = [0.0f32; D];
    for j in 0..s.seq {
        let x = &src[j * s.kv_row() + g * D..j * s.kv_row() + (g + 1) * D];
        match rotate {
            Some((cos, sin)) => rope(x, &cos[j * D..(j + 1) * D], &sin[j * D..(j + 1) * D], &mut tmp),
            None => tmp.copy_from_slice(x),
        }
        for (c, &v) in tmp.iter().enumerate() {
            out[c * sp + j] = v;
        }
    }
}

/// The rotated keys (or values, `rotate = None`) of kv head `g` of one sequence as rows
/// `[seq, D]`: for the loops that add a multiple of one key or value to a `D`-vector.
#[inline(always)]
fn gather_rows<const D: usize>(src: &[f32], s: &AttnShape, g: usize, rotate: Option<(&[f32], &[f32])>, out: &mut [f32]) {
    for j in 0..s.seq {
        let x = &src[j * s.kv_row() + g * D..j * s.kv_row() + (g + 1) * D];
        let row = &mut out[j * D..(j + 1) * D];
        match rotate {
            Some((cos, sin)) => rope(x, &cos[j * D..(j + 1) * D], &sin[j * D..(j + 1) * D], row),
            None => row.copy_from_slice(x),
        }
    }
}

/// `acc += a · row` over one `D`-vector.
#[inline(always)]
fn axpy<const D: usize>(acc: &mut [f32; D], a: f32, row: &[f32]) {
    let row: &[f32; D] = row.try_into().expect("a row of D");
    for c in 0..D {
        acc[c] = a.mul_add(row[c], acc[c]);
    }
}

/// Block `jc` of row `c` of a transposed tile.
#[inline(always)]
fn block(t: &[f32], sp: usize, c: usize, jc: usize) -> &[f32; BLOCK] {
    let o = c * sp + jc * BLOCK;
    t[o..o + BLOCK].try_into().expect("a whole block")
}

/// `Σ_c a[c] · t[c][block]` for every key of one block: a row of scores, or of `dO · V`. Four
/// partial sums, so that consecutive fused multiply-adds do not wait on each other, each a named
/// array walked four rows at a time: indexed by `c % 4` in a loop the compiler does not unroll,
/// they lived on the stack, and every multiply-add waited on a store (measured: half the
/// attention backward's cycles on AVX2).
#[inline(always)]
fn project<const D: usize>(a: &[f32; D], t: &[f32], sp: usize, jc: usize) -> [f32; BLOCK] {
    const { assert!(D % 4 == 0, "head dimensions are multiples of 4") };
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    for c in (0..D).step_by(4) {
        let (r0, r1, r2, r3) = (block(t, sp, c, jc), block(t, sp, c + 1, jc), block(t, sp, c + 2, jc), block(t, sp, c + 3, jc));
        for l in 0..BLOCK {
            a0[l] = a[c].mul_add(r0[l], a0[l]);
            a1[l] = a[c + 1].mul_add(r1[l], a1[l]);
            a2[l] = a[c + 2].mul_add(r2[l], a2[l]);
            a3[l] = a[c + 3].mul_add(r3[l], a3[l]);
        }
    }
    let mut out = [0.0f32; BLOCK];
    for l in 0..BLOCK {
        out[l] = (a0[l] + a1[l]) + (a2[l] + a3[l]);
    }
    out
}

/// `Σ_j w[j] · rows[j]` over `D`-vectors, in four interleaved partial sums (see [`project`]),
/// each a named array so that it stays in registers.
#[inline(always)]
fn combine<const D: usize>(w: &[f32], rows: &[f32]) -> [f32; D] {
    let (mut a0, mut a1, mut a2, mut a3) = ([0.0f32; D], [0.0f32; D], [0.0f32; D], [0.0f32; D]);
    let quads = w.chunks_exact(4);
    let done = w.len() - quads.remainder().len();
    for (k, q) in quads.enumerate() {
        let r = &rows[4 * k * D..(4 * k + 4) * D];
        axpy::<D>(&mut a0, q[0], &r[..D]);
        axpy::<D>(&mut a1, q[1], &r[D..2 * D]);
        axpy::<D>(&mut a2, q[2], &r[2 * D..3 * D]);
        axpy::<D>(&mut a3, q[3], &r[3 * D..]);
    }
    for (j, &wj) in w.iter().enumerate().skip(done) {
        axpy::<D>(&mut a0, wj, &rows[j * D..(j + 1) * D]);
    }
    let mut out = [0.0f32; D];
    for c in 0..D {
        out[c] = (a0[c] + a1[c]) + (a2[c] + a3[c]);
    }
    out
}

/// Keys at or before query `i` in block `jc`: lanes `l` with `jc · BLOCK + l ≤ i`.
#[inline(always)]
fn visible(i: usize, jc: usize) -> usize {
    (i + 1 - jc * BLOCK).min(BLOCK)
}

/// Causal grouped-query attention with rotary embeddings applied to `q` and `k` inside:
/// `softmax(rope(q) rope(k)ᵀ / sqrt(head_dim), causal) v` per head, query head `h` reading kv
/// head `h / (heads / kv_heads)`. Returns the output `[batch, seq, heads, head_dim]` and the
/// log-sum-exp of every score row `[batch, heads, seq]` (the backward pass recomputes the
/// probabilities from it, so no `seq × seq` matrix is stored). `head_dim` is one of [`HEAD_DIMS`].
pub fn attention(q: &[f32], k: &[f32], v: &[f32], cos: &[f32], sin: &[f32], s: &AttnShape) -> (Vec<f32>, Vec<f32>) {
    macro_rules! by_dim {
        ($($d:literal)*) => {
            match s.head_dim {
                $($d => attention_d::<$d>(q, k, v, cos, sin, s),)*
                d => panic!("attention kernels: head dimension {d} is not among {HEAD_DIMS:?}"),
            }
        };
    }
    by_dim!(4 8 12 16 24 32 48 64 128)
}

fn attention_d<const D: usize>(q: &[f32], k: &[f32], v: &[f32], cos: &[f32], sin: &[f32], s: &AttnShape) -> (Vec<f32>, Vec<f32>) {
    let seq = s.seq;
    let sp = padded(seq);
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (D as f32).sqrt();
    let (qs, kvs) = (seq * s.q_row(), seq * s.kv_row());
    let mut out = vec![0.0f32; s.batch * qs];
    let mut lse = vec![0.0f32; s.batch * s.heads * seq];
    out.par_chunks_mut(qs).zip(lse.par_chunks_mut(s.heads * seq)).enumerate().for_each(|(b, (out, lse))| {
        simd(#[inline(always)] || {
            let (qb, kb, vb) = (&q[b * qs..(b + 1) * qs], &k[b * kvs..(b + 1) * kvs], &v[b * kvs..(b + 1) * kvs]);
            let (mut kt, mut vr) = (vec![0.0f32; D * sp], vec![0.0f32; D * seq]);
            let mut p = vec![0.0f32; sp];
            let mut qi = [0.0f32; D];
            for g in 0..s.kv_heads {
                gather_transposed::<D>(kb, s, g, Some((cos, sin)), &mut kt);
                gather_rows::<D>(vb, s, g, None, &mut vr);
                for h in g * group..(g + 1) * group {
                    for i in 0..seq {
                        let off = i * s.q_row() + h * D;
                        rope(&qb[off..off + D], &cos[i * D..(i + 1) * D], &sin[i * D..(i + 1) * D], &mut qi);
                        qi.iter_mut().for_each(|x| *x *= scale);
                        let blocks = i / BLOCK + 1;
                        // Scores, future keys masked to -inf, and the row maximum in lanes.
                        let mut mx = [f32::NEG_INFINITY; BLOCK];
                        for jc in 0..blocks {
                            let mut sc = project::<D>(&qi, &kt, sp, jc);
                            let n = visible(i, jc);
                            for x in 0..BLOCK {
                                sc[x] = if x < n { sc[x] } else { f32::NEG_INFINITY };
                                mx[x] = if sc[x] > mx[x] { sc[x] } else { mx[x] };
                            }
                            p[jc * BLOCK..(jc + 1) * BLOCK].copy_from_slice(&sc);
                        }
                        let m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let np = blocks * BLOCK;
                        let p = &mut p[..np];
                        for x in p.iter_mut() {
                            let e = exp(*x - m);
                            *x = if *x == f32::NEG_INFINITY { 0.0 } else { e };
                        }
                        let l = sum_map(p, |x| x);
                        let inv = 1.0 / l;
                        let o = combine::<D>(&p[..=i], &vr);
                        for (dst, &v) in out[off..off + D].iter_mut().zip(&o) {
                            *dst = v * inv;
                        }
                        lse[h * seq + i] = m + l.ln();
                    }
                }
            }
        })
    });
    (out, lse)
}

/// Gradients of [`attention`] with respect to `q`, `k` and `v` (in their input layouts), given
/// the forward output, its log-sum-exp rows and the gradient `dout` of the output.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(q: &[f32], k: &[f32], v: &[f32], cos: &[f32], sin: &[f32], out: &[f32], lse: &[f32], dout: &[f32], s: &AttnShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    macro_rules! by_dim {
        ($($d:literal)*) => {
            match s.head_dim {
                $($d => attention_backward_d::<$d>(q, k, v, cos, sin, out, lse, dout, s),)*
                d => panic!("attention kernels: head dimension {d} is not among {HEAD_DIMS:?}"),
            }
        };
    }
    by_dim!(4 8 12 16 24 32 48 64 128)
}

#[allow(clippy::too_many_arguments)]
fn attention_backward_d<const D: usize>(q: &[f32], k: &[f32], v: &[f32], cos: &[f32], sin: &[f32], out: &[f32], lse: &[f32], dout: &[f32], s: &AttnShape) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let seq = s.seq;
    let sp = padded(seq);
    let group = s.heads / s.kv_heads;
    let scale = 1.0 / (D as f32).sqrt();
    let mut dq = vec![0.0f32; q.len()];
    let mut dk = vec![0.0f32; k.len()];
    let mut dv = vec![0.0f32; v.len()];
    let (qs, kvs) = (seq * s.q_row(), seq * s.kv_row());
    dq.par_chunks_mut(qs).zip(dk.par_chunks_mut(kvs)).zip(dv.par_chunks_mut(kvs)).enumerate().for_each(|(b, ((dq, dk), dv))| {
        simd(#[inline(always)] || {
            let (qb, kb, vb) = (&q[b * qs..(b + 1) * qs], &k[b * kvs..(b + 1) * kvs], &v[b * kvs..(b + 1) * kvs]);
            let (ob, gb, lb) = (&out[b * qs..(b + 1) * qs], &dout[b * qs..(b + 1) * qs], &lse[b * s.heads * seq..(b + 1) * s.heads * seq]);
            let (mut kt, mut vt, mut kr) = (vec![0.0f32; D * sp], vec![0.0f32; D * sp], vec![0.0f32; D * seq]);
            // Gradients of the rotated keys and of the values, as rows.
            let (mut dkr, mut dvr) = (vec![0.0f32; D * seq], vec![0.0f32; D * seq]);
            let (mut qi, mut go, mut tmp) = ([0.0f32; D], [0.0f32; D], [0.0f32; D]);
            let (mut prow, mut dsrow) = (vec![0.0f32; sp], vec![0.0f32; sp]);
            for g in 0..s.kv_heads {
                gather_transposed::<D>(kb, s, g, Some((cos, sin)), &mut kt);
                gather_transposed::<D>(vb, s, g, None, &mut vt);
                gather_rows::<D>(kb, s, g, Some((cos, sin)), &mut kr);
                dkr.iter_mut().for_each(|x| *x = 0.0);
                dvr.iter_mut().for_each(|x| *x = 0.0);
                for h in g * group..(g + 1) * group {
                    for i in 0..seq {
                        let off = i * s.q_row() + h * D;
                        let (cs, sn) = (&cos[i * D..(i + 1) * D], &sin[i * D..(i + 1) * D]);
                        rope(&qb[off..off + D], cs, sn, &mut qi);
                        qi.iter_mut().for_each(|x| *x *= scale);
                        go.copy_from_slice(&gb[off..off + D]);
                        let delta: f32 = go.iter().zip(&ob[off..off + D]).map(|(a, b)| a * b).sum();
                        let l = lb[h * seq + i];
                        for jc in 0..i / BLOCK + 1 {
                            // Probabilities, recomputed from the stored log-sum-exp, and dS.
                            let sc = project::<D>(&qi, &kt, sp, jc);
                            let dp = project::<D>(&go, &vt, sp, jc);
                            let n = visible(i, jc);
                            let (p, ds) = (&mut prow[jc * BLOCK..(jc + 1) * BLOCK], &mut dsrow[jc * BLOCK..(jc + 1) * BLOCK]);
                            for x in 0..BLOCK {
                                let e = exp(sc[x] - l);
                                p[x] = if x < n { e } else { 0.0 };
                                ds[x] = p[x] * (dp[x] - delta);
                            }
                        }
                        let dqi = combine::<D>(&dsrow[..=i], &kr);
                        for j in 0..=i {
                            let (pj, dsj) = (prow[j], dsrow[j]);
                            let dk_j: &mut [f32; D] = (&mut dkr[j * D..(j + 1) * D]).try_into().expect("a row of D");
                            axpy::<D>(dk_j, dsj, &qi);
                            let dv_j: &mut [f32; D] = (&mut dvr[j * D..(j + 1) * D]).try_into().expect("a row of D");
                            axpy::<D>(dv_j, pj, &go);
                        }
                        for c in 0..D {
                            tmp[c] = dqi[c] * scale;
                        }
                        rope_transpose(&tmp, cs, sn, &mut dq[off..off + D]);
                    }
                }
                for j in 0..seq {
                    let off = j * s.kv_row() + g * D;
                    dv[off..off + D].copy_from_slice(&dvr[j * D..(j + 1) * D]);
                    rope_transpose(&dkr[j * D..(j + 1) * D], &cos[j * D..(j + 1) * D], &sin[j * D..(j + 1) * D], &mut dk[off..off + D]);
                }
            }
        })
    });
    (dq, dk, dv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_its_stated_error() {
        let mut worst = 0.0f64;
        for i in -87_000..88_000 {
            let x = i as f32 / 1000.0;
            let (a, b) = (f64::from(exp(x)), f64::from(x).exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < 2e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37 && exp(f32::NEG_INFINITY) >= 0.0);
    }
}
