//! The one place a volume or a label map becomes a file: the format is the one the output
//! name asks for, and every writer goes through a temporary file and a rename.

use super::label_names::LabelNames;
use super::nifti::{WriteOptions, write_nifti};
use super::{DataType, LabelMap, Volume, VolumeError, metaimage, nrrd};
use std::path::Path;

/// A format this build writes, from the output's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `.nii`, `.nii.gz`
    Nifti,
    /// `.nrrd` (gzip, LPS)
    Nrrd,
    /// `.seg.nrrd`: a 3D Slicer segmentation (label maps only)
    SegNrrd,
    /// `.mha` (zlib, LPS)
    MetaImage,
}

impl OutputFormat {
    /// From the file name; the error lists what can be written.
    pub fn of(path: &Path) -> Result<Self, VolumeError> {
        let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            Ok(OutputFormat::Nifti)
        } else if name.ends_with(".seg.nrrd") {
            Ok(OutputFormat::SegNrrd)
        } else if name.ends_with(".nrrd") {
            Ok(OutputFormat::Nrrd)
        } else if name.ends_with(".mha") {
            Ok(OutputFormat::MetaImage)
        } else {
            Err(VolumeError::new(path, "output must end in .nii, .nii.gz, .nrrd, .seg.nrrd (label maps) or .mha"))
        }
    }
}

/// Writes a volume in `dtype` (default: the source's, else float32) in the format the name asks.
pub fn save_volume(path: &Path, v: &Volume, dtype: Option<DataType>) -> Result<(), VolumeError> {
    let dtype = dtype.or(v.meta.dtype).unwrap_or(DataType::Float32);
    match OutputFormat::of(path)? {
        OutputFormat::Nifti => write_nifti(path, v.data.view(), &v.ras_from_voxel, &WriteOptions { dtype, ..Default::default() }),
        OutputFormat::Nrrd => nrrd::write_volume(path, v, Some(dtype)),
        OutputFormat::SegNrrd => Err(VolumeError::new(path, "a .seg.nrrd holds a segmentation; save a volume as .nrrd")),
        OutputFormat::MetaImage => metaimage::write_metaimage(path, v.data.view(), &v.ras_from_voxel, dtype, true),
    }
}

/// Writes a label map (uint8 when every label fits, else uint16) in the format the name asks.
/// A `.seg.nrrd` carries `names` (names and colours; labels without an entry get generated
/// ones) so that 3D Slicer shows them; the other formats hold only the label values.
pub fn save_labels(path: &Path, l: &LabelMap, names: Option<&LabelNames>) -> Result<(), VolumeError> {
    let max = l.data.iter().copied().max().unwrap_or(0);
    let dtype = if max <= 255 { DataType::Uint8 } else { DataType::Uint16 };
    match OutputFormat::of(path)? {
        OutputFormat::Nifti => write_nifti(path, l.data.view(), &l.ras_from_voxel, &WriteOptions { dtype, ..Default::default() }),
        OutputFormat::Nrrd => nrrd::write_labels(path, l),
        OutputFormat::SegNrrd => nrrd::seg::write_segmentation(path, l, names.unwrap_or(&LabelNames::new())),
        OutputFormat::MetaImage => metaimage::write_metaimage(path, l.data.view(), &l.ras_from_voxel, dtype, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::RasFromVoxel;
    use ndarray::Array3;

    #[test]
    fn the_name_chooses_the_writer_and_every_one_reads_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let aff = RasFromVoxel::scale_translate([0.5, -1.0, 2.0], [3.0, 4.0, 5.0]);
        let l = LabelMap::new(Array3::from_shape_fn((2, 3, 4), |(k, j, i)| ((i + j + k) % 3) as u16 * 300), aff).expect("grid");
        for name in ["a.nii.gz", "a.nrrd", "a.seg.nrrd", "a.mha", "A.NRRD"] {
            let p = dir.path().join(name);
            l.save(&p).unwrap_or_else(|e| panic!("{e}"));
            let back = crate::volume::open_labels(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back.data, l.data, "{name}");
            assert!(back.ras_from_voxel.max_abs_diff(&aff) < 1e-6, "{name}");
        }
        assert_eq!(OutputFormat::of(Path::new("x.seg.nrrd")).expect("known"), OutputFormat::SegNrrd);
        let e = l.save(&dir.path().join("a.png")).expect_err("unknown").to_string();
        assert!(e.contains("a.png") && e.contains(".seg.nrrd"), "{e}");
        let v = Volume::new(l.data.mapv(|x| x as f32), aff).expect("grid");
        assert!(v.save(&dir.path().join("v.seg.nrrd"), None).expect_err("not a segmentation").to_string().contains("save a volume as .nrrd"));
    }
}
