//! Loki's push API body: `logproto.PushRequest` (pkg/push/push.proto), snappy block-compressed
//! on the wire (`Content-Type: application/x-protobuf`). Hand-written `prost` messages, field
//! numbers as upstream, so no protoc is needed at build time.

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<Stream>,
}

/// `logproto.StreamAdapter`: `labels` is the stream selector text, e.g. `{job="x", level="info"}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Stream {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<Entry>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<Timestamp>,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPair>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl Timestamp {
    pub fn from_unix_nanos(ns: i64) -> Self {
        Timestamp {
            seconds: ns.div_euclid(1_000_000_000),
            nanos: ns.rem_euclid(1_000_000_000) as i32,
        }
    }

    /// Nanoseconds since the epoch, clamped to the `i64` range.
    pub fn to_unix_nanos(self) -> i64 {
        let ns = i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanos);
        ns.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// `logproto.LabelPairAdapter` (structured metadata).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    #[error("decompressed body of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decodes a snappy (block format) compressed `PushRequest`, refusing bodies that would
/// decompress to more than `max_decoded` bytes.
pub fn decode_push_request(body: &[u8], max_decoded: usize) -> Result<PushRequest, DecodeError> {
    let size = snap::raw::decompress_len(body)?;
    if size > max_decoded {
        return Err(DecodeError::TooLarge {
            size,
            limit: max_decoded,
        });
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body)?;
    Ok(prost::Message::decode(raw.as_slice())?)
}

/// Encodes and snappy-compresses a `PushRequest` for `POST /loki/api/v1/push`.
pub fn encode_push_request(req: &PushRequest) -> Result<Vec<u8>, snap::Error> {
    let raw = prost::Message::encode_to_vec(req);
    snap::raw::Encoder::new().compress_vec(&raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_numbers_match_upstream() {
        // streams(1){ labels(1)="{a=\"b\"}", entries(2){ timestamp(1){seconds(1)=1}, line(2)="x" } }
        let req = PushRequest {
            streams: vec![Stream {
                labels: "{a=\"b\"}".into(),
                entries: vec![Entry {
                    timestamp: Some(Timestamp {
                        seconds: 1,
                        nanos: 0,
                    }),
                    line: "x".into(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        let bytes = prost::Message::encode_to_vec(&req);
        let expected: Vec<u8> = vec![
            0x0a, 18, // streams, len 18
            0x0a, 7, b'{', b'a', b'=', b'"', b'b', b'"', b'}', // labels
            0x12, 7, // entries, len 7
            0x0a, 2, 0x08, 1, // timestamp{seconds=1}
            0x12, 1, b'x', // line
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn timestamps_round_trip_at_the_extremes() {
        for ns in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX] {
            assert_eq!(Timestamp::from_unix_nanos(ns).to_unix_nanos(), ns);
        }
        assert_eq!(
            Timestamp {
                seconds: i64::MAX,
                nanos: 0
            }
            .to_unix_nanos(),
            i64::MAX
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_push_request(b"definitely not snappy", 1 << 20).is_err());
        let big = encode_push_request(&PushRequest {
            streams: vec![Stream {
                labels: "x".repeat(4096),
                entries: vec![],
                hash: 0,
            }],
        })
        .unwrap();
        assert!(matches!(
            decode_push_request(&big, 100),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(labels in ".{0,40}", line in ".{0,200}", ns in any::<i64>(), k in "[a-z]{1,8}", v in ".{0,20}") {
            let req = PushRequest { streams: vec![Stream {
                labels, hash: 0,
                entries: vec![Entry {
                    timestamp: Some(Timestamp::from_unix_nanos(ns)),
                    line,
                    structured_metadata: vec![LabelPair { name: k, value: v }],
                }],
            }]};
            let body = encode_push_request(&req).unwrap();
            prop_assert_eq!(decode_push_request(&body, 1 << 20).unwrap(), req.clone());
            prop_assert_eq!(req.streams[0].entries[0].timestamp.unwrap().to_unix_nanos(), ns);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_push_request(&bytes, 1 << 20);
        }
    }
}
