//! `lookout demo --history`: on first start (empty metrics store) write the past `window`
//! of the demo's scrape targets before live scraping begins.
//!
//! A throw-away copy of the services is driven and scraped once
//! ([`wealist_demo::history::probe`]); each body goes through the scrape code itself
//! ([`lookout_scrape::offline::OfflineScraper`] with the job's config from the derived
//! `prometheus.yml`), so the history has exactly the live series' labels, `up` and
//! `scrape_*` included. The self-monitoring job gets `up`; the exporter jobs get nothing
//! (they fill live). [`wealist_demo::history::HistoryGenerator`] extrapolates the series;
//! whole chunk ranges are written as level-1 blocks ([`lookout_tsdb::block::BlockWriter`];
//! `serve`'s background compaction merges them later, so startup does not wait for it), the
//! newest partial range is appended through the head (so the head's lower bound stays at the
//! last block boundary and live samples are accepted).
//!
//! A 2 % sample of the past requests is written into the containers' json-file logs before
//! the services open them (only when those files do not exist yet); the log agent ships them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use lookout_config::{PrometheusConfig, RelabelConfig};
use lookout_scrape::client::Fetched;
use lookout_scrape::discovery::expand_group;
use lookout_scrape::offline::OfflineScraper;
use lookout_scrape::target::{Populated, populate};
use lookout_storage::memory::MemStorage;
use lookout_storage::{
    Appendable, Labels, LabelsBuilder, METRIC_NAME, MatchOp, Matcher, Queryable, SelectHints,
    is_stale_nan,
};
use lookout_tsdb::block::BlockWriter;
use lookout_tsdb::{Tsdb, TsdbOptions};
use tracing::info;
use wealist_demo::ServiceKind;
use wealist_demo::history::logs::LogHistoryWriter;
use wealist_demo::history::probe::{self, ProbeOptions};
use wealist_demo::history::{HistoryConfig, HistoryGenerator, ScrapedTarget, metric_types};

/// What the history run needs from the demo.
#[derive(Clone, Debug)]
pub struct HistorySettings {
    pub window: Duration,
    pub seed: u64,
    /// The live generator's peak requests per second and start hour.
    pub peak_rps: f64,
    pub start_hour: f64,
    pub users: usize,
    /// Compose project of the services' containers (their log directories).
    pub project: String,
}

/// Share of the past requests written as log lines.
const LOG_SAMPLE: f64 = 0.02;

/// Figures of a written history.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryOutcome {
    pub series: usize,
    pub samples: u64,
    pub blocks: usize,
    /// Past log lines written into the containers' logs.
    pub log_lines: u64,
    pub probe: Duration,
    pub write: Duration,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn store_options() -> TsdbOptions {
    TsdbOptions {
        compaction: false,
        ..TsdbOptions::default()
    }
}

/// Whether the metrics store under `dir` holds nothing yet.
fn store_is_empty(dir: &Path) -> anyhow::Result<bool> {
    if !dir.exists() {
        return Ok(true);
    }
    let db = Tsdb::open(dir, store_options())
        .with_context(|| format!("opening the metrics store in {}", dir.display()))?;
    let st = db.stats();
    db.close()?;
    Ok(st.series == 0 && st.blocks == 0)
}

/// Writes the history into `<data_dir>/metrics` unless the store already has data.
/// Returns `None` when nothing was written (history off or store not empty).
pub async fn fill(
    settings: &HistorySettings,
    data_dir: &Path,
    derived_config: &Path,
) -> anyhow::Result<Option<HistoryOutcome>> {
    if settings.window.is_zero() {
        return Ok(None);
    }
    // Older data would fall to retention at once.
    let retention = TsdbOptions::default().retention;
    let mut settings = settings.clone();
    if settings.window > retention {
        tracing::warn!(history = ?settings.window, ?retention, "--history is longer than the retention: writing the retention's worth");
        settings.window = retention;
    }
    let settings = &settings;
    let metrics_dir = data_dir.join("metrics");
    let dir = metrics_dir.clone();
    if !tokio::task::spawn_blocking(move || store_is_empty(&dir)).await?? {
        info!(dir = %metrics_dir.display(), "metrics store has data: no history written");
        return Ok(None);
    }
    let config = PrometheusConfig::load(derived_config)
        .with_context(|| format!("loading {}", derived_config.display()))?;

    let started = Instant::now();
    let mut popts = ProbeOptions::new(settings.seed, data_dir.join("demo/history-probe"));
    popts.users = settings.users.max(1);
    let probe = probe::run(&popts).await.context("history probe")?;
    let probe_time = started.elapsed();
    anyhow::ensure!(
        probe.rps >= 1.0,
        "the history probe's traffic did not get through ({:.2} requests/s)",
        probe.rps
    );

    let end_ms = now_ms();
    let mut targets = Vec::new();
    for sc in &config.scrape_configs {
        let service = ServiceKind::parse(&sc.job_name);
        let Some(group) = sc.static_configs.iter().find(|g| !g.targets.is_empty()) else {
            continue;
        };
        let Some(address) = group.targets.first() else {
            continue;
        };
        if let Some(kind) = service {
            let Some(scrape) = probe.scrapes.iter().find(|s| s.service == kind) else {
                continue;
            };
            // The offline scraper takes an address only: the group's labels become rules
            // ahead of the job's own relabelling, which is where discovery puts them.
            let mut job = sc.clone();
            let mut rules: Vec<RelabelConfig> = group
                .labels
                .iter()
                .map(|(name, value)| RelabelConfig {
                    target_label: name.clone(),
                    replacement: value.replace('$', "$$"),
                    ..RelabelConfig::default()
                })
                .collect();
            rules.append(&mut job.relabel_configs);
            job.relabel_configs = rules;
            let store = Arc::new(MemStorage::new());
            let mut scraper = OfflineScraper::new(&job, address, store.clone())
                .map_err(|e| anyhow::anyhow!("scrape config of {}: {e}", sc.job_name))?;
            let first_ms = end_ms - (probe.seconds * 1000.0).round().max(1.0) as i64;
            for (body, ts) in [(&scrape.previous, first_ms), (&scrape.body, end_ms)] {
                let fetched = Fetched {
                    body: body.clone(),
                    content_type: scrape.content_type.clone(),
                };
                scraper
                    .scrape(&fetched, ts)
                    .map_err(|e| anyhow::anyhow!("probe scrape of {}: {e}", sc.job_name))?;
            }
            let all = Matcher::new(MatchOp::Regex, METRIC_NAME, ".+")?;
            let mut series = Vec::new();
            let mut previous = HashMap::new();
            for s in store.select(&[all], &SelectHints::range(first_ms, end_ms))? {
                let value = |t: i64| s.samples.iter().find(|x| x.t == t).map(|x| x.v);
                let Some(now) = value(end_ms).filter(|v| !is_stale_nan(*v)) else {
                    continue;
                };
                if let Some(before) = value(first_ms) {
                    previous.insert(s.labels.clone(), before);
                }
                series.push((s.labels, now));
            }
            targets.push(ScrapedTarget {
                service: Some(kind),
                series,
                types: metric_types(&scrape.body, &scrape.content_type),
                previous,
            });
        } else if sc.job_name == "prometheus" {
            // Self-monitoring: only `up` (its own metrics are not running yet).
            let discovered = expand_group(group, &[]);
            let first = discovered.first().map(Vec::as_slice).unwrap_or_default();
            if let Ok(Populated::Active(t)) = populate(first, sc) {
                let mut b = LabelsBuilder::new();
                for l in t.public_labels().iter() {
                    b.set(l.name.as_str(), l.value.as_str());
                }
                b.set(METRIC_NAME, "up");
                targets.push(ScrapedTarget {
                    service: None,
                    series: vec![(b.build(), 1.0)],
                    types: HashMap::new(),
                    previous: HashMap::new(),
                });
            }
        }
    }
    let cfg = HistoryConfig {
        end_ms,
        window: settings.window,
        step: Duration::from_secs(15),
        peak_rps: settings.peak_rps,
        end_hour: settings.start_hour,
        probe_rps: probe.rps,
        probe_seconds: probe.seconds,
        seed: settings.seed,
        log_sample: LOG_SAMPLE,
    };
    let containers = data_dir.join("containers");
    let logs = LogHistoryWriter::create(&containers, &settings.project, settings.seed)?;
    if logs.is_none() {
        info!("container logs exist already: no log history written");
    }
    let write_started = Instant::now();
    let dir = metrics_dir.clone();
    let (series, samples, blocks, log_lines) =
        tokio::task::spawn_blocking(move || write(&dir, HistoryGenerator::new(targets, cfg), logs))
            .await??;
    let outcome = HistoryOutcome {
        series,
        samples,
        blocks,
        log_lines,
        probe: probe_time,
        write: write_started.elapsed(),
    };
    info!(
        series,
        samples,
        blocks,
        log_lines,
        window = ?settings.window,
        probe_ms = outcome.probe.as_millis() as u64,
        write_ms = outcome.write.as_millis() as u64,
        "demo history written: {series} series, {samples} samples, {log_lines} log lines over {:?} in {:.2} s (probe {:.2} s)",
        settings.window,
        (outcome.probe + outcome.write).as_secs_f64(),
        outcome.probe.as_secs_f64(),
    );
    Ok(Some(outcome))
}

/// Writes every whole chunk range as a block and appends the rest through the
/// head; sampled requests go to `logs`. Returns (series, samples, blocks, log lines).
fn write(
    dir: &Path,
    mut generator: HistoryGenerator,
    mut logs: Option<LogHistoryWriter>,
) -> anyhow::Result<(usize, u64, usize, u64)> {
    let started = Instant::now();
    let opts = store_options();
    let range = i64::try_from(opts.chunk_range.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let last_boundary = generator.end_ms().div_euclid(range) * range;
    let blocks_dir = dir.join("blocks");
    std::fs::create_dir_all(&blocks_dir)
        .with_context(|| format!("creating {}", blocks_dir.display()))?;
    let mut order: Vec<usize> = (0..generator.labels().len()).collect();
    order.sort_by(|a, b| generator.labels()[*a].cmp(&generator.labels()[*b]));
    let mut samples = 0u64;
    let mut blocks = 0usize;
    let mut lo = generator.next_time().div_euclid(range) * range;
    while lo + range <= last_boundary {
        let hi = lo + range;
        let window = generator.next_window(hi);
        if let Some(w) = logs.as_mut() {
            w.write(&mut generator.take_log_events())?;
        }
        let mut w = BlockWriter::new(&blocks_dir)?;
        for &i in &order {
            if let Some(s) = window.get(i).filter(|s| !s.is_empty()) {
                samples += s.len() as u64;
                w.add_series(generator.labels()[i].clone(), s)?;
            }
        }
        if w.finish(lo, hi, 1, Vec::new(), false)?.is_some() {
            blocks += 1;
        }
        lo = hi;
    }
    let blocks_done = Instant::now();
    let tail = generator.next_window(i64::MAX);
    let mut events = generator.take_log_events();
    let log_lines = match logs {
        Some(mut w) => {
            w.write(&mut events)?;
            w.finish()?.0
        }
        None => 0,
    };
    let db = Tsdb::open(dir, opts).with_context(|| format!("opening {}", dir.display()))?;
    let opened = Instant::now();
    let labels: Vec<Labels> = generator.labels().to_vec();
    let mut app = db.appender();
    let mut pending = 0usize;
    for (l, s) in labels.iter().zip(&tail) {
        let mut hint = None;
        for x in s {
            hint = Some(
                app.append(hint, l, x.t, x.v)
                    .with_context(|| format!("appending history of {l}"))?,
            );
            samples += 1;
            pending += 1;
        }
        if pending >= 100_000 {
            app.commit()?;
            app = db.appender();
            pending = 0;
        }
    }
    app.commit()?;
    db.close()?;
    tracing::debug!(
        blocks_ms = blocks_done.duration_since(started).as_millis() as u64,
        open_ms = opened.duration_since(blocks_done).as_millis() as u64,
        head_ms = opened.elapsed().as_millis() as u64,
        "demo history phases"
    );
    Ok((labels.len(), samples, blocks, log_lines))
}
