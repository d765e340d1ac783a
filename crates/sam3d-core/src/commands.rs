//! The command line of the model commands (`infer`, `train`, `eval`): parsed by the front
//! binary `sam3d-studio` (which checks them, then hands the whole command line over) and by
//! `sam3d-studio-engine` (which runs them). Both read the same structs, so the two never
//! disagree about a flag.

use crate::geometry::ViewPlane;
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
    /// Click position in RAS millimetres: X,Y,Z.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
    pub click_ras: Vec<f64>,
    /// View plane the click was made on.
    #[arg(long, default_value = "axial")]
    pub plane: ViewPlane,
    /// Output mask (NIfTI, on the input's grid).
    #[arg(long)]
    pub out_mask: PathBuf,
    /// Output mesh (STL, OBJ or PLY by extension; RAS mm).
    #[arg(long)]
    pub out_mesh: Option<PathBuf>,
    /// Model checkpoint (.safetensors); default: the shipped weights in assets/models/.
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
    #[command(flatten)]
    pub pipeline: PipelineOptions,
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
    #[command(flatten)]
    pub pipeline: PipelineOptions,
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
