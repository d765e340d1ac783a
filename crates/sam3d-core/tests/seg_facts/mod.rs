//! What an oracle script wrote about its SEG fixtures (`tests/data/<folder>/expected.json`),
//! shared by the SEG oracle tests.

use ndarray::Array3;
use sam3d_core::volume::LabelMap;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `tests/data/<folder>` of this crate.
pub fn data(folder: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(folder)
}

/// The folder's `expected.json`.
pub fn expected(folder: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(data(folder).join("expected.json")).expect("expected.json")).expect("json")
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

/// The label map `[k, j, i]` a case's voxel list describes.
pub fn labels_of(voxels: &Value, shape: &Value) -> Array3<u16> {
    let s: Vec<usize> = shape.as_array().expect("shape").iter().map(|x| x.as_u64().expect("n") as usize).collect();
    let mut out = Array3::zeros((s[0], s[1], s[2]));
    for v in voxels.as_array().expect("voxels") {
        let v: Vec<u64> = v.as_array().expect("voxel").iter().map(|x| x.as_u64().expect("n")).collect();
        out[[v[0] as usize, v[1] as usize, v[2] as usize]] = v[3] as u16;
    }
    out
}

/// The largest difference between our RAS affine and the oracle's (4×4 rows).
pub fn affine_diff(labels: &LabelMap, want: &Value) -> f64 {
    let rows = want.as_array().expect("affine");
    let m = labels.ras_from_voxel.matrix();
    (0..3).flat_map(|r| (0..4).map(move |c| (r, c))).map(|(r, c)| (m[(r, c)] - f(&rows[r][c])).abs()).fold(0.0, f64::max)
}
