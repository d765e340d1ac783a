//! Training loop: the tiny model overfits a handful of samples, stop + resume reproduces the
//! uninterrupted run, an injected NaN stops training with a message naming step and term.

use sam3d_engine::engine::train::{TrainConfig, TrainError, train, write_phantoms};
use sam3d_studio::volume::{Modality, OnGrid};
use sam3d_engine::model::Model;
use std::path::Path;
use tch::Device;

/// libtorch's random generator is global to the process: runs that must be reproducible
/// (seeded initialisation) may not interleave with other tests' runs.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn config(data: &Path, extra_train: &str, extra: &str) -> TrainConfig {
    let text = format!(
        r#"
[model]
preset = "tiny"
[data]
dirs = ["{}"]
val_cases = 1
[train]
batch = 4
lr = 3e-3
warmup = 2
threads = 1
seed = 3
{extra_train}
[augment]
rotate_deg = 10.0
scale = 0.1
{extra}
"#,
        data.display()
    );
    TrainConfig::from_toml_str(&text, "test.toml", Path::new(".")).expect("config")
}

fn data_dir(tmp: &Path) -> std::path::PathBuf {
    let d = tmp.join("data");
    write_phantoms(&d, 2, 11, Modality::Ct).expect("phantoms");
    d
}

#[test]
fn tiny_model_overfits_a_handful_of_samples() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let cfg = config(&data, "steps = 120\nfixed_samples = 4\nweight_decay = 0.0\nmin_lr_frac = 0.3", "");
    let s = train(&cfg, &tmp.path().join("run"), false, &|_, _| {}).expect("train");
    assert_eq!(s.losses.len(), 120);
    let first = s.losses[0].1;
    let last = s.losses.iter().rev().take(5).map(|l| l.1).sum::<f64>() / 5.0;
    assert!(first.is_finite() && last < 0.35 * first, "loss {first} → {last}: did not fall by most of its value");
    // Outputs written.
    for f in ["state.safetensors", "model.safetensors", "log.jsonl"] {
        assert!(tmp.path().join("run").join(f).exists(), "{f}");
    }
    let log = std::fs::read_to_string(tmp.path().join("run/log.jsonl")).expect("log");
    let steps: Vec<serde_json::Value> =
        log.lines().map(|l| serde_json::from_str(l).expect("json line")).filter(|v: &serde_json::Value| v.get("loss").is_some()).collect();
    assert_eq!(steps.len(), 120);
    for k in ["step", "loss", "mask_bce", "mask_dice", "occupancy", "sdf_l1", "lr", "secs"] {
        assert!(steps[0].get(k).is_some(), "log line lacks {k}");
    }
    assert!(log.contains("\"validation\""), "no validation line");
}

#[test]
fn stop_and_resume_matches_an_uninterrupted_run() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let lora = "[lora]\nenabled = true\nrank = 2\nalpha = 4.0\ntargets = [\"to_qkv\", \"to_out\"]";
    let full = config(&data, "steps = 6\ncurriculum_step = 2", lora);
    let a = train(&full, &tmp.path().join("a"), false, &|_, _| {}).expect("uninterrupted");
    let mut stopped = full.clone();
    stopped.debug.stop_after = Some(3);
    let b1 = train(&stopped, &tmp.path().join("b"), false, &|_, _| {}).expect("first half");
    assert_eq!(b1.last_step, 3);
    assert!(tmp.path().join("b/adapter.safetensors").exists());
    let b2 = train(&full, &tmp.path().join("b"), true, &|_, _| {}).expect("resumed");
    assert_eq!(b2.first_step, 4);
    for (x, y) in a.losses[3..].iter().zip(&b2.losses) {
        assert_eq!(x.0, y.0);
        assert!((x.1 - y.1).abs() <= 1e-4 * x.1.abs().max(1.0), "step {}: {} uninterrupted vs {} resumed; {:?} {:?} {:?}", x.0, x.1, y.1, a.losses, b1.losses, b2.losses);
    }
    for (x, y) in a.losses[..3].iter().zip(&b1.losses) {
        assert!((x.1 - y.1).abs() <= 1e-5 * x.1.abs().max(1.0), "step {} differs before the stop", x.0);
    }
    // The resumed log holds each step once.
    let log = std::fs::read_to_string(tmp.path().join("b/log.jsonl")).expect("log");
    let n = log.lines().filter(|l| l.contains("\"loss\"")).count();
    assert_eq!(n, 6);
    // With no base checkpoint, the adapter belongs to the run's own model file.
    let mut m = Model::from_checkpoint(&tmp.path().join("b/model.safetensors"), Device::Cpu).expect("model");
    m.load_adapter(&tmp.path().join("b/adapter.safetensors")).expect("the resumed run's adapter fits its model file");
}

/// A stop request (the panel's Stop) lands between periodic checkpoints: the run writes one at
/// the step it stops on, and resuming from it trains exactly the remaining steps.
#[test]
fn a_stop_request_checkpoints_where_it_stops() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let mut full = config(&data, "steps = 6\ncurriculum_step = 2", "");
    full.train.checkpoint_every = 100;
    let a = train(&full, &tmp.path().join("a"), false, &|_, _| {}).expect("uninterrupted");
    let out = tmp.path().join("b");
    let request = out.join(sam3d_studio::train_config::STOP_REQUEST_FILE);
    let b1 = train(&full, &out, false, &|step, _| {
        if step == 2 {
            std::fs::write(&request, b"stop").expect("request");
        }
    })
    .expect("stopped run");
    assert_eq!((b1.stopped_at, b1.last_step), (Some(3), 3), "stops after the step that sees the request");
    assert!(!request.exists(), "the request is removed");
    let b2 = train(&full, &out, true, &|_, _| {}).expect("resumed");
    assert_eq!((b2.first_step, b2.last_step, b2.stopped_at), (4, 6, None));
    for (x, y) in a.losses[3..].iter().zip(&b2.losses) {
        assert_eq!(x.0, y.0);
        assert!((x.1 - y.1).abs() <= 1e-4 * x.1.abs().max(1.0), "step {}: {} uninterrupted vs {} resumed", x.0, x.1, y.1);
    }
}

/// A LoRA run from a base checkpoint, stopped and resumed: its adapter names that base (not the
/// run's model file, which holds the trained heads) and carries the heads, so the base and the
/// adapter file alone rebuild the fine-tuned model.
#[test]
fn a_resumed_lora_run_writes_an_adapter_for_its_base() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let base = tmp.path().join("base.safetensors");
    tch::manual_seed(5);
    let base_sha = Model::new(sam3d_engine::model::Config::tiny(), Device::Cpu).save_weights(&base).expect("base");
    let lora = "[lora]\nenabled = true\nrank = 2\nalpha = 4.0\ntargets = [\"to_qkv\"]";
    let mut full = config(&data, "steps = 4\ncurriculum_step = 1", lora);
    full.model.base_checkpoint = Some(base.clone());
    let mut stopped = full.clone();
    stopped.debug.stop_after = Some(2);
    let run = tmp.path().join("run");
    train(&stopped, &run, false, &|_, _| {}).expect("first half");
    train(&full, &run, true, &|_, _| {}).expect("resumed");
    let f = sam3d_engine::model::checkpoint::StFile::read(&run.join("adapter.safetensors")).expect("adapter");
    assert_eq!(f.metadata.get("base_sha256"), Some(&base_sha), "the adapter names the base checkpoint");
    let mut m = Model::from_checkpoint(&base, Device::Cpu).expect("base");
    m.load_adapter(&run.join("adapter.safetensors")).expect("the adapter fits its base");
    // Its heads are the run's trained heads (the run's model file holds them too), not the base's.
    let tuned = sam3d_engine::model::checkpoint::StFile::read(&run.join("model.safetensors")).expect("model");
    let original = sam3d_engine::model::checkpoint::StFile::read(&base).expect("base");
    let mut heads = 0;
    for (n, v) in m.base_vs().variables() {
        if sam3d_engine::model::is_head(&n) {
            heads += 1;
            assert!(v.equal(&tuned.tensor(&n).expect("tensor")), "{n}: not the trained head");
        } else {
            assert!(v.equal(&original.tensor(&n).expect("tensor")), "{n}: the frozen base moved");
        }
    }
    assert!(heads > 0);
    assert!(m.base_vs().variables().iter().any(|(n, v)| sam3d_engine::model::is_head(n) && !v.equal(&original.tensor(n).expect("tensor"))), "training moved the heads");
}

#[test]
fn injected_nan_stops_with_the_step_and_term() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let cfg = config(&data, "steps = 5", "[debug]\nnan_at_step = 2");
    let e = train(&cfg, &tmp.path().join("run"), false, &|_, _| {}).expect_err("NaN must stop training");
    assert!(matches!(e, TrainError::NonFinite { step: 2, .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("step 2") && msg.contains("sdf_l1"), "{msg}");
}

#[test]
fn config_errors_name_the_field() {
    let e = TrainConfig::from_toml_str("[model]\npreset='tiny'\n[data]\ndirs=['x']\n[train]\nsteps=0", "c.toml", Path::new(".")).expect_err("steps 0");
    assert!(e.to_string().starts_with("train.steps"), "{e}");
    let e = TrainConfig::from_toml_str("[model]\npreset='tiny'\n[data]\ndirs=['x']\n[train]\nstepz=3", "c.toml", Path::new(".")).expect_err("typo");
    assert!(e.to_string().contains("stepz"), "{e}");
}

#[test]
fn smoke_config_is_valid_and_uses_lora() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/smoke.toml");
    let c = TrainConfig::load(&path).expect("configs/smoke.toml");
    assert_eq!(c.model.preset.as_deref(), Some("tiny"));
    assert!(c.lora.as_ref().is_some_and(|l| l.enabled));
    assert!(c.data.phantoms.is_some());
}

#[test]
fn train_reads_a_preprocess_cache_with_its_clicks() {
    use sam3d_studio::data::preprocess::{SliceSampling, preprocess_dir};
    use sam3d_engine::engine::train::load_cases;
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let cache = tmp.path().join("cache");
    let idx = preprocess_dir(&data, &cache, 4.0, SliceSampling::Central, None, None, &|| {}).expect("preprocess");
    let cfg = config(&cache, "steps = 3\nval_every = 3", "");
    let (train_cases, val) = load_cases(&cfg).expect("cases from the cache");
    assert_eq!(train_cases.len() + val.len(), 2);
    // The cached grid is the isotropic 4 mm one, and each class carries the index's clicks
    // (central slice on three axes: three per class), each inside its class.
    for c in train_cases.iter().chain(&val) {
        assert!(c.labels.spacing_mm().iter().all(|s| (s - 4.0).abs() < 1e-6));
        let listed: usize = c.listed_clicks.iter().map(Vec::len).sum();
        assert_eq!(listed, idx.samples.iter().filter(|s| s.case == c.name).count());
        for (k, clicks) in c.listed_clicks.iter().enumerate() {
            assert_eq!(clicks.len(), 3, "{} class {}", c.name, c.classes[k]);
            for (p, _) in clicks {
                assert!(c.sdf_at(k, *p) < 0.0, "listed click outside its class");
            }
        }
    }
    let s = train(&cfg, &tmp.path().join("run"), false, &|_, _| {}).expect("train on the cache");
    assert_eq!(s.losses.len(), 3);
    assert!(s.losses.iter().all(|l| l.1.is_finite()));
}

#[test]
fn holdout_weights_and_validation_split() {
    use sam3d_engine::engine::train::load_cases;
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    write_phantoms(&a, 3, 21, Modality::Ct).expect("phantoms a");
    write_phantoms(&b, 1, 31, Modality::Ct).expect("phantoms b");
    let text = format!(
        r#"
[model]
preset = "tiny"
[data]
dirs = ["{}", "{}"]
val_cases = 1
dir_weights = [1.0, 3.0]
holdout = [{{ case = "case_000", classes = [1, 5] }}]
"#,
        a.display(),
        b.display()
    );
    let cfg = TrainConfig::from_toml_str(&text, "t.toml", Path::new(".")).expect("config");
    let (tr, val) = load_cases(&cfg).expect("cases");
    // Validation: the last case of the first directory; b's single case stays in training.
    assert_eq!(val.len(), 1);
    assert_eq!(val[0].name, "case_002");
    assert_eq!(tr.len(), 3);
    // Weights: a's two training cases share 1.0, b's one case has 3.0.
    let w: Vec<f64> = tr.iter().map(|c| c.weight).collect();
    assert_eq!(w, vec![0.5, 0.5, 3.0]);
    // The held-out labels are gone from every case named case_000 (in both directories), and
    // only there.
    for c in &tr {
        let held = c.classes.contains(&1) || c.classes.contains(&5);
        assert_eq!(held, c.name != "case_000", "{}: {:?}", c.name, c.classes);
        assert_eq!(c.classes.len(), c.sdf.len());
    }
    // A wrong number of weights names the field.
    let bad = text.replace("dir_weights = [1.0, 3.0]", "dir_weights = [1.0]");
    let e = TrainConfig::from_toml_str(&bad, "t.toml", Path::new(".")).expect_err("weights");
    assert!(e.to_string().contains("data.dir_weights"), "{e}");

    // Class draws: uniform by default (the generator used as a uniform draw always used it),
    // ∝ voxels^power when asked.
    use sam3d_studio::data::phantom::Rng;
    let mut case = tr[0].clone();
    assert_eq!(case.class_weight_power, 0.0);
    let (mut r1, mut r2) = (Rng::new(5), Rng::new(5));
    for _ in 0..50 {
        assert_eq!(case.random_class(&mut r1), Some(r2.below(case.classes.len())));
    }
    let counts: Vec<f64> = case.classes.iter().map(|&l| case.labels.data.iter().filter(|&&v| v == l).count() as f64).collect();
    for power in [0.5, 1.0] {
        case.class_weight_power = power;
        let n = 20_000;
        let mut hits = vec![0usize; case.classes.len()];
        let mut rng = Rng::new(9);
        for _ in 0..n {
            hits[case.random_class(&mut rng).expect("a class")] += 1;
        }
        let total: f64 = counts.iter().map(|c| c.powf(power)).sum();
        for (c, h) in hits.iter().enumerate() {
            let p = counts[c].powf(power) / total;
            let f = *h as f64 / n as f64;
            assert!((f - p).abs() < 0.015, "power {power}, class {}: drawn {f:.3}, expected {p:.3}", case.classes[c]);
        }
    }
    let bad = text.replace("val_cases = 1", "val_cases = 1\nclass_weight_power = 1.5");
    let e = TrainConfig::from_toml_str(&bad, "t.toml", Path::new(".")).expect_err("power");
    assert!(e.to_string().contains("data.class_weight_power"), "{e}");
}

#[test]
fn context_dropout_and_prediction_conditioning_train() {
    let _guard = lock();
    let tmp = tempfile::tempdir().expect("tmp");
    let data = data_dir(tmp.path());
    let model_cfg = tmp.path().join("ctx.toml");
    let tiny = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/tiny.toml")).expect("tiny");
    std::fs::write(&model_cfg, tiny.replace("[volume_context]\nenabled = false", "[volume_context]\nenabled = true")).expect("write");
    let text = format!(
        r#"
[model]
config = "{}"
[data]
dirs = ["{}"]
[train]
steps = 6
batch = 4
threads = 1
curriculum_step = 2
val_every = 6
context_dropout = 0.5
pred_mask_frac = 0.5
[loss]
chamfer = 0.5
"#,
        model_cfg.display(),
        data.display()
    );
    let cfg = TrainConfig::from_toml_str(&text, "t.toml", Path::new(".")).expect("config");
    let out = tmp.path().join("run");
    let s = train(&cfg, &out, false, &|_, _| {}).expect("train");
    assert_eq!(s.losses.len(), 6);
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    for k in ["occupancy_dice", "chamfer", "dice_3d_grid_pred2d"] {
        assert!(log.contains(k), "{k} missing from the log");
    }
    // Validation ran with and without the context cube.
    assert!(log.contains("\"context\":true") && log.contains("\"context\":false"));

    // Stage 2: the image-guided decoder, warm-started from that run's weights.
    let guided_cfg = tmp.path().join("guided.toml");
    let ctx = std::fs::read_to_string(&model_cfg).expect("ctx");
    std::fs::write(&guided_cfg, ctx.replace("name = \"tiny\"", "name = \"tiny-guided\"").replace("[volume_context]\n", "[volume_context]\nguide = true\n"))
        .expect("write");
    let text2 = text
        .replace(&model_cfg.display().to_string(), &guided_cfg.display().to_string())
        .replace("[data]", &format!("init_checkpoint = \"{}\"\n[data]", out.join("model.safetensors").display()))
        .replace("steps = 6", "steps = 3")
        .replace("val_every = 6", "val_every = 3")
        .replace("context_dropout = 0.5", "context_dropout = 0.0");
    let cfg2 = TrainConfig::from_toml_str(&text2, "t2.toml", Path::new(".")).expect("guided config");
    let out2 = tmp.path().join("guided");
    train(&cfg2, &out2, false, &|_, _| {}).expect("guided training");
    let m = sam3d_engine::model::Model::from_checkpoint(&out2.join("model.safetensors"), tch::Device::Cpu).expect("guided weights");
    assert!(m.config().volume_context.guide);
    let vars = m.base_vs().variables();
    let head = vars.get("decoder.guide_head.out.weight").expect("guide head");
    assert!(head.abs().max().double_value(&[]) > 0.0, "the guide head never left zero: no gradient reached it");
    let both = text2.replace("[data]", "base_checkpoint = \"x.safetensors\"\n[data]");
    let e = TrainConfig::from_toml_str(&both, "t3.toml", Path::new(".")).expect_err("both");
    assert!(e.to_string().contains("model.init_checkpoint"), "{e}");
}

#[test]
fn every_committed_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).expect("configs/") {
        let p = e.expect("entry").path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).expect("read");
        if text.contains("\n[data]") {
            let c = TrainConfig::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            if let Some(m) = &c.model.config {
                sam3d_engine::model::Config::load(m).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        } else {
            sam3d_engine::model::Config::load(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        }
        seen += 1;
    }
    assert!(seen >= 8, "{seen} configs");
    let guided = sam3d_engine::model::Config::load(&dir.join("small_guided.toml")).expect("small_guided");
    assert!(guided.volume_context.guide);
    let mut plain = guided.clone().into_file();
    plain.volume_context.guide = false;
    plain.name = "small".into();
    assert_eq!(plain.validate().expect("valid"), sam3d_engine::model::Config::small(), "small_guided is small plus the guide");
}
