//! Training the corrector (`train-corrector --data DIR … --out DIR`) with simulated
//! corrections ([`crate::data::correction::simulate`]).
//!
//! - **Data**: the cases of each `--data` folder, their `--holdout` labels removed as targets
//!   (they still appear in the scans and as neighbours that leak in), and `--phantoms N`
//!   CT-like and N MR-like phantoms made in memory. A sample draws the real folders with
//!   probability `--real-share`, then a case by its weight and a class with probability ∝
//!   √voxels. Sample `n` depends only on `(seed, n)`; a producer thread makes them ahead.
//! - **Loss**: BCE of the logits against the reference on the cube, plus soft Dice.
//! - **Optimiser**: AdamW ([`super::train::AdamW`], weight decay 0.01), warm-up then cosine to
//!   5 %, global-norm clipping at 1.
//! - **Outputs** in `--out`: `corrector.safetensors` (every 100 steps, on a stop request and at
//!   the end; atomically, with the run's options in its metadata) and `log.jsonl` (one line per
//!   step). A run is not resumed: a new run starts over (`--init` starts from a checkpoint).
//!   [`crate::train_config::STOP_REQUEST_FILE`] in `--out` stops after the current step.

use super::train::{AdamW, StopRequest, TrainError};
use crate::data::correction::{CorrectionSample, SimParams, simulate};
use crate::data::phantom::{PhantomSpec, Rng, generate};
use crate::data::preprocess::find_pairs;
use crate::data::train_samples::{TrainCase, sample_seed};
use crate::model::convert::tensor_from;
use crate::model::corrector::{Corrector, CorrectorConfig};
use crate::volume::Modality;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// What a run is given.
#[derive(Clone, Debug, Serialize)]
pub struct CorrectorTrainOptions {
    pub data: Vec<PathBuf>,
    pub holdout: Vec<u16>,
    pub phantoms: usize,
    pub real_share: f64,
    pub min_voxels: usize,
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub warmup: u64,
    pub seed: u64,
    pub config: CorrectorConfig,
    pub init: Option<PathBuf>,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct CorrectorTrainSummary {
    pub steps: u64,
    pub samples: u64,
    pub secs: f64,
    pub samples_per_sec: f64,
    /// Mean loss of the first and the last 20 steps (of a run shorter than 40, its halves).
    pub first_loss: f64,
    pub last_loss: f64,
    /// Mean Dice of the prediction over the last 20 steps, and of the candidates it was given,
    /// both on the cube.
    pub last_dice: f64,
    pub last_previous_dice: f64,
    pub stopped: bool,
    pub weights: PathBuf,
}

/// The training cases: the folders' (holdout labels removed) and the phantoms'.
fn cases(o: &CorrectorTrainOptions) -> Result<(Vec<TrainCase>, Vec<TrainCase>), TrainError> {
    let mut real = Vec::new();
    for dir in &o.data {
        for pair in find_pairs(dir)? {
            let case = pair.load()?;
            let mut c = TrainCase::new(&pair.name, Arc::new(case.volume), case.labels, None, &[]);
            c.retain_classes(|l, n| !o.holdout.contains(&l) && n >= o.min_voxels);
            if !c.classes.is_empty() {
                real.push(c);
            }
        }
    }
    let mut phantoms = Vec::new();
    for n in 0..o.phantoms {
        for (m, modality) in [Modality::Ct, Modality::Mr].into_iter().enumerate() {
            let seed = o.seed.wrapping_mul(1000).wrapping_add((2 * n + m) as u64);
            let p = generate(&PhantomSpec::medium(modality), seed);
            let mut c = TrainCase::new(&format!("phantom_{}_{n}", if m == 0 { "ct" } else { "mr" }), Arc::new(p.volume), p.labels, Some(modality), &[]);
            c.retain_classes(|_, n| n >= o.min_voxels);
            phantoms.push(c);
        }
    }
    for c in real.iter_mut().chain(phantoms.iter_mut()) {
        c.class_weight_power = 0.5;
    }
    if real.is_empty() && phantoms.is_empty() {
        return Err(TrainError::Config { field: "--data / --phantoms".into(), problem: "no case with a labelled class to train on".into() });
    }
    Ok((real, phantoms))
}

/// Sample `n` of a run.
fn sample(real: &[TrainCase], phantoms: &[TrainCase], o: &CorrectorTrainOptions, p: &SimParams, n: u64) -> Option<CorrectionSample> {
    let mut rng = Rng::new(sample_seed(o.seed, n));
    let pool = if phantoms.is_empty() || (!real.is_empty() && rng.uniform() < o.real_share) { real } else { phantoms };
    let total: f64 = pool.iter().map(|c| c.weight).sum();
    let mut x = rng.uniform() * total;
    let case = pool.iter().find(|c: &&TrainCase| {
        x -= c.weight;
        x <= 0.0
    });
    let case = case.or(pool.last())?;
    let class = case.random_class(&mut rng)?;
    simulate(case, class, &mut rng, p)
}

fn lr_at(step: u64, o: &CorrectorTrainOptions) -> f64 {
    if step < o.warmup {
        return o.lr * (step + 1) as f64 / o.warmup as f64;
    }
    let x = (step - o.warmup) as f64 / (o.steps.saturating_sub(o.warmup)).max(1) as f64;
    let min = 0.05 * o.lr;
    min + 0.5 * (o.lr - min) * (1.0 + (std::f64::consts::PI * x.min(1.0)).cos())
}

/// BCE + soft Dice of logits `[B, 1, N, N, N]` against targets of the same shape; also the
/// batch's hard Dice.
fn loss(logits: &Tensor, target: &Tensor) -> (Tensor, f64) {
    let bce = logits.binary_cross_entropy_with_logits::<Tensor>(target, None, None, Reduction::Mean);
    let p = logits.sigmoid();
    let dims: &[i64] = &[1, 2, 3, 4];
    let inter = (&p * target).sum_dim_intlist(dims, false, Kind::Float);
    let denom = p.sum_dim_intlist(dims, false, Kind::Float) + target.sum_dim_intlist(dims, false, Kind::Float);
    let soft = ((inter * 2.0 + 1.0) / (denom + 1.0)).mean(Kind::Float).neg() + 1.0;
    let total = bce + soft;
    let _g = tch::no_grad_guard();
    let hard = logits.gt(0.0).to_kind(Kind::Float);
    let hi = (&hard * target).sum(Kind::Double).double_value(&[]);
    let hd = hard.sum(Kind::Double).double_value(&[]) + target.sum(Kind::Double).double_value(&[]);
    (total, if hd > 0.0 { 2.0 * hi / hd } else { 1.0 })
}

/// Trains the corrector; `progress(step, steps, loss)` after each step.
pub fn train_corrector(o: &CorrectorTrainOptions, out: &Path, progress: &dyn Fn(u64, u64, f64)) -> Result<CorrectorTrainSummary, TrainError> {
    o.config.check().map_err(|e| TrainError::Config { field: "--cells / --base".into(), problem: e })?;
    if o.batch == 0 || o.steps == 0 {
        return Err(TrainError::Config { field: "--batch / --steps".into(), problem: "must be at least 1".into() });
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::File { path: out.to_path_buf(), problem: format!("cannot create: {e}") })?;
    let stop = StopRequest::fresh(out);
    let (real, phantoms) = cases(o)?;
    eprintln!("corrector: {} real case(s), {} phantom(s)", real.len(), phantoms.len());
    tch::manual_seed(o.seed as i64);
    let net = match &o.init {
        Some(p) => Corrector::load(p, Device::Cpu)?,
        None => Corrector::new(o.config, Device::Cpu)?,
    };
    let mut opt = AdamW::new(net.named());
    let sim = SimParams::new(net.config.cells);
    // Samples ahead of the steps, in order.
    let (tx, rx) = crossbeam_channel::bounded::<Option<CorrectionSample>>(2 * o.batch);
    let (real, phantoms) = (Arc::new(real), Arc::new(phantoms));
    let producer = {
        let (real, phantoms, o) = (real.clone(), phantoms.clone(), o.clone());
        std::thread::Builder::new()
            .name("sam3d-corrector-samples".into())
            .spawn(move || {
                for n in 0.. {
                    if tx.send(sample(&real, &phantoms, &o, &sim, n)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| TrainError::Loader(e.to_string()))?
    };
    let log_path = out.join("log.jsonl");
    let mut log = std::fs::File::create(&log_path).map_err(|e| TrainError::File { path: log_path.clone(), problem: format!("cannot create: {e}") })?;
    let weights = out.join("corrector.safetensors");
    let meta = || HashMap::from([("sam3d.corrector.train".to_string(), serde_json::to_string(o).unwrap_or_default())]);
    let t0 = Instant::now();
    let (mut losses, mut dices, mut prev_dices) = (Vec::new(), Vec::new(), Vec::new());
    let mut samples = 0u64;
    let mut stopped = false;
    for step in 0..o.steps {
        let t = Instant::now();
        let mut batch = Vec::with_capacity(o.batch);
        while batch.len() < o.batch {
            match rx.recv() {
                Ok(Some(s)) => batch.push(s),
                Ok(None) => continue,
                Err(e) => return Err(TrainError::Loader(e.to_string())),
            }
        }
        samples += batch.len() as u64;
        let x = Tensor::stack(&batch.iter().map(|s| tensor_from(&s.input, Device::Cpu)).collect::<Vec<_>>(), 0);
        let y = Tensor::stack(&batch.iter().map(|s| tensor_from(&s.target, Device::Cpu)).collect::<Vec<_>>(), 0).unsqueeze(1);
        opt.zero_grad();
        let logits = net.forward(&x);
        let (l, dice) = loss(&logits, &y);
        let lv = l.double_value(&[]);
        if !lv.is_finite() {
            return Err(TrainError::NonFinite { step, term: "bce+dice".into(), value: lv });
        }
        l.backward();
        let gn = opt.grad_norm();
        if !gn.is_finite() {
            return Err(TrainError::NonFinite { step, term: "gradient norm".into(), value: gn });
        }
        let lr = lr_at(step, o);
        opt.step(lr, 0.01, if gn > 1.0 { 1.0 / gn } else { 1.0 });
        let prev = batch.iter().map(|s| s.previous_dice).sum::<f64>() / batch.len() as f64;
        // The candidate it was given, on the same cube: what the step must beat.
        let given = tch::no_grad(|| {
            let (_, d) = loss(&((x.narrow(1, 1, 1) - 0.5) * 10.0), &y);
            d
        });
        losses.push(lv);
        dices.push(dice);
        prev_dices.push(given);
        let line = serde_json::json!({"step": step + 1, "loss": lv, "dice": dice, "previous_dice": prev, "given_cube_dice": given, "lr": lr, "grad_norm": gn, "secs": t.elapsed().as_secs_f64()});
        writeln!(log, "{line}").map_err(|e| TrainError::File { path: log_path.clone(), problem: e.to_string() })?;
        progress(step + 1, o.steps, lv);
        let last = step + 1 == o.steps;
        if stop.asked() {
            stopped = true;
        }
        if (step + 1) % 100 == 0 || last || stopped {
            net.save(&weights, meta())?;
        }
        if stopped {
            break;
        }
    }
    drop(rx);
    let _ = producer.join();
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    // The first and the last 20 steps (of a short run, its halves).
    let w = 20.min(losses.len() / 2).max(1);
    let tail = |v: &[f64]| mean(&v[v.len().saturating_sub(w)..]);
    let secs = t0.elapsed().as_secs_f64();
    Ok(CorrectorTrainSummary {
        steps: losses.len() as u64,
        samples,
        secs,
        samples_per_sec: samples as f64 / secs.max(1e-9),
        first_loss: mean(&losses[..losses.len().min(w)]),
        last_loss: tail(&losses),
        last_dice: tail(&dices),
        last_previous_dice: tail(&prev_dices),
        stopped,
        weights,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tiny_run_on_phantoms_learns_and_writes_a_loadable_corrector() {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = CorrectorTrainOptions {
            data: Vec::new(),
            holdout: Vec::new(),
            phantoms: 1,
            real_share: 0.0,
            min_voxels: 50,
            steps: 30,
            batch: 2,
            lr: 3e-3,
            warmup: 2,
            seed: 3,
            config: CorrectorConfig::TINY,
            init: None,
        };
        let s = train_corrector(&o, dir.path(), &|_, _, _| {}).expect("train");
        assert_eq!((s.steps, s.samples), (30, 60));
        assert!(s.last_loss.is_finite() && s.last_loss < s.first_loss, "loss {} → {}", s.first_loss, s.last_loss);
        let log = std::fs::read_to_string(dir.path().join("log.jsonl")).expect("log");
        assert_eq!(log.lines().count(), 30);
        let back = Corrector::load(&s.weights, Device::Cpu).expect("load");
        assert_eq!(back.config, CorrectorConfig::TINY);
    }
}
