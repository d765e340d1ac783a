//! Model configuration: a serde struct read from TOML ([`ConfigFile`]) validated once into the
//! runtime [`Config`], with errors that name the offending field (`network.heads: …`).
//! The presets `tiny`, `small`, `base` are the files in `configs/`, compiled in.

use crate::data::click::{ClickParams, ContextParams};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A configuration problem, naming the field (`section.key`) or the file.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

impl ConfigError {
    fn new(field: &str, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

/// `[input]`: how the slice through the click is sampled and normalised.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSection {
    /// `S`: the slice is `S×S` pixels.
    pub image_size: usize,
    /// `s`: isotropic sampling step (mm).
    pub spacing_mm: f64,
    /// CT intensities are clipped to this window (HU) and mapped to 0..1.
    pub ct_window_hu: [f32; 2],
    /// Radius (pixels) of the disc around the click given to the 2D mask head as its prompt.
    pub prior_radius_px: f64,
}

/// `[output]`: the SDF cube.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// `L`: side of the output cube (mm), centred on the click.
    pub cube_mm: f64,
    /// `G`: the SDF grid is `G×G×G`.
    pub grid: usize,
    /// `C`: SDF channels; 1 = class-agnostic.
    pub classes: usize,
}

/// `[network]`: sizes of the transformer and decoder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub dim: usize,
    pub heads: usize,
    /// Image/pointmap patch side (pixels).
    pub patch_size: usize,
    pub encoder_depth: usize,
    pub generator_depth: usize,
    pub mlp_ratio: f64,
    /// Latent tokens per axis: `latent_res³` tokens.
    pub latent_res: usize,
    /// Output channels of each ×2 transposed-convolution stage of the shape decoder.
    pub decoder_channels: Vec<usize>,
}

/// `[volume_context]`: optional 3D patch tokens from the cube around the click.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSection {
    pub enabled: bool,
    /// The context cube is `size³` voxels over the output cube (side `L`).
    pub size: usize,
    pub patch_size: usize,
    /// Image-guided shape decoder: the normalised volume is also sampled on the output grid
    /// (`G³`, the SDF's own cells) and joins every decoder stage through a 3×3×3 convolution, so
    /// the surface can follow the scan's edges at the grid's resolution instead of only the
    /// latent tokens' (`latent_res³`). Off in checkpoints that predate it.
    #[serde(default)]
    pub guide: bool,
}

/// The file format (TOML). Validate with [`ConfigFile::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub name: String,
    pub input: InputSection,
    pub output: OutputSection,
    pub network: NetworkSection,
    pub volume_context: ContextSection,
}

/// A validated configuration. Only built by [`ConfigFile::validate`], so every invariant the
/// network relies on holds (patch sizes divide, heads divide the width, the decoder reaches `G`).
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    spec: ConfigFile,
}

impl std::ops::Deref for Config {
    type Target = ConfigFile;
    fn deref(&self) -> &ConfigFile {
        &self.spec
    }
}

const TINY: &str = include_str!("../../../../configs/tiny.toml");
const SMALL: &str = include_str!("../../../../configs/small.toml");
const BASE: &str = include_str!("../../../../configs/base.toml");

impl ConfigFile {
    pub fn validate(self) -> Result<Config, ConfigError> {
        let i = &self.input;
        let o = &self.output;
        let n = &self.network;
        let c = &self.volume_context;
        let pos = |field: &str, v: usize| if v == 0 { Err(ConfigError::new(field, "must be at least 1")) } else { Ok(()) };
        let pos_f = |field: &str, v: f64| {
            if v.is_finite() && v > 0.0 { Ok(()) } else { Err(ConfigError::new(field, format!("must be a positive number, got {v}"))) }
        };
        pos("input.image_size", i.image_size)?;
        pos_f("input.spacing_mm", i.spacing_mm)?;
        if !(i.ct_window_hu[0].is_finite() && i.ct_window_hu[1].is_finite() && i.ct_window_hu[0] < i.ct_window_hu[1]) {
            return Err(ConfigError::new("input.ct_window_hu", format!("must be [low, high] with low < high, got {:?}", i.ct_window_hu)));
        }
        if !(i.prior_radius_px.is_finite() && i.prior_radius_px >= 0.5) {
            return Err(ConfigError::new("input.prior_radius_px", format!("must be at least 0.5 pixel, got {}", i.prior_radius_px)));
        }
        pos_f("output.cube_mm", o.cube_mm)?;
        pos("output.grid", o.grid)?;
        pos("output.classes", o.classes)?;
        pos("network.dim", n.dim)?;
        pos("network.heads", n.heads)?;
        pos("network.patch_size", n.patch_size)?;
        pos("network.encoder_depth", n.encoder_depth)?;
        pos("network.latent_res", n.latent_res)?;
        pos_f("network.mlp_ratio", n.mlp_ratio)?;
        if !n.dim.is_multiple_of(n.heads) {
            return Err(ConfigError::new("network.heads", format!("{} does not divide network.dim {}", n.heads, n.dim)));
        }
        if !i.image_size.is_multiple_of(n.patch_size) {
            return Err(ConfigError::new(
                "network.patch_size",
                format!("{} does not divide input.image_size {}", n.patch_size, i.image_size),
            ));
        }
        if n.decoder_channels.contains(&0) {
            return Err(ConfigError::new("network.decoder_channels", "every stage needs at least 1 channel"));
        }
        let reached = n.latent_res << n.decoder_channels.len();
        if reached != o.grid {
            return Err(ConfigError::new(
                "output.grid",
                format!(
                    "{} must equal network.latent_res × 2^len(network.decoder_channels) = {} × 2^{} = {reached}",
                    o.grid,
                    n.latent_res,
                    n.decoder_channels.len()
                ),
            ));
        }
        if c.guide && !c.enabled {
            return Err(ConfigError::new("volume_context.guide", "needs volume_context.enabled = true"));
        }
        if c.enabled {
            pos("volume_context.size", c.size)?;
            pos("volume_context.patch_size", c.patch_size)?;
            if !c.size.is_multiple_of(c.patch_size) {
                return Err(ConfigError::new(
                    "volume_context.patch_size",
                    format!("{} does not divide volume_context.size {}", c.patch_size, c.size),
                ));
            }
        }
        Ok(Config { spec: self })
    }
}

impl Config {
    /// Parses and validates TOML text; `origin` names the file in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::new(origin, e.message().to_string()))?;
        file.validate()
    }

    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&origin, format!("cannot read: {e}")))?;
        Self::from_toml_str(&text, &origin)
    }

    /// A preset by name: `tiny`, `small` or `base` (the files in `configs/`).
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "tiny" => Self::from_toml_str(TINY, "configs/tiny.toml"),
            "small" => Self::from_toml_str(SMALL, "configs/small.toml"),
            "base" => Self::from_toml_str(BASE, "configs/base.toml"),
            _ => Err(ConfigError::new("preset", format!("unknown preset '{name}' (expected tiny, small or base)"))),
        }
    }

    /// Tests and CI; see `configs/tiny.toml`.
    pub fn tiny() -> Self {
        Self::preset("tiny").unwrap_or_else(|e| panic!("the compiled-in tiny preset is invalid: {e}"))
    }
    /// The CPU preset; see `configs/small.toml`.
    pub fn small() -> Self {
        Self::preset("small").unwrap_or_else(|e| panic!("the compiled-in small preset is invalid: {e}"))
    }
    /// The GPU preset; see `configs/base.toml`.
    pub fn base() -> Self {
        Self::preset("base").unwrap_or_else(|e| panic!("the compiled-in base preset is invalid: {e}"))
    }

    pub fn spec(&self) -> &ConfigFile {
        &self.spec
    }
    /// The file form, to change a field and validate again.
    pub fn into_file(self) -> ConfigFile {
        self.spec
    }
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.spec).unwrap_or_default()
    }
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.spec).unwrap_or_default()
    }
    pub fn from_json(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let file: ConfigFile = serde_json::from_str(text).map_err(|e| ConfigError::new(origin, format!("config: {e}")))?;
        file.validate()
    }

    /// Patches per side of the slice.
    pub fn patches_per_side(&self) -> usize {
        self.input.image_size / self.network.patch_size
    }
    /// Image (and pointmap) tokens.
    pub fn image_tokens(&self) -> usize {
        self.patches_per_side().pow(2)
    }
    /// Volume-context tokens (0 when off).
    pub fn context_tokens(&self) -> usize {
        if self.volume_context.enabled { (self.volume_context.size / self.volume_context.patch_size).pow(3) } else { 0 }
    }
    pub fn latent_tokens(&self) -> usize {
        self.network.latent_res.pow(3)
    }
    /// Half the output cube side (mm): the pointmap's and the SDF's unit.
    pub fn cube_half_mm(&self) -> f64 {
        self.output.cube_mm / 2.0
    }
    pub fn mlp_hidden(&self) -> usize {
        ((self.network.dim as f64) * self.network.mlp_ratio).round().max(1.0) as usize
    }

    /// What the click preprocessing (`data::click`) needs from this config.
    pub fn click_params(&self) -> ClickParams {
        ClickParams {
            image_size: self.input.image_size,
            spacing_mm: self.input.spacing_mm,
            cube_mm: self.output.cube_mm,
            grid: self.output.grid,
            ct_window_hu: self.input.ct_window_hu,
            prior_radius_px: self.input.prior_radius_px,
            context: self.volume_context.enabled.then_some(ContextParams { size: self.volume_context.size, guide: self.volume_context.guide }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate() {
        for name in ["tiny", "small", "base"] {
            let c = Config::preset(name).expect(name);
            assert_eq!(c.name, name);
            let back = Config::from_json(&c.to_json(), "json").expect("json round trip");
            assert_eq!(back, c);
            let back = Config::from_toml_str(&c.to_toml(), "toml").expect("toml round trip");
            assert_eq!(back, c);
        }
    }

    #[test]
    fn errors_name_the_field() {
        let mut f = Config::tiny().into_file();
        f.network.heads = 3;
        let e = f.clone().validate().expect_err("3 does not divide 32");
        assert_eq!(e.field, "network.heads");
        f.network.heads = 2;
        f.output.grid = 20;
        assert_eq!(f.clone().validate().expect_err("grid").field, "output.grid");
        let e = Config::from_toml_str(&Config::tiny().to_toml().replace("dim = 32", "dimm = 32"), "x.toml").expect_err("typo");
        assert!(e.to_string().starts_with("x.toml:"), "{e}");
        assert!(e.problem.contains("dimm"), "{e}");
        let mut f = Config::tiny().into_file();
        f.volume_context.enabled = false;
        f.volume_context.guide = true;
        assert_eq!(f.validate().expect_err("guide without context").field, "volume_context.guide");
    }

    #[test]
    fn configs_without_guide_read_as_unguided() {
        let text = Config::small().to_toml().replace("guide = false\n", "");
        assert!(!text.contains("guide"), "{text}");
        let c = Config::from_toml_str(&text, "old.toml").expect("a config written before the guide existed");
        assert!(!c.volume_context.guide);
        assert_eq!(c, Config::small());
    }
}
