//! Meshes from label maps and scalar fields (marching cubes, see [`super::march`]), mapped to
//! RAS mm through the volume's affine, and mesh operations: area, enclosed volume, edge checks,
//! Taubin smoothing, quadric decimation.

use super::Mesh;
use super::march::{VoxelMesh, march, mask_field};
use crate::geometry::{RasFromVoxel, VoxelIjk};
use crate::volume::{LabelMap, OnGrid};
use nalgebra::{Matrix3, Vector3};
use super::sdf::bounding_box_by;
use ndarray::{ArrayView3, Zip, s};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Which side of the iso-level is inside the surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inside {
    /// Values above the iso-level are inside (masks, probabilities, occupancy).
    Above,
    /// Values below the iso-level are inside (signed distance fields, negative inside).
    Below,
}

/// Surface of a binary mask (`[k, j, i]`), at the midpoints between inside and outside voxel
/// centres, in RAS mm. Closed even where the mask touches the grid border.
pub fn mesh_from_mask(mask: ArrayView3<bool>, ras_from_voxel: &RasFromVoxel) -> Mesh {
    Mesh::from_voxel_mesh(march(mask_field(mask).view(), [0; 3]), ras_from_voxel)
}

/// Iso-surface of a scalar field (`[k, j, i]`) at `iso`, linearly interpolated along grid edges,
/// in RAS mm. NaN voxels count as outside; values are continued past the border so that the
/// surface closes half a voxel outside the grid.
pub fn mesh_from_field(field: ArrayView3<f32>, iso: f32, inside: Inside, ras_from_voxel: &RasFromVoxel) -> Mesh {
    let mut g = field.to_owned();
    Zip::from(&mut g).par_for_each(|v| {
        *v = match inside {
            Inside::Above => *v - iso,
            Inside::Below => iso - *v,
        }
    });
    Mesh::from_voxel_mesh(march(g.view(), [0; 3]), ras_from_voxel)
}

/// Surface of one label of a label map, in RAS mm.
pub fn mesh_of_label(labels: &LabelMap, label: u16) -> Mesh {
    mesh_of_labels(labels, |l| l == label)
}

/// Surface of the voxels whose label passes `select` (say `|l| l != 0` for the whole
/// foreground), in RAS mm. Only the selection's bounding box is visited.
pub fn mesh_of_labels(labels: &LabelMap, select: impl Fn(u16) -> bool + Sync) -> Mesh {
    let Some((lo, hi)) = bounding_box_by(labels.data.view(), |&l| select(l)) else { return Mesh::default() };
    let sh = labels.data.shape();
    let lo: [usize; 3] = std::array::from_fn(|d| lo[d].saturating_sub(1));
    let hi: [usize; 3] = std::array::from_fn(|d| (hi[d] + 2).min(sh[d]));
    let crop = labels.data.slice(s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]);
    let mut g = ndarray::Array3::<f32>::zeros(crop.raw_dim());
    Zip::from(&mut g).and(&crop).par_for_each(|g, &l| *g = if select(l) { 0.5 } else { -0.5 });
    Mesh::from_voxel_mesh(march(g.view(), lo), labels.ras_from_voxel())
}

/// Surface of a binary mask held as a crop of a larger grid, at a coarser resolution: the
/// fraction of inside voxels in each block of `block_ijk` voxels is marched at ½ (vertices
/// interpolated along the block lattice), then `smooth` Taubin iterations. The surface
/// encloses about the mask's volume, has about one vertex per block on it, and is watertight
/// like every marching-cubes surface here. With blocks of one voxel and no smoothing it is
/// [`mesh_from_mask`] of the crop.
///
/// `origin_kji` is the array index on the grid (`grid`, `ras_from_voxel`) of `mask[[0, 0, 0]]`.
/// Vertices are in RAS mm, kept within the grid's extent (voxel centres ± ½).
pub fn mesh_of_mask_blocks(
    mask: ArrayView3<bool>,
    origin_kji: [usize; 3],
    grid: crate::geometry::GridShape,
    ras_from_voxel: &RasFromVoxel,
    block_ijk: [usize; 3],
    smooth: usize,
) -> Mesh {
    let [fi, fj, fk] = block_ijk.map(|b| b.max(1));
    let (lk, lj, li) = mask.dim();
    if mask.is_empty() {
        return Mesh::default();
    }
    let (bk, bj, bi) = (lk.div_ceil(fk), lj.div_ceil(fj), li.div_ceil(fi));
    let per_block = 1.0 / (fi * fj * fk) as f32;
    let mut field = ndarray::Array3::<f32>::zeros((bk, bj, bi));
    field.axis_iter_mut(ndarray::Axis(0)).into_par_iter().enumerate().for_each(|(b, mut plane)| {
        let mut acc = vec![0u32; bj * bi];
        for k in b * fk..((b + 1) * fk).min(lk) {
            for j in 0..lj {
                let out = &mut acc[(j / fj) * bi..(j / fj + 1) * bi];
                let row = mask.slice(s![k, j, ..]);
                match row.as_slice() {
                    Some(r) => {
                        for (o, chunk) in out.iter_mut().zip(r.chunks(fi)) {
                            *o += chunk.iter().filter(|&&m| m).count() as u32;
                        }
                    }
                    None => {
                        for (i, &m) in row.iter().enumerate() {
                            out[i / fi] += u32::from(m);
                        }
                    }
                }
            }
        }
        for (o, &a) in plane.iter_mut().zip(&acc) {
            *o = a as f32 * per_block - 0.5;
        }
    });
    let mut vm = march(field.view(), [0; 3]);
    // Block lattice → voxel index: block b along an axis is centred on voxel origin + b·f + (f − 1)/2.
    let f = [fi as f64, fj as f64, fk as f64];
    let o = [origin_kji[2] as f64, origin_kji[1] as f64, origin_kji[0] as f64];
    let n = grid.ijk();
    let clamp = |p: &mut [f64; 3]| {
        for d in 0..3 {
            p[d] = p[d].clamp(-0.5, n[d] as f64 - 0.5);
        }
    };
    vm.vertices.par_iter_mut().for_each(|p| {
        for d in 0..3 {
            p[d] = o[d] + p[d] * f[d] + (f[d] - 1.0) / 2.0;
        }
        clamp(p);
    });
    if smooth > 0 {
        // Smoothing commutes with the affine map, so it runs in voxel index space, where the
        // grid's extent can be kept.
        taubin_oriented(&mut vm, smooth, 0.5, -0.53);
        vm.vertices.par_iter_mut().for_each(clamp);
    }
    Mesh::from_voxel_mesh(vm, ras_from_voxel)
}

/// Taubin λ|μ smoothing of a closed, consistently oriented mesh (what marching cubes gives):
/// there every neighbour `b` of `a` appears exactly once as a directed edge `a → b` of a
/// triangle, so the neighbour lists are read off the triangles without sorting. Same update as
/// [`Mesh::taubin_smooth_with`].
fn taubin_oriented(vm: &mut VoxelMesh, iterations: usize, lambda: f32, mu: f32) {
    let nv = vm.vertices.len();
    let mut offsets = vec![0u32; nv + 1];
    for t in &vm.triangles {
        for &v in t {
            offsets[v as usize + 1] += 1;
        }
    }
    for v in 0..nv {
        offsets[v + 1] += offsets[v];
    }
    let mut fill = offsets.clone();
    let mut nb = vec![0u32; offsets[nv] as usize];
    for t in &vm.triangles {
        for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
            nb[fill[a as usize] as usize] = b;
            fill[a as usize] += 1;
        }
    }
    // f32 like `Mesh`, relative to the first vertex (voxel indices stay small and exact enough).
    let o = vm.vertices.first().copied().unwrap_or_default();
    let mut cur: Vec<[f32; 3]> = vm.vertices.par_iter().map(|p| [(p[0] - o[0]) as f32, (p[1] - o[1]) as f32, (p[2] - o[2]) as f32]).collect();
    let mut next = cur.clone();
    for _ in 0..iterations {
        for factor in [lambda, mu] {
            let src = &cur;
            next.par_iter_mut().enumerate().for_each(|(v, out)| {
                let ns = &nb[offsets[v] as usize..offsets[v + 1] as usize];
                let p = src[v];
                if ns.is_empty() {
                    *out = p;
                    return;
                }
                let mut m = [0f32; 3];
                for &n in ns {
                    let q = src[n as usize];
                    m[0] += q[0];
                    m[1] += q[1];
                    m[2] += q[2];
                }
                let k = ns.len() as f32;
                *out = [p[0] + factor * (m[0] / k - p[0]), p[1] + factor * (m[1] / k - p[1]), p[2] + factor * (m[2] / k - p[2])];
            });
            std::mem::swap(&mut cur, &mut next);
        }
    }
    vm.vertices.par_iter_mut().zip(cur.par_iter()).for_each(|(p, q)| *p = [q[0] as f64 + o[0], q[1] as f64 + o[1], q[2] as f64 + o[2]]);
}

/// Edge statistics of a triangle mesh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EdgeReport {
    /// Distinct undirected edges.
    pub edges: usize,
    /// Edges used by one face only (holes).
    pub boundary: usize,
    /// Edges used by more than two faces.
    pub non_manifold: usize,
    /// Edges used twice in the same direction (neighbouring faces with opposite windings).
    pub misoriented: usize,
    /// Triangles with a repeated vertex index.
    pub degenerate_faces: usize,
}

impl EdgeReport {
    /// Closed, edge-manifold and consistently oriented: every edge in exactly two faces, once in
    /// each direction.
    pub fn is_watertight(&self) -> bool {
        self.boundary == 0 && self.non_manifold == 0 && self.misoriented == 0 && self.degenerate_faces == 0
    }
}

impl Mesh {
    /// Maps a voxel-space mesh to RAS mm; flips the winding when the affine flips handedness,
    /// so normals keep pointing outward.
    pub(crate) fn from_voxel_mesh(vm: VoxelMesh, ras_from_voxel: &RasFromVoxel) -> Mesh {
        let vertices = vm
            .vertices
            .par_iter()
            .map(|p| {
                let r = ras_from_voxel.apply(VoxelIjk::new(p[0], p[1], p[2]));
                [r.x() as f32, r.y() as f32, r.z() as f32]
            })
            .collect();
        let mut triangles = vm.triangles;
        if ras_from_voxel.determinant() < 0.0 {
            triangles.par_iter_mut().for_each(|t| t.swap(1, 2));
        }
        Mesh { vertices, triangles }
    }

    pub fn is_empty(&self) -> bool {
        self.triangles.is_empty()
    }

    fn corner(&self, t: &[u32; 3], n: usize) -> Vector3<f64> {
        let v = self.vertices[t[n] as usize];
        Vector3::new(v[0] as f64, v[1] as f64, v[2] as f64)
    }

    /// Area-weighted normal of a triangle (length = twice its area).
    fn cross(&self, t: &[u32; 3]) -> Vector3<f64> {
        let (a, b, c) = (self.corner(t, 0), self.corner(t, 1), self.corner(t, 2));
        (b - a).cross(&(c - a))
    }

    /// Unit normal of triangle `t` (zero for a degenerate one), by the right-hand rule.
    pub fn face_normal(&self, t: usize) -> [f32; 3] {
        let n = self.cross(&self.triangles[t]);
        let len = n.norm();
        if len > 0.0 { [(n.x / len) as f32, (n.y / len) as f32, (n.z / len) as f32] } else { [0.0; 3] }
    }

    /// Per-vertex unit normals (area-weighted average of face normals), for rendering.
    pub fn vertex_normals(&self) -> Vec<[f32; 3]> {
        let mut acc = vec![Vector3::<f64>::zeros(); self.vertices.len()];
        for t in &self.triangles {
            let n = self.cross(t);
            for &v in t {
                acc[v as usize] += n;
            }
        }
        acc.iter()
            .map(|n| {
                let l = n.norm();
                if l > 0.0 { [(n.x / l) as f32, (n.y / l) as f32, (n.z / l) as f32] } else { [0.0; 3] }
            })
            .collect()
    }

    /// Total surface area, mm².
    pub fn area_mm2(&self) -> f64 {
        self.triangles.par_iter().map(|t| 0.5 * self.cross(t).norm()).sum()
    }

    /// Enclosed volume, mm³, by the divergence theorem: Σ a·(b×c)/6 over triangles. Positive
    /// for a closed mesh with outward normals; meaningless for an open one.
    pub fn volume_mm3(&self) -> f64 {
        // Relative to a point on the mesh, to keep the terms small for meshes far from the origin.
        let Some(o) = self.vertices.first().map(|v| Vector3::new(v[0] as f64, v[1] as f64, v[2] as f64)) else {
            return 0.0;
        };
        self.triangles
            .par_iter()
            .map(|t| {
                let (a, b, c) = (self.corner(t, 0) - o, self.corner(t, 1) - o, self.corner(t, 2) - o);
                a.dot(&b.cross(&c)) / 6.0
            })
            .sum()
    }

    /// Counts boundary, non-manifold and misoriented edges.
    pub fn edge_report(&self) -> EdgeReport {
        let mut keys: Vec<(u64, bool)> = Vec::with_capacity(self.triangles.len() * 3);
        let mut degenerate_faces = 0;
        for t in &self.triangles {
            if t[0] == t[1] || t[1] == t[2] || t[0] == t[2] {
                degenerate_faces += 1;
            }
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                let (lo, hi, forward) = if a < b { (a, b, true) } else { (b, a, false) };
                keys.push((((lo as u64) << 32) | hi as u64, forward));
            }
        }
        keys.par_sort_unstable();
        let mut r = EdgeReport { degenerate_faces, ..Default::default() };
        let mut s = 0;
        while s < keys.len() {
            let mut e = s;
            while e < keys.len() && keys[e].0 == keys[s].0 {
                e += 1;
            }
            r.edges += 1;
            match e - s {
                1 => r.boundary += 1,
                2 => {
                    if keys[s].1 == keys[s + 1].1 {
                        r.misoriented += 1
                    }
                }
                _ => r.non_manifold += 1,
            }
            s = e;
        }
        r
    }

    /// Appends another mesh (vertex indices shifted).
    pub fn append(&mut self, other: &Mesh) {
        let off = self.vertices.len() as u32;
        self.vertices.extend_from_slice(&other.vertices);
        self.triangles.extend(other.triangles.iter().map(|t| [t[0] + off, t[1] + off, t[2] + off]));
    }

    /// The same mesh in LPS mm (x and y negated: a rotation, so the winding stays outward).
    pub fn to_lps(&self) -> Mesh {
        Mesh {
            vertices: self.vertices.iter().map(|v| [-v[0], -v[1], v[2]]).collect(),
            triangles: self.triangles.clone(),
        }
    }

    /// Vertex neighbours as CSR (offsets, indices), from the triangle edges.
    fn neighbours(&self) -> (Vec<usize>, Vec<u32>) {
        let mut pairs: Vec<(u32, u32)> = Vec::with_capacity(self.triangles.len() * 6);
        for t in &self.triangles {
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                pairs.push((a, b));
                pairs.push((b, a));
            }
        }
        pairs.par_sort_unstable();
        pairs.dedup();
        let mut offsets = vec![0usize; self.vertices.len() + 1];
        for &(a, _) in &pairs {
            offsets[a as usize + 1] += 1;
        }
        for v in 0..self.vertices.len() {
            offsets[v + 1] += offsets[v];
        }
        (offsets, pairs.into_iter().map(|p| p.1).collect())
    }

    /// Taubin λ|μ smoothing (uniform Laplacian, λ = 0.5, μ = −0.53): smooths the voxel
    /// staircase without the shrinkage of plain Laplacian smoothing. Topology is unchanged.
    pub fn taubin_smooth(&mut self, iterations: usize) {
        self.taubin_smooth_with(iterations, 0.5, -0.53);
    }

    /// Taubin smoothing with explicit factors (`lambda > 0 > mu`, `|mu| > lambda`).
    pub fn taubin_smooth_with(&mut self, iterations: usize, lambda: f32, mu: f32) {
        if iterations == 0 || self.vertices.is_empty() {
            return;
        }
        let (off, nb) = self.neighbours();
        let mut next = self.vertices.clone();
        for _ in 0..iterations {
            for factor in [lambda, mu] {
                let cur = &self.vertices;
                next.par_iter_mut().enumerate().for_each(|(v, out)| {
                    let ns = &nb[off[v]..off[v + 1]];
                    let p = cur[v];
                    if ns.is_empty() {
                        *out = p;
                        return;
                    }
                    let mut m = [0f32; 3];
                    for &n in ns {
                        let q = cur[n as usize];
                        m[0] += q[0];
                        m[1] += q[1];
                        m[2] += q[2];
                    }
                    let k = ns.len() as f32;
                    *out = [
                        p[0] + factor * (m[0] / k - p[0]),
                        p[1] + factor * (m[1] / k - p[1]),
                        p[2] + factor * (m[2] / k - p[2]),
                    ];
                });
                std::mem::swap(&mut self.vertices, &mut next);
            }
        }
    }

    /// Quadric-error edge-collapse decimation (Garland–Heckbert) down to about `ratio` of the
    /// triangles (`0 < ratio ≤ 1`). A collapse is only taken when it keeps the surface a closed
    /// 2-manifold (the link condition: the two end vertices share exactly the two opposite
    /// vertices of the edge's faces) and flips no face, so a watertight mesh stays watertight.
    /// Unused vertices are dropped.
    pub fn decimate(&mut self, ratio: f64) {
        if !(ratio > 0.0 && ratio < 1.0) || self.triangles.len() < 8 {
            return;
        }
        let target = ((self.triangles.len() as f64) * ratio).round().max(4.0) as usize;
        Decimator::new(self).run(target, self);
    }
}

/// Symmetric 4×4 quadric stored as its 10 upper entries.
#[derive(Clone, Copy, Default)]
struct Quadric([f64; 10]);

impl Quadric {
    fn plane(n: Vector3<f64>, d: f64, w: f64) -> Self {
        let (a, b, c) = (n.x, n.y, n.z);
        Quadric([a * a, a * b, a * c, a * d, b * b, b * c, b * d, c * c, c * d, d * d].map(|x| x * w))
    }
    fn add(&self, o: &Quadric) -> Quadric {
        let mut r = self.0;
        for (x, y) in r.iter_mut().zip(o.0.iter()) {
            *x += y;
        }
        Quadric(r)
    }
    fn eval(&self, p: &Vector3<f64>) -> f64 {
        let q = &self.0;
        let (x, y, z) = (p.x, p.y, p.z);
        q[0] * x * x + 2.0 * q[1] * x * y + 2.0 * q[2] * x * z + 2.0 * q[3] * x + q[4] * y * y + 2.0 * q[5] * y * z
            + 2.0 * q[6] * y
            + q[7] * z * z
            + 2.0 * q[8] * z
            + q[9]
    }
    /// The minimiser, when the quadric is well conditioned.
    fn optimum(&self) -> Option<Vector3<f64>> {
        let q = &self.0;
        let a = Matrix3::new(q[0], q[1], q[2], q[1], q[4], q[5], q[2], q[5], q[7]);
        let b = Vector3::new(-q[3], -q[6], -q[8]);
        let scale = a.abs().max();
        if scale <= 0.0 || a.determinant().abs() < 1e-9 * scale * scale * scale {
            return None;
        }
        a.try_inverse().map(|inv| inv * b)
    }
}

#[derive(PartialEq)]
struct Candidate {
    cost: f64,
    a: u32,
    b: u32,
    stamp: (u32, u32),
    target: [f64; 3],
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on cost.
        other.cost.total_cmp(&self.cost)
    }
}

struct Decimator {
    pos: Vec<Vector3<f64>>,
    quadric: Vec<Quadric>,
    faces: Vec<[u32; 3]>,
    face_alive: Vec<bool>,
    vert_faces: Vec<Vec<u32>>,
    vert_alive: Vec<bool>,
    stamp: Vec<u32>,
    alive_faces: usize,
}

impl Decimator {
    fn new(mesh: &Mesh) -> Self {
        let pos: Vec<Vector3<f64>> =
            mesh.vertices.iter().map(|v| Vector3::new(v[0] as f64, v[1] as f64, v[2] as f64)).collect();
        let mut quadric = vec![Quadric::default(); pos.len()];
        let mut vert_faces = vec![Vec::new(); pos.len()];
        for (f, t) in mesh.triangles.iter().enumerate() {
            let (a, b, c) = (pos[t[0] as usize], pos[t[1] as usize], pos[t[2] as usize]);
            let n = (b - a).cross(&(c - a));
            let area2 = n.norm();
            if area2 > 0.0 {
                let n = n / area2;
                let q = Quadric::plane(n, -n.dot(&a), area2 * 0.5);
                for &v in t {
                    quadric[v as usize] = quadric[v as usize].add(&q);
                }
            }
            for &v in t {
                vert_faces[v as usize].push(f as u32);
            }
        }
        let n = pos.len();
        Decimator {
            pos,
            quadric,
            faces: mesh.triangles.clone(),
            face_alive: vec![true; mesh.triangles.len()],
            vert_faces,
            vert_alive: vec![true; n],
            stamp: vec![0; n],
            alive_faces: mesh.triangles.len(),
        }
    }

    fn neighbours(&self, v: u32) -> Vec<u32> {
        let mut ns: Vec<u32> = self.vert_faces[v as usize]
            .iter()
            .filter(|&&f| self.face_alive[f as usize])
            .flat_map(|&f| self.faces[f as usize])
            .filter(|&u| u != v)
            .collect();
        ns.sort_unstable();
        ns.dedup();
        ns
    }

    fn candidate(&self, a: u32, b: u32) -> Candidate {
        let q = self.quadric[a as usize].add(&self.quadric[b as usize]);
        let (pa, pb) = (self.pos[a as usize], self.pos[b as usize]);
        let mid = (pa + pb) * 0.5;
        let mut best = (q.eval(&mid), mid);
        for p in [pa, pb].into_iter().chain(q.optimum().filter(|p| (p - mid).norm() <= (pa - pb).norm())) {
            let c = q.eval(&p);
            if c < best.0 {
                best = (c, p);
            }
        }
        Candidate {
            cost: best.0.max(0.0),
            a,
            b,
            stamp: (self.stamp[a as usize], self.stamp[b as usize]),
            target: [best.1.x, best.1.y, best.1.z],
        }
    }

    /// Can edge (a, b) collapse to `p` keeping a closed manifold with no flipped faces?
    fn allowed(&self, a: u32, b: u32, p: &Vector3<f64>) -> bool {
        let shared: Vec<u32> = self.vert_faces[a as usize]
            .iter()
            .copied()
            .filter(|&f| self.face_alive[f as usize] && self.faces[f as usize].contains(&b))
            .collect();
        if shared.len() != 2 {
            return false;
        }
        let na = self.neighbours(a);
        let nb = self.neighbours(b);
        if na.len() <= 3 || nb.len() <= 3 {
            return false;
        }
        let common = na.iter().filter(|v| nb.binary_search(v).is_ok()).count();
        if common != 2 {
            return false;
        }
        for &v in &[a, b] {
            for &f in &self.vert_faces[v as usize] {
                if !self.face_alive[f as usize] || shared.contains(&f) {
                    continue;
                }
                let t = self.faces[f as usize];
                let old = self.face_cross(t, None);
                let moved = self.face_cross(t, Some((v, p)));
                if moved.norm() <= 1e-12 * old.norm().max(1e-30) || old.dot(&moved) <= 0.2 * old.norm() * moved.norm() {
                    return false;
                }
            }
        }
        true
    }

    fn face_cross(&self, t: [u32; 3], moved: Option<(u32, &Vector3<f64>)>) -> Vector3<f64> {
        let p = |v: u32| match moved {
            Some((m, q)) if m == v => *q,
            _ => self.pos[v as usize],
        };
        let (x, y, z) = (p(t[0]), p(t[1]), p(t[2]));
        (y - x).cross(&(z - x))
    }

    fn run(mut self, target: usize, mesh: &mut Mesh) {
        let mut heap = BinaryHeap::new();
        for t in &self.faces {
            for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                if a < b {
                    heap.push(self.candidate(a, b));
                }
            }
        }
        while self.alive_faces > target {
            let Some(c) = heap.pop() else { break };
            let (a, b) = (c.a, c.b);
            if !self.vert_alive[a as usize]
                || !self.vert_alive[b as usize]
                || c.stamp != (self.stamp[a as usize], self.stamp[b as usize])
            {
                continue;
            }
            let p = Vector3::from(c.target);
            if !self.allowed(a, b, &p) {
                continue;
            }
            // Collapse b into a.
            let b_faces = std::mem::take(&mut self.vert_faces[b as usize]);
            for f in b_faces {
                if !self.face_alive[f as usize] {
                    continue;
                }
                let t = &mut self.faces[f as usize];
                if t.contains(&a) {
                    self.face_alive[f as usize] = false;
                    self.alive_faces -= 1;
                } else {
                    for v in t.iter_mut() {
                        if *v == b {
                            *v = a;
                        }
                    }
                    self.vert_faces[a as usize].push(f);
                }
            }
            let alive = &self.face_alive;
            self.vert_faces[a as usize].retain(|&f| alive[f as usize]);
            self.vert_alive[b as usize] = false;
            self.pos[a as usize] = p;
            self.quadric[a as usize] = self.quadric[a as usize].add(&self.quadric[b as usize]);
            // Only the costs of edges at `a` changed (its quadric and position did).
            self.stamp[a as usize] += 1;
            for n in self.neighbours(a) {
                heap.push(self.candidate(a.min(n), a.max(n)));
            }
        }
        // Compact.
        let mut remap = vec![u32::MAX; self.pos.len()];
        let mut vertices = Vec::new();
        let mut triangles = Vec::with_capacity(self.alive_faces);
        for (f, t) in self.faces.iter().enumerate() {
            if !self.face_alive[f] {
                continue;
            }
            let mut nt = [0u32; 3];
            for (k, &v) in t.iter().enumerate() {
                if remap[v as usize] == u32::MAX {
                    remap[v as usize] = vertices.len() as u32;
                    let p = self.pos[v as usize];
                    vertices.push([p.x as f32, p.y as f32, p.z as f32]);
                }
                nt[k] = remap[v as usize];
            }
            triangles.push(nt);
        }
        mesh.vertices = vertices;
        mesh.triangles = triangles;
    }
}
