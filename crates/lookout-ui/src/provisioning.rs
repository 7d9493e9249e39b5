//! Grafana provisioning files: `datasources/*.yml` and `dashboards/*.yml` (file providers with
//! folders, `allowUiUpdates`, `foldersFromFilesStructure`). Bad dashboard files are reported
//! with file and reason; the others still load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A data source as `/api/datasources` reports it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Datasource {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub uid: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "proxy")]
    pub access: String,
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub json_data: Value,
}

fn proxy() -> String {
    "proxy".into()
}

#[derive(Deserialize)]
struct DatasourcesFile {
    #[serde(default)]
    datasources: Vec<Datasource>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProvidersFile {
    #[serde(default)]
    providers: Vec<Provider>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Provider {
    #[serde(default)]
    name: String,
    #[serde(default)]
    folder: String,
    #[serde(default)]
    folder_uid: String,
    #[serde(default = "file_type", rename = "type")]
    kind: String,
    #[serde(default)]
    allow_ui_updates: bool,
    #[serde(default)]
    disable_deletion: bool,
    #[serde(default)]
    options: ProviderOptions,
}

fn file_type() -> String {
    "file".into()
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct ProviderOptions {
    #[serde(default)]
    path: String,
    #[serde(default)]
    folders_from_files_structure: bool,
}

/// A dashboard loaded from a provider's directory.
#[derive(Clone, Debug)]
pub struct ProvisionedDashboard {
    pub uid: String,
    pub title: String,
    pub folder_title: String,
    pub folder_uid: String,
    pub json: Value,
    pub file: PathBuf,
    pub allow_ui_updates: bool,
    pub disable_deletion: bool,
}

/// A provisioning file that could not be used.
#[derive(Clone, Debug, Serialize)]
pub struct ProvisionError {
    pub file: String,
    pub reason: String,
}

#[derive(Clone, Debug, Default)]
pub struct Provisioned {
    pub datasources: Vec<Datasource>,
    pub dashboards: Vec<ProvisionedDashboard>,
    pub errors: Vec<ProvisionError>,
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A stable identifier derived from a title (Grafana-style uid characters only).
pub fn slug_uid(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        // Non-ASCII titles: a short hash keeps the uid stable.
        let h = crate::auth::token_hash(s);
        return format!("f-{}", &h[..12]);
    }
    out.chars().take(40).collect()
}

/// Where a provider's `path` points. Paths are usually container paths
/// (`/etc/grafana/provisioning/dashboards/json`); they are resolved against the local
/// provisioning directory when they do not exist as given.
fn resolve_path(path: &str, provisioning_dir: &Path, yml_dir: &Path) -> PathBuf {
    let p = Path::new(path);
    if p.is_dir() {
        return p.to_path_buf();
    }
    if let Some(i) = path.find("provisioning/") {
        let local = provisioning_dir.join(&path[i + "provisioning/".len()..]);
        if local.is_dir() {
            return local;
        }
    }
    yml_dir.join(p)
}

/// Loads `<dir>/datasources/*.yml` and the dashboards of `<dir>/dashboards/*.yml`.
pub fn load(provisioning_dir: &Path) -> Provisioned {
    let mut out = Provisioned::default();
    for file in yaml_files(&provisioning_dir.join("datasources")) {
        match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_yaml_ng::from_str::<DatasourcesFile>(&s).map_err(|e| e.to_string()))
        {
            Ok(f) => out.datasources.extend(f.datasources),
            Err(reason) => out.errors.push(ProvisionError {
                file: file.display().to_string(),
                reason,
            }),
        }
    }
    for (i, ds) in out.datasources.iter_mut().enumerate() {
        ds.id = i as i64 + 1;
        if ds.uid.is_empty() {
            ds.uid = slug_uid(&ds.name);
        }
    }
    let dash_dir = provisioning_dir.join("dashboards");
    for file in yaml_files(&dash_dir) {
        let providers = match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|s| serde_yaml_ng::from_str::<ProvidersFile>(&s).map_err(|e| e.to_string()))
        {
            Ok(f) => f.providers,
            Err(reason) => {
                out.errors.push(ProvisionError {
                    file: file.display().to_string(),
                    reason,
                });
                continue;
            }
        };
        for p in providers {
            if p.kind != "file" {
                out.errors.push(ProvisionError {
                    file: file.display().to_string(),
                    reason: format!(
                        "provider {:?}: type {:?} is not supported (only \"file\")",
                        p.name, p.kind
                    ),
                });
                continue;
            }
            let dir = resolve_path(&p.options.path, provisioning_dir, &dash_dir);
            if !dir.is_dir() {
                out.errors.push(ProvisionError {
                    file: file.display().to_string(),
                    reason: format!(
                        "provider {:?}: path {} is not a directory",
                        p.name,
                        dir.display()
                    ),
                });
                continue;
            }
            load_dir(&p, &dir, &dir, &mut out);
        }
    }
    // The same uid twice: the first wins, the rest are reported.
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for d in std::mem::take(&mut out.dashboards) {
        if seen.insert(d.uid.clone()) {
            kept.push(d);
        } else {
            out.errors.push(ProvisionError {
                file: d.file.display().to_string(),
                reason: format!("dashboard uid {:?} is already used by another file", d.uid),
            });
        }
    }
    out.dashboards = kept;
    out
}

fn load_dir(p: &Provider, root: &Path, dir: &Path, out: &mut Provisioned) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            load_dir(p, root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let folder_title = if p.options.folders_from_files_structure && dir != root {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else {
            p.folder.clone()
        };
        let folder_uid = if !p.folder_uid.is_empty() && folder_title == p.folder {
            p.folder_uid.clone()
        } else if folder_title.is_empty() {
            String::new()
        } else {
            slug_uid(&folder_title)
        };
        match parse_dashboard(&path) {
            Ok((uid, title, json)) => out.dashboards.push(ProvisionedDashboard {
                uid,
                title,
                folder_title,
                folder_uid,
                json,
                file: path,
                allow_ui_updates: p.allow_ui_updates,
                disable_deletion: p.disable_deletion,
            }),
            Err(reason) => out.errors.push(ProvisionError {
                file: path.display().to_string(),
                reason,
            }),
        }
    }
}

fn parse_dashboard(path: &Path) -> Result<(String, String, Value), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut json: Value = serde_json::from_str(&text).map_err(|e| format!("invalid JSON: {e}"))?;
    // Files exported with "Export for sharing externally" wrap nothing, but API exports do.
    if json.get("dashboard").is_some_and(Value::is_object) && json.get("panels").is_none() {
        json = json["dashboard"].take();
    }
    let obj = json
        .as_object_mut()
        .ok_or("a dashboard must be a JSON object")?;
    let title = obj
        .get("title")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .ok_or("dashboard has no title")?
        .to_string();
    if let Some(p) = obj.get("panels")
        && !p.is_array()
    {
        return Err("\"panels\" must be an array".into());
    }
    let uid = match obj.get("uid").and_then(Value::as_str) {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let u = slug_uid(&stem);
            obj.insert("uid".into(), Value::String(u.clone()));
            u
        }
    };
    if uid.len() > 40 {
        return Err(format!("uid {uid:?} is longer than 40 characters"));
    }
    obj.remove("id");
    Ok((uid, title, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug_uid("weAlist Dashboards"), "wealist-dashboards");
        assert!(slug_uid("기획자").starts_with("f-"));
        assert_eq!(slug_uid("기획자"), slug_uid("기획자"));
    }

    #[test]
    fn loads_providers_and_reports_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("datasources")).unwrap();
        std::fs::create_dir_all(p.join("dashboards/json/sub")).unwrap();
        std::fs::write(
            p.join("datasources/ds.yml"),
            "apiVersion: 1\ndatasources:\n  - name: Prometheus\n    type: prometheus\n    url: http://localhost:9090\n    isDefault: true\n",
        )
        .unwrap();
        std::fs::write(
            p.join("dashboards/d.yml"),
            "apiVersion: 1\nproviders:\n  - name: x\n    folder: weAlist\n    type: file\n    options:\n      path: /etc/grafana/provisioning/dashboards/json\n      foldersFromFilesStructure: true\n",
        )
        .unwrap();
        std::fs::write(
            p.join("dashboards/json/a.json"),
            r#"{"uid":"a","title":"A","panels":[]}"#,
        )
        .unwrap();
        std::fs::write(p.join("dashboards/json/sub/b.json"), r#"{"title":"B"}"#).unwrap();
        std::fs::write(p.join("dashboards/json/bad.json"), r#"{"title": "#).unwrap();
        std::fs::write(
            p.join("dashboards/json/dup.json"),
            r#"{"uid":"a","title":"A2"}"#,
        )
        .unwrap();
        let out = load(p);
        assert_eq!(out.datasources.len(), 1);
        assert_eq!(out.datasources[0].uid, "prometheus");
        assert!(out.datasources[0].is_default);
        let titles: Vec<_> = out
            .dashboards
            .iter()
            .map(|d| (d.title.as_str(), d.folder_title.as_str(), d.uid.as_str()))
            .collect();
        assert_eq!(titles, vec![("A", "weAlist", "a"), ("B", "sub", "b")]);
        assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
        assert!(
            out.errors
                .iter()
                .any(|e| e.file.ends_with("bad.json") && e.reason.contains("invalid JSON"))
        );
        assert!(
            out.errors
                .iter()
                .any(|e| e.file.ends_with("dup.json") && e.reason.contains("already used"))
        );
    }
}
