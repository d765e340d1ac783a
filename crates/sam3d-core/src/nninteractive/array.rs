//! The NNIA array format: how nnInteractive's remote protocol carries an n-dimensional array in a
//! request or reply body.
//!
//! ```text
//! "NNIA" | version u8 (1) | codec u8 (1 zstd, 2 lz4) | ndim u8 | name_len u8 | dtype name (ASCII)
//! | shape: ndim × i64 LE | nchunks u32 LE | per chunk: ulen u64 LE, clen u64 LE, clen bytes of
//! one blosc2 chunk (the array's bytes, C order, little-endian, at most 1 GiB per chunk)
//! ```
//!
//! Reading checks every field against the bytes that are really there and against a size limit
//! before anything is allocated or decompressed; a chunk is decompressed only after its blosc2
//! header agrees with the sizes the NNIA header gave (the blosc2 library then writes exactly
//! that many bytes). Compression and decompression go through the `blosc2` crate, with a
//! context per call (no global state, so threads never share one).

use std::fmt;

/// The format's magic.
pub const MAGIC: &[u8; 4] = b"NNIA";
/// The version written and the only one read.
pub const VERSION: u8 = 1;
/// The most bytes one chunk holds uncompressed (blosc2 takes a 32-bit length per call).
pub const CHUNK_BYTES: usize = 1 << 30;
/// The most dimensions read.
pub const MAX_NDIM: usize = 8;
/// The shortest blosc2 chunk (its extended header).
const BLOSC2_HEADER_BYTES: usize = 32;

/// Why a body is not an NNIA array (or not one this side accepts).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NniaError {
    #[error("the packed array ends after {have} bytes, inside its {what}")]
    Truncated { what: &'static str, have: usize },
    #[error("not a packed array (magic {0:?}, expected \"NNIA\")")]
    Magic([u8; 4]),
    #[error("packed array version {0} (this side reads version 1)")]
    Version(u8),
    #[error("unknown codec id {0} (1 = zstd, 2 = lz4)")]
    Codec(u8),
    #[error("unsupported dtype {0:?}")]
    Dtype(String),
    #[error("{0} dimensions (at most 8 are read)")]
    Ndim(usize),
    #[error("shape {0:?}: a dimension is negative")]
    NegativeDim(Vec<i64>),
    #[error("shape {shape:?} of {dtype} needs {bytes} bytes, more than the {limit} allowed")]
    TooLarge { shape: Vec<usize>, dtype: &'static str, bytes: u128, limit: usize },
    #[error("chunk {index}: {problem}")]
    Chunk { index: usize, problem: String },
    #[error("the chunks hold {got} bytes, the shape needs {want}")]
    Size { got: usize, want: usize },
    #[error("{0} bytes after the last chunk")]
    Trailing(usize),
    #[error("blosc2: {0}")]
    Blosc(String),
}

/// An element type on the wire, by numpy's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    F32,
    F64,
}

impl Dtype {
    pub const ALL: [Dtype; 12] = [Dtype::Bool, Dtype::U8, Dtype::I8, Dtype::U16, Dtype::I16, Dtype::U32, Dtype::I32, Dtype::U64, Dtype::I64, Dtype::F16, Dtype::F32, Dtype::F64];

    /// numpy's name (`np.dtype(x).name`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::U8 => "uint8",
            Dtype::I8 => "int8",
            Dtype::U16 => "uint16",
            Dtype::I16 => "int16",
            Dtype::U32 => "uint32",
            Dtype::I32 => "int32",
            Dtype::U64 => "uint64",
            Dtype::I64 => "int64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// From numpy's name.
    pub fn from_name(name: &str) -> Option<Dtype> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 => 1,
            Dtype::U16 | Dtype::I16 | Dtype::F16 => 2,
            Dtype::U32 | Dtype::I32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::I64 | Dtype::F64 => 8,
        }
    }

    /// Integers and booleans (what a label or target buffer may be).
    pub fn is_integral(self) -> bool {
        !matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// blosc2's codec for the array's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Zstd,
    Lz4,
}

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Zstd => 1,
            Codec::Lz4 => 2,
        }
    }
    fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Zstd),
            2 => Some(Codec::Lz4),
            _ => None,
        }
    }
    fn blosc(self) -> blosc2::Codec {
        match self {
            Codec::Zstd => blosc2::Codec::ZSTD,
            Codec::Lz4 => blosc2::Codec::LZ4,
        }
    }
}

/// A decoded array: its type, shape and bytes (C order, little-endian).
#[derive(Clone, Debug, PartialEq)]
pub struct NniaArray {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl NniaArray {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32` (integers exactly up to 2²⁴; `float64` rounded; `float16` widened).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = &self.bytes;
        macro_rules! conv {
            ($t:ty, $n:expr) => {
                b.chunks_exact($n).map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as f32).collect()
            };
        }
        match self.dtype {
            Dtype::Bool | Dtype::U8 => b.iter().map(|&v| v as f32).collect(),
            Dtype::I8 => b.iter().map(|&v| v as i8 as f32).collect(),
            Dtype::U16 => conv!(u16, 2),
            Dtype::I16 => conv!(i16, 2),
            Dtype::U32 => conv!(u32, 4),
            Dtype::I32 => conv!(i32, 4),
            Dtype::U64 => conv!(u64, 8),
            Dtype::I64 => conv!(i64, 8),
            Dtype::F32 => conv!(f32, 4),
            Dtype::F64 => conv!(f64, 8),
            Dtype::F16 => b.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        }
    }

    /// Whether each element is non-zero (a mask from any integer, boolean or float array).
    pub fn to_mask(&self) -> Vec<bool> {
        let n = self.dtype.size();
        if self.dtype == Dtype::F16 {
            // ±0 are the only zeros.
            return self.bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) & 0x7fff != 0).collect();
        }
        if matches!(self.dtype, Dtype::F32 | Dtype::F64) {
            return self.to_f32().into_iter().map(|v| v != 0.0).collect();
        }
        self.bytes.chunks_exact(n).map(|c| c.iter().any(|&v| v != 0)).collect()
    }
}

/// IEEE half → single.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// A little reader over the body that names what it was reading when the bytes ran out.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], NniaError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len()).ok_or(NniaError::Truncated { what, have: self.buf.len() })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, NniaError> {
        Ok(self.take(1, what)?[0])
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, NniaError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    }
}

/// The header of a packed array, read without decompressing anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NniaHeader {
    pub codec: Codec,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
}

/// Reads and checks a packed array's header; returns it and the cursor at the chunk count.
fn read_header<'a>(buf: &'a [u8], max_bytes: usize) -> Result<(NniaHeader, Cursor<'a>, usize), NniaError> {
    let mut c = Cursor { buf, at: 0 };
    let magic = c.take(4, "magic")?;
    if magic != MAGIC {
        return Err(NniaError::Magic([magic[0], magic[1], magic[2], magic[3]]));
    }
    let version = c.u8("version")?;
    if version != VERSION {
        return Err(NniaError::Version(version));
    }
    let codec_id = c.u8("codec")?;
    let codec = Codec::from_id(codec_id).ok_or(NniaError::Codec(codec_id))?;
    let ndim = c.u8("ndim")? as usize;
    let name_len = c.u8("dtype length")? as usize;
    let name = c.take(name_len, "dtype")?;
    let name = String::from_utf8_lossy(name).into_owned();
    let dtype = Dtype::from_name(&name).ok_or(NniaError::Dtype(name))?;
    if ndim > MAX_NDIM {
        return Err(NniaError::Ndim(ndim));
    }
    let mut raw = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        raw.push(c.u64("shape")? as i64);
    }
    if raw.iter().any(|&d| d < 0) {
        return Err(NniaError::NegativeDim(raw));
    }
    let shape: Vec<usize> = raw.iter().map(|&d| d as usize).collect();
    let bytes = shape.iter().fold(dtype.size() as u128, |acc, &d| acc.saturating_mul(d as u128));
    if bytes > max_bytes as u128 {
        return Err(NniaError::TooLarge { shape, dtype: dtype.name(), bytes, limit: max_bytes });
    }
    Ok((NniaHeader { codec, dtype, shape }, c, bytes as usize))
}

/// The header alone (for a request that is refused before its array is decompressed).
pub fn peek_header(buf: &[u8], max_bytes: usize) -> Result<NniaHeader, NniaError> {
    read_header(buf, max_bytes).map(|(h, _, _)| h)
}

/// Decodes a packed array whose bytes are at most `max_bytes`. Every length is checked before
/// it is used; trailing bytes are an error.
pub fn unpack(buf: &[u8], max_bytes: usize) -> Result<NniaArray, NniaError> {
    let (header, mut c, total) = read_header(buf, max_bytes)?;
    let nchunks = {
        let b = c.take(4, "chunk count")?;
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    };
    // First pass: every chunk's lengths, against the body and the shape, before allocating.
    let mut chunks = Vec::new();
    let mut declared = 0usize;
    for index in 0..nchunks {
        let ulen = c.u64("chunk header")?;
        let clen = c.u64("chunk header")?;
        let bad = |problem: String| NniaError::Chunk { index, problem };
        let ulen = usize::try_from(ulen).map_err(|_| bad(format!("uncompressed length {ulen} is too large")))?;
        let clen = usize::try_from(clen).map_err(|_| bad(format!("compressed length {clen} is too large")))?;
        if ulen > CHUNK_BYTES {
            return Err(bad(format!("uncompressed length {ulen} is over the 1 GiB chunk size")));
        }
        if ulen % header.dtype.size() != 0 {
            return Err(bad(format!("length {ulen} is not a multiple of the {}-byte {}", header.dtype.size(), header.dtype)));
        }
        declared = declared.checked_add(ulen).filter(|&d| d <= total).ok_or(NniaError::Size { got: declared.saturating_add(ulen), want: total })?;
        let data = c.take(clen, "chunk data")?;
        chunks.push((ulen, data));
    }
    if c.at != buf.len() {
        return Err(NniaError::Trailing(buf.len() - c.at));
    }
    if declared != total {
        return Err(NniaError::Size { got: declared, want: total });
    }
    let mut bytes = vec![0u8; total];
    let mut written = 0;
    for (index, (ulen, data)) in chunks.into_iter().enumerate() {
        decompress_chunk(data, &mut bytes[written..written + ulen]).map_err(|problem| NniaError::Chunk { index, problem })?;
        written += ulen;
    }
    Ok(NniaArray { dtype: header.dtype, shape: header.shape, bytes })
}

/// One blosc2 chunk into `dst`, whose length the NNIA header gave: refused unless the chunk's
/// own header says the same and fits in the bytes given.
fn decompress_chunk(src: &[u8], dst: &mut [u8]) -> Result<(), String> {
    if dst.is_empty() && src.is_empty() {
        return Ok(());
    }
    if src.len() < BLOSC2_HEADER_BYTES {
        return Err(format!("{} bytes, shorter than a blosc2 header", src.len()));
    }
    let info = blosc2::CompressedBufferInfo::try_from(src).map_err(|e| format!("not a blosc2 chunk ({e})"))?;
    if info.nbytes() != dst.len() {
        return Err(format!("the blosc2 header says {} bytes, the array header {}", info.nbytes(), dst.len()));
    }
    if info.cbytes() > src.len() {
        return Err(format!("the blosc2 header says {} compressed bytes, {} were sent", info.cbytes(), src.len()));
    }
    let mut ctx = blosc2::Context::from(blosc2::DParams::default().set_nthreads(decompression_threads()));
    let n = blosc2::decompress_into_ctx(&src[..info.cbytes()], dst, &mut ctx).map_err(|e| format!("blosc2 could not decompress it ({e})"))?;
    if n != dst.len() {
        return Err(format!("decompressed to {n} bytes, {} expected", dst.len()));
    }
    Ok(())
}

fn decompression_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// An element type that packs as itself (its size is blosc2's type size).
pub trait Element: bytemuck::Pod + 'static {
    const DTYPE: Dtype;
}
impl Element for u8 {
    const DTYPE: Dtype = Dtype::U8;
}
impl Element for i16 {
    const DTYPE: Dtype = Dtype::I16;
}
impl Element for u16 {
    const DTYPE: Dtype = Dtype::U16;
}
impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
}

/// How to compress.
#[derive(Clone, Copy, Debug)]
pub struct PackOptions {
    pub codec: Codec,
    /// 0–9.
    pub clevel: u8,
    /// blosc2's byte shuffle (helps multi-byte images; masks pack best without).
    pub shuffle: bool,
    pub threads: usize,
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions { codec: Codec::Zstd, clevel: 3, shuffle: false, threads: decompression_threads() }
    }
}

/// Packs `data` (C order) of `shape`. `data.len()` must equal the shape's product.
pub fn pack<T: Element>(data: &[T], shape: &[usize], opts: PackOptions) -> Result<Vec<u8>, NniaError> {
    let n: usize = shape.iter().product();
    if n != data.len() || shape.len() > MAX_NDIM {
        return Err(NniaError::Size { got: data.len() * T::DTYPE.size(), want: n * T::DTYPE.size() });
    }
    let name = T::DTYPE.name().as_bytes();
    let mut out = Vec::with_capacity(32 + data.len() * T::DTYPE.size() / 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, opts.codec.id(), shape.len() as u8, name.len() as u8]);
    out.extend_from_slice(name);
    for &d in shape {
        out.extend_from_slice(&(d as i64).to_le_bytes());
    }
    let per_chunk = CHUNK_BYTES / T::DTYPE.size();
    let nchunks = data.len().div_ceil(per_chunk);
    out.extend_from_slice(&(nchunks as u32).to_le_bytes());
    let filter = if opts.shuffle { blosc2::Filter::Shuffle } else { blosc2::Filter::NoFilter };
    for part in data.chunks(per_chunk.max(1)) {
        let clevel = blosc2::CLevel::try_from(opts.clevel.min(9) as usize).map_err(|e| NniaError::Blosc(e.to_string()))?;
        let params = blosc2::CParams::new::<T>().set_codec(opts.codec.blosc()).set_clevel(clevel).set_filter(filter).set_nthreads(opts.threads.max(1));
        let mut ctx = blosc2::Context::from(params);
        let chunk = blosc2::compress_ctx(part, &mut ctx).map_err(|e| NniaError::Blosc(e.to_string()))?;
        out.extend_from_slice(&((part.len() * T::DTYPE.size()) as u64).to_le_bytes());
        out.extend_from_slice(&(chunk.len() as u64).to_le_bytes());
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|v| (v as f32 * 0.37).sin() * 1000.0).collect()
    }

    #[test]
    fn round_trip_each_codec_and_type() {
        let shape = [1, 5, 7, 11];
        let data = ramp(385);
        for codec in [Codec::Zstd, Codec::Lz4] {
            for shuffle in [false, true] {
                let packed = pack(&data, &shape, PackOptions { codec, shuffle, ..Default::default() }).expect("ok");
                let a = unpack(&packed, 1 << 20).expect("ok");
                assert_eq!((a.dtype, a.shape.as_slice()), (Dtype::F32, &shape[..]));
                assert_eq!(a.to_f32(), data);
            }
        }
        let labels: Vec<u8> = (0..385).map(|v| (v % 3 == 0) as u8).collect();
        let a = unpack(&pack(&labels, &[5, 7, 11], PackOptions::default()).expect("ok"), 1 << 20).expect("ok");
        assert_eq!(a.to_mask(), labels.iter().map(|&v| v != 0).collect::<Vec<_>>());
        let ints: Vec<i16> = vec![-1024, 0, 3071, -1];
        let a = unpack(&pack(&ints, &[4], PackOptions::default()).expect("ok"), 64).expect("ok");
        assert_eq!(a.to_f32(), vec![-1024.0, 0.0, 3071.0, -1.0]);
    }

    #[test]
    fn all_zero_and_empty_arrays() {
        let zeros = vec![0u8; 100_000];
        let packed = pack(&zeros, &[100, 1000], PackOptions::default()).expect("ok");
        assert!(packed.len() < 200, "{} bytes for zeros", packed.len());
        assert_eq!(unpack(&packed, 1 << 20).expect("ok").bytes, zeros);
        let empty: Vec<u8> = Vec::new();
        let a = unpack(&pack(&empty, &[0, 4], PackOptions::default()).expect("ok"), 16).expect("ok");
        assert_eq!((a.shape, a.bytes.len()), (vec![0, 4], 0));
    }

    #[test]
    fn header_fields_are_checked() {
        let good = pack(&ramp(24), &[2, 3, 4], PackOptions::default()).expect("ok");
        let mut bad = good.clone();
        bad[0] = b'X';
        assert!(matches!(unpack(&bad, 1 << 20), Err(NniaError::Magic(_))));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(unpack(&bad, 1 << 20), Err(NniaError::Version(2)));
        let mut bad = good.clone();
        bad[5] = 9;
        assert_eq!(unpack(&bad, 1 << 20), Err(NniaError::Codec(9)));
        // The size limit is checked before anything is decompressed.
        assert!(matches!(unpack(&good, 95), Err(NniaError::TooLarge { bytes: 96, .. })));
        // A shape that does not match the chunks' bytes.
        let mut bad = good.clone();
        let shape_at = 8 + "float32".len();
        bad[shape_at..shape_at + 8].copy_from_slice(&3i64.to_le_bytes());
        assert!(matches!(unpack(&bad, 1 << 20), Err(NniaError::Size { got: 96, want: 144 })));
        // A negative dimension, a huge one.
        let mut bad = good.clone();
        bad[shape_at..shape_at + 8].copy_from_slice(&(-2i64).to_le_bytes());
        assert!(matches!(unpack(&bad, 1 << 20), Err(NniaError::NegativeDim(_))));
        let mut bad = good.clone();
        bad[shape_at..shape_at + 8].copy_from_slice(&(1i64 << 60).to_le_bytes());
        assert!(matches!(unpack(&bad, usize::MAX), Err(NniaError::Size { .. }) | Err(NniaError::TooLarge { .. })));
        // Trailing bytes; an unknown dtype.
        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(unpack(&bad, 1 << 20), Err(NniaError::Trailing(1)));
        let mut bad = good.clone();
        bad[8..15].copy_from_slice(b"object!");
        assert!(matches!(unpack(&bad, 1 << 20), Err(NniaError::Dtype(_))));
    }

    #[test]
    fn every_truncation_and_chunk_corruption_is_an_error_not_a_crash() {
        let good = pack(&ramp(4000), &[10, 20, 20], PackOptions { shuffle: true, ..Default::default() }).expect("ok");
        for n in 0..good.len() {
            assert!(unpack(&good[..n], 1 << 20).is_err(), "truncated at {n}");
        }
        // Flip each byte of the headers and a spread of the chunk's bytes: an error or the
        // right size, never more (a flipped payload byte may still decompress).
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for at in 0..good.len() {
            if at > 120 && at % 7 != 0 {
                continue;
            }
            let mut bad = good.clone();
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            bad[at] ^= (rng as u8) | 1;
            if let Ok(a) = unpack(&bad, 1 << 20) {
                assert_eq!(a.bytes.len(), a.len() * a.dtype.size());
            }
        }
    }

    #[test]
    fn chunk_headers_must_agree_with_the_blosc2_frame() {
        let good = pack(&[1u8, 2, 3, 4, 5, 6, 7, 8], &[8], PackOptions::default()).expect("ok");
        let chunk_at = 8 + "uint8".len() + 8 + 4;
        // ulen says 16 with a shape of 16: the blosc2 header (8 bytes) disagrees.
        let mut bad = good.clone();
        bad[8 + 5..8 + 5 + 8].copy_from_slice(&16i64.to_le_bytes());
        bad[chunk_at..chunk_at + 8].copy_from_slice(&16u64.to_le_bytes());
        match unpack(&bad, 1 << 20) {
            Err(NniaError::Chunk { index: 0, problem }) => assert!(problem.contains("blosc2 header says 8"), "{problem}"),
            other => panic!("{other:?}"),
        }
    }

    /// Arrays the real client packed (`tests/data/nnia/README.md`).
    #[test]
    fn reads_what_the_python_client_packs() {
        let a = unpack(include_bytes!("../../tests/data/nnia/py_f32.nnia"), 1 << 20).expect("ok");
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::F32, vec![2, 3, 4]));
        assert_eq!(a.to_f32(), (0..24).map(|v| v as f32 * 1.5).collect::<Vec<_>>());
        let a = unpack(include_bytes!("../../tests/data/nnia/py_u8.nnia"), 1 << 20).expect("ok");
        assert_eq!((a.dtype, a.shape.clone()), (Dtype::U8, vec![5, 6, 7]));
        let on: Vec<usize> = a.to_mask().iter().enumerate().filter(|(_, v)| **v).map(|(n, _)| n).collect();
        let want: Vec<usize> = (1..3).flat_map(|k| (2..4).flat_map(move |j| (3..6).map(move |i| (k * 6 + j) * 7 + i))).collect();
        assert_eq!(on, want);
        let a = unpack(include_bytes!("../../tests/data/nnia/py_i16.nnia"), 1 << 20).expect("ok");
        assert_eq!((a.dtype, a.shape.clone(), a.to_f32()), (Dtype::I16, vec![2, 2], vec![-1024.0, 0.0, 3071.0, 5.0]));
    }

    #[test]
    fn half_floats_widen_exactly() {
        let bits: [u16; 6] = [0x3c00, 0xc000, 0x0001, 0x7bff, 0x0000, 0x3555];
        let want = [1.0f32, -2.0, 5.960_464_5e-8, 65504.0, 0.0, 0.333_251_95];
        for (b, w) in bits.iter().zip(want) {
            assert_eq!(f16_to_f32(*b), w, "{b:#06x}");
        }
    }
}
