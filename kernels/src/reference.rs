//! Plain CPU references.

use crate::ShapeError;

/// Checks a `rows × cols` matrix of `len` values for an `n:m` pattern.
pub(crate) fn check(len: usize, rows: usize, cols: usize, n: usize, m: usize) -> Result<(), ShapeError> {
    if n == 0 || n >= m {
        return Err(ShapeError::Pattern { n, m });
    }
    if rows == 0 || cols == 0 {
        return Err(ShapeError::Empty { rows, cols });
    }
    if cols % m != 0 {
        return Err(ShapeError::Ragged { cols, m });
    }
    if len != rows * cols {
        return Err(ShapeError::Length { what: "matrix", expected: rows * cols, got: len });
    }
    Ok(())
}

/// The N:M mask of a score matrix: in each group of `m` consecutive columns of each row, the `n`
/// largest scores are kept. Scores compare as numbers (`-0.0` equals `0.0`); NaN ranks below
/// everything, −∞ included; ties go to the lower column.
pub fn nm_mask(scores: &[f32], rows: usize, cols: usize, n: usize, m: usize) -> Result<Vec<bool>, ShapeError> {
    check(scores.len(), rows, cols, n, m)?;
    let mut mask = vec![false; scores.len()];
    let mut order: Vec<usize> = Vec::with_capacity(m);
    for (g, group) in scores.chunks_exact(m).enumerate() {
        order.clear();
        order.extend(0..m);
        // Stable sort, descending: equal scores keep column order.
        order.sort_by(|&a, &b| rank(group[b], group[a]));
        for &i in &order[..n] {
            mask[g * m + i] = true;
        }
    }
    Ok(mask)
}

/// How score `a` compares with `b` for keeping: as numbers, with every NaN below everything.
fn rank(a: f32, b: f32) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Wanda scores `|W_ij| · ‖X_j‖` straight to the N:M mask; `act_norms` has one entry per column.
pub fn wanda_nm_mask(weight: &[f32], act_norms: &[f32], rows: usize, cols: usize, n: usize, m: usize) -> Result<Vec<bool>, ShapeError> {
    check(weight.len(), rows, cols, n, m)?;
    if act_norms.len() != cols {
        return Err(ShapeError::Length { what: "activation norms", expected: cols, got: act_norms.len() });
    }
    let scores: Vec<f32> = weight.iter().enumerate().map(|(k, w)| w.abs() * act_norms[k % cols]).collect();
    nm_mask(&scores, rows, cols, n, m)
}

/// Zeroes the weights the mask drops, in place.
pub fn apply_mask(weight: &mut [f32], mask: &[bool]) -> Result<(), ShapeError> {
    if weight.len() != mask.len() {
        return Err(ShapeError::Length { what: "mask", expected: weight.len(), got: mask.len() });
    }
    weight.iter_mut().zip(mask).filter(|(_, keep)| !**keep).for_each(|(w, _)| *w = 0.0);
    Ok(())
}

/// Block influence of one layer: `1 - mean over tokens of cos(x_in, x_out)`, for hidden states
/// `tokens × hidden` in row-major order.
pub fn block_influence(x_in: &[f32], x_out: &[f32], hidden: usize) -> Result<f64, ShapeError> {
    if hidden == 0 || x_in.is_empty() {
        return Err(ShapeError::Empty { rows: x_in.len() / hidden.max(1), cols: hidden });
    }
    if x_in.len() != x_out.len() || x_in.len() % hidden != 0 {
        return Err(ShapeError::Length { what: "hidden states", expected: x_in.len(), got: x_out.len() });
    }
    let tokens = x_in.len() / hidden;
    let mut sum = 0.0;
    for (a, b) in x_in.chunks_exact(hidden).zip(x_out.chunks_exact(hidden)) {
        let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
        for (&x, &y) in a.iter().zip(b) {
            dot += f64::from(x) * f64::from(y);
            na += f64::from(x) * f64::from(x);
            nb += f64::from(y) * f64::from(y);
        }
        sum += dot / (na.sqrt() * nb.sqrt()).max(1e-12);
    }
    Ok(1.0 - sum / tokens as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_of_four_by_hand() {
        let scores = [
            1.0, 4.0, 3.0, 2.0, // plain
            5.0, 5.0, 5.0, 5.0, // ties: the lower columns
            f32::NAN, 1.0, 0.0, -1.0, // NaN ranks lowest
            -0.0, 0.0, -1.0, f32::NAN, // -0 ties 0
            f32::NAN, f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY, // NaN below -inf
        ];
        let mask = nm_mask(&scores, 1, 20, 2, 4).unwrap();
        let kept: Vec<usize> = mask.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i).collect();
        assert_eq!(kept, vec![1, 2, 4, 5, 9, 10, 12, 13, 17, 19]);
    }

    #[test]
    fn wanda_weighs_by_activation_norm() {
        // Row [1, -2, 3, 0.5] with norms [10, 1, 1, 10]: scores [10, 2, 3, 5].
        let mask = wanda_nm_mask(&[1.0, -2.0, 3.0, 0.5], &[10.0, 1.0, 1.0, 10.0], 1, 4, 2, 4).unwrap();
        assert_eq!(mask, vec![true, false, false, true]);
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        assert_eq!(nm_mask(&[0.0; 6], 1, 6, 2, 4), Err(ShapeError::Ragged { cols: 6, m: 4 }));
        assert_eq!(nm_mask(&[], 0, 4, 2, 4), Err(ShapeError::Empty { rows: 0, cols: 4 }));
        assert_eq!(nm_mask(&[0.0; 4], 1, 4, 4, 4), Err(ShapeError::Pattern { n: 4, m: 4 }));
        assert!(wanda_nm_mask(&[0.0; 4], &[1.0; 3], 1, 4, 2, 4).is_err());
    }

    #[test]
    fn influence_of_identity_is_zero_and_of_negation_two() {
        let x = [1.0, 2.0, -3.0, 0.5, 0.0, 1.0];
        assert!(block_influence(&x, &x, 3).unwrap().abs() < 1e-12);
        let neg: Vec<f32> = x.iter().map(|v| -v).collect();
        assert!((block_influence(&x, &neg, 3).unwrap() - 2.0).abs() < 1e-12);
    }
}
