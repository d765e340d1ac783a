//! Notes and errors in the window: a log of every message of the session, and the few newest
//! shown as toasts in the bottom-right corner of the views.
//!
//! A note leaves by itself after a time that grows with its length (longer while the pointer
//! rests on it); an error stays until dismissed. At most [`MAX_SHOWN`] are shown, so they never
//! pile up over the views, and they sit in the corner away from the orientation letters, under
//! any open window. The toasts' area swallows clicks, also for a moment after one is dismissed
//! (the others move down), so a click meant for a Dismiss button never lands on the image.

use super::{AppCommand, App};
use egui::{Color32, Rect, RichText, Stroke, pos2, vec2};
use std::time::{Duration, Instant};

/// Toasts shown at once (the newest).
pub const MAX_SHOWN: usize = 2;
/// Messages the log keeps.
const MAX_LOG: usize = 200;
/// How long after a dismissal the toasts' former area still swallows clicks.
const GUARD: Duration = Duration::from_millis(600);

/// One message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub is_error: bool,
    /// When it was posted (again, for a repeated text).
    pub posted: Instant,
    /// Dismissed by the user, or timed out.
    pub gone: bool,
}

impl Message {
    pub fn new(text: String, is_error: bool) -> Self {
        Message { text, is_error, posted: Instant::now(), gone: false }
    }
    /// How long a note stays: 6 s, and a second more per 15 characters (reading time), at most
    /// 20 s. Errors stay until dismissed (`None`).
    pub fn lifetime(&self) -> Option<Duration> {
        (!self.is_error).then(|| Duration::from_secs_f32((6.0 + self.text.chars().count() as f32 / 15.0).min(20.0)))
    }
}

/// The session's messages, oldest first.
#[derive(Debug, Default)]
pub struct MessageLog {
    all: Vec<Message>,
    /// The toasts' area last frame, and until when it still guards against clicks.
    guard: Option<(Rect, Instant)>,
    /// Time spent hovering the toasts pauses their clocks: added to each note's age limit.
    hovered_since: Option<Instant>,
    /// Height of the toasts last pass (they are laid out from the bottom).
    height: f32,
}

impl MessageLog {
    /// Every message of the session, oldest first (dismissed ones too).
    pub fn all(&self) -> &[Message] {
        &self.all
    }
    /// Posts a message; the same text again moves it to the front.
    pub fn push(&mut self, m: Message) {
        self.all.retain(|x| x.text != m.text);
        self.all.push(m);
        if self.all.len() > MAX_LOG {
            self.all.remove(0);
        }
    }
    /// Removes the shown message `n` (an index into [`Self::all`]).
    pub fn dismiss(&mut self, n: usize) {
        if let Some(m) = self.all.get_mut(n) {
            m.gone = true;
        }
        if let Some((_, until)) = &mut self.guard {
            *until = Instant::now() + GUARD;
        }
    }
    /// Dismisses every shown message.
    pub fn dismiss_all(&mut self) {
        for m in &mut self.all {
            m.gone = true;
        }
    }
    /// Notes past their lifetime at `now` leave.
    pub fn expire(&mut self, now: Instant) {
        if self.hovered_since.is_some() {
            return;
        }
        for m in &mut self.all {
            if let Some(life) = m.lifetime()
                && now.saturating_duration_since(m.posted) > life
            {
                m.gone = true;
            }
        }
    }
    /// Indices of the messages shown, oldest first (at most [`MAX_SHOWN`]).
    pub fn shown(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.all.len()).rev().filter(|&n| !self.all[n].gone).take(MAX_SHOWN).collect();
        v.reverse();
        v
    }
    /// Messages still waiting behind the shown ones.
    pub fn hidden(&self) -> usize {
        self.all.iter().filter(|m| !m.gone).count().saturating_sub(MAX_SHOWN)
    }
    /// Whether a click at `p` belongs to the toasts (it must not reach the image under them).
    pub fn guards(&self, p: egui::Pos2) -> bool {
        self.guard.is_some_and(|(r, until)| r.contains(p) && (Instant::now() < until || self.shown_any()))
    }
    fn shown_any(&self) -> bool {
        self.all.iter().any(|m| !m.gone)
    }
}

/// The toasts, in the bottom-right corner of `full` (the views' area), painted over the views
/// and under windows.
pub fn toasts_ui(app: &mut App, ui: &mut egui::Ui, full: Rect) {
    let now = Instant::now();
    let log = &mut app.rt.messages;
    log.expire(now);
    let shown = log.shown();
    if shown.is_empty() {
        if log.guard.is_some_and(|(_, until)| now >= until) {
            log.guard = None;
        }
        return;
    }
    let width = (full.width() * 0.5 - 24.0).clamp(240.0, 520.0);
    let right_bottom = full.right_bottom() + vec2(-12.0, -26.0);
    let mut cmds = Vec::new();
    // Laid out top-down from where last pass's height puts the bottom in the corner (a changed
    // height draws the pass again).
    let top = (right_bottom.y - log.height).max(full.top() + 4.0);
    // The toasts take the pointer: clicks on them never reach the slice view under them. Made
    // before their buttons, which sit on top of it and get their clicks.
    let area = Rect::from_min_max(pos2(right_bottom.x - width, top), right_bottom);
    let _ = ui.interact(area, ui.scope_id().with("toasts"), egui::Sense::click_and_drag());
    let mut ui_box = ui.new_child(egui::UiBuilder::new().max_rect(Rect::from_min_max(pos2(right_bottom.x - width, top), pos2(right_bottom.x, full.bottom()))).layout(egui::Layout::top_down(egui::Align::Min)));
    let hidden = log.hidden();
    if hidden > 0 && ui_box.small_button(format!("{hidden} more…")).on_hover_text("Dismiss the shown messages to see the earlier ones (View > Messages lists them all)").clicked() {
        cmds.push(AppCommand::DismissAllMessages);
    }
    for &n in &shown {
        let m = &log.all[n];
        let (fill, stroke) = if m.is_error { (Color32::from_rgb(70, 22, 22), Color32::from_rgb(200, 80, 80)) } else { (Color32::from_rgb(24, 44, 66), Color32::from_rgb(90, 140, 200)) };
        egui::Frame::new().fill(fill).stroke(Stroke::new(1.0, stroke)).corner_radius(4).inner_margin(egui::Margin::symmetric(10, 6)).show(&mut ui_box, |ui| {
            ui.set_width(width - 20.0);
            ui.with_layout(egui::Layout::left_to_right(egui::Align::Min), |ui| {
                ui.label(RichText::new(if m.is_error { "Error" } else { "Note" }).strong().color(stroke));
                ui.allocate_ui(vec2(ui.available_width() - 24.0, 0.0), |ui| {
                    ui.add(egui::Label::new(RichText::new(&m.text).color(Color32::from_gray(230))).wrap());
                });
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Min), |ui| {
                    let b = ui.small_button("×").on_hover_text("Dismiss");
                    b.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, "Dismiss"));
                    if b.clicked() {
                        cmds.push(AppCommand::DismissMessage(n));
                    }
                });
            });
        });
        ui_box.add_space(4.0);
    }
    let used = ui_box.min_rect();
    if (used.height() - log.height).abs() > 0.5 {
        log.height = used.height();
        ui.ctx().request_discard("the toasts' height changed");
    }
    let hovered = ui.rect_contains_pointer(used);
    match (hovered, log.hovered_since) {
        (true, None) => log.hovered_since = Some(now),
        (false, Some(t0)) => {
            let paused = now - t0;
            for m in &mut log.all {
                m.posted += paused;
            }
            log.hovered_since = None;
        }
        _ => {}
    }
    log.guard = Some((used, log.guard.map_or(now, |(_, until)| until.max(now))));
    // Wake up when the oldest shown note is due to leave.
    if let Some(due) = shown.iter().filter_map(|&n| log.all[n].lifetime().map(|l| (log.all[n].posted + l).saturating_duration_since(now))).min() {
        ui.ctx().request_repaint_after(due + Duration::from_millis(50));
    }
    app.rt.commands.extend(cmds);
}

/// The whole log (View > Messages), newest first.
pub fn log_window_ui(app: &mut App, ctx: &egui::Context) {
    if !app.rt.show_message_log {
        return;
    }
    let mut open = true;
    egui::Window::new("Messages").open(&mut open).default_size([560.0, 320.0]).show(ctx, |ui| {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let t0 = app.rt.started;
            for m in app.rt.messages.all().iter().rev() {
                let at = m.posted.saturating_duration_since(t0).as_secs();
                let color = if m.is_error { Color32::from_rgb(230, 110, 110) } else { ui.visuals().text_color() };
                ui.horizontal_top(|ui| {
                    ui.label(RichText::new(format!("{:02}:{:02}:{:02}", at / 3600, at / 60 % 60, at % 60)).monospace().weak());
                    ui.add(egui::Label::new(RichText::new(&m.text).color(color)).wrap());
                });
            }
        });
    });
    app.rt.show_message_log = open;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_time_out_errors_stay_and_only_the_newest_are_shown() {
        let mut log = MessageLog::default();
        for n in 0..4 {
            log.push(Message::new(format!("note {n}"), false));
        }
        log.push(Message::new("an error".into(), true));
        assert_eq!(log.shown(), vec![3, 4], "the newest two");
        assert_eq!(log.hidden(), 3);
        log.dismiss(4);
        assert_eq!(log.shown(), vec![2, 3]);
        // A repeated text moves to the end instead of showing twice.
        log.push(Message::new("note 1".into(), false));
        assert_eq!(log.all().iter().filter(|m| m.text == "note 1").count(), 1);
        // 30 s later every note is gone; an error would not be.
        log.push(Message::new("late error".into(), true));
        log.expire(Instant::now() + Duration::from_secs(30));
        let shown: Vec<&str> = log.shown().iter().map(|&n| log.all()[n].text.as_str()).collect();
        assert_eq!(shown, vec!["late error"]);
        assert_eq!(log.all().len(), 6, "the log keeps them all");
        let short = Message::new("x".into(), false).lifetime().expect("a note times out");
        let long = Message::new("x".repeat(150), false).lifetime().expect("a note times out");
        assert!(short >= Duration::from_secs(6) && long > short && long <= Duration::from_secs(20));
    }
}
