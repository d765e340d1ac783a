//! Progress of long work: a terminal bar with rate and ETA ([`Progress`]), and the lines a job
//! run in a child process writes instead.
//!
//! Progress of a job run in a child process (`sam3d-studio-engine train` or `eval` started by
//! the viewer): with [`PROGRESS_ENV`]`=lines` the command-line progress bar writes one
//! [`progress_line`] per update to stderr instead of redrawing a terminal bar, and the viewer
//! reads them back with [`parse_progress_line`].

mod bar;
pub use bar::Progress;

/// The environment variable that asks for progress lines (value `lines`).
pub const PROGRESS_ENV: &str = "SAM3D_PROGRESS";

/// `progress WHAT DONE TOTAL`: one update for a program reading stderr.
pub fn progress_line(what: &str, done: u64, total: u64) -> String {
    format!("progress {what} {done} {total}")
}

/// Reads a [`progress_line`] back: (what, done, total).
pub fn parse_progress_line(line: &str) -> Option<(&str, u64, u64)> {
    let mut it = line.trim_end().strip_prefix("progress ")?.split(' ');
    let (what, done, total) = (it.next()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
    it.next().is_none().then_some((what, done, total))
}

/// Seconds as `1m05s`, or `2h03m` from an hour on (elapsed times and ETAs).
pub fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 { format!("{}h{:02}m", s / 3600, (s % 3600) / 60) } else { format!("{}m{:02}s", s / 60, s % 60) }
}

/// Makes a closed standard output (the command piped into `head`, say) end the program quietly
/// with status 141, as a shell reports SIGPIPE, instead of a panic and a backtrace: Rust ignores
/// SIGPIPE, so `println!` to a closed pipe panics. Call first in `main`.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info.payload().downcast_ref::<String>().map(String::as_str).or_else(|| info.payload().downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info)
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_reads_back() {
        assert_eq!(parse_progress_line(&progress_line("train", 3, 10)), Some(("train", 3, 10)));
        assert_eq!(parse_progress_line("progress eval 12 24\n"), Some(("eval", 12, 24)));
        for bad in ["progress train 3", "progress train x 10", "progress train 1 2 3", "train 1 2", "warning: progress 1 2"] {
            assert_eq!(parse_progress_line(bad), None, "{bad}");
        }
    }

    #[test]
    fn seconds_read_as_minutes_or_hours() {
        assert_eq!(fmt_secs(65.4), "1m05s");
        assert_eq!(fmt_secs(7380.0), "2h03m");
        assert_eq!(fmt_secs(-3.0), "0m00s");
    }
}

