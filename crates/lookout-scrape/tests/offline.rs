//! Scrape processing without HTTP: duplicates, storage rejections, explicit timestamps,
//! label limits and relabelling, through `OfflineScraper` into `MemStorage`.

use std::sync::Arc;

use lookout_config::PrometheusConfig;
use lookout_scrape::client::Fetched;
use lookout_scrape::offline::OfflineScraper;
use lookout_storage::memory::MemStorage;
use lookout_storage::{Matcher, Queryable, Sample, SelectHints, is_stale_nan};

fn scraper(extra: &str) -> (OfflineScraper, Arc<MemStorage>) {
    let cfg =
        PrometheusConfig::parse(&format!("scrape_configs:\n  - job_name: t\n{extra}")).unwrap();
    let st = Arc::new(MemStorage::new());
    (
        OfflineScraper::new(&cfg.scrape_configs[0], "host:9100", st.clone()).unwrap(),
        st,
    )
}

fn text(body: &str) -> Fetched {
    Fetched {
        body: body.as_bytes().to_vec(),
        content_type: "text/plain; version=0.0.4".into(),
    }
}

fn samples(st: &MemStorage, name: &str) -> Vec<Sample> {
    st.select(
        &[Matcher::equal("__name__", name)],
        &SelectHints::range(i64::MIN, i64::MAX),
    )
    .unwrap()
    .into_iter()
    .flat_map(|s| s.samples)
    .collect()
}

fn counters(s: &OfflineScraper) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    s.register_metrics(&mut reg);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
    out
}

#[test]
fn duplicate_series_in_one_scrape_are_counted_and_skipped() {
    let (mut s, st) = scraper("");
    s.scrape(&text("a 1\na 2\nb 3\n"), 1000).unwrap();
    assert_eq!(samples(&st, "a"), vec![Sample { t: 1000, v: 1.0 }]);
    assert_eq!(samples(&st, "scrape_samples_scraped")[0].v, 3.0);
    assert_eq!(
        samples(&st, "scrape_samples_post_metric_relabeling")[0].v,
        2.0
    );
    assert!(counters(&s).contains("lookout_scrape_samples_duplicate_timestamp_total 1"));
}

#[test]
fn storage_rejections_are_counted_not_fatal() {
    let (mut s, st) = scraper("");
    s.scrape(&text("old 1 5000\nfresh 1\n"), 10_000).unwrap();
    // The exposed timestamp goes backwards: the storage refuses it, the scrape still succeeds.
    s.scrape(&text("old 2 4000\nfresh 2\n"), 20_000).unwrap();
    assert_eq!(samples(&st, "old"), vec![Sample { t: 5000, v: 1.0 }]);
    assert_eq!(samples(&st, "fresh").len(), 2);
    assert_eq!(
        samples(&st, "up").iter().map(|s| s.v).collect::<Vec<_>>(),
        vec![1.0, 1.0]
    );
    assert!(counters(&s).contains("lookout_scrape_samples_out_of_order_total 1"));
}

#[test]
fn series_with_explicit_timestamps_get_no_stale_markers_unless_tracked() {
    let (mut s, st) = scraper("");
    s.scrape(&text("ts_series 1 5000\nplain 1\n"), 10_000)
        .unwrap();
    s.scrape(&text(""), 20_000).unwrap();
    assert!(samples(&st, "ts_series").iter().all(|x| !is_stale_nan(x.v)));
    assert!(
        samples(&st, "plain")
            .last()
            .is_some_and(|x| is_stale_nan(x.v) && x.t == 20_000)
    );

    let (mut s, st) = scraper("    track_timestamps_staleness: true\n");
    s.scrape(&text("ts_series 1 5000\n"), 10_000).unwrap();
    s.scrape(&text(""), 20_000).unwrap();
    assert!(
        samples(&st, "ts_series")
            .last()
            .is_some_and(|x| is_stale_nan(x.v))
    );
}

#[test]
fn series_come_back_after_going_stale() {
    let (mut s, st) = scraper("");
    s.scrape(&text("flappy 1\n"), 1000).unwrap();
    s.scrape(&text("other 1\n"), 2000).unwrap();
    s.scrape(&text("flappy 3\n"), 3000).unwrap();
    let f = samples(&st, "flappy");
    assert_eq!(f.len(), 3);
    assert!(is_stale_nan(f[1].v) && f[1].t == 2000);
    assert_eq!(f[2], Sample { t: 3000, v: 3.0 });
    assert!(
        samples(&st, "other")
            .last()
            .is_some_and(|x| is_stale_nan(x.v) && x.t == 3000)
    );
}

#[test]
fn label_length_limits() {
    let (mut s, st) = scraper("    label_value_length_limit: 12\n");
    let e = s
        .scrape(&text("m{path=\"/a/very/long/path\"} 1\n"), 1000)
        .unwrap_err();
    assert!(
        e.starts_with("label_value_length_limit exceeded (metric: m, label name: path"),
        "{e}"
    );
    assert!(samples(&st, "m").is_empty());
    let (mut s, _) = scraper("    label_name_length_limit: 8\n");
    let e = s
        .scrape(&text("m{longername=\"x\"} 1\n"), 1000)
        .unwrap_err();
    assert!(e.starts_with("label_name_length_limit exceeded (metric: m, label name: longername, length: 10, limit: 8)"), "{e}");
}

#[test]
fn metric_relabel_rewrites_and_keeps() {
    let (mut s, st) = scraper(
        "    metric_relabel_configs:\n      - source_labels: [__name__]\n        regex: 'keep_.*'\n        action: keep\n      - source_labels: [path]\n        regex: '/api/v1/(.*)'\n        target_label: route\n      - regex: path\n        action: labeldrop\n",
    );
    s.scrape(&text("keep_me{path=\"/api/v1/users\"} 1\nnot_me 2\n"), 1000)
        .unwrap();
    let got = st
        .series(&[Matcher::equal("__name__", "keep_me")], i64::MIN, i64::MAX)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get("route"), Some("users"));
    assert_eq!(got[0].get("path"), None);
    assert_eq!(got[0].get("job"), Some("t"));
    assert!(samples(&st, "not_me").is_empty());
}

#[test]
fn openmetrics_without_eof_fails_and_stores_nothing() {
    let (mut s, st) = scraper("");
    let body = Fetched {
        body: b"a_total 1\n".to_vec(),
        content_type: "application/openmetrics-text; version=1.0.0".into(),
    };
    assert!(s.scrape(&body, 1000).is_err());
    assert!(samples(&st, "a_total").is_empty());
    assert_eq!(samples(&st, "up")[0].v, 0.0);
}

/// `MemStorage` cannot append by reference, so every steady-state sample and every stale
/// marker goes through labels rebuilt from the cached series text: they must be exactly the
/// labels of the first scrape (escapes, a clashing target label renamed `exported_job`,
/// metric relabelling), in both formats, or the samples would land in a second series.
#[test]
fn labels_rebuilt_from_cached_text_match_the_first_scrape() {
    for om in [false, true] {
        let (mut s, st) = scraper(
            "    metric_relabel_configs:\n      - source_labels: [path]\n        target_label: route\n        regex: '/api/(.*)'\n        replacement: r_$1\n",
        );
        let body = |v: u32, with_odd: bool| {
            let mut b = String::from("# TYPE m counter\n");
            if with_odd {
                b.push_str(&format!(
                    "m_total{{job=\"svc\",path=\"/api/x\",q=\"a \\\"b\\\" \\\\ c\\nd\"}} {v}\n"
                ));
            }
            b.push_str(&format!("m_total{{path=\"/api/y\"}} {v}\n"));
            if om {
                b.push_str("# EOF\n");
            }
            Fetched {
                body: b.into_bytes(),
                content_type: if om {
                    "application/openmetrics-text; version=1.0.0".into()
                } else {
                    "text/plain; version=0.0.4".into()
                },
            }
        };
        s.scrape(&body(1, true), 1000).unwrap();
        s.scrape(&body(2, true), 2000).unwrap();
        s.scrape(&body(3, false), 3000).unwrap();
        let series = st
            .select(
                &[Matcher::equal("__name__", "m_total")],
                &SelectHints::range(i64::MIN, i64::MAX),
            )
            .unwrap();
        assert_eq!(series.len(), 2, "om={om}: {series:?}");
        let odd = series
            .iter()
            .find(|s| s.labels.get("route") == Some("r_x"))
            .expect("relabelled series");
        assert_eq!(odd.labels.get("q"), Some("a \"b\" \\ c\nd"), "om={om}");
        assert_eq!(odd.labels.get("exported_job"), Some("svc"), "om={om}");
        assert_eq!(odd.labels.get("job"), Some("t"), "om={om}");
        let v: Vec<(i64, bool)> = odd
            .samples
            .iter()
            .map(|s| (s.t, is_stale_nan(s.v)))
            .collect();
        assert_eq!(
            v,
            vec![(1000, false), (2000, false), (3000, true)],
            "om={om}"
        );
        let other = series
            .iter()
            .find(|s| s.labels.get("route") == Some("r_y"))
            .unwrap();
        assert_eq!(other.samples.len(), 3, "om={om}");
    }
}

/// Into the real TSDB: series are appended through handles after their first scrape; when
/// the store collects a series (here: retention) the loop falls back to its labels.
#[test]
fn tsdb_handles_survive_series_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        lookout_tsdb::Tsdb::open(dir.path(), lookout_tsdb::TsdbOptions::default()).unwrap(),
    );
    let cfg = PrometheusConfig::parse("scrape_configs:\n  - job_name: t\n").unwrap();
    let mut a = OfflineScraper::new(&cfg.scrape_configs[0], "a:9100", db.clone()).unwrap();
    let mut b = OfflineScraper::new(&cfg.scrape_configs[0], "b:9100", db.clone()).unwrap();
    let t0 = 1_700_000_000_000i64;
    for (i, v) in [1, 2, 3].into_iter().enumerate() {
        a.scrape(&text(&format!("x{{k=\"1\"}} {v}\n")), t0 + i as i64 * 5000)
            .unwrap();
    }
    // `b` moves time on by 30 days; retention (15 d default) collects everything of `a`.
    let later = t0 + 30 * 24 * 3_600_000;
    b.scrape(&text("y 1\n"), later).unwrap();
    db.enforce_retention().unwrap();
    a.scrape(&text("x{k=\"1\"} 4\n"), later + 1000).unwrap();
    a.scrape(&text("x{k=\"1\"} 5\n"), later + 6000).unwrap();
    let got = db
        .select(
            &[Matcher::equal("__name__", "x")],
            &SelectHints::range(later, i64::MAX),
        )
        .unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].labels.get("instance"), Some("a:9100"));
    let v: Vec<f64> = got[0].samples.iter().map(|s| s.v).collect();
    assert_eq!(v, vec![4.0, 5.0]);
}

/// Into the real TSDB, which keeps its references: the cache holds no series text, yet a
/// series seen in one scrape only, and one seen for a while, both get their stale marker
/// when they disappear (taken by reference), and come back as the same series.
#[test]
fn tsdb_stale_markers_without_series_texts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(
        lookout_tsdb::Tsdb::open(dir.path(), lookout_tsdb::TsdbOptions::default()).unwrap(),
    );
    let cfg = PrometheusConfig::parse("scrape_configs:\n  - job_name: t\n").unwrap();
    let mut s = OfflineScraper::new(&cfg.scrape_configs[0], "a:9100", db.clone()).unwrap();
    let t0 = 1_700_000_000_000i64;
    s.scrape(&text("long 1\nonce{k=\"1\"} 1\n"), t0).unwrap();
    s.scrape(&text("long 2\n"), t0 + 5000).unwrap();
    s.scrape(&text("long 3\n"), t0 + 10_000).unwrap();
    s.scrape(&text("other 1\n"), t0 + 15_000).unwrap();
    s.scrape(&text("other 2\nlong 4\n"), t0 + 20_000).unwrap();
    let got = |name: &str| -> Vec<(i64, Option<f64>)> {
        let series = db
            .select(
                &[Matcher::equal("__name__", name)],
                &SelectHints::range(i64::MIN, i64::MAX),
            )
            .unwrap();
        assert_eq!(series.len(), 1, "{name}: {series:?}");
        series[0]
            .samples
            .iter()
            .map(|x| (x.t - t0, (!is_stale_nan(x.v)).then_some(x.v)))
            .collect()
    };
    assert_eq!(got("once"), vec![(0, Some(1.0)), (5000, None)]);
    assert_eq!(
        got("long"),
        vec![
            (0, Some(1.0)),
            (5000, Some(2.0)),
            (10_000, Some(3.0)),
            (15_000, None),
            (20_000, Some(4.0))
        ]
    );
}
