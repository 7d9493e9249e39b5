//! Encode → decode round trips for random requests; arbitrary bytes never panic the decoder.

use lookout_remote_write::{
    BucketSpan, Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
    decode_write_request, encode_write_request, histogram,
};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = Label> {
    ("\\PC{0,12}", "\\PC{0,16}").prop_map(|(n, v)| Label::new(n, v))
}

fn finite_or_special() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("NaN compares unequal", |v| !v.is_nan()),
        Just(f64::INFINITY),
        Just(-0.0)
    ]
}

fn histogram_strategy() -> impl Strategy<Value = Histogram> {
    (
        any::<u64>(),
        finite_or_special(),
        -4i32..8,
        proptest::collection::vec(any::<i64>(), 0..4),
        any::<i64>(),
    )
        .prop_map(|(count, sum, schema, deltas, ts)| Histogram {
            count: Some(histogram::Count::CountInt(count)),
            sum,
            schema,
            zero_threshold: 1e-128,
            zero_count: Some(histogram::ZeroCount::ZeroCountInt(1)),
            negative_spans: vec![],
            negative_deltas: vec![],
            negative_counts: vec![],
            positive_spans: vec![BucketSpan {
                offset: -2,
                length: deltas.len() as u32,
            }],
            positive_deltas: deltas,
            positive_counts: vec![],
            reset_hint: histogram::ResetHint::No as i32,
            timestamp: ts,
            custom_values: vec![],
        })
}

fn series() -> impl Strategy<Value = TimeSeries> {
    (
        proptest::collection::vec(label(), 0..6),
        proptest::collection::vec((finite_or_special(), any::<i64>()), 0..5),
        proptest::collection::vec(
            (
                proptest::collection::vec(label(), 0..2),
                finite_or_special(),
                any::<i64>(),
            ),
            0..2,
        ),
        proptest::collection::vec(histogram_strategy(), 0..2),
    )
        .prop_map(|(labels, samples, exemplars, histograms)| TimeSeries {
            labels,
            samples: samples
                .into_iter()
                .map(|(value, timestamp)| Sample { value, timestamp })
                .collect(),
            exemplars: exemplars
                .into_iter()
                .map(|(labels, value, timestamp)| Exemplar {
                    labels,
                    value,
                    timestamp,
                })
                .collect(),
            histograms,
        })
}

fn request() -> impl Strategy<Value = WriteRequest> {
    (
        proptest::collection::vec(series(), 0..6),
        proptest::collection::vec((0i32..8, "\\PC{0,10}", "\\PC{0,20}"), 0..3),
    )
        .prop_map(|(timeseries, md)| WriteRequest {
            timeseries,
            metadata: md
                .into_iter()
                .map(|(t, name, help)| MetricMetadata {
                    r#type: t,
                    metric_family_name: name,
                    help,
                    unit: String::new(),
                })
                .collect(),
        })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(req in request()) {
        let body = encode_write_request(&req).unwrap();
        let got = decode_write_request(&body).unwrap();
        prop_assert_eq!(got, req);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_write_request(&bytes);
    }

    #[test]
    fn snappy_wrapped_garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let body = snap::raw::Encoder::new().compress_vec(&bytes).unwrap();
        let _ = decode_write_request(&body);
    }
}
