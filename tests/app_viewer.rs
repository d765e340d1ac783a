//! The viewer driven through egui_kittest: the real `App`, the real loader thread, real input
//! events. Expected positions come from the demo CT's affine worked out by hand (3 mm isotropic,
//! RAS, origin (-177.956, 11.319, 94.302)), not from the code under test.

#[path = "common/snapshot.rs"]
mod snapshot;
#[path = "common/viewer.rs"]
mod viewer;
use egui::{Event, Modifiers, MouseWheelSource, MouseWheelUnit, PointerButton, Pos2, TouchPhase, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::{App, AppCommand, Startup, ViewCell};
use sam3d_studio::geometry::{RasFromVoxel, ViewPlane};
use sam3d_studio::volume::LabelMap;
use std::path::PathBuf;

/// The demo CT's affine: diagonal 3 mm, this origin (nibabel, see tests/data/ct_abdomen).
const ORIGIN: [f64; 3] = [-177.956_329_345_703_12, 11.319_000_244_140_625, 94.301_757_812_5];
const SHAPE: [usize; 3] = [122, 101, 112];
const SPACING: f64 = 3.0;


fn harness(startup: Startup) -> Harness<'static, App> {
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| {
        // The same device text on any machine (snapshots).
        App::new(cc, Startup { device: Some("CPU".into()), ..startup })
    });
    wait_for_loader(&mut h);
    h
}

use viewer::{demo, wait_for_loader};

fn click(h: &mut Harness<'static, App>, pos: Pos2) {
    h.hover_at(pos);
    h.step();
    h.event(Event::PointerButton { pos, button: PointerButton::Primary, pressed: true, modifiers: Modifiers::NONE });
    h.step();
    h.event(Event::PointerButton { pos, button: PointerButton::Primary, pressed: false, modifiers: Modifiers::NONE });
    h.run();
}

fn wheel(h: &mut Harness<'static, App>, pos: Pos2, lines: f32, modifiers: Modifiers) {
    h.hover_at(pos);
    h.step();
    h.event(Event::MouseWheel {
        unit: MouseWheelUnit::Line,
        delta: vec2(0.0, lines),
        phase: TouchPhase::Move,
        source: MouseWheelSource::Unknown,
        modifiers,
    });
    h.run();
}

fn view_rect(h: &Harness<'static, App>, plane: ViewPlane) -> egui::Rect {
    let n = ViewPlane::ALL.iter().position(|p| *p == plane).expect("plane");
    h.state().rt.view_rects[n].expect("view drawn")
}

/// Pixels per mm of a slice view showing `w_mm × h_mm` in `r` at zoom 1 (fit inside).
fn px_per_mm(r: egui::Rect, w_mm: f64, h_mm: f64) -> f64 {
    (r.width() as f64 / w_mm).min(r.height() as f64 / h_mm)
}

#[test]
fn demo_loads_with_labels_and_names() {
    let (ct, labels) = demo();
    let h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    let app = h.state();
    assert!(app.messages().is_empty(), "{:?}", app.messages());
    let scene = app.scene().expect("demo open");
    assert_eq!(scene.volume.array_shape(), [SHAPE[2], SHAPE[1], SHAPE[0]]);
    let l = scene.labels.as_ref().expect("labels open");
    assert_eq!(l.table.name_of(5), Some("liver"));
    assert_eq!(l.table.name_of(1), Some("spleen"));
    // Starts at the central voxel (61 - 1) / 2 etc., window = abdomen preset for CT.
    assert_eq!(scene.slice_index(ViewPlane::Axial), (SHAPE[2] - 1) / 2);
    assert_eq!(scene.window.width, 400.0);
    h.get_by_label_contains("5  liver");
}

#[test]
fn click_in_axial_moves_the_crosshair_and_the_other_views() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    let r = view_rect(&h, ViewPlane::Axial);
    let k0 = h.state().scene().expect("scene").slice_index(ViewPlane::Axial);
    // Axial, radiological: screen right = patient left (−x), screen up = anterior (+y).
    // The slice's centre (voxel i = 60.5, j = 50) sits at the view's centre at zoom 1.
    let s = px_per_mm(r, SHAPE[0] as f64 * SPACING, SHAPE[1] as f64 * SPACING);
    let (dx, dy) = (57.0f32, -41.0f32);
    click(&mut h, r.center() + vec2(dx, dy));
    let want_x = ORIGIN[0] + 60.5 * SPACING - dx as f64 / s;
    let want_y = ORIGIN[1] + 50.0 * SPACING - dy as f64 / s;
    let want_z = ORIGIN[2] + k0 as f64 * SPACING;
    let scene = h.state().scene().expect("scene");
    let c = scene.crosshair;
    // 0.01 mm: screen positions are f32 points; a voxel is 3 mm.
    assert!((c.x() - want_x).abs() < 0.01 && (c.y() - want_y).abs() < 0.01 && (c.z() - want_z).abs() < 1e-6, "crosshair {c:?}, want ({want_x:.3}, {want_y:.3}, {want_z:.3})");
    assert_eq!(scene.slice_index(ViewPlane::Axial), k0, "the clicked view keeps its slice");
    let want_j = ((want_y - ORIGIN[1]) / SPACING).round() as usize;
    let want_i = ((want_x - ORIGIN[0]) / SPACING).round() as usize;
    assert_eq!(scene.slice_index(ViewPlane::Coronal), want_j);
    assert_eq!(scene.slice_index(ViewPlane::Sagittal), want_i);
    assert!(want_i < 60 && want_j > 50, "right of centre on screen is patient left, up is anterior: i {want_i}, j {want_j}");

    // The status bar's probe under the cursor names that voxel.
    let probe = h.state().rt.hover.clone().expect("hovering the axial view");
    let ijk = [probe.voxel.x().round() as usize, probe.voxel.y().round() as usize, probe.voxel.z().round() as usize];
    assert_eq!(ijk, [want_i, want_j, k0]);
    h.get_by_label_contains(&format!("voxel ({want_i}, {want_j}, {k0})"));
}

#[test]
fn probe_matches_nibabel_samples() {
    // tests/data/ct_abdomen/nibabel_facts.json: voxel (61, 61, 108) = 63 HU at RAS
    // (5.0437, 194.319, 418.3018); voxel (103, 64, 57) = 49 HU.
    let (ct, labels) = demo();
    let h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    let scene = h.state().scene().expect("scene");
    for (ras, ijk, hu) in [([5.043_670_654_296_875, 194.319_000_244_140_62, 418.301_757_812_5], [61.0, 61.0, 108.0], 63.0), ([131.043_670_654_296_88, 203.319_000_244_140_62, 265.301_757_812_5], [103.0, 64.0, 57.0], 49.0)] {
        let p = scene.probe(sam3d_studio::geometry::RasMm::new(ras[0], ras[1], ras[2]));
        assert!(p.inside);
        assert!((p.voxel.x() - ijk[0]).abs() < 1e-6 && (p.voxel.y() - ijk[1]).abs() < 1e-6 && (p.voxel.z() - ijk[2]).abs() < 1e-6, "{:?}", p.voxel);
        assert_eq!(p.intensity, Some(hu));
    }
}

#[test]
fn wheel_steps_slices_and_ctrl_wheel_zooms_about_the_cursor() {
    let (ct, _) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: None, ..Default::default() });
    let r = view_rect(&h, ViewPlane::Axial);
    let k0 = h.state().scene().expect("scene").slice_index(ViewPlane::Axial);
    let j0 = h.state().scene().expect("scene").slice_index(ViewPlane::Coronal);
    wheel(&mut h, r.center(), 3.0, Modifiers::NONE);
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Axial), k0 + 3, "wheel up → 3 slices superior");
    wheel(&mut h, r.center(), -5.0, Modifiers::NONE);
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Axial), k0 - 2);
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Coronal), j0, "other views unchanged");
    // Keys act on the hovered view.
    h.key_press(egui::Key::PageUp);
    h.run();
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Axial), k0 + 8);

    // Ctrl+wheel zooms and the point under the cursor stays put: click there before and after.
    let p = r.center() + vec2(-80.0, 30.0);
    click(&mut h, p);
    let before = h.state().scene().expect("scene").crosshair;
    wheel(&mut h, p, 4.0, Modifiers::CTRL);
    assert!(h.state().rt.zoom_of(ViewPlane::Axial) > 1.5, "zoomed in");
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Axial), k0 + 8, "ctrl+wheel does not change slice");
    click(&mut h, p);
    let after = h.state().scene().expect("scene").crosshair;
    assert!(before.distance(&after) < 1e-3, "{before:?} vs {after:?}");
    // Reset view.
    h.key_press(egui::Key::R);
    h.run();
    assert_eq!(h.state().rt.zoom_of(ViewPlane::Axial), 1.0);
}

#[test]
fn label_grid_mismatch_is_an_error_and_the_app_lives_on() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("small_labels.nii.gz");
    LabelMap::new(ndarray::Array3::zeros((4, 5, 6)), RasFromVoxel::identity()).expect("ok").save(&bad).expect("write");
    h.state_mut().send(AppCommand::OpenLabels(bad));
    wait_for_loader(&mut h);
    let err = h.state().messages().iter().find(|m| m.is_error).expect("an error").text.clone();
    assert!(err.contains("small_labels.nii.gz") && err.contains("6×5×4") && err.contains("122×101×112"), "{err}");
    h.get_by_label_contains("does not match the volume's 122×101×112");
    // The scan and its previous labels are still there and the views still respond.
    assert_eq!(h.state().scene().expect("scene").labels.as_ref().expect("labels kept").table.name_of(5), Some("liver"));
    let r = view_rect(&h, ViewPlane::Axial);
    let k0 = h.state().scene().expect("scene").slice_index(ViewPlane::Axial);
    wheel(&mut h, r.center(), 1.0, Modifiers::NONE);
    assert_eq!(h.state().scene().expect("scene").slice_index(ViewPlane::Axial), k0 + 1);
    // Dismiss the message with its button.
    h.get_by_label("Dismiss").click();
    h.run();
    assert!(h.state().rt.messages.shown().is_empty(), "dismissed");
    assert_eq!(h.state().messages().len(), 1, "and still in View > Messages");

    // A file that is not there: an error naming it, nothing else changes.
    h.state_mut().send(AppCommand::OpenVolume { path: dir.path().join("missing.nii.gz"), labels: None });
    wait_for_loader(&mut h);
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("missing.nii.gz")), "{:?}", h.state().messages());
    assert!(h.state().scene().is_some());
}

#[test]
fn double_click_maximises_and_restores() {
    let (ct, _) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: None, ..Default::default() });
    let r = view_rect(&h, ViewPlane::Coronal);
    let p = r.center();
    h.hover_at(p);
    h.step();
    for _ in 0..2 {
        for pressed in [true, false] {
            h.event(Event::PointerButton { pos: p, button: PointerButton::Primary, pressed, modifiers: Modifiers::NONE });
            h.step();
        }
    }
    h.run();
    assert_eq!(h.state().maximised, Some(ViewCell::Slice(ViewPlane::Coronal)));
    assert!(h.state().rt.view_rects[0].is_none(), "axial not drawn while coronal is maximised");
    h.key_press(egui::Key::Escape);
    h.run();
    assert_eq!(h.state().maximised, None);
}

#[test]
fn window_presets_and_right_drag() {
    let (ct, _) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: None, ..Default::default() });
    let r = view_rect(&h, ViewPlane::Axial);
    h.hover_at(r.center());
    h.run();
    h.key_press(egui::Key::Num3);
    h.run();
    let w = h.state().scene().expect("scene").window;
    assert_eq!((w.width, w.level), (1800.0, 400.0), "key 3 = bone");
    // Right-drag to the right widens the window, upwards lowers the level.
    let p = r.center();
    h.event(Event::PointerButton { pos: p, button: PointerButton::Secondary, pressed: true, modifiers: Modifiers::NONE });
    h.step();
    for n in 1..=5 {
        h.hover_at(p + vec2(10.0 * n as f32, -6.0 * n as f32));
        h.step();
    }
    h.event(Event::PointerButton { pos: p + vec2(50.0, -30.0), button: PointerButton::Secondary, pressed: false, modifiers: Modifiers::NONE });
    h.run();
    let w2 = h.state().scene().expect("scene").window;
    assert!(w2.width > w.width && w2.level > w.level, "{w:?} → {w2:?}");
}

// ---- Image snapshots (wgpu on lavapipe). ----

/// A snapshot with the suite's thresholds (`tests/common/snapshot.rs`, the one place they are set).
fn snapshot(h: &mut Harness<'static, App>, name: &str) {
    h.snapshot_options(name, &snapshot::snapshot_options());
}

#[test]
fn snapshot_axial_view_with_overlay() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    h.set_size(vec2(640.0, 560.0));
    h.state_mut().send(AppCommand::ToggleSidePanel);
    h.state_mut().send(AppCommand::ToggleMaximise(ViewCell::Slice(ViewPlane::Axial)));
    // Upper abdomen: liver, spleen, kidneys.
    h.state_mut().send(AppCommand::StepSlice { plane: ViewPlane::Axial, steps: 30 });
    h.run();
    h.remove_cursor();
    h.run();
    snapshot(&mut h, "app_axial_overlay");
}

#[test]
fn snapshot_grid_layout() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct), labels: Some(labels), ..Default::default() });
    h.state_mut().send(AppCommand::SetOverlayMode(sam3d_studio::app::OverlayMode::Outline));
    h.run();
    h.remove_cursor();
    h.run();
    snapshot(&mut h, "app_grid_layout");
}

#[test]
fn save_label_map_writes_it_on_the_volume_grid() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct.clone()), labels: Some(labels.clone()), ..Default::default() });
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("saved.nii.gz");
    h.state_mut().send(AppCommand::SaveLabels(out.clone()));
    wait_for_loader(&mut h);
    assert!(h.state().messages().iter().any(|m| !m.is_error && m.text.contains("saved.nii.gz")), "{:?}", h.state().messages());
    let back = sam3d_studio::volume::open_labels(&out).expect("saved file reads");
    let orig = sam3d_studio::volume::open_labels(&labels).expect("demo labels");
    let vol = sam3d_studio::volume::open(&ct).expect("demo ct");
    assert_eq!(back.data, orig.data);
    assert!(back.ras_from_voxel.max_abs_diff(&vol.ras_from_voxel) < 1e-4);
    // A folder that does not exist: an error naming the path, the app carries on.
    h.state_mut().send(AppCommand::SaveLabels(dir.path().join("no/such/dir/x.nii.gz")));
    wait_for_loader(&mut h);
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("no/such/dir")), "{:?}", h.state().messages());
}

#[test]
fn settings_and_recent_files_survive_a_restart() {
    let (ct, labels) = demo();
    let mut h = harness(Startup { volume: Some(ct.clone()), labels: Some(labels), ..Default::default() });
    h.state_mut().send(AppCommand::SetConvention(sam3d_studio::geometry::DisplayConvention::Neurological));
    h.run();
    // Neurological: the axial view's left edge is now patient left.
    let g = *h.state().scene().expect("scene").geom(ViewPlane::Axial);
    assert_eq!(g.edge_letters(), ['L', 'R', 'A', 'P']);
    // What `App::save` stores restores the settings (eframe writes RON; the serde impl is the same).
    let stored = serde_json::to_string(h.state()).expect("serialises");
    let back: App = serde_json::from_str(&stored).expect("deserialises");
    assert_eq!(back.convention, sam3d_studio::geometry::DisplayConvention::Neurological);
    let ct = std::fs::canonicalize(ct).expect("exists");
    assert!(back.recent.iter().any(|r| r.path == ct), "{:?}", back.recent);
    assert!(back.scene().is_none(), "runtime state is not persisted");
}

#[derive(Debug)]
struct Dropped(PathBuf);
impl egui::DroppedFile for Dropped {
    fn path(&self) -> &std::path::Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

#[test]
fn dropped_files_open_as_volume_then_labels() {
    let (ct, labels) = demo();
    let mut h = harness(Startup::default());
    assert!(h.state().scene().is_none());
    h.get_by_label("No volume open");
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(ct)));
    h.step();
    wait_for_loader(&mut h);
    assert!(h.state().scene().is_some_and(|s| s.labels.is_none()));
    // "labels" in the name: opened over the volume.
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(labels)));
    h.step();
    wait_for_loader(&mut h);
    assert!(h.state().scene().is_some_and(|s| s.labels.is_some()), "{:?}", h.state().messages());
    // Not a volume: a message, nothing else.
    h.input_mut().dropped_files.push(std::sync::Arc::new(Dropped(PathBuf::from("/tmp/notes.txt"))));
    h.run();
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("notes.txt: not a volume")));
}

/// At the window's smallest size (720 × 480), with the probe showing a voxel and its label:
/// nothing in the status bar is drawn over another item (the model and compute texts shorten
/// with an ellipsis or are left out instead of overlapping the probe), idle and while a
/// 3D-from-click job runs (its item shrinks to its Cancel button and spinner).
#[test]
fn a_narrow_status_bar_overlaps_nothing() {
    let (ct, labels) = demo();
    let mut h = Harness::builder().with_size([720.0, 480.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| {
        App::new(cc, Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), ..Default::default() })
    });
    wait_for_loader(&mut h);
    let r = h.state().rt.view_rects[0].expect("the axial view");
    h.hover_at(r.center());
    h.run();
    let probe = h.state().rt.hover.clone().expect("hovering the axial view");
    assert!(probe.label.is_some(), "the probe shows a label");
    let check = |h: &Harness<'static, App>, least: usize| {
        let bar_top = h.get_by_label_contains("RAS (").rect().top();
        let items: Vec<egui::Rect> = ["RAS (", "voxel (", "label ", "Model:", "Compute:", "Cancel", "3D from click"]
            .iter()
            .filter_map(|t| h.query_all_by_label_contains(t).map(|n| n.rect()).find(|r| (r.top() - bar_top).abs() < 8.0))
            .collect();
        assert!(items.len() >= least, "{items:?}");
        for (a, ra) in items.iter().enumerate() {
            for rb in &items[a + 1..] {
                let overlap = ra.intersect(*rb);
                assert!(overlap.width() <= 0.5 || overlap.height() <= 0.5, "status bar items overlap: {ra:?} and {rb:?}");
            }
        }
    };
    check(&h, 4);
    // A job held at its gate: its Cancel button shows, and still nothing overlaps.
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    h.state_mut().rt.click.test_gate = Some(gate);
    h.state_mut().send(AppCommand::ClickAt(probe.ras));
    h.step();
    h.step();
    assert!(h.state().is_clicking());
    check(&h, 4);
    h.get_by_label("Cancel");
    h.state_mut().rt.click.test_gate = None;
    release.send(()).expect("the job waits at the gate");
    let t0 = std::time::Instant::now();
    while h.state().is_clicking() {
        assert!(t0.elapsed() < std::time::Duration::from_secs(60), "the job did not end");
        std::thread::sleep(std::time::Duration::from_millis(5));
        h.step();
    }
}
