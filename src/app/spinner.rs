//! The busy indicator of every running job: a spinner drawn twice a second, and for the
//! jobs that usually end within a second, not moving at all before [`QUIET`].
//!
//! egui's own spinner asks for a new frame on every frame it is visible. Under a software
//! renderer (Mesa's lavapipe or llvmpipe, what a machine without a GPU draws with) each frame
//! of the window costs CPU time, so while a 3D-from-click job ran the window took cores from
//! the engine doing the job. This one steps its arc at a fixed rate and asks for the next frame
//! only when the arc moves. Under lavapipe a frame of the viewer at 1440×920 costs about 0.09 s
//! of CPU, and a bare eframe window with one label 0.08 s: the cost is the software
//! rasteriser filling the window, whatever the window shows, so the only saving left to the
//! app is drawing fewer frames.

use std::time::{Duration, Instant};

/// How long a job's busy indicator stays still before it starts to move (and asks for
/// frames): a click's model job on a GPU, and a small organ's without one, end within it (a
/// liver on two CPU cores takes a little longer), and a frame drawn meanwhile is CPU the engine
/// needs. Indicators of operations that end within about a second are commonly withheld this
/// long, so a quick job does not flash one.
pub const QUIET: Duration = Duration::from_secs(1);

/// The frame a job started at `started` needs next for its indicator: none before
/// [`QUIET`] has passed but the one at its end, then every `period`.
pub fn repaint_after(started: Instant, period: Duration) -> Duration {
    let elapsed = started.elapsed();
    if elapsed < QUIET { QUIET - elapsed } else { period }
}

/// [`spinner`] for a job started at `started`: still, and asking for no frame, until
/// [`QUIET`] has passed (then one frame at its end).
pub fn spinner_after(ui: &mut egui::Ui, started: Instant) -> egui::Response {
    match QUIET.checked_sub(started.elapsed()).filter(|d| !d.is_zero()) {
        Some(still) => draw(ui, |_| (0.0, still)),
        None => spinner(ui),
    }
}

/// A spinner the size of a line of text whose arc starts at the angle `at(time)` gives
/// (radians), asking for the next frame after the delay it gives; nothing asked when hidden.
fn draw(ui: &mut egui::Ui, at: impl FnOnce(f64) -> (f64, Duration)) -> egui::Response {
    let size = ui.style().spacing.interact_size.y;
    let (rect, response) = ui.allocate_exact_size(egui::vec2(size, size), egui::Sense::hover());
    if ui.is_rect_visible(rect) {
        let (start, next) = at(ui.input(|i| i.time));
        arc(ui, rect, start);
        ui.ctx().request_repaint_after(next);
    }
    response
}

/// The spinner's arc in `rect`, starting at angle `start` (radians).
fn arc(ui: &egui::Ui, rect: egui::Rect, start: f64) {
    let radius = rect.height() * 0.5 - 2.0;
    let n = 24;
    let points: Vec<egui::Pos2> = (0..=n)
        .map(|i| {
            let a = start + i as f64 / n as f64 * 240f64.to_radians();
            rect.center() + radius * egui::vec2(a.cos() as f32, a.sin() as f32)
        })
        .collect();
    ui.painter().add(egui::Shape::line(points, egui::Stroke::new(2.5, ui.visuals().strong_text_color())));
}

/// Arc steps per second.
const STEPS_PER_SEC: f64 = 2.0;

/// A spinner the size of a line of text, stepping [`STEPS_PER_SEC`] times a second.
pub fn spinner(ui: &mut egui::Ui) -> egui::Response {
    draw(ui, |time| {
        let step = (time * STEPS_PER_SEC).floor();
        (step / STEPS_PER_SEC * std::f64::consts::TAU, Duration::from_secs_f64(((step + 1.0) / STEPS_PER_SEC - time).max(0.01)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The delay before the next frame a pass with `show` asks for (a context's first passes
    /// always ask for another, so the third is read).
    fn asked_delay(show: impl Fn(&mut egui::Ui)) -> Duration {
        let ctx = egui::Context::default();
        let mut delay = Duration::ZERO;
        for _ in 0..3 {
            let out = ctx.run_ui(egui::RawInput::default(), |ui| show(ui));
            delay = out.viewport_output[&egui::ViewportId::ROOT].repaint_delay;
        }
        delay
    }

    #[test]
    fn a_new_job_asks_for_no_frame_until_its_quiet_time_ends() {
        let fresh = asked_delay(|ui| {
            spinner_after(ui, Instant::now());
        });
        assert!(fresh > QUIET - Duration::from_millis(500) && fresh <= QUIET, "{fresh:?}");
        let old = asked_delay(|ui| {
            spinner_after(ui, Instant::now() - QUIET - Duration::from_millis(10));
        });
        assert!(old <= Duration::from_secs_f64(1.0 / STEPS_PER_SEC), "{old:?}");
        // The status bar's own repaint: the end of the quiet time, then its period.
        let started = Instant::now() - Duration::from_millis(300);
        let d = repaint_after(started, Duration::from_millis(500));
        assert!(d <= QUIET - Duration::from_millis(300) && d > QUIET - Duration::from_millis(500), "{d:?}");
        assert_eq!(repaint_after(Instant::now() - 2 * QUIET, Duration::from_millis(500)), Duration::from_millis(500));
    }
}
