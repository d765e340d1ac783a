//! The model commands, run in the engine process: `infer` (one click → the organ's mask on the
//! input grid, and mesh, without the GUI), `train` and `eval`. The front binary `sam3d-studio`
//! checks their arguments ([`crate::commands`]) and hands its whole command line over to
//! `sam3d-studio-engine`, whose `main` is [`main`] here.

use crate::assets::{default_mr_adapter_path, default_weights_path};
use crate::commands::{EvalArgs, InferArgs, TrainArgs, TrainCorrectorArgs};
use crate::engine::{InferRequest, NO_WEIGHTS_HELP, NoHooks, Session};
use crate::progress::Progress;
use crate::geometry::{RasMm, ViewPlane};
use crate::model::parse_device;
use crate::volume::{Modality, OnGrid};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(serde::Serialize)]
struct InferJson {
    volume: String,
    out_mask: String,
    out_mesh: Option<String>,
    weights: String,
    adapter: Option<String>,
    preset: String,
    device: String,
    modality: Modality,
    click_ras: [f64; 3],
    plane: ViewPlane,
    class: usize,
    voxel_count: usize,
    volume_ml: f64,
    /// The last prompt's timings.
    timings: crate::engine::Timings,
    /// Each prompt in the order applied, with the candidate after it.
    prompts: Vec<PromptJson>,
    load_secs: f64,
    /// Triangles in the written mesh (when `--out-mesh`).
    mesh_triangles: Option<usize>,
    /// With `--repeat N`: every run's last-prompt timings, and each stage's median over the
    /// warm runs (all but the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat: Option<RepeatJson>,
}

/// `infer --repeat N`: the runs' timings and their medians.
#[derive(serde::Serialize)]
struct RepeatJson {
    runs: Vec<crate::engine::Timings>,
    median: StageMedians,
}

/// Each stage's median (seconds) over the warm runs of `infer --repeat`.
#[derive(serde::Serialize, Debug, PartialEq)]
struct StageMedians {
    preprocess_secs: f64,
    mask2d_secs: f64,
    shape_secs: f64,
    postprocess_secs: f64,
    mesh_secs: Option<f64>,
    total_secs: f64,
    warm_runs: usize,
}

impl StageMedians {
    /// Over `runs` after the first (the first, alone, when there is one).
    fn of(runs: &[crate::engine::Timings]) -> StageMedians {
        let warm = if runs.len() > 1 { &runs[1..] } else { runs };
        let median = |f: &dyn Fn(&crate::engine::Timings) -> f64| {
            let mut v: Vec<f64> = warm.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        StageMedians {
            preprocess_secs: median(&|t| t.preprocess_secs),
            mask2d_secs: median(&|t| t.mask2d_secs),
            shape_secs: median(&|t| t.shape_secs),
            postprocess_secs: median(&|t| t.postprocess_secs),
            mesh_secs: warm.iter().all(|t| t.mesh_secs.is_some()).then(|| median(&|t| t.mesh_secs.unwrap_or(0.0))),
            total_secs: median(&|t| t.total_secs),
            warm_runs: warm.len(),
        }
    }
}

/// One prompt of `infer` and the candidate after it.
#[derive(serde::Serialize)]
struct PromptJson {
    prompt: String,
    voxel_count: usize,
    volume_ml: f64,
    secs: f64,
}

/// The engine's command line: the model commands, as the front binary forwards them, and
/// `serve` (the JSON-lines protocol for the viewer, [`crate::protocol`]).
#[derive(clap::Parser, Debug)]
#[command(name = "sam3d-studio", version, about = "sam3d-studio's engine: the model commands, run with libtorch")]
pub struct EngineCli {
    #[command(subcommand)]
    pub command: EngineCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum EngineCommand {
    /// One click → the organ's 3D mask on the input grid (SAM3D model).
    Infer(InferArgs),
    /// Train or fine-tune (LoRA) the model from a TOML config.
    Train(TrainArgs),
    /// Train the corrector (the learned step of refinement prompts) with simulated corrections.
    TrainCorrector(TrainCorrectorArgs),
    /// One-click evaluation (model and region-growing baseline) → CSV + summary JSON.
    Eval(EvalArgs),
    /// The engine behind the JSON-lines protocol on stdin/stdout, for the viewer.
    Serve,
    /// The engine behind nnInteractive's remote protocol over HTTP: 3D Slicer's nnInteractive
    /// extension, any nninteractive-client, and the viewer's remote engine use it.
    ServeHttp(ServeHttpArgs),
}

/// `serve-http`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeHttpArgs {
    /// Address to listen on (loopback unless told otherwise; port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:1527")]
    pub bind: std::net::SocketAddr,
    /// A file whose first line is the key clients must send (Authorization: Bearer KEY).
    #[arg(long)]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Most clients served at once; one more is told 503 (at capacity).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub max_sessions: u32,
    /// Seconds without a real request before a session is dropped.
    #[arg(long, default_value_t = 600.0)]
    pub idle_timeout: f64,
    /// Seconds without any request (heartbeats included) before a session is dropped.
    #[arg(long, default_value_t = 60.0)]
    pub liveness_timeout: f64,
    /// Model checkpoint: the project's (.safetensors; default: the shipped weights) or a
    /// published SAM-Med3D one (torch.save .pth).
    #[arg(long)]
    pub weights: Option<std::path::PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// libtorch threads (default: libtorch's).
    #[arg(long)]
    pub threads: Option<i32>,
    /// The largest request body in MiB (a compressed image).
    #[arg(long, default_value_t = 1024)]
    pub max_body_mb: usize,
    /// The largest image or segmentation once unpacked, in MiB (default: a quarter of the
    /// memory, at most 8 GiB).
    #[arg(long)]
    pub max_array_mb: Option<usize>,
}

/// The engine binary: `--device-info`, or a command; errors as one line on stderr.
pub fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--device-info") {
        let cuda = tch::Cuda::is_available();
        let n = if cuda { tch::Cuda::device_count() } else { 0 };
        println!(
            "{{\"cuda\":{cuda},\"cuda_devices\":{n},\"cudnn\":{},\"threads\":{}}}",
            tch::Cuda::cudnn_is_available(),
            tch::get_num_threads()
        );
        return ExitCode::SUCCESS;
    }
    let cli = <EngineCli as clap::Parser>::parse();
    let r = match &cli.command {
        EngineCommand::Infer(a) => run_infer(a),
        EngineCommand::Train(a) => run_train(a),
        EngineCommand::TrainCorrector(a) => run_train_corrector(a),
        EngineCommand::Eval(a) => run_eval(a),
        EngineCommand::ServeHttp(a) => run_serve_http(a),
        EngineCommand::Serve => crate::engine::serve::serve(crate::engine::EngineOptions { mr_adapter: default_mr_adapter_path(), ..Default::default() })
            .context("sam3d-studio-engine serve"),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Inference in this process (links libtorch).
pub fn run_infer(a: &InferArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let prompts = a.prompts();
    if prompts.is_empty() {
        bail!("infer needs a prompt: --click-ras X,Y,Z or --box-ras X0,Y0,Z0,X1,Y1,Z1");
    }
    let click = prompts[0].point.map(|p| p.at).or(prompts[0].bbox.map(|b| b.centre())).unwrap_or(RasMm::new(0.0, 0.0, 0.0));
    if let Some(m) = &a.out_mesh {
        crate::shape::MeshFormat::from_path(m)?;
        check_writable(m)?;
    }
    check_writable(&a.out_mask)?;
    let (weights, device) = weights_and_device(a.weights.as_ref(), &a.device, a.threads)?;
    let volume = Arc::new(crate::volume::open_with(&a.volume, a.series.as_ref())?);
    // Fail on a point outside the volume before loading any weights.
    let voxel_from_ras = volume.voxel_from_ras();
    for (flag, p) in a.points() {
        if !volume.shape().contains(voxel_from_ras.apply(p)) {
            let v = voxel_from_ras.apply(p);
            bail!(
                "{}: {flag} at RAS ({:.1}, {:.1}, {:.1}) mm is outside the volume (voxel ({:.1}, {:.1}, {:.1}) of a {} grid)",
                a.volume.display(),
                p.x(),
                p.y(),
                p.z(),
                v.x(),
                v.y(),
                v.z(),
                volume.shape()
            );
        }
    }
    let mut session = Session::new();
    session.set_options(a.pipeline.clone())?;
    // The project's model or a SAM-Med3D checkpoint, chosen by the file.
    let info = session.load_weights(&weights, device)?;
    if let Some(ad) = &a.adapter {
        session.load_adapter(ad)?;
    }
    if a.pipeline.mr_adapter {
        session.set_mr_adapter(default_mr_adapter_path())?;
    }
    // Repeated runs (a benchmark) time what a viewer's clicks get once the volume has been
    // open a moment: the scan smoothed whole for the refinement. One run does without.
    session.set_background_smoothing(a.repeat > 1);
    let modality = session.set_volume(volume.clone(), Some(a.modality))?;
    session.wait_for_smoothing();
    if let Some(e) = session.mr_adapter_error() {
        eprintln!("warning: the MR adapter was not used: {e}");
    }
    let load_secs = t0.elapsed().as_secs_f64();
    let mut runs = Vec::new();
    let mut steps = Vec::new();
    let mut last = None;
    for run in 0..a.repeat {
        let mut object = None;
        steps.clear();
        for (n, prompt) in prompts.iter().enumerate() {
            let req = InferRequest { prompt: prompt.clone(), plane: a.plane, mask2d: None, object };
            let r = session
                .infer(&req, &mut NoHooks)
                .with_context(|| format!("{}: inference failed at prompt {} ({})", a.volume.display(), n + 1, prompt.describe()))?;
            object = Some(r.object);
            steps.push(PromptJson { prompt: prompt.describe(), voxel_count: r.voxel_count, volume_ml: r.volume_ml, secs: r.timings.total_secs });
            last = Some(r);
        }
        if let Some(r) = &last {
            runs.push(r.timings.clone());
            if a.repeat > 1 && !a.json {
                let t = &r.timings;
                eprintln!(
                    "run {:>3}/{}: preprocess {:.3} s, 2D mask {:.3} s, 3D shape {:.3} s, postprocess {:.3} s, total {:.3} s",
                    run + 1,
                    a.repeat,
                    t.preprocess_secs,
                    t.mask2d_secs,
                    t.shape_secs,
                    t.postprocess_secs,
                    t.total_secs
                );
            }
        }
    }
    let Some(result) = last else { bail!("infer needs a prompt") };
    let repeat = (a.repeat > 1).then(|| RepeatJson { median: StageMedians::of(&runs), runs });
    result.mask.save(&a.out_mask)?;
    let mut mesh_triangles = None;
    if let Some(path) = &a.out_mesh {
        let empty = crate::shape::Mesh::default();
        let mesh = result.mesh.as_ref().unwrap_or(&empty);
        let obj = crate::shape::MeshObject { label: 1, name: "organ", mesh };
        crate::shape::write_mesh(path, &[obj], crate::shape::MeshSpace::Ras)?;
        mesh_triangles = Some(mesh.triangles.len());
    }
    let out = InferJson {
        volume: a.volume.display().to_string(),
        out_mask: a.out_mask.display().to_string(),
        out_mesh: a.out_mesh.as_ref().map(|p| p.display().to_string()),
        weights: weights.display().to_string(),
        adapter: result.adapter.as_ref().map(|p| p.display().to_string()),
        preset: info.preset,
        device: info.device,
        modality,
        click_ras: click.to_array(),
        plane: a.plane,
        class: result.class,
        voxel_count: result.voxel_count,
        volume_ml: result.volume_ml,
        timings: result.timings.clone(),
        prompts: steps,
        load_secs,
        mesh_triangles,
        repeat,
    };
    if a.json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        let t = &result.timings;
        if out.prompts.len() > 1 {
            for (n, p) in out.prompts.iter().enumerate() {
                println!("prompt {:<2} {}: {} voxels, {:.2} ml, {:.3} s", n + 1, p.prompt, p.voxel_count, p.volume_ml, p.secs);
            }
        }
        println!("mask      {} ({} voxels, {:.2} ml)", out.out_mask, out.voxel_count, out.volume_ml);
        println!(
            "timings   preprocess {:.3} s, 2D mask {:.3} s, 3D shape {:.3} s, postprocess {:.3} s, total {:.3} s (+ {:.2} s loading)",
            t.preprocess_secs, t.mask2d_secs, t.shape_secs, t.postprocess_secs, t.total_secs, load_secs
        );
        if let Some(j) = t.join {
            println!("grow      region growing from the click: {}", serde_json::to_string(&j)?.trim_matches('"').replace('_', " "));
        }
        if let Some(r) = &out.repeat {
            let m = &r.median;
            println!(
                "median    of {} warm runs: preprocess {:.3} s, 2D mask {:.3} s, 3D shape {:.3} s, postprocess {:.3} s, total {:.3} s",
                m.warm_runs, m.preprocess_secs, m.mask2d_secs, m.shape_secs, m.postprocess_secs, m.total_secs
            );
        }
    }
    Ok(())
}

/// `serve-http`: loads the model, then serves until SIGINT/SIGTERM. Prints
/// `listening on http://ADDR` once bound (on stdout, flushed: tests and scripts wait for it).
pub fn run_serve_http(a: &ServeHttpArgs) -> Result<()> {
    use crate::engine::http::{HttpOptions, serve_http, worker::ModelWorker};
    let secs = |v: f64, flag: &str| {
        if v.is_finite() && v > 0.0 { Ok(std::time::Duration::from_secs_f64(v)) } else { Err(anyhow::anyhow!("{flag} must be a positive number of seconds, got {v}")) }
    };
    let api_key = match &a.api_key_file {
        None => None,
        Some(f) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("{}: could not read the API key file", f.display()))?;
            let key = text.lines().next().unwrap_or("").trim().to_string();
            if key.len() < 16 {
                bail!("{}: the API key must be one line of at least 16 characters", f.display());
            }
            Some(key)
        }
    };
    if !a.bind.ip().is_loopback() && api_key.is_none() {
        eprintln!("warning: serving on {} without --api-key-file: anyone who reaches this address can use the model", a.bind);
    }
    let options = HttpOptions {
        bind: a.bind,
        api_key,
        max_sessions: a.max_sessions as usize,
        idle_timeout: secs(a.idle_timeout, "--idle-timeout")?,
        liveness_timeout: secs(a.liveness_timeout, "--liveness-timeout")?,
        max_body_bytes: a.max_body_mb.saturating_mul(1 << 20),
        // Reap within a quarter of the shorter timeout (every 15 s at the defaults).
        sweep_interval: std::time::Duration::from_secs_f64((a.idle_timeout.min(a.liveness_timeout) / 4.0).clamp(0.1, 15.0)),
        max_array_bytes: a.max_array_mb.map_or_else(crate::engine::http::default_max_array_bytes, |m| m.saturating_mul(1 << 20)),
        ..HttpOptions::default()
    };
    let (weights, device) = weights_and_device(a.weights.as_ref(), &a.device, a.threads)?;
    let worker = ModelWorker::spawn(weights, device, crate::options::PipelineOptions::default(), default_mr_adapter_path())?;
    let info = worker.info().clone();
    serve_http(options, worker, |addr| {
        use std::io::Write;
        eprintln!("model {} on {}", info.describe(), info.device);
        println!("listening on http://{addr}");
        let _ = std::io::stdout().flush();
    })
}

/// The weights to load (given, else the shipped ones), the device, and libtorch's threads set.
fn weights_and_device(weights: Option<&std::path::PathBuf>, device: &str, threads: Option<i32>) -> Result<(std::path::PathBuf, tch::Device)> {
    let weights = match (weights, default_weights_path()) {
        (Some(w), _) => w.clone(),
        (None, Some(d)) => d,
        (None, None) => bail!("{NO_WEIGHTS_HELP}"),
    };
    let device = parse_device(device).map_err(anyhow::Error::msg)?;
    if let Some(n) = threads {
        tch::set_num_threads(n);
    }
    Ok((weights, device))
}

/// The output's directory must exist (checked before the work, so nothing is half-done).
fn check_writable(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: output directory {} does not exist", path.display(), dir.display());
    }
    Ok(())
}

/// Creates the folder an output goes in (a report's `runs/today/`, say), naming the output
/// when that fails; a path that exists as a folder is refused.
fn ensure_output_dir(path: &Path) -> Result<()> {
    if path.is_dir() {
        bail!("{}: is a folder; give a file name (REPORT.csv)", path.display());
    }
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !dir.is_dir()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create its folder {}", path.display(), dir.display()))?;
    }
    Ok(())
}

/// `train-corrector`, in the engine process.
pub fn run_train_corrector(a: &TrainCorrectorArgs) -> Result<()> {
    use crate::engine::train_corrector::{CorrectorTrainOptions, train_corrector};
    if !(0.0..=1.0).contains(&a.real_share) {
        bail!("--real-share {}: a share between 0 and 1", a.real_share);
    }
    for d in &a.data {
        if !d.is_dir() {
            bail!("--data {}: not a folder", d.display());
        }
    }
    let o = CorrectorTrainOptions {
        data: a.data.clone(),
        holdout: a.holdout.clone(),
        phantoms: a.phantoms,
        real_share: a.real_share,
        min_voxels: a.min_voxels,
        steps: a.steps,
        batch: a.batch,
        lr: a.lr,
        warmup: a.warmup,
        seed: a.seed,
        config: crate::model::corrector::CorrectorConfig { base: a.base, levels: a.levels, cells: a.cells },
        init: a.init.clone(),
    };
    let bar = Progress::new("train-corrector", a.steps);
    let s = train_corrector(&o, &a.out, &|_, _, _| bar.inc(1)).with_context(|| format!("training the corrector into {}", a.out.display()))?;
    bar.finish();
    println!(
        "{}: {} steps ({} samples, {:.1} samples/s, {:.0} s){}; loss {:.4} → {:.4}; Dice on the cube {:.3} (the candidates it was given: {:.3})",
        s.weights.display(),
        s.steps,
        s.samples,
        s.samples_per_sec,
        s.secs,
        if s.stopped { ", stopped on request" } else { "" },
        s.first_loss,
        s.last_loss,
        s.last_dice,
        s.last_previous_dice
    );
    Ok(())
}

/// `train`, in the engine process.
pub fn run_train(a: &TrainArgs) -> Result<()> {
    let cfg = crate::engine::train::TrainConfig::load(&a.config)?;
    if a.resume && !a.out.join("state.safetensors").exists() {
        bail!("{}: --resume but there is no state.safetensors to resume from", a.out.display());
    }
    let total = cfg.train.steps;
    let bar = Progress::new("train", total);
    let started = std::cell::Cell::new(false);
    let on_step = |step: u64, _: u64| {
        if !started.replace(true) {
            bar.inc(step.saturating_sub(1));
        }
        bar.inc(1);
    };
    let s = match cfg.model.family()? {
        crate::train_config::ModelFamily::SamMed3d => crate::engine::train_sam_med3d::train(&cfg, &a.out, a.resume, &on_step),
        crate::train_config::ModelFamily::Sam3d => crate::engine::train::train(&cfg, &a.out, a.resume, &on_step),
    }
    .with_context(|| format!("training into {}", a.out.display()))?;
    bar.finish();
    if let Some(step) = s.stopped_at {
        println!("{}: stopped on request at step {step} of {total}, checkpoint written there; --resume goes on from it", a.out.display());
    }
    if s.losses.is_empty() {
        println!("{}: already at step {} of {}; nothing to train", a.out.display(), s.last_step, total);
        return Ok(());
    }
    let first = s.losses.first().map(|l| l.1).unwrap_or(f64::NAN);
    let last = s.losses.last().map(|l| l.1).unwrap_or(f64::NAN);
    println!(
        "steps {}–{}: loss {first:.4} → {last:.4}, {:.1} samples/s, {:.1} s{}",
        s.first_step,
        s.last_step,
        s.samples_per_sec,
        s.secs,
        s.last_validation.map(|v| format!(", validation Dice 2D {:.3}, 3D grid {:.3} ({} clicks)", v.dice_2d, v.dice_3d_grid, v.clicks)).unwrap_or_default()
    );
    Ok(())
}

/// `eval`, in the engine process.
pub fn run_eval(a: &EvalArgs) -> Result<()> {
    // The report's folder before any click runs (a report is written after all of them).
    ensure_output_dir(&a.out)?;
    let weights = if a.baseline_only {
        None
    } else {
        match (&a.weights, default_weights_path()) {
            (Some(w), _) => Some(w.clone()),
            (None, Some(d)) => Some(d),
            (None, None) => {
                eprintln!("no --weights and no shipped weights: evaluating the baseline only");
                None
            }
        }
    };
    if a.adapter.is_some() && weights.is_none() {
        bail!("--adapter needs model weights (--weights)");
    }
    let device = crate::model::parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let opts = crate::engine::eval::EvalOptions {
        data: a.data.clone(),
        weights,
        adapter: a.adapter.clone(),
        device,
        grow: Default::default(),
        labels: a.labels.clone(),
        context: !a.no_context,
        reference_mask2d: a.mask2d == "reference",
        baseline: !a.model_only,
        pipeline: a.pipeline_options().map_err(anyhow::Error::msg)?,
        mr_adapter: if !a.pipeline.mr_adapter || a.adapter.is_some() { None } else { default_mr_adapter_path() },
        click_depth: a.click_depth,
        clicks: a.clicks as usize,
    };
    let bar = std::cell::RefCell::new(None::<Progress>);
    let (rows, summary) =
        crate::engine::eval::evaluate(&opts, &|n| *bar.borrow_mut() = Some(Progress::new("eval", n)), &|| {
            if let Some(b) = bar.borrow().as_ref() {
                b.inc(1)
            }
        })?;
    if let Some(b) = bar.borrow().as_ref() {
        b.finish();
    }
    let js = crate::engine::eval::write_report(&a.out, &rows, &summary)?;
    for (m, s) in &summary.methods {
        println!(
            "{m:<11} {} clicks: Dice mean {:.3} worst {:.3} ({}), HD95 mean {} mm{}",
            s.rows,
            s.mean_dice,
            s.worst_dice,
            s.worst_dice_at,
            s.mean_hd95_mm.map(|v| format!("{v:.1}")).unwrap_or("–".into()),
            s.mean_dice_2d.map(|v| format!(", 2D Dice on the clicked slice {v:.3}")).unwrap_or_default()
        );
        if s.mean_dice_by_prompt.len() > 1 {
            let by: Vec<String> = s.mean_dice_by_prompt.iter().enumerate().map(|(k, d)| format!("{}: {d:.3}", k + 1)).collect();
            println!(
                "{:<11} mean Dice after each prompt: {}{}",
                "",
                by.join(", "),
                s.mean_prompt_secs.map(|t| format!(" ({:.0} ms per correction)", t * 1000.0)).unwrap_or_default()
            );
            if !s.below_first.is_empty() {
                println!("{:<11} lower after the last prompt than after the first: {} of {} ({})", "", s.below_first.len(), s.rows, s.below_first.join(", "));
            }
        }
        if s.by_label.len() > 1 && s.by_label.len() <= 60 {
            print!("{}", crate::engine::eval::label_table(s));
        }
        if s.by_family.len() > 1 {
            print!("{}", crate::engine::eval::family_table(s));
        }
    }
    // The model's worst click, one command away from a look in the viewer (which runs the
    // shipped weights with its own toolbar settings, so other weights or options differ).
    let worst = rows.iter().filter(|r| r.method.starts_with("model")).min_by(|a, b| a.metrics.dice.total_cmp(&b.metrics.dice));
    if let Some(r) = worst
        && let Ok(pairs) = crate::data::preprocess::find_pairs(&a.data)
        && let Some(p) = pairs.iter().find(|p| p.name == r.case)
    {
        let quoted = |p: &std::path::Path| {
            let s = p.display().to_string();
            if s.contains(char::is_whitespace) { format!("'{s}'") } else { s }
        };
        println!(
            "worst click {}/{}/{} (Dice {:.3}); in the viewer (shipped weights, its own settings): sam3d-studio {} --labels {} --at={:.2},{:.2},{:.2} --click {}",
            r.case,
            r.label,
            crate::engine::eval::plane_name(r.plane),
            r.metrics.dice,
            quoted(&p.image),
            quoted(&p.labels),
            r.click[0],
            r.click[1],
            r.click[2],
            crate::engine::eval::plane_name(r.plane)
        );
    }
    println!("report {} and {} ; its clicks worst first in the viewer: sam3d-studio --report {}", a.out.display(), js.display(), a.out.display());
    Ok(())
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_medians_leave_the_cold_run_out() {
        let t = |shape: f64, post: f64| crate::engine::Timings { shape_secs: shape, postprocess_secs: post, total_secs: shape + post, ..Default::default() };
        // The first (cold) run is 10 s and must not count; the warm ones are 1, 3, 2, 4 s.
        let runs = [t(10.0, 5.0), t(1.0, 0.5), t(3.0, 0.1), t(2.0, 0.2), t(4.0, 0.3)];
        let m = StageMedians::of(&runs);
        assert_eq!(m.warm_runs, 4);
        assert_eq!(m.shape_secs, 2.5);
        assert_eq!(m.postprocess_secs, 0.25);
        assert_eq!(m.total_secs, (2.2 + 3.1) / 2.0);
        assert_eq!(m.mesh_secs, None, "no run made a mesh");
        // One run: that run.
        assert_eq!(StageMedians::of(&runs[..1]).shape_secs, 10.0);
    }
}
