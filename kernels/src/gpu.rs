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
    use cubecl::std::tensor::layout::linear::{LinearView, LinearViewMut};

    /// Whether input `i` of a group is among its `n` best: fewer than `n` inputs outrank it, an
    /// input outranking another with a larger key, or an equal one at a lower column.
    #[cube]
    fn kept(keys: &Array<u32>, i: usize, #[comptime] n: usize, #[comptime] m: usize) -> bool {
        let mut rank = 0usize;
        #[unroll]
        for j in 0..m {
            if keys[j] > keys[i] || (keys[j] == keys[i] && j < i) {
                rank += 1;
            }
        }
        rank < n
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
            mask[out + i * mask_step] = select(kept(&keys, i, n, m), f32::new(1.0), f32::new(0.0));
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
            let keep = kept(&keys, i, n, m);
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

    /// The masked update where the target and the mask can be read as vectors along their
    /// contiguous axis (the usual case: both in the weight's own layout). `output` aliases
    /// `input` for the in-place update.
    #[cube(launch)]
    pub(super) fn apply_mask_vector_kernel<N: Size>(
        input: LinearView<'_, Vector<f32, N>>,
        mask: LinearView<'_, Vector<f32, N>>,
        mut output: LinearViewMut<'_, Vector<f32, N>>,
    ) {
        if !output.is_in_bounds(ABSOLUTE_POS) {
            terminate!();
        }
        let keep = Vector::<bool, N>::cast_from(mask.read(ABSOLUTE_POS));
        output.write(ABSOLUTE_POS, select_many(keep, input.read(ABSOLUTE_POS), Vector::new(f32::new(0.0))));
    }

    /// The memory-bound floor for the benchmark: one read and one write of every element, in
    /// vectors, as burn's own elementwise kernels do.
    #[cube(launch)]
    pub(super) fn copy_kernel<N: Size>(input: LinearView<'_, Vector<f32, N>>, mut output: LinearViewMut<'_, Vector<f32, N>>) {
        if !output.is_in_bounds(ABSOLUTE_POS) {
            terminate!();
        }
        output.write(ABSOLUTE_POS, input.read(ABSOLUTE_POS));
    }

    /// Block influence as one reduction over contiguous hidden states read as vectors of `N`:
    /// each cube takes `rows` tokens at a time (tokens `rows·CUBE_POS …`, then a stride of
    /// `rows·CUBE_COUNT`); its units stride over a row accumulating `x·y`, `x·x` and `y·y` lane by
    /// lane, one tree in shared memory sums all `3·rows` at once (so a barrier serves `rows`
    /// tokens), and unit 0 adds the cosines to the cube's partial. One partial per cube comes
    /// back; the host adds them in f64.
    #[cube(launch)]
    pub(super) fn cosine_partials_kernel<N: Size>(
        x_in: &[Vector<f32, N>],
        x_out: &[Vector<f32, N>],
        partials: &mut [f32],
        tokens: usize,
        row_vectors: usize,
        #[comptime] units: usize,
        #[comptime] rows: usize,
    ) {
        let u = UNIT_POS as usize;
        let mut sums = Shared::new_slice(3 * rows * units);
        let mut acc = f32::new(0.0);
        let mut first = CUBE_POS as usize * rows;
        let step = CUBE_COUNT as usize * rows;
        while first < tokens {
            #[unroll]
            for r in 0..rows {
                let t = first + r;
                let mut dot = Vector::<f32, N>::new(f32::new(0.0));
                let mut a2 = Vector::<f32, N>::new(f32::new(0.0));
                let mut b2 = Vector::<f32, N>::new(f32::new(0.0));
                if t < tokens {
                    let base = t * row_vectors;
                    let mut h = u;
                    while h < row_vectors {
                        let a = x_in[base + h];
                        let b = x_out[base + h];
                        dot += a * b;
                        a2 += a * a;
                        b2 += b * b;
                        h += units;
                    }
                }
                let mut d = f32::new(0.0);
                let mut x = f32::new(0.0);
                let mut y = f32::new(0.0);
                #[unroll]
                for i in 0..N::value() {
                    d += dot.extract(i);
                    x += a2.extract(i);
                    y += b2.extract(i);
                }
                sums[3 * r * units + u] = d;
                sums[(3 * r + 1) * units + u] = x;
                sums[(3 * r + 2) * units + u] = y;
            }
            sync_cube();
            let mut half = CUBE_DIM as usize / 2;
            while half > 0 {
                if u < half {
                    #[unroll]
                    for k in 0..3 * rows {
                        let v = sums[k * units + u] + sums[k * units + u + half];
                        sums[k * units + u] = v;
                    }
                }
                sync_cube();
                half /= 2;
            }
            if u == 0 {
                #[unroll]
                for r in 0..rows {
                    if first + r < tokens {
                        let d = sums[3 * r * units];
                        let a = sums[(3 * r + 1) * units];
                        let b = sums[(3 * r + 2) * units];
                        let norms = a.sqrt() * b.sqrt();
                        acc += d / norms.max(f32::new(1e-12));
                    }
                }
            }
            sync_cube();
            first += step;
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
    let cube = t.clone().inner().try_into_primitive::<Cube>().map_err(|_| KernelError::Device { what, device: device.clone() })?;
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

/// The largest `m` the kernels take: a group is ranked in registers.
pub const MAX_M: usize = 32;

fn check_matrix(rows: usize, cols: usize, n: usize, m: usize) -> Result<(), ShapeError> {
    crate::reference::check(rows * cols, rows, cols, n, m)?;
    if m > MAX_M { Err(ShapeError::GroupTooWide { m, max: MAX_M }) } else { Ok(()) }
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
    let client = t.client.clone();
    // Vectors along the rows when both are row-major alike (a weight and its mask in burn's own
    // layout); the strided kernel otherwise.
    let sizes = || client.io_optimized_vector_sizes(size_of::<f32>());
    let vector = cubecl::tensor_vector_size_parallel(sizes(), t.meta.shape(), t.meta.strides(), 1)
        .min(cubecl::tensor_vector_size_parallel(sizes(), m.meta.shape(), m.meta.strides(), 1));
    if t.meta.strides() == m.meta.strides() && t.meta.strides()[1] == 1 && vector > 1 {
        let (count, dim) = launch_dims(&client, rows * cols / vector);
        let (input, mask) = (t.clone().into_linear_view(), m.into_linear_view_like(&t));
        apply_mask_vector_kernel::launch(&client, count, dim, vector, input, mask, t.as_linear_view_alias(0));
    } else {
        let (count, dim) = launch_dims(&client, rows * cols);
        apply_mask_kernel::launch(&client, count, dim, m.into_tensor_arg(), t.clone().into_tensor_arg());
    }
    Ok(wrap(t))
}

/// Units per cube of the influence reduction (a power of two), and tokens per barrier round.
const INFLUENCE_UNITS: usize = 64;
const INFLUENCE_ROWS: usize = 8;

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
    // Rows read as vectors: both states made contiguous (a no-op for burn's activations).
    let contiguous = |t: CubeTensor| if t.is_contiguous() { t } else { burn_cubecl::kernel::into_contiguous(t) };
    let a = contiguous(cube_of(x_in, "x_in")?);
    let b = contiguous(cube_of(x_out, "x_out")?);
    let client = a.client.clone();
    let sizes = || client.io_optimized_vector_sizes(size_of::<f32>());
    let vector = cubecl::tensor_vector_size_parallel(sizes(), a.meta.shape(), a.meta.strides(), 1)
        .min(cubecl::tensor_vector_size_parallel(sizes(), b.meta.shape(), b.meta.strides(), 1));
    let cubes = tokens.div_ceil(INFLUENCE_ROWS).min(1024);
    let partials = Tensor::<1>::empty([cubes], &x_in.device());
    let p = cube_of(&partials, "partials")?;
    let max_units = client.properties().hardware.max_units_per_cube as usize;
    let mut units = INFLUENCE_UNITS;
    while units > max_units {
        units /= 2;
    }
    cosine_partials_kernel::launch(
        &client,
        CubeCount::Static(cubes as u32, 1, 1),
        CubeDim::new_1d(units as u32),
        vector,
        a.into_buffer_arg(),
        b.into_buffer_arg(),
        p.into_buffer_arg(),
        tokens,
        hidden / vector,
        units,
        INFLUENCE_ROWS,
    );
    let sum: f64 = partials.into_data().iter::<f32>().map(f64::from).sum();
    Ok(1.0 - sum / tokens as f64)
}

/// What the kernels benchmark measures beside the kernels: a plain copy (the memory-bound
/// floor) and the device's plane support. Not used by the lab.
pub mod bench {
    use super::*;

    /// A copy of `x` through a plain elementwise kernel: the benchmark's memory-bound floor.
    pub fn copy(x: &Tensor<2>) -> Result<Tensor<2>, KernelError> {
        let input = cube_of(x, "input")?;
        let out = Tensor::<2>::empty(x.dims(), &x.device());
        let output = cube_of(&out, "output")?;
        let client = input.client.clone();
        let vector = cubecl::tensor_vector_size_parallel(client.io_optimized_vector_sizes(size_of::<f32>()), output.meta.shape(), output.meta.strides(), 1);
        let (count, dim) = launch_dims(&client, x.dims().iter().product::<usize>() / vector);
        let input = input.into_linear_view_like(&output);
        copy_kernel::launch(&client, count, dim, vector, input, output.into_linear_view());
        Ok(out)
    }

    /// What the device offers the block-influence reduction: plane (subgroup) operations and the
    /// plane sizes, as `(supported, min, max)`.
    pub fn planes(device: &Device) -> Option<(bool, u32, u32)> {
        let probe = cube_of(&Tensor::<1>::zeros([1], device), "probe").ok()?;
        let hardware = &probe.client.properties().hardware;
        Some((probe.client.features().plane.contains(cubecl::features::Plane::Ops), hardware.plane_size_min, hardware.plane_size_max))
    }
}
