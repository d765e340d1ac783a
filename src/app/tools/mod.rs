//! The tool seam of the slice views: what a primary-button gesture on a slice means. The slice
//! view ([`super::slice_view`]) turns the pointer into RAS (through the view's transforms) and
//! hands a [`Gesture`] to the active [`Tool`]; the tool answers with [`AppCommand`]s. Navigation
//! that every tool shares (wheel, zoom, pan, window/level, maximise) stays in the view.
//!
//! A new editing tool (a brush, an eraser, a box prompt) is a variant here and a file of its
//! own beside this one that turns gestures into commands; the view needs no change.

use super::AppCommand;
use crate::geometry::{RasMm, ViewPlane};

/// The tool a primary-button gesture goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Click or drag moves the linked crosshair (every view follows).
    Crosshair,
    /// A click runs "3D from click" there (and moves the crosshair); a drag moves the crosshair.
    ClickTo3d,
}

impl Tool {
    /// The tool for a gesture: "3D from click" while it is armed in the toolbar or Shift is
    /// held (as in the README's table), the crosshair otherwise.
    pub fn active(armed: bool, shift: bool) -> Tool {
        if armed || shift { Tool::ClickTo3d } else { Tool::Crosshair }
    }
}

/// A primary-button gesture on a slice view, at a point of the volume.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gesture {
    Click { plane: ViewPlane, at: RasMm },
    Drag { plane: ViewPlane, at: RasMm },
}

/// What `tool` does with `g`.
pub fn commands(tool: Tool, g: Gesture) -> Vec<AppCommand> {
    match (tool, g) {
        (Tool::ClickTo3d, Gesture::Click { at, .. }) => vec![AppCommand::SetCrosshair(at), AppCommand::ClickAt(at)],
        (Tool::Crosshair | Tool::ClickTo3d, Gesture::Click { at, .. } | Gesture::Drag { at, .. }) => vec![AppCommand::SetCrosshair(at)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_click_runs_3d_only_with_the_tool_armed_or_shift_and_a_drag_never_does() {
        let at = RasMm::new(1.0, 2.0, 3.0);
        let click = Gesture::Click { plane: ViewPlane::Axial, at };
        let drag = Gesture::Drag { plane: ViewPlane::Axial, at };
        let runs = |cmds: &[AppCommand]| cmds.iter().any(|c| matches!(c, AppCommand::ClickAt(p) if *p == at));
        assert!(!runs(&commands(Tool::active(false, false), click)));
        assert!(runs(&commands(Tool::active(true, false), click)));
        assert!(runs(&commands(Tool::active(false, true), click)));
        assert!(!runs(&commands(Tool::active(true, true), drag)));
        for t in [Tool::Crosshair, Tool::ClickTo3d] {
            assert!(commands(t, drag).iter().any(|c| matches!(c, AppCommand::SetCrosshair(p) if *p == at)));
        }
    }
}
