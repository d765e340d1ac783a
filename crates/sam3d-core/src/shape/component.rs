//! A signed distance field on its own grid (the model's output cube) → the connected inside
//! region through a point, on a source voxel grid, held as a crop of that grid.
//!
//! The meaning is the one of `data::click::sdf_to_source_mask`: every source voxel whose centre
//! lies inside the cube (grid index within `[−½, G−½]` on each axis) samples the SDF
//! trilinearly (positions clamped to the grid's sample points), negative is inside, and the
//! 6-connected inside component containing the clicked voxel is kept (the inside voxel nearest
//! to the click, in mm, when the clicked one is outside). The work is proportional to the
//! component's box, not to the cube and not to the source grid:
//!
//! 1. the `(G−1)³` cells of the SDF lattice are classified by their corners (all outside,
//!    all inside, mixed); a voxel can only be inside where its cell has a negative corner;
//! 2. the cells with a negative corner that are connected to the click's cell — with the
//!    reach of one source voxel step, measured in cells — hold the whole voxel component, so
//!    only the source voxels inside their bounding box are sampled;
//! 3. a scanline flood fill ([`super::flood`]) keeps the component, and its bounding box
//!    becomes the crop.

use super::flood::{Filled, flood};
use crate::geometry::{Affine3, Grid, GridShape, Point3, RasFromGrid, RasFromVoxel, RasMm, Voxel, VoxelIjk};
use ndarray::{Array3, ArrayView3, Axis, s};
use rayon::prelude::*;

/// The kept component, as a crop of the source grid.
#[derive(Clone, Debug, PartialEq)]
pub struct GridComponent {
    /// Array index `[k, j, i]` on the source grid of `mask[[0, 0, 0]]`.
    pub origin_kji: [usize; 3],
    /// `[k, j, i]` over the component's bounding box: true on the component.
    pub mask: Array3<bool>,
    pub voxel_count: usize,
}

impl GridComponent {
    /// The component on the whole source grid (`shape`), as a label array: `label` on the
    /// component, 0 elsewhere. Only the crop's pages are written.
    pub fn to_labels(&self, shape: GridShape, label: u16) -> Array3<u16> {
        let mut data = Array3::<u16>::zeros(shape.array_shape());
        let [k0, j0, i0] = self.origin_kji;
        let [nk, nj, ni] = [self.mask.shape()[0], self.mask.shape()[1], self.mask.shape()[2]];
        ndarray::Zip::from(data.slice_mut(s![k0..k0 + nk, j0..j0 + nj, i0..i0 + ni])).and(&self.mask).par_for_each(|o, &m| {
            if m {
                *o = label;
            }
        });
        data
    }

    /// The component's voxels as array indices on the source grid.
    pub fn voxels(&self) -> impl Iterator<Item = crate::geometry::ArrayIdx> + '_ {
        let [k0, j0, i0] = self.origin_kji;
        self.mask.indexed_iter().filter(|(_, m)| **m).map(move |((k, j, i), _)| crate::geometry::ArrayIdx { k: k0 + k, j: j0 + j, i: i0 + i })
    }

    /// Whether the voxel `a` of the source grid is in the component.
    pub fn contains(&self, a: crate::geometry::ArrayIdx) -> bool {
        let [k0, j0, i0] = self.origin_kji;
        let d = self.mask.dim();
        a.k >= k0 && a.j >= j0 && a.i >= i0 && a.k - k0 < d.0 && a.j - j0 < d.1 && a.i - i0 < d.2 && self.mask[[a.k - k0, a.j - j0, a.i - i0]]
    }

    /// The voxels of either component, on the bounding box of both.
    pub fn union(&self, other: &GridComponent) -> GridComponent {
        let ends = |c: &GridComponent| {
            let d = c.mask.dim();
            [c.origin_kji[0] + d.0, c.origin_kji[1] + d.1, c.origin_kji[2] + d.2]
        };
        let (ea, eb) = (ends(self), ends(other));
        let lo: [usize; 3] = std::array::from_fn(|a| self.origin_kji[a].min(other.origin_kji[a]));
        let hi: [usize; 3] = std::array::from_fn(|a| ea[a].max(eb[a]));
        let mut mask = Array3::from_elem((hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), false);
        for c in [self, other] {
            let [k, j, i] = std::array::from_fn(|a| c.origin_kji[a] - lo[a]);
            let d = c.mask.dim();
            ndarray::Zip::from(mask.slice_mut(s![k..k + d.0, j..j + d.1, i..i + d.2])).and(&c.mask).par_for_each(|o, &m| *o |= m);
        }
        let voxel_count = mask.axis_iter(Axis(0)).into_par_iter().map(|p| p.iter().filter(|m| **m).count()).sum();
        GridComponent { origin_kji: lo, mask, voxel_count }
    }

    /// The crop's mask as bytes, C order over `[k, j, i]` (`i` fastest): 1 inside, 0 outside.
    pub fn mask_bytes(&self) -> Vec<u8> {
        self.mask.iter().map(|&m| u8::from(m)).collect()
    }

    /// The inverse of [`Self::mask_bytes`]: a crop of shape `shape_kji` at `origin_kji`.
    /// Errors say what does not fit (byte count, a byte other than 0/1).
    pub fn from_mask_bytes(origin_kji: [usize; 3], shape_kji: [usize; 3], bytes: &[u8]) -> Result<Self, String> {
        let n = shape_kji.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or("the crop's shape overflows")?;
        if bytes.len() != n {
            return Err(format!("{} bytes for a {}×{}×{} crop ({n} expected)", bytes.len(), shape_kji[0], shape_kji[1], shape_kji[2]));
        }
        if let Some(p) = bytes.iter().position(|&b| b > 1) {
            return Err(format!("byte {p} is {}, a mask byte is 0 or 1", bytes[p]));
        }
        let mask = Array3::from_shape_vec((shape_kji[0], shape_kji[1], shape_kji[2]), bytes.iter().map(|&b| b == 1).collect()).map_err(|e| e.to_string())?;
        let voxel_count = bytes.iter().filter(|&&b| b == 1).count();
        Ok(Self { origin_kji, mask, voxel_count })
    }

    /// Does the crop lie within a grid of array shape `[nk, nj, ni]`?
    pub fn fits(&self, grid_kji: [usize; 3]) -> bool {
        let d = self.mask.dim();
        let end = [self.origin_kji[0] + d.0, self.origin_kji[1] + d.1, self.origin_kji[2] + d.2];
        (0..3).all(|a| end[a] <= grid_kji[a])
    }

    /// The component as a boolean mask on the whole grid (array shape `grid_kji`, which must
    /// hold the crop: see [`Self::fits`]; a crop that does not fit is cut at the grid's edge).
    /// The zeros are allocated lazily by the system, only the crop's pages are written.
    pub fn to_mask(&self, grid_kji: [usize; 3]) -> Array3<bool> {
        let mut out = Array3::from_elem((grid_kji[0], grid_kji[1], grid_kji[2]), false);
        let [k0, j0, i0] = self.origin_kji;
        let d = self.mask.dim();
        let end = [(k0 + d.0).min(grid_kji[0]), (j0 + d.1).min(grid_kji[1]), (i0 + d.2).min(grid_kji[2])];
        if k0 < end[0] && j0 < end[1] && i0 < end[2] {
            let src = self.mask.slice(s![..end[0] - k0, ..end[1] - j0, ..end[2] - i0]);
            out.slice_mut(s![k0..end[0], j0..end[1], i0..end[2]]).assign(&src);
        }
        out
    }
}

/// The inside component of `sdf` (`[gk, gj, gi]`, negative inside, any unit; grid index → RAS
/// by `ras_from_grid`) through `click`, on the source grid (`shape`, `ras_from_voxel`).
/// `None` when no source voxel inside the cube is inside the surface (or an affine is singular).
pub fn sdf_component_on_grid(
    sdf: ArrayView3<f32>,
    ras_from_grid: &RasFromGrid,
    shape: GridShape,
    ras_from_voxel: &RasFromVoxel,
    click: RasMm,
) -> Option<GridComponent> {
    let grid_from_ras = ras_from_grid.try_inverse().ok()?;
    let voxel_from_ras = ras_from_voxel.try_inverse().ok()?;
    if sdf.is_empty() || shape.is_empty() {
        return None;
    }
    let sdf = sdf.as_standard_layout();
    let sampler = Sampler::new(sdf.as_slice()?, [sdf.shape()[2], sdf.shape()[1], sdf.shape()[0]]);
    let grid_from_voxel: Affine3<Grid, Voxel> = grid_from_ras * *ras_from_voxel;
    let voxel_from_grid: Affine3<Voxel, Grid> = voxel_from_ras * *ras_from_grid;
    let n = shape.ijk();
    let rows = Rows::new(&grid_from_voxel, sampler.n);

    // The cube's box in voxel index space (all sampling stays inside it).
    let cube_lo = [-0.5; 3];
    let cube_hi: [f64; 3] = std::array::from_fn(|d| sampler.n[d] as f64 - 0.5);
    let cube = voxel_box(&voxel_from_grid, cube_lo, cube_hi, n)?;

    // The click's voxel, if it is inside.
    let click_voxel = shape
        .array_index(voxel_from_ras.apply(click))
        .map(|a| [a.k, a.j, a.i])
        .filter(|&[k, j, i]| within(&cube, [k, j, i]) && rows.inside(&sampler, [k, j, i], cube[0]));

    // Cells that may hold inside voxels, and the box to sample.
    let region = match click_voxel {
        Some([k, j, i]) => {
            let p = rows.position([k, j, i]);
            let seed = std::array::from_fn(|d| sampler.cell_of(d, p[d]));
            // One source voxel step moves at most `reach` cells along any grid axis.
            let m = grid_from_voxel.linear();
            let step = (0..3).flat_map(|c| (0..3).map(move |r| (r, c))).map(|(r, c)| m[(r, c)].abs()).fold(0.0, f64::max);
            let reach = step.ceil().max(1.0) as usize;
            // (Source voxels several cells wide: the neighbourhood would be large; use every cell.)
            if reach <= 3 { sampler.component_box(seed, reach) } else { sampler.maybe_box() }
        }
        None => sampler.maybe_box(),
    }?;
    let sample_box = voxel_box(&voxel_from_grid, region.0, region.1, n).and_then(|b| intersect(&b, &cube))?;

    // Sample the box: 1 inside the surface.
    let [(i0, i1), (j0, j1), (k0, k1)] = sample_box;
    let (ci, cj, ck) = (i1 - i0 + 1, j1 - j0 + 1, k1 - k0 + 1);
    let mut crop = Array3::<u8>::zeros((ck, cj, ci));
    crop.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(dk, mut slab)| {
        let Some(slab) = slab.as_slice_mut() else { return };
        for dj in 0..cj {
            let Some((a, b)) = rows.interval(j0 + dj, k0 + dk, (i0, i1)) else { continue };
            let row = &mut slab[dj * ci..(dj + 1) * ci];
            sampler.sample_row(rows.base(j0 + dj, k0 + dk), rows.step, (a, b), row, i0);
        }
    });

    let seed = match click_voxel {
        Some([k, j, i]) => [k - k0, j - j0, i - i0],
        None => nearest_set(&crop, [k0, j0, i0], ras_from_voxel, click)?,
    };
    let Filled { count, lo, hi } = flood(&mut crop, [seed], 1, 2)?;
    let mask = ndarray::Zip::from(crop.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]])).par_map_collect(|&v| v == 2);
    Some(GridComponent { origin_kji: [k0 + lo[0], j0 + lo[1], i0 + lo[2]], mask, voxel_count: count })
}

/// Inclusive voxel index ranges `[(i0, i1), (j0, j1), (k0, k1)]`.
type VoxelBox = [(usize, usize); 3];

fn within(b: &VoxelBox, [k, j, i]: [usize; 3]) -> bool {
    (b[0].0..=b[0].1).contains(&i) && (b[1].0..=b[1].1).contains(&j) && (b[2].0..=b[2].1).contains(&k)
}

fn intersect(a: &VoxelBox, b: &VoxelBox) -> Option<VoxelBox> {
    let mut r = [(0, 0); 3];
    for d in 0..3 {
        r[d] = (a[d].0.max(b[d].0), a[d].1.min(b[d].1));
        if r[d].0 > r[d].1 {
            return None;
        }
    }
    Some(r)
}

/// The voxel index box holding a grid-space box (its 8 corners mapped), clipped to the grid;
/// `None` when it misses the grid.
fn voxel_box(voxel_from_grid: &Affine3<Voxel, Grid>, lo: [f64; 3], hi: [f64; 3], n: [usize; 3]) -> Option<VoxelBox> {
    let (mut vlo, mut vhi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    for c in 0..8 {
        let q = [if c & 1 == 0 { lo[0] } else { hi[0] }, if c & 2 == 0 { lo[1] } else { hi[1] }, if c & 4 == 0 { lo[2] } else { hi[2] }];
        let p = voxel_from_grid.apply(Point3::new(q[0], q[1], q[2]));
        for d in 0..3 {
            vlo[d] = vlo[d].min(p.v[d]);
            vhi[d] = vhi[d].max(p.v[d]);
        }
    }
    if (0..3).any(|d| !(vlo[d].is_finite() && vhi[d].is_finite()) || vhi[d] < -0.5 || vlo[d] > n[d] as f64 - 0.5) {
        return None;
    }
    let clamp = |x: f64, n: usize| x.clamp(0.0, n as f64 - 1.0) as usize;
    Some(std::array::from_fn(|d| (clamp(vlo[d].floor(), n[d]), clamp(vhi[d].ceil(), n[d]))))
}

/// Grid positions of source voxel rows: voxel `(i, j, k)` sits at `base(j, k) + i·step`.
struct Rows {
    m: nalgebra::Matrix4<f64>,
    step: [f64; 3],
    lo_g: f64,
    hi_g: [f64; 3],
}

impl Rows {
    fn new(grid_from_voxel: &Affine3<Grid, Voxel>, n: [usize; 3]) -> Self {
        let m = *grid_from_voxel.matrix();
        Self { m, step: [m[(0, 0)], m[(1, 0)], m[(2, 0)]], lo_g: -0.5, hi_g: std::array::from_fn(|d| n[d] as f64 - 0.5) }
    }

    fn base(&self, j: usize, k: usize) -> [f64; 3] {
        let (fj, fk, m) = (j as f64, k as f64, &self.m);
        [
            m[(0, 1)] * fj + m[(0, 2)] * fk + m[(0, 3)],
            m[(1, 1)] * fj + m[(1, 2)] * fk + m[(1, 3)],
            m[(2, 1)] * fj + m[(2, 2)] * fk + m[(2, 3)],
        ]
    }

    fn position(&self, [k, j, i]: [usize; 3]) -> [f64; 3] {
        let b = self.base(j, k);
        let fi = i as f64;
        [b[0] + self.step[0] * fi, b[1] + self.step[1] * fi, b[2] + self.step[2] * fi]
    }

    /// The i-range of row `(j, k)` inside the cube, within `[i0, i1]`.
    fn interval(&self, j: usize, k: usize, (i0, i1): (usize, usize)) -> Option<(usize, usize)> {
        let base = self.base(j, k);
        let (mut t0, mut t1) = (i0 as f64, i1 as f64);
        for d in 0..3 {
            if self.step[d].abs() < 1e-12 {
                if base[d] < self.lo_g || base[d] > self.hi_g[d] {
                    return None;
                }
            } else {
                let (a, b) = ((self.lo_g - base[d]) / self.step[d], (self.hi_g[d] - base[d]) / self.step[d]);
                t0 = t0.max(a.min(b));
                t1 = t1.min(a.max(b));
            }
        }
        if t1 < t0 {
            return None;
        }
        let (a, b) = (t0.ceil().max(i0 as f64) as usize, t1.floor().min(i1 as f64) as usize);
        (a <= b).then_some((a, b))
    }

    /// Is voxel `[k, j, i]` in the cube and inside the surface?
    fn inside(&self, sampler: &Sampler, [k, j, i]: [usize; 3], i_range: (usize, usize)) -> bool {
        match self.interval(j, k, i_range) {
            Some((a, b)) if (a..=b).contains(&i) => {
                let p = self.position([k, j, i]);
                sampler.inside(p[0], p[1], p[2])
            }
            _ => false,
        }
    }
}

/// Trilinear sign of the SDF at grid positions, with cells classified by their corners.
struct Sampler<'a> {
    sdf: &'a [f32],
    /// Samples along x (fastest), y, z.
    n: [usize; 3],
    /// Cells along x, y, z (`n − 1`, at least 1).
    c: [usize; 3],
    /// Per cell: 0 all corners ≥ 0, 1 all < 0, 2 mixed.
    cell: Vec<u8>,
}

impl<'a> Sampler<'a> {
    fn new(sdf: &'a [f32], n: [usize; 3]) -> Self {
        let c: [usize; 3] = std::array::from_fn(|d| n[d].saturating_sub(1).max(1));
        let mut cell = vec![0u8; c[0] * c[1] * c[2]];
        cell.par_chunks_mut(c[0] * c[1]).enumerate().for_each(|(z, plane)| {
            for y in 0..c[1] {
                for x in 0..c[0] {
                    let mut neg = 0;
                    for corner in 0..8 {
                        let (dx, dy, dz) = (corner & 1, (corner >> 1) & 1, (corner >> 2) & 1);
                        let at = [(x + dx).min(n[0] - 1), (y + dy).min(n[1] - 1), (z + dz).min(n[2] - 1)];
                        if sdf[(at[2] * n[1] + at[1]) * n[0] + at[0]] < 0.0 {
                            neg += 1;
                        }
                    }
                    plane[y * c[0] + x] = match neg {
                        0 => 0,
                        8 => 1,
                        _ => 2,
                    };
                }
            }
        });
        Self { sdf, n, c, cell }
    }

    /// The cell holding grid position `x` along axis `d` (positions are clamped to the samples).
    #[inline]
    fn cell_of(&self, d: usize, x: f64) -> usize {
        let x = x.clamp(0.0, (self.n[d] - 1) as f64);
        (x as usize).min(self.c[d] - 1)
    }

    /// The cell `[x0, y0, z0]` the trilinear sample at a grid position reads.
    #[inline]
    fn cell3(&self, p: [f64; 3]) -> [usize; 3] {
        std::array::from_fn(|d| (p[d].clamp(0.0, (self.n[d] - 1) as f64) as usize).min(self.c[d] - 1))
    }

    #[inline]
    fn class(&self, c: [usize; 3]) -> u8 {
        self.cell[(c[2] * self.c[1] + c[1]) * self.c[0] + c[0]]
    }

    #[inline]
    fn inside(&self, x: f64, y: f64, z: f64) -> bool {
        let c = self.cell3([x, y, z]);
        match self.class(c) {
            0 => false,
            1 => true,
            _ => self.interpolate_negative(c, [x, y, z]),
        }
    }

    /// The 8 corner values of cell `[x0, y0, z0]`, in the order [`Self::negative_at`] reads them.
    #[inline]
    fn corners(&self, [x0, y0, z0]: [usize; 3]) -> [f32; 8] {
        let [nx, ny, nz] = self.n;
        let (x1, y1, z1) = ((x0 + 1).min(nx - 1), (y0 + 1).min(ny - 1), (z0 + 1).min(nz - 1));
        let at = |zz: usize, yy: usize, xx: usize| self.sdf[(zz * ny + yy) * nx + xx];
        [at(z0, y0, x0), at(z0, y0, x1), at(z0, y1, x0), at(z0, y1, x1), at(z1, y0, x0), at(z1, y0, x1), at(z1, y1, x0), at(z1, y1, x1)]
    }

    /// The trilinear value in cell `c` (corner values `v`) at grid position `p` is negative.
    #[inline]
    fn negative_at(&self, [x0, y0, z0]: [usize; 3], v: &[f32; 8], p: [f64; 3]) -> bool {
        let [nx, ny, nz] = self.n;
        let (x, y, z) = (p[0].clamp(0.0, (nx - 1) as f64), p[1].clamp(0.0, (ny - 1) as f64), p[2].clamp(0.0, (nz - 1) as f64));
        let (fx, fy, fz) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32, (z - z0 as f64) as f32);
        let c00 = v[0] + (v[1] - v[0]) * fx;
        let c10 = v[2] + (v[3] - v[2]) * fx;
        let c01 = v[4] + (v[5] - v[4]) * fx;
        let c11 = v[6] + (v[7] - v[6]) * fx;
        let c0 = c00 + (c10 - c00) * fy;
        let c1 = c01 + (c11 - c01) * fy;
        c0 + (c1 - c0) * fz < 0.0
    }

    /// The trilinear value in cell `c` at grid position `p` is negative.
    #[inline]
    fn interpolate_negative(&self, c: [usize; 3], p: [f64; 3]) -> bool {
        self.negative_at(c, &self.corners(c), p)
    }

    /// Sets `out[i − i0] = 1` for the voxels `a ..= b` of a row (`base + i·step`) that are
    /// inside, the same as [`Self::inside`] voxel by voxel. The row is walked in runs of voxels
    /// reading the same cell (the cell index is monotone along a row): runs in cells of one sign
    /// are skipped or filled whole, only mixed cells interpolate.
    fn sample_row(&self, base: [f64; 3], step: [f64; 3], (a, b): (usize, usize), out: &mut [u8], i0: usize) {
        let pos = |i: usize| {
            let fi = i as f64;
            [base[0] + step[0] * fi, base[1] + step[1] * fi, base[2] + step[2] * fi]
        };
        let inv_step = step.map(|s| 1.0 / s);
        let mut i = a;
        while i <= b {
            let c = self.cell3(pos(i));
            // Predicted last voxel of the run: before the first cell boundary crossed.
            let mut end = b as f64;
            for d in 0..3 {
                let s = step[d];
                if s.abs() < 1e-12 || (s > 0.0 && c[d] + 1 >= self.c[d]) || (s < 0.0 && c[d] == 0) {
                    continue;
                }
                let bound = if s > 0.0 { (c[d] + 1) as f64 } else { c[d] as f64 };
                end = end.min(((bound - base[d]) * inv_step[d]).ceil() - 1.0);
            }
            let mut end = if end.is_finite() { end.max(i as f64).min(b as f64) as usize } else { i };
            // Exact run end (positions are rounded): the voxels reading cell `c` are contiguous.
            while end > i && self.cell3(pos(end)) != c {
                end -= 1;
            }
            while end < b && self.cell3(pos(end + 1)) == c {
                end += 1;
            }
            match self.class(c) {
                0 => {}
                1 => out[i - i0..=end - i0].fill(1),
                _ => {
                    let corners = self.corners(c);
                    for (v, o) in (i..=end).zip(&mut out[i - i0..=end - i0]) {
                        if self.negative_at(c, &corners, pos(v)) {
                            *o = 1;
                        }
                    }
                }
            }
            i = end + 1;
        }
    }

    /// The grid-space box (`lo`, `hi` per axis) covered by cell `x` along axis `d`; the border
    /// cells reach to the cube's faces (positions there are clamped into them).
    fn cell_span(&self, d: usize, x: usize) -> (f64, f64) {
        let lo = if x == 0 { -0.5 } else { x as f64 };
        let hi = if x + 1 >= self.c[d] { self.n[d] as f64 - 0.5 } else { (x + 1) as f64 };
        (lo, hi)
    }

    fn span_box(&self, lo: [usize; 3], hi: [usize; 3]) -> ([f64; 3], [f64; 3]) {
        (std::array::from_fn(|d| self.cell_span(d, lo[d]).0), std::array::from_fn(|d| self.cell_span(d, hi[d]).1))
    }

    /// Box of every cell with a negative corner.
    fn maybe_box(&self) -> Option<([f64; 3], [f64; 3])> {
        let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
        for (n, &v) in self.cell.iter().enumerate() {
            if v != 0 {
                let p = [n % self.c[0], (n / self.c[0]) % self.c[1], n / (self.c[0] * self.c[1])];
                for d in 0..3 {
                    lo[d] = lo[d].min(p[d]);
                    hi[d] = hi[d].max(p[d]);
                }
            }
        }
        (lo[0] != usize::MAX).then(|| self.span_box(lo, hi))
    }

    /// Box of the cells with a negative corner connected to `seed` (`[x, y, z]`), where cells
    /// up to `reach` apart along every axis count as neighbours.
    fn component_box(&self, seed: [usize; 3], reach: usize) -> Option<([f64; 3], [f64; 3])> {
        let c = self.c;
        let idx = |p: [usize; 3]| (p[2] * c[1] + p[1]) * c[0] + p[0];
        if self.cell[idx(seed)] == 0 {
            return None;
        }
        let mut seen = vec![false; self.cell.len()];
        seen[idx(seed)] = true;
        let mut stack = vec![seed];
        let (mut lo, mut hi) = (seed, seed);
        while let Some(p) = stack.pop() {
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
            let r: [(usize, usize); 3] = std::array::from_fn(|d| (p[d].saturating_sub(reach), (p[d] + reach).min(c[d] - 1)));
            for z in r[2].0..=r[2].1 {
                for y in r[1].0..=r[1].1 {
                    for x in r[0].0..=r[0].1 {
                        let q = [x, y, z];
                        let n = idx(q);
                        if !seen[n] && self.cell[n] != 0 {
                            seen[n] = true;
                            stack.push(q);
                        }
                    }
                }
            }
        }
        Some(self.span_box(lo, hi))
    }
}

/// The set voxel of `crop` (origin `[k0, j0, i0]` on the source grid) nearest to `click` in mm;
/// ties go to the first in `[k, j, i]` order. Crop coordinates.
fn nearest_set(crop: &Array3<u8>, origin: [usize; 3], ras_from_voxel: &RasFromVoxel, click: RasMm) -> Option<[usize; 3]> {
    let [k0, j0, i0] = origin;
    let (cj, ci) = (crop.shape()[1], crop.shape()[2]);
    crop.axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .filter_map(|(dk, slab)| {
            let mut best: Option<(f64, [usize; 3])> = None;
            for dj in 0..cj {
                for di in 0..ci {
                    if slab[[dj, di]] == 0 {
                        continue;
                    }
                    let d = ras_from_voxel.apply(VoxelIjk::new((i0 + di) as f64, (j0 + dj) as f64, (k0 + dk) as f64)).distance(&click);
                    if best.is_none_or(|(bd, _)| d < bd) {
                        best = Some((d, [dk, dj, di]));
                    }
                }
            }
            best
        })
        .reduce_with(|a, b| if b.0 < a.0 || (b.0 == a.0 && b.1 < a.1) { b } else { a })
        .map(|b| b.1)
}

#[cfg(test)]
mod tests {

    #[test]
    fn union_and_contains_on_the_source_grid() {
        use crate::geometry::ArrayIdx;
        let a = GridComponent { origin_kji: [2, 3, 4], mask: Array3::from_elem((2, 2, 2), true), voxel_count: 8 };
        let mut m = Array3::from_elem((1, 3, 1), true);
        m[[0, 1, 0]] = false;
        let b = GridComponent { origin_kji: [3, 0, 9], mask: m, voxel_count: 2 };
        let u = a.union(&b);
        assert_eq!((u.origin_kji, u.mask.dim(), u.voxel_count), ([2, 0, 4], (2, 5, 6), 10));
        for (k, j, i) in [(2, 3, 4), (3, 4, 5), (3, 0, 9), (3, 2, 9)] {
            assert!(u.contains(ArrayIdx { k, j, i }), "({k}, {j}, {i})");
        }
        for (k, j, i) in [(3, 1, 9), (2, 0, 4), (1, 3, 4), (3, 3, 10), (4, 3, 4)] {
            assert!(!u.contains(ArrayIdx { k, j, i }), "({k}, {j}, {i})");
        }
        assert!(b.contains(ArrayIdx { k: 3, j: 2, i: 9 }) && !b.contains(ArrayIdx { k: 3, j: 1, i: 9 }));
    }

    use super::*;

    #[test]
    fn crop_bytes_round_trip_and_full_grid_mask() {
        let mask = Array3::from_shape_fn((2, 3, 4), |(k, j, i)| (k + 2 * j + i) % 3 == 0);
        let c = GridComponent { origin_kji: [1, 0, 2], voxel_count: mask.iter().filter(|&&m| m).count(), mask };
        let bytes = c.mask_bytes();
        assert_eq!(bytes.len(), 24);
        assert_eq!(bytes[1], u8::from(c.mask[[0, 0, 1]]), "i is fastest");
        assert_eq!(GridComponent::from_mask_bytes([1, 0, 2], [2, 3, 4], &bytes).expect("reads"), c);
        assert!(GridComponent::from_mask_bytes([1, 0, 2], [2, 3, 5], &bytes).expect_err("size").contains("24 bytes"));
        let mut bad = bytes.clone();
        bad[5] = 7;
        assert!(GridComponent::from_mask_bytes([1, 0, 2], [2, 3, 4], &bad).expect_err("byte").contains("byte 5"));
        // On the whole grid: the same voxels as the label array.
        let shape = GridShape::new(6, 3, 4);
        assert!(c.fits([4, 3, 6]) && !c.fits([4, 3, 5]));
        let full = c.to_mask([4, 3, 6]);
        assert_eq!(full, c.to_labels(shape, 1).mapv(|l| l == 1));
        assert_eq!(full.iter().filter(|&&m| m).count(), c.voxel_count);
    }
}
