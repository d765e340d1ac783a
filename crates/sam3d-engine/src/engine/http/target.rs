//! A client's target buffer, kept on the server as nnInteractive's session keeps it: the current
//! object's mask on the uploaded grid. A prediction replaces it with the object's new candidate
//! and replies with the smallest box that holds every changed voxel, so a reply costs what the
//! object's box costs, not the volume. Each change keeps what it overwrote, for undo.

use crate::shape::GridComponent;
use ndarray::{Array3, s};
use sam3d_core::nninteractive::Dtype;

/// `[[lo, hi]; 3]` per array axis `[a0, a1, a2]` = `[k, j, i]`, half-open.
pub type Box3 = [[usize; 2]; 3];

/// The smallest box holding both (either may be absent).
fn union(a: Option<Box3>, b: Option<Box3>) -> Option<Box3> {
    match (a, b) {
        (Some(a), Some(b)) => Some(std::array::from_fn(|d| [a[d][0].min(b[d][0]), a[d][1].max(b[d][1])])),
        (a, b) => a.or(b),
    }
}

fn slice_of(b: &Box3) -> ndarray::SliceInfo<[ndarray::SliceInfoElem; 3], ndarray::Ix3, ndarray::Ix3> {
    s![b[0][0]..b[0][1], b[1][0]..b[1][1], b[2][0]..b[2][1]]
}

/// The box of a component's crop.
pub fn component_box(c: &GridComponent) -> Box3 {
    let d = c.mask.dim();
    let o = c.origin_kji;
    [[o[0], o[0] + d.0], [o[1], o[1] + d.1], [o[2], o[2] + d.2]]
}

/// One change of the buffer: where, and what was there before.
#[derive(Debug)]
pub struct Change {
    pub bbox: Box3,
    pub before: Array3<u8>,
}

/// The buffer: 0/1 per voxel, the dtype the client declared (replies are `uint8`; the client
/// casts them into its own buffer), and the box of its non-zero voxels.
#[derive(Debug)]
pub struct TargetBuffer {
    pub data: Array3<u8>,
    pub dtype: Dtype,
    occupied: Option<Box3>,
}

impl TargetBuffer {
    pub fn new(shape: [usize; 3], dtype: Dtype) -> Self {
        TargetBuffer { data: Array3::zeros(shape), dtype, occupied: None }
    }

    pub fn shape(&self) -> [usize; 3] {
        let d = self.data.dim();
        [d.0, d.1, d.2]
    }

    /// Makes the buffer hold `candidate` (nothing: empty). Returns the change, or `None` when no
    /// voxel changed. Touches only the old and the new object's boxes.
    pub fn set_candidate(&mut self, candidate: Option<&GridComponent>) -> Option<Change> {
        let new_box = candidate.map(component_box);
        let region = union(self.occupied, new_box)?;
        let mut fresh = Array3::<u8>::zeros((region[0][1] - region[0][0], region[1][1] - region[1][0], region[2][1] - region[2][0]));
        if let (Some(c), Some(b)) = (candidate, new_box) {
            let at: Box3 = std::array::from_fn(|d| [b[d][0] - region[d][0], b[d][1] - region[d][0]]);
            fresh.slice_mut(slice_of(&at)).zip_mut_with(&c.mask, |v, &m| *v = m as u8);
        }
        let change = self.replace(region, &fresh);
        self.occupied = new_box;
        change
    }

    /// Makes the buffer hold `mask` (a whole-grid segmentation). Returns the change.
    pub fn set_all(&mut self, mask: &Array3<u8>) -> Option<Change> {
        let full: Box3 = std::array::from_fn(|d| [0, self.shape()[d]]);
        let change = self.replace(full, mask);
        self.occupied = nonzero_box(self.data.view());
        change
    }

    /// Undoes `change` (the last one made); returns the box it restored.
    pub fn restore(&mut self, change: Change) -> Box3 {
        self.data.slice_mut(slice_of(&change.bbox)).assign(&change.before);
        let rest = nonzero_box(self.data.slice(slice_of(&change.bbox))).map(|b| std::array::from_fn(|d| [b[d][0] + change.bbox[d][0], b[d][1] + change.bbox[d][0]]));
        // The restored box may have grown the object again, or emptied what it held.
        self.occupied = match self.occupied {
            Some(o) if o.iter().zip(&change.bbox).all(|(o, c)| o[0] >= c[0] && o[1] <= c[1]) => rest,
            o => union(o, rest),
        };
        change.bbox
    }

    /// Empties the buffer.
    pub fn clear(&mut self) {
        if let Some(b) = self.occupied.take() {
            self.data.slice_mut(slice_of(&b)).fill(0);
        }
    }

    /// The voxels inside `b`, C order.
    pub fn region(&self, b: &Box3) -> Array3<u8> {
        self.data.slice(slice_of(b)).to_owned()
    }

    /// Writes `values` over `region`; returns the tight box of what changed and its old values.
    fn replace(&mut self, region: Box3, values: &Array3<u8>) -> Option<Change> {
        let old = self.data.slice(slice_of(&region));
        let diff = ndarray::Zip::from(&old).and(values).map_collect(|a, b| a != b);
        let (lo, hi) = crate::shape::sdf::bounding_box(diff.view())?;
        let changed: Box3 = std::array::from_fn(|d| [region[d][0] + lo[d], region[d][0] + hi[d] + 1]);
        let before = self.region(&changed);
        self.data.slice_mut(slice_of(&region)).assign(values);
        Some(Change { bbox: changed, before })
    }
}

/// The box of the non-zero voxels.
fn nonzero_box(a: ndarray::ArrayView3<u8>) -> Option<Box3> {
    let (lo, hi) = crate::shape::sdf::bounding_box_by(a, |&v| v != 0)?;
    Some(std::array::from_fn(|d| [lo[d], hi[d] + 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cube(origin: [usize; 3], n: usize) -> GridComponent {
        GridComponent { origin_kji: origin, mask: Array3::from_elem((n, n, n), true), voxel_count: n * n * n }
    }

    #[test]
    fn a_change_is_the_tight_box_of_changed_voxels_and_undo_restores_it() {
        let mut t = TargetBuffer::new([10, 12, 14], Dtype::U8);
        let c = t.set_candidate(Some(&cube([2, 3, 4], 3))).expect("ok");
        assert_eq!(c.bbox, [[2, 5], [3, 6], [4, 7]]);
        assert!(c.before.iter().all(|&v| v == 0));
        assert_eq!(t.data.iter().filter(|&&v| v == 1).count(), 27);
        // A bigger cube overlapping it: only the ring of new voxels changed.
        let c2 = t.set_candidate(Some(&cube([2, 3, 4], 4))).expect("ok");
        assert_eq!(c2.bbox, [[2, 6], [3, 7], [4, 8]]);
        assert_eq!(t.data.iter().filter(|&&v| v == 1).count(), 64);
        // The same again: nothing changed.
        assert!(t.set_candidate(Some(&cube([2, 3, 4], 4))).is_none());
        // Somewhere else: both boxes changed.
        let c3 = t.set_candidate(Some(&cube([7, 8, 9], 2))).expect("ok");
        assert_eq!(c3.bbox, [[2, 9], [3, 10], [4, 11]]);
        assert_eq!(t.data.iter().filter(|&&v| v == 1).count(), 8);
        assert_eq!(t.restore(c3), [[2, 9], [3, 10], [4, 11]]);
        assert_eq!(t.data.iter().filter(|&&v| v == 1).count(), 64);
        t.restore(c2);
        assert_eq!(t.data.iter().filter(|&&v| v == 1).count(), 27);
        // The occupied box followed the undo: clearing empties the buffer.
        t.clear();
        assert!(t.data.iter().all(|&v| v == 0));
        assert!(t.set_candidate(None).is_none());
    }

    #[test]
    fn a_whole_segmentation_sets_the_buffer_and_its_box() {
        let mut t = TargetBuffer::new([6, 6, 6], Dtype::Bool);
        let mut m = Array3::<u8>::zeros((6, 6, 6));
        m[[1, 2, 3]] = 1;
        m[[4, 4, 5]] = 1;
        let c = t.set_all(&m).expect("ok");
        assert_eq!(c.bbox, [[1, 5], [2, 5], [3, 6]]);
        // An empty candidate then clears exactly that box.
        let c = t.set_candidate(None).expect("ok");
        assert_eq!(c.bbox, [[1, 5], [2, 5], [3, 6]]);
        assert!(t.data.iter().all(|&v| v == 0));
    }
}
