//! A walk over a Part 10 file's element headers that checks every defined value length
//! against the bytes left, before the file is handed to the DICOM parser. The parser sizes its
//! buffers from the length field before it reads, so a corrupt length (a flipped byte in a
//! 1 KB file reading as 4 GB) would otherwise be a multi-gigabyte allocation, filled with
//! zeros, then an error. Found by fuzzing (`tests/fuzz_readers.rs`).
//!
//! The walk follows the file's encoding: the meta group in explicit VR little endian, the data
//! set as its transfer syntax says (implicit / explicit VR, either byte order; a deflated data
//! set is inflated as it is walked, with at most [`DEFLATE_RATIO`] times the compressed bytes
//! left as its budget). It descends into sequences and items (every element of undefined
//! length but PixelData is one, as the parser reads it), and steps over the fragments of
//! encapsulated pixel data. It checks lengths only: anything else is left to the parser.
//!
//! A length must also be a whole number of values for a binary VR (a multiple of 4 for SL, UL,
//! FL, AT…): the parser reads `length / width` values but counts `length` bytes, so a value
//! of 255 bytes for an SL element leaves it 3 bytes out of step with the file, reading text as
//! tags and lengths from there on (a mutated pydicom `JPEG2000.dcm` then asked for 256 MiB;
//! found by fuzzing).

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Largest expansion a deflated data set is allowed (deflate's maximum is about 1032:1).
pub(crate) const DEFLATE_RATIO: u64 = 1100;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const PIXEL_DATA: (u16, u16) = (0x7FE0, 0x0010);

/// An element's tag (group, element), explicit VR if any, and length field.
type ElementHeader = ((u16, u16), Option<[u8; 2]>, u32);

/// The bytes of a file, plain or inflated, with a count of what is left.
enum Source {
    Plain(BufReader<File>),
    Inflated(flate2::read::DeflateDecoder<BufReader<File>>),
}

struct Walk {
    src: Source,
    /// Bytes consumed so far (of the plain file, or of the inflated stream).
    pos: u64,
    /// Most bytes the stream can hold from its start.
    end: u64,
    big_endian: bool,
    explicit: bool,
}

impl Walk {
    fn read(&mut self, buf: &mut [u8]) -> Result<bool, String> {
        let r = match &mut self.src {
            Source::Plain(r) => r.read_exact(buf),
            Source::Inflated(r) => r.read_exact(buf),
        };
        match r {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(format!("cannot read: {e}")),
        }
    }
    fn u16(&self, b: [u8; 2]) -> u16 {
        if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
    }
    fn u32(&self, b: [u8; 4]) -> u32 {
        if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
    }
    /// Steps over `n` value bytes (checked to be there by the caller's length check).
    fn skip(&mut self, n: u64) -> Result<(), String> {
        match &mut self.src {
            Source::Plain(r) => r.seek_relative(n as i64).map_err(|e| format!("cannot read: {e}"))?,
            Source::Inflated(r) => {
                std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(|e| format!("cannot inflate the data set: {e}"))?;
            }
        }
        self.pos += n;
        Ok(())
    }
    /// The next element's tag and length (None at the end of the data); group-2 elements and
    /// item tags are read as the standard says whatever the data set's encoding.
    fn header(&mut self) -> Result<Option<ElementHeader>, String> {
        let mut t = [0u8; 4];
        if !self.read(&mut t)? {
            return Ok(None);
        }
        let tag = (self.u16([t[0], t[1]]), self.u16([t[2], t[3]]));
        let mut b4 = [0u8; 4];
        if tag.0 == 0xFFFE || !self.explicit {
            if !self.read(&mut b4)? {
                return Err(format!("ends inside the header of element ({:04X},{:04X})", tag.0, tag.1));
            }
            return Ok(Some((tag, None, self.u32(b4))));
        }
        let mut vr = [0u8; 2];
        let mut b2 = [0u8; 2];
        if !self.read(&mut vr)? || !self.read(&mut b2)? {
            return Err(format!("ends inside the header of element ({:04X},{:04X})", tag.0, tag.1));
        }
        // The VRs with a 2-byte length (PS3.5 7.1.2); every other one, an unknown one too (the
        // parser reads it as UN), has 2 reserved bytes and a 4-byte length.
        let short = matches!(
            &vr,
            b"AE" | b"AS" | b"AT" | b"CS" | b"DA" | b"DS" | b"DT" | b"FL" | b"FD" | b"IS" | b"LO" | b"LT" | b"PN" | b"SH" | b"SL" | b"SS" | b"ST" | b"TM" | b"UI" | b"UL" | b"US"
        );
        if short {
            return Ok(Some((tag, Some(vr), self.u16(b2) as u32)));
        }
        if !self.read(&mut b4)? {
            return Err(format!("ends inside the header of element ({:04X},{:04X})", tag.0, tag.1));
        }
        Ok(Some((tag, Some(vr), self.u32(b4))))
    }
    /// Walks elements until the stream ends (or, inside encapsulated pixel data, until its
    /// sequence delimiter), checking each defined length.
    fn elements(&mut self) -> Result<(), String> {
        let mut fragments_depth = 0usize;
        while let Some((tag, vr, len)) = self.header()? {
            let left = self.end.saturating_sub(self.pos);
            if len != UNDEFINED && len as u64 > left {
                return Err(format!(
                    "element ({:04X},{:04X}) claims {len} bytes at offset {}, but only {left} are left (corrupt length)",
                    tag.0, tag.1, self.pos
                ));
            }
            if len != UNDEFINED && tag.0 != 0xFFFE {
                let width = match vr {
                    Some(v) => value_width(&v),
                    None => implicit_value_width(tag),
                };
                if !(len as u64).is_multiple_of(width) {
                    let vr = vr.map(|v| String::from_utf8_lossy(&v).into_owned()).unwrap_or_else(|| "(implicit VR)".into());
                    return Err(format!(
                        "element ({:04X},{:04X}) {vr} claims {len} bytes at offset {}, not a whole number of {width}-byte values (corrupt length)",
                        tag.0, tag.1, self.pos
                    ));
                }
            }
            let container = match (tag, vr) {
                (_, _) if tag.0 == 0xFFFE => {
                    // Items hold elements, except the fragments of encapsulated pixel data.
                    if tag == (0xFFFE, 0xE0DD) {
                        fragments_depth = fragments_depth.saturating_sub(1);
                    }
                    tag != ITEM || fragments_depth == 0
                }
                (_, Some(vr)) if &vr == b"SQ" => true,
                // Implicit VR: a sequence is known by its tag, as the parser knows it.
                (_, None) if is_sequence_tag(tag) => true,
                // Only PixelData of undefined length holds fragments; the parser reads any other
                // element of undefined length (OB, OW, UN…) as a sequence of data sets, and so
                // must this walk, or the two part ways (a flipped bit making PixelData
                // (7FE0,0050) had the parser read a fragment's bytes as a 438 MB element).
                (_, _) if len == UNDEFINED => {
                    if tag == PIXEL_DATA {
                        fragments_depth += 1;
                    }
                    true
                }
                _ => false,
            };
            if !container && len != UNDEFINED {
                self.skip(len as u64)?;
            }
        }
        Ok(())
    }
}

/// The size of one value of a binary VR (1 for text and bytes): a defined length must be a
/// multiple of it for the parser to stay in step with the file.
fn value_width(vr: &[u8; 2]) -> u64 {
    match vr {
        b"US" | b"SS" | b"OW" => 2,
        b"UL" | b"SL" | b"FL" | b"AT" | b"OF" | b"OL" => 4,
        b"FD" | b"OD" | b"SV" | b"UV" | b"OV" => 8,
        _ => 1,
    }
}

/// [`value_width`] of the VR the standard dictionary gives a tag (1 when it has none, or
/// several that differ in width): what the parser reads an implicit-VR element as.
fn implicit_value_width(tag: (u16, u16)) -> u64 {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let vr = dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(tag.0, tag.1)).map(|e| e.vr());
    match vr {
        Some(VirtualVr::Exact(v)) => value_width(&v.to_bytes()),
        Some(VirtualVr::Xs) => 2,
        _ => 1,
    }
}

/// Does the standard dictionary say this tag is a sequence?
fn is_sequence_tag(tag: (u16, u16)) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .is_some_and(|e| e.vr() == VirtualVr::Exact(dicom_core::VR::SQ))
}

/// Checks every defined length of the Part 10 file at `path` against the bytes it has left.
/// `Err` names the element; a file too broken to walk (no magic, unreadable meta group) passes,
/// for the parser to refuse with its own words.
pub(crate) fn check_lengths(path: &Path) -> Result<(), String> {
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let file_len = f.metadata().map(|m| m.len()).map_err(|e| format!("cannot stat: {e}"))?;
    f.seek(std::io::SeekFrom::Start(132)).map_err(|e| format!("cannot read: {e}"))?;
    let mut meta = Walk { src: Source::Plain(BufReader::new(f)), pos: 132, end: file_len, big_endian: false, explicit: true };
    // The meta group: its elements, until the first tag of another group.
    let mut syntax = String::new();
    let data_start = loop {
        let start = meta.pos;
        let Some((tag, _, len)) = meta.header()? else { return Ok(()) };
        if tag.0 != 0x0002 {
            break start;
        }
        let left = meta.end.saturating_sub(meta.pos);
        if len == UNDEFINED || len as u64 > left {
            return Err(format!("meta element (0002,{:04X}) claims {len} bytes, but only {left} are left (corrupt length)", tag.1));
        }
        if tag.1 == 0x0010 && len <= 64 {
            let mut v = vec![0u8; len as usize];
            if !meta.read(&mut v)? {
                return Ok(());
            }
            syntax = String::from_utf8_lossy(&v).trim_end_matches(['\0', ' ']).to_string();
        } else {
            meta.skip(len as u64)?;
        }
    };
    let mut f = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    f.seek(std::io::SeekFrom::Start(data_start)).map_err(|e| format!("cannot read: {e}"))?;
    let r = BufReader::new(f);
    let mut walk = match syntax.as_str() {
        "1.2.840.10008.1.2.1.99" => {
            let budget = (file_len - data_start).saturating_mul(DEFLATE_RATIO).saturating_add(1 << 20);
            Walk { src: Source::Inflated(flate2::read::DeflateDecoder::new(r)), pos: 0, end: budget, big_endian: false, explicit: true }
        }
        s => Walk { src: Source::Plain(r), pos: data_start, end: file_len, big_endian: s == "1.2.840.10008.1.2.2", explicit: s != "1.2.840.10008.1.2" },
    };
    walk.elements()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_passes_and_a_corrupt_length_is_named() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom");
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("fixtures").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "dcm") {
                    files.push(p);
                }
            }
        }
        assert!(files.len() > 50);
        for f in &files {
            check_lengths(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
        // A string element's 2-byte length raised past the end of the file.
        let dir = tempfile::tempdir().expect("tmp");
        let src = std::fs::read(files.iter().find(|p| p.ends_with("axial/img003.dcm")).expect("axial")).expect("read");
        let mut walk_at = 132;
        // Skip the meta group (explicit VR little endian, 2-byte lengths for its short VRs).
        while src[walk_at] == 0x02 && src[walk_at + 1] == 0 {
            let vr = &src[walk_at + 4..walk_at + 6];
            let (len, head) = if vr == b"OB" { (u32::from_le_bytes(src[walk_at + 8..walk_at + 12].try_into().expect("4")) as usize, 12) } else { (u16::from_le_bytes([src[walk_at + 6], src[walk_at + 7]]) as usize, 8) };
            walk_at += head + len;
        }
        let mut bad = src.clone();
        // The first data-set element: make its length the largest a 2-byte field holds.
        let vr_is_short = bad[walk_at + 4].is_ascii_uppercase() && !matches!(&bad[walk_at + 4..walk_at + 6], b"OB" | b"OW" | b"SQ" | b"UN" | b"UT");
        assert!(vr_is_short, "fixture starts its data set with a short-VR element");
        bad[walk_at + 6..walk_at + 8].copy_from_slice(&0xFFFFu16.to_le_bytes());
        let p = dir.path().join("bad.dcm");
        std::fs::write(&p, &bad).expect("write");
        let e = check_lengths(&p).expect_err("corrupt length");
        assert!(e.contains("claims 65535 bytes"), "{e}");
    }

    /// Rows (0028,0010) given a 3-byte value: explicit VR by its VR bytes, implicit VR by the
    /// dictionary's US; the parser would read one value and lose a byte's step.
    #[test]
    fn a_length_that_is_not_whole_values_is_named() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/dicom");
        let dir = tempfile::tempdir().expect("tmp");
        // (folder, the element's header bytes, where its length starts, how the VR is named)
        let cases = [("axial", &b"\x28\x00\x10\x00US\x02\x00"[..], 6, "US"), ("implicit", &b"\x28\x00\x10\x00\x02\x00\x00\x00"[..], 4, "(implicit VR)")];
        for (folder, head, len_at, what) in cases {
            let mut bytes = std::fs::read(root.join(folder).join("img003.dcm")).expect("fixture");
            let at = bytes.windows(head.len()).position(|w| w == head).unwrap_or_else(|| panic!("{folder}: Rows"));
            bytes[at + len_at] = 3;
            let p = dir.path().join(format!("{folder}.dcm"));
            std::fs::write(&p, &bytes).expect("write");
            let e = check_lengths(&p).expect_err("3 bytes of US");
            assert!(e.contains("(0028,0010)") && e.contains(what) && e.contains("claims 3 bytes") && e.contains("2-byte values"), "{folder}: {e}");
        }
        let e = check_lengths(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions/dicom-sl-length-not-multiple-of-4/input.dcm")).expect_err("fuzz input");
        assert!(e.contains("(0009,1026) SL claims 255 bytes"), "{e}");
    }
}
