//! `lookout serve` and `lookout demo`: open the store, start scraping, serve the APIs, reload
//! on SIGHUP or `POST /-/reload`, enforce retention, and shut down cleanly on Ctrl-C/SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use parking_lot::{Mutex, RwLock};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use lookout_config::PrometheusConfig;
use lookout_prom_api::{ApiLimits, ApiState, BuildInfo, RuntimeInfo, RuntimeInfoProvider};
use lookout_promql::{Engine, EngineOptions};
use lookout_scrape::{ScrapeManager, ScrapeOptions, ScrapeThread};
use lookout_storage::{Appendable, Queryable};
use lookout_tsdb::{Tsdb, TsdbOptions};

use crate::cli::{Listen, ServeArgs};
use crate::targets::ScrapeTargets;

/// How often retention is enforced.
const RETENTION_PERIOD: Duration = Duration::from_secs(60);

/// The configuration file `serve` reads: `--config`, else `<config-dir>/prometheus/prometheus.yml`,
/// else none (no scraping; remote write and queries still work).
fn config_path(args: &ServeArgs) -> anyhow::Result<Option<PathBuf>> {
    if let Some(c) = &args.config {
        return Ok(Some(c.clone()));
    }
    if let Some(dir) = &args.config_dir {
        let p = dir.join("prometheus/prometheus.yml");
        anyhow::ensure!(
            p.is_file(),
            "--config-dir {}: {} does not exist",
            dir.display(),
            p.display()
        );
        return Ok(Some(p));
    }
    Ok(None)
}

fn load_config(path: Option<&Path>) -> anyhow::Result<PrometheusConfig> {
    match path {
        Some(p) => PrometheusConfig::load(p).with_context(|| format!("loading {}", p.display())),
        None => Ok(PrometheusConfig::default()),
    }
}

/// The state `/api/v1/status/runtimeinfo` reports and reload updates.
struct Runtime {
    start_time: SystemTime,
    retention: String,
    reload_ok: AtomicBool,
    last_config_time: Mutex<SystemTime>,
    tsdb: Arc<Tsdb>,
}

impl RuntimeInfoProvider for Runtime {
    fn runtime_info(&self) -> RuntimeInfo {
        RuntimeInfo {
            start_time: self.start_time,
            cwd: std::env::current_dir()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            reload_config_success: self.reload_ok.load(Ordering::SeqCst),
            last_config_time: Some(*self.last_config_time.lock()),
            corruption_count: self.tsdb.stats().corruptions as i64,
            storage_retention: self.retention.clone(),
        }
    }
}

/// Re-reads the configuration file and applies it; an invalid file leaves everything as is.
struct Reloader {
    path: Option<PathBuf>,
    config: Arc<RwLock<PrometheusConfig>>,
    scrape: ScrapeManager,
    rules: Arc<crate::rules_cmd::RulesRuntime>,
    runtime: Arc<Runtime>,
}

impl Reloader {
    fn reload(&self) -> Result<(), String> {
        let result = load_config(self.path.as_deref())
            .map_err(|e| format!("{e:#}"))
            .and_then(|cfg| self.rules.check(&cfg).map(|()| cfg))
            .and_then(|cfg| {
                // Runs on the blocking pool (SIGHUP handler or the API's reload hook).
                tokio::runtime::Handle::current()
                    .block_on(self.scrape.apply_config(&cfg))
                    .map(|()| cfg)
                    .map_err(|e| e.to_string())
            });
        match result {
            Ok(cfg) => {
                if let Err(e) = self.rules.reload(&cfg) {
                    self.runtime.reload_ok.store(false, Ordering::SeqCst);
                    error!(error = %e, "rules reload failed; the previous rules keep running");
                    return Err(e);
                }
                *self.config.write() = cfg;
                self.runtime.reload_ok.store(true, Ordering::SeqCst);
                *self.runtime.last_config_time.lock() = SystemTime::now();
                info!("configuration reloaded");
                Ok(())
            }
            Err(e) => {
                self.runtime.reload_ok.store(false, Ordering::SeqCst);
                error!(error = %e, "configuration reload failed; the previous configuration keeps running");
                Err(e)
            }
        }
    }
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config_path = config_path(&args)?;
    let config = load_config(config_path.as_deref())?;
    if let Some(p) = &config_path {
        info!(config = %p.display(), scrape_configs = config.scrape_configs.len(), "configuration loaded");
    }
    if !config.remote_write.is_empty() {
        warn!("remote_write (sending) is not supported yet; the receiver at /api/v1/write is");
    }

    let data_dir = &args.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let tsdb_opts = TsdbOptions {
        retention: args.storage.retention,
        out_of_order_window: args.storage.out_of_order_window,
        max_series: (args.storage.max_series > 0).then_some(args.storage.max_series),
        retention_size: (args.storage.retention_size > 0).then_some(args.storage.retention_size),
        ..TsdbOptions::default()
    };
    let metrics_dir = data_dir.join("metrics");
    let tsdb = {
        let dir = metrics_dir.clone();
        tokio::task::spawn_blocking(move || Tsdb::open(&dir, tsdb_opts))
            .await
            .context("opening the metrics store")?
            .with_context(|| format!("opening the metrics store in {}", metrics_dir.display()))?
    };
    let tsdb = Arc::new(tsdb);
    let stats = tsdb.stats();
    info!(dir = %metrics_dir.display(), series = stats.series, "metrics store open");

    let registry = Arc::new(RwLock::new(Registry::default()));
    tsdb.register_metrics(&mut registry.write());

    let appendable: Arc<dyn Appendable> = tsdb.clone();
    let queryable: Arc<dyn Queryable> = tsdb.clone();
    // Scrape loops get a thread of their own (see `lookout_scrape::ScrapeThread`).
    let scrape_thread = ScrapeThread::start().context("starting the scrape thread")?;
    let scrape = ScrapeManager::new(
        appendable.clone(),
        ScrapeOptions {
            runtime: Some(scrape_thread.handle()),
            ..ScrapeOptions::default()
        },
    );
    scrape.register_metrics(&mut registry.write());
    scrape
        .apply_config(&config)
        .await
        .context("starting the scrape manager")?;

    let runtime = Arc::new(Runtime {
        start_time: SystemTime::now(),
        retention: lookout_prom_api::format_prom_duration(args.storage.retention),
        reload_ok: AtomicBool::new(true),
        last_config_time: Mutex::new(SystemTime::now()),
        tsdb: tsdb.clone(),
    });
    let logs =
        crate::logs_cmd::LogsRuntime::open(&args.logs, data_dir, args.limits.query_timeout).await?;
    logs.tenants.metrics().register(&mut registry.write());
    // LogQL rules run over the default tenant's logs (Loki's ruler without auth).
    let log_rules_store = logs
        .tenants
        .get(lookout_logstore::DEFAULT_TENANT)
        .context("opening the log store's default tenant")?;
    let rules = Arc::new(
        crate::rules_cmd::RulesRuntime::start(
            &config,
            appendable.clone(),
            queryable.clone(),
            EngineOptions {
                lookback_delta: args.limits.query_lookback_delta,
                max_samples: args.limits.query_max_samples,
                timeout: args.limits.query_timeout,
                ..EngineOptions::default()
            },
            Some(crate::rules_cmd::logql_querier(
                log_rules_store,
                args.limits.query_timeout,
            )),
            args.config_dir.as_deref(),
            &mut registry.write(),
            &args.rules,
        )
        .context("starting the rule manager")?,
    );
    let config = Arc::new(RwLock::new(config));
    let reloader = Arc::new(Reloader {
        path: config_path.clone(),
        config: config.clone(),
        scrape: scrape.clone(),
        rules: rules.clone(),
        runtime: runtime.clone(),
    });

    let engine = Engine::new(EngineOptions {
        lookback_delta: args.limits.query_lookback_delta,
        max_samples: args.limits.query_max_samples,
        timeout: args.limits.query_timeout,
        ..EngineOptions::default()
    });
    let mut state =
        ApiState::new(engine, queryable, appendable, registry.clone()).with_limits(ApiLimits {
            query_timeout: args.limits.query_timeout,
            max_concurrent_queries: args.limits.query_max_concurrency,
            ..ApiLimits::default()
        });
    state.targets = Arc::new(ScrapeTargets(scrape.clone()));
    state.rules = rules.provider();
    let r = reloader.clone();
    state.reload = Some(Arc::new(move || r.reload()));
    let cfg = config.clone();
    state.config_yaml = Arc::new(move || cfg.read().original.clone());
    state.flags = Arc::new(flags(&args, config_path.as_deref()));
    state.build_info = build_info();
    state.runtime_info = runtime.clone();
    let t = tsdb.clone();
    state.tsdb_status = Some(Arc::new(move |limit: usize| tsdb_status(&t, limit)));
    let router = lookout_prom_api::router(state);
    let ui = ui_router(&args).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for (name, listen) in [
        ("prometheus api", args.listen.prom_addr),
        ("main", args.listen.ui_addr),
    ] {
        if let Listen::Addr(addr) = listen {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} ({name})"))?;
            info!(%addr, "{name} listening");
            let mut rx = shutdown_rx.clone();
            // The main port serves the UI next to the API routes (Grafana's paths do not
            // collide with /api/v1).
            let app = match &ui {
                Some(ui) if name == "main" => ui.clone().merge(router.clone()),
                _ => router.clone(),
            };
            let app = if name == "main" {
                app.merge(logs.router.clone())
            } else {
                app
            };
            servers.push(tokio::spawn(async move {
                let res = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    })
                    .await;
                if let Err(e) = res {
                    error!(error = %e, "{name} server failed");
                }
            }));
        }
    }
    if let Listen::Addr(addr) = args.listen.loki_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (loki api)"))?;
        info!(%addr, "loki api listening");
        let mut rx = shutdown_rx.clone();
        let app = logs.router.clone();
        servers.push(tokio::spawn(async move {
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = res {
                error!(error = %e, "loki api server failed");
            }
        }));
    }
    let logs_housekeeping = logs.spawn_housekeeping(shutdown_rx.clone());
    // Embedded Redis/PostgreSQL exporters (`--redis-exporter.listen`, `--postgres-exporter.listen`).
    let exporters =
        crate::embedded_exporters::start_configured(&args.exporters, &shutdown_rx).await?;

    // The log agent (Promtail's job), when a promtail configuration is present.
    let agent = match crate::agent_cmd::serve_config_path(
        args.config_dir.as_deref(),
        args.promtail_config.as_deref(),
    ) {
        Some(p) => Some(crate::agent_cmd::start_embedded(
            &p,
            &args.storage.data_dir,
            args.listen.loki_addr,
            &mut registry.write(),
            shutdown_rx.clone(),
        )?),
        None => None,
    };

    // Retention and WAL housekeeping.
    let housekeeping = {
        let tsdb = tsdb.clone();
        let mut rx = shutdown_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETENTION_PERIOD);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = rx.wait_for(|stop| *stop) => break,
                }
                let t = tsdb.clone();
                match tokio::task::spawn_blocking(move || t.enforce_retention()).await {
                    Ok(Ok(outcome)) => tracing::debug!(?outcome, "retention enforced"),
                    Ok(Err(e)) => error!(error = %e, "retention failed"),
                    Err(e) => error!(error = %e, "retention task panicked"),
                }
            }
        })
    };

    wait_for_signals(reloader.clone()).await;
    info!("shutting down");
    let _ = shutdown_tx.send(true);
    scrape.stop().await;
    drop(scrape_thread);
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    rules.stop();
    for s in servers {
        let _ = s.await;
    }
    crate::embedded_exporters::join_all(exporters, Duration::from_secs(5)).await;
    let _ = housekeeping.await;
    let _ = logs_housekeeping.await;
    let t = tsdb.clone();
    tokio::task::spawn_blocking(move || t.close())
        .await
        .context("closing the store")??;
    info!("stopped cleanly");
    Ok(())
}

/// The UI (users, sessions and saved dashboards in `<data-dir>/ui.db`; dashboards and data
/// sources provisioned from `<config-dir>/grafana/provisioning`), when the main port is on.
async fn ui_router(args: &ServeArgs) -> anyhow::Result<Option<axum::Router>> {
    if args.listen.ui_addr == Listen::Off {
        return Ok(None);
    }
    let url = |l: Listen, default: &str| match l {
        Listen::Addr(a) => format!("http://{a}"),
        Listen::Off => default.to_string(),
    };
    let config = lookout_ui::UiConfig {
        data_dir: args.storage.data_dir.clone(),
        provisioning_dir: args
            .config_dir
            .as_ref()
            .map(|d| d.join("grafana/provisioning"))
            .filter(|d| d.is_dir()),
        version: env!("CARGO_PKG_VERSION").to_string(),
        prometheus_url: url(args.listen.prom_addr, "http://127.0.0.1:9090"),
        loki_url: url(args.listen.loki_addr, "http://127.0.0.1:3100"),
    };
    let state = tokio::task::spawn_blocking(move || lookout_ui::UiState::open(config))
        .await
        .context("opening the UI database")?
        .context("opening the UI database")?;
    Ok(Some(lookout_ui::router(Arc::new(state))))
}

/// Waits for Ctrl-C or SIGTERM; reloads the configuration on every SIGHUP meanwhile.
async fn wait_for_signals(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers; stop with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hup.recv() => {
                let r = reloader.clone();
                let _ = tokio::task::spawn_blocking(move || r.reload()).await;
            }
        }
    }
}

fn flags(args: &ServeArgs, config: Option<&Path>) -> BTreeMap<String, String> {
    let listen = |l: Listen| match l {
        Listen::Addr(a) => a.to_string(),
        Listen::Off => "off".into(),
    };
    let d = |d: Duration| lookout_prom_api::format_prom_duration(d);
    BTreeMap::from([
        (
            "config.file".into(),
            config.map(|p| p.display().to_string()).unwrap_or_default(),
        ),
        (
            "storage.tsdb.path".into(),
            args.storage.data_dir.join("metrics").display().to_string(),
        ),
        (
            "storage.tsdb.retention.time".into(),
            d(args.storage.retention),
        ),
        (
            "storage.tsdb.out_of_order_time_window".into(),
            d(args.storage.out_of_order_window),
        ),
        ("query.timeout".into(), d(args.limits.query_timeout)),
        (
            "query.max-samples".into(),
            args.limits.query_max_samples.to_string(),
        ),
        (
            "query.max-concurrency".into(),
            args.limits.query_max_concurrency.to_string(),
        ),
        (
            "query.lookback-delta".into(),
            d(args.limits.query_lookback_delta),
        ),
        ("web.listen-address".into(), listen(args.listen.prom_addr)),
        ("web.ui-address".into(), listen(args.listen.ui_addr)),
        ("web.loki-address".into(), listen(args.listen.loki_addr)),
        ("web.enable-lifecycle".into(), "true".into()),
        ("web.enable-remote-write-receiver".into(), "true".into()),
    ])
}

/// Grafana and other clients detect features from `version`, so it names the Prometheus API
/// level Lookout implements; Lookout's own version rides along as semver build metadata.
fn build_info() -> BuildInfo {
    BuildInfo {
        version: format!("3.5.0+lookout.{}", env!("CARGO_PKG_VERSION")),
        revision: option_env!("LOOKOUT_GIT_REVISION")
            .unwrap_or("unknown")
            .to_string(),
        branch: option_env!("LOOKOUT_GIT_BRANCH")
            .unwrap_or("unknown")
            .to_string(),
        build_user: "lookout".into(),
        build_date: option_env!("LOOKOUT_BUILD_DATE")
            .unwrap_or("unknown")
            .to_string(),
        go_version: format!("rust (lookout {})", env!("CARGO_PKG_VERSION")),
    }
}

/// `/api/v1/status/tsdb` from the store's head statistics and cardinality tables.
fn tsdb_status(tsdb: &Tsdb, limit: usize) -> Result<lookout_prom_api::TsdbStatus, String> {
    let card = tsdb.cardinality(limit).map_err(|e| e.to_string())?;
    let st = tsdb.stats();
    Ok(lookout_prom_api::TsdbStatus {
        head_stats: lookout_prom_api::HeadStats {
            num_series: card.series,
            num_label_pairs: card.num_label_pairs,
            chunk_count: st.chunks(),
            min_time: st.min_time.unwrap_or(i64::MAX),
            max_time: st.max_time.unwrap_or(i64::MIN),
        },
        series_count_by_metric_name: card.metrics,
        label_value_count_by_label_name: card.label_value_counts,
        memory_in_bytes_by_label_name: card.label_value_bytes,
        series_count_by_label_value_pair: card.label_pairs,
    })
}
