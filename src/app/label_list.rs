//! The label list of the side panel and what a user does to a label: show or hide it, pick its
//! colour, make it the active label (what Accept and the brush write), rename it, delete it
//! (its voxels erased, undoable), add a new one; and the prompt that names a new result.

use super::command::AppCommand;
use super::App;
use crate::volume::OnGrid;
use egui::{Color32, RichText};

/// The prompt that names a label (after Accept made a new one, or Rename…).
#[derive(Clone, Debug, PartialEq)]
pub struct NamePrompt {
    pub id: u16,
    pub text: String,
    /// Focus the text field on the first frame.
    pub focus: bool,
}

impl NamePrompt {
    /// The prompt for label `id`, holding its current name unless that is the default
    /// "label N" (then empty, so typing gives the name instead of adding to it).
    pub fn new(id: u16, current: &str) -> Self {
        let text = if current == format!("label {id}") { String::new() } else { current.to_string() };
        NamePrompt { id, text, focus: true }
    }
}

/// A name a user typed, cleaned: trimmed, no tabs or line breaks (the label files are one
/// label per line, tab-separated), at most 64 characters. `None` when nothing is left.
pub fn clean_name(s: &str) -> Option<String> {
    let t: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
    let t: String = t.chars().take(64).collect();
    (!t.is_empty()).then_some(t)
}

/// The labels of the open label map, one row each.
pub fn list_ui(app: &App, ui: &mut egui::Ui, cmds: &mut Vec<AppCommand>) {
    let Some(scene) = app.rt.scene.as_ref() else { return };
    let Some(layer) = scene.labels.as_ref() else { return };
    let voxel_ml = scene.volume.voxel_ml();
    let active = app.rt.click.target;
    egui::Grid::new("labels_list").num_columns(3).spacing([6.0, 2.0]).striped(true).show(ui, |ui| {
        for (&id, e) in layer.table.entries.iter().filter(|(id, _)| **id != 0) {
            let mut colour = e.colour;
            if ui.color_edit_button_srgb(&mut colour).on_hover_text(format!("Colour of {}", e.name)).changed() {
                cmds.push(AppCommand::SetLabelColour { id, colour });
            }
            ui.horizontal(|ui| {
                let mut visible = e.visible;
                if ui.checkbox(&mut visible, "").on_hover_text("Show or hide").changed() {
                    cmds.push(AppCommand::SetLabelVisible { id, visible });
                }
                let is_active = active == Some(id);
                let text = RichText::new(format!("{id}  {}", e.name));
                let r = ui.add(egui::Button::selectable(is_active, if is_active { text.strong() } else { text }));
                let r = r.on_hover_text("Click: the active label (what Accept and the brush write). Double-click: rename. Right-click: more.");
                if r.double_clicked() {
                    cmds.push(AppCommand::PromptLabelName(id));
                } else if r.clicked() {
                    cmds.push(AppCommand::SetClickTarget(if is_active { None } else { Some(id) }));
                }
                r.context_menu(|ui| {
                    if ui.button("Rename…").clicked() {
                        cmds.push(AppCommand::PromptLabelName(id));
                        ui.close();
                    }
                    if ui.button("Make active").clicked() {
                        cmds.push(AppCommand::SetClickTarget(Some(id)));
                        ui.close();
                    }
                    if ui.button("Show only this").clicked() {
                        cmds.push(AppCommand::SetAllLabelsVisible(false));
                        cmds.push(AppCommand::SetLabelVisible { id, visible: true });
                        ui.close();
                    }
                    ui.separator();
                    if ui.button(RichText::new("Delete label (erase its voxels)").color(Color32::from_rgb(240, 120, 110))).on_hover_text("Undoable with Ctrl+Z").clicked() {
                        cmds.push(AppCommand::DeleteLabel(id));
                        ui.close();
                    }
                });
            });
            ui.label(RichText::new(format!("{:.1} ml", e.voxels as f64 * voxel_ml)).weak().size(11.0));
            ui.end_row();
        }
    });
    if ui.small_button("New label").on_hover_text("Add an empty label and make it the active one").clicked() {
        cmds.push(AppCommand::NewLabel);
    }
}

/// The name prompt, when open: a small window near the top of the views.
pub fn name_prompt_ui(app: &mut App, ctx: &egui::Context) {
    let Some(p) = app.rt.name_prompt.as_mut() else { return };
    let mut cmds = Vec::new();
    let mut close = false;
    egui::Window::new("Label name").collapsible(false).resizable(false).anchor(egui::Align2::CENTER_TOP, [0.0, 90.0]).show(ctx, |ui| {
        ui.label(format!("Name of label {}:", p.id));
        let r = ui.add(egui::TextEdit::singleline(&mut p.text).desired_width(260.0).hint_text(format!("label {} (e.g. liver, tumour 1)", p.id)));
        if p.focus {
            r.request_focus();
            p.focus = false;
        }
        let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
        ui.horizontal(|ui| {
            if ui.button("OK").clicked() || enter {
                if let Some(name) = clean_name(&p.text) {
                    cmds.push(AppCommand::RenameLabel { id: p.id, name });
                }
                close = true;
            }
            if ui.button("Keep as is").clicked() || ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                close = true;
            }
        });
    });
    if close {
        app.rt.name_prompt = None;
    }
    app.rt.commands.extend(cmds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_clean_line() {
        assert_eq!(clean_name("  left\tkidney \n").as_deref(), Some("left kidney"));
        assert_eq!(clean_name(" \t\n"), None);
        assert_eq!(clean_name(&"x".repeat(100)).map(|s| s.len()), Some(64));
        assert_eq!(clean_name("tumour  2").as_deref(), Some("tumour 2"));
    }
}
