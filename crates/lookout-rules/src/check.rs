//! `check rules`: promtool's report for rule files (exit status is the caller's: failure
//! when [`CheckReport::ok`] is false).

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::file::{Language, load_file};

#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    /// Text to print on stdout, as promtool prints it.
    pub output: String,
    pub ok: bool,
    pub rules: usize,
}

/// Checks each file (PromQL by default; groups may declare `query_language: logql`).
pub fn check_rule_files(paths: &[PathBuf], language: Language) -> CheckReport {
    check(paths, language, false)
}

/// As [`check_rule_files`] with PromQL, except that a file that is invalid as PromQL but
/// valid as LogQL (a Loki ruler file) passes, reported as LogQL.
pub fn check_rule_files_any_language(paths: &[PathBuf]) -> CheckReport {
    check(paths, Language::Promql, true)
}

fn check(paths: &[PathBuf], language: Language, try_logql: bool) -> CheckReport {
    let mut out = String::new();
    let mut ok = true;
    let mut total = 0;
    for p in paths {
        let _ = writeln!(out, "Checking {}", p.display());
        let mut loaded = load_file(p, language);
        let mut note = "";
        if try_logql
            && language == Language::Promql
            && let Err(promql_err) = &loaded
        {
            match load_file(p, Language::Logql) {
                Ok(f) => {
                    loaded = Ok(f);
                    note = " (LogQL)";
                }
                Err(logql_err) if logql_err != *promql_err => {
                    loaded = Err(crate::file::RuleFileError::Invalid {
                        file: p.clone(),
                        line: None,
                        column: None,
                        message: format!("{promql_err}\n  as LogQL: {logql_err}"),
                    });
                }
                Err(_) => {}
            }
        }
        match loaded {
            Ok(f) => {
                let dups = f.duplicate_recording_rules();
                if !dups.is_empty() {
                    let _ = writeln!(out, "{} duplicate rule(s) found.", dups.len());
                    for (name, labels) in &dups {
                        let _ = writeln!(out, "Metric: {name}\nLabel(s):");
                        for (k, v) in labels {
                            let _ = writeln!(out, "\t{k}: {v}");
                        }
                    }
                    let _ = writeln!(
                        out,
                        "Might cause inconsistency while recording expressions."
                    );
                }
                let n = f.rule_count();
                total += n;
                let _ = writeln!(out, "  SUCCESS: {n} rules found{note}\n");
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(out, "  FAILED:\n{e}\n");
            }
        }
    }
    CheckReport {
        output: out,
        ok,
        rules: total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_success_and_failure() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yml");
        std::fs::write(&good, "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n  - record: a\n    expr: up\n").unwrap();
        let bad = dir.path().join("bad.yml");
        std::fs::write(
            &bad,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(up)\n",
        )
        .unwrap();
        let r = check_rule_files(std::slice::from_ref(&good), Language::Promql);
        assert!(r.ok);
        assert!(
            r.output.contains("1 duplicate rule(s) found."),
            "{}",
            r.output
        );
        assert!(r.output.contains("SUCCESS: 2 rules found"));
        let logql = dir.path().join("logs.yml");
        std::fs::write(
            &logql,
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: sum(count_over_time({a=\"b\"} |= `x` [1m])) > 1\n",
        )
        .unwrap();
        assert!(!check_rule_files(std::slice::from_ref(&logql), Language::Promql).ok);
        let r = check_rule_files_any_language(&[good.clone(), logql]);
        assert!(r.ok, "{}", r.output);
        assert!(
            r.output.contains("SUCCESS: 1 rules found (LogQL)"),
            "{}",
            r.output
        );
        let r = check_rule_files_any_language(std::slice::from_ref(&bad));
        assert!(!r.ok && r.output.contains("as LogQL:"), "{}", r.output);
        let r = check_rule_files(&[good, bad], Language::Promql);
        assert!(!r.ok);
        assert!(r.output.contains("FAILED:"), "{}", r.output);
        assert!(
            r.output.contains("bad.yml: 4: group \"g\", rule 1, \"A\""),
            "{}",
            r.output
        );
    }
}
