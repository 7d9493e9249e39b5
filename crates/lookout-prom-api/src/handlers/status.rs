//! `/api/v1/targets`, `/api/v1/targets/metadata` and the `/api/v1/status/*` pages.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use lookout_storage::{Labels, METRIC_NAME, MatchOp, Matcher, SelectHints, Series};
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value as Json, json};

use super::query::now_ms;
use super::{Shared, read_form};
use crate::error::{ApiError, ErrorType};
use crate::json;
use crate::params::{self, format_prom_duration, format_rfc3339, invalid_param};
use crate::{ActiveTarget, DroppedTarget, HeadStats, TsdbStatus};

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

/// `/api/v1/status/tsdb`: head statistics and cardinality tables from the
/// [`TsdbStatusProvider`](crate::TsdbStatusProvider), or, without one, derived from the series
/// with data in the last two hours (Prometheus reports its head block, which covers about
/// that window).
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
        let provider = s.tsdb_status.clone();
        let q = s.queryable.clone();
        let status = tokio::task::spawn_blocking(move || match provider {
            Some(p) => p.tsdb_status(limit).map_err(ApiError::internal),
            None => {
                let end = now_ms();
                let all = Matcher::new(MatchOp::Regex, METRIC_NAME, ".+")
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                let series = q
                    .select(
                        &[all],
                        &SelectHints::range(end - 2 * 3600 * 1000, params::MAX_TIME_MS),
                    )
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(status_from_series(&series, limit))
            }
        })
        .await
        .map_err(|e| ApiError::internal(format!("tsdb status task failed: {e}")))??;
        Ok(json::success_value(&tsdb_status_json(&status), &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

fn top(mut v: Vec<(String, u64)>, limit: usize) -> Vec<(String, u64)> {
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(limit);
    v
}

/// The tables over `series` with Prometheus's definitions (see [`TsdbStatus`]); these series
/// carry no chunks, so `chunkCount` is 0.
fn status_from_series(series: &[Series], limit: usize) -> TsdbStatus {
    let mut by_metric: HashMap<&str, u64> = HashMap::new();
    let mut by_pair: HashMap<(&str, &str), u64> = HashMap::new();
    let mut head = HeadStats {
        num_series: series.len() as u64,
        ..HeadStats::default()
    };
    for s in series {
        if let Some(name) = s.labels.metric_name() {
            *by_metric.entry(name).or_default() += 1;
        }
        for label in s.labels.iter() {
            *by_pair.entry((&label.name, &label.value)).or_default() += 1;
        }
        if let (Some(first), Some(last)) = (s.samples.first(), s.samples.last()) {
            head.min_time = head.min_time.min(first.t);
            head.max_time = head.max_time.max(last.t);
        }
    }
    head.num_label_pairs = by_pair.len() as u64;
    let mut by_name: HashMap<&str, (u64, u64)> = HashMap::new();
    for ((n, v), c) in &by_pair {
        let e = by_name.entry(n).or_default();
        e.0 += 1;
        e.1 += v.len() as u64 * c;
    }
    TsdbStatus {
        head_stats: head,
        series_count_by_metric_name: top(
            by_metric.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            limit,
        ),
        label_value_count_by_label_name: top(
            by_name.iter().map(|(k, v)| (k.to_string(), v.0)).collect(),
            limit,
        ),
        memory_in_bytes_by_label_name: top(
            by_name.iter().map(|(k, v)| (k.to_string(), v.1)).collect(),
            limit,
        ),
        series_count_by_label_value_pair: top(
            by_pair
                .iter()
                .map(|((n, v), c)| (format!("{n}={v}"), *c))
                .collect(),
            limit,
        ),
    }
}

/// Prometheus's JSON shape (`TSDBStatus`); tables are `[{"name", "value"}]` in the given order.
fn tsdb_status_json(st: &TsdbStatus) -> Json {
    fn table(v: &[(String, u64)]) -> Json {
        Json::Array(
            v.iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect(),
        )
    }
    let h = &st.head_stats;
    json!({
        "headStats": {
            "numSeries": h.num_series,
            "numLabelPairs": h.num_label_pairs,
            "chunkCount": h.chunk_count,
            "minTime": h.min_time,
            "maxTime": h.max_time,
        },
        "seriesCountByMetricName": table(&st.series_count_by_metric_name),
        "labelValueCountByLabelName": table(&st.label_value_count_by_label_name),
        "memoryInBytesByLabelName": table(&st.memory_in_bytes_by_label_name),
        "seriesCountByLabelValuePair": table(&st.series_count_by_label_value_pair),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_storage::Sample;

    fn series(pairs: &[(&str, &str)], ts: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs(pairs.iter().copied()),
            samples: ts.iter().map(|&t| Sample { t, v: 1.0 }).collect(),
        }
    }

    #[test]
    fn tsdb_stats_counts() {
        let s = vec![
            series(&[("__name__", "a"), ("job", "x")], &[5, 9]),
            series(&[("__name__", "a"), ("job", "yy")], &[3]),
            series(&[("__name__", "bbb"), ("job", "x")], &[7, 20]),
        ];
        let j = tsdb_status_json(&status_from_series(&s, 10));
        assert_eq!(
            j["headStats"],
            json!({"numSeries": 3, "numLabelPairs": 4, "chunkCount": 0, "minTime": 3, "maxTime": 20})
        );
        assert_eq!(
            j["seriesCountByMetricName"],
            json!([{"name": "a", "value": 2}, {"name": "bbb", "value": 1}])
        );
        assert_eq!(
            j["seriesCountByLabelValuePair"][0],
            json!({"name": "__name__=a", "value": 2})
        );
        assert_eq!(
            j["seriesCountByLabelValuePair"][1],
            json!({"name": "job=x", "value": 2})
        );
        // __name__: 1*2 + 3*1 = 5; job: 1*2 + 2*1 = 4.
        assert_eq!(
            j["memoryInBytesByLabelName"],
            json!([{"name": "__name__", "value": 5}, {"name": "job", "value": 4}])
        );
        let one = tsdb_status_json(&status_from_series(&s, 1));
        assert_eq!(
            one["labelValueCountByLabelName"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(
            one["headStats"]["numLabelPairs"], 4,
            "totals ignore the limit"
        );
    }

    #[test]
    fn empty_head_times_as_prometheus() {
        let j = tsdb_status_json(&status_from_series(&[], 10));
        assert_eq!(j["headStats"]["minTime"], json!(i64::MAX));
        assert_eq!(j["headStats"]["maxTime"], json!(i64::MIN));
        assert_eq!(j["seriesCountByMetricName"], json!([]));
    }
}
