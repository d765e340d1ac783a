//! NIfTI-1/NIfTI-2 reading and writing (`.nii`, `.nii.gz`, and `.hdr`/`.img` pairs on read).
//!
//! Reading keeps on-disk order (`[k, j, i]`), converting and scaling each sample. A
//! single-member gzip file whose trailer gives the expected size (what most tools write) is
//! inflated whole by libdeflate and converted (or summarised, for `info`) in parallel chunks;
//! every other file is streamed through a decoder 1 MB at a time, so peak memory is the output
//! plus small buffers. Both give the same values. Every size is checked against the file
//! before anything large is allocated.
//! Writing goes to a temporary file beside the target, then renames it; `.gz` output is
//! compressed in parallel as a multi-member gzip stream (readable by every gzip reader).

use super::header::{AffineSource, DataType, NiftiHeader, NiftiVersion, header_size, qform_params};
use super::VolumeError;
use crate::geometry::{GridShape, RasFromVoxel};
use ndarray::{Array3, ArrayView3};
use rayon::prelude::*;
use std::fs::File;
use super::rawdata::read_full;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Largest plausible gzip expansion (deflate's maximum ratio is about 1032:1).
const MAX_GZIP_RATIO: u64 = 1100;
const CHUNK_BYTES: usize = 1 << 20;

/// Everything known about a file before its voxels are read.
#[derive(Clone, Debug)]
pub struct NiftiInfo {
    pub path: PathBuf,
    pub header: NiftiHeader,
    pub shape: GridShape,
    pub frames: u64,
    pub dtype: DataType,
    pub ras_from_voxel: RasFromVoxel,
    pub affine_source: AffineSource,
    pub scaling: Option<(f64, f64)>,
    pub gzipped: bool,
    data_path: PathBuf,
    data_offset: u64,
}

/// A decoded sample type: how raw file values (after scaling, as f64) become `Self`.
pub trait Sample: bytemuck::Pod + Default + Send + Sync + 'static {
    /// Converts; returns `None` for a value the type cannot hold.
    fn from_f64(x: f64) -> Option<Self>;
    const KIND: &'static str;
}

impl Sample for f32 {
    #[inline(always)]
    fn from_f64(x: f64) -> Option<Self> {
        Some(x as f32)
    }
    const KIND: &'static str = "intensity";
}

impl Sample for u16 {
    #[inline(always)]
    fn from_f64(x: f64) -> Option<Self> {
        ((0.0..=65535.0).contains(&x) && x.fract() == 0.0).then_some(x as u16)
    }
    const KIND: &'static str = "label (whole numbers 0..65535)";
}

/// The integer types a scan is held in ([`super::StoredVolume`]): only exact values.
macro_rules! exact_sample {
    ($t:ty) => {
        impl Sample for $t {
            #[inline(always)]
            fn from_f64(x: f64) -> Option<Self> {
                ((<$t>::MIN as f64..=<$t>::MAX as f64).contains(&x) && x.fract() == 0.0).then_some(x as $t)
            }
            const KIND: &'static str = concat!("whole number in the range of ", stringify!($t));
        }
    };
}
exact_sample!(i16);
exact_sample!(u8);

fn err(path: &Path, problem: impl Into<String>) -> VolumeError {
    VolumeError::new(path, problem)
}

fn io_problem(e: &std::io::Error) -> String {
    let msg = e.to_string();
    use std::io::ErrorKind as K;
    if matches!(e.kind(), K::InvalidInput | K::InvalidData | K::UnexpectedEof)
        || msg.contains("deflate")
        || msg.contains("gzip")
    {
        format!("gzip data is corrupt or truncated ({msg})")
    } else {
        msg
    }
}

fn is_gzip(path: &Path) -> Result<bool, VolumeError> {
    let mut f = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let mut m = [0u8; 2];
    let n = read_full(&mut f, &mut m).map_err(|e| err(path, io_problem(&e)))?;
    Ok(n == 2 && m == [0x1f, 0x8b])
}

fn open_stream(path: &Path) -> Result<(Box<dyn Read + Send>, bool), VolumeError> {
    let gz = is_gzip(path)?;
    let f = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let r = BufReader::with_capacity(1 << 16, f);
    if gz {
        Ok((Box::new(flate2::read::MultiGzDecoder::new(r)), true))
    } else {
        Ok((Box::new(r), false))
    }
}


fn skip(r: &mut impl Read, mut n: u64) -> std::io::Result<u64> {
    let mut buf = [0u8; 8192];
    let mut done = 0;
    while n > 0 {
        let want = n.min(buf.len() as u64) as usize;
        let got = read_full(r, &mut buf[..want])?;
        done += got as u64;
        if got < want {
            break;
        }
        n -= got as u64;
    }
    Ok(done)
}

fn file_len(path: &Path) -> Result<u64, VolumeError> {
    std::fs::metadata(path).map(|m| m.len()).map_err(|e| err(path, format!("cannot stat: {e}")))
}

/// Reads and validates the header of a NIfTI file (no voxel data).
pub fn read_info(path: &Path) -> Result<NiftiInfo, VolumeError> {
    let (mut r, gz) = open_stream(path)?;
    let info = read_info_from(path, &mut r, gz)?;
    Ok(info)
}

fn read_info_from(path: &Path, r: &mut impl Read, gz: bool) -> Result<NiftiInfo, VolumeError> {
    let mut buf = vec![0u8; 540];
    let n = read_full(r, &mut buf[..4]).map_err(|e| err(path, io_problem(&e)))?;
    if n == 0 {
        return Err(err(path, "file is empty"));
    }
    if n < 4 {
        return Err(err(path, "file is too short to be NIfTI"));
    }
    let (version, _) = super::header::sniff([buf[0], buf[1], buf[2], buf[3]]).map_err(|p| err(path, p))?;
    let hs = header_size(version);
    let got = read_full(r, &mut buf[4..hs]).map_err(|e| err(path, io_problem(&e)))?;
    if got < hs - 4 {
        return Err(err(path, format!("file ends inside the header ({} of {hs} bytes)", got + 4)));
    }
    let header = NiftiHeader::parse(&buf[..hs]).map_err(|p| err(path, p))?;
    let dtype = header.datatype().map_err(|p| err(path, p))?;
    if header.bitpix != 0 && header.bitpix as usize != dtype.size_bytes() * 8 {
        log::warn!("{}: bitpix {} does not match datatype {}; using the datatype", path.display(), header.bitpix, dtype.name());
    }
    let (shape, frames) = header.grid().map_err(|p| err(path, p))?;
    let (ras_from_voxel, affine_source) = header.ras_from_voxel().map_err(|p| err(path, p))?;
    let scaling = header.scaling().map_err(|p| err(path, p))?;
    let data_offset = header.data_offset().map_err(|p| err(path, p))?;
    let data_path = if header.single_file {
        path.to_path_buf()
    } else {
        paired_image_path(path)?
    };
    let info = NiftiInfo {
        path: path.to_path_buf(),
        header,
        shape,
        frames,
        dtype,
        ras_from_voxel,
        affine_source,
        scaling,
        gzipped: gz,
        data_path,
        data_offset,
    };
    // Size checks before any allocation.
    let need = info.data_bytes();
    let dgz = if info.header.single_file { gz } else { is_gzip(&info.data_path)? };
    let have = file_len(&info.data_path)?;
    if !dgz && have < data_offset.saturating_add(need) {
        return Err(err(
            &info.data_path,
            format!(
                "file is {have} bytes but the header needs {} bytes of voxel data from offset {data_offset} (truncated, or wrong dimensions)",
                need
            ),
        ));
    }
    if !dgz && data_offset > have {
        return Err(err(path, format!("vox_offset {data_offset} is past the end of the file ({have} bytes)")));
    }
    // The offset counts too: a corrupt vox_offset of 2^35 in a NIfTI-2 `.nii.gz` once sized
    // the whole-file inflate buffer (found by fuzzing).
    if dgz && data_offset.saturating_add(need) > have.saturating_mul(MAX_GZIP_RATIO) + (1 << 20) {
        return Err(err(
            path,
            format!("header claims {need} bytes of voxel data from offset {data_offset}, impossible for a {have}-byte gzip file (corrupt dimensions or vox_offset)"),
        ));
    }
    Ok(info)
}

fn paired_image_path(hdr: &Path) -> Result<PathBuf, VolumeError> {
    let s = hdr.to_string_lossy();
    let candidates: Vec<String> = if let Some(stem) = s.strip_suffix(".hdr.gz") {
        vec![format!("{stem}.img.gz"), format!("{stem}.img")]
    } else if let Some(stem) = s.strip_suffix(".hdr") {
        vec![format!("{stem}.img"), format!("{stem}.img.gz")]
    } else {
        return Err(err(hdr, "header says the voxels are in a separate .img file, but this file is not a .hdr"));
    };
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| err(hdr, format!("image file {} is missing", candidates[0])))
}

impl NiftiInfo {
    /// Bytes of voxel data for one 3D frame.
    pub fn frame_bytes(&self) -> u64 {
        self.shape.len() as u64 * self.dtype.size_bytes() as u64
    }
    /// Bytes of voxel data the header describes (all frames).
    pub fn data_bytes(&self) -> u64 {
        self.frame_bytes().saturating_mul(self.frames)
    }
    pub fn spacing_mm(&self) -> [f64; 3] {
        self.ras_from_voxel.column_norms()
    }

    /// Reads the voxels of the (single) 3D frame as `T`, applying scaling. A gzip file inflated
    /// whole is converted in parallel chunks; the values are the same as streamed.
    pub fn read_data<T: Sample>(&self) -> Result<Array3<T>, VolumeError> {
        self.check_3d()?;
        let out = match self.inflate_in_place::<T>() {
            Some((out, bad)) => {
                if let Some(x) = bad {
                    return Err(err(&self.path, format!("value {x} cannot be a {}", T::KIND)));
                }
                out
            }
            None => {
                let mut out: Vec<T> = Vec::with_capacity(self.shape.len());
                self.stream_file::<T>(|chunk| out.extend_from_slice(chunk))?;
                out
            }
        };
        Array3::from_shape_vec(self.shape.array_shape(), out)
            .map_err(|e| err(&self.path, format!("internal shape error: {e}")))
    }

    /// Min/max/mean of the (scaled) voxels: the volume is never held in memory as `f32`. A gzip
    /// file inflated whole is summarised in parallel chunks, absorbed in order (the same
    /// statistics as one pass).
    pub fn stream_stats(&self) -> Result<super::Stats, VolumeError> {
        let mut acc = super::StatsAccumulator::default();
        let Some(whole) = self.whole_data()? else {
            self.stream_file::<f32>(|chunk| acc.add(chunk))?;
            return Ok(acc.finish());
        };
        let bpp = self.dtype.size_bytes();
        let raw = &whole[self.data_offset as usize..];
        let parts: Vec<(Option<f64>, super::ChunkStats)> = raw
            .par_chunks((CHUNK_BYTES / bpp).max(1) * bpp)
            .map(|c| {
                let mut conv = vec![0f32; c.len() / bpp];
                let bad = decode_slice(c, self.dtype, self.header.big_endian, self.scaling, &mut conv);
                (bad, super::ChunkStats::of(&conv))
            })
            .collect();
        for (bad, part) in &parts {
            if let Some(x) = bad {
                return Err(err(&self.path, format!("value {x} cannot be a {}", f32::KIND)));
            }
            acc.absorb(part);
        }
        Ok(acc.finish())
    }

    /// The whole file inflated, when it is one gzip member holding one frame (see
    /// [`inflate_whole`](Self::inflate_whole)); a 4D file is refused as by [`stream`](Self::stream).
    fn whole_data(&self) -> Result<Option<Vec<u8>>, VolumeError> {
        self.check_3d()?;
        Ok(self.inflate_whole())
    }

    fn check_3d(&self) -> Result<(), VolumeError> {
        if self.frames > 1 {
            return Err(err(
                &self.path,
                format!(
                    "4D file with {} frames ({}×{}); sam3d-studio opens 3D volumes — extract one frame first",
                    self.frames, self.shape, self.frames
                ),
            ));
        }
        Ok(())
    }

    /// Decodes the voxel data in order, handing converted chunks (about 1 MB each) to `sink`.
    pub fn stream<T: Sample>(&self, mut sink: impl FnMut(&[T])) -> Result<(), VolumeError> {
        let bpp = self.dtype.size_bytes();
        if let Some(whole) = self.whole_data()? {
            // Fast path: the whole single-member gzip file inflated at once (libdeflate).
            let data = &whole[self.data_offset as usize..];
            let mut conv: Vec<T> = Vec::with_capacity(CHUNK_BYTES / bpp);
            let mut bad: Option<f64> = None;
            for raw in data.chunks((CHUNK_BYTES / bpp).max(1) * bpp) {
                conv.clear();
                decode_chunk(raw, self.dtype, self.header.big_endian, self.scaling, &mut conv, &mut bad);
                if let Some(x) = bad {
                    return Err(err(&self.path, format!("value {x} cannot be a {}", T::KIND)));
                }
                sink(&conv);
            }
            return Ok(());
        }
        self.stream_file(sink)
    }

    /// [`stream`](Self::stream) reading the file through a decoder, 1 MB at a time (what every
    /// file but a single-member gzip one of known size needs).
    fn stream_file<T: Sample>(&self, mut sink: impl FnMut(&[T])) -> Result<(), VolumeError> {
        self.check_3d()?;
        let n = self.shape.len();
        let bpp = self.dtype.size_bytes();
        let (mut r, _) = open_stream(&self.data_path)?;
        let consumed = if self.header.single_file {
            // Re-read past the header (cheap) so we stay a pure stream.
            header_size(self.header.version) as u64
        } else {
            0
        };
        let to_skip = self.data_offset.saturating_sub(consumed);
        if consumed > 0 {
            skip(&mut r, consumed).map_err(|e| err(&self.path, io_problem(&e)))?;
        }
        let skipped = skip(&mut r, to_skip).map_err(|e| err(&self.data_path, io_problem(&e)))?;
        if skipped < to_skip {
            return Err(err(&self.data_path, format!("vox_offset {} is past the end of the data", self.data_offset)));
        }
        let mut buf = vec![0u8; (CHUNK_BYTES / bpp).max(1) * bpp];
        let mut conv: Vec<T> = Vec::with_capacity(buf.len() / bpp);
        let mut bad: Option<f64> = None;
        let mut done = 0usize;
        while done < n {
            let want = ((n - done) * bpp).min(buf.len());
            let got = read_full(&mut r, &mut buf[..want]).map_err(|e| err(&self.data_path, io_problem(&e)))?;
            if got < want {
                let total = done * bpp + got;
                return Err(err(
                    &self.data_path,
                    format!("data ends after {total} of {} bytes (file truncated?)", n * bpp),
                ));
            }
            conv.clear();
            decode_chunk(&buf[..want], self.dtype, self.header.big_endian, self.scaling, &mut conv, &mut bad);
            if let Some(x) = bad {
                return Err(err(&self.path, format!("value {x} cannot be a {}", T::KIND)));
            }
            sink(&conv);
            done += want / bpp;
        }
        Ok(())
    }
}

impl NiftiInfo {
    /// The lengths of a single-member gzip NIfTI file that holds exactly the header, extensions
    /// and one frame of data, as its gzip trailer says: `(compressed, inflated)`. `None` for
    /// anything else (uncompressed, multi-member, 4D, or a trailer that disagrees).
    fn whole_gzip_lengths(&self) -> Option<(usize, usize)> {
        if !(self.gzipped && self.header.single_file && self.frames == 1) {
            return None;
        }
        let expected = self.data_offset.checked_add(self.frame_bytes())?;
        let mut f = File::open(&self.path).ok()?;
        let comp_len = f.metadata().ok()?.len();
        if comp_len < 18 || expected > comp_len.saturating_mul(MAX_GZIP_RATIO) + (1 << 20) {
            return None;
        }
        f.seek(SeekFrom::End(-4)).ok()?;
        let mut tail = [0u8; 4];
        f.read_exact(&mut tail).ok()?;
        if u32::from_le_bytes(tail) as u64 != expected & 0xffff_ffff {
            return None;
        }
        Some((usize::try_from(comp_len).ok()?, usize::try_from(expected).ok()?))
    }

    /// Inflates a single-member gzip NIfTI file in one call when its gzip trailer says it holds
    /// exactly the header, extensions and one frame of data — libdeflate is about twice as fast
    /// as streaming zlib. Anything else (multi-member streams, corrupt or truncated files)
    /// returns `None`, and the streaming reader handles it and reports any problem.
    fn inflate_whole(&self) -> Option<Vec<u8>> {
        let (comp_len, expected) = self.whole_gzip_lengths()?;
        let comp = std::fs::read(&self.path).ok()?;
        if comp.len() != comp_len {
            return None;
        }
        let mut out = vec![0u8; expected];
        let mut d = libdeflater::Decompressor::new();
        match d.gzip_decompress(&comp, &mut out) {
            Ok(n) if n == expected => Some(out),
            _ => None,
        }
    }

    /// [`inflate_whole`](Self::inflate_whole) and the conversion to `T` in one buffer, which
    /// becomes the array: the compressed file is read into its front, inflated behind it, and
    /// the samples are converted toward the front, in parallel waves that never overtake unread
    /// samples ([`convert_in_place`]). Peak memory is the larger of the array and the compressed
    /// plus inflated bytes; for int16 read as float32 it is the array. Returns the samples and
    /// the first value (in file order) `T` cannot hold; `None` as for `inflate_whole`.
    fn inflate_in_place<T: Sample>(&self) -> Option<(Vec<T>, Option<f64>)> {
        let (comp_len, expected) = self.whole_gzip_lengths()?;
        let n = self.shape.len();
        let (bpp, size) = (self.dtype.size_bytes(), std::mem::size_of::<T>());
        let off = usize::try_from(self.data_offset).ok()?;
        // Where the samples start once inflated: behind the compressed bytes and the header,
        // and at least as far along as widening every sample needs.
        let start = (comp_len + off).max(n.checked_mul(size.saturating_sub(bpp))?);
        let total = start.checked_add(expected - off)?.max(n.checked_mul(size)?);
        let mut buf = vec![T::default(); total.div_ceil(size)];
        {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf);
            let (front, back) = bytes.split_at_mut(start - off);
            File::open(&self.path).ok()?.read_exact(&mut front[..comp_len]).ok()?;
            let mut d = libdeflater::Decompressor::new();
            match d.gzip_decompress(&front[..comp_len], &mut back[..expected]) {
                Ok(got) if got == expected => {}
                _ => return None,
            }
        }
        let bad = convert_in_place::<T>(bytemuck::cast_slice_mut(&mut buf), start, n, self.dtype, self.header.big_endian, self.scaling);
        buf.truncate(n);
        buf.shrink_to_fit();
        Some((buf, bad))
    }
}

/// Converts the `n` samples stored at `bytes[start..]` into `T`s at the front of `bytes` (sample
/// `i` to `bytes[i·size_of::<T>()..]`). Needs `start ≥ n·(size_of::<T>() − stored size)`, so that
/// writing sample `i` never reaches a sample not yet read. Samples that keep their size are
/// converted where they lie, in parallel chunks; widened ones in parallel waves (the samples
/// whose output lies wholly before the first unread byte: half the rest, for int16 → float32);
/// narrowed ones after moving to the front, in waves that grow. Returns the first value (in file
/// order) `T` cannot hold; the values are those of [`decode_slice`] over the whole data.
fn convert_in_place<T: Sample>(bytes: &mut [u8], mut start: usize, n: usize, dt: DataType, be: bool, scale: Option<(f64, f64)>) -> Option<f64> {
    let (bpp, size) = (dt.size_bytes(), std::mem::size_of::<T>());
    let per = (CHUNK_BYTES / bpp).max(1);
    if size <= bpp && start > 0 {
        bytes.copy_within(start..start + n * bpp, 0);
        start = 0;
    }
    if size == bpp {
        let bads: Vec<Option<f64>> = bytes[..n * bpp]
            .par_chunks_mut(per * bpp)
            .map(|c| {
                let mut conv = vec![T::default(); c.len() / bpp];
                let bad = decode_slice(c, dt, be, scale, &mut conv);
                c.copy_from_slice(bytemuck::cast_slice(&conv));
                bad
            })
            .collect();
        return bads.into_iter().flatten().next();
    }
    let mut first_bad = None;
    let mut conv: Vec<T> = Vec::new();
    let mut s = 0;
    while s < n {
        // Samples s..e can all be written before the first unread byte, start + bpp·s.
        let e = ((start + bpp * s) / size).min(n);
        let bad = if e >= s + 2 * per {
            let (front, unread) = bytes.split_at_mut(start + bpp * s);
            let out: &mut [T] = bytemuck::cast_slice_mut(&mut front[size * s..size * e]);
            let bad = decode_par(&unread[..bpp * (e - s)], dt, be, scale, out);
            s = e;
            bad
        } else {
            // One chunk through a buffer: its output ends at or before the next unread sample.
            let e = (s + per).min(n);
            conv.clear();
            conv.resize(e - s, T::default());
            let bad = decode_slice(&bytes[start + bpp * s..start + bpp * e], dt, be, scale, &mut conv);
            bytes[size * s..size * e].copy_from_slice(bytemuck::cast_slice(&conv));
            s = e;
            bad
        };
        first_bad = first_bad.or(bad);
    }
    first_bad
}

macro_rules! decode_as {
    ($raw:expr, $ty:ty, $be:expr, $scale:expr, $out:expr, $bad:expr) => {{
        const W: usize = std::mem::size_of::<$ty>();
        let it = $raw.chunks_exact(W).map(|c| {
            let mut a = [0u8; W];
            a.copy_from_slice(c);
            if $be { <$ty>::from_be_bytes(a) } else { <$ty>::from_le_bytes(a) }
        });
        match $scale {
            None => {
                for (o, v) in $out.iter_mut().zip(it) {
                    let x = v as f64;
                    match T::from_f64(x) {
                        Some(t) => *o = t,
                        None => {
                            $bad.get_or_insert(x);
                            *o = T::default()
                        }
                    }
                }
            }
            Some((s, i)) => {
                for (o, v) in $out.iter_mut().zip(it) {
                    let x = v as f64 * s + i;
                    match T::from_f64(x) {
                        Some(t) => *o = t,
                        None => {
                            $bad.get_or_insert(x);
                            *o = T::default()
                        }
                    }
                }
            }
        }
    }};
}

/// Appends the samples of `raw` (whole samples) to `out` as `T`; the first value `T` cannot
/// hold goes to `bad` (its sample becomes `T::default()`).
pub(super) fn decode_chunk<T: Sample>(
    raw: &[u8],
    dt: DataType,
    be: bool,
    scale: Option<(f64, f64)>,
    out: &mut Vec<T>,
    bad: &mut Option<f64>,
) {
    let start = out.len();
    out.resize(start + raw.len() / dt.size_bytes(), T::default());
    if let Some(x) = decode_slice(raw, dt, be, scale, &mut out[start..]) {
        bad.get_or_insert(x);
    }
}

/// Converts the samples of `raw` into `out` (one per sample); returns the first value `T`
/// cannot hold (its sample becomes `T::default()`).
pub(super) fn decode_slice<T: Sample>(raw: &[u8], dt: DataType, be: bool, scale: Option<(f64, f64)>, out: &mut [T]) -> Option<f64> {
    let mut bad = None;
    match dt {
        DataType::Uint8 => decode_as!(raw, u8, be, scale, out, bad),
        DataType::Int8 => decode_as!(raw, i8, be, scale, out, bad),
        DataType::Int16 => decode_as!(raw, i16, be, scale, out, bad),
        DataType::Uint16 => decode_as!(raw, u16, be, scale, out, bad),
        DataType::Int32 => decode_as!(raw, i32, be, scale, out, bad),
        DataType::Uint32 => decode_as!(raw, u32, be, scale, out, bad),
        DataType::Int64 => decode_as!(raw, i64, be, scale, out, bad),
        DataType::Uint64 => decode_as!(raw, u64, be, scale, out, bad),
        DataType::Float32 => decode_as!(raw, f32, be, scale, out, bad),
        DataType::Float64 => decode_as!(raw, f64, be, scale, out, bad),
    }
    bad
}

/// [`decode_slice`] in parallel chunks of about 1 MB of `raw`; the first value (in file order)
/// `T` cannot hold. The same values as one pass.
fn decode_par<T: Sample>(raw: &[u8], dt: DataType, be: bool, scale: Option<(f64, f64)>, out: &mut [T]) -> Option<f64> {
    let per = (CHUNK_BYTES / dt.size_bytes()).max(1);
    let bads: Vec<Option<f64>> = out
        .par_chunks_mut(per)
        .zip(raw.par_chunks(per * dt.size_bytes()))
        .map(|(o, r)| decode_slice(r, dt, be, scale, o))
        .collect();
    bads.into_iter().flatten().next()
}

/// How to write a volume.
#[derive(Clone, Copy, Debug)]
pub struct WriteOptions {
    /// On-disk datatype; values are rounded (integers) and clamped to its range.
    pub dtype: DataType,
    /// `qform_code` and `sform_code` (both set to the affine). 2 = aligned anatomy.
    pub xform_code: i16,
    /// gzip level for `.gz` paths (1 = fastest).
    pub gzip_level: u32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self { dtype: DataType::Float32, xform_code: 2, gzip_level: 1 }
    }
}

/// A value that can be written to a NIfTI file; each is exactly an `f32` too.
pub trait WriteSample: Copy + Send + Sync {
    fn to_f64(self) -> f64;
    fn to_f32(self) -> f32;
}
impl WriteSample for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_f32(self) -> f32 {
        self
    }
}
impl WriteSample for u16 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}
impl WriteSample for i16 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}
impl WriteSample for u8 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
}

/// Builds a NIfTI-1 single-file header (little-endian) for the given grid and affine.
pub fn build_header(shape: GridShape, ras_from_voxel: &RasFromVoxel, opts: &WriteOptions, descrip: &str) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_i32 = |h: &mut Vec<u8>, o: usize, v: i32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f64| h[o..o + 4].copy_from_slice(&(v as f32).to_le_bytes());
    put_i32(&mut h, 0, 348);
    h[39] = 0; // dim_info
    let dims = [3i16, shape.ni as i16, shape.nj as i16, shape.nk as i16, 1, 1, 1, 1];
    for (n, d) in dims.iter().enumerate() {
        put_i16(&mut h, 40 + 2 * n, *d);
    }
    put_i16(&mut h, 70, opts.dtype.code());
    put_i16(&mut h, 72, (opts.dtype.size_bytes() * 8) as i16);
    let m = *ras_from_voxel.matrix();
    let (quat, qoff, zooms, qfac) = qform_params(&m);
    let pixdim = [qfac, zooms[0], zooms[1], zooms[2], 1.0, 1.0, 1.0, 1.0];
    for (n, p) in pixdim.iter().enumerate() {
        put_f32(&mut h, 76 + 4 * n, *p);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, 1.0); // scl_slope
    put_f32(&mut h, 116, 0.0); // scl_inter
    h[123] = 2 | 8; // mm, seconds
    let d = descrip.as_bytes();
    let n = d.len().min(79);
    h[148..148 + n].copy_from_slice(&d[..n]);
    put_i16(&mut h, 252, opts.xform_code);
    put_i16(&mut h, 254, opts.xform_code);
    for i in 0..3 {
        put_f32(&mut h, 256 + 4 * i, quat[i]);
        put_f32(&mut h, 268 + 4 * i, qoff[i]);
    }
    for r in 0..3 {
        for c in 0..4 {
            put_f32(&mut h, 280 + 16 * r + 4 * c, m[(r, c)]);
        }
    }
    h[344..348].copy_from_slice(b"n+1\0");
    // 348..352: extension flag, all zero.
    h
}

/// Appends `data` as little-endian `dt` samples: integers rounded half away from zero and
/// clamped to the type's range (NaN → 0), floats as they are.
pub(super) fn encode_into(data: &[impl WriteSample], dt: DataType, out: &mut Vec<u8>) {
    let (lo, hi) = dt.range();
    macro_rules! enc {
        ($ty:ty, $round:expr) => {{
            out.reserve(data.len() * std::mem::size_of::<$ty>());
            for v in data {
                let x = v.to_f64();
                let x = if $round { x.round().clamp(lo, hi) } else { x };
                let x = if x.is_nan() && $round { 0.0 } else { x };
                out.extend_from_slice(&(x as $ty).to_le_bytes());
            }
        }};
    }
    // Types whose range lies inside i32's: rounded in f32 without a libm call (the samples are
    // exact f32s, so this is the f64 path's value; `encode_matches_the_f64_rounding`).
    macro_rules! enc_small {
        ($ty:ty) => {{
            const W: usize = std::mem::size_of::<$ty>();
            let start = out.len();
            out.resize(start + data.len() * W, 0);
            let (lo, hi) = (lo as i32, hi as i32);
            for (o, v) in out[start..].chunks_exact_mut(W).zip(data) {
                o.copy_from_slice(&(round_clamp_i32(v.to_f32(), lo, hi) as $ty).to_le_bytes());
            }
        }};
    }
    match dt {
        DataType::Uint8 => enc_small!(u8),
        DataType::Int8 => enc_small!(i8),
        DataType::Int16 => enc_small!(i16),
        DataType::Uint16 => enc_small!(u16),
        DataType::Int32 => enc_small!(i32),
        DataType::Uint32 => enc!(u32, true),
        DataType::Int64 => enc!(i64, true),
        DataType::Uint64 => enc!(u64, true),
        DataType::Float32 => {
            let start = out.len();
            out.resize(start + data.len() * 4, 0);
            for (o, v) in out[start..].chunks_exact_mut(4).zip(data) {
                o.copy_from_slice(&v.to_f32().to_le_bytes());
            }
        }
        DataType::Float64 => enc!(f64, false),
    }
}

/// `x` rounded half away from zero and clamped to `lo..=hi` (which holds 0), NaN → 0: the value
/// of `(x as f64).round().clamp(lo, hi)`. `x as i32` truncates (saturating), `x − trunc(x)` is
/// exact in f32, and a saturated truncation stays past the clamp.
#[inline(always)]
fn round_clamp_i32(x: f32, lo: i32, hi: i32) -> i32 {
    let t = x as i32;
    let frac = x - t as f32;
    let r = if frac >= 0.5 {
        t.saturating_add(1)
    } else if frac <= -0.5 {
        t.saturating_sub(1)
    } else {
        t
    };
    r.clamp(lo, hi)
}

/// Writes `data` (C-order `[k, j, i]`) as NIfTI-1 to `path` (`.nii` or `.nii.gz`), atomically.
pub fn write_nifti<T: WriteSample>(
    path: &Path,
    data: ArrayView3<T>,
    ras_from_voxel: &RasFromVoxel,
    opts: &WriteOptions,
) -> Result<(), VolumeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        return Err(err(path, "output must end in .nii or .nii.gz"));
    }
    let shape = GridShape::from_array_shape(data.shape());
    if shape.ijk().iter().any(|&n| n > i16::MAX as usize) {
        return Err(err(path, format!("grid {shape} is too large for NIfTI-1 (32767 per axis)")));
    }
    let header = build_header(shape, ras_from_voxel, opts, "sam3d-studio");
    let flat = super::c_order(&data);
    let flat: &[T] = &flat;
    let per = ((4 << 20) / opts.dtype.size_bytes()).max(1);
    let gz = name.ends_with(".gz");
    atomic_write(path, |f| {
        write_parts(f, &header, gz.then_some(opts.gzip_level), flat.len().div_ceil(per), |c, raw| {
            encode_into(&flat[c * per..((c + 1) * per).min(flat.len())], opts.dtype, raw)
        })
    })
}

/// Writes a grid's voxels as NIfTI-1 (`.nii` or `.nii.gz`), atomically, as [`write_nifti`] does,
/// asking `fill_slices(k0, out)` for runs of whole slices (C order, from slice `k0`), in
/// parallel: each run is encoded (and compressed) as soon as it is computed, so the grid is
/// never whole in memory as `T`. The bytes are those of `write_nifti` of the filled grid, but
/// for where gzip members begin (about 4 MB of whole slices each).
pub fn write_nifti_by_slices<T: WriteSample + Default>(
    path: &Path,
    shape: GridShape,
    ras_from_voxel: &RasFromVoxel,
    opts: &WriteOptions,
    fill_slices: impl Fn(usize, &mut [T]) + Sync,
) -> Result<(), VolumeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if !(name.ends_with(".nii") || name.ends_with(".nii.gz")) {
        return Err(err(path, "output must end in .nii or .nii.gz"));
    }
    if shape.ijk().iter().any(|&n| n > i16::MAX as usize) {
        return Err(err(path, format!("grid {shape} is too large for NIfTI-1 (32767 per axis)")));
    }
    let header = build_header(shape, ras_from_voxel, opts, "sam3d-studio");
    let slice = (shape.ni * shape.nj).max(1);
    let slices_per = ((4 << 20) / opts.dtype.size_bytes() / slice).max(1);
    let gz = name.ends_with(".gz");
    atomic_write(path, |f| {
        write_parts(f, &header, gz.then_some(opts.gzip_level), shape.nk.div_ceil(slices_per), |c, raw| {
            let k0 = c * slices_per;
            let mut buf = vec![T::default(); (slices_per.min(shape.nk - k0)) * slice];
            fill_slices(k0, &mut buf);
            encode_into(&buf, opts.dtype, raw)
        })
    })
}

/// Writes `header`, then parts `0..n` in order, `part(c, raw)` appending part `c`'s bytes to an
/// empty `raw`. Parts are made in parallel. With `gzip` (a level), the header and each part
/// become one gzip member each (a multi-member gzip stream, which every gzip reader reads as
/// one), all compressed before any is written; uncompressed parts are made a window of a few
/// per thread at a time, so memory stays a few parts per thread.
fn write_parts(f: &mut impl Write, header: &[u8], gzip: Option<u32>, n: usize, part: impl Fn(usize, &mut Vec<u8>) + Sync) -> std::io::Result<()> {
    match gzip {
        Some(level) => f.write_all(&gzip_bytes(header, level)?)?,
        None => f.write_all(header)?,
    }
    let window = if gzip.is_some() { n.max(1) } else { 4 * rayon::current_num_threads().max(1) };
    for first in (0..n).step_by(window) {
        let made: Vec<std::io::Result<Vec<u8>>> = (first..(first + window).min(n))
            .into_par_iter()
            .map(|c| {
                let mut raw = Vec::new();
                part(c, &mut raw);
                match gzip {
                    Some(level) => gzip_bytes(&raw, level),
                    None => Ok(raw),
                }
            })
            .collect();
        for m in made {
            f.write_all(&m?)?;
        }
    }
    Ok(())
}

/// One gzip member of `raw` (libdeflate: at level 1 it is faster than zlib's level 1 and its
/// output a quarter smaller on CT data). Levels past libdeflate's range are clamped to it.
fn gzip_bytes(raw: &[u8], level: u32) -> std::io::Result<Vec<u8>> {
    let lvl = libdeflater::CompressionLvl::new(level.clamp(1, 12) as i32).unwrap_or_else(|_| libdeflater::CompressionLvl::fastest());
    let mut c = libdeflater::Compressor::new(lvl);
    let mut out = vec![0u8; c.gzip_compress_bound(raw.len())];
    let n = c.gzip_compress(raw, &mut out).map_err(|e| std::io::Error::other(format!("gzip: {e}")))?;
    out.truncate(n);
    Ok(out)
}

/// Writes through a temporary file in the target's directory, then renames it into place, so
/// an existing file is never half-overwritten.
pub fn atomic_write(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), VolumeError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let f = File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(path, format!("cannot write: {e}")));
    }
    Ok(())
}

/// The version a file would be written as (always NIfTI-1 here; NIfTI-2 is read-only).
pub fn write_version() -> NiftiVersion {
    NiftiVersion::Nifti1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{StatsAccumulator, Stats};

    /// The statistics as the reader computed them before chunks were summarised in parallel:
    /// one pass, NaNs skipped, each block of 1024 summed in `f32`, block sums in `f64`.
    fn sequential_stats(chunks: &[&[f32]]) -> Stats {
        let (mut lo, mut hi, mut sum, mut n, mut nan) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0usize, 0usize);
        for c in chunks {
            for block in c.chunks(1024) {
                let mut part = 0f32;
                for &x in block {
                    if x.is_nan() {
                        nan += 1;
                        continue;
                    }
                    lo = lo.min(x);
                    hi = hi.max(x);
                    part += x;
                    n += 1;
                }
                sum += part as f64;
            }
        }
        Stats { min: lo as f64, max: hi as f64, mean: sum / n as f64, nan_count: nan }
    }

    fn noisy(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) as f32 / 65536.0 - 100.0) * 37.3
            })
            .collect()
    }

    #[test]
    fn side_by_side_block_sums_equal_one_pass_bit_for_bit() {
        for len in [0usize, 1, 1000, 1024, 8191, 8192, 8193, 65536 * 3 + 517] {
            let mut v = noisy(len, len as u32 + 7);
            if len > 3000 {
                v[17] = f32::NAN;
                v[2900] = f32::NAN;
            }
            let mut acc = StatsAccumulator::default();
            acc.add(&v);
            let want = sequential_stats(&[&v]);
            let got = acc.finish();
            assert_eq!(got.nan_count, want.nan_count, "len {len}");
            if len > 0 {
                assert_eq!((got.min, got.max), (want.min, want.max), "len {len}");
                assert_eq!(got.mean.to_bits(), want.mean.to_bits(), "len {len}: {} vs {}", got.mean, want.mean);
            }
            // The parallel summary of a whole array is the same as its one pass too.
            let par = crate::volume::stats_of(&v);
            assert_eq!(par.nan_count, want.nan_count);
            if len > 0 {
                assert_eq!(par.mean.to_bits(), want.mean.to_bits(), "len {len}");
            }
        }
    }

    fn raw_i16(v: &[i16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn parallel_decode_equals_one_pass_and_reports_the_first_bad_value() {
        let n = 3 * CHUNK_BYTES / 2 + 123;
        let vals: Vec<i16> = (0..n).map(|i| ((i * 7919) % 4096) as i16 - 1024).collect();
        let raw = raw_i16(&vals);
        for scale in [None, Some((0.5, -3.25))] {
            let mut one = Vec::new();
            let mut bad = None;
            decode_chunk::<f32>(&raw, DataType::Int16, false, scale, &mut one, &mut bad);
            let mut par = vec![0f32; n];
            assert_eq!(decode_par(&raw, DataType::Int16, false, scale, &mut par), None);
            assert!(bad.is_none() && one == par, "{scale:?}");
        }
        // Labels: negative values cannot be u16; the first in file order is named, whichever
        // chunk finishes first.
        let mut labels = vec![0u16; n];
        let first_bad = vals.iter().position(|&v| v < 0).expect("negatives");
        assert_eq!(decode_par(&raw, DataType::Int16, false, None, &mut labels), Some(vals[first_bad] as f64));
    }

    #[test]
    fn encode_matches_the_f64_rounding() {
        let mut xs: Vec<f32> = vec![
            0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 0.50000006, 127.5, -128.5, 255.5, 256.0,
            32767.5, -32768.5, 32766.5, 65535.5, -1.0, 8388607.5, 8388608.0, 16777217.0, 2147483520.0, -2147483648.0,
            2147483648.0, 3e9, -3e9, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MIN_POSITIVE, f32::MAX, f32::MIN,
        ];
        xs.extend(noisy(20_000, 3));
        xs.extend(noisy(20_000, 4).iter().map(|x| x * 1000.0));
        xs.extend((0..2000).map(|i| i as f32 * 0.25 - 250.0));
        for dt in [DataType::Uint8, DataType::Int8, DataType::Int16, DataType::Uint16, DataType::Int32, DataType::Float32] {
            let (lo, hi) = dt.range();
            let mut want = Vec::new();
            for &v in &xs {
                let x = v as f64;
                let r = x.round().clamp(lo, hi);
                let r = if r.is_nan() { 0.0 } else { r };
                match dt {
                    DataType::Uint8 => want.extend_from_slice(&(r as u8).to_le_bytes()),
                    DataType::Int8 => want.extend_from_slice(&(r as i8).to_le_bytes()),
                    DataType::Int16 => want.extend_from_slice(&(r as i16).to_le_bytes()),
                    DataType::Uint16 => want.extend_from_slice(&(r as u16).to_le_bytes()),
                    DataType::Int32 => want.extend_from_slice(&(r as i32).to_le_bytes()),
                    _ => want.extend_from_slice(&v.to_le_bytes()),
                }
            }
            let mut got = vec![9u8; 3];
            encode_into(&xs, dt, &mut got);
            assert_eq!(&got[..3], &[9, 9, 9], "{dt:?}: appends");
            assert!(got[3..] == want[..], "{dt:?}");
        }
    }

    /// The whole inflated stream of a (possibly multi-member) gzip file.
    fn gunzip(p: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(File::open(p).expect("open")).read_to_end(&mut out).expect("gunzip");
        out
    }

    /// Writing slab by slab gives the bytes `write_nifti` gives of the whole array (inflated),
    /// as a multi-member gzip stream the reader reads back; `.nii` too.
    #[test]
    fn writing_by_slices_equals_writing_the_array() {
        let dir = tempfile::tempdir().expect("tempdir");
        let aff = RasFromVoxel::scale_translate([0.7, -0.8, 2.0], [1.0, 2.0, 3.0]);
        // 131×97 int16 slices: 5 MB of f32, so several slices per member and a short last one.
        for (dtype, shape) in [(DataType::Int16, GridShape::new(131, 97, 331)), (DataType::Float32, GridShape::new(7, 5, 3)), (DataType::Uint8, GridShape::new(1, 1, 1))] {
            let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 31 + j * 17 + k * 7) % 3000) as f32 * 0.37 - 500.0);
            let flat = data.as_slice().expect("C order");
            let opts = WriteOptions { dtype, ..Default::default() };
            for ext in ["nii.gz", "nii"] {
                let (a, b) = (dir.path().join(format!("a.{ext}")), dir.path().join(format!("b.{ext}")));
                write_nifti(&a, data.view(), &aff, &opts).expect("write");
                let slice = shape.ni * shape.nj;
                write_nifti_by_slices(&b, shape, &aff, &opts, |k0, out: &mut [f32]| out.copy_from_slice(&flat[k0 * slice..k0 * slice + out.len()])).expect("write");
                if ext == "nii.gz" {
                    assert_eq!(gunzip(&a), gunzip(&b), "{dtype:?}");
                    let members = std::fs::read(&b).expect("read").windows(3).filter(|w| w == &[0x1f, 0x8b, 8]).count();
                    assert!(shape.nk < 100 || members > 2, "{dtype:?}: {members} members");
                } else {
                    assert_eq!(std::fs::read(&a).expect("read"), std::fs::read(&b).expect("read"), "{dtype:?}");
                }
                let back = read_info(&b).expect("info").read_data::<f32>().expect("read");
                assert_eq!(back, read_info(&a).expect("info").read_data::<f32>().expect("read"), "{dtype:?} {ext}");
            }
        }
        let e = write_nifti_by_slices(&dir.path().join("x.nrrd"), GridShape::new(1, 1, 1), &aff, &WriteOptions::default(), |_, _: &mut [f32]| {}).expect_err("not NIfTI");
        assert!(e.to_string().contains("x.nrrd"), "{e}");
    }

    /// Raw samples of `dt` (each from an `i64` pattern), in either byte order.
    fn raw_of(dt: DataType, be: bool, n: usize) -> Vec<u8> {
        let v = |i: usize| ((i * 7919) % 3001) as i64 - 1000;
        macro_rules! put {
            ($ty:ty) => {
                (0..n).flat_map(|i| { let x = v(i) as $ty; if be { x.to_be_bytes().to_vec() } else { x.to_le_bytes().to_vec() } }).collect()
            };
        }
        match dt {
            DataType::Uint8 => put!(u8),
            DataType::Int8 => put!(i8),
            DataType::Int16 => put!(i16),
            DataType::Uint16 => put!(u16),
            DataType::Int32 => put!(i32),
            DataType::Uint32 => put!(u32),
            DataType::Int64 => put!(i64),
            DataType::Uint64 => put!(u64),
            DataType::Float32 => put!(f32),
            DataType::Float64 => put!(f64),
        }
    }

    /// Converting in place (widening, same size, narrowing; parallel waves and single chunks)
    /// gives what one pass of `decode_slice` gives, and the same first bad value.
    fn in_place_equals_one_pass<T: Sample + PartialEq + std::fmt::Debug>() {
        let dts = [DataType::Uint8, DataType::Int8, DataType::Int16, DataType::Uint16, DataType::Int32, DataType::Float32, DataType::Float64, DataType::Int64];
        for dt in dts {
            let bpp = dt.size_bytes();
            let size = std::mem::size_of::<T>();
            // Small odd sizes, and one with several parallel waves.
            for n in [1usize, 7, 1001, 5 * (CHUNK_BYTES / bpp) + 13] {
                for be in [false, true] {
                    for scale in [None, Some((0.5, -3.25))] {
                        let raw = raw_of(dt, be, n);
                        let mut want = vec![T::default(); n];
                        let want_bad = decode_slice(&raw, dt, be, scale, &mut want);
                        // Behind a gap such as the compressed file and header leave.
                        for gap in [0usize, 352] {
                            let start = (n * size.saturating_sub(bpp)).max(gap);
                            let total = (start + n * bpp).max(n * size);
                            let mut buf = vec![T::default(); total.div_ceil(size)];
                            bytemuck::cast_slice_mut::<T, u8>(&mut buf)[start..start + n * bpp].copy_from_slice(&raw);
                            let bad = convert_in_place::<T>(bytemuck::cast_slice_mut(&mut buf), start, n, dt, be, scale);
                            assert_eq!(bad, want_bad, "{dt:?} n {n} be {be} {scale:?} gap {gap}");
                            assert!(buf[..n] == want[..], "{dt:?} n {n} be {be} {scale:?} gap {gap}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn converting_in_place_equals_one_pass() {
        in_place_equals_one_pass::<f32>();
        in_place_equals_one_pass::<u16>();
    }

    /// A single-member gzip file of each stored type reads (through the in-place path) as the
    /// streamed reader reads its uncompressed twin, for odd grid sizes.
    #[test]
    fn whole_gzip_read_in_place_equals_streamed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let aff = RasFromVoxel::scale_translate([0.7, 0.8, 2.0], [1.0, 2.0, 3.0]);
        for (dtype, shape) in [
            (DataType::Int16, GridShape::new(131, 67, 129)),
            (DataType::Uint8, GridShape::new(33, 17, 9)),
            (DataType::Float32, GridShape::new(101, 103, 37)),
            (DataType::Uint16, GridShape::new(5, 3, 1)),
        ] {
            let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 31 + j * 17 + k * 7) % 250) as f32);
            let opts = WriteOptions { dtype, ..Default::default() };
            let plain = dir.path().join("v.nii");
            write_nifti(&plain, data.view(), &aff, &opts).expect("write");
            let single = dir.path().join("single.nii.gz");
            std::fs::write(&single, gzip_bytes(&std::fs::read(&plain).expect("read"), 6).expect("gzip")).expect("write");
            let (streamed, whole) = (read_info(&plain).expect("info"), read_info(&single).expect("info"));
            assert!(whole.inflate_in_place::<f32>().is_some(), "{dtype:?}: read in place");
            assert_eq!(whole.read_data::<f32>().expect("read"), streamed.read_data::<f32>().expect("read"), "{dtype:?}");
            assert_eq!(whole.read_data::<u16>().expect("read"), streamed.read_data::<u16>().expect("read"), "{dtype:?}");
            assert_eq!(whole.read_data::<f32>().expect("read"), data, "{dtype:?}");
        }
    }

    /// A single-member gzip file (what nibabel and most tools write) is inflated whole and
    /// decoded in parallel; the same file uncompressed and as sam3d-studio's multi-member
    /// gzip are streamed. All three read the same voxels and statistics.
    #[test]
    fn whole_file_and_streamed_reads_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shape = GridShape::new(70, 50, 40);
        let data = Array3::from_shape_fn(shape.array_shape(), |(k, j, i)| ((i * 31 + j * 17 + k * 7) % 3000) as f32 - 1000.0);
        let aff = RasFromVoxel::scale_translate([0.7, 0.8, 2.0], [1.0, 2.0, 3.0]);
        let opts = WriteOptions { dtype: DataType::Int16, ..Default::default() };
        let plain = dir.path().join("v.nii");
        write_nifti(&plain, data.view(), &aff, &opts).expect("write");
        let multi = dir.path().join("multi.nii.gz");
        write_nifti(&multi, data.view(), &aff, &opts).expect("write");
        let single = dir.path().join("single.nii.gz");
        let bytes = std::fs::read(&plain).expect("read");
        std::fs::write(&single, gzip_bytes(&bytes, 6).expect("gzip")).expect("write");
        let want = read_info(&plain).expect("info");
        assert!(want.inflate_whole().is_none());
        assert!(read_info(&multi).expect("info").inflate_whole().is_none(), "multi-member: streamed");
        assert!(read_info(&single).expect("info").inflate_whole().is_some(), "single member: whole");
        let v = want.read_data::<f32>().expect("read");
        assert_eq!(v, data);
        let st = want.stream_stats().expect("stats");
        for p in [&multi, &single] {
            let info = read_info(p).expect("info");
            assert_eq!(info.read_data::<f32>().expect("read"), v, "{}", p.display());
            let got = info.stream_stats().expect("stats");
            assert_eq!((got.min, got.max, got.mean.to_bits(), got.nan_count), (st.min, st.max, st.mean.to_bits(), st.nan_count));
            let mut streamed = Vec::new();
            info.stream::<f32>(|c| streamed.extend_from_slice(c)).expect("stream");
            assert_eq!(streamed, v.as_slice().expect("C order"));
        }
        // A value a label map cannot hold names the file, whole or streamed.
        for p in [&plain, &single] {
            let e = read_info(p).expect("info").read_data::<u16>().expect_err("negative labels");
            assert!(e.to_string().contains(&*p.file_name().expect("name").to_string_lossy()) && e.to_string().contains("-1000"), "{e}");
        }
    }
}

