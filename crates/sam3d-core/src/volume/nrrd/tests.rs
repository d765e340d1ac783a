//! Unit tests of the NRRD reader and writer on hand-written headers.

use super::*;
use crate::volume::OnGrid;

fn write(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut b = header.as_bytes().to_vec();
    b.extend_from_slice(data);
    std::fs::write(&p, b).expect("write");
    p
}

const SPACED: &str = "dimension: 3\nspace: RAS\nsizes: 2 1 1\nspace directions: (1,0,0) (0,1,0) (0,0,1)\n";

fn problem(r: Result<impl std::fmt::Debug, VolumeError>) -> String {
    r.expect_err("refused").to_string()
}

#[test]
fn every_type_name_and_both_endians() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases: [(&str, DataType, Vec<u8>, Vec<u8>); 5] = [
        ("signed char", DataType::Int8, vec![0xff, 0x02], vec![0xff, 0x02]),
        ("ushort", DataType::Uint16, vec![0x01, 0x00, 0x00, 0x01], vec![0x00, 0x01, 0x01, 0x00]),
        ("int16_t", DataType::Int16, vec![0xff, 0xff, 0x02, 0x00], vec![0xff, 0xff, 0x00, 0x02]),
        ("unsigned long long int", DataType::Uint64, [1u64.to_le_bytes(), 256u64.to_le_bytes()].concat(), [1u64.to_be_bytes(), 256u64.to_be_bytes()].concat()),
        ("double", DataType::Float64, [0.5f64.to_le_bytes(), (-2f64).to_le_bytes()].concat(), [0.5f64.to_be_bytes(), (-2f64).to_be_bytes()].concat()),
    ];
    let want = |dt: DataType| match dt {
        DataType::Int8 => [-1.0, 2.0],
        DataType::Uint16 => [1.0, 256.0],
        DataType::Int16 => [-1.0, 2.0],
        DataType::Uint64 => [1.0, 256.0],
        _ => [0.5, -2.0],
    };
    for (name, dt, le, be) in cases {
        for (endian, bytes) in [("little", &le), ("big", &be)] {
            let h = format!("NRRD0004\ntype: {name}\n{SPACED}endian: {endian}\nencoding: raw\n\n");
            let p = write(dir.path(), "t.nrrd", &h, bytes);
            let v = read_volume(&p).unwrap_or_else(|e| panic!("{name} {endian}: {e}"));
            assert_eq!(v.data.iter().map(|&x| x as f64).collect::<Vec<_>>(), want(dt), "{name} {endian}");
            assert_eq!(v.meta.dtype, Some(dt));
        }
    }
    for (alias, dt) in [("uchar", DataType::Uint8), ("long long", DataType::Int64), ("unsigned int", DataType::Uint32), ("int", DataType::Int32), ("float", DataType::Float32), ("short int", DataType::Int16)] {
        assert_eq!(nrrd_type(alias), Ok(dt), "{alias}");
        assert_eq!(nrrd_type(type_name(dt)), Ok(dt));
    }
    assert!(nrrd_type("block").is_err() && nrrd_type("quad").is_err());
}

#[test]
fn skips_and_detached_data_files() {
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::create_dir(dir.path().join("sub")).expect("dir");
    std::fs::write(dir.path().join("sub/d.raw"), b"two lines\nof text\nXX\x05\x07").expect("write");
    let h = format!("NRRD0004\ntype: uint8\n{SPACED}encoding: raw\ndata file: sub/d.raw\nline skip: 2\nbyte skip: 2\n");
    let p = write(dir.path(), "a.nhdr", &h, b"");
    assert_eq!(read_volume(&p).expect("reads").data.iter().copied().collect::<Vec<_>>(), vec![5.0, 7.0]);
    let h = format!("NRRD0004\ntype: uint8\n{SPACED}encoding: raw\ndata file: sub/d.raw\nbyte skip: -1\n");
    let p = write(dir.path(), "b.nhdr", &h, b"");
    assert_eq!(read_volume(&p).expect("reads").data.iter().copied().collect::<Vec<_>>(), vec![5.0, 7.0]);
    let h = format!("NRRD0004\ntype: uint8\n{SPACED}encoding: raw\ndata file: missing.raw\n");
    let e = problem(read_volume(&write(dir.path(), "c.nhdr", &h, b"")));
    assert!(e.starts_with(&dir.path().join("c.nhdr").display().to_string()) && e.contains("missing.raw"), "{e}");
    for df in ["LIST", "LIST 2", "slice%03d.raw 1 10 1"] {
        let h = format!("NRRD0004\ntype: uint8\n{SPACED}encoding: raw\ndata file: {df}\n");
        assert!(problem(read_info(&write(dir.path(), "d.nhdr", &h, b""))).contains("not supported"), "{df}");
    }
}

#[test]
fn hostile_headers_are_refused_before_allocating() {
    let dir = tempfile::tempdir().expect("tmp");
    let cases = [
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 100000 100000 100000\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\n", "more than"),
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 1000 1000 1000\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\n", "truncated"),
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 1000 1000 1000\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: gzip\n", "impossible"),
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 18446744073709551615 2 2\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\n", "overflow"),
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 0 2 2\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nencoding: raw\n", "positive"),
        ("type: float\ndimension: 3\nspace: RAS\nsizes: 2 2 2\nspace directions: (1,0,0) (2,0,0) (0,0,1)\nencoding: raw\n", "degenerate"),
        ("type: float\ndimension: 3\nspace: RAST\nsizes: 2 2 2\nencoding: raw\n", "time axis"),
        ("type: float\ndimension: 5\nsizes: 2 2 2 2 2\nencoding: raw\n", "dimension 5"),
        ("type: float\ndimension: 4\nsizes: 2 2 2 2\nkinds: domain domain domain list\nencoding: raw\n", "leading list axis"),
        ("type: float\ndimension: 3\nsizes: 3 2 2\nkinds: RGB-color domain domain\nencoding: raw\n", "3D scalar"),
        ("type: float\ndimension: 3\nsizes: 2 2 2\nencoding: bzip2\n", "bzip2"),
        ("type: float\ndimension: 3\nsizes: 2 2 2\n", "encoding"),
        ("type: float\ndimension: 3\nsizes: 2 2 2\nspace origin: (1,2,3)\nencoding: raw\n", "without 'space:'"),
        ("type: float\ndimension: 3\nspace: LPS\nsizes: 2 2 2\nspace directions: (1,0,0) none (0,0,1)\nencoding: raw\n", "only 2 axes"),
        ("type: float\ndimension: 3\nspace: LPS\nsizes: 2 2 2\nspace directions: (1,0,0) (0,1,0) (0,0,1)\nspace origin: (1,2)\nencoding: raw\n", "space origin"),
    ];
    for (h, want) in cases {
        let p = write(dir.path(), "h.nrrd", &format!("NRRD0004\n{h}\n"), &[0u8; 64]);
        let e = problem(read_volume(&p));
        assert!(e.contains(want) && e.starts_with(&p.display().to_string()) && !e.contains('\n'), "{h}: {e}");
    }
    let p = write(dir.path(), "n.nrrd", &format!("NRRD0004\ntype: uint8\n{SPACED}encoding: raw\n"), b"");
    assert!(problem(read_volume(&p)).contains("no blank line"));
}

#[test]
fn unspaced_grids_follow_itk_and_nrrd_centering() {
    let dir = tempfile::tempdir().expect("tmp");
    // spacings + mins: cell adds half a spacing, node does not (SimpleITK agrees: facts.json).
    let h = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 2\nspacings: 2 4 1\naxis mins: 10 20 30\ncenters: cell node cell\nencoding: raw\n\n";
    let v = read_volume(&write(dir.path(), "a.nrrd", h, &[0u8; 8])).expect("reads");
    let want = RasFromVoxel::scale_translate([-2.0, -4.0, 1.0], [-11.0, -20.0, 30.5]);
    assert!(v.ras_from_voxel.max_abs_diff(&want) < 1e-12, "{:?}", v.ras_from_voxel);
    // mins + maxs without spacings: NRRD's spacing (max − min) / cells.
    let h = "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2 2 3\naxis mins: 0 0 0\naxis maxs: 4 4 4\ncenters: cell cell node\nencoding: raw\n\n";
    let v = read_volume(&write(dir.path(), "b.nrrd", h, &[0u8; 12])).expect("reads");
    assert_eq!(v.spacing_mm(), [2.0, 2.0, 2.0]);
    assert_eq!(v.ras_from_voxel.translation().as_slice(), &[-1.0, -1.0, 0.0]);
    // nothing at all: 1 mm, origin 0, axes along LPS.
    let h = "NRRD0001\ntype: uint8\ndimension: 3\nsizes: 2 2 2\nencoding: raw\n\n";
    let v = read_volume(&write(dir.path(), "c.nrrd", h, &[0u8; 8])).expect("reads");
    assert!(v.ras_from_voxel.max_abs_diff(&RasFromVoxel::scale_translate([-1.0, -1.0, 1.0], [0.0; 3])) < 1e-12);
}

#[test]
fn writes_lps_like_slicer_or_ras_and_reads_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let lin = nalgebra::Matrix3::new(0.0, -0.8, 0.0, 0.7, 0.0, 0.0, 0.0, 0.0, 2.5);
    let aff = RasFromVoxel::from_parts(lin, Vector3::new(-10.0, 20.0, 5.5));
    let data = Array3::from_shape_fn((3, 4, 5), |(k, j, i)| (i * 100 + j * 10 + k) as f32 - 50.5);
    for (space, gzip, dtype) in [(WriteSpace::Lps, true, DataType::Float32), (WriteSpace::Ras, false, DataType::Int16)] {
        let p = dir.path().join("w.nrrd");
        let opts = NrrdWriteOptions { dtype, gzip, space, ..Default::default() };
        write_nrrd(&p, data.view(), &aff, &opts, &[("note".into(), "a\nb".into())]).expect("writes");
        let info = read_info(&p).expect("reads");
        assert_eq!(info.space, Some(if space == WriteSpace::Lps { NrrdSpace::Lps } else { NrrdSpace::Ras }));
        assert_eq!(info.header.key("note"), Some("a\nb"));
        assert!(info.ras_from_voxel.max_abs_diff(&aff) < 1e-12);
        let v = info.read_volume().expect("reads");
        let tol = if dtype == DataType::Int16 { 0.5 } else { 0.0 };
        assert!(v.data.iter().zip(data.iter()).all(|(a, b)| (a - b).abs() <= tol));
    }
    let text = std::fs::read(dir.path().join("w.nrrd")).expect("read");
    assert!(String::from_utf8_lossy(&text[..200]).contains("space: right-anterior-superior"));
    assert!(problem(write_nrrd(&dir.path().join("w.nhdr"), data.view(), &aff, &NrrdWriteOptions::default(), &[])).contains(".nrrd"));
}

#[test]
fn a_4d_file_is_a_label_map_not_a_volume() {
    let dir = tempfile::tempdir().expect("tmp");
    let h = "NRRD0005\ntype: uint8\ndimension: 4\nspace: LPS\nsizes: 2 2 1 1\nspace directions: none (1,0,0) (0,1,0) (0,0,1)\nkinds: list domain domain domain\nencoding: raw\nSegment0_ID:=a\nSegment0_Layer:=0\nSegment1_ID:=b\nSegment1_Layer:=1\n\n";
    let p = write(dir.path(), "s.seg.nrrd", h, &[1, 0, 0, 1]);
    assert!(problem(read_volume(&p)).contains("2 layers"));
    let l = read_labels(&p).expect("flattens");
    assert_eq!(l.data.iter().copied().collect::<Vec<_>>(), vec![1, 2], "both LabelValues 1: numbered in file order");
    assert_eq!(l.shape(), GridShape::new(2, 1, 1));
    // A value no segment describes, in a layered file, is refused.
    let p = write(dir.path(), "u.seg.nrrd", h, &[1, 0, 3, 0]);
    assert!(problem(read_labels(&p)).contains("value 3"));
    // Outside its Extent, a segment's value is background.
    let h2 = h.replace("Segment1_Layer:=1\n", "Segment1_Layer:=1\nSegment1_Extent:=0 0 0 0 0 0\n");
    let p = write(dir.path(), "e.seg.nrrd", &h2, &[0, 0, 0, 1]);
    assert_eq!(read_labels(&p).expect("reads").data.iter().copied().collect::<Vec<_>>(), vec![0, 0]);
}
