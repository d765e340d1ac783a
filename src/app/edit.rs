//! Edits of the label map: what an accepted result (and, later, a brush stroke) changed, and
//! the undo history, whose memory is capped.
//!
//! The label map is shared (`Arc`) with threads that read it: the mesher, the comparison, the
//! saver, the fine-tuning panel's data writer. An edit never copies the whole map on the UI
//! thread to get around them: [`LabelEdits::run`] applies an operation at once when the map is
//! not shared and otherwise keeps it, in order, until the readers let go
//! ([`LabelEdits::flush`], each frame).

pub use crate::label_edit::{Edit, Overwrite, apply_mask, redo_edit, undo_edit};
use crate::label_edit::ops::EditRequest;
use crate::volume::{LabelMap, StoredVolume};
use ndarray::Array3;
use std::collections::VecDeque;
use std::sync::Arc;

/// The undo and redo stacks, holding at most [`History::cap_bytes`] of edits: the oldest undo
/// steps go first when a new edit would pass it.
#[derive(Debug)]
pub struct History {
    undo: VecDeque<Edit>,
    redo: Vec<Edit>,
    bytes: usize,
    cap_bytes: usize,
    /// Undo steps dropped to keep under the cap (for the status line).
    pub dropped: usize,
}

/// The default cap: 256 MiB, about 25 liver-sized edits on a 512 × 512 × 224 CT.
pub const HISTORY_CAP_BYTES: usize = 256 << 20;

impl Default for History {
    fn default() -> Self {
        Self::with_cap(HISTORY_CAP_BYTES)
    }
}

impl History {
    pub fn with_cap(cap_bytes: usize) -> Self {
        History { undo: VecDeque::new(), redo: Vec::new(), bytes: 0, cap_bytes, dropped: 0 }
    }
    pub fn cap_bytes(&self) -> usize {
        self.cap_bytes
    }
    /// Memory held by both stacks.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }
    /// A new edit: it becomes the last undo step and the redo stack is dropped.
    pub fn record(&mut self, e: Edit) {
        for r in self.redo.drain(..) {
            self.bytes -= r.bytes();
        }
        self.push_undo(e);
    }
    fn push_undo(&mut self, e: Edit) {
        self.bytes += e.bytes();
        self.undo.push_back(e);
        while self.bytes > self.cap_bytes && self.undo.len() > 1 {
            if let Some(old) = self.undo.pop_front() {
                self.bytes -= old.bytes();
                self.dropped += 1;
            }
        }
    }
    /// Adds `e` to the last undo step (the next segment of one brush drag); a new step when
    /// there is none or it wrote another label.
    pub fn extend_last(&mut self, e: Edit) {
        let Some(last) = self.undo.back_mut() else { return self.record(e) };
        let before = last.bytes();
        match last.append(e) {
            Ok(()) => {
                let after = last.bytes();
                self.bytes = self.bytes - before + after;
                for r in self.redo.drain(..) {
                    self.bytes -= r.bytes();
                }
            }
            Err(e) => self.record(e),
        }
    }

    /// The step to undo (the caller puts its previous labels back, then [`Self::undone`]).
    pub fn take_undo(&mut self) -> Option<Edit> {
        let e = self.undo.pop_back()?;
        self.bytes -= e.bytes();
        Some(e)
    }
    pub fn undone(&mut self, e: Edit) {
        self.bytes += e.bytes();
        self.redo.push(e);
    }
    /// The step to redo (the caller writes it again, then [`Self::redone`]).
    pub fn take_redo(&mut self) -> Option<Edit> {
        let e = self.redo.pop()?;
        self.bytes -= e.bytes();
        Some(e)
    }
    pub fn redone(&mut self, e: Edit) {
        self.push_undo(e);
    }
    pub fn clear(&mut self) {
        *self = Self::with_cap(self.cap_bytes);
    }
}

/// An operation on the label map.
#[derive(Debug)]
pub enum EditOp {
    /// Write `label` wherever `mask` is set (`bbox_kji`: a box holding the mask).
    Paint { mask: Arc<Array3<bool>>, label: u16, bbox_kji: Option<([usize; 3], [usize; 3])>, rule: Overwrite },
    /// Write `to` wherever the map holds `from` (deleting a label: `to` = 0).
    Replace { from: u16, to: u16 },
    /// An edit tool's operation (a brush segment, a fill, an island), run where the map is
    /// owned. `volume`: the intensities, for threshold paint. `merge`: part of the previous
    /// step (the segments of one drag are one undo step).
    Request { req: EditRequest, volume: Option<Arc<StoredVolume>>, merge: bool },
    /// An edit computed on another thread from a snapshot of the map (islands, hole fills that
    /// walk the whole volume): its label is written at its voxels, their labels now recorded
    /// for undo.
    Computed(Edit),
    Undo,
    Redo,
}

/// Writes `to` over every voxel holding `from`.
pub fn replace_label(map: &mut LabelMap, from: u16, to: u16) -> Edit {
    let mut indices = Vec::new();
    if from != to {
        if !map.data.is_standard_layout() {
            map.data = map.data.as_standard_layout().into_owned();
        }
        if let Some(data) = map.data.as_slice_mut() {
            for (n, d) in data.iter_mut().enumerate() {
                if *d == from {
                    indices.push(n);
                    *d = to;
                }
            }
        }
    }
    let previous = vec![from; indices.len()];
    Edit { label: to, indices, previous }
}

/// Writes an edit computed from a snapshot: its label at its voxels, recording the labels they
/// hold now (another edit may have come between the snapshot and now).
pub fn write_computed(map: &mut LabelMap, e: Edit) -> Edit {
    let mut out = Edit { label: e.label, indices: Vec::with_capacity(e.indices.len()), previous: Vec::with_capacity(e.indices.len()) };
    if let Some(data) = map.data.as_slice_mut() {
        for n in e.indices {
            if let Some(d) = data.get_mut(n)
                && *d != e.label
            {
                out.indices.push(n);
                out.previous.push(*d);
                *d = e.label;
            }
        }
    }
    out
}

/// What an operation did, for the label table, the overlay and the meshes.
#[derive(Debug)]
pub struct Applied {
    pub edit: Edit,
    /// `true` when it undid `edit`.
    pub undone: bool,
}

/// Operations waiting for the label map's readers, and the history.
#[derive(Debug, Default)]
pub struct LabelEdits {
    pub history: History,
    waiting: VecDeque<EditOp>,
    /// Operations that could not run (a fill of an open region, a click outside the volume),
    /// for the app to say.
    pub errors: Vec<String>,
}

impl LabelEdits {
    /// Operations not yet applied (the map was shared when they came).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
    /// Applies `op` now if no other thread holds `map`, else keeps it for [`Self::flush`].
    /// Returns what was applied (possibly earlier waiting operations too).
    pub fn run(&mut self, map: &mut Arc<LabelMap>, op: EditOp) -> Vec<Applied> {
        self.waiting.push_back(op);
        self.flush(map)
    }
    /// Applies the waiting operations, in order, once no other thread holds `map`.
    pub fn flush(&mut self, map: &mut Arc<LabelMap>) -> Vec<Applied> {
        let mut done = Vec::new();
        if self.waiting.is_empty() {
            return done;
        }
        let Some(m) = Arc::get_mut(map) else { return done };
        while let Some(op) = self.waiting.pop_front() {
            match op {
                EditOp::Paint { mask, label, bbox_kji, rule } => {
                    let edit = apply_mask(m, &mask, label, bbox_kji, rule);
                    self.history.record(edit.clone());
                    done.push(Applied { edit, undone: false });
                }
                EditOp::Replace { from, to } => {
                    let edit = replace_label(m, from, to);
                    if !edit.indices.is_empty() {
                        self.history.record(edit.clone());
                        done.push(Applied { edit, undone: false });
                    }
                }
                EditOp::Request { req, volume, merge } => match req.apply(m, volume.as_deref()) {
                    Ok(edit) if edit.indices.is_empty() => {}
                    Ok(edit) => {
                        if merge {
                            self.history.extend_last(edit.clone());
                        } else {
                            self.history.record(edit.clone());
                        }
                        done.push(Applied { edit, undone: false });
                    }
                    Err(e) => self.errors.push(format!("{}: {e}", req.describe())),
                },
                EditOp::Computed(e) => {
                    let edit = write_computed(m, e);
                    if !edit.indices.is_empty() {
                        self.history.record(edit.clone());
                        done.push(Applied { edit, undone: false });
                    }
                }
                EditOp::Undo => {
                    if let Some(edit) = self.history.take_undo() {
                        undo_edit(m, &edit);
                        self.history.undone(edit.clone());
                        done.push(Applied { edit, undone: true });
                    }
                }
                EditOp::Redo => {
                    if let Some(edit) = self.history.take_redo() {
                        redo_edit(m, &edit);
                        self.history.redone(edit.clone());
                        done.push(Applied { edit, undone: false });
                    }
                }
            }
        }
        done
    }
    /// A new label map: no history, nothing waiting.
    pub fn clear(&mut self) {
        self.history.clear();
        self.waiting.clear();
        self.errors.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;

    fn edit_of(n: usize) -> Edit {
        Edit { label: 1, indices: (0..n).collect(), previous: vec![0; n] }
    }

    #[test]
    fn the_history_keeps_under_its_cap_by_dropping_the_oldest_steps() {
        let one = edit_of(1000).bytes();
        let mut h = History::with_cap(3 * one);
        for _ in 0..5 {
            h.record(edit_of(1000));
        }
        assert_eq!((h.undo_len(), h.dropped), (3, 2));
        assert!(h.bytes() <= h.cap_bytes());
        let e = h.take_undo().expect("a step");
        h.undone(e);
        assert!(h.can_redo());
        h.record(edit_of(10));
        assert!(!h.can_redo(), "a new edit drops the redo stack");
        assert_eq!(h.bytes(), 2 * one + edit_of(10).bytes());
        // One edit larger than the cap is still undoable.
        let mut small = History::with_cap(10);
        small.record(edit_of(1000));
        assert!(small.can_undo());
    }

    #[test]
    fn an_edit_waits_while_another_thread_reads_the_map_and_never_copies_it() {
        let data = Array3::<u16>::zeros((4, 4, 4));
        let mut map = Arc::new(LabelMap::new(data, RasFromVoxel::identity()).expect("grid"));
        let reader = map.clone(); // the mesher, say
        let mut edits = LabelEdits::default();
        let mask = Arc::new(Array3::from_shape_fn((4, 4, 4), |(k, _, _)| k == 1));
        assert!(edits.run(&mut map, EditOp::Paint { mask, label: 3, bbox_kji: None, rule: Overwrite::All }).is_empty(), "applied while shared");
        assert!(edits.run(&mut map, EditOp::Undo).is_empty());
        assert_eq!(edits.waiting(), 2);
        assert!(Arc::ptr_eq(&map, &reader), "no copy was made");
        drop(reader);
        let done = edits.flush(&mut map);
        assert_eq!(done.len(), 2);
        assert!((!done[0].undone, done[1].undone) == (true, true) && done[0].edit.indices.len() == 16);
        assert!(map.data.iter().all(|&v| v == 0), "painted, then undone, in order");
        assert!(edits.history.can_redo() && !edits.history.can_undo());
        assert_eq!(edits.flush(&mut map).len(), 0);
    }
}
