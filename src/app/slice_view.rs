//! One slice view: the slice image in physical proportions, the crosshair, orientation letters,
//! and the mouse (click = crosshair, wheel = slice, Ctrl+wheel = zoom, middle/Space+drag = pan,
//! right-drag = window/level, double-click = maximise).
//!
//! A point goes screen → slice → RAS through `geometry`'s typed transforms:
//! `ras_from_screen = ras_from_slice * slice_from_screen`.

use super::tools::{self, Gesture, Tool};
use super::slice_image::{Overlay, SliceScratch, render_slice};
use super::{App, AppCommand, Probe, ViewCell, plane_idx};
use crate::geometry::{RasMm, ScreenFromSlice, ScreenPx, SliceGeometry, SliceMm, ViewPlane};
use crate::volume::OnGrid;
use crate::volume::intensity::Window;
use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, Vec2, pos2, vec2};

/// Per-view state that survives between frames.
pub struct SliceViewState {
    /// 1 = the whole slice fits the view.
    pub zoom: f32,
    /// Screen-pixel offset of the slice from the view's centre.
    pub pan: Vec2,
    /// The image area last frame.
    pub rect: Option<Rect>,
    texture: Option<egui::TextureHandle>,
    key: Option<RenderKey>,
    scratch: SliceScratch,
    /// Trackpad scrolling in points not yet turned into whole slices.
    wheel_points: f32,
    /// Time to extract + colour the last slice (ms).
    pub render_ms: f32,
}

impl Default for SliceViewState {
    fn default() -> Self {
        Self { zoom: 1.0, pan: Vec2::ZERO, rect: None, texture: None, key: None, scratch: SliceScratch::default(), wheel_points: 0.0, render_ms: 0.0 }
    }
}

/// Everything the slice texture depends on: re-rendered only when this changes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct RenderKey {
    generation: u64,
    geom: SliceGeometry,
    index: usize,
    window: Window,
    overlay_rev: u64,
    has_labels: bool,
    opacity: f32,
    mode: super::OverlayMode,
    smooth: bool,
}

impl SliceViewState {
    pub fn reset(&mut self) {
        self.zoom = 1.0;
        self.pan = Vec2::ZERO;
    }

    pub fn screen_from_slice(&self, g: &SliceGeometry, rect: Rect) -> ScreenFromSlice {
        g.screen_from_slice(
            [rect.min.x as f64, rect.min.y as f64],
            [rect.width() as f64, rect.height() as f64],
            self.zoom as f64,
            [self.pan.x as f64, self.pan.y as f64],
        )
    }

    /// Zooms by `factor` keeping the slice point under `about` where it is on screen.
    pub fn zoom_about(&mut self, g: &SliceGeometry, factor: f32, about: Pos2) {
        let new_zoom = (self.zoom * factor).clamp(0.25, 64.0);
        let Some(rect) = self.rect else {
            self.zoom = new_zoom;
            return;
        };
        let Ok(slice_from_screen) = self.screen_from_slice(g, rect).try_inverse() else { return };
        let under: SliceMm = slice_from_screen.apply(ScreenPx::new(about.x as f64, about.y as f64, 0.0));
        self.zoom = new_zoom;
        self.pan = Vec2::ZERO;
        let now = self.screen_from_slice(g, rect).apply(under);
        self.pan = vec2(about.x - now.x() as f32, about.y - now.y() as f32);
    }
}

/// What a view reports back to the app.
#[derive(Default)]
pub struct ViewOutput {
    pub hovered: bool,
    pub probe: Option<Probe>,
}

/// Slicer's view colours: red axial, green coronal, yellow sagittal.
pub fn plane_colour(p: ViewPlane) -> Color32 {
    match p {
        ViewPlane::Axial => Color32::from_rgb(200, 70, 70),
        ViewPlane::Coronal => Color32::from_rgb(90, 170, 90),
        ViewPlane::Sagittal => Color32::from_rgb(215, 190, 70),
    }
}

pub const TITLE_H: f32 = 20.0;
/// Obliquity from which a view shows its "oblique" badge (a degree: below, scanner rounding).
pub const OBLIQUE_SHOWN_FROM_DEG: f64 = 1.0;

/// The RAS point under a screen position on the slice a view shows.
pub fn ras_of_screen(g: &SliceGeometry, screen_from_slice: &ScreenFromSlice, index: usize, pos: Pos2) -> Option<RasMm> {
    let slice_from_screen = screen_from_slice.try_inverse().ok()?;
    let mut in_slice: SliceMm = slice_from_screen.apply(ScreenPx::new(pos.x as f64, pos.y as f64, 0.0));
    // The screen has no depth: the point lies on the displayed slice.
    in_slice.v.z = g.w_of_index(index);
    Some(g.ras_from_slice().apply(in_slice))
}

pub fn slice_view_ui(app: &mut App, ui: &mut egui::Ui, cell: Rect, plane: ViewPlane) -> ViewOutput {
    let mut out = ViewOutput::default();
    let Some(scene) = app.rt.scene.as_ref() else { return out };
    let g = *scene.geom(plane);
    let index = scene.slice_index(plane);
    let pi = plane_idx(plane);
    let maximised = app.maximised == Some(ViewCell::Slice(plane));
    let mut cmds = Vec::new();

    // Title bar.
    let title = Rect::from_min_size(cell.min, vec2(cell.width(), TITLE_H));
    let rect = Rect::from_min_max(pos2(cell.min.x, title.max.y), cell.max);
    let painter = ui.painter_at(cell);
    painter.rect_filled(title, 0.0, Color32::from_gray(40));
    painter.rect_filled(Rect::from_min_size(title.min, vec2(4.0, TITLE_H)), 0.0, plane_colour(plane));
    let axis_name = ['i', 'j', 'k'][g.n_axis];
    let pos_text = slice_position_text(scene, &g, index);
    // A voxel-aligned view of an oblique scan says so (as ITK-SNAP does): its letters are the
    // nearest anatomical directions, not exact ones.
    let oblique = g.obliquity_deg();
    // The title ends with an ellipsis before the badge and the button (a narrow window).
    let title_end = title.max.x - if oblique >= OBLIQUE_SHOWN_FROM_DEG { 156.0 } else { 68.0 };
    paint_title(&painter, title, title_end, format!("{}   {axis_name} {index} / {}   {pos_text}", ViewCell::Slice(plane).title(), g.extent[2].saturating_sub(1)));
    if oblique >= OBLIQUE_SHOWN_FROM_DEG {
        let r = Rect::from_min_size(pos2(title.max.x - 150.0, title.min.y + 1.0), vec2(84.0, TITLE_H - 2.0));
        let badge = ui.put(r, egui::Label::new(RichText::new(format!("oblique {oblique:.0}°")).color(Color32::from_rgb(240, 190, 80)).size(12.0)).selectable(false));
        badge.on_hover_text(format!(
            "This scan's voxel grid is {oblique:.1}° off the anatomical axes: the view shows the grid's slices, and its letters ({}) name the nearest anatomical directions. Positions, clicks and saved labels are exact.",
            g.edge_letters().iter().map(char::to_string).collect::<Vec<_>>().join(" ")
        ));
    }
    let btn_rect = Rect::from_min_size(pos2(title.max.x - 62.0, title.min.y + 1.0), vec2(60.0, TITLE_H - 2.0));
    let btn = ui.put(btn_rect, egui::Button::new(if maximised { "Restore" } else { "Maximise" }).small().frame(false));
    if btn.on_hover_text("Maximise or restore this view (double-click the view, or F)").clicked() {
        cmds.push(AppCommand::ToggleMaximise(ViewCell::Slice(plane)));
    }

    // Interaction over the image area.
    let id = ui.scope_id().with(("slice_view", pi));
    let resp = ui.interact(rect, id, Sense::click_and_drag());
    let resp = resp.on_hover_cursor(egui::CursorIcon::Crosshair);
    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, format!("{} view", ViewCell::Slice(plane).title())));
    let view = &mut app.rt.views[pi];
    view.rect = Some(rect);
    app.rt.view_rects[pi] = Some(rect);
    let sfs = view.screen_from_slice(&g, rect);

    // Texture: re-rendered only when something it shows changed.
    let labels = scene.labels.as_ref();
    let key = RenderKey {
        generation: scene.generation,
        geom: g,
        index,
        window: scene.window,
        overlay_rev: scene.overlay_rev,
        has_labels: labels.is_some(),
        opacity: app.overlay_opacity,
        mode: app.overlay_mode,
        smooth: app.smooth,
    };
    if view.key != Some(key) || view.texture.is_none() {
        let t0 = std::time::Instant::now();
        let overlay = labels.map(|l| Overlay { labels: &l.map, lut: &l.lut, opacity: app.overlay_opacity, mode: app.overlay_mode });
        let mut pixels = Vec::with_capacity(g.extent[0] * g.extent[1]);
        let size = crate::volume::with_stored!(scene.volume.as_ref(), v => render_slice(v, &g, index, scene.window, overlay, &mut view.scratch, &mut pixels));
        if let Some(c) = &app.rt.click.candidate
            && c.mask.shape() == scene.volume.array_shape()
        {
            super::click3d::tint_candidate(&mut pixels, size, &g.pixel_walk(index), &c.mask);
        }
        let image = egui::ColorImage::new(size, pixels);
        let opts = if app.smooth { egui::TextureOptions::LINEAR } else { egui::TextureOptions::NEAREST };
        match &mut view.texture {
            Some(t) => t.set(image, opts),
            None => view.texture = Some(ui.ctx().load_texture(format!("slice-{}", plane.name()), image, opts)),
        }
        view.key = Some(key);
        view.render_ms = t0.elapsed().as_secs_f32() * 1000.0;
    }

    // Image.
    let painter = ui.painter_at(rect);
    painter.rect_filled(rect, 0.0, Color32::BLACK);
    let [su, sv, _] = g.spacing_mm;
    let top_left = sfs.apply(SliceMm::new(-0.5 * su, (g.extent[1] as f64 - 0.5) * sv, 0.0));
    let bottom_right = sfs.apply(SliceMm::new((g.extent[0] as f64 - 0.5) * su, -0.5 * sv, 0.0));
    let img_rect = Rect::from_min_max(pos2(top_left.x() as f32, top_left.y() as f32), pos2(bottom_right.x() as f32, bottom_right.y() as f32));
    if let Some(t) = &view.texture {
        painter.image(t.id(), img_rect, Rect::from_min_max(Pos2::ZERO, pos2(1.0, 1.0)), Color32::WHITE);
    }

    // Crosshair: the vertical line is the plane normal to u, the horizontal one normal to v.
    let slice_from_ras = g.ras_from_slice().try_inverse().ok();
    if let Some(sfr) = slice_from_ras {
        let c = sfs.apply(sfr.apply(scene.crosshair));
        let c = pos2(c.x() as f32, c.y() as f32);
        let plane_with_normal = |axis: usize| ViewPlane::ALL.into_iter().find(|p| scene.geom(*p).n_axis == axis).unwrap_or(plane);
        let vcol = plane_colour(plane_with_normal(g.u_axis)).gamma_multiply(0.85);
        let hcol = plane_colour(plane_with_normal(g.v_axis)).gamma_multiply(0.85);
        let gap = 10.0;
        let stroke = |col| Stroke::new(1.0, col);
        painter.line_segment([pos2(c.x, rect.top()), pos2(c.x, c.y - gap)], stroke(vcol));
        painter.line_segment([pos2(c.x, c.y + gap), pos2(c.x, rect.bottom())], stroke(vcol));
        painter.line_segment([pos2(rect.left(), c.y), pos2(c.x - gap, c.y)], stroke(hcol));
        painter.line_segment([pos2(c.x + gap, c.y), pos2(rect.right(), c.y)], stroke(hcol));
    }

    // Orientation letters on the four edges.
    let [left, right, top, bottom] = g.edge_letters();
    let font = FontId::proportional(15.0);
    let m = 6.0;
    for (ch, pos, align) in [
        (left, pos2(rect.left() + m, rect.center().y), Align2::LEFT_CENTER),
        (right, pos2(rect.right() - m, rect.center().y), Align2::RIGHT_CENTER),
        (top, pos2(rect.center().x, rect.top() + m), Align2::CENTER_TOP),
        (bottom, pos2(rect.center().x, rect.bottom() - m), Align2::CENTER_BOTTOM),
    ] {
        shadow_text(&painter, pos, align, &ch.to_string(), font.clone(), Color32::from_rgb(255, 210, 120));
    }
    let zoom_text = format!("{:.0} %", view.zoom * 100.0);
    shadow_text(&painter, rect.right_bottom() + vec2(-m, -m), Align2::RIGHT_BOTTOM, &zoom_text, FontId::proportional(11.0), Color32::from_gray(170));

    // A box being dragged with the 3D tool on this view.
    if let (Some((p, a, b)), Some(sfr)) = (app.rt.click.box_drag, slice_from_ras)
        && p == plane
    {
        let (a, b) = (sfs.apply(sfr.apply(a)), sfs.apply(sfr.apply(b)));
        let r = Rect::from_two_pos(pos2(a.x() as f32, a.y() as f32), pos2(b.x() as f32, b.y() as f32));
        painter.rect_stroke(r, 0.0, Stroke::new(1.5, Color32::from_rgb(60, 220, 230)), egui::StrokeKind::Middle);
    }

    // The box the result on screen holds, where it crosses this slice (a 2D box drawn on
    // another view is a band across this one; a 3D box from two views, a closed rectangle).
    if let (Some(bx), Some(sfr), true) = (app.rt.click.object_box, slice_from_ras, app.rt.click.candidate.is_some()) {
        let w = g.w_of_index(index);
        let bounds = scene.volume.ras_extent();
        if let Some(poly) = super::prompting::box_on_slice(&bx, bounds, |p| sfr.apply(p).to_array(), w) {
            let pts: Vec<Pos2> = poly
                .iter()
                .map(|&[u, v]| {
                    let s = sfs.apply(SliceMm::new(u, v, w));
                    pos2(s.x() as f32, s.y() as f32)
                })
                .collect();
            let colour = Color32::from_rgb(60, 220, 230).gamma_multiply(if bx.open.is_some() { 0.55 } else { 0.9 });
            painter.add(egui::Shape::closed_line(pts, Stroke::new(1.2, colour)));
        }
    }

    // Mouse.
    let (space, wheel, pointer) = ui.input(|i| {
        let wheel: Vec<(egui::MouseWheelUnit, Vec2, egui::Modifiers)> = i
            .events
            .iter()
            .filter_map(|e| match e {
                egui::Event::MouseWheel { unit, delta, modifiers, .. } => Some((*unit, *delta, *modifiers)),
                _ => None,
            })
            .collect();
        (i.key_down(egui::Key::Space), wheel, i.pointer.latest_pos())
    });
    let hovered = pointer.is_some_and(|p| rect.contains(p)) && resp.hovered();
    if let Some(p) = pointer.filter(|_| hovered) {
        out.hovered = true;
        out.probe = ras_of_screen(&g, &sfs, index, p).map(|ras| scene.probe(ras));
        if matches!(app.rt.tool, Tool::Paint | Tool::Erase) {
            // The brush's footprint on this slice under the pointer.
            let px_per_mm = sfs.apply_vector(nalgebra::Vector3::new(1.0, 0.0, 0.0)).norm() as f32;
            let r = (app.brush.radius_mm as f32 * px_per_mm).max(1.5);
            let colour = if app.rt.tool == Tool::Erase { Color32::from_rgb(255, 140, 120) } else { Color32::from_rgb(120, 230, 255) };
            painter.circle_stroke(p, r, Stroke::new(1.2, colour));
            ui.ctx().set_cursor_icon(egui::CursorIcon::None);
        }
        let brush_tool = matches!(app.rt.tool, Tool::Paint | Tool::Erase);
        for (unit, delta, mods) in once_per_notch(wheel) {
            let dy = delta.y;
            if mods.shift && brush_tool {
                // Shift+wheel sizes the brush (some systems turn Shift+wheel into a sideways
                // scroll: either direction counts).
                let d = if dy != 0.0 { dy } else { delta.x };
                let notches = match unit {
                    egui::MouseWheelUnit::Line | egui::MouseWheelUnit::Page => d.signum(),
                    egui::MouseWheelUnit::Point => d / 40.0,
                };
                cmds.push(AppCommand::ResizeBrush(notches));
            } else if mods.command || mods.ctrl {
                let per = match unit {
                    egui::MouseWheelUnit::Point => 0.004,
                    egui::MouseWheelUnit::Line => 0.15,
                    egui::MouseWheelUnit::Page => 0.6,
                };
                cmds.push(AppCommand::Zoom { plane, factor: (dy * per).exp(), about: p });
            } else {
                let steps = match unit {
                    egui::MouseWheelUnit::Line => dy.round() as i32,
                    egui::MouseWheelUnit::Page => (dy * 10.0).round() as i32,
                    egui::MouseWheelUnit::Point => {
                        view.wheel_points += dy;
                        let s = (view.wheel_points / 40.0).trunc();
                        view.wheel_points -= s * 40.0;
                        s as i32
                    }
                };
                if steps != 0 {
                    cmds.push(AppCommand::StepSlice { plane, steps });
                }
            }
        }
    }
    let pan_drag = resp.dragged_by(egui::PointerButton::Middle) || (space && resp.dragged_by(egui::PointerButton::Primary));
    if resp.double_clicked() {
        cmds.push(AppCommand::ToggleMaximise(ViewCell::Slice(plane)));
    } else if pan_drag {
        cmds.push(AppCommand::Pan { plane, delta: resp.drag_delta() });
    } else if resp.drag_stopped_by(egui::PointerButton::Primary) {
        let tool = Tool::active(app.rt.tool, ui.input(|i| i.modifiers.shift));
        cmds.extend(tools::commands(tool, Gesture::DragEnd { plane }));
    } else if (resp.clicked_by(egui::PointerButton::Primary) || resp.dragged_by(egui::PointerButton::Primary))
        && let Some(p) = resp.interact_pointer_pos().filter(|&p| !app.rt.messages.guards(p))
        && let Some(at) = ras_of_screen(&g, &sfs, index, p)
    {
        // The active tool decides what the gesture means (super::tools).
        let tool = Tool::active(app.rt.tool, ui.input(|i| i.modifiers.shift));
        let gesture = if resp.clicked_by(egui::PointerButton::Primary) {
            if ui.input(|i| i.modifiers.command) { Gesture::CtrlClick { plane, at } } else { Gesture::Click { plane, at } }
        } else {
            let first = resp.drag_started_by(egui::PointerButton::Primary);
            // A drag starts where the button went down, not where it passed the drag threshold.
            let at = if first { ui.input(|i| i.pointer.press_origin()).and_then(|o| ras_of_screen(&g, &sfs, index, o)).unwrap_or(at) } else { at };
            Gesture::Drag { plane, at, first }
        };
        cmds.extend(tools::commands(tool, gesture));
    }
    if resp.dragged_by(egui::PointerButton::Secondary) {
        // Drag right widens the window, drag up raises the level (brighter = lower level).
        let d = resp.drag_delta();
        let range = (scene.stats.max - scene.stats.min).max(1.0) as f32;
        let per_px = (range / 1500.0).max(0.5);
        let w = scene.window;
        cmds.push(AppCommand::SetWindow(Window { level: w.level - d.y * per_px, width: (w.width + d.x * per_px * 2.0).max(1.0) }));
    }
    if resp.clicked() || resp.dragged() {
        app.rt.active_view = plane;
    }
    app.rt.commands.extend(cmds);
    out
}

/// "S 12.0 mm": where the slice lies along the plane's normal world axis, at the crosshair.
fn slice_position_text(scene: &super::Scene, g: &SliceGeometry, index: usize) -> String {
    let mut v = scene.crosshair_voxel();
    v.v[g.n_axis] = index as f64;
    let ras = scene.volume.ras_from_voxel().apply(v);
    let axis = g.plane.normal_world_axis();
    let x = ras.v[axis];
    let (pos, neg) = [('R', 'L'), ('A', 'P'), ('S', 'I')][axis];
    format!("{} {:.1} mm", if x >= 0.0 { pos } else { neg }, x.abs())
}

fn shadow_text(p: &egui::Painter, pos: Pos2, align: Align2, text: &str, font: FontId, colour: Color32) {
    p.text(pos + vec2(1.0, 1.0), align, text, font.clone(), Color32::from_black_alpha(200));
    p.text(pos, align, text, font, colour);
}

/// A wheel event of one pass: unit, delta, modifiers.
type WheelEvent = (egui::MouseWheelUnit, Vec2, egui::Modifiers);

/// The wheel events of one pass with X11's doubled notches counted once. Through XTEST (remote
/// desktops such as xrdp and x2go, xdotool) the X server reports each notch twice, as a wheel
/// button and as scroll-valuator motion, and winit turns both into a one-line event in the same
/// pass: without this the slice moved two per notch. A run of identical whole-line events counts
/// half (rounded up); a real wheel turned fast enough to give two notches in one 16 ms pass loses
/// one of them, which is the lesser harm.
fn once_per_notch(events: Vec<WheelEvent>) -> Vec<WheelEvent> {
    let mut out: Vec<WheelEvent> = Vec::with_capacity(events.len());
    let mut run = 0usize;
    for e in events {
        let whole_line = e.0 == egui::MouseWheelUnit::Line && (e.1.y.abs() == 1.0 || e.1.x.abs() == 1.0);
        let same = whole_line && out.last().is_some_and(|l| l.0 == e.0 && l.1 == e.1 && l.2 == e.2);
        run = if same { run + 1 } else { 1 };
        // Of each pair in a run, the second is the double.
        if !(same && run % 2 == 0) {
            out.push(e);
        }
    }
    out
}

/// A view's title text in its title bar `title`, ending with an ellipsis before `end_x` (the
/// bar's buttons) when the window is too narrow for it.
pub(super) fn paint_title(painter: &egui::Painter, title: Rect, end_x: f32, text: String) {
    let mut job = egui::text::LayoutJob::simple_singleline(text, FontId::proportional(12.5), Color32::from_gray(215));
    job.wrap = egui::text::TextWrapping::truncate_at_width((end_x - title.min.x - 10.0).max(0.0));
    let galley = painter.layout_job(job);
    painter.galley(pos2(title.min.x + 10.0, title.center().y - galley.size().y / 2.0), galley, Color32::from_gray(215));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doubled_wheel_notch_counts_once() {
        let line = |dy: f32| (egui::MouseWheelUnit::Line, vec2(0.0, dy), egui::Modifiers::NONE);
        let px = |dy: f32| (egui::MouseWheelUnit::Point, vec2(0.0, dy), egui::Modifiers::NONE);
        let steps = |ev: Vec<WheelEvent>| once_per_notch(ev).iter().map(|e| e.1.y).sum::<f32>();
        assert_eq!(steps(vec![line(1.0), line(1.0)]), 1.0, "one notch through XTEST");
        assert_eq!(steps(vec![line(1.0), line(1.0), line(1.0), line(1.0)]), 2.0, "two notches");
        assert_eq!(steps(vec![line(1.0)]), 1.0);
        assert_eq!(steps(vec![line(1.0), line(-1.0)]), 0.0, "up then down are both kept");
        assert_eq!(steps(vec![line(3.0), line(3.0)]), 6.0, "several lines at once are not doubles");
        assert_eq!(steps(vec![px(10.0), px(10.0)]), 20.0, "trackpad points are never merged");
    }
}
