//! Resampling against SimpleITK (tests/oracle/make_resample_ref.py wrote the reference): a
//! volume on an oblique, anisotropic grid resampled onto another oblique grid, linear and
//! nearest. Compared where the output voxel's centre lies strictly inside the source's voxel
//! centres (at the border ITK and this code pad differently); that is 246 of the 693 voxels.

use ndarray::Array3;
use sam3d_studio::geometry::{GridShape, RasFromVoxel};
use sam3d_studio::volume::{Interp, Volume, resample_to_grid};
use serde_json::Value;

fn affine(v: &Value) -> RasFromVoxel {
    let rows: [[f64; 4]; 4] = serde_json::from_value(v.clone()).expect("4×4 rows");
    RasFromVoxel::from_rows(rows).expect("affine")
}

fn shape(v: &Value) -> [usize; 3] {
    serde_json::from_value(v.clone()).expect("shape")
}

#[test]
fn oblique_resampling_matches_simpleitk() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/oracle/resample.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("reference")).expect("json");
    let [k, j, i] = shape(&r["src_shape_kji"]);
    let values: Vec<f32> = serde_json::from_value(r["src_values"].clone()).expect("values");
    let src = Volume::new(Array3::from_shape_vec((k, j, i), values).expect("shape"), affine(&r["src_ras_from_voxel"])).expect("volume");
    let dst_shape = GridShape::from_array_shape(&shape(&r["dst_shape_kji"]));
    let dst = affine(&r["dst_ras_from_voxel"]);
    let inside: Vec<bool> = serde_json::from_value(r["inside"].clone()).expect("inside");
    assert_eq!(inside.iter().filter(|&&b| b).count(), 246);
    for (interp, key, tol) in [(Interp::Linear, "linear", 1e-3), (Interp::Nearest, "nearest", 0.0)] {
        let want: Vec<f32> = serde_json::from_value(r[key].clone()).expect("output");
        let got = resample_to_grid(&src, dst_shape, &dst, interp, -1000.0);
        let got = got.data.as_standard_layout();
        let got = got.as_slice().expect("contiguous");
        assert_eq!(got.len(), want.len());
        let mut worst = 0.0f32;
        for (n, ((g, w), ok)) in got.iter().zip(&want).zip(&inside).enumerate() {
            if *ok {
                let d = (g - w).abs();
                assert!(d <= tol as f32 * w.abs().max(1.0), "{key}: voxel {n}: {g} here, SimpleITK {w}");
                worst = worst.max(d);
            }
        }
        eprintln!("{key}: worst difference {worst}");
    }
}
