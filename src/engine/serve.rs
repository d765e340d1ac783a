//! `sam3d-studio-engine serve`: the [`Engine`] worker behind a JSON-lines protocol on
//! stdin/stdout, so the GUI (which never links libtorch) can drive the model in this process.
//!
//! One JSON object per line each way. Requests ([`Request`]):
//! `{"cmd":"load_weights","path":…}`, `{"cmd":"load_adapter","path":…}`,
//! `{"cmd":"set_volume","path":…}`, `{"cmd":"infer","job":1,"click":[x,y,z],"plane":"Axial"}`
//! (RAS mm), `{"cmd":"cancel","job":1}`, `{"cmd":"shutdown"}`.
//! Replies ([`Reply`]): `ready{device}`, `model_loaded{info}`, `adapter_loaded{info}`,
//! `volume_ready{secs}`, `progress{job,stage,fraction}`, `result{job,mask_path,timings,
//! voxel_count,ml}` (the mask is a `.nii` file on the volume's grid, 1 inside, in a temporary
//! folder of this process), `cancelled{job}`, `failed{job,message}`.
//! End of stdin (or `shutdown`) stops the process.

use super::{Command, Engine, EngineOptions, Event, Timings};
use crate::geometry::{RasMm, ViewPlane};
use crate::model::ModelInfo;
use crate::volume::Volume;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// A request line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    LoadWeights { path: PathBuf },
    LoadAdapter { path: PathBuf },
    SetVolume { path: PathBuf },
    Infer { job: u64, click: [f64; 3], plane: ViewPlane },
    Cancel { job: u64 },
    Shutdown,
}

/// A reply line.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    Ready { device: String },
    ModelLoaded { info: ModelInfo },
    AdapterLoaded { info: ModelInfo },
    VolumeReady { secs: f64 },
    Progress { job: u64, stage: super::Stage, fraction: f32 },
    Result { job: u64, mask_path: PathBuf, timings: Timings, voxel_count: usize, ml: f64 },
    Cancelled { job: u64 },
    Failed { job: Option<u64>, message: String },
}

fn write_line(out: &mut impl Write, r: &Reply) -> std::io::Result<()> {
    let line = serde_json::to_string(r).map_err(std::io::Error::other)?;
    writeln!(out, "{line}")?;
    out.flush()
}

/// Runs the protocol on this process's stdin/stdout until stdin ends. Returns an error only
/// when stdout cannot be written (the client has gone).
pub fn serve(opts: EngineOptions) -> std::io::Result<()> {
    let engine = Engine::spawn(opts, Box::new(|| {}))?;
    let out_dir = std::env::temp_dir().join(format!("sam3d-engine-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir)?;
    let (req_tx, req_rx) = crossbeam_channel::bounded::<Result<Request, String>>(32);
    std::thread::Builder::new().name("sam3d-serve-stdin".into()).spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            let r = serde_json::from_str::<Request>(&line).map_err(|e| format!("bad request line {line:?}: {e}"));
            if req_tx.send(r).is_err() {
                break;
            }
        }
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut volume_id = 0u64;
    let result = loop {
        crossbeam_channel::select! {
            recv(req_rx) -> r => {
                let req = match r {
                    Err(_) | Ok(Ok(Request::Shutdown)) => break Ok(()),
                    Ok(Err(message)) => {
                        write_line(&mut out, &Reply::Failed { job: None, message })?;
                        continue;
                    }
                    Ok(Ok(req)) => req,
                };
                let cmd = match req {
                    Request::LoadWeights { path } => Command::LoadWeights(path),
                    Request::LoadAdapter { path } => Command::LoadAdapter(path),
                    Request::SetVolume { path } => match Volume::load(&path) {
                        Ok(v) => {
                            volume_id += 1;
                            Command::SetVolume { volume_id, volume: Arc::new(v), modality: None }
                        }
                        Err(e) => {
                            write_line(&mut out, &Reply::Failed { job: None, message: e.to_string() })?;
                            continue;
                        }
                    },
                    Request::Infer { job, click, plane } => Command::Infer { job, click: RasMm::new(click[0], click[1], click[2]), plane, mask2d: None },
                    Request::Cancel { job } => Command::Cancel { job },
                    Request::Shutdown => break Ok(()),
                };
                if let Err(e) = engine.send(cmd) {
                    write_line(&mut out, &Reply::Failed { job: None, message: e.to_string() })?;
                }
            }
            recv(engine.events()) -> ev => {
                let Ok(ev) = ev else { break Ok(()) };
                let reply = match ev {
                    Event::Ready { device } => Reply::Ready { device },
                    Event::ModelLoaded(info) => Reply::ModelLoaded { info },
                    Event::AdapterLoaded(info) => Reply::AdapterLoaded { info },
                    Event::VolumeReady { secs, .. } => Reply::VolumeReady { secs },
                    Event::Progress { job, stage, fraction } => Reply::Progress { job, stage, fraction },
                    Event::MaskPreview { .. } => continue,
                    Event::Result { job, result } => {
                        let mask_path = out_dir.join(format!("job-{job}.nii"));
                        match result.mask.save(&mask_path) {
                            Ok(()) => Reply::Result { job, mask_path, timings: result.timings.clone(), voxel_count: result.voxel_count, ml: result.volume_ml },
                            Err(e) => Reply::Failed { job: Some(job), message: format!("could not write the result: {e}") },
                        }
                    }
                    Event::Cancelled { job } => Reply::Cancelled { job },
                    Event::Failed { job, message } => Reply::Failed { job, message },
                };
                write_line(&mut out, &reply)?;
            }
        }
    };
    engine.shutdown();
    let _ = std::fs::remove_dir_all(&out_dir);
    result
}
