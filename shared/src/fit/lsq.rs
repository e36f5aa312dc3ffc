//! Least squares on raw loss with Levenberg–Marquardt (the `levenberg-marquardt` crate, MINPACK's
//! algorithm), the objective of the P² paper.

use super::{Dataset, LocalFit};
use crate::law::Law;
use levenberg_marquardt::{LeastSquaresProblem, LevenbergMarquardt};
use nalgebra::{DMatrix, DVector, Dyn, Owned};

struct Problem<'a> {
    law: &'a dyn Law,
    data: &'a Dataset,
    p: DVector<f64>,
}

impl LeastSquaresProblem<f64, Dyn, Dyn> for Problem<'_> {
    type ResidualStorage = Owned<f64, Dyn>;
    type JacobianStorage = Owned<f64, Dyn, Dyn>;
    type ParameterStorage = Owned<f64, Dyn>;

    fn set_params(&mut self, x: &DVector<f64>) {
        self.p.copy_from(x);
    }

    fn params(&self) -> DVector<f64> {
        self.p.clone()
    }

    fn residuals(&self) -> Option<DVector<f64>> {
        let p = self.p.as_slice();
        let r = DVector::from_iterator(
            self.data.len(),
            self.data.features.iter().zip(&self.data.loss).map(|(x, y)| self.law.value(p, x) - y),
        );
        r.iter().all(|v| v.is_finite()).then_some(r)
    }

    fn jacobian(&self) -> Option<DMatrix<f64>> {
        jacobian(self.law, self.data, self.p.as_slice())
    }
}

fn jacobian(law: &dyn Law, data: &Dataset, p: &[f64]) -> Option<DMatrix<f64>> {
    let k = p.len();
    let mut values = vec![0.0; data.len()];
    let mut grads = vec![0.0; data.len() * k];
    law.values_grads(p, &data.features, &mut values, &mut grads);
    // `grads` is row-major (one row per checkpoint); nalgebra is column-major.
    let j = DMatrix::from_row_slice(data.len(), k, &grads);
    j.iter().all(|v| v.is_finite()).then_some(j)
}

/// One Levenberg–Marquardt run from `p0`; `None` when the start is not even evaluable.
pub(super) fn minimize(law: &dyn Law, data: &Dataset, p0: &[f64], max_iters: u64) -> Option<LocalFit> {
    let problem = Problem { law, data, p: DVector::from_column_slice(p0) };
    problem.residuals()?;
    // MINPACK counts patience in evaluations per parameter.
    let patience = (max_iters as usize).div_ceil(p0.len() + 1).max(1);
    let (problem, report) = LevenbergMarquardt::new().with_patience(patience).minimize(problem);
    let r = problem.residuals()?;
    Some(LocalFit {
        params: problem.p.as_slice().to_vec(),
        objective: r.norm_squared(),
        iterations: report.number_of_evaluations as u64,
        stop_reason: format!("{:?}", report.termination),
    })
}

/// `s^2 (J^T J)^-1` with `s^2 = SSR / (n - p)`, or `None` if `J^T J` is singular.
pub(super) fn covariance(law: &dyn Law, data: &Dataset, p: &[f64]) -> Option<Vec<Vec<f64>>> {
    let j = jacobian(law, data, p)?;
    let dof = data.len().checked_sub(p.len()).filter(|d| *d > 0)?;
    let ssr: f64 = data.features.iter().zip(&data.loss).map(|(x, y)| (law.value(p, x) - y).powi(2)).sum();
    let inv = (j.transpose() * &j).try_inverse()?;
    let cov = inv * (ssr / dof as f64);
    cov.iter().all(|v| v.is_finite()).then(|| (0..p.len()).map(|r| cov.row(r).iter().copied().collect()).collect())
}
