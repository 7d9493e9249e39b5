//! Rules and alerting in the binary: `lookout check rules`, `lookout test rules`, and the
//! rule manager + notifier that `serve` runs (reloaded with the configuration, exposed to the
//! API as `/api/v1/rules` and `/api/v1/alerts`).
//!
//! PromQL rules come from `rule_files` in prometheus.yml; LogQL rules (Loki ruler format,
//! evaluated over the embedded log store's default tenant) from `--log-rule-files`, by
//! default `<config-dir>/prometheus/rules/loki/*.yml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use lookout_config::PrometheusConfig;
use lookout_notifier::{Notifier, NotifierOptions, WebhookConfig};
use lookout_prom_api::{AlertInfo, RuleGroupInfo, RuleInfo, RuleInfoKind, RulesProvider};
use lookout_promql::{Engine, EngineOptions};
use lookout_rules::{
    AlertState, InstantQuerier, Language, LogqlQuerier, ManagerOptions, PromqlQuerier, Queriers,
    RuleManager, RuleSource,
};
use lookout_storage::logs::LogQueryable;
use lookout_storage::{Appendable, Queryable};
use prometheus_client::registry::Registry;

use crate::cli::parse_duration;

/// `lookout test rules FILE...`.
#[derive(Args, Debug, Clone)]
pub struct TestArgs {
    /// What to test: `rules` (promtool's rule unit-test files).
    pub what: String,
    /// Test files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Rule evaluation and notification flags of `serve`.
#[derive(Args, Debug, Clone)]
pub struct RulesArgs {
    /// Post alerts to this URL in Alertmanager's webhook format (version 4); repeatable.
    #[arg(long = "alert-webhook")]
    pub alert_webhooks: Vec<String>,
    /// The URL Lookout is reached under (alert generator links, `$externalURL`).
    #[arg(long, default_value = "http://localhost:9090")]
    pub web_external_url: String,
    /// Minimum wait before resending a firing alert (Prometheus `--rules.alert.resend-delay`).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub rules_alert_resend_delay: Duration,
    /// How long alert state survives a restart (`--rules.alert.for-outage-tolerance`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub rules_alert_for_outage_tolerance: Duration,
    /// Least time a restored alert waits before firing again; alerts whose `for` is shorter
    /// are not restored at all (`--rules.alert.for-grace-period`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub rules_alert_for_grace_period: Duration,
    /// Loki-ruler rule files (globs) whose expressions are LogQL, evaluated over the log
    /// store; repeatable. Default: `<config-dir>/prometheus/rules/loki/*.yml`.
    #[arg(long = "log-rule-files")]
    pub log_rule_files: Vec<String>,
    /// Alerts waiting to be sent at most; the oldest are dropped beyond it.
    #[arg(long, default_value_t = 10_000)]
    pub alertmanager_notification_queue_capacity: usize,
}

/// Where `serve --config-dir DIR` looks for LogQL rule files unless `--log-rule-files` is given.
pub fn default_log_rule_pattern(config_dir: &Path) -> String {
    config_dir
        .join("prometheus/rules/loki/*.yml")
        .display()
        .to_string()
}

/// The LogQL rule sources of `args` (see [`RulesArgs::log_rule_files`]).
fn log_rule_sources(args: &RulesArgs, config_dir: Option<&Path>) -> Vec<RuleSource> {
    let patterns = if !args.log_rule_files.is_empty() {
        args.log_rule_files.clone()
    } else if let Some(dir) = config_dir {
        vec![default_log_rule_pattern(dir)]
    } else {
        Vec::new()
    };
    if patterns.is_empty() {
        return Vec::new();
    }
    vec![RuleSource {
        patterns,
        language: Language::Logql,
    }]
}

/// LogQL for rules over `store` (the default tenant's log store).
pub fn logql_querier(store: Arc<dyn LogQueryable>, timeout: Duration) -> Arc<dyn InstantQuerier> {
    Arc::new(LogqlQuerier {
        engine: lookout_logql::LogqlEngine::new(lookout_logql::EngineOptions {
            timeout,
            ..lookout_logql::EngineOptions::default()
        }),
        store,
    })
}

/// `lookout check rules FILE...`: promtool's output and exit status (Loki ruler files, whose
/// expressions are LogQL, pass too and are reported as such).
pub fn check_rules(files: &[PathBuf]) -> anyhow::Result<()> {
    let r = lookout_rules::check::check_rule_files_any_language(files);
    print!("{}", r.output);
    if !r.ok {
        anyhow::bail!("rule files are invalid");
    }
    Ok(())
}

/// `lookout test rules FILE...`.
pub fn test(args: TestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.what == "rules",
        "unknown test {:?}: expected `rules`",
        args.what
    );
    let mut failed = 0;
    for f in &args.files {
        let r = lookout_rules::unittest::run_test_file(f);
        println!("{}", r.output);
        if !r.ok {
            failed += 1;
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} rule test files failed", args.files.len());
    }
    Ok(())
}

/// The rule manager and notifier of a running server.
pub struct RulesRuntime {
    pub manager: RuleManager,
    pub notifier: Notifier,
    webhooks: Vec<WebhookConfig>,
    /// LogQL rule files.
    extra: Vec<RuleSource>,
}

impl RulesRuntime {
    /// Loads `cfg`'s rule files, the LogQL rule files and the alerting section and starts
    /// evaluating (LogQL rules through `logql`; without it they report "no LogQL engine").
    /// Call within the tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: &PrometheusConfig,
        appendable: Arc<dyn Appendable>,
        queryable: Arc<dyn Queryable>,
        engine: EngineOptions,
        logql: Option<Arc<dyn InstantQuerier>>,
        config_dir: Option<&Path>,
        registry: &mut Registry,
        args: &RulesArgs,
    ) -> anyhow::Result<RulesRuntime> {
        let notifier = Notifier::new(NotifierOptions {
            queue_capacity: args.alertmanager_notification_queue_capacity,
            ..NotifierOptions::default()
        })?;
        notifier.register_metrics(registry);
        let webhooks: Vec<WebhookConfig> = args
            .alert_webhooks
            .iter()
            .map(|u| WebhookConfig::new(u.clone()))
            .collect();
        notifier.apply_config(cfg, &webhooks)?;
        notifier.start();
        let queriers = Queriers {
            promql: Some(Arc::new(PromqlQuerier {
                engine: Engine::new(engine),
                storage: queryable.clone(),
            })),
            logql,
        };
        let manager = RuleManager::new(
            appendable,
            Some(queryable),
            queriers,
            ManagerOptions {
                external_url: args.web_external_url.trim_end_matches('/').to_string(),
                outage_tolerance: args.rules_alert_for_outage_tolerance,
                resend_delay: args.rules_alert_resend_delay,
                for_grace_period: args.rules_alert_for_grace_period,
            },
        );
        manager.register_metrics(registry);
        manager.set_sink(Arc::new(notifier.clone()));
        let extra = log_rule_sources(args, config_dir);
        manager.update(cfg, &extra)?;
        Ok(RulesRuntime {
            manager,
            notifier,
            webhooks,
            extra,
        })
    }

    /// Checks `cfg`'s rule files without applying anything (run before the rest of a reload).
    pub fn check(&self, cfg: &PrometheusConfig) -> Result<(), String> {
        let mut sources = vec![RuleSource {
            patterns: cfg.rule_files.clone(),
            language: Language::Promql,
        }];
        sources.extend(self.extra.iter().cloned());
        RuleManager::load_files(&sources)
            .map(|_| ())
            .map_err(|e| format!("loading rule files: {e}"))
    }

    /// Applies `cfg`; on error the running rules and alerting settings stay.
    pub fn reload(&self, cfg: &PrometheusConfig) -> Result<(), String> {
        self.manager
            .update(cfg, &self.extra)
            .map_err(|e| format!("loading rule files: {e}"))?;
        self.notifier
            .apply_config(cfg, &self.webhooks)
            .map_err(|e| e.to_string())
    }

    pub fn stop(&self) {
        self.manager.stop();
        self.notifier.stop();
    }

    pub fn provider(&self) -> Arc<dyn RulesProvider> {
        Arc::new(ManagerRules(self.manager.clone()))
    }
}

/// Rule groups for the Prometheus API.
pub struct ManagerRules(pub RuleManager);

impl RulesProvider for ManagerRules {
    fn rule_groups(&self) -> Vec<RuleGroupInfo> {
        self.0
            .groups()
            .into_iter()
            .map(|g| RuleGroupInfo {
                name: g.name,
                file: g.file,
                interval_s: g.interval_ms as f64 / 1000.0,
                limit: g.limit as u64,
                evaluation_seconds: g.evaluation_seconds,
                last_evaluation_ms: g.last_evaluation,
                rules: g
                    .rules
                    .into_iter()
                    .map(|r| RuleInfo {
                        kind: if r.alerting {
                            RuleInfoKind::Alerting {
                                duration_s: r.for_ms as f64 / 1000.0,
                                keep_firing_for_s: r.keep_firing_for_ms as f64 / 1000.0,
                                annotations: r.annotations,
                                state: r.state.as_str().to_string(),
                                alerts: r
                                    .alerts
                                    .into_iter()
                                    .filter(|a| a.state != AlertState::Inactive)
                                    .map(|a| AlertInfo {
                                        labels: a.labels,
                                        annotations: a.annotations,
                                        state: a.state.as_str().to_string(),
                                        active_at_ms: a.active_at,
                                        value: a.value,
                                        keep_firing_since_ms: a.keep_firing_since,
                                    })
                                    .collect(),
                            }
                        } else {
                            RuleInfoKind::Recording
                        },
                        name: r.name,
                        query: r.query,
                        labels: r.labels,
                        health: r.health.to_string(),
                        last_error: r.last_error.unwrap_or_default(),
                        evaluation_seconds: r.evaluation_seconds,
                        last_evaluation_ms: r.last_evaluation,
                    })
                    .collect(),
            })
            .collect()
    }
}
