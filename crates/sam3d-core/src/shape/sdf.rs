//! Exact Euclidean distance transforms and signed distance fields on anisotropic grids.
//!
//! Separable, linear-time: a binary scan along `i` (the contiguous axis), then the
//! Felzenszwalb–Huttenlocher lower envelope of parabolas along `j` and `k`, each pass parallel
//! over lines with rayon. Distances are between voxel centres, in millimetres.
//!
//! Convention (that of `scipy.ndimage.distance_transform_edt(~m, s) - distance_transform_edt(m, s)`):
//! a voxel outside the mask gets `+`(distance to the nearest inside voxel centre), a voxel inside
//! gets `−`(distance to the nearest outside voxel centre). So the boundary voxels on either side
//! are at ±(one spacing), never 0; the zero level lies between them.
//!
//! Arrays are `[k, j, i]` (DESIGN.md); spacings are a [`SpacingIjk`] (voxel-axis order, what
//! [`OnGrid::spacing`] gives), so `si` goes with array axis 2 and `sk` with axis 0. This is the
//! project's one exact EDT: the baseline's deepest point and the refinement's band use it too.
//!
//! An empty mask has no inside voxel to measure to: every voxel is `+∞`. A full mask is `−∞`.

use crate::geometry::SpacingIjk;
use crate::volume::{LabelMap, OnGrid, Volume};
use ndarray::{Array3, Array4, ArrayView3, ArrayViewMut2, Axis, Zip, s};
use rayon::prelude::*;

/// Squared Euclidean distance (mm²) from every voxel centre to the nearest voxel where
/// `feature` is true; `+∞` when there is none.
pub fn squared_edt(feature: ArrayView3<bool>, spacing: SpacingIjk) -> Array3<f32> {
    let mut d = Array3::<f32>::zeros(feature.raw_dim());
    scan_i(feature, &mut d, spacing.ijk()[0], true, f32::INFINITY);
    envelope_passes(&mut d, spacing, f32::INFINITY);
    d
}

/// [`squared_edt`] where it is at most `limit` (mm²), `+∞` elsewhere: for a test against a
/// band (`d ≤ limit`) it gives the same answer for every voxel, at less cost. Each pass only
/// adds to a distance, so a partial distance past `limit` can only end past it: it is dropped
/// (`+∞`) between passes, and the columns of the later passes that are left with no finite
/// value (everything farther than `limit` from the feature) are skipped.
pub fn squared_edt_within(feature: ArrayView3<bool>, spacing: SpacingIjk, limit: f32) -> Array3<f32> {
    let mut d = Array3::<f32>::zeros(feature.raw_dim());
    scan_i(feature, &mut d, spacing.ijk()[0], true, limit);
    envelope_passes(&mut d, spacing, limit);
    d
}

/// Euclidean distance (mm) from every voxel centre to the nearest voxel where `feature` is
/// true (`+∞` when there is none). Equals `scipy.ndimage.distance_transform_edt(~feature, s)`.
pub fn edt(feature: ArrayView3<bool>, spacing: SpacingIjk) -> Array3<f32> {
    let mut d = squared_edt(feature, spacing);
    d.par_mapv_inplace(f32::sqrt);
    d
}

/// Signed distance (mm) of a mask: `+`distance to the nearest inside voxel centre for outside
/// voxels, `−`distance to the nearest outside voxel centre for inside voxels (see the module
/// doc). `mask` is `[k, j, i]`.
pub fn sdf(mask: ArrayView3<bool>, spacing: SpacingIjk) -> Array3<f32> {
    // Outside part: squared distance to the nearest inside voxel, over the whole grid.
    let mut out = squared_edt(mask, spacing);
    // Inside part: only needed inside the mask, and the nearest outside voxel of any inside voxel
    // lies within the mask's bounding box grown by one (or the box is the whole grid and the
    // grid has no outside voxel beyond it), so work on that crop only.
    if let Some((lo, hi)) = bounding_box(mask) {
        let lo2 = [lo[0].saturating_sub(1), lo[1].saturating_sub(1), lo[2].saturating_sub(1)];
        let sh = mask.shape();
        let hi2 = [(hi[0] + 2).min(sh[0]), (hi[1] + 2).min(sh[1]), (hi[2] + 2).min(sh[2])];
        let crop = mask.slice(s![lo2[0]..hi2[0], lo2[1]..hi2[1], lo2[2]..hi2[2]]);
        let mut inside = Array3::<f32>::zeros(crop.raw_dim());
        scan_i(crop, &mut inside, spacing.ijk()[0], false, f32::INFINITY);
        envelope_passes(&mut inside, spacing, f32::INFINITY);
        let mut region = out.slice_mut(s![lo2[0]..hi2[0], lo2[1]..hi2[1], lo2[2]..hi2[2]]);
        Zip::from(&mut region).and(&crop).and(&inside).par_for_each(|o, &m, &d| {
            if m {
                *o = -d;
            }
        });
    }
    out.par_mapv_inplace(|d| if d < 0.0 { -(-d).sqrt() } else { d.sqrt() });
    // Voxels inside the mask with no outside voxel anywhere: −∞ (a full mask).
    out
}

/// Signed distance field of one label (or of every non-zero label when `label` is `None`),
/// as a float volume on the label map's grid.
pub fn sdf_of_labels(labels: &LabelMap, label: Option<u16>) -> Volume {
    let mask = match label {
        Some(l) => labels.mask(l),
        None => labels.data.mapv(|v| v != 0),
    };
    let data = sdf(mask.view(), labels.spacing());
    Volume { data, ras_from_voxel: labels.ras_from_voxel, meta: Default::default() }
}

/// Per-class signed distance fields for a list of labels, shape `(C, nk, nj, ni)` with channel
/// `c` the SDF of `labels == classes[c]`. The classes are computed concurrently (each one is
/// itself parallel over lines, rayon balances both levels).
pub fn sdf_classes(labels: ArrayView3<u16>, classes: &[u16], spacing: SpacingIjk) -> Array4<f32> {
    let sh = labels.shape();
    let mut out = Array4::<f32>::zeros((classes.len(), sh[0], sh[1], sh[2]));
    out.axis_iter_mut(Axis(0)).into_par_iter().zip(classes.par_iter()).for_each(|(mut ch, &c)| {
        let mask = labels.mapv(|v| v == c);
        ch.assign(&sdf(mask.view(), spacing));
    });
    out
}

/// Inclusive `[k, j, i]` bounds of the true voxels, or `None` for an empty mask.
pub fn bounding_box(mask: ArrayView3<bool>) -> Option<([usize; 3], [usize; 3])> {
    bounding_box_by(mask, |&m| m)
}

/// Inclusive `[k, j, i]` bounds of the voxels passing `select`, or `None` when none does.
/// Parallel over `k` planes; each row is searched from both ends.
pub fn bounding_box_by<T: Sync>(a: ArrayView3<T>, select: impl Fn(&T) -> bool + Sync) -> Option<([usize; 3], [usize; 3])> {
    type Box3 = ([usize; 3], [usize; 3]);
    let merge = |a: Box3, b: Box3| -> Box3 {
        (
            [a.0[0].min(b.0[0]), a.0[1].min(b.0[1]), a.0[2].min(b.0[2])],
            [a.1[0].max(b.1[0]), a.1[1].max(b.1[1]), a.1[2].max(b.1[2])],
        )
    };
    a.axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .filter_map(|(k, plane)| {
            let mut b: Option<Box3> = None;
            for (j, row) in plane.rows().into_iter().enumerate() {
                let first = match row.as_slice() {
                    Some(r) => r.iter().position(&select),
                    None => row.iter().position(&select),
                };
                let Some(first) = first else { continue };
                let last = match row.as_slice() {
                    Some(r) => r.iter().rposition(&select),
                    None => row.iter().rposition(&select),
                }
                .unwrap_or(first);
                let rb = ([k, j, first], [k, j, last]);
                b = Some(b.map_or(rb, |b| merge(b, rb)));
            }
            b
        })
        .reduce_with(merge)
}

/// Pass 1, along `i`: squared distance (mm²) to the nearest voxel of the same row whose mask
/// value equals `target`, `+∞` when the row has none or it is farther than `limit` (mm²).
fn scan_i(mask: ArrayView3<bool>, d: &mut Array3<f32>, si: f64, target: bool, limit: f32) {
    Zip::from(d.rows_mut()).and(mask.rows()).par_for_each(|mut drow, mrow| {
        let owned;
        let m: &[bool] = match mrow.as_slice() {
            Some(m) => m,
            None => {
                owned = mrow.to_vec();
                &owned
            }
        };
        match drow.as_slice_mut() {
            Some(out) => scan_row(m, out, si, target, limit),
            None => {
                let mut out = vec![0f32; m.len()];
                scan_row(m, &mut out, si, target, limit);
                for (dst, src) in drow.iter_mut().zip(out) {
                    *dst = src;
                }
            }
        }
    });
}

/// One row of [`scan_i`]: forward and backward sweeps, then squared mm (`+∞` past `limit`).
fn scan_row(m: &[bool], out: &mut [f32], si: f64, target: bool, limit: f32) {
    const FAR: f32 = f32::INFINITY;
    // Forward: voxels since the last feature at or before i.
    let mut run = FAR;
    for (o, &x) in out.iter_mut().zip(m) {
        run = if x == target { 0.0 } else { run + 1.0 };
        *o = run;
    }
    // Backward: voxels to the next feature at or after i; keep the smaller, then square.
    let mut run = FAR;
    for (o, &x) in out.iter_mut().zip(m).rev() {
        run = if x == target { 0.0 } else { run + 1.0 };
        let v = o.min(run) as f64 * si;
        let v = (v * v) as f32;
        *o = if v <= limit { v } else { FAR };
    }
}

/// Passes 2 and 3: lower envelopes along `j` (spacing `sj`) and `k` (spacing `sk`); values
/// past `limit` (mm²) become `+∞` (see [`squared_edt_within`]).
fn envelope_passes(d: &mut Array3<f32>, spacing: SpacingIjk, limit: f32) {
    let (nk, nj) = (d.shape()[0], d.shape()[1]);
    let [sk, sj, _] = spacing.kji();
    // Along j: one [j, i] plane per k.
    if nj > 1 {
        d.axis_iter_mut(Axis(0)).into_par_iter().for_each_init(
            || Scratch::new(nj),
            |sc, plane| envelope_columns(plane, sj, limit, sc),
        );
    }
    // Along k: one [k, i] plane per j.
    if nk > 1 {
        d.axis_iter_mut(Axis(1)).into_par_iter().for_each_init(
            || Scratch::new(nk),
            |sc, plane| envelope_columns(plane, sk, limit, sc),
        );
    }
}

/// Runs the 1D transform down every column (axis 0) of a `[n, ni]` plane. Columns are
/// transposed into a contiguous buffer row by row, so memory is read in order.
fn envelope_columns(mut plane: ArrayViewMut2<f32>, w: f64, limit: f32, sc: &mut Scratch) {
    let n = plane.shape()[0];
    let ni = plane.shape()[1];
    // Only columns holding a finite value change; sparse inputs (surfels) skip most of them.
    sc.has.clear();
    sc.has.resize(ni, false);
    for row in plane.rows() {
        match row.as_slice() {
            Some(r) => sc.has.iter_mut().zip(r).for_each(|(h, x)| *h |= x.is_finite()),
            None => sc.has.iter_mut().zip(row.iter()).for_each(|(h, x)| *h |= x.is_finite()),
        }
    }
    sc.cols.clear();
    sc.cols.extend((0..ni).filter(|&c| sc.has[c]));
    if sc.cols.is_empty() {
        return;
    }
    let m = sc.cols.len();
    sc.block.resize(m * n, 0.0);
    for (r, row) in plane.rows().into_iter().enumerate() {
        for (t, &c) in sc.cols.iter().enumerate() {
            sc.block[t * n + r] = row[c];
        }
    }
    for line in sc.block.chunks_exact_mut(n) {
        envelope_1d(line, w, &mut sc.v, &mut sc.z, &mut sc.hv, &mut sc.fv);
    }
    for (r, mut row) in plane.rows_mut().into_iter().enumerate() {
        for (t, &c) in sc.cols.iter().enumerate() {
            let v = sc.block[t * n + r];
            row[c] = if v <= limit { v } else { f32::INFINITY };
        }
    }
}

struct Scratch {
    block: Vec<f32>,
    has: Vec<bool>,
    cols: Vec<usize>,
    v: Vec<usize>,
    z: Vec<f64>,
    hv: Vec<f64>,
    fv: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Scratch { block: Vec::new(), has: Vec::new(), cols: Vec::new(), v: vec![0; n], z: vec![0.0; n + 1], hv: vec![0.0; n], fv: vec![0.0; n] }
    }
}

/// Felzenszwalb–Huttenlocher, in place: `f[q] ← min_p (w·(q−p))² + f[p]` over finite `f[p]`
/// (squared mm). A line with no finite value is left as it is (`+∞`). Arithmetic in f64.
/// `v`, `hv`, `fv` need `f.len()` slots, `z` one more.
pub(crate) fn envelope_1d(f: &mut [f32], w: f64, v: &mut [usize], z: &mut [f64], hv: &mut [f64], fv: &mut [f64]) {
    let n = f.len();
    let Some(first) = f.iter().position(|x| x.is_finite()) else { return };
    let inv_w2 = 1.0 / (w * w);
    // Parabola p in index units: (q − p)² + f[p]/w²; its key is h = f[p]/w² + p².
    let mut k = 0usize;
    v[0] = first;
    fv[0] = f[first] as f64;
    hv[0] = fv[0] * inv_w2 + (first * first) as f64;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for q in first + 1..n {
        let fq = f[q];
        if !fq.is_finite() {
            continue;
        }
        let hq = fq as f64 * inv_w2 + (q * q) as f64;
        let mut s;
        loop {
            s = (hq - hv[k]) / (2.0 * (q - v[k]) as f64);
            if s <= z[k] && k > 0 {
                k -= 1;
            } else {
                break;
            }
        }
        if s <= z[k] {
            // k == 0 and the new parabola lies below the first everywhere.
            v[0] = q;
            hv[0] = hq;
            fv[0] = fq as f64;
            z[1] = f64::INFINITY;
            continue;
        }
        k += 1;
        v[k] = q;
        hv[k] = hq;
        fv[k] = fq as f64;
        z[k] = s;
        z[k + 1] = f64::INFINITY;
    }
    let mut k = 0usize;
    for (q, o) in f.iter_mut().enumerate() {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let dq = (q as f64 - v[k] as f64) * w;
        *o = (dq * dq + fv[k]) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_1d(f: &[f64], w: f64) -> Vec<f64> {
        (0..f.len())
            .map(|q| (0..f.len()).map(|p| ((q as f64 - p as f64) * w).powi(2) + f[p]).fold(f64::INFINITY, f64::min))
            .collect()
    }

    #[test]
    fn envelope_matches_brute_force() {
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        for n in 1..40 {
            for _ in 0..20 {
                let f: Vec<f64> =
                    (0..n).map(|_| if rnd() < 0.3 { f64::INFINITY } else { (rnd() * 30.0).floor() }).collect();
                let w = 0.3 + rnd() * 3.0;
                let (mut v, mut z, mut hv, mut fv) = (vec![0; n], vec![0.0; n + 1], vec![0.0; n], vec![0.0; n]);
                let mut line: Vec<f32> = f.iter().map(|&x| x as f32).collect();
                envelope_1d(&mut line, w, &mut v, &mut z, &mut hv, &mut fv);
                let out: Vec<f64> = line.iter().map(|&x| x as f64).collect();
                let b = brute_1d(&f, w);
                for q in 0..n {
                    assert!((out[q] - b[q]).abs() <= 1e-5 * b[q].max(1.0) || out[q] == b[q], "{f:?} {w} {q}: {} vs {}", out[q], b[q]);
                }
            }
        }
    }

    #[test]
    fn empty_and_full_masks() {
        let m = Array3::from_elem((3, 4, 5), false);
        assert!(sdf(m.view(), SpacingIjk([1.0, 2.0, 3.0])).iter().all(|x| *x == f32::INFINITY));
        let m = Array3::from_elem((3, 4, 5), true);
        assert!(sdf(m.view(), SpacingIjk([1.0, 2.0, 3.0])).iter().all(|x| *x == f32::NEG_INFINITY));
    }

    /// Squared distance (mm²) from `[k, j, i]` to the nearest voxel where `feature` is true, by
    /// trying every voxel.
    fn brute_squared(feature: &Array3<bool>, at: (usize, usize, usize), sp: SpacingIjk) -> f64 {
        let [sk, sj, si] = sp.kji();
        let (k, j, i) = at;
        feature
            .indexed_iter()
            .filter(|(_, f)| **f)
            .map(|((k2, j2, i2), _)| {
                ((k as f64 - k2 as f64) * sk).powi(2) + ((j as f64 - j2 as f64) * sj).powi(2) + ((i as f64 - i2 as f64) * si).powi(2)
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// The bounded transform equals the whole one to the bit wherever that is within the limit
    /// and is `+∞` everywhere else, on sparse and dense masks, three spacings and limits from
    /// under one voxel to past the grid; and it does drop the far values.
    #[test]
    fn a_bounded_transform_is_exact_within_its_limit() {
        let mut r = crate::data::phantom::Rng::new(21);
        let sp = SpacingIjk([0.7, 0.6, 1.5]);
        let mut dropped = 0;
        for p in [0.002, 0.02, 0.3] {
            let m = Array3::from_shape_fn([17, 23, 29], |_| r.uniform() < p);
            let whole = squared_edt(m.view(), sp);
            for limit in [0.25f32, 2.0, 9.0, 64.0, 1e4] {
                let within = squared_edt_within(m.view(), sp, limit);
                for ((at, &w), &b) in whole.indexed_iter().zip(within.iter()) {
                    if w <= limit {
                        assert_eq!(w.to_bits(), b.to_bits(), "p {p}, limit {limit}, {at:?}: {b} vs {w}");
                    } else {
                        assert_eq!(b, f32::INFINITY, "p {p}, limit {limit}, {at:?}: {b} past the limit ({w})");
                        dropped += usize::from(w.is_finite());
                    }
                }
            }
        }
        assert!(dropped > 1000, "only {dropped} finite distances were past a limit");
    }

    /// On a grid with three different spacings (so a swapped axis order shows), the distance
    /// from inside voxels to the outside equals brute force: the baseline's former
    /// `edt_inside` check, now against the one EDT.
    #[test]
    fn edt_matches_brute_force() {
        let mut r = crate::data::phantom::Rng::new(9);
        let m = Array3::from_shape_fn([6, 7, 8], |_| r.uniform() < 0.7);
        let sp = SpacingIjk([1.1, 0.7, 2.5]);
        let d = edt(m.mapv(|x| !x).view(), sp);
        for (at, &inside) in m.indexed_iter() {
            let want = if inside { brute_squared(&m.mapv(|x| !x), at, sp).sqrt() } else { 0.0 };
            let got = d[[at.0, at.1, at.2]] as f64;
            assert!((got - want).abs() <= 1e-6 * want.max(1.0), "{at:?}: {got} vs {want}");
        }
    }
}
