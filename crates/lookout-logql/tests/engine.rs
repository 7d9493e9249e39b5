//! Engine API: log queries (the seed's examples, direction, limit, interval, label merging),
//! limits, timeout, error kinds and rule validation.

use std::time::Duration;

use lookout_logql::{
    EngineOptions, ErrorKind, LabelSet, LogqlEngine, LogqlError, QueryValue, validate,
};
use lookout_storage::Labels;
use lookout_storage::logs::{Direction, LogEntry, MemLogStore};

const S: i64 = 1_000_000_000;

fn seed_store() -> MemLogStore {
    let s = MemLogStore::new();
    let user = Labels::from_pairs([("compose_service", "user-service")]);
    let board = Labels::from_pairs([("compose_service", "board-service")]);
    s.push(&user, LogEntry::new(S, "GET /users 200"));
    s.push(
        &user,
        LogEntry::new(2 * S, "POST /users error: duplicate email"),
    );
    s.push(&user, LogEntry::new(3 * S, "GET /users/1 200"));
    s.push(
        &board,
        LogEntry::new(S, r#"{"level":"info","msg":"board listed"}"#),
    );
    s.push(
        &board,
        LogEntry::new(2 * S, r#"{"level":"error","msg":"db timeout"}"#),
    );
    s.push(
        &board,
        LogEntry::new(4 * S, r#"{"level":"error","msg":"db down"}"#),
    );
    s
}

fn streams(v: QueryValue) -> Vec<(String, Vec<(i64, String)>)> {
    let QueryValue::Streams(s) = v else {
        panic!("not streams: {v:?}")
    };
    s.into_iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.entries
                    .into_iter()
                    .map(|e| (e.ts_ns / S, e.line))
                    .collect(),
            )
        })
        .collect()
}

fn range(
    e: &LogqlEngine,
    s: &MemLogStore,
    q: &str,
    dir: Direction,
    limit: usize,
) -> Result<QueryValue, LogqlError> {
    e.query_range(s, q, 0, 10 * S, Duration::from_secs(1), None, dir, limit)
}

#[test]
fn seed_examples() {
    let s = seed_store();
    let e = LogqlEngine::default();
    let got = streams(
        range(
            &e,
            &s,
            r#"{compose_service="user-service"}"#,
            Direction::Backward,
            100,
        )
        .unwrap(),
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.iter().map(|x| x.0).collect::<Vec<_>>(), [3, 2, 1]);

    let got = streams(
        range(
            &e,
            &s,
            r#"{compose_service=~".+"} |= "error""#,
            Direction::Forward,
            100,
        )
        .unwrap(),
    );
    assert_eq!(got.len(), 2);
    let total: usize = got.iter().map(|s| s.1.len()).sum();
    assert_eq!(total, 3);

    let got = streams(
        range(
            &e,
            &s,
            r#"{compose_service="board-service"} | json | level="error""#,
            Direction::Forward,
            100,
        )
        .unwrap(),
    );
    // Parsed labels join the stream labels; each distinct msg is its own stream.
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().all(|(l, _)| l.contains(r#"level="error""#)
            && l.contains(r#"compose_service="board-service""#))
    );
}

#[test]
fn limit_and_direction_pick_the_right_end() {
    let s = seed_store();
    let e = LogqlEngine::default();
    let q = r#"{compose_service=~".+"}"#;
    let fwd = streams(range(&e, &s, q, Direction::Forward, 2).unwrap());
    let mut ts: Vec<i64> = fwd.iter().flat_map(|s| s.1.iter().map(|x| x.0)).collect();
    ts.sort();
    assert_eq!(ts, [1, 1]);
    let bwd = streams(range(&e, &s, q, Direction::Backward, 2).unwrap());
    let mut ts: Vec<i64> = bwd.iter().flat_map(|s| s.1.iter().map(|x| x.0)).collect();
    ts.sort();
    assert_eq!(ts, [3, 4]);
    // end is exclusive
    let v = e
        .query_range(
            &s,
            q,
            0,
            2 * S,
            Duration::from_secs(1),
            None,
            Direction::Forward,
            100,
        )
        .unwrap();
    let n: usize = streams(v).iter().map(|s| s.1.len()).sum();
    assert_eq!(n, 2);
}

#[test]
fn interval_thins_entries_per_stream() {
    let s = MemLogStore::new();
    let l = Labels::from_pairs([("app", "a")]);
    for i in 0..10 {
        s.push(&l, LogEntry::new(i * S, format!("l{i}")));
    }
    let e = LogqlEngine::default();
    let v = e
        .query_range(
            &s,
            r#"{app="a"}"#,
            0,
            20 * S,
            Duration::from_secs(1),
            Some(Duration::from_secs(3)),
            Direction::Forward,
            100,
        )
        .unwrap();
    let got = streams(v);
    assert_eq!(
        got[0].1.iter().map(|x| x.0).collect::<Vec<_>>(),
        [0, 3, 6, 9]
    );
}

#[test]
fn metadata_and_line_rewrites_show_in_streams() {
    let s = MemLogStore::new();
    let l = Labels::from_pairs([("app", "a")]);
    s.push(
        &l,
        LogEntry {
            ts_ns: S,
            line: "x".into(),
            structured_metadata: vec![("trace_id".into(), "t1".into())],
        },
    );
    let e = LogqlEngine::default();
    let got = streams(
        range(
            &e,
            &s,
            r#"{app="a"} | line_format "{{.trace_id}}-{{__line__}}""#,
            Direction::Forward,
            10,
        )
        .unwrap(),
    );
    assert_eq!(
        got,
        [(
            r#"{app="a", trace_id="t1"}"#.to_string(),
            vec![(1, "t1-x".to_string())]
        )]
    );
}

#[test]
fn metric_results_shapes() {
    let s = seed_store();
    let e = LogqlEngine::default();
    let v = e
        .query_instant(
            &s,
            r#"sum by (compose_service) (count_over_time({compose_service=~".+"}[10s]))"#,
            5 * S,
        )
        .unwrap();
    let QueryValue::Vector(v) = v else { panic!() };
    assert_eq!(v.len(), 2);
    assert!(v.iter().all(|x| x.v == 3.0 && x.t_ns == 5 * S));
    let v = e.query_instant(&s, "1 + 2", 5 * S).unwrap();
    assert_eq!(
        v,
        QueryValue::Scalar {
            t_ns: 5 * S,
            v: 3.0
        }
    );
    let v = e
        .query_range(
            &s,
            r#"count_over_time({compose_service="user-service"}[1s])"#,
            0,
            4 * S,
            Duration::from_secs(1),
            None,
            Direction::Forward,
            100,
        )
        .unwrap();
    let QueryValue::Matrix(m) = v else { panic!() };
    assert_eq!(m[0].points, vec![(S, 1.0), (2 * S, 1.0), (3 * S, 1.0)]);
    assert_eq!(
        m[0].labels,
        LabelSet::new(vec![("compose_service".into(), "user-service".into())])
    );
}

#[test]
fn errors_have_loki_texts_and_kinds() {
    let s = seed_store();
    let e = LogqlEngine::default();
    let err = e.query_instant(&s, r#"{app="a"} |= "x""#, S).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadData);
    assert!(
        err.to_string()
            .contains("not supported as an instant query")
    );

    let err = e
        .query_instant(&s, r#"count_over_time({app="a"} | json [1m]"#, S)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadData);
    assert!(err.to_string().starts_with("parse error at line 1, col"));

    let err = e
        .query_instant(
            &s,
            r#"count_over_time({compose_service="user-service"} | json [10s])"#,
            5 * S,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadData);
    assert!(err.to_string().contains("pipeline error: 'JSONParserErr'"));

    let err = e.query_instant(
        &s,
        "count_over_time({a=\"b\"}[1m]) + on (x) group_left count_over_time({a=\"b\"}[1m]) or 1",
        S,
    );
    assert!(err.is_err());
}

#[test]
fn limits_and_timeout() {
    let s = seed_store();
    let opts = EngineOptions {
        max_entries_limit: 10,
        max_series: 1,
        max_query_length: Duration::from_secs(60),
        ..Default::default()
    };
    let e = LogqlEngine::new(opts);
    let err = range(&e, &s, r#"{compose_service=~".+"}"#, Direction::Forward, 11).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limits);
    let err = range(
        &e,
        &s,
        r#"count_over_time({compose_service=~".+"}[1s])"#,
        Direction::Forward,
        10,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limits);
    assert!(err.to_string().contains("maximum number of series (1)"));
    let err = e
        .query_range(
            &s,
            r#"{compose_service=~".+"}"#,
            0,
            3600 * S,
            Duration::from_secs(1),
            None,
            Direction::Forward,
            10,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limits);

    let e = LogqlEngine::new(EngineOptions {
        max_samples: 2,
        ..Default::default()
    });
    let err = e
        .query_instant(
            &s,
            r#"count_over_time({compose_service=~".+"}[10s])"#,
            5 * S,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Limits);

    let e = LogqlEngine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(1));
    let err = e
        .query_instant(
            &s,
            r#"count_over_time({compose_service=~".+"}[10s])"#,
            5 * S,
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
}

#[test]
fn rule_validation() {
    assert!(validate(r#"sum(rate({app="a"} |= "error" [5m])) > 1"#).is_ok());
    assert!(validate(r#"{app="a"} |= "error""#).is_err());
    assert!(validate("sum(").is_err());
}

/// `sum by (...)` of a parsed range aggregation extracts only the grouped labels (parser
/// hints); results must equal those of the same query with hints disabled by a `keep` stage
/// that keeps everything, including `_extracted` names, filters and parse errors.
#[test]
fn parser_hints_do_not_change_results() {
    let s = MemLogStore::new();
    let a = Labels::from_pairs([("app", "a"), ("level", "stream")]);
    for (i, line) in [
        r#"{"level":"info","status":200,"trace":"x1"}"#,
        r#"{"level":"error","status":500,"trace":"x2"}"#,
        r#"{"level":"error","status":502,"nested":{"k":"v"}}"#,
        r#"not json at all"#,
        r#"{"level":"info","status":404,"app":"inner"}"#,
    ]
    .iter()
    .enumerate()
    {
        s.push(&a, LogEntry::new((i as i64 + 1) * S, *line));
    }
    let e = LogqlEngine::default();
    let eval = |q: &str| {
        e.query_range(
            &s,
            q,
            6 * S,
            6 * S,
            Duration::from_secs(1),
            None,
            Direction::Forward,
            100,
        )
        .map(|v| format!("{v:?}"))
        .map_err(|e| e.to_string())
    };
    for (hinted, plain) in [
        (
            r#"sum by (level_extracted) (count_over_time({app="a"} | json | __error__="" [10s]))"#,
            r#"sum by (level_extracted) (count_over_time({app="a"} | json | __error__="" | keep level_extracted, status, app_extracted, nested_k [10s]))"#,
        ),
        (
            r#"sum by (app_extracted, nested_k) (count_over_time({app="a"} | json | status >= 400 [10s]))"#,
            r#"sum by (app_extracted, nested_k) (count_over_time({app="a"} | json | status >= 400 | keep level_extracted, status, app_extracted, nested_k [10s]))"#,
        ),
        (
            r#"sum by (level) (sum_over_time({app="a"} | json | unwrap status | __error__="" [10s]))"#,
            r#"sum by (level) (sum_over_time({app="a"} | json | keep level, status, level_extracted | unwrap status | __error__="" [10s]))"#,
        ),
        (
            // The non-JSON line makes both fail with the same pipeline error.
            r#"sum by (level_extracted) (count_over_time({app="a"} | json [10s]))"#,
            r#"sum by (level_extracted) (count_over_time({app="a"} | json | keep level_extracted [10s]))"#,
        ),
    ] {
        let h = eval(hinted);
        assert_eq!(h, eval(plain), "{hinted}");
        match h {
            Ok(v) => assert!(v.contains("points: [(6000000000"), "{hinted}: {v}"),
            Err(e) => assert!(e.contains("JSONParserErr"), "{hinted}: {e}"),
        }
    }
}
