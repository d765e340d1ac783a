//! The client side of the engine: `sam3d-studio-engine serve` in a child process (it owns
//! libtorch; this binary never links it), or a remote engine over HTTP
//! ([`super::remote_http`]). Either way requests are [`Request`]s and answers [`ClientEvent`]s
//! on a bounded channel that wakes the UI. For the child process, requests go as lines on its
//! stdin and a named reader thread reads its stdout; a line the reader cannot read is handed on
//! as [`ClientEvent::Unreadable`] and reading goes on.

use crate::protocol::{ClientEvent, CropFile, Reply, Request, from_line, to_line};
use crate::shape::{GridComponent, Mesh};
use crossbeam_channel::{Receiver, bounded};
use ndarray::Array3;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

/// The running engine: a child process or a remote one.
pub struct RemoteEngine {
    link: Link,
    pub events: Receiver<ClientEvent>,
}

enum Link {
    Process { child: Child, stdin: Option<ChildStdin> },
    Http { tx: Option<crossbeam_channel::Sender<Request>>, cancel_upto: std::sync::Arc<std::sync::atomic::AtomicU64>, url: String },
}

impl RemoteEngine {
    /// Starts `bin serve` with `OMP_WAIT_POLICY=PASSIVE` (idle libtorch threads must not spin
    /// on the cores the UI needs). `wake` runs after each event.
    pub fn spawn(bin: &Path, wake: impl Fn() + Send + 'static) -> Result<Self, String> {
        let mut child = Command::new(bin)
            .arg("serve")
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("{}: could not start the engine: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("the engine has no stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = bounded::<ClientEvent>(256);
        std::thread::Builder::new()
            .name("sam3d-engine-reader".into())
            .spawn(move || {
                let why = read_replies(BufReader::new(stdout), &tx, &wake);
                let _ = tx.send(ClientEvent::Exited(why));
                wake();
            })
            .map_err(|e| format!("could not start the engine reader thread: {e}"))?;
        Ok(Self { link: Link::Process { child, stdin }, events: rx })
    }

    /// Connects to a remote engine (claims a session there; the first event is `Ready` or
    /// `Exited` with why it failed).
    pub fn connect(settings: &super::remote_http::RemoteSettings, wake: impl Fn() + Send + 'static) -> Result<Self, String> {
        let url = settings.checked_url()?;
        let (tx, events, cancel_upto) = super::remote_http::connect(settings, wake)?;
        Ok(Self { link: Link::Http { tx: Some(tx), cancel_upto, url }, events })
    }

    /// The remote engine's address (`None`: a local process).
    pub fn remote_url(&self) -> Option<&str> {
        match &self.link {
            Link::Http { url, .. } => Some(url),
            Link::Process { .. } => None,
        }
    }

    /// Sends one request.
    pub fn send(&mut self, req: &Request) -> Result<(), String> {
        match &mut self.link {
            Link::Process { stdin, .. } => {
                let stdin = stdin.as_mut().ok_or("the engine is not running")?;
                writeln!(stdin, "{}", to_line(req)).and_then(|_| stdin.flush()).map_err(|e| format!("the engine stopped accepting requests: {e}"))
            }
            Link::Http { tx, cancel_upto, .. } => {
                if let Request::Cancel { job } = req {
                    // Known at once: a reply that comes later for it is dropped.
                    cancel_upto.fetch_max(*job, std::sync::atomic::Ordering::SeqCst);
                }
                let tx = tx.as_ref().ok_or("the remote engine is disconnected")?;
                tx.try_send(req.clone()).map_err(|e| match e {
                    crossbeam_channel::TrySendError::Full(_) => "the remote engine is busy (too many requests waiting); try again".to_string(),
                    crossbeam_channel::TrySendError::Disconnected(_) => "the connection to the remote engine has ended".to_string(),
                })
            }
        }
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        match &mut self.link {
            Link::Process { child, stdin } => {
                // End of input stops the engine; kill it if it does not stop on its own.
                *stdin = None;
                for _ in 0..20 {
                    if matches!(child.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Link::Http { tx, .. } => {
                // The connection thread releases the session and ends.
                if let Some(tx) = tx.take() {
                    let _ = tx.try_send(Request::Shutdown);
                }
            }
        }
    }
}

/// Reads reply lines until the engine's output ends (or the app stops listening), handing each
/// on; a line that cannot be read is reported as [`ClientEvent::Unreadable`] and skipped.
/// Returns why reading stopped.
pub fn read_replies(out: impl BufRead, tx: &crossbeam_channel::Sender<ClientEvent>, wake: &dyn Fn()) -> String {
    for line in out.lines() {
        let ev = match line {
            Ok(l) if l.trim().is_empty() => continue,
            Ok(l) => match from_line::<Reply>(&l) {
                Ok(r) => ClientEvent::Reply(r),
                Err(e) => ClientEvent::Unreadable(format!("the engine wrote {e}")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => ClientEvent::Unreadable(format!("the engine wrote a line that is not UTF-8 ({e})")),
            Err(e) => return format!("reading the engine's output: {e}"),
        };
        // A job's progress waits for the window's next frame (its busy indicator asks for one
        // twice a second after the job's first second, `spinner::QUIET`): under a software
        // renderer each frame takes CPU from the job.
        let urgent = !matches!(ev, ClientEvent::Reply(Reply::Progress { .. }));
        if tx.send(ev).is_err() {
            return "the app stopped listening".into();
        }
        if urgent {
            wake();
        }
    }
    "the engine process ended".into()
}

/// A result read from the engine's files: the mask on the volume's whole grid and the
/// engine's surface of it.
#[derive(Debug)]
pub struct ResultFiles {
    pub mask: Array3<bool>,
    /// The crop's box on the grid (`[k, j, i]`, first and last voxel); `None`: nothing segmented.
    pub bbox_kji: Option<([usize; 3], [usize; 3])>,
    pub voxel_count: usize,
    pub mesh: Option<Mesh>,
}

/// Reads a result's files and removes them (also when they do not fit): the crop pasted
/// into a mask of array shape `grid_kji` (the volume's), and the mesh. Errors name the file
/// and what is wrong (wrong size, outside the grid, a voxel count other than the reply's).
pub fn read_result(crop: Option<&CropFile>, mesh_path: Option<&Path>, voxel_count: usize, grid_kji: [usize; 3]) -> Result<ResultFiles, String> {
    let out = read_result_files(crop, mesh_path, voxel_count, grid_kji);
    remove_result_files(crop, mesh_path);
    out
}

fn read_result_files(crop: Option<&CropFile>, mesh_path: Option<&Path>, voxel_count: usize, grid_kji: [usize; 3]) -> Result<ResultFiles, String> {
    let mask = match crop {
        None => Array3::from_elem((grid_kji[0], grid_kji[1], grid_kji[2]), false),
        Some(c) => {
            let bytes = std::fs::read(&c.path).map_err(|e| format!("{}: could not read the model's result: {e}", c.path.display()))?;
            let comp = GridComponent::from_mask_bytes(c.origin_kji, c.shape_kji, &bytes).map_err(|e| format!("{}: {e}", c.path.display()))?;
            if !comp.fits(grid_kji) {
                return Err(format!(
                    "{}: the model's crop at {:?} of shape {:?} does not fit the volume's grid {grid_kji:?}",
                    c.path.display(),
                    c.origin_kji,
                    c.shape_kji
                ));
            }
            if comp.voxel_count != voxel_count {
                return Err(format!("{}: {} voxels in the file, the engine said {voxel_count}", c.path.display(), comp.voxel_count));
            }
            comp.to_mask(grid_kji)
        }
    };
    if crop.is_none() && voxel_count != 0 {
        return Err(format!("the engine reported {voxel_count} voxels but sent no mask"));
    }
    let mesh = mesh_path.map(crate::shape::read_ply).transpose().map_err(|e| e.to_string())?;
    let bbox_kji = crop.filter(|c| c.shape_kji.iter().all(|&n| n > 0)).map(|c| (c.origin_kji, std::array::from_fn(|a| c.origin_kji[a] + c.shape_kji[a] - 1)));
    Ok(ResultFiles { mask, bbox_kji, voxel_count, mesh })
}

/// Removes a result's files (after reading them, or when the result is dropped).
pub fn remove_result_files(crop: Option<&CropFile>, mesh_path: Option<&Path>) {
    for p in crop.map(|c| c.path.as_path()).into_iter().chain(mesh_path) {
        if let Err(e) = std::fs::remove_file(p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("{}: could not remove the engine's result file: {e}", p.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_reply_line_is_reported_and_reading_goes_on() {
        let out = "{\"event\":\"ready\",\"device\":\"Cpu\",\"protocol\":3}\nnot json at all\n\n{\"event\":\"cancelled\",\"job\":4}\n\u{0}\u{1}garbage\n{\"event\":\"volume_ready\",\"secs\":0.5}\n";
        let (tx, rx) = crossbeam_channel::unbounded();
        let why = read_replies(std::io::Cursor::new(out.as_bytes().to_vec()), &tx, &|| {});
        assert_eq!(why, "the engine process ended");
        let got: Vec<ClientEvent> = rx.try_iter().collect();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], ClientEvent::Reply(Reply::Ready { device: "Cpu".into(), protocol: 3 }));
        assert!(matches!(&got[1], ClientEvent::Unreadable(m) if m.contains("not json at all")), "{:?}", got[1]);
        assert_eq!(got[2], ClientEvent::Reply(Reply::Cancelled { job: 4 }));
        assert!(matches!(&got[3], ClientEvent::Unreadable(_)));
        assert_eq!(got[4], ClientEvent::Reply(Reply::VolumeReady { secs: 0.5 }));
    }

    /// A job's progress is handed on without waking the window; everything else wakes it.
    #[test]
    fn progress_waits_for_the_next_frame_and_the_rest_wakes_the_window() {
        let out = "{\"event\":\"progress\",\"job\":2,\"stage\":\"shape\",\"fraction\":0.4}\n{\"event\":\"progress\",\"job\":2,\"stage\":\"postprocess\",\"fraction\":0.8}\n{\"event\":\"cancelled\",\"job\":2}\nnot json\n";
        let (tx, rx) = crossbeam_channel::unbounded();
        let wakes = std::sync::atomic::AtomicUsize::new(0);
        read_replies(std::io::Cursor::new(out.as_bytes().to_vec()), &tx, &|| {
            wakes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let got: Vec<ClientEvent> = rx.try_iter().collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(matches!(got[1], ClientEvent::Reply(Reply::Progress { job: 2, .. })), "{:?}", got[1]);
        assert_eq!(wakes.load(std::sync::atomic::Ordering::Relaxed), 2, "the cancel and the unreadable line wake it");
    }
}
