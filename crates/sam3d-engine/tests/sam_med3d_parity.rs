//! SAM-Med3D port against the reference (medim 0.1.2 `sam_med3d.py`, PyTorch, float32, CPU):
//! fixtures written by `tests/oracle/sam_med3d_fixtures.py` for a reduced-width configuration of
//! the same architecture (128³ input, 16³ patches, 8³ grid padded to the 14-token window, global
//! blocks, decomposed relative positions; see the script's docstring). Random weights, so every
//! part of the arithmetic shows in the outputs.
//!
//! Tolerance: 1e-4 absolute on the image embedding (values up to 4.3) and on the logits (±3.9),
//! the issue's bar. The port uses the same ATen kernels in the same order, and on this machine
//! (libtorch of tch 0.26 vs PyTorch 2.13) the differences are exactly 0; the bar leaves room for
//! another libtorch build's reassociation (~1e-6 relative). Deliberate breaks, each tried once
//! while writing this, all fail it by far: windowed blocks without the 14³ zero padding (embedding
//! off by 1.2), the textbook rel-pos broadcasting instead of the reference's (0.50), the dense
//! positional encoding without its first-two-axes swap (logits 0.18), `align_corners = true`
//! in the upsampling (1.1), a point given as (w, h, d) or (h, d, w) instead of (d, h, w) (0.9–1.1).

use safetensors::SafeTensors;
use sam3d_engine::model::checkpoint::{StFile, shapes_of};
use sam3d_engine::model::sam_med3d::{SamMed3d, SamMed3dConfig};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor, nn};

const TOL: f64 = 1e-4;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sam_med3d").join(name)
}

struct Fixture {
    net: SamMed3d,
    _vs: nn::VarStore,
    fx: StFile,
    cfg: SamMed3dConfig,
}

fn load() -> Fixture {
    tch::set_num_threads(2);
    let weights = StFile::read(&data("weights.safetensors")).expect("fixture weights");
    let fx = StFile::read(&data("fixture.safetensors")).expect("fixture outputs");
    let cfg: SamMed3dConfig = serde_json::from_str(&fx.metadata["config"]).expect("config in the fixture's metadata");
    assert_eq!(cfg, SamMed3dConfig::reduced(), "the fixture's config is the reduced preset");
    let cfg_from_file = SamMed3dConfig::from_shapes(&weights.shapes()).expect("architecture from the reference's state dict");
    assert_eq!(cfg_from_file, cfg, "from_shapes reads the reference's state dict");

    let vs = nn::VarStore::new(Device::Cpu);
    let net = SamMed3d::new(&vs.root(), &cfg);
    let vars = vs.variables();
    let m = weights.compare(&shapes_of(&vars), "checkpoint");
    assert!(m.is_empty(), "the reference's state-dict keys and shapes are the port's: {m}");
    weights.copy_into(&vars).expect("copy weights");
    Fixture { net, _vs: vs, fx, cfg }
}

fn t(fx: &StFile, name: &str) -> Tensor {
    fx.tensor(name).unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"))
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

fn image(f: &Fixture) -> Tensor {
    let s = f.cfg.img_size;
    let img = t(&f.fx, "image_field").upsample_trilinear3d([s, s, s], false, None, None, None);
    let sum_ref = t(&f.fx, "image_sum").double_value(&[0]);
    let sum = img.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
    assert!((sum - sum_ref).abs() < 1e-3 * sum_ref.abs().max(1.0), "image sum {sum} vs reference {sum_ref}");
    let slice_diff = max_abs(&img.get(0).get(0).get(37), &t(&f.fx, "image_slice"));
    assert!(slice_diff < 1e-6, "image slice differs by {slice_diff}");
    img
}

#[derive(serde::Deserialize)]
struct Case {
    points: Option<Vec<Vec<[f32; 3]>>>,
    labels: Option<Vec<Vec<i64>>>,
    mask: Option<String>,
}

fn cases(f: &Fixture) -> Vec<(String, Case)> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&f.fx.metadata["cases"]).expect("cases");
    map.into_iter().map(|(k, v)| (k, serde_json::from_value(v).expect("case"))).collect()
}

fn prompts(c: &Case) -> Option<(Tensor, Tensor)> {
    let pts = c.points.as_ref()?;
    let b = pts.len() as i64;
    let n = pts[0].len() as i64;
    let flat: Vec<f32> = pts.iter().flatten().flatten().copied().collect();
    let labels: Vec<i64> = c.labels.as_ref().expect("labels").iter().flatten().copied().collect();
    Some((Tensor::from_slice(&flat).reshape([b, n, 3]), Tensor::from_slice(&labels).reshape([b, n])))
}

fn mask_bits(f: &Fixture, name: &str) -> Option<Tensor> {
    let bytes = std::fs::read(data("fixture.safetensors")).expect("fixture");
    let st = SafeTensors::deserialize(&bytes).expect("fixture parses");
    let v = st.tensor(&format!("{name}.mask_bits")).ok()?;
    let bits: Vec<u8> = v.data().iter().flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1)).collect();
    let s = f.cfg.img_size;
    Some(Tensor::from_slice(&bits).reshape([s, s, s]).to_kind(Kind::Bool))
}

#[test]
fn sam_med3d_matches_the_reference() {
    let f = load();
    let _g = tch::no_grad_guard();
    let img = image(&f);
    let emb = f.net.image_embedding(&img).expect("embedding");
    let emb_ref = t(&f.fx, "embedding");
    let d_emb = max_abs(&emb, &emb_ref);
    println!("image embedding {:?}: max abs diff {d_emb:.2e} (values up to {:.2})", emb.size(), emb_ref.abs().max().double_value(&[]));
    assert!(d_emb <= TOL, "image embedding differs by {d_emb}");

    let s = f.cfg.img_size;
    let (stride, offset) = (8, 3);
    let idx = Tensor::arange_start_step(offset, s, stride, (Kind::Int64, Device::Cpu));
    for (name, case) in cases(&f) {
        let p = prompts(&case);
        let mask_prompt = case.mask.as_ref().map(|m| t(&f.fx, &format!("{m}.low_res")));
        let (low, iou) = f.net.decode(&emb, p.as_ref().map(|(c, l)| (c, l)), mask_prompt.as_ref()).expect("decode");
        let low_ref = t(&f.fx, &format!("{name}.low_res"));
        let d_low = max_abs(&low, &low_ref);
        let d_iou = max_abs(&iou, &t(&f.fx, &format!("{name}.iou")));
        let up = f.net.upsample(&low, [s, s, s]);
        let sample = up.get(0).get(0).index_select(0, &idx).index_select(1, &idx).index_select(2, &idx);
        let d_up = max_abs(&sample, &t(&f.fx, &format!("{name}.up_sample")));
        println!(
            "{name}: low-res {:?} max abs diff {d_low:.2e} (range ±{:.2}), iou {d_iou:.2e}, upsampled {d_up:.2e}",
            low.size(),
            low_ref.abs().max().double_value(&[])
        );
        assert!(d_low <= TOL, "{name}: low-res logits differ by {d_low}");
        assert!(d_iou <= TOL, "{name}: IoU differs by {d_iou}");
        assert!(d_up <= TOL, "{name}: upsampled logits differ by {d_up}");
        if let Some(bits) = mask_bits(&f, &name) {
            let ours = up.get(0).get(0).gt(0.0);
            let differ = ours.logical_xor(&bits);
            let n_differ = differ.sum(Kind::Int64).int64_value(&[]);
            let n_fg = bits.sum(Kind::Int64).int64_value(&[]);
            // A voxel may only flip where its logit is within the tolerance of 0.
            let near_zero = up.get(0).get(0).abs().le(TOL);
            let bad = differ.logical_and(&near_zero.logical_not()).sum(Kind::Int64).int64_value(&[]);
            println!("{name}: final {s}³ mask: {n_fg} foreground voxels in the reference, {n_differ} differ");
            assert_eq!(bad, 0, "{name}: {n_differ} mask voxels differ, {bad} of them with |logit| > {TOL}");
        }
    }
}

/// The point-coordinate convention. Points are given as (d, h, w): indices along axes 2, 3, 4 of
/// the `[B, 1, D, H, W]` image tensor (SAM-Med3D's training clicks are `torch.argwhere` of the
/// `[D, H, W]` mask). The reference and the port agree for a point with d ≠ h ≠ w given in that
/// order, and any other order of the same three numbers moves the logits far beyond the
/// tolerance — so a caller that passes (x, y, z) = (w, h, d) gets a different answer, here as
/// in the reference.
#[test]
fn sam_med3d_point_order_is_d_h_w() {
    let f = load();
    let _g = tch::no_grad_guard();
    let emb = t(&f.fx, "embedding");
    let case = cases(&f).into_iter().find(|(n, _)| n == "one_point").expect("one_point case").1;
    let pts = case.points.as_ref().expect("points")[0][0];
    assert!(pts[0] != pts[1] && pts[1] != pts[2] && pts[0] != pts[2], "the fixture's point has distinct d, h, w");
    let low_ref = t(&f.fx, "one_point.low_res");
    let labels = Tensor::from_slice(&[1i64]).reshape([1, 1]);
    let run = |c: [f32; 3]| {
        let coords = Tensor::from_slice(&c).reshape([1, 1, 3]);
        let (low, _) = f.net.decode(&emb, Some((&coords, &labels)), None).expect("decode");
        max_abs(&low, &low_ref)
    };
    let [d, h, w] = pts;
    let same = run([d, h, w]);
    println!("point (d,h,w)=({d},{h},{w}): max abs diff {same:.2e}");
    assert!(same <= TOL, "the point in (d, h, w) order matches the reference ({same})");
    for (what, c) in [("(w,h,d)", [w, h, d]), ("(h,d,w)", [h, d, w]), ("(d,w,h)", [d, w, h])] {
        let diff = run(c);
        println!("point given as {what}: max abs diff {diff:.2e}");
        assert!(diff > 100.0 * TOL, "{what} would be indistinguishable ({diff})");
    }
}

/// The reference's dense positional encoding pairs a point's *first* coordinate with the token
/// grid's *second* axis: the point at input voxel (16·i1 + 7.5, 16·i0 + 7.5, 16·i2 + 7.5) has
/// exactly the encoding of grid cell (i0, i1, i2). The port reproduces this (the trained
/// weights expect it); this test pins it so that nobody "fixes" it.
#[test]
fn sam_med3d_dense_pe_swaps_the_first_two_axes() {
    let f = load();
    let _g = tch::no_grad_guard();
    let pe = f.net.prompt_encoder.dense_pe();
    assert_eq!(pe.size(), vec![1, 48, 8, 8, 8]);
    let (i0, i1, i2) = (1i64, 5i64, 6i64);
    let cell = pe.get(0).select(1, i0).select(1, i1).select(1, i2);
    let at = |c: [f32; 3]| f.net.prompt_encoder.point_pe(&Tensor::from_slice(&c).reshape([1, 1, 3])).reshape([-1]);
    let v = |i: i64| 16.0 * i as f32 + 7.5;
    let swapped = max_abs(&at([v(i1), v(i0), v(i2)]), &cell);
    let straight = max_abs(&at([v(i0), v(i1), v(i2)]), &cell);
    assert!(swapped < 1e-5, "point (16·i1+7.5, 16·i0+7.5, 16·i2+7.5) has the encoding of grid cell (i0, i1, i2): {swapped}");
    assert!(straight > 0.1, "the unswapped point does not: {straight}");
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(f64::NAN) / 1024.0
}

/// Full size (vit_b), random weights: parity on the reference's outputs and timing next to
/// PyTorch's. Needs the files written by
/// `tests/oracle/sam_med3d_fixtures.py --full-checkpoint PATH` (see its docstring):
///
/// ```text
/// SAM_MED3D_FULL=/tmp/sam_med3d_random.pth cargo test --release --workspace \
///     --test sam_med3d_parity -- --ignored --nocapture sam_med3d_full_size
/// ```
///
/// Weights are read from `PATH.safetensors` (the `.pth` itself is the torch-file reader's
/// business). Two threads, as the script's PyTorch timing; run the two back to back on an idle
/// machine for a fair ratio.
#[test]
#[ignore = "needs a full-size checkpoint written by the oracle script (SAM_MED3D_FULL)"]
fn sam_med3d_full_size() {
    let Ok(base) = std::env::var("SAM_MED3D_FULL") else {
        panic!("set SAM_MED3D_FULL to the PATH given to tests/oracle/sam_med3d_fixtures.py --full-checkpoint");
    };
    tch::set_num_threads(2);
    let _g = tch::no_grad_guard();
    let weights = StFile::read(std::path::Path::new(&format!("{base}.safetensors"))).expect("PATH.safetensors");
    let outputs = StFile::read(std::path::Path::new(&format!("{base}.outputs.safetensors"))).expect("PATH.outputs.safetensors");
    let bench: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{base}.bench.json")).expect("PATH.bench.json")).expect("bench json");
    let cfg = SamMed3dConfig::from_shapes(&weights.shapes()).expect("architecture");
    assert_eq!(cfg, SamMed3dConfig::vit_b());
    let vs = nn::VarStore::new(Device::Cpu);
    let net = SamMed3d::new(&vs.root(), &cfg);
    let vars = vs.variables();
    let m = weights.compare(&shapes_of(&vars), "checkpoint");
    assert!(m.is_empty(), "{m}");
    weights.copy_into(&vars).expect("copy");
    drop(weights);

    // The fixture image (same 32³ field, same upsampling) and the "points" case.
    let fx = StFile::read(&data("fixture.safetensors")).expect("fixture");
    let img = t(&fx, "image_field").upsample_trilinear3d([128, 128, 128], false, None, None, None);
    let coords = Tensor::from_slice(&[40f32, 70., 100., 90., 20., 60.]).reshape([1, 2, 3]);
    let labels = Tensor::from_slice(&[1i64, 0]).reshape([1, 2]);

    let _ = net.image_embedding(&img).expect("warm-up");
    let t0 = std::time::Instant::now();
    let emb = net.image_embedding(&img).expect("embedding");
    let enc_secs = t0.elapsed().as_secs_f64();
    let _ = net.decode(&emb, Some((&coords, &labels)), None).expect("warm-up");
    let n = 5;
    let t0 = std::time::Instant::now();
    let mut out = None;
    for _ in 0..n {
        let (low, iou) = net.decode(&emb, Some((&coords, &labels)), None).expect("decode");
        let _ = net.upsample(&low, [128, 128, 128]);
        out = Some((low, iou));
    }
    let dec_secs = t0.elapsed().as_secs_f64() / n as f64;
    let (low, iou) = out.expect("decoded");

    let d_emb = max_abs(&emb, &t(&outputs, "embedding"));
    let d_low = max_abs(&low, &t(&outputs, "low_res"));
    let d_iou = max_abs(&iou, &t(&outputs, "iou"));
    let py_enc = bench["encoder_secs"].as_f64().unwrap_or(f64::NAN);
    let py_dec = bench["decoder_secs"].as_f64().unwrap_or(f64::NAN);
    let py_rss = bench["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
    println!("full size (vit_b, random weights): max abs diff embedding {d_emb:.2e}, low-res logits {d_low:.2e}, iou {d_iou:.2e}");
    println!("encoder: tch {enc_secs:.2} s, PyTorch {py_enc:.2} s, ratio tch/PyTorch {:.2}", enc_secs / py_enc);
    println!("decoder + upsample per prompt: tch {:.1} ms, PyTorch {:.1} ms, ratio {:.2}", dec_secs * 1e3, py_dec * 1e3, dec_secs / py_dec);
    println!("peak RSS: tch process {:.0} MB, PyTorch process {py_rss:.0} MB (each including its own weights)", peak_rss_mb());
    assert!(d_emb <= TOL && d_low <= TOL && d_iou <= TOL, "full-size parity");
}
