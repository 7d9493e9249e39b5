//! Prometheus relabelling: `relabel_configs`, `metric_relabel_configs`,
//! `write_relabel_configs` and `alert_relabel_configs` all share [`RelabelConfig`].
//!
//! Semantics follow Prometheus 3: the source label values are joined with `separator`,
//! matched against a fully anchored `regex` in which `.` also matches newlines, and the
//! `action` decides what happens. `replacement` and (for `replace`) `target_label` are
//! expanded like Go's `Regexp.Expand`: `$1`, `${1}`, `$name`, `${name}`, `$$` for a literal
//! dollar; the longest run of word characters after `$` is the group name (`$1x` is group
//! `1x`), and unknown groups expand to the empty string.
//!
//! Regex dialect: patterns are compiled with Rust's `regex` crate, which accepts the RE2
//! syntax Prometheus uses with these known differences: `\d`, `\w`, `\s` and `\b` are
//! Unicode-aware here (ASCII-only in Go unless the pattern opts in), and Go-only escapes
//! such as `\C` are rejected at load time. Everything else (classes, repetition, named
//! groups `(?P<name>...)`, flags) behaves the same.
//!
//! [`relabel`] applies a list to an immutable label set; [`process_builder`] works in place
//! on a reusable [`LabelsBuilder`] so callers on hot paths (the scrape loop, on a cache miss)
//! avoid an extra copy; an empty list returns immediately.

use std::fmt;

use lookout_storage::{Label, Labels, LabelsBuilder};
use md5::{Digest, Md5};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The default `regex`: matches everything and captures it as group 1.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `replacement`.
pub const DEFAULT_REPLACEMENT: &str = "$1";
/// The default `separator`.
pub const DEFAULT_SEPARATOR: &str = ";";

/// A configuration error, worded as Prometheus words it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RelabelError {
    #[error("relabel configuration for hashmod requires non-zero modulus")]
    ZeroModulus,
    #[error("relabel configuration for {0} action requires 'target_label' value")]
    MissingTargetLabel(Action),
    #[error("{label:?} is invalid 'target_label' for {action} action")]
    InvalidTargetLabel { label: String, action: Action },
    #[error("'replacement' can not be set for {0} action")]
    ReplacementNotAllowed(Action),
    #[error("{replacement:?} is invalid 'replacement' for {action} action")]
    InvalidReplacement { replacement: String, action: Action },
    #[error("{0} action requires only 'source_labels' and `target_label`, and no other fields")]
    EqualActionExtraFields(Action),
    #[error("{0} action requires only 'regex', and no other fields")]
    LabelFilterExtraFields(Action),
}

/// Which label names are acceptable (Prometheus's `metric_name_validation_scheme`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameValidation {
    /// Any non-empty UTF-8 string (Prometheus 3 default).
    #[default]
    Utf8,
    /// `[a-zA-Z_][a-zA-Z0-9_]*`.
    Legacy,
}

impl NameValidation {
    /// Is `name` a valid label name under this scheme?
    pub fn is_valid_label_name(self, name: &str) -> bool {
        match self {
            NameValidation::Utf8 => !name.is_empty(),
            NameValidation::Legacy => is_legacy_label_name(name),
        }
    }

    /// Is `s` a valid label name once its `$var`/`${var}` references are expanded?
    fn is_valid_template(self, s: &str) -> bool {
        match self {
            NameValidation::Utf8 => !s.is_empty(),
            NameValidation::Legacy => is_legacy_template(s),
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A legacy label name in which `$name` / `${name}` references may stand for characters:
/// the first element is a letter, `_` or a reference; then word characters or references.
fn is_legacy_template(s: &str) -> bool {
    let b = s.as_bytes();
    let is_word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    let mut first = true;
    while i < b.len() {
        if b[i] == b'$' {
            i += 1;
            if i < b.len() && b[i] == b'{' {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && is_word(b[j]) {
                    j += 1;
                }
                if j == start || j >= b.len() || b[j] != b'}' {
                    return false;
                }
                i = j + 1;
            } else {
                let start = i;
                while i < b.len() && is_word(b[i]) {
                    i += 1;
                }
                if i == start {
                    return false;
                }
            }
        } else if first {
            if !(b[i].is_ascii_alphabetic() || b[i] == b'_') {
                return false;
            }
            i += 1;
        } else {
            if !is_word(b[i]) {
                return false;
            }
            i += 1;
        }
        first = false;
    }
    !first
}

/// What a relabel step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    pub const ALL: [Action; 11] = [
        Action::Replace,
        Action::Keep,
        Action::Drop,
        Action::KeepEqual,
        Action::DropEqual,
        Action::HashMod,
        Action::LabelMap,
        Action::LabelDrop,
        Action::LabelKeep,
        Action::Lowercase,
        Action::Uppercase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Case-insensitive, as Prometheus parses it.
    pub fn parse(s: &str) -> Option<Action> {
        let lower = s.to_ascii_lowercase();
        Action::ALL.into_iter().find(|a| a.as_str() == lower)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Action::parse(&s).ok_or_else(|| de::Error::custom(format!("unknown relabel action {s:?}")))
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A fully anchored regular expression that remembers the text it was written as.
#[derive(Clone)]
pub struct Regex {
    source: String,
    re: regex::Regex,
}

impl Regex {
    /// Compiles `pattern` as `^(?s:pattern)$`.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let re = lookout_storage::matcher::compile_anchored(pattern)?;
        Ok(Regex {
            source: pattern.to_string(),
            re,
        })
    }

    /// The pattern as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled, anchored regex.
    pub fn regex(&self) -> &regex::Regex {
        &self.re
    }

    #[inline]
    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }

    fn is_default(&self) -> bool {
        self.source == DEFAULT_REGEX
    }
}

impl Default for Regex {
    fn default() -> Self {
        // The default pattern is a constant that always compiles; build the value directly
        // from a literal the regex crate accepts.
        match Regex::new(DEFAULT_REGEX) {
            Ok(r) => r,
            Err(e) => unreachable!("default relabel regex must compile: {e}"),
        }
    }
}

impl PartialEq for Regex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Regex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.source)
    }
}

impl<'de> Deserialize<'de> for Regex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_any(StringLike)?;
        Regex::new(&s).map_err(|e| de::Error::custom(format!("invalid regex {s:?}: {e}")))
    }
}

impl Serialize for Regex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// Accepts a YAML scalar of any kind as its string form (`regex: 200` is the string "200"),
/// and null as the empty string, as Go's YAML decoder does for string fields.
struct StringLike;

impl Visitor<'_> for StringLike {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }
}

fn string_like<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(StringLike)
}

/// One relabelling step, with Prometheus's defaults (`action: replace`, `separator: ";"`,
/// `regex: (.*)`, `replacement: $1`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    #[serde(deserialize_with = "string_like")]
    pub separator: String,
    pub regex: Regex,
    pub modulus: u64,
    #[serde(deserialize_with = "string_like")]
    pub target_label: String,
    #[serde(deserialize_with = "string_like")]
    pub replacement: String,
    pub action: Action,
    /// Set by the owning configuration (`metric_name_validation_scheme`); not YAML.
    #[serde(skip)]
    pub name_validation: NameValidation,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: Vec::new(),
            separator: DEFAULT_SEPARATOR.to_string(),
            regex: Regex::default(),
            modulus: 0,
            target_label: String::new(),
            replacement: DEFAULT_REPLACEMENT.to_string(),
            action: Action::Replace,
            name_validation: NameValidation::Utf8,
        }
    }
}

impl RelabelConfig {
    /// Checks the step as Prometheus does when loading a configuration.
    pub fn validate(&self) -> Result<(), RelabelError> {
        use Action::*;
        let a = self.action;
        let scheme = self.name_validation;
        if a == HashMod && self.modulus == 0 {
            return Err(RelabelError::ZeroModulus);
        }
        if matches!(
            a,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        ) && self.target_label.is_empty()
        {
            return Err(RelabelError::MissingTargetLabel(a));
        }
        let invalid_target = || RelabelError::InvalidTargetLabel {
            label: self.target_label.clone(),
            action: a,
        };
        if a == Replace {
            let ok = if self.target_label.contains('$') {
                scheme.is_valid_template(&self.target_label)
            } else {
                scheme.is_valid_label_name(&self.target_label)
            };
            if !ok {
                return Err(invalid_target());
            }
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual | HashMod)
            && !scheme.is_valid_label_name(&self.target_label)
        {
            return Err(invalid_target());
        }
        if matches!(a, Lowercase | Uppercase | KeepEqual | DropEqual)
            && self.replacement != DEFAULT_REPLACEMENT
        {
            return Err(RelabelError::ReplacementNotAllowed(a));
        }
        if a == LabelMap && !scheme.is_valid_template(&self.replacement) {
            return Err(RelabelError::InvalidReplacement {
                replacement: self.replacement.clone(),
                action: a,
            });
        }
        if matches!(a, KeepEqual | DropEqual)
            && (!self.regex.is_default()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(RelabelError::EqualActionExtraFields(a));
        }
        if matches!(a, LabelDrop | LabelKeep)
            && (!self.source_labels.is_empty()
                || !self.target_label.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || self.replacement != DEFAULT_REPLACEMENT)
        {
            return Err(RelabelError::LabelFilterExtraFields(a));
        }
        Ok(())
    }

    /// Joins the source label values with the separator into `out`.
    fn source_value(&self, b: &LabelsBuilder, out: &mut String) {
        out.clear();
        for (i, name) in self.source_labels.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            out.push_str(b.get(name).unwrap_or(""));
        }
    }

    /// Applies this step to `b`; false means the label set is dropped.
    fn apply(&self, b: &mut LabelsBuilder, scratch: &mut String) -> bool {
        self.source_value(b, scratch);
        let val = scratch.as_str();
        match self.action {
            Action::Drop => {
                if self.regex.is_match(val) {
                    return false;
                }
            }
            Action::Keep => {
                if !self.regex.is_match(val) {
                    return false;
                }
            }
            Action::DropEqual => {
                if b.get(&self.target_label).unwrap_or("") == val {
                    return false;
                }
            }
            Action::KeepEqual => {
                if b.get(&self.target_label).unwrap_or("") != val {
                    return false;
                }
            }
            Action::Replace => self.replace(b, val),
            Action::Lowercase => {
                let v = val.to_lowercase();
                b.set(self.target_label.as_str(), v);
            }
            Action::Uppercase => {
                let v = val.to_uppercase();
                b.set(self.target_label.as_str(), v);
            }
            Action::HashMod => {
                let digest = Md5::digest(val.as_bytes());
                let mut tail = [0u8; 8];
                tail.copy_from_slice(&digest[8..16]);
                let m = u64::from_be_bytes(tail) % self.modulus.max(1);
                b.set(self.target_label.as_str(), m.to_string());
            }
            Action::LabelMap => {
                let snapshot: Vec<Label> = b.iter().cloned().collect();
                for l in snapshot {
                    if self.regex.is_match(&l.name) {
                        let name = self
                            .regex
                            .regex()
                            .replace_all(&l.name, self.replacement.as_str());
                        if !name.is_empty() {
                            b.set(name.into_owned(), l.value);
                        }
                    }
                }
            }
            Action::LabelDrop => {
                b.retain(|l| !self.regex.is_match(&l.name));
            }
            Action::LabelKeep => {
                b.retain(|l| self.regex.is_match(&l.name));
            }
        }
        true
    }

    fn replace(&self, b: &mut LabelsBuilder, val: &str) {
        let target_has_var = self.target_label.contains('$');
        let repl_has_var = self.replacement.contains('$');
        // Fast path: a plain "set this label" step on absent sources.
        if val.is_empty() && self.regex.is_default() && !target_has_var && !repl_has_var {
            b.set(self.target_label.as_str(), self.replacement.as_str());
            return;
        }
        let Some(caps) = self.regex.regex().captures(val) else {
            return;
        };
        let target = if target_has_var {
            let mut t = String::new();
            caps.expand(&self.target_label, &mut t);
            t
        } else {
            self.target_label.clone()
        };
        if !self.name_validation.is_valid_label_name(&target) {
            return;
        }
        let mut res = String::new();
        if repl_has_var {
            caps.expand(&self.replacement, &mut res);
        } else {
            res.push_str(&self.replacement);
        }
        if res.is_empty() {
            b.del(&target);
        } else {
            b.set(target, res);
        }
    }
}

/// Applies `configs` in order to a copy of `labels`; `None` when a step drops it.
pub fn relabel(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    if configs.is_empty() {
        return Some(labels.clone());
    }
    let mut b = labels.builder();
    let mut scratch = String::new();
    process_builder_with(&mut b, configs, &mut scratch).then(|| b.into_labels())
}

/// Applies `configs` in order to `b` in place; false when a step drops the set (then `b`
/// is left in an unspecified state).
pub fn process_builder(b: &mut LabelsBuilder, configs: &[RelabelConfig]) -> bool {
    let mut scratch = String::new();
    process_builder_with(b, configs, &mut scratch)
}

/// Like [`process_builder`], reusing `scratch` for the joined source values so a caller
/// relabelling many label sets allocates nothing for it after the first.
pub fn process_builder_with(
    b: &mut LabelsBuilder,
    configs: &[RelabelConfig],
    scratch: &mut String,
) -> bool {
    configs.iter().all(|c| c.apply(b, scratch))
}

/// Validates every step, returning the index and error of the first invalid one.
pub fn validate_all(configs: &[RelabelConfig]) -> Result<(), (usize, RelabelError)> {
    for (i, c) in configs.iter().enumerate() {
        c.validate().map_err(|e| (i, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_template_validity() {
        for (s, ok) in [
            ("-label", false),
            ("label", true),
            ("label${1}", true),
            ("${1}label", true),
            ("${1}", true),
            ("${", false),
            ("$", false),
            ("${}", false),
            ("foo${", false),
            ("$1", true),
            ("asd$2asd", true),
            ("-foo${1}bar-", false),
            ("bar.foo${1}bar", false),
            ("_${1}_", true),
            ("foo${bar}foo", true),
            ("", false),
            ("1abc", false),
        ] {
            assert_eq!(is_legacy_template(s), ok, "{s:?}");
        }
    }

    #[test]
    fn legacy_names() {
        assert!(is_legacy_label_name("_a1"));
        assert!(!is_legacy_label_name("1a"));
        assert!(!is_legacy_label_name("a.b"));
        assert!(!is_legacy_label_name(""));
    }

    #[test]
    fn action_parse_is_case_insensitive() {
        assert_eq!(Action::parse("LabelMap"), Some(Action::LabelMap));
        assert_eq!(Action::parse("nope"), None);
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
    }

    #[test]
    fn regex_is_anchored_and_dot_matches_newline() {
        let r = Regex::new("a.c").unwrap();
        assert!(r.is_match("a\nc"));
        assert!(!r.is_match("xabc"));
        assert!(!r.is_match("abcx"));
    }
}
