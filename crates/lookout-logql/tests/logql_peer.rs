//! Runs Loki's declarative LogQL corpus (`../shared/peer-tests/logql/*.logqltest`, format in
//! the corpus README and Loki's `pkg/logql/internal/logqltest`) against `MemLogStore`, printing
//! passed/total per file. Anything unparsable or panicking counts as failed.
//! `LOOKOUT_LOGQL_PEER_VERBOSE=1` prints each failure; a missing corpus fails the test unless
//! `LOOKOUT_ALLOW_MISSING_PEER_TESTS=1`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Duration;

use lookout_logql::{EngineOptions, LabelSet, LogqlEngine, QueryValue};
use lookout_storage::Labels;
use lookout_storage::logs::{Direction, LogEntry, MemLogStore};

/// Fraction of all eval cases that must pass (the level reached; raise it as it improves).
const FLOOR: f64 = 1.0;

/// The corpus's script epoch: 2026-01-01T00:00:00Z.
const EPOCH_NS: i64 = 1_767_225_600 * 1_000_000_000;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer-tests/logql")
}

/// Go `time.ParseDuration` subset used by scripts (returns ns).
fn go_duration(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(format!("invalid duration {s:?}"));
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(format!("missing unit in {s:?}"))?;
        let num: f64 = rest[..n]
            .parse()
            .map_err(|_| format!("invalid duration {s:?}"))?;
        let r = &rest[n..];
        let u = r
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(r.len());
        let mult = match &r[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => return Err(format!("unknown unit {other:?} in {s:?}")),
        };
        total += num * mult;
        rest = &r[u..];
    }
    Ok(if neg { -(total as i64) } else { total as i64 })
}

fn strip_comment(line: &str) -> &str {
    let mut quote = 0u8;
    for (i, c) in line.bytes().enumerate() {
        if quote != 0 {
            if c == quote {
                quote = 0;
            }
        } else if c == b'"' || c == b'`' {
            quote = c;
        } else if c == b'#' {
            return line[..i].trim_end();
        }
    }
    line
}

/// `{a="b", c=""}` → pairs (values unescaped; empty values kept).
fn parse_label_set(s: &str) -> Result<Vec<(String, String)>, String> {
    let inner = s
        .trim()
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .ok_or(format!("bad labels {s:?}"))?;
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(format!("bad labels {s:?}"))?;
        let name = rest[..eq].trim().trim_matches('"').to_string();
        let after = rest[eq + 1..].trim_start();
        let after = after.strip_prefix('"').ok_or(format!("bad labels {s:?}"))?;
        let mut val = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        val.push(match e {
                            'n' => '\n',
                            't' => '\t',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = Some(i);
                    break;
                }
                c => val.push(c),
            }
        }
        let end = end.ok_or(format!("unterminated label value in {s:?}"))?;
        out.push((name, val));
        rest = after[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(out)
}

fn split_quoted(s: &str) -> Result<(String, &str), String> {
    let start = s.find(['"', '`']).ok_or("missing quoted log line")?;
    let q = &s[start..start + 1];
    let end = s[start + 1..]
        .find(q)
        .ok_or("unterminated quoted log line")?
        + start
        + 1;
    Ok((s[start + 1..end].to_string(), &s[end + 1..]))
}

fn parse_metadata(inner: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = if let Some(r) = rest.strip_prefix('"') {
            let e = r.find('"').ok_or("bad metadata key")?;
            (r[..e].to_string(), &r[e + 1..])
        } else {
            let e = rest.find('=').ok_or("bad metadata")?;
            (rest[..e].to_string(), &rest[e..])
        };
        let after = after
            .strip_prefix("=\"")
            .ok_or(format!("bad metadata {inner:?}"))?;
        let e = after.find('"').ok_or("bad metadata value")?;
        out.push((key, after[..e].to_string()));
        rest = after[e + 1..].trim_start();
    }
    if out.is_empty() {
        return Err("empty [metadata ...] block".into());
    }
    Ok(out)
}

fn load_line(store: &MemLogStore, line: &str) -> Result<(), String> {
    let line = line.trim();
    let end = line.find('}').ok_or("expected stream labels")?;
    let labels = Labels::from_pairs(parse_label_set(&line[..=end])?);
    let (message, rest) = split_quoted(&line[end + 1..])?;
    let rest = rest
        .trim_start()
        .strip_prefix('@')
        .ok_or("missing '@ <start>'")?
        .trim_start();
    let ts_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let start = go_duration(&rest[..ts_end])?;
    let mut rest = rest[ts_end..].trim_start();
    let (mut step, mut count) = (0i64, 1usize);
    if let Some(r) = rest.strip_prefix("[repeat every") {
        let close = r.find(']').ok_or("bad repeat")?;
        let parts: Vec<&str> = r[..close].split_whitespace().collect();
        if parts.len() != 3 || parts[1] != "for" {
            return Err(format!("bad repeat clause {r:?}"));
        }
        step = go_duration(parts[0])?;
        count = parts[2].parse().map_err(|_| "bad repeat count")?;
        rest = r[close + 1..].trim_start();
    }
    let mut metadata = Vec::new();
    if let Some(r) = rest.strip_prefix("[metadata") {
        let close = r.rfind(']').ok_or("bad metadata")?;
        metadata = parse_metadata(&r[..close])?;
        rest = r[close + 1..].trim_start();
    }
    if !rest.is_empty() {
        return Err(format!("unexpected content after log line: {rest:?}"));
    }
    for i in 0..count {
        store.push(
            &labels,
            LogEntry {
                ts_ns: EPOCH_NS + start + i as i64 * step,
                line: message.replace("{{.i}}", &i.to_string()),
                structured_metadata: metadata.clone(),
            },
        );
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Expect {
    fail: Option<(u8, String)>, // 0 any, 1 msg, 2 regex
    empty: bool,
    ordered: bool,
    scalar: Option<f64>,
    series: Vec<(LabelSet, Vec<Option<f64>>)>,
}

fn parse_float(s: &str) -> Result<f64, String> {
    match s {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => s.parse().map_err(|_| format!("bad number {s:?}")),
    }
}

fn parse_samples(tokens: &[&str]) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for tok in tokens {
        if *tok == "_" {
            out.push(None);
        } else if let Some(x) = tok.find('x') {
            let (head, tail) = (&tok[..x], &tok[x + 1..]);
            let count: usize = tail.parse().map_err(|_| format!("bad count in {tok}"))?;
            let (base, step) = if let Some(p) = head.rfind('+').filter(|p| *p > 0) {
                (&head[..p], &head[p + 1..])
            } else if let Some(p) = head.rfind('-').filter(|p| *p > 0) {
                (&head[..p], &head[p..])
            } else {
                (head, "0")
            };
            let (b, s) = (parse_float(base)?, parse_float(step)?);
            for i in 0..=count {
                out.push(Some(b + i as f64 * s));
            }
        } else {
            out.push(Some(parse_float(tok)?));
        }
    }
    Ok(out)
}

fn parse_expect(lines: &[String]) -> Result<Expect, String> {
    let mut e = Expect::default();
    for l in lines {
        if let Some(body) = l.strip_prefix("expect fail") {
            let body = body.trim();
            e.fail = Some(if body.is_empty() {
                (0, String::new())
            } else if let Some(m) = body.strip_prefix("msg:") {
                (1, m.trim().to_string())
            } else if let Some(r) = body.strip_prefix("regex:") {
                (2, r.trim().to_string())
            } else {
                return Err(format!("bad expect fail {l:?}"));
            });
        } else if l == "expect empty" {
            e.empty = true;
        } else if l == "expect ordered" {
            e.ordered = true;
        } else if l.starts_with("skip ") || l.starts_with("expect values-toleration") {
            // Directives for Loki's sharding stacks; this engine is the direct stack.
        } else if l.starts_with("expect ") {
            return Err(format!("unsupported expectation {l:?}"));
        } else if l.starts_with('{') {
            let end = l.find('}').ok_or("bad series line")?;
            let labels = LabelSet::new(parse_label_set(&l[..=end])?);
            let toks: Vec<&str> = l[end + 1..].split_whitespace().collect();
            e.series.push((labels, parse_samples(&toks)?));
        } else {
            e.scalar = Some(parse_float(l)?);
        }
    }
    Ok(e)
}

fn floats_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    let d = (a - b).abs();
    d <= 1e-9 || d / a.abs().max(b.abs()) <= 1e-9
}

struct Eval {
    instant: bool,
    t: i64,
    start: i64,
    end: i64,
    step: i64,
    query: String,
}

fn parse_eval(line: &str) -> Result<Eval, String> {
    let rest = line.trim_start_matches("eval").trim();
    if let Some(r) = rest.strip_prefix("instant") {
        let r = r
            .trim()
            .strip_prefix("at")
            .ok_or("malformed eval instant")?
            .trim_start();
        let sp = r
            .find(char::is_whitespace)
            .ok_or("malformed eval instant")?;
        Ok(Eval {
            instant: true,
            t: go_duration(&r[..sp])?,
            start: 0,
            end: 0,
            step: 0,
            query: r[sp..].trim().to_string(),
        })
    } else if let Some(r) = rest.strip_prefix("range") {
        let parts: Vec<&str> = r.split_whitespace().collect();
        if parts.len() < 7 || parts[0] != "from" || parts[2] != "to" || parts[4] != "step" {
            return Err(format!("malformed eval range {line:?}"));
        }
        // Skip the six leading words to find where the query starts.
        let mut query_at = 0;
        for w in &parts[..6] {
            query_at = r[query_at..]
                .find(w)
                .map(|i| query_at + i + w.len())
                .ok_or("malformed eval range")?;
        }
        Ok(Eval {
            instant: false,
            t: 0,
            start: go_duration(parts[1])?,
            end: go_duration(parts[3])?,
            step: go_duration(parts[5])?,
            query: r[query_at..].trim().to_string(),
        })
    } else {
        Err(format!("unsupported eval {line:?}"))
    }
}

fn check(engine: &LogqlEngine, store: &MemLogStore, ev: &Eval, exp: &Expect) -> Result<(), String> {
    let res = if ev.instant {
        engine.query_instant(store, &ev.query, EPOCH_NS + ev.t)
    } else {
        engine.query_range(
            store,
            &ev.query,
            EPOCH_NS + ev.start,
            EPOCH_NS + ev.end,
            Duration::from_nanos(ev.step as u64),
            None,
            Direction::Forward,
            1000,
        )
    };
    if let Some((kind, text)) = &exp.fail {
        let err = match res {
            Ok(v) => return Err(format!("expected failure, got {v:?}")),
            Err(e) => e.to_string(),
        };
        return match kind {
            1 if !err.contains(text.as_str()) => {
                Err(format!("error {err:?} does not contain {text:?}"))
            }
            2 if !regex::Regex::new(text)
                .map_err(|e| e.to_string())?
                .is_match(&err) =>
            {
                Err(format!("error {err:?} does not match /{text}/"))
            }
            _ => Ok(()),
        };
    }
    let v = res.map_err(|e| format!("unexpected error: {e}"))?;
    match v {
        QueryValue::Scalar { v, .. } => {
            let Some(want) = exp.scalar else {
                return Err(format!("got scalar {v}, expected other"));
            };
            if !floats_equal(want, v) {
                return Err(format!("scalar: want {want}, got {v}"));
            }
            Ok(())
        }
        QueryValue::Vector(vec) => {
            if exp.empty {
                return if vec.is_empty() {
                    Ok(())
                } else {
                    Err(format!("expected empty, got {vec:?}"))
                };
            }
            if exp.scalar.is_some() {
                return Err("expected a scalar, got a vector".into());
            }
            if vec.iter().any(|s| s.t_ns != EPOCH_NS + ev.t) {
                return Err("vector sample at the wrong timestamp".into());
            }
            if exp.ordered {
                if vec.len() != exp.series.len() {
                    return Err(format!(
                        "series count: want {}, got {}",
                        exp.series.len(),
                        vec.len()
                    ));
                }
                for (i, (l, s)) in exp.series.iter().enumerate() {
                    if vec[i].labels != *l
                        || s.len() != 1
                        || !s[0].is_some_and(|w| floats_equal(w, vec[i].v))
                    {
                        return Err(format!(
                            "position {i}: want {l} {s:?}, got {} {}",
                            vec[i].labels, vec[i].v
                        ));
                    }
                }
                return Ok(());
            }
            if vec.len() != exp.series.len() {
                let got: Vec<String> = vec
                    .iter()
                    .map(|s| format!("{} {}", s.labels, s.v))
                    .collect();
                return Err(format!(
                    "series count: want {}, got {} {got:?}",
                    exp.series.len(),
                    vec.len()
                ));
            }
            for (l, s) in &exp.series {
                if s.len() != 1 || s[0].is_none() {
                    return Err(format!("bad instant expectation for {l}"));
                }
                let Some(got) = vec.iter().find(|g| g.labels == *l) else {
                    let got: Vec<String> = vec
                        .iter()
                        .map(|s| format!("{} {}", s.labels, s.v))
                        .collect();
                    return Err(format!("missing series {l}; got {got:?}"));
                };
                if !s[0].is_some_and(|w| floats_equal(w, got.v)) {
                    return Err(format!("series {l}: want {:?}, got {}", s[0], got.v));
                }
            }
            Ok(())
        }
        QueryValue::Matrix(m) => {
            if exp.empty {
                return if m.is_empty() {
                    Ok(())
                } else {
                    Err(format!("expected empty, got {m:?}"))
                };
            }
            if exp.scalar.is_some() {
                return Err("expected a scalar, got a matrix".into());
            }
            let steps: Vec<i64> = (0..)
                .map(|i| ev.start + i * ev.step)
                .take_while(|t| *t <= ev.end)
                .map(|t| EPOCH_NS + t)
                .collect();
            if m.len() != exp.series.len() {
                let got: Vec<String> = m
                    .iter()
                    .map(|s| format!("{} {:?}", s.labels, s.points))
                    .collect();
                return Err(format!(
                    "series count: want {}, got {} {got:?}",
                    exp.series.len(),
                    m.len()
                ));
            }
            for (l, want) in &exp.series {
                if want.len() != steps.len() {
                    return Err(format!(
                        "series {l}: {} points for {} steps",
                        want.len(),
                        steps.len()
                    ));
                }
                let Some(got) = m.iter().find(|g| g.labels == *l) else {
                    let got: Vec<String> = m.iter().map(|s| s.labels.to_string()).collect();
                    return Err(format!("missing series {l}; got {got:?}"));
                };
                for (i, w) in want.iter().enumerate() {
                    let g = got.points.iter().find(|p| p.0 == steps[i]).map(|p| p.1);
                    match (w, g) {
                        (None, None) => {}
                        (Some(w), Some(g)) if floats_equal(*w, g) => {}
                        _ => {
                            return Err(format!(
                                "series {l} step {i}: want {w:?}, got {g:?} (all {:?})",
                                got.points
                            ));
                        }
                    }
                }
                if got.points.iter().any(|p| !steps.contains(&p.0)) {
                    return Err(format!("series {l} has points off the step grid"));
                }
            }
            Ok(())
        }
        QueryValue::Streams(s) => Err(format!(
            "got log streams ({} streams) for a metric eval",
            s.len()
        )),
    }
}

fn run_file(engine: &LogqlEngine, text: &str, verbose: bool, name: &str) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let store = MemLogStore::new();
    let (mut passed, mut total) = (0, 0);
    let mut i = 0;
    // Indented, non-comment lines following line i.
    let block = |i: &mut usize| -> Vec<String> {
        let mut out = Vec::new();
        while *i < lines.len() {
            let raw = lines[*i];
            if raw.trim().is_empty() {
                break;
            }
            if raw.trim_start().starts_with('#') {
                *i += 1;
                continue;
            }
            if !raw.starts_with(' ') && !raw.starts_with('\t') {
                break;
            }
            let c = strip_comment(raw).trim();
            if !c.is_empty() {
                out.push(c.to_string());
            }
            *i += 1;
        }
        out
    };
    while i < lines.len() {
        let t = strip_comment(lines[i]).trim();
        if t.is_empty() {
            i += 1;
            continue;
        }
        let word = t.split_whitespace().next().unwrap_or("");
        match word {
            "clear" => {
                store.clear();
                i += 1;
            }
            "load" => {
                i += 1;
                for l in block(&mut i) {
                    if let Err(e) = load_line(&store, &l) {
                        eprintln!("{name}: bad load line {l:?}: {e}");
                    }
                }
            }
            "flush" => i += 1,
            "eval" => {
                let head = t.to_string();
                i += 1;
                let exp_lines = block(&mut i);
                total += 1;
                let outcome = match (parse_eval(&head), parse_expect(&exp_lines)) {
                    (Ok(ev), Ok(exp)) => {
                        match catch_unwind(AssertUnwindSafe(|| check(engine, &store, &ev, &exp))) {
                            Ok(r) => r,
                            Err(_) => Err("panicked".to_string()),
                        }
                    }
                    (Err(e), _) | (_, Err(e)) => Err(format!("cannot parse case: {e}")),
                };
                match outcome {
                    Ok(()) => passed += 1,
                    Err(e) => {
                        if verbose {
                            println!("FAIL {name}:{}: {head}\n    {e}", i);
                        }
                    }
                }
            }
            other => {
                eprintln!("{name}: unexpected command {other:?}");
                i += 1;
            }
        }
    }
    (passed, total)
}

#[test]
fn logql_peer_corpus() {
    let dir = corpus_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        if std::env::var("LOOKOUT_ALLOW_MISSING_PEER_TESTS").as_deref() == Ok("1") {
            eprintln!("LogQL peer corpus missing at {}; skipped", dir.display());
            return;
        }
        panic!(
            "LogQL peer corpus missing at {} (set LOOKOUT_ALLOW_MISSING_PEER_TESTS=1 to skip)",
            dir.display()
        );
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "logqltest"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no .logqltest files in {}",
        dir.display()
    );
    let verbose = std::env::var("LOOKOUT_LOGQL_PEER_VERBOSE").as_deref() == Ok("1");
    let engine = LogqlEngine::new(EngineOptions::default());
    let (mut passed, mut total) = (0, 0);
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text =
            std::fs::read_to_string(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        let (p, t) = run_file(&engine, &text, verbose, &name);
        println!("{name:<32} {p:>4}/{t:<4}");
        passed += p;
        total += t;
    }
    let rate = passed as f64 / total.max(1) as f64;
    println!(
        "{:<32} {passed:>4}/{total:<4} ({:.1}%)",
        "TOTAL",
        rate * 100.0
    );
    assert!(
        rate >= FLOOR,
        "LogQL peer pass rate {:.3} fell below the floor {FLOOR}",
        rate
    );
}
