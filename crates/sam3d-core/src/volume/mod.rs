//! Volumes and label maps on a voxel grid with a `ras_from_voxel` affine; [`open`] (the one
//! place a path becomes a volume) and [`save_volume`] / [`save_labels`] (the one place one
//! becomes a file); NIfTI, NRRD and MetaImage read and written, DICOM series read (`dicom`),
//! RT structure sets rasterised onto their series (`dicom::open_rtstruct_labels`) and label
//! maps written as DICOM SEG against their source series ([`save_labels_dicom_seg`]);
//! resampling and intensity handling.
//!
//! Voxels are held in NIfTI's on-disk order as a C-order array of shape `[k, j, i]` (same bytes,
//! no transpose). [`GridShape::array_index`] is the one voxel → array conversion.

pub mod dicom;
pub mod header;
pub mod intensity;
pub mod label_names;
pub mod metaimage;
pub mod nifti;
pub mod nrrd;
mod open;
mod rawdata;
pub mod resample;
mod save;
mod stored;

pub use header::{AffineSource, DataType, NiftiHeader, NiftiVersion};
pub use nifti::{NiftiInfo, WriteOptions, atomic_write, read_info, write_nifti, write_nifti_by_slices};
pub use open::{Format, LabelsOnGrid, detect, open, open_labels, open_labels_on, open_with};
pub use resample::{Interp, MAX_GRID_VOXELS, ResampleError, grid_for_spacing, resample_labels_to_grid, resample_to_grid, resample_to_spacing, SlabResampler};
pub use crate::with_stored;
pub use stored::{StoredVolume, Voxel};
pub use save::{OutputFormat, save_labels, save_labels_dicom_seg, save_volume, save_volume_by_slices};

use crate::geometry::{ArrayIdx, GridShape, RasFromVoxel, RasMm, SpacingIjk, VoxelFromRas, VoxelIjk};
use ndarray::{Array3, ArrayBase, Data, Ix3, Zip};
use std::borrow::Cow;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// An error about one file (or one named input): `path: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct VolumeError {
    pub path: PathBuf,
    pub problem: String,
}

impl VolumeError {
    pub fn new(path: impl AsRef<Path>, problem: impl Into<String>) -> Self {
        Self { path: path.as_ref().to_path_buf(), problem: problem.into() }
    }
}

/// Imaging modality, which decides intensity normalisation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Ct,
    Mr,
    #[default]
    Unknown,
}

impl std::str::FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "ct" => Ok(Modality::Ct),
            "mr" | "mri" => Ok(Modality::Mr),
            "auto" | "unknown" => Ok(Modality::Unknown),
            _ => Err(format!("unknown modality '{s}' (expected ct or mr)")),
        }
    }
}

/// What we know about where a volume came from.
#[derive(Clone, Debug, Default)]
pub struct VolumeMeta {
    pub source: Option<PathBuf>,
    /// On-disk datatype (None for computed volumes).
    pub dtype: Option<DataType>,
    pub affine_source: Option<AffineSource>,
    pub description: String,
    /// The display window (centre, width) the source suggests (DICOM WindowCenter/Width).
    pub window: Option<(f64, f64)>,
}

impl VolumeMeta {
    fn from_info(info: &NiftiInfo) -> Self {
        VolumeMeta {
            source: Some(info.path.clone()),
            dtype: Some(info.dtype),
            affine_source: Some(info.affine_source),
            description: info.header.descrip.clone(),
            window: None,
        }
    }
}

/// Summary statistics (NaNs counted, not included).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Stats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub nan_count: usize,
}

impl Stats {
    /// CT (a Hounsfield range: air below −500, bone above 300, nothing below −3100) or else MR.
    pub fn guess_modality(&self) -> Modality {
        if self.min <= -500.0 && self.max >= 300.0 && self.min >= -3100.0 { Modality::Ct } else { Modality::Mr }
    }
}

/// A scalar volume: intensities (after NIfTI scaling) on a grid.
#[derive(Clone, Debug)]
pub struct Volume<T = f32> {
    /// `[k, j, i]`.
    pub data: Array3<T>,
    pub ras_from_voxel: RasFromVoxel,
    pub meta: VolumeMeta,
}

/// An integer label map (0 = background) on a grid.
#[derive(Clone, Debug)]
pub struct LabelMap {
    /// `[k, j, i]`.
    pub data: Array3<u16>,
    pub ras_from_voxel: RasFromVoxel,
    pub meta: VolumeMeta,
}

/// Shared grid behaviour of volumes and label maps.
pub trait OnGrid {
    fn shape(&self) -> GridShape;
    fn ras_from_voxel(&self) -> &RasFromVoxel;
    fn spacing_mm(&self) -> [f64; 3] {
        self.ras_from_voxel().column_norms()
    }
    /// The voxel spacing with its axis order in its type ([`SpacingIjk`]).
    fn spacing(&self) -> SpacingIjk {
        SpacingIjk::of(self.ras_from_voxel())
    }
    /// Volume of one voxel in millilitres (`|det|` of the affine / 1000, right on sheared
    /// grids too): the one way a voxel count becomes millilitres.
    fn voxel_ml(&self) -> f64 {
        self.ras_from_voxel().voxel_ml()
    }
    fn voxel_from_ras(&self) -> VoxelFromRas {
        // Volumes are only built from invertible affines (checked on read and construction).
        self.ras_from_voxel().try_inverse().unwrap_or_else(|_| VoxelFromRas::identity())
    }
    /// The box of the voxel centres in RAS (the grid's eight corner voxels mapped): `(min, max)`.
    fn ras_extent(&self) -> ([f64; 3], [f64; 3]) {
        let [ni, nj, nk] = self.shape().ijk();
        let last = |n: usize| n.saturating_sub(1) as f64;
        let (mut lo, mut hi) = ([f64::INFINITY; 3], [f64::NEG_INFINITY; 3]);
        for c in 0..8 {
            let pick = |bit: usize, n: usize| if c >> bit & 1 == 0 { 0.0 } else { last(n) };
            let p = self.ras_from_voxel().apply(VoxelIjk::new(pick(0, ni), pick(1, nj), pick(2, nk))).to_array();
            for d in 0..3 {
                lo[d] = lo[d].min(p[d]);
                hi[d] = hi[d].max(p[d]);
            }
        }
        (lo, hi)
    }
    /// RAS position of a voxel centre.
    fn ras_of(&self, a: ArrayIdx) -> RasMm {
        self.ras_from_voxel().apply(self.shape().voxel_of(a))
    }
    /// Array index of the voxel containing a RAS point, if inside.
    fn index_of_ras(&self, p: RasMm) -> Option<ArrayIdx> {
        self.shape().array_index(self.voxel_from_ras().apply(p))
    }
    /// Do two grids coincide (same shape, affines equal within `tol_mm` over the grid)?
    fn same_grid(&self, other: &impl OnGrid, tol_mm: f64) -> bool {
        self.shape() == other.shape()
            && corners(self.shape()).iter().all(|&c| {
                self.ras_from_voxel().apply(c).distance(&other.ras_from_voxel().apply(c)) <= tol_mm
            })
    }
}

fn corners(s: GridShape) -> [VoxelIjk; 4] {
    let [a, b, c] = [s.ni as f64 - 1.0, s.nj as f64 - 1.0, s.nk as f64 - 1.0];
    [VoxelIjk::new(0.0, 0.0, 0.0), VoxelIjk::new(a, 0.0, 0.0), VoxelIjk::new(0.0, b, 0.0), VoxelIjk::new(0.0, 0.0, c)]
}

impl<T> OnGrid for Volume<T> {
    fn shape(&self) -> GridShape {
        GridShape::from_array_shape(self.data.shape())
    }
    fn ras_from_voxel(&self) -> &RasFromVoxel {
        &self.ras_from_voxel
    }
}
impl OnGrid for LabelMap {
    fn shape(&self) -> GridShape {
        GridShape::from_array_shape(self.data.shape())
    }
    fn ras_from_voxel(&self) -> &RasFromVoxel {
        &self.ras_from_voxel
    }
}

/// Reorders `[k, j, i]` data to the closest canonical (RAS) orientation by permutation and flips
/// only (nibabel's `as_closest_canonical`); returns the data and its new affine.
pub fn to_canonical<T: Copy + Default + Send + Sync>(data: &Array3<T>, ras_from_voxel: &RasFromVoxel) -> (Array3<T>, RasFromVoxel) {
    let shape = GridShape::from_array_shape(data.shape());
    let (aff, new_shape, old_from_new) = crate::geometry::reorient_to_canonical_affine(ras_from_voxel, shape);
    let mut out = Array3::<T>::default(new_shape.array_shape());
    let m = *old_from_new.matrix();
    // Each new axis reads one old axis, forwards or backwards: integer arithmetic only.
    let map = |row: usize, n: [usize; 3]| -> (usize, isize, isize) {
        let new_ax = (0..3).find(|&c| m[(row, c)] != 0.0).unwrap_or(row);
        let _ = n;
        (new_ax, m[(row, new_ax)] as isize, m[(row, 3)] as isize)
    };
    let old_n = shape.ijk();
    let axes = [map(0, old_n), map(1, old_n), map(2, old_n)];
    Zip::indexed(&mut out).par_for_each(|(k, j, i), o| {
        let new = [i as isize, j as isize, k as isize];
        let old = |a: usize| (axes[a].1 * new[axes[a].0] + axes[a].2) as usize;
        *o = data[[old(2), old(1), old(0)]];
    });
    (out, aff)
}

impl Volume {
    /// The same volume in the closest canonical (RAS) orientation (permutation and flips only).
    pub fn to_canonical(&self) -> Volume {
        let (data, ras_from_voxel) = to_canonical(&self.data, &self.ras_from_voxel);
        Volume { data, ras_from_voxel, meta: self.meta.clone() }
    }

    /// A computed volume; fails for a singular affine. The data is put in standard (C-order)
    /// layout, copied if it is not (a transposed or strided array), so code reading it as one
    /// C-order slice sees every voxel in `[k, j, i]` order.
    pub fn new(data: Array3<f32>, ras_from_voxel: RasFromVoxel) -> Result<Self, VolumeError> {
        ras_from_voxel.try_inverse().map_err(|e| VolumeError::new("<volume>", e.to_string()))?;
        Ok(Volume { data: standard_layout(data), ras_from_voxel, meta: VolumeMeta::default() })
    }

    /// Writes in the format `path` names (NIfTI, NRRD, MetaImage: [`save_volume`]) in the
    /// given datatype (default: the source's, else float32).
    pub fn save(&self, path: &Path, dtype: Option<DataType>) -> Result<(), VolumeError> {
        save_volume(path, self, dtype)
    }

    /// Intensity at a continuous voxel position, trilinear; `None` outside the grid.
    pub fn sample_trilinear(&self, p: VoxelIjk) -> Option<f32> {
        resample::trilinear_at(&self.data, p.v.x, p.v.y, p.v.z)
    }

    /// Intensity at a RAS point, trilinear.
    pub fn sample_ras(&self, p: RasMm) -> Option<f32> {
        self.sample_trilinear(self.voxel_from_ras().apply(p))
    }

}

/// Running min/max/mean over chunks of values (NaNs counted apart).
///
/// The sum is kept as in one sequential pass: each run of 1024 values (counted from the start
/// of the chunk given to [`add`](Self::add)) is summed in `f32` in order, and those block sums
/// are added to an `f64` in order. Chunks summarised in parallel ([`ChunkStats::of`]) and
/// absorbed in order give exactly the same statistics as one thread adding them in turn.
#[derive(Clone, Debug)]
pub struct StatsAccumulator {
    min: f32,
    max: f32,
    sum: f64,
    n: usize,
    nan: usize,
}

impl Default for StatsAccumulator {
    fn default() -> Self {
        Self { min: f32::INFINITY, max: f32::NEG_INFINITY, sum: 0.0, n: 0, nan: 0 }
    }
}

/// The values per block summed in `f32` before the block's sum joins the `f64` total.
const STATS_BLOCK: usize = 1024;

/// The statistics of one chunk of values, with its blocks' sums still apart (see
/// [`StatsAccumulator`]): what a worker thread computes for [`StatsAccumulator::absorb`].
#[derive(Clone, Debug)]
pub(crate) struct ChunkStats {
    min: f32,
    max: f32,
    nan: usize,
    len: usize,
    block_sums: Vec<f32>,
}

impl ChunkStats {
    /// Min, max, NaN count and the in-order `f32` sum of each block of `c`. Eight blocks are
    /// summed side by side (eight independent chains of additions, each in its block's order),
    /// which gives the same sums as one block after another, several times faster.
    pub(crate) fn of(c: &[f32]) -> ChunkStats {
        const LANES: usize = 8;
        let mut block_sums = Vec::with_capacity(c.len().div_ceil(STATS_BLOCK));
        let (mut lo, mut hi) = ([f32::INFINITY; LANES], [f32::NEG_INFINITY; LANES]);
        let mut nan = [0usize; LANES];
        let mut groups = c.chunks_exact(STATS_BLOCK * LANES);
        for g in &mut groups {
            let rows: [&[f32; STATS_BLOCK]; LANES] =
                std::array::from_fn(|l| g[l * STATS_BLOCK..(l + 1) * STATS_BLOCK].try_into().expect("a whole block"));
            let mut part = [0f32; LANES];
            for t in 0..STATS_BLOCK {
                for l in 0..LANES {
                    let x = rows[l][t];
                    let is_nan = x.is_nan();
                    // A NaN adds +0.0, which leaves a sum started at +0.0 unchanged.
                    part[l] += if is_nan { 0.0 } else { x };
                    lo[l] = lo[l].min(x);
                    hi[l] = hi[l].max(x);
                    nan[l] += is_nan as usize;
                }
            }
            block_sums.extend_from_slice(&part);
        }
        for block in groups.remainder().chunks(STATS_BLOCK) {
            let mut part = 0f32;
            for &x in block {
                let is_nan = x.is_nan();
                part += if is_nan { 0.0 } else { x };
                lo[0] = lo[0].min(x);
                hi[0] = hi[0].max(x);
                nan[0] += is_nan as usize;
            }
            block_sums.push(part);
        }
        ChunkStats {
            min: lo.iter().copied().fold(f32::INFINITY, f32::min),
            max: hi.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            nan: nan.iter().sum(),
            len: c.len(),
            block_sums,
        }
    }
}

impl StatsAccumulator {
    pub fn add(&mut self, c: &[f32]) {
        self.absorb(&ChunkStats::of(c));
    }

    /// Adds a chunk summarised by [`ChunkStats::of`]; chunks must come in their order.
    pub(crate) fn absorb(&mut self, c: &ChunkStats) {
        self.min = self.min.min(c.min);
        self.max = self.max.max(c.max);
        for &p in &c.block_sums {
            self.sum += p as f64;
        }
        self.n += c.len - c.nan;
        self.nan += c.nan;
    }

    pub fn finish(&self) -> Stats {
        if self.n == 0 {
            return Stats { min: f64::NAN, max: f64::NAN, mean: f64::NAN, nan_count: self.nan };
        }
        Stats { min: self.min as f64, max: self.max as f64, mean: self.sum / self.n as f64, nan_count: self.nan }
    }
}

/// Statistics of `flat`, in parallel; the same as one [`StatsAccumulator::add`] of it.
pub(crate) fn stats_of<T: Voxel>(flat: &[T]) -> Stats {
    let parts: Vec<ChunkStats> = flat.par_chunks(STATS_BLOCK * 64).map(|c| ChunkStats::of(&stored::f32_values(c))).collect();
    let mut acc = StatsAccumulator::default();
    for p in &parts {
        acc.absorb(p);
    }
    acc.finish()
}

impl LabelMap {
    /// The same label map in the closest canonical (RAS) orientation.
    pub fn to_canonical(&self) -> LabelMap {
        let (data, ras_from_voxel) = to_canonical(&self.data, &self.ras_from_voxel);
        LabelMap { data, ras_from_voxel, meta: self.meta.clone() }
    }

    /// A computed label map; fails for a singular affine. The data is put in standard layout
    /// as in [`Volume::new`].
    pub fn new(data: Array3<u16>, ras_from_voxel: RasFromVoxel) -> Result<Self, VolumeError> {
        ras_from_voxel.try_inverse().map_err(|e| VolumeError::new("<labels>", e.to_string()))?;
        Ok(LabelMap { data: standard_layout(data), ras_from_voxel, meta: VolumeMeta::default() })
    }

    /// An empty label map on a volume's grid.
    pub fn empty_like(v: &impl OnGrid) -> Self {
        LabelMap { data: Array3::zeros(v.shape().array_shape()), ras_from_voxel: *v.ras_from_voxel(), meta: VolumeMeta::default() }
    }

    /// Writes in the format `path` names ([`save_labels`], no label table: a `.seg.nrrd` gets
    /// generated segment names), uint8 when every label fits, else uint16, atomically.
    pub fn save(&self, path: &Path) -> Result<(), VolumeError> {
        save_labels(path, self, None)
    }

    /// Checks that this label map lies on a volume's grid; the error names both grids.
    pub fn check_matches(&self, v: &impl OnGrid, what: &Path) -> Result<(), VolumeError> {
        if self.shape() != v.shape() {
            return Err(VolumeError::new(what, format!("shape {} does not match the volume's {}", self.shape(), v.shape())));
        }
        if !self.same_grid(v, 1e-3 * self.spacing_mm().iter().cloned().fold(1.0, f64::min)) {
            return Err(VolumeError::new(
                what,
                format!("affine {:?} does not match the volume's {:?}", fmt_rows(&self.ras_from_voxel), fmt_rows(v.ras_from_voxel())),
            ));
        }
        Ok(())
    }

    /// Voxel count per label id (background excluded), sorted by id.
    pub fn counts(&self) -> Vec<(u16, usize)> {
        let mut c = std::collections::BTreeMap::new();
        for &x in self.data.iter() {
            if x != 0 {
                *c.entry(x).or_insert(0usize) += 1;
            }
        }
        c.into_iter().collect()
    }

    /// Binary mask of one label.
    pub fn mask(&self, label: u16) -> Array3<bool> {
        let mut m = Array3::from_elem(self.data.raw_dim(), false);
        Zip::from(&mut m).and(&self.data).par_for_each(|m, &l| *m = l == label);
        m
    }
}

/// `data` in standard (C-order) layout: itself when it is, a C-order copy when not.
fn standard_layout<T: Clone>(data: Array3<T>) -> Array3<T> {
    if data.is_standard_layout() { data } else { data.as_standard_layout().into_owned() }
}

/// Every element of `a` in C (`[k, j, i]`) order as one slice: borrowed when `a` is in
/// standard layout, copied otherwise. `data` fields are public, so code that reads voxels as a
/// slice takes them through here rather than trusting `as_slice` (whose `None` on another
/// layout once read as an empty volume).
pub fn c_order<T: Clone, S: Data<Elem = T>>(a: &ArrayBase<S, Ix3>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

fn fmt_rows(a: &RasFromVoxel) -> Vec<Vec<f64>> {
    a.rows()[..3].iter().map(|r| r.iter().map(|x| (x * 1000.0).round() / 1000.0).collect()).collect()
}
