//! `sam3d-studio convert`: a DICOM series to NRRD and NIfTI, a label map with names to a Slicer
//! `.seg.nrrd` and back to NIfTI + `.tsv`, each read back identically; bad requests name the
//! problem and write nothing.

use ndarray::Array3;
use sam3d_studio::geometry::RasFromVoxel;
use sam3d_studio::volume::LabelMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn convert(args: &[&Path], extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sam3d-studio")).arg("convert").args(args).args(extra).output().expect("runs")
}

fn dicom_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/sam3d-core/tests/data/dicom").join(name)
}

#[test]
fn a_dicom_series_converts_to_nrrd_and_nifti_unchanged() {
    let dir = tempfile::tempdir().expect("tmp");
    let series = dicom_fixture("oblique");
    let want = sam3d_studio::volume::open(&series).expect("series");
    for name in ["ct.nrrd", "ct.nii.gz", "ct.mha"] {
        let out = dir.path().join(name);
        let o = convert(&[&series, &out], &[]);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let got = sam3d_studio::volume::open(&out).expect("reads back");
        assert_eq!(got.data, want.data, "{name}");
        assert!(got.ras_from_voxel.max_abs_diff(&want.ras_from_voxel) < 1e-5, "{name}: {:?} vs {:?}", got.ras_from_voxel, want.ras_from_voxel);
    }
}

#[test]
fn a_label_map_keeps_its_names_through_seg_nrrd_and_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let aff = RasFromVoxel::scale_translate([0.8, 0.8, 2.5], [-10.0, 20.0, 30.0]);
    let l = LabelMap::new(Array3::from_shape_fn((4, 6, 5), |(k, j, _)| if j > 1 { k as u16 } else { 0 }), aff).expect("labels");
    let src = dir.path().join("organs.nii.gz");
    l.save(&src).expect("save");
    std::fs::write(dir.path().join("organs.tsv"), "1\tliver\t200 80 60\n2\tleft kidney\t90 200 30\n3\tspleen\n").expect("tsv");
    let seg = dir.path().join("organs.seg.nrrd");
    let o = convert(&[&src, &seg], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("names kept"));
    let back = sam3d_studio::volume::open_labels(&seg).expect("seg reads");
    assert_eq!(back.data, l.data);
    let (names, _) = sam3d_studio::volume::label_names::names_beside(&seg).expect("readable").expect("names");
    assert_eq!(names.get(&2).map(|n| n.0.as_str()), Some("left kidney"));
    assert_eq!(names.get(&1).and_then(|n| n.1), Some([200, 80, 60]));
    // And back to NIfTI, the names in a .tsv beside it.
    let nii = dir.path().join("again.nii.gz");
    let o = convert(&[&seg, &nii], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sam3d_studio::volume::open_labels(&nii).expect("nifti").data, l.data);
    let tsv = std::fs::read_to_string(dir.path().join("again.tsv")).expect("tsv beside");
    assert!(tsv.contains("2\tleft kidney\t90 200 30"), "{tsv}");
}

#[test]
fn bad_requests_name_the_problem_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let series = dicom_fixture("axial");
    for (out, extra, says) in [
        (dir.path().join("x.png"), vec![], "output must end in"),
        (dir.path().join("missing/x.nrrd"), vec![], "does not exist"),
        (dir.path().join("x.nrrd"), vec!["--series", "#7"], "#7"),
    ] {
        let o = convert(&[&series, &out], &extra);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success() && err.contains(says), "{}: {err}", out.display());
        assert!(!out.exists());
    }
}
