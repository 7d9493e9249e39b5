//! The scrape race of `bench/scrape_side_by_side.sh` without HTTP: N simulated targets
//! (lookout-targetsim) scraped round after round by offline scrape loops into a real
//! `lookout-tsdb` store, timestamps 5 s apart ending now. Prints the scrape loops' CPU per
//! sample (bodies are rendered outside the timed part) and the process's RSS, so changes to
//! the scrape cache and the appender can be measured in seconds instead of a 15-minute race.
//!
//! `cargo run --release -p lookout-scrape --example ingest_race -- [TARGETS=40] [SERIES=2000] [ROUNDS=60]`

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lookout_config::PrometheusConfig;
use lookout_scrape::client::Fetched;
use lookout_scrape::offline::{DiscardStorage, OfflineScraper};
use lookout_storage::Appendable;
use lookout_targetsim::{Format, SimConfig, Simulator};
use lookout_tsdb::{Tsdb, TsdbOptions};

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn cpu_s() -> f64 {
    // utime + stime of this process, from /proc/self/stat (fields 14 and 15, clock ticks).
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (targets, series, rounds) = (arg(1, 40), arg(2, 2000), arg(3, 60));
    let sim = Simulator::new(SimConfig {
        targets,
        series_per_target: series,
        churn_series: 8,
        ..SimConfig::default()
    })?;
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Tsdb::open(dir.path(), TsdbOptions::default())?);
    let cfg = PrometheusConfig::parse("scrape_configs:\n  - job_name: sim\n")?;
    // `null` as the fourth argument: a storage that keeps nothing, to see the scrape loops'
    // own cost and memory.
    let appendable: Arc<dyn Appendable> = if std::env::args().nth(4).as_deref() == Some("null") {
        Arc::new(DiscardStorage::default())
    } else {
        db.clone()
    };
    let mut loops = (0..targets)
        .map(|i| {
            OfflineScraper::new(
                &cfg.scrape_configs[0],
                &format!("127.0.0.1:{}", 19100 + i),
                appendable.clone(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let first_ts = now - 5_000 * rounds as i64;
    let mut bodies: Vec<Fetched> = Vec::new();
    let (mut busy, mut samples) = (0.0f64, 0u64);
    let rss0 = status_kib("VmRSS:");
    let cpu0 = cpu_s();
    for r in 0..rounds {
        let tick = lookout_targetsim::START_TICK + 5 * r as u64;
        bodies.clear();
        for t in 0..targets {
            let mut body = Vec::new();
            sim.render(t, tick, Format::OpenMetrics, &mut body);
            samples += sim.series_at(t, tick) as u64;
            bodies.push(Fetched {
                body,
                content_type: Format::OpenMetrics.content_type().into(),
            });
        }
        let ts = first_ts + 5_000 * r as i64;
        let start = Instant::now();
        for (l, b) in loops.iter_mut().zip(&bodies) {
            l.scrape(b, ts)?;
        }
        busy += start.elapsed().as_secs_f64();
        if r == 0 || (r + 1) % 20 == 0 {
            println!(
                "round {:>4}: rss {:>7.1} MiB  hwm {:>7.1} MiB",
                r + 1,
                status_kib("VmRSS:") as f64 / 1024.0,
                status_kib("VmHWM:") as f64 / 1024.0
            );
        }
    }
    drop(bodies);
    println!(
        "{targets} targets x {series} series, {rounds} rounds, {samples} samples: scrape+append {:.1} ns/sample (wall, 1 thread), process cpu {:.2} s incl. rendering",
        busy * 1e9 / samples as f64,
        cpu_s() - cpu0
    );
    println!(
        "rss {:.1} MiB (start {:.1}), peak {:.1} MiB, head series {}",
        status_kib("VmRSS:") as f64 / 1024.0,
        rss0 as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0,
        db.stats().series
    );
    Ok(())
}
