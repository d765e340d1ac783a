//! The loader: a named background thread that reads volumes and label maps (and saves label
//! maps), so the UI thread never does file I/O or whole-volume work. Requests and events cross
//! bounded channels; the loader wakes the UI with `request_repaint` after each event.

use super::labels::LabelTable;
use crate::geometry::RasFromVoxel;
use crate::volume::intensity::{Window, auto_window};
use crate::volume::dicom::{SeriesChoice, SeriesInfo, SeriesKind};
use crate::volume::label_names::LabelNames;
use crate::volume::{LabelMap, Modality, OnGrid, Stats, StoredVolume, Voxel};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use std::path::PathBuf;
use std::sync::Arc;

/// Work for the loader thread.
#[derive(Debug)]
pub enum LoadRequest {
    /// Read a volume, then (optionally) a label map that must lie on its grid. `series`: the
    /// DICOM series to read when the path holds several (`None`: ask, if it does).
    Volume { path: PathBuf, labels: Option<PathBuf>, generation: u64, series: Option<SeriesChoice> },
    /// Draw a DICOM RTSTRUCT's contours on the series in `series_folder` (the current volume's)
    /// and check the label map against the current volume.
    Structures { path: PathBuf, series_folder: PathBuf, volume: Arc<StoredVolume>, generation: u64 },
    /// Write the uncompressed copy of `volume` (read from `path`) that the model engine reads
    /// ([`needs_engine_copy`]): asked for when the 3D-from-click tool is chosen with the model
    /// (or at the first model click on a scan), not at every open.
    EngineCopy { path: PathBuf, volume: Arc<StoredVolume>, generation: u64 },
    /// Read a label map and check it against the current volume.
    Labels { path: PathBuf, volume: Arc<StoredVolume>, generation: u64 },
    /// Write a label map (atomically) with the volume's `ras_from_voxel`, in the format the name
    /// asks (NIfTI, NRRD, Slicer `.seg.nrrd`, MetaImage; a DICOM SEG `.dcm` referencing
    /// `source`, the DICOM series the volume was read from), with its names and colours.
    SaveLabels { path: PathBuf, labels: Arc<LabelMap>, ras_from_voxel: RasFromVoxel, names: LabelNames, source: Option<(PathBuf, SeriesChoice)> },
}

/// A volume ready to show, with everything the UI needs precomputed.
#[derive(Debug)]
pub struct LoadedVolume {
    pub path: PathBuf,
    /// Held in the narrowest type that holds its values exactly ([`StoredVolume`]).
    pub volume: Arc<StoredVolume>,
    pub stats: Stats,
    pub modality: Modality,
    pub histogram: Histogram,
    /// The window to start with: abdomen for CT, [`Self::auto_window`] otherwise.
    pub initial_window: Window,
    /// 1st to 99th percentile (computed here so the UI thread never scans the volume).
    pub auto_window: Window,
    pub generation: u64,
    /// The DICOM series read (for a DICOM source): what a DICOM SEG references.
    pub series: Option<SeriesChoice>,
}

/// A label map checked against the volume, with its names.
#[derive(Debug)]
pub struct LoadedLabels {
    pub path: PathBuf,
    pub labels: Arc<LabelMap>,
    pub table: LabelTable,
    pub generation: u64,
}

/// What the loader reports.
#[derive(Debug)]
pub enum LoadEvent {
    /// `fraction` in 0..=1 of the current job, with a short description.
    Progress { what: String, fraction: f32 },
    Volume(Box<LoadedVolume>),
    Labels(Box<LoadedLabels>),
    Saved(PathBuf),
    /// The folder holds several DICOM series: the user picks one (then `Volume` again with it).
    ChooseSeries { path: PathBuf, labels: Option<PathBuf>, generation: u64, series: Vec<SeriesInfo> },
    /// What the engine process should read for this volume: a copy of it as read (or, when the
    /// copy could not be written, the source itself). Not sent for an uncompressed NIfTI,
    /// which the engine reads as it is.
    EngineCopy { generation: u64, path: PathBuf },
    /// Things the user should know about a file that still opened (an RTSTRUCT contour left out).
    Warnings(Vec<String>),
    /// A job failed; `message` names the file and the problem.
    Failed { message: String },
    /// The loader is idle again.
    Idle,
}

/// Intensity histogram over the finite voxels.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u32>,
}

impl Histogram {
    pub const BINS: usize = 256;

    pub fn of<T: Voxel>(values: &[T], stats: &Stats) -> Self {
        let (lo, hi) = (stats.min as f32, stats.max as f32);
        let mut counts = vec![0u32; Self::BINS];
        if hi > lo {
            let scale = Self::BINS as f32 / (hi - lo);
            for x in values.iter().map(|x| x.to_f32()) {
                if x.is_finite() {
                    counts[(((x - lo) * scale) as usize).min(Self::BINS - 1)] += 1;
                }
            }
        }
        Self { lo, hi, counts }
    }
}

/// Handle the UI keeps: send requests, drain events.
pub struct Loader {
    requests: Sender<LoadRequest>,
    pub events: Receiver<LoadEvent>,
    /// Where this loader writes the engine's copies of volumes (removed with the loader).
    copy_dir: PathBuf,
}

impl Drop for Loader {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.copy_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("{}: could not remove the engine's copies: {e}", self.copy_dir.display());
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Loader")
    }
}

impl Loader {
    /// Starts the `sam3d-loader` thread. `wake` is called after every event sent (the app
    /// passes `egui::Context::request_repaint`).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (req_tx, req_rx) = bounded::<LoadRequest>(8);
        let (ev_tx, ev_rx) = bounded::<LoadEvent>(64);
        static LOADERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = LOADERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let copy_dir = std::env::temp_dir().join(format!("sam3d-studio-{}-{n}", std::process::id()));
        let dir = copy_dir.clone();
        std::thread::Builder::new().name("sam3d-loader".into()).spawn(move || {
            let send = |e: LoadEvent| {
                // Blocks only if the UI has stopped draining (64 queued events).
                let ok = ev_tx.send(e).is_ok();
                wake();
                ok
            };
            for req in req_rx.iter() {
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(req, &send, &dir)));
                if let Err(panic) = result {
                    let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                    send(LoadEvent::Failed { message: format!("internal error while loading: {msg}") });
                }
                if !send(LoadEvent::Idle) {
                    break;
                }
            }
        })?;
        Ok(Self { requests: req_tx, events: ev_rx, copy_dir })
    }

    /// Queues a request; fails (with a message) only when 8 requests are already waiting.
    pub fn request(&self, r: LoadRequest) -> Result<(), String> {
        match self.requests.try_send(r) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("the loader is busy; try again when the current file has loaded".into()),
            Err(TrySendError::Disconnected(_)) => Err("the loader thread has stopped".into()),
        }
    }
}

fn handle(req: LoadRequest, send: &dyn Fn(LoadEvent) -> bool, copy_dir: &std::path::Path) {
    let progress = |what: String, fraction: f32| {
        send(LoadEvent::Progress { what, fraction });
    };
    match req {
        LoadRequest::Volume { path, labels, generation, series } => {
            progress(format!("reading {}", file_name(&path)), 0.05);
            if series.is_none() && crate::volume::detect(&path).is_ok_and(|f| f == crate::volume::Format::Dicom) {
                match crate::volume::dicom::list_series(&path) {
                    Ok(list) if list.iter().filter(|s| s.kind == SeriesKind::Image && s.problem.is_none()).count() > 1 => {
                        send(LoadEvent::ChooseSeries { path, labels, generation, series: list });
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        send(LoadEvent::Failed { message: e.to_string() });
                        return;
                    }
                }
            }
            let volume = match load_volume(&path, series.as_ref()) {
                Ok(v) => v,
                Err(message) => {
                    send(LoadEvent::Failed { message });
                    return;
                }
            };
            progress("statistics and histogram".into(), 0.6);
            let stats = volume.stats();
            let modality = stats.guess_modality();
            let (histogram, auto) = crate::volume::with_stored!(&volume, v => {
                let flat = v.data.as_slice().unwrap_or(&[]);
                (Histogram::of(flat, &stats), auto_window(flat, &stats))
            });
            // The window the scan suggests (DICOM WindowCenter/Width), else the abdomen preset for
            // a CT, else the 1st to 99th percentile.
            let initial_window = match (volume.meta().window, modality) {
                (Some((level, width)), _) if level.is_finite() && width.is_finite() && width > 0.0 => Window { level: level as f32, width: width as f32 },
                (_, Modality::Ct) => crate::volume::intensity::Preset::Abdomen.window(),
                _ => auto,
            };
            let volume = Arc::new(volume);
            send(LoadEvent::Volume(Box::new(LoadedVolume {
                path: path.clone(),
                volume: volume.clone(),
                stats,
                modality,
                histogram,
                initial_window,
                auto_window: auto,
                generation,
                series: crate::volume::detect(&path).is_ok_and(|f| f == crate::volume::Format::Dicom).then(|| series.clone().unwrap_or_default()),
            })));
            if let Some(lp) = labels {
                progress(format!("reading {}", file_name(&lp)), 0.8);
                load_labels_and_send(lp, &volume, generation, send);
            }
        }
        LoadRequest::EngineCopy { path, volume, generation } => {
            progress("handing the scan to the model engine".into(), 0.5);
            match write_engine_copy(&volume, generation, copy_dir) {
                Ok(copy) => {
                    send(LoadEvent::EngineCopy { generation, path: copy });
                }
                Err(e) => {
                    log::warn!("the engine will read {} itself: {e}", path.display());
                    send(LoadEvent::EngineCopy { generation, path });
                }
            }
        }
        LoadRequest::Structures { path, series_folder, volume, generation } => {
            progress(format!("drawing the contours of {}", file_name(&path)), 0.1);
            let r = crate::volume::dicom::open_rtstruct_labels(&path, &series_folder).map_err(|e| e.to_string()).and_then(|r| {
                r.labels.check_matches(volume.as_ref(), &path).map_err(|e| e.to_string())?;
                Ok(r)
            });
            match r {
                Ok(r) => {
                    if !r.warnings.is_empty() {
                        send(LoadEvent::Warnings(r.warnings.clone()));
                    }
                    let table = LabelTable::new(&r.labels.counts(), Some((&r.names, path.clone())));
                    send(LoadEvent::Labels(Box::new(LoadedLabels { path, labels: Arc::new(r.labels), table, generation })));
                }
                Err(message) => {
                    send(LoadEvent::Failed { message });
                }
            }
        }
        LoadRequest::Labels { path, volume, generation } => {
            progress(format!("reading {}", file_name(&path)), 0.1);
            load_labels_and_send(path, &volume, generation, send);
        }
        LoadRequest::SaveLabels { path, labels, ras_from_voxel, names, source } => {
            progress(format!("writing {}", file_name(&path)), 0.3);
            // The map was checked against the volume's grid on load; write it with exactly the
            // volume's affine so the file lines up bit-for-bit with the scan.
            let on_volume_grid = LabelMap { data: labels.data.clone(), ras_from_voxel, meta: Default::default() };
            drop(labels); // the viewer's map is free for edits again
            let saved = match (crate::volume::OutputFormat::of(&path), source) {
                (Ok(crate::volume::OutputFormat::DicomSeg), Some((series, choice))) => {
                    crate::volume::save_labels_dicom_seg(&path, &on_volume_grid, &names, &series, &choice).map(|_| ())
                }
                _ => crate::volume::save_labels(&path, &on_volume_grid, Some(&names)),
            };
            match saved {
                Ok(()) => {
                    send(LoadEvent::Saved(path));
                }
                Err(e) => {
                    send(LoadEvent::Failed { message: e.to_string() });
                }
            }
        }
    }
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// Whether the engine process should get a copy of the volume as read instead of its source:
/// everything but an uncompressed NIfTI, which it reads as fast as a copy (a `.nii.gz` would be
/// inflated again, a DICOM series decoded again, and a folder of several series is ambiguous).
pub fn needs_engine_copy(source: &std::path::Path) -> bool {
    !(source.is_file() && source.extension().is_some_and(|e| e.eq_ignore_ascii_case("nii")))
}

/// Writes `volume` as an uncompressed NIfTI in `dir` (earlier copies are removed: the engine
/// holds one volume at a time), in the type the viewer holds it in (int16 for most CTs: half
/// the bytes of float32, in the temporary folder and in the engine's read); the engine reads
/// the same values as float32.
fn write_engine_copy(volume: &StoredVolume, generation: u64, dir: &std::path::Path) -> Result<PathBuf, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("volume-{generation}.nii"));
    let options = crate::volume::WriteOptions { dtype: volume.dtype(), ..Default::default() };
    crate::volume::with_stored!(volume, v => crate::volume::write_nifti(&path, v.data.view(), &v.ras_from_voxel, &options)).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Reads a volume (the DICOM `series` when given), held in the narrowest type that holds its
/// values exactly ([`StoredVolume::open`]), with its voxels in standard (C) layout for fast
/// slice access.
pub fn load_volume(path: &std::path::Path, series: Option<&SeriesChoice>) -> Result<StoredVolume, String> {
    let mut held = StoredVolume::open(path, series).map_err(|e| e.to_string())?;
    if held.shape().is_empty() {
        return Err(format!("{}: the volume has no voxels", path.display()));
    }
    crate::volume::with_stored!(&mut held, v => {
        if !v.data.is_standard_layout() {
            v.data = v.data.as_standard_layout().into_owned();
        }
    });
    Ok(held)
}

/// Reads labels onto `volume`'s grid with their names ([`crate::volume::open_labels_on`]: a
/// label map that lies on it, with a names table beside it; a DICOM SEG put back on the
/// scan's grid; an RTSTRUCT drawn on the series the volume was read from).
pub fn load_labels(path: &std::path::Path, volume: &StoredVolume) -> Result<(LabelMap, LabelTable), String> {
    let image = volume.meta().source.clone().unwrap_or_else(|| path.parent().map(std::path::Path::to_path_buf).unwrap_or_default());
    let on = crate::volume::open_labels_on(path, volume, &image).map_err(|e| e.to_string())?;
    let mut labels = on.labels;
    if !labels.data.is_standard_layout() {
        labels.data = labels.data.as_standard_layout().into_owned();
    }
    let counts = labels.counts();
    let table = LabelTable::new(&counts, on.names.as_ref().map(|(n, p)| (n, p.clone())));
    Ok((labels, table))
}

fn load_labels_and_send(path: PathBuf, volume: &StoredVolume, generation: u64, send: &dyn Fn(LoadEvent) -> bool) {
    match load_labels(&path, volume) {
        Ok((labels, table)) => {
            send(LoadEvent::Labels(Box::new(LoadedLabels { path, labels: Arc::new(labels), table, generation })));
        }
        Err(message) => {
            send(LoadEvent::Failed { message });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use crate::volume::{DataType, Volume};

    #[test]
    fn the_engines_copy_is_written_in_the_type_the_viewer_holds_and_reads_back_the_same_values() {
        let dir = std::env::temp_dir().join(format!("sam3d-engine-copy-test-{}", std::process::id()));
        let mut v = Volume::new(ndarray::Array3::from_shape_fn((3, 4, 5), |(k, j, i)| (k * 100 + j * 10 + i) as f32 - 1024.0), RasFromVoxel::scale_translate([0.75, 0.75, 2.0], [5.0, -3.0, 40.0])).expect("volume");
        for (value, dtype) in [(None, DataType::Int16), (Some(0.5), DataType::Float32), (Some(40000.0), DataType::Float32)] {
            if let Some(x) = value {
                v.data[[1, 1, 1]] = x; // not a whole number; then past int16 with negatives
            }
            let held = StoredVolume::from_volume(v.clone());
            assert_eq!(held.dtype(), dtype);
            let path = write_engine_copy(&held, 7, &dir).expect("written");
            let back = crate::volume::open(&path).expect("read");
            assert_eq!(back.meta.dtype, Some(dtype));
            assert_eq!(back.data, v.data, "the engine reads the same values");
            assert_eq!(back.ras_from_voxel, v.ras_from_voxel);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
