//! The fused operations under burn's autodiff: the forward pass runs the inner backend's fused
//! kernel and records what its backward pass needs; the backward pass is the inner backend's
//! fused gradient, not a chain of recorded elementary operations.

use super::FusedOps;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend};

type Ad<B, C> = Autodiff<B, C>;

/// An untracked autodiff tensor around an inner one (a saved statistic, or a gradient).
fn plain<B: Backend, C: CheckpointStrategy>(t: FloatTensor<B>) -> FloatTensor<Ad<B, C>> {
    <Ad<B, C> as AutodiffBackend>::from_inner(t)
}

fn inner<B: Backend, C: CheckpointStrategy>(t: FloatTensor<Ad<B, C>>) -> FloatTensor<B> {
    <Ad<B, C> as AutodiffBackend>::inner(t)
}

#[derive(Debug)]
struct RmsNormBackward;

impl<B: Backend + FusedOps> Backward<B, 2> for RmsNormBackward {
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [x_node, gamma_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (x, gamma, rstd) = ops.state;
        let (dx, dgamma) = B::fused_rms_norm_backward(x, gamma, rstd, dy);
        if let Some(n) = x_node {
            grads.register::<B>(n.id, dx);
        }
        if let Some(n) = gamma_node {
            grads.register::<B>(n.id, dgamma);
        }
    }
}

#[derive(Debug)]
struct SwigluBackward;

impl<B: Backend + FusedOps> Backward<B, 2> for SwigluBackward {
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [gate_node, up_node] = ops.parents;
        let dy = grads.consume::<B>(&ops.node);
        let (gate, up) = ops.state;
        let (dgate, dup) = B::fused_swiglu_backward(gate, up, dy);
        if let Some(n) = gate_node {
            grads.register::<B>(n.id, dgate);
        }
        if let Some(n) = up_node {
            grads.register::<B>(n.id, dup);
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

/// Inputs, rotary tables, output and log-sum-exp rows, head counts.
type AttentionState<B> = ([FloatTensor<B>; 7], usize, usize);

impl<B: Backend + FusedOps> Backward<B, 3> for AttentionBackward {
    type State = AttentionState<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [q_node, k_node, v_node] = ops.parents;
        let dout = grads.consume::<B>(&ops.node);
        let ([q, k, v, cos, sin, out, lse], heads, kv_heads) = ops.state;
        let (dq, dk, dv) = B::fused_attention_backward(q, k, v, cos, sin, out, lse, dout, heads, kv_heads);
        for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(n) = node {
                grads.register::<B>(n.id, grad);
            }
        }
    }
}

#[derive(Debug)]
struct CrossEntropyBackward;

impl<B: Backend + FusedOps> Backward<B, 1> for CrossEntropyBackward {
    type State = (FloatTensor<B>, IntTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [logits_node] = ops.parents;
        let dloss = grads.consume::<B>(&ops.node);
        let (logits, targets, lse) = ops.state;
        if let Some(n) = logits_node {
            grads.register::<B>(n.id, B::fused_cross_entropy_backward(logits, targets, lse, dloss));
        }
    }
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_rms_norm(x: FloatTensor<Self>, gamma: FloatTensor<Self>, eps: f64) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [x.node(), gamma.node()];
        let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
        let (y, rstd) = B::fused_rms_norm(x.clone(), gamma.clone(), eps);
        let y = match RmsNormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, rstd.clone()), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        };
        (y, plain::<B, C>(rstd))
    }

    fn fused_rms_norm_backward(x: FloatTensor<Self>, gamma: FloatTensor<Self>, rstd: FloatTensor<Self>, dy: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dg) = B::fused_rms_norm_backward(inner::<B, C>(x), inner::<B, C>(gamma), inner::<B, C>(rstd), inner::<B, C>(dy));
        (plain::<B, C>(dx), plain::<B, C>(dg))
    }

    fn fused_swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let nodes = [gate.node(), up.node()];
        let (gate, up) = (gate.into_primitive(), up.into_primitive());
        let y = B::fused_swiglu(gate.clone(), up.clone());
        match SwigluBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((gate, up), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_swiglu_backward(gate: FloatTensor<Self>, up: FloatTensor<Self>, dy: FloatTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dg, du) = B::fused_swiglu_backward(inner::<B, C>(gate), inner::<B, C>(up), inner::<B, C>(dy));
        (plain::<B, C>(dg), plain::<B, C>(du))
    }

    fn fused_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>, heads: usize, kv_heads: usize) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [q.node(), k.node(), v.node()];
        let (q, k, v) = (q.into_primitive(), k.into_primitive(), v.into_primitive());
        let (cos, sin) = (inner::<B, C>(cos), inner::<B, C>(sin));
        let (out, lse) = B::fused_attention(q.clone(), k.clone(), v.clone(), cos.clone(), sin.clone(), heads, kv_heads);
        let out = match AttentionBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(([q, k, v, cos, sin, out.clone(), lse.clone()], heads, kv_heads), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, plain::<B, C>(lse))
    }

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
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [q, k, v, cos, sin, out, lse, dout] = [q, k, v, cos, sin, out, lse, dout].map(inner::<B, C>);
        let (dq, dk, dv) = B::fused_attention_backward(q, k, v, cos, sin, out, lse, dout, heads, kv_heads);
        (plain::<B, C>(dq), plain::<B, C>(dk), plain::<B, C>(dv))
    }

    fn fused_cross_entropy(logits: FloatTensor<Self>, targets: IntTensor<Self>) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let nodes = [logits.node()];
        let logits = logits.into_primitive();
        let (loss, lse) = B::fused_cross_entropy(logits.clone(), targets.clone());
        let loss = match CrossEntropyBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((logits, targets, lse.clone()), loss),
            OpsKind::UnTracked(prep) => prep.finish(loss),
        };
        (loss, plain::<B, C>(lse))
    }

    fn fused_cross_entropy_backward(logits: FloatTensor<Self>, targets: IntTensor<Self>, lse: FloatTensor<Self>, dloss: FloatTensor<Self>) -> FloatTensor<Self> {
        plain::<B, C>(B::fused_cross_entropy_backward(inner::<B, C>(logits), targets, inner::<B, C>(lse), inner::<B, C>(dloss)))
    }
}
