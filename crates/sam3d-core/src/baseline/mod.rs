//! Classical one-click 3D segmentation that needs no weights: smoothed, seeded,
//! confidence-connected region growing (ITK's `ConfidenceConnected` idea, what users of Slicer's
//! "Grow from seeds" / level-tracing tools know), followed by an opening that cuts thin leaks and
//! a fill of enclosed holes. It is reported beside the model in every evaluation, so tables show
//! what the model adds, and is selectable in the app's "3D from click" tool. [`refine`] holds the
//! classical step that follows the model: its mask grown by the image within a band; [`join`]
//! the one after it: region growing from the same click, joined to the model's shape where the
//! two agree.

pub mod join;
pub mod prompted;
pub mod refine;
pub mod smoothed;

use crate::geometry::{ArrayIdx, RasMm};
use crate::prompts::PromptSet;
use crate::shape::flood::{component_containing, fill_holes};
use crate::volume::{OnGrid, Volume, Voxel};
use ndarray::{Array3, Zip};
use rayon::prelude::*;

/// Parameters; defaults suit CT and MR at clinical resolutions.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GrowParams {
    /// Gaussian smoothing before growing (mm).
    pub smooth_sigma_mm: f64,
    /// Radius of the neighbourhood around the click whose statistics start the region (mm).
    pub seed_radius_mm: f64,
    /// Accept voxels within `multiplier` standard deviations of the region's mean.
    pub multiplier: f64,
    /// Re-estimate mean/std from the grown region this many times.
    pub iterations: usize,
    /// Never grow farther than this from the click (mm).
    pub max_radius_mm: f64,
    /// Opening radius (mm) that separates the organ from neighbours touching through thin bridges.
    pub opening_radius_mm: f64,
}

impl Default for GrowParams {
    fn default() -> Self {
        GrowParams { smooth_sigma_mm: 1.5, seed_radius_mm: 6.0, multiplier: 2.2, iterations: 2, max_radius_mm: 160.0, opening_radius_mm: 2.0 }
    }
}

/// Why growing could not start.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GrowError {
    #[error("click at RAS ({0:.1}, {1:.1}, {2:.1}) mm is outside the volume")]
    OutsideVolume(f64, f64, f64),
    #[error("cancelled")]
    Cancelled,
}

/// Separable Gaussian smoothing with per-axis sigma in voxels (`[k, j, i]` array order); edges
/// repeat the border value. Every pass runs along contiguous rows (whole planes for `k`, rows
/// for `j`), parallel over `k` planes.
pub fn gaussian_smooth<T: Voxel>(data: &Array3<T>, sigma_vox_kji: [f64; 3]) -> Array3<f32> {
    let mut cur = data.as_standard_layout().mapv(crate::volume::nifti::WriteSample::to_f32);
    for (ax, &sigma) in sigma_vox_kji.iter().enumerate() {
        if sigma < 0.2 {
            continue;
        }
        let r = (3.0 * sigma).ceil() as isize;
        let mut w: Vec<f32> = (-r..=r).map(|x| (-(x * x) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
        let s: f32 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= s);
        cur = smooth_axis(&cur, ax, &w);
    }
    cur
}

/// One pass of [`gaussian_smooth`]: `w` (odd length, centred) along array axis `ax`.
fn smooth_axis(src: &Array3<f32>, ax: usize, w: &[f32]) -> Array3<f32> {
    let (nk, nj, ni) = src.dim();
    let Some(s) = src.as_slice() else { unreachable!("standard layout") };
    let r = (w.len() / 2) as isize;
    let plane = nj * ni;
    let clamp = |x: isize, n: usize| x.clamp(0, n as isize - 1) as usize;
    let axpy = |o: &mut [f32], x: &[f32], a: f32| o.iter_mut().zip(x).for_each(|(o, x)| *o += a * x);
    let mut out = vec![0f32; s.len()];
    if plane == 0 {
        return src.clone();
    }
    out.par_chunks_mut(plane).enumerate().for_each(|(k, o)| match ax {
        0 => {
            for (t, &wt) in w.iter().enumerate() {
                let kk = clamp(k as isize + t as isize - r, nk);
                axpy(o, &s[kk * plane..(kk + 1) * plane], wt);
            }
        }
        1 => {
            for j in 0..nj {
                let orow = &mut o[j * ni..(j + 1) * ni];
                for (t, &wt) in w.iter().enumerate() {
                    let jj = clamp(j as isize + t as isize - r, nj);
                    axpy(orow, &s[k * plane + jj * ni..k * plane + (jj + 1) * ni], wt);
                }
            }
        }
        _ => {
            let ru = r as usize;
            for j in 0..nj {
                let row = &s[k * plane + j * ni..k * plane + (j + 1) * ni];
                let orow = &mut o[j * ni..(j + 1) * ni];
                // Away from the ends: whole shifted rows, as the other axes do.
                if ni > 2 * ru {
                    let inner = ni - 2 * ru;
                    for (t, &wt) in w.iter().enumerate() {
                        axpy(&mut orow[ru..ru + inner], &row[t..t + inner], wt);
                    }
                }
                // Within `r` of an end: the clamped sum.
                for i in (0..ni).filter(|&i| i < ru || i + ru >= ni) {
                    orow[i] = w.iter().enumerate().fold(0f32, |acc, (t, wt)| acc + wt * row[clamp(i as isize + t as isize - r, ni)]);
                }
            }
        }
    });
    Array3::from_shape_vec((nk, nj, ni), out).unwrap_or_else(|_| unreachable!("shape of the input"))
}

/// Binary erosion or dilation with an ellipsoidal (physical-ball) structuring element; voxels
/// past the array's faces count as outside the mask.
///
/// The ellipsoid is a run of offsets along `i` for each `(dk, dj)`, so each output row is the
/// AND (erosion) or OR (dilation) of a few input rows each eroded or dilated along `i` by its
/// run's half-width (a sliding-window count, taken once per half-width for the whole mask): the
/// cost per voxel does not grow with the radius along `i`, and rows run in parallel, planes
/// apart.
fn morph(mask: &Array3<bool>, radius_vox_kji: [usize; 3], erode: bool) -> Array3<bool> {
    let [rk, rj, ri] = radius_vox_kji.map(|r| r as isize);
    let f = |d: isize, r: isize| if r == 0 { 0.0 } else { (d as f64 / r as f64).powi(2) };
    // For each (dk, dj) of the ellipsoid, the half-width `w` of its run of `di`.
    let mut runs: Vec<(isize, isize, usize)> = Vec::new();
    for dk in -rk..=rk {
        for dj in -rj..=rj {
            let rest = 1.0 + 1e-9 - f(dk, rk) - f(dj, rj);
            if rest >= 0.0 {
                let w = (0..=ri).rev().find(|&di| f(di, ri) <= rest).unwrap_or(0);
                runs.push((dk, dj, w as usize));
            }
        }
    }
    let (nk, nj, ni) = mask.dim();
    if mask.is_empty() {
        return mask.clone();
    }
    let src = mask.as_standard_layout();
    let Some(s) = src.as_slice() else { unreachable!("standard layout") };
    // The mask's rows eroded or dilated along `i` by each half-width the runs have, once (a
    // sliding-window count): every run is then a plain AND or OR of such a row.
    let mut widths: Vec<usize> = runs.iter().map(|r| r.2).filter(|&w| w > 0).collect();
    widths.sort_unstable();
    widths.dedup();
    let along: Vec<Vec<bool>> = widths
        .iter()
        .map(|&w| {
            let mut a = vec![false; s.len()];
            a.par_chunks_mut(ni).zip(s.par_chunks(ni)).for_each_init(
                || vec![0u32; ni + 1],
                |prefix, (o, row)| {
                    for (i, &v) in row.iter().enumerate() {
                        prefix[i + 1] = prefix[i] + u32::from(v);
                    }
                    for (i, o) in o.iter_mut().enumerate() {
                        let (lo, hi) = (i.saturating_sub(w), (i + w).min(ni - 1));
                        let count = prefix[hi + 1] - prefix[lo];
                        *o = if erode { i >= w && i + w < ni && count as usize == 2 * w + 1 } else { count > 0 };
                    }
                },
            );
            a
        })
        .collect();
    let rows_by = |w: usize| -> &[bool] {
        match widths.binary_search(&w) {
            Ok(n) => &along[n],
            Err(_) => s,
        }
    };
    let mut out = vec![erode; nk * nj * ni];
    out.par_chunks_mut(nj * ni).enumerate().for_each(|(k, plane)| {
        for (j, o) in plane.chunks_mut(ni).enumerate() {
            for &(dk, dj, w) in &runs {
                let (a, b) = (k as isize + dk, j as isize + dj);
                if a < 0 || b < 0 || a >= nk as isize || b >= nj as isize {
                    if erode {
                        o.fill(false);
                        break;
                    }
                    continue;
                }
                let row = &rows_by(w)[(a as usize * nj + b as usize) * ni..][..ni];
                if erode {
                    o.iter_mut().zip(row).for_each(|(o, &v)| *o &= v);
                } else {
                    o.iter_mut().zip(row).for_each(|(o, &v)| *o |= v);
                }
            }
        }
    });
    Array3::from_shape_vec((nk, nj, ni), out).unwrap_or_else(|_| unreachable!("the shape's size"))
}

/// Segments the structure under `click` (RAS mm). Returns a mask on the volume's grid.
pub fn grow_from_click<T: Voxel>(vol: &Volume<T>, click: RasMm, p: &GrowParams) -> Result<Array3<bool>, GrowError> {
    grow_from_click_until(vol, click, p, &|| false)
}

/// [`grow_from_click`] that asks `cancelled` between its passes (after the smoothing, each
/// growing pass, the opening) and stops with [`GrowError::Cancelled`] when it says so.
pub fn grow_from_click_until<T: Voxel>(vol: &Volume<T>, click: RasMm, p: &GrowParams, cancelled: &dyn Fn() -> bool) -> Result<Array3<bool>, GrowError> {
    grow_with_floor(vol, click, p, refine::intensity_floor(vol), cancelled)
}

/// [`grow_from_click_until`] with the smallest intensity spread given (`floor`, see
/// [`refine::intensity_floor`]): growing on a crop of a scan must use the whole scan's.
pub fn grow_with_floor<T: Voxel>(vol: &Volume<T>, click: RasMm, p: &GrowParams, floor: f64, cancelled: &dyn Fn() -> bool) -> Result<Array3<bool>, GrowError> {
    grow_within(vol, click, p, floor, &PromptSet::default(), cancelled)
}

/// [`grow_with_floor`] that never takes a voxel `prompts` blocks ([`PromptSet::blocks`]: near
/// a negative point, outside the box), so the region cannot grow into or through them.
pub fn grow_within<T: Voxel>(vol: &Volume<T>, click: RasMm, p: &GrowParams, floor: f64, prompts: &PromptSet, cancelled: &dyn Fn() -> bool) -> Result<Array3<bool>, GrowError> {
    let check = || if cancelled() { Err(GrowError::Cancelled) } else { Ok(()) };
    let seed = vol.index_of_ras(click).ok_or(GrowError::OutsideVolume(click.x(), click.y(), click.z()))?;
    let sp_kji = vol.spacing().kji();
    // At least ~0.8 voxel of smoothing along every axis, so noise is reduced on coarse grids too.
    let t0 = std::time::Instant::now();
    let sm = gaussian_smooth(&vol.data, sp_kji.map(|s| (p.smooth_sigma_mm / s).max(0.8)));
    let t_smooth = t0.elapsed().as_secs_f64();
    let shape = [sm.shape()[0], sm.shape()[1], sm.shape()[2]];
    // Seed statistics from a small physical ball around the click.
    let r = sp_kji.map(|s| (p.seed_radius_mm / s).floor() as isize);
    let mut vals = Vec::new();
    for dk in -r[0]..=r[0] {
        for dj in -r[1]..=r[1] {
            for di in -r[2]..=r[2] {
                let (k, j, i) = (seed.k as isize + dk, seed.j as isize + dj, seed.i as isize + di);
                let d2 = (dk as f64 * sp_kji[0]).powi(2) + (dj as f64 * sp_kji[1]).powi(2) + (di as f64 * sp_kji[2]).powi(2);
                if k >= 0 && j >= 0 && i >= 0 && (k as usize) < shape[0] && (j as usize) < shape[1] && (i as usize) < shape[2] && d2 <= p.seed_radius_mm.powi(2) {
                    let v = sm[[k as usize, j as usize, i as usize]];
                    if v.is_finite() {
                        vals.push(v as f64);
                    }
                }
            }
        }
    }
    let stats = |v: &[f64]| {
        let n = v.len().max(1) as f64;
        let m = v.iter().sum::<f64>() / n;
        let s = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
        (m, s)
    };
    let (mut mean, mut std) = stats(&vals);
    // Re-estimated spreads may widen a little, never run away through a leak.
    let std_cap = 1.5 * std;
    // `floor`, a floor on the spread: a perfectly flat seed patch must still grow.
    let click_v = click.v;
    let ras = *vol.ras_from_voxel.matrix();
    let mut region = Array3::from_elem(sm.raw_dim(), false);
    let blocked = prompted::blocked_mask(vol, [0, 0, 0], [shape[0], shape[1], shape[2]], prompts);
    let open = |idx: (usize, usize, usize)| blocked.as_ref().is_none_or(|b| !b[idx]);
    for _ in 0..=p.iterations {
        check()?;
        let (lo, hi) = (mean - p.multiplier * std.max(floor), mean + p.multiplier * std.max(floor));
        let mut cand = Array3::from_elem(sm.raw_dim(), false);
        Zip::indexed(&mut cand).and(&sm).par_for_each(|(k, j, i), c, &v| {
            let v = v as f64;
            if v >= lo && v <= hi && open((k, j, i)) {
                let x = ras[(0, 0)] * i as f64 + ras[(0, 1)] * j as f64 + ras[(0, 2)] * k as f64 + ras[(0, 3)] - click_v.x;
                let y = ras[(1, 0)] * i as f64 + ras[(1, 1)] * j as f64 + ras[(1, 2)] * k as f64 + ras[(1, 3)] - click_v.y;
                let z = ras[(2, 0)] * i as f64 + ras[(2, 1)] * j as f64 + ras[(2, 2)] * k as f64 + ras[(2, 3)] - click_v.z;
                *c = x * x + y * y + z * z <= p.max_radius_mm * p.max_radius_mm;
            }
        });
        cand[seed.as_kji()] = true;
        region = component_containing(cand.view(), seed);
        let inside: Vec<f64> = sm.iter().zip(region.iter()).filter(|(_, r)| **r).map(|(v, _)| *v as f64).collect();
        let (m, sd) = stats(&inside);
        (mean, std) = (m, sd.min(std_cap));
    }
    check()?;
    let t_passes = t0.elapsed().as_secs_f64();
    // Opening (erode then dilate) cuts bridges thinner than the radius; keep the click's part.
    let rad = sp_kji.map(|s| (p.opening_radius_mm / s).round() as usize);
    let opened = if rad.iter().any(|&r| r > 0) {
        let er = morph(&region, rad, true);
        let part = if er[seed.as_kji()] { component_containing(er.view(), seed) } else { nearest_component(&er, seed).unwrap_or(er) };
        let dil = morph(&part, rad, false);
        Zip::from(&mut region.view_mut()).and(&dil).par_for_each(|r, &d| *r = *r && d);
        region
    } else {
        region
    };
    check()?;
    let t_open = t0.elapsed().as_secs_f64();
    // Partial-volume edge: smoothing and the opening shave off boundary voxels that are mostly
    // organ. Add shell voxels whose unsmoothed value is closer to the region's mean than to the
    // shell's (the half-way rule of partial-volume mixing).
    let mut region = opened;
    for _ in 0..2 {
        let grown = morph(&region, [1, 1, 1], false);
        let (mut rs, mut rs2, mut rn, mut ss, mut sn) = (0f64, 0f64, 0usize, 0f64, 0usize);
        for ((r, g), v) in region.iter().zip(grown.iter()).zip(vol.data.iter()) {
            let v = v.to_f32() as f64;
            if *r {
                rs += v;
                rs2 += v.powi(2);
                rn += 1;
            } else if *g {
                ss += v;
                sn += 1;
            }
        }
        if rn == 0 || sn == 0 {
            break;
        }
        let (rm, sh) = (rs / rn as f64, ss / sn as f64);
        let raw_std = (rs2 / rn as f64 - rm * rm).max(0.0).sqrt();
        let t = (rm + sh) / 2.0;
        let brighter = rm > sh;
        Zip::indexed(&mut region).and(&grown).and(&vol.data).par_for_each(|idx, r, &g, &v| {
            let g = g && open(idx);
            let v = v.to_f32() as f64;
            let band = 3.0 * raw_std.max(floor);
            if g && !*r && ((brighter && v >= t && v <= rm + band) || (!brighter && v <= t && v >= rm - band)) {
                *r = true;
            }
        });
    }
    let t_edge = t0.elapsed().as_secs_f64();
    let mut filled = fill_holes(component_containing(region.view(), seed).view());
    log::debug!(
        "region growing on {:?}: smoothing {:.3} s, {} passes {:.3} s, opening {:.3} s, edge {:.3} s, holes {:.3} s",
        vol.data.dim(),
        t_smooth,
        p.iterations + 1,
        t_passes - t_smooth,
        t_open - t_passes,
        t_edge - t_open,
        t0.elapsed().as_secs_f64() - t_edge
    );
    // A blocked ball the region closed round stays out.
    if let Some(b) = &blocked {
        Zip::from(&mut filled).and(b).par_for_each(|f, &b| *f = *f && !b);
        filled[seed.as_kji()] = true;
        filled = component_containing(filled.view(), seed);
    }
    Ok(filled)
}

/// The deepest interior point of a mask (largest distance to the outside, in mm, by the exact
/// Euclidean distance transform of [`crate::shape::sdf`]), in RAS: where a user would click.
/// `None` for an empty mask. A mask that fills the grid has no outside to measure to (every
/// distance is `+∞`); its last voxel in `[k, j, i]` order is returned, as before.
pub fn deepest_point(mask: &Array3<bool>, grid: &impl OnGrid) -> Option<RasMm> {
    let dist = crate::shape::sdf::edt(mask.mapv(|m| !m).view(), grid.spacing());
    let best = dist.indexed_iter().filter(|(_, d)| **d > 0.0).max_by(|a, b| a.1.total_cmp(b.1))?;
    let (k, j, i) = best.0;
    Some(grid.ras_of(ArrayIdx { k, j, i }))
}

/// The component of `mask` nearest to `seed` (when erosion removed the seed voxel itself).
fn nearest_component(mask: &Array3<bool>, seed: ArrayIdx) -> Option<Array3<bool>> {
    let best = mask
        .indexed_iter()
        .par_bridge()
        .filter(|(_, m)| **m)
        .map(|((k, j, i), _)| {
            let d = (k as i64 - seed.k as i64).pow(2) + (j as i64 - seed.j as i64).pow(2) + (i as i64 - seed.i as i64).pow(2);
            (d, k, j, i)
        })
        .min()?;
    Some(component_containing(mask.view(), ArrayIdx { k: best.1, j: best.2, i: best.3 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Erosion / dilation by testing every offset of the ellipsoid at every voxel.
    fn morph_brute(mask: &Array3<bool>, radius_vox_kji: [usize; 3], erode: bool) -> Array3<bool> {
        let [rk, rj, ri] = radius_vox_kji.map(|r| r as isize);
        let f = |d: isize, r: isize| if r == 0 { 0.0 } else { (d as f64 / r as f64).powi(2) };
        let mut offs = Vec::new();
        for dk in -rk..=rk {
            for dj in -rj..=rj {
                for di in -ri..=ri {
                    if f(dk, rk) + f(dj, rj) + f(di, ri) <= 1.0 + 1e-9 {
                        offs.push((dk, dj, di));
                    }
                }
            }
        }
        let (nk, nj, ni) = mask.dim();
        Array3::from_shape_fn(mask.raw_dim(), |(k, j, i)| {
            let hit = |&(dk, dj, di): &(isize, isize, isize)| {
                let (a, b, c) = (k as isize + dk, j as isize + dj, i as isize + di);
                a >= 0 && b >= 0 && c >= 0 && a < nk as isize && b < nj as isize && c < ni as isize && mask[[a as usize, b as usize, c as usize]]
            };
            if erode { offs.iter().all(hit) } else { offs.iter().any(hit) }
        })
    }

    #[test]
    fn morph_equals_the_offset_by_offset_definition() {
        let mut rng = crate::data::phantom::Rng::new(7);
        for (dims, radius) in [((9, 11, 13), [1, 1, 1]), ((6, 14, 21), [0, 2, 3]), ((12, 5, 17), [2, 0, 4]), ((3, 4, 5), [0, 0, 0]), ((7, 9, 4), [3, 2, 1]), ((1, 1, 30), [0, 0, 5])] {
            for density in [0.2, 0.6, 0.9] {
                let mask = Array3::from_shape_fn(dims, |_| rng.uniform() < density);
                for erode in [true, false] {
                    let fast = morph(&mask, radius, erode);
                    let brute = morph_brute(&mask, radius, erode);
                    assert_eq!(fast, brute, "{dims:?} radius {radius:?} density {density} erode {erode}");
                }
            }
        }
        // A solid block: erosion by a 6-neighbourhood takes its outer shell, dilation adds one.
        let mut block = Array3::from_elem((10, 10, 10), false);
        block.slice_mut(ndarray::s![2..8, 2..8, 2..8]).fill(true);
        assert_eq!(morph(&block, [1, 1, 1], true).iter().filter(|v| **v).count(), 4 * 4 * 4);
        assert_eq!(morph(&block, [1, 1, 1], false).iter().filter(|v| **v).count(), 6 * 6 * 6 + 6 * 6 * 6);
        assert_eq!(morph(&Array3::from_elem((0, 3, 3), false), [1, 1, 1], true).len(), 0);
    }
    use crate::data::phantom::{PhantomSpec, generate, label_centroid};
    use crate::volume::Modality;

    fn dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
        let inter = a.iter().zip(b.iter()).filter(|(x, y)| **x && **y).count() as f64;
        let s = (a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count()) as f64;
        2.0 * inter / s.max(1.0)
    }

    #[test]
    fn grows_the_clicked_phantom_organ() {
        let case = generate(&PhantomSpec::small(Modality::Ct), 4);
        for label in [5u16, 1] {
            let gt = case.labels.mask(label);
            let c = label_centroid(&case.labels, label).expect("present");
            let m = grow_from_click(&case.volume, c, &GrowParams::default()).expect("inside");
            let d = dice(&m, &gt);
            assert!(d > 0.8, "label {label}: dice {d}");
        }
    }

    /// A cancel is seen between passes: at once, or after some passes have run.
    #[test]
    fn growing_stops_when_cancelled() {
        let case = generate(&PhantomSpec::small(Modality::Ct), 4);
        let c = label_centroid(&case.labels, 5).expect("present");
        let p = GrowParams::default();
        assert_eq!(grow_from_click_until(&case.volume, c, &p, &|| true), Err(GrowError::Cancelled));
        let asked = std::cell::Cell::new(0);
        let late = || {
            asked.set(asked.get() + 1);
            asked.get() > 2
        };
        assert_eq!(grow_from_click_until(&case.volume, c, &p, &late), Err(GrowError::Cancelled));
        assert_eq!(asked.get(), 3);
        assert!(grow_from_click_until(&case.volume, c, &p, &|| false).is_ok_and(|m| m.iter().any(|&x| x)));
    }

    /// The row-wise passes equal a direct sum over the clamped neighbourhood along each axis.
    #[test]
    fn gaussian_smoothing_matches_the_direct_sum() {
        let mut r = crate::data::phantom::Rng::new(4);
        let a = Array3::from_shape_fn((5, 7, 23), |_| r.uniform() as f32 * 100.0);
        let sigma = [0.9, 1.3, 2.0];
        let got = gaussian_smooth(&a, sigma);
        let mut want = a.clone();
        for (ax, &sg) in sigma.iter().enumerate() {
            let rad = (3.0 * sg).ceil() as isize;
            let w: Vec<f64> = (-rad..=rad).map(|x| (-(x * x) as f64 / (2.0 * sg * sg)).exp()).collect();
            let total: f64 = w.iter().sum();
            let prev = want.clone();
            let n = prev.shape()[ax] as isize;
            for ((k, j, i), o) in want.indexed_iter_mut() {
                let at = [k as isize, j as isize, i as isize];
                *o = (-rad..=rad)
                    .map(|d| {
                        let mut p = at;
                        p[ax] = (p[ax] + d).clamp(0, n - 1);
                        w[(d + rad) as usize] / total * prev[[p[0] as usize, p[1] as usize, p[2] as usize]] as f64
                    })
                    .sum::<f64>() as f32;
            }
        }
        let worst = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-3, "largest difference {worst}");
        // A constant stays constant (weights sum to one, edges repeat).
        let c = gaussian_smooth(&Array3::from_elem((3, 4, 9), 7.0), [1.0, 1.0, 3.0]);
        assert!(c.iter().all(|v| (v - 7.0).abs() < 1e-4));
    }

    /// On a grid with three different spacings (a swapped axis order would show), the
    /// deepest point is a voxel whose brute-force distance to the outside is the largest.
    #[test]
    fn deepest_point_matches_brute_force_on_an_anisotropic_grid() {
        let mut r = crate::data::phantom::Rng::new(9);
        // A lumpy blob: voxels near the middle, thinned at random.
        let m = Array3::from_shape_fn([9, 11, 13], |(k, j, i)| {
            let d = ((k as f64 - 4.0) / 4.0).powi(2) + ((j as f64 - 5.0) / 5.0).powi(2) + ((i as f64 - 6.0) / 6.0).powi(2);
            d < 1.0 && r.uniform() < 0.9
        });
        let aff = crate::geometry::RasFromVoxel::scale_translate([0.6, 1.3, 2.9], [-4.0, 7.0, 11.0]);
        let labels = crate::volume::LabelMap::new(m.mapv(u16::from), aff).expect("valid affine");
        let sp = [2.9, 1.3, 0.6]; // k, j, i
        let depth = |(k, j, i): (usize, usize, usize)| {
            m.indexed_iter()
                .filter(|(_, x)| !**x)
                .map(|((k2, j2, i2), _)| {
                    ((k as f64 - k2 as f64) * sp[0]).powi(2) + ((j as f64 - j2 as f64) * sp[1]).powi(2) + ((i as f64 - i2 as f64) * sp[2]).powi(2)
                })
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        };
        let deepest = m.indexed_iter().filter(|(_, x)| **x).map(|(a, _)| depth(a)).fold(0.0, f64::max);
        let p = deepest_point(&m, &labels).expect("non-empty");
        let a = labels.index_of_ras(p).expect("on the grid");
        assert!(m[a.as_kji()], "the point is inside");
        let got = depth((a.k, a.j, a.i));
        assert!((got - deepest).abs() < 1e-4, "depth {got} at {a:?}, the deepest is {deepest}");
        assert!(deepest_point(&Array3::from_elem([3, 3, 3], false), &labels).is_none());
    }

    #[test]
    fn outside_click_is_an_error() {
        let case = generate(&PhantomSpec::small(Modality::Ct), 1);
        let e = grow_from_click(&case.volume, RasMm::new(1e4, 0.0, 0.0), &GrowParams::default()).expect_err("outside");
        assert!(e.to_string().contains("outside the volume"));
    }

    #[test]
    fn holes_are_filled_and_components_kept_apart() {
        let mut m = Array3::from_elem([7, 7, 7], false);
        for k in 1..6 {
            for j in 1..6 {
                for i in 1..6 {
                    m[[k, j, i]] = true;
                }
            }
        }
        m[[3, 3, 3]] = false;
        let f = fill_holes(m.view());
        assert!(f[[3, 3, 3]] && !f[[0, 0, 0]]);
        let mut two = Array3::from_elem([3, 3, 7], false);
        two[[1, 1, 1]] = true;
        two[[1, 1, 2]] = true;
        two[[1, 1, 5]] = true;
        let c = component_containing(two.view(), ArrayIdx { k: 1, j: 1, i: 1 });
        assert_eq!(c.iter().filter(|x| **x).count(), 2);
    }
}
