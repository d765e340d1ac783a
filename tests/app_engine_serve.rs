//! The engine's `serve` protocol end to end: spawn `sam3d-studio-engine serve`, load a tiny
//! random checkpoint (saved here only for the test, the way tests/engine_e2e.rs does), set a
//! volume, infer one click, read the crop and mesh files it names (through the app's reader,
//! which removes them); bad requests give `failed` lines and the process carries on; the
//! files of an unread result go when the engine stops.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_studio::geometry::{RasFromVoxel, RasMm, VoxelIjk};
use sam3d_engine::model::{Config, Model};
use sam3d_studio::protocol::CropFile as RemoteCrop;
use sam3d_studio::volume::{OnGrid, Volume};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[path = "common/adapter.rs"]
mod adapter;

fn ct_volume() -> Volume {
    let a = RasFromVoxel::from_parts(Matrix3::from_diagonal(&Vector3::new(-2.0, -2.0, 4.0)), Vector3::new(40.0, 40.0, -40.0));
    let mut data = Array3::from_shape_fn((20, 40, 40), |(k, j, i)| {
        let p = a.apply(VoxelIjk::new(i as f64, j as f64, k as f64));
        if p.distance(&RasMm::new(0.0, 0.0, 0.0)) < 25.0 { 60.0 } else { -100.0 }
    });
    data[[0, 0, 0]] = -1000.0;
    data[[0, 0, 1]] = 1000.0;
    Volume::new(data, a).expect("volume")
}

#[test]
fn serve_protocol_round_trip() {
    let dir = tempfile::tempdir().expect("tmp");
    tch::manual_seed(11);
    let weights = dir.path().join("tiny-random.safetensors");
    Model::new(Config::tiny(), tch::Device::Cpu).save_weights(&weights).expect("save weights");
    let vol_path = dir.path().join("ct.nii.gz");
    let vol = ct_volume();
    vol.save(&vol_path, None).expect("save volume");

    // The adapter the engine puts on for MR scans (in place of the shipped one, which fits
    // only the shipped weights).
    let mr_adapter = dir.path().join("mr.safetensors");
    adapter::tuned_adapter(&weights, &mr_adapter, 31);
    let bin = sam3d_studio::cli::engine_binary().expect("the engine binary is built beside the tests (cargo build --workspace)");
    let mut child = Command::new(bin)
        .arg("serve")
        .env("SAM3D_MR_ADAPTER", &mr_adapter)
        .env("OMP_WAIT_POLICY", "PASSIVE")
        .env("CUDA_VISIBLE_DEVICES", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("engine starts");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| -> Value {
        loop {
            let v = rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|_| panic!("no '{what}' line"));
            if v["event"] == "progress" && what != "progress" {
                continue;
            }
            assert_eq!(v["event"], what, "{v}");
            return v;
        }
    };
    let ready = next("ready");
    assert!(ready["device"].as_str().is_some_and(|d| !d.is_empty()), "{ready}");
    assert_eq!(ready["protocol"].as_u64(), Some(u64::from(sam3d_studio::protocol::PROTOCOL_VERSION)), "app and engine speak one protocol");

    let mut send = |s: String| {
        writeln!(stdin, "{s}").expect("write");
        stdin.flush().expect("flush");
    };
    send("this is not json".into());
    assert!(next("failed")["message"].as_str().expect("message").contains("bad request"));
    send(serde_json::json!({"cmd": "load_weights", "path": dir.path().join("missing.safetensors")}).to_string());
    assert!(next("failed")["message"].as_str().expect("message").contains("missing.safetensors"));
    send(serde_json::json!({"cmd": "load_weights", "path": weights}).to_string());
    let loaded = next("model_loaded");
    assert_eq!(loaded["info"]["preset"], "tiny", "{loaded}");
    send(serde_json::json!({"cmd": "set_volume", "path": vol_path}).to_string());
    next("volume_ready");
    send(serde_json::json!({"cmd": "infer", "job": 7, "click": [1.0, -2.0, 3.0], "plane": "Axial"}).to_string());
    let r = next("result");
    assert_eq!(r["job"], 7);
    assert!(r["adapter"].is_null(), "a CT runs on the base weights: {r}");
    let n = r["voxel_count"].as_u64().expect("voxel count") as usize;
    let ml = n as f64 * vol.spacing_mm().iter().product::<f64>() / 1000.0;
    assert!((r["ml"].as_f64().expect("ml") - ml).abs() < 1e-6 * ml.max(1.0));
    assert!(r["timings"]["total_secs"].as_f64().expect("timings") > 0.0);
    // The app reads the continuation's pass count from here ("· N passes").
    assert!(r["timings"]["extension_passes"].as_u64().is_some(), "{r}");
    // Protocol 2: the kept component's crop (raw bytes, 1 inside) and the engine's mesh (PLY).
    let crop: Option<RemoteCrop> = serde_json::from_value(r["crop"].clone()).expect("crop is null or {path, origin_kji, shape_kji}");
    let mesh_path = r["mesh_path"].as_str().map(PathBuf::from);
    let s = vol.shape();
    let grid_kji = [s.nk, s.nj, s.ni];
    let files: Vec<PathBuf> = crop.iter().map(|c| c.path.clone()).chain(mesh_path.clone()).collect();
    let Some(c) = crop.clone() else {
        assert_eq!(n, 0, "no crop: nothing segmented ({r})");
        assert!(mesh_path.is_none());
        panic!("seed 11 is expected to segment something: {r}");
    };
    let bytes = std::fs::read(&c.path).expect("crop file");
    assert_eq!(bytes.len(), c.shape_kji.iter().product::<usize>());
    assert!(bytes.iter().all(|&b| b <= 1));
    assert_eq!(bytes.iter().filter(|&&b| b == 1).count(), n);
    assert!((0..3).all(|a| c.origin_kji[a] + c.shape_kji[a] <= grid_kji[a]), "{c:?} in {grid_kji:?}");
    // The crop is the component's bounding box: each face of the box touches the component.
    let crop3 = ndarray::Array3::from_shape_vec((c.shape_kji[0], c.shape_kji[1], c.shape_kji[2]), bytes).expect("shape");
    for ax in 0..3 {
        let last = c.shape_kji[ax] - 1;
        assert!(crop3.index_axis(ndarray::Axis(ax), 0).iter().any(|&b| b == 1), "axis {ax} start");
        assert!(crop3.index_axis(ndarray::Axis(ax), last).iter().any(|&b| b == 1), "axis {ax} end");
    }
    // The app's reader: the crop pasted on the full grid, the mesh, and both files removed.
    let got = sam3d_studio::app::remote::read_result(Some(&c), mesh_path.as_deref(), n, grid_kji).expect("the app reads the result");
    assert!(files.iter().all(|f| !f.exists()), "the reader removes the result files");
    assert_eq!(got.mask.shape(), &grid_kji);
    assert_eq!(got.mask.iter().filter(|&&m| m).count(), n);
    let [k0, j0, i0] = c.origin_kji;
    assert_eq!(got.mask.slice(ndarray::s![k0.., j0.., i0..]).slice(ndarray::s![..c.shape_kji[0], ..c.shape_kji[1], ..c.shape_kji[2]]).mapv(u8::from), crop3);
    let mesh = got.mesh.expect("a mesh for a non-empty result");
    assert!(mesh.edge_report().is_watertight(), "{:?}", mesh.edge_report());
    // The surface sits on the component: every vertex within 1.5 voxels of the crop's box
    // (blocks of 1.5 mm, smoothing), in RAS through the volume's affine.
    let inv = vol.ras_from_voxel.try_inverse().expect("affine");
    for v in &mesh.vertices {
        let p = inv.apply(RasMm::new(v[0] as f64, v[1] as f64, v[2] as f64));
        let ijk = [p.v[0], p.v[1], p.v[2]];
        let (lo, hi) = ([i0, j0, k0], [i0 + c.shape_kji[2], j0 + c.shape_kji[1], k0 + c.shape_kji[0]]);
        assert!((0..3).all(|a| ijk[a] >= lo[a] as f64 - 1.5 && ijk[a] <= hi[a] as f64 + 0.5), "vertex {v:?} at voxel {ijk:?}, crop {lo:?}..{hi:?}");
    }
    // A file that disagrees with its reply: the reader says so, and still removes it.
    let r2_bad = RemoteCrop { path: dir.path().join("bad.mask"), origin_kji: [0, 0, 0], shape_kji: [1, 1, 2] };
    std::fs::write(&r2_bad.path, [1u8, 0]).expect("write");
    let e = sam3d_studio::app::remote::read_result(Some(&r2_bad), None, 2, grid_kji).expect_err("count mismatch");
    assert!(e.contains("bad.mask") && e.contains("1 voxels"), "{e}");
    assert!(!r2_bad.path.exists());
    // A second click: its files exist until the engine stops.
    send(serde_json::json!({"cmd": "infer", "job": 8, "click": [1.0, -2.0, 3.0], "plane": "Coronal"}).to_string());
    let r = next("result");
    let mut left: Vec<PathBuf> = [r["crop"]["path"].as_str(), r["mesh_path"].as_str()].into_iter().flatten().map(PathBuf::from).collect();
    assert!(!left.is_empty() && left.iter().all(|p| p.exists()));
    // The image refinement (on by default) only adds voxels, and so do the continuation past
    // the cube and the join of region growing: with the clicked plane alone, job 7's click gives
    // the model's own mask in one pass with all three off, no larger than with all on.
    // Options a request cannot mean are refused with the line named, and the engine carries on.
    let click = |job: u64, options: Value| serde_json::json!({"cmd": "infer", "job": job, "click": [1.0, -2.0, 3.0], "plane": "Axial", "options": options}).to_string();
    send(click(90, serde_json::json!({"refine": "yes"})));
    assert!(next("failed")["message"].as_str().expect("message").contains("bad request"));
    send(click(91, serde_json::json!({"planes": "both"})));
    let e = next("failed")["message"].as_str().expect("message").to_string();
    assert!(e.contains("bad request") && e.contains("median"), "{e}");
    send(click(92, serde_json::json!({"join_near_mm": -1.0})));
    let e = next("failed")["message"].as_str().expect("message").to_string();
    assert!(e.contains("join_near_mm"), "{e}");
    send("{\"cmd\": \"infer\", not json".into());
    assert!(next("failed")["message"].as_str().expect("message").contains("bad request"));
    // Version 2's setters are gone: each is a bad request, not the end of the session.
    send(serde_json::json!({"cmd": "set_refine", "on": false}).to_string());
    assert!(next("failed")["message"].as_str().expect("message").contains("set_refine"));
    send(click(9, serde_json::json!({"refine": false, "extend": false, "join": false, "planes": "own"})));
    let r = next("result");
    let raw = r["voxel_count"].as_u64().expect("voxel count") as usize;
    assert_eq!(r["timings"]["extension_passes"].as_u64(), Some(0), "{r}");
    assert!(r["timings"]["join"].is_null(), "the join is off: {r}");
    left.extend([r["crop"]["path"].as_str(), r["mesh_path"].as_str()].into_iter().flatten().map(PathBuf::from));
    send(click(10, serde_json::json!({"planes": "own"})));
    let r = next("result");
    let refined = r["voxel_count"].as_u64().expect("voxel count") as usize;
    // The app reads whether growing was joined from here ("· + growing").
    assert!(r["timings"]["join"].is_string(), "the join reports what it did: {r}");
    assert!(raw <= refined, "without refinement {raw} voxels, with it {refined}");
    left.extend([r["crop"]["path"].as_str(), r["mesh_path"].as_str()].into_iter().flatten().map(PathBuf::from));

    // The same scene as MR (nothing below 0: no air): the engine puts the MR adapter on.
    let mr_path = dir.path().join("mr.nii.gz");
    Volume::new(vol.data.mapv(|v| (v + 200.0).max(0.0)), vol.ras_from_voxel).expect("mr volume").save(&mr_path, None).expect("save");
    send(serde_json::json!({"cmd": "set_volume", "path": mr_path}).to_string());
    next("volume_ready");
    send(serde_json::json!({"cmd": "infer", "job": 11, "click": [1.0, -2.0, 3.0], "plane": "Axial"}).to_string());
    let r = next("result");
    assert_eq!(r["adapter"].as_str().map(PathBuf::from), Some(mr_adapter.clone()), "{r}");
    left.extend([r["crop"]["path"].as_str(), r["mesh_path"].as_str()].into_iter().flatten().map(PathBuf::from));
    // The viewer's "MR adapter" box: off, the MR runs on the base weights; on again, the adapter.
    send(click(93, serde_json::json!({"mr_adapter": "no"})));
    assert!(next("failed")["message"].as_str().expect("message").contains("bad request"));
    for (job, on) in [(12, false), (13, true)] {
        send(click(job, serde_json::json!({"mr_adapter": on})));
        let r = next("result");
        assert_eq!(r["adapter"].as_str().map(PathBuf::from), on.then(|| mr_adapter.clone()), "{r}");
        left.extend([r["crop"]["path"].as_str(), r["mesh_path"].as_str()].into_iter().flatten().map(PathBuf::from));
    }

    drop(stdin); // end of input stops the engine
    let status = child.wait().expect("engine exits");
    assert!(status.success(), "{status}");
    assert!(left.iter().all(|p| !p.exists()), "the engine removes its temporary results on exit");
}
