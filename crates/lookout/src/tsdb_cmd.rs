//! `lookout tsdb import openmetrics FILE DATA_DIR` (backfill, like `promtool tsdb
//! create-blocks-from openmetrics`) and `lookout tsdb stats DATA_DIR`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lookout_exposition::{Entry, Format, Parser};
use lookout_storage::{Labels, METRIC_NAME, Sample};
use lookout_tsdb::{Tsdb, TsdbOptions};

#[derive(Args, Debug)]
pub struct TsdbArgs {
    #[command(subcommand)]
    pub command: TsdbCommand,
}

#[derive(Subcommand, Debug)]
pub enum TsdbCommand {
    /// Write blocks from a file (`import openmetrics FILE DATA_DIR`); DATA_DIR is the
    /// metrics directory (`<serve --data-dir>/metrics`).
    Import {
        /// Input format; only `openmetrics` is supported.
        format: String,
        file: PathBuf,
        data_dir: PathBuf,
        /// Retention the store is opened with (it bounds compaction to a tenth of it).
        #[arg(long, default_value = "7d", value_parser = crate::cli::parse_duration)]
        retention: std::time::Duration,
    },
    /// Print series, samples, chunks, bytes per sample and the top label cardinalities.
    Stats {
        data_dir: PathBuf,
        /// Entries per top list.
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

pub fn run(args: TsdbArgs) -> anyhow::Result<()> {
    match args.command {
        TsdbCommand::Import {
            format,
            file,
            data_dir,
            retention,
        } => {
            if format != "openmetrics" {
                bail!("unsupported import format {format:?} (supported: openmetrics)");
            }
            import(&file, &data_dir, retention)
        }
        TsdbCommand::Stats { data_dir, limit } => stats(&data_dir, limit),
    }
}

fn import(file: &Path, dir: &Path, retention: std::time::Duration) -> anyhow::Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let mut series: HashMap<Labels, Vec<Sample>> = HashMap::new();
    let mut parser = Parser::new(&data, Format::OpenMetrics);
    let mut count = 0u64;
    while let Some(entry) = parser
        .next_entry()
        .with_context(|| format!("parsing {}", file.display()))?
    {
        let Entry::Sample(s) = entry else { continue };
        let o = s.to_owned_sample();
        let Some(t) = o.timestamp_ms else {
            bail!(
                "sample of {} has no timestamp; backfill needs timestamps",
                o.name
            );
        };
        let labels = Labels::from_pairs(
            std::iter::once((METRIC_NAME.to_string(), o.name))
                .chain(o.labels.into_iter().filter(|(n, _)| n != METRIC_NAME)),
        );
        series
            .entry(labels)
            .or_default()
            .push(Sample { t, v: o.value });
        count += 1;
    }
    let nseries = series.len();
    let opts = TsdbOptions {
        retention,
        compaction: false,
        // Backfill takes the file's timestamps as they are, like promtool.
        max_future: None,
        ..TsdbOptions::default()
    };
    let blocks = lookout_tsdb::backfill(dir, series.into_iter().collect(), opts)
        .with_context(|| format!("writing blocks to {}", dir.display()))?;
    println!(
        "imported {count} samples of {nseries} series into {} block(s) in {}",
        blocks.len(),
        dir.display()
    );
    for b in blocks {
        println!(
            "  {}  {} .. {}  level {}  {} series  {} samples  {} bytes",
            b.id,
            b.min_time,
            b.max_time,
            b.level,
            b.stats.series,
            b.stats.samples,
            b.index_bytes + b.chunks_bytes
        );
    }
    Ok(())
}

fn stats(dir: &Path, limit: usize) -> anyhow::Result<()> {
    if !dir.join("blocks").exists() && !dir.join("wal").exists() {
        bail!("{} is not a metrics data directory", dir.display());
    }
    let opts = TsdbOptions {
        compaction: false,
        retention: std::time::Duration::from_secs(100 * 365 * 24 * 3600),
        ..TsdbOptions::default()
    };
    let db = Tsdb::open(dir, opts).with_context(|| format!("opening {}", dir.display()))?;
    let st = db.stats();
    let card = db.cardinality(limit)?;
    println!("head series:      {}", st.series);
    println!("head chunks:      {}", st.chunks());
    println!("wal bytes:        {}", st.wal_bytes);
    println!("blocks:           {}", st.blocks);
    println!("block samples:    {}", st.block_samples);
    println!("block chunks:     {}", st.block_chunks);
    println!("block bytes:      {}", st.block_bytes);
    if st.block_samples > 0 {
        println!(
            "bytes per sample: {:.3}",
            st.block_bytes as f64 / st.block_samples as f64
        );
    }
    for b in db.blocks() {
        println!(
            "  block {}  {} .. {}  level {}  {} series  {} samples  {} bytes",
            b.id,
            b.min_time,
            b.max_time,
            b.level,
            b.stats.series,
            b.stats.samples,
            b.index_bytes + b.chunks_bytes
        );
    }
    let print = |title: &str, rows: &[(String, u64)]| {
        println!("{title}");
        for (k, v) in rows {
            println!("  {v:>10}  {k}");
        }
    };
    println!("series ({}):", card.series);
    print("top metrics by series:", &card.metrics);
    print("top label names by values:", &card.label_value_counts);
    print("top label pairs by series:", &card.label_pairs);
    db.close()?;
    Ok(())
}
