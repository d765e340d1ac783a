//! 3D Slicer's CSV colour table: a header row naming the columns — `LabelValue` (required),
//! `Name`, `Color_R`, `Color_G`, `Color_B` (0–255), `Color_A` and the terminology columns
//! (`Category_CodingScheme`, …, which are ignored) — then one row per label. Fields are
//! separated by commas; a field holding a comma is in double quotes (Slicer's writer never
//! puts quotes inside a field). Blank rows are skipped; there are no comments.

use super::{LabelNames, LabelTableError, default_name, parse_channel, parse_id};
use std::path::Path;

/// Is this the header row of a Slicer CSV colour table (a `LabelValue` column, in any place)?
pub(super) fn is_header(line: &str) -> bool {
    line.contains(',') && split(line.trim()).iter().any(|f| f.trim() == "LabelValue")
}

/// The fields of one row: commas separate, double quotes group.
fn split(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().into_iter().for_each(|f| f.push(c)),
        }
    }
    fields
}

pub(super) fn parse(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    let mut rows = text.lines().enumerate().map(|(n, l)| (n + 1, l.trim_end_matches('\r'))).filter(|(_, l)| !l.trim().is_empty());
    let Some((hn, header)) = rows.next() else { return Ok(LabelNames::new()) };
    let columns: Vec<String> = split(header).into_iter().map(|c| c.trim().to_string()).collect();
    let col = |name: &str| columns.iter().position(|c| c == name);
    let value = col("LabelValue").ok_or_else(|| LabelTableError::at(path, hn, "the header row has no LabelValue column"))?;
    let name_col = col("Name");
    let rgb_cols = match (col("Color_R"), col("Color_G"), col("Color_B")) {
        (Some(r), Some(g), Some(b)) => Some([r, g, b]),
        (None, None, None) => None,
        _ => return Err(LabelTableError::at(path, hn, "the header row has some of Color_R, Color_G, Color_B but not all three")),
    };
    let mut out = LabelNames::new();
    for (n, row) in rows {
        let f = split(row);
        let get = |c: usize| f.get(c).map(|s| s.trim()).ok_or_else(|| LabelTableError::at(path, n, format!("row has {} fields, the header names {}", f.len(), columns.len())));
        let id = parse_id(get(value)?, path, n)?;
        let name = match name_col {
            Some(c) => get(c)?.to_string(),
            None => String::new(),
        };
        let colour = match rgb_cols {
            Some([r, g, b]) => Some([parse_channel(get(r)?, "Color_R", path, n)?, parse_channel(get(g)?, "Color_G", path, n)?, parse_channel(get(b)?, "Color_B", path, n)?]),
            None => None,
        };
        out.insert(id, (if name.is_empty() { default_name(id) } else { name }, colour));
    }
    Ok(out)
}
