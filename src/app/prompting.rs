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

/// The box the object holds after a prompt request (`held`: the box of the result on screen):
/// a box redraws the one held when it refines that result ([`BoxPrompt::redrawn_by`]: a 2D box on
/// a second view closes the first into a 3D box), a point keeps it, a new result starts with none
/// or its own. The engine and region growing's object apply the same rule
/// ([`PromptSet::add_box`]).
pub fn box_after(held: Option<BoxPrompt>, req: Option<&PromptRequest>) -> Option<BoxPrompt> {
    let held = held.filter(|_| req.is_some_and(|r| r.refine));
    match req.and_then(|r| r.prompt.bbox) {
        Some(b) => Some(held.map_or(b, |h| h.redrawn_by(&b))),
        None => held,
    }
}

/// Where the object's box crosses a slice: the polygon (in-plane slice mm `[u, v]`, in order
/// around it) of the box cut by the plane `w` (slice mm along the view's normal), `None` when
/// the plane misses the box. `to_slice` maps RAS to the view's slice frame; an open axis spans
/// `bounds` (the scan's RAS extent, [`OnGrid::ras_extent`]). Exact on oblique views: the 12 edges of the
/// box are cut by the plane.
pub fn box_on_slice(bx: &BoxPrompt, bounds: ([f64; 3], [f64; 3]), to_slice: impl Fn(RasMm) -> [f64; 3], w: f64) -> Option<Vec<[f64; 2]>> {
    let ext: [(f64, f64); 3] = std::array::from_fn(|a| {
        if Some(a) == bx.open_axis() { (bounds.0[a], bounds.1[a]) } else { (bx.a[a].min(bx.b[a]), bx.a[a].max(bx.b[a])) }
    });
    let corner = |c: usize| {
        let pick = |a: usize| if c >> a & 1 == 0 { ext[a].0 } else { ext[a].1 };
        to_slice(RasMm::new(pick(0), pick(1), pick(2)))
    };
    let cs: Vec<[f64; 3]> = (0..8).map(corner).collect();
    let mut pts: Vec<[f64; 2]> = Vec::new();
    for c in 0..8usize {
        for a in 0..3 {
            let d = c | 1 << a;
            if d == c {
                continue;
            }
            let (p, q) = (cs[c], cs[d]);
            let (dp, dq) = (p[2] - w, q[2] - w);
            if dp == 0.0 {
                pts.push([p[0], p[1]]);
            } else if dp * dq < 0.0 {
                let t = dp / (dp - dq);
                pts.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
            }
        }
        // A corner on the plane whose every edge leaves it on one side was pushed above once per
        // edge: duplicates are removed below.
    }
    pts.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    pts.dedup_by(|a, b| (a[0] - b[0]).abs() < 1e-9 && (a[1] - b[1]).abs() < 1e-9);
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let centre = [pts.iter().map(|p| p[0]).sum::<f64>() / n, pts.iter().map(|p| p[1]).sum::<f64>() / n];
    let angle = |p: &[f64; 2]| (p[1] - centre[1]).atan2(p[0] - centre[0]);
    pts.sort_by(|a, b| angle(a).partial_cmp(&angle(b)).unwrap_or(std::cmp::Ordering::Equal));
    Some(pts)
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

    fn request(bx: Option<BoxPrompt>, point: Option<RasMm>, refine: bool) -> PromptRequest {
        let mut prompt = point.map(Prompt::positive).unwrap_or_default();
        prompt.bbox = bx;
        PromptRequest { prompt, refine }
    }

    #[test]
    fn a_box_on_a_second_view_closes_the_held_one_and_a_new_result_forgets_it() {
        let axial = box_of_drag(ViewPlane::Axial, RasMm::new(0.0, 0.0, 5.0), RasMm::new(20.0, 30.0, 5.0)).unwrap();
        let coronal = box_of_drag(ViewPlane::Coronal, RasMm::new(-5.0, 12.0, -10.0), RasMm::new(25.0, 12.0, 40.0)).unwrap();
        let closed = box_after(Some(axial), Some(&request(Some(coronal), None, true))).expect("a box");
        assert_eq!(closed.open, None);
        assert_eq!(closed.corners(), [-5.0, 0.0, -10.0, 25.0, 30.0, 40.0]);
        // A point refining the result keeps the box; a new result (no refine) drops it.
        assert_eq!(box_after(Some(closed), Some(&request(None, Some(RasMm::new(1.0, 1.0, 1.0)), true))), Some(closed));
        assert_eq!(box_after(Some(closed), Some(&request(None, Some(RasMm::new(1.0, 1.0, 1.0)), false))), None);
        assert_eq!(box_after(Some(closed), None), None, "a plain click starts a new object");
        // A box starting a new result is its own box, whatever was held.
        assert_eq!(box_after(Some(closed), Some(&request(Some(coronal), None, false))), Some(coronal));
    }

    #[test]
    fn the_box_is_cut_by_each_slice_exactly() {
        let closed = BoxPrompt::from_corners([0.0, 0.0, 0.0, 10.0, 20.0, 5.0]).unwrap();
        let bounds = ([-100.0; 3], [100.0; 3]);
        // An axial view (slice frame = RAS): a rectangle at heights inside the box, nothing outside.
        let axial = |p: RasMm| p.to_array();
        let r = box_on_slice(&closed, bounds, axial, 2.0).expect("crosses");
        let mut sorted = r.clone();
        sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(sorted, vec![[0.0, 0.0], [0.0, 20.0], [10.0, 0.0], [10.0, 20.0]]);
        assert!(box_on_slice(&closed, bounds, axial, 6.0).is_none(), "above the box");
        // A 2D axial box seen on a coronal view (u = R, v = S, w = A): a band over the scan's height.
        let flat = BoxPrompt::from_corners([0.0, 0.0, 3.0, 10.0, 20.0, 3.0]).unwrap();
        let coronal = |p: RasMm| [p.x(), p.z(), p.y()];
        let band = box_on_slice(&flat, bounds, coronal, 10.0).expect("crosses");
        let vs: Vec<f64> = band.iter().map(|p| p[1]).collect();
        assert_eq!(vs.iter().cloned().fold(f64::INFINITY, f64::min), -100.0);
        assert_eq!(vs.iter().cloned().fold(f64::NEG_INFINITY, f64::max), 100.0);
        assert!(box_on_slice(&flat, bounds, coronal, 25.0).is_none(), "behind the box");
        // An oblique view, tilted 30° about R: every vertex lies on the cutting plane, on the
        // box's surface, and the polygon is the quadrilateral the plane cuts from the box.
        let (sn, cs) = 30f64.to_radians().sin_cos();
        let tilted = move |p: RasMm| [p.x(), p.y() * cs + p.z() * sn, -p.y() * sn + p.z() * cs];
        let ras_of = move |u: f64, v: f64, w: f64| RasMm::new(u, v * cs - w * sn, v * sn + w * cs);
        let w = -2.0;
        let cut = box_on_slice(&closed, bounds, tilted, w).expect("crosses");
        assert_eq!(cut.len(), 4);
        for &[u, v] in &cut {
            let p = ras_of(u, v, w).to_array();
            let inside = (0..3).all(|a| p[a] >= closed.a[a].min(closed.b[a]) - 1e-9 && p[a] <= closed.a[a].max(closed.b[a]) + 1e-9);
            let on_face = (0..3).any(|a| (p[a] - closed.a[a]).abs() < 1e-9 || (p[a] - closed.b[a]).abs() < 1e-9);
            assert!(inside && on_face, "{p:?} is on the box's surface");
            assert!((tilted(RasMm::new(p[0], p[1], p[2]))[2] - w).abs() < 1e-9);
        }
        // Consecutive vertices go round the polygon: its area is the shoelace area of a convex
        // quadrilateral, positive, and R spans the whole box (R is in the plane).
        let area: f64 = (0..4).map(|i| cut[i][0] * cut[(i + 1) % 4][1] - cut[(i + 1) % 4][0] * cut[i][1]).sum::<f64>() / 2.0;
        assert!(area.abs() > 1.0);
        let us: Vec<f64> = cut.iter().map(|p| p[0]).collect();
        assert_eq!((us.iter().cloned().fold(f64::INFINITY, f64::min), us.iter().cloned().fold(f64::NEG_INFINITY, f64::max)), (0.0, 10.0));
    }
}
