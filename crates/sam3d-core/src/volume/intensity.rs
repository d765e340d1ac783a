//! Intensity handling: CT Hounsfield clipping and window/level, MR z-score, display presets.

use super::Stats;

/// A display window: `level` (centre) and `width`, in the volume's units.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub level: f32,
    pub width: f32,
}

impl Window {
    pub const fn new(width: f32, level: f32) -> Self {
        Self { level, width }
    }
    pub fn low(&self) -> f32 {
        self.level - self.width / 2.0
    }
    pub fn high(&self) -> f32 {
        self.level + self.width / 2.0
    }
    /// Maps an intensity to 0..=1 (clamped).
    #[inline]
    pub fn apply(&self, x: f32) -> f32 {
        let w = self.width.max(1e-6);
        ((x - self.low()) / w).clamp(0.0, 1.0)
    }
    /// Maps to an 8-bit grey value.
    #[inline]
    pub fn to_u8(&self, x: f32) -> u8 {
        (self.apply(x) * 255.0 + 0.5) as u8
    }
}

/// Named CT presets (width/level in HU), as radiology workstations offer them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Preset {
    Abdomen,
    Lung,
    Bone,
    Brain,
}

impl Preset {
    pub const ALL: [Preset; 4] = [Preset::Abdomen, Preset::Lung, Preset::Bone, Preset::Brain];
    pub fn window(&self) -> Window {
        match self {
            Preset::Abdomen => Window::new(400.0, 40.0),
            Preset::Lung => Window::new(1500.0, -600.0),
            Preset::Bone => Window::new(1800.0, 400.0),
            Preset::Brain => Window::new(80.0, 40.0),
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Preset::Abdomen => "Abdomen",
            Preset::Lung => "Lung",
            Preset::Bone => "Bone",
            Preset::Brain => "Brain",
        }
    }
}

/// Value at quantile `q` (0..=1) of the finite values, by a 4096-bin histogram between min and
/// max refined within the bin (good to a fraction of a bin; fast on large volumes).
pub fn percentile<T: super::Voxel>(values: &[T], stats: &Stats, q: f64) -> f32 {
    let (lo, hi) = (stats.min as f32, stats.max as f32);
    // Also true when either bound is NaN.
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return lo;
    }
    const BINS: usize = 4096;
    let scale = BINS as f32 / (hi - lo);
    let mut hist = vec![0usize; BINS];
    let mut n = 0usize;
    for x in values.iter().map(|x| x.to_f32()) {
        if x.is_finite() {
            let b = (((x - lo) * scale) as usize).min(BINS - 1);
            hist[b] += 1;
            n += 1;
        }
    }
    let target = (q.clamp(0.0, 1.0) * n as f64) as usize;
    let mut acc = 0;
    for (b, &c) in hist.iter().enumerate() {
        if acc + c > target {
            let frac = if c > 0 { (target - acc) as f32 / c as f32 } else { 0.0 };
            return lo + (b as f32 + frac) / scale;
        }
        acc += c;
    }
    hi
}

/// MR auto-window: from the 1st to the 99th percentile.
pub fn auto_window<T: super::Voxel>(values: &[T], stats: &Stats) -> Window {
    let a = percentile(values, stats, 0.01);
    let b = percentile(values, stats, 0.99);
    Window { level: (a + b) / 2.0, width: (b - a).max(1e-3) }
}

/// CT normalisation: clip to `[lo, hi]` HU and map to 0..=1.
pub fn ct_normalise(values: &mut [f32], lo: f32, hi: f32) {
    let w = (hi - lo).max(1e-6);
    for x in values.iter_mut() {
        *x = if x.is_nan() { 0.0 } else { (x.clamp(lo, hi) - lo) / w };
    }
}

/// Mean and standard deviation of the finite values where `mask` is true (or everywhere).
pub fn mean_std(values: &[f32], mask: Option<&[bool]>) -> (f64, f64) {
    let (mut n, mut s, mut s2) = (0usize, 0f64, 0f64);
    for (idx, &x) in values.iter().enumerate() {
        if !x.is_finite() || mask.is_some_and(|m| !m[idx]) {
            continue;
        }
        n += 1;
        s += x as f64;
        s2 += (x as f64) * (x as f64);
    }
    if n == 0 {
        return (0.0, 1.0);
    }
    let mean = s / n as f64;
    let var = (s2 / n as f64 - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// MR z-score normalisation, statistics from the foreground `mask` when given.
/// A constant image maps to zeros (no division by zero).
pub fn z_score(values: &mut [f32], mask: Option<&[bool]>) {
    let (mean, std) = mean_std(values, mask);
    let std = if std > 1e-12 { std } else { 1.0 };
    for x in values.iter_mut() {
        *x = if x.is_finite() { ((*x as f64 - mean) / std) as f32 } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::stats_of;

    #[test]
    fn window_maps_ends() {
        let w = Preset::Abdomen.window();
        assert_eq!((w.low(), w.high()), (-160.0, 240.0));
        assert_eq!(w.apply(-1000.0), 0.0);
        assert_eq!(w.apply(40.0), 0.5);
        assert_eq!(w.to_u8(240.0), 255);
    }

    #[test]
    fn z_score_with_and_without_mask() {
        let mut v = vec![0.0, 0.0, 10.0, 20.0, 30.0];
        let mask = [false, false, true, true, true];
        let mut w = v.clone();
        z_score(&mut v, Some(&mask));
        assert!((v[3]).abs() < 1e-6, "foreground mean maps to 0: {v:?}");
        assert!((v[4] - 1.224_744_9).abs() < 1e-5);
        z_score(&mut w, None);
        let (m, s) = mean_std(&w, None);
        assert!(m.abs() < 1e-6 && (s - 1.0).abs() < 1e-5);
        let mut c = vec![5.0; 4];
        z_score(&mut c, None);
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn percentiles_of_a_uniform_ramp() {
        let v: Vec<f32> = (0..10001).map(|x| x as f32).collect();
        let s = stats_of(&v);
        assert!((percentile(&v, &s, 0.5) - 5000.0).abs() < 5.0);
        let w = auto_window(&v, &s);
        assert!((w.low() - 100.0).abs() < 5.0 && (w.high() - 9900.0).abs() < 5.0, "{w:?}");
    }
}
