//! The surface of one click's result as the viewer shows it: the result's box on blocks of about
//! [`MESH_BLOCK_MM`], Taubin-smoothed, in RAS mm. The engine meshes the model's result with it,
//! and the viewer meshes region growing's the same way, so the two look alike.

use super::Mesh;
use crate::geometry::{GridShape, RasFromVoxel};
use ndarray::{ArrayView3, s};

/// Display resolution of a click's mesh: blocks of about this size (mm) along each voxel axis.
pub const MESH_BLOCK_MM: f64 = 1.5;
/// Taubin iterations on a click's mesh.
pub const MESH_SMOOTH_ITERATIONS: usize = 5;

/// The mesh step of a click: the kept component (a crop of the source grid) → watertight mesh
/// in RAS mm on blocks of about [`MESH_BLOCK_MM`] (whole voxels along axes already that coarse),
/// Taubin-smoothed; work ∝ the component's box. `None` for an empty component.
pub fn mesh_of_component(c: &super::GridComponent, shape: GridShape, ras_from_voxel: &RasFromVoxel) -> Option<Mesh> {
    let m = super::mesh_of_mask_blocks(c.mask.view(), c.origin_kji, shape, ras_from_voxel, mesh_blocks(ras_from_voxel), MESH_SMOOTH_ITERATIONS);
    (!m.triangles.is_empty()).then_some(m)
}

/// Voxels per mesh block along i, j, k: about [`MESH_BLOCK_MM`] (one voxel along axes already
/// that coarse).
pub fn mesh_blocks(ras_from_voxel: &RasFromVoxel) -> [usize; 3] {
    ras_from_voxel.column_norms().map(|mm| if mm > 0.0 { (MESH_BLOCK_MM / mm).round().max(1.0) as usize } else { 1 })
}

/// A click result held as a whole-grid mask (region growing's) meshed like the model's: its
/// bounding box on blocks of about [`MESH_BLOCK_MM`].
pub fn mesh_of_grid_mask(mask: ArrayView3<bool>, ras_from_voxel: &RasFromVoxel) -> Mesh {
    let Some((lo, hi)) = super::sdf::bounding_box(mask) else { return Mesh::default() };
    let crop = mask.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
    let shape = GridShape::from_array_shape(mask.shape());
    super::mesh_of_mask_blocks(crop, lo, shape, ras_from_voxel, mesh_blocks(ras_from_voxel), MESH_SMOOTH_ITERATIONS)
}

