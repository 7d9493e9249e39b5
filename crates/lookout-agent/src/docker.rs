//! Docker hosts without the API: a json-file log `<root>/containers/<id>/<id>-json.log` (and
//! the demo's identical layout) gets the container's `__meta_docker_*` labels from the
//! `config.v2.json` beside it, the same names `docker_sd_configs` provides, so the same
//! `relabel_configs` (e.g. `compose_service`) work for both.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

#[derive(Deserialize)]
struct ConfigV2 {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<ContainerConfig>,
    #[serde(rename = "HostConfig", default)]
    host_config: Option<HostConfig>,
}

#[derive(Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "Image", default)]
    image: String,
}

#[derive(Deserialize, Default)]
struct HostConfig {
    #[serde(rename = "NetworkMode", default)]
    network_mode: String,
}

/// `__meta_docker_container_label_<name>` with the label name sanitised as Prometheus does
/// (every character outside `[a-zA-Z0-9_]` becomes `_`).
pub fn label_meta_name(label: &str) -> String {
    let mut s = String::from("__meta_docker_container_label_");
    s.extend(label.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    s
}

/// Container labels for a json-file log path, when the path looks like Docker's layout and a
/// readable `config.v2.json` sits beside it.
pub fn container_meta(log_path: &Path) -> Option<BTreeMap<String, String>> {
    let file = log_path.file_name()?.to_str()?;
    let id = file.strip_suffix("-json.log")?;
    let dir = log_path.parent()?;
    let bytes = std::fs::read(dir.join("config.v2.json")).ok()?;
    let cfg: ConfigV2 = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "unreadable config.v2.json; container labels unavailable");
            return None;
        }
    };
    let mut m = BTreeMap::new();
    let cid = if cfg.id.is_empty() {
        id.to_string()
    } else {
        cfg.id
    };
    m.insert("__meta_docker_container_id".into(), cid);
    let name = if cfg.name.starts_with('/') || cfg.name.is_empty() {
        cfg.name
    } else {
        format!("/{}", cfg.name)
    };
    m.insert("__meta_docker_container_name".into(), name);
    if let Some(hc) = cfg.host_config
        && !hc.network_mode.is_empty()
    {
        m.insert(
            "__meta_docker_container_network_mode".into(),
            hc.network_mode,
        );
    }
    if let Some(c) = cfg.config {
        if !c.image.is_empty() {
            m.insert("__meta_docker_container_image".into(), c.image);
        }
        for (k, v) in c.labels.unwrap_or_default() {
            m.insert(label_meta_name(&k), v);
        }
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_compose_labels() {
        let dir = tempfile::tempdir().unwrap();
        let cdir = dir.path().join("abc");
        std::fs::create_dir(&cdir).unwrap();
        std::fs::write(
            cdir.join("config.v2.json"),
            r#"{"ID":"abc","Name":"/wealist-user-service","Config":{"Image":"wealist/user:1","Labels":{"com.docker.compose.service":"user-service","com.docker.compose.project":"wealist"}},"HostConfig":{"NetworkMode":"bridge"}}"#,
        )
        .unwrap();
        let m = container_meta(&cdir.join("abc-json.log")).unwrap();
        assert_eq!(m["__meta_docker_container_name"], "/wealist-user-service");
        assert_eq!(
            m["__meta_docker_container_label_com_docker_compose_service"],
            "user-service"
        );
        assert_eq!(
            m["__meta_docker_container_label_com_docker_compose_project"],
            "wealist"
        );
        assert_eq!(m["__meta_docker_container_network_mode"], "bridge");
        assert!(container_meta(&cdir.join("other.log")).is_none());
        std::fs::write(cdir.join("config.v2.json"), "{not json").unwrap();
        assert!(container_meta(&cdir.join("abc-json.log")).is_none());
    }
}
