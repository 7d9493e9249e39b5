//! `lookout demo`: the stack on the example weAlist configuration plus the seven weAlist
//! services (crate `wealist-demo`), the traffic generator with its fault schedule, the
//! control endpoint, and the Redis/PostgreSQL exporters when a local server answers.
//!
//! The example `prometheus.yml` is rewritten into `<data-dir>/demo/prometheus.yml` so its
//! targets point at where things actually listen (tests move every port); `serve` runs on
//! that file until Ctrl-C/SIGTERM, then the services, traffic and exporters are stopped and
//! the logs flushed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser};
use tokio::sync::watch;
use tracing::{info, warn};

use wealist_demo::ServiceKind;
use wealist_demo::backing::Backing;
use wealist_demo::config::{DemoTargets, rewrite_prometheus_config};
use wealist_demo::control::{self, FaultController};
use wealist_demo::redis_fill::{self, RedisFiller};
use wealist_demo::schedule::Schedule;
use wealist_demo::stack::{ServiceStack, StackConfig};
use wealist_demo::traffic::{Spike, Traffic, TrafficConfig};

use crate::cli::{DemoArgs, Listen, ListenArgs, ServeArgs};
use crate::embedded_exporters::{self as exporters, spawn_server};
use crate::serve::serve;

/// Demo-only flags (flattened into `lookout demo`).
#[derive(Args, Debug, Clone)]
pub struct DemoOptions {
    /// Run the seven services on consecutive ports from this one (user, auth, board, chat,
    /// noti, storage, video) instead of the seed's 8080, 8090, 8000-8004.
    #[arg(long)]
    pub services_base_port: Option<u16>,
    /// Fault schedule: `standard` (every alert condition fires and clears within 10 minutes),
    /// `fast` (the same, ten times faster, with 1 s scrapes; for tests), `off`, or `scale=F`.
    #[arg(long, default_value = "standard")]
    pub schedule: String,
    /// Past data written on first start (empty metrics store) so dashboards over 24 h have
    /// data at once, e.g. `24h`, `2h`; `0` writes none. See docs/demo.md.
    #[arg(long, default_value = "24h", value_parser = crate::cli::parse_duration)]
    pub history: Duration,
    /// Simulated users.
    #[arg(long, default_value_t = 40)]
    pub users: usize,
    /// Requests per second at the simulated day's peak.
    #[arg(long, default_value_t = 25.0)]
    pub peak_rps: f64,
    /// Fault control endpoint (`GET /faults`, `POST /faults/{errors,slow,stop,spike,redis-fill}`).
    /// `off` disables it.
    #[arg(long, default_value = "127.0.0.1:8099")]
    pub control_addr: Listen,
    /// The local Redis the Redis exporter watches.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_addr: String,
    /// Let the fault schedule write ~230 MiB into that Redis (and delete it again) to drive
    /// the Redis memory alert. Only for a Redis the demo may use; always on for a Redis the
    /// demo started itself.
    #[arg(long)]
    pub redis_fill: bool,
    /// Where the Redis exporter listens when a local Redis answers. `off` disables it.
    #[arg(long, default_value = "127.0.0.1:9121")]
    pub redis_exporter_addr: Listen,
    /// The local PostgreSQL the PostgreSQL exporter watches.
    #[arg(
        long,
        default_value = "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"
    )]
    pub postgres_dsn: String,
    /// Where the PostgreSQL exporter listens when a local PostgreSQL answers. `off` disables it.
    #[arg(long, default_value = "127.0.0.1:9187")]
    pub postgres_exporter_addr: Listen,
    #[command(flatten)]
    pub databases: crate::supervise::DatabaseArgs,
    /// Post alerts to this URL in Alertmanager's webhook format (as `serve --alert-webhook`).
    #[arg(long = "alert-webhook")]
    pub alert_webhooks: Vec<String>,
}

/// Parses `serve`'s flags so every field not set here keeps its command-line default.
#[derive(Parser, Debug)]
struct ServeOnly {
    #[command(flatten)]
    serve: ServeArgs,
}

fn listen_arg(l: &Listen) -> String {
    match l {
        Listen::Addr(a) => a.to_string(),
        Listen::Off => "off".into(),
    }
}

fn addr_of(l: &Listen) -> Option<SocketAddr> {
    match l {
        Listen::Addr(a) => Some(*a),
        Listen::Off => None,
    }
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let opts = args.demo.clone();
    let config_file = args.config_dir.join("prometheus/prometheus.yml");
    anyhow::ensure!(
        config_file.is_file(),
        "the demo configuration {} is missing: run `lookout demo` from the repository root or pass --config-dir",
        config_file.display()
    );
    let schedule = Schedule::parse(&opts.schedule).map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;

    let mut stack_cfg = match opts.services_base_port {
        Some(base) => StackConfig::with_base_port(&data_dir, base)?,
        None => StackConfig::seed_ports(&data_dir),
    };
    stack_cfg.project = "wealist".into();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut background = Vec::new();

    // Redis/PostgreSQL under the demo's supervision when installed and not running yet.
    let databases = crate::supervise::start(
        &opts.databases,
        &opts.redis_addr,
        &opts.postgres_dsn,
        &data_dir,
        &args.listen.loki_addr,
        &stack_cfg.project,
    )
    .await;

    // The user and board services keep users, boards and sessions in the same PostgreSQL and
    // Redis the exporters watch (a supervised PostgreSQL still starting is attached later).
    // Their keys (`wealist:session:*`, `wealist:cache:*`, small, with TTLs) never collide with
    // the `--redis-fill` keys (`wealist-demo:fill:*`), which the fill deletes by name.
    let pg_starting = databases.supervises("postgres")
        && !exporters::postgres_answers(&lookout_exporter_postgres::PgOptions {
            dsn: opts.postgres_dsn.clone(),
            timeout: Duration::from_secs(1),
            ..Default::default()
        })
        .await;
    let backing = Arc::new(
        Backing::connect(
            (!pg_starting).then_some(opts.postgres_dsn.as_str()),
            Some(opts.redis_addr.as_str()),
            Duration::from_secs(3),
        )
        .await,
    );
    if pg_starting {
        background.push(exporters::Background {
            name: "backing-postgres",
            task: backing.attach_postgres_later(
                opts.postgres_dsn.clone(),
                Duration::from_secs(120),
                stop_rx.clone(),
            ),
        });
    }
    let pg_use = match (backing.uses_postgres(), pg_starting) {
        (true, _) => "yes",
        (false, true) => "once it has started",
        (false, false) => "no",
    };
    info!(
        "the weAlist services use PostgreSQL: {pg_use}; Redis: {}",
        if backing.uses_redis() { "yes" } else { "no" }
    );
    // The exporter then watches database `wealist` (its tables fill the dashboard's
    // user-tables panel) unless the DSN names a database of its own.
    let exporter_dsn = match wealist_demo::backing::dsn_with_database(&opts.postgres_dsn) {
        Some(dsn) if backing.uses_postgres() || pg_starting => dsn,
        _ => opts.postgres_dsn.clone(),
    };
    stack_cfg.backing = Some(backing);

    // Exporters, when their servers answer.
    let mut redis_up = false;
    if let Some(addr) = addr_of(&opts.redis_exporter_addr) {
        if databases.supervises("redis") || redis_fill::ping(&opts.redis_addr).await {
            let redis_opts = lookout_exporter_redis::RedisOptions {
                addr: opts.redis_addr.clone(),
                ..Default::default()
            };
            background.push(exporters::start_redis(addr, redis_opts, stop_rx.clone()).await?);
            redis_up = true;
        } else {
            warn!(redis = %opts.redis_addr, "no Redis answers: the redis-exporter target stays down (start one with `redis-server`)");
        }
    }
    let mut postgres_up = false;
    if let Some(addr) = addr_of(&opts.postgres_exporter_addr) {
        let pg_opts = lookout_exporter_postgres::PgOptions {
            dsn: exporter_dsn.clone(),
            timeout: Duration::from_secs(3),
            ..Default::default()
        };
        if databases.supervises("postgres") || exporters::postgres_answers(&pg_opts).await {
            let pg_opts = lookout_exporter_postgres::PgOptions {
                timeout: Duration::from_secs(10),
                ..pg_opts
            };
            background.push(exporters::start_postgres(addr, pg_opts, stop_rx.clone()).await?);
            postgres_up = true;
        } else {
            warn!(
                "no PostgreSQL answers: the postgres-exporter target stays down (start one, or pass --postgres-dsn)"
            );
        }
    }

    // The configuration serve runs on.
    let targets = DemoTargets {
        services: stack_cfg.addrs.clone(),
        prometheus: addr_of(&args.listen.prom_addr).or(addr_of(&args.listen.ui_addr)),
        redis_exporter: addr_of(&opts.redis_exporter_addr),
        postgres_exporter: addr_of(&opts.postgres_exporter_addr),
    };
    let scrape_interval = (schedule.time_scale < 1.0).then(|| {
        Duration::from_secs(15)
            .mul_f64(schedule.time_scale)
            .max(Duration::from_secs(1))
    });
    let original = std::fs::read_to_string(&config_file)
        .with_context(|| format!("reading {}", config_file.display()))?;
    let config_dir_abs = std::fs::canonicalize(&args.config_dir)
        .with_context(|| format!("resolving {}", args.config_dir.display()))?;
    let derived = rewrite_prometheus_config(
        &original,
        &config_dir_abs.join("prometheus"),
        &targets,
        scrape_interval,
    )?;
    // A faster schedule gets rule files with `for`, intervals and rate windows scaled alike
    // (the seed's files stay untouched; the copies live in <data-dir>/demo/rules*).
    let (derived, rule_flags) = if schedule.time_scale != 1.0 {
        scaled_rules(&derived, &config_dir_abs, &data_dir, schedule.time_scale)?
    } else {
        (derived, RuleFlags::default())
    };
    let derived_path = data_dir.join("demo/prometheus.yml");
    write_file(&derived_path, &derived)?;

    // History, on first start only (before the live services load the machine).
    let history = crate::demo_history::HistorySettings {
        window: opts.history,
        seed: args.seed,
        peak_rps: opts.peak_rps.clamp(0.0, 2_000.0),
        start_hour: TrafficConfig::new(args.seed, Default::default()).start_hour,
        users: opts.users,
        project: stack_cfg.project.clone(),
    };
    if let Err(e) = crate::demo_history::fill(&history, &data_dir, &derived_path).await {
        warn!(error = format!("{e:#}"), "no demo history written");
    }

    // Services, traffic, faults.
    let stack = ServiceStack::start(stack_cfg).await?;
    let spike = Arc::new(Spike::default());
    let mut traffic_cfg = TrafficConfig::new(args.seed, stack.addrs().clone());
    traffic_cfg.users = opts.users.max(1);
    traffic_cfg.peak_rps = opts.peak_rps.clamp(0.0, 2_000.0);
    traffic_cfg.day_length = Duration::from_secs(24 * 60).mul_f64(schedule.time_scale);
    traffic_cfg.session_scale = schedule.time_scale;
    let traffic = Traffic::new(traffic_cfg, spike.clone())?;
    // A Redis the demo started itself is the demo's to fill; someone else's only on request.
    let fill = opts.redis_fill || databases.supervises("redis");
    let filler = if fill && redis_up {
        Some(RedisFiller::new(&opts.redis_addr)?)
    } else {
        if opts.redis_fill {
            warn!("--redis-fill given but no Redis answers; the Redis memory fault is skipped");
        }
        None
    };
    let redis_fill_on = filler.is_some();
    let controller = FaultController::new(
        stack.clone(),
        spike,
        traffic.stats().clone(),
        filler,
        schedule.clone(),
    );
    if let Some(addr) = addr_of(&opts.control_addr) {
        match spawn_server(
            "control endpoint",
            addr,
            control::router(controller.clone()).merge(databases.router()),
            stop_rx.clone(),
        )
        .await
        {
            Ok(b) => background.push(b),
            Err(e) => {
                stack.shutdown().await;
                return Err(e);
            }
        }
    }
    let traffic_task = tokio::spawn(traffic.clone().run(stop_rx.clone()));
    let schedule_task = tokio::spawn(controller.clone().run_schedule(stop_rx.clone()));

    print_access_table(
        &args.listen,
        &opts,
        &stack,
        &data_dir,
        &derived_path,
        redis_up,
        postgres_up,
        redis_fill_on,
        &schedule,
    );

    let parsed = ServeOnly::try_parse_from([
        "serve".to_string(),
        "--config-dir".into(),
        args.config_dir.display().to_string(),
        "--config".into(),
        derived_path.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--ui-addr".into(),
        listen_arg(&args.listen.ui_addr),
        "--prom-addr".into(),
        listen_arg(&args.listen.prom_addr),
        "--loki-addr".into(),
        listen_arg(&args.listen.loki_addr),
    ]);
    let result = match parsed {
        Ok(p) => serve(with_rule_flags(p.serve, rule_flags, &opts.alert_webhooks)).await,
        Err(e) => Err(anyhow::anyhow!("building the serve arguments: {e}")),
    };

    // Stop in reverse order: load first, then faults (undoing a Redis fill), then services.
    info!("stopping the demo services");
    let _ = stop_tx.send(true);
    let _ = traffic_task.await;
    let _ = schedule_task.await;
    controller.clear().await;
    exporters::join_all(background, Duration::from_secs(5)).await;
    databases.stop().await;
    stack.shutdown().await;
    let s = traffic.stats().snapshot();
    info!(
        requests = s.responses,
        server_errors = s.server_errors,
        skipped = s.skipped,
        "demo stopped"
    );
    result
}

/// Rule settings the demo changes in `serve`'s defaults.
#[derive(Default)]
struct RuleFlags {
    log_rule_files: Vec<String>,
    resend_delay: Option<Duration>,
}

fn with_rule_flags(mut s: ServeArgs, f: RuleFlags, webhooks: &[String]) -> ServeArgs {
    s.rules.alert_webhooks.extend(webhooks.iter().cloned());
    if !f.log_rule_files.is_empty() {
        s.rules.log_rule_files = f.log_rule_files;
    }
    if let Some(d) = f.resend_delay {
        s.rules.rules_alert_resend_delay = d;
    }
    s
}

/// Scaled copies of the PromQL `rule_files` (returned in the configuration text) and of the
/// LogQL rule files, with the resend delay scaled alike.
fn scaled_rules(
    config: &str,
    config_dir: &Path,
    data_dir: &Path,
    scale: f64,
) -> anyhow::Result<(String, RuleFlags)> {
    let cfg = lookout_rules::scale::scale_config_rule_files(
        config,
        scale,
        &config_dir.join("prometheus"),
        &data_dir.join("demo/rules"),
    )?;
    let log_rules = lookout_rules::scale::write_scaled_copies(
        &[crate::rules_cmd::default_log_rule_pattern(config_dir)],
        scale,
        &data_dir.join("demo/rules-loki"),
    )?;
    let flags = RuleFlags {
        log_rule_files: log_rules.iter().map(|p| p.display().to_string()).collect(),
        resend_delay: Some(
            Duration::from_secs(60)
                .mul_f64(scale)
                .max(Duration::from_secs(1)),
        ),
    };
    Ok((cfg, flags))
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[allow(clippy::too_many_arguments)]
fn print_access_table(
    listen: &ListenArgs,
    opts: &DemoOptions,
    stack: &ServiceStack,
    data_dir: &Path,
    derived: &Path,
    redis_up: bool,
    postgres_up: bool,
    redis_fill: bool,
    schedule: &Schedule,
) {
    let url = |l: &Listen| match l {
        Listen::Addr(a) => format!("http://{a}"),
        Listen::Off => "off".to_string(),
    };
    let row = |a: &str, b: &str, c: &str| println!("  {a:<24} {b:<44} {c}");
    println!("Lookout demo — weAlist monitoring stack / weAlist 모니터링 스택");
    println!();
    row("service / 서비스", "URL", "use / 용도");
    row(
        "Lookout UI (Grafana)",
        &url(&listen.ui_addr),
        "dashboards (admin/admin) / 대시보드",
    );
    row(
        "Prometheus API",
        &url(&listen.prom_addr),
        "metrics queries / 메트릭 쿼리",
    );
    row("Loki API", &url(&listen.loki_addr), "log API / 로그 API");
    let exporter = |l: &Listen, up: bool, hint: &str| match (l, up) {
        (Listen::Off, _) => "off".to_string(),
        (_, true) => url(l),
        (_, false) => format!("{} (down: {hint})", url(l)),
    };
    row(
        "PostgreSQL Exporter",
        &exporter(
            &opts.postgres_exporter_addr,
            postgres_up,
            "no local PostgreSQL; start one or pass --postgres-dsn",
        ),
        "PostgreSQL metrics / 메트릭",
    );
    row(
        "Redis Exporter",
        &exporter(
            &opts.redis_exporter_addr,
            redis_up,
            "no local Redis; start `redis-server`",
        ),
        "Redis metrics / 메트릭",
    );
    println!();
    for kind in ServiceKind::ALL {
        row(
            kind.compose_service(),
            &format!("http://{}{}", stack.addr(kind), kind.metrics_path()),
            "metrics / 메트릭",
        );
    }
    row(
        "fault control",
        &format!("{}/faults", url(&opts.control_addr)),
        "inject faults / 장애 주입",
    );
    println!();
    println!(
        "  container logs (json-file): {}",
        data_dir.join("containers").display()
    );
    println!("  scrape configuration:       {}", derived.display());
    println!(
        "  fault schedule: {} faults over {:.0} s{}",
        schedule.faults.len(),
        schedule.end().as_secs_f64(),
        if redis_fill {
            ""
        } else {
            " (Redis memory fault skipped: needs --redis-fill and a local Redis)"
        }
    );
    println!("  Stop with Ctrl-C; data stays in {}.", data_dir.display());
}
