//! The DICOM SEG reader against highdicom and pydicom-seg: SEG files they wrote (BINARY,
//! FRACTIONAL native and RLE, frames shuffled; an oblique grid with non-unit spacing, four segments of which
//! one is empty and two overlap, a slice without frames), read here and compared with what
//! those libraries read from the same files (`tests/data/seg_read/expected.json`, written by
//! `tests/oracle/seg_read_fixtures.py`: the test needs no Python). Then our writer's SEG read
//! back by our reader, and broken SEGs refused by name.

use ndarray::Array3;
use sam3d_core::geometry::VoxelIjk;
use sam3d_core::volume::dicom::{SeriesChoice, open_rtstruct_labels, place_on_grid, read_dicom_seg};
use sam3d_core::volume::label_names::names_beside;
use sam3d_core::volume::{LabelMap, open_labels, save_labels_dicom_seg};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod seg_facts;
use seg_facts::{affine_diff, f, labels_of};

fn data() -> PathBuf {
    seg_facts::data("seg_read")
}

fn expected() -> Value {
    seg_facts::expected("seg_read")
}

#[test]
fn highdicom_segs_read_as_highdicom_reads_them() {
    let e = expected();
    for case in ["hd_binary", "hd_fractional", "hd_fractional_rle", "hd_shuffled"] {
        let facts = &e[case];
        let path = data().join(format!("{case}.dcm"));
        let seg = read_dicom_seg(&path).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(seg.segmentation_type, facts["segmentation_type"].as_str().expect("type"), "{case}");
        let want = labels_of(&facts["voxels"], &facts["shape"]);
        assert_eq!(seg.labels.data.dim(), want.dim(), "{case}: shape");
        let wrong = seg.labels.data.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 0, "{case}: {wrong} voxels differ from highdicom's volume");
        let d = affine_diff(&seg.labels, &facts["ras_affine"]);
        assert!(d < 1e-6, "{case}: RAS affine differs from highdicom's by {d}");
        // Segment numbers, labels and colours as highdicom reads them; the empty one too.
        let segments: Vec<(u16, String, Option<[u8; 3]>)> = facts["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| {
                let colour = s[2].as_array().map(|c| [0, 1, 2].map(|n| c[n].as_u64().expect("rgb") as u8));
                (s[0].as_u64().expect("n") as u16, s[1].as_str().expect("label").to_string(), colour)
            })
            .collect();
        let got: Vec<(u16, String, Option<[u8; 3]>)> = seg.names.iter().map(|(n, (name, c))| (*n, name.clone(), *c)).collect();
        assert_eq!(got, segments, "{case}: segments");
        // Kidney (2) overlaps the liver; Empty (3) has no frames: each said, naming the file.
        let file = format!("{case}.dcm");
        assert!(seg.warnings.iter().any(|w| w.contains(&file) && w.contains("segment 2 \"Kidney\" overlaps earlier segments")), "{case}: {:?}", seg.warnings);
        assert!(seg.warnings.iter().any(|w| w.contains(&file) && w.contains("segment 3 \"Empty\" has no frames")), "{case}: {:?}", seg.warnings);
        assert_eq!(seg.segments.iter().map(|s| s.frames).sum::<usize>() as u64, facts["frames"].as_u64().expect("frames"), "{case}");
        // Through the one place a path becomes a label map, and its names beside it.
        let opened = open_labels(&path).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(opened.data, seg.labels.data);
        let (names, from) = names_beside(&path).expect("readable").expect("the SEG's own names");
        assert_eq!((names, from), (seg.names.clone(), path.clone()));
    }
    // The shuffled file is the binary one with its frames reordered: the same label map.
    let a = read_dicom_seg(&data().join("hd_binary.dcm")).expect("binary");
    let b = read_dicom_seg(&data().join("hd_shuffled.dcm")).expect("shuffled");
    assert_eq!(a.labels.data, b.labels.data);
    // On the source series' grid (7 slices; the SEG's planes are its slices 1 to 6).
    let rows = e["source_ras_affine"].as_array().expect("affine");
    let m = nalgebra::Matrix3::from_fn(|r, c| f(&rows[r][c]));
    let t = nalgebra::Vector3::from_fn(|r, _| f(&rows[r][3]));
    let source = LabelMap { data: Array3::zeros((7, 10, 12)), ras_from_voxel: sam3d_core::geometry::RasFromVoxel::from_parts(m, t), meta: Default::default() };
    let placed = place_on_grid(&a.labels, &source, Path::new("hd_binary.dcm")).expect("on the source grid");
    assert_eq!(placed.data.slice(ndarray::s![1.., .., ..]), a.labels.data);
    assert!(placed.data.slice(ndarray::s![0, .., ..]).iter().all(|&l| l == 0));
    // The FRACTIONAL file's soft ring: 0.6 counts, 0.3 does not (highdicom's values ≥ 0.5).
    let frac = read_dicom_seg(&data().join("hd_fractional.dcm")).expect("fractional");
    assert!(frac.labels.data.iter().filter(|&&l| l == 1).count() > a.labels.data.iter().filter(|&&l| l == 1).count());
}

#[test]
fn a_pydicom_seg_file_reads_as_pydicom_seg_reads_it() {
    let e = expected();
    let facts = &e["pds_multiclass"];
    if facts.is_string() {
        eprintln!("skipped: the fixture script had no pydicom-seg ({facts})");
        return;
    }
    let seg = read_dicom_seg(&data().join("pds_multiclass.dcm")).expect("pydicom-seg SEG");
    let want = labels_of(&facts["pds_voxels"], &facts["pds_shape"]);
    assert_eq!(seg.labels.data, want);
    let d = affine_diff(&seg.labels, &facts["pds_ras_affine"]);
    assert!(d < 1e-4, "RAS affine differs from pydicom-seg's by {d}");
    let names: Vec<&str> = seg.names.values().map(|n| n.0.as_str()).collect();
    let want_names: Vec<&str> = facts["pds_segment_labels"].as_array().expect("labels").iter().map(|n| n.as_str().expect("label")).collect();
    assert_eq!(names, want_names);
}

/// Our writer's SEG, read by our reader: a label map on the run of source slices the SEG holds
/// (the writer keeps only frames with a segment), which `place_on_grid` puts back on the
/// source's grid equal to the input.
#[test]
fn our_writer_then_our_reader_gives_back_the_label_map() {
    let rt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtstruct");
    let dir = tempfile::tempdir().expect("tmp");
    for case in ["axial", "oblique"] {
        let series = rt.join(case).join("ct");
        let input = open_rtstruct_labels(&rt.join(case).join("rtstruct.dcm"), &series).expect("rasterise");
        let path = dir.path().join(format!("{case}.dcm"));
        save_labels_dicom_seg(&path, &input.labels, &input.names, &series, &SeriesChoice::Only).expect("write");
        let back = read_dicom_seg(&path).unwrap_or_else(|err| panic!("{case}: {err}"));
        // The SEG holds only the slices with a segment: its grid is a run of the source's.
        assert!(back.labels.data.shape()[0] <= input.labels.data.shape()[0], "{case}");
        let (a, b) = (input.labels.ras_from_voxel.linear(), back.labels.ras_from_voxel.linear());
        assert!((a - b).abs().max() < 1e-6, "{case}: axes differ:\n{a}\n{b}");
        let placed = place_on_grid(&back.labels, &input.labels, &path).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(placed.data, input.labels.data, "{case}: the label map comes back");
        // Half a voxel off, the SEG is not on this grid: refused by name.
        let mut moved = input.labels.clone();
        let half = moved.ras_from_voxel.apply(VoxelIjk::new(0.5, 0.0, 0.0)).v - moved.ras_from_voxel.apply(VoxelIjk::new(0.0, 0.0, 0.0)).v;
        moved.ras_from_voxel = sam3d_core::geometry::RasFromVoxel::from_parts(moved.ras_from_voxel.linear(), moved.ras_from_voxel.apply(VoxelIjk::new(0.0, 0.0, 0.0)).v + half);
        let e = place_on_grid(&back.labels, &moved, &path).expect_err("half a voxel off").to_string();
        assert!(e.contains(&format!("{case}.dcm")) && e.contains("does not lie on the volume's voxels"), "{case}: {e}");
        // Names of the labels present come back (the writer numbers segments in label order,
        // and labels 1–4 are the first four ROIs).
        for (label, (name, colour)) in &back.names {
            assert_eq!(input.names.get(label), Some(&(name.clone(), *colour)), "{case}: label {label}");
        }
    }
}

#[test]
fn broken_segs_are_refused_naming_the_file_and_the_problem() {
    let cases = [
        ("too_few_frames", "PerFrameFunctionalGroupsSequence has 7 items for NumberOfFrames 8"),
        ("bad_segment", "frame 3 references segment 9, which the SegmentSequence does not define (1, 2, 3, 4)"),
        ("off_grid", "frame 2 at ("),
        ("other_orientation", "frame 4 has orientation [1.0, 0.0, 0.0]"),
        ("short_pixels", "PixelData holds 52 bytes, 7 frames of 12 × 10 need 105"),
        ("far_apart", "its frames span more than 4096 slices of 12 × 10"),
    ];
    for (name, want) in cases {
        let path = data().join("bad").join(format!("{name}.dcm"));
        let e = read_dicom_seg(&path).expect_err(name).to_string();
        assert!(e.contains(&format!("{name}.dcm")) && e.contains(want), "{name}: {e}");
        assert!(!e.contains('\n'), "{name}: one line: {e}");
        let e2 = open_labels(&path).expect_err(name).to_string();
        assert_eq!(e, e2, "{name}: open_labels says the same");
    }
    let e = read_dicom_seg(&data().join("bad/off_grid.dcm")).expect_err("off grid").to_string();
    assert!(e.contains("3.000 mm off the grid"), "{e}");
    // Not a SEG: an image series' file, and an RTSTRUCT.
    let ct = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom/axial/img003.dcm");
    let e = read_dicom_seg(&ct).expect_err("CT").to_string();
    assert!(e.contains("img003.dcm") && e.contains("is not a DICOM Segmentation"), "{e}");
    let e = open_labels(&ct).expect_err("CT").to_string();
    assert!(e.contains("img003.dcm") && e.contains("not a Segmentation"), "{e}");
}
