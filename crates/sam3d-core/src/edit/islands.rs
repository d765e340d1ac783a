//! Islands: the connected components of a label. Erase those smaller than a size (the
//! specks a threshold or a model leaves), or keep only the one under a click or the largest.
//!
//! **Connectivity is 6** (voxels sharing a face), as 3D Slicer's Segment Editor "Islands"
//! effect uses it (`vtkITKIslandMath` with `FullyConnected` off, i.e. ITK's face connectivity)
//! and as the project's one flood fill ([`crate::shape::flood`]) does: two blobs touching only
//! along an edge or at a corner are two islands.
//!
//! Every operation here erases (writes 0) under the overwrite rule: the rule must allow erasing
//! the label ([`Overwrite::All`] or [`Overwrite::Label`] of it). Under
//! [`Overwrite::Background`], which keeps every label, it is an error saying so rather than an
//! edit that silently changes nothing. Only the label's bounding box is walked.

use super::fill::label_box;
use super::{Edit, EditError, Overwrite, Recorder, flat_mut};
use crate::geometry::ArrayIdx;
use crate::shape::flood::flood;
use crate::volume::{LabelMap, OnGrid};
use ndarray::{Array3, s};

/// An inclusive `[k, j, i]` box: first and last voxel.
type KjiBox = ([usize; 3], [usize; 3]);

/// The size below which an island is erased.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum IslandSize {
    /// Fewer voxels than this.
    Voxels(usize),
    /// A smaller volume than this, in mm³ (voxel count × `|det|` of the affine).
    Mm3(f64),
}

impl IslandSize {
    /// The smallest voxel count an island keeps on a grid whose voxel is `voxel_mm3`.
    fn min_voxels(self, voxel_mm3: f64) -> Result<usize, EditError> {
        match self {
            IslandSize::Voxels(n) => Ok(n),
            IslandSize::Mm3(v) if v.is_finite() && v >= 0.0 && voxel_mm3 > 0.0 => {
                // n voxels are kept when n·voxel ≥ v; a hair of tolerance so that exactly v is kept
                // whatever the rounding of the division.
                Ok((v / voxel_mm3 - 1e-9).ceil().max(0.0) as usize)
            }
            IslandSize::Mm3(v) => Err(EditError::Invalid { what: "minimum island size", problem: format!("{v} mm³ (expected a number ≥ 0)") }),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            IslandSize::Voxels(n) => format!("{n} voxels"),
            IslandSize::Mm3(v) => format!("{v} mm³"),
        }
    }
}

/// Erases (writes 0) every island of `label` (every label, `None`) smaller than `min`. With
/// `None`, the labels are those `rule` lets an erase touch (all under [`Overwrite::All`], one
/// under [`Overwrite::Label`]).
pub fn remove_small_islands(map: &mut LabelMap, label: Option<u16>, min: IslandSize, rule: Overwrite) -> Result<Edit, EditError> {
    let min_voxels = min.min_voxels(map.voxel_ml() * 1000.0)?;
    let labels: Vec<(u16, KjiBox)> = match label {
        Some(0) => return Err(EditError::Invalid { what: "label", problem: "background (0) has no islands to remove; choose a label".into() }),
        Some(l) => {
            erasable(l, rule)?;
            label_box(map, l).map(|b| (l, b)).into_iter().collect()
        }
        None => {
            if rule == Overwrite::Background {
                return Err(EditError::Invalid {
                    what: "overwrite rule",
                    problem: "background only keeps every label, so no island can be erased; choose all labels or one label".into(),
                });
            }
            label_boxes(map).into_iter().filter(|&(l, _)| rule.allows(l, 0)).collect()
        }
    };
    let (data, dims) = flat_mut(map);
    let mut rec = Recorder::new(data, 0, rule);
    if min_voxels <= 1 {
        return Ok(rec.finish());
    }
    for (l, (lo, hi)) in labels {
        let mut work = mark(&rec, dims, l, lo, hi);
        let (bk, bj, bi) = work.dim();
        let mut small = Vec::new();
        for k in 0..bk {
            for j in 0..bj {
                for i in 0..bi {
                    if work[[k, j, i]] == 1
                        && let Some(part) = flood(&mut work, [[k, j, i]], 1, 2)
                        && part.count < min_voxels
                    {
                        small.push([k, j, i]);
                    }
                }
            }
        }
        // Islands are not 6-connected to one another, so a fill through 2s from an island's
        // first voxel marks exactly that island.
        flood(&mut work, small, 2, 3);
        erase_marked(&mut rec, dims, &work, lo, 3);
    }
    Ok(rec.finish())
}

/// Keeps, of the label under `at`, only the island containing `at`: its other islands are
/// erased. Errors: `at` outside the grid, background under it, or a rule that keeps the label.
pub fn keep_component_at(map: &mut LabelMap, at: ArrayIdx, rule: Overwrite) -> Result<Edit, EditError> {
    let shape = map.shape();
    if shape.array_index(shape.voxel_of(at)) != Some(at) {
        return Err(EditError::OutsideGrid { what: "clicked", at, shape });
    }
    let l = map.data[at.as_kji()];
    if l == 0 {
        return Err(EditError::Background { at });
    }
    erasable(l, rule)?;
    let Some((lo, hi)) = label_box(map, l) else { return Ok(Edit::empty(0)) };
    let (data, dims) = flat_mut(map);
    let mut rec = Recorder::new(data, 0, rule);
    let mut work = mark(&rec, dims, l, lo, hi);
    flood(&mut work, [[at.k - lo[0], at.j - lo[1], at.i - lo[2]]], 1, 2);
    erase_marked(&mut rec, dims, &work, lo, 1);
    Ok(rec.finish())
}

/// Keeps only the largest island of `label` (the first in `[k, j, i]` order among equals),
/// Slicer's "Keep largest island".
pub fn keep_largest_component(map: &mut LabelMap, label: u16, rule: Overwrite) -> Result<Edit, EditError> {
    if label == 0 {
        return Err(EditError::Invalid { what: "label", problem: "background (0) has no islands; choose a label".into() });
    }
    erasable(label, rule)?;
    let Some((lo, hi)) = label_box(map, label) else { return Ok(Edit::empty(0)) };
    let (data, dims) = flat_mut(map);
    let mut rec = Recorder::new(data, 0, rule);
    let mut work = mark(&rec, dims, label, lo, hi);
    let (bk, bj, bi) = work.dim();
    let mut best: Option<([usize; 3], usize)> = None;
    for k in 0..bk {
        for j in 0..bj {
            for i in 0..bi {
                if work[[k, j, i]] == 1
                    && let Some(part) = flood(&mut work, [[k, j, i]], 1, 2)
                    && best.is_none_or(|(_, n)| part.count > n)
                {
                    best = Some(([k, j, i], part.count));
                }
            }
        }
    }
    if let Some((seed, _)) = best {
        flood(&mut work, [seed], 2, 3);
    }
    erase_marked(&mut rec, dims, &work, lo, 2);
    Ok(rec.finish())
}

/// The rule must let an erase replace `label`.
fn erasable(label: u16, rule: Overwrite) -> Result<(), EditError> {
    if rule.allows(label, 0) {
        Ok(())
    } else {
        Err(EditError::Protected { label, rule: rule.describe(), hint: "removing islands erases it: choose all labels or this label as the overwrite rule" })
    }
}

/// The box `lo..=hi` of the map as a grid: 1 where `label` is, 0 elsewhere (row by row).
fn mark(rec: &Recorder<'_>, [_, nj, ni]: [usize; 3], label: u16, lo: [usize; 3], hi: [usize; 3]) -> Array3<u8> {
    let mut work = Array3::<u8>::zeros((hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1));
    let data = rec.data();
    for (k, mut plane) in work.outer_iter_mut().enumerate() {
        for (j, mut row) in plane.outer_iter_mut().enumerate() {
            let start = ((lo[0] + k) * nj + lo[1] + j) * ni;
            if let Some(src) = data.get(start + lo[2]..=start + hi[2]) {
                row.iter_mut().zip(src).for_each(|(w, &l)| *w = u8::from(l == label));
            }
        }
    }
    work
}

/// Erases the voxels of the box at `lo` whose mark is `which`.
fn erase_marked(rec: &mut Recorder<'_>, [_, nj, ni]: [usize; 3], work: &Array3<u8>, lo: [usize; 3], which: u8) {
    for (k, plane) in work.outer_iter().enumerate() {
        for (j, row) in plane.outer_iter().enumerate() {
            let start = ((lo[0] + k) * nj + lo[1] + j) * ni + lo[2];
            for (i, &m) in row.iter().enumerate() {
                if m == which {
                    rec.put(start + i);
                }
            }
        }
    }
}

/// Every label present with its inclusive `[k, j, i]` box, by label, in one pass over the map.
fn label_boxes(map: &LabelMap) -> Vec<(u16, KjiBox)> {
    let mut boxes: Vec<Option<KjiBox>> = vec![None; usize::from(u16::MAX) + 1];
    let (nk, nj, _) = map.data.dim();
    for k in 0..nk {
        for j in 0..nj {
            for (i, &l) in map.data.slice(s![k, j, ..]).iter().enumerate() {
                if l == 0 {
                    continue;
                }
                let b = &mut boxes[usize::from(l)];
                match b {
                    None => *b = Some(([k, j, i], [k, j, i])),
                    Some((lo, hi)) => {
                        // Rows come in order: k and j only grow, so only their maxima move.
                        hi[0] = k;
                        hi[1] = hi[1].max(j);
                        lo[1] = lo[1].min(j);
                        lo[2] = lo[2].min(i);
                        hi[2] = hi[2].max(i);
                    }
                }
            }
        }
    }
    boxes.into_iter().enumerate().filter_map(|(l, b)| Some((u16::try_from(l).ok()?, b?))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::undo_edit;
    use crate::geometry::RasFromVoxel;

    /// Label 1: islands of 1, 4 and 27 voxels and two 8-voxel cubes touching only along an edge
    /// (voxels (1, 9, i) and (2, 8, i) differ in k and j); label 2: an island of 2 voxels.
    fn islands() -> Array3<u16> {
        let mut d = Array3::<u16>::zeros((10, 12, 14));
        d[[0, 0, 0]] = 1;
        d.slice_mut(s![2, 2, 2..6]).fill(1);
        d.slice_mut(s![5..8, 5..8, 5..8]).fill(1);
        d.slice_mut(s![0..2, 9..11, 0..2]).fill(1);
        d.slice_mut(s![2..4, 7..9, 0..2]).fill(1);
        d.slice_mut(s![9, 0, 12..14]).fill(2);
        d
    }

    fn count(d: &Array3<u16>, l: u16) -> usize {
        d.iter().filter(|&&x| x == l).count()
    }

    #[test]
    fn small_islands_are_erased_and_big_ones_kept() {
        let data = islands();
        assert_eq!(count(&data, 1), 1 + 4 + 27 + 8 + 8);
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let e = remove_small_islands(&mut map, Some(1), IslandSize::Voxels(9), Overwrite::All).expect("islands");
        assert_eq!(e.indices.len(), 1 + 4 + 8 + 8, "1, 4 and both 8s go (6-connectivity)");
        assert_eq!((count(&map.data, 1), count(&map.data, 2), e.label), (27, 2, 0));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        // A threshold of exactly an island's size keeps it.
        let e = remove_small_islands(&mut map, Some(1), IslandSize::Voxels(4), Overwrite::Label(1)).expect("islands");
        assert_eq!(e.indices, vec![0]);
        undo_edit(&mut map, &e);
        // Every label: label 2's 2 voxels go too.
        let e = remove_small_islands(&mut map, None, IslandSize::Voxels(5), Overwrite::All).expect("islands");
        assert_eq!((e.indices.len(), count(&map.data, 2)), (1 + 4 + 2, 0));
        assert_eq!(e.touched_labels(), vec![1, 2]);
        undo_edit(&mut map, &e);
        // "Label 1 only" with every label: label 2 is kept.
        let e = remove_small_islands(&mut map, None, IslandSize::Voxels(5), Overwrite::Label(1)).expect("islands");
        assert_eq!((e.indices.len(), count(&map.data, 2)), (5, 2));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
    }

    /// In mm³, through the voxel's volume: 2 × 2 × 2 mm voxels are 8 mm³, so 32 mm³ is 4 voxels.
    #[test]
    fn sizes_in_cubic_millimetres() {
        let mut map = LabelMap::new(islands(), RasFromVoxel::scale_translate([2.0, -2.0, 2.0], [0.0; 3])).expect("grid");
        let e = remove_small_islands(&mut map, Some(1), IslandSize::Mm3(32.0), Overwrite::All).expect("islands");
        assert_eq!(e.indices.len(), 1, "the 4-voxel island is exactly 32 mm³ and stays");
        let e = remove_small_islands(&mut map, Some(1), IslandSize::Mm3(64.5), Overwrite::All).expect("islands");
        assert_eq!(e.indices.len(), 4 + 8 + 8);
        assert!(remove_small_islands(&mut map, Some(1), IslandSize::Mm3(f64::NAN), Overwrite::All).is_err());
        assert!(remove_small_islands(&mut map, Some(1), IslandSize::Voxels(0), Overwrite::All).expect("none").is_empty());
    }

    /// Erasing needs a rule that may erase the label.
    #[test]
    fn the_background_rule_is_refused_with_a_reason() {
        let data = islands();
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let err = remove_small_islands(&mut map, Some(1), IslandSize::Voxels(9), Overwrite::Background).expect_err("refused");
        assert!(matches!(err, EditError::Protected { label: 1, .. }), "{err}");
        assert!(remove_small_islands(&mut map, None, IslandSize::Voxels(9), Overwrite::Background).is_err());
        assert!(remove_small_islands(&mut map, Some(1), IslandSize::Voxels(9), Overwrite::Label(2)).is_err());
        assert!(keep_component_at(&mut map, ArrayIdx { k: 6, j: 6, i: 6 }, Overwrite::Background).is_err());
        assert!(remove_small_islands(&mut map, Some(0), IslandSize::Voxels(9), Overwrite::All).is_err());
        assert_eq!(map.data, data);
    }

    #[test]
    fn keep_the_island_under_the_click() {
        let data = islands();
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let e = keep_component_at(&mut map, ArrayIdx { k: 2, j: 2, i: 3 }, Overwrite::All).expect("keep");
        assert_eq!(e.indices.len(), 1 + 27 + 8 + 8);
        assert_eq!((count(&map.data, 1), map.data[[2, 2, 5]], count(&map.data, 2)), (4, 1, 2));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        // One of the edge-touching cubes: the other is another island.
        let e = keep_component_at(&mut map, ArrayIdx { k: 1, j: 10, i: 1 }, Overwrite::Label(1)).expect("keep");
        assert_eq!((count(&map.data, 1), map.data[[3, 8, 1]]), (8, 0));
        undo_edit(&mut map, &e);
        assert!(matches!(keep_component_at(&mut map, ArrayIdx { k: 4, j: 0, i: 0 }, Overwrite::All), Err(EditError::Background { .. })));
        let off = ArrayIdx { k: 10, j: 0, i: 0 };
        let err = keep_component_at(&mut map, off, Overwrite::All).expect_err("refused");
        assert!(err.to_string().contains("outside"), "{err}");
        // Keep largest.
        let e = keep_largest_component(&mut map, 1, Overwrite::All).expect("largest");
        assert_eq!((e.indices.len(), count(&map.data, 1), map.data[[6, 6, 6]]), (1 + 4 + 8 + 8, 27, 1));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
    }

    /// The boxes of every label, found in one pass, are each label's own box.
    #[test]
    fn label_boxes_match_each_label_box() {
        let map = LabelMap::new(islands(), RasFromVoxel::identity()).expect("grid");
        let all = label_boxes(&map);
        assert_eq!(all.iter().map(|b| b.0).collect::<Vec<_>>(), vec![1, 2]);
        for (l, b) in all {
            assert_eq!(Some(b), label_box(&map, l));
        }
    }
}
