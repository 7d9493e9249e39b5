//! Interop with a real Prometheus: Prometheus scrapes the synthetic targets every second and
//! remote-writes everything it stores to Lookout; afterwards the same PromQL queries, at the
//! same evaluation times, must give the same results from both HTTP APIs. Also runs
//! `promtool check metrics` on Lookout's own `/metrics`.
//!
//! Skips (with a visible line) when `prometheus` is not installed, except under `CI=true`.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{ChildGuard, PromApi, api_time, compare, compare_sets, free_port, result_len, which};
use lookout_targetsim::{SimConfig, SimServer, Simulator};

/// How long Prometheus scrapes before the queries are compared.
const SCRAPE_FOR: Duration = Duration::from_secs(45);
/// Evaluation times stay this far behind "now" so remote-write has delivered everything.
const SETTLE_MS: i64 = 15_000;

/// A query and whether an empty result is a legitimate answer.
struct Q {
    promql: &'static str,
    may_be_empty: bool,
    /// Subqueries evaluate at absolute multiples of their step: see `subqueries_safe`.
    subquery: bool,
}

const fn q(promql: &'static str) -> Q {
    Q {
        promql,
        may_be_empty: false,
        subquery: false,
    }
}
const fn empty_ok(promql: &'static str) -> Q {
    Q {
        promql,
        may_be_empty: true,
        subquery: false,
    }
}
const fn sub(promql: &'static str) -> Q {
    Q {
        promql,
        may_be_empty: false,
        subquery: true,
    }
}

/// `{AT}` is replaced by an absolute evaluation time (seconds).
const QUERIES: &[Q] = &[
    // The seed's three.
    q("sum(rate(http_requests_total[5m])) by (job)"),
    q("histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[5m])) by (le, job))"),
    q(r#"sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))"#),
    // Selectors, synthetic series, staleness of churning series.
    q("up"),
    q("count(up == 1)"),
    q("scrape_samples_scraped"),
    q(r#"{__name__=~"http_requests_.*", status="503"}"#),
    q("app_worker_tasks"),
    q("count by (job) (app_worker_tasks)"),
    q("last_over_time(app_worker_tasks[30s])"),
    q("present_over_time(app_worker_tasks[1m])"),
    q("changes(app_worker_tasks[1m])"),
    // Counter functions.
    q("rate(http_requests_total[1m])"),
    q(r#"irate(http_requests_total{method="GET"}[30s])"#),
    q(r#"increase(http_requests_total{status="200"}[1m])"#),
    q("resets(http_requests_total[1m])"),
    // Gauge functions.
    q("delta(app_queue_depth[1m])"),
    q("deriv(app_queue_depth[1m])"),
    q("idelta(http_requests_in_flight[30s])"),
    q(r#"predict_linear(app_queue_depth{queue=~"q[0-3]"}[1m], 60)"#),
    // *_over_time.
    q("max_over_time(app_queue_depth[30s])"),
    q("min_over_time(http_requests_in_flight[1m])"),
    q("avg_over_time(app_queue_depth[1m])"),
    q("sum_over_time(http_requests_in_flight[30s])"),
    q("count_over_time(up[1m])"),
    q("quantile_over_time(0.75, app_queue_depth[1m])"),
    q("stddev_over_time(process_open_fds[1m])"),
    // Aggregations.
    q("sum without (instance) (rate(http_requests_total[1m]))"),
    q("avg by (path) (http_requests_in_flight)"),
    q("max by (job) (app_queue_depth)"),
    q("min by (job, instance) (app_queue_depth)"),
    // topk/bottomk tie-breaking is unspecified: only rank series whose values cannot tie.
    q("bottomk(2, process_resident_memory_bytes)"),
    q("topk(3, app_queue_depth)"),
    q("topk by (job) (1, deriv(app_queue_depth[1m]))"),
    q("quantile(0.9, rate(http_requests_total[1m]))"),
    q("count_values(\"inflight\", http_requests_in_flight)"),
    q("stddev by (job) (app_queue_depth)"),
    q("stdvar(process_open_fds)"),
    q("group by (job) (up)"),
    q("count by (status) (http_requests_total)"),
    // Binary operators and vector matching.
    q(
        "sum by (job, instance, path) (rate(http_requests_total[1m])) / on (job, instance) group_left sum by (job, instance) (rate(http_requests_total[1m]))",
    ),
    q(
        r#"rate(http_requests_total{status="500"}[1m]) / ignoring (status) rate(http_requests_total{status="200"}[1m])"#,
    ),
    q("rate(http_requests_total[1m]) > bool 1"),
    q("http_requests_in_flight > 5"),
    q(r#"http_requests_in_flight and on (instance) (app_queue_depth{queue="q1"} > 0)"#),
    q(r#"http_requests_in_flight{path="/api/users"} or app_worker_tasks"#),
    q(r#"app_queue_depth unless on (instance) (app_queue_depth{queue="q0"} > 30)"#),
    q(
        "process_resident_memory_bytes / 1024 / 1024 + on (instance, job) group_left process_open_fds * 0",
    ),
    q(
        "sum(rate(http_request_duration_seconds_sum[1m])) / sum(rate(http_request_duration_seconds_count[1m]))",
    ),
    // Histograms.
    q("histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[1m]))"),
    q("histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[1m])))"),
    // Subqueries, offset, @.
    sub(r#"max_over_time(rate(http_requests_total{method="GET"}[30s])[1m:10s])"#),
    sub("avg_over_time(sum by (job) (app_queue_depth)[40s:5s])"),
    q(r#"rate(http_requests_total{status="200"}[30s] offset 15s)"#),
    q("app_queue_depth offset 10s"),
    q("app_queue_depth @ {AT}"),
    q(r#"rate(http_requests_total{path="/api/users"}[30s] @ {AT})"#),
    // Label functions, math, absent, scalars.
    q(r#"label_replace(up, "port", "$1", "instance", ".*:(.*)")"#),
    q(r#"label_join(http_requests_in_flight, "jp", "/", "job", "path")"#),
    q("clamp_max(app_queue_depth, 30)"),
    q("round(app_queue_depth, 5)"),
    q("sgn(deriv(app_queue_depth[1m]))"),
    q("time() - timestamp(up)"),
    q("scalar(sum(up))"),
    q("vector(1) + count(up)"),
    empty_ok("absent(nonexistent_metric)"),
    empty_ok(r#"absent(up{job="nope"})"#),
    empty_ok("absent(up)"),
    empty_ok("absent_over_time(up[1m])"),
    q("sort_desc(sum by (job) (up))"),
];

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Milliseconds past the second (mod 1000) of every raw `up` sample Prometheus stored.
async fn scrape_residues(prom: &PromApi) -> Result<Vec<i64>, String> {
    let data = prom.instant("up[5m]", now_ms()).await?;
    let mut out = Vec::new();
    for s in data["result"].as_array().ok_or("up[5m]: no result")? {
        for p in s["values"].as_array().ok_or("up[5m]: no values")? {
            let t = p[0].as_f64().ok_or("up[5m]: bad timestamp")?;
            out.push(((t * 1000.0).round() as i64).rem_euclid(1000));
        }
    }
    Ok(out)
}

fn circular_distance(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(1000);
    d.min(1000 - d)
}

/// Chooses the millisecond offset of evaluation times farthest from every scrape timestamp,
/// so no sample sits exactly on a range boundary (Prometheus 2 ranges are closed on the left,
/// Prometheus 3 ranges are open: both agree as long as nothing lies on the boundary).
fn pick_residue(residues: &[i64]) -> (i64, i64) {
    (0..1000)
        .map(|m| {
            let d = residues
                .iter()
                .map(|&r| circular_distance(m, r))
                .min()
                .unwrap_or(500);
            (m, d)
        })
        .max_by_key(|&(m, d)| (d, -m))
        .unwrap_or((500, 500))
}

fn write_prometheus_config(
    path: &Path,
    targets: &[SocketAddr],
    lookout: &str,
) -> std::io::Result<()> {
    let list = |ts: &[SocketAddr]| {
        ts.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cfg = format!(
        "global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sim-a
    static_configs:
      - targets: [{a}]
  - job_name: sim-b
    static_configs:
      - targets: [{b}]
remote_write:
  - url: http://{lookout}/api/v1/write
    remote_timeout: 10s
    queue_config:
      capacity: 20000
      max_samples_per_send: 5000
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 1s
",
        a = list(&targets[..2]),
        b = list(&targets[2..]),
    );
    std::fs::write(path, cfg)
}

fn promtool_check(body: &str) -> Result<(), String> {
    let promtool = which("promtool").ok_or("promtool not found (it ships with prometheus)")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool: {e}"))?;
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().ok_or("promtool: no stdin")?;
        stdin
            .write_all(body.as_bytes())
            .map_err(|e| format!("promtool stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("promtool: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}):\n{text}", out.status))
    }
}

#[test]
fn interop_prometheus() {
    let Some(prometheus) = which("prometheus") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "interop_prometheus: prometheus not installed and CI=true (apt-get install -y prometheus)"
            );
        }
        println!(
            "SKIP interop_prometheus: prometheus not installed (apt-get install -y prometheus)"
        );
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(&prometheus)) {
        panic!("interop_prometheus failed:\n{e}");
    }
}

async fn run(prometheus: &Path) -> Result<(), String> {
    let started = Instant::now();
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;

    // Targets: 3 in-process synthetic targets on ephemeral loopback ports.
    let sim = Simulator::new(SimConfig {
        targets: 3,
        series_per_target: 200,
        churn_series: 4,
        churn_period_ticks: 15,
        seed: 42,
        tick_ms: 1000,
    })
    .map_err(|e| e.to_string())?;
    let any: SocketAddr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let server = SimServer::bind(Arc::new(sim), &[any; 3])
        .await
        .map_err(|e| e.to_string())?;
    let targets = server.addrs().to_vec();

    // Lookout: no scrape jobs, remote-write receiver on its Prometheus API port.
    let lookout_addr = format!("127.0.0.1:{}", free_port());
    let lookout_cfg = dir.path().join("lookout.yml");
    std::fs::write(&lookout_cfg, "scrape_configs: []\n").map_err(|e| e.to_string())?;
    let lookout_data = dir.path().join("lookout-data");
    let mut lookout = ChildGuard::spawn(
        "lookout",
        Command::new(env!("CARGO_BIN_EXE_lookout"))
            .arg("serve")
            .arg("--config")
            .arg(&lookout_cfg)
            .arg("--data-dir")
            .arg(&lookout_data)
            .args([
                "--prom-addr",
                &lookout_addr,
                "--ui-addr",
                "off",
                "--loki-addr",
                "off",
            ]),
        &dir.path().join("lookout.log"),
    )
    .map_err(|e| format!("spawn lookout: {e}"))?;
    let lapi = PromApi::new("lookout", &lookout_addr);
    lapi.wait_ready("/-/ready", Duration::from_secs(30), &mut lookout)
        .await?;

    // Prometheus: scrapes the targets every second and remote-writes to Lookout.
    let prom_addr = format!("127.0.0.1:{}", free_port());
    let prom_cfg = dir.path().join("prometheus.yml");
    write_prometheus_config(&prom_cfg, &targets, &lookout_addr).map_err(|e| e.to_string())?;
    let mut prom = ChildGuard::spawn(
        "prometheus",
        Command::new(prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}")),
        &dir.path().join("prometheus.log"),
    )
    .map_err(|e| format!("spawn prometheus: {e}"))?;
    let papi = PromApi::new("prometheus", &prom_addr);
    papi.wait_ready("/-/ready", Duration::from_secs(30), &mut prom)
        .await?;
    let data_start = now_ms();

    tokio::time::sleep(SCRAPE_FOR).await;
    lookout.check_running()?;
    prom.check_running()?;

    // Evaluation times: fully delivered, and never on a sample's timestamp.
    let residues = scrape_residues(&papi).await?;
    if residues.is_empty() {
        return Err(format!(
            "prometheus stored no `up` samples; log:\n{}",
            prom.log_tail(30)
        ));
    }
    let (m, margin) = pick_residue(&residues);
    let subqueries_safe = residues.iter().all(|&r| circular_distance(r, 0) > 3);
    let align = |t: i64| t.div_euclid(1000) * 1000 + m;
    let last = align(now_ms() - SETTLE_MS);
    let instants = [last, last - 7_000, last - 21_000];
    let range = (align(data_start + 3_000), last, 4_000i64);
    let at = api_time(last - 10_000);
    println!(
        "interop_prometheus: evaluating at ms offset {m} ({margin} ms from any scrape timestamp); \
         instants {:?}, range {}..{} step {}s",
        instants.map(api_time),
        api_time(range.0),
        api_time(range.1),
        range.2 / 1000
    );

    // Wait until Lookout holds everything Prometheus has up to the last evaluation time.
    let probe = "sum(count_over_time(up[10m])) + sum(count_over_time(app_queue_depth[10m]))";
    let sync_deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let p = papi.instant(probe, last).await?;
        let l = lapi.instant(probe, last).await;
        match l {
            Ok(l) if compare("prometheus", &p, "lookout", &l).is_ok() => break,
            _ if Instant::now() > sync_deadline => {
                println!(
                    "interop_prometheus: sample counts still differ after 20s; comparing anyway"
                );
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }

    let mut failures = Vec::new();
    let mut equal = 0usize;
    let mut total = 0usize;
    let mut skipped = Vec::new();
    for query in QUERIES {
        if query.subquery && !subqueries_safe {
            skipped.push(query.promql);
            continue;
        }
        total += 1;
        let promql = query.promql.replace("{AT}", &at);
        let mut problems = Vec::new();
        let mut series = 0usize;
        for &t in &instants {
            match (
                papi.instant(&promql, t).await,
                lapi.instant(&promql, t).await,
            ) {
                (Ok(p), Ok(l)) => {
                    series += result_len(&p);
                    if let Err(d) = compare("prometheus", &p, "lookout", &l) {
                        problems.push(format!("instant @{}:\n    {d}", api_time(t)));
                    }
                }
                (p, l) => problems.push(format!(
                    "instant @{}: prometheus {:?} / lookout {:?}",
                    api_time(t),
                    p.err(),
                    l.err()
                )),
            }
        }
        match (
            papi.range(&promql, range.0, range.1, range.2).await,
            lapi.range(&promql, range.0, range.1, range.2).await,
        ) {
            (Ok(p), Ok(l)) => {
                series += result_len(&p);
                if let Err(d) = compare("prometheus", &p, "lookout", &l) {
                    problems.push(format!("range:\n    {d}"));
                }
            }
            (p, l) => problems.push(format!(
                "range: prometheus {:?} / lookout {:?}",
                p.err(),
                l.err()
            )),
        }
        if series == 0 && !query.may_be_empty {
            problems
                .push("prometheus returned no data at all: the comparison would be vacuous".into());
        }
        if problems.is_empty() {
            equal += 1;
        } else {
            failures.push(format!("{promql}\n  {}", problems.join("\n  ")));
        }
    }

    // Metadata endpoints over the same window: label names, label values, series.
    let window = [("start", api_time(data_start)), ("end", api_time(last))];
    let with = |extra: &[(&'static str, &str)]| {
        let mut v: Vec<(&str, String)> = window.to_vec();
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };
    let metadata: [(&str, Vec<(&str, String)>); 5] = [
        ("/api/v1/labels", with(&[])),
        ("/api/v1/label/__name__/values", with(&[])),
        ("/api/v1/label/path/values", with(&[])),
        ("/api/v1/series", with(&[("match[]", "app_worker_tasks")])),
        (
            "/api/v1/series",
            with(&[
                ("match[]", "up"),
                ("match[]", r#"http_requests_in_flight{path=~"/api/.*"}"#),
            ]),
        ),
    ];
    for (path, params) in &metadata {
        total += 1;
        let what = format!("{path} {:?}", &params[2..]);
        match (
            papi.get_data(path, params).await,
            lapi.get_data(path, params).await,
        ) {
            (Ok(p), Ok(l)) => match compare_sets("prometheus", &p, "lookout", &l) {
                Ok(()) => equal += 1,
                Err(d) => failures.push(format!("{what}\n  {d}")),
            },
            (p, l) => failures.push(format!(
                "{what}\n  prometheus {:?} / lookout {:?}",
                p.err(),
                l.err()
            )),
        }
    }

    // Lookout's own /metrics must pass promtool's checks.
    let (status, body) = lapi.get_raw("/metrics", &[]).await?;
    let promtool = if status != 200 {
        Err(format!("lookout /metrics answered HTTP {status}"))
    } else {
        promtool_check(&body)
    };

    lookout.check_running()?;
    prom.check_running()?;
    drop(prom);
    drop(lookout);
    server.shutdown().await;

    for s in &skipped {
        println!(
            "interop_prometheus: not compared (a scrape timestamp sits on a whole second, where \
             Prometheus 2 and 3 subquery boundaries differ): {s}"
        );
    }
    println!(
        "interop_prometheus: {equal}/{total} queries equal (PromQL and metadata; {:.0}s)",
        started.elapsed().as_secs_f64()
    );
    let mut report = Vec::new();
    if !failures.is_empty() {
        report.push(format!(
            "{} queries differ:\n{}",
            failures.len(),
            failures.join("\n\n")
        ));
    }
    if let Err(e) = promtool {
        report.push(e);
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report.join("\n\n"))
    }
}

#[test]
fn residue_choice_avoids_scrape_offsets() {
    let (m, d) = pick_residue(&[0, 1, 999, 500]);
    assert_eq!(d, 249);
    assert!(m == 250 || m == 750, "{m}");
    assert_eq!(circular_distance(998, 3), 5);
    assert_eq!(pick_residue(&[]).1, 500);
}
