//! Evaluation semantics over real stores: pending → firing → resolved with `for` and
//! `keep_firing_for`, `ALERTS`/`ALERTS_FOR_STATE` and staleness, recording rules, limits,
//! failing queries, state restored after a restart, resend/`EndsAt` rules, LogQL groups.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lookout_notifier::{Alert, AlertSink};
use lookout_rules::group::{EvalEnv, Group};
use lookout_rules::{
    AlertState, InstantQuerier, Language, LogqlQuerier, PromqlQuerier, Queriers, QueryFailure,
    RuleSample,
};
use lookout_storage::logs::{LogEntry, MemLogStore};
use lookout_storage::memory::MemStorage;
use lookout_storage::{Appendable, Labels, Matcher, Queryable, SelectHints, is_stale_nan};
use parking_lot::Mutex;

const S: i64 = 1000;
const M: i64 = 60 * S;

fn group(text: &str, lang: Language) -> Group {
    let f = lookout_rules::file::parse_file(Path::new("t.yml"), text, lang).unwrap();
    Group::new(&f.groups[0], 15 * S, 0)
}

fn put(st: &MemStorage, labels: &[(&str, &str)], t: i64, v: f64) {
    let mut a = st.appender();
    a.append(None, &Labels::from_pairs(labels.iter().copied()), t, v)
        .unwrap();
    a.commit().unwrap();
}

#[derive(Default)]
struct Collect(Mutex<Vec<(i64, Alert)>>, Mutex<i64>);

impl AlertSink for Collect {
    fn send(&self, alerts: Vec<Alert>) {
        let now = *self.1.lock();
        self.0.lock().extend(alerts.into_iter().map(|a| (now, a)));
    }
}

struct Env {
    st: Arc<MemStorage>,
    queriers: Queriers,
    sink: Collect,
    ext: BTreeMap<String, String>,
}

impl Env {
    fn new() -> Env {
        let st = Arc::new(MemStorage::new());
        let queriers = Queriers {
            promql: Some(Arc::new(PromqlQuerier {
                engine: lookout_promql::Engine::default(),
                storage: st.clone(),
            })),
            logql: None,
        };
        Env {
            st,
            queriers,
            sink: Collect::default(),
            ext: BTreeMap::from([("project".to_string(), "wealist".to_string())]),
        }
    }

    fn eval(&self, g: &mut Group, ts: i64, restore: bool) {
        self.eval_grace(g, ts, restore, 0);
    }

    fn eval_grace(&self, g: &mut Group, ts: i64, restore: bool, grace_ms: i64) {
        *self.sink.1.lock() = ts;
        let env = EvalEnv {
            queriers: &self.queriers,
            appendable: self.st.as_ref(),
            restore_from: if restore {
                Some(self.st.as_ref())
            } else {
                None
            },
            outage_tolerance_ms: 60 * M,
            for_grace_period_ms: grace_ms,
            sink: Some(&self.sink),
            external_labels: &self.ext,
            external_url: "http://lookout:9090",
            resend_delay_ms: M,
        };
        g.eval(ts, &env);
    }

    fn last(&self, matchers: &[Matcher], ts: i64) -> Vec<(Labels, f64)> {
        let s = self
            .st
            .select(matchers, &SelectHints::range(ts, ts))
            .unwrap();
        s.into_iter()
            .filter_map(|s| s.samples.last().map(|p| (s.labels, p.v)))
            .collect()
    }
}

const DOWN: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 1m
        keep_firing_for: 30s
        labels: { severity: critical }
        annotations:
          summary: "{{ $labels.job }} down ({{ $externalLabels.project }}) value={{ $value }}"
"#;

#[test]
fn pending_firing_keep_firing_resolved() {
    let e = Env::new();
    let mut g = group(DOWN, Language::Promql);
    let up = [("__name__", "up"), ("job", "api")];
    // up = 0 from 0s to 90s, then 1.
    for i in 0..=6 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    for i in 7..=20 {
        put(&e.st, &up, i * 15 * S, 1.0);
    }
    let state = |g: &Group| g.rules[0].state();

    e.eval(&mut g, 0, false);
    assert_eq!(state(&g), AlertState::Pending);
    let alerts = e.last(&[Matcher::equal("__name__", "ALERTS")], 0);
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].0.get("alertstate"), Some("pending"));
    assert_eq!(alerts[0].0.get("severity"), Some("critical"));
    let fs = e.last(&[Matcher::equal("__name__", "ALERTS_FOR_STATE")], 0);
    assert_eq!(
        fs,
        vec![(
            Labels::from_pairs([
                ("__name__", "ALERTS_FOR_STATE"),
                ("alertname", "Down"),
                ("job", "api"),
                ("severity", "critical")
            ]),
            0.0
        )]
    );
    assert!(e.sink.0.lock().is_empty(), "pending alerts are not sent");

    e.eval(&mut g, 45 * S, false);
    assert_eq!(state(&g), AlertState::Pending);
    e.eval(&mut g, 60 * S, false);
    assert_eq!(state(&g), AlertState::Firing);
    {
        let sent = e.sink.0.lock();
        assert_eq!(sent.len(), 1);
        let a = &sent[0].1;
        assert_eq!(a.labels.get("alertname"), Some("Down"));
        assert_eq!(a.annotations["summary"], "api down (wealist) value=0");
        assert_eq!(a.starts_at, 60 * S);
        // EndsAt while firing: 4 × max(resend delay, interval) ahead.
        assert_eq!(a.ends_at, 60 * S + 4 * M);
        assert!(
            a.generator_url
                .starts_with("http://lookout:9090/graph?g0.expr=up+%3D%3D+0"),
            "{}",
            a.generator_url
        );
    }
    // The pending series went stale when the alert fired.
    let pend =
        e.st.select(
            &[Matcher::equal("alertstate", "pending")],
            &SelectHints::range(60 * S, 60 * S),
        )
        .unwrap();
    assert!(is_stale_nan(pend[0].samples[0].v));

    // Not resent within the resend delay; resent after it.
    e.eval(&mut g, 90 * S, false);
    assert_eq!(e.sink.0.lock().len(), 1);

    // up = 1 from 105s: keep_firing_for 30s holds it until 135s.
    e.eval(&mut g, 105 * S, false);
    assert_eq!(state(&g), AlertState::Firing);
    e.eval(&mut g, 120 * S, false);
    assert_eq!(state(&g), AlertState::Firing);
    assert_eq!(e.sink.0.lock().len(), 2, "resent after 1m");
    e.eval(&mut g, 135 * S, false);
    assert_eq!(state(&g), AlertState::Inactive);
    {
        let sent = e.sink.0.lock();
        let (_, last) = sent.last().unwrap();
        assert_eq!(
            last.ends_at,
            135 * S,
            "resolved notification carries the resolve time"
        );
        assert!(last.is_resolved_at(135 * S));
    }
    let firing =
        e.st.select(
            &[Matcher::equal("__name__", "ALERTS")],
            &SelectHints::range(135 * S, 135 * S),
        )
        .unwrap();
    assert!(firing.iter().all(|s| is_stale_nan(s.samples[0].v)));
    // Resolved alerts are re-sent for a while, then forgotten.
    e.eval(&mut g, 200 * S, false);
    assert!(g.rules[0].alerts.len() == 1);
    e.eval(&mut g, 135 * S + 16 * M, false);
    assert!(g.rules[0].alerts.is_empty());
}

#[test]
fn restart_keeps_firing_state() {
    let e = Env::new();
    let up = [("__name__", "up"), ("job", "api")];
    for i in 0..=80 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    let mut g = group(DOWN, Language::Promql);
    for i in 0..=40 {
        e.eval(&mut g, i * 15 * S, false);
    }
    assert_eq!(g.rules[0].state(), AlertState::Firing); // firing since 1m, for 9 minutes
    // "Restart": a fresh group 2 minutes later restores from ALERTS_FOR_STATE.
    let mut g2 = group(DOWN, Language::Promql);
    g2.should_restore = true;
    e.eval(&mut g2, 12 * M, true);
    assert_eq!(
        g2.rules[0].state(),
        AlertState::Firing,
        "does not start `for` again"
    );
    let a = g2.rules[0].alerts.values().next().unwrap();
    assert_eq!(a.active_at, 0);

    // Without restoring, the same situation starts over as pending.
    let mut g3 = group(DOWN, Language::Promql);
    e.eval(&mut g3, 12 * M + 15 * S, false);
    assert_eq!(g3.rules[0].state(), AlertState::Pending);
}

#[test]
fn restart_while_pending_does_not_count_downtime() {
    let e = Env::new();
    let up = [("__name__", "up"), ("job", "api")];
    for i in 0..=40 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    let text = DOWN.replace("for: 1m", "for: 5m");
    let mut g = group(&text, Language::Promql);
    for i in 0..=8 {
        e.eval(&mut g, i * 15 * S, false); // pending for 2m
    }
    let mut g2 = group(&text, Language::Promql);
    g2.should_restore = true;
    e.eval(&mut g2, 4 * M, true); // down 2m (from 2m to 4m)
    let a = g2.rules[0].alerts.values().next().unwrap();
    assert_eq!(a.state, AlertState::Pending);
    assert_eq!(
        a.active_at,
        2 * M,
        "2m pending before the restart count, the 2m downtime does not"
    );
    e.eval(&mut g2, 5 * M, true);
    assert_eq!(g2.rules[0].state(), AlertState::Pending);
    e.eval(&mut g2, 7 * M, true);
    assert_eq!(g2.rules[0].state(), AlertState::Firing);
}

/// Prometheus's `--rules.alert.for-grace-period`: a `for` shorter than the grace period is not
/// restored at all; an alert with less than the grace period left gets exactly the grace
/// period; one that had fired keeps firing.
#[test]
fn restore_honours_the_for_grace_period() {
    let e = Env::new();
    let up = [("__name__", "up"), ("job", "api")];
    for i in 0..=80 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    let text = DOWN.replace("for: 1m", "for: 10m");
    let mut g = group(&text, Language::Promql);
    for i in 0..=36 {
        e.eval(&mut g, i * 15 * S, false); // pending from 0 to 9m
    }
    assert_eq!(g.rules[0].state(), AlertState::Pending);
    // Restart at 12m with a 5m grace period: 1m of `for` was left (< 5m), so the alert
    // fires 5m after the restart: activeAt = 12m + 5m - 10m.
    let mut g2 = group(&text, Language::Promql);
    g2.should_restore = true;
    e.eval_grace(&mut g2, 12 * M, true, 5 * M);
    let a = g2.rules[0].alerts.values().next().unwrap();
    assert_eq!((a.state, a.active_at), (AlertState::Pending, 7 * M));
    e.eval_grace(&mut g2, 16 * M + 45 * S, true, 5 * M);
    assert_eq!(g2.rules[0].state(), AlertState::Pending);
    e.eval_grace(&mut g2, 17 * M, true, 5 * M);
    assert_eq!(g2.rules[0].state(), AlertState::Firing);

    // `for` (10m) shorter than the grace period (15m): nothing is restored.
    let mut g3 = group(&text, Language::Promql);
    g3.should_restore = true;
    e.eval_grace(&mut g3, 12 * M, true, 15 * M);
    let a = g3.rules[0].alerts.values().next().unwrap();
    assert_eq!((a.state, a.active_at), (AlertState::Pending, 12 * M));

    // An alert that had fired before the restart fires again at once whatever the grace.
    let e = Env::new();
    for i in 0..=80 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    let mut g = group(&text, Language::Promql);
    for i in 0..=44 {
        e.eval(&mut g, i * 15 * S, false); // firing from 10m
    }
    assert_eq!(g.rules[0].state(), AlertState::Firing);
    let mut g4 = group(&text, Language::Promql);
    g4.should_restore = true;
    e.eval_grace(&mut g4, 14 * M, true, 5 * M);
    let a = g4.rules[0].alerts.values().next().unwrap();
    assert_eq!((a.state, a.active_at), (AlertState::Firing, 0));
}

#[test]
fn recording_rules_labels_limits_and_errors() {
    let e = Env::new();
    for (job, v) in [("a", 1.0), ("b", 2.0)] {
        put(&e.st, &[("__name__", "x"), ("job", job)], 0, v);
    }
    let mut g = group(
        "groups:\n- name: r\n  labels: { team: core }\n  rules:\n  - record: job:x:sum\n    expr: sum by (job) (x)\n    labels: { env: prod }\n  - record: bad\n    expr: x + on() group_left x\n",
        Language::Promql,
    );
    e.eval(&mut g, 15 * S, false);
    let got = e.last(&[Matcher::equal("__name__", "job:x:sum")], 15 * S);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0.get("team"), Some("core"));
    assert_eq!(got[0].0.get("env"), Some("prod"));
    assert_eq!(g.rules[0].health.as_str(), "ok");
    assert_eq!(g.rules[1].health.as_str(), "err");
    assert!(g.rules[1].last_error.is_some());

    let mut limited = group(
        "groups:\n- name: r\n  limit: 1\n  rules:\n  - record: y\n    expr: x\n",
        Language::Promql,
    );
    e.eval(&mut limited, 15 * S, false);
    assert_eq!(
        limited.rules[0].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 series")
    );
}

struct Slow;
impl InstantQuerier for Slow {
    fn instant(&self, _: &str, _: i64) -> Result<Vec<RuleSample>, QueryFailure> {
        Err(QueryFailure::Timeout(
            "query timed out in expression evaluation".into(),
        ))
    }
}

/// Times out on expressions mentioning `slow`, answers the others from `inner`.
struct SlowOnly(Arc<dyn InstantQuerier>);
impl InstantQuerier for SlowOnly {
    fn instant(&self, expr: &str, t: i64) -> Result<Vec<RuleSample>, QueryFailure> {
        if expr.contains("slow") {
            Slow.instant(expr, t)
        } else {
            self.0.instant(expr, t)
        }
    }
}

#[test]
fn one_timed_out_rule_does_not_stop_the_others() {
    let mut e = Env::new();
    let inner = e.queriers.promql.clone().unwrap();
    e.queriers.promql = Some(Arc::new(SlowOnly(inner)));
    let up = [("__name__", "up"), ("job", "api")];
    for i in 0..=8 {
        put(&e.st, &up, i * 15 * S, 0.0);
    }
    let mut g = group(
        "groups:\n- name: r\n  rules:\n  - record: a\n    expr: sum(slow_metric)\n  - alert: Down\n    expr: up == 0\n",
        Language::Promql,
    );
    for i in 0..=2 {
        e.eval(&mut g, i * 15 * S, false);
        assert_eq!(g.rules[0].health.as_str(), "err");
        assert_eq!(g.rules[0].last_evaluation, Some(i * 15 * S));
        assert!(
            g.rules[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("timed out")),
            "{:?}",
            g.rules[0].last_error
        );
        // The rule after it is evaluated at the same timestamp and works.
        assert_eq!(
            g.rules[1].health.as_str(),
            "ok",
            "{:?}",
            g.rules[1].last_error
        );
        assert_eq!(g.rules[1].last_evaluation, Some(i * 15 * S));
        assert_eq!(g.rules[1].state(), AlertState::Firing);
    }
    let alerts = e.last(&[Matcher::equal("__name__", "ALERTS")], 30 * S);
    assert_eq!(alerts.len(), 1);
}

#[test]
fn a_timed_out_query_marks_the_rule_and_the_group_goes_on() {
    let mut e = Env::new();
    e.queriers.promql = Some(Arc::new(Slow));
    let mut g = group(
        "groups:\n- name: r\n  rules:\n  - record: a\n    expr: up\n  - alert: B\n    expr: up\n",
        Language::Promql,
    );
    e.eval(&mut g, 0, false);
    for r in &g.rules {
        assert_eq!(r.health.as_str(), "err");
        assert!(
            r.last_error.as_deref().unwrap_or("").contains("timed out"),
            "{:?}",
            r.last_error
        );
        assert_eq!(r.last_evaluation, Some(0));
    }
}

#[test]
fn logql_alerts_on_error_lines() {
    let logs = Arc::new(MemLogStore::new());
    let labels = Labels::from_pairs([("service", "board"), ("job", "docker")]);
    // 30 error lines in the minute before t=120s.
    for i in 0..30i64 {
        logs.push(
            &labels,
            LogEntry::new(
                (90 * S + i * S) * 1_000_000,
                format!("level=error msg=\"db timeout {i}\""),
            ),
        );
        logs.push(
            &labels,
            LogEntry::new((90 * S + i * S) * 1_000_000 + 1, "level=info msg=ok"),
        );
    }
    let mut e = Env::new();
    e.queriers.logql = Some(Arc::new(LogqlQuerier {
        engine: lookout_logql::LogqlEngine::default(),
        store: logs,
    }));
    let mut g = group(
        r#"
groups:
  - name: logs
    query_language: logql
    rules:
      - alert: ErrorLogBurst
        expr: sum by (service) (count_over_time({job="docker"} |= "level=error" [1m])) > 10
        labels: { severity: warning }
        annotations: { summary: "{{ $labels.service }}: {{ $value }} error lines/min" }
      - record: service:log_errors:count1m
        expr: sum by (service) (count_over_time({job="docker"} |= "level=error" [1m]))
"#,
        Language::Promql,
    );
    e.eval(&mut g, 120 * S, false);
    assert_eq!(
        g.rules[0].health.as_str(),
        "ok",
        "{:?}",
        g.rules[0].last_error
    );
    assert_eq!(g.rules[0].state(), AlertState::Firing);
    let a = g.rules[0].alerts.values().next().unwrap();
    assert_eq!(a.annotations["summary"], "board: 30 error lines/min");
    let rec = e.last(
        &[Matcher::equal("__name__", "service:log_errors:count1m")],
        120 * S,
    );
    assert_eq!(
        rec,
        vec![(
            Labels::from_pairs([
                ("__name__", "service:log_errors:count1m"),
                ("service", "board")
            ]),
            30.0
        )]
    );
    // Without a LogQL engine the rule reports it.
    e.queriers.logql = None;
    e.eval(&mut g, 135 * S, false);
    assert!(
        g.rules[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("LogQL")
    );
}

#[test]
fn duplicate_alert_labelsets_are_an_error() {
    let e = Env::new();
    put(&e.st, &[("__name__", "x"), ("a", "1"), ("b", "1")], 0, 1.0);
    put(&e.st, &[("__name__", "x"), ("a", "1"), ("b", "2")], 0, 1.0);
    let mut g = group(
        "groups:\n- name: r\n  rules:\n  - alert: A\n    expr: x\n    labels: { b: fixed }\n",
        Language::Promql,
    );
    e.eval(&mut g, 0, false);
    assert!(
        g.rules[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("same labelset")
    );
}
