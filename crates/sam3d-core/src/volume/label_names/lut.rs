//! Colour lookup tables of 3D Slicer (`.ctbl` / `.txt`, header `# Color table file …`) and
//! FreeSurfer (`FreeSurferColorLUT.txt`, `#No. Label Name: R G B A`), which share one line
//! shape: `id name r g b a`, whitespace-separated, `#` comments. Slicer writes names with
//! underscores for spaces and FreeSurfer's names have none, but a name of several words is
//! accepted (everything between the id and the colour); the alpha column (Slicer: opacity,
//! FreeSurfer: transparency) is optional, checked and dropped. Slicer's continuous colour
//! scales (`# Color procedural file`) hold no names and are refused.

use super::{LabelNames, LabelTableError, data_lines, parse_channel, parse_id};
use std::path::Path;

/// Is `tok` a colour channel (a whole number 0–255)?
fn channel(tok: &str) -> bool {
    tok.parse::<u8>().is_ok()
}

/// `id name… r g b [a]`, with a name that is not itself a number? (For headerless tables.)
pub(super) fn looks_like(line: &str) -> bool {
    let t: Vec<&str> = line.split_whitespace().collect();
    t.len() >= 5 && t[0].parse::<u16>().is_ok() && t[1].parse::<f64>().is_err() && t[t.len() - 3..].iter().all(|x| channel(x))
}

pub(super) fn parse(text: &str, path: &Path) -> Result<LabelNames, LabelTableError> {
    if let Some((n, _)) = text.lines().enumerate().find(|(_, l)| l.trim().to_ascii_lowercase().starts_with("# color procedural file")) {
        return Err(LabelTableError::at(path, n + 1, "is a continuous colour scale (Color procedural file): it names no labels"));
    }
    let mut out = LabelNames::new();
    for (n, line) in data_lines(text) {
        let t: Vec<&str> = line.split_whitespace().collect();
        if t.len() < 5 {
            return Err(LabelTableError::at(path, n, format!("expected 'id name r g b a', found {} field{}", t.len(), if t.len() == 1 { "" } else { "s" })));
        }
        let id = parse_id(t[0], path, n)?;
        // Four trailing channels (with alpha) when the name leaves room for them, else three.
        let with_alpha = t.len() >= 6 && t[t.len() - 4..].iter().all(|x| channel(x));
        let rgb_at = t.len() - if with_alpha { 4 } else { 3 };
        let rgb = [
            parse_channel(t[rgb_at], "red", path, n)?,
            parse_channel(t[rgb_at + 1], "green", path, n)?,
            parse_channel(t[rgb_at + 2], "blue", path, n)?,
        ];
        out.insert(id, (t[1..rgb_at].join(" "), Some(rgb)));
    }
    Ok(out)
}
