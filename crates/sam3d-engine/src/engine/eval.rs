//! Evaluation (`eval --data DIR [--weights W] [--adapter A] [--baseline-only] --out REPORT.csv`):
//! for each case and label, the clicks a user would make — the deepest interior point of the
//! organ on its central slice in each of the three planes — go through the model (when weights
//! are given) and the region-growing baseline; Dice, IoU, HD95 and ASSD against the reference,
//! and for the model the Dice of its 2D mask on the clicked slice. `--mask2d reference` gives
//! the 3D stage the reference's slice outline instead of the 2D head's. One CSV row per
//! case/label/plane/method and a summary JSON beside it: per method the mean and worst, the
//! mean per plane, and per label (named from the `.tsv` beside the label maps) its mean, worst,
//! mean per plane, HD95 and predicted / reference volume.

use crate::baseline::GrowParams;
use crate::baseline::prompted::PromptedGrowing;
use crate::prompts::{Polarity, Prompt, next_correction};
use crate::data::family::{Family, lesion_size_class};
use crate::data::preprocess::{axis_of_plane, find_pairs, point_at_depth_on_slice, slices_with};
use crate::engine::{InferRequest, NoHooks, Session};
use crate::options::{PipelineOptions, PlaneFusion};
use crate::data::click::{RasFromPixel, slice_ras_from_pixel};
use crate::geometry::{Point3, RasMm, ViewPlane};
use crate::baseline::refine::RefineParams;
use crate::model::Model;
use crate::shape::metrics::{LabelMetrics, mask_metrics};
use crate::volume::{LabelMap, OnGrid};
use ndarray::{Array2, Array3};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Device;

/// One row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct EvalRow {
    pub case: String,
    pub label: u16,
    pub plane: ViewPlane,
    pub method: String,
    pub click: [f64; 3],
    pub metrics: LabelMetrics,
    /// Dice of the 2D mask the 3D stage was conditioned on against the reference on the
    /// clicked slice (model rows only).
    pub dice_2d: Option<f64>,
    pub secs: f64,
    /// Dice after 1, 2, … prompts (`eval --clicks N`: the first click, then the simulated
    /// corrections; a prediction that matches the reference keeps its Dice).
    pub dice_by_prompt: Vec<f64>,
    /// Mean seconds of the prompts after the first (`None` with one prompt).
    pub prompt_secs: Option<f64>,
    /// The reference structure's volume (ml).
    pub reference_ml: f64,
}

/// Mean and worst of one method.
#[derive(Clone, Debug, Serialize)]
pub struct MethodSummary {
    pub rows: usize,
    pub mean_dice: f64,
    pub mean_iou: f64,
    /// Over rows where it is defined (both masks non-empty).
    pub mean_hd95_mm: Option<f64>,
    pub mean_assd_mm: Option<f64>,
    pub worst_dice: f64,
    /// `case/label/plane` of the worst Dice.
    pub worst_dice_at: String,
    pub worst_hd95_mm: Option<f64>,
    /// Over the model's rows: Dice of the 2D mask on the clicked slice.
    pub mean_dice_2d: Option<f64>,
    pub mean_secs: f64,
    /// Mean Dice after 1, 2, … N prompts (`eval --clicks N`).
    pub mean_dice_by_prompt: Vec<f64>,
    /// `case/label/plane` of the rows whose Dice after the last prompt is lower than after the
    /// first (`eval --clicks N`: corrections must never leave a structure worse than its click).
    pub below_first: Vec<String>,
    /// Mean seconds of a prompt after the first (`None` with one prompt).
    pub mean_prompt_secs: Option<f64>,
    /// Mean Dice of the clicks made on each plane (`axial`, `coronal`, `sagittal`).
    pub dice_by_plane: BTreeMap<String, f64>,
    /// Per label, in label order: where the method does well and where it fails.
    pub by_label: Vec<LabelSummary>,
    /// Per structure family (organs, lesions, vessels, lungs, bone; named labels only), and the
    /// lesions by size: what issue 22's model card reports.
    pub by_family: Vec<FamilySummary>,
}

/// One structure family's clicks of one method ([`Family::of`] the label's name).
#[derive(Clone, Debug, Serialize)]
pub struct FamilySummary {
    /// The family's name, or for lesions by size `lesions < 5 ml` etc.
    pub family: String,
    pub labels: usize,
    pub clicks: usize,
    pub mean_dice: f64,
    pub mean_hd95_mm: Option<f64>,
}

/// One label's clicks of one method, over every case that has the label.
#[derive(Clone, Debug, Serialize)]
pub struct LabelSummary {
    pub label: u16,
    /// From the names file beside the label maps (`None`: there is none, or it has no entry).
    pub name: Option<String>,
    pub clicks: usize,
    pub mean_dice: f64,
    /// Mean Dice of the clicks made on each plane.
    pub dice_by_plane: BTreeMap<String, f64>,
    pub mean_hd95_mm: Option<f64>,
    pub worst_dice: f64,
    /// `case/label/plane` of the worst Dice.
    pub worst_dice_at: String,
    /// Mean of predicted / reference voxels: below 1 the method's masks are too small.
    pub volume_ratio: f64,
    /// Model rows: mean Dice of the 2D mask on the clicked slice.
    pub mean_dice_2d: Option<f64>,
    /// Mean Dice after 1, 2, … N prompts.
    pub mean_dice_by_prompt: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalSummary {
    pub data: String,
    pub weights: Option<String>,
    pub adapter: Option<String>,
    /// Whether the 3D stage was given the reference 2D mask (`--mask2d reference`).
    pub reference_mask2d: bool,
    /// The image refinement of the model's masks (`None`: `--no-refine`).
    pub refine: Option<RefineParams>,
    /// Whether organs wider than the output cube were continued (`--no-extend`: false).
    pub extend: bool,
    /// How each pass combined the planes through the click (`--planes`).
    pub fusion: PlaneFusion,
    /// How many test views each pass also ran in (`--views`).
    pub views: usize,
    /// Whether region growing from the click was joined where it agreed (`--no-join`: false).
    pub join: bool,
    /// How far from the shape a leaking region's joined part may reach (`--join-near-mm`; `None`: 0, dropped whole).
    pub join_near_mm: Option<f64>,
    /// The adapter put on for MR scans (`None`: none, `--no-mr-adapter` or an `--adapter`).
    pub mr_adapter: Option<String>,
    /// The corrector the prompts after the first went through (`None`: none was loaded, or
    /// `--no-corrector`: the rules of `baseline::prompted`).
    pub corrector: Option<String>,
    /// The clicks' depth as a fraction of the deepest point's (`--click-depth`; 1: deepest).
    pub click_depth: f64,
    /// Prompts per structure and plane (`--clicks`): the first click, then simulated
    /// corrections ([`crate::prompts::next_correction`]).
    pub clicks: usize,
    pub cases: usize,
    /// The first names file found beside the cases' label maps; later cases' files only add
    /// ids it lacks.
    pub label_names: Option<String>,
    pub methods: BTreeMap<String, MethodSummary>,
}

/// What to evaluate.
pub struct EvalOptions {
    pub data: PathBuf,
    pub weights: Option<PathBuf>,
    pub adapter: Option<PathBuf>,
    pub device: Device,
    pub grow: GrowParams,
    /// Only these labels (empty: every label present).
    pub labels: Vec<u16>,
    /// Give the model its `volume_context` cube (when it has one).
    pub context: bool,
    /// Condition the 3D stage on the reference label's 2D mask on the clicked slice instead of
    /// the model's 2D head: what a user gets who corrects the 2D mask before going to 3D. The
    /// rows' method is then `model_ref2d`.
    pub reference_mask2d: bool,
    /// Run the region-growing baseline on the same clicks (`eval --model-only` turns it off,
    /// for parameter sweeps of the model alone).
    pub baseline: bool,
    /// The pipeline each click runs through (refinement, continuation, planes, test views,
    /// join); without refinement the rows' method gets a `_raw` suffix.
    pub pipeline: PipelineOptions,
    /// The adapter put on the model for MR cases when `adapter` is `None`
    /// (`Session::set_mr_adapter`).
    pub mr_adapter: Option<PathBuf>,
    /// Where on its central slice each click lies: this fraction of the deepest point's
    /// in-plane depth (1: the deepest point; smaller: off-centre, nearer the border).
    pub click_depth: f64,
    /// Prompts per structure and plane: the first click, then `clicks − 1` simulated
    /// corrections (at least 1).
    pub clicks: usize,
}


/// The evaluation clicks of one label: for each plane, the deepest point on the label's central
/// slice along the array axis closest to that plane's normal.
pub fn eval_clicks(labels: &LabelMap, label: u16) -> Vec<(ViewPlane, RasMm)> {
    eval_clicks_at_depth(labels, label, 1.0)
}

/// [`eval_clicks`] at `fraction` of the deepest point's in-plane depth instead of the deepest
/// point (off-centre clicks; see [`point_at_depth_on_slice`]).
pub fn eval_clicks_at_depth(labels: &LabelMap, label: u16, fraction: f64) -> Vec<(ViewPlane, RasMm)> {
    let mask = labels.mask(label);
    let mut out = Vec::new();
    for plane in [ViewPlane::Axial, ViewPlane::Coronal, ViewPlane::Sagittal] {
        let axis = axis_of_plane(labels, plane);
        let s = slices_with(&labels.data, label, axis);
        if s.is_empty() {
            continue;
        }
        if let Some(click) = point_at_depth_on_slice(&mask, axis, s[s.len() / 2], labels, fraction) {
            out.push((plane, click));
        }
    }
    out
}

/// Runs the evaluation; `on_click` is called after each (case, label, plane).
pub fn evaluate(opts: &EvalOptions, total_hint: &dyn Fn(u64), on_click: &dyn Fn()) -> anyhow::Result<(Vec<EvalRow>, EvalSummary)> {
    let pairs = find_pairs(&opts.data)?;
    let mut session = match &opts.weights {
        Some(w) => {
            let mut s = Session::new();
            s.set_options(opts.pipeline.clone())?;
            if super::sam_med3d::is_torch_checkpoint(w) {
                // A published SAM-Med3D checkpoint: its own preprocessing, no context switch.
                s.load_weights(w, opts.device)?;
            } else {
                let mut m = Model::from_checkpoint(w, opts.device)?;
                m.set_use_context(opts.context);
                s.set_model(m)?;
            }
            if let Some(a) = &opts.adapter {
                s.load_adapter(a)?;
            }
            s.set_mr_adapter(opts.mr_adapter.clone())?;
            if let Some(e) = s.corrector_error().filter(|_| opts.pipeline.corrector) {
                anyhow::bail!("the corrector: {e} (--no-corrector evaluates without it)");
            }
            Some(s)
        }
        None => None,
    };
    let mut loaded = Vec::new();
    let mut n_clicks = 0u64;
    let mut names: BTreeMap<u16, String> = BTreeMap::new();
    let mut names_from = None;
    for pair in &pairs {
        // The scan and its labels on its grid (a label map, a DICOM SEG or an RTSTRUCT), with
        // their names (a bad names file costs the report's reader them, not the run).
        let crate::data::preprocess::LoadedCase { volume: vol, labels: lab, names: case_names, .. } = pair.load()?;
        if let Some((n, from)) = case_names {
            for (id, (name, _)) in n {
                names.entry(id).or_insert(name);
            }
            names_from.get_or_insert(from);
        }
        let labels: Vec<u16> =
            lab.counts().into_iter().map(|(l, _)| l).filter(|&l| l != 0 && (opts.labels.is_empty() || opts.labels.contains(&l))).collect();
        let clicks: Vec<(u16, Vec<(ViewPlane, RasMm)>)> = labels.iter().map(|&l| (l, eval_clicks_at_depth(&lab, l, opts.click_depth))).collect();
        n_clicks += clicks.iter().map(|c| c.1.len() as u64).sum::<u64>();
        loaded.push((pair.name.clone(), Arc::new(vol), lab, clicks));
    }
    total_hint(n_clicks);
    let mut rows = Vec::new();
    for (name, vol, lab, clicks) in &loaded {
        if let Some(s) = session.as_mut() {
            s.set_volume(vol.clone(), None)?;
        }
        let sp = lab.spacing_mm();
        let floor = crate::baseline::refine::intensity_floor(vol);
        for (label, cl) in clicks {
            let gt = lab.mask(*label);
            let reference_ml = gt.iter().filter(|&&g| g).count() as f64 * vol.voxel_ml();
            for &(plane, click) in cl {
                if opts.baseline || session.is_none() {
                    let t = std::time::Instant::now();
                    let grid = lab.shape().array_shape();
                    let as_mask = |c: Option<&crate::shape::GridComponent>| c.map_or_else(|| ndarray::Array3::from_elem((grid[0], grid[1], grid[2]), false), |c| c.to_mask(grid));
                    let mut growing = PromptedGrowing::default();
                    let grow = |g: &mut PromptedGrowing, p: &Prompt| {
                        g.add(vol, p, &opts.grow, floor, &|| false).map(as_mask).map_err(|e| anyhow::anyhow!("{}: {e}", pair_name(name)))
                    };
                    let grown = grow(&mut growing, &Prompt::positive(click))?;
                    let secs = t.elapsed().as_secs_f64();
                    let (dice_by_prompt, prompt_secs) = corrections(&grown, &gt, lab, opts.clicks, |p| grow(&mut growing, p))?;
                    rows.push(EvalRow {
                        case: name.clone(),
                        label: *label,
                        plane,
                        method: "baseline".into(),
                        click: click.to_array(),
                        metrics: mask_metrics(*label, grown.view(), gt.view(), sp),
                        dice_2d: None,
                        secs,
                        dice_by_prompt,
                        prompt_secs,
                        reference_ml,
                    });
                }
                if let Some(s) = session.as_mut() {
                    let reference = |ras_from_pixel: &RasFromPixel, n: usize| reference_mask2d(lab, *label, ras_from_pixel, n);
                    let mask2d = s.model().filter(|_| opts.reference_mask2d).map(|m| {
                        let p = m.config().click_params();
                        reference(&slice_ras_from_pixel(click, plane, &p), p.image_size)
                    });
                    let t = std::time::Instant::now();
                    let r = s.infer(&InferRequest { mask2d, ..InferRequest::click(click, plane) }, &mut NoHooks)?;
                    let secs = t.elapsed().as_secs_f64();
                    let pred = r.mask.data.mapv(|v| v != 0);
                    let want2d = reference(&r.ras_from_pixel, r.mask2d.nrows());
                    let mut object = Some(r.object);
                    let (dice_by_prompt, prompt_secs) = corrections(&pred, &gt, lab, opts.clicks, |p| {
                        let next = s.infer(&InferRequest { prompt: p.clone(), plane, mask2d: None, object }, &mut NoHooks)?;
                        object = Some(next.object);
                        Ok(next.mask.data.mapv(|v| v != 0))
                    })?;
                    rows.push(EvalRow {
                        case: name.clone(),
                        label: *label,
                        plane,
                        method: format!("{}{}", if opts.reference_mask2d { "model_ref2d" } else { "model" }, if opts.pipeline.refine { "" } else { "_raw" }),
                        click: click.to_array(),
                        metrics: mask_metrics(*label, pred.view(), gt.view(), sp),
                        dice_2d: Some(dice_2d(&r.mask2d, &want2d)),
                        secs,
                        dice_by_prompt,
                        prompt_secs,
                        reference_ml,
                    });
                }
                on_click();
            }
        }
    }
    let summary = EvalSummary {
        data: opts.data.display().to_string(),
        weights: opts.weights.as_ref().map(|p| p.display().to_string()),
        adapter: opts.adapter.as_ref().map(|p| p.display().to_string()),
        mr_adapter: opts.mr_adapter.as_ref().map(|p| p.display().to_string()),
        corrector: session.as_ref().filter(|_| opts.pipeline.corrector).and_then(|s| s.corrector_path()).map(|p| p.display().to_string()),
        join_near_mm: opts.pipeline.join_near(),
        reference_mask2d: opts.reference_mask2d,
        refine: opts.pipeline.refine().cloned(),
        extend: opts.pipeline.extend,
        fusion: opts.pipeline.planes,
        views: opts.pipeline.views as usize,
        join: opts.pipeline.join,
        click_depth: opts.click_depth,
        clicks: opts.clicks.max(1),
        cases: loaded.len(),
        label_names: names_from.map(|p| p.display().to_string()),
        methods: summarise(&rows, &names),
    };
    Ok((rows, summary))
}

/// The simulated-correction protocol after a first prediction `first`: up to `clicks − 1`
/// prompts, each at [`next_correction`] of the current prediction against `truth` (positive in
/// the largest missed region, negative in the largest false one), run by `prompt`, which
/// returns the prediction after it on `labels`' grid. Returns the Dice after each prompt (the
/// first's included; once the prediction matches the reference it keeps its Dice) and the mean
/// seconds of the prompts after the first.
pub fn corrections(
    first: &Array3<bool>,
    truth: &Array3<bool>,
    labels: &LabelMap,
    clicks: usize,
    mut prompt: impl FnMut(&Prompt) -> anyhow::Result<Array3<bool>>,
) -> anyhow::Result<(Vec<f64>, Option<f64>)> {
    let mut dice = vec![mask_dice(first, truth)];
    let mut pred = first.clone();
    let mut secs = Vec::new();
    for _ in 1..clicks.max(1) {
        let Some(c) = next_correction(pred.view(), truth.view(), labels.spacing()) else {
            dice.push(dice[dice.len() - 1]);
            continue;
        };
        let at = labels.ras_of(c.at);
        let p = match c.polarity {
            Polarity::Positive => Prompt::positive(at),
            Polarity::Negative => Prompt::negative(at),
        };
        let t = std::time::Instant::now();
        pred = prompt(&p)?;
        secs.push(t.elapsed().as_secs_f64());
        dice.push(mask_dice(&pred, truth));
        log::debug!(
            "correction {}: {} at {:?} in a region of {} voxels ({:.1} mm deep): Dice {:.3} → {:.3}",
            dice.len() - 1,
            c.polarity.name(),
            c.at,
            c.region_voxels,
            c.depth_mm,
            dice[dice.len() - 2],
            dice[dice.len() - 1]
        );
    }
    Ok((dice, (!secs.is_empty()).then(|| secs.iter().sum::<f64>() / secs.len() as f64)))
}

/// Dice of two masks on one grid (1 when both are empty).
pub fn mask_dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
    let (mut inter, mut sum) = (0usize, 0usize);
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        inter += (x && y) as usize;
        sum += x as usize + y as usize;
    });
    if sum == 0 { 1.0 } else { 2.0 * inter as f64 / sum as f64 }
}

/// Mean of the rows' Dice after each prompt count (rows with fewer prompts stop counting).
fn mean_by_prompt(rows: &[&EvalRow]) -> Vec<f64> {
    let n = rows.iter().map(|r| r.dice_by_prompt.len()).max().unwrap_or(0);
    (0..n)
        .map(|k| {
            let d: Vec<f64> = rows.iter().filter_map(|r| r.dice_by_prompt.get(k).copied()).collect();
            d.iter().sum::<f64>() / d.len().max(1) as f64
        })
        .collect()
}

/// The reference label on the model's `n×n` slice (nearest voxel of each pixel's centre).
pub fn reference_mask2d(labels: &LabelMap, label: u16, ras_from_pixel: &RasFromPixel, n: usize) -> Array2<bool> {
    let vox_from_pixel = labels.voxel_from_ras() * *ras_from_pixel;
    let shape = labels.shape();
    Array2::from_shape_fn((n, n), |(row, col)| {
        let v = vox_from_pixel.apply(Point3::new(col as f64, row as f64, 0.0));
        shape.array_index(v).is_some_and(|a| labels.data[[a.k, a.j, a.i]] == label)
    })
}

/// Dice of two 2D masks (1 when both are empty).
fn dice_2d(a: &Array2<bool>, b: &Array2<bool>) -> f64 {
    let (mut inter, mut sum) = (0usize, 0usize);
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        inter += (x && y) as usize;
        sum += x as usize + y as usize;
    });
    if sum == 0 { 1.0 } else { 2.0 * inter as f64 / sum as f64 }
}

fn pair_name(n: &str) -> &str {
    n
}

fn mean_opt(xs: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = xs.flatten().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Mean and worst per method, per plane and per label (`names`: label names by id).
pub fn summarise(rows: &[EvalRow], names: &BTreeMap<u16, String>) -> BTreeMap<String, MethodSummary> {
    let mut out = BTreeMap::new();
    let methods: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    for m in methods {
        let rs: Vec<&EvalRow> = rows.iter().filter(|r| r.method == m).collect();
        let n = rs.len() as f64;
        let worst = worst_of(&rs);
        let labels: std::collections::BTreeSet<u16> = rs.iter().map(|r| r.label).collect();
        let by_label = labels
            .into_iter()
            .map(|l| {
                let lr: Vec<&EvalRow> = rs.iter().copied().filter(|r| r.label == l).collect();
                let k = lr.len() as f64;
                let worst = worst_of(&lr);
                LabelSummary {
                    label: l,
                    name: names.get(&l).cloned(),
                    clicks: lr.len(),
                    mean_dice: lr.iter().map(|r| r.metrics.dice).sum::<f64>() / k,
                    dice_by_plane: dice_by_plane(&lr),
                    mean_hd95_mm: mean_opt(lr.iter().map(|r| r.metrics.hd95_mm)),
                    worst_dice: worst.map(|r| r.metrics.dice).unwrap_or(f64::NAN),
                    worst_dice_at: worst.map(row_at).unwrap_or_default(),
                    volume_ratio: lr.iter().map(|r| r.metrics.pred_voxels as f64 / r.metrics.gt_voxels.max(1) as f64).sum::<f64>() / k,
                    mean_dice_2d: mean_opt(lr.iter().map(|r| r.dice_2d)),
                    mean_dice_by_prompt: mean_by_prompt(&lr),
                }
            })
            .collect();
        out.insert(
            m.to_string(),
            MethodSummary {
                rows: rs.len(),
                mean_dice: rs.iter().map(|r| r.metrics.dice).sum::<f64>() / n,
                mean_iou: rs.iter().map(|r| r.metrics.iou).sum::<f64>() / n,
                mean_hd95_mm: mean_opt(rs.iter().map(|r| r.metrics.hd95_mm)),
                mean_assd_mm: mean_opt(rs.iter().map(|r| r.metrics.assd_mm)),
                worst_dice: worst.map(|r| r.metrics.dice).unwrap_or(f64::NAN),
                worst_dice_at: worst.map(row_at).unwrap_or_default(),
                worst_hd95_mm: rs.iter().filter_map(|r| r.metrics.hd95_mm).max_by(f64::total_cmp),
                mean_dice_2d: mean_opt(rs.iter().map(|r| r.dice_2d)),
                mean_secs: rs.iter().map(|r| r.secs).sum::<f64>() / n,
                mean_dice_by_prompt: mean_by_prompt(&rs),
                below_first: rs
                    .iter()
                    .filter(|r| matches!((r.dice_by_prompt.first(), r.dice_by_prompt.last()), (Some(a), Some(b)) if r.dice_by_prompt.len() > 1 && b < a))
                    .map(|r| row_at(r))
                    .collect(),
                mean_prompt_secs: mean_opt(rs.iter().map(|r| r.prompt_secs)),
                dice_by_plane: dice_by_plane(&rs),
                by_family: by_family(&rs, names),
                by_label,
            },
        );
    }
    out
}

/// The rows of each family with at least one, then the lesions by size class (labels without a
/// name are left out: their family is unknown).
fn by_family(rows: &[&EvalRow], names: &BTreeMap<u16, String>) -> Vec<FamilySummary> {
    let family = |r: &EvalRow| names.get(&r.label).map(|n| Family::of(n));
    let summary = |name: String, rs: Vec<&EvalRow>| FamilySummary {
        family: name,
        labels: rs.iter().map(|r| (r.case.as_str(), r.label)).collect::<std::collections::BTreeSet<_>>().len(),
        clicks: rs.len(),
        mean_dice: rs.iter().map(|r| r.metrics.dice).sum::<f64>() / rs.len() as f64,
        mean_hd95_mm: mean_opt(rs.iter().map(|r| r.metrics.hd95_mm)),
    };
    let mut out = Vec::new();
    for f in Family::ALL {
        let rs: Vec<&EvalRow> = rows.iter().copied().filter(|r| family(r) == Some(f)).collect();
        if !rs.is_empty() {
            out.push(summary(f.name().to_string(), rs));
        }
    }
    for class in ["< 5 ml", "5-50 ml", ">= 50 ml"] {
        let rs: Vec<&EvalRow> = rows.iter().copied().filter(|r| family(r) == Some(Family::Lesion) && lesion_size_class(r.reference_ml) == class).collect();
        if !rs.is_empty() {
            out.push(summary(format!("lesions {class}"), rs));
        }
    }
    out
}

/// One method's families as a text table for the terminal.
pub fn family_table(s: &MethodSummary) -> String {
    let mut out = format!("  {:<28} {:>6} {:>6} {:>6} {:>8}\n", "family", "labels", "clicks", "Dice", "HD95 mm");
    for f in &s.by_family {
        let hd = f.mean_hd95_mm.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
        out += &format!("  {:<28} {:>6} {:>6} {:>6.3} {:>8}\n", f.family, f.labels, f.clicks, f.mean_dice, hd);
    }
    out
}

fn worst_of<'a>(rows: &[&'a EvalRow]) -> Option<&'a EvalRow> {
    rows.iter().copied().min_by(|a, b| a.metrics.dice.total_cmp(&b.metrics.dice))
}

fn row_at(r: &EvalRow) -> String {
    format!("{}/{}/{}", r.case, r.label, plane_name(r.plane))
}

/// Mean Dice of the rows made on each plane that has some.
fn dice_by_plane(rows: &[&EvalRow]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for p in ViewPlane::ALL {
        let d: Vec<f64> = rows.iter().filter(|r| r.plane == p).map(|r| r.metrics.dice).collect();
        if !d.is_empty() {
            out.insert(plane_name(p).to_string(), d.iter().sum::<f64>() / d.len() as f64);
        }
    }
    out
}

/// One method's labels as a text table for the terminal: clicks, mean Dice, per plane, HD95,
/// predicted / reference volume and the worst click.
pub fn label_table(s: &MethodSummary) -> String {
    let f = |x: Option<f64>, prec: usize| x.map(|v| format!("{v:.prec$}")).unwrap_or_else(|| "–".into());
    let mut out = format!("  {:<28} {:>6} {:>6} {:>6} {:>7} {:>8} {:>7} {:>8}  worst\n", "label", "clicks", "Dice", "axial", "coronal", "sagittal", "HD95 mm", "pred/ref");
    for l in &s.by_label {
        let name = format!("{} {}", l.label, l.name.as_deref().unwrap_or(""));
        let plane = |p: ViewPlane| f(l.dice_by_plane.get(plane_name(p)).copied(), 3);
        out += &format!(
            "  {:<28} {:>6} {:>6.3} {:>6} {:>7} {:>8} {:>7} {:>8.2}  {:.3} ({})\n",
            name.trim_end(),
            l.clicks,
            l.mean_dice,
            plane(ViewPlane::Axial),
            plane(ViewPlane::Coronal),
            plane(ViewPlane::Sagittal),
            f(l.mean_hd95_mm, 1),
            l.volume_ratio,
            l.worst_dice,
            l.worst_dice_at
        );
    }
    out
}

pub fn plane_name(p: ViewPlane) -> &'static str {
    match p {
        ViewPlane::Axial => "axial",
        ViewPlane::Coronal => "coronal",
        ViewPlane::Sagittal => "sagittal",
    }
}

/// The CSV header.
pub const CSV_HEADER: &str = "case,label,plane,method,click_r,click_a,click_s,dice,iou,hd95_mm,assd_mm,pred_voxels,gt_voxels,secs,dice_2d";

/// The report as CSV text (empty cells where a distance is undefined). With more than one
/// prompt per row (`eval --clicks N`), the columns `dice_after_1` … `dice_after_N` follow
/// [`CSV_HEADER`]'s (the metrics columns are the first click's).
pub fn to_csv(rows: &[EvalRow]) -> String {
    let o = |x: Option<f64>| x.map(|v| format!("{v:.4}")).unwrap_or_default();
    let prompts = rows.iter().map(|r| r.dice_by_prompt.len()).max().unwrap_or(0);
    let mut s = CSV_HEADER.to_string();
    if prompts > 1 {
        for k in 1..=prompts {
            s += &format!(",dice_after_{k}");
        }
    }
    s += "\n";
    for r in rows {
        let after: String = if prompts > 1 { (0..prompts).map(|k| format!(",{}", r.dice_by_prompt.get(k).map(|d| format!("{d:.5}")).unwrap_or_default())).collect() } else { String::new() };
        s += &format!(
            "{},{},{},{},{:.2},{:.2},{:.2},{:.5},{:.5},{},{},{},{},{:.3},{}{after}\n",
            r.case,
            r.label,
            plane_name(r.plane),
            r.method,
            r.click[0],
            r.click[1],
            r.click[2],
            r.metrics.dice,
            r.metrics.iou,
            o(r.metrics.hd95_mm),
            o(r.metrics.assd_mm),
            r.metrics.pred_voxels,
            r.metrics.gt_voxels,
            r.secs,
            r.dice_2d.map(|d| format!("{d:.5}")).unwrap_or_default()
        );
    }
    s
}

/// Writes `out` (CSV) and the summary beside it (`out` with extension `.json`), atomically.
pub fn write_report(out: &Path, rows: &[EvalRow], summary: &EvalSummary) -> anyhow::Result<PathBuf> {
    let csv = to_csv(rows);
    crate::volume::atomic_write(out, |w| std::io::Write::write_all(w, csv.as_bytes()))?;
    let js = out.with_extension("json");
    let text = serde_json::to_string_pretty(summary)?;
    crate::volume::atomic_write(&js, |w| std::io::Write::write_all(w, text.as_bytes()))?;
    Ok(js)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, label: u16, dice: f64, reference_ml: f64) -> EvalRow {
        EvalRow {
            case: case.into(),
            label,
            plane: ViewPlane::Axial,
            method: "model".into(),
            click: [0.0; 3],
            metrics: LabelMetrics {
                label,
                dice,
                iou: dice / (2.0 - dice),
                hd95_mm: Some(10.0 * (1.0 - dice)),
                hd_mm: None,
                assd_mm: None,
                chamfer_mm: None,
                avg_gt_to_pred_mm: None,
                avg_pred_to_gt_mm: None,
                pred_voxels: 10,
                gt_voxels: 10,
            },
            dice_2d: None,
            secs: 0.1,
            dice_by_prompt: vec![dice],
            prompt_secs: None,
            reference_ml,
        }
    }

    /// Families pool their clicks over cases (a mean over clicks, not over labels), unnamed
    /// labels stay out, and lesions split by their reference volume at 5 and 50 ml.
    #[test]
    fn families_pool_clicks_and_lesions_split_by_size() {
        let names: BTreeMap<u16, String> =
            [(5, "liver"), (1, "spleen"), (52, "aorta"), (140, "liver_lesion_1"), (130, "lung_nodule_1"), (30, "vertebrae_L2")].into_iter().map(|(k, v)| (k, v.to_string())).collect();
        let rows = vec![
            row("a", 5, 0.9, 1500.0),
            row("a", 5, 0.8, 1500.0),
            row("b", 1, 0.6, 200.0),
            row("a", 52, 0.4, 90.0),
            row("a", 140, 0.2, 2.0),
            row("b", 140, 0.6, 20.0),
            row("b", 130, 0.7, 120.0),
            row("a", 30, 0.5, 60.0),
            row("a", 99, 0.0, 10.0),
        ];
        let s = &summarise(&rows, &names)["model"];
        let fam: BTreeMap<&str, (usize, usize, f64)> = s.by_family.iter().map(|f| (f.family.as_str(), (f.labels, f.clicks, f.mean_dice))).collect();
        let close = |name: &str, labels: usize, clicks: usize, dice: f64| {
            let (l, c, d) = fam[name];
            assert_eq!((l, c), (labels, clicks), "{name}");
            assert!((d - dice).abs() < 1e-12, "{name}: {d} against {dice}");
        };
        close("organs", 2, 3, (0.9 + 0.8 + 0.6) / 3.0);
        close("vessels", 1, 1, 0.4);
        close("bone", 1, 1, 0.5);
        close("lesions", 3, 3, 0.5);
        close("lesions < 5 ml", 1, 1, 0.2);
        close("lesions 5-50 ml", 1, 1, 0.6);
        close("lesions >= 50 ml", 1, 1, 0.7);
        assert!(!fam.contains_key("other") && !fam.contains_key("lungs and airways"), "{fam:?}");
        assert!(family_table(s).contains("lesions 5-50 ml"));
    }
}
