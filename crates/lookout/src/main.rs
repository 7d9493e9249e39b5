//! `lookout`: the binary only wires the crates together (ARCHITECTURE §2).

mod agent_cmd;
mod allocator;
mod cli;
mod demo;
mod demo_history;
mod embedded_exporters;
mod exporter;
mod logs_cmd;
mod query;
mod rules_cmd;
mod serve;
mod supervise;
mod targets;
mod tsdb_cmd;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// mimalloc keeps freed pages for reuse between queries (bench/README.md, storage latency).
#[global_allocator]
static GLOBAL: allocator::Mimalloc = allocator::Mimalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lookout: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::serve(*args).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::Query(args) => query::run(args).await,
            Command::Check(args) => check(args),
            Command::Agent(args) => agent_cmd::run(args).await,
            Command::Exporter(args) => exporter::run(args).await,
            Command::Logs(args) => logs_cmd::run(args).await,
            Command::Test(args) => rules_cmd::test(args),
            Command::Tsdb(args) => tokio::task::spawn_blocking(move || tsdb_cmd::run(args))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lookout: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// `lookout check config FILE...`: validates like `promtool check config`.
fn check(args: cli::CheckArgs) -> anyhow::Result<()> {
    match args.what.as_str() {
        "config" => {
            let mut failed = 0;
            for file in &args.files {
                match lookout_config::PrometheusConfig::load(file) {
                    Ok(cfg) => println!(
                        "Checking {}\n  SUCCESS: {} scrape configs found",
                        file.display(),
                        cfg.scrape_configs.len()
                    ),
                    Err(e) => {
                        failed += 1;
                        println!("Checking {}\n  FAILED: {e}", file.display());
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!(
                    "{failed} of {} configuration files are invalid",
                    args.files.len()
                );
            }
            Ok(())
        }
        "rules" => rules_cmd::check_rules(&args.files),
        other => anyhow::bail!("unknown check {other:?}: expected `config` or `rules`"),
    }
}
