//! DICOM fixtures for the integration tests: the small series the core crate's oracle script
//! wrote (`crates/sam3d-core/tests/data/dicom/`), and copying one into a study folder.
//! Include with `#[path = "common/dicom.rs"] mod dicom;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A fixture series folder by name (`axial`, `coronal`, `localizer`, `oblique`, …).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/sam3d-core/tests/data/dicom").join(name)
}

/// Copies the files of `from` into `to` (made if missing): a series placed in a study folder.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}
