//! Chunk encode/decode throughput on demo-style JSON lines.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_logstore::chunk;
use lookout_storage::logs::LogEntry;

fn lines(n: usize) -> Vec<LogEntry> {
    let levels = ["info", "info", "info", "warn", "error", "debug"];
    let services = [
        "user-service",
        "board-service",
        "chat-service",
        "noti-service",
    ];
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ts = 1_717_200_000_000 + i as u64 * 3;
            let line = format!(
                r#"{{"ts":"{}","level":"{}","service":"{}","msg":"request handled","method":"GET","path":"/api/boards/{}","status":{},"latency_ms":{}.{},"trace_id":"{:016x}{:016x}","user_id":"u{}"}}"#,
                ts,
                levels[(x % 6) as usize],
                services[(x >> 8) as usize % 4],
                x % 100,
                if x.is_multiple_of(20) { 500 } else { 200 },
                x % 300,
                x % 10,
                x,
                x.rotate_left(17),
                x % 5000
            );
            LogEntry::new(ts as i64 * 1_000_000, line)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let es = lines(20_000);
    let raw: usize = es.iter().map(|e| e.line.len()).sum();
    let enc = chunk::encode(&es, 3);
    eprintln!(
        "chunk: {} lines, {raw} raw bytes -> {} bytes ({:.1}x)",
        es.len(),
        enc.len(),
        raw as f64 / enc.len() as f64
    );
    let mut g = c.benchmark_group("chunk");
    g.throughput(Throughput::Bytes(raw as u64));
    g.sample_size(10);
    g.bench_function("encode", |b| b.iter(|| chunk::encode(&es, 3)));
    g.bench_function("decode", |b| b.iter(|| chunk::decode(&enc)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
