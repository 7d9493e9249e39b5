//! Helpers shared by the binary's integration tests: child processes killed by PID on drop,
//! free loopback ports, a small Prometheus-API client and a result comparator.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A child process that is stopped (SIGTERM, then SIGKILL after 5 s) when dropped.
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> std::io::Result<ChildGuard> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        Ok(ChildGuard {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Ok(())` while running, otherwise its exit status and the end of its log.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}); log tail:\n{}",
                self.name,
                self.log_tail(40)
            )),
            Err(e) => Err(format!("{}: cannot poll: {e}", self.name)),
        }
    }

    /// The last `lines` lines of the child's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SIGTERM by PID so the child can shut down cleanly.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

pub use lookout_test_ports::free_port;

/// Finds an executable on `PATH`.
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Percent-encodes a query-string component.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Unix milliseconds as the API's `seconds.millis` parameter.
pub fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A client for a Prometheus-compatible HTTP API v1.
#[derive(Clone)]
pub struct PromApi {
    pub name: String,
    pub base: String,
    http: reqwest::Client,
}

impl PromApi {
    pub fn new(name: &str, addr: &str) -> PromApi {
        PromApi {
            name: name.to_string(),
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }

    /// GET `path?params`, returning the status and body text.
    pub async fn get_raw(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, String), String> {
        let qs: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", url_encode(k), url_encode(v)))
            .collect();
        let url = if qs.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{}", self.base, qs.join("&"))
        };
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{}: GET {url}: {e}", self.name))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| format!("{}: reading {url}: {e}", self.name))?;
        Ok((status, body))
    }

    /// GET an API endpoint and return `data` of a success envelope.
    pub async fn get_data(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let (status, body) = self.get_raw(path, params).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            format!(
                "{}: {path}: HTTP {status}, not JSON ({e}): {body:.300}",
                self.name
            )
        })?;
        if v.get("status").and_then(Value::as_str) != Some("success") {
            return Err(format!("{}: {path}: HTTP {status}: {body:.500}", self.name));
        }
        v.get("data")
            .cloned()
            .ok_or_else(|| format!("{}: {path}: no data: {body:.300}", self.name))
    }

    /// Instant query at `time_ms`.
    pub async fn instant(&self, query: &str, time_ms: i64) -> Result<Value, String> {
        self.get_data(
            "/api/v1/query",
            &[("query", query.to_string()), ("time", api_time(time_ms))],
        )
        .await
    }

    /// Range query over `[start_ms, end_ms]` every `step_ms`.
    pub async fn range(
        &self,
        query: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Value, String> {
        self.get_data(
            "/api/v1/query_range",
            &[
                ("query", query.to_string()),
                ("start", api_time(start_ms)),
                ("end", api_time(end_ms)),
                ("step", format!("{}", step_ms as f64 / 1000.0)),
            ],
        )
        .await
    }

    /// Waits until `path` answers 200, or fails after `timeout`.
    pub async fn wait_ready(
        &self,
        path: &str,
        timeout: Duration,
        child: &mut ChildGuard,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            child.check_running()?;
            if let Ok((200, _)) = self.get_raw(path, &[]).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready at {}{path} after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.base,
                    child.log_tail(40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One value of a result: sample timestamp in ms and the value (NaN allowed).
type Point = (i64, f64);

/// A query result normalised for comparison: result type and series keyed by label set.
#[derive(Debug, PartialEq)]
struct Normalised {
    kind: String,
    series: BTreeMap<String, Vec<Point>>,
}

fn parse_point(p: &Value) -> Result<Point, String> {
    let arr = p
        .as_array()
        .ok_or_else(|| format!("point is not an array: {p}"))?;
    let (Some(t), Some(v)) = (arr.first(), arr.get(1)) else {
        return Err(format!("point needs [t, v]: {p}"));
    };
    let t = t.as_f64().ok_or_else(|| format!("bad timestamp: {p}"))?;
    let v = v
        .as_str()
        .ok_or_else(|| format!("value is not a string: {p}"))?;
    let v = match v {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s
            .parse::<f64>()
            .map_err(|e| format!("bad value {s:?}: {e}"))?,
    };
    Ok(((t * 1000.0).round() as i64, v))
}

fn label_key(metric: Option<&Value>) -> Result<String, String> {
    let Some(m) = metric else {
        return Ok("{}".to_string());
    };
    let obj = m
        .as_object()
        .ok_or_else(|| format!("metric is not an object: {m}"))?;
    let sorted: BTreeMap<&String, &Value> = obj.iter().collect();
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map_or_else(|| v.to_string(), |s| format!("{s:?}"))
            )
        })
        .collect();
    Ok(format!("{{{}}}", parts.join(", ")))
}

fn normalise(data: &Value) -> Result<Normalised, String> {
    let kind = data
        .get("resultType")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("no resultType in {data:.200}"))?
        .to_string();
    let result = data.get("result").ok_or("no result")?;
    let mut series = BTreeMap::new();
    match kind.as_str() {
        "scalar" | "string" => {
            let p = if kind == "string" {
                // Strings compare by text; encode as NaN-free point with the text in the key.
                let arr = result.as_array().ok_or("bad string result")?;
                let text = arr.get(1).and_then(Value::as_str).unwrap_or("").to_string();
                series.insert(format!("string {text:?}"), Vec::new());
                None
            } else {
                Some(parse_point(result)?)
            };
            if let Some(p) = p {
                series.insert("{}".to_string(), vec![p]);
            }
        }
        "vector" | "matrix" => {
            for s in result.as_array().ok_or("result is not an array")? {
                let key = label_key(s.get("metric"))?;
                let points = if kind == "vector" {
                    vec![parse_point(
                        s.get("value").ok_or("vector sample without value")?,
                    )?]
                } else {
                    s.get("values")
                        .and_then(Value::as_array)
                        .ok_or("matrix series without values")?
                        .iter()
                        .map(parse_point)
                        .collect::<Result<Vec<_>, _>>()?
                };
                if series.insert(key.clone(), points).is_some() {
                    return Err(format!("duplicate series {key}"));
                }
            }
        }
        other => return Err(format!("unknown resultType {other}")),
    }
    Ok(Normalised { kind, series })
}

/// Values equal when both NaN, both the same infinity, or within 1e-9 relative
/// (1e-12 absolute near zero, where summation order alone moves the last bits).
pub fn values_equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (a - b).abs();
    diff <= 1e-12 || diff <= 1e-9 * a.abs().max(b.abs())
}

/// Compares two API `data` objects; `Err` holds a readable diff (`left`/`right` name them).
pub fn compare(left: &str, a: &Value, right: &str, b: &Value) -> Result<(), String> {
    let na = normalise(a).map_err(|e| format!("{left}: {e}"))?;
    let nb = normalise(b).map_err(|e| format!("{right}: {e}"))?;
    let mut diff = Vec::new();
    if na.kind != nb.kind {
        diff.push(format!(
            "resultType: {left} {} vs {right} {}",
            na.kind, nb.kind
        ));
    }
    for (k, pa) in &na.series {
        match nb.series.get(k) {
            None => diff.push(format!("only in {left}: {k} {}", fmt_points(pa))),
            Some(pb) => {
                let same = pa.len() == pb.len()
                    && pa
                        .iter()
                        .zip(pb)
                        .all(|(x, y)| x.0 == y.0 && values_equal(x.1, y.1));
                if !same {
                    diff.push(format!(
                        "{k}:\n      {left:>10}: {}\n      {right:>10}: {}",
                        fmt_points(pa),
                        fmt_points(pb)
                    ));
                }
            }
        }
    }
    for (k, pb) in &nb.series {
        if !na.series.contains_key(k) {
            diff.push(format!("only in {right}: {k} {}", fmt_points(pb)));
        }
    }
    if diff.is_empty() {
        Ok(())
    } else {
        let n = diff.len();
        diff.truncate(8);
        if n > 8 {
            diff.push(format!("... and {} more differences", n - 8));
        }
        Err(diff.join("\n    "))
    }
}

fn fmt_points(p: &[Point]) -> String {
    let shown: Vec<String> = p
        .iter()
        .take(6)
        .map(|(t, v)| format!("{}@{v}", api_time(*t)))
        .collect();
    if p.len() > 6 {
        format!("[{} ... ({} points)]", shown.join(" "), p.len())
    } else {
        format!("[{}]", shown.join(" "))
    }
}

/// Compares two metadata answers (`/labels`, `/label/X/values`, `/series`) as sets.
pub fn compare_sets(left: &str, a: &Value, right: &str, b: &Value) -> Result<(), String> {
    let set = |v: &Value, who: &str| -> Result<std::collections::BTreeSet<String>, String> {
        v.as_array()
            .ok_or_else(|| format!("{who}: data is not an array: {v:.200}"))?
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Object(_) => label_key(Some(x)),
                other => Err(format!("{who}: unexpected element {other}")),
            })
            .collect()
    };
    let sa = set(a, left)?;
    let sb = set(b, right)?;
    if sa.is_empty() {
        return Err(format!(
            "{left} returned an empty set: the comparison would be vacuous"
        ));
    }
    let only_a: Vec<_> = sa.difference(&sb).take(8).collect();
    let only_b: Vec<_> = sb.difference(&sa).take(8).collect();
    if only_a.is_empty() && only_b.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "only in {left}: {only_a:?}\n    only in {right}: {only_b:?}"
        ))
    }
}

/// Number of series (or 1 for scalars) in an API `data` object.
pub fn result_len(data: &Value) -> usize {
    match data.get("result") {
        Some(Value::Array(a))
            if data.get("resultType").and_then(Value::as_str) != Some("scalar") =>
        {
            a.len()
        }
        Some(_) => 1,
        None => 0,
    }
}

/// The repository root (for the example configuration and scripts).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A base port with seven free consecutive loopback ports from it (the demo's services).
pub fn free_port_block() -> u16 {
    lookout_test_ports::free_port_block(7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values() {
        assert!(values_equal(f64::NAN, f64::NAN));
        assert!(!values_equal(f64::NAN, 1.0));
        assert!(values_equal(f64::INFINITY, f64::INFINITY));
        assert!(!values_equal(f64::INFINITY, f64::NEG_INFINITY));
        assert!(values_equal(1e6, 1e6 + 1e-4));
        assert!(!values_equal(1e6, 1e6 + 1e-2));
        assert!(values_equal(0.0, 1e-13));
        assert!(!values_equal(0.0, 1e-6));
    }

    #[test]
    fn compares_vectors_by_label_set() {
        let a = json!({"resultType": "vector", "result": [
            {"metric": {"job": "a", "x": "1"}, "value": [10.5, "1.5"]},
            {"metric": {"job": "b"}, "value": [10.5, "NaN"]}]});
        let b = json!({"resultType": "vector", "result": [
            {"metric": {"job": "b"}, "value": [10.5, "NaN"]},
            {"metric": {"x": "1", "job": "a"}, "value": [10.5, "1.5000000000001"]}]});
        assert_eq!(compare("l", &a, "r", &b), Ok(()));

        let c = json!({"resultType": "vector", "result": [
            {"metric": {"job": "a", "x": "1"}, "value": [10.5, "1.6"]}]});
        let err = compare("l", &a, "r", &c).unwrap_err();
        assert!(err.contains("only in l: {job=\"b\"}"), "{err}");
        assert!(err.contains("1.6"), "{err}");
    }

    #[test]
    fn compares_matrices_timestamps_and_types() {
        let a = json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "1"], [2.0, "2"]]}]});
        let b = json!({"resultType": "matrix", "result": [
            {"metric": {}, "values": [[1.0, "1"], [3.0, "2"]]}]});
        assert!(compare("l", &a, "r", &b).is_err());
        let s = json!({"resultType": "scalar", "result": [1.0, "1"]});
        assert!(compare("l", &a, "r", &s).is_err());
        assert_eq!(compare("l", &s, "r", &s), Ok(()));
        assert_eq!(result_len(&s), 1);
        assert_eq!(result_len(&a), 1);
    }

    #[test]
    fn compares_sets() {
        let a = json!(["a", "b"]);
        assert_eq!(compare_sets("l", &a, "r", &json!(["b", "a"])), Ok(()));
        assert!(compare_sets("l", &a, "r", &json!(["a"])).is_err());
        assert!(compare_sets("l", &json!([]), "r", &json!([])).is_err());
        let s1 = json!([{"__name__": "up", "job": "x"}]);
        let s2 = json!([{"job": "x", "__name__": "up"}]);
        assert_eq!(compare_sets("l", &s1, "r", &s2), Ok(()));
        assert!(compare_sets("l", &s1, "r", &json!([{"job": "y", "__name__": "up"}])).is_err());
    }

    #[test]
    fn encodes_urls_and_times() {
        assert_eq!(
            url_encode("sum(x{a=~\"5..\"})"),
            "sum%28x%7Ba%3D~%225..%22%7D%29"
        );
        assert_eq!(api_time(1_700_000_000_123), "1700000000.123");
        assert_eq!(api_time(5), "0.005");
    }
}
