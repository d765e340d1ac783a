//! NRRD reading and writing: `.nrrd` (attached header) and `.nhdr` (detached, `data file:`
//! relative to the header's folder), raw or gzip, either endianness, every integer and float
//! type under all of NRRD's names, 3D volumes and the 4D `list × 3D` layout of Slicer's
//! segmentations ([`seg`]).
//!
//! **World space.** The affine is built in LPS and turned into RAS by
//! [`ras_from_lps`](crate::geometry::ras_from_lps), as ITK (so Slicer's volume reader and
//! SimpleITK) does: `right-anterior-superior` and `left-anterior-superior` are converted, and
//! `left-posterior-superior` is taken as is. Spaces with no anatomical meaning
//! (`scanner-xyz`, `3D-right-handed`, `3D-left-handed`, a bare `space dimension: 3`) are, like
//! ITK, taken as they are as LPS, so a file lands where Slicer shows it (pynrrd interprets
//! no space at all). Spaces with a time axis are refused.
//!
//! **Voxel centres.** With `space directions`, `space origin` is the centre of the first
//! sample whatever `centers` says (the NRRD definition; ITK ignores centering here too).
//! Without any space, the grid is axis-aligned in LPS like ITK's: spacing from `spacings`,
//! else `(max − min)` over the cell count (`size` for cell-centred axes, `size − 1` for
//! node-centred ones: NRRD's definition, where ITK would fall back to 1), else 1 mm; the first
//! centre at `axis mins` plus half a spacing for cell-centred axes (the default, as in ITK),
//! at `axis mins` for node-centred ones, at 0 when any axis has no min.

mod header;
pub mod seg;

pub use header::NrrdHeader;

use super::nifti::{Sample, WriteSample, encode_into};
use super::rawdata::{Encoding, Payload, Skip};
use super::{DataType, LabelMap, Volume, VolumeError, VolumeMeta, atomic_write};
use crate::geometry::{Affine3, GridShape, Lps, RasFromVoxel, Voxel, lps_from_ras, ras_from_lps};
use header::{clip, key_value_line, parse_numbers, parse_vectors, parse_words};
use nalgebra::{Matrix3, Vector3};
use ndarray::{Array3, ArrayView3};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The world frame a NRRD file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NrrdSpace {
    Ras,
    Las,
    Lps,
    /// `scanner-xyz`, `3D-right-handed`, `3D-left-handed` or a bare `space dimension: 3`:
    /// taken as LPS, as ITK does.
    Unoriented,
}

impl NrrdSpace {
    fn parse(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "right-anterior-superior" | "ras" => Ok(NrrdSpace::Ras),
            "left-anterior-superior" | "las" => Ok(NrrdSpace::Las),
            "left-posterior-superior" | "lps" => Ok(NrrdSpace::Lps),
            "scanner-xyz" | "3d-right-handed" | "3d-left-handed" => Ok(NrrdSpace::Unoriented),
            "right-anterior-superior-time" | "rast" | "left-anterior-superior-time" | "last" | "left-posterior-superior-time"
            | "lpst" | "scanner-xyz-time" | "3d-right-handed-time" | "3d-left-handed-time" => {
                Err(format!("space '{v}' has a time axis; only 3D spaces are supported"))
            }
            _ => Err(format!("space '{}' is not a NRRD space", clip(v))),
        }
    }

    /// A vector in this space, in LPS.
    fn to_lps(self, v: Vector3<f64>) -> Vector3<f64> {
        match self {
            NrrdSpace::Ras => Vector3::new(-v.x, -v.y, v.z),
            NrrdSpace::Las => Vector3::new(v.x, -v.y, v.z),
            NrrdSpace::Lps | NrrdSpace::Unoriented => v,
        }
    }
}

/// Which frame to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteSpace {
    /// `left-posterior-superior`, as Slicer and ITK write.
    Lps,
    /// `right-anterior-superior`.
    Ras,
}

/// How to write a NRRD file.
#[derive(Clone, Copy, Debug)]
pub struct NrrdWriteOptions {
    /// Sample type; values are rounded (integers) and clamped to its range.
    pub dtype: DataType,
    /// gzip (one member, so every reader, pynrrd included, reads it whole) or raw.
    pub gzip: bool,
    pub gzip_level: u32,
    pub space: WriteSpace,
}

impl Default for NrrdWriteOptions {
    fn default() -> Self {
        Self { dtype: DataType::Float32, gzip: true, gzip_level: 1, space: WriteSpace::Lps }
    }
}

/// Everything known about a NRRD file before its samples are read.
#[derive(Clone, Debug)]
pub struct NrrdInfo {
    pub header: NrrdHeader,
    pub dtype: DataType,
    pub shape: GridShape,
    /// Size of the leading list axis of a 4D file (Slicer's segmentation layers); 1 for 3D.
    pub layers: usize,
    pub space: Option<NrrdSpace>,
    pub ras_from_voxel: RasFromVoxel,
    payload: Payload,
}

fn nrrd_type(v: &str) -> Result<DataType, String> {
    let t = v.split_whitespace().collect::<Vec<_>>().join(" ").to_ascii_lowercase();
    Ok(match t.as_str() {
        "signed char" | "int8" | "int8_t" => DataType::Int8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => DataType::Uint8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => DataType::Int16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => DataType::Uint16,
        "int" | "signed int" | "int32" | "int32_t" => DataType::Int32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => DataType::Uint32,
        "longlong" | "long long" | "long long int" | "signed long long" | "signed long long int" | "int64" | "int64_t" => {
            DataType::Int64
        }
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => DataType::Uint64,
        "float" => DataType::Float32,
        "double" => DataType::Float64,
        "block" => return Err("type 'block' (opaque blocks) is not image data".into()),
        _ => return Err(format!("type '{}' is not a NRRD type", clip(v))),
    })
}

/// NRRD's own name of a type, as Slicer writes it.
fn type_name(dt: DataType) -> &'static str {
    match dt {
        DataType::Int8 => "signed char",
        DataType::Uint8 => "unsigned char",
        DataType::Int16 => "short",
        DataType::Uint16 => "unsigned short",
        DataType::Int32 => "int",
        DataType::Uint32 => "unsigned int",
        DataType::Int64 => "long long int",
        DataType::Uint64 => "unsigned long long int",
        DataType::Float32 => "float",
        DataType::Float64 => "double",
    }
}

fn is_spatial_kind(k: &str) -> bool {
    matches!(k.to_ascii_lowercase().as_str(), "domain" | "space" | "???" | "none")
}

/// Reads and checks the header of a `.nrrd` / `.nhdr` file (no samples).
pub fn read_info(path: &Path) -> Result<NrrdInfo, VolumeError> {
    let h = NrrdHeader::read(path)?;
    interpret(h)
}

fn interpret(h: NrrdHeader) -> Result<NrrdInfo, VolumeError> {
    let e = |p: String| h.err(p);
    let need = |f: &str| h.field(f).ok_or_else(|| h.err(format!("header has no '{f}:' field")));
    let dtype = nrrd_type(need("type")?).map_err(e)?;
    let dim: usize = need("dimension")?.parse().map_err(|_| e(format!("dimension '{}' is not a number", clip(h.field("dimension").unwrap_or("")))))?;
    if dim != 3 && dim != 4 {
        return Err(e(format!("dimension {dim}: sam3d-studio opens 3D volumes (and 4D Slicer segmentations)")));
    }
    let sizes = parse_words(need("sizes")?, dim, "sizes")
        .map_err(&e)?
        .iter()
        .map(|s| s.parse::<usize>().ok().filter(|&n| n > 0).ok_or_else(|| e(format!("size '{}' is not a positive whole number", clip(s)))))
        .collect::<Result<Vec<_>, _>>()?;
    let kinds = h.field("kinds").map(|k| parse_words(k, dim, "kinds")).transpose().map_err(&e)?;
    let space = h.field("space").map(NrrdSpace::parse).transpose().map_err(&e)?;
    let space_dim = match (h.field("space dimension"), space) {
        (Some(d), _) => match d.trim().parse::<usize>() {
            Ok(3) => 3,
            Ok(n) => return Err(e(format!("space dimension {n}: only 3D spaces are supported"))),
            Err(_) => return Err(e(format!("space dimension '{}' is not a number", clip(d)))),
        },
        (None, Some(_)) => 3,
        (None, None) => 0,
    };
    let space = if space_dim == 3 { Some(space.unwrap_or(NrrdSpace::Unoriented)) } else { None };
    let directions = h.field("space directions").map(parse_vectors).transpose().map_err(|p| e(format!("space directions: {p}")))?;
    if let Some(d) = &directions
        && d.len() != dim
    {
        return Err(e(format!("space directions has {} entries for {dim} axes", d.len())));
    }
    // The non-spatial axis of a 4D file: 'none' direction, or a kind that is not a domain.
    let is_list = |a: usize| {
        directions.as_ref().is_some_and(|d| d[a].is_none()) || kinds.as_ref().is_some_and(|k| !is_spatial_kind(&k[a]))
    };
    let list_axes: Vec<usize> = (0..dim).filter(|&a| is_list(a)).collect();
    let list_axis = match (dim, list_axes.as_slice()) {
        (3, []) => None,
        (3, [a, ..]) => {
            let kind = kinds.as_ref().map(|k| k[*a].as_str()).unwrap_or("non-spatial");
            return Err(e(format!("axis {a} is a '{kind}' axis, so only 2 axes are spatial; sam3d-studio opens 3D scalar volumes")));
        }
        (4, [0]) | (4, []) => Some(0),
        (4, _) => {
            return Err(e(format!(
                "4D file whose non-spatial axes are {list_axes:?}; only a leading list axis (Slicer's segmentation layers) is supported"
            )));
        }
        _ => None,
    };
    let spatial: Vec<usize> = (0..dim).filter(|&a| Some(a) != list_axis).collect();
    let shape = GridShape::new(sizes[spatial[0]], sizes[spatial[1]], sizes[spatial[2]]);
    let layers = list_axis.map(|a| sizes[a]).unwrap_or(1);
    let lps_from_voxel = match space {
        Some(space) => spaced_affine(&h, space, directions.as_deref(), &spatial)?,
        None => unspaced_affine(&h, &sizes, &spatial, dim)?,
    };
    let ras_from_voxel = ras_from_lps() * lps_from_voxel;
    ras_from_voxel.try_inverse().map_err(|g| e(format!("space directions are degenerate: {g}")))?;
    let payload = payload(&h, dtype, &sizes)?;
    Ok(NrrdInfo { header: h, dtype, shape, layers, space, ras_from_voxel, payload })
}

/// `space directions` and `space origin` of the spatial axes, in LPS.
fn spaced_affine(
    h: &NrrdHeader,
    space: NrrdSpace,
    directions: Option<&[Option<Vec<f64>>]>,
    spatial: &[usize],
) -> Result<Affine3<Lps, Voxel>, VolumeError> {
    let d = directions.ok_or_else(|| h.err("header names a space but has no 'space directions:'"))?;
    let mut lin = Matrix3::zeros();
    for (c, &a) in spatial.iter().enumerate() {
        let v = d[a].as_ref().ok_or_else(|| h.err(format!("space direction of spatial axis {a} is 'none'")))?;
        if v.len() != 3 || v.iter().any(|x| !x.is_finite()) {
            return Err(h.err(format!("space direction of axis {a} must be 3 finite numbers, got {v:?}")));
        }
        lin.set_column(c, &space.to_lps(Vector3::new(v[0], v[1], v[2])));
    }
    let origin = match h.field("space origin") {
        None => Vector3::zeros(),
        Some(o) => {
            let v = parse_vectors(o).map_err(|p| h.err(format!("space origin: {p}")))?;
            match v.as_slice() {
                [Some(x)] if x.len() == 3 && x.iter().all(|c| c.is_finite()) => space.to_lps(Vector3::new(x[0], x[1], x[2])),
                _ => return Err(h.err(format!("space origin '{}' is not one (x,y,z) vector", clip(o)))),
            }
        }
    };
    Ok(Affine3::from_parts(lin, origin))
}

/// No space: spacings, axis mins/maxs and centers, axis-aligned in LPS as ITK reads it.
fn unspaced_affine(h: &NrrdHeader, sizes: &[usize], spatial: &[usize], dim: usize) -> Result<Affine3<Lps, Voxel>, VolumeError> {
    for f in ["space directions", "space origin"] {
        if h.field(f).is_some() {
            return Err(h.err(format!("'{f}:' without 'space:' or 'space dimension:'")));
        }
    }
    let nums = |f: &str| h.field(f).map(|v| parse_numbers(v, dim, f)).transpose().map_err(|p| h.err(p));
    let (spacings, mins, maxs) = (nums("spacings")?, nums("axis mins")?, nums("axis maxs")?);
    let centers = h.field("centers").map(|v| parse_words(v, dim, "centers")).transpose().map_err(|p| h.err(p))?;
    let mut scale = [1.0; 3];
    let mut origin = [0.0; 3];
    let have_mins = spatial.iter().all(|&a| mins.as_ref().is_some_and(|m| m[a].is_finite()));
    for (c, &a) in spatial.iter().enumerate() {
        let node = centers.as_ref().is_some_and(|v| v[a].eq_ignore_ascii_case("node"));
        let given = spacings.as_ref().map(|s| s[a]).filter(|s| s.is_finite() && *s != 0.0);
        let from_range = match (&mins, &maxs) {
            (Some(lo), Some(hi)) if lo[a].is_finite() && hi[a].is_finite() && hi[a] != lo[a] => {
                let cells = if node { sizes[a].saturating_sub(1).max(1) } else { sizes[a] };
                Some((hi[a] - lo[a]) / cells as f64)
            }
            _ => None,
        };
        scale[c] = given.or(from_range).unwrap_or(1.0);
        if have_mins && let Some(m) = &mins {
            origin[c] = m[a] + if node { 0.0 } else { scale[c] / 2.0 };
        }
    }
    Ok(Affine3::scale_translate(scale, origin))
}

/// Where the samples are and how they are stored.
fn payload(h: &NrrdHeader, dtype: DataType, sizes: &[usize]) -> Result<Payload, VolumeError> {
    let encoding = match h.field("encoding").map(|s| s.to_ascii_lowercase()) {
        None => return Err(h.err("header has no 'encoding:' field")),
        Some(s) => match s.as_str() {
            "raw" => Encoding::Raw,
            "gzip" | "gz" => Encoding::Gzip,
            "bzip2" | "bz2" => return Err(h.err("bzip2 encoding is not supported (re-save as gzip or raw)")),
            "txt" | "text" | "ascii" | "hex" => return Err(h.err(format!("{s} encoding is not supported (re-save as gzip or raw)"))),
            _ => return Err(h.err(format!("encoding '{}' is not a NRRD encoding", clip(&s)))),
        },
    };
    let big_endian = match h.field("endian").map(|s| s.to_ascii_lowercase()) {
        Some(s) if s == "big" => true,
        Some(s) if s == "little" => false,
        Some(s) => return Err(h.err(format!("endian '{}' is neither little nor big", clip(&s)))),
        None => {
            if dtype.size_bytes() > 1 {
                log::warn!("{}: no 'endian:' field for {}-byte samples; assuming little", h.path.display(), dtype.size_bytes());
            }
            false
        }
    };
    let count = sizes.iter().try_fold(1u64, |acc, &n| acc.checked_mul(n as u64)).ok_or_else(|| h.err("sizes overflow"))?;
    let line_skip = match h.field("line skip") {
        None => 0,
        Some(v) => v.trim().parse::<u64>().map_err(|_| h.err(format!("line skip '{}' is not a whole number", clip(v))))?,
    };
    let skip = match h.field("byte skip").map(|v| (v, v.trim().parse::<i64>())) {
        None => Skip::Lines { lines: line_skip, bytes: 0 },
        Some((_, Ok(-1))) => Skip::FromEnd,
        Some((_, Ok(n))) if n >= 0 => Skip::Lines { lines: line_skip, bytes: n as u64 },
        Some((v, _)) => return Err(h.err(format!("byte skip '{}' is not -1 or a whole number", clip(v)))),
    };
    let (path, offset) = match h.field("data file") {
        Some(f) => (data_file_path(h, f)?, 0),
        None => match h.data_offset {
            Some(o) => (h.path.clone(), o),
            None => return Err(h.err("header has no blank line before the data and no 'data file:' (truncated?)")),
        },
    };
    Ok(Payload { path, offset, skip, encoding, dtype, big_endian, count })
}

/// The one data file of a detached header; several files (`LIST`, `%d` patterns) are refused.
fn data_file_path(h: &NrrdHeader, f: &str) -> Result<PathBuf, VolumeError> {
    let f = f.trim();
    let words: Vec<&str> = f.split_whitespace().collect();
    if words.first().is_some_and(|w| w.eq_ignore_ascii_case("LIST")) {
        return Err(h.err("'data file: LIST' (data split over several files) is not supported; join them into one file"));
    }
    if f.contains('%') && words.len() >= 4 {
        return Err(h.err(format!("'data file: {}' (a numbered series of files) is not supported; join them into one file", clip(f))));
    }
    if f.is_empty() {
        return Err(h.err("'data file:' is empty"));
    }
    let p = Path::new(f);
    Ok(if p.is_absolute() { p.to_path_buf() } else { h.path.parent().unwrap_or(Path::new("")).join(p) })
}

impl NrrdInfo {
    pub fn path(&self) -> &Path {
        &self.header.path
    }

    /// Every sample as `T`, the layer axis fastest (`[k, j, i, layer]` in C order).
    pub fn read_samples<T: Sample>(&self) -> Result<Vec<T>, VolumeError> {
        self.payload.read(self.path())
    }

    fn meta(&self) -> VolumeMeta {
        let content = self.header.field("content").unwrap_or("").to_string();
        VolumeMeta { source: Some(self.path().to_path_buf()), dtype: Some(self.dtype), description: content, ..Default::default() }
    }

    fn one_layer(&self) -> Result<(), VolumeError> {
        if self.layers != 1 {
            return Err(self.header.err(format!(
                "4D file with {} layers ({}×{}); open it as a label map (a Slicer segmentation), or extract one layer",
                self.layers, self.layers, self.shape
            )));
        }
        Ok(())
    }

    /// The samples as a volume (3D files only).
    pub fn read_volume(&self) -> Result<Volume, VolumeError> {
        self.one_layer()?;
        let data = self.read_samples::<f32>()?;
        let data = Array3::from_shape_vec(self.shape.array_shape(), data).map_err(|x| self.header.err(format!("internal shape error: {x}")))?;
        Ok(Volume { data, ras_from_voxel: self.ras_from_voxel, meta: self.meta() })
    }

    /// The samples as a label map, values as they are (3D files only).
    pub fn read_plain_labels(&self) -> Result<LabelMap, VolumeError> {
        self.one_layer()?;
        let data = self.read_samples::<u16>()?;
        let data = Array3::from_shape_vec(self.shape.array_shape(), data).map_err(|x| self.header.err(format!("internal shape error: {x}")))?;
        Ok(LabelMap { data, ras_from_voxel: self.ras_from_voxel, meta: self.meta() })
    }
}

/// Reads a NRRD volume (3D).
pub fn read_volume(path: &Path) -> Result<Volume, VolumeError> {
    read_info(path)?.read_volume()
}

/// Reads a NRRD label map: a Slicer segmentation (`Segment0_ID:=…`) is flattened by
/// [`seg::read_segmentation`]; any other file's values are the labels.
pub fn read_labels(path: &Path) -> Result<LabelMap, VolumeError> {
    let info = read_info(path)?;
    if seg::is_segmentation(&info.header) {
        return Ok(seg::from_info(info)?.labels);
    }
    info.read_plain_labels()
}

/// Writes `data` (C-order `[k, j, i]`) as an attached-header `.nrrd`, atomically, with extra
/// `key:=value` lines.
pub fn write_nrrd<T: WriteSample>(
    path: &Path,
    data: ArrayView3<T>,
    ras_from_voxel: &RasFromVoxel,
    opts: &NrrdWriteOptions,
    key_values: &[(String, String)],
) -> Result<(), VolumeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if !name.ends_with(".nrrd") {
        return Err(VolumeError::new(path, "NRRD output must end in .nrrd (a detached .nhdr is not written)"));
    }
    let shape = GridShape::from_array_shape(data.shape());
    let header = header_text(shape, ras_from_voxel, opts, key_values);
    let flat = super::c_order(&data);
    let flat: &[T] = &flat;
    atomic_write(path, |f| {
        f.write_all(header.as_bytes())?;
        let mut raw = Vec::new();
        if opts.gzip {
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::new(opts.gzip_level));
            for c in flat.chunks(1 << 18) {
                raw.clear();
                encode_into(c, opts.dtype, &mut raw);
                gz.write_all(&raw)?;
            }
            gz.finish()?;
        } else {
            for c in flat.chunks(1 << 18) {
                raw.clear();
                encode_into(c, opts.dtype, &mut raw);
                f.write_all(&raw)?;
            }
        }
        Ok(())
    })
}

fn header_text(shape: GridShape, ras_from_voxel: &RasFromVoxel, opts: &NrrdWriteOptions, key_values: &[(String, String)]) -> String {
    let (space, lin, origin) = match opts.space {
        WriteSpace::Lps => {
            let lps = lps_from_ras() * *ras_from_voxel;
            ("left-posterior-superior", lps.linear(), lps.translation())
        }
        WriteSpace::Ras => ("right-anterior-superior", ras_from_voxel.linear(), ras_from_voxel.translation()),
    };
    let vec3 = |v: Vector3<f64>| format!("({},{},{})", v.x, v.y, v.z);
    let dirs: Vec<String> = (0..3).map(|c| vec3(lin.column(c).into_owned())).collect();
    let mut s = String::new();
    s.push_str("NRRD0004\n# written by sam3d-studio\n");
    s.push_str(&format!("type: {}\ndimension: 3\nspace: {space}\n", type_name(opts.dtype)));
    s.push_str(&format!("sizes: {} {} {}\n", shape.ni, shape.nj, shape.nk));
    s.push_str(&format!("space directions: {}\n", dirs.join(" ")));
    s.push_str("kinds: domain domain domain\n");
    if opts.dtype.size_bytes() > 1 {
        s.push_str("endian: little\n");
    }
    s.push_str(&format!("encoding: {}\n", if opts.gzip { "gzip" } else { "raw" }));
    s.push_str(&format!("space origin: {}\n", vec3(origin)));
    for (k, v) in key_values {
        s.push_str(&key_value_line(k, v));
        s.push('\n');
    }
    s.push('\n');
    s
}

/// Writes a volume as `.nrrd` (gzip, LPS as Slicer writes) in `dtype`, default the source's
/// type, else float32.
pub fn write_volume(path: &Path, v: &Volume, dtype: Option<DataType>) -> Result<(), VolumeError> {
    let opts = NrrdWriteOptions { dtype: dtype.or(v.meta.dtype).unwrap_or(DataType::Float32), ..Default::default() };
    write_nrrd(path, v.data.view(), &v.ras_from_voxel, &opts, &[])
}

/// Writes a label map as a plain `.nrrd` (gzip, LPS; unsigned char when every label fits).
pub fn write_labels(path: &Path, l: &LabelMap) -> Result<(), VolumeError> {
    let max = l.data.iter().copied().max().unwrap_or(0);
    let dtype = if max <= 255 { DataType::Uint8 } else { DataType::Uint16 };
    write_nrrd(path, l.data.view(), &l.ras_from_voxel, &NrrdWriteOptions { dtype, ..Default::default() }, &[])
}

#[cfg(test)]
mod tests;
