//! The NRRD header as text: the magic line, `field: value` lines (names case-insensitive, with
//! NRRD's old spellings mapped to one name each), `key:=value` pairs (with `\n` and `\\`
//! unescaped), comments. Nothing here interprets a value beyond splitting it; `super` does.

use crate::volume::VolumeError;
use crate::volume::rawdata::read_text_header;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A parsed header, before interpretation.
#[derive(Clone, Debug)]
pub struct NrrdHeader {
    pub path: PathBuf,
    /// The `N` of `NRRD000N`.
    pub version: u32,
    /// Canonical field name → value.
    pub fields: BTreeMap<String, String>,
    /// Key/value pairs in file order.
    pub key_values: Vec<(String, String)>,
    /// Where attached data begins (after the blank line), if the header has one.
    pub data_offset: Option<u64>,
}

/// NRRD's alternative spellings, mapped to the name used here.
fn canonical(field: &str) -> String {
    let f = field.trim().to_ascii_lowercase();
    match f.as_str() {
        "centerings" => "centers".into(),
        "datafile" => "data file".into(),
        "lineskip" => "line skip".into(),
        "byteskip" => "byte skip".into(),
        "axismins" => "axis mins".into(),
        "axismaxs" => "axis maxs".into(),
        "oldmin" => "old min".into(),
        "oldmax" => "old max".into(),
        "blocksize" => "block size".into(),
        _ => f,
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut it = v.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Writes one `key:=value` line's text (without the newline), escaped as NRRD wants.
pub fn key_value_line(key: &str, value: &str) -> String {
    format!("{}:={}", escape(key), escape(value))
}

impl NrrdHeader {
    /// Reads the header of `path` (a `.nrrd` or `.nhdr`).
    pub fn read(path: &Path) -> Result<Self, VolumeError> {
        let (lines, data_offset) = read_text_header(path, true, |_| false)?;
        Self::parse(path, &lines, data_offset)
    }

    fn parse(path: &Path, lines: &[String], data_offset: Option<u64>) -> Result<Self, VolumeError> {
        let e = |p: String| VolumeError::new(path, p);
        let magic = lines.first().map(|l| l.trim()).unwrap_or("");
        let version = magic
            .strip_prefix("NRRD")
            .filter(|v| v.len() == 4 && v.starts_with("000"))
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| e(format!("not a NRRD file: first line is '{}', not NRRD0001…NRRD0005", clip(magic))))?;
        if !(1..=5).contains(&version) {
            return Err(e(format!("NRRD version {version} is not one this reader knows (1 to 5)")));
        }
        let mut fields = BTreeMap::new();
        let mut key_values = Vec::new();
        for (n, line) in lines.iter().enumerate().skip(1) {
            if line.starts_with('#') {
                continue;
            }
            let kv = line.find(":=");
            let fld = line.find(": ");
            match (kv, fld) {
                (Some(k), f) if f.is_none_or(|f| k < f) => {
                    key_values.push((unescape(&line[..k]), unescape(&line[k + 2..])));
                }
                (_, Some(f)) => {
                    let name = canonical(&line[..f]);
                    let value = line[f + 2..].trim().to_string();
                    if fields.insert(name.clone(), value).is_some() {
                        return Err(e(format!("header line {}: field '{name}' appears twice", n + 1)));
                    }
                }
                _ => {
                    if line.trim().is_empty() {
                        continue; // a detached header may end in blank lines
                    }
                    return Err(e(format!("header line {}: '{}' is neither 'field: value' nor 'key:=value'", n + 1, clip(line))));
                }
            }
        }
        Ok(NrrdHeader { path: path.to_path_buf(), version, fields, key_values, data_offset })
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|s| s.as_str())
    }

    /// The value of a key/value pair (the last one, if repeated).
    pub fn key(&self, key: &str) -> Option<&str> {
        self.key_values.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn err(&self, problem: impl Into<String>) -> VolumeError {
        VolumeError::new(&self.path, problem)
    }
}

/// At most 60 characters of a value, for messages.
pub fn clip(s: &str) -> String {
    let t: String = s.chars().take(60).collect();
    if t.len() < s.len() { format!("{t}…") } else { t }
}

/// One entry of `space directions` / `space origin`: a vector, or `none`.
pub fn parse_vectors(v: &str) -> Result<Vec<Option<Vec<f64>>>, String> {
    let mut out = Vec::new();
    let mut rest = v.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('(') {
            let close = r.find(')').ok_or_else(|| format!("'{}' has no closing ')'", clip(v)))?;
            let nums = r[..close]
                .split(',')
                .map(|x| x.trim().parse::<f64>().map_err(|_| format!("'{}' is not a number in '{}'", clip(x.trim()), clip(v))))
                .collect::<Result<Vec<_>, _>>()?;
            out.push(Some(nums));
            rest = r[close + 1..].trim_start();
        } else if let Some(after) = rest.get(..4).filter(|w| w.eq_ignore_ascii_case("none")).and_then(|_| rest.get(4..)) {
            // `get`, not `[..4]`: byte 4 may fall inside a character of a corrupt header.
            out.push(None);
            rest = after.trim_start();
        } else {
            return Err(format!("'{}' is not a list of (x,y,z) vectors", clip(v)));
        }
        if out.len() > 16 {
            return Err(format!("'{}' has more than 16 vectors", clip(v)));
        }
    }
    Ok(out)
}

/// Whitespace-separated numbers (`nan` allowed), exactly `n` of them.
pub fn parse_numbers(v: &str, n: usize, what: &str) -> Result<Vec<f64>, String> {
    let nums = v
        .split_whitespace()
        .map(|x| x.parse::<f64>().map_err(|_| format!("{what}: '{}' is not a number", clip(x))))
        .collect::<Result<Vec<_>, _>>()?;
    if nums.len() != n {
        return Err(format!("{what} has {} values for {n} axes", nums.len()));
    }
    Ok(nums)
}

/// Whitespace-separated words, exactly `n` of them.
pub fn parse_words(v: &str, n: usize, what: &str) -> Result<Vec<String>, String> {
    let w: Vec<String> = v.split_whitespace().map(|s| s.to_string()).collect();
    if w.len() != n {
        return Err(format!("{what} has {} values for {n} axes", w.len()));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_key_values_comments_and_aliases() {
        let lines: Vec<String> =
            ["NRRD0004", "# c", "type: short", "Centerings: cell cell cell", "a b:=x: y\\nz", "space:=not a field"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let h = NrrdHeader::parse(Path::new("x.nrrd"), &lines, Some(10)).expect("parses");
        assert_eq!(h.version, 4);
        assert_eq!(h.field("type"), Some("short"));
        assert_eq!(h.field("centers"), Some("cell cell cell"));
        assert_eq!(h.key("a b"), Some("x: y\nz"));
        assert_eq!(h.key("space"), Some("not a field"));
        assert_eq!(h.field("space"), None);
        let bad = NrrdHeader::parse(Path::new("x.nrrd"), &["P5".to_string()], None).expect_err("magic");
        assert!(bad.to_string().contains("not a NRRD file"), "{bad}");
        let twice: Vec<String> = ["NRRD0004", "type: short", "TYPE: float"].iter().map(|s| s.to_string()).collect();
        assert!(NrrdHeader::parse(Path::new("x.nrrd"), &twice, None).expect_err("dup").to_string().contains("twice"));
    }

    #[test]
    fn a_multibyte_character_where_none_would_end_is_an_error() {
        assert!(parse_vectors("no\u{e9}e (1,0,0)").is_err());
        assert!(parse_vectors("\u{fffd}\u{fffd}").is_err());
    }

    #[test]
    fn vectors_and_none() {
        let v = parse_vectors("none (1, 0,0) (0,-2.5,nan)").expect("parses");
        assert_eq!(v.len(), 3);
        assert!(v[0].is_none());
        assert_eq!(v[1].as_deref(), Some(&[1.0, 0.0, 0.0][..]));
        assert!(v[2].as_ref().is_some_and(|x| x[2].is_nan()));
        assert!(parse_vectors("(1,0,0").is_err());
        assert!(parse_vectors("(1,x,0)").is_err());
        assert!(parse_vectors("1 0 0").is_err());
        assert_eq!(key_value_line("k", "a\nb\\c"), "k:=a\\nb\\\\c");
    }
}
