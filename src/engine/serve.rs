//! `sam3d-studio-engine serve`: the [`Engine`] worker behind a JSON-lines protocol on
//! stdin/stdout, so the GUI (which never links libtorch) can drive the model in this process.
//!
//! Protocol version [`PROTOCOL_VERSION`] (2). One JSON object per line each way.
//!
//! Requests ([`Request`]): `{"cmd":"load_weights","path":…}`, `{"cmd":"load_adapter","path":…}`,
//! `{"cmd":"set_volume","path":…}`, `{"cmd":"infer","job":1,"click":[x,y,z],"plane":"Axial"}`
//! (RAS mm), `{"cmd":"set_refine","on":false}` (the image refinement of the model's masks, on
//! until turned off), `{"cmd":"set_extend","on":false}` (continuing organs wider than the output
//! cube with more passes, on until turned off), `{"cmd":"set_planes","fusion":"own"}` (how each
//! pass combines the model's shapes from the three planes through the click: `own`, `mean` or
//! `median`, the default), `{"cmd":"set_join","on":false}` (joining region growing from the
//! click where it agrees with the model's shape, on until turned off), `{"cmd":"set_mr_adapter",
//! "on":false}` (the MR adapter the engine puts on for MR scans, on until turned off),
//! `{"cmd":"cancel","job":1}`,
//! `{"cmd":"shutdown"}`.
//!
//! Replies ([`Reply`]): `ready{device,protocol}`, `model_loaded{info}`, `adapter_loaded{info}`,
//! `volume_ready{secs}`, `progress{job,stage,fraction}`, `cancelled{job}`, `failed{job,message}`,
//! and `result{job,crop,mesh_path,timings,voxel_count,ml,adapter}` where
//! - `crop` is `{path,origin_kji,shape_kji}` or `null` when nothing was segmented: the kept
//!   component's bounding box on the volume's grid — array index `[k, j, i]` of its first voxel
//!   and its shape `[nk, nj, ni]` — and a raw file of `nk·nj·ni` bytes, C order (`i` fastest),
//!   1 inside and 0 outside ([`crate::shape::GridComponent::mask_bytes`]). The client knows the volume's grid
//!   (it sent the path), so it pastes the crop into a full-size mask; nothing else of the grid
//!   crosses the pipe.
//! - `mesh_path` is the click's surface as the engine meshed it (binary little-endian PLY as
//!   written by [`crate::shape::export::ply_bytes`], RAS mm, read back exactly by
//!   [`crate::shape::read_ply`]), or `null` when there is none.
//!
//! Both files live in a temporary folder of this process; the client removes them once read
//! (or dropped), and this process removes the folder when it stops.
//! Version 1 sent the full-size mask as a `.nii` (`mask_path`): on a 512×512×224 CT that is
//! 117 MB written and read back per click, and the client then meshed it again.
//! - `adapter` is the LoRA adapter the click ran with, or `null` for the base weights alone: one
//!   loaded by hand, or the shipped MR adapter, which the engine puts on for an MR scan while
//!   none was loaded by hand ([`crate::engine::Session::set_mr_adapter`]).
//!
//! End of stdin (or `shutdown`) stops the process.

use super::{Command, Engine, EngineOptions, Event, Timings};
use crate::geometry::{RasMm, ViewPlane};
use crate::model::ModelInfo;
use crate::shape::{MeshObject, MeshSpace};
use crate::volume::Volume;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

/// The protocol version this engine speaks (sent in `ready`).
pub const PROTOCOL_VERSION: u32 = 2;

/// A request line.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    LoadWeights { path: PathBuf },
    LoadAdapter { path: PathBuf },
    SetVolume { path: PathBuf },
    Infer { job: u64, click: [f64; 3], plane: ViewPlane },
    /// Refine the model's masks by the image (the default) or not, from the next click on.
    SetRefine { on: bool },
    /// Continue organs wider than the output cube (the default) or not, from the next click on.
    SetExtend { on: bool },
    /// Join region growing from the click where it agrees with the model's shape (the default)
    /// or not, from the next click on.
    SetJoin { on: bool },
    /// Put the MR adapter on for MR scans (the default) or not, from the next click on.
    SetMrAdapter { on: bool },
    /// How each pass combines the three planes through the click, from the next click on.
    SetPlanes { fusion: crate::engine::session::PlaneFusion },
    Cancel { job: u64 },
    Shutdown,
}

/// A reply line.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    Ready { device: String, protocol: u32 },
    ModelLoaded { info: ModelInfo },
    AdapterLoaded { info: ModelInfo },
    VolumeReady { secs: f64 },
    Progress { job: u64, stage: super::Stage, fraction: f32 },
    Result { job: u64, crop: Option<CropFile>, mesh_path: Option<PathBuf>, timings: Timings, voxel_count: usize, ml: f64, adapter: Option<PathBuf> },
    Cancelled { job: u64 },
    Failed { job: Option<u64>, message: String },
}

/// Where a result's crop is: a raw file of its mask bytes, its origin and shape on the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CropFile {
    pub path: PathBuf,
    pub origin_kji: [usize; 3],
    pub shape_kji: [usize; 3],
}

/// Writes a result's files into `dir` (`job-N.mask`, `job-N.ply`) and builds its reply. On an
/// error nothing is left behind.
fn result_reply(dir: &std::path::Path, job: u64, r: &super::InferResult) -> Result<Reply, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: could not make the results folder: {e}", dir.display()))?;
    let crop = match &r.component {
        Some(c) => {
            let path = dir.join(format!("job-{job}.mask"));
            std::fs::write(&path, c.mask_bytes()).map_err(|e| format!("{}: could not write the result: {e}", path.display()))?;
            let d = c.mask.dim();
            Some(CropFile { path, origin_kji: c.origin_kji, shape_kji: [d.0, d.1, d.2] })
        }
        None => None,
    };
    let mesh_path = match &r.mesh {
        Some(m) => {
            let path = dir.join(format!("job-{job}.ply"));
            let bytes = crate::shape::export::ply_bytes(&[MeshObject { label: 1, name: "click", mesh: m }], MeshSpace::Ras);
            if let Err(e) = std::fs::write(&path, bytes) {
                if let Some(c) = &crop {
                    let _ = std::fs::remove_file(&c.path);
                }
                return Err(format!("{}: could not write the result's mesh: {e}", path.display()));
            }
            Some(path)
        }
        None => None,
    };
    Ok(Reply::Result { job, crop, mesh_path, timings: r.timings.clone(), voxel_count: r.voxel_count, ml: r.volume_ml, adapter: r.adapter.clone() })
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
    // Made at the first result (a process killed before that leaves nothing behind).
    let out_dir = std::env::temp_dir().join(format!("sam3d-engine-{}", std::process::id()));
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
                    Request::SetRefine { on } => Command::SetRefine(on.then(Default::default)),
                    Request::SetExtend { on } => Command::SetExtend(on),
                    Request::SetJoin { on } => Command::SetJoin(on),
                    Request::SetMrAdapter { on } => Command::SetMrAdapter(on),
                    Request::SetPlanes { fusion } => Command::SetFusion(fusion),
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
                    Event::Ready { device } => Reply::Ready { device, protocol: PROTOCOL_VERSION },
                    Event::ModelLoaded(info) => Reply::ModelLoaded { info },
                    Event::AdapterLoaded(info) => Reply::AdapterLoaded { info },
                    Event::VolumeReady { secs, .. } => Reply::VolumeReady { secs },
                    Event::Progress { job, stage, fraction } => Reply::Progress { job, stage, fraction },
                    Event::MaskPreview { .. } => continue,
                    Event::Result { job, result } => result_reply(&out_dir, job, &result).unwrap_or_else(|message| Reply::Failed { job: Some(job), message }),
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
