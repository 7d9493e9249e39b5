//! `lookout demo`: the stack on the example weAlist configuration.

use std::time::Duration;

use crate::cli::{DemoArgs, Listen, ListenArgs, QueryLimitArgs, ServeArgs, StorageArgs};
use crate::serve::serve;

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let config = args.config_dir.join("prometheus/prometheus.yml");
    anyhow::ensure!(
        config.is_file(),
        "the demo configuration {} is missing: run `lookout demo` from the repository root or pass --config-dir",
        config.display()
    );
    print_access_table(&args.listen);
    let serve_args = ServeArgs {
        config_dir: Some(args.config_dir),
        config: None,
        listen: args.listen,
        storage: StorageArgs {
            data_dir: args.data_dir,
            retention: Duration::from_secs(7 * 86400),
            out_of_order_window: Duration::ZERO,
            max_series: 0,
            retention_size: 0,
        },
        limits: QueryLimitArgs {
            query_timeout: Duration::from_secs(120),
            query_max_samples: 50_000_000,
            query_max_concurrency: 20,
            query_lookback_delta: Duration::from_secs(300),
        },
    };
    serve(serve_args).await
}

fn print_access_table(listen: &ListenArgs) {
    let url = |l: &Listen| match l {
        Listen::Addr(a) => format!("http://{a}"),
        Listen::Off => "off".to_string(),
    };
    println!("Lookout demo — weAlist monitoring stack");
    println!(
        "  {:<28} {:<28} {}",
        "service / 서비스", "URL", "use / 용도"
    );
    println!(
        "  {:<28} {:<28} {}",
        "Prometheus API",
        url(&listen.prom_addr),
        "metrics queries, remote write / 메트릭 쿼리"
    );
    println!(
        "  {:<28} {:<28} {}",
        "Lookout (main port)",
        url(&listen.ui_addr),
        "the same API; the UI arrives later / UI 예정"
    );
    println!(
        "  {:<28} {:<28} {}",
        "Loki API", "not yet", "logs arrive with the log store / 로그 예정"
    );
    println!(
        "  {:<28} {:<28} {}",
        "Redis / PostgreSQL exporters", "not yet", "exporters arrive later / 예정"
    );
    println!(
        "  weAlist services are scraped at their seed ports (8080, 8090, 8000-8004) and show up == 0 until the demo services land."
    );
    println!("  Stop with Ctrl-C; data stays in the data directory.");
}
