//! Runs OpenMetrics' own parser test corpus (`../shared/peer-tests/openmetrics`): every case
//! folder holds `metrics` and `test.json` with `shouldParse`; strict parsing must accept exactly
//! the cases marked `true`. Prometheus-compatible parsing, being more lenient, must accept every
//! one of those too.

use std::path::{Path, PathBuf};

use lookout_exposition::{Entry, Format, ParseMode, Parser};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/peer-tests/openmetrics")
}

/// Parses the whole input; `Err` carries the parser's message.
fn parse_all(input: &[u8], mode: ParseMode) -> Result<usize, String> {
    let mut p = Parser::with_mode(input, Format::OpenMetrics, mode);
    let mut samples = 0;
    while let Some(e) = p.next_entry().map_err(|e| e.to_string())? {
        if let Entry::Sample(s) = e {
            // Touch everything a consumer would read.
            samples += s.labels().count().min(1);
            let _ = (
                s.name(),
                s.value(),
                s.timestamp_ms(),
                s.exemplar().map(|e| e.labels().count()),
            );
        }
    }
    Ok(samples)
}

#[test]
fn openmetrics_peer_cases() {
    let dir = corpus_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        if std::env::var("LOOKOUT_ALLOW_MISSING_PEER_TESTS").as_deref() == Ok("1") {
            eprintln!(
                "openmetrics peer corpus missing at {}; skipped (LOOKOUT_ALLOW_MISSING_PEER_TESTS=1)",
                dir.display()
            );
            return;
        }
        panic!(
            "openmetrics peer corpus missing at {} (set LOOKOUT_ALLOW_MISSING_PEER_TESTS=1 to skip)",
            dir.display()
        );
    };
    let mut cases: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());

    let mut matched = 0;
    let mut mismatches = Vec::new();
    let mut compat_accepted_invalid = 0;
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let spec_text =
            std::fs::read_to_string(case.join("test.json")).expect("test.json readable");
        let spec: serde_json::Value = serde_json::from_str(&spec_text).expect("test.json is JSON");
        let should_parse = spec["shouldParse"]
            .as_bool()
            .expect("shouldParse is a boolean");
        let file = spec["file"].as_str().unwrap_or("metrics");
        let input = std::fs::read(case.join(file)).expect("metrics readable");
        let got = parse_all(&input, ParseMode::Strict);
        let compat = parse_all(&input, ParseMode::PrometheusCompatible);
        if should_parse && let Err(e) = &compat {
            let line = format!("MISMATCH {name}: valid, but rejected in compatible mode: {e}");
            println!("{line}");
            mismatches.push(line);
        }
        if !should_parse && compat.is_ok() {
            compat_accepted_invalid += 1;
        }
        if got.is_ok() == should_parse {
            matched += 1;
        } else {
            let detail = match &got {
                Ok(_) => "accepted".to_owned(),
                Err(e) => format!("rejected: {e}"),
            };
            let line = format!("MISMATCH {name}: shouldParse={should_parse}, {detail}");
            println!("{line}");
            mismatches.push(line);
        }
    }
    println!(
        "openmetrics peer cases: {matched}/{} verdicts matched",
        cases.len()
    );
    println!("prometheus-compatible mode accepts {compat_accepted_invalid} of the invalid cases");
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
