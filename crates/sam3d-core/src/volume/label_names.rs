//! Label names: the table that goes with a label map, in whichever format people have it, or
//! the segment names and colours inside a Slicer `.seg.nrrd` or a DICOM SEG, as the viewer shows them and
//! `eval` reports them.
//!
//! | format | file | lines |
//! |---|---|---|
//! | [`TableFormat::Tsv`] (this project's) | `tsv.rs` | `id<TAB>name[<TAB>r g b]` |
//! | [`TableFormat::ItkSnap`] label description | `itksnap.rs` | `IDX R G B A VIS MSH "LABEL"` |
//! | [`TableFormat::SlicerCtbl`] colour table (`.ctbl`, `.txt`) | `lut.rs` | `id name r g b a` |
//! | [`TableFormat::FreeSurfer`] LUT (`FreeSurferColorLUT.txt`) | `lut.rs` | `No. Label-Name R G B A` |
//! | [`TableFormat::SlicerCsv`] colour table (`.csv`) | `slicer_csv.rs` | `LabelValue,Name,Color_R,Color_G,Color_B,Color_A,…` |
//! | [`TableFormat::Plain`] atlas list | `plain.rs` | `id the rest of the line is the name` |
//!
//! [`read_label_table`] / [`parse_label_table`] are the one entry: the format is sniffed from
//! the content ([`sniff`]), the extension only breaking ties. [`names_beside`] finds the table
//! of a label map ([`table_beside`] gives the search order). A malformed line is a
//! [`LabelTableError`] naming the file and the line; blank lines and `#` comments are skipped
//! in every format but the CSV one. Alpha, visibility and mesh flags are parsed (checked) and
//! dropped: [`LabelNames`] holds a name and an optional RGB colour per id.

mod itksnap;
mod lut;
mod plain;
mod slicer_csv;
mod tsv;

pub use itksnap::itksnap_text;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Label id → (name, colour if the file gives one).
pub type LabelNames = BTreeMap<u16, (String, Option<[u8; 3]>)>;

/// A label table this build reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    /// `id<TAB>name[<TAB>r g b]`, what sam3d-studio writes beside a label map.
    Tsv,
    /// ITK-SNAP's label description file.
    ItkSnap,
    /// 3D Slicer's discrete colour table (`# Color table file`).
    SlicerCtbl,
    /// 3D Slicer's CSV colour table (header row `LabelValue,Name,Color_R,…`).
    SlicerCsv,
    /// FreeSurfer's colour lookup table.
    FreeSurfer,
    /// `id name` per line, the name being the rest of the line.
    Plain,
}

impl TableFormat {
    pub fn name(&self) -> &'static str {
        match self {
            TableFormat::Tsv => "names .tsv",
            TableFormat::ItkSnap => "ITK-SNAP label description",
            TableFormat::SlicerCtbl => "Slicer colour table",
            TableFormat::SlicerCsv => "Slicer CSV colour table",
            TableFormat::FreeSurfer => "FreeSurfer colour LUT",
            TableFormat::Plain => "id-name list",
        }
    }
}

/// Error reading a label table: the file, the 1-based line (0 for the whole file) and what is
/// wrong.
#[derive(Debug)]
pub struct LabelTableError {
    pub path: PathBuf,
    pub line: usize,
    pub problem: String,
}

/// The name this error had when only `.tsv` files were read.
pub type LabelTsvError = LabelTableError;

impl LabelTableError {
    pub(crate) fn at(path: &Path, line: usize, problem: impl Into<String>) -> Self {
        LabelTableError { path: path.to_path_buf(), line, problem: problem.into() }
    }
}

impl fmt::Display for LabelTableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.path.display(), self.problem),
            n => write!(f, "{}: line {n}: {}", self.path.display(), self.problem),
        }
    }
}

impl std::error::Error for LabelTableError {}

/// Largest label table read (FreeSurfer's full LUT is about 0.5 MB): a bigger file is not a
/// label table, and is refused before it is read.
pub const MAX_TABLE_BYTES: u64 = 16 << 20;

/// Names by id from a project `.tsv` (kept for callers that know the format; the sniffing
/// entry is [`parse_label_table`]). See `tsv.rs` for the rules.
pub fn parse_label_tsv(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    tsv::parse(text, path)
}

/// Reads the label table at `path` in whichever format it is, and says which.
pub fn read_label_table(path: &Path) -> Result<(LabelNames, TableFormat), LabelTableError> {
    let len = std::fs::metadata(path).map_err(|e| LabelTableError::at(path, 0, format!("cannot open: {e}")))?.len();
    if len > MAX_TABLE_BYTES {
        return Err(LabelTableError::at(path, 0, format!("is {len} bytes, too large for a label table ({} MiB at most)", MAX_TABLE_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| LabelTableError::at(path, 0, format!("cannot read: {e}")))?;
    // Names in old tables may be Latin-1: keep them readable rather than refuse the file.
    let text = String::from_utf8_lossy(&bytes);
    parse_label_table(&text, path)
}

/// Parses a label table's text (`path` names it in errors and breaks format ties).
pub fn parse_label_table(text: &str, path: &Path) -> Result<(LabelNames, TableFormat), LabelTableError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = sniff(text, path);
    let names = match format {
        TableFormat::Tsv => tsv::parse(text, path)?,
        TableFormat::ItkSnap => itksnap::parse(text, path)?,
        TableFormat::SlicerCtbl | TableFormat::FreeSurfer => lut::parse(text, path)?,
        TableFormat::SlicerCsv => slicer_csv::parse(text, path)?,
        TableFormat::Plain => plain::parse(text, path)?,
    };
    Ok((names, format))
}

/// Which format a table's text is in, by content:
/// 1. a first line of comma-separated column names with `LabelValue` → Slicer CSV;
/// 2. a `#` comment naming the format (`ITK-SnAP`, `# Color table file` / `# Color procedural
///    file`, `FreeSurferColorLUT` or `#No. Label Name`) → that format;
/// 3. a first data line with a quoted name after seven fields → ITK-SNAP;
/// 4. a first data line with a tab → `.tsv`;
/// 5. every data line `id name r g b [a]` (colours 0–255) → a colour table (Slicer for a
///    `.ctbl` file, else FreeSurfer: the two read alike);
/// 6. else an `id name` list.
pub fn sniff(text: &str, path: &Path) -> TableFormat {
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r')).filter(|l| !l.trim().is_empty());
    if lines.next().is_some_and(slicer_csv::is_header) {
        return TableFormat::SlicerCsv;
    }
    for c in text.lines().take(200).map(str::trim).filter(|l| l.starts_with('#')) {
        let lower = c.to_ascii_lowercase();
        if lower.contains("itk-snap") {
            return TableFormat::ItkSnap;
        }
        if lower.starts_with("# color table file") || lower.starts_with("# color procedural file") {
            return TableFormat::SlicerCtbl;
        }
        if lower.contains("freesurfercolorlut") || lower.starts_with("#no. label name") {
            return TableFormat::FreeSurfer;
        }
    }
    let data: Vec<&str> = data_lines(text).map(|(_, l)| l).collect();
    let Some(first) = data.first() else { return TableFormat::Tsv };
    if itksnap::looks_like(first) {
        return TableFormat::ItkSnap;
    }
    if first.contains('\t') {
        return TableFormat::Tsv;
    }
    if data.iter().all(|l| lut::looks_like(l)) {
        let ctbl = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ctbl"));
        return if ctbl { TableFormat::SlicerCtbl } else { TableFormat::FreeSurfer };
    }
    TableFormat::Plain
}

/// The lines that hold entries: 1-based number and text (`\r` trimmed), blank lines and `#`
/// comments skipped.
pub(crate) fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(n, l)| (n + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
}

/// A label id (0–65535) from one field.
pub(crate) fn parse_id(field: &str, path: &Path, line: usize) -> Result<u16, LabelTableError> {
    let field = field.trim();
    let id: u64 = field.parse().map_err(|_| LabelTableError::at(path, line, format!("'{}' is not a label id", clip(field))))?;
    u16::try_from(id).map_err(|_| LabelTableError::at(path, line, format!("label id {id} is larger than 65535")))
}

/// One colour channel, a whole number 0–255.
pub(crate) fn parse_channel(field: &str, what: &str, path: &Path, line: usize) -> Result<u8, LabelTableError> {
    let field = field.trim();
    field.parse::<u8>().map_err(|_| LabelTableError::at(path, line, format!("{what} '{}' is not a whole number 0–255", clip(field))))
}

/// A field as quoted in a message: at most 40 characters.
pub(crate) fn clip(s: &str) -> String {
    if s.chars().count() <= 40 { s.to_string() } else { format!("{}…", s.chars().take(40).collect::<String>()) }
}

/// The name an entry without one gets.
pub(crate) fn default_name(id: u16) -> String {
    format!("label {id}")
}

/// The stem a label map's tables are named after: `seg.nii.gz`, `seg.seg.nrrd`, `seg.mha` → `seg`.
fn label_stem(label_path: &Path) -> Option<String> {
    let name = label_path.file_name()?.to_string_lossy().to_string();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let stem = [".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img"].iter().find_map(|s| stem.strip_suffix(s)).unwrap_or(stem);
    Some(stem.to_string())
}

/// The project `.tsv` that goes with a label map: `<stem>.tsv` beside it, else `labels.tsv` in
/// the same folder (a subset of [`table_beside`], kept for callers that want only `.tsv`).
pub fn tsv_beside(label_path: &Path) -> Option<PathBuf> {
    let stem = label_stem(label_path)?;
    let dir = label_path.parent().unwrap_or(Path::new("."));
    [dir.join(format!("{stem}.tsv")), dir.join("labels.tsv")].into_iter().find(|p| p.is_file())
}

/// The names of the files [`table_beside`] looks for beside `<stem>.<ext>`, in order: first
/// the files named after the label map (`<stem>.tsv`, `<stem>.txt`, `<stem>_labels.txt`,
/// `<stem>.label` (ITK-SNAP), `<stem>.ctbl`, `<stem>_ColorTable.ctbl` (Slicer's export),
/// `<stem>.csv`), then the folder's shared tables (`labels.tsv`, `labels.txt`,
/// `FreeSurferColorLUT.txt`).
pub fn table_candidates(stem: &str) -> Vec<String> {
    let own = ["{}.tsv", "{}.txt", "{}_labels.txt", "{}.label", "{}.ctbl", "{}_ColorTable.ctbl", "{}.csv"];
    let shared = ["labels.tsv", "labels.txt", "FreeSurferColorLUT.txt"];
    own.iter().map(|p| p.replace("{}", stem)).chain(shared.iter().map(|s| s.to_string())).collect()
}

/// The label table that goes with a label map: the first of [`table_candidates`] that is a
/// file in the label map's folder.
pub fn table_beside(label_path: &Path) -> Option<PathBuf> {
    let stem = label_stem(label_path)?;
    let dir = label_path.parent().unwrap_or(Path::new("."));
    table_candidates(&stem).into_iter().map(|n| dir.join(n)).find(|p| p.is_file() && p.as_path() != label_path)
}

/// The names that go with the label map at `label_path` and the file they came from: a Slicer
/// segmentation's or a DICOM SEG's own segment names and colours, or an RT structure set's ROI
/// names and colours (the file itself), else the table
/// [`table_beside`] finds, in any format [`read_label_table`] reads; `Ok(None)` when there are
/// none; an unreadable or malformed file is an error naming it (and the line).
pub fn names_beside(label_path: &Path) -> Result<Option<(LabelNames, PathBuf)>, String> {
    let own = match super::detect(label_path) {
        Ok(super::Format::Nrrd) => super::nrrd::seg::segment_names(label_path).map_err(|e| e.to_string())?,
        Ok(super::Format::Dicom) if label_path.is_file() => match super::dicom::label_object_kind(label_path) {
            // An RT structure set's ROIs take labels 1, 2, … in file order, as they are drawn.
            Some(super::dicom::LabelObject::RtStruct) => {
                let rt = super::dicom::read_rtstruct(label_path).map_err(|e| e.to_string())?;
                Some(rt.rois.iter().enumerate().map(|(k, r)| ((k + 1) as u16, (r.name.clone(), r.colour))).collect())
            }
            _ => super::dicom::seg_segment_names(label_path).map_err(|e| e.to_string())?,
        },
        _ => None,
    };
    if let Some(names) = own {
        return Ok(Some((names, label_path.to_path_buf())));
    }
    let Some(table) = table_beside(label_path) else { return Ok(None) };
    let (names, _) = read_label_table(&table).map_err(|e| e.to_string())?;
    Ok(Some((names, table)))
}

#[cfg(test)]
mod tests;
