//! Grouping a scan's frames into series: by SeriesInstanceUID and, within one, by frame of
//! reference, image size, orientation (and localiser flag). A SeriesInstanceUID that splits
//! into several parts mixes orientations or sizes: it is listed part by part and refused as a
//! whole. Objects without pixels (reports, plans, structure sets, presentation states) form a
//! non-image part of their series, and segmentations a segmentation part: listed, never opened
//! as a volume.

use super::header::{FileHeader, Frame};
use super::scan::Scan;
use super::stack::{StackGeometry, short, stack_geometry};
use super::{SeriesInfo, SeriesKind};
use crate::geometry::{DicomPlane, axcodes};

/// Orientation cosines closer than this (max abs difference) are the same orientation.
const SAME_ORIENTATION: f64 = 1e-4;
/// Pixel spacings closer than this (relative) are the same.
const SAME_SPACING: f64 = 1e-4;

/// One series (or one part of a series that mixes orientations or sizes).
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub series_uid: String,
    /// `(file index, frame index in that file's header)`.
    pub frames: Vec<(usize, usize)>,
    pub kind: SeriesKind,
    /// This part's number among its series' parts (1-based) and how many there are.
    pub part: (usize, usize),
}

impl Part {
    pub fn first_file<'a>(&self, scan: &'a Scan) -> &'a FileHeader {
        &scan.files[self.frames[0].0]
    }
    pub fn frame_refs<'a>(&self, scan: &'a Scan) -> Vec<&'a Frame> {
        self.frames.iter().map(|&(f, n)| &scan.files[f].frames[n]).collect()
    }
    /// How many distinct files the part has.
    pub fn file_count(&self) -> usize {
        let mut files: Vec<usize> = self.frames.iter().map(|f| f.0).collect();
        files.dedup();
        files.len()
    }
}

fn same_plane(a: &Option<DicomPlane>, b: &Option<DicomPlane>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            (a.row_dir - b.row_dir).amax() <= SAME_ORIENTATION
                && (a.col_dir - b.col_dir).amax() <= SAME_ORIENTATION
                && (0..2).all(|d| (a.pixel_spacing[d] - b.pixel_spacing[d]).abs() <= SAME_SPACING * a.pixel_spacing[d])
        }
        _ => false,
    }
}

fn kind_of(h: &FileHeader) -> SeriesKind {
    if super::is_seg_sop_class(&h.sop_class) {
        SeriesKind::Segmentation
    } else if h.pixels.is_none() {
        SeriesKind::NonImage
    } else if h.is_localizer() {
        SeriesKind::Localizer
    } else if h.is_secondary_capture() {
        SeriesKind::SecondaryCapture
    } else {
        SeriesKind::Image
    }
}

/// Groups the frames of a scan into parts, in a stable order (series number, UID, part).
pub(crate) fn group(scan: &Scan) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    for (fi, h) in scan.files.iter().enumerate() {
        let kind = kind_of(h);
        if !kind.is_scan() {
            match parts.iter_mut().find(|p| p.kind == kind && p.series_uid == h.series_uid) {
                Some(p) => p.frames.push((fi, usize::MAX)),
                None => parts.push(Part { series_uid: h.series_uid.clone(), frames: vec![(fi, usize::MAX)], kind, part: (1, 1) }),
            }
            continue;
        }
        for (ni, frame) in h.frames.iter().enumerate() {
            let fits = |p: &Part| {
                let (pf, pn) = p.frames[0];
                let other = &scan.files[pf];
                p.kind == kind
                    && p.series_uid == h.series_uid
                    && other.frame_of_reference == h.frame_of_reference
                    && other.pixels.as_ref().map(|x| (x.rows, x.cols)) == h.pixels.as_ref().map(|x| (x.rows, x.cols))
                    && same_plane(&other.frames[pn].plane, &frame.plane)
            };
            match parts.iter_mut().find(|p| fits(p)) {
                Some(p) => p.frames.push((fi, ni)),
                None => parts.push(Part { series_uid: h.series_uid.clone(), frames: vec![(fi, ni)], kind, part: (1, 1) }),
            }
        }
    }
    parts.sort_by(|a, b| {
        let (ha, hb) = (a.first_file(scan), b.first_file(scan));
        (ha.series_number.unwrap_or(i64::MAX), &a.series_uid, !a.kind.is_scan())
            .cmp(&(hb.series_number.unwrap_or(i64::MAX), &b.series_uid, !b.kind.is_scan()))
    });
    // Number the parts of each image series that split (non-image parts are not counted).
    let image_parts = |uid: &str, parts: &[Part]| parts.iter().filter(|p| p.series_uid == uid && p.kind.is_scan()).count();
    let mut seen: Vec<(String, usize)> = Vec::new();
    for i in 0..parts.len() {
        if !parts[i].kind.is_scan() {
            continue;
        }
        let total = image_parts(&parts[i].series_uid, &parts);
        let n = match seen.iter_mut().find(|s| s.0 == parts[i].series_uid) {
            Some(s) => {
                s.1 += 1;
                s.1
            }
            None => {
                seen.push((parts[i].series_uid.clone(), 1));
                1
            }
        };
        parts[i].part = (n, total);
    }
    parts
}

/// The geometry of an image part, or why it has none.
pub(crate) fn part_geometry(scan: &Scan, part: &Part) -> Result<StackGeometry, String> {
    let frames = part.frame_refs(scan);
    let file_of = |f: &Frame| {
        let h = &scan.files[f.file];
        if h.number_of_frames > 1 { format!("{} frame {}", short(&h.path), f.number + 1) } else { short(&h.path) }
    };
    stack_geometry(&frames, &file_of, part.first_file(scan).spacing_between_slices)
}

/// What the listing says about a part.
pub(crate) fn info(scan: &Scan, part: &Part, index: usize) -> SeriesInfo {
    let h = part.first_file(scan);
    let mut s = SeriesInfo {
        index,
        patient_name: h.patient_name.replace('^', " ").trim().to_string(),
        patient_id: h.patient_id.clone(),
        study_date: h.study_date.clone(),
        series_number: h.series_number,
        description: h.description.clone(),
        modality: h.modality.clone(),
        series_uid: part.series_uid.clone(),
        frame_of_reference_uid: h.frame_of_reference.clone(),
        kind: part.kind,
        sop_class: h.sop_class.clone(),
        files: part.file_count(),
        part: part.part,
        ..SeriesInfo::default()
    };
    if !part.kind.is_scan() {
        return s;
    }
    if let Some(px) = &h.pixels {
        s.rows = px.rows;
        s.cols = px.cols;
    }
    s.slices = part.frames.len();
    s.transfer_syntax = super::pixels::transfer_syntax_name(&h.transfer_syntax);
    match part_geometry(scan, part) {
        Ok(g) => {
            s.spacing = Some(g.spacing);
            s.axcodes = Some(axcodes(&g.ras_from_voxel).iter().collect());
            s.warnings = g.warnings;
        }
        Err(e) => s.problem = Some(e),
    }
    if part.part.1 > 1 {
        s.problem.get_or_insert_with(|| format!("its series mixes orientations or sizes; --series #{index} opens this part alone"));
    }
    s
}
