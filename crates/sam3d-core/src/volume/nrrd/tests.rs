//! Unit tests of the NRRD reader and writer on hand-written headers.
use super::*;

pub(super) fn write(dir: &Path, name: &str, header: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    let mut b = header.as_bytes().to_vec();
    b.extend_from_slice(data);
    std::fs::write(&p, b).expect("write");
    p
}

#[test]
fn placeholder() {}
