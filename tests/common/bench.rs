//! Helpers shared by the benchmarks (ignored tests): process counters from /proc, medians, and
//! label centroids for the clicks.
#![allow(dead_code)]

use sam3d_studio::geometry::{RasMm, VoxelIjk};
use sam3d_studio::volume::LabelMap;

/// A `/proc/self/status` field (e.g. `VmHWM:`), as written there.
pub fn vm(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// User + system CPU seconds of process `pid` ("self" for this one), all threads, from /proc.
pub fn cpu_secs_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ')'; clock ticks of 10 ms.
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Centroid (RAS) of label `l`.
pub fn centroid(labels: &LabelMap, l: u16) -> Option<RasMm> {
    let (mut s, mut n) = ([0f64; 3], 0usize);
    for ((k, j, i), &x) in labels.data.indexed_iter() {
        if x == l {
            s[0] += i as f64;
            s[1] += j as f64;
            s[2] += k as f64;
            n += 1;
        }
    }
    (n > 0).then(|| labels.ras_from_voxel.apply(VoxelIjk::new(s[0] / n as f64, s[1] / n as f64, s[2] / n as f64)))
}
