//! The training loop (`train --config C.toml --out DIR [--resume]`).
//!
//! - Samples are made on the fly ([`crate::data::train_samples`]) by a prefetch thread over a
//!   bounded channel; sample `n` depends only on `(seed, n)`, so a resumed run sees the batches
//!   an uninterrupted run would.
//! - Full training (every base weight) or LoRA fine-tuning (base frozen; the adapters and the
//!   heads — `mask_head.*` and `decoder.*` — are trained).
//! - AdamW with decoupled weight decay, written here (a few lines of tensor ops) so that its
//!   moments can be checkpointed and restored exactly; warm-up + cosine schedule; gradient
//!   accumulation; global-norm clipping.
//! - Losses: 2D mask BCE + Dice (the 2D head gets the click disc, as at inference); 3D
//!   occupancy BCE from the SDF sign and truncated SDF L1 (the 3D stage gets the true 2D mask).
//!   Curriculum: before `curriculum_step` the 2D terms are weighted up and the 3D terms are
//!   compared on a 2×-pooled (coarse) grid; after it, on the dense grid.
//! - A NaN/Inf loss term or gradient stops the run with an error naming the step and the term.
//! - `DIR/state.safetensors` (trainable tensors, AdamW moments; step, seed and config in the
//!   metadata), `DIR/model.safetensors` (base weights incl. trained heads) and, with LoRA,
//!   `DIR/adapter.safetensors` (the adapters and the trained heads, naming the base checkpoint
//!   the run started from: the file alone turns that base into the fine-tuned model), all
//!   written atomically; `DIR/log.jsonl` one line per step and per validation.
//! - Reproducibility: the initialisation is seeded with `train.seed` and every step reseeds
//!   libtorch's generator, which is global to the process: two runs in one process must not
//!   interleave (the tests serialise them).

use crate::data::click::{ClickError, ClickParams};
use crate::data::phantom::{PhantomSpec, generate};
use crate::data::preprocess::find_pairs;
use crate::data::train_samples::{AugmentParams, Similarity, TrainCase, TrainSample, make_sample, random_sample, sample_seed, stack2, stack3};
use crate::geometry::ViewPlane;
use crate::model::checkpoint::{self, StFile};
use crate::model::convert::tensor_from;
use crate::model::{Config, Model, ModelError, NetInputs};
use crate::volume::Modality;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
    #[error("{field}: {problem}")]
    Config { field: String, problem: String },
    #[error("step {step}: loss term '{term}' is {value} (not finite); training stopped")]
    NonFinite { step: u64, term: String, value: f64 },
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{0}")]
    Data(#[from] crate::data::preprocess::DataError),
    #[error("{0}")]
    Volume(#[from] crate::volume::VolumeError),
    #[error("the sample thread stopped: {0}")]
    Loader(String),
    #[error("no training sample could be made: {0}")]
    Sample(crate::data::click::ClickError),
}

fn ferr(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::File { path: path.to_path_buf(), problem: problem.into() }
}

// ---------------------------------------------------------------------------------------------
// Configuration (the file format is sam3d_core::train_config's)

pub use crate::train_config::{DataSection, DebugSection, Holdout, LoraSection, LossSection, ModelSection, PhantomGen, PREPARE_PROGRESS, STOP_REQUEST_FILE, TrainConfig, TrainConfigError, TrainSection};

impl From<TrainConfigError> for TrainError {
    fn from(e: TrainConfigError) -> Self {
        TrainError::Config { field: e.field, problem: e.problem }
    }
}

/// The network's config a training config names (its file, its preset, or `tiny`).
fn model_config(cfg: &TrainConfig) -> Result<Config, TrainError> {
    let cfg = match (&cfg.model.config, &cfg.model.preset) {
        (Some(p), _) => Config::load(p),
        (None, Some(n)) => Config::preset(n),
        (None, None) => Config::preset("tiny"),
    };
    cfg.map_err(|e| TrainError::Config { field: format!("model ({})", e.field), problem: e.problem })
}


// ---------------------------------------------------------------------------------------------
// Data

/// Loads every case of the data directories (writing the phantoms first when configured and
/// the first directory is missing). A directory holding `index.json` is a preprocess cache: its
/// cases come with their isotropic resampling and per-class SDFs, and its sample index gives
/// the clicks. Returns (training cases, validation cases).
pub fn load_cases(cfg: &TrainConfig) -> Result<(Vec<TrainCase>, Vec<TrainCase>), TrainError> {
    if let (Some(g), Some(dir)) = (&cfg.data.phantoms, cfg.data.dirs.first())
        && !dir.join(format!("case_{:03}_labels.nii.gz", g.cases.saturating_sub(1))).exists()
    {
        let modality: Modality = g.modality.parse().map_err(|e: String| TrainError::Config { field: "data.phantoms.modality".into(), problem: e })?;
        let spec = match g.size.as_str() {
            "small" => PhantomSpec::small(modality),
            "medium" => PhantomSpec::medium(modality),
            other => return Err(TrainError::Config { field: "data.phantoms.size".into(), problem: format!("'{other}': expected small or medium") }),
        };
        write_phantoms_spec(dir, g.cases, g.seed, &spec)?;
    }
    let mut all: Vec<(TrainCase, usize)> = Vec::new();
    for (d, dir) in cfg.data.dirs.iter().enumerate() {
        if dir.join("index.json").is_file() {
            for case in load_cache_dir(dir)? {
                all.push((case, d));
            }
            continue;
        }
        for pair in find_pairs(dir)? {
            let case = pair.load()?;
            all.push((TrainCase::new(&pair.name, Arc::new(case.volume), case.labels, None, &cfg.data.classes), d));
        }
    }
    for (case, _) in all.iter_mut() {
        let held: Vec<u16> = cfg.data.holdout.iter().filter(|h| case.name.contains(&h.case)).flat_map(|h| h.classes.iter().copied()).collect();
        let only = &cfg.data.classes;
        case.retain_classes(|l, n| !held.contains(&l) && (only.is_empty() || only.contains(&l)) && n >= cfg.data.min_voxels);
    }
    all.retain(|(c, _)| !c.classes.is_empty());
    all.iter_mut().for_each(|(c, d)| c.class_weight_power = cfg.data.dir_class_weight_power.get(*d).copied().unwrap_or(cfg.data.class_weight_power));
    // Validation: the last `val_cases` cases of the first directory (when it has more).
    let first: Vec<usize> = (0..all.len()).filter(|&i| all[i].1 == 0).collect();
    let n_val = if first.len() > cfg.data.val_cases { cfg.data.val_cases } else { 0 };
    let val_idx: Vec<usize> = first[first.len() - n_val..].to_vec();
    let mut val = Vec::new();
    for &i in val_idx.iter().rev() {
        val.push(all.remove(i).0);
    }
    val.reverse();
    if cfg.data.max_cases > 0 {
        all.truncate(cfg.data.max_cases);
    }
    if all.is_empty() {
        return Err(TrainError::Config { field: "data.dirs".into(), problem: "no training case with a labelled class".into() });
    }
    if !cfg.data.dir_weights.is_empty() {
        let mut per_dir = vec![0usize; cfg.data.dirs.len()];
        all.iter().for_each(|(_, d)| per_dir[*d] += 1);
        for (case, d) in all.iter_mut() {
            case.weight = cfg.data.dir_weights[*d] / per_dir[*d].max(1) as f64;
        }
    }
    Ok((all.into_iter().map(|(c, _)| c).collect(), val))
}

/// The cases of a preprocess cache (`index.json` + one `.safetensors` per case), with the
/// index's clicks (the deepest point of the class on each listed slice).
pub fn load_cache_dir(dir: &Path) -> Result<Vec<TrainCase>, TrainError> {
    use crate::data::preprocess::{CacheIndex, deepest_on_slice, plane_of_axis, read_case};
    let ipath = dir.join("index.json");
    let text = std::fs::read_to_string(&ipath).map_err(|e| ferr(&ipath, format!("cannot read: {e}")))?;
    let index: CacheIndex = serde_json::from_str(&text).map_err(|e| ferr(&ipath, format!("not a preprocess index: {e}")))?;
    let mut out = Vec::new();
    for (name, file) in &index.cases {
        let c = read_case(&dir.join(file))?;
        // The clicks of the index (each class's mask made once, not once per sample).
        let mut listed = vec![Vec::new(); c.classes.len()];
        for (k, &class) in c.classes.iter().enumerate() {
            let mut mask = None;
            for s in index.samples.iter().filter(|s| &s.case == name && s.class == class) {
                let mask = mask.get_or_insert_with(|| c.labels.data.mapv(|v| v == class));
                if let Some(click) = deepest_on_slice(mask, s.axis, s.slice_idx, &c.labels) {
                    listed[k].push((click, plane_of_axis(&c.labels, s.axis)));
                }
            }
        }
        let modality = c.volume.guess_modality();
        let mut case = TrainCase::with_sdf(name, Arc::new(c.volume), c.labels, modality, c.classes, c.sdf);
        case.listed_clicks = listed;
        out.push(case);
    }
    Ok(out)
}

/// Writes `case_NNN.nii.gz` + `case_NNN_labels.nii.gz` small phantoms.
pub fn write_phantoms(dir: &Path, cases: usize, seed: u64, modality: Modality) -> Result<(), TrainError> {
    write_phantoms_spec(dir, cases, seed, &PhantomSpec::small(modality))
}

/// Writes `case_NNN.nii.gz` + `case_NNN_labels.nii.gz` phantoms of `spec`, and their names (`labels.tsv`).
pub fn write_phantoms_spec(dir: &Path, cases: usize, seed: u64, spec: &PhantomSpec) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, format!("cannot create directory: {e}")))?;
    for c in 0..cases {
        let case = generate(spec, seed.wrapping_add(c as u64));
        case.volume.save(&dir.join(format!("case_{c:03}.nii.gz")), Some(crate::volume::DataType::Float32))?;
        case.labels.save(&dir.join(format!("case_{c:03}_labels.nii.gz")))?;
    }
    crate::volume::atomic_write(&dir.join("labels.tsv"), |f| std::io::Write::write_all(f, crate::data::phantom::labels_tsv().as_bytes()))?;
    Ok(())
}

/// A micro-batch as arrays.
pub struct Batch {
    pub samples: Vec<TrainSample>,
    /// Train this micro-batch without the `volume_context` cube.
    pub drop_context: bool,
}

/// A sample for `seed`, trying up to eight nearby seeds (a draw can miss its structure); the
/// last draw's error when all fail.
fn build_sample(cases: &[TrainCase], seed: u64, aug: &AugmentParams, p: &ClickParams) -> Result<TrainSample, ClickError> {
    let mut attempt = 0u64;
    loop {
        match random_sample(cases, seed.wrapping_add(attempt.wrapping_mul(0x9E37)), aug, p) {
            Err(_) if attempt < 7 => attempt += 1,
            other => return other,
        }
    }
}

/// Micro-batch `mb` of a run (deterministic).
pub fn micro_batch(cases: &[TrainCase], cfg: &TrainConfig, p: &ClickParams, mb: u64) -> Result<Batch, ClickError> {
    use rayon::prelude::*;
    let b = cfg.train.batch as u64;
    let aug = if cfg.train.fixed_samples > 0 { AugmentParams::none() } else { cfg.augment };
    let samples = (0..b)
        .into_par_iter()
        .map(|k| {
            let mut idx = mb * b + k;
            if cfg.train.fixed_samples > 0 {
                idx %= cfg.train.fixed_samples;
            }
            build_sample(cases, sample_seed(cfg.train.seed, idx), &aug, p)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let drop_context = cfg.train.context_dropout > 0.0
        && crate::data::phantom::Rng::new(sample_seed(cfg.train.seed ^ 0xC0_4E7E, mb)).uniform() < cfg.train.context_dropout;
    Ok(Batch { samples, drop_context })
}

/// Tensors of a batch.
struct BatchTensors {
    /// The 2D stage's inputs (click disc, pointmap masked by it).
    x2: NetInputs,
    /// The 3D stage's inputs conditioned on the true slice mask.
    x3: NetInputs,
    /// Target slice mask `[B, 1, S, S]`.
    mask: Tensor,
    /// Click disc `[B, 1, S, S]`.
    prior: Tensor,
    /// Unmasked pointmap `[B, 3, S, S]`.
    pointmap_full: Tensor,
    /// Target SDF `[B, 1, G, G, G]`.
    sdf: Tensor,
}

fn to_tensors(b: &Batch, device: Device) -> BatchTensors {
    let s = &b.samples;
    let n = s.len() as i64;
    let t3 = |xs: Vec<&ndarray::Array2<f32>>| tensor_from(&stack2(&xs), device).unsqueeze(1);
    let image = t3(s.iter().map(|x| &x.image).collect());
    let prior = t3(s.iter().map(|x| &x.prior).collect());
    let mask = t3(s.iter().map(|x| &x.mask).collect());
    let pm_prior = tensor_from(&stack3(&s.iter().map(|x| &x.pointmap_prior).collect::<Vec<_>>()), device);
    let pm = tensor_from(&stack3(&s.iter().map(|x| &x.pointmap).collect::<Vec<_>>()), device);
    let pointmap_full = tensor_from(&stack3(&s.iter().map(|x| &x.pointmap_full).collect::<Vec<_>>()), device);
    let sdf = tensor_from(&stack3(&s.iter().map(|x| &x.sdf).collect::<Vec<_>>()), device).unsqueeze(1);
    // The context and guide cubes, when every sample has them and the batch keeps its context.
    let cubes = |get: fn(&TrainSample) -> Option<&ndarray::Array3<f32>>| {
        let cs: Option<Vec<&ndarray::Array3<f32>>> = s.iter().map(get).collect();
        cs.filter(|cs| !b.drop_context && n > 0 && !cs.is_empty()).map(|cs| tensor_from(&stack3(&cs), device).unsqueeze(1))
    };
    let context = cubes(|x| x.context.as_ref());
    let guide = context.as_ref().and_then(|_| cubes(|x| x.guide.as_ref()));
    let x3 = NetInputs { image, mask: mask.shallow_clone(), pointmap: pm, context, guide };
    let x2 = x3.with_mask(prior.shallow_clone(), pm_prior);
    BatchTensors { x2, x3, mask, prior, pointmap_full, sdf }
}

/// The 3D stage's inputs conditioned on the 2D head's mask (`logits > 0`, united with the
/// click disc, as inference keeps the click's component) for the samples where `choose`
/// (`[B]` bool) holds, on the true mask elsewhere.
fn condition_on_prediction(bt: &BatchTensors, logits: &Tensor, choose: &Tensor) -> NetInputs {
    let _g = tch::no_grad_guard();
    let pred = logits.detach().gt(0.0).logical_or(&bt.prior.gt(0.5)).to_kind(Kind::Float);
    let c = choose.view([-1, 1, 1, 1]);
    let m = pred.where_self(&c, &bt.mask);
    let valid = m.gt(0.5);
    let nan = Tensor::full([1], f64::NAN, (Kind::Float, bt.pointmap_full.device()));
    let pm = bt.pointmap_full.where_self(&valid, &nan);
    bt.x3.with_mask(m, pm)
}

// ---------------------------------------------------------------------------------------------
// Losses

/// Loss terms of one micro-batch (scalar tensors) in a fixed order.
pub const TERMS: [&str; 6] = ["mask_bce", "mask_dice", "occupancy", "sdf_l1", "occupancy_dice", "chamfer"];

fn soft_dice_loss(logits: &Tensor, target: &Tensor) -> Tensor {
    let p = logits.sigmoid();
    let dims: Vec<i64> = (1..logits.dim() as i64).collect();
    let inter = (&p * target).sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let denom = p.sum_dim_intlist(dims.as_slice(), false, Kind::Float) + target.sum_dim_intlist(dims.as_slice(), false, Kind::Float);
    let ratio: Tensor = (inter * 2.0 + 1.0) / (denom + 1.0);
    (ratio.neg() + 1.0).mean(Kind::Float)
}

/// The terms of [`TERMS`]; `coarse`: compare the 3D terms on 2×-pooled grids.
fn loss_terms(mask_logits: &Tensor, mask_t: &Tensor, sdf_pred: &Tensor, sdf_t: &Tensor, grid: usize, coarse: bool, trunc: f64) -> [Tensor; 6] {
    let bce = mask_logits.binary_cross_entropy_with_logits::<Tensor>(mask_t, None, None, Reduction::Mean);
    let dice = soft_dice_loss(mask_logits, mask_t);
    let pred = sdf_pred.narrow(1, 0, 1);
    let (pred, target, cells) = if coarse && grid >= 4 {
        let pool = |t: &Tensor| t.avg_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], false, true, None::<i64>);
        (pool(&pred), pool(sdf_t), grid / 2)
    } else {
        (pred, sdf_t.shallow_clone(), grid)
    };
    // One cell in units of L/2.
    let tau = 2.0 / cells as f64;
    let occ_t = target.lt(0.0).to_kind(Kind::Float);
    let occ_logits = -&pred / tau;
    let occ = occ_logits.binary_cross_entropy_with_logits::<Tensor>(&occ_t, None, None, Reduction::Mean);
    let occ_dice = soft_dice_loss(&occ_logits, &occ_t);
    let l1 = (pred.clamp(-trunc, trunc) - target.clamp(-trunc, trunc)).abs().mean(Kind::Float);
    // Chamfer with the SDFs as distance fields: the predicted |SDF| on the true surface cells
    // (true surface → predicted surface), and the true |SDF| where the prediction has its
    // surface, weighted by a soft surface indicator (predicted surface → true surface).
    let surf_t = target.abs().lt(tau * 0.5).to_kind(Kind::Float);
    let a = (pred.abs().clamp_max(trunc) * &surf_t).sum(Kind::Float) / (surf_t.sum(Kind::Float) + 1.0);
    let w = (-(&pred / tau).square()).exp();
    let b = (&w * target.abs().clamp_max(trunc)).sum(Kind::Float) / (w.sum(Kind::Float) + 1.0);
    [bce, dice, occ, l1, occ_dice, a + b]
}

// ---------------------------------------------------------------------------------------------
// Optimiser

/// AdamW (decoupled weight decay, on tensors of rank ≥ 2) over named parameters.
pub struct AdamW {
    pub names: Vec<String>,
    pub params: Vec<Tensor>,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
    pub t: u64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamW {
    pub fn new(named: Vec<(String, Tensor)>) -> Self {
        let (names, params): (Vec<_>, Vec<_>) = named.into_iter().unzip();
        let m = params.iter().map(|p| p.zeros_like()).collect();
        let v = params.iter().map(|p| p.zeros_like()).collect();
        AdamW { names, params, m, v, t: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// Global gradient norm.
    pub fn grad_norm(&self) -> f64 {
        let _g = tch::no_grad_guard();
        let mut s = 0.0;
        for p in &self.params {
            let g = p.grad();
            if g.defined() {
                s += g.square().sum(Kind::Double).double_value(&[]);
            }
        }
        s.sqrt()
    }

    /// One update with learning rate `lr`; gradients scaled by `gscale` (clipping, accumulation).
    pub fn step(&mut self, lr: f64, weight_decay: f64, gscale: f64) {
        let _g = tch::no_grad_guard();
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - b1.powi(self.t as i32);
        let bc2 = 1.0 - b2.powi(self.t as i32);
        for i in 0..self.params.len() {
            let p = &mut self.params[i];
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let g = g * gscale;
            self.m[i] = &self.m[i] * b1 + &g * (1.0 - b1);
            self.v[i] = &self.v[i] * b2 + g.square() * (1.0 - b2);
            let upd = (&self.m[i] / bc1) / ((&self.v[i] / bc2).sqrt() + self.eps);
            let upd = if p.dim() >= 2 && weight_decay > 0.0 { upd + &*p * weight_decay } else { upd };
            let _ = p.f_sub_(&(upd * lr));
        }
    }
}

/// Warm-up (linear from `lr/warmup`) then cosine down to `lr × min_frac` at `steps`.
pub fn lr_at(step: u64, t: &TrainSection) -> f64 {
    if step <= t.warmup && t.warmup > 0 {
        return t.lr * step as f64 / t.warmup as f64;
    }
    let span = t.steps.saturating_sub(t.warmup).max(1) as f64;
    let x = ((step.saturating_sub(t.warmup)) as f64 / span).clamp(0.0, 1.0);
    let min = t.lr * t.min_lr_frac;
    min + 0.5 * (t.lr - min) * (1.0 + (std::f64::consts::PI * x).cos())
}

// ---------------------------------------------------------------------------------------------
// The run

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    pub first_step: u64,
    pub last_step: u64,
    /// (step, total loss) of every step run here.
    pub losses: Vec<(u64, f64)>,
    pub samples_per_sec: f64,
    pub secs: f64,
    pub last_validation: Option<Validation>,
    /// The step a stop request ended the run at (its checkpoint written there).
    pub stopped_at: Option<u64>,
}

/// Validation on held-out clicks (deepest point of each class, three planes, no augmentation).
#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub clicks: usize,
    /// Whether the `volume_context` cube was given (when the model has one).
    pub context: bool,
    /// Dice of the 2D head's mask (threshold 0) against the slice's true mask.
    pub dice_2d: f64,
    /// Dice of the SDF's inside (< 0) against the true inside on the `G³` grid, the 3D stage
    /// conditioned on the true 2D mask.
    pub dice_3d_grid: f64,
    /// The same, the 3D stage conditioned on the 2D head's mask (the inference path).
    pub dice_3d_grid_pred2d: f64,
}

/// Builds the model and the trainable parameter list (names prefixed `base/` or `lora/`).
/// The random initialisation is seeded with `train.seed`; on resume the frozen base comes from
/// `DIR/model.safetensors` (the trainable tensors then from the state).
fn build_model(cfg: &TrainConfig, device: Device, resume_base: Option<&Path>) -> Result<(Model, Vec<(String, Tensor)>), TrainError> {
    tch::manual_seed(cfg.train.seed as i64);
    let mut model = match (resume_base, &cfg.model.base_checkpoint) {
        (Some(p), _) => Model::from_checkpoint(p, device)?,
        (None, Some(p)) => Model::from_checkpoint(p, device)?,
        (None, None) => {
            let mut m = Model::new(model_config(cfg)?, device);
            if let Some(p) = &cfg.model.init_checkpoint {
                m.init_from(p)?;
            }
            m
        }
    };
    let mut named = Vec::new();
    match cfg.lora.as_ref().filter(|l| l.enabled) {
        Some(l) => {
            model.attach_lora(&l.config)?;
            if let Some(vs) = model.adapter_vs() {
                let mut a: Vec<_> = vs.variables().into_iter().collect();
                a.sort_by(|x, y| x.0.cmp(&y.0));
                named.extend(a.into_iter().map(|(n, t)| (format!("lora/{n}"), t)));
            }
            let mut heads: Vec<_> =
                model.base_vs().variables().into_iter().filter(|(n, _)| crate::model::is_head(n)).collect();
            heads.sort_by(|x, y| x.0.cmp(&y.0));
            for (n, mut t) in heads {
                t = t.set_requires_grad(true);
                named.push((format!("base/{n}"), t));
            }
            // The adapter names the base checkpoint the run starts from (what it was attached
            // to); a resumed run gets that name from its state, and a run with no base
            // checkpoint names its own model file.
            if resume_base.is_some() || cfg.model.base_checkpoint.is_none() {
                model.set_adapter_base_sha256(None);
            }
        }
        None => {
            let mut a: Vec<_> = model.base_vs().variables().into_iter().collect();
            a.sort_by(|x, y| x.0.cmp(&y.0));
            named.extend(a.into_iter().filter(|(_, t)| t.requires_grad()).map(|(n, t)| (format!("base/{n}"), t)));
        }
    }
    Ok((model, named))
}

fn save_state(out: &Path, opt: &AdamW, step: u64, cfg: &TrainConfig, model: &Model) -> Result<(), TrainError> {
    let mut map = HashMap::new();
    for (i, n) in opt.names.iter().enumerate() {
        map.insert(format!("param/{n}"), opt.params[i].shallow_clone());
        map.insert(format!("adam_m/{n}"), opt.m[i].shallow_clone());
        map.insert(format!("adam_v/{n}"), opt.v[i].shallow_clone());
    }
    let mut meta = HashMap::from([
        ("format".to_string(), "sam3d-studio/train-state/1".to_string()),
        ("step".to_string(), step.to_string()),
        ("adam_t".to_string(), opt.t.to_string()),
        ("seed".to_string(), cfg.train.seed.to_string()),
        ("train_config".to_string(), serde_json::to_string(cfg).unwrap_or_default()),
    ]);
    // The base the adapter belongs to: a resumed run rebuilds from DIR/model.safetensors (the
    // base with its trained heads), and its adapter must still name the original.
    if let Some(sha) = model.adapter_base_sha256() {
        meta.insert("adapter_base_sha256".to_string(), sha.to_string());
    }
    checkpoint::write(&out.join("state.safetensors"), &map, meta)?;
    Ok(())
}

fn load_state(out: &Path, opt: &mut AdamW, model: &mut Model) -> Result<u64, TrainError> {
    let path = out.join("state.safetensors");
    let f = StFile::read(&path)?;
    let step: u64 = f.metadata.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| ferr(&path, "no step in its metadata"))?;
    opt.t = f.metadata.get("adam_t").and_then(|s| s.parse().ok()).unwrap_or(step);
    if let Some(sha) = f.metadata.get("adapter_base_sha256") {
        model.set_adapter_base_sha256(Some(sha.clone()));
    }
    let _g = tch::no_grad_guard();
    for i in 0..opt.names.len() {
        let n = &opt.names[i];
        let p = f.tensor(&format!("param/{n}"))?;
        let m = f.tensor(&format!("adam_m/{n}"))?;
        let v = f.tensor(&format!("adam_v/{n}"))?;
        if p.size() != opt.params[i].size() {
            return Err(ferr(&path, format!("{n}: shape {:?} in the state, {:?} in the model (config changed?)", p.size(), opt.params[i].size())));
        }
        let dev = opt.params[i].device();
        opt.params[i].copy_(&p.to_device(dev));
        opt.m[i] = m.to_device(dev);
        opt.v[i] = v.to_device(dev);
    }
    Ok(step)
}

fn save_outputs(out: &Path, model: &mut Model) -> Result<(), TrainError> {
    model.save_weights(&out.join("model.safetensors"))?;
    if model.adapter_vs().is_some() {
        model.save_adapter(&out.join("adapter.safetensors"))?;
    }
    Ok(())
}

/// Validation samples: each class's deepest point, three planes, no augmentation.
pub fn validation_samples(cases: &[TrainCase], p: &ClickParams) -> Vec<TrainSample> {
    validation_samples_with(cases, p, &|| {})
}

/// [`validation_samples`], calling `each_class` after each class of each case.
pub fn validation_samples_with(cases: &[TrainCase], p: &ClickParams, each_class: &dyn Fn()) -> Vec<TrainSample> {
    let mut out = Vec::new();
    for case in cases {
        for c in 0..case.classes.len() {
            each_class();
            let Some(click) = case.deepest_click(c) else { continue };
            for plane in [ViewPlane::Axial, ViewPlane::Coronal, ViewPlane::Sagittal] {
                if let Ok(s) = make_sample(case, c, click, plane, &Similarity::identity(click), (1.0, 0.0), p) {
                    out.push(s);
                }
            }
        }
    }
    out
}

fn validate(model: &Model, samples: &[TrainSample], device: Device, drop_context: bool) -> Validation {
    let _g = tch::no_grad_guard();
    let (mut d2, mut d3, mut d3p, mut n) = (0.0, 0.0, 0.0, 0usize);
    let dice = |pred: &Tensor, gt: &Tensor| -> Vec<f64> {
        let dims: &[i64] = &[1, 2, 3, 4][..(pred.dim() - 1)];
        let inter = (pred * gt).sum_dim_intlist(dims, false, Kind::Double);
        let s = pred.sum_dim_intlist(dims, false, Kind::Double) + gt.sum_dim_intlist(dims, false, Kind::Double);
        let d = (inter * 2.0 + 1e-9) / (s + 1e-9);
        Vec::<f64>::try_from(&d).unwrap_or_default()
    };
    for chunk in samples.chunks(8) {
        let b = Batch { samples: chunk.to_vec(), drop_context };
        let bt = to_tensors(&b, device);
        let logits = model.forward_mask(&bt.x2, false);
        let out = model.forward_t(&bt.x3, false);
        let all = Tensor::ones([chunk.len() as i64], (Kind::Bool, device));
        let out_p = model.forward_t(&condition_on_prediction(&bt, &logits, &all), false);
        let p2 = logits.gt(0.0).to_kind(Kind::Float);
        let g3 = bt.sdf.lt(0.0).to_kind(Kind::Float);
        let p3 = out.sdf.narrow(1, 0, 1).lt(0.0).to_kind(Kind::Float);
        let p3p = out_p.sdf.narrow(1, 0, 1).lt(0.0).to_kind(Kind::Float);
        d2 += dice(&p2, &bt.mask).iter().sum::<f64>();
        d3 += dice(&p3, &g3).iter().sum::<f64>();
        d3p += dice(&p3p, &g3).iter().sum::<f64>();
        n += chunk.len();
    }
    let k = n.max(1) as f64;
    Validation { clicks: n, context: !drop_context, dice_2d: d2 / k, dice_3d_grid: d3 / k, dice_3d_grid_pred2d: d3p / k }
}

pub(crate) fn append_log(path: &Path, v: &serde_json::Value) -> Result<(), TrainError> {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| ferr(path, format!("cannot open: {e}")))?;
    writeln!(f, "{v}").map_err(|e| ferr(path, format!("cannot write: {e}")))
}

/// Keeps only the log lines of steps ≤ `step` (a resumed run rewrites what followed).
pub(crate) fn truncate_log(path: &Path, step: u64) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).ok().and_then(|v| v.get("step").and_then(|s| s.as_u64())).is_some_and(|s| s <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::volume::atomic_write(path, |w| w.write_all(kept.as_bytes()))?;
    Ok(())
}

/// Runs (or resumes) training into `out`. `progress`: called after each step with (done, total).
pub fn train(cfg: &TrainConfig, out: &Path, resume: bool, progress: &dyn Fn(u64, u64)) -> Result<TrainSummary, TrainError> {
    let device = crate::model::parse_device(&cfg.model.device).map_err(|e| TrainError::Config { field: "model.device".into(), problem: e })?;
    if let Some(n) = cfg.train.threads {
        tch::set_num_threads(n);
    }
    std::fs::create_dir_all(out).map_err(|e| ferr(out, format!("cannot create directory: {e}")))?;
    let (cases, val_cases) = load_cases(cfg)?;
    let resume_base = out.join("model.safetensors");
    let (mut model, named) = build_model(cfg, device, (resume && resume_base.exists()).then_some(resume_base.as_path()))?;
    let mcfg = model.config().clone();
    let p = mcfg.click_params();
    let grid = mcfg.output.grid;
    let mut opt = AdamW::new(named);
    let log_path = out.join("log.jsonl");
    let start = if resume {
        let s = load_state(out, &mut opt, &mut model)?;
        truncate_log(&log_path, s)?;
        s
    } else {
        let _ = std::fs::remove_file(&log_path);
        0
    };
    // The validation clicks take a while on a large scan: say so (`prepare`, one count for the
    // cases loaded, one per class).
    let val_from = if val_cases.is_empty() { &cases } else { &val_cases };
    let prep = crate::progress::Progress::new(PREPARE_PROGRESS, 1 + val_from.iter().map(|c| c.classes.len() as u64).sum::<u64>());
    prep.inc(1);
    let val_samples = validation_samples_with(val_from, &p, &|| prep.inc(1));
    let t = &cfg.train;
    let total = t.steps;
    let accum = t.accum as u64;

    // Prefetch thread: micro-batches in order, bounded channel.
    let (tx, rx) = crossbeam_channel::bounded::<Result<Batch, ClickError>>(t.prefetch.max(1));
    let cases = Arc::new(cases);
    let producer = {
        let cases = cases.clone();
        let cfg = cfg.clone();
        let stop_at = cfg.debug.stop_after.unwrap_or(total).min(total);
        std::thread::Builder::new()
            .name("train-samples".into())
            .spawn(move || {
                for mb in start * accum..stop_at * accum {
                    if tx.send(micro_batch(&cases, &cfg, &p, mb)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| TrainError::Loader(e.to_string()))?
    };

    let t0 = Instant::now();
    let mut losses = Vec::new();
    let mut last_val = None;
    let mut samples = 0u64;
    let mut result = Ok(());
    let last = cfg.debug.stop_after.unwrap_or(total).min(total);
    let mut stopped_at = None;
    let stop_request = StopRequest::fresh(out);
    for step in start + 1..=last {
        let ts = Instant::now();
        tch::manual_seed((t.seed.wrapping_mul(1_000_003).wrapping_add(step)) as i64);
        let lr = lr_at(step, t);
        let phase1 = step <= t.curriculum_step;
        let boost = if phase1 { cfg.loss.curriculum_2d_boost } else { 1.0 };
        let l = &cfg.loss;
        let w = [l.mask_bce * boost, l.mask_dice * boost, l.occupancy, l.sdf_l1, l.occupancy_dice, l.chamfer];
        opt.zero_grad();
        let mut sums = [0.0f64; TERMS.len()];
        let mut failed = None;
        for _ in 0..accum {
            let batch = match rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    failed = Some(TrainError::Sample(e));
                    break;
                }
                Err(e) => {
                    failed = Some(TrainError::Loader(e.to_string()));
                    break;
                }
            };
            samples += batch.samples.len() as u64;
            let bt = to_tensors(&batch, device);
            let logits = model.forward_mask(&bt.x2, true);
            let outp = if t.pred_mask_frac > 0.0 && !phase1 {
                let choose = Tensor::rand([bt.mask.size()[0]], (Kind::Float, device)).lt(t.pred_mask_frac);
                model.forward_t(&condition_on_prediction(&bt, &logits, &choose), true)
            } else {
                model.forward_t(&bt.x3, true)
            };
            let mut terms = loss_terms(&logits, &bt.mask, &outp.sdf, &bt.sdf, grid, phase1, cfg.loss.sdf_trunc);
            if cfg.debug.nan_at_step == Some(step) {
                terms[3] = &terms[3] * f64::NAN;
            }
            let mut total_t = Tensor::zeros([], (Kind::Float, device));
            for (k, term) in terms.iter().enumerate() {
                let v = term.double_value(&[]);
                if !v.is_finite() {
                    failed = Some(TrainError::NonFinite { step, term: TERMS[k].into(), value: v });
                    break;
                }
                sums[k] += v / accum as f64;
                total_t += term * (w[k] / accum as f64);
            }
            if failed.is_some() {
                break;
            }
            total_t.backward();
        }
        if let Some(e) = failed {
            result = Err(e);
            break;
        }
        let gnorm = opt.grad_norm();
        if !gnorm.is_finite() {
            result = Err(TrainError::NonFinite { step, term: "gradient norm".into(), value: gnorm });
            break;
        }
        let gscale = if t.clip > 0.0 && gnorm > t.clip { t.clip / gnorm } else { 1.0 };
        opt.step(lr, t.weight_decay, gscale);
        let loss: f64 = sums.iter().zip(w.iter()).map(|(s, w)| s * w).sum();
        losses.push((step, loss));
        let mut line = serde_json::json!({
            "step": step, "loss": loss, "lr": lr, "secs": ts.elapsed().as_secs_f64(),
            "grad_norm": gnorm, "phase": if phase1 { "2d+coarse3d" } else { "dense3d" },
        });
        for (k, name) in TERMS.iter().enumerate() {
            line[*name] = serde_json::json!(sums[k]);
        }
        append_log(&log_path, &line)?;
        let do_val = (t.val_every > 0 && step % t.val_every == 0) || step == total;
        if do_val && !val_samples.is_empty() {
            let v = validate(&model, &val_samples, device, false);
            append_log(&log_path, &serde_json::json!({"step": step, "validation": &v}))?;
            if mcfg.volume_context.enabled {
                let v0 = validate(&model, &val_samples, device, true);
                append_log(&log_path, &serde_json::json!({"step": step, "validation": &v0}))?;
            }
            last_val = Some(v);
        }
        // A stop request (the fine-tuning panel's Stop) ends the run here, with a checkpoint
        // at this step so that `--resume` goes on from it.
        let stop = stop_request.asked();
        let do_ckpt = (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || step == last || stop;
        if do_ckpt {
            save_state(out, &opt, step, cfg, &model)?;
            save_outputs(out, &mut model)?;
        }
        progress(step, total);
        if stop {
            stop_request.clear();
            stopped_at = Some(step);
            break;
        }
    }
    drop(rx);
    let _ = producer.join();
    result?;
    Ok(TrainSummary::of_run(start, losses, samples, t0, last_val, stopped_at))
}

/// The stop request of a run's folder (the file [`STOP_REQUEST_FILE`], the fine-tuning panel's
/// Stop): both training loops check it after each step.
pub(crate) struct StopRequest(PathBuf);

impl StopRequest {
    /// For a run starting in `out`: a request left from an earlier run is removed, so it cannot
    /// stop this one.
    pub(crate) fn fresh(out: &Path) -> Self {
        let r = StopRequest(out.join(STOP_REQUEST_FILE));
        r.clear();
        r
    }
    pub(crate) fn asked(&self) -> bool {
        self.0.exists()
    }
    pub(crate) fn clear(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl TrainSummary {
    /// The summary of steps `start + 1 ..` whose losses are `losses`, begun at `t0`.
    pub(crate) fn of_run(start: u64, losses: Vec<(u64, f64)>, samples: u64, t0: Instant, last_validation: Option<Validation>, stopped_at: Option<u64>) -> Self {
        let secs = t0.elapsed().as_secs_f64();
        TrainSummary {
            first_step: start + 1,
            last_step: losses.last().map(|l| l.0).unwrap_or(start),
            losses,
            samples_per_sec: samples as f64 / secs.max(1e-9),
            secs,
            last_validation,
            stopped_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SDF of a sphere of radius `r` centred at `c` on a `g³` grid over [−1, 1]³ (units of L/2).
    fn sphere(g: usize, r: f64, c: f64) -> Tensor {
        let v: Vec<f32> = (0..g * g * g)
            .map(|n| {
                let (k, j, i) = (n / (g * g), (n / g) % g, n % g);
                let x = |a: usize| -1.0 + 2.0 * (a as f64 + 0.5) / g as f64;
                (((x(i) - c).powi(2) + x(j).powi(2) + x(k).powi(2)).sqrt() - r) as f32
            })
            .collect();
        Tensor::from_slice(&v).view([1, 1, g as i64, g as i64, g as i64])
    }

    #[test]
    fn chamfer_and_occupancy_dice_measure_the_surface_offset() {
        let g = 24;
        let target = sphere(g, 0.4, 0.0);
        let logits = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let mask = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let terms = |shift: f64| -> (f64, f64) {
            let t = loss_terms(&logits, &mask, &sphere(g, 0.4, shift), &target, g, false, 0.2);
            (t[5].double_value(&[]), t[4].double_value(&[]))
        };
        let (c0, d0) = terms(0.0);
        let (c1, d1) = terms(0.1);
        let (c2, d2) = terms(0.2);
        // Exact: both one-sided distances are below half a cell (1/24 here).
        assert!(c0 < 2.0 / g as f64, "chamfer of the exact shape {c0}");
        // A shift of 0.1 and 0.2 (L/2 units): the symmetric surface distance grows with it and
        // is of the order of the mean distance between the two spheres' surfaces.
        assert!(c1 > c0 + 0.05 && c2 > c1 + 0.05, "chamfer {c0} {c1} {c2}");
        assert!(c2 < 0.4, "chamfer {c2} beyond the shift's bound");
        // Soft occupancy Dice loss grows as the overlap falls.
        assert!(d0 < d1 && d1 < d2, "occupancy dice {d0} {d1} {d2}");
    }
}
