//! Typed points and transforms. Every coordinate conversion in the project goes through here.
//!
//! Spaces (ARCHITECTURE.md, "Conventions"):
//! - [`Ras`]: world, RAS+ millimetres (NIfTI / Slicer convention).
//! - [`Lps`]: world, LPS+ millimetres (DICOM, Slicer's mesh export); only at the edges.
//! - [`Voxel`]: continuous voxel index (i, j, k); integers are voxel centres; i is fastest on disk.
//! - [`Slice`]: a view plane's 2D frame in millimetres (u right, v up), plus w = offset along
//!   the plane's normal, in millimetres.
//! - [`Screen`]: pixels of a view on screen (x right, y down).
//! - [`Grid`]: a model output cube's grid index.
//!
//! A point's type says its space ([`RasMm`], [`VoxelIjk`], …) and a transform's type says both
//! of its spaces ([`Affine3<Ras, Voxel>`] = `RasFromVoxel`), so that mixing them does not compile.
//! Transforms compose like the maths: `ras_from_slice = ras_from_voxel * voxel_from_slice`.

mod dicom;
mod orientation;
mod view;

pub use dicom::{DicomPlane, LpsFromVoxel, ras_from_lps_affine};
pub use orientation::{AxCodes, Orientation, axcodes, io_orientation, reorient_to_canonical_affine};
pub use view::{DisplayConvention, PixelWalk, SliceGeometry, ViewPlane};

use nalgebra::{Matrix3, Matrix4, Vector3, Vector4};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Mul;

/// Marker: RAS+ world millimetres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ras;
/// Marker: LPS+ world millimetres.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lps;
/// Marker: continuous voxel index (i, j, k).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Voxel;
/// Marker: a view plane's frame (u, v in-plane mm; w along the normal, mm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice;
/// Marker: screen pixels (x right, y down; z unused and kept at 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Screen;
/// Marker: index into a model output grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid;

/// A 3D point in space `S`.
#[derive(Clone, Copy, PartialEq)]
pub struct Point3<S> {
    pub v: Vector3<f64>,
    _space: PhantomData<S>,
}

impl<S> Point3<S> {
    pub const fn new(x: f64, y: f64, z: f64) -> Self {
        Self { v: Vector3::new(x, y, z), _space: PhantomData }
    }
    pub fn from_vec(v: Vector3<f64>) -> Self {
        Self { v, _space: PhantomData }
    }
    pub fn x(&self) -> f64 {
        self.v.x
    }
    pub fn y(&self) -> f64 {
        self.v.y
    }
    pub fn z(&self) -> f64 {
        self.v.z
    }
    pub fn to_array(&self) -> [f64; 3] {
        [self.v.x, self.v.y, self.v.z]
    }
    pub fn is_finite(&self) -> bool {
        self.v.iter().all(|c| c.is_finite())
    }
    /// Euclidean distance to another point of the same space.
    pub fn distance(&self, other: &Self) -> f64 {
        (self.v - other.v).norm()
    }
}

impl<S> fmt::Debug for Point3<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = std::any::type_name::<S>().rsplit("::").next().unwrap_or("?");
        write!(f, "{name}({:.4}, {:.4}, {:.4})", self.v.x, self.v.y, self.v.z)
    }
}

/// A point in RAS+ millimetres.
pub type RasMm = Point3<Ras>;
/// A point in LPS+ millimetres.
pub type LpsMm = Point3<Lps>;
/// A continuous voxel index (i, j, k).
pub type VoxelIjk = Point3<Voxel>;
/// A point in a view plane's frame (u, v, w mm).
pub type SliceMm = Point3<Slice>;
/// A screen position in pixels (x, y, 0).
pub type ScreenPx = Point3<Screen>;

impl RasMm {
    /// RAS → LPS: negate x and y.
    pub fn to_lps(&self) -> LpsMm {
        LpsMm::new(-self.v.x, -self.v.y, self.v.z)
    }
}
impl LpsMm {
    pub fn to_ras(&self) -> RasMm {
        RasMm::new(-self.v.x, -self.v.y, self.v.z)
    }
}

/// An integer index into an array held in on-disk order: a C-order `[k, j, i]` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ArrayIdx {
    pub k: usize,
    pub j: usize,
    pub i: usize,
}

impl ArrayIdx {
    /// The `[k, j, i]` index for ndarray.
    pub fn as_kji(&self) -> [usize; 3] {
        [self.k, self.j, self.i]
    }
}

/// Shape of a volume as voxel counts along i, j, k (the NIfTI `dim[1..4]` order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct GridShape {
    pub ni: usize,
    pub nj: usize,
    pub nk: usize,
}

impl GridShape {
    pub const fn new(ni: usize, nj: usize, nk: usize) -> Self {
        Self { ni, nj, nk }
    }
    /// The shape of the matching C-order array, `[nk, nj, ni]`.
    pub fn array_shape(&self) -> [usize; 3] {
        [self.nk, self.nj, self.ni]
    }
    /// From a C-order array shape `[nk, nj, ni]`.
    pub fn from_array_shape(s: &[usize]) -> Self {
        Self { ni: s[2], nj: s[1], nk: s[0] }
    }
    pub fn ijk(&self) -> [usize; 3] {
        [self.ni, self.nj, self.nk]
    }
    pub fn len(&self) -> usize {
        self.ni * self.nj * self.nk
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Voxel → array index: the one place where (i, j, k) becomes `[k, j, i]`.
    /// Rounds to the nearest voxel centre; `None` outside the grid.
    pub fn array_index(&self, p: VoxelIjk) -> Option<ArrayIdx> {
        let r = |x: f64, n: usize| -> Option<usize> {
            let x = x.round();
            (x.is_finite() && x >= 0.0 && x < n as f64).then_some(x as usize)
        };
        Some(ArrayIdx { i: r(p.v.x, self.ni)?, j: r(p.v.y, self.nj)?, k: r(p.v.z, self.nk)? })
    }
    /// Array index → voxel centre.
    pub fn voxel_of(&self, a: ArrayIdx) -> VoxelIjk {
        VoxelIjk::new(a.i as f64, a.j as f64, a.k as f64)
    }
    /// Is a continuous voxel position inside the grid's voxel extent (centres ± half a voxel)?
    pub fn contains(&self, p: VoxelIjk) -> bool {
        let ok = |x: f64, n: usize| x.is_finite() && x >= -0.5 && x < n as f64 - 0.5;
        ok(p.v.x, self.ni) && ok(p.v.y, self.nj) && ok(p.v.z, self.nk)
    }
    /// Number along voxel axis `axis` (0 = i, 1 = j, 2 = k).
    pub fn along(&self, axis: usize) -> usize {
        self.ijk()[axis]
    }
}

impl fmt::Display for GridShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{}", self.ni, self.nj, self.nk)
    }
}

/// An affine transform from space `From` to space `To` (homogeneous 4×4, last row 0 0 0 1).
#[derive(Clone, Copy, PartialEq)]
pub struct Affine3<To, From> {
    m: Matrix4<f64>,
    _spaces: PhantomData<(To, From)>,
}

impl<To, From> fmt::Debug for Affine3<To, From> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to = std::any::type_name::<To>().rsplit("::").next().unwrap_or("?");
        let from = std::any::type_name::<From>().rsplit("::").next().unwrap_or("?");
        write!(f, "{to}From{from}{:?}", self.rows())
    }
}

/// World RAS mm from continuous voxel index: the NIfTI affine.
pub type RasFromVoxel = Affine3<Ras, Voxel>;
/// Continuous voxel index from world RAS mm.
pub type VoxelFromRas = Affine3<Voxel, Ras>;
/// World RAS mm from a view's slice frame.
pub type RasFromSlice = Affine3<Ras, Slice>;
/// Screen pixels from a view's slice frame.
pub type ScreenFromSlice = Affine3<Screen, Slice>;
/// World RAS mm from a model output grid index.
pub type RasFromGrid = Affine3<Ras, Grid>;

/// Error for a transform that cannot be inverted or is not finite.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeometryError {
    #[error("affine is singular (determinant {det:.3e}); voxel axes are degenerate")]
    Singular { det: f64 },
    #[error("affine has non-finite entries")]
    NonFinite,
    #[error("affine's last row must be 0 0 0 1, got {0:?}")]
    NotAffine([f64; 4]),
}

impl<To, From> Affine3<To, From> {
    /// From a homogeneous matrix. Checks finiteness and the last row.
    pub fn from_matrix(m: Matrix4<f64>) -> Result<Self, GeometryError> {
        if m.iter().any(|x| !x.is_finite()) {
            return Err(GeometryError::NonFinite);
        }
        let last = [m[(3, 0)], m[(3, 1)], m[(3, 2)], m[(3, 3)]];
        if last != [0.0, 0.0, 0.0, 1.0] {
            return Err(GeometryError::NotAffine(last));
        }
        Ok(Self { m, _spaces: PhantomData })
    }
    /// From a linear part and a translation.
    pub fn from_parts(linear: Matrix3<f64>, translation: Vector3<f64>) -> Self {
        let mut m = Matrix4::identity();
        m.fixed_view_mut::<3, 3>(0, 0).copy_from(&linear);
        m.fixed_view_mut::<3, 1>(0, 3).copy_from(&translation);
        Self { m, _spaces: PhantomData }
    }
    /// From 4 rows (row-major; the last must be 0 0 0 1).
    pub fn from_rows(rows: [[f64; 4]; 4]) -> Result<Self, GeometryError> {
        let mut m = Matrix4::zeros();
        for (r, row) in rows.iter().enumerate() {
            for (c, x) in row.iter().enumerate() {
                m[(r, c)] = *x;
            }
        }
        Self::from_matrix(m)
    }
    /// A diagonal scale and a translation.
    pub fn scale_translate(scale: [f64; 3], translation: [f64; 3]) -> Self {
        Self::from_parts(Matrix3::from_diagonal(&Vector3::from(scale)), Vector3::from(translation))
    }
    pub fn identity() -> Self {
        Self { m: Matrix4::identity(), _spaces: PhantomData }
    }
    pub fn matrix(&self) -> &Matrix4<f64> {
        &self.m
    }
    pub fn linear(&self) -> Matrix3<f64> {
        self.m.fixed_view::<3, 3>(0, 0).into_owned()
    }
    pub fn translation(&self) -> Vector3<f64> {
        self.m.fixed_view::<3, 1>(0, 3).into_owned()
    }
    /// Row-major 4×4.
    pub fn rows(&self) -> [[f64; 4]; 4] {
        let mut r = [[0.0; 4]; 4];
        for (i, row) in r.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = self.m[(i, j)];
            }
        }
        r
    }
    pub fn determinant(&self) -> f64 {
        self.linear().determinant()
    }
    /// Applies the transform to a point.
    pub fn apply(&self, p: Point3<From>) -> Point3<To> {
        let h = self.m * Vector4::new(p.v.x, p.v.y, p.v.z, 1.0);
        Point3::from_vec(Vector3::new(h.x, h.y, h.z))
    }
    /// Applies only the linear part (for direction vectors).
    pub fn apply_vector(&self, v: Vector3<f64>) -> Vector3<f64> {
        self.linear() * v
    }
    /// The inverse transform; fails when singular (relative determinant test).
    pub fn try_inverse(&self) -> Result<Affine3<From, To>, GeometryError> {
        let lin = self.linear();
        let det = lin.determinant();
        let scale: f64 = lin.column_iter().map(|c| c.norm()).product();
        if !det.is_finite() || scale == 0.0 || (det / scale).abs() < 1e-9 {
            return Err(GeometryError::Singular { det });
        }
        let inv = self.m.try_inverse().ok_or(GeometryError::Singular { det })?;
        Ok(Affine3 { m: inv, _spaces: PhantomData })
    }
    /// Column norms of the linear part: the voxel spacing in mm for a `RasFromVoxel`.
    pub fn column_norms(&self) -> [f64; 3] {
        let l = self.linear();
        [l.column(0).norm(), l.column(1).norm(), l.column(2).norm()]
    }
    /// Same matrix, new space labels. Only for the rare places where two spaces are known to
    /// coincide (say so at the call site).
    pub fn relabel<A, B>(&self) -> Affine3<A, B> {
        Affine3 { m: self.m, _spaces: PhantomData }
    }
    /// Max absolute element-wise difference to another transform of the same spaces.
    pub fn max_abs_diff(&self, other: &Self) -> f64 {
        (self.m - other.m).abs().max()
    }
}

impl<A, B, C> Mul<Affine3<B, C>> for Affine3<A, B> {
    type Output = Affine3<A, C>;
    fn mul(self, rhs: Affine3<B, C>) -> Affine3<A, C> {
        Affine3 { m: self.m * rhs.m, _spaces: PhantomData }
    }
}

impl<A, B> Mul<Point3<B>> for Affine3<A, B> {
    type Output = Point3<A>;
    fn mul(self, p: Point3<B>) -> Point3<A> {
        self.apply(p)
    }
}

/// Voxel spacing in millimetres, in voxel-axis order `[si, sj, sk]`: the order of
/// [`GridShape::ijk`] and of a [`RasFromVoxel`]'s columns. Arrays are `[k, j, i]`, so code that
/// walks array axes takes [`SpacingIjk::kji`]; the name says the order so the two cannot be
/// mixed up silently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpacingIjk(pub [f64; 3]);

impl SpacingIjk {
    /// The same spacing along every axis.
    pub const fn isotropic(mm: f64) -> Self {
        Self([mm; 3])
    }
    /// The spacing of a grid: the column norms of its affine (a sheared affine's columns are
    /// still the voxel steps, so this is the distance between neighbouring centres).
    pub fn of(ras_from_voxel: &RasFromVoxel) -> Self {
        Self(ras_from_voxel.column_norms())
    }
    /// `[si, sj, sk]`.
    pub fn ijk(self) -> [f64; 3] {
        self.0
    }
    /// `[sk, sj, si]`: entry `a` goes with array axis `a` of a `[k, j, i]` array.
    pub fn kji(self) -> [f64; 3] {
        [self.0[2], self.0[1], self.0[0]]
    }
}

impl RasFromVoxel {
    /// Volume of one voxel in millilitres: `|det|` of the linear part (mm³) / 1000. The
    /// determinant, not the product of the spacings: on a sheared affine the voxel is a
    /// parallelepiped smaller than the box of its edge lengths.
    pub fn voxel_ml(&self) -> f64 {
        self.determinant().abs() / 1000.0
    }
}

/// RAS ↔ LPS flip as a transform (its own inverse).
pub fn lps_from_ras() -> Affine3<Lps, Ras> {
    Affine3::scale_translate([-1.0, -1.0, 1.0], [0.0; 3])
}

/// LPS → RAS (negate x and y): how a file whose world is LPS (NRRD's `left-posterior-superior`,
/// MetaImage, DICOM) gets its `RasFromVoxel`: `ras_from_lps() * lps_from_voxel`.
pub fn ras_from_lps() -> Affine3<Ras, Lps> {
    Affine3::scale_translate([-1.0, -1.0, 1.0], [0.0; 3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oblique() -> RasFromVoxel {
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let rot = Matrix3::new(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0);
        let lin = rot * Matrix3::from_diagonal(&Vector3::new(0.7, -0.8, 2.5));
        RasFromVoxel::from_parts(lin, Vector3::new(-100.0, 20.0, 5.0))
    }

    #[test]
    fn inverse_round_trip() {
        let a = oblique();
        let inv = a.try_inverse().expect("invertible");
        let p = VoxelIjk::new(3.25, -1.5, 77.0);
        let back = inv.apply(a.apply(p));
        assert!(back.distance(&p) < 1e-9, "{back:?}");
        assert!((a * inv).max_abs_diff(&Affine3::identity()) < 1e-12);
    }

    #[test]
    fn singular_is_an_error() {
        let a = RasFromVoxel::scale_translate([1.0, 0.0, 1.0], [0.0; 3]);
        assert!(matches!(a.try_inverse(), Err(GeometryError::Singular { .. })));
        let tiny = RasFromVoxel::scale_translate([1e-3, 1e-3, 1e-3], [0.0; 3]);
        assert!(tiny.try_inverse().is_ok(), "small but regular spacing is fine");
    }

    #[test]
    fn array_index_is_kji_and_rounds() {
        let g = GridShape::new(4, 5, 6);
        assert_eq!(g.array_shape(), [6, 5, 4]);
        let a = g.array_index(VoxelIjk::new(3.4, 0.6, 5.49)).expect("inside");
        assert_eq!(a.as_kji(), [5, 1, 3]);
        assert!(g.array_index(VoxelIjk::new(3.6, 0.0, 0.0)).is_none());
        assert!(g.array_index(VoxelIjk::new(-0.6, 0.0, 0.0)).is_none());
        assert!(g.array_index(VoxelIjk::new(f64::NAN, 0.0, 0.0)).is_none());
    }

    /// A sheared voxel: spacing from the column norms, volume from the determinant; the
    /// product of the spacings would overstate it.
    #[test]
    fn spacing_and_voxel_volume_of_a_sheared_affine() {
        // Columns (2, 0, 0), (1, 1, 0), (0, 0, 3): |j| = √2, det = 6 mm³.
        let lin = Matrix3::new(2.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 3.0);
        let a = RasFromVoxel::from_parts(lin, Vector3::new(5.0, -7.0, 1.0));
        let sp = SpacingIjk::of(&a);
        assert!((sp.ijk()[1] - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(sp.kji(), [3.0, sp.ijk()[1], 2.0]);
        assert!((a.voxel_ml() - 0.006).abs() < 1e-15, "{}", a.voxel_ml());
        let product: f64 = sp.ijk().iter().product();
        assert!(product / 1000.0 > a.voxel_ml() * 1.4, "the spacing product is not the voxel's volume");
        let flipped = RasFromVoxel::scale_translate([-0.5, 0.5, 2.0], [0.0; 3]);
        assert!((flipped.voxel_ml() - 0.0005).abs() < 1e-15, "a flip does not make it negative");
    }

    #[test]
    fn lps_ras() {
        let p = RasMm::new(1.0, -2.0, 3.0);
        assert_eq!(p.to_lps().to_array(), [-1.0, 2.0, 3.0]);
        assert_eq!(lps_from_ras().apply(p).to_array(), p.to_lps().to_array());
        assert_eq!(ras_from_lps().apply(p.to_lps()).to_array(), p.to_array());
    }
}
