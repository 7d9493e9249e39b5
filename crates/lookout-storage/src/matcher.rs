//! Label matchers (`=`, `!=`, `=~`, `!~`) with Prometheus's semantics: regexes are fully
//! anchored, and a missing label matches as the empty string.

use regex::Regex;
use std::fmt;

use crate::labels::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regular expression {pattern:?} for label {name:?}: {source}")]
pub struct MatcherError {
    pub name: String,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(compile_anchored(&value).map_err(|source| MatcherError {
                    name: name.clone(),
                    pattern: value.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name="value"`; never fails.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            re: None,
        }
    }

    pub fn not_equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Matcher {
            name: name.into(),
            op: MatchOp::NotEqual,
            value: value.into(),
            re: None,
        }
    }

    /// Does `value` (the label's value, `""` when absent) satisfy this matcher?
    #[inline]
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => self.value == value,
            MatchOp::NotEqual => self.value != value,
            MatchOp::Regex => self.re.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.re.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get_or_empty(&self.name))
    }

    /// True when this matcher accepts the empty string, i.e. also series lacking the label.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// The compiled, anchored regex for `=~`/`!~` matchers.
    pub fn regex(&self) -> Option<&Regex> {
        self.re.as_ref()
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, self.op)?;
        crate::labels::write_quoted(f, &self.value)
    }
}

/// Compiles `pattern` anchored at both ends, with `.` matching newlines as in Prometheus.
pub fn compile_anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{pattern})$"))
}

/// True when every matcher accepts `labels`.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_anchored_and_missing_label_is_empty() {
        let m = Matcher::new(MatchOp::Regex, "job", "api").unwrap();
        assert!(m.matches("api"));
        assert!(!m.matches("api-server"));
        let m = Matcher::new(MatchOp::Regex, "job", "a|").unwrap();
        assert!(m.matches_labels(&Labels::EMPTY));
        let m = Matcher::new(MatchOp::NotEqual, "job", "").unwrap();
        assert!(!m.matches_labels(&Labels::EMPTY));
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let e = Matcher::new(MatchOp::Regex, "job", "(").unwrap_err();
        assert!(e.to_string().contains("job"));
    }
}
