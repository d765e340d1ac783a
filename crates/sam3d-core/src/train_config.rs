//! The training config: the TOML a `train` run reads (`configs/*.toml`) and the fine-tuning
//! panel writes, checked once with errors that name the field (`train.lr: …`). The engine
//! trains from it ([`TrainConfig`]); the viewer writes and checks it without the engine.

/// A file of this name in a run's folder asks the running `train` to stop after its current
/// step, writing a checkpoint there first (the fine-tuning panel's Stop); `train` removes it.
pub const STOP_REQUEST_FILE: &str = "stop.request";

/// Whether a weights file is named as a PyTorch checkpoint (`.pth`, `.pt`, `.ckpt`): a published
/// SAM-Med3D one, fine-tuned with `model.family = "sam_med3d"` (the engine also looks at the
/// file's first bytes).
pub fn is_torch_checkpoint_name(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    matches!(ext.as_str(), "pth" | "pt" | "ckpt")
}

/// What one SAM-Med3D ViT-B training sample costs on a CPU (s: the encoder's forward and
/// backward at 128³, measured on two cores), for the estimate the fine-tuning panel shows
/// before Start.
pub const SAM_MED3D_CPU_SECS_PER_SAMPLE: f64 = 37.0;

/// The name of `train`'s progress before its first step (loading the cases, making the
/// validation clicks), beside the steps' own `train`.
pub const PREPARE_PROGRESS: &str = "prepare";

use crate::data::train_samples::AugmentParams;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration problem: the field (`section.key`) or the file, and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct TrainConfigError {
    pub field: String,
    pub problem: String,
}


#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Which network: `sam3d` (the project's own; the default when absent) or `sam_med3d` (a
    /// published SAM-Med3D checkpoint given as `base_checkpoint`, fine-tuned with LoRA only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// `tiny`, `small` or `base` (or give `config`).
    #[serde(default)]
    pub preset: Option<String>,
    /// A model config file (TOML) instead of a preset.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// Start from these base weights (required for a meaningful LoRA run).
    #[serde(default)]
    pub base_checkpoint: Option<PathBuf>,
    /// Warm start for full training: the model is built from `preset`/`config` (which adds
    /// `volume_context.guide` to this checkpoint's config) and takes this checkpoint's weights;
    /// the new guide branches start at zero (see `Model::init_from`).
    #[serde(default)]
    pub init_checkpoint: Option<PathBuf>,
    #[serde(default = "default_device")]
    pub device: String,
}
fn default_device() -> String {
    "cpu".into()
}

/// Phantoms to write into the first data directory when it is missing.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PhantomGen {
    pub cases: usize,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_modality")]
    pub modality: String,
    /// `small` (coarse 2–4.5 mm voxels, 0.45-scale body) or `medium` (adult-sized organs at
    /// 1.5–2.5 mm in-plane, 3–5 mm slices).
    #[serde(default = "default_phantom_size")]
    pub size: String,
}
fn default_phantom_size() -> String {
    "small".into()
}

/// Labels of some cases kept out of training (e.g. the organs of a real scan that validation
/// measures).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Holdout {
    /// Applies to the cases whose name contains this text (empty: every case).
    #[serde(default)]
    pub case: String,
    pub classes: Vec<u16>,
}
fn default_modality() -> String {
    "ct".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Data folders: volume/label pairs (`X.nii.gz` + `X_labels.nii.gz`, imagesTr/labelsTr) or
    /// case folders (a DICOM series with its SEG or RTSTRUCT); the rules are `data::cases`'.
    pub dirs: Vec<PathBuf>,
    #[serde(default)]
    pub phantoms: Option<PhantomGen>,
    /// Labels to train on (empty: every label present).
    #[serde(default)]
    pub classes: Vec<u16>,
    /// The last N cases of the first directory are held out for validation (when it has more
    /// than N cases).
    #[serde(default = "one")]
    pub val_cases: usize,
    /// Use only the first N training cases (0: all).
    #[serde(default)]
    pub max_cases: usize,
    /// Share of the samples drawn from each directory (parallel to `dirs`; empty: each case
    /// equally likely).
    #[serde(default)]
    pub dir_weights: Vec<f64>,
    /// Labels never trained on.
    #[serde(default)]
    pub holdout: Vec<Holdout>,
    /// Classes with fewer inside voxels are skipped (too small to click on).
    #[serde(default = "default_min_voxels")]
    pub min_voxels: usize,
    /// Classes of a case are drawn with probability ∝ (inside voxels)^power (0: uniformly).
    /// With dozens of small labelled structures in a real scan (ribs, vertebrae, vessels), a
    /// uniform draw shows the model few large organs.
    #[serde(default)]
    pub class_weight_power: f64,
    /// `class_weight_power` per directory (parallel to `dirs`; empty: `class_weight_power` for
    /// every one): a folder of phantoms with a few small lesions among large organs draws its
    /// classes uniformly (0) while a real scan's draw favours its organs.
    #[serde(default)]
    pub dir_class_weight_power: Vec<f64>,
}
fn default_min_voxels() -> usize {
    27
}
fn one() -> usize {
    1
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub warmup: u64,
    /// The cosine ends at `lr × min_lr_frac`.
    pub min_lr_frac: f64,
    pub weight_decay: f64,
    /// Micro-batches per optimiser step.
    pub accum: usize,
    /// Global gradient-norm clip (0: off).
    pub clip: f64,
    pub seed: u64,
    /// Steps of the first curriculum phase (2D + coarse 3D).
    pub curriculum_step: u64,
    /// Validate every N steps (0: only at the end).
    pub val_every: u64,
    /// Checkpoint every N steps (0: only at the end).
    pub checkpoint_every: u64,
    /// libtorch threads (default: libtorch's choice).
    pub threads: Option<i32>,
    /// Micro-batches the sample thread may prepare ahead.
    pub prefetch: usize,
    /// Cycle over the first N samples, without augmentation (0: off): the overfitting check.
    pub fixed_samples: u64,
    /// Fraction of micro-batches trained without the `volume_context` cube, so that one model
    /// serves both modes.
    pub context_dropout: f64,
    /// Fraction of samples whose 3D stage is conditioned on the 2D head's own (detached,
    /// thresholded) mask, as at inference, instead of the true slice mask.
    pub pred_mask_frac: f64,
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            steps: 100,
            batch: 4,
            lr: 1e-3,
            warmup: 10,
            min_lr_frac: 0.1,
            weight_decay: 0.01,
            accum: 1,
            clip: 1.0,
            seed: 0,
            curriculum_step: 0,
            val_every: 0,
            checkpoint_every: 0,
            threads: None,
            prefetch: 4,
            fixed_samples: 0,
            context_dropout: 0.0,
            pred_mask_frac: 0.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LossSection {
    pub mask_bce: f64,
    pub mask_dice: f64,
    pub occupancy: f64,
    pub sdf_l1: f64,
    /// Soft Dice of the 3D occupancy (balances small organs against the far background).
    pub occupancy_dice: f64,
    /// Symmetric surface term (Chamfer with the SDFs as distance fields): the predicted SDF on
    /// the true surface cells, and the true SDF where the prediction puts its surface.
    pub chamfer: f64,
    /// SDF truncation (units of L/2).
    pub sdf_trunc: f64,
    /// Factor on the 2D terms during the first curriculum phase.
    pub curriculum_2d_boost: f64,
}

impl Default for LossSection {
    fn default() -> Self {
        LossSection {
            mask_bce: 1.0,
            mask_dice: 1.0,
            occupancy: 1.0,
            sdf_l1: 1.0,
            occupancy_dice: 1.0,
            chamfer: 0.0,
            sdf_trunc: 0.2,
            curriculum_2d_boost: 2.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LoraSection {
    #[serde(default)]
    pub enabled: bool,
    #[serde(flatten)]
    pub config: LoraConfig,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DebugSection {
    /// Multiplies the SDF L1 term by NaN at this step (tests the non-finite stop).
    pub nan_at_step: Option<u64>,
    /// Stop (after checkpointing) once this step is done, as an interrupted run would.
    pub stop_after: Option<u64>,
}

/// `train --config C.toml`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub model: ModelSection,
    pub data: DataSection,
    #[serde(default)]
    pub train: TrainSection,
    #[serde(default)]
    pub loss: LossSection,
    #[serde(default)]
    pub lora: Option<LoraSection>,
    #[serde(default)]
    pub augment: AugmentParams,
    #[serde(default)]
    pub debug: DebugSection,
    /// SAM-Med3D fine-tuning (`model.family = "sam_med3d"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sam_med3d: Option<SamMed3dSection>,
}

/// The model families a training config can name (`model.family`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFamily {
    /// The project's own SAM3D network.
    Sam3d,
    /// A published SAM-Med3D checkpoint (`.pth`).
    SamMed3d,
}

impl ModelSection {
    /// The family named by `model.family` (`sam3d` when absent).
    pub fn family(&self) -> Result<ModelFamily, TrainConfigError> {
        match self.family.as_deref() {
            None | Some("sam3d") => Ok(ModelFamily::Sam3d),
            Some("sam_med3d") => Ok(ModelFamily::SamMed3d),
            Some(other) => Err(TrainConfigError { field: "model.family".into(), problem: format!("'{other}': expected sam3d or sam_med3d") }),
        }
    }
}

/// How SAM-Med3D samples are made (`[sam_med3d]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SamMed3dSection {
    /// Decoder passes per sample: the first positive click, then `clicks − 1` simulated
    /// corrections (a click in the larger error region, the previous logits as mask prompt).
    pub clicks: usize,
}

impl Default for SamMed3dSection {
    fn default() -> Self {
        SamMed3dSection { clicks: 3 }
    }
}

impl TrainConfig {
    /// Parses TOML; relative paths are taken relative to `base_dir`.
    pub fn from_toml_str(text: &str, origin: &str, base_dir: &Path) -> Result<Self, TrainConfigError> {
        let mut c: TrainConfig =
            toml::from_str(text).map_err(|e| TrainConfigError { field: origin.into(), problem: e.message().to_string() })?;
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base_dir.join(&*p);
            }
        };
        c.data.dirs.iter_mut().for_each(fix);
        c.model.config.iter_mut().for_each(fix);
        c.model.base_checkpoint.iter_mut().for_each(fix);
        c.model.init_checkpoint.iter_mut().for_each(fix);
        c.check()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self, TrainConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainConfigError { field: path.display().to_string(), problem: format!("cannot read: {e}") })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self::from_toml_str(&text, &path.display().to_string(), dir)
    }

    pub fn check(&self) -> Result<(), TrainConfigError> {
        let bad = |f: &str, p: String| Err(TrainConfigError { field: f.into(), problem: p });
        let t = &self.train;
        if t.steps == 0 {
            return bad("train.steps", "must be at least 1".into());
        }
        if t.batch == 0 || t.accum == 0 {
            return bad("train.batch", "batch and accum must be at least 1".into());
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", format!("must be positive, got {}", t.lr));
        }
        if self.data.dirs.is_empty() {
            return bad("data.dirs", "give at least one directory".into());
        }
        if self.model.family()? == ModelFamily::SamMed3d {
            self.check_sam_med3d()?;
        } else {
            if self.sam_med3d.is_some() {
                return bad("sam_med3d", "this section is for model.family = \"sam_med3d\"".into());
            }
            if self.model.preset.is_none() && self.model.config.is_none() && self.model.base_checkpoint.is_none() {
                return bad("model", "give preset, config or base_checkpoint".into());
            }
            if self.model.init_checkpoint.is_some() && self.model.base_checkpoint.is_some() {
                return bad("model.init_checkpoint", "give init_checkpoint (warm start of a guided model) or base_checkpoint, not both".into());
            }
        }
        if !self.data.dir_weights.is_empty() && self.data.dir_weights.len() != self.data.dirs.len() {
            return bad("data.dir_weights", format!("{} weights for {} directories", self.data.dir_weights.len(), self.data.dirs.len()));
        }
        if !(0.0..=1.0).contains(&self.data.class_weight_power) {
            return bad("data.class_weight_power", format!("{} is outside [0, 1]", self.data.class_weight_power));
        }
        if !self.data.dir_class_weight_power.is_empty() && self.data.dir_class_weight_power.len() != self.data.dirs.len() {
            return bad("data.dir_class_weight_power", format!("{} powers for {} directories", self.data.dir_class_weight_power.len(), self.data.dirs.len()));
        }
        if let Some(w) = self.data.dir_class_weight_power.iter().find(|w| !(0.0..=1.0).contains(*w)) {
            return bad("data.dir_class_weight_power", format!("{w} is outside [0, 1]"));
        }
        if self.data.dir_weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return bad("data.dir_weights", "weights must be finite and non-negative".into());
        }
        for (f, v) in [("train.context_dropout", t.context_dropout), ("train.pred_mask_frac", t.pred_mask_frac), ("augment.zoom_prob", self.augment.zoom_prob)] {
            if !(0.0..=1.0).contains(&v) {
                return bad(f, format!("must be between 0 and 1, got {v}"));
            }
        }
        Ok(())
    }

    /// What SAM-Med3D fine-tuning needs: a `.pth` base, LoRA on, none of the project model's
    /// own keys.
    fn check_sam_med3d(&self) -> Result<(), TrainConfigError> {
        let bad = |f: &str, p: &str| Err(TrainConfigError { field: f.into(), problem: p.into() });
        let m = &self.model;
        if m.base_checkpoint.is_none() {
            return bad("model.base_checkpoint", "model.family = \"sam_med3d\" fine-tunes a published checkpoint: give its .pth file");
        }
        if m.preset.is_some() || m.config.is_some() || m.init_checkpoint.is_some() {
            return bad("model", "preset, config and init_checkpoint are for the project's own model; SAM-Med3D's architecture comes from base_checkpoint");
        }
        let Some(l) = self.lora.as_ref().filter(|l| l.enabled) else {
            return bad("lora.enabled", "SAM-Med3D is fine-tuned with LoRA only (the base stays frozen): add [lora] with enabled = true, rank and alpha");
        };
        // No targets: the engine's SAM-Med3D defaults.
        let mut c = l.config.clone();
        if c.targets.is_empty() {
            c.targets.push("default".into());
        }
        // The message names its field (`lora.rank: …`).
        c.check().map_err(|p| match p.split_once(": ") {
            Some((field, problem)) => TrainConfigError { field: field.into(), problem: problem.into() },
            None => TrainConfigError { field: "lora".into(), problem: p.clone() },
        })?;
        if self.sam_med3d.as_ref().is_some_and(|s| s.clicks == 0) {
            return bad("sam_med3d.clicks", "must be at least 1 (the first click)");
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// LoRA

/// Which linears get adapters, and how big.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Name patterns, as PEFT's `target_modules`: a pattern matches a linear whose dotted name
    /// equals it or ends with `.pattern` (`to_qkv` matches `encoder.blocks.0.attn.to_qkv`);
    /// `*` matches any run of characters (`generator.*.to_q`). SAM-Med3D takes its default
    /// targets when none are given; the project's model needs them.
    #[serde(default)]
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    /// The fine-tuning plan's default: r = 8, alpha = 16 on every attention linear.
    fn default() -> Self {
        Self { rank: 8, alpha: 16.0, dropout: 0.0, targets: vec!["to_qkv".into(), "to_q".into(), "to_kv".into(), "to_out".into()] }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Problems with the numbers themselves (field-named).
    pub fn check(&self) -> Result<(), String> {
        if self.rank == 0 {
            return Err("lora.rank: must be at least 1".into());
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(format!("lora.alpha: must be positive, got {}", self.alpha));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("lora.dropout: must be in [0, 1), got {}", self.dropout));
        }
        if self.targets.is_empty() {
            return Err("lora.targets: at least one name pattern is needed".into());
        }
        Ok(())
    }

    pub fn matches(&self, name: &str) -> bool {
        self.targets.iter().any(|p| pattern_matches(p, name))
    }
}

/// PEFT-style suffix match with `*` wildcards.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        return glob(pattern.as_bytes(), name.as_bytes());
    }
    name == pattern || name.ends_with(&format!(".{pattern}"))
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.split_first().is_some_and(|(d, srest)| c == d && glob(rest, srest)),
    }
}

