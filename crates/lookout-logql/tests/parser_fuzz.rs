//! Property tests: the parser (and so the lexer, template and pattern compilers) never panics,
//! and evaluation of whatever parses never panics either.

use std::time::Duration;

use lookout_logql::{LogqlEngine, parse};
use lookout_storage::Labels;
use lookout_storage::logs::{Direction, LogEntry, MemLogStore};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "|",
    "|=",
    "!=",
    "|~",
    "!~",
    "|>",
    "!>",
    "=",
    "==",
    "=~",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "^",
    "%",
    "app",
    "\"a\"",
    "`x`",
    "\"{{.a}}\"",
    "\"<_> <b>\"",
    "1",
    "0x1p3",
    "1.5",
    "5m",
    "1s",
    "3MB",
    "json",
    "logfmt",
    "--strict",
    "regexp",
    "\"(?P<x>.)\"",
    "pattern",
    "unpack",
    "line_format",
    "label_format",
    "drop",
    "keep",
    "decolorize",
    "unwrap",
    "duration",
    "bytes",
    "ip",
    "\"10.0.0.0/8\"",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "sum",
    "topk",
    "count_over_time",
    "rate",
    "quantile_over_time",
    "absent_over_time",
    "rate_counter",
    "vector",
    "label_replace",
    "sort",
    "__error__",
    " ",
];

fn store() -> MemLogStore {
    let s = MemLogStore::new();
    let l = Labels::from_pairs([("app", "a")]);
    for (i, line) in [
        "a=1 b=2",
        r#"{"a":"x","b":{"c":1}}"#,
        "10.0.0.1 GET /x 200",
        "broken \"",
        "",
    ]
    .iter()
    .enumerate()
    {
        s.push(&l, LogEntry::new(i as i64 * 1_000_000_000, *line));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
        let _ = parse(&s);
    }

    #[test]
    fn token_soup_never_panics(idx in proptest::collection::vec(0..PIECES.len(), 0..24)) {
        let q: String = idx.iter().map(|i| PIECES[*i]).collect::<Vec<_>>().join(" ");
        if parse(&q).is_ok() {
            let e = LogqlEngine::default();
            let s = store();
            let _ = e.query_instant(&s, &q, 3_000_000_000);
            let _ = e.query_range(&s, &q, 0, 5_000_000_000, Duration::from_secs(1), None, Direction::Backward, 10);
        }
    }

    #[test]
    fn pipelines_over_arbitrary_lines_never_panic(line in "\\PC{0,60}") {
        let s = MemLogStore::new();
        s.push(&Labels::from_pairs([("app", "a")]), LogEntry::new(1, line));
        let e = LogqlEngine::default();
        for q in [
            r#"{app="a"} | json | logfmt | pattern "<a> <_> <b>" | regexp "(?P<r>\\w+)" | decolorize | line_format "{{.a | upper}}{{ printf \"%5.2f\" .b }}""#,
            r#"{app="a"} | unpack | label_format x="{{ trunc 3 __line__ }}" | x != ip("1.2.3.0/24") | drop __error__"#,
        ] {
            let _ = e.query_range(&s, q, 0, 10, Duration::from_secs(1), None, Direction::Forward, 10);
        }
    }
}
