//! Shapes: signed distance fields, meshes (marching cubes, smoothing, export), metrics.

/// A triangle mesh with vertices in RAS millimetres.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    /// Vertex positions, RAS mm.
    pub vertices: Vec<[f32; 3]>,
    /// Triangles as vertex indices, counter-clockwise seen from outside (outward normals).
    pub triangles: Vec<[u32; 3]>,
}
