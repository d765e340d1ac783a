//! The pipeline options of one click: everything after the network that a user or a study
//! chooses (refinement by the image, continuing wide organs, the three planes, test views,
//! joining region growing, the MR adapter). One value, [`PipelineOptions`], is the `infer` and
//! `eval` flags (`#[command(flatten)]`), the field the viewer sends with each click, and the
//! field an engine session runs with.

use crate::baseline::join::JOIN_NEAR_MM;
use crate::baseline::refine::RefineParams;
use clap::ArgAction;
use serde::{Deserialize, Serialize};

/// How one pass combines the model's shapes from the three planes through the click. The
/// user clicks on one slice, but that point lies on a slice of each plane: the model can run on
/// all three, and the three signed distances (resampled onto the clicked plane's output cube)
/// are combined voxel by voxel. The 2D mask shown is still the clicked plane's; a 2D mask the
/// user drew keeps the pass to that plane alone. The default, [`PlaneFusion::Median`], was
/// chosen on the demo CT's training-side structures (assets/models/README.md). The two other
/// planes' 2D masks and the three shapes run as batches: with the shipped model on two cores the
/// shape stage takes about 0.24 s instead of 0.14 s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaneFusion {
    /// The clicked plane only.
    Own,
    /// The mean of the three signed distances.
    Mean,
    /// Their median: inside where at least two of the three planes say inside.
    #[default]
    Median,
}

impl PlaneFusion {
    pub const ALL: [PlaneFusion; 3] = [PlaneFusion::Own, PlaneFusion::Mean, PlaneFusion::Median];
    pub fn name(self) -> &'static str {
        match self {
            PlaneFusion::Own => "own",
            PlaneFusion::Mean => "mean",
            PlaneFusion::Median => "median",
        }
    }
}

impl std::fmt::Display for PlaneFusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for PlaneFusion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        PlaneFusion::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown plane fusion '{s}' (expected own, mean or median)"))
    }
}

/// The most test views a pass can run in (the engine's `TEST_VIEWS`).
pub const MAX_VIEWS: u8 = 4;

/// What happens to the model's shape after the network, for one click. The defaults are the
/// shipped pipeline (the model card's figures).
#[derive(clap::Args, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineOptions {
    /// The model's mask as it is, without the image refinement of its boundary.
    #[arg(long = "no-refine", action = ArgAction::SetFalse)]
    pub refine: bool,
    /// The refinement's parameters (`eval`'s `--refine-*` flags tune them).
    #[arg(skip)]
    pub refine_params: RefineParams,
    /// One pass only: do not continue an organ wider than the model's output cube with clicks
    /// toward the faces it reaches.
    #[arg(long = "no-extend", action = ArgAction::SetFalse)]
    pub extend: bool,
    /// How each pass combines the model's shapes from the three planes through the click:
    /// own (the clicked plane only), mean or median of the three signed distances.
    #[arg(long, default_value_t)]
    pub planes: PlaneFusion,
    /// Test views: how many small moves of the scan about the click (rotations of 8°, scales
    /// of 0.92–1.08, as in training) each pass also runs the model in, their shapes joining the
    /// planes' per-cell vote (0–4; each adds three forward passes).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=MAX_VIEWS as i64))]
    pub views: u8,
    /// The model's shape alone: do not join region growing from the click where it agrees
    /// with the shape (at most 1.5× its volume, holding 60 % of it).
    #[arg(long = "no-join", action = ArgAction::SetFalse)]
    pub join: bool,
    /// How far from the model's shape (mm) the part of a grown region that leaked may reach and
    /// still be joined, when it then agrees with the shape; 0: a leaking region is dropped whole.
    #[arg(long, default_value_t = JOIN_NEAR_MM, value_parser = parse_mm)]
    pub join_near_mm: f64,
    /// The base weights on an MR scan too: do not put the shipped MR adapter
    /// (assets/models/mr.safetensors) on the model when the scan is MR and no adapter was given.
    #[arg(long = "no-mr-adapter", action = ArgAction::SetFalse)]
    pub mr_adapter: bool,
    /// Refinement prompts without the learned corrector (assets/models/corrector.safetensors):
    /// each positive or negative point then goes through the model's pass at the point and the
    /// rules of `baseline::prompted` alone.
    #[arg(long = "no-corrector", action = ArgAction::SetFalse)]
    pub corrector: bool,
    /// One scale only: do not run a small shape's pass again in the scan magnified about the
    /// click. By default (`data::zoom`), when the click's shape is small (under 24 mm in
    /// equivalent radius) its pass runs again magnified (up to 4x: 0.75 mm pixels, 1 mm cells)
    /// and replaces it, unless the magnified object reaches its cube's faces. The shipped weights
    /// are trained at those scales (`augment.zoom_prob`).
    #[arg(long = "no-zoom", action = ArgAction::SetFalse)]
    pub zoom: bool,
    /// Without the close-up probe: a shape too large to be zoomed stands as it is. By default
    /// (with the zoom, `data::zoom`), the 2D head also looks at the click magnified 4x, and a
    /// closed object there that is unlike the first shape and has an edge in the scan (a lesion
    /// inside the organ the first shape took) is seen at its own zoom instead.
    #[arg(long = "no-close-up", action = ArgAction::SetFalse)]
    pub close_up: bool,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions {
            refine: true,
            refine_params: RefineParams::default(),
            extend: true,
            planes: PlaneFusion::default(),
            views: 0,
            join: true,
            join_near_mm: JOIN_NEAR_MM,
            mr_adapter: true,
            corrector: true,
            zoom: true,
            close_up: true,
        }
    }
}

impl PipelineOptions {
    /// The refinement to run, `None` when off.
    pub fn refine(&self) -> Option<&RefineParams> {
        self.refine.then_some(&self.refine_params)
    }
    /// How far a leaking grown region's near part may reach (`None`: a leak is dropped whole).
    pub fn join_near(&self) -> Option<f64> {
        (self.join_near_mm > 0.0).then_some(self.join_near_mm)
    }
    /// An error naming the option when a value cannot mean anything (a hand-written request).
    pub fn check(&self) -> Result<(), String> {
        if !(self.join_near_mm.is_finite() && self.join_near_mm >= 0.0) {
            return Err(format!("join_near_mm: {} is not a distance in mm (a number ≥ 0)", self.join_near_mm));
        }
        if self.views > MAX_VIEWS {
            return Err(format!("views: {} is more than the {MAX_VIEWS} test views there are", self.views));
        }
        self.refine_params.check().map_err(|e| format!("refine_params: {e}"))
    }
}

/// A distance in mm: finite and not negative (0: off where the option says so).
pub fn parse_mm(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("`{s}` is not a distance in mm (a number ≥ 0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        pipeline: PipelineOptions,
    }

    #[test]
    fn no_flags_are_the_shipped_pipeline_and_each_flag_turns_one_thing_off() {
        let none = Flags::try_parse_from(["x"]).expect("parses").pipeline;
        assert_eq!(none, PipelineOptions::default());
        assert!(none.refine().is_some() && none.extend && none.join && none.mr_adapter && none.zoom && none.close_up);
        let all = Flags::try_parse_from(["x", "--no-refine", "--no-extend", "--planes", "own", "--views", "2", "--no-join", "--join-near-mm", "0", "--no-mr-adapter", "--no-zoom", "--no-close-up"])
            .expect("parses")
            .pipeline;
        assert!(all.refine().is_none() && !all.extend && !all.join && !all.mr_adapter && !all.zoom && !all.close_up);
        assert_eq!((all.planes, all.views, all.join_near()), (PlaneFusion::Own, 2, None));
        assert!(Flags::try_parse_from(["x", "--views", "5"]).is_err());
        assert!(Flags::try_parse_from(["x", "--join-near-mm", "-1"]).is_err());
    }

    #[test]
    fn the_value_sent_with_a_click_reads_back_and_missing_fields_are_the_defaults() {
        let o = PipelineOptions { extend: false, planes: PlaneFusion::Mean, ..Default::default() };
        let back: PipelineOptions = serde_json::from_str(&serde_json::to_string(&o).expect("json")).expect("reads");
        assert_eq!(back, o);
        let partial: PipelineOptions = serde_json::from_str(r#"{"join":false}"#).expect("reads");
        assert_eq!(partial, PipelineOptions { join: false, ..Default::default() });
        assert!(serde_json::from_str::<PipelineOptions>(r#"{"joni":false}"#).is_err(), "a misspelt option is refused");
        let bad = PipelineOptions { join_near_mm: f64::NAN, ..Default::default() };
        assert!(bad.check().expect_err("NaN").contains("join_near_mm"));
    }
}
