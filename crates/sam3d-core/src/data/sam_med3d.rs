//! SAM-Med3D's input, prepared as the published checkpoints were trained: the scan in canonical
//! RAS at 1.5 mm isotropic, a 128³ cube around the prompt, z-scored over the cube's
//! foreground (voxels above 0 before normalisation), one grey channel.
//!
//! The cube is placed in world space, never by array indices: its grid axes are R, A and S
//! (grid index `(i, j, k)` → RAS through [`Crop::ras_from_grid`]), and the scan is sampled
//! into it trilinearly through `geometry`, so any stored orientation, spacing or obliquity
//! gives the same cube. Near a border the cube moves to stay inside the scan (it is never
//! shrunk: a 128³ cube stays a cube, not a cylinder); along an axis where the whole scan is
//! shorter than the cube, the scan is centred in it and the rest padded with 0, as the
//! reference's crop-or-pad does (0 lies outside the foreground, so the padding does not move
//! the z-score).
//!
//! The network's tensors are ordered `[R, A, S]` (torchio's canonical layout), the transpose of
//! this crate's `[k, j, i]` arrays: [`Crop::image`] is kept `[k, j, i]` and the engine
//! transposes once.

use crate::geometry::{Grid, GridShape, Point3, RasFromGrid, RasMm};
use crate::volume::resample::{Interp, resample_to_grid};
use crate::volume::{OnGrid, Volume};
use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;

/// The published checkpoints' cell size (mm).
pub const SPACING_MM: f64 = 1.5;
/// The published checkpoints' input side (cells).
pub const SIDE: usize = 128;

/// One cube of the scan, ready for the network.
#[derive(Clone, Debug)]
pub struct Crop {
    /// Grid index `(i, j, k)` → RAS mm: `i` along +R, `j` along +A, `k` along +S.
    pub ras_from_grid: RasFromGrid,
    pub side: usize,
    /// `[k, j, i]`, z-scored over the foreground.
    pub image: Array3<f32>,
    /// How far the cube moved from being centred on the prompt to stay inside the scan (RAS mm).
    pub shift_mm: [f64; 3],
    /// Mean and standard deviation of the foreground the z-score used (raw units), and how
    /// many voxels it had (0: no foreground; the cube was z-scored over all of it).
    pub foreground: (f64, f64, usize),
}

impl Crop {
    /// The continuous grid index `(i, j, k)` of a RAS point (cell centres are integers).
    pub fn grid_of(&self, p: RasMm) -> [f64; 3] {
        let g: Point3<Grid> = self
            .ras_from_grid
            .try_inverse()
            .map(|inv| inv.apply(p))
            .unwrap_or(Point3::new(f64::NAN, f64::NAN, f64::NAN));
        g.to_array()
    }

    /// Whether a RAS point falls inside the cube (within half a cell of its outer cell centres).
    pub fn contains(&self, p: RasMm) -> bool {
        let g = self.grid_of(p);
        g.iter()
            .all(|&x| x.is_finite() && x >= -0.5 && x <= self.side as f64 - 0.5)
    }

    /// The cell holding a RAS point, `(i, j, k)` rounded; `None` outside the cube.
    pub fn cell_of(&self, p: RasMm) -> Option<[usize; 3]> {
        let g = self.grid_of(p);
        let s = self.side as f64;
        g.iter()
            .all(|&x| x.is_finite() && x > -0.5 && x < s - 0.5)
            .then(|| g.map(|x| x.round() as usize))
    }
}

/// Where a cube of `side` cells of `spacing` mm goes for a prompt at `centre`: axes R, A, S;
/// centred on `centre`, then moved along each axis to stay inside the scan's extent (the box of
/// its voxel centres in RAS), or centred on the scan along an axis where the scan is shorter.
/// Returns the cube's grid → RAS and the shift applied (mm).
pub fn place(volume: &Volume, centre: RasMm, side: usize, spacing: f64) -> (RasFromGrid, [f64; 3]) {
    let (lo, hi) = volume.ras_extent();
    let span = (side as f64 - 1.0) * spacing;
    let mut origin = [0.0; 3];
    let mut shift = [0.0; 3];
    for d in 0..3 {
        let wanted = centre.to_array()[d] - (side / 2) as f64 * spacing;
        let o = if hi[d] - lo[d] >= span {
            wanted.clamp(lo[d], hi[d] - span)
        } else {
            (lo[d] + hi[d]) / 2.0 - span / 2.0
        };
        origin[d] = o;
        shift[d] = o - wanted;
    }
    let lin = Matrix3::from_diagonal_element(spacing);
    (RasFromGrid::from_parts(lin, Vector3::from(origin)), shift)
}

/// The cube for a prompt at `centre`: placed by [`place`], sampled trilinearly (0 outside the
/// scan), z-scored by [`zscore_foreground`].
pub fn crop(volume: &Volume, centre: RasMm, side: usize, spacing: f64) -> Crop {
    let (ras_from_grid, shift_mm) = place(volume, centre, side, spacing);
    let shape = GridShape {
        ni: side,
        nj: side,
        nk: side,
    };
    let mut image =
        resample_to_grid(volume, shape, &ras_from_grid.relabel(), Interp::Linear, 0.0).data;
    let foreground = zscore_foreground(&mut image);
    Crop {
        ras_from_grid,
        side,
        image,
        shift_mm,
        foreground,
    }
}

/// Z-scores `a` in place over its foreground (values above 0), as the reference's
/// normalisation masked by `x > 0`: every voxel becomes `(x − mean) / std` of the foreground.
/// Without foreground the whole array is used; a constant array becomes zeros. NaNs count as
/// background and become 0. Returns (mean, std, foreground voxels).
pub fn zscore_foreground(a: &mut Array3<f32>) -> (f64, f64, usize) {
    let stats = |fg: bool| {
        let (mut n, mut sum, mut sq) = (0usize, 0.0f64, 0.0f64);
        for &x in a.iter() {
            if x.is_finite() && (!fg || x > 0.0) {
                n += 1;
                sum += x as f64;
                sq += (x as f64) * (x as f64);
            }
        }
        (n, sum, sq)
    };
    let (mut n, mut sum, mut sq) = stats(true);
    let fg = n;
    if n == 0 {
        (n, sum, sq) = stats(false);
    }
    if n == 0 {
        a.fill(0.0);
        return (0.0, 0.0, 0);
    }
    let mean = sum / n as f64;
    // The sample standard deviation (n − 1), as torch's `std` which the reference calls.
    let var = if n > 1 {
        ((sq - sum * mean) / (n - 1) as f64).max(0.0)
    } else {
        0.0
    };
    let std = var.sqrt();
    if std > 0.0 {
        a.mapv_inplace(|x| {
            if x.is_finite() {
                ((x as f64 - mean) / std) as f32
            } else {
                0.0
            }
        });
    } else {
        a.fill(0.0);
    }
    (mean, std, fg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{RasFromVoxel, VoxelIjk};
    use crate::volume::VolumeMeta;

    fn volume(
        shape_kji: [usize; 3],
        ras_from_voxel: RasFromVoxel,
        f: impl Fn(RasMm) -> f32,
    ) -> Volume {
        let mut data = Array3::<f32>::zeros(shape_kji);
        for ((k, j, i), v) in data.indexed_iter_mut() {
            *v = f(ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64)));
        }
        Volume {
            data,
            ras_from_voxel,
            meta: VolumeMeta::default(),
        }
    }

    /// An LPS-stored, anisotropic scan (i → L at 0.8 mm, j → P at 0.8 mm, k → S at 3 mm).
    fn lps_scan() -> RasFromVoxel {
        RasFromVoxel::from_rows([
            [-0.8, 0.0, 0.0, 100.0],
            [0.0, -0.8, 0.0, 120.0],
            [0.0, 0.0, 3.0, -200.0],
            [0.0, 0.0, 0.0, 1.0],
        ])
        .unwrap()
    }

    #[test]
    fn the_cube_is_canonical_ras_at_its_spacing_and_centred_on_the_prompt() {
        // 250 × 300 × 100 voxels: 199 × 239 × 297 mm, larger than the 190.5 mm cube on every axis.
        let v = volume([100, 300, 250], lps_scan(), |_| 0.0);
        let (lo, hi) = v.ras_extent();
        let centre = RasMm::new(
            (lo[0] + hi[0]) / 2.0,
            (lo[1] + hi[1]) / 2.0,
            (lo[2] + hi[2]) / 2.0,
        );
        let (g, shift) = place(&v, centre, SIDE, SPACING_MM);
        assert_eq!(shift, [0.0; 3]);
        let m = g.linear();
        assert_eq!(m, Matrix3::from_diagonal_element(1.5));
        // The prompt sits on cell 64 along each axis.
        let c = g.try_inverse().unwrap().apply(centre).to_array();
        for x in c {
            assert!((x - 64.0).abs() < 1e-9, "{c:?}");
        }
    }

    #[test]
    fn near_a_border_the_cube_moves_inside_and_keeps_its_size() {
        let v = volume([100, 300, 250], lps_scan(), |_| 0.0);
        let (lo, hi) = v.ras_extent();
        // A prompt 5 mm inside the right edge and 5 mm above the bottom.
        let p = RasMm::new(hi[0] - 5.0, (lo[1] + hi[1]) / 2.0, lo[2] + 5.0);
        let (g, shift) = place(&v, p, SIDE, SPACING_MM);
        let first = g.apply(Point3::new(0.0, 0.0, 0.0)).to_array();
        let last = g.apply(Point3::new(127.0, 127.0, 127.0)).to_array();
        assert!(
            (last[0] - hi[0]).abs() < 1e-9,
            "right face on the scan's last voxel: {last:?} vs {hi:?}"
        );
        assert!(
            (first[2] - lo[2]).abs() < 1e-9,
            "bottom face on the scan's first slice"
        );
        assert!(
            (last[0] - first[0] - 127.0 * 1.5).abs() < 1e-9,
            "still 128 cells of 1.5 mm"
        );
        assert!(
            shift[0] < 0.0 && shift[1] == 0.0 && shift[2] > 0.0,
            "{shift:?}"
        );
        // The prompt is still inside the cube, off centre.
        let c = g.try_inverse().unwrap().apply(p).to_array();
        assert!(
            c[0] > 64.0 && c[0] <= 127.0 && c[2] < 64.0 && c[2] >= 0.0,
            "{c:?}"
        );
    }

    #[test]
    fn a_scan_shorter_than_the_cube_is_centred_in_it() {
        // 40 slices of 3 mm = 117 mm along S.
        let v = volume([40, 300, 250], lps_scan(), |_| 0.0);
        let (lo, hi) = v.ras_extent();
        let (g, _) = place(&v, RasMm::new(0.0, 0.0, lo[2]), SIDE, SPACING_MM);
        let z0 = g.apply(Point3::new(0.0, 0.0, 0.0)).z();
        let z1 = g.apply(Point3::new(0.0, 0.0, 127.0)).z();
        assert!(((z0 + z1) / 2.0 - (lo[2] + hi[2]) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_crop_samples_the_scan_where_the_grid_says_and_pads_with_zero() {
        // Intensity = 1000 + R − 2A + 3S, a linear field: trilinear sampling is exact.
        let f = |p: RasMm| (1000.0 + p.x() - 2.0 * p.y() + 3.0 * p.z()) as f32;
        let v = volume([40, 300, 250], lps_scan(), f);
        let c = crop(&v, RasMm::new(0.0, 20.0, -150.0), 32, SPACING_MM);
        // Undo the z-score and compare each cell with the field at its RAS position.
        let (mean, std, n) = c.foreground;
        assert!(n > 0 && std > 0.0);
        let (lo, hi) = v.ras_extent();
        let mut inside = 0;
        for ((k, j, i), &z) in c.image.indexed_iter() {
            let p = c
                .ras_from_grid
                .apply(Point3::new(i as f64, j as f64, k as f64));
            let raw = z as f64 * std + mean;
            let within = (0..3).all(|d| p.to_array()[d] >= lo[d] && p.to_array()[d] <= hi[d]);
            if within {
                inside += 1;
                assert!(
                    (raw - f(p) as f64).abs() < 0.05,
                    "cell ({i},{j},{k}) at {p:?}: {raw} vs {}",
                    f(p)
                );
            }
        }
        assert!(inside > 1000, "{inside} cells inside the scan");
        // The prompt's cell: the crop knows where it is.
        let cell = c.cell_of(RasMm::new(0.0, 20.0, -150.0)).unwrap();
        let back =
            c.ras_from_grid
                .apply(Point3::new(cell[0] as f64, cell[1] as f64, cell[2] as f64));
        assert!(back.distance(&RasMm::new(0.0, 20.0, -150.0)) <= 1.5 * 3f64.sqrt() / 2.0 + 1e-9);
    }

    #[test]
    fn zscore_uses_the_foreground_only() {
        let mut a =
            Array3::from_shape_vec((1, 1, 6), vec![-1000.0, 0.0, 10.0, 20.0, 30.0, f32::NAN])
                .unwrap();
        let (mean, std, n) = zscore_foreground(&mut a);
        assert_eq!(n, 3);
        assert!(
            (mean - 20.0).abs() < 1e-12 && (std - 10.0).abs() < 1e-12,
            "{mean} {std}"
        );
        let got: Vec<f32> = a.iter().copied().collect();
        assert_eq!(got, vec![-102.0, -2.0, -1.0, 0.0, 1.0, 0.0]);
        let mut flat = Array3::from_elem((2, 2, 2), -5.0f32);
        assert_eq!(zscore_foreground(&mut flat), (-5.0, 0.0, 0));
        assert!(flat.iter().all(|&x| x == 0.0));
    }
}
