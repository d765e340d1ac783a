use super::*;
use proptest::prelude::*;

/// A checked-in sample table (`tests/data/label_tables/<name>`), parsed as if read from there.
fn sample(name: &str) -> (LabelNames, TableFormat) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/label_tables").join(name);
    read_label_table(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn entry(names: &LabelNames, id: u16) -> (&str, Option<[u8; 3]>) {
    let (n, c) = &names[&id];
    (n.as_str(), *c)
}

#[test]
fn tsv_with_header_comments_and_colours() {
    let text = "id\tname\n# a comment\n1\tspleen\n5\tliver\t10 20 30\n\n7\t\n";
    let t = parse_label_tsv(text, Path::new("x.tsv")).expect("parses");
    assert_eq!(t[&1], ("spleen".to_string(), None));
    assert_eq!(t[&5], ("liver".to_string(), Some([10, 20, 30])));
    assert_eq!(t[&7].0, "label 7");
    let bad = parse_label_tsv("1\ta\nxx\tb\n", Path::new("y.tsv")).expect_err("bad id");
    assert_eq!(bad.line, 2);
    assert!(bad.to_string().starts_with("y.tsv: line 2"), "{bad}");
}

#[test]
fn itksnap_label_descriptions_with_quoted_names() {
    let (t, f) = sample("organs.label");
    assert_eq!(f, TableFormat::ItkSnap);
    assert_eq!(entry(&t, 0), ("Clear Label", Some([0, 0, 0])));
    assert_eq!(entry(&t, 2), ("Right kidney", Some([0, 255, 0])));
    assert_eq!(entry(&t, 3), ("Inferior vena cava", Some([0, 0, 255])));
    assert_eq!(entry(&t, 300), ("Vertebra L1", Some([220, 180, 140])));
    // Without its comment block, the quoted name after seven fields still says ITK-SNAP.
    let (t, f) = parse_label_table("  7 1 2 3 1 1 1 \"a b\"\n", Path::new("x.txt")).expect("parses");
    assert_eq!((f, entry(&t, 7)), (TableFormat::ItkSnap, ("a b", Some([1, 2, 3]))));
    for (line, says) in [
        ("1 1 2 3 1 1 1 noquote", "no quoted label"),
        ("1 1 2 3 1 1 \"x\"", "7 fields"),
        ("1 256 2 3 1 1 1 \"x\"", "red '256'"),
        ("1 1 2 3 1.5 1 1 \"x\"", "opacity '1.5'"),
        ("1 1 2 3 1 2 1 \"x\"", "visibility '2'"),
        ("70000 1 2 3 1 1 1 \"x\"", "larger than 65535"),
    ] {
        let text = format!("# ITK-SnAP Label Description File\n0 0 0 0 0 0 0 \"Clear Label\"\n{line}\n");
        let e = parse_label_table(&text, Path::new("l.label")).expect_err(line).to_string();
        assert!(e.starts_with("l.label: line 3: ") && e.contains(says), "{line}: {e}");
    }
}

#[test]
fn slicer_colour_tables_text_and_csv() {
    let (t, f) = sample("organs.ctbl");
    assert_eq!(f, TableFormat::SlicerCtbl);
    assert_eq!(entry(&t, 0), ("Background", Some([0, 0, 0])));
    assert_eq!(entry(&t, 2), ("right_kidney", Some([185, 102, 83])));
    assert_eq!(entry(&t, 1024), ("vertebra_L1", Some([241, 214, 145])));
    let (c, f) = sample("organs.csv");
    assert_eq!(f, TableFormat::SlicerCsv);
    assert_eq!(entry(&c, 2), ("right kidney", Some([185, 102, 83])));
    assert_eq!(entry(&c, 3), ("vena cava, inferior", Some([0, 151, 206])));
    assert_eq!(entry(&c, 1024), ("vertebra L1", Some([241, 214, 145])));
    assert_eq!(c.len(), 4);
    // Only the columns it needs, in any order; a short row or a bad colour names its line.
    let (c, _) = parse_label_table("Name,LabelValue\nliver,1\n", Path::new("x.csv")).expect("parses");
    assert_eq!(entry(&c, 1), ("liver", None));
    let e = parse_label_table("LabelValue,Name,Color_R,Color_G,Color_B\n1,a,1,2,3\n2,b,1\n", Path::new("x.csv")).expect_err("short");
    assert_eq!(e.line, 3, "{e}");
    let e = parse_label_table("LabelValue,Name,Color_R,Color_G,Color_B\n1,a,1,2,-3\n", Path::new("x.csv")).expect_err("bad blue").to_string();
    assert!(e.contains("line 2") && e.contains("Color_B '-3'"), "{e}");
    let e = parse_label_table("# Color procedural file /x.txt\n# 2 points\n0 0 0 0\n255 1 1 1\n", Path::new("p.txt")).expect_err("procedural").to_string();
    assert!(e.contains("p.txt: line 1") && e.contains("continuous"), "{e}");
    let e = parse_label_table("# Color table file x\n1 liver 1 2\n", Path::new("t.ctbl")).expect_err("short line").to_string();
    assert!(e.contains("t.ctbl: line 2") && e.contains("4 fields"), "{e}");
}

#[test]
fn freesurfer_lut_and_headerless_colour_tables() {
    let (t, f) = sample("FreeSurferColorLUT.txt");
    assert_eq!(f, TableFormat::FreeSurfer);
    assert_eq!(entry(&t, 17), ("Left-Hippocampus", Some([220, 216, 20])));
    assert_eq!(entry(&t, 14175), ("wm_rh_S_temporal_transverse", Some([221, 60, 60])));
    assert_eq!(t.len(), 7);
    // No header: lines ending in a colour are a colour table, with or without alpha.
    let (t, f) = parse_label_table("1 liver 1 2 3 255\n2 spleen 4 5 6 255\n", Path::new("x.ctbl")).expect("parses");
    assert_eq!((f, entry(&t, 2)), (TableFormat::SlicerCtbl, ("spleen", Some([4, 5, 6]))));
    let (t, f) = parse_label_table("1 left lung 1 2 3\n", Path::new("x.txt")).expect("parses");
    assert_eq!((f, entry(&t, 1)), (TableFormat::FreeSurfer, ("left lung", Some([1, 2, 3]))));
    let e = parse_label_table("#No. Label Name: R G B A\n1 a 1 2 3 0\n2 b 1 2 300 0\n", Path::new("lut.txt")).expect_err("300").to_string();
    assert!(e.contains("lut.txt: line 3"), "{e}");
}

#[test]
fn plain_id_name_lists_keep_the_rest_of_the_line() {
    let (t, f) = sample("atlas.txt");
    assert_eq!(f, TableFormat::Plain);
    assert_eq!(entry(&t, 3), ("Superior Frontal Gyrus", None));
    assert_eq!(entry(&t, 700), ("Brain-Stem (caudal)", None));
    assert_eq!(t.len(), 5);
    let e = parse_label_table("1 a\n2 b\nthree c\n", Path::new("a.txt")).expect_err("bad id");
    assert_eq!((e.line, e.problem.as_str()), (3, "'three' is not a label id"));
    let e = parse_label_table("1 a\n65536 b\n", Path::new("a.txt")).expect_err("too big").to_string();
    assert!(e.contains("line 2") && e.contains("65535"), "{e}");
    // A .tsv without tabs is sniffed by content, not refused for its name.
    let (t, f) = parse_label_table("1 liver\n", Path::new("x.tsv")).expect("parses");
    assert_eq!((f, entry(&t, 1)), (TableFormat::Plain, ("liver", None)));
    let (t, f) = sample("organs.tsv");
    assert_eq!((f, entry(&t, 2), entry(&t, 300)), (TableFormat::Tsv, ("right kidney", None), ("vertebra L1", Some([241, 214, 145]))));
}

#[test]
fn names_file_beside() {
    let dir = tempfile::tempdir().expect("tmp");
    let lab = dir.path().join("seg.nii.gz");
    assert_eq!(tsv_beside(&lab), None);
    std::fs::write(dir.path().join("labels.tsv"), "1\ta\n").expect("write");
    assert_eq!(tsv_beside(&lab), Some(dir.path().join("labels.tsv")));
    std::fs::write(dir.path().join("seg.tsv"), "1\ta\n").expect("write");
    assert_eq!(tsv_beside(&lab), Some(dir.path().join("seg.tsv")));
    assert_eq!(tsv_beside(&dir.path().join("seg.seg.nrrd")), Some(dir.path().join("seg.tsv")));
    assert_eq!(tsv_beside(&dir.path().join("seg.mha")), Some(dir.path().join("seg.tsv")));
}

#[test]
fn the_search_order_beside_a_label_map() {
    let dir = tempfile::tempdir().expect("tmp");
    let lab = dir.path().join("ct.nii.gz");
    let order = ["ct.tsv", "ct.txt", "ct_labels.txt", "ct.label", "ct.ctbl", "ct_ColorTable.ctbl", "ct.csv", "labels.tsv", "labels.txt", "FreeSurferColorLUT.txt"];
    assert_eq!(table_candidates("ct"), order);
    assert_eq!(table_beside(&lab), None);
    // Written last to first: each new file is found ahead of the ones before it.
    for name in order.iter().rev() {
        std::fs::write(dir.path().join(name), "1 x\n").expect("write");
        assert_eq!(table_beside(&lab), Some(dir.path().join(name)), "{name}");
    }
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/label_tables/organs.label"), dir.path().join("ct.tsv")).expect("copy");
    let (names, from) = names_beside(&lab).expect("reads").expect("found");
    assert_eq!((entry(&names, 300), from), (("Vertebra L1", Some([220, 180, 140])), dir.path().join("ct.tsv")));
}

#[test]
fn a_bad_names_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let lab = dir.path().join("seg.nii.gz");
    assert_eq!(names_beside(&lab).expect("no file is not an error"), None);
    std::fs::write(dir.path().join("labels.tsv"), "1\tspleen\nxx\tb\n").expect("write");
    let e = names_beside(&lab).expect_err("bad id");
    assert!(e.contains("labels.tsv: line 2"), "{e}");
    std::fs::write(dir.path().join("labels.tsv"), "1\tspleen\n").expect("write");
    let (names, from) = names_beside(&lab).expect("reads").expect("found");
    assert_eq!((names[&1].0.as_str(), from), ("spleen", dir.path().join("labels.tsv")));
    std::fs::write(dir.path().join("seg.label"), "# ITK-SnAP\n1 1 1 1 1 1 1 missing quote\n").expect("write");
    let e = names_beside(&lab).expect_err("bad ITK-SNAP line");
    assert!(e.contains("seg.label: line 2"), "{e}");
}

fn arb_names() -> impl Strategy<Value = LabelNames> {
    let name = "[A-Za-z0-9][A-Za-z0-9 ,()_.'-]{0,20}[A-Za-z0-9]";
    proptest::collection::btree_map(any::<u16>(), (name, proptest::option::of(any::<[u8; 3]>())), 0..20)
}

proptest! {
    /// What ITK-SNAP's writer and the project's `.tsv` writer put out reads back as it was
    /// (ITK-SNAP holds a colour for every label: those without one come back grey).
    #[test]
    fn writers_round_trip(names in arb_names()) {
        let (back, f) = parse_label_table(&itksnap_text(&names), Path::new("x.label")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(f, TableFormat::ItkSnap);
        let grey: LabelNames = names.iter().map(|(&k, (n, c))| (k, (n.clone(), Some(c.unwrap_or([128, 128, 128]))))).collect();
        prop_assert_eq!(back, grey);
        let (back, f) = parse_label_table(&crate::volume::save::label_tsv(&names), Path::new("x.tsv")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(names.is_empty() || f == TableFormat::Tsv);
        prop_assert_eq!(back, names);
    }

    /// No text makes a reader panic.
    #[test]
    fn any_text_is_read_or_refused(text in "(([0-9]{1,6}|#|\"|,|\t| |[a-zA-Z]{1,4}|-1|1e9|NaN|\r?\n){0,30})") {
        for ext in ["x.tsv", "x.txt", "x.ctbl", "x.csv", "x.label"] {
            let _ = parse_label_table(&text, Path::new(ext));
        }
    }
}
