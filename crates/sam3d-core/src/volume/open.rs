//! The one place a path becomes a volume or a label map. The format is chosen here, from what
//! the path is (a folder, the file's first bytes, its name), and each reader beside this file
//! produces the same [`Volume`] / [`LabelMap`], with its affine in RAS. The viewer's loader,
//! the engine and every command go through [`open`] and [`open_labels`]; a new format is a new
//! reader file and one more arm in [`detect`].

use super::{LabelMap, OnGrid, Volume, VolumeError, VolumeMeta, dicom, read_info};
use std::path::Path;

/// A format this build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// NIfTI-1 or NIfTI-2, `.nii` or gzipped `.nii.gz`.
    Nifti,
    /// A DICOM series: a folder (walked recursively) or one Part 10 file of the series.
    Dicom,
    /// NRRD, `.nrrd` or a detached `.nhdr` (Slicer's `.seg.nrrd` segmentations too).
    Nrrd,
    /// MetaImage, `.mha` or `.mhd` + its data file.
    MetaImage,
}

/// Which reader `path` needs, or why none does (naming the path).
pub fn detect(path: &Path) -> Result<Format, VolumeError> {
    let meta = std::fs::metadata(path).map_err(|e| VolumeError::new(path, format!("cannot open: {e}")))?;
    if meta.is_dir() {
        // A folder is a DICOM series (or several): the DICOM reader says if it holds none.
        return Ok(Format::Dicom);
    }
    let mut head = [0u8; 132];
    let n = std::fs::File::open(path)
        .and_then(|mut f| super::rawdata::read_full(&mut f, &mut head))
        .map_err(|e| VolumeError::new(path, format!("cannot read: {e}")))?;
    let head = &head[..n];
    if n == 132 && &head[128..132] == b"DICM" {
        return Ok(Format::Dicom);
    }
    if head.starts_with(b"NRRD000") || has_suffix(path, &[".nrrd", ".nhdr"]) {
        return Ok(Format::Nrrd);
    }
    if head.starts_with(b"ObjectType") || head.starts_with(b"NDims") || has_suffix(path, &[".mha", ".mhd"]) {
        return Ok(Format::MetaImage);
    }
    // Everything else goes to the NIfTI reader, which checks the header itself (sizeof_hdr,
    // magic, gzip) and says what is wrong.
    Ok(Format::Nifti)
}

/// Does the file name end in one of `suffixes` (lower case, ASCII case ignored)?
fn has_suffix(path: &Path, suffixes: &[&str]) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    suffixes.iter().any(|s| name.ends_with(s))
}

/// Reads a volume (any supported datatype, scaling applied) in whatever format `path` is. A
/// folder holding several DICOM image series is refused with their list: pick one with
/// [`dicom::open_series`].
pub fn open(path: &Path) -> Result<Volume, VolumeError> {
    match detect(path)? {
        Format::Dicom => dicom::open_series(path, &dicom::SeriesChoice::Only),
        Format::Nifti => {
            let info = read_info(path)?;
            let data = info.read_data::<f32>()?;
            Ok(Volume { data, ras_from_voxel: info.ras_from_voxel, meta: VolumeMeta::from_info(&info) })
        }
        Format::Nrrd => super::nrrd::read_volume(path),
        Format::MetaImage => super::metaimage::read_volume(path),
    }
}

/// [`open`], with the DICOM series to read when `path` holds several (`--series`); `None` is
/// [`open`] itself. A series choice for a file that is not DICOM is refused, naming the format.
pub fn open_with(path: &Path, series: Option<&dicom::SeriesChoice>) -> Result<Volume, VolumeError> {
    match (series, detect(path)?) {
        (None, _) => open(path),
        (Some(choice), Format::Dicom) => dicom::open_series(path, choice),
        (Some(choice), other) => Err(VolumeError::new(path, format!("{choice} picks a DICOM series, but this is {other:?}, which holds one volume"))),
    }
}

/// Reads a label map: every value must be a whole number in 0..=65535.
pub fn open_labels(path: &Path) -> Result<LabelMap, VolumeError> {
    match detect(path)? {
        Format::Dicom => open_dicom_labels(path),
        Format::Nifti => {
            let info = read_info(path)?;
            let data = info.read_data::<u16>()?;
            Ok(LabelMap { data, ras_from_voxel: info.ras_from_voxel, meta: VolumeMeta::from_info(&info) })
        }
        Format::Nrrd => super::nrrd::read_labels(path),
        Format::MetaImage => super::metaimage::read_labels(path),
    }
}

/// A DICOM file as a label map: a Segmentation, on its own grid (its warnings, overlaps
/// and empty segments, are logged; [`dicom::read_dicom_seg`] returns them). Anything else
/// DICOM is refused, naming what to do instead.
fn open_dicom_labels(path: &Path) -> Result<LabelMap, VolumeError> {
    if path.is_dir() || !dicom::is_dicom_seg(path) {
        return Err(VolumeError::new(
            path,
            "is DICOM but not a Segmentation: label maps are read from DICOM SEG, NIfTI, NRRD or MetaImage (an RTSTRUCT is drawn on its series with --structures)",
        ));
    }
    let seg = dicom::read_dicom_seg(path)?;
    for w in &seg.warnings {
        log::warn!("{w}");
    }
    Ok(seg.labels)
}

/// A label map on a volume's grid, with the names it came with.
#[derive(Clone, Debug)]
pub struct LabelsOnGrid {
    pub labels: LabelMap,
    /// The names: a segmentation's or structure set's own, else a table beside the label map
    /// ([`super::label_names::names_beside`]); with the file they came from.
    pub names: Option<(super::label_names::LabelNames, std::path::PathBuf)>,
    /// What reading them warned about (overlaps, empty segments, contours left out), each
    /// naming the file; also logged.
    pub warnings: Vec<String>,
}

/// Reads the labels at `labels` onto the grid of `volume`, which was read from `image`:
/// - a label map file (NIfTI, NRRD, `.seg.nrrd`, MetaImage) must lie on the volume's grid;
/// - a DICOM SEG is put on it voxel for voxel ([`dicom::place_on_grid`]: it usually holds
///   only the slices with something on them);
/// - an RT structure set is drawn on the series it references among the DICOM files of
///   `image` (the folder, or a file's folder: [`dicom::open_rtstruct_labels`]), which must be
///   the volume's grid.
///
/// Errors name the labels' file and the problem. A names table that cannot be read is a
/// warning, not an error.
pub fn open_labels_on(labels: &Path, volume: &impl OnGrid, image: &Path) -> Result<LabelsOnGrid, VolumeError> {
    let dicom_kind = match detect(labels)? {
        Format::Dicom if labels.is_file() => Some(dicom::label_object_kind(labels).ok_or_else(|| {
            VolumeError::new(labels, "is DICOM but neither a Segmentation nor an RT structure set: no labels in it")
        })?),
        Format::Dicom => return Err(VolumeError::new(labels, "is a folder: labels are one file (a label map, a DICOM SEG or an RTSTRUCT)")),
        _ => None,
    };
    let (map, names, warnings) = match dicom_kind {
        Some(dicom::LabelObject::Seg) => {
            let seg = dicom::read_dicom_seg(labels)?;
            let placed = dicom::place_on_grid(&seg.labels, volume, labels)?;
            (placed, Some((seg.names, labels.to_path_buf())), seg.warnings)
        }
        Some(dicom::LabelObject::RtStruct) => {
            let folder = if image.is_dir() { image.to_path_buf() } else { image.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf() };
            let rt = dicom::open_rtstruct_labels(labels, &folder)?;
            (rt.labels, Some((rt.names, labels.to_path_buf())), rt.warnings)
        }
        None => {
            let map = open_labels(labels)?;
            let (names, warnings) = match super::label_names::names_beside(labels) {
                Ok(n) => (n, Vec::new()),
                Err(e) => (None, vec![format!("label names not used: {e}")]),
            };
            for w in &warnings {
                log::warn!("{w}");
            }
            (map, names, warnings)
        }
    };
    if dicom_kind == Some(dicom::LabelObject::Seg) {
        for w in &warnings {
            log::warn!("{w}");
        }
    }
    map.check_matches(volume, labels)?;
    Ok(LabelsOnGrid { labels: map, names, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_dicom_files_go_to_the_dicom_reader_which_names_the_problem() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(detect(dir.path()).expect("folder"), Format::Dicom);
        let e = open(dir.path()).expect_err("an empty folder").to_string();
        assert!(e.starts_with(&dir.path().display().to_string()) && e.contains("no DICOM files"), "{e}");
        let dcm = dir.path().join("x.dcm");
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        bytes.extend_from_slice(&[0u8; 64]);
        std::fs::write(&dcm, bytes).expect("write");
        assert_eq!(detect(&dcm).expect("dicom"), Format::Dicom);
        let e = open_labels(&dcm).expect_err("DICOM labels").to_string();
        assert!(e.contains("x.dcm") && e.contains("not a Segmentation"), "{e}");
        let e = open(&dcm).expect_err("a broken DICOM file").to_string();
        assert!(e.contains("x.dcm") && e.contains("not a readable DICOM file"), "{e}");
        let e = open_with(&dir.path().join("missing.nii"), None).expect_err("missing").to_string();
        assert!(e.contains("missing.nii") && e.contains("cannot open"), "{e}");
    }

    #[test]
    fn a_series_choice_is_only_for_dicom() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("v.nii");
        let v = Volume::new(ndarray::Array3::zeros((2, 2, 2)), crate::geometry::RasFromVoxel::identity()).expect("volume");
        v.save(&p, None).expect("save");
        assert!(open_with(&p, None).is_ok());
        let e = open_with(&p, Some(&dicom::SeriesChoice::Number(3))).expect_err("not DICOM").to_string();
        assert!(e.contains("v.nii") && e.contains("--series 3") && e.contains("Nifti"), "{e}");
    }
}
