//! The whole scan smoothed once, in the background, for the refinement ([`super::refine`]).
//!
//! Every refinement smooths the scan over its working box before its intensity test; on a
//! liver that is a tenth of a second each time, and one click refines two or three boxes that
//! mostly overlap. A session smooths the whole scan once, on a thread of its own, as soon as a
//! volume is set ([`BackgroundSmoothing::start`]); a refinement reads its box from it when it is
//! ready and smooths the box itself otherwise.
//!
//! Both give the same numbers, bit for bit: [`super::gaussian_smooth`] repeats the border value
//! at the array's faces, and the refinement's box reads the scan `3σ` past where it needs
//! values (or up to the scan's own faces), so the values inside the box never depend on where
//! the crop's faces lie. `tests` checks this on boxes that touch the scan's faces.
//!
//! The copy is a second `f32` array the size of the scan; scans of more than
//! [`MAX_SMOOTHED_VOXELS`] are not copied (their refinements smooth their boxes as before).

use super::gaussian_smooth;
use crate::volume::{OnGrid, Volume};
use ndarray::{Array3, ArrayView3, s};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Largest scan smoothed whole: 2²⁷ voxels (a 512 × 512 × 512 CT), 512 MB as `f32`.
pub const MAX_SMOOTHED_VOXELS: usize = 1 << 27;

/// Per-axis sigma in voxels (`[k, j, i]`) of a Gaussian of `sigma_mm` on `vol`'s grid, never
/// below 0.8 voxel (the refinement's rule).
pub fn sigma_vox<T: crate::volume::Voxel>(vol: &Volume<T>, sigma_mm: f64) -> [f64; 3] {
    vol.spacing().kji().map(|s| (sigma_mm / s).max(0.8))
}

/// A scan smoothed whole with one Gaussian.
#[derive(Debug)]
pub struct SmoothedScan {
    sigma_vox_kji: [f64; 3],
    data: Array3<f32>,
}

impl SmoothedScan {
    /// `vol` smoothed with per-axis sigma `sigma_vox_kji` (voxels, `[k, j, i]`).
    pub fn new(vol: &Volume, sigma_vox_kji: [f64; 3]) -> Self {
        SmoothedScan { sigma_vox_kji, data: gaussian_smooth(&vol.data, sigma_vox_kji) }
    }

    /// The smoothed values of the box `lo..hi` (`[k, j, i]`, exclusive ends) when this scan
    /// was smoothed with `sigma_vox_kji` and holds the box; `None` otherwise.
    pub fn window(&self, sigma_vox_kji: [f64; 3], lo: [usize; 3], hi: [usize; 3]) -> Option<ArrayView3<'_, f32>> {
        let sh = self.data.shape();
        let fits = (0..3).all(|a| lo[a] <= hi[a] && hi[a] <= sh[a]);
        (self.sigma_vox_kji == sigma_vox_kji && fits).then(|| self.data.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]))
    }
}

/// A [`SmoothedScan`] being made on a thread of its own. Dropping it before it is done lets the
/// thread finish and throw the result away (the volume is shared, never copied for it).
#[derive(Debug)]
pub struct BackgroundSmoothing {
    done: Arc<OnceLock<SmoothedScan>>,
    dropped: Arc<AtomicBool>,
    sigma_mm: f64,
}

impl BackgroundSmoothing {
    /// Starts smoothing `vol` with a Gaussian of `sigma_mm`; `None` when the scan is larger than
    /// [`MAX_SMOOTHED_VOXELS`] or the thread cannot start.
    pub fn start(vol: Arc<Volume>, sigma_mm: f64) -> Option<Self> {
        if vol.data.len() > MAX_SMOOTHED_VOXELS || !(sigma_mm.is_finite() && sigma_mm >= 0.0) {
            return None;
        }
        let done = Arc::new(OnceLock::new());
        let dropped = Arc::new(AtomicBool::new(false));
        let (d, gone) = (done.clone(), dropped.clone());
        std::thread::Builder::new()
            .name("sam3d-smoothing".into())
            .spawn(move || {
                if gone.load(Ordering::Relaxed) {
                    return;
                }
                let t = std::time::Instant::now();
                let scan = SmoothedScan::new(&vol, sigma_vox(&vol, sigma_mm));
                log::debug!("the scan smoothed whole ({} voxels) in {:.3} s", vol.data.len(), t.elapsed().as_secs_f64());
                if !gone.load(Ordering::Relaxed) {
                    let _ = d.set(scan);
                }
            })
            .ok()?;
        Some(BackgroundSmoothing { done, dropped, sigma_mm })
    }

    /// The smoothed scan, when the thread has finished.
    pub fn ready(&self) -> Option<&SmoothedScan> {
        self.done.get()
    }

    /// Blocks until the scan is smoothed (tests and benchmarks that want the warm path);
    /// `None` only if the thread died.
    pub fn wait(&self) -> Option<&SmoothedScan> {
        while self.done.get().is_none() {
            if Arc::strong_count(&self.done) == 1 {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        self.done.get()
    }

    /// The Gaussian's sigma (mm).
    pub fn sigma_mm(&self) -> f64 {
        self.sigma_mm
    }
}

impl Drop for BackgroundSmoothing {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::refine::{RefineParams, refine_component, refine_component_within};
    use crate::data::phantom::Rng;
    use crate::geometry::{ArrayIdx, RasFromVoxel};
    use crate::prompts::PromptSet;
    use crate::shape::GridComponent;

    /// A textured scan on an anisotropic, sheared grid: a bright blob by the low-k, low-j
    /// corner (so the refinement's box meets the scan's faces on three sides) and noise.
    fn scan() -> Volume {
        let (nk, nj, ni) = (20usize, 40usize, 36usize);
        let mut rng = Rng::new(11);
        let data = Array3::from_shape_fn((nk, nj, ni), |(k, j, i)| {
            let d2 = (k as f64 * 2.5 - 6.0).powi(2) + (j as f64 * 0.7 - 5.0).powi(2) + (i as f64 * 0.9 - 12.0).powi(2);
            (if d2 < 100.0 { 120.0 } else { 10.0 }) + 30.0 * rng.uniform() as f32
        });
        let m = nalgebra::Matrix4::new(0.9, 0.1, 0.0, -3.0, 0.0, -0.7, 0.2, 8.0, 0.05, 0.0, 2.5, 40.0, 0.0, 0.0, 0.0, 1.0);
        Volume::new(data, RasFromVoxel::from_matrix(m).expect("affine")).expect("volume")
    }

    fn seed(vol: &Volume) -> GridComponent {
        let mask = Array3::from_shape_fn((3, 6, 5), |_| true);
        let c = GridComponent { origin_kji: [1, 4, 10], voxel_count: mask.len(), mask };
        assert!(c.fits([vol.data.shape()[0], vol.data.shape()[1], vol.data.shape()[2]]));
        c
    }

    #[test]
    fn a_refinement_reading_the_smoothed_scan_equals_one_smoothing_its_box() {
        let vol = scan();
        let comp = seed(&vol);
        let click = Some(ArrayIdx { k: 2, j: 6, i: 12 });
        for p in [RefineParams::default(), RefineParams { smooth_sigma_mm: 2.4, band_mm: 20.0, ..Default::default() }] {
            let own = refine_component(&vol, &comp, &p, 1.0, click);
            let whole = SmoothedScan::new(&vol, sigma_vox(&vol, p.smooth_sigma_mm));
            let read = refine_component_within(&vol, &comp, &p, 1.0, click, &PromptSet::default(), Some(&whole));
            assert_eq!(own.origin_kji, read.origin_kji);
            assert_eq!(own.mask, read.mask);
            // The refinement grew past the seed: the comparison covers the band, not the seed.
            assert!(own.voxel_count > 2 * comp.voxel_count, "{} voxels", own.voxel_count);
        }
    }

    #[test]
    fn another_gaussian_or_a_box_past_the_scan_is_not_read() {
        let vol = scan();
        let whole = SmoothedScan::new(&vol, sigma_vox(&vol, 1.5));
        let sv = sigma_vox(&vol, 1.5);
        let w = whole.window(sv, [1, 2, 3], [4, 6, 8]).expect("inside");
        assert_eq!(w.shape(), &[3, 4, 5]);
        assert!(whole.window(sigma_vox(&vol, 2.0), [1, 2, 3], [4, 6, 8]).is_none());
        assert!(whole.window(sv, [1, 2, 3], [4, 41, 8]).is_none());
        // The background copy arrives and equals the one made here.
        let bg = BackgroundSmoothing::start(Arc::new(vol), 1.5).expect("started");
        assert_eq!(bg.wait().expect("smoothed").data, whole.data);
    }
}
