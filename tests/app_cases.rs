//! The case browser in the real app (egui_kittest): an `eval` report of two phantoms opens
//! worst click first; opening a click opens its case's scan and label map, puts the crosshair
//! on the click and runs "3D from click" there with the row's method, whose result is measured
//! against the label under the click.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::cases::SortBy;
use sam3d_studio::app::{App, AppCommand, ClickMethod, Startup};
use sam3d_engine::engine::eval::{EvalOptions, evaluate, write_report};
use sam3d_engine::engine::train::write_phantoms;
use sam3d_studio::volume::Modality;
use std::time::{Duration, Instant};

fn wait_until(h: &mut Harness<'static, App>, secs: u64, what: &str, done: impl Fn(&App) -> bool) {
    let t0 = Instant::now();
    while !done(h.state()) {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: timed out; messages {:?}", h.state().messages());
        std::thread::sleep(Duration::from_millis(10));
        h.step();
    }
}

#[test]
fn a_report_opens_worst_first_and_a_click_opens_its_case() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    write_phantoms(&data, 2, 31, Modality::Ct).expect("phantoms");
    // The region-growing baseline alone (no weights): what `eval --baseline-only` writes.
    let opts = EvalOptions {
        data: data.clone(),
        weights: None,
        adapter: None,
        mr_adapter: None,
        device: tch::Device::Cpu,
        grow: Default::default(),
        labels: vec![],
        context: true,
        reference_mask2d: false,
        baseline: true,
        pipeline: sam3d_studio::options::PipelineOptions { refine: false, extend: false, join: false, ..Default::default() },
        click_depth: 1.0,
        clicks: 1,
    };
    let (rows, summary) = evaluate(&opts, &|_| {}, &|| {}).expect("eval");
    let report = tmp.path().join("REPORT.csv");
    write_report(&report, &rows, &summary).expect("report");

    let startup = Startup { volume: None, labels: None, device: Some("CPU".into()), weights: None, at: None };
    let mut h = Harness::builder().with_size([1280.0, 860.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    h.state_mut().send(AppCommand::OpenReport(report.clone()));
    h.step();
    wait_until(&mut h, 30, "the report is read", |a| !a.rt.cases.is_loading());
    h.run();
    let b = &h.state().rt.cases;
    let r = b.report.as_ref().expect("report");
    assert_eq!(r.rows.len(), rows.len());
    assert_eq!(r.pairs.len(), 2);
    assert_eq!(r.names.get(&1).map(String::as_str), Some("spleen"), "names from the phantoms' labels.tsv");
    assert_eq!((b.sort, b.ascending, b.method.as_deref()), (SortBy::Dice, true, None));
    let order = b.order();
    let worst = rows.iter().map(|r| r.metrics.dice).fold(f64::INFINITY, f64::min);
    assert_eq!(r.rows[order[0]].dice, (worst * 1e5).round() / 1e5, "worst click first");
    assert!(order.windows(2).all(|w| r.rows[w[0]].dice <= r.rows[w[1]].dice));
    h.get_by_label("Cases: REPORT.csv");

    // Open the worst click: its case, the crosshair on the click, region growing there; the
    // viewer gives what eval measured (here: nothing at all, when the worst click found nothing).
    let open = |h: &mut Harness<'static, App>, i: usize| {
        h.state_mut().send(AppCommand::OpenCaseRow(i));
        h.step();
        wait_until(h, 60, "the case opens and its click is done", |a| {
            a.scene().is_some_and(|s| s.labels.is_some()) && !a.is_busy() && !a.is_clicking() && a.rt.pending_at.is_none() && !a.is_comparing()
        });
    };
    let rows_now = r.rows.clone();
    open(&mut h, order[0]);
    let row = &rows_now[order[0]];
    let app = h.state();
    let scene = app.scene().expect("scene");
    assert!(scene.path.ends_with(format!("{}.nii.gz", row.case)), "{}", scene.path.display());
    assert!((scene.crosshair.x() - row.click.x()).abs() < 1e-6 && (scene.crosshair.z() - row.click.z()).abs() < 1e-6);
    assert_eq!(app.click_method, ClickMethod::RegionGrowing);
    assert_eq!(app.rt.active_view, row.plane);
    assert_eq!(app.rt.cases.selected, Some(order[0]));
    if row.pred_voxels == 0 {
        assert!(app.rt.click.candidate.is_none());
        assert!(app.messages().iter().any(|m| m.text.contains("nothing was segmented")), "{:?}", app.messages());
    }
    // The worst click that found something: its result is eval's, and is measured against the
    // label under the click.
    let k = *order.iter().find(|&&i| rows_now[i].pred_voxels > 0).expect("a click that segmented something");
    open(&mut h, k);
    let row = &rows_now[k];
    let app = h.state();
    assert!(app.scene().expect("scene").path.ends_with(format!("{}.nii.gz", row.case)));
    let cand = app.rt.click.candidate.as_ref().unwrap_or_else(|| panic!("no result at the click (eval Dice {}): {:?}", row.dice, app.messages()));
    let labels = sam3d_studio::volume::open_labels(&data.join(format!("{}_labels.nii.gz", row.case))).expect("labels");
    let truth = labels.data.iter().filter(|&&v| v == row.label).count();
    let inter = labels.data.iter().zip(cand.mask.iter()).filter(|(l, m)| **l == row.label && **m).count();
    let dice = 2.0 * inter as f64 / (truth + cand.voxels) as f64;
    assert!((dice - row.dice).abs() < 1e-3, "the viewer's result is eval's: Dice {dice} against {}", row.dice);
    let compared = cand.compared.as_ref().expect("measured against the label under the click");
    assert!((compared.metrics.dice - row.dice).abs() < 1e-3, "{compared:?}");

    // Another click on the case on screen: no reload, the crosshair moves and the click runs.
    let generation = h.state().scene().expect("scene").generation;
    let other = *order.iter().find(|&&i| i != k && rows_now[i].case == row.case && rows_now[i].pred_voxels > 0).expect("another click on this case");
    open(&mut h, other);
    let app = h.state();
    assert_eq!(app.scene().expect("scene").generation, generation, "the scan on screen is not opened again");
    let c = app.scene().expect("scene").crosshair;
    assert!((c.x() - rows_now[other].click.x()).abs() < 1e-6 && (c.y() - rows_now[other].click.y()).abs() < 1e-6);
    let cand = app.rt.click.candidate.as_ref().expect("a result at the other click");
    assert_eq!(cand.voxels as u64, rows_now[other].pred_voxels);

    // ] opens the next click in the browser's order ([ the previous one, from the last).
    let pos = order.iter().position(|&i| i == other).expect("in the order");
    let (next, key) = if pos + 1 < order.len() { (order[pos + 1], egui::Key::CloseBracket) } else { (order[pos - 1], egui::Key::OpenBracket) };
    h.key_press(key);
    h.step();
    wait_until(&mut h, 60, "the next click opens", |a| a.rt.cases.selected == Some(next) && !a.is_busy() && !a.is_clicking() && a.rt.pending_at.is_none());
    let c = h.state().scene().expect("scene").crosshair;
    assert!((c.x() - rows_now[next].click.x()).abs() < 1e-6 && (c.z() - rows_now[next].click.z()).abs() < 1e-6);
}
