//! Side by side against the real exporters (Debian `prometheus-redis-exporter`,
//! `prometheus-postgres-exporter`) on the same Redis and PostgreSQL: every family the real
//! exporter prints (bar the few listed as not implemented) exists with the same label names,
//! and stable values agree.
//!
//! Servers: started here in temp dirs on free loopback ports, or taken from
//! `LOOKOUT_TEST_REDIS_ADDR` (`host:port`) / `LOOKOUT_TEST_PG_DSN` (e.g. from
//! `scripts/db-servers.sh`). Missing peers print `SKIP exporters_interop: <reason>`; under
//! `CI=true` that is a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

type Exposition = BTreeMap<String, BTreeMap<Vec<(String, String)>, f64>>;

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("exporters_interop: required peer missing under CI: {reason}");
    }
    println!("SKIP exporters_interop: {reason}");
}

use lookout_test_ports::free_port;

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(bin))
            .find(|f| f.is_file())
    })
}

fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn wait_port(port: u16, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect exporter");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("send");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read");
    let (head, body) = buf.split_once("\r\n\r\n").expect("http response");
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200"),
        "{head}"
    );
    body.to_string()
}

/// Minimal text-format reader: `name{a="b",...} value`.
fn parse(text: &str) -> Exposition {
    let mut out = Exposition::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().expect("value"),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let mut labels = Vec::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'));
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => val.push('\n'),
                                Some(o) => val.push(o),
                                None => {}
                            },
                            '"' => break,
                            o => val.push(o),
                        }
                    }
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                    labels.push((key.trim().to_string(), val));
                }
                labels.sort();
                (n.to_string(), labels)
            }
        };
        out.entry(name).or_default().insert(labels, value);
    }
    out
}

fn label_names(e: &Exposition, name: &str) -> BTreeSet<Vec<String>> {
    e.get(name)
        .map(|m| {
            m.keys()
                .map(|ls| ls.iter().map(|(k, _)| k.clone()).collect())
                .collect()
        })
        .unwrap_or_default()
}

fn value(e: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    e.get(name)?
        .iter()
        .find(|(ls, _)| {
            labels
                .iter()
                .all(|(k, v)| ls.iter().any(|(a, b)| a == k && b == v))
        })
        .map(|(_, v)| *v)
}

/// Every family of `real` (minus runtime and `not_implemented`) exists in `ours` with the
/// same label-name sets. Returns the number of families compared.
fn compare_families(real: &Exposition, ours: &Exposition, not_implemented: &[&str]) -> usize {
    let runtime = ["go_", "process_", "promhttp_"];
    let mut compared = 0;
    let mut problems = Vec::new();
    for name in real.keys() {
        if runtime.iter().any(|p| name.starts_with(p))
            || not_implemented.iter().any(|p| name.starts_with(p))
        {
            continue;
        }
        compared += 1;
        if !ours.contains_key(name) {
            problems.push(format!("missing family {name}"));
            continue;
        }
        let (a, b) = (label_names(real, name), label_names(ours, name));
        if a != b {
            problems.push(format!("{name}: label names {a:?} vs ours {b:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    compared
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run helper");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn lookout() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lookout"));
    c.env("LOOKOUT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

#[test]
fn redis_exporter_side_by_side() {
    let Some(real_bin) = which("prometheus-redis-exporter") else {
        return skip("prometheus-redis-exporter not installed");
    };
    let Some(cli) = which("redis-cli") else {
        return skip("redis-cli not installed");
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut _server = None;
    let addr = match std::env::var("LOOKOUT_TEST_REDIS_ADDR") {
        Ok(a) => a,
        Err(_) => {
            let Some(server) = which("redis-server") else {
                return skip("redis-server not installed");
            };
            let port = free_port();
            _server = Some(Proc(
                Command::new(server)
                    .args([
                        "--port",
                        &port.to_string(),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                    ])
                    .arg("--dir")
                    .arg(tmp.path())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("redis-server"),
            ));
            wait_port(port, "redis-server");
            format!("127.0.0.1:{port}")
        }
    };
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let rc = |args: &[&str]| {
        let mut c = Command::new(&cli);
        c.args(["-h", host, "-p", port]).args(args);
        run(&mut c);
    };
    // A known dataset: 120 keys in db0, 7 expiring ones in db2, maxmemory 200mb.
    rc(&["-n", "0", "FLUSHALL"]);
    rc(&["CONFIG", "SET", "maxmemory", "209715200"]);
    for i in 0..120 {
        rc(&["-n", "0", "SET", &format!("key:{i}"), "value"]);
    }
    for i in 0..7 {
        rc(&["-n", "2", "SETEX", &format!("tmp:{i}"), "3600", "v"]);
    }

    let (real_port, our_port) = (free_port(), free_port());
    let _real = Proc(
        Command::new(real_bin)
            .args(["-redis.addr", &format!("redis://{addr}")])
            .args(["-web.listen-address", &format!("127.0.0.1:{real_port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("real exporter"),
    );
    let _ours = Proc(
        lookout()
            .args([
                "exporter",
                "redis",
                "--addr",
                &format!("127.0.0.1:{our_port}"),
            ])
            .args(["--redis-addr", &format!("redis://{addr}")])
            .spawn()
            .expect("lookout exporter redis"),
    );
    wait_port(real_port, "redis_exporter");
    wait_port(our_port, "lookout exporter redis");
    // Scrape twice so per-command families exist for both exporters' commands.
    http_get(real_port, "/metrics");
    http_get(our_port, "/metrics");
    let real = parse(&http_get(real_port, "/metrics"));
    let ours = parse(&http_get(our_port, "/metrics"));

    let compared = compare_families(
        &real,
        &ours,
        &["redis_last_key_groups_scrape_duration_milliseconds"],
    );
    assert!(compared > 100, "only {compared} families compared");
    for name in [
        "redis_config_maxmemory",
        "redis_memory_max_bytes",
        "redis_up",
        "redis_config_maxclients",
    ] {
        assert_eq!(value(&real, name, &[]), value(&ours, name, &[]), "{name}");
    }
    assert_eq!(
        value(&ours, "redis_config_maxmemory", &[]),
        Some(209_715_200.0)
    );
    for db in ["db0", "db1", "db2", "db15"] {
        for name in ["redis_db_keys", "redis_db_keys_expiring"] {
            assert_eq!(
                value(&real, name, &[("db", db)]),
                value(&ours, name, &[("db", db)]),
                "{name}{{db={db}}}"
            );
        }
    }
    assert_eq!(value(&ours, "redis_db_keys", &[("db", "db0")]), Some(120.0));
    assert_eq!(
        value(&ours, "redis_db_keys_expiring", &[("db", "db2")]),
        Some(7.0)
    );
    let info = |e: &Exposition, l: &str| {
        e["redis_instance_info"]
            .keys()
            .next()
            .and_then(|ls| ls.iter().find(|(k, _)| k == l).map(|(_, v)| v.clone()))
    };
    for l in [
        "redis_version",
        "role",
        "tcp_port",
        "run_id",
        "maxmemory_policy",
    ] {
        assert_eq!(info(&real, l), info(&ours, l), "redis_instance_info {l}");
    }

    // Multi-target: /scrape?target= answers for the same server, and for a dead one with
    // redis_up 0 (HTTP 200).
    let scraped = parse(&http_get(our_port, &format!("/scrape?target={addr}")));
    assert_eq!(value(&scraped, "redis_up", &[]), Some(1.0));
    assert_eq!(
        value(&scraped, "redis_db_keys", &[("db", "db0")]),
        Some(120.0)
    );
    let dead = parse(&http_get(
        our_port,
        &format!("/scrape?target=127.0.0.1:{}", free_port()),
    ));
    assert_eq!(value(&dead, "redis_up", &[]), Some(0.0));
    println!("exporters_interop redis: {compared} families compared, values agree");
}

fn start_postgres(dir: &Path) -> Option<(Proc, String)> {
    let bindir = pg_bindir()?;
    let data = dir.join("data");
    let port = free_port();
    let as_postgres = |args: &[&str]| {
        let mut c = if nix_is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]);
            c
        } else {
            Command::new(args[0])
        };
        if nix_is_root() {
            c.args(args);
        } else {
            c.args(&args[1..]);
        }
        c
    };
    if nix_is_root() {
        run(Command::new("chown").arg("postgres").arg(dir));
    }
    let initdb = bindir.join("initdb");
    run(as_postgres(&[
        initdb.to_str()?,
        "-D",
        data.to_str()?,
        "-A",
        "trust",
        "-U",
        "postgres",
    ])
    .stdout(Stdio::null()));
    let postgres = bindir.join("postgres");
    let child = as_postgres(&[
        postgres.to_str()?,
        "-D",
        data.to_str()?,
        "-p",
        &port.to_string(),
        "-k",
        dir.to_str()?,
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "max_connections=57",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .ok()?;
    let proc = Proc(child);
    wait_port(port, "postgres");
    Some((
        proc,
        format!("postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=disable"),
    ))
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn postgres_exporter_side_by_side() {
    let Some(real_bin) = which("prometheus-postgres-exporter") else {
        return skip("prometheus-postgres-exporter not installed");
    };
    let Some(psql) = which("psql") else {
        return skip("psql not installed");
    };
    let queries = Path::new("/usr/share/doc/prometheus-postgres-exporter/examples/queries.yaml");
    if !queries.is_file() {
        return skip("postgres_exporter example queries.yaml not found");
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut _server = None;
    let dsn = match std::env::var("LOOKOUT_TEST_PG_DSN") {
        Ok(d) => d,
        Err(_) => match start_postgres(tmp.path()) {
            Some((p, dsn)) => {
                _server = Some(p);
                dsn
            }
            None => return skip("PostgreSQL server binaries not installed"),
        },
    };
    // Postgres accepts TCP slightly before it accepts queries.
    let t = Instant::now();
    while !Command::new(&psql)
        .args([&dsn, "-Atc", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(t.elapsed() < Duration::from_secs(30), "postgres not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    run(Command::new(&psql).args([
        &dsn,
        "-q",
        "-c",
        "DROP TABLE IF EXISTS interop_t; CREATE TABLE interop_t(id int primary key, v text); \
         INSERT INTO interop_t SELECT g, md5(g::text) FROM generate_series(1, 5000) g; ANALYZE interop_t;",
    ]));

    let (real_port, our_port) = (free_port(), free_port());
    let _real = Proc(
        Command::new(real_bin)
            .env("DATA_SOURCE_NAME", &dsn)
            .arg(format!("--web.listen-address=127.0.0.1:{real_port}"))
            .arg(format!("--extend.query-path={}", queries.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("real exporter"),
    );
    let _ours = Proc(
        lookout()
            .env("DATA_SOURCE_NAME", &dsn)
            .args([
                "exporter",
                "postgres",
                "--addr",
                &format!("127.0.0.1:{our_port}"),
            ])
            .spawn()
            .expect("lookout exporter postgres"),
    );
    wait_port(real_port, "postgres_exporter");
    wait_port(our_port, "lookout exporter postgres");
    let real = parse(&http_get(real_port, "/metrics"));
    let ours = parse(&http_get(our_port, "/metrics"));

    let compared = compare_families(
        &real,
        &ours,
        &[
            "pg_exporter_user_queries_load_error",
            "pg_process_idle_seconds",
            "pg_statio_user_tables_",
        ],
    );
    assert!(compared > 200, "only {compared} families compared");
    assert_eq!(value(&ours, "pg_up", &[]), Some(1.0));
    if _server.is_some() {
        // Our own cluster runs with max_connections=57.
        assert_eq!(value(&ours, "pg_settings_max_connections", &[]), Some(57.0));
    }
    assert_eq!(
        value(&ours, "pg_settings_max_connections", &[]),
        value(&real, "pg_settings_max_connections", &[])
    );
    // Every setting agrees except those the exporters' own sessions change.
    let session = ["pg_settings_extra_float_digits"];
    for (name, series) in &real {
        if !name.starts_with("pg_settings_") || session.contains(&name.as_str()) {
            continue;
        }
        for (labels, v) in series {
            let ours_v = ours.get(name).and_then(|s| s.get(labels));
            assert_eq!(ours_v, Some(v), "{name}");
        }
    }
    for datname in ["postgres", "template0", "template1"] {
        let a = value(&real, "pg_database_size_bytes", &[("datname", datname)]).expect("real size");
        let b = value(&ours, "pg_database_size_bytes", &[("datname", datname)]).expect("our size");
        assert!(
            (a - b).abs() <= a * 0.01,
            "pg_database_size_bytes{{{datname}}}: {a} vs {b}"
        );
    }
    let t = [("relname", "interop_t")];
    assert_eq!(
        value(&ours, "pg_stat_user_tables_n_live_tup", &t),
        Some(5000.0)
    );
    assert_eq!(
        value(&real, "pg_stat_user_tables_n_live_tup", &t),
        value(&ours, "pg_stat_user_tables_n_live_tup", &t)
    );
    for m in ["accesssharelock", "exclusivelock"] {
        assert!(
            value(
                &ours,
                "pg_locks_count",
                &[("datname", "template1"), ("mode", m)]
            )
            .is_some()
        );
    }
    println!("exporters_interop postgres: {compared} families compared, values agree");
}
