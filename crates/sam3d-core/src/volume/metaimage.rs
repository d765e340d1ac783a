//! MetaImage (ITK's MetaIO) reading and writing: `.mha` (data after the header) and `.mhd`
//! (`ElementDataFile` beside it), raw or `CompressedData = True` (zlib), either byte order,
//! 3D scalar images.
//!
//! **World space.** ITK's physical space is LPS, and MetaImage stores it: the voxel-to-LPS
//! affine is `TransformMatrix` (alias `Rotation`, `Orientation`; nine numbers, each three the
//! direction of one voxel axis, as ITK reads them) times `ElementSpacing` (else
//! `ElementSize`), plus `Offset` (alias `Origin`, `Position`) as the first voxel's centre;
//! [`ras_from_lps`] makes it RAS. `AnatomicalOrientation` is ignored, as ITK ignores it on
//! reading: the matrix alone says where the axes point.

use super::nifti::{Sample, WriteSample, encode_into};
use super::rawdata::{Encoding, Payload, Skip, read_text_header};
use super::{DataType, LabelMap, Volume, VolumeError, VolumeMeta, atomic_write};
use crate::geometry::{Affine3, GridShape, Lps, RasFromVoxel, Voxel, lps_from_ras, ras_from_lps};
use nalgebra::{Matrix3, Vector3};
use ndarray::{Array3, ArrayView3};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Everything known about a MetaImage file before its samples are read.
#[derive(Clone, Debug)]
pub struct MetaImageInfo {
    pub path: PathBuf,
    pub dtype: DataType,
    pub shape: GridShape,
    pub ras_from_voxel: RasFromVoxel,
    /// `Key = Value` lines as written.
    pub fields: Vec<(String, String)>,
    payload: Payload,
}

fn key_of(line: &str) -> Option<&str> {
    line.split_once('=').map(|(k, _)| k.trim())
}

fn element_type(v: &str) -> Result<DataType, String> {
    Ok(match v.trim().to_ascii_uppercase().as_str() {
        "MET_CHAR" => DataType::Int8,
        "MET_UCHAR" => DataType::Uint8,
        "MET_SHORT" => DataType::Int16,
        "MET_USHORT" => DataType::Uint16,
        "MET_INT" | "MET_LONG" => DataType::Int32,
        "MET_UINT" | "MET_ULONG" => DataType::Uint32,
        "MET_LONG_LONG" => DataType::Int64,
        "MET_ULONG_LONG" => DataType::Uint64,
        "MET_FLOAT" => DataType::Float32,
        "MET_DOUBLE" => DataType::Float64,
        t if t.ends_with("_ARRAY") => return Err(format!("ElementType {t} (several values per voxel) is not a scalar image")),
        t => return Err(format!("ElementType '{t}' is not supported")),
    })
}

fn element_type_name(dt: DataType) -> &'static str {
    match dt {
        DataType::Int8 => "MET_CHAR",
        DataType::Uint8 => "MET_UCHAR",
        DataType::Int16 => "MET_SHORT",
        DataType::Uint16 => "MET_USHORT",
        DataType::Int32 => "MET_INT",
        DataType::Uint32 => "MET_UINT",
        DataType::Int64 => "MET_LONG_LONG",
        DataType::Uint64 => "MET_ULONG_LONG",
        DataType::Float32 => "MET_FLOAT",
        DataType::Float64 => "MET_DOUBLE",
    }
}

/// Reads and checks the header of a `.mha` / `.mhd` file (no samples).
pub fn read_info(path: &Path) -> Result<MetaImageInfo, VolumeError> {
    let e = |p: String| VolumeError::new(path, p);
    let (lines, data_offset) =
        read_text_header(path, false, |l| key_of(l).is_some_and(|k| k.eq_ignore_ascii_case("ElementDataFile")))?;
    let mut fields = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| e(format!("header line {}: '{}' is not 'Key = Value'", n + 1, clip(line))))?;
        fields.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |names: &[&str]| {
        fields.iter().rev().find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n))).map(|(_, v)| v.as_str())
    };
    let truthy = |names: &[&str]| get(names).is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let nums = |names: &[&str], n: usize| -> Result<Option<Vec<f64>>, VolumeError> {
        let Some(v) = get(names) else { return Ok(None) };
        let x: Vec<f64> = v.split_whitespace().map(|s| s.parse::<f64>()).collect::<Result<_, _>>().map_err(|_| e(format!("{} '{}' is not numbers", names[0], clip(v))))?;
        if x.len() != n || x.iter().any(|c| !c.is_finite()) {
            return Err(e(format!("{} has {} values, needs {n} finite numbers", names[0], x.len())));
        }
        Ok(Some(x))
    };
    if fields.is_empty() || get(&["NDims"]).is_none() {
        return Err(e("not a MetaImage file: no 'NDims = …' line in the header".into()));
    }
    if let Some(t) = get(&["ObjectType"])
        && !t.eq_ignore_ascii_case("Image")
    {
        return Err(e(format!("ObjectType is '{}', not Image", clip(t))));
    }
    match get(&["NDims"]).map(str::trim) {
        Some("3") => {}
        Some(n) => return Err(e(format!("NDims {}: sam3d-studio opens 3D volumes", clip(n)))),
        None => {}
    }
    let dims = get(&["DimSize"]).ok_or_else(|| e("header has no DimSize".into()))?;
    let dims: Vec<usize> = dims.split_whitespace().map(|s| s.parse::<usize>().ok().filter(|&n| n > 0)).collect::<Option<_>>().ok_or_else(|| e(format!("DimSize '{}' is not positive whole numbers", clip(dims))))?;
    let [ni, nj, nk] = <[usize; 3]>::try_from(dims.clone()).map_err(|_| e(format!("DimSize has {} values for 3 dimensions", dims.len())))?;
    let dtype = element_type(get(&["ElementType"]).ok_or_else(|| e("header has no ElementType".into()))?).map_err(e)?;
    if let Some(c) = get(&["ElementNumberOfChannels"])
        && c.trim() != "1"
    {
        return Err(e(format!("ElementNumberOfChannels {}: sam3d-studio opens scalar images", clip(c))));
    }
    if get(&["BinaryData"]).is_some_and(|v| v.eq_ignore_ascii_case("false")) {
        return Err(e("ASCII data (BinaryData = False) is not supported".into()));
    }
    let big_endian = truthy(&["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]);
    let encoding = if truthy(&["CompressedData"]) { Encoding::Zlib } else { Encoding::Raw };
    let dir = nums(&["TransformMatrix", "Rotation", "Orientation"], 9)?.unwrap_or_else(|| vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
    let origin = nums(&["Offset", "Origin", "Position"], 3)?.unwrap_or_else(|| vec![0.0; 3]);
    let spacing = match nums(&["ElementSpacing"], 3)? {
        Some(s) => s,
        None => nums(&["ElementSize"], 3)?.unwrap_or_else(|| vec![1.0; 3]),
    };
    if let Some(o) = get(&["AnatomicalOrientation"]) {
        log::debug!("{}: AnatomicalOrientation {o} ignored (the matrix says where the axes point, as in ITK)", path.display());
    }
    // Each three numbers of the matrix are one voxel axis's direction: a column.
    let d = Matrix3::new(dir[0], dir[3], dir[6], dir[1], dir[4], dir[7], dir[2], dir[5], dir[8]);
    let lin = d * Matrix3::from_diagonal(&Vector3::new(spacing[0], spacing[1], spacing[2]));
    let lps: Affine3<Lps, Voxel> = Affine3::from_parts(lin, Vector3::new(origin[0], origin[1], origin[2]));
    let ras_from_voxel = ras_from_lps() * lps;
    ras_from_voxel.try_inverse().map_err(|g| e(format!("TransformMatrix × ElementSpacing is degenerate: {g}")))?;
    let data_file = get(&["ElementDataFile"]).ok_or_else(|| e("header has no ElementDataFile".into()))?;
    let header_size = match get(&["HeaderSize"]) {
        None => 0,
        Some(v) => v.trim().parse::<i64>().ok().filter(|&n| n >= -1).ok_or_else(|| e(format!("HeaderSize '{}' is not -1 or a whole number", clip(v))))?,
    };
    let (data_path, offset, skip) = if data_file.eq_ignore_ascii_case("LOCAL") {
        let o = data_offset.ok_or_else(|| e("header ends without a line break after 'ElementDataFile = LOCAL' (no data)".into()))?;
        (path.to_path_buf(), o, Skip::Lines { lines: 0, bytes: 0 })
    } else {
        let words: Vec<&str> = data_file.split_whitespace().collect();
        if words.first().is_some_and(|w| w.eq_ignore_ascii_case("LIST")) || (data_file.contains('%') && words.len() >= 3) {
            return Err(e(format!("ElementDataFile '{}' (several files) is not supported", clip(data_file))));
        }
        let p = Path::new(data_file);
        let p = if p.is_absolute() { p.to_path_buf() } else { path.parent().unwrap_or(Path::new("")).join(p) };
        match header_size {
            -1 => (p, 0, Skip::FromEnd),
            n => (p, n as u64, Skip::Lines { lines: 0, bytes: 0 }),
        }
    };
    let count = (ni as u64).checked_mul(nj as u64).and_then(|x| x.checked_mul(nk as u64)).ok_or_else(|| e("DimSize overflows".into()))?;
    let payload = Payload { path: data_path, offset, skip, encoding, dtype, big_endian, count };
    Ok(MetaImageInfo { path: path.to_path_buf(), dtype, shape: GridShape::new(ni, nj, nk), ras_from_voxel, fields, payload })
}

fn clip(s: &str) -> String {
    let t: String = s.chars().take(60).collect();
    if t.len() < s.len() { format!("{t}…") } else { t }
}

impl MetaImageInfo {
    fn read<T: Sample>(&self) -> Result<Array3<T>, VolumeError> {
        let data = self.payload.read::<T>(&self.path)?;
        Array3::from_shape_vec(self.shape.array_shape(), data).map_err(|x| VolumeError::new(&self.path, format!("internal shape error: {x}")))
    }

    fn meta(&self) -> VolumeMeta {
        VolumeMeta { source: Some(self.path.clone()), dtype: Some(self.dtype), description: String::new(), ..Default::default() }
    }
}

/// Reads a MetaImage volume.
pub fn read_volume(path: &Path) -> Result<Volume, VolumeError> {
    let info = read_info(path)?;
    Ok(Volume { data: info.read::<f32>()?, ras_from_voxel: info.ras_from_voxel, meta: info.meta() })
}

/// Reads a MetaImage label map (whole numbers 0..65535).
pub fn read_labels(path: &Path) -> Result<LabelMap, VolumeError> {
    let info = read_info(path)?;
    Ok(LabelMap { data: info.read::<u16>()?, ras_from_voxel: info.ras_from_voxel, meta: info.meta() })
}

/// Writes `data` (C-order `[k, j, i]`) as a single-file `.mha` in LPS, as ITK does, zlib
/// compressed when `compress`, atomically.
pub fn write_metaimage<T: WriteSample>(
    path: &Path,
    data: ArrayView3<T>,
    ras_from_voxel: &RasFromVoxel,
    dtype: DataType,
    compress: bool,
) -> Result<(), VolumeError> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if !name.ends_with(".mha") {
        return Err(VolumeError::new(path, "MetaImage output must end in .mha (a two-file .mhd is not written)"));
    }
    let shape = GridShape::from_array_shape(data.shape());
    let lps = lps_from_ras() * *ras_from_voxel;
    let lin = lps.linear();
    let spacing: Vec<f64> = (0..3).map(|c| lin.column(c).norm()).collect();
    let dir: Vec<String> = (0..3).flat_map(|c| (0..3).map(move |r| (c, r))).map(|(c, r)| (lin[(r, c)] / spacing[c]).to_string()).collect();
    let t = lps.translation();
    let mut raw = Vec::new();
    for c in data.iter().copied().collect::<Vec<T>>().chunks(1 << 18) {
        encode_into(c, dtype, &mut raw);
    }
    let body = if compress {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(1));
        z.write_all(&raw).and_then(|_| z.finish()).map_err(|x| VolumeError::new(path, format!("cannot compress: {x}")))?
    } else {
        raw
    };
    let mut h = String::from("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n");
    h.push_str(&format!("CompressedData = {}\n", if compress { "True" } else { "False" }));
    if compress {
        h.push_str(&format!("CompressedDataSize = {}\n", body.len()));
    }
    h.push_str(&format!("TransformMatrix = {}\n", dir.join(" ")));
    h.push_str(&format!("Offset = {} {} {}\n", t.x, t.y, t.z));
    h.push_str("CenterOfRotation = 0 0 0\n");
    h.push_str(&format!("ElementSpacing = {} {} {}\n", spacing[0], spacing[1], spacing[2]));
    h.push_str(&format!("DimSize = {} {} {}\n", shape.ni, shape.nj, shape.nk));
    h.push_str(&format!("ElementType = {}\nElementDataFile = LOCAL\n", element_type_name(dtype)));
    atomic_write(path, |f| {
        f.write_all(h.as_bytes())?;
        f.write_all(&body)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_types_and_refusals() {
        assert_eq!(element_type("MET_LONG"), Ok(DataType::Int32));
        assert_eq!(element_type("met_ushort"), Ok(DataType::Uint16));
        assert!(element_type("MET_FLOAT_ARRAY").is_err_and(|e| e.contains("several values")));
        for dt in [DataType::Int8, DataType::Uint16, DataType::Float64, DataType::Uint64] {
            assert_eq!(element_type(element_type_name(dt)), Ok(dt));
        }
    }

    #[test]
    fn oblique_round_trip_compressed_and_raw() {
        let dir = tempfile::tempdir().expect("tmp");
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        let lin = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0) * Matrix3::from_diagonal(&Vector3::new(0.7, 1.1, 2.5));
        let aff = RasFromVoxel::from_parts(lin, Vector3::new(-10.0, 20.5, 3.0));
        let data = Array3::from_shape_fn((5, 4, 3), |(k, j, i)| (i + 3 * j + 12 * k) as f32 - 7.0);
        for compress in [true, false] {
            let p = dir.path().join(format!("x{compress}.mha"));
            write_metaimage(&p, data.view(), &aff, DataType::Int16, compress).expect("writes");
            let v = read_volume(&p).expect("reads");
            assert_eq!(v.data, data);
            assert!(v.ras_from_voxel.max_abs_diff(&aff) < 1e-9, "{:?}", v.ras_from_voxel);
        }
        assert!(write_metaimage(&dir.path().join("x.mhd"), data.view(), &aff, DataType::Int16, true).is_err());
    }
}
