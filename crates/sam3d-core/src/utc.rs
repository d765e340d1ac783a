//! Calendar date and time (UTC) of a moment, without a date crate: for run-folder names and
//! DICOM's DA/TM fields.

use std::time::{SystemTime, UNIX_EPOCH};

/// `([year, month, day], [hour, minute, second])` in UTC of `t` (the epoch for times before it).
pub fn utc_parts(t: SystemTime) -> ([i64; 3], [u64; 3]) {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    ([y, m, d], [rem / 3600, (rem % 3600) / 60, rem % 60])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_moments() {
        assert_eq!(utc_parts(UNIX_EPOCH), ([1970, 1, 1], [0, 0, 0]));
        // 2000-02-29 12:34:56 UTC, a leap day.
        assert_eq!(utc_parts(UNIX_EPOCH + Duration::from_secs(951_827_696)), ([2000, 2, 29], [12, 34, 56]));
        // 2026-12-06 00:00:00 UTC.
        assert_eq!(utc_parts(UNIX_EPOCH + Duration::from_secs(1_796_515_200)), ([2026, 12, 6], [0, 0, 0]));
    }
}
