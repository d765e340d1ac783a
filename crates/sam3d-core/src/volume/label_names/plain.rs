//! A plain list, as atlases ship them (`labels.txt`): per line a label id, whitespace, and the
//! rest of the line as the name (spaces kept). `#` comments and blank lines are skipped, and a
//! first line that does not start with a number is taken for a header.

use super::{LabelNames, LabelTableError, default_name, parse_id};
use std::path::Path;

pub(super) fn parse(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    let mut out = LabelNames::new();
    let mut first = true;
    for (n, line) in super::data_lines(text) {
        let line = line.trim();
        let (id, name) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if std::mem::take(&mut first) && id.parse::<u64>().is_err() {
            continue; // header
        }
        let id = parse_id(id, path, n)?;
        let name = name.trim();
        out.insert(id, (if name.is_empty() { default_name(id) } else { name.to_string() }, None));
    }
    Ok(out)
}
