//! The fine-tuning panel end to end in the real app (egui_kittest): a LoRA run on the open scan
//! and its label map, trained by `sam3d-studio-engine train` in a child process with one label
//! held out; the panel follows its loss per step from the run's log; Compare measures the base
//! weights and the adapter on the held-out label with `eval`; "Use this adapter" loads it into
//! the engine; a run stopped midway resumes from its checkpoint and finishes with every step
//! once. The weights are a tiny random checkpoint made here (not a trained model), the scan a
//! small phantom.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use sam3d_studio::app::finetune::{CompareState, PanelAction, RunState};
use sam3d_studio::app::{App, AppCommand, Startup};
use sam3d_engine::engine::train::TrainConfig;
use sam3d_studio::volume::Modality;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A small CT-like phantom (`case_000.nii.gz` + labels + names) and tiny random weights.
fn fixtures(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    sam3d_engine::engine::train::write_phantoms(&dir.join("scan"), 1, 21, Modality::Ct).expect("phantom");
    tch::manual_seed(5);
    let weights = dir.join("tiny-random.safetensors");
    sam3d_engine::model::Model::new(sam3d_engine::model::Config::tiny(), tch::Device::Cpu).save_weights(&weights).expect("weights");
    (dir.join("scan/case_000.nii.gz"), dir.join("scan/case_000_labels.nii.gz"), weights)
}

fn harness(volume: PathBuf, labels: PathBuf, weights: PathBuf) -> Harness<'static, App> {
    let startup = Startup { volume: Some(volume), labels: Some(labels), device: Some("CPU".into()), weights: Some(weights), at: None };
    let mut h = Harness::builder().with_size([1280.0, 860.0]).with_step_dt(1.0 / 60.0).with_max_steps(120).wgpu().build_eframe(move |cc| App::new(cc, startup));
    wait_until(&mut h, 90, "the scan, its labels and the weights load", |a| a.rt.model.is_some() && !a.is_busy() && a.scene().is_some_and(|s| s.labels.is_some()));
    h
}

fn wait_until(h: &mut Harness<'static, App>, secs: u64, what: &str, done: impl Fn(&App) -> bool) {
    let t0 = Instant::now();
    while !done(h.state()) {
        assert!(t0.elapsed() < Duration::from_secs(secs), "{what}: timed out; messages {:?}; run {:?}", h.state().messages(), h.state().rt.finetune.run);
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
}

fn run_state(a: &App) -> Option<RunState> {
    a.rt.finetune.run.as_ref().map(|r| r.state.clone())
}

#[test]
fn a_lora_run_on_the_open_scan_trains_compares_and_loads() {
    let dir = tempfile::tempdir().expect("tmp");
    let (volume, labels, weights) = fixtures(dir.path());
    let mut h = harness(volume.clone(), labels.clone(), weights.clone());
    h.state_mut().send(AppCommand::OpenFineTune);
    h.run();
    // The panel offers the scan's labels and a fresh run folder named after the scan.
    let app = h.state();
    assert!(app.rt.finetune.open);
    assert!(app.rt.finetune.dir_text.contains("case_000-"), "{}", app.rt.finetune.dir_text);
    let present: Vec<u16> =
        app.scene().expect("scene").labels.as_ref().expect("labels").table.entries.iter().filter(|(id, e)| **id != 0 && e.voxels > 0).map(|(id, _)| *id).collect();
    assert!(present.len() >= 5, "{present:?}");
    h.get_by_label("Start");
    assert!(h.query_by_label("Compare base vs adapter").is_none(), "Compare waits for a finished run");

    // Hold the second label out; a short run in a folder of the test's.
    let held = present[1];
    let run_dir = dir.path().join("run");
    {
        let app = h.state_mut();
        app.rt.finetune.held_out.insert(held);
        app.rt.finetune.dir_text = run_dir.display().to_string();
        app.finetune.steps = 6;
        app.finetune.batch = 2;
        app.finetune.rank = 2;
        app.finetune_action(PanelAction::Start);
    }
    h.step();
    assert!(h.state().rt.finetune.is_active(), "{:?}", h.state().messages());
    wait_until(&mut h, 180, "the run finishes", |a| matches!(run_state(a), Some(RunState::Finished | RunState::Failed(_))));
    let run = h.state().rt.finetune.run.as_ref().expect("run");
    assert_eq!(run.state, RunState::Finished, "{:?}", h.state().messages());
    // Every step's loss, in order, as the run's log has it; the last step's validation.
    let steps: Vec<u64> = run.losses.iter().map(|l| l[0] as u64).collect();
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    assert!(run.losses.iter().all(|l| l[1].is_finite() && l[1] > 0.0), "{:?}", run.losses);
    assert_eq!(run.validations.len(), 1, "{:?}", run.validations);
    assert_eq!(run.validations[0][0], 6.0, "{:?}", run.validations);
    // The panel shows the run's own validation figure (the log's), not something of its own.
    let logged: Vec<f64> = std::fs::read_to_string(run_dir.join("log.jsonl"))
        .expect("log")
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("validation").and_then(|val| val.get("dice_3d_grid_pred2d")).and_then(|d| d.as_f64()))
        .collect();
    assert_eq!(logged.last().copied(), Some(run.validations[0][1]), "{:?} vs the log's {logged:?}", run.validations);
    assert_eq!(run.done, 6);
    // What was trained: the scan (linked), the label map as the viewer had it, the names, and a
    // config that holds the label out, names the base and can be run again from a terminal.
    let data = run_dir.join("data");
    let staged = sam3d_studio::volume::open_labels(&data.join("case_000_labels.nii.gz")).expect("staged labels");
    let shown = h.state().scene().expect("scene").labels.as_ref().expect("labels").map.clone();
    assert_eq!(staged.data, shown.data);
    assert!(data.join("case_000.nii.gz").exists() && data.join("labels.tsv").exists());
    let cfg = TrainConfig::load(&run_dir.join("config.toml")).expect("config");
    assert_eq!(cfg.model.base_checkpoint.as_deref(), Some(weights.as_path()));
    assert_eq!(cfg.data.holdout.len(), 1);
    assert_eq!((cfg.data.holdout[0].case.as_str(), cfg.data.holdout[0].classes.clone()), ("case_000", vec![held]));
    assert_eq!((cfg.train.steps, cfg.train.batch, cfg.lora.as_ref().map(|l| (l.enabled, l.config.rank))), (6, 2, Some((true, 2))));
    assert!(run_dir.join("adapter.safetensors").is_file());
    assert!(h.state().messages().iter().any(|m| m.text.starts_with("Fine-tuning finished")), "{:?}", h.state().messages());

    // Compare: the base and the adapter, each clicked on the held-out label by `eval`.
    h.run();
    h.get_by_label("Compare base vs adapter");
    h.state_mut().finetune_action(PanelAction::Compare);
    h.step();
    wait_until(&mut h, 180, "the comparison ends", |a| a.rt.finetune.run.as_ref().is_some_and(|r| !matches!(r.compare, Some(CompareState::Running { .. }))));
    let run = h.state().rt.finetune.run.as_ref().expect("run");
    match &run.compare {
        Some(CompareState::Done(c)) => {
            let rows = &c.rows;
            assert_eq!(c.base_adapter, None, "a CT gets no MR adapter");
            assert_eq!(rows.len(), 1, "{rows:?}");
            assert_eq!(rows[0].label, held);
            assert!(rows[0].name.as_deref().is_some_and(|n| !n.is_empty()), "{rows:?}");
        }
        other => panic!("compare: {other:?}"),
    }
    let report = |which: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run_dir.join(format!("compare_{which}.json"))).expect("report")).expect("json")
    };
    // Each Dice in the panel is the one `eval` reported for the held-out label.
    let eval_dice = |which: &str| {
        report(which)["methods"]["model"]["by_label"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["label"].as_u64() == Some(held as u64)))
            .and_then(|l| l["mean_dice"].as_f64())
            .expect("the held-out label's mean Dice in the report")
    };
    if let Some(CompareState::Done(c)) = &run.compare {
        assert_eq!((c.rows[0].base_dice, c.rows[0].adapter_dice), (eval_dice("base"), eval_dice("adapter")));
    }
    assert!(report("base")["adapter"].is_null());
    assert!(report("adapter")["adapter"].as_str().is_some_and(|a| a.ends_with("adapter.safetensors")));
    h.run();
    h.get_by_label("adapter Dice");

    // Use this adapter: the engine puts it on the loaded weights.
    h.state_mut().finetune_action(PanelAction::UseAdapter(run_dir.join("adapter.safetensors")));
    wait_until(&mut h, 60, "the adapter loads", |a| a.rt.adapter.is_some());
    assert!(h.state().rt.adapter.as_deref().is_some_and(|a| a.starts_with("adapter.safetensors")), "{:?}", h.state().rt.adapter);
}

#[test]
fn a_stopped_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("tmp");
    let (volume, labels, weights) = fixtures(dir.path());
    let mut h = harness(volume, labels, weights);
    h.state_mut().send(AppCommand::OpenFineTune);
    h.run();
    let run_dir = dir.path().join("run");
    {
        let app = h.state_mut();
        app.rt.finetune.dir_text = run_dir.display().to_string();
        app.finetune.steps = 150;
        app.finetune.batch = 1;
        app.finetune.rank = 2;
        app.finetune_action(PanelAction::Start);
    }
    // Stop before the first periodic checkpoint (every 15 steps here): the run writes one where
    // it stops.
    wait_until(&mut h, 180, "the run trains a few steps", |a| a.rt.finetune.run.as_ref().is_some_and(|r| r.done >= 3 || r.state != RunState::Training && r.state != RunState::Preparing));
    h.state_mut().finetune_action(PanelAction::Stop);
    wait_until(&mut h, 30, "the run stops", |a| !a.rt.finetune.is_active());
    let stopped_at = h.state().rt.finetune.run.as_ref().expect("run").done;
    assert_eq!(run_state(h.state()), Some(RunState::Stopped), "{:?}", h.state().messages());
    assert!(stopped_at < 15, "stopped at {stopped_at}, past the first periodic checkpoint");
    assert!(!run_dir.join(sam3d_studio::train_config::STOP_REQUEST_FILE).exists(), "the run removed its stop request");
    assert!(run_dir.join("state.safetensors").is_file(), "a checkpoint was written before the stop");
    // The panel offers Resume.
    h.run();
    h.get_by_label("Resume");
    h.state_mut().finetune_action(PanelAction::Resume);
    h.step();
    wait_until(&mut h, 240, "the resumed run finishes", |a| matches!(run_state(a), Some(RunState::Finished | RunState::Failed(_))));
    let run = h.state().rt.finetune.run.as_ref().expect("run");
    assert_eq!(run.state, RunState::Finished, "{:?}", h.state().messages());
    // Every step once, in order: the steps after the checkpoint were trained again and replace
    // the ones the stopped stretch had logged.
    let steps: Vec<u64> = run.losses.iter().map(|l| l[0] as u64).collect();
    assert_eq!(steps, (1..=150).collect::<Vec<_>>());
    let logged = std::fs::read_to_string(run_dir.join("log.jsonl")).expect("log");
    let log_steps: Vec<u64> = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("loss").is_some())
        .filter_map(|v| v["step"].as_u64())
        .collect();
    assert_eq!(log_steps, steps);
}
