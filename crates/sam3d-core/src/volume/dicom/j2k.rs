//! The image header of a JPEG 2000 frame, checked against the DICOM header before the frame
//! reaches the decoder. openjp2 sizes its work from the codestream's SIZ marker segment, not
//! from Rows and Columns: a codestream declaring 60000 × 60000 pixels in 256 × 1024 tiles kept
//! it busy past the fuzzer's 10 s timeout on a 3 KB file. So the SIZ segment is read here
//! (ISO/IEC 15444-1 A.5.1) and a frame whose image size, component count, bit depth or tile
//! grid disagrees with the DICOM header, or breaks the standard's own limits, is refused.
//!
//! A frame is a bare codestream (what PS3.5 A.4.4 asks for) or, as some writers store it, a
//! JP2 file (ISO/IEC 15444-1 annex I): its boxes are walked to the contiguous codestream box.

use super::header::PixelFormat;

/// Start of codestream, then the SIZ marker: every codestream opens with these four bytes.
const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
/// The JP2 signature box: length 12, type `jP  `, content `<CR><LF><0x87><LF>`.
const JP2_SIGNATURE: [u8; 12] = [0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
/// Tiles are numbered by the 16-bit Isot field of a tile-part header, 0 to 65534.
pub(crate) const MAX_TILES: u64 = 65535;
/// The standard's limits on Csiz and on a component's bit depth.
const MAX_COMPONENTS: u16 = 16384;
const MAX_PRECISION: u8 = 38;

/// One image component as SIZ declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Component {
    /// Bits per sample, 1 to 38.
    pub precision: u8,
    pub signed: bool,
    /// Horizontal and vertical sample separation (subsampling), 1 to 255.
    pub dx: u8,
    pub dy: u8,
}

/// The SIZ marker segment's fields, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Siz {
    /// Reference grid size (Xsiz, Ysiz) and the image offset on it (XOsiz, YOsiz).
    pub grid: [u32; 2],
    pub image_offset: [u32; 2],
    /// Tile size (XTsiz, YTsiz) and the first tile's offset (XTOsiz, YTOsiz).
    pub tile: [u32; 2],
    pub tile_offset: [u32; 2],
    pub components: Vec<Component>,
}

impl Siz {
    /// The image's width and height: Xsiz − XOsiz, Ysiz − YOsiz.
    pub fn image_size(&self) -> [u32; 2] {
        [0, 1].map(|a| self.grid[a] - self.image_offset[a])
    }

    /// Tiles across and down.
    pub fn tiles(&self) -> [u64; 2] {
        [0, 1].map(|a| u64::from(self.grid[a] - self.tile_offset[a]).div_ceil(u64::from(self.tile[a])))
    }
}

/// The codestream of a frame: the frame itself, or a JP2 file's `jp2c` box.
pub(crate) fn codestream(frame: &[u8]) -> Result<&[u8], String> {
    if frame.starts_with(&SOC_SIZ) {
        return Ok(frame);
    }
    if !frame.starts_with(&JP2_SIGNATURE) {
        let head: Vec<String> = frame.iter().take(4).map(|b| format!("{b:02X}")).collect();
        return Err(format!("does not start with a JPEG 2000 codestream (SOC, SIZ) or a JP2 signature box, but with {}", head.join(" ")));
    }
    let mut rest = &frame[JP2_SIGNATURE.len()..];
    while !rest.is_empty() {
        let word = |at: usize, n: usize| rest.get(at..at + n).map(|b| b.iter().fold(0u64, |v, &x| v << 8 | u64::from(x)));
        let (Some(lbox), Some(kind)) = (word(0, 4), rest.get(4..8)) else {
            return Err("JP2: a box header is cut short".into());
        };
        let (len, head) = match lbox {
            0 => (rest.len() as u64, 8), // the last box, to the end
            1 => (word(8, 8).ok_or("JP2: a box's extended length is cut short")?, 16),
            n => (n, 8),
        };
        if len < head || len > rest.len() as u64 {
            return Err(format!("JP2: box '{}' claims {len} bytes, {} are left", String::from_utf8_lossy(kind), rest.len()));
        }
        if kind == b"jp2c" {
            return Ok(&rest[head as usize..len as usize]);
        }
        rest = &rest[len as usize..];
    }
    Err("JP2: no contiguous codestream box (jp2c)".into())
}

/// Reads the SIZ marker segment at the start of a codestream, checking the limits the
/// standard sets on each field.
pub(crate) fn read_siz(cs: &[u8]) -> Result<Siz, String> {
    if !cs.starts_with(&SOC_SIZ) {
        return Err("the codestream does not open with SOC and SIZ markers".into());
    }
    let u16_at = |at: usize| cs.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let u32_at = |at: usize| cs.get(at..at + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    // Offsets from the codestream's start: SOC 0, SIZ 2, Lsiz 4, Rsiz 6, Xsiz 8, … Csiz 40.
    let cut = || "the SIZ marker segment is cut short".to_string();
    let lsiz = u16_at(4).ok_or_else(cut)?;
    let csiz = u16_at(40).ok_or_else(cut)?;
    if csiz == 0 || csiz > MAX_COMPONENTS {
        return Err(format!("SIZ declares {csiz} components (1 to {MAX_COMPONENTS})"));
    }
    if u32::from(lsiz) != 38 + 3 * u32::from(csiz) {
        return Err(format!("SIZ is {lsiz} bytes long, {csiz} components make it {}", 38 + 3 * u32::from(csiz)));
    }
    if cs.len() < 4 + lsiz as usize {
        return Err(cut());
    }
    let field = |at: usize| u32_at(at).unwrap_or(0); // inside the checked length
    let siz = Siz {
        grid: [field(8), field(12)],
        image_offset: [field(16), field(20)],
        tile: [field(24), field(28)],
        tile_offset: [field(32), field(36)],
        components: (0..csiz as usize)
            .map(|c| {
                let s = cs[42 + 3 * c];
                Component { precision: (s & 0x7F) + 1, signed: s & 0x80 != 0, dx: cs[43 + 3 * c], dy: cs[44 + 3 * c] }
            })
            .collect(),
    };
    for (a, axis) in ["X", "Y"].iter().enumerate() {
        let (g, o, t, to) = (siz.grid[a], siz.image_offset[a], siz.tile[a], siz.tile_offset[a]);
        if o >= g {
            return Err(format!("SIZ: the image offset {axis}Osiz {o} is not inside the grid {axis}siz {g}"));
        }
        if t == 0 || to > o || u64::from(to) + u64::from(t) <= u64::from(o) {
            return Err(format!("SIZ: tile size {axis}Tsiz {t} at {axis}TOsiz {to} does not cover the image offset {axis}Osiz {o}"));
        }
    }
    let tiles = siz.tiles();
    if tiles[0] * tiles[1] > MAX_TILES {
        return Err(format!("SIZ: {} × {} tiles of {} × {} is more than the standard numbers ({MAX_TILES})", tiles[0], tiles[1], siz.tile[0], siz.tile[1]));
    }
    for (c, k) in siz.components.iter().enumerate() {
        if k.precision > MAX_PRECISION || k.dx == 0 || k.dy == 0 {
            return Err(format!("SIZ: component {c} has {} bits and sampling {} × {} (at most {MAX_PRECISION} bits, sampling 1 to 255)", k.precision, k.dx, k.dy));
        }
    }
    Ok(siz)
}

/// Refuses a JPEG 2000 frame whose header disagrees with the DICOM header: image size against
/// Columns × Rows, components against SamplesPerPixel, bit depth against BitsAllocated, no
/// subsampling. A bit depth other than BitsStored passes: real files differ (pydicom's
/// `693_J2KI.dcm` stores 14 bits in a 16-bit codestream), and the samples are masked to
/// BitsStored after decoding as for any transfer syntax.
pub(crate) fn check_frame(frame: &[u8], fmt: &PixelFormat) -> Result<(), String> {
    let siz = read_siz(codestream(frame)?)?;
    let [w, h] = siz.image_size();
    if (w as usize, h as usize) != (fmt.cols, fmt.rows) {
        return Err(format!("the codestream's SIZ says {w} × {h} pixels, the DICOM header {} × {} (Columns × Rows)", fmt.cols, fmt.rows));
    }
    if siz.components.len() != fmt.samples_per_pixel as usize {
        return Err(format!("the codestream has {} components, SamplesPerPixel is {}", siz.components.len(), fmt.samples_per_pixel));
    }
    for (c, k) in siz.components.iter().enumerate() {
        if u16::from(k.precision) > fmt.bits_allocated {
            return Err(format!("component {c} of the codestream has {} bits, more than BitsAllocated {}", k.precision, fmt.bits_allocated));
        }
        if (k.dx, k.dy) != (1, 1) {
            return Err(format!("component {c} of the codestream is subsampled {} × {}; DICOM frames are not", k.dx, k.dy));
        }
    }
    Ok(())
}

/// Is this transfer syntax a JPEG 2000 one (Part 1 or High-Throughput), whose frames carry a SIZ?
pub(crate) fn is_j2k(transfer_syntax: &str) -> bool {
    use dicom_dictionary_std::uids;
    [uids::JPEG2000_LOSSLESS, uids::JPEG2000, uids::HTJ2K_LOSSLESS, uids::HTJ2K_LOSSLESS_RPCL, uids::HTJ2K].contains(&transfer_syntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A codestream's SOC and SIZ (and nothing after: the check reads no further).
    fn siz_bytes(grid: [u32; 2], offset: [u32; 2], tile: [u32; 2], tile_offset: [u32; 2], comps: &[(u8, u8, u8)]) -> Vec<u8> {
        let mut b = SOC_SIZ.to_vec();
        b.extend((38 + 3 * comps.len() as u16).to_be_bytes());
        b.extend(0u16.to_be_bytes()); // Rsiz
        for v in [grid, offset, tile, tile_offset].concat() {
            b.extend(v.to_be_bytes());
        }
        b.extend((comps.len() as u16).to_be_bytes());
        for &(s, dx, dy) in comps {
            b.extend([s, dx, dy]);
        }
        b
    }

    fn fmt(cols: usize, rows: usize, spp: u16, bits_allocated: u16) -> PixelFormat {
        PixelFormat { rows, cols, samples_per_pixel: spp, bits_allocated, bits_stored: bits_allocated, high_bit: bits_allocated - 1, signed: true, photometric: "MONOCHROME2".into() }
    }

    /// 256 × 1024, one signed 16-bit component, one tile: pydicom's `JPEG2000.dcm`.
    fn good() -> Vec<u8> {
        siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x8F, 1, 1)])
    }

    fn jp2(codestream: &[u8]) -> Vec<u8> {
        let mut b = JP2_SIGNATURE.to_vec();
        b.extend(20u32.to_be_bytes());
        b.extend(b"ftypjp2 \0\0\0\0jp2 ");
        b.extend((8 + codestream.len() as u32).to_be_bytes());
        b.extend(b"jp2c");
        b.extend(codestream);
        b
    }

    #[test]
    fn a_matching_codestream_passes_bare_or_in_jp2() {
        let f = fmt(256, 1024, 1, 16);
        check_frame(&good(), &f).expect("bare codestream");
        check_frame(&jp2(&good()), &f).expect("JP2 file");
        let siz = read_siz(&good()).expect("siz");
        assert_eq!(siz.image_size(), [256, 1024]);
        assert_eq!(siz.tiles(), [1, 1]);
        assert_eq!(siz.components, vec![Component { precision: 16, signed: true, dx: 1, dy: 1 }]);
        // An image offset on the grid, tiles of 64 starting before it: still 256 × 1024.
        let offset = siz_bytes([266, 1030], [10, 6], [64, 64], [5, 0], &[(0x0B, 1, 1)]);
        check_frame(&offset, &f).expect("offset image, tiled");
        assert_eq!(read_siz(&offset).expect("siz").tiles(), [5, 17]);
    }

    #[test]
    fn each_mismatch_with_the_dicom_header_is_refused() {
        let f = fmt(256, 1024, 1, 16);
        let cases: [(Vec<u8>, &str); 6] = [
            (siz_bytes([60000, 60000], [0, 0], [256, 1024], [0, 0], &[(0x8F, 1, 1)]), "SIZ says 60000 × 60000 pixels, the DICOM header 256 × 1024"),
            (siz_bytes([1024, 256], [0, 0], [1024, 256], [0, 0], &[(0x8F, 1, 1)]), "SIZ says 1024 × 256"),
            (siz_bytes([266, 1024], [0, 0], [266, 1024], [0, 0], &[(0x8F, 1, 1)]), "SIZ says 266 × 1024"),
            (siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x07, 1, 1); 3]), "3 components, SamplesPerPixel is 1"),
            (siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x97, 1, 1)]), "24 bits, more than BitsAllocated 16"),
            (siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x8F, 2, 1)]), "subsampled 2 × 1"),
        ];
        for (bytes, want) in cases {
            let e = check_frame(&bytes, &f).expect_err(want);
            assert!(e.contains(want), "want '{want}', got: {e}");
        }
        // In a JP2 file too.
        let huge = siz_bytes([60000, 60000], [0, 0], [256, 1024], [0, 0], &[(0x8F, 1, 1)]);
        let e = check_frame(&jp2(&huge), &f).expect_err("jp2");
        assert!(e.contains("60000 × 60000"), "{e}");
    }

    #[test]
    fn an_absurd_tile_grid_or_field_is_refused() {
        let f = fmt(256, 1024, 1, 16);
        let cases: [(Vec<u8>, &str); 6] = [
            (siz_bytes([256, 1024], [0, 0], [1, 1], [0, 0], &[(0x8F, 1, 1)]), "256 × 1024 tiles of 1 × 1"),
            (siz_bytes([256, 1024], [0, 0], [0, 1024], [0, 0], &[(0x8F, 1, 1)]), "XTsiz 0"),
            (siz_bytes([266, 1024], [10, 0], [4, 1024], [0, 0], &[(0x8F, 1, 1)]), "does not cover the image offset XOsiz 10"),
            (siz_bytes([266, 1024], [10, 0], [256, 1024], [11, 0], &[(0x8F, 1, 1)]), "XTOsiz 11"),
            (siz_bytes([256, 1024], [256, 0], [256, 1024], [0, 0], &[(0x8F, 1, 1)]), "XOsiz 256 is not inside the grid"),
            (siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x8F, 0, 1)]), "sampling 0 × 1"),
        ];
        for (bytes, want) in cases {
            let e = check_frame(&bytes, &f).expect_err(want);
            assert!(e.contains(want), "want '{want}', got: {e}");
        }
        // Precision 39 and up does not exist.
        let e = read_siz(&siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[(0x26, 1, 1)])).expect_err("39 bits");
        assert!(e.contains("39 bits"), "{e}");
        // Lsiz that does not match Csiz, and no components.
        let mut b = good();
        b[5] += 3;
        assert!(read_siz(&b).expect_err("Lsiz").contains("SIZ is 44 bytes long"));
        let e = read_siz(&siz_bytes([256, 1024], [0, 0], [256, 1024], [0, 0], &[])).expect_err("Csiz 0");
        assert!(e.contains("0 components"), "{e}");
    }

    #[test]
    fn a_truncated_or_foreign_header_is_refused() {
        let f = fmt(256, 1024, 1, 16);
        let full = good();
        for n in [0, 3, 5, 20, 41, full.len() - 1] {
            let e = check_frame(&full[..n], &f).expect_err("truncated");
            assert!(e.contains("cut short") || e.contains("does not start with"), "{n} bytes: {e}");
        }
        let e = check_frame(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], &f).expect_err("a JPEG");
        assert!(e.contains("FF D8 FF E0"), "{e}");
        // A JP2 file without its codestream box, or with a box longer than the file.
        let whole = jp2(&full);
        let e = check_frame(&whole[..32], &f).expect_err("no jp2c");
        assert!(e.contains("no contiguous codestream box"), "{e}");
        let e = check_frame(&whole[..40], &f).expect_err("jp2c cut");
        assert!(e.contains("box 'jp2c' claims"), "{e}");
    }

    /// End to end: the kept input (pydicom's `JPEG2000.dcm` with SIZ raised to 60000 × 60000,
    /// which kept openjp2 busy for more than 10 s) is refused in one line naming the file.
    #[test]
    fn the_reader_refuses_a_frame_larger_than_its_header_by_name() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz_regressions/dicom-j2k-siz-larger-than-rows/input.dcm");
        let e = crate::volume::open(&path).expect_err("refused").to_string();
        assert!(e.contains("input.dcm") && e.contains("JPEG 2000 frame 0: the codestream's SIZ says 60000 × 60000 pixels, the DICOM header 256 × 1024"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
