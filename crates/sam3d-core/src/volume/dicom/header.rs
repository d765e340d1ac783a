//! What one DICOM file says about itself, read up to (not including) its pixel data: the
//! series it belongs to, its pixel format and, per frame, its plane, position and rescale.
//! Multi-frame enhanced objects keep these in functional groups (per-frame first, then shared,
//! PS3.3 C.7.6.16), which are resolved here so the rest of the reader sees plain frames.

use crate::geometry::{DicomPlane, LpsMm};
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemDicomObject;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use nalgebra::Vector3;
use std::path::{Path, PathBuf};

/// The pixel format of an image object (from its header; checked again after decoding).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PixelFormat {
    pub rows: usize,
    pub cols: usize,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub high_bit: u16,
    pub signed: bool,
    pub photometric: String,
}

impl PixelFormat {
    /// Bytes of one native (uncompressed) frame.
    /// Bytes of one native frame; 1-bit frames (DICOM SEG) are packed, eight pixels a byte.
    pub fn frame_bytes(&self) -> u64 {
        let samples = self.rows as u64 * self.cols as u64 * self.samples_per_pixel as u64;
        if self.bits_allocated == 1 { samples.div_ceil(8) } else { samples * (self.bits_allocated as u64).div_ceil(8) }
    }
}

/// One frame of a file: where it is and how its stored values become real values.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    /// Index of the file in the scan.
    pub file: usize,
    /// Frame number inside the file (0 for single-frame objects).
    pub number: u32,
    pub plane: Option<DicomPlane>,
    /// PixelSpacing `[rows, columns]` (else ImagerPixelSpacing, else 1 mm), for frames without
    /// an orientation (their `plane` is `None`).
    pub pixel_spacing: [f64; 2],
    pub position: Option<LpsMm>,
    pub slope: f64,
    pub intercept: f64,
}

/// The header of one DICOM file.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileHeader {
    pub path: PathBuf,
    pub transfer_syntax: String,
    pub sop_class: String,
    /// SOPInstanceUID: what a derived object (a DICOM SEG) references per slice.
    pub sop_instance_uid: String,
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference: String,
    pub patient_name: String,
    pub patient_id: String,
    pub study_date: String,
    /// Patient and study attributes a derived object in the same study copies.
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician: String,
    pub series_number: Option<i64>,
    pub description: String,
    pub modality: String,
    pub image_type: Vec<String>,
    /// `None` for objects without an image (reports, plans, structure sets, …).
    pub pixels: Option<PixelFormat>,
    pub number_of_frames: u32,
    pub window: Option<(f64, f64)>,
    /// SpacingBetweenSlices, else SliceThickness: the step between the frames of a multi-frame
    /// object without per-frame positions.
    pub slice_step: Option<f64>,
    /// SpacingBetweenSlices alone: the step of a single slice (as ITK/GDCM; else 1 mm).
    pub spacing_between_slices: Option<f64>,
    /// Per-frame geometry and rescale (file index left 0; the scan sets it).
    pub frames: Vec<Frame>,
}

impl FileHeader {
    pub fn is_localizer(&self) -> bool {
        self.image_type.iter().any(|t| t.trim().eq_ignore_ascii_case("LOCALIZER"))
    }
    /// Secondary capture (single- or multi-frame SC SOP classes): screenshots, reports.
    pub fn is_secondary_capture(&self) -> bool {
        self.sop_class.starts_with(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
    }
}

/// Reads a file's header (stops at the pixel data). `None` if the file is not DICOM (no
/// `DICM` at byte 128); an error naming the problem if it is DICOM but unreadable.
pub(crate) fn read_header(path: &Path) -> Result<Option<FileHeader>, String> {
    if !has_dicm_magic(path) {
        return Ok(None);
    }
    // Before the parser trusts a length field with an allocation.
    super::lengths::check_lengths(path).map_err(|e| format!("not a readable DICOM file: {e}"))?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| format!("not a readable DICOM file: {e}"))?;
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    header_of(&obj, path, file_len).map(Some)
}

/// Does the file carry the DICOM Part 10 preamble magic? (Files without it, rare and
/// ambiguous, are not DICOM to this reader.)
pub(crate) fn has_dicm_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 132];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && &head[128..132] == b"DICM"
}

pub(crate) fn header_of(obj: &DefaultDicomObject, path: &Path, file_len: u64) -> Result<FileHeader, String> {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0').to_string();
    let mut h = FileHeader {
        path: path.to_path_buf(),
        transfer_syntax: ts.clone(),
        sop_class: string(obj, tags::SOP_CLASS_UID).unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string()),
        sop_instance_uid: string(obj, tags::SOP_INSTANCE_UID).unwrap_or_else(|| obj.meta().media_storage_sop_instance_uid().trim_end_matches('\0').to_string()),
        study_uid: string(obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
        series_uid: string(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        frame_of_reference: string(obj, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default(),
        patient_name: string(obj, tags::PATIENT_NAME).unwrap_or_default(),
        patient_id: string(obj, tags::PATIENT_ID).unwrap_or_default(),
        study_date: string(obj, tags::STUDY_DATE).unwrap_or_default(),
        patient_birth_date: string(obj, tags::PATIENT_BIRTH_DATE).unwrap_or_default(),
        patient_sex: string(obj, tags::PATIENT_SEX).unwrap_or_default(),
        study_time: string(obj, tags::STUDY_TIME).unwrap_or_default(),
        study_id: string(obj, tags::STUDY_ID).unwrap_or_default(),
        accession_number: string(obj, tags::ACCESSION_NUMBER).unwrap_or_default(),
        referring_physician: string(obj, tags::REFERRING_PHYSICIAN_NAME).unwrap_or_default(),
        series_number: string(obj, tags::SERIES_NUMBER).and_then(|s| s.parse::<f64>().ok()).map(|x| x as i64),
        description: string(obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
        modality: string(obj, tags::MODALITY).unwrap_or_default(),
        image_type: strings(obj, tags::IMAGE_TYPE),
        slice_step: float(obj, tags::SPACING_BETWEEN_SLICES).or_else(|| float(obj, tags::SLICE_THICKNESS)).filter(|s| *s > 0.0),
        spacing_between_slices: float(obj, tags::SPACING_BETWEEN_SLICES).filter(|s| *s > 0.0),
        ..FileHeader::default()
    };
    let (Some(rows), Some(cols)) = (int(obj, tags::ROWS), int(obj, tags::COLUMNS)) else {
        return Ok(h); // not an image
    };
    if rows <= 0 || cols <= 0 {
        return Err(format!("Rows × Columns is {rows} × {cols}"));
    }
    let bits_allocated = int(obj, tags::BITS_ALLOCATED).unwrap_or(16) as u16;
    let bits_stored = int(obj, tags::BITS_STORED).map(|b| b as u16).unwrap_or(bits_allocated);
    let fmt = PixelFormat {
        rows: rows as usize,
        cols: cols as usize,
        samples_per_pixel: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        bits_allocated,
        bits_stored,
        high_bit: int(obj, tags::HIGH_BIT).map(|b| b as u16).unwrap_or(bits_stored.saturating_sub(1)),
        signed: int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
        photometric: string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into()),
    };
    let nframes = string(obj, tags::NUMBER_OF_FRAMES).and_then(|s| s.parse::<u32>().ok()).unwrap_or(1).max(1);
    // No allocation below is sized by NumberOfFrames until it is checked against the file:
    // native frames must fit in it (deflated ones in 1032 times it, deflate's largest ratio),
    // and an encapsulated frame takes at least one byte.
    let (need, have) = match ts.as_str() {
        DEFLATED => (nframes as u64 * fmt.frame_bytes(), file_len.saturating_mul(1032)),
        t if is_native(t) => (nframes as u64 * fmt.frame_bytes(), file_len),
        _ => (nframes as u64, file_len),
    };
    if need > have {
        return Err(format!(
            "NumberOfFrames {nframes} of {} × {} pixels needs {need} bytes, the file has {file_len}",
            fmt.cols, fmt.rows
        ));
    }
    h.number_of_frames = nframes;
    h.pixels = Some(fmt);
    h.window = window(obj);
    h.frames = frames(obj, nframes, h.slice_step)?;
    if h.window.is_none() {
        h.window = functional(obj, 0, tags::FRAME_VOILUT_SEQUENCE).and_then(window);
    }
    Ok(h)
}

/// Deflated Explicit VR Little Endian: native pixel data inside a deflated dataset.
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// Uncompressed transfer syntaxes (native pixel data stored as is): implicit/explicit little
/// endian, explicit big endian.
fn is_native(ts: &str) -> bool {
    matches!(ts, "1.2.840.10008.1.2" | "1.2.840.10008.1.2.1" | "1.2.840.10008.1.2.2")
}

/// The frames of an object. Enhanced objects: per-frame functional groups, then shared, then
/// the top level. Other multi-frame objects (classic NM/US/RT dose): the first frame at
/// ImagePositionPatient and the others along the normal by GridFrameOffsetVector, else by
/// SpacingBetweenSlices/SliceThickness.
fn frames(obj: &InMemDicomObject, nframes: u32, slice_step: Option<f64>) -> Result<Vec<Frame>, String> {
    let per_frame = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items());
    if let Some(items) = per_frame
        && items.len() != nframes as usize
    {
        return Err(format!("PerFrameFunctionalGroupsSequence has {} items for NumberOfFrames {nframes}", items.len()));
    }
    let top_plane = plane(obj, obj);
    let top_position = position(obj);
    let (top_slope, top_intercept) = rescale(obj).unwrap_or((1.0, 0.0));
    let offsets = obj.get(tags::GRID_FRAME_OFFSET_VECTOR).and_then(|e| e.to_multi_float64().ok()).filter(|o| o.len() == nframes as usize);
    let mut out = Vec::with_capacity(nframes as usize);
    for f in 0..nframes {
        let group = |seq: Tag| functional(obj, f, seq);
        let measures = group(tags::PIXEL_MEASURES_SEQUENCE).unwrap_or(obj);
        let plane = match (group(tags::PLANE_ORIENTATION_SEQUENCE), group(tags::PIXEL_MEASURES_SEQUENCE)) {
            (None, None) => top_plane,
            (o, _) => plane(o.unwrap_or(obj), measures),
        };
        let mut pos = group(tags::PLANE_POSITION_SEQUENCE).and_then(position);
        if pos.is_none()
            && let (Some(p0), Some(pl)) = (top_position, plane)
        {
            let along = match (&offsets, slice_step) {
                (Some(o), _) => o[f as usize] - o[0],
                (None, Some(s)) => s * f as f64,
                (None, None) if nframes == 1 => 0.0,
                (None, None) => f64::NAN, // no way to place the frames: the stack refuses
            };
            pos = along.is_finite().then(|| LpsMm::from_vec(p0.v + pl.normal().normalize() * along));
        }
        let (slope, intercept) = group(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).and_then(rescale).unwrap_or((top_slope, top_intercept));
        let pixel_spacing = pixel_spacing(measures);
        out.push(Frame { file: 0, number: f, plane, pixel_spacing, position: pos, slope, intercept });
    }
    Ok(out)
}

/// The first item of functional group `seq` for frame `f`: per-frame, else shared.
pub(crate) fn functional(obj: &InMemDicomObject, f: u32, seq: Tag) -> Option<&InMemDicomObject> {
    fn in_group(group: &InMemDicomObject, seq: Tag) -> Option<&InMemDicomObject> {
        group.get(seq).and_then(|e| e.items()).and_then(|i| i.first())
    }
    let per = obj.get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|i| i.get(f as usize));
    let shared = obj.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|e| e.items()).and_then(|i| i.first());
    per.and_then(|g| in_group(g, seq)).or_else(|| shared.and_then(|g| in_group(g, seq)))
}

fn plane(orientation: &InMemDicomObject, measures: &InMemDicomObject) -> Option<DicomPlane> {
    let iop = floats(orientation, tags::IMAGE_ORIENTATION_PATIENT)?;
    let iop: [f64; 6] = iop.get(..6)?.try_into().ok()?;
    iop.iter().all(|x| x.is_finite()).then(|| DicomPlane::new(iop, pixel_spacing(measures)))
}

/// PixelSpacing; localisers and some secondary captures have none: ImagerPixelSpacing, else
/// 1 mm (as ITK does). The listing shows the spacing used.
fn pixel_spacing(measures: &InMemDicomObject) -> [f64; 2] {
    let ps = floats(measures, tags::PIXEL_SPACING).or_else(|| floats(measures, tags::IMAGER_PIXEL_SPACING)).unwrap_or_default();
    match ps.as_slice() {
        [a, b, ..] if *a > 0.0 && *b > 0.0 => [*a, *b],
        _ => [1.0, 1.0],
    }
}

fn position(obj: &InMemDicomObject) -> Option<LpsMm> {
    let p = floats(obj, tags::IMAGE_POSITION_PATIENT)?;
    match p.as_slice() {
        [x, y, z, ..] if [x, y, z].iter().all(|c| c.is_finite()) => Some(LpsMm::from_vec(Vector3::new(*x, *y, *z))),
        _ => None,
    }
}

fn rescale(obj: &InMemDicomObject) -> Option<(f64, f64)> {
    let slope = float(obj, tags::RESCALE_SLOPE);
    let intercept = float(obj, tags::RESCALE_INTERCEPT);
    (slope.is_some() || intercept.is_some()).then(|| (slope.filter(|s| *s != 0.0).unwrap_or(1.0), intercept.unwrap_or(0.0)))
}

fn window(obj: &InMemDicomObject) -> Option<(f64, f64)> {
    let c = floats(obj, tags::WINDOW_CENTER)?.first().copied()?;
    let w = floats(obj, tags::WINDOW_WIDTH)?.first().copied()?;
    (c.is_finite() && w.is_finite() && w > 0.0).then_some((c, w))
}

pub(crate) fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    obj.get(tag).and_then(|e| e.to_multi_str().ok()).map(|v| v.iter().map(|s| s.trim().to_string()).collect()).unwrap_or_default()
}

pub(crate) fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    obj.get(tag)?.to_float64().ok().filter(|x| x.is_finite())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.get(tag)?.to_multi_float64().ok().filter(|v| !v.is_empty())
}
