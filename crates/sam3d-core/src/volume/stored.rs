//! A scan held in a narrower type than float32 when that loses nothing: int16 for most CTs
//! (half the bytes), uint16 for many MRs, uint8 for 8-bit images. The rule is exactness: a
//! volume is held as the narrowest of uint8, int16 and uint16 that holds every one of its
//! voxel values (after scaling) exactly, else as float32, so every reading of a voxel gives the
//! value the float32 volume would. The viewer holds its scan this way; the commands and the
//! engine work on float32 [`Volume`]s.
//!
//! Code that reads intensities from either is generic over [`Voxel`] (`Volume<T>`) and is
//! called through [`with_stored!`](crate::with_stored), which picks the held type.

use super::nifti::{Sample, WriteSample};
use super::{DataType, GridShape, OnGrid, RasFromVoxel, Stats, Volume, VolumeError, VolumeMeta, dicom, read_info};
use crate::geometry::ArrayIdx;
use ndarray::Array3;
use rayon::prelude::*;
use std::path::Path;

/// A type a scan's voxels can be held in: each value is exactly an `f32`
/// ([`WriteSample::to_f32`] gives it).
pub trait Voxel: Sample + WriteSample + Copy + Default + PartialEq + std::fmt::Debug {
    /// The NIfTI datatype that writes these values unchanged.
    const DTYPE: DataType;
    /// The values themselves when they are `f32` already (no conversion to make).
    fn as_f32s(values: &[Self]) -> Option<&[f32]> {
        let _ = values;
        None
    }
}

impl Voxel for f32 {
    const DTYPE: DataType = DataType::Float32;
    fn as_f32s(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }
}

macro_rules! integer_voxel {
    ($t:ty, $dt:expr) => {
        impl Voxel for $t {
            const DTYPE: DataType = $dt;
        }
    };
}
integer_voxel!(i16, DataType::Int16);
integer_voxel!(u16, DataType::Uint16);
integer_voxel!(u8, DataType::Uint8);

/// The values of `values` as `f32`, converted only when they are not `f32` already.
pub fn f32_values<T: Voxel>(values: &[T]) -> std::borrow::Cow<'_, [f32]> {
    match T::as_f32s(values) {
        Some(f) => std::borrow::Cow::Borrowed(f),
        None => std::borrow::Cow::Owned(values.iter().map(|x| x.to_f32()).collect()),
    }
}

impl<T: Voxel> Volume<T> {
    /// Min, max and mean over all finite voxels, in parallel: the same for every held type.
    pub fn stats(&self) -> Stats {
        super::stats_of(&super::c_order(&self.data))
    }

    /// Guesses CT (Hounsfield range) vs MR from the intensities ([`Stats::guess_modality`]).
    pub fn guess_modality(&self) -> super::Modality {
        self.stats().guess_modality()
    }

    /// The intensity of one voxel (`None` outside the grid).
    pub fn value(&self, a: ArrayIdx) -> Option<f32> {
        self.data.get(a.as_kji()).map(|v| v.to_f32())
    }

    /// The same volume as float32.
    pub fn to_f32(&self) -> Volume {
        Volume { data: self.data.mapv(WriteSample::to_f32), ras_from_voxel: self.ras_from_voxel.clone(), meta: self.meta.clone() }
    }
}

/// A scan in the narrowest type that holds its values exactly (module doc).
#[derive(Clone, Debug)]
pub enum StoredVolume {
    F32(Volume<f32>),
    I16(Volume<i16>),
    U16(Volume<u16>),
    U8(Volume<u8>),
}

/// `with_stored!(volume, v => body)`: `body` with `v` bound to the [`StoredVolume`]'s
/// `Volume<T>` (`volume` is a `&StoredVolume`), compiled once per held type.
#[macro_export]
macro_rules! with_stored {
    ($volume:expr, $v:ident => $body:expr) => {
        match $volume {
            $crate::volume::StoredVolume::F32($v) => $body,
            $crate::volume::StoredVolume::I16($v) => $body,
            $crate::volume::StoredVolume::U16($v) => $body,
            $crate::volume::StoredVolume::U8($v) => $body,
        }
    };
}

/// The narrowest held type for values in `lo..=hi` that are all whole numbers.
fn narrowest(lo: f64, hi: f64) -> DataType {
    if lo >= 0.0 && hi <= 255.0 {
        DataType::Uint8
    } else if lo >= -32768.0 && hi <= 32767.0 {
        DataType::Int16
    } else if lo >= 0.0 && hi <= 65535.0 {
        DataType::Uint16
    } else {
        DataType::Float32
    }
}

fn narrow<T: Voxel>(v: Volume) -> Volume<T> {
    let mut data = Array3::<T>::default(v.data.raw_dim());
    let to = |x: f32| T::from_f64(x as f64).unwrap_or_default();
    match (data.as_slice_mut(), v.data.as_slice()) {
        (Some(out), Some(src)) => out.par_chunks_mut(1 << 16).zip(src.par_chunks(1 << 16)).for_each(|(o, s)| o.iter_mut().zip(s).for_each(|(o, &x)| *o = to(x))),
        _ => ndarray::Zip::from(&mut data).and(&v.data).par_for_each(|o, &x| *o = to(x)),
    }
    Volume { data, ras_from_voxel: v.ras_from_voxel, meta: v.meta }
}

impl StoredVolume {
    /// `v` in the narrowest type that holds every voxel exactly (float32 when one is not a whole
    /// number, or is out of 16-bit range). Converting takes the float32 array and the narrow one
    /// at once; the float32 one is dropped here.
    pub fn from_volume(v: Volume) -> StoredVolume {
        let flat = super::c_order(&v.data);
        let range = flat
            .par_chunks(1 << 16)
            .map(|c| {
                let whole = c.iter().all(|x| x.fract() == 0.0);
                let (lo, hi) = c.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                (whole, lo, hi)
            })
            .reduce(|| (true, f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0 && b.0, a.1.min(b.1), a.2.max(b.2)));
        drop(flat);
        let (whole, lo, hi) = range;
        match if whole && lo <= hi { narrowest(lo as f64, hi as f64) } else { DataType::Float32 } {
            DataType::Uint8 => StoredVolume::U8(narrow(v)),
            DataType::Int16 => StoredVolume::I16(narrow(v)),
            DataType::Uint16 => StoredVolume::U16(narrow(v)),
            _ => StoredVolume::F32(v),
        }
    }

    /// Reads `path` as [`super::open_with`] does (the DICOM `series` when given), held in the
    /// narrowest exact type. A NIfTI file of integers with whole-number scaling is read straight
    /// into that type, never as float32.
    pub fn open(path: &Path, series: Option<&dicom::SeriesChoice>) -> Result<StoredVolume, VolumeError> {
        if series.is_none() && super::detect(path)? == super::Format::Nifti {
            let info = read_info(path)?;
            if let Some(dt) = direct_type(&info) {
                let meta = VolumeMeta::from_info(&info);
                let grid = info.ras_from_voxel.clone();
                let held = match dt {
                    DataType::Uint8 => info.read_data::<u8>().map(|data| StoredVolume::U8(Volume { data, ras_from_voxel: grid, meta })),
                    DataType::Int16 => info.read_data::<i16>().map(|data| StoredVolume::I16(Volume { data, ras_from_voxel: grid, meta })),
                    _ => info.read_data::<u16>().map(|data| StoredVolume::U16(Volume { data, ras_from_voxel: grid, meta })),
                };
                // Only a file whose values break its own header's range gets here: read it as
                // float32, which says what is wrong or holds what is there.
                if let Ok(h) = held {
                    return Ok(h);
                }
            }
        }
        super::open_with(path, series).map(StoredVolume::from_volume)
    }

    /// The type the voxels are held in.
    pub fn dtype(&self) -> DataType {
        match self {
            StoredVolume::F32(_) => DataType::Float32,
            StoredVolume::I16(_) => DataType::Int16,
            StoredVolume::U16(_) => DataType::Uint16,
            StoredVolume::U8(_) => DataType::Uint8,
        }
    }

    pub fn meta(&self) -> &VolumeMeta {
        crate::with_stored!(self, v => &v.meta)
    }

    /// The voxel array's shape, `[k, j, i]`.
    pub fn array_shape(&self) -> [usize; 3] {
        self.shape().array_shape()
    }

    /// The intensity of one voxel, as the float32 volume holds it (`None` outside the grid).
    pub fn value(&self, a: ArrayIdx) -> Option<f32> {
        crate::with_stored!(self, v => v.value(a))
    }

    pub fn stats(&self) -> Stats {
        crate::with_stored!(self, v => v.stats())
    }

    pub fn guess_modality(&self) -> super::Modality {
        self.stats().guess_modality()
    }

    /// The scan as float32 (a copy).
    pub fn to_f32(&self) -> Volume {
        crate::with_stored!(self, v => v.to_f32())
    }
}

/// The held type a NIfTI file's integers go straight into: the narrowest that holds every value
/// its datatype and (whole-number) scaling can give; `None` when none does or it is float.
fn direct_type(info: &super::NiftiInfo) -> Option<DataType> {
    let (lo, hi) = match info.dtype {
        DataType::Uint8 => (0.0, 255.0),
        DataType::Int8 => (-128.0, 127.0),
        DataType::Int16 => (-32768.0, 32767.0),
        DataType::Uint16 => (0.0, 65535.0),
        _ => return None,
    };
    let (lo, hi) = match info.scaling {
        None => (lo, hi),
        Some((s, i)) if s.fract() == 0.0 && i.fract() == 0.0 => {
            let (a, b) = (lo * s + i, hi * s + i);
            (a.min(b), a.max(b))
        }
        Some(_) => return None,
    };
    match narrowest(lo, hi) {
        DataType::Float32 => None,
        // Int8 data is held as int16 (no int8 type is held), uint8 as uint8.
        dt => Some(if info.dtype == DataType::Int8 && dt == DataType::Uint8 { DataType::Int16 } else { dt }),
    }
}

impl OnGrid for StoredVolume {
    fn shape(&self) -> GridShape {
        crate::with_stored!(self, v => v.shape())
    }
    fn ras_from_voxel(&self) -> &RasFromVoxel {
        crate::with_stored!(self, v => &v.ras_from_voxel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{WriteOptions, write_nifti};

    fn vol(f: impl Fn(usize, usize, usize) -> f32) -> Volume {
        Volume::new(Array3::from_shape_fn((4, 5, 6), |(k, j, i)| f(k, j, i)), RasFromVoxel::scale_translate([0.7, 0.8, 2.5], [-10.0, 4.0, 30.0])).expect("volume")
    }

    #[test]
    fn a_volume_is_held_in_the_narrowest_type_that_holds_every_value_exactly() {
        let cases: [(Box<dyn Fn(usize, usize, usize) -> f32>, DataType); 6] = [
            (Box::new(|k, j, i| (k * 30 + j * 10 + i) as f32), DataType::Uint8),
            (Box::new(|k, j, i| (k * 300 + j * 10 + i) as f32 - 1024.0), DataType::Int16),
            (Box::new(|k, j, i| (k * 3000 + j * 10 + i) as f32 + 40000.0), DataType::Uint16),
            (Box::new(|k, j, i| (k * 3000 + j * 10 + i) as f32 - 40000.0), DataType::Float32),
            (Box::new(|k, _, _| if k == 3 { 0.5 } else { 1.0 }), DataType::Float32),
            (Box::new(|k, j, _| if k == 1 && j == 2 { f32::NAN } else { 7.0 }), DataType::Float32),
        ];
        for (f, want) in cases {
            let v = vol(f);
            let held = StoredVolume::from_volume(v.clone());
            assert_eq!(held.dtype(), want);
            // Every voxel reads back as the float32 volume's value (NaN as NaN).
            let back = held.to_f32();
            assert!(back.data.iter().zip(v.data.iter()).all(|(a, b)| a == b || (a.is_nan() && b.is_nan())));
            assert_eq!(back.ras_from_voxel, v.ras_from_voxel);
            assert_eq!(held.value(ArrayIdx { k: 3, j: 4, i: 5 }).map(f32::to_bits), Some(v.data[[3, 4, 5]].to_bits()));
            let (a, b) = (held.stats(), v.stats());
            assert_eq!((a.min.to_bits(), a.max.to_bits(), a.mean.to_bits(), a.nan_count), (b.min.to_bits(), b.max.to_bits(), b.mean.to_bits(), b.nan_count));
        }
    }

    #[test]
    fn an_integer_nifti_is_read_straight_into_its_type_and_a_scaled_one_only_when_the_scaling_keeps_it_whole() {
        let dir = std::env::temp_dir().join(format!("sam3d-stored-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let v = vol(|k, j, i| (k * 300 + j * 10 + i) as f32 - 1024.0);
        let path = dir.join("ct.nii.gz");
        write_nifti(&path, v.data.view(), &v.ras_from_voxel, &WriteOptions { dtype: DataType::Int16, ..Default::default() }).expect("written");
        let info = read_info(&path).expect("info");
        assert_eq!(direct_type(&info), Some(DataType::Int16));
        let held = StoredVolume::open(&path, None).expect("read");
        assert!(matches!(held, StoredVolume::I16(_)), "{:?}", held.dtype());
        assert_eq!(held.to_f32().data, v.data);
        assert_eq!(held.meta().dtype, Some(DataType::Int16));
        // A uint16 file with intercept −1024 holds −1024..64511: no 16-bit type covers the
        // header's range, so the file is read as float32 and narrowed by its actual values.
        assert_eq!(narrowest(-1024.0, 64511.0), DataType::Float32);
        assert_eq!(narrowest(-1024.0, 3071.0), DataType::Int16);
        let f = dir.join("float.nii");
        write_nifti(&f, v.data.view(), &v.ras_from_voxel, &WriteOptions::default()).expect("written");
        assert_eq!(direct_type(&read_info(&f).expect("info")), None);
        let held = StoredVolume::open(&f, None).expect("read");
        assert_eq!(held.dtype(), DataType::Int16, "float32 file of whole numbers in int16 range");
        assert_eq!(held.to_f32().data, v.data);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
