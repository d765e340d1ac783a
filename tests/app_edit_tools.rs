//! The correction tools and the never-lose-a-label rules, driven through egui_kittest on the
//! demo CT (3 mm isotropic, RAS): paint and erase strokes, the overwrite rule keeping a
//! reference label under an accepted result, delete / undo, the unsaved-labels question on
//! quit, the autosave and its restore offer, and the status-bar probe of the current pointer.

#[path = "common/viewer.rs"]
mod viewer;
use egui::{Event, Modifiers, PointerButton, Pos2, vec2};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::tools::Tool;
use sam3d_studio::app::{App, AppCommand, ClickMethod, Startup};
use sam3d_studio::geometry::{RasMm, ViewPlane};
use sam3d_studio::label_edit::Overwrite;
use viewer::{demo, wait_for_loader};

const ORIGIN: [f64; 3] = [-177.956_329_345_703_12, 11.319_000_244_140_625, 94.301_757_812_5];
const SPACING: f64 = 3.0;
/// The liver's label in the demo label map.
const LIVER: u16 = 5;


fn harness() -> Harness<'static, App> {
    let (ct, labels) = demo();
    let mut h = Harness::builder().with_size([1280.0, 800.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| {
        App::new(cc, Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), ..Default::default() })
    });
    wait_for_loader(&mut h);
    h
}

fn ras_of_voxel(i: f64, j: f64, k: f64) -> RasMm {
    RasMm::new(ORIGIN[0] + i * SPACING, ORIGIN[1] + j * SPACING, ORIGIN[2] + k * SPACING)
}

/// Steps until every edit has reached the label map (edits wait while the mesher reads it) and
/// no whole-volume edit is running.
fn settle(h: &mut Harness<'static, App>) {
    let t0 = std::time::Instant::now();
    loop {
        wait_for_loader(h);
        let app = h.state();
        if app.rt.click.edits.waiting() == 0 && app.rt.edit_job.is_none() && !app.is_meshing() {
            break;
        }
        assert!(t0.elapsed().as_secs() < 60, "edits did not settle");
        std::thread::sleep(std::time::Duration::from_millis(5));
        h.step();
    }
}

fn labels(h: &Harness<'static, App>) -> ndarray::Array3<u16> {
    h.state().scene().and_then(|s| s.labels.as_ref()).map(|l| l.map.data.clone()).expect("a label map")
}

fn count(a: &ndarray::Array3<u16>, label: u16) -> usize {
    a.iter().filter(|&&v| v == label).count()
}

/// A voxel `[k, j, i]` of `label` whose 5 × 5 × 5 neighbourhood is all `label` (the one
/// nearest the label's centroid).
fn interior_voxel(a: &ndarray::Array3<u16>, label: u16) -> [usize; 3] {
    let pts: Vec<[usize; 3]> = a.indexed_iter().filter(|(_, v)| **v == label).map(|((k, j, i), _)| [k, j, i]).collect();
    let c = [0, 1, 2].map(|d| pts.iter().map(|p| p[d] as f64).sum::<f64>() / pts.len() as f64);
    let inside = |p: &[usize; 3]| {
        (0..5).all(|dk| (0..5).all(|dj| (0..5).all(|di| a.get([(p[0] + dk).wrapping_sub(2), (p[1] + dj).wrapping_sub(2), (p[2] + di).wrapping_sub(2)]) == Some(&label))))
    };
    let d2 = |p: &[usize; 3]| (0..3).map(|d| (p[d] as f64 - c[d]).powi(2)).sum::<f64>();
    *pts.iter().filter(|p| inside(p)).min_by(|x, y| d2(x).total_cmp(&d2(y))).expect("an interior voxel")
}

fn drag(h: &mut Harness<'static, App>, from: Pos2, to: Pos2) {
    h.hover_at(from);
    h.step();
    h.event(Event::PointerButton { pos: from, button: PointerButton::Primary, pressed: true, modifiers: Modifiers::NONE });
    h.step();
    for n in 1..=8 {
        h.hover_at(from + (to - from) * (n as f32 / 8.0));
        h.step();
    }
    h.event(Event::PointerButton { pos: to, button: PointerButton::Primary, pressed: false, modifiers: Modifiers::NONE });
    h.run();
    settle(h);
}

fn view_rect(h: &Harness<'static, App>, plane: ViewPlane) -> egui::Rect {
    let n = ViewPlane::ALL.iter().position(|p| *p == plane).expect("plane");
    h.state().rt.view_rects[n].expect("view drawn")
}

#[test]
fn a_paint_stroke_writes_one_slice_keeps_reference_labels_and_undoes_in_one_step() {
    let mut h = harness();
    let before = labels(&h);
    h.state_mut().send(AppCommand::SetTool(Tool::Paint));
    let mut b = h.state().brush;
    b.radius_mm = 6.0;
    b.sphere = false;
    h.state_mut().send(AppCommand::SetBrush(b));
    h.run();
    let r = view_rect(&h, ViewPlane::Axial);
    let k = h.state().scene().expect("scene").slice_index(ViewPlane::Axial);
    // A drag across the middle of the axial view (body, fat and organs).
    drag(&mut h, r.center() + vec2(-60.0, 10.0), r.center() + vec2(60.0, 10.0));
    let after = labels(&h);
    let new = h.state().rt.click.target.expect("painting made a new label active");
    assert!(before.iter().all(|&v| v != new), "a new id");
    let painted: Vec<[usize; 3]> = after.indexed_iter().filter(|(_, v)| **v == new).map(|((a, b, c), _)| [a, b, c]).collect();
    assert!(painted.len() > 50, "{} voxels painted", painted.len());
    assert!(painted.iter().all(|p| p[0] == k), "a 2D brush paints only the slice shown");
    // Only background changed (the default rule), and no reference voxel lost.
    for ((idx, &a), &b0) in after.indexed_iter().zip(before.iter()) {
        assert!(a == b0 || (b0 == 0 && a == new), "voxel {idx:?}: {b0} became {a}");
    }
    // The stroke's voxels lie within the brush radius of the dragged segment (3 mm voxels).
    // One Ctrl+Z takes the whole drag away.
    h.state_mut().send(AppCommand::Undo);
    settle(&mut h);
    assert_eq!(labels(&h), before, "one drag is one undo step");
    h.state_mut().send(AppCommand::Redo);
    settle(&mut h);
    assert_eq!(count(&labels(&h), new), painted.len());

    // The eraser with that label active takes only it away.
    h.state_mut().send(AppCommand::SetTool(Tool::Erase));
    h.run();
    drag(&mut h, r.center() + vec2(-70.0, 10.0), r.center() + vec2(70.0, 10.0));
    let erased = labels(&h);
    assert_eq!(count(&erased, new), 0);
    for (&a, &b0) in erased.iter().zip(before.iter()) {
        assert_eq!(a, b0, "erasing the active label leaves the references");
    }
}

#[test]
fn accept_keeps_the_reference_label_under_the_result_unless_told_otherwise() {
    let mut h = harness();
    let before = labels(&h);
    let liver0 = count(&before, LIVER);
    h.state_mut().send(AppCommand::SetClickMethod(ClickMethod::RegionGrowing));
    // A click deep in the liver.
    let [k, j, i] = interior_voxel(&before, LIVER);
    let at = ras_of_voxel(i as f64, j as f64, k as f64);
    h.state_mut().send(AppCommand::ClickAt(at));
    let t0 = std::time::Instant::now();
    while h.state().rt.click.candidate.is_none() {
        assert!(t0.elapsed().as_secs() < 60, "{:?}", h.state().messages());
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let cand = h.state().rt.click.candidate.as_ref().expect("result").voxels;
    h.state_mut().send(AppCommand::AcceptCandidate);
    settle(&mut h);
    let after = labels(&h);
    assert_eq!(count(&after, LIVER), liver0, "paint over background only: the liver label is intact");
    let new = after.iter().copied().filter(|v| !before.iter().any(|b| b == v)).max().expect("a new label");
    assert!(count(&after, new) < cand, "the result's voxels on the liver were not written");
    // The prompt for the new label's name is up; naming it shows in the list.
    assert_eq!(h.state().rt.name_prompt.as_ref().map(|p| p.id), Some(new));
    h.state_mut().rt.name_prompt = None;
    h.state_mut().send(AppCommand::RenameLabel { id: new, name: "liver (grown)".into() });
    h.run();
    h.get_by_label_contains("liver (grown)");

    // Undo; then the same with "all labels": the liver loses voxels.
    h.state_mut().send(AppCommand::Undo);
    settle(&mut h);
    assert_eq!(labels(&h), before);
    assert!(!h.state().scene().and_then(|s| s.labels.as_ref()).expect("labels").table.entries.contains_key(&new), "undo leaves no empty row");
    h.state_mut().send(AppCommand::SetOverwrite(Overwrite::All));
    h.state_mut().send(AppCommand::ClickAt(at));
    let t0 = std::time::Instant::now();
    while h.state().rt.click.candidate.is_none() {
        assert!(t0.elapsed().as_secs() < 60);
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    h.state_mut().send(AppCommand::AcceptCandidate);
    settle(&mut h);
    assert!(count(&labels(&h), LIVER) < liver0, "paint over all labels replaces them");
}

#[test]
fn a_deleted_label_comes_back_with_undo_and_quitting_asks_to_save() {
    let mut h = harness();
    let before = labels(&h);
    h.state_mut().send(AppCommand::DeleteLabel(LIVER));
    settle(&mut h);
    assert_eq!(count(&labels(&h), LIVER), 0);
    let table = |h: &Harness<'static, App>| h.state().scene().and_then(|s| s.labels.as_ref()).expect("labels").table.clone();
    assert!(!table(&h).entries.contains_key(&LIVER), "the row is gone");
    assert!(h.state().unsaved_labels());
    h.state_mut().send(AppCommand::Undo);
    settle(&mut h);
    assert_eq!(labels(&h), before);
    assert_eq!(table(&h).name_of(LIVER), Some("liver"), "back with its name");

    // Quitting with changed labels asks first; Cancel keeps the window.
    h.state_mut().send(AppCommand::Quit);
    h.run();
    h.get_by_label("Save the changed labels?");
    h.get_by_label("Cancel").click();
    h.run();
    assert!(h.state().rt.unsaved.asking.is_none() && !h.state().rt.unsaved.may_close);
    // Don't save: the window may close.
    h.state_mut().send(AppCommand::Quit);
    h.run();
    h.get_by_label("Don't save").click();
    h.run();
    assert!(h.state().rt.unsaved.may_close);
}

#[test]
fn the_autosave_is_offered_again_and_restores_the_labels() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut h = harness();
    h.state_mut().rt.unsaved.dir = Some(dir.path().to_path_buf());
    h.state_mut().send(AppCommand::DeleteLabel(LIVER));
    settle(&mut h);
    let changed = labels(&h);
    let t0 = std::time::Instant::now();
    while std::fs::read_dir(dir.path()).map(|d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".seg.nrrd")).count()).unwrap_or(0) == 0 {
        assert!(t0.elapsed().as_secs() < 30, "no autosave written");
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(h); // a crash: nothing saved

    let mut h = Harness::builder().with_size([1280.0, 800.0]).wgpu().build_eframe({
        let (ct, labels) = demo();
        let d = dir.path().to_path_buf();
        move |cc| {
            let mut app = App::new(cc, Startup { volume: Some(ct), labels: Some(labels), device: Some("CPU".into()), ..Default::default() });
            app.rt.unsaved.dir = Some(d);
            app
        }
    });
    wait_for_loader(&mut h);
    h.get_by_label("Restore unsaved labels?");
    h.get_by_label("Restore").click();
    settle(&mut h);
    assert_eq!(labels(&h), changed, "the restored labels are the changed ones");
    assert!(h.state().unsaved_labels(), "restored labels still need saving");
}

#[test]
fn the_probe_shows_the_voxel_under_the_pointer_now() {
    let mut h = harness();
    let r = view_rect(&h, ViewPlane::Axial);
    for p in [r.center() + vec2(-40.0, 20.0), r.center() + vec2(35.0, -25.0)] {
        h.hover_at(p);
        h.step(); // one frame only: the status bar must already show this point
        let probe = h.state().rt.hover.clone().expect("hovering");
        let ijk = [probe.voxel.x().round() as usize, probe.voxel.y().round() as usize, probe.voxel.z().round() as usize];
        h.get_by_label_contains(&format!("voxel ({}, {}, {})", ijk[0], ijk[1], ijk[2]));
    }
}

#[test]
fn export_surfaces_writes_the_active_label_in_lps() {
    let mut h = harness();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("liver.ply");
    // Nothing active yet: a message saying what to do, no file.
    h.state_mut().send(AppCommand::ExportSurfaces(out.clone()));
    h.run();
    assert!(h.state().messages().iter().any(|m| m.is_error && m.text.contains("choose the label")), "{:?}", h.state().messages());
    assert!(!out.exists());
    h.state_mut().send(AppCommand::SetClickTarget(Some(LIVER)));
    h.state_mut().send(AppCommand::ExportSurfaces(out.clone()));
    let t0 = std::time::Instant::now();
    while h.state().rt.export.running.is_some() || t0.elapsed().as_millis() < 50 {
        assert!(t0.elapsed().as_secs() < 60, "export did not finish");
        std::thread::sleep(std::time::Duration::from_millis(10));
        h.step();
    }
    assert!(h.state().messages().iter().any(|m| !m.is_error && m.text.contains("liver.ply")), "{:?}", h.state().messages());
    let mesh = sam3d_studio::shape::read_ply(&out).expect("a PLY");
    assert!(mesh.triangles.len() > 1000);
    // LPS (the default): x is −R, y is −A. The liver's voxels bound the surface within a voxel.
    let l = labels(&h);
    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
    for ((_, j, i), _) in l.indexed_iter().filter(|(_, v)| **v == LIVER) {
        let (r, a) = (ORIGIN[0] + i as f64 * SPACING, ORIGIN[1] + j as f64 * SPACING);
        lo = [lo[0].min(r), lo[1].min(a)];
        hi = [hi[0].max(r), hi[1].max(a)];
    }
    for v in &mesh.vertices {
        let (r, a) = (-f64::from(v[0]), -f64::from(v[1]));
        assert!(r >= lo[0] - SPACING && r <= hi[0] + SPACING && a >= lo[1] - SPACING && a <= hi[1] + SPACING, "vertex {v:?} outside the liver's box");
    }
}

fn wait_candidate(h: &mut Harness<'static, App>, job_after: u64) -> sam3d_studio::app::click3d::Candidate {
    let t0 = std::time::Instant::now();
    loop {
        h.step();
        if let Some(c) = h.state().rt.click.candidate.as_ref().filter(|c| c.job > job_after)
            && !h.state().is_clicking()
        {
            return c.clone();
        }
        assert!(t0.elapsed().as_secs() < 60, "no result: {:?}", h.state().messages());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn region_growing_takes_a_negative_click_and_a_box() {
    let mut h = harness();
    let l = labels(&h);
    h.state_mut().send(AppCommand::SetClickMethod(ClickMethod::RegionGrowing));
    h.state_mut().send(AppCommand::SetTool(Tool::ClickTo3d));
    let [k, j, i] = interior_voxel(&l, LIVER);
    let at = ras_of_voxel(i as f64, j as f64, k as f64);
    h.state_mut().send(AppCommand::PromptAt { at, negative: false });
    let first = wait_candidate(&mut h, 0);
    assert!(first.mask[[k, j, i]]);
    // The result's voxel farthest from the click (region growing leaks on this CT): a negative
    // click there takes that part away and keeps the clicked one.
    let far = first.mask.indexed_iter().filter(|(_, m)| **m).map(|((a, b, c), _)| [a, b, c]).max_by_key(|p| (0..3).map(|d| (p[d] as i64 - [k, j, i][d] as i64).pow(2)).sum::<i64>()).expect("voxels");
    let far_ras = ras_of_voxel(far[2] as f64, far[1] as f64, far[0] as f64);
    assert!(far_ras.distance(&at) > 30.0, "the result reaches {:.0} mm from the click", far_ras.distance(&at));
    h.state_mut().send(AppCommand::PromptAt { at: far_ras, negative: true });
    let cut = wait_candidate(&mut h, first.job);
    assert!(!cut.mask[[far[0], far[1], far[2]]], "the negative click's voxel is gone");
    assert!(cut.mask[[k, j, i]], "the positive click's voxel stays");
    assert!(cut.voxels < first.voxels, "{} → {}", first.voxels, cut.voxels);
    // Nothing new appears: a negative click only removes.
    assert!(cut.mask.iter().zip(first.mask.iter()).all(|(&c, &f)| !c || f));

    // Reject; a box around the liver's part of the axial slice starts a new result inside it.
    h.state_mut().send(AppCommand::RejectCandidate);
    h.run();
    let (lo, hi) = (ras_of_voxel(i as f64 - 8.0, j as f64 - 8.0, k as f64), ras_of_voxel(i as f64 + 8.0, j as f64 + 8.0, k as f64));
    h.state_mut().send(AppCommand::BoxDrag { plane: ViewPlane::Axial, at: lo, first: true });
    h.state_mut().send(AppCommand::BoxDrag { plane: ViewPlane::Axial, at: hi, first: false });
    h.state_mut().send(AppCommand::BoxDone);
    let boxed = wait_candidate(&mut h, cut.job);
    assert!(boxed.voxels > 0 && boxed.mask[[k, j, i]], "the box's centre is the liver voxel");
    for ((_, jj, ii), _) in boxed.mask.indexed_iter().filter(|(_, m)| **m) {
        assert!((i - 8..=i + 8).contains(&ii) && (j - 8..=j + 8).contains(&jj), "voxel ({ii}, {jj}) outside the box");
    }
    let axial_box = h.state().rt.click.object_box.expect("the result holds its box");
    assert_eq!(axial_box.open, Some(ViewPlane::Axial), "drawn on one slice: open along S");
    assert!(boxed.mask.indexed_iter().any(|((kk, _, _), m)| *m && kk.abs_diff(k) > 3), "the 2D box leaves the liver's height open");

    // A second box, on the coronal view, closes the first into a 3D box: R from it, A from the
    // axial box, S from it. The refined result lies inside the 3D box.
    let (lo, hi) = (ras_of_voxel(i as f64 - 8.0, j as f64, k as f64 - 3.0), ras_of_voxel(i as f64 + 8.0, j as f64, k as f64 + 3.0));
    h.state_mut().send(AppCommand::BoxDrag { plane: ViewPlane::Coronal, at: lo, first: true });
    h.state_mut().send(AppCommand::BoxDrag { plane: ViewPlane::Coronal, at: hi, first: false });
    h.state_mut().send(AppCommand::BoxDone);
    let closed = wait_candidate(&mut h, boxed.job);
    let bx = h.state().rt.click.object_box.expect("a box");
    assert_eq!(bx.open, None, "two views make a 3D box");
    assert!(closed.voxels > 0 && closed.mask[[k, j, i]]);
    for ((kk, jj, ii), _) in closed.mask.indexed_iter().filter(|(_, m)| **m) {
        assert!(
            (i - 8..=i + 8).contains(&ii) && (j - 8..=j + 8).contains(&jj) && (k - 3..=k + 3).contains(&kk),
            "voxel ({ii}, {jj}, {kk}) outside the 3D box"
        );
    }
    assert!(closed.voxels < boxed.voxels, "{} → {}", boxed.voxels, closed.voxels);
}
