//! A label map out as a DICOM Segmentation (binary, PS3.3 A.51), as highdicom writes one:
//! one segment per label present (numbered 1, 2, … in label order), only the frames that hold
//! a segment (one frame per segment and slice), each frame placed by PlanePositionSequence and
//! tied to its segment by SegmentIdentificationSequence and to its source slice by
//! DerivationImageSequence; orientation and pixel measures shared; the source series named in
//! ReferencedSeriesSequence and its study, patient and frame of reference copied. The label
//! map must lie on the source series' grid (frames are the source's slices). Written through a
//! temporary file and a rename.

use super::seg_values::{cielab_value, ds, lo, now_da_tm};
use super::source::SourceSeries;
use super::uid::new_uid;
use crate::geometry::{VoxelIjk, lps_from_ras};
use crate::volume::label_names::LabelNames;
use crate::volume::{LabelMap, VolumeError, atomic_write};
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::meta::FileMetaTableBuilder;
use std::path::Path;

/// What was written.
#[derive(Clone, Debug, PartialEq)]
pub struct SegSummary {
    /// (SegmentNumber, label value, SegmentLabel) per segment.
    pub segments: Vec<(u16, u16, String)>,
    /// NumberOfFrames: one per segment and slice it appears on.
    pub frames: usize,
    pub sop_instance_uid: String,
    pub series_uid: String,
}

/// Writes `labels` (on `source`'s grid) as a binary DICOM SEG at `path`. Segment labels come
/// from `names` (else `label N`), RecommendedDisplayCIELabValue from their colours. Refuses
/// a label map off the source's grid or without any label.
pub fn write_dicom_seg(path: &Path, labels: &LabelMap, names: &LabelNames, source: &SourceSeries) -> Result<SegSummary, VolumeError> {
    labels.check_matches(source, path)?;
    let present: Vec<u16> = labels.counts().into_iter().map(|(l, _)| l).collect();
    if present.is_empty() {
        return Err(VolumeError::new(path, "the label map is empty: a DICOM SEG needs at least one segment"));
    }
    let [nk, nj, ni] = [labels.data.shape()[0], labels.data.shape()[1], labels.data.shape()[2]];
    if source.slices.len() != nk {
        return Err(VolumeError::new(path, format!("the source series has {} slices, the label map {nk}", source.slices.len())));
    }
    let (rows, cols) = (u16::try_from(nj), u16::try_from(ni));
    let (Ok(rows), Ok(cols)) = (rows, cols) else {
        return Err(VolumeError::new(path, format!("{ni} × {nj} pixels: a DICOM frame holds at most 65535 × 65535")));
    };
    let lps = lps_from_ras() * labels.ras_from_voxel;
    let lin = lps.linear();
    let (row_dir, col_dir) = (lin.column(0).normalize(), lin.column(1).normalize());
    let normal = row_dir.cross(&col_dir);
    let step = lin.column(2).dot(&normal).abs();
    let position = |k: usize| lps.apply(VoxelIjk::new(0.0, 0.0, k as f64)).to_array();

    // Frames: per segment, the slices holding it, in slice order; bits packed across frames.
    let per_frame = ni * nj;
    let mut frames: Vec<(u16, usize)> = Vec::new();
    let mut bits: Vec<u8> = Vec::new();
    let mut segments = Vec::new();
    for (s, &label) in present.iter().enumerate() {
        let number = s as u16 + 1;
        let name = names.get(&label).map(|n| lo(&n.0)).filter(|n| !n.is_empty()).unwrap_or_else(|| format!("label {label}"));
        segments.push((number, label, name));
        for k in 0..nk {
            let slice = labels.data.index_axis(ndarray::Axis(0), k);
            if !slice.iter().any(|&l| l == label) {
                continue;
            }
            let start = frames.len() * per_frame;
            bits.resize((start + per_frame).div_ceil(8), 0);
            for (n, &l) in slice.iter().enumerate() {
                if l == label {
                    let bit = start + n;
                    bits[bit / 8] |= 1 << (bit % 8);
                }
            }
            frames.push((number, k));
        }
    }
    if bits.len() % 2 == 1 {
        bits.push(0);
    }

    let (today, now) = now_da_tm();
    let sop_instance_uid = new_uid();
    let series_uid = new_uid();
    let dimension_uid = new_uid();
    let mut obj = InMemDicomObject::new_empty();
    let mut put = |tag: Tag, vr: VR, v: PrimitiveValue| obj.put(DataElement::new(tag, vr, v));
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192".into());
    put(tags::IMAGE_TYPE, VR::CS, strs(&["DERIVED", "PRIMARY"]));
    put(tags::SOP_CLASS_UID, VR::UI, uids::SEGMENTATION_STORAGE.into());
    put(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid.as_str().into());
    put(tags::STUDY_DATE, VR::DA, source.study_date.as_str().into());
    put(tags::SERIES_DATE, VR::DA, today.as_str().into());
    put(tags::CONTENT_DATE, VR::DA, today.as_str().into());
    put(tags::STUDY_TIME, VR::TM, source.study_time.as_str().into());
    put(tags::SERIES_TIME, VR::TM, now.as_str().into());
    put(tags::CONTENT_TIME, VR::TM, now.as_str().into());
    put(tags::ACCESSION_NUMBER, VR::SH, source.accession_number.as_str().into());
    put(tags::MODALITY, VR::CS, "SEG".into());
    put(tags::MANUFACTURER, VR::LO, "sam3d-studio".into());
    put(tags::REFERRING_PHYSICIAN_NAME, VR::PN, source.referring_physician.as_str().into());
    put(tags::SERIES_DESCRIPTION, VR::LO, "Segmentation".into());
    put(tags::MANUFACTURER_MODEL_NAME, VR::LO, "sam3d-studio".into());
    put(tags::PATIENT_NAME, VR::PN, source.patient_name.as_str().into());
    put(tags::PATIENT_ID, VR::LO, source.patient_id.as_str().into());
    put(tags::PATIENT_BIRTH_DATE, VR::DA, source.patient_birth_date.as_str().into());
    put(tags::PATIENT_SEX, VR::CS, source.patient_sex.as_str().into());
    put(tags::DEVICE_SERIAL_NUMBER, VR::LO, "0".into());
    put(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION").into());
    put(tags::STUDY_INSTANCE_UID, VR::UI, source.study_uid.as_str().into());
    put(tags::SERIES_INSTANCE_UID, VR::UI, series_uid.as_str().into());
    put(tags::STUDY_ID, VR::SH, source.study_id.as_str().into());
    put(tags::SERIES_NUMBER, VR::IS, source.info.series_number.map(|n| (n + 1000).to_string()).unwrap_or_else(|| "1000".into()).into());
    put(tags::INSTANCE_NUMBER, VR::IS, "1".into());
    put(tags::FRAME_OF_REFERENCE_UID, VR::UI, source.frame_of_reference_uid.as_str().into());
    put(tags::POSITION_REFERENCE_INDICATOR, VR::LO, "".into());
    put(tags::DIMENSION_ORGANIZATION_TYPE, VR::CS, "3D".into());
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
    put(tags::NUMBER_OF_FRAMES, VR::IS, frames.len().to_string().into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(rows));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(cols));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(1u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(1u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(0u16));
    put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
    put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00".into());
    put(tags::SEGMENTATION_TYPE, VR::CS, "BINARY".into());
    put(tags::CONTENT_LABEL, VR::CS, "SEGMENTATION".into());
    put(tags::CONTENT_DESCRIPTION, VR::LO, "sam3d-studio label map".into());
    put(tags::CONTENT_CREATOR_NAME, VR::PN, "sam3d-studio".into());
    put(tags::PIXEL_DATA, VR::OB, PrimitiveValue::U8(bits.into()));

    obj.put(seq(tags::DIMENSION_ORGANIZATION_SEQUENCE, vec![item(vec![el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, dimension_uid.as_str())])]));
    let dim = |pointer: Tag, group: Tag, label: &str| {
        item(vec![
            el(tags::DIMENSION_ORGANIZATION_UID, VR::UI, dimension_uid.as_str()),
            DataElement::new(tags::DIMENSION_INDEX_POINTER, VR::AT, PrimitiveValue::from(pointer)),
            DataElement::new(tags::FUNCTIONAL_GROUP_POINTER, VR::AT, PrimitiveValue::from(group)),
            el(tags::DIMENSION_DESCRIPTION_LABEL, VR::LO, label),
        ])
    };
    obj.put(seq(
        tags::DIMENSION_INDEX_SEQUENCE,
        vec![
            dim(tags::REFERENCED_SEGMENT_NUMBER, tags::SEGMENT_IDENTIFICATION_SEQUENCE, "ReferencedSegmentNumber"),
            dim(tags::IMAGE_POSITION_PATIENT, tags::PLANE_POSITION_SEQUENCE, "ImagePositionPatient"),
        ],
    ));
    obj.put(seq(tags::SEGMENT_SEQUENCE, segments.iter().map(|(n, label, name)| segment_item(*n, name, names.get(label).and_then(|x| x.1))).collect()));
    obj.put(seq(tags::REFERENCED_SERIES_SEQUENCE, vec![referenced_series(source)]));
    let shared = item(vec![
        seq(tags::PLANE_ORIENTATION_SEQUENCE, vec![item(vec![dss(tags::IMAGE_ORIENTATION_PATIENT, &[row_dir.x, row_dir.y, row_dir.z, col_dir.x, col_dir.y, col_dir.z])])]),
        seq(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![item(vec![
                dss(tags::PIXEL_SPACING, &[lin.column(1).norm(), lin.column(0).norm()]),
                dss(tags::SLICE_THICKNESS, &[step]),
                dss(tags::SPACING_BETWEEN_SLICES, &[step]),
            ])],
        ),
    ]);
    obj.put(seq(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, vec![shared]));
    let per_frame_items = frames.iter().map(|&(number, k)| frame_item(source, number, k, position(k))).collect();
    obj.put(seq(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame_items));

    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN).implementation_version_name("SAM3D_STUDIO"))
        .map_err(|e| VolumeError::new(path, format!("cannot build the DICOM file meta: {e}")))?;
    atomic_write(path, |w| file.write_all(w).map_err(std::io::Error::other))?;
    Ok(SegSummary { segments, frames: frames.len(), sop_instance_uid, series_uid })
}

/// One SegmentSequence item: generic "Tissue" / "Organ" SNOMED CT codes (as highdicom's
/// `codes.SCT.Tissue` and `codes.SCT.Organ`), semi-automatic by sam3d-studio.
fn segment_item(number: u16, name: &str, colour: Option<[u8; 3]>) -> InMemDicomObject {
    let mut elements = vec![
        DataElement::new(tags::SEGMENT_NUMBER, VR::US, PrimitiveValue::from(number)),
        el(tags::SEGMENT_LABEL, VR::LO, name),
        el(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "SEMIAUTOMATIC"),
        el(tags::SEGMENT_ALGORITHM_NAME, VR::LO, "sam3d-studio"),
        seq(tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE, vec![code("85756007", "SCT", "Tissue")]),
        seq(tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE, vec![code("113343008", "SCT", "Organ")]),
    ];
    if let Some(rgb) = colour {
        elements.push(DataElement::new(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE, VR::US, PrimitiveValue::from(cielab_value(rgb))));
    }
    item(elements)
}

/// The per-frame functional groups of the frame of segment `number` on slice `k`.
fn frame_item(source: &SourceSeries, number: u16, k: usize, position: [f64; 3]) -> InMemDicomObject {
    let slice = &source.slices[k];
    let mut src = vec![
        el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &source.sop_class_uid),
        el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, &slice.sop_instance_uid),
        seq(tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE, vec![code("121322", "DCM", "Source image for image processing operation")]),
    ];
    if let Some(f) = slice.frame_number {
        src.push(el(tags::REFERENCED_FRAME_NUMBER, VR::IS, &f.to_string()));
    }
    let derivation = item(vec![
        seq(tags::DERIVATION_CODE_SEQUENCE, vec![code("113076", "DCM", "Segmentation")]),
        seq(tags::SOURCE_IMAGE_SEQUENCE, vec![item(src)]),
    ]);
    item(vec![
        seq(tags::DERIVATION_IMAGE_SEQUENCE, vec![derivation]),
        seq(
            tags::FRAME_CONTENT_SEQUENCE,
            vec![item(vec![DataElement::new(tags::DIMENSION_INDEX_VALUES, VR::UL, PrimitiveValue::from([number as u32, k as u32 + 1]))])],
        ),
        seq(tags::PLANE_POSITION_SEQUENCE, vec![item(vec![dss(tags::IMAGE_POSITION_PATIENT, &position)])]),
        seq(tags::SEGMENT_IDENTIFICATION_SEQUENCE, vec![item(vec![DataElement::new(tags::REFERENCED_SEGMENT_NUMBER, VR::US, PrimitiveValue::from(number))])]),
    ])
}

/// ReferencedSeriesSequence item: the source series and each of its instances once.
fn referenced_series(source: &SourceSeries) -> InMemDicomObject {
    let mut seen: Vec<&str> = Vec::new();
    for s in &source.slices {
        if !seen.contains(&s.sop_instance_uid.as_str()) {
            seen.push(&s.sop_instance_uid);
        }
    }
    let instances = seen
        .iter()
        .map(|uid| item(vec![el(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &source.sop_class_uid), el(tags::REFERENCED_SOP_INSTANCE_UID, VR::UI, uid)]))
        .collect();
    item(vec![el(tags::SERIES_INSTANCE_UID, VR::UI, &source.series_uid), seq(tags::REFERENCED_INSTANCE_SEQUENCE, instances)])
}

type Element = DataElement<InMemDicomObject>;

fn el(tag: Tag, vr: VR, value: &str) -> Element {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn dss(tag: Tag, values: &[f64]) -> Element {
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(values.iter().map(|v| ds(*v)).collect()))
}

fn strs(values: &[&str]) -> PrimitiveValue {
    PrimitiveValue::Strs(values.iter().map(|s| s.to_string()).collect())
}

fn item(elements: Vec<Element>) -> InMemDicomObject {
    InMemDicomObject::from_element_iter(elements)
}

fn seq(tag: Tag, items: Vec<InMemDicomObject>) -> Element {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

fn code(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    item(vec![el(tags::CODE_VALUE, VR::SH, value), el(tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme), el(tags::CODE_MEANING, VR::LO, meaning)])
}
