//! Segmentation metrics with voxel spacing: Dice, IoU, HD95, Hausdorff, ASSD, Chamfer (mm).
//!
//! # Definitions (those of DeepMind's `surface-distance` package)
//! - **Surface points** live on the *corner lattice*: the points between voxel centres, one
//!   per 2×2×2 block of voxels (including the blocks that straddle the grid border, so a mask
//!   touching the border is closed). Each corner gets an 8-bit *neighbour code* from its eight
//!   voxels; a corner is a surface point ("surfel") when its code is neither 0 (all outside)
//!   nor 255 (all inside).
//! - **Surfel area**: the marching-cubes triangles of that code, each triangle's normal vector
//!   scaled component-wise by the products of the other two spacings, lengths summed
//!   (`create_table_neighbour_code_to_surface_area`; the table is in `surfel_table.rs`,
//!   generated from the package).
//! - **Distances**: from every surfel of one mask to the nearest surfel of the other, Euclidean
//!   in mm between lattice points (an exact distance transform on the lattice).
//! - `avg_gt_to_pred` = Σ area·distance / Σ area over ground-truth surfels, and the other way
//!   round; **ASSD** = the mean of the two directed averages
//!   (`mean(compute_average_surface_distance)`), **Chamfer** = their sum.
//! - **HD95** (`compute_robust_hausdorff(·, 95)`): per direction, surfels sorted by
//!   (distance, area), the first whose cumulative area fraction reaches 0.95; the larger of the
//!   two directions. **HD** is the plain maximum distance.
//! - **Dice** = 2|P∩G| / (|P|+|G|), **IoU** = |P∩G| / |P∪G|, in voxel counts.
//!
//! # Empty masks (explicit, never NaN)
//! - Both empty: Dice = IoU = 1 and every distance = 0 (perfect agreement about absence).
//! - Exactly one empty: Dice = IoU = 0 and every distance is `None` (JSON `null`): there is
//!   no surface to measure to (`surface-distance` would give ∞ or NaN).
//!
//! Arrays are `[k, j, i]` and spacings `[si, sj, sk]`. The neighour code follows the package
//! applied to a nibabel-order `[i, j, k]` array, so results match it bit for bit up to float
//! rounding.

use super::ShapeError;
use super::sdf::squared_edt;
use crate::geometry::SpacingIjk;
use super::surfel_table::SURFEL_NORMALS;
use crate::volume::{LabelMap, OnGrid};
use ndarray::{Array3, ArrayView3, Axis, s};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Inclusive `[k, j, i]` bounds (lowest, highest).
type Box3 = ([usize; 3], [usize; 3]);

/// Metrics of one label, prediction against ground truth.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LabelMetrics {
    pub label: u16,
    pub dice: f64,
    pub iou: f64,
    pub hd95_mm: Option<f64>,
    pub hd_mm: Option<f64>,
    pub assd_mm: Option<f64>,
    pub chamfer_mm: Option<f64>,
    pub avg_gt_to_pred_mm: Option<f64>,
    pub avg_pred_to_gt_mm: Option<f64>,
    pub pred_voxels: usize,
    pub gt_voxels: usize,
}

/// Directed surface distances with surfel areas, sorted by (distance, area).
#[derive(Clone, Debug, Default)]
pub struct SurfaceDistances {
    /// (distance mm, area mm²) for every ground-truth surfel to the predicted surface.
    pub gt_to_pred: Vec<(f64, f64)>,
    /// (distance mm, area mm²) for every predicted surfel to the ground-truth surface.
    pub pred_to_gt: Vec<(f64, f64)>,
}

impl SurfaceDistances {
    /// Area-weighted average of each direction, `(gt→pred, pred→gt)`; `None` when a side has
    /// no surfels.
    pub fn averages(&self) -> (Option<f64>, Option<f64>) {
        (weighted_mean(&self.gt_to_pred), weighted_mean(&self.pred_to_gt))
    }

    /// Robust Hausdorff at `percent` (95 for HD95); `None` when a side has no surfels.
    pub fn robust_hausdorff(&self, percent: f64) -> Option<f64> {
        Some(percentile(&self.gt_to_pred, percent)?.max(percentile(&self.pred_to_gt, percent)?))
    }

    /// Largest surfel distance in either direction.
    pub fn hausdorff(&self) -> Option<f64> {
        let m = |v: &[(f64, f64)]| v.last().map(|x| x.0);
        Some(m(&self.gt_to_pred)?.max(m(&self.pred_to_gt)?))
    }
}

fn weighted_mean(v: &[(f64, f64)]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let (mut num, mut den) = (0.0, 0.0);
    for &(d, a) in v {
        num += d * a;
        den += a;
    }
    Some(num / den)
}

fn percentile(v: &[(f64, f64)], percent: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let total: f64 = v.iter().map(|x| x.1).sum();
    let want = percent / 100.0;
    let mut cum = 0.0;
    for (n, &(d, a)) in v.iter().enumerate() {
        cum += a;
        if cum / total >= want {
            return Some(d);
        }
        if n + 1 == v.len() {
            return Some(d);
        }
    }
    None
}

/// Surfel area per neighbour code for a spacing `[si, sj, sk]`.
pub fn surfel_areas(spacing_mm: [f64; 3]) -> [f64; 256] {
    let [s0, s1, s2] = spacing_mm;
    std::array::from_fn(|code| {
        SURFEL_NORMALS[code]
            .iter()
            .map(|n| {
                let v = [n[0] * s1 * s2, n[1] * s0 * s2, n[2] * s0 * s1];
                (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
            })
            .sum()
    })
}

/// Neighbour codes on the corner lattice of a `[k, j, i]` mask crop, shape `[nk+1, nj+1, ni+1]`.
/// Corner `(ck, cj, ci)` sees voxels `(ck−1+dk, cj−1+dj, ci−1+di)`; the package's kernel gives
/// voxel offset `(di, dj, dk)` (its axes are nibabel's i, j, k) the bit `7 − (4·di + 2·dj + dk)`.
fn neighbour_codes(mask: ArrayView3<bool>) -> Array3<u8> {
    let [nk, nj, ni] = [mask.shape()[0], mask.shape()[1], mask.shape()[2]];
    // Zero-padded copy: padded[k + 1][j + 1][i + 1] = mask[k][j][i].
    let mut padded = Array3::<u8>::zeros((nk + 2, nj + 2, ni + 2));
    padded.slice_mut(s![1..nk + 1, 1..nj + 1, 1..ni + 1]).zip_mut_with(&mask, |p, &m| *p = m as u8);
    let mut codes = Array3::<u8>::zeros((nk + 1, nj + 1, ni + 1));
    let padded = &padded;
    codes.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(ck, mut plane)| {
        for (cj, mut out) in plane.rows_mut().into_iter().enumerate() {
            let Some(out) = out.as_slice_mut() else { continue };
            for dk in 0..2 {
                for dj in 0..2 {
                    let row = padded.slice(s![ck + dk, cj + dj, ..]);
                    let Some(row) = row.as_slice() else { continue };
                    let (b0, b1) = (7 - (2 * dj + dk), 7 - (4 + 2 * dj + dk));
                    // Corner ci sees padded voxels ci (di = 0) and ci + 1 (di = 1).
                    for ((o, &lo), &hi) in out.iter_mut().zip(&row[..ni + 1]).zip(&row[1..]) {
                        *o |= (lo << b0) | (hi << b1);
                    }
                }
            }
        }
    });
    codes
}

/// Surface distances between two masks (`[k, j, i]`, same shape), spacing `[si, sj, sk]`.
/// Empty sides give empty lists.
pub fn surface_distances(pred: ArrayView3<bool>, gt: ArrayView3<bool>, spacing_mm: [f64; 3]) -> SurfaceDistances {
    let boxes = (super::sdf::bounding_box(pred), super::sdf::bounding_box(gt));
    let (lo, hi) = match boxes {
        (None, None) => return SurfaceDistances::default(),
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) => union_box(a, b),
    };
    let cut = s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]];
    let (pred, gt) = (pred.slice(cut), gt.slice(cut));
    let areas = surfel_areas(spacing_mm);
    let (codes_p, codes_g) = rayon::join(|| neighbour_codes(pred), || neighbour_codes(gt));
    let border = |c: &Array3<u8>| c.mapv(|x| x != 0 && x != 255);
    let (border_p, border_g) = (border(&codes_p), border(&codes_g));
    let (dist_to_p, dist_to_g) = rayon::join(
        || border_p.iter().any(|&b| b).then(|| squared_edt(border_p.view(), SpacingIjk(spacing_mm))),
        || border_g.iter().any(|&b| b).then(|| squared_edt(border_g.view(), SpacingIjk(spacing_mm))),
    );
    let collect = |codes: &Array3<u8>, dist: &Option<Array3<f32>>| -> Vec<(f64, f64)> {
        let mut v: Vec<(f64, f64)> = codes
            .iter()
            .zip(dist.iter().flat_map(|d| d.iter()).map(Some).chain(std::iter::repeat(None)))
            .filter(|(c, _)| **c != 0 && **c != 255)
            .map(|(c, d)| (d.map_or(f64::INFINITY, |d| (*d as f64).sqrt()), areas[*c as usize]))
            .collect();
        v.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        v
    };
    let (gt_to_pred, pred_to_gt) = rayon::join(|| collect(&codes_g, &dist_to_p), || collect(&codes_p, &dist_to_g));
    SurfaceDistances { gt_to_pred, pred_to_gt }
}

/// All metrics of one pair of masks (see the module doc for definitions and empty cases).
pub fn mask_metrics(label: u16, pred: ArrayView3<bool>, gt: ArrayView3<bool>, spacing_mm: [f64; 3]) -> LabelMetrics {
    let (mut np, mut ng, mut both) = (0usize, 0usize, 0usize);
    ndarray::Zip::from(&pred).and(&gt).for_each(|&p, &g| {
        np += p as usize;
        ng += g as usize;
        both += (p && g) as usize;
    });
    let mut m = LabelMetrics {
        label,
        dice: 0.0,
        iou: 0.0,
        hd95_mm: None,
        hd_mm: None,
        assd_mm: None,
        chamfer_mm: None,
        avg_gt_to_pred_mm: None,
        avg_pred_to_gt_mm: None,
        pred_voxels: np,
        gt_voxels: ng,
    };
    match (np, ng) {
        (0, 0) => {
            m.dice = 1.0;
            m.iou = 1.0;
            for x in [&mut m.hd95_mm, &mut m.hd_mm, &mut m.assd_mm, &mut m.chamfer_mm, &mut m.avg_gt_to_pred_mm, &mut m.avg_pred_to_gt_mm] {
                *x = Some(0.0);
            }
        }
        (0, _) | (_, 0) => {}
        _ => {
            m.dice = 2.0 * both as f64 / (np + ng) as f64;
            m.iou = both as f64 / (np + ng - both) as f64;
            let sd = surface_distances(pred, gt, spacing_mm);
            let (g2p, p2g) = sd.averages();
            m.avg_gt_to_pred_mm = g2p;
            m.avg_pred_to_gt_mm = p2g;
            if let (Some(a), Some(b)) = (g2p, p2g) {
                m.assd_mm = Some(0.5 * (a + b));
                m.chamfer_mm = Some(a + b);
            }
            m.hd95_mm = sd.robust_hausdorff(95.0);
            m.hd_mm = sd.hausdorff();
        }
    }
    m
}

/// Inclusive `[k, j, i]` bounding box of every non-zero label of a label array.
fn label_boxes(labels: ArrayView3<u16>) -> BTreeMap<u16, Box3> {
    let per_k: Vec<BTreeMap<u16, Box3>> = labels
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(k, plane)| {
            let mut m: BTreeMap<u16, Box3> = BTreeMap::new();
            for (j, row) in plane.rows().into_iter().enumerate() {
                // Labels come in runs along a row: one map update per run.
                let mut i = 0;
                let n = row.len();
                while i < n {
                    let l = row[i];
                    let start = i;
                    while i < n && row[i] == l {
                        i += 1;
                    }
                    if l != 0 {
                        let b = m.entry(l).or_insert(([k, j, start], [k, j, i - 1]));
                        b.0[1] = b.0[1].min(j);
                        b.0[2] = b.0[2].min(start);
                        b.1[1] = b.1[1].max(j);
                        b.1[2] = b.1[2].max(i - 1);
                    }
                }
            }
            m
        })
        .collect();
    let mut all = BTreeMap::new();
    for m in per_k {
        for (l, b) in m {
            all.entry(l).and_modify(|a: &mut Box3| *a = union_box(*a, b)).or_insert(b);
        }
    }
    all
}

fn union_box(a: Box3, b: Box3) -> Box3 {
    (
        [a.0[0].min(b.0[0]), a.0[1].min(b.0[1]), a.0[2].min(b.0[2])],
        [a.1[0].max(b.1[0]), a.1[1].max(b.1[1]), a.1[2].max(b.1[2])],
    )
}

/// Metrics for every label present in either array (`[k, j, i]`, same shape), sorted by label.
pub fn label_metrics(pred: ArrayView3<u16>, gt: ArrayView3<u16>, spacing_mm: [f64; 3]) -> Vec<LabelMetrics> {
    let (bp, bg) = rayon::join(|| label_boxes(pred), || label_boxes(gt));
    let mut boxes = bp;
    for (l, b) in bg {
        boxes.entry(l).and_modify(|a| *a = union_box(*a, b)).or_insert(b);
    }
    let boxes: Vec<(u16, Box3)> = boxes.into_iter().collect();
    boxes
        .par_iter()
        .map(|&(l, (lo, hi))| {
            // Everything about label l happens inside its union box: crop before building masks.
            let cut = s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]];
            let p = pred.slice(cut).mapv(|v| v == l);
            let g = gt.slice(cut).mapv(|v| v == l);
            mask_metrics(l, p.view(), g.view(), spacing_mm)
        })
        .collect()
}

/// [`mask_metrics`] of a mask against one label of a label array of the same shape (the
/// viewer's candidate against the reference label under the click), computed on the box that
/// holds both: the whole grid's figures at the cost of the box.
///
/// Panics when the two arrays differ in shape.
pub fn mask_label_metrics(pred: ArrayView3<bool>, labels: ArrayView3<u16>, label: u16, spacing_mm: [f64; 3]) -> LabelMetrics {
    assert_eq!(pred.shape(), labels.shape(), "a mask and a label map on different grids");
    let (bp, bg) = rayon::join(|| super::sdf::bounding_box(pred), || super::sdf::bounding_box_by(labels, |&v| v == label));
    let (lo, hi) = match (bp, bg) {
        (Some(a), Some(b)) => union_box(a, b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return mask_metrics(label, pred, labels.mapv(|v| v == label).view(), spacing_mm),
    };
    let cut = s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]];
    let g = labels.slice(cut).mapv(|v| v == label);
    mask_metrics(label, pred.slice(cut), g.view(), spacing_mm)
}

/// Metrics of two label maps, which must share one grid (the error names both files).
pub fn compare_label_maps(pred: &LabelMap, gt: &LabelMap, pred_path: &Path, gt_path: &Path) -> Result<Vec<LabelMetrics>, ShapeError> {
    if pred.shape() != gt.shape() {
        return Err(ShapeError::new(
            pred_path,
            format!("grid {} does not match {}'s {}", pred.shape(), gt_path.display(), gt.shape()),
        ));
    }
    let tol = 1e-3 * gt.spacing_mm().iter().cloned().fold(f64::INFINITY, f64::min);
    if !pred.same_grid(gt, tol) {
        return Err(ShapeError::new(
            pred_path,
            format!("affine does not match {}'s (same shape {}, different voxel positions)", gt_path.display(), gt.shape()),
        ));
    }
    Ok(label_metrics(pred.data.view(), gt.data.view(), gt.spacing_mm()))
}
