//! A rule group: its rules evaluated in order at one timestamp, results written through
//! [`Appendable`] in one batch (with staleness markers for series a rule stopped producing),
//! alert state restored from `ALERTS_FOR_STATE` after a restart, and due alerts handed to an
//! [`AlertSink`].

use std::collections::{BTreeMap, HashSet};

use lookout_notifier::AlertSink;
use lookout_storage::{
    Appendable, Labels, METRIC_NAME, Matcher, Queryable, STALE_NAN, SelectHints, Timestamp,
    is_stale_nan,
};
use tracing::{debug, warn};

use crate::file::{GroupSpec, Language, RuleKind};
use crate::query::Queriers;
use crate::rule::{EvalContext, Rule};

/// Everything a group evaluation needs from outside.
pub struct EvalEnv<'a> {
    pub queriers: &'a Queriers,
    pub appendable: &'a dyn Appendable,
    /// Where `ALERTS_FOR_STATE` is read back from for restoring (normally the same store).
    pub restore_from: Option<&'a dyn Queryable>,
    /// How far back restoring looks (Prometheus `--rules.alert.for-outage-tolerance`: 1h).
    pub outage_tolerance_ms: i64,
    /// Prometheus `--rules.alert.for-grace-period` (10m): rules with a shorter `for` are not
    /// restored, and a restored alert waits at least this long before firing again.
    pub for_grace_period_ms: i64,
    pub sink: Option<&'a dyn AlertSink>,
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    /// Prometheus `--rules.alert.resend-delay`: 1m.
    pub resend_delay_ms: i64,
}

/// Outcome of one group evaluation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GroupEvalStats {
    pub rules_evaluated: usize,
    pub rules_failed: usize,
    pub samples_written: usize,
    pub samples_rejected: usize,
    pub alerts_sent: usize,
}

pub struct Group {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub query_offset_ms: i64,
    pub limit: usize,
    pub language: Language,
    pub rules: Vec<Rule>,
    last_series: Vec<HashSet<Labels>>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
    /// Alert state still to be restored from storage (set for groups loaded at start).
    pub should_restore: bool,
}

impl Group {
    /// A group from `spec`; `default_interval_ms`/`default_offset_ms` come from `global`.
    pub fn new(spec: &GroupSpec, default_interval_ms: i64, default_offset_ms: i64) -> Group {
        Group {
            name: spec.name.clone(),
            file: spec.file.display().to_string(),
            interval_ms: spec.interval_ms.unwrap_or(default_interval_ms).max(1),
            query_offset_ms: spec.query_offset_ms.unwrap_or(default_offset_ms).max(0),
            limit: spec.limit,
            language: spec.language,
            rules: spec.rules.iter().cloned().map(Rule::new).collect(),
            last_series: vec![HashSet::new(); spec.rules.len()],
            last_evaluation: None,
            evaluation_seconds: 0.0,
            should_restore: false,
        }
    }

    /// `file;name`, Prometheus's group key (the `rule_group` metric label).
    pub fn key(&self) -> String {
        format!("{};{}", self.file, self.name)
    }

    /// Same rules and settings (then a reload keeps the running group untouched).
    pub fn same_definition(&self, other: &Group) -> bool {
        self.interval_ms == other.interval_ms
            && self.query_offset_ms == other.query_offset_ms
            && self.limit == other.limit
            && self.language == other.language
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.spec == b.spec)
    }

    /// Takes over the alert state and written series of same-named rules of `old`.
    pub fn copy_state_from(&mut self, old: &Group) {
        for (i, r) in self.rules.iter_mut().enumerate() {
            let found = old.rules.iter().position(|o| {
                o.spec.kind == r.spec.kind
                    && (o.spec.labels == r.spec.labels || matches!(o.spec.kind, RuleKind::Alert(_)))
            });
            if let Some(j) = found {
                r.copy_state_from(&old.rules[j]);
                if let Some(s) = old.last_series.get(j) {
                    self.last_series[i] = s.clone();
                }
            }
        }
        self.last_evaluation = old.last_evaluation;
        self.evaluation_seconds = old.evaluation_seconds;
        self.should_restore = old.should_restore;
    }

    /// Evaluates every rule at `ts` (the query offset is subtracted here).
    pub fn eval(&mut self, ts: Timestamp, env: &EvalEnv<'_>) -> GroupEvalStats {
        let started = std::time::Instant::now();
        let ts = ts - self.query_offset_ms;
        let mut stats = GroupEvalStats::default();
        let ctx = EvalContext {
            external_labels: env.external_labels,
            external_url: env.external_url,
        };
        let mut app = env.appendable.appender();
        let mut to_send = Vec::new();
        let querier = env.queriers.for_language(self.language);
        for (i, rule) in self.rules.iter_mut().enumerate() {
            stats.rules_evaluated += 1;
            let out = match &querier {
                Ok(q) => rule.eval(ts, *q, self.limit, &ctx),
                Err(e) => {
                    let msg = e.to_string();
                    rule.health = crate::rule::Health::Err;
                    rule.last_error = Some(msg.clone());
                    rule.last_evaluation = Some(ts);
                    Err(msg)
                }
            };
            let mut out = match out {
                Ok(o) => o,
                Err(e) => {
                    stats.rules_failed += 1;
                    debug!(group = %self.name, rule = %rule.name(), error = %e, "rule evaluation failed");
                    // Prometheus keeps the previous series (no staleness) when a rule fails.
                    continue;
                }
            };
            if self.should_restore
                && rule.is_alerting()
                && !rule.restored
                && let Some(q) = env.restore_from
            {
                restore_rule(
                    rule,
                    q,
                    ts,
                    env.outage_tolerance_ms,
                    env.for_grace_period_ms,
                );
                out = rule.alert_series();
            }
            let mut now_series = HashSet::with_capacity(out.series.len());
            for (labels, v) in out.series {
                match app.append(None, &labels, ts, v) {
                    Ok(_) => stats.samples_written += 1,
                    Err(e) => {
                        stats.samples_rejected += 1;
                        debug!(series = %labels, error = %e, "rule result rejected by storage");
                    }
                }
                now_series.insert(labels);
            }
            for gone in self.last_series[i].difference(&now_series) {
                if app.append(None, gone, ts, STALE_NAN).is_ok() {
                    stats.samples_written += 1;
                }
            }
            self.last_series[i] = now_series;
            if rule.is_alerting() {
                let url = generator_url(env.external_url, &rule.spec.expr);
                to_send.extend(rule.alerts_to_send(
                    ts,
                    env.resend_delay_ms,
                    self.interval_ms,
                    &url,
                ));
            }
        }
        if self.should_restore {
            self.should_restore = false;
        }
        if let Err(e) = app.commit() {
            warn!(group = %self.name, error = %e, "writing rule results failed");
            stats.samples_rejected += stats.samples_written;
            stats.samples_written = 0;
        }
        if let Some(sink) = env.sink
            && !to_send.is_empty()
        {
            stats.alerts_sent = to_send.len();
            sink.send(to_send);
        }
        self.last_evaluation = Some(ts);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        stats
    }

    /// Writes staleness markers for every series this group produced (a removed group).
    pub fn mark_stale(&mut self, ts: Timestamp, appendable: &dyn Appendable) {
        let mut app = appendable.appender();
        for set in &mut self.last_series {
            for l in set.drain() {
                let _ = app.append(None, &l, ts, STALE_NAN);
            }
        }
        if let Err(e) = app.commit() {
            warn!(group = %self.name, error = %e, "writing staleness markers failed");
        }
    }
}

/// `<external_url>/graph?g0.expr=<expr>&g0.tab=1`, as Prometheus links alerts.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let mut enc = String::new();
    for b in expr.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                enc.push(b as char)
            }
            b' ' => enc.push('+'),
            b => enc.push_str(&format!("%{b:02X}")),
        }
    }
    format!(
        "{}/graph?g0.expr={enc}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

/// Reads `ALERTS_FOR_STATE{alertname=...}` of the last `tolerance` before `ts` and applies
/// the newest value of each series to the matching active alert (Prometheus's
/// `RestoreForState`, except that a restored alert that had fired is firing again in this
/// very evaluation rather than one evaluation later).
fn restore_rule(
    rule: &mut Rule,
    q: &dyn Queryable,
    ts: Timestamp,
    tolerance_ms: i64,
    grace_ms: i64,
) {
    rule.restored = true;
    // As Prometheus: a `for` shorter than the grace period is simply waited out again.
    if rule.spec.for_ms <= 0 || rule.spec.for_ms < grace_ms {
        return;
    }
    let matchers = [
        Matcher::equal(METRIC_NAME, "ALERTS_FOR_STATE"),
        Matcher::equal("alertname", rule.name()),
    ];
    let hints = SelectHints::range(ts - tolerance_ms, ts - 1);
    let series = match q.select(&matchers, &hints) {
        Ok(s) => s,
        Err(e) => {
            warn!(rule = %rule.name(), error = %e, "reading ALERTS_FOR_STATE failed; alert state not restored");
            return;
        }
    };
    let mut restored = 0;
    for s in series {
        let Some(last) = s.samples.iter().rev().find(|p| !is_stale_nan(p.v)) else {
            continue;
        };
        // A staleness marker after the last value: the alert had resolved.
        if s.samples.last().is_some_and(|p| is_stale_nan(p.v)) {
            continue;
        }
        let labels = s.labels.without_metric_name();
        if rule.restore_alert(&labels, last.v, last.t, ts, grace_ms) {
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::info!(rule = %rule.name(), alerts = restored, "alert state restored");
    }
}
