//! A published-format SAM-Med3D checkpoint as the engine's model, end to end: the `.pth` read by
//! the session, a scan with awkward geometry (stored L-S-P, anisotropic, turned 10°), a click
//! and a correction, checked against the reference pipeline computed independently in Python
//! (`tests/oracle/sam_med3d_session.py`: the cube sampled with scipy through the affine, torch's
//! z-score, medim's network at narrow widths and the published depth). The logits agree only
//! if the cube is where the click is, its axes are R, A, S in the network's order, the point's
//! (d, h, w) is right and the previous logits go back in as the mask prompt.

use safetensors::SafeTensors;
use sam3d_engine::engine::{InferRequest, NoHooks, Session};
use sam3d_engine::geometry::{Point3, RasMm, ViewPlane};
use sam3d_engine::prompts::Prompt;
use sam3d_engine::volume::OnGrid;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn expected() -> (Vec<u8>, serde_json::Map<String, serde_json::Value>) {
    let bytes = std::fs::read(data("sam_med3d_session/expected.safetensors")).expect("fixture");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("metadata");
    let meta = meta.metadata().clone().unwrap_or_default();
    let map = meta.into_iter().map(|(k, v)| (k, serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v)))).collect();
    (bytes, map)
}

fn tensor(bytes: &[u8], name: &str) -> Tensor {
    let st = SafeTensors::deserialize(bytes).expect("safetensors");
    let t = st.tensor(name).expect(name);
    let shape: Vec<i64> = t.shape().iter().map(|&x| x as i64).collect();
    let v: Vec<f32> = t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::from_slice(&v).view(shape.as_slice())
}

fn ras(v: &serde_json::Value) -> RasMm {
    let a: Vec<f64> = serde_json::from_value(v.clone()).expect("point");
    RasMm::new(a[0], a[1], a[2])
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn a_click_and_a_correction_match_the_reference_pipeline() {
    let (bytes, meta) = expected();
    let mut s = Session::new();
    let info = s.load_weights(&data("sam_med3d_session/narrow12.pth"), Device::Cpu).expect("the .pth loads");
    assert!(info.describe().contains("narrow12.pth") && info.is_sam_med3d() && info.preset.contains("12 blocks"), "{}", info.describe());
    let vol = Arc::new(sam3d_engine::volume::open(&data("sam_med3d_session/scan.nii.gz")).expect("scan"));
    s.set_volume(vol.clone(), None).expect("volume");

    // A positive click: the reference's logits for the cube centred on it.
    let click = ras(&meta["click_ras"]);
    let r1 = s.infer(&InferRequest::click(click, ViewPlane::Axial), &mut NoHooks).expect("click");
    let low1 = s.foundation_logits().expect("logits");
    let want1 = tensor(&bytes, "low_res_1");
    assert_eq!(low1.size(), want1.size());
    let d1 = max_abs(&low1, &want1);
    let scale = want1.abs().max().double_value(&[]);
    assert!(d1 <= 2e-3 * scale.max(1.0), "first click: logits differ by {d1} (values up to {scale})");

    // The mask on the source grid is where the logits are positive: every voxel of it samples
    // the upsampled logits above zero at its own position in the cube (cell = (RAS − origin) / 1.5).
    let up = want1.upsample_trilinear3d([128, 128, 128], false, None, None, None).view([128, 128, 128]);
    let origin = [click.x() - 96.0, click.y() - 96.0, click.z() - 96.0];
    let (mut inside, mut agree) = (0usize, 0usize);
    for ((k, j, i), &v) in r1.mask.data.indexed_iter() {
        if v == 0 {
            continue;
        }
        inside += 1;
        let p = vol.ras_from_voxel.apply(Point3::new(i as f64, j as f64, k as f64)).to_array();
        let c: Vec<i64> = (0..3).map(|d| ((p[d] - origin[d]) / 1.5).round().clamp(0.0, 127.0) as i64).collect();
        if up.double_value(&[c[0], c[1], c[2]]) > -0.5 {
            agree += 1;
        }
    }
    assert!(inside > 100, "{inside} voxels");
    assert!(agree as f64 >= 0.98 * inside as f64, "{agree} of {inside} mask voxels lie where the reference's logits are positive");
    assert_eq!(r1.mask.data.shape(), vol.data.shape(), "the mask is on the scan's grid");

    // A negative click on the same object: its point and the first step's logits go in.
    let neg = ras(&meta["negative_ras"]);
    let req = InferRequest { prompt: Prompt::negative(neg), plane: ViewPlane::Axial, mask2d: None, object: Some(r1.object) };
    let r2 = s.infer(&req, &mut NoHooks).expect("correction");
    let low2 = s.foundation_logits().expect("logits");
    let d2 = max_abs(&low2, &tensor(&bytes, "low_res_2"));
    assert!(d2 <= 2e-3 * scale.max(1.0), "correction: logits differ by {d2}");
    assert!(max_abs(&low2, &low1) > 0.1, "the correction changed the logits");
    assert!(r2.timings.preprocess_secs < 0.05, "the cube's embedding was reused ({} s preprocessing)", r2.timings.preprocess_secs);
    // The negative point's voxel is never in the result.
    let nv = vol.shape().array_index(vol.voxel_from_ras().apply(neg)).expect("inside");
    assert_eq!(r2.mask.data[[nv.k, nv.j, nv.i]], 0);
    let _ = Kind::Float;
}

#[test]
fn checkpoints_that_are_not_sam_med3d_are_refused_with_what_they_are() {
    let mut s = Session::new();
    let tmp = tempfile::tempdir().expect("tmp");
    let truncated = tmp.path().join("truncated.pth");
    let full = std::fs::read(data("sam_med3d_session/narrow12.pth")).expect("file");
    std::fs::write(&truncated, &full[..full.len() / 2]).expect("write");
    let cases: Vec<(PathBuf, &[&str])> = vec![
        (data("sam_med3d_session/student6.pth"), &["student6.pth", "encoder depth 6", "FastSAM3D student", "missing"]),
        (data("torchfile/sam2d.pth"), &["sam2d.pth", "2-D SAM"]),
        (truncated.clone(), &["truncated.pth"]),
        (data("torchfile/hostile.pth"), &["hostile.pth", "posix.system", "never needs"]),
    ];
    for (path, wants) in cases {
        let e = s.load_weights(&path, Device::Cpu).expect_err("refused").to_string();
        for w in wants {
            assert!(e.contains(w), "{}: {w:?} not in {e}", path.display());
        }
        assert!(e.len() < 4000, "{}: a message of {} characters", path.display(), e.len());
    }
    assert!(s.model_info().is_none(), "nothing was loaded");
}
