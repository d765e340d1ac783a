//! A source series as a derived object must reference it: the study, series and frame of
//! reference UIDs, the patient, and the SOP instance (and frame) of every slice in slice
//! order (k = 0, 1, …), with the grid those slices make. Read from the headers only: no pixel
//! is decoded, so a DICOM SEG can be written against a series without reading it again.

use super::{SeriesChoice, SeriesInfo, VolumeError, choose, own_series, scan_and_group, series};
use crate::geometry::{GridShape, RasFromVoxel};
use std::path::{Path, PathBuf};

/// The instance one slice of the source series comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceSlice {
    pub sop_instance_uid: String,
    /// 1-based frame number inside a multi-frame instance; `None` for single-frame instances.
    pub frame_number: Option<u32>,
}

/// What a DICOM SEG copies from, and references in, its source series.
#[derive(Clone, Debug)]
pub struct SourceSeries {
    /// The path the series was found under (a folder or one of its files).
    pub path: PathBuf,
    pub info: SeriesInfo,
    pub study_uid: String,
    pub series_uid: String,
    pub frame_of_reference_uid: String,
    pub sop_class_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician: String,
    /// Slice k's instance, for k in slice order (as the volume reader orders them).
    pub slices: Vec<SourceSlice>,
    /// The grid the series opens as (what a label map on it must match).
    pub shape: GridShape,
    pub ras_from_voxel: RasFromVoxel,
}

/// The series under `path` that `choice` names (as [`super::open_series`] would open it),
/// described for referencing; refuses what `open_series` refuses about the geometry.
pub fn source_series(path: &Path, choice: &SeriesChoice) -> Result<SourceSeries, VolumeError> {
    let (scan, parts) = scan_and_group(path)?;
    let infos: Vec<SeriesInfo> = parts.iter().enumerate().map(|(i, p)| series::info(&scan, p, i + 1)).collect();
    let chosen = if path.is_file() && *choice == SeriesChoice::Only { own_series(path, &scan, &parts, &infos)? } else { choose(path, &infos, choice)? };
    let (part, info) = (&parts[chosen], &infos[chosen]);
    let geom = series::part_geometry(&scan, part).map_err(|p| VolumeError::new(path, format!("{}: {p}", info.label())))?;
    let frames = part.frame_refs(&scan);
    let slices = geom
        .order
        .iter()
        .map(|&o| {
            let f = frames[o];
            let h = &scan.files[f.file];
            SourceSlice { sop_instance_uid: h.sop_instance_uid.clone(), frame_number: (h.number_of_frames > 1).then_some(f.number + 1) }
        })
        .collect();
    let h = part.first_file(&scan);
    if h.sop_instance_uid.is_empty() || h.study_uid.is_empty() {
        return Err(VolumeError::new(path, format!("{}: no SOPInstanceUID or StudyInstanceUID to reference", info.label())));
    }
    Ok(SourceSeries {
        path: path.to_path_buf(),
        info: info.clone(),
        study_uid: h.study_uid.clone(),
        series_uid: part.series_uid.clone(),
        frame_of_reference_uid: h.frame_of_reference.clone(),
        sop_class_uid: h.sop_class.clone(),
        patient_name: h.patient_name.clone(),
        patient_id: h.patient_id.clone(),
        patient_birth_date: h.patient_birth_date.clone(),
        patient_sex: h.patient_sex.clone(),
        study_date: h.study_date.clone(),
        study_time: h.study_time.clone(),
        study_id: h.study_id.clone(),
        accession_number: h.accession_number.clone(),
        referring_physician: h.referring_physician.clone(),
        slices,
        shape: GridShape::new(info.cols, info.rows, part.frames.len()),
        ras_from_voxel: geom.ras_from_voxel,
    })
}
