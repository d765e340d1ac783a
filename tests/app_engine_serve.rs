//! The engine's `serve` protocol end to end: spawn `sam3d-studio-engine serve`, load a tiny
//! random checkpoint (saved here only for the test, the way tests/engine_e2e.rs does), set a
//! volume, infer one click, read the mask file it names; bad requests give `failed` lines and
//! the process carries on.

use nalgebra::{Matrix3, Vector3};
use ndarray::Array3;
use sam3d_studio::geometry::{RasFromVoxel, RasMm, VoxelIjk};
use sam3d_studio::model::{Config, Model};
use sam3d_studio::volume::{LabelMap, OnGrid, Volume};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

    let bin = env!("CARGO_BIN_EXE_sam3d-studio-engine");
    let mut child = Command::new(bin)
        .arg("serve")
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
    let mask_path = std::path::PathBuf::from(r["mask_path"].as_str().expect("mask path"));
    let mask = LabelMap::load(&mask_path).expect("mask file reads");
    assert_eq!(mask.shape(), vol.shape());
    assert!(mask.ras_from_voxel.max_abs_diff(&vol.ras_from_voxel) < 1e-4);
    let n = mask.data.iter().filter(|&&x| x == 1).count();
    assert_eq!(r["voxel_count"].as_u64(), Some(n as u64));
    let ml = n as f64 * vol.spacing_mm().iter().product::<f64>() / 1000.0;
    assert!((r["ml"].as_f64().expect("ml") - ml).abs() < 1e-6 * ml.max(1.0));
    assert!(r["timings"]["total_secs"].as_f64().expect("timings") > 0.0);

    drop(send);
    drop(stdin); // end of input stops the engine
    let status = child.wait().expect("engine exits");
    assert!(status.success(), "{status}");
    assert!(!mask_path.exists(), "the engine removes its temporary results on exit");
}
