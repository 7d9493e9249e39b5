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
    let mut out = String::new();
    let mut ok = true;
    let mut total = 0;
    for p in paths {
        let _ = writeln!(out, "Checking {}", p.display());
        match load_file(p, language) {
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
                let _ = writeln!(out, "  SUCCESS: {n} rules found\n");
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
