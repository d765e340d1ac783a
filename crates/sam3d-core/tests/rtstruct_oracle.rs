//! RT structure sets in and DICOM SEG out, against masks computed independently in numpy
//! (even–odd at pixel centres, which skimage's polygon2mask matches exactly on these fixtures)
//! and against highdicom and pydicom-seg reading the SEG this code writes. The fixtures and
//! expectations are written by `tests/oracle/rtstruct_seg_fixtures.py` (see its docstring for
//! the three commands); these tests need no Python.

use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;
use ndarray::Array3;
use sam3d_core::volume::dicom::{SeriesChoice, open_rtstruct_labels, rasterise_roi, read_rtstruct, source_series};
use sam3d_core::volume::save_labels_dicom_seg;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtstruct")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data().join("expected.json")).expect("expected.json")).expect("json")
}

fn mask_of(voxels: &Value, shape: &[usize]) -> Array3<bool> {
    let mut m = Array3::from_elem((shape[0], shape[1], shape[2]), false);
    for v in voxels.as_array().expect("voxels") {
        let v: Vec<usize> = v.as_array().expect("kji").iter().map(|x| x.as_u64().expect("index") as usize).collect();
        m[[v[0], v[1], v[2]]] = true;
    }
    m
}

fn shape_of(facts: &Value) -> Vec<usize> {
    facts["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("n") as usize).collect()
}

#[test]
fn every_roi_rasterises_exactly_as_the_oracle_on_axial_and_oblique_series() {
    let e = expected();
    for case in ["axial", "oblique"] {
        let facts = &e[case];
        let shape = shape_of(facts);
        let rt_path = data().join(case).join("rtstruct.dcm");
        let out = open_rtstruct_labels(&rt_path, &data().join(case).join("ct")).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(out.labels.data.shape(), shape.as_slice(), "{case}");
        let rt = read_rtstruct(&rt_path).expect("read");
        let grid = source_series(&data().join(case).join("ct"), &SeriesChoice::Only).expect("grid");
        for (n, roi) in facts["rois"].as_array().expect("rois").iter().enumerate() {
            let label = n as u16 + 1;
            let name = roi["name"].as_str().expect("name");
            let colour: Vec<u8> = roi["colour"].as_array().expect("rgb").iter().map(|c| c.as_u64().expect("c") as u8).collect();
            assert_eq!(out.names[&label], (name.to_string(), Some([colour[0], colour[1], colour[2]])), "{case} label {label}");
            let want = mask_of(&roi["voxels"], &shape);
            let mut warnings = Vec::new();
            let got = rasterise_roi(&rt_path, &rt.rois[n], &grid, &mut warnings);
            let differ = got.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{case} {name}: {differ} voxels differ from the oracle");
            assert_eq!(out.voxels[n], want.iter().filter(|x| **x).count(), "{case} {name}");
            let count = out.labels.data.iter().filter(|&&l| l == label).count();
            assert_eq!(count as u64, facts["label_counts"][label.to_string()].as_u64().expect("count"), "{case} {name}: later ROIs take overlaps");
        }
        let said = out.warnings.join("\n");
        assert!(said.contains("ROI 16 \"Between\" contour 1") && said.contains("between slices 2 and 3") && said.contains("left out"), "{said}");
        assert!(said.contains("ROI 16 \"Between\" contour 2") && said.contains("off slice 3; drawn on it"), "{said}");
        assert!(said.contains("\"Overlap\" overlaps earlier ROIs") && said.contains("\"Empty\" has no contour"), "{said}");
        assert!(said.lines().all(|l| l.starts_with("rtstruct.dcm: ")), "{said}");
    }
}

#[test]
fn the_series_is_found_in_a_folder_that_holds_the_structure_set_too_and_refused_when_absent() {
    let e = expected();
    let rt = data().join("axial").join("rtstruct.dcm");
    let out = open_rtstruct_labels(&rt, &data().join("axial")).expect("the case folder: CT series + RTSTRUCT");
    assert_eq!(out.labels.counts().len(), 4);
    let err = open_rtstruct_labels(&rt, &data().join("oblique").join("ct")).expect_err("another series").to_string();
    let (want, there) = (e["axial"]["series_uid"].as_str().expect("uid"), e["oblique"]["series_uid"].as_str().expect("uid"));
    assert!(err.contains("rtstruct.dcm") && err.contains(want) && err.contains(there), "{err}");
}

#[test]
fn broken_structure_sets_are_errors_or_warnings_naming_the_file_and_roi() {
    let bad = data().join("bad");
    let err = read_rtstruct(&bad.join("truncated.dcm")).expect_err("truncated").to_string();
    assert!(err.contains("truncated.dcm"), "{err}");
    let ct = std::fs::read_dir(data().join("axial").join("ct")).expect("dir").next().expect("file").expect("entry").path();
    let err = read_rtstruct(&ct).expect_err("a CT slice").to_string();
    assert!(err.contains("not an RT structure set") && err.contains("modality CT"), "{err}");
    let err = read_rtstruct(&data().join("expected.json")).expect_err("not DICOM").to_string();
    assert!(err.contains("expected.json") && err.contains("not a DICOM file"), "{err}");

    let out = open_rtstruct_labels(&bad.join("bad_contours.dcm"), &data().join("axial").join("ct")).expect("the good ROI draws");
    let said = out.warnings.join("\n");
    for (roi, why) in [("\"One point\" contour 1", "1 point(s)"), ("\"Two points\" contour 1", "2 point(s)"), ("\"Not a number\" contour 1", "not a finite number")] {
        assert!(said.lines().any(|l| l.starts_with("bad_contours.dcm: ") && l.contains(roi) && l.contains(why)), "{roi}: {said}");
    }
    assert!(out.voxels[0] > 0 && out.voxels[1..].iter().all(|&v| v == 0), "{:?}", out.voxels);
}

/// Reads a SEG back with dicom-rs: (segment labels, referenced series, label map).
fn read_seg(path: &Path, shape: &[usize]) -> (Vec<String>, String, Array3<u16>) {
    let obj = OpenFileOptions::new().open_file(path).expect("SEG");
    let text = |o: &dicom_object::InMemDicomObject, t| o.element(t).expect("element").to_str().expect("str").trim_end_matches('\0').trim().to_string();
    let segments = obj.element(tags::SEGMENT_SEQUENCE).expect("segments").items().expect("items");
    let labels: Vec<String> = segments.iter().map(|s| text(s, tags::SEGMENT_LABEL)).collect();
    let series = &obj.element(tags::REFERENCED_SERIES_SEQUENCE).expect("refs").items().expect("items")[0];
    let frames = obj.element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).expect("frames").items().expect("items");
    let bits = obj.element(tags::PIXEL_DATA).expect("pixels").to_bytes().expect("bytes");
    let per = shape[1] * shape[2];
    let mut out = Array3::zeros((shape[0], shape[1], shape[2]));
    for (f, item) in frames.iter().enumerate() {
        let ident = &item.element(tags::SEGMENT_IDENTIFICATION_SEQUENCE).expect("ident").items().expect("items")[0];
        let number = ident.element(tags::REFERENCED_SEGMENT_NUMBER).expect("n").to_int::<u16>().expect("n");
        let content = &item.element(tags::FRAME_CONTENT_SEQUENCE).expect("content").items().expect("items")[0];
        let index = content.element(tags::DIMENSION_INDEX_VALUES).expect("div").to_multi_int::<u32>().expect("div");
        assert_eq!(index[0], number as u32);
        let k = index[1] as usize - 1;
        for n in 0..per {
            let bit = f * per + n;
            if bits[bit / 8] >> (bit % 8) & 1 == 1 {
                out[[k, n / shape[2], n % shape[2]]] = number;
            }
        }
    }
    (labels, text(series, tags::SERIES_INSTANCE_UID), out)
}

#[test]
fn a_label_map_on_the_series_writes_a_seg_that_reads_back_and_the_oracles_agree() {
    let e = expected();
    let dir = tempfile::tempdir().expect("tmp");
    let keep = std::env::var_os("SAM3D_WRITE_FIXTURES").is_some();
    for case in ["axial", "oblique"] {
        let facts = &e[case];
        let shape = shape_of(facts);
        let series = data().join(case).join("ct");
        let out = open_rtstruct_labels(&data().join(case).join("rtstruct.dcm"), &series).expect("rasterise");
        let path = dir.path().join(format!("{case}.dcm"));
        let summary = save_labels_dicom_seg(&path, &out.labels, &out.names, &series, &SeriesChoice::Only).unwrap_or_else(|err| panic!("{case}: {err}"));
        // Labels 1–4 are present (5, "Empty", is not): segments 1–4 keep them in order.
        assert_eq!(summary.segments.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(), vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
        let (names, referenced, back) = read_seg(&path, &shape);
        assert_eq!(names, ["Ring", "Edge", "Between", "Overlap"]);
        assert_eq!(referenced, facts["series_uid"].as_str().expect("uid"));
        assert_eq!(back, out.labels.data, "{case}: the SEG's frames rebuild the label map");
        if keep {
            let fixture = data().join("seg");
            std::fs::create_dir_all(&fixture).expect("mkdir");
            std::fs::copy(&path, fixture.join(format!("{case}.dcm"))).expect("keep");
        }
    }
    // The committed SEGs, as highdicom and pydicom-seg read them (seg/check.json).
    let check: Value = serde_json::from_str(&std::fs::read_to_string(data().join("seg/check.json")).expect("check.json")).expect("json");
    for case in ["axial", "oblique"] {
        let c = &check[case];
        let obj = OpenFileOptions::new().open_file(data().join("seg").join(format!("{case}.dcm"))).expect("committed SEG");
        let uid = obj.element(tags::SOP_INSTANCE_UID).expect("uid").to_str().expect("str").trim_end_matches('\0').to_string();
        assert_eq!(c["sop_instance_uid"].as_str(), Some(uid.as_str()), "{case}: check.json is about this file");
        assert_eq!(c["ok"], Value::Bool(true), "{case}: {c}");
        assert_eq!((c["hd_voxels_differ"].as_u64(), c["pds_voxels_differ"].as_u64()), (Some(0), Some(0)), "{case}");
    }
}

#[test]
fn a_seg_is_refused_off_the_source_grid_or_without_a_source() {
    let dir = tempfile::tempdir().expect("tmp");
    let series = data().join("axial").join("ct");
    let out = open_rtstruct_labels(&data().join("axial").join("rtstruct.dcm"), &series).expect("rasterise");
    let mut moved = out.labels.clone();
    moved.ras_from_voxel = sam3d_core::geometry::RasFromVoxel::identity();
    let err = save_labels_dicom_seg(&dir.path().join("x.dcm"), &moved, &out.names, &series, &SeriesChoice::Only).expect_err("off grid").to_string();
    assert!(err.contains("x.dcm") && err.contains("does not match"), "{err}");
    let err = out.labels.save(&dir.path().join("y.dcm")).expect_err("no source").to_string();
    assert!(err.contains("source series"), "{err}");
    let err = save_labels_dicom_seg(&dir.path().join("z.nii.gz"), &out.labels, &out.names, &series, &SeriesChoice::Only).expect_err("not .dcm").to_string();
    assert!(err.contains(".dcm"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0, "nothing written, no temporary file left");
}
