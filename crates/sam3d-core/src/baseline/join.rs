//! Joining the model's shape with region growing from the same click.
//!
//! The model knows an organ's shape but draws it on a coarse 4 mm grid and, on scans unlike its
//! training data, too small; region growing follows the scan's own boundary but leaks into any
//! neighbour of the same intensity. Where the two agree, each covers the other's failure: region
//! growing ([`super::grow_with_floor`], the baseline's parameters) runs from the user's click on
//! the model's box grown by [`JOIN_MARGIN_MM`], and its region is joined to the model's shape
//! (their union) when
//!
//! - it stayed inside that box (a region that reaches the box's faces ran past the organ);
//! - it holds at most [`JOIN_MAX_RATIO`] times the model's voxels (more is a leak);
//! - it holds at least [`JOIN_MIN_SHARE`] of the model's voxels (less: it found another
//!   structure, or only part of this one).
//!
//! When the region fails a check (on real scans it mostly leaks into a neighbour of the same
//! intensity), its part within [`JOIN_NEAR_MM`] of the model's shape that stays connected to the
//! click is put to the same size and share checks, and joined when it passes
//! ([`JoinOutcome::JoinedNear`]): where the model's coarse shape falls short of the organ's
//! boundary the scan still fills it in, and a leak takes no more than a rim of the neighbour
//! about 4 mm deep (the distance is rounded to whole voxels of the grid growing ran on: one
//! voxel on a 3 mm scan, one slice on a 5 mm one). Otherwise the model's shape stands. The ratio and the share were fixed before any
//! measurement; the join and then its near part (4 mm, against 8 mm) were each chosen on scans
//! and organs no shipped weights saw (assets/models/README.md).
//!
//! On a finely sampled scan the box is averaged down by whole voxels to about [`JOIN_GROW_MM`]
//! before growing (a 0.6 × 0.7 × 1.5 mm CT by 3 × 2 × 1) and the region is taken back to the
//! scan's grid by repeating each coarse voxel: growing walks the whole box several times, and on
//! a 512 × 512 × 224 CT at full resolution it cost seconds per click. Scans coarser than 1 mm
//! are grown at their own resolution. The checks run on the coarse region; only a region that
//! is joined is taken back to the scan's grid, and only over its own box. The averaging, the
//! checks and the way back are parallel over planes (the averaging sums each block in the order
//! a serial sum would, so the coarse scan is the same to the bit).

use super::{GrowError, GrowParams, grow_within, morph};
use crate::prompts::PromptSet;
use crate::shape::flood::component_containing;
use crate::geometry::{RasFromVoxel, RasMm, VoxelIjk};
use crate::shape::GridComponent;
use crate::volume::{OnGrid, Volume};
use ndarray::{Array3, ArrayView3, Axis, Zip, s};
use rayon::prelude::*;

/// How far past the model's box region growing may run (mm); past it, it has leaked.
pub const JOIN_MARGIN_MM: f64 = 40.0;
/// Most voxels the grown region may hold, as a multiple of the model's.
pub const JOIN_MAX_RATIO: f64 = 1.5;
/// Least share of the model's voxels the grown region must hold.
pub const JOIN_MIN_SHARE: f64 = 0.6;
/// The finest spacing region growing runs at here (mm; module doc).
pub const JOIN_GROW_MM: f64 = 1.5;
/// How far from the model's shape the part of a leaking region that is joined may reach (mm;
/// module doc).
pub const JOIN_NEAR_MM: f64 = 4.0;

/// What the join did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinOutcome {
    /// The grown region agreed and was joined.
    Joined,
    /// The grown region leaked (or disagreed), but its part within [`JOIN_NEAR_MM`] of the shape
    /// agreed and was joined.
    JoinedNear,
    /// It reached the faces of the box around the model.
    Escaped,
    /// It holds more than [`JOIN_MAX_RATIO`] times the model's voxels.
    TooLarge,
    /// It holds less than [`JOIN_MIN_SHARE`] of the model's voxels.
    Disagrees,
    /// Growing could not start (the click is off the scan or on a non-finite voxel).
    NoRegion,
}

/// The model's component `model` (a crop of `vol`'s grid, holding the click) joined with region
/// growing from `click` where they agree (module doc); `floor` is
/// [`super::refine::intensity_floor`] of `vol`; `near_mm`: how far from the shape the part of a
/// region that failed a check may reach and still be joined (module doc; [`JOIN_NEAR_MM`] by
/// default, `None`: such a region is dropped whole). Only [`GrowError::Cancelled`] is an error.
pub fn join_region_growing(
    vol: &Volume,
    model: &GridComponent,
    click: RasMm,
    p: &GrowParams,
    floor: f64,
    near_mm: Option<f64>,
    cancelled: &dyn Fn() -> bool,
) -> Result<(GridComponent, JoinOutcome), GrowError> {
    join_region_growing_within(vol, model, click, p, floor, near_mm, &PromptSet::default(), cancelled)
}

/// [`join_region_growing`] whose growing never takes a voxel `prompts` blocks (near a negative
/// point, outside the box: [`crate::prompts::PromptSet::blocks`]).
#[allow(clippy::too_many_arguments)]
pub fn join_region_growing_within(
    vol: &Volume,
    model: &GridComponent,
    click: RasMm,
    p: &GrowParams,
    floor: f64,
    near_mm: Option<f64>,
    prompts: &PromptSet,
    cancelled: &dyn Fn() -> bool,
) -> Result<(GridComponent, JoinOutcome), GrowError> {
    let keep = |o| Ok((model.clone(), o));
    let shape = vol.shape().array_shape();
    if model.voxel_count == 0 || !model.fits(shape) {
        return keep(JoinOutcome::NoRegion);
    }
    let sp_kji = vol.spacing().kji();
    let margin_kji = sp_kji.map(|s| (JOIN_MARGIN_MM / s).ceil() as usize);
    let d = model.mask.dim();
    let dims = [d.0, d.1, d.2];
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for a in 0..3 {
        lo[a] = model.origin_kji[a].saturating_sub(margin_kji[a]);
        hi[a] = (model.origin_kji[a] + dims[a] + margin_kji[a]).min(shape[a]);
    }
    let n = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    // The box averaged down by whole voxels to about JOIN_GROW_MM (module doc).
    let f = sp_kji.map(|s| (JOIN_GROW_MM / s).round().max(1.0) as usize);
    let nc: [usize; 3] = std::array::from_fn(|a| n[a].div_ceil(f[a]));
    let t0 = std::time::Instant::now();
    let crop = vol.data.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
    let coarse = if f == [1, 1, 1] { crop.to_owned() } else { block_means(crop, f) };
    // A coarse voxel sits at the centre of its block.
    let centre = |a: usize| lo[a] as f64 + (f[a] as f64 - 1.0) / 2.0;
    let origin = vol.ras_from_voxel.apply(VoxelIjk::new(centre(2), centre(1), centre(0)));
    let scale = nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(f[2] as f64, f[1] as f64, f[0] as f64));
    let ras_from_coarse = RasFromVoxel::from_parts(vol.ras_from_voxel.linear() * scale, origin.v);
    let Ok(sub) = Volume::new(coarse, ras_from_coarse) else {
        return keep(JoinOutcome::NoRegion);
    };
    // The coarse region: voxel `c` stands for the box's voxels `c·f … (c+1)·f − 1` (fewer at the
    // box's far faces).
    let t_coarse = t0.elapsed().as_secs_f64();
    let coarse_region = match grow_within(&sub, click, p, floor, prompts, cancelled) {
        Ok(r) => r,
        Err(GrowError::Cancelled) => return Err(GrowError::Cancelled),
        Err(_) => return keep(JoinOutcome::NoRegion),
    };
    let t_grow = t0.elapsed().as_secs_f64();
    let count = |r: &Array3<bool>| -> usize { fine_count(r, f, n) };
    let check = |r: &Array3<bool>, grown: usize| -> Option<JoinOutcome> {
        if grown as f64 > JOIN_MAX_RATIO * model.voxel_count as f64 {
            return Some(JoinOutcome::TooLarge);
        }
        let shared = shared_count(model, r, lo, f);
        ((shared as f64) < JOIN_MIN_SHARE * model.voxel_count as f64).then_some(JoinOutcome::Disagrees)
    };
    // A face of the box that is not a face of the scan must stay clear of the region (the box's
    // first and last voxels lie in the coarse grid's first and last).
    let mut failed = None;
    for a in 0..3 {
        for (open, idx) in [(lo[a] > 0, 0), (hi[a] < shape[a], nc[a] - 1)] {
            if open && coarse_region.index_axis(ndarray::Axis(a), idx).iter().any(|r| *r) {
                failed = Some(JoinOutcome::Escaped);
            }
        }
    }
    let mut grown = count(&coarse_region);
    if failed.is_none() {
        failed = check(&coarse_region, grown);
    }
    let mut coarse_region = coarse_region;
    let mut joined = JoinOutcome::Joined;
    if let Some(outcome) = failed {
        let Some(near_mm) = near_mm.filter(|d| *d > 0.0) else { return keep(outcome) };
        // The region's part near the shape: within `near_mm` of it (the shape's coarse
        // voxels grown by that ball, rounded to whole coarse voxels), connected to the click.
        let m = coarse_marks(model, lo, f, nc);
        let r = std::array::from_fn(|a| (near_mm / (sp_kji[a] * f[a] as f64)).round() as usize);
        let near = morph(&m, r, false);
        let part = Zip::from(&coarse_region).and(&near).par_map_collect(|&c, &n| c && n);
        let Some(seed) = sub.shape().array_index(sub.voxel_from_ras().apply(click)).filter(|c| part[[c.k, c.j, c.i]]) else {
            return keep(outcome);
        };
        let part = component_containing(part.view(), seed);
        grown = count(&part);
        if check(&part, grown).is_some() {
            return keep(outcome);
        }
        coarse_region = part;
        joined = JoinOutcome::JoinedNear;
    }
    // As a component: the region's bounding box (the box is what crosses to the app), taken on
    // the coarse grid and only that box brought back to the scan's (every coarse voxel stands
    // for at least one fine one, so the fine region's box is its coarse box's blocks).
    let Some((clo, chi)) = crate::shape::sdf::bounding_box(coarse_region.view()) else {
        return keep(JoinOutcome::NoRegion);
    };
    let blo: [usize; 3] = std::array::from_fn(|a| clo[a] * f[a]);
    let bhi: [usize; 3] = std::array::from_fn(|a| ((chi[a] + 1) * f[a]).min(n[a]) - 1);
    let mask = upsample_box(&coarse_region, f, blo, bhi);
    let grown = GridComponent { origin_kji: [lo[0] + blo[0], lo[1] + blo[1], lo[2] + blo[2]], mask, voxel_count: grown };
    let t_checks = t0.elapsed().as_secs_f64();
    let union = model.union(&grown);
    log::debug!(
        "join on a {}×{}×{} box ({}×{}×{} coarse): averaging {:.3} s, growing {:.3} s, checks {:.3} s, union {:.3} s",
        n[0],
        n[1],
        n[2],
        nc[0],
        nc[1],
        nc[2],
        t_coarse,
        t_grow - t_coarse,
        t_checks - t_grow,
        t0.elapsed().as_secs_f64() - t_checks
    );
    Ok((union, joined))
}

/// The means of `crop`'s blocks of `f` voxels (`[k, j, i]`; fewer at the far faces), each the
/// sum of its voxels in `[k, j, i]` order divided by their number, as `Iterator::sum` over the
/// block gives it: parallel over the coarse planes, each row of `crop` read once, in order.
fn block_means(crop: ArrayView3<f32>, f: [usize; 3]) -> Array3<f32> {
    let (n0, n1, n2) = crop.dim();
    let nc = [n0.div_ceil(f[0]), n1.div_ceil(f[1]), n2.div_ceil(f[2])];
    let mut out = Array3::<f32>::zeros((nc[0], nc[1], nc[2]));
    out.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(ck, mut plane)| {
        let ks = ck * f[0]..((ck + 1) * f[0]).min(n0);
        let nk = ks.len();
        let mut row = vec![0f32; n2];
        for (cj, mut orow) in plane.outer_iter_mut().enumerate() {
            let js = cj * f[1]..((cj + 1) * f[1]).min(n1);
            let nj = js.len();
            // `Iterator::sum` of floats starts from −0.0.
            orow.fill(-0.0);
            for k in ks.clone() {
                for j in js.clone() {
                    let src = crop.slice(s![k, j, ..]);
                    let src = match src.as_slice() {
                        Some(x) => x,
                        None => {
                            row.iter_mut().zip(src.iter()).for_each(|(r, v)| *r = *v);
                            &row[..]
                        }
                    };
                    for (o, b) in orow.iter_mut().zip(src.chunks(f[2])) {
                        for v in b {
                            *o += *v;
                        }
                    }
                }
            }
            for (ci, o) in orow.iter_mut().enumerate() {
                let ni = ((ci + 1) * f[2]).min(n2) - ci * f[2];
                *o /= (nk * nj * ni) as f32;
            }
        }
    });
    out
}

/// The fine voxels (a box of `n`) that the coarse voxels of `r` (blocks of `f`) stand for.
fn fine_count(r: &Array3<bool>, f: [usize; 3], n: [usize; 3]) -> usize {
    let block = |a: usize, c: usize| ((c + 1) * f[a]).min(n[a]) - c * f[a];
    r.axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(k, plane)| plane.indexed_iter().filter(|(_, r)| **r).map(|((j, i), _)| block(1, j) * block(2, i)).sum::<usize>() * block(0, k))
        .sum()
}

/// How many of `model`'s voxels lie in a coarse voxel of `r` (blocks of `f` from `lo` on the
/// scan's grid).
fn shared_count(model: &GridComponent, r: &Array3<bool>, lo: [usize; 3], f: [usize; 3]) -> usize {
    let o = model.origin_kji;
    model
        .mask
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .map(|(k, plane)| {
            let ck = (o[0] + k - lo[0]) / f[0];
            plane.indexed_iter().filter(|&((j, i), m)| *m && r[[ck, (o[1] + j - lo[1]) / f[1], (o[2] + i - lo[2]) / f[2]]]).count()
        })
        .sum()
}

/// The coarse voxels (`nc` blocks of `f` from `lo` on the scan's grid) holding a voxel of
/// `model`; parallel over the coarse planes.
fn coarse_marks(model: &GridComponent, lo: [usize; 3], f: [usize; 3], nc: [usize; 3]) -> Array3<bool> {
    let o = model.origin_kji;
    let (mk, _, _) = model.mask.dim();
    let mut m = Array3::from_elem((nc[0], nc[1], nc[2]), false);
    m.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(ck, mut plane)| {
        // The model's planes k with (o + k − lo) / f = ck.
        let first = (lo[0] + ck * f[0]).max(o[0]);
        let end = (lo[0] + (ck + 1) * f[0]).min(o[0] + mk);
        for k in first..end {
            for ((j, i), v) in model.mask.index_axis(Axis(0), k - o[0]).indexed_iter() {
                if *v {
                    plane[[(o[1] + j - lo[1]) / f[1], (o[2] + i - lo[2]) / f[2]]] = true;
                }
            }
        }
    });
    m
}

/// The fine voxels `blo..=bhi` (of a box whose voxel `c` of `coarse` stands for `c·f … (c+1)·f − 1`)
/// of the coarse region, each repeating its coarse voxel; parallel over planes.
fn upsample_box(coarse: &Array3<bool>, f: [usize; 3], blo: [usize; 3], bhi: [usize; 3]) -> Array3<bool> {
    let mut mask = Array3::from_elem((bhi[0] - blo[0] + 1, bhi[1] - blo[1] + 1, bhi[2] - blo[2] + 1), false);
    mask.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(k, mut plane)| {
        let cplane = coarse.index_axis(Axis(0), (blo[0] + k) / f[0]);
        for (j, mut row) in plane.outer_iter_mut().enumerate() {
            let crow = cplane.index_axis(Axis(0), (blo[1] + j) / f[1]);
            for (i, o) in row.iter_mut().enumerate() {
                *o = crow[(blo[2] + i) / f[2]];
            }
        }
    });
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    const SP: f64 = 2.0;

    /// A 64³ scan at 2 mm: `inside` at 100, the background textured around 0.
    fn scan(inside: impl Fn(f64, f64, f64) -> bool) -> Volume {
        scan_at(inside, [SP; 3], 64)
    }

    /// `n`³ voxels at `sp` (i, j, k) mm.
    fn scan_at(inside: impl Fn(f64, f64, f64) -> bool, sp: [f64; 3], n: usize) -> Volume {
        let data = Array3::from_shape_fn((n, n, n), |(k, j, i)| {
            let (x, y, z) = (i as f64 * sp[0], j as f64 * sp[1], k as f64 * sp[2]);
            if inside(x, y, z) { 100.0 } else { ((i * 7 + j * 13 + k * 29) % 11) as f32 - 5.0 }
        });
        Volume::new(data, RasFromVoxel::scale_translate(sp, [0.0; 3])).expect("volume")
    }

    fn ball(c: [f64; 3], r: f64) -> impl Fn(f64, f64, f64) -> bool {
        move |x, y, z| (x - c[0]).powi(2) + (y - c[1]).powi(2) + (z - c[2]).powi(2) <= r * r
    }

    /// The voxels of `vol`'s grid inside `f`, as a component.
    fn component(vol: &Volume, f: impl Fn(f64, f64, f64) -> bool) -> GridComponent {
        let sp = vol.spacing_mm();
        let m = Array3::from_shape_fn(vol.data.raw_dim(), |(k, j, i)| f(i as f64 * sp[0], j as f64 * sp[1], k as f64 * sp[2]));
        let (lo, hi) = crate::shape::sdf::bounding_box(m.view()).expect("non-empty");
        let mask = m.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]).to_owned();
        GridComponent { origin_kji: lo, voxel_count: mask.iter().filter(|x| **x).count(), mask }
    }

    fn dice(a: &GridComponent, b: &GridComponent, vol: &Volume) -> f64 {
        let shape = vol.shape().array_shape();
        let (ma, mb) = (a.to_mask(shape), b.to_mask(shape));
        let both = ma.iter().zip(mb.iter()).filter(|(x, y)| **x && **y).count();
        2.0 * both as f64 / (a.voxel_count + b.voxel_count) as f64
    }

    fn join(vol: &Volume, model: &GridComponent, click: [f64; 3]) -> (GridComponent, JoinOutcome) {
        let floor = super::super::refine::intensity_floor(vol);
        join_region_growing(vol, model, RasMm::new(click[0], click[1], click[2]), &GrowParams::default(), floor, Some(JOIN_NEAR_MM), &|| false).expect("not cancelled")
    }

    #[test]
    fn an_undersized_shape_takes_the_organs_boundary_from_the_scan() {
        let c = [64.0, 64.0, 64.0];
        let vol = scan(ball(c, 24.0));
        let truth = component(&vol, ball(c, 24.0));
        // The model's shape: the organ 2.5 mm too small all round, and off-centre by 2 mm.
        let model = component(&vol, ball([66.0, 64.0, 64.0], 21.5));
        let (out, outcome) = join(&vol, &model, c);
        assert_eq!(outcome, JoinOutcome::Joined);
        let (before, after) = (dice(&model, &truth, &vol), dice(&out, &truth, &vol));
        assert!(
            before < 0.85 && after > 0.93 && after > before + 0.08,
            "Dice {before:.3} → {after:.3}; voxels: truth {} model {} joined {}",
            truth.voxel_count,
            model.voxel_count,
            out.voxel_count
        );
        // The union keeps every voxel of the model's, and its box is tight.
        assert!(model.voxels().all(|v| out.contains(v)));
        for ax in 0..3 {
            let n = out.mask.len_of(ndarray::Axis(ax));
            assert!(out.mask.index_axis(ndarray::Axis(ax), 0).iter().any(|m| *m) && out.mask.index_axis(ndarray::Axis(ax), n - 1).iter().any(|m| *m), "axis {ax}");
        }
    }

    /// On a 0.6 × 0.7 × 1.5 mm grid growing runs on 3 × 2 × 1 blocks (1.8 × 1.4 × 1.5 mm) and
    /// its region comes back to the fine grid: the join still recovers the organ's boundary to
    /// within the blocks' size.
    #[test]
    fn on_a_fine_grid_growing_runs_coarser_and_comes_back() {
        let sp = [0.6, 0.7, 1.5];
        let c = [40.0, 40.0, 40.0];
        let vol = scan_at(ball(c, 16.0), sp, 128);
        let truth = component(&vol, ball(c, 16.0));
        let model = component(&vol, ball([41.0, 40.0, 40.0], 14.5));
        let (out, outcome) = join(&vol, &model, c);
        assert_eq!(outcome, JoinOutcome::Joined);
        let (before, after) = (dice(&model, &truth, &vol), dice(&out, &truth, &vol));
        assert!(before < 0.86 && after > before + 0.02, "Dice {before:.3} → {after:.3}; voxels: truth {} model {} joined {}", truth.voxel_count, model.voxel_count, out.voxel_count);
        assert!(model.voxels().all(|v| out.contains(v)));
    }

    /// The organ touches a larger neighbour of the same intensity through a wide neck: growing
    /// leaks into it, and only the region's part within 4 mm of the shape is joined. The organ's
    /// voxels that growing found beyond the shape come in; of the neighbour, only the lens at the
    /// neck that lies that near, fewer voxels than the organ gains.
    #[test]
    fn a_region_that_leaks_into_a_neighbour_is_joined_only_near_the_shape() {
        let c = [40.0, 64.0, 64.0];
        let organ = ball(c, 16.0);
        let neighbour = ball([80.0, 64.0, 64.0], 30.0);
        let vol = scan(move |x, y, z| organ(x, y, z) || neighbour(x, y, z));
        let truth = component(&vol, ball(c, 16.0));
        let model = component(&vol, ball(c, 14.0));
        let (out, outcome) = join(&vol, &model, c);
        assert_eq!(outcome, JoinOutcome::JoinedNear);
        assert!(model.voxels().all(|v| out.contains(v)), "the model's voxels stay");
        // Every added voxel lies within 4 mm (2 voxels) of the model's ball of 14 mm.
        let sp = vol.spacing_mm();
        let far = out.voxels().filter(|v| {
            let d = ((v.i as f64 * sp[0] - c[0]).powi(2) + (v.j as f64 * sp[1] - c[1]).powi(2) + (v.k as f64 * sp[2] - c[2]).powi(2)).sqrt();
            d > 14.0 + JOIN_NEAR_MM + 1e-9
        });
        assert_eq!(far.count(), 0, "a voxel farther than the near band");
        let gained = out.voxels().filter(|v| truth.contains(*v) && !model.contains(*v)).count();
        let taken = out.voxels().filter(|v| !truth.contains(*v)).count();
        let (before, after) = (dice(&model, &truth, &vol), dice(&out, &truth, &vol));
        assert!(taken < gained && after > before + 0.03, "organ voxels gained {gained}, neighbour voxels taken {taken}; Dice {before:.3} → {after:.3}");
    }

    /// A leak whose near part is still too large for the shape is not joined at all.
    #[test]
    fn a_leak_whose_near_part_is_too_large_is_not_joined() {
        let c = [64.0, 64.0, 64.0];
        // A bright slab across the scan with a small shape in it: the near part is a 4 mm
        // larger ball, more than 1.5 times the shape.
        let vol = scan(|_, _, z| (40.0..90.0).contains(&z));
        let model = component(&vol, ball(c, 6.0));
        let (out, outcome) = join(&vol, &model, c);
        assert_eq!(outcome, JoinOutcome::Escaped);
        assert_eq!(out, model);
    }

    #[test]
    fn a_region_past_the_models_box_and_margin_escapes() {
        // A slab across the whole scan: growing runs to the box's faces.
        let vol = scan(|_, _, z| (50.0..80.0).contains(&z));
        let model = component(&vol, ball([64.0, 64.0, 64.0], 8.0));
        let (out, outcome) = join(&vol, &model, [64.0, 64.0, 64.0]);
        assert_eq!(outcome, JoinOutcome::Escaped);
        assert_eq!(out, model);
    }

    #[test]
    fn a_shape_mostly_elsewhere_disagrees() {
        let c = [64.0, 64.0, 64.0];
        let vol = scan(ball(c, 12.0));
        // The model's shape holds the click but lies mostly outside the bright organ.
        let model = component(&vol, move |x, y, z| ball([84.0, 64.0, 64.0], 14.0)(x, y, z) || ball(c, 3.0)(x, y, z));
        let (out, outcome) = join(&vol, &model, c);
        assert_eq!(outcome, JoinOutcome::Disagrees);
        assert_eq!(out, model);
    }

    #[test]
    fn a_click_off_the_scan_keeps_the_model() {
        let vol = scan(ball([64.0; 3], 12.0));
        let model = component(&vol, ball([64.0; 3], 10.0));
        let (out, outcome) = join(&vol, &model, [-500.0, 0.0, 0.0]);
        assert_eq!(outcome, JoinOutcome::NoRegion);
        assert_eq!(out, model);
    }

    /// The parallel, row-wise block means equal the per-block sums of the serial definition bit
    /// for bit, on blocks cut short by the box's far faces and on a crop whose rows are not the
    /// array's; the counts, marks and the fine box agree with their voxel-by-voxel definitions.
    #[test]
    fn the_parallel_coarse_grid_equals_the_voxel_by_voxel_definition() {
        let mut rng = crate::data::phantom::Rng::new(11);
        let mut nontrivial = 0;
        for (dims, f) in [((7, 20, 17), [1, 3, 2]), ((9, 9, 9), [2, 2, 2]), ((5, 31, 12), [1, 1, 3]), ((4, 6, 5), [3, 4, 5])] {
            let data = Array3::from_shape_fn(dims, |_| (rng.uniform() * 2000.0 - 1000.0) as f32);
            for crop in [data.view(), data.slice(s![1.., ..;2, 1..])] {
                let n = [crop.dim().0, crop.dim().1, crop.dim().2];
                let nc: [usize; 3] = std::array::from_fn(|a| n[a].div_ceil(f[a]));
                let want = Array3::from_shape_fn((nc[0], nc[1], nc[2]), |(k, j, i)| {
                    let b = crop.slice(s![k * f[0]..((k + 1) * f[0]).min(n[0]), j * f[1]..((j + 1) * f[1]).min(n[1]), i * f[2]..((i + 1) * f[2]).min(n[2])]);
                    b.iter().sum::<f32>() / b.len() as f32
                });
                let got = block_means(crop, f);
                assert_eq!(got.dim(), want.dim());
                assert!(got.iter().zip(want.iter()).all(|(a, b)| a.to_bits() == b.to_bits()), "{dims:?} by {f:?}");
                // A region on the coarse grid: its fine voxels, counted and brought back.
                let r = Array3::from_shape_fn(got.raw_dim(), |_| rng.uniform() < 0.3);
                let fine = Array3::from_shape_fn((n[0], n[1], n[2]), |(k, j, i)| r[[k / f[0], j / f[1], i / f[2]]]);
                assert_eq!(fine_count(&r, f, n), fine.iter().filter(|x| **x).count());
                if let Some((blo, bhi)) = crate::shape::sdf::bounding_box(fine.view()) {
                    let (clo, chi) = crate::shape::sdf::bounding_box(r.view()).expect("non-empty");
                    assert_eq!(blo, std::array::from_fn(|a| clo[a] * f[a]));
                    assert_eq!(bhi, std::array::from_fn(|a| ((chi[a] + 1) * f[a]).min(n[a]) - 1));
                    assert_eq!(upsample_box(&r, f, blo, bhi), fine.slice(s![blo[0]..=bhi[0], blo[1]..=bhi[1], blo[2]..=bhi[2]]));
                }
                // A model's component inside the box (which starts at `lo` on the scan's grid).
                let lo = [3, 5, 2];
                let o = [lo[0] + 1, lo[1] + 2, lo[2]];
                let md = (n[0] - 1, n[1] - 2, n[2] - 1);
                let mask = Array3::from_shape_fn(md, |_| rng.uniform() < 0.4);
                let model = GridComponent { origin_kji: o, voxel_count: mask.iter().filter(|x| **x).count(), mask };
                let shared = model.voxels().filter(|v| r[[(v.k - lo[0]) / f[0], (v.j - lo[1]) / f[1], (v.i - lo[2]) / f[2]]]).count();
                assert_eq!(shared_count(&model, &r, lo, f), shared);
                let mut marks = Array3::from_elem((nc[0], nc[1], nc[2]), false);
                for v in model.voxels() {
                    marks[[(v.k - lo[0]) / f[0], (v.j - lo[1]) / f[1], (v.i - lo[2]) / f[2]]] = true;
                }
                assert_eq!(coarse_marks(&model, lo, f, nc), marks);
                nontrivial += usize::from(shared > 0 && shared < model.voxel_count);
            }
        }
        assert!(nontrivial >= 6, "only {nontrivial} cases shared some but not all of the model");
    }
}
