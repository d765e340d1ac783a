//! An inference session: one model, one volume prepared once, many clicks. Synchronous; the
//! worker thread ([`super::Engine`]) and the command line both drive it.

use crate::baseline::GrowParams;
use crate::baseline::join::join_region_growing_within;
use crate::baseline::prompted::{ObjectState, Pass as ObjectPass};
use crate::baseline::refine::{RefineParams, intensity_floor, refine_component_within};
use crate::baseline::smoothed::{BackgroundSmoothing, SmoothedScan};
use crate::prompts::{ObjectRef, Prompt, PromptSet};
use crate::data::click::{self, ClickError, ClickSample, PreparedVolume, RasFromPixel};
use crate::geometry::{ArrayIdx, Point3, RasFromGrid, RasMm, ViewPlane};
use crate::model::corrector::Corrector;
use crate::model::{Model, ModelError, ModelInfo};
use super::sam_med3d::{Foundation, FoundationStep, is_torch_checkpoint};
use std::collections::BTreeMap;
use crate::options::{PipelineOptions, PlaneFusion};
use crate::shape::Mesh;
use crate::volume::{LabelMap, Modality, OnGrid, Volume};
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use super::shape_model::ShapeModel;
use std::path::{Path, PathBuf};
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
    /// Transparent, so that `{e:#}` does not print the model's message twice.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{0}")]
    BadRequest(String),
    #[error("pipeline options: {0}")]
    Options(String),
    #[error("cancelled")]
    Cancelled,
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

pub use crate::protocol::{Stage, Timings};

/// One prompt: a click (positive or negative) and/or a box, starting an object or refining the
/// one the session holds ([`crate::prompts`], [`Session::infer`]).
#[derive(Clone, Debug)]
pub struct InferRequest {
    pub prompt: Prompt,
    /// The view plane the prompt was made on (a positive point's pass cuts its slice there).
    pub plane: ViewPlane,
    /// A 2D mask the user drew on the click's slice image (`[S, S]`); `None`: the model's 2D head.
    pub mask2d: Option<Array2<bool>>,
    /// The object the prompt refines (its id and how many of its prompts came before);
    /// `None`: a new object.
    pub object: Option<ObjectRef>,
}

impl InferRequest {
    /// A positive click starting a new object (the one-click pipeline).
    pub fn click(click: RasMm, plane: ViewPlane) -> Self {
        InferRequest { prompt: Prompt::positive(click), plane, mask2d: None, object: None }
    }
}

/// The result of one click (plain data: it crosses threads).
#[derive(Clone, Debug)]
pub struct InferResult {
    /// The prompt's point (a box's centre for a box alone).
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
    /// The LoRA adapter the model ran with (loaded by hand, or the MR adapter a session puts on
    /// for an MR scan, [`Session::set_mr_adapter`]); `None`: the base weights alone.
    pub adapter: Option<PathBuf>,
    /// The object with this prompt counted (`after`: its prompts so far).
    pub object: ObjectRef,
    /// The object's prompts so far.
    pub prompts: PromptSet,
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

/// One model and one prepared volume. The model's mask is refined by the image
/// ([`crate::baseline::refine`], default parameters) unless [`Session::set_options`] turns it off.
pub struct Session {
    model: Option<Model>,
    /// A published SAM-Med3D checkpoint, used instead of `model` when loaded
    /// ([`Session::load_weights`] with a `torch.save` file).
    foundation: Option<Foundation>,
    volume: Option<Arc<Volume>>,
    modality: Option<Modality>,
    prepared: Option<PreparedVolume>,
    /// What happens to the model's shape after the network, for the clicks from now on.
    options: PipelineOptions,
    /// [`crate::baseline::refine::intensity_floor`] of the volume, once per volume.
    refine_floor: Option<f64>,
    /// The volume smoothed whole for the refinement, made in the background when the volume is
    /// set ([`crate::baseline::smoothed`]).
    smoothed: Option<BackgroundSmoothing>,
    /// Whether setting a volume starts [`Session::smoothed`] (off for one click and exit).
    background_smoothing: bool,
    /// The adapter put on the model for MR scans while no adapter was loaded by hand
    /// ([`Session::set_mr_adapter`]).
    mr_adapter: Option<PathBuf>,
    /// Whether the model's adapter was loaded by hand ([`Session::load_adapter`]): then the
    /// scan's modality never changes it.
    adapter_by_hand: bool,
    /// Why the MR adapter could not be put on (it does not fit the loaded weights, say).
    mr_adapter_error: Option<String>,
    /// The learned step of point corrections ([`crate::model::corrector`]; the shipped one is
    /// loaded by [`Session::new`]) and the file it came from, used while
    /// [`PipelineOptions::corrector`] is on.
    corrector: Option<(Corrector, PathBuf)>,
    /// Why the corrector could not be loaded.
    corrector_error: Option<String>,
    /// The object being refined: its candidate after each of its prompts (cleared with the
    /// volume).
    object: Option<HeldObject>,
}

/// What a [`Session`] holds of one volume (its preparation, the object being refined), to be
/// swapped out and back in by [`Session::swap_volume`]. The default holds no volume.
#[derive(Debug, Default)]
pub struct VolumeState {
    volume: Option<Arc<Volume>>,
    modality: Option<Modality>,
    prepared: Option<PreparedVolume>,
    refine_floor: Option<f64>,
    smoothed: Option<BackgroundSmoothing>,
    object: Option<HeldObject>,
}

/// An object the session keeps between prompts.
#[derive(Debug)]
struct HeldObject {
    id: u64,
    /// After each prompt: the object, and the 2D mask, slice and SDF channel of its latest pass.
    steps: Vec<(ObjectState, Option<PassView>)>,
    /// With SAM-Med3D: what step `n` (0-based) left for the next (its cube and logits).
    foundation: BTreeMap<usize, FoundationStep>,
}

/// What a result shows of a pass: its 2D mask, that slice's pixel → RAS, its SDF channel.
#[derive(Clone, Debug)]
struct PassView {
    mask2d: Array2<bool>,
    ras_from_pixel: RasFromPixel,
    class: usize,
}

impl PassView {
    /// No pass: an empty mask on the slice through `at`.
    fn empty(model: &Model, at: RasMm, plane: ViewPlane) -> Self {
        let p = model.click_params();
        PassView { mask2d: Array2::from_elem((p.image_size, p.image_size), false), ras_from_pixel: click::slice_ras_from_pixel(at, plane, &p), class: 0 }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Session(model: {}, SAM-Med3D: {}, volume: {})", self.model.is_some(), self.foundation.is_some(), self.volume.is_some())
    }
}

impl Session {
    pub fn new() -> Self {
        Session {
            model: None,
            foundation: None,
            volume: None,
            modality: None,
            prepared: None,
            options: PipelineOptions::default(),
            refine_floor: None,
            smoothed: None,
            background_smoothing: true,
            mr_adapter: None,
            adapter_by_hand: false,
            mr_adapter_error: None,
            corrector: None,
            corrector_error: None,
            object: None,
        }
        .with_corrector(crate::assets::default_corrector_path())
    }

    /// The session with the corrector at `path` (`None`: without one). A file that cannot be
    /// loaded leaves the session without one and [`Session::corrector_error`] says why.
    pub fn with_corrector(mut self, path: Option<PathBuf>) -> Self {
        self.set_corrector(path);
        self
    }

    /// Loads the corrector at `path` (`None`: none; see [`Session::with_corrector`]).
    pub fn set_corrector(&mut self, path: Option<PathBuf>) {
        self.corrector_error = None;
        self.corrector = match path.map(|p| (Corrector::load(&p, Device::Cpu), p)) {
            Some((Ok(c), p)) => Some((c, p)),
            Some((Err(e), _)) => {
                log::warn!("no corrector: {e}");
                self.corrector_error = Some(e.to_string());
                None
            }
            None => None,
        };
    }

    /// Whether a corrector is loaded.
    pub fn has_corrector(&self) -> bool {
        self.corrector.is_some()
    }

    /// Where the loaded corrector came from (`None`: none is loaded).
    pub fn corrector_path(&self) -> Option<&Path> {
        self.corrector.as_ref().map(|(_, p)| p.as_path())
    }

    /// Why the corrector could not be loaded.
    pub fn corrector_error(&self) -> Option<&str> {
        self.corrector_error.as_deref()
    }

    /// The LoRA adapter to put on the model while the scan is MR and no adapter was loaded by
    /// hand (the shipped one is `assets/models/mr.safetensors`, trained for the shipped weights
    /// on MR phantoms); it comes off again for a CT. `None`: the base weights on every scan.
    /// An adapter that does not fit the loaded weights is not put on:
    /// [`Session::mr_adapter_error`] says why.
    pub fn set_mr_adapter(&mut self, path: Option<PathBuf>) -> Result<(), EngineError> {
        self.mr_adapter = path;
        self.apply_mr_adapter()
    }
    pub fn mr_adapter(&self) -> Option<&Path> {
        self.mr_adapter.as_deref()
    }
    /// Why the MR adapter is not on for the current MR scan, when it could not be loaded.
    pub fn mr_adapter_error(&self) -> Option<&str> {
        self.mr_adapter_error.as_deref()
    }

    /// Puts the MR adapter on or takes it off for the current scan's modality (unless the
    /// adapter was loaded by hand).
    fn apply_mr_adapter(&mut self) -> Result<(), EngineError> {
        self.mr_adapter_error = None;
        let mr = self.prepared.as_ref().is_some_and(|p| p.modality == Modality::Mr);
        let Some(m) = self.model.as_mut().filter(|_| !self.adapter_by_hand) else { return Ok(()) };
        let want = self.mr_adapter.as_ref().filter(|_| mr && self.options.mr_adapter);
        if m.adapter_path() == want.map(PathBuf::as_path) {
            return Ok(());
        }
        m.detach_lora();
        if let Some(path) = want
            && let Err(e) = m.load_adapter(path)
        {
            self.mr_adapter_error = Some(e.to_string());
        }
        Ok(())
    }

    /// The pipeline the clicks from now on run through ([`PipelineOptions`]: refinement,
    /// continuation, planes, test views, join, MR adapter). Checked first: on an error nothing
    /// changes.
    pub fn set_options(&mut self, options: PipelineOptions) -> Result<(), EngineError> {
        options.check().map_err(EngineError::Options)?;
        let mr_changed = options.mr_adapter != self.options.mr_adapter;
        self.options = options;
        if mr_changed {
            self.apply_mr_adapter()?;
        }
        self.start_smoothing();
        Ok(())
    }
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }

    pub fn model(&self) -> Option<&Model> {
        self.model.as_ref()
    }

    /// Uses `model` (replacing any previous one); re-prepares the volume if its CT window changed.
    pub fn set_model(&mut self, model: Model) -> Result<ModelInfo, EngineError> {
        self.adapter_by_hand = model.lora_config().is_some();
        self.model = Some(model);
        self.foundation = None;
        self.object = None;
        self.prepare()?;
        self.apply_mr_adapter()?;
        self.model_info().ok_or(EngineError::NoModel)
    }

    /// Loads a checkpoint, chosen by the file: the project's own (safetensors, architecture
    /// from its metadata) or a published SAM-Med3D one (`torch.save`, `.pth`; see
    /// [`super::sam_med3d`]). On error the previous model stays.
    pub fn load_weights(&mut self, path: &Path, device: Device) -> Result<ModelInfo, EngineError> {
        if is_torch_checkpoint(path) {
            let f = Foundation::from_file(path, device)?;
            let info = f.info();
            self.foundation = Some(f);
            self.model = None;
            self.adapter_by_hand = false;
            self.mr_adapter_error = None;
            self.object = None;
            return Ok(info);
        }
        let m = Model::from_checkpoint(path, device)?;
        self.set_model(m)
    }

    /// SAM-Med3D's low-resolution logits of the held object's latest step (`[1, 1, s, s, s]`,
    /// the cube's `[R, A, S]` axes), for checks against the reference; `None` with the project's
    /// model or without an object.
    pub fn foundation_logits(&self) -> Option<tch::Tensor> {
        let o = self.object.as_ref()?;
        o.foundation.get(&(o.steps.len().checked_sub(1)?)).map(|f| f.low_res.shallow_clone())
    }

    /// What the loaded model is (either family).
    pub fn model_info(&self) -> Option<ModelInfo> {
        self.foundation.as_ref().map(Foundation::info).or_else(|| {
            self.model.as_ref().map(|m| ModelInfo { corrector: self.corrector_path().map(Path::to_path_buf), ..m.info() })
        })
    }

    /// Loads a LoRA adapter onto the current model, by hand: it stays whatever the scan's
    /// modality. On error the previous adapter stays.
    pub fn load_adapter(&mut self, path: &Path) -> Result<ModelInfo, EngineError> {
        if let Some(f) = self.foundation.as_mut() {
            // A SAM-Med3D adapter (`model::sam_med3d::lora`): it must name this checkpoint.
            f.load_adapter(path)?;
            self.adapter_by_hand = true;
            return Ok(f.info());
        }
        let m = self.model.as_mut().ok_or(EngineError::NoModel)?;
        m.load_adapter(path)?;
        self.adapter_by_hand = true;
        self.mr_adapter_error = None;
        Ok(m.info())
    }

    /// Sets the volume and prepares it once (modality, normalisation statistics).
    pub fn set_volume(&mut self, volume: Arc<Volume>, modality: Option<Modality>) -> Result<Modality, EngineError> {
        self.volume = Some(volume);
        self.modality = modality;
        self.prepared = None;
        self.refine_floor = None;
        self.smoothed = None;
        self.object = None;
        self.prepare()?;
        self.apply_mr_adapter()?;
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
        self.start_smoothing();
        Ok(())
    }

    /// Starts smoothing the prepared volume whole with the refinement's Gaussian unless that is
    /// done or under way ([`crate::baseline::smoothed`]).
    fn start_smoothing(&mut self) {
        let (Some(pv), Some(p), true) = (&self.prepared, self.options.refine(), self.background_smoothing) else { return };
        if self.smoothed.as_ref().is_none_or(|s| s.sigma_mm() != p.smooth_sigma_mm) {
            self.smoothed = BackgroundSmoothing::start(pv.volume.clone(), p.smooth_sigma_mm);
        }
    }

    /// Whether setting a volume smooths it whole in the background for the refinements of the
    /// clicks that follow (default: on). A one-shot click turns it off: the thread would compete
    /// with the click it cannot help.
    pub fn set_background_smoothing(&mut self, on: bool) {
        self.background_smoothing = on;
        if on {
            self.start_smoothing();
        } else {
            self.smoothed = None;
        }
    }

    /// Whether the volume's background smoothing is done, so refinements read it.
    pub fn smoothing_ready(&self) -> bool {
        self.smoothed.as_ref().is_some_and(|s| s.ready().is_some())
    }

    /// Waits for the background smoothing of the volume (benchmarks that time warm clicks);
    /// returns at once when there is none.
    pub fn wait_for_smoothing(&self) {
        if let Some(s) = &self.smoothed {
            s.wait();
        }
    }

    /// Puts `state` in (re-prepared if the model's CT window changed, the MR adapter put on or
    /// taken off for its modality) and returns what the session held: one model serving many
    /// volumes (the HTTP server's clients) keeps a [`VolumeState`] for each and swaps it in.
    pub fn swap_volume(&mut self, state: VolumeState) -> Result<VolumeState, EngineError> {
        let old = VolumeState {
            volume: std::mem::replace(&mut self.volume, state.volume),
            modality: std::mem::replace(&mut self.modality, state.modality),
            prepared: std::mem::replace(&mut self.prepared, state.prepared),
            refine_floor: std::mem::replace(&mut self.refine_floor, state.refine_floor),
            smoothed: std::mem::replace(&mut self.smoothed, state.smoothed),
            object: std::mem::replace(&mut self.object, state.object),
        };
        self.prepare()?;
        self.apply_mr_adapter()?;
        Ok(old)
    }

    /// Starts a new object from a segmentation the client already has (nnInteractive's initial
    /// label): later prompts refine it as they refine a model's result. `None`: an empty object.
    pub fn start_object(&mut self, component: Option<crate::shape::GridComponent>) -> Result<ObjectRef, EngineError> {
        if self.prepared.is_none() {
            return Err(EngineError::NoVolume);
        }
        let id = self.object.as_ref().map_or(1, |o| o.id.wrapping_add(1));
        let state = ObjectState { found: component.clone(), candidate: component, ..Default::default() };
        self.object = Some(HeldObject { id, steps: vec![(state, None)], foundation: BTreeMap::new() });
        Ok(ObjectRef { id, after: 1 })
    }

    /// The prepared volume (after [`Session::set_volume`]).
    pub fn prepared(&self) -> Option<&PreparedVolume> {
        self.prepared.as_ref()
    }

    /// One prompt → the object's candidate on the source grid (→ mesh). A positive click runs
    /// the pipeline ([`run_click`]: 2D mask → 3D SDF → component → refinement → continuation →
    /// join) from its point, never growing near a negative point or out of the box, and joins
    /// what it found to the object's (a correction: only the part around its point); a negative
    /// click runs the model's one pass at its point and excludes that structure's part around it
    /// when it is another structure; then the candidate is cut to the prompts
    /// ([`crate::baseline::prompted`]). The first positive click of an object is the one-click
    /// pipeline exactly. `req.object` names the object and the step it follows (an error when
    /// the session does not hold it); `None` starts a new one.
    pub fn infer(&mut self, req: &InferRequest, hooks: &mut dyn Hooks) -> Result<InferResult, EngineError> {
        let t_all = Instant::now();
        req.prompt.check().map_err(EngineError::BadRequest)?;
        if self.foundation.is_some() {
            return self.infer_foundation(req, hooks, t_all);
        }
        let model = self.model.as_ref().ok_or(EngineError::NoModel)?;
        let pv = self.prepared.as_ref().ok_or(EngineError::NoVolume)?;
        let _guard = tch::no_grad_guard();
        let mut timings = Timings::default();
        let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };

        let (id, after) = self.object_step(req)?;
        let (base_state, base_view) = match after {
            0 => Default::default(),
            n => self.object.as_ref().map(|o| o.steps[n - 1].clone()).unwrap_or_default(),
        };

        // A point on an object with a candidate: the corrector, when there is one.
        if let (Some(corrector), Some(prev), Some(_), None, true) =
            (self.corrector.as_ref().map(|(c, _)| c), base_state.candidate.as_ref(), req.prompt.point, req.prompt.bbox, self.options.corrector)
        {
            let t = Instant::now();
            let state = corrected(corrector, pv, &base_state, prev, &req.prompt)?;
            timings.postprocess_secs += t.elapsed().as_secs_f64();
            check(hooks)?;
            let view = base_view.unwrap_or_else(|| PassView::empty(model, prompt_point(&req.prompt), req.plane));
            return self.finish(req, (id, after), state, view, None, timings, hooks, t_all);
        }
        let floor = *self.refine_floor.get_or_insert_with(|| intensity_floor(&pv.volume));
        let refine = Refinement { params: self.options.refine(), floor, smoothed: self.smoothed.as_ref().and_then(BackgroundSmoothing::ready) };
        let fusion = (self.options.planes, (self.options.views as usize).min(TEST_VIEWS.len()));
        let vol = pv.volume.clone();
        let options = &self.options;
        let mut view = None;
        let state = base_state.apply(&req.prompt, vol.as_ref(), |at, prompts, pass| match pass {
            ObjectPass::Object => {
                let (first, component) = run_click(model, pv, options, refine, fusion, at, req.plane, req.mask2d.as_ref(), prompts, &mut timings, hooks)?;
                view = Some(PassView { mask2d: first.mask2d, ras_from_pixel: first.sample.ras_from_pixel, class: first.class });
                Ok::<_, EngineError>(component)
            }
            // The structure under a negative point: the model's one pass there, refined by the
            // image (no continuation or join: only its part on the object matters).
            ObjectPass::Wrong => {
                let pass = shape_at(model, pv, fusion, at, req.plane, None, false, Scale::ONE, &mut timings, hooks)?;
                Ok(refined(&pv.volume, pass.component, at, refine, prompts, &mut timings))
            }
        })?;
        check(hooks)?;
        let click = prompt_point(&req.prompt);
        // No pass yet (a negative point first): an empty mask on the prompt's slice.
        let view = view.or(base_view).unwrap_or_else(|| PassView::empty(model, click, req.plane));
        self.finish(req, (id, after), state, view, None, timings, hooks, t_all)
    }

    /// The object a request refines and the step it follows (`(id, 0)`: a new object), checked
    /// against what the session holds.
    fn object_step(&self, req: &InferRequest) -> Result<(u64, usize), EngineError> {
        let (id, after) = match req.object {
            Some(o) => (o.id, o.after),
            None => (self.object.as_ref().map_or(1, |o| o.id.wrapping_add(1)), 0),
        };
        match (&self.object, after) {
            (_, 0) => Ok((id, 0)),
            (Some(o), n) if o.id == id && o.steps.len() >= n => Ok((id, n)),
            (Some(o), n) if o.id == id => Err(EngineError::BadRequest(format!("object {id}: the engine holds {} of its prompts, the request follows {n}", o.steps.len()))),
            _ => Err(EngineError::BadRequest(format!("object {id} is not held by the engine (a new volume or another object came since): start a new object"))),
        }
    }

    /// A prompt with SAM-Med3D ([`super::sam_med3d`]): the object's cube, its points and the
    /// previous logits through the decoder; no region growing, refinement or join.
    fn infer_foundation(&mut self, req: &InferRequest, hooks: &mut dyn Hooks, t_all: Instant) -> Result<InferResult, EngineError> {
        let vol = self.volume.clone().ok_or(EngineError::NoVolume)?;
        let _guard = tch::no_grad_guard();
        let mut timings = Timings::default();
        let (id, after) = self.object_step(req)?;
        let held = self.object.as_ref().filter(|_| after > 0);
        let base_state = held.map(|o| o.steps[after - 1].0.clone()).unwrap_or_default();
        let base_step = held.and_then(|o| o.foundation.get(&(after - 1)));
        let mut state = base_state.clone();
        state.prompts.add(&req.prompt);
        let at = prompt_point(&req.prompt);
        let f = self.foundation.as_mut().ok_or(EngineError::NoModel)?;
        let (candidate, mask2d, ras_from_pixel, step) = f.prompt(&vol, &state.prompts, at, req.plane, base_step, base_state.candidate.as_ref(), &mut timings, hooks)?;
        state.found = candidate.clone();
        state.candidate = candidate;
        if hooks.cancelled() {
            return Err(EngineError::Cancelled);
        }
        let view = PassView { mask2d, ras_from_pixel, class: 0 };
        self.finish(req, (id, after), state, view, step, timings, hooks, t_all)
    }

    /// A prompt's result from the object's new state: the label map and mesh, the object kept
    /// for the next prompt.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        req: &InferRequest,
        (id, after): (u64, usize),
        state: ObjectState,
        view: PassView,
        foundation: Option<FoundationStep>,
        mut timings: Timings,
        hooks: &mut dyn Hooks,
        t_all: Instant,
    ) -> Result<InferResult, EngineError> {
        let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };
        let vol = self.volume.clone().ok_or(EngineError::NoVolume)?;
        let click = prompt_point(&req.prompt);
        let t = Instant::now();
        let component = state.candidate.clone();
        let data = match &component {
            Some(c) => c.to_labels(vol.shape(), 1),
            None => Array3::zeros(vol.shape().array_shape()),
        };
        let voxel_count = component.as_ref().map_or(0, |c| c.voxel_count);
        let volume_ml = voxel_count as f64 * vol.voxel_ml();
        let mask = LabelMap { data, ras_from_voxel: vol.ras_from_voxel, meta: Default::default() };
        timings.postprocess_secs += t.elapsed().as_secs_f64();
        check(hooks)?;

        hooks.progress(Stage::Mesh);
        let t = Instant::now();
        let mesh = component.as_ref().and_then(|c| crate::shape::click_mesh::mesh_of_component(c, vol.shape(), &vol.ras_from_voxel));
        timings.mesh_secs = Some(t.elapsed().as_secs_f64());
        let prompts = state.prompts.clone();
        let held = match self.object.take() {
            Some(mut o) if o.id == id => {
                o.steps.truncate(after);
                o.foundation.retain(|&n, _| n < after);
                o
            }
            _ => HeldObject { id, steps: Vec::new(), foundation: BTreeMap::new() },
        };
        let mut held = held;
        if let Some(f) = foundation {
            held.foundation.insert(held.steps.len(), f);
        }
        held.steps.push((state, Some(view.clone())));
        let object = ObjectRef { id, after: held.steps.len() };
        self.object = Some(held);
        timings.total_secs = t_all.elapsed().as_secs_f64();
        Ok(InferResult {
            click,
            plane: req.plane,
            mask,
            mask2d: view.mask2d,
            ras_from_pixel: view.ras_from_pixel,
            class: view.class,
            voxel_count,
            volume_ml,
            mesh,
            component,
            adapter: match &self.foundation {
                Some(f) => f.adapter_path().map(Path::to_path_buf),
                None => self.model.as_ref().and_then(|m| m.adapter_path().map(Path::to_path_buf)),
            },
            object,
            prompts,
            timings,
        })
    }
}

/// The object after a point prompt, by the corrector: its cube around the previous candidate
/// and every point ([`crate::data::correction`]), the network's logits brought back to the scan
/// as the components through the positive points, then cut to the prompts as every candidate
/// is ([`crate::baseline::prompted::constrain`]).
fn corrected(corrector: &Corrector, pv: &PreparedVolume, base: &ObjectState, previous: &crate::shape::GridComponent, prompt: &Prompt) -> Result<ObjectState, EngineError> {
    use crate::data::correction::{CorrectionCube, CubeParams, correction_input};
    let mut prompts = base.prompts.clone();
    prompts.add(prompt);
    let vol = pv.volume.as_ref();
    let points: Vec<RasMm> = prompts.positive.iter().chain(&prompts.negative).copied().collect();
    let cube = CorrectionCube::around(previous, vol, &points, &CubeParams::new(corrector.config.cells));
    let x = correction_input(pv, previous, &prompts, &cube);
    let outside = corrector.predict(&x)?.mapv(|l| -l);
    let mut found: Option<crate::shape::GridComponent> = None;
    for p in &prompts.positive {
        if found.as_ref().is_some_and(|f| vol.index_of_ras(*p).is_some_and(|a| f.contains(a))) {
            continue;
        }
        if let Some(c) = crate::shape::component::sdf_component_on_grid(outside.view(), &cube.ras_from_grid, vol.shape(), vol.ras_from_voxel(), *p) {
            found = Some(match found {
                Some(f) => f.union(&c),
                None => c,
            });
        }
    }
    let candidate = found.as_ref().and_then(|f| crate::baseline::prompted::constrain(f, &prompts, vol));
    Ok(ObjectState { prompts, found, excluded: base.excluded.clone(), candidate })
}

/// Where a prompt is: its point, or its box's centre.
fn prompt_point(p: &Prompt) -> RasMm {
    p.point.map(|p| p.at).or(p.bbox.map(|b| b.centre())).unwrap_or(RasMm::new(0.0, 0.0, 0.0))
}

/// The pipeline from one positive point: the model's pass at it (2D mask → 3D SDF → the
/// component through it → refinement by the image), passes continuing an organ wider than the
/// output cube ([`extension_clicks`]) and region growing joined where it agrees
/// ([`join_region_growing_within`]). None of its non-learned steps takes a voxel `prompts`
/// blocks (near a negative point, outside the box), and no continuation click lies there.
/// Returns the point's own pass and the joined component.
#[allow(clippy::too_many_arguments)]
fn run_click(
    model: &Model,
    pv: &PreparedVolume,
    options: &PipelineOptions,
    refine: Refinement<'_>,
    fusion: (PlaneFusion, usize),
    click: RasMm,
    plane: ViewPlane,
    drawn: Option<&Array2<bool>>,
    prompts: &PromptSet,
    timings: &mut Timings,
    hooks: &mut dyn Hooks,
) -> Result<(Pass, Option<crate::shape::GridComponent>), EngineError> {
    let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };
    let mut first = shape_at(model, pv, fusion, click, plane, drawn, true, Scale::of(options), timings, hooks)?;
    let vol = &pv.volume;
    first.component = refined(vol, first.component.take(), click, refine, prompts, timings);
    let mut component = first.component.clone();

    // An organ wider than the output cube: clicks deeper in the organ toward each face it
    // reaches, their shapes joined to this one (see [`extension_clicks`]). The refined shape
    // decides which faces it reaches: the network's own stays short of them.
    if options.extend
        && let Some(c) = &first.component
    {
        let t = Instant::now();
        let extra = extension_clicks(c, &first.sdf, &first.sample.ras_from_grid, vol);
        log::debug!("extension clicks: {} in {:.3} s", extra.len(), t.elapsed().as_secs_f64());
        // Finding the clicks, and each pass's refinement ([`refined`]), agreement and union, are
        // post-processing (the passes' own stages count where they belong).
        timings.postprocess_secs += t.elapsed().as_secs_f64();
        for (at, idx) in extra.into_iter().filter(|(c, _)| !prompts.blocks(*c)) {
            check(hooks)?;
            let pass = shape_at(model, pv, fusion, at, plane, None, false, Scale::ONE, timings, hooks)?;
            let p = refined(vol, pass.component, at, refine, prompts, timings);
            let t = Instant::now();
            if let (Some(u), Some(p)) = (&component, &p)
                && p.contains(idx)
                && masks_agree(c, (&first.sample.ras_from_grid, first.sample.grid), p, (&pass.sample.ras_from_grid, pass.sample.grid), vol)
            {
                component = Some(u.union(p));
                timings.extension_passes += 1;
            }
            log::debug!("extension at {at:?}: agreement and union {:.3} s", t.elapsed().as_secs_f64());
            timings.postprocess_secs += t.elapsed().as_secs_f64();
        }
    }
    // Region growing from the click, joined where it agrees with the model's shape.
    if options.join
        && let Some(c) = &component
    {
        hooks.progress(Stage::Postprocess);
        let t = Instant::now();
        let cancelled = || hooks.cancelled();
        let (joined, outcome) =
            join_region_growing_within(vol, c, click, &GrowParams::default(), refine.floor, options.join_near(), prompts, &cancelled)
                .map_err(|_| EngineError::Cancelled)?;
        component = Some(joined);
        timings.join = Some(outcome);
        log::debug!("join: {outcome:?} in {:.3} s", t.elapsed().as_secs_f64());
        timings.postprocess_secs += t.elapsed().as_secs_f64();
    }
    Ok((first, component))
}

/// The image refinement a pass runs ([`crate::baseline::refine`]): its parameters (`None`: no
/// refinement), the volume's intensity floor (region growing's too) and the volume smoothed
/// whole when that is ready.
#[derive(Clone, Copy)]
struct Refinement<'a> {
    params: Option<&'a RefineParams>,
    floor: f64,
    smoothed: Option<&'a SmoothedScan>,
}

/// One pass of the model at one click: the click's sample, its 2D mask, the SDF channel and the
/// component holding the click on the source grid, as the network gives it ([`refined`] refines
/// it by the image). Stage times are added to `timings`. `first`: the user's own
/// click, whose stages go to the hooks' progress and whose 2D mask to their preview; the
/// continuation's passes report neither (the progress stays at post-processing meanwhile).
struct Pass {
    sample: ClickSample,
    mask2d: Array2<bool>,
    class: usize,
    /// The SDF channel on the output cube (`[gk, gj, gi]`).
    sdf: Array3<f32>,
    component: Option<crate::shape::GridComponent>,
}

/// The scales a pass may see the scan at ([`shape_at`]).
#[derive(Clone, Copy, Debug)]
struct Scale {
    /// A small shape is seen again magnified ([`PipelineOptions::zoom`]).
    zoom: bool,
    /// With `zoom`, the close-up probe ([`PipelineOptions::close_up`]).
    close_up: bool,
}

impl Scale {
    /// The scan's own scale only (the continuation's and the prompts' passes).
    const ONE: Scale = Scale { zoom: false, close_up: false };
    fn of(o: &PipelineOptions) -> Scale {
        Scale { zoom: o.zoom, close_up: o.zoom && o.close_up }
    }
}

/// One pass of the model at `click` (module doc of [`Pass`]). With [`Scale::zoom`] the scale
/// follows the object ([`crate::data::zoom`]): when the first shape is small, the pass runs
/// again in the scan magnified about the click (its 2D mask too), and its maps and distances
/// are brought back to the scan's own world before the component is taken; with
/// [`Scale::close_up`], a shape too large for that is checked by the close-up probe
/// ([`close_up_zoom`]), whose closed object sets the zoom instead.
#[allow(clippy::too_many_arguments)]
fn shape_at(
    model: &dyn ShapeModel,
    pv: &PreparedVolume,
    (fusion, views): (PlaneFusion, usize),
    click: RasMm,
    plane: ViewPlane,
    drawn: Option<&Array2<bool>>,
    first: bool,
    Scale { zoom, close_up }: Scale,
    timings: &mut Timings,
    hooks: &mut dyn Hooks,
) -> Result<Pass, EngineError> {
    let params = model.click_params();
    let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };

    if first {
        hooks.progress(Stage::Preprocess);
    }
    let t = Instant::now();
    let mut sample = click::prepare_click(pv, click, plane, &params)?;
    timings.preprocess_secs += t.elapsed().as_secs_f64();
    check(hooks)?;

    if first {
        hooks.progress(Stage::Mask2d);
    }
    let t = Instant::now();
    let s = params.image_size;
    let mut mask2d = match drawn {
        Some(m) if m.dim() == (s, s) => m.clone(),
        Some(m) => {
            return Err(EngineError::BadRequest(format!(
                "the drawn 2D mask is {}×{}, the model's slice is {s}×{s}",
                m.nrows(),
                m.ncols()
            )));
        }
        None => model.masks2d(&[&sample])?.remove(0),
    };
    timings.mask2d_secs += t.elapsed().as_secs_f64();
    if first {
        hooks.preview(&mask2d, &sample.ras_from_pixel);
    }
    check(hooks)?;

    if first {
        hooks.progress(Stage::Shape);
    }
    let t = Instant::now();
    let stage = Stage3d { model, params: &params, fusion, click, plane };
    let (mut class, mut sdf) = if drawn.is_some() {
        stage.own(&sample, &mask2d)?
    } else {
        stage.run(pv, &sample, &mask2d, &TEST_VIEWS[..views], hooks)?
    };
    timings.shape_secs += t.elapsed().as_secs_f64();
    check(hooks)?;

    if first {
        hooks.progress(Stage::Postprocess);
    }
    let t = Instant::now();
    let vol = &pv.volume;
    let mut component = crate::shape::sdf_component_on_grid(sdf.view(), &sample.ras_from_grid, vol.shape(), &vol.ras_from_voxel, click);
    log::debug!("pass at {click:?}: shape on the scan's grid {:.3} s ({} voxels)", t.elapsed().as_secs_f64(), component.as_ref().map_or(0, |c| c.voxel_count));
    timings.postprocess_secs += t.elapsed().as_secs_f64();

    // The scale that follows the object: a small shape is seen again in the scan magnified
    // about the click (the click stays where it is) by the zoom of its equivalent radius, and
    // that pass, brought back to the scan's world, replaces it — unless the magnified object
    // reaches its cube's faces (it does not fit: a vessel, a leak), as nnInteractive zooms out
    // when its prediction meets the patch's border.
    // A shape too large to be zoomed may still not be what was clicked (a lesion inside an
    // organ, whose first shape is the organ): the close-up probe looks at the click magnified
    // the most, and a closed object there sets the zoom instead.
    let z = match &component {
        Some(c) if zoom && drawn.is_none() => match crate::data::zoom::zoom_for_radius(crate::data::zoom::ball_radius_mm(c.voxel_count as f64 * vol.voxel_ml())) {
            z if z > 1.0 => z,
            _ if close_up => close_up_zoom(model, pv, click, plane, &params, (&sample.image, &mask2d), timings)?,
            _ => 1.0,
        },
        _ => 1.0,
    };
    if z > 1.0 {
        let t0 = Instant::now();
        let Magnified { pv: pvz, world: t, sample: zs, mask2d: zm } = magnified(model, pv, click, plane, &params, z)?;
        let (zclass, mut zsdf) = stage.run(&pvz, &zs, &zm, &[], hooks)?;
        timings.shape_secs += t0.elapsed().as_secs_f64();
        check(hooks)?;
        if !crate::data::zoom::reaches_faces(&zsdf) {
            let t1 = Instant::now();
            zsdf.mapv_inplace(|d| d / z as f32);
            let back = t.inverse_affine();
            let zs = ClickSample { ras_from_grid: back * zs.ras_from_grid, ras_from_pixel: back * zs.ras_from_pixel, ..zs };
            let zc = crate::shape::sdf_component_on_grid(zsdf.view(), &zs.ras_from_grid, vol.shape(), &vol.ras_from_voxel, click);
            log::debug!("pass at {click:?}: magnified {z:.2}x, {} voxels (as it is: {})", zc.as_ref().map_or(0, |c| c.voxel_count), component.as_ref().map_or(0, |c| c.voxel_count));
            if zc.is_some() {
                (sample, mask2d, class, sdf, component) = (zs, zm, zclass, zsdf, zc);
                timings.zoom = Some(z);
            }
            timings.postprocess_secs += t1.elapsed().as_secs_f64();
        } else {
            log::debug!("pass at {click:?}: magnified {z:.2}x reaches its cube's faces: seen as it is");
        }
    }
    Ok(Pass { sample, mask2d, class, sdf, component })
}

/// The scan magnified about the click (which stays where it is), and the click seen there.
struct Magnified {
    pv: PreparedVolume,
    /// The magnification of the scan's world about the click.
    world: crate::data::train_samples::Similarity,
    sample: ClickSample,
    /// The 2D head's mask on the magnified slice.
    mask2d: Array2<bool>,
}

/// The scan magnified `z` times about `click`, the click's sample there and the 2D head's mask.
fn magnified(model: &dyn ShapeModel, pv: &PreparedVolume, click: RasMm, plane: ViewPlane, params: &click::ClickParams, z: f64) -> Result<Magnified, EngineError> {
    let world = crate::data::train_samples::Similarity { scale: z, ..crate::data::train_samples::Similarity::identity(click) };
    let pv = pv.with_affine(&world.apply_affine(&pv.volume.ras_from_voxel))?;
    let sample = click::prepare_click(&pv, click, plane, params)?;
    let mask2d = model.masks2d(&[&sample])?.remove(0);
    Ok(Magnified { pv, world, sample, mask2d })
}

/// The close-up probe ([`crate::data::zoom::closed_object_radius_mm`]): the 2D head on the slice
/// magnified [`crate::data::zoom::ZOOM_MAX`] times about the click; the zoom for the closed
/// object it sees there, 1 when it sees none. Its time is the 2D stage's.
fn close_up_zoom(
    model: &dyn ShapeModel,
    pv: &PreparedVolume,
    click: RasMm,
    plane: ViewPlane,
    params: &click::ClickParams,
    (first_image, first_mask): (&Array2<f32>, &Array2<bool>),
    timings: &mut Timings,
) -> Result<f64, EngineError> {
    use crate::data::zoom::{PROBE_MIN_CONTRAST, PROBE_MIN_DISTINCT, ZOOM_MAX, close_up_contrast, close_up_distinctness, closed_object_radius_mm, zoom_for_radius};
    let t = Instant::now();
    let Magnified { sample, mask2d: mask, .. } = magnified(model, pv, click, plane, params, ZOOM_MAX)?;
    let r = closed_object_radius_mm(&mask, params, ZOOM_MAX);
    // The object must be unlike the first shape and have an edge in the scan: inside an organ's
    // even texture the magnified head also draws closed blobs.
    let distinct = r.and_then(|_| close_up_distinctness(&sample.image, &mask, first_image, first_mask));
    let contrast = distinct.filter(|d| *d >= PROBE_MIN_DISTINCT).and_then(|_| close_up_contrast(&sample.image, &mask));
    let taken = r.filter(|_| contrast.is_some_and(|c| c >= PROBE_MIN_CONTRAST));
    timings.mask2d_secs += t.elapsed().as_secs_f64();
    log::debug!("close-up probe at {click:?} ({plane:?}): closed object radius {r:?} mm, unlike the first shape by {distinct:?}, edge {contrast:?}: {}", if taken.is_some() { "taken" } else { "not taken" });
    Ok(taken.map_or(1.0, zoom_for_radius))
}

/// A pass's 3D stage ([`shape_at`]): the clicked plane's shape, with the other planes through
/// the click and the test views fused into it.
struct Stage3d<'a> {
    model: &'a dyn ShapeModel,
    params: &'a click::ClickParams,
    fusion: PlaneFusion,
    click: RasMm,
    plane: ViewPlane,
}

impl Stage3d<'_> {
    /// The clicked plane's shape alone (a drawn 2D mask keeps the click to its plane).
    fn own(&self, sample: &ClickSample, mask2d: &Array2<bool>) -> Result<(usize, Array3<f32>), EngineError> {
        Ok(self.model.sdfs(&[sample], &[mask2d])?.remove(0))
    }

    /// The shape on `sample`'s cube as `pv_seen` shows the scan (the scan itself, or magnified
    /// about the click): with the other planes' (their 2D masks from the model) and `views`'
    /// fused per cell as the fusion says, all in one batch.
    fn run(&self, pv_seen: &PreparedVolume, sample: &ClickSample, mask2d: &Array2<bool>, views: &[TestView], hooks: &dyn Hooks) -> Result<(usize, Array3<f32>), EngineError> {
        let check = |hooks: &dyn Hooks| if hooks.cancelled() { Err(EngineError::Cancelled) } else { Ok(()) };
        let (model, params, fusion, click, plane) = (self.model, self.params, self.fusion, self.click, self.plane);
        let planes: Vec<ViewPlane> = if fusion != PlaneFusion::Own { ViewPlane::ALL.into_iter().filter(|&q| q != plane).collect() } else { Vec::new() };
        if planes.is_empty() && views.is_empty() {
            return self.own(sample, mask2d);
        }
        // The other planes through the click and the clicked plane's sample in each test view,
        // then each view's planes: their 2D masks, then all shapes in one batch (one forward of
        // n costs less than n of one on a CPU). Each extra sample keeps the grid → RAS map of
        // its cube in the world `pv_seen` shows, for resampling onto the clicked cube.
        let mut others: Vec<(ClickSample, RasFromGrid, f32)> = Vec::new();
        for q in &planes {
            let s = click::prepare_click(pv_seen, click, *q, params)?;
            let g = s.ras_from_grid;
            others.push((s, g, 1.0));
        }
        for v in views {
            for q in std::iter::once(plane).chain(planes.iter().copied()) {
                let (s, g) = v.prepare_click(pv_seen, click, q, params)?;
                others.push((s, g, v.scale as f32));
            }
        }
        check(hooks)?;
        let other_refs: Vec<&ClickSample> = others.iter().map(|o| &o.0).collect();
        let other_masks = model.masks2d(&other_refs)?;
        check(hooks)?;
        let mut all = vec![sample];
        all.extend(other_refs);
        let mut masks = vec![mask2d];
        masks.extend(other_masks.iter());
        let mut sdfs = model.sdfs(&all, &masks)?;
        let (class, mut own) = sdfs.remove(0);
        // A view's distances are in its moved world, `scale` times the scan's.
        let resampled: Vec<Array3<f32>> =
            sdfs.iter().zip(&others).map(|((_, o), (_, g, scale))| resample_cube(&o.mapv(|d| d / scale), g, &sample.ras_from_grid, &own)).collect();
        fuse_sdfs(&mut own, &resampled, if fusion == PlaneFusion::Own { PlaneFusion::Median } else { fusion });
        Ok((class, own))
    }
}

/// `component` (a pass at `click`) refined by the image when `refine` has parameters
/// ([`refine_component_within`]); as it is otherwise. Its time is post-processing.
fn refined(
    vol: &Volume,
    component: Option<crate::shape::GridComponent>,
    click: RasMm,
    refine: Refinement<'_>,
    prompts: &PromptSet,
    timings: &mut Timings,
) -> Option<crate::shape::GridComponent> {
    let (Some(p), Some(c)) = (refine.params, &component) else { return component };
    let t = Instant::now();
    let out = refine_component_within(vol, c, p, refine.floor, vol.index_of_ras(click), prompts, refine.smoothed);
    log::debug!("pass at {click:?}: refinement {:.3} s ({} voxels)", t.elapsed().as_secs_f64(), out.voxel_count);
    timings.postprocess_secs += t.elapsed().as_secs_f64();
    Some(out)
}

/// A test view: the scan's world moved by a small similarity about the click (a rotation of
/// `deg` degrees about `axis`, then a scale), as training's augmentation moves it. The model runs
/// in each view the session asks for ([`Session::set_views`]) as well as in the scan's own world,
/// and every shape joins the per-cell vote of the planes ([`PlaneFusion`]; with the clicked plane
/// alone, the median of its views).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TestView {
    pub axis: [f64; 3],
    pub deg: f64,
    pub scale: f64,
}

impl TestView {
    /// The similarity about `click`.
    pub fn about(&self, click: RasMm) -> crate::data::train_samples::Similarity {
        let axis = nalgebra::Unit::new_normalize(nalgebra::Vector3::from(self.axis));
        let rot = *nalgebra::Rotation3::from_axis_angle(&axis, self.deg.to_radians()).matrix();
        crate::data::train_samples::Similarity { centre: click.v, rot, scale: self.scale }
    }

    /// The click's sample in this view (the click stays where it is), and its output cube's
    /// grid → RAS map in the scan's own world.
    pub fn prepare_click(&self, pv: &PreparedVolume, click: RasMm, plane: ViewPlane, p: &click::ClickParams) -> Result<(ClickSample, RasFromGrid), ClickError> {
        let t = self.about(click);
        let moved = pv.with_affine(&t.apply_affine(&pv.volume.ras_from_voxel))?;
        let s = click::prepare_click(&moved, click, plane, p)?;
        let g = t.inverse_affine() * s.ras_from_grid;
        Ok((s, g))
    }
}

/// The test views, in the order [`Session::set_views`] takes them: each inside the shipped
/// training's augmentation (rotations up to 12°, scales ±12 %).
pub const TEST_VIEWS: [TestView; 4] = [
    TestView { axis: [1.0, 1.0, 1.0], deg: 8.0, scale: 0.92 },
    TestView { axis: [1.0, -1.0, 0.0], deg: -8.0, scale: 1.08 },
    TestView { axis: [0.0, 1.0, -1.0], deg: 8.0, scale: 1.0 },
    TestView { axis: [-1.0, 0.0, 1.0], deg: -8.0, scale: 0.96 },
];

/// How close to a face of the output cube a mask must come to count as reaching it: the
/// network's SDF stays a few 4 mm cells short of the faces even where the organ runs on.
pub const EXTEND_MARGIN_MM: f64 = 12.0;
/// Least volume of the mask within [`EXTEND_MARGIN_MM`] of a face for that face to get a click.
pub const EXTEND_MIN_ML: f64 = 1.0;

/// The clicks that continue an organ past the output cube: for each face of the cube (grid of
/// `n` cells per side, `ras_from_grid`) that `comp` reaches with at least [`EXTEND_MIN_ML`]
/// within [`EXTEND_MARGIN_MM`], the deepest voxel of `comp` in the cube's outer quarter on that
/// side, as RAS and as its array index. Most touching face first. The model at such a click
/// sees a cube shifted toward that face by up to half a cube.
///
/// Depth is the pass's own SDF (`sdf`, `[gk, gj, gi]` on the cube, negative inside), read
/// trilinearly at the voxel: the network's distance to the organ's surface, which it has on
/// hand, where a distance transform of the component's box cost a tenth of a second on a
/// liver. The voxels are walked in parallel, plane by plane.
pub fn extension_clicks(comp: &crate::shape::GridComponent, sdf: &Array3<f32>, ras_from_grid: &RasFromGrid, vol: &Volume) -> Vec<(RasMm, ArrayIdx)> {
    let n = sdf.dim().0;
    let Some(grid_at) = cube_coords(ras_from_grid, vol) else { return Vec::new() };
    let cell_mm = {
        let a = ras_from_grid.apply(Point3::new(0.0, 0.0, 0.0));
        let b = ras_from_grid.apply(Point3::new(1.0, 0.0, 0.0));
        a.distance(&b)
    };
    let margin = EXTEND_MARGIN_MM / cell_mm;
    let (lo, hi) = (-0.5, n as f64 - 0.5);
    let centre = (n as f64 - 1.0) / 2.0;
    let quarter = n as f64 / 4.0;
    let voxel_ml = vol.voxel_ml();
    let [k0, j0, i0] = comp.origin_kji;
    // Per face (axis x/y/z of the grid, low/high side): whether a voxel at grid coordinates `g`
    // is near it, and whether it lies in the outer quarter on that side.
    let near = |g: [f64; 3], a: usize, side: usize| if side == 0 { g[a] - lo <= margin } else { hi - g[a] <= margin };
    let outer = |g: [f64; 3], a: usize, side: usize| if side == 0 { centre - g[a] >= quarter } else { g[a] - centre >= quarter };
    // The component's voxels of plane `k` (of its box), each with its grid coordinates.
    let plane_voxels = |k: usize, f: &mut dyn FnMut(ArrayIdx, [f64; 3])| {
        for ((j, i), m) in comp.mask.index_axis(ndarray::Axis(0), k).indexed_iter() {
            if *m {
                let v = ArrayIdx { k: k0 + k, j: j0 + j, i: i0 + i };
                f(v, grid_at(v));
            }
        }
    };
    // Voxels near each face, counted plane by plane in parallel.
    type Faces<T> = [[T; 2]; 3];
    let touch: Faces<usize> = (0..comp.mask.dim().0)
        .into_par_iter()
        .map(|k| {
            let mut t = [[0usize; 2]; 3];
            plane_voxels(k, &mut |_, g| {
                for (a, t) in t.iter_mut().enumerate() {
                    for (side, t) in t.iter_mut().enumerate() {
                        *t += usize::from(near(g, a, side));
                    }
                }
            });
            t
        })
        .reduce(|| [[0; 2]; 3], |x, y| std::array::from_fn(|a| std::array::from_fn(|s| x[a][s] + y[a][s])));
    let reached: Faces<bool> = std::array::from_fn(|a| std::array::from_fn(|side| touch[a][side] as f64 * voxel_ml >= EXTEND_MIN_ML));
    if !reached.iter().flatten().any(|r| *r) {
        return Vec::new();
    }
    let d = comp.mask.dim();
    // The deepest voxel in the outer quarter of each reached face: the first in [k, j, i]
    // order among equals (each plane's first, then the planes in order).
    type Deepest = Option<(f32, ArrayIdx)>;
    let deeper = |b: Deepest, c: Deepest| match (b, c) {
        (Some((x, _)), Some((y, _))) if y > x => c,
        (None, _) => c,
        _ => b,
    };
    let best: Faces<Deepest> = (0..d.0)
        .into_par_iter()
        .map(|k| {
            let mut best: Faces<Deepest> = [[None; 2]; 3];
            plane_voxels(k, &mut |v, g| {
                // The depth is read only for voxels in a reached face's outer quarter.
                let mut dep = None;
                for a in 0..3 {
                    for side in 0..2 {
                        if reached[a][side] && outer(g, a, side) {
                            let d = *dep.get_or_insert_with(|| -cube_trilinear(sdf, g));
                            if best[a][side].is_none_or(|(b, _)| d > b) {
                                best[a][side] = Some((d, v));
                            }
                        }
                    }
                }
            });
            best
        })
        .reduce(|| [[None; 2]; 3], |x, y| std::array::from_fn(|a| std::array::from_fn(|s| deeper(x[a][s], y[a][s]))));
    let mut faces: Vec<(usize, ArrayIdx)> = Vec::new();
    for a in 0..3 {
        for side in 0..2 {
            if reached[a][side]
                && let Some((_, v)) = best[a][side]
            {
                faces.push((touch[a][side], v));
            }
        }
    }
    faces.sort_by_key(|f| std::cmp::Reverse(f.0));
    faces
        .into_iter()
        .map(|(_, v)| (vol.ras_from_voxel.apply(Point3::new(v.i as f64, v.j as f64, v.k as f64)), v))
        .collect()
}

/// `cube` (`[gk, gj, gi]`) at grid coordinates `g` (`[gi, gj, gk]`), trilinear, clamped to the
/// cell centres.
fn cube_trilinear(cube: &Array3<f32>, g: [f64; 3]) -> f32 {
    let (nk, nj, ni) = cube.dim();
    let axis = |x: f64, n: usize| {
        let x = x.clamp(0.0, (n - 1) as f64);
        let lo = (x.floor() as usize).min(n.saturating_sub(2));
        (lo, (lo + 1).min(n - 1), (x - lo as f64) as f32)
    };
    let ((i0, i1, fi), (j0, j1, fj), (k0, k1, fk)) = (axis(g[0], ni), axis(g[1], nj), axis(g[2], nk));
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let row = |k: usize, j: usize| lerp(cube[[k, j, i0]], cube[[k, j, i1]], fi);
    lerp(lerp(row(k0, j0), row(k0, j1), fj), lerp(row(k1, j0), row(k1, j1), fj), fk)
}

/// A voxel of `vol`'s grid → its coordinates on the output cube's grid (`ras_from_grid`; cell
/// centres at 0…n−1, the cube's faces at −0.5 and n − 0.5). `None` when the cube's affine is
/// singular.
fn cube_coords(ras_from_grid: &RasFromGrid, vol: &Volume) -> Option<impl Fn(ArrayIdx) -> [f64; 3] + use<>> {
    let grid_from_voxel = ras_from_grid.try_inverse().ok()? * vol.ras_from_voxel;
    Some(move |v: ArrayIdx| grid_from_voxel.apply(Point3::new(v.i as f64, v.j as f64, v.k as f64)).to_array())
}

/// Least share of each mask, within the other's cube, that the two must hold in common for an
/// extension pass to be joined (see [`extension_clicks`]).
pub const EXTEND_MIN_AGREEMENT: f64 = 0.5;

/// Whether an extension pass (`b`, whose output cube is `cb`: grid → RAS and cells per side)
/// segmented the same structure as the first pass (`a`, cube `ca`): of `a`'s voxels inside
/// `b`'s cube, and of `b`'s voxels inside `a`'s cube, at least [`EXTEND_MIN_AGREEMENT`] each
/// are in both. A pass whose click landed in a neighbour the first mask had leaked into fails.
pub fn masks_agree(
    a: &crate::shape::GridComponent,
    ca: (&RasFromGrid, usize),
    b: &crate::shape::GridComponent,
    cb: (&RasFromGrid, usize),
    vol: &Volume,
) -> bool {
    let in_cube = |(ras_from_grid, n): (&RasFromGrid, usize)| {
        let grid_at = cube_coords(ras_from_grid, vol);
        let hi = n as f64 - 0.5;
        move |v: ArrayIdx| grid_at.as_ref().is_some_and(|at| at(v).iter().all(|&g| (-0.5..=hi).contains(&g)))
    };
    let (in_a, in_b) = (in_cube(ca), in_cube(cb));
    // Counted plane by plane in parallel.
    let count = |c: &crate::shape::GridComponent, f: &(dyn Fn(ArrayIdx) -> [usize; 2] + Sync)| -> [usize; 2] {
        let [k0, j0, i0] = c.origin_kji;
        c.mask
            .axis_iter(ndarray::Axis(0))
            .into_par_iter()
            .enumerate()
            .map(|(k, plane)| {
                let mut n = [0usize; 2];
                for ((j, i), m) in plane.indexed_iter() {
                    if *m {
                        let x = f(ArrayIdx { k: k0 + k, j: j0 + j, i: i0 + i });
                        n = [n[0] + x[0], n[1] + x[1]];
                    }
                }
                n
            })
            .reduce(|| [0, 0], |x, y| [x[0] + y[0], x[1] + y[1]])
    };
    let [a_in_b, both] = count(a, &|v| if in_b(v) { [1, usize::from(b.contains(v))] } else { [0, 0] });
    let [b_in_a, _] = count(b, &|v| [usize::from(in_a(v)), 0]);
    let share = |n: usize| if n == 0 { 0.0 } else { both as f64 / n as f64 };
    share(a_in_b) >= EXTEND_MIN_AGREEMENT && share(b_in_a) >= EXTEND_MIN_AGREEMENT
}

/// `src` (a cube's SDF, `[gk, gj, gi]`, grid → RAS by `ras_from_src`) resampled (trilinear) at
/// the cells of another cube (`ras_from_dst`, the shape of `fallback`). Cells outside `src`'s
/// cube take `fallback`'s value. The three planes' cubes about one click share their cell
/// centres (their frames permute and flip the RAS axes), so there the values are copied.
pub fn resample_cube(src: &Array3<f32>, ras_from_src: &RasFromGrid, ras_from_dst: &RasFromGrid, fallback: &Array3<f32>) -> Array3<f32> {
    let Ok(src_from_ras) = ras_from_src.try_inverse() else { return fallback.clone() };
    let src_from_dst: crate::geometry::Affine3<crate::geometry::Grid, crate::geometry::Grid> = src_from_ras * *ras_from_dst;
    let src = src.as_standard_layout().into_owned();
    Array3::from_shape_fn(fallback.dim(), |(k, j, i)| {
        let p = src_from_dst.apply(Point3::new(i as f64, j as f64, k as f64));
        crate::volume::resample::trilinear_at(&src, p.v.x, p.v.y, p.v.z).unwrap_or(fallback[[k, j, i]])
    })
}

/// Combines `sdf` with the other planes' SDFs (on its cells) in place.
fn fuse_sdfs(sdf: &mut Array3<f32>, others: &[Array3<f32>], fusion: PlaneFusion) {
    let combine: fn(&mut [f32]) -> f32 = match fusion {
        PlaneFusion::Own => return,
        PlaneFusion::Mean => |all| all.iter().sum::<f32>() / all.len() as f32,
        PlaneFusion::Median => |all| {
            all.sort_by(f32::total_cmp);
            let n = all.len();
            if n % 2 == 1 { all[n / 2] } else { 0.5 * (all[n / 2 - 1] + all[n / 2]) }
        },
    };
    let mut all = Vec::with_capacity(others.len() + 1);
    for (idx, v) in sdf.indexed_iter_mut() {
        all.clear();
        all.push(*v);
        all.extend(others.iter().map(|o| o[idx]));
        *v = combine(&mut all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::geometry::RasFromVoxel;
    use crate::shape::GridComponent;

    /// A network that segments what is bright: its 2D mask is the slice's bright pixels
    /// connected to the click, its signed distance the guide's (the scan at the cube's cells)
    /// difference from the threshold, which is zero where the scan crosses it. Whatever world it is shown, it answers in that world, as a network does.
    struct Bright;
    impl ShapeModel for Bright {
        fn click_params(&self) -> click::ClickParams {
            click::ClickParams {
                image_size: 32,
                spacing_mm: 3.0,
                cube_mm: 96.0,
                grid: 24,
                ct_window_hu: [-160.0, 240.0],
                prior_radius_px: 1.0,
                context: Some(click::ContextParams { size: 8, guide: true }),
            }
        }
        fn masks2d(&self, samples: &[&ClickSample]) -> Result<Vec<Array2<bool>>, EngineError> {
            Ok(samples.iter().map(|s| {
                let c = s.image.nrows() / 2;
                crate::engine::shape_model::component_2d(&s.image.mapv(|v| v > 0.65), [c, c])
            }).collect())
        }
        fn sdfs(&self, samples: &[&ClickSample], _masks: &[&Array2<bool>]) -> Result<Vec<(usize, Array3<f32>)>, EngineError> {
            Ok(samples.iter().map(|s| (0, s.guide.as_ref().expect("guide").mapv(|v| 0.65 - v))).collect())
        }
    }

    /// A 0.9 ml ball (6 mm radius, 200 HU in water) on a 1 mm grid: seen as it is, the 4 mm
    /// cells of the cube make it coarse; magnified (4x: 1 mm cells), the pass holds it to a
    /// voxel, and its maps and distances come back to the scan's world (a pass whose magnified
    /// map were taken for the scan's would be four times too large, or elsewhere).
    #[test]
    fn a_magnified_pass_comes_back_to_the_scan_where_and_as_large_as_the_object_is() {
        let centre = nalgebra::Vector3::new(30.0, 26.0, 34.0);
        let ras_from_voxel = RasFromVoxel::from_parts(nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(-1.0, 1.0, 1.0)), nalgebra::Vector3::new(63.0, 0.0, 0.0));
        let mut data = Array3::<f32>::zeros((64, 64, 64));
        for ((k, j, i), v) in data.indexed_iter_mut() {
            let p = ras_from_voxel.apply(crate::geometry::VoxelIjk::new(i as f64, j as f64, k as f64));
            if (p.v - centre).norm() <= 6.0 {
                *v = 200.0;
            }
        }
        let vol = Arc::new(Volume::new(data, ras_from_voxel).expect("volume"));
        let truth = vol.data.mapv(|v| v > 100.0);
        let pv = PreparedVolume::new(vol.clone(), Some(Modality::Ct), [-160.0, 240.0]).expect("prepared");
        // Off the centre by 1.5 mm: the click is where a user puts it, not the ball's centre.
        let click = RasMm::from_vec(centre + nalgebra::Vector3::new(1.0, -1.0, 0.5));
        let dice = |zoom: bool| {
            let mut timings = Timings::default();
            let pass = shape_at(&Bright, &pv, (PlaneFusion::Median, 0), click, ViewPlane::Axial, None, true, Scale { zoom, close_up: true }, &mut timings, &mut NoHooks).expect("pass");
            let got = pass.component.expect("a component").to_mask(vol.shape().array_shape());
            (crate::engine::eval::mask_dice(&got, &truth), timings.zoom, pass.sample.ras_from_pixel.apply(Point3::new(15.5, 15.5, 0.0)))
        };
        let (plain, z0, _) = dice(false);
        let (zoomed, z, centre_px) = dice(true);
        assert_eq!(z0, None);
        assert_eq!(z, Some(crate::data::zoom::ZOOM_MAX), "a 6 mm ball is magnified the most");
        assert!(zoomed > 0.9, "magnified: Dice {zoomed}, as it is {plain}");
        assert!(zoomed > plain + 0.05, "magnified {zoomed} against as it is {plain}");
        // The slice's centre pixel maps back onto the click in the scan's world.
        assert!((centre_px.v - click.v).norm() < 1e-6, "{centre_px:?}");
    }

    /// A network that sees coarsely: it answers "what looks like the click" on the scan averaged
    /// over a fixed number of its pixels and cells (5 pixels, 3 cells), so at the model's own
    /// 3 mm pixels a 3 mm lesion is averaged into the organ around it, and only a close-up
    /// tells them apart, as the shipped network swallows a lesion into its organ.
    struct Coarse;
    impl Coarse {
        const LIKE: f32 = 0.08;
        fn box_mean2(a: &Array2<f32>, r: usize) -> Array2<f32> {
            let (h, w) = a.dim();
            Array2::from_shape_fn((h, w), |(y, x)| {
                let sl = a.slice(ndarray::s![y.saturating_sub(r)..(y + r + 1).min(h), x.saturating_sub(r)..(x + r + 1).min(w)]);
                sl.sum() / sl.len() as f32
            })
        }
        fn box_mean3(a: &Array3<f32>, r: usize) -> Array3<f32> {
            let (d, h, w) = a.dim();
            Array3::from_shape_fn((d, h, w), |(k, j, i)| {
                let sl = a.slice(ndarray::s![k.saturating_sub(r)..(k + r + 1).min(d), j.saturating_sub(r)..(j + r + 1).min(h), i.saturating_sub(r)..(i + r + 1).min(w)]);
                sl.sum() / sl.len() as f32
            })
        }
    }
    impl ShapeModel for Coarse {
        fn click_params(&self) -> click::ClickParams {
            Bright.click_params()
        }
        fn masks2d(&self, samples: &[&ClickSample]) -> Result<Vec<Array2<bool>>, EngineError> {
            Ok(samples.iter().map(|s| {
                let c = s.image.nrows() / 2;
                let b = Self::box_mean2(&s.image, 2);
                let at = b[[c, c]];
                crate::engine::shape_model::component_2d(&b.mapv(|v| (v - at).abs() < Self::LIKE), [c, c])
            }).collect())
        }
        fn sdfs(&self, samples: &[&ClickSample], _masks: &[&Array2<bool>]) -> Result<Vec<(usize, Array3<f32>)>, EngineError> {
            Ok(samples.iter().map(|s| {
                let b = Self::box_mean3(s.guide.as_ref().expect("guide"), 1);
                let c = b.dim().0 / 2;
                // The click lies between the eight central cells.
                let at = b.slice(ndarray::s![c - 1..=c, c - 1..=c, c - 1..=c]).mean().expect("cells");
                (0, b.mapv(|v| (v - at).abs() - Self::LIKE))
            }).collect())
        }
    }

    /// A 3 mm lesion (200 HU) inside a 30 mm-radius organ (60 HU) on a 1 mm grid, clicked at its
    /// centre. The coarse network's first shape is the organ, too large to be zoomed; the
    /// close-up probe sees the lesion closed at 4x, and the magnified pass finds the lesion.
    /// Without the zoom the result is the organ.
    #[test]
    fn the_close_up_probe_finds_a_lesion_the_first_shape_swallows() {
        let mut data = Array3::<f32>::from_elem((80, 80, 80), -100.0);
        let (organ, lesion) = (nalgebra::Vector3::new(40.0, 40.0, 40.0), nalgebra::Vector3::new(46.0, 37.0, 41.0));
        for ((k, j, i), v) in data.indexed_iter_mut() {
            let p = nalgebra::Vector3::new(i as f64, j as f64, k as f64);
            if (p - lesion).norm() <= 3.0 {
                *v = 200.0;
            } else if (p - organ).norm() <= 30.0 {
                *v = 60.0;
            }
        }
        let vol = Arc::new(Volume::new(data, RasFromVoxel::identity()).expect("volume"));
        let truth = vol.data.mapv(|v| v > 100.0);
        let pv = PreparedVolume::new(vol.clone(), Some(Modality::Ct), [-160.0, 240.0]).expect("prepared");
        let click = RasMm::from_vec(lesion);
        let pass = |zoom: bool| {
            let mut timings = Timings::default();
            let p = shape_at(&Coarse, &pv, (PlaneFusion::Median, 0), click, ViewPlane::Axial, None, true, Scale { zoom, close_up: true }, &mut timings, &mut NoHooks).expect("pass");
            let c = p.component.expect("a component");
            let inside = c.to_mask(vol.shape().array_shape()).iter().zip(truth.iter()).filter(|(m, t)| **m && **t).count();
            (inside as f64 / c.voxel_count as f64, c.voxel_count, timings.zoom)
        };
        let (plain, plain_voxels, none) = pass(false);
        let (zoomed, zoomed_voxels, z) = pass(true);
        assert_eq!(none, None);
        assert!(plain_voxels > 20_000 && plain < 0.01, "as it is, the organ: {plain_voxels} voxels, {plain} of them in the lesion");
        assert_eq!(z, Some(crate::data::zoom::ZOOM_MAX), "the lesion is seen at the largest zoom");
        // (This network's magnified shape is the lesion's core: its 3-cell average blurs the rim.)
        assert!(zoomed > 0.95 && (10..=113).contains(&zoomed_voxels), "with the probe: {zoomed_voxels} voxels, {zoomed} of them in the lesion (113 voxels)");
    }

    /// A network that draws the same closed blob wherever it is clicked (a 6-pixel disc, a
    /// 6-cell ball), as the shipped network does when magnified inside an organ's even texture.
    struct Blob;
    impl ShapeModel for Blob {
        fn click_params(&self) -> click::ClickParams {
            Bright.click_params()
        }
        fn masks2d(&self, samples: &[&ClickSample]) -> Result<Vec<Array2<bool>>, EngineError> {
            Ok(samples.iter().map(|s| {
                let c = s.image.nrows() as f64 / 2.0;
                Array2::from_shape_fn(s.image.dim(), |(y, x)| (y as f64 - c).powi(2) + (x as f64 - c).powi(2) <= 36.0)
            }).collect())
        }
        fn sdfs(&self, samples: &[&ClickSample], _masks: &[&Array2<bool>]) -> Result<Vec<(usize, Array3<f32>)>, EngineError> {
            Ok(samples.iter().map(|s| {
                let c = s.guide.as_ref().expect("guide").dim().0 as f32 / 2.0 - 0.5;
                (0, Array3::from_shape_fn(s.guide.as_ref().expect("guide").dim(), |(k, j, i)| ((k as f32 - c).powi(2) + (j as f32 - c).powi(2) + (i as f32 - c).powi(2)).sqrt() - 6.0))
            }).collect())
        }
    }

    /// A click in an organ's noisy, even texture with a network that draws a closed blob in any
    /// close-up: the probe sees a closed object, but one neither unlike the first shape nor with
    /// an edge, so it is not taken and the first shape (a 24 mm ball: too large to be zoomed)
    /// stands. (Taken, its 6 mm ball would fit the magnified cube.)
    #[test]
    fn the_close_up_probe_does_not_take_a_blob_drawn_in_an_even_texture() {
        let mut state = 99u64;
        let data = Array3::<f32>::from_shape_fn((80, 80, 80), |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            60.0 + ((state >> 11) as f64 / (1u64 << 53) as f64 * 16.0 - 8.0) as f32
        });
        let vol = Arc::new(Volume::new(data, RasFromVoxel::identity()).expect("volume"));
        let pv = PreparedVolume::new(vol.clone(), Some(Modality::Ct), [-160.0, 240.0]).expect("prepared");
        let mut timings = Timings::default();
        let p = shape_at(&Blob, &pv, (PlaneFusion::Median, 0), RasMm::new(40.0, 40.0, 40.0), ViewPlane::Axial, None, true, Scale { zoom: true, close_up: true }, &mut timings, &mut NoHooks).expect("pass");
        assert_eq!(timings.zoom, None, "the blob in the texture is not taken");
        let n = p.component.expect("the first shape").voxel_count;
        assert!(n > 50_000, "the first shape stands: {n} voxels (a 24 mm ball holds 57 900)");
    }

    /// A vessel along the axial slice's normal (a 6 mm-radius tube through the whole scan):
    /// small on the clicked slice, so magnified, but reaching the magnified cube's faces, so
    /// seen as it is, as a pass without the zoom sees it.
    #[test]
    fn a_magnified_pass_that_reaches_its_cubes_faces_is_seen_as_it_is() {
        let mut data = Array3::<f32>::zeros((64, 64, 64));
        for ((_, j, i), v) in data.indexed_iter_mut() {
            if ((i as f64 - 30.0).powi(2) + (j as f64 - 33.0).powi(2)).sqrt() <= 6.0 {
                *v = 200.0;
            }
        }
        let vol = Arc::new(Volume::new(data, RasFromVoxel::identity()).expect("volume"));
        let pv = PreparedVolume::new(vol.clone(), Some(Modality::Ct), [-160.0, 240.0]).expect("prepared");
        let click = RasMm::new(30.0, 33.0, 31.0);
        let pass = |zoom: bool| {
            let mut timings = Timings::default();
            let p = shape_at(&Bright, &pv, (PlaneFusion::Median, 0), click, ViewPlane::Axial, None, true, Scale { zoom, close_up: true }, &mut timings, &mut NoHooks).expect("pass");
            (p.component.expect("a component"), timings.zoom, timings.mask2d_secs > 0.0)
        };
        let (plain, none, _) = pass(false);
        let (zoomed, z, _) = pass(true);
        assert_eq!((none, z), (None, None), "the tube does not fit the magnified cube");
        assert_eq!(zoomed.voxel_count, plain.voxel_count);
        // It runs through the whole 64 mm scan, as the 96 mm cube sees it.
        let k: std::collections::BTreeSet<usize> = zoomed.to_mask(vol.shape().array_shape()).indexed_iter().filter(|(_, m)| **m).map(|((k, _, _), _)| k).collect();
        assert_eq!(k.len(), 64, "{k:?}");
    }

    /// A 1 mm grid (RAS = voxel i, j, k), and an output cube of 16 cells of 4 mm (64 mm) centred
    /// on (50, 35, 35): it spans x 18…82, y and z 3…67.
    fn grid_and_cube() -> (Volume, RasFromGrid) {
        let vol = Volume::new(Array3::zeros((70, 70, 120)), RasFromVoxel::identity()).expect("volume");
        let ras_from_grid = RasFromGrid::scale_translate([4.0; 3], [50.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5]);
        (vol, ras_from_grid)
    }

    /// The box x0..=x1, y and z c−r..=c+r (RAS mm = voxels) as a component.
    fn bar(x: [usize; 2], c: usize, r: usize) -> GridComponent {
        let mask = Array3::from_elem((2 * r + 1, 2 * r + 1, x[1] - x[0] + 1), true);
        GridComponent { origin_kji: [c - r, c - r, x[0]], voxel_count: mask.len(), mask }
    }
    /// The [`bar`]'s signed distance (a box's, mm; the grid's voxels are 1 mm) on the 16-cell
    /// cube `ras_from_grid`, as the network's SDF channel (`[gk, gj, gi]`).
    fn bar_sdf(ras_from_grid: &RasFromGrid, x: [usize; 2], c: usize, r: usize) -> Array3<f32> {
        let centre = [(x[0] + x[1]) as f64 / 2.0, c as f64, c as f64];
        let half = [(x[1] - x[0]) as f64 / 2.0 + 0.5, r as f64 + 0.5, r as f64 + 0.5];
        Array3::from_shape_fn((16, 16, 16), |(k, j, i)| {
            let p = ras_from_grid.apply(Point3::new(i as f64, j as f64, k as f64)).to_array();
            let q: [f64; 3] = std::array::from_fn(|a| (p[a] - centre[a]).abs() - half[a]);
            let out = q.iter().map(|v| v.max(0.0).powi(2)).sum::<f64>().sqrt();
            (out + q[0].max(q[1]).max(q[2]).min(0.0)) as f32
        })
    }

    /// A linear field of RAS sampled on a cube: trilinear resampling reproduces it exactly.
    fn linear_field(ras_from_grid: &RasFromGrid, n: usize) -> Array3<f32> {
        Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let p = ras_from_grid.apply(Point3::new(i as f64, j as f64, k as f64));
            (p.x() - 2.0 * p.y() + 3.0 * p.z()) as f32
        })
    }

    #[test]
    fn resample_cube_maps_each_planes_cube_onto_the_clicked_ones() {
        let n = 12;
        let click = RasMm::new(10.0, -20.0, 30.0);
        let axial = click::cube_affine(click, &click::slice_frame(ViewPlane::Axial), 48.0, n);
        let fallback = Array3::from_elem((n, n, n), -99.0f32);
        for plane in [ViewPlane::Coronal, ViewPlane::Sagittal] {
            let other = click::cube_affine(click, &click::slice_frame(plane), 48.0, n);
            let src = linear_field(&other, n);
            // Same cell centres, axes permuted and flipped: every value lands where its RAS is.
            let r = resample_cube(&src, &other, &axial, &fallback);
            let want = linear_field(&axial, n);
            assert!(r.iter().zip(want.iter()).all(|(a, b)| (a - b).abs() < 1e-3), "{plane:?}");
            // The source's own layout differs (it is not a plain copy).
            assert!(src.iter().zip(want.iter()).any(|(a, b)| (a - b).abs() > 1.0), "{plane:?}");
        }
        // A cube shifted by 1.5 cells along +x: interpolated inside; the fallback a cell and a
        // half before its first centre; its edge value within half a cell of it.
        let shifted = click::cube_affine(RasMm::new(16.0, -20.0, 30.0), &click::slice_frame(ViewPlane::Coronal), 48.0, n);
        let src = linear_field(&shifted, n);
        let r = resample_cube(&src, &shifted, &axial, &fallback);
        let want = linear_field(&axial, n);
        for ((k, j, i), v) in r.indexed_iter() {
            match i {
                0 => assert_eq!(*v, -99.0, "cell {i}, {j}, {k} lies outside the shifted cube"),
                1 => assert!((v - (want[[k, j, i]] + 2.0)).abs() < 1e-3, "cell {i}, {j}, {k}: the edge value (x 2 mm on)"),
                _ => assert!((v - want[[k, j, i]]).abs() < 1e-3, "cell {i}, {j}, {k}: {v}"),
            }
        }
    }

    /// A test view's sample shows the scan moved about the click, and the grid map it returns
    /// puts each of its cells back where that content lies in the scan's own world.
    #[test]
    fn a_test_view_maps_its_cube_back_onto_the_scan() {
        let mut p = crate::model::Config::tiny().click_params();
        p.context = Some(click::ContextParams { size: 8, guide: true });
        // A smooth field on an oblique 2.5 × 2 × 3 mm grid, so trilinear sampling is exact enough.
        let data = Array3::from_shape_fn((40, 44, 48), |(k, j, i)| i as f32 * 1.5 - j as f32 + 0.5 * k as f32);
        let a = nalgebra::Rotation3::from_euler_angles(0.2, -0.1, 0.3).matrix() * nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(2.5, 2.0, 3.0));
        let vol = Volume::new(data, RasFromVoxel::from_parts(a, nalgebra::Vector3::new(-60.0, -40.0, -60.0))).expect("volume");
        let pv = PreparedVolume::new(Arc::new(vol), Some(crate::volume::Modality::Mr), p.ct_window_hu).expect("prepared");
        let click = pv.volume.ras_from_voxel.apply(crate::geometry::VoxelIjk::new(24.0, 22.0, 20.0));
        let plain = click::prepare_click(&pv, click, ViewPlane::Coronal, &p).expect("plain");
        for v in TEST_VIEWS {
            let (s, g) = v.prepare_click(&pv, click, ViewPlane::Coronal, &p).expect("view");
            let guide = s.guide.as_ref().expect("guide");
            let n = s.grid;
            // The centre of the cube stays on the click.
            let c = (n as f64 - 1.0) / 2.0;
            assert!((g.apply(Point3::new(c, c, c)).v - click.v).norm() < 1e-9);
            // Cells a cube apart lie `cube / scale` apart in the scan.
            let span = (g.apply(Point3::new(n as f64, c, c)).v - g.apply(Point3::new(0.0, c, c)).v).norm();
            assert!((span - p.cube_mm / v.scale).abs() < 1e-6, "{v:?}: {span}");
            let mut moved = 0;
            for (k, j, i) in [(2, 3, 4), (c as usize, c as usize, 1), (n - 3, 1, n - 2), (5, n - 4, 7)] {
                let want = pv.sample_normalised(g.apply(Point3::new(i as f64, j as f64, k as f64)));
                assert!((guide[[k, j, i]] - want).abs() < 1e-3, "{v:?} cell {i},{j},{k}: {} against {want}", guide[[k, j, i]]);
                moved += usize::from((guide[[k, j, i]] - plain.guide.as_ref().expect("guide")[[k, j, i]]).abs() > 1e-3);
            }
            assert!(moved > 0, "{v:?}: the view shows the scan as it is");
        }
    }

    #[test]
    fn fuse_sdfs_takes_the_mean_or_the_majority() {
        let own = Array3::from_shape_vec((1, 1, 3), vec![-1.0f32, -1.0, 4.0]).expect("own");
        let a = Array3::from_shape_vec((1, 1, 3), vec![2.0f32, -3.0, 1.0]).expect("a");
        let b = Array3::from_shape_vec((1, 1, 3), vec![5.0f32, 7.0, -2.0]).expect("b");
        let others = [a, b];
        let mut median = own.clone();
        fuse_sdfs(&mut median, &others, PlaneFusion::Median);
        // Inside only where two of three are: the first cell (one of three) leaves.
        assert_eq!(median.as_slice().expect("slice"), &[2.0, -1.0, 1.0]);
        let mut mean = own.clone();
        fuse_sdfs(&mut mean, &others, PlaneFusion::Mean);
        assert_eq!(mean.as_slice().expect("slice"), &[2.0, 1.0, 1.0]);
        let mut kept = own.clone();
        fuse_sdfs(&mut kept, &others, PlaneFusion::Own);
        assert_eq!(kept, own);
        assert_eq!("median".parse::<PlaneFusion>(), Ok(PlaneFusion::Median));
        assert!("both".parse::<PlaneFusion>().expect_err("unknown fusion").contains("own, mean or median"));
    }

    #[test]
    fn extension_clicks_go_deep_toward_the_faces_an_organ_reaches() {
        let (vol, rfg) = grid_and_cube();
        // From the centre past the +x face (at 82): one click, in the outer quarter (x ≥ 66),
        // on the bar's axis (deepest, to within the SDF's half cell of 2 mm), inside the bar.
        let through = bar([40, 100], 35, 10);
        let clicks = extension_clicks(&through, &bar_sdf(&rfg, [40, 100], 35, 10), &rfg, &vol);
        assert_eq!(clicks.len(), 1, "{clicks:?}");
        let (ras, idx) = clicks[0];
        assert!(ras.x() >= 66.0 && (ras.y() - 35.0).abs() <= 2.0 && (ras.z() - 35.0).abs() <= 2.0, "{ras:?}");
        // A bar off the cube's centre line: the click follows its axis, not the cube's.
        let off = bar([40, 100], 25, 6);
        let (ras, _) = extension_clicks(&off, &bar_sdf(&rfg, [40, 100], 25, 6), &rfg, &vol)[0];
        assert!((ras.y() - 25.0).abs() <= 2.0 && (ras.z() - 25.0).abs() <= 2.0, "{ras:?}");
        assert!(through.contains(idx) && (idx.i as f64 - ras.x()).abs() < 1e-9);
        // Past both x faces: two clicks, one on each side.
        let both = extension_clicks(&bar([10, 100], 35, 10), &bar_sdf(&rfg, [10, 100], 35, 10), &rfg, &vol);
        assert_eq!(both.len(), 2);
        assert!(both.iter().any(|(r, _)| r.x() <= 34.0) && both.iter().any(|(r, _)| r.x() >= 66.0), "{both:?}");
        // Well inside the cube: none. A thread reaching the face (under 1 ml there): none.
        assert!(extension_clicks(&bar([40, 60], 35, 10), &bar_sdf(&rfg, [40, 60], 35, 10), &rfg, &vol).is_empty());
        assert!(extension_clicks(&bar([40, 100], 35, 1), &bar_sdf(&rfg, [40, 100], 35, 1), &rfg, &vol).is_empty());
    }

    /// [`extension_clicks`] as it was written first: one serial walk over the voxels, the depth
    /// always computed.
    fn extension_clicks_serial(comp: &GridComponent, sdf: &Array3<f32>, ras_from_grid: &RasFromGrid, vol: &Volume) -> Vec<(RasMm, ArrayIdx)> {
        let n = sdf.dim().0;
        let Some(grid_at) = cube_coords(ras_from_grid, vol) else { return Vec::new() };
        let cell_mm = ras_from_grid.apply(Point3::new(0.0, 0.0, 0.0)).distance(&ras_from_grid.apply(Point3::new(1.0, 0.0, 0.0)));
        let margin = EXTEND_MARGIN_MM / cell_mm;
        let (lo, hi) = (-0.5, n as f64 - 0.5);
        let centre = (n as f64 - 1.0) / 2.0;
        let quarter = n as f64 / 4.0;
        let mut touch = [[0usize; 2]; 3];
        let mut best: [[Option<(f32, ArrayIdx)>; 2]; 3] = [[None; 2]; 3];
        for v in comp.voxels() {
            let g = grid_at(v);
            let dep = -cube_trilinear(sdf, g);
            for a in 0..3 {
                for (side, near, outer) in [(0, g[a] - lo <= margin, centre - g[a] >= quarter), (1, hi - g[a] <= margin, g[a] - centre >= quarter)] {
                    if near {
                        touch[a][side] += 1;
                    }
                    if outer && best[a][side].is_none_or(|(b, _)| dep > b) {
                        best[a][side] = Some((dep, v));
                    }
                }
            }
        }
        let mut faces = Vec::new();
        for a in 0..3 {
            for side in 0..2 {
                if touch[a][side] as f64 * vol.voxel_ml() >= EXTEND_MIN_ML
                    && let Some((_, v)) = best[a][side]
                {
                    faces.push((touch[a][side], v));
                }
            }
        }
        faces.sort_by_key(|f| std::cmp::Reverse(f.0));
        faces.into_iter().map(|(_, v)| (vol.ras_from_voxel.apply(Point3::new(v.i as f64, v.j as f64, v.k as f64)), v)).collect()
    }

    /// The parallel continuation clicks and agreement equal the serial walk's, on ragged
    /// organs of many equally deep voxels (a bar's axis: the first in `[k, j, i]` order wins)
    /// reaching none, one or several faces of the cube.
    #[test]
    fn parallel_extension_clicks_and_agreement_equal_the_serial_walk() {
        let (vol, rfg) = grid_and_cube();
        let shifted = RasFromGrid::scale_translate([4.0; 3], [82.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5]);
        let mut rng = crate::data::phantom::Rng::new(21);
        let (mut clicks_seen, mut agreed) = (0, 0);
        for (x, c, r) in [([40, 100], 35, 10), ([10, 110], 30, 8), ([45, 60], 35, 6), ([5, 70], 40, 12), ([20, 119], 35, 20)] {
            for keep in [1.0, 0.97, 0.8] {
                let mut comp = bar(x, c, r);
                comp.mask.mapv_inplace(|m| m && rng.uniform() < keep);
                comp.voxel_count = comp.mask.iter().filter(|m| **m).count();
                let sdf = bar_sdf(&rfg, x, c, r);
                let want = extension_clicks_serial(&comp, &sdf, &rfg, &vol);
                assert_eq!(extension_clicks(&comp, &sdf, &rfg, &vol), want, "bar {x:?} {c} {r}, kept {keep}");
                clicks_seen += want.len();
                // Agreement with another ragged bar in the shifted cube, against the serial count.
                let mut other = bar([x[0] + 10, 119], c + 3, r);
                other.mask.mapv_inplace(|m| m && rng.uniform() < keep);
                other.voxel_count = other.mask.iter().filter(|m| **m).count();
                let in_cube = |g: &RasFromGrid, v: ArrayIdx| cube_coords(g, &vol).is_some_and(|at| at(v).iter().all(|&x| (-0.5..=15.5).contains(&x)));
                let a_in_b = comp.voxels().filter(|&v| in_cube(&shifted, v)).count();
                let both = comp.voxels().filter(|&v| in_cube(&shifted, v) && other.contains(v)).count();
                let b_in_a = other.voxels().filter(|&v| in_cube(&rfg, v)).count();
                let share = |n: usize| if n == 0 { 0.0 } else { both as f64 / n as f64 };
                let serial = share(a_in_b) >= EXTEND_MIN_AGREEMENT && share(b_in_a) >= EXTEND_MIN_AGREEMENT;
                assert_eq!(masks_agree(&comp, (&rfg, 16), &other, (&shifted, 16), &vol), serial);
                agreed += usize::from(serial);
            }
        }
        assert!(clicks_seen >= 10, "{clicks_seen} clicks in all");
        assert!(agreed > 0 && agreed < 15, "{agreed} of 15 pairs agreed");
    }

    #[test]
    fn extension_passes_must_agree_with_the_first() {
        let (vol, rfg) = grid_and_cube();
        let first = bar([40, 81], 35, 10);
        // The second cube, shifted 32 mm toward +x.
        let shifted = RasFromGrid::scale_translate([4.0; 3], [82.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5, 35.0 - 4.0 * 7.5]);
        // The same organ, continued: agrees.
        assert!(masks_agree(&first, (&rfg, 16), &bar([50, 110], 35, 10), (&shifted, 16), &vol));
        // A neighbour beside it, sharing a corner strip with the first (6 × 6 of its 21 × 21
        // cross-section): does not.
        let neighbour = bar([60, 110], 50, 10);
        assert!(neighbour.contains(ArrayIdx { k: 42, j: 42, i: 70 }) && first.contains(ArrayIdx { k: 42, j: 42, i: 70 }));
        assert!(!masks_agree(&first, (&rfg, 16), &neighbour, (&shifted, 16), &vol));
    }

}
