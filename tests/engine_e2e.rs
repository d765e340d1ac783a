//! End to end on the tiny preset, CPU: session, worker thread, and the `infer` command.
//! The weights are random, saved to a temporary checkpoint only for these tests.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_engine::engine::{Command, Engine, EngineOptions, Event, InferRequest, NoHooks, Session, Stage};
use sam3d_studio::baseline::join::JoinOutcome;
use sam3d_studio::options::PlaneFusion;
use sam3d_studio::geometry::{RasFromVoxel, RasMm, ViewPlane, VoxelIjk};
use sam3d_studio::prompts::Prompt;
use sam3d_engine::model::{Config, Model};
use sam3d_studio::volume::{OnGrid, Volume};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tch::Device;

#[path = "common/adapter.rs"]
mod adapter;

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
    let vol = Arc::new(sam3d_studio::volume::open(&f.volume_path).expect("load"));
    let mut s = Session::new();
    s.load_weights(&f.weights, Device::Cpu).expect("weights");
    s.set_volume(vol.clone(), None).expect("volume");
    assert_eq!(s.prepared().map(|p| p.modality), Some(sam3d_studio::volume::Modality::Ct));
    for plane in ViewPlane::ALL {
        let r = s.infer(&InferRequest::click(RasMm::new(1.0, -2.0, 3.0), plane), &mut NoHooks).expect("infer");
        assert_eq!(r.mask.shape(), vol.shape());
        assert!(r.mask.ras_from_voxel.max_abs_diff(&vol.ras_from_voxel) == 0.0);
        assert_eq!(r.voxel_count, r.mask.data.iter().filter(|&&x| x == 1).count());
        assert!((r.volume_ml - r.voxel_count as f64 * 16.0 / 1000.0).abs() < 1e-9);
        let t = &r.timings;
        assert!(t.preprocess_secs > 0.0 && t.mask2d_secs > 0.0 && t.shape_secs > 0.0 && t.postprocess_secs > 0.0);
        assert!(t.total_secs >= t.preprocess_secs + t.mask2d_secs + t.shape_secs + t.postprocess_secs);
        assert_eq!(r.mask2d.dim(), (32, 32));
        // Mesh: watertight, vertices inside the mask's extent (RAS mm). The fixture's seed (11)
        // segments something on every plane, so the mesh is always checked.
        assert!(r.voxel_count > 0, "{plane:?}: the pinned random model segments nothing");
        let m = r.mesh.as_ref().expect("a mesh for a non-empty mask");
        assert!(m.edge_report().is_watertight(), "{:?}", m.edge_report());
        let inv = vol.ras_from_voxel.try_inverse().expect("invertible");
        let n = vol.shape().ijk();
        for v in &m.vertices {
            let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
            assert!((0..3).all(|d| p.v[d] > -0.51 && p.v[d] < n[d] as f64 - 0.49), "vertex outside the grid: {p:?}");
        }
        assert!(t.mesh_secs.is_some());
    }
    // A user-drawn 2D mask of the wrong size is refused with a message, not a panic.
    let bad = ndarray::Array2::from_elem((8, 8), true);
    let e = s.infer(&InferRequest { mask2d: Some(bad), ..InferRequest::click(RasMm::new(0.0, 0.0, 0.0), ViewPlane::Axial) }, &mut NoHooks);
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
        EngineOptions { device: Device::Cpu, threads: Some(1), mr_adapter: None },
        Box::new(move || {
            r2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }),
    )
    .expect("spawn");
    wait_for(&engine, |e| matches!(e, Event::Ready { .. }));

    // Inference before any weights: a failure that says how to get weights.
    let job = engine.next_job();
    engine.send(Command::Infer { job, prompt: Prompt::positive(RasMm::new(0.0, 0.0, 0.0)), plane: ViewPlane::Axial, mask2d: None, options: Default::default(), object: None }).expect("send");
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
    engine.send(Command::Infer { job, prompt: Prompt::positive(RasMm::new(0.0, 0.0, 500.0)), plane: ViewPlane::Axial, mask2d: None, options: Default::default(), object: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Failed { .. } | Event::Result { .. }));
    assert!(matches!(ev.last(), Some(Event::Failed { message, .. }) if message.contains("outside the volume")), "{ev:?}");

    // A cancelled job.
    let job = engine.next_job();
    engine.cancel(job);
    engine.send(Command::Infer { job, prompt: Prompt::positive(RasMm::new(0.0, 0.0, 0.0)), plane: ViewPlane::Axial, mask2d: None, options: Default::default(), object: None }).expect("send");
    let ev = wait_for(&engine, |e| matches!(e, Event::Cancelled { .. } | Event::Result { .. }));
    assert!(matches!(ev.last(), Some(Event::Cancelled { job: j }) if *j == job), "{ev:?}");

    // Cancelling "this and every earlier job" while one runs and two wait: whatever the timing,
    // every one of the three ends exactly once, as Cancelled or (the running one, if it finished
    // first) as a Result; the two waiting ones never run; no Failed.
    let jobs: Vec<u64> = (0..3).map(|_| engine.next_job()).collect();
    for &job in &jobs {
        engine.send(Command::Infer { job, prompt: Prompt::positive(RasMm::new(0.0, 0.0, 0.0)), plane: ViewPlane::Axial, mask2d: None, options: Default::default(), object: None }).expect("send");
    }
    engine.cancel(jobs[2]);
    let mut ended = Vec::new();
    let ev = wait_for(&engine, |e| {
        match e {
            Event::Cancelled { job } | Event::Result { job, .. } => ended.push(*job),
            Event::Failed { job, .. } => ended.push(job.unwrap_or(0)),
            _ => {}
        }
        ended.len() == 3
    });
    assert_eq!(ended, jobs, "{ev:?}");
    for e in &ev {
        match e {
            Event::Result { job, .. } => assert_eq!(*job, jobs[0], "a waiting job ran after its cancel"),
            Event::Failed { .. } => panic!("{e:?}"),
            Event::Progress { job, .. } | Event::MaskPreview { job, .. } => assert_eq!(*job, jobs[0], "a waiting job started"),
            _ => {}
        }
    }

    // And then a normal click: progress, the 2D preview first, then the result.
    let job = engine.next_job();
    engine.send(Command::Infer { job, prompt: Prompt::positive(RasMm::new(0.0, 0.0, 0.0)), plane: ViewPlane::Coronal, mask2d: None, options: Default::default(), object: None }).expect("send");
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
    run_env(args, &[])
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new(bin());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run binary")
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
    let vol = sam3d_studio::volume::open(&f.volume_path).expect("vol");
    let mask = sam3d_studio::volume::open_labels(&out).expect("mask");
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
    // No weights given and none shipped (the lookup pointed nowhere): say how to get them.
    let o = run_env(&["infer", vol, "--click-ras", "0,0,0", "--out-mask", s(&out)], &[("SAM3D_DEFAULT_WEIGHTS", "")]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("sam3d-studio train") && err.contains("assets/models/default.safetensors"), "{err}");
    assert!(!out.exists());
    // No weights given, default weights present: they are used.
    let o = run_env(&["infer", vol, "--click-ras", "-1.5,2,-3", "--out-mask", s(&out), "--threads", "1", "--json"], &[("SAM3D_DEFAULT_WEIGHTS", s(&f.weights))]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let js: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(js["weights"].as_str(), Some(s(&f.weights)));
    assert!(out.exists());
}

/// `eval --out DIR/REPORT.csv` with DIR missing makes DIR before the first click (it used to
/// run every click and then fail to write); an existing folder given as the report is refused
/// at once.
#[test]
fn eval_makes_the_report_folder_first() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    sam3d_engine::engine::train::write_phantoms(&data, 1, 5, sam3d_studio::volume::Modality::Ct).expect("phantoms");
    let out = tmp.path().join("runs/today/report.csv");
    let o = run(&["eval", "--data", s(&data), "--baseline-only", "--labels", "1", "--out", s(&out)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.is_file() && out.with_extension("json").is_file());
    let o = run(&["eval", "--data", s(&data), "--baseline-only", "--out", s(&data)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("is a folder"), "{err}");
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
    let r = s.infer(&InferRequest::click(RasMm::new(0.0, 0.0, 0.0), ViewPlane::Axial), &mut NoHooks).expect("infer");
    assert_eq!(r.mask.shape(), vol.shape());
}

/// Hooks that cancel once the job reaches `at`, counting the checks made after that.
struct CancelAt {
    at: Stage,
    reached: bool,
    stages: Vec<Stage>,
}

impl sam3d_engine::engine::Hooks for CancelAt {
    fn progress(&mut self, stage: Stage) {
        self.stages.push(stage);
        self.reached |= stage == self.at;
    }
    fn cancelled(&self) -> bool {
        self.reached
    }
}

/// A cancel seen at any stage stops the click before the next one, with `Cancelled`; the
/// session then answers the next click normally.
#[test]
fn session_cancel_stops_between_stages() {
    let f = fixture();
    let mut s = Session::new();
    s.load_weights(&f.weights, Device::Cpu).expect("weights");
    s.set_volume(Arc::new(ct_volume()), None).expect("volume");
    let req = InferRequest::click(RasMm::new(1.0, -2.0, 3.0), ViewPlane::Axial);
    for at in [Stage::Preprocess, Stage::Mask2d, Stage::Shape, Stage::Postprocess] {
        let mut hooks = CancelAt { at, reached: false, stages: Vec::new() };
        let e = s.infer(&req, &mut hooks).expect_err("cancelled");
        assert!(matches!(e, sam3d_engine::engine::EngineError::Cancelled), "{at:?}: {e}");
        assert_eq!(hooks.stages.last(), Some(&at), "no stage after the cancel");
        let r = s.infer(&req, &mut NoHooks).expect("the next click works");
        assert_eq!(r.mask.shape(), ct_volume().shape());
    }
}

/// Trilinear value of a `[k, j, i]` field at a continuous voxel position (clamped to the grid).
fn trilinear(f: &Array3<f32>, p: VoxelIjk) -> f32 {
    let sh = f.shape();
    let n = [sh[2], sh[1], sh[0]];
    let q: [f64; 3] = std::array::from_fn(|d| p.v[d].clamp(0.0, (n[d] - 1) as f64));
    let lo: [usize; 3] = std::array::from_fn(|d| (q[d].floor() as usize).min(n[d].saturating_sub(2)));
    let t: [f32; 3] = std::array::from_fn(|d| (q[d] - lo[d] as f64) as f32);
    let mut v = 0.0;
    for c in 0..8 {
        let o = [c & 1, (c >> 1) & 1, (c >> 2) & 1];
        let w: f32 = (0..3).map(|d| if o[d] == 1 { t[d] } else { 1.0 - t[d] }).product();
        let at = |d: usize| (lo[d] + o[d]).min(n[d] - 1);
        v += w * f[[at(2), at(1), at(0)]];
    }
    v
}

/// The model's output cube (48³ cells of 4 mm, oblique) around `click`, sampled from `sdf_at`.
fn cube_around(click: RasMm, sdf_at: impl Fn(RasMm) -> f32) -> (Array3<f32>, sam3d_studio::geometry::RasFromGrid) {
    let (g, side) = (48usize, 192.0);
    let (s, c) = (20f64.to_radians().sin(), 20f64.to_radians().cos());
    let lin = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0) * (side / g as f64);
    let half = (g as f64 - 1.0) / 2.0;
    let t = Vector3::new(click.x(), click.y(), click.z()) - lin * Vector3::new(half, half, half);
    let rfg = sam3d_studio::geometry::RasFromGrid::from_parts(lin, t);
    let sdf = Array3::from_shape_fn((g, g, g), |(z, y, x)| sdf_at(rfg.apply(sam3d_studio::geometry::Point3::new(x as f64, y as f64, z as f64))));
    (sdf, rfg)
}

fn assert_mesh_agrees(comp: &sam3d_studio::shape::GridComponent, shape: sam3d_studio::geometry::GridShape, a: &RasFromVoxel, what: &str) {
    let m = sam3d_studio::shape::click_mesh::mesh_of_component(comp, shape, a).expect("a mesh");
    assert!(m.edge_report().is_watertight(), "{what}: {:?}", m.edge_report());
    let mask_mm3 = comp.voxel_count as f64 * a.determinant().abs();
    let rel = (m.volume_mm3() - mask_mm3).abs() / mask_mm3;
    // (Measured: about 0.1 % for the demo liver and the ellipsoid; the issue asks for < 10 %.)
    assert!(rel < 0.03, "{what}: mesh {:.0} mm³ vs mask {mask_mm3:.0} mm³", m.volume_mm3());
    let inv = a.try_inverse().expect("invertible");
    let n = shape.ijk();
    for v in &m.vertices {
        let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
        assert!((0..3).all(|d| p.v[d] > -0.51 && p.v[d] < n[d] as f64 - 0.49), "{what}: vertex outside the grid: {p:?}");
    }
}

/// The click's postprocess and mesh on the demo CT's liver, with the liver's own SDF as the
/// model's output: the kept component is the liver (as the cube's 4 mm cells see it), and the
/// mesh is watertight and encloses the mask's volume within 3 %.
#[test]
fn click_mesh_encloses_the_mask_volume_on_the_demo_liver() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let labels = sam3d_studio::volume::open_labels(&root.join("labels.nii.gz")).expect("demo labels");
    let liver = labels.data.mapv(|l| l == 5);
    let sdf_vox = sam3d_studio::shape::sdf(liver.view(), labels.spacing());
    let inv = labels.ras_from_voxel.try_inverse().expect("invertible");
    // A click well inside the liver: its deepest voxel.
    let ((k, j, i), _) = sdf_vox.indexed_iter().min_by(|a, b| a.1.total_cmp(b.1)).expect("voxels");
    let click = labels.ras_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
    let (sdf, rfg) = cube_around(click, |p| trilinear(&sdf_vox, inv.apply(p)));
    let comp = sam3d_studio::shape::sdf_component_on_grid(sdf.view(), &rfg, labels.shape(), &labels.ras_from_voxel, click).expect("the liver");
    let [k0, j0, i0] = comp.origin_kji;
    assert!(comp.mask[[k - k0, j - j0, i - i0]], "the click is in the result");
    // The liver as far as the 192 mm cube reaches (the demo's liver is wider than that).
    let grid_from_voxel = rfg.try_inverse().expect("invertible") * labels.ras_from_voxel;
    let in_cube = ndarray::Array3::from_shape_fn(liver.raw_dim(), |(k, j, i)| {
        let p = grid_from_voxel.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
        liver[[k, j, i]] && (0..3).all(|d| p.v[d] >= -0.5 && p.v[d] <= 47.5)
    });
    let want = in_cube.iter().filter(|&&m| m).count() as f64;
    let got = comp.voxel_count as f64;
    assert!(want > 0.6 * liver.iter().filter(|&&m| m).count() as f64);
    assert!((got / want - 1.0).abs() < 0.02, "{got} voxels vs the liver's {want} in the cube");
    // Dice against the liver label in the cube.
    let full = comp.to_labels(labels.shape(), 1);
    let both = full.iter().zip(in_cube.iter()).filter(|&(&a, &b)| a == 1 && b).count() as f64;
    let dice = 2.0 * both / (got + want);
    assert!(dice > 0.98, "dice {dice}");
    assert_mesh_agrees(&comp, labels.shape(), &labels.ras_from_voxel, "demo liver");
}

/// The same on a fine anisotropic grid (0.7 × 0.6 × 1.5 mm, like a 512² CT), where the mesh is
/// built on blocks of several voxels: an ellipsoid (and a second blob that must not be meshed).
#[test]
fn click_mesh_encloses_the_mask_volume_on_a_fine_grid() {
    let a = RasFromVoxel::scale_translate([-0.7, -0.6, 1.5], [60.0, 45.0, -40.0]);
    let shape = sam3d_studio::geometry::GridShape::new(180, 160, 56);
    let centre = a.apply(VoxelIjk::new(85.0, 70.0, 26.0));
    let other = RasMm::new(centre.x() + 0.0, centre.y() + 0.0, centre.z() + 38.0);
    let axes = [45.0, 30.0, 22.0];
    let ellipsoid = move |p: RasMm| {
        let q = [(p.x() - centre.x()) / axes[0], (p.y() - centre.y()) / axes[1], (p.z() - centre.z()) / axes[2]];
        (((q[0] * q[0] + q[1] * q[1] + q[2] * q[2]).sqrt() - 1.0) * 22.0).min(p.distance(&other) - 8.0) as f32
    };
    let (sdf, rfg) = cube_around(centre, ellipsoid);
    let comp = sam3d_studio::shape::sdf_component_on_grid(sdf.view(), &rfg, shape, &a, centre).expect("the ellipsoid");
    let want_mm3 = 4.0 / 3.0 * std::f64::consts::PI * axes.iter().product::<f64>();
    let got_mm3 = comp.voxel_count as f64 * a.determinant().abs();
    assert!((got_mm3 / want_mm3 - 1.0).abs() < 0.05, "mask {got_mm3:.0} mm³ vs ellipsoid {want_mm3:.0} mm³");
    // The second blob (separate) is not kept.
    let inv = a.try_inverse().expect("invertible");
    let o = shape.array_index(inv.apply(other)).expect("in the grid").as_kji();
    assert_eq!(comp.to_labels(shape, 1)[o], 0);
    assert_mesh_agrees(&comp, shape, &a, "ellipsoid on 0.7 × 0.6 × 1.5 mm");
}

/// The shipped model (assets/models/default.safetensors) on the organs it never trained on: the
/// demo CT's spleen, kidneys and liver were held out of its training. Their 12 evaluation clicks
/// (three planes each) score a mean Dice of 0.750 as clicks give them (the three planes through
/// the click, image refinement, the continuation past the output cube, region growing joined
/// where it agrees, or its part near the shape); without the join: 0.723; with the clicked
/// plane only: 0.694; in one pass: 0.684 (assets/models/README.md, stage 4). This test's own run
/// of session 9 gave those and, for what the card does not list, the model's own masks in one
/// pass 0.635 and worst clicks 0.569 (as clicks give them) and 0.455 (clicked plane). A
/// regression guard for the weights, the refinement, the continuation, the plane fusion, the
/// join and the whole inference path.
#[test]
fn shipped_weights_segment_the_held_out_organs() {
    use sam3d_engine::engine::eval::eval_clicks;
    use sam3d_studio::shape::metrics::mask_metrics;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let weights = root.join("assets/models/default.safetensors");
    let model = Model::from_checkpoint(&weights, Device::Cpu).expect("shipped weights load");
    assert_eq!(model.config().name, "small-guided");
    let vol = Arc::new(sam3d_studio::volume::open(&root.join("assets/demo/ct.nii.gz")).expect("demo ct"));
    let labels = sam3d_studio::volume::open_labels(&root.join("assets/demo/labels.nii.gz")).expect("demo labels");
    let mut s = Session::new();
    s.set_model(model).expect("model");
    s.set_volume(vol, None).expect("volume");
    assert!(s.options().extend && s.options().refine, "clicks are refined and extended by default");
    assert_eq!(s.options().planes, PlaneFusion::Median, "clicks take the three planes' majority by default");
    assert!(s.options().join, "clicks join agreeing region growing by default");
    let (mut dice, mut single_dice, mut raw_dice, mut fused_dice, mut joined_dice) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut extended, mut joined, mut near) = (0, 0, 0);
    for organ in [1u16, 2, 3, 5] {
        let gt = labels.mask(organ);
        let sp = labels.spacing_mm();
        for (plane, click) in eval_clicks(&labels, organ) {
            let req = InferRequest::click(click, plane);
            set_pipeline(&mut s, |o| o.refine = true);
            set_pipeline(&mut s, |o| o.extend = true);
            set_pipeline(&mut s, |o| o.planes = PlaneFusion::Median);
            set_pipeline(&mut s, |o| o.join = true);
            let full = s.infer(&req, &mut NoHooks).expect("infer, as a click gives it");
            set_pipeline(&mut s, |o| o.join = false);
            let fused = s.infer(&req, &mut NoHooks).expect("infer, three planes");
            assert_eq!(fused.timings.join, None);
            // The join only adds to the model's shape, and only when growing agreed.
            let (full_pred, fused_pred) = (full.mask.data.mapv(|v| v != 0), fused.mask.data.mapv(|v| v != 0));
            assert!(fused_pred.iter().zip(full_pred.iter()).all(|(a, b)| !*a || *b), "organ {organ} {plane:?}: the join removed voxels");
            match full.timings.join.expect("the join ran") {
                JoinOutcome::Joined => joined += 1,
                JoinOutcome::JoinedNear => near += 1,
                other => assert_eq!(full.voxel_count, fused.voxel_count, "organ {organ} {plane:?}: {other:?}, yet a different mask"),
            }
            let full_m = mask_metrics(organ, full_pred.view(), gt.view(), sp);
            assert!(full_m.dice > 0.5, "organ {organ} {plane:?}: Dice {} as a click gives it (this test's run: worst 0.569)", full_m.dice);
            assert!(full_m.pred_voxels < 2 * full_m.gt_voxels, "organ {organ} {plane:?}: {} voxels for {}", full_m.pred_voxels, full_m.gt_voxels);
            joined_dice.push(full_m.dice);
            let fused_m = mask_metrics(organ, fused.mask.data.mapv(|v| v != 0).view(), gt.view(), sp);
            assert!(fused_m.dice > 0.5, "organ {organ} {plane:?}: three planes' Dice {} (this test's run: worst 0.569)", fused_m.dice);
            assert!(fused_m.pred_voxels < 2 * fused_m.gt_voxels, "organ {organ} {plane:?}: {} voxels for {}", fused_m.pred_voxels, fused_m.gt_voxels);
            fused_dice.push(fused_m.dice);
            set_pipeline(&mut s, |o| o.planes = PlaneFusion::Own);
            let r = s.infer(&req, &mut NoHooks).expect("infer");
            set_pipeline(&mut s, |o| o.extend = false);
            let one = s.infer(&req, &mut NoHooks).expect("infer, one pass");
            set_pipeline(&mut s, |o| o.refine = false);
            let raw = s.infer(&req, &mut NoHooks).expect("infer without refinement");
            let pred = r.mask.data.mapv(|v| v != 0);
            let one_pred = one.mask.data.mapv(|v| v != 0);
            let raw_pred = raw.mask.data.mapv(|v| v != 0);
            // The refinement only adds to the model's mask, and the extension to the first pass.
            assert!(raw_pred.iter().zip(one_pred.iter()).all(|(a, b)| !*a || *b), "organ {organ} {plane:?}: refinement removed voxels");
            assert!(one_pred.iter().zip(pred.iter()).all(|(a, b)| !*a || *b), "organ {organ} {plane:?}: the extension removed voxels");
            assert_eq!(one.timings.extension_passes, 0);
            if r.timings.extension_passes == 0 {
                assert_eq!(r.voxel_count, one.voxel_count, "organ {organ} {plane:?}: no extension pass, yet a different mask");
            } else {
                extended += 1;
                // Only the liver reaches past the 192 mm cube.
                assert_eq!(organ, 5, "{plane:?}: extended");
            }
            let m = mask_metrics(organ, pred.view(), gt.view(), sp);
            assert!(m.dice > 0.35, "organ {organ} {plane:?}: Dice {} (this test's run: worst 0.455)", m.dice);
            // Not a blob that swallows the abdomen.
            assert!(m.pred_voxels < 3 * m.gt_voxels, "organ {organ} {plane:?}: {} voxels predicted for {}", m.pred_voxels, m.gt_voxels);
            dice.push(m.dice);
            single_dice.push(mask_metrics(organ, one_pred.view(), gt.view(), sp).dice);
            raw_dice.push(mask_metrics(organ, raw_pred.view(), gt.view(), sp).dice);
        }
    }
    assert_eq!(dice.len(), 12);
    assert!(extended >= 1, "no liver click was continued past the cube");
    // Test views (off by default): the spleen's axial click in two more worlds for each of the three planes
    // gives much the same spleen (card, session 10: 0.858 against 0.838 without them).
    assert_eq!(s.options().views, 0, "no test views by default");
    let (plane, click) = eval_clicks(&labels, 1)[0];
    set_pipeline(&mut s, |o| o.refine = true);
    set_pipeline(&mut s, |o| o.extend = true);
    set_pipeline(&mut s, |o| o.planes = PlaneFusion::Median);
    set_pipeline(&mut s, |o| o.join = true);
    let req = InferRequest::click(click, plane);
    let plain = s.infer(&req, &mut NoHooks).expect("infer").mask.data.mapv(|v| v != 0);
    set_pipeline(&mut s, |o| o.views = 2);
    let viewed = s.infer(&req, &mut NoHooks).expect("infer with views").mask.data.mapv(|v| v != 0);
    set_pipeline(&mut s, |o| o.views = 0);
    let sp = labels.spacing_mm();
    let vm = mask_metrics(1, viewed.view(), labels.mask(1).view(), sp);
    assert!(vm.dice > 0.8, "spleen with two test views: Dice {} (card: 0.858)", vm.dice);
    let agree = mask_metrics(1, viewed.view(), plain.view(), sp).dice;
    assert!(agree > 0.85 && agree < 1.0, "with and without the views: Dice {agree} between them (the same mask would mean the views did nothing)");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (full, fused, mean, single, raw) = (mean(&joined_dice), mean(&fused_dice), mean(&dice), mean(&single_dice), mean(&raw_dice));
    eprintln!("held-out organs: {full:.3} as clicks give it ({joined} whole joins, {near} near), {fused:.3} without the join, {mean:.3} clicked plane, {single:.3} one pass, {raw:.3} own masks; worst {:.3}, {:.3}, {:.3}; {extended} continued",
        joined_dice.iter().copied().fold(1.0, f64::min), fused_dice.iter().copied().fold(1.0, f64::min), dice.iter().copied().fold(1.0, f64::min));
    // On this scan growing leaks from every organ but the left kidney (card: one of its clicks
    // joins whole; the left kidney's other shapes take part of the spleen, and growing then
    // disagrees); the leaking regions' parts near the shapes join on most others (card: 9).
    assert!((1..=4).contains(&joined), "{joined} of 12 clicks joined region growing whole (card: 1)");
    assert!(near >= 6 && joined + near <= 12, "{near} of 12 clicks joined growing's part near the shape (card: 9)");
    assert!(full > 0.735, "mean Dice {full} as clicks give it (card: 0.750)");
    assert!(full > fused + 0.015, "mean Dice {full} with the join vs {fused} without (card: 0.750 against 0.723)");
    assert!(fused > 0.705, "three planes' mean Dice {fused} (card: 0.723)");
    assert!(fused > mean + 0.01, "three planes' mean Dice {fused} vs the clicked plane's {mean} (card: 0.723 against 0.694)");
    assert!(mean > 0.675, "mean Dice {mean} over the held-out organs' clicks (card: 0.694)");
    assert!(mean > single, "extended mean Dice {mean} vs one pass {single} (card: 0.694 against 0.684)");
    assert!(single > raw + 0.03, "refined mean Dice {single} vs the model's own {raw} (card: 0.684; this test's run: 0.635)");
}

/// A whole-grid click result (region growing's) meshed on blocks within its bounding box: the
/// demo kidney and spleen masks give watertight surfaces that enclose their volume within 3 %
/// and lie in the right place (the vertices centred within 5 mm of the mask, where a wrong
/// crop origin would put them tens of mm off).
#[test]
fn grid_mask_mesh_encloses_the_mask_in_its_box() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo");
    let labels = sam3d_studio::volume::open_labels(&root.join("labels.nii.gz")).expect("demo labels");
    let a = labels.ras_from_voxel;
    for id in [1u16, 3] {
        let mask = labels.data.mapv(|l| l == id);
        let m = sam3d_studio::shape::click_mesh::mesh_of_grid_mask(mask.view(), &a);
        assert!(m.edge_report().is_watertight(), "label {id}: {:?}", m.edge_report());
        let n = mask.iter().filter(|&&x| x).count() as f64;
        let mask_mm3 = n * a.determinant().abs();
        let rel = (m.volume_mm3() - mask_mm3).abs() / mask_mm3;
        assert!(rel < 0.03, "label {id}: mesh {:.0} mm³ vs mask {mask_mm3:.0} mm³", m.volume_mm3());
        let (mut c, mut s) = ([0f64; 3], 0.0);
        for ((k, j, i), &x) in mask.indexed_iter() {
            if x {
                let p = a.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
                (0..3).for_each(|d| c[d] += p.v[d]);
                s += 1.0;
            }
        }
        let mv: Vec<f64> = (0..3).map(|d| m.vertices.iter().map(|v| v[d] as f64).sum::<f64>() / m.vertices.len() as f64).collect();
        let dist = (0..3).map(|d| (c[d] / s - mv[d]).powi(2)).sum::<f64>().sqrt();
        assert!(dist < 5.0, "label {id}: mesh vertices centred {dist:.1} mm from the mask");
    }
    assert!(sam3d_studio::shape::click_mesh::mesh_of_grid_mask(ndarray::Array3::from_elem((4, 4, 4), false).view(), &a).triangles.is_empty());
}

/// The MR adapter goes on for an MR scan and comes off for a CT, giving back the base's exact
/// output; an adapter loaded by hand stays on both; one that does not fit the weights is not
/// put on, and the session says why.
#[test]
fn the_mr_adapter_goes_on_for_mr_scans_only() {
    let f = fixture();
    let mr_adapter = f.dir.join("mr.safetensors");
    adapter::tuned_adapter(&f.weights, &mr_adapter, 21);
    let vol = Arc::new(sam3d_studio::volume::open(&f.volume_path).expect("load"));
    let req = InferRequest::click(RasMm::new(1.0, -2.0, 3.0), ViewPlane::Axial);
    let mut s = Session::new();
    set_pipeline(&mut s, |o| o.join = false);
    set_pipeline(&mut s, |o| o.refine = false);
    s.load_weights(&f.weights, Device::Cpu).expect("weights");
    s.set_mr_adapter(Some(mr_adapter.clone())).expect("mr adapter");
    let mri = sam3d_studio::volume::Modality::Mr;

    s.set_volume(vol.clone(), None).expect("ct");
    let ct = s.infer(&req, &mut NoHooks).expect("infer");
    assert_eq!(ct.adapter, None, "a CT runs on the base weights");
    s.set_volume(vol.clone(), Some(mri)).expect("as MR");
    let mr = s.infer(&req, &mut NoHooks).expect("infer");
    assert_eq!(mr.adapter.as_deref(), Some(mr_adapter.as_path()), "an MR runs with the MR adapter");
    assert_ne!(mr.mask2d, ct.mask2d, "the adapter (its LoRA and heads) changes the 2D mask");
    // An MR with the base alone differs from the MR with the adapter: the adapter did the change.
    let mut plain = Session::new();
    set_pipeline(&mut plain, |o| o.join = false);
    set_pipeline(&mut plain, |o| o.refine = false);
    plain.load_weights(&f.weights, Device::Cpu).expect("weights");
    plain.set_volume(vol.clone(), Some(mri)).expect("as MR");
    assert_ne!(plain.infer(&req, &mut NoHooks).expect("infer").mask2d, mr.mask2d);
    s.set_volume(vol.clone(), None).expect("ct again");
    let back = s.infer(&req, &mut NoHooks).expect("infer");
    assert_eq!((back.adapter.as_ref(), &back.mask2d, &back.mask.data), (None, &ct.mask2d, &ct.mask.data), "off again: the base exactly");

    // By hand: stays on a CT too.
    let own = f.dir.join("own.safetensors");
    adapter::tuned_adapter(&f.weights, &own, 22);
    s.load_adapter(&own).expect("by hand");
    s.set_volume(vol.clone(), None).expect("ct");
    assert_eq!(s.infer(&req, &mut NoHooks).expect("infer").adapter.as_deref(), Some(own.as_path()));
    s.set_volume(vol.clone(), Some(mri)).expect("mr");
    assert_eq!(s.infer(&req, &mut NoHooks).expect("infer").adapter.as_deref(), Some(own.as_path()), "the user's adapter wins on MR");

    // Other weights: the MR adapter does not fit them, and the session says so.
    let other = f.dir.join("other.safetensors");
    tch::manual_seed(99);
    Model::new(Config::tiny(), Device::Cpu).save_weights(&other).expect("save");
    s.load_weights(&other, Device::Cpu).expect("other weights");
    s.set_volume(vol.clone(), Some(mri)).expect("mr");
    assert_eq!(s.infer(&req, &mut NoHooks).expect("infer").adapter, None);
    let why = s.mr_adapter_error().expect("a reason");
    assert!(why.contains("mr.safetensors") && why.contains("SHA-256"), "{why}");
}

/// `infer` puts the shipped MR adapter (here from `SAM3D_MR_ADAPTER`) on an MR scan and reports
/// it; `--no-mr-adapter` and a CT do not.
#[test]
fn infer_reports_the_mr_adapter_it_used() {
    let f = fixture();
    let mr_adapter = f.dir.join("mr.safetensors");
    adapter::tuned_adapter(&f.weights, &mr_adapter, 23);
    let out = f.dir.join("mask.nii.gz");
    let go = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["infer", s(&f.volume_path), "--click-ras", "1,-2,3", "--out-mask", s(&out), "--weights", s(&f.weights), "--device", "cpu", "--threads", "1", "--json"];
        args.extend_from_slice(extra);
        let o = run_env(&args, &[("SAM3D_MR_ADAPTER", s(&mr_adapter))]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("one JSON object")
    };
    assert_eq!(go(&["--modality", "mr"])["adapter"].as_str(), Some(s(&mr_adapter)));
    assert!(go(&["--modality", "mr", "--no-mr-adapter"])["adapter"].is_null());
    assert!(go(&["--modality", "ct"])["adapter"].is_null());
}

/// Mean Dice of the shipped MR adapter on the real MR's spleen, kidneys and liver as clicks give
/// them (assets/models/README.md, session 23: `eval --data assets/mr --labels 1,2,3,5`).
const MR_CARD_MEAN: f64 = 0.817;

/// The shipped MR adapter on the real MR (assets/mr), which no weights were trained on: the
/// shipped weights alone give nothing useful there (card: mean Dice 0.056 on these organs), and a
/// session put the adapter on by itself gives the card's shapes on the spleen, kidneys and liver.
#[test]
fn shipped_mr_adapter_segments_the_real_mr() {
    use sam3d_engine::engine::eval::eval_clicks;
    use sam3d_studio::shape::metrics::mask_metrics;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let adapter = root.join("assets/models/mr.safetensors");
    let vol = Arc::new(sam3d_studio::volume::open(&root.join("assets/mr/mr.nii.gz")).expect("real mr"));
    let labels = sam3d_studio::volume::open_labels(&root.join("assets/mr/labels.nii.gz")).expect("mr labels");
    let mut s = Session::new();
    s.load_weights(&root.join("assets/models/default.safetensors"), Device::Cpu).expect("shipped weights");
    s.set_mr_adapter(Some(adapter.clone())).expect("mr adapter");
    assert_eq!(s.set_volume(vol, None).expect("volume"), sam3d_studio::volume::Modality::Mr, "the real MR is guessed MR");
    assert_eq!(s.mr_adapter_error(), None);
    let (mut dice, mut base_dice) = (Vec::new(), Vec::new());
    for organ in [1u16, 2, 3, 5] {
        let gt = labels.mask(organ);
        for (plane, click) in eval_clicks(&labels, organ) {
            let req = InferRequest::click(click, plane);
            let r = s.infer(&req, &mut NoHooks).expect("infer");
            assert_eq!(r.adapter.as_deref(), Some(adapter.as_path()));
            let m = mask_metrics(organ, r.mask.data.mapv(|v| v != 0).view(), gt.view(), labels.spacing_mm());
            assert!(m.pred_voxels < 2 * m.gt_voxels, "organ {organ} {plane:?}: {} voxels for {}", m.pred_voxels, m.gt_voxels);
            dice.push(m.dice);
        }
    }
    // The base alone, one click per organ (the axial one): what the adapter is for.
    s.set_mr_adapter(None).expect("off");
    for organ in [1u16, 2, 3, 5] {
        let (plane, click) = eval_clicks(&labels, organ)[0];
        let r = s.infer(&InferRequest::click(click, plane), &mut NoHooks).expect("infer");
        assert_eq!(r.adapter, None);
        base_dice.push(mask_metrics(organ, r.mask.data.mapv(|v| v != 0).view(), labels.mask(organ).view(), labels.spacing_mm()).dice);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (with, base) = (mean(&dice), mean(&base_dice));
    assert_eq!(dice.len(), 12);
    assert!(with > MR_CARD_MEAN - 0.03, "mean Dice {with} with the MR adapter (card: {MR_CARD_MEAN})");
    assert!(base < 0.3 && with > base + 0.4, "the base alone: {base}, with the adapter {with}");
}

/// The close-up probe with the shipped weights on a held-out abdomen scene (the model card's
/// "Session 23": `runs/eval-scenes/ct_abdomen`'s third case, seed 9102): a click on a liver
/// lesion of about 5 ml gives the liver without the probe, and the lesion with it; a click on
/// the liver itself stays the liver.
#[test]
fn shipped_pipeline_finds_a_lesion_inside_the_liver() {
    use sam3d_engine::engine::eval::eval_clicks;
    use sam3d_studio::data::phantom::PhantomSpec;
    use sam3d_studio::data::scenes::{Scene, generate_scene};
    use sam3d_studio::shape::metrics::mask_metrics;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let case = generate_scene(Scene::Abdomen, &PhantomSpec::medium(sam3d_studio::volume::Modality::Ct), 9102);
    let labels = case.labels;
    let mut s = Session::new();
    s.load_weights(&root.join("assets/models/default.safetensors"), Device::Cpu).expect("shipped weights");
    s.set_volume(Arc::new(case.volume), None).expect("volume");
    assert!(s.options().zoom && s.options().close_up, "the zoom and the close-up probe are the defaults");
    let dice = |s: &mut Session, label: u16| {
        let (plane, click) = eval_clicks(&labels, label)[0];
        let r = s.infer(&InferRequest::click(click, plane), &mut NoHooks).expect("infer");
        (mask_metrics(label, r.mask.data.mapv(|v| v != 0).view(), labels.mask(label).view(), labels.spacing_mm()).dice, r.timings.zoom)
    };
    let (lesion, zoom) = dice(&mut s, 141);
    let (liver, liver_zoom) = dice(&mut s, 5);
    set_pipeline(&mut s, |o| o.close_up = false);
    let (without, none) = dice(&mut s, 141);
    eprintln!("liver lesion: {lesion:.3} with the probe (zoom {zoom:?}), {without:.3} without; the liver {liver:.3}");
    assert!(zoom.is_some_and(|z| z > 1.0) && none.is_none());
    assert!(lesion > 0.45 && without < 0.1, "the lesion: Dice {lesion} with the probe (card: 0.606), {without} without (0.022)");
    assert!(liver > 0.8 && liver_zoom.is_none(), "the liver: Dice {liver}, zoom {liver_zoom:?}");
}

/// Changes one thing of a session's pipeline.
fn set_pipeline(s: &mut Session, f: impl FnOnce(&mut sam3d_studio::options::PipelineOptions)) {
    let mut o = s.options().clone();
    f(&mut o);
    s.set_options(o).expect("pipeline options");
}
