//! Pixel data to `f32`: each file decoded on rayon's pool (its frames too, for multi-frame
//! objects), stored values masked to BitsStored, sign-extended when PixelRepresentation is 1,
//! then `value × RescaleSlope + RescaleIntercept` (per frame for enhanced objects). Each frame
//! is written straight into its slice of the volume: no second copy of the series.

use super::header::{FileHeader, Frame, PixelFormat};
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::{Array3, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// The most voxels a series may have (8 GiB of f32): a header claiming more is refused before
/// anything is allocated.
pub const MAX_VOXELS: u64 = 1 << 31;

/// Is this transfer syntax one this build decodes? `Err` names it.
pub(crate) fn check_transfer_syntax(uid: &str) -> Result<(), String> {
    match TransferSyntaxRegistry.get(uid) {
        None => Err(format!("unknown transfer syntax {uid}")),
        Some(ts) if !ts.can_decode_all() => Err(format!(
            "transfer syntax {} ({uid}) is not supported by this build (it decodes uncompressed, deflate, RLE, JPEG baseline/extended/lossless and JPEG 2000)",
            ts.name()
        )),
        Some(_) => Ok(()),
    }
}

/// A transfer syntax's name (its UID when unknown), for listings.
pub(crate) fn transfer_syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry.get(uid).map(|ts| ts.name().to_string()).unwrap_or_else(|| uid.to_string())
}

/// Is the pixel format one this reader turns into a scalar volume? `Err` says why not.
pub(crate) fn check_format(fmt: &PixelFormat) -> Result<(), String> {
    if fmt.samples_per_pixel != 1 || !fmt.photometric.starts_with("MONOCHROME") {
        return Err(format!(
            "{} with {} samples per pixel is a colour image, not a scalar volume",
            fmt.photometric, fmt.samples_per_pixel
        ));
    }
    if !matches!(fmt.bits_allocated, 8 | 16 | 32) {
        return Err(format!("BitsAllocated {} is not supported (8, 16 or 32)", fmt.bits_allocated));
    }
    Ok(())
}

/// Decodes the frames `sorted` (slice k = `sorted[k]`) of `files` into a `[k, j, i]` volume.
pub(crate) fn decode_stack(files: &[FileHeader], sorted: &[&Frame], fmt: &PixelFormat) -> Result<Array3<f32>, (usize, String)> {
    let Some(first) = sorted.first() else {
        return Err((0, "no frames to decode".into()));
    };
    let total = (sorted.len() as u64).saturating_mul(fmt.rows as u64 * fmt.cols as u64);
    if total > MAX_VOXELS {
        return Err((first.file, format!("{} × {} × {} voxels is more than this reader allocates ({MAX_VOXELS})", fmt.cols, fmt.rows, sorted.len())));
    }
    let mut data = Array3::<f32>::zeros((sorted.len(), fmt.rows, fmt.cols));
    // Each file's frames with the slices they fill; slices are disjoint, so files decode in
    // parallel, each writing only its own slices.
    let mut by_file: BTreeMap<usize, Vec<(&Frame, ArrayViewMut2<f32>)>> = BTreeMap::new();
    for (frame, slab) in sorted.iter().zip(data.axis_iter_mut(Axis(0))) {
        by_file.entry(frame.file).or_default().push((frame, slab));
    }
    by_file
        .into_iter()
        .collect::<Vec<_>>()
        .into_par_iter()
        .try_for_each(|(file, slabs)| decode_file(&files[file], fmt, slabs).map_err(|e| (file, e)))?;
    Ok(data)
}

fn decode_file(h: &FileHeader, fmt: &PixelFormat, slabs: Vec<(&Frame, ArrayViewMut2<f32>)>) -> Result<(), String> {
    check_transfer_syntax(&h.transfer_syntax)?;
    let obj = OpenFileOptions::new().open_file(&h.path).map_err(|e| format!("cannot read: {e}"))?;
    if h.transfer_syntax == dicom_dictionary_std::uids::RLE_LOSSLESS {
        check_rle_fragments(&obj)?;
    }
    let multi = h.number_of_frames > 1;
    let j2k = super::j2k::is_j2k(&h.transfer_syntax);
    slabs.into_par_iter().try_for_each(|(frame, mut slab)| {
        if j2k {
            check_j2k_frame(&obj, if multi { frame.number } else { 0 }, fmt)?;
        }
        let decoded = guarded_decode(|| if multi { obj.decode_pixel_data_frame(frame.number) } else { obj.decode_pixel_data() })
            .map_err(|p| format!("cannot decode frame {}: the decoder failed on corrupt data ({p})", frame.number))?;
        let px = decoded.map_err(|e| format!("cannot decode frame {}: {}", frame.number, with_causes(&e)))?;
        if px.rows() as usize != fmt.rows || px.columns() as usize != fmt.cols || px.samples_per_pixel() != 1 {
            return Err(format!(
                "decoded frame {} is {}×{}×{} samples, the header says {}×{}×1",
                frame.number,
                px.columns(),
                px.rows(),
                px.samples_per_pixel(),
                fmt.cols,
                fmt.rows
            ));
        }
        let out = slab.as_slice_mut().ok_or("internal: a slice of the volume is not contiguous")?;
        to_f32(px.data(), fmt, frame.slope, frame.intercept, out).map_err(|e| format!("frame {}: {e}", frame.number))
    })
}

/// Checks each RLE fragment's 64-byte header (PS3.5 G.5: 1–15 segments, offsets inside the
/// fragment) before the RLE decoder trusts it: it allocates the segment count it reads (a
/// corrupt count asked for 16 GiB, found by fuzzing) and indexes by the offsets.
pub(crate) fn check_rle_fragments(obj: &dicom_object::DefaultDicomObject) -> Result<(), String> {
    let Ok(px) = obj.element(dicom_dictionary_std::tags::PIXEL_DATA) else { return Ok(()) };
    for (i, f) in px.value().fragments().unwrap_or(&[]).iter().enumerate() {
        let word = |k: usize| f.get(4 * k..4 * k + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        let n = word(0).filter(|&n| (1..=15).contains(&n) && f.len() >= 64);
        let Some(n) = n else {
            return Err(format!("RLE fragment {}: its header does not hold 1 to 15 segments in 64 bytes (corrupt)", i + 1));
        };
        let offsets: Vec<usize> = (1..=n).filter_map(word).collect();
        if offsets.iter().any(|&o| o < 64 || o >= f.len()) || offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("RLE fragment {}: segment offsets {offsets:?} do not lie in its {} bytes in order (corrupt)", i + 1, f.len()));
        }
    }
    Ok(())
}

/// Checks a JPEG 2000 frame's SIZ against the header (`j2k.rs`) on the very bytes the decoder
/// would be given.
pub(crate) fn check_j2k_frame(obj: &dicom_object::DefaultDicomObject, index: u32, fmt: &PixelFormat) -> Result<(), String> {
    use dicom_encoding::adapters::PixelDataObject;
    let data = obj.frame_pixel_data(index).ok_or_else(|| format!("JPEG 2000 frame {index}: no such frame in the pixel data"))?;
    super::j2k::check_frame(&data, fmt).map_err(|e| format!("JPEG 2000 frame {index}: {e}"))
}

/// Runs a codec of the DICOM crates, turning a panic inside it into an error. Their RLE decoder
/// indexes past its buffer on some corrupt segments (found by fuzzing, `tests/fuzz_readers.rs`),
/// and the codecs are not ours to fix: a corrupt file must be an error naming it, not a crash
/// of the viewer's loader.
pub(crate) fn guarded_decode<T>(decode: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).map_err(|p| {
        p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "panic".into())
    })
}

/// An error and its sources, `a: b: c` (the decoders' own reasons are in the sources).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    s
}

/// Stored samples (native byte order, `bits_allocated` wide) to real values.
pub(crate) fn to_f32(raw: &[u8], fmt: &PixelFormat, slope: f64, intercept: f64, out: &mut [f32]) -> Result<(), String> {
    let width = (fmt.bits_allocated as usize).div_ceil(8);
    let need = out.len() * width;
    if raw.len() < need {
        return Err(format!("pixel data has {} bytes, {} × {} pixels need {need}", raw.len(), fmt.cols, fmt.rows));
    }
    // Mask to BitsStored (the stored bits end at HighBit) and sign-extend when signed.
    let stored = fmt.bits_stored.clamp(1, fmt.bits_allocated) as u32;
    let shift = (fmt.high_bit as u32 + 1).saturating_sub(stored).min(fmt.bits_allocated as u32 - stored);
    let mask: u64 = (1u64 << stored) - 1;
    let signed = fmt.signed;
    let value = move |v: u32| -> f64 {
        let v = (v as u64 >> shift) & mask;
        if signed && v >> (stored - 1) & 1 == 1 { v as f64 - (1u64 << stored) as f64 } else { v as f64 }
    };
    let raw = &raw[..need];
    match width {
        1 => out.iter_mut().zip(raw).for_each(|(o, &b)| *o = (value(b as u32) * slope + intercept) as f32),
        2 => out.iter_mut().zip(raw.chunks_exact(2)).for_each(|(o, b)| {
            *o = (value(u16::from_ne_bytes([b[0], b[1]]) as u32) * slope + intercept) as f32
        }),
        4 => out.iter_mut().zip(raw.chunks_exact(4)).for_each(|(o, b)| {
            *o = (value(u32::from_ne_bytes([b[0], b[1], b[2], b[3]])) * slope + intercept) as f32
        }),
        _ => return Err(format!("BitsAllocated {} is not supported", fmt.bits_allocated)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(bits_allocated: u16, bits_stored: u16, signed: bool) -> PixelFormat {
        PixelFormat {
            rows: 1,
            cols: 3,
            samples_per_pixel: 1,
            bits_allocated,
            bits_stored,
            high_bit: bits_stored - 1,
            signed,
            photometric: "MONOCHROME2".into(),
        }
    }

    fn conv(raw: &[u8], f: &PixelFormat, slope: f64, icpt: f64) -> Vec<f32> {
        let mut out = vec![0f32; 3];
        to_f32(raw, f, slope, icpt, &mut out).expect("converts");
        out
    }

    #[test]
    fn signed_and_unsigned_samples_with_rescale() {
        let raw: Vec<u8> = [-1000i16, 0, 1500].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(conv(&raw, &fmt(16, 16, true), 1.0, -1024.0), vec![-2024.0, -1024.0, 476.0]);
        let raw: Vec<u8> = [0u16, 4000, 65535].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(conv(&raw, &fmt(16, 16, false), 2.5, -10.0), vec![-10.0, 9990.0, 163827.5]);
        assert_eq!(conv(&[0, 128, 255], &fmt(8, 8, false), 1.0, 0.0), vec![0.0, 128.0, 255.0]);
        assert_eq!(conv(&[0, 128, 255], &fmt(8, 8, true), 1.0, 0.0), vec![0.0, -128.0, -1.0]);
        let raw: Vec<u8> = [-70000i32, 5, 70000].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(conv(&raw, &fmt(32, 32, true), 1.0, 0.0), vec![-70000.0, 5.0, 70000.0]);
    }

    #[test]
    fn twelve_stored_bits_are_masked_and_sign_extended() {
        // 0xF800 has garbage in the top 4 bits; the 12 stored bits are 0x800 = -2048 signed.
        let raw: Vec<u8> = [0xF800u16, 0x07FF, 0x1001].iter().flat_map(|v| v.to_ne_bytes()).collect();
        assert_eq!(conv(&raw, &fmt(16, 12, true), 1.0, 0.0), vec![-2048.0, 2047.0, 1.0]);
        assert_eq!(conv(&raw, &fmt(16, 12, false), 1.0, 0.0), vec![2048.0, 2047.0, 1.0]);
    }

    #[test]
    fn short_pixel_data_is_an_error_not_a_panic() {
        let mut out = vec![0f32; 3];
        let e = to_f32(&[1, 2, 3], &fmt(16, 16, false), 1.0, 0.0, &mut out).expect_err("short");
        assert!(e.contains("3 bytes") && e.contains("need 6"), "{e}");
    }
}
