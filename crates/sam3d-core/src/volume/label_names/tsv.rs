//! The project's names table: one `id<TAB>name` per line, optionally followed by `r g b`
//! (0–255, tab- or space-separated). Blank lines, `#` comments and a header line whose first
//! field is not a number (on the first line only) are skipped; a later line whose first field
//! is not an id is an error.

use super::{LabelNames, LabelTableError, default_name, parse_id};
use std::path::Path;

pub(super) fn parse(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    let mut out = LabelNames::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let first = fields.next().unwrap_or_default();
        if n == 0 && first.trim().parse::<u64>().is_err() {
            continue; // header
        }
        let id = parse_id(first, path, n + 1)?;
        let name = fields.next().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| default_name(id));
        let rest: Vec<u8> = fields.flat_map(|f| f.split_whitespace()).filter_map(|x| x.parse::<u8>().ok()).collect();
        let colour = (rest.len() >= 3).then(|| [rest[0], rest[1], rest[2]]);
        out.insert(id, (name, colour));
    }
    Ok(out)
}
