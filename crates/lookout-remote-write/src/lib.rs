//! Prometheus remote-write 1.0: the `prometheus.WriteRequest` protobuf messages (field numbers
//! as in Prometheus's `prompb/types.proto` and `remote.proto`), the snappy **block** framing
//! the protocol uses, and validation of series labels into [`lookout_storage::Labels`].
//!
//! Messages are hand-written `prost` derives (no protoc). Decoding is bounded: the declared
//! decompressed size is checked before anything is allocated, and malformed snappy or
//! protobuf input yields a [`DecodeError`], never a panic.

mod proto;
mod validate;

pub use proto::{
    BucketSpan, Exemplar, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest,
    histogram, metric_metadata,
};
pub use validate::{ValidationError, validate_labels};

use prost::Message;

/// Content-Type of a remote-write 1.0 body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";
/// Content-Encoding of a remote-write body (snappy block format).
pub const CONTENT_ENCODING: &str = "snappy";
/// Value of the `X-Prometheus-Remote-Write-Version` header senders set for 1.0.
pub const VERSION_HEADER_VALUE: &str = "0.1.0";
/// Default bound on the decompressed size of a request (64 MiB).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy decode error: {0}")]
    Snappy(#[from] snap::Error),
    #[error(
        "snappy decode error: corrupt input (declares {declared} decompressed bytes for a {body}-byte body)"
    )]
    ImpossibleLength { declared: usize, body: usize },
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("protobuf decode error: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes a snappy-compressed (block format) `WriteRequest` with the default size bound
/// ([`DEFAULT_MAX_DECODED_BYTES`]).
pub fn decode_write_request(body: &[u8]) -> Result<WriteRequest, DecodeError> {
    decode_write_request_with_limit(body, DEFAULT_MAX_DECODED_BYTES)
}

/// Decodes a snappy-compressed (block format) `WriteRequest`, refusing bodies that would
/// decompress to more than `max_decoded` bytes.
pub fn decode_write_request_with_limit(
    body: &[u8],
    max_decoded: usize,
) -> Result<WriteRequest, DecodeError> {
    let raw = decompress(body, max_decoded)?;
    Ok(WriteRequest::decode(raw.as_slice())?)
}

/// Best compression ratio the snappy block format can reach (a 3-byte copy op emits at most
/// 64 bytes), with slack: a header declaring more than this is corrupt, not merely large.
const MAX_SNAPPY_RATIO: usize = 22;

/// Snappy block decompression with a bound checked against the declared length first.
pub fn decompress(body: &[u8], max_decoded: usize) -> Result<Vec<u8>, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size
        > body
            .len()
            .saturating_mul(MAX_SNAPPY_RATIO)
            .saturating_add(64)
    {
        return Err(DecodeError::ImpossibleLength {
            declared: size,
            body: body.len(),
        });
    }
    if size > max_decoded {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decoded,
        });
    }
    Ok(snap::raw::Decoder::new().decompress_vec(body)?)
}

/// Encodes `req` as protobuf and compresses it with snappy (block format), ready to POST.
/// Fails only when the encoded message exceeds snappy's block limit (about 4 GiB).
pub fn encode_write_request(req: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_request() -> WriteRequest {
        WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![Label::new("__name__", "up"), Label::new("job", "api")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1_700_000_000_000,
                }],
                exemplars: vec![],
                histograms: vec![],
            }],
            metadata: vec![MetricMetadata {
                r#type: metric_metadata::MetricType::Gauge as i32,
                metric_family_name: "up".into(),
                help: "target up".into(),
                unit: String::new(),
            }],
        }
    }

    #[test]
    fn round_trip() {
        let req = sample_request();
        let body = encode_write_request(&req).unwrap();
        assert_eq!(decode_write_request(&body).unwrap(), req);
    }

    #[test]
    fn bad_snappy_is_an_error() {
        let err = decode_write_request(b"\xff\xff\xff\xff\xff\xff not snappy").unwrap_err();
        assert!(matches!(err, DecodeError::Snappy(_)), "{err}");
    }

    #[test]
    fn bad_protobuf_is_an_error() {
        let body = snap::raw::Encoder::new()
            .compress_vec(b"\x0a\xff\xff\xff\x0f")
            .unwrap();
        let err = decode_write_request(&body).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
    }

    #[test]
    fn impossible_declared_length_is_corruption_not_size() {
        let err = decode_write_request(b"\xff\xff\xff\xff\x0f garbage").unwrap_err();
        assert!(matches!(err, DecodeError::ImpossibleLength { .. }), "{err}");
        // The best real ratio stays under the bound.
        let zeros = vec![0u8; 1 << 20];
        let packed = snap::raw::Encoder::new().compress_vec(&zeros).unwrap();
        assert_eq!(decompress(&packed, 1 << 21).unwrap().len(), 1 << 20);
    }

    #[test]
    fn size_limit_is_checked_before_decompressing() {
        let body = encode_write_request(&sample_request()).unwrap();
        let err = decode_write_request_with_limit(&body, 4).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 4, .. }),
            "{err}"
        );
    }

    #[test]
    fn field_numbers_match_prompb() {
        // Hand-assembled bytes: WriteRequest{timeseries(1){labels(1){name(1)="a",value(2)="b"},
        // samples(2){value(1)=1.0 (fixed64), timestamp(2)=5}}}
        let label = [0x0a, 0x01, b'a', 0x12, 0x01, b'b'];
        let mut sample = vec![0x09];
        sample.extend_from_slice(&1.0f64.to_le_bytes());
        sample.extend_from_slice(&[0x10, 0x05]);
        let mut ts = vec![0x0a, label.len() as u8];
        ts.extend_from_slice(&label);
        ts.push(0x12);
        ts.push(sample.len() as u8);
        ts.extend_from_slice(&sample);
        let mut req = vec![0x0a, ts.len() as u8];
        req.extend_from_slice(&ts);
        let got = WriteRequest::decode(req.as_slice()).unwrap();
        assert_eq!(got.timeseries[0].labels, vec![Label::new("a", "b")]);
        assert_eq!(
            got.timeseries[0].samples,
            vec![Sample {
                value: 1.0,
                timestamp: 5
            }]
        );
    }
}
