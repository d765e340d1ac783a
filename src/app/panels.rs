//! The menu bar, side panel (volume, window/level with histogram, labels), status bar,
//! message area and the toolbar ("3D from click").

use super::{App, AppCommand, ClickMethod, DialogKind, FileKind, OverlayMode, ViewCell};
use super::tools::Tool;
use crate::label_edit::Overwrite;
use crate::geometry::{DisplayConvention, axcodes};
use crate::volume::intensity::{Preset, Window};
use crate::volume::{Modality, OnGrid};
use egui::{Align2, Color32, FontId, Rect, RichText, Stroke, pos2, vec2};

pub fn bar_frame(style: &egui::Style) -> egui::Frame {
    egui::Frame::side_top_panel(style).inner_margin(egui::Margin::symmetric(8, 3)).fill(Color32::from_gray(24))
}

pub fn menu_ui(app: &mut App, ui: &mut egui::Ui) {
    let mut cmds = Vec::new();
    egui::MenuBar::new().ui(ui, |ui| {
        ui.menu_button("File", |ui| {
            if ui.button("Open volume…        Ctrl+O").on_hover_text("NIfTI, NRRD, MetaImage, or one file of a DICOM series").clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::OpenVolume));
            }
            if ui.button("Open DICOM folder…").on_hover_text("A folder of DICOM files (searched recursively); a folder of several series asks which").clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::OpenDicomFolder));
            }
            let has_volume = app.rt.scene.is_some();
            if ui.add_enabled(has_volume, egui::Button::new("Open label map…   Ctrl+L")).clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::OpenLabels));
            }
            let dicom = app.rt.scene.as_ref().is_some_and(|s| s.dicom_series.is_some());
            if ui.add_enabled(dicom, egui::Button::new("Open RTSTRUCT…")).on_hover_text("A DICOM structure set drawn on the open DICOM series, its ROI names and colours kept").clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::OpenStructures));
            }
            let has_labels = app.rt.scene.as_ref().is_some_and(|s| s.labels.is_some());
            if ui.add_enabled(has_labels, egui::Button::new("Save label map…    Ctrl+S")).clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::SaveLabels));
            }
            if ui.add_enabled(has_labels, egui::Button::new("Export surfaces…")).on_hover_text("Label surfaces as STL, OBJ or PLY (RAS or LPS, smoothed)").clicked() {
                cmds.push(AppCommand::ShowExport);
            }
            ui.separator();
            if ui.button("Open evaluation report…").on_hover_text("The REPORT.csv of `sam3d-studio eval`: its clicks worst first, each one click from a look").clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::OpenReport));
            }
            ui.separator();
            ui.menu_button("Recent files", |ui| {
                if app.recent.is_empty() {
                    ui.label(RichText::new("(none yet)").weak());
                }
                for r in &app.recent {
                    let name = r.path.file_name().map_or_else(|| r.path.display().to_string(), |n| n.to_string_lossy().into_owned());
                    let kind = match r.kind {
                        FileKind::Volume => "volume",
                        FileKind::Labels => "labels",
                    };
                    let enabled = r.kind == FileKind::Volume || has_volume;
                    let b = ui.add_enabled(enabled, egui::Button::new(format!("{name}  ({kind})"))).on_hover_text(r.path.display().to_string());
                    if b.clicked() {
                        cmds.push(match r.kind {
                            FileKind::Volume => AppCommand::OpenVolume { path: r.path.clone(), labels: None },
                            FileKind::Labels => AppCommand::OpenLabels(r.path.clone()),
                        });
                    }
                }
                if !app.recent.is_empty() {
                    ui.separator();
                    if ui.button("Clear list").clicked() {
                        cmds.push(AppCommand::ClearRecent);
                    }
                }
            });
            ui.separator();
            if ui.button("Quit                      Ctrl+Q").clicked() {
                cmds.push(AppCommand::Quit);
            }
        });
        ui.menu_button("View", |ui| {
            ui.label(RichText::new("Layout").weak());
            let mut layout = app.maximised;
            if ui.radio_value(&mut layout, None, "2 × 2 grid").clicked() {
                cmds.push(AppCommand::RestoreLayout);
            }
            for cell in ViewCell::ALL {
                if ui.radio_value(&mut layout, Some(cell), format!("{} only", cell.title())).clicked() && app.maximised != Some(cell) {
                    cmds.push(AppCommand::ToggleMaximise(cell));
                }
            }
            ui.separator();
            ui.label(RichText::new("Convention").weak());
            let mut conv = app.convention;
            if ui.radio_value(&mut conv, DisplayConvention::Radiological, "Radiological (patient left on screen right)").clicked() {
                cmds.push(AppCommand::SetConvention(DisplayConvention::Radiological));
            }
            if ui.radio_value(&mut conv, DisplayConvention::Neurological, "Neurological (patient left on screen left)").clicked() {
                cmds.push(AppCommand::SetConvention(DisplayConvention::Neurological));
            }
            ui.separator();
            let mut smooth = app.smooth;
            if ui.checkbox(&mut smooth, "Smooth voxels (linear interpolation)").changed() {
                cmds.push(AppCommand::SetSmooth(smooth));
            }
            let mut side = app.show_side_panel;
            if ui.checkbox(&mut side, "Side panel").changed() {
                cmds.push(AppCommand::ToggleSidePanel);
            }
            if ui.button("Reset views                R").clicked() {
                cmds.push(AppCommand::ResetViews);
            }
            ui.separator();
            if ui.button("Messages…").on_hover_text("Every note and error of this session").clicked() {
                cmds.push(AppCommand::ShowMessageLog);
            }
        });
        ui.menu_button("Model", |ui| {
            if ui.button("Load weights…").clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::LoadWeights));
            }
            if ui.button("Connect to engine…").on_hover_text("Run the model on another machine (sam3d-studio-engine serve-http)").clicked() {
                cmds.push(AppCommand::ShowConnect);
            }
            let has_model = app.rt.model.is_some();
            if ui.add_enabled(has_model, egui::Button::new("Load adapter…")).clicked() {
                cmds.push(AppCommand::ShowDialog(DialogKind::LoadAdapter));
            }
            ui.separator();
            ui.label(RichText::new("Or type a path").weak());
            ui.horizontal(|ui| {
                let l = ui.label("weights");
                ui.add(egui::TextEdit::singleline(&mut app.rt.weights_text).desired_width(260.0)).labelled_by(l.id);
                if ui.add_enabled(!app.rt.weights_text.trim().is_empty(), egui::Button::new("Load")).clicked() {
                    cmds.push(AppCommand::LoadWeights(app.rt.weights_text.trim().into()));
                }
            });
            ui.horizontal(|ui| {
                let l = ui.label("adapter");
                ui.add(egui::TextEdit::singleline(&mut app.rt.adapter_text).desired_width(260.0)).labelled_by(l.id);
                if ui.add_enabled(has_model && !app.rt.adapter_text.trim().is_empty(), egui::Button::new("Load")).clicked() {
                    cmds.push(AppCommand::LoadAdapter(app.rt.adapter_text.trim().into()));
                }
            });
            ui.separator();
            let can_tune = app.rt.scene.as_ref().is_some_and(|s| s.labels.is_some());
            if ui
                .add_enabled(can_tune, egui::Button::new("Fine-tune on this scan (LoRA)…"))
                .on_disabled_hover_text("Open a scan and its label map first")
                .on_hover_text("Train a LoRA adapter on this scan's labels, then compare it with the base weights")
                .clicked()
            {
                cmds.push(AppCommand::OpenFineTune);
            }
            ui.separator();
            let mut learned = app.learned_corrections;
            let r = ui.add_enabled(app.rt.has_corrector, egui::Checkbox::new(&mut learned, "Learned corrections")).on_disabled_hover_text(
                "The engine has no corrector (assets/models/corrector.safetensors, or SAM3D_CORRECTOR): points on a result go through the model's pass at the point and fixed rules.",
            ).on_hover_text(
                "With a result shown, each click (add) or Ctrl+click (remove) goes to the corrector, a network trained with simulated corrections that sees the scan, the result and every point so far, and returns the corrected result (assets/models/corrector.safetensors). Off: the model's pass at the point and fixed rules (add what the pass finds around it; cut the structure under a negative point).",
            );
            if r.changed() {
                cmds.push(AppCommand::SetLearnedCorrections(learned));
            }
            let mut zoom = app.zoom_small;
            let r = ui.checkbox(&mut zoom, "Zoom small objects").on_hover_text(
                "When the click's shape is small (under 24 mm in equivalent radius: a nodule, a lesion), run its pass again on the scan magnified about the click, up to 4× (0.75 mm pixels, 1 mm cells), and keep that unless the magnified object runs out of the model's cube, as nnInteractive's AutoZoom does. When the shape is larger, look at the click magnified 4× too: a closed object there that is unlike the shape and has an edge (a lesion inside the organ the shape took) is seen at its own zoom instead. Off: every object at the model's own 3 mm pixels and 4 mm cells.",
            );
            if r.changed() {
                cmds.push(AppCommand::SetZoomSmall(zoom));
            }
            ui.separator();
            ui.label(match &app.rt.model {
                Some(m) => format!("Loaded: {m}"),
                None => "No weights loaded: \"3D from click\" uses region growing.".into(),
            });
        });
        ui.menu_button("Help", |ui| {
            ui.label(RichText::new("Mouse and keys in the slice views").strong());
            for (k, what) in SHORTCUTS {
                ui.horizontal(|ui| {
                    ui.add_sized([150.0, 16.0], egui::Label::new(RichText::new(*k).monospace()));
                    ui.label(*what);
                });
            }
        });
    });
    app.rt.commands.extend(cmds);
}

const SHORTCUTS: &[(&str, &str)] = &[
    ("Left click / drag", "move the crosshair (all views follow)"),
    ("Wheel, Up/Down", "next / previous slice"),
    ("PageUp/PageDown", "10 slices"),
    ("Ctrl+wheel", "zoom about the cursor"),
    ("Middle drag, Space+drag", "pan"),
    ("Right drag", "window (left/right) and level (up/down)"),
    ("1 2 3 4", "CT presets: abdomen, lung, bone, brain"),
    ("A", "auto window (1st to 99th percentile)"),
    ("R", "reset zoom and pan"),
    ("F, double-click", "maximise / restore the view"),
    ("Esc", "cancel a running 3D-from-click job, else back to the 2 x 2 grid"),
    ("Shift+click", "3D from click (with any tool)"),
    ("Click / Ctrl+click / drag", "3D tool, a result on screen: add to it / remove from it / a box bounding it"),
    ("C T B E G K", "tools: navigate, 3D from click, paint (brush), erase, fill, keep island"),
    ("Shift+wheel", "brush size (paint, erase)"),
    ("Enter / Delete", "accept / reject the 3D-from-click result"),
    ("Ctrl+Z, Ctrl+Y", "undo / redo an accepted result or an edit"),
    ("] / [", "next / previous click of the case browser"),
];

/// "label 3 · liver", "label 0 · background", or "label 5" when the label has no name of its
/// own (a default "label 5" name is not repeated).
pub fn probe_label_text(id: u16, name: Option<&str>) -> String {
    let name = name.map(str::trim).filter(|n| !n.is_empty() && *n != format!("label {id}")).or((id == 0).then_some("background"));
    match name {
        Some(n) => format!("label {id} · {n}"),
        None => format!("label {id}"),
    }
}

pub fn status_ui(app: &mut App, ui: &mut egui::Ui) {
    let (mut cancel, mut open_finetune) = (false, false);
    ui.horizontal(|ui| {
        // A button's height always: a job's Cancel button appearing must not grow the bar and
        // resize every view above it.
        ui.set_min_height(ui.spacing().interact_size.y);
        let mono = |s: String| RichText::new(s).monospace().size(12.0);
        app.rt.hover_shown = app.rt.hover.clone();
        match (&app.rt.hover, &app.rt.scene) {
            (Some(p), Some(scene)) => {
                ui.label(mono(format!("RAS ({:7.1}, {:7.1}, {:7.1}) mm", p.ras.x(), p.ras.y(), p.ras.z())));
                ui.separator();
                if p.inside {
                    ui.label(mono(format!("voxel ({:.0}, {:.0}, {:.0})", p.voxel.x().round(), p.voxel.y().round(), p.voxel.z().round())));
                    ui.separator();
                    if let Some(v) = p.intensity {
                        let unit = if scene.modality == Modality::Ct { " HU" } else { "" };
                        ui.label(mono(format!("{}{unit}", fmt_value(v))));
                    }
                    if let Some(id) = p.label {
                        ui.separator();
                        ui.label(mono(probe_label_text(id, p.label_name.as_deref())));
                    }
                } else {
                    ui.label(mono("outside the volume".into()));
                }
            }
            (None, Some(scene)) => {
                let c = scene.crosshair;
                ui.label(mono(format!("crosshair RAS ({:7.1}, {:7.1}, {:7.1}) mm", c.x(), c.y(), c.z())));
            }
            _ => {
                ui.label(RichText::new("No volume").weak());
            }
        }
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            // In a narrow window, a text with no room for more than its ellipsis is left out,
            // and a running job's item keeps only its Cancel button and spinner (then the
            // compute text goes too).
            const LEAST: f32 = 40.0;
            let tight = ui.available_width() < 280.0;
            if ui.available_width() >= LEAST && !(tight && app.rt.click.running.is_some()) {
                ui.add(egui::Label::new(RichText::new(format!("Compute: {}", super::device_name(&app.rt.device))).size(12.0)).truncate())
                    .on_hover_text("Where the model runs (Model → Connect to engine… to change)");
            }
            if let Some(run) = app.rt.finetune.run.as_ref().filter(|r| r.is_active() && !app.rt.finetune.open) {
                ui.separator();
                if ui.small_button("Show").on_hover_text("Open the fine-tuning panel").clicked() {
                    open_finetune = true;
                }
                let f = if run.total() > 0 { run.done as f32 / run.total() as f32 } else { 0.0 };
                ui.add(egui::ProgressBar::new(f).desired_width(80.0).desired_height(12.0));
                ui.add(egui::Label::new(RichText::new(format!("Fine-tuning: {}", run.summary())).size(12.0)).truncate());
            }
            if let Some((job, _, t0)) = &app.rt.click.running {
                // One item (the method is in the toolbar); where the probe leaves it little room,
                // its Cancel button and spinner alone.
                ui.separator();
                if ui.small_button("Cancel").on_hover_text("Stop this 3D-from-click job (Esc)").clicked() {
                    cancel = true;
                }
                if !tight {
                    if let Some((_, f)) = &app.rt.click_stage {
                        ui.add(egui::ProgressBar::new(*f).desired_width(60.0).desired_height(12.0));
                    }
                    let stage = app.rt.click_stage.as_ref().map_or(String::new(), |(s, _)| format!(" {s}"));
                    ui.add(egui::Label::new(RichText::new(format!("3D from click #{job}:{stage} …{}", elapsed_text(*t0))).size(12.0)).truncate());
                }
                super::spinner::spinner_after(ui, *t0).on_hover_text(format!("3D from click #{job} running ({})", app.click_method.name()));
                ui.ctx().request_repaint_after(super::spinner::repaint_after(*t0, std::time::Duration::from_millis(500)));
            } else if let Some(status) = &app.rt.click.last_status {
                ui.separator();
                ui.add(egui::Label::new(RichText::new(format!("3D from click: {status}")).size(12.0)).truncate());
            }
            if let Some(c) = app.rt.click.candidate.as_ref().filter(|_| app.rt.summary_in_status && app.rt.click.running.is_none()) {
                ui.separator();
                let dice = c.compared.as_ref().map_or_else(String::new, |cmp| format!(" · {}", cmp.summary()));
                ui.add(egui::Label::new(RichText::new(format!("result: {}{}{dice}", c.size_and_time(), c.zoom_text())).size(12.0)).truncate());
            }
            if let Some(job) = &app.rt.edit_job {
                ui.separator();
                ui.add(egui::Label::new(RichText::new(format!("{} …{}", job.what, elapsed_text(job.started))).size(12.0)).truncate());
                super::spinner::spinner_after(ui, job.started);
                ui.ctx().request_repaint_after(super::spinner::repaint_after(job.started, std::time::Duration::from_millis(200)));
            }
            if let Some((what, f)) = &app.rt.mesh_progress {
                ui.separator();
                ui.add(egui::ProgressBar::new(*f).desired_width(100.0).desired_height(12.0));
                ui.add(egui::Label::new(RichText::new(what).size(12.0)).truncate());
            }
            if let Some((what, f)) = &app.rt.progress {
                ui.separator();
                ui.add(egui::ProgressBar::new(*f).desired_width(140.0).desired_height(12.0).show_percentage());
                ui.add(egui::Label::new(RichText::new(what).size(12.0)).truncate());
                super::spinner::spinner(ui);
            }
            // The model last, so in a narrow window it is what an ellipsis shortens.
            if ui.available_width() < LEAST + ui.spacing().item_spacing.x * 2.0 + 1.0 {
                return;
            }
            ui.separator();
            let model = match (&app.rt.model, &app.rt.startup_weights) {
                (Some(m), _) => {
                    let adapter = match (&app.rt.adapter, &app.rt.scan_adapter) {
                        (Some(a), _) => format!("adapter {a}"),
                        (None, Some(a)) => format!("adapter {a} (for this MR)"),
                        (None, None) => "no adapter".to_string(),
                    };
                    format!("Model: {m} · {adapter}")
                }
                (None, Some(w)) => format!("Model: loading {w}…"),
                (None, None) => "Model: none (region growing only)".to_string(),
            };
            let r = ui.add(egui::Label::new(RichText::new(model.clone()).size(12.0)).truncate());
            if app.rt.model.is_none() && app.rt.startup_weights.is_none() {
                r.on_hover_text(super::NO_MODEL_HELP);
            } else {
                r.on_hover_text(model);
            }
        });
    });
    if cancel {
        app.send(AppCommand::CancelClick);
    }
    if open_finetune {
        app.send(AppCommand::OpenFineTune);
    }
}

/// A running job's elapsed time for the status bar (" 2.3 s"), once its indicator moves
/// ([`super::spinner::QUIET`]); nothing before, so the text does not ask for frames.
fn elapsed_text(started: std::time::Instant) -> String {
    let e = started.elapsed();
    if e < super::spinner::QUIET { String::new() } else { format!(" {:.1} s", e.as_secs_f32()) }
}

fn fmt_value(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 { format!("{v:.0}") } else { format!("{v:.3}") }
}

/// A window bound on a scale `span` wide: whole numbers for CT-like ranges (HU), a few decimals
/// only for small intensity ranges (some MR and PET scans).
pub fn fmt_window_value(v: f32, span: f32) -> String {
    let decimals = if span >= 100.0 { 0 } else if span >= 10.0 { 1 } else if span >= 1.0 { 2 } else { 3 };
    let s = format!("{v:.decimals$}");
    // No "-0".
    if s.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') { s.trim_start_matches('-').to_string() } else { s }
}

pub fn side_panel_ui(app: &mut App, ui: &mut egui::Ui) {
    let mut cmds = Vec::new();
    egui::ScrollArea::vertical().auto_shrink([false, false]).show(ui, |ui| {
        ui.add_space(4.0);
        let Some(scene) = app.rt.scene.as_ref() else {
            ui.label(RichText::new("No volume open.").weak());
            return;
        };
        egui::CollapsingHeader::new(RichText::new("Volume").strong()).default_open(true).show(ui, |ui| {
            let v = &scene.volume;
            let name = scene.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            egui::Grid::new("volume_info").num_columns(2).spacing([10.0, 2.0]).show(ui, |ui| {
                let row = |ui: &mut egui::Ui, k: &str, val: String| {
                    ui.label(RichText::new(k).weak());
                    ui.label(val);
                    ui.end_row();
                };
                ui.label(RichText::new("file").weak());
                ui.label(&name).on_hover_text(scene.path.display().to_string());
                ui.end_row();
                let sp = v.spacing_mm();
                row(ui, "voxels", format!("{} (i × j × k)", v.shape()));
                row(ui, "spacing", format!("{:.3} × {:.3} × {:.3} mm", sp[0], sp[1], sp[2]));
                row(ui, "orientation", axcodes(v.ras_from_voxel()).iter().collect::<String>());
                let modality = match scene.modality {
                    Modality::Ct => "CT (HU)",
                    Modality::Mr => "MR / other",
                    Modality::Unknown => "unknown",
                };
                row(ui, "modality", modality.into());
                row(ui, "range", format!("{} to {}", fmt_value(scene.stats.min as f32), fmt_value(scene.stats.max as f32)));
                // The file's type, and the one the viewer holds the voxels in when narrower
                // (a float32 file of whole numbers is held as int16).
                match v.meta().dtype {
                    Some(d) if d == v.dtype() => row(ui, "datatype", d.name().into()),
                    Some(d) => row(ui, "datatype", format!("{} · held as {}", d.name(), v.dtype().name())),
                    None => row(ui, "datatype", format!("held as {}", v.dtype().name())),
                }
            });
        });
        ui.add_space(4.0);
        egui::CollapsingHeader::new(RichText::new("Window / level").strong()).default_open(true).show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (n, p) in Preset::ALL.iter().enumerate() {
                    let w = p.window();
                    let b = ui.button(p.name()).on_hover_text(format!("W {} / L {}  (key {})", w.width, w.level, n + 1));
                    if b.clicked() {
                        cmds.push(AppCommand::ApplyPreset(*p));
                    }
                }
                if ui.button("Auto").on_hover_text("1st to 99th percentile (key A)").clicked() {
                    cmds.push(AppCommand::AutoWindow);
                }
            });
            let mut w = scene.window;
            let range = (scene.stats.max - scene.stats.min).max(1.0);
            let speed = (range / 1000.0).max(0.1);
            ui.horizontal(|ui| {
                let l = ui.label("Level");
                let a = ui.add(egui::DragValue::new(&mut w.level).speed(speed).max_decimals(if range >= 100.0 { 0 } else { 2 })).labelled_by(l.id);
                let l2 = ui.label("Width");
                let b = ui.add(egui::DragValue::new(&mut w.width).speed(speed).range(1e-3..=f32::MAX).max_decimals(if range >= 100.0 { 0 } else { 2 })).labelled_by(l2.id);
                if a.changed() || b.changed() {
                    cmds.push(AppCommand::SetWindow(w));
                }
            });
            histogram_ui(ui, &scene.histogram, scene.window);
        });
        ui.add_space(4.0);
        egui::CollapsingHeader::new(RichText::new("Labels").strong()).default_open(true).show(ui, |ui| {
            let Some(layer) = scene.labels.as_ref() else {
                ui.label(RichText::new("No label map. File > Open label map…").weak());
                return;
            };
            let name = layer.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            ui.label(name).on_hover_text(layer.path.display().to_string());
            if let Some(t) = &layer.table.names_from {
                ui.label(RichText::new(format!("names from {}", t.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()))).weak().size(11.0));
            }
            let mut opacity = app.overlay_opacity;
            ui.horizontal(|ui| {
                let l = ui.label("Opacity");
                if ui.add(egui::Slider::new(&mut opacity, 0.0..=1.0).fixed_decimals(2)).labelled_by(l.id).changed() {
                    cmds.push(AppCommand::SetOverlayOpacity(opacity));
                }
            });
            ui.horizontal(|ui| {
                let mut mode = app.overlay_mode;
                if ui.radio_value(&mut mode, OverlayMode::Fill, "Fill").clicked() {
                    cmds.push(AppCommand::SetOverlayMode(OverlayMode::Fill));
                }
                if ui.radio_value(&mut mode, OverlayMode::Outline, "Outline").clicked() {
                    cmds.push(AppCommand::SetOverlayMode(OverlayMode::Outline));
                }
                ui.separator();
                if ui.small_button("Show all").clicked() {
                    cmds.push(AppCommand::SetAllLabelsVisible(true));
                }
                if ui.small_button("Hide all").clicked() {
                    cmds.push(AppCommand::SetAllLabelsVisible(false));
                }
            });
            ui.separator();
            super::label_list::list_ui(app, ui, &mut cmds);
        });
    });
    app.rt.commands.extend(cmds);
}

/// Log-scaled intensity histogram with the window drawn on it (shaded band and grey ramp).
fn histogram_ui(ui: &mut egui::Ui, h: &super::loader::Histogram, w: Window) {
    let (rect, _) = ui.allocate_exact_size(vec2(ui.available_width(), 84.0), egui::Sense::hover());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, Color32::from_gray(16));
    if h.counts.is_empty() || h.hi <= h.lo {
        return;
    }
    let x_of = |v: f32| rect.left() + (v - h.lo) / (h.hi - h.lo) * rect.width();
    let (wl, wh) = (x_of(w.low()).clamp(rect.left(), rect.right()), x_of(w.high()).clamp(rect.left(), rect.right()));
    p.rect_filled(Rect::from_min_max(pos2(wl, rect.top()), pos2(wh, rect.bottom())), 0.0, Color32::from_rgba_unmultiplied(80, 130, 200, 40));
    let max = h.counts.iter().map(|&c| ((c as f32) + 1.0).ln()).fold(0.0, f32::max).max(1e-6);
    let bw = rect.width() / h.counts.len() as f32;
    for (n, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let hgt = ((c as f32) + 1.0).ln() / max * (rect.height() - 4.0);
        let x = rect.left() + n as f32 * bw;
        p.rect_filled(Rect::from_min_max(pos2(x, rect.bottom() - hgt), pos2(x + bw.max(1.0), rect.bottom())), 0.0, Color32::from_gray(150));
    }
    // The grey ramp the window applies: black at low, white at high.
    let ramp = Stroke::new(1.5, Color32::from_rgb(110, 170, 255));
    p.line_segment([pos2(rect.left(), rect.bottom() - 1.0), pos2(wl, rect.bottom() - 1.0)], ramp);
    p.line_segment([pos2(wl, rect.bottom() - 1.0), pos2(wh, rect.top() + 1.0)], ramp);
    p.line_segment([pos2(wh, rect.top() + 1.0), pos2(rect.right(), rect.top() + 1.0)], ramp);
    let f = FontId::proportional(10.0);
    let under = rect.bottom() + 7.0;
    let grey = Color32::from_gray(140);
    ui.painter().text(pos2(rect.left(), under), Align2::LEFT_CENTER, fmt_value(h.lo), f.clone(), grey);
    ui.painter().text(pos2(rect.right(), under), Align2::RIGHT_CENTER, fmt_value(h.hi), f.clone(), grey);
    ui.painter().text(pos2(rect.center().x, under), Align2::CENTER_CENTER, format!("window {} to {}", fmt_window_value(w.low(), h.hi - h.lo), fmt_window_value(w.high(), h.hi - h.lo)), f, Color32::from_rgb(110, 170, 255));
    ui.add_space(12.0);
}

/// The central area when no volume is open.
pub fn empty_ui(app: &mut App, ui: &mut egui::Ui, full: Rect) {
    let busy = app.rt.progress.is_some();
    let mut cmds = Vec::new();
    ui.scope_builder(egui::UiBuilder::new().max_rect(full.shrink(40.0)), |ui| {
        ui.vertical_centered(|ui| {
            ui.add_space(full.height() * 0.3);
            if busy {
                super::spinner::spinner(ui);
                ui.label("Loading…");
            } else {
                ui.label(RichText::new("No volume open").size(20.0));
                ui.add_space(6.0);
                ui.label("File > Open volume… (Ctrl+O) or Open DICOM folder…, or drop a file or a DICOM folder on this window (NIfTI, NRRD, MetaImage, DICOM).");
                ui.add_space(6.0);
                if ui.button("Open volume…").clicked() {
                    cmds.push(AppCommand::ShowDialog(DialogKind::OpenVolume));
                }
            }
        });
    });
    app.rt.commands.extend(cmds);
}

/// The toolbar: the "3D from click" tool, its method and target label, Accept / Reject, undo.
pub fn toolbar_ui(app: &mut App, ui: &mut egui::Ui) {
    let mut cmds = Vec::new();
    let has_volume = app.rt.scene.is_some();
    ui.horizontal_wrapped(|ui| {
        for t in Tool::ALL {
            let b = ui.add_enabled(has_volume, egui::Button::selectable(app.rt.tool == t, t.name())).on_hover_text(format!("{} ({})", t.help(), t.key()));
            if b.clicked() {
                cmds.push(AppCommand::SetTool(if app.rt.tool == t && t != Tool::Crosshair { Tool::Crosshair } else { t }));
            }
        }
        ui.separator();
        if matches!(app.rt.tool, Tool::Paint | Tool::Erase) {
            super::tools::brush::options_ui(&app.brush, app.rt.tool, ui, &mut cmds);
            ui.separator();
        }
        if app.rt.tool == Tool::KeepIsland {
            if ui.button("Remove small islands").on_hover_text("Erase the pieces smaller than 1 ml of the active label (of every label when none is active); on its own thread, undoable").clicked() {
                cmds.push(AppCommand::RemoveSmallIslands { min_ml: 1.0 });
            }
            if ui.button("Fill holes").on_hover_text("Fill the cavities enclosed by the active label; undoable").clicked() {
                cmds.push(AppCommand::FillHoles);
            }
            ui.separator();
        }
        let method = app.click_method;
        let method_label = ui.label("by");
        let sam_med3d = app.rt.model_is_sam_med3d;
        let name = |m: ClickMethod| if m == ClickMethod::Model && sam_med3d { "SAM-Med3D" } else { m.name() };
        egui::ComboBox::from_id_salt("click_method").selected_text(name(method)).show_ui(ui, |ui| {
            if ui.selectable_label(method == ClickMethod::RegionGrowing, ClickMethod::RegionGrowing.name()).clicked() {
                cmds.push(AppCommand::SetClickMethod(ClickMethod::RegionGrowing));
            }
            let has_model = app.rt.model.is_some();
            let b = ui.add_enabled(has_model, egui::Button::selectable(method == ClickMethod::Model, name(ClickMethod::Model)));
            if b.on_disabled_hover_text(format!("Disabled: {}", super::NO_MODEL_HELP)).clicked() {
                cmds.push(AppCommand::SetClickMethod(ClickMethod::Model));
            }
        })
        .response
        .labelled_by(method_label.id);
        // (SAM-Med3D runs as published: its cube, its decoder, no refinement or growing.)
        if method == ClickMethod::Model && !sam_med3d {
            let mut refine = app.refine_masks;
            let r = ui.checkbox(&mut refine, "Refine by image").on_hover_text(
                "Grow the model's mask by up to 8 mm into voxels whose intensity matches the organ's (the model's 3D output is coarse and errs small). Off: the model's mask as it is.",
            );
            if r.changed() {
                cmds.push(AppCommand::SetRefineMasks(refine));
            }
            let mut extend = app.extend_masks;
            let r = ui.checkbox(&mut extend, "Past the cube").on_hover_text(
                "When the organ reaches the faces of the model's output cube (a liver), run the model again deeper toward each face and join the shapes that agree. Off: one pass.",
            );
            if r.changed() {
                cmds.push(AppCommand::SetExtendMasks(extend));
            }
            let mut fuse = app.fuse_planes;
            let r = ui.checkbox(&mut fuse, "3 planes").on_hover_text(
                "Run the model on the axial, coronal and sagittal slices through the click and keep what at least two of them call inside (about 0.1 s more per click). Off: the clicked plane only.",
            );
            if r.changed() {
                cmds.push(AppCommand::SetFusePlanes(fuse));
            }
            let mut join = app.join_growing;
            let r = ui.checkbox(&mut join, "Join growing").on_hover_text(
                "Also grow a region from the click by intensity (as the region-growing method does). When it agrees with the model's shape (at most 1.5× its volume, holding 60 % of it), the result is both together: the scan's own boundary where the model's coarse shape falls short. Of a region that leaks into neighbours, only its part within 4 mm of the shape is joined, when that part agrees. Off: the model's shape alone.",
            );
            if r.changed() {
                cmds.push(AppCommand::SetJoinGrowing(join));
            }
            if app.scene().is_some_and(|s| s.modality == crate::volume::Modality::Mr) {
                let mut mr = app.mr_adapter;
                let r = ui.checkbox(&mut mr, "MR adapter").on_hover_text(
                    "The shipped weights were trained on CT; on an MR scan the engine puts the shipped MR adapter (assets/models/mr.safetensors, trained on MR phantoms) on them unless an adapter was loaded by hand. Off: the CT weights alone.",
                );
                if r.changed() {
                    cmds.push(AppCommand::SetMrAdapter(mr));
                }
            }
        }
        let next = app.next_label_id();
        let target = app.rt.click.target;
        let names: Vec<(u16, String)> = app
            .rt
            .scene
            .as_ref()
            .and_then(|s| s.labels.as_ref())
            .map(|l| l.table.entries.iter().filter(|(id, _)| **id != 0).map(|(id, e)| (*id, format!("{id}  {}", e.name))).collect())
            .unwrap_or_default();
        let shown = match target {
            None => format!("new label {next}"),
            Some(id) => names.iter().find(|n| n.0 == id).map_or_else(|| format!("label {id}"), |n| n.1.clone()),
        };
        let rule = app.overwrite;
        let over = ui.label("over");
        egui::ComboBox::from_id_salt("overwrite").selected_text(match rule {
            Overwrite::All => "all labels".to_string(),
            Overwrite::Background => "background".to_string(),
            Overwrite::Label(l) => format!("label {l}"),
        })
        .show_ui(ui, |ui| {
            if ui.selectable_label(rule == Overwrite::Background, "background only").on_hover_text("Accept and the brush write only where there is no label: a reference is never overwritten").clicked() {
                cmds.push(AppCommand::SetOverwrite(Overwrite::Background));
            }
            if ui.selectable_label(rule == Overwrite::All, "all labels").on_hover_text("Accept and the brush write over every label").clicked() {
                cmds.push(AppCommand::SetOverwrite(Overwrite::All));
            }
            for (id, name) in &names {
                if ui.selectable_label(rule == Overwrite::Label(*id), format!("background and {name}")).clicked() {
                    cmds.push(AppCommand::SetOverwrite(Overwrite::Label(*id)));
                }
            }
        })
        .response
        .labelled_by(over.id)
        .on_hover_text("Paint over: which labels Accept and the brush may replace (as ITK-SNAP's \"paint over\")");
        let as_label = ui.label("as");
        egui::ComboBox::from_id_salt("click_target").selected_text(shown).show_ui(ui, |ui| {
            if ui.selectable_label(target.is_none(), format!("new label {next}")).clicked() {
                cmds.push(AppCommand::SetClickTarget(None));
            }
            for (id, name) in &names {
                if ui.selectable_label(target == Some(*id), name).clicked() {
                    cmds.push(AppCommand::SetClickTarget(Some(*id)));
                }
            }
        })
        .response
        .labelled_by(as_label.id);
        // A running job shows in the status bar (with its Cancel button), not here: an item
        // appearing in the toolbar wraps it onto another row at common widths, which moves
        // every view and makes the 3D view draw its meshes again while the engine works.
        ui.separator();
        let has_candidate = app.rt.click.candidate.is_some();
        if ui.add_enabled(has_candidate, egui::Button::new("Accept")).on_hover_text("Write the result into the label map (Enter)").clicked() {
            cmds.push(AppCommand::AcceptCandidate);
        }
        if ui.add_enabled(has_candidate, egui::Button::new("Reject")).on_hover_text("Drop the result (Delete)").clicked() {
            cmds.push(AppCommand::RejectCandidate);
        }
        ui.separator();
        if ui.add_enabled(app.rt.click.edits.history.can_undo(), egui::Button::new("Undo")).on_hover_text("Ctrl+Z").clicked() {
            cmds.push(AppCommand::Undo);
        }
        if ui.add_enabled(app.rt.click.edits.history.can_redo(), egui::Button::new("Redo")).on_hover_text("Ctrl+Y").clicked() {
            cmds.push(AppCommand::Redo);
        }
        app.rt.summary_in_status = !candidate_summary_ui(app, ui);
    });
    app.rt.commands.extend(cmds);
}

/// The candidate's size, time and comparison with the label under the click, at the end of the
/// toolbar: each part only if it fits on the toolbar's row, so a result never wraps the toolbar
/// and moves the slice views under the pointer. Returns false when the summary did not fit
/// (the status bar shows it then).
fn candidate_summary_ui(app: &App, ui: &mut egui::Ui) -> bool {
    if let Some(c) = &app.rt.click.candidate {
        let passes = if c.passes > 1 { format!(" · {} passes", c.passes) } else { String::new() };
        let joined = if c.joined { " · + growing" } else { "" };
        let zoom = c.zoom_text();
        let adapter = c.adapter.as_ref().map_or_else(String::new, |a| format!(" · {a}"));
        let text = RichText::new(format!("{}{passes}{joined}{zoom}{adapter}", c.size_and_time())).color(Color32::from_rgb(60, 220, 230)).size(12.0);
        let Some(text) = fitting(ui, text) else { return false };
        let label = ui.label(text);
        let mut hover = Vec::new();
        if c.passes > 1 {
            hover.push(format!(
                "The organ reached the faces of the model's output cube: {} more clicks toward them continued it (infer --no-extend: one pass).",
                c.passes - 1
            ));
        }
        if let Some(z) = c.zoom {
            hover.push(format!(
                "The model saw the scan magnified {z:.1}× about the click: the object was small, or the close-up probe found a distinct object (a lesion) inside the first shape (Model → Zoom small objects; infer --no-zoom, --no-close-up)."
            ));
        }
        if let Some(a) = &c.adapter {
            hover.push(format!("The model ran with the LoRA adapter {a} (the shipped MR adapter is put on by itself for MR scans; infer --no-mr-adapter: the base weights)."));
        }
        if c.joined {
            hover.push("Region growing from the click agreed with the model's shape and was joined to it, or, where growing leaked, its part within 4 mm of the shape (infer --no-join: the model's shape alone).".to_string());
        }
        if !hover.is_empty() {
            label.on_hover_text(hover.join("\n"));
        }
        if let Some(cmp) = &c.compared {
            // Green from Dice 0.8 up (the one-click goal), amber from 0.5, red below.
            let colour = match cmp.metrics.dice {
                d if d >= 0.8 => Color32::from_rgb(110, 210, 120),
                d if d >= 0.5 => Color32::from_rgb(235, 190, 80),
                _ => Color32::from_rgb(240, 110, 100),
            };
            if let Some(chip) = fitting(ui, RichText::new(cmp.summary()).color(colour).size(12.0)) {
                ui.label(chip).on_hover_text(cmp.details());
            }
        } else if app.rt.click.comparing == Some(c.job) {
            super::spinner::spinner(ui).on_hover_text("Measuring the result against the label under the click…");
        }
    }
    true
}

/// `text` laid out on one line, if it fits in what is left of the row.
fn fitting(ui: &egui::Ui, text: RichText) -> Option<std::sync::Arc<egui::Galley>> {
    let galley = egui::WidgetText::from(text).into_galley(ui, Some(egui::TextWrapMode::Extend), f32::INFINITY, egui::TextStyle::Body);
    (galley.size().x + ui.spacing().item_spacing.x <= ui.available_size_before_wrap().x).then_some(galley)
}

/// While files are dragged over the window.
pub fn drop_hint_ui(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let screen = ctx.content_rect();
    let painter = ctx.layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("drop_hint")));
    painter.rect_filled(screen, 0.0, Color32::from_black_alpha(170));
    painter.text(screen.center(), Align2::CENTER_CENTER, "Drop a volume or a DICOM folder to open it", FontId::proportional(22.0), Color32::WHITE);
}
