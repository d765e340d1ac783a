//! `sam3d-studio info` on DICOM: a folder of several series is listed (the localiser marked),
//! `--series` describes one, by number or by listing index, with the same geometry as the
//! reader gives; `--series` on a NIfTI file is refused by name.

#[path = "common/dicom.rs"]
mod dicom;
use sam3d_studio::volume::OnGrid;
use std::path::PathBuf;
use std::process::Command;

fn info(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_sam3d-studio")).arg("info").args(args).output().expect("runs");
    (o.status.success(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}



#[test]
fn a_study_folder_is_listed_and_one_series_described() {
    let dir = tempfile::tempdir().expect("tmp");
    let study = dir.path().join("study");
    dicom::copy_dir(&dicom::fixture("axial"), &study.join("a"));
    dicom::copy_dir(&dicom::fixture("coronal"), &study.join("c"));
    dicom::copy_dir(&dicom::fixture("localizer"), &study.join("l"));
    let s = study.to_str().expect("utf-8");
    let (ok, out, err) = info(&[s]);
    assert!(ok, "{err}");
    assert!(out.contains("3 series (2 image series that can be opened)"), "{out}");
    assert!(out.contains("series 3") && out.contains("series 8") && out.contains("[localiser]"), "{out}");
    let (ok, out, err) = info(&[s, "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["series"].as_array().map(Vec::len), Some(3));

    let want = sam3d_studio::volume::open(&dicom::fixture("axial")).expect("axial");
    let mut described = 0;
    for pick in ["3", "#1", "#2", "#3"] {
        // Every listed image object opens by its index, the localiser too (it is marked, not hidden).
        let (ok, out, err) = info(&[s, "--series", pick, "--json"]);
        assert!(ok, "{pick}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        if v["series"]["series_number"] == 3 {
            let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).expect("shape");
            assert_eq!(shape, want.shape().ijk().to_vec(), "{pick}");
            let aff: [[f64; 4]; 4] = serde_json::from_value(v["affine"].clone()).expect("affine");
            let want_rows = want.ras_from_voxel.rows();
            assert!((0..4).all(|r| (0..4).all(|c| (aff[r][c] - want_rows[r][c]).abs() < 1e-9)), "{pick}: {aff:?}");
            described += 1;
        }
    }
    assert_eq!(described, 2, "series 3 by number and by its index");
    let nii = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo/ct.nii.gz");
    let (ok, _, err) = info(&[nii.to_str().expect("utf-8"), "--series", "2"]);
    assert!(!ok && err.contains("ct.nii.gz") && err.contains("--series 2"), "{err}");
}
