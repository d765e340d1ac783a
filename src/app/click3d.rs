//! "3D from click": a click on any slice view segments the structure under it in 3D. The
//! computation runs on a named background thread (`sam3d-click`), never on the UI thread; the
//! result is a candidate mask shown translucent in every view until it is accepted (written
//! into the label map, undoable) or rejected.

use crate::baseline::{GrowError, GrowParams, grow_from_click_until};
use crate::geometry::{PixelWalk, RasMm};
use crate::volume::{OnGrid, StoredVolume};
use crossbeam_channel::{Receiver, Sender, bounded};
use egui::Color32;
use ndarray::Array3;
use std::sync::Arc;

/// How the click becomes a 3D shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClickMethod {
    /// Seeded confidence-connected region growing ([`crate::baseline`]); needs no weights.
    #[default]
    RegionGrowing,
    /// The SAM3D network, run by the `sam3d-studio-engine` process.
    Model,
}

impl ClickMethod {
    pub fn name(&self) -> &'static str {
        match self {
            ClickMethod::RegionGrowing => "Region growing (no weights)",
            ClickMethod::Model => "SAM3D model",
        }
    }
}

/// A finished click result waiting for Accept / Reject.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub job: u64,
    pub click: RasMm,
    /// On the volume's grid, `[k, j, i]`.
    pub mask: Arc<Array3<bool>>,
    /// The surface to show in the 3D view when the method made one (the engine meshes its
    /// result); `None`: the mesher makes it from `mask`.
    pub mesh: Option<Arc<crate::shape::Mesh>>,
    pub voxels: usize,
    pub ml: f64,
    pub method: ClickMethod,
    pub millis: f64,
    /// Runs of the method behind this result: more than 1 when the model continued an organ
    /// wider than its output cube.
    pub passes: usize,
    /// Region growing from the click agreed with the model's shape and was joined to it
    /// ([`crate::baseline::join`]).
    pub joined: bool,
    /// The magnification the model saw the scan at about the click (`data::zoom`: a small
    /// object, or a distinct one the close-up probe found inside the first shape); `None`: as
    /// it is.
    pub zoom: Option<f64>,
    /// The box `mask` lies in (`[k, j, i]`, first and last voxel; `None`: unknown or empty), so
    /// accepting walks the box, not the whole grid.
    pub bbox_kji: Option<([usize; 3], [usize; 3])>,
    /// File name of the LoRA adapter the model ran with (one loaded by hand, or the shipped MR
    /// adapter the engine puts on for an MR scan); `None`: the base weights, or no model.
    pub adapter: Option<String>,
    /// The candidate against the loaded label under the click (`None`: no label map, the click
    /// on no label, or not computed yet; see [`spawn_compare`]).
    pub compared: Option<Comparison>,
}

impl Candidate {
    /// Its size and time, one line (the toolbar's and the status bar's).
    pub fn size_and_time(&self) -> String {
        format!("{} voxels · {:.1} ml · {:.0} ms", self.voxels, self.ml, self.millis)
    }
    /// " · seen at 3.7×" when the model saw the scan magnified, else nothing.
    pub fn zoom_text(&self) -> String {
        self.zoom.map_or_else(String::new, |z| format!(" · seen at {z:.1}×"))
    }
}

/// A candidate measured against the label the user clicked in the loaded label map (a reference
/// segmentation, or an earlier accepted result): how far the one-click result is from it.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// The label's name in the label table.
    pub name: String,
    pub metrics: crate::shape::metrics::LabelMetrics,
}

impl Comparison {
    /// One short line for the toolbar (the label's id and the rest are in [`Comparison::details`]).
    pub fn summary(&self) -> String {
        let hd = self.metrics.hd95_mm.map(|h| format!(" · HD95 {h:.1} mm")).unwrap_or_default();
        format!("vs {}: Dice {:.3}{hd}", self.name, self.metrics.dice)
    }

    /// The whole comparison, for the hover text.
    pub fn details(&self) -> String {
        let m = &self.metrics;
        let mm = |x: Option<f64>| x.map(|v| format!("{v:.1} mm")).unwrap_or_else(|| "–".into());
        format!(
            "Against label {} {} of the loaded label map ({} voxels), the label under the click:\nDice {:.3} · IoU {:.3}\nHD95 {} · HD {} · ASSD {}\nThe candidate holds {:.2}× the label's volume.",
            m.label,
            self.name,
            m.gt_voxels,
            m.dice,
            m.iou,
            mm(m.hd95_mm),
            mm(m.hd_mm),
            mm(m.assd_mm),
            m.pred_voxels as f64 / m.gt_voxels.max(1) as f64
        )
    }
}

/// What a click job reports.
#[derive(Debug)]
pub enum ClickEvent {
    Done(Box<Candidate>),
    Failed { job: u64, message: String },
    /// The job saw its cancel and stopped before it finished.
    Stopped { job: u64 },
    /// Job `job`'s candidate measured against the label under its click ([`spawn_compare`]).
    Compared { job: u64, comparison: Comparison },
    /// The measuring failed (an internal error): no figures for job `job`.
    CompareFailed { job: u64 },
    /// Region growing's object after job `job`'s prompt (sent just before its `Done`), for the
    /// next prompt to refine.
    GrowState { job: u64, state: Box<crate::baseline::prompted::PromptedGrowing> },
}

/// Starts region growing from `click` on a `sam3d-click` thread; the answer comes on `tx`.
/// With a `gate` the thread first waits for a message on it (tests hold a job running that way).
/// The job stops between region growing's passes once `cancel_upto` reaches `job`, and says
/// so ([`ClickEvent::Stopped`]).
pub fn spawn_region_growing(
    job: u64,
    volume: Arc<StoredVolume>,
    click: RasMm,
    tx: Sender<ClickEvent>,
    gate: Option<Receiver<()>>,
    cancel_upto: Arc<std::sync::atomic::AtomicU64>,
    wake: impl Fn() + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("sam3d-click".into())
        .spawn(move || {
            if let Some(g) = gate {
                let _ = g.recv();
            }
            let t0 = std::time::Instant::now();
            let cancelled = || cancel_upto.load(std::sync::atomic::Ordering::SeqCst) >= job;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::volume::with_stored!(volume.as_ref(), v => grow_from_click_until(v, click, &GrowParams::default(), &cancelled))));
            let ev = growing_event(job, click, result, volume.as_ref(), t0);
            let _ = tx.send(ev);
            wake();
        })
        .map(|_| ())
        .map_err(|e| format!("could not start the 3D-from-click thread: {e}"))
}

/// The event a region-growing job ends with: its result as a candidate, its stop, or its error.
fn growing_event(job: u64, click: RasMm, result: std::thread::Result<Result<Array3<bool>, GrowError>>, volume: &impl OnGrid, t0: std::time::Instant) -> ClickEvent {
    match result {
        Ok(Err(GrowError::Cancelled)) => ClickEvent::Stopped { job },
        Ok(Ok(mask)) => {
            let voxels = mask.iter().filter(|&&m| m).count();
            let bbox_kji = crate::shape::sdf::bounding_box(mask.view());
            let ml = voxels as f64 * volume.voxel_ml();
            ClickEvent::Done(Box::new(Candidate {
                job,
                click,
                mask: Arc::new(mask),
                mesh: None,
                voxels,
                ml,
                method: ClickMethod::RegionGrowing,
                millis: t0.elapsed().as_secs_f64() * 1000.0,
                passes: 1,
                joined: false,
                zoom: None,
                bbox_kji,
                adapter: None,
                compared: None,
            }))
        }
        Ok(Err(e)) => ClickEvent::Failed { job, message: format!("3D from click: {e}") },
        Err(_) => ClickEvent::Failed { job, message: "3D from click: region growing failed (internal error)".into() },
    }
}

/// Applies `prompt` to region growing's object `state` (a positive point grows and joins, a
/// negative one cuts, a box bounds: [`crate::baseline::prompted::PromptedGrowing`]) on a
/// `sam3d-click` thread; the new state, then the candidate, come on `tx`.
#[allow(clippy::too_many_arguments)]
pub fn spawn_prompted_growing(
    job: u64,
    volume: Arc<StoredVolume>,
    mut state: crate::baseline::prompted::PromptedGrowing,
    prompt: crate::prompts::Prompt,
    at: RasMm,
    tx: Sender<ClickEvent>,
    cancel_upto: Arc<std::sync::atomic::AtomicU64>,
    wake: impl Fn() + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("sam3d-click".into())
        .spawn(move || {
            let t0 = std::time::Instant::now();
            let cancelled = || cancel_upto.load(std::sync::atomic::Ordering::SeqCst) >= job;
            let floor = crate::volume::with_stored!(volume.as_ref(), v => crate::baseline::refine::intensity_floor(v));
            let shape = volume.shape().array_shape();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::volume::with_stored!(volume.as_ref(), v => state.add(v, &prompt, &GrowParams::default(), floor, &cancelled).map(|c| c.map(|c| c.to_mask(shape))))
            }));
            if matches!(result, Ok(Ok(_))) {
                let _ = tx.send(ClickEvent::GrowState { job, state: Box::new(state) });
            }
            let result = result.map(|r| r.map(|m| m.unwrap_or_else(|| Array3::from_elem((shape[0], shape[1], shape[2]), false))));
            let ev = growing_event(job, at, result, volume.as_ref(), t0);
            let _ = tx.send(ev);
            wake();
        })
        .map(|_| ())
        .map_err(|e| format!("could not start the 3D-from-click thread: {e}"))
}

/// Measures job `job`'s candidate `mask` against label `label` (named `name`) of `labels` on a
/// `sam3d-compare` thread (HD95 needs distance transforms: never on the UI thread); the answer
/// comes on `tx` as [`ClickEvent::Compared`].
pub fn spawn_compare(
    job: u64,
    mask: Arc<Array3<bool>>,
    labels: Arc<crate::volume::LabelMap>,
    label: u16,
    name: String,
    tx: Sender<ClickEvent>,
    wake: impl Fn() + Send + 'static,
) -> Result<(), String> {
    std::thread::Builder::new()
        .name("sam3d-compare".into())
        .spawn(move || {
            let metrics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                crate::shape::metrics::mask_label_metrics(mask.view(), labels.data.view(), label, labels.spacing_mm())
            }));
            drop(labels); // before the UI hears of it: an Accept then edits the map in place
            let ev = match metrics {
                Ok(metrics) => ClickEvent::Compared { job, comparison: Comparison { name, metrics } },
                Err(_) => ClickEvent::CompareFailed { job },
            };
            let _ = tx.send(ev);
            wake();
        })
        .map(|_| ())
        .map_err(|e| format!("could not start the comparison thread: {e}"))
}

/// A channel for click events (the app keeps both ends).
pub fn channel() -> (Sender<ClickEvent>, Receiver<ClickEvent>) {
    bounded(8)
}

/// Tints the pixels of a rendered slice (`[w, h]`, rows top down, laid out by `walk`) where
/// `mask` is set, with [`super::three_d::CANDIDATE_COLOUR`].
pub fn tint_candidate(pixels: &mut [Color32], size: [usize; 2], walk: &PixelWalk, mask: &Array3<bool>) {
    let [r, g, b, a] = super::three_d::CANDIDATE_COLOUR;
    let sh = mask.shape();
    let (nk, nj, ni) = (sh[0] as isize, sh[1] as isize, sh[2] as isize);
    let a = a as u32;
    for row in 0..size[1] {
        for col in 0..size[0] {
            let ijk: [isize; 3] = std::array::from_fn(|d| walk.start[d] as isize + col as isize * walk.per_col[d] + row as isize * walk.per_row[d]);
            if ijk[0] < 0 || ijk[1] < 0 || ijk[2] < 0 || ijk[0] >= ni || ijk[1] >= nj || ijk[2] >= nk {
                continue;
            }
            if mask[[ijk[2] as usize, ijk[1] as usize, ijk[0] as usize]]
                && let Some(p) = pixels.get_mut(row * size[0] + col)
            {
                let mix = |base: u8, c: u8| ((base as u32 * (255 - a) + c as u32 * a) / 255) as u8;
                *p = Color32::from_rgb(mix(p.r(), r), mix(p.g(), g), mix(p.b(), b));
            }
        }
    }
}
