//! Correcting a 3D-from-click result with more prompts, as nnInteractive and SAM-Med3D take
//! them: with the result on screen, a click of the 3D tool adds what was missed, Ctrl+click
//! removes what should not be there, and a box dragged on a slice bounds the object (with no
//! result yet, the box starts one). The SAM3D model's object lives in the engine
//! (`prompts::ObjectRef`); region growing's in the viewer
//! ([`crate::baseline::prompted::PromptedGrowing`]). Accept or Reject ends the object.

use super::click3d::{Candidate, ClickMethod};
use super::App;
use crate::baseline::prompted::{ObjectState, PromptedGrowing, crop_component};
use crate::geometry::{RasMm, ViewPlane};
use crate::prompts::{BoxPrompt, Prompt, PromptSet};
use crate::volume::OnGrid;

/// One prompt for the 3D-from-click job: `refine` the result on screen, or start a new one.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptRequest {
    pub prompt: Prompt,
    pub refine: bool,
}

/// The smallest box side (mm) taken as a box rather than a slip of the mouse.
pub const MIN_BOX_MM: f64 = 4.0;

/// Region growing's object after a result: the state its job sent, else (a plain first click)
/// one holding that click and the result.
pub fn grow_object_of(sent: Option<PromptedGrowing>, c: &Candidate) -> PromptedGrowing {
    sent.unwrap_or_else(|| {
        let comp = crop_component(&c.mask, [0, 0, 0]);
        let mut prompts = PromptSet::default();
        prompts.positive.push(c.click);
        PromptedGrowing { state: ObjectState { prompts, found: comp.clone(), candidate: comp, ..Default::default() } }
    })
}

/// The box of a drag on `plane` from `a` to `b`: open along the plane's normal; `None` when it is
/// smaller than [`MIN_BOX_MM`] in the plane.
pub fn box_of_drag(plane: ViewPlane, a: RasMm, b: RasMm) -> Option<BoxPrompt> {
    let n = plane.normal_world_axis();
    let (a, b) = (a.to_array(), b.to_array());
    let big = (0..3).filter(|&ax| ax != n).all(|ax| (a[ax] - b[ax]).abs() >= MIN_BOX_MM);
    let bx = BoxPrompt { a, b, open: Some(plane) };
    (big && bx.check().is_ok()).then_some(bx)
}

impl App {
    /// Whether the result on screen is an object further prompts refine.
    fn refinable(&self) -> bool {
        match self.rt.click.candidate.as_ref().map(|c| c.method) {
            Some(ClickMethod::Model) => self.click_method == ClickMethod::Model && self.rt.click.object.is_some(),
            Some(ClickMethod::RegionGrowing) => self.click_method == ClickMethod::RegionGrowing && self.rt.click.grow_object.is_some(),
            None => false,
        }
    }

    /// A click of the 3D tool: it refines the result on screen (`negative`: removes what is under
    /// it), or starts a new result when there is none to refine.
    pub(super) fn prompt_at(&mut self, at: RasMm, negative: bool, ctx: &egui::Context) {
        match (self.refinable(), negative) {
            (true, _) => {
                let prompt = if negative { Prompt::negative(at) } else { Prompt::positive(at) };
                self.start_click(at, Some(PromptRequest { prompt, refine: true }), ctx);
            }
            (false, true) => self.notice("Ctrl+click removes what is under it from the result on screen: click the structure first (3D from click), then Ctrl+click what should not be there".into()),
            (false, false) => self.start_click(at, None, ctx),
        }
    }

    /// A box drag of the 3D tool goes on.
    pub(super) fn box_drag(&mut self, plane: ViewPlane, at: RasMm, first: bool) {
        match (&mut self.rt.click.box_drag, first) {
            (Some((p, _, end)), false) if *p == plane => *end = at,
            _ => self.rt.click.box_drag = Some((plane, at, at)),
        }
    }

    /// The box drag ended: the box bounds the result on screen, or starts one from its centre.
    pub(super) fn box_done(&mut self, ctx: &egui::Context) {
        let Some((plane, a, b)) = self.rt.click.box_drag.take() else { return };
        let Some(bx) = box_of_drag(plane, a, b) else { return };
        let inside = self.rt.scene.as_ref().is_some_and(|s| s.volume.shape().array_index(s.voxel_from_ras.apply(bx.centre())).is_some());
        if !inside {
            self.error("3D from click: the box's centre is outside the volume".into());
            return;
        }
        let refine = self.refinable();
        self.start_click(bx.centre(), Some(PromptRequest { prompt: Prompt::boxed(bx), refine }), ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drag_is_a_box_open_along_its_plane_and_a_slip_is_not() {
        let a = RasMm::new(10.0, 20.0, 30.0);
        let bx = box_of_drag(ViewPlane::Axial, a, RasMm::new(30.0, 45.0, 30.0)).expect("a box");
        assert_eq!(bx.open_axis(), Some(2), "an axial box leaves S open");
        assert!(bx.contains(RasMm::new(20.0, 30.0, -500.0)), "any height");
        assert!(!bx.contains(RasMm::new(5.0, 30.0, 30.0)));
        assert_eq!(bx.centre(), RasMm::new(20.0, 32.5, 30.0));
        assert!(box_of_drag(ViewPlane::Axial, a, RasMm::new(12.0, 45.0, 30.0)).is_none(), "2 mm wide: a slip");
        let sag = box_of_drag(ViewPlane::Sagittal, a, RasMm::new(10.0, 40.0, 60.0)).expect("a sagittal box");
        assert_eq!(sag.open_axis(), Some(0));
    }
}
