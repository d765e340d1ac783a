//! What an uploaded array means: the image as a [`Volume`], and a client's voxel coordinates as
//! RAS prompts, all through [`crate::geometry`].
//!
//! The array `[c, a0, a1, a2]` is read as the grid's `[k, j, i]`: a voxel coordinate
//! `[a0, a1, a2]` is `(k, j, i)`. This is the order of SimpleITK's `GetArrayFromImage` and
//! Slicer's `arrayFromVolume`, and it is how the viewer's remote engine sends a volume (its own
//! `[k, j, i]` data with the affine). Geometry, in order of preference:
//! - `image_properties.affine` (this project's extension): voxel `(i, j, k)` → RAS, 4×4;
//! - `image_properties.spacing` `[s0, s1, s2]` (nnU-Net's order, the array's): voxel
//!   `(i, j, k)` → RAS `(i·s2, j·s1, k·s0)`, no rotation, origin 0;
//! - neither: 1 mm isotropic (nnInteractive itself works in voxels). The model measures
//!   organs in mm, so a client that knows its spacing should send it.

use crate::geometry::{RasFromVoxel, RasMm, ViewPlane, VoxelIjk};
use crate::prompts::{BoxPrompt, Prompt};
use crate::volume::{Modality, OnGrid, Volume, VolumeMeta};
use ndarray::Array3;
use sam3d_core::nninteractive::NniaArray;
use sam3d_core::nninteractive::api::ImageProperties;

/// The image's volume and the modality the client named (if any).
pub fn volume_of(array: &NniaArray, props: &ImageProperties) -> Result<(Volume, Option<Modality>), String> {
    let [c, a0, a1, a2] = match array.shape.as_slice() {
        [c, a0, a1, a2] => [*c, *a0, *a1, *a2],
        s => return Err(format!("the image must be 4D [c, x, y, z]; it is {}D {s:?}", s.len())),
    };
    if c != 1 {
        return Err(format!("the image has {c} channels; this model reads one (send [1, x, y, z])"));
    }
    if a0 == 0 || a1 == 0 || a2 == 0 {
        return Err(format!("the image is empty: shape {:?}", array.shape));
    }
    let values = array.to_f32();
    let bad = values.iter().filter(|v| !v.is_finite()).count();
    if bad > 0 {
        return Err(format!("the image holds {bad} NaN or infinite values"));
    }
    let ras_from_voxel = affine_of(props)?;
    let data = Array3::from_shape_vec((a0, a1, a2), values).map_err(|e| format!("the image's shape: {e}"))?;
    let mut volume = Volume::new(data, ras_from_voxel).map_err(|e| format!("the image's geometry: {}", e.problem))?;
    volume.meta = VolumeMeta { description: "uploaded through the nnInteractive protocol".into(), ..Default::default() };
    let modality = match props.modality.as_deref() {
        None => None,
        Some(m) => Some(m.parse::<Modality>().map_err(|e| format!("image_properties.modality: {e}"))?),
    };
    Ok((volume, modality))
}

/// Voxel → RAS from the client's properties (module doc).
pub fn affine_of(props: &ImageProperties) -> Result<RasFromVoxel, String> {
    if let Some(rows) = props.affine {
        let a = RasFromVoxel::from_rows(rows).map_err(|e| format!("image_properties.affine: {e}"))?;
        a.try_inverse().map_err(|e| format!("image_properties.affine: {e}"))?;
        return Ok(a);
    }
    let s = match &props.spacing {
        None => [1.0, 1.0, 1.0],
        Some(s) if s.len() == 3 && s.iter().all(|v| v.is_finite() && *v > 0.0) => [s[0], s[1], s[2]],
        // A 4D spacing (nnU-Net's with the channel) is not sent by the client; refuse it.
        Some(s) => return Err(format!("image_properties.spacing must be three positive mm values along the array's axes, got {s:?}")),
    };
    Ok(RasFromVoxel::scale_translate([s[2], s[1], s[0]], [0.0, 0.0, 0.0]))
}

/// Voxel `(i, j, k)` of a client's `[a0, a1, a2]`, checked against the grid.
fn voxel_of(coords: &[f64], volume: &Volume, what: &str) -> Result<VoxelIjk, String> {
    let [a0, a1, a2] = match coords {
        [a, b, c] if coords.iter().all(|v| v.is_finite()) => [*a, *b, *c],
        _ => return Err(format!("{what} must be three finite numbers [x, y, z], got {coords:?}")),
    };
    let v = VoxelIjk::new(a2.round(), a1.round(), a0.round());
    if !volume.shape().contains(v) {
        let s = volume.shape().array_shape();
        return Err(format!("{what} {coords:?} is outside the image of shape {s:?}"));
    }
    Ok(v)
}

/// A point interaction as a prompt at its voxel's centre.
pub fn point_prompt(coords: &[f64], include: bool, volume: &Volume) -> Result<Prompt, String> {
    let at: RasMm = volume.ras_from_voxel.apply(voxel_of(coords, volume, "the point")?);
    Ok(if include { Prompt::positive(at) } else { Prompt::negative(at) })
}

/// A box interaction `[[lo, hi]; 3]` (half-open, per array axis) as a RAS box through the first
/// and last voxel centres. Extent 1 along an axis: a 2D box, open along the world axis nearest
/// that voxel axis (the view it was drawn in, which is returned); else a closed 3D box.
pub fn box_prompt(coords: &[Vec<f64>], volume: &Volume) -> Result<(BoxPrompt, Option<ViewPlane>), String> {
    if coords.len() != 3 || coords.iter().any(|r| r.len() != 2 || r.iter().any(|v| !v.is_finite())) {
        return Err(format!("bbox_coords must be [[x0, x1], [y0, y1], [z0, z1]], got {coords:?}"));
    }
    let s = volume.shape().array_shape();
    // Rounded and clipped to the image, as the reference session does; at least one voxel.
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for d in 0..3 {
        let (a, b) = (coords[d][0].round(), coords[d][1].round());
        if b <= a {
            return Err(format!("bbox_coords {coords:?}: axis {d} has no extent ({a} to {b})"));
        }
        let a = a.clamp(0.0, s[d] as f64 - 1.0) as usize;
        let b = (b.clamp(1.0, s[d] as f64) as usize).max(a + 1);
        (lo[d], hi[d]) = (a, b - 1);
    }
    let flat: Vec<usize> = (0..3).filter(|&d| lo[d] == hi[d]).collect();
    let rfv = volume.ras_from_voxel;
    let corner = |k: usize, j: usize, i: usize| rfv.apply(VoxelIjk::new(i as f64, j as f64, k as f64)).to_array();
    let (a, b) = (corner(lo[0], lo[1], lo[2]), corner(hi[0], hi[1], hi[2]));
    let plane = match flat.as_slice() {
        [] => None,
        [d] => {
            // The array axis a_d is voxel axis 2 - d; its direction in RAS picks the plane.
            let dir = rfv.apply_vector(nalgebra::Vector3::from_fn(|r, _| if r == 2 - d { 1.0 } else { 0.0 }));
            let world = (0..3).max_by(|&x, &y| dir[x].abs().total_cmp(&dir[y].abs())).unwrap_or(2);
            ViewPlane::ALL.into_iter().find(|p| p.normal_world_axis() == world)
        }
        _ => return Err(format!("bbox_coords {coords:?} is flat along {} axes: a box needs extent along two at least", flat.len())),
    };
    let mut bx = BoxPrompt { a, b, open: plane };
    if let Some(p) = plane {
        // The corners lie on one slice of an axis-aligned grid; on an oblique one, make them
        // agree along the open axis so the box is the drawn slice's rectangle.
        let ax = p.normal_world_axis();
        let mid = (bx.a[ax] + bx.b[ax]) / 2.0;
        (bx.a[ax], bx.b[ax]) = (mid, mid);
    }
    // A closed box whose corners share a world coordinate (an oblique grid) cannot bound it.
    let open = bx.open_axis();
    for ax in (0..3).filter(|&ax| Some(ax) != open) {
        if bx.a[ax] == bx.b[ax] {
            let half = rfv.linear().column_iter().map(|c| c[ax].abs()).fold(0.0, f64::max) / 2.0;
            bx.a[ax] -= half;
            bx.b[ax] += half;
        }
    }
    bx.check()?;
    Ok((bx, plane))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sam3d_core::nninteractive::Dtype;

    fn image<const N: usize>(shape: [usize; N]) -> NniaArray {
        let n: usize = shape.iter().product();
        let bytes: Vec<u8> = (0..n).flat_map(|v| (v as f32).to_le_bytes()).collect();
        NniaArray { dtype: Dtype::F32, shape: shape.to_vec(), bytes }
    }

    #[test]
    fn the_array_is_k_j_i_and_spacing_follows_the_array_axes() {
        let props = ImageProperties { spacing: Some(vec![5.0, 0.8, 0.7]), ..Default::default() };
        let (v, m) = volume_of(&image([1, 4, 5, 6]), &props).expect("ok");
        assert_eq!(m, None);
        assert_eq!(v.shape().ijk(), [6, 5, 4]);
        // Element [a0=1, a1=2, a2=3] is voxel (i=3, j=2, k=1), value 1·30 + 2·6 + 3.
        assert_eq!(v.data[[1, 2, 3]], 45.0);
        let close = |a: [f64; 3], b: [f64; 3]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        let p = v.ras_from_voxel.apply(VoxelIjk::new(3.0, 2.0, 1.0));
        assert!(close(p.to_array(), [2.1, 1.6, 5.0]), "{p:?}");
        // A point at [1, 2, 3] lands there.
        let pr = point_prompt(&[1.0, 2.0, 3.0], true, &v).expect("ok");
        assert!(close(pr.point.expect("ok").at.to_array(), [2.1, 1.6, 5.0]));
    }

    #[test]
    fn an_affine_overrides_spacing_and_is_checked() {
        let rows = [[0.0, 0.0, -2.0, 10.0], [0.0, 1.5, 0.0, -5.0], [3.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]];
        let props = ImageProperties { spacing: Some(vec![9.0, 9.0, 9.0]), affine: Some(rows), modality: Some("mr".into()) };
        let (v, m) = volume_of(&image([1, 2, 3, 4]), &props).expect("ok");
        assert_eq!(m, Some(Modality::Mr));
        let p = point_prompt(&[1.0, 2.0, 3.0], false, &v).expect("ok");
        // voxel (3, 2, 1) → (−2·1 + 10, 1.5·2 − 5, 3·3 + 1)
        assert_eq!(p.point.expect("ok").at.to_array(), [8.0, -2.0, 10.0]);
        let singular = ImageProperties { affine: Some([[1.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]), ..Default::default() };
        assert!(volume_of(&image([1, 2, 3, 4]), &singular).expect_err("refused").contains("affine"));
    }

    #[test]
    fn bad_images_and_points_are_refused_with_what_is_wrong() {
        let p = ImageProperties::default();
        assert!(volume_of(&image([2, 2, 3, 4]), &p).expect_err("refused").contains("2 channels"));
        assert!(volume_of(&image([2, 3, 4]), &p).expect_err("refused").contains("4D"));
        assert!(volume_of(&image([1, 0, 3, 4]), &p).expect_err("refused").contains("empty"));
        let mut nan = image([1, 2, 2, 2]);
        nan.bytes[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(volume_of(&nan, &p).expect_err("refused").contains("1 NaN"));
        let bad_spacing = ImageProperties { spacing: Some(vec![1.0, 0.0, 1.0]), ..Default::default() };
        assert!(volume_of(&image([1, 2, 2, 2]), &bad_spacing).expect_err("refused").contains("spacing"));
        let (v, _) = volume_of(&image([1, 4, 5, 6]), &p).expect("ok");
        assert!(point_prompt(&[4.0, 0.0, 0.0], true, &v).expect_err("refused").contains("outside"));
        assert!(point_prompt(&[-0.6, 0.0, 0.0], true, &v).expect_err("refused").contains("outside"));
        assert!(point_prompt(&[1.0, 2.0], true, &v).expect_err("refused").contains("three"));
        assert!(point_prompt(&[f64::NAN, 2.0, 1.0], true, &v).expect_err("refused").contains("finite"));
    }

    #[test]
    fn boxes_two_and_three_dimensional() {
        let props = ImageProperties { spacing: Some(vec![2.0, 1.0, 1.0]), ..Default::default() };
        let (v, _) = volume_of(&image([1, 10, 20, 30]), &props).expect("ok");
        // Flat along a0 (= k, the S axis here): an axial box through slice k = 4.
        let (b, plane) = box_prompt(&[vec![4.0, 5.0], vec![2.0, 8.0], vec![3.0, 12.0]], &v).expect("ok");
        assert_eq!(plane, Some(ViewPlane::Axial));
        assert_eq!((b.a, b.b), ([3.0, 2.0, 8.0], [11.0, 7.0, 8.0]));
        // 3D, clipped to the image.
        let (b, plane) = box_prompt(&[vec![-3.0, 4.0], vec![2.0, 8.0], vec![3.0, 99.0]], &v).expect("ok");
        assert_eq!(plane, None);
        assert_eq!((b.a, b.b), ([3.0, 2.0, 0.0], [29.0, 7.0, 6.0]));
        assert!(box_prompt(&[vec![4.0, 4.0], vec![2.0, 8.0], vec![3.0, 12.0]], &v).expect_err("refused").contains("no extent"));
        assert!(box_prompt(&[vec![4.0, 5.0], vec![2.0, 3.0], vec![3.0, 12.0]], &v).expect_err("refused").contains("flat along 2"));
        assert!(box_prompt(&[vec![4.0, 5.0]], &v).is_err());
    }
}
