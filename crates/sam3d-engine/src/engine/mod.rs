//! Inference sessions and the background worker (ARCHITECTURE.md, "Threads and processes").
//!
//! One named thread (`sam3d-engine`) owns the model and every tensor. The UI sends typed
//! [`Command`]s over a bounded channel and drains [`Event`]s; the worker calls the repaint
//! callback after each event it sends. A job that fails or panics becomes [`Event::Failed`];
//! the worker carries on. Cancellation is a shared atomic the worker checks between stages.

pub mod eval;
pub mod http;
pub mod sam_med3d;
pub mod serve;
pub mod session;
pub mod shape_model;
pub mod train;
pub mod train_corrector;
pub mod train_sam_med3d;

pub use session::{EngineError, Hooks, InferRequest, InferResult, NO_WEIGHTS_HELP, NoHooks, Session, Stage, Timings};

use crate::data::click::RasFromPixel;
use crate::geometry::ViewPlane;
use crate::prompts::{ObjectRef, Prompt};
use crate::model::{Model, ModelInfo};
use crate::options::PipelineOptions;
use crate::volume::{Modality, Volume};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use ndarray::Array2;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;
use tch::Device;

/// What the UI asks of the worker.
// `DebugPanic` is a hidden test hook, not a non-exhaustive marker.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Debug)]
pub enum Command {
    /// Load a checkpoint (the architecture comes from its metadata).
    LoadWeights(PathBuf),
    /// Use an already built model (tests, training hand-over). Tensors move with it, so build
    /// it on the worker's device.
    SetModel(Box<Model>),
    /// Load a LoRA adapter onto the current weights.
    LoadAdapter(PathBuf),
    /// Set the volume clicks refer to; prepared (modality, statistics) once.
    SetVolume { volume_id: u64, volume: Arc<Volume>, modality: Option<Modality> },
    /// Read a volume file (any format [`crate::volume::open`] reads) and set it, on the worker,
    /// in order with the clicks: the client's loop stays free for cancels and progress.
    OpenVolume { volume_id: u64, path: PathBuf },
    /// One prompt (a click, a negative click, a box) for a new object or the one the session
    /// holds (`object`; `None`: a new object keyed by `job`). `job` ids should increase (see
    /// [`Engine::next_job`]).
    Infer { job: u64, prompt: Prompt, plane: ViewPlane, mask2d: Option<Array2<bool>>, options: PipelineOptions, object: Option<ObjectRef> },
    /// Cancel this job and every earlier one (handled by [`Engine::send`] at once).
    Cancel { job: u64 },
    /// Stop the worker.
    Shutdown,
    /// Panics inside the worker, to show that it survives (tests).
    #[doc(hidden)]
    DebugPanic,
}

/// What the worker reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// The worker started on this device.
    Ready { device: String },
    ModelLoaded(ModelInfo),
    AdapterLoaded(ModelInfo),
    VolumeReady { volume_id: u64, modality: Modality, secs: f64 },
    /// A click's job entered `stage`; `fraction` of the job is done.
    Progress { job: u64, stage: Stage, fraction: f32 },
    /// The 2D mask on the clicked slice, before the 3D result.
    MaskPreview { job: u64, mask2d: Array2<bool>, ras_from_pixel: RasFromPixel },
    Result { job: u64, result: Box<InferResult> },
    Cancelled { job: u64 },
    /// A command failed (or panicked); `job` for clicks.
    Failed { job: Option<u64>, message: String },
}

/// Worker settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub device: Device,
    /// libtorch intra-op threads (`None`: libtorch's default).
    pub threads: Option<i32>,
    /// The adapter put on the model for MR scans ([`Session::set_mr_adapter`]; `None`: none).
    pub mr_adapter: Option<std::path::PathBuf>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { device: Device::cuda_if_available(), threads: None, mr_adapter: None }
    }
}

/// Handle to the worker thread.
pub struct Engine {
    tx: Sender<Command>,
    rx: Receiver<Event>,
    cancel_upto: Arc<AtomicU64>,
    next_job: AtomicU64,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine(running: {})", self.handle.as_ref().is_some_and(|h| !h.is_finished()))
    }
}

/// Why a command could not be queued.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SendError {
    #[error("the inference worker is busy (command queue full); try again")]
    Full,
    #[error("the inference worker has stopped")]
    Stopped,
}

const COMMAND_QUEUE: usize = 32;
const EVENT_QUEUE: usize = 256;

impl Engine {
    /// Starts the worker. `repaint` is called after every event (e.g. `ctx.request_repaint()`).
    pub fn spawn(opts: EngineOptions, repaint: Box<dyn Fn() + Send>) -> std::io::Result<Self> {
        let (tx, cmd_rx) = bounded::<Command>(COMMAND_QUEUE);
        let (ev_tx, rx) = bounded::<Event>(EVENT_QUEUE);
        let cancel_upto = Arc::new(AtomicU64::new(0));
        let cancel = cancel_upto.clone();
        let handle = std::thread::Builder::new()
            .name("sam3d-engine".into())
            .spawn(move || Worker { session: Session::new(), opts, events: ev_tx, repaint, cancel_upto: cancel }.run(cmd_rx))?;
        Ok(Self { tx, rx, cancel_upto, next_job: AtomicU64::new(1), handle: Some(handle) })
    }

    /// A fresh, increasing job id.
    pub fn next_job(&self) -> u64 {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a command without blocking. `Cancel` takes effect immediately.
    pub fn send(&self, cmd: Command) -> Result<(), SendError> {
        if let Command::Cancel { job } = cmd {
            self.cancel_upto.fetch_max(job, Ordering::SeqCst);
        }
        self.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Full,
            TrySendError::Disconnected(_) => SendError::Stopped,
        })
    }

    /// Cancels `job` and every earlier job.
    pub fn cancel(&self, job: u64) {
        let _ = self.send(Command::Cancel { job });
    }

    /// The event receiver (drain it once per frame with `try_recv`).
    pub fn events(&self) -> &Receiver<Event> {
        &self.rx
    }

    pub fn try_recv(&self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Stops the worker (cancelling the running job) and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.cancel_upto.store(u64::MAX, Ordering::SeqCst);
        // The queue may be full; the worker checks for disconnection too.
        let _ = self.tx.try_send(Command::Shutdown);
        if let Some(h) = self.handle.take() {
            // Drain events so a worker blocked on a full event queue can finish.
            while !h.is_finished() {
                while self.rx.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    session: Session,
    opts: EngineOptions,
    events: Sender<Event>,
    repaint: Box<dyn Fn() + Send>,
    cancel_upto: Arc<AtomicU64>,
}

impl Worker {
    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
        (self.repaint)();
    }

    fn run(mut self, commands: Receiver<Command>) {
        if let Some(n) = self.opts.threads {
            tch::set_num_threads(n);
        }
        self.emit(Event::Ready { device: format!("{:?}", self.opts.device) });
        let _ = self.session.set_mr_adapter(self.opts.mr_adapter.clone());
        while let Ok(cmd) = commands.recv() {
            if matches!(cmd, Command::Shutdown) {
                break;
            }
            let job = match &cmd {
                Command::Infer { job, .. } => Some(*job),
                _ => None,
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| self.handle(cmd)));
            if let Err(panic) = outcome {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                log::error!("inference worker: job panicked: {what}");
                self.emit(Event::Failed { job, message: format!("internal error (the worker recovered): {what}") });
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::LoadWeights(path) => match self.session.load_weights(&path, self.opts.device) {
                Ok(info) => self.emit(Event::ModelLoaded(info)),
                Err(e) => self.emit(Event::Failed { job: None, message: e.to_string() }),
            },
            Command::SetModel(model) => match self.session.set_model(*model) {
                Ok(info) => self.emit(Event::ModelLoaded(info)),
                Err(e) => self.emit(Event::Failed { job: None, message: e.to_string() }),
            },
            Command::LoadAdapter(path) => match self.session.load_adapter(&path) {
                Ok(info) => self.emit(Event::AdapterLoaded(info)),
                Err(e) => self.emit(Event::Failed { job: None, message: e.to_string() }),
            },
            Command::SetVolume { volume_id, volume, modality } => {
                let t = Instant::now();
                match self.session.set_volume(volume, modality) {
                    Ok(modality) => self.emit(Event::VolumeReady { volume_id, modality, secs: t.elapsed().as_secs_f64() }),
                    Err(e) => self.emit(Event::Failed { job: None, message: e.to_string() }),
                }
            }
            Command::OpenVolume { volume_id, path } => {
                let t = Instant::now();
                let r = crate::volume::open(&path).map_err(|e| e.to_string()).and_then(|v| self.session.set_volume(Arc::new(v), None).map_err(|e| e.to_string()));
                match r {
                    Ok(modality) => self.emit(Event::VolumeReady { volume_id, modality, secs: t.elapsed().as_secs_f64() }),
                    Err(message) => self.emit(Event::Failed { job: None, message }),
                }
            }
            Command::Infer { job, prompt, plane, mask2d, options, object } => {
                if job <= self.cancel_upto.load(Ordering::SeqCst) {
                    self.emit(Event::Cancelled { job });
                    return;
                }
                if let Err(e) = self.session.set_options(options) {
                    self.emit(Event::Failed { job: Some(job), message: e.to_string() });
                    return;
                }
                let req = InferRequest { prompt, plane, mask2d, object: Some(object.unwrap_or(ObjectRef { id: job, after: 0 })) };
                let mut hooks = WorkerHooks { job, events: &self.events, repaint: &*self.repaint, cancel_upto: &self.cancel_upto };
                match self.session.infer(&req, &mut hooks) {
                    Ok(result) => self.emit(Event::Result { job, result: Box::new(result) }),
                    Err(EngineError::Cancelled) => self.emit(Event::Cancelled { job }),
                    Err(e) => self.emit(Event::Failed { job: Some(job), message: e.to_string() }),
                }
            }
            Command::Cancel { .. } | Command::Shutdown => {}
            Command::DebugPanic => panic!("DebugPanic command"),
        }
    }
}

struct WorkerHooks<'a> {
    job: u64,
    events: &'a Sender<Event>,
    repaint: &'a (dyn Fn() + Send),
    cancel_upto: &'a AtomicU64,
}

impl Hooks for WorkerHooks<'_> {
    fn progress(&mut self, stage: Stage) {
        let _ = self.events.send(Event::Progress { job: self.job, stage, fraction: stage.start_fraction() });
        (self.repaint)();
    }
    fn preview(&mut self, mask2d: &Array2<bool>, ras_from_pixel: &RasFromPixel) {
        let _ = self.events.send(Event::MaskPreview { job: self.job, mask2d: mask2d.clone(), ras_from_pixel: *ras_from_pixel });
        (self.repaint)();
    }
    fn cancelled(&self) -> bool {
        self.job <= self.cancel_upto.load(Ordering::SeqCst)
    }
}
