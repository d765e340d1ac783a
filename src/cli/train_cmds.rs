//! `preprocess` (plain data, main binary), `train` and `eval` (model commands, forwarded to the
//! engine binary and run by [`super::model_cmds::run_local`]).

use crate::data::preprocess::{SliceSampling, parse_shard, preprocess_dir};
use anyhow::{Context, Result, bail};
use std::path::PathBuf;

/// Arguments of `preprocess`.
#[derive(clap::Args, Debug)]
pub struct PreprocessArgs {
    /// Directory of volume/label pairs (imagesTr/ + labelsTr/, or X.nii.gz + X_labels.nii.gz).
    #[arg(long)]
    pub input: PathBuf,
    /// Cache directory (one .safetensors per case + index.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Isotropic spacing (mm).
    #[arg(long, default_value_t = 3.0)]
    pub spacing: f64,
    #[arg(long, value_enum, default_value = "random-axis")]
    pub slice_sampling: SliceSampling,
    /// Keep the first N labels of each case (ascending ids).
    #[arg(long)]
    pub classes: Option<usize>,
    /// I/N: process pairs I, I+N, … (0-based), for cluster job arrays.
    #[arg(long)]
    pub shard: Option<String>,
}

/// Arguments of `train`.
#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training config (TOML; see configs/smoke.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Output directory: state, model and adapter checkpoints, log.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Continue from DIR/state.safetensors.
    #[arg(long)]
    pub resume: bool,
}

/// Arguments of `eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Directory of volume/label pairs.
    #[arg(long)]
    pub data: PathBuf,
    /// Model checkpoint; without it (and without shipped weights) only the baseline runs.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// LoRA adapter for those weights.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Only the region-growing baseline.
    #[arg(long)]
    pub baseline_only: bool,
    /// Only the model, without the region-growing baseline (for parameter sweeps).
    #[arg(long, conflicts_with = "baseline_only")]
    pub model_only: bool,
    /// Report (CSV); the summary JSON is written beside it.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Only these labels (comma-separated ids; default: every label present).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<u16>,
    /// Run the model without its `volume_context` cube (single-slice mode).
    #[arg(long)]
    pub no_context: bool,
    /// The 2D mask the 3D stage is conditioned on: `model` (its 2D head, as a click gives) or
    /// `reference` (the reference label on the clicked slice, as a user who corrects the 2D mask
    /// gives; rows are named `model_ref2d`).
    #[arg(long, default_value = "model", value_parser = ["model", "reference"])]
    pub mask2d: String,
    /// The model's masks as they are, without the image refinement of their boundary (rows are
    /// named `model_raw`, or `model_ref2d_raw`).
    #[arg(long)]
    pub no_refine: bool,
    /// One pass per click: do not continue organs wider than the model's output cube with
    /// clicks toward the faces they reach.
    #[arg(long)]
    pub no_extend: bool,
    /// How each pass combines the model's shapes from the three planes through the click:
    /// own (the clicked plane only), mean or median of the three signed distances.
    #[arg(long, default_value_t)]
    pub planes: crate::engine::session::PlaneFusion,
    /// Test views: how many small moves of the scan about the click (rotations of 8°, scales
    /// of 0.92–1.08, as in training) each pass also runs the model in, their shapes joining the
    /// planes' per-cell vote (0–4; each adds three forward passes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub views: u8,
    /// The model's shapes alone: do not join region growing from each click where it agrees
    /// with the shape (at most 1.5× its volume, holding 60 % of it).
    #[arg(long)]
    pub no_join: bool,
    /// How far from the model's shape (mm) the part of a grown region that leaked may reach and
    /// still be joined, when it then agrees with the shape; 0: a leaking region is dropped whole.
    #[arg(long, default_value_t = crate::baseline::join::JOIN_NEAR_MM, value_parser = super::model_cmds::parse_mm)]
    pub join_near_mm: f64,
    /// The base weights on an MR scan too: do not put the shipped MR adapter
    /// (assets/models/mr.safetensors) on the model when the scan is MR and no --adapter is given.
    #[arg(long)]
    pub no_mr_adapter: bool,
    /// Where each click lies on its structure's central slice: this fraction of the deepest
    /// point's in-plane depth (1: the deepest point, as a careful user clicks; 0.5: halfway to
    /// the border; smaller: nearer the border).
    #[arg(long, default_value_t = 1.0, value_parser = parse_fraction)]
    pub click_depth: f64,
    /// The refinement's band: farthest a voxel may lie from the model's mask to be added (mm).
    #[arg(long, default_value_t = crate::baseline::refine::RefineParams::default().band_mm)]
    pub refine_band_mm: f64,
    /// The refinement's intensity test: median ± this many robust standard deviations.
    #[arg(long, default_value_t = crate::baseline::refine::RefineParams::default().multiplier)]
    pub refine_multiplier: f64,
    /// The refinement's pruning: the model's voxels farther than this many robust standard
    /// deviations from the median are dropped (`off`: the model's mask is kept whole) [default:
    /// the shipped setting, `RefineParams::default()`]
    #[arg(long, value_parser = parse_or_off, value_name = "K|off")]
    pub refine_prune: Option<OrOff>,
    /// The refinement's statistics: from the mask's interior within this distance of the click
    /// (`off`: the whole interior) [default: the shipped setting]
    #[arg(long, value_parser = parse_or_off, value_name = "MM|off")]
    pub refine_stats_radius_mm: Option<OrOff>,
    /// The refinement's smallest robust standard deviation, as a multiple of 0.3 % of the scan's
    /// intensity range.
    #[arg(long, default_value_t = crate::baseline::refine::RefineParams::default().floor_factor)]
    pub refine_floor_factor: f64,
}

/// A number, or `off` (`None`).
#[derive(Clone, Copy, Debug)]
pub struct OrOff(pub Option<f64>);

/// A fraction in (0, 1].
fn parse_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f <= 1.0 => Ok(f),
        _ => Err(format!("`{s}` is not a fraction in (0, 1] (1: the deepest point)")),
    }
}

fn parse_or_off(s: &str) -> Result<OrOff, String> {
    if s == "off" {
        return Ok(OrOff(None));
    }
    s.parse::<f64>().map(|x| OrOff(Some(x))).map_err(|e| format!("`{s}`: {e} (give a number, or `off`)"))
}

pub fn preprocess(a: &PreprocessArgs) -> Result<()> {
    let shard = a.shard.as_deref().map(parse_shard).transpose().map_err(anyhow::Error::msg)?;
    let n = crate::data::preprocess::find_pairs(&a.input)?.len();
    let n = match shard {
        Some((i, k)) => (0..n).filter(|x| x % k == i).count(),
        None => n,
    };
    let bar = super::progress::Progress::new("preprocess", n as u64);
    let t = std::time::Instant::now();
    let idx = preprocess_dir(&a.input, &a.out, a.spacing, a.slice_sampling, a.classes, shard, &|| bar.inc(1))?;
    bar.finish();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} cases, {} samples → {} ({:.1} s, {:.1} volumes/min)",
        idx.cases.len(),
        idx.samples.len(),
        a.out.display(),
        secs,
        idx.cases.len() as f64 / secs.max(1e-9) * 60.0
    );
    Ok(())
}

/// `train`, in the engine process.
pub fn run_train(a: &TrainArgs) -> Result<()> {
    let cfg = crate::engine::train::TrainConfig::load(&a.config)?;
    if a.resume && !a.out.join("state.safetensors").exists() {
        bail!("{}: --resume but there is no state.safetensors to resume from", a.out.display());
    }
    let total = cfg.train.steps;
    let bar = super::progress::Progress::new("train", total);
    let started = std::cell::Cell::new(false);
    let s = crate::engine::train::train(&cfg, &a.out, a.resume, &|step, _| {
        if !started.replace(true) {
            bar.inc(step.saturating_sub(1));
        }
        bar.inc(1);
    })
    .with_context(|| format!("training into {}", a.out.display()))?;
    bar.finish();
    if s.losses.is_empty() {
        println!("{}: already at step {} of {}; nothing to train", a.out.display(), s.last_step, total);
        return Ok(());
    }
    let first = s.losses.first().map(|l| l.1).unwrap_or(f64::NAN);
    let last = s.losses.last().map(|l| l.1).unwrap_or(f64::NAN);
    println!(
        "steps {}–{}: loss {first:.4} → {last:.4}, {:.1} samples/s, {:.1} s{}",
        s.first_step,
        s.last_step,
        s.samples_per_sec,
        s.secs,
        s.last_validation.map(|v| format!(", validation Dice 2D {:.3}, 3D grid {:.3} ({} clicks)", v.dice_2d, v.dice_3d_grid, v.clicks)).unwrap_or_default()
    );
    Ok(())
}

/// `eval`, in the engine process.
pub fn run_eval(a: &EvalArgs) -> Result<()> {
    let weights = if a.baseline_only {
        None
    } else {
        match (&a.weights, super::model_cmds::default_weights_path()) {
            (Some(w), _) => Some(w.clone()),
            (None, Some(d)) => Some(d),
            (None, None) => {
                eprintln!("no --weights and no shipped weights: evaluating the baseline only");
                None
            }
        }
    };
    if a.adapter.is_some() && weights.is_none() {
        bail!("--adapter needs model weights (--weights)");
    }
    let device = crate::model::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let opts = crate::engine::eval::EvalOptions {
        data: a.data.clone(),
        weights,
        adapter: a.adapter.clone(),
        device,
        grow: Default::default(),
        labels: a.labels.clone(),
        context: !a.no_context,
        reference_mask2d: a.mask2d == "reference",
        baseline: !a.model_only,
        extend: !a.no_extend,
        fusion: a.planes,
        views: a.views as usize,
        join: !a.no_join,
        join_near_mm: (a.join_near_mm > 0.0).then_some(a.join_near_mm),
        mr_adapter: if a.no_mr_adapter || a.adapter.is_some() { None } else { super::model_cmds::default_mr_adapter_path() },
        click_depth: a.click_depth,
        refine: (!a.no_refine).then(|| {
            let d = crate::baseline::refine::RefineParams::default();
            crate::baseline::refine::RefineParams {
                band_mm: a.refine_band_mm,
                multiplier: a.refine_multiplier,
                prune_multiplier: a.refine_prune.map_or(d.prune_multiplier, |o| o.0),
                stats_radius_mm: a.refine_stats_radius_mm.map_or(d.stats_radius_mm, |o| o.0),
                floor_factor: a.refine_floor_factor,
                ..d
            }
        }),
    };
    if let Some(p) = &opts.refine {
        p.check().map_err(anyhow::Error::msg)?;
    }
    let bar = std::cell::RefCell::new(None::<super::progress::Progress>);
    let (rows, summary) =
        crate::engine::eval::evaluate(&opts, &|n| *bar.borrow_mut() = Some(super::progress::Progress::new("eval", n)), &|| {
            if let Some(b) = bar.borrow().as_ref() {
                b.inc(1)
            }
        })?;
    if let Some(b) = bar.borrow().as_ref() {
        b.finish();
    }
    let js = crate::engine::eval::write_report(&a.out, &rows, &summary)?;
    for (m, s) in &summary.methods {
        println!(
            "{m:<11} {} clicks: Dice mean {:.3} worst {:.3} ({}), HD95 mean {} mm{}",
            s.rows,
            s.mean_dice,
            s.worst_dice,
            s.worst_dice_at,
            s.mean_hd95_mm.map(|v| format!("{v:.1}")).unwrap_or("–".into()),
            s.mean_dice_2d.map(|v| format!(", 2D Dice on the clicked slice {v:.3}")).unwrap_or_default()
        );
        if s.by_label.len() > 1 && s.by_label.len() <= 60 {
            print!("{}", crate::engine::eval::label_table(s));
        }
    }
    // The model's worst click, one command away from a look in the viewer (which runs the
    // shipped weights with its own toolbar settings, so other weights or options differ).
    let worst = rows.iter().filter(|r| r.method.starts_with("model")).min_by(|a, b| a.metrics.dice.total_cmp(&b.metrics.dice));
    if let Some(r) = worst
        && let Ok(pairs) = crate::data::preprocess::find_pairs(&a.data)
        && let Some(p) = pairs.iter().find(|p| p.name == r.case)
    {
        let quoted = |p: &std::path::Path| {
            let s = p.display().to_string();
            if s.contains(char::is_whitespace) { format!("'{s}'") } else { s }
        };
        println!(
            "worst click {}/{}/{} (Dice {:.3}); in the viewer (shipped weights, its own settings): sam3d-studio {} --labels {} --at={:.2},{:.2},{:.2} --click {}",
            r.case,
            r.label,
            crate::engine::eval::plane_name(r.plane),
            r.metrics.dice,
            quoted(&p.image),
            quoted(&p.labels),
            r.click[0],
            r.click[1],
            r.click[2],
            crate::engine::eval::plane_name(r.plane)
        );
    }
    println!("report {} and {} ; its clicks worst first in the viewer: sam3d-studio --report {}", a.out.display(), js.display(), a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_or_off;

    #[test]
    fn refinement_options_take_a_number_or_off() {
        assert_eq!(parse_or_off("off").expect("off").0, None);
        assert_eq!(parse_or_off("2.5").expect("number").0, Some(2.5));
        let e = parse_or_off("two").expect_err("not a number");
        assert!(e.contains("`two`") && e.contains("off"), "{e}");
    }

    #[test]
    fn planes_default_to_the_median_and_take_only_known_fusions() {
        use clap::Parser;
        let eval = |extra: &[&str]| {
            let mut args = vec!["sam3d-studio", "eval", "--data", "d", "--out", "r.csv"];
            args.extend_from_slice(extra);
            crate::cli::Cli::try_parse_from(args)
        };
        let planes = |c: crate::cli::Cli| match c.command {
            Some(crate::cli::Command::Eval(a)) => a.planes.name(),
            other => panic!("not eval: {other:?}"),
        };
        assert_eq!(planes(eval(&[]).expect("defaults")), "median");
        match eval(&["--click-depth", "0.5"]).expect("depth").command {
            Some(crate::cli::Command::Eval(a)) => assert_eq!(a.click_depth, 0.5),
            other => panic!("not eval: {other:?}"),
        }
        for bad in ["0", "1.5", "half"] {
            let e = eval(&["--click-depth", bad]).expect_err("not a fraction").to_string();
            assert!(e.contains("fraction"), "{bad}: {e}");
        }
        assert_eq!(planes(eval(&["--planes", "own"]).expect("own")), "own");
        let e = eval(&["--planes", "both"]).expect_err("unknown fusion").to_string();
        assert!(e.contains("both") && e.contains("median"), "{e}");
        let infer = crate::cli::Cli::try_parse_from(["sam3d-studio", "infer", "v.nii.gz", "--click-ras", "1,2,3", "--out-mask", "m.nii.gz", "--planes", "mean"]);
        match infer.expect("infer").command {
            Some(crate::cli::Command::Infer(a)) => assert_eq!((a.planes.name(), a.no_join), ("mean", false)),
            other => panic!("not infer: {other:?}"),
        }
        // No test views unless asked; at most the four there are.
        for (extra, views) in [(&[][..], Some(0)), (&["--views", "2"][..], Some(2)), (&["--views", "5"][..], None)] {
            match eval(extra).map(|c| c.command) {
                Ok(Some(crate::cli::Command::Eval(a))) => assert_eq!(Some(a.views), views, "{extra:?}"),
                Ok(other) => panic!("not eval: {other:?}"),
                Err(e) => assert!(views.is_none() && e.to_string().contains("0..=4"), "{extra:?}: {e}"),
            }
        }
        // The join of region growing is on unless --no-join.
        for (extra, join) in [(&[][..], true), (&["--no-join"][..], false)] {
            match eval(extra).expect("join").command {
                Some(crate::cli::Command::Eval(a)) => assert_eq!(!a.no_join, join, "{extra:?}"),
                other => panic!("not eval: {other:?}"),
            }
        }
        // The near part of a leaking region: 4 mm unless told (0: off); a distance, never negative.
        for (extra, mm) in [(&[][..], 4.0), (&["--join-near-mm", "8"][..], 8.0), (&["--join-near-mm", "0"][..], 0.0)] {
            match eval(extra).expect("near").command {
                Some(crate::cli::Command::Eval(a)) => assert_eq!(a.join_near_mm, mm, "{extra:?}"),
                other => panic!("not eval: {other:?}"),
            }
        }
        for bad in ["-1", "nan", "far"] {
            let arg = format!("--join-near-mm={bad}");
            let e = eval(&[arg.as_str()]).expect_err("not a distance").to_string();
            assert!(e.contains("distance in mm"), "{bad}: {e}");
        }
        let e = crate::cli::Cli::try_parse_from(["sam3d-studio", "infer", "v.nii.gz", "--click-ras", "1,2,3", "--out-mask", "m.nii.gz", "--join-near-mm=-2"]);
        assert!(e.is_err(), "infer refuses a negative distance too");
    }
}
