//! The fuzz harness of the file readers (see `tests/fuzz_readers.rs` for how to run it): each
//! input is a seed file mutated ([`mutate`]), written to a scratch folder with its companion
//! files, and handed to a reader ([`targets::Reader::exercise`]) on a thread of its own. A panic,
//! a run longer than the timeout (a hang) or an allocation above the guard's limit
//! ([`alloc_guard`]) is a finding; the input is kept under the target folder for replay and
//! for `tests/data/fuzz_regressions/`.

pub mod alloc_guard;
pub mod mutate;
pub mod targets;

use mutate::{Rng, mutate};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};
use targets::{Reader, Seed, gzip};

/// What went wrong with one input.
#[derive(Clone, Debug)]
pub struct Finding {
    pub reader: Reader,
    pub iteration: u64,
    pub kind: String,
    pub mutations: String,
    /// Where the input was kept.
    pub kept: PathBuf,
}

/// The tally of one reader's run.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub inputs: u64,
    pub opened: u64,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

/// How long one input may take before it counts as a hang.
pub fn timeout() -> Duration {
    Duration::from_secs(std::env::var("SAM3D_FUZZ_TIMEOUT_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10))
}

/// One test of this binary at a time: the panic record and the allocation guard are global.
pub static SERIAL: Mutex<()> = Mutex::new(());

static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

/// Installs a panic hook that records (message and location) instead of printing, for the
/// threads inputs run on and the rayon workers they use; other panics print as usual.
pub fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if name.starts_with("fuzz-") || name.is_empty() || name.contains("rayon") {
                let msg = info.payload().downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| info.payload().downcast_ref::<String>().cloned()).unwrap_or_default();
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                if let Ok(mut p) = LAST_PANIC.lock() {
                    p.get_or_insert(format!("panic at {at}: {msg}"));
                }
            } else {
                default(info);
            }
        }));
    });
}

/// Result of running one input.
pub enum Run {
    Done { opened: bool },
    Panic(String),
    Hang,
}

/// Runs `reader` on `path` on a thread of its own, waiting at most `limit`.
pub fn run_one(reader: Reader, path: &Path, limit: Duration) -> Run {
    if let Ok(mut p) = LAST_PANIC.lock() {
        *p = None;
    }
    let (tx, rx) = mpsc::channel();
    let p = path.to_path_buf();
    let spawned = std::thread::Builder::new().name(format!("fuzz-{}", reader.name())).spawn(move || {
        let r = std::panic::catch_unwind(|| reader.exercise(&p));
        let _ = tx.send(r.ok());
    });
    if spawned.is_err() {
        return Run::Panic("could not start a thread".into());
    }
    match rx.recv_timeout(limit) {
        Ok(Some(opened)) => Run::Done { opened },
        Ok(None) => Run::Panic(LAST_PANIC.lock().ok().and_then(|p| p.clone()).unwrap_or_else(|| "panic".into())),
        Err(_) => Run::Hang,
    }
}

/// The seed of this run: `SAM3D_FUZZ_SEED`, else from the clock.
pub fn run_seed() -> u64 {
    std::env::var("SAM3D_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// The input of iteration `i`: a seed's files with one of them mutated; the description of
/// the mutations. Deterministic in (`seed`, reader, `i`).
pub fn make_input(seeds: &[Seed], reader: Reader, seed: u64, i: u64) -> (Vec<(String, Vec<u8>)>, String) {
    let mut rng = Rng::new(seed ^ (reader as u64).wrapping_mul(0x1000_0000_01B3) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let Some(s) = rng.pick(seeds) else { return (Vec::new(), String::new()) };
    let target = if s.files.len() > 1 && rng.one_in(5) { 1 + rng.below(s.files.len() - 1) } else { 0 };
    let mut what = format!("{}:", s.files[0].name);
    let files = s
        .files
        .iter()
        .enumerate()
        .map(|(k, f)| {
            if k != target {
                return (f.name.clone(), if f.gz { gzip(&f.bytes) } else { f.bytes.clone() });
            }
            let bytes = if f.gz && rng.one_in(4) {
                // The compressed stream itself.
                let mut b = gzip(&f.bytes);
                what.push_str(&format!(" {} (gzip bytes) {}", f.name, mutate(&mut rng, &mut b, &mutate::Hints::default())));
                b
            } else {
                let mut b = f.bytes.clone();
                what.push_str(&format!(" {} {}", f.name, mutate(&mut rng, &mut b, &f.hints)));
                if f.gz { gzip(&b) } else { b }
            };
            (f.name.clone(), bytes)
        })
        .collect();
    (files, what)
}

/// Writes an input's files into a fresh folder `dir`; returns the path of the main file.
pub fn write_input(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<PathBuf> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(dir.join(files.first().map(|f| f.0.as_str()).unwrap_or("empty")))
}

/// The scratch and findings folder of this test binary.
pub fn scratch() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fuzz_readers")
}

/// Fuzzes one reader for `budget` or `max_inputs`, whichever ends first.
pub fn fuzz(reader: Reader, seed: u64, budget: Duration, max_inputs: u64, first: u64) -> Tally {
    let seeds = targets::seeds(reader);
    let mut tally = Tally::default();
    if seeds.is_empty() {
        return tally;
    }
    let limit = timeout();
    let start = Instant::now();
    let mut work = scratch().join(format!("work-{}-{seed}", reader.name()));
    let mut hangs = 0;
    let mut i = first;
    let verbose = std::env::var_os("SAM3D_FUZZ_VERBOSE").is_some();
    while tally.inputs < max_inputs && start.elapsed() < budget && hangs < 3 {
        let (files, what) = make_input(&seeds, reader, seed, i);
        let Ok(path) = write_input(&work, &files) else { break };
        // Left behind if an unrefusable allocation aborts the process.
        let _ = std::fs::write(scratch().join("current.txt"), format!("{} seed {seed} iteration {i}: {what}\n", reader.name()));
        let t0 = Instant::now();
        let run = run_one(reader, &path, limit);
        if verbose {
            eprintln!("{} #{i} {:.1} ms: {what}", reader.name(), t0.elapsed().as_secs_f64() * 1e3);
        }
        let big = alloc_guard::take_refused();
        let kind = match (&run, big) {
            (Run::Panic(m), _) => Some(m.clone()),
            (Run::Hang, _) => Some(format!("no result after {limit:?} (hang)")),
            (Run::Done { .. }, Some(n)) => Some(format!("asked for {n} bytes in one allocation (refused)")),
            (Run::Done { opened }, None) => {
                tally.opened += *opened as u64;
                None
            }
        };
        if let Some(kind) = kind {
            let kept = scratch().join("findings").join(format!("{}-{seed}-{i}", reader.name()));
            let _ = write_input(&kept, &files);
            eprintln!("FINDING {} seed {seed} iteration {i}: {kind}\n  mutations: {what}\n  kept in {}", reader.name(), kept.display());
            tally.findings.push(Finding { reader, iteration: i, kind, mutations: what, kept });
        }
        if matches!(run, Run::Hang) {
            // The hung thread still owns its folder: carry on in a new one.
            hangs += 1;
            work = scratch().join(format!("work-{}-{seed}-{hangs}", reader.name()));
        }
        tally.inputs += 1;
        i += 1;
    }
    if std::env::var_os("SAM3D_FUZZ_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    tally.elapsed = start.elapsed();
    tally
}
