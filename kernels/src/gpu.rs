//! The CubeCL kernels, launched on burn's own wgpu tensors (no copy through the host).
//!
//! Every entry point takes burn [`Tensor`]s on a wgpu device and checks shapes before launching:
//! a shape the kernel cannot take is a [`ShapeError`], a tensor on another device is
//! [`KernelError::Device`] (callers then use the CPU reference or burn tensor ops).
//!
//! Matrices are `rows × cols` with one row per output and one column per input, as in
//! [`reference`](crate::reference), and may be strided views: burn keeps a linear's weight as
//! `[inputs, outputs]`, so the backend passes `weight.transpose()` (a view, no copy) and gets its
//! mask back in the weight's own layout.

use crate::ShapeError;
use burn::prelude::*;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{Cube, CubeDevice};
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};
use kernels::*;

/// Why a kernel did not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("{what}: the kernels run on wgpu tensors; this one is on {device}")]
    Device { what: &'static str, device: String },
    #[error("{what}: expected f32, got {dtype}")]
    DType { what: &'static str, dtype: String },
}

/// The kernels themselves, in CubeCL.
mod kernels {
    use cubecl::prelude::*;


    /// Whether input `j` outranks input `i` of one group: a larger key, or an equal one at a lower
    /// column.
    #[cube]
    fn outranks(key_j: u32, j: usize, key_i: u32, i: usize) -> bool {
        key_j > key_i || (key_j == key_i && j < i)
    }

    /// An integer key that orders scores as numbers, so that ranking never depends on how a
    /// shader compiler treats NaN or signed zeros: `-0.0` and `0.0` get one key, negatives come
    /// below positives in reverse magnitude, and every NaN gets 0, below −∞.
    #[cube]
    fn key(score: f32) -> u32 {
        let bits = u32::reinterpret(score);
        let magnitude = bits & 0x7fff_ffffu32;
        let ordered = select(bits >> 31u32 == 1u32, 0x8000_0000u32 - magnitude, 0x8000_0000u32 + magnitude);
        select(magnitude > 0x7f80_0000u32, 0u32, ordered)
    }

    /// Index of unit `pos`'s group: `(row, group)`, the row index running fastest when rows are the
    /// contiguous axis (burn's `[in, out]` weights seen as `[out, in]`), the group index otherwise,
    /// so that neighbouring units read neighbouring memory.
    #[cube]
    fn group_of(pos: usize, rows: usize, groups: usize, rows_fast: bool) -> (usize, usize) {
        let r = select(rows_fast, pos % rows, pos / groups);
        let g = select(rows_fast, pos / rows, pos % groups);
        (r, g)
    }

    /// One unit per group of `m`: loads the group's scores, ranks each against the others and writes
    /// 1 for the `n` best, 0 for the rest.
    #[cube(launch)]
    pub(super) fn nm_mask_kernel(scores: &Tensor<f32>, mask: &mut Tensor<f32>, #[comptime] n: usize, #[comptime] m: usize) {
        let rows = scores.shape(0);
        let groups = scores.shape(1) / m;
        let pos = ABSOLUTE_POS;
        if pos >= rows * groups {
            terminate!();
        }
        let (r, g) = group_of(pos, rows, groups, scores.stride(0) < scores.stride(1));
        let base = r * scores.stride(0) + g * m * scores.stride(1);
        let mask_step = mask.stride(1);
        let out = r * mask.stride(0) + g * m * mask_step;
        let mut keys = Array::<u32>::new(m);
        #[unroll]
        for i in 0..m {
            keys[i] = key(scores[base + i * scores.stride(1)]);
        }
        #[unroll]
        for i in 0..m {
            let mut rank = 0usize;
            #[unroll]
            for j in 0..m {
                if outranks(keys[j], j, keys[i], i) {
                    rank += 1;
                }
            }
            mask[out + i * mask_step] = select(rank < n, f32::new(1.0), f32::new(0.0));
        }
    }

    /// Wanda scoring fused with selection: the scores `|W_rc|·‖X_c‖` of a group live in registers
    /// only; the unit writes the group's mask and its pruned weights.
    #[cube(launch)]
    pub(super) fn wanda_nm_kernel(
        weight: &Tensor<f32>,
        norms: &Tensor<f32>,
        mask: &mut Tensor<f32>,
        pruned: &mut Tensor<f32>,
        #[comptime] n: usize,
        #[comptime] m: usize,
    ) {
        let rows = weight.shape(0);
        let groups = weight.shape(1) / m;
        let pos = ABSOLUTE_POS;
        if pos >= rows * groups {
            terminate!();
        }
        let (r, g) = group_of(pos, rows, groups, weight.stride(0) < weight.stride(1));
        let base = r * weight.stride(0) + g * m * weight.stride(1);
        let mask_step = mask.stride(1);
        let w_step = pruned.stride(1);
        let out_mask = r * mask.stride(0) + g * m * mask_step;
        let out_w = r * pruned.stride(0) + g * m * w_step;
        let mut w = Array::<f32>::new(m);
        let mut keys = Array::<u32>::new(m);
        #[unroll]
        for i in 0..m {
            w[i] = weight[base + i * weight.stride(1)];
            keys[i] = key(w[i].abs() * norms[(g * m + i) * norms.stride(0)]);
        }
        #[unroll]
        for i in 0..m {
            let mut rank = 0usize;
            #[unroll]
            for j in 0..m {
                if outranks(keys[j], j, keys[i], i) {
                    rank += 1;
                }
            }
            let keep = rank < n;
            mask[out_mask + i * mask_step] = select(keep, f32::new(1.0), f32::new(0.0));
            pruned[out_w + i * w_step] = select(keep, w[i], f32::new(0.0));
        }
    }

    /// The masked update: zeroes, in place, every element of `target` whose mask entry is 0. Both
    /// are read through their strides, so a transposed view works.
    #[cube(launch)]
    pub(super) fn apply_mask_kernel(mask: &Tensor<f32>, target: &mut Tensor<f32>) {
        let cols = target.shape(1);
        let pos = ABSOLUTE_POS;
        if pos >= target.shape(0) * cols {
            terminate!();
        }
        let (r, c) = group_of(pos, target.shape(0), cols, target.stride(0) < target.stride(1));
        let at = r * target.stride(0) + c * target.stride(1);
        if mask[r * mask.stride(0) + c * mask.stride(1)] == f32::new(0.0) {
            target[at] = f32::new(0.0);
        }
    }

    /// The memory-bound floor for the benchmark: one read and one write of every element.
    #[cube(launch)]
    pub(super) fn copy_kernel(input: &Tensor<f32>, output: &mut Tensor<f32>) {
        let pos = ABSOLUTE_POS;
        let len = output.len();
        if pos < len {
            output[pos] = input[pos];
        }
    }

    /// Block influence as one reduction: each cube takes tokens `CUBE_POS, CUBE_POS + CUBE_COUNT, …`;
    /// its units stride over the hidden width accumulating `x·y`, `x·x` and `y·y`, a tree in shared
    /// memory sums them, and the cube adds the token's cosine to its partial. One partial per cube
    /// comes back; the host adds them in f64.
    #[cube(launch)]
    pub(super) fn cosine_partials_kernel(x_in: &Tensor<f32>, x_out: &Tensor<f32>, partials: &mut Tensor<f32>, #[comptime] units: usize) {
        let tokens = x_in.shape(0);
        let hidden = x_in.shape(1);
        let u = UNIT_POS as usize;
        let mut dots = Shared::new_slice(units);
        let mut in_sq = Shared::new_slice(units);
        let mut out_sq = Shared::new_slice(units);
        let mut acc = f32::new(0.0);
        let mut t = CUBE_POS as usize;
        let cubes = CUBE_COUNT as usize;
        while t < tokens {
            let mut dot = f32::new(0.0);
            let mut a2 = f32::new(0.0);
            let mut b2 = f32::new(0.0);
            let mut h = u;
            while h < hidden {
                let a = x_in[t * x_in.stride(0) + h * x_in.stride(1)];
                let b = x_out[t * x_out.stride(0) + h * x_out.stride(1)];
                dot += a * b;
                a2 += a * a;
                b2 += b * b;
                h += units;
            }
            dots[u] = dot;
            in_sq[u] = a2;
            out_sq[u] = b2;
            sync_cube();
            let mut half = CUBE_DIM as usize / 2;
            while half > 0 {
                if u < half {
                    let d = dots[u] + dots[u + half];
                    let a = in_sq[u] + in_sq[u + half];
                    let b = out_sq[u] + out_sq[u + half];
                    dots[u] = d;
                    in_sq[u] = a;
                    out_sq[u] = b;
                }
                sync_cube();
                half /= 2;
            }
            if u == 0 {
                let d = dots[0];
                let a = in_sq[0];
                let b = out_sq[0];
                let norms = a.sqrt() * b.sqrt();
                acc += d / norms.max(f32::new(1e-12));
            }
            sync_cube();
            t += cubes;
        }
        if u == 0 {
            let c = CUBE_POS as usize;
            partials[c] = acc;
        }
    }


}

// ---------------------------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------------------------

/// The CubeCL tensor behind a burn float tensor on a wgpu device.
fn cube_of<const D: usize>(t: &Tensor<D>, what: &'static str) -> Result<CubeTensor, KernelError> {
    if t.dtype() != burn::tensor::DType::F32 {
        return Err(KernelError::DType { what, dtype: format!("{:?}", t.dtype()) });
    }
    let device = format!("{:?}", t.device());
    let inner = if t.is_autodiff() { t.clone().inner() } else { t.clone() };
    let cube = inner.try_into_primitive::<Cube>().map_err(|_| KernelError::Device { what, device: device.clone() })?;
    if !matches!(cube.device, CubeDevice::Wgpu(_)) {
        return Err(KernelError::Device { what, device });
    }
    // Storage-tiled buffers are the matmul's own business; read everything else as rows.
    Ok(if cube.meta.is_tiled() { burn_cubecl::kernel::untile(cube) } else { cube })
}

fn wrap<const D: usize>(cube: CubeTensor) -> Tensor<D> {
    Tensor::from_primitive::<Cube>(cube)
}

/// Whether `device` is one the kernels run on.
pub fn is_wgpu(device: &Device) -> bool {
    let probe = Tensor::<1>::zeros([1], device);
    cube_of(&probe, "probe").is_ok()
}

/// An output with the same logical shape and the same axis order in memory as `like`: rows
/// contiguous when `like`'s rows are (a transposed burn weight), columns otherwise.
fn output_like(like: &Tensor<2>, device: &Device) -> Tensor<2> {
    let [rows, cols] = like.dims();
    let rows_fast = cube_of(like, "output").map(|c| c.meta.strides()[0] < c.meta.strides()[1]).unwrap_or(false);
    if rows_fast && rows > 1 && cols > 1 {
        Tensor::<2>::empty([cols, rows], device).transpose()
    } else {
        Tensor::<2>::empty([rows, cols], device)
    }
}

fn check_matrix(rows: usize, cols: usize, n: usize, m: usize) -> Result<(), ShapeError> {
    if n == 0 || n >= m {
        return Err(ShapeError::Pattern { n, m });
    }
    if rows == 0 || cols == 0 {
        return Err(ShapeError::Empty { rows, cols });
    }
    if cols % m != 0 {
        return Err(ShapeError::Ragged { cols, m });
    }
    Ok(())
}

/// The largest `m` the kernels unroll: a group lives in registers.
pub const MAX_M: usize = 32;

fn check_m(n: usize, m: usize) -> Result<(), ShapeError> {
    if m > MAX_M { Err(ShapeError::Pattern { n, m }) } else { Ok(()) }
}

fn launch_dims(client: &cubecl::client::Client, units: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(client, units);
    (calculate_cube_count_elemwise(client, units, dim), dim)
}

/// The N:M mask of `scores` (`rows × cols`, one row per output): 1 for the `n` largest of each
/// `m` consecutive columns, 0 elsewhere. Ties go to the lower column; NaN ranks below everything;
/// `-0.0` equals `0.0`. Equal to [`reference::nm_mask`](crate::reference::nm_mask) exactly.
pub fn nm_mask(scores: &Tensor<2>, n: usize, m: usize) -> Result<Tensor<2>, KernelError> {
    let [rows, cols] = scores.dims();
    check_matrix(rows, cols, n, m)?;
    check_m(n, m)?;
    let input = cube_of(scores, "scores")?;
    let out = output_like(scores, &scores.device());
    let mask = cube_of(&out, "mask")?;
    let (count, dim) = launch_dims(&input.client, rows * cols / m);
    nm_mask_kernel::launch(&input.client.clone(), count, dim, input.into_tensor_arg(), mask.into_tensor_arg(), n, m);
    Ok(out)
}

/// Wanda scores `|W_rc|·‖X_c‖` straight to the N:M mask, in one pass over the weight: returns
/// `(mask, pruned weight)`. `act_norms` has one entry per column (input). Equal to
/// [`reference::wanda_nm_mask`](crate::reference::wanda_nm_mask) exactly.
pub fn wanda_nm(weight: &Tensor<2>, act_norms: &Tensor<1>, n: usize, m: usize) -> Result<(Tensor<2>, Tensor<2>), KernelError> {
    let [rows, cols] = weight.dims();
    check_matrix(rows, cols, n, m)?;
    check_m(n, m)?;
    let [len] = act_norms.dims();
    if len != cols {
        return Err(ShapeError::Length { what: "activation norms", expected: cols, got: len }.into());
    }
    let w = cube_of(weight, "weight")?;
    let norms = cube_of(act_norms, "activation norms")?;
    let device = weight.device();
    let (mask_out, pruned_out) = (output_like(weight, &device), output_like(weight, &device));
    let (mask, pruned) = (cube_of(&mask_out, "mask")?, cube_of(&pruned_out, "pruned")?);
    let (count, dim) = launch_dims(&w.client, rows * cols / m);
    wanda_nm_kernel::launch(
        &w.client.clone(),
        count,
        dim,
        w.into_tensor_arg(),
        norms.into_tensor_arg(),
        mask.into_tensor_arg(),
        pruned.into_tensor_arg(),
        n,
        m,
    );
    Ok((mask_out, pruned_out))
}

/// The masked update: `target` with every element whose `mask` entry is 0 set to `+0.0`, in one
/// pass. Works in place when `target`'s buffer is not shared (the usual case right after an
/// optimizer step); otherwise on a copy, so no other tensor changes.
pub fn apply_mask(target: Tensor<2>, mask: &Tensor<2>) -> Result<Tensor<2>, KernelError> {
    let [rows, cols] = target.dims();
    if mask.dims() != [rows, cols] {
        return Err(ShapeError::Length { what: "mask", expected: rows * cols, got: mask.dims().iter().product() }.into());
    }
    if rows == 0 || cols == 0 {
        return Err(ShapeError::Empty { rows, cols }.into());
    }
    let m = cube_of(mask, "mask")?;
    let t = cube_of(&target, "target")?;
    drop(target);
    let t = if t.can_mut() && t.is_nonoverlapping() { t } else { t.copy() };
    let (count, dim) = launch_dims(&t.client, rows * cols);
    apply_mask_kernel::launch(&t.client.clone(), count, dim, m.into_tensor_arg(), t.clone().into_tensor_arg());
    Ok(wrap(t))
}

/// A copy of `x` through a plain elementwise kernel: the benchmark's memory-bound floor.
pub fn copy(x: &Tensor<2>) -> Result<Tensor<2>, KernelError> {
    let input = cube_of(x, "input")?;
    let out = Tensor::<2>::empty(x.dims(), &x.device());
    let output = cube_of(&out, "output")?;
    let (count, dim) = launch_dims(&input.client, x.dims().iter().product());
    copy_kernel::launch(&input.client.clone(), count, dim, input.into_tensor_arg(), output.into_tensor_arg());
    Ok(out)
}

/// Units per cube of the influence reduction (a power of two).
const INFLUENCE_UNITS: usize = 64;

/// Block influence `1 - mean over tokens of cos(x_in, x_out)` for hidden states
/// `tokens × hidden`, as one reduction on the device; only one partial per cube is read back.
/// Equal to [`reference::block_influence`](crate::reference::block_influence) within f32
/// rounding (the tests hold it to 1e-5).
pub fn block_influence(x_in: &Tensor<2>, x_out: &Tensor<2>) -> Result<f64, KernelError> {
    let [tokens, hidden] = x_in.dims();
    if tokens == 0 || hidden == 0 {
        return Err(ShapeError::Empty { rows: tokens, cols: hidden }.into());
    }
    if x_out.dims() != [tokens, hidden] {
        return Err(ShapeError::Length { what: "hidden states", expected: tokens * hidden, got: x_out.dims().iter().product() }.into());
    }
    let a = cube_of(x_in, "x_in")?;
    let b = cube_of(x_out, "x_out")?;
    let cubes = tokens.min(1024);
    let partials = Tensor::<1>::empty([cubes], &x_in.device());
    let p = cube_of(&partials, "partials")?;
    let units = INFLUENCE_UNITS.min(a.client.properties().hardware.max_units_per_cube as usize).next_power_of_two();
    let units = if units > a.client.properties().hardware.max_units_per_cube as usize { units / 2 } else { units };
    cosine_partials_kernel::launch(
        &a.client.clone(),
        CubeCount::Static(cubes as u32, 1, 1),
        CubeDim::new_1d(units as u32),
        a.into_tensor_arg(),
        b.into_tensor_arg(),
        p.into_tensor_arg(),
        units,
    );
    let sum: f64 = partials.into_data().iter::<f32>().map(f64::from).sum();
    Ok(1.0 - sum / tokens as f64)
}

/// A wgpu device for the kernels' tests and benchmark: a real GPU when the machine has one,
/// otherwise any adapter (Mesa's lavapipe on a CPU-only machine), with the adapter's description;
/// `None` where wgpu finds no adapter at all.
pub fn wgpu_device() -> Option<(Device, String)> {
    use burn::tensor::wgpu::wgpu;
    let instance = wgpu::Instance::default();
    let found = futures_executor::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
    let infos: Vec<wgpu::AdapterInfo> = found.iter().map(|a| a.get_info()).collect();
    let rank = |t: wgpu::DeviceType| match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    };
    let best = infos.iter().min_by_key(|i| rank(i.device_type))?;
    let kind = match best.device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu(0),
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu(0),
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu(0),
        _ => DeviceKind::Cpu,
    };
    Some((Device::wgpu(kind), format!("{} [{:?}, {:?}, {}]", best.name, best.device_type, best.backend, best.driver)))
}
