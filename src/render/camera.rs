//! Orbit camera for the 3D view: a turntable around a target point in RAS mm, S kept up.
//!
//! The camera sits on a sphere of radius `distance_mm` around `target_ras` at azimuth `yaw` and
//! elevation `pitch`. Its orientation is derived from (yaw, pitch) alone, never from a fixed
//! "up" vector, so the superior and inferior views (pitch = ±90°) are well defined.
//!
//! Frames, all right-handed:
//! - world = RAS+ mm (x → patient right, y → anterior, z → superior);
//! - camera: x → screen right, y → screen up, z → towards the viewer (out of the screen);
//! - clip: wgpu's convention (x, y in [-1, 1] with y up, depth in [0, 1]).
//!
//! yaw = 0, pitch = 0 is the anterior view (camera in front of the patient, S up, patient left
//! on screen right); yaw = +90° puts the camera on the patient's right.

use nalgebra::{Matrix4, Vector3};
use serde::{Deserialize, Serialize};

/// Vertical field of view of the perspective projection, degrees.
pub const FOV_Y_DEG: f64 = 30.0;

/// Breathing room around a fitted box (1 = corners touch the viewport's edge).
pub const FIT_MARGIN: f64 = 1.1;

/// Closest the camera may come to its target, mm.
const MIN_DISTANCE_MM: f64 = 1.0;
/// Farthest the camera may go from its target, mm (a whole-body CT is ~2 m).
const MAX_DISTANCE_MM: f64 = 20_000.0;

/// The six anatomical views a radiologist names a 3D view by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewPreset {
    /// From the front (camera at +A), S up, patient left on screen right.
    Anterior,
    /// From behind (camera at −A / P), S up, patient right on screen right.
    Posterior,
    /// From the patient's left side (camera at −R / L), S up, posterior on screen right.
    Left,
    /// From the patient's right side (camera at +R), S up, anterior on screen right.
    Right,
    /// From above the head (camera at +S), anterior up, patient right on screen right.
    Superior,
    /// From below the feet (camera at −S), anterior up, patient left on screen right
    /// (the radiological axial convention).
    Inferior,
}

impl ViewPreset {
    pub const ALL: [ViewPreset; 6] = [
        ViewPreset::Anterior,
        ViewPreset::Posterior,
        ViewPreset::Left,
        ViewPreset::Right,
        ViewPreset::Superior,
        ViewPreset::Inferior,
    ];

    /// One-letter name, as on the 3D view's buttons.
    pub fn letter(self) -> &'static str {
        match self {
            ViewPreset::Anterior => "A",
            ViewPreset::Posterior => "P",
            ViewPreset::Left => "L",
            ViewPreset::Right => "R",
            ViewPreset::Superior => "S",
            ViewPreset::Inferior => "I",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ViewPreset::Anterior => "anterior",
            ViewPreset::Posterior => "posterior",
            ViewPreset::Left => "left",
            ViewPreset::Right => "right",
            ViewPreset::Superior => "superior",
            ViewPreset::Inferior => "inferior",
        }
    }

    /// (yaw, pitch) in radians giving this view.
    fn yaw_pitch(self) -> (f64, f64) {
        use std::f64::consts::{FRAC_PI_2, PI};
        match self {
            ViewPreset::Anterior => (0.0, 0.0),
            ViewPreset::Posterior => (PI, 0.0),
            ViewPreset::Left => (-FRAC_PI_2, 0.0),
            ViewPreset::Right => (FRAC_PI_2, 0.0),
            ViewPreset::Superior => (PI, FRAC_PI_2),
            ViewPreset::Inferior => (0.0, -FRAC_PI_2),
        }
    }
}

/// An axis-aligned box in RAS mm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoundsRas {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

impl BoundsRas {
    /// The smallest box holding every point; `None` for no (finite) points.
    pub fn from_points<'a>(points: impl IntoIterator<Item = &'a [f32; 3]>) -> Option<Self> {
        let mut b: Option<Self> = None;
        for p in points {
            if !p.iter().all(|c| c.is_finite()) {
                continue;
            }
            let q = p.map(f64::from);
            b = Some(match b {
                None => Self { min: q, max: q },
                Some(b) => b.union(&Self { min: q, max: q }),
            });
        }
        b
    }

    pub fn union(&self, other: &Self) -> Self {
        let mut out = *self;
        for a in 0..3 {
            out.min[a] = out.min[a].min(other.min[a]);
            out.max[a] = out.max[a].max(other.max[a]);
        }
        out
    }

    pub fn centre(&self) -> [f64; 3] {
        [0, 1, 2].map(|a| 0.5 * (self.min[a] + self.max[a]))
    }

    /// Half the diagonal: the radius of the sphere around [`Self::centre`] holding the box.
    pub fn radius(&self) -> f64 {
        let d: f64 = (0..3).map(|a| (self.max[a] - self.min[a]).powi(2)).sum();
        0.5 * d.sqrt()
    }

    /// The eight corners.
    pub fn corners(&self) -> [[f64; 3]; 8] {
        let (lo, hi) = (self.min, self.max);
        std::array::from_fn(|n| {
            [
                if n & 1 == 0 { lo[0] } else { hi[0] },
                if n & 2 == 0 { lo[1] } else { hi[1] },
                if n & 4 == 0 { lo[2] } else { hi[2] },
            ]
        })
    }
}

/// Turntable orbit camera (see the module docs for its frames). Plain data, persisted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OrbitCamera {
    /// The point orbited around, RAS mm.
    pub target_ras: [f64; 3],
    /// Camera-to-target distance, mm.
    pub distance_mm: f64,
    /// Azimuth around the S axis, radians (0 = anterior view, +π/2 = right view).
    pub yaw: f64,
    /// Elevation, radians, in [−π/2, π/2] (+π/2 = looking down from superior).
    pub pitch: f64,
}

impl Default for OrbitCamera {
    fn default() -> Self {
        Self { target_ras: [0.0; 3], distance_mm: 500.0, yaw: 0.0, pitch: 0.0 }
    }
}

/// Camera axes in world (RAS) coordinates.
#[derive(Clone, Copy, Debug)]
pub struct CameraBasis {
    /// Screen right.
    pub right: Vector3<f64>,
    /// Screen up.
    pub up: Vector3<f64>,
    /// From the target towards the eye (out of the screen).
    pub back: Vector3<f64>,
}

impl OrbitCamera {
    /// Camera axes for the current yaw and pitch.
    pub fn basis(&self) -> CameraBasis {
        let (sy, cy) = self.yaw.sin_cos();
        let (sp, cp) = self.pitch.sin_cos();
        let back = Vector3::new(cp * sy, cp * cy, sp);
        let right = Vector3::new(-cy, sy, 0.0);
        let up = back.cross(&right);
        CameraBasis { right, up, back }
    }

    /// Eye position, RAS mm.
    pub fn eye_ras(&self) -> [f64; 3] {
        let b = self.basis();
        let t = Vector3::from(self.target_ras);
        (t + b.back * self.distance_mm).into()
    }

    /// Turns to one of the anatomical views, keeping target and distance.
    pub fn set_preset(&mut self, preset: ViewPreset) {
        (self.yaw, self.pitch) = preset.yaw_pitch();
    }

    /// Rotates by `d_yaw` around S and `d_pitch` in elevation (radians); elevation is clamped
    /// to ±90° so S never turns upside down. Target and distance are unchanged.
    pub fn orbit(&mut self, d_yaw: f64, d_pitch: f64) {
        use std::f64::consts::{FRAC_PI_2, TAU};
        if !(d_yaw.is_finite() && d_pitch.is_finite()) {
            return;
        }
        self.yaw = (self.yaw + d_yaw).rem_euclid(TAU);
        self.pitch = (self.pitch + d_pitch).clamp(-FRAC_PI_2, FRAC_PI_2);
    }

    /// Moves the target (and the eye with it) by `dx_px`, `dy_px` screen pixels (y down) for a
    /// viewport `height_px` tall, so the point under the cursor follows the cursor at the
    /// target's depth.
    pub fn pan_px(&mut self, dx_px: f64, dy_px: f64, height_px: f64) {
        if !(dx_px.is_finite() && dy_px.is_finite()) || height_px <= 0.0 {
            return;
        }
        let mm_per_px = 2.0 * self.distance_mm * (0.5 * FOV_Y_DEG.to_radians()).tan() / height_px;
        let b = self.basis();
        let shift = (-b.right * dx_px + b.up * dy_px) * mm_per_px;
        self.target_ras = (Vector3::from(self.target_ras) + shift).into();
    }

    /// Multiplies the distance by `factor` (< 1 moves closer), clamped to a sane range.
    pub fn zoom(&mut self, factor: f64) {
        if factor.is_finite() && factor > 0.0 {
            self.distance_mm = (self.distance_mm * factor).clamp(MIN_DISTANCE_MM, MAX_DISTANCE_MM);
        }
    }

    /// Centres on `bounds` and backs off, keeping the viewing direction, until the box's
    /// corners fill the viewport of `aspect` = width / height up to [`FIT_MARGIN`]: the corner
    /// that limits the fit lands at 1 / FIT_MARGIN of the way from the centre to the edge.
    pub fn fit(&mut self, bounds: &BoundsRas, aspect: f64) {
        let aspect = if aspect.is_finite() && aspect > 0.0 { aspect } else { 1.0 };
        let tan_y = (0.5 * FOV_Y_DEG.to_radians()).tan() / FIT_MARGIN;
        let tan_x = tan_y * aspect;
        let b = self.basis();
        let centre = Vector3::from(bounds.centre());
        self.target_ras = bounds.centre();
        // A corner at camera-frame offset (x, y, z) from the centre (z towards the eye) is
        // inside the frustum when |x| ≤ tan_x · (d − z) and |y| ≤ tan_y · (d − z).
        let needed = bounds
            .corners()
            .iter()
            .map(|c| {
                let o = Vector3::from(*c) - centre;
                let (x, y, z) = (o.dot(&b.right), o.dot(&b.up), o.dot(&b.back));
                (z + x.abs() / tan_x).max(z + y.abs() / tan_y)
            })
            .fold(0.0f64, f64::max);
        // Never closer than just outside the box.
        let outside = bounds.radius() * 1.05;
        self.distance_mm = needed.max(outside).clamp(MIN_DISTANCE_MM, MAX_DISTANCE_MM);
    }

    /// Near and far clip distances for a scene of `bounds` (if any).
    fn clip_range(&self, bounds: Option<&BoundsRas>) -> (f64, f64) {
        let (centre, radius) = match bounds {
            Some(b) => (Vector3::from(b.centre()), b.radius().max(1.0)),
            None => (Vector3::from(self.target_ras), self.distance_mm),
        };
        let eye = Vector3::from(self.eye_ras());
        let depth_of_centre = (eye - centre).dot(&self.basis().back);
        let far = (depth_of_centre + 1.5 * radius).max(self.distance_mm + radius).max(1.0);
        let near = (depth_of_centre - 1.5 * radius).max(far * 1e-4).max(0.01);
        (near, far)
    }

    /// World (RAS mm) → camera: rows are the camera axes, the eye maps to the origin.
    pub fn view_from_world(&self) -> Matrix4<f64> {
        let b = self.basis();
        let eye = Vector3::from(self.eye_ras());
        let (r, u, k) = (b.right, b.up, b.back);
        #[rustfmt::skip]
        let m = Matrix4::new(
            r.x, r.y, r.z, -r.dot(&eye),
            u.x, u.y, u.z, -u.dot(&eye),
            k.x, k.y, k.z, -k.dot(&eye),
            0.0, 0.0, 0.0, 1.0,
        );
        m
    }

    /// Camera → clip (wgpu conventions: depth 0 at near, 1 at far).
    pub fn clip_from_view(&self, aspect: f64, bounds: Option<&BoundsRas>) -> Matrix4<f64> {
        let (near, far) = self.clip_range(bounds);
        perspective_wgpu(FOV_Y_DEG.to_radians(), aspect, near, far)
    }

    /// World (RAS mm) → clip, for a viewport of `aspect` = width / height.
    pub fn clip_from_world(&self, aspect: f64, bounds: Option<&BoundsRas>) -> Matrix4<f64> {
        self.clip_from_view(aspect, bounds) * self.view_from_world()
    }
}

/// Right-handed perspective projection onto wgpu's clip space (depth in [0, 1]).
fn perspective_wgpu(fov_y: f64, aspect: f64, near: f64, far: f64) -> Matrix4<f64> {
    let aspect = if aspect.is_finite() && aspect > 0.0 { aspect } else { 1.0 };
    let f = 1.0 / (0.5 * fov_y).tan();
    let range = near - far;
    #[rustfmt::skip]
    let m = Matrix4::new(
        f / aspect, 0.0, 0.0, 0.0,
        0.0, f, 0.0, 0.0,
        0.0, 0.0, far / range, near * far / range,
        0.0, 0.0, -1.0, 0.0,
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::Vector4;

    fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
        (Vector3::from(a) - Vector3::from(b)).norm()
    }

    fn project(m: &Matrix4<f64>, p: [f64; 3]) -> [f64; 3] {
        let c = m * Vector4::new(p[0], p[1], p[2], 1.0);
        [c.x / c.w, c.y / c.w, c.z / c.w]
    }

    fn approx(a: Vector3<f64>, b: [f64; 3]) -> bool {
        (a - Vector3::from(b)).norm() < 1e-9
    }

    #[test]
    fn orbit_keeps_distance_and_target() {
        let mut cam = OrbitCamera { target_ras: [10.0, -20.0, 30.0], distance_mm: 250.0, ..Default::default() };
        for (dy, dp) in [(0.3, 0.2), (-1.7, 0.9), (2.5, -3.0), (0.01, 5.0)] {
            cam.orbit(dy, dp);
            assert!((dist(cam.eye_ras(), cam.target_ras) - 250.0).abs() < 1e-9);
            assert_eq!(cam.target_ras, [10.0, -20.0, 30.0]);
            assert!(cam.pitch.abs() <= std::f64::consts::FRAC_PI_2 + 1e-12);
        }
        // The target is always at the centre of the screen.
        let m = cam.clip_from_world(1.5, None);
        let c = project(&m, cam.target_ras);
        assert!(c[0].abs() < 1e-9 && c[1].abs() < 1e-9 && (0.0..1.0).contains(&c[2]));
    }

    #[test]
    fn basis_is_orthonormal_and_right_handed() {
        let mut cam = OrbitCamera::default();
        for _ in 0..20 {
            cam.orbit(0.7, 0.31);
            let b = cam.basis();
            assert!((b.right.norm() - 1.0).abs() < 1e-12 && (b.up.norm() - 1.0).abs() < 1e-12);
            assert!(b.right.dot(&b.up).abs() < 1e-12 && b.right.dot(&b.back).abs() < 1e-12);
            assert!((b.right.cross(&b.up) - b.back).norm() < 1e-12);
        }
    }

    #[test]
    fn presets_point_where_they_say() {
        // (preset, eye direction from target, screen up, screen right)
        let cases = [
            (ViewPreset::Anterior, [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, 0.0, 0.0]),
            (ViewPreset::Posterior, [0.0, -1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]),
            (ViewPreset::Left, [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]),
            (ViewPreset::Right, [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]),
            (ViewPreset::Superior, [0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]),
            (ViewPreset::Inferior, [0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]),
        ];
        for (preset, back, up, right) in cases {
            let mut cam = OrbitCamera { target_ras: [5.0, 6.0, 7.0], distance_mm: 100.0, yaw: 1.0, pitch: 0.4 };
            cam.set_preset(preset);
            let b = cam.basis();
            assert!(approx(b.back, back), "{preset:?} back {:?}", b.back);
            assert!(approx(b.up, up), "{preset:?} up {:?}", b.up);
            assert!(approx(b.right, right), "{preset:?} right {:?}", b.right);
            // And the projection agrees: a point 10 mm along `right` lands right of centre,
            // one along `up` above it.
            let m = cam.clip_from_world(1.0, None);
            let t = Vector3::from(cam.target_ras);
            let pr = project(&m, (t + Vector3::from(right) * 10.0).into());
            let pu = project(&m, (t + Vector3::from(up) * 10.0).into());
            assert!(pr[0] > 0.05 && pr[1].abs() < 1e-9, "{preset:?} right → {pr:?}");
            assert!(pu[1] > 0.05 && pu[0].abs() < 1e-9, "{preset:?} up → {pu:?}");
        }
    }

    #[test]
    fn anterior_view_shows_patient_left_on_screen_right() {
        let mut cam = OrbitCamera::default();
        cam.set_preset(ViewPreset::Anterior);
        let m = cam.clip_from_world(1.0, None);
        let patient_left = project(&m, [-50.0, 0.0, 0.0]);
        assert!(patient_left[0] > 0.0);
    }

    #[test]
    fn fit_frames_a_known_box() {
        let bounds = BoundsRas { min: [-100.0, 20.0, -30.0], max: [60.0, 80.0, 50.0] };
        for aspect in [0.5, 1.0, 2.0] {
            for preset in ViewPreset::ALL {
                let mut cam = OrbitCamera { target_ras: [999.0, 0.0, 0.0], distance_mm: 3.0, yaw: 0.0, pitch: 0.0 };
                cam.set_preset(preset);
                cam.fit(&bounds, aspect);
                assert_eq!(cam.target_ras, [-20.0, 50.0, 10.0]);
                let m = cam.clip_from_world(aspect, Some(&bounds));
                let mut max_extent: f64 = 0.0;
                for c in bounds.corners() {
                    let p = project(&m, c);
                    assert!(p[0].abs() <= 1.0 && p[1].abs() <= 1.0, "{preset:?} {aspect}: {c:?} → {p:?}");
                    assert!(p[2] > 0.0 && p[2] < 1.0, "{preset:?} depth {p:?}");
                    max_extent = max_extent.max(p[0].abs()).max(p[1].abs());
                }
                // The limiting corner sits exactly at 1 / FIT_MARGIN of the half-viewport.
                assert!((max_extent - 1.0 / FIT_MARGIN).abs() < 1e-9, "{preset:?} {aspect}: extent {max_extent}");
            }
        }
        // A cube seen face-on (anterior) in a square viewport: the front face's corners limit
        // the fit, at distance d from the eye with d − half = half / tan(fov/2) · FIT_MARGIN.
        let cube = BoundsRas { min: [-10.0; 3], max: [10.0; 3] };
        let mut cam = OrbitCamera::default();
        cam.fit(&cube, 1.0);
        let expected = 10.0 + 10.0 * FIT_MARGIN / (0.5 * FOV_Y_DEG.to_radians()).tan();
        assert!((cam.distance_mm - expected).abs() < 1e-9, "{} vs {expected}", cam.distance_mm);
    }

    #[test]
    fn pan_moves_target_in_screen_plane_and_follows_cursor() {
        let mut cam = OrbitCamera { target_ras: [0.0; 3], distance_mm: 200.0, yaw: 0.3, pitch: 0.2 };
        let before = cam;
        let height_px = 400.0;
        cam.pan_px(40.0, -25.0, height_px);
        let shift = Vector3::from(cam.target_ras) - Vector3::from(before.target_ras);
        assert!(shift.dot(&before.basis().back).abs() < 1e-9);
        // The world point that was at the centre moves by the drag on screen.
        let m = cam.clip_from_world(1.0, None);
        let p = project(&m, before.target_ras);
        let (dx_px, dy_px) = (p[0] * 0.5 * height_px, -p[1] * 0.5 * height_px);
        assert!((dx_px - 40.0).abs() < 1e-6 && (dy_px + 25.0).abs() < 1e-6, "{dx_px} {dy_px}");
        assert_eq!(cam.distance_mm, 200.0);
    }

    #[test]
    fn zoom_scales_distance_and_ignores_nonsense() {
        let mut cam = OrbitCamera { distance_mm: 100.0, ..Default::default() };
        cam.zoom(0.5);
        assert_eq!(cam.distance_mm, 50.0);
        cam.zoom(f64::NAN);
        cam.zoom(-2.0);
        cam.zoom(0.0);
        assert_eq!(cam.distance_mm, 50.0);
        cam.zoom(1e-9);
        assert_eq!(cam.distance_mm, MIN_DISTANCE_MM);
    }
}
