//! Timestamps for the `timestamp` stage: Go reference layouts (`2006-01-02T15:04:05Z07:00`),
//! Go's named layouts (`RFC3339`, `RFC3339Nano`, `UnixDate`, ...) and the Unix epoch formats
//! (`Unix`, `UnixMs`, `UnixUs`, `UnixNs`), with a location for layouts without a zone.
//!
//! Locations: `UTC`, `Local`, fixed offsets (`+09:00`) and a table of IANA zones without
//! daylight saving time (e.g. `Asia/Seoul`); zones with DST are rejected at load time.

use chrono::{DateTime, Datelike, FixedOffset, Local, NaiveDateTime, TimeZone, Utc};

/// A parsed `format`.
#[derive(Debug, Clone)]
pub enum TimeFormat {
    Unix,
    UnixMs,
    UnixUs,
    UnixNs,
    /// RFC 3339 with optional fractional seconds (`RFC3339`, `RFC3339Nano`).
    Rfc3339,
    /// A Go layout converted to a chrono format string.
    Layout {
        chrono: String,
        has_zone: bool,
        has_year: bool,
    },
}

/// Where zone-less layouts are interpreted.
#[derive(Debug, Clone, Copy)]
pub enum Location {
    Utc,
    Local,
    Fixed(FixedOffset),
}

/// IANA zones with a constant offset (no daylight saving time), in seconds east of UTC.
const FIXED_ZONES: &[(&str, i32)] = &[
    ("UTC", 0),
    ("Etc/UTC", 0),
    ("GMT", 0),
    ("Asia/Seoul", 9 * 3600),
    ("Asia/Tokyo", 9 * 3600),
    ("Asia/Shanghai", 8 * 3600),
    ("Asia/Hong_Kong", 8 * 3600),
    ("Asia/Singapore", 8 * 3600),
    ("Asia/Taipei", 8 * 3600),
    ("Asia/Kolkata", 5 * 3600 + 1800),
    ("Asia/Dubai", 4 * 3600),
    ("Asia/Jakarta", 7 * 3600),
    ("Asia/Bangkok", 7 * 3600),
];

impl Location {
    pub fn parse(s: &str) -> Result<Location, String> {
        if s.is_empty() || s == "UTC" {
            return Ok(Location::Utc);
        }
        if s == "Local" {
            return Ok(Location::Local);
        }
        if let Some((_, secs)) = FIXED_ZONES.iter().find(|(n, _)| *n == s) {
            return FixedOffset::east_opt(*secs)
                .map(Location::Fixed)
                .ok_or_else(|| format!("invalid offset for {s}"));
        }
        if let Ok(dt) = DateTime::parse_from_str(&format!("2000-01-01 00:00:00 {s}"), "%F %T %:z") {
            return Ok(Location::Fixed(*dt.offset()));
        }
        Err(format!(
            "unknown location {s:?} (supported: UTC, Local, fixed offsets like +09:00, and zones without daylight saving time such as Asia/Seoul)"
        ))
    }
}

impl TimeFormat {
    pub fn parse(format: &str) -> Result<TimeFormat, String> {
        let named = match format {
            "Unix" => return Ok(TimeFormat::Unix),
            "UnixMs" => return Ok(TimeFormat::UnixMs),
            "UnixUs" => return Ok(TimeFormat::UnixUs),
            "UnixNs" => return Ok(TimeFormat::UnixNs),
            "RFC3339" | "RFC3339Nano" => return Ok(TimeFormat::Rfc3339),
            "ANSIC" => "Mon Jan _2 15:04:05 2006",
            "UnixDate" => "Mon Jan _2 15:04:05 MST 2006",
            "RubyDate" => "Mon Jan 02 15:04:05 -0700 2006",
            "RFC822" => "02 Jan 06 15:04 MST",
            "RFC822Z" => "02 Jan 06 15:04 -0700",
            "RFC850" => "Monday, 02-Jan-06 15:04:05 MST",
            "RFC1123" => "Mon, 02 Jan 2006 15:04:05 MST",
            "RFC1123Z" => "Mon, 02 Jan 2006 15:04:05 -0700",
            "Layout" => "01/02 03:04:05PM '06 -0700",
            "Kitchen" => "3:04PM",
            "Stamp" => "Jan _2 15:04:05",
            "StampMilli" => "Jan _2 15:04:05.000",
            "StampMicro" => "Jan _2 15:04:05.000000",
            "StampNano" => "Jan _2 15:04:05.000000000",
            "DateTime" => "2006-01-02 15:04:05",
            "DateOnly" => "2006-01-02",
            other => other,
        };
        let (chrono, has_zone, has_year) = go_layout_to_chrono(named)?;
        Ok(TimeFormat::Layout {
            chrono,
            has_zone,
            has_year,
        })
    }

    /// Parses `s` to Unix nanoseconds.
    pub fn parse_time(&self, s: &str, loc: Location) -> Option<i64> {
        let s = s.trim();
        match self {
            TimeFormat::Unix => parse_epoch(s, 1_000_000_000),
            TimeFormat::UnixMs => parse_epoch(s, 1_000_000),
            TimeFormat::UnixUs => parse_epoch(s, 1_000),
            TimeFormat::UnixNs => s.parse::<i64>().ok(),
            TimeFormat::Rfc3339 => DateTime::parse_from_rfc3339(s)
                .ok()
                .and_then(|d| d.timestamp_nanos_opt()),
            TimeFormat::Layout {
                chrono,
                has_zone,
                has_year,
            } => {
                if *has_zone {
                    return DateTime::parse_from_str(s, chrono)
                        .ok()
                        .and_then(|d| d.timestamp_nanos_opt());
                }
                let naive = if *has_year {
                    NaiveDateTime::parse_from_str(s, chrono).ok()?
                } else {
                    let year = Utc::now().year();
                    NaiveDateTime::parse_from_str(&format!("{year} {s}"), &format!("%Y {chrono}"))
                        .ok()?
                };
                match loc {
                    Location::Utc => naive.and_utc().timestamp_nanos_opt(),
                    Location::Local => Local
                        .from_local_datetime(&naive)
                        .earliest()
                        .and_then(|d| d.timestamp_nanos_opt()),
                    Location::Fixed(off) => off
                        .from_local_datetime(&naive)
                        .single()
                        .and_then(|d| d.timestamp_nanos_opt()),
                }
            }
        }
    }
}

fn parse_epoch(s: &str, unit_ns: i64) -> Option<i64> {
    if let Ok(i) = s.parse::<i64>() {
        return i.checked_mul(unit_ns);
    }
    let f: f64 = s.parse().ok()?;
    let ns = f * unit_ns as f64;
    (ns.is_finite() && ns.abs() < 9.2e18).then_some(ns as i64)
}

/// Converts a Go reference layout to a chrono format string; returns whether it has a zone
/// and a year.
pub fn go_layout_to_chrono(layout: &str) -> Result<(String, bool, bool), String> {
    // Longest tokens first.
    const TOKENS: &[(&str, &str, u8)] = &[
        ("January", "%B", 0),
        ("Monday", "%A", 0),
        ("2006", "%Y", 2),
        ("Z07:00", "%:z", 1),
        ("-07:00", "%:z", 1),
        ("Z0700", "%z", 1),
        ("-0700", "%z", 1),
        ("-07", "%#z", 1),
        (".000000000", "%.9f", 0),
        (".999999999", "%.f", 0),
        (".000000", "%.6f", 0),
        (".999999", "%.f", 0),
        (".000", "%.3f", 0),
        (".999", "%.f", 0),
        (",000000000", ",%9f", 0),
        (",000000", ",%6f", 0),
        (",000", ",%3f", 0),
        ("Jan", "%b", 0),
        ("Mon", "%a", 0),
        ("MST", "%Z", 1),
        ("002", "%j", 0),
        ("01", "%m", 0),
        ("02", "%d", 0),
        ("_2", "%e", 0),
        ("06", "%y", 2),
        ("15", "%H", 0),
        ("03", "%I", 0),
        ("04", "%M", 0),
        ("05", "%S", 0),
        ("PM", "%p", 0),
        ("pm", "%P", 0),
        ("1", "%-m", 0),
        ("2", "%-d", 0),
        ("3", "%-I", 0),
        ("4", "%-M", 0),
        ("5", "%-S", 0),
    ];
    let mut out = String::new();
    let mut has_zone = false;
    let mut has_year = false;
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (go, ch, flag) in TOKENS {
            if let Some(r) = rest.strip_prefix(go) {
                out.push_str(ch);
                has_zone |= *flag == 1;
                has_year |= *flag == 2;
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().ok_or("empty layout")?;
        if c == '%' {
            out.push_str("%%");
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    if out.contains("%Z") {
        // chrono cannot parse zone abbreviations to offsets: accept them only as "UTC"/"GMT".
        out = out.replace("%Z", "UTC");
        has_zone = false;
    }
    Ok((out, has_zone, has_year))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(format: &str, s: &str) -> Option<i64> {
        TimeFormat::parse(format)
            .unwrap()
            .parse_time(s, Location::Utc)
    }

    #[test]
    fn named_and_epoch_formats() {
        let want = 1_556_590_361_844_351_500;
        assert_eq!(p("RFC3339Nano", "2019-04-30T02:12:41.8443515Z"), Some(want));
        assert_eq!(
            p("RFC3339", "2019-04-30T11:12:41.8443515+09:00"),
            Some(want)
        );
        assert_eq!(p("Unix", "1556590361"), Some(1_556_590_361_000_000_000));
        assert_eq!(p("Unix", "1556590361.5"), Some(1_556_590_361_500_000_000));
        assert_eq!(
            p("UnixMs", "1556590361844"),
            Some(1_556_590_361_844_000_000)
        );
        assert_eq!(p("UnixNs", "1556590361844351500"), Some(want));
        assert_eq!(
            p("RFC1123Z", "Tue, 30 Apr 2019 02:12:41 +0000"),
            Some(1_556_590_361_000_000_000)
        );
        assert_eq!(p("Unix", "nope"), None);
    }

    #[test]
    fn go_layouts() {
        assert_eq!(
            p("2006-01-02 15:04:05.000", "2019-04-30 02:12:41.844"),
            Some(1_556_590_361_844_000_000)
        );
        assert_eq!(
            p("2006-01-02T15:04:05Z07:00", "2019-04-30T11:12:41+09:00"),
            Some(1_556_590_361_000_000_000)
        );
        assert_eq!(
            p("02/Jan/2006:15:04:05 -0700", "30/Apr/2019:02:12:41 +0000"),
            Some(1_556_590_361_000_000_000)
        );
        let seoul = Location::parse("Asia/Seoul").unwrap();
        let f = TimeFormat::parse("2006-01-02 15:04:05").unwrap();
        assert_eq!(
            f.parse_time("2019-04-30 11:12:41", seoul),
            Some(1_556_590_361_000_000_000)
        );
        assert!(Location::parse("Europe/Berlin").is_err());
        assert!(Location::parse("+02:00").is_ok());
    }

    #[test]
    fn stamp_without_year_uses_this_year() {
        let ns = p("Stamp", "Jan  2 15:04:05").unwrap();
        let year = DateTime::from_timestamp_nanos(ns).year();
        assert_eq!(year, Utc::now().year());
    }
}
