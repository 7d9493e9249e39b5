//! One rule's evaluation: recording rules turn a query result into series; alerting rules
//! keep per-label-set alerts moving inactive → pending → firing → resolved with `for` and
//! `keep_firing_for`, template their labels and annotations, and say which alerts to send.

use std::collections::{BTreeMap, HashMap};

use lookout_notifier::Alert;
use lookout_storage::{Labels, LabelsBuilder, METRIC_NAME, Timestamp};

use crate::file::{RuleKind, RuleSpec};
use crate::query::{InstantQuerier, QueryFailure, RuleSample};
use crate::template::{QuerySample, Template, TemplateData};

/// Resolved alerts are kept (and re-sent) this long (Prometheus: 15m).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// An alert of an alerting rule (one label set).
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_at: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub last_sent_at: Option<Timestamp>,
    pub valid_until: Timestamp,
    pub keep_firing_since: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// Templates of an alerting rule, parsed once.
#[derive(Clone, Debug)]
struct Templates {
    labels: Vec<(String, Template)>,
    annotations: Vec<(String, Template)>,
}

/// Context for template expansion.
pub struct EvalContext<'a> {
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
}

/// A rule with its evaluation state.
#[derive(Clone, Debug)]
pub struct Rule {
    pub spec: RuleSpec,
    templates: Option<Templates>,
    pub alerts: HashMap<Labels, ActiveAlert>,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
    /// Set once `ALERTS_FOR_STATE` has been consulted for this rule.
    pub restored: bool,
}

/// What an evaluation produced.
#[derive(Debug, Default)]
pub struct RuleOutput {
    /// Samples to write (recording results or `ALERTS`/`ALERTS_FOR_STATE`).
    pub series: Vec<(Labels, f64)>,
}

fn map_of(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

impl Rule {
    pub fn new(spec: RuleSpec) -> Rule {
        let templates = match &spec.kind {
            RuleKind::Alert(name) => {
                let tname = format!("__alert_{name}");
                // Templates were checked when the file was loaded; one that fails here
                // expands to its error text.
                let parse = |m: &BTreeMap<String, String>| {
                    m.iter()
                        .map(|(k, v)| {
                            let t = Template::parse(&tname, v).unwrap_or_else(|e| {
                                Template::literal(
                                    &tname,
                                    &format!("<error expanding template: {e}>"),
                                )
                            });
                            (k.clone(), t)
                        })
                        .collect()
                };
                Some(Templates {
                    labels: parse(&spec.labels),
                    annotations: parse(&spec.annotations),
                })
            }
            RuleKind::Record(_) => None,
        };
        Rule {
            spec,
            templates,
            alerts: HashMap::new(),
            health: Health::Unknown,
            last_error: None,
            last_evaluation: None,
            evaluation_seconds: 0.0,
            restored: false,
        }
    }

    pub fn name(&self) -> &str {
        self.spec.name()
    }

    pub fn is_alerting(&self) -> bool {
        matches!(self.spec.kind, RuleKind::Alert(_))
    }

    /// The most severe state of its alerts.
    pub fn state(&self) -> AlertState {
        self.alerts
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// Evaluates at `ts` with `querier`; `limit` 0 is unlimited.
    pub fn eval(
        &mut self,
        ts: Timestamp,
        querier: &dyn InstantQuerier,
        limit: usize,
        ctx: &EvalContext<'_>,
    ) -> Result<RuleOutput, String> {
        let started = std::time::Instant::now();
        let result = querier
            .instant(&self.spec.expr, ts)
            .map_err(|e| match e {
                QueryFailure::Timeout(m) => format!("query timed out: {m}"),
                other => other.to_string(),
            })
            .and_then(|samples| match self.spec.kind.clone() {
                RuleKind::Record(name) => self.eval_record(&name, samples, limit),
                RuleKind::Alert(name) => self.eval_alert(&name, ts, samples, limit, querier, ctx),
            });
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        self.last_evaluation = Some(ts);
        match &result {
            Ok(_) => {
                self.health = Health::Ok;
                self.last_error = None;
            }
            Err(e) => {
                self.health = Health::Err;
                self.last_error = Some(e.clone());
            }
        }
        result
    }

    fn eval_record(
        &mut self,
        name: &str,
        samples: Vec<RuleSample>,
        limit: usize,
    ) -> Result<RuleOutput, String> {
        let mut out = RuleOutput::default();
        let mut seen = std::collections::HashSet::new();
        for s in samples {
            let mut b = s.labels.builder();
            b.set(METRIC_NAME, name);
            for (k, v) in &self.spec.labels {
                if v.is_empty() {
                    b.del(k);
                } else {
                    b.set(k.clone(), v.clone());
                }
            }
            let l = b.into_labels();
            if !seen.insert(l.clone()) {
                return Err(
                    "vector contains metrics with the same labelset after applying rule labels"
                        .into(),
                );
            }
            out.series.push((l, s.v));
        }
        if limit > 0 && out.series.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                out.series.len()
            ));
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn eval_alert(
        &mut self,
        name: &str,
        ts: Timestamp,
        samples: Vec<RuleSample>,
        limit: usize,
        querier: &dyn InstantQuerier,
        ctx: &EvalContext<'_>,
    ) -> Result<RuleOutput, String> {
        let templates = self.templates.clone().unwrap_or(Templates {
            labels: Vec::new(),
            annotations: Vec::new(),
        });
        let query = |q: &str| -> Result<Vec<QuerySample>, String> {
            querier
                .instant(q, ts)
                .map(|v| {
                    v.into_iter()
                        .map(|s| QuerySample {
                            labels: map_of(&s.labels),
                            value: s.v,
                        })
                        .collect()
                })
                .map_err(|e| e.to_string())
        };
        let mut current: HashMap<Labels, (f64, BTreeMap<String, String>)> = HashMap::new();
        for s in samples {
            let base = s.labels.without_metric_name();
            let base_map = map_of(&base);
            let data = TemplateData {
                labels: &base_map,
                external_labels: ctx.external_labels,
                external_url: ctx.external_url,
                value: s.v,
                query: Some(&query),
            };
            let expand = |t: &Template| {
                t.expand(&data)
                    .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
            };
            let mut b: LabelsBuilder = base.builder();
            for (k, t) in &templates.labels {
                let v = expand(t);
                if v.is_empty() {
                    b.del(k);
                } else {
                    b.set(k.clone(), v);
                }
            }
            b.set("alertname", name);
            let labels = b.into_labels();
            let annotations: BTreeMap<String, String> = templates
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(t)))
                .collect();
            if current.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            current.insert(labels, (s.v, annotations));
        }

        for (labels, (value, annotations)) in &current {
            match self.alerts.get_mut(labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = *value;
                    a.annotations = annotations.clone();
                    a.keep_firing_since = None;
                }
                _ => {
                    self.alerts.insert(
                        labels.clone(),
                        ActiveAlert {
                            labels: labels.clone(),
                            annotations: annotations.clone(),
                            state: AlertState::Pending,
                            value: *value,
                            active_at: ts,
                            fired_at: None,
                            resolved_at: None,
                            last_sent_at: None,
                            valid_until: 0,
                            keep_firing_since: None,
                        },
                    );
                }
            }
        }

        let for_ms = self.spec.for_ms;
        let keep_ms = self.spec.keep_firing_for_ms;
        let mut remove = Vec::new();
        for (labels, a) in self.alerts.iter_mut() {
            if current.contains_key(labels) {
                if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
                    a.state = AlertState::Firing;
                    a.fired_at = Some(ts);
                }
                continue;
            }
            // Not in the result any more.
            if a.state == AlertState::Firing && keep_ms > 0 {
                let since = *a.keep_firing_since.get_or_insert(ts);
                if ts - since < keep_ms {
                    continue;
                }
            }
            match a.state {
                AlertState::Pending => remove.push(labels.clone()),
                AlertState::Firing => {
                    a.state = AlertState::Inactive;
                    a.resolved_at = Some(ts);
                    a.keep_firing_since = None;
                }
                AlertState::Inactive => {
                    if a.resolved_at
                        .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                    {
                        remove.push(labels.clone());
                    }
                }
            }
        }
        for l in remove {
            self.alerts.remove(&l);
        }

        let active = self
            .alerts
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .count();
        if limit > 0 && active > limit {
            self.alerts.clear();
            return Err(format!("exceeded limit of {limit} with {active} alerts"));
        }

        Ok(self.alert_series())
    }

    /// `ALERTS` and `ALERTS_FOR_STATE` samples for the current alert states.
    pub fn alert_series(&self) -> RuleOutput {
        let mut out = RuleOutput::default();
        for a in self.alerts.values() {
            if a.state == AlertState::Inactive {
                continue;
            }
            let mut b = a.labels.builder();
            b.set(METRIC_NAME, "ALERTS");
            b.set("alertstate", a.state.as_str());
            out.series.push((b.into_labels(), 1.0));
            let mut b = a.labels.builder();
            b.set(METRIC_NAME, "ALERTS_FOR_STATE");
            // Unix seconds like Prometheus, but with the milliseconds kept so that a
            // restored alert has exactly its old activeAt (Prometheus truncates on read).
            out.series
                .push((b.into_labels(), a.active_at as f64 / 1000.0));
        }
        out
    }

    /// Alerts due for (re)sending at `ts`, marked as sent; `interval` is the group's.
    pub fn alerts_to_send(
        &mut self,
        ts: Timestamp,
        resend_delay_ms: i64,
        interval_ms: i64,
        generator_url: &str,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.alerts.values_mut() {
            let due = match a.state {
                AlertState::Pending => false,
                _ if a
                    .resolved_at
                    .is_some_and(|r| a.last_sent_at.is_none_or(|s| r > s)) =>
                {
                    true
                }
                AlertState::Inactive => false,
                AlertState::Firing => a.last_sent_at.is_none_or(|s| s + resend_delay_ms <= ts),
            };
            if !due {
                continue;
            }
            a.last_sent_at = Some(ts);
            a.valid_until = ts + 4 * resend_delay_ms.max(interval_ms);
            out.push(Alert {
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: a.resolved_at.unwrap_or(a.valid_until),
                generator_url: generator_url.to_string(),
            });
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// Takes over alert state from the same rule of a previous configuration.
    pub fn copy_state_from(&mut self, old: &Rule) {
        self.alerts = old.alerts.clone();
        self.health = old.health;
        self.last_error = old.last_error.clone();
        self.last_evaluation = old.last_evaluation;
        self.evaluation_seconds = old.evaluation_seconds;
        self.restored = old.restored;
    }

    /// Applies a restored `ALERTS_FOR_STATE` value: `active_at_s` was the alert's activation
    /// time, `down_at` the last time it was recorded, `ts` now, `grace_ms` Prometheus's
    /// `--rules.alert.for-grace-period`. An alert that had fired keeps its activation time
    /// (it fires again at once); one with less than the grace period of `for` left fires
    /// the grace period after `ts`; otherwise the downtime does not count towards `for`.
    pub fn restore_alert(
        &mut self,
        labels: &Labels,
        active_at_s: f64,
        down_at: Timestamp,
        ts: Timestamp,
        grace_ms: i64,
    ) -> bool {
        let Some(a) = self.alerts.get_mut(labels) else {
            return false;
        };
        if a.state == AlertState::Inactive || !active_at_s.is_finite() {
            return false;
        }
        let restored = (active_at_s * 1000.0).round() as i64;
        let for_ms = self.spec.for_ms;
        // Prometheus's rules: an alert that had fired keeps its start; one that had less
        // than the grace period to go gets exactly the grace period; otherwise the time the
        // server was down does not count towards `for`.
        let remaining = for_ms - (down_at - restored);
        let active_at = if remaining <= 0 {
            restored
        } else if remaining < grace_ms {
            ts + grace_ms - for_ms
        } else {
            restored + (ts - down_at).max(0)
        };
        a.active_at = active_at.min(ts);
        if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
            a.state = AlertState::Firing;
            a.fired_at = Some(ts);
        }
        true
    }
}
