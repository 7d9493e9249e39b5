//! OpenMetrics strict-mode checks.

/// Validation state carried across lines.
#[derive(Default)]
pub(crate) struct OmState<'a> {
    pub(crate) family: &'a str,
}
