//! The Loki API over loopback HTTP: push formats, query shapes, metadata endpoints, errors,
//! limits and the tail WebSocket.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use lookout_logql::{EngineOptions, LogqlEngine};
use lookout_logstore::{LogStoreOptions, Tenants};
use lookout_loki_api::{LokiApi, LokiLimits, router};
use serde_json::Value;

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    client: reqwest::Client,
    tenants: Arc<Tenants>,
}

async fn start(limits: LokiLimits) -> Server {
    start_with(LogStoreOptions::default(), limits).await
}

async fn start_with(opts: LogStoreOptions, limits: LokiLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Arc::new(Tenants::open(dir.path(), opts).unwrap());
    let api = LokiApi::new(
        tenants.clone(),
        LogqlEngine::new(EngineOptions::default()),
        limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    Server {
        base: format!("http://{addr}"),
        addr,
        _dir: dir,
        client: reqwest::Client::new(),
        tenants,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

impl Server {
    async fn post(
        &self,
        path: &str,
        ctype: &str,
        body: Vec<u8>,
        enc: Option<&str>,
    ) -> (u16, String) {
        let mut r = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", ctype)
            .body(body);
        if let Some(e) = enc {
            r = r.header("content-encoding", e);
        }
        let resp = r.send().await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get(&self, path_and_query: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn get_json(&self, p: &str) -> Value {
        let (code, body) = self.get(p).await;
        assert_eq!(code, 200, "{p}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

fn enc(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn json_push(app: &str, t: i64, lines: &[&str]) -> Vec<u8> {
    let values: Vec<Value> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| serde_json::json!([(t + i as i64).to_string(), l]))
        .collect();
    serde_json::json!({"streams": [{"stream": {"app": app, "env": "test"}, "values": values}]})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn push_formats_and_query_shapes() {
    let s = start(LokiLimits::default()).await;
    let t = now_ns() - 60_000_000_000;
    // JSON
    let (code, body) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            json_push(
                "api",
                t,
                &[
                    r#"{"level":"error","msg":"boom"}"#,
                    r#"{"level":"info","msg":"ok"}"#,
                ],
            ),
            None,
        )
        .await;
    assert_eq!((code, body.as_str()), (204, ""));
    // gzip JSON
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json_push("gz", t, &["zipped line"])).unwrap();
    let (code, _) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            gz.finish().unwrap(),
            Some("gzip"),
        )
        .await;
    assert_eq!(code, 204);
    // protobuf + snappy, with structured metadata
    use lookout_loki_proto::*;
    let req = PushRequest {
        streams: vec![Stream {
            labels: r#"{app="proto", env="test"}"#.into(),
            entries: vec![Entry {
                timestamp: Some(Timestamp::from_unix_nanos(t + 5)),
                line: "from protobuf".into(),
                structured_metadata: vec![LabelPair {
                    name: "trace_id".into(),
                    value: "abc".into(),
                }],
            }],
            hash: 0,
        }],
    };
    let (code, body) = s
        .post(
            "/loki/api/v1/push",
            "application/x-protobuf",
            encode_push_request(&req).unwrap(),
            None,
        )
        .await;
    assert_eq!(code, 204, "{body}");

    let start = t - 1_000_000_000;
    let end = t + 1_000_000_000;
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end}&limit=10&direction=forward",
            enc(r#"{env="test"}"#)
        ))
        .await;
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    assert!(
        v["data"]["stats"]["summary"]["totalLinesProcessed"]
            .as_u64()
            .unwrap()
            >= 4
    );
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 3);
    let api = result.iter().find(|r| r["stream"]["app"] == "api").unwrap();
    assert_eq!(api["values"][0][0], t.to_string());
    assert_eq!(api["values"][0][1], r#"{"level":"error","msg":"boom"}"#);
    let proto = result
        .iter()
        .find(|r| r["stream"]["app"] == "proto")
        .unwrap();
    assert_eq!(
        proto["stream"]["trace_id"], "abc",
        "structured metadata is returned as labels"
    );

    // json parser + filter
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end}",
            enc(r#"{app="api"} | json | level="error""#)
        ))
        .await;
    assert_eq!(v["data"]["result"][0]["stream"]["level"], "error");

    // matrix
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={start}&end={end}&step=1",
            enc(r#"sum by (app) (count_over_time({env="test"}[5m]))"#)
        ))
        .await;
    assert_eq!(v["data"]["resultType"], "matrix");
    let m = v["data"]["result"].as_array().unwrap();
    assert_eq!(m.len(), 3);
    assert!(m[0]["values"][0][0].is_number());
    assert!(m[0]["values"][0][1].is_string());

    // Grafana's "Save & test"
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query?query={}&time={end}",
            enc("vector(1)+vector(1)")
        ))
        .await;
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(v["data"]["result"][0]["value"][1], "2");

    // metadata endpoints
    let v = s
        .get_json(&format!("/loki/api/v1/labels?start={start}&end={end}"))
        .await;
    assert_eq!(
        v["data"],
        serde_json::json!(["app", "env"]),
        "stream labels only, as Loki"
    );
    let v = s
        .get_json(&format!(
            "/loki/api/v1/label/app/values?start={start}&end={end}"
        ))
        .await;
    assert_eq!(v["data"], serde_json::json!(["api", "gz", "proto"]));
    let v = s
        .get_json(&format!(
            "/loki/api/v1/series?match[]={}&start={start}&end={end}",
            enc(r#"{app=~"a.*"}"#)
        ))
        .await;
    assert_eq!(
        v["data"],
        serde_json::json!([{"app": "api", "env": "test"}])
    );
    let v = s
        .get_json(&format!(
            "/loki/api/v1/index/stats?query={}&start={start}&end={end}",
            enc(r#"{env="test"}"#)
        ))
        .await;
    assert_eq!(v["streams"], 3);
    assert_eq!(v["entries"], 4);
    // POST form
    let (code, body) = s
        .post(
            "/loki/api/v1/query_range",
            "application/x-www-form-urlencoded",
            format!("query={}&start={start}&end={end}", enc(r#"{app="gz"}"#)).into_bytes(),
            None,
        )
        .await;
    assert_eq!(code, 200);
    assert!(body.contains("zipped line"));
    assert_eq!(s.get("/ready").await, (200, "ready\n".into()));
}

#[tokio::test]
async fn bad_input_is_refused_with_plain_text_and_stores_nothing() {
    let s = start(LokiLimits::default()).await;
    let t = now_ns();
    for (ctype, body, enc_, needle) in [
        (
            "application/json",
            b"{not json".to_vec(),
            None,
            "error parsing the JSON body",
        ),
        (
            "application/json",
            br#"{"streams":[{"stream":{"a":"b"},"values":[["x","y"]]}]}"#.to_vec(),
            None,
            "invalid timestamp",
        ),
        (
            "application/x-protobuf",
            b"\xff\xff\xff\xff garbage".to_vec(),
            None,
            "error decoding the push request",
        ),
        (
            "application/json",
            b"not gzip".to_vec(),
            Some("gzip"),
            "cannot decompress",
        ),
    ] {
        let (code, msg) = s.post("/loki/api/v1/push", ctype, body, enc_).await;
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    // Invalid UTF-8 in a protobuf line.
    let mut raw = Vec::new();
    {
        use lookout_loki_proto::*;
        let req = PushRequest {
            streams: vec![Stream {
                labels: r#"{app="x"}"#.into(),
                entries: vec![Entry {
                    timestamp: Some(Timestamp::from_unix_nanos(t)),
                    line: "AB".into(),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        raw.extend(prost_encode(&req));
    }
    let pos = raw.windows(2).position(|w| w == b"AB").unwrap();
    raw[pos] = 0xff;
    let body = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
    let (code, msg) = s
        .post("/loki/api/v1/push", "application/x-protobuf", body, None)
        .await;
    assert_eq!(code, 400, "{msg}");

    // Too many labels / invalid label names: the stream is refused with Loki's message.
    let many: serde_json::Map<String, Value> = (0..16)
        .map(|i| (format!("l{i}"), Value::String("v".into())))
        .collect();
    let body = serde_json::json!({"streams":[{"stream": many, "values": [[t.to_string(), "x"]]}]});
    let (code, msg) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().into_bytes(),
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("16 label names; limit 15"), "{msg}");
    let body = serde_json::json!({"streams":[{"stream": {"bad-name": "v"}, "values": [[t.to_string(), "x"]]}]});
    let (code, msg) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().into_bytes(),
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("invalid label name"), "{msg}");
    // Line too long: refused, reported, the rest of the push kept.
    let long = "x".repeat(300 * 1024);
    let (code, msg) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            json_push("ok", t, &["short", &long]),
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(
        msg.contains("Max entry size '262144' bytes exceeded"),
        "{msg}"
    );

    let v = s
        .get_json(&format!(
            "/loki/api/v1/series?start={}&end={}",
            t - 10_000_000_000,
            t + 10_000_000_000
        ))
        .await;
    assert_eq!(v["data"], serde_json::json!([{"app": "ok", "env": "test"}]));

    // Query errors: plain text 400.
    let (code, msg) = s
        .get(&format!("/loki/api/v1/query_range?query={}", enc("{app=")))
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("parse error"), "{msg}");
    let (code, msg) = s
        .get(&format!(
            "/loki/api/v1/query_range?query={}&limit=100000",
            enc(r#"{app="ok"}"#)
        ))
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("max entries limit"), "{msg}");
    let (code, _) = s
        .get(&format!(
            "/loki/api/v1/query_range?query={}&start=2020-01-01T00:00:00Z&end=2024-01-01T00:00:00Z",
            enc(r#"{app="ok"}"#)
        ))
        .await;
    assert_eq!(code, 400, "query length limit");
}

fn prost_encode(req: &lookout_loki_proto::PushRequest) -> Vec<u8> {
    let snappy = lookout_loki_proto::encode_push_request(req).unwrap();
    snap::raw::Decoder::new().decompress_vec(&snappy).unwrap()
}

#[tokio::test]
async fn push_storm_gets_429() {
    let s = start(LokiLimits {
        ingestion_rate_bytes: 1000.0,
        ingestion_burst_bytes: 2000.0,
        ..LokiLimits::default()
    })
    .await;
    let t = now_ns();
    let line = "y".repeat(500);
    let mut codes = Vec::new();
    for i in 0..6 {
        let (code, msg) = s
            .post(
                "/loki/api/v1/push",
                "application/json",
                json_push("storm", t + i * 10, &[&line]),
                None,
            )
            .await;
        if code == 429 {
            assert!(
                msg.contains("Ingestion rate limit exceeded for user fake"),
                "{msg}"
            );
        }
        codes.push(code);
    }
    assert_eq!(&codes[..4], &[204, 204, 204, 204]);
    assert!(codes[4..].contains(&429), "{codes:?}");
    // Tenants are limited separately.
    let resp = s
        .client
        .post(format!("{}/loki/api/v1/push", s.base))
        .header("content-type", "application/json")
        .header("X-Scope-OrgID", "team-b")
        .body(json_push("storm", t, &[&line]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    let v = s
        .get_json(&format!("/loki/api/v1/labels?start={}", t - 1_000_000_000))
        .await;
    assert_eq!(v["data"], serde_json::json!(["app", "env"]));
}

#[tokio::test]
async fn tail_streams_new_lines_over_websocket() {
    let s = start(LokiLimits {
        tail_period: Duration::from_millis(100),
        ..LokiLimits::default()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let url = format!(
        "ws://{}/loki/api/v1/tail?query={}",
        s.addr,
        enc(r#"{app="live"} |= "wanted""#)
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = now_ns();
    let (code, _) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            json_push("live", t, &["wanted 1", "other", "wanted 2"]),
            None,
        )
        .await;
    assert_eq!(code, 204);
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 2 {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
        assert!(v["dropped_entries"].is_null());
        for st in v["streams"].as_array().unwrap() {
            assert_eq!(st["stream"]["app"], "live");
            for e in st["values"].as_array().unwrap() {
                got.push(e[1].as_str().unwrap().to_string());
            }
        }
    }
    assert_eq!(got, ["wanted 1", "wanted 2"]);
}

#[tokio::test]
async fn query_stats_report_chunks_read_and_skipped() {
    let s = start_with(
        LogStoreOptions {
            chunk_target_bytes: 8 * 1024,
            ..LogStoreOptions::default()
        },
        LokiLimits::default(),
    )
    .await;
    let t = now_ns() - 600_000_000_000;
    let id = |i: u64| {
        format!(
            "{:032x}",
            u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        )
    };
    let lines: Vec<String> = (0..3000u64)
        .map(|i| format!(r#"{{"level":"info","n":{i},"trace_id":"{}"}}"#, id(i)))
        .collect();
    for part in lines.chunks(50).enumerate() {
        let refs: Vec<&str> = part.1.iter().map(String::as_str).collect();
        let (code, body) = s
            .post(
                "/loki/api/v1/push",
                "application/json",
                json_push("stats", t + part.0 as i64 * 1000, &refs),
                None,
            )
            .await;
        assert_eq!(code, 204, "{body}");
    }
    let tenants = s.tenants.clone();
    tokio::task::spawn_blocking(move || tenants.flush().unwrap())
        .await
        .unwrap();
    let raw: u64 = lines.iter().map(|l| l.len() as u64).sum();
    let q = |query: String| {
        format!(
            "/loki/api/v1/query?query={}&time={}",
            enc(&query),
            t + 300_000_000_000
        )
    };
    // Every chunk read: lines and bytes decoded are the whole data set.
    let v = s
        .get_json(&q(r#"sum(count_over_time({app="stats"}[1h]))"#.into()))
        .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3000");
    let st = &v["data"]["stats"];
    let store = &st["querier"]["store"];
    let chunks = store["totalChunksRef"].as_u64().unwrap();
    assert!(chunks > 10, "{st}");
    assert_eq!(store["totalChunksDownloaded"].as_u64(), Some(chunks));
    assert_eq!(store["chunk"]["decompressedLines"], 3000);
    assert_eq!(store["chunk"]["decompressedBytes"].as_u64(), Some(raw));
    assert!(store["chunk"]["compressedBytes"].as_u64().unwrap() < raw / 2);
    assert_eq!(st["summary"]["totalLinesProcessed"], 3000);
    assert_eq!(st["summary"]["totalBytesProcessed"].as_u64(), Some(raw));
    // A rare needle: chunks that cannot hold it are skipped by their filters.
    let v = s
        .get_json(&q(format!(
            r#"sum(count_over_time({{app="stats"}} |= "{}" [1h]))"#,
            id(2222)
        )))
        .await;
    assert_eq!(v["data"]["result"][0]["value"][1], "1");
    let store = &v["data"]["stats"]["querier"]["store"];
    let read = store["totalChunksDownloaded"].as_u64().unwrap();
    let skipped = store["totalChunksSkippedByFilter"].as_u64().unwrap();
    assert_eq!(store["totalChunksRef"].as_u64(), Some(chunks));
    assert_eq!(read + skipped, chunks, "{store}");
    assert!((1..=3).contains(&read), "{store}");
    assert_eq!(store["chunk"]["postFilterLines"], 1);
    assert!(store["chunk"]["decompressedLines"].as_u64().unwrap() < 1000);
}

/// Series stored for tenant `fake` over the last day.
async fn stored_series(s: &Server) -> Value {
    let t = now_ns();
    s.get_json(&format!(
        "/loki/api/v1/series?start={}&end={}",
        t - 86_400_000_000_000,
        t + 3_600_000_000_000
    ))
    .await["data"]
        .clone()
}

#[tokio::test]
async fn malformed_bodies_name_the_problem_and_store_nothing() {
    let s = start(LokiLimits::default()).await;
    let t = now_ns();
    // Valid snappy around bytes that are not a PushRequest.
    let not_proto = snap::raw::Encoder::new()
        .compress_vec(b"\x0a\xff\xff\xff\xff\x0f")
        .unwrap();
    // A valid PushRequest, not snappy-compressed.
    let req = lookout_loki_proto::PushRequest {
        streams: vec![lookout_loki_proto::Stream {
            labels: r#"{app="raw"}"#.into(),
            entries: vec![lookout_loki_proto::Entry {
                timestamp: Some(lookout_loki_proto::Timestamp::from_unix_nanos(t)),
                line: "x".into(),
                structured_metadata: vec![],
            }],
            hash: 0,
        }],
    };
    let unsnapped = prost_encode(&req);
    // Invalid label syntax in a protobuf stream.
    let mut bad_labels = req.clone();
    bad_labels.streams[0].labels = "{app=".into();
    let bad_labels = lookout_loki_proto::encode_push_request(&bad_labels).unwrap();
    // JSON with a line that is not valid UTF-8.
    let mut bad_utf8 = json_push("utf8", t, &["AB"]);
    let at = bad_utf8.windows(2).position(|w| w == b"AB").unwrap();
    bad_utf8[at] = 0xc3;
    bad_utf8[at + 1] = 0x28;
    for (ctype, body, needle) in [
        (
            "application/x-protobuf",
            not_proto,
            "error decoding the push request",
        ),
        (
            "application/x-protobuf",
            unsnapped,
            "error decoding the push request",
        ),
        ("application/x-protobuf", bad_labels, "app="),
        ("application/json", bad_utf8, "error parsing the JSON body"),
        (
            "application/json",
            br#"{"streams":[{"stream":{"a":"b"},"values":[["1","x","y"]]}]}"#.to_vec(),
            "metadata",
        ),
        (
            "application/json",
            br#"{"streams":[{"stream":{"a":1},"values":[]}]}"#.to_vec(),
            "not a string",
        ),
        (
            "application/json",
            br#"{"nostreams":[]}"#.to_vec(),
            "missing \"streams\"",
        ),
    ] {
        let (code, msg) = s.post("/loki/api/v1/push", ctype, body, None).await;
        assert_eq!(code, 400, "{needle}: {msg}");
        assert!(msg.contains(needle), "{needle}: {msg}");
    }
    let (code, msg) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            b"{}".to_vec(),
            Some("br"),
        )
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("unsupported Content-Encoding"), "{msg}");
    assert_eq!(stored_series(&s).await, serde_json::json!([]));
}

#[tokio::test]
async fn refused_entries_are_reported_and_the_rest_is_stored() {
    let s = start(LokiLimits::default()).await;
    let t = now_ns();
    let day = 86_400_000_000_000i64;
    let values = serde_json::json!([
        [t.to_string(), "kept"],
        [(t - 8 * day).to_string(), "too old"],
        [(t + day).to_string(), "too new"],
    ]);
    let body = serde_json::json!({"streams": [
        {"stream": {"app": "mixed"}, "values": values},
        {"stream": {"app": "x", "__bad": "v", "0bad": "v"}, "values": [[t.to_string(), "bad label"]]},
        {"stream": {"app": "y".repeat(3000)}, "values": [[t.to_string(), "long value"]]},
    ]});
    let (code, msg) = s
        .post(
            "/loki/api/v1/push",
            "application/json",
            body.to_string().into_bytes(),
            None,
        )
        .await;
    assert_eq!(code, 400);
    assert!(msg.contains("timestamp too old"), "{msg}");
    assert!(msg.contains("timestamp too new"), "{msg}");
    assert!(msg.contains("invalid label name"), "{msg}");
    assert!(msg.contains("label value too long"), "{msg}");
    assert_eq!(
        stored_series(&s).await,
        serde_json::json!([{"app": "mixed"}])
    );
    let v = s
        .get_json(&format!(
            "/loki/api/v1/query_range?query={}&start={}&end={}",
            enc(r#"{app="mixed"}"#),
            t - day,
            t + 1
        ))
        .await;
    assert_eq!(v["data"]["result"][0]["values"][0][1], "kept");
    assert_eq!(
        v["data"]["result"][0]["values"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn query_limits_answer_400_and_timeouts_504() {
    let dir = tempfile::tempdir().unwrap();
    let tenants = Arc::new(Tenants::open(dir.path(), LogStoreOptions::default()).unwrap());
    let api = LokiApi::new(
        tenants,
        LogqlEngine::new(EngineOptions {
            max_series: 2,
            ..EngineOptions::default()
        }),
        LokiLimits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let t = now_ns() - 1_000_000_000;
    for app in ["a", "b", "c"] {
        let r = client
            .post(format!("{base}/loki/api/v1/push"))
            .header("content-type", "application/json")
            .body(json_push(app, t, &["line"]))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    let get = |q: &str| {
        let url = format!("{base}/loki/api/v1/query?query={}", enc(q));
        let c = client.clone();
        async move {
            let r = c.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (code, body) = get(r#"sum by (app) (count_over_time({env="test"}[5m]))"#).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("series"), "{body}");
    let (code, body) = get(r#"sum(count_over_time({env="test"}[5m]))"#).await;
    assert_eq!(code, 200, "{body}");

    // A zero timeout: every query times out with 504.
    let dir2 = tempfile::tempdir().unwrap();
    let tenants = Arc::new(Tenants::open(dir2.path(), LogStoreOptions::default()).unwrap());
    let api = LokiApi::new(
        tenants,
        LogqlEngine::new(EngineOptions {
            timeout: Duration::ZERO,
            ..EngineOptions::default()
        }),
        LokiLimits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(api)).await });
    let r = client
        .get(format!(
            "http://{addr}/loki/api/v1/query?query={}",
            enc(r#"count_over_time({env="test"}[5m])"#)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 504);
}
