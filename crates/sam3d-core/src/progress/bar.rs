//! A terminal progress bar with rate and ETA (stderr; quiet when stderr is not a terminal
//! except for a final line). With `SAM3D_PROGRESS=lines` (what the viewer sets for the jobs it
//! runs: fine-tuning, evaluation) it writes instead one machine-readable line per update,
//! [`super::progress_line`], at most every 100 ms and at the end.

use super::{PROGRESS_ENV, fmt_secs, progress_line};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Instant;

pub struct Progress {
    what: String,
    total: u64,
    state: Mutex<(u64, Instant)>,
    start: Instant,
    tty: bool,
    lines: bool,
}

impl Progress {
    pub fn new(what: &str, total: u64) -> Self {
        let now = Instant::now();
        let lines = std::env::var(PROGRESS_ENV).is_ok_and(|v| v == "lines");
        Progress { what: what.into(), total, state: Mutex::new((0, now)), start: now, tty: !lines && std::io::stderr().is_terminal(), lines }
    }

    pub fn inc(&self, n: u64) {
        let Ok(mut s) = self.state.lock() else { return };
        s.0 += n;
        if self.lines && (s.1.elapsed().as_millis() > 100 || s.0 == self.total) {
            s.1 = Instant::now();
            eprintln!("{}", progress_line(&self.what, s.0, self.total));
        } else if self.tty && (s.1.elapsed().as_millis() > 100 || s.0 == self.total) {
            s.1 = Instant::now();
            eprint!("\r{}", self.line(s.0));
            let _ = std::io::stderr().flush();
        }
    }

    fn line(&self, done: u64) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let frac = if self.total > 0 { done as f64 / self.total as f64 } else { 1.0 };
        let width = 30;
        let filled = (frac * width as f64).round() as usize;
        let eta = if done > 0 { secs / done as f64 * (self.total - done.min(self.total)) as f64 } else { f64::NAN };
        format!(
            "{:<10} [{}{}] {done}/{} {:>5.1}%  {:.1}/s  elapsed {}  ETA {}",
            self.what,
            "█".repeat(filled),
            "·".repeat(width - filled.min(width)),
            self.total,
            frac * 100.0,
            done as f64 / secs.max(1e-9),
            fmt_secs(secs),
            if eta.is_finite() { fmt_secs(eta) } else { "?".into() }
        )
    }

    pub fn finish(&self) {
        let done = self.state.lock().map(|s| s.0).unwrap_or(self.total);
        eprintln!("{}{}", if self.tty { "\r" } else { "" }, self.line(done));
    }
}

