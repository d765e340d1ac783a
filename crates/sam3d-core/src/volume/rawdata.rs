//! The voxel payload of the text-header formats (NRRD, MetaImage): a run of samples in one file,
//! raw or compressed, at some offset. Shared so that both readers check sizes the same way
//! before allocating, stream the data in chunks, and word their errors alike.
//!
//! Sizes from a header are never trusted for allocation: the payload must fit in the file
//! (raw) or in what the compressed bytes can possibly expand to, and the output grows with the
//! data actually decoded, so a hostile header cannot make us reserve gigabytes.

use super::header::{DataType, MAX_VOXELS};
use super::nifti::{Sample, decode_chunk};
use super::VolumeError;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Largest plausible deflate expansion (its maximum ratio is about 1032:1).
const MAX_DEFLATE_RATIO: u64 = 1100;
const CHUNK_BYTES: usize = 1 << 20;

/// How the samples are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Raw,
    /// gzip (NRRD `gzip` / `gz`); several members are read as one stream.
    Gzip,
    /// zlib or gzip, told apart by the first bytes (MetaImage `CompressedData = True`).
    Zlib,
}

impl Encoding {
    pub fn name(&self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Gzip => "gzip",
            Encoding::Zlib => "zlib",
        }
    }
}

/// Where the first sample is, after `offset` bytes of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Skip `lines` text lines in the file, then `bytes` bytes of the (decompressed) stream.
    Lines { lines: u64, bytes: u64 },
    /// The samples are the last bytes of the file (NRRD `byte skip: -1`, MetaImage
    /// `HeaderSize = -1`); raw data only.
    FromEnd,
}

/// One payload: where, how it is stored, and what it holds.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The file holding the samples (the header itself, or a detached data file).
    pub path: PathBuf,
    /// Bytes of the file before the payload (the attached header), or 0.
    pub offset: u64,
    pub skip: Skip,
    pub encoding: Encoding,
    pub dtype: DataType,
    pub big_endian: bool,
    /// Number of samples.
    pub count: u64,
}

fn err(path: &Path, problem: impl Into<String>) -> VolumeError {
    VolumeError::new(path, problem)
}

fn io_problem(e: &std::io::Error, enc: Encoding) -> String {
    use std::io::ErrorKind as K;
    if enc != Encoding::Raw && matches!(e.kind(), K::InvalidInput | K::InvalidData | K::UnexpectedEof | K::Other) {
        format!("{} data is corrupt or truncated ({e})", enc.name())
    } else {
        e.to_string()
    }
}

impl Payload {
    /// Bytes of decoded sample data.
    pub fn bytes(&self) -> Result<u64, VolumeError> {
        if self.count > MAX_VOXELS {
            return Err(err(&self.path, format!("{} samples is more than this program holds ({MAX_VOXELS})", self.count)));
        }
        Ok(self.count * self.dtype.size_bytes() as u64)
    }

    /// Reads every sample as `T`. Errors name `header`, and the data file when it is another.
    pub fn read<T: Sample>(&self, header: &Path) -> Result<Vec<T>, VolumeError> {
        self.read_inner(header).map_err(|e| {
            if e.path == header {
                e
            } else {
                VolumeError::new(header, format!("data file {}: {}", e.path.display(), e.problem))
            }
        })
    }

    fn read_inner<T: Sample>(&self, header: &Path) -> Result<Vec<T>, VolumeError> {
        let need = self.bytes()?;
        let len = std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| err(&self.path, format!("cannot open: {e}")))?;
        if self.offset > len {
            return Err(err(&self.path, format!("data should start at byte {}, past the end of the file ({len} bytes)", self.offset)));
        }
        let avail = len - self.offset;
        let (start, bytes_after) = match (self.skip, self.encoding) {
            (Skip::FromEnd, Encoding::Raw) => {
                if need > avail {
                    return Err(err(&self.path, format!("file has {avail} bytes of data but the header needs {need} (truncated, or wrong sizes)")));
                }
                (len - need, 0)
            }
            (Skip::FromEnd, _) => return Err(err(&self.path, "a skip of -1 (data at the end of the file) needs raw data, not compressed")),
            (Skip::Lines { bytes, .. }, Encoding::Raw) => {
                if need.saturating_add(bytes) > avail {
                    return Err(err(&self.path, format!("file has {avail} bytes of data but the header needs {} (truncated, or wrong sizes)", need.saturating_add(bytes))));
                }
                (self.offset, bytes)
            }
            (Skip::Lines { bytes, .. }, _) => {
                if need.saturating_add(bytes) > avail.saturating_mul(MAX_DEFLATE_RATIO).saturating_add(1 << 20) {
                    return Err(err(&self.path, format!("header needs {need} bytes of samples, impossible from {avail} compressed bytes (corrupt sizes)")));
                }
                (self.offset, bytes)
            }
        };
        let mut f = File::open(&self.path).map_err(|e| err(&self.path, format!("cannot open: {e}")))?;
        f.seek(SeekFrom::Start(start)).map_err(|e| err(&self.path, format!("cannot read: {e}")))?;
        let mut r = BufReader::with_capacity(1 << 16, f);
        if let Skip::Lines { lines, .. } = self.skip {
            skip_lines(&mut r, lines).map_err(|p| err(&self.path, p))?;
        }
        let mut stream: Box<dyn Read> = match self.encoding {
            Encoding::Raw => Box::new(r),
            Encoding::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Encoding::Zlib => {
                let head = r.fill_buf().map_err(|e| err(&self.path, e.to_string()))?;
                if head.starts_with(&[0x1f, 0x8b]) {
                    Box::new(flate2::bufread::MultiGzDecoder::new(r))
                } else {
                    Box::new(flate2::bufread::ZlibDecoder::new(r))
                }
            }
        };
        let skipped = std::io::copy(&mut (&mut stream).take(bytes_after), &mut std::io::sink())
            .map_err(|e| err(&self.path, io_problem(&e, self.encoding)))?;
        if skipped < bytes_after {
            return Err(err(&self.path, format!("byte skip {bytes_after} is past the end of the data")));
        }
        self.decode_stream(&mut stream, need, header)
    }

    fn decode_stream<T: Sample>(&self, r: &mut dyn Read, need: u64, header: &Path) -> Result<Vec<T>, VolumeError> {
        let bpp = self.dtype.size_bytes();
        // Grows with the data actually read; the first reservation is bounded.
        let mut out: Vec<T> = Vec::with_capacity(usize::try_from(self.count.min(1 << 20)).unwrap_or(0));
        let chunk = need.min(((CHUNK_BYTES / bpp).max(1) * bpp) as u64) as usize;
        let mut buf = vec![0u8; chunk];
        let mut bad: Option<f64> = None;
        let mut done = 0u64;
        while done < need {
            let want = usize::try_from((need - done).min(buf.len() as u64)).unwrap_or(buf.len());
            let got = read_full(r, &mut buf[..want]).map_err(|e| err(&self.path, io_problem(&e, self.encoding)))?;
            if got < want {
                return Err(err(&self.path, format!("data ends after {} of {need} bytes (file truncated?)", done + got as u64)));
            }
            decode_chunk(&buf[..want], self.dtype, self.big_endian, None, &mut out, &mut bad);
            if let Some(x) = bad {
                return Err(err(header, format!("value {x} cannot be a {}", T::KIND)));
            }
            done += want as u64;
        }
        Ok(out)
    }
}

/// Skips `n` newline-terminated lines without holding them.
fn skip_lines(r: &mut impl BufRead, n: u64) -> Result<(), String> {
    let mut left = n;
    while left > 0 {
        let buf = r.fill_buf().map_err(|e| e.to_string())?;
        if buf.is_empty() {
            return Err(format!("line skip {n} is past the end of the file"));
        }
        let mut used = 0;
        for &b in buf {
            used += 1;
            if b == b'\n' {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
        r.consume(used);
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
pub(super) fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The header text of a file with a text header: its lines up to and including the line
/// `is_last` accepts (or up to a blank line when `blank_ends` is set), and the byte offset just
/// after it, where attached data begins. Reads at most `MAX_HEADER` bytes; the header must be
/// text. `Ok((lines, None))` means the file ended without a terminator.
pub(super) fn read_text_header(
    path: &Path,
    blank_ends: bool,
    is_last: impl Fn(&str) -> bool,
) -> Result<(Vec<String>, Option<u64>), VolumeError> {
    const MAX_HEADER: u64 = 16 << 20;
    let f = File::open(path).map_err(|e| err(path, format!("cannot open: {e}")))?;
    let mut r = BufReader::new(f.take(MAX_HEADER));
    let mut lines = Vec::new();
    let mut pos = 0u64;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = r.read_until(b'\n', &mut raw).map_err(|e| err(path, format!("cannot read: {e}")))?;
        if n == 0 {
            if pos >= MAX_HEADER {
                return Err(err(path, format!("header is longer than {} MiB (not a text header?)", MAX_HEADER >> 20)));
            }
            return Ok((lines, None));
        }
        pos += n as u64;
        let ended = raw.last() == Some(&b'\n');
        let body = raw.strip_suffix(b"\n").unwrap_or(&raw);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.contains(&0) {
            return Err(err(path, format!("header line {} holds binary bytes (not a text header, or truncated)", lines.len() + 1)));
        }
        let line = String::from_utf8_lossy(body).into_owned();
        if blank_ends && line.is_empty() && ended {
            return Ok((lines, Some(pos)));
        }
        let last = is_last(&line);
        lines.push(line);
        if last && ended {
            return Ok((lines, Some(pos)));
        }
        if !ended {
            return Ok((lines, None));
        }
    }
}
