//! The brush's settings (size in mm, 2D disc or 3D sphere, threshold paint) and their toolbar
//! row, and the edit requests the paint, erase, fill and island tools make.

use super::Tool;
use crate::app::AppCommand;
use crate::geometry::{RasMm, ViewPlane};
use crate::label_edit::Overwrite;
use crate::label_edit::ops::{Brush, EditRequest, IntensityRange, Paint, Stroke};
use egui::RichText;

/// Smallest and largest brush radius (mm).
pub const RADIUS_RANGE_MM: std::ops::RangeInclusive<f64> = 0.5..=50.0;

/// The brush as the user set it (kept between sessions).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct BrushSettings {
    /// Radius in millimetres.
    pub radius_mm: f64,
    /// A 3D sphere instead of a disc on the slice.
    pub sphere: bool,
    /// Paint only where the intensity lies in `[lo, hi]` (threshold paint).
    pub threshold: bool,
    pub lo: f32,
    pub hi: f32,
}

impl Default for BrushSettings {
    fn default() -> Self {
        // A 5 mm disc; the threshold range of soft tissue in HU until the user sets one.
        BrushSettings { radius_mm: 5.0, sphere: false, threshold: false, lo: -100.0, hi: 300.0 }
    }
}

impl BrushSettings {
    /// The brush for a gesture on `plane`.
    pub fn brush(&self, plane: ViewPlane) -> Brush {
        let r = self.radius_mm.clamp(*RADIUS_RANGE_MM.start(), *RADIUS_RANGE_MM.end());
        if self.sphere { Brush::sphere(r) } else { Brush::disc(plane, r) }
    }

    /// Grows or shrinks the radius by `notches` wheel notches (10 % each), within the range.
    pub fn resize(&mut self, notches: f32) {
        self.radius_mm = (self.radius_mm * 1.1f64.powf(f64::from(notches))).clamp(*RADIUS_RANGE_MM.start(), *RADIUS_RANGE_MM.end());
    }

    /// What one brush segment writes: `label` for Paint, 0 for Erase, under the rule.
    pub fn stroke(&self, tool: Tool, plane: ViewPlane, from: RasMm, to: RasMm, label: u16, rule: Overwrite) -> EditRequest {
        let mut paint = match tool {
            Tool::Erase => Paint::erase(rule),
            _ => Paint::new(label, rule),
        };
        if self.threshold && tool != Tool::Erase {
            paint = paint.within(IntensityRange::new(self.lo.min(self.hi), self.lo.max(self.hi)));
        }
        EditRequest::Stroke(Stroke { from, to, brush: self.brush(plane), paint })
    }
}

/// The rule the eraser uses: it may take away the active label only (when one is active) or
/// every label; "background only" would leave it nothing to erase.
pub fn erase_rule(active: Option<u16>) -> Overwrite {
    match active {
        Some(l) => Overwrite::Label(l),
        None => Overwrite::All,
    }
}

/// The toolbar row of the brush (paint and erase).
pub fn options_ui(b: &BrushSettings, tool: Tool, ui: &mut egui::Ui, cmds: &mut Vec<AppCommand>) {
    let mut s = *b;
    let l = ui.label("Brush");
    let r = ui.add(egui::DragValue::new(&mut s.radius_mm).range(RADIUS_RANGE_MM).speed(0.1).max_decimals(1).suffix(" mm")).labelled_by(l.id);
    r.on_hover_text("Brush radius (Shift+wheel over a view)");
    ui.selectable_value(&mut s.sphere, false, "2D").on_hover_text("A disc on the slice");
    ui.selectable_value(&mut s.sphere, true, "3D").on_hover_text("A sphere across slices");
    if tool == Tool::Paint {
        ui.checkbox(&mut s.threshold, "Threshold").on_hover_text("Paint only where the intensity lies in the range");
        if s.threshold {
            ui.add(egui::DragValue::new(&mut s.lo).speed(1.0).max_decimals(1));
            ui.label(RichText::new("to").weak());
            ui.add(egui::DragValue::new(&mut s.hi).speed(1.0).max_decimals(1));
        }
    }
    if s != *b {
        cmds.push(AppCommand::SetBrush(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brush_makes_the_strokes_the_tools_mean() {
        let mut b = BrushSettings { threshold: true, lo: 300.0, hi: -50.0, ..Default::default() };
        let (p, q) = (RasMm::new(0.0, 0.0, 0.0), RasMm::new(1.0, 0.0, 0.0));
        let EditRequest::Stroke(s) = b.stroke(Tool::Paint, ViewPlane::Axial, p, q, 4, Overwrite::Background) else { panic!("a stroke") };
        assert_eq!((s.paint.label, s.paint.rule), (4, Overwrite::Background));
        let range = s.paint.range.expect("threshold paint");
        assert!(range.contains(0.0) && !range.contains(400.0), "the range is ordered whatever way it was typed");
        let EditRequest::Stroke(e) = b.stroke(Tool::Erase, ViewPlane::Axial, p, q, 4, erase_rule(Some(4))) else { panic!("a stroke") };
        assert_eq!((e.paint.label, e.paint.rule, e.paint.range), (0, Overwrite::Label(4), None));
        assert_eq!(erase_rule(None), Overwrite::All);
        b.resize(1.0);
        assert!((b.radius_mm - 5.5).abs() < 1e-9);
        b.resize(-100.0);
        assert_eq!(b.radius_mm, *RADIUS_RANGE_MM.start());
    }
}
