//! The readers under test, what each is asked to do with an input, and their seed files: the
//! checked-in fixtures (nothing copied), with hints about where their structure is.

use super::mutate::Hints;
use sam3d_core::volume::{self, dicom, label_names, nrrd};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One reader (or family of entry points) fuzzed on its own budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    Nifti,
    Dicom,
    Nrrd,
    SegNrrd,
    MetaImage,
    LabelTable,
}

impl Reader {
    pub const ALL: [Reader; 6] = [Reader::Nifti, Reader::Dicom, Reader::Nrrd, Reader::SegNrrd, Reader::MetaImage, Reader::LabelTable];

    pub fn name(self) -> &'static str {
        match self {
            Reader::Nifti => "nifti",
            Reader::Dicom => "dicom",
            Reader::Nrrd => "nrrd",
            Reader::SegNrrd => "seg",
            Reader::MetaImage => "mha",
            Reader::LabelTable => "table",
        }
    }

    pub fn from_name(s: &str) -> Option<Reader> {
        Reader::ALL.into_iter().find(|r| r.name() == s)
    }

    /// Runs every entry point of this reader on `path`; true when the main one (opening the
    /// volume, the segmentation or the table) succeeded. Errors are fine; panics, hangs and
    /// huge allocations are what the harness looks for.
    pub fn exercise(self, path: &Path) -> bool {
        match self {
            Reader::Nifti => {
                let ok = volume::open(path).is_ok();
                // The viewer's reading: integers straight into their narrow type.
                let _ = volume::StoredVolume::open(path, None);
                let _ = volume::open_labels(path);
                let _ = volume::read_info(path).map(|i| i.stream_stats());
                ok
            }
            Reader::Dicom => {
                let ok = volume::open(path).is_ok();
                let _ = dicom::list_series(path.parent().unwrap_or(Path::new(".")));
                // A DICOM SEG opens as labels (the others are refused by name).
                let seg = volume::open_labels(path).is_ok();
                ok || seg
            }
            Reader::Nrrd | Reader::MetaImage => {
                let ok = volume::open(path).is_ok();
                let _ = volume::StoredVolume::open(path, None);
                let _ = volume::open_labels(path);
                ok
            }
            Reader::SegNrrd => {
                let ok = nrrd::seg::read_segmentation(path).is_ok();
                let _ = label_names::names_beside(path);
                let _ = volume::open(path);
                ok
            }
            Reader::LabelTable => label_names::read_label_table(path).is_ok(),
        }
    }
}

/// One file of a seed: its name, its bytes (inflated when `gz`), and hints for mutating them.
#[derive(Clone, Debug)]
pub struct SeedFile {
    pub name: String,
    pub bytes: Vec<u8>,
    pub gz: bool,
    pub hints: Hints,
}

/// A seed input: the file the reader opens (`files[0]`) and the files that must sit beside it
/// (a detached header's data, a DICOM file's series).
#[derive(Clone, Debug)]
pub struct Seed {
    pub files: Vec<SeedFile>,
}

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn list(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

pub fn gunzip(b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(b).read_to_end(&mut out).ok()?;
    Some(out)
}

pub fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = e.write_all(b);
    e.finish().unwrap_or_default()
}

fn seed_file(path: &Path, reader: Reader) -> Option<SeedFile> {
    let raw = std::fs::read(path).ok()?;
    let name = name_of(path);
    let (bytes, gz) = match raw.starts_with(&[0x1f, 0x8b]).then(|| gunzip(&raw)).flatten() {
        Some(b) => (b, true),
        None => (raw, false),
    };
    let hints = match reader {
        Reader::Nifti if name.ends_with(".img") => Hints::default(),
        Reader::Nifti => nifti_hints(&bytes),
        Reader::Dicom => dicom_hints(&bytes),
        Reader::LabelTable => Hints { all_text: true, ..Hints::default() },
        _ => text_hints(&bytes),
    };
    Some(SeedFile { name, bytes, gz, hints })
}

fn seed(paths: &[PathBuf], reader: Reader) -> Option<Seed> {
    let files: Vec<SeedFile> = paths.iter().filter_map(|p| seed_file(p, reader)).collect();
    (files.len() == paths.len()).then_some(Seed { files })
}

/// The seeds of a reader, from the checked-in fixtures.
pub fn seeds(reader: Reader) -> Vec<Seed> {
    let data = crate_dir().join("tests/data");
    let nrrd_dir = data.join("nrrd");
    let with = |main: &str, others: &[&str], dir: &Path| {
        let mut v = vec![dir.join(main)];
        v.extend(others.iter().map(|o| dir.join(o)));
        seed(&v, reader)
    };
    let by_suffix = |dir: &Path, keep: &dyn Fn(&str) -> bool| -> Vec<Seed> {
        list(dir).into_iter().filter(|p| keep(&name_of(p))).filter_map(|p| seed(&[p], reader)).collect()
    };
    match reader {
        Reader::Nifti => {
            let dir = crate_dir().join("../../tests/data/nifti_cases");
            let mut v = by_suffix(&dir, &|n| n.ends_with(".nii") || n.ends_with(".nii.gz"));
            v.extend(with("pair.hdr", &["pair.img"], &dir));
            v
        }
        Reader::Nrrd => {
            let mut v = by_suffix(&nrrd_dir, &|n| n.ends_with(".nrrd") && !n.ends_with(".seg.nrrd"));
            v.extend(with("detached.nhdr", &["detached.raw.gz"], &nrrd_dir));
            v
        }
        Reader::SegNrrd => by_suffix(&nrrd_dir, &|n| n.ends_with(".seg.nrrd")),
        Reader::MetaImage => {
            let mut v = by_suffix(&nrrd_dir, &|n| n.ends_with(".mha"));
            v.extend(with("meta_detached.mhd", &["meta_detached.raw"], &nrrd_dir));
            v
        }
        Reader::LabelTable => by_suffix(&data.join("label_tables"), &|_| true),
        Reader::Dicom => {
            let mut v = dicom_seeds(&data.join("dicom"));
            // DICOM SEGs (highdicom's, pydicom-seg's), each on its own; LABELMAP ones too (8 bits
            // native and RLE, 16 bits).
            v.extend(by_suffix(&data.join("seg_read"), &|n| n.ends_with(".dcm")));
            v.extend(by_suffix(&data.join("seg_labelmap"), &|n| n == "hd_labelmap8.dcm" || n == "hd_labelmap8_rle.dcm" || n == "hd_labelmap_palette.dcm"));
            v
        }
    }
}

/// One seed per DICOM file, with the other files of its folder beside it.
fn dicom_seeds(dir: &Path) -> Vec<Seed> {
    let mut out = Vec::new();
    let files: Vec<PathBuf> = list(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "dcm")).collect();
    for (i, f) in files.iter().enumerate() {
        let mut v = vec![f.clone()];
        v.extend(files.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, p)| p.clone()));
        out.extend(seed(&v, Reader::Dicom));
    }
    for sub in list(dir).into_iter().filter(|p| p.is_dir()) {
        out.extend(dicom_seeds(&sub));
    }
    out
}

/// A text header's length (through its blank line, or its `ElementDataFile` line).
fn text_hints(b: &[u8]) -> Hints {
    let mut boundaries = Vec::new();
    let mut end = b.len();
    let mut at = 0;
    for line in b.split_inclusive(|&c| c == b'\n') {
        at += line.len();
        boundaries.push(at);
        if line == b"\n" || line == b"\r\n" || line.starts_with(b"ElementDataFile") {
            end = at;
            break;
        }
    }
    Hints { boundaries, text_header: end, ..Hints::default() }
}

/// NIfTI-1 / NIfTI-2 header fields (offset, width) and where the header ends.
fn nifti_hints(b: &[u8]) -> Hints {
    let first = b.get(..4).map(|s| [s[0], s[1], s[2], s[3]]).unwrap_or_default();
    let n2 = u32::from_le_bytes(first) == 540 || u32::from_be_bytes(first) == 540;
    let mut fields = vec![(0, 4)];
    if n2 {
        fields.extend([(4, 8), (12, 2), (14, 2), (168, 8), (176, 8), (184, 8), (344, 4), (348, 4)]);
        fields.extend((0..8).map(|i| (16 + 8 * i, 8)));
        fields.extend((0..8).map(|i| (104 + 8 * i, 8)));
        fields.extend((0..18).map(|i| (352 + 8 * i, 8)));
        Hints { fields, boundaries: vec![540, 544], ..Hints::default() }
    } else {
        fields.extend([(68, 2), (70, 2), (72, 2), (74, 2), (108, 4), (112, 4), (116, 4), (120, 2), (122, 1), (123, 1), (252, 2), (254, 2), (344, 4)]);
        fields.extend((0..8).map(|i| (40 + 2 * i, 2)));
        fields.extend((0..8).map(|i| (76 + 4 * i, 4)));
        fields.extend((0..18).map(|i| (256 + 4 * i, 4)));
        let vox = b.get(108..112).map(|s| f32::from_le_bytes([s[0], s[1], s[2], s[3]])).filter(|v| v.is_finite() && *v >= 0.0 && *v < 1e6);
        let mut boundaries = vec![348, 352];
        boundaries.extend(vox.map(|v| v as usize));
        Hints { fields, boundaries, ..Hints::default() }
    }
}

/// Element starts, length fields and short values of a Part 10 file, walked as explicit VR
/// little endian (implicit VR guessed when the VR bytes are not letters); the walk stops where
/// it stops making sense (big endian, deflate), which is fine for hints.
fn dicom_hints(b: &[u8]) -> Hints {
    let mut h = Hints { boundaries: vec![128, 132], ..Hints::default() };
    let mut at = 132usize;
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]) as usize);
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize);
    for _ in 0..2000 {
        let Some(vr) = b.get(at + 4..at + 6) else { break };
        h.boundaries.push(at);
        let (len_at, width, head) = if vr.iter().all(|c| c.is_ascii_uppercase()) {
            if matches!(vr, b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN" | b"OD" | b"OL" | b"OV" | b"UC" | b"UR" | b"SV" | b"UV") {
                (at + 8, 4, 12)
            } else {
                (at + 6, 2, 8)
            }
        } else {
            (at + 4, 4, 8)
        };
        let Some(len) = (if width == 2 { u16_at(len_at) } else { u32_at(len_at) }) else { break };
        h.fields.push((len_at, width));
        if len == 0xFFFF_FFFF || (u16_at(at) == Some(0xFFFE)) {
            at += head; // undefined length or an item: step inside
            continue;
        }
        if len == 2 || len == 4 {
            h.fields.push((at + head, len));
        }
        at = match at.checked_add(head + len) {
            Some(n) if n <= b.len() => n,
            _ => break,
        };
    }
    h
}
