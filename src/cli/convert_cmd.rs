//! `convert IN OUT`: any volume or label map this build reads into any format it writes, chosen
//! by OUT's name (`.nii`, `.nii.gz`, `.nrrd`, `.seg.nrrd`, `.mha`, and `.dcm` for a DICOM SEG),
//! written atomically. A label map keeps its names and colours: a `.seg.nrrd` and a DICOM SEG
//! carry them (in and out), the other formats get a `.tsv` beside them. `--structures RT.dcm` turns a DICOM
//! RTSTRUCT's contours into a label map on the series IN; a DICOM SEG references the series it
//! was drawn on (IN with `--structures`, else `--reference`).

use crate::volume::dicom::SeriesChoice;
use crate::volume::{OnGrid, OutputFormat, label_names};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// Arguments of `convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// What to read: a volume or label map (NIfTI, NRRD, `.seg.nrrd`, MetaImage) or a DICOM
    /// folder or file.
    pub input: std::path::PathBuf,
    /// What to write; the format follows the name.
    pub output: std::path::PathBuf,
    /// The DICOM series to read when INPUT holds several.
    #[arg(long, value_name = "N|UID|#INDEX")]
    pub series: Option<SeriesChoice>,
    /// Read INPUT as a label map (whole numbers 0–65535, names kept). Implied when OUTPUT is a
    /// `.seg.nrrd` or a `.dcm` (DICOM SEG), or INPUT is a `.seg.nrrd` or a DICOM SEG file.
    #[arg(long)]
    pub labels: bool,
    /// A DICOM RTSTRUCT whose contours become the label map, on the grid of the series INPUT
    /// (a DICOM folder or file; `--series` picks one of several); ROI names and colours kept.
    #[arg(long, value_name = "RTSTRUCT")]
    pub structures: Option<std::path::PathBuf>,
    /// The DICOM series a DICOM SEG output references (the series the label map INPUT was drawn
    /// on; `--series` picks one of several).
    #[arg(long, value_name = "SERIES")]
    pub reference: Option<std::path::PathBuf>,
}

pub fn convert(a: &ConvertArgs) -> Result<()> {
    let out_format = OutputFormat::of(&a.output)?;
    if a.input == a.output {
        bail!("{}: input and output are the same file", a.input.display());
    }
    check_output_dir(&a.output)?;
    let input_name = a.input.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    if let Some(rt) = &a.structures {
        return structures(a, rt, out_format);
    }
    if out_format == OutputFormat::DicomSeg {
        let Some(reference) = &a.reference else {
            bail!("{}: a DICOM SEG references the series its labels were drawn on: give it with --reference SERIES", a.output.display());
        };
        let labels = crate::volume::open_labels(&a.input)?;
        let names = label_names::names_beside(&a.input).map_err(anyhow::Error::msg)?.map(|(n, _)| n).unwrap_or_default();
        return write_seg(a, &labels, &names, reference);
    }
    let seg_input = a.input.is_file() && crate::volume::dicom::is_dicom_seg(&a.input);
    let as_labels = a.labels || seg_input || out_format == OutputFormat::SegNrrd || input_name.ends_with(".seg.nrrd");
    if as_labels {
        if a.series.is_some() {
            bail!("--series picks a DICOM image series (of INPUT, or of --reference for a DICOM SEG); label maps are read from NIfTI, NRRD, .seg.nrrd, MetaImage or a DICOM SEG file");
        }
        let (labels, names) = if seg_input {
            // The SEG's own grid, names and colours; its overlaps and empty segments said.
            let seg = crate::volume::dicom::read_dicom_seg(&a.input)?;
            for w in &seg.warnings {
                eprintln!("warning: {w}");
            }
            (seg.labels, Some(seg.names))
        } else {
            let names = label_names::names_beside(&a.input).map_err(anyhow::Error::msg)?.map(|(n, _)| n);
            (crate::volume::open_labels(&a.input)?, names)
        };
        crate::volume::save_labels(&a.output, &labels, names.as_ref()).with_context(|| format!("writing {}", a.output.display()))?;
        let n = labels.counts().iter().filter(|(l, _)| *l != 0).count();
        println!("{} → {} ({n} labels{})", a.input.display(), a.output.display(), if names.is_some() { ", names kept" } else { "" });
    } else {
        let volume = crate::volume::open_with(&a.input, a.series.as_ref())?;
        crate::volume::save_volume(&a.output, &volume, None).with_context(|| format!("writing {}", a.output.display()))?;
        println!("{} → {} ({} voxels)", a.input.display(), a.output.display(), volume.shape());
    }
    Ok(())
}

/// `--structures`: the RTSTRUCT's ROIs rasterised on the series INPUT, written as OUTPUT.
fn structures(a: &ConvertArgs, rt: &Path, out_format: OutputFormat) -> Result<()> {
    let folder = if a.input.is_dir() { a.input.clone() } else { a.input.parent().map(Path::to_path_buf).unwrap_or_default() };
    let r = crate::volume::dicom::open_rtstruct_labels(rt, &folder)?;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    if out_format == OutputFormat::DicomSeg {
        return write_seg(a, &r.labels, &r.names, &a.input);
    }
    crate::volume::save_labels(&a.output, &r.labels, Some(&r.names)).with_context(|| format!("writing {}", a.output.display()))?;
    let drawn = r.voxels.iter().filter(|&&v| v > 0).count();
    println!("{} → {} ({} ROIs, {drawn} drawn on {}; names kept)", rt.display(), a.output.display(), r.voxels.len(), a.input.display());
    Ok(())
}

/// A DICOM SEG of `labels` referencing the series at `reference` (`--series` picks one).
fn write_seg(a: &ConvertArgs, labels: &crate::volume::LabelMap, names: &crate::volume::label_names::LabelNames, reference: &Path) -> Result<()> {
    let choice = a.series.clone().unwrap_or_default();
    let s = crate::volume::save_labels_dicom_seg(&a.output, labels, names, reference, &choice)?;
    println!("{} → {} (DICOM SEG, {} segments in {} frames, referencing series {})", a.input.display(), a.output.display(), s.segments.len(), s.frames, s.series_uid);
    Ok(())
}

/// The output's folder must exist (checked before reading anything).
fn check_output_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: output folder {} does not exist", path.display(), dir.display());
    }
    Ok(())
}
