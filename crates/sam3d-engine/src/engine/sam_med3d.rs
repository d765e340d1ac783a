//! A published SAM-Med3D checkpoint as the session's model: the file read and checked
//! ([`crate::model::torchfile`]), the network ([`crate::model::sam_med3d`]), and one prompt →
//! the object's candidate on the source grid.
//!
//! Each object lives in a 128³ cube of 1.5 mm cells ([`crate::data::sam_med3d`]) placed at its
//! first point. The cube's image embedding is computed once and cached, so later prompts in the
//! same cube cost the prompt encoder and the decoder only. Every prompt decodes all of the
//! object's points that fall in the cube (positive and negative) with the previous step's
//! low-resolution logits as the mask prompt, as SAM-Med3D's interactive evaluation does. A
//! positive point outside the cube starts a new cube there and what it finds is added to the
//! object. The decoded logits, upsampled trilinearly to the cube, go back onto the source grid
//! through `geometry` ([`crate::shape::component::sdf_component_on_grid`]); the parts holding a
//! positive point are kept and cut to the prompts ([`crate::baseline::prompted::constrain`]:
//! clipped to a box, split from negative points).
//!
//! A LoRA adapter ([`crate::model::sam_med3d::lora`]) can be attached, saved and loaded here
//! ([`Foundation::attach_lora`], [`Foundation::save_adapter`], [`Foundation::load_adapter`]):
//! its file names this checkpoint by file name and SHA-256 (hashed once, when an adapter first
//! needs it), and the cached embedding is dropped whenever the adapter changes.

use crate::data::click::{ClickParams, RasFromPixel, slice_ras_from_pixel};
use crate::data::sam_med3d::{Crop, SPACING_MM, crop};
use crate::engine::session::{EngineError, Hooks};
use crate::geometry::{Point3, RasMm, ViewPlane};
use crate::model::lora::LoraConfig;
use crate::model::sam_med3d::lora::{self as sam_lora, BaseId, SamLora};
use crate::model::sam_med3d::{SamMed3d, SamMed3dConfig};
use crate::model::torchfile::{self, Family, TorchFile};
use crate::model::{ModelError, ModelInfo};
use crate::prompts::PromptSet;
use crate::protocol::{SAM_MED3D_PRESET, Stage, Timings};
use crate::shape::GridComponent;
use crate::volume::{OnGrid, Volume};
use ndarray::{Array2, Array3};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{Device, Kind, Tensor, nn};

/// What a step of an object keeps for the next one: its cube and its low-resolution logits.
#[derive(Debug)]
pub struct FoundationStep {
    pub crop: Arc<Crop>,
    pub low_res: Tensor,
}

/// A cube's embedding, for the volume it was cut from.
struct Embedded {
    volume: Arc<Volume>,
    crop: Arc<Crop>,
    embedding: Tensor,
}

/// A SAM-Med3D checkpoint loaded for inference.
pub struct Foundation {
    vs: nn::VarStore,
    net: SamMed3d,
    path: PathBuf,
    /// What the file holds, in a few words (`SAM-Med3D ViT-B …`).
    about: String,
    cache: Option<Embedded>,
    /// The LoRA adapter on the network ([`crate::model::sam_med3d::lora`]).
    lora: Option<SamLora>,
    /// SHA-256 of the checkpoint's bytes, computed when an adapter first needs it.
    sha256: Option<String>,
}

impl std::fmt::Debug for Foundation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Foundation({}, {})", self.path.display(), self.about)
    }
}

/// Whether a weights file is a PyTorch checkpoint (`torch.save`: a zip archive, or the legacy
/// pickle stream) rather than one of the project's safetensors files.
pub fn is_torch_checkpoint(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    if matches!(ext.as_str(), "pth" | "pt" | "ckpt" | "tar") {
        return true;
    }
    let mut head = [0u8; 4];
    use std::io::Read;
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && (head[..2] == *b"PK" || head[0] == 0x80)
}

impl Foundation {
    /// Reads a SAM-Med3D checkpoint (`torch.save`, the weights under `model_state_dict` or at
    /// the top level). The architecture is read from the names and shapes; anything but
    /// SAM-Med3D's (a 12-block 3D ViT encoder with its prompt encoder and decoder; narrower
    /// widths are accepted) is refused before a tensor is used, with every difference from the
    /// published ViT-B and what the file looks like.
    pub fn from_file(path: &Path, device: Device) -> Result<Self, ModelError> {
        let state = TorchFile::open(path)?.state_dict()?;
        let shapes = state.shapes();
        let refuse = || torchfile::check(&state, &SamMed3dConfig::vit_b().expected_shapes()).err().map(|m| ModelError::Mismatch(Box::new(m)));
        let family = state.family();
        if !matches!(family, Family::Sam3d { depth: 12, .. }) {
            return Err(refuse().unwrap_or_else(|| ModelError::File { path: path.into(), problem: format!("not SAM-Med3D: {}", state.looks_like()) }));
        }
        let by_name: BTreeMap<String, Vec<usize>> = shapes.iter().map(|(n, s)| (n.clone(), s.iter().map(|&x| x.max(0) as usize).collect())).collect();
        let cfg = match SamMed3dConfig::from_shapes(&by_name) {
            Ok(c) => c,
            Err(e) => return Err(refuse().unwrap_or_else(|| ModelError::File { path: path.into(), problem: e })),
        };
        torchfile::check(&state, &cfg.expected_shapes()).map_err(|m| ModelError::Mismatch(Box::new(m)))?;
        let vs = nn::VarStore::new(device);
        let net = SamMed3d::new(&vs.root(), &cfg);
        let vars = vs.variables();
        torchfile::check(&state, &torchfile::expected_from_vars(&vars)).map_err(|m| ModelError::Mismatch(Box::new(m)))?;
        state.copy_into(&vars)?;
        log::info!("{}: SAM-Med3D, {}", path.display(), cfg.describe());
        Ok(Foundation { vs, net, path: path.to_path_buf(), about: cfg.describe(), cache: None, lora: None, sha256: None })
    }

    pub fn config(&self) -> &SamMed3dConfig {
        &self.net.config
    }

    pub fn info(&self) -> ModelInfo {
        let parameters = self.vs.variables().values().map(|t| t.numel()).sum();
        let c = &self.net.config;
        let preset = if *c == SamMed3dConfig::vit_b() {
            format!("{SAM_MED3D_PRESET} ViT-B")
        } else {
            format!("{SAM_MED3D_PRESET} (encoder width {}, {} blocks)", c.encoder_width, c.encoder_depth)
        };
        ModelInfo {
            preset,
            weights: Some(self.path.clone()),
            weights_sha256: self.sha256.clone(),
            adapter: self.lora.as_ref().and_then(|l| l.path.clone()),
            adapter_rank: self.lora.as_ref().map(|l| l.config.rank),
            adapter_merged: false,
            parameters,
            device: format!("{:?}", self.vs.device()),
            corrector: None,
        }
    }

    /// The checkpoint file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The network (for training: [`crate::engine::train_sam_med3d`]).
    pub fn net(&self) -> &SamMed3d {
        &self.net
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The base weights (frozen while an adapter is attached).
    pub fn base_vs(&self) -> &nn::VarStore {
        &self.vs
    }

    /// What an adapter of this base names: the file name, the SHA-256 of its bytes (computed
    /// once, on first use) and the architecture.
    pub fn base_id(&mut self) -> Result<BaseId, ModelError> {
        let sha256 = match &self.sha256 {
            Some(s) => s.clone(),
            None => {
                let s = sam_lora::file_sha256(&self.path)?;
                self.sha256 = Some(s.clone());
                s
            }
        };
        let file_name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| self.path.display().to_string());
        Ok(BaseId { file_name, sha256, config: self.net.config.clone() })
    }

    /// Attaches fresh LoRA adapters (B = 0: the outputs do not change) to the linears matching
    /// `cfg.targets` (empty: [`sam_lora::default_targets`]) and freezes the base. Returns the
    /// number of adapted linears.
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<usize, ModelError> {
        let l = sam_lora::attach(&mut self.net, &mut self.vs, cfg)?;
        let n = l.targets.len();
        self.lora = Some(l);
        self.cache = None;
        Ok(n)
    }

    /// Removes the adapter (the base's own outputs again).
    pub fn detach_lora(&mut self) {
        sam_lora::detach(&mut self.net, &mut self.vs);
        self.lora = None;
        self.cache = None;
    }

    /// The attached adapter.
    pub fn lora(&self) -> Option<&SamLora> {
        self.lora.as_ref()
    }

    /// The attached adapter's file (loaded from or last saved to).
    pub fn adapter_path(&self) -> Option<&Path> {
        self.lora.as_ref().and_then(|l| l.path.as_deref())
    }

    /// Saves the attached adapter (atomically), naming this checkpoint as its base.
    pub fn save_adapter(&mut self, path: &Path) -> Result<(), ModelError> {
        if self.lora.is_none() {
            return Err(ModelError::Lora(format!("{}: no adapter attached to {} to save", path.display(), self.path.display())));
        }
        let base = self.base_id()?;
        if let Some(l) = self.lora.as_mut() {
            sam_lora::save(l, &base, path)?;
            l.path = Some(path.to_path_buf());
        }
        Ok(())
    }

    /// Loads an adapter file made for this checkpoint. Refused, with nothing changed, when it
    /// names another base, another architecture, or its tensors do not fit.
    pub fn load_adapter(&mut self, path: &Path) -> Result<usize, ModelError> {
        let base = self.base_id()?;
        let l = sam_lora::load(path, &mut self.net, &mut self.vs, &base)?;
        let n = l.targets.len();
        self.lora = Some(l);
        self.cache = None;
        Ok(n)
    }

    /// The cube's input side and cell (the published model: 128 cells of 1.5 mm).
    fn cube(&self) -> (usize, f64) {
        (self.net.config.img_size as usize, SPACING_MM)
    }

    /// The embedding of `c` (cut from `volume`): cached for the last cube.
    fn embedding(&mut self, volume: &Arc<Volume>, c: &Arc<Crop>) -> Result<Tensor, EngineError> {
        if let Some(e) = &self.cache
            && Arc::ptr_eq(&e.volume, volume)
            && (Arc::ptr_eq(&e.crop, c) || e.crop.ras_from_grid == c.ras_from_grid)
        {
            return Ok(e.embedding.shallow_clone());
        }
        let s = c.side as i64;
        let flat = c.image.as_standard_layout();
        let flat = flat.as_slice().ok_or_else(|| EngineError::BadRequest("the cube is not contiguous".into()))?;
        // `[k, j, i]` (S, A, R) → the network's `[R, A, S]`.
        let image = Tensor::from_slice(flat).view([s, s, s]).permute([2, 1, 0]).contiguous().view([1, 1, s, s, s]).to_device(self.vs.device());
        let embedding = self.net.image_embedding(&image)?;
        self.cache = Some(Embedded { volume: volume.clone(), crop: c.clone(), embedding: embedding.shallow_clone() });
        Ok(embedding)
    }

    /// One prompt on an object: `prompts` are all of its prompts with this one added, `base`
    /// the previous step's cube and logits and `base_candidate` its candidate. Returns the new
    /// candidate, the view of the pass (2D mask on the prompt's slice) and what the next step
    /// needs.
    #[allow(clippy::too_many_arguments)]
    pub fn prompt(
        &mut self,
        volume: &Arc<Volume>,
        prompts: &PromptSet,
        at: RasMm,
        plane: ViewPlane,
        base: Option<&FoundationStep>,
        base_candidate: Option<&GridComponent>,
        timings: &mut Timings,
        hooks: &mut dyn Hooks,
    ) -> Result<(Option<GridComponent>, Array2<bool>, RasFromPixel, Option<FoundationStep>), EngineError> {
        let (side, cell) = self.cube();
        let params = ClickParams { image_size: side, spacing_mm: cell, cube_mm: side as f64 * cell, grid: side, ct_window_hu: [-160.0, 240.0], prior_radius_px: 0.0, context: None };
        let ras_from_pixel = slice_ras_from_pixel(at, plane, &params);
        if prompts.positive.is_empty() && prompts.bbox.is_none() {
            // Negative points alone: nothing to segment yet.
            return Ok((None, Array2::from_elem((side, side), false), ras_from_pixel, None));
        }
        // The object's cube, while the prompt lies in it; a new cube at a prompt outside.
        hooks.progress(Stage::Preprocess);
        let t = Instant::now();
        let (c, same) = match base {
            Some(b) if b.crop.contains(at) => (b.crop.clone(), true),
            _ => (Arc::new(crop(volume, at, side, cell)), false),
        };
        timings.preprocess_secs += t.elapsed().as_secs_f64();
        if hooks.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let t = Instant::now();
        hooks.progress(Stage::Shape);
        let embedding = self.embedding(volume, &c)?;
        if hooks.cancelled() {
            return Err(EngineError::Cancelled);
        }
        // Every point of the object inside the cube, as (d, h, w) = (i, j, k) of the cube.
        let mut coords: Vec<f32> = Vec::new();
        let mut labels: Vec<i64> = Vec::new();
        for (points, label) in [(&prompts.positive, 1), (&prompts.negative, 0)] {
            for p in points.iter().filter(|p| c.contains(**p)) {
                let g = c.grid_of(*p);
                log::debug!(
                    "SAM-Med3D: {} point at RAS ({:.1}, {:.1}, {:.1}) mm → cube cell (d, h, w) = ({:.1}, {:.1}, {:.1}) of {side}³, cube origin RAS {:?}, shifted {:?} mm",
                    if label == 1 { "positive" } else { "negative" },
                    p.x(),
                    p.y(),
                    p.z(),
                    g[0],
                    g[1],
                    g[2],
                    c.ras_from_grid.translation().as_slice(),
                    c.shift_mm
                );
                coords.extend(g.iter().map(|&x| x.round() as f32));
                labels.push(label);
            }
        }
        let device = self.vs.device();
        let n = labels.len() as i64;
        let pts = (n > 0).then(|| (Tensor::from_slice(&coords).view([1, n, 3]).to_device(device), Tensor::from_slice(&labels).view([1, n]).to_device(device)));
        let mask_prompt = base.filter(|_| same).map(|b| b.low_res.shallow_clone());
        let (low_res, _iou) = self.net.decode(&embedding, pts.as_ref().map(|(a, b)| (a, b)), mask_prompt.as_ref())?;
        let s = side as i64;
        let up = self.net.upsample(&low_res, [s, s, s]).view([s, s, s]).permute([2, 1, 0]).contiguous().to_kind(Kind::Float).to_device(Device::Cpu);
        let logits: Vec<f32> = Vec::<f32>::try_from(up.view([-1])).map_err(EngineError::Torch)?;
        let logits = Array3::from_shape_vec((side, side, side), logits).map_err(|e| EngineError::BadRequest(e.to_string()))?;
        timings.shape_secs += t.elapsed().as_secs_f64();

        // Back onto the source grid: the parts through the positive points (or the box's
        // centre), cut to the prompts.
        hooks.progress(Stage::Postprocess);
        let t = Instant::now();
        let sdf = logits.mapv(|x| -x);
        let seeds: Vec<RasMm> = match prompts.positive.iter().filter(|p| c.contains(**p)).copied().collect::<Vec<_>>() {
            v if !v.is_empty() => v,
            _ => vec![at],
        };
        let mut found: Option<GridComponent> = None;
        for p in seeds {
            if found.as_ref().is_some_and(|f| volume.shape().array_index(volume.voxel_from_ras().apply(p)).is_some_and(|a| f.contains(a))) {
                continue;
            }
            if let Some(part) = crate::shape::component::sdf_component_on_grid(sdf.view(), &c.ras_from_grid, volume.shape(), &volume.ras_from_voxel, p) {
                found = Some(match found {
                    Some(f) => f.union(&part),
                    None => part,
                });
            }
        }
        // A new cube adds to what the object had; the same cube replaces it (the decoder saw
        // every point and the previous shape).
        let found = match (found, base_candidate.filter(|_| !same)) {
            (Some(f), Some(b)) => Some(f.union(b)),
            (f, b) => f.or_else(|| b.cloned()),
        };
        let candidate = found.as_ref().and_then(|f| crate::baseline::prompted::constrain(f, prompts, volume.as_ref()));
        // The pass on the prompt's slice (the result's preview).
        let mut mask2d = Array2::from_elem((side, side), false);
        for ((row, col), m) in mask2d.indexed_iter_mut() {
            let p = ras_from_pixel.apply(Point3::new(col as f64, row as f64, 0.0));
            if let Some([i, j, k]) = c.cell_of(p) {
                *m = logits[[k, j, i]] > 0.0;
            }
        }
        timings.postprocess_secs += t.elapsed().as_secs_f64();
        Ok((candidate, mask2d, ras_from_pixel, Some(FoundationStep { crop: c, low_res })))
    }
}
