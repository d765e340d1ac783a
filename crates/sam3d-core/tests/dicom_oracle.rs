//! The DICOM reader against SimpleITK/GDCM and pydicom: the fixtures and their expectations
//! (`tests/data/dicom/expected.json`) are written by `tests/oracle/dicom_fixtures.py`, so these
//! tests need no Python. Each compares the shape, the RAS affine (1e-4 mm), voxel values, and
//! that voxel (0, 0, k) lands at slice k's ImagePositionPatient (in RAS).

use sam3d_core::geometry::VoxelIjk;
use sam3d_core::volume::dicom::{SeriesChoice, SeriesKind, list_series, open_series};
use sam3d_core::volume::{AffineSource, Volume, open};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

/// Compares a volume with one case's facts; `tol` is the voxel value tolerance.
fn check(case: &str, v: &Volume, facts: &Value, tol: f64) {
    let shape: Vec<usize> = facts["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("u") as usize).collect();
    assert_eq!(v.data.shape(), shape.as_slice(), "{case}: shape");
    let rows = v.ras_from_voxel.rows();
    for (r, row) in facts["ras_affine"].as_array().expect("affine").iter().enumerate() {
        for (c, x) in row.as_array().expect("row").iter().enumerate() {
            assert!((rows[r][c] - f(x)).abs() < 1e-4, "{case}: affine[{r}][{c}] = {} want {}\n{:?}", rows[r][c], f(x), v.ras_from_voxel);
        }
    }
    for s in facts["voxels"].as_array().expect("voxels") {
        let s = s.as_array().expect("sample");
        let (k, j, i) = (s[0].as_u64().expect("k") as usize, s[1].as_u64().expect("j") as usize, s[2].as_u64().expect("i") as usize);
        let got = v.data[[k, j, i]] as f64;
        assert!((got - f(&s[3])).abs() <= tol, "{case}: voxel [{k},{j},{i}] = {got}, SimpleITK {}", f(&s[3]));
    }
    if let Some(ipps) = facts.get("ipp_ras").and_then(|x| x.as_array()) {
        for (k, p) in ipps.iter().enumerate() {
            let p: Vec<f64> = p.as_array().expect("ipp").iter().map(f).collect();
            let c = v.ras_from_voxel.apply(VoxelIjk::new(0.0, 0.0, k as f64));
            let d = ((c.x() - p[0]).powi(2) + (c.y() - p[1]).powi(2) + (c.z() - p[2]).powi(2)).sqrt();
            assert!(d < 1e-4, "{case}: voxel (0,0,{k}) at {c:?}, the file's IPP is {p:?} RAS");
        }
    }
}

#[test]
fn every_written_series_reads_as_simpleitk_reads_it() {
    let e = expected();
    let cases = [
        "axial", "oblique", "sagittal", "coronal", "implicit", "bigendian", "deflate", "jpeg_lossless", "j2k_lossless", "rle",
        "jpeg_baseline", "j2k", "tilt", "uneven", "enhanced_ct",
    ];
    for case in cases {
        let facts = &e[case];
        let v = open(&data().join(case)).unwrap_or_else(|err| panic!("{case}: {err}"));
        let lossy = facts.get("lossy").and_then(|x| x.as_bool()).unwrap_or(false);
        check(case, &v, facts, if lossy { 2.0 } else { 1e-3 });
        assert_eq!(v.meta.affine_source, Some(AffineSource::Dicom));
    }
}

#[test]
fn one_file_opens_its_whole_series() {
    let dir = data().join("oblique");
    let file = std::fs::read_dir(&dir).expect("dir").next().expect("a file").expect("entry").path();
    let a = open(&file).expect("from a file");
    let b = open(&dir).expect("from the folder");
    assert_eq!(a.data, b.data);
    assert!(a.ras_from_voxel.max_abs_diff(&b.ras_from_voxel) < 1e-12);
}

#[test]
fn window_and_description_are_kept() {
    let e = expected();
    for case in ["axial", "enhanced_ct"] {
        let v = open(&data().join(case)).expect(case);
        let w: Vec<f64> = e[case]["window"].as_array().expect("window").iter().map(f).collect();
        assert_eq!(v.meta.window, Some((w[0], w[1])), "{case}");
    }
    let v = open(&data().join("axial")).expect("axial");
    assert_eq!(v.meta.description, "series 3: Axial 2.5mm");
}

#[test]
fn tilt_and_uneven_spacing_are_warned_about_in_the_listing() {
    let tilt = list_series(&data().join("tilt")).expect("tilt");
    assert!(tilt[0].warnings.iter().any(|w| w.contains("gantry tilt of 15.00°")), "{:?}", tilt[0].warnings);
    // SimpleITK steps along the normal: its voxel (0,0,1) is not at the second slice.
    let e = expected();
    let sitk_k = f(&e["tilt"]["sitk"]["ras_affine"][1][2]);
    assert!((sitk_k - f(&e["tilt"]["ras_affine"][1][2])).abs() > 0.5, "the fixture must tell the two apart");
    let uneven = list_series(&data().join("uneven")).expect("uneven");
    assert!(uneven[0].warnings.iter().any(|w| w.contains("uneven slice spacing between")), "{:?}", uneven[0].warnings);
}

#[test]
fn a_missing_slice_and_mixed_orientations_are_refused_by_name() {
    let e = open(&data().join("missing")).expect_err("missing").to_string();
    assert!(e.contains("series 11 \"Missing one\"") && e.contains("missing slice(s) between") && e.contains("UID "), "{e}");
    assert!(e.contains("(0.000, 0.000, 2.000) LPS") && e.contains("(0.000, 0.000, 6.000) LPS"), "{e}");
    let e = open(&data().join("mixed")).expect_err("mixed").to_string();
    assert!(e.contains("series 12 \"Mixed\"") && e.contains("mixes orientations or sizes") && e.contains("--series #"), "{e}");
    // One part can still be opened by its listing index.
    let list = list_series(&data().join("mixed")).expect("list");
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s.part.1 == 2 && s.problem.is_some()));
    let part = list.iter().find(|s| s.slices == 3).expect("the axial part");
    let v = open_series(&data().join("mixed"), &SeriesChoice::Index(part.index)).expect("a part");
    assert_eq!(v.data.shape(), &[3, 10, 8]);
}

/// A folder with two image series, a localiser and a structured report.
fn several() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for (from, to) in [("axial", "a/b"), ("oblique", "c"), ("localizer", "a/scout"), ("pydicom/test-SR", "sr")] {
        let dst = dir.path().join(to);
        std::fs::create_dir_all(&dst).expect("mkdir");
        for entry in std::fs::read_dir(data().join(from)).expect("dir") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, dst.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    dir
}

#[test]
fn several_series_are_listed_and_one_is_chosen() {
    let dir = several();
    let list = list_series(dir.path()).expect("list");
    let kind = |k: SeriesKind| list.iter().filter(|s| s.kind == k).count();
    assert_eq!([kind(SeriesKind::Image), kind(SeriesKind::Localizer), kind(SeriesKind::NonImage)], [2, 1, 1], "{list:#?}");
    assert!(list.iter().enumerate().all(|(n, s)| s.index == n + 1));
    let axial = list.iter().find(|s| s.description == "Axial 2.5mm").expect("axial");
    assert_eq!((axial.series_number, axial.cols, axial.rows, axial.slices), (Some(3), 8, 10, 5));
    assert_eq!(axial.patient_name, "Test Phantom");
    assert_eq!(axial.axcodes.as_deref(), Some("LPS"));
    let sp = axial.spacing.expect("spacing");
    assert!((sp[0] - 0.8).abs() < 1e-9 && (sp[1] - 0.7).abs() < 1e-9 && (sp[2] - 2.5).abs() < 1e-9, "{sp:?}");

    let e = open(dir.path()).expect_err("two image series").to_string();
    assert!(e.contains("holds 2 image series") && e.contains("--series") && e.contains("\"Axial 2.5mm\"") && e.contains("\"Oblique MR\""), "{e}");
    assert!(e.contains("8×10×5"), "{e}");

    let v = open_series(dir.path(), &"3".parse().expect("number")).expect("series 3");
    check("axial", &v, &expected()["axial"], 1e-3);
    let oblique = list.iter().find(|s| s.description == "Oblique MR").expect("oblique");
    let v = open_series(dir.path(), &SeriesChoice::Uid(oblique.series_uid.clone())).expect("by UID");
    check("oblique", &v, &expected()["oblique"], 1e-3);
    let scout = list.iter().find(|s| s.kind == SeriesKind::Localizer).expect("scout");
    let v = open_series(dir.path(), &format!("#{}", scout.index).parse().expect("index")).expect("the localiser");
    assert_eq!(v.data.shape(), &[1, 10, 8]);
    let report = list.iter().find(|s| s.kind == SeriesKind::NonImage).expect("report");
    let e = open_series(dir.path(), &SeriesChoice::Number(99)).expect_err("no such").to_string();
    assert!(e.contains("no series matches --series 99"), "{e}");
    let e = open_series(dir.path(), &SeriesChoice::Index(report.index)).expect_err("the report").to_string();
    assert!(e.contains("non-image"), "{e}");
}

#[test]
fn one_image_series_opens_past_localisers_and_reports() {
    let dir = several();
    std::fs::remove_dir_all(dir.path().join("c")).expect("drop the oblique series");
    let v = open(dir.path()).expect("the one image series");
    check("axial", &v, &expected()["axial"], 1e-3);
}

#[test]
fn pydicom_test_files_read_as_simpleitk_and_pydicom_read_them() {
    let e = expected();
    let mut compared = 0;
    for (name, facts) in e.as_object().expect("object") {
        let Some(rel) = name.strip_prefix("pydicom/") else { continue };
        let path = data().join("pydicom").join(rel);
        if facts.get("non_image").is_some() {
            let err = open(&path).expect_err("a report").to_string();
            assert!(err.contains("non-image"), "{name}: {err}");
            continue;
        }
        let ts = facts["transfer_syntax"].as_str().expect("ts");
        if ts == "1.2.840.10008.1.2.4.80" {
            // JPEG-LS needs CharLS (a C++ library): named and refused.
            let err = open(&path).expect_err("JPEG-LS").to_string();
            assert!(err.contains("JPEG-LS") && err.contains(ts), "{name}: {err}");
            continue;
        }
        if ts == "1.2.840.10008.1.2.4.51" {
            // 12-bit JPEG extended: jpeg-decoder (and pydicom's plugins) cannot; GDCM can.
            let err = open(&path).expect_err("12-bit JPEG").to_string();
            assert!(err.contains("cannot decode frame 0") && err.contains("JPEG-lossy.dcm"), "{name}: {err}");
            continue;
        }
        let v = open(&path).unwrap_or_else(|err| panic!("{name}: {err}"));
        check(name, &v, facts, if name.contains("lossy") || ts.ends_with(".91") { 2.0 } else { 1e-3 });
        if let Some(pv) = facts.get("pydicom_voxels").and_then(|x| x.as_array()) {
            for s in pv {
                let s = s.as_array().expect("sample");
                let idx = [0, 1, 2].map(|n| s[n].as_u64().expect("idx") as usize);
                assert!((v.data[idx] as f64 - f(&s[3])).abs() <= 2.0, "{name}: pydicom {s:?} vs {}", v.data[idx]);
            }
        }
        compared += 1;
    }
    assert!(compared >= 8, "compared only {compared} pydicom files");
}

/// Reads the series in `$SAM3D_DICOM_BENCH` (see `tests/oracle/dicom_fixtures.py --bench`)
/// three times and prints the times; compare with the SimpleITK time the script prints.
#[test]
#[ignore]
fn dicom_bench() {
    let Ok(dir) = std::env::var("SAM3D_DICOM_BENCH") else {
        eprintln!("set SAM3D_DICOM_BENCH to a series folder");
        return;
    };
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let v = open(Path::new(&dir)).expect("bench series");
        eprintln!("read {:?} in {:.2} s", v.data.shape(), t.elapsed().as_secs_f64());
    }
}

#[test]
fn a_truncated_file_is_an_error_naming_it_not_a_panic() {
    let dir = tempfile::tempdir().expect("tmp");
    let src = std::fs::read_dir(data().join("axial")).expect("dir").next().expect("file").expect("entry").path();
    let bytes = std::fs::read(&src).expect("read");
    for keep in [bytes.len() - 100, bytes.len() / 2, 200] {
        let p = dir.path().join("cut.dcm");
        std::fs::write(&p, &bytes[..keep]).expect("write");
        let e = open(&p).expect_err("truncated").to_string();
        assert!(e.contains("cut.dcm"), "{keep}: {e}");
    }
}
