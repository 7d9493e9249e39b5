//! `lookout-targetsim`: serves N synthetic scrape targets on consecutive loopback ports.

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use lookout_targetsim::{Format, START_TICK, SimConfig, SimServer, Simulator};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DumpFormat {
    Text,
    Openmetrics,
}

/// Serve synthetic Prometheus targets (text 0.0.4 / OpenMetrics) on consecutive ports.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Port of target 0; target i listens on base-port + i.
    #[arg(long, default_value_t = 19100)]
    base_port: u16,
    /// Number of targets.
    #[arg(long, default_value_t = 20)]
    targets: usize,
    /// Stable series per target (~40% counters, ~40% histogram series, ~20% gauges).
    #[arg(long, default_value_t = 800)]
    series_per_target: usize,
    /// Extra series per target that come and go.
    #[arg(long, default_value_t = 8)]
    churn_series: usize,
    /// Lifetime of one churn generation in seconds.
    #[arg(long, default_value_t = 60)]
    churn_period_secs: u64,
    /// Seed for every pseudo-random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Values move once per tick (milliseconds).
    #[arg(long, default_value_t = 1000)]
    tick_ms: u64,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    listen_ip: IpAddr,
    /// Worker threads of the HTTP runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Stop by itself after this many seconds (0 = run until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration_secs: u64,
    /// Write one exposition to stdout and exit instead of serving.
    #[arg(long)]
    once_dump: bool,
    /// Target to dump with --once-dump.
    #[arg(long, default_value_t = 0)]
    dump_target: usize,
    /// Tick to dump with --once-dump (same seed and tick give the same bytes).
    #[arg(long, default_value_t = START_TICK + 60)]
    dump_tick: u64,
    /// Format of --once-dump.
    #[arg(long, value_enum, default_value_t = DumpFormat::Text)]
    format: DumpFormat,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let tick_ms = args.tick_ms.max(1);
    let config = SimConfig {
        targets: args.targets,
        series_per_target: args.series_per_target,
        churn_series: args.churn_series,
        churn_period_ticks: (args.churn_period_secs.saturating_mul(1000) / tick_ms).max(1),
        seed: args.seed,
        tick_ms: args.tick_ms,
    };

    if args.once_dump {
        let sim = Simulator::with_epoch(config, 0)?;
        let format = match args.format {
            DumpFormat::Text => Format::Text,
            DumpFormat::Openmetrics => Format::OpenMetrics,
        };
        let mut out = Vec::new();
        if !sim.render(args.dump_target, args.dump_tick, format, &mut out) {
            bail!(
                "--dump-target {} is out of range (--targets {})",
                args.dump_target,
                args.targets
            );
        }
        std::io::stdout().lock().write_all(&out)?;
        return Ok(());
    }

    if args.targets == 0 {
        bail!("--targets must be at least 1");
    }
    let last = usize::from(args.base_port) + args.targets - 1;
    if last > usize::from(u16::MAX) {
        bail!(
            "--base-port {} + --targets {} exceeds port 65535",
            args.base_port,
            args.targets
        );
    }
    let addrs: Vec<SocketAddr> = (0..args.targets)
        .map(|i| SocketAddr::new(args.listen_ip, args.base_port + i as u16))
        .collect();
    let sim = Arc::new(Simulator::new(config)?);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(async move {
        let server = SimServer::bind(Arc::clone(&sim), &addrs).await?;
        tracing::info!(
            targets = args.targets,
            first = %addrs[0],
            series_per_target = sim.series_at(0, sim.tick_now()),
            "serving synthetic targets"
        );
        wait_for_stop(args.duration_secs).await?;
        let served = server.scrapes();
        server.shutdown().await;
        tracing::info!(scrapes = served, "stopped");
        anyhow::Ok(())
    })
}

async fn wait_for_stop(duration_secs: u64) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let timer = async {
        if duration_secs == 0 {
            std::future::pending::<()>().await;
        } else {
            tokio::time::sleep(Duration::from_secs(duration_secs)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = timer => {}
    }
    Ok(())
}
