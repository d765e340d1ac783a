//! The tool seam of the slice views: what a primary-button gesture on a slice means. The slice
//! view ([`super::slice_view`]) turns the pointer into RAS (through the view's transforms) and
//! hands a [`Gesture`] to the active [`Tool`]; the tool answers with [`AppCommand`]s. Navigation
//! that every tool shares (wheel, zoom, pan, window/level, maximise) stays in the view.
//!
//! The editing tools (paint, erase, fill, islands) turn gestures into
//! [`crate::label_edit::ops::EditRequest`]s ([`brush`]); the app runs them on the label map,
//! undoably, under the overwrite rule.

pub mod brush;

use super::AppCommand;
use crate::geometry::{RasMm, ViewPlane};

/// The tool a primary-button gesture goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Tool {
    /// Click or drag moves the linked crosshair (every view follows).
    #[default]
    Crosshair,
    /// A click runs "3D from click" there (and moves the crosshair); a drag moves the crosshair.
    ClickTo3d,
    /// Paint the active label with the brush (a drag paints a stroke).
    Paint,
    /// Erase with the brush (the active label only when one is active, else every label).
    Erase,
    /// Fill the closed region of the slice under a click with the active label.
    Fill,
    /// Keep only the island (connected piece) of a label under a click.
    KeepIsland,
}

impl Tool {
    /// Every tool, in toolbar order.
    pub const ALL: [Tool; 6] = [Tool::Crosshair, Tool::ClickTo3d, Tool::Paint, Tool::Erase, Tool::Fill, Tool::KeepIsland];

    /// The tool for a gesture: the selected one, except that Shift makes any click "3D from
    /// click" (as in the README's table).
    pub fn active(selected: Tool, shift: bool) -> Tool {
        if shift { Tool::ClickTo3d } else { selected }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tool::Crosshair => "Navigate",
            Tool::ClickTo3d => "3D from click",
            Tool::Paint => "Paint",
            Tool::Erase => "Erase",
            Tool::Fill => "Fill",
            Tool::KeepIsland => "Keep island",
        }
    }

    /// Its key (as in ITK-SNAP where it has one).
    pub fn key(self) -> &'static str {
        match self {
            Tool::Crosshair => "C",
            Tool::ClickTo3d => "T",
            Tool::Paint => "B",
            Tool::Erase => "E",
            Tool::Fill => "G",
            Tool::KeepIsland => "K",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Tool::Crosshair => "Click or drag moves the crosshair; all views follow.",
            Tool::ClickTo3d => "A click segments the structure under it in 3D (Shift+click works with any tool). With a result on screen, another click adds what was missed, Ctrl+click removes what should not be there, and a box dragged on a slice bounds it (with no result, the box starts one).",
            Tool::Paint => "Paint the active label (a new one when none is active) with the brush; drag for a stroke. Shift+wheel: brush size.",
            Tool::Erase => "Erase with the brush: the active label only when one is active, else every label. Shift+wheel: brush size.",
            Tool::Fill => "Fill the closed region of this slice under the click with the active label (a region open to the slice's edge is refused).",
            Tool::KeepIsland => "Keep only the connected piece of a label under the click; its other pieces are erased.",
        }
    }

    /// Whether the tool edits the label map (its gestures never move the crosshair).
    pub fn edits(self) -> bool {
        matches!(self, Tool::Paint | Tool::Erase | Tool::Fill | Tool::KeepIsland)
    }
}

/// A primary-button gesture on a slice view, at a point of the volume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gesture {
    Click { plane: ViewPlane, at: RasMm },
    /// A click with Ctrl (Cmd on a Mac) held.
    CtrlClick { plane: ViewPlane, at: RasMm },
    /// A drag; `first` on its first frame.
    Drag { plane: ViewPlane, at: RasMm, first: bool },
    /// The button was let go after a drag.
    DragEnd { plane: ViewPlane },
}

/// What `tool` does with `g`.
pub fn commands(tool: Tool, g: Gesture) -> Vec<AppCommand> {
    match (tool, g) {
        (Tool::ClickTo3d, Gesture::Click { at, .. }) => vec![AppCommand::SetCrosshair(at), AppCommand::PromptAt { at, negative: false }],
        (Tool::ClickTo3d, Gesture::CtrlClick { at, .. }) => vec![AppCommand::PromptAt { at, negative: true }],
        // A drag of the 3D tool draws a box that bounds the object.
        (Tool::ClickTo3d, Gesture::Drag { plane, at, first }) => vec![AppCommand::BoxDrag { plane, at, first }],
        (Tool::ClickTo3d, Gesture::DragEnd { .. }) => vec![AppCommand::BoxDone],
        (_, Gesture::DragEnd { .. }) => Vec::new(),
        (_, Gesture::CtrlClick { plane, at }) => commands(tool, Gesture::Click { plane, at }),
        (Tool::Paint | Tool::Erase, Gesture::Click { plane, at }) => vec![AppCommand::BrushAt { plane, at, first: true }],
        (Tool::Paint | Tool::Erase, Gesture::Drag { plane, at, first }) => vec![AppCommand::BrushAt { plane, at, first }],
        (Tool::Fill, Gesture::Click { plane, at }) => vec![AppCommand::FillAt { plane, at }],
        (Tool::KeepIsland, Gesture::Click { at, .. }) => vec![AppCommand::KeepIslandAt(at)],
        (Tool::Fill | Tool::KeepIsland, Gesture::Drag { .. }) => Vec::new(),
        (Tool::Crosshair, Gesture::Click { at, .. } | Gesture::Drag { at, .. }) => vec![AppCommand::SetCrosshair(at)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_runs_3d_only_with_the_tool_chosen_or_shift_and_a_drag_never_does() {
        let at = RasMm::new(1.0, 2.0, 3.0);
        let click = Gesture::Click { plane: ViewPlane::Axial, at };
        let drag = Gesture::Drag { plane: ViewPlane::Axial, at, first: false };
        let runs = |cmds: &[AppCommand]| cmds.iter().any(|c| matches!(c, AppCommand::PromptAt { at: p, negative: false } if *p == at));
        assert!(!runs(&commands(Tool::active(Tool::Crosshair, false), click)));
        assert!(runs(&commands(Tool::active(Tool::ClickTo3d, false), click)));
        assert!(runs(&commands(Tool::active(Tool::Crosshair, true), click)));
        assert!(runs(&commands(Tool::active(Tool::Paint, true), click)), "Shift+click is 3D from click with any tool");
        assert!(!runs(&commands(Tool::active(Tool::ClickTo3d, true), drag)));
        assert!(commands(Tool::Crosshair, drag).iter().any(|c| matches!(c, AppCommand::SetCrosshair(p) if *p == at)));
        // The 3D tool's drag draws a box, ended by letting go.
        assert!(matches!(commands(Tool::ClickTo3d, drag)[..], [AppCommand::BoxDrag { first: false, .. }]));
        assert!(matches!(commands(Tool::ClickTo3d, Gesture::DragEnd { plane: ViewPlane::Axial })[..], [AppCommand::BoxDone]));
        assert!(commands(Tool::Paint, Gesture::DragEnd { plane: ViewPlane::Axial }).is_empty());
    }

    #[test]
    fn editing_tools_never_move_the_crosshair() {
        let at = RasMm::new(1.0, 2.0, 3.0);
        for t in Tool::ALL.into_iter().filter(|t| t.edits()) {
            for g in [Gesture::Click { plane: ViewPlane::Coronal, at }, Gesture::Drag { plane: ViewPlane::Coronal, at, first: true }] {
                assert!(commands(t, g).iter().all(|c| !matches!(c, AppCommand::SetCrosshair(_) | AppCommand::ClickAt(_) | AppCommand::PromptAt { .. })), "{t:?} {g:?}");
            }
        }
        assert!(matches!(commands(Tool::Paint, Gesture::Drag { plane: ViewPlane::Axial, at, first: true })[..], [AppCommand::BrushAt { first: true, .. }]));
        assert!(matches!(commands(Tool::Fill, Gesture::Click { plane: ViewPlane::Sagittal, at })[..], [AppCommand::FillAt { plane: ViewPlane::Sagittal, .. }]));
        // Ctrl+click with the 3D tool removes from the result, and never moves the crosshair.
        assert!(matches!(commands(Tool::ClickTo3d, Gesture::CtrlClick { plane: ViewPlane::Axial, at })[..], [AppCommand::PromptAt { negative: true, .. }]));
    }
}
