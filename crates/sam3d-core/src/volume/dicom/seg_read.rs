//! A DICOM Segmentation (PS3.3 A.51; BINARY, FRACTIONAL or LABELMAP) in, as one label map on
//! its own grid with the segments' names and colours: what `volume::open_labels` gives for a
//! SEG file.
//!
//! - **Segments.** Label value = SegmentNumber; the name is SegmentLabel (`segment N` when
//!   empty), the colour RecommendedDisplayCIELabValue turned back into sRGB. A segment without
//!   frames keeps its name and an empty label (and a warning says so).
//! - **Frames**, in any order: each is placed by its own PlanePositionSequence (per-frame
//!   functional groups) and oriented and measured by PlaneOrientationSequence and
//!   PixelMeasuresSequence (per frame or shared), and belongs to the segment its
//!   SegmentIdentificationSequence names. BINARY frames are one bit a pixel, packed across
//!   frame boundaries; FRACTIONAL frames are 8 bits, a pixel counting as in the segment when
//!   its value is at least half MaximumFractionalValue. Encapsulated pixel data is decoded
//!   frame by frame by the DICOM crates.
//! - **LABELMAP** (Supplement 243, the Label Map Segmentation SOP class): a frame is a plane
//!   of label values, 8 or 16 bits, belonging to no one segment: a pixel's value is the
//!   SegmentNumber it shows, 0 the background (which the SegmentSequence may describe as
//!   segment 0, as highdicom writes it: not a label). A value that no segment of the
//!   SegmentSequence has is refused (naming the frame, the value and the segments defined):
//!   the file contradicts itself, and no reading of it is safe. Colours come from
//!   RecommendedDisplayCIELabValue, or, for segments without one, from the palette colour LUT
//!   (PALETTE COLOR) at the segment's value. Segments without a voxel are named in one
//!   warning.
//! - **Grid.** Every frame must share one orientation and pixel spacing. Their positions,
//!   sorted along the normal `row × column` (ascending, as the series reader sorts), must lie
//!   on one stack of slices: the step is SpacingBetweenSlices when the gaps are whole
//!   multiples of it, else the smallest gap; slices that no frame fills stay empty (a SEG
//!   usually holds only the frames that hold something). The affine goes through
//!   `geometry::DicomPlane`, LPS → RAS once there. A lone position steps along the normal by
//!   SpacingBetweenSlices, else SliceThickness, else 1 mm.
//! - **Overlaps.** Segments are painted in ascending SegmentNumber: where two overlap, the
//!   later segment takes the voxel, and a warning counts the voxels it took.
//!
//! Refused with an error naming the file: not a Segmentation, no SegmentSequence, a frame
//! that references an undefined segment (or a LABELMAP value that no segment has), a frame
//! without a position or off the others' grid (another orientation, spacing, or in-plane
//! place), pixel data shorter than its frames, a
//! grid larger than [`super::MAX_VOXELS`] or spanning more than [`MAX_SLICES`] slices (more
//! than its frames). Nothing is allocated from a header field before
//! it is checked against the file (`lengths.rs`, `header.rs`) or against that limit.

use super::header::{self, Frame, PixelFormat, int, string};
use super::seg_values::rgb_of_cielab;
use super::stack::short;
use super::{MAX_VOXELS, SAME_POSITION_MM, VolumeError, is_dicom_file};
use crate::geometry::{DicomPlane, LpsMm, VoxelIjk};
use crate::volume::label_names::LabelNames;
use crate::volume::{AffineSource, DataType, LabelMap, OnGrid, VolumeMeta};
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemDicomObject;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use nalgebra::Vector3;
use ndarray::Array3;
use std::path::Path;

/// A frame position this far (as a fraction of the slice step) from its slice is off the grid.
pub const OFF_GRID: f64 = 0.01;
/// The most slices a SEG's grid may span when it has fewer frames (a whole-body CT at 0.5 mm
/// has about 4000).
pub const MAX_SLICES: usize = 4096;

/// One segment as the file defines it.
#[derive(Clone, Debug, PartialEq)]
pub struct SegSegment {
    /// SegmentNumber: the segment's label value in the label map.
    pub number: u16,
    pub name: String,
    pub colour: Option<[u8; 3]>,
    /// Frames that belong to it.
    pub frames: usize,
    /// Voxels it covers on its own (before later segments take overlapping ones).
    pub voxels: usize,
}

/// The SOP classes of a DICOM Segmentation: BINARY and FRACTIONAL segmentations, and
/// LABELMAP ones (Supplement 243).
pub fn is_seg_sop_class(class: &str) -> bool {
    class == uids::SEGMENTATION_STORAGE || class == uids::LABEL_MAP_SEGMENTATION_STORAGE
}

/// A DICOM SEG read as a label map.
#[derive(Clone, Debug)]
pub struct SegLabels {
    /// Label = SegmentNumber, on the grid the frames make.
    pub labels: LabelMap,
    /// SegmentNumber → (SegmentLabel, colour), every segment of the SegmentSequence.
    pub names: LabelNames,
    /// In SegmentNumber order.
    pub segments: Vec<SegSegment>,
    /// "BINARY", "FRACTIONAL" or "LABELMAP".
    pub segmentation_type: String,
    /// The series the segmentation was drawn on (ReferencedSeriesSequence), when named.
    pub referenced_series_uid: Option<String>,
    pub frame_of_reference_uid: String,
    /// Overlaps and empty segments, each naming the file.
    pub warnings: Vec<String>,
}

/// Is the file at `path` a DICOM Segmentation (by its SOP class)? Reads the header only, and
/// only as far as the SOP class: a broken SEG is still a SEG, for its reader to say what is
/// wrong.
pub fn is_dicom_seg(path: &Path) -> bool {
    open_object(path, true).is_ok_and(|obj| is_seg_sop_class(&sop_class(&obj)))
}

/// The segment names and colours of a DICOM SEG, from its header alone (`Ok(None)` for a
/// DICOM file that is not a Segmentation).
pub fn seg_segment_names(path: &Path) -> Result<Option<LabelNames>, VolumeError> {
    let obj = open_object(path, true)?;
    if !is_seg_sop_class(&sop_class(&obj)) {
        return Ok(None);
    }
    let mut segments = read_segments(&obj).map_err(|e| VolumeError::new(path, e))?;
    palette_colours(&obj, &mut segments);
    Ok(Some(segments.iter().map(|s| (s.number, (s.name.clone(), s.colour))).collect()))
}

/// The series a DICOM SEG was drawn on (its ReferencedSeriesSequence), from its header alone
/// (`Ok(None)` when it names none or the file is not a Segmentation).
pub fn seg_referenced_series(path: &Path) -> Result<Option<String>, VolumeError> {
    let obj = open_object(path, true)?;
    if !is_seg_sop_class(&sop_class(&obj)) {
        return Ok(None);
    }
    Ok(items(&obj, tags::REFERENCED_SERIES_SEQUENCE).iter().find_map(|s| string(s, tags::SERIES_INSTANCE_UID)))
}

/// Reads a DICOM SEG as a label map (see the module notes for the rules).
pub fn read_dicom_seg(path: &Path) -> Result<SegLabels, VolumeError> {
    let fail = |e: String| VolumeError::new(path, e);
    let obj = open_object(path, false)?;
    let class = sop_class(&obj);
    if !is_seg_sop_class(&class) {
        return Err(fail(format!("is not a DICOM Segmentation (SOP class {class})")));
    }
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX);
    let head = header::header_of(&obj, path, file_len).map_err(fail)?;
    let fmt = head.pixels.clone().ok_or_else(|| fail("has no Rows and Columns: no frames to read".into()))?;
    let kind = string(&obj, tags::SEGMENTATION_TYPE).unwrap_or_default();
    let max_fraction = match kind.as_str() {
        "BINARY" if fmt.bits_allocated == 1 => None,
        "FRACTIONAL" if fmt.bits_allocated == 8 => {
            let m = int(&obj, tags::MAXIMUM_FRACTIONAL_VALUE).filter(|m| (1..=255).contains(m));
            Some(m.ok_or_else(|| fail("FRACTIONAL without a MaximumFractionalValue of 1 to 255".into()))? as u32)
        }
        "LABELMAP" if matches!(fmt.bits_allocated, 8 | 16) => None,
        "BINARY" | "FRACTIONAL" | "LABELMAP" => {
            return Err(fail(format!("{kind} with BitsAllocated {} (BINARY is 1 bit, FRACTIONAL 8, LABELMAP 8 or 16)", fmt.bits_allocated)));
        }
        other => return Err(fail(format!("SegmentationType '{other}' is not read (BINARY, FRACTIONAL and LABELMAP are)"))),
    };
    if fmt.samples_per_pixel != 1 {
        return Err(fail(format!("SamplesPerPixel is {}, a segmentation has 1", fmt.samples_per_pixel)));
    }
    let mut segments = read_segments(&obj).map_err(fail)?;
    let grid = seg_grid(&obj, &head.frames, &fmt).map_err(fail)?;
    let pixels = FramePixels::new(&obj, &head.transfer_syntax, &fmt, head.number_of_frames).map_err(fail)?;
    let mut data = Array3::<u16>::zeros((grid.slices, fmt.rows, fmt.cols));
    let file = short(path);
    let mut warnings = Vec::new();
    if kind == "LABELMAP" {
        palette_colours(&obj, &mut segments);
        read_label_frames(&pixels, &grid, &mut segments, &mut data, &file, &mut warnings).map_err(fail)?;
    } else {
        let frame_segments = frame_segments(&obj, head.number_of_frames, &segments).map_err(fail)?;
        read_segment_frames(&pixels, &grid, &frame_segments, max_fraction, &mut segments, &mut data, &file, &mut warnings).map_err(fail)?;
    }
    let description = string(&obj, tags::SERIES_DESCRIPTION).or_else(|| string(&obj, tags::CONTENT_LABEL)).unwrap_or_default();
    let meta = VolumeMeta { source: Some(path.to_path_buf()), dtype: Some(DataType::Uint16), affine_source: Some(AffineSource::Dicom), description, window: None };
    let referenced_series_uid = items(&obj, tags::REFERENCED_SERIES_SEQUENCE).iter().find_map(|s| string(s, tags::SERIES_INSTANCE_UID));
    Ok(SegLabels {
        labels: LabelMap { data, ras_from_voxel: grid.ras_from_voxel, meta },
        names: segments.iter().map(|s| (s.number, (s.name.clone(), s.colour))).collect(),
        segments,
        segmentation_type: kind,
        referenced_series_uid,
        frame_of_reference_uid: head.frame_of_reference,
        warnings,
    })
}

/// BINARY and FRACTIONAL frames: each belongs to the segment it names (`frame_segments`);
/// segments are painted in ascending number, later ones taking overlapping voxels (counted in
/// a warning). `max_fraction`: FRACTIONAL's MaximumFractionalValue (a pixel is in at half of it).
fn read_segment_frames(
    pixels: &FramePixels,
    grid: &SegGrid,
    frame_segments: &[u16],
    max_fraction: Option<u32>,
    segments: &mut [SegSegment],
    data: &mut Array3<u16>,
    file: &str,
    warnings: &mut Vec<String>,
) -> Result<(), String> {
    let mut order: Vec<usize> = (0..frame_segments.len()).collect();
    order.sort_by_key(|&f| (frame_segments[f], grid.slice_of_frame[f]));
    for seg in segments.iter_mut() {
        let mut taken = 0usize;
        for &f in order.iter().filter(|&&f| frame_segments[f] == seg.number) {
            seg.frames += 1;
            let values = pixels.frame(f).map_err(|e| format!("frame {}: {e}", f + 1))?;
            let mut slab = data.index_axis_mut(ndarray::Axis(0), grid.slice_of_frame[f]);
            let out = slab.as_slice_mut().ok_or("internal: a slice of the label map is not contiguous")?;
            for (l, &v) in out.iter_mut().zip(values.iter()) {
                let inside = match max_fraction {
                    None => v != 0,
                    Some(max) => v != 0 && 2 * v as u32 >= max,
                };
                if inside && *l != seg.number {
                    if *l != 0 {
                        taken += 1;
                    }
                    *l = seg.number;
                    seg.voxels += 1;
                }
            }
        }
        if seg.frames == 0 {
            warnings.push(format!("{file}: segment {} \"{}\" has no frames; its label stays empty", seg.number, seg.name));
        }
        if taken > 0 {
            warnings.push(format!(
                "{file}: segment {} \"{}\" overlaps earlier segments in {taken} voxels; it takes them (later segments win)",
                seg.number, seg.name
            ));
        }
    }
    Ok(())
}

/// LABELMAP frames: each pixel's value is the segment it shows (0: none). A value no segment
/// has is an error naming the frame; two frames on one plane (which the standard does not
/// allow) are read in file order, the later one's segments taking the plane's voxels, with a
/// warning; segments without a voxel are named in one warning.
fn read_label_frames(pixels: &FramePixels, grid: &SegGrid, segments: &mut [SegSegment], data: &mut Array3<u16>, file: &str, warnings: &mut Vec<String>) -> Result<(), String> {
    // Segment number → its index in `segments` (numbers are unique, 1–65535).
    let top = segments.iter().map(|s| s.number as usize).max().unwrap_or(0);
    let mut index_of = vec![usize::MAX; top + 1];
    segments.iter().enumerate().for_each(|(i, s)| index_of[s.number as usize] = i);
    let defined = {
        let n: Vec<String> = segments.iter().take(12).map(|s| s.number.to_string()).collect();
        if segments.len() > 12 { format!("{}, … ({} segments)", n.join(", "), segments.len()) } else { n.join(", ") }
    };
    let mut filled = vec![None::<usize>; grid.slices];
    let mut in_frame = vec![false; segments.len()];
    for f in 0..grid.slice_of_frame.len() {
        let k = grid.slice_of_frame[f];
        if let Some(earlier) = filled[k] {
            warnings.push(format!("{file}: frames {} and {} lie on one plane (slice {k}); the later one's labels take its voxels", earlier + 1, f + 1));
        }
        filled[k] = Some(f);
        let values = pixels.frame(f).map_err(|e| format!("frame {}: {e}", f + 1))?;
        let mut slab = data.index_axis_mut(ndarray::Axis(0), k);
        let out = slab.as_slice_mut().ok_or("internal: a slice of the label map is not contiguous")?;
        in_frame.iter_mut().for_each(|x| *x = false);
        for (l, &v) in out.iter_mut().zip(values.iter()) {
            if v == 0 {
                continue;
            }
            let i = index_of.get(v as usize).copied().unwrap_or(usize::MAX);
            if i == usize::MAX {
                return Err(format!("frame {} holds the value {v}, which no segment of the SegmentSequence has ({defined}): a LABELMAP's values are its segment numbers", f + 1));
            }
            *l = v;
            segments[i].voxels += 1;
            in_frame[i] = true;
        }
        segments.iter_mut().zip(&in_frame).filter(|(_, x)| **x).for_each(|(s, _)| s.frames += 1);
    }
    let empty: Vec<String> = segments.iter().filter(|s| s.voxels == 0).map(|s| format!("{} \"{}\"", s.number, s.name)).collect();
    if !empty.is_empty() {
        let shown = if empty.len() > 8 { format!("{}, … ({} in all)", empty[..8].join(", "), empty.len()) } else { empty.join(", ") };
        warnings.push(format!("{file}: no voxel has the value of segment{} {shown}; {} stay empty", if empty.len() == 1 { "" } else { "s" }, if empty.len() == 1 { "its label" } else { "their labels" }));
    }
    Ok(())
}

/// Colours for the segments without a RecommendedDisplayCIELabValue from the palette colour
/// LUT (PALETTE COLOR), at the segment's value: values below the first mapped one take the
/// first entry, above the last the last (PS3.3 C.7.6.3.1.5). A LUT that cannot be read (absent,
/// segmented, or shorter than its descriptor) gives no colour.
fn palette_colours(obj: &InMemDicomObject, segments: &mut [SegSegment]) {
    if segments.iter().all(|s| s.colour.is_some()) {
        return;
    }
    let channel = |desc: Tag, data: Tag| -> Option<(i64, Vec<u8>)> {
        let d = obj.get(desc)?.to_multi_int::<i64>().ok()?;
        let [n, first, bits] = <[i64; 3]>::try_from(d.as_slice()).ok()?;
        let n = if n == 0 { 65536 } else { n as usize };
        let bytes = obj.get(data)?.to_bytes().ok()?;
        let entries: Vec<u8> = match bits {
            8 => bytes.get(..n)?.to_vec(),
            16 => bytes.get(..2 * n)?.chunks_exact(2).map(|b| (u16::from_ne_bytes([b[0], b[1]]) >> 8) as u8).collect(),
            _ => return None,
        };
        Some((first, entries))
    };
    let Some(luts) = [
        (tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA),
        (tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA),
        (tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR, tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA),
    ]
    .map(|(d, t)| channel(d, t))
    .into_iter()
    .collect::<Option<Vec<_>>>() else {
        return;
    };
    let at = |(first, entries): &(i64, Vec<u8>), v: u16| -> u8 { entries[((v as i64 - first).max(0) as usize).min(entries.len() - 1)] };
    if luts.iter().any(|l| l.1.is_empty()) {
        return;
    }
    for s in segments.iter_mut().filter(|s| s.colour.is_none()) {
        s.colour = Some([at(&luts[0], s.number), at(&luts[1], s.number), at(&luts[2], s.number)]);
    }
}

/// A SEG's label map (on its own grid: the slices its frames fill) put on the grid of the
/// volume it was drawn on, voxel for voxel, as the viewer and `convert` need it: the two grids
/// must share their axes (within [`OFF_GRID`] of a voxel over the SEG's extent) and the SEG's
/// voxels must be whole voxels of the volume's grid; a labelled voxel outside the volume is
/// refused. Errors name `path`.
pub fn place_on_grid(labels: &LabelMap, grid: &impl OnGrid, path: &Path) -> Result<LabelMap, VolumeError> {
    let fail = |e: String| VolumeError::new(path, e);
    let voxel_from_ras = grid.voxel_from_ras();
    // The SEG's voxel (i, j, k) in the volume's voxel coordinates: must be a whole shift.
    let map = |i: f64, j: f64, k: f64| voxel_from_ras.apply(labels.ras_from_voxel.apply(VoxelIjk::new(i, j, k))).to_array();
    let o = map(0.0, 0.0, 0.0);
    let shift = o.map(f64::round);
    let [nk, nj, ni] = [labels.data.shape()[0], labels.data.shape()[1], labels.data.shape()[2]];
    let far = map(ni as f64 - 1.0, nj as f64 - 1.0, nk as f64 - 1.0);
    let want = [shift[0] + ni as f64 - 1.0, shift[1] + nj as f64 - 1.0, shift[2] + nk as f64 - 1.0];
    let off = (0..3).map(|a| (o[a] - shift[a]).abs().max((far[a] - want[a]).abs())).fold(0.0, f64::max);
    if off.is_nan() || off > OFF_GRID {
        return Err(fail(format!(
            "its grid does not lie on the volume's voxels (its first voxel falls at volume voxel ({:.3}, {:.3}, {:.3}), {off:.3} voxels off): not drawn on this volume",
            o[0], o[1], o[2]
        )));
    }
    let shape = grid.shape();
    let mut out = LabelMap::empty_like(grid);
    out.meta = labels.meta.clone();
    let dims = out.data.dim();
    let mut outside = 0usize;
    for ((k, j, i), &l) in labels.data.indexed_iter() {
        if l == 0 {
            continue;
        }
        let (vi, vj, vk) = (shift[0] + i as f64, shift[1] + j as f64, shift[2] + k as f64);
        if vi < 0.0 || vj < 0.0 || vk < 0.0 || vk as usize >= dims.0 || vj as usize >= dims.1 || vi as usize >= dims.2 {
            outside += 1;
            continue;
        }
        out.data[[vk as usize, vj as usize, vi as usize]] = l;
    }
    if outside > 0 {
        return Err(fail(format!("{outside} labelled voxels lie outside the volume's {shape} grid: not drawn on this volume")));
    }
    Ok(out)
}

/// Opens the file after its lengths are checked; `header_only` stops before the pixel data.
fn open_object(path: &Path, header_only: bool) -> Result<DefaultDicomObject, VolumeError> {
    if !is_dicom_file(path) {
        return Err(VolumeError::new(path, "is not a DICOM file (no DICM magic at byte 128)"));
    }
    super::lengths::check_lengths(path).map_err(|e| VolumeError::new(path, format!("not a readable DICOM file: {e}")))?;
    let options = if header_only { OpenFileOptions::new().read_until(tags::PIXEL_DATA) } else { OpenFileOptions::new() };
    options.open_file(path).map_err(|e| VolumeError::new(path, format!("not a readable DICOM file: {e}")))
}

fn sop_class(obj: &DefaultDicomObject) -> String {
    string(obj, tags::SOP_CLASS_UID).unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string())
}

/// The SegmentSequence, sorted by SegmentNumber; numbers must be 1–65535 and unique.
fn read_segments(obj: &InMemDicomObject) -> Result<Vec<SegSegment>, String> {
    let list = obj.get(tags::SEGMENT_SEQUENCE).and_then(|e| e.items()).ok_or("has no SegmentSequence")?;
    // A LABELMAP may describe its background, value 0, as segment 0: not a label.
    let labelmap = string(obj, tags::SEGMENTATION_TYPE).as_deref() == Some("LABELMAP");
    let mut out: Vec<SegSegment> = Vec::with_capacity(list.len());
    for (n, item) in list.iter().enumerate() {
        let number = int(item, tags::SEGMENT_NUMBER).ok_or_else(|| format!("SegmentSequence item {} has no SegmentNumber", n + 1))?;
        if labelmap && number == 0 {
            continue;
        }
        let number = u16::try_from(number).ok().filter(|&x| x > 0).ok_or_else(|| format!("SegmentNumber {number} is not 1 to 65535"))?;
        if out.iter().any(|s| s.number == number) {
            return Err(format!("SegmentNumber {number} is defined twice"));
        }
        let name = string(item, tags::SEGMENT_LABEL).unwrap_or_else(|| format!("segment {number}"));
        let colour = item.get(tags::RECOMMENDED_DISPLAY_CIE_LAB_VALUE).and_then(|e| e.to_multi_int::<u16>().ok()).and_then(|v| <[u16; 3]>::try_from(v.as_slice()).ok()).map(rgb_of_cielab);
        out.push(SegSegment { number, name, colour, frames: 0, voxels: 0 });
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// Each frame's ReferencedSegmentNumber, checked against the defined segments.
fn frame_segments(obj: &InMemDicomObject, nframes: u32, segments: &[SegSegment]) -> Result<Vec<u16>, String> {
    (0..nframes)
        .map(|f| {
            let n = header::functional(obj, f, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
                .and_then(|g| int(g, tags::REFERENCED_SEGMENT_NUMBER))
                .ok_or_else(|| format!("frame {} has no ReferencedSegmentNumber (SegmentIdentificationSequence)", f + 1))?;
            match u16::try_from(n).ok().filter(|n| segments.iter().any(|s| s.number == *n)) {
                Some(n) => Ok(n),
                None => {
                    let defined: Vec<String> = segments.iter().map(|s| s.number.to_string()).collect();
                    Err(format!("frame {} references segment {n}, which the SegmentSequence does not define ({})", f + 1, defined.join(", ")))
                }
            }
        })
        .collect()
}

/// The stack of slices the frames lie on.
struct SegGrid {
    slices: usize,
    /// Frame f fills slice `slice_of_frame[f]`.
    slice_of_frame: Vec<usize>,
    ras_from_voxel: crate::geometry::RasFromVoxel,
}

/// Fits the frames' positions to one stack of slices (see the module notes).
fn seg_grid(obj: &InMemDicomObject, frames: &[Frame], fmt: &PixelFormat) -> Result<SegGrid, String> {
    let first = frames.first().ok_or("has no frames")?;
    let plane = first.plane.ok_or("frame 1 has no ImageOrientationPatient (PlaneOrientationSequence)")?;
    let err = plane.orthonormality_error();
    if err > 1e-3 {
        return Err(format!("ImageOrientationPatient {:?} {:?} is not two perpendicular unit vectors (error {err:.2e})", plane.row_dir.as_slice(), plane.col_dir.as_slice()));
    }
    let same_plane = |p: &DicomPlane| {
        (p.row_dir - plane.row_dir).norm() < 1e-4
            && (p.col_dir - plane.col_dir).norm() < 1e-4
            && (0..2).all(|a| (p.pixel_spacing[a] - plane.pixel_spacing[a]).abs() <= 1e-4 * plane.pixel_spacing[a])
    };
    let mut positions = Vec::with_capacity(frames.len());
    for (f, frame) in frames.iter().enumerate() {
        let p = frame.plane.ok_or_else(|| format!("frame {} has no ImageOrientationPatient", f + 1))?;
        if !same_plane(&p) {
            return Err(format!(
                "frame {} has orientation {:?} {:?} and spacing {:?}, frame 1 {:?} {:?} and {:?}: not one grid",
                f + 1,
                p.row_dir.as_slice(),
                p.col_dir.as_slice(),
                p.pixel_spacing,
                plane.row_dir.as_slice(),
                plane.col_dir.as_slice(),
                plane.pixel_spacing
            ));
        }
        positions.push(frame.position.ok_or_else(|| format!("frame {} has no ImagePositionPatient (PlanePositionSequence)", f + 1))?);
    }
    let normal = plane.normal().normalize();
    let along: Vec<f64> = positions.iter().map(|p| normal.dot(&p.v)).collect();
    // Distinct planes, in ascending order along the normal.
    let mut by_offset: Vec<usize> = (0..frames.len()).collect();
    by_offset.sort_by(|&a, &b| along[a].total_cmp(&along[b]));
    let mut planes: Vec<usize> = Vec::new(); // a representative frame per plane
    for &f in &by_offset {
        if planes.last().is_none_or(|&r| along[f] - along[r] > SAME_POSITION_MM) {
            planes.push(f);
        }
    }
    let pixel_measures = header::functional(obj, 0, tags::PIXEL_MEASURES_SEQUENCE);
    let measure = |tag: Tag| pixel_measures.and_then(|m| m.get(tag)).and_then(|e| e.to_float64().ok()).filter(|x| x.is_finite() && *x > 0.0);
    let spacing_between = measure(tags::SPACING_BETWEEN_SLICES);
    let gaps: Vec<f64> = planes.windows(2).map(|w| along[w[1]] - along[w[0]]).collect();
    let (step_len, step) = if gaps.is_empty() {
        let s = spacing_between.or_else(|| measure(tags::SLICE_THICKNESS)).unwrap_or(1.0);
        (s, normal * s)
    } else {
        let min_gap = gaps.iter().copied().fold(f64::INFINITY, f64::min);
        let whole = |g: f64, unit: f64| ((g / unit).round() - g / unit).abs() <= OFF_GRID;
        let unit = spacing_between.filter(|&s| gaps.iter().all(|&g| whole(g, s))).unwrap_or(min_gap);
        if let Some(g) = gaps.iter().find(|&&g| !whole(g, unit)) {
            return Err(format!("the frames' planes are not one stack of slices: a gap of {g:.4} mm is not a whole number of {unit:.4} mm steps"));
        }
        let last_k: f64 = gaps.iter().map(|g| (g / unit).round()).sum();
        let p0 = positions[planes[0]].v;
        let step: Vector3<f64> = (positions[*planes.last().unwrap_or(&planes[0])].v - p0) / last_k;
        (unit, step)
    };
    let p0 = positions[planes[0]].v;
    let base = along[planes[0]];
    let mut slice_of_frame = vec![0usize; frames.len()];
    let mut slices = 1usize;
    // Slices without frames are zeros the file does not pay for: a few frames far apart must
    // not ask for gigabytes. As many slices as the longest series, or as frames, at most.
    let most = (MAX_VOXELS as f64 / (fmt.rows * fmt.cols).max(1) as f64).min(MAX_SLICES.max(frames.len()) as f64);
    for (f, p) in positions.iter().enumerate() {
        let k = ((along[f] - base) / step_len).round();
        if !(0.0..most).contains(&k) {
            return Err(format!("its frames span more than {most:.0} slices of {} × {} ({} mm at {step_len:.4} mm a slice): more voxels than this reader allocates", fmt.cols, fmt.rows, along[f] - base));
        }
        let off = (p.v - (p0 + step * k)).norm();
        if off.is_nan() || off > OFF_GRID * step_len + 1e-3 {
            return Err(format!(
                "frame {} at ({:.3}, {:.3}, {:.3}) LPS is {off:.3} mm off the grid the other frames make (slice {k}, step {step_len:.4} mm)",
                f + 1,
                p.x(),
                p.y(),
                p.z()
            ));
        }
        slice_of_frame[f] = k as usize;
        slices = slices.max(k as usize + 1);
    }
    Ok(SegGrid { slices, slice_of_frame, ras_from_voxel: plane.ras_from_voxel(LpsMm::from_vec(p0), step) })
}

/// The stored values of each frame (bits, bytes or 16-bit words).
enum FramePixels<'a> {
    /// Native (or deflated) pixel data: bits packed across frames, bytes, or 16-bit words in
    /// the machine's byte order (as the DICOM crates hold them).
    Native { bytes: std::borrow::Cow<'a, [u8]>, width: Width, pixels: usize },
    /// Encapsulated: decoded one frame at a time (a JPEG 2000 frame's header checked first).
    Encapsulated { obj: &'a DefaultDicomObject, pixels: usize, width: Width, j2k: Option<PixelFormat> },
}

/// How many bits a stored value takes.
#[derive(Clone, Copy, PartialEq)]
enum Width {
    Bit,
    Byte,
    Word,
}

impl Width {
    /// Bytes `n` values take.
    fn bytes(self, n: u64) -> u64 {
        match self {
            Width::Bit => n.div_ceil(8),
            Width::Byte => n,
            Width::Word => 2 * n,
        }
    }
}

impl<'a> FramePixels<'a> {
    fn new(obj: &'a DefaultDicomObject, transfer_syntax: &str, fmt: &PixelFormat, nframes: u32) -> Result<Self, String> {
        let pixels = fmt.rows * fmt.cols;
        let width = match fmt.bits_allocated {
            1 => Width::Bit,
            8 => Width::Byte,
            16 => Width::Word,
            b => return Err(format!("BitsAllocated {b} is not read in a segmentation")),
        };
        let element = obj.get(tags::PIXEL_DATA).ok_or("has no PixelData")?;
        if element.value().fragments().is_some() {
            super::pixels::check_transfer_syntax(transfer_syntax)?;
            // The same guards as for image series: RLE headers, JPEG 2000 SIZ against the header.
            if transfer_syntax == uids::RLE_LOSSLESS {
                super::pixels::check_rle_fragments(obj)?;
            }
            let j2k = super::j2k::is_j2k(transfer_syntax).then(|| fmt.clone());
            return Ok(FramePixels::Encapsulated { obj, pixels, width, j2k });
        }
        let bytes = element.to_bytes().map_err(|e| format!("PixelData cannot be read as bytes: {e}"))?;
        let need = width.bytes(nframes as u64 * pixels as u64);
        if (bytes.len() as u64) < need {
            return Err(format!("PixelData holds {} bytes, {nframes} frames of {} × {} need {need}", bytes.len(), fmt.cols, fmt.rows));
        }
        Ok(FramePixels::Native { bytes, width, pixels })
    }

    /// Frame `f` (0-based): `pixels` values in row order.
    fn frame(&self, f: usize) -> Result<Vec<u16>, String> {
        let words = |b: &[u8]| -> Vec<u16> { b.chunks_exact(2).map(|w| u16::from_ne_bytes([w[0], w[1]])).collect() };
        match self {
            FramePixels::Native { bytes, width: Width::Bit, pixels } => {
                let start = f * pixels;
                Ok((start..start + pixels).map(|b| ((bytes[b / 8] >> (b % 8)) & 1) as u16).collect())
            }
            FramePixels::Native { bytes, width: Width::Byte, pixels } => Ok(bytes[f * pixels..(f + 1) * pixels].iter().map(|&v| v as u16).collect()),
            FramePixels::Native { bytes, width: Width::Word, pixels } => Ok(words(&bytes[2 * f * pixels..2 * (f + 1) * pixels])),
            FramePixels::Encapsulated { obj, pixels, width, j2k } => {
                use dicom_pixeldata::PixelDecoder;
                if let Some(fmt) = j2k {
                    super::pixels::check_j2k_frame(obj, f as u32, fmt)?;
                }
                let decoded = super::pixels::guarded_decode(|| obj.decode_pixel_data_frame(f as u32))
                    .map_err(|p| format!("the decoder failed on corrupt data ({p})"))?
                    .map_err(|e| format!("cannot decode: {e}"))?;
                let data = decoded.data();
                let n = data.len() as u64;
                if *width == Width::Word && n == 2 * *pixels as u64 {
                    Ok(words(data))
                } else if *width != Width::Word && n == *pixels as u64 {
                    Ok(data.iter().map(|&v| v as u16).collect())
                } else if *width != Width::Word && n == (*pixels as u64).div_ceil(8) {
                    Ok((0..*pixels).map(|b| ((data[b / 8] >> (b % 8)) & 1) as u16).collect())
                } else {
                    Err(format!("decoded to {} bytes, {pixels} pixels of {} expected", data.len(), if *width == Width::Word { "16 bits" } else { "8 bits or 1" }))
                }
            }
        }
    }
}

fn items(obj: &InMemDicomObject, tag: Tag) -> &[InMemDicomObject] {
    obj.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}
