//! The NIfTI reader against nibabel's reading of tricky files (tests/data/nifti_cases/facts.json,
//! written by tests/oracle/make_nifti_cases.py) and of the real abdominal CT.

use sam3d_studio::geometry::{GridShape, VoxelIjk, axcodes, reorient_to_canonical_affine};
use sam3d_studio::volume::{OnGrid, read_info};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn assert_affine(name: &str, got: [[f64; 4]; 4], want: &Value, tol: f64) {
    for r in 0..4 {
        for c in 0..4 {
            let w = f(&want[r][c]);
            assert!((got[r][c] - w).abs() <= tol, "{name}: affine[{r}][{c}] = {} but nibabel says {w}", got[r][c]);
        }
    }
}

#[test]
fn matches_nibabel_on_every_tricky_case() {
    let dir = data_dir().join("nifti_cases");
    let facts: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("facts.json")).expect("facts")).expect("json");
    let cases = facts["cases"].as_object().expect("cases");
    assert!(cases.len() >= 15);
    for (name, c) in cases {
        let path = dir.join(c["file"].as_str().expect("file"));
        let info = read_info(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let shape: Vec<usize> = c["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("u") as usize).collect();
        assert_eq!(info.shape.ijk().to_vec(), shape[..3].to_vec(), "{name}: shape");
        assert_eq!(info.frames, c["frames"].as_u64().expect("frames"), "{name}: frames");
        assert_eq!(info.dtype.name(), c["dtype"].as_str().expect("dtype"), "{name}: dtype");
        assert_eq!(info.header.sform_code as u64, c["sform_code"].as_u64().expect("code"), "{name}");
        assert_eq!(info.header.qform_code as u64, c["qform_code"].as_u64().expect("code"), "{name}");
        // qform quaternions are float32 in the header: nibabel computes in float32, we in f64.
        assert_affine(name, info.ras_from_voxel.rows(), &c["affine"], 2e-5);
        let codes: String = axcodes(&info.ras_from_voxel).iter().collect();
        assert_eq!(codes, c["axcodes"].as_str().expect("axcodes"), "{name}: axcodes");
        if info.frames > 1 {
            let e = sam3d_studio::volume::open(&path).expect_err("multi-frame 4D must be refused");
            assert!(e.to_string().contains("4D file with 3 frames"), "{name}: {e}");
            continue;
        }
        let v = sam3d_studio::volume::open(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let st = v.stats();
        for (key, got) in [("min", st.min), ("max", st.max), ("mean", st.mean)] {
            let want = f(&c[key]);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{name}: {key} {got} vs nibabel {want}");
        }
        for s in c["samples"].as_array().expect("samples") {
            let ijk: Vec<usize> = s["ijk"].as_array().expect("ijk").iter().map(|x| x.as_u64().expect("u") as usize).collect();
            let got = v.data[[ijk[2], ijk[1], ijk[0]]] as f64;
            let want = f(&s["value"]);
            assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{name}: value at {ijk:?} {got} vs {want}");
            let ras = v.ras_from_voxel.apply(VoxelIjk::new(ijk[0] as f64, ijk[1] as f64, ijk[2] as f64));
            for a in 0..3 {
                assert!((ras.v[a] - f(&s["ras"][a])).abs() < 1e-4, "{name}: RAS of {ijk:?}");
            }
            // And back: the RAS point lands on the same voxel.
            let back = v.index_of_ras(ras).expect("inside");
            assert_eq!(back.as_kji(), [ijk[2], ijk[1], ijk[0]], "{name}: RAS → voxel");
        }
        // Canonical reorientation agrees with nibabel's as_closest_canonical.
        let can = &c["canonical"];
        let (aff, shape, old_from_new) = reorient_to_canonical_affine(&v.ras_from_voxel, v.shape());
        let cs: Vec<usize> = can["shape"].as_array().expect("s").iter().map(|x| x.as_u64().expect("u") as usize).collect();
        assert_eq!(shape, GridShape::new(cs[0], cs[1], cs[2]), "{name}: canonical shape");
        assert_affine(name, aff.rows(), &can["affine"], 2e-5);
        let ijk: Vec<f64> = can["sample"]["ijk"].as_array().expect("ijk").iter().map(f).collect();
        let old = old_from_new.apply(VoxelIjk::new(ijk[0], ijk[1], ijk[2]));
        let idx = v.shape().array_index(old).expect("inside");
        let want = f(&can["sample"]["value"]);
        assert!((v.data[idx.as_kji()] as f64 - want).abs() <= 1e-4 * want.abs().max(1.0), "{name}: canonical sample");
        // And the reoriented data itself.
        let cv = v.to_canonical();
        assert_eq!(cv.shape(), shape);
        let got = cv.data[[ijk[2] as usize, ijk[1] as usize, ijk[0] as usize]] as f64;
        assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{name}: canonical data {got} vs {want}");
        assert!(cv.ras_from_voxel.max_abs_diff(&aff) < 1e-12);
    }
}

#[test]
fn matches_nibabel_on_the_real_ct() {
    matches_nibabel_on_real_scan("ct_abdomen", "assets/demo", 2);
}

/// The real MR is LPS with only an sform: both axes flip on the way to RAS.
#[test]
fn matches_nibabel_on_the_real_mr() {
    matches_nibabel_on_real_scan("mr_abdomen", "assets/mr", 2);
}

/// The scan and label map in `assets` against `tests/data/<facts>/nibabel_facts.json`; `files`:
/// how many of them the facts must name (so a renamed file cannot skip the test).
fn matches_nibabel_on_real_scan(facts_dir: &str, assets: &str, files: usize) {
    let dir = data_dir().join(facts_dir);
    let facts: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("nibabel_facts.json")).expect("facts")).expect("json");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join(assets);
    let mut checked = 0;
    for (file, c) in facts.as_object().expect("obj") {
        let path = demo.join(file);
        if !path.exists() || !file.ends_with(".nii.gz") {
            continue;
        }
        checked += 1;
        let v = sam3d_studio::volume::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let shape: Vec<usize> = c["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("u") as usize).collect();
        assert_eq!(v.shape().ijk().to_vec(), shape);
        assert_affine(file, v.ras_from_voxel.rows(), &c["affine"], 1e-6);
        let codes: String = axcodes(&v.ras_from_voxel).iter().collect();
        let want_codes: String = c["axcodes"].as_array().expect("codes").iter().map(|x| x.as_str().expect("s")).collect();
        assert_eq!(codes, want_codes);
        let st = v.stats();
        assert_eq!(st.min, f(&c["min"]));
        assert_eq!(st.max, f(&c["max"]));
        assert!((st.mean - f(&c["mean"])).abs() < 1e-6 * f(&c["mean"]).abs().max(1.0), "{} vs {}", st.mean, c["mean"]);
        for s in c["samples"].as_array().expect("samples") {
            let ijk: Vec<usize> = s["ijk"].as_array().expect("ijk").iter().map(|x| x.as_u64().expect("u") as usize).collect();
            assert_eq!(v.data[[ijk[2], ijk[1], ijk[0]]] as f64, f(&s["value"]), "{file} at {ijk:?}");
            let ras = v.ras_from_voxel.apply(VoxelIjk::new(ijk[0] as f64, ijk[1] as f64, ijk[2] as f64));
            for a in 0..3 {
                assert!((ras.v[a] - f(&s["ras"][a])).abs() < 1e-4);
            }
        }
    }
    assert_eq!(checked, files, "{assets}: files named in {facts_dir}'s facts");
}
