//! LABELMAP DICOM SEGs (Supplement 243: one frame per plane holding segment numbers) against
//! highdicom: files it wrote (8 bits native and RLE, a palette colour LUT instead of CIELab
//! colours, 16 bits with 300 segments; an oblique grid, a segment without voxels, a slice
//! without a frame), read here and compared with what highdicom reads from the same files
//! (`tests/data/seg_labelmap/expected.json`, written by
//! `tests/oracle/seg_labelmap_fixtures.py`: the test needs no Python). Then broken LABELMAPs
//! refused by name.

use ndarray::Array3;
use sam3d_core::volume::dicom::{SeriesChoice, SeriesKind, is_dicom_seg, list_series, place_on_grid, read_dicom_seg};
use sam3d_core::volume::label_names::names_beside;
use sam3d_core::volume::{LabelMap, open, open_labels};
use serde_json::Value;
use std::path::{Path, PathBuf};

mod seg_facts;
use seg_facts::{affine_diff, labels_of};

fn data() -> PathBuf {
    seg_facts::data("seg_labelmap")
}

fn expected() -> Value {
    seg_facts::expected("seg_labelmap")
}

#[test]
fn highdicom_labelmaps_read_as_highdicom_reads_them() {
    let e = expected();
    for case in ["hd_labelmap8", "hd_labelmap8_rle", "hd_labelmap_palette", "hd_labelmap16"] {
        let facts = &e[case];
        let path = data().join(format!("{case}.dcm"));
        assert!(is_dicom_seg(&path), "{case}: the Label Map Segmentation SOP class is a SEG");
        let seg = read_dicom_seg(&path).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(seg.segmentation_type, "LABELMAP", "{case}");
        let want = labels_of(&facts["voxels"], &facts["shape"]);
        assert!(!want.is_empty() && want.iter().any(|&l| l != 0), "{case}: the oracle's map is empty");
        assert_eq!(seg.labels.data.dim(), want.dim(), "{case}: shape");
        let wrong = seg.labels.data.iter().zip(want.iter()).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 0, "{case}: {wrong} voxels differ from highdicom's volume");
        let d = affine_diff(&seg.labels, &facts["ras_affine"]);
        assert!(d < 1e-6, "{case}: RAS affine differs from highdicom's by {d}");
        // Segment numbers and labels as highdicom reads them (the empty ones too); colours
        // from CIELab, or from the palette at the segment's value.
        let palette = facts["palette"].as_object();
        let segments: Vec<(u16, String, Option<[u8; 3]>)> = facts["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .map(|s| {
                let n = s[0].as_u64().expect("n") as u16;
                let rgb = |c: &Value| c.as_array().map(|c| [0, 1, 2].map(|k| c[k].as_u64().expect("rgb") as u8));
                let colour = rgb(&s[2]).or_else(|| palette.and_then(|p| p.get(&n.to_string())).and_then(rgb));
                (n, s[1].as_str().expect("label").to_string(), colour)
            })
            .collect();
        let got: Vec<(u16, String, Option<[u8; 3]>)> = seg.names.iter().map(|(n, (name, c))| (*n, name.clone(), *c)).collect();
        assert_eq!(got, segments, "{case}: segments");
        if case == "hd_labelmap_palette" {
            assert_eq!(seg.names[&1].1, Some([255, 0, 0]), "the palette's red for segment 1");
            assert_eq!(seg.names[&4].1, Some([255, 255, 0]), "the palette's yellow for segment 4");
        }
        // The empty segment(s) said once, naming the file; voxels and frames counted per segment.
        let file = format!("{case}.dcm");
        let empty: Vec<&String> = seg.warnings.iter().filter(|w| w.contains(&file) && w.contains("no voxel has the value")).collect();
        assert_eq!(empty.len(), 1, "{case}: {:?}", seg.warnings);
        assert!(empty[0].contains("3 \"Empty\""), "{case}: {}", empty[0]);
        for s in &seg.segments {
            assert_eq!(s.voxels, want.iter().filter(|&&l| l == s.number).count(), "{case}: segment {} voxels", s.number);
        }
        assert!(seg.segments.iter().find(|s| s.number == 4).is_some_and(|s| s.frames == 1), "{case}: the spleen lies on one frame");
        // Through the one place a path becomes a label map, and its names beside it.
        let opened = open_labels(&path).unwrap_or_else(|err| panic!("{case}: {err}"));
        assert_eq!(opened.data, seg.labels.data);
        let (names, from) = names_beside(&path).expect("readable").expect("the SEG's own names");
        assert_eq!((names, from), (seg.names.clone(), path.clone()));
    }
    // The 16-bit file holds values above 255 (segments 257 "Gland" and 300 "Vessel").
    let wide = read_dicom_seg(&data().join("hd_labelmap16.dcm")).expect("16 bits");
    let counts = wide.labels.counts();
    assert!(counts.iter().any(|&(l, n)| l == 257 && n > 0) && counts.iter().any(|&(l, n)| l == 300 && n > 0), "{counts:?}");
    assert_eq!(wide.names[&257].0, "Gland");
    assert!(wide.warnings.iter().any(|w| w.contains("(295 in all)")), "{:?}", wide.warnings);
    // The 8-bit files are one map: native, RLE and palette read the same.
    let a = read_dicom_seg(&data().join("hd_labelmap8.dcm")).expect("8 bits");
    for other in ["hd_labelmap8_rle", "hd_labelmap_palette"] {
        assert_eq!(read_dicom_seg(&data().join(format!("{other}.dcm"))).expect("reads").labels.data, a.labels.data, "{other}");
    }
    // The map lies on the source series' grid: its 6 planes are the series' slices 1 to 6 (the
    // source's affine is the SEG's moved one step back along the slices).
    let m = *a.labels.ras_from_voxel.matrix();
    let step = m.fixed_view::<3, 1>(0, 2).into_owned();
    let origin = m.fixed_view::<3, 1>(0, 3).into_owned() - step;
    let source = LabelMap {
        data: Array3::zeros((7, 10, 12)),
        ras_from_voxel: sam3d_core::geometry::RasFromVoxel::from_parts(m.fixed_view::<3, 3>(0, 0).into_owned(), origin),
        meta: Default::default(),
    };
    let placed = place_on_grid(&a.labels, &source, Path::new("hd_labelmap8.dcm")).expect("on the source grid");
    assert_eq!(placed.data.slice(ndarray::s![1.., .., ..]), a.labels.data);
}

#[test]
fn a_labelmap_in_a_folder_is_listed_as_a_segmentation_not_opened_as_a_scan() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::copy(data().join("hd_labelmap8.dcm"), dir.path().join("seg.dcm")).expect("copy");
    let list = list_series(dir.path()).expect("listing");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, SeriesKind::Segmentation, "{list:?}");
    assert!(list[0].to_string().contains("segmentation (1 file)"), "{}", list[0]);
    let e = open(dir.path()).expect_err("no scan").to_string();
    assert!(e.contains("holds no image series"), "{e}");
    let e = sam3d_core::volume::open_with(&dir.path().join("seg.dcm"), Some(&SeriesChoice::Only)).expect_err("a label map").to_string();
    assert!(e.contains("seg.dcm") && e.contains("is a DICOM Segmentation"), "{e}");
}

#[test]
fn broken_labelmaps_are_refused_by_name() {
    let bad = data().join("bad");
    let e = read_dicom_seg(&bad.join("unlisted_value.dcm")).expect_err("value 9").to_string();
    assert!(e.contains("unlisted_value.dcm") && e.contains("frame 2 holds the value 9") && e.contains("(1, 2, 3, 4)"), "{e}");
    let e = open_labels(&bad.join("binary_bits.dcm")).expect_err("1 bit").to_string();
    assert!(e.contains("binary_bits.dcm") && e.contains("LABELMAP with BitsAllocated 1"), "{e}");
}
