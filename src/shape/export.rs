//! Mesh export: binary STL, OBJ, binary PLY; coordinates in RAS mm or LPS mm (what 3D Slicer
//! expects for STL/OBJ). Files are written atomically (temporary file, then rename).

use super::{Mesh, ShapeError};
use crate::volume::atomic_write;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

/// Mesh file format, chosen from the file extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeshFormat {
    /// Binary STL: one triangle soup (several objects are merged).
    Stl,
    /// Wavefront OBJ (text): one `o` object per mesh.
    Obj,
    /// Binary little-endian PLY: one vertex list, faces carry a `label` property naming their object.
    Ply,
}

impl MeshFormat {
    pub fn from_path(path: &Path) -> Result<Self, ShapeError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "stl" => Ok(MeshFormat::Stl),
            "obj" => Ok(MeshFormat::Obj),
            "ply" => Ok(MeshFormat::Ply),
            _ => Err(ShapeError::new(path, "mesh output must end in .stl, .obj or .ply")),
        }
    }
}

/// Coordinate system written to a mesh file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MeshSpace {
    #[default]
    Ras,
    /// LPS mm: x and y negated (a rotation; the winding stays outward).
    Lps,
}

/// One named object of a mesh file: a label id and its mesh (RAS mm).
#[derive(Clone, Copy, Debug)]
pub struct MeshObject<'a> {
    pub label: u16,
    pub name: &'a str,
    pub mesh: &'a Mesh,
}

fn coord(v: [f32; 3], space: MeshSpace) -> [f32; 3] {
    match space {
        MeshSpace::Ras => v,
        MeshSpace::Lps => [-v[0], -v[1], v[2]],
    }
}

/// Writes the objects to `path` in the format its extension names.
pub fn write_mesh(path: &Path, objects: &[MeshObject], space: MeshSpace) -> Result<(), ShapeError> {
    let format = MeshFormat::from_path(path)?;
    let bytes = match format {
        MeshFormat::Stl => stl_bytes(objects, space),
        MeshFormat::Obj => obj_bytes(objects, space),
        MeshFormat::Ply => ply_bytes(objects, space),
    };
    atomic_write(path, |f| f.write_all(&bytes)).map_err(|e| ShapeError::new(path, e.problem))
}

/// Binary STL with all objects merged.
pub fn stl_bytes(objects: &[MeshObject], space: MeshSpace) -> Vec<u8> {
    let n: usize = objects.iter().map(|o| o.mesh.triangles.len()).sum();
    let mut out = Vec::with_capacity(84 + 50 * n);
    let mut header = [b' '; 80];
    let names: Vec<&str> = objects.iter().map(|o| o.name).collect();
    let text = format!("sam3d-studio {} mm: {}", if space == MeshSpace::Lps { "LPS" } else { "RAS" }, names.join(","));
    let text = text.as_bytes();
    // An STL header must not start with "solid" (readers would take it for ASCII); ours does not.
    header[..text.len().min(80)].copy_from_slice(&text[..text.len().min(80)]);
    out.extend_from_slice(&header);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for o in objects {
        let m = o.mesh;
        for (f, t) in m.triangles.iter().enumerate() {
            let nrm = coord(m.face_normal(f), space);
            for x in nrm {
                out.extend_from_slice(&x.to_le_bytes());
            }
            for &v in t {
                for x in coord(m.vertices[v as usize], space) {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            out.extend_from_slice(&0u16.to_le_bytes());
        }
    }
    out
}

/// Wavefront OBJ: one `o` per object, 1-based indices counted over the whole file.
pub fn obj_bytes(objects: &[MeshObject], space: MeshSpace) -> Vec<u8> {
    let mut s = String::new();
    let _ = writeln!(s, "# sam3d-studio mesh, {} mm", if space == MeshSpace::Lps { "LPS" } else { "RAS" });
    let mut base = 1usize;
    for o in objects {
        let _ = writeln!(s, "o {}", o.name);
        for &v in &o.mesh.vertices {
            let [x, y, z] = coord(v, space);
            let _ = writeln!(s, "v {x} {y} {z}");
        }
        for t in &o.mesh.triangles {
            let _ = writeln!(s, "f {} {} {}", t[0] as usize + base, t[1] as usize + base, t[2] as usize + base);
        }
        base += o.mesh.vertices.len();
    }
    s.into_bytes()
}

/// Binary little-endian PLY; each face carries the `label` of its object.
pub fn ply_bytes(objects: &[MeshObject], space: MeshSpace) -> Vec<u8> {
    let nv: usize = objects.iter().map(|o| o.mesh.vertices.len()).sum();
    let nf: usize = objects.iter().map(|o| o.mesh.triangles.len()).sum();
    let mut header = String::new();
    let _ = write!(
        header,
        "ply\nformat binary_little_endian 1.0\ncomment sam3d-studio {} mm\n",
        if space == MeshSpace::Lps { "LPS" } else { "RAS" }
    );
    for o in objects {
        let _ = writeln!(header, "comment object {} label {}", o.name, o.label);
    }
    let _ = write!(
        header,
        "element vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n\
         element face {nf}\nproperty list uchar int vertex_indices\nproperty ushort label\nend_header\n"
    );
    let mut out = header.into_bytes();
    out.reserve(nv * 12 + nf * 15);
    for o in objects {
        for &v in &o.mesh.vertices {
            for x in coord(v, space) {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    let mut base = 0u32;
    for o in objects {
        for t in &o.mesh.triangles {
            out.push(3);
            for &v in t {
                out.extend_from_slice(&((v + base) as i32).to_le_bytes());
            }
            out.extend_from_slice(&o.label.to_le_bytes());
        }
        base += o.mesh.vertices.len() as u32;
    }
    out
}
