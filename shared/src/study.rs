//! The P² study: p2law's own data set of pruning-and-healing curves, what it is made of and how
//! it is read back.
//!
//! - [`STUDY_FAMILY`]: five byte-level decoders of 8 layers and 4 key/value groups, 25 K to 837 K
//!   parameters (33.7×), each pretrained on as much text as [`EPOCH_CAP`] allows, with the gain
//!   of the last doubling recorded against [`CONVERGED_WITHIN`] and the unpruned control's drift
//!   as the check that healing is not further pretraining;
//! - [`Grid`]: per parent an unpruned control, depth and width pruning at four rates, and N:M
//!   sparsity at three patterns, each healed for [`POST_TRAIN_TOKENS`] with held-out loss at
//!   D = 0 and [`CHECKPOINTS`] log-spaced checkpoints; a second seed for the two smallest parents;
//! - [`Manifest`]: everything needed to re-make a curve (shapes, recipes, corpus hash, seeds,
//!   device, commit) and what each unit cost;
//! - [`StudyData::parse`]: the committed `curves.csv` and `manifest.json`, checked, with every
//!   error naming the file, line and field.

pub mod analysis;

use crate::calibrate::Parent;
use crate::data::{Curve, InputError, Location};
use crate::logs::{LogOptions, canonical};
use crate::models::DecoderShape;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A study parent: byte-level, tied embeddings, 8 layers, 4 key/value groups.
const fn parent(name: &'static str, h: u64, i: u64, heads: u64, hd: u64, peak_lr: f64) -> Parent {
    Parent { name, shape: crate::models::shape(256, h, i, 8, heads, 4, hd, true, false), pretrain_tokens: 0, batch: 16, seq_len: 128, peak_lr }
}

/// The study family, smallest first. Every width is a multiple of 8 (N:M up to 1:8 fits) and
/// every head dimension one the fused attention kernels take. `pretrain_tokens` is set by the
/// epoch cap of the corpus, not here.
pub const STUDY_FAMILY: [Parent; 5] = [
    parent("study-h16", 16, 32, 4, 4, 3e-3),
    parent("study-h32", 32, 96, 4, 8, 3e-3),
    parent("study-h48", 48, 128, 4, 12, 2e-3),
    parent("study-h64", 64, 176, 8, 8, 2e-3),
    parent("study-h96", 96, 256, 8, 12, 1.5e-3),
];

/// Post-training tokens of every curve: 1024 steps of 16 × 128 tokens.
pub const POST_TRAIN_TOKENS: u64 = 1 << 21;
/// Log-spaced held-out checkpoints after D = 0.
pub const CHECKPOINTS: usize = 16;
/// Held-out windows per evaluation (128 tokens each).
pub const EVAL_WINDOWS: usize = 128;
/// A parent is converged when doubling its pretraining tokens lowers the held-out loss by less
/// than this fraction.
pub const CONVERGED_WITHIN: f64 = 0.01;
/// No parent sees its training text more often than this (repeated data loses its value beyond
/// about 4 epochs: Muennighoff et al. 2023, arXiv 2305.16264).
pub const EPOCH_CAP: f64 = 4.0;

/// A study parent by name.
pub fn study_parent(name: &str) -> Option<Parent> {
    STUDY_FAMILY.iter().find(|p| p.name == name).copied()
}

/// One curve of the study.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StudyUnit {
    pub parent: String,
    /// `control`, `depth`, `width` or `sparse`.
    pub method: String,
    /// The rate (`0.25`), the pattern (`2:4`), or `0` for the control.
    pub setting: String,
    pub seed: u64,
}

impl StudyUnit {
    /// The run name in `curves.csv`: `parent/method/setting/s<seed>`.
    pub fn run(&self) -> String {
        format!("{}/{}/{}/s{}", self.parent, self.method, self.setting, self.seed)
    }

    /// Parses [`run`](Self::run).
    pub fn from_run(run: &str) -> Option<Self> {
        let mut it = run.split('/');
        let (parent, method, setting, seed) = (it.next()?, it.next()?, it.next()?, it.next()?);
        let seed = seed.strip_prefix('s')?.parse().ok()?;
        it.next().is_none().then(|| StudyUnit { parent: parent.into(), method: method.into(), setting: setting.into(), seed })
    }

    /// What the unit prunes: `None` for the control, the method and setting otherwise.
    pub fn pruning(&self) -> Result<Option<crate::calibrate::Pruning>, crate::calibrate::SettingError> {
        if self.method == "control" {
            return Ok(None);
        }
        crate::calibrate::Pruning::parse(self.method.parse()?, &self.setting).map(Some)
    }

    /// The value of the `method` column: `depth`, `width`, the N:M pattern, or `control`.
    pub fn method_label(&self) -> String {
        if self.method == "sparse" { self.setting.clone() } else { self.method.clone() }
    }
}

/// The grid: which parents, methods, settings and seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grid {
    pub parents: Vec<String>,
    pub depth_rates: Vec<f64>,
    pub width_rates: Vec<f64>,
    pub patterns: Vec<String>,
    /// Seeds of every parent; the first `extra_seed_parents` parents also get seed 1.
    pub extra_seed_parents: usize,
    pub post_train_tokens: u64,
}

impl Grid {
    /// The full grid of the issue: every parent, rates 0.15, 0.25, 0.35, 0.5, patterns 1:4, 2:4,
    /// 3:4, a second seed for the two smallest parents.
    pub fn full() -> Self {
        Grid {
            parents: STUDY_FAMILY.iter().map(|p| p.name.to_string()).collect(),
            depth_rates: vec![0.15, 0.25, 0.35, 0.5],
            width_rates: vec![0.15, 0.25, 0.35, 0.5],
            patterns: vec!["1:4".into(), "2:4".into(), "3:4".into()],
            extra_seed_parents: 2,
            post_train_tokens: POST_TRAIN_TOKENS,
        }
    }

    /// Smaller grids, largest first, for `--budget-hours`: the full grid; without the second
    /// seeds; rates 0.25 and 0.5 only; then without the largest parent, and so on down to the
    /// three smallest parents (the fewest that still span the family's range of sizes in part).
    pub fn levels() -> Vec<Self> {
        let full = Grid::full();
        let mut out = vec![full.clone()];
        let one_seed = Grid { extra_seed_parents: 0, ..full.clone() };
        out.push(one_seed.clone());
        let mut two_rates = Grid { depth_rates: vec![0.25, 0.5], width_rates: vec![0.25, 0.5], patterns: vec!["2:4".into(), "1:4".into()], ..one_seed };
        out.push(two_rates.clone());
        while two_rates.parents.len() > 3 {
            two_rates.parents.pop();
            out.push(two_rates.clone());
        }
        out
    }

    /// Every unit: the first seed of every parent, smallest first (controls first, then depth,
    /// width, sparse), then the second seeds. A run stopped part-way has whole parents, and the
    /// span of sizes comes before the noise floor.
    pub fn units(&self) -> Vec<StudyUnit> {
        let mut out = Vec::new();
        for seed in [0u64, 1] {
            for (i, p) in self.parents.iter().enumerate() {
                if seed > 0 && i >= self.extra_seed_parents {
                    continue;
                }
                let u = |method: &str, setting: String| StudyUnit { parent: p.clone(), method: method.into(), setting, seed };
                out.push(u("control", "0".into()));
                out.extend(self.depth_rates.iter().map(|r| u("depth", format!("{r}"))));
                out.extend(self.width_rates.iter().map(|r| u("width", format!("{r}"))));
                out.extend(self.patterns.iter().map(|s| u("sparse", s.clone())));
            }
        }
        out
    }
}

/// The pretraining recipe of a parent, as run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub tokens: u64,
    pub steps: usize,
    pub batch: usize,
    pub seq_len: usize,
    pub peak_lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub seed: u64,
}

impl Recipe {
    /// The learning-rate schedule in tokens: the lab's linear warm-up, then cosine decay from
    /// `peak_lr` to `min_lr` at the last step.
    pub fn schedule(&self) -> crate::forecast::schedule::Shape {
        let tps = self.tokens as f64 / self.steps.max(1) as f64;
        crate::forecast::schedule::Shape {
            decay: crate::forecast::schedule::Decay::Cosine,
            total: self.steps as f64 * tps,
            floor: if self.peak_lr > 0.0 { self.min_lr / self.peak_lr } else { 0.0 },
            warmup: self.warmup_steps as f64 * tps,
        }
    }
}

/// How converged a parent is: its held-out loss pretrained on half its tokens (a run of its own,
/// with its own schedule) and on all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Convergence {
    pub criterion: String,
    pub half_tokens: u64,
    pub half_loss: f64,
    pub tokens: u64,
    pub loss: f64,
    /// `(half_loss - loss) / half_loss`.
    pub improvement: f64,
    pub converged: bool,
    /// Passes over the training text.
    pub epochs: f64,
}

/// One parent of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentInfo {
    pub name: String,
    pub shape: DecoderShape,
    pub n0: u64,
    pub l0: f64,
    pub seed: u64,
    pub recipe: Recipe,
    pub convergence: Convergence,
    /// Every pretraining run of the doubling chain: `(tokens, held-out loss)`.
    pub chain: Vec<(u64, f64)>,
    /// Wall and CPU seconds of the chain's pretraining, as far as it was timed.
    pub wall_s: f64,
    pub cpu_s: f64,
    /// Budgets of the chain read from a cache made before pretraining times were kept.
    #[serde(default)]
    pub untimed: Vec<u64>,
}

/// One finished unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitInfo {
    pub run: String,
    pub unit: StudyUnit,
    /// Achieved rate of all parameters (0 for the control).
    pub rho: f64,
    pub parameters_removed: u64,
    pub detail: String,
    pub post_train: Recipe,
    pub wall_s: f64,
    pub cpu_s: f64,
    /// The checkout the unit was made at (`git describe --dirty`); the manifest's own commit is
    /// the first run's.
    #[serde(default)]
    pub p2law_commit: String,
}

/// The corpus, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusInfo {
    pub source: String,
    /// SHA-256 of the token stream (train, then held-out).
    pub sha256: String,
    pub documents: usize,
    pub train_tokens: usize,
    pub held_out_tokens: usize,
    pub split: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub p2law_version: String,
    pub p2law_commit: String,
    pub device: String,
    pub corpus: CorpusInfo,
    pub grid: Grid,
    pub eval_windows: usize,
    pub checkpoints: usize,
    pub parents: Vec<ParentInfo>,
    pub units: Vec<UnitInfo>,
    /// Wall and CPU seconds of every `study run` call, summed.
    pub wall_s: f64,
    pub cpu_s: f64,
}

impl Manifest {
    pub fn parent(&self, name: &str) -> Option<&ParentInfo> {
        self.parents.iter().find(|p| p.name == name)
    }
}

/// The study's data, checked.
#[derive(Debug, Clone)]
pub struct StudyData {
    pub manifest: Manifest,
    /// Every curve, in the manifest's unit order.
    pub curves: Vec<Curve>,
}

impl StudyData {
    /// Reads `curves.csv` (text of `csv_file`) and `manifest.json` (text of `manifest_file`) and
    /// checks that they describe each other: every curve is a unit of the manifest with its
    /// parent's N0 and L0, a control has rho 0, every curve starts at D = 0.
    pub fn parse(csv_file: &str, csv: &str, manifest_file: &str, manifest: &str) -> Result<Self, InputError> {
        let manifest: Manifest = serde_json::from_str(manifest).map_err(|e| {
            InputError::new(manifest_file, Location::Line(e.line() as u64), None, format!("not a study manifest: {e}"))
        })?;
        let log = canonical::parse_csv(csv_file, csv, &LogOptions::default())?;
        let lines = first_lines(csv);
        let mut units: BTreeMap<String, &UnitInfo> = manifest.units.iter().map(|u| (u.run.clone(), u)).collect();
        let mut curves = Vec::new();
        for c in log.curves {
            let at = |field: &str, msg: String| InputError::new(csv_file, Location::Line(lines.get(&c.run).copied().unwrap_or(0)), Some(field), msg);
            let unit = units.remove(&c.run).ok_or_else(|| at("run", format!("`{}` is not a unit of {manifest_file}", c.run)))?;
            let parent = manifest.parent(&unit.unit.parent).ok_or_else(|| at("run", format!("parent `{}` is not in {manifest_file}", unit.unit.parent)))?;
            let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0));
            if !close(c.n0, parent.n0 as f64) {
                return Err(at("n0", format!("{:?}; the manifest's parent has N0 = {}", c.n0, parent.n0)));
            }
            if !close(c.l0, parent.l0) {
                return Err(at("l0", format!("{:?}; the manifest's parent has L0 = {}", c.l0, parent.l0)));
            }
            if !close(c.rho, unit.rho) {
                return Err(at("rho", format!("{:?}; the manifest records {}", c.rho, unit.rho)));
            }
            if c.method.as_deref() != Some(unit.unit.method_label().as_str()) {
                return Err(at("method", format!("{:?}; the manifest's unit is `{}`", c.method, unit.unit.method_label())));
            }
            if c.points.first().is_none_or(|p| p.tokens != 0.0) {
                return Err(at("tokens", "a study curve starts at D = 0".into()));
            }
            curves.push(c);
        }
        if let Some(missing) = units.keys().next() {
            return Err(InputError::new(csv_file, Location::File, Some("run"), format!("no rows for unit `{missing}` of {manifest_file}")));
        }
        Ok(StudyData { manifest, curves })
    }

    /// The curves of pruned models (controls left out) whose method label is in `methods`
    /// (all pruned curves for an empty list).
    pub fn pruned(&self, methods: &[&str]) -> Vec<Curve> {
        self.curves.iter().filter(|c| c.rho.is_some_and(|r| r > 0.0) && (methods.is_empty() || c.method.as_deref().is_some_and(|m| methods.contains(&m)))).cloned().collect()
    }

    /// The controls (unpruned parents post-trained on the same tokens).
    pub fn controls(&self) -> Vec<&Curve> {
        self.curves.iter().filter(|c| c.method.as_deref() == Some("control")).collect()
    }
}

/// The line of each run's first row in a canonical CSV (for errors about a whole curve).
fn first_lines(csv: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (i, line) in csv.lines().enumerate().skip(1) {
        if let Some(run) = line.split(',').next() {
            out.entry(run.to_string()).or_insert(i as u64 + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_meets_the_studys_requirements() {
        let n: Vec<u64> = STUDY_FAMILY.iter().map(|p| p.shape.parameters()).collect();
        assert!(n.windows(2).all(|w| w[0] < w[1]), "{n:?}");
        // By hand, the smallest: 8 × (attention 4·16·16 + MLP 3·16·32 + norms 2·16) + embedding 256·16 + norm 16.
        assert_eq!(n[0], 8 * (1024 + 1536 + 32) + 4096 + 16);
        assert_eq!(n[0], 24_848);
        assert_eq!(n[4], 8 * (96 * 96 * 2 + 2 * 96 * 48 + 3 * 96 * 256 + 2 * 96) + 256 * 96 + 96);
        assert!(n[4] as f64 / n[0] as f64 >= 30.0, "span {}", n[4] as f64 / n[0] as f64);
        for p in STUDY_FAMILY {
            assert_eq!(p.shape.num_hidden_layers, 8, "{}", p.name);
            assert_eq!(p.shape.num_key_value_heads, 4, "{}", p.name);
            assert_eq!(p.shape.hidden_size % 8, 0);
            assert_eq!(p.shape.intermediate_size % 8, 0);
            assert_eq!(p.shape.num_attention_heads * p.shape.head_dim, p.shape.hidden_size);
        }
    }

    #[test]
    fn the_full_grid_and_its_names() {
        let g = Grid::full();
        let units = g.units();
        // 5 parents × (control + 4 depth + 4 width + 3 N:M), the two smallest twice.
        assert_eq!(units.len(), 7 * 12);
        assert_eq!(units.iter().filter(|u| u.method == "control").count(), 7);
        let u = &units[1];
        assert_eq!(u.run(), "study-h16/depth/0.15/s0");
        assert_eq!(StudyUnit::from_run(&u.run()).as_ref(), Some(u));
        assert_eq!(StudyUnit::from_run("a/b/c"), None);
        let levels = Grid::levels();
        assert!(levels.windows(2).all(|w| w[0].units().len() > w[1].units().len()));
        assert_eq!(levels.last().map(|g| g.parents.len()), Some(3));
    }
}
