//! Resampling onto another grid: trilinear for intensities, nearest for labels, in parallel
//! over output slices. The mapping is one affine, `src_voxel_from_dst_voxel =
//! voxel_from_ras(src) * ras_from_voxel(dst)`, stepped incrementally along each output row.

use super::{LabelMap, OnGrid, Volume, VolumeMeta};
use crate::geometry::{Affine3, GridShape, RasFromVoxel, Voxel};
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

/// The grid with isotropic (or per-axis) `spacing_mm` covering the same physical extent as
/// `shape`/`ras_from_voxel`: same axis directions, `n' = max(1, round(n·s/s'))` voxels per axis,
/// centred on the same point (so the voxel-edge extent is kept to within half a new voxel).
pub fn grid_for_spacing(shape: GridShape, ras_from_voxel: &RasFromVoxel, spacing_mm: [f64; 3]) -> (GridShape, RasFromVoxel) {
    let old_sp = ras_from_voxel.column_norms();
    let lin = ras_from_voxel.linear();
    let n_old = shape.ijk();
    let mut n_new = [1usize; 3];
    let mut new_lin = lin;
    for a in 0..3 {
        n_new[a] = ((n_old[a] as f64 * old_sp[a] / spacing_mm[a]).round() as usize).max(1);
        new_lin.set_column(a, &(lin.column(a) / old_sp[a] * spacing_mm[a]));
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
    (GridShape::new(n_new[0], n_new[1], n_new[2]), RasFromVoxel::from_parts(new_lin, t))
}

/// Trilinear value at a continuous voxel position. Positions within half a voxel outside the
/// outermost centres take the edge value; further out: `None`.
#[inline]
pub fn trilinear_at(data: &Array3<f32>, x: f64, y: f64, z: f64) -> Option<f32> {
    let s = data.shape();
    let (nk, nj, ni) = (s[0], s[1], s[2]);
    let slice = data.as_slice()?;
    sample_lin(slice, ni, nj, nk, x, y, z)
}

#[inline(always)]
fn sample_lin(d: &[f32], ni: usize, nj: usize, nk: usize, x: f64, y: f64, z: f64) -> Option<f32> {
    if !(x >= -0.5 && y >= -0.5 && z >= -0.5 && x <= ni as f64 - 0.5 && y <= nj as f64 - 0.5 && z <= nk as f64 - 0.5) {
        return None;
    }
    let cl = |v: f64, n: usize| v.clamp(0.0, (n - 1) as f64);
    let (x, y, z) = (cl(x, ni), cl(y, nj), cl(z, nk));
    let (x0, y0, z0) = (x.floor() as usize, y.floor() as usize, z.floor() as usize);
    let (x1, y1, z1) = ((x0 + 1).min(ni - 1), (y0 + 1).min(nj - 1), (z0 + 1).min(nk - 1));
    let (fx, fy, fz) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32, (z - z0 as f64) as f32);
    let row = ni;
    let sl = ni * nj;
    let at = |i: usize, j: usize, k: usize| d[k * sl + j * row + i];
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
    flat.par_chunks_mut(ni * nj).enumerate().for_each(|(k, slab)| {
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
    });
}

/// One output axis of an axis-aligned mapping: for each output index, the two source indices
/// and the weight of the second (or `None` outside the source).
fn axis_table(scale: f64, offset: f64, n_out: usize, n_src: usize) -> Vec<Option<(usize, usize, f32)>> {
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

/// Trilinear resampling when the source-from-target mapping has no rotation (only per-axis
/// scale and shift — the case of `resample_to_spacing`): per-axis index/weight tables make the
/// inner loop a handful of loads and lerps.
fn resample_axis_aligned(d: &[f32], src: GridShape, out: &mut Array3<f32>, m: &nalgebra::Matrix4<f64>, fill: f32) {
    let s = out.shape().to_vec();
    let (nk, nj, ni) = (s[0], s[1], s[2]);
    let tx = axis_table(m[(0, 0)], m[(0, 3)], ni, src.ni);
    let ty = axis_table(m[(1, 1)], m[(1, 3)], nj, src.nj);
    let tz = axis_table(m[(2, 2)], m[(2, 3)], nk, src.nk);
    let (row, sl) = (src.ni, src.ni * src.nj);
    let Some(flat) = out.as_slice_mut() else { return };
    flat.par_chunks_mut(ni * nj).zip(tz.par_iter()).for_each(|(slab, z)| {
        for (j, y) in ty.iter().enumerate() {
            let out_row = &mut slab[j * ni..(j + 1) * ni];
            let (Some((z0, z1, fz)), Some((y0, y1, fy))) = (*z, *y) else {
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
    });
}

fn is_axis_aligned(m: &nalgebra::Matrix4<f64>) -> bool {
    (0..3).all(|r| (0..3).all(|c| r == c || m[(r, c)] == 0.0))
}

/// Resamples intensities onto a target grid; outside the source: `fill`.
pub fn resample_to_grid(src: &Volume, shape: GridShape, ras_from_voxel: &RasFromVoxel, interp: Interp, fill: f32) -> Volume {
    let m = src_from_dst(&src.ras_from_voxel, ras_from_voxel);
    let mut out = Array3::<f32>::zeros(shape.array_shape());
    let s = src.shape();
    let (ni, nj, nk) = (s.ni, s.nj, s.nk);
    let d = src.data.as_slice().unwrap_or(&[]);
    match interp {
        Interp::Linear if is_axis_aligned(m.matrix()) => resample_axis_aligned(d, s, &mut out, m.matrix(), fill),
        Interp::Linear => for_each_dst(&mut out, &m, |x, y, z| sample_lin(d, ni, nj, nk, x, y, z).unwrap_or(fill)),
        Interp::Nearest => for_each_dst(&mut out, &m, |x, y, z| {
            s.array_index(crate::geometry::VoxelIjk::new(x, y, z)).map(|a| d[(a.k * nj + a.j) * ni + a.i]).unwrap_or(fill)
        }),
    }
    Volume { data: out, ras_from_voxel: *ras_from_voxel, meta: VolumeMeta { dtype: src.meta.dtype, ..Default::default() } }
}

/// Resamples a label map (nearest neighbour) onto a target grid; outside: background.
pub fn resample_labels_to_grid(src: &LabelMap, shape: GridShape, ras_from_voxel: &RasFromVoxel) -> LabelMap {
    let m = src_from_dst(&src.ras_from_voxel, ras_from_voxel);
    let mut out = Array3::<u16>::zeros(shape.array_shape());
    let s = src.shape();
    let (ni, nj) = (s.ni, s.nj);
    let d = src.data.as_slice().unwrap_or(&[]);
    for_each_dst(&mut out, &m, |x, y, z| {
        s.array_index(crate::geometry::VoxelIjk::new(x, y, z)).map(|a| d[(a.k * nj + a.j) * ni + a.i]).unwrap_or(0)
    });
    LabelMap { data: out, ras_from_voxel: *ras_from_voxel, meta: VolumeMeta { dtype: src.meta.dtype, ..Default::default() } }
}

/// Resamples a volume to the given spacing over the same physical extent.
pub fn resample_to_spacing(src: &Volume, spacing_mm: [f64; 3], interp: Interp) -> Volume {
    let (shape, aff) = grid_for_spacing(src.shape(), &src.ras_from_voxel, spacing_mm);
    let fill = src.stats().min as f32;
    resample_to_grid(src, shape, &aff, interp, if fill.is_finite() { fill } else { 0.0 })
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
            let r = resample_to_spacing(&v, [sp; 3], Interp::Linear);
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

    #[test]
    fn axis_aligned_fast_path_equals_general_path() {
        let aff = RasFromVoxel::scale_translate([0.7, -0.6, 1.5], [3.0, 4.0, -5.0]);
        let shape = GridShape::new(23, 17, 9);
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 7 + j * 13 + k * 29) % 31) as f32 - 9.0);
        let v = Volume::new(data, aff).expect("valid");
        let (gs, ga) = grid_for_spacing(shape, &aff, [1.1, 0.45, 0.8]);
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
        let (s, a) = grid_for_spacing(GridShape::new(512, 512, 224), &aff, [1.0; 3]);
        assert_eq!(s, GridShape::new(384, 384, 336));
        assert!((a.column_norms()[2] - 1.0).abs() < 1e-12);
        let c_old = aff.apply(VoxelIjk::new(255.5, 255.5, 111.5));
        let c_new = a.apply(VoxelIjk::new(191.5, 191.5, 167.5));
        assert!(c_old.distance(&c_new) < 1e-9);
    }
}
