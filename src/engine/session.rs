//! An inference session: one model, one volume prepared once, many clicks. Synchronous; the
//! worker thread ([`super::Engine`]) and the command line both drive it.

use crate::baseline::refine::{RefineParams, intensity_floor, refine_component};
use crate::data::click::{self, ClickError, ClickSample, PreparedVolume, RasFromPixel};
use crate::geometry::{RasMm, ViewPlane};
use crate::model::convert::{array_from, inputs_for};
use crate::model::{Model, ModelError, ModelInfo};
use crate::shape::Mesh;
use crate::volume::{LabelMap, Modality, OnGrid, Volume};
use ndarray::{Array2, Array3, Ix3};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tch::Device;

/// How to get weights when none are loaded.
pub const NO_WEIGHTS_HELP: &str = "no model weights loaded: the shipped model is assets/models/default.safetensors (used by default \
when present; `packaging/train_default.sh` reproduces it), or train your own with `sam3d-studio train --config configs/train_default.toml \
--out runs/mine` and pass --weights runs/mine/model.safetensors (in the app: Model → Load weights)";

/// Errors of an inference session.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{NO_WEIGHTS_HELP}")]
    NoModel,
    #[error("no volume set: open a volume first")]
    NoVolume,
    #[error("{0}")]
    Click(#[from] ClickError),
    #[error("{0}")]
    Model(#[from] ModelError),
    #[error("{0}")]
    BadRequest(String),
    #[error("cancelled")]
    Cancelled,
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Stages of one click, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Preprocess,
    Mask2d,
    Shape,
    Postprocess,
    Mesh,
}

impl Stage {
    pub fn name(&self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Mask2d => "mask2d",
            Stage::Shape => "shape",
            Stage::Postprocess => "postprocess",
            Stage::Mesh => "mesh",
        }
    }
    /// Fraction of the job done when this stage starts (for a progress bar).
    pub fn start_fraction(&self) -> f32 {
        match self {
            Stage::Preprocess => 0.0,
            Stage::Mask2d => 0.1,
            Stage::Shape => 0.3,
            Stage::Postprocess => 0.7,
            Stage::Mesh => 0.85,
        }
    }
}

/// Seconds per stage.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub preprocess_secs: f64,
    pub mask2d_secs: f64,
    pub shape_secs: f64,
    pub postprocess_secs: f64,
    /// `None` when the mesh step is not available in this build.
    pub mesh_secs: Option<f64>,
    pub total_secs: f64,
}

/// One click.
#[derive(Clone, Debug)]
pub struct InferRequest {
    pub click: RasMm,
    pub plane: ViewPlane,
    /// A 2D mask the user drew on the click's slice image (`[S, S]`); `None`: the model's 2D head.
    pub mask2d: Option<Array2<bool>>,
}

/// The result of one click (plain data: it crosses threads).
#[derive(Clone, Debug)]
pub struct InferResult {
    pub click: RasMm,
    pub plane: ViewPlane,
    /// 1 inside, on the source volume's grid (same shape and affine).
    pub mask: LabelMap,
    /// The 2D mask the 3D stage was conditioned on (`[S, S]`, `[row, col]`).
    pub mask2d: Array2<bool>,
    /// Pixel `(col, row, 0)` of `mask2d` → RAS.
    pub ras_from_pixel: RasFromPixel,
    /// SDF channel chosen by the click (0 when class-agnostic).
    pub class: usize,
    pub voxel_count: usize,
    pub volume_ml: f64,
    pub mesh: Option<Mesh>,
    /// The kept component as a crop of the source grid (what `mask` holds, without the zeros
    /// around it); `None` when nothing was segmented. `serve` sends this instead of `mask`.
    pub component: Option<crate::shape::GridComponent>,
    pub timings: Timings,
}

/// Callbacks during a click: progress, the early 2D preview, and a cancel check.
pub trait Hooks {
    fn progress(&mut self, _stage: Stage) {}
    fn preview(&mut self, _mask2d: &Array2<bool>, _ras_from_pixel: &RasFromPixel) {}
    fn cancelled(&self) -> bool {
        false
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// A mask on the source grid (label 1) → watertight marching-cubes mesh in RAS mm at full
/// resolution (`crate::shape`); `None` for an empty mask. Clicks use [`mesh_of_component`].
pub fn mesh_of_mask(mask: &LabelMap) -> Option<Mesh> {
    let m = crate::shape::mesh_of_label(mask, 1);
    (!m.triangles.is_empty()).then_some(m)
}
/// Display resolution of a click's mesh: blocks of about this size (mm) along each voxel axis.
pub const MESH_BLOCK_MM: f64 = 1.5;
/// Taubin iterations on a click's mesh.
pub const MESH_SMOOTH_ITERATIONS: usize = 5;

/// The mesh step of a click: the kept component (a crop of the source grid) → watertight mesh
/// in RAS mm on blocks of about [`MESH_BLOCK_MM`] (whole voxels along axes already that coarse),
/// Taubin-smoothed; work ∝ the component's box. `None` for an empty component.
pub fn mesh_of_component(c: &crate::shape::GridComponent, shape: crate::geometry::GridShape, ras_from_voxel: &crate::geometry::RasFromVoxel) -> Option<Mesh> {
    let m = crate::shape::mesh_of_mask_blocks(c.mask.view(), c.origin_kji, shape, ras_from_voxel, mesh_blocks(ras_from_voxel), MESH_SMOOTH_ITERATIONS);
    (!m.triangles.is_empty()).then_some(m)
}

/// Voxels per mesh block along i, j, k: about [`MESH_BLOCK_MM`] (one voxel along axes already
/// that coarse).
pub fn mesh_blocks(ras_from_voxel: &crate::geometry::RasFromVoxel) -> [usize; 3] {
    ras_from_voxel.column_norms().map(|mm| if mm > 0.0 { (MESH_BLOCK_MM / mm).round().max(1.0) as usize } else { 1 })
}

/// A click result held as a whole-grid mask (region growing's) meshed like the model's: its
/// bounding box on blocks of about [`MESH_BLOCK_MM`].
pub fn mesh_of_grid_mask(mask: ndarray::ArrayView3<bool>, ras_from_voxel: &crate::geometry::RasFromVoxel) -> Mesh {
    use ndarray::s;
    let Some((lo, hi)) = crate::shape::sdf::bounding_box(mask) else { return Mesh::default() };
    let crop = mask.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
    let shape = crate::geometry::GridShape::from_array_shape(mask.shape());
    crate::shape::mesh_of_mask_blocks(crop, lo, shape, ras_from_voxel, mesh_blocks(ras_from_voxel), MESH_SMOOTH_ITERATIONS)
}

/// Whether [`mesh_of_mask`] produces meshes in this build.
pub const MESH_AVAILABLE: bool = true;

/// One model and one prepared volume. The model's mask is refined by the image
/// ([`crate::baseline::refine`], default parameters) unless [`Session::set_refine`] turns it off.
pub struct Session {
    model: Option<Model>,
    volume: Option<Arc<Volume>>,
    modality: Option<Modality>,
    prepared: Option<PreparedVolume>,
    /// The image refinement of the model's mask (`None`: the model's mask as it is).
    refine: Option<RefineParams>,
    /// [`crate::baseline::refine::intensity_floor`] of the volume, once per volume.
    refine_floor: Option<f64>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(model: {}, volume: {})", self.model.is_some(), self.volume.is_some())
    }
}

impl Session {
    pub fn new() -> Self {
        Session { model: None, volume: None, modality: None, prepared: None, refine: Some(RefineParams::default()), refine_floor: None }
    }

    /// The image refinement of the model's mask (`None`: off).
    pub fn set_refine(&mut self, refine: Option<RefineParams>) {
        self.refine = refine;
    }

    pub fn refine(&self) -> Option<&RefineParams> {
        self.refine.as_ref()
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Uses `model` (replacing any previous one); re-prepares the volume if its CT window changed.
    pub fn set_model(&mut self, model: Model) -> Result<ModelInfo, EngineError> {
        let info = model.info();
        self.model = Some(model);
        self.prepare()?;
        Ok(info)
    }

    /// Loads a checkpoint (architecture from its metadata). On error the previous model stays.
    pub fn load_weights(&mut self, path: &Path, device: Device) -> Result<ModelInfo, EngineError> {
        let m = Model::from_checkpoint(path, device)?;
        self.set_model(m)
    }

    /// Loads a LoRA adapter onto the current model. On error the previous adapter stays.
    pub fn load_adapter(&mut self, path: &Path) -> Result<ModelInfo, EngineError> {
        let m = self.model.as_mut().ok_or(EngineError::NoModel)?;
        m.load_adapter(path)?;
        Ok(m.info())
    }

    /// Sets the volume and prepares it once (modality, normalisation statistics).
    pub fn set_volume(&mut self, volume: Arc<Volume>, modality: Option<Modality>) -> Result<Modality, EngineError> {
        self.volume = Some(volume);
        self.modality = modality;
        self.prepared = None;
        self.refine_floor = None;
        self.prepare()?;
        Ok(self.prepared.as_ref().map(|p| p.modality).unwrap_or_default())
    }

    fn prepare(&mut self) -> Result<(), EngineError> {
        let Some(vol) = &self.volume else { return Ok(()) };
        let window = self.model.as_ref().map(|m| m.config().input.ct_window_hu).unwrap_or([-160.0, 240.0]);
        let stale = match &self.prepared {
            None => true,
            Some(p) => !matches!(p.normaliser, click::Normaliser::CtWindow { lo, hi } if [lo, hi] == window) && p.modality == Modality::Ct,
        };
        if stale {
            self.prepared = Some(PreparedVolume::new(vol.clone(), self.modality, window)?);
        }
        Ok(())
    }

    /// The prepared volume (after [`Session::set_volume`]).
    pub fn prepared(&self) -> Option<&PreparedVolume> {
        self.prepared.as_ref()
    }

    /// Click → 2D mask → 3D SDF → mask on the source grid (→ mesh).
    pub fn infer(&mut self, req: &InferRequest, hooks: &mut dyn Hooks) -> Result<InferResult, EngineError> {
        let t_all = Instant::now();
        let model = self.model.as_ref().ok_or(EngineError::NoModel)?;
        let pv = self.prepared.as_ref().ok_or(EngineError::NoVolume)?;
        let cfg = model.config();
        let device = model.device();
        let _guard = tch::no_grad_guard();
        let mut timings = Timings::default();
        let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };

        hooks.progress(Stage::Preprocess);
        let t = Instant::now();
        let sample = click::prepare_click(pv, req.click, req.plane, &cfg.click_params())?;
        timings.preprocess_secs = t.elapsed().as_secs_f64();
        check(hooks)?;

        hooks.progress(Stage::Mask2d);
        let t = Instant::now();
        let s = cfg.input.image_size;
        let mask2d = match &req.mask2d {
            Some(m) if m.dim() == (s, s) => m.clone(),
            Some(m) => {
                return Err(EngineError::BadRequest(format!(
                    "the drawn 2D mask is {}×{}, the model's slice is {s}×{s}",
                    m.nrows(),
                    m.ncols()
                )));
            }
            None => predict_mask2d(model, &sample, device, cfg.input.prior_radius_px)?,
        };
        timings.mask2d_secs = t.elapsed().as_secs_f64();
        hooks.preview(&mask2d, &sample.ras_from_pixel);
        check(hooks)?;

        hooks.progress(Stage::Shape);
        let t = Instant::now();
        let out = model.forward_t(&inputs_for(&sample, &mask2d, device), false);
        let sdf_all = array_from(&out.sdf.get(0))?.into_dimensionality::<ndarray::Ix4>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
        let class = choose_class(&sdf_all);
        let sdf: Array3<f32> = sdf_all.index_axis(ndarray::Axis(0), class).to_owned().into_dimensionality::<Ix3>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
        timings.shape_secs = t.elapsed().as_secs_f64();
        check(hooks)?;

        hooks.progress(Stage::Postprocess);
        let t = Instant::now();
        let vol = &pv.volume;
        let mut component = crate::shape::sdf_component_on_grid(sdf.view(), &sample.ras_from_grid, vol.shape(), &vol.ras_from_voxel, req.click);
        if let (Some(p), Some(c)) = (&self.refine, &component) {
            let floor = *self.refine_floor.get_or_insert_with(|| intensity_floor(vol));
            let click = vol.ras_from_voxel.try_inverse().ok().and_then(|v| vol.shape().array_index(v.apply(req.click)));
            component = Some(refine_component(vol, c, p, floor, click));
        }
        let data = match &component {
            Some(c) => c.to_labels(vol.shape(), 1),
            None => Array3::zeros(vol.shape().array_shape()),
        };
        let voxel_count = component.as_ref().map_or(0, |c| c.voxel_count);
        let volume_ml = voxel_count as f64 * vol.ras_from_voxel.determinant().abs() / 1000.0;
        let mask = LabelMap { data, ras_from_voxel: vol.ras_from_voxel, meta: Default::default() };
        timings.postprocess_secs = t.elapsed().as_secs_f64();
        check(hooks)?;

        let mesh = if MESH_AVAILABLE {
            hooks.progress(Stage::Mesh);
            let t = Instant::now();
            let m = component.as_ref().and_then(|c| mesh_of_component(c, vol.shape(), &vol.ras_from_voxel));
            timings.mesh_secs = Some(t.elapsed().as_secs_f64());
            m
        } else {
            None
        };
        timings.total_secs = t_all.elapsed().as_secs_f64();
        Ok(InferResult {
            click: req.click,
            plane: req.plane,
            mask,
            mask2d,
            ras_from_pixel: sample.ras_from_pixel,
            class,
            voxel_count,
            volume_ml,
            mesh,
            component,
            timings,
        })
    }
}

/// The 2D head's mask for a click: prompt = disc around the click; threshold 0.5; the
/// 4-connected component through the click (the disc itself when the head finds nothing there).
fn predict_mask2d(model: &Model, sample: &ClickSample, device: Device, radius_px: f64) -> Result<Array2<bool>, EngineError> {
    let s = sample.image.nrows();
    let prior = click::click_prior_mask(s, radius_px);
    let logits = model.forward_mask(&inputs_for(sample, &prior, device), false);
    let l = array_from(&logits.get(0).get(0))?.into_dimensionality::<ndarray::Ix2>().map_err(|e| tch::TchError::Shape(e.to_string()))?;
    let mut m = l.mapv(|x| x > 0.0);
    let c = s / 2;
    if !m[[c, c]] {
        m.zip_mut_with(&prior, |a, &b| *a |= b);
    }
    Ok(component_2d(&m, [c, c]))
}

/// 4-connected component of `seed` in a 2D mask.
fn component_2d(m: &Array2<bool>, seed: [usize; 2]) -> Array2<bool> {
    let (h, w) = m.dim();
    let mut out = Array2::from_elem((h, w), false);
    if !m[seed] {
        return out;
    }
    let mut stack = vec![seed];
    out[seed] = true;
    while let Some([r, c]) = stack.pop() {
        let nb = [(r.wrapping_sub(1), c), (r + 1, c), (r, c.wrapping_sub(1)), (r, c + 1)];
        for (rr, cc) in nb {
            if rr < h && cc < w && m[[rr, cc]] && !out[[rr, cc]] {
                out[[rr, cc]] = true;
                stack.push([rr, cc]);
            }
        }
    }
    out
}

/// The SDF channel most inside at the cube's centre (where the click is).
fn choose_class(sdf: &ndarray::Array4<f32>) -> usize {
    let g = sdf.shape()[1];
    let (lo, hi) = ((g - 1) / 2, g / 2);
    let mut best = (0, f32::INFINITY);
    for c in 0..sdf.shape()[0] {
        let mut v = 0.0;
        for k in lo..=hi {
            for j in lo..=hi {
                for i in lo..=hi {
                    v += sdf[[c, k, j, i]];
                }
            }
        }
        if v < best.1 {
            best = (c, v);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_2d_is_4_connected() {
        let mut m = Array2::from_elem((4, 4), false);
        m[[1, 1]] = true;
        m[[1, 2]] = true;
        m[[2, 3]] = true; // diagonal only: not connected
        let c = component_2d(&m, [1, 1]);
        assert_eq!(c.iter().filter(|&&x| x).count(), 2);
    }
}
