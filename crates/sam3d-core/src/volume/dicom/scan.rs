//! Finding DICOM files: a folder is walked recursively (symlinks not followed), every file with
//! the Part 10 `DICM` magic has its header read (in parallel, up to the pixel data), and files
//! that are DICOM but unreadable are reported, not fatal: one broken file in a folder of a
//! thousand should not hide the series.

use super::header::{FileHeader, read_header};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The headers of every DICOM file found, in a stable order (by path), each frame knowing
/// its file's index; plus the files that looked like DICOM but could not be read.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub files: Vec<FileHeader>,
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Scans `root`: a folder recursively, or the single file.
pub(crate) fn scan(root: &Path, recursive: bool) -> std::io::Result<Scan> {
    let mut paths = Vec::new();
    if root.is_dir() {
        walk(root, recursive, &mut paths)?;
    } else {
        paths.push(root.to_path_buf());
    }
    paths.sort();
    let read: Vec<(PathBuf, Result<Option<FileHeader>, String>)> = paths.into_par_iter().map(|p| {
        let h = read_header(&p);
        (p, h)
    }).collect();
    let mut out = Scan::default();
    for (path, r) in read {
        match r {
            Ok(Some(mut h)) => {
                let index = out.files.len();
                h.frames.iter_mut().for_each(|f| f.file = index);
                out.files.push(h);
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!("{}: skipped: {e}", path.display());
                out.unreadable.push((path, e));
            }
        }
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if recursive {
                walk(&entry.path(), recursive, out)?;
            }
        } else if ft.is_file() || (ft.is_symlink() && entry.path().is_file()) {
            out.push(entry.path());
        }
    }
    Ok(())
}
