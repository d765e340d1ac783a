//! The eframe application: three linked slice views and the 3D view's place in a 2×2 grid, a
//! menu, a side panel (volume info, window/level with histogram, labels), a status bar, and two
//! windows: the fine-tuning panel ([`finetune`]) and the case browser ([`cases`]).
//!
//! Structure (the habits of rerun's viewer): one [`App`] owns persisted settings (restored at
//! start) and runtime parts (`#[serde(skip)]`). UI code sends [`AppCommand`]s; the queue is
//! applied once per frame in [`App::apply_commands`]. Files are read on the `sam3d-loader`
//! thread ([`loader`]); the UI drains its events each frame. Errors become messages in the
//! window (and log lines), never a crash.

pub mod bench;
pub mod click3d;
pub mod connect;
pub mod edit;
mod editing;
pub mod export;
pub mod cases;
mod command;
pub mod file_dialog;
pub mod finetune;
pub mod label_list;
pub mod labels;
pub mod loader;
mod malloc;
mod prompting;
pub mod messages;
mod panels;
pub mod remote;
pub mod remote_http;
pub mod series_picker;
pub mod slice_image;
mod spinner;
mod slice_view;
pub mod three_d;
pub mod unsaved;
pub mod tools;

pub use command::{AppCommand, DialogKind, FileKind, ViewCell};
pub use click3d::ClickMethod;
pub use edit::Edit;
pub use messages::Message;
pub use slice_image::OverlayMode;

use crate::geometry::{DisplayConvention, RasMm, SliceGeometry, ViewPlane, VoxelFromRas, VoxelIjk};
use crate::render::MeshViewState;
use crate::baseline::join::JoinOutcome;
use crate::options::{PipelineOptions, PlaneFusion};
use crate::assets::engine_binary;
use crate::protocol::{ClientEvent, PROTOCOL_VERSION, Reply as R, Request};
use click3d::{Candidate, ClickEvent};
use three_d::{MeshEvent, MeshRequest, Mesher};
use crate::volume::intensity::{Preset, Window};
use crate::volume::{LabelMap, Modality, OnGrid, Stats, StoredVolume};
use crossbeam_channel::{Receiver, Sender, bounded};
use labels::LabelTable;
use loader::{Histogram, LoadEvent, LoadRequest, Loader};
use slice_view::SliceViewState;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Opens the viewer window: `file` (with `labels` on its grid) or an empty window. `weights`
/// (the shipped default model, when the build has it) are loaded into the engine at start and
/// "3D from click" then uses the model.
/// `at`: a point to put the crosshair on once the volume is open, and the plane to run "3D from
/// click" there on when given. `report`: an `eval` report to open in the case browser.
pub fn run(file: Option<PathBuf>, labels: Option<PathBuf>, weights: Option<PathBuf>, at: Option<(RasMm, Option<ViewPlane>)>, report: Option<PathBuf>) -> anyhow::Result<()> {
    malloc::return_big_buffers_to_the_system();
    let options = eframe::NativeOptions {
        renderer: eframe::Renderer::Wgpu,
        viewport: egui::ViewportBuilder::default()
            .with_title("sam3d-studio")
            .with_app_id("sam3d-studio")
            .with_inner_size([1440.0, 920.0])
            .with_min_inner_size([720.0, 480.0])
            .with_drag_and_drop(true),
        ..Default::default()
    };
    let startup = Startup { volume: file, labels, device: None, weights, at };
    eframe::run_native(
        "sam3d-studio",
        options,
        Box::new(move |cc| {
            let mut app = App::new(cc, startup);
            if let Some(r) = report {
                app.send(AppCommand::OpenReport(r));
            }
            Ok(Box::new(app))
        }),
    )
        .map_err(|e| anyhow::anyhow!("could not open the viewer window: {e}"))
}

/// Files to open when the app starts.
#[derive(Clone, Debug, Default)]
pub struct Startup {
    pub volume: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// The compute device's name, if already known (tests); otherwise the engine is asked.
    pub device: Option<String>,
    /// Weights to load into the engine at start (the shipped default model); once they are
    /// loaded "3D from click" uses the model. `None`: region growing until the user loads some.
    pub weights: Option<PathBuf>,
    /// Where to put the crosshair once the volume (and its labels) are open, and the plane to
    /// run "3D from click" there on, after the start-up weights load (`--at`, `--click`).
    pub at: Option<(RasMm, Option<ViewPlane>)>,
}

/// A file in the recent-files menu.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecentFile {
    pub path: PathBuf,
    pub kind: FileKind,
}

/// A volume on screen, with everything derived from it.
pub struct Scene {
    pub path: PathBuf,
    pub volume: Arc<StoredVolume>,
    pub stats: Stats,
    pub modality: Modality,
    pub histogram: Histogram,
    pub window: Window,
    /// The 1st–99th percentile window (precomputed by the loader).
    pub auto_window: Window,
    /// One per [`ViewPlane::ALL`] entry.
    pub geoms: [SliceGeometry; 3],
    pub voxel_from_ras: VoxelFromRas,
    /// The linked cursor.
    pub crosshair: RasMm,
    pub labels: Option<LabelLayer>,
    /// Bumped whenever label colours/visibility change (views re-render).
    pub overlay_rev: u64,
    /// Which load this scene came from.
    pub generation: u64,
    /// The DICOM series this scan was read from (`None`: not DICOM): what an RTSTRUCT is drawn
    /// on and a DICOM SEG references.
    pub dicom_series: Option<crate::volume::dicom::SeriesChoice>,
    /// What the engine process reads for this scan: the loader's uncompressed copy of the
    /// volume as read (DICOM, NRRD, a `.nii.gz`), else the source itself.
    pub engine_path: Option<PathBuf>,
}

/// A label map on the scene's grid.
pub struct LabelLayer {
    pub path: PathBuf,
    pub map: Arc<LabelMap>,
    pub table: LabelTable,
    pub lut: Vec<[u8; 4]>,
}

impl Scene {
    pub fn geom(&self, plane: ViewPlane) -> &SliceGeometry {
        &self.geoms[plane_idx(plane)]
    }
    /// The crosshair as a continuous voxel position.
    pub fn crosshair_voxel(&self) -> VoxelIjk {
        self.voxel_from_ras.apply(self.crosshair)
    }
    /// The slice a view shows: the one through the crosshair.
    pub fn slice_index(&self, plane: ViewPlane) -> usize {
        self.geom(plane).slice_index_of(self.crosshair_voxel())
    }
    fn rebuild_geoms(&mut self, conv: DisplayConvention) {
        let a = *self.volume.ras_from_voxel();
        let shape = self.volume.shape();
        self.geoms = ViewPlane::ALL.map(|p| SliceGeometry::new(p, &a, shape, conv));
    }
    /// What is under a RAS point: voxel, intensity and label.
    pub fn probe(&self, ras: RasMm) -> Probe {
        let voxel = self.voxel_from_ras.apply(ras);
        let idx = self.volume.shape().array_index(voxel);
        let intensity = idx.and_then(|a| self.volume.value(a));
        let label = idx.and_then(|a| self.labels.as_ref().map(|l| l.map.data[a.as_kji()]));
        let label_name = label.and_then(|id| self.labels.as_ref().and_then(|l| l.table.name_of(id).map(str::to_string)));
        Probe { ras, voxel, inside: idx.is_some(), intensity, label, label_name }
    }
}

/// What the status bar shows about the point under the mouse.
#[derive(Clone, Debug, PartialEq)]
pub struct Probe {
    pub ras: RasMm,
    pub voxel: VoxelIjk,
    pub inside: bool,
    pub intensity: Option<f32>,
    pub label: Option<u16>,
    pub label_name: Option<String>,
}

fn plane_idx(p: ViewPlane) -> usize {
    match p {
        ViewPlane::Axial => 0,
        ViewPlane::Coronal => 1,
        ViewPlane::Sagittal => 2,
    }
}


/// Runtime-only state (never persisted).
pub struct Runtime {
    loader: Option<Loader>,
    commands: Vec<AppCommand>,
    dialog_tx: Sender<AppCommand>,
    dialog_rx: Receiver<AppCommand>,
    pub scene: Option<Scene>,
    /// Generation of the latest volume request (stale results are dropped).
    generation: u64,
    /// Loader jobs sent and not yet finished.
    pending_jobs: usize,
    pub progress: Option<(String, f32)>,
    pub messages: messages::MessageLog,
    /// The label-name prompt, while open.
    pub name_prompt: Option<label_list::NamePrompt>,
    /// The tool the slice views' left button uses.
    pub tool: tools::Tool,
    /// Where the last brush segment ended (the next one starts there).
    pub brush_last: Option<RasMm>,
    /// A whole-volume edit running on its own thread.
    pub edit_job: Option<editing::EditJob>,
    /// File → Export surfaces: the window and a write in flight.
    pub export: export::ExportState,
    /// Unsaved-label questions, the autosave and its restore offer.
    pub unsaved: unsaved::Unsaved,
    /// Changes to the label map or its names (edits, undos, renames), counted.
    pub labels_rev: u64,
    /// `labels_rev` when the labels were last opened or saved (unsaved changes: they differ).
    pub saved_rev: u64,
    /// `labels_rev` of the save in flight.
    pub saving_rev: Option<u64>,
    /// Which file dialog to use (the system's until it proves missing).
    pub dialog_backend: file_dialog::Backend,
    /// The in-app file dialog, while open.
    pub in_app_dialog: Option<file_dialog::InAppDialog>,
    /// The probe the status bar showed this pass (see `views_ui`).
    pub hover_shown: Option<Probe>,
    /// The toolbar had no room for the candidate's summary this pass: the status bar shows it.
    pub summary_in_status: bool,
    /// View > Messages is open.
    pub show_message_log: bool,
    /// When the window started (the message log's clock).
    pub started: std::time::Instant,
    views: [SliceViewState; 3],
    /// The view the keyboard acts on (the hovered one, else the last one used).
    pub active_view: ViewPlane,
    pub hover: Option<Probe>,
    /// "CPU", "CUDA (n GPU)", or why it is unknown.
    pub device: String,
    device_rx: Option<Receiver<String>>,
    /// Screen rectangle of each slice view's image area, last frame (tests use it).
    pub view_rects: [Option<egui::Rect>; 3],
    /// The window title should name a newly opened file.
    title_dirty: bool,
    mesher: Option<Mesher>,
    /// What the mesher is doing (per label), while it works.
    pub mesh_progress: Option<(String, f32)>,
    /// Mesh requests not yet answered.
    mesh_busy: bool,
    /// Bumped for each newly loaded label map (the mesher's cache key).
    map_generation: u64,
    pub click: ClickTool,
    /// The engine: the `sam3d-studio-engine serve` process, started when weights are first
    /// loaded, or a remote engine ([`App::remote_engine`]).
    remote: Option<remote::RemoteEngine>,
    /// Model → Connect to engine…, when open.
    pub connect: Option<connect::ConnectDialog>,
    /// The loaded model and adapter, as the engine reported them.
    pub model: Option<String>,
    /// The loaded model is a SAM-Med3D checkpoint (its own preprocessing: the project
    /// network's pipeline options do not apply).
    pub model_is_sam_med3d: bool,
    /// The engine has a corrector for points on a result.
    pub has_corrector: bool,
    pub adapter: Option<String>,
    /// The adapter the engine put on by itself for this scan (the shipped MR adapter on an MR),
    /// as its last result named it.
    pub scan_adapter: Option<String>,
    /// The scene generation whose volume the engine has.
    remote_volume: Option<u64>,
    /// The scan generation whose engine copy was asked of the loader (asked once).
    engine_copy_asked: Option<u64>,
    /// The scan generation `prepare_engine` sent `set_volume` for (tried once: a failure is
    /// reported once, and the first click tries again).
    engine_prepared: Option<u64>,
    /// A folder of several DICOM series waiting for the user's choice.
    pub series_picker: Option<series_picker::SeriesPicker>,
    /// The scene generation last told it is MR without an adapter ([`MR_WITHOUT_ADAPTER`]).
    mr_noted: Option<u64>,
    /// The stage the engine reported for the running click.
    pub click_stage: Option<(String, f32)>,
    /// The start-up weights being loaded (file name): the model method is selected when they are.
    pub startup_weights: Option<String>,
    /// `--at` (and `--click`) waiting for the start-up volume (its path) and, to click, the
    /// start-up weights.
    pub pending_at: Option<(RasMm, Option<ViewPlane>, PathBuf)>,
    /// Path fields of the Model menu (fallback when there is no file dialog).
    pub weights_text: String,
    pub adapter_text: String,
    /// The loaded weights' file, as the engine reported it (the base of a fine-tuning run).
    pub weights_path: Option<PathBuf>,
    /// The fine-tuning panel and its run.
    pub finetune: finetune::FineTune,
    /// The case browser (an `eval` report's clicks).
    pub cases: cases::CaseBrowser,
}

/// State of the "3D from click" tool.
pub struct ClickTool {
    /// The job running: id, click, start time.
    pub running: Option<(u64, RasMm, std::time::Instant)>,
    next_job: u64,
    /// The result waiting for Accept / Reject.
    pub candidate: Option<Candidate>,
    /// Label to write on Accept (`None`: a new label id).
    pub target: Option<u16>,
    /// The engine's object the model candidate is (its first job, and the prompts it holds):
    /// a further click refines it, a Ctrl+click removes from it.
    pub object: Option<crate::prompts::ObjectRef>,
    /// The object the running model job will produce.
    pub sent_object: Option<crate::prompts::ObjectRef>,
    /// A model click waiting for the engine's copy of the scan (the first on a scan).
    pub after_copy: Option<(RasMm, Option<prompting::PromptRequest>)>,
    /// Region growing's object (its prompts and shape) while its result is on screen.
    pub grow_object: Option<crate::baseline::prompted::PromptedGrowing>,
    /// The object job `.0` left, received before its result.
    pending_grow: Option<(u64, crate::baseline::prompted::PromptedGrowing)>,
    /// A box being dragged with the 3D tool: its plane and corners.
    pub box_drag: Option<(ViewPlane, RasMm, RasMm)>,
    /// The box the object on screen holds (its prompts' box; drawn where it crosses each view).
    pub object_box: Option<crate::prompts::BoxPrompt>,
    /// The box the object will hold after the running job ([`prompting::box_after`]).
    sent_box: Option<crate::prompts::BoxPrompt>,
    /// Accepted results: the undo history and the edits waiting for the map's readers.
    pub edits: edit::LabelEdits,
    /// How the last job ended when it did not give a candidate ("cancelled"); cleared by the next job.
    pub last_status: Option<String>,
    /// Results that arrived for a cancelled or superseded job and were dropped.
    pub dropped_results: usize,
    /// Cancelled or superseded jobs that stopped before they finished (region growing).
    pub stopped_jobs: usize,
    /// The running job was sent to the engine process (a cancel goes there too).
    remote_job: Option<u64>,
    /// Region-growing jobs up to this id stop at their next pass (cancelled or superseded).
    grow_cancel_upto: Arc<std::sync::atomic::AtomicU64>,
    /// Test hook: region-growing jobs wait for a message on this before they start.
    #[doc(hidden)]
    pub test_gate: Option<Receiver<()>>,
    /// The candidate's job whose comparison with the label under its click is being computed.
    pub comparing: Option<u64>,
    /// Wakes the UI when a background comparison is done.
    wake: Option<egui::Context>,
    tx: Sender<ClickEvent>,
    rx: Receiver<ClickEvent>,
}

impl Default for ClickTool {
    fn default() -> Self {
        let (tx, rx) = click3d::channel();
        Self {
            running: None,
            next_job: 0,
            grow_cancel_upto: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            candidate: None,
            target: None,
            object: None,
            sent_object: None,
            after_copy: None,
            grow_object: None,
            pending_grow: None,
            box_drag: None,
            object_box: None,
            sent_box: None,
            edits: edit::LabelEdits::default(),
            last_status: None,
            dropped_results: 0,
            stopped_jobs: 0,
            remote_job: None,
            test_gate: None,
            comparing: None,
            wake: None,
            tx,
            rx,
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        let (dialog_tx, dialog_rx) = bounded(4);
        Self {
            loader: None,
            commands: Vec::new(),
            dialog_tx,
            dialog_rx,
            scene: None,
            generation: 0,
            pending_jobs: 0,
            progress: None,
            messages: messages::MessageLog::default(),
            name_prompt: None,
            tool: tools::Tool::default(),
            brush_last: None,
            edit_job: None,
            export: export::ExportState::default(),
            unsaved: unsaved::Unsaved::default(),
            labels_rev: 0,
            saved_rev: 0,
            saving_rev: None,
            dialog_backend: file_dialog::Backend::from_env(),
            in_app_dialog: None,
            hover_shown: None,
            summary_in_status: false,
            show_message_log: false,
            started: std::time::Instant::now(),
            views: Default::default(),
            active_view: ViewPlane::Axial,
            hover: None,
            device: String::new(),
            device_rx: None,
            view_rects: [None; 3],
            title_dirty: false,
            mesher: None,
            mesh_progress: None,
            mesh_busy: false,
            map_generation: 0,
            click: ClickTool::default(),
            remote: None,
            connect: None,
            model: None,
            model_is_sam_med3d: false,
            has_corrector: false,
            adapter: None,
            remote_volume: None,
            engine_copy_asked: None,
            engine_prepared: None,
            series_picker: None,
            mr_noted: None,
            scan_adapter: None,
            click_stage: None,
            startup_weights: None,
            pending_at: None,
            weights_text: String::new(),
            adapter_text: String::new(),
            weights_path: None,
            finetune: finetune::FineTune::default(),
            cases: cases::CaseBrowser::default(),
        }
    }
}

impl Runtime {
    /// A slice view's zoom (1 = the slice fits its view).
    pub fn zoom_of(&self, plane: ViewPlane) -> f32 {
        self.views[plane_idx(plane)].zoom
    }
}

/// The application. Fields other than `rt` are settings restored from the previous session.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct App {
    pub recent: Vec<RecentFile>,
    pub convention: DisplayConvention,
    pub overlay_opacity: f32,
    pub overlay_mode: OverlayMode,
    pub smooth: bool,
    pub show_side_panel: bool,
    pub maximised: Option<ViewCell>,
    /// The 3D view (camera and options persist).
    pub mesh_view: MeshViewState,
    pub click_method: ClickMethod,
    /// Refine the model's masks by the image ([`crate::baseline::refine`]).
    #[serde(default = "yes")]
    pub refine_masks: bool,
    /// Continue organs wider than the model's output cube (the engine's continuation passes).
    #[serde(default = "yes")]
    pub extend_masks: bool,
    /// Run the model in the three planes through the click and take their majority
    /// ([`PlaneFusion::Median`]; off: the clicked plane only).
    #[serde(default = "yes")]
    pub fuse_planes: bool,
    /// Join region growing from the click where it agrees with the model's shape
    /// ([`crate::baseline::join`]).
    #[serde(default = "yes")]
    pub join_growing: bool,
    /// Run a small object's pass in the scan magnified about the click (the scale that follows
    /// the object, `data::zoom`); its default is the pipeline's. Saved under a name of its own
    /// since session 23 made it the default: a `false` saved before then was the old default,
    /// not a choice, and is not read back.
    #[serde(default = "zoom_by_default", rename = "zoom_small_objects")]
    pub zoom_small: bool,
    /// Let the engine put the shipped MR adapter on for MR scans.
    #[serde(default = "yes")]
    pub mr_adapter: bool,
    /// Correct a result's points with the learned corrector (off: the model's pass at the
    /// point and the rules of `baseline::prompted`).
    #[serde(default = "yes")]
    pub learned_corrections: bool,
    /// The fine-tuning panel's settings.
    pub finetune: finetune::FineTuneSettings,
    /// Which labels Accept and the brush may replace (ITK-SNAP's "paint over"; default: only
    /// background, so a reference label is never overwritten by accident).
    pub overwrite: edit::Overwrite,
    /// The brush of the paint and erase tools.
    pub brush: tools::brush::BrushSettings,
    /// File → Export surfaces' settings.
    pub export: export::ExportSettings,
    /// A remote engine to run the model on (empty address: the engine on this computer).
    pub remote_engine: remote_http::RemoteSettings,
    #[serde(skip)]
    pub rt: Runtime,
}

fn zoom_by_default() -> bool {
    PipelineOptions::default().zoom
}
fn yes() -> bool {
    true
}

impl Default for App {
    fn default() -> Self {
        Self {
            recent: Vec::new(),
            convention: DisplayConvention::Radiological,
            overlay_opacity: 0.45,
            overlay_mode: OverlayMode::Fill,
            smooth: true,
            show_side_panel: true,
            maximised: None,
            mesh_view: MeshViewState::default(),
            click_method: ClickMethod::RegionGrowing,
            refine_masks: true,
            extend_masks: true,
            fuse_planes: true,
            join_growing: true,
            zoom_small: zoom_by_default(),
            mr_adapter: true,
            learned_corrections: true,
            finetune: finetune::FineTuneSettings::default(),
            overwrite: edit::Overwrite::default(),
            brush: tools::brush::BrushSettings::default(),
            export: export::ExportSettings::default(),
            remote_engine: remote_http::RemoteSettings::default(),
            rt: Runtime::default(),
        }
    }
}

/// Said once per scan when the model runs on an MR without an adapter (assets/models/README.md,
/// the real-MR table).
pub const MR_WITHOUT_ADAPTER: &str = "This scan looks like MR and the model ran without an adapter: the weights were trained on CT and give poor shapes on MR (one-click Dice 0.04 on a real MR). The shipped MR adapter (assets/models/mr.safetensors) is put on by itself only for the shipped weights; load an MR adapter for these (Model > Load adapter…) or use \"Region growing (no weights)\" (Dice 0.83 there).";

const MAX_RECENT: usize = 10;
/// What to do when the model is asked for but no weights are loaded.
pub const NO_MODEL_HELP: &str = "no SAM3D weights are loaded (the shipped model, assets/models/default.safetensors, is loaded at start when this build has it). Model > Load weights… (a checkpoint from `sam3d-studio train`, or a published one); until then use \"Region growing (no weights)\".";
/// Largest label id "3D from click" hands out (the 3D view uses `u16::MAX` for the candidate).
const CANDIDATE_LIMIT: u16 = u16::MAX - 1;

/// Updates per-label voxel counts for an edit applied (`forward`) or undone.
fn adjust_counts(table: &mut LabelTable, e: &Edit, forward: bool) {
    let n = e.indices.len();
    let mut by_old: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
    for &p in &e.previous {
        *by_old.entry(p).or_default() += 1;
    }
    change_count(table, e.label, forward, n);
    // Undoing the edit that brought a label in takes its row away (a redo brings it back with
    // its name and colour); a label emptied by a forward edit (an erase) keeps its row.
    if !forward && table.entries.get(&e.label).is_some_and(|x| x.voxels == 0) && let Some(x) = table.entries.remove(&e.label) {
        table.retired.insert(e.label, x);
    }
    for (old, k) in by_old {
        change_count(table, old, !forward, k);
    }
}

/// Adds `k` voxels to label `id`'s count (`add`) or takes them away.
fn change_count(table: &mut LabelTable, id: u16, add: bool, k: usize) {
    if id == 0 || (!add && !table.entries.contains_key(&id)) {
        // Background has no row; a deleted label's row is already gone.
        return;
    }
    let retired = table.retired.remove(&id);
    let entry = table.entries.entry(id).or_insert_with(|| {
        retired.unwrap_or_else(|| labels::LabelEntry { name: format!("label {id}"), colour: labels::default_colour(id, None), visible: true, voxels: 0 })
    });
    entry.voxels = if add { entry.voxels + k } else { entry.voxels.saturating_sub(k) };
}

impl App {
    /// Restores settings, styles the context, starts the loader and queues `startup`'s files.
    pub fn new(cc: &eframe::CreationContext<'_>, startup: Startup) -> Self {
        let mut app: App = cc.storage.and_then(|s| eframe::get_value(s, eframe::APP_KEY)).unwrap_or_default();
        app.rt.unsaved.dir = unsaved::autosave_dir(cc.storage.is_some());
        app.maximised = None;
        style(&cc.egui_ctx);
        let ctx = cc.egui_ctx.clone();
        match Loader::spawn(move || ctx.request_repaint()) {
            Ok(l) => app.rt.loader = Some(l),
            Err(e) => app.error(format!("could not start the loader thread: {e}")),
        }
        match cc.wgpu_render_state.as_ref() {
            Some(rs) => crate::render::init(rs),
            None => log::warn!("no wgpu render state: the 3D view cannot draw"),
        }
        let ctx = cc.egui_ctx.clone();
        match Mesher::spawn(move || ctx.request_repaint()) {
            Ok(m) => app.rt.mesher = Some(m),
            Err(e) => app.error(format!("could not start the mesher thread: {e}")),
        }
        // A remote engine named at start (scripts, a site's shortcut) wins over the saved one.
        if let Ok(url) = std::env::var("SAM3D_ENGINE_URL") {
            app.remote_engine.url = url;
        }
        app.remote_engine.key = std::env::var("SAM3D_ENGINE_KEY").ok().filter(|k| !k.is_empty());
        app.rt.click.wake = Some(cc.egui_ctx.clone());
        app.rt.finetune.wake = Some(cc.egui_ctx.clone());
        // The weights-free method until weights are loaded (the start-up ones switch to the model).
        app.click_method = ClickMethod::RegionGrowing;
        let no_engine = app.remote_engine.url.is_empty() && engine_binary().is_none();
        if no_engine && startup.weights.is_some() {
            // The viewer alone (the Windows package): say how to get the model, once, as a note.
            app.notice(NO_LOCAL_ENGINE.into());
        } else if let Some(w) = startup.weights {
            log::info!("loading the default model {}", w.display());
            app.rt.startup_weights = Some(w.file_name().map_or_else(|| w.display().to_string(), |n| n.to_string_lossy().into_owned()));
            app.send(AppCommand::LoadWeights(w));
        }
        match startup.device {
            _ if !app.remote_engine.url.is_empty() => app.rt.device = format!("remote {} (not connected yet)", app.remote_engine.url),
            Some(d) => app.rt.device = d,
            None => {
                app.rt.device = "checking…".into();
                app.rt.device_rx = spawn_device_probe(cc.egui_ctx.clone());
            }
        }
        if let Some(path) = startup.volume {
            app.rt.pending_at = startup.at.map(|(p, c)| (p, c, path.clone()));
            app.send(AppCommand::OpenVolume { path, labels: startup.labels });
        } else if startup.at.is_some() {
            app.error("--at needs a volume to open".into());
        }
        app
    }

    /// The start-up point (`--at`): once the start-up volume and its labels are open the
    /// crosshair goes there; with `--click PLANE`, once the start-up weights have loaded (or
    /// failed), "3D from click" runs there on that plane. Another volume opened instead (the
    /// start-up one failed) drops it.
    fn run_pending_at(&mut self, ctx: &egui::Context) {
        let Some((at, click, path)) = self.rt.pending_at.clone() else { return };
        let Some(scene) = &self.rt.scene else { return };
        if self.is_busy() || (click.is_some() && self.rt.startup_weights.is_some()) {
            return;
        }
        self.rt.pending_at = None;
        if scene.path != path {
            return;
        }
        if scene.volume.index_of_ras(at).is_none() {
            let name = scene.path.display().to_string();
            self.error(format!("--at {:.1},{:.1},{:.1} (RAS mm) lies outside {name}", at.x(), at.y(), at.z()));
            return;
        }
        self.send(AppCommand::SetCrosshair(at));
        if let Some(plane) = click {
            self.rt.active_view = plane;
            self.start_click(at, None, ctx);
        }
    }

    /// Queues a command for the next [`Self::apply_commands`].
    pub fn send(&mut self, c: AppCommand) {
        self.rt.commands.push(c);
    }

    /// Is the loader still working on something?
    pub fn is_busy(&self) -> bool {
        self.rt.pending_jobs > 0
    }

    /// Is the mesher still computing surfaces for the 3D view?
    pub fn is_meshing(&self) -> bool {
        self.rt.mesh_busy
    }

    /// Is a "3D from click" job running?
    /// A 3D-from-click job runs, or waits for the engine's copy of the scan.
    pub fn is_clicking(&self) -> bool {
        self.rt.click.running.is_some() || self.rt.click.after_copy.is_some()
    }

    /// Is the candidate still being measured against the label under its click?
    pub fn is_comparing(&self) -> bool {
        self.rt.click.comparing.is_some()
    }

    pub fn scene(&self) -> Option<&Scene> {
        self.rt.scene.as_ref()
    }

    /// Every message of the session, oldest first (shown, dismissed or timed out).
    pub fn messages(&self) -> &[Message] {
        self.rt.messages.all()
    }

    fn error(&mut self, text: String) {
        log::error!("{text}");
        self.push_message(Message::new(text, true));
    }

    fn notice(&mut self, text: String) {
        log::info!("{text}");
        self.push_message(Message::new(text, false));
    }

    fn push_message(&mut self, m: Message) {
        self.rt.messages.push(m);
    }

    fn add_recent(&mut self, path: &Path, kind: FileKind) {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.recent.retain(|r| r.path != path);
        self.recent.insert(0, RecentFile { path, kind });
        self.recent.truncate(MAX_RECENT);
    }

    /// Hands `r` to the loader; false (and the error shown) when it could not take it.
    fn request(&mut self, r: LoadRequest) -> bool {
        let sent = match &self.rt.loader {
            Some(l) => l.request(r),
            None => Err("the loader thread is not running".into()),
        };
        match sent {
            Ok(()) => {
                self.rt.pending_jobs += 1;
                true
            }
            Err(e) => {
                self.error(e);
                false
            }
        }
    }

    /// Drains loader events and dialog answers (called once per frame).
    pub fn drain_events(&mut self) {
        if let Some(d) = self.rt.device_rx.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.rt.device = d;
            self.rt.device_rx = None;
        }
        while let Ok(c) = self.rt.dialog_rx.try_recv() {
            self.send(c);
        }
        self.flush_edits();
        self.drain_mesher();
        self.drain_remote();
        self.drain_click();
        let events: Vec<LoadEvent> = match &self.rt.loader {
            Some(l) => l.events.try_iter().take(64).collect(),
            None => Vec::new(),
        };
        for ev in events {
            match ev {
                LoadEvent::Progress { what, fraction } => self.rt.progress = Some((what, fraction)),
                LoadEvent::Volume(v) => {
                    if v.generation != self.rt.generation {
                        continue;
                    }
                    self.add_recent(&v.path, FileKind::Volume);
                    let a = *v.volume.ras_from_voxel();
                    let shape = v.volume.shape();
                    let centre = VoxelIjk::new(
                        ((shape.ni - 1) / 2) as f64,
                        ((shape.nj - 1) / 2) as f64,
                        ((shape.nk - 1) / 2) as f64,
                    );
                    log::info!("opened {} ({shape}, {:?})", v.path.display(), v.modality);
                    self.rt.scene = Some(Scene {
                        path: v.path,
                        stats: v.stats,
                        modality: v.modality,
                        histogram: v.histogram,
                        window: v.initial_window,
                        auto_window: v.auto_window,
                        geoms: ViewPlane::ALL.map(|p| SliceGeometry::new(p, &a, shape, self.convention)),
                        voxel_from_ras: v.volume.voxel_from_ras(),
                        crosshair: a.apply(centre),
                        labels: None,
                        overlay_rev: 0,
                        generation: v.generation,
                        engine_path: None,
                        dicom_series: v.series,
                        volume: v.volume,
                    });
                    for view in &mut self.rt.views {
                        view.reset();
                    }
                    self.rt.title_dirty = true;
                    // A new volume: no meshes, no candidate, no history, and the job that ran on
                    // the old one stopped where it runs.
                    self.stop_running_job();
                    let click = &mut self.rt.click;
                    click.candidate = None;
                    click.edits.clear();
                    click.target = None;
                    click.after_copy = None;
                    click.object = None;
                    click.grow_object = None;
                    click.box_drag = None;
                    click.object_box = None;
                    self.mesh_view.set_meshes(Vec::new());
                    self.mesh_view.reset_camera();
                    self.rt.saved_rev = self.rt.labels_rev;
                    self.check_autosave();
                }
                LoadEvent::Labels(l) => {
                    let Some(scene) = self.rt.scene.as_mut().filter(|s| s.generation == l.generation) else { continue };
                    let lut = l.table.lut();
                    let n = l.table.entries.len();
                    scene.labels = Some(LabelLayer { path: l.path.clone(), map: l.labels, table: l.table, lut });
                    scene.overlay_rev += 1;
                    log::info!("opened label map {} ({n} labels)", l.path.display());
                    self.add_recent(&l.path, FileKind::Labels);
                    self.rt.map_generation += 1;
                    self.rt.click.edits.clear();
                    self.rt.click.target = None;
                    // Freshly opened labels are saved ones, unless they are a restored autosave.
                    self.rt.labels_rev += 1;
                    if !std::mem::take(&mut self.rt.unsaved.restoring) {
                        self.rt.saved_rev = self.rt.labels_rev;
                    }
                    self.request_meshes(None);
                    self.refresh_compare();
                }
                LoadEvent::Saved(p) => {
                    if let Some(rev) = self.rt.saving_rev.take() {
                        self.rt.saved_rev = rev;
                    }
                    self.notice(format!("Saved label map to {}", p.display()));
                    self.after_save();
                }
                LoadEvent::Warnings(ws) => {
                    for w in ws {
                        log::warn!("{w}");
                        self.notice(w);
                    }
                }
                LoadEvent::ChooseSeries { path, labels, generation, series } => {
                    if generation == self.rt.generation {
                        self.rt.progress = None;
                        self.rt.series_picker = Some(series_picker::SeriesPicker { path, labels, series });
                    }
                }
                // (A stale copy is left to the loader, which clears its folder at the next copy.)
                LoadEvent::EngineCopy { generation, path } => {
                    if let Some(s) = self.rt.scene.as_mut().filter(|s| s.generation == generation) {
                        s.engine_path = Some(path);
                    }
                }
                LoadEvent::Failed { message } => self.error(message),
                LoadEvent::Idle => {
                    self.rt.pending_jobs = self.rt.pending_jobs.saturating_sub(1);
                    if self.rt.pending_jobs == 0 {
                        self.rt.progress = None;
                    }
                }
            }
        }
    }

    /// Applies the queued commands (once per frame).
    pub fn apply_commands(&mut self, ctx: &egui::Context) {
        let cmds = std::mem::take(&mut self.rt.commands);
        for c in cmds {
            self.apply(c, ctx);
        }
    }

    fn apply(&mut self, c: AppCommand, ctx: &egui::Context) {
        match c {
            AppCommand::OpenVolume { path, labels } => self.open_volume(path, labels, None),
            AppCommand::OpenSeries { path, labels, series } => {
                self.rt.series_picker = None;
                self.open_volume(path, labels, Some(series));
            }
            AppCommand::OpenStructures(path) => match self.rt.scene.as_ref().filter(|s| s.dicom_series.is_some()) {
                Some(s) => {
                    let folder = if s.path.is_dir() { s.path.clone() } else { s.path.parent().map(Path::to_path_buf).unwrap_or_default() };
                    let (volume, generation) = (s.volume.clone(), s.generation);
                    self.request(LoadRequest::Structures { path, series_folder: folder, volume, generation });
                }
                None => self.error(format!("{}: an RTSTRUCT is drawn on the DICOM series it references: open that series first", path.display())),
            },
            AppCommand::OpenLabels(path) if !self.rt.unsaved.restoring && !self.may_proceed(unsaved::Pending::OpenLabels(path.clone())) => {}
            AppCommand::OpenLabels(path) => match &self.rt.scene {
                Some(s) => {
                    let (volume, generation) = (s.volume.clone(), s.generation);
                    self.request(LoadRequest::Labels { path, volume, generation });
                }
                None => self.error(format!("{}: open a volume first; a label map is shown on a volume's grid", path.display())),
            },
            AppCommand::SaveLabels(path) => match self.rt.scene.as_ref().and_then(|s| {
                let source = s.dicom_series.clone().map(|c| (s.path.clone(), c));
                s.labels.as_ref().map(|l| (l.map.clone(), *s.volume.ras_from_voxel(), l.table.names(), source))
            }) {
                Some((map, ras_from_voxel, names, source)) => {
                    self.rt.saving_rev = Some(self.rt.labels_rev);
                    self.request(LoadRequest::SaveLabels { path, labels: map, ras_from_voxel, names, source });
                }
                None => self.error("there is no label map to save".into()),
            },
            AppCommand::ShowDialog(kind) => self.show_dialog(kind, ctx),
            AppCommand::InAppDialog(kind) => {
                // The system has no file dialog: use the in-app one from now on.
                self.rt.dialog_backend = file_dialog::Backend::InApp;
                let start_dir = self.rt.scene.as_ref().and_then(|s| s.path.parent().map(Path::to_path_buf));
                self.rt.in_app_dialog = Some(file_dialog::InAppDialog::new(kind, start_dir));
                ctx.request_repaint();
            }
            AppCommand::SetCrosshair(p) => {
                if let Some(s) = &mut self.rt.scene
                    && p.is_finite()
                {
                    s.crosshair = p;
                }
            }
            AppCommand::StepSlice { plane, steps } => {
                if let Some(s) = &mut self.rt.scene {
                    let g = *s.geom(plane);
                    let mut v = s.crosshair_voxel();
                    let n = s.slice_index(plane) as i64 + (steps * g.index_step_sign()) as i64;
                    v.v[g.n_axis] = n.clamp(0, g.extent[2] as i64 - 1) as f64;
                    s.crosshair = s.volume.ras_from_voxel().apply(v);
                }
            }
            AppCommand::Zoom { plane, factor, about } => {
                if let Some(s) = &self.rt.scene {
                    let g = *s.geom(plane);
                    self.rt.views[plane_idx(plane)].zoom_about(&g, factor, about);
                }
            }
            AppCommand::Pan { plane, delta } => self.rt.views[plane_idx(plane)].pan += delta,
            AppCommand::ResetViews => {
                for v in &mut self.rt.views {
                    v.reset();
                }
            }
            AppCommand::SetWindow(w) => {
                if let Some(s) = &mut self.rt.scene
                    && w.level.is_finite()
                    && w.width.is_finite()
                {
                    s.window = Window { level: w.level, width: w.width.max(1e-3) };
                }
            }
            AppCommand::ApplyPreset(p) => {
                if let Some(s) = &mut self.rt.scene {
                    s.window = p.window();
                }
            }
            AppCommand::AutoWindow => {
                if let Some(s) = &mut self.rt.scene {
                    s.window = s.auto_window;
                }
            }
            AppCommand::ToggleMaximise(cell) => {
                self.maximised = if self.maximised == Some(cell) { None } else { Some(cell) };
            }
            AppCommand::RestoreLayout => self.maximised = None,
            AppCommand::SetConvention(c) => {
                self.convention = c;
                if let Some(s) = &mut self.rt.scene {
                    s.rebuild_geoms(c);
                }
            }
            AppCommand::SetLabelVisible { id, visible } => {
                self.edit_labels(|t| {
                    if let Some(e) = t.entries.get_mut(&id) {
                        e.visible = visible;
                    }
                });
                // A shown label's surface is built now, a hidden one's dropped.
                self.request_meshes(Some(Vec::new()));
            }
            AppCommand::SetAllLabelsVisible(visible) => {
                self.edit_labels(|t| t.entries.values_mut().for_each(|e| e.visible = visible));
                self.request_meshes(Some(Vec::new()));
            }
            AppCommand::SetLabelColour { id, colour } => {
                self.edit_labels(|t| {
                    if let Some(e) = t.entries.get_mut(&id) {
                        e.colour = colour;
                    }
                });
                self.rt.labels_rev += 1;
            }
            AppCommand::SetOverlayOpacity(o) => self.overlay_opacity = o.clamp(0.0, 1.0),
            AppCommand::SetOverlayMode(m) => self.overlay_mode = m,
            AppCommand::SetSmooth(b) => self.smooth = b,
            AppCommand::ToggleSidePanel => self.show_side_panel = !self.show_side_panel,
            AppCommand::Notice(t) => self.notice(t),
            AppCommand::DismissMessage(i) => self.rt.messages.dismiss(i),
            AppCommand::DismissAllMessages => self.rt.messages.dismiss_all(),
            AppCommand::ShowMessageLog => self.rt.show_message_log = true,
            AppCommand::ClearRecent => self.recent.clear(),
            AppCommand::Quit => {
                if self.may_proceed(unsaved::Pending::Quit) {
                    self.resume(unsaved::Pending::Quit, ctx);
                }
            }
            AppCommand::SetClickTool(on) => self.rt.tool = if on { tools::Tool::ClickTo3d } else { tools::Tool::Crosshair },
            AppCommand::SetTool(t) => {
                self.rt.tool = t;
                self.rt.brush_last = None;
            }
            AppCommand::SetBrush(b) => self.brush = b,
            AppCommand::ResizeBrush(notches) => self.brush.resize(notches),
            AppCommand::BrushAt { plane, at, first } => self.brush_at(plane, at, first),
            AppCommand::FillAt { plane, at } => self.fill_at(plane, at),
            AppCommand::KeepIslandAt(at) => self.keep_island_at(at),
            AppCommand::RemoveSmallIslands { min_ml } => self.remove_small_islands(min_ml),
            AppCommand::FillHoles => self.fill_holes(),
            AppCommand::SetClickMethod(m) => self.click_method = m,
            AppCommand::SetRefineMasks(on) => self.refine_masks = on,
            AppCommand::SetExtendMasks(on) => self.extend_masks = on,
            AppCommand::SetFusePlanes(on) => self.fuse_planes = on,
            AppCommand::SetJoinGrowing(on) => self.join_growing = on,
            AppCommand::SetZoomSmall(on) => self.zoom_small = on,
            AppCommand::SetMrAdapter(on) => self.mr_adapter = on,
            AppCommand::SetLearnedCorrections(on) => self.learned_corrections = on,
            AppCommand::ClickAt(ras) => self.start_click(ras, None, ctx),
            AppCommand::PromptAt { at, negative } => self.prompt_at(at, negative, ctx),
            AppCommand::BoxDrag { plane, at, first } => self.box_drag(plane, at, first),
            AppCommand::BoxDone => self.box_done(ctx),
            AppCommand::SetClickTarget(t) => self.rt.click.target = t.filter(|&id| id != 0),
            AppCommand::PromptLabelName(id) => {
                let name = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.table.name_of(id)).unwrap_or_default().to_string();
                self.rt.name_prompt = Some(label_list::NamePrompt::new(id, &name));
            }
            AppCommand::RenameLabel { id, name } => {
                self.edit_labels(|t| {
                    if let Some(e) = t.entries.get_mut(&id) {
                        e.name = name;
                    }
                });
                self.rt.labels_rev += 1;
            }
            AppCommand::DeleteLabel(id) => self.delete_label(id),
            AppCommand::NewLabel => self.new_label(),
            AppCommand::SetOverwrite(rule) => self.overwrite = rule,
            AppCommand::ShowExport => self.rt.export.open = true,
            AppCommand::ExportSurfaces(path) => self.export_surfaces(path),
            AppCommand::AcceptCandidate => self.accept_candidate(),
            AppCommand::CancelClick => self.cancel_click(ctx),
            AppCommand::RejectCandidate => {
                if self.rt.click.candidate.take().is_some() {
                    self.bump_overlay();
                    self.request_meshes(Some(Vec::new()));
                }
            }
            AppCommand::LoadWeights(path) => {
                if !self.remote_send(&Request::LoadWeights { path: path.clone() }, ctx) {
                    self.rt.startup_weights = None;
                }
            }
            AppCommand::LoadAdapter(path) => {
                if self.rt.model.is_none() {
                    self.error("Load weights before an adapter: an adapter sits on a model's weights".into());
                } else {
                    self.remote_send(&Request::LoadAdapter { path: path.clone() }, ctx);
                }
            }
            AppCommand::OpenFineTune => self.open_finetune(),
            AppCommand::ShowConnect => self.rt.connect = Some(connect::ConnectDialog::new(&self.remote_engine)),
            AppCommand::ConnectEngine(settings) => self.connect_engine(settings, ctx),
            AppCommand::OpenReport(path) => {
                if let Err(e) = self.rt.cases.load(path, ctx.clone()) {
                    self.error(e);
                }
            }
            AppCommand::OpenCaseRow(i) => match self.rt.cases.open_row(i) {
                Ok(c) => self.open_case(c, ctx),
                Err(e) => self.error(format!("Cases: {e}")),
            },
            AppCommand::Undo => self.undo_redo(true),
            AppCommand::Redo => self.undo_redo(false),
        }
    }

    fn bump_overlay(&mut self) {
        if let Some(s) = &mut self.rt.scene {
            s.overlay_rev += 1;
        }
    }

    /// Asks the mesher for the 3D view's meshes: `recompute` the given labels (`None`: all),
    /// reuse the rest, add the candidate if there is one. Only shown labels have surfaces: a
    /// hidden label's is dropped, and built again when it is shown.
    fn request_meshes(&mut self, recompute: Option<Vec<u16>>) {
        let Some(scene) = &self.rt.scene else { return };
        let labels = scene.labels.as_ref().map_or_else(Vec::new, |l| {
            l.table
                .entries
                .iter()
                .filter(|(id, e)| **id != 0 && e.voxels > 0 && e.visible)
                .map(|(id, e)| (*id, e.name.clone(), [e.colour[0], e.colour[1], e.colour[2], 255]))
                .collect()
        });
        let req = MeshRequest {
            map_generation: self.rt.map_generation,
            map: scene.labels.as_ref().map(|l| l.map.clone()),
            recompute,
            labels,
            candidate: self.rt.click.candidate.as_ref().map(|c| three_d::CandidateShape { mask: c.mask.clone(), mesh: c.mesh.clone() }),
            grid: *scene.volume.ras_from_voxel(),
        };
        let sent = match &self.rt.mesher {
            Some(m) => m.request(req),
            None => Err("the mesher thread is not running".into()),
        };
        match sent {
            Ok(()) => self.rt.mesh_busy = true,
            Err(e) => self.error(e),
        }
    }

    fn drain_mesher(&mut self) {
        let events: Vec<MeshEvent> = match &self.rt.mesher {
            Some(m) => m.events.try_iter().take(64).collect(),
            None => return,
        };
        for ev in events {
            match ev {
                MeshEvent::Progress { what, fraction } => self.rt.mesh_progress = Some((what, fraction)),
                MeshEvent::Done(prepared) => {
                    self.mesh_view.set_prepared_meshes(*prepared);
                    if self.rt.mesher.as_ref().is_some_and(|m| m.requests_empty()) {
                        self.rt.mesh_busy = false;
                        self.rt.mesh_progress = None;
                    }
                }
            }
        }
    }

    fn drain_click(&mut self) {
        let events: Vec<ClickEvent> = self.rt.click.rx.try_iter().collect();
        for ev in events {
            let running = self.rt.click.running.map(|r| r.0);
            match ev {
                ClickEvent::Done(c) if Some(c.job) == running => {
                    self.rt.click.running = None;
                    log::info!("3D from click: {} voxels, {:.1} ml in {:.0} ms ({})", c.voxels, c.ml, c.millis, c.method.name());
                    if c.voxels == 0 {
                        self.error("3D from click: nothing was segmented at that point".into());
                        continue;
                    }
                    // A result is an object that further prompts refine: the engine's, or
                    // region growing's (kept here).
                    self.rt.click.object = if c.method == ClickMethod::Model { self.rt.click.sent_object.take() } else { None };
                    self.rt.click.grow_object = match c.method {
                        ClickMethod::RegionGrowing => Some(prompting::grow_object_of(self.rt.click.pending_grow.take().filter(|p| p.0 == c.job).map(|p| p.1), &c)),
                        ClickMethod::Model => None,
                    };
                    self.rt.click.object_box = self.rt.click.sent_box.take();
                    self.rt.click.candidate = Some(*c);
                    self.bump_overlay();
                    self.request_meshes(Some(Vec::new()));
                    self.start_compare();
                }
                ClickEvent::GrowState { job, state } => self.rt.click.pending_grow = Some((job, *state)),
                ClickEvent::Compared { job, comparison } => {
                    // Only the comparison asked for last counts (the map may have changed since).
                    if self.rt.click.comparing != Some(job) {
                        continue;
                    }
                    self.rt.click.comparing = None;
                    match &mut self.rt.click.candidate {
                        Some(c) if c.job == job => {
                            log::info!("3D from click #{job}: {}", comparison.summary());
                            c.compared = Some(comparison);
                        }
                        _ => {} // the candidate was accepted, rejected or replaced meanwhile
                    }
                }
                ClickEvent::Failed { job, message } if Some(job) == running => {
                    self.rt.click.running = None;
                    self.error(message);
                }
                ClickEvent::CompareFailed { job } => {
                    if self.rt.click.comparing == Some(job) {
                        self.rt.click.comparing = None;
                    }
                    log::warn!("3D from click #{job}: measuring it against the label under the click failed");
                }
                ClickEvent::Stopped { job } => {
                    log::info!("3D from click #{job} stopped at its cancel");
                    self.rt.click.stopped_jobs += 1;
                }
                _ => self.rt.click.dropped_results += 1, // a cancelled or superseded job
            }
        }
    }

    /// The label map changed (another one loaded, an undo or redo): the candidate's comparison
    /// is measured again against it; one still running against the old map is dropped.
    fn refresh_compare(&mut self) {
        self.rt.click.comparing = None;
        let Some(c) = &mut self.rt.click.candidate else { return };
        c.compared = None;
        self.start_compare();
    }

    /// When a label map is loaded and the candidate's click lies on a label, measures the
    /// candidate against that label in the background (Dice, HD95: [`click3d::spawn_compare`]).
    fn start_compare(&mut self) {
        let Some(c) = &self.rt.click.candidate else { return };
        let Some(layer) = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()) else { return };
        let Some(a) = layer.map.index_of_ras(c.click) else { return };
        let label = layer.map.data[[a.k, a.j, a.i]];
        if label == 0 || layer.map.data.shape() != c.mask.shape() {
            return;
        }
        let name = layer.table.name_of(label).unwrap_or_default().to_string();
        let wake = self.rt.click.wake.clone();
        match click3d::spawn_compare(c.job, c.mask.clone(), layer.map.clone(), label, name, self.rt.click.tx.clone(), move || {
            if let Some(w) = &wake {
                w.request_repaint();
            }
        }) {
            Ok(()) => self.rt.click.comparing = Some(c.job),
            Err(e) => log::warn!("{e}"),
        }
    }

    /// Cancels the running click job: no candidate will come from it, the next click works.
    /// A model job is cancelled in the engine too; region growing stops at its next pass.
    fn cancel_click(&mut self, _ctx: &egui::Context) {
        if self.rt.click.after_copy.take().is_some() && self.rt.click.running.is_none() {
            self.rt.click.last_status = Some("cancelled".into());
            self.notice("3D from click cancelled".into());
            return;
        }
        let Some(job) = self.stop_running_job() else { return };
        self.rt.click.last_status = Some("cancelled".into());
        self.notice(format!("3D from click #{job} cancelled"));
    }

    /// Stops the running click job, if any, where it runs: region growing at its next pass, a
    /// model job in the engine (which then starts the next request at once). Returns its id.
    fn stop_running_job(&mut self) -> Option<u64> {
        let (job, ..) = self.rt.click.running.take()?;
        self.rt.click.grow_cancel_upto.fetch_max(job, std::sync::atomic::Ordering::SeqCst);
        self.rt.click_stage = None;
        if self.rt.click.remote_job.take() == Some(job)
            && let Some(r) = self.rt.remote.as_mut()
            && let Err(e) = r.send(&Request::Cancel { job })
        {
            log::warn!("could not cancel job {job} in the engine: {e}");
        }
        Some(job)
    }

    /// Asks the loader for the model engine's copy of the open scan (`Scene::engine_path` is
    /// set when it is written).
    pub fn request_engine_copy(&mut self) {
        if let Some(s) = &self.rt.scene {
            let (path, volume, generation) = (s.path.clone(), s.volume.clone(), s.generation);
            if self.rt.engine_copy_asked == Some(generation) {
                return;
            }
            if self.request(LoadRequest::EngineCopy { path, volume, generation }) {
                self.rt.engine_copy_asked = Some(generation);
            }
        }
    }

    /// Whether the engine has been handed the open scan (`set_volume` sent for it).
    pub fn engine_holds_scan(&self) -> bool {
        self.rt.scene.as_ref().is_some_and(|s| self.rt.remote_volume == Some(s.generation))
    }

    /// With the "3D from click" tool chosen and the model its method, hands the open scan to
    /// the engine ahead of the first click (its copy, then `set_volume`, on which the engine
    /// reads it and smooths it whole for the refinement), so the first click runs as fast as
    /// the next ones: done at the first click instead, the hand-over made it take about twice
    /// as long (2.3–2.6 s against 1.1–1.2 s for a liver on the 512 × 512 × 224 CT without a
    /// GPU). Choosing the tool is the user's sign that a click follows; a scan merely looked
    /// at costs nothing.
    fn prepare_engine(&mut self, ctx: &egui::Context) {
        if self.rt.tool != tools::Tool::ClickTo3d || self.click_method != ClickMethod::Model || self.rt.model.is_none() || self.rt.click.running.is_some() {
            return;
        }
        let Some(scene) = &self.rt.scene else { return };
        let generation = scene.generation;
        if self.rt.remote_volume == Some(generation) || self.rt.engine_prepared == Some(generation) {
            return;
        }
        match &scene.engine_path {
            None if loader::needs_engine_copy(&scene.path) => self.request_engine_copy(),
            engine_path => {
                let path = engine_path.clone().unwrap_or_else(|| scene.path.clone());
                self.rt.engine_prepared = Some(generation);
                self.send_volume(path, generation, ctx);
            }
        }
    }

    /// Hands the engine the scan of `generation` read from `path` (`set_volume`); a new scan
    /// has no adapter of its own yet.
    fn send_volume(&mut self, path: PathBuf, generation: u64, ctx: &egui::Context) {
        if self.remote_send(&Request::SetVolume { path }, ctx) {
            self.rt.remote_volume = Some(generation);
            self.rt.scan_adapter = None;
        }
    }

    /// Runs 3D from click at `ras`: a plain click (a new result), or a prompt (`prompting`),
    /// refining the result on screen or starting one (a box alone).
    fn start_click(&mut self, ras: RasMm, prompt: Option<prompting::PromptRequest>, ctx: &egui::Context) {
        let Some(scene) = &self.rt.scene else {
            self.error("3D from click: open a volume first".into());
            return;
        };
        if !ras.is_finite() || scene.volume.index_of_ras(ras).is_none() {
            self.error("3D from click: the click is outside the volume".into());
            return;
        }
        self.rt.click.sent_box = prompting::box_after(self.rt.click.object_box, prompt.as_ref());
        match self.click_method {
            ClickMethod::RegionGrowing => {
                let volume = scene.volume.clone();
                self.rt.click.next_job += 1;
                let job = self.rt.click.next_job;
                // A new job supersedes every earlier one: their answers would be dropped anyway.
                self.rt.click.grow_cancel_upto.fetch_max(job - 1, std::sync::atomic::Ordering::SeqCst);
                let ctx = ctx.clone();
                let gate = self.rt.click.test_gate.clone();
                let cancel = self.rt.click.grow_cancel_upto.clone();
                let spawned = match prompt {
                    // A prompt: region growing's object refined (or a new one, for a box alone).
                    Some(pr) => {
                        let state = if pr.refine { self.rt.click.grow_object.clone().unwrap_or_default() } else { Default::default() };
                        click3d::spawn_prompted_growing(job, volume, state, pr.prompt, ras, self.rt.click.tx.clone(), cancel, move || ctx.request_repaint())
                    }
                    None => click3d::spawn_region_growing(job, volume, ras, self.rt.click.tx.clone(), gate, cancel, move || ctx.request_repaint()),
                };
                match spawned {
                    Ok(()) => {
                        self.rt.click.running = Some((job, ras, std::time::Instant::now()));
                        self.rt.click.remote_job = None;
                        self.rt.click.last_status = None;
                    }
                    Err(e) => self.error(e),
                }
            }
            ClickMethod::Model => {
                if self.rt.model.is_none() {
                    self.error(format!("3D from click: {NO_MODEL_HELP}"));
                    return;
                }
                if scene.engine_path.is_none() && loader::needs_engine_copy(&scene.path) {
                    // The engine reads an uncompressed copy of the scan as the viewer read it,
                    // asked for when the tool was chosen (`prepare_engine`) or now, not at every
                    // open: this click waits for it and runs once it is there.
                    if self.rt.click.after_copy.is_none() {
                        self.request_engine_copy();
                    }
                    self.rt.click.after_copy = Some((ras, prompt));
                    self.rt.click.last_status = Some("handing the scan to the model engine…".into());
                    return;
                }
                let (generation, path) = (scene.generation, scene.engine_path.clone().unwrap_or_else(|| scene.path.clone()));
                if self.rt.remote_volume != Some(generation) {
                    self.send_volume(path, generation, ctx);
                }
                self.rt.click.next_job += 1;
                let job = self.rt.click.next_job;
                // The pipeline goes with every click: a restarted engine needs no other state.
                let object = prompt.as_ref().filter(|p| p.refine).and(self.rt.click.object);
                let (req, sent) = match (&prompt, object) {
                    (Some(p), Some(object)) => (
                        Request::prompt(job, &p.prompt, self.rt.active_view, self.pipeline_options(), Some(object)),
                        crate::prompts::ObjectRef { id: object.id, after: object.after + 1 },
                    ),
                    (Some(p), None) => (Request::prompt(job, &p.prompt, self.rt.active_view, self.pipeline_options(), None), crate::prompts::ObjectRef { id: job, after: 1 }),
                    (None, _) => (Request::infer(job, ras, self.rt.active_view, self.pipeline_options()), crate::prompts::ObjectRef { id: job, after: 1 }),
                };
                self.rt.click.sent_object = Some(sent);
                if let Some(p) = &prompt {
                    log::info!("3D from click #{job}: {} ({})", p.prompt.describe(), if p.refine { "refining the result" } else { "a new result" });
                }
                if self.remote_send(&req, ctx) {
                    self.rt.click.running = Some((job, ras, std::time::Instant::now()));
                    self.rt.click.remote_job = Some(job);
                    self.rt.click.last_status = None;
                    self.rt.click_stage = Some(("queued".into(), 0.0));
                }
            }
        }
    }

    /// The pipeline a model click runs through, from the toolbar's boxes.
    pub fn pipeline_options(&self) -> PipelineOptions {
        PipelineOptions {
            refine: self.refine_masks,
            extend: self.extend_masks,
            planes: if self.fuse_planes { PlaneFusion::Median } else { PlaneFusion::Own },
            join: self.join_growing,
            zoom: self.zoom_small,
            mr_adapter: self.mr_adapter,
            corrector: self.learned_corrections,
            ..PipelineOptions::default()
        }
    }

    /// Sends a request to the engine process, starting it if needed; false (with a message
    /// shown) when that is impossible.
    fn remote_send(&mut self, req: &Request, ctx: &egui::Context) -> bool {
        if self.rt.remote.is_none() {
            let ctx = ctx.clone();
            let started = if !self.remote_engine.url.is_empty() {
                remote::RemoteEngine::connect(&self.remote_engine, move || ctx.request_repaint())
            } else if let Some(bin) = engine_binary() {
                remote::RemoteEngine::spawn(&bin, move || ctx.request_repaint())
            } else {
                self.error(ENGINE_MISSING.into());
                return false;
            };
            match started {
                Ok(r) => {
                    self.rt.remote = Some(r);
                    self.rt.remote_volume = None;
                }
                Err(e) => {
                    self.error(e);
                    return false;
                }
            }
        }
        let sent = self.rt.remote.as_mut().map_or(Err("the engine is not running".to_string()), |r| r.send(req));
        match sent {
            Ok(()) => true,
            Err(e) => {
                self.error(e);
                self.rt.remote = None;
                false
            }
        }
    }

    /// Lets the engine go with what it had loaded (it stopped, or another one takes over); the
    /// next model request starts or connects one anew.
    fn drop_engine(&mut self) {
        self.rt.remote = None;
        self.rt.remote_volume = None;
        self.rt.engine_prepared = None;
        self.rt.model = None;
        self.rt.model_is_sam_med3d = false;
        self.rt.has_corrector = false;
        self.rt.weights_path = None;
        self.rt.adapter = None;
        self.rt.scan_adapter = None;
        self.rt.startup_weights = None;
    }

    fn drain_remote(&mut self) {
        let events: Vec<ClientEvent> = match &self.rt.remote {
            Some(r) => r.events.try_iter().take(64).collect(),
            None => return,
        };
        for ev in events {
            let running = self.rt.click.running.map(|r| r.0);
            let ev = match ev {
                ClientEvent::Reply(r) => r,
                ClientEvent::Unreadable(why) => {
                    log::warn!("{why}");
                    self.error(format!("Model: {why} (skipped)"));
                    continue;
                }
                ClientEvent::Exited(why) => {
                    self.error(format!("The model engine stopped: {why}"));
                    self.drop_engine();
                    if self.click_method == ClickMethod::Model {
                        self.rt.click.running = None;
                    }
                    continue;
                }
            };
            match ev {
                R::Ready { device, protocol } => {
                    self.rt.device = device_name(&device);
                    if protocol != PROTOCOL_VERSION {
                        self.error(format!(
                            "sam3d-studio-engine speaks protocol version {protocol}, this app version {PROTOCOL_VERSION}: install both programs from one build"
                        ));
                    }
                }
                R::ModelLoaded { info } => {
                    let d = info.describe();
                    self.rt.model = Some(d.clone());
                    self.rt.model_is_sam_med3d = info.is_sam_med3d();
                    self.rt.has_corrector = info.corrector.is_some();
                    self.rt.weights_path = info.weights.clone();
                    self.rt.adapter = info.describe_adapter();
                    if self.rt.startup_weights.take().is_some() {
                        self.click_method = ClickMethod::Model;
                        self.notice(format!("Model loaded: {d}; \"3D from click\" uses it"));
                    } else {
                        self.notice(format!("Model loaded: {d}"));
                    }
                }
                R::AdapterLoaded { info } => {
                    self.rt.adapter = info.describe_adapter();
                    self.notice(format!("Adapter loaded: {}", self.rt.adapter.clone().unwrap_or_default()));
                }
                R::VolumeReady { secs } => log::info!("engine: volume prepared in {secs:.2} s"),
                R::Progress { job, stage, fraction } if Some(job) == running => self.rt.click_stage = Some((stage.name().to_string(), fraction)),
                R::Progress { .. } | R::Cancelled { .. } => {}
                R::Result { job, crop, mesh_path, voxel_count, ml, timings, adapter } if Some(job) == running => {
                    let Some((mr, generation, sh)) =
                        self.rt.scene.as_ref().map(|s| (s.modality == crate::volume::Modality::Mr, s.generation, s.volume.array_shape().to_vec()))
                    else {
                        remote::remove_result_files(crop.as_ref(), mesh_path.as_deref());
                        continue;
                    };
                    // Once per scan: an MR clicked without an adapter got the CT-trained shapes.
                    if mr && adapter.is_none() && self.rt.mr_noted != Some(generation) {
                        self.rt.mr_noted = Some(generation);
                        self.notice(MR_WITHOUT_ADAPTER.to_string());
                    }
                    let adapter = adapter.and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
                    if self.rt.adapter.is_none() {
                        self.rt.scan_adapter.clone_from(&adapter);
                    }
                    let (grid_kji, tx, click) = ([sh[0], sh[1], sh[2]], self.rt.click.tx.clone(), self.rt.click.running.map(|r| r.1));
                    let wake = self.rt.click.wake.clone();
                    let millis = timings.total_secs * 1000.0;
                    let passes = 1 + timings.extension_passes;
                    let joined = matches!(timings.join, Some(JoinOutcome::Joined | JoinOutcome::JoinedNear));
                    let zoom = timings.zoom;
                    // Reading the result files is file I/O: never on the UI thread.
                    let spawned = std::thread::Builder::new().name("sam3d-read-result".into()).spawn(move || {
                        let ev = match remote::read_result(crop.as_ref(), mesh_path.as_deref(), voxel_count, grid_kji) {
                            Ok(r) => ClickEvent::Done(Box::new(Candidate {
                                job,
                                click: click.unwrap_or(RasMm::new(0.0, 0.0, 0.0)),
                                mask: Arc::new(r.mask),
                                mesh: r.mesh.map(Arc::new),
                                voxels: r.voxel_count,
                                ml,
                                method: ClickMethod::Model,
                                millis,
                                passes,
                                joined,
                                zoom,
                                bbox_kji: r.bbox_kji,
                                adapter,
                                compared: None,
                            })),
                            Err(message) => ClickEvent::Failed { job, message: format!("Model: {message}") },
                        };
                        let _ = tx.send(ev);
                        // The window may be waiting for nothing else (a job's indicator asks
                        // for no frame in its first second).
                        if let Some(w) = &wake {
                            w.request_repaint();
                        }
                    });
                    if let Err(e) = spawned {
                        self.rt.click.running = None;
                        self.error(format!("could not read the model's result: {e}"));
                    }
                }
                R::Result { crop, mesh_path, .. } => {
                    remote::remove_result_files(crop.as_ref(), mesh_path.as_deref());
                    self.rt.click.dropped_results += 1;
                }
                R::Failed { job, message } => {
                    if job.is_some() && job == running {
                        self.rt.click.running = None;
                    }
                    if job.is_none() && self.rt.startup_weights.take().is_some() {
                        self.notice("The default model could not be loaded: \"3D from click\" uses region growing".into());
                    }
                    self.error(format!("Model: {message}"));
                }
            }
        }
        if self.rt.click.running.is_none() {
            self.rt.click_stage = None;
        }
    }

    /// The label a new result gets: one more than the largest in use.
    pub fn next_label_id(&self) -> u16 {
        let max = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).and_then(|l| l.table.entries.keys().next_back().copied()).unwrap_or(0);
        max.saturating_add(1).min(CANDIDATE_LIMIT)
    }

    fn accept_candidate(&mut self) {
        let Some(c) = self.rt.click.candidate.take() else { return };
        let label = self.rt.click.target.unwrap_or_else(|| self.next_label_id());
        let is_new = !self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).is_some_and(|l| l.table.entries.contains_key(&label));
        let rule = self.overwrite;
        if self.label_layer().is_none() {
            return;
        }
        let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) else { return };
        let op = edit::EditOp::Paint { mask: c.mask.clone(), label, bbox_kji: c.bbox_kji, rule };
        let done = self.rt.click.edits.run(&mut layer.map, op);
        let written = done.last().filter(|a| !a.undone && a.edit.label == label).map(|a| a.edit.indices.len());
        self.after_edits(done);
        match written {
            Some(n) if n < c.voxels => self.notice(format!(
                "Accepted: {n} voxels written as label {label}; {} voxels of other labels kept (paint over: {}). Ctrl+Z undoes.",
                c.voxels - n,
                rule.describe()
            )),
            Some(n) => self.notice(format!("Accepted: {n} voxels ({:.1} ml) written as label {label}. Ctrl+Z undoes.", c.ml)),
            None => self.notice(format!("Accepted ({:.1} ml as label {label}): written as soon as the label map is free (it is being read or saved)", c.ml)),
        }
        if is_new {
            // A new result gets a name now (Keep as is: "label N"; the list renames it later).
            self.rt.name_prompt = Some(label_list::NamePrompt::new(label, &format!("label {label}")));
        }
    }

    /// Erases a label (undoable) and takes its row away.
    fn delete_label(&mut self, id: u16) {
        let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) else { return };
        let done = self.rt.click.edits.run(&mut layer.map, edit::EditOp::Replace { from: id, to: 0 });
        self.after_edits(done);
        self.edit_labels(|t| {
            if let Some(e) = t.entries.remove(&id) {
                t.retired.insert(id, e);
            }
        });
        if self.rt.click.target == Some(id) {
            self.rt.click.target = None;
        }
        self.notice(format!("Label {id} deleted. Ctrl+Z brings it back."));
    }

    /// Adds an empty label (the next free id) and makes it the active one.
    fn new_label(&mut self) {
        let id = self.next_label_id();
        let Some(layer) = self.label_layer() else { return };
        layer.table.entries.insert(id, labels::LabelEntry { name: format!("label {id}"), colour: labels::default_colour(id, None), visible: true, voxels: 0 });
        layer.lut = layer.table.lut();
        self.rt.click.target = Some(id);
        self.rt.name_prompt = Some(label_list::NamePrompt::new(id, &format!("label {id}")));
        self.rt.labels_rev += 1;
    }

    fn undo_redo(&mut self, undo: bool) {
        let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) else { return };
        let op = if undo { edit::EditOp::Undo } else { edit::EditOp::Redo };
        let done = self.rt.click.edits.run(&mut layer.map, op);
        self.after_edits(done);
    }

    /// Applies the edits that waited for the label map's readers (each frame).
    fn flush_edits(&mut self) {
        let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) else { return };
        if self.rt.click.edits.waiting() == 0 {
            return;
        }
        let done = self.rt.click.edits.flush(&mut layer.map);
        self.after_edits(done);
        self.report_edit_errors();
    }

    /// The label table, overlay, meshes and comparison follow edits just applied.
    fn after_edits(&mut self, done: Vec<edit::Applied>) {
        if done.is_empty() {
            return;
        }
        self.rt.labels_rev += 1;
        let mut touched = Vec::new();
        for a in &done {
            if let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) {
                adjust_counts(&mut layer.table, &a.edit, !a.undone);
                layer.lut = layer.table.lut();
            }
            touched.extend(a.edit.touched_labels());
        }
        touched.sort_unstable();
        touched.dedup();
        self.bump_overlay();
        self.request_meshes(Some(touched));
        self.refresh_compare();
    }

    fn edit_labels(&mut self, f: impl FnOnce(&mut LabelTable)) {
        if let Some(s) = &mut self.rt.scene
            && let Some(l) = &mut s.labels
        {
            f(&mut l.table);
            l.lut = l.table.lut();
            s.overlay_rev += 1;
        }
    }

    /// Opens a volume on the loader thread (`series`: the DICOM series of a folder of several).
    fn open_volume(&mut self, path: PathBuf, labels: Option<PathBuf>, series: Option<crate::volume::dicom::SeriesChoice>) {
        if !self.may_proceed(unsaved::Pending::OpenVolume { path: path.clone(), labels: labels.clone(), series: series.clone() }) {
            return;
        }
        self.rt.generation += 1;
        let generation = self.rt.generation;
        self.rt.progress = Some((format!("opening {}", path.display()), 0.0));
        self.request(LoadRequest::Volume { path, labels, generation, series });
    }

    /// Native dialogs block their thread, so each runs on its own; the answer comes back as a
    /// command. With no desktop portal (a bare container) rfd returns nothing: say so.
    fn show_dialog(&mut self, kind: DialogKind, ctx: &egui::Context) {
        let start_dir = self.rt.scene.as_ref().and_then(|s| s.path.parent().map(Path::to_path_buf));
        if self.rt.dialog_backend == file_dialog::Backend::InApp {
            self.rt.in_app_dialog = Some(file_dialog::InAppDialog::new(kind, start_dir));
            return;
        }
        if let Err(e) = file_dialog::spawn_system(kind, start_dir, self.rt.dialog_backend, self.rt.dialog_tx.clone(), ctx.clone()) {
            self.error(format!("could not open a file dialog: {e}"));
        }
    }

    /// The in-app file dialog, while open.
    fn in_app_dialog_ui(&mut self, ctx: &egui::Context) {
        let Some(d) = &mut self.rt.in_app_dialog else { return };
        if let Some(done) = d.show(ctx) {
            self.rt.in_app_dialog = None;
            if let Some(c) = done {
                self.send(c);
            }
        }
    }

    /// Files dropped on the window: label maps (names containing "label", "seg" or "mask")
    /// go over the current volume; anything else (a DICOM folder too) opens as a volume.
    fn handle_dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        for path in dropped {
            let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            if name.ends_with(".csv") {
                self.send(AppCommand::OpenReport(path));
                continue;
            }
            let readable = path.is_dir() || crate::volume::detect(&path).is_ok_and(|f| f != crate::volume::Format::Nifti) || name.ends_with(".nii") || name.ends_with(".nii.gz");
            if !readable {
                self.error(format!("{}: not a volume (NIfTI, NRRD, MetaImage, DICOM file or folder) nor an eval report (.csv)", path.display()));
                continue;
            }
            let looks_like_labels = ["label", "seg", "mask"].iter().any(|k| name.contains(k));
            if looks_like_labels && !path.is_dir() && self.rt.scene.is_some() {
                self.send(AppCommand::OpenLabels(path));
            } else {
                self.send(AppCommand::OpenVolume { path, labels: None });
            }
        }
    }

    /// Keyboard shortcuts (when no text field has focus).
    fn handle_keys(&mut self, ctx: &egui::Context) {
        use egui::Key;
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let plane = self.rt.active_view;
        let mut out = Vec::new();
        ctx.input(|i| {
            let cmd = i.modifiers.command;
            if cmd && i.key_pressed(Key::O) {
                out.push(AppCommand::ShowDialog(DialogKind::OpenVolume));
            } else if cmd && i.key_pressed(Key::L) {
                out.push(AppCommand::ShowDialog(DialogKind::OpenLabels));
            } else if cmd && i.key_pressed(Key::S) {
                out.push(AppCommand::ShowDialog(DialogKind::SaveLabels));
            } else if cmd && i.key_pressed(Key::Q) {
                out.push(AppCommand::Quit);
            }
            if cmd && (i.key_pressed(Key::Y) || (i.modifiers.shift && i.key_pressed(Key::Z))) {
                out.push(AppCommand::Redo);
            } else if cmd && i.key_pressed(Key::Z) {
                out.push(AppCommand::Undo);
            }
            if cmd {
                return;
            }
            for (k, t) in [Key::C, Key::T, Key::B, Key::E, Key::G, Key::K].into_iter().zip(tools::Tool::ALL) {
                if i.key_pressed(k) && !i.modifiers.shift && !i.modifiers.alt {
                    out.push(AppCommand::SetTool(t));
                }
            }
            for (k, p) in [Key::Num1, Key::Num2, Key::Num3, Key::Num4].iter().zip(Preset::ALL) {
                if i.key_pressed(*k) {
                    out.push(AppCommand::ApplyPreset(p));
                }
            }
            if i.key_pressed(Key::A) {
                out.push(AppCommand::AutoWindow);
            }
            if i.key_pressed(Key::R) {
                out.push(AppCommand::ResetViews);
            }
            if i.key_pressed(Key::F) {
                out.push(AppCommand::ToggleMaximise(ViewCell::Slice(plane)));
            }
            if i.key_pressed(Key::Enter) {
                out.push(AppCommand::AcceptCandidate);
            }
            if i.key_pressed(Key::Delete) {
                out.push(AppCommand::RejectCandidate);
            }
            // The case browser's next / previous click, in its table's order.
            for (k, delta) in [(Key::CloseBracket, 1), (Key::OpenBracket, -1)] {
                if i.key_pressed(k)
                    && let Some(row) = self.rt.cases.step(delta)
                {
                    out.push(AppCommand::OpenCaseRow(row));
                }
            }
            if i.key_pressed(Key::Escape) {
                // Esc stops a running click job first; otherwise it restores the layout.
                out.push(if self.rt.click.running.is_some() { AppCommand::CancelClick } else { AppCommand::RestoreLayout });
            }
            for (k, steps) in [(Key::ArrowUp, 1), (Key::ArrowDown, -1), (Key::PageUp, 10), (Key::PageDown, -10)] {
                if i.key_pressed(k) {
                    out.push(AppCommand::StepSlice { plane, steps });
                }
            }
        });
        self.rt.commands.extend(out);
    }

    /// One frame's UI: menu, status bar, side panel, views.
    pub fn frame_ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.drain_events();
        self.handle_dropped_files(&ctx);
        self.handle_keys(&ctx);
        self.guard_close(&ctx);
        if self.rt.scene.as_ref().is_some_and(|s| s.engine_path.is_some())
            && let Some((ras, refine)) = self.rt.click.after_copy.take()
        {
            self.start_click(ras, refine, &ctx);
        }
        if let Some(p) = self.rt.unsaved.resume_next.take() {
            self.resume(p, &ctx);
        }
        self.apply_commands(&ctx);
        self.drain_edit_job();
        self.drain_export();
        self.autosave_tick(&ctx);
        self.run_pending_at(&ctx);
        if std::mem::take(&mut self.rt.title_dirty)
            && let Some(s) = &self.rt.scene
        {
            let name = s.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(format!("{name} — sam3d-studio")));
        }

        // A result in the 3D view: the other surfaces faint, the camera on it.
        self.mesh_view.set_focus(self.rt.click.candidate.as_ref().map(|c| (three_d::CANDIDATE_ID, c.job)));
        if self.rt.click.candidate.is_none() && self.rt.click.running.is_none() {
            // Accepted or rejected: the next click starts a new object.
            self.rt.click.object = None;
            self.rt.click.grow_object = None;
            self.rt.click.object_box = None;
        }
        egui::Panel::top("menu").frame(panels::bar_frame(ui.style())).show(ui, |ui| panels::menu_ui(self, ui));
        egui::Panel::top("toolbar").frame(panels::bar_frame(ui.style())).show(ui, |ui| panels::toolbar_ui(self, ui));
        egui::Panel::bottom("status").frame(panels::bar_frame(ui.style())).show(ui, |ui| panels::status_ui(self, ui));
        if self.show_side_panel {
            egui::Panel::left("side").resizable(true).default_size(290.0).size_range(220.0..=480.0).show(ui, |ui| panels::side_panel_ui(self, ui));
        }
        egui::CentralPanel::no_frame().show(ui, |ui| {
            self.views_ui(ui);
        });
        panels::drop_hint_ui(&ctx);
        self.finetune_ui(&ctx);
        self.cases_ui(&ctx);
        self.series_picker_ui(&ctx);
        messages::log_window_ui(self, &ctx);
        label_list::name_prompt_ui(self, &ctx);
        connect::window_ui(self, &ctx);
        export::window_ui(self, &ctx);
        unsaved::unsaved_ui(self, &ctx);
        self.in_app_dialog_ui(&ctx);
        // Commands from this frame's widgets take effect now, not on the next input event.
        if !self.rt.commands.is_empty() {
            self.apply_commands(&ctx);
            ctx.request_repaint();
        }
        self.prepare_engine(&ctx);
    }

    /// The case browser (when open), and a report that has been read.
    fn series_picker_ui(&mut self, ctx: &egui::Context) {
        let Some(p) = &self.rt.series_picker else { return };
        let (chosen, open) = series_picker::window_ui(ctx, p);
        if let Some(c) = chosen {
            self.send(c);
        } else if !open {
            self.rt.series_picker = None;
        }
    }

    fn cases_ui(&mut self, ctx: &egui::Context) {
        if let Some(Err(e)) = self.rt.cases.drain() {
            self.error(e);
        }
        if self.rt.cases.open
            && let Some(i) = cases::window_ui(ctx, &mut self.rt.cases)
        {
            self.send(AppCommand::OpenCaseRow(i));
        }
    }

    /// Opens a case of the browser (unless it is the scan on screen with that label map) and
    /// runs "3D from click" at its click once it is open, with the row's method.
    fn open_case(&mut self, c: cases::OpenCase, ctx: &egui::Context) {
        self.click_method = if c.model { ClickMethod::Model } else { ClickMethod::RegionGrowing };
        let same = |a: &Path, b: &Path| a == b || a.canonicalize().ok().is_some_and(|x| b.canonicalize().ok() == Some(x));
        let on_screen = self.rt.scene.as_ref().filter(|s| same(&s.path, &c.image) && s.labels.as_ref().is_some_and(|l| same(&l.path, &c.labels)));
        match on_screen {
            Some(s) => {
                self.rt.pending_at = Some((c.click, Some(c.plane), s.path.clone()));
                self.run_pending_at(ctx);
            }
            None => {
                // Now, not queued: the pending click must not meet the scan still on screen.
                self.rt.pending_at = Some((c.click, Some(c.plane), c.image.clone()));
                self.apply(AppCommand::OpenVolume { path: c.image, labels: Some(c.labels) }, ctx);
            }
        }
    }

    /// The fine-tuning window (when open) and its jobs' news.
    fn finetune_ui(&mut self, ctx: &egui::Context) {
        for (text, is_error) in self.rt.finetune.drain() {
            self.push_message(Message::new(text, is_error));
        }
        if !self.rt.finetune.open {
            return;
        }
        let scene = self.rt.scene.as_ref();
        let pc = finetune::PanelContext {
            volume: scene.map(|s| s.path.as_path()),
            labels: scene.and_then(|s| s.labels.as_ref().map(|l| &l.table)),
            model: self.rt.model.as_deref(),
            weights: self.rt.weights_path.as_deref(),
            adapter: self.rt.adapter.as_deref(),
        };
        if let Some(a) = finetune::window_ui(ctx, &mut self.rt.finetune, &mut self.finetune, &pc) {
            self.finetune_action(a);
        }
    }

    /// Opens the fine-tuning panel, with a fresh run folder for the open scan unless a run is
    /// going on.
    pub fn open_finetune(&mut self) {
        let ft = &mut self.rt.finetune;
        ft.open = true;
        if !ft.is_active()
            && let Some(s) = &self.rt.scene
        {
            ft.dir_text = finetune::FineTune::fresh_dir(&self.finetune, &s.path).display().to_string();
        }
    }

    /// Carries out what the fine-tuning panel asked for.
    pub fn finetune_action(&mut self, a: finetune::PanelAction) {
        use finetune::PanelAction as A;
        let result = match a {
            A::Stop => {
                self.rt.finetune.stop();
                Ok(())
            }
            A::UseAdapter(path) => {
                self.send(AppCommand::LoadAdapter(path));
                Ok(())
            }
            A::Start => self.finetune_plan().and_then(|(plan, engine)| {
                if plan.dir.join("config.toml").exists() || plan.dir.join("state.safetensors").exists() {
                    return Err(format!("{} already holds a run: choose another folder (or Resume that run)", plan.dir.display()));
                }
                self.rt.finetune.start(plan, engine, false)
            }),
            A::Resume => match (self.rt.finetune.run.as_ref().map(|r| r.plan.clone()), engine_binary()) {
                (Some(plan), Some(engine)) => self.rt.finetune.start(plan, engine, true),
                (None, _) => Err("there is no run to resume".into()),
                (_, None) => Err(ENGINE_MISSING.into()),
            },
            A::Compare => match (self.rt.finetune.run.as_ref(), engine_binary()) {
                (Some(run), Some(engine)) => {
                    // The held-out labels; with none held out, the trained ones (fit).
                    let labels: Vec<u16> = if run.plan.held_out.is_empty() { run.plan.names.keys().copied().collect() } else { run.plan.held_out.clone() };
                    self.rt.finetune.compare(engine, labels)
                }
                (None, _) => Err("there is no run to compare".into()),
                (_, None) => Err(ENGINE_MISSING.into()),
            },
        };
        if let Err(e) = result {
            self.error(format!("Fine-tuning: {e}"));
        }
    }

    /// A run of the panel's settings on the open scan and its label map as shown.
    fn finetune_plan(&self) -> Result<(finetune::RunPlan, PathBuf), String> {
        let scene = self.rt.scene.as_ref().ok_or("open a scan first")?;
        let layer = scene.labels.as_ref().ok_or("open the scan's label map first (File > Open label map…)")?;
        let weights = self.rt.weights_path.clone().ok_or("load weights first (Model > Load weights…): the adapter is trained on them")?;
        let engine = engine_binary().ok_or(ENGINE_MISSING)?;
        let present: Vec<u16> = layer.table.entries.iter().filter(|(id, e)| **id != 0 && e.voxels > 0).map(|(id, _)| *id).collect();
        let held_out: Vec<u16> = present.iter().copied().filter(|l| self.rt.finetune.held_out.contains(l)).collect();
        if held_out.len() == present.len() && self.finetune.more_dirs().is_empty() {
            return Err("every label is held out: tick at least one to train on".into());
        }
        for d in self.finetune.more_dirs() {
            if !d.is_dir() {
                return Err(format!("{}: not a folder", d.display()));
            }
        }
        let dir = PathBuf::from(self.rt.finetune.dir_text.trim());
        if dir.as_os_str().is_empty() {
            return Err("give the run a folder".into());
        }
        let names = present.iter().map(|&l| (l, layer.table.name_of(l).unwrap_or("").to_string())).collect();
        let plan = finetune::RunPlan { dir, weights, volume: scene.path.clone(), labels: layer.map.clone(), names, held_out, mr: scene.modality == crate::volume::Modality::Mr, settings: self.finetune.clone() };
        Ok((plan, engine))
    }

    fn views_ui(&mut self, ui: &mut egui::Ui) {
        let full = ui.available_rect_before_wrap();
        ui.painter().rect_filled(full, 0.0, egui::Color32::from_gray(12));
        if self.rt.scene.is_none() {
            panels::empty_ui(self, ui, full);
            messages::toasts_ui(self, ui, full);
            return;
        }
        let gap = 2.0;
        let cells: Vec<(ViewCell, egui::Rect)> = match self.maximised {
            Some(c) => vec![(c, full)],
            None => {
                let w = (full.width() - gap) / 2.0;
                let h = (full.height() - gap) / 2.0;
                ViewCell::ALL
                    .iter()
                    .enumerate()
                    .map(|(n, c)| {
                        let min = full.min + egui::vec2((n % 2) as f32 * (w + gap), (n / 2) as f32 * (h + gap));
                        (*c, egui::Rect::from_min_size(min, egui::vec2(w, h)))
                    })
                    .collect()
            }
        };
        self.rt.view_rects = [None; 3];
        let mut hovered_plane = None;
        for (cell, rect) in cells {
            match cell {
                ViewCell::Slice(plane) => {
                    let out = slice_view::slice_view_ui(self, ui, rect, plane);
                    if out.hovered {
                        hovered_plane = Some(plane);
                        self.rt.hover = out.probe;
                    }
                }
                ViewCell::ThreeD => three_d::three_d_ui(self, ui, rect),
            }
        }
        match hovered_plane {
            Some(p) => self.rt.active_view = p,
            None => self.rt.hover = None,
        }
        // The status bar was drawn before the views: when the point under the pointer changed,
        // this pass is drawn again (without input) so the probe is never one move behind.
        if self.rt.hover != self.rt.hover_shown {
            ui.ctx().request_discard("the status bar's probe follows the pointer");
        }
        // Over the views, under any window.
        messages::toasts_ui(self, ui, full);
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.frame_ui(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, self);
    }
}

/// Dark, compact style for a workstation tool.
fn style(ctx: &egui::Context) {
    ctx.set_theme(egui::Theme::Dark);
    ctx.all_styles_mut(|s| {
        s.spacing.item_spacing = egui::vec2(6.0, 4.0);
        s.spacing.button_padding = egui::vec2(6.0, 2.0);
        s.spacing.interact_size.y = 20.0;
        s.visuals.panel_fill = egui::Color32::from_gray(30);
        s.visuals.window_fill = egui::Color32::from_gray(34);
        s.visuals.extreme_bg_color = egui::Color32::from_gray(18);
    });
}

const NO_LOCAL_ENGINE: &str = "The model's engine is not installed on this computer: \"3D from click\" uses region growing. Model → Connect to engine… runs the model on another machine.";

const ENGINE_MISSING: &str = "sam3d-studio-engine was not found beside this program; the model cannot run";

/// Asks the engine process which device the model will use ("CUDA (n GPU)" or "CPU"), on a
/// named thread: the GUI itself never loads libtorch (its start-up costs ~0.7 s).
fn spawn_device_probe(ctx: egui::Context) -> Option<Receiver<String>> {
    let (tx, rx) = bounded(1);
    std::thread::Builder::new()
        .name("sam3d-device-probe".into())
        .spawn(move || {
            let answer = match engine_binary() {
                None => "no engine here (Model → Connect to engine…)".to_string(),
                Some(bin) => match std::process::Command::new(&bin).arg("--device-info").output() {
                    Ok(out) if out.status.success() => device_from_info(&String::from_utf8_lossy(&out.stdout)),
                    Ok(out) => {
                        log::warn!("{} --device-info failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr).trim());
                        "unknown (engine failed)".into()
                    }
                    Err(e) => {
                        log::warn!("could not run {}: {e}", bin.display());
                        "unknown (engine failed)".into()
                    }
                },
            };
            let _ = tx.send(answer);
            ctx.request_repaint();
        })
        .ok()?;
    Some(rx)
}

/// "CUDA (2 GPU)" or "CPU" from the engine's `--device-info` JSON.
/// One spelling of a compute device, whoever reported it: the engine says `Cpu` or `Cuda(0)`
/// (libtorch's names), the device probe `CPU` or `CUDA (2 GPU)`.
pub fn device_name(s: &str) -> String {
    let t = s.trim();
    if t.eq_ignore_ascii_case("cpu") {
        return "CPU".into();
    }
    if let Some(n) = t.strip_prefix("Cuda(").and_then(|r| r.strip_suffix(')')) {
        return format!("CUDA {n}");
    }
    t.to_string()
}

pub fn device_from_info(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_default();
    match (v.get("cuda").and_then(|c| c.as_bool()), v.get("cuda_devices").and_then(|n| n.as_u64())) {
        (Some(true), Some(n)) => format!("CUDA ({n} GPU)"),
        (Some(true), None) => "CUDA".into(),
        (Some(false), _) => "CPU".into(),
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{device_from_info, device_name};
    use eframe::Storage as _;

    #[test]
    fn one_spelling_per_device() {
        assert_eq!(device_name("Cpu"), "CPU");
        assert_eq!(device_name("CPU"), "CPU");
        assert_eq!(device_name("Cuda(1)"), "CUDA 1");
        assert_eq!(device_name("CUDA (2 GPU)"), "CUDA (2 GPU)");
    }

    #[test]
    fn device_text() {
        assert_eq!(device_from_info("{\"cuda\":true,\"cuda_devices\":2,\"cudnn\":true,\"threads\":8}\n"), "CUDA (2 GPU)");
        assert_eq!(device_from_info("{\"cuda\":false,\"cuda_devices\":0}"), "CPU");
        assert_eq!(device_from_info("garbage"), "unknown");
    }

    /// Settings kept in memory, as eframe's storage keeps them on disk.
    #[derive(Default)]
    struct Memory(std::collections::HashMap<String, String>);
    impl eframe::Storage for Memory {
        fn get_string(&self, key: &str) -> Option<String> {
            self.0.get(key).cloned()
        }
        fn set_string(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), value);
        }
        fn remove_string(&mut self, key: &str) {
            self.0.remove(key);
        }
        fn flush(&mut self) {}
    }

    /// The zoom became the default in session 23: a `zoom_small: false` saved before then was the
    /// old default and reads back as the new one; a choice saved since is kept.
    #[test]
    fn a_zoom_saved_as_the_old_default_is_not_read_back() {
        let mut store = Memory::default();
        let app = super::App { zoom_small: false, ..Default::default() };
        eframe::set_value(&mut store, eframe::APP_KEY, &app);
        let saved = store.get_string(eframe::APP_KEY).expect("saved");
        assert!(saved.contains("zoom_small_objects:false"), "{saved}");
        let back: super::App = eframe::get_value(&store, eframe::APP_KEY).expect("reads back");
        assert!(!back.zoom_small, "a choice saved since is kept");
        store.set_string(eframe::APP_KEY, saved.replace("zoom_small_objects:false", "zoom_small:false"));
        let old: super::App = eframe::get_value(&store, eframe::APP_KEY).expect("an old file reads");
        assert!(old.zoom_small, "the old default is not read back");
    }
}
