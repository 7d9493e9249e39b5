//! PromQL syntax checker that reports the first error of a query exactly as Prometheus 3.5
//! does — message and `line:column` — e.g. `1:14: parse error: unexpected end of input`.
//!
//! `promql-parser` (which the engine parses with) reports every grammar error as the bare
//! text "invalid promql query"; this module exists only to turn a rejected query into
//! Prometheus's diagnostic. It has its own lexer (Prometheus's `lex.go` states and texts), a
//! recursive-descent recogniser that picks the message Prometheus's LALR parser would (its
//! `error` productions and the checks it runs while reducing), and Prometheus's post-parse
//! type check. It builds no usable AST and evaluates nothing.
//!
//! Known limits: the exact 3.5 wording of the rarely hit `offset`/subquery "expected" texts
//! and of the experimental duration-expression grammar is reconstructed, not verified; only
//! the common `regexp` error classes are rendered in Go's words; inputs nested deeper than
//! 256 levels get no verdict.

mod functions;
mod golang;
mod lex;
mod parse;
mod types;

use std::fmt;

/// Stack of the checking thread: ample for the deepest nesting it follows, even unoptimised.
const CHECK_STACK: usize = 16 << 20;

/// Which optional language features count as enabled.
#[derive(Clone, Copy, Debug, Default)]
pub struct CheckOptions {
    /// `--enable-feature=promql-experimental-functions`.
    pub experimental_functions: bool,
    /// `--enable-feature=promql-duration-expr` (arithmetic in ranges and offsets).
    pub duration_expressions: bool,
}

/// The first syntax (or type) error of a query, as Prometheus reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset of the error in the query.
    pub position: usize,
    /// 1-based line of `position`.
    pub line: usize,
    /// 1-based column (in bytes) of `position`, as Prometheus counts it.
    pub column: usize,
    /// The message without the position prefix, e.g. `unexpected end of input`.
    pub message: String,
    /// Whether the query was empty (Prometheus then prints "unknown position").
    empty_query: bool,
}

impl fmt::Display for SyntaxError {
    /// Prometheus's `ParseErr` text: `1:14: parse error: unexpected end of input`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.empty_query {
            write!(f, "unknown position: parse error: {}", self.message)
        } else {
            write!(
                f,
                "{}:{}: parse error: {}",
                self.line, self.column, self.message
            )
        }
    }
}

/// Prometheus's `line:column` of byte offset `pos`: 1-based, the column counted in bytes
/// from the last newline before `pos`.
pub fn line_col(query: &str, pos: usize) -> (usize, usize) {
    let pos = pos.min(query.len());
    let before = &query.as_bytes()[..pos];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let col = match before.iter().rposition(|&b| b == b'\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    (line, col)
}

/// Checks `query`; `Some` with the first error Prometheus would report, `None` when the query
/// is valid PromQL (or nests too deeply to tell). Runs on a thread of its own, so neither a
/// deeply nested query nor a bug in the checker can take the caller down (both yield `None`).
pub fn check(query: &str, opts: &CheckOptions) -> Option<SyntaxError> {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("promql-syntax-check".into())
            .stack_size(CHECK_STACK)
            .spawn_scoped(s, || check_here(query, opts))
            .ok()
            .and_then(|h| h.join().ok())
    })
    .flatten()
}

/// [`check`] on the calling thread: recursion follows the query's nesting (at most 256
/// levels, a few KiB each), and a panic propagates.
pub fn check_here(query: &str, opts: &CheckOptions) -> Option<SyntaxError> {
    let outcome = parse::Parser::new(query, *opts)
        .parse()
        .and_then(|tree| types::Checker { input: query }.check(&tree).map(|_| ()));
    match outcome {
        Ok(()) | Err(parse::Fail::TooDeep) => None,
        Err(parse::Fail::Error(position, message)) => {
            let (line, column) = line_col(query, position);
            Some(SyntaxError {
                position,
                line,
                column,
                message,
                empty_query: query.is_empty(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(q: &str) -> Option<String> {
        check(q, &CheckOptions::default()).map(|e| e.to_string())
    }

    #[test]
    fn positions_like_prometheus() {
        assert_eq!(line_col("1+", 2), (1, 3));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
        assert_eq!(line_col("foo\n+\n", 6), (3, 1));
    }

    #[test]
    fn first_error_with_position() {
        assert_eq!(
            msg("foo bar").as_deref(),
            Some("1:5: parse error: unexpected identifier \"bar\"")
        );
        assert_eq!(
            msg("sum(rate(x[5m])").as_deref(),
            Some("1:16: parse error: unclosed left parenthesis")
        );
        assert_eq!(
            msg("").as_deref(),
            Some("unknown position: parse error: no expression found in input")
        );
        assert_eq!(msg("sum by (job) (rate(http_requests_total[5m]))"), None);
    }

    /// Fragments from which random (mostly invalid) queries are assembled.
    const PIECES: &[&str] = &[
        "sum",
        "by",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        ",",
        "foo",
        "a",
        "=",
        "=~",
        "!=",
        "\"x\"",
        "'y'",
        "`z`",
        "5m",
        "1",
        "0x1F",
        ".5",
        "1e3",
        "+",
        "-",
        "*",
        "/",
        "^",
        "%",
        "==",
        "bool",
        "on",
        "ignoring",
        "group_left",
        "offset",
        "@",
        "start",
        "end",
        ":",
        "rate",
        "topk",
        "and",
        "or",
        "unless",
        " ",
        "\n",
        "# c\n",
        "\\",
        "\"",
        "\u{e9}",
        "Inf",
        "NaN",
        "without",
        "count_values",
        "limitk",
        "label_join",
        "\"(\"",
        "`\\`",
    ];

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

        #[test]
        fn never_panics_on_fragments(parts in proptest::collection::vec(0..PIECES.len(), 0..28)) {
            let q: String = parts.iter().map(|&i| PIECES[i]).collect();
            for opts in [CheckOptions::default(), CheckOptions { experimental_functions: true, duration_expressions: true }] {
                if let Some(e) = check_here(&q, &opts) {
                    proptest::prop_assert!(e.position <= q.len());
                    proptest::prop_assert!(e.to_string().contains("parse error: "));
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_text(q in "\\PC{0,48}") {
            if let Some(e) = check_here(&q, &CheckOptions::default()) {
                proptest::prop_assert!(e.position <= q.len());
            }
        }
    }

    #[test]
    fn gives_up_on_absurd_nesting() {
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert_eq!(msg(&deep), None);
        let long = vec!["1"; 5000].join("+");
        assert_eq!(msg(&long), None);
    }
}
