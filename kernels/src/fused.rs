//! Fused operations for training the lab's decoder: RMSNorm, SwiGLU's activation, causal
//! grouped-query attention with rotary embeddings, and cross-entropy, each one pass over memory
//! forward and one backward, with its own gradient, as a custom autodiff operation.
//!
//! Composed of burn's tensor ops, each of these is many passes over the activations, and the
//! attention one stores the `seq × seq` scores; a decoder this small spends its time in those
//! passes rather than in matrix products. Fused, attention keeps only each score row's
//! log-sum-exp and recomputes the probabilities in the backward pass (as FlashAttention does).
//!
//! The fused path runs on burn's flex (CPU) backend ([`cpu`] holds the kernels on slices). Any
//! other device, dtype or shape goes through [`unfused`]: the same computation in burn tensor
//! ops, differentiated by burn, which the tests hold the fused path to. A shape the fused path
//! cannot take is logged once, with the reason, and never computed wrong.

mod autodiff;
pub mod cpu;
pub mod unfused;

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, DispatchDevice, backend_extension};
#[allow(unused_imports)] // the macro implements the trait for these
use burn::backend::Flex;
#[allow(unused_imports)] // named by the macro's routing arms
use burn::backend::{Autodiff, autodiff::checkpoint::strategy::CheckpointStrategy};
use burn::prelude::*;
use burn::tensor::DType;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The fused operations as a burn backend extension: flex computes them ([`cpu`]), autodiff
/// records them with their own backward pass. The `*_backward` methods are the gradients, for
/// the autodiff layer to call.
#[backend_extension(Flex, Autodiff)]
pub trait FusedOps: Backend {
    /// RMSNorm of the rows of `x: [rows, h]` scaled by `gamma: [h]`: `(y, rstd)`.
    fn fused_rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `(dx, dgamma)`.
    fn fused_rms_norm_backward(x: FloatTensor<Self>, gamma: FloatTensor<Self>, rstd: FloatTensor<Self>, dy: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `silu(gate) · up`.
    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(dgate, dup)`.
    fn fused_swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, dy: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// Causal attention of `q: [batch, seq, heads · d]` over `k, v: [batch, seq, kv_heads · d]`
    /// with the rotary tables `cos, sin: [≥ seq, d]`: `(out [batch, seq, heads · d], lse [batch, heads, seq])`.
    fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, kv_heads: usize) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn fused_attention_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
        kv_heads: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    /// Mean cross-entropy of `logits: [rows, vocab]` against `targets: [rows]`: `(loss [1], lse [rows])`.
    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// `dlogits` for the upstream gradient `dloss: [1]`.
    fn fused_cross_entropy_backward(logits: FloatTensor<Self>, targets: IntTensor<Self>, lse: FloatTensor<Self>, dloss: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// Whether the fused path takes tensors on these devices, of these dtypes; the reason when not.
fn fused_path(tensors: &[(Device, DType)]) -> Result<(), String> {
    for (device, dtype) in tensors {
        if !matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_)) {
            return Err(format!("the fused kernels run on the CPU (flex) backend; this tensor is on {device:?}"));
        }
        if *dtype != DType::F32 {
            return Err(format!("the fused kernels take f32; this tensor is {dtype:?}"));
        }
    }
    Ok(())
}

/// What [`fused_path`] looks at.
fn of<const D: usize, K: burn::tensor::kind::Basic>(t: &Tensor<D, K>) -> (Device, DType) {
    (t.device(), t.dtype())
}

/// Logs, once per operation and reason, why the general path ran instead.
fn fall_back(op: &str, why: &str) {
    static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let key = format!("{op}: {why}");
    if SEEN.lock().map(|mut s| s.insert(key.clone())).unwrap_or(false) {
        tracing::info!("fused {op} not used, general path instead: {why}");
    }
}

/// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · gamma`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, gamma: Tensor<1>, eps: f64) -> Tensor<D> {
    if let Err(why) = fused_path(&[of(&x), of(&gamma)]) {
        fall_back("rms_norm", &why);
        return unfused::rms_norm(x, gamma, eps);
    }
    let dims = x.dims();
    let h = dims[D - 1];
    let rows = x.shape().num_elements() / h.max(1);
    let (y, _) = <Dispatch as FusedOps>::fused_rms_norm(x.reshape([rows, h]).into_dispatch(), gamma.into_dispatch(), eps);
    Tensor::<2>::from_dispatch(y).reshape(dims)
}

/// SwiGLU's activation `silu(gate) · up`.
pub fn swiglu<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    if let Err(why) = fused_path(&[of(&gate), of(&up)]) {
        fall_back("swiglu", &why);
        return unfused::swiglu(gate, up);
    }
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_swiglu(gate.into_dispatch(), up.into_dispatch()))
}

/// Causal grouped-query attention with rotary embeddings, on the projections' own layout:
/// `q: [batch, seq, heads · head_dim]`, `k, v: [batch, seq, kv_heads · head_dim]`, rotary tables
/// `cos, sin: [max_seq, head_dim]` (`rotate_half` convention); returns `[batch, seq, heads · head_dim]`,
/// the input of the output projection.
pub fn attention(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, heads: usize, kv_heads: usize) -> Tensor<3> {
    let check = || -> Result<(), String> {
        fused_path(&[of(&q), of(&k), of(&v), of(cos), of(sin)])?;
        let [_, seq, width] = q.dims();
        let [max_seq, hd] = cos.dims();
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(format!("{heads} query heads cannot share {kv_heads} key/value heads"));
        }
        if width != heads * hd || k.dims()[2] != kv_heads * hd || v.dims() != k.dims() {
            return Err(format!("projection widths {width}, {}, {} do not fit {heads} and {kv_heads} heads of {hd}", k.dims()[2], v.dims()[2]));
        }
        if !cpu::HEAD_DIMS.contains(&hd) {
            return Err(format!("the attention kernels are compiled for head dimensions {:?}, not {hd}", cpu::HEAD_DIMS));
        }
        if seq > max_seq {
            return Err(format!("sequence length {seq} exceeds the rotary tables' {max_seq}"));
        }
        Ok(())
    };
    if let Err(why) = check() {
        fall_back("attention", &why);
        return unfused::attention(q, k, v, cos, sin, heads, kv_heads);
    }
    let (out, _) = <Dispatch as FusedOps>::fused_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        cos.clone().into_dispatch(),
        sin.clone().into_dispatch(),
        heads,
        kv_heads,
    );
    Tensor::from_dispatch(out)
}

/// Mean next-token cross-entropy (nats) of `logits: [rows, vocab]` against `targets: [rows]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    if let Err(why) = fused_path(&[of(&logits)]) {
        fall_back("cross_entropy", &why);
        return unfused::cross_entropy(logits, targets);
    }
    let (loss, _) = <Dispatch as FusedOps>::fused_cross_entropy(logits.into_dispatch(), targets.into_dispatch());
    Tensor::from_dispatch(loss)
}

/// The flex implementation: contiguous `f32` slices in, [`cpu`]'s kernels, fresh tensors out.
mod flex {
    use super::{FusedOps, cpu};
    use burn::backend::flex::{FlexTensor, Layout};
    use burn::backend::{Flex, TensorMetadata};
    use burn::tensor::{Bytes, DType, Shape};
    use std::borrow::Cow;

    fn floats(t: &FlexTensor) -> Cow<'_, [f32]> {
        match t.as_slice::<f32>() {
            Some(s) => Cow::Borrowed(s),
            // The wrappers send f32 only (`fused_path`); a view is copied to its values.
            None => Cow::Owned(t.to_contiguous().as_slice::<f32>().map(<[f32]>::to_vec).unwrap_or_else(|| panic!("fused kernels: expected f32, got {:?}", t.dtype()))),
        }
    }

    fn ints(t: &FlexTensor) -> Vec<i64> {
        let t = t.to_contiguous();
        match t.dtype() {
            DType::I64 => t.as_slice::<i64>().map(<[i64]>::to_vec).unwrap_or_default(),
            DType::I32 => t.as_slice::<i32>().map(|s| s.iter().map(|&v| i64::from(v)).collect()).unwrap_or_default(),
            other => panic!("cross-entropy targets must be i32 or i64, got {other:?}"),
        }
    }

    fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
        FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape.into()), DType::F32)
    }

    fn attn_shape(q: &FlexTensor, k: &FlexTensor, heads: usize, kv_heads: usize) -> cpu::AttnShape {
        let (qs, ks) = (q.shape(), k.shape());
        cpu::AttnShape { batch: qs[0], seq: qs[1], heads, kv_heads, head_dim: ks[2] / kv_heads }
    }

    impl FusedOps for Flex {
        fn fused_rms_norm(x: FlexTensor, gamma: FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
            let shape = x.shape();
            let (y, rstd) = cpu::rms_norm(&floats(&x), &floats(&gamma), eps as f32);
            let rows = rstd.len();
            (tensor(y, shape), tensor(rstd, [rows]))
        }

        fn fused_rms_norm_backward(x: FlexTensor, gamma: FlexTensor, rstd: FlexTensor, dy: FlexTensor) -> (FlexTensor, FlexTensor) {
            let (shape, gshape) = (x.shape(), gamma.shape());
            let (dx, dg) = cpu::rms_norm_backward(&floats(&x), &floats(&gamma), &floats(&rstd), &floats(&dy));
            (tensor(dx, shape), tensor(dg, gshape))
        }

        fn fused_swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
            let shape = gate.shape();
            tensor(cpu::swiglu(&floats(&gate), &floats(&up)), shape)
        }

        fn fused_swiglu_backward(gate: FlexTensor, up: FlexTensor, dy: FlexTensor) -> (FlexTensor, FlexTensor) {
            let shape = gate.shape();
            let (dg, du) = cpu::swiglu_backward(&floats(&gate), &floats(&up), &floats(&dy));
            (tensor(dg, shape.clone()), tensor(du, shape))
        }

        fn fused_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, cos: FlexTensor, sin: FlexTensor, heads: usize, kv_heads: usize) -> (FlexTensor, FlexTensor) {
            let s = attn_shape(&q, &k, heads, kv_heads);
            let (out, lse) = cpu::attention(&floats(&q), &floats(&k), &floats(&v), &floats(&cos), &floats(&sin), &s);
            (tensor(out, q.shape()), tensor(lse, [s.batch, heads, s.seq]))
        }

        fn fused_attention_backward(
            q: FlexTensor,
            k: FlexTensor,
            v: FlexTensor,
            cos: FlexTensor,
            sin: FlexTensor,
            out: FlexTensor,
            lse: FlexTensor,
            dout: FlexTensor,
            heads: usize,
            kv_heads: usize,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let s = attn_shape(&q, &k, heads, kv_heads);
            let (dq, dk, dv) = cpu::attention_backward(&floats(&q), &floats(&k), &floats(&v), &floats(&cos), &floats(&sin), &floats(&out), &floats(&lse), &floats(&dout), &s);
            (tensor(dq, q.shape()), tensor(dk, k.shape()), tensor(dv, v.shape()))
        }

        fn fused_cross_entropy(logits: FlexTensor, targets: FlexTensor) -> (FlexTensor, FlexTensor) {
            let vocab = logits.shape()[1];
            let t = ints(&targets);
            let (loss, lse) = cpu::cross_entropy(&floats(&logits), &t, vocab);
            let rows = lse.len();
            (tensor(vec![loss as f32], [1]), tensor(lse, [rows]))
        }

        fn fused_cross_entropy_backward(logits: FlexTensor, targets: FlexTensor, lse: FlexTensor, dloss: FlexTensor) -> FlexTensor {
            let shape = logits.shape();
            let d = floats(&dloss).first().copied().unwrap_or(0.0);
            tensor(cpu::cross_entropy_backward(&floats(&logits), &ints(&targets), &floats(&lse), d, shape[1]), shape)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The fused path against the general path (outputs and every gradient, through burn's
    //! autodiff on both sides) and against central finite differences of the kernels themselves.

    use super::*;
    use rand::{Rng, SeedableRng};

    /// Agreement of the fused and general paths: both are f32; attention sums 128-long rows in
    /// another order, so a few ulps of the largest value.
    const TOL: f32 = 2e-5;

    fn device() -> Device {
        Device::flex().autodiff()
    }

    fn random(shape: &[usize], scale: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        (0..shape.iter().product::<usize>()).map(|_| rng.random_range(-scale..scale)).collect()
    }

    fn tensor<const D: usize>(shape: [usize; D], scale: f32, seed: u64) -> Tensor<D> {
        Tensor::from_data(TensorData::new(random(&shape, scale, seed), shape), &device()).require_grad()
    }

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.to_data().try_to_vec::<f32>().expect("f32")
    }

    /// Largest absolute difference, relative to the largest magnitude (at least 1).
    fn close(what: &str, a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst <= tol * scale, "{what}: differs by {worst:e} (scale {scale:e})");
    }

    /// Output and gradients of `f` at inputs made by `make`, contracted with a fixed random weight
    /// (so that every output element carries a different upstream gradient).
    fn forward_and_grads<const D: usize, const K: usize>(make: &dyn Fn() -> [Tensor<D>; K], f: &dyn Fn([Tensor<D>; K]) -> Tensor<D>) -> (Vec<f32>, Vec<Vec<f32>>) {
        let inputs = make();
        let out = f(inputs.clone());
        let w = Tensor::<D>::from_data(TensorData::new(random(&out.dims(), 1.0, 99), out.dims()), &device());
        let grads = (out.clone() * w).sum().backward();
        let g = inputs.iter().map(|t| t.grad(&grads).map(|g| g.to_data().try_to_vec::<f32>().expect("f32")).unwrap_or_default()).collect();
        (values(&out), g)
    }

    fn rope_tables(max_seq: usize, hd: usize) -> (Tensor<2>, Tensor<2>) {
        let half = hd / 2;
        let (mut c, mut s) = (Vec::new(), Vec::new());
        for pos in 0..max_seq {
            for i in 0..hd {
                let f = 1.0 / 10_000f64.powf((2 * (i % half)) as f64 / hd as f64);
                c.push((pos as f64 * f).cos() as f32);
                s.push((pos as f64 * f).sin() as f32);
            }
        }
        let t = |v| Tensor::<2>::from_data(TensorData::new(v, [max_seq, hd]), &device());
        (t(c), t(s))
    }

    #[test]
    fn rms_norm_matches_the_general_path() {
        let make = || [tensor([3, 70, 48], 2.0, 1), Tensor::<3>::from_data(TensorData::new(random(&[48], 1.5, 2), [1, 1, 48]), &device()).require_grad()];
        let (fo, fg) = forward_and_grads(&make, &|[x, g]| rms_norm(x, g.reshape([48]), 1e-5));
        let (uo, ug) = forward_and_grads(&make, &|[x, g]| unfused::rms_norm(x, g.reshape([48]), 1e-5));
        close("rms_norm", &fo, &uo, TOL);
        close("rms_norm dx", &fg[0], &ug[0], TOL);
        close("rms_norm dgamma", &fg[1], &ug[1], TOL);
    }

    #[test]
    fn swiglu_matches_the_general_path() {
        let make = || [tensor([5, 33, 40], 6.0, 3), tensor([5, 33, 40], 2.0, 4)];
        let (fo, fg) = forward_and_grads(&make, &|[a, b]| swiglu(a, b));
        let (uo, ug) = forward_and_grads(&make, &|[a, b]| unfused::swiglu(a, b));
        close("swiglu", &fo, &uo, TOL);
        close("swiglu dgate", &fg[0], &ug[0], TOL);
        close("swiglu dup", &fg[1], &ug[1], TOL);
    }

    #[test]
    fn attention_matches_the_general_path() {
        // (batch, seq, heads, kv_heads, head_dim): grouped, multi-head, one head, odd lengths.
        for (case, &(b, s, h, g, d)) in [(2, 37, 4, 2, 16), (3, 128, 8, 4, 8), (1, 9, 3, 1, 12), (2, 64, 4, 4, 4), (1, 200, 2, 1, 32)].iter().enumerate() {
            let seed = 10 * case as u64;
            let (cos, sin) = rope_tables(s + 3, d);
            let make = || [tensor([b, s, h * d], 1.5, seed), tensor([b, s, g * d], 1.5, seed + 1), tensor([b, s, g * d], 1.0, seed + 2)];
            let (fo, fg) = forward_and_grads(&make, &|[q, k, v]| attention(q, k, v, &cos, &sin, h, g));
            let (uo, ug) = forward_and_grads(&make, &|[q, k, v]| unfused::attention(q, k, v, &cos, &sin, h, g));
            close(&format!("attention {case}"), &fo, &uo, TOL);
            for (i, name) in ["dq", "dk", "dv"].iter().enumerate() {
                close(&format!("attention {case} {name}"), &fg[i], &ug[i], TOL);
            }
        }
    }

    #[test]
    fn cross_entropy_matches_the_general_path() {
        let rows = 150;
        let targets: Vec<i64> = (0..rows).map(|i| (i * 37 % 256) as i64).collect();
        let t = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), &device());
        let make = || [tensor([rows, 256], 8.0, 5)];
        let (fo, fg) = forward_and_grads(&make, &|[x]| cross_entropy(x, t.clone()).reshape([1, 1]).expand([rows, 1]));
        let (uo, ug) = forward_and_grads(&make, &|[x]| unfused::cross_entropy(x, t.clone()).reshape([1, 1]).expand([rows, 1]));
        close("cross_entropy", &fo, &uo, TOL);
        close("cross_entropy dlogits", &fg[0], &ug[0], TOL);
    }

    #[test]
    fn non_contiguous_inputs_are_read_as_their_values() {
        // A transposed view goes through a copy, not through its raw storage.
        let x = tensor([48, 70], 2.0, 7);
        let g = Tensor::<1>::from_data(TensorData::new(random(&[48], 1.0, 8), [48]), &device());
        let fused = rms_norm(x.clone().transpose(), g.clone(), 1e-6);
        let general = unfused::rms_norm(x.transpose(), g, 1e-6);
        close("transposed rms_norm", &values(&fused), &values(&general), TOL);
    }

    #[test]
    fn the_tests_device_takes_the_fused_path() {
        // Otherwise the comparisons above would hold the general path to itself.
        assert_eq!(fused_path(&[(device(), DType::F32)]), Ok(()));
        assert!(fused_path(&[(Device::flex(), DType::F32)]).is_ok());
        assert!(fused_path(&[(device(), DType::F32), (device(), DType::F64)]).is_err());
    }

    #[test]
    fn what_the_kernels_refuse_takes_the_general_path() {
        // f64 tensors: the kernels are f32, so the result is the general path's, exactly.
        let f64s = |shape: [usize; 3], seed| {
            Tensor::<3>::from_data(TensorData::new(random(&shape, 1.0, seed), shape), &device()).cast(DType::F64)
        };
        let (cos, sin) = rope_tables(16, 4);
        let (cos, sin) = (cos.cast(DType::F64), sin.cast(DType::F64));
        let (q, k, v) = (f64s([1, 12, 8], 1), f64s([1, 12, 4], 2), f64s([1, 12, 4], 3));
        let a = attention(q.clone(), k.clone(), v.clone(), &cos, &sin, 2, 1);
        let b = unfused::attention(q.clone(), k, v, &cos, &sin, 2, 1);
        assert_eq!(a.to_data(), b.to_data());
        assert_eq!(q.dtype(), DType::F64);
        let g = Tensor::<1>::from_data(TensorData::new(vec![1.0f32; 8], [8]), &device()).cast(DType::F64);
        assert_eq!(rms_norm(q.clone(), g.clone(), 1e-5).to_data(), unfused::rms_norm(q, g, 1e-5).to_data());
    }

    /// Central differences of `Σ w · f(x)` in f64 over each input element, against the kernels'
    /// own gradients. f32 forward passes limit the agreement to about 1e-3 relative.
    fn finite_differences(inputs: &mut [Vec<f32>], grads: &[Vec<f32>], f: &dyn Fn(&[Vec<f32>]) -> f64) {
        let h = 1e-2f32;
        for i in 0..inputs.len() {
            for j in 0..inputs[i].len() {
                let x = inputs[i][j];
                inputs[i][j] = x + h;
                let up = f(inputs);
                inputs[i][j] = x - h;
                let down = f(inputs);
                inputs[i][j] = x;
                let fd = (up - down) / (2.0 * f64::from(h));
                let g = f64::from(grads[i][j]);
                assert!((fd - g).abs() <= 2e-3 * fd.abs().max(1.0), "input {i}[{j}]: finite difference {fd}, gradient {g}");
            }
        }
    }

    fn weighted(out: &[f32], w: &[f32]) -> f64 {
        out.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
    }

    #[test]
    fn kernel_gradients_match_finite_differences() {
        // RMSNorm
        let (rows, h) = (3, 8);
        let mut xs = vec![random(&[rows * h], 2.0, 1), random(&[h], 1.5, 2)];
        let w = random(&[rows * h], 1.0, 3);
        let (_, rstd) = cpu::rms_norm(&xs[0], &xs[1], 1e-5);
        let (dx, dg) = cpu::rms_norm_backward(&xs[0], &xs[1], &rstd, &w);
        finite_differences(&mut xs, &[dx, dg], &|x| weighted(&cpu::rms_norm(&x[0], &x[1], 1e-5).0, &w));

        // SwiGLU
        let mut xs = vec![random(&[40], 5.0, 4), random(&[40], 2.0, 5)];
        let w = random(&[40], 1.0, 6);
        let (dg, du) = cpu::swiglu_backward(&xs[0], &xs[1], &w);
        finite_differences(&mut xs, &[dg, du], &|x| weighted(&cpu::swiglu(&x[0], &x[1]), &w));

        // Attention: 2 sequences of 6, 4 query heads over 2 kv heads of 4.
        let s = cpu::AttnShape { batch: 2, seq: 6, heads: 4, kv_heads: 2, head_dim: 4 };
        let (cos, sin) = rope_tables(8, 4);
        let (cos, sin) = (values(&cos), values(&sin));
        let mut xs = vec![random(&[2 * 6 * 16], 1.5, 7), random(&[2 * 6 * 8], 1.5, 8), random(&[2 * 6 * 8], 1.0, 9)];
        let w = random(&[2 * 6 * 16], 1.0, 10);
        let (out, lse) = cpu::attention(&xs[0], &xs[1], &xs[2], &cos, &sin, &s);
        let (dq, dk, dv) = cpu::attention_backward(&xs[0], &xs[1], &xs[2], &cos, &sin, &out, &lse, &w, &s);
        finite_differences(&mut xs, &[dq, dk, dv], &|x| weighted(&cpu::attention(&x[0], &x[1], &x[2], &cos, &sin, &s).0, &w));

        // Cross-entropy: the loss itself is the scalar.
        let targets = [3i64, 0, 7, 7];
        let mut xs = vec![random(&[4 * 8], 4.0, 11)];
        let (_, lse) = cpu::cross_entropy(&xs[0], &targets, 8);
        let d = cpu::cross_entropy_backward(&xs[0], &targets, &lse, 1.0, 8);
        finite_differences(&mut xs, &[d], &|x| cpu::cross_entropy(&x[0], &targets, 8).0);
    }
}
