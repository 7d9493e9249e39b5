//! Prometheus durations (`1h30m`, `15s`, `100ms`, `1d`, `1w`, `1y`) and byte sizes (`10MB`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A duration in Prometheus syntax, millisecond precision.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid duration string: {0:?}")]
pub struct DurationError(pub String);

const MS: u64 = 1;
const SEC: u64 = 1000 * MS;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
const WEEK: u64 = 7 * DAY;
const YEAR: u64 = 365 * DAY;

/// Units in the order they must appear.
const UNITS: [(&str, u64); 7] = [
    ("y", YEAR),
    ("w", WEEK),
    ("d", DAY),
    ("h", HOUR),
    ("m", MIN),
    ("s", SEC),
    ("ms", MS),
];

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(s * SEC)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub const fn as_std(self) -> StdDuration {
        StdDuration::from_millis(self.0)
    }
}

impl From<Duration> for StdDuration {
    fn from(d: Duration) -> StdDuration {
        d.as_std()
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    /// Units from largest to smallest, each at most once; `0` alone is zero.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(s.to_string());
        if s == "0" {
            return Ok(Duration(0));
        }
        if s.is_empty() {
            return Err(err());
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut next_unit = 0; // index into UNITS of the smallest unit still allowed
        let mut total: u64 = 0;
        while i < b.len() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if start == i {
                return Err(err());
            }
            let n: u64 = s[start..i].parse().map_err(|_| err())?;
            let ustart = i;
            while i < b.len() && b[i].is_ascii_alphabetic() {
                i += 1;
            }
            let unit = &s[ustart..i];
            let pos = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(err)?
                + next_unit;
            next_unit = pos + 1;
            total = n
                .checked_mul(UNITS[pos].1)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(err)?;
        }
        // Prometheus keeps durations in int64 nanoseconds.
        if total > (i64::MAX as u64) / 1_000_000 {
            return Err(err());
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    /// Prometheus's canonical form: `0s`, `15s`, `1h30m`, `1d`, `500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (u, size) in UNITS {
            if ms >= size {
                write!(f, "{}{}", ms / size, u)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A byte size such as `10MB` (base 2 as in Prometheus: `1KB` = 1024 bytes); `0` means none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid size: {0:?} (expected a number with a unit such as 512KB, 10MB, 1GiB)")]
pub struct ByteSizeError(pub String);

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ByteSizeError(s.to_string());
        let t = s.trim();
        if t == "0" {
            return Ok(ByteSize(0));
        }
        let digits = t.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = t[..digits].parse().map_err(|_| err())?;
        let mult: u64 = match &t[digits..] {
            "B" => 1,
            "KB" | "KiB" => 1 << 10,
            "MB" | "MiB" => 1 << 20,
            "GB" | "GiB" => 1 << 30,
            "TB" | "TiB" => 1 << 40,
            "PB" | "PiB" => 1 << 50,
            "EB" | "EiB" => 1 << 60,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const U: [(&str, u64); 6] = [
            ("EB", 1 << 60),
            ("PB", 1 << 50),
            ("TB", 1 << 40),
            ("GB", 1 << 30),
            ("MB", 1 << 20),
            ("KB", 1 << 10),
        ];
        if self.0 == 0 {
            return f.write_str("0B");
        }
        for (u, size) in U {
            if self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, u);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 10MB")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                if v == 0 {
                    Ok(ByteSize(0))
                } else {
                    Err(E::custom(ByteSizeError(v.to_string())))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                if v == 0 {
                    Ok(ByteSize(0))
                } else {
                    Err(E::custom(ByteSizeError(v.to_string())))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_prometheus_durations() {
        let d = |s: &str| s.parse::<Duration>().map(|d| d.as_millis());
        assert_eq!(d("15s"), Ok(15_000));
        assert_eq!(d("1h30m"), Ok(5_400_000));
        assert_eq!(d("100ms"), Ok(100));
        assert_eq!(d("1d"), Ok(86_400_000));
        assert_eq!(d("1w"), Ok(604_800_000));
        assert_eq!(d("1y"), Ok(31_536_000_000));
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("0s"), Ok(0));
        assert_eq!(d("1m1s1ms"), Ok(61_001));
        for bad in [
            "", "1", "s", "1.5s", "30m1h", "1h1h", "1x", "-1s", " 1s", "1s ", "1hm",
        ] {
            assert!(d(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn formats_like_prometheus() {
        let f = |ms| Duration::from_millis(ms).to_string();
        assert_eq!(f(0), "0s");
        assert_eq!(f(15_000), "15s");
        assert_eq!(f(60_000), "1m");
        assert_eq!(f(5_400_000), "1h30m");
        assert_eq!(f(86_400_000), "1d");
        assert_eq!(f(1500), "1s500ms");
    }

    #[test]
    fn sizes() {
        assert_eq!("10MB".parse::<ByteSize>(), Ok(ByteSize(10 << 20)));
        assert_eq!("1KiB".parse::<ByteSize>(), Ok(ByteSize(1024)));
        assert_eq!("512B".parse::<ByteSize>(), Ok(ByteSize(512)));
        assert_eq!("0".parse::<ByteSize>(), Ok(ByteSize(0)));
        assert!("10".parse::<ByteSize>().is_err());
        assert!("10mb".parse::<ByteSize>().is_err());
        assert!("MB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(10 << 20).to_string(), "10MB");
    }

    proptest! {
        #[test]
        fn duration_display_round_trips(ms in 0u64..=(i64::MAX as u64 / 1_000_000)) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }

        #[test]
        fn duration_parse_never_panics(s in "\\PC{0,12}") {
            let _ = s.parse::<Duration>();
        }
    }
}
