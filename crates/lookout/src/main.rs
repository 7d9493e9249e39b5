//! `lookout`: the binary only wires the crates together (ARCHITECTURE §2).

mod agent_cmd;
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
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in the bundled mimalloc v3 header (enum index, pinned
/// crate versions). Its default (2: eager on overcommit systems) costs ~70% peak RSS in the
/// scrape race; 0 commits arena memory on use.
#[cfg(target_os = "linux")]
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// `mi_option_page_reclaim_on_free` (same header): 1 lets a free into a full page that
/// another thread gave up take the page back for reuse (default 0: only the thread that
/// allocated it). The scrape thread allocates what the WAL writer and the tokio workers
/// free. The 80k-series scrape race held ~0.9 MB less anonymous memory; the dashboard
/// queries are unchanged (31 interleaved runs: 1.01 / 1.01 / 0.99). A shorter purge delay
/// (100 ms) saved ~0.5 MB more but made Q1/Q2 7–10 % slower: freed query memory was
/// returned to the OS between queries and faulted back in.
#[cfg(target_os = "linux")]
const MI_OPTION_PAGE_RECLAIM_ON_FREE: libmimalloc_sys::mi_option_t = 35;

/// Sets the allocator options before the first allocation reserves an arena (setting them
/// in `main` is too late: the runtime allocates before `main`).
#[cfg(target_os = "linux")]
extern "C" fn set_allocator_options() {
    // SAFETY: sets plain integer options; no allocation, no other state touched.
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PAGE_RECLAIM_ON_FREE, 1);
    }
}

#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static SET_ALLOCATOR_OPTIONS: extern "C" fn() = set_allocator_options;

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
