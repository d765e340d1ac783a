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

/// How label surfaces are exported: which labels (id and the object name written), smoothing
/// (Taubin iterations), the fraction of triangles kept, and the coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct SurfaceExport {
    pub labels: Vec<(u16, String)>,
    pub smooth: usize,
    /// `None`: every triangle; `Some(f)`: about that fraction, in (0, 1].
    pub decimate: Option<f64>,
    pub space: MeshSpace,
}

/// Meshes the chosen labels of `map` (in parallel), smooths and decimates them as asked and
/// writes them to `path` (format by extension, written atomically): the one path from a label
/// map to a surface file, for `sam3d-studio mesh` and the viewer's File → Export surfaces.
/// Returns the triangles written. A label with no voxel is an error naming it.
pub fn export_label_surfaces(map: &crate::volume::LabelMap, path: &Path, e: &SurfaceExport) -> Result<usize, ShapeError> {
    use rayon::prelude::*;
    MeshFormat::from_path(path)?;
    if let Some(r) = e.decimate.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
        return Err(ShapeError::new(path, format!("the fraction of triangles to keep must lie in (0, 1]; got {r}")));
    }
    if e.labels.is_empty() {
        return Err(ShapeError::new(path, "no label to export"));
    }
    let meshes: Vec<Mesh> = e
        .labels
        .par_iter()
        .map(|(l, _)| {
            let mut m = super::mesh_of_label(map, *l);
            if e.smooth > 0 {
                m.taubin_smooth(e.smooth);
            }
            if let Some(r) = e.decimate {
                m.decimate(r);
            }
            m
        })
        .collect();
    if let Some(((l, name), _)) = e.labels.iter().zip(&meshes).find(|(_, m)| m.is_empty()) {
        return Err(ShapeError::new(path, format!("label {l} ({name}) has no voxels to make a surface of")));
    }
    let objects: Vec<MeshObject> = e.labels.iter().zip(&meshes).map(|((l, n), m)| MeshObject { label: *l, name: n, mesh: m }).collect();
    write_mesh(path, &objects, e.space)?;
    Ok(meshes.iter().map(|m| m.triangles.len()).sum())
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

/// Reads a binary little-endian PLY of the layout [`ply_bytes`] writes (vertices `float x, y,
/// z`; faces `list uchar int|uint vertex_indices`, optionally followed by `ushort label`, all
/// triangles) back into one mesh (all objects together; coordinates as stored). Anything else
/// is an error that says what it found: this reads our own files exactly, it is not a
/// general PLY reader.
pub fn read_ply(path: &Path) -> Result<Mesh, ShapeError> {
    let bytes = std::fs::read(path).map_err(|e| ShapeError::new(path, format!("cannot read: {e}")))?;
    mesh_from_ply_bytes(&bytes).map_err(|problem| ShapeError::new(path, problem))
}

/// [`read_ply`] on bytes in memory.
pub fn mesh_from_ply_bytes(bytes: &[u8]) -> Result<Mesh, String> {
    const END: &[u8] = b"end_header\n";
    let end = bytes.windows(END.len()).position(|w| w == END).ok_or("not a PLY file (no end_header line)")? + END.len();
    let header = std::str::from_utf8(&bytes[..end]).map_err(|_| "the PLY header is not text".to_string())?;
    let mut lines = header.lines();
    if lines.next() != Some("ply") {
        return Err("not a PLY file (no 'ply' first line)".into());
    }
    let (mut nv, mut nf) = (None, None);
    let mut element = "";
    let (mut vertex_props, mut face_props) = (Vec::new(), Vec::new());
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["format", "binary_little_endian", "1.0"] => {}
            ["format", other, ..] => return Err(format!("PLY format {other} is not read here (binary_little_endian only)")),
            ["comment", ..] | ["end_header"] | [] => {}
            ["element", name, n] => {
                let n: usize = n.parse().map_err(|_| format!("bad element count in {line:?}"))?;
                element = match *name {
                    "vertex" => {
                        nv = Some(n);
                        "vertex"
                    }
                    "face" => {
                        nf = Some(n);
                        "face"
                    }
                    other => return Err(format!("unexpected PLY element {other:?}")),
                };
            }
            ["property", rest @ ..] => match element {
                "vertex" => vertex_props.push(rest.join(" ")),
                "face" => face_props.push(rest.join(" ")),
                _ => return Err(format!("PLY property outside an element: {line:?}")),
            },
            _ => return Err(format!("unexpected PLY header line {line:?}")),
        }
    }
    let nv = nv.ok_or("the PLY header has no vertex element")?;
    let nf = nf.unwrap_or(0);
    if vertex_props != ["float x", "float y", "float z"] {
        return Err(format!("PLY vertices must be 'float x, y, z', found {vertex_props:?}"));
    }
    let label = match face_props.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] if nf == 0 => false,
        ["list uchar int vertex_indices"] | ["list uchar uint vertex_indices"] => false,
        ["list uchar int vertex_indices", "ushort label"] | ["list uchar uint vertex_indices", "ushort label"] => true,
        other => return Err(format!("PLY faces must be 'list uchar int vertex_indices' (and an optional 'ushort label'), found {other:?}")),
    };
    let face_bytes = 13 + if label { 2 } else { 0 };
    let body = &bytes[end..];
    let need = nv.checked_mul(12).and_then(|v| nf.checked_mul(face_bytes).and_then(|f| v.checked_add(f))).ok_or("PLY element counts overflow")?;
    if body.len() != need {
        return Err(format!("the PLY body has {} bytes, its header says {need} ({nv} vertices, {nf} faces)", body.len()));
    }
    let f32_at = |o: usize| f32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
    let vertices: Vec<[f32; 3]> = (0..nv).map(|v| [f32_at(v * 12), f32_at(v * 12 + 4), f32_at(v * 12 + 8)]).collect();
    let faces = &body[nv * 12..];
    let mut triangles = Vec::with_capacity(nf);
    for f in 0..nf {
        let r = &faces[f * face_bytes..(f + 1) * face_bytes];
        if r[0] != 3 {
            return Err(format!("PLY face {f} has {} vertices; only triangles are read", r[0]));
        }
        let idx = |o: usize| u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
        let t = [idx(1), idx(5), idx(9)];
        if t.iter().any(|&i| i as usize >= nv) {
            return Err(format!("PLY face {f} names vertex {t:?}, there are {nv}"));
        }
        triangles.push(t);
    }
    Ok(Mesh { vertices, triangles })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_objects() -> (Mesh, Mesh) {
        let a = Mesh { vertices: vec![[0.0, 0.0, 0.0], [1.5, 0.0, 0.0], [0.0, 2.25, -1.0]], triangles: vec![[0, 1, 2]] };
        let b = Mesh { vertices: vec![[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, 7.0]], triangles: vec![[0, 2, 1], [0, 1, 3]] };
        (a, b)
    }

    #[test]
    fn ply_round_trip_is_exact() {
        let (a, b) = two_objects();
        let objs = [MeshObject { label: 1, name: "a", mesh: &a }, MeshObject { label: 7, name: "b", mesh: &b }];
        let m = mesh_from_ply_bytes(&ply_bytes(&objs, MeshSpace::Ras)).expect("reads");
        let mut want = a.clone();
        want.append(&b);
        assert_eq!(m, want);
        // LPS: x and y negated, exactly.
        let l = mesh_from_ply_bytes(&ply_bytes(&objs[..1], MeshSpace::Lps)).expect("reads");
        assert_eq!(l.vertices[2], [-0.0, -2.25, -1.0]);
        // An empty mesh round-trips too.
        let e = Mesh::default();
        assert_eq!(mesh_from_ply_bytes(&ply_bytes(&[MeshObject { label: 1, name: "e", mesh: &e }], MeshSpace::Ras)).expect("reads"), e);
    }

    #[test]
    fn ply_reader_names_what_is_wrong() {
        let (a, _) = two_objects();
        let bytes = ply_bytes(&[MeshObject { label: 1, name: "a", mesh: &a }], MeshSpace::Ras);
        let short = mesh_from_ply_bytes(&bytes[..bytes.len() - 1]).expect_err("truncated");
        assert!(short.contains("header says"), "{short}");
        let ascii = String::from_utf8_lossy(&bytes).replace("binary_little_endian", "ascii").into_bytes();
        assert!(mesh_from_ply_bytes(&ascii).expect_err("ascii").contains("ascii"));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 6..n - 2].copy_from_slice(&9u32.to_le_bytes()); // last index of the last face
        assert!(mesh_from_ply_bytes(&bad).expect_err("index").contains("there are 3"));
        assert!(mesh_from_ply_bytes(b"hello").expect_err("text").contains("not a PLY"));
    }
}
