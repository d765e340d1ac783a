//! The model on another machine: a remote engine (`sam3d-studio-engine serve-http`, or any server
//! of nnInteractive's remote protocol) driven through the same [`Request`]s and [`Reply`]s as the
//! local engine process, so the viewer's clicks, progress, cancel and errors work unchanged.
//!
//! A named thread owns the connection: it claims a lease, uploads the scan once (the engine copy
//! the loader wrote: `[k, j, i]` float32 with its affine, so the server sees the same grid),
//! keeps a mirror of the server's target buffer, and turns each prompt into a point or box
//! interaction in voxel coordinates (through the scan's affine). A reply's changed box updates
//! the mirror, and the object's crop is handed to the viewer as the local engine hands its
//! results (a crop file). It heartbeats while idle, and when the server has dropped the session
//! (410: idle too long, or restarted) it claims a new one, uploads the scan again and retries.

use crate::geometry::RasMm;
use crate::nninteractive::api::*;
use crate::nninteractive::{PackOptions, pack, unpack};
use crate::protocol::{ClientEvent, CropFile, ModelInfo, PROTOCOL_VERSION, Reply, Request, Stage, Timings, infer_prompt};
use crate::volume::{OnGrid, Volume};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ndarray::{Array3, s};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a remote engine is and the key it wants.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RemoteSettings {
    /// `http://host:1527` (or `https://` behind a TLS proxy).
    pub url: String,
    /// The bearer key; kept for the session only unless the user asked to remember it.
    #[serde(skip)]
    pub key: Option<String>,
}

impl RemoteSettings {
    /// The URL, checked: http or https, a host, no trailing slash.
    pub fn checked_url(&self) -> Result<String, String> {
        let u = self.url.trim();
        let (scheme, rest) = ["http://", "https://"]
            .into_iter()
            .find_map(|p| u.strip_prefix(p).map(|r| (p, r)))
            .ok_or_else(|| format!("{u:?}: the engine's address must start with http:// or https://"))?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains(char::is_whitespace) {
            return Err(format!("{u:?}: no host in the engine's address"));
        }
        Ok(format!("{scheme}{rest}"))
    }
}

/// What the connection needs to talk.
struct Link {
    agent: ureq::Agent,
    base: String,
    key: Option<String>,
    lease: Option<String>,
    heartbeat: Duration,
}

/// A reply's status and body, or why there was none.
type Http = Result<(u16, Vec<(String, String)>, Vec<u8>), String>;

impl Link {
    fn new(base: String, key: Option<String>) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Link { agent, base, key, lease: None, heartbeat: Duration::from_secs(20) }
    }

    fn call(&self, method: &str, path: &str, meta: Option<String>, body: Option<(&str, Vec<u8>)>) -> Http {
        let url = format!("{}{path}", self.base);
        let with = |mut r: ureq::RequestBuilder<ureq::typestate::WithBody>| {
            if let Some(k) = &self.key {
                r = r.header("Authorization", format!("Bearer {k}"));
            }
            if let Some(l) = &self.lease {
                r = r.header(LEASE_HEADER, l);
            }
            if let Some(m) = &meta {
                r = r.header(META_HEADER, m);
            }
            r
        };
        let resp = if method == "GET" {
            let mut r = self.agent.get(&url);
            if let Some(k) = &self.key {
                r = r.header("Authorization", format!("Bearer {k}"));
            }
            if let Some(l) = &self.lease {
                r = r.header(LEASE_HEADER, l);
            }
            r.call()
        } else {
            let r = with(self.agent.post(&url));
            match body {
                Some((ct, bytes)) => r.content_type(ct).send(&bytes[..]),
                None => r.send_empty(),
            }
        };
        let mut resp = resp.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_string()))).collect();
        let bytes = resp.body_mut().with_config().limit(8 << 30).read_to_vec().map_err(|e| format!("{url}: the reply: {e}"))?;
        Ok((status, headers, bytes))
    }

    /// A JSON reply of a 2xx, or the server's `detail` for anything else.
    fn json<T: serde::de::DeserializeOwned>(&self, method: &str, path: &str, body: Option<String>) -> Result<T, Failure> {
        let (status, _, bytes) = self.call(method, path, None, body.map(|b| ("application/json", b.into_bytes()))).map_err(Failure::Net)?;
        check(path, status, &bytes)?;
        serde_json::from_slice(&bytes).map_err(|e| Failure::Other(format!("{path}: the server's reply: {e}")))
    }
}

/// Why a call failed.
#[derive(Debug)]
enum Failure {
    /// The server no longer knows the lease (410).
    Gone,
    Net(String),
    Other(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::Gone => "the remote engine dropped this session".into(),
            Failure::Net(m) => format!("the remote engine could not be reached: {m}"),
            Failure::Other(m) => m,
        }
    }
}

fn check(path: &str, status: u16, body: &[u8]) -> Result<(), Failure> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let detail = serde_json::from_slice::<ErrorBody>(body).map(|e| e.detail).unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    Err(match status {
        410 => Failure::Gone,
        401 => Failure::Other(format!("the remote engine refused the key ({detail})")),
        503 => Failure::Other(format!("the remote engine is busy: {detail}")),
        _ => Failure::Other(format!("{path}: {status}: {detail}")),
    })
}

/// The scan as the server holds it, and the mirror of the target buffer.
struct Scan {
    path: PathBuf,
    volume: Arc<Volume>,
    mirror: Array3<u8>,
    /// The viewer's object id and how many of its prompts the server applied.
    held: Option<(u64, usize)>,
}

/// A prompt's result: the object's crop file, its voxels and millilitres.
type Outcome = (Option<CropFile>, usize, f64);

/// The connection thread's state.
struct Conn {
    link: Link,
    info: Option<Capabilities>,
    scan: Option<Scan>,
    results: PathBuf,
    cancel_upto: Arc<AtomicU64>,
}

/// A connection's ends: requests in, events out, and the highest cancelled job.
pub type Connection = (Sender<Request>, Receiver<ClientEvent>, Arc<AtomicU64>);

/// Connects (claims a lease, reads the capabilities) and starts the connection thread. The
/// first event is `Ready`; `wake` runs after each.
pub fn connect(settings: &RemoteSettings, wake: impl Fn() + Send + 'static) -> Result<Connection, String> {
    let base = settings.checked_url()?;
    let (req_tx, req_rx) = crossbeam_channel::bounded::<Request>(64);
    let (ev_tx, ev_rx) = crossbeam_channel::bounded::<ClientEvent>(256);
    let cancel_upto = Arc::new(AtomicU64::new(0));
    let results = std::env::temp_dir().join(format!("sam3d-remote-{}", std::process::id()));
    let mut conn = Conn { link: Link::new(base, settings.key.clone()), info: None, scan: None, results, cancel_upto: cancel_upto.clone() };
    std::thread::Builder::new()
        .name("sam3d-remote-engine".into())
        .spawn(move || {
            let send = |ev: ClientEvent| {
                let _ = ev_tx.send(ev);
                wake();
            };
            match conn.claim() {
                Ok(()) => {
                    let device = conn.where_it_runs();
                    send(ClientEvent::Reply(Reply::Ready { device, protocol: PROTOCOL_VERSION }));
                    let why = conn.serve(&req_rx, &send);
                    conn.release();
                    send(ClientEvent::Exited(why));
                }
                Err(e) => send(ClientEvent::Exited(e.message())),
            }
            let _ = std::fs::remove_dir_all(&conn.results);
        })
        .map_err(|e| format!("could not start the remote engine thread: {e}"))?;
    Ok((req_tx, ev_rx, cancel_upto))
}

impl Conn {
    fn claim(&mut self) -> Result<(), Failure> {
        self.link.lease = None;
        let c: ClaimReply = self.link.json("POST", PATH_CLAIM, None)?;
        self.link.lease = Some(c.lease_token);
        if c.liveness_timeout_seconds > 0.0 {
            self.link.heartbeat = Duration::from_secs_f64((c.liveness_timeout_seconds / 2.0).clamp(1.0, 30.0));
        }
        self.info = Some(self.link.json("GET", PATH_CAPABILITIES, None)?);
        Ok(())
    }

    fn release(&mut self) {
        if self.link.lease.is_some() {
            let _ = self.link.call("POST", PATH_RELEASE, None, None);
            self.link.lease = None;
        }
    }

    /// `remote <url> (<device>)`, for the status bar.
    fn where_it_runs(&self) -> String {
        let device = self.info.as_ref().and_then(|c| c.server.as_ref()).map_or("device not said".to_string(), |s| s.device.clone());
        format!("remote {} ({})", self.link.base, super::device_name(&device))
    }

    fn model_info(&self) -> ModelInfo {
        let server = self.info.as_ref().and_then(|c| c.server.clone()).unwrap_or_default();
        ModelInfo {
            preset: if server.preset.is_empty() { "remote".into() } else { server.preset },
            weights: (!server.weights.is_empty()).then(|| PathBuf::from(server.weights)),
            weights_sha256: None,
            adapter: None,
            adapter_rank: None,
            adapter_merged: false,
            parameters: 0,
            device: self.where_it_runs(),
            // The server corrects as its own options say; the viewer's box does not reach it.
            corrector: None,
        }
    }

    /// Handles requests until the viewer lets go; returns why it stopped.
    fn serve(&mut self, rx: &Receiver<Request>, send: &dyn Fn(ClientEvent)) -> String {
        loop {
            let req = match rx.recv_timeout(self.link.heartbeat) {
                Ok(r) => r,
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(Failure::Net(e)) = self.link.json::<LeaseStatus>("POST", PATH_HEARTBEAT, None) {
                        log::warn!("remote engine heartbeat: {e}");
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return "the viewer closed the connection".into(),
            };
            let reply = match req {
                Request::Shutdown => return "disconnected".into(),
                Request::LoadWeights { .. } => Reply::ModelLoaded { info: self.model_info() },
                Request::LoadAdapter { .. } => Reply::Failed { job: None, message: "a remote engine serves its own weights; adapters are loaded where it runs".into() },
                Request::SetVolume { path } => match self.retrying(|c| c.upload(&path)) {
                    Ok(secs) => Reply::VolumeReady { secs },
                    Err(e) => Reply::Failed { job: None, message: e },
                },
                Request::Cancel { job } => {
                    self.cancel_upto.fetch_max(job, Ordering::SeqCst);
                    continue;
                }
                Request::Infer { job, click, plane, negative, bbox, object, .. } => {
                    send(ClientEvent::Reply(Reply::Progress { job, stage: Stage::Shape, fraction: 0.2 }));
                    let t = Instant::now();
                    let r = infer_prompt(click, negative, bbox).and_then(|_| self.retrying(|c| c.prompt(job, click, negative, bbox, plane, object)));
                    if self.cancel_upto.load(Ordering::SeqCst) >= job {
                        Reply::Cancelled { job }
                    } else {
                        match r {
                            Ok((crop, voxel_count, ml)) => Reply::Result {
                                job,
                                crop,
                                mesh_path: None,
                                timings: Timings { total_secs: t.elapsed().as_secs_f64(), ..Default::default() },
                                voxel_count,
                                ml,
                                adapter: None,
                            },
                            Err(message) => Reply::Failed { job: Some(job), message },
                        }
                    }
                }
            };
            send(ClientEvent::Reply(reply));
        }
    }

    /// Runs `f`; when the server has dropped the session, claims a new one, uploads the scan
    /// again and runs `f` once more.
    fn retrying<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, Failure>) -> Result<T, String> {
        match f(self) {
            Err(Failure::Gone) => {
                log::info!("the remote engine dropped the session: claiming a new one");
                self.claim().map_err(Failure::message)?;
                if let Some(path) = self.scan.as_ref().map(|s| s.path.clone()) {
                    self.upload(&path).map_err(Failure::message)?;
                }
                f(self).map_err(Failure::message)
            }
            r => r.map_err(Failure::message),
        }
    }

    /// Sends the scan (`[1, k, j, i]` float32 and its affine) and an empty target buffer.
    fn upload(&mut self, path: &std::path::Path) -> Result<f64, Failure> {
        let t = Instant::now();
        let volume = Arc::new(crate::volume::open(path).map_err(|e| Failure::Other(e.to_string()))?);
        let shape = volume.shape().array_shape();
        let data = volume.data.as_slice().ok_or_else(|| Failure::Other("the scan is not in C order".into()))?;
        let packed = pack(data, &[1, shape[0], shape[1], shape[2]], PackOptions { shuffle: true, ..Default::default() }).map_err(|e| Failure::Other(e.to_string()))?;
        let meta = SetImageMeta { image_properties: ImageProperties { affine: Some(volume.ras_from_voxel.rows()), ..Default::default() } };
        let meta = serde_json::to_string(&meta).map_err(|e| Failure::Other(e.to_string()))?;
        let (status, _, body) = self.link.call("POST", PATH_SET_IMAGE, Some(meta), Some((OCTET_STREAM, packed))).map_err(Failure::Net)?;
        check(PATH_SET_IMAGE, status, &body)?;
        let tb = TargetBufferRequest { shape: shape.iter().map(|&d| serde_json::json!(d)).collect(), dtype: "uint8".into() };
        self.link.json::<serde_json::Value>("POST", PATH_SET_TARGET_BUFFER, Some(serde_json::to_string(&tb).map_err(|e| Failure::Other(e.to_string()))?))?;
        self.scan = Some(Scan { path: path.to_path_buf(), volume, mirror: Array3::zeros(shape), held: None });
        Ok(t.elapsed().as_secs_f64())
    }

    /// One prompt: onto a new object (reset first) or the held one (undone back to the step the
    /// viewer refines). Returns the object's crop file, voxels and millilitres.
    fn prompt(
        &mut self,
        job: u64,
        click: Option<[f64; 3]>,
        negative: bool,
        bbox: Option<crate::prompts::BoxPrompt>,
        plane: crate::geometry::ViewPlane,
        object: Option<crate::prompts::ObjectRef>,
    ) -> Result<Outcome, Failure> {
        let scan = self.scan.as_ref().ok_or_else(|| Failure::Other("no scan was sent to the remote engine".into()))?;
        let volume = scan.volume.clone();
        // Where the object stands on the server.
        match (object, scan.held) {
            (Some(o), Some((id, n))) if o.id == id && o.after <= n => {
                for _ in o.after..n {
                    self.apply_prediction(PATH_UNDO, "{}".into())?;
                }
            }
            (Some(o), _) => return Err(Failure::Other(format!("the remote engine no longer holds object {}: start a new one", o.id))),
            (None, _) => {
                self.link.json::<serde_json::Value>("POST", PATH_RESET_INTERACTIONS, None)?;
                if let Some(s) = self.scan.as_mut() {
                    s.mirror.fill(0);
                }
            }
        }
        let kji = |p: [f64; 3]| -> Result<[f64; 3], Failure> {
            let v = volume.voxel_from_ras().apply(RasMm::new(p[0], p[1], p[2]));
            let a = volume.shape().array_index(v).ok_or_else(|| Failure::Other(format!("the point ({:.1}, {:.1}, {:.1}) mm is outside the scan", p[0], p[1], p[2])))?;
            Ok([a.k as f64, a.j as f64, a.i as f64])
        };
        if let Some(b) = bbox {
            // A box: its corners' voxel box, one voxel thick along the axis it was drawn across.
            let (a, c) = (kji(b.a)?, kji(b.b)?);
            let mut coords: Vec<Vec<f64>> = (0..3).map(|d| vec![a[d].min(c[d]), a[d].max(c[d]) + 1.0]).collect();
            if let Some(open) = b.open {
                let ax = open.normal_world_axis();
                let dir = volume.voxel_from_ras().apply_vector(nalgebra::Vector3::from_fn(|r, _| if r == ax { 1.0 } else { 0.0 }));
                let voxel_axis = (0..3).max_by(|&x, &y| dir[x].abs().total_cmp(&dir[y].abs())).unwrap_or(2);
                let d = 2 - voxel_axis;
                coords[d] = vec![a[d], a[d] + 1.0];
            }
            let body = BboxRequest { bbox_coords: coords, include_interaction: true, run_prediction: click.is_none(), override_capability_checks: false };
            self.apply_prediction(PATH_ADD_BBOX, serde_json::to_string(&body).map_err(|e| Failure::Other(e.to_string()))?)?;
        }
        if let Some(p) = click {
            let body = PointRequest { coordinates: kji(p)?.to_vec(), include_interaction: !negative, run_prediction: true, override_capability_checks: false, plane: Some(plane) };
            self.apply_prediction(PATH_ADD_POINT, serde_json::to_string(&body).map_err(|e| Failure::Other(e.to_string()))?)?;
        }
        let scan = self.scan.as_mut().ok_or_else(|| Failure::Other("no scan".into()))?;
        let after = object.map_or(1, |o| o.after + 1);
        scan.held = Some((object.map_or(job, |o| o.id), after));
        self.crop_file(job)
    }

    /// Posts an interaction (or undo) and writes its changed box into the mirror.
    fn apply_prediction(&mut self, path: &str, body: String) -> Result<(), Failure> {
        let (status, headers, bytes) = self.link.call("POST", path, None, Some(("application/json", body.into_bytes()))).map_err(Failure::Net)?;
        check(path, status, &bytes)?;
        let meta = headers.iter().find(|(k, _)| k == "x-meta").map(|(_, v)| v.as_str()).unwrap_or("{}");
        let meta: PredictionMeta = serde_json::from_str(meta).map_err(|e| Failure::Other(format!("{path}: the reply's {META_HEADER}: {e}")))?;
        let (Some(b), false) = (meta.bbox, bytes.is_empty()) else { return Ok(()) };
        let scan = self.scan.as_mut().ok_or_else(|| Failure::Other("no scan".into()))?;
        let shape = scan.mirror.dim();
        let fits = b.iter().zip([shape.0, shape.1, shape.2]).all(|(r, n)| r[0] < r[1] && r[1] <= n);
        if !fits {
            return Err(Failure::Other(format!("{path}: the reply's box {b:?} does not fit the scan {shape:?}")));
        }
        let n: usize = b.iter().map(|r| r[1] - r[0]).product();
        let diff = unpack(&bytes, n * 8).map_err(|e| Failure::Other(format!("{path}: the reply's mask: {e}")))?;
        if diff.shape != b.iter().map(|r| r[1] - r[0]).collect::<Vec<_>>() {
            return Err(Failure::Other(format!("{path}: the reply's mask has shape {:?} for the box {b:?}", diff.shape)));
        }
        let values = Array3::from_shape_vec((b[0][1] - b[0][0], b[1][1] - b[1][0], b[2][1] - b[2][0]), diff.to_mask().into_iter().map(u8::from).collect()).map_err(|e| Failure::Other(e.to_string()))?;
        scan.mirror.slice_mut(s![b[0][0]..b[0][1], b[1][0]..b[1][1], b[2][0]..b[2][1]]).assign(&values);
        Ok(())
    }

    /// The object as the viewer reads a local engine's result: its crop's bytes in a file.
    fn crop_file(&self, job: u64) -> Result<Outcome, Failure> {
        let scan = self.scan.as_ref().ok_or_else(|| Failure::Other("no scan".into()))?;
        let Some((lo, hi)) = crate::shape::sdf::bounding_box_by(scan.mirror.view(), |&v| v != 0) else { return Ok((None, 0, 0.0)) };
        let crop = scan.mirror.slice(s![lo[0]..=hi[0], lo[1]..=hi[1], lo[2]..=hi[2]]);
        let voxels = crop.iter().filter(|&&v| v != 0).count();
        std::fs::create_dir_all(&self.results).map_err(|e| Failure::Other(format!("{}: {e}", self.results.display())))?;
        let path = self.results.join(format!("job-{job}.mask"));
        let bytes: Vec<u8> = crop.iter().copied().collect();
        std::fs::write(&path, bytes).map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        let d = crop.dim();
        let ml = voxels as f64 * scan.volume.voxel_ml();
        Ok((Some(CropFile { path, origin_kji: lo, shape_kji: [d.0, d.1, d.2] }), voxels, ml))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::VoxelIjk;

    #[test]
    fn engine_addresses_are_checked() {
        let s = |u: &str| RemoteSettings { url: u.into(), key: None }.checked_url();
        assert_eq!(s("http://gpu-box:1527/").expect("ok"), "http://gpu-box:1527");
        assert_eq!(s(" https://10.0.0.5 ").expect("ok"), "https://10.0.0.5");
        assert!(s("gpu-box:1527").expect_err("refused").contains("http://"));
        assert!(s("http://").expect_err("refused").contains("no host"));
        assert!(s("http://a b").is_err());
    }

    #[test]
    fn a_voxel_index_round_trips_through_ras() {
        // The prompt's voxel: RAS → voxel → array index, the inverse of the server's mapping.
        let v = Volume::new(Array3::zeros((4, 5, 6)), crate::geometry::RasFromVoxel::scale_translate([-0.7, 0.8, 2.5], [10.0, -3.0, 7.0])).expect("ok");
        let p = v.ras_from_voxel.apply(VoxelIjk::new(3.0, 2.0, 1.0));
        let a = v.shape().array_index(v.voxel_from_ras().apply(p)).expect("ok");
        assert_eq!([a.k, a.j, a.i], [1, 2, 3]);
    }
}
