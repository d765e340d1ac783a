//! The NRRD, `.seg.nrrd` and MetaImage readers against what pynrrd and SimpleITK read from the
//! same files (tests/data/nrrd/facts.json, written by tests/oracle/nrrd_fixtures.py), the
//! writers read back, and every truncation of every fixture refused without a panic.
//!
//! With SAM3D_NRRD_ROUNDTRIP_OUT=DIR the round-trip files are kept in DIR for
//! `python3 tests/oracle/nrrd_fixtures.py --roundtrip DIR`.

use sam3d_core::volume::label_names::names_beside;
use sam3d_core::volume::nrrd::seg::read_segmentation;
use sam3d_core::volume::{LabelMap, OnGrid, Volume, open, open_labels, save_labels, save_volume};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/nrrd")
}

fn facts() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(data_dir().join("facts.json")).expect("facts.json");
    serde_json::from_str::<Value>(&text).expect("json").as_object().expect("object").clone()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

fn shape_of(f: &Value) -> Vec<usize> {
    nums(&f["shape"]).iter().map(|&x| x as usize).collect()
}

fn check_affine(name: &str, got: &sam3d_core::geometry::RasFromVoxel, f: &Value) {
    let want: Vec<Vec<f64>> = f["affine"].as_array().expect("rows").iter().map(nums).collect();
    for (r, row) in got.rows().iter().enumerate() {
        for (c, x) in row.iter().enumerate() {
            assert!((x - want[r][c]).abs() < 1e-6, "{name}: affine[{r}][{c}] = {x}, reference {}\n{:?}", want[r][c], got.rows());
        }
    }
}

fn check_volume(name: &str, v: &Volume, f: &Value) {
    assert_eq!(v.data.shape(), shape_of(f).as_slice(), "{name}: shape");
    check_affine(name, &v.ras_from_voxel, f);
    let want = nums(&f["values"]);
    for (n, (a, b)) in v.data.iter().zip(&want).enumerate() {
        assert!((*a as f64 - b).abs() <= 1e-5 * b.abs().max(1.0), "{name}: value {n} = {a}, reference {b}");
    }
}

fn check_labels(name: &str, l: &LabelMap, f: &Value) {
    assert_eq!(l.data.shape(), shape_of(f).as_slice(), "{name}: shape");
    check_affine(name, &l.ras_from_voxel, f);
    let want: Vec<u16> = nums(&f["labels"]).iter().map(|&x| x as u16).collect();
    assert_eq!(l.data.iter().copied().collect::<Vec<_>>(), want, "{name}: labels");
}

fn segment_table(f: &Value) -> Vec<(u16, String, [u8; 3])> {
    f["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| {
            let c = nums(&s["colour"]);
            let u = |x: f64| (x * 255.0).round() as u8;
            (s["label"].as_u64().expect("label") as u16, s["name"].as_str().expect("name").to_string(), [u(c[0]), u(c[1]), u(c[2])])
        })
        .collect()
}

#[test]
fn every_fixture_reads_as_the_reference_libraries_read_it() {
    let mut checked = 0;
    for (name, f) in facts() {
        let path = data_dir().join(&name);
        match f["kind"].as_str().expect("kind") {
            "volume" => check_volume(&name, &open(&path).unwrap_or_else(|e| panic!("{e}")), &f),
            "segmentation" => {
                let s = read_segmentation(&path).unwrap_or_else(|e| panic!("{e}"));
                check_labels(&name, &s.labels, &f);
                check_labels(&name, &open_labels(&path).unwrap_or_else(|e| panic!("{e}")), &f);
                for (label, seg_name, colour) in segment_table(&f) {
                    assert_eq!(s.names.get(&label), Some(&(seg_name.clone(), Some(colour))), "{name}: label {label}");
                }
                assert_eq!(s.names.len(), segment_table(&f).len());
                let (names, from) = names_beside(&path).expect("reads").expect("has names");
                assert_eq!((names, from), (s.names.clone(), path.clone()), "{name}: names_beside gives the file's own names");
            }
            "error" => {
                let e = open_labels(&path).expect_err("refused").to_string();
                assert!(e.starts_with(&path.display().to_string()), "{e}");
                let count = f["overlap_voxels"].as_u64().expect("count");
                assert!(e.contains(&format!("in {count} voxel(s)")), "{name}: {e}");
                for w in f["error_mentions"].as_array().expect("words") {
                    assert!(e.contains(w.as_str().expect("word")), "{name}: {e}");
                }
                assert!(!e.contains('\n'), "one line: {e}");
            }
            k => panic!("{name}: unknown kind {k}"),
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked} fixtures");
}

#[test]
fn the_writers_output_reads_back_identically() {
    let keep = std::env::var_os("SAM3D_NRRD_ROUNDTRIP_OUT").map(PathBuf::from);
    let tmp = tempfile::tempdir().expect("tmp");
    let out = keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out).expect("out dir");
    for (name, f) in facts() {
        let path = data_dir().join(&name);
        match f["kind"].as_str().expect("kind") {
            "volume" => {
                let v = open(&path).expect("reads");
                for ext in ["nrrd", "mha"] {
                    let p = out.join(format!("{name}__rt.{ext}"));
                    save_volume(&p, &v, None).unwrap_or_else(|e| panic!("{e}"));
                    let back = open(&p).unwrap_or_else(|e| panic!("{e}"));
                    check_volume(&p.display().to_string(), &back, &f);
                    assert_eq!(back.meta.dtype, v.meta.dtype, "{name}: type kept");
                }
            }
            "segmentation" => {
                let s = read_segmentation(&path).expect("reads");
                let p = out.join(format!("{name}__rt.seg.nrrd"));
                save_labels(&p, &s.labels, Some(&s.names)).unwrap_or_else(|e| panic!("{e}"));
                let back = read_segmentation(&p).unwrap_or_else(|e| panic!("{e}"));
                check_labels(&p.display().to_string(), &back.labels, &f);
                assert_eq!(back.names, s.names, "{name}: names and colours survive");
                let plain = out.join(format!("{name}__rt_plain.nrrd"));
                save_labels(&plain, &s.labels, None).expect("writes");
                check_labels(&name, &open_labels(&plain).expect("reads"), &f);
                assert!(names_beside(&plain).expect("reads").is_none(), "a plain .nrrd has no segment names");
            }
            _ => {}
        }
    }
}

/// Every prefix of every fixture (and every other header byte replaced by a few hostile ones)
/// is read without a panic, and a failure is one line naming the file.
#[test]
fn truncated_and_corrupted_fixtures_fail_cleanly() {
    // Thousands of small rewrites: in memory where the machine has it, else the temp folder.
    let shm = Path::new("/dev/shm");
    let tmp = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.or_else(|_| tempfile::tempdir()).expect("tmp");
    let mut refused = 0;
    for entry in std::fs::read_dir(data_dir()).expect("dir") {
        let src = entry.expect("entry").path();
        let name = src.file_name().expect("name").to_string_lossy().to_string();
        if name.ends_with(".json") || name.ends_with(".raw") || name.ends_with(".gz") {
            continue;
        }
        let bytes = std::fs::read(&src).expect("read");
        // Detached data files travel with their headers.
        for aux in ["detached.raw.gz", "meta_detached.raw"] {
            let _ = std::fs::copy(data_dir().join(aux), tmp.path().join(aux));
        }
        let p = tmp.path().join(&name);
        let header_len = bytes.windows(2).position(|w| w == b"\n\n").unwrap_or(bytes.len()).min(bytes.len());
        let mut attempt = |b: &[u8]| {
            std::fs::write(&p, b).expect("write");
            for r in [open(&p).map(|_| ()), open_labels(&p).map(|_| ())] {
                if let Err(e) = r {
                    let e = e.to_string();
                    assert!(e.starts_with(&p.display().to_string()) && !e.contains('\n'), "{e}");
                    refused += 1;
                }
            }
        };
        for n in 0..bytes.len() {
            attempt(&bytes[..n]);
        }
        for at in (0..header_len).step_by(2) {
            for x in [b'\n', b'9', b'-', 0u8, b'(', b'%'] {
                let mut b = bytes.clone();
                b[at] = x;
                attempt(&b);
            }
        }
    }
    assert!(refused > 10_000, "{refused}");
}

#[test]
fn a_segmentation_written_from_a_label_map_and_a_tsv_table_carries_its_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let s = read_segmentation(&data_dir().join("three_segments.seg.nrrd")).expect("reads");
    let mut names = s.names.clone();
    names.remove(&2); // no entry: a generated name and colour
    names.insert(9, ("absent".into(), None)); // not in the data: not written
    let p = tmp.path().join("out.seg.nrrd");
    save_labels(&p, &s.labels, Some(&names)).expect("writes");
    let back = read_segmentation(&p).expect("reads");
    assert_eq!(back.names.keys().copied().collect::<Vec<_>>(), vec![1, 2, 5]);
    assert_eq!(back.names[&2].0, "Segment_2");
    assert_eq!(back.names[&1], s.names[&1]);
    let text = String::from_utf8_lossy(&std::fs::read(&p).expect("read")).to_string();
    for key in [
        "Segment1_NameAutoGenerated:=1",
        "Segment1_ColorAutoGenerated:=1",
        "Segment0_ID:=Segment_1",
        "Segment2_LabelValue:=5",
        "Segment0_Layer:=0",
        "Segment0_Extent:=0 7 0 9 0 4",
        "Segmentation_MasterRepresentation:=Binary labelmap",
        "Segmentation_ContainedRepresentationNames:=Binary labelmap|",
        "space: left-posterior-superior",
    ] {
        assert!(text.contains(key), "{key} missing");
    }
    assert!(back.labels.same_grid(&s.labels, 1e-9));
}
