//! Prints storage footprint figures for a synthetic scrape load: chunk-file bytes per
//! sample, WAL bytes per sample, heap chunk bytes and resident memory per series, and the
//! ingest rate. Usage: `cargo run --release -p lookout-tsdb --example footprint [series] [samples]`.

use std::time::Instant;

use lookout_storage::{Appendable, Labels, SeriesRef};
use lookout_tsdb::{Tsdb, TsdbOptions};

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let series: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20_000);
    let samples: i64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(720);
    let dir = tempfile::tempdir()?;
    let rss0 = rss_bytes();
    let db = Tsdb::open(dir.path(), TsdbOptions::default())?;
    let labels: Vec<Labels> = (0..series)
        .map(|i| {
            Labels::from_pairs([
                ("__name__", format!("metric_{}", i % 50)),
                (
                    "instance",
                    format!("10.1.{}.{}:9100", i / 250 % 250, i % 250),
                ),
                ("job", format!("job-{}", i % 7)),
                ("path", format!("/api/v1/item/{}", i % 20)),
            ])
        })
        .collect();
    let mut refs: Vec<Option<SeriesRef>> = vec![None; series];
    // Counters growing by pseudo-random amounts and gauges wandering, scraped every 15s with
    // a few ms of jitter, like real targets.
    let mut state: Vec<f64> = (0..series).map(|i| i as f64).collect();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let start = 1_700_000_000_000i64;
    let t0 = Instant::now();
    for k in 0..samples {
        let mut app = db.appender();
        for i in 0..series {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if i % 3 == 0 {
                state[i] += (rng % 100) as f64 * 0.01;
            } else {
                state[i] += (rng % 10) as f64;
            }
            let t = start + k * 15_000 + (rng % 5) as i64;
            refs[i] = Some(app.append(refs[i], &labels[i], t, state[i])?);
        }
        app.commit()?;
    }
    let elapsed = t0.elapsed();
    db.checkpoint()?;
    let st = db.stats();
    let total = series as f64 * samples as f64;
    let rss = rss_bytes().saturating_sub(rss0);
    println!("series={series} samples/series={samples} total={total}");
    println!(
        "ingest: {:.2} M samples/s (one thread)",
        total / elapsed.as_secs_f64() / 1e6
    );
    println!(
        "chunk files: {:.2} bytes/sample ({} chunks)",
        st.mmapped_chunk_bytes as f64 / total,
        st.mmapped_chunks
    );
    println!(
        "WAL now: {} bytes in {} segment(s)",
        st.wal_bytes, st.wal_segments
    );
    println!(
        "heap chunk bytes: {:.0} per series",
        st.head_chunk_heap_bytes as f64 / series as f64
    );
    println!(
        "RSS growth: {:.0} bytes per series (includes page cache of mapped chunks read)",
        rss as f64 / series as f64
    );
    Ok(())
}
