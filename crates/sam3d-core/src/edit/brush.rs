//! Paint and erase with a brush sized in millimetres: a disc in one slice of a view, or a
//! sphere, stamped along a stroke.
//!
//! **Which voxels a stroke covers.** A stroke is the segment from `from` to `to` (a click is a
//! segment of length 0). A voxel is covered when
//! - its centre's RAS distance (through the label map's affine, so anisotropic, oblique and
//!   sheared grids are measured in millimetres) to the segment is at most the radius, or
//! - the segment passes through it (the voxel under the brush centre at some moment of the
//!   drag), so a brush smaller than a voxel still paints, and paints a line without gaps.
//!
//! That is the union of the brush stamped at every point of the segment, not at sample points:
//! however fast the drag (however far apart two pointer positions are), it leaves no gap.
//! For a [`BrushShape::Disc`] only the slice of the view through `to` counts: voxels whose index
//! along the view's normal voxel axis ([`normal_voxel_axis`], the axis the slice views use) is
//! that of `to`, with both ends of the segment moved along that axis into the slice (a stroke is
//! drawn on one slice; a scroll during a drag paints on the slice now shown).
//!
//! A distance within 1e-9 (relative) of the radius counts as inside, so a voxel exactly on the
//! rim (a 2 mm brush on a 1 mm grid) is painted whatever the rounding.
//!
//! **Cost.** Only the bounding box of the brush around each piece of the segment is walked
//! (pieces about a radius long, so a long diagonal drag does not walk the box of the whole
//! segment): a 10 mm sphere on a 0.7 × 0.7 × 2.5 mm CT is about 15 000 voxel tests.
//!
//! Points outside the volume are not an error: the part of the brush inside the grid is painted
//! (none when it is wholly outside). Non-finite points or radii are an error.

use super::ops::in_plane_axes;
use super::{Brush, BrushShape, Edit, EditError, Paint, Recorder, flat_mut, normal_voxel_axis};
use crate::geometry::{ArrayIdx, GridShape, RasMm};
use crate::volume::{LabelMap, OnGrid, StoredVolume};
use nalgebra::{Matrix3, Vector3};

/// Paints `paint.label` over the voxels the brush covers along the segment `from` → `to`, as
/// `paint.rule` allows and, with `paint.range`, only where `intensities` (the volume's data, on
/// the map's grid) is in the range. Returns the edit (voxels in increasing index order).
pub fn stroke(
    map: &mut LabelMap,
    from: RasMm,
    to: RasMm,
    brush: &Brush,
    paint: &Paint,
    intensities: Option<&StoredVolume>,
) -> Result<Edit, EditError> {
    let shape = map.shape();
    let gate = Gate::new(paint, intensities, shape)?;
    let cover = Cover::new(map, from, to, brush)?;
    let (data, _) = flat_mut(map);
    let mut rec = Recorder::new(data, paint.label, paint.rule);
    if let Some(cover) = cover {
        cover.for_each(|n, kji| {
            if gate.admits(kji) {
                rec.put(n);
            }
        });
    }
    Ok(rec.finish())
}

/// One stamp of the brush at `at`: a stroke of length 0.
pub fn stamp(map: &mut LabelMap, at: RasMm, brush: &Brush, paint: &Paint, intensities: Option<&StoredVolume>) -> Result<Edit, EditError> {
    stroke(map, at, at, brush, paint, intensities)
}

/// The flat (C-order) indices of the voxels a stroke covers, whatever they hold, in increasing
/// order: the preview of a stroke, and what [`stroke`] paints when the rule and range allow all.
pub fn footprint(map: &LabelMap, from: RasMm, to: RasMm, brush: &Brush) -> Result<Vec<usize>, EditError> {
    let mut v = Vec::new();
    if let Some(cover) = Cover::new(map, from, to, brush)? {
        cover.for_each(|n, _| v.push(n));
    }
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// The threshold of a threshold paint: which voxels the intensities admit.
struct Gate<'v> {
    range: Option<(super::IntensityRange, &'v StoredVolume)>,
}

impl<'v> Gate<'v> {
    fn new(paint: &Paint, intensities: Option<&'v StoredVolume>, shape: GridShape) -> Result<Self, EditError> {
        if let Some(v) = &intensities
            && v.shape() != shape
        {
            return Err(EditError::GridMismatch { labels: shape, volume: v.shape() });
        }
        match (paint.range, intensities) {
            (None, _) => Ok(Gate { range: None }),
            (Some(_), None) => Err(EditError::NoIntensities),
            (Some(r), Some(v)) => {
                r.check()?;
                Ok(Gate { range: Some((r, v)) })
            }
        }
    }

    #[inline]
    fn admits(&self, kji: [usize; 3]) -> bool {
        match &self.range {
            None => true,
            Some((r, v)) => v.value(ArrayIdx { k: kji[0], j: kji[1], i: kji[2] }).is_some_and(|x| r.contains(x)),
        }
    }
}

/// The voxels a stroke covers, as geometry: the segment in continuous voxel coordinates
/// (i, j, k), the affine's linear part, and the brush's half extent along each voxel axis.
struct Cover {
    /// `[ni, nj, nk]`.
    n: [usize; 3],
    /// RAS from voxel, linear part (distances need no translation).
    a: Matrix3<f64>,
    p0: Vector3<f64>,
    p1: Vector3<f64>,
    r: f64,
    /// Half extent (voxels) of the brush along i, j, k: the box of the ellipsoid (or, for a
    /// disc, of the ellipse in the slice) that the RAS ball is in voxel coordinates.
    half: [f64; 3],
    /// The disc's normal axis and slice index.
    slice: Option<(usize, usize)>,
    /// Length of one piece of the segment whose box is walked at once (mm).
    piece_mm: f64,
}

/// Voxel tests closer to the radius than this (relative) count as inside.
const RIM: f64 = 1e-9;

impl Cover {
    /// `None` when the brush misses the grid altogether (a disc whose slice is outside it).
    fn new(map: &LabelMap, from: RasMm, to: RasMm, brush: &Brush) -> Result<Option<Self>, EditError> {
        brush.check()?;
        for (what, p) in [("stroke start", from), ("stroke end", to)] {
            if !p.is_finite() {
                return Err(EditError::Invalid { what, problem: format!("{p:?} is not a point") });
            }
        }
        let affine = map.ras_from_voxel;
        let inv = affine
            .try_inverse()
            .map_err(|e| EditError::Invalid { what: "label map affine", problem: e.to_string() })?;
        let shape = map.shape();
        let n = shape.ijk();
        if shape.is_empty() {
            return Ok(None);
        }
        let a = affine.linear();
        let ainv = inv.linear();
        let (mut p0, mut p1) = (inv.apply(from).v, inv.apply(to).v);
        let r = brush.radius_mm;
        let (half, slice) = match brush.shape {
            BrushShape::Sphere => {
                // The RAS ball |A·d| ≤ r is the ellipsoid dᵀ(AᵀA)d ≤ r²; its half extent along
                // voxel axis a is r·√((AᵀA)⁻¹)ₐₐ = r·|row a of A⁻¹|.
                (std::array::from_fn(|ax| r * ainv.row(ax).norm()), None)
            }
            BrushShape::Disc(plane) => {
                let nx = normal_voxel_axis(plane, &affine);
                let s = p1[nx].round();
                if !(s >= 0.0 && s < n[nx] as f64) {
                    return Ok(None);
                }
                p0[nx] = s;
                p1[nx] = s;
                // In the slice, the ball is the ellipse dᵀGd ≤ r² with G the Gram matrix of the
                // two in-slice voxel steps; its half extents are r·√(G⁻¹)ₐₐ.
                let [u, v] = in_plane_axes(nx);
                let (cu, cv) = (a.column(u), a.column(v));
                let (guu, gvv, guv) = (cu.dot(&cu), cv.dot(&cv), cu.dot(&cv));
                let det = guu * gvv - guv * guv;
                let mut half = [0.0; 3];
                if det > 0.0 {
                    half[u] = r * (gvv / det).sqrt();
                    half[v] = r * (guu / det).sqrt();
                }
                (half, Some((nx, s as usize)))
            }
        };
        // Only the part of the segment within the brush's reach of the grid can cover a voxel:
        // a point within r of a voxel centre is within `half` of it along every voxel axis, and
        // a voxel the segment crosses is within half a voxel. Clipping to that slab keeps the
        // work proportional to the grid whatever the end points (a drag far off the volume).
        let d = p1 - p0;
        let (mut t0, mut t1) = (0.0f64, 1.0f64);
        for ax in 0..3 {
            let reach = half[ax].max(0.5) + 1.0;
            let (lo, hi) = (-reach, (n[ax] - 1) as f64 + reach);
            if d[ax] == 0.0 {
                if p0[ax] < lo || p0[ax] > hi {
                    return Ok(None);
                }
            } else {
                let (a0, a1) = ((lo - p0[ax]) / d[ax], (hi - p0[ax]) / d[ax]);
                t0 = t0.max(a0.min(a1));
                t1 = t1.min(a0.max(a1));
            }
        }
        if t0 > t1 {
            return Ok(None);
        }
        let (p0, p1) = (p0 + d * t0, p0 + d * t1);
        let min_step = affine.column_norms().into_iter().fold(f64::INFINITY, f64::min);
        Ok(Some(Cover { n, a, p0, p1, r, half, slice, piece_mm: r.max(min_step) }))
    }

    /// Calls `f(flat index, [k, j, i])` for every covered voxel, some more than once.
    fn for_each(&self, mut f: impl FnMut(usize, [usize; 3])) {
        let [ni, nj, nk] = self.n;
        let flat = |[k, j, i]: [usize; 3]| (k * nj + j) * ni + i;
        // Voxels within the radius of the segment, piece by piece.
        let d = self.p1 - self.p0;
        let len_mm = (self.a * d).norm();
        let pieces = ((len_mm / self.piece_mm).ceil() as usize).clamp(1, 1 << 20);
        let r2 = self.r * self.r * (1.0 + RIM);
        for s in 0..pieces {
            let q0 = self.p0 + d * (s as f64 / pieces as f64);
            let q1 = self.p0 + d * ((s + 1) as f64 / pieces as f64);
            let Some([lo, hi]) = self.piece_box(q0, q1) else { continue };
            let seg = self.a * (q1 - q0);
            let seg2 = seg.norm_squared();
            for k in lo[2]..=hi[2] {
                for j in lo[1]..=hi[1] {
                    // RAS offset of the row's first voxel from the piece's start; one column
                    // of A further per voxel along i.
                    let mut x = self.a * (Vector3::new(lo[0] as f64, j as f64, k as f64) - q0);
                    let step = self.a.column(0).into_owned();
                    for i in lo[0]..=hi[0] {
                        let t = if seg2 > 0.0 { (x.dot(&seg) / seg2).clamp(0.0, 1.0) } else { 0.0 };
                        if (x - seg * t).norm_squared() <= r2 {
                            f(flat([k, j, i]), [k, j, i]);
                        }
                        x += step;
                    }
                }
            }
        }
        // The voxels the segment passes through: samples at most half a voxel apart along every
        // axis, so consecutive nearest voxels are neighbours (26-connected) and none is skipped.
        let most = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let samples = ((most / 0.5).ceil() as usize).min(1 << 24);
        let shape = GridShape::new(ni, nj, nk);
        let mut last = None;
        for s in 0..=samples {
            let t = if samples == 0 { 0.0 } else { s as f64 / samples as f64 };
            let p = self.p0 + d * t;
            if let Some(idx) = shape.array_index(crate::geometry::VoxelIjk::from_vec(p)) {
                let kji = idx.as_kji();
                if last != Some(kji) {
                    f(flat(kji), kji);
                    last = Some(kji);
                }
            }
        }
    }

    /// The voxel box (`[i, j, k]` first and last) of the brush swept along `q0` → `q1`, clipped
    /// to the grid; `None` when it misses it.
    fn piece_box(&self, q0: Vector3<f64>, q1: Vector3<f64>) -> Option<[[usize; 3]; 2]> {
        let mut lo = [0usize; 3];
        let mut hi = [0usize; 3];
        for ax in 0..3 {
            if let Some((nx, s)) = self.slice
                && ax == nx
            {
                (lo[ax], hi[ax]) = (s, s);
                continue;
            }
            let top = (self.n[ax] - 1) as f64;
            let pad = self.half[ax] * (1.0 + RIM) + 1e-9;
            let a = (q0[ax].min(q1[ax]) - pad).ceil();
            let b = (q0[ax].max(q1[ax]) + pad).floor();
            if !(a <= top && b >= 0.0 && a <= b) {
                return None;
            }
            lo[ax] = a.max(0.0) as usize;
            hi[ax] = b.min(top) as usize;
        }
        Some([lo, hi])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::{IntensityRange, Overwrite, redo_edit, undo_edit};
    use crate::geometry::{ArrayIdx, RasFromVoxel, ViewPlane, VoxelIjk};
    use nalgebra::Matrix3;
    use ndarray::Array3;

    fn grid(shape_kji: (usize, usize, usize), affine: RasFromVoxel) -> LabelMap {
        LabelMap::new(Array3::zeros(shape_kji), affine).expect("grid")
    }

    /// The definition by brute force over every voxel of the grid: the voxels whose centre is
    /// within `r` of the segment (measured in RAS; for a disc, in its slice), and the voxels the
    /// segment passes through (exact slab test on each voxel's cell, closed). A stroke must
    /// paint all of the first and nothing outside both.
    fn brute(map: &LabelMap, from: RasMm, to: RasMm, r: f64, slice: Option<(usize, usize)>) -> (Vec<usize>, Vec<usize>) {
        let shape = map.shape();
        let inv = map.voxel_from_ras();
        let (mut a, mut b) = (inv.apply(from).v, inv.apply(to).v);
        if let Some((nx, s)) = slice {
            a[nx] = s as f64;
            b[nx] = s as f64;
        }
        let (f, t) = (map.ras_from_voxel.apply(VoxelIjk::from_vec(a)), map.ras_from_voxel.apply(VoxelIjk::from_vec(b)));
        let seg = t.v - f.v;
        let (mut near, mut crossed) = (Vec::new(), Vec::new());
        for ((k, j, i), _) in map.data.indexed_iter() {
            if slice.is_some_and(|(nx, s)| [i, j, k][nx] != s) {
                continue;
            }
            let n = (k * shape.nj + j) * shape.ni + i;
            let x = map.ras_of(ArrayIdx { k, j, i }).v - f.v;
            let u = if seg.norm_squared() > 0.0 { (x.dot(&seg) / seg.norm_squared()).clamp(0.0, 1.0) } else { 0.0 };
            if (x - seg * u).norm() <= r {
                near.push(n);
            }
            // Slab test: the part of [0, 1] where a + (b − a)·t is in the cell along every axis.
            let (mut t0, mut t1) = (0.0f64, 1.0f64);
            for (ax, c) in [i, j, k].into_iter().enumerate() {
                let (lo, hi, d) = (c as f64 - 0.5 - 1e-9, c as f64 + 0.5 + 1e-9, b[ax] - a[ax]);
                if d == 0.0 {
                    if a[ax] < lo || a[ax] > hi {
                        t1 = -1.0;
                    }
                } else {
                    let (p, q) = ((lo - a[ax]) / d, (hi - a[ax]) / d);
                    t0 = t0.max(p.min(q));
                    t1 = t1.min(p.max(q));
                }
            }
            if t0 <= t1 {
                crossed.push(n);
            }
        }
        (near, crossed)
    }

    /// `got` holds every voxel of `near`, and nothing outside `near ∪ crossed`.
    fn check(got: &[usize], (near, crossed): &(Vec<usize>, Vec<usize>)) {
        let missing: Vec<_> = near.iter().filter(|n| got.binary_search(n).is_err()).collect();
        assert!(missing.is_empty(), "voxels within the radius not painted: {missing:?}");
        let extra: Vec<_> = got.iter().filter(|n| near.binary_search(n).is_err() && crossed.binary_search(n).is_err()).collect();
        assert!(extra.is_empty(), "voxels painted that are neither within the radius nor crossed: {extra:?}");
    }

    /// A stamp (a segment of length 0) is exactly the voxels within the radius plus the one
    /// under the centre.
    fn exact_stamp(map: &LabelMap, c: RasMm, r: f64, slice: Option<(usize, usize)>) -> Vec<usize> {
        let (mut near, _) = brute(map, c, c, r, slice);
        let inv = map.voxel_from_ras();
        let mut v = inv.apply(c);
        if let Some((nx, s)) = slice {
            v.v[nx] = s as f64;
        }
        if let Some(a) = map.shape().array_index(v) {
            near.push((a.k * map.shape().nj + a.j) * map.shape().ni + a.i);
        }
        near.sort_unstable();
        near.dedup();
        near
    }

    fn aniso() -> RasFromVoxel {
        RasFromVoxel::scale_translate([0.7, 0.7, 2.5], [-10.0, 4.0, 30.0])
    }

    /// A rotation about an oblique axis times anisotropic spacing, plus a shear of the k column.
    fn oblique() -> RasFromVoxel {
        let (s, c) = (25f64.to_radians().sin(), 25f64.to_radians().cos());
        let rz = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0);
        let rx = Matrix3::new(1.0, 0.0, 0.0, 0.0, c, -s, 0.0, s, c);
        let shear = Matrix3::new(1.0, 0.0, 0.3, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0);
        RasFromVoxel::from_parts(rz * rx * Matrix3::from_diagonal(&Vector3::new(0.8, 1.1, 2.0)) * shear, Vector3::new(12.0, -40.0, 7.0))
    }

    /// A 5 mm sphere on a 0.7 × 0.7 × 2.5 mm grid: exactly the voxels the brute force over the
    /// whole grid finds (so the box walked is big enough), about the analytic ellipsoid's
    /// count (427 voxels), and symmetric in the way the grid is.
    #[test]
    fn sphere_on_an_anisotropic_grid() {
        let map = grid((12, 30, 30), aniso());
        let c = map.ras_from_voxel.apply(VoxelIjk::new(14.3, 15.1, 5.6));
        let got = footprint(&map, c, c, &Brush::sphere(5.0)).expect("stamp");
        assert_eq!(got, exact_stamp(&map, c, 5.0, None));
        let analytic = 4.0 / 3.0 * std::f64::consts::PI * 125.0 / (0.7 * 0.7 * 2.5);
        let n = got.len() as f64;
        assert!((n / analytic - 1.0).abs() < 0.08, "{n} voxels vs {analytic:.1}");
        // Along k (2.5 mm) it spans at most 5 slices (±2 from 5.6: 4..=7, 3.5 → 10 mm), along i
        // at most 15 columns (±7 × 0.7 mm = 4.9 mm).
        let ks: Vec<usize> = got.iter().map(|n| n / 900).collect();
        assert_eq!((ks.iter().min(), ks.iter().max()), (Some(&4), Some(&7)));
        let is: Vec<usize> = got.iter().map(|n| n % 30).collect();
        assert_eq!((is.iter().min(), is.iter().max()), (Some(&8), Some(&21)));
    }

    /// On a rotated, sheared grid the brush is still a ball in millimetres.
    #[test]
    fn oblique_sheared_affine_measures_in_millimetres() {
        let map = grid((14, 16, 18), oblique());
        for (v, r) in [(VoxelIjk::new(8.2, 7.7, 6.4), 4.0), (VoxelIjk::new(0.3, 15.4, 2.0), 6.5), (VoxelIjk::new(9.0, 8.0, 7.0), 2.0)] {
            let c = map.ras_from_voxel.apply(v);
            let got = footprint(&map, c, c, &Brush::sphere(r)).expect("stamp");
            assert_eq!(got, exact_stamp(&map, c, r, None), "{v:?} r {r}");
            for &n in &got {
                let a = ArrayIdx { k: n / (16 * 18), j: n / 18 % 16, i: n % 18 };
                let centre_voxel = map.index_of_ras(c);
                assert!(map.ras_of(a).distance(&c) <= r * (1.0 + 1e-9) || Some(a) == centre_voxel);
            }
        }
        // A stroke on the same grid.
        let (a, b) = (map.ras_from_voxel.apply(VoxelIjk::new(2.0, 3.0, 1.0)), map.ras_from_voxel.apply(VoxelIjk::new(15.0, 12.0, 11.0)));
        check(&footprint(&map, a, b, &Brush::sphere(1.7)).expect("stroke"), &brute(&map, a, b, 1.7, None));
    }

    /// A strongly sheared grid (a tilted gantry, a sheared in-plane frame): the box the brush's
    /// ball spans in voxel indices is wider than radius / spacing, along i by √(1 + 0.8²) in the
    /// slice and more in 3D, and every voxel of the ball must still be found.
    #[test]
    fn a_strongly_sheared_grid_is_covered() {
        // Columns: i = (1, 0, 0), j = (0.8, 1, 0), k = (0.9, 0, 2).
        let lin = Matrix3::new(1.0, 0.8, 0.9, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0);
        let map = grid((12, 20, 30), RasFromVoxel::from_parts(lin, Vector3::new(-3.0, 2.0, 1.0)));
        assert_eq!(normal_voxel_axis(ViewPlane::Axial, &map.ras_from_voxel), 2);
        let c = map.ras_from_voxel.apply(VoxelIjk::new(14.6, 9.3, 5.8));
        for r in [3.0, 5.5] {
            assert_eq!(footprint(&map, c, c, &Brush::sphere(r)).expect("sphere"), exact_stamp(&map, c, r, None), "sphere {r}");
            let disc = footprint(&map, c, c, &Brush::disc(ViewPlane::Axial, r)).expect("disc");
            assert_eq!(disc, exact_stamp(&map, c, r, Some((2, 6))), "disc {r}");
        }
    }

    /// A brush smaller than half a voxel paints the voxel under its centre, and only it.
    #[test]
    fn a_tiny_brush_paints_the_voxel_under_it() {
        let mut map = grid((6, 6, 6), aniso());
        let c = map.ras_from_voxel.apply(VoxelIjk::new(2.4, 3.3, 1.45));
        let e = stamp(&mut map, c, &Brush::sphere(0.1), &Paint::new(7, Overwrite::All), None).expect("stamp");
        assert_eq!(e.indices, vec![(36 + 3 * 6) + 2]);
        let z = stamp(&mut map, c, &Brush::disc(ViewPlane::Coronal, 0.0), &Paint::new(8, Overwrite::All), None).expect("stamp");
        assert_eq!((z.indices, z.previous), (vec![(36 + 3 * 6) + 2], vec![7]));
    }

    /// A disc paints only the slice its view shows: on a permuted, flipped affine the axial
    /// view's normal is voxel j, so every painted voxel has the j of the centre.
    #[test]
    fn a_disc_paints_one_slice_of_its_view() {
        let lin = Matrix3::new(0.0, 0.0, -2.0, 0.9, 0.0, 0.0, 0.0, 1.5, 0.0);
        let map = grid((10, 12, 14), RasFromVoxel::from_parts(lin, Vector3::new(3.0, -2.0, 1.0)));
        let v = VoxelIjk::new(6.3, 5.2, 4.6);
        let c = map.ras_from_voxel.apply(v);
        for (plane, nx, s) in [(ViewPlane::Axial, 1, 5), (ViewPlane::Coronal, 0, 6), (ViewPlane::Sagittal, 2, 5)] {
            let got = footprint(&map, c, c, &Brush::disc(plane, 4.0)).expect("disc");
            let idx = |n: usize| [n % 14, n / 14 % 12, n / (14 * 12)];
            assert!(got.iter().all(|&n| idx(n)[nx] == s), "{plane:?}");
            assert_eq!(got, exact_stamp(&map, c, 4.0, Some((nx, s))), "{plane:?}");
            // A disc of 4 mm: π·16 mm² over the in-slice face.
            let face = [1.5 * 2.0, 0.9 * 2.0, 0.9 * 1.5][nx];
            let want = std::f64::consts::PI * 16.0 / face;
            assert!((got.len() as f64 / want - 1.0).abs() < 0.2, "{plane:?} {} vs {want:.1}", got.len());
        }
    }

    /// The overwrite rule: another label under the brush is kept under "background only",
    /// replaced under "all", and an erase removes only what the rule names.
    #[test]
    fn the_rule_keeps_another_label_and_erase_follows_it() {
        let mut data = Array3::<u16>::zeros((1, 9, 9));
        data.slice_mut(ndarray::s![.., 3..6, 0..4]).fill(2);
        let base = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let c = RasMm::new(4.0, 4.0, 0.0);
        let brush = Brush::disc(ViewPlane::Axial, 3.0);
        let area = footprint(&base, c, c, &brush).expect("disc");
        let twos = area.iter().filter(|&&n| data.as_slice().expect("c order")[n] == 2).count();
        assert!(twos > 0 && twos < area.len());

        let mut map = base.clone();
        let e = stamp(&mut map, c, &brush, &Paint::new(1, Overwrite::Background), None).expect("paint");
        assert_eq!(e.indices.len(), area.len() - twos);
        assert_eq!(map.data.iter().filter(|&&l| l == 2).count(), 12, "label 2 kept");
        let e2 = stamp(&mut map, c, &brush, &Paint::new(1, Overwrite::All), None).expect("paint");
        assert_eq!((e2.indices.len(), e2.previous.iter().all(|&p| p == 2)), (twos, true));

        // Erase: "background only" erases nothing; "label 2 only" only the 2s; "all" everything.
        let mut map = base.clone();
        stamp(&mut map, c, &brush, &Paint::new(1, Overwrite::Background), None).expect("paint");
        assert!(stamp(&mut map, c, &brush, &Paint::erase(Overwrite::Background), None).expect("erase").is_empty());
        let only2 = stamp(&mut map, c, &brush, &Paint::erase(Overwrite::Label(2)), None).expect("erase");
        assert_eq!((only2.indices.len(), only2.label), (twos, 0));
        let all = stamp(&mut map, c, &brush, &Paint::erase(Overwrite::All), None).expect("erase");
        assert_eq!(all.indices.len(), area.len() - twos);
        assert_eq!(map.data.iter().filter(|&&l| l != 0).count(), 12 - twos);
    }

    /// A long, fast, diagonal drag: every voxel within the radius of the segment is painted
    /// (and nothing further than the radius except voxels the segment crosses), on an
    /// anisotropic grid; a hair-thin stroke is a 26-connected line from end to end.
    #[test]
    fn a_stroke_leaves_no_gaps() {
        let mut map = grid((16, 40, 40), aniso());
        let (a, b) = (map.ras_from_voxel.apply(VoxelIjk::new(1.2, 2.7, 1.1)), map.ras_from_voxel.apply(VoxelIjk::new(37.6, 36.1, 14.2)));
        let e = stroke(&mut map, a, b, &Brush::sphere(1.6), &Paint::new(1, Overwrite::All), None).expect("stroke");
        let expected = brute(&map, a, b, 1.6, None);
        check(&e.indices, &expected);
        assert!(expected.0.len() > 300, "{}", expected.0.len());
        // Whatever the piece boxes, a disc stroke across a slice too.
        let (c, d) = (map.ras_from_voxel.apply(VoxelIjk::new(39.0, 0.4, 7.0)), map.ras_from_voxel.apply(VoxelIjk::new(0.2, 38.9, 7.0)));
        let disc = footprint(&map, c, d, &Brush::disc(ViewPlane::Axial, 2.2)).expect("disc stroke");
        check(&disc, &brute(&map, c, d, 2.2, Some((2, 7))));

        // Thin: radius 0 on a disc, from one corner of the slice to the other.
        let mut map = grid((3, 40, 40), aniso());
        let (a, b) = (map.ras_from_voxel.apply(VoxelIjk::new(0.0, 1.0, 1.0)), map.ras_from_voxel.apply(VoxelIjk::new(39.0, 25.0, 1.0)));
        let e = stroke(&mut map, a, b, &Brush::disc(ViewPlane::Axial, 0.0), &Paint::new(1, Overwrite::All), None).expect("stroke");
        let painted: std::collections::HashSet<(usize, usize)> = e.indices.iter().map(|n| (n / 40 % 40, n % 40)).collect();
        assert!(e.indices.iter().all(|n| n / 1600 == 1), "one slice");
        let mut seen = std::collections::HashSet::from([(1usize, 0usize)]);
        let mut stack = vec![(1usize, 0usize)];
        while let Some((j, i)) = stack.pop() {
            for (dj, di) in [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)] {
                let q = ((j as isize + dj) as usize, (i as isize + di) as usize);
                if painted.contains(&q) && seen.insert(q) {
                    stack.push(q);
                }
            }
        }
        assert!(seen.contains(&(25, 39)) && seen.len() == painted.len(), "a connected line, {} of {}", seen.len(), painted.len());
    }

    /// Threshold paint: only voxels whose intensity is in the range (NaN never) are painted;
    /// intensities on another grid, or a range without them, are refused.
    #[test]
    fn threshold_paint_follows_the_intensities() {
        let mut map = grid((1, 10, 10), RasFromVoxel::identity());
        let mut vol = Array3::from_shape_fn((1, 10, 10), |(_, j, i)| (i * 10 + j) as f32);
        vol[[0, 4, 4]] = f32::NAN;
        let c = RasMm::new(4.5, 4.5, 0.0);
        let brush = Brush::disc(ViewPlane::Axial, 4.0);
        let paint = Paint::new(3, Overwrite::Background).within(IntensityRange::new(30.0, 59.0));
        let area = footprint(&map, c, c, &brush).expect("disc");
        let held = |data: Array3<f32>| StoredVolume::from_volume(crate::volume::Volume::new(data, RasFromVoxel::identity()).expect("volume"));
        let vol = held(vol);
        assert_eq!(vol.dtype(), crate::volume::DataType::Float32, "a NaN keeps it float32");
        let e = stroke(&mut map, c, c, &brush, &paint, Some(&vol)).expect("threshold");
        let want: Vec<usize> = area.iter().copied().filter(|&n| (3..=5).contains(&(n % 10))).filter(|&n| n != 44).collect();
        assert_eq!(e.indices, want);
        assert!(!want.is_empty() && want.len() < area.len());
        // The same intensities held as integers (no NaN: voxel 44 at 44) paint the same voxels.
        let whole = held(Array3::from_shape_fn((1, 10, 10), |(_, j, i)| (i * 10 + j) as f32 - 100.0));
        assert_eq!(whole.dtype(), crate::volume::DataType::Int16);
        let shifted = Paint::new(3, Overwrite::Background).within(IntensityRange::new(-70.0, -41.0));
        let mut fresh = grid((1, 10, 10), RasFromVoxel::identity());
        let e = stroke(&mut fresh, c, c, &brush, &shifted, Some(&whole)).expect("threshold");
        assert_eq!(e.indices, area.iter().copied().filter(|&n| (3..=5).contains(&(n % 10))).collect::<Vec<_>>());
        let wrong = held(Array3::<f32>::zeros((1, 10, 11)));
        assert!(matches!(stroke(&mut map, c, c, &brush, &paint, Some(&wrong)), Err(EditError::GridMismatch { .. })));
        assert_eq!(stroke(&mut map, c, c, &brush, &paint, None).expect_err("no intensities"), EditError::NoIntensities);
        let upside = Paint::new(3, Overwrite::All).within(IntensityRange::new(5.0, 1.0));
        assert!(matches!(stroke(&mut map, c, c, &brush, &upside, Some(&vol)), Err(EditError::Invalid { .. })));
    }

    /// Points outside the volume never panic: the part of the brush inside is painted, nothing
    /// when it all is outside; non-numbers are errors with a message.
    #[test]
    fn outside_points_and_bad_numbers() {
        let mut map = grid((5, 6, 7), aniso());
        let p = Paint::new(1, Overwrite::All);
        let corner = map.ras_from_voxel.apply(VoxelIjk::new(-1.0, -1.0, -1.0));
        // Within 3 mm of voxel (-1, -1, -1): (0, 0, 0) at 2.69 mm, (1, 0, 0) and (0, 1, 0) at
        // 2.95 mm; (1, 1, 0) is 3.19 mm away, (0, 0, 1) 5.1 mm.
        let e = stamp(&mut map, corner, &Brush::sphere(3.0), &p, None).expect("partly inside");
        assert_eq!(e.indices, vec![0, 1, 7]);
        let far = RasMm::new(1e7, -1e7, 1e9);
        assert!(stamp(&mut map, far, &Brush::sphere(3.0), &p, None).expect("outside").is_empty());
        assert!(stroke(&mut map, far, RasMm::new(-1e7, 1e7, -1e9), &Brush::disc(ViewPlane::Sagittal, 3.0), &p, None).expect("outside").is_empty());
        // A drag from far outside through the grid paints what its part near the grid does.
        let (inside_a, inside_b) = (map.ras_from_voxel.apply(VoxelIjk::new(-4.0, 2.0, 1.0)), map.ras_from_voxel.apply(VoxelIjk::new(10.0, 2.0, 1.0)));
        let dir = inside_b.v - inside_a.v;
        let (far_a, far_b) = (RasMm::from_vec(inside_a.v - dir * 1e6), RasMm::from_vec(inside_b.v + dir * 1e6));
        let brush = Brush::sphere(1.0);
        assert_eq!(footprint(&map, far_a, far_b, &brush).expect("far"), footprint(&map, inside_a, inside_b, &brush).expect("near"));
        assert_eq!(footprint(&map, inside_a, inside_b, &brush).expect("near").len(), 7 * 3, "a row of i at j = 2, k = 1 and its j neighbours");
        // A huge brush covers the grid, walking only the grid.
        assert_eq!(stamp(&mut map, corner, &Brush::sphere(1e12), &p, None).expect("huge").indices.len(), 5 * 6 * 7 - 3);
        let nan = RasMm::new(f64::NAN, 0.0, 0.0);
        let err = stamp(&mut map, nan, &Brush::sphere(1.0), &p, None).expect_err("refused");
        assert!(err.to_string().contains("stroke start"), "{err}");
        for r in [-1.0, f64::INFINITY, f64::NAN] {
            let err = stamp(&mut map, corner, &Brush::sphere(r), &p, None).expect_err("refused");
            assert!(err.to_string().contains("brush radius"), "{err}");
        }
        let mut empty = grid((0, 4, 4), RasFromVoxel::identity());
        assert!(stamp(&mut empty, RasMm::new(1.0, 1.0, 0.0), &Brush::sphere(2.0), &p, None).expect("empty grid").is_empty());
    }

    /// Undo puts back exactly what a stroke over several labels replaced; redo paints it again.
    #[test]
    fn undo_and_redo_of_a_stroke() {
        let data = Array3::from_shape_fn((6, 12, 12), |(k, j, i)| ((k * 7 + j * 3 + i) % 4) as u16);
        let mut map = LabelMap::new(data.clone(), oblique()).expect("grid");
        let (a, b) = (map.ras_from_voxel.apply(VoxelIjk::new(1.0, 2.0, 1.0)), map.ras_from_voxel.apply(VoxelIjk::new(10.0, 9.0, 4.0)));
        let e = stroke(&mut map, a, b, &Brush::sphere(2.5), &Paint::new(2, Overwrite::All), None).expect("stroke");
        assert!(e.indices.windows(2).all(|w| w[0] < w[1]), "increasing order");
        let after = map.data.clone();
        assert!(e.previous.iter().all(|&p| p != 2) && e.previous.contains(&0) && e.previous.contains(&3));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        redo_edit(&mut map, &e);
        assert_eq!(map.data, after);
    }

    /// A label map held in another memory order is painted at the same voxels.
    #[test]
    fn a_transposed_map_is_painted_in_its_own_index_order() {
        let data = Array3::<u16>::zeros((5, 6, 7));
        let mut map = LabelMap { data: data.clone(), ras_from_voxel: aniso(), meta: Default::default() };
        let mut t = LabelMap { data: Array3::<u16>::zeros((7, 6, 5)).reversed_axes(), ..map.clone() };
        assert!(!t.data.is_standard_layout());
        let c = map.ras_from_voxel.apply(VoxelIjk::new(3.0, 3.0, 2.0));
        let p = Paint::new(1, Overwrite::All);
        let e = stamp(&mut map, c, &Brush::sphere(1.5), &p, None).expect("stamp");
        let f = stamp(&mut t, c, &Brush::sphere(1.5), &p, None).expect("stamp");
        assert_eq!((e.indices, &map.data), (f.indices, &t.data));
    }
}
