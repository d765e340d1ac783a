//! The command line of the model commands (`infer`, `train`, `eval`): parsed by the front
//! binary `sam3d-studio` (which checks them, then hands the whole command line over) and by
//! `sam3d-studio-engine` (which runs them). Both read the same structs, so the two never
//! disagree about a flag.

use crate::geometry::{RasMm, ViewPlane};
use crate::prompts::{BoxPrompt, Prompt};
use crate::baseline::refine::RefineParams;
use crate::options::PipelineOptions;
use crate::volume::Modality;
use std::path::PathBuf;

/// Arguments of `infer`.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// Input volume: NIfTI, NRRD, MetaImage, or a DICOM folder or file.
    pub volume: PathBuf,
    /// The DICOM series to read when VOLUME holds several: SeriesNumber, SeriesInstanceUID or
    /// #index in `sam3d-studio info`'s listing.
    #[arg(long, value_name = "N|UID|#INDEX")]
    pub series: Option<crate::volume::dicom::SeriesChoice>,
    /// A positive click in RAS millimetres: X,Y,Z. Repeat it to add what the first missed:
    /// each further click is a prompt of its own, in order.
    #[arg(long, value_name = "X,Y,Z", value_parser = parse_ras, allow_hyphen_values = true, required_unless_present = "box_ras")]
    pub click_ras: Vec<RasMm>,
    /// A negative click in RAS millimetres: X,Y,Z, removing what is under it (repeatable;
    /// applied after the positive clicks, in order).
    #[arg(long, value_name = "X,Y,Z", value_parser = parse_ras, allow_hyphen_values = true)]
    pub negative_ras: Vec<RasMm>,
    /// A box bounding the object, two opposite corners in RAS mm: X0,Y0,Z0,X1,Y1,Z1 (equal
    /// values on one axis: a box drawn on one slice, open along that axis). Without a click its
    /// centre is the first click.
    #[arg(long, value_name = "X0,Y0,Z0,X1,Y1,Z1", value_parser = parse_box, allow_hyphen_values = true)]
    pub box_ras: Option<BoxPrompt>,
    /// View plane the click was made on.
    #[arg(long, default_value = "axial")]
    pub plane: ViewPlane,
    /// Output mask (NIfTI, on the input's grid).
    #[arg(long)]
    pub out_mask: PathBuf,
    /// Output mesh (STL, OBJ or PLY by extension; RAS mm).
    #[arg(long)]
    pub out_mesh: Option<PathBuf>,
    /// Model checkpoint: the project's (.safetensors; default: the shipped weights in
    /// assets/models/) or a published SAM-Med3D one (torch.save .pth, e.g. sam_med3d_turbo.pth).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// LoRA adapter (.safetensors) for those weights.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// auto (CUDA when available), cpu, cuda, cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// ct, mr or auto (guess from the intensities).
    #[arg(long, default_value = "auto")]
    pub modality: Modality,
    /// libtorch threads (default: libtorch's choice).
    #[arg(long)]
    pub threads: Option<i32>,
    /// Print one JSON object (timings per stage, voxel count, volume in ml).
    #[arg(long)]
    pub json: bool,
    /// A benchmark: run the prompts this many times in the same session (a new object each
    /// time, the scan and weights loaded once, as in the viewer) and report each stage's median
    /// over the runs after the first (the first warms libtorch up; with one run, that run).
    /// With more than one run the scan is first smoothed whole for the refinement, as a
    /// viewer's is by the time of its first click (`baseline::smoothed`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
}

impl InferArgs {
    /// The prompts in the order they are applied: the box with the first click (or alone),
    /// then the further clicks, then the negative clicks.
    pub fn prompts(&self) -> Vec<Prompt> {
        let mut out = Vec::new();
        let mut clicks = self.click_ras.iter();
        match (clicks.next(), self.box_ras) {
            (Some(&c), b) => out.push(Prompt { bbox: b, ..Prompt::positive(c) }),
            (None, Some(b)) => out.push(Prompt::boxed(b)),
            (None, None) => {}
        }
        out.extend(clicks.map(|&c| Prompt::positive(c)));
        out.extend(self.negative_ras.iter().map(|&c| Prompt::negative(c)));
        out
    }

    /// Every prompt point with the flag it came from, to check against the volume.
    pub fn points(&self) -> Vec<(&'static str, RasMm)> {
        let mut out: Vec<(&'static str, RasMm)> = self.click_ras.iter().map(|&c| ("--click-ras", c)).collect();
        out.extend(self.negative_ras.iter().map(|&c| ("--negative-ras", c)));
        if let Some(b) = &self.box_ras {
            out.push(("--box-ras (its centre)", b.centre()));
        }
        out
    }
}

/// `X,Y,Z`: three finite numbers (RAS mm).
pub fn parse_ras(s: &str) -> Result<RasMm, String> {
    let v = parse_numbers(s, 3, "X,Y,Z")?;
    Ok(RasMm::new(v[0], v[1], v[2]))
}

/// `X0,Y0,Z0,X1,Y1,Z1`: a box's two opposite corners (RAS mm).
pub fn parse_box(s: &str) -> Result<BoxPrompt, String> {
    let v = parse_numbers(s, 6, "X0,Y0,Z0,X1,Y1,Z1")?;
    BoxPrompt::from_corners([v[0], v[1], v[2], v[3], v[4], v[5]])
}

fn parse_numbers(s: &str, n: usize, form: &str) -> Result<Vec<f64>, String> {
    let v: Vec<f64> = s.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>().map_err(|e| format!("`{s}`: {e} (give {form} in RAS mm)"))?;
    if v.len() != n || !v.iter().all(|x| x.is_finite()) {
        return Err(format!("`{s}`: give {n} finite numbers {form} in RAS mm"));
    }
    Ok(v)
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

/// `train-corrector`'s options (see `engine::train_corrector`).
#[derive(clap::Args, Debug)]
pub struct TrainCorrectorArgs {
    /// A folder of volume/label pairs (repeatable).
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Labels of the `--data` folders never used as targets (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub holdout: Vec<u16>,
    /// CT-like and as many MR-like phantoms made in memory.
    #[arg(long, default_value_t = 4)]
    pub phantoms: usize,
    /// Share of samples from the `--data` folders (the rest from the phantoms).
    #[arg(long, default_value_t = 0.6)]
    pub real_share: f64,
    /// Smallest structure (voxels) trained on.
    #[arg(long, default_value_t = 200)]
    pub min_voxels: usize,
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 50)]
    pub warmup: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Cells along each side of the cube.
    #[arg(long, default_value_t = 48)]
    pub cells: usize,
    /// Channels at full resolution.
    #[arg(long, default_value_t = 8)]
    pub base: i64,
    /// Levels below full resolution.
    #[arg(long, default_value_t = 3)]
    pub levels: usize,
    /// Start from this corrector checkpoint (its size wins over --cells/--base/--levels).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Output folder (corrector.safetensors, log.jsonl).
    #[arg(long)]
    pub out: PathBuf,
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
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    /// Prompts per structure and plane: the first click as above, then up to N − 1 simulated
    /// corrections, each at the deepest point of the largest error region against the reference
    /// (positive in a missed region, negative in a false one); the report gives the Dice after
    /// each.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub clicks: u16,
    /// Where each click lies on its structure's central slice: this fraction of the deepest
    /// point's in-plane depth (1: the deepest point, as a careful user clicks; 0.5: halfway to
    /// the border; smaller: nearer the border).
    #[arg(long, default_value_t = 1.0, value_parser = parse_fraction)]
    pub click_depth: f64,
    /// The refinement's band: farthest a voxel may lie from the model's mask to be added (mm).
    #[arg(long, default_value_t = RefineParams::default().band_mm)]
    pub refine_band_mm: f64,
    /// The refinement's intensity test: median ± this many robust standard deviations.
    #[arg(long, default_value_t = RefineParams::default().multiplier)]
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
    #[arg(long, default_value_t = RefineParams::default().floor_factor)]
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


impl EvalArgs {
    /// The pipeline with the `--refine-*` tuning flags applied to its refinement, checked.
    pub fn pipeline_options(&self) -> Result<PipelineOptions, String> {
        let d = RefineParams::default();
        let mut p = self.pipeline.clone();
        p.refine_params = RefineParams {
            band_mm: self.refine_band_mm,
            multiplier: self.refine_multiplier,
            prune_multiplier: self.refine_prune.map_or(d.prune_multiplier, |o| o.0),
            stats_radius_mm: self.refine_stats_radius_mm.map_or(d.stats_radius_mm, |o| o.0),
            floor_factor: self.refine_floor_factor,
            ..d
        };
        p.check()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_takes_repeated_clicks_negative_clicks_and_a_box() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct I {
            #[command(flatten)]
            a: InferArgs,
        }
        let parse = |extra: &[&str]| {
            let mut v = vec!["x", "ct.nii.gz", "--out-mask", "m.nii.gz"];
            v.extend_from_slice(extra);
            I::try_parse_from(v).map(|i| i.a)
        };
        let a = parse(&["--click-ras", "1,-2,3", "--negative-ras=-4,5,6", "--click-ras", "7,8,-9.5", "--box-ras", "-10,-10,-10,20,20,20"]).expect("parses");
        let p = a.prompts();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].point.map(|q| q.at.to_array()), Some([1.0, -2.0, 3.0]));
        assert!(p[0].bbox.is_some() && p[1].bbox.is_none());
        assert_eq!(p[1], Prompt::positive(RasMm::new(7.0, 8.0, -9.5)));
        assert_eq!(p[2], Prompt::negative(RasMm::new(-4.0, 5.0, 6.0)));
        assert_eq!(a.points().iter().map(|(f, _)| *f).collect::<Vec<_>>(), ["--click-ras", "--click-ras", "--negative-ras", "--box-ras (its centre)"]);
        // A box alone is enough; nothing at all is not.
        let b = parse(&["--box-ras", "0,0,5,10,10,5"]).expect("a 2D box");
        assert_eq!(b.prompts(), vec![Prompt::boxed(BoxPrompt::from_corners([0.0, 0.0, 5.0, 10.0, 10.0, 5.0]).expect("box"))]);
        assert!(parse(&[]).is_err());
        // Two numbers, or seven, are refused with the value quoted.
        let e = parse(&["--click-ras", "1,2"]).expect_err("two numbers").to_string();
        assert!(e.contains("`1,2`") && e.contains("X,Y,Z"), "{e}");
        assert!(parse(&["--click-ras", "1,2,3", "--box-ras", "1,2,3,4,5,6,7"]).is_err());
        assert!(parse(&["--click-ras", "1,2,nan"]).is_err());
    }

    #[test]
    fn refinement_options_take_a_number_or_off() {
        assert_eq!(parse_or_off("off").expect("off").0, None);
        assert_eq!(parse_or_off("2.5").expect("number").0, Some(2.5));
        let e = parse_or_off("two").expect_err("not a number");
        assert!(e.contains("`two`") && e.contains("off"), "{e}");
    }

    #[test]
    fn eval_tuning_flags_reach_the_refinement_and_bad_ones_are_refused() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct E {
            #[command(flatten)]
            a: EvalArgs,
        }
        let parse = |extra: &[&str]| {
            let mut v = vec!["x", "--data", "d", "--out", "r.csv"];
            v.extend_from_slice(extra);
            E::try_parse_from(v).expect("parses").a
        };
        let p = parse(&["--refine-band-mm", "5", "--refine-prune", "2", "--no-extend"]).pipeline_options().expect("fine");
        assert_eq!((p.refine_params.band_mm, p.refine_params.prune_multiplier, p.extend), (5.0, Some(2.0), false));
        assert_eq!(parse(&[]).pipeline_options().expect("defaults"), PipelineOptions::default());
        assert!(parse(&["--refine-band-mm=-3"]).pipeline_options().is_err());
    }
}
