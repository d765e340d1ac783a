//! `convert IN OUT`: any volume or label map this build reads into any format it writes, chosen
//! by OUT's name (`.nii`, `.nii.gz`, `.nrrd`, `.seg.nrrd`, `.mha`), written atomically. A label
//! map keeps its names and colours: a `.seg.nrrd` carries them, the other formats get a `.tsv`
//! beside them.

use crate::volume::dicom::SeriesChoice;
use crate::volume::{OutputFormat, label_names};
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
    /// `.seg.nrrd` or INPUT is one.
    #[arg(long)]
    pub labels: bool,
}

pub fn convert(a: &ConvertArgs) -> Result<()> {
    let out_format = OutputFormat::of(&a.output)?;
    if a.input == a.output {
        bail!("{}: input and output are the same file", a.input.display());
    }
    check_output_dir(&a.output)?;
    let input_name = a.input.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let as_labels = a.labels || out_format == OutputFormat::SegNrrd || input_name.ends_with(".seg.nrrd");
    if as_labels {
        if a.series.is_some() {
            bail!("--series picks a DICOM image series; label maps are read from NIfTI, NRRD, .seg.nrrd or MetaImage");
        }
        let labels = crate::volume::open_labels(&a.input)?;
        let names = label_names::names_beside(&a.input).map_err(anyhow::Error::msg)?.map(|(n, _)| n);
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

/// The output's folder must exist (checked before reading anything).
fn check_output_dir(path: &Path) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        bail!("{}: output folder {} does not exist", path.display(), dir.display());
    }
    Ok(())
}
