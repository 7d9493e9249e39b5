//! `/api/v1/targets`, `/api/v1/targets/metadata` and the `/api/v1/status/*` pages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lookout_storage::{Labels, METRIC_NAME, MatchOp, Matcher};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value as Json, json};

use super::query::now_ms;
use super::{Shared, read_form};
use crate::error::{ApiError, ErrorType};
use crate::json;
use crate::params::{self, format_prom_duration, format_rfc3339, invalid_param};
use crate::{ActiveTarget, DroppedTarget};

/// Go's zero `time.Time`, which Prometheus shows for "never".
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn labels_json(l: &Labels) -> Json {
    Json::Object(
        l.iter()
            .map(|l| (l.name.clone(), Json::String(l.value.clone())))
            .collect::<Map<_, _>>(),
    )
}

/// A label set serialized as a JSON object in label order.
struct LabelsJson<'a>(&'a Labels);

impl Serialize for LabelsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for l in self.0.iter() {
            m.serialize_entry(&l.name, &l.value)?;
        }
        m.end()
    }
}

fn time_string(t: Option<SystemTime>) -> String {
    match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
        Some(d) => format_rfc3339(d.as_millis() as i64),
        None => GO_ZERO_TIME.into(),
    }
}

fn time_json(t: Option<SystemTime>) -> Json {
    Json::String(time_string(t))
}

/// Prometheus's `activeTargets` entry, fields in its order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ActiveJson<'a> {
    discovered_labels: LabelsJson<'a>,
    labels: LabelsJson<'a>,
    scrape_pool: &'a str,
    scrape_url: &'a str,
    global_url: &'a str,
    last_error: &'a str,
    last_scrape: String,
    last_scrape_duration: f64,
    health: crate::TargetHealth,
    scrape_interval: String,
    scrape_timeout: String,
}

fn active_json(t: &ActiveTarget) -> ActiveJson<'_> {
    ActiveJson {
        discovered_labels: LabelsJson(&t.discovered_labels),
        labels: LabelsJson(&t.labels),
        scrape_pool: &t.scrape_pool,
        scrape_url: &t.scrape_url,
        global_url: &t.global_url,
        last_error: &t.last_error,
        last_scrape: time_string(t.last_scrape),
        last_scrape_duration: t.last_scrape_duration.as_secs_f64(),
        health: t.health,
        scrape_interval: format_prom_duration(t.scrape_interval),
        scrape_timeout: format_prom_duration(t.scrape_timeout),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DroppedJson<'a> {
    discovered_labels: LabelsJson<'a>,
    scrape_pool: &'a str,
}

fn dropped_json(t: &DroppedTarget) -> DroppedJson<'_> {
    DroppedJson {
        discovered_labels: LabelsJson(&t.discovered_labels),
        scrape_pool: &t.scrape_pool,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetDiscovery<'a> {
    active_targets: Vec<ActiveJson<'a>>,
    dropped_targets: Vec<DroppedJson<'a>>,
    dropped_target_counts: Option<BTreeMap<&'a str, u64>>,
}

pub(crate) async fn targets(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let state = form.value("state").trim().to_ascii_lowercase();
        let pool = form.value("scrapePool").to_string();
        let show_active = matches!(state.as_str(), "" | "any" | "active");
        let show_dropped = matches!(state.as_str(), "" | "any" | "dropped");
        let provider = s.targets.clone();
        let (mut active, mut dropped) = tokio::task::spawn_blocking(move || {
            let a = if show_active {
                provider.active_targets()
            } else {
                Vec::new()
            };
            let d = if show_dropped {
                provider.dropped_targets()
            } else {
                Vec::new()
            };
            (a, d)
        })
        .await
        .map_err(|e| ApiError::internal(format!("targets task failed: {e}")))?;
        active.retain(|t| pool.is_empty() || t.scrape_pool == pool);
        dropped.retain(|t| pool.is_empty() || t.scrape_pool == pool);
        // Grouped by scrape pool in name order, as Prometheus sorts its pool keys.
        active.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        dropped.sort_by(|a, b| a.scrape_pool.cmp(&b.scrape_pool));
        let counts = show_dropped.then(|| {
            let mut c: BTreeMap<&str, u64> = BTreeMap::new();
            for t in &dropped {
                *c.entry(t.scrape_pool.as_str()).or_default() += 1;
            }
            c
        });
        let data = TargetDiscovery {
            active_targets: active.iter().map(active_json).collect(),
            dropped_targets: dropped.iter().map(dropped_json).collect(),
            dropped_target_counts: counts,
        };
        Ok(json::success_value(&data, &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn targets_metadata(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let limit: i64 = match form.value("limit") {
            "" => -1,
            v => v
                .parse()
                .map_err(|_| ApiError::bad_data("limit must be a number"))?,
        };
        let match_target = form.value("match_target");
        let matcher_sets = if match_target.is_empty() {
            vec![Vec::new()]
        } else {
            params::parse_selector(match_target).map_err(|e| invalid_param("match_target", e))?
        };
        let metric = form.value("metric").to_string();
        let provider = s.targets.clone();
        let all = tokio::task::spawn_blocking(move || provider.target_metadata())
            .await
            .map_err(|e| ApiError::internal(format!("targets task failed: {e}")))?;
        let mut out = Vec::new();
        'targets: for t in &all {
            if !matcher_sets
                .iter()
                .any(|set| set.iter().all(|m| m.matches_labels(&t.target)))
            {
                continue;
            }
            for m in &t.metadata {
                if limit >= 0 && out.len() as i64 >= limit {
                    break 'targets;
                }
                if metric.is_empty() {
                    out.push(json!({
                        "target": labels_json(&t.target),
                        "metric": m.metric,
                        "type": m.metric_type,
                        "help": m.help,
                        "unit": m.unit,
                    }));
                } else if m.metric == metric {
                    out.push(json!({
                        "target": labels_json(&t.target),
                        "type": m.metric_type,
                        "help": m.help,
                        "unit": m.unit,
                    }));
                }
            }
        }
        if out.is_empty() {
            return Err(ApiError::new(
                ErrorType::NotFound,
                "specified metadata not found",
            ));
        }
        Ok(json::success_value(&out, &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn buildinfo(State(s): State<Shared>) -> Response {
    json::success_value(&s.build_info, &[])
}

pub(crate) async fn config(State(s): State<Shared>) -> Response {
    let yaml = (s.config_yaml)();
    json::success_value(&json!({ "yaml": yaml }), &[])
}

pub(crate) async fn flags(State(s): State<Shared>) -> Response {
    json::success_value(&*s.flags, &[])
}

/// Threads of this process (Prometheus reports goroutines here).
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) async fn runtimeinfo(State(s): State<Shared>) -> Response {
    let provider = s.runtime_info.clone();
    let info = match tokio::task::spawn_blocking(move || provider.runtime_info()).await {
        Ok(i) => i,
        Err(e) => {
            return ApiError::internal(format!("runtime info task failed: {e}")).into_response();
        }
    };
    let data = json!({
        "startTime": time_json(Some(info.start_time)),
        "CWD": info.cwd,
        "hostname": info.hostname,
        "serverTime": time_json(Some(SystemTime::now())),
        "reloadConfigSuccess": info.reload_config_success,
        "lastConfigTime": time_json(info.last_config_time),
        "corruptionCount": info.corruption_count,
        "goroutineCount": thread_count(),
        "GOMAXPROCS": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "storageRetention": info.storage_retention,
    });
    json::success_value(&data, &[])
}

/// Series statistics over the series with data in the last two hours (Prometheus reports its
/// head block, which covers about that window).
pub(crate) async fn tsdb(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let limit: usize = match form.value("limit") {
            "" => 10,
            v => match v.parse::<i64>() {
                Ok(n) if n > 0 => n as usize,
                _ => return Err(ApiError::bad_data("limit must be a positive number")),
            },
        };
        let q = s.queryable.clone();
        let end = now_ms();
        let start = end - 2 * 3600 * 1000;
        let series = tokio::task::spawn_blocking(move || {
            let all = Matcher::new(MatchOp::Regex, METRIC_NAME, ".+")
                .map_err(|e| ApiError::internal(e.to_string()))?;
            q.series(&[all], start, params::MAX_TIME_MS)
                .map_err(|e| ApiError::internal(e.to_string()))
        })
        .await
        .map_err(|e| ApiError::internal(format!("tsdb status task failed: {e}")))??;
        Ok(json::success_value(&tsdb_stats(&series, limit), &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn tsdb_stats(series: &[Labels], limit: usize) -> Json {
    let mut by_metric: HashMap<&str, u64> = HashMap::new();
    let mut values_by_name: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), u64> = HashMap::new();
    let mut pairs: BTreeSet<(&str, &str)> = BTreeSet::new();
    for l in series {
        if let Some(name) = l.metric_name() {
            *by_metric.entry(name).or_default() += 1;
        }
        for label in l.iter() {
            values_by_name
                .entry(&label.name)
                .or_default()
                .insert(&label.value);
            *by_pair.entry((&label.name, &label.value)).or_default() += 1;
            pairs.insert((&label.name, &label.value));
        }
    }
    fn top(mut v: Vec<(String, u64)>, limit: usize) -> Json {
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v.truncate(limit);
        Json::Array(
            v.into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    }
    let metric_counts = by_metric.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let value_counts = values_by_name
        .iter()
        .map(|(k, v)| (k.to_string(), v.len() as u64))
        .collect();
    let memory = values_by_name
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.len() as u64).sum()))
        .collect();
    let pair_counts = by_pair
        .iter()
        .map(|((n, v), c)| (format!("{n}={v}"), *c))
        .collect();
    json!({
        "headStats": { "numSeries": series.len(), "numLabelPairs": pairs.len() },
        "seriesCountByMetricName": top(metric_counts, limit),
        "labelValueCountByLabelName": top(value_counts, limit),
        "memoryInBytesByLabelName": top(memory, limit),
        "seriesCountByLabelValuePair": top(pair_counts, limit),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsdb_stats_counts() {
        let s = vec![
            Labels::from_pairs([("__name__", "a"), ("job", "x")]),
            Labels::from_pairs([("__name__", "a"), ("job", "y")]),
            Labels::from_pairs([("__name__", "b"), ("job", "x")]),
        ];
        let j = tsdb_stats(&s, 10);
        assert_eq!(j["headStats"]["numSeries"], 3);
        assert_eq!(j["headStats"]["numLabelPairs"], 4);
        assert_eq!(
            j["seriesCountByMetricName"][0],
            json!({"name": "a", "value": 2})
        );
        assert_eq!(
            j["seriesCountByLabelValuePair"][0],
            json!({"name": "__name__=a", "value": 2})
        );
        assert_eq!(
            j["seriesCountByLabelValuePair"][1],
            json!({"name": "job=x", "value": 2})
        );
        assert_eq!(
            tsdb_stats(&s, 1)["labelValueCountByLabelName"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }
}
