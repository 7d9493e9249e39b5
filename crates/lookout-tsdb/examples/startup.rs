//! Startup-time measurement on a large store (issue 9: "open a 7-day store in seconds").
//!
//! ```text
//! startup fill DIR [SERIES] [DAYS] [STEP_S]   # write DAYS of SERIES series ending now (10000, 7, 15)
//! startup open DIR                            # time Tsdb::open, print series/blocks/RSS
//! startup crash DIR [HOURS]                   # append HOURS (6) more, kill -9 inside the
//!                                             # compaction that follows, then time the reopen
//! ```
//!
//! `fill` goes through the normal ingest path (appender + WAL), cutting and compacting
//! blocks every two hours of sample time, and leaves the last hours in the head and WAL as a
//! running server would. Run with `--release`.

use std::path::Path;
use std::process::Command;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lookout_storage::{Appendable, Labels, Matcher, Queryable, SelectHints, SeriesRef};
use lookout_tsdb::{Tsdb, TsdbOptions};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const STEP_FILE: &str = "startup-step";

/// A `/proc/self/status` memory field in MiB (`VmHWM:` = peak RSS, `RssAnon:` = heap now).
fn mem_mib(name: &str) -> f64 {
    let field = || -> Option<f64> {
        let s = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = s.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    };
    field().unwrap_or(0.0)
}

fn rss_mib() -> f64 {
    mem_mib("VmHWM:")
}

fn opts() -> TsdbOptions {
    TsdbOptions {
        compaction: false,
        // `crash` appends hours past the newest sample (ahead of the wall clock).
        max_future: None,
        ..TsdbOptions::default()
    }
}

fn labels(series: usize) -> Vec<Labels> {
    (0..series)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("app_metric_{}", i % 40)),
                (
                    "instance",
                    format!("10.0.{}.{}:8080", i / 200 % 250, i % 200),
                ),
                ("job", format!("svc-{}", i % 7)),
                ("le", format!("{}", i % 12)),
            ])
        })
        .collect()
}

/// Appends samples at `t0, t0+step, ..` up to `end` (exclusive), counters for even series and
/// noisy gauges for odd ones, compacting every two hours of sample time.
fn append_range(db: &Tsdb, lbls: &[Labels], t0: i64, end: i64, step: i64) -> Res<u64> {
    let mut refs: Vec<Option<SeriesRef>> = vec![None; lbls.len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ t0 as u64;
    let mut n = 0u64;
    let mut last_compact = t0;
    let mut t = t0;
    while t < end {
        let mut app = db.appender();
        for (i, l) in lbls.iter().enumerate() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let tick = (t / step) as f64;
            let v = if i % 2 == 0 {
                (tick * 3.0 + (rng % 4) as f64).floor()
            } else {
                1000.0 + (rng % 5000) as f64 / 10.0
            };
            refs[i] = Some(
                app.append(refs[i], l, t, v)
                    .map_err(|e| format!("series {i} {l:?} at t={t} (ref {:?}): {e}", refs[i]))?,
            );
            n += 1;
        }
        app.commit()?;
        if t - last_compact >= 2 * 3600 * 1000 {
            db.compact()?;
            last_compact = t;
        }
        t += step;
    }
    Ok(n)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn fill(dir: &Path, series: usize, days: i64, step_s: i64) -> Res<()> {
    let step = step_s * 1000;
    let end = now_ms() / step * step;
    let start = end - days * 24 * 3600 * 1000;
    let started = Instant::now();
    let db = Tsdb::open(dir, opts())?;
    let n = append_range(&db, &labels(series), start, end, step)?;
    db.close()?;
    std::fs::write(dir.join(STEP_FILE), format!("{step} {series}"))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "fill: {series} series x {days} d at {step_s}s = {n} samples in {secs:.1} s ({:.2} M samples/s), peak RSS {:.0} MiB",
        n as f64 / secs / 1e6,
        rss_mib()
    );
    Ok(())
}

fn open(dir: &Path) -> Res<()> {
    let started = Instant::now();
    let db = Tsdb::open(dir, opts())?;
    let open_s = started.elapsed().as_secs_f64();
    let st = db.stats();
    let q = Instant::now();
    let got = db.series(
        &[Matcher::equal("__name__", "app_metric_3")],
        i64::MIN,
        i64::MAX,
    )?;
    let sel = db.select(
        &[Matcher::equal("job", "svc-1")],
        &SelectHints::range(st.max_time.unwrap_or(0) - 3_600_000, i64::MAX),
    )?;
    let first_query_ms = q.elapsed().as_secs_f64() * 1000.0;
    println!(
        "open: {open_s:.3} s; head series {}, blocks {} ({:.1} MiB, {} samples), WAL {:.1} MiB in {} segment(s), peak RSS after open {:.0} MiB (now anon {:.0} MiB, file-backed {:.0} MiB); first queries {first_query_ms:.1} ms ({} series, {} with samples in the last hour)",
        st.series,
        st.blocks,
        st.block_bytes as f64 / (1 << 20) as f64,
        st.block_samples,
        st.wal_bytes as f64 / (1 << 20) as f64,
        st.wal_segments,
        rss_mib(),
        mem_mib("RssAnon:"),
        mem_mib("RssFile:"),
        got.len(),
        sel.len(),
    );
    db.close()?;
    Ok(())
}

/// Child side of `crash`: append `hours` more after the newest stored sample, compacting
/// every two hours of sample time, with the failpoint set.
fn crash_child(dir: &Path, hours: i64) -> Res<()> {
    let meta = std::fs::read_to_string(dir.join(STEP_FILE))?;
    let mut it = meta.split_whitespace().map(str::parse::<i64>);
    let (Some(Ok(step)), Some(Ok(series))) = (it.next(), it.next()) else {
        return Err(format!("bad {STEP_FILE}: {meta:?}").into());
    };
    let db = Tsdb::open(dir, opts())?;
    let st = db.stats();
    let Some(newest) = st.max_time.or(st.block_max_time) else {
        return Err("the store is empty; run fill first".into());
    };
    let from = newest / step * step + step;
    append_range(
        &db,
        &labels(series as usize),
        from,
        from + hours * 3600 * 1000,
        step,
    )?;
    db.compact()?;
    db.flush_head()?;
    Err("the compaction failpoint was not reached".into())
}

fn crash(dir: &Path, hours: i64) -> Res<()> {
    let exe = std::env::current_exe()?;
    let status = Command::new(exe)
        .arg("crash-child")
        .arg(dir)
        .arg(hours.to_string())
        .env("LOOKOUT_TSDB_FAILPOINT", "compact-after-block")
        .status()?;
    use std::os::unix::process::ExitStatusExt;
    if status.signal() != Some(libc::SIGKILL) {
        return Err(format!("child was not killed by the failpoint: {status}").into());
    }
    println!(
        "crash: child killed with SIGKILL inside a compaction (failpoint compact-after-block)"
    );
    open(dir)
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: i64| -> Res<i64> {
        Ok(args.get(i).map(|a| a.parse()).transpose()?.unwrap_or(d))
    };
    let Some(dir) = args.get(1).map(Path::new) else {
        return Err("usage: startup fill|open|crash DIR [..]".into());
    };
    match args.first().map(String::as_str) {
        Some("fill") => fill(dir, num(2, 10_000)? as usize, num(3, 7)?, num(4, 15)?),
        Some("open") => open(dir),
        Some("crash") => crash(dir, num(2, 6)?),
        Some("crash-child") => crash_child(dir, num(2, 6)?),
        _ => Err("usage: startup fill|open|crash DIR [..]".into()),
    }
}
