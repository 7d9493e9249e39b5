//! Label sets: sorted by name, unique names, no empty values (an empty value means "absent",
//! as in Prometheus).

use std::fmt;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// An immutable, canonical label set. Two equal sets compare, hash and sort equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub const EMPTY: Labels = Labels(Vec::new());

    /// Builds a canonical set: sorts by name, drops empty values; for duplicate names the
    /// last one given wins.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        // Stable sort keeps input order among equal names; keep the last of each run.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(labels.len());
        for l in labels {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        Labels(out)
    }

    /// Builds from `(name, value)` pairs; see [`Labels::new`].
    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        Labels::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    /// Wraps labels the caller guarantees are already canonical (sorted, unique, non-empty).
    /// Checked in debug builds.
    pub fn from_sorted_unchecked(labels: Vec<Label>) -> Self {
        debug_assert!(
            labels.windows(2).all(|w| w[0].name < w[1].name),
            "labels not sorted/unique"
        );
        debug_assert!(
            labels.iter().all(|l| !l.value.is_empty()),
            "empty label value"
        );
        Labels(labels)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    /// The value of `name`, or `""` when absent (the matcher convention).
    pub fn get_or_empty(&self, name: &str) -> &str {
        self.get(name).unwrap_or("")
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// A copy without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        self.without(&[METRIC_NAME])
    }

    /// A copy without the given names.
    pub fn without(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// A copy keeping only the given names.
    pub fn keep_only(&self, names: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name.as_str()))
                .cloned()
                .collect(),
        )
    }

    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// Bytes held by names and values (a cheap size estimate for limits).
    pub fn byte_size(&self) -> usize {
        self.0.iter().map(|l| l.name.len() + l.value.len()).sum()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Prometheus's string form: `{__name__="up", job="x"}`, values quoted and escaped.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}=", l.name)?;
            write_quoted(f, &l.value)?;
        }
        f.write_str("}")
    }
}

/// Writes `s` as a double-quoted string with Go-style escapes for `\`, `"`, newline and
/// control characters.
pub fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if (c as u32) < 0x20 || c as u32 == 0x7f => write!(f, "\\x{:02x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

/// Mutable label set used to derive one set from another (relabelling, aggregation).
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new() -> Self {
        LabelsBuilder::default()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        if value.is_empty() {
            return self.del(&name);
        }
        match self.labels.iter_mut().find(|l| l.name == name) {
            Some(l) => l.value = value,
            None => self.labels.push(Label { name, value }),
        }
        self
    }

    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| l.name != name);
        self
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&Label) -> bool) -> &mut Self {
        self.labels.retain(|l| keep(l));
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.labels.iter()
    }

    pub fn build(&self) -> Labels {
        Labels::new(self.labels.clone())
    }

    pub fn into_labels(self) -> Labels {
        Labels::new(self.labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_dedups_and_drops_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]);
        assert_eq!(l, Labels::from_pairs([("a", "3"), ("b", "2")]));
        assert_eq!(l.get("a"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.get_or_empty("c"), "");
    }

    #[test]
    fn display_matches_prometheus() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "a\"b\\c\nd")]);
        assert_eq!(l.to_string(), r#"{__name__="up", job="a\"b\\c\nd"}"#);
    }

    #[test]
    fn builder_set_and_delete() {
        let base = Labels::from_pairs([("a", "1"), ("b", "2")]);
        let mut b = base.builder();
        b.set("c", "3").set("a", "").del("b");
        assert_eq!(b.build(), Labels::from_pairs([("c", "3")]));
    }
}
