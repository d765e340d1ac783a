//! New DICOM UIDs: `2.25.<a UUID as one decimal number>` (PS3.5 B.2), so no registered root
//! is needed. The UUID is a version-4 (random) one; its 122 random bits come from the standard
//! library's randomly keyed SipHash (keys drawn from the operating system once per process)
//! over the time, the process id and a counter, so two calls, two processes or two machines
//! do not repeat a UID. No extra dependency is needed for that.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();

/// 128 bits: a random (version 4, RFC 4122 variant) UUID.
fn uuid_v4() -> u128 {
    let (a, b) = KEYS.get_or_init(|| (RandomState::new(), RandomState::new()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let half = |s: &RandomState| {
        let mut h = s.build_hasher();
        h.write_u128(t);
        h.write_u32(std::process::id());
        h.write_u64(n);
        h.finish()
    };
    let mut x = ((half(a) as u128) << 64) | half(b) as u128;
    x &= !(0xF_u128 << 76); // version nibble
    x |= 0x4_u128 << 76;
    x &= !(0x3_u128 << 62); // variant bits 10
    x |= 0x2_u128 << 62;
    x
}

/// A new UID, `2.25.` and a UUID in decimal (at most 44 characters, under the 64 allowed).
pub fn new_uid() -> String {
    format!("2.25.{}", uuid_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_valid_distinct_and_version_4() {
        let a = new_uid();
        let b = new_uid();
        assert_ne!(a, b);
        for u in [&a, &b] {
            assert!(u.len() <= 64 && u.starts_with("2.25.") && u[5..].chars().all(|c| c.is_ascii_digit()), "{u}");
            assert!(!u[5..].starts_with('0'), "no leading zero: {u}");
            let x: u128 = u[5..].parse().expect("decimal");
            assert_eq!((x >> 76) & 0xF, 4);
            assert_eq!((x >> 62) & 0x3, 2);
        }
    }
}
