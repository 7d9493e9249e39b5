//! Rendering cost of one 800-series target body (text and OpenMetrics).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lookout_targetsim::{Format, START_TICK, SimConfig, Simulator};

fn render(c: &mut Criterion) {
    let sim = match Simulator::with_epoch(SimConfig::default(), 0) {
        Ok(s) => s,
        Err(e) => panic!("default config rejected: {e}"),
    };
    let mut group = c.benchmark_group("render_800_series");
    group.throughput(Throughput::Elements(sim.series_at(0, START_TICK) as u64));
    for (name, format) in [("text", Format::Text), ("openmetrics", Format::OpenMetrics)] {
        let mut buf = Vec::with_capacity(128 * 1024);
        let mut tick = START_TICK;
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                tick += 1;
                sim.render(0, black_box(tick), format, &mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
