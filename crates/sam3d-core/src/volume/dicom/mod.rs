//! DICOM series in: a folder (walked recursively) or one file of a series becomes a [`Volume`]
//! with its affine in RAS, through `volume::open` (which calls [`open_series`] with
//! [`SeriesChoice::Only`]).
//!
//! | file | concern |
//! |---|---|
//! | `scan.rs` | find DICOM files (Part 10 `DICM` magic), read their headers in parallel |
//! | `lengths.rs` | every element length checked against the bytes left, before the parser sizes a buffer from it |
//! | `header.rs` | one file's series identity, pixel format, per-frame plane/position/rescale (enhanced functional groups resolved) |
//! | `series.rs` | group frames into series by SeriesInstanceUID, split by frame of reference, size and orientation; the listing |
//! | `stack.rs` | sort along the normal, spacing checks, gantry tilt, the affine (through `geometry::DicomPlane`) |
//! | `pixels.rs` | decode (rayon, per file and per frame) and rescale to `f32` |
//! | `j2k.rs` | a JPEG 2000 frame's SIZ header checked against Rows, Columns, samples and bits before decoding |
//!
//! RT structure sets and segmentations (`rtstruct.rs`, `rasterise.rs`, `seg_write.rs`,
//! `seg_read.rs`, `source.rs`): [`read_rtstruct`] reads a structure set's contours,
//! [`rasterise`] draws them on a grid (the referenced series', found by
//! [`open_rtstruct_labels`]), [`write_dicom_seg`] writes a label map as a DICOM Segmentation
//! that references its source series ([`source_series`]: the series' UIDs per slice, without
//! decoding its pixels), and [`read_dicom_seg`] reads one back as a label map on its own grid
//! (names, colours, overlap warnings), which [`place_on_grid`] puts on its volume's grid.
//!
//! Several series in one folder: [`list_series`] lists them (the CLI's `info`, the viewer's
//! series picker) and [`open_series`] opens the one a [`SeriesChoice`] (the CLI's `--series`)
//! names. Opening a folder without a choice opens its only image series (localisers, secondary
//! captures, segmentations and non-image objects aside) and otherwise refuses with the list.
//! [`label_objects`] finds the segmentations and structure sets under a folder (a data
//! folder's case folder holds its labels so).
//!
//! Problems are refused or warned about (`log::warn!`) with a message naming the path and the
//! series (number, description, UID): never a panic or a silently wrong volume.

mod header;
mod j2k;
mod lengths;
mod pixels;
mod scan;
mod rasterise;
mod rtstruct;
mod seg_read;
mod seg_values;
mod seg_write;
mod series;
mod source;
mod stack;
mod uid;

pub use pixels::MAX_VOXELS;
pub use rasterise::{RtLabels, open_rtstruct_labels, rasterise, rasterise_roi};
pub use rtstruct::{Contour, Roi, RtStruct, read_rtstruct};
pub use seg_read::{OFF_GRID, SegLabels, SegSegment, is_dicom_seg, is_seg_sop_class, place_on_grid, read_dicom_seg, seg_referenced_series, seg_segment_names};
pub use seg_write::{SegSummary, write_dicom_seg};
pub use source::{SourceSeries, SourceSlice, source_series};
pub use uid::new_uid;
pub use stack::{MISSING_GAP_RATIO, SAME_POSITION_MM, TILT_REFUSE_DEG, TILT_WARN_DEG, UNEVEN_REFUSE, UNEVEN_WARN};

use super::{AffineSource, DataType, Volume, VolumeError, VolumeMeta};
use scan::Scan;
use series::Part;
use std::fmt;
use std::path::Path;

/// What a series holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriesKind {
    /// Slices of a volume: what `open` opens.
    #[default]
    Image,
    /// A scout/localiser (ImageType contains LOCALIZER): listed, opened only when chosen.
    Localizer,
    /// A secondary capture (screenshots, dose reports): listed, opened only when chosen.
    SecondaryCapture,
    /// No pixels (structured reports, RT plans and structures, presentation states): listed,
    /// never opened.
    NonImage,
    /// A DICOM Segmentation (BINARY, FRACTIONAL or LABELMAP): a label map, not a scan. Listed,
    /// never opened as a volume; `volume::open_labels` reads it.
    Segmentation,
}

impl SeriesKind {
    pub fn name(&self) -> &'static str {
        match self {
            SeriesKind::Image => "image",
            SeriesKind::Localizer => "localiser",
            SeriesKind::SecondaryCapture => "secondary capture",
            SeriesKind::NonImage => "non-image",
            SeriesKind::Segmentation => "segmentation",
        }
    }

    /// Slices of a scan (an image series, a localiser or a secondary capture): what can be
    /// opened as a volume. Non-image objects and segmentations are not.
    pub fn is_scan(&self) -> bool {
        matches!(self, SeriesKind::Image | SeriesKind::Localizer | SeriesKind::SecondaryCapture)
    }
}

/// One series of a folder, as [`list_series`] reports it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SeriesInfo {
    /// 1-based position in the listing: `--series #index` picks exactly this entry.
    pub index: usize,
    pub patient_name: String,
    pub patient_id: String,
    /// StudyDate as stored (YYYYMMDD).
    pub study_date: String,
    pub series_number: Option<i64>,
    pub description: String,
    pub modality: String,
    pub series_uid: String,
    /// FrameOfReferenceUID: what an RT structure set without a series reference is matched by.
    pub frame_of_reference_uid: String,
    pub kind: SeriesKind,
    pub sop_class: String,
    /// Image size: columns (i) × rows (j) × slices/frames (k); 0 for non-image objects.
    pub cols: usize,
    pub rows: usize,
    pub slices: usize,
    pub files: usize,
    /// Voxel spacing (i, j, k) in mm, when the geometry is sound.
    pub spacing: Option<[f64; 3]>,
    /// Orientation codes of the voxel axes (e.g. "LPS"), when the geometry is sound.
    pub axcodes: Option<String>,
    pub transfer_syntax: String,
    /// When a SeriesInstanceUID mixes orientations or sizes: this part and the number of parts.
    pub part: (usize, usize),
    /// Why this series cannot be opened, if it cannot.
    pub problem: Option<String>,
    /// What opening it would warn about (tilt, uneven spacing).
    pub warnings: Vec<String>,
}

impl SeriesInfo {
    /// `series 3 "Axial 2.5mm" (UID 1.2.3…)`, for messages.
    pub fn label(&self) -> String {
        let number = self.series_number.map(|n| format!("series {n}")).unwrap_or_else(|| "series (no number)".into());
        let part = if self.part.1 > 1 { format!(" part {}/{}", self.part.0, self.part.1) } else { String::new() };
        format!("{number} \"{}\"{part} (UID {})", self.description, self.series_uid)
    }
}

impl fmt::Display for SeriesInfo {
    /// One line of a listing: `#1  series 3  "Axial"  CT  512×512×300  0.70×0.70×2.50 mm  LPS`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = self.series_number.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        write!(f, "#{:<3} series {number:<5} \"{}\"  {}", self.index, self.description, self.modality)?;
        if !self.kind.is_scan() {
            write!(f, "  {} ({} file{})", self.kind.name(), self.files, if self.files == 1 { "" } else { "s" })?;
        } else {
            write!(f, "  {}×{}×{}", self.cols, self.rows, self.slices)?;
            if let Some(s) = self.spacing {
                write!(f, "  {:.2}×{:.2}×{:.2} mm", s[0], s[1], s[2])?;
            }
            if let Some(a) = &self.axcodes {
                write!(f, "  {a}")?;
            }
            if self.kind != SeriesKind::Image {
                write!(f, "  [{}]", self.kind.name())?;
            }
        }
        if self.part.1 > 1 {
            write!(f, "  part {}/{}", self.part.0, self.part.1)?;
        }
        if let Some(p) = &self.problem {
            write!(f, "  — cannot open: {p}")?;
        }
        write!(f, "  UID {}", self.series_uid)
    }
}

/// Which series of a folder to open (the CLI's `--series N|UID|#index`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SeriesChoice {
    /// The folder's only image series (localisers, secondary captures, non-image objects
    /// aside); refuses with the list when there are several. For a file: its own series.
    #[default]
    Only,
    /// By SeriesNumber (0020,0011).
    Number(i64),
    /// By SeriesInstanceUID (0020,000E).
    Uid(String),
    /// By 1-based position in [`list_series`]' listing: picks one part of a split series.
    Index(usize),
}

impl std::str::FromStr for SeriesChoice {
    type Err = String;
    /// `12` → number, `#3` → listing index, anything else with a dot → UID.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(i) = s.strip_prefix('#') {
            return i.parse().map(SeriesChoice::Index).map_err(|_| format!("'{s}': # must be followed by a listing index"));
        }
        if let Ok(n) = s.parse() {
            return Ok(SeriesChoice::Number(n));
        }
        if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return Ok(SeriesChoice::Uid(s.to_string()));
        }
        Err(format!("'{s}' is neither a series number, a SeriesInstanceUID nor #index"))
    }
}

impl fmt::Display for SeriesChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SeriesChoice::Only => write!(f, "the only image series"),
            SeriesChoice::Number(n) => write!(f, "--series {n}"),
            SeriesChoice::Uid(u) => write!(f, "--series {u}"),
            SeriesChoice::Index(i) => write!(f, "--series #{i}"),
        }
    }
}

/// Does `path` look like a DICOM Part 10 file (`DICM` at byte 128)?
pub fn is_dicom_file(path: &Path) -> bool {
    header::has_dicm_magic(path)
}

/// A DICOM object that holds labels for a series rather than a scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelObject {
    /// A DICOM Segmentation (BINARY, FRACTIONAL or LABELMAP): [`read_dicom_seg`].
    Seg,
    /// An RT structure set: [`open_rtstruct_labels`] draws it on its series.
    RtStruct,
}

impl LabelObject {
    pub fn name(&self) -> &'static str {
        match self {
            LabelObject::Seg => "DICOM SEG",
            LabelObject::RtStruct => "RTSTRUCT",
        }
    }
}

/// The segmentations and RT structure sets under `folder` (walked recursively), by path, and
/// how many other DICOM files it holds: what a data folder's case folder holds its labels in.
/// Reads headers only.
pub fn label_objects(folder: &Path) -> Result<(Vec<(std::path::PathBuf, LabelObject)>, usize), VolumeError> {
    let scan = scan::scan(folder, true).map_err(|e| VolumeError::new(folder, format!("cannot read the folder: {e}")))?;
    let labels: Vec<(std::path::PathBuf, LabelObject)> = scan.files.iter().filter_map(|h| Some((h.path.clone(), label_object_of(h)?))).collect();
    let others = scan.files.len() - labels.len();
    Ok((labels, others))
}

fn label_object_of(h: &header::FileHeader) -> Option<LabelObject> {
    if is_seg_sop_class(&h.sop_class) {
        Some(LabelObject::Seg)
    } else if h.sop_class == dicom_dictionary_std::uids::RT_STRUCTURE_SET_STORAGE || h.modality == "RTSTRUCT" {
        Some(LabelObject::RtStruct)
    } else {
        None
    }
}

/// Which labels object a DICOM file is, from its header (`None`: neither a SEG nor an RT
/// structure set, or not readable as DICOM).
pub fn label_object_kind(path: &Path) -> Option<LabelObject> {
    label_object_of(&header::read_header(path).ok()??)
}

/// The series under `path` (a folder, walked recursively, or the folder of a file), in the
/// order `#index` counts them; unreadable DICOM files are logged and skipped.
pub fn list_series(path: &Path) -> Result<Vec<SeriesInfo>, VolumeError> {
    let (scan, parts) = scan_and_group(path)?;
    Ok(parts.iter().enumerate().map(|(i, p)| series::info(&scan, p, i + 1)).collect())
}

/// Opens one series under `path` as a volume. A folder is walked recursively; a file opens its
/// own series among the files of its folder (or the series `choice` names there).
pub fn open_series(path: &Path, choice: &SeriesChoice) -> Result<Volume, VolumeError> {
    let (scan, parts) = scan_and_group(path)?;
    let infos: Vec<SeriesInfo> = parts.iter().enumerate().map(|(i, p)| series::info(&scan, p, i + 1)).collect();
    let chosen = if path.is_file() && *choice == SeriesChoice::Only {
        own_series(path, &scan, &parts, &infos)?
    } else {
        choose(path, &infos, choice)?
    };
    build(path, &scan, &parts[chosen], &infos[chosen])
}

fn scan_and_group(path: &Path) -> Result<(Scan, Vec<Part>), VolumeError> {
    let (root, recursive) = if path.is_dir() {
        (path.to_path_buf(), true)
    } else {
        if !is_dicom_file(path) {
            return Err(VolumeError::new(path, "is not a DICOM file (no DICM magic at byte 128)"));
        }
        // The file's own header first, so a broken file says why.
        header::read_header(path).map_err(|e| VolumeError::new(path, e))?;
        (path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(), false)
    };
    let scan = scan::scan(&root, recursive).map_err(|e| VolumeError::new(&root, format!("cannot read the folder: {e}")))?;
    if scan.files.is_empty() {
        let extra = if scan.unreadable.is_empty() { String::new() } else { format!(" ({} unreadable)", scan.unreadable.len()) };
        return Err(VolumeError::new(path, format!("no DICOM files found{extra}")));
    }
    let parts = series::group(&scan);
    Ok((scan, parts))
}

/// The part holding `file`'s first frame.
fn own_series(file: &Path, scan: &Scan, parts: &[Part], infos: &[SeriesInfo]) -> Result<usize, VolumeError> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let me = canon(file);
    let fi = scan.files.iter().position(|h| canon(&h.path) == me).ok_or_else(|| VolumeError::new(file, "not found among its folder's DICOM files"))?;
    let i = parts.iter().position(|p| p.frames.iter().any(|f| f.0 == fi)).ok_or_else(|| VolumeError::new(file, "belongs to no series"))?;
    if infos[i].kind == SeriesKind::Segmentation {
        return Err(VolumeError::new(file, "is a DICOM Segmentation, a label map: open it as labels (--labels), on the series it was drawn on"));
    }
    if infos[i].kind == SeriesKind::NonImage {
        return Err(VolumeError::new(file, format!("is a non-image object ({}): nothing to show", infos[i].sop_class)));
    }
    if infos[i].part.1 > 1 {
        log::warn!("{}: {} mixes orientations or sizes; opening the part this file belongs to", file.display(), infos[i].label());
    }
    Ok(i)
}

/// Resolves a choice to one listing entry, or refuses with the list.
fn choose(path: &Path, infos: &[SeriesInfo], choice: &SeriesChoice) -> Result<usize, VolumeError> {
    let listing = |head: String| {
        let lines: Vec<String> = infos.iter().map(|s| format!("  {s}")).collect();
        VolumeError::new(path, format!("{head}:\n{}", lines.join("\n")))
    };
    let mut candidates: Vec<&SeriesInfo> = match choice {
        SeriesChoice::Index(i) => {
            let s = infos.get(i.wrapping_sub(1)).ok_or_else(|| listing(format!("there is no {choice}; the series are")))?;
            if !s.kind.is_scan() {
                return Err(VolumeError::new(path, format!("{} is a {} object ({}): nothing to open as a volume", s.label(), s.kind.name(), s.sop_class)));
            }
            return Ok(s.index - 1);
        }
        SeriesChoice::Only => infos.iter().collect(),
        SeriesChoice::Number(n) => infos.iter().filter(|s| s.series_number == Some(*n)).collect(),
        SeriesChoice::Uid(u) => infos.iter().filter(|s| s.series_uid == *u).collect(),
    };
    if candidates.is_empty() {
        return Err(listing(format!("no series matches {choice}; the series are")));
    }
    // Localisers and secondary captures only when nothing else matches; non-image objects and
    // segmentations never.
    if candidates.iter().any(|s| s.kind == SeriesKind::Image) {
        candidates.retain(|s| s.kind == SeriesKind::Image);
    } else {
        candidates.retain(|s| s.kind.is_scan());
    }
    if candidates.is_empty() {
        return Err(listing("holds no image series, only".to_string()));
    }
    let mut uids: Vec<&str> = candidates.iter().map(|s| s.series_uid.as_str()).collect();
    uids.dedup();
    if uids.len() > 1 {
        let head = match choice {
            SeriesChoice::Only => format!(
                "holds {} image series; pick one with --series NUMBER, --series UID or --series #INDEX",
                uids.len()
            ),
            _ => format!("{} series match {choice}; pick one by UID or #INDEX", uids.len()),
        };
        return Err(listing(head));
    }
    if candidates.len() > 1 {
        let parts: Vec<String> = candidates.iter().map(|s| format!("  {s}")).collect();
        return Err(VolumeError::new(
            path,
            format!(
                "{} mixes orientations or sizes in one series ({} parts); open one part with --series #INDEX:\n{}",
                candidates[0].label(),
                candidates.len(),
                parts.join("\n")
            ),
        ));
    }
    Ok(candidates[0].index - 1)
}

/// Decodes a chosen part into a volume.
fn build(path: &Path, scan: &Scan, part: &Part, info: &SeriesInfo) -> Result<Volume, VolumeError> {
    let fail = |problem: String| VolumeError::new(path, format!("{}: {problem}", info.label()));
    if let Some(p) = &info.problem
        && info.part.1 == 1
    {
        return Err(fail(p.clone()));
    }
    let geom = series::part_geometry(scan, part).map_err(fail)?;
    for w in &geom.warnings {
        log::warn!("{}: {}: {w}", path.display(), info.label());
    }
    let first = part.first_file(scan);
    let fmt = first.pixels.clone().ok_or_else(|| fail("has no pixel data".into()))?;
    pixels::check_format(&fmt).map_err(fail)?;
    for &(fi, _) in &part.frames {
        let h = &scan.files[fi];
        if h.pixels.as_ref() != Some(&fmt) {
            return Err(fail(format!("{} stores its pixels differently from {} (mixed pixel formats)", stack::short(&h.path), stack::short(&first.path))));
        }
        pixels::check_transfer_syntax(&h.transfer_syntax).map_err(|e| fail(format!("{}: {e}", stack::short(&h.path))))?;
    }
    let frames = part.frame_refs(scan);
    let sorted: Vec<_> = geom.order.iter().map(|&o| frames[o]).collect();
    let data = pixels::decode_stack(&scan.files, &sorted, &fmt).map_err(|(fi, e)| fail(format!("{}: {e}", stack::short(&scan.files[fi].path))))?;
    geom.ras_from_voxel.try_inverse().map_err(|e| fail(e.to_string()))?;
    let meta = VolumeMeta {
        source: Some(path.to_path_buf()),
        dtype: Some(dtype_of(&sorted, &data)),
        affine_source: Some(AffineSource::Dicom),
        description: match info.series_number {
            Some(n) => format!("series {n}: {}", info.description),
            None => info.description.clone(),
        },
        window: first.window,
    };
    Ok(Volume { data, ras_from_voxel: geom.ras_from_voxel, meta })
}

/// The datatype that holds the real values exactly: the smallest integer type that holds
/// the volume's range when every frame's rescale is an integer map (slope 1, whole intercept),
/// else float32.
fn dtype_of(frames: &[&header::Frame], data: &ndarray::Array3<f32>) -> DataType {
    let whole = frames.iter().all(|f| f.slope == 1.0 && f.intercept.fract() == 0.0);
    if !whole {
        return DataType::Float32;
    }
    let s = super::stats_of(data.as_slice_memory_order().unwrap_or(&[]));
    let fits = |a: f64, b: f64| s.min >= a && s.max <= b;
    if fits(0.0, 255.0) {
        DataType::Uint8
    } else if fits(-32768.0, 32767.0) {
        DataType::Int16
    } else if fits(0.0, 65535.0) {
        DataType::Uint16
    } else {
        DataType::Float32
    }
}
