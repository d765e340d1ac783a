//! The fine-tuning panel (Model → Fine-tune on this scan…): a LoRA adapter trained on the scan
//! in the viewer — its label map as it is now, accepted results included — and on more
//! labelled folders, then compared with the base weights on the labels the user held out.
//!
//! - **Where it runs**: `sam3d-studio-engine train` in a child process of its own (the model and
//!   every tensor stay out of the GUI, as for "3D from click"), so the window stays responsive
//!   and Stop is a kill: the run keeps its last checkpoint and Resume goes on from it
//!   (`train --resume`, exact). The child writes [`crate::progress`] lines to stderr
//!   (`SAM3D_PROGRESS=lines`); after each one the job thread reads the new lines of the run's
//!   `log.jsonl` (loss per step, validation) and sends them to the UI, which draws the loss
//!   curve and the progress bar with its ETA.
//! - **What a run is**: a folder (by default under the user's data directory) holding
//!   `data/<scan>.nii.gz` (a link to the scan, or a copy where links are refused; a DICOM
//!   scan's folder is linked as `data/<scan>/`, an NRRD or MetaImage file keeps its ending),
//!   `data/<scan>_labels.nii.gz` and `labels.tsv` (the label map and names as the viewer has
//!   them), `config.toml` (the training config, checked by [`TrainConfig`] before it is
//!   written), and what `train` writes: `adapter.safetensors`, `model.safetensors`, the resume
//!   state and `log.jsonl`. The run can be repeated on the command line with
//!   `sam3d-studio train --config DIR/config.toml --out DIR`.
//! - **Compare**: `sam3d-studio-engine eval` on the run's data, once with the base weights
//!   alone (as the viewer gives them without this adapter) and once with the adapter, on the
//!   held-out labels (every trained label when none is held out: then it measures fit, and the
//!   panel says so); per label the mean one-click Dice and HD95 of the three planes' clicks.

use super::labels::LabelTable;
use crate::progress::{fmt_secs, parse_progress_line};
use crate::train_config::{PREPARE_PROGRESS, SAM_MED3D_CPU_SECS_PER_SAMPLE, STOP_REQUEST_FILE, TrainConfig, is_torch_checkpoint_name};
use crate::volume::LabelMap;
use crossbeam_channel::{Receiver, Sender, unbounded};
use egui::{Color32, RichText};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The panel's settings (persisted with the app).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct FineTuneSettings {
    /// Optimiser steps.
    pub steps: u64,
    /// Samples per step.
    pub batch: usize,
    pub lr: f64,
    /// LoRA rank (alpha is twice the rank).
    pub rank: usize,
    /// More training folders of volume/label pairs, one per line.
    pub more_dirs: String,
    /// Where runs go (empty: [`default_runs_dir`]).
    pub runs_dir: String,
}

impl Default for FineTuneSettings {
    fn default() -> Self {
        // About four minutes of training on two CPU cores with the shipped `small-guided`
        // weights (the MR adapter's runs: 5–7 samples/s).
        Self { steps: 100, batch: 8, lr: 2e-3, rank: 8, more_dirs: String::new(), runs_dir: String::new() }
    }
}

impl FineTuneSettings {
    /// The folders of [`Self::more_dirs`].
    pub fn more_dirs(&self) -> Vec<PathBuf> {
        self.more_dirs.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect()
    }
}

/// `$XDG_DATA_HOME/sam3d-studio/finetune` (or `~/.local/share/…`; `%LOCALAPPDATA%\…` on
/// Windows), else a folder in the temporary directory.
pub fn default_runs_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = if cfg!(windows) {
        env("LOCALAPPDATA")
    } else {
        env("XDG_DATA_HOME").or_else(|| env("HOME").map(|h| h.join(".local/share")))
    };
    base.unwrap_or_else(std::env::temp_dir).join("sam3d-studio").join("finetune")
}

/// `YYYYMMDD-HHMMSS` (UTC) of a time, for run folder names.
pub fn timestamp(t: std::time::SystemTime) -> String {
    let ([y, m, d], [hh, mm, ss]) = crate::utc::utc_parts(t);
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}")
}

/// The case name of a scan file: its name without `.nii(.gz)`, never ending in `_labels`.
pub fn case_name(volume: &Path) -> String {
    let n = volume.file_name().map_or_else(|| "scan".to_string(), |n| n.to_string_lossy().into_owned());
    let stem = n.strip_suffix(".nii.gz").or_else(|| n.strip_suffix(".nii")).unwrap_or(&n);
    let clean: String = stem.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let clean = if clean.is_empty() { "scan".to_string() } else { clean };
    if clean.ends_with("_labels") { format!("{clean}_scan") } else { clean }
}

/// Everything a fine-tuning run needs, taken from the viewer when Start is pressed.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// The run's folder.
    pub dir: PathBuf,
    /// The base weights (what the engine has loaded).
    pub weights: PathBuf,
    /// The scan's file.
    pub volume: PathBuf,
    /// The label map as the viewer has it (on the scan's grid).
    pub labels: Arc<LabelMap>,
    /// Names of the labels (written as `labels.tsv` beside the label map).
    pub names: BTreeMap<u16, String>,
    /// Labels of the scan never trained on (what Compare measures).
    pub held_out: Vec<u16>,
    /// The scan is MR (the engine may put the shipped MR adapter on the base by itself).
    pub mr: bool,
    pub settings: FineTuneSettings,
}

impl RunPlan {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn case(&self) -> String {
        case_name(&self.volume)
    }

    /// The base is a published SAM-Med3D checkpoint (a `.pth`), not the project's model.
    pub fn is_sam_med3d(&self) -> bool {
        is_torch_checkpoint_name(&self.weights)
    }

    /// The training config (TOML), checked by [`TrainConfig`]; relative to nothing (absolute
    /// paths), so it runs from anywhere.
    pub fn config_toml(&self) -> Result<String, String> {
        use toml::{Table, Value};
        let s = &self.settings;
        // Absolute: the config is read relative to the run's folder, not the viewer's directory.
        let path = |p: &Path| Value::String(std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string());
        let mut dirs = vec![path(&self.data_dir())];
        dirs.extend(s.more_dirs().iter().map(|d| path(d)));
        let table = |pairs: Vec<(&str, Value)>| Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Table>());
        let mut data = vec![
            ("dirs", Value::Array(dirs)),
            // Every case trains; validation uses the training cases' clicks (the held-out
            // labels are what Compare measures).
            ("val_cases", Value::Integer(0)),
            ("min_voxels", Value::Integer(64)),
            ("class_weight_power", Value::Float(0.5)),
        ];
        if !self.held_out.is_empty() {
            let classes = Value::Array(self.held_out.iter().map(|&l| Value::Integer(i64::from(l))).collect());
            data.push(("holdout", Value::Array(vec![table(vec![("case", Value::String(self.case())), ("classes", classes)])])));
        }
        let steps = s.steps as i64;
        let sam_med3d = self.is_sam_med3d();
        let mut model = vec![("base_checkpoint", path(&self.weights)), ("device", Value::String("auto".into()))];
        let mut lora = vec![
            ("enabled", Value::Boolean(true)),
            ("rank", Value::Integer(s.rank as i64)),
            ("alpha", Value::Float(2.0 * s.rank as f64)),
            ("dropout", Value::Float(0.0)),
        ];
        if sam_med3d {
            // A published checkpoint: its family, and the engine's default targets for it (the
            // encoder's and decoder's attention and MLP linears).
            model.push(("family", Value::String("sam_med3d".into())));
        } else {
            lora.push(("targets", Value::Array(["to_qkv", "to_q", "to_kv", "to_out", "mlp.0", "mlp.2"].iter().map(|t| Value::String((*t).into())).collect())));
        }
        let doc = table(vec![
            ("model", table(model)),
            ("data", table(data)),
            (
                "train",
                table(vec![
                    ("steps", Value::Integer(steps)),
                    ("batch", Value::Integer(s.batch as i64)),
                    ("lr", Value::Float(s.lr)),
                    ("warmup", Value::Integer((steps / 10).clamp(1, 20))),
                    ("min_lr_frac", Value::Float(0.1)),
                    ("weight_decay", Value::Float(0.0)),
                    ("clip", Value::Float(1.0)),
                    ("seed", Value::Integer(1)),
                    ("curriculum_step", Value::Integer(0)),
                    // Validation at the last step only: on a scan with dozens of labels each
                    // costs as much as tens of steps.
                    ("val_every", Value::Integer(0)),
                    ("checkpoint_every", Value::Integer((steps / 10).max(10))),
                    ("prefetch", Value::Integer(4)),
                    ("context_dropout", Value::Float(0.3)),
                    ("pred_mask_frac", Value::Float(0.5)),
                ]),
            ),
            ("loss", table(vec![("chamfer", Value::Float(0.5))])),
            ("lora", table(lora)),
            (
                "augment",
                table(vec![
                    ("rotate_deg", Value::Float(12.0)),
                    ("scale", Value::Float(0.12)),
                    ("intensity_gain", Value::Float(0.15)),
                    ("intensity_offset", Value::Float(0.1)),
                ]),
            ),
        ]);
        let header = format!(
            "# LoRA fine-tuning made by the viewer's fine-tuning panel on {}.\n# Again from a terminal: sam3d-studio train --config {} --out {}\n",
            self.volume.display(),
            self.dir.join("config.toml").display(),
            self.dir.display()
        );
        let text = header + &toml::to_string(&doc).map_err(|e| format!("the training config: {e}"))?;
        TrainConfig::from_toml_str(&text, "config.toml", &self.dir).map_err(|e| format!("the training config: {e}"))?;
        Ok(text)
    }

    /// Writes the run's data folder and config: a link to the scan (a copy where links are
    /// refused), the label map and its names, `config.toml`.
    pub fn stage(&self) -> Result<(), String> {
        let data = self.data_dir();
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: cannot create the folder: {e}", data.display()))?;
        let case = self.case();
        let source = self.volume.canonicalize().map_err(|e| format!("{}: {e}", self.volume.display()))?;
        // A DICOM scan is its folder, linked as `data/<case>/` (a case beside
        // `<case>_labels.nii.gz`); a file keeps the ending its format is known by.
        let (source, image) = if crate::volume::detect(&source).is_ok_and(|f| f == crate::volume::Format::Dicom) {
            let folder = if source.is_dir() { source.clone() } else { source.parent().map(Path::to_path_buf).unwrap_or_default() };
            (folder, data.join(&case))
        } else {
            let name = self.volume.to_string_lossy().to_ascii_lowercase();
            let ext = [".nii", ".nrrd", ".mha"].into_iter().find(|e| name.ends_with(e)).unwrap_or(".nii.gz");
            (source, data.join(format!("{case}{ext}")))
        };
        let _ = std::fs::remove_file(&image);
        if link(&source, &image).is_err() {
            std::fs::copy(&source, &image).map_err(|e| format!("{}: cannot copy the scan to {}: {e}", source.display(), image.display()))?;
        }
        let labels = data.join(format!("{case}_labels.nii.gz"));
        self.labels.save(&labels).map_err(|e| e.to_string())?;
        let tsv: String = self.names.iter().map(|(id, n)| format!("{id}\t{n}\n")).collect();
        crate::volume::atomic_write(&data.join("labels.tsv"), |w| std::io::Write::write_all(w, tsv.as_bytes())).map_err(|e| e.to_string())?;
        let config = self.config_toml()?;
        crate::volume::atomic_write(&self.dir.join("config.toml"), |w| std::io::Write::write_all(w, config.as_bytes())).map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(unix)]
fn link(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(src, dst)
}

#[cfg(not(unix))]
fn link(src: &Path, dst: &Path) -> std::io::Result<()> {
    std::fs::hard_link(src, dst)
}

/// One label of a comparison of the base weights with the adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    pub label: u16,
    pub name: Option<String>,
    pub base_dice: f64,
    pub adapter_dice: f64,
    pub base_hd95_mm: Option<f64>,
    pub adapter_hd95_mm: Option<f64>,
}

/// One label's figures in an `eval` summary.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelScore {
    pub dice: f64,
    pub hd95_mm: Option<f64>,
    pub name: Option<String>,
}

/// A finished comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    /// The adapter the base ran with by itself (the shipped MR adapter on an MR scan).
    pub base_adapter: Option<String>,
}

/// Per label, the mean Dice and HD95 of the model's rows in an `eval` summary JSON.
pub fn eval_by_label(json: &serde_json::Value) -> Result<BTreeMap<u16, LabelScore>, String> {
    let methods = json.get("methods").and_then(|m| m.as_object()).ok_or("no methods in the report")?;
    let (_, model) = methods.iter().find(|(k, _)| k.starts_with("model")).ok_or("no model rows in the report")?;
    let rows = model.get("by_label").and_then(|b| b.as_array()).ok_or("no per-label summary in the report")?;
    let mut out = BTreeMap::new();
    for r in rows {
        let (Some(label), Some(dice)) = (r.get("label").and_then(|v| v.as_u64()), r.get("mean_dice").and_then(|v| v.as_f64())) else {
            return Err(format!("a per-label row without label or mean_dice: {r}"));
        };
        let hd = r.get("mean_hd95_mm").and_then(|v| v.as_f64());
        let name = r.get("name").and_then(|v| v.as_str()).map(str::to_string);
        out.insert(label as u16, LabelScore { dice, hd95_mm: hd, name });
    }
    Ok(out)
}

/// The comparison's rows: labels measured in both reports.
pub fn compare_rows(base: &serde_json::Value, adapter: &serde_json::Value) -> Result<Vec<CompareRow>, String> {
    let (b, a) = (eval_by_label(base)?, eval_by_label(adapter)?);
    Ok(b.iter()
        .filter_map(|(l, bs)| {
            a.get(l).map(|s| CompareRow { label: *l, name: bs.name.clone(), base_dice: bs.dice, adapter_dice: s.dice, base_hd95_mm: bs.hd95_mm, adapter_hd95_mm: s.hd95_mm })
        })
        .collect())
}

/// What the job threads tell the UI.
#[derive(Debug)]
pub enum JobEvent {
    /// Training is preparing its data: `done` of `total` (cases loaded, validation clicks).
    Preparing { done: u64, total: u64 },
    /// Training: `done` steps (of the plan's).
    Progress { done: u64 },
    /// A step's loss from `log.jsonl`.
    Step { step: u64, loss: f64 },
    /// A validation from `log.jsonl` (3D grid Dice with the model's own 2D mask, context on).
    Validation { step: u64, dice_3d: f64 },
    /// Training ended: finished, stopped by the user, or failed (the reason).
    TrainEnded(Result<bool, String>),
    /// Compare: which model is being measured, clicks done of total.
    CompareProgress { which: &'static str, done: u64, total: u64 },
    CompareEnded(Result<Comparison, String>),
}

/// How a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    Preparing,
    Training,
    /// Stopped by the user; Resume goes on from the last checkpoint.
    Stopped,
    Failed(String),
    Finished,
}

/// Compare's state.
#[derive(Clone, Debug, PartialEq)]
pub enum CompareState {
    Running { which: &'static str, done: u64, total: u64 },
    Done(Comparison),
    Failed(String),
}

/// A run shown in the panel.
#[derive(Debug)]
pub struct Run {
    pub plan: RunPlan,
    pub state: RunState,
    pub done: u64,
    /// (step, loss) of every step so far.
    pub losses: Vec<[f64; 2]>,
    /// (step, 3D Dice) of each validation.
    pub validations: Vec<[f64; 2]>,
    /// When the first step of this (resumed) stretch arrived, and its step: the rate and ETA
    /// count from there, past the data loading.
    first: Option<(Instant, u64)>,
    /// When this stretch started (the preparation's elapsed time counts from here).
    started: Instant,
    /// The data preparation's progress (`prepare` lines: done of total), before the first step.
    preparing: Option<(u64, u64)>,
    pub compare: Option<CompareState>,
    /// The labels Compare measures.
    pub compare_labels: Vec<u16>,
}

impl Run {
    pub fn adapter_path(&self) -> PathBuf {
        self.plan.dir.join("adapter.safetensors")
    }

    pub fn total(&self) -> u64 {
        self.plan.settings.steps
    }

    /// Steps per second and the ETA, once two steps of this stretch have arrived.
    pub fn eta(&self) -> Option<(f64, f64)> {
        let (t0, s0) = self.first?;
        let n = self.done.checked_sub(s0).filter(|n| *n > 0)?;
        let rate = n as f64 / t0.elapsed().as_secs_f64().max(1e-6);
        Some((rate, self.total().saturating_sub(self.done) as f64 / rate))
    }

    pub fn is_active(&self) -> bool {
        matches!(self.state, RunState::Preparing | RunState::Training) || matches!(self.compare, Some(CompareState::Running { .. }))
    }

    /// One line for the status bar and the panel: "step 37 / 100 · 2.4 steps/s · ETA 0m26s".
    pub fn summary(&self) -> String {
        match &self.state {
            RunState::Preparing => {
                let secs = fmt_secs(self.started.elapsed().as_secs_f64());
                match self.preparing {
                    Some((done, total)) => format!("preparing the data… {done} / {total} · {secs}"),
                    None => format!("preparing the data… loading the scan · {secs}"),
                }
            }
            RunState::Training => match self.eta() {
                Some((rate, eta)) => format!("step {} / {} · {:.2} samples/s · ETA {}", self.done, self.total(), rate * self.plan.settings.batch as f64, fmt_secs(eta)),
                None => format!("step {} / {} · loading…", self.done, self.total()),
            },
            RunState::Stopped => format!("stopped at step {} / {} (Resume goes on from the last checkpoint)", self.done, self.total()),
            RunState::Failed(e) => format!("failed: {e}"),
            RunState::Finished => format!("finished: {} steps", self.total()),
        }
    }
}

/// What a job stopped by the user ends with.
const STOPPED: &str = "stopped";

/// How long a training run asked to stop has to write its checkpoint and exit before it is
/// killed.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A child process the UI can stop.
type ChildSlot = Arc<Mutex<JobChild>>;

/// The job's process and whether Stop was pressed: one lock, so a Stop that lands while the
/// process is being started still stops it (it is never started, or killed once stored).
#[derive(Debug, Default)]
struct JobChild {
    child: Option<Child>,
    stopped: bool,
}

/// The panel's runtime state.
pub struct FineTune {
    /// The panel is shown.
    pub open: bool,
    /// Labels of the scan left out of training (unticked in the panel).
    pub held_out: BTreeSet<u16>,
    pub run: Option<Run>,
    /// The run folder's field (filled with a fresh name when the panel opens).
    pub dir_text: String,
    tx: Sender<JobEvent>,
    rx: Receiver<JobEvent>,
    child: ChildSlot,
    stop: Arc<AtomicBool>,
    /// Wakes the UI when a job thread sends.
    pub(super) wake: Option<egui::Context>,
}

impl Default for FineTune {
    fn default() -> Self {
        let (tx, rx) = unbounded();
        Self { open: false, held_out: BTreeSet::new(), run: None, dir_text: String::new(), tx, rx, child: Arc::default(), stop: Arc::default(), wake: None }
    }
}

impl std::fmt::Debug for FineTune {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FineTune").field("open", &self.open).field("run", &self.run).finish_non_exhaustive()
    }
}

/// A job still running when the app closes is stopped (a training run keeps its last checkpoint).
impl Drop for FineTune {
    fn drop(&mut self) {
        self.stop();
    }
}

impl FineTune {
    pub fn is_active(&self) -> bool {
        self.run.as_ref().is_some_and(Run::is_active)
    }

    /// A fresh run folder name for a scan.
    pub fn fresh_dir(settings: &FineTuneSettings, volume: &Path) -> PathBuf {
        let root = if settings.runs_dir.trim().is_empty() { default_runs_dir() } else { PathBuf::from(settings.runs_dir.trim()) };
        root.join(format!("{}-{}", case_name(volume), timestamp(std::time::SystemTime::now())))
    }

    fn sender(&self) -> (Sender<JobEvent>, Option<egui::Context>) {
        (self.tx.clone(), self.wake.clone())
    }

    /// Starts training `plan` (or resumes it, when `resume` and the folder has a checkpoint).
    pub fn start(&mut self, plan: RunPlan, engine: PathBuf, resume: bool) -> Result<(), String> {
        if self.is_active() {
            return Err("a fine-tuning job is already running".into());
        }
        let (losses, validations, done) = match self.run.take() {
            Some(r) if resume && r.plan.dir == plan.dir => (r.losses, r.validations, r.done),
            _ => (Vec::new(), Vec::new(), 0),
        };
        self.stop.store(false, Ordering::SeqCst);
        if let Ok(mut c) = self.child.lock() {
            c.stopped = false;
        }
        let (tx, wake) = self.sender();
        let (child, stop, job_plan) = (self.child.clone(), self.stop.clone(), plan.clone());
        std::thread::Builder::new()
            .name("sam3d-finetune".into())
            .spawn(move || {
                let ended = train_job(&job_plan, &engine, resume, &child, &tx, wake.as_ref()).map(|()| !stop.load(Ordering::SeqCst));
                let ended = match ended {
                    Err(_) if stop.load(Ordering::SeqCst) => Ok(false),
                    other => other,
                };
                let _ = tx.send(JobEvent::TrainEnded(ended));
                if let Some(w) = wake {
                    w.request_repaint();
                }
            })
            .map_err(|e| format!("could not start the fine-tuning thread: {e}"))?;
        let state = if resume { RunState::Training } else { RunState::Preparing };
        self.run = Some(Run { plan, state, done, losses, validations, first: None, started: Instant::now(), preparing: None, compare: None, compare_labels: Vec::new() });
        Ok(())
    }

    /// Stops the running job. Training is asked to stop ([`STOP_REQUEST_FILE`]): it writes a
    /// checkpoint after its current step and exits, so Resume goes on from there; it is killed
    /// if it has not exited within [`STOP_GRACE`] (still preparing its data, say). Compare is
    /// killed at once.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let training = self.run.as_ref().filter(|r| matches!(r.state, RunState::Training | RunState::Preparing)).map(|r| r.plan.dir.clone());
        if let Some(dir) = training
            && std::fs::write(dir.join(STOP_REQUEST_FILE), b"stop\n").is_ok()
        {
            if let Ok(mut c) = self.child.lock() {
                c.stopped = true;
            }
            let slot = self.child.clone();
            let _ = std::thread::Builder::new().name("sam3d-finetune-stop".into()).spawn(move || {
                let t0 = std::time::Instant::now();
                while t0.elapsed() < STOP_GRACE {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    if slot.lock().map_or(true, |c| c.child.is_none()) {
                        return;
                    }
                }
                if let Ok(mut c) = slot.lock()
                    && let Some(child) = c.child.as_mut()
                {
                    let _ = child.kill();
                }
            });
            return;
        }
        if let Ok(mut c) = self.child.lock() {
            c.stopped = true;
            if let Some(child) = c.child.as_mut() {
                let _ = child.kill();
            }
        }
    }

    /// Measures the base weights and the finished run's adapter on `labels` of the run's data.
    pub fn compare(&mut self, engine: PathBuf, labels: Vec<u16>) -> Result<(), String> {
        if self.is_active() {
            return Err("a fine-tuning job is already running".into());
        }
        let Some(run) = self.run.as_mut().filter(|r| r.state == RunState::Finished) else {
            return Err("Compare needs a finished run".into());
        };
        self.stop.store(false, Ordering::SeqCst);
        if let Ok(mut c) = self.child.lock() {
            c.stopped = false;
        }
        let (tx, wake) = (self.tx.clone(), self.wake.clone());
        let (child, stop, plan, adapter, job_labels) = (self.child.clone(), self.stop.clone(), run.plan.clone(), run.adapter_path(), labels.clone());
        std::thread::Builder::new()
            .name("sam3d-finetune-compare".into())
            .spawn(move || {
                let r = compare_job(&plan, &adapter, &job_labels, &engine, &child, &tx, wake.as_ref());
                let r = r.map_err(|e| if stop.load(Ordering::SeqCst) { STOPPED.to_string() } else { e });
                let _ = tx.send(JobEvent::CompareEnded(r));
                if let Some(w) = wake {
                    w.request_repaint();
                }
            })
            .map_err(|e| format!("could not start the comparison thread: {e}"))?;
        run.compare = Some(CompareState::Running { which: "base", done: 0, total: 0 });
        run.compare_labels = labels;
        Ok(())
    }

    /// Applies the job threads' events; returns the messages to show (finished, failed).
    pub fn drain(&mut self) -> Vec<(String, bool)> {
        let mut messages = Vec::new();
        let events: Vec<JobEvent> = self.rx.try_iter().collect();
        let Some(run) = self.run.as_mut() else { return messages };
        for ev in events {
            match ev {
                JobEvent::Preparing { done, total } => run.preparing = Some((done, total)),
                JobEvent::Progress { done } => {
                    if run.state == RunState::Preparing {
                        run.state = RunState::Training;
                    }
                    if run.first.is_none() {
                        run.first = Some((Instant::now(), done));
                    }
                    run.done = done;
                }
                JobEvent::Step { step, loss } => {
                    if run.state == RunState::Preparing {
                        run.state = RunState::Training;
                    }
                    run.losses.retain(|l| (l[0] as u64) < step);
                    run.losses.push([step as f64, loss]);
                }
                JobEvent::Validation { step, dice_3d } => {
                    run.validations.retain(|v| (v[0] as u64) != step);
                    run.validations.push([step as f64, dice_3d]);
                }
                JobEvent::TrainEnded(r) => {
                    run.state = match r {
                        Ok(true) => {
                            run.done = run.total();
                            messages.push((format!("Fine-tuning finished: {} (Use this adapter, or Compare)", run.adapter_path().display()), false));
                            RunState::Finished
                        }
                        Ok(false) => RunState::Stopped,
                        Err(e) => {
                            messages.push((format!("Fine-tuning failed: {e}"), true));
                            RunState::Failed(e)
                        }
                    };
                }
                JobEvent::CompareProgress { which, done, total } => run.compare = Some(CompareState::Running { which, done, total }),
                JobEvent::CompareEnded(r) => {
                    run.compare = match r {
                        Ok(c) => Some(CompareState::Done(c)),
                        Err(e) if e == STOPPED => None,
                        Err(e) => {
                            messages.push((format!("Compare failed: {e}"), true));
                            Some(CompareState::Failed(e))
                        }
                    }
                }
            }
        }
        messages
    }
}

/// Runs `cmd` as the job's child (stderr read line by line: progress lines to `on_progress`,
/// the rest kept for the error message); returns its exit status and the last lines it wrote.
fn run_child(mut cmd: Command, slot: &ChildSlot, mut on_progress: impl FnMut(&str, u64, u64)) -> Result<(ExitStatus, String), String> {
    cmd.env(crate::progress::PROGRESS_ENV, "lines").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let stderr = {
        let mut s = slot.lock().map_err(|_| "the job's process slot is poisoned".to_string())?;
        if s.stopped {
            return Err("stopped before the job's process started".into());
        }
        let mut child = cmd.spawn().map_err(|e| format!("could not start {:?}: {e}", cmd.get_program()))?;
        let stderr = child.stderr.take();
        s.child = Some(child);
        stderr
    };
    let mut tail: Vec<String> = Vec::new();
    if let Some(err) = stderr {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            match parse_progress_line(&line) {
                Some((what, done, total)) => on_progress(what, done, total),
                None if !line.trim().is_empty() => {
                    tail.push(line);
                    if tail.len() > 6 {
                        tail.remove(0);
                    }
                }
                None => {}
            }
        }
    }
    let child = slot.lock().ok().and_then(|mut s| s.child.take());
    let status = match child {
        Some(mut c) => c.wait().map_err(|e| format!("waiting for the job: {e}"))?,
        None => return Err("the job's process was lost".into()),
    };
    Ok((status, tail.join("\n")))
}

/// The new lines of `log.jsonl` from `offset` on (complete lines only), as events.
fn read_log(path: &Path, offset: &mut u64, tx: &Sender<JobEvent>) {
    let Ok(mut f) = std::fs::File::open(path) else { return };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return;
    }
    let mut text = String::new();
    if f.read_to_string(&mut text).is_err() {
        return;
    }
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    for line in text[..complete].lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let Some(step) = v.get("step").and_then(|s| s.as_u64()) else { continue };
        if let Some(val) = v.get("validation") {
            if val.get("context").and_then(|c| c.as_bool()) != Some(false)
                && let Some(d) = val.get("dice_3d_grid_pred2d").and_then(|d| d.as_f64())
            {
                let _ = tx.send(JobEvent::Validation { step, dice_3d: d });
            }
        } else if let Some(loss) = v.get("loss").and_then(|l| l.as_f64()) {
            let _ = tx.send(JobEvent::Step { step, loss });
        }
    }
    *offset += complete as u64;
}

fn train_job(plan: &RunPlan, engine: &Path, resume: bool, child: &ChildSlot, tx: &Sender<JobEvent>, wake: Option<&egui::Context>) -> Result<(), String> {
    let resume = resume && plan.dir.join("state.safetensors").is_file();
    if !resume {
        plan.stage()?;
    }
    let log = plan.dir.join("log.jsonl");
    // A resumed run rewrites the log past its checkpoint: read it again from the start.
    let mut offset = 0u64;
    let mut cmd = Command::new(engine);
    cmd.arg("train").arg("--config").arg(plan.dir.join("config.toml")).arg("--out").arg(&plan.dir);
    if resume {
        cmd.arg("--resume");
    }
    let (status, tail) = run_child(cmd, child, |what, done, total| {
        read_log(&log, &mut offset, tx);
        // `prepare`: the data loading before the first step (`train`'s own bar is `train`).
        let _ = tx.send(if what == PREPARE_PROGRESS { JobEvent::Preparing { done, total } } else { JobEvent::Progress { done } });
        if let Some(w) = wake {
            w.request_repaint();
        }
    })?;
    read_log(&log, &mut offset, tx);
    if status.success() { Ok(()) } else { Err(if tail.is_empty() { format!("training exited with {status}") } else { tail }) }
}

fn compare_job(
    plan: &RunPlan,
    adapter: &Path,
    labels: &[u16],
    engine: &Path,
    child: &ChildSlot,
    tx: &Sender<JobEvent>,
    wake: Option<&egui::Context>,
) -> Result<Comparison, String> {
    let list = labels.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
    let mut reports = Vec::new();
    for (which, adapter) in [("base", None), ("adapter", Some(adapter))] {
        let out = plan.dir.join(format!("compare_{which}.csv"));
        let mut cmd = Command::new(engine);
        cmd.arg("eval").arg("--data").arg(plan.data_dir()).arg("--weights").arg(&plan.weights).arg("--model-only").arg("--device").arg("auto");
        cmd.arg("--labels").arg(&list).arg("--out").arg(&out);
        if let Some(a) = adapter {
            cmd.arg("--adapter").arg(a);
        }
        let (status, tail) = run_child(cmd, child, |_, done, total| {
            let _ = tx.send(JobEvent::CompareProgress { which, done, total });
            if let Some(w) = wake {
                w.request_repaint();
            }
        })?;
        if !status.success() {
            return Err(if tail.is_empty() { format!("evaluation ({which}) exited with {status}") } else { tail });
        }
        let js = out.with_extension("json");
        let text = std::fs::read_to_string(&js).map_err(|e| format!("{}: {e}", js.display()))?;
        reports.push(serde_json::from_str::<serde_json::Value>(&text).map_err(|e| format!("{}: {e}", js.display()))?);
    }
    // On an MR scan the base as the viewer gives it carries the shipped MR adapter (when it fits
    // the weights); eval's summary names the one it was given for MR scans.
    let base_adapter = plan.mr.then(|| reports[0].get("mr_adapter")).flatten().and_then(|a| a.as_str()).map(|a| Path::new(a).file_name().map_or_else(|| a.to_string(), |n| n.to_string_lossy().into_owned()));
    Ok(Comparison { rows: compare_rows(&reports[0], &reports[1])?, base_adapter })
}

// ---------------------------------------------------------------------------------------------
// The panel

/// What the panel asks the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum PanelAction {
    Start,
    Resume,
    Stop,
    Compare,
    UseAdapter(PathBuf),
}

/// What a SAM-Med3D run costs on a CPU, said before Start: the steps × batch samples at the
/// measured cost of one.
pub fn sam_med3d_cost_note(settings: &FineTuneSettings) -> String {
    let samples = settings.steps as f64 * settings.batch as f64;
    format!(
        "SAM-Med3D is large: on a CPU each sample costs about {:.0} s (the ViT-B encoder's forward and backward, measured on two cores), so {} steps × batch {} ≈ {}. A GPU engine is far faster; a few dozen steps are a fair first run here.",
        SAM_MED3D_CPU_SECS_PER_SAMPLE,
        settings.steps,
        settings.batch,
        fmt_secs(samples * SAM_MED3D_CPU_SECS_PER_SAMPLE)
    )
}

/// What the panel needs to know of the viewer.
pub struct PanelContext<'a> {
    pub volume: Option<&'a Path>,
    pub labels: Option<&'a LabelTable>,
    pub model: Option<&'a str>,
    pub weights: Option<&'a Path>,
    pub adapter: Option<&'a str>,
}

/// The fine-tuning window; returns what the user asked for.
pub fn window_ui(ctx: &egui::Context, ft: &mut FineTune, settings: &mut FineTuneSettings, pc: &PanelContext<'_>) -> Option<PanelAction> {
    let mut open = ft.open;
    let mut action = None;
    egui::Window::new("Fine-tune (LoRA)")
        .open(&mut open)
        .default_width(460.0)
        .resizable(true)
        .show(ctx, |ui| {
            egui::ScrollArea::vertical().id_salt("finetune_panel").show(ui, |ui| action = panel_ui(ui, ft, settings, pc));
        });
    ft.open = open;
    if ft.is_active() {
        ctx.request_repaint_after(std::time::Duration::from_millis(250));
    }
    action
}

fn panel_ui(ui: &mut egui::Ui, ft: &mut FineTune, settings: &mut FineTuneSettings, pc: &PanelContext<'_>) -> Option<PanelAction> {
    let mut action = None;
    let busy = ft.is_active();
    ui.label(match (pc.model, pc.weights) {
        (Some(m), Some(_)) => format!("Base: {m}{}", pc.adapter.map(|a| format!(" (the adapter {a} is not part of it)")).unwrap_or_default()),
        _ => "Load weights first (Model > Load weights…): the adapter is trained on them.".into(),
    });
    ui.separator();
    ui.label(RichText::new("Training data").strong());
    match (pc.volume, pc.labels) {
        (Some(v), Some(t)) => {
            let n = t.entries.iter().filter(|(id, e)| **id != 0 && e.voxels > 0).count();
            ui.label(format!("This scan: {} with its label map as shown ({n} labels; accepted results included)", v.file_name().map_or_else(String::new, |f| f.to_string_lossy().into_owned())));
        }
        (Some(_), None) => {
            ui.label(RichText::new("This scan has no label map: open one (File > Open label map…) to train on it.").color(Color32::from_rgb(230, 160, 60)));
        }
        _ => {
            ui.label("No scan is open.");
        }
    }
    if let Some(t) = pc.labels {
        ui.horizontal(|ui| {
            ui.label("Train on (unticked labels are held out; Compare measures them):");
        });
        ui.horizontal(|ui| {
            if ui.add_enabled(!busy, egui::Button::new("All").small()).clicked() {
                ft.held_out.clear();
            }
            if ui.add_enabled(!busy, egui::Button::new("None").small()).clicked() {
                ft.held_out = t.entries.keys().copied().filter(|id| *id != 0).collect();
            }
            let held = t.entries.keys().filter(|id| ft.held_out.contains(id)).count();
            ui.label(RichText::new(format!("{held} held out")).weak());
        });
        egui::ScrollArea::vertical().id_salt("finetune_labels").max_height(110.0).show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                for (id, e) in t.entries.iter().filter(|(id, e)| **id != 0 && e.voxels > 0) {
                    let mut train = !ft.held_out.contains(id);
                    let [r, g, b] = e.colour;
                    let text = RichText::new(format!("{id} {}", e.name)).color(Color32::from_rgb(r, g, b));
                    if ui.add_enabled(!busy, egui::Checkbox::new(&mut train, text)).changed() {
                        if train {
                            ft.held_out.remove(id);
                        } else {
                            ft.held_out.insert(*id);
                        }
                    }
                }
            });
        });
    }
    ui.label("More folders of volume/label pairs (one per line; X.nii.gz + X_labels.nii.gz, or imagesTr/labelsTr):");
    ui.add_enabled(!busy, egui::TextEdit::multiline(&mut settings.more_dirs).desired_rows(1).desired_width(f32::INFINITY).hint_text("optional"));
    ui.separator();
    ui.label(RichText::new("Settings").strong());
    ui.add_enabled_ui(!busy, |ui| {
        egui::Grid::new("finetune_settings").num_columns(4).spacing([12.0, 4.0]).show(ui, |ui| {
            let l = ui.label("Steps");
            ui.add(egui::DragValue::new(&mut settings.steps).range(1..=100_000)).labelled_by(l.id);
            let l = ui.label("Batch");
            ui.add(egui::DragValue::new(&mut settings.batch).range(1..=256)).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Learning rate");
            ui.add(egui::DragValue::new(&mut settings.lr).range(1e-6..=1e-1).speed(1e-4).max_decimals(5)).labelled_by(l.id);
            let l = ui.label("LoRA rank");
            ui.add(egui::DragValue::new(&mut settings.rank).range(1..=64)).labelled_by(l.id).on_hover_text("alpha is twice the rank");
            ui.end_row();
        });
        ui.horizontal(|ui| {
            let l = ui.label("Run folder");
            if let Some(v) = pc.volume
                && ui.small_button("New").on_hover_text("A fresh folder for a new run").clicked()
            {
                ft.dir_text = FineTune::fresh_dir(settings, v).display().to_string();
            }
            ui.add(egui::TextEdit::singleline(&mut ft.dir_text).desired_width(f32::INFINITY)).labelled_by(l.id);
        });
    });
    if let Some(note) = pc.weights.filter(|w| is_torch_checkpoint_name(w)).map(|_| sam_med3d_cost_note(settings)) {
        ui.label(RichText::new(note).color(ui.visuals().warn_fg_color));
    }
    let can_start = !busy && pc.weights.is_some() && pc.volume.is_some() && pc.labels.is_some() && !ft.dir_text.trim().is_empty();
    ui.horizontal(|ui| {
        if ui.add_enabled(can_start, egui::Button::new("Start")).on_hover_text("Train a LoRA adapter on this scan's labels (a new run in the folder above)").clicked() {
            action = Some(PanelAction::Start);
        }
        // (No file check here, every frame: a run without a checkpoint yet starts over.)
        let resumable = ft.run.as_ref().is_some_and(|r| r.state == RunState::Stopped || matches!(r.state, RunState::Failed(_)));
        if ui.add_enabled(!busy && resumable, egui::Button::new("Resume")).on_hover_text("Go on from the run's last checkpoint (or start over when it has none)").clicked() {
            action = Some(PanelAction::Resume);
        }
        if ui.add_enabled(busy, egui::Button::new("Stop")).on_hover_text("Stop the job (training keeps its last checkpoint)").clicked() {
            action = Some(PanelAction::Stop);
        }
    });
    let Some(run) = ft.run.as_ref() else { return action };
    ui.separator();
    let frac = if run.total() > 0 { run.done as f32 / run.total() as f32 } else { 0.0 };
    let colour = match run.state {
        RunState::Failed(_) => Color32::from_rgb(200, 70, 60),
        RunState::Finished => Color32::from_rgb(70, 150, 90),
        _ => ui.visuals().selection.bg_fill,
    };
    ui.add(egui::ProgressBar::new(frac).fill(colour).text(run.summary()).animate(run.state == RunState::Training || run.state == RunState::Preparing));
    loss_plot(ui, run);
    if run.state == RunState::Finished {
        ui.horizontal(|ui| {
            let adapter = run.adapter_path();
            if ui.add_enabled(pc.weights.is_some(), egui::Button::new("Use this adapter")).on_hover_text(adapter.display().to_string()).clicked() {
                action = Some(PanelAction::UseAdapter(adapter));
            }
            let measuring = if run.plan.held_out.is_empty() { "the trained labels (fit, not generalisation)" } else { "the held-out labels" };
            if ui
                .add_enabled(!busy, egui::Button::new("Compare base vs adapter"))
                .on_hover_text(format!("One-click Dice and HD95 on {measuring} of this scan: three clicks per label, with and without the adapter"))
                .clicked()
            {
                action = Some(PanelAction::Compare);
            }
        });
    }
    match &run.compare {
        Some(CompareState::Running { which, done, total }) => {
            let f = if *total > 0 { *done as f32 / *total as f32 } else { 0.0 };
            ui.add(egui::ProgressBar::new(f).text(format!("measuring the {which}: click {done} / {total}")).animate(true));
        }
        Some(CompareState::Done(c)) => compare_table(ui, run, c),
        Some(CompareState::Failed(e)) => {
            ui.colored_label(Color32::from_rgb(220, 90, 80), format!("Compare failed: {e}"));
        }
        None => {}
    }
    action
}

/// Loss per step (left axis) and the validations' 3D Dice (right axis, 0–1).
fn loss_plot(ui: &mut egui::Ui, run: &Run) {
    let (rect, resp) = ui.allocate_exact_size(egui::vec2(ui.available_width().max(200.0), 140.0), egui::Sense::hover());
    let p = ui.painter_at(rect);
    p.rect_filled(rect, 2.0, Color32::from_gray(22));
    let plot = rect.shrink2(egui::vec2(34.0, 14.0));
    let total = run.total().max(1) as f32;
    let max_loss = run.losses.iter().map(|l| l[1]).fold(0.0f64, f64::max).max(1e-6) as f32 * 1.05;
    let to_screen = |step: f64, y: f32| egui::pos2(plot.left() + (step as f32 - 1.0).max(0.0) / (total - 1.0).max(1.0) * plot.width(), plot.bottom() - y * plot.height());
    let weak = ui.visuals().weak_text_color();
    let font = egui::FontId::proportional(10.0);
    p.line_segment([plot.left_bottom(), plot.right_bottom()], egui::Stroke::new(1.0, Color32::from_gray(70)));
    p.text(plot.left_bottom() + egui::vec2(0.0, 2.0), egui::Align2::LEFT_TOP, "1", font.clone(), weak);
    p.text(plot.right_bottom() + egui::vec2(0.0, 2.0), egui::Align2::RIGHT_TOP, format!("{}", run.total()), font.clone(), weak);
    let loss_colour = Color32::from_rgb(240, 170, 60);
    p.text(plot.left_top() - egui::vec2(4.0, 0.0), egui::Align2::RIGHT_CENTER, format!("{max_loss:.2}"), font.clone(), loss_colour);
    p.text(plot.left_bottom() - egui::vec2(4.0, 0.0), egui::Align2::RIGHT_CENTER, "0", font.clone(), loss_colour);
    if run.losses.is_empty() {
        p.text(plot.center(), egui::Align2::CENTER_CENTER, "the loss per step appears here", egui::FontId::proportional(12.0), weak);
    } else {
        let pts: Vec<egui::Pos2> = run.losses.iter().map(|l| to_screen(l[0], l[1] as f32 / max_loss)).collect();
        p.add(egui::Shape::line(pts, egui::Stroke::new(1.5, loss_colour)));
        // Means of the first and last ten steps: one step's loss swings with its batch.
        let mean = |ls: &[[f64; 2]]| ls.iter().map(|l| l[1]).sum::<f64>() / ls.len().max(1) as f64;
        let n = run.losses.len().min(10);
        let (first, last) = (mean(&run.losses[..n]), mean(&run.losses[run.losses.len() - n..]));
        p.text(plot.right_top(), egui::Align2::RIGHT_TOP, format!("loss {first:.3} -> {last:.3} (means of 10 steps)"), font.clone(), loss_colour);
    }
    let val_colour = Color32::from_rgb(90, 200, 120);
    // Validation Dice on the same height scale, 0 to 1 (the panel's top is Dice 1).
    for v in &run.validations {
        let c = to_screen(v[0], v[1] as f32);
        p.circle_filled(c, 3.5, val_colour);
        p.text(c + egui::vec2(-6.0, 0.0), egui::Align2::RIGHT_CENTER, format!("validation Dice {:.2}", v[1]), font.clone(), val_colour);
    }
    if let Some(pos) = resp.hover_pos()
        && !run.losses.is_empty()
    {
        let step = 1.0 + ((pos.x - plot.left()) / plot.width()).clamp(0.0, 1.0) * (total - 1.0);
        if let Some(l) = run.losses.iter().min_by(|a, b| (a[0] - step as f64).abs().total_cmp(&(b[0] - step as f64).abs())) {
            let c = to_screen(l[0], l[1] as f32 / max_loss);
            p.circle_stroke(c, 4.0, egui::Stroke::new(1.0, Color32::WHITE));
            resp.on_hover_text(format!("step {}: loss {:.4}", l[0], l[1]));
        }
    }
}

fn compare_table(ui: &mut egui::Ui, run: &Run, c: &Comparison) {
    let rows = &c.rows;
    let what = if run.plan.held_out.is_empty() { "trained labels: fit, not generalisation" } else { "held out of training" };
    ui.label(RichText::new(format!("One-click Dice on this scan ({what}; mean of the three planes' clicks)")).strong());
    if let Some(a) = &c.base_adapter {
        ui.label(RichText::new(format!("base: the weights as the viewer gives them on this MR: with {a} when it fits them (it does the shipped weights)")).weak());
    }
    if rows.is_empty() {
        ui.label("No label could be measured (too small, or absent).");
        return;
    }
    let hd = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}"));
    egui::ScrollArea::vertical().id_salt("finetune_compare").max_height(220.0).show(ui, |ui| {
        egui::Grid::new("finetune_compare_grid").striped(true).num_columns(6).spacing([14.0, 2.0]).show(ui, |ui| {
            for h in ["label", "base Dice", "adapter Dice", "change", "base HD95 mm", "adapter HD95 mm"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in rows {
                ui.label(format!("{} {}", r.label, r.name.as_deref().unwrap_or("")));
                ui.label(format!("{:.3}", r.base_dice));
                ui.label(format!("{:.3}", r.adapter_dice));
                ui.label(delta_text(r.adapter_dice - r.base_dice));
                ui.label(hd(r.base_hd95_mm));
                ui.label(hd(r.adapter_hd95_mm));
                ui.end_row();
            }
            let n = rows.len() as f64;
            let (b, a) = (rows.iter().map(|r| r.base_dice).sum::<f64>() / n, rows.iter().map(|r| r.adapter_dice).sum::<f64>() / n);
            ui.label(RichText::new("mean").strong());
            ui.label(RichText::new(format!("{b:.3}")).strong());
            ui.label(RichText::new(format!("{a:.3}")).strong());
            ui.label(delta_text(a - b));
            ui.end_row();
        });
    });
}

fn delta_text(d: f64) -> RichText {
    let c = if d > 0.005 {
        Color32::from_rgb(90, 200, 120)
    } else if d < -0.005 {
        Color32::from_rgb(230, 100, 90)
    } else {
        Color32::GRAY
    };
    RichText::new(format!("{d:+.3}")).color(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_civil_utc() {
        let at = |s: u64| timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        // 2026-12-05 03:35:27 UTC and a leap day.
        assert_eq!(at(1_796_441_727), "20261205-033527");
        assert_eq!(at(951_782_400), "20000229-000000");
    }

    #[test]
    fn case_names_are_file_names_without_nifti_extensions() {
        assert_eq!(case_name(Path::new("/d/ct.nii.gz")), "ct");
        assert_eq!(case_name(Path::new("/d/my scan.nii")), "my_scan");
        assert_eq!(case_name(Path::new("/d/liver_labels.nii.gz")), "liver_labels_scan");
    }

    #[test]
    fn the_comparison_pairs_labels_of_both_reports() {
        let report = |d1: f64, d5: f64| {
            serde_json::json!({"methods": {"baseline": {"by_label": []}, "model": {"by_label": [
                {"label": 1, "name": "spleen", "mean_dice": d1, "mean_hd95_mm": 4.5},
                {"label": 5, "name": "liver", "mean_dice": d5, "mean_hd95_mm": null},
            ]}}})
        };
        let mut adapter = report(0.9, 0.8);
        adapter["methods"]["model"]["by_label"].as_array_mut().expect("rows").pop();
        let rows = compare_rows(&report(0.7, 0.6), &adapter).expect("rows");
        assert_eq!(rows, vec![CompareRow { label: 1, name: Some("spleen".into()), base_dice: 0.7, adapter_dice: 0.9, base_hd95_mm: Some(4.5), adapter_hd95_mm: Some(4.5) }]);
        let e = compare_rows(&serde_json::json!({"methods": {"baseline": {}}}), &adapter).expect_err("no model rows");
        assert!(e.contains("no model rows"), "{e}");
    }

    #[test]
    fn a_sam_med3d_base_gets_its_family_and_a_cost_note() {
        let labels = Arc::new(LabelMap::new(ndarray::Array3::zeros((2, 2, 2)), crate::geometry::RasFromVoxel::identity()).expect("map"));
        let plan = |weights: &str| RunPlan {
            dir: "/tmp/run".into(),
            weights: weights.into(),
            volume: "/tmp/ct.nii.gz".into(),
            labels: labels.clone(),
            names: BTreeMap::new(),
            held_out: vec![],
            mr: false,
            settings: FineTuneSettings { steps: 30, batch: 2, ..Default::default() },
        };
        let text = plan("/w/sam_med3d_turbo.pth").config_toml().expect("config");
        let cfg = TrainConfig::from_toml_str(&text, "config.toml", Path::new("/tmp")).expect("the engine's config checks take it");
        assert_eq!(cfg.model.family.as_deref(), Some("sam_med3d"));
        assert!(cfg.lora.as_ref().is_some_and(|l| l.enabled && l.config.targets.is_empty()), "the engine's SAM-Med3D targets");
        let own = TrainConfig::from_toml_str(&plan("/w/default.safetensors").config_toml().expect("config"), "config.toml", Path::new("/tmp")).expect("own");
        assert_eq!(own.model.family, None);
        assert!(own.lora.as_ref().is_some_and(|l| l.config.targets.contains(&"to_qkv".to_string())));
        // 30 steps × 2 samples × 37 s = 37 minutes.
        let note = sam_med3d_cost_note(&FineTuneSettings { steps: 30, batch: 2, ..Default::default() });
        assert!(note.contains("37 s") && note.contains("37m00s"), "{note}");
    }

    #[test]
    fn a_stop_before_the_process_is_stored_still_stops_it() {
        // Stop lands after the job thread started but before run_child stored its process.
        let slot: ChildSlot = Arc::default();
        if let Ok(mut c) = slot.lock() {
            c.stopped = true;
        }
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let t = std::time::Instant::now();
        let e = run_child(cmd, &slot, |_, _, _| {}).expect_err("never started");
        assert!(e.contains("stopped"), "{e}");
        assert!(t.elapsed().as_secs() < 5 && slot.lock().expect("slot").child.is_none());
    }
}
