//! Logs in the binary: the log store's flags and runtime for `serve` (store under
//! `<data-dir>/logs`, Loki API on `--loki-addr` and the main port, housekeeping, retention) and
//! the `lookout logs` client command (logcli-style output, `--tail` by polling).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use tokio::sync::watch;
use tracing::{error, info};

use lookout_logql::{EngineOptions, LogqlEngine};
use lookout_logstore::{LogStoreOptions, Tenants};
use lookout_loki_api::{LokiApi, LokiLimits};

use crate::cli::parse_duration;

/// Log store flags of `serve` (Loki's defaults).
#[derive(Args, Debug, Clone)]
pub struct LogStoreArgs {
    /// How long log lines are kept (independent of the metrics `--retention`).
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub log_retention: Duration,
    /// Per-tenant ingestion rate limit in MB/s (pushes beyond it get 429).
    #[arg(long, default_value_t = 4.0)]
    pub log_ingestion_rate_mb: f64,
    /// Per-tenant ingestion burst in MB.
    #[arg(long, default_value_t = 6.0)]
    pub log_ingestion_burst_mb: f64,
    /// Longest log line accepted, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub log_max_line_size: usize,
    /// Cut over-long lines to --log-max-line-size instead of refusing them.
    #[arg(long)]
    pub log_truncate_lines: bool,
    /// Most labels per stream.
    #[arg(long, default_value_t = 15)]
    pub log_max_labels: usize,
    /// Accept lines up to this much older than their stream's newest line.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub log_out_of_order_window: Duration,
    /// Largest `limit` a log query may ask for.
    #[arg(long, default_value_t = 5000)]
    pub log_max_entries: usize,
    /// Most series a LogQL metric query may return.
    #[arg(long, default_value_t = 500)]
    pub log_max_series: usize,
    /// Longest time range of a LogQL query.
    #[arg(long, default_value = "721h", value_parser = parse_duration)]
    pub log_max_query_length: Duration,
}

/// The running log side of `serve`.
pub struct LogsRuntime {
    pub tenants: Arc<Tenants>,
    pub router: axum::Router,
}

/// How often heads are checked for age and the WAL is synced and trimmed.
const TICK: Duration = Duration::from_secs(5);
const RETENTION_EVERY: u32 = 12;

impl LogsRuntime {
    /// Opens `<data_dir>/logs` (replaying its WALs) and builds the Loki router; the caller
    /// registers `tenants.metrics()`.
    pub async fn open(
        args: &LogStoreArgs,
        data_dir: &Path,
        query_timeout: Duration,
    ) -> anyhow::Result<LogsRuntime> {
        let dir = data_dir.join("logs");
        let opts = LogStoreOptions {
            retention: args.log_retention,
            max_line_bytes: args.log_max_line_size,
            truncate_long_lines: args.log_truncate_lines,
            max_labels: args.log_max_labels,
            out_of_order_window: args.log_out_of_order_window,
            ..LogStoreOptions::default()
        };
        let d = dir.clone();
        let tenants = tokio::task::spawn_blocking(move || Tenants::open(&d, opts))
            .await
            .context("opening the log store")?
            .with_context(|| format!("opening the log store in {}", dir.display()))?;
        let tenants = Arc::new(tenants);
        info!(dir = %dir.display(), tenants = tenants.all().len(), "log store open");
        let engine = LogqlEngine::new(EngineOptions {
            max_entries_limit: args.log_max_entries,
            max_series: args.log_max_series,
            max_query_length: args.log_max_query_length,
            timeout: query_timeout,
            ..EngineOptions::default()
        });
        let api = LokiApi::new(
            tenants.clone(),
            engine,
            LokiLimits {
                ingestion_rate_bytes: args.log_ingestion_rate_mb * 1024.0 * 1024.0,
                ingestion_burst_bytes: args.log_ingestion_burst_mb * 1024.0 * 1024.0,
                ..LokiLimits::default()
            },
        );
        Ok(LogsRuntime {
            router: lookout_loki_api::router(api),
            tenants,
        })
    }

    /// Housekeeping until shutdown, then a final flush of every head into chunks.
    pub fn spawn_housekeeping(
        &self,
        mut stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let tenants = self.tenants.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut n = 0u32;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                n += 1;
                let t = tenants.clone();
                let retention = n.is_multiple_of(RETENTION_EVERY);
                let res = tokio::task::spawn_blocking(move || {
                    t.tick()?;
                    if retention {
                        t.enforce_retention()?;
                    }
                    Ok::<_, lookout_logstore::LogStoreError>(())
                })
                .await;
                match res {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => error!(error = %e, "log store housekeeping failed"),
                    Err(e) => error!(error = %e, "log store housekeeping panicked"),
                }
            }
            let t = tenants.clone();
            match tokio::task::spawn_blocking(move || t.flush()).await {
                Ok(Ok(())) => info!("log store flushed"),
                Ok(Err(e)) => error!(error = %e, "log store flush failed"),
                Err(e) => error!(error = %e, "log store flush panicked"),
            }
        })
    }
}

/// `lookout logs '<LogQL>'`: runs a query against a Loki-compatible server.
#[derive(Args, Debug, Clone)]
pub struct LogsArgs {
    /// The LogQL query (log or metric).
    pub query: String,
    /// Base URL of a Loki-compatible API.
    #[arg(long, default_value = "http://127.0.0.1:3100", env = "LOKI_ADDR")]
    pub server: String,
    /// How far back to look.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Start (RFC 3339 or Unix seconds/nanoseconds); overrides --since.
    #[arg(long)]
    pub from: Option<String>,
    /// End (RFC 3339 or Unix seconds/nanoseconds; default now).
    #[arg(long)]
    pub to: Option<String>,
    /// Most lines to print.
    #[arg(long, default_value_t = 30)]
    pub limit: usize,
    /// Oldest first (default newest first, as logcli).
    #[arg(long)]
    pub forward: bool,
    /// Step of metric queries (duration or seconds).
    #[arg(long)]
    pub step: Option<String>,
    /// Keep printing new lines as they arrive.
    #[arg(long, short = 't')]
    pub tail: bool,
    /// Tenant (X-Scope-OrgID).
    #[arg(long)]
    pub org_id: Option<String>,
    /// Output: `default` (time, labels, line), `raw` (line only) or `jsonl`.
    #[arg(long, short = 'o', default_value = "default")]
    pub output: String,
    /// Print the raw JSON response.
    #[arg(long)]
    pub json: bool,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

fn fmt_ts(ns: i64) -> String {
    lookout_logstore::chunk::format_rfc3339_nanos(ns)
}

fn labels_str(v: &serde_json::Value) -> String {
    let m: BTreeMap<String, String> = v
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let inner: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

async fn fetch(
    client: &reqwest::Client,
    args: &LogsArgs,
    params: &[(&str, String)],
) -> anyhow::Result<serde_json::Value> {
    let url = format!(
        "{}/loki/api/v1/query_range",
        args.server.trim_end_matches('/')
    );
    let mut req = client.post(&url).form(params);
    if let Some(o) = &args.org_id {
        req = req.header("X-Scope-OrgID", o);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("querying {url}"))?;
    let status = resp.status();
    let body = resp.text().await.context("reading the response")?;
    if !status.is_success() {
        anyhow::bail!("{url}: {status}: {}", body.trim());
    }
    serde_json::from_str(&body).with_context(|| format!("{url}: response is not JSON"))
}

/// Prints stream entries; returns the newest timestamp printed per entry key for `--tail`.
fn print_streams(args: &LogsArgs, result: &serde_json::Value, forward: bool) -> Vec<(i64, String)> {
    let mut rows: Vec<(i64, String, String)> = Vec::new();
    for s in result.as_array().into_iter().flatten() {
        let labels = labels_str(&s["stream"]);
        for v in s["values"].as_array().into_iter().flatten() {
            let ts = v[0]
                .as_str()
                .and_then(|t| t.parse::<i64>().ok())
                .unwrap_or(0);
            let line = v[1].as_str().unwrap_or("").to_string();
            rows.push((ts, labels.clone(), line));
        }
    }
    rows.sort_by_key(|r| r.0);
    if !forward {
        rows.reverse();
    }
    for (ts, labels, line) in &rows {
        match args.output.as_str() {
            "raw" => println!("{line}"),
            "jsonl" => println!(
                "{}",
                serde_json::json!({"timestamp": fmt_ts(*ts), "labels": labels, "line": line})
            ),
            _ => println!("{} {labels} {line}", fmt_ts(*ts)),
        }
    }
    rows.into_iter()
        .map(|(t, l, line)| (t, format!("{l}{line}")))
        .collect()
}

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.output.as_str(), "default" | "raw" | "jsonl"),
        "--output must be default, raw or jsonl"
    );
    let client = reqwest::Client::new();
    let end = match &args.to {
        Some(t) => lookout_loki_api::parse_time(t).map_err(anyhow::Error::msg)?,
        None => now_ns(),
    };
    let start = match &args.from {
        Some(t) => lookout_loki_api::parse_time(t).map_err(anyhow::Error::msg)?,
        None => end - args.since.as_nanos() as i64,
    };
    let mut params = vec![
        ("query", args.query.clone()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("limit", args.limit.to_string()),
        (
            "direction",
            if args.forward || args.tail {
                "forward"
            } else {
                "backward"
            }
            .to_string(),
        ),
    ];
    if let Some(s) = &args.step {
        params.push(("step", s.clone()));
    }
    let v = fetch(&client, &args, &params).await?;
    if args.json {
        println!("{v}");
        return Ok(());
    }
    let data = &v["data"];
    match data["resultType"].as_str() {
        Some("streams") => {
            let printed = print_streams(&args, &data["result"], args.forward || args.tail);
            if args.tail {
                return tail(&client, &args, printed).await;
            }
        }
        Some("matrix") | Some("vector") => {
            anyhow::ensure!(!args.tail, "--tail needs a log query");
            for s in data["result"].as_array().into_iter().flatten() {
                let labels = labels_str(&s["metric"]);
                let points = s["values"]
                    .as_array()
                    .cloned()
                    .or_else(|| {
                        s["value"]
                            .as_array()
                            .map(|p| vec![serde_json::Value::Array(p.clone())])
                    })
                    .unwrap_or_default();
                for p in points {
                    let t = p[0].as_f64().unwrap_or(0.0);
                    println!(
                        "{} {labels} {}",
                        fmt_ts((t * 1e9) as i64),
                        p[1].as_str().unwrap_or("")
                    );
                }
            }
        }
        Some("scalar") => println!("{}", data["result"][1].as_str().unwrap_or("")),
        other => anyhow::bail!("unexpected resultType {other:?}"),
    }
    Ok(())
}

/// `--tail`: polls every second for entries newer than the last printed ones.
async fn tail(
    client: &reqwest::Client,
    args: &LogsArgs,
    printed: Vec<(i64, String)>,
) -> anyhow::Result<()> {
    let mut from = printed.iter().map(|p| p.0).max().unwrap_or_else(now_ns);
    let mut seen: std::collections::HashSet<String> = printed
        .into_iter()
        .filter(|p| p.0 == from)
        .map(|p| p.1)
        .collect();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let params = vec![
            ("query", args.query.clone()),
            ("start", from.to_string()),
            ("end", now_ns().to_string()),
            ("limit", "5000".to_string()),
            ("direction", "forward".to_string()),
        ];
        let v = fetch(client, args, &params).await?;
        // Print only what was not printed before (the start bound is inclusive).
        let mut fresh = serde_json::json!([]);
        if let Some(arr) = v["data"]["result"].as_array() {
            let mut out = Vec::new();
            for s in arr {
                let labels = labels_str(&s["stream"]);
                let vals: Vec<serde_json::Value> = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| {
                        let ts = e[0]
                            .as_str()
                            .and_then(|t| t.parse::<i64>().ok())
                            .unwrap_or(0);
                        !(ts == from
                            && seen.contains(&format!("{labels}{}", e[1].as_str().unwrap_or(""))))
                    })
                    .cloned()
                    .collect();
                if !vals.is_empty() {
                    out.push(serde_json::json!({"stream": s["stream"].clone(), "values": vals}));
                }
            }
            fresh = serde_json::Value::Array(out);
        }
        let printed = print_streams(args, &fresh, true);
        if let Some(newest) = printed.iter().map(|p| p.0).max() {
            if newest > from {
                seen.clear();
                from = newest;
            }
            seen.extend(printed.into_iter().filter(|p| p.0 == from).map(|p| p.1));
        }
    }
}
