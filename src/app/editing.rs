//! What the editing tools do to the label map: brush segments and slice fills run where the map
//! is owned (they touch a few thousand voxels); island removal, keep-island and hole filling
//! walk the whole volume, so they run on a thread of their own from a snapshot and come back
//! as one edit. Everything is undoable and follows the overwrite rule.

use super::edit::EditOp;
use super::tools::{Tool, brush};
use super::{App, LabelLayer, LabelTable};
use crate::geometry::{RasMm, ViewPlane};
use crate::label_edit::Overwrite;
use crate::label_edit::islands::IslandSize;
use crate::label_edit::ops::EditRequest;
use crate::volume::OnGrid;
use crossbeam_channel::{Receiver, bounded};
use std::sync::Arc;
use std::time::Instant;

/// A whole-volume edit running on its own thread.
#[derive(Debug)]
pub struct EditJob {
    pub what: String,
    pub started: Instant,
    /// The label map generation it was computed on (a newer map drops it).
    pub map_generation: u64,
    pub rx: Receiver<Result<crate::label_edit::Edit, String>>,
}

impl App {
    /// The label the editing tools write: the active one, else a new one (which becomes active
    /// and is offered a name).
    fn paint_label(&mut self) -> u16 {
        if let Some(l) = self.rt.click.target {
            return l;
        }
        let id = self.next_label_id();
        self.rt.click.target = Some(id);
        self.rt.name_prompt = Some(super::label_list::NamePrompt::new(id, &format!("label {id}")));
        id
    }

    /// The label layer, made (empty, on the volume's grid) when there is none yet.
    pub(super) fn label_layer(&mut self) -> Option<&mut LabelLayer> {
        let scene = self.rt.scene.as_mut()?;
        Some(scene.labels.get_or_insert_with(|| {
            let map = crate::volume::LabelMap::empty_like(scene.volume.as_ref());
            LabelLayer { path: scene.path.with_file_name("labels.nii.gz"), map: Arc::new(map), table: LabelTable::default(), lut: vec![[0; 4]] }
        }))
    }

    /// Runs an edit operation on the label map (now, or once its readers let go).
    fn run_edit(&mut self, op: EditOp) {
        if self.label_layer().is_none() {
            return;
        }
        let Some(layer) = self.rt.scene.as_mut().and_then(|s| s.labels.as_mut()) else { return };
        let done = self.rt.click.edits.run(&mut layer.map, op);
        self.after_edits(done);
        self.report_edit_errors();
    }

    /// Says what edit operations could not do.
    pub(super) fn report_edit_errors(&mut self) {
        for e in std::mem::take(&mut self.rt.click.edits.errors) {
            self.error(e);
        }
    }

    /// One brush segment of the paint or erase tool at `at` (`first`: a new stroke).
    pub(super) fn brush_at(&mut self, plane: ViewPlane, at: RasMm, first: bool) {
        if self.rt.scene.is_none() {
            return;
        }
        let tool = self.rt.tool;
        let from = if first { at } else { self.rt.brush_last.unwrap_or(at) };
        self.rt.brush_last = Some(at);
        let (label, rule) = match tool {
            Tool::Erase => (0, brush::erase_rule(self.rt.click.target)),
            _ => (self.paint_label(), self.overwrite),
        };
        let req = self.brush.stroke(tool, plane, from, at, label, rule);
        let volume = self.brush.threshold.then(|| self.rt.scene.as_ref().map(|s| s.volume.clone())).flatten();
        self.run_edit(EditOp::Request { req, volume, merge: !first });
    }

    /// The array index of a point, or a message when it lies outside the volume.
    fn index_of(&mut self, at: RasMm) -> Option<crate::geometry::ArrayIdx> {
        let scene = self.rt.scene.as_ref()?;
        let idx = scene.volume.shape().array_index(scene.voxel_from_ras.apply(at));
        if idx.is_none() {
            self.error(format!("({:.1}, {:.1}, {:.1}) mm is outside the volume", at.x(), at.y(), at.z()));
        }
        idx
    }

    /// The fill tool: the closed region of the slice under `at`.
    pub(super) fn fill_at(&mut self, plane: ViewPlane, at: RasMm) {
        let Some(idx) = self.index_of(at) else { return };
        let label = self.paint_label();
        let rule = self.overwrite;
        self.run_edit(EditOp::Request { req: EditRequest::FillRegion { at: idx, plane, label, rule }, volume: None, merge: false });
    }

    /// The keep-island tool: only the piece of the label under `at` stays.
    pub(super) fn keep_island_at(&mut self, at: RasMm) {
        let Some(idx) = self.index_of(at) else { return };
        let label = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).map_or(0, |l| l.map.data[idx.as_kji()]);
        if label == 0 {
            self.notice("Keep island: click on a label (this is background)".into());
            return;
        }
        self.spawn_edit(EditRequest::KeepComponentAt { at: idx, rule: Overwrite::Label(label) });
    }

    /// Removes islands smaller than `min_ml` of the active label (all labels when none).
    pub(super) fn remove_small_islands(&mut self, min_ml: f64) {
        let label = self.rt.click.target;
        let rule = label.map_or(Overwrite::All, Overwrite::Label);
        self.spawn_edit(EditRequest::RemoveSmallIslands { label, min: IslandSize::Mm3(min_ml * 1000.0), rule });
    }

    /// Fills the enclosed cavities of the active label.
    pub(super) fn fill_holes(&mut self) {
        let Some(label) = self.rt.click.target else {
            self.notice("Fill holes: choose the label first (click it in the label list)".into());
            return;
        };
        self.spawn_edit(EditRequest::FillHoles { label, rule: self.overwrite });
    }

    /// Runs a whole-volume edit on a snapshot of the map, on its own thread.
    fn spawn_edit(&mut self, req: EditRequest) {
        if let Some(j) = &self.rt.edit_job {
            self.notice(format!("{} is still running; try again when it is done", j.what));
            return;
        }
        let Some(layer) = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()) else {
            self.notice("There is no label map to edit".into());
            return;
        };
        let snapshot = layer.map.clone();
        let (tx, rx) = bounded(1);
        let what = req.describe();
        let wake = self.rt.click.wake.clone();
        let spawned = std::thread::Builder::new().name("sam3d-edit".into()).spawn(move || {
            let mut map = crate::volume::LabelMap::clone(&snapshot);
            drop(snapshot);
            let _ = tx.send(req.apply(&mut map, None).map_err(|e| e.to_string()));
            // The status bar asks for no frame in a job's first second: the end shows now.
            if let Some(w) = &wake {
                w.request_repaint();
            }
        });
        match spawned {
            Ok(_) => self.rt.edit_job = Some(EditJob { what, started: Instant::now(), map_generation: self.rt.map_generation, rx }),
            Err(e) => self.error(format!("{what}: could not start: {e}")),
        }
    }

    /// A finished whole-volume edit goes into the map (each frame).
    pub(super) fn drain_edit_job(&mut self) {
        let Some(job) = &self.rt.edit_job else { return };
        let result = match job.rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err("the edit thread stopped without an answer".into()),
        };
        let (what, generation) = (job.what.clone(), job.map_generation);
        self.rt.edit_job = None;
        if generation != self.rt.map_generation {
            return;
        }
        match result {
            Ok(e) if e.indices.is_empty() => self.notice(format!("{what}: nothing to change")),
            Ok(e) => {
                let n = e.indices.len();
                self.run_edit(EditOp::Computed(e));
                self.notice(format!("{what}: {n} voxels changed. Ctrl+Z undoes."));
            }
            Err(e) => self.error(format!("{what}: {e}")),
        }
    }
}
