//! Steady-state scrapes must not allocate per sample: the cache maps raw series bytes to
//! storage references. Counted with a global allocator wrapper over a
//! storage that itself never allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lookout_config::PrometheusConfig;
use lookout_scrape::client::Fetched;
use lookout_scrape::offline::{DiscardStorage, OfflineScraper};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn exposition(n: usize) -> Vec<u8> {
    let mut s =
        String::from("# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n");
    for i in 0..n {
        s.push_str(&format!(
            "http_requests_total{{method=\"GET\",path=\"/api/v{}/items\",status=\"{}\"}} {}\n",
            i % 50,
            200 + i % 7,
            i * 3
        ));
    }
    s.into_bytes()
}

/// Scrapes `body` three times and returns the allocations of the third scrape.
fn steady_state_allocs(body: Vec<u8>, content_type: &str, n: usize) -> usize {
    let cfg = PrometheusConfig::parse("scrape_configs:\n  - job_name: bench\n").unwrap();
    let storage = Arc::new(DiscardStorage::default());
    let mut s =
        OfflineScraper::new(&cfg.scrape_configs[0], "127.0.0.1:9100", storage.clone()).unwrap();
    let body = Fetched {
        body,
        content_type: content_type.into(),
    };
    s.scrape(&body, 1_000).unwrap();
    s.scrape(&body, 2_000).unwrap();
    ALLOCS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let r = s.scrape(&body, 3_000);
    COUNTING.store(false, Ordering::Relaxed);
    r.unwrap();
    assert_eq!(storage.committed(), 3 * (n as u64 + 5));
    ALLOCS.load(Ordering::Relaxed)
}

// One test: the allocation counter is global, so the formats are measured one after the other.
#[test]
fn steady_state_scrape_does_not_allocate_per_sample() {
    let n = 350; // 50 paths x 7 statuses: all distinct
    let allocs = steady_state_allocs(exposition(n), "text/plain; version=0.0.4", n);
    eprintln!("steady-state text scrape of {n} samples: {allocs} allocations");
    assert!(
        allocs < 32,
        "{allocs} allocations for a steady-state text scrape of {n} samples"
    );
    // OpenMetrics, read in the Prometheus-compatible mode the scraper uses.
    let mut om = exposition(n);
    om.extend_from_slice(b"# EOF\n");
    let allocs = steady_state_allocs(
        om,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        n,
    );
    eprintln!("steady-state OpenMetrics scrape of {n} samples: {allocs} allocations");
    assert!(
        allocs < 32,
        "{allocs} allocations for a steady-state OpenMetrics scrape of {n} samples"
    );
}
