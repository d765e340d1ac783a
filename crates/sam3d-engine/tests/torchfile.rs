//! The PyTorch checkpoint reader (`model::torchfile`) against files torch.save wrote
//! (tests/oracle/torchfile_fixtures.py; what torch.load reads back is in expected.json).

use sam3d_engine::model::ModelError;
use sam3d_engine::model::torchfile::{self, DType, Family, TorchFile, Value};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/torchfile").join(name)
}

fn expected() -> Json {
    let text = std::fs::read_to_string(data("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("expected.json parses")
}

fn shapes(j: &Json) -> Vec<(String, Vec<i64>)> {
    j.as_array()
        .expect("shape list")
        .iter()
        .map(|p| (p[0].as_str().expect("name").to_string(), p[1].as_array().expect("shape").iter().map(|x| x.as_i64().expect("dim")).collect()))
        .collect()
}

fn open_err(name: &str) -> String {
    match TorchFile::open(&data(name)) {
        Ok(_) => panic!("{name} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// Every tensor of the file against torch.load's dtype, shape, strides, offset and values.
fn assert_tensors_match(sd: &torchfile::StateDict, facts: &serde_json::Map<String, Json>) {
    let names: Vec<&str> = facts["names"].as_array().expect("names").iter().map(|n| n.as_str().expect("name")).collect();
    assert_eq!(sd.iter().map(|(n, _)| n).collect::<Vec<_>>(), names);
    for (name, t) in sd.iter() {
        let f = &facts[name];
        assert_eq!(t.dtype.name(), f["dtype"].as_str().expect("dtype"), "{name}");
        let ints = |k: &str| -> Vec<i64> { f[k].as_array().expect(k).iter().map(|x| x.as_i64().expect("int")).collect() };
        assert_eq!(t.shape, ints("shape"), "{name}");
        assert_eq!(t.strides, ints("stride"), "{name}");
        assert_eq!(t.offset, f["offset"].as_i64().expect("offset"), "{name}");
        assert_eq!(t.is_contiguous(), f["contiguous"].as_bool().expect("contiguous"), "{name}");
        assert_eq!(t.parameter, f["parameter"].as_bool().expect("parameter"), "{name}");
        let want = f["values"].as_array().expect("values");
        if t.dtype.is_float() {
            let got: Vec<u64> = t.to_f64_vec().expect("read").iter().map(|x| x.to_bits()).collect();
            let want: Vec<u64> = want.iter().map(|x| x.as_u64().expect("float64 bits")).collect();
            assert_eq!(got, want, "{name}");
        } else if t.dtype == DType::Bool {
            let got = t.to_i64_vec().expect("read").expect("bool");
            let want: Vec<i64> = want.iter().map(|x| i64::from(x.as_bool().expect("bool"))).collect();
            assert_eq!(got, want, "{name}");
        } else {
            let got = t.to_i64_vec().expect("read").expect("ints");
            let want: Vec<i64> = want.iter().map(|x| x.as_i64().expect("int")).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}

#[test]
fn distributed_layout_reads_back_exactly() {
    let e = expected();
    let ex = &e["distributed.pth"];
    let f = TorchFile::open(&data("distributed.pth")).expect("opens");
    let sd = f.state_dict().expect("weights");
    assert_eq!(sd.source_key.as_deref(), Some("model_state_dict"));
    assert!(!sd.stripped_module_prefix);
    assert_tensors_match(&sd, ex["tensors"].as_object().expect("tensors"));

    // Two tensors cut from one storage share it (one read for both).
    let a = sd.get("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix").expect("a");
    let b = sd.get("prompt_encoder.not_a_point_embed.weight").expect("b");
    assert!(Arc::ptr_eq(&a.storage, &b.storage));
    assert_eq!((a.offset, b.offset), (0, 13));
    assert_eq!(a.storage.numel, 20);
    let lin = sd.get("image_encoder.blocks.0.mlp.lin1.weight").expect("transposed");
    assert_eq!((lin.shape.clone(), lin.strides.clone()), (vec![16, 8], vec![1, 16]));

    // The rest of the file.
    let s = f.summary();
    let keys: Vec<String> = ex["top_level_keys"].as_array().expect("keys").iter().map(|k| k.as_str().expect("key").to_string()).collect();
    assert_eq!(s.top_level_keys, keys);
    assert_eq!(s.epoch, Some(12));
    let arg = |k: &str| s.args.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(arg("model_type").as_deref(), Some("\"vit_b_ori\""));
    assert_eq!(arg("img_size").as_deref(), Some("128"));
    assert_eq!(arg("gpu_ids").as_deref(), Some("[0, 1]"));
    assert_eq!(s.args.len(), ex["args"].as_object().expect("args").len());
    // numpy scalars become numbers.
    assert!(matches!(f.root().get("best_loss"), Some(Value::Float(x)) if *x == ex["best_loss"].as_f64().expect("best_loss")));
    match f.root().get("losses") {
        Some(Value::List(l)) => assert!(matches!(l.as_slice(), [Value::Float(a), Value::Float(b)] if *a == 0.5 && *b == 0.25)),
        other => panic!("losses: {other:?}"),
    }
    // collections.Counter (MultiStepLR's milestones) is a dict; a numpy array stays an object.
    let sched = f.root().get("lr_scheduler_state_dict").expect("scheduler");
    match sched.get("milestones") {
        Some(Value::Dict(items)) => assert_eq!(items.len(), 2),
        other => panic!("milestones: {other:?}"),
    }
    assert!(matches!(f.root().get("sizes"), Some(Value::Object { class, .. }) if class == "numpy.ndarray"));
    // The optimizer state holds tensors too (not weights).
    let opt = f.root().get("optimizer_state_dict").expect("optimizer");
    assert!(matches!(opt.get("state"), Some(Value::Dict(d)) if d.len() == 2));
    let text = s.to_string();
    assert!(text.contains("from 'model_state_dict'"), "{text}");
    assert!(text.contains("epoch: 12"), "{text}");
    assert!(!text.contains("read onto the CPU"), "{text}");
}

#[test]
fn conversion_to_tch_keeps_values() {
    let sd = TorchFile::open(&data("distributed.pth")).expect("opens").state_dict().expect("weights");
    let all = sd.to_tch(Device::Cpu, Kind::Float).expect("converts");
    assert_eq!(all.len(), sd.len());
    for ((name, t), (_, r)) in all.iter().zip(sd.iter()) {
        let want_kind = if r.dtype.is_float() { Kind::Float } else { r.dtype.kind() };
        assert_eq!(t.kind(), want_kind, "{name}");
        assert_eq!(t.size(), r.shape, "{name}");
        let got: Vec<f64> = Vec::<f64>::try_from(&t.to_kind(Kind::Double).reshape([-1])).expect("values");
        let want: Vec<f64> = r.to_f64_vec().expect("read").into_iter().map(|x| if r.dtype.is_float() { f64::from(x as f32) } else { x }).collect();
        assert_eq!(got, want, "{name}");
    }
    // copy_into a set of variables of the same names.
    let vars: std::collections::HashMap<String, tch::Tensor> = sd
        .iter()
        .filter(|(_, t)| t.dtype.is_float())
        .map(|(n, t)| (n.to_string(), tch::Tensor::zeros(t.shape.as_slice(), (Kind::Float, Device::Cpu))))
        .collect();
    sd.copy_into(&vars).expect("copies");
    let w = &vars["image_encoder.blocks.0.mlp.lin1.weight"];
    let r = sd.get("image_encoder.blocks.0.mlp.lin1.weight").expect("lin1");
    let got: Vec<f32> = Vec::<f32>::try_from(&w.reshape([-1])).expect("values");
    let want: Vec<f32> = r.to_f64_vec().expect("read").into_iter().map(|x| x as f32).collect();
    assert_eq!(got, want);
}

#[test]
fn dataparallel_prefix_is_removed() {
    let e = expected();
    let f = TorchFile::open(&data("dataparallel.pth")).expect("opens");
    let sd = f.state_dict().expect("weights");
    assert_eq!(sd.source_key, None);
    assert!(sd.stripped_module_prefix);
    let names: Vec<&str> = sd.iter().map(|(n, _)| n).collect();
    let want: Vec<String> =
        e["dataparallel.pth"]["tensors"]["names"].as_array().expect("names").iter().map(|k| k.as_str().expect("name")["module.".len()..].to_string()).collect();
    assert_eq!(names, want);
    let text = f.summary().to_string();
    assert!(text.contains("from the top-level dict, `module.` prefix (nn.DataParallel) removed"), "{text}");
}

#[test]
fn cuda_and_mps_storages_are_read_on_the_cpu() {
    let e = expected();
    let f = TorchFile::open(&data("cuda.pth")).expect("opens");
    let sd = f.state_dict().expect("weights");
    let locations: Vec<&str> = sd.iter().map(|(_, t)| t.storage.location.as_str()).collect();
    assert_eq!(locations, ["cuda:1", "mps"]);
    assert_tensors_match(&sd, e["cuda.pth"]["tensors"].as_object().expect("tensors"));
    let all = sd.to_tch(Device::Cpu, Kind::Float).expect("converts");
    assert!(all.iter().all(|(_, t)| t.device() == Device::Cpu));
    let text = f.summary().to_string();
    assert!(text.contains("saved from cuda:1, mps tensors; read onto the CPU"), "{text}");
}

#[test]
fn big_endian_files_are_swapped() {
    let e = expected();
    let f = TorchFile::open(&data("big_endian.pth")).expect("opens");
    assert!(f.big_endian);
    assert_tensors_match(&f.state_dict().expect("weights"), e["big_endian.pth"]["tensors"].as_object().expect("tensors"));
}

#[test]
fn key_sets_say_what_the_file_looks_like() {
    let e = expected();
    let teacher = shapes(&e["tiny_sam_med3d.pth"]["shapes"]);
    let full = shapes(&e["sam_med3d_vit_b_shapes"]);
    assert_eq!(full.len(), 324);
    assert_eq!(torchfile::describe(&full), "SAM-Med3D ViT-B (12 encoder blocks, width 768, 3-D patch kernel [768, 1, 16, 16, 16])");

    // The tiny teacher fits its own list, and reads as SAM-Med3D's architecture.
    let sd = TorchFile::open(&data("tiny_sam_med3d.pth")).expect("opens").state_dict().expect("weights");
    assert_eq!(sd.shapes(), teacher);
    torchfile::check(&sd, &teacher).expect("fits");
    assert!(matches!(sd.family(), Family::Sam3d { depth: 12, width: 8, .. }));
    // Against the full-size model: every width differs.
    let m = torchfile::check(&sd, &full).expect_err("tiny vs full");
    assert!(m.missing.is_empty() && m.unexpected.is_empty());
    assert_eq!(m.misshaped.len(), full.iter().zip(&teacher).filter(|(a, b)| a.1 != b.1).count());
    let text = m.to_string();
    assert!(text.contains("the file looks like SAM-Med3D's architecture at width 8"), "{text}");
    assert!(text.contains("the model is SAM-Med3D ViT-B"), "{text}");
    assert!(text.contains("image_encoder.patch_embed.proj.weight (file [8, 1, 4, 4, 4], model [768, 1, 16, 16, 16])"), "{text}");

    // The 6-block student: blocks 6–11 missing.
    let sd = TorchFile::open(&data("student6.pth")).expect("opens").state_dict().expect("weights");
    let m = torchfile::check(&sd, &teacher).expect_err("student");
    let text = m.to_string();
    assert!(text.contains("encoder depth 6 — a distilled FastSAM3D student, not SAM-Med3D"), "{text}");
    assert!(m.unexpected.is_empty());
    assert!(!m.missing.is_empty() && m.missing.iter().all(|n| (6..12).any(|b| n.starts_with(&format!("image_encoder.blocks.{b}.")))));
    assert!(m.missing.iter().any(|n| n == "image_encoder.blocks.11.attn.qkv.weight"));
    assert!(text.starts_with(&format!("{}: this checkpoint does not fit the model", data("student6.pth").display())), "{text}");

    // The one-call form returns the model layer's error.
    match torchfile::open_checked(&data("student6.pth"), &teacher) {
        Err(ModelError::Mismatch(m)) => assert!(m.missing.iter().any(|n| n == "image_encoder.blocks.6.norm1.weight")),
        other => panic!("student6 through open_checked: {other:?}"),
    }
    let sd = torchfile::open_checked(&data("tiny_sam_med3d.pth"), &teacher).expect("teacher fits");
    // Variables of a model with the teacher's names and shapes give the same expected list.
    let vars: std::collections::HashMap<String, tch::Tensor> =
        teacher.iter().map(|(n, s)| (n.clone(), tch::Tensor::zeros(s.as_slice(), (Kind::Float, Device::Cpu)))).collect();
    torchfile::check(&sd, &torchfile::expected_from_vars(&vars)).expect("fits its variables");
    sd.copy_into(&vars).expect("copies");
    let w = sd.get("mask_decoder.iou_token.weight").expect("iou token").to_f64_vec().expect("read");
    let got: Vec<f32> = Vec::<f32>::try_from(&vars["mask_decoder.iou_token.weight"].reshape([-1])).expect("values");
    assert_eq!(got, w.iter().map(|&x| x as f32).collect::<Vec<_>>());

    // A 2-D SAM: 2-D kernels, no rel_pos_d.
    let sd = TorchFile::open(&data("sam2d.pth")).expect("opens").state_dict().expect("weights");
    let m = torchfile::check(&sd, &teacher).expect_err("2-D");
    let text = m.to_string();
    assert!(text.contains("a 2-D SAM checkpoint (patch kernel [8, 3, 4, 4], 12 encoder blocks)"), "{text}");
    assert_eq!(m.missing.len(), 12);
    assert!(m.missing.iter().all(|n| n.ends_with(".attn.rel_pos_d")));
    assert!(m.misshaped.iter().any(|(n, f, w)| n == "image_encoder.patch_embed.proj.weight" && f == &[8, 3, 4, 4] && w == &[8, 1, 4, 4, 4]));
}

#[test]
fn refusals_name_the_file_and_the_problem() {
    let e = expected();
    for name in ["hostile.pth", "hostile_eval.pth"] {
        let msg = open_err(name);
        let global = e[name]["global"].as_str().expect("global");
        assert!(msg.starts_with(&data(name).display().to_string()), "{msg}");
        assert!(msg.contains(&format!("asks for `{global}`, which a checkpoint never needs; not loaded")), "{msg}");
    }
    let msg = open_err("legacy.pth");
    assert!(msg.contains("legacy format") && msg.contains("re-save it with PyTorch ≥ 1.6"), "{msg}");
    let msg = open_err("torchscript.pt");
    assert!(msg.contains("a TorchScript archive (torch.jit.save)"), "{msg}");
    let msg = open_err("bad_view.pth");
    assert!(msg.contains("tensor (shape [40], strides [1], offset 0) reaches element 39 of storage data/0, which holds 4 float32 elements"), "{msg}");
    let msg = open_err("bad_storage.pth");
    assert!(msg.contains("storage data/0 holds 16 bytes, but 5 float32 elements need 20"), "{msg}");
    let msg = open_err("expected.json");
    assert!(msg.contains("not a PyTorch checkpoint"), "{msg}");
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.pth");
    std::fs::write(&empty, b"").expect("write");
    let msg = TorchFile::open(&empty).expect_err("empty").to_string();
    assert!(msg.ends_with("empty file"), "{msg}");
    // A safetensors file.
    let st = dir.path().join("w.pth");
    std::fs::write(&st, b"\x02\x00\x00\x00\x00\x00\x00\x00{}").expect("write");
    let msg = TorchFile::open(&st).expect_err("safetensors").to_string();
    assert!(msg.contains("a safetensors file"), "{msg}");
}

/// Opens and reads everything; must return (Ok or Err) without panicking.
fn read_all(path: &Path) -> Result<(), ModelError> {
    let f = TorchFile::open(path)?;
    let _ = f.summary().to_string();
    let sd = f.state_dict()?;
    for (_, t) in sd.iter() {
        let _ = t.to_f64_vec();
    }
    let _ = sd.to_tch(Device::Cpu, Kind::Float)?;
    Ok(())
}

#[test]
fn truncations_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["distributed.pth", "cuda.pth", "dataparallel.pth"] {
        let bytes = std::fs::read(data(name)).expect("read");
        let p = dir.path().join(name);
        let mut refused = 0;
        let cuts: Vec<usize> = (0..bytes.len()).step_by(7).chain(bytes.len().saturating_sub(300)..bytes.len()).collect();
        for &cut in &cuts {
            std::fs::write(&p, &bytes[..cut]).expect("write");
            let r = std::panic::catch_unwind(|| read_all(&p));
            match r {
                Ok(Ok(())) => panic!("{name} cut at {cut} of {} was read as complete", bytes.len()),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    assert!(msg.starts_with(&p.display().to_string()), "{msg}");
                    refused += 1;
                }
                Err(_) => panic!("{name} cut at {cut}: panic"),
            }
        }
        assert_eq!(refused, cuts.len());
    }
}

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn byte_flips_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x5eed_2300);
    for name in ["distributed.pth", "tiny_sam_med3d.pth", "cuda.pth"] {
        let bytes = std::fs::read(data(name)).expect("read");
        let p = dir.path().join(name);
        for _ in 0..300 {
            let mut b = bytes.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() % b.len() as u64) as usize;
                b[at] ^= 1 << (rng.next() % 8);
            }
            std::fs::write(&p, &b).expect("write");
            if std::panic::catch_unwind(|| read_all(&p)).is_err() {
                panic!("{name}: panic on a flipped file");
            }
        }
    }
}

/// The pickle reader alone, on data.pkl with flipped, inserted and deleted bytes (the archive's
/// CRC would otherwise stop most of them before the pickle is read).
#[test]
fn pickle_mutations_never_panic() {
    let bytes = std::fs::read(data("distributed.pth")).expect("read");
    let mut file = std::fs::File::open(data("distributed.pth")).expect("open");
    let archive = torchfile::zip::Archive::open(&mut file).expect("archive");
    let entry = archive.entries.get("distributed/data.pkl").expect("data.pkl").clone();
    let (off, len) = archive.data_range(&mut file, &entry).expect("range");
    let pkl = bytes[off as usize..(off + len) as usize].to_vec();
    let mut pl = |_: &Value| -> Result<Arc<torchfile::Storage>, String> { Err("no storage".into()) };
    assert!(torchfile::pickle::load(&pkl, &mut pl).expect_err("needs storages").contains("no storage"));
    let mut rng = Rng(0xfeed_beef);
    for i in 0..20000 {
        let mut b = pkl.clone();
        match i % 3 {
            0 => {
                let at = (rng.next() % b.len() as u64) as usize;
                b[at] = rng.next() as u8;
            }
            1 => {
                let at = (rng.next() % b.len() as u64) as usize;
                b.insert(at, rng.next() as u8);
            }
            _ => {
                let at = (rng.next() % b.len() as u64) as usize;
                b.truncate(at);
            }
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut pl = |_: &Value| -> Result<Arc<torchfile::Storage>, String> { Err("no storage".into()) };
            let _ = torchfile::pickle::load(&b, &mut pl);
        }));
        assert!(r.is_ok(), "panic on mutation {i}");
    }
}

/// The full-size file written by `torchfile_fixtures.py --full` (not committed):
/// `SAM3D_FULL_PTH=/tmp/sam_med3d_full_random.pth cargo test --release --workspace --test torchfile -- --ignored --nocapture`
#[test]
#[ignore]
fn full_size_sam_med3d_bench() {
    let path = PathBuf::from(std::env::var("SAM3D_FULL_PTH").unwrap_or_else(|_| "/tmp/sam_med3d_full_random.pth".into()));
    let side: Json = serde_json::from_str(&std::fs::read_to_string(format!("{}.json", path.display())).expect("sidecar json")).expect("json");
    let expected = shapes(&side["shapes"]);
    let rss = || -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    let t0 = std::time::Instant::now();
    let f = TorchFile::open(&path).expect("opens");
    let sd = f.state_dict().expect("weights");
    let open_secs = t0.elapsed().as_secs_f64();
    torchfile::check(&sd, &expected).expect("fits SAM-Med3D ViT-B");
    println!("{}", f.summary());
    let peak_open = rss();
    let t1 = std::time::Instant::now();
    let tensors = sd.to_tch(Device::Cpu, Kind::Float).expect("converts");
    let convert_secs = t1.elapsed().as_secs_f64();
    let bytes: i64 = tensors.iter().map(|(_, t)| t.numel() as i64 * 4).sum();
    println!(
        "open + pickle + state dict: {open_secs:.3} s (peak RSS {} MB); to tch f32: {convert_secs:.2} s, {} MB of tensors, peak RSS {} MB",
        peak_open / 1024,
        bytes >> 20,
        rss() / 1024
    );
    let sums = side["sums"].as_object().expect("sums");
    for (name, t) in &tensors {
        let want = sums[name].as_f64().expect("sum");
        let got = t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]);
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "{name}: sum {got} vs {want}");
    }
}
