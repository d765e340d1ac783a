//! NIfTI-1 and NIfTI-2 headers: parsing (either endianness), validation, and the affine as
//! nibabel chooses it.

use crate::geometry::{GridShape, RasFromVoxel};
use nalgebra::{Matrix3, Matrix4, Vector3};

/// Largest number of voxels we agree to hold (8 Gi); anything larger is refused, not allocated.
pub const MAX_VOXELS: u64 = 1 << 33;

/// NIfTI datatype codes we know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Uint8,
    Int8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Float32,
    Float64,
}

impl DataType {
    /// From a NIfTI datatype code; `Err` with a reason for known-but-unsupported codes.
    pub fn from_code(code: i32) -> Result<Self, String> {
        Ok(match code {
            2 => DataType::Uint8,
            256 => DataType::Int8,
            4 => DataType::Int16,
            512 => DataType::Uint16,
            8 => DataType::Int32,
            768 => DataType::Uint32,
            1024 => DataType::Int64,
            1280 => DataType::Uint64,
            16 => DataType::Float32,
            64 => DataType::Float64,
            128 | 2304 => return Err(format!("RGB colour data (datatype {code}) is not a scalar volume")),
            32 | 1792 | 2048 => return Err(format!("complex data (datatype {code}) is not supported")),
            1536 => return Err("float128 data (datatype 1536) is not supported".into()),
            1 => return Err("binary (1-bit) data (datatype 1) is not supported".into()),
            _ => return Err(format!("unknown datatype code {code}")),
        })
    }
    pub fn code(&self) -> i16 {
        match self {
            DataType::Uint8 => 2,
            DataType::Int8 => 256,
            DataType::Int16 => 4,
            DataType::Uint16 => 512,
            DataType::Int32 => 8,
            DataType::Uint32 => 768,
            DataType::Int64 => 1024,
            DataType::Uint64 => 1280,
            DataType::Float32 => 16,
            DataType::Float64 => 64,
        }
    }
    pub fn size_bytes(&self) -> usize {
        match self {
            DataType::Uint8 | DataType::Int8 => 1,
            DataType::Int16 | DataType::Uint16 => 2,
            DataType::Int32 | DataType::Uint32 | DataType::Float32 => 4,
            DataType::Int64 | DataType::Uint64 | DataType::Float64 => 8,
        }
    }
    pub fn is_integer(&self) -> bool {
        !matches!(self, DataType::Float32 | DataType::Float64)
    }
    /// nibabel-style name (`int16`, `float32`, …).
    pub fn name(&self) -> &'static str {
        match self {
            DataType::Uint8 => "uint8",
            DataType::Int8 => "int8",
            DataType::Int16 => "int16",
            DataType::Uint16 => "uint16",
            DataType::Int32 => "int32",
            DataType::Uint32 => "uint32",
            DataType::Int64 => "int64",
            DataType::Uint64 => "uint64",
            DataType::Float32 => "float32",
            DataType::Float64 => "float64",
        }
    }
    /// Representable range (for writing with clamping).
    pub fn range(&self) -> (f64, f64) {
        match self {
            DataType::Uint8 => (0.0, 255.0),
            DataType::Int8 => (-128.0, 127.0),
            DataType::Int16 => (-32768.0, 32767.0),
            DataType::Uint16 => (0.0, 65535.0),
            DataType::Int32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::Uint32 => (0.0, u32::MAX as f64),
            DataType::Int64 => (i64::MIN as f64, i64::MAX as f64),
            DataType::Uint64 => (0.0, u64::MAX as f64),
            DataType::Float32 => (f32::MIN as f64, f32::MAX as f64),
            DataType::Float64 => (f64::MIN, f64::MAX),
        }
    }
}

/// Which NIfTI flavour a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum NiftiVersion {
    Nifti1,
    Nifti2,
}

/// The header fields this project uses, in f64/i64 whatever the flavour.
#[derive(Clone, Debug, PartialEq)]
pub struct NiftiHeader {
    pub version: NiftiVersion,
    pub big_endian: bool,
    /// `dim[0..8]`.
    pub dim: [i64; 8],
    pub datatype_code: i32,
    pub bitpix: i32,
    /// `pixdim[0..8]`, as stored (before nibabel's fixes).
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub xyzt_units: i32,
    pub descrip: String,
    /// `n+1`/`n+2` (single file) vs `ni1`/`ni2` (header + separate image file).
    pub single_file: bool,
}

/// Size of the header proper (without the 4-byte extension flag).
pub fn header_size(v: NiftiVersion) -> usize {
    match v {
        NiftiVersion::Nifti1 => 348,
        NiftiVersion::Nifti2 => 540,
    }
}

struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, o: usize) -> i64 {
        i16::from_le_bytes(self.arr::<2>(o)) as i64
    }
    fn i32(&self, o: usize) -> i64 {
        i32::from_le_bytes(self.arr::<4>(o)) as i64
    }
    fn i64(&self, o: usize) -> i64 {
        i64::from_le_bytes(self.arr::<8>(o))
    }
    fn f32(&self, o: usize) -> f64 {
        f32::from_le_bytes(self.arr::<4>(o)) as f64
    }
    fn f64(&self, o: usize) -> f64 {
        f64::from_le_bytes(self.arr::<8>(o))
    }
    fn text(&self, o: usize, n: usize) -> String {
        let s = &self.b[o..o + n];
        let end = s.iter().position(|&c| c == 0).unwrap_or(n);
        String::from_utf8_lossy(&s[..end]).trim().to_string()
    }
}

/// Which flavour and endianness the first 4 bytes (`sizeof_hdr`) announce.
pub fn sniff(first4: [u8; 4]) -> Result<(NiftiVersion, bool), String> {
    let le = i32::from_le_bytes(first4);
    let be = i32::from_be_bytes(first4);
    match (le, be) {
        (348, _) => Ok((NiftiVersion::Nifti1, false)),
        (_, 348) => Ok((NiftiVersion::Nifti1, true)),
        (540, _) => Ok((NiftiVersion::Nifti2, false)),
        (_, 540) => Ok((NiftiVersion::Nifti2, true)),
        _ => Err(format!("not a NIfTI file (sizeof_hdr is {le}, expected 348 or 540)")),
    }
}

impl NiftiHeader {
    /// Parses a header from at least `header_size` bytes.
    pub fn parse(b: &[u8]) -> Result<Self, String> {
        if b.len() < 4 {
            return Err("file is too short to hold a NIfTI header".into());
        }
        let (version, big_endian) = sniff([b[0], b[1], b[2], b[3]])?;
        let need = header_size(version);
        if b.len() < need {
            return Err(format!(
                "header is truncated ({} of {need} bytes)",
                b.len()
            ));
        }
        let f = Fields { b, be: big_endian };
        let h = match version {
            NiftiVersion::Nifti1 => {
                let magic = &b[344..348];
                let single_file = match magic {
                    b"n+1\0" => true,
                    b"ni1\0" => false,
                    _ => return Err(format!("bad NIfTI-1 magic {:?} (expected \"n+1\")", String::from_utf8_lossy(magic))),
                };
                let mut dim = [0i64; 8];
                for (n, d) in dim.iter_mut().enumerate() {
                    *d = f.i16(40 + 2 * n);
                }
                let mut pixdim = [0f64; 8];
                for (n, p) in pixdim.iter_mut().enumerate() {
                    *p = f.f32(76 + 4 * n);
                }
                let mut srow = [[0f64; 4]; 3];
                for (r, row) in srow.iter_mut().enumerate() {
                    for (c, x) in row.iter_mut().enumerate() {
                        *x = f.f32(280 + 16 * r + 4 * c);
                    }
                }
                NiftiHeader {
                    version,
                    big_endian,
                    dim,
                    datatype_code: f.i16(70) as i32,
                    bitpix: f.i16(72) as i32,
                    pixdim,
                    vox_offset: f.f32(108),
                    scl_slope: f.f32(112),
                    scl_inter: f.f32(116),
                    xyzt_units: b[123] as i32,
                    descrip: f.text(148, 80),
                    qform_code: f.i16(252) as i32,
                    sform_code: f.i16(254) as i32,
                    quatern: [f.f32(256), f.f32(260), f.f32(264)],
                    qoffset: [f.f32(268), f.f32(272), f.f32(276)],
                    srow,
                    single_file,
                }
            }
            NiftiVersion::Nifti2 => {
                let magic = &b[4..12];
                let single_file = match &magic[..4] {
                    b"n+2\0" => true,
                    b"ni2\0" => false,
                    _ => return Err(format!("bad NIfTI-2 magic {:?} (expected \"n+2\")", String::from_utf8_lossy(&magic[..4]))),
                };
                let mut dim = [0i64; 8];
                for (n, d) in dim.iter_mut().enumerate() {
                    *d = f.i64(16 + 8 * n);
                }
                let mut pixdim = [0f64; 8];
                for (n, p) in pixdim.iter_mut().enumerate() {
                    *p = f.f64(104 + 8 * n);
                }
                let mut srow = [[0f64; 4]; 3];
                for (r, row) in srow.iter_mut().enumerate() {
                    for (c, x) in row.iter_mut().enumerate() {
                        *x = f.f64(400 + 32 * r + 8 * c);
                    }
                }
                NiftiHeader {
                    version,
                    big_endian,
                    dim,
                    datatype_code: f.i16(12) as i32,
                    bitpix: f.i16(14) as i32,
                    pixdim,
                    vox_offset: f.i64(168) as f64,
                    scl_slope: f.f64(176),
                    scl_inter: f.f64(184),
                    descrip: f.text(240, 80),
                    qform_code: f.i32(344) as i32,
                    sform_code: f.i32(348) as i32,
                    quatern: [f.f64(352), f.f64(360), f.f64(368)],
                    qoffset: [f.f64(376), f.f64(384), f.f64(392)],
                    srow,
                    xyzt_units: f.i32(500) as i32,
                    single_file,
                }
            }
        };
        Ok(h)
    }

    pub fn datatype(&self) -> Result<DataType, String> {
        let dt = DataType::from_code(self.datatype_code)?;
        Ok(dt)
    }

    /// The 3D grid and the number of frames (`dim[4..]` multiplied), validated.
    pub fn grid(&self) -> Result<(GridShape, u64), String> {
        let nd = self.dim[0];
        if !(1..=7).contains(&nd) {
            return Err(format!("dim[0] = {nd} is not a number of dimensions between 1 and 7"));
        }
        let nd = nd as usize;
        let mut n = [1u64; 7];
        for d in 0..nd {
            let v = self.dim[d + 1];
            if v <= 0 {
                return Err(format!("dim[{}] = {v}: every dimension must be at least 1", d + 1));
            }
            n[d] = v as u64;
        }
        let frames: u64 = n[3..].iter().try_fold(1u64, |a, &x| a.checked_mul(x)).unwrap_or(u64::MAX);
        let total = n[0]
            .checked_mul(n[1])
            .and_then(|x| x.checked_mul(n[2]))
            .and_then(|x| x.checked_mul(frames));
        match total {
            Some(t) if t <= MAX_VOXELS => {}
            _ => {
                return Err(format!(
                    "dimensions {:?} describe more than {MAX_VOXELS} voxels",
                    &self.dim[1..=nd]
                ));
            }
        }
        Ok((GridShape::new(n[0] as usize, n[1] as usize, n[2] as usize), frames))
    }

    /// Byte offset of the data (nibabel raises a too-small single-file offset to the header end).
    pub fn data_offset(&self) -> Result<u64, String> {
        let o = self.vox_offset;
        if !o.is_finite() || !(0.0..=1e15).contains(&o) {
            return Err(format!("vox_offset {o} is not a valid byte offset"));
        }
        let min = if self.single_file { header_size(self.version) as u64 + 4 } else { 0 };
        Ok((o as u64).max(min))
    }

    /// pixdim[1..4] as nibabel uses them after its fixes: |x|, and 0 → 1.
    pub fn zooms(&self) -> [f64; 3] {
        let mut z = [self.pixdim[1], self.pixdim[2], self.pixdim[3]];
        for x in z.iter_mut() {
            *x = if *x == 0.0 || !x.is_finite() { 1.0 } else { x.abs() };
        }
        z
    }

    /// Scaling as nibabel applies it: `None` when slope is 0 or not finite.
    pub fn scaling(&self) -> Result<Option<(f64, f64)>, String> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || !s.is_finite() {
            return Ok(None);
        }
        if !i.is_finite() {
            return Err(format!("scl_slope is {s} but scl_inter is {i}"));
        }
        if s == 1.0 && i == 0.0 {
            return Ok(None);
        }
        Ok(Some((s, i)))
    }

    /// The qform affine (quaternion + pixdim + qfac), as nibabel's `get_qform`.
    pub fn qform(&self) -> Matrix4<f64> {
        let [b, c, d] = self.quatern;
        // nibabel's fillpositive with its threshold (3 eps of the header's float type).
        let eps = match self.version {
            NiftiVersion::Nifti1 => f32::EPSILON as f64,
            NiftiVersion::Nifti2 => f64::EPSILON,
        };
        let w2 = 1.0 - (b * b + c * c + d * d);
        let a = if w2 < 0.0 {
            let _ = w2 < -3.0 * eps; // nibabel raises here; a clamped quaternion is the useful reading
            0.0
        } else {
            w2.sqrt()
        };
        let r = quat_to_mat(a, b, c, d);
        let mut z = self.zooms();
        let qfac = if self.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
        z[2] *= qfac;
        let lin = r * Matrix3::from_diagonal(&Vector3::from(z));
        let mut m = Matrix4::identity();
        m.fixed_view_mut::<3, 3>(0, 0).copy_from(&lin);
        m[(0, 3)] = self.qoffset[0];
        m[(1, 3)] = self.qoffset[1];
        m[(2, 3)] = self.qoffset[2];
        m
    }

    pub fn sform(&self) -> Matrix4<f64> {
        let mut m = Matrix4::identity();
        for r in 0..3 {
            for c in 0..4 {
                m[(r, c)] = self.srow[r][c];
            }
        }
        m
    }

    /// nibabel's `get_base_affine`: pixdim scaling, x flipped, centred on the grid.
    pub fn base_affine(&self) -> Matrix4<f64> {
        let z = self.zooms();
        let n = [self.dim[1].max(1), if self.dim[0] >= 2 { self.dim[2].max(1) } else { 1 }, if self.dim[0] >= 3 { self.dim[3].max(1) } else { 1 }];
        let zs = [-z[0], z[1], z[2]];
        let mut m = Matrix4::identity();
        for a in 0..3 {
            m[(a, a)] = zs[a];
            m[(a, 3)] = -((n[a] as f64 - 1.0) / 2.0) * zs[a];
        }
        m
    }

    /// The affine nibabel's `get_best_affine` returns: sform if `sform_code != 0`, else qform if
    /// `qform_code != 0`, else the pixdim fallback. Which one was used is returned too.
    pub fn best_affine(&self) -> (Matrix4<f64>, AffineSource) {
        if self.sform_code != 0 {
            (self.sform(), AffineSource::Sform)
        } else if self.qform_code != 0 {
            (self.qform(), AffineSource::Qform)
        } else {
            (self.base_affine(), AffineSource::Pixdim)
        }
    }

    /// The affine as a typed, validated transform (singular affines are an error).
    pub fn ras_from_voxel(&self) -> Result<(RasFromVoxel, AffineSource), String> {
        let (m, src) = self.best_affine();
        let a = RasFromVoxel::from_matrix(m).map_err(|e| format!("{} affine: {e}", src.name()))?;
        a.try_inverse().map_err(|e| format!("{} affine: {e}", src.name()))?;
        Ok((a, src))
    }
}

/// Which header fields the affine came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AffineSource {
    Sform,
    Qform,
    Pixdim,
    /// A DICOM series: ImageOrientationPatient, PixelSpacing and the slices' positions.
    Dicom,
}

impl AffineSource {
    pub fn name(&self) -> &'static str {
        match self {
            AffineSource::Sform => "sform",
            AffineSource::Qform => "qform",
            AffineSource::Pixdim => "pixdim",
            AffineSource::Dicom => "DICOM positions",
        }
    }
}

/// Rotation matrix of quaternion (w, x, y, z), as nibabel's `quat2mat` (no normalisation
/// needed beyond its own scaling).
pub fn quat_to_mat(w: f64, x: f64, y: f64, z: f64) -> Matrix3<f64> {
    let nq = w * w + x * x + y * y + z * z;
    if nq < f64::EPSILON {
        return Matrix3::identity();
    }
    let s = 2.0 / nq;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    Matrix3::new(
        1.0 - (yy + zz), xy - wz, xz + wy,
        xy + wz, 1.0 - (xx + zz), yz - wx,
        xz - wy, yz + wx, 1.0 - (xx + yy),
    )
}

/// nibabel's `set_qform` decomposition of an affine: (quatern b c d, qoffset, zooms, qfac).
pub fn qform_params(a: &Matrix4<f64>) -> ([f64; 3], [f64; 3], [f64; 3], f64) {
    let rzs: Matrix3<f64> = a.fixed_view::<3, 3>(0, 0).into_owned();
    let mut zooms = [0.0; 3];
    let mut r = rzs;
    for c in 0..3 {
        let n = rzs.column(c).norm();
        zooms[c] = n;
        if n > 0.0 {
            r.set_column(c, &(rzs.column(c) / n));
        }
    }
    let qfac = if r.determinant() > 0.0 { 1.0 } else { -1.0 };
    if qfac < 0.0 {
        let c2 = -r.column(2);
        r.set_column(2, &c2);
    }
    // Closest orthogonal matrix (polar decomposition), then to a quaternion with w >= 0.
    let svd = r.svd(true, true);
    if let (Some(u), Some(vt)) = (svd.u, svd.v_t) {
        r = u * vt;
    }
    let q = nalgebra::UnitQuaternion::from_rotation_matrix(&nalgebra::Rotation3::from_matrix_unchecked(r));
    let (mut w, mut x, mut y, mut z) = (q.w, q.i, q.j, q.k);
    if w < 0.0 {
        (w, x, y, z) = (-w, -x, -y, -z);
    }
    let _ = w;
    (
        [x, y, z],
        [a[(0, 3)], a[(1, 3)], a[(2, 3)]],
        zooms,
        qfac,
    )
}
