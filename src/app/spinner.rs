//! The busy indicator of every running job: a spinner drawn twice a second.
//!
//! egui's own spinner asks for a new frame on every frame it is visible. Under a software
//! renderer (Mesa's lavapipe, what a machine without a GPU draws with) each frame of the window
//! costs CPU time, so while a 3D-from-click job ran the window took cores from the engine doing
//! the job. This one steps its arc at a fixed rate and asks for the next frame only when the
//! arc moves. Under lavapipe a frame of the viewer costs 0.1–0.2 s of CPU (measured on the
//! 512×512×224 CT with its 61 labels: most of it sampling the slice images), so even two steps
//! a second take a fifth of one core.

use std::time::Duration;

/// Arc steps per second.
const STEPS_PER_SEC: f64 = 2.0;

/// A spinner the size of a line of text, stepping [`STEPS_PER_SEC`] times a second.
pub fn spinner(ui: &mut egui::Ui) -> egui::Response {
    let size = ui.style().spacing.interact_size.y;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    if ui.is_rect_visible(rect) {
        let time = ui.input(|i| i.time);
        let step = (time * STEPS_PER_SEC).floor();
        let start = step / STEPS_PER_SEC * std::f64::consts::TAU;
        let radius = rect.height() * 0.5 - 2.0;
        let n = 24;
        let points: Vec<egui::Pos2> = (0..=n)
            .map(|i| {
                let a = start + i as f64 / n as f64 * 240f64.to_radians();
                rect.center() + radius * egui::vec2(a.cos() as f32, a.sin() as f32)
            })
            .collect();
        ui.painter().add(egui::Shape::line(points, egui::Stroke::new(2.5, ui.visuals().strong_text_color())));
        let next = (step + 1.0) / STEPS_PER_SEC - time;
        ui.ctx().request_repaint_after(Duration::from_secs_f64(next.max(0.01)));
    }
    response
}
