//! RT structure set contours drawn on a voxel grid, as plastimatch, rt-utils and
//! dcmrtstruct2nii draw them:
//! - each contour is put on the slice (k) whose plane its points lie on: the nearest slice
//!   when every point is less than half a slice step from it (a contour further off than
//!   [`ON_SLICE`] of a step is still drawn there, with a warning); a contour halfway between
//!   two slices, outside the grid's slices, or not parallel to them is left out with a warning
//!   naming the ROI and its z;
//! - the polygon is filled in that slice's continuous (i, j) voxel coordinates with the
//!   even–odd rule, at pixel centres (integer i, j): a pixel is in when a ray from its centre
//!   crosses the polygon's edges an odd number of times (edges counted half-open in j, so a
//!   vertex on the scan line counts once);
//! - the contours of one ROI on one slice combine by XOR: an inner contour is a hole;
//! - ROIs get labels 1, 2, … in file order; where ROIs overlap the **later ROI takes the
//!   voxel** (the overwritten voxels are counted in a warning). [`rasterise_roi`] gives one
//!   ROI's own mask for a caller that wants the overlaps.

use super::rtstruct::{Roi, RtStruct};
use super::stack::short;
use super::{SeriesChoice, SourceSeries, VolumeError, list_series, source_series};
use crate::geometry::{GridShape, RasFromVoxel};
use crate::volume::label_names::LabelNames;
use crate::volume::{LabelMap, OnGrid, VolumeMeta};
use ndarray::{Array3, Zip};
use std::path::Path;

/// A contour further than this fraction of a slice step from its slice is drawn with a warning.
pub const ON_SLICE: f64 = 0.05;
/// A contour this close to halfway between two slices (fraction of a step) is left out.
const HALFWAY: f64 = 1e-6;

/// A structure set rasterised on a grid.
#[derive(Clone, Debug)]
pub struct RtLabels {
    /// Label k + 1 for `rois[k]`; later ROIs take overlapping voxels.
    pub labels: LabelMap,
    /// Label → (ROIName, ROIDisplayColor), for every ROI (also those that drew nothing).
    pub names: LabelNames,
    /// Voxels each ROI covers on its own (before later ROIs overwrite it), in ROI order.
    pub voxels: Vec<usize>,
    /// The structure set's warnings, then the rasterisation's: each names the file and ROI.
    pub warnings: Vec<String>,
}

/// Draws every ROI of `rt` on `grid`'s voxel grid (see the module notes for the rules).
/// Refuses a structure set with more ROIs than a 16-bit label map holds.
pub fn rasterise(rt: &RtStruct, grid: &impl OnGrid) -> Result<RtLabels, VolumeError> {
    if rt.rois.len() > u16::MAX as usize {
        return Err(VolumeError::new(&rt.path, format!("{} ROIs: a label map holds at most {}", rt.rois.len(), u16::MAX)));
    }
    let mut labels = LabelMap::empty_like(grid);
    labels.meta = VolumeMeta { source: Some(rt.path.clone()), description: rt.structure_set_label.clone(), ..VolumeMeta::default() };
    let mut out = RtLabels { labels, names: LabelNames::new(), voxels: Vec::new(), warnings: rt.warnings.clone() };
    for (n, roi) in rt.rois.iter().enumerate() {
        let label = n as u16 + 1;
        out.names.insert(label, (roi.name.clone(), roi.colour));
        let mask = rasterise_roi(&rt.path, roi, grid, &mut out.warnings);
        let (mut count, mut taken) = (0usize, 0usize);
        Zip::from(&mut out.labels.data).and(&mask).for_each(|l, &m| {
            if m {
                count += 1;
                taken += (*l != 0) as usize;
                *l = label;
            }
        });
        if taken > 0 {
            out.warnings.push(format!("{}: {} overlaps earlier ROIs in {taken} voxels; it takes them (label {label})", short(&rt.path), roi.label()));
        }
        out.voxels.push(count);
    }
    Ok(out)
}

/// One ROI's mask on `grid` (`[k, j, i]`); what cannot be drawn is added to `warnings`,
/// naming `rt_path` and the ROI.
pub fn rasterise_roi(rt_path: &Path, roi: &Roi, grid: &impl OnGrid, warnings: &mut Vec<String>) -> Array3<bool> {
    let shape = grid.shape();
    let mut mask = Array3::from_elem(shape.array_shape(), false);
    let voxel_from_ras = grid.voxel_from_ras();
    // mm per unit of k along the slice normal: 1 / |∇k|.
    let step_mm = 1.0 / voxel_from_ras.linear().row(2).norm();
    for (c, contour) in roi.contours.iter().enumerate() {
        let ijk: Vec<[f64; 3]> = contour.points.iter().map(|p| voxel_from_ras.apply(p.to_ras()).to_array()).collect();
        let z = contour.points.iter().map(|p| p.z()).sum::<f64>() / contour.points.len() as f64;
        let say = |what: String| format!("{}: {} contour {} (z = {z:.3} mm LPS): {what}", short(rt_path), roi.label(), c + 1);
        if contour.points.len() < 3 || ijk.iter().flatten().any(|x| !x.is_finite()) {
            warnings.push(say("fewer than 3 points or a coordinate that is not a finite number; left out".into()));
            continue;
        }
        match slice_of(&ijk, shape) {
            Ok((k, off)) => {
                if off > ON_SLICE {
                    warnings.push(say(format!("{:.3} mm off slice {k}; drawn on it", off * step_mm)));
                }
                fill_even_odd(&ijk, shape, |j, i| mask[[k, j, i]] ^= true);
            }
            Err(why) => warnings.push(say(why)),
        }
    }
    mask
}

/// The slice a contour lies on and its largest distance from it (in steps), or why none.
fn slice_of(ijk: &[[f64; 3]], shape: GridShape) -> Result<(usize, f64), String> {
    let (lo, hi) = ijk.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p[2]), b.max(p[2])));
    let mean = ijk.iter().map(|p| p[2]).sum::<f64>() / ijk.len() as f64;
    let k = mean.round();
    let off = (lo - k).abs().max((hi - k).abs());
    if off >= 0.5 - HALFWAY {
        return Err(if hi - lo < 1e-6 {
            format!("lies between slices {} and {} (k = {mean:.3}); left out", mean.floor(), mean.ceil())
        } else {
            format!("is not in one slice plane (k from {lo:.3} to {hi:.3}); left out")
        });
    }
    if k < 0.0 || k >= shape.nk as f64 {
        return Err(format!("lies outside the series' {} slices (k = {mean:.3}); left out", shape.nk));
    }
    Ok((k as usize, off))
}

/// Calls `set(j, i)` for every pixel centre (i, j) inside the polygon (even–odd rule) within
/// the grid. Scan line j meets the edge p→q when exactly one end is at or below it
/// (half-open), at x; pixel i is inside between the 2m-th and (2m+1)-th crossing:
/// `x[2m] <= i < x[2m+1]` (a point-in-polygon crossing test, one row at a time).
fn fill_even_odd(ijk: &[[f64; 3]], shape: GridShape, mut set: impl FnMut(usize, usize)) {
    let (jlo, jhi) = ijk.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p[1]), b.max(p[1])));
    let j0 = jlo.ceil().max(0.0);
    let j1 = jhi.floor().min(shape.nj as f64 - 1.0);
    // Points are finite (checked on read), so the bounds compare; an empty range draws nothing.
    if j0 > j1 {
        return;
    }
    let mut xs: Vec<f64> = Vec::new();
    for j in j0 as usize..=j1 as usize {
        let y = j as f64;
        xs.clear();
        for (n, p) in ijk.iter().enumerate() {
            let q = ijk[(n + 1) % ijk.len()];
            if (p[1] <= y) != (q[1] <= y) {
                xs.push(p[0] + (y - p[1]) * (q[0] - p[0]) / (q[1] - p[1]));
            }
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            let a = pair[0].ceil().max(0.0);
            let b = pair[1].ceil().min(shape.ni as f64);
            if a < b {
                for i in a as usize..b as usize {
                    set(j, i);
                }
            }
        }
    }
}

impl OnGrid for SourceSeries {
    fn shape(&self) -> GridShape {
        self.shape
    }
    fn ras_from_voxel(&self) -> &RasFromVoxel {
        &self.ras_from_voxel
    }
}

/// Reads the structure set at `rtstruct`, finds the series it references under
/// `series_folder` (by SeriesInstanceUID; by FrameOfReferenceUID when the set names no
/// series and one image series has it), and rasterises it on that series' grid (read from the
/// headers; no pixel decoded). Refuses, naming both UIDs, when the series is not there. The
/// warnings are logged and returned.
pub fn open_rtstruct_labels(rtstruct: &Path, series_folder: &Path) -> Result<RtLabels, VolumeError> {
    let rt = super::read_rtstruct(rtstruct)?;
    let infos = list_series(series_folder)?;
    let images: Vec<_> = infos.iter().filter(|s| s.kind.is_scan()).collect();
    let found = images.iter().map(|s| format!("{} (frame of reference {})", s.label(), s.frame_of_reference_uid)).collect::<Vec<_>>().join("; ");
    let uid = match (&rt.referenced_series_uid, &rt.frame_of_reference_uid) {
        (Some(uid), _) => {
            if !images.iter().any(|s| s.series_uid == *uid) {
                return Err(VolumeError::new(
                    rtstruct,
                    format!("references series {uid}, which is not under {}; the series there: {found}", series_folder.display()),
                ));
            }
            uid.clone()
        }
        (None, Some(frame)) => {
            let same: Vec<_> = images.iter().filter(|s| s.frame_of_reference_uid == *frame).collect();
            match same.as_slice() {
                [one] => one.series_uid.clone(),
                [] => return Err(VolumeError::new(rtstruct, format!("names no series and no series under {} has its frame of reference {frame}; the series there: {found}", series_folder.display()))),
                _ => return Err(VolumeError::new(rtstruct, format!("names no series and {} series under {} share its frame of reference {frame}: {found}", same.len(), series_folder.display()))),
            }
        }
        (None, None) => return Err(VolumeError::new(rtstruct, "names neither a referenced series nor a frame of reference")),
    };
    let source = source_series(series_folder, &SeriesChoice::Uid(uid))?;
    if let Some(frame) = &rt.frame_of_reference_uid
        && !source.frame_of_reference_uid.is_empty()
        && *frame != source.frame_of_reference_uid
    {
        return Err(VolumeError::new(
            rtstruct,
            format!("is in frame of reference {frame}, but {} is in {}", source.info.label(), source.frame_of_reference_uid),
        ));
    }
    let out = rasterise(&rt, &source)?;
    for w in &out.warnings {
        log::warn!("{w}");
    }
    Ok(out)
}


#[cfg(test)]
mod tests {
    use super::*;

    fn filled(poly: &[[f64; 2]], ni: usize, nj: usize) -> Vec<(usize, usize)> {
        let pts: Vec<[f64; 3]> = poly.iter().map(|p| [p[0], p[1], 0.0]).collect();
        let mut out = Vec::new();
        fill_even_odd(&pts, GridShape::new(ni, nj, 1), |j, i| out.push((i, j)));
        out
    }

    #[test]
    fn pixel_centres_inside_the_polygon_are_filled_and_the_border_clips() {
        // A square from 0.5 to 2.5 holds the centres 1 and 2 on each axis.
        assert_eq!(filled(&[[0.5, 0.5], [2.5, 0.5], [2.5, 2.5], [0.5, 2.5]], 5, 5), vec![(1, 1), (2, 1), (1, 2), (2, 2)]);
        // Far outside the grid on every side: the whole 3 × 2 grid, nothing out of bounds.
        assert_eq!(filled(&[[-1e9, -1e9], [1e9, -1e9], [1e9, 1e9], [-1e9, 1e9]], 3, 2).len(), 6);
        // A bow tie (self-intersecting): even–odd fills both lobes, not the crossing's outside.
        let bow = filled(&[[-0.5, -0.5], [4.5, 3.5], [4.5, -0.5], [-0.5, 3.5]], 5, 4);
        assert!(bow.contains(&(0, 1)) && bow.contains(&(4, 1)) && !bow.contains(&(2, 0)), "{bow:?}");
    }

    #[test]
    fn contours_find_their_slice_or_say_why_not() {
        let at = |ks: &[f64]| -> Vec<[f64; 3]> { ks.iter().map(|&k| [0.0, 0.0, k]).collect() };
        let shape = GridShape::new(4, 4, 5);
        assert_eq!(slice_of(&at(&[2.0, 2.0, 2.0]), shape), Ok((2, 0.0)));
        let (k, off) = slice_of(&at(&[3.3, 3.3, 3.3]), shape).expect("off but near");
        assert!(k == 3 && (off - 0.3).abs() < 1e-12);
        assert!(slice_of(&at(&[2.5, 2.5, 2.5]), shape).expect_err("halfway").contains("between slices 2 and 3"));
        assert!(slice_of(&at(&[1.0, 2.0, 3.0]), shape).expect_err("tilted").contains("not in one slice plane"));
        assert!(slice_of(&at(&[7.0, 7.0, 7.0]), shape).expect_err("outside").contains("outside the series' 5 slices"));
        assert!(slice_of(&at(&[-1.0, -1.0, -1.0]), shape).expect_err("below").contains("outside"));
    }

    #[test]
    fn a_hand_made_roi_with_bad_points_warns_and_draws_nothing() {
        use crate::geometry::LpsMm;
        use crate::volume::dicom::Contour;
        let grid = LabelMap::new(Array3::zeros((2, 3, 3)), RasFromVoxel::identity()).expect("grid");
        let nan = Contour { points: vec![LpsMm::new(f64::NAN, 0.0, 0.0), LpsMm::new(1.0, 0.0, 0.0), LpsMm::new(0.0, -1.0, 0.0)] };
        let two = Contour { points: vec![LpsMm::new(0.0, 0.0, 0.0), LpsMm::new(-1.0, 0.0, 0.0)] };
        let huge = Contour { points: vec![LpsMm::new(1e308, 0.0, 0.0), LpsMm::new(-1e308, 0.0, 0.0), LpsMm::new(0.0, -1e308, 1e308)] };
        let roi = Roi { number: 7, name: "Bad".into(), colour: None, frame_of_reference_uid: None, contours: vec![nan, two, huge, Contour { points: vec![] }] };
        let mut warnings = Vec::new();
        let mask = rasterise_roi(Path::new("/x/rt.dcm"), &roi, &grid, &mut warnings);
        assert!(!mask.iter().any(|&m| m));
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings.iter().all(|w| w.starts_with("rt.dcm: ROI 7 \"Bad\" contour ")), "{warnings:?}");
    }
}
