//! One click → the model's inputs, and the model's SDF cube → a mask on the source grid.
//! Plain ndarray, no tch: inference (`engine`) and training preprocessing share it.
//!
//! Frames (all through [`crate::geometry`]):
//! - The **slice frame** of a click on a [`ViewPlane`] is aligned with the plane's world axes
//!   and right-handed: axial `u = +R, v = +A, n = +S`; coronal `u = +R, v = +S, n = −A`;
//!   sagittal `u = +A, v = +S, n = +R`. It does not depend on how the volume is stored, so an
//!   LPS and an RAS copy of one scan give the same inputs.
//! - The **slice image** is `S×S` pixels at spacing `s`, centred on the click; array index
//!   `[row, col]`, column along `+u`, row 0 at the top (largest `v`). [`ClickSample::ras_from_pixel`]
//!   maps `(col, row, 0)` to RAS.
//! - The **output cube** has side `L` centred on the click, `G³` cells of `L/G` mm, grid index
//!   `(gi, gj, gk)` along `(u, v, n)`, held as an array `[gk, gj, gi]` (like voxels).
//!   [`ClickSample::ras_from_grid`] maps grid index to RAS (cell centres).
//! - The **pointmap** (`3×S×S`) is the RAS position of each pixel minus the click, divided by
//!   the cube's half-size `L/2`; NaN outside the 2D mask.

use crate::geometry::{Affine3, Grid, GridShape, Ras, RasFromGrid, RasFromVoxel, RasMm, ViewPlane, Voxel, VoxelFromRas, VoxelIjk};
use crate::volume::intensity::mean_std;
use crate::volume::resample::trilinear_at;
use crate::volume::{Modality, OnGrid, Volume};
use nalgebra::{Matrix3, Vector3};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use rayon::prelude::*;
use std::sync::Arc;

/// Marker: pixel index `(col, row, 0)` of a click's slice image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlicePixel;
/// World RAS mm from a slice image's pixel index `(col, row, 0)`.
pub type RasFromPixel = Affine3<Ras, SlicePixel>;

/// Errors of the click preprocessing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClickError {
    #[error("click at RAS ({:.1}, {:.1}, {:.1}) mm is outside the volume (voxel ({:.1}, {:.1}, {:.1}) of a {shape} grid)",
        click[0], click[1], click[2], voxel[0], voxel[1], voxel[2])]
    OutsideVolume { click: [f64; 3], voxel: [f64; 3], shape: GridShape },
    #[error("click position is not a finite number: {0:?}")]
    NotFinite([f64; 3]),
    #[error("the volume's affine cannot be inverted")]
    SingularAffine,
}

/// Optional `volume_context` cube sampling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContextParams {
    /// The context cube is `size³` voxels over the output cube (side `L`).
    pub size: usize,
    /// Also sample the volume on the output grid itself (`G³`) for the image-guided decoder.
    pub guide: bool,
}

/// Sizes the preprocessing needs (from the model config: `model::Config::click_params`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClickParams {
    /// `S`.
    pub image_size: usize,
    /// `s` (mm).
    pub spacing_mm: f64,
    /// `L` (mm).
    pub cube_mm: f64,
    /// `G`.
    pub grid: usize,
    pub ct_window_hu: [f32; 2],
    pub prior_radius_px: f64,
    pub context: Option<ContextParams>,
}

/// Intensity normalisation for one volume, decided once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Normaliser {
    /// CT: clip to `[lo, hi]` HU, map to 0..1.
    CtWindow { lo: f32, hi: f32 },
    /// MR: z-score with the volume's mean and standard deviation.
    ZScore { mean: f32, std: f32 },
}

impl Normaliser {
    #[inline]
    pub fn apply(&self, x: f32) -> f32 {
        match *self {
            Normaliser::CtWindow { lo, hi } => (x.clamp(lo, hi) - lo) / (hi - lo).max(1e-6),
            Normaliser::ZScore { mean, std } => (x - mean) / std,
        }
    }
}

/// A volume made ready for many clicks: modality decided, normalisation statistics computed,
/// `voxel_from_ras` inverted once. Cheap to clone (the voxels are shared).
#[derive(Clone, Debug)]
pub struct PreparedVolume {
    pub volume: Arc<Volume>,
    pub modality: Modality,
    pub normaliser: Normaliser,
    /// Raw intensity used outside the volume and for NaN voxels (the volume's minimum: air in CT,
    /// background in MR).
    pub fill_raw: f32,
    voxel_from_ras: VoxelFromRas,
}

impl PreparedVolume {
    /// `modality`: `None` or `Some(Unknown)` guesses from the intensities.
    pub fn new(volume: Arc<Volume>, modality: Option<Modality>, ct_window_hu: [f32; 2]) -> Result<Self, ClickError> {
        let voxel_from_ras = volume.ras_from_voxel.try_inverse().map_err(|_| ClickError::SingularAffine)?;
        // Sampling reads the voxels as one C-order slice; a view with other strides is copied once.
        let volume = if volume.data.is_standard_layout() {
            volume
        } else {
            let mut v = (*volume).clone();
            v.data = v.data.as_standard_layout().into_owned();
            Arc::new(v)
        };
        let modality = match modality {
            Some(m @ (Modality::Ct | Modality::Mr)) => m,
            _ => volume.guess_modality(),
        };
        let stats = volume.stats();
        let fill_raw = if stats.min.is_finite() { stats.min as f32 } else { 0.0 };
        let normaliser = match modality {
            Modality::Ct => Normaliser::CtWindow { lo: ct_window_hu[0], hi: ct_window_hu[1] },
            _ => {
                let (mean, std) = mean_std(&crate::volume::c_order(&volume.data), None);
                Normaliser::ZScore { mean: mean as f32, std: if std > 1e-12 { std as f32 } else { 1.0 } }
            }
        };
        Ok(Self { volume, modality, normaliser, fill_raw, voxel_from_ras })
    }

    /// The same voxels and normalisation seen through another affine (training augmentation:
    /// the world moved by a similarity). Sampling then uses `ras_from_voxel`; `self.volume`
    /// keeps the data's own affine and is shared, not copied.
    pub fn with_affine(&self, ras_from_voxel: &crate::geometry::RasFromVoxel) -> Result<Self, ClickError> {
        let voxel_from_ras = ras_from_voxel.try_inverse().map_err(|_| ClickError::SingularAffine)?;
        Ok(Self { volume: self.volume.clone(), modality: self.modality, normaliser: self.normaliser, fill_raw: self.fill_raw, voxel_from_ras })
    }

    /// Sets the CT window (HU) when the volume is normalised as CT.
    pub fn set_ct_window(&mut self, ct_window_hu: [f32; 2]) {
        if let Normaliser::CtWindow { .. } = self.normaliser {
            self.normaliser = Normaliser::CtWindow { lo: ct_window_hu[0], hi: ct_window_hu[1] };
        }
    }

    pub fn voxel_from_ras(&self) -> &VoxelFromRas {
        &self.voxel_from_ras
    }

    /// Normalised intensity at a RAS point (trilinear); the fill value outside or on NaN.
    #[inline]
    pub fn sample_normalised(&self, p: RasMm) -> f32 {
        let v = self.voxel_from_ras.apply(p);
        let raw = trilinear_at(&self.volume.data, v.v.x, v.v.y, v.v.z).filter(|x| !x.is_nan()).unwrap_or(self.fill_raw);
        self.normaliser.apply(raw)
    }

    /// Fails with a readable error when the click is not inside the volume's voxel extent.
    pub fn check_click(&self, click: RasMm) -> Result<VoxelIjk, ClickError> {
        if !click.is_finite() {
            return Err(ClickError::NotFinite(click.to_array()));
        }
        let v = self.voxel_from_ras.apply(click);
        let shape = self.volume.shape();
        if !shape.contains(v) {
            return Err(ClickError::OutsideVolume { click: click.to_array(), voxel: v.to_array(), shape });
        }
        Ok(v)
    }
}

/// The slice frame of a view plane: unit vectors `u`, `v`, `n` in RAS (right-handed).
pub fn slice_frame(plane: ViewPlane) -> Matrix3<f64> {
    let (u, v) = match plane {
        ViewPlane::Axial => (Vector3::x(), Vector3::y()),
        ViewPlane::Coronal => (Vector3::x(), Vector3::z()),
        ViewPlane::Sagittal => (Vector3::y(), Vector3::z()),
    };
    Matrix3::from_columns(&[u, v, u.cross(&v)])
}

/// Everything the model needs for one click, before the 2D mask is known.
#[derive(Clone, Debug)]
pub struct ClickSample {
    pub click: RasMm,
    pub plane: ViewPlane,
    /// Normalised intensities `[S, S]` (`[row, col]`).
    pub image: Array2<f32>,
    /// Pointmap of every pixel, `[3, S, S]`, finite everywhere; mask it with [`masked_pointmap`].
    pub pointmap_full: Array3<f32>,
    pub ras_from_pixel: RasFromPixel,
    /// The output cube: grid index → RAS (cell centres).
    pub ras_from_grid: RasFromGrid,
    pub grid: usize,
    /// Normalised `volume_context` cube `[c, c, c]` (`[ck, cj, ci]`, same axes as the grid).
    pub context: Option<Array3<f32>>,
    /// Normalised intensities at the output grid's cell centres `[G, G, G]` (`[gk, gj, gi]`),
    /// for the image-guided decoder.
    pub guide: Option<Array3<f32>>,
}

/// Pixel `(col, row, 0)` of the `S×S` slice through `click` in `plane` → RAS:
/// `click + (col − half)·s·u + (half − row)·s·v` (`u`, `v` the plane's in-plane directions).
pub fn slice_ras_from_pixel(click: RasMm, plane: ViewPlane, p: &ClickParams) -> RasFromPixel {
    let frame = slice_frame(plane);
    let (u, v) = (frame.column(0).into_owned(), frame.column(1).into_owned());
    let s = p.spacing_mm;
    let half = (p.image_size as f64 - 1.0) / 2.0;
    RasFromPixel::from_parts(Matrix3::from_columns(&[u * s, -v * s, frame.column(2) * s]), click.v - u * (half * s) + v * (half * s))
}

/// Cuts the slice through the click and, when configured, the context cube.
pub fn prepare_click(pv: &PreparedVolume, click: RasMm, plane: ViewPlane, p: &ClickParams) -> Result<ClickSample, ClickError> {
    pv.check_click(click)?;
    let frame = slice_frame(plane);
    let n = p.image_size;
    let ras_from_pixel = slice_ras_from_pixel(click, plane, p);
    let image_flat: Vec<f32> = (0..n * n)
        .into_par_iter()
        .map(|idx| {
            let (row, col) = (idx / n, idx % n);
            pv.sample_normalised(ras_from_pixel.apply(crate::geometry::Point3::new(col as f64, row as f64, 0.0)))
        })
        .collect();
    let image = Array2::from_shape_vec((n, n), image_flat).unwrap_or_else(|_| Array2::zeros((n, n)));
    let inv_half_cube = 2.0 / p.cube_mm;
    let mut pointmap_full = Array3::<f32>::zeros((3, n, n));
    for row in 0..n {
        for col in 0..n {
            let rel = ras_from_pixel.apply(crate::geometry::Point3::new(col as f64, row as f64, 0.0)).v - click.v;
            for c in 0..3 {
                pointmap_full[[c, row, col]] = (rel[c] * inv_half_cube) as f32;
            }
        }
    }
    let ras_from_grid = cube_affine(click, &frame, p.cube_mm, p.grid);
    let context = p.context.map(|cp| sample_cube(pv, &cube_affine(click, &frame, p.cube_mm, cp.size), cp.size));
    let guide = p.context.filter(|cp| cp.guide).map(|_| sample_cube(pv, &ras_from_grid, p.grid));
    Ok(ClickSample { click, plane, image, pointmap_full, ras_from_pixel, ras_from_grid, grid: p.grid, context, guide })
}

/// Normalised intensities at the cell centres of a `cells³` cube (`[k, j, i]`).
pub(crate) fn sample_cube(pv: &PreparedVolume, ras_from_cell: &RasFromGrid, cells: usize) -> Array3<f32> {
    let c = cells;
    let flat: Vec<f32> = (0..c * c * c)
        .into_par_iter()
        .map(|idx| {
            let (k, j, i) = (idx / (c * c), (idx / c) % c, idx % c);
            pv.sample_normalised(ras_from_cell.apply(crate::geometry::Point3::new(i as f64, j as f64, k as f64)))
        })
        .collect();
    Array3::from_shape_vec((c, c, c), flat).unwrap_or_else(|_| Array3::zeros((c, c, c)))
}

/// A cube of side `cube_mm` centred on `click`, `cells³` cells along the frame's columns.
pub fn cube_affine(click: RasMm, frame: &Matrix3<f64>, cube_mm: f64, cells: usize) -> RasFromGrid {
    let h = cube_mm / cells as f64;
    let half = (cells as f64 - 1.0) / 2.0;
    let lin = frame * h;
    RasFromGrid::from_parts(lin, click.v - lin * Vector3::new(half, half, half))
}

/// The pointmap with NaN wherever `mask` is false (`mask` is `[S, S]`).
pub fn masked_pointmap(full: &Array3<f32>, mask: &Array2<bool>) -> Array3<f32> {
    let mut out = full.clone();
    for mut ch in out.axis_iter_mut(Axis(0)) {
        ndarray::Zip::from(&mut ch).and(mask).for_each(|x, &m| {
            if !m {
                *x = f32::NAN;
            }
        });
    }
    out
}

/// The click prompt for the 2D mask head: a disc of `radius_px` around the image centre.
pub fn click_prior_mask(image_size: usize, radius_px: f64) -> Array2<bool> {
    let c = (image_size as f64 - 1.0) / 2.0;
    Array2::from_shape_fn((image_size, image_size), |(r, col)| {
        let (dr, dc) = (r as f64 - c, col as f64 - c);
        dr * dr + dc * dc <= radius_px * radius_px
    })
}

/// Resizes a `[3, H, W]` pointmap to `[3, out, out]` without ever mixing valid and NaN points:
/// each output pixel is the mean of the *valid* source pixels whose centres fall in its area
/// (NaN when there are none); when enlarging, the nearest source pixel.
pub fn resize_pointmap(pm: &Array3<f32>, out: usize) -> Array3<f32> {
    let (h, w) = (pm.shape()[1], pm.shape()[2]);
    let mut res = Array3::from_elem((3, out, out), f32::NAN);
    for r in 0..out {
        let (r0, r1) = span(r, out, h);
        for c in 0..out {
            let (c0, c1) = span(c, out, w);
            let (mut acc, mut cnt) = ([0f64; 3], 0usize);
            for sr in r0..r1 {
                for sc in c0..c1 {
                    let p = [pm[[0, sr, sc]], pm[[1, sr, sc]], pm[[2, sr, sc]]];
                    if p.iter().all(|x| x.is_finite()) {
                        for k in 0..3 {
                            acc[k] += p[k] as f64;
                        }
                        cnt += 1;
                    }
                }
            }
            if cnt > 0 {
                for k in 0..3 {
                    res[[k, r, c]] = (acc[k] / cnt as f64) as f32;
                }
            }
        }
    }
    res
}

/// Source pixel range whose centres fall in output pixel `o` of `n_out` over `n_in` pixels
/// (at least the nearest one).
fn span(o: usize, n_out: usize, n_in: usize) -> (usize, usize) {
    let scale = n_in as f64 / n_out as f64;
    let lo = (o as f64 * scale - 0.5).ceil().max(0.0) as usize;
    let hi = (((o + 1) as f64 * scale - 0.5).ceil().max(0.0) as usize).min(n_in);
    if hi > lo {
        (lo, hi)
    } else {
        let nearest = (((o as f64 + 0.5) * scale - 0.5).round().max(0.0) as usize).min(n_in - 1);
        (nearest, nearest + 1)
    }
}

/// A binary mask on a source grid, from the model's SDF.
#[derive(Clone, Debug)]
pub struct SourceMask {
    /// `[k, j, i]` on the source grid: 1 inside (u16, as a label map holds it).
    pub data: Array3<u16>,
    pub voxel_count: usize,
    pub volume_ml: f64,
}

/// SDF cube (`[gk, gj, gi]`, negative inside, any unit) → mask on the source grid
/// (`shape`, `ras_from_voxel`): each source voxel inside the cube samples the SDF trilinearly at
/// its RAS position; only the 6-connected component containing the click is kept (when the
/// click's voxel is outside the shape, the component nearest to the click).
pub fn sdf_to_source_mask(
    sdf: ArrayView3<f32>,
    ras_from_grid: &RasFromGrid,
    shape: GridShape,
    ras_from_voxel: &RasFromVoxel,
    click: RasMm,
) -> SourceMask {
    let voxel_ml = ras_from_voxel.voxel_ml();
    let empty = || SourceMask { data: Array3::zeros(shape.array_shape()), voxel_count: 0, volume_ml: 0.0 };
    let (Ok(grid_from_ras), Ok(voxel_from_ras)) = (ras_from_grid.try_inverse(), ras_from_voxel.try_inverse()) else {
        return empty();
    };
    let g = sdf.shape()[0];
    let grid_from_voxel: Affine3<Grid, Voxel> = grid_from_ras * *ras_from_voxel;
    let voxel_from_grid: Affine3<Voxel, Grid> = voxel_from_ras * *ras_from_grid;
    // Bounding box of the cube in voxel index space: all the work happens in this crop.
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    let e = [-0.5, g as f64 - 0.5];
    for a in e {
        for b in e {
            for c in e {
                let p = voxel_from_grid.apply(crate::geometry::Point3::new(a, b, c));
                for d in 0..3 {
                    lo[d] = lo[d].min(p.v[d]);
                    hi[d] = hi[d].max(p.v[d]);
                }
            }
        }
    }
    let n = shape.ijk();
    if (0..3).any(|d| hi[d] < -0.5 || lo[d] > n[d] as f64 - 0.5) {
        return empty();
    }
    let clamp = |x: f64, n: usize| x.clamp(0.0, n as f64 - 1.0) as usize;
    let (i0, i1) = (clamp(lo[0].floor(), n[0]), clamp(hi[0].ceil(), n[0]));
    let (j0, j1) = (clamp(lo[1].floor(), n[1]), clamp(hi[1].ceil(), n[1]));
    let (k0, k1) = (clamp(lo[2].floor(), n[2]), clamp(hi[2].ceil(), n[2]));
    let (ci, cj, ck) = (i1 - i0 + 1, j1 - j0 + 1, k1 - k0 + 1);
    let mut crop = Array3::<u8>::zeros((ck, cj, ci));
    let flat = crate::volume::c_order(&sdf);
    let sampler = SdfSampler::new(&flat, g);
    let m = *grid_from_voxel.matrix();
    let step = [m[(0, 0)], m[(1, 0)], m[(2, 0)]];
    let (lo_g, hi_g) = (-0.5, g as f64 - 0.5);
    crop.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(dk, mut slab)| {
        let Some(rows) = slab.as_slice_mut() else { return };
        let fk = (k0 + dk) as f64;
        for dj in 0..cj {
            let fj = (j0 + dj) as f64;
            // Grid position of voxel (0, j, k); each step in i adds `step`.
            let base = [
                m[(0, 1)] * fj + m[(0, 2)] * fk + m[(0, 3)],
                m[(1, 1)] * fj + m[(1, 2)] * fk + m[(1, 3)],
                m[(2, 1)] * fj + m[(2, 2)] * fk + m[(2, 3)],
            ];
            // The i-interval of this row inside the cube.
            let (mut t0, mut t1) = (i0 as f64, i1 as f64);
            for d in 0..3 {
                if step[d].abs() < 1e-12 {
                    if base[d] < lo_g || base[d] > hi_g {
                        t1 = -1.0;
                    }
                } else {
                    let (a, b) = ((lo_g - base[d]) / step[d], (hi_g - base[d]) / step[d]);
                    t0 = t0.max(a.min(b));
                    t1 = t1.min(a.max(b));
                }
            }
            if t1 < t0 {
                continue;
            }
            let row = &mut rows[dj * ci..(dj + 1) * ci];
            for i in (t0.ceil().max(i0 as f64) as usize)..=(t1.floor().min(i1 as f64) as usize) {
                let fi = i as f64;
                if sampler.inside(base[0] + step[0] * fi, base[1] + step[1] * fi, base[2] + step[2] * fi) {
                    row[i - i0] = 1;
                }
            }
        }
    });
    let origin = [k0, j0, i0];
    let voxel_count = match seed_voxel(&crop, origin, shape, &voxel_from_ras, ras_from_voxel, click) {
        Some(seed) => crate::shape::flood::flood(&mut crop, [seed], 1, 2).map_or(0, |f| f.count),
        None => 0,
    };
    let mut data = Array3::<u16>::zeros(shape.array_shape());
    if voxel_count > 0 {
        ndarray::Zip::from(data.slice_mut(ndarray::s![k0..=k1, j0..=j1, i0..=i1]))
            .and(&crop)
            .par_for_each(|o, &c| *o = u16::from(c == 2));
    }
    SourceMask { data, voxel_count, volume_ml: voxel_count as f64 * voxel_ml }
}

/// Is the trilinear SDF negative at a grid position? Cells whose 8 corners share a sign are
/// answered without interpolating (most of the cube is far from the surface).
struct SdfSampler<'a> {
    sdf: &'a [f32],
    g: usize,
    /// Per cell of the `(g−1)³` lattice: 0 all corners ≥ 0, 1 all < 0, 2 mixed.
    cell: Vec<u8>,
}

impl<'a> SdfSampler<'a> {
    /// `flat`: the `g³` cube's values in C order.
    fn new(flat: &'a [f32], g: usize) -> Self {
        let c = g.saturating_sub(1);
        let mut cell = vec![2u8; c * c * c];
        for z in 0..c {
            for y in 0..c {
                for x in 0..c {
                    let mut neg = 0;
                    for (dz, dy, dx) in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 0, 1), (1, 1, 0), (1, 1, 1)] {
                        if flat[((z + dz) * g + y + dy) * g + x + dx] < 0.0 {
                            neg += 1;
                        }
                    }
                    cell[(z * c + y) * c + x] = match neg {
                        0 => 0,
                        8 => 1,
                        _ => 2,
                    };
                }
            }
        }
        Self { sdf: flat, g, cell }
    }

    #[inline]
    fn inside(&self, x: f64, y: f64, z: f64) -> bool {
        let g = self.g;
        if g < 2 {
            return self.sdf.first().is_some_and(|&d| d < 0.0);
        }
        let gm = (g - 1) as f64;
        let (x, y, z) = (x.clamp(0.0, gm), y.clamp(0.0, gm), z.clamp(0.0, gm));
        let (x0, y0, z0) = ((x as usize).min(g - 2), (y as usize).min(g - 2), (z as usize).min(g - 2));
        let c = g - 1;
        match self.cell[(z0 * c + y0) * c + x0] {
            0 => false,
            1 => true,
            _ => {
                let (fx, fy, fz) = ((x - x0 as f64) as f32, (y - y0 as f64) as f32, (z - z0 as f64) as f32);
                let at = |dz: usize, dy: usize, dx: usize| self.sdf[((z0 + dz) * g + y0 + dy) * g + x0 + dx];
                let c00 = at(0, 0, 0) + (at(0, 0, 1) - at(0, 0, 0)) * fx;
                let c10 = at(0, 1, 0) + (at(0, 1, 1) - at(0, 1, 0)) * fx;
                let c01 = at(1, 0, 0) + (at(1, 0, 1) - at(1, 0, 0)) * fx;
                let c11 = at(1, 1, 0) + (at(1, 1, 1) - at(1, 1, 0)) * fx;
                let c0 = c00 + (c10 - c00) * fy;
                let c1 = c01 + (c11 - c01) * fy;
                c0 + (c1 - c0) * fz < 0.0
            }
        }
    }
}

/// In a crop starting at voxel `origin` (`[k, j, i]`): the click's voxel if set, else the set
/// voxel nearest to the click (in mm). Crop coordinates.
fn seed_voxel(crop: &Array3<u8>, origin: [usize; 3], shape: GridShape, voxel_from_ras: &VoxelFromRas, ras_from_voxel: &RasFromVoxel, click: RasMm) -> Option<[usize; 3]> {
    let [k0, j0, i0] = origin;
    if let Some(a) = shape.array_index(voxel_from_ras.apply(click))
        && a.k >= k0
        && a.j >= j0
        && a.i >= i0
        && crop.get([a.k - k0, a.j - j0, a.i - i0]).is_some_and(|&x| x != 0)
    {
        return Some([a.k - k0, a.j - j0, a.i - i0]);
    }
    let mut best: Option<([usize; 3], f64)> = None;
    for ((dk, dj, di), &x) in crop.indexed_iter() {
        if x == 0 {
            continue;
        }
        let d = ras_from_voxel.apply(VoxelIjk::new((i0 + di) as f64, (j0 + dj) as f64, (k0 + dk) as f64)).distance(&click);
        if best.is_none_or(|(_, bd)| d < bd) {
            best = Some(([dk, dj, di], d));
        }
    }
    best.map(|b| b.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_right_handed_and_world_aligned() {
        for plane in ViewPlane::ALL {
            let f = slice_frame(plane);
            assert!((f.determinant() - 1.0).abs() < 1e-12, "{plane:?}");
            // The normal is the plane's normal world axis.
            assert!((f.column(2)[plane.normal_world_axis()].abs() - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn resize_never_mixes_nan() {
        let mut pm = Array3::from_elem((3, 4, 4), 1.0f32);
        for c in 0..3 {
            pm[[c, 0, 0]] = f32::NAN;
            pm[[c, 0, 1]] = 3.0;
            pm[[c, 1, 0]] = f32::NAN;
            pm[[c, 1, 1]] = f32::NAN;
            for r in 2..4 {
                for col in 2..4 {
                    pm[[c, r, col]] = f32::NAN;
                }
            }
        }
        let r = resize_pointmap(&pm, 2);
        assert_eq!(r[[0, 0, 0]], 3.0, "only the one valid point of the top-left block");
        assert_eq!(r[[1, 0, 1]], 1.0);
        assert!(r[[2, 1, 1]].is_nan(), "an all-NaN block stays NaN");
        let up = resize_pointmap(&pm, 8);
        assert!(up[[0, 0, 0]].is_nan() && up[[0, 0, 2]] == 3.0 && up[[0, 0, 3]] == 3.0);
    }

    #[test]
    fn component_keeps_the_clicked_blob() {
        let mut d = Array3::<u8>::zeros((5, 5, 9));
        d[[2, 2, 1]] = 1;
        d[[2, 2, 2]] = 1;
        d[[2, 2, 6]] = 1;
        let mark_component = |d: &mut Array3<u8>, seed| crate::shape::flood::flood(d, [seed], 1, 2).map_or(0, |f| f.count);
        assert_eq!(mark_component(&mut d, [2, 2, 6]), 1);
        assert_eq!(d.iter().filter(|&&x| x == 2).count(), 1);
        assert_eq!(d[[2, 2, 6]], 2);
        assert_eq!(mark_component(&mut d, [2, 2, 1]), 2);
    }
}
