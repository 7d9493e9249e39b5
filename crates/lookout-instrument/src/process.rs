//! Standard `process_*` metrics, read from `/proc` on each scrape (Linux only; elsewhere the
//! collector exports nothing). Names and meanings follow client_golang's process collector.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One reading of the process metrics; fields are `None` when the platform does not expose them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<f64>,
    pub virtual_memory_bytes: Option<f64>,
    pub open_fds: Option<f64>,
    pub max_fds: Option<f64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current process's statistics.
    pub fn read() -> ProcessStats {
        imp::read()
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use super::ProcessStats;

    pub(super) fn read() -> ProcessStats {
        let mut stats = ProcessStats::default();
        // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        // SAFETY: as above.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        match std::fs::read_to_string("/proc/self/stat") {
            Ok(stat) => {
                if let Some(fields) = parse_stat(&stat) {
                    if ticks > 0 {
                        let ticks = ticks as f64;
                        stats.cpu_seconds = Some((fields.utime + fields.stime) as f64 / ticks);
                        if let Some(btime) = boot_time() {
                            stats.start_time_seconds =
                                Some(btime as f64 + fields.starttime as f64 / ticks);
                        }
                    }
                    stats.virtual_memory_bytes = Some(fields.vsize as f64);
                    if page > 0 {
                        stats.resident_memory_bytes = Some(fields.rss as f64 * page as f64);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading /proc/self/stat"),
        }
        match std::fs::read_dir("/proc/self/fd") {
            Ok(dir) => stats.open_fds = Some(dir.count() as f64),
            Err(e) => tracing::debug!(error = %e, "reading /proc/self/fd"),
        }
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            stats.max_fds = parse_max_open_files(&limits);
        }
        stats
    }

    #[derive(Debug, PartialEq)]
    pub(super) struct StatFields {
        pub utime: u64,
        pub stime: u64,
        pub starttime: u64,
        pub vsize: u64,
        pub rss: i64,
    }

    /// Parses `/proc/<pid>/stat`; the command name may contain spaces and parentheses, so
    /// fields are counted from the last `)`.
    pub(super) fn parse_stat(stat: &str) -> Option<StatFields> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        // f[0] is field 3 (state); field N is f[N - 3].
        Some(StatFields {
            utime: f.get(11)?.parse().ok()?,
            stime: f.get(12)?.parse().ok()?,
            starttime: f.get(19)?.parse().ok()?,
            vsize: f.get(20)?.parse().ok()?,
            rss: f.get(21)?.parse().ok()?,
        })
    }

    fn boot_time() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// The soft limit of "Max open files" (`unlimited` → +Inf, as client_golang reports it).
    pub(super) fn parse_max_open_files(limits: &str) -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let soft = line["Max open files".len()..]
            .split_ascii_whitespace()
            .next()?;
        if soft == "unlimited" {
            Some(f64::INFINITY)
        } else {
            soft.parse::<f64>().ok()
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ProcessStats;

    pub(super) fn read() -> ProcessStats {
        ProcessStats::default()
    }
}

/// Collector for the `process_*` metrics.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

/// Family names this collector writes (for duplicate checks).
pub(crate) const PROCESS_METRIC_NAMES: [&str; 6] = [
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
];

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = ProcessStats::read();
        if let Some(v) = s.cpu_seconds {
            let c = ConstCounter::new(v);
            let m = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                c.metric_type(),
            )?;
            c.encode(m)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                s.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                s.virtual_memory_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                s.max_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                s.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
                g.encode(m)?;
            }
        }
        Ok(())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::imp::*;
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let line = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 \
                    4 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1";
        let f = parse_stat(line).expect("parses");
        assert_eq!(
            f,
            StatFields {
                utime: 250,
                stime: 50,
                starttime: 98765,
                vsize: 123456789,
                rss: 2048
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_open_files(limits), Some(1024.0));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), Some(f64::INFINITY));
        assert_eq!(parse_max_open_files(""), None);
    }

    #[test]
    fn reads_own_process() {
        let s = ProcessStats::read();
        assert!(s.cpu_seconds.is_some_and(|v| v >= 0.0));
        assert!(s.resident_memory_bytes.is_some_and(|v| v > 0.0));
        assert!(s.virtual_memory_bytes.is_some_and(|v| v > 0.0));
        assert!(s.open_fds.is_some_and(|v| v >= 3.0));
        assert!(s.max_fds.is_some_and(|v| v >= 1.0));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        assert!(
            s.start_time_seconds
                .is_some_and(|v| v > 1_500_000_000.0 && v <= now + 1.0)
        );
    }
}
