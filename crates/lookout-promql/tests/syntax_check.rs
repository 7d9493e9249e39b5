//! Prometheus-compatible syntax errors: a table of invalid queries with the exact text
//! Prometheus 3.5 reports (inputs and expectations taken as data from Prometheus's
//! `promql/parser/parse_test.go` error cases, plus cases checked against `promtool`), the
//! promise that every valid query of the PromQL peer corpus passes the checker. (That it never
//! panics is a proptest beside the code.)

use std::path::PathBuf;

use lookout_promql::syntax_check::{CheckOptions, check, check_here};
use lookout_promql::{Engine, EngineOptions, QueryError};

/// (query, Prometheus's error text).
const INVALID: &[(&str, &str)] = &[
    // Lexer errors.
    (".", "1:1: parse error: unexpected character: '.'"),
    (
        "2.5.",
        "1:1: parse error: bad number or duration syntax: \"2.5.\"",
    ),
    (
        "100..4",
        "1:1: parse error: bad number or duration syntax: \"100..\"",
    ),
    (
        "0deadbeef",
        "1:1: parse error: bad number or duration syntax: \"0de\"",
    ),
    ("(1))", "1:5: parse error: unexpected right parenthesis ')'"),
    ("((1)", "1:5: parse error: unclosed left parenthesis"),
    ("(", "1:2: parse error: unclosed left parenthesis"),
    ("sum(", "1:5: parse error: unclosed left parenthesis"),
    (
        "1 !~ 1",
        "1:3: parse error: unexpected character after '!': '~'",
    ),
    (
        "1 =~ 1",
        "1:3: parse error: unexpected character after '=': '~'",
    ),
    (
        "{",
        "1:2: parse error: unexpected end of input inside braces",
    ),
    ("}", "1:1: parse error: unexpected character: '}'"),
    (
        "some_metric{a:b=\"b\"}",
        "1:14: parse error: unexpected character inside braces: ':'",
    ),
    (
        "foo{a*\"b\"}",
        "1:6: parse error: unexpected character inside braces: '*'",
    ),
    (
        "foo{1}",
        "1:5: parse error: unexpected character inside braces: '1'",
    ),
    (
        "foo[5mm]",
        "1:5: parse error: bad number or duration syntax: \"5mm\"",
    ),
    (
        "foo[5m1]",
        "1:5: parse error: bad number or duration syntax: \"5m1\"",
    ),
    ("`\\``", "1:4: parse error: unterminated raw string"),
    ("\"\\", "1:1: parse error: escape sequence not terminated"),
    (
        "\"\\c\"",
        "1:1: parse error: unknown escape sequence U+0063 'c'",
    ),
    (
        "\"\\x.\"",
        "1:1: parse error: illegal character U+002E '.' in escape sequence",
    ),
    (
        "sum by (\"foo)(some_metric{})",
        "1:9: parse error: unterminated quoted string",
    ),
    // Grammar errors: generic, and each error production's context.
    ("1+", "1:3: parse error: unexpected end of input"),
    ("1 /", "1:4: parse error: unexpected end of input"),
    ("*1", "1:1: parse error: unexpected <op:*>"),
    ("@@", "1:1: parse error: unexpected <op:@>"),
    ("-=", "1:2: parse error: unexpected \"=\""),
    ("++-++-+-+-<", "1:11: parse error: unexpected <op:<>"),
    ("e-+=/(0)", "1:4: parse error: unexpected \"=\""),
    ("foo bar", "1:5: parse error: unexpected identifier \"bar\""),
    (
        "a - on(b) ignoring(c) d",
        "1:11: parse error: unexpected <ignoring>",
    ),
    (
        "foo + group_left(baz) bar",
        "1:7: parse error: unexpected <group_left>",
    ),
    (
        "some_metric{a=b}",
        "1:15: parse error: unexpected identifier \"b\" in label matching, expected string",
    ),
    (
        "foo{bar=}",
        "1:9: parse error: unexpected \"}\" in label matching, expected string",
    ),
    (
        "foo{gibberish}",
        "1:14: parse error: unexpected \"}\" in label matching, expected label matching operator",
    ),
    (
        "foo{__name__= =}",
        "1:15: parse error: unexpected \"=\" in label matching, expected string",
    ),
    (
        "foo{,}",
        "1:5: parse error: unexpected \",\" in label matching, expected identifier or \"}\"",
    ),
    (
        "foo{__name__=\"bar\" lol}",
        "1:20: parse error: unexpected identifier \"lol\" in label matching, expected \",\" or \"}\"",
    ),
    (
        "foo{\"a\"=}",
        "1:9: parse error: unexpected \"}\" in label matching, expected string",
    ),
    (
        "sum without(==)(some_metric)",
        "1:13: parse error: unexpected <op:==> in grouping opts, expected label",
    ),
    (
        "sum without(,)(some_metric)",
        "1:13: parse error: unexpected \",\" in grouping opts, expected label",
    ),
    (
        "sum without(foo,,)(some_metric)",
        "1:17: parse error: unexpected \",\" in grouping opts, expected label",
    ),
    (
        "sum by (a b) (x)",
        "1:11: parse error: unexpected identifier \"b\" in grouping opts, expected \",\" or \")\"",
    ),
    (
        "sum some_metric by (test)",
        "1:5: parse error: unexpected identifier \"some_metric\"",
    ),
    (
        "sum (some_metric) by test",
        "1:22: parse error: unexpected identifier \"test\" in grouping opts, expected \"(\"",
    ),
    (
        "sum (some_metric) without (test) by (test)",
        "1:34: parse error: unexpected <by>",
    ),
    (
        "MIN keep_common (some_metric)",
        "1:5: parse error: unexpected identifier \"keep_common\"",
    ),
    (
        "sum(a b)",
        "1:7: parse error: unexpected identifier \"b\" in aggregation",
    ),
    (
        "sum by (a) x",
        "1:12: parse error: unexpected identifier \"x\" in aggregation",
    ),
    (
        "foo + on(a) group_left ,",
        "1:24: parse error: unexpected \",\" in grouping opts, expected \"(\"",
    ),
    (
        "foo @ bar",
        "1:7: parse error: unexpected identifier \"bar\" in @, expected timestamp",
    ),
    (
        "foo @ start(1)",
        "1:13: parse error: unexpected number \"1\" in @, expected timestamp",
    ),
    ("foo\n+\n", "3:1: parse error: unexpected end of input"),
    (
        "\n\n  foo{a=}",
        "3:9: parse error: unexpected \"}\" in label matching, expected string",
    ),
    // Checks made while parsing.
    (
        "topk(some_metric,)",
        "1:17: parse error: trailing commas not allowed in function call args",
    ),
    (
        "abs(a, =)",
        "1:6: parse error: trailing commas not allowed in function call args",
    ),
    (
        "non_existent_function_far_bar()",
        "1:1: parse error: unknown function with name \"non_existent_function_far_bar\"",
    ),
    (
        "a>b()",
        "1:3: parse error: unknown function with name \"b\"",
    ),
    (
        "sum () by (test)",
        "1:1: parse error: no arguments for aggregate expression provided",
    ),
    (
        "topk(some_metric)",
        "1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1",
    ),
    (
        "1 offset 1d",
        "1:1: parse error: offset modifier must be preceded by an instant vector selector or range vector selector or a subquery",
    ),
    (
        "foo offset 1s offset 2s",
        "1:1: parse error: offset may not be set multiple times",
    ),
    (
        "rate(some_metric[5m]) @ 1234",
        "1:1: parse error: @ modifier must be preceded by an instant vector selector or range vector selector or a subquery",
    ),
    (
        "foo @ 1 @ 2",
        "1:1: parse error: @ <timestamp> may not be set multiple times",
    ),
    (
        "foo @ +Inf",
        "1:1: parse error: timestamp out of bounds for @ modifier: +Inf",
    ),
    (
        "foo @ NaN",
        "1:1: parse error: timestamp out of bounds for @ modifier: NaN",
    ),
    (
        "some_metric OFFSET 1m[5m]",
        "1:22: parse error: no offset modifiers allowed before range",
    ),
    (
        "some_metric @ 1234 [5m]",
        "1:20: parse error: no @ modifiers allowed before range",
    ),
    (
        "(foo + bar)[5m]",
        "1:12: parse error: ranges only allowed for vector selectors",
    ),
    (
        "rate(food[1m])[1h] offset 1h",
        "1:15: parse error: ranges only allowed for vector selectors",
    ),
    (
        "foo[0m]",
        "1:5: parse error: duration must be greater than 0",
    ),
    (
        "foo[5m1h]",
        "1:5: parse error: not a valid duration string: \"5m1h\"",
    ),
    (
        "foo{a=~\"(\"}",
        "1:5: parse error: error parsing regexp: missing closing ): `(`",
    ),
    (
        "foo{a=~\"*\"}",
        "1:5: parse error: error parsing regexp: missing argument to repetition operator: `*`",
    ),
    (
        "1e400",
        "1:1: parse error: error parsing number: strconv.ParseFloat: parsing \"1e400\": value out of range",
    ),
    // Type checks after parsing.
    (
        "1 and 1",
        "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
    ),
    (
        "foo and 1",
        "1:1: parse error: set operator \"and\" not allowed in binary scalar expression",
    ),
    (
        "1 == 1",
        "1:3: parse error: comparisons between scalars must use BOOL modifier",
    ),
    (
        "1 or on(bar) foo",
        "1:1: parse error: vector matching only allowed between instant vectors",
    ),
    (
        "foo and on(bar) group_left(baz) bar",
        "1:1: parse error: no grouping allowed for \"and\" operation",
    ),
    (
        "http_requests{group=\"production\"} + on(instance) group_left(job,instance) cpu_count{type=\"smp\"}",
        "1:35: parse error: label \"instance\" must not occur in ON and GROUP clause at once",
    ),
    (
        "foo + bool bar",
        "1:5: parse error: bool modifier can only be used on comparison operators",
    ),
    (
        "-\"string\"",
        "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"string\"",
    ),
    (
        "-test[5m]",
        "1:1: parse error: unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"",
    ),
    (
        "{}",
        "1:1: parse error: vector selector must contain at least one non-empty matcher",
    ),
    (
        "{x=~\".*\"}",
        "1:1: parse error: vector selector must contain at least one non-empty matcher",
    ),
    (
        "foo{__name__=\"bar\"}",
        "1:1: parse error: metric name must not be set twice: \"foo\" or \"bar\"",
    ),
    (
        "topk(some_metric, other_metric)",
        "1:6: parse error: expected type scalar in aggregation parameter, got instant vector",
    ),
    (
        "count_values(5, other_metric)",
        "1:14: parse error: expected type string in aggregation parameter, got scalar",
    ),
    (
        "floor()",
        "1:1: parse error: expected 1 argument(s) in call to \"floor\", got 0",
    ),
    (
        "hour(some_metric, some_metric, some_metric)",
        "1:1: parse error: expected at most 1 argument(s) in call to \"hour\", got 3",
    ),
    (
        "label_join(a)",
        "1:1: parse error: expected at least 3 argument(s) in call to \"label_join\", got 1",
    ),
    (
        "floor(1)",
        "1:7: parse error: expected type instant vector in call to function \"floor\", got scalar",
    ),
    (
        "rate(some_metric)",
        "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
    ),
    (
        "rate(avg)",
        "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector",
    ),
    (
        "1 + \"a\"",
        "1:5: parse error: binary expression must contain only scalar and instant vector types",
    ),
    (
        "test[5d] OFFSET 10s [10m:5s]",
        "1:1: parse error: subquery is only allowed on instant vector, got matrix instead",
    ),
    (
        "sum(1)",
        "1:5: parse error: expected type instant vector in aggregation expression, got scalar",
    ),
];

fn experimental() -> CheckOptions {
    CheckOptions {
        experimental_functions: true,
        duration_expressions: false,
    }
}

#[test]
fn invalid_queries_report_prometheus_errors() {
    assert!(INVALID.len() >= 40);
    let mut wrong = Vec::new();
    for (query, want) in INVALID {
        let got = check_here(query, &experimental()).map(|e| e.to_string());
        if got.as_deref() != Some(*want) {
            wrong.push(format!("{query:?}\n  want {want}\n  got  {got:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn engine_reports_prometheus_errors_for_rejected_queries() {
    let engine = Engine::new(EngineOptions {
        enable_experimental_functions: true,
        ..EngineOptions::default()
    });
    let mut rejected = 0;
    for (query, want) in INVALID {
        if promql_parser::parser::parse(query).is_ok() {
            // promql-parser accepts it; the engine never consults the checker.
            continue;
        }
        rejected += 1;
        match engine.parse_check(query) {
            Err(
                err @ QueryError::Parse {
                    position: Some(pos),
                    ..
                },
            ) => {
                assert_eq!(err.to_string(), *want, "query {query:?}");
                assert_eq!(err.error_type(), "bad_data");
                assert!(pos <= query.len());
            }
            other => panic!("query {query:?}: expected a positioned parse error, got {other:?}"),
        }
    }
    assert!(
        rejected >= 40,
        "only {rejected} table queries are rejected by promql-parser"
    );
}

#[test]
fn experimental_gates_are_worded_like_prometheus() {
    let engine = Engine::default();
    let err = engine
        .parse_check("sum(mad_over_time(x[5m]))")
        .expect_err("experimental function must be refused");
    assert_eq!(
        err.to_string(),
        "1:5: parse error: function \"mad_over_time\" is not enabled"
    );
    let err = engine
        .parse_check("limitk(2, x)")
        .expect_err("experimental aggregation must be refused");
    assert_eq!(
        err.to_string(),
        "1:1: parse error: limitk() is experimental and must be enabled with --enable-feature=promql-experimental-functions"
    );
    assert!(
        Engine::new(EngineOptions {
            enable_experimental_functions: true,
            ..EngineOptions::default()
        })
        .parse_check("limitk(2, x)")
        .is_ok()
    );
}

#[test]
fn disagreement_keeps_the_parser_error() {
    // Valid in Prometheus 3 (any UTF-8 label name may be grouped by), rejected by
    // promql-parser: the checker finds nothing, and the parser's own error must survive.
    let query = "sum by (a:b) (x)";
    assert!(promql_parser::parser::parse(query).is_err());
    assert_eq!(check(query, &experimental()), None);
    match Engine::default().parse_check(query) {
        Err(QueryError::Parse { message, position }) => {
            assert!(message.contains("a:b"), "{message}");
            assert!(!message.contains("parse error: "), "{message}");
            assert_eq!(position, None);
        }
        other => panic!("expected the parser's error, got {other:?}"),
    }
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer-tests/promql")
}

/// The expression of an `eval*` command line, if it is one.
fn eval_expr(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("eval")?;
    let (_, rest) = rest.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r.trim_start().strip_prefix("at")?.trim_start();
        return r.split_once(char::is_whitespace).map(|(_, e)| e.trim());
    }
    let r = rest.strip_prefix("range")?;
    let (_, r) = r.split_once(" step ")?;
    r.trim_start()
        .split_once(char::is_whitespace)
        .map(|(_, e)| e.trim())
}

#[test]
fn every_valid_corpus_query_passes_the_checker() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        if std::env::var("LOOKOUT_ALLOW_MISSING_PEER_TESTS").as_deref() == Ok("1") {
            return;
        }
        panic!("peer corpus missing at {}", dir.display());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let all_features = CheckOptions {
        experimental_functions: true,
        duration_expressions: true,
    };
    let (mut checked, mut parser_rejects) = (0, 0);
    let mut wrong = Vec::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            panic!("cannot read {}", f.display());
        };
        for line in text.lines() {
            let Some(expr) = eval_expr(line) else {
                continue;
            };
            match promql_parser::parser::parse(expr) {
                Ok(parsed) => {
                    // The query as written, and as promql-parser prints it back.
                    for q in [expr.to_string(), parsed.to_string()] {
                        checked += 1;
                        if let Some(err) = check_here(&q, &experimental()) {
                            wrong.push(format!("{}: {q:?}: {err}", f.display()));
                        }
                    }
                }
                // Valid Prometheus 3.5 that promql-parser cannot read (duration arithmetic):
                // fine once its feature flag is on.
                Err(_) if !line.starts_with("eval_fail") => {
                    parser_rejects += 1;
                    if let Some(err) = check_here(expr, &all_features) {
                        wrong.push(format!("{}: {expr:?}: {err}", f.display()));
                    }
                }
                Err(_) => {}
            }
        }
    }
    eprintln!("checked {checked} valid queries (+{parser_rejects} promql-parser rejects)");
    assert!(checked > 2000, "only {checked} corpus queries checked");
    assert!(
        wrong.is_empty(),
        "{} false errors:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
