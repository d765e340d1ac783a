//! File → Export surfaces…: label surfaces to STL, OBJ or PLY from the viewer, as
//! `sam3d-studio mesh` writes them ([`crate::shape::export_label_surfaces`]): which labels, the
//! smoothing, and RAS or LPS coordinates; written on a thread of its own.

use super::command::{AppCommand, DialogKind};
use super::App;
use crate::shape::{MeshSpace, SurfaceExport};
use crossbeam_channel::Receiver;
use std::path::PathBuf;

/// Which labels to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Which {
    /// The active label (the one Accept and the brush write).
    #[default]
    Active,
    /// Every label shown in the views.
    Visible,
}

/// The export settings (kept between sessions).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ExportSettings {
    pub which: Which,
    /// Taubin smoothing iterations (the 3D view shows 10).
    pub smooth: usize,
    /// LPS coordinates (what 3D Slicer reads STL and OBJ in since 4.11); RAS otherwise.
    pub lps: bool,
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings { which: Which::Active, smooth: super::three_d::SMOOTH_ITERATIONS, lps: true }
    }
}

/// The window's state while open, and a write in flight.
#[derive(Debug, Default)]
pub struct ExportState {
    pub open: bool,
    pub running: Option<Receiver<Result<(PathBuf, usize), String>>>,
}

impl App {
    /// What an export of `which` writes now: ids and names, or why there is nothing.
    pub fn surface_export(&self, which: Which) -> Result<SurfaceExport, String> {
        let layer = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).ok_or("there is no label map to export")?;
        let labels: Vec<(u16, String)> = match which {
            Which::Active => {
                let id = self.rt.click.target.ok_or("choose the label to export first (click it in the label list)")?;
                vec![(id, layer.table.name_of(id).unwrap_or_default().to_string())]
            }
            Which::Visible => layer.table.entries.iter().filter(|(id, e)| **id != 0 && e.visible && e.voxels > 0).map(|(id, e)| (*id, e.name.clone())).collect(),
        };
        if labels.is_empty() {
            return Err("no label is shown".into());
        }
        let s = self.export;
        Ok(SurfaceExport { labels, smooth: s.smooth, decimate: None, space: if s.lps { MeshSpace::Lps } else { MeshSpace::Ras } })
    }

    /// Writes the surfaces to `path` on a thread of its own.
    pub(super) fn export_surfaces(&mut self, path: PathBuf) {
        let e = match self.surface_export(self.export.which) {
            Ok(e) => e,
            Err(m) => return self.error(format!("Export surfaces: {m}")),
        };
        let Some(map) = self.rt.scene.as_ref().and_then(|s| s.labels.as_ref()).map(|l| l.map.clone()) else { return };
        let (tx, rx) = crossbeam_channel::bounded(1);
        let spawned = std::thread::Builder::new().name("sam3d-export".into()).spawn(move || {
            let r = crate::shape::export_label_surfaces(&map, &path, &e).map(|t| (path, t)).map_err(|err| err.to_string());
            let _ = tx.send(r);
        });
        match spawned {
            Ok(_) => self.rt.export.running = Some(rx),
            Err(err) => self.error(format!("Export surfaces: {err}")),
        }
    }

    /// A finished export says so (each frame).
    pub(super) fn drain_export(&mut self) {
        let Some(rx) = &self.rt.export.running else { return };
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Err("the export thread stopped".into()),
        };
        self.rt.export.running = None;
        match r {
            Ok((p, tris)) => self.notice(format!("Exported {tris} triangles to {}", p.display())),
            Err(e) => self.error(format!("Export surfaces: {e}")),
        }
    }
}

/// The window (File → Export surfaces…).
pub fn window_ui(app: &mut App, ctx: &egui::Context) {
    if !app.rt.export.open {
        return;
    }
    let mut open = true;
    let mut s = app.export;
    let mut cmds = Vec::new();
    egui::Window::new("Export surfaces").open(&mut open).resizable(false).collapsible(false).show(ctx, |ui| {
        ui.horizontal(|ui| {
            ui.label("Labels");
            ui.radio_value(&mut s.which, Which::Active, "the active label");
            ui.radio_value(&mut s.which, Which::Visible, "every label shown");
        });
        ui.horizontal(|ui| {
            let l = ui.label("Smoothing");
            ui.add(egui::DragValue::new(&mut s.smooth).range(0..=100).suffix(" iterations")).labelled_by(l.id).on_hover_text("Taubin smoothing (keeps the volume); 0: the voxel surface as it is");
        });
        ui.horizontal(|ui| {
            ui.label("Coordinates");
            ui.radio_value(&mut s.lps, true, "LPS").on_hover_text("What 3D Slicer (4.11 and later) reads STL and OBJ files in");
            ui.radio_value(&mut s.lps, false, "RAS");
        });
        let what = app.surface_export(s.which);
        match &what {
            Ok(e) => ui.label(egui::RichText::new(format!("{} label(s): {}", e.labels.len(), e.labels.iter().map(|l| l.1.as_str()).take(6).collect::<Vec<_>>().join(", "))).weak()),
            Err(m) => ui.label(egui::RichText::new(m.as_str()).color(egui::Color32::from_rgb(235, 190, 80))),
        };
        ui.add_space(4.0);
        let busy = app.rt.export.running.is_some();
        if ui.add_enabled(what.is_ok() && !busy, egui::Button::new("Export…")).on_hover_text("STL, OBJ or PLY, by the file name's extension").clicked() {
            cmds.push(AppCommand::ShowDialog(DialogKind::ExportSurfaces));
        }
        if busy {
            super::spinner::spinner(ui);
        }
    });
    app.export = s;
    app.rt.export.open = open;
    app.rt.commands.extend(cmds);
}
