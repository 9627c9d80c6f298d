//! Wall-clock helpers: unix seconds and RFC 3339 (UTC) without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in whole unix seconds (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    now_unix_ms() / 1000
}

/// Now, in unix milliseconds (0 if the clock is before 1970). The one place the binaries read
/// the wall clock; everything below them takes time as an argument.
pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn parts(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// `2026-11-27T05:24:35Z`.
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// `2026-11-27T05:24:35.042Z`: the time format of every JSON output and record (docs/json.md).
pub fn rfc3339_ms(unix_ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(unix_ms / 1000);
    let ms = unix_ms % 1000;
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z")
}

/// `20261127T052435Z`, for sortable file names.
pub fn compact(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = parts(secs);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z")
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_757_075), "2026-11-27T05:24:35Z");
        assert_eq!(super::compact(1_795_757_075), "20261127T052435Z");
        assert_eq!(
            super::rfc3339_ms(1_795_757_075_042),
            "2026-11-27T05:24:35.042Z"
        );
    }
}
