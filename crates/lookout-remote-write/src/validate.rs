//! Turning a remote-write label list into a canonical [`Labels`] with Prometheus 3's rules:
//! names are any non-empty UTF-8 (protobuf decoding already guarantees UTF-8 for names and
//! values), no name may repeat, and the series must have a non-empty `__name__`.

use lookout_storage::{Labels, METRIC_NAME};

use crate::proto::Label;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValidationError {
    #[error("invalid label name \"\" in series {series}")]
    EmptyLabelName { series: String },
    #[error("duplicate label name {name:?} in series {series}")]
    DuplicateLabelName { name: String, series: String },
    #[error("series {series} has no metric name (__name__ label)")]
    MissingMetricName { series: String },
}

/// Validates `labels` and returns them as a canonical set (sorted; empty values dropped, as
/// an empty value means "absent" in Prometheus).
pub fn validate_labels(labels: &[Label]) -> Result<Labels, ValidationError> {
    let mut sorted: Vec<&Label> = labels.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(ValidationError::DuplicateLabelName {
                name: pair[0].name.clone(),
                series: series_string(labels),
            });
        }
    }
    if sorted.iter().any(|l| l.name.is_empty()) {
        return Err(ValidationError::EmptyLabelName {
            series: series_string(labels),
        });
    }
    if !sorted
        .iter()
        .any(|l| l.name == METRIC_NAME && !l.value.is_empty())
    {
        return Err(ValidationError::MissingMetricName {
            series: series_string(labels),
        });
    }
    Ok(Labels::from_pairs(
        labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
    ))
}

/// `{a="b", c="d"}` in input order, for error messages.
fn series_string(labels: &[Label]) -> String {
    let mut out = String::from("{");
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{}={:?}", l.name, l.value));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
    }

    #[test]
    fn accepts_utf8_names_and_sorts() {
        let got = validate_labels(&l(&[
            ("job", "x"),
            ("__name__", "up"),
            ("service.name", "ü"),
        ]))
        .unwrap();
        assert_eq!(
            got,
            Labels::from_pairs([("__name__", "up"), ("job", "x"), ("service.name", "ü")])
        );
    }

    #[test]
    fn drops_empty_values() {
        let got = validate_labels(&l(&[("__name__", "up"), ("empty", "")])).unwrap();
        assert_eq!(got, Labels::from_pairs([("__name__", "up")]));
    }

    #[test]
    fn rejects_duplicates_empty_names_and_missing_name() {
        let e = validate_labels(&l(&[("__name__", "up"), ("a", "1"), ("a", "2")])).unwrap_err();
        assert!(
            matches!(e, ValidationError::DuplicateLabelName { ref name, .. } if name == "a"),
            "{e}"
        );
        let e = validate_labels(&l(&[("__name__", "up"), ("", "1")])).unwrap_err();
        assert!(matches!(e, ValidationError::EmptyLabelName { .. }), "{e}");
        let e = validate_labels(&l(&[("job", "x")])).unwrap_err();
        assert!(e.to_string().contains("no metric name"), "{e}");
        let e = validate_labels(&l(&[("__name__", ""), ("job", "x")])).unwrap_err();
        assert!(
            matches!(e, ValidationError::MissingMetricName { .. }),
            "{e}"
        );
    }
}
