//! `lookout query`: PromQL against any Prometheus-compatible API, printed like promtool.

use anyhow::{Context, bail};
use serde_json::Value as Json;

use crate::cli::QueryArgs;

pub async fn run(args: QueryArgs) -> anyhow::Result<()> {
    let base = args.server.trim_end_matches('/');
    let client = reqwest::Client::new();
    let (url, params): (String, Vec<(&str, String)>) = match (&args.start, &args.end) {
        (Some(start), Some(end)) => (
            format!("{base}/api/v1/query_range"),
            vec![
                ("query", args.query.clone()),
                ("start", start.clone()),
                ("end", end.clone()),
                ("step", args.step.clone()),
            ],
        ),
        _ => {
            let mut p = vec![("query", args.query.clone())];
            if let Some(t) = &args.time {
                p.push(("time", t.clone()));
            }
            (format!("{base}/api/v1/query"), p)
        }
    };
    let resp = client
        .post(&url)
        .form(&params)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = resp.status();
    let body = resp.text().await.context("reading the response")?;
    let json: Json = serde_json::from_str(&body).with_context(|| {
        format!(
            "the server answered HTTP {status} with a body that is not JSON: {}",
            truncate(&body, 300)
        )
    })?;
    if json["status"] != "success" {
        bail!(
            "query failed ({}): {}",
            json["errorType"].as_str().unwrap_or("unknown"),
            json["error"].as_str().unwrap_or(&body)
        );
    }
    for w in json["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or_default());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json["data"])?);
        return Ok(());
    }
    print!("{}", render(&json["data"]));
    Ok(())
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn metric_string(m: &Json) -> String {
    let Some(obj) = m.as_object() else {
        return "{}".into();
    };
    let name = obj.get("__name__").and_then(Json::as_str).unwrap_or("");
    let mut parts: Vec<String> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                Json::String(v.as_str().unwrap_or_default().to_string())
            )
        })
        .collect();
    parts.sort();
    format!("{name}{{{}}}", parts.join(", "))
}

fn point(p: &Json) -> String {
    format!("{} @[{}]", p[1].as_str().unwrap_or("?"), p[0])
}

/// Renders `data` of a query response as promtool does (`metric => value @[time]`).
fn render(data: &Json) -> String {
    let mut out = String::new();
    match data["resultType"].as_str() {
        Some("vector") => {
            for s in data["result"].as_array().into_iter().flatten() {
                out += &format!(
                    "{} => {}\n",
                    metric_string(&s["metric"]),
                    point(&s["value"])
                );
            }
        }
        Some("matrix") => {
            for s in data["result"].as_array().into_iter().flatten() {
                out += &format!("{} =>\n", metric_string(&s["metric"]));
                for p in s["values"].as_array().into_iter().flatten() {
                    out += &format!("{}\n", point(p));
                }
            }
        }
        Some("scalar") | Some("string") => out += &format!("{}\n", point(&data["result"])),
        _ => out += &format!("{data}\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_vectors_like_promtool() {
        let data: Json = serde_json::from_str(
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1.5,"1"]}]}"#,
        )
        .unwrap();
        assert_eq!(render(&data), "up{job=\"a\"} => 1 @[1.5]\n");
        let data: Json =
            serde_json::from_str(r#"{"resultType":"scalar","result":[4,"2"]}"#).unwrap();
        assert_eq!(render(&data), "2 @[4]\n");
    }
}
