//! Image-consistent refinement of a model's 3D mask: the model knows the organ's shape but its
//! boundary is coarse (a 48³ SDF at 4 mm, trained on few real scans, so real organs come out
//! too small, and where a neighbour touches the organ the model may take part of it); the scan
//! knows where the organ's intensity ends. From the smoothed scan's median and robust standard
//! deviation (1.4826 × MAD) under the mask's interior near the click (the mask eroded by one
//! voxel, the edge being partial volume; within `stats_radius_mm` of the click when there are
//! enough voxels there), the refinement
//!
//! 1. **prunes** (when `prune_multiplier` is set): drops the model's voxels whose intensity lies
//!    farther than `prune_multiplier` deviations from the median, keeps the 6-connected part
//!    that holds the click (the largest part when the click itself was dropped), and fills its
//!    cavities (vessels inside an organ stay in); then
//! 2. **grows**: adds every voxel within `band_mm` of that mask (so a leak can never run farther
//!    than that, the failure of plain region growing) whose intensity lies within `multiplier`
//!    deviations, and keeps the 6-connected region that holds the mask.
//!
//! Without pruning it only adds voxels. The work is on the mask's box grown by the band (and
//! the smoothing's reach), never on the whole scan.

use super::smoothed::SmoothedScan;
use super::gaussian_smooth;
use crate::shape::flood::{component_containing, fill_holes, grow_through, largest_component};
use crate::geometry::ArrayIdx;
use crate::prompts::PromptSet;
use crate::shape::GridComponent;
use crate::volume::{OnGrid, Volume};
use ndarray::{Array3, Axis, Zip, s};
use rayon::prelude::*;

/// Parameters; the defaults were chosen on the demo CT's training-side organs (never on the
/// organs held out of training) by `packaging/train_default.sh`'s sweep, see
/// `assets/models/README.md`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefineParams {
    /// Gaussian smoothing of the scan before the intensity test (mm; at least 0.8 voxel).
    pub smooth_sigma_mm: f64,
    /// Farthest a voxel may lie from the model's mask to be added (mm).
    pub band_mm: f64,
    /// Accepted intensities: median ± multiplier × robust standard deviation.
    pub multiplier: f64,
    /// The model's voxels farther than this many robust standard deviations from the median are
    /// dropped before growing (module doc); `None`: the model's mask is kept whole.
    pub prune_multiplier: Option<f64>,
    /// The statistics come from the interior within this distance of the click (mm), when it
    /// holds at least [`MIN_STATS_VOXELS`]; `None`: from the whole interior.
    pub stats_radius_mm: Option<f64>,
    /// The smallest robust standard deviation used, as a multiple of [`intensity_floor`] (0.3 %
    /// of the scan's intensity range: 14 HU on the demo CT, which spans −1207…3382 HU).
    pub floor_factor: f64,
}

/// Fewest voxels the intensity statistics are taken from before falling back to a larger set
/// (the interior near the click → the whole interior → the whole mask).
pub const MIN_STATS_VOXELS: usize = 20;

impl Default for RefineParams {
    fn default() -> Self {
        RefineParams { smooth_sigma_mm: 1.5, band_mm: 8.0, multiplier: 1.0, prune_multiplier: None, stats_radius_mm: None, floor_factor: 1.0 }
    }
}

impl RefineParams {
    /// An error when a parameter cannot mean anything (negative, NaN).
    pub fn check(&self) -> Result<(), String> {
        let ok = |x: f64| x.is_finite() && x >= 0.0;
        let opt = |x: Option<f64>| x.is_none_or(ok);
        if !(ok(self.smooth_sigma_mm) && ok(self.band_mm) && ok(self.multiplier) && opt(self.prune_multiplier) && opt(self.stats_radius_mm) && ok(self.floor_factor)) {
            return Err(format!("refinement parameters must be finite and non-negative: {self:?}"));
        }
        Ok(())
    }
}

/// The smallest robust spread the intensity test uses for `vol`: a perfectly flat organ must
/// still take its partial-volume edge (0.3 % of the intensity range, as region growing uses).
pub fn intensity_floor<T: crate::volume::Voxel>(vol: &Volume<T>) -> f64 {
    let st = vol.stats();
    if st.max.is_finite() && st.min.is_finite() { ((st.max - st.min) * 0.003).max(1e-3) } else { 1e-3 }
}

/// Median and robust standard deviation (1.4826 × median absolute deviation) of `v` (finite
/// values only); `None` when there are none.
pub fn robust_stats(v: &mut Vec<f32>) -> Option<(f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    let median = |v: &mut Vec<f32>| {
        let m = v.len() / 2;
        let (_, x, _) = v.select_nth_unstable_by(m, f32::total_cmp);
        *x as f64
    };
    let mu = median(v);
    let mut dev: Vec<f32> = v.iter().map(|x| (*x as f64 - mu).abs() as f32).collect();
    Some((mu, 1.4826 * median(&mut dev)))
}

/// The model's component `comp` (a crop of `vol`'s grid) refined by the image (module doc).
/// `click` is the click's voxel on `vol`'s grid (`None`: unknown, the whole interior gives the
/// statistics and pruning keeps the largest part). `floor` is [`intensity_floor`] of `vol`
/// (computed once per volume by the caller).
pub fn refine_component(vol: &Volume, comp: &GridComponent, p: &RefineParams, floor: f64, click: Option<ArrayIdx>) -> GridComponent {
    refine_component_within(vol, comp, p, floor, click, &PromptSet::default(), None)
}

/// [`refine_component`] that never adds a voxel `prompts` blocks (near a negative point,
/// outside the box: [`crate::prompts::PromptSet::blocks`]).
/// `smoothed`: the whole scan already smoothed ([`super::smoothed`]), read instead of smoothing
/// the box when it was smoothed with this `p`'s Gaussian (the result is the same either way).
pub fn refine_component_within(
    vol: &Volume,
    comp: &GridComponent,
    p: &RefineParams,
    floor: f64,
    click: Option<ArrayIdx>,
    prompts: &PromptSet,
    smoothed: Option<&SmoothedScan>,
) -> GridComponent {
    if comp.voxel_count == 0 || !comp.fits([vol.data.shape()[0], vol.data.shape()[1], vol.data.shape()[2]]) {
        return comp.clone();
    }
    let sp = vol.spacing();
    let sp_kji = sp.kji();
    let shape = vol.data.shape();
    let sigma_vox = super::smoothed::sigma_vox(vol, p.smooth_sigma_mm);
    let band_vox = sp_kji.map(|s| (p.band_mm / s).ceil() as usize);
    let reach = sigma_vox.map(|s| (3.0 * s).ceil() as usize);
    let d = comp.mask.dim();
    let dims = [d.0, d.1, d.2];
    // Inner box: where the result may lie; outer box: what the smoothing reads.
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    let mut olo = [0usize; 3];
    let mut ohi = [0usize; 3];
    for a in 0..3 {
        lo[a] = comp.origin_kji[a].saturating_sub(band_vox[a]);
        hi[a] = (comp.origin_kji[a] + dims[a] + band_vox[a]).min(shape[a]);
        olo[a] = lo[a].saturating_sub(reach[a]);
        ohi[a] = (hi[a] + reach[a]).min(shape[a]);
    }
    let t0 = std::time::Instant::now();
    let own;
    let inner = match smoothed.and_then(|sm| sm.window(sigma_vox, lo, hi)) {
        Some(w) => w,
        None => {
            let outer = Zip::from(vol.data.slice(s![olo[0]..ohi[0], olo[1]..ohi[1], olo[2]..ohi[2]])).par_map_collect(|&v| v);
            own = gaussian_smooth(&outer, sigma_vox);
            own.slice(s![lo[0] - olo[0]..hi[0] - olo[0], lo[1] - olo[1]..hi[1] - olo[1], lo[2] - olo[2]..hi[2] - olo[2]])
        }
    };
    let t_smooth = t0.elapsed().as_secs_f64();
    let n = [hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]];
    let off = [comp.origin_kji[0] - lo[0], comp.origin_kji[1] - lo[1], comp.origin_kji[2] - lo[2]];
    let mut model = Array3::from_elem((n[0], n[1], n[2]), false);
    Zip::from(model.slice_mut(s![off[0]..off[0] + dims[0], off[1]..off[1] + dims[1], off[2]..off[2] + dims[2]])).and(&comp.mask).par_for_each(|o, &m| *o = m);

    // The click in the working box.
    let click = click
        .and_then(|c| (c.k >= lo[0] && c.j >= lo[1] && c.i >= lo[2]).then(|| ArrayIdx { k: c.k - lo[0], j: c.j - lo[1], i: c.i - lo[2] }))
        .filter(|c| c.k < n[0] && c.j < n[1] && c.i < n[2]);

    // Intensity statistics under the interior (the mask eroded by one voxel, 6-neighbourhood),
    // near the click when asked and possible.
    let interior = interior_of(&model);
    // The values under a mask, gathered plane by plane in parallel (their order does not matter
    // to the median and the deviation).
    let pick = |m: &Array3<bool>| -> Vec<f32> {
        inner
            .axis_iter(Axis(0))
            .into_par_iter()
            .zip(m.axis_iter(Axis(0)))
            .flat_map_iter(|(v, m)| v.into_iter().zip(m).filter(|(_, m)| **m).map(|(v, _)| *v).collect::<Vec<f32>>())
            .collect()
    };
    let mut vals = Vec::new();
    if let (Some(r), Some(c)) = (p.stats_radius_mm, click) {
        let r2 = r * r;
        let near = Zip::indexed(&interior).par_map_collect(|(k, j, i), &inside| {
            let d = [(k as f64 - c.k as f64) * sp_kji[0], (j as f64 - c.j as f64) * sp_kji[1], (i as f64 - c.i as f64) * sp_kji[2]];
            inside && d[0] * d[0] + d[1] * d[1] + d[2] * d[2] <= r2
        });
        vals = pick(&near);
    }
    if vals.len() < MIN_STATS_VOXELS {
        vals = pick(&interior);
    }
    if vals.len() < MIN_STATS_VOXELS {
        vals = pick(&model);
    }
    let Some((mu, sd)) = robust_stats(&mut vals) else { return comp.clone() };
    let sd = sd.max(floor * p.floor_factor);
    let half = p.multiplier * sd;
    let (vlo, vhi) = (mu - half, mu + half);

    // Pruning: the model's voxels of the organ's intensity, the part holding the click, filled.
    if let Some(kp) = p.prune_multiplier {
        let (plo, phi) = (mu - kp * sd, mu + kp * sd);
        let mut keep = model.clone();
        Zip::from(&mut keep).and(&inner).par_for_each(|m, &v| *m = *m && (v as f64) >= plo && (v as f64) <= phi);
        let part = match click.filter(|c| keep[c.as_kji()]) {
            Some(c) => component_containing(keep.view(), c),
            None => largest_component(keep.view()),
        };
        if part.iter().any(|x| *x) {
            model = fill_holes(part.view());
        }
    }

    let t_stats = t0.elapsed().as_secs_f64();
    let band2 = (p.band_mm * p.band_mm) as f32;
    // Only whether a voxel lies within the band matters, not how far past it.
    let d2 = crate::shape::sdf::squared_edt_within(model.view(), sp, band2);
    let t_edt = t0.elapsed().as_secs_f64();
    // Candidates: outside the mask, within the band, of the organ's intensity.
    let mut added = Array3::from_elem(model.raw_dim(), false);
    Zip::from(&mut added).and(&model).and(&inner).and(&d2).par_for_each(|a, &m, &v, &d| {
        *a = !m && d <= band2 && (v as f64) >= vlo && (v as f64) <= vhi;
    });
    if let Some(blocked) = super::prompted::blocked_mask(vol, lo, n, prompts) {
        Zip::from(&mut added).and(&blocked).par_for_each(|a, &b| *a = *a && !b);
    }
    let kept = grow_through(model.view(), added.view());
    let Some((blo, bhi)) = crate::shape::sdf::bounding_box(kept.view()) else { return comp.clone() };
    let mask = kept.slice(s![blo[0]..=bhi[0], blo[1]..=bhi[1], blo[2]..=bhi[2]]).to_owned();
    let voxel_count = mask.axis_iter(Axis(0)).into_par_iter().map(|p| p.iter().filter(|m| **m).count()).sum();
    log::debug!(
        "refinement on a {}×{}×{} box: smoothing {:.3} s, statistics {:.3} s, distances {:.3} s, growing {:.3} s",
        n[0],
        n[1],
        n[2],
        t_smooth,
        t_stats - t_smooth,
        t_edt - t_stats,
        t0.elapsed().as_secs_f64() - t_edt
    );
    GridComponent { origin_kji: [lo[0] + blo[0], lo[1] + blo[1], lo[2] + blo[2]], mask, voxel_count }
}

/// `mask` eroded by one voxel along each axis (the 6-neighbourhood; voxels past the array's
/// faces count as outside): `morph` with a radius of one voxel, read row by row from the
/// neighbouring rows, parallel over planes.
fn interior_of(mask: &Array3<bool>) -> Array3<bool> {
    let (nk, nj, ni) = mask.dim();
    let mut out = Array3::from_elem((nk, nj, ni), false);
    if nk < 3 || nj < 3 || ni < 3 {
        return out;
    }
    out.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(k, mut plane)| {
        if k == 0 || k + 1 == nk {
            return;
        }
        for j in 1..nj - 1 {
            let row = |k: usize, j: usize| mask.slice(s![k, j, ..]);
            let (c, n, sth, up, dn) = (row(k, j), row(k, j - 1), row(k, j + 1), row(k - 1, j), row(k + 1, j));
            let mut o = plane.row_mut(j);
            for i in 1..ni - 1 {
                o[i] = c[i] && c[i - 1] && c[i + 1] && n[i] && sth[i] && up[i] && dn[i];
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::morph;
    use crate::data::phantom::{PhantomSpec, Rng, generate};
    use crate::geometry::RasFromVoxel;
    use crate::volume::Modality;

    /// The mask as a component (its bounding-box crop).
    fn as_component(m: &Array3<bool>) -> GridComponent {
        let (lo, hi) = crate::shape::sdf::bounding_box(m.view()).expect("non-empty");
        let mask = m.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]).to_owned();
        GridComponent { origin_kji: lo, voxel_count: mask.iter().filter(|x| **x).count(), mask }
    }

    fn full(c: &GridComponent, v: &Volume) -> Array3<bool> {
        let d = v.data.dim();
        c.to_mask([d.0, d.1, d.2])
    }

    fn dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
        let inter = a.iter().zip(b.iter()).filter(|(x, y)| **x && **y).count() as f64;
        2.0 * inter / (a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count()).max(1) as f64
    }

    /// Anisotropic grid (0.8 × 0.8 × 2 mm): a textured ball of radius 12 mm (intensity 100), a
    /// bar of the same intensity running from it along +i to the grid's edge, and a brighter
    /// (300) block touching it on the −i side. The model's mask is a 4 mm ball.
    #[test]
    fn grows_to_the_organ_along_its_intensity_never_past_the_band() {
        let (nk, nj, ni) = (24usize, 60usize, 80usize);
        let sp = [0.8, 0.8, 2.0];
        let centre = [12.0 * sp[2], 30.0 * sp[1], 30.0 * sp[0]]; // mm, [k, j, i]
        let mut rng = Rng::new(3);
        let r_of = |k: usize, j: usize, i: usize| {
            let d = [k as f64 * sp[2] - centre[0], j as f64 * sp[1] - centre[1], i as f64 * sp[0] - centre[2]];
            ((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt(), d)
        };
        let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            let (r, d) = r_of(k, j, i);
            let bar = d[2] > 0.0 && d[0].abs() <= 3.0 && d[1].abs() <= 3.0;
            let block = d[2] < -12.0 && d[2] > -30.0 && d[1].abs() <= 8.0 && d[0].abs() <= 8.0;
            let base = if r <= 12.0 || bar { 100.0 } else if block { 300.0 } else { 0.0 };
            base + 15.0 * (rng.uniform() as f32 - 0.5)
        });
        let vol = Volume::new(data, RasFromVoxel::scale_translate(sp, [-20.0, 5.0, 40.0])).expect("volume");
        let model = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| r_of(k, j, i).0 <= 4.0);
        // A floor of 5 (0.3 % of a 1700-wide intensity range, as a CT gives).
        // The multiplier of 1.5 (session 4's default) takes the ball to within 3 mm of its edge.
        let p = RefineParams { multiplier: 1.5, prune_multiplier: None, ..Default::default() };
        let out = refine_component(&vol, &as_component(&model), &p, 5.0, None);
        let got = full(&out, &vol);
        assert_eq!(out.voxel_count, got.iter().filter(|x| **x).count());
        // Only adds: the model's mask is kept whole.
        assert!(model.iter().zip(got.iter()).all(|(m, g)| !*m || *g));
        // The ball grows out to its edge, short of the last 3 mm the smoothing blurs.
        for ((k, j, i), g) in got.indexed_iter() {
            let (r, d) = r_of(k, j, i);
            if r <= 9.0 {
                assert!(*g, "voxel ({k}, {j}, {i}) at {r:.1} mm from the centre was not added");
            }
            // Never past the band, though the bar runs on with the organ's intensity.
            assert!(!*g || r <= 12.0 + 1e-6, "voxel ({k}, {j}, {i}) at {r:.1} mm is past the band");
            // The brighter neighbour is not taken.
            assert!(!*g || d[2] >= -12.0, "voxel ({k}, {j}, {i}) of the bright block was added");
        }
        let truth = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| r_of(k, j, i).0 <= 12.0);
        assert!(dice(&got, &truth) > 0.65, "dice {}", dice(&got, &truth));
        assert!(dice(&model, &truth) < 0.1);
    }

    /// A CT phantom organ whose mask is eroded by two voxels grows back toward its label (Dice
    /// 0.475 → 0.594 and 0.607 → 0.694 when written; the blurred edge stays out), and no farther
    /// than the band.
    #[test]
    fn restores_an_eroded_phantom_organ() {
        let case = generate(&PhantomSpec::small(Modality::Ct), 4);
        let vol = &case.volume;
        let sp = vol.spacing();
        for label in [1u16, 5] {
            let gt = case.labels.mask(label);
            let mut eroded = gt.clone();
            for _ in 0..2 {
                eroded = morph(&eroded, [1, 1, 1], true);
            }
            let seed = eroded.indexed_iter().find(|(_, m)| **m).map(|((k, j, i), _)| ArrayIdx { k, j, i }).expect("non-empty");
            let eroded = component_containing(eroded.view(), seed);
            let p = RefineParams::default();
            let got = full(&refine_component(vol, &as_component(&eroded), &p, intensity_floor(vol), Some(seed)), vol);
            let (before, after) = (dice(&eroded, &gt), dice(&got, &gt));
            assert!(after > before + 0.07, "label {label}: Dice {before:.3} → {after:.3}");
            let dist = crate::shape::sdf::edt(eroded.view(), sp);
            assert!(got.iter().zip(dist.iter()).all(|(g, d)| !*g || *d <= p.band_mm as f32 + 1e-4));
        }
    }

    /// Two touching organs on a 1 × 1 × 1.5 mm grid: the clicked one (a ball of radius 10 mm,
    /// intensity 100, with a bright 3 mm "vessel" of 250 inside) and a larger neighbour (radius
    /// 14 mm, intensity 160). Returns the volume, the organ, the neighbour, the vessel and the
    /// click's voxel.
    fn touching_organs() -> (Volume, Array3<bool>, Array3<bool>, Array3<bool>, ArrayIdx) {
        let (nk, nj, ni) = (30usize, 44usize, 64usize);
        let sp = [1.0, 1.0, 1.5]; // i, j, k
        let at = |k: usize, j: usize, i: usize, c: [f64; 3]| {
            let d = [k as f64 * sp[2] - c[0], j as f64 * sp[1] - c[1], i as f64 * sp[0] - c[2]];
            (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
        };
        let (oc, nc, vc) = ([22.0, 22.0, 18.0], [22.0, 22.0, 41.0], [22.0, 22.0, 14.5]);
        let organ = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| at(k, j, i, oc) <= 10.0);
        let neighbour = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| at(k, j, i, nc) <= 14.0 && at(k, j, i, oc) > 10.0);
        let vessel = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| at(k, j, i, vc) <= 3.0);
        let mut rng = Rng::new(5);
        let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            let base = if vessel[[k, j, i]] {
                250.0
            } else if organ[[k, j, i]] {
                100.0
            } else if neighbour[[k, j, i]] {
                160.0
            } else {
                0.0
            };
            base + 12.0 * (rng.uniform() as f32 - 0.5)
        });
        let vol = Volume::new(data, RasFromVoxel::scale_translate(sp, [3.0, -7.0, 11.0])).expect("volume");
        let click = ArrayIdx { k: (oc[0] / sp[2]) as usize, j: (oc[1] / sp[1]) as usize, i: ((oc[2] + 4.0) / sp[0]) as usize };
        assert!(organ[click.as_kji()] && !vessel[click.as_kji()]);
        (vol, organ, neighbour, vessel, click)
    }

    fn count(m: &Array3<bool>) -> usize {
        m.iter().filter(|x| **x).count()
    }

    /// The model took the organ and a cap of its neighbour: pruning drops the cap (all but the
    /// blurred interface) and keeps the vessel inside the organ; without pruning the cap stays.
    #[test]
    fn pruning_drops_a_neighbours_cap_and_keeps_the_organs_vessels() {
        let (vol, organ, neighbour, vessel, click) = touching_organs();
        let sp = vol.spacing();
        let from_organ = crate::shape::sdf::edt(organ.view(), sp);
        let depth = crate::shape::sdf::edt(organ.mapv(|o| !o).view(), sp);
        let cap = &neighbour & &from_organ.mapv(|d| d <= 6.0);
        let model = &(&organ & &morph(&organ, [0, 1, 1], true)) | &cap;
        assert!(count(&cap) > 500);
        let p = RefineParams { prune_multiplier: Some(3.0), stats_radius_mm: Some(6.0), ..Default::default() };
        // Without the click the statistics come from the whole interior, cap included, so they
        // are wider and a little of the cap may stay.
        for (click, allowed) in [(Some(click), 0), (None, count(&cap) / 10)] {
            let got = full(&refine_component(&vol, &as_component(&model), &p, 5.0, click), &vol);
            let deep_cap = count(&(&(&got & &cap) & &from_organ.mapv(|d| d > 1.6)));
            assert!(deep_cap <= allowed, "click {click:?}: {deep_cap} voxels of the neighbour's cap kept");
            assert_eq!(count(&(&got & &vessel)), count(&vessel), "click {click:?}: the vessel was not kept");
            // The organ's voxels deeper than its blurred edge are all kept.
            let missed = count(&(&(&organ & &depth.mapv(|d| d > 3.0)) & &got.mapv(|g| !g)));
            assert_eq!(missed, 0, "click {click:?}: {missed} of the organ's deep voxels missing");
        }
        let kept = full(&refine_component(&vol, &as_component(&model), &RefineParams { prune_multiplier: None, ..p }, 5.0, Some(click)), &vol);
        assert!(count(&(&kept & &cap)) >= count(&cap), "without pruning the model's mask is kept whole");
    }

    /// The model took the whole of a larger neighbour too: statistics near the click are the
    /// organ's, so pruning keeps the organ; statistics over the whole interior are the
    /// neighbour's, so the clicked organ would be the part dropped.
    #[test]
    fn statistics_near_the_click_pick_the_clicked_organ() {
        let (vol, organ, neighbour, _vessel, click) = touching_organs();
        let model = &organ | &neighbour;
        assert!(count(&neighbour) > 2 * count(&organ));
        let p = RefineParams { prune_multiplier: Some(3.0), stats_radius_mm: Some(6.0), ..Default::default() };
        let near = full(&refine_component(&vol, &as_component(&model), &p, 5.0, Some(click)), &vol);
        let from_organ = crate::shape::sdf::edt(organ.view(), vol.spacing());
        // Past 3 mm no blend of the organ's surroundings (air, the neighbour) looks like it.
        let outside = count(&(&near & &from_organ.mapv(|d| d > 3.0)));
        assert_eq!(outside, 0, "{outside} voxels kept beyond the organ's blurred edge");
        assert!(dice(&near, &organ) > 0.6, "Dice with the organ {}", dice(&near, &organ));
        let whole = RefineParams { stats_radius_mm: None, ..p };
        let far = full(&refine_component(&vol, &as_component(&model), &whole, 5.0, Some(click)), &vol);
        assert!(dice(&far, &organ) < 0.1, "Dice with the organ {}", dice(&far, &organ));
        assert!(dice(&far, &neighbour) > 0.6, "Dice with the neighbour {}", dice(&far, &neighbour));
    }

    /// The fill over the added voxels alone keeps what the component of the union through the
    /// mask keeps.
    #[test]
    fn additions_connected_to_the_mask_are_the_unions_component() {
        let mut rng = Rng::new(8);
        for _ in 0..5 {
            let noise = Array3::from_shape_fn((9, 11, 13), |_| rng.uniform());
            let seed = ArrayIdx { k: 4, j: 5, i: 6 };
            let mask = component_containing(noise.mapv(|x| x < 0.5).view(), seed);
            let mut mask = mask;
            mask[seed.as_kji()] = true;
            let mask = component_containing(mask.view(), seed);
            let added = Array3::from_shape_fn((9, 11, 13), |_| rng.uniform() < 0.45) & mask.mapv(|m| !m);
            let union = &mask | &added;
            assert_eq!(grow_through(mask.view(), added.view()), component_containing(union.view(), seed));
        }
    }

    /// The interior read from neighbouring rows is the erosion by a one-voxel ball, with
    /// the mask touching the array's faces.
    #[test]
    fn the_interior_is_the_erosion_by_one_voxel() {
        let mut rng = Rng::new(17);
        for p in [0.5, 0.8, 0.97] {
            let m = Array3::from_shape_fn((6, 9, 13), |_| rng.uniform() < p);
            let want = morph(&m, [1, 1, 1], true);
            assert!(want.iter().any(|x| *x) || p < 0.6);
            assert_eq!(interior_of(&m), want, "p {p}");
        }
        let full = Array3::from_elem((3, 3, 3), true);
        assert_eq!(interior_of(&full).iter().filter(|x| **x).count(), 1);
        assert!(!interior_of(&Array3::from_elem((2, 5, 5), true)).iter().any(|x| *x));
    }

    #[test]
    fn robust_statistics_ignore_nan_and_outliers() {
        let (m, s) = robust_stats(&mut vec![1.0, 2.0, 3.0, 4.0, 100.0, f32::NAN]).expect("values");
        assert_eq!(m, 3.0);
        assert!((s - 1.4826).abs() < 1e-9);
        assert!(robust_stats(&mut vec![f32::NAN]).is_none());
        assert!(RefineParams { band_mm: f64::NAN, ..Default::default() }.check().is_err());
        assert!(RefineParams::default().check().is_ok());
    }
}
