//! Shapes: signed distance fields, meshes (marching cubes, smoothing, decimation, export),
//! segmentation metrics.
//!
//! | module | what |
//! |---|---|
//! | [`sdf`] | exact Euclidean distance transforms and signed distance fields (mm), per class |
//! | [`flood`] | the one flood fill: 6-connected scanline fill from seeds, component of a seed, labelling, largest component, hole filling |
//! | [`component`] | an SDF on its own grid → the connected inside region through a point on a source voxel grid (work ∝ the region's box) |
//! | [`mesh`] | watertight marching-cubes meshes in RAS mm; area, volume, edge checks, Taubin smoothing, decimation |
//! | [`export`] | binary STL, OBJ, binary PLY in RAS or LPS, written atomically; our own binary PLY read back exactly |
//! | [`metrics`] | Dice, IoU, HD95, Hausdorff, ASSD, Chamfer with spacing (`surface-distance` definitions) |
//!
//! Arrays are `[k, j, i]` like every volume; spacings are a
//! [`SpacingIjk`](crate::geometry::SpacingIjk) (`[si, sj, sk]`, what
//! [`OnGrid::spacing`](crate::volume::OnGrid::spacing) gives) for distance transforms, plain
//! `[si, sj, sk]` arrays in [`metrics`].

pub mod click_mesh;
pub mod component;
pub mod export;
pub mod flood;
mod march;
pub mod mesh;
pub mod metrics;
pub mod sdf;
mod surfel_table;

pub use export::{MeshFormat, MeshObject, MeshSpace, SurfaceExport, export_label_surfaces, read_ply, write_mesh};
pub use component::{GridComponent, sdf_component_on_grid};
pub use mesh::{EdgeReport, Inside, mesh_from_field, mesh_from_mask, mesh_of_label, mesh_of_labels, mesh_of_mask_blocks};
pub use metrics::{LabelMetrics, SurfaceDistances, compare_label_maps, label_metrics, mask_metrics, surface_distances};
pub use sdf::{edt, sdf, sdf_classes, sdf_of_labels, squared_edt};

use std::path::{Path, PathBuf};

/// A triangle mesh with vertices in RAS millimetres.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// Vertex positions, RAS mm.
    pub vertices: Vec<[f32; 3]>,
    /// Triangles as vertex indices, counter-clockwise seen from outside (outward normals).
    pub triangles: Vec<[u32; 3]>,
}

/// An error about one file (or named input) in the shape layer: `path: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct ShapeError {
    pub path: PathBuf,
    pub problem: String,
}

impl ShapeError {
    pub fn new(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Self { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }
}
