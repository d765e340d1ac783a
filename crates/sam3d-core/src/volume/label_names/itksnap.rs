//! ITK-SNAP label description files: a `#` comment block, then per label
//! `IDX -R- -G- -B- -A-- VIS MSH "LABEL"` — id, colour (0–255), opacity (0–1), visibility and
//! mesh visibility (0/1), and the name in double quotes (spaces allowed). Opacity and the flags
//! are checked and dropped. [`itksnap_text`] writes one, which ITK-SNAP loads with
//! Segmentation → Import Label Descriptions.

use super::{LabelNames, LabelTableError, clip, data_lines, default_name, parse_channel, parse_id};
use std::path::Path;

/// Seven fields and then a quoted name?
pub(super) fn looks_like(line: &str) -> bool {
    match line.find('"') {
        Some(q) => line[..q].split_whitespace().count() == 7,
        None => false,
    }
}

pub(super) fn parse(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    let mut out = LabelNames::new();
    for (n, line) in data_lines(text) {
        let bad = |p: String| LabelTableError::at(path, n, p);
        let (fields, name) = match (line.find('"'), line.rfind('"')) {
            (Some(a), Some(b)) if b > a => (&line[..a], &line[a + 1..b]),
            _ => return Err(bad("expected IDX R G B A VIS MSH \"LABEL\" (no quoted label)".into())),
        };
        let f: Vec<&str> = fields.split_whitespace().collect();
        if f.len() != 7 {
            return Err(bad(format!("expected 7 fields before the quoted label, found {}", f.len())));
        }
        let id = parse_id(f[0], path, n)?;
        let rgb = [parse_channel(f[1], "red", path, n)?, parse_channel(f[2], "green", path, n)?, parse_channel(f[3], "blue", path, n)?];
        match f[4].parse::<f64>() {
            Ok(a) if (0.0..=1.0).contains(&a) => {}
            _ => return Err(bad(format!("opacity '{}' is not a number 0–1", clip(f[4])))),
        }
        for (v, what) in [(f[5], "visibility"), (f[6], "mesh visibility")] {
            if v != "0" && v != "1" {
                return Err(bad(format!("{what} '{}' is not 0 or 1", clip(v))));
            }
        }
        let name = if name.trim().is_empty() { default_name(id) } else { name.to_string() };
        out.insert(id, (name, Some(rgb)));
    }
    Ok(out)
}

/// An ITK-SNAP label description file of `names` (labels without a colour get grey, every
/// label visible and opaque; a `"` in a name becomes `'`, which the format cannot quote).
pub fn itksnap_text(names: &LabelNames) -> String {
    let mut out = String::from(
        "################################################\n\
         # ITK-SnAP Label Description File\n\
         # File format: \n\
         # IDX   -R-  -G-  -B-  -A--  VIS MSH  LABEL\n\
         # written by sam3d-studio\n\
         ################################################\n",
    );
    for (id, (name, colour)) in names {
        let [r, g, b] = colour.unwrap_or([128, 128, 128]);
        let name: String = name.chars().map(|c| match c {
            '"' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        }).collect();
        out.push_str(&format!("{id:>5} {r:>5} {g:>4} {b:>4}        1  1  1    \"{name}\"\n"));
    }
    out
}
