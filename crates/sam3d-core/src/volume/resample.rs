//! Resampling onto another grid: trilinear for intensities, nearest for labels, in parallel
//! over output slices. The mapping is one affine, `src_voxel_from_dst_voxel =
//! voxel_from_ras(src) * ras_from_voxel(dst)`, stepped incrementally along each output row.

use super::{LabelMap, OnGrid, Volume, VolumeMeta, c_order};
use crate::geometry::{Affine3, GridShape, RasFromVoxel, SpacingIjk, Voxel};
use ndarray::Array3;
use rayon::prelude::*;

/// Interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interp {
    Linear,
    Nearest,
}

impl std::str::FromStr for Interp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linear" | "trilinear" => Ok(Interp::Linear),
            "nearest" => Ok(Interp::Nearest),
            _ => Err(format!("unknown interpolation '{s}' (expected linear or nearest)")),
        }
    }
}

/// The most voxels a grid derived from a requested spacing may have: 2³¹ (8 GiB as float32).
/// A spacing typed in the wrong unit (µm for mm) asks for petabytes; it must be an error, not an
/// allocation that aborts the process.
pub const MAX_GRID_VOXELS: u64 = 1 << 31;

/// Why a grid cannot be made for a requested spacing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ResampleError {
    #[error("spacing {:?} mm: each spacing must be a positive, finite number of millimetres", .spacing.ijk())]
    BadSpacing { spacing: SpacingIjk },
    #[error(
        "spacing {:?} mm would make a {:.0}×{:.0}×{:.0} grid ({voxels:.3e} voxels); the limit is {MAX_GRID_VOXELS} voxels ({} GiB as float32)",
        .spacing.ijk(), .size_ijk[0], .size_ijk[1], .size_ijk[2], (MAX_GRID_VOXELS * 4) >> 30
    )]
    TooLarge { spacing: SpacingIjk, size_ijk: [f64; 3], voxels: f64 },
}

/// The grid with isotropic (or per-axis) `spacing` covering the same physical extent as
/// `shape`/`ras_from_voxel`: same axis directions, `n' = max(1, round(n·s/s'))` voxels per axis,
/// centred on the same point (so the voxel-edge extent is kept to within half a new voxel).
/// Errors for a spacing that is not positive and finite, and for a grid of more than
/// [`MAX_GRID_VOXELS`] voxels (checked before anything is allocated).
pub fn grid_for_spacing(shape: GridShape, ras_from_voxel: &RasFromVoxel, spacing: SpacingIjk) -> Result<(GridShape, RasFromVoxel), ResampleError> {
    let sp = spacing.ijk();
    if sp.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(ResampleError::BadSpacing { spacing });
    }
    let old_sp = ras_from_voxel.column_norms();
    let n_old = shape.ijk();
    let size_ijk: [f64; 3] = std::array::from_fn(|a| (n_old[a] as f64 * old_sp[a] / sp[a]).round().max(1.0));
    let n_new = checked_grid_size(size_ijk).ok_or(ResampleError::TooLarge { spacing, size_ijk, voxels: size_ijk.iter().product() })?;
    let lin = ras_from_voxel.linear();
    let mut new_lin = lin;
    for a in 0..3 {
        new_lin.set_column(a, &(lin.column(a) / old_sp[a] * sp[a]));
    }
    // Keep the centre of the grid where it was.
    let centre_old = ras_from_voxel.apply(crate::geometry::VoxelIjk::new(
        (n_old[0] as f64 - 1.0) / 2.0,
        (n_old[1] as f64 - 1.0) / 2.0,
        (n_old[2] as f64 - 1.0) / 2.0,
    ));
    let half_new = nalgebra::Vector3::new(
        (n_new[0] as f64 - 1.0) / 2.0,
        (n_new[1] as f64 - 1.0) / 2.0,
        (n_new[2] as f64 - 1.0) / 2.0,
    );
    let t = centre_old.v - new_lin * half_new;
    Ok((GridShape::new(n_new[0], n_new[1], n_new[2]), RasFromVoxel::from_parts(new_lin, t)))
}

/// Voxel counts per axis (whole numbers ≥ 1, as floats that may be huge or infinite) as a grid
/// size, when the grid has at most [`MAX_GRID_VOXELS`] voxels; the product is overflow-checked.
fn checked_grid_size(size_ijk: [f64; 3]) -> Option<[usize; 3]> {
    let limit = MAX_GRID_VOXELS as f64;
    if size_ijk.iter().any(|&n| n.is_nan() || n > limit) {
        return None;
    }
    let n = size_ijk.map(|n| n as u64);
    let total = n.iter().try_fold(1u64, |acc, &x| acc.checked_mul(x))?;
    (total <= MAX_GRID_VOXELS).then(|| n.map(|x| x as usize))
}

/// Trilinear value at a continuous voxel position. Positions within half a voxel outside the
/// outermost centres take the edge value; further out: `None`. Any memory layout (a
/// non-standard one is read by index, more slowly).
#[inline]
pub fn trilinear_at(data: &Array3<f32>, x: f64, y: f64, z: f64) -> Option<f32> {
    let s = data.shape();
    let (nk, nj, ni) = (s[0], s[1], s[2]);
    match data.as_slice() {
        Some(d) => sample_lin(d, ni, nj, nk, x, y, z),
        None => sample_lin_by(|i, j, k| data[[k, j, i]], ni, nj, nk, x, y, z),
    }
}

/// Trilinear sample of a C-order `[nk, nj, ni]` slice.
#[inline(always)]
fn sample_lin(d: &[f32], ni: usize, nj: usize, nk: usize, x: f64, y: f64, z: f64) -> Option<f32> {
    let (row, sl) = (ni, ni * nj);
    sample_lin_by(|i, j, k| d[k * sl + j * row + i], ni, nj, nk, x, y, z)
}

/// Trilinear sample with the voxel `(i, j, k)` read by `at`.
#[inline(always)]
fn sample_lin_by(at: impl Fn(usize, usize, usize) -> f32, ni: usize, nj: usize, nk: usize, x: f64, y: f64, z: f64) -> Option<f32> {
    if !(x >= -0.5 && y >= -0.5 && z >= -0.5 && x <= ni as f64 - 0.5 && y <= nj as f64 - 0.5 && z <= nk as f64 - 0.5) {
        return None;
    }
    let cl = |v: f64, n: usize| v.clamp(0.0, (n - 1) as f64);
    let (x, y, z) = (cl(x, ni), cl(y, nj), cl(z, nk));
    let (x0, y0, z0) = (x.floor() as usize, y.floor() as usize, z.floor() as usize);
    let (x1, y1, z1) = ((x0 + 1).min(ni - 1), (y0 + 1).min(nj - 1), (z0 + 1).min(nk - 1));
    let (fx, fy, fz) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32, (z - z0 as f64) as f32);
    let c00 = at(x0, y0, z0) + (at(x1, y0, z0) - at(x0, y0, z0)) * fx;
    let c10 = at(x0, y1, z0) + (at(x1, y1, z0) - at(x0, y1, z0)) * fx;
    let c01 = at(x0, y0, z1) + (at(x1, y0, z1) - at(x0, y0, z1)) * fx;
    let c11 = at(x0, y1, z1) + (at(x1, y1, z1) - at(x0, y1, z1)) * fx;
    let c0 = c00 + (c10 - c00) * fy;
    let c1 = c01 + (c11 - c01) * fy;
    Some(c0 + (c1 - c0) * fz)
}

fn src_from_dst(src: &RasFromVoxel, dst: &RasFromVoxel) -> Affine3<Voxel, Voxel> {
    let inv = src.try_inverse().unwrap_or_else(|_| Affine3::identity());
    inv * *dst
}

/// Visits every output voxel with its source voxel position, in parallel over output slices.
fn for_each_dst<T: Send>(
    out: &mut Array3<T>,
    m: &Affine3<Voxel, Voxel>,
    f: impl Fn(f64, f64, f64) -> T + Sync,
) {
    let s = out.shape().to_vec();
    let (nj, ni) = (s[1], s[2]);
    let mm = *m.matrix();
    let Some(flat) = out.as_slice_mut() else { return };
    flat.par_chunks_mut(ni * nj).enumerate().for_each(|(k, slab)| dst_slice(&mm, k, ni, nj, slab, &f));
}

/// Output slice `k` (`nj` rows of `ni`) of [`for_each_dst`].
#[inline(always)]
fn dst_slice<T>(mm: &nalgebra::Matrix4<f64>, k: usize, ni: usize, nj: usize, slab: &mut [T], f: &impl Fn(f64, f64, f64) -> T) {
    for j in 0..nj {
        let (jf, kf) = (j as f64, k as f64);
        let bx = mm[(0, 1)] * jf + mm[(0, 2)] * kf + mm[(0, 3)];
        let by = mm[(1, 1)] * jf + mm[(1, 2)] * kf + mm[(1, 3)];
        let bz = mm[(2, 1)] * jf + mm[(2, 2)] * kf + mm[(2, 3)];
        let row = &mut slab[j * ni..(j + 1) * ni];
        for (i, o) in row.iter_mut().enumerate() {
            let fi = i as f64;
            *o = f(bx + mm[(0, 0)] * fi, by + mm[(1, 0)] * fi, bz + mm[(2, 0)] * fi);
        }
    }
}

/// One output axis of an axis-aligned mapping: for each output index, the two source indices
/// and the weight of the second (or `None` outside the source).
fn axis_table(scale: f64, offset: f64, n_out: usize, n_src: usize) -> Vec<AxisStep> {
    (0..n_out)
        .map(|o| {
            let c = scale * o as f64 + offset;
            if !(c >= -0.5 && c <= n_src as f64 - 0.5) {
                return None;
            }
            let c = c.clamp(0.0, (n_src - 1) as f64);
            let c0 = c.floor() as usize;
            let c1 = (c0 + 1).min(n_src - 1);
            Some((c0, c1, (c - c0 as f64) as f32))
        })
        .collect()
}

/// One output slice of trilinear resampling when the source-from-target mapping has no
/// rotation (only per-axis scale and shift — the case of `resample_to_spacing`): per-axis
/// index/weight tables (`tx`, `ty` and the slice's `z`) make the inner loop a handful of loads
/// and lerps.
fn axis_aligned_slice(d: &[f32], src: GridShape, tx: &[AxisStep], ty: &[AxisStep], z: AxisStep, slab: &mut [f32], fill: f32) {
    let ni = tx.len();
    let (row, sl) = (src.ni, src.ni * src.nj);
    for (j, y) in ty.iter().enumerate() {
        let out_row = &mut slab[j * ni..(j + 1) * ni];
        let (Some((z0, z1, fz)), Some((y0, y1, fy))) = (z, *y) else {
            out_row.fill(fill);
            continue;
        };
        let r00 = &d[z0 * sl + y0 * row..][..row];
        let r10 = &d[z0 * sl + y1 * row..][..row];
        let r01 = &d[z1 * sl + y0 * row..][..row];
        let r11 = &d[z1 * sl + y1 * row..][..row];
        for (o, x) in out_row.iter_mut().zip(tx.iter()) {
            *o = match *x {
                None => fill,
                Some((x0, x1, fx)) => {
                    let l = |r: &[f32]| r[x0] + (r[x1] - r[x0]) * fx;
                    let (a, b, c, e) = (l(r00), l(r10), l(r01), l(r11));
                    let p = a + (b - a) * fy;
                    let q = c + (e - c) * fy;
                    p + (q - p) * fz
                }
            };
        }
    }
}

/// Where one output index falls on a source axis: the two source indices and the weight of the
/// second, or `None` outside the source.
type AxisStep = Option<(usize, usize, f32)>;

/// A volume resampled onto a grid, computed a run of whole output slices at a time: what
/// [`resample_to_grid`] fills (in parallel over slices), and what a writer can compress slab by
/// slab, in parallel, without the whole output in memory (`save::save_volume_by_slices`).
#[derive(Debug)]
pub struct SlabResampler<'a> {
    d: std::borrow::Cow<'a, [f32]>,
    src: GridShape,
    shape: GridShape,
    ras_from_voxel: RasFromVoxel,
    m: nalgebra::Matrix4<f64>,
    interp: Interp,
    fill: f32,
    /// The per-axis tables (i, j, k) when the mapping is linear and axis-aligned.
    tables: Option<[Vec<AxisStep>; 3]>,
    dtype: Option<super::DataType>,
}

impl<'a> SlabResampler<'a> {
    /// `src` onto `shape`/`ras_from_voxel`; outside the source: `fill`.
    pub fn new(src: &'a Volume, shape: GridShape, ras_from_voxel: &RasFromVoxel, interp: Interp, fill: f32) -> Self {
        let m = *src_from_dst(&src.ras_from_voxel, ras_from_voxel).matrix();
        let s = src.shape();
        let tables = (interp == Interp::Linear && is_axis_aligned(&m)).then(|| {
            [
                axis_table(m[(0, 0)], m[(0, 3)], shape.ni, s.ni),
                axis_table(m[(1, 1)], m[(1, 3)], shape.nj, s.nj),
                axis_table(m[(2, 2)], m[(2, 3)], shape.nk, s.nk),
            ]
        });
        SlabResampler { d: c_order(&src.data), src: s, shape, ras_from_voxel: *ras_from_voxel, m, interp, fill, tables, dtype: src.meta.dtype }
    }

    /// `src` at `spacing` over the same physical extent, outside filled with its minimum (as
    /// [`resample_to_spacing`]); errors as [`grid_for_spacing`], before anything is allocated.
    pub fn to_spacing(src: &'a Volume, spacing: SpacingIjk, interp: Interp) -> Result<Self, ResampleError> {
        let (shape, aff) = grid_for_spacing(src.shape(), &src.ras_from_voxel, spacing)?;
        let fill = src.stats().min as f32;
        Ok(Self::new(src, shape, &aff, interp, if fill.is_finite() { fill } else { 0.0 }))
    }

    /// The output grid.
    pub fn shape(&self) -> GridShape {
        self.shape
    }

    /// The output grid's affine.
    pub fn ras_from_voxel(&self) -> &RasFromVoxel {
        &self.ras_from_voxel
    }

    /// Fills `out` (whole output slices, C order) with the slices from `k0` on.
    pub fn fill_slices(&self, k0: usize, out: &mut [f32]) {
        let (ni, nj, nk) = (self.shape.ni, self.shape.nj, self.shape.nk);
        let (sni, snj, snk) = (self.src.ni, self.src.nj, self.src.nk);
        let d = &*self.d;
        for (dk, slab) in out.chunks_mut(ni * nj).enumerate() {
            let k = k0 + dk;
            debug_assert!(k < nk && slab.len() == ni * nj);
            match (&self.tables, self.interp) {
                (Some([tx, ty, tz]), _) => axis_aligned_slice(d, self.src, tx, ty, tz[k], slab, self.fill),
                (None, Interp::Linear) => dst_slice(&self.m, k, ni, nj, slab, &|x, y, z| sample_lin(d, sni, snj, snk, x, y, z).unwrap_or(self.fill)),
                (None, Interp::Nearest) => dst_slice(&self.m, k, ni, nj, slab, &|x, y, z| {
                    self.src.array_index(crate::geometry::VoxelIjk::new(x, y, z)).map(|a| d[(a.k * snj + a.j) * sni + a.i]).unwrap_or(self.fill)
                }),
            }
        }
    }

    /// The whole resampled volume, its slices computed in parallel.
    pub fn volume(&self) -> Volume {
        let mut out = Array3::<f32>::zeros(self.shape.array_shape());
        let per = self.shape.ni * self.shape.nj;
        if let Some(flat) = out.as_slice_mut() {
            flat.par_chunks_mut(per.max(1)).enumerate().for_each(|(k, slab)| self.fill_slices(k, slab));
        }
        Volume { data: out, ras_from_voxel: self.ras_from_voxel, meta: VolumeMeta { dtype: self.dtype, ..Default::default() } }
    }
}

fn is_axis_aligned(m: &nalgebra::Matrix4<f64>) -> bool {
    (0..3).all(|r| (0..3).all(|c| r == c || m[(r, c)] == 0.0))
}

/// Resamples intensities onto a target grid; outside the source: `fill`.
pub fn resample_to_grid(src: &Volume, shape: GridShape, ras_from_voxel: &RasFromVoxel, interp: Interp, fill: f32) -> Volume {
    SlabResampler::new(src, shape, ras_from_voxel, interp, fill).volume()
}

/// Resamples a label map (nearest neighbour) onto a target grid; outside: background.
pub fn resample_labels_to_grid(src: &LabelMap, shape: GridShape, ras_from_voxel: &RasFromVoxel) -> LabelMap {
    let m = src_from_dst(&src.ras_from_voxel, ras_from_voxel);
    let mut out = Array3::<u16>::zeros(shape.array_shape());
    let s = src.shape();
    let (ni, nj) = (s.ni, s.nj);
    let d = c_order(&src.data);
    let d = &*d;
    for_each_dst(&mut out, &m, |x, y, z| {
        s.array_index(crate::geometry::VoxelIjk::new(x, y, z)).map(|a| d[(a.k * nj + a.j) * ni + a.i]).unwrap_or(0)
    });
    LabelMap { data: out, ras_from_voxel: *ras_from_voxel, meta: VolumeMeta { dtype: src.meta.dtype, ..Default::default() } }
}

/// Resamples a volume to the given spacing over the same physical extent; errors as
/// [`grid_for_spacing`] (before any output is allocated).
pub fn resample_to_spacing(src: &Volume, spacing: SpacingIjk, interp: Interp) -> Result<Volume, ResampleError> {
    Ok(SlabResampler::to_spacing(src, spacing, interp)?.volume())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::VoxelIjk;

    #[test]
    fn ramp_stays_a_ramp() {
        // value = 2·x_ras + 3·z_ras on an anisotropic, flipped grid.
        let aff = RasFromVoxel::scale_translate([-0.8, 1.0, 2.5], [40.0, -10.0, 5.0]);
        let shape = GridShape::new(30, 20, 12);
        let f = |p: crate::geometry::RasMm| (2.0 * p.x() + 3.0 * p.z()) as f32;
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| f(aff.apply(VoxelIjk::new(i as f64, j as f64, k as f64))));
        let v = Volume::new(data, aff).expect("valid");
        for sp in [0.7, 1.0, 1.9] {
            let r = resample_to_spacing(&v, SpacingIjk::isotropic(sp), Interp::Linear).expect("a small grid");
            let s = r.shape();
            for (i, j, k) in [(1, 1, 1), (s.ni / 2, s.nj / 3, s.nk / 2), (s.ni - 2, s.nj - 2, s.nk - 2)] {
                let p = r.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
                // Inside the source's centre hull the ramp is reproduced exactly (trilinear is exact for linear functions).
                let src_v = v.voxel_from_ras().apply(p);
                if (0..3).all(|a| src_v.v[a] >= 0.0 && src_v.v[a] <= (shape.ijk()[a] - 1) as f64) {
                    let got = r.data[[k, j, i]];
                    assert!((got - f(p)).abs() < 1e-3, "spacing {sp}: {got} vs {}", f(p));
                }
            }
        }
    }

    /// Any run of slices from any start is what the whole resampling holds there, on the
    /// axis-aligned, general (oblique) and nearest paths.
    #[test]
    fn slab_runs_equal_the_whole_resampling() {
        let aff = RasFromVoxel::scale_translate([0.7, -0.6, 1.5], [3.0, 4.0, -5.0]);
        let shape = GridShape::new(23, 17, 9);
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 7 + j * 13 + k * 29) % 31) as f32 - 9.0);
        let v = Volume::new(data, aff).expect("valid");
        let (gs, ga) = grid_for_spacing(shape, &aff, SpacingIjk([1.1, 0.45, 0.8])).expect("a small grid");
        let rot = nalgebra::Rotation3::from_euler_angles(0.1, -0.2, 0.3).into_inner();
        let oblique = RasFromVoxel::from_parts(rot * ga.linear(), ga.translation());
        for (grid, interp) in [(ga, Interp::Linear), (oblique, Interp::Linear), (oblique, Interp::Nearest)] {
            let r = SlabResampler::new(&v, gs, &grid, interp, -77.0);
            let whole = r.volume();
            assert_eq!(whole.data, resample_to_grid(&v, gs, &grid, interp, -77.0).data);
            let flat = whole.data.as_slice().expect("C order");
            let sl = gs.ni * gs.nj;
            for (k0, n) in [(0, 1), (0, gs.nk), (3, 4), (gs.nk - 1, 1)] {
                let mut out = vec![0f32; n * sl];
                r.fill_slices(k0, &mut out);
                assert!(out[..] == flat[k0 * sl..(k0 + n) * sl], "{interp:?} k0 {k0} n {n}");
            }
        }
    }

    #[test]
    fn axis_aligned_fast_path_equals_general_path() {
        let aff = RasFromVoxel::scale_translate([0.7, -0.6, 1.5], [3.0, 4.0, -5.0]);
        let shape = GridShape::new(23, 17, 9);
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 7 + j * 13 + k * 29) % 31) as f32 - 9.0);
        let v = Volume::new(data, aff).expect("valid");
        let (gs, ga) = grid_for_spacing(shape, &aff, SpacingIjk([1.1, 0.45, 0.8])).expect("a small grid");
        // Shift the target a little so some voxels fall outside the source (fill).
        let ga = RasFromVoxel::from_parts(ga.linear(), ga.translation() + nalgebra::Vector3::new(2.0, 0.3, 0.0));
        let fast = resample_to_grid(&v, gs, &ga, Interp::Linear, -77.0);
        let m = src_from_dst(&v.ras_from_voxel, &ga);
        assert!(is_axis_aligned(m.matrix()));
        let mut slow = Array3::<f32>::zeros(gs.array_shape());
        let d = v.data.as_slice().expect("contiguous");
        for_each_dst(&mut slow, &m, |x, y, z| sample_lin(d, 23, 17, 9, x, y, z).unwrap_or(-77.0));
        let max = fast.data.iter().zip(slow.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(max < 1e-4, "max diff {max}");
        assert!(fast.data.iter().any(|&x| x == -77.0), "some voxels are outside");
    }

    #[test]
    fn extent_is_kept() {
        let aff = RasFromVoxel::scale_translate([0.75, 0.75, 1.5], [0.0; 3]);
        let (s, a) = grid_for_spacing(GridShape::new(512, 512, 224), &aff, SpacingIjk::isotropic(1.0)).expect("a CT-sized grid");
        assert_eq!(s, GridShape::new(384, 384, 336));
        assert!((a.column_norms()[2] - 1.0).abs() < 1e-12);
        let c_old = aff.apply(VoxelIjk::new(255.5, 255.5, 111.5));
        let c_new = a.apply(VoxelIjk::new(191.5, 191.5, 167.5));
        assert!(c_old.distance(&c_new) < 1e-9);
    }

    /// `--spacing 1e-3` on a CT (mm meant, µm typed): an error naming the spacing, the grid
    /// and the limit, before any allocation (it used to abort allocating 149 PB).
    #[test]
    fn a_spacing_that_makes_a_huge_grid_is_an_error() {
        let aff = RasFromVoxel::scale_translate([0.75, 0.75, 1.5], [0.0; 3]);
        let shape = GridShape::new(512, 512, 224);
        let e = grid_for_spacing(shape, &aff, SpacingIjk::isotropic(1e-3)).expect_err("too large");
        let ResampleError::TooLarge { size_ijk, .. } = &e else { panic!("{e}") };
        assert_eq!(*size_ijk, [384_000.0, 384_000.0, 336_000.0]);
        let msg = e.to_string();
        for part in ["0.001", "384000×384000×336000", "2147483648 voxels", "8 GiB"] {
            assert!(msg.contains(part), "{part:?} not in {msg:?}");
        }
        // Just under and just over the limit; an axis alone past it; overflow of the product.
        let cube = GridShape::new(1024, 1024, 2048);
        assert!(grid_for_spacing(cube, &RasFromVoxel::identity(), SpacingIjk::isotropic(1.0)).is_ok());
        assert!(grid_for_spacing(GridShape::new(1025, 1024, 2048), &RasFromVoxel::identity(), SpacingIjk::isotropic(1.0)).is_err());
        assert!(grid_for_spacing(GridShape::new(1, 1, 1), &RasFromVoxel::identity(), SpacingIjk([1e-300, 1.0, 1.0])).is_err());
        assert_eq!(checked_grid_size([4e9, 4e9, 1.0]), None);
        let v = Volume::new(Array3::zeros((224, 512, 512)), aff).expect("valid");
        assert!(matches!(resample_to_spacing(&v, SpacingIjk::isotropic(1e-3), Interp::Linear), Err(ResampleError::TooLarge { .. })));
    }

    #[test]
    fn a_spacing_that_is_not_positive_and_finite_is_an_error() {
        let aff = RasFromVoxel::identity();
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = grid_for_spacing(GridShape::new(4, 4, 4), &aff, SpacingIjk([1.0, bad, 1.0])).expect_err("bad spacing");
            assert!(e.to_string().contains("positive, finite"), "{e}");
        }
    }

    /// Voxels held in another memory layout (Fortran order, a strided slice of a wider array)
    /// give the same statistics, samples and resampling as the C-order array, whether the
    /// volume is built by `new` (which stores C order) or by hand: nothing reads them as empty.
    #[test]
    fn other_memory_layouts_give_the_same_stats_and_resampling() {
        let aff = RasFromVoxel::scale_translate([0.9, 1.1, 1.7], [1.0, -2.0, 3.0]);
        let c = Array3::from_shape_fn((6, 7, 8), |(k, j, i)| (k * 56 + j * 8 + i) as f32 * 0.5 - 20.0);
        let fortran = c.t().as_standard_layout().into_owned().reversed_axes();
        assert!(!fortran.is_standard_layout() && fortran == c);
        let wide = Array3::from_shape_fn((6, 7, 16), |(k, j, i)| if i % 2 == 0 { c[[k, j, i / 2]] } else { f32::NAN });
        let strided = wide.slice_move(ndarray::s![.., .., ..;2]);
        assert!(strided.as_slice_memory_order().is_none() && strided == c);
        let want = Volume::new(c.clone(), aff).expect("valid");
        let spacing = SpacingIjk([1.3, 0.8, 1.0]);
        let probe = VoxelIjk::new(3.3, 2.6, 4.1);
        for data in [fortran, strided] {
            let by_hand = Volume { data: data.clone(), ras_from_voxel: aff, meta: VolumeMeta::default() };
            let built = Volume::new(data, aff).expect("valid");
            assert!(built.data.is_standard_layout() && built.data == c);
            for v in [&by_hand, &built] {
                assert_eq!(v.stats(), want.stats());
                assert_eq!(v.stats().min, -20.0);
                assert_eq!(v.sample_trilinear(probe), want.sample_trilinear(probe));
                for interp in [Interp::Linear, Interp::Nearest] {
                    let got = resample_to_spacing(v, spacing, interp).expect("small");
                    assert_eq!(got.data, resample_to_spacing(&want, spacing, interp).expect("small").data, "{interp:?}");
                }
            }
        }
        // Labels too.
        let lc = c.mapv(|x| (x.abs() as u16) % 5);
        let lab_f = LabelMap { data: lc.t().as_standard_layout().into_owned().reversed_axes(), ras_from_voxel: aff, meta: VolumeMeta::default() };
        let (gs, ga) = grid_for_spacing(lab_f.shape(), &aff, spacing).expect("small");
        let lab_c = LabelMap::new(lab_f.data.clone(), aff).expect("valid");
        assert!(lab_c.data.is_standard_layout() && lab_c.data == lc);
        assert_eq!(resample_labels_to_grid(&lab_f, gs, &ga).data, resample_labels_to_grid(&lab_c, gs, &ga).data);
    }
}
