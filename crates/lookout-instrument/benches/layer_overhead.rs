//! Overhead of the HTTP metrics layer: the same axum router with and without it, driven
//! in-process (`oneshot` polled to completion, no runtime or sockets). Besides criterion's
//! estimates it prints the p50 per-request time of each variant and their difference,
//! measured on interleaved single requests.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use axum::routing::{get, post};
use criterion::{Criterion, criterion_group};
use lookout_instrument::{HttpMetricsConfig, Metrics};
use tower::ServiceExt;

fn router() -> Router {
    let mut r = Router::new()
        .route("/api/boards/{id}", get(|| async { "board" }))
        .route("/api/boards", post(|| async { "created" }));
    for i in 0..20 {
        r = r.route(&format!("/api/other{i}/{{id}}"), get(|| async { "x" }));
    }
    r
}

fn routers() -> (Router, Router) {
    let mut metrics = Metrics::without_process_metrics();
    let layer = metrics
        .http_layer(HttpMetricsConfig::default())
        .expect("layer");
    (router(), router().layer(layer))
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::hint::spin_loop();
    }
}

fn one_request(router: &Router, i: u32) {
    let uri = if i.is_multiple_of(2) {
        "/api/boards/17"
    } else {
        "/api/boards/2048"
    };
    let req = Request::get(uri).body(Body::empty()).expect("request");
    let resp = block_on(router.clone().oneshot(req)).expect("infallible");
    black_box(resp.status());
}

fn bench(c: &mut Criterion) {
    let (bare, instrumented) = routers();
    let mut g = c.benchmark_group("layer_overhead");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut i = 0u32;
    g.bench_function("without_layer", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            one_request(&bare, i)
        })
    });
    g.bench_function("with_layer", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            one_request(&instrumented, i)
        })
    });
    g.finish();
}

fn p50(samples: &mut [u64]) -> u64 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Interleaved single-request timings; prints p50 of each variant and the overhead.
fn p50_report() {
    let (bare, instrumented) = routers();
    const N: usize = 200_000;
    let mut without = Vec::with_capacity(N);
    let mut with = Vec::with_capacity(N);
    for i in 0..20_000u32 {
        one_request(&bare, i);
        one_request(&instrumented, i);
    }
    for i in 0..N as u32 {
        let t = Instant::now();
        one_request(&bare, i);
        without.push(t.elapsed().as_nanos() as u64);
        let t = Instant::now();
        one_request(&instrumented, i);
        with.push(t.elapsed().as_nanos() as u64);
    }
    let (a, b) = (p50(&mut without), p50(&mut with));
    println!(
        "layer_overhead p50 over {N} interleaved requests: without layer {a} ns, with layer {b} ns, overhead {} ns/request",
        b as i64 - a as i64
    );
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    p50_report();
}
