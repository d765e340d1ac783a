//! LoRA fine-tuning of a published SAM-Med3D checkpoint (`train --config C.toml --out DIR` with
//! `model.family = "sam_med3d"`; the project's own model trains in [`super::train`]).
//!
//! - **Samples, as SAM-Med3D trains**: a case (by its weight) and one of its classes
//!   (uniformly); a voxel of that label drawn uniformly is the centre of a 128³ cube of 1.5 mm
//!   cells ([`crate::data::sam_med3d::crop`]: canonical RAS, moved to stay inside the scan,
//!   z-scored foreground); the label is resampled onto the same cube by nearest neighbour
//!   through the same `ras_from_grid`. The first click is a voxel of the cube's label drawn
//!   uniformly; each further click (`sam_med3d.clicks`, default 3 passes in all) is a voxel
//!   drawn uniformly from the larger of the missed (positive click) and false (negative click)
//!   regions of the previous prediction, whose low-resolution logits (detached) are the next
//!   pass's mask prompt — SAM-Med3D's own click simulation. Sample `n` depends only on
//!   `(train.seed, n)`.
//! - **Loss**: soft Dice + BCE of the logits upsampled to the cube (trilinear) against the
//!   cube's label, averaged over the passes. The image embedding is computed once per sample
//!   (with gradients through the encoder's adapters) and shared by the passes.
//! - **Optimiser**: AdamW ([`super::train::AdamW`]) on the adapter tensors only, the base
//!   frozen; warm-up + cosine ([`super::train::lr_at`]), gradient accumulation over `batch ×
//!   accum` samples, global-norm clipping; a non-finite loss or gradient stops the run.
//! - **Outputs** in `DIR`: `adapter.safetensors` (naming the base `.pth` by file name and
//!   SHA-256, see [`crate::model::sam_med3d::lora`]), `state.safetensors` (adapter tensors, AdamW
//!   moments, step; `--resume` continues from it exactly), `log.jsonl` (one line per step:
//!   step, loss, lr, secs, grad_norm, the Dice of the first and last pass), all written
//!   atomically except the appended log. [`crate::train_config::STOP_REQUEST_FILE`] stops after the current step
//!   with a checkpoint. There is no held-out validation in this loop yet.
//! - **Cost**: every sample runs the image encoder forward *and* backward at 128³ (the
//!   adapters sit in every block). For the published ViT-B that dominates everything; see
//!   [`FULL_SIZE_CPU_NOTE`]. The log's `secs` is what a step really took.

use super::train::{AdamW, StopRequest, TrainError, TrainSummary, append_log, load_cases, lr_at, truncate_log};
use crate::data::phantom::Rng;
use crate::data::sam_med3d::{SPACING_MM, crop};
use crate::data::train_samples::{TrainCase, sample_seed};
use crate::engine::sam_med3d::Foundation;
use crate::geometry::{GridShape, VoxelIjk};
use crate::model::checkpoint::{self, StFile};
use crate::model::sam_med3d::lora::with_default_targets;
use crate::train_config::{PREPARE_PROGRESS, TrainConfig};
use crate::volume::OnGrid;
use crate::volume::resample::resample_labels_to_grid;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// What a step costs at full size on a CPU, said before the first step (the log's `secs` then
/// gives this machine's real figure).
/// Measured by the `#[ignore]`d `full_size_lora_step_bench` in `tests/sam_med3d_lora.rs` (random
/// ViT-B, rank-8 adapters on the default targets, one cube, one pass): forward without
/// gradients 10 s, forward and backward 37 s, peak RSS 4.5 GB, on 2 shared cores.
pub const FULL_SIZE_CPU_NOTE: &str = "on a CPU this is slow at full size: the published ViT-B runs its image encoder forward and backward over a 128³ cube for every sample (8 of its 12 blocks attend over a 14³-token padded window); measured on 2 cores: about 40 s and 4.5 GB of memory per sample, so 100 steps of batch × accum = 4 take about 4.5 hours; a CUDA GPU (model.device = \"cuda\") takes seconds";

/// One training cube.
pub struct CubeSample {
    pub case: String,
    pub class: u16,
    /// `[1, 1, S, S, S]` in the network's `[R, A, S]` order, z-scored.
    pub image: Tensor,
    /// `[1, 1, S, S, S]` in the same order, 1 inside the class.
    pub label: Tensor,
    /// The first click, `(d, h, w)` = the cube's `(i, j, k)`.
    pub first_click: [i64; 3],
}

/// A uniformly drawn index among those where `hit` holds (reservoir sampling, one pass).
fn draw<I: Iterator<Item = bool>>(it: I, rng: &mut Rng) -> Option<usize> {
    let mut seen = 0usize;
    let mut chosen = None;
    for (n, h) in it.enumerate() {
        if h {
            seen += 1;
            if rng.below(seen) == 0 {
                chosen = Some(n);
            }
        }
    }
    chosen
}

/// The sample for `seed` (see the module doc); `None` when the drawn class has no voxel.
pub fn make_sample(cases: &[TrainCase], seed: u64, side: usize) -> Option<CubeSample> {
    let mut rng = Rng::new(seed);
    let total: f64 = cases.iter().map(|c| c.weight).sum();
    let mut x = rng.uniform() * total;
    let case = cases.iter().find(|c| {
        x -= c.weight;
        x < 0.0
    })?;
    let class = *case.classes.get(rng.below(case.classes.len().max(1)))?;
    let labels = &case.labels;
    let shape = labels.shape();
    let n = draw(labels.data.iter().map(|&v| v == class), &mut rng)?;
    let (ni, nj) = (shape.ni, shape.nj);
    let centre = labels.ras_from_voxel.apply(VoxelIjk::new((n % ni) as f64, ((n / ni) % nj) as f64, (n / (ni * nj)) as f64));
    let c = crop(&case.volume, centre, side, SPACING_MM);
    let grid = GridShape { ni: side, nj: side, nk: side };
    // The cube's own grid, as the labels' voxel grid (the same cells: grid index = voxel).
    let on_cube = resample_labels_to_grid(labels, grid, &c.ras_from_grid.relabel());
    let mask: Vec<f32> = on_cube.data.iter().map(|&v| if v == class { 1.0 } else { 0.0 }).collect();
    let m = draw(mask.iter().map(|&v| v > 0.0), &mut rng)?;
    let s = side as i64;
    // `[k, j, i]` → `[i, j, k]` = `[R, A, S]`.
    let to_net = |v: &[f32]| Tensor::from_slice(v).view([s, s, s]).permute([2, 1, 0]).contiguous().view([1, 1, s, s, s]);
    let image = c.image.as_standard_layout();
    let image = to_net(image.as_slice()?);
    let first_click = [(m % side) as i64, ((m / side) % side) as i64, (m / (side * side)) as i64];
    Some(CubeSample { case: case.name.clone(), class, image, label: to_net(&mask), first_click })
}

/// Sample `index` of a run, trying up to eight seeds near it.
fn sample_at(cases: &[TrainCase], cfg: &TrainConfig, index: u64, side: usize) -> Result<CubeSample, TrainError> {
    let index = if cfg.train.fixed_samples > 0 { index % cfg.train.fixed_samples } else { index };
    for attempt in 0..8u64 {
        if let Some(s) = make_sample(cases, sample_seed(cfg.train.seed, index).wrapping_add(attempt.wrapping_mul(0x9E37)), side) {
            return Ok(s);
        }
    }
    Err(TrainError::Config { field: "data".into(), problem: format!("no labelled voxel found for sample {index} after 8 draws") })
}

fn soft_dice(logits: &Tensor, target: &Tensor) -> Tensor {
    let p = logits.sigmoid();
    let inter = (&p * target).sum(Kind::Float);
    let denom = p.sum(Kind::Float) + target.sum(Kind::Float);
    let ratio: Tensor = (inter * 2.0 + 1.0) / (denom + 1.0);
    ratio.neg() + 1.0
}

fn hard_dice(logits: &Tensor, target: &Tensor) -> f64 {
    let p = logits.gt(0.0).to_kind(Kind::Float);
    let inter = (&p * target).sum(Kind::Double).double_value(&[]);
    let s = p.sum(Kind::Double).double_value(&[]) + target.sum(Kind::Double).double_value(&[]);
    if s > 0.0 { 2.0 * inter / s } else { 1.0 }
}

/// What one sample gave: the loss tensor (for backward) and the Dice of the first and last pass.
pub struct SampleLoss {
    pub loss: Tensor,
    pub dice_first: f64,
    pub dice_last: f64,
    pub clicks: usize,
}

/// The passes of one sample (module doc): the first click, then corrections in the larger
/// error region with the previous logits as mask prompt. `train` turns LoRA dropout on.
pub fn sample_loss(f: &Foundation, s: &CubeSample, clicks: usize, rng: &mut Rng, train: bool) -> Result<SampleLoss, TrainError> {
    let net = f.net();
    let device = f.device();
    let image = s.image.to_device(device);
    let label = s.label.to_device(device);
    let side = net.config.img_size;
    let emb = net.image_embedding_t(&image, train)?;
    let mut coords: Vec<f32> = s.first_click.iter().map(|&x| x as f32).collect();
    let mut labels: Vec<i64> = vec![1];
    let mut prev: Option<Tensor> = None;
    let mut total = Tensor::zeros([], (Kind::Float, device));
    let (mut dice_first, mut dice_last, mut passes) = (0.0, 0.0, 0usize);
    for pass in 0..clicks.max(1) {
        let n = labels.len() as i64;
        let pts = Tensor::from_slice(&coords).view([1, n, 3]).to_device(device);
        let lab = Tensor::from_slice(&labels).view([1, n]).to_device(device);
        let (low, _iou) = net.decode_t(&emb, Some((&pts, &lab)), prev.as_ref(), train)?;
        let up = net.upsample(&low, [side, side, side]);
        let bce = up.binary_cross_entropy_with_logits::<Tensor>(&label, None, None, Reduction::Mean);
        total += bce + soft_dice(&up, &label);
        passes += 1;
        let _g = tch::no_grad_guard();
        let d = hard_dice(&up, &label);
        if pass == 0 {
            dice_first = d;
        }
        dice_last = d;
        if pass + 1 == clicks {
            break;
        }
        // The next click: in the larger error region (missed → positive, false → negative).
        let pred = up.gt(0.0);
        let gt = label.gt(0.5);
        let missed = gt.logical_and(&pred.logical_not());
        let wrong = pred.logical_and(&gt.logical_not());
        let (nm, nw) = (missed.sum(Kind::Int64).int64_value(&[]), wrong.sum(Kind::Int64).int64_value(&[]));
        if nm == 0 && nw == 0 {
            break;
        }
        let (region, positive) = if nm >= nw { (missed, true) } else { (wrong, false) };
        let idx = region.view([side, side, side]).nonzero();
        let k = rng.below(idx.size()[0] as usize) as i64;
        let p: Vec<i64> = Vec::<i64>::try_from(idx.get(k).to_device(Device::Cpu)).map_err(TrainError::Torch)?;
        coords.extend(p.iter().map(|&x| x as f32));
        labels.push(if positive { 1 } else { 0 });
        prev = Some(low.detach());
    }
    Ok(SampleLoss { loss: total / passes as f64, dice_first, dice_last, clicks: passes })
}

fn ferr(path: &Path, problem: impl Into<String>) -> TrainError {
    TrainError::File { path: path.to_path_buf(), problem: problem.into() }
}

const STATE_FORMAT: &str = "sam3d-studio/sam-med3d-train-state/1";

fn save_state(out: &Path, opt: &AdamW, step: u64, cfg: &TrainConfig, base_sha256: &str) -> Result<(), TrainError> {
    let mut map = HashMap::new();
    for (i, n) in opt.names.iter().enumerate() {
        map.insert(format!("param/{n}"), opt.params[i].shallow_clone());
        map.insert(format!("adam_m/{n}"), opt.m[i].shallow_clone());
        map.insert(format!("adam_v/{n}"), opt.v[i].shallow_clone());
    }
    let meta = HashMap::from([
        ("format".to_string(), STATE_FORMAT.to_string()),
        ("step".to_string(), step.to_string()),
        ("adam_t".to_string(), opt.t.to_string()),
        ("seed".to_string(), cfg.train.seed.to_string()),
        ("base_sha256".to_string(), base_sha256.to_string()),
        ("train_config".to_string(), serde_json::to_string(cfg).unwrap_or_default()),
    ]);
    checkpoint::write(&out.join("state.safetensors"), &map, meta)?;
    Ok(())
}

fn load_state(out: &Path, opt: &mut AdamW, base_sha256: &str) -> Result<u64, TrainError> {
    let path = out.join("state.safetensors");
    let f = StFile::read(&path)?;
    if f.metadata.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(ferr(&path, "not the state of a SAM-Med3D fine-tuning run; start without --resume or use another --out"));
    }
    if let Some(sha) = f.metadata.get("base_sha256").filter(|s| *s != base_sha256) {
        return Err(ferr(&path, format!("the run was started on a base with SHA-256 {sha}, model.base_checkpoint now has {base_sha256}")));
    }
    let step: u64 = f.metadata.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| ferr(&path, "no step in its metadata"))?;
    opt.t = f.metadata.get("adam_t").and_then(|s| s.parse().ok()).unwrap_or(step);
    let _g = tch::no_grad_guard();
    for i in 0..opt.names.len() {
        let n = &opt.names[i];
        let p = f.tensor(&format!("param/{n}"))?;
        if p.size() != opt.params[i].size() {
            return Err(ferr(&path, format!("{n}: shape {:?} in the state, {:?} now (LoRA config changed?)", p.size(), opt.params[i].size())));
        }
        let dev = opt.params[i].device();
        opt.params[i].copy_(&p.to_device(dev));
        opt.m[i] = f.tensor(&format!("adam_m/{n}"))?.to_device(dev);
        opt.v[i] = f.tensor(&format!("adam_v/{n}"))?.to_device(dev);
    }
    Ok(step)
}

/// Runs (or resumes) SAM-Med3D LoRA fine-tuning into `out`. `progress`: after each step with
/// (done, total).
pub fn train(cfg: &TrainConfig, out: &Path, resume: bool, progress: &dyn Fn(u64, u64)) -> Result<TrainSummary, TrainError> {
    let device = crate::model::parse_device(&cfg.model.device).map_err(|e| TrainError::Config { field: "model.device".into(), problem: e })?;
    if let Some(n) = cfg.train.threads {
        tch::set_num_threads(n);
    }
    let base = cfg.model.base_checkpoint.as_ref().ok_or_else(|| TrainError::Config { field: "model.base_checkpoint".into(), problem: "give the SAM-Med3D checkpoint (.pth) to fine-tune".into() })?;
    let lora = cfg.lora.as_ref().filter(|l| l.enabled).ok_or_else(|| TrainError::Config { field: "lora.enabled".into(), problem: "SAM-Med3D is fine-tuned with LoRA only".into() })?;
    std::fs::create_dir_all(out).map_err(|e| ferr(out, format!("cannot create directory: {e}")))?;
    let prep = crate::progress::Progress::new(PREPARE_PROGRESS, 3);
    tch::manual_seed(cfg.train.seed as i64);
    let mut f = Foundation::from_file(base, device)?;
    prep.inc(1);
    let n_adapted = f.attach_lora(&with_default_targets(&lora.config))?;
    let base_sha = f.base_id()?.sha256;
    prep.inc(1);
    let (mut cases, val) = load_cases(cfg)?;
    // No held-out validation here yet: every case trains.
    cases.extend(val);
    prep.inc(1);
    let side = f.config().img_size as usize;
    let named: Vec<(String, Tensor)> = {
        let vs = &f.lora().ok_or_else(|| TrainError::Config { field: "lora".into(), problem: "no adapter attached".into() })?.vs;
        let mut a: Vec<_> = vs.variables().into_iter().collect();
        a.sort_by(|x, y| x.0.cmp(&y.0));
        a.into_iter().map(|(n, t)| (format!("lora/{n}"), t)).collect()
    };
    let n_params: i64 = named.iter().map(|(_, t)| t.numel() as i64).sum();
    let mut opt = AdamW::new(named);
    let log_path = out.join("log.jsonl");
    let start = if resume {
        let s = load_state(out, &mut opt, &base_sha)?;
        truncate_log(&log_path, s)?;
        s
    } else {
        let _ = std::fs::remove_file(&log_path);
        0
    };
    let clicks = cfg.sam_med3d.as_ref().map(|s| s.clicks).unwrap_or_else(|| crate::train_config::SamMed3dSection::default().clicks);
    let t = &cfg.train;
    let per_step = (t.batch * t.accum) as u64;
    let lcfg = &f.lora().map(|l| l.config.clone()).unwrap_or_default();
    eprintln!(
        "SAM-Med3D LoRA: {} ({}); rank {}, alpha {} on {n_adapted} linears ({n_params} trainable values), base frozen; {} cases, {per_step} sample(s) of {side}³ × {clicks} pass(es) per step on {:?}",
        f.path().display(),
        f.config().describe(),
        lcfg.rank,
        lcfg.alpha,
        cases.len(),
        device
    );
    if device == Device::Cpu {
        eprintln!("SAM-Med3D LoRA: {FULL_SIZE_CPU_NOTE}");
    }
    let total = t.steps;
    let last = cfg.debug.stop_after.unwrap_or(total).min(total);
    let t0 = Instant::now();
    let mut losses = Vec::new();
    let mut samples = 0u64;
    let mut stopped_at = None;
    let stop_request = StopRequest::fresh(out);
    for step in start + 1..=last {
        let ts = Instant::now();
        tch::manual_seed((t.seed.wrapping_mul(1_000_003).wrapping_add(step)) as i64);
        let lr = lr_at(step, t);
        opt.zero_grad();
        let (mut loss_sum, mut d_first, mut d_last, mut passes) = (0.0, 0.0, 0.0, 0usize);
        for k in 0..per_step {
            let index = (step - 1) * per_step + k;
            let s = sample_at(&cases, cfg, index, side)?;
            let mut rng = Rng::new(sample_seed(t.seed ^ 0xC11C_4500, index));
            let r = sample_loss(&f, &s, clicks, &mut rng, true)?;
            let v = r.loss.double_value(&[]);
            if !v.is_finite() {
                return Err(TrainError::NonFinite { step, term: "dice+bce".into(), value: v });
            }
            (r.loss / per_step as f64).backward();
            loss_sum += v / per_step as f64;
            d_first += r.dice_first / per_step as f64;
            d_last += r.dice_last / per_step as f64;
            passes += r.clicks;
            samples += 1;
        }
        let gnorm = opt.grad_norm();
        if !gnorm.is_finite() {
            return Err(TrainError::NonFinite { step, term: "gradient norm".into(), value: gnorm });
        }
        let gscale = if t.clip > 0.0 && gnorm > t.clip { t.clip / gnorm } else { 1.0 };
        opt.step(lr, t.weight_decay, gscale);
        losses.push((step, loss_sum));
        let secs = ts.elapsed().as_secs_f64();
        append_log(
            &log_path,
            &serde_json::json!({
                "step": step, "loss": loss_sum, "lr": lr, "secs": secs, "grad_norm": gnorm,
                "dice_first_click": d_first, "dice_last_click": d_last, "passes": passes,
                "secs_per_sample": secs / per_step as f64, "family": "sam_med3d",
            }),
        )?;
        if step == start + 1 {
            eprintln!(
                "SAM-Med3D LoRA: step {step} took {secs:.1} s ({:.1} s per sample on {:?}); {} more step(s) ≈ {:.1} min",
                secs / per_step as f64,
                device,
                last - step,
                secs * (last - step) as f64 / 60.0
            );
        }
        let stop = stop_request.asked();
        if (t.checkpoint_every > 0 && step % t.checkpoint_every == 0) || step == last || stop {
            save_state(out, &opt, step, cfg, &base_sha)?;
            f.save_adapter(&out.join("adapter.safetensors"))?;
        }
        progress(step, total);
        if stop {
            stop_request.clear();
            stopped_at = Some(step);
            break;
        }
    }
    Ok(TrainSummary::of_run(start, losses, samples, t0, None, stopped_at))
}
