//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's shapes, from a [`RulesProvider`].

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};

use super::{Shared, read_form};
use crate::error::ApiError;
use crate::json;
use crate::params::format_rfc3339;
use crate::{AlertInfo, RuleGroupInfo, RuleInfo, RuleInfoKind};

const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// `strconv.FormatFloat(v, 'e', -1, 64)`, how Prometheus prints an alert's value.
pub(crate) fn format_e(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let s = format!("{v:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

fn map_json<'a>(it: impl Iterator<Item = (&'a str, &'a str)>) -> Json {
    Json::Object(
        it.map(|(k, v)| (k.to_string(), Json::String(v.to_string())))
            .collect::<Map<_, _>>(),
    )
}

fn time_json(ms: Option<i64>) -> Json {
    Json::String(
        ms.map(format_rfc3339)
            .unwrap_or_else(|| GO_ZERO_TIME.to_string()),
    )
}

fn alert_json(a: &AlertInfo) -> Json {
    let mut o = json!({
        "labels": map_json(a.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
        "annotations": map_json(a.annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        "state": a.state,
        "activeAt": format_rfc3339(a.active_at_ms),
        "value": format_e(a.value),
    });
    if let (Some(t), Some(m)) = (a.keep_firing_since_ms, o.as_object_mut()) {
        m.insert("keepFiringSince".into(), Json::String(format_rfc3339(t)));
    }
    o
}

fn rule_json(r: &RuleInfo, exclude_alerts: bool) -> Json {
    let labels = map_json(r.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let mut o = match &r.kind {
        RuleInfoKind::Alerting {
            duration_s,
            keep_firing_for_s,
            annotations,
            state,
            alerts,
        } => {
            let mut o = json!({
                "state": state,
                "name": r.name,
                "query": r.query,
                "duration": duration_s,
                "keepFiringFor": keep_firing_for_s,
                "labels": labels,
                "annotations": map_json(annotations.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
                "health": r.health,
                "evaluationTime": r.evaluation_seconds,
                "lastEvaluation": time_json(r.last_evaluation_ms),
                "type": "alerting",
            });
            if !exclude_alerts && let Some(m) = o.as_object_mut() {
                m.insert(
                    "alerts".into(),
                    Json::Array(alerts.iter().map(alert_json).collect()),
                );
            }
            o
        }
        RuleInfoKind::Recording => json!({
            "name": r.name,
            "query": r.query,
            "labels": labels,
            "health": r.health,
            "evaluationTime": r.evaluation_seconds,
            "lastEvaluation": time_json(r.last_evaluation_ms),
            "type": "recording",
        }),
    };
    if !r.last_error.is_empty()
        && let Some(m) = o.as_object_mut()
    {
        m.insert("lastError".into(), Json::String(r.last_error.clone()));
    }
    o
}

fn group_json(g: &RuleGroupInfo, rules: Vec<Json>) -> Json {
    json!({
        "name": g.name,
        "file": g.file,
        "rules": rules,
        "interval": g.interval_s,
        "limit": g.limit,
        "evaluationTime": g.evaluation_seconds,
        "lastEvaluation": time_json(g.last_evaluation_ms),
    })
}

async fn groups(s: &Shared) -> Result<Vec<RuleGroupInfo>, ApiError> {
    let provider = s.rules.clone();
    tokio::task::spawn_blocking(move || provider.rule_groups())
        .await
        .map_err(|e| ApiError::internal(format!("rules task failed: {e}")))
}

pub(crate) async fn rules(State(s): State<Shared>, req: Request) -> Response {
    let result: Result<Response, ApiError> = async {
        let form = read_form(&s, req).await?;
        let kind = form.value("type").to_ascii_lowercase();
        let (want_alert, want_record) = match kind.as_str() {
            "" => (true, true),
            "alert" => (true, false),
            "record" => (false, true),
            other => {
                return Err(ApiError::bad_data(format!("unsupported type {other:?}")));
            }
        };
        let names = form.values("rule_name[]");
        let mut group_names = form.values("rule_group[]");
        group_names.extend(form.values("group_name[]"));
        let files = form.values("file[]");
        let exclude_alerts = match form.value("exclude_alerts") {
            "" | "false" | "0" => false,
            "true" | "1" => true,
            other => {
                return Err(ApiError::bad_data(format!(
                    "invalid parameter \"exclude_alerts\": {other:?} is not a boolean"
                )));
            }
        };
        let mut out = Vec::new();
        for g in groups(&s).await? {
            if !group_names.is_empty() && !group_names.contains(&g.name.as_str()) {
                continue;
            }
            if !files.is_empty() && !files.contains(&g.file.as_str()) {
                continue;
            }
            let rules: Vec<Json> = g
                .rules
                .iter()
                .filter(|r| match r.kind {
                    RuleInfoKind::Alerting { .. } => want_alert,
                    RuleInfoKind::Recording => want_record,
                })
                .filter(|r| names.is_empty() || names.contains(&r.name.as_str()))
                .map(|r| rule_json(r, exclude_alerts))
                .collect();
            // Prometheus drops groups left empty by a filter.
            if rules.is_empty() && (!kind.is_empty() || !names.is_empty()) {
                continue;
            }
            out.push(group_json(&g, rules));
        }
        Ok(json::success_value(&json!({ "groups": out }), &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn alerts(State(s): State<Shared>) -> Response {
    let result: Result<Response, ApiError> = async {
        let mut alerts = Vec::new();
        for g in groups(&s).await? {
            for r in &g.rules {
                if let RuleInfoKind::Alerting { alerts: a, .. } = &r.kind {
                    alerts.extend(a.iter().map(alert_json));
                }
            }
        }
        Ok(json::success_value(&json!({ "alerts": alerts }), &[]))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_prometheus_prints_them() {
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(0.0523), "5.23e-02");
        assert_eq!(format_e(250000000.0), "2.5e+08");
        assert_eq!(format_e(0.0), "0e+00");
    }
}
