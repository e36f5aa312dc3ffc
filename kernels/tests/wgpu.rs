//! Property tests: every kernel against its CPU reference, on random shapes, values and seeds,
//! on the machine's wgpu adapter (Mesa's lavapipe where there is no GPU). Masks must be equal
//! exactly, pruned weights bit for bit, the block influence within 1e-5.

use burn::prelude::*;
use p2law_kernels::adapter;
use p2law_kernels::gpu::{self, KernelError};
use p2law_kernels::{ShapeError, reference};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

/// The wgpu device, or `None` after [`adapter::skip_without_adapter`] (which fails the test where
/// `P2LAW_REQUIRE_WGPU=1`).
#[track_caller]
fn device() -> Option<Device> {
    match adapter::wgpu_device() {
        Some((device, adapter)) => {
            eprintln!("wgpu adapter: {adapter}");
            Some(device)
        }
        None => {
            let caller = std::panic::Location::caller();
            let name = std::thread::current().name().unwrap_or("a kernels test").to_string();
            adapter::skip_without_adapter(&format!("{name} ({}:{})", caller.file(), caller.line()));
            None
        }
    }
}

const PATTERNS: [(usize, usize); 8] = [(2, 4), (1, 4), (3, 4), (1, 2), (2, 8), (4, 8), (5, 16), (7, 32)];

/// Random values with what makes ranking hard: ties (values drawn from a few levels), NaN,
/// infinities, and both zeros.
fn values(rng: &mut Pcg64, len: usize) -> Vec<f32> {
    let levels = rng.random_range(2..12);
    (0..len)
        .map(|_| match rng.random_range(0..100) {
            0 => f32::NAN,
            1 => -0.0,
            2 => 0.0,
            3 => f32::NEG_INFINITY,
            4 => f32::INFINITY,
            5..=40 => rng.random_range(0..levels) as f32 * 0.25 - 1.0,
            _ => rng.random_range(-3.0f32..3.0),
        })
        .collect()
}

/// A `rows × cols` matrix on the device, either row-major or (like burn's weights) stored as
/// its transpose and viewed.
fn matrix(data: &[f32], rows: usize, cols: usize, transposed: bool, device: &Device) -> Tensor<2> {
    if transposed {
        let mut t = vec![0.0; data.len()];
        for r in 0..rows {
            for c in 0..cols {
                t[c * rows + r] = data[r * cols + c];
            }
        }
        Tensor::<2>::from_data(TensorData::new(t, [cols, rows]), device).transpose()
    } else {
        Tensor::<2>::from_data(TensorData::new(data.to_vec(), [rows, cols]), device)
    }
}

fn host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn as_f32(mask: &[bool]) -> Vec<f32> {
    mask.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn nm_mask_equals_the_reference_exactly() {
    let Some(device) = device() else { return };
    let mut rng = Pcg64::seed_from_u64(0x6e6d);
    for case in 0..120 {
        let (n, m) = PATTERNS[case % PATTERNS.len()];
        let rows = rng.random_range(1..48);
        let cols = m * rng.random_range(1..9);
        let transposed = rng.random_bool(0.5);
        let scores = values(&mut rng, rows * cols);
        let expected = as_f32(&reference::nm_mask(&scores, rows, cols, n, m).unwrap());
        let got = host(gpu::nm_mask(&matrix(&scores, rows, cols, transposed, &device), n, m).unwrap());
        assert_eq!(got, expected, "case {case}: {rows}×{cols}, {n}:{m}, transposed {transposed}");
    }
}

#[test]
fn fused_wanda_equals_the_reference_exactly() {
    let Some(device) = device() else { return };
    let mut rng = Pcg64::seed_from_u64(0x77616e);
    for case in 0..120 {
        let (n, m) = PATTERNS[case % PATTERNS.len()];
        let rows = rng.random_range(1..48);
        let cols = m * rng.random_range(1..9);
        let transposed = rng.random_bool(0.5);
        let weight: Vec<f32> = values(&mut rng, rows * cols).into_iter().map(|v| if v.is_finite() { v } else { 0.5 }).collect();
        // Norms from a few levels too, so that scores tie across columns.
        let norms: Vec<f32> = (0..cols).map(|_| rng.random_range(0..4) as f32 * 0.5 + 0.5).collect();
        let mask = reference::wanda_nm_mask(&weight, &norms, rows, cols, n, m).unwrap();
        let mut pruned = weight.clone();
        reference::apply_mask(&mut pruned, &mask).unwrap();
        let w = matrix(&weight, rows, cols, transposed, &device);
        let (got_mask, got_pruned) = gpu::wanda_nm(&w, &Tensor::<1>::from_floats(norms.as_slice(), &device), n, m).unwrap();
        let what = format!("case {case}: {rows}×{cols}, {n}:{m}, transposed {transposed}");
        assert_eq!(host(got_mask), as_f32(&mask), "{what}");
        assert_eq!(bits(&host(got_pruned)), bits(&pruned), "{what}");
        // The input is untouched.
        assert_eq!(bits(&host(w)), bits(&weight), "{what}");
    }
}

#[test]
fn masked_update_equals_the_reference_and_spares_shared_buffers() {
    let Some(device) = device() else { return };
    let mut rng = Pcg64::seed_from_u64(0x6d61736b);
    for case in 0..60 {
        let rows = rng.random_range(1..64);
        let cols = rng.random_range(1..64);
        let transposed = rng.random_bool(0.5);
        let weight = values(&mut rng, rows * cols);
        let keep: Vec<bool> = (0..rows * cols).map(|_| rng.random_bool(0.5)).collect();
        let mut expected = weight.clone();
        reference::apply_mask(&mut expected, &keep).unwrap();
        let mask = matrix(&as_f32(&keep), rows, cols, rng.random_bool(0.5), &device);
        let what = format!("case {case}: {rows}×{cols}, transposed {transposed}");
        // In place: the only handle to the buffer.
        let got = gpu::apply_mask(matrix(&weight, rows, cols, transposed, &device), &mask).unwrap();
        assert_eq!(bits(&host(got)), bits(&expected), "{what}");
        // Shared: the other holder must still see the original values.
        let shared = matrix(&weight, rows, cols, transposed, &device);
        let got = gpu::apply_mask(shared.clone(), &mask).unwrap();
        assert_eq!(bits(&host(got)), bits(&expected), "{what}");
        assert_eq!(bits(&host(shared)), bits(&weight), "{what}: a shared buffer was written");
    }
}

#[test]
fn block_influence_is_within_1e5_of_the_reference() {
    let Some(device) = device() else { return };
    let mut rng = Pcg64::seed_from_u64(0x626c6b);
    let mut worst = 0.0f64;
    for case in 0..60 {
        let tokens = rng.random_range(1..1500);
        let hidden = rng.random_range(1..300);
        let x: Vec<f32> = (0..tokens * hidden).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        // The output is the input plus an update of random size: cosines from about 1 down to -1.
        let scale = rng.random_range(0.0f32..3.0);
        let y: Vec<f32> = x.iter().map(|&v| v + scale * rng.random_range(-2.0f32..2.0)).collect();
        let expected = reference::block_influence(&x, &y, hidden).unwrap();
        let (a, b) = (matrix(&x, tokens, hidden, false, &device), matrix(&y, tokens, hidden, rng.random_bool(0.3), &device));
        let got = gpu::block_influence(&a, &b).unwrap();
        let err = (got - expected).abs();
        worst = worst.max(err);
        assert!(err <= 1e-5, "case {case}: {tokens}×{hidden}: kernel {got}, reference {expected}");
    }
    eprintln!("block influence: largest |kernel - reference| = {worst:.2e}");
}

#[test]
fn shapes_that_do_not_fit_are_errors_not_garbage() {
    let Some(device) = device() else { return };
    let z = |r: usize, c: usize| Tensor::<2>::zeros([r, c], &device);
    let shape = |e: Result<Tensor<2>, KernelError>| match e {
        Err(KernelError::Shape(s)) => s,
        other => panic!("expected a shape error, got {other:?}"),
    };
    assert_eq!(shape(gpu::nm_mask(&z(2, 6), 2, 4)), ShapeError::Ragged { cols: 6, m: 4 });
    assert_eq!(shape(gpu::nm_mask(&z(0, 4), 2, 4)), ShapeError::Empty { rows: 0, cols: 4 });
    assert_eq!(shape(gpu::nm_mask(&z(1, 4), 4, 4)), ShapeError::Pattern { n: 4, m: 4 });
    assert_eq!(shape(gpu::nm_mask(&z(1, 64), 2, 64)), ShapeError::GroupTooWide { m: 64, max: 32 });
    let norms = Tensor::<1>::zeros([3], &device);
    assert_eq!(
        gpu::wanda_nm(&z(2, 4), &norms, 2, 4).map(|_| ()),
        Err(KernelError::Shape(ShapeError::Length { what: "activation norms", expected: 4, got: 3 }))
    );
    assert!(matches!(gpu::apply_mask(z(2, 4), &z(4, 2)), Err(KernelError::Shape(ShapeError::Length { .. }))));
    assert!(matches!(gpu::block_influence(&z(0, 8), &z(0, 8)), Err(KernelError::Shape(ShapeError::Empty { .. }))));
    assert!(matches!(gpu::block_influence(&z(3, 8), &z(3, 7)), Err(KernelError::Shape(ShapeError::Length { .. }))));
    // A CPU tensor is not silently copied over: the caller chooses the reference instead.
    let cpu = Tensor::<2>::zeros([2, 4], &Device::flex());
    assert!(matches!(gpu::nm_mask(&cpu, 2, 4), Err(KernelError::Device { .. })));
    assert!(!gpu::is_wgpu(&Device::flex()) && gpu::is_wgpu(&device));
}
