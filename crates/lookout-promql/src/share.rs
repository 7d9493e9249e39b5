//! Work shared between the range-function calls of one query. When calls apply the same
//! function over the same window to the same metric (`rate(m{code=~"5.."}[5m])` and
//! `rate(m[5m])` in one ratio), and every call's matchers include those of the broadest, that
//! selection is decoded and evaluated once: the first call to run streams the broadest
//! selection and keeps the series its own matchers accept. Each other call that is the whole
//! argument of a foldable aggregation (`sum(rate(...))`) has that aggregation folded in the same
//! stream and only its result kept; any other call gets its series stashed and replays them.
//! Only calls evaluated over the query's own range share (nothing inside a subquery). Kept
//! points count against the query's sample limit (past it nothing is stashed and those calls
//! select as usual); everything is dropped with the evaluator at the end of the query.

use std::collections::HashMap;
use std::sync::Arc;

use lookout_storage::{Labels, Matcher};
use promql_parser::parser::{AggregateExpr, Call, Expr, LabelModifier, MatrixSelector};

use crate::eval::{Evaluator, StepSeries, Val, Window, unwrap_paren};
use crate::functions::{RangeFn, streamable};

/// Identity of a call in the parsed query: the address of its matrix selector, which stays
/// put while the query is evaluated.
pub(crate) type Key = usize;

pub(crate) fn key(ms: &MatrixSelector) -> Key {
    ms as *const MatrixSelector as usize
}

/// One call of a sharing group.
pub(crate) struct Member {
    pub key: Key,
    /// The broadest selection itself (takes every series).
    pub broad: bool,
    pub matchers: Vec<Matcher>,
    /// The aggregation the call is the whole argument of, when it is folded as the call's
    /// series stream (`eval_aggregate`): then another call of the group streaming folds it
    /// too and stashes only its result.
    pub agg: Option<AggSpec>,
}

/// `op by/without (names) (call)`.
pub(crate) struct AggSpec {
    /// Address of the aggregation node.
    pub key: Key,
    pub op: String,
    pub without: bool,
    pub names: Vec<String>,
}

/// An aggregation's result computed while another call of its group streamed, with the
/// annotations its evaluation would have made (in order).
pub(crate) struct Folded {
    pub val: Val,
    /// Metric names of the "might not be a counter" infos.
    pub odd_names: Vec<String>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
    /// Points held, counted in the evaluator's samples.
    pub points: usize,
}

pub(crate) fn agg_key(a: &AggregateExpr) -> Key {
    a as *const AggregateExpr as usize
}

impl Member {
    /// Does this call select the series (one of the broadest selection's)?
    pub fn takes(&self, labels: &Labels) -> bool {
        self.broad || self.matchers.iter().all(|m| m.matches_labels(labels))
    }
}

/// Calls that share one selection: `broad` is what is streamed.
pub(crate) struct Group {
    pub broad: Vec<Matcher>,
    pub members: Vec<Member>,
}

/// A call's output computed by another call of its group, in selection order, with the
/// metric name for the "might not be a counter" info of each series.
pub(crate) struct Stashed {
    pub series: Vec<(StepSeries, Option<String>)>,
    /// Points held, counted in the evaluator's samples.
    pub points: usize,
}

#[derive(Default)]
pub(crate) struct Shared {
    /// Groups none of whose calls has run yet, by member.
    pending: HashMap<Key, Arc<Group>>,
    stash: HashMap<Key, Stashed>,
    /// By aggregation node.
    folded: HashMap<Key, Folded>,
}

struct Candidate {
    key: Key,
    f: RangeFn,
    window: Window,
    name: String,
    matchers: Vec<Matcher>,
    agg: Option<AggSpec>,
}

impl Shared {
    /// Finds the sharing groups of `e` (evaluated by `ev` over the query's range).
    pub fn plan(ev: &Evaluator<'_>, e: &Expr) -> Shared {
        let mut cands = Vec::new();
        collect(ev, e, &mut cands);
        let mut shared = Shared::default();
        while let Some(c) = cands.pop() {
            let (mut same, rest): (Vec<Candidate>, Vec<Candidate>) = cands
                .into_iter()
                .partition(|o| o.f == c.f && o.name == c.name && same_window(&o.window, &c.window));
            cands = rest;
            same.push(c);
            // Repeatedly: the call with the fewest matchers and every call including them.
            while same.len() >= 2 {
                same.sort_by_key(|c| std::cmp::Reverse(c.matchers.len()));
                let Some(base) = same.pop() else { break };
                let (inside, outside): (Vec<Candidate>, Vec<Candidate>) = same
                    .into_iter()
                    .partition(|o| base.matchers.iter().all(|m| o.matchers.contains(m)));
                same = outside;
                if inside.is_empty() {
                    continue;
                }
                let mut members = vec![Member {
                    key: base.key,
                    broad: true,
                    matchers: base.matchers.clone(),
                    agg: base.agg,
                }];
                members.extend(inside.into_iter().map(|o| Member {
                    key: o.key,
                    broad: false,
                    matchers: o.matchers,
                    agg: o.agg,
                }));
                let group = Arc::new(Group {
                    broad: base.matchers,
                    members,
                });
                for m in &group.members {
                    shared.pending.insert(m.key, Arc::clone(&group));
                }
            }
        }
        shared
    }

    /// The group of call `k` if none of its calls has run yet; it is then taken off, so the
    /// group streams once.
    pub fn start(&mut self, k: Key) -> Option<Arc<Group>> {
        let g = self.pending.remove(&k)?;
        for m in &g.members {
            self.pending.remove(&m.key);
        }
        Some(g)
    }

    pub fn take_stash(&mut self, k: Key) -> Option<Stashed> {
        self.stash.remove(&k)
    }

    pub fn put_stash(&mut self, k: Key, s: Stashed) {
        self.stash.insert(k, s);
    }

    pub fn take_folded(&mut self, k: Key) -> Option<Folded> {
        self.folded.remove(&k)
    }

    pub fn put_folded(&mut self, k: Key, f: Folded) {
        self.folded.insert(k, f);
    }

    #[cfg(test)]
    pub fn groups(&self) -> usize {
        let mut seen: Vec<*const Group> = self.pending.values().map(Arc::as_ptr).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

fn same_window(a: &Window, b: &Window) -> bool {
    a.range == b.range && a.offset == b.offset && a.at == b.at
}

fn candidate(ev: &Evaluator<'_>, c: &Call) -> Option<Candidate> {
    let (f, ms) = streamable(c)?;
    let name = ms.vs.name.as_ref()?;
    let matchers = Evaluator::matchers(&ms.vs).ok()?;
    Some(Candidate {
        key: key(ms),
        f,
        window: ev.matrix_window(ms),
        name: name.clone(),
        matchers,
        agg: None,
    })
}

/// The calls of `e` the streaming path evaluates, outside subqueries.
fn collect(ev: &Evaluator<'_>, e: &Expr, out: &mut Vec<Candidate>) {
    match e {
        Expr::Paren(p) => collect(ev, &p.expr, out),
        Expr::Unary(u) => collect(ev, &u.expr, out),
        Expr::Binary(b) => {
            collect(ev, &b.lhs, out);
            collect(ev, &b.rhs, out);
        }
        Expr::Aggregate(a) => {
            // What `eval_aggregate` folds as its argument streams.
            if a.param.is_none()
                && let Expr::Call(c) = unwrap_paren(&a.expr)
                && let Some(cand) = candidate(ev, c)
            {
                let op = a.op.to_string();
                if crate::aggregate::foldable(&op) {
                    let (without, names) = match &a.modifier {
                        Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
                        Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
                        None => (false, Vec::new()),
                    };
                    out.push(Candidate {
                        agg: Some(AggSpec {
                            key: agg_key(a),
                            op,
                            without,
                            names,
                        }),
                        ..cand
                    });
                    return;
                }
            }
            collect(ev, &a.expr, out);
            if let Some(p) = &a.param {
                collect(ev, p, out);
            }
        }
        Expr::Call(c) => {
            if let Some(cand) = candidate(ev, c) {
                out.push(cand);
            } else {
                for a in &c.args.args {
                    collect(ev, a, out);
                }
            }
        }
        // A subquery's inner expression runs over its own steps.
        Expr::Subquery(_)
        | Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use lookout_storage::memory::MemStorage;
    use lookout_storage::{
        Appendable, Labels, Matcher, Queryable, STALE_NAN, Sample, SelectHints, Series,
        StorageError,
    };

    use super::Shared;
    use crate::eval::{Range, Val};
    use crate::{Engine, EngineOptions};

    /// Counts selections; `select_each` visits backwards from two threads.
    struct Counting<'a> {
        mem: &'a MemStorage,
        selections: AtomicUsize,
    }

    impl Queryable for Counting<'_> {
        fn select(&self, m: &[Matcher], h: &SelectHints) -> Result<Vec<Series>, StorageError> {
            self.selections.fetch_add(1, Ordering::Relaxed);
            self.mem.select(m, h)
        }

        fn select_each(
            &self,
            m: &[Matcher],
            h: &SelectHints,
            visit: &(dyn Fn(usize, &Labels, &[Sample]) + Sync),
        ) -> Result<usize, StorageError> {
            Ok(crate::functions::tests::visit_scrambled(
                &self.select(m, h)?,
                visit,
            ))
        }

        fn series(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
            self.mem.series(m, a, b)
        }

        fn label_names(&self, m: &[Matcher], a: i64, b: i64) -> Result<Vec<String>, StorageError> {
            self.mem.label_names(m, a, b)
        }

        fn label_values(
            &self,
            n: &str,
            m: &[Matcher],
            a: i64,
            b: i64,
        ) -> Result<Vec<String>, StorageError> {
            self.mem.label_values(n, m, a, b)
        }
    }

    /// 18 counters (`req_total`) and 6 gauges (`temp`) over codes 200/404/500/503, with
    /// resets and stale markers; samples every 15 s for 2 h.
    fn data() -> MemStorage {
        let mem = MemStorage::new();
        let mut app = mem.appender();
        for i in 0..24usize {
            let name = if i % 4 == 3 { "temp" } else { "req_total" };
            let code = ["200", "404", "500", "503"][i % 4];
            let l = Labels::from_pairs([
                ("__name__", name),
                ("job", ["a", "b", "c"][i % 3]),
                ("code", code),
                ("i", &i.to_string()),
            ]);
            let mut v = 0.0;
            for k in 0..480i64 {
                v = if (k + i as i64) % 101 == 0 {
                    0.5
                } else {
                    v + ((k * 7 + i as i64) % 5) as f64
                };
                let x = if (k + 5 * i as i64) % 173 == 0 {
                    STALE_NAN
                } else {
                    v
                };
                app.append(None, &l, k * 15_000 + i as i64 * 7, x).unwrap();
            }
        }
        app.commit().unwrap();
        mem
    }

    struct Outcome {
        val: Val,
        infos: Vec<String>,
        selections: usize,
        groups: usize,
    }

    fn eval(
        mem: &MemStorage,
        opts: EngineOptions,
        q: &str,
        r: Range,
        share: bool,
    ) -> Result<Outcome, crate::QueryError> {
        let store = Counting {
            mem,
            selections: AtomicUsize::new(0),
        };
        let engine = Engine::new(opts);
        let expr = engine.parse(q)?;
        let mut ev = engine.evaluator(&store, r.start, r.end);
        if share {
            ev.shared = Shared::plan(&ev, &expr);
        }
        let groups = ev.shared.groups();
        let val = ev.eval(&expr, &r)?;
        let infos = ev.infos;
        Ok(Outcome {
            val,
            infos,
            selections: store.selections.into_inner(),
            groups,
        })
    }

    /// Labels and value bits of a vector result.
    fn bits(v: &Val) -> Vec<(String, Vec<(u32, u64)>)> {
        match v {
            Val::Vector(vs) => vs
                .iter()
                .map(|s| {
                    (
                        s.labels.to_string(),
                        s.pts.iter().map(|&(i, x)| (i, x.to_bits())).collect(),
                    )
                })
                .collect(),
            Val::Scalar(x) => vec![(
                String::new(),
                x.iter()
                    .enumerate()
                    .map(|(i, x)| (i as u32, x.to_bits()))
                    .collect(),
            )],
            other => panic!("unexpected {other:?}"),
        }
    }

    const R: Range = Range {
        start: 600_000,
        end: 7_000_000,
        step: 60_000,
    };

    /// Evaluates `q` with and without sharing: same result bits and infos; returns the
    /// selections made with sharing and the groups planned.
    fn same_with_and_without(mem: &MemStorage, q: &str, r: Range) -> (usize, usize) {
        let shared = eval(mem, EngineOptions::default(), q, r, true).unwrap();
        let plain = eval(mem, EngineOptions::default(), q, r, false).unwrap();
        assert_eq!(bits(&shared.val), bits(&plain.val), "{q}");
        assert!(!bits(&plain.val).is_empty(), "{q}: no output");
        assert_eq!(shared.infos, plain.infos, "{q}");
        assert_eq!(plain.groups, 0);
        (shared.selections, shared.groups)
    }

    #[test]
    fn overlapping_selectors_share_one_selection() {
        let mem = data();
        let cases = [
            // narrow first, broad first, aggregated or not, three calls, equal selectors
            (
                r#"sum(rate(req_total{code=~"5.."}[5m])) / sum(rate(req_total[5m]))"#,
                1,
            ),
            (
                r#"sum by (job) (rate(req_total[5m])) - sum by (job) (rate(req_total{code="500"}[5m]))"#,
                1,
            ),
            (
                r#"rate(req_total{code="500"}[5m]) / rate(req_total[5m])"#,
                1,
            ),
            (
                r#"sum(increase(req_total{code="404",job="a"}[7m])) + sum(increase(req_total{job="a"}[7m])) + count(increase(req_total[7m]))"#,
                1,
            ),
            (r#"max(rate(req_total[5m])) - min(rate(req_total[5m]))"#, 1),
            (
                r#"sum(rate(temp[10m])) / sum(rate(temp{job!="b"}[10m]))"#,
                1,
            ),
            (
                r#"avg(max_over_time(req_total{code=~"5.."}[3m] offset 2m)) / avg(max_over_time(req_total[3m] offset 2m))"#,
                1,
            ),
            // One call aggregated, the other not (folded and stashed in one stream).
            (
                r#"rate(req_total{code="500"}[5m]) / ignoring(code, job, i) group_left sum(rate(req_total[5m]))"#,
                1,
            ),
            (
                r#"sum without (i) (rate(req_total[5m])) / ignoring(i) group_right rate(req_total{code="500"}[5m])"#,
                1,
            ),
            (
                r#"count by (job) (rate(temp[5m])) + avg by (job) (rate(temp{code!="200"}[5m])) + on() group_left stddev(rate(temp[5m]))"#,
                1,
            ),
        ];
        for (q, selections) in cases {
            assert_eq!(same_with_and_without(&mem, q, R), (selections, 1), "{q}");
        }
        // An instant query (one step).
        let one = Range {
            start: 3_600_000,
            end: 3_600_000,
            step: 1,
        };
        assert_eq!(
            same_with_and_without(
                &mem,
                r#"sum(rate(req_total{code=~"5.."}[5m])) / sum(rate(req_total[5m]))"#,
                one
            ),
            (1, 1)
        );
    }

    #[test]
    fn different_windows_or_functions_do_not_share() {
        let mem = data();
        let cases = [
            r#"sum(rate(req_total{code="500"}[5m])) / sum(rate(req_total[10m]))"#,
            r#"sum(rate(req_total{code="500"}[5m])) / sum(rate(req_total[5m] offset 1m))"#,
            r#"sum(rate(req_total{code="500"}[5m] @ 3000)) / sum(rate(req_total[5m] @ 3600))"#,
            r#"sum(rate(req_total{code="500"}[5m])) / sum(increase(req_total[5m]))"#,
            r#"sum(rate(req_total{code="500"}[5m])) / sum(rate(req_total{job="a"}[5m]))"#,
            r#"sum(rate(req_total{code="500"}[5m])) / sum(rate(temp[5m]))"#,
            // The inner call runs over the subquery's steps.
            r#"max_over_time(sum(rate(req_total[5m]))[30m:1m]) / sum(rate(req_total[5m]))"#,
        ];
        for q in cases {
            let (selections, groups) = same_with_and_without(&mem, q, R);
            assert_eq!((selections, groups), (2, 0), "{q}");
        }
        // Same `@` time: shared.
        let q = r#"sum(rate(req_total{code="500"}[5m] @ 3600)) / sum(rate(req_total[5m] @ 3600))"#;
        assert_eq!(same_with_and_without(&mem, q, R), (1, 1));
    }

    /// The streaming fold groups by keys made from the input labels (metric name kept or
    /// not): the same groups as the general path (`> -Inf` keeps every value and the name,
    /// but is not streamed).
    #[test]
    fn streamed_folds_group_as_the_general_path() {
        let mem = data();
        for q in [
            "sum by (__name__, job) (last_over_time({__name__=~\".+\"}[5m]))",
            "sum by (__name__, job) (rate(req_total[5m]))",
            "count without (i) (last_over_time(req_total[5m]))",
            "max without (__name__, code) (rate(temp[5m]))",
            "avg by (code) (max_over_time(req_total[2m]))",
        ] {
            let general = q.replacen("]))", "]) > -Inf)", 1);
            let streamed = eval(&mem, EngineOptions::default(), q, R, true).unwrap();
            let plain = eval(&mem, EngineOptions::default(), &general, R, true).unwrap();
            assert_eq!(bits(&streamed.val), bits(&plain.val), "{q}");
            assert!(!bits(&plain.val).is_empty(), "{q}");
        }
    }

    #[test]
    fn stashes_past_the_sample_limit_are_not_kept() {
        let mem = data();
        // Not aggregated: the series are stashed.
        let q = r#"rate(req_total{code=~"5.."}[5m]) / rate(req_total[5m])"#;
        // Steps of 5 s: a stash (one point a step for each of 18 series) outweighs the
        // samples; the limit fits the two selections made apart.
        let r = Range {
            start: 600_000,
            end: 7_000_000,
            step: 5_000,
        };
        let plain = eval(&mem, EngineOptions::default(), q, r, false).unwrap();
        let (loaded, five): (usize, usize) = {
            let mut h = SelectHints::range(600_000 - 300_000 + 1, 7_000_000);
            h.max_samples = None;
            let all = mem
                .select(&[Matcher::equal("__name__", "req_total")], &h)
                .unwrap();
            let n: usize = all.iter().map(|s| s.samples.len()).sum();
            let five: usize = all
                .iter()
                .filter(|s| s.labels.get_or_empty("code").starts_with('5'))
                .map(|s| s.samples.len())
                .sum();
            (n + five, five)
        };
        let opts = EngineOptions {
            max_samples: loaded,
            ..EngineOptions::default()
        };
        let shared = eval(&mem, opts.clone(), q, r, true).unwrap();
        assert_eq!(bits(&shared.val), bits(&plain.val));
        assert_eq!((shared.groups, shared.selections), (1, 2));
        // One sample less and the plain evaluation fails as before.
        let tight = EngineOptions {
            max_samples: loaded - 1,
            ..opts
        };
        assert!(eval(&mem, tight.clone(), q, r, false).is_err());
        assert!(eval(&mem, tight, q, r, true).is_err());
        // Without the limit the stash is kept: one selection.
        let free = eval(&mem, EngineOptions::default(), q, r, true).unwrap();
        assert_eq!(bits(&free.val), bits(&plain.val));
        assert_eq!(free.selections, 1);

        // Shared, the query needs room for the broad selection (the storage's own check) and
        // for what it counts: the 5xx samples and the other sum's result (one point a step),
        // less than the two selections made apart.
        let q = r#"sum(rate(req_total{code=~"5.."}[5m])) / sum(rate(req_total[5m]))"#;
        let plain = eval(&mem, EngineOptions::default(), q, r, false).unwrap();
        let sum = eval(
            &mem,
            EngineOptions::default(),
            "sum(rate(req_total[5m]))",
            r,
            false,
        );
        let points = match sum.unwrap().val {
            Val::Vector(v) => v.iter().map(|s| s.pts.len()).sum::<usize>(),
            _ => 0,
        };
        let need = (loaded - five).max(five + points);
        let enough = EngineOptions {
            max_samples: need,
            ..EngineOptions::default()
        };
        let shared = eval(&mem, enough.clone(), q, r, true).unwrap();
        assert_eq!(bits(&shared.val), bits(&plain.val));
        assert_eq!(shared.selections, 1);
        assert!(eval(&mem, enough, q, r, false).is_err());
        let short = EngineOptions {
            max_samples: need - 1,
            ..EngineOptions::default()
        };
        assert!(eval(&mem, short, q, r, true).is_err());
    }
}
