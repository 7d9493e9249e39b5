//! Loading whole configurations: defaults, inheritance, path resolution and errors.

use std::path::Path;

use lookout_config::{ConfigError, Duration, PrometheusConfig, ScrapeProtocol};

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata")
        .join(name)
}

fn err(yaml: &str) -> String {
    match PrometheusConfig::parse(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_config_gets_prometheus_defaults() {
    for text in ["", "# only a comment\n", "global: {}\n"] {
        let c = PrometheusConfig::parse(text).unwrap();
        assert_eq!(c.global.scrape_interval, Duration::from_secs(60));
        assert_eq!(c.global.scrape_timeout, Duration::from_secs(10));
        assert_eq!(c.global.evaluation_interval, Duration::from_secs(60));
        assert!(c.scrape_configs.is_empty());
        assert_eq!(c.original, text);
    }
}

#[test]
fn good_file_loads_with_inheritance_and_resolved_paths() {
    let path = testdata("good.yml");
    let dir = path.parent().unwrap();
    let c = PrometheusConfig::load(&path).unwrap();
    assert_eq!(c.path.as_deref(), Some(path.as_path()));
    assert!(c.original.contains("job_name: services"));
    assert_eq!(c.global.scrape_interval, Duration::from_secs(15));
    assert_eq!(c.global.scrape_timeout, Duration::from_secs(10));
    assert_eq!(c.global.external_labels().get("cluster"), Some("wealist"));
    assert_eq!(
        c.global.query_log_file.as_deref(),
        Some(dir.join("query.log").as_path())
    );
    assert_eq!(
        c.rule_files,
        vec![
            dir.join("rules/*.yml").to_string_lossy().into_owned(),
            "/etc/abs/alerts.yml".into()
        ]
    );

    let p = c.scrape_config("prometheus").unwrap();
    assert_eq!(p.scrape_interval, Duration::from_secs(15));
    assert_eq!(p.scrape_timeout, Duration::from_secs(10));
    assert_eq!(p.metrics_path, "/metrics");
    assert_eq!(p.scheme, "http");
    assert!(p.honor_timestamps);
    assert!(!p.honor_labels);
    assert_eq!(p.sample_limit, 5000, "inherited from global");
    assert!(p.http.follow_redirects && p.http.enable_http2);
    assert_eq!(p.scrape_protocols.len(), 4);

    let s = c.scrape_config("services").unwrap();
    assert_eq!(s.scrape_interval, Duration::from_secs(5));
    assert_eq!(
        s.scrape_timeout,
        Duration::from_secs(5),
        "timeout capped at the interval"
    );
    assert_eq!(s.metrics_path, "/actuator/prometheus");
    assert_eq!(s.scheme, "https");
    assert_eq!(s.params["module"], vec!["http_2xx".to_string()]);
    assert!(s.honor_labels && !s.honor_timestamps);
    assert_eq!(s.sample_limit, 100);
    assert_eq!(s.body_size_limit.0, 10 << 20);
    let auth = s.http.authorization.as_ref().unwrap();
    assert_eq!(auth.kind, "Bearer");
    assert_eq!(
        auth.credentials_file.as_deref(),
        Some(dir.join("token.txt").as_path())
    );
    assert_eq!(
        s.http.tls_config.ca_file.as_deref(),
        Some(dir.join("ca.pem").as_path())
    );
    assert!(s.http.tls_config.insecure_skip_verify);
    assert_eq!(s.static_configs[0].targets.len(), 2);
    assert_eq!(s.static_configs[0].labels["tier"], "backend");
    assert_eq!(
        s.file_sd_configs[0].refresh_interval,
        Duration::from_secs(60)
    );
    assert_eq!(
        s.file_sd_configs[0].files[0],
        dir.join("targets/*.json").to_string_lossy()
    );
    assert_eq!(s.relabel_configs.len(), 1);
    assert_eq!(s.metric_relabel_configs[0].regex.as_str(), "go_.*");

    let b = c.scrape_config("legacy-bearer").unwrap();
    assert_eq!(b.scrape_timeout, Duration::from_secs(3));
    let auth = b.http.authorization.as_ref().unwrap();
    assert_eq!(
        auth.credentials.as_ref().map(|s| s.expose()),
        Some("s3cret")
    );
    assert!(
        !format!("{b:?}").contains("s3cret"),
        "secrets are not printed by Debug"
    );

    let am = &c.alerting.alertmanagers[0];
    assert_eq!(am.timeout, Duration::from_secs(5));
    assert_eq!(am.api_version, "v2");
    assert_eq!(
        am.http
            .basic_auth
            .as_ref()
            .unwrap()
            .password_file
            .as_deref(),
        Some(dir.join("secrets/am.pw").as_path())
    );
    assert_eq!(c.alerting.alert_relabel_configs.len(), 1);

    let rw = &c.remote_write[0];
    assert_eq!(rw.remote_timeout, Duration::from_secs(30));
    assert_eq!(rw.queue_config.max_samples_per_send, 500);
    assert_eq!(rw.queue_config.capacity, 10_000);
    assert_eq!(rw.headers["X-Scope-OrgID"], "team");
    assert!(c.remote_read[0].read_recent);
    assert_eq!(c.remote_read[0].remote_timeout, Duration::from_secs(60));
    assert_eq!(
        c.storage.tsdb.out_of_order_time_window,
        Duration::from_secs(1800)
    );
}

#[test]
fn unknown_field_reports_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, "global:\n  scrape_interval: 15s\nscrape_configs:\n  - job_name: a\n    scrape_intervall: 5s\n").unwrap();
    let e = PrometheusConfig::load(&path).unwrap_err();
    match &e {
        ConfigError::Yaml {
            line,
            field,
            message,
            ..
        } => {
            assert_eq!(*line, Some(5));
            assert!(field.starts_with("scrape_configs[0]"), "{field}");
            assert!(
                message.contains("unknown field `scrape_intervall`"),
                "{message}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let s = e.to_string();
    assert!(s.starts_with(&format!("{}:5:", path.display())), "{s}");
}

#[test]
fn bad_duration_names_the_field() {
    let e = err("global:\n  scrape_interval: 15 seconds\n");
    assert!(e.contains("global.scrape_interval"), "{e}");
    assert!(e.contains("not a valid duration string"), "{e}");
}

#[test]
fn missing_file_is_an_io_error() {
    let e = PrometheusConfig::load("/nonexistent/prometheus.yml").unwrap_err();
    assert!(matches!(e, ConfigError::Io { .. }));
    assert!(e.to_string().contains("/nonexistent/prometheus.yml"));
}

#[test]
fn validation_rules() {
    let cases: &[(&str, &str)] = &[
        (
            "scrape_configs:\n  - static_configs: []\n",
            "job_name is empty",
        ),
        (
            "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
            "found multiple scrape configs with job name \"a\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
            "scrape timeout greater than scrape interval for scrape config with job name \"a\"",
        ),
        (
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 6s\n",
            "global scrape timeout greater than scrape interval",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scheme: ftp\n",
            "invalid scheme \"ftp\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://x:1/metrics']\n",
            "is not a valid hostname",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - source_labels: [x]\n",
            "relabel configuration for replace action requires 'target_label' value",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: p}\n    bearer_token: t\n",
            "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    authorization: {type: Basic, credentials: x}\n",
            "authorization type cannot be set to \"basic\"",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    basic_auth: {username: u, password: p, password_file: f}\n",
            "at most one of basic_auth password & password_file must be configured",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    file_sd_configs:\n      - files: ['targets.txt']\n",
            "path name \"targets.txt\" is not valid for file discovery",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_protocols: [PrometheusText0.0.4, PrometheusText0.0.4]\n",
            "duplicated protocol in scrape_protocols",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_protocols: [Bogus]\n",
            "unknown variant `Bogus`",
        ),
        (
            "remote_write:\n  - name: x\n",
            "url for remote_write is empty",
        ),
        (
            "alerting:\n  alertmanagers:\n    - api_version: v1\n",
            "expected Alertmanager api version to be one of [v2] but got v1",
        ),
        (
            "global:\n  metric_name_validation_scheme: legacy\n  external_labels: {'a.b': x}\n",
            "\"a.b\" is not a valid label name",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    body_size_limit: 10\n",
            "not a valid size",
        ),
        (
            "scrape_config:\n  - job_name: a\n",
            "unknown field `scrape_config`",
        ),
        (
            "scrape_configs:\n  - job_name: 'a\n",
            "unexpected end of stream",
        ),
        ("global: [1]\n", "field global: invalid type: sequence"),
    ];
    for (yaml, want) in cases {
        let got = err(yaml);
        assert!(
            got.contains(want),
            "for\n{yaml}got: {got}\nwant substring: {want}"
        );
    }
}

#[test]
fn timeout_inherits_global_when_shorter_than_interval() {
    let c = PrometheusConfig::parse("global:\n  scrape_timeout: 2s\nscrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n  - job_name: b\n").unwrap();
    assert_eq!(c.scrape_configs[0].scrape_timeout, Duration::from_secs(1));
    assert_eq!(c.scrape_configs[1].scrape_timeout, Duration::from_secs(2));
}

#[test]
fn accept_header_follows_scrape_protocols() {
    let c = PrometheusConfig::parse(
        "scrape_configs:\n  - job_name: a\n    scrape_protocols: [PrometheusText0.0.4]\n    fallback_scrape_protocol: OpenMetricsText1.0.0\n",
    )
    .unwrap();
    let s = &c.scrape_configs[0];
    assert_eq!(
        s.accept_header(),
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    );
    assert_eq!(
        s.fallback_scrape_protocol,
        Some(ScrapeProtocol::OpenMetricsText1_0_0)
    );
    let c = PrometheusConfig::parse("scrape_configs:\n  - job_name: a\n").unwrap();
    assert!(
        c.scrape_configs[0]
            .accept_header()
            .starts_with("application/openmetrics-text;version=1.0.0")
    );
}

#[test]
fn relabel_configs_get_the_job_name_scheme() {
    let yaml = "scrape_configs:\n  - job_name: a\n    metric_name_validation_scheme: legacy\n    relabel_configs:\n      - target_label: 'a.b'\n        replacement: x\n";
    let e = err(yaml);
    assert!(
        e.contains("\"a.b\" is invalid 'target_label' for replace action"),
        "{e}"
    );
    let ok = yaml.replace("legacy", "utf8");
    assert!(PrometheusConfig::parse(&ok).is_ok());
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Arbitrary text (and YAML-looking text) is an error or a config, never a panic.
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = PrometheusConfig::parse(&s);
        }

        #[test]
        fn yamlish_never_panics(
            key in "(global|scrape_configs|job_name|scrape_interval|targets|regex|action)",
            val in "[a-z0-9_:./\\[\\]{}*-]{0,12}",
        ) {
            let _ = PrometheusConfig::parse(&format!("{key}: {val}\n"));
            let _ = PrometheusConfig::parse(&format!("scrape_configs:\n  - job_name: j\n    {key}: {val}\n"));
        }

        // Any job/interval combination that loads respects timeout <= interval.
        #[test]
        fn loaded_timeouts_never_exceed_intervals(iv in 1u64..600, to in proptest::option::of(1u64..600)) {
            let mut y = format!("scrape_configs:\n  - job_name: j\n    scrape_interval: {iv}s\n");
            if let Some(to) = to {
                y.push_str(&format!("    scrape_timeout: {to}s\n"));
            }
            match PrometheusConfig::parse(&y) {
                Ok(c) => prop_assert!(c.scrape_configs[0].scrape_timeout <= c.scrape_configs[0].scrape_interval),
                Err(e) => prop_assert!(to.is_some_and(|to| to > iv), "unexpected error {}", e),
            }
        }
    }
}
