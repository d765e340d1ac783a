//! A data folder's cases — what `train`, `eval`, `preprocess` and the viewer's case browser
//! read — and one case read: its scan, and its label map on the scan's grid with its names.
//!
//! # How cases are found ([`find_pairs`])
//! In the data folder `DIR`, by the first rule that finds any case:
//! 1. **nnU-Net**: `DIR/imagesTr/` and `DIR/labelsTr/`. The image is `imagesTr/X.EXT` or
//!    `imagesTr/X_0000.EXT` (the channel suffix), or a DICOM folder `imagesTr/X/` (`X_0000/`);
//!    its labels are `labelsTr/X.LEXT`. Images without labels are left out.
//! 2. In `DIR` itself (both forms may be mixed):
//!    - **pairs**: `X.EXT`, or a DICOM folder `X/`, beside `X_labels.LEXT` (an image without
//!      labels is left out);
//!    - **case folders**: a folder `X/` without `X_labels.*` beside it that holds its image
//!      and its labels: the labels are `labels.LEXT` at its top, or the one DICOM SEG or
//!      RTSTRUCT anywhere inside it; the image is the one `EXT` file at its top, else the
//!      DICOM series inside it. A folder with DICOM files but no labels is left out with a
//!      warning; one without DICOM files or labels is not a case.
//! 3. When neither finds a case, `DIR` is itself a case folder as in 2 (named after `DIR`):
//!    one volume beside `labels.nii.gz` (the demo's layout), or a DICOM series with its
//!    SEG or RTSTRUCT.
//!
//! `EXT` is `.nii.gz`, `.nii`, `.nrrd`, `.nhdr`, `.mha` or `.mhd`; `LEXT` one of those,
//! Slicer's `.seg.nrrd`, or `.dcm` (a DICOM SEG or RTSTRUCT). Case names are `X` (the
//! folder's name for a case folder). Refused, naming the folder and the files: a case with
//! two labels (`X_labels.nii.gz` and `X_labels.dcm`, a `labels.*` file and a SEG, two SEGs),
//! an `X_labels` with two images (`X.nii.gz` and `X/`), a case folder with labels but two
//! volume files or none and no DICOM.
//!
//! # Reading a case ([`CasePair::load`])
//! The image through `volume::open` (a DICOM folder: its one image series; SEGs and
//! structure sets beside it are not series to choose from). A folder of several image series
//! is refused with their list, naming the folder — unless the labels are a DICOM SEG or an
//! RTSTRUCT that references one of them: then that series. The labels through
//! `volume::open_labels_on`: a label map must lie on the scan's grid, a SEG is put on it
//! voxel for voxel, an RTSTRUCT drawn on its series. Names come from the SEG's segments or
//! the structure set's ROIs, else a table beside the label map. Errors begin with the case's
//! name.

use super::preprocess::DataError;
use crate::volume::dicom::{self, LabelObject, SeriesChoice};
use crate::volume::label_names::LabelNames;
use crate::volume::{LabelMap, Volume, VolumeError};
use std::path::{Path, PathBuf};

/// A volume and its labels: a case of a data folder.
#[derive(Clone, Debug, PartialEq)]
pub struct CasePair {
    pub name: String,
    /// A volume file, or a DICOM folder (or one file of a series).
    pub image: PathBuf,
    /// A label map file, a DICOM SEG or an RT structure set.
    pub labels: PathBuf,
}

/// A case read: the scan, its labels on the scan's grid, their names.
#[derive(Clone, Debug)]
pub struct LoadedCase {
    pub volume: Volume,
    pub labels: LabelMap,
    /// Label id → name (and colour), with the file they came from.
    pub names: Option<(LabelNames, PathBuf)>,
    /// What reading the labels warned about (logged too).
    pub warnings: Vec<String>,
}

impl CasePair {
    /// Reads the case (see the module notes); errors begin with the case's name.
    pub fn load(&self) -> Result<LoadedCase, DataError> {
        let case = |error: VolumeError| DataError::Case { case: self.name.clone(), error };
        let series = self.referenced_series().map_err(case)?;
        let volume = crate::volume::open_with(&self.image, series.as_ref()).map_err(|e| case(self.several_series(e)))?;
        let on = crate::volume::open_labels_on(&self.labels, &volume, &self.image).map_err(case)?;
        Ok(LoadedCase { volume, labels: on.labels, names: on.names, warnings: on.warnings })
    }

    /// `e`, or, when the image is a DICOM folder of several image series (which a data folder
    /// cannot pick with `--series`), what to do about it, with their list.
    fn several_series(&self, e: VolumeError) -> VolumeError {
        if !self.image.is_dir() {
            return e;
        }
        let Ok(list) = dicom::list_series(&self.image) else { return e };
        let scans: Vec<String> = list.iter().filter(|s| s.kind.is_scan()).map(|s| format!("  {s}")).collect();
        if scans.len() < 2 {
            return e;
        }
        VolumeError::new(
            &self.image,
            format!(
                "holds {} image series and its labels ({}) name none of them: keep one series in the case's folder, or give it a DICOM SEG or RTSTRUCT that references one:\n{}",
                scans.len(),
                self.labels.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                scans.join("\n")
            ),
        )
    }

    /// The series to open when the image is a DICOM folder of several image series and the
    /// labels, a SEG or an RTSTRUCT, reference one of them.
    fn referenced_series(&self) -> Result<Option<SeriesChoice>, VolumeError> {
        if !self.image.is_dir() || !dicom::is_dicom_file(&self.labels) {
            return Ok(None);
        }
        let uid = match dicom::label_object_kind(&self.labels) {
            Some(LabelObject::Seg) => dicom::seg_referenced_series(&self.labels)?,
            Some(LabelObject::RtStruct) => dicom::read_rtstruct(&self.labels)?.referenced_series_uid,
            None => None,
        };
        let Some(uid) = uid else { return Ok(None) };
        let list = dicom::list_series(&self.image)?;
        let scans: Vec<_> = list.iter().filter(|s| s.kind.is_scan()).collect();
        Ok((scans.len() > 1 && scans.iter().any(|s| s.series_uid == uid)).then_some(SeriesChoice::Uid(uid)))
    }
}

/// Volume file endings (lower case).
const IMAGE_EXTS: &[&str] = &[".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"];
/// Label file endings (lower case): `.seg.nrrd` before `.nrrd`, so its stem has no `.seg`.
const LABEL_EXTS: &[&str] = &[".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"];

/// `name` without the first of `exts` it ends in (ASCII case ignored).
fn strip_ext<'a>(name: &'a str, exts: &[&str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    exts.iter().find(|e| lower.len() > e.len() && lower.ends_with(*e)).map(|e| &name[..name.len() - e.len()])
}

/// The entries of one folder, each with its stem, sorted by name.
#[derive(Default)]
struct Listing {
    /// Volume files (not `.seg.nrrd`).
    images: Vec<(String, PathBuf)>,
    /// Files a case's labels may be.
    labels: Vec<(String, PathBuf)>,
    /// Sub-folders (hidden ones aside).
    folders: Vec<(String, PathBuf)>,
}

fn listing(dir: &Path) -> Result<Listing, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::File { path: dir.to_path_buf(), problem: format!("cannot read directory: {e}") })?;
    let mut paths: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    let mut out = Listing::default();
    for p in paths {
        let Some(name) = p.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        if name.starts_with('.') {
            continue;
        }
        if p.is_dir() {
            out.folders.push((name, p));
            continue;
        }
        if let Some(stem) = strip_ext(&name, LABEL_EXTS) {
            out.labels.push((stem.to_string(), p.clone()));
        }
        if let Some(stem) = strip_ext(&name, IMAGE_EXTS).filter(|_| strip_ext(&name, &[".seg.nrrd"]).is_none()) {
            out.images.push((stem.to_string(), p));
        }
    }
    Ok(out)
}

fn names(paths: &[&PathBuf]) -> String {
    paths.iter().map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect::<Vec<_>>().join(", ")
}

/// The cases of a data folder (see the module notes for the rules), sorted by name.
pub fn find_pairs(dir: &Path) -> Result<Vec<CasePair>, DataError> {
    let refuse = |problem: String| DataError::File { path: dir.to_path_buf(), problem };
    let mut out = Vec::new();
    let (images, labels) = (dir.join("imagesTr"), dir.join("labelsTr"));
    if images.is_dir() && labels.is_dir() {
        let (im, lab) = (listing(&images)?, listing(&labels)?);
        for (stem, img) in im.images.iter().chain(im.folders.iter()) {
            let base = stem.strip_suffix("_0000").unwrap_or(stem);
            let found: Vec<&PathBuf> = lab.labels.iter().filter(|(s, _)| s == base).map(|(_, p)| p).collect();
            match found.as_slice() {
                [] => {}
                [one] => out.push(CasePair { name: base.to_string(), image: img.clone(), labels: (*one).clone() }),
                several => return Err(refuse(format!("case {base}: several label files in labelsTr/ ({}): keep one", names(several)))),
            }
        }
        if out.iter().enumerate().any(|(i, a)| out[..i].iter().any(|b| b.name == a.name)) {
            let dup = out.iter().enumerate().find(|(i, a)| out[..*i].iter().any(|b| b.name == a.name)).map(|(_, a)| a.name.clone()).unwrap_or_default();
            let both: Vec<&PathBuf> = out.iter().filter(|c| c.name == dup).map(|c| &c.image).collect();
            return Err(refuse(format!("case {dup}: several images in imagesTr/ ({}): keep one", names(&both))));
        }
    } else {
        let l = listing(dir)?;
        let mut paired_folders = Vec::new();
        // Pairs: X.EXT or X/ beside X_labels.LEXT.
        let mut stems: Vec<&String> = l.images.iter().chain(l.folders.iter()).map(|(s, _)| s).filter(|s| !s.ends_with("_labels") && s.as_str() != "labels").collect();
        stems.sort();
        stems.dedup();
        for stem in stems {
            let want = format!("{stem}_labels");
            let found: Vec<&PathBuf> = l.labels.iter().filter(|(s, _)| *s == want).map(|(_, p)| p).collect();
            if found.is_empty() {
                continue;
            }
            if found.len() > 1 {
                return Err(refuse(format!("case {stem}: several label files ({}): keep one", names(&found))));
            }
            let imgs: Vec<&PathBuf> = l.images.iter().chain(l.folders.iter()).filter(|(s, _)| s == stem).map(|(_, p)| p).collect();
            if imgs.len() > 1 {
                return Err(refuse(format!("case {stem}: {} has several images ({}): keep one", names(&found), names(&imgs))));
            }
            paired_folders.push(imgs[0].clone());
            out.push(CasePair { name: stem.clone(), image: imgs[0].clone(), labels: found[0].clone() });
        }
        // Case folders: X/ holding its image and labels.
        for (name, folder) in &l.folders {
            if paired_folders.contains(folder) {
                continue;
            }
            if let Some(c) = case_folder(folder, name)? {
                out.push(c);
            }
        }
        // The folder itself as one case.
        if out.is_empty() {
            let name = dir.canonicalize().ok().and_then(|d| d.file_name().and_then(|n| n.to_str()).map(str::to_string)).unwrap_or_else(|| "case".into());
            if let Some(c) = case_folder(dir, &name)? {
                out.push(c);
            }
        }
    }
    if out.is_empty() {
        return Err(refuse(
            "no volume/label pairs (expected imagesTr/ + labelsTr/, X.nii.gz (or a DICOM folder X/) with X_labels.nii.gz, \
             case folders holding a DICOM series and its SEG or RTSTRUCT, or one volume beside labels.nii.gz)"
                .into(),
        ));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A case folder's case (see the module notes), `None` when it holds no labels.
fn case_folder(folder: &Path, name: &str) -> Result<Option<CasePair>, DataError> {
    let refuse = |problem: String| DataError::File { path: folder.to_path_buf(), problem: format!("case {name}: {problem}") };
    let l = listing(folder)?;
    let mut labels: Vec<PathBuf> = l.labels.iter().filter(|(s, _)| s == "labels").map(|(_, p)| p.clone()).collect();
    let (objects, other_dicom) = dicom::label_objects(folder)?;
    for (p, _) in &objects {
        if !labels.contains(p) {
            labels.push(p.clone());
        }
    }
    let images: Vec<&PathBuf> = l.images.iter().filter(|(s, _)| s != "labels" && !s.ends_with("_labels")).map(|(_, p)| p).collect();
    let label = match labels.as_slice() {
        [] => {
            if other_dicom > 0 {
                log::warn!("{}: DICOM files but no labels (labels.nii.gz, a DICOM SEG or an RTSTRUCT): not a case", folder.display());
            }
            return Ok(None);
        }
        [one] => one.clone(),
        several => {
            let kinds: Vec<String> = several
                .iter()
                .map(|p| match objects.iter().find(|(q, _)| q == p) {
                    Some((_, k)) => format!("{} ({})", p.strip_prefix(folder).unwrap_or(p).display(), k.name()),
                    None => p.strip_prefix(folder).unwrap_or(p).display().to_string(),
                })
                .collect();
            return Err(refuse(format!("several labels ({}): a case folder holds one labels.* file or one DICOM SEG or RTSTRUCT", kinds.join(", "))));
        }
    };
    let image = match images.as_slice() {
        [one] => (*one).clone(),
        [] if other_dicom > 0 => folder.to_path_buf(),
        [] => return Err(refuse(format!("labels {} but no image: no volume file and no DICOM series", names(&[&label])))),
        several => return Err(refuse(format!("several volume files ({}) beside {}: keep one", names(several), names(&[&label])))),
    };
    Ok(Some(CasePair { name: name.to_string(), image, labels: label }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(p: &Path) {
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, b"x").expect("write");
    }

    #[test]
    fn stems_drop_the_longest_known_ending() {
        assert_eq!(strip_ext("a.nii.gz", IMAGE_EXTS), Some("a"));
        assert_eq!(strip_ext("A_labels.SEG.NRRD", LABEL_EXTS), Some("A_labels"));
        assert_eq!(strip_ext("a.seg.nrrd", IMAGE_EXTS), Some("a.seg"));
        assert_eq!(strip_ext(".nii", IMAGE_EXTS), None);
        assert_eq!(strip_ext("a.txt", LABEL_EXTS), None);
    }

    #[test]
    fn pairs_of_any_format_and_their_ambiguities() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        for f in ["a.nii.gz", "a_labels.seg.nrrd", "b.nrrd", "b_labels.nii", "c.mha", "lonely.nii.gz", "notes.txt", "labels.tsv"] {
            touch(&d.join(f));
        }
        let pairs = find_pairs(d).expect("pairs");
        let got: Vec<(&str, String, String)> = pairs
            .iter()
            .map(|p| (p.name.as_str(), p.image.file_name().expect("n").to_string_lossy().into_owned(), p.labels.file_name().expect("n").to_string_lossy().into_owned()))
            .collect();
        assert_eq!(got, vec![("a", "a.nii.gz".into(), "a_labels.seg.nrrd".into()), ("b", "b.nrrd".into(), "b_labels.nii".into())]);
        // A second label file for one case is refused, naming both.
        touch(&d.join("a_labels.dcm"));
        let e = find_pairs(d).expect_err("two labels").to_string();
        assert!(e.contains("case a") && e.contains("a_labels.dcm") && e.contains("a_labels.seg.nrrd"), "{e}");
        std::fs::remove_file(d.join("a_labels.dcm")).expect("rm");
        // A folder X/ and a file X.EXT for one X_labels: refused.
        std::fs::create_dir(d.join("b")).expect("mkdir");
        let e = find_pairs(d).expect_err("two images").to_string();
        assert!(e.contains("case b") && e.contains("b.nrrd") && e.contains(", b"), "{e}");
    }

    #[test]
    fn case_folders_and_the_folder_itself() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        touch(&d.join("one/ct.nii.gz"));
        touch(&d.join("one/labels.nii.gz"));
        touch(&d.join("empty/readme.txt"));
        let pairs = find_pairs(d).expect("a case folder");
        assert_eq!(pairs, vec![CasePair { name: "one".into(), image: d.join("one/ct.nii.gz"), labels: d.join("one/labels.nii.gz") }]);
        // Two volumes beside one labels file: refused, naming the case.
        touch(&d.join("one/mr.nii.gz"));
        let e = find_pairs(d).expect_err("two volumes").to_string();
        assert!(e.contains("case one") && e.contains("ct.nii.gz, mr.nii.gz"), "{e}");
        // Labels without an image (no volume, no DICOM).
        let solo = tempfile::tempdir().expect("tmp");
        touch(&solo.path().join("x/labels.nrrd"));
        let e = find_pairs(solo.path()).expect_err("no image").to_string();
        assert!(e.contains("case x") && e.contains("no image"), "{e}");
        // The demo layout: the folder itself.
        let demo = tempfile::tempdir().expect("tmp");
        touch(&demo.path().join("ct.nii.gz"));
        touch(&demo.path().join("labels.nii.gz"));
        let pairs = find_pairs(demo.path()).expect("demo");
        assert_eq!(pairs.len(), 1);
        assert_eq!((pairs[0].image.clone(), pairs[0].labels.clone()), (demo.path().join("ct.nii.gz"), demo.path().join("labels.nii.gz")));
    }

    #[test]
    fn nnunet_folders_take_dicom_folders_and_dicom_labels() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        touch(&d.join("imagesTr/a_0000.nii.gz"));
        touch(&d.join("imagesTr/b/slice1.dcm"));
        touch(&d.join("imagesTr/c_0000.nii.gz"));
        touch(&d.join("labelsTr/a.nii.gz"));
        touch(&d.join("labelsTr/b.dcm"));
        let pairs = find_pairs(d).expect("pairs");
        assert_eq!(
            pairs,
            vec![
                CasePair { name: "a".into(), image: d.join("imagesTr/a_0000.nii.gz"), labels: d.join("labelsTr/a.nii.gz") },
                CasePair { name: "b".into(), image: d.join("imagesTr/b"), labels: d.join("labelsTr/b.dcm") },
            ]
        );
    }
}
