//! What a scrape does when the storage refuses samples: the store's global series limit
//! fails the scrape with the limit's own text (target down), while far-future timestamps
//! ("out of bounds") are counted and the rest of the scrape is stored (target up).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use lookout_config::PrometheusConfig;
use lookout_scrape::{Health, ScrapeManager, ScrapeOptions};
use lookout_storage::memory::MemStorage;
use lookout_storage::{
    AppendError, Appendable, Appender, Labels, Matcher, Queryable, SelectHints, SeriesRef,
    StorageError, Timestamp,
};
use parking_lot::Mutex;

/// `MemStorage` behind the two refusals of the real store: new series beyond `max_series`
/// and samples more than 10 minutes ahead of the wall clock.
struct Strict {
    inner: MemStorage,
    max_series: usize,
    known: Mutex<HashSet<Labels>>,
}

struct StrictAppender<'a> {
    s: &'a Strict,
    inner: Box<dyn Appender + Send + 'a>,
}

impl Appendable for Strict {
    fn appender(&self) -> Box<dyn Appender + Send + '_> {
        Box::new(StrictAppender {
            s: self,
            inner: self.inner.appender(),
        })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

impl Appender for StrictAppender<'_> {
    fn append(
        &mut self,
        series_ref: Option<SeriesRef>,
        labels: &Labels,
        t: Timestamp,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        if t > now_ms() + 600_000 {
            return Err(AppendError::TooNew);
        }
        {
            let mut known = self.s.known.lock();
            if !known.contains(labels) {
                if known.len() >= self.s.max_series {
                    return Err(AppendError::SeriesLimit {
                        limit: self.s.max_series,
                    });
                }
                known.insert(labels.clone());
            }
        }
        self.inner.append(series_ref, labels, t, v)
    }

    fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.inner.commit()
    }

    fn rollback(self: Box<Self>) {
        self.inner.rollback()
    }
}

async fn serve(body: String) -> std::net::SocketAddr {
    let app = Router::new().route("/metrics", get(move || async move { body }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn scrape_with(store: Arc<Strict>, body: String) -> ScrapeManager {
    let addr = serve(body).await;
    let m = ScrapeManager::new(
        store,
        ScrapeOptions {
            file_sd_poll_interval: Duration::from_millis(50),
            ..Default::default()
        },
    );
    let yaml = format!(
        "scrape_configs:\n  - job_name: t\n    scrape_interval: 100ms\n    scrape_timeout: 100ms\n    static_configs:\n      - targets: ['{addr}']\n"
    );
    m.apply_config(&PrometheusConfig::parse(&yaml).unwrap())
        .await
        .unwrap();
    m
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(s: &MemStorage, name: &str) -> usize {
    s.select(
        &[Matcher::equal("__name__", name)],
        &SelectHints::range(i64::MIN, i64::MAX),
    )
    .unwrap()
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_series_limit_fails_the_scrape_naming_the_limit() {
    let store = Arc::new(Strict {
        inner: MemStorage::new(),
        max_series: 3,
        known: Mutex::new(HashSet::new()),
    });
    let body: String = (0..10).map(|i| format!("wide{{i=\"{i}\"}} 1\n")).collect();
    let m = scrape_with(store.clone(), body).await;
    wait_for("a failed scrape", || {
        m.targets()
            .first()
            .is_some_and(|t| t.health == Health::Down && !t.last_error.is_empty())
    })
    .await;
    let e = m.targets()[0].last_error.clone();
    assert!(
        e.contains("global active series limit of 3 reached (--max-series)"),
        "{e}"
    );
    // Nothing of the failed scrape was committed.
    assert_eq!(count(&store.inner, "wide"), 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_future_samples_are_counted_out_of_bounds_and_the_scrape_goes_on() {
    let store = Arc::new(Strict {
        inner: MemStorage::new(),
        max_series: 1000,
        known: Mutex::new(HashSet::new()),
    });
    let future = now_ms() + 24 * 3600 * 1000;
    let body = format!("from_the_future 1 {future}\nfine 2\n");
    let m = scrape_with(store.clone(), body).await;
    wait_for("a stored scrape", || count(&store.inner, "fine") == 1).await;
    assert_eq!(count(&store.inner, "from_the_future"), 0);
    let t = &m.targets()[0];
    assert_eq!(t.health, Health::Up, "{}", t.last_error);
    let mut reg = prometheus_client::registry::Registry::default();
    m.register_metrics(&mut reg);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let oob: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("lookout_scrape_samples_out_of_bounds_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(oob >= 1.0, "{text}");
    m.stop().await;
}
