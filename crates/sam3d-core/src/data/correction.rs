//! What the learned correction step (the *corrector*, issue 21) sees and learns from.
//!
//! A correction prompt comes with the object's previous candidate. The corrector looks at one
//! cube around that candidate and every prompt point: [`CorrectionCube::around`] chooses it
//! (cubic, `cells³` isotropic cells, aligned with RAS, the candidate's box and the points with
//! a margin), and [`correction_input`] fills its four channels:
//!
//! | channel | what |
//! |---|---|
//! | 0 | the scan, normalised as the shape model normalises it ([`PreparedVolume`]) |
//! | 1 | the previous candidate, trilinear over its voxels (0 outside, 1 inside) |
//! | 2 | positive points: a Gaussian of [`POINT_SIGMA_CELLS`] cells about each (their maximum) |
//! | 3 | negative points, the same |
//!
//! The network's logits on the cube come back to the source grid as the components through
//! the positive points (`shape::component`), with every conversion through `geometry`.
//!
//! Training ([`simulate`]) makes the previous candidate from a reference structure's signed
//! distance field with a random offset and random smooth bumps (a bump outward leaks, one
//! inward misses a part; sometimes a neighbouring structure's part leaks in), keeps its part
//! connected to the first click, lets a few simulated corrections partly fix it (each the
//! protocol's next click, [`crate::prompts::next_correction`], with the errors near it
//! repaired), and asks for the reference in the cube after one more protocol click: the
//! prompts a user gives, in the order the evaluation gives them.

use super::click::{PreparedVolume, cube_affine, sample_cube};
use super::phantom::Rng;
use super::train_samples::TrainCase;
use crate::geometry::{ArrayIdx, Point3, RasFromGrid, RasMm, VoxelIjk};
use crate::prompts::{Polarity, PromptSet, next_correction};
use crate::shape::GridComponent;
use crate::volume::OnGrid;
use nalgebra::{Matrix3, Rotation3, Vector3};
use ndarray::{Array3, Array4, Axis, s};
use rayon::prelude::*;

/// Input channels of the corrector.
pub const CHANNELS: usize = 4;
/// Width (cells) of the Gaussian drawn at each point.
pub const POINT_SIGMA_CELLS: f64 = 1.5;

/// How the cube is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CubeParams {
    /// Cells along each side.
    pub cells: usize,
    /// Margin on each side, as a fraction of the box's largest extent.
    pub margin: f64,
    /// The cube's smallest side (mm).
    pub min_mm: f64,
}

impl CubeParams {
    pub fn new(cells: usize) -> Self {
        CubeParams { cells, margin: 0.2, min_mm: 40.0 }
    }
}

/// The corrector's cube: `cells³` cells, cell index `(i, j, k)` → RAS.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CorrectionCube {
    pub ras_from_grid: RasFromGrid,
    pub cells: usize,
}

impl CorrectionCube {
    /// The cube around the RAS box `lo..hi`, with the frame's columns as its axes: cubic, its
    /// side the box's largest extent along them plus `margin` on both sides (at least
    /// `min_mm`), centred on the box.
    pub fn around_box(lo: [f64; 3], hi: [f64; 3], frame: &Matrix3<f64>, margin: f64, p: &CubeParams) -> Self {
        // The box's corners in the frame's coordinates.
        let inv = frame.transpose();
        let (mut a, mut b) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for c in 0..8 {
            let corner = Vector3::new(if c & 1 == 0 { lo[0] } else { hi[0] }, if c & 2 == 0 { lo[1] } else { hi[1] }, if c & 4 == 0 { lo[2] } else { hi[2] });
            let f = inv * corner;
            for d in 0..3 {
                a[d] = a[d].min(f[d]);
                b[d] = b[d].max(f[d]);
            }
        }
        let extent = (0..3).map(|d| b[d] - a[d]).fold(0.0, f64::max);
        let side = (extent * (1.0 + 2.0 * margin)).max(p.min_mm);
        let centre = frame * Vector3::new((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0, (a[2] + b[2]) / 2.0);
        CorrectionCube { ras_from_grid: cube_affine(RasMm::new(centre.x, centre.y, centre.z), frame, side, p.cells), cells: p.cells }
    }

    /// The cube a correction of `previous` (on `grid`) with the prompt `points` is made on:
    /// aligned with RAS.
    pub fn around(previous: &GridComponent, grid: &impl OnGrid, points: &[RasMm], p: &CubeParams) -> Self {
        let (lo, hi) = ras_box(previous, grid, points);
        Self::around_box(lo, hi, &Matrix3::identity(), p.margin, p)
    }

    /// Cell size (mm).
    pub fn cell_mm(&self) -> f64 {
        self.ras_from_grid.apply_vector(Vector3::new(1.0, 0.0, 0.0)).norm()
    }

    /// RAS position of each cell centre, `[k, j, i]` C order.
    fn cell_centre(&self, idx: usize) -> RasMm {
        let c = self.cells;
        let (k, j, i) = (idx / (c * c), (idx / c) % c, idx % c);
        self.ras_from_grid.apply(Point3::new(i as f64, j as f64, k as f64))
    }
}

/// The RAS box of a component's voxels (their centres, half a voxel out) and of `points`.
pub fn ras_box(comp: &GridComponent, grid: &impl OnGrid, points: &[RasMm]) -> ([f64; 3], [f64; 3]) {
    let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
    let mut take = |p: RasMm| {
        for d in 0..3 {
            lo[d] = lo[d].min(p.v[d]);
            hi[d] = hi[d].max(p.v[d]);
        }
    };
    // The voxels' own box: a crop may be larger than what it holds.
    if let Some((blo, bhi)) = crate::shape::sdf::bounding_box(comp.mask.view()) {
        let [k0, j0, i0] = comp.origin_kji;
        let rfv = grid.ras_from_voxel();
        for c in 0..8 {
            let i = if c & 1 == 0 { (i0 + blo[2]) as f64 - 0.5 } else { (i0 + bhi[2]) as f64 + 0.5 };
            let j = if c & 2 == 0 { (j0 + blo[1]) as f64 - 0.5 } else { (j0 + bhi[1]) as f64 + 0.5 };
            let k = if c & 4 == 0 { (k0 + blo[0]) as f64 - 0.5 } else { (k0 + bhi[0]) as f64 + 0.5 };
            take(rfv.apply(VoxelIjk::new(i, j, k)));
        }
    }
    points.iter().for_each(|p| take(*p));
    (lo, hi)
}

/// A component's voxels sampled trilinearly at each cell centre (0 outside it).
pub fn sample_component(comp: &GridComponent, grid: &impl OnGrid, cube: &CorrectionCube) -> Array3<f32> {
    let c = cube.cells;
    let vfr = grid.voxel_from_ras();
    let [k0, j0, i0] = comp.origin_kji;
    let d = comp.mask.dim();
    let at = |i: i64, j: i64, k: i64| -> f32 {
        let (i, j, k) = (i - i0 as i64, j - j0 as i64, k - k0 as i64);
        if i < 0 || j < 0 || k < 0 || i as usize >= d.2 || j as usize >= d.1 || k as usize >= d.0 {
            return 0.0;
        }
        f32::from(u8::from(comp.mask[[k as usize, j as usize, i as usize]]))
    };
    let flat: Vec<f32> = (0..c * c * c)
        .into_par_iter()
        .map(|idx| {
            let v = vfr.apply(cube.cell_centre(idx)).v;
            let (fi, fj, fk) = (v.x.floor(), v.y.floor(), v.z.floor());
            let (ti, tj, tk) = ((v.x - fi) as f32, (v.y - fj) as f32, (v.z - fk) as f32);
            let (i, j, k) = (fi as i64, fj as i64, fk as i64);
            let mut acc = 0.0;
            for (dk, wk) in [(0, 1.0 - tk), (1, tk)] {
                for (dj, wj) in [(0, 1.0 - tj), (1, tj)] {
                    for (di, wi) in [(0, 1.0 - ti), (1, ti)] {
                        let w = wk * wj * wi;
                        if w > 0.0 {
                            acc += w * at(i + di, j + dj, k + dk);
                        }
                    }
                }
            }
            acc
        })
        .collect();
    Array3::from_shape_vec((c, c, c), flat).unwrap_or_else(|_| Array3::zeros((c, c, c)))
}

/// The points' channel: at each cell, the largest Gaussian (σ = [`POINT_SIGMA_CELLS`] cells)
/// of any point.
pub fn point_channel(points: &[RasMm], cube: &CorrectionCube) -> Array3<f32> {
    let c = cube.cells;
    let mut out = Array3::<f32>::zeros((c, c, c));
    let Ok(grid_from_ras) = cube.ras_from_grid.try_inverse() else { return out };
    let sigma = POINT_SIGMA_CELLS;
    let reach = (3.0 * sigma).ceil() as i64;
    for p in points {
        let g = grid_from_ras.apply(*p).v;
        let centre = [g.x.round() as i64, g.y.round() as i64, g.z.round() as i64];
        for k in (centre[2] - reach).max(0)..=(centre[2] + reach).min(c as i64 - 1) {
            for j in (centre[1] - reach).max(0)..=(centre[1] + reach).min(c as i64 - 1) {
                for i in (centre[0] - reach).max(0)..=(centre[0] + reach).min(c as i64 - 1) {
                    let d2 = (i as f64 - g.x).powi(2) + (j as f64 - g.y).powi(2) + (k as f64 - g.z).powi(2);
                    let v = (-d2 / (2.0 * sigma * sigma)).exp() as f32;
                    let o = &mut out[[k as usize, j as usize, i as usize]];
                    *o = o.max(v);
                }
            }
        }
    }
    out
}

/// The corrector's input on `cube` (`[CHANNELS, c, c, c]`, see the module's table).
pub fn correction_input(pv: &PreparedVolume, previous: &GridComponent, prompts: &PromptSet, cube: &CorrectionCube) -> Array4<f32> {
    let c = cube.cells;
    let mut x = Array4::<f32>::zeros((CHANNELS, c, c, c));
    x.index_axis_mut(Axis(0), 0).assign(&sample_cube(pv, &cube.ras_from_grid, c));
    x.index_axis_mut(Axis(0), 1).assign(&sample_component(previous, pv.volume.as_ref(), cube));
    x.index_axis_mut(Axis(0), 2).assign(&point_channel(&prompts.positive, cube));
    x.index_axis_mut(Axis(0), 3).assign(&point_channel(&prompts.negative, cube));
    x
}

// ---------------------------------------------------------------------------------------------
// Simulated corrections (training)

/// One training sample: the input, and the reference on the same cube (1 inside).
#[derive(Clone, Debug)]
pub struct CorrectionSample {
    pub input: Array4<f32>,
    pub target: Array3<f32>,
    /// Prompts before the one the sample asks for (the first click counts).
    pub prompts_before: usize,
    /// Dice of the previous candidate against the reference on the source grid.
    pub previous_dice: f64,
}

/// How previous candidates are made.
#[derive(Clone, Copy, Debug)]
pub struct SimParams {
    pub cube: CubeParams,
    /// Largest earlier corrections a sample's previous candidate went through.
    pub max_earlier: usize,
    /// Largest rotation of the cube's frame (degrees).
    pub max_rotation_deg: f64,
}

impl SimParams {
    pub fn new(cells: usize) -> Self {
        SimParams { cube: CubeParams::new(cells), max_earlier: 4, max_rotation_deg: 15.0 }
    }
}

/// A random smooth bump (mm) added to a structure's signed distance.
struct Bump {
    centre: [f64; 3],
    width: f64,
    height: f64,
}

/// The previous candidate of a simulated user for class `c` of `case`, on the crop `lo..hi`
/// (array indices, exclusive end) of the label grid: `sdf + offset + bumps < 0`, sometimes with
/// a neighbour's part leaking in.
fn perturbed(case: &TrainCase, c: usize, lo: [usize; 3], hi: [usize; 3], rng: &mut Rng) -> Array3<bool> {
    let sdf = case.sdf[c].slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
    let grid = &case.labels;
    // Sizes follow the structure's depth (its deepest point's distance to its surface). Half
    // the candidates are as wrong as a first click often is: large bumps, a whole neighbour
    // or tissue of the structure's intensity leaking in.
    let severe = rng.uniform() < 0.5;
    let depth = -sdf.iter().fold(0.0f32, |m, &d| m.min(d)) as f64;
    let offset = rng.range(-1.0, 1.0) * (0.2 * depth).min(3.0);
    // Bump centres: points of the structure's surface band.
    let band: Vec<ArrayIdx> = sdf.indexed_iter().filter(|(_, d)| d.abs() < 6.0).map(|((k, j, i), _)| ArrayIdx { k: k + lo[0], j: j + lo[1], i: i + lo[2] }).collect();
    let mut bumps = Vec::new();
    if !band.is_empty() {
        for _ in 0..1 + rng.below(4) {
            let a = band[rng.below(band.len())];
            let p = grid.ras_of(a);
            let out = rng.uniform() < 0.5;
            let (h, w) = if severe { (rng.range(0.5, 1.5), rng.range(0.8, 2.5)) } else { (rng.range(0.2, 1.0), rng.range(0.5, 1.5)) };
            let height = (h * depth).min(if severe { 40.0 } else { 25.0 }) * if out { -1.0 } else { 1.0 };
            bumps.push(Bump { centre: [p.v.x, p.v.y, p.v.z], width: (w * depth).clamp(4.0, if severe { 60.0 } else { 40.0 }), height });
        }
    }
    let centre = bumps.first().map(|b| RasMm::new(b.centre[0], b.centre[1], b.centre[2]));
    // A neighbour leaking in: another structure within reach of the first bump's centre.
    let leak = centre.filter(|_| rng.uniform() < if severe { 0.6 } else { 0.35 }).and_then(|centre| {
        let near: Vec<usize> = (0..case.classes.len()).filter(|&o| o != c && case.sdf_at(o, centre) < 15.0).collect();
        let reach = if severe { rng.range(20.0, 80.0) } else { rng.range(15.0, 45.0) };
        (!near.is_empty()).then(|| (near[rng.below(near.len())], centre, reach))
    });
    // Tissue of the structure's intensity near it (what region growing leaks into), when the
    // scan and the labels share a grid.
    let same_grid = case.volume.shape() == grid.shape();
    let tissue = centre.filter(|_| severe && same_grid && rng.uniform() < 0.5).and_then(|centre| {
        let vals: Vec<f32> = ndarray::Zip::from(&sdf).and(case.volume.data.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]])).fold(Vec::new(), |mut v, &d, &x| {
            if d < -1.0 {
                v.push(x);
            }
            v
        });
        let (mean, sd) = crate::volume::intensity::mean_std(&vals, None);
        (sd.is_finite() && !vals.is_empty()).then(|| (centre, rng.range(15.0, 50.0), mean as f32, (rng.range(1.0, 2.5) * sd.max(1e-3)) as f32))
    });
    let rfv = *grid.ras_from_voxel();
    let data = &case.volume.data;
    let mut out = Array3::from_elem(sdf.raw_dim(), false);
    ndarray::Zip::indexed(&mut out).and(&sdf).par_for_each(|(k, j, i), o, &d| {
        let p = rfv.apply(VoxelIjk::new((i + lo[2]) as f64, (j + lo[1]) as f64, (k + lo[0]) as f64)).v;
        let mut v = d as f64 + offset;
        for b in &bumps {
            let r2 = (p.x - b.centre[0]).powi(2) + (p.y - b.centre[1]).powi(2) + (p.z - b.centre[2]).powi(2);
            v += b.height * (-r2 / (2.0 * b.width * b.width)).exp();
        }
        let mut inside = v < 0.0;
        let dist2 = |at: RasMm| (p.x - at.v.x).powi(2) + (p.y - at.v.y).powi(2) + (p.z - at.v.z).powi(2);
        if let Some((o, at, reach)) = leak
            && !inside
        {
            inside = dist2(at) < reach * reach && case.sdf[o][[k + lo[0], j + lo[1], i + lo[2]]] < 0.0;
        }
        if let Some((at, reach, mean, tol)) = tissue
            && !inside
        {
            inside = dist2(at) < reach * reach && (data[[k + lo[0], j + lo[1], i + lo[2]]] - mean).abs() < tol;
        }
        *o = inside;
    });
    out
}

/// The part of `mask` connected to `seed` (6-connectivity); all of it when `seed` is outside.
fn connected_to(mask: &Array3<bool>, seed: Option<[usize; 3]>) -> Array3<bool> {
    let Some(seed) = seed.filter(|s| mask[*s]) else { return mask.clone() };
    let mut m = mask.mapv(u8::from);
    crate::shape::flood::flood(&mut m, [seed], 1u8, 2u8);
    m.mapv(|v| v == 2)
}

fn dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
    let (mut both, mut na, mut nb) = (0usize, 0usize, 0usize);
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        both += usize::from(x && y);
        na += usize::from(x);
        nb += usize::from(y);
    });
    if na + nb == 0 { 1.0 } else { 2.0 * both as f64 / (na + nb) as f64 }
}

/// One simulated correction of class index `c` of `case` (see the module doc). `None` when the
/// case cannot be sampled (no volume prepared, an empty class, a perfect previous candidate).
pub fn simulate(case: &TrainCase, c: usize, rng: &mut Rng, p: &SimParams) -> Option<CorrectionSample> {
    let pv = case.prepared()?;
    let grid = &case.labels;
    let truth_full = case.sdf.get(c)?;
    let (tlo, thi) = crate::shape::sdf::bounding_box_by(truth_full.view(), |d| *d < 0.0)?;
    // The crop: the structure's box grown by the bumps' reach.
    let spacing = grid.spacing_mm();
    let n = grid.shape().array_shape();
    let pad: [usize; 3] = std::array::from_fn(|a| (40.0 / spacing[2 - a]).ceil() as usize);
    let lo: [usize; 3] = std::array::from_fn(|a| tlo[a].saturating_sub(pad[a]));
    let hi: [usize; 3] = std::array::from_fn(|a| (thi[a] + 1 + pad[a]).min(n[a]));
    let truth = truth_full.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]).mapv(|d| d < 0.0);
    let depth = -truth_full.iter().fold(0.0f32, |m, &d| m.min(d)) as f64;
    let first = case.random_click(c, rng)?;
    let local = |at: RasMm| grid.index_of_ras(at).and_then(|a| (a.k >= lo[0] && a.j >= lo[1] && a.i >= lo[2] && a.k < hi[0] && a.j < hi[1] && a.i < hi[2]).then_some([a.k - lo[0], a.j - lo[1], a.i - lo[2]]));
    // A candidate of a plausible size: between a fifth and five times the reference.
    let count = |m: &Array3<bool>| m.iter().filter(|v| **v).count();
    let n_truth = count(&truth) as f64;
    let mut prev = perturbed(case, c, lo, hi, rng);
    for _ in 0..4 {
        let r = count(&prev) as f64 / n_truth;
        if (0.2..=5.0).contains(&r) {
            break;
        }
        prev = perturbed(case, c, lo, hi, rng);
    }
    if rng.uniform() < 0.85 {
        prev = connected_to(&prev, local(first));
    }
    let mut prompts = PromptSet { positive: vec![first], negative: Vec::new(), bbox: None };
    let sp = grid.spacing();
    let ras_of = |k: [usize; 3]| grid.ras_of(ArrayIdx { k: k[0] + lo[0], j: k[1] + lo[1], i: k[2] + lo[2] });
    // Earlier corrections, each partly honoured: the errors within a random reach of its point
    // repaired.
    let earlier = rng.below(p.max_earlier + 1);
    for _ in 0..earlier {
        let Some(corr) = next_correction(prev.view(), truth.view(), sp) else { break };
        let at = ras_of([corr.at.k, corr.at.j, corr.at.i]);
        match corr.polarity {
            Polarity::Positive => prompts.positive.push(at),
            Polarity::Negative => prompts.negative.push(at),
        }
        let reach = rng.range(0.3, 1.2) * depth.max(10.0);
        let keep = rng.uniform() < 0.8;
        if keep {
            ndarray::Zip::indexed(&mut prev).and(&truth).par_for_each(|(k, j, i), pv, &t| {
                if *pv != t && ras_of([k, j, i]).distance(&at) < reach {
                    *pv = t;
                }
            });
        }
    }
    let corr = next_correction(prev.view(), truth.view(), sp)?;
    let at = ras_of([corr.at.k, corr.at.j, corr.at.i]);
    let prompts_before = prompts.positive.len() + prompts.negative.len();
    match corr.polarity {
        Polarity::Positive => prompts.positive.push(at),
        Polarity::Negative => prompts.negative.push(at),
    }
    let previous_dice = dice(&prev, &truth);
    let previous = GridComponent { origin_kji: lo, voxel_count: prev.iter().filter(|v| **v).count(), mask: prev };
    // The cube: as at inference, around the previous candidate and the points, with a random
    // margin and a slightly turned frame.
    let points: Vec<RasMm> = prompts.positive.iter().chain(&prompts.negative).copied().collect();
    let (blo, bhi) = ras_box(&previous, grid, &points);
    let max = p.max_rotation_deg.to_radians();
    let axis = Vector3::new(rng.normal(), rng.normal(), rng.normal());
    let frame = if axis.norm() > 1e-9 { *Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(axis), rng.range(-max, max)).matrix() } else { Matrix3::identity() };
    let cube = CorrectionCube::around_box(blo, bhi, &frame, rng.range(0.1, 0.35), &p.cube);
    let mut input = correction_input(pv, &previous, &prompts, &cube);
    // Intensity jitter.
    let (gain, shift) = (rng.range(0.9, 1.1) as f32, rng.range(-0.05, 0.05) as f32);
    input.index_axis_mut(Axis(0), 0).mapv_inplace(|v| v * gain + shift);
    let cells = cube.cells;
    let target: Vec<f32> = (0..cells * cells * cells).into_par_iter().map(|idx| f32::from(u8::from(case.sdf_at(c, cube.cell_centre(idx)) < 0.0))).collect();
    let target = Array3::from_shape_vec((cells, cells, cells), target).ok()?;
    Some(CorrectionSample { input, target, prompts_before, previous_dice })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use crate::volume::{LabelMap, Volume};
    use std::sync::Arc;

    /// A 2 mm grid with a ball of label 1 (radius 12 mm) and a box of label 2 beside it.
    fn case() -> TrainCase {
        let n = 40;
        let rfv = RasFromVoxel::scale_translate([2.0; 3], [-40.0, -40.0, -40.0]);
        let labels = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let p = [i as f64 * 2.0 - 40.0, j as f64 * 2.0 - 40.0, k as f64 * 2.0 - 40.0];
            if p[0] * p[0] + p[1] * p[1] + p[2] * p[2] < 144.0 {
                1
            } else if (14.0..26.0).contains(&p[0]) && p[1].abs() < 8.0 && p[2].abs() < 8.0 {
                2
            } else {
                0
            }
        });
        let data = labels.mapv(|l| if l == 1 { 60.0 } else if l == 2 { 200.0 } else { -50.0 });
        let vol = Arc::new(Volume::new(data, rfv).expect("volume"));
        let labels = LabelMap::new(labels, rfv).expect("labels");
        TrainCase::new("ball", vol, labels, Some(crate::volume::Modality::Ct), &[])
    }

    #[test]
    fn the_cube_holds_the_box_and_its_margin_along_the_frame() {
        let p = CubeParams::new(32);
        let cube = CorrectionCube::around_box([-10.0, 0.0, 5.0], [30.0, 10.0, 15.0], &Matrix3::identity(), 0.25, &p);
        // 40 mm extent, a quarter of it on each side: 60 mm over 32 cells, centred on the box.
        assert!((cube.cell_mm() - 60.0 / 32.0).abs() < 1e-9);
        let centre = cube.ras_from_grid.apply(Point3::new(15.5, 15.5, 15.5));
        assert!(centre.distance(&RasMm::new(10.0, 5.0, 10.0)) < 1e-9, "{centre:?}");
        // A small box gets the smallest side.
        let small = CorrectionCube::around_box([0.0; 3], [1.0; 3], &Matrix3::identity(), 0.2, &p);
        assert!((small.cell_mm() - 40.0 / 32.0).abs() < 1e-9);
    }

    #[test]
    fn the_previous_candidate_and_points_land_where_they_are() {
        let case = case();
        let c = case.classes.iter().position(|&l| l == 1).expect("class 1");
        let truth = case.sdf[c].mapv(|d| d < 0.0);
        let comp = GridComponent { origin_kji: [0, 0, 0], voxel_count: truth.iter().filter(|v| **v).count(), mask: truth };
        let at = RasMm::new(4.0, -2.0, 6.0);
        let prompts = PromptSet { positive: vec![at], negative: vec![RasMm::new(20.0, 0.0, 0.0)], bbox: None };
        let pv = case.prepared().expect("prepared").clone();
        let cube = CorrectionCube::around(&comp, &case.labels, &[at], &CubeParams::new(24));
        let x = correction_input(&pv, &comp, &prompts, &cube);
        let inv = cube.ras_from_grid.try_inverse().expect("invertible");
        let cell = |p: RasMm| {
            let g = inv.apply(p).v;
            [g.z.round() as usize, g.y.round() as usize, g.x.round() as usize]
        };
        let centre = cell(RasMm::new(0.0, 0.0, 0.0));
        assert!((x[[1, centre[0], centre[1], centre[2]]] - 1.0).abs() < 1e-6, "inside the ball");
        let edge = cell(RasMm::new(0.0, 0.0, 17.0));
        assert_eq!(x[[1, edge[0], edge[1], edge[2]]], 0.0, "outside the ball");
        let pc = cell(at);
        assert!(x[[2, pc[0], pc[1], pc[2]]] > 0.8, "the positive point's cell");
        assert_eq!(x[[3, pc[0], pc[1], pc[2]]], 0.0);
        // The image: the ball at 60 HU within the default window, the background lower.
        assert!(x[[0, centre[0], centre[1], centre[2]]] > x[[0, edge[0], edge[1], edge[2]]]);
    }

    #[test]
    fn a_candidate_on_an_oblique_anisotropic_grid_comes_back_through_the_cube() {
        // A 25° tilted grid of 1.2 × 0.8 × 3 mm voxels with a flipped axis; a 20 mm ball on it.
        let rot = *Rotation3::from_axis_angle(&Vector3::x_axis(), 25f64.to_radians()).matrix();
        let lin = rot * Matrix3::from_diagonal(&Vector3::new(-1.2, 0.8, 3.0));
        let rfv = crate::geometry::RasFromVoxel::from_parts(lin, Vector3::new(40.0, -30.0, -20.0));
        let (ni, nj, nk) = (80usize, 90usize, 30usize);
        let centre = rfv.apply(VoxelIjk::new(40.0, 45.0, 15.0));
        let mask = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| rfv.apply(VoxelIjk::new(i as f64, j as f64, k as f64)).distance(&centre) < 20.0);
        let labels = crate::volume::LabelMap::new(mask.mapv(u16::from), rfv).expect("labels");
        let comp = GridComponent { origin_kji: [0, 0, 0], voxel_count: mask.iter().filter(|v| **v).count(), mask: mask.clone() };
        let cube = CorrectionCube::around(&comp, &labels, &[centre], &CubeParams::new(48));
        // The cube holds the ball's voxel box with its margin: that box, tilted 25° about R,
        // spans 40 (cos 25° + sin 25°) ≈ 53 mm along A and S, × 1.4 over 48 cells.
        let side = cube.cell_mm() * 48.0;
        assert!((70.0..80.0).contains(&side), "side {side:.1} mm");
        let prev = sample_component(&comp, &labels, &cube);
        let outside = prev.mapv(|p| 0.5 - p);
        let back = crate::shape::sdf_component_on_grid(outside.view(), &cube.ras_from_grid, labels.shape(), labels.ras_from_voxel(), centre).expect("a component");
        let both = back.voxels().filter(|v| mask[[v.k, v.j, v.i]]).count();
        let dice = 2.0 * both as f64 / (back.voxel_count + comp.voxel_count) as f64;
        assert!(dice > 0.95, "Dice {dice:.3} ({} → {} voxels)", comp.voxel_count, back.voxel_count);
    }

    #[test]
    fn simulated_samples_ask_for_the_reference_after_a_protocol_click() {
        let case = case();
        let c = case.classes.iter().position(|&l| l == 1).expect("class 1");
        let p = SimParams::new(24);
        let mut made = 0;
        for seed in 0..12 {
            let mut rng = Rng::new(seed);
            let Some(s) = simulate(&case, c, &mut rng, &p) else { continue };
            made += 1;
            assert_eq!(s.input.shape(), &[CHANNELS, 24, 24, 24]);
            let inside = s.target.iter().filter(|v| **v > 0.5).count();
            assert!(inside > 0, "seed {seed}: an empty target");
            assert!(s.previous_dice < 1.0, "seed {seed}: the previous candidate was perfect");
            // At least the first click and the new one are drawn.
            let drawn = s.input.index_axis(Axis(0), 2).iter().chain(s.input.index_axis(Axis(0), 3).iter()).filter(|v| **v > 0.8).count();
            assert!(drawn >= 2, "seed {seed}: {drawn} point cells");
            assert!(s.prompts_before >= 1);
        }
        assert!(made >= 8, "only {made} of 12 samples");
    }
}
