//! The model thread of the HTTP server: one [`Session`] (one model, its weights loaded once) and
//! a [`VolumeState`] for each client, swapped in for that client's job. Jobs from every client
//! run one at a time in arrival order, as the reference server runs every prediction on its one
//! GPU thread: the model is one resource, and libtorch already uses every core for one job.
//! A job that panics is answered with an error; the thread carries on.

use crate::engine::session::VolumeState;
use crate::engine::{EngineError, InferRequest, NoHooks, Session};
use crate::model::ModelInfo;
use crate::options::PipelineOptions;
use crate::prompts::ObjectRef;
use crate::shape::GridComponent;
use crate::volume::{Modality, Volume};
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A client's id on the model thread (not its lease token, which never leaves the registry).
pub type ClientId = u64;

/// Why a job failed: the request (its image, its object) or the server.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerError {
    Request(String),
    Internal(String),
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Request(m) | WorkerError::Internal(m) => f.write_str(m),
        }
    }
}

impl From<EngineError> for WorkerError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::BadRequest(_) | EngineError::NoVolume | EngineError::Click(_) => WorkerError::Request(e.to_string()),
            e => WorkerError::Internal(e.to_string()),
        }
    }
}

/// What one prompt made of the client's object.
#[derive(Debug)]
pub struct PromptOutcome {
    /// The object's candidate after the prompt (a crop of the client's grid).
    pub candidate: Option<GridComponent>,
    pub object: ObjectRef,
    pub secs: f64,
}

enum Job {
    SetImage { client: ClientId, volume: Arc<Volume>, modality: Option<Modality>, reply: Sender<Result<Modality, WorkerError>> },
    /// `zoom`: the client's auto-zoom (nnInteractive's `set_do_autozoom`); off turns the scale
    /// that follows the object off for this prompt.
    Prompt { client: ClientId, req: Box<InferRequest>, zoom: bool, reply: Sender<Result<PromptOutcome, WorkerError>> },
    StartObject { client: ClientId, component: Option<GridComponent>, reply: Sender<Result<ObjectRef, WorkerError>> },
    Forget { client: ClientId },
}

/// Handle to the model thread.
#[derive(Clone, Debug)]
pub struct ModelWorker {
    tx: Sender<Job>,
    info: ModelInfo,
}

/// The thread's own state.
struct Worker {
    session: Session,
    /// The client whose volume the session holds.
    current: Option<ClientId>,
    parked: HashMap<ClientId, VolumeState>,
    /// The server's own zoom ([`PipelineOptions::zoom`]); a client can only turn it off.
    zoom: bool,
}

impl ModelWorker {
    /// Loads the weights on a new thread (where every tensor then lives) and starts serving.
    pub fn spawn(weights: PathBuf, device: tch::Device, options: PipelineOptions, mr_adapter: Option<PathBuf>) -> anyhow::Result<Self> {
        let (tx, rx) = unbounded::<Job>();
        let (ready_tx, ready_rx) = bounded::<Result<ModelInfo, String>>(1);
        std::thread::Builder::new().name("sam3d-http-model".into()).spawn(move || {
            let mut session = Session::new();
            let zoom = options.zoom;
            let loaded = (|| {
                session.set_options(options)?;
                let info = session.load_weights(&weights, device)?;
                session.set_mr_adapter(mr_adapter)?;
                Ok::<_, crate::engine::EngineError>(info)
            })();
            let ok = loaded.is_ok();
            let _ = ready_tx.send(loaded.map_err(|e| format!("{}: {e}", weights.display())));
            if ok {
                Worker { session, current: None, parked: HashMap::new(), zoom }.run(rx);
            }
        })?;
        let info = ready_rx.recv().map_err(|_| anyhow::anyhow!("the model thread stopped while loading"))?.map_err(anyhow::Error::msg)?;
        Ok(ModelWorker { tx, info })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn ask<T>(&self, job: impl FnOnce(Sender<Result<T, WorkerError>>) -> Job) -> Result<T, WorkerError> {
        let (reply, rx) = bounded(1);
        self.tx.send(job(reply)).map_err(|_| WorkerError::Internal("the model thread has stopped".into()))?;
        rx.recv().map_err(|_| WorkerError::Internal("the model thread stopped during the request".into()))?
    }

    /// Sets a client's volume and prepares it (blocks until done); returns its modality.
    pub fn set_image(&self, client: ClientId, volume: Arc<Volume>, modality: Option<Modality>) -> Result<Modality, WorkerError> {
        self.ask(|reply| Job::SetImage { client, volume, modality, reply })
    }

    /// One prompt on a client's object (blocks until done); `zoom`: the client's auto-zoom.
    pub fn prompt(&self, client: ClientId, req: InferRequest, zoom: bool) -> Result<PromptOutcome, WorkerError> {
        self.ask(|reply| Job::Prompt { client, req: Box::new(req), zoom, reply })
    }

    /// A new object from a segmentation the client has.
    pub fn start_object(&self, client: ClientId, component: Option<GridComponent>) -> Result<ObjectRef, WorkerError> {
        self.ask(|reply| Job::StartObject { client, component, reply })
    }

    /// Drops what the thread holds for a client (does not wait).
    pub fn forget(&self, client: ClientId) {
        let _ = self.tx.send(Job::Forget { client });
    }
}

impl Worker {
    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(job) = rx.recv() {
            match job {
                Job::SetImage { client, volume, modality, reply } => {
                    let r = self.guarded(client, |s| Ok(s.set_volume(volume, modality)?));
                    let _ = reply.send(r);
                }
                Job::Prompt { client, req, zoom, reply } => {
                    let zoom = zoom && self.zoom;
                    let r = self.guarded(client, |s| {
                        if s.options().zoom != zoom {
                            s.set_options(PipelineOptions { zoom, ..s.options().clone() })?;
                        }
                        let t = Instant::now();
                        let r = s.infer(&req, &mut NoHooks)?;
                        Ok(PromptOutcome { candidate: r.component, object: r.object, secs: t.elapsed().as_secs_f64() })
                    });
                    let _ = reply.send(r);
                }
                Job::StartObject { client, component, reply } => {
                    let r = self.guarded(client, |s| Ok(s.start_object(component)?));
                    let _ = reply.send(r);
                }
                Job::Forget { client } => {
                    if self.current == Some(client) {
                        let _ = self.session.swap_volume(VolumeState::default());
                        self.current = None;
                    }
                    self.parked.remove(&client);
                }
            }
        }
    }

    /// Swaps the client's volume in and runs `f` on the session; a panic becomes an error (and
    /// the client's state is dropped, since it may be half-changed).
    fn guarded<T>(&mut self, client: ClientId, f: impl FnOnce(&mut Session) -> Result<T, WorkerError>) -> Result<T, WorkerError> {
        if self.current != Some(client) {
            let state = self.parked.remove(&client).unwrap_or_default();
            match self.session.swap_volume(state) {
                Ok(previous) => {
                    if let Some(c) = self.current {
                        self.parked.insert(c, previous);
                    }
                    self.current = Some(client);
                }
                Err(e) => {
                    self.current = None;
                    return Err(WorkerError::Internal(format!("could not restore the session's volume: {e}")));
                }
            }
        }
        match catch_unwind(AssertUnwindSafe(|| f(&mut self.session))) {
            Ok(r) => r,
            Err(p) => {
                let why = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                let _ = self.session.swap_volume(VolumeState::default());
                self.current = None;
                Err(WorkerError::Internal(format!("internal error in the model ({why}); the image must be sent again")))
            }
        }
    }
}
