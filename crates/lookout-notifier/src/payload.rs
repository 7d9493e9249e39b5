//! JSON bodies: Alertmanager API v2 `postableAlerts` and the webhook payload (version "4"),
//! plus Alertmanager's label-set fingerprint.

use std::collections::BTreeMap;

use lookout_storage::{Labels, Timestamp};
use serde::Serialize;

use crate::Alert;

/// Go's zero time, which Alertmanager's webhook shows as `endsAt` of firing alerts.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 (UTC, millisecond precision without trailing zeros).
pub fn rfc3339(ms: Timestamp) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Alertmanager's `model.LabelSet.Fingerprint`: FNV-1a 64 over sorted names and values,
/// each followed by the byte 0xff.
pub fn fingerprint(labels: &Labels) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut add = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
    };
    for l in labels.iter() {
        add(l.name.as_bytes());
        add(&[0xff]);
        add(l.value.as_bytes());
        add(&[0xff]);
    }
    h
}

fn label_map(l: &Labels) -> BTreeMap<&str, &str> {
    l.iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect()
}

#[derive(Serialize)]
struct PostableAlert<'a> {
    labels: BTreeMap<&'a str, &'a str>,
    annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "startsAt", skip_serializing_if = "Option::is_none")]
    starts_at: Option<String>,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none")]
    ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// The body of `POST /api/v2/alerts`.
pub fn alertmanager_v2(alerts: &[Alert]) -> String {
    let v: Vec<PostableAlert<'_>> = alerts
        .iter()
        .map(|a| PostableAlert {
            labels: label_map(&a.labels),
            annotations: &a.annotations,
            starts_at: (a.starts_at != 0).then(|| rfc3339(a.starts_at)),
            ends_at: (a.ends_at != 0).then(|| rfc3339(a.ends_at)),
            generator_url: &a.generator_url,
        })
        .collect();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

#[derive(Serialize)]
struct WebhookAlert<'a> {
    status: &'static str,
    labels: BTreeMap<&'a str, &'a str>,
    annotations: &'a BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
    fingerprint: String,
}

#[derive(Serialize)]
struct WebhookMessage<'a> {
    version: &'static str,
    #[serde(rename = "groupKey")]
    group_key: String,
    #[serde(rename = "truncatedAlerts")]
    truncated_alerts: u64,
    status: &'static str,
    receiver: &'static str,
    #[serde(rename = "groupLabels")]
    group_labels: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "commonLabels")]
    common_labels: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "commonAnnotations")]
    common_annotations: BTreeMap<&'a str, &'a str>,
    #[serde(rename = "externalURL")]
    external_url: &'a str,
    alerts: Vec<WebhookAlert<'a>>,
}

/// Webhook bodies for `alerts`, one per `alertname` (Alertmanager's default grouping),
/// alerts sorted by labels. `now` decides firing vs resolved.
pub fn webhook_groups(alerts: &[Alert], receiver_url: &str, now: Timestamp) -> Vec<String> {
    let _ = receiver_url;
    let mut groups: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in alerts {
        groups.entry(a.name()).or_default().push(a);
    }
    let mut out = Vec::new();
    for (name, mut members) in groups {
        members.sort_by(|a, b| a.labels.cmp(&b.labels));
        let any_firing = members.iter().any(|a| !a.is_resolved_at(now));
        let common_labels = common(members.iter().map(|a| label_map(&a.labels)));
        let common_annotations = common(members.iter().map(|a| {
            a.annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<BTreeMap<_, _>>()
        }));
        let external_url = members
            .first()
            .map(|a| external_url_of(&a.generator_url))
            .unwrap_or("");
        let msg = WebhookMessage {
            version: "4",
            group_key: format!("{{}}:{{alertname=\"{}\"}}", name.replace('"', "\\\"")),
            truncated_alerts: 0,
            status: if any_firing { "firing" } else { "resolved" },
            receiver: "lookout",
            group_labels: BTreeMap::from([("alertname", name)]),
            common_labels,
            common_annotations,
            external_url,
            alerts: members
                .iter()
                .map(|a| {
                    let resolved = a.is_resolved_at(now);
                    WebhookAlert {
                        status: if resolved { "resolved" } else { "firing" },
                        labels: label_map(&a.labels),
                        annotations: &a.annotations,
                        starts_at: rfc3339(a.starts_at),
                        ends_at: if resolved {
                            rfc3339(a.ends_at)
                        } else {
                            ZERO_TIME.to_string()
                        },
                        generator_url: &a.generator_url,
                        fingerprint: format!("{:016x}", fingerprint(&a.labels)),
                    }
                })
                .collect(),
        };
        if let Ok(s) = serde_json::to_string(&msg) {
            out.push(s);
        }
    }
    out
}

/// `http://host:9090/prefix` of `http://host:9090/prefix/graph?g0.expr=...`.
fn external_url_of(generator_url: &str) -> &str {
    match generator_url.find("/graph?") {
        Some(i) => &generator_url[..i],
        None => generator_url,
    }
}

fn common<'a>(
    mut sets: impl Iterator<Item = BTreeMap<&'a str, &'a str>>,
) -> BTreeMap<&'a str, &'a str> {
    let Some(mut acc) = sets.next() else {
        return BTreeMap::new();
    };
    for s in sets {
        acc.retain(|k, v| s.get(k) == Some(v));
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, inst: &str, ends: Timestamp) -> Alert {
        Alert {
            labels: Labels::from_pairs([
                ("alertname", name),
                ("instance", inst),
                ("severity", "critical"),
            ]),
            annotations: BTreeMap::from([("summary".to_string(), format!("{inst} down"))]),
            starts_at: 1_700_000_000_000,
            ends_at: ends,
            generator_url: "http://lookout:9090/graph?g0.expr=up&g0.tab=1".into(),
        }
    }

    #[test]
    fn fingerprint_matches_alertmanager() {
        // model.LabelSet{}.Fingerprint() is the FNV-1a offset basis.
        assert_eq!(fingerprint(&Labels::EMPTY), 0xcbf2_9ce4_8422_2325);
        let a = fingerprint(&Labels::from_pairs([("a", "b")]));
        let b = fingerprint(&Labels::from_pairs([("a", "c")]));
        assert_ne!(a, b);
    }

    #[test]
    fn v2_body() {
        let body = alertmanager_v2(&[alert("Down", "x:1", 1_700_000_060_000)]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v[0]["labels"]["alertname"], "Down");
        assert_eq!(v[0]["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(v[0]["endsAt"], "2023-11-14T22:14:20Z");
        assert_eq!(v[0]["annotations"]["summary"], "x:1 down");
        assert_eq!(
            v[0]["generatorURL"],
            "http://lookout:9090/graph?g0.expr=up&g0.tab=1"
        );
    }

    #[test]
    fn webhook_body() {
        let now = 1_700_000_100_000;
        let bodies = webhook_groups(
            &[
                alert("Down", "b:1", now + 60_000),
                alert("Down", "a:1", now - 1000),
                alert("High", "c:1", now + 1),
            ],
            "http://hook",
            now,
        );
        assert_eq!(bodies.len(), 2);
        let v: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["groupKey"], "{}:{alertname=\"Down\"}");
        assert_eq!(v["groupLabels"]["alertname"], "Down");
        assert_eq!(v["commonLabels"]["severity"], "critical");
        assert!(v["commonLabels"].get("instance").is_none());
        assert!(v["commonAnnotations"].get("summary").is_none());
        assert_eq!(v["externalURL"], "http://lookout:9090");
        assert_eq!(v["alerts"][0]["labels"]["instance"], "a:1");
        assert_eq!(v["alerts"][0]["status"], "resolved");
        assert_eq!(v["alerts"][1]["status"], "firing");
        assert_eq!(v["alerts"][1]["endsAt"], ZERO_TIME);
        assert_eq!(v["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_250), "2023-11-14T22:13:20.25Z");
    }
}
