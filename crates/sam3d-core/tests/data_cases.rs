//! DICOM cases in data folders (`data::cases`): a series with its DICOM SEG and a series with
//! its RTSTRUCT read exactly as the same cases given as NIfTI (SimpleITK's reading of the
//! series and label maps computed by `tests/oracle/dicom_case_fixtures.py`: the test needs no
//! Python), the pairing rules for folders, and what is refused, naming the case.

use sam3d_core::data::cases::{CasePair, LoadedCase, find_pairs};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom_cases")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data().join("expected.json")).expect("expected.json")).expect("json")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn load(pair: &CasePair) -> LoadedCase {
    pair.load().unwrap_or_else(|e| panic!("{}: {e}", pair.name))
}

fn nifti(case: &str) -> LoadedCase {
    let pairs = find_pairs(&data().join("nifti")).expect("NIfTI pairs");
    load(pairs.iter().find(|p| p.name == case).expect("the NIfTI twin"))
}

fn names_of(c: &LoadedCase) -> Vec<(u16, String)> {
    c.names.as_ref().expect("names").0.iter().map(|(id, (n, _))| (*id, n.clone())).collect()
}

/// Voxels, values, grid and names of a DICOM case equal its NIfTI twin's.
fn assert_twins(dicom: &LoadedCase, case: &str) {
    let e = expected();
    let twin = nifti(case);
    assert_eq!(dicom.labels.data, twin.labels.data, "{case}: labels differ from the NIfTI twin's");
    assert_eq!(dicom.volume.data, twin.volume.data, "{case}: HU differ from SimpleITK's");
    let (a, b) = (dicom.volume.ras_from_voxel.matrix(), twin.volume.ras_from_voxel.matrix());
    let d = (a - b).amax();
    assert!(d < 1e-4, "{case}: RAS affine differs from SimpleITK's by {d}");
    assert!((dicom.labels.ras_from_voxel.matrix() - a).amax() < 1e-4, "{case}: labels on the scan's grid");
    for (label, n) in e[case]["voxels"].as_object().expect("voxels") {
        let label: u16 = label.parse().expect("id");
        let want = n.as_u64().expect("count") as usize;
        assert!(want > 100, "{case}: a fixture label too small to mean anything");
        assert_eq!(dicom.labels.data.iter().filter(|&&l| l == label).count(), want, "{case}: label {label}");
    }
    assert_eq!(names_of(dicom), vec![(1, "Liver".to_string()), (2, "Kidney".to_string())], "{case}: names");
    assert_eq!(names_of(dicom), names_of(&twin));
}

#[test]
fn dicom_case_folders_read_as_their_nifti_twins() {
    let dicom = data().join("dicom");
    let pairs = find_pairs(&dicom).expect("DICOM case folders");
    assert_eq!(
        pairs,
        vec![
            CasePair { name: "rt_case".into(), image: dicom.join("rt_case"), labels: dicom.join("rt_case/rtstruct.dcm") },
            CasePair { name: "seg_case".into(), image: dicom.join("seg_case"), labels: dicom.join("seg_case/seg.dcm") },
        ]
    );
    for p in &pairs {
        let c = load(p);
        assert_twins(&c, &p.name);
        assert_eq!(c.names.as_ref().map(|n| n.1.clone()), Some(p.labels.clone()), "names from the labels' own file");
    }
    // The case folder given as the data folder: one case, named after it.
    let one = find_pairs(&dicom.join("seg_case")).expect("the folder itself");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].name, "seg_case");
}

#[test]
fn a_dicom_folder_pairs_with_labels_beside_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let d = tmp.path();
    copy_dir(&data().join("dicom/seg_case/ct"), &d.join("abdomen"));
    std::fs::copy(data().join("nifti/seg_case_labels.nii.gz"), d.join("abdomen_labels.nii.gz")).expect("copy");
    std::fs::copy(data().join("nifti/seg_case_labels.tsv"), d.join("abdomen_labels.tsv")).expect("copy");
    copy_dir(&data().join("dicom/rt_case/ct"), &d.join("pelvis"));
    std::fs::copy(data().join("dicom/rt_case/rtstruct.dcm"), d.join("pelvis_labels.dcm")).expect("copy");
    let pairs = find_pairs(d).expect("pairs");
    assert_eq!(pairs.iter().map(|p| (p.name.as_str(), p.image.clone())).collect::<Vec<_>>(), vec![("abdomen", d.join("abdomen")), ("pelvis", d.join("pelvis"))]);
    assert_twins(&load(&pairs[0]), "seg_case");
    // The RTSTRUCT beside the folder is drawn on the series in it.
    assert_twins(&load(&pairs[1]), "rt_case");
}

#[test]
fn several_series_are_refused_with_their_list_unless_the_labels_name_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let case = tmp.path().join("study");
    copy_dir(&data().join("dicom/seg_case/ct"), &case.join("series_a"));
    copy_dir(&data().join("dicom/rt_case/ct"), &case.join("series_b"));
    std::fs::copy(data().join("dicom/seg_case/seg.dcm"), case.join("seg.dcm")).expect("copy");
    // The SEG references the seg_case series: that one is read.
    let pairs = find_pairs(tmp.path()).expect("pairs");
    assert_eq!(pairs.len(), 1);
    assert_twins(&load(&pairs[0]), "seg_case");
    // The RTSTRUCT references the rt_case series.
    std::fs::remove_file(case.join("seg.dcm")).expect("rm");
    std::fs::copy(data().join("dicom/rt_case/rtstruct.dcm"), case.join("rtstruct.dcm")).expect("copy");
    assert_twins(&load(&find_pairs(tmp.path()).expect("pairs")[0]), "rt_case");
    // A label map names no series: refused, naming the case and the folder and listing both.
    std::fs::remove_file(case.join("rtstruct.dcm")).expect("rm");
    std::fs::copy(data().join("nifti/seg_case_labels.nii.gz"), case.join("labels.nii.gz")).expect("copy");
    let pairs = find_pairs(tmp.path()).expect("pairs");
    let e = pairs[0].load().expect_err("which series?").to_string();
    assert!(e.starts_with("case study: ") && e.contains(&case.display().to_string()), "{e}");
    assert!(e.contains("holds 2 image series and its labels (labels.nii.gz) name none") && e.contains("\"seg_case CT\"") && e.contains("\"rt_case CT\""), "{e}");
}

#[test]
fn ambiguous_or_broken_cases_are_refused_naming_the_case() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Two labels objects in one case folder.
    let both = tmp.path().join("both");
    copy_dir(&data().join("dicom/seg_case"), &both);
    std::fs::copy(data().join("dicom/rt_case/rtstruct.dcm"), both.join("rtstruct.dcm")).expect("copy");
    let e = find_pairs(tmp.path()).expect_err("two labels").to_string();
    assert!(e.contains("case both") && e.contains("seg.dcm (DICOM SEG)") && e.contains("rtstruct.dcm (RTSTRUCT)"), "{e}");
    std::fs::remove_dir_all(&both).expect("rm");
    // An RTSTRUCT whose series is not in its case folder.
    let mixed = tmp.path().join("mixed");
    copy_dir(&data().join("dicom/seg_case/ct"), &mixed.join("ct"));
    std::fs::copy(data().join("dicom/rt_case/rtstruct.dcm"), mixed.join("rtstruct.dcm")).expect("copy");
    // A DICOM folder without labels is left out (with a warning), not a case.
    copy_dir(&data().join("dicom/rt_case/ct"), &tmp.path().join("unlabelled"));
    let pairs = find_pairs(tmp.path()).expect("pairs");
    assert_eq!(pairs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["mixed"]);
    let e = pairs[0].load().expect_err("another series").to_string();
    let uid = expected()["rt_case"]["series_uid"].as_str().expect("uid").to_string();
    assert!(e.starts_with("case mixed: ") && e.contains("rtstruct.dcm") && e.contains(&format!("references series {uid}, which is not under")), "{e}");
}
