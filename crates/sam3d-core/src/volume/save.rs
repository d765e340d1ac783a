//! The one place a volume or a label map becomes a file: the format is the one the output
//! name asks for, and every writer goes through a temporary file and a rename.
//!
//! A `.dcm` output is a DICOM Segmentation, which must reference the series it was drawn on:
//! [`save_labels_dicom_seg`] takes that series (the path it was opened from and the series
//! choice it was opened with); [`save_labels`], which has no source, refuses `.dcm`.

use super::label_names::LabelNames;
use super::nifti::{WriteOptions, write_nifti, write_nifti_by_slices};
use crate::geometry::{GridShape, RasFromVoxel};
use super::dicom::{SegSummary, SeriesChoice, source_series, write_dicom_seg};
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
    /// `.dcm`: a DICOM Segmentation (label maps only, with their source series:
    /// [`save_labels_dicom_seg`])
    DicomSeg,
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
        } else if name.ends_with(".dcm") {
            Ok(OutputFormat::DicomSeg)
        } else {
            Err(VolumeError::new(path, "output must end in .nii, .nii.gz, .nrrd, .seg.nrrd (label maps), .mha or .dcm (a DICOM SEG of a DICOM series' labels)"))
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
        OutputFormat::DicomSeg => Err(VolumeError::new(path, "volumes are not written as DICOM; save as .nii.gz, .nrrd or .mha")),
    }
}

/// Writes a volume computed a run of whole slices at a time, `fill_slices(k0, out)` filling
/// `out` (C order) from slice `k0` (called in parallel), in `dtype`, in the format the name
/// asks. NIfTI is written as the slices come ([`write_nifti_by_slices`](super::nifti::write_nifti_by_slices):
/// each run is compressed while others are computed, and the volume is never whole in memory
/// as float32); the other formats get the whole volume first. The voxels are those
/// [`save_volume`] writes of the filled volume.
pub fn save_volume_by_slices(
    path: &Path,
    shape: GridShape,
    ras_from_voxel: &RasFromVoxel,
    dtype: DataType,
    fill_slices: impl Fn(usize, &mut [f32]) + Sync,
) -> Result<(), VolumeError> {
    if OutputFormat::of(path)? == OutputFormat::Nifti {
        return write_nifti_by_slices(path, shape, ras_from_voxel, &WriteOptions { dtype, ..Default::default() }, fill_slices);
    }
    let mut data = ndarray::Array3::<f32>::zeros(shape.array_shape());
    if let Some(flat) = data.as_slice_mut() {
        use rayon::prelude::*;
        flat.par_chunks_mut((shape.ni * shape.nj).max(1)).enumerate().for_each(|(k, s)| fill_slices(k, s));
    }
    let v = Volume { data, ras_from_voxel: *ras_from_voxel, meta: Default::default() };
    save_volume(path, &v, Some(dtype))
}

/// Writes a label map (uint8 when every label fits, else uint16) in the format the name asks.
/// A `.seg.nrrd` carries `names` (names and colours; labels without an entry get generated
/// ones) so that 3D Slicer shows them; the other formats hold only the label values, so with
/// `names` they get `<stem>.tsv` beside them (`id<TAB>name<TAB>r g b`, what
/// [`super::label_names::names_beside`] reads back).
pub fn save_labels(path: &Path, l: &LabelMap, names: Option<&LabelNames>) -> Result<(), VolumeError> {
    let max = l.data.iter().copied().max().unwrap_or(0);
    let dtype = if max <= 255 { DataType::Uint8 } else { DataType::Uint16 };
    let format = OutputFormat::of(path)?;
    match format {
        OutputFormat::Nifti => write_nifti(path, l.data.view(), &l.ras_from_voxel, &WriteOptions { dtype, ..Default::default() })?,
        OutputFormat::Nrrd => nrrd::write_labels(path, l)?,
        OutputFormat::SegNrrd => return nrrd::seg::write_segmentation(path, l, names.unwrap_or(&LabelNames::new())),
        OutputFormat::MetaImage => metaimage::write_metaimage(path, l.data.view(), &l.ras_from_voxel, dtype, true)?,
        OutputFormat::DicomSeg => return Err(seg_needs_source(path)),
    }
    match names.filter(|n| !n.is_empty()) {
        Some(n) => {
            let tsv = tsv_path(path);
            super::atomic_write(&tsv, |w| std::io::Write::write_all(w, label_tsv(n).as_bytes()))
        }
        None => Ok(()),
    }
}

fn seg_needs_source(path: &Path) -> VolumeError {
    VolumeError::new(
        path,
        "a DICOM SEG (.dcm) references the DICOM series it was drawn on, and this label map has none: \
         save it with its source series (save_labels_dicom_seg), or as .nii.gz, .nrrd, .seg.nrrd or .mha",
    )
}

/// Writes a label map as a DICOM SEG (`path` must end in `.dcm`) referencing its source
/// series: the series under `source` (a folder or one of its files) that `series` picks, as
/// [`super::open_with`] opened it. The label map must lie on that series' grid; one segment
/// per label present, named and coloured from `names`.
pub fn save_labels_dicom_seg(path: &Path, l: &LabelMap, names: &LabelNames, source: &Path, series: &SeriesChoice) -> Result<SegSummary, VolumeError> {
    if OutputFormat::of(path)? != OutputFormat::DicomSeg {
        return Err(VolumeError::new(path, "a DICOM SEG is written to a name ending in .dcm"));
    }
    let src = source_series(source, series)?;
    write_dicom_seg(path, l, names, &src)
}

/// `<stem>.tsv` beside a label map (`labels.nii.gz` → `labels.tsv`).
pub fn tsv_path(label_path: &Path) -> std::path::PathBuf {
    let name = label_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let stem = [".nii", ".seg.nrrd", ".nrrd", ".mha"].iter().find_map(|s| stem.strip_suffix(s)).unwrap_or(stem);
    label_path.with_file_name(format!("{stem}.tsv"))
}

/// The `.tsv` text of a names table: `id<TAB>name[<TAB>r g b]` per label.
pub fn label_tsv(names: &LabelNames) -> String {
    let mut out = String::from("# id\tname\tr g b\n");
    for (id, (name, colour)) in names {
        let name: String = name.chars().map(|c| if c == '\t' || c == '\n' { ' ' } else { c }).collect();
        match colour {
            Some([r, g, b]) => out.push_str(&format!("{id}\t{name}\t{r} {g} {b}\n")),
            None => out.push_str(&format!("{id}\t{name}\n")),
        }
    }
    out
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
        let e = l.save(&dir.path().join("a.dcm")).expect_err("no source series").to_string();
        assert!(e.contains("a.dcm") && e.contains("source series"), "{e}");
        assert!(!dir.path().join("a.dcm").exists());
    }

    #[test]
    fn a_plain_label_map_gets_its_names_beside_it_and_they_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let l = LabelMap::new(Array3::from_shape_fn((2, 3, 4), |(k, _, _)| k as u16 + 1), RasFromVoxel::identity()).expect("grid");
        let mut names = LabelNames::new();
        names.insert(1, ("liver\tleft".into(), Some([200, 10, 30])));
        names.insert(2, ("spleen".into(), None));
        let p = dir.path().join("edited.nii.gz");
        save_labels(&p, &l, Some(&names)).expect("save");
        assert_eq!(tsv_path(&p), dir.path().join("edited.tsv"));
        let (back, from) = crate::volume::label_names::names_beside(&p).expect("readable").expect("names");
        assert_eq!(from, dir.path().join("edited.tsv"));
        assert_eq!(back.get(&1), Some(&("liver left".to_string(), Some([200, 10, 30]))));
        assert_eq!(back.get(&2), Some(&("spleen".to_string(), None)));
    }
}
