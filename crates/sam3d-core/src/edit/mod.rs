//! Edits of a label map: what an accepted result, a brush stroke or an island removal changed,
//! enough to undo and redo it, and the overwrite rule every edit follows (ITK-SNAP's "paint
//! over": all labels, only background, or one chosen label), so that a reference label is never
//! destroyed unless the user asks for it.
//!
//! Every operation writes one label value (0 to erase) into a set of voxels and returns an
//! [`Edit`] holding the flat indices that changed and their previous labels. The undo history
//! and the scheduling of edits around threads that read the map live in the viewer
//! (`app::edit`).
//!
//! The operations, one file per family (issue 21, "Edit tools"):
//!
//! | module | what |
//! |---|---|
//! | [`ops`] | the plain-data vocabulary ([`Brush`], [`Paint`], [`Stroke`], [`EditRequest`]) a viewer thread sends to a worker, and the cursor's voxel estimate |
//! | [`brush`] | paint and erase with a disc (one slice of a view) or a sphere, sized in millimetres, along a stroke; optional intensity range |
//! | [`fill`] | fill a closed region of one slice from a click; fill the cavities enclosed by a label |
//! | [`islands`] | remove a label's small islands; keep only the island under a click, or the largest (6-connected, as Slicer's Islands effect) |
//!
//! Each returns an [`Edit`] or an [`EditError`] (a click outside the volume, a region that is
//! not closed, a rule that protects the label, …) and changes nothing when it fails.

pub mod brush;
pub mod fill;
pub mod islands;
pub mod ops;

pub use brush::{footprint, stamp, stroke};
pub use fill::{fill_holes_of_label, fill_region_in_slice};
pub use islands::{IslandSize, keep_component_at, keep_largest_component, remove_small_islands};
pub use ops::{Brush, BrushShape, EditRequest, IntensityRange, Paint, Stroke, normal_voxel_axis};

use crate::geometry::{ArrayIdx, GridShape};
use crate::volume::LabelMap;
use ndarray::Array3;

/// Which existing labels an edit may replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Overwrite {
    /// Every label (and background).
    All,
    /// Only background (label 0): other labels are kept. The default, so an accepted result or a
    /// brush stroke never eats a reference label.
    #[default]
    Background,
    /// Only this label (and background when painting: an erase with this rule removes only it).
    Label(u16),
}

impl Overwrite {
    /// Whether a voxel holding `old` may become `new` under this rule.
    #[inline]
    pub fn allows(self, old: u16, new: u16) -> bool {
        if old == new {
            return false;
        }
        match self {
            Overwrite::All => true,
            Overwrite::Background => old == 0,
            Overwrite::Label(l) => old == l || (old == 0 && new != 0),
        }
    }

    /// Words for menus and the status line.
    pub fn describe(self) -> String {
        match self {
            Overwrite::All => "all labels".into(),
            Overwrite::Background => "background only".into(),
            Overwrite::Label(l) => format!("label {l} only"),
        }
    }
}

/// One edit (an accepted result, a stroke, an erase), enough to undo and redo it.
#[derive(Clone, Debug)]
pub struct Edit {
    /// The label written.
    pub label: u16,
    /// Flat (C-order) indices of the voxels that changed, and their previous labels.
    pub indices: Vec<usize>,
    pub previous: Vec<u16>,
}

impl Edit {
    /// The labels whose voxels this edit touches (the written one first).
    pub fn touched_labels(&self) -> Vec<u16> {
        let mut v: Vec<u16> = std::iter::once(self.label).chain(self.previous.iter().copied()).filter(|&l| l != 0).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Writes `label` wherever `mask` is set and `rule` allows it; returns the edit (only voxels
/// that changed, in increasing index order). `bbox_kji` (first and last voxel, `[k, j, i]`) is a box that holds
/// every voxel of `mask`: only it is walked (a kidney's box on a 512 × 512 × 224 CT instead of
/// the 59 M voxels); `None`: the whole grid.
pub fn apply_mask(map: &mut LabelMap, mask: &Array3<bool>, label: u16, bbox_kji: Option<([usize; 3], [usize; 3])>, rule: Overwrite) -> Edit {
    let mut indices = Vec::new();
    let mut previous = Vec::new();
    if map.data.shape() == mask.shape() {
        if !map.data.is_standard_layout() {
            map.data = map.data.as_standard_layout().into_owned();
        }
        let s = mask.shape();
        let whole = ([0; 3], [s[0].saturating_sub(1), s[1].saturating_sub(1), s[2].saturating_sub(1)]);
        let (lo, hi) = bbox_kji.filter(|(lo, hi)| (0..3).all(|a| lo[a] <= hi[a] && hi[a] < s[a])).unwrap_or(whole);
        if let (Some(data), Some(m), false) = (map.data.as_slice_mut(), mask.as_slice(), mask.is_empty()) {
            for k in lo[0]..=hi[0] {
                for j in lo[1]..=hi[1] {
                    let row = (k * s[1] + j) * s[2];
                    for n in row + lo[2]..=row + hi[2] {
                        if m[n] && rule.allows(data[n], label) {
                            indices.push(n);
                            previous.push(data[n]);
                            data[n] = label;
                        }
                    }
                }
            }
        } else {
            // An empty or non-contiguous mask (never produced here): walk both arrays.
            for (n, (d, &inside)) in map.data.iter_mut().zip(mask.iter()).enumerate() {
                if inside && rule.allows(*d, label) {
                    indices.push(n);
                    previous.push(*d);
                    *d = label;
                }
            }
        }
    }
    Edit { label, indices, previous }
}

/// Puts back the previous labels of an edit.
pub fn undo_edit(map: &mut LabelMap, e: &Edit) {
    if let Some(data) = map.data.as_slice_mut() {
        for (&n, &old) in e.indices.iter().zip(&e.previous) {
            if let Some(d) = data.get_mut(n) {
                *d = old;
            }
        }
    }
}

/// Writes an edit's label again.
pub fn redo_edit(map: &mut LabelMap, e: &Edit) {
    if let Some(data) = map.data.as_slice_mut() {
        for &n in &e.indices {
            if let Some(d) = data.get_mut(n) {
                *d = e.label;
            }
        }
    }
}


impl Edit {
    /// An edit that changed nothing.
    pub fn empty(label: u16) -> Self {
        Edit { label, indices: Vec::new(), previous: Vec::new() }
    }

    /// Whether the edit changed no voxel.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Appends an edit made right after this one with the same label (the next segment of a
    /// brush drag), so that a whole drag is one undo step. Within such a pair no voxel is
    /// recorded twice: the first edit left it holding the label, which the second cannot
    /// "change" again. Gives `later` back when its label differs.
    pub fn append(&mut self, later: Edit) -> Result<(), Edit> {
        if later.label != self.label {
            return Err(later);
        }
        self.indices.extend(later.indices);
        self.previous.extend(later.previous);
        Ok(())
    }

    /// Memory the edit holds.
    pub fn bytes(&self) -> usize {
        self.indices.len() * std::mem::size_of::<usize>() + self.previous.len() * std::mem::size_of::<u16>() + std::mem::size_of::<Self>()
    }
}

/// Why an edit operation changed nothing. Every message says what was asked and what is wrong
/// with it, for the viewer's status line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EditError {
    /// A clicked voxel outside the label map's grid.
    #[error("the {what} voxel (i {}, j {}, k {}) is outside the label map ({shape} voxels)", at.i, at.j, at.k)]
    OutsideGrid { what: &'static str, at: ArrayIdx, shape: GridShape },
    /// A parameter that is not a number, negative, or out of order.
    #[error("invalid {what}: {problem}")]
    Invalid { what: &'static str, problem: String },
    /// The intensities given for a threshold paint are on another grid.
    #[error("the volume's grid ({volume} voxels) does not match the label map's ({labels} voxels)")]
    GridMismatch { labels: GridShape, volume: GridShape },
    /// A threshold paint without the volume's intensities.
    #[error("painting within an intensity range needs the volume's intensities, and none were given")]
    NoIntensities,
    /// A 2D fill whose region reaches the slice's edge.
    #[error("the region of label {label} around the click reaches the edge of the {plane} slice, so it is not closed: nothing was filled ({count} voxels would have been)")]
    NotClosed { label: u16, plane: &'static str, count: usize },
    /// The overwrite rule forbids the only change the operation would make.
    #[error("the overwrite rule ({rule}) keeps label {label}; {hint}")]
    Protected { label: u16, rule: String, hint: &'static str },
    /// An operation on "the label under the click" clicked on background.
    #[error("there is no label under the click (voxel i {}, j {}, k {} is background)", at.i, at.j, at.k)]
    Background { at: ArrayIdx },
}

/// The label map's voxels as one C-order slice, put in standard layout first when they are not
/// (the `data` field is public), with the grid's `[nk, nj, ni]`.
pub(crate) fn flat_mut(map: &mut LabelMap) -> (&mut [u16], [usize; 3]) {
    if !map.data.is_standard_layout() {
        map.data = map.data.as_standard_layout().into_owned();
    }
    let (nk, nj, ni) = map.data.dim();
    let data = map.data.as_slice_mut().unwrap_or_default();
    (data, [nk, nj, ni])
}

/// Writes one label into voxels of a flat C-order map, as the overwrite rule allows, and
/// records what changed. A voxel offered twice is recorded once: after the first write it holds
/// the label, which the rule never lets the label replace.
pub(crate) struct Recorder<'a> {
    data: &'a mut [u16],
    edit: Edit,
    rule: Overwrite,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(data: &'a mut [u16], label: u16, rule: Overwrite) -> Self {
        Recorder { data, edit: Edit::empty(label), rule }
    }

    /// The map's voxels as they are now (C order).
    pub(crate) fn data(&self) -> &[u16] {
        self.data
    }

    /// Writes the label at flat index `n` if the rule allows; returns whether it changed.
    #[inline]
    pub(crate) fn put(&mut self, n: usize) -> bool {
        let label = self.edit.label;
        match self.data.get_mut(n) {
            Some(d) if self.rule.allows(*d, label) => {
                self.edit.indices.push(n);
                self.edit.previous.push(*d);
                *d = label;
                true
            }
            _ => false,
        }
    }

    /// The edit, its voxels in increasing index order (as [`apply_mask`] gives them).
    pub(crate) fn finish(self) -> Edit {
        let Edit { label, indices, previous } = self.edit;
        if indices.windows(2).all(|w| w[0] < w[1]) {
            return Edit { label, indices, previous };
        }
        let mut pairs: Vec<(usize, u16)> = indices.into_iter().zip(previous).collect();
        pairs.sort_unstable_by_key(|p| p.0);
        let (indices, previous) = pairs.into_iter().unzip();
        Edit { label, indices, previous }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;

    #[test]
    fn accept_undo_redo_round_trip() {
        let data = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| ((k + j + i) % 3) as u16);
        let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let mask = Array3::from_shape_fn((3, 4, 5), |(k, _, i)| k == 1 && i < 3);
        let e = apply_mask(&mut map, &mask, 2, None, Overwrite::All);
        // The same edit walking only the mask's box (the way an accepted click does).
        let mut boxed = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
        let b = apply_mask(&mut boxed, &mask, 2, crate::shape::sdf::bounding_box(mask.view()), Overwrite::All);
        assert_eq!((&b.indices, &b.previous, &boxed.data), (&e.indices, &e.previous, &map.data));
        // 12 voxels in the mask; those already 2 are not recorded.
        let already = mask.iter().zip(data.iter()).filter(|&(&m, &d)| m && d == 2).count();
        assert_eq!(e.indices.len(), 12 - already);
        assert!(mask.iter().zip(map.data.iter()).all(|(&m, &d)| !m || d == 2));
        undo_edit(&mut map, &e);
        assert_eq!(map.data, data);
        redo_edit(&mut map, &e);
        assert!(mask.iter().zip(map.data.iter()).all(|(&m, &d)| !m || d == 2));
        assert_eq!(e.touched_labels(), vec![1, 2]);
    }

    #[test]
    fn the_overwrite_rule_keeps_reference_labels() {
        // A row: background, label 1 (a reference), label 2, background.
        let data = Array3::from_shape_vec((1, 1, 4), vec![0u16, 1, 2, 0]).expect("shape");
        let all = Array3::from_elem((1, 1, 4), true);
        let run = |label: u16, rule: Overwrite| {
            let mut map = LabelMap::new(data.clone(), RasFromVoxel::identity()).expect("grid");
            let e = apply_mask(&mut map, &all, label, None, rule);
            (map.data.iter().copied().collect::<Vec<_>>(), e.indices)
        };
        assert_eq!(run(5, Overwrite::Background), (vec![5, 1, 2, 5], vec![0, 3]));
        assert_eq!(run(5, Overwrite::All), (vec![5, 5, 5, 5], vec![0, 1, 2, 3]));
        assert_eq!(run(5, Overwrite::Label(2)), (vec![5, 1, 5, 5], vec![0, 2, 3]));
        // Erasing (label 0): "background only" erases nothing, "label 2 only" erases just it.
        assert_eq!(run(0, Overwrite::Background).1, Vec::<usize>::new());
        assert_eq!(run(0, Overwrite::Label(2)), (vec![0, 1, 0, 0], vec![2]));
        assert_eq!(run(0, Overwrite::All), (vec![0, 0, 0, 0], vec![1, 2]));
        assert_eq!(Overwrite::default(), Overwrite::Background);
    }
}
