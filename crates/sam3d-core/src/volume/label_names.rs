//! Label names: the `.tsv` that goes with a label map (`id<TAB>name[<TAB>r g b]`), or the
//! segment names and colours inside a Slicer `.seg.nrrd`, as the viewer shows them and `eval`
//! reports them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Error reading a label-name table.
#[derive(Debug, thiserror::Error)]
#[error("{}: line {line}: {problem}", path.display())]
pub struct LabelTsvError {
    pub path: PathBuf,
    pub line: usize,
    pub problem: String,
}

/// Label id → (name, colour if the file gives one).
pub type LabelNames = BTreeMap<u16, (String, Option<[u8; 3]>)>;

/// Names (and optional colours) by id, parsed from a `.tsv`: one `id<TAB>name` per line,
/// optionally followed by `r g b` (0–255, tab- or space-separated). Blank lines, `#` comments
/// and a header line whose first field is not a number are skipped.
pub fn parse_label_tsv(text: &str, path: &Path) -> Result<LabelNames, LabelTsvError> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let Ok(id) = fields[0].trim().parse::<u32>() else {
            if n == 0 {
                continue; // header
            }
            return Err(LabelTsvError { path: path.into(), line: n + 1, problem: format!("'{}' is not a label id", fields[0].trim()) });
        };
        let id = u16::try_from(id).map_err(|_| LabelTsvError { path: path.into(), line: n + 1, problem: format!("label id {id} is larger than 65535") })?;
        let name = fields.get(1).map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| format!("label {id}"));
        let rest: Vec<u8> = fields.iter().skip(2).flat_map(|f| f.split_whitespace()).filter_map(|x| x.parse::<u8>().ok()).collect();
        let colour = (rest.len() >= 3).then(|| [rest[0], rest[1], rest[2]]);
        out.insert(id, (name, colour));
    }
    Ok(out)
}

/// The names file that goes with a label map: `<stem>.tsv` beside it, else `labels.tsv` in the
/// same folder.
pub fn tsv_beside(label_path: &Path) -> Option<PathBuf> {
    let name = label_path.file_name()?.to_string_lossy().to_string();
    let stem = name.strip_suffix(".gz").unwrap_or(&name);
    let stem = [".nii", ".seg.nrrd", ".nrrd", ".nhdr", ".mha", ".mhd"].iter().find_map(|s| stem.strip_suffix(s)).unwrap_or(stem);
    let dir = label_path.parent().unwrap_or(Path::new("."));
    [dir.join(format!("{stem}.tsv")), dir.join("labels.tsv")].into_iter().find(|p| p.is_file())
}

/// The names that go with the label map at `label_path` and the file they came from: a Slicer
/// segmentation's own segment names and colours (the file itself), else [`tsv_beside`];
/// `Ok(None)` when there are none; an unreadable or malformed file is an error naming it.
pub fn names_beside(label_path: &Path) -> Result<Option<(LabelNames, PathBuf)>, String> {
    if super::detect(label_path).is_ok_and(|f| f == super::Format::Nrrd)
        && let Some(names) = super::nrrd::seg::segment_names(label_path).map_err(|e| e.to_string())?
    {
        return Ok(Some((names, label_path.to_path_buf())));
    }
    let Some(tsv) = tsv_beside(label_path) else { return Ok(None) };
    let text = std::fs::read_to_string(&tsv).map_err(|e| format!("{}: {e}", tsv.display()))?;
    let names = parse_label_tsv(&text, &tsv).map_err(|e| e.to_string())?;
    Ok(Some((names, tsv)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_with_header_comments_and_colours() {
        let text = "id\tname\n# a comment\n1\tspleen\n5\tliver\t10 20 30\n\n7\t\n";
        let t = parse_label_tsv(text, Path::new("x.tsv")).expect("parses");
        assert_eq!(t[&1], ("spleen".to_string(), None));
        assert_eq!(t[&5], ("liver".to_string(), Some([10, 20, 30])));
        assert_eq!(t[&7].0, "label 7");
        let bad = parse_label_tsv("1\ta\nxx\tb\n", Path::new("y.tsv")).expect_err("bad id");
        assert_eq!(bad.line, 2);
        assert!(bad.to_string().starts_with("y.tsv: line 2"), "{bad}");
    }

    #[test]
    fn names_file_beside() {
        let dir = tempfile::tempdir().expect("tmp");
        let lab = dir.path().join("seg.nii.gz");
        assert_eq!(tsv_beside(&lab), None);
        std::fs::write(dir.path().join("labels.tsv"), "1\ta\n").expect("write");
        assert_eq!(tsv_beside(&lab), Some(dir.path().join("labels.tsv")));
        std::fs::write(dir.path().join("seg.tsv"), "1\ta\n").expect("write");
        assert_eq!(tsv_beside(&lab), Some(dir.path().join("seg.tsv")));
        assert_eq!(tsv_beside(&dir.path().join("seg.seg.nrrd")), Some(dir.path().join("seg.tsv")));
        assert_eq!(tsv_beside(&dir.path().join("seg.mha")), Some(dir.path().join("seg.tsv")));
    }

    #[test]
    fn a_bad_names_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let lab = dir.path().join("seg.nii.gz");
        assert_eq!(names_beside(&lab).expect("no file is not an error"), None);
        std::fs::write(dir.path().join("labels.tsv"), "1\tspleen\nxx\tb\n").expect("write");
        let e = names_beside(&lab).expect_err("bad id");
        assert!(e.contains("labels.tsv: line 2"), "{e}");
        std::fs::write(dir.path().join("labels.tsv"), "1\tspleen\n").expect("write");
        let (names, from) = names_beside(&lab).expect("reads").expect("found");
        assert_eq!((names[&1].0.as_str(), from), ("spleen", dir.path().join("labels.tsv")));
    }
}
