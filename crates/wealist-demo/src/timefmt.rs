//! RFC 3339 timestamps in UTC as Go's `time.RFC3339Nano` prints them (Docker's json-file
//! `time` field): nanoseconds with trailing zeros trimmed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-01-02T03:04:05.123456789Z`, fraction trimmed like Go's RFC3339Nano.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let mut s = -(d.as_secs() as i64);
            let mut n = d.subsec_nanos();
            if n > 0 {
                s -= 1;
                n = 1_000_000_000 - n;
            }
            (s, n)
        }
    };
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let mut out = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Milliseconds-precision variant for application log lines (`ts`).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let base = rfc3339_nano(UNIX_EPOCH + std::time::Duration::from_secs(ms / 1000));
    let base = base.trim_end_matches('Z');
    format!("{base}.{:03}Z", ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_nano(at(0, 0)), "1970-01-01T00:00:00Z");
        // 2024-02-29T12:34:56Z (leap day)
        assert_eq!(rfc3339_nano(at(1_709_210_096, 0)), "2024-02-29T12:34:56Z");
        assert_eq!(
            rfc3339_nano(at(1_709_210_096, 120_000_000)),
            "2024-02-29T12:34:56.12Z"
        );
        assert_eq!(
            rfc3339_nano(at(1_767_225_600, 1)),
            "2026-01-01T00:00:00.000000001Z"
        );
        assert_eq!(
            rfc3339_millis(at(1_767_225_600, 5_000_000)),
            "2026-01-01T00:00:00.005Z"
        );
        assert_eq!(
            rfc3339_nano(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn matches_day_arithmetic_over_centuries() {
        // Walk day by day across 1999-2101 and check month/day rollover consistency.
        let mut prev = civil_from_days(10_592); // 1999-01-01
        assert_eq!(prev, (1999, 1, 1));
        for days in 10_593..48_000 {
            let cur = civil_from_days(days);
            let ok = (cur.0 == prev.0 && cur.1 == prev.1 && cur.2 == prev.2 + 1)
                || (cur.0 == prev.0 && cur.1 == prev.1 + 1 && cur.2 == 1)
                || (cur.0 == prev.0 + 1 && cur.1 == 1 && cur.2 == 1 && prev.1 == 12);
            assert!(ok, "{prev:?} -> {cur:?}");
            prev = cur;
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
