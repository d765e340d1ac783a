//! Fuzzing of every file reader: NIfTI, DICOM, NRRD, Slicer `.seg.nrrd`, MetaImage and the
//! label tables. Inputs are the checked-in fixtures, mutated (bit flips, interesting bytes and
//! integers in header fields, truncation, chunk duplication and removal, hostile values in
//! text headers); each runs on its own thread with a timeout, under an allocator that refuses
//! any single allocation over a limit. A panic, a hang or a refused allocation fails the test,
//! and the input is kept under `target/tmp/fuzz_readers/findings/` — to be minimised into
//! `tests/data/fuzz_regressions/<reader>-<what>/input.<ext>` once fixed.
//!
//! ```text
//! # the long run (budget split evenly over the readers; prints the seed):
//! SAM3D_FUZZ_SECS=60 cargo test --release -p sam3d-core --test fuzz_readers -- --ignored --nocapture
//! # replay a run, or one reader, or one input:
//! SAM3D_FUZZ_SEED=123 SAM3D_FUZZ_READERS=nifti,dicom SAM3D_FUZZ_FROM=4711 SAM3D_FUZZ_INPUTS=1 cargo test ... -- --ignored
//! ```
//! Also `SAM3D_FUZZ_TIMEOUT_SECS` (per input, default 10) and `SAM3D_FUZZ_MAX_ALLOC_MB`
//! (largest single allocation, default 256: the seeds are all under 100 KB). The non-ignored `smoke` test runs a few hundred
//! inputs with a fixed seed; `regressions` opens every kept crash input.
#![allow(unsafe_code)] // the allocation guard is a `GlobalAlloc`

mod fuzz_support;

use fuzz_support::targets::{Reader, crate_dir};
use fuzz_support::{Run, SERIAL, alloc_guard, fuzz, install_hook, run_one, run_seed, timeout};
use std::time::Duration;

#[global_allocator]
static GUARD: alloc_guard::Guard = alloc_guard::Guard;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Fuzzes `readers` and fails listing every finding.
fn campaign(readers: &[Reader], seed: u64, secs: u64, max_inputs: u64, first: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_hook();
    alloc_guard::configure();
    eprintln!("fuzz seed {seed} (replay with SAM3D_FUZZ_SEED={seed}); {secs} s over {} readers", readers.len());
    let per = Duration::from_secs_f64(secs as f64 / readers.len().max(1) as f64);
    let mut all = Vec::new();
    for &r in readers {
        let t = fuzz(r, seed, per, max_inputs, first);
        eprintln!(
            "{:>6}: {} inputs in {:.1} s ({} opened), {} findings",
            r.name(),
            t.inputs,
            t.elapsed.as_secs_f64(),
            t.opened,
            t.findings.len()
        );
        assert!(t.inputs > 0, "{}: no seeds", r.name());
        all.extend(t.findings);
    }
    let lines: Vec<String> = all.iter().map(|f| format!("  {} #{}: {} [{}] kept in {}", f.reader.name(), f.iteration, f.kind, f.mutations, f.kept.display())).collect();
    assert!(all.is_empty(), "{} findings (seed {seed}):\n{}", all.len(), lines.join("\n"));
}

/// A few hundred inputs with a fixed seed: CI's share of the fuzzing, in seconds.
#[test]
fn smoke() {
    campaign(&Reader::ALL, 20, 600, 60, 0);
}

/// The long run: `SAM3D_FUZZ_SECS` (default 60) over the readers of `SAM3D_FUZZ_READERS`
/// (default all: nifti, dicom, nrrd, seg, mha, table), from iteration `SAM3D_FUZZ_FROM`, at
/// most `SAM3D_FUZZ_INPUTS` inputs per reader.
#[test]
#[ignore = "long: run with SAM3D_FUZZ_SECS=… -- --ignored --nocapture"]
fn fuzz_readers() {
    let readers: Vec<Reader> = match std::env::var("SAM3D_FUZZ_READERS") {
        Ok(v) => v.split(',').map(|n| Reader::from_name(n.trim()).unwrap_or_else(|| panic!("unknown reader '{n}'"))).collect(),
        Err(_) => Reader::ALL.to_vec(),
    };
    let secs = env_u64("SAM3D_FUZZ_SECS").unwrap_or(60);
    campaign(&readers, run_seed(), secs, env_u64("SAM3D_FUZZ_INPUTS").unwrap_or(u64::MAX), env_u64("SAM3D_FUZZ_FROM").unwrap_or(0));
}

/// Runs one reader on one file and says how it went: `SAM3D_FUZZ_REPLAY=dicom:/path/input.dcm`
/// (a kept finding, a regression), with `--ignored --nocapture`.
#[test]
#[ignore = "a tool: SAM3D_FUZZ_REPLAY=reader:path"]
fn replay() {
    let Ok(spec) = std::env::var("SAM3D_FUZZ_REPLAY") else { return };
    let (reader, path) = spec.split_once(':').expect("reader:path");
    let reader = Reader::from_name(reader).expect("a reader name");
    install_hook();
    alloc_guard::configure();
    let t0 = std::time::Instant::now();
    let outcome = match run_one(reader, std::path::Path::new(path), timeout()) {
        Run::Done { opened } => format!("done, opened: {opened}"),
        Run::Panic(m) => m,
        Run::Hang => "hang".into(),
    };
    eprintln!("{outcome} in {:.1} ms; refused allocation: {:?}", t0.elapsed().as_secs_f64() * 1e3, alloc_guard::take_refused());
}

/// Every input the fuzzer once broke a reader with is refused with an error: no panic, no
/// hang, no huge allocation. `tests/data/fuzz_regressions/<reader>-<what>/input.*` is the
/// file opened; the folder's other files sit beside it as they did.
#[test]
fn regressions() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    install_hook();
    alloc_guard::configure();
    let root = crate_dir().join("tests/data/fuzz_regressions");
    let mut dirs: Vec<_> = std::fs::read_dir(&root).expect("regressions folder").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    dirs.sort();
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let reader = Reader::from_name(name.split('-').next().unwrap_or("")).unwrap_or_else(|| panic!("{name}: folder name must start with a reader name"));
        let input = std::fs::read_dir(dir)
            .expect("folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("input")))
            .unwrap_or_else(|| panic!("{name}: no input.* file"));
        let run = run_one(reader, &input, timeout());
        let big = alloc_guard::take_refused();
        match (run, big) {
            (_, Some(n)) => failures.push(format!("{name}: asked for {n} bytes in one allocation")),
            (Run::Panic(m), _) => failures.push(format!("{name}: {m}")),
            (Run::Hang, _) => failures.push(format!("{name}: hangs")),
            (Run::Done { opened: true }, _) => failures.push(format!("{name}: opened, expected an error")),
            (Run::Done { opened: false }, _) => {}
        }
    }
    assert!(failures.is_empty(), "{} of {} regressions fail:\n{}", failures.len(), dirs.len(), failures.join("\n"));
}
