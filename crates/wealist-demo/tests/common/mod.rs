//! What the service tests share: a stack on free loopback ports and a small JSON client.

#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wealist_demo::ServiceKind;
use wealist_demo::backing::Backing;
use wealist_demo::stack::{ServiceStack, StackConfig};

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], lookout_test_ports::free_port()))
}

/// The seven services on free ports, with `backing` stores when given.
pub async fn start(dir: &Path, backing: Option<Arc<Backing>>) -> Arc<ServiceStack> {
    let mut cfg = StackConfig::seed_ports(dir);
    cfg.addrs = ServiceKind::ALL
        .into_iter()
        .map(|k| (k, free_addr()))
        .collect::<BTreeMap<_, _>>();
    cfg.backing = backing;
    ServiceStack::start(cfg).await.expect("stack starts")
}

pub struct Api {
    pub http: reqwest::Client,
    pub stack: Arc<ServiceStack>,
}

impl Api {
    pub fn new(stack: Arc<ServiceStack>) -> Api {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        Api { http, stack }
    }

    pub fn url(&self, k: ServiceKind, path: &str) -> String {
        format!("http://{}{path}", self.stack.addr(k))
    }

    /// Sends `body` (raw, sent as JSON) and returns the status and the JSON answer (`Null`
    /// when the answer is not JSON).
    pub async fn send(
        &self,
        k: ServiceKind,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(k, path));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn post(&self, k: ServiceKind, path: &str, body: Value) -> (u16, Value) {
        self.send(k, reqwest::Method::POST, path, Some(&body.to_string()))
            .await
    }

    pub async fn put(&self, k: ServiceKind, path: &str, body: Value) -> (u16, Value) {
        self.send(k, reqwest::Method::PUT, path, Some(&body.to_string()))
            .await
    }

    pub async fn get(&self, k: ServiceKind, path: &str) -> (u16, Value) {
        self.send(k, reqwest::Method::GET, path, None).await
    }

    /// The service's own metrics page.
    pub async fn metrics(&self, k: ServiceKind) -> String {
        self.http
            .get(self.url(k, k.metrics_path()))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    }
}
