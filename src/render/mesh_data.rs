//! CPU-side preparation of what the GPU draws: vertex normals (from `shape`), one packed vertex/index array
//! for all label meshes, the crosshair marker's geometry and the slice-plane quads.
//!
//! Everything here is plain data (no wgpu objects), built once per change of the meshes and
//! shared with the paint callback through an `Arc`.

use super::camera::BoundsRas;
use crate::shape::Mesh;

/// One vertex as the mesh shader reads it (`shaders/mesh.wgsl`, locations 0 and 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuVertex {
    /// RAS mm (or marker units, scaled by the instance).
    pub position: [f32; 3],
    /// Unit normal (zero for a vertex with no non-degenerate triangle).
    pub normal: [f32; 3],
}

/// Per-draw data (`shaders/mesh.wgsl`, locations 2–4), one "instance" per draw call.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct InstanceData {
    /// Linear RGB and straight (not premultiplied) alpha.
    pub color: [f32; 4],
    /// world = position · w + xyz.
    pub offset_scale: [f32; 4],
    /// x: 1 = lit (headlight), 0 = flat colour. Others unused.
    pub params: [f32; 4],
}

/// A range of the packed index array drawn as one mesh.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeshPart {
    pub first_index: u32,
    pub index_count: u32,
    pub base_vertex: i32,
}

impl MeshPart {
    /// The index range to draw.
    pub fn range(&self) -> std::ops::Range<u32> {
        self.first_index..self.first_index.saturating_add(self.index_count)
    }
}

/// One mesh packed for the GPU: vertices with their normals and the triangles' indices (local
/// to this mesh). Built once per mesh and shared (`Arc`) by whoever keeps it (the mesher's
/// cache) and every [`PreparedMeshes`] that draws it, so a mesh is held once on the CPU.
#[derive(Debug, Default, PartialEq)]
pub struct PackedMesh {
    pub vertices: Vec<GpuVertex>,
    pub indices: Vec<u32>,
    /// `None` when it has no finite vertex.
    pub bounds: Option<BoundsRas>,
    /// Triangles dropped because an index was out of range.
    pub dropped_triangles: usize,
}

impl PackedMesh {
    /// Packs `mesh` with per-vertex normals. Triangles referring to a missing vertex are dropped
    /// (and counted), never a panic.
    pub fn new(mesh: &Mesh) -> Self {
        let n = mesh.vertices.len();
        let in_range = |t: &&[u32; 3]| t.iter().all(|&i| (i as usize) < n);
        let cleaned;
        let mut dropped_triangles = 0;
        let mesh = if mesh.triangles.iter().all(|t| in_range(&t)) {
            mesh
        } else {
            let triangles: Vec<[u32; 3]> = mesh.triangles.iter().filter(in_range).copied().collect();
            dropped_triangles = mesh.triangles.len() - triangles.len();
            cleaned = Mesh { vertices: mesh.vertices.clone(), triangles };
            &cleaned
        };
        let normals = mesh.vertex_normals();
        let vertices = mesh.vertices.iter().zip(&normals).map(|(&position, &normal)| GpuVertex { position, normal }).collect();
        let indices = mesh.triangles.iter().flatten().copied().collect();
        PackedMesh { vertices, indices, bounds: BoundsRas::from_points(&mesh.vertices), dropped_triangles }
    }

    pub fn triangle_count(&self) -> usize {
        self.indices.len() / 3
    }

    /// Bytes of vertex and index data held.
    pub fn bytes(&self) -> usize {
        self.vertices.capacity() * std::mem::size_of::<GpuVertex>() + self.indices.capacity() * 4
    }
}

/// Everything needed to upload a set of label meshes, built once per [`super::MeshViewState::set_meshes`]:
/// the meshes themselves (shared, not copied) and where each lands in the one vertex and index
/// buffer the GPU draws from.
#[derive(Debug, Default)]
pub struct PreparedMeshes {
    /// Unique per preparation; the GPU copy is refreshed when it changes.
    pub generation: u64,
    /// The meshes, in order.
    pub meshes: Vec<std::sync::Arc<PackedMesh>>,
    /// One per input mesh, same order: its range in the packed buffers.
    pub parts: Vec<MeshPart>,
    /// Bounds of each mesh (`None` when it has no finite vertex).
    pub part_bounds: Vec<Option<BoundsRas>>,
    /// Bounds of all meshes.
    pub bounds: Option<BoundsRas>,
    /// Triangles dropped because an index was out of range.
    pub dropped_triangles: usize,
    /// Vertices and indices of all meshes together.
    pub vertex_count: usize,
    pub index_count: usize,
}

impl PreparedMeshes {
    /// Packs `meshes` (in order) into one vertex and index array with per-vertex normals.
    /// Triangles referring to a missing vertex are dropped (and counted), never a panic.
    pub fn new<'a>(generation: u64, meshes: impl IntoIterator<Item = &'a Mesh>) -> Self {
        Self::from_packed(generation, meshes.into_iter().map(|m| std::sync::Arc::new(PackedMesh::new(m))).collect())
    }

    /// The layout of already packed meshes (in order) in one vertex and index buffer.
    pub fn from_packed(generation: u64, meshes: Vec<std::sync::Arc<PackedMesh>>) -> Self {
        let mut out = PreparedMeshes { generation, ..Default::default() };
        for mesh in &meshes {
            out.bounds = match (out.bounds, mesh.bounds) {
                (Some(a), Some(b)) => Some(a.union(&b)),
                (a, b) => a.or(b),
            };
            out.part_bounds.push(mesh.bounds);
            out.dropped_triangles += mesh.dropped_triangles;
            out.parts.push(MeshPart {
                first_index: u32::try_from(out.index_count).unwrap_or(u32::MAX),
                index_count: u32::try_from(mesh.indices.len()).unwrap_or(0),
                base_vertex: i32::try_from(out.vertex_count).unwrap_or(i32::MAX),
            });
            out.vertex_count += mesh.vertices.len();
            out.index_count += mesh.indices.len();
        }
        out.meshes = meshes;
        out
    }

    pub fn is_empty(&self) -> bool {
        self.index_count == 0
    }

    pub fn triangle_count(&self) -> usize {
        self.index_count / 3
    }

    /// Every vertex, in buffer order, written into `out` (`vertex_count` of them).
    pub fn write_vertices(&self, out: &mut [GpuVertex]) {
        let mut at = 0;
        for m in &self.meshes {
            out[at..at + m.vertices.len()].copy_from_slice(&m.vertices);
            at += m.vertices.len();
        }
    }

    /// Every index, in buffer order (local to its mesh, which `base_vertex` offsets), written
    /// into `out` (`index_count` of them).
    pub fn write_indices(&self, out: &mut [u32]) {
        let mut at = 0;
        for m in &self.meshes {
            out[at..at + m.indices.len()].copy_from_slice(&m.indices);
            at += m.indices.len();
        }
    }
}

/// An axis-aligned box with flat face normals: 24 vertices, 12 outward CCW triangles.
pub fn box_geometry(min: [f32; 3], max: [f32; 3]) -> (Vec<GpuVertex>, Vec<u32>) {
    let mut vertices = Vec::with_capacity(24);
    let mut indices = Vec::with_capacity(36);
    for axis in 0..3 {
        for positive in [false, true] {
            let (u, v) = ((axis + 1) % 3, (axis + 2) % 3);
            let mut normal = [0.0; 3];
            normal[axis] = if positive { 1.0 } else { -1.0 };
            let w = if positive { max[axis] } else { min[axis] };
            let base = vertices.len() as u32;
            for (su, sv) in [(false, false), (true, false), (true, true), (false, true)] {
                let mut p = [0.0; 3];
                p[axis] = w;
                p[u] = if su { max[u] } else { min[u] };
                p[v] = if sv { max[v] } else { min[v] };
                vertices.push(GpuVertex { position: p, normal });
            }
            // (u, v, axis) is right-handed, so (0,0)→(1,0)→(1,1) is CCW seen from +axis.
            if positive {
                indices.extend_from_slice(&[base, base + 1, base + 2, base, base + 2, base + 3]);
            } else {
                indices.extend_from_slice(&[base, base + 2, base + 1, base, base + 3, base + 2]);
            }
        }
    }
    (vertices, indices)
}

/// Half-thickness of a marker rod, as a fraction of its half-length.
const ROD_HALF_THICKNESS: f32 = 0.06;

/// The crosshair marker: three rods along R, A and S from −1 to +1 (scaled per draw).
/// Returns the packed geometry and one part per rod, in R, A, S order.
pub fn marker_geometry() -> (Vec<GpuVertex>, Vec<u32>, [MeshPart; 3]) {
    let mut vertices = Vec::new();
    let mut indices = Vec::new();
    let parts = std::array::from_fn(|axis| {
        let t = ROD_HALF_THICKNESS;
        let mut min = [-t; 3];
        let mut max = [t; 3];
        min[axis] = -1.0;
        max[axis] = 1.0;
        let (v, i) = box_geometry(min, max);
        let part = MeshPart {
            first_index: indices.len() as u32,
            index_count: i.len() as u32,
            base_vertex: vertices.len() as i32,
        };
        vertices.extend(v);
        indices.extend(i);
        part
    });
    (vertices, indices, parts)
}

/// The two triangles (six vertices, both windings facing the same way) of a quad given by its
/// corners in order around the edge.
pub fn quad_vertices(corners: &[[f32; 3]; 4]) -> [GpuVertex; 6] {
    let [a, b, c, d] = *corners;
    let u = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
    let v = [d[0] - b[0], d[1] - b[1], d[2] - b[2]];
    let n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
    let len = (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt();
    let normal = if len > 0.0 && len.is_finite() { n.map(|x| x / len) } else { [0.0; 3] };
    [a, b, c, a, c, d].map(|position| GpuVertex { position, normal })
}

/// sRGB-encoded 8-bit colour (straight alpha) → linear RGB and alpha in [0, 1].
pub fn srgba_to_linear(c: [u8; 4]) -> [f32; 4] {
    let lin = |x: u8| {
        let s = f32::from(x) / 255.0;
        if s <= 0.04045 { s / 12.92 } else { ((s + 0.055) / 1.055).powf(2.4) }
    };
    [lin(c[0]), lin(c[1]), lin(c[2]), f32::from(c[3]) / 255.0]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tetra() -> Mesh {
        // Outward CCW tetrahedron.
        Mesh {
            vertices: vec![[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        }
    }

    #[test]
    fn normals_point_outward() {
        let mesh = tetra();
        let p = PreparedMeshes::new(1, [&mesh]);
        let normals: Vec<[f32; 3]> = p.meshes[0].vertices.iter().map(|v| v.normal).collect();
        let centre = [0.25f32; 3];
        for (p, n) in mesh.vertices.iter().zip(&normals) {
            let out: f32 = (0..3).map(|k| (p[k] - centre[k]) * n[k]).sum();
            assert!(out > 0.0, "{p:?} {n:?}");
            let len: f32 = n.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((len - 1.0).abs() < 1e-6);
        }
        // The apex (0,0,1) touches three faces with area-weighted normals −x, −y and (1,1,1).
        let n3 = normals[3];
        assert!((n3[0] - n3[1]).abs() < 1e-6 && n3[2] > 0.0);
    }

    #[test]
    fn packing_offsets_and_bad_indices() {
        let a = tetra();
        let mut b = tetra();
        b.vertices.iter_mut().for_each(|v| v[0] += 10.0);
        b.triangles.push([0, 1, 99]); // out of range: dropped
        let p = PreparedMeshes::new(7, [&a, &b]);
        assert_eq!(p.generation, 7);
        assert_eq!(p.vertex_count, 8);
        let mut vertices = vec![GpuVertex::default(); p.vertex_count];
        p.write_vertices(&mut vertices);
        assert_eq!(vertices[4].position, [10.0, 0.0, 0.0], "the second mesh follows the first");
        let mut indices = vec![0; p.index_count];
        p.write_indices(&mut indices);
        assert_eq!(&indices[12..15], &[0, 2, 1], "indices stay local to their mesh (base_vertex offsets them)");
        assert_eq!(p.dropped_triangles, 1);
        assert_eq!(p.triangle_count(), 8);
        assert_eq!(p.parts[0], MeshPart { first_index: 0, index_count: 12, base_vertex: 0 });
        assert_eq!(p.parts[1], MeshPart { first_index: 12, index_count: 12, base_vertex: 4 });
        let bounds = p.bounds.expect("bounds");
        assert_eq!(bounds.min, [0.0, 0.0, 0.0]);
        assert_eq!(bounds.max, [11.0, 1.0, 1.0]);
    }

    #[test]
    fn box_faces_are_outward_ccw() {
        let (v, idx) = box_geometry([-1.0; 3], [2.0; 3]);
        for t in idx.chunks(3) {
            let [a, b, c] = [v[t[0] as usize], v[t[1] as usize], v[t[2] as usize]];
            let u = [0, 1, 2].map(|k| b.position[k] - a.position[k]);
            let w = [0, 1, 2].map(|k| c.position[k] - a.position[k]);
            let n = [u[1] * w[2] - u[2] * w[1], u[2] * w[0] - u[0] * w[2], u[0] * w[1] - u[1] * w[0]];
            let dot: f32 = (0..3).map(|k| n[k] * a.normal[k]).sum();
            assert!(dot > 0.0, "triangle {t:?} winds against its normal");
        }
    }

    #[test]
    fn srgb_conversion_endpoints() {
        assert_eq!(srgba_to_linear([0, 255, 0, 128]), [0.0, 1.0, 0.0, 128.0 / 255.0]);
        let mid = srgba_to_linear([188, 0, 0, 255])[0];
        assert!((mid - 0.5).abs() < 0.01, "{mid}");
    }
}
