//! LoRA on a loaded SAM-Med3D checkpoint (`narrow12.pth`: the published architecture, 12
//! blocks, narrow widths): a fresh adapter changes no logit; a few AdamW steps on the adapter
//! lower the loss of the training cube and leave every base weight as it was; the saved
//! adapter, loaded onto a fresh copy of the base, gives the same logits bit for bit; an adapter
//! is refused on another base (naming both) and when its tensors do not fit; the session runs
//! clicks with it and reports it; `train` runs end to end from a config file and resumes.

use sam3d_engine::data::phantom::Rng;
use sam3d_engine::data::train_samples::TrainCase;
use sam3d_engine::engine::sam_med3d::Foundation;
use sam3d_engine::engine::train::{AdamW, TrainConfig, write_phantoms};
use sam3d_engine::engine::train_sam_med3d::{make_sample, sample_loss};
use sam3d_engine::engine::{InferRequest, NoHooks, Session};
use sam3d_engine::geometry::ViewPlane;
use sam3d_engine::model::LoraConfig;
use sam3d_engine::model::checkpoint::{self, StFile};
use sam3d_engine::volume::{Modality, OnGrid};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

fn narrow12() -> PathBuf {
    data("sam_med3d_session/narrow12.pth")
}

/// libtorch's generator is global: seeded runs must not interleave.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    tch::set_num_threads(1);
    TORCH.lock().unwrap_or_else(|e| e.into_inner())
}

fn lora(rank: usize) -> LoraConfig {
    LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0, targets: Vec::new() }
}

/// A fixed input cube and two clicks (one negative).
fn input() -> (Tensor, Tensor, Tensor) {
    let _g = tch::no_grad_guard();
    tch::manual_seed(11);
    let image = Tensor::randn([1, 1, 128, 128, 128], (Kind::Float, Device::Cpu));
    let pts = Tensor::from_slice(&[64.0f32, 60.0, 70.0, 20.0, 100.0, 30.0]).view([1, 2, 3]);
    let lab = Tensor::from_slice(&[1i64, 0]).view([1, 2]);
    (image, pts, lab)
}

fn logits(f: &Foundation, x: &(Tensor, Tensor, Tensor)) -> Tensor {
    let _g = tch::no_grad_guard();
    let emb = f.net().image_embedding(&x.0).expect("embedding");
    f.net().decode(&emb, Some((&x.1, &x.2)), None).expect("decode").0
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// One phantom case written to and read back from `dir`.
fn phantom_cases(dir: &Path) -> Vec<TrainCase> {
    write_phantoms(dir, 1, 5, Modality::Ct).expect("phantoms");
    let vol = sam3d_engine::volume::open(&dir.join("case_000.nii.gz")).expect("volume");
    let lab = sam3d_engine::volume::open_labels(&dir.join("case_000_labels.nii.gz")).expect("labels");
    vec![TrainCase::new("case_000", Arc::new(vol), lab, Some(Modality::Ct), &[])]
}

/// The base checkpoint with other bytes (a zip comment added): the same weights, another file.
fn other_base(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(narrow12()).expect("fixture");
    let n = bytes.len();
    assert_eq!(&bytes[n - 22..n - 18], b"PK\x05\x06", "the fixture ends with its end-of-central-directory record");
    bytes[n - 2..].copy_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(b"diff");
    let p = dir.join("other.pth");
    std::fs::write(&p, bytes).expect("write");
    p
}

#[test]
fn a_fresh_adapter_changes_no_logit_and_freezes_the_base() {
    let _l = lock();
    let mut f = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12 loads");
    let x = input();
    let before = logits(&f, &x);
    let n = f.attach_lora(&lora(4)).expect("attach");
    // 12 encoder blocks × (qkv, proj, lin1, lin2) + 2 decoder layers × (3 attentions × 4 + MLP 2)
    // + the final attention's 4; the hypernetworks and the IoU head are not targets.
    assert_eq!(n, 12 * 4 + 2 * (3 * 4 + 2) + 4);
    let targets = &f.lora().expect("adapter").targets;
    for t in ["image_encoder.blocks.0.attn.qkv", "image_encoder.blocks.11.mlp.lin2", "mask_decoder.transformer.layers.1.cross_attn_image_to_token.v_proj", "mask_decoder.transformer.final_attn_token_to_image.out_proj"] {
        assert!(targets.iter().any(|n| n == t), "{t} not adapted: {targets:?}");
    }
    assert!(!targets.iter().any(|n| n.contains("hypernetworks") || n.contains("iou_prediction")));
    let after = logits(&f, &x);
    assert_eq!(max_abs(&before, &after), 0.0, "B = 0: the adapter adds exactly nothing");
    assert!(f.base_vs().variables().values().all(|t| !t.requires_grad()), "the base is frozen");
    let adapter_vars = f.lora().expect("adapter").vs.variables();
    assert_eq!(adapter_vars.len(), 2 * n);
    assert!(adapter_vars.values().all(|t| t.requires_grad()), "the adapters train");

    let e = f.attach_lora(&LoraConfig { targets: vec!["to_qkv".into()], ..lora(4) }).expect_err("refused").to_string();
    assert!(e.contains("to_qkv") && e.contains("match no linear") && e.contains("image_encoder.blocks.0.attn.qkv"), "{e}");
}

#[test]
fn training_steps_lower_the_loss_keep_the_base_and_the_adapter_reloads_exactly() {
    let _l = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let cases = phantom_cases(&tmp.path().join("data"));
    let sample = make_sample(&cases, 7, 128).expect("a cube around a labelled voxel");
    let label_voxels = sample.label.sum(Kind::Double).double_value(&[]);
    assert!(label_voxels > 0.0);
    let fc = sample.first_click;
    assert_eq!(sample.label.double_value(&[0, 0, fc[0], fc[1], fc[2]]), 1.0, "the first click is inside the label (d, h, w = the cube's i, j, k)");

    let mut f = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12");
    f.attach_lora(&lora(4)).expect("attach");
    let mut named: Vec<(String, Tensor)> = f.lora().expect("adapter").vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut opt = AdamW::new(named);
    let eval = |f: &Foundation| {
        let _g = tch::no_grad_guard();
        sample_loss(f, &sample, 1, &mut Rng::new(1), false).expect("loss").loss.double_value(&[])
    };
    let loss0 = eval(&f);
    let mut rng = Rng::new(3);
    for _ in 0..5 {
        opt.zero_grad();
        let r = sample_loss(&f, &sample, 2, &mut rng, true).expect("loss");
        r.loss.backward();
        opt.step(1e-2, 0.0, 1.0);
    }
    let loss1 = eval(&f);
    eprintln!("loss on the training cube: {loss0:.4} → {loss1:.4}");
    assert!(loss1 < loss0 - 1e-3, "five steps on one cube lower its loss: {loss0} → {loss1}");

    // The base is untouched: every weight equals a fresh load's.
    let fresh = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12");
    let ours = f.base_vs().variables();
    for (name, t) in fresh.base_vs().variables() {
        assert_eq!(max_abs(&t, &ours[&name]), 0.0, "{name} changed");
    }
    let moved: f64 = f.lora().expect("adapter").vs.variables().iter().filter(|(n, _)| n.ends_with("lora_B.weight")).map(|(_, t)| t.abs().sum(Kind::Double).double_value(&[])).sum();
    assert!(moved > 0.0, "the adapters' B moved off zero");

    // Saved, then loaded onto a fresh copy of the base: the same logits, bit for bit.
    let path = tmp.path().join("adapter.safetensors");
    f.save_adapter(&path).expect("save");
    let meta = StFile::read(&path).expect("read").metadata;
    assert_eq!(meta["base_file"], "narrow12.pth");
    assert_eq!(meta["base_sha256"].len(), 64);
    assert_eq!(meta["rank"], "4");
    assert!(meta["targets"].contains("q_proj"), "{}", meta["targets"]);
    let mut g = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12");
    let x = input();
    let base_logits = logits(&g, &x);
    assert_eq!(g.load_adapter(&path).expect("the adapter fits its base"), 80);
    let (a, b) = (logits(&f, &x), logits(&g, &x));
    assert_eq!(max_abs(&a, &b), 0.0);
    assert!(max_abs(&a, &base_logits) > 1e-4, "the trained adapter changes the logits");
    let info = g.info();
    assert_eq!(info.adapter.as_deref(), Some(path.as_path()));
    assert_eq!(info.adapter_rank, Some(4));

    // Tensors that do not fit: one mis-shaped, refused with its name, nothing changed.
    let st = StFile::read(&path).expect("read");
    let mut tensors: HashMap<String, Tensor> = st.shapes().keys().map(|n| (n.clone(), st.tensor(n).expect("tensor"))).collect();
    let bad_name = "image_encoder.blocks.3.attn.qkv.lora_A.weight".to_string();
    tensors.insert(bad_name.clone(), Tensor::zeros([2, 7], (Kind::Float, Device::Cpu)));
    let bad = tmp.path().join("bad.safetensors");
    checkpoint::write(&bad, &tensors, st.metadata.clone()).expect("write");
    let e = g.load_adapter(&bad).expect_err("refused").to_string();
    assert!(e.contains("bad.safetensors") && e.contains("mis-shaped") && e.contains(&bad_name), "{e}");
    assert_eq!(max_abs(&logits(&g, &x), &a), 0.0, "a refused file leaves the adapter as it was");
}

#[test]
fn an_adapter_is_refused_on_another_base_and_the_session_reports_it() {
    let _l = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut f = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12");
    f.attach_lora(&lora(2)).expect("attach");
    let path = tmp.path().join("mine.safetensors");
    f.save_adapter(&path).expect("save");

    let other = other_base(tmp.path());
    let mut g = Foundation::from_file(&other, Device::Cpu).expect("the same weights in another file load");
    let e = g.load_adapter(&path).expect_err("refused").to_string();
    assert!(e.contains("mine.safetensors") && e.contains("narrow12.pth") && e.contains("other.pth"), "{e}");
    assert!(g.lora().is_none());

    // Through the session: a project adapter is refused, this one is used and reported.
    let mut s = Session::new();
    s.load_weights(&other, Device::Cpu).expect("base");
    assert!(s.load_adapter(&path).expect_err("refused").to_string().contains("other.pth"));
    s.load_weights(&narrow12(), Device::Cpu).expect("base");
    let info = s.load_adapter(&path).expect("the adapter fits narrow12");
    assert_eq!(info.adapter.as_deref(), Some(path.as_path()));
    assert_eq!(s.model_info().and_then(|i| i.adapter), Some(path.clone()));
    let vol = Arc::new(sam3d_engine::volume::open(&data("sam_med3d_session/scan.nii.gz")).expect("scan"));
    s.set_volume(vol.clone(), None).expect("volume");
    let [ni, nj, nk] = vol.shape().ijk();
    let centre = vol.ras_from_voxel.apply(sam3d_engine::geometry::VoxelIjk::new(ni as f64 / 2.0, nj as f64 / 2.0, nk as f64 / 2.0));
    let r = s.infer(&InferRequest::click(centre, ViewPlane::Axial), &mut NoHooks).expect("click");
    assert_eq!(r.adapter.as_deref(), Some(path.as_path()));
}

#[test]
fn sam_med3d_train_configs_are_checked_by_field() {
    let base = narrow12();
    let cfg = |extra: &str| {
        let text = format!("[model]\nfamily = \"sam_med3d\"\nbase_checkpoint = \"{}\"\n[data]\ndirs = [\"d\"]\n{extra}", base.display());
        TrainConfig::from_toml_str(&text, "c.toml", Path::new("."))
    };
    let e = cfg("").expect_err("refused");
    assert_eq!(e.field, "lora.enabled", "{e}");
    let e = cfg("[lora]\nenabled = true\nrank = 0\nalpha = 8.0\n").expect_err("refused");
    assert_eq!(e.field, "lora.rank", "{e}");
    let ok = cfg("[lora]\nenabled = true\nrank = 4\nalpha = 8.0\n[sam_med3d]\nclicks = 2\n").expect("valid");
    assert!(ok.lora.as_ref().is_some_and(|l| l.config.targets.is_empty()), "no targets: the SAM-Med3D defaults");
    let e = cfg("[lora]\nenabled = true\nrank = 4\nalpha = 8.0\n[sam_med3d]\nclicks = 0\n").expect_err("refused");
    assert_eq!(e.field, "sam_med3d.clicks", "{e}");
    let e = TrainConfig::from_toml_str("[model]\nfamily = \"sam4d\"\npreset = \"tiny\"\n[data]\ndirs = [\"d\"]\n", "c.toml", Path::new(".")).expect_err("refused");
    assert_eq!(e.field, "model.family", "{e}");
    let e = TrainConfig::from_toml_str("[model]\nfamily = \"sam_med3d\"\n[data]\ndirs = [\"d\"]\n", "c.toml", Path::new(".")).expect_err("refused");
    assert_eq!(e.field, "model.base_checkpoint", "{e}");
    // The project's configs are unchanged.
    let old = TrainConfig::from_toml_str("[model]\npreset = \"tiny\"\n[data]\ndirs = [\"d\"]\n[lora]\nenabled = true\nrank = 4\nalpha = 8.0\ntargets = [\"to_qkv\"]\n", "c.toml", Path::new(".")).expect("old config");
    assert!(old.model.family.is_none() && old.sam_med3d.is_none());
}

#[test]
fn train_runs_end_to_end_from_a_config_file_and_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    // `stop_after`: the run stops there with a checkpoint, as an interrupted one would.
    let write_config = |stop_after: Option<u64>| {
        let text = format!(
            r#"[model]
family = "sam_med3d"
base_checkpoint = "{}"
[data]
dirs = ["data"]
phantoms = {{ cases = 1, seed = 2 }}
[train]
steps = 3
batch = 1
lr = 5e-3
warmup = 0
threads = 1
seed = 4
[lora]
enabled = true
rank = 4
alpha = 8.0
[sam_med3d]
clicks = 2
{}"#,
            narrow12().display(),
            stop_after.map(|s| format!("[debug]\nstop_after = {s}\n")).unwrap_or_default()
        );
        let p = tmp.path().join("run.toml");
        std::fs::write(&p, text).expect("config");
        p
    };
    let bin = env!("CARGO_BIN_EXE_sam3d-studio-engine");
    let out = tmp.path().join("out");
    let run = |args: &[&str]| {
        let o = std::process::Command::new(bin).args(args).output().expect("engine runs");
        let (so, se) = (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned());
        assert!(o.status.success(), "train failed:\n{so}\n{se}");
        (so, se)
    };
    let config = write_config(Some(2));
    let (so, se) = run(&["train", "--config", config.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8")]);
    eprintln!("{so}\n{se}");
    assert!(so.contains("steps 1–2: loss"), "{so}");
    assert!(se.contains("on a CPU this is slow at full size") && se.contains("s per sample"), "{se}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.iter().map(|l| l["step"].as_u64()).collect::<Vec<_>>(), vec![Some(1), Some(2)]);
    assert!(lines.iter().all(|l| l["loss"].as_f64().is_some_and(f64::is_finite) && l["secs"].as_f64().is_some() && l["lr"].as_f64().is_some()));
    let adapter = out.join("adapter.safetensors");
    let mut f = Foundation::from_file(&narrow12(), Device::Cpu).expect("narrow12");
    f.load_adapter(&adapter).expect("the trained adapter fits its base");

    // --resume goes on at step 3.
    let config = write_config(None);
    let (so, _) = run(&["train", "--config", config.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8"), "--resume"]);
    assert!(so.contains("steps 3–3"), "{so}");
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 3);

    // The same three steps uninterrupted: the same adapter, bit for bit.
    let straight = tmp.path().join("straight");
    run(&["train", "--config", config.to_str().expect("utf-8"), "--out", straight.to_str().expect("utf-8")]);
    let (a, b) = (StFile::read(&adapter).expect("resumed"), StFile::read(&straight.join("adapter.safetensors")).expect("straight"));
    for name in a.shapes().keys() {
        assert_eq!(max_abs(&a.tensor(name).expect("a"), &b.tensor(name).expect("b")), 0.0, "{name}: resumed and uninterrupted runs differ");
    }
}

/// What a training sample costs at full size (the published ViT-B, random weights, rank-8
/// adapters on the default targets, one 128³ cube, one decoder pass): the encoder forward
/// without gradients, then (with `SAM_MED3D_BENCH_BACKWARD=1`, several GB) forward and backward.
/// Run: `SAM_MED3D_BENCH_BACKWARD=1 cargo test --release --workspace --test sam_med3d_lora --
/// --ignored --nocapture full_size` (threads: `SAM_MED3D_BENCH_THREADS`, default 2).
#[test]
#[ignore]
fn full_size_lora_step_bench() {
    use sam3d_engine::model::sam_med3d::{SamMed3d, SamMed3dConfig, lora as sam_lora};
    let threads: i32 = std::env::var("SAM_MED3D_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    tch::set_num_threads(threads);
    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let mut net = SamMed3d::new(&vs.root(), &SamMed3dConfig::vit_b());
    let l = sam_lora::attach(&mut net, &mut vs, &LoraConfig { rank: 8, alpha: 16.0, dropout: 0.0, targets: Vec::new() }).expect("attach");
    let (image, pts, lab) = input();
    let t = std::time::Instant::now();
    {
        let _g = tch::no_grad_guard();
        let emb = net.image_embedding(&image).expect("embedding");
        let _ = net.decode(&emb, Some((&pts, &lab)), None).expect("decode");
    }
    eprintln!("ViT-B 128³, {threads} thread(s): encoder + decoder forward without gradients {:.1} s", t.elapsed().as_secs_f64());
    if std::env::var("SAM_MED3D_BENCH_BACKWARD").as_deref() == Ok("1") {
        let t = std::time::Instant::now();
        let emb = net.image_embedding_t(&image, true).expect("embedding");
        let (low, _) = net.decode_t(&emb, Some((&pts, &lab)), None, true).expect("decode");
        let up = net.upsample(&low, [128, 128, 128]);
        let loss = up.sigmoid().mean(Kind::Float);
        let tf = t.elapsed().as_secs_f64();
        loss.backward();
        let g: f64 = l.vs.variables().values().map(|v| v.grad().abs().sum(Kind::Double).double_value(&[])).sum();
        eprintln!("ViT-B 128³, {threads} thread(s), LoRA rank 8 on {} linears: forward with gradients {tf:.1} s, forward + backward {:.1} s (|grad| {g:.3e})", l.targets.len(), t.elapsed().as_secs_f64());
    }
}
