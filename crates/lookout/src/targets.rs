//! Shows the scrape manager's targets and metadata through the API's `TargetsProvider`.

use std::collections::BTreeMap;
use std::time::Duration;

use lookout_prom_api::{
    ActiveTarget, DroppedTarget, MetricMetadata, TargetHealth, TargetMetadata, TargetsProvider,
};
use lookout_scrape::{Health, ScrapeManager};
use lookout_storage::Labels;

pub struct ScrapeTargets(pub ScrapeManager);

fn duration(s: &str) -> Duration {
    s.parse::<lookout_config::Duration>()
        .map(|d| d.as_std())
        .unwrap_or_default()
}

impl TargetsProvider for ScrapeTargets {
    fn active_targets(&self) -> Vec<ActiveTarget> {
        self.0
            .targets()
            .into_iter()
            .filter(|t| t.active)
            .map(|t| ActiveTarget {
                discovered_labels: t.discovered_labels,
                labels: t.labels,
                scrape_pool: t.scrape_pool,
                scrape_url: t.scrape_url,
                global_url: t.global_url,
                last_error: t.last_error,
                last_scrape: t.last_scrape,
                last_scrape_duration: t.last_scrape_duration,
                health: match t.health {
                    Health::Up => TargetHealth::Up,
                    Health::Down => TargetHealth::Down,
                    Health::Unknown => TargetHealth::Unknown,
                },
                scrape_interval: duration(&t.scrape_interval),
                scrape_timeout: duration(&t.scrape_timeout),
            })
            .collect()
    }

    fn dropped_targets(&self) -> Vec<DroppedTarget> {
        self.0
            .targets()
            .into_iter()
            .filter(|t| !t.active)
            .map(|t| DroppedTarget {
                discovered_labels: t.discovered_labels,
                scrape_pool: t.scrape_pool,
            })
            .collect()
    }

    fn target_metadata(&self) -> Vec<TargetMetadata> {
        let mut by_target: BTreeMap<Labels, Vec<MetricMetadata>> = BTreeMap::new();
        for m in self.0.targets_metadata(|_| true, None, None) {
            by_target.entry(m.target).or_default().push(MetricMetadata {
                metric: m.metric,
                metric_type: m.metadata.metric_type.as_str().to_string(),
                help: m.metadata.help,
                unit: m.metadata.unit,
            });
        }
        by_target
            .into_iter()
            .map(|(target, metadata)| TargetMetadata { target, metadata })
            .collect()
    }
}
