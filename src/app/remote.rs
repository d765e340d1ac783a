//! The client side of `sam3d-studio-engine serve`: the model runs in that process (it owns
//! libtorch; this binary never links it). Requests go as JSON lines on its stdin; a named
//! reader thread parses its stdout into [`RemoteEvent`]s on a bounded channel and wakes the UI.
//! The protocol is described in `src/engine/serve.rs`; the types here mirror it on purpose
//! (the app must not reference the engine module).

use crossbeam_channel::{Receiver, bounded};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

/// A reply line from the engine.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RemoteEvent {
    Ready { device: String },
    ModelLoaded { info: serde_json::Value },
    AdapterLoaded { info: serde_json::Value },
    VolumeReady { secs: f64 },
    Progress { job: u64, stage: String, fraction: f32 },
    Result { job: u64, mask_path: PathBuf, voxel_count: usize, ml: f64, timings: serde_json::Value },
    Cancelled { job: u64 },
    Failed { job: Option<u64>, message: String },
    /// Not from the protocol: the process ended or wrote something unreadable.
    #[serde(skip)]
    Exited(String),
}

/// The running engine process.
pub struct RemoteEngine {
    child: Child,
    stdin: Option<ChildStdin>,
    pub events: Receiver<RemoteEvent>,
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
        let (tx, rx) = bounded::<RemoteEvent>(256);
        std::thread::Builder::new()
            .name("sam3d-engine-reader".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let ev = match line {
                        Ok(l) if l.trim().is_empty() => continue,
                        Ok(l) => serde_json::from_str::<RemoteEvent>(&l).unwrap_or_else(|e| RemoteEvent::Exited(format!("unreadable engine output {l:?}: {e}"))),
                        Err(e) => RemoteEvent::Exited(format!("reading the engine's output: {e}")),
                    };
                    let stop = matches!(ev, RemoteEvent::Exited(_));
                    if tx.send(ev).is_err() || stop {
                        wake();
                        return;
                    }
                    wake();
                }
                let _ = tx.send(RemoteEvent::Exited("the engine process ended".into()));
                wake();
            })
            .map_err(|e| format!("could not start the engine reader thread: {e}"))?;
        Ok(Self { child, stdin, events: rx })
    }

    /// Sends one request line.
    pub fn send(&mut self, req: serde_json::Value) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("the engine is not running")?;
        writeln!(stdin, "{req}").and_then(|_| stdin.flush()).map_err(|e| format!("the engine stopped accepting requests: {e}"))
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        // End of input stops the engine; kill it if it does not stop on its own.
        self.stdin = None;
        for _ in 0..20 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A short description of a loaded model from the engine's `info`.
pub fn describe_model(info: &serde_json::Value) -> String {
    let preset = info.get("preset").and_then(|v| v.as_str()).unwrap_or("?");
    let file = info.get("weights").and_then(|v| v.as_str()).and_then(|p| Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()));
    match file {
        Some(f) => format!("{preset} ({f})"),
        None => preset.to_string(),
    }
}

pub fn describe_adapter(info: &serde_json::Value) -> Option<String> {
    let a = info.get("adapter").and_then(|v| v.as_str())?;
    let name = Path::new(a).file_name().map_or_else(|| a.to_string(), |n| n.to_string_lossy().into_owned());
    Some(match info.get("adapter_rank").and_then(|v| v.as_u64()) {
        Some(r) => format!("{name} (rank {r})"),
        None => name,
    })
}
