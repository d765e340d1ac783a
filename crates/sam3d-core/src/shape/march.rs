//! Marching cubes with a case table that is watertight by construction.
//!
//! The table is generated, not typed in: for each of the 256 corner configurations, every cube
//! face gets the contour segments of marching squares on that face, with the ambiguous face
//! (two diagonal corners inside) always resolved the same way — inside corners are separated.
//! Each segment runs from the crossing where a counter-clockwise walk around the face (seen
//! from outside the cube) enters the inside to the crossing where it leaves. A face shared by
//! two cubes sees the same four corners, so both cubes cut it with the same segments, walked in
//! opposite directions; the segments of one cube chain into closed cycles (each crossing is
//! entered from one face and left through the other), and each cycle is fanned into triangles.
//! Hence every mesh edge on a cube face is shared by exactly two triangles with opposite
//! directions, every fan diagonal likewise: the surface is closed, edge-manifold and
//! consistently oriented, with normals pointing from inside to outside in voxel index space.
//!
//! Vertices are shared through edge indexing (one vertex per crossed grid edge), and the grid
//! is padded by one outside layer so surfaces touching the border are closed too.

use ndarray::{Array3, ArrayView3, Axis};
use rayon::prelude::*;
use std::sync::OnceLock;

/// Corner `n` of a cube sits at offset `(n & 1, n >> 1 & 1, n >> 2 & 1)` along (i, j, k).
fn corner_offset(n: usize) -> [usize; 3] {
    [n & 1, (n >> 1) & 1, (n >> 2) & 1]
}

/// The 12 cube edges as (lower corner, axis), axis 0 = i, 1 = j, 2 = k.
fn edges() -> [(usize, usize); 12] {
    let mut e = [(0, 0); 12];
    let mut n = 0;
    for axis in 0..3 {
        for c in 0..8 {
            if c & (1 << axis) == 0 {
                e[n] = (c, axis);
                n += 1;
            }
        }
    }
    e
}

fn edge_between(a: usize, b: usize) -> usize {
    let (lo, hi) = (a.min(b), a.max(b));
    let axis = (hi ^ lo).trailing_zeros() as usize;
    edges().iter().position(|&(c, ax)| c == lo && ax == axis).unwrap_or(usize::MAX)
}

/// Do two cube edges lie on a common face? Edge (corner c, axis a) lies on the faces
/// "axis b at side bit b of c" for both b ≠ a.
fn share_face(e1: usize, e2: usize) -> bool {
    let all = edges();
    let ((c1, a1), (c2, a2)) = (all[e1], all[e2]);
    (0..3).any(|b| b != a1 && b != a2 && (c1 >> b) & 1 == (c2 >> b) & 1)
}

/// Triangles (as cube edge indices, counter-clockwise seen from outside) for every case.
/// Case bit `n` set = corner `n` inside.
pub(crate) fn case_table() -> &'static [Vec<[u8; 3]>; 256] {
    static TABLE: OnceLock<[Vec<[u8; 3]>; 256]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(build_case))
}

fn build_case(case: usize) -> Vec<[u8; 3]> {
    let inside = |c: usize| case & (1 << c) != 0;
    // next[e] = the crossing reached from crossing e along this cube's contour.
    let mut next = [usize::MAX; 12];
    for axis in 0..3 {
        let (b, c) = ((axis + 1) % 3, (axis + 2) % 3);
        for side in 0..2 {
            let at = |u: usize, v: usize| (side << axis) | (u << b) | (v << c);
            // Counter-clockwise around +axis; reversed for the face whose normal is −axis.
            let mut q = [at(0, 0), at(1, 0), at(1, 1), at(0, 1)];
            if side == 0 {
                q.reverse();
            }
            let mut enters = Vec::new();
            let mut exits = Vec::new();
            for t in 0..4 {
                let (p0, p1) = (q[t], q[(t + 1) % 4]);
                if !inside(p0) && inside(p1) {
                    enters.push(t);
                } else if inside(p0) && !inside(p1) {
                    exits.push(t);
                }
            }
            // Pair each enter with the first exit after it: that arc holds only inside corners.
            for &t in &enters {
                let mut u = (t + 1) % 4;
                while !exits.contains(&u) {
                    u = (u + 1) % 4;
                }
                let e_in = edge_between(q[t], q[(t + 1) % 4]);
                let e_out = edge_between(q[u], q[(u + 1) % 4]);
                next[e_in] = e_out;
            }
        }
    }
    let mut tris = Vec::new();
    let mut seen = [false; 12];
    for start in 0..12 {
        if next[start] == usize::MAX || seen[start] {
            continue;
        }
        let mut cycle = Vec::new();
        let mut e = start;
        while !seen[e] {
            seen[e] = true;
            cycle.push(e as u8);
            e = next[e];
        }
        // Fan from an apex whose diagonals all cross the cube's interior: a diagonal lying in
        // a cube face could be produced by the neighbouring cube too (an edge in four faces).
        let n = cycle.len();
        let apex = (0..n)
            .find(|&r| (2..n.saturating_sub(1)).all(|t| !share_face(cycle[r] as usize, cycle[(r + t) % n] as usize)))
            .unwrap_or(0);
        cycle.rotate_left(apex);
        for t in 1..n.saturating_sub(1) {
            tris.push([cycle[0], cycle[t], cycle[t + 1]]);
        }
    }
    tris
}

/// The raw output of marching: vertices in continuous voxel coordinates (i, j, k) and
/// triangles counter-clockwise seen from outside in voxel index space.
#[derive(Debug, Default)]
pub(crate) struct VoxelMesh {
    pub vertices: Vec<[f64; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

/// Marches `inside_amount` (a `[k, j, i]` field where `> 0` is inside and `≤ 0` outside; the
/// surface is its zero level, linearly interpolated along grid edges). Only the bounding box of
/// the inside points, grown by one, is visited; outside the array the field continues as
/// `−|g|` of the nearest border point, so the surface closes half a voxel beyond the border.
/// `origin_kji` is the array index of `g[0, 0, 0]` in the full grid (non-zero for a crop), added
/// to the vertex positions.
pub(crate) fn march(g: ArrayView3<f32>, origin_kji: [usize; 3]) -> VoxelMesh {
    let Some((lo, hi)) = super::sdf::bounding_box_by(g, |&x| x > 0.0) else { return VoxelMesh::default() };
    let sh = g.shape();
    // Padded crop: grid points lo−1 ..= hi+1 along each axis (as signed indices).
    let dims = [hi[0] - lo[0] + 3, hi[1] - lo[1] + 3, hi[2] - lo[2] + 3];
    let origin = [lo[0] as isize - 1, lo[1] as isize - 1, lo[2] as isize - 1];
    let mut crop = Array3::<f32>::zeros(dims);
    crop.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(c, mut plane)| {
        for ((b, a), out) in plane.indexed_iter_mut() {
            let p = [origin[0] + c as isize, origin[1] + b as isize, origin[2] + a as isize];
            let clamp = |x: isize, n: usize| x.clamp(0, n as isize - 1) as usize;
            let q = [clamp(p[0], sh[0]), clamp(p[1], sh[1]), clamp(p[2], sh[2])];
            let v = g[q];
            let v = if v.is_nan() { -1e20 } else { v.clamp(-1e20, 1e20) };
            let outside_grid = (0..3).any(|d| p[d] != q[d] as isize);
            *out = if outside_grid { -v.abs() } else { v };
        }
    });
    let shift = |d: usize| (origin[d] + origin_kji[d] as isize) as f64;
    march_padded(crop.view(), [shift(2), shift(1), shift(0)])
}

/// Marches a field whose outer layer is entirely outside. `offset_ijk` is added to vertices.
fn march_padded(g: ArrayView3<f32>, offset_ijk: [f64; 3]) -> VoxelMesh {
    let [gk, gj, gi] = [g.shape()[0], g.shape()[1], g.shape()[2]];
    if gk < 2 || gj < 2 || gi < 2 {
        return VoxelMesh::default();
    }
    // Phase 1: vertices on the edges owned by each grid layer (i-, j-edges in the layer and
    // k-edges to the next layer), in scan order, with the (point, axis) slot of each.
    let layers: Vec<(Vec<[f64; 3]>, Vec<u32>)> = (0..gk)
        .into_par_iter()
        .map(|c| {
            let mut verts = Vec::new();
            let mut slots = Vec::new();
            let layer = g.index_axis(Axis(0), c);
            let up = (c + 1 < gk).then(|| g.index_axis(Axis(0), c + 1));
            for b in 0..gj {
                for a in 0..gi {
                    let g0 = layer[[b, a]];
                    let in0 = g0 > 0.0;
                    let mut push = |axis: usize, g1: f32| {
                        if (g1 > 0.0) != in0 {
                            let t = (g0 as f64 / (g0 as f64 - g1 as f64)).clamp(0.0, 1.0);
                            let mut p = [a as f64 + offset_ijk[0], b as f64 + offset_ijk[1], c as f64 + offset_ijk[2]];
                            p[axis] += t;
                            verts.push(p);
                            slots.push(((b * gi + a) * 3 + axis) as u32);
                        }
                    };
                    if a + 1 < gi {
                        push(0, layer[[b, a + 1]]);
                    }
                    if b + 1 < gj {
                        push(1, layer[[b + 1, a]]);
                    }
                    if let Some(up) = &up {
                        push(2, up[[b, a]]);
                    }
                }
            }
            (verts, slots)
        })
        .collect();
    let mut offsets = Vec::with_capacity(gk + 1);
    let mut total = 0u32;
    for (v, _) in &layers {
        offsets.push(total);
        total += v.len() as u32;
    }
    let table = case_table();
    let cube_edges = edges();
    // Phase 2: triangles, one cube layer at a time, ids looked up in two dense slot maps.
    let tris: Vec<Vec<[u32; 3]>> = (0..gk - 1)
        .into_par_iter()
        .map_init(
            || (vec![0u32; gj * gi * 3], vec![0u32; gj * gi * 3]),
            |(m0, m1), c| {
                // Only crossed slots are read, and every crossed slot is written: no reset needed.
                for (map, layer) in [(&mut *m0, c), (&mut *m1, c + 1)] {
                    for (n, &slot) in layers[layer].1.iter().enumerate() {
                        map[slot as usize] = offsets[layer] + n as u32;
                    }
                }
                let mut out = Vec::new();
                let l0 = g.index_axis(Axis(0), c);
                let l1 = g.index_axis(Axis(0), c + 1);
                for b in 0..gj - 1 {
                    for a in 0..gi - 1 {
                        let vals = [
                            l0[[b, a]],
                            l0[[b, a + 1]],
                            l0[[b + 1, a]],
                            l0[[b + 1, a + 1]],
                            l1[[b, a]],
                            l1[[b, a + 1]],
                            l1[[b + 1, a]],
                            l1[[b + 1, a + 1]],
                        ];
                        let mut case = 0usize;
                        for (n, v) in vals.iter().enumerate() {
                            if *v > 0.0 {
                                case |= 1 << n;
                            }
                        }
                        if case == 0 || case == 255 {
                            continue;
                        }
                        let id = |e: u8| -> u32 {
                            let (corner, axis) = cube_edges[e as usize];
                            let [dx, dy, dz] = corner_offset(corner);
                            let map: &[u32] = if dz == 0 { m0 } else { m1 };
                            map[((b + dy) * gi + a + dx) * 3 + axis]
                        };
                        for t in &table[case] {
                            out.push([id(t[0]), id(t[1]), id(t[2])]);
                        }
                    }
                }
                out
            },
        )
        .collect();
    let mut vertices = Vec::with_capacity(total as usize);
    for (v, _) in layers {
        vertices.extend(v);
    }
    VoxelMesh { vertices, triangles: tris.concat() }
}

/// `inside_amount` for a binary mask: +0.5 inside, −0.5 outside (iso-surface at edge midpoints).
pub(crate) fn mask_field(mask: ArrayView3<bool>) -> Array3<f32> {
    let mut g = Array3::<f32>::zeros(mask.raw_dim());
    ndarray::Zip::from(&mut g).and(&mask).par_for_each(|g, &m| *g = if m { 0.5 } else { -0.5 });
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_case_is_closed_within_the_cube_faces() {
        // Each cube case alone: every triangle edge that is not on a cube face (a fan diagonal)
        // must appear exactly twice with opposite directions.
        for case in 0..256 {
            let tris = &case_table()[case];
            let mut directed: HashMap<(u8, u8), i32> = HashMap::new();
            for t in tris {
                for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                    *directed.entry((a, b)).or_default() += 1;
                }
            }
            for (&(a, b), &n) in &directed {
                assert_eq!(n, 1, "case {case}: directed edge {a}->{b} used {n} times");
            }
        }
        assert!(case_table()[0].is_empty() && case_table()[255].is_empty());
        // No triangle edge between two cube edges of one face unless it is a contour segment of
        // that face (the edges of the cycle): fan diagonals must cross the interior.
        for case in 0..256 {
            let tris = &case_table()[case];
            let mut count: HashMap<(u8, u8), i32> = HashMap::new();
            for t in tris {
                for (a, b) in [(t[0], t[1]), (t[1], t[2]), (t[2], t[0])] {
                    *count.entry((a.min(b), a.max(b))).or_default() += 1;
                }
            }
            for (&(a, b), &n) in &count {
                if n == 2 {
                    assert!(!share_face(a as usize, b as usize), "case {case}: diagonal {a}-{b} lies in a face");
                }
            }
        }
        assert_eq!(case_table()[1].len(), 1);
    }
}
