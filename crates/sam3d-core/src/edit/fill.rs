//! Fills: the closed region of one slice around a click (ITK-SNAP's and Slicer's 2D fill), and
//! the cavities a label encloses in 3D.
//!
//! Both use the project's one flood fill ([`crate::shape::flood`]): the slice is a grid one
//! voxel thick, on which its 6-connectivity is the slice's 4-connectivity (an outline closed only
//! through corners still holds the fill); the cavities are those of
//! [`fill_holes`](crate::shape::flood::fill_holes) (6-connected, the outside flooded from the
//! border), on the label's box and not the whole grid.

use super::{Edit, EditError, Overwrite, Recorder, flat_mut, normal_voxel_axis};
use crate::geometry::{ArrayIdx, ViewPlane};
use crate::shape::flood::flood;
use crate::volume::{LabelMap, OnGrid};
use ndarray::{Array3, Axis, s};

/// Fills, with `label`, the region of the slice of `plane`'s view through `at`: the voxels of
/// that slice holding the clicked voxel's label (normally background) and 4-connected to it
/// within the slice. A region reaching the slice's edge is not closed (the outline the user drew
/// has a gap, or the click was outside it): that is an error and nothing changes. The overwrite
/// rule must allow replacing the clicked label, else an error says so.
pub fn fill_region_in_slice(map: &mut LabelMap, at: ArrayIdx, plane: ViewPlane, label: u16, rule: Overwrite) -> Result<Edit, EditError> {
    let shape = map.shape();
    if shape.array_index(shape.voxel_of(at)) != Some(at) {
        return Err(EditError::OutsideGrid { what: "clicked", at, shape });
    }
    let old = map.data[at.as_kji()];
    if old == label {
        return Ok(Edit::empty(label));
    }
    if !rule.allows(old, label) {
        return Err(EditError::Protected { label: old, rule: rule.describe(), hint: "choose another overwrite rule to fill over it" });
    }
    // The slice as a [1, rows, columns] grid: 1 where the clicked label is, 0 elsewhere.
    let n_axis = normal_voxel_axis(plane, &map.ras_from_voxel);
    let array_axis = 2 - n_axis;
    let kji = at.as_kji();
    let slice = map.data.index_axis(Axis(array_axis), kji[array_axis]);
    let (rows, cols) = slice.dim();
    let mut grid = Array3::<u8>::zeros((1, rows, cols));
    ndarray::Zip::from(grid.index_axis_mut(Axis(0), 0)).and(&slice).for_each(|g, &l| *g = u8::from(l == old));
    // The two array axes left in the slice, in order.
    let [ra, ca] = match array_axis {
        0 => [1, 2],
        1 => [0, 2],
        _ => [0, 1],
    };
    let Some(reached) = flood(&mut grid, [[0, kji[ra], kji[ca]]], 1, 2) else {
        return Ok(Edit::empty(label));
    };
    if reached.lo[1] == 0 || reached.lo[2] == 0 || reached.hi[1] + 1 == rows || reached.hi[2] + 1 == cols {
        return Err(EditError::NotClosed { label: old, plane: plane.name(), count: reached.count });
    }
    let (data, [_, nj, ni]) = flat_mut(map);
    let mut rec = Recorder::new(data, label, rule);
    for r in reached.lo[1]..=reached.hi[1] {
        for c in reached.lo[2]..=reached.hi[2] {
            if grid[[0, r, c]] == 2 {
                let mut idx = kji;
                idx[ra] = r;
                idx[ca] = c;
                rec.put((idx[0] * nj + idx[1]) * ni + idx[2]);
            }
        }
    }
    Ok(rec.finish())
}

/// Fills the cavities of `label`: every voxel not holding it that is not 6-connected, through
/// such voxels, to the grid's border (a hollow organ's inside, a vessel's lumen enclosed in 3D).
/// Written as `rule` allows: under the default ([`Overwrite::Background`]) only background in a
/// cavity is filled and another label inside (a lesion in the liver) is kept. Walks the label's
/// bounding box grown by one voxel, which gives the same cavities as the whole grid (a voxel
/// reaching the box's edge outside the label reaches the grid's border). A label that is absent
/// has no cavities: an empty edit.
pub fn fill_holes_of_label(map: &mut LabelMap, label: u16, rule: Overwrite) -> Result<Edit, EditError> {
    if label == 0 {
        return Err(EditError::Invalid { what: "label", problem: "background (0) has no holes to fill; choose a label".into() });
    }
    let Some((lo, hi)) = label_box(map, label) else {
        return Ok(Edit::empty(label));
    };
    let dims = map.data.dim();
    let top = [dims.0 - 1, dims.1 - 1, dims.2 - 1];
    let lo: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(1));
    let hi: [usize; 3] = std::array::from_fn(|a| (hi[a] + 1).min(top[a]));
    // What `shape::flood::fill_holes` does, on one u8 grid instead of a bool mask in and a bool
    // mask out (three copies of the box fewer, which matters when a label's specks span the
    // whole CT): 1 off the label, flooded to 2 from the box's faces; the 1s left are cavities.
    let mut grid = Array3::<u8>::zeros((hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1));
    let crop = map.data.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
    ndarray::Zip::from(&mut grid).and(crop).par_for_each(|g, &l| *g = u8::from(l != label));
    let (bk, bj, bi) = grid.dim();
    let faces_k = [0, bk - 1].into_iter().flat_map(|k| (0..bj).flat_map(move |j| (0..bi).map(move |i| [k, j, i])));
    let faces_j = [0, bj - 1].into_iter().flat_map(|j| (0..bk).flat_map(move |k| (0..bi).map(move |i| [k, j, i])));
    let faces_i = [0, bi - 1].into_iter().flat_map(|i| (0..bk).flat_map(move |k| (0..bj).map(move |j| [k, j, i])));
    flood(&mut grid, faces_k.chain(faces_j).chain(faces_i), 1, 2);
    let (data, [_, nj, ni]) = flat_mut(map);
    let mut rec = Recorder::new(data, label, rule);
    for k in 0..bk {
        for j in 0..bj {
            let row = ((lo[0] + k) * nj + lo[1] + j) * ni + lo[2];
            for (i, &g) in grid.slice(s![k, j, ..]).iter().enumerate() {
                if g == 1 {
                    rec.put(row + i);
                }
            }
        }
    }
    Ok(rec.finish())
}

/// The inclusive `[k, j, i]` box of the voxels holding `label`, `None` when none does. One pass
/// over the map, rows first: a row without the label costs one scan.
pub(crate) fn label_box(map: &LabelMap, label: u16) -> Option<([usize; 3], [usize; 3])> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let (nk, nj, _) = map.data.dim();
    for k in 0..nk {
        for j in 0..nj {
            let row = map.data.slice(s![k, j, ..]);
            let Some(first) = row.iter().position(|&l| l == label) else { continue };
            let last = row.iter().rposition(|&l| l == label).unwrap_or(first);
            lo = [lo[0].min(k), lo[1].min(j), lo[2].min(first)];
            hi = [hi[0].max(k), hi[1].max(j), hi[2].max(last)];
        }
    }
    (lo[0] != usize::MAX).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::undo_edit;
    use crate::geometry::RasFromVoxel;
    use nalgebra::{Matrix3, Vector3};

    /// A ring of label 1 (closed only through corners on one side) on slice k = 2 of a 5-slice
    /// map: the fill stays inside it, on that slice.
    fn ring() -> Array3<u16> {
        let mut d = Array3::<u16>::zeros((5, 10, 12));
        for i in 2..9 {
            d[[2, 1, i]] = 1;
            d[[2, 7, i]] = 1;
        }
        for j in 1..8 {
            d[[2, j, 2]] = 1;
        }
        // Right side: a staircase, 8-connected only.
        for (j, i) in [(1, 8), (2, 9), (3, 10), (4, 9), (5, 9), (6, 8), (7, 8)] {
            d[[2, j, i]] = 1;
        }
        d
    }

    #[test]
    fn a_closed_outline_is_filled_in_its_slice_only() {
        let data = ring();
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let e = fill_region_in_slice(&mut map, ArrayIdx { k: 2, j: 4, i: 5 }, ViewPlane::Axial, 1, Overwrite::Background).expect("closed");
        // Inside: rows 2..=6, columns 3..=7 (25), plus (2, 8), (3, 8), (3, 9) and (4, 8), (5, 8).
        assert_eq!(e.indices.len(), 25 + 5);
        assert!(e.indices.iter().all(|n| n / 120 == 2), "slice k = 2 only");
        assert!(e.previous.iter().all(|&p| p == 0));
        assert_eq!((map.data[[2, 4, 5]], map.data[[2, 0, 0]], map.data[[1, 4, 5]], map.data[[2, 3, 11]]), (1, 0, 0, 0));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        // The same label clicked: nothing to do.
        assert!(fill_region_in_slice(&mut map, ArrayIdx { k: 2, j: 1, i: 4 }, ViewPlane::Axial, 1, Overwrite::All).expect("same").is_empty());
    }

    /// A gap in the outline lets the region reach the slice's edge: refused, nothing changed.
    #[test]
    fn an_open_region_is_refused() {
        let mut data = ring();
        data[[2, 7, 5]] = 0;
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let err = fill_region_in_slice(&mut map, ArrayIdx { k: 2, j: 4, i: 5 }, ViewPlane::Axial, 1, Overwrite::Background).expect_err("refused");
        assert!(matches!(err, EditError::NotClosed { label: 0, .. }), "{err}");
        assert!(err.to_string().contains("not closed") && err.to_string().contains("axial"), "{err}");
        assert_eq!(map.data, data);
        // Clicking outside the ring: the region is the rest of the slice.
        assert!(fill_region_in_slice(&mut map, ArrayIdx { k: 2, j: 0, i: 0 }, ViewPlane::Axial, 1, Overwrite::All).is_err());
        // Every slice of another view through the ring is open (it is one voxel thick in k).
        assert!(fill_region_in_slice(&mut map, ArrayIdx { k: 2, j: 4, i: 5 }, ViewPlane::Coronal, 1, Overwrite::All).is_err());
        let off = ArrayIdx { k: 5, j: 0, i: 0 };
        assert!(matches!(fill_region_in_slice(&mut map, off, ViewPlane::Axial, 1, Overwrite::All), Err(EditError::OutsideGrid { .. })));
    }

    /// On a permuted affine the axial view's slices are voxel-j slices: the ring drawn in the
    /// array's [k, i] plane is closed in the axial view only.
    #[test]
    fn the_slice_is_the_views() {
        let lin = Matrix3::new(0.0, 0.0, -2.0, 0.9, 0.0, 0.0, 0.0, 1.5, 0.0); // j runs along S
        let a = RasFromVoxel::from_parts(lin, Vector3::zeros());
        let mut d = Array3::<u16>::zeros((7, 3, 7));
        for x in 1..6 {
            for (k, i) in [(1, x), (5, x), (x, 1), (x, 5)] {
                d[[k, 1, i]] = 4;
            }
        }
        let mut map = LabelMap::new(d, a).expect("grid");
        let at = ArrayIdx { k: 3, j: 1, i: 3 };
        assert!(fill_region_in_slice(&mut map, at, ViewPlane::Coronal, 4, Overwrite::All).is_err());
        let e = fill_region_in_slice(&mut map, at, ViewPlane::Axial, 4, Overwrite::All).expect("closed in the axial view");
        assert_eq!(e.indices.len(), 9);
    }

    /// Filling over another label needs a rule that allows it.
    #[test]
    fn the_rule_protects_the_clicked_label() {
        let mut data = ring();
        data.slice_mut(s![2, 2..7, 3..8]).fill(2);
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let at = ArrayIdx { k: 2, j: 4, i: 5 };
        let err = fill_region_in_slice(&mut map, at, ViewPlane::Axial, 1, Overwrite::Background).expect_err("refused");
        assert!(matches!(err, EditError::Protected { label: 2, .. }), "{err}");
        assert_eq!(fill_region_in_slice(&mut map, at, ViewPlane::Axial, 1, Overwrite::Label(2)).expect("allowed").indices.len(), 25);
    }

    /// A hollow label: its cavity is filled, a dent open to the outside is not, and another
    /// label inside the cavity is kept under the default rule.
    #[test]
    fn holes_of_a_label_are_filled() {
        let mut d = Array3::<u16>::zeros((9, 10, 11));
        d.slice_mut(s![1..8, 2..9, 2..9]).fill(3);
        d.slice_mut(s![2..7, 3..8, 3..8]).fill(0); // cavity of 125
        d[[4, 5, 5]] = 6; // another label in it
        d.slice_mut(s![4, 5, 8..9]).fill(0); // a dent from the outside face i = 8
        d[[4, 5, 7]] = 0;
        let mut map = LabelMap::new(d.clone(), RasFromVoxel::scale_translate([0.5, 0.5, 2.0], [0.0; 3])).expect("grid");
        // The dent at (4, 5, 8) opens the cavity: nothing is enclosed.
        assert!(fill_holes_of_label(&mut map, 3, Overwrite::Background).expect("open").is_empty());
        d[[4, 5, 8]] = 3;
        let mut map = LabelMap::new(d.clone(), map.ras_from_voxel).expect("grid");
        let e = fill_holes_of_label(&mut map, 3, Overwrite::Background).expect("holes");
        assert_eq!(e.indices.len(), 124);
        assert_eq!((map.data[[4, 5, 5]], map.data[[4, 5, 7]], map.data[[0, 0, 0]]), (6, 3, 0));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, d);
        assert_eq!(fill_holes_of_label(&mut map, 3, Overwrite::All).expect("holes").indices.len(), 125);
        // A label touching the grid's border: its box cannot grow there, the border is outside.
        let mut edge = Array3::<u16>::zeros((3, 3, 3));
        edge.fill(5);
        edge[[1, 1, 1]] = 0;
        let mut map = LabelMap::new(edge, RasFromVoxel::identity()).expect("grid");
        assert_eq!(fill_holes_of_label(&mut map, 5, Overwrite::Background).expect("holes").indices, vec![13]);
        assert!(fill_holes_of_label(&mut map, 9, Overwrite::All).expect("absent").is_empty());
        assert!(fill_holes_of_label(&mut map, 0, Overwrite::All).is_err());
    }
}
