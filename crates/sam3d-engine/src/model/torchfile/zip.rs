//! The part of the zip format a `torch.save` archive uses: the central directory (zip64 too)
//! and stored (uncompressed) entries, located by byte range in the file so that storages are
//! read straight from disk when they are needed.
//!
//! Written here rather than taken from the `zip` crate so that every length read from the file
//! is checked against the file's size before anything is allocated or read: a hostile or
//! truncated archive gives an error, never a panic or a huge allocation.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// An entry of the central directory.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// 0 = stored; torch.save writes nothing else.
    pub method: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    header_offset: u64,
}

/// The central directory of an archive.
#[derive(Debug)]
pub struct Archive {
    pub entries: HashMap<String, Entry>,
    /// Names in the order of the directory.
    pub names: Vec<String>,
    pub file_len: u64,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
/// A central directory larger than this is refused (torch's hold a few hundred bytes a tensor).
const MAX_CENTRAL_DIR: u64 = 256 << 20;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at + 8).map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
}

/// Reads `len` bytes at `offset`, after checking they lie inside the file.
pub fn read_at(file: &mut File, file_len: u64, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let end = offset.checked_add(len).ok_or("a length in the archive overflows")?;
    if end > file_len {
        return Err(format!("the archive is truncated (bytes {offset}..{end} asked for, the file has {file_len})"));
    }
    let len = usize::try_from(len).map_err(|_| "an entry too large for this machine".to_string())?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len).map_err(|_| format!("cannot allocate {len} bytes"))?;
    buf.resize(len, 0);
    file.seek(SeekFrom::Start(offset)).map_err(|e| format!("cannot seek: {e}"))?;
    file.read_exact(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
    Ok(buf)
}

impl Archive {
    /// Reads the central directory. `Err` says why the file is not a usable zip archive.
    pub fn open(file: &mut File) -> Result<Self, String> {
        let file_len = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
        // The end-of-central-directory record: 22 bytes plus a comment of at most 64 KiB.
        let tail_len = file_len.min(22 + 0xffff);
        let tail = read_at(file, file_len, file_len - tail_len, tail_len)?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&i| u32_at(&tail, i) == Some(EOCD_SIG) && u16_at(&tail, i + 20).is_some_and(|c| i + 22 + c as usize == tail.len()))
            .ok_or("no end-of-central-directory record (truncated, or not a zip archive)")?;
        let eocd_offset = file_len - tail_len + eocd as u64;
        let r = &tail[eocd..];
        let mut count = u64::from(u16_at(r, 10).unwrap_or(0));
        let mut cd_size = u64::from(u32_at(r, 12).unwrap_or(0));
        let mut cd_offset = u64::from(u32_at(r, 16).unwrap_or(0));
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            // zip64: the locator sits just before the record.
            let loc_offset = eocd_offset.checked_sub(20).ok_or("zip64 locator missing")?;
            let loc = read_at(file, file_len, loc_offset, 20)?;
            if u32_at(&loc, 0) != Some(ZIP64_LOCATOR_SIG) {
                return Err("zip64 locator missing".into());
            }
            let z_offset = u64_at(&loc, 8).unwrap_or(u64::MAX);
            let z = read_at(file, file_len, z_offset, 56)?;
            if u32_at(&z, 0) != Some(ZIP64_EOCD_SIG) {
                return Err("zip64 end-of-central-directory record missing".into());
            }
            count = u64_at(&z, 32).unwrap_or(0);
            cd_size = u64_at(&z, 40).unwrap_or(0);
            cd_offset = u64_at(&z, 48).unwrap_or(0);
        }
        if cd_size > MAX_CENTRAL_DIR {
            return Err(format!("central directory of {cd_size} bytes (more than {MAX_CENTRAL_DIR} is refused)"));
        }
        // Each entry takes at least 46 bytes.
        if count > cd_size / 46 {
            return Err(format!("{count} entries announced in a central directory of {cd_size} bytes"));
        }
        let cd = read_at(file, file_len, cd_offset, cd_size)?;
        let mut entries = HashMap::new();
        let mut names = Vec::new();
        let mut at = 0usize;
        for _ in 0..count {
            let bad = || format!("central directory entry at byte {} is corrupt", cd_offset + at as u64);
            if u32_at(&cd, at) != Some(CENTRAL_SIG) {
                return Err(bad());
            }
            let flags = u16_at(&cd, at + 8).ok_or_else(bad)?;
            let method = u16_at(&cd, at + 10).ok_or_else(bad)?;
            let crc32 = u32_at(&cd, at + 16).ok_or_else(bad)?;
            let mut compressed_size = u64::from(u32_at(&cd, at + 20).ok_or_else(bad)?);
            let mut size = u64::from(u32_at(&cd, at + 24).ok_or_else(bad)?);
            let name_len = u16_at(&cd, at + 28).ok_or_else(bad)? as usize;
            let extra_len = u16_at(&cd, at + 30).ok_or_else(bad)? as usize;
            let comment_len = u16_at(&cd, at + 32).ok_or_else(bad)? as usize;
            let mut header_offset = u64::from(u32_at(&cd, at + 42).ok_or_else(bad)?);
            let name_bytes = cd.get(at + 46..at + 46 + name_len).ok_or_else(bad)?;
            let name = String::from_utf8_lossy(name_bytes).into_owned();
            let extra = cd.get(at + 46 + name_len..at + 46 + name_len + extra_len).ok_or_else(bad)?;
            // zip64 extended information: the 8-byte values of the fields that hold 0xffffffff.
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let id = u16_at(extra, e).unwrap_or(0);
                let len = u16_at(extra, e + 2).unwrap_or(0) as usize;
                let body = extra.get(e + 4..e + 4 + len).ok_or_else(bad)?;
                if id == 1 {
                    let mut k = 0usize;
                    for field in [&mut size, &mut compressed_size, &mut header_offset] {
                        if *field == 0xffff_ffff {
                            *field = u64_at(body, k).ok_or_else(bad)?;
                            k += 8;
                        }
                    }
                }
                e += 4 + len;
            }
            if flags & 1 != 0 {
                return Err(format!("entry {name} is encrypted"));
            }
            at += 46 + name_len + extra_len + comment_len;
            names.push(name.clone());
            entries.insert(name.clone(), Entry { name, method, crc32, compressed_size, size, header_offset });
        }
        Ok(Self { entries, names, file_len })
    }

    /// Where an entry's bytes are: (offset in the file, length). Only stored entries.
    pub fn data_range(&self, file: &mut File, entry: &Entry) -> Result<(u64, u64), String> {
        if entry.method != 0 {
            return Err(format!(
                "entry {} is compressed (method {}); torch.save stores entries uncompressed, so this archive was rewritten by another tool: load it with torch.load and save it again with torch.save",
                entry.name, entry.method
            ));
        }
        if entry.compressed_size != entry.size {
            return Err(format!("entry {}: stored with {} bytes but {} announced", entry.name, entry.compressed_size, entry.size));
        }
        let local = read_at(file, self.file_len, entry.header_offset, 30)?;
        if u32_at(&local, 0) != Some(LOCAL_SIG) {
            return Err(format!("entry {}: local header missing at byte {}", entry.name, entry.header_offset));
        }
        let name_len = u64::from(u16_at(&local, 26).unwrap_or(0));
        let extra_len = u64::from(u16_at(&local, 28).unwrap_or(0));
        let start = entry.header_offset + 30 + name_len + extra_len;
        let end = start.checked_add(entry.size).ok_or("a length in the archive overflows")?;
        if end > self.file_len {
            return Err(format!("the archive is truncated: entry {} ends at byte {end}, the file has {}", entry.name, self.file_len));
        }
        Ok((start, entry.size))
    }
}
