//! End to end on the tiny preset, CPU: session, worker thread, and the `infer` command.
//! The weights are random, saved to a temporary checkpoint only for these tests.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_studio::engine::{Command, Engine, EngineOptions, Event, InferRequest, NoHooks, Session, Stage};
use sam3d_studio::geometry::{RasFromVoxel, RasMm, ViewPlane, VoxelIjk};
use sam3d_studio::model::{Config, Model};
use sam3d_studio::volume::{LabelMap, OnGrid, Volume};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tch::Device;

/// A CT-like volume (LPS-stored, anisotropic) with a 25 mm "organ" at 60 HU in -100 HU fat.
fn ct_volume() -> Volume {
    let lin = Matrix3::from_diagonal(&Vector3::new(-2.0, -2.0, 4.0));
    let a = RasFromVoxel::from_parts(lin, Vector3::new(40.0, 40.0, -40.0));
    let data = Array3::from_shape_fn((20, 40, 40), |(k, j, i)| {
        let p = a.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
        if p.distance(&RasMm::new(0.0, 0.0, 0.0)) < 25.0 { 60.0 } else { -100.0 }
    });
    let mut data = data;
    data[[0, 0, 0]] = -1000.0; // air somewhere, so the modality guess says CT
    data[[0, 0, 1]] = 1000.0;
    Volume::new(data, a).expect("volume")
}

struct Fixture {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    weights: PathBuf,
    volume_path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().to_path_buf();
    tch::manual_seed(11);
    let mut m = Model::new(Config::tiny(), Device::Cpu);
    let weights = d.join("tiny-random.safetensors");
    m.save_weights(&weights).expect("save");
    let volume_path = d.join("ct.nii.gz");
    ct_volume().save(&volume_path, None).expect("save volume");
    Fixture { _dir: dir, dir: d, weights, volume_path }
}

#[test]
fn session_gives_a_mask_on_the_source_grid_with_timings() {
    let f = fixture();
    let vol = Arc::new(Volume::load(&f.volume_path).expect("load"));
    let mut s = Session::new();
    s.load_weights(&f.weights, Device::Cpu).expect("weights");
    s.set_volume(vol.clone(), None).expect("volume");
    assert_eq!(s.prepared().map(|p| p.modality), Some(sam3d_studio::volume::Modality::Ct));
    for plane in ViewPlane::ALL {
        let r = s.infer(&InferRequest { click: RasMm::new(1.0, -2.0, 3.0), plane, mask2d: None }, &mut NoHooks).expect("infer");
        assert_eq!(r.mask.shape(), vol.shape());
        assert!(r.mask.ras_from_voxel.max_abs_diff(&vol.ras_from_voxel) == 0.0);
        assert_eq!(r.voxel_count, r.mask.data.iter().filter(|&&x| x == 1).count());
        assert!((r.volume_ml - r.voxel_count as f64 * 16.0 / 1000.0).abs() < 1e-9);
        let t = &r.timings;
        assert!(t.preprocess_secs > 0.0 && t.mask2d_secs > 0.0 && t.shape_secs > 0.0 && t.postprocess_secs > 0.0);
        assert!(t.total_secs >= t.preprocess_secs + t.mask2d_secs + t.shape_secs + t.postprocess_secs);
        assert_eq!(r.mask2d.dim(), (32, 32));
        // Mesh: watertight, vertices inside the mask's extent (RAS mm), present iff the mask is.
        assert_eq!(r.mesh.is_some(), r.voxel_count > 0);
        if let Some(m) = &r.mesh {
            assert!(m.edge_report().is_watertight(), "{:?}", m.edge_report());
            let inv = vol.ras_from_voxel.try_inverse().expect("invertible");
            let n = vol.shape().ijk();
            for v in &m.vertices {
                let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
                assert!((0..3).all(|d| p.v[d] > -0.51 && p.v[d] < n[d] as f64 - 0.49), "vertex outside the grid: {p:?}");
            }
        }
        assert!(t.mesh_secs.is_some());
    }
    // A user-drawn 2D mask of the wrong size is refused with a message, not a panic.
    let bad = ndarray::Array2::from_elem((8, 8), true);
    let e = s.infer(&InferRequest { click: RasMm::new(0.0, 0.0, 0.0), plane: ViewPlane::Axial, mask2d: Some(bad) }, &mut NoHooks);
    assert!(e.expect_err("size").to_string().contains("8×8"));
}

fn wait_for(engine: &Engine, mut pred: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let e = engine.events().recv_timeout(Duration::from_secs(60)).expect("worker answered within 60 s");
        let done = pred(&e);
        seen.push(e);
        if done {
            return seen;
        }
    }
}

#[test]
fn worker_survives_failures_panics_and_cancels() {
    let f = fixture();
    let repaints = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r2 = repaints.clone();
    let engine = Engine::spawn(
        EngineOptions { device: Device::Cpu, threads: Some(1) },
        Box::new(move || {
            r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }),
    )
    .expect("spawn");
    wait_for(&engine, |e| matches!(e, Event::Ready { .. }));

    // Inference before any weights: a failure that says how to get weights.
    let job = engine.next_job();
    engine.send(Command::Infer { job, click: RasMm::new(0.0, 0.0, 0.0), plane: ViewPlane::Axial, mask2d: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Failed { .. }));
    assert!(matches!(ev.last(), Some(Event::Failed { job: Some(j), message }) if *j == job && message.contains("train")), "{ev:?}");

    // A missing weights file.
    engine.send(Command::LoadWeights(f.dir.join("nope.safetensors"))).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Failed { .. }));
    assert!(matches!(ev.last(), Some(Event::Failed { message, .. }) if message.contains("nope.safetensors")));

    // A panic inside the worker.
    engine.send(Command::DebugPanic).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Failed { .. }));
    assert!(matches!(ev.last(), Some(Event::Failed { message, .. }) if message.contains("DebugPanic")));

    engine.send(Command::LoadWeights(f.weights.clone())).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::ModelLoaded(_) | Event::Failed { .. }));
    assert!(matches!(ev.last(), Some(Event::ModelLoaded(info)) if info.preset == "tiny"), "{ev:?}");
    let vol = Arc::new(ct_volume());
    engine.send(Command::SetVolume { volume_id: 7, volume: vol.clone(), modality: None }).expect("send");
    wait_for(&engine, |e| matches!(e, Event::VolumeReady { volume_id: 7, .. }));

    // A click outside the volume fails with the reason.
    let job = engine.next_job();
    engine.send(Command::Infer { job, click: RasMm::new(0.0, 0.0, 500.0), plane: ViewPlane::Axial, mask2d: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Failed { .. } | Event::Result { .. }));
    assert!(matches!(ev.last(), Some(Event::Failed { message, .. }) if message.contains("outside the volume")), "{ev:?}");

    // A cancelled job.
    let job = engine.next_job();
    engine.cancel(job);
    engine.send(Command::Infer { job, click: RasMm::new(0.0, 0.0, 0.0), plane: ViewPlane::Axial, mask2d: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Cancelled { .. } | Event::Result { .. }));
    assert!(matches!(ev.last(), Some(Event::Cancelled { job: j }) if *j == job), "{ev:?}");

    // And then a normal click: progress, the 2D preview first, then the result.
    let job = engine.next_job();
    engine.send(Command::Infer { job, click: RasMm::new(0.0, 0.0, 0.0), plane: ViewPlane::Coronal, mask2d: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Result { .. } | Event::Failed { .. }));
    let preview_at = ev.iter().position(|e| matches!(e, Event::MaskPreview { .. })).expect("a 2D preview");
    let result_at = ev.iter().position(|e| matches!(e, Event::Result { .. })).expect("a result");
    assert!(preview_at < result_at);
    assert!(ev.iter().any(|e| matches!(e, Event::Progress { stage: Stage::Shape, .. })));
    let Some(Event::Result { result, .. }) = ev.last() else { panic!("{ev:?}") };
    assert_eq!(result.mask.shape(), vol.shape());
    assert!(repaints.load(std::sync::atomic::Ordering::Relaxed) >= ev.len());
    engine.shutdown();
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sam3d-studio")
}

fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin()).args(args).output().expect("run binary")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn infer_command_writes_the_mask_on_the_input_grid() {
    let f = fixture();
    let out = f.dir.join("mask.nii.gz");
    let mesh = f.dir.join("organ.stl");
    let o = run(&[
        "infer", s(&f.volume_path), "--click-ras", "-1.5,2,-3", "--plane", "sagittal", "--out-mask", s(&out), "--out-mesh", s(&mesh),
        "--weights", s(&f.weights), "--device", "cpu", "--threads", "1", "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON object");
    for k in ["preprocess_secs", "mask2d_secs", "shape_secs", "postprocess_secs", "total_secs"] {
        assert!(j["timings"][k].as_f64().is_some_and(|x| x > 0.0), "{k}: {j}");
    }
    let vol = Volume::load(&f.volume_path).expect("vol");
    let mask = LabelMap::load(&out).expect("mask");
    mask.check_matches(&vol, &out).expect("same grid");
    assert_eq!(j["voxel_count"].as_u64(), Some(mask.data.iter().filter(|&&x| x == 1).count() as u64));
    assert!(j["volume_ml"].as_f64().is_some());
    // The mesh: a binary STL (80-byte header, count, 50 bytes per triangle) with as many
    // triangles as reported, and some when the mask is not empty.
    let stl = std::fs::read(&mesh).expect("mesh written");
    let n = u32::from_le_bytes([stl[80], stl[81], stl[82], stl[83]]) as usize;
    assert_eq!(stl.len(), 84 + 50 * n);
    assert_eq!(j["mesh_triangles"].as_u64(), Some(n as u64));
    assert_eq!(n > 0, mask.data.iter().any(|&x| x == 1), "{j}");
    assert!(j["timings"]["mesh_secs"].as_f64().is_some());
}

#[test]
fn infer_command_fails_cleanly() {
    let f = fixture();
    let out = f.dir.join("never.nii.gz");
    let vol = s(&f.volume_path);
    // (A file that is not a checkpoint is covered in model_lora.rs; each run here loads libtorch.)
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--click-ras", "0,0,900", "--weights", s(&f.weights)], "outside the volume"),
        (vec!["--click-ras", "0,0,0", "--weights", "/nonexistent/w.safetensors"], "w.safetensors"),
    ];
    for (extra, want) in cases {
        let mut args = vec!["infer", vol, "--out-mask", s(&out), "--device", "cpu"];
        args.extend(extra.iter());
        let o = run(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(!out.exists(), "no output file after a failure");
    }
    // No weights given and none shipped: say how to train them.
    let o = run(&["infer", vol, "--click-ras", "0,0,0", "--out-mask", s(&out)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("sam3d-studio train"));
    assert!(!out.exists());
}

#[test]
fn session_with_volume_context() {
    let mut f = Config::tiny().into_file();
    f.volume_context.enabled = true;
    tch::manual_seed(3);
    let m = Model::new(f.validate().expect("valid"), Device::Cpu);
    let vol = Arc::new(ct_volume());
    let mut s = Session::new();
    s.set_model(m).expect("model");
    s.set_volume(vol.clone(), Some(sam3d_studio::volume::Modality::Ct)).expect("volume");
    let r = s.infer(&InferRequest { click: RasMm::new(0.0, 0.0, 0.0), plane: ViewPlane::Axial, mask2d: None }, &mut NoHooks).expect("infer");
    assert_eq!(r.mask.shape(), vol.shape());
}
