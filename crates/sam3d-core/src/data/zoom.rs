//! Scale that follows the object (issue 22; nnInteractive's AutoZoom does this with its patch):
//! the model sees a 64-pixel slice at 3 mm and a 192 mm output cube at 4 mm cells, so a 1 ml
//! nodule (6 mm across) covers two pixels and two cells. A small object is instead seen in the
//! world magnified about the click by [`zoom_for_radius`] of its radius: at the largest zoom,
//! [`ZOOM_MAX`], the slice's pixels are 0.75 mm and the cube's cells 1 mm. The engine takes the
//! radius from the click's own pass (the equivalent radius of its shape) and keeps the
//! magnified pass only when its object stays clear of the cube's faces ([`reaches_faces`]);
//! training magnifies a sample by the reference's radius on the clicked slice
//! ([`label_radius_on_slice_mm`]), so one set of weights learns the scales it is asked at.
//!
//! A first shape too large to be zoomed may still not be what was clicked: a lesion inside an
//! organ, which the model at its own scale takes into the organ. The close-up probe then runs
//! the 2D head on the slice magnified [`ZOOM_MAX`] times about the click. Its object sets the
//! zoom when it is closed ([`closed_object_radius_mm`]), unlike the first shape
//! ([`close_up_distinctness`] ≥ [`PROBE_MIN_DISTINCT`]) and has an edge in the scan
//! ([`close_up_contrast`] ≥ [`PROBE_MIN_CONTRAST`]). Magnified inside an organ's even
//! texture, the head also draws closed blobs; the last two checks keep those out. Both
//! thresholds were chosen on training-side scenes and the demo CT's training-side structures
//! (the model card's "Session 23").

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

/// Pixels of the slice's edge an object must stay clear of for the close-up probe to call it
/// closed ([`closed_object_radius_mm`]).
pub const PROBE_EDGE_PX: usize = 2;

/// The close-up probe (for a click whose first shape is too large to be zoomed: a lesion inside
/// an organ, whose first shape is the organ): `mask` is the 2D head's mask (its component through
/// the click) on the slice magnified `zoom` times about the click. When the object it holds is
/// closed — clear of the slice's edge by [`PROBE_EDGE_PX`] pixels — and more than the click's
/// prior disc (the head's answer when it finds nothing), its disc radius in the scan's mm;
/// otherwise `None` (the object runs out of the close-up: the first shape's scale is right).
pub fn closed_object_radius_mm(mask: &Array2<bool>, p: &ClickParams, zoom: f64) -> Option<f64> {
    let n = mask.nrows();
    if n != mask.ncols() || n <= 2 * PROBE_EDGE_PX || !(zoom.is_finite() && zoom > 0.0) {
        return None;
    }
    let prior = super::click::click_prior_mask(n, p.prior_radius_px);
    if mask.iter().zip(prior.iter()).all(|(m, d)| !*m || *d) {
        return None;
    }
    let edge = |i: usize| i < PROBE_EDGE_PX || i + PROBE_EDGE_PX >= n;
    if mask.indexed_iter().any(|((r, c), m)| *m && (edge(r) || edge(c))) {
        return None;
    }
    Some(mask_radius_mm(mask, p.spacing_mm / zoom))
}

/// Least [`close_up_distinctness`] for the close-up probe's object to be taken: it must differ
/// from the first shape by two of that shape's robust standard deviations.
pub const PROBE_MIN_DISTINCT: f64 = 2.0;
/// Least [`close_up_contrast`] for the close-up probe's object to be taken: an edge of one
/// robust standard deviation against its surround.
pub const PROBE_MIN_CONTRAST: f64 = 1.0;

/// How far outside a close-up object its surround is read (pixels of the close-up: 1.5 to
/// 4.5 mm at 4x).
pub const PROBE_RING_PX: (f64, f64) = (2.0, 6.0);

/// The contrast of a close-up object against its surround: the difference of the medians of
/// `image` inside `mask` and in the ring [`PROBE_RING_PX`] outside it, over the larger of the two
/// parts' robust standard deviations (at least 0.01 of the normalised range). An object the
/// network drew where the scan has no edge (inside an organ's even texture) has a contrast near
/// zero; a lesion, an edge of several noise levels. `None` when either part is empty.
pub fn close_up_contrast(image: &Array2<f32>, mask: &Array2<bool>) -> Option<f64> {
    if image.dim() != mask.dim() {
        return None;
    }
    let (h, w) = mask.dim();
    let (r0, r1) = PROBE_RING_PX;
    let reach = r1.ceil() as isize;
    let mut inside = Vec::new();
    let mut ring = Vec::new();
    for ((y, x), &m) in mask.indexed_iter() {
        if m {
            inside.push(image[[y, x]]);
            continue;
        }
        let mut d2 = f64::INFINITY;
        for dy in -reach..=reach {
            for dx in -reach..=reach {
                let (yy, xx) = (y as isize + dy, x as isize + dx);
                if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w && mask[[yy as usize, xx as usize]] {
                    d2 = d2.min((dy * dy + dx * dx) as f64);
                }
            }
        }
        if d2 >= r0 * r0 && d2 <= r1 * r1 {
            ring.push(image[[y, x]]);
        }
    }
    let (mi, si) = crate::baseline::refine::robust_stats(&mut inside)?;
    let (mr, sr) = crate::baseline::refine::robust_stats(&mut ring)?;
    Some((mi - mr).abs() / si.max(sr).max(0.01))
}

/// How unlike the first shape a close-up object is: the difference of the medians of the
/// close-up `image` inside `mask` and of the first pass's `first_image` inside its 2D mask
/// `first_mask`, over the first's robust standard deviation (at least 0.01 of the normalised
/// range). A lesion inside an organ differs from the organ the first shape took; an object the
/// network drew in the organ's own texture does not. `None` when either part is empty.
pub fn close_up_distinctness(image: &Array2<f32>, mask: &Array2<bool>, first_image: &Array2<f32>, first_mask: &Array2<bool>) -> Option<f64> {
    let values = |img: &Array2<f32>, m: &Array2<bool>| -> Vec<f32> { img.iter().zip(m.iter()).filter(|(_, m)| **m).map(|(v, _)| *v).collect() };
    if image.dim() != mask.dim() || first_image.dim() != first_mask.dim() {
        return None;
    }
    let (c, _) = crate::baseline::refine::robust_stats(&mut values(image, mask))?;
    let (m, s) = crate::baseline::refine::robust_stats(&mut values(first_image, first_mask))?;
    Some((c - m).abs() / s.max(0.01))
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

    /// A disc of radius `r` pixels about `(cy, cx)` on an `n`-pixel slice.
    fn disc(n: usize, cy: f64, cx: f64, r: f64) -> Array2<bool> {
        Array2::from_shape_fn((n, n), |(y, x)| (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r)
    }

    #[test]
    fn the_close_up_probe_reads_only_a_closed_object_larger_than_the_prior() {
        let p = ClickParams { image_size: 64, spacing_mm: 3.0, cube_mm: 192.0, grid: 48, ct_window_hu: [-160.0, 240.0], prior_radius_px: 2.0, context: None };
        // A 10-pixel disc at 4x (0.75 mm pixels): a lesion of about 7.5 mm radius.
        let r = closed_object_radius_mm(&disc(64, 32.0, 32.0, 10.0), &p, ZOOM_MAX).expect("closed");
        assert!((r - 7.5).abs() < 0.15, "{r}");
        assert!((zoom_for_radius(r) - ZOOM_TARGET_MM / r).abs() < 1e-12, "magnified to the target: 3.2x");
        // The same at 2x is twice as large in the scan.
        let r2 = closed_object_radius_mm(&disc(64, 32.0, 32.0, 10.0), &p, 2.0).expect("closed");
        assert!((r2 - 2.0 * r).abs() < 1e-9);
        // An object reaching the slice's edge (the organ around the click) is not closed...
        assert_eq!(closed_object_radius_mm(&disc(64, 32.0, 32.0, 31.0), &p, ZOOM_MAX), None);
        assert_eq!(closed_object_radius_mm(&disc(64, 32.0, 50.0, 12.0), &p, ZOOM_MAX), None);
        // ...nor is the prior disc alone, which the head gives back when it finds nothing.
        let prior = crate::data::click::click_prior_mask(64, p.prior_radius_px);
        assert_eq!(closed_object_radius_mm(&prior, &p, ZOOM_MAX), None);
        assert_eq!(closed_object_radius_mm(&Array2::from_elem((64, 64), false), &p, ZOOM_MAX), None);
        assert_eq!(closed_object_radius_mm(&disc(64, 32.0, 32.0, 10.0), &p, f64::NAN), None);
    }

    /// A 64-pixel slice of noise (about 0.5, robust SD about 0.02) with `lesion` (centre, radius,
    /// value) painted on it.
    fn noisy_slice(lesion: Option<(f64, f64, f64, f32)>) -> Array2<f32> {
        let mut state = 12345u64;
        Array2::from_shape_fn((64, 64), |(y, x)| {
            // Sum of four uniforms (xorshift): near-normal, SD ≈ 0.02 after scaling.
            let mut u = 0.0;
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                u += (state >> 11) as f64 / (1u64 << 53) as f64;
            }
            let noise = ((u - 2.0) * 0.035) as f32;
            match lesion {
                Some((cy, cx, r, v)) if (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2) <= r * r => v + noise,
                _ => 0.5 + noise,
            }
        })
    }

    #[test]
    fn a_close_up_object_counts_only_when_it_is_unlike_the_first_shape_and_has_an_edge() {
        let organ = disc(64, 32.0, 32.0, 28.0);
        let blob = disc(64, 32.0, 32.0, 8.0);
        // A lesion 0.15 brighter than the organ (about seven noise levels): distinct, with an edge.
        let lesion = noisy_slice(Some((32.0, 32.0, 8.0, 0.65)));
        let d = close_up_distinctness(&lesion, &blob, &noisy_slice(None), &organ).expect("both parts");
        let c = close_up_contrast(&lesion, &blob).expect("both parts");
        assert!(d > PROBE_MIN_DISTINCT * 2.0 && c > PROBE_MIN_CONTRAST * 2.0, "lesion: distinct {d}, contrast {c}");
        // The same blob drawn in the organ's own texture: neither.
        let texture = noisy_slice(None);
        let d = close_up_distinctness(&texture, &blob, &texture, &organ).expect("both parts");
        let c = close_up_contrast(&texture, &blob).expect("both parts");
        assert!(d < PROBE_MIN_DISTINCT / 2.0 && c < PROBE_MIN_CONTRAST / 2.0, "texture: distinct {d}, contrast {c}");
        // A lesion as bright as the organ's edge but mostly unlike the shape needs its own edge:
        // a smooth ramp has none at the blob's rim.
        let ramp = Array2::from_shape_fn((64, 64), |(y, x)| 0.5 + 0.004 * (((y as f64 - 32.0).powi(2) + (x as f64 - 32.0).powi(2)).sqrt() as f32));
        let c = close_up_contrast(&ramp, &blob).expect("both parts");
        assert!(c < PROBE_MIN_CONTRAST * 4.0, "a ramp's rim: {c}");
        assert_eq!(close_up_contrast(&texture, &Array2::from_elem((64, 64), false)), None);
        assert_eq!(close_up_distinctness(&texture, &blob, &texture, &Array2::from_elem((64, 64), false)), None);
    }

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
