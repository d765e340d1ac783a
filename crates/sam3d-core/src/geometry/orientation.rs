//! Orientation codes and canonical reorientation, exactly as nibabel's `io_orientation`,
//! `aff2axcodes` and `as_closest_canonical` define them.

use super::{Affine3, GridShape, RasFromVoxel, Voxel};
use nalgebra::{Matrix3, Matrix4};

/// For each voxel axis (i, j, k): the world axis it is closest to (0 = R/L, 1 = A/P, 2 = S/I)
/// and whether it points the positive (R, A, S) way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Orientation {
    pub world_axis: [usize; 3],
    pub positive: [bool; 3],
}

/// Three orientation letters, one per voxel axis, e.g. `['R','A','S']` or `['L','P','S']`.
pub type AxCodes = [char; 3];

impl Orientation {
    pub fn axcodes(&self) -> AxCodes {
        const POS: [char; 3] = ['R', 'A', 'S'];
        const NEG: [char; 3] = ['L', 'P', 'I'];
        let mut c = ['?'; 3];
        for v in 0..3 {
            let w = self.world_axis[v];
            c[v] = if self.positive[v] { POS[w] } else { NEG[w] };
        }
        c
    }
    pub fn is_canonical(&self) -> bool {
        self.world_axis == [0, 1, 2] && self.positive == [true; 3]
    }
    /// The voxel axis closest to world axis `w` (0 = R/L, 1 = A/P, 2 = S/I).
    pub fn voxel_axis_for_world(&self, w: usize) -> usize {
        self.world_axis.iter().position(|&x| x == w).unwrap_or(w)
    }
}

/// nibabel's `io_orientation`: the orthogonal factor of the column-normalised linear part (via
/// SVD), then a greedy pass over voxel axes in order, each taking the world axis with the
/// largest absolute component among those not yet taken.
pub fn io_orientation(ras_from_voxel: &RasFromVoxel) -> Orientation {
    let lin = ras_from_voxel.linear();
    let mut rs = lin;
    for c in 0..3 {
        let n = lin.column(c).norm();
        let n = if n == 0.0 { 1.0 } else { n };
        rs.set_column(c, &(lin.column(c) / n));
    }
    let svd = rs.svd(true, true);
    let (u, vt) = match (svd.u, svd.v_t) {
        (Some(u), Some(vt)) => (u, vt),
        _ => (Matrix3::identity(), Matrix3::identity()),
    };
    let smax = svd.singular_values.max();
    let tol = smax * 3.0 * f64::EPSILON;
    let mut r = Matrix3::zeros();
    for s in 0..3 {
        if svd.singular_values[s] > tol {
            r += u.column(s) * vt.row(s);
        }
    }
    let mut world_axis = [0usize; 3];
    let mut positive = [true; 3];
    let mut taken = [false; 3];
    for v in 0..3 {
        let col = r.column(v);
        let mut best = None::<(usize, f64)>;
        for w in 0..3 {
            let a = col[w].abs();
            if best.is_none_or(|(_, b)| a > b) {
                best = Some((w, a));
            }
        }
        let (mut w, a) = best.unwrap_or((v, 0.0));
        if a <= 1e-12 || taken[w] {
            // Degenerate column: give it the first free world axis (nibabel leaves NaN here;
            // a usable volume never reaches this after the singular-affine check).
            w = (0..3).find(|x| !taken[*x]).unwrap_or(v);
        }
        positive[v] = col[w] >= 0.0;
        world_axis[v] = w;
        taken[w] = true;
        for c in 0..3 {
            r[(w, c)] = 0.0;
        }
    }
    Orientation { world_axis, positive }
}

/// nibabel's `aff2axcodes`.
pub fn axcodes(ras_from_voxel: &RasFromVoxel) -> AxCodes {
    io_orientation(ras_from_voxel).axcodes()
}

/// How to reorder a volume to the closest canonical (RAS) orientation, as nibabel's
/// `as_closest_canonical`: permutation and flips only, no resampling.
///
/// Returns the new affine, the new shape, and `old_voxel_from_new_voxel`, which says for each
/// new voxel where it was in the old grid (used to permute the data).
pub fn reorient_to_canonical_affine(
    ras_from_voxel: &RasFromVoxel,
    shape: GridShape,
) -> (RasFromVoxel, GridShape, Affine3<Voxel, Voxel>) {
    let o = io_orientation(ras_from_voxel);
    let old_n = shape.ijk();
    let mut m = Matrix4::zeros();
    m[(3, 3)] = 1.0;
    let mut new_n = [0usize; 3];
    for v_old in 0..3 {
        let w = o.world_axis[v_old];
        new_n[w] = old_n[v_old];
        if o.positive[v_old] {
            m[(v_old, w)] = 1.0;
        } else {
            m[(v_old, w)] = -1.0;
            m[(v_old, 3)] = old_n[v_old] as f64 - 1.0;
        }
    }
    let old_from_new: Affine3<Voxel, Voxel> =
        Affine3::from_matrix(m).unwrap_or_else(|_| Affine3::identity());
    let new_aff = *ras_from_voxel * old_from_new;
    (new_aff, GridShape::new(new_n[0], new_n[1], new_n[2]), old_from_new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Matrix3, Vector3};

    fn aff(lin: Matrix3<f64>) -> RasFromVoxel {
        RasFromVoxel::from_parts(lin, Vector3::new(10.0, -20.0, 30.0))
    }

    #[test]
    fn codes_of_simple_affines() {
        assert_eq!(axcodes(&aff(Matrix3::identity())), ['R', 'A', 'S']);
        assert_eq!(axcodes(&aff(Matrix3::from_diagonal(&Vector3::new(-1.0, -1.0, 1.0)))), ['L', 'P', 'S']);
        assert_eq!(axcodes(&aff(Matrix3::from_diagonal(&Vector3::new(-0.7, 0.7, 3.0)))), ['L', 'A', 'S']);
        // Coronal acquisition: i → R, j → S, k → P.
        let cor = Matrix3::new(1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0);
        assert_eq!(axcodes(&aff(cor)), ['R', 'S', 'P']);
    }

    #[test]
    fn oblique_takes_nearest_axis() {
        let t = 30f64.to_radians();
        let rot = Matrix3::new(t.cos(), -t.sin(), 0.0, t.sin(), t.cos(), 0.0, 0.0, 0.0, 1.0);
        assert_eq!(axcodes(&aff(rot)), ['R', 'A', 'S']);
        let t = 60f64.to_radians();
        let rot = Matrix3::new(t.cos(), -t.sin(), 0.0, t.sin(), t.cos(), 0.0, 0.0, 0.0, 1.0);
        assert_eq!(axcodes(&aff(rot)), ['A', 'L', 'S']);
    }

    #[test]
    fn canonical_keeps_every_voxel_position() {
        let cor = Matrix3::new(-0.8, 0.0, 0.0, 0.0, 0.0, -3.0, 0.0, 1.1, 0.0);
        let a = aff(cor);
        let shape = GridShape::new(5, 7, 9);
        let (new_aff, new_shape, old_from_new) = reorient_to_canonical_affine(&a, shape);
        assert_eq!(new_shape, GridShape::new(5, 9, 7));
        assert_eq!(axcodes(&new_aff), ['R', 'A', 'S']);
        for (i, j, k) in [(0, 0, 0), (4, 8, 6), (2, 3, 1)] {
            let p_new = crate::geometry::VoxelIjk::new(i as f64, j as f64, k as f64);
            let p_old = old_from_new.apply(p_new);
            assert!(shape.contains(p_old), "{p_old:?}");
            assert!(new_aff.apply(p_new).distance(&a.apply(p_old)) < 1e-9);
        }
    }
}
