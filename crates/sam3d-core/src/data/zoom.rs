//! Scale that follows the object (issue 22; nnInteractive's AutoZoom does this with its patch):
//! the model sees a 64-pixel slice at 3 mm and a 192 mm output cube at 4 mm cells, so a 1 ml
//! nodule (6 mm across) covers two pixels and two cells. A small object is instead seen in the
//! world magnified about the click by [`zoom_for_radius`] of its radius: at the largest zoom,
//! [`ZOOM_MAX`], the slice's pixels are 0.75 mm and the cube's cells 1 mm. The engine takes the
//! radius from the click's own pass (the equivalent radius of its shape) and keeps the
//! magnified pass only when its object stays clear of the cube's faces ([`reaches_faces`]);
//! training magnifies a sample by the reference's radius on the clicked slice
//! ([`label_radius_on_slice_mm`]), so one set of weights learns the scales it is asked at.

use super::click::{ClickParams, slice_ras_from_pixel};
use crate::geometry::{Point3, RasMm, ViewPlane};
use crate::volume::{LabelMap, OnGrid};
use ndarray::Array2;

/// The radius (mm) an object is magnified to: objects smaller than this on the clicked slice
/// are zoomed, larger ones are seen as they are.
pub const ZOOM_TARGET_MM: f64 = 24.0;
/// The largest magnification.
pub const ZOOM_MAX: f64 = 4.0;
/// Zooms below this are not worth a second 2D pass: the object is seen as it is.
pub const ZOOM_MIN: f64 = 1.25;

/// The radius (mm) of a ball of `ml` millilitres: an object's equivalent radius.
pub fn ball_radius_mm(ml: f64) -> f64 {
    (3.0 * ml * 1000.0 / (4.0 * std::f64::consts::PI)).cbrt()
}

/// The magnification for an object of radius `r_mm` on the clicked slice: `ZOOM_TARGET_MM / r`,
/// within `1 ..= ZOOM_MAX`; 1 for an empty or unknown radius and when under [`ZOOM_MIN`].
pub fn zoom_for_radius(r_mm: f64) -> f64 {
    if !(r_mm.is_finite() && r_mm > 0.0) {
        return 1.0;
    }
    let z = (ZOOM_TARGET_MM / r_mm).clamp(1.0, ZOOM_MAX);
    if z < ZOOM_MIN { 1.0 } else { z }
}

/// How near a face of the output cube (cells) the inside of a magnified pass may come (the
/// network's inside stops two or three cells short of a face the object runs through).
pub const FACE_CELLS: usize = 4;
/// How many inside cells near the faces mean the object does not fit the magnified cube.
pub const FACE_MIN_CELLS: usize = 8;

/// Whether the inside of `sdf` (a pass's output cube, `[gk, gj, gi]`, negative inside) takes at
/// least [`FACE_MIN_CELLS`] cells within [`FACE_CELLS`] of the cube's faces: a magnified object
/// that does so does not fit the cube (a vessel along the slice's normal, a lesion leaking into
/// its organ), and is seen at the scan's own scale instead.
pub fn reaches_faces(sdf: &ndarray::Array3<f32>) -> bool {
    let (a, b, c) = sdf.dim();
    let near = |i: usize, n: usize| i < FACE_CELLS || i + FACE_CELLS >= n;
    sdf.indexed_iter().filter(|((k, j, i), d)| **d < 0.0 && (near(*k, a) || near(*j, b) || near(*i, c))).take(FACE_MIN_CELLS).count() >= FACE_MIN_CELLS
}

/// The radius (mm) of the disc as large as `mask`'s pixels of `pixel_mm`.
pub fn mask_radius_mm(mask: &Array2<bool>, pixel_mm: f64) -> f64 {
    let n = mask.iter().filter(|&&m| m).count() as f64;
    (n / std::f64::consts::PI).sqrt() * pixel_mm
}

/// The radius (mm) of the disc as large as `label`'s cross-section on the model's slice through
/// `click` in `plane` (the slice `p` gives the network, sampled at its pixel centres).
pub fn label_radius_on_slice_mm(labels: &LabelMap, label: u16, click: RasMm, plane: ViewPlane, p: &ClickParams) -> f64 {
    let ras_from_pixel = slice_ras_from_pixel(click, plane, p);
    let lab_from_pixel = labels.voxel_from_ras() * ras_from_pixel;
    let n = p.image_size;
    let shape = labels.shape();
    let mask = Array2::from_shape_fn((n, n), |(row, col)| {
        let v = lab_from_pixel.apply(Point3::new(col as f64, row as f64, 0.0));
        shape.array_index(v).is_some_and(|a| labels.data[[a.k, a.j, a.i]] == label)
    });
    mask_radius_mm(&mask, p.spacing_mm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use nalgebra::{Matrix3, Vector3};
    use ndarray::Array3;

    #[test]
    fn small_objects_are_magnified_to_the_target_and_large_ones_not() {
        assert_eq!(zoom_for_radius(3.0), ZOOM_MAX);
        assert!((zoom_for_radius(12.0) - 2.0).abs() < 1e-12);
        assert_eq!(zoom_for_radius(20.0), 1.0, "1.2 is under ZOOM_MIN");
        assert_eq!(zoom_for_radius(40.0), 1.0);
        assert_eq!(zoom_for_radius(0.0), 1.0);
        assert_eq!(zoom_for_radius(f64::NAN), 1.0);
    }

    #[test]
    fn an_object_reaches_the_faces_when_its_inside_comes_near_them() {
        let ball = |r: f32, at: [f32; 3]| Array3::from_shape_fn((24, 24, 24), |(k, j, i)| {
            let d = ((k as f32 - at[0]).powi(2) + (j as f32 - at[1]).powi(2) + (i as f32 - at[2]).powi(2)).sqrt();
            d - r
        });
        assert!(!reaches_faces(&ball(6.0, [11.5; 3])), "a ball in the middle fits");
        assert!(reaches_faces(&ball(6.0, [11.5, 11.5, 4.0])), "moved to a face it does not");
        // A tube along k through the whole cube.
        let tube = Array3::from_shape_fn((24, 24, 24), |(_, j, i)| ((j as f32 - 11.5).powi(2) + (i as f32 - 11.5).powi(2)).sqrt() - 3.0);
        assert!(reaches_faces(&tube));
        // A few stray cells near a face are not enough.
        let mut few = ball(4.0, [11.5; 3]);
        for i in 0..3 {
            few[[0, 0, i]] = -1.0;
        }
        assert!(!reaches_faces(&few));
    }

    /// A ball of radius 10 mm on an anisotropic, rotated grid: its cross-section through its
    /// centre has radius 10 in every plane, and 6 mm (√(10² − 8²)) 8 mm off it.
    #[test]
    fn a_balls_radius_on_each_plane_is_measured_through_the_affine() {
        let rot = *nalgebra::Rotation3::from_axis_angle(&nalgebra::Unit::new_normalize(Vector3::new(1.0, 2.0, 0.5)), 0.4).matrix();
        let lin = rot * Matrix3::from_diagonal(&Vector3::new(0.5, 0.6, 0.8));
        let n = 90usize;
        let centre = Vector3::new(3.0, -4.0, 5.0);
        let ras_from_voxel = RasFromVoxel::from_parts(lin, centre - lin * Vector3::repeat((n - 1) as f64 / 2.0));
        let mut data = Array3::<u16>::zeros((n, n, n));
        for ((k, j, i), v) in data.indexed_iter_mut() {
            let p = ras_from_voxel.apply(crate::geometry::VoxelIjk::new(i as f64, j as f64, k as f64));
            if (p.v - centre).norm() <= 10.0 {
                *v = 7;
            }
        }
        let labels = LabelMap { data, ras_from_voxel, meta: Default::default() };
        // Fine pixels, so the disc's area is measured to about a percent.
        let p = ClickParams { image_size: 64, spacing_mm: 0.5, cube_mm: 32.0, grid: 8, ct_window_hu: [-160.0, 240.0], prior_radius_px: 2.0, context: None };
        for plane in ViewPlane::ALL {
            let r = label_radius_on_slice_mm(&labels, 7, RasMm::from_vec(centre), plane, &p);
            assert!((r - 10.0).abs() < 0.35, "{plane:?}: {r}");
        }
        let off = RasMm::from_vec(centre + Vector3::new(0.0, 0.0, 8.0));
        let r = label_radius_on_slice_mm(&labels, 7, off, ViewPlane::Axial, &p);
        assert!((r - 6.0).abs() < 0.4, "{r}");
        assert_eq!(label_radius_on_slice_mm(&labels, 3, RasMm::from_vec(centre), ViewPlane::Axial, &p), 0.0);
    }
}
