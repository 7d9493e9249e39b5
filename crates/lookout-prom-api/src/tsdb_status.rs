//! The data behind `/api/v1/status/tsdb`, supplied by the storage through
//! [`TsdbStatusProvider`].

/// Head block statistics, as Prometheus's `headStats` shows them. An empty head has
/// `min_time == i64::MAX` and `max_time == i64::MIN` (Prometheus reports those values too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadStats {
    pub num_series: u64,
    /// Distinct `name=value` pairs over the head's series.
    pub num_label_pairs: u64,
    pub chunk_count: u64,
    pub min_time: i64,
    pub max_time: i64,
}

impl Default for HeadStats {
    fn default() -> Self {
        HeadStats {
            num_series: 0,
            num_label_pairs: 0,
            chunk_count: 0,
            min_time: i64::MAX,
            max_time: i64::MIN,
        }
    }
}

/// Everything `/api/v1/status/tsdb` answers. Each table is `(name, value)`, sorted by
/// value descending and cut to the requested limit.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TsdbStatus {
    pub head_stats: HeadStats,
    pub series_count_by_metric_name: Vec<(String, u64)>,
    pub label_value_count_by_label_name: Vec<(String, u64)>,
    /// Per label name: value length times series count, summed over its values.
    pub memory_in_bytes_by_label_name: Vec<(String, u64)>,
    /// `name=value` pairs by series count.
    pub series_count_by_label_value_pair: Vec<(String, u64)>,
}

/// Supplies [`TsdbStatus`] for the top `limit` entries of each table (runs on the blocking
/// pool). Without one, the API derives the tables from the series with data in the last
/// two hours.
pub trait TsdbStatusProvider: Send + Sync {
    fn tsdb_status(&self, limit: usize) -> Result<TsdbStatus, String>;
}

impl<F> TsdbStatusProvider for F
where
    F: Fn(usize) -> Result<TsdbStatus, String> + Send + Sync,
{
    fn tsdb_status(&self, limit: usize) -> Result<TsdbStatus, String> {
        self(limit)
    }
}
