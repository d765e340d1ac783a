//! `sam3d-studio-engine serve-http` driven by the real nnInteractive client (`nninteractive-client`
//! 2.6, what 3D Slicer's nnInteractive extension installs; `packaging/linux/setup.sh` puts it in
//! the project's cache and `SAM3D_NNI_CLIENT` names it) through `tests/oracle/nninteractive_session.py`,
//! on the demo CT with the shipped weights:
//! - a point, a negative point, a 2D box: the client's buffer holds exactly the mask `infer`
//!   writes for the same prompts; undo restores the buffer step by step; reset empties it; an
//!   initial segmentation is refined by a further point; scribbles, negative boxes, points
//!   outside the image and a buffer of another shape are refused with 400;
//! - a session idle past its timeout is gone (410), a second client at max-sessions 1 is told
//!   503 and gets the slot once the first releases it, no key or a wrong one is 401;
//! - malformed, truncated, oversized and hostile bodies get 4xx and a client that vanishes
//!   mid-upload leaves the server serving.

use ndarray::Array3;
use sam3d_core::geometry::VoxelIjk;
use sam3d_core::volume::{self, OnGrid};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn client_path() -> String {
    std::env::var("SAM3D_NNI_CLIENT").unwrap_or_else(|_| panic!("SAM3D_NNI_CLIENT is not set: run `source packaging/linux/env.sh` (packaging/linux/setup.sh installs nninteractive-client into the cache)"))
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sam3d-studio-engine"))
        .args(["serve-http", "--bind", "127.0.0.1:0", "--device", "cpu"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start serve-http");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read");
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("serve-http said {line:?}")).to_string();
    Server { child, url }
}

fn python(mode: &str, url: &str, work: &Path, key: &str) -> String {
    let out = Command::new("python3")
        .arg(root().join("tests/oracle/nninteractive_session.py"))
        .args([mode, url, work.to_str().expect("utf-8"), key])
        .env("PYTHONPATH", client_path())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{mode}: {}\n{text}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

fn read_u8(path: &Path, shape: [usize; 3]) -> Array3<u8> {
    Array3::from_shape_vec(shape, std::fs::read(path).expect("buffer")).expect("shape")
}

/// `infer` on the same file and prompts, as a 0/1 array.
fn infer(ct: &Path, work: &Path, name: &str, prompt_args: &[String]) -> Array3<u8> {
    let out = work.join(format!("{name}.nii.gz"));
    let st = Command::new(env!("CARGO_BIN_EXE_sam3d-studio-engine"))
        .args(["infer", ct.to_str().expect("utf-8"), "--device", "cpu", "--plane", "axial", "--out-mask", out.to_str().expect("utf-8")])
        .args(prompt_args)
        .status()
        .expect("infer");
    assert!(st.success(), "infer {prompt_args:?}");
    volume::open_labels(&out).expect("mask").data.mapv(|v| (v != 0) as u8)
}

fn ras_arg(v: &volume::Volume, kji: [usize; 3]) -> String {
    let p = v.ras_from_voxel.apply(VoxelIjk::new(kji[2] as f64, kji[1] as f64, kji[0] as f64));
    format!("{},{},{}", p.x(), p.y(), p.z())
}

#[test]
fn the_real_client_drives_the_server() {
    let ct = root().join("assets/demo/ct.nii.gz");
    let v = volume::open(&ct).expect("demo CT");
    let labels = volume::open_labels(&root().join("assets/demo/labels.nii.gz")).expect("labels");
    let shape = v.shape().array_shape();
    // The liver's deepest voxel, and the spleen's (for a negative click on a neighbour).
    let deepest = |label: u16| {
        let m = labels.data.mapv(|x| x != label);
        let d = sam3d_core::shape::sdf::edt(m.view(), v.spacing());
        let (at, _) = d.indexed_iter().max_by(|a, b| a.1.total_cmp(b.1)).expect("voxels");
        [at.0, at.1, at.2]
    };
    let liver = deepest(5);
    let spleen = deepest(1);
    // A click in the right adrenal gland (4.5 ml) whose first shape is small, so the scale
    // follows it (`infer`: 653 voxels, against 1605 with --no-zoom). (Its deepest voxels tie,
    // and the first shapes of some are too large to be zoomed.)
    let small = {
        let p = v.voxel_from_ras().apply(sam3d_core::geometry::RasMm::new(23.04, 152.32, 400.30));
        [p.z().round() as usize, p.y().round() as usize, p.x().round() as usize]
    };
    assert_eq!(labels.data[small], 8, "the click is in the right adrenal gland");
    let inside = labels.data.indexed_iter().filter(|&(_, &x)| x == 5).map(|(i, _)| i);
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (k, j, i) in inside.filter(|(k, _, _)| *k == liver[0]) {
        for (d, x) in [k, j, i].into_iter().enumerate() {
            lo[d] = lo[d].min(x);
            hi[d] = hi[d].max(x + 1);
        }
    }
    // Another liver voxel, for a point added to an initial segmentation.
    let extra = [liver[0], (liver[1] + lo[1]) / 2, (liver[2] + hi[2]) / 2];
    let work = tempfile::tempdir().expect("tmp");
    let w = work.path();
    let data: Vec<u8> = v.data.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(w.join("image.f32"), data).expect("image");
    let meta = serde_json::json!({
        "shape": shape, "affine": v.ras_from_voxel.rows(), "click_kji": liver, "negative_kji": spleen,
        "box_kji": [[lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]]], "extra_kji": extra, "small_kji": small,
    });
    std::fs::write(w.join("image.json"), meta.to_string()).expect("meta");
    let key = w.join("key");
    std::fs::write(&key, "0123456789abcdef-test-key\n").expect("key");
    let key_arg = key.to_str().expect("utf-8");

    let server = start(&["--api-key-file", key_arg, "--max-sessions", "2", "--threads", "2"]);
    python("flow", &server.url, w, "0123456789abcdef-test-key");
    let facts: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(w.join("flow.json")).expect("flow.json")).expect("json");
    eprintln!("{facts:#}");
    let caps = &facts["caps"]["supported_interactions"];
    assert_eq!((caps["points"].as_bool(), caps["bbox2d"].as_bool(), caps["scribble"].as_bool()), (Some(true), Some(true), Some(false)));
    for (what, code) in facts["refused"].as_object().expect("refused") {
        assert_eq!(code[0].as_u64(), Some(400), "{what}: {code}");
    }

    let point = read_u8(&w.join("point.u8"), shape);
    assert!(point.iter().filter(|&&x| x == 1).count() > 10_000, "a liver-sized result");
    let want = infer(&ct, w, "point", &["--click-ras".into(), ras_arg(&v, liver)]);
    assert!(point == want, "the client's buffer differs from infer's mask in {} voxels", point.iter().zip(&want).filter(|(a, b)| a != b).count());
    let negative = read_u8(&w.join("negative.u8"), shape);
    let want = infer(&ct, w, "negative", &["--click-ras".into(), ras_arg(&v, liver), "--negative-ras".into(), ras_arg(&v, spleen)]);
    assert!(negative == want, "after the negative point: {} voxels differ from infer", negative.iter().zip(&want).filter(|(a, b)| a != b).count());
    assert!(read_u8(&w.join("undone.u8"), shape) == point, "undo restores the buffer after the first point");
    let bx = read_u8(&w.join("box.u8"), shape);
    let corner = |j: usize, i: usize| ras_arg(&v, [liver[0], j, i]);
    let want = infer(&ct, w, "box", &["--box-ras".into(), format!("{},{}", corner(lo[1], lo[2]), corner(hi[1] - 1, hi[2] - 1))]);
    assert!(bx == want, "the 2D box: {} voxels differ from infer", bx.iter().zip(&want).filter(|(a, b)| a != b).count());
    let refined = read_u8(&w.join("initial_plus_point.u8"), shape);
    let grown = refined.iter().zip(&point).filter(|(a, b)| **a == 1 && **b == 0).count();
    let kept = refined.iter().zip(&point).filter(|(a, b)| **a == 1 && **b == 1).count();
    assert!(kept * 100 >= point.iter().filter(|&&x| x == 1).count() * 95, "the point kept the initial segmentation ({kept} kept, {grown} added)");
    // The client's auto-zoom: on by the capabilities, as `infer`; off, as `infer --no-zoom`.
    assert_eq!(facts["caps"]["do_autozoom"].as_bool(), Some(true));
    let (zoomed, one_scale) = (read_u8(&w.join("small_zoom.u8"), shape), read_u8(&w.join("small_one_scale.u8"), shape));
    assert!(zoomed == infer(&ct, w, "small", &["--click-ras".into(), ras_arg(&v, small)]), "auto-zoom on: the client's buffer differs from infer's");
    assert!(one_scale == infer(&ct, w, "small_one_scale", &["--click-ras".into(), ras_arg(&v, small), "--no-zoom".into()]), "auto-zoom off: the client's buffer differs from infer --no-zoom's");
    assert!(zoomed != one_scale, "the auto-zoom changed nothing on a small structure");
    drop(server);

    // Expiry, capacity, keys and hostile bodies on a small, strict server.
    let strict = start(&["--api-key-file", key_arg, "--max-sessions", "1", "--idle-timeout", "2", "--liveness-timeout", "2", "--max-body-mb", "2"]);
    let k = "0123456789abcdef-test-key";
    assert!(python("auth", &strict.url, w, k).contains("401"));
    assert!(python("capacity", &strict.url, w, k).contains("at capacity"));
    assert!(python("expiry", &strict.url, w, k).contains("expired"));
    let codes: serde_json::Value = serde_json::from_str(python("hostile", &strict.url, w, k).trim()).expect("codes");
    let want = [
        ("garbage_image", 400),
        ("bad_meta", 400),
        ("truncated_image", 400),
        ("huge_shape", 400),
        ("oversized_body", 413),
        ("bad_json", 422),
        ("wrong_types", 422),
        ("point_before_image", 400),
        ("buffer_dtype", 400),
        ("buffer_huge", 413),
        ("no_lease", 410),
        ("unknown_path", 404),
        ("healthz_after", 200),
        ("heartbeat_after", 200),
    ];
    for (what, code) in want {
        assert_eq!(codes[what].as_u64(), Some(code), "{what}: {codes}");
    }
}
