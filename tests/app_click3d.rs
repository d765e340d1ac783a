//! The 3D view and "3D from click" in the real app, driven through egui_kittest: meshes for the
//! demo's labels appear in the 3D view; a Shift+click on the liver grows a region on a
//! background thread, which is measured against the liver label under the click; Accept writes
//! it into the label map, Ctrl+Z restores the old labels; a running job is cancelled with Esc
//! or the Cancel button (region growing and the model).

#[path = "common/viewer.rs"]
mod viewer;
use egui::{Event, Key, Modifiers, PointerButton, Pos2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::three_d::CANDIDATE_ID;
use sam3d_studio::app::{App, AppCommand, ClickMethod, Startup, ViewCell};
use sam3d_studio::geometry::{RasMm, SliceMm, ViewPlane, VoxelIjk};
use sam3d_studio::volume::{LabelMap, OnGrid};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use viewer::demo;

const LIVER: u16 = 5;


fn harness() -> Harness<'static, App> {
    let (ct, labels) = demo();
    let startup = Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), weights: None, at: None };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    wait_idle(&mut h);
    h
}

/// Steps frames until the loader, the mesher and any click job are done.
fn wait_idle(h: &mut Harness<'static, App>) {
    let t0 = Instant::now();
    h.step();
    while h.state().is_busy() || h.state().is_meshing() || h.state().is_clicking() {
        assert!(t0.elapsed() < Duration::from_secs(90), "background work did not finish");
        std::thread::sleep(Duration::from_millis(5));
        h.step();
    }
    h.run();
}

#[test]
fn three_d_view_gets_a_mesh_per_label() {
    let h = harness();
    let app = h.state();
    let table = &app.scene().expect("scene").labels.as_ref().expect("labels").table;
    let want: Vec<u16> = table.entries.iter().filter(|(id, e)| **id != 0 && e.voxels > 0).map(|(id, _)| *id).collect();
    assert!(want.contains(&LIVER) && want.len() >= 4, "{want:?}");
    let got: Vec<u16> = app.mesh_view.labels().iter().map(|l| l.label).collect();
    assert_eq!(got, want);
    for l in app.mesh_view.labels() {
        assert!(l.triangles > 100, "label {} has {} triangles", l.label, l.triangles);
        assert_eq!(l.name, table.entries[&l.label].name);
    }
    // The crosshair is the 3D view's marker.
    assert_eq!(app.mesh_view.crosshair(), Some(app.scene().expect("scene").crosshair));
    // Hiding a label in the side panel hides its mesh.
    let mut h = h;
    h.state_mut().send(AppCommand::SetLabelVisible { id: LIVER, visible: false });
    h.run();
    assert!(!h.state().mesh_view.is_label_visible(LIVER));
    assert!(h.state().mesh_view.is_label_visible(want[0]));
}

/// A liver voxel on the axial slice through the crosshair, well inside the organ (its 7×7
/// in-plane neighbourhood is all liver).
fn liver_voxel(labels: &LabelMap, k: usize) -> [usize; 3] {
    let d = &labels.data;
    let (nj, ni) = (d.shape()[1], d.shape()[2]);
    for j in 3..nj - 3 {
        for i in 3..ni - 3 {
            if (j - 3..=j + 3).all(|jj| (i - 3..=i + 3).all(|ii| d[[k, jj, ii]] == LIVER)) {
                return [i, j, k];
            }
        }
    }
    panic!("no liver on axial slice {k}");
}

fn shift_click(h: &mut Harness<'static, App>, pos: Pos2) {
    h.hover_at(pos);
    h.step();
    h.event(Event::ModifiersChanged(Modifiers::SHIFT));
    h.event(Event::PointerButton { pos, button: PointerButton::Primary, pressed: true, modifiers: Modifiers::SHIFT });
    h.step();
    h.event(Event::PointerButton { pos, button: PointerButton::Primary, pressed: false, modifiers: Modifiers::SHIFT });
    h.step();
    h.event(Event::ModifiersChanged(Modifiers::NONE));
    h.step();
}

#[test]
fn shift_click_on_the_liver_accept_and_undo() {
    let (_, labels_path) = demo();
    let labels = sam3d_studio::volume::open_labels(&labels_path).expect("demo labels");
    let mut h = harness();
    // The upper abdomen, where the liver is large on axial slices.
    h.state_mut().send(AppCommand::StepSlice { plane: ViewPlane::Axial, steps: 30 });
    h.run();
    let (scene_k, sfs, rfs) = {
        let app = h.state();
        let scene = app.scene().expect("scene");
        let g = *scene.geom(ViewPlane::Axial);
        let rect = app.rt.view_rects[0].expect("axial drawn");
        let zoom = app.rt.zoom_of(ViewPlane::Axial) as f64;
        let sfs = g.screen_from_slice([rect.min.x as f64, rect.min.y as f64], [rect.width() as f64, rect.height() as f64], zoom, [0.0, 0.0]);
        (scene.slice_index(ViewPlane::Axial), sfs, g.ras_from_slice())
    };
    let [i, j, k] = liver_voxel(&labels, scene_k);
    let ras: RasMm = labels.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
    let slice: SliceMm = rfs.try_inverse().expect("invertible").apply(ras);
    let screen = sfs.apply(slice);
    let pos = Pos2::new(screen.x() as f32, screen.y() as f32);

    // The new label is one more than the largest id.
    let new_id = h.state().next_label_id();
    assert!(new_id > *labels.data.iter().max().expect("voxels"));
    let axial_rect = h.state().rt.view_rects[0];
    shift_click(&mut h, pos);
    assert!(h.state().is_clicking() || h.state().rt.click.candidate.is_some(), "Shift+click started no job");
    wait_idle(&mut h);
    step_until(&mut h, "the comparison with the label under the click", |a| !a.is_comparing());
    let app = h.state();
    // The result's summary never wraps the toolbar: the views stay where the pointer was.
    assert_eq!(app.rt.view_rects[0], axial_rect, "the axial view moved when the result came");
    assert!(app.messages().iter().all(|m| !m.is_error), "{:?}", app.messages());
    let c = app.rt.click.candidate.as_ref().expect("a candidate");
    assert!(c.mask[[k, j, i]], "the clicked voxel is in the result");
    // The liver of the demo is ~1.5 l; region growing from inside it finds hundreds of ml,
    // not the whole abdomen.
    assert!(c.ml > 200.0 && c.ml < 3500.0, "{} ml", c.ml);
    assert!(app.mesh_view.labels().iter().any(|l| l.label == CANDIDATE_ID && l.triangles > 100), "candidate mesh in the 3D view");
    // The candidate measured against the label under the click, the demo's liver: the figures
    // of the whole grid, named from the label table, shown in the toolbar.
    let cmp = c.compared.as_ref().expect("compared with the liver");
    let want = sam3d_studio::shape::metrics::mask_metrics(LIVER, c.mask.view(), labels.data.mapv(|v| v == LIVER).view(), labels.spacing_mm());
    assert_eq!((cmp.metrics.label, cmp.name.as_str()), (LIVER, "liver"));
    assert_eq!((cmp.metrics.dice, cmp.metrics.hd95_mm, cmp.metrics.pred_voxels, cmp.metrics.gt_voxels), (want.dice, want.hd95_mm, want.pred_voxels, want.gt_voxels));
    assert!(want.dice > 0.1 && want.dice < 1.0, "{want:?}");
    assert!(cmp.summary().starts_with("vs liver: Dice ") && cmp.details().contains("label 5 liver"), "{}", cmp.summary());
    h.get_by_label_contains("vs liver: Dice");
    let app = h.state();
    let c = app.rt.click.candidate.as_ref().expect("a candidate");

    let before = app.scene().expect("scene").labels.as_ref().expect("labels").map.data.clone();
    let mask = c.mask.clone();
    h.key_press(Key::Enter);
    wait_idle(&mut h);
    let app = h.state();
    assert!(app.rt.click.candidate.is_none());
    assert_eq!(app.rt.name_prompt.as_ref().map(|p| p.id), Some(new_id), "the new label is offered a name");
    let layer = app.scene().expect("scene").labels.as_ref().expect("labels");
    // Paint over background only (the default): the liver under the result is kept, the
    // result is written where there was no label.
    assert_eq!(layer.map.data[[k, j, i]], LIVER, "the reference label under the click is kept");
    let changed = mask.iter().zip(before.iter()).filter(|&(&m, &b)| m && b == 0).count();
    assert!(changed > 0);
    assert_eq!(layer.map.data.iter().filter(|&&l| l == new_id).count(), changed);
    assert!(mask.iter().zip(before.iter()).zip(layer.map.data.iter()).all(|((&m, &b), &a)| if m && b == 0 { a == new_id } else { a == b }));
    assert_eq!(layer.table.entries[&new_id].voxels, changed);
    assert!(app.mesh_view.labels().iter().any(|l| l.label == new_id && l.triangles > 100));
    assert!(!app.mesh_view.labels().iter().any(|l| l.label == CANDIDATE_ID));

    // Escape keeps the default name (the prompt has the keyboard until then).
    h.key_press(Key::Escape);
    h.run();
    assert!(h.state().rt.name_prompt.is_none());
    h.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    wait_idle(&mut h);
    let layer = h.state().scene().expect("scene").labels.as_ref().expect("labels");
    assert_eq!(layer.map.data, before, "undo restores every voxel");
    assert_eq!(layer.table.entries.get(&new_id).map_or(0, |e| e.voxels), 0);
    assert_eq!(layer.table.entries[&LIVER].voxels, before.iter().filter(|&&l| l == LIVER).count());

    h.key_press_modifiers(Modifiers::COMMAND, Key::Y);
    wait_idle(&mut h);
    let redone = &h.state().scene().expect("scene").labels.as_ref().expect("labels").map.data;
    assert_eq!(redone.iter().filter(|&&l| l == new_id).count(), changed, "redo");
}

#[test]
fn click_outside_the_volume_is_an_error_and_the_app_lives() {
    let mut h = harness();
    h.state_mut().send(AppCommand::ClickAt(RasMm::new(1e4, 0.0, 0.0)));
    wait_idle(&mut h);
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("outside")), "{:?}", h.state().messages());
    assert!(h.state().rt.click.candidate.is_none());
    // Reject with nothing to reject, undo with nothing to undo: no-ops.
    h.state_mut().send(AppCommand::RejectCandidate);
    h.state_mut().send(AppCommand::Undo);
    h.run();
}

#[test]
fn without_weights_the_model_method_is_refused_with_help() {
    let mut h = harness();
    assert!(h.state().rt.model.is_none());
    h.state_mut().send(AppCommand::SetClickMethod(sam3d_studio::app::ClickMethod::Model));
    let c = h.state().scene().expect("scene").crosshair;
    h.state_mut().send(AppCommand::ClickAt(c));
    wait_idle(&mut h);
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("Load weights")), "{:?}", h.state().messages());
    assert!(h.state().rt.click.candidate.is_none());
}

/// A tiny checkpoint with seeded random weights (not a trained model), written as `dir/name`.
fn tiny_random_weights(dir: &std::path::Path, name: &str) -> PathBuf {
    tch::manual_seed(3);
    let weights = dir.join(name);
    sam3d_engine::model::Model::new(sam3d_engine::model::Config::tiny(), tch::Device::Cpu).save_weights(&weights).expect("save");
    weights
}

/// The model path: weights loaded in the engine process (a tiny random checkpoint made here,
/// not a trained model), one click, the mask comes back through a file onto the volume's grid.
#[test]
fn model_click_through_the_engine_process() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = tiny_random_weights(dir.path(), "tiny-random.safetensors");
    let mut h = harness();
    h.state_mut().send(AppCommand::LoadWeights(weights));
    let t0 = Instant::now();
    while h.state().rt.model.is_none() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no model loaded: {:?}", h.state().messages());
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    assert!(h.state().rt.model.as_deref().is_some_and(|m| m.contains("tiny")), "{:?}", h.state().rt.model);
    h.state_mut().send(AppCommand::SetClickMethod(sam3d_studio::app::ClickMethod::Model));
    // A scan only looked at is not handed to the engine...
    for _ in 0..5 {
        h.step();
    }
    assert!(!h.state().engine_holds_scan() && h.state().scene().expect("scene").engine_path.is_none());
    // ...choosing "3D from click" hands it over (a copy of the .nii.gz, then set_volume), before
    // any click, so the first click does not wait for it.
    h.state_mut().send(AppCommand::SetTool(sam3d_studio::app::tools::Tool::ClickTo3d));
    step_until(&mut h, "the scan handed to the engine", |app| app.engine_holds_scan());
    assert!(h.state().scene().expect("scene").engine_path.is_some(), "the engine reads the viewer's copy");
    assert!(!h.state().is_clicking());
    let c = h.state().scene().expect("scene").crosshair;
    h.state_mut().send(AppCommand::ClickAt(c));
    h.step();
    assert!(h.state().is_clicking());
    assert_eq!(h.state().rt.click.last_status, None, "the click did not wait for a hand-over");
    wait_idle(&mut h);
    let app = h.state();
    // Random weights segment something or nothing; either way the job ends and says which.
    match &app.rt.click.candidate {
        Some(cand) => {
            assert_eq!(cand.mask.shape(), &app.scene().expect("scene").volume.array_shape()[..]);
            assert_eq!(cand.voxels, cand.mask.iter().filter(|&&m| m).count());
            assert_eq!(cand.method, sam3d_studio::app::ClickMethod::Model);
            // The 3D view shows the engine's surface of the result, not a new one made here.
            let mesh = cand.mesh.as_ref().expect("the engine sent its mesh");
            assert!(!mesh.triangles.is_empty());
            let shown = app.mesh_view.labels().iter().find(|l| l.label == CANDIDATE_ID).expect("candidate in the 3D view");
            assert_eq!(shown.triangles, mesh.triangles.len());
        }
        None => assert!(app.messages().iter().any(|m| m.text.contains("nothing was segmented")), "{:?}", app.messages()),
    }
    assert!(app.messages().iter().all(|m| !m.text.contains("engine stopped")), "{:?}", app.messages());
    assert!(app.messages().iter().all(|m| m.text != sam3d_studio::app::MR_WITHOUT_ADAPTER), "a CT is not told it is MR");
}

/// A RAS point well inside the liver on the axial slice 30 steps up (where the liver is large).
fn liver_click(h: &mut Harness<'static, App>) -> RasMm {
    let (_, labels_path) = demo();
    let labels = sam3d_studio::volume::open_labels(&labels_path).expect("demo labels");
    h.state_mut().send(AppCommand::StepSlice { plane: ViewPlane::Axial, steps: 30 });
    h.run();
    let k = h.state().scene().expect("scene").slice_index(ViewPlane::Axial);
    let [i, j, k] = liver_voxel(&labels, k);
    labels.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64))
}

/// Starting a job moves no view, at any window width from 960 to 1440 points (every 60: an
/// item added to the toolbar for the job, as its spinner and Cancel button were, is wider than
/// that, so at one of these widths it would wrap the toolbar onto one more row, shrinking every
/// view and making the 3D view draw its meshes again while the engine worked).
#[test]
fn a_running_job_moves_no_view_at_any_width() {
    let mut h = harness();
    let ras = liver_click(&mut h);
    for width in (960..=1440).step_by(60) {
        h.set_size(egui::vec2(width as f32, 900.0));
        h.run();
        let (release, gate) = crossbeam_channel::bounded::<()>(0);
        h.state_mut().rt.click.test_gate = Some(gate);
        let idle = h.state().rt.view_rects;
        assert!(idle.iter().all(|r| r.is_some()), "{idle:?}");
        h.state_mut().send(AppCommand::ClickAt(ras));
        h.step();
        h.step();
        assert!(h.state().is_clicking());
        assert_eq!(h.state().rt.view_rects, idle, "the views moved when the job started, at {width} points");
        h.key_press(Key::Escape);
        h.step();
        h.state_mut().rt.click.test_gate = None;
        release.send(()).expect("the job waits at the gate");
        step_until(&mut h, "the cancelled job to stop", |app| !app.is_clicking());
    }
}

/// Steps frames (the running job's spinner keeps asking for them) until `done`.
fn step_until(h: &mut Harness<'static, App>, what: &str, done: impl Fn(&App) -> bool) {
    let t0 = Instant::now();
    while !done(h.state()) {
        assert!(t0.elapsed() < Duration::from_secs(90), "{what}: {:?}", h.state().messages().iter().map(|m| &m.text).collect::<Vec<_>>());
        std::thread::sleep(Duration::from_millis(5));
        h.step();
    }
}

/// Esc cancels a running region-growing job (held at a test gate, so that it is surely still
/// running): no candidate, the status says "cancelled", the maximised view stays; released,
/// the job stops at its first pass without an answer; then Esc restores the layout again and
/// the next click gives a candidate.
#[test]
fn esc_cancels_a_running_click_job_and_the_next_click_works() {
    let mut h = harness();
    let ras = liver_click(&mut h);
    h.state_mut().send(AppCommand::ToggleMaximise(ViewCell::Slice(ViewPlane::Axial)));
    h.run();
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    h.state_mut().rt.click.test_gate = Some(gate);
    let idle_rects = h.state().rt.view_rects;
    h.state_mut().send(AppCommand::ClickAt(ras));
    h.step();
    h.step();
    assert!(h.state().is_clicking(), "{:?}", h.state().messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    // While it runs: a Cancel button in the status bar, and the views where they were (a
    // toolbar or status bar growing for the job would move them and redraw the 3D view).
    assert_eq!(h.state().rt.view_rects, idle_rects, "the views moved when the job started");
    assert_eq!(h.get_all_by_label("Cancel").count(), 1);

    h.key_press(Key::Escape);
    h.step();
    let app = h.state();
    assert!(!app.is_clicking());
    assert!(app.rt.click.candidate.is_none());
    assert_eq!(app.rt.click.last_status.as_deref(), Some("cancelled"));
    assert!(app.messages().iter().any(|m| !m.is_error && m.text.contains("cancelled")), "{:?}", app.messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    assert_eq!(app.maximised, Some(ViewCell::Slice(ViewPlane::Axial)), "Esc with a job running only cancels it");
    h.step();
    h.get_by_label_contains("3D from click: cancelled");
    assert_eq!(h.query_all_by_label("Cancel").count(), 0, "no Cancel button without a job");

    // Release the held job: it sees its cancel and stops, with no answer to drop.
    h.state_mut().rt.click.test_gate = None;
    release.send(()).expect("the job waits at the gate");
    step_until(&mut h, "the cancelled job to stop", |app| app.rt.click.stopped_jobs == 1);
    assert_eq!(h.state().rt.click.dropped_results, 0);
    assert!(h.state().rt.click.candidate.is_none() && !h.state().is_clicking());

    // No job: Esc restores the layout, as before.
    h.key_press(Key::Escape);
    h.run();
    assert_eq!(h.state().maximised, None);

    h.state_mut().send(AppCommand::ClickAt(ras));
    h.step();
    assert!(h.state().is_clicking());
    assert_eq!(h.state().rt.click.last_status, None);
    wait_idle(&mut h);
    let c = h.state().rt.click.candidate.as_ref().expect("the next click gives a candidate");
    assert!(c.ml > 200.0, "{} ml", c.ml);
    assert_eq!((h.state().rt.click.dropped_results, h.state().rt.click.stopped_jobs), (0, 1));
}

/// Opening another volume while a job runs stops the job where it runs (region growing at
/// its next pass), instead of leaving it to finish on the old scan and keep a core busy.
#[test]
fn opening_another_volume_stops_the_running_job() {
    let mut h = harness();
    let ras = liver_click(&mut h);
    let (release, gate) = crossbeam_channel::bounded::<()>(0);
    h.state_mut().rt.click.test_gate = Some(gate);
    h.state_mut().send(AppCommand::ClickAt(ras));
    h.step();
    h.step();
    assert!(h.state().is_clicking());
    let (ct, labels) = demo();
    h.state_mut().send(AppCommand::OpenVolume { path: ct, labels: Some(labels) });
    wait_idle(&mut h);
    assert!(!h.state().is_clicking() && h.state().rt.click.candidate.is_none());
    h.state_mut().rt.click.test_gate = None;
    release.send(()).expect("the job waits at the gate");
    step_until(&mut h, "the old scan's job to stop", |app| app.rt.click.stopped_jobs == 1);
    assert_eq!(h.state().rt.click.dropped_results, 0, "it stopped instead of finishing and being dropped");
}

/// The model path: a job sent to the engine process is cancelled with the Cancel button (the
/// engine gets a `cancel`); whatever the engine answers for it is dropped, and the next click's
/// job is the one that ends with a result.
#[test]
fn cancel_button_cancels_a_model_job_in_the_engine() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = tiny_random_weights(dir.path(), "tiny-random.safetensors");
    let mut h = harness();
    h.state_mut().send(AppCommand::LoadWeights(weights));
    step_until(&mut h, "model loaded", |app| app.rt.model.is_some());
    h.state_mut().send(AppCommand::SetClickMethod(sam3d_studio::app::ClickMethod::Model));
    let c = h.state().scene().expect("scene").crosshair;
    h.state_mut().send(AppCommand::ClickAt(c));
    // The first model click on a scan waits for the engine's copy of it, then runs.
    step_until(&mut h, "the job sent to the engine", |app| app.rt.click.running.is_some());
    let first = h.state().rt.click.running.expect("a job").0;
    h.get_all_by_label("Cancel").next().expect("a Cancel button").click();
    h.step();
    assert!(!h.state().is_clicking());
    assert_eq!(h.state().rt.click.last_status.as_deref(), Some("cancelled"));
    assert!(h.state().rt.click_stage.is_none(), "no progress shown for a cancelled job");

    h.state_mut().send(AppCommand::ClickAt(c));
    h.step();
    let second = h.state().rt.click.running.expect("a job").0;
    assert!(second > first);
    // The engine answers in order, so when the second job ends the first one's answer (a
    // `cancelled`, or a result if it was already done) has come and gone.
    wait_idle(&mut h);
    let app = h.state();
    assert!(app.messages().iter().all(|m| !m.is_error || m.text.contains("nothing was segmented")), "{:?}", app.messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    match &app.rt.click.candidate {
        Some(cand) => assert_eq!(cand.job, second, "the cancelled job gave no candidate"),
        None => assert!(app.messages().iter().any(|m| m.text.contains("nothing was segmented")), "{:?}", app.messages().iter().map(|m| &m.text).collect::<Vec<_>>()),
    }
}

/// The shipped default weights: the app started with a weights path loads them into the
/// engine (the status bar says so meanwhile), then shows the model and selects it for
/// "3D from click". A random `tiny` checkpoint stands in for the shipped file here.
#[test]
fn startup_weights_are_loaded_and_the_model_method_selected() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = tiny_random_weights(dir.path(), "default.safetensors");
    let (ct, labels) = demo();
    let startup = Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), weights: Some(weights), at: None };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    h.step();
    h.step();
    if h.state().rt.model.is_none() {
        // Until the engine answers: region growing, and the status bar says what is loading.
        assert_eq!(h.state().click_method, ClickMethod::RegionGrowing);
        h.get_by_label("Model: loading default.safetensors…");
        h.get_by_value("Region growing (no weights)");
        assert!(h.query_by_label("Refine by image").is_none(), "the refinement is the model's option");
        assert!(h.query_by_label("Past the cube").is_none(), "so is the continuation");
        assert!(h.query_by_label("3 planes").is_none(), "and the plane fusion");
        assert!(h.query_by_label("Join growing").is_none(), "and the join of region growing");
    }
    step_until(&mut h, "default model loaded", |app| app.rt.model.is_some() && !app.is_busy() && !app.is_meshing());
    let app = h.state();
    assert_eq!(app.rt.model.as_deref(), Some("tiny (default.safetensors)"));
    assert_eq!(app.click_method, ClickMethod::Model);
    assert!(app.messages().iter().any(|m| !m.is_error && m.text.contains("uses it")), "{:?}", app.messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    h.step();
    h.get_by_label("Model: tiny (default.safetensors) · no adapter");
    h.get_by_value("SAM3D model"); // the toolbar's method box
    // The model's masks are refined by the image unless the toolbar's box is cleared.
    assert!(h.state().refine_masks);
    h.get_by_label("Refine by image").click();
    h.step();
    assert!(!h.state().refine_masks);
    // Likewise organs wider than the model's cube are continued unless "Past the cube" is cleared.
    assert!(h.state().extend_masks);
    h.get_by_label("Past the cube").click();
    h.step();
    assert!(!h.state().extend_masks && !h.state().refine_masks);
    // And the model runs in the three planes through the click unless "3 planes" is cleared.
    assert!(h.state().fuse_planes);
    h.get_by_label("3 planes").click();
    h.step();
    assert!(!h.state().fuse_planes && !h.state().extend_masks);
    // And region growing from the click is joined where it agrees unless "Join growing" is cleared.
    assert!(h.state().join_growing);
    h.get_by_label("Join growing").click();
    h.step();
    assert!(!h.state().join_growing && !h.state().fuse_planes);
    // Small objects are seen magnified as the Model menu's "Zoom small objects" says (by default,
    // as the pipeline's default), and the request carries it.
    let zoom = sam3d_studio::options::PipelineOptions::default().zoom;
    assert_eq!(h.state().zoom_small, zoom);
    h.get_by_label("Model").click();
    h.run_steps(3);
    h.get_by_label("Zoom small objects").click();
    h.step();
    assert_eq!((h.state().zoom_small, h.state().pipeline_options().zoom), (!zoom, !zoom));
    h.key_press(Key::Escape);
    h.step();
    // The MR adapter's box is for MR scans only.
    assert!(h.query_by_label("MR adapter").is_none(), "a CT has no MR adapter box");
}

/// Start-up weights that cannot be loaded: an error, and "3D from click" stays on region growing.
#[test]
fn startup_weights_that_fail_leave_region_growing() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = dir.path().join("default.safetensors");
    std::fs::write(&weights, b"not a checkpoint").expect("write");
    let (ct, labels) = demo();
    let startup = Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), weights: Some(weights), at: None };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    step_until(&mut h, "the load fails", |app| app.rt.startup_weights.is_none() && !app.is_busy());
    let app = h.state();
    assert!(app.rt.model.is_none());
    assert_eq!(app.click_method, ClickMethod::RegionGrowing);
    let texts: Vec<&String> = app.messages().iter().map(|m| &m.text).collect();
    assert!(app.messages().iter().any(|m| m.is_error && m.text.contains("default.safetensors")), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("uses region growing")), "{texts:?}");
}

/// An MR scan (the real one in assets/mr) clicked with the CT-trained weights and no adapter:
/// the click runs, and the app says once that those weights are for CT. A CT scan never hears it.
#[test]
fn an_mr_without_adapter_gets_a_note_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = tiny_random_weights(dir.path(), "default.safetensors");
    let mr = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/mr/mr.nii.gz");
    let startup = Startup { volume: Some(mr), labels: None, device: Some("CPU".into()), weights: Some(weights), at: None };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    step_until(&mut h, "model loaded", |app| app.rt.model.is_some() && app.scene().is_some() && !app.is_busy());
    assert_eq!(h.state().scene().expect("scene").modality, sam3d_studio::volume::Modality::Mr);
    let notes = |app: &App| app.messages().iter().filter(|m| !m.is_error && m.text == sam3d_studio::app::MR_WITHOUT_ADAPTER).count();
    assert_eq!(notes(h.state()), 0, "no note before a model click");
    for _ in 0..2 {
        let c = h.state().scene().expect("scene").crosshair;
        h.state_mut().send(AppCommand::ClickAt(c));
        h.step();
        step_until(&mut h, "click done", |app| !app.is_clicking() && !app.is_busy());
    }
    assert_eq!(notes(h.state()), 1, "{:?}", h.state().messages().iter().map(|m| &m.text).collect::<Vec<_>>());
    assert!(h.state().rt.click.candidate.is_some(), "the click still ran");
    // An MR scan offers the MR adapter's box (on by default; these random weights refuse it).
    assert!(h.state().mr_adapter);
    h.get_by_label("MR adapter").click();
    h.step();
    assert!(!h.state().mr_adapter);
}

/// `--at X,Y,Z --click PLANE` (an eval row's click): once the volume and labels are open the
/// crosshair goes to the point, "3D from click" runs there on that plane, and the result is
/// measured against the label under it (and again when the label map is loaded again); a point
/// outside the volume is an error naming the file.
#[test]
fn start_up_point_and_click_run_once_the_volume_is_open() {
    let (ct, labels_path) = demo();
    let labels = sam3d_studio::volume::open_labels(&labels_path).expect("demo labels");
    let k = labels.data.shape()[0] * 3 / 4;
    let [i, j, k] = liver_voxel(&labels, k);
    let at: RasMm = labels.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
    let startup = Startup { volume: Some(ct.clone()), labels: Some(labels_path.clone()), device: Some("CPU".into()), weights: None, at: Some((at, Some(ViewPlane::Coronal))) };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    step_until(&mut h, "the start-up click's candidate", |a| a.rt.click.candidate.is_some() && !a.is_comparing());
    let app = h.state();
    assert_eq!(app.scene().expect("scene").crosshair, at);
    assert_eq!(app.rt.active_view, ViewPlane::Coronal);
    let c = app.rt.click.candidate.as_ref().expect("a candidate");
    assert_eq!(c.click, at);
    assert!(c.mask[[k, j, i]]);
    assert_eq!(c.compared.as_ref().map(|m| m.metrics.label), Some(LIVER));
    assert!(app.rt.pending_at.is_none(), "runs once");
    // The label map loaded again: the comparison is measured again against it, with the same
    // figures (the old one is dropped, not left on the toolbar).
    let dice = c.compared.as_ref().expect("compared").metrics.dice;
    h.state_mut().send(AppCommand::OpenLabels(labels_path.clone()));
    h.step();
    step_until(&mut h, "the comparison against the reloaded labels", |a| !a.is_busy() && !a.is_comparing() && a.rt.click.candidate.as_ref().is_some_and(|c| c.compared.is_some()));
    assert_eq!(h.state().rt.click.candidate.as_ref().and_then(|c| c.compared.as_ref()).map(|m| m.metrics.dice), Some(dice));

    let outside = RasMm::new(at.x() + 5000.0, at.y(), at.z());
    let startup = Startup { volume: Some(ct), labels: None, device: Some("CPU".into()), weights: None, at: Some((outside, None)) };
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    step_until(&mut h, "the outside point's error", |a| a.messages().iter().any(|m| m.is_error));
    let e = &h.state().messages().iter().find(|m| m.is_error).expect("error").text;
    assert!(e.contains("lies outside") && e.contains("ct.nii.gz"), "{e}");
    assert!(h.state().rt.click.candidate.is_none() && !h.state().is_clicking());
}

/// A model result seen magnified (a small object, or a lesion the close-up probe found inside
/// the first shape) says so beside its size ("· seen at 3.7×", on the toolbar or, when the toolbar
/// is full, the status bar); one seen as it is says nothing of the kind.
#[test]
fn a_magnified_result_says_so_on_the_toolbar() {
    let mut h = harness();
    let shape = h.state().scene().expect("scene").volume.array_shape();
    let mut mask = ndarray::Array3::from_elem((shape[0], shape[1], shape[2]), false);
    mask[[60, 50, 40]] = true;
    let candidate = |zoom| sam3d_studio::app::click3d::Candidate {
        job: 1,
        click: RasMm::new(0.0, 0.0, 0.0),
        mask: std::sync::Arc::new(mask.clone()),
        mesh: None,
        voxels: 1,
        ml: 0.027,
        method: ClickMethod::Model,
        millis: 500.0,
        passes: 1,
        joined: false,
        zoom,
        bbox_kji: Some(([60, 50, 40], [60, 50, 40])),
        adapter: None,
        compared: None,
    };
    h.state_mut().rt.click.candidate = Some(candidate(Some(3.66)));
    h.run_steps(3);
    assert!(h.query_by_label_contains("· seen at 3.7×").is_some(), "the toolbar or the status bar names the magnification");
    h.state_mut().rt.click.candidate = Some(candidate(None));
    h.run_steps(3);
    assert!(h.query_by_label_contains("seen at").is_none(), "a result seen as it is names none");
    assert!(h.query_by_label_contains("1 voxels · 0.0 ml · 500 ms").is_some(), "the result's size is on the toolbar");
}
