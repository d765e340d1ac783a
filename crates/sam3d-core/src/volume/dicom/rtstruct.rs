//! DICOM RT Structure Set in: the ROIs (StructureSetROISequence: number, name), their display
//! colours and contours (ROIContourSequence → ContourSequence, CLOSED_PLANAR polygons in LPS
//! mm), and what the set was drawn on (ReferencedFrameOfReferenceSequence: the frame of
//! reference and the referenced series). Rasterising the contours on a grid is `rasterise.rs`.
//!
//! A contour that cannot be drawn (fewer than 3 points, coordinates that are not finite
//! numbers, ContourData that is not a multiple of 3 values, a geometric type other than
//! CLOSED_PLANAR) is left out with a warning naming the file, the ROI and the contour; a file
//! that is not a readable structure set is an error naming the file. Nothing here is sized
//! by a header field: every list grows from the values actually read.

use super::stack::short;
use super::{VolumeError, is_dicom_file};
use crate::geometry::LpsMm;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::OpenFileOptions;
use dicom_object::mem::InMemDicomObject;
use std::path::{Path, PathBuf};

/// One planar polygon of an ROI, in LPS mm, as stored (closed: the last point joins the first).
#[derive(Clone, Debug, PartialEq)]
pub struct Contour {
    pub points: Vec<LpsMm>,
}

/// One region of interest of a structure set.
#[derive(Clone, Debug, PartialEq)]
pub struct Roi {
    /// ROINumber (3006,0022).
    pub number: i64,
    /// ROIName (3006,0026); `ROI <number>` when it has none.
    pub name: String,
    /// ROIDisplayColor (3006,002A), when present and three values.
    pub colour: Option<[u8; 3]>,
    /// ReferencedFrameOfReferenceUID (3006,0024) of this ROI.
    pub frame_of_reference_uid: Option<String>,
    /// The CLOSED_PLANAR contours that can be drawn, in file order.
    pub contours: Vec<Contour>,
}

impl Roi {
    /// `ROI 3 "Liver"`, for messages.
    pub fn label(&self) -> String {
        format!("ROI {} \"{}\"", self.number, self.name)
    }
}

/// A structure set as read.
#[derive(Clone, Debug, Default)]
pub struct RtStruct {
    pub path: PathBuf,
    /// In StructureSetROISequence order: label k + 1 is `rois[k]`.
    pub rois: Vec<Roi>,
    /// The SeriesInstanceUID the set references (the first RTReferencedSeriesSequence item).
    pub referenced_series_uid: Option<String>,
    /// The FrameOfReferenceUID the set references (ReferencedFrameOfReferenceSequence, else
    /// the ROIs' own).
    pub frame_of_reference_uid: Option<String>,
    pub structure_set_label: String,
    /// What was left out, each naming the file and the ROI.
    pub warnings: Vec<String>,
}

/// Reads an RT structure set. Errors name the file: not DICOM, unreadable or truncated, not
/// an RT structure set, or no StructureSetROISequence.
pub fn read_rtstruct(path: &Path) -> Result<RtStruct, VolumeError> {
    if !is_dicom_file(path) {
        return Err(VolumeError::new(path, "is not a DICOM file (no DICM magic at byte 128)"));
    }
    let obj = OpenFileOptions::new().open_file(path).map_err(|e| VolumeError::new(path, format!("not a readable DICOM file: {e}")))?;
    let sop_class = string(&obj, tags::SOP_CLASS_UID).unwrap_or_default();
    let modality = string(&obj, tags::MODALITY).unwrap_or_default();
    if sop_class != uids::RT_STRUCTURE_SET_STORAGE && modality != "RTSTRUCT" {
        return Err(VolumeError::new(path, format!("is not an RT structure set (SOP class {sop_class}, modality {modality})")));
    }
    let file = short(path);
    let mut rt = RtStruct {
        path: path.to_path_buf(),
        structure_set_label: string(&obj, tags::STRUCTURE_SET_LABEL).unwrap_or_default(),
        ..RtStruct::default()
    };
    let rois = items(&obj, tags::STRUCTURE_SET_ROI_SEQUENCE).ok_or_else(|| VolumeError::new(path, "has no StructureSetROISequence"))?;
    for (n, item) in rois.iter().enumerate() {
        let Some(number) = int(item, tags::ROI_NUMBER) else {
            rt.warnings.push(format!("{file}: StructureSetROISequence item {} has no ROINumber; left out", n + 1));
            continue;
        };
        if rt.rois.iter().any(|r| r.number == number) {
            rt.warnings.push(format!("{file}: ROINumber {number} appears twice; the second is left out"));
            continue;
        }
        let name = string(item, tags::ROI_NAME).unwrap_or_else(|| format!("ROI {number}"));
        let frame_of_reference_uid = string(item, tags::REFERENCED_FRAME_OF_REFERENCE_UID);
        rt.rois.push(Roi { number, name, colour: None, frame_of_reference_uid, contours: Vec::new() });
    }
    for (n, item) in items(&obj, tags::ROI_CONTOUR_SEQUENCE).unwrap_or(&[]).iter().enumerate() {
        let Some(roi) = int(item, tags::REFERENCED_ROI_NUMBER).and_then(|r| rt.rois.iter_mut().find(|x| x.number == r)) else {
            rt.warnings.push(format!("{file}: ROIContourSequence item {} references no ROI of the StructureSetROISequence; left out", n + 1));
            continue;
        };
        roi.colour = colour(item);
        let label = roi.label();
        for (c, contour) in items(item, tags::CONTOUR_SEQUENCE).unwrap_or(&[]).iter().enumerate() {
            match read_contour(contour) {
                Ok(points) => roi.contours.push(Contour { points }),
                Err(why) => rt.warnings.push(format!("{file}: {label} contour {}: {why}; left out", c + 1)),
            }
        }
    }
    for roi in rt.rois.iter().filter(|r| r.contours.is_empty()) {
        rt.warnings.push(format!("{file}: {} has no contour to draw; its label stays empty", roi.label()));
    }
    let refs = items(&obj, tags::REFERENCED_FRAME_OF_REFERENCE_SEQUENCE).unwrap_or(&[]);
    rt.frame_of_reference_uid = refs.iter().find_map(|r| string(r, tags::FRAME_OF_REFERENCE_UID)).or_else(|| rt.rois.iter().find_map(|r| r.frame_of_reference_uid.clone()));
    rt.referenced_series_uid = refs
        .iter()
        .flat_map(|r| items(r, tags::RT_REFERENCED_STUDY_SEQUENCE).unwrap_or(&[]))
        .flat_map(|s| items(s, tags::RT_REFERENCED_SERIES_SEQUENCE).unwrap_or(&[]))
        .find_map(|s| string(s, tags::SERIES_INSTANCE_UID));
    Ok(rt)
}

/// The points of one ContourSequence item, or why it cannot be drawn.
fn read_contour(item: &InMemDicomObject) -> Result<Vec<LpsMm>, String> {
    let kind = string(item, tags::CONTOUR_GEOMETRIC_TYPE).unwrap_or_default();
    if kind != "CLOSED_PLANAR" {
        return Err(format!("geometric type '{kind}' is not CLOSED_PLANAR"));
    }
    let data = item.get(tags::CONTOUR_DATA).ok_or("has no ContourData")?;
    let values = data.to_multi_float64().map_err(|e| format!("ContourData is not numbers ({e})"))?;
    if values.len() % 3 != 0 {
        return Err(format!("ContourData has {} values, not a multiple of 3", values.len()));
    }
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        return Err(format!("point {} has a coordinate that is not a finite number ({})", bad / 3 + 1, values[bad]));
    }
    let points: Vec<LpsMm> = values.chunks_exact(3).map(|p| LpsMm::new(p[0], p[1], p[2])).collect();
    if points.len() < 3 {
        return Err(format!("{} point(s): a polygon needs 3", points.len()));
    }
    if let Some(declared) = int(item, tags::NUMBER_OF_CONTOUR_POINTS)
        && declared != points.len() as i64
    {
        log::debug!("NumberOfContourPoints {declared} but ContourData holds {} points; the data is used", points.len());
    }
    Ok(points)
}

fn colour(item: &InMemDicomObject) -> Option<[u8; 3]> {
    let v = item.get(tags::ROI_DISPLAY_COLOR)?.to_multi_int::<i64>().ok()?;
    match v.as_slice() {
        [r, g, b] => Some([*r, *g, *b].map(|c| c.clamp(0, 255) as u8)),
        _ => None,
    }
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.get(tag).and_then(|e| e.items())
}

fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = obj.get(tag)?.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}
