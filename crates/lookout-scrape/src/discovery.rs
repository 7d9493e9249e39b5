//! Target groups: from `static_configs`, and from `file_sd_configs` files (JSON or YAML
//! lists of `{targets, labels}`) re-read when their modification time changes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use lookout_config::{FileSdConfig, NameValidation, TargetGroup};
use lookout_storage::Label;

use crate::target::{ADDRESS_LABEL, META_FILEPATH_LABEL};

/// One discovered target: its labels before relabelling (group labels, `__address__`, meta).
pub type Discovered = Vec<Label>;

/// Expands a group into per-target label lists. Target-level labels (`__address__`) win
/// over group labels; `extra` (meta labels) are added first and lose to both.
pub fn expand_group(tg: &TargetGroup, extra: &[Label]) -> Vec<Discovered> {
    tg.targets
        .iter()
        .map(|addr| {
            let mut v: Vec<Label> = extra.to_vec();
            v.extend(
                tg.labels
                    .iter()
                    .map(|(k, val)| Label::new(k.as_str(), val.as_str())),
            );
            v.push(Label::new(ADDRESS_LABEL, addr.as_str()));
            v
        })
        .collect()
}

/// Parses a file-SD file: JSON for `.json`, YAML otherwise.
pub fn parse_sd_file(
    path: &Path,
    text: &str,
    scheme: NameValidation,
) -> Result<Vec<TargetGroup>, String> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let groups: Vec<TargetGroup> = if is_json {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?
    };
    for tg in &groups {
        tg.validate(scheme)?;
    }
    Ok(groups)
}

/// State of one `file_sd_configs` entry: the files its globs matched and what they held.
#[derive(Default)]
pub struct FileSd {
    patterns: Vec<String>,
    scheme: NameValidation,
    files: BTreeMap<PathBuf, FileState>,
}

struct FileState {
    mtime: Option<SystemTime>,
    len: u64,
    targets: Vec<Discovered>,
}

/// What a refresh found.
pub struct Refresh {
    pub changed: bool,
    /// Files that could not be read or parsed (their previous targets are kept).
    pub errors: Vec<String>,
}

impl FileSd {
    pub fn new(cfg: &FileSdConfig, scheme: NameValidation) -> Self {
        FileSd {
            patterns: cfg.files.clone(),
            scheme,
            files: BTreeMap::new(),
        }
    }

    /// Re-lists the globs and re-reads files whose size or modification time changed (all
    /// of them when `force`).
    pub fn refresh(&mut self, force: bool) -> Refresh {
        let mut errors = Vec::new();
        let mut seen = Vec::new();
        for pat in &self.patterns {
            match glob::glob(pat) {
                Ok(paths) => {
                    for p in paths {
                        match p {
                            Ok(p) => seen.push(p),
                            Err(e) => errors.push(format!("listing {pat}: {e}")),
                        }
                    }
                }
                Err(e) => errors.push(format!("invalid pattern {pat:?}: {e}")),
            }
        }
        seen.sort();
        seen.dedup();
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| seen.binary_search(p).is_ok());
        changed |= self.files.len() != before;
        for path in seen {
            let meta = std::fs::metadata(&path);
            let (mtime, len) = match &meta {
                Ok(m) => (m.modified().ok(), m.len()),
                Err(_) => (None, 0),
            };
            if !force
                && let Some(old) = self.files.get(&path)
                && old.mtime == mtime
                && old.len == len
                && mtime.is_some()
            {
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(format!("reading {}: {e}", path.display()));
                    continue;
                }
            };
            match parse_sd_file(&path, &text, self.scheme) {
                Ok(groups) => {
                    let meta = [Label::new(META_FILEPATH_LABEL, path.to_string_lossy())];
                    let targets: Vec<Discovered> =
                        groups.iter().flat_map(|g| expand_group(g, &meta)).collect();
                    let same = self.files.get(&path).is_some_and(|o| o.targets == targets);
                    changed |= !same;
                    self.files.insert(
                        path,
                        FileState {
                            mtime,
                            len,
                            targets,
                        },
                    );
                }
                Err(e) => {
                    errors.push(format!("parsing {}: {e}", path.display()));
                    // Remember the mtime so a broken file is not re-read every poll; keep
                    // the targets it had before.
                    if let Some(old) = self.files.get_mut(&path) {
                        old.mtime = mtime;
                        old.len = len;
                    }
                }
            }
        }
        Refresh { changed, errors }
    }

    /// All targets of all matched files, in path order.
    pub fn targets(&self) -> impl Iterator<Item = &Discovered> {
        self.files.values().flat_map(|f| f.targets.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_files() {
        let g = parse_sd_file(
            Path::new("a.json"),
            r#"[{"targets":["h:1","h:2"],"labels":{"env":"prod"}}]"#,
            NameValidation::Utf8,
        )
        .unwrap();
        assert_eq!(g[0].targets.len(), 2);
        let g = parse_sd_file(
            Path::new("a.yml"),
            "- targets: ['x:1']\n",
            NameValidation::Utf8,
        )
        .unwrap();
        assert_eq!(g[0].targets, vec!["x:1".to_string()]);
        assert!(
            parse_sd_file(Path::new("a.yml"), "", NameValidation::Utf8)
                .unwrap()
                .is_empty()
        );
        assert!(parse_sd_file(Path::new("a.json"), "{", NameValidation::Utf8).is_err());
        assert!(
            parse_sd_file(
                Path::new("a.yml"),
                "- targets: ['x/y']\n",
                NameValidation::Utf8
            )
            .is_err()
        );
        assert!(parse_sd_file(Path::new("a.yml"), "- bogus: 1\n", NameValidation::Utf8).is_err());
    }

    #[test]
    fn refresh_detects_changes_and_keeps_targets_of_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t.yml");
        std::fs::write(&f, "- targets: ['a:1']\n  labels: {x: y}\n").unwrap();
        let cfg = FileSdConfig {
            files: vec![dir.path().join("*.yml").to_string_lossy().into_owned()],
            ..Default::default()
        };
        let mut sd = FileSd::new(&cfg, NameValidation::Utf8);
        let r = sd.refresh(false);
        assert!(r.changed && r.errors.is_empty());
        let t: Vec<_> = sd.targets().cloned().collect();
        assert_eq!(t.len(), 1);
        assert!(t[0].contains(&Label::new("__meta_filepath", f.to_string_lossy())));
        assert!(t[0].contains(&Label::new("x", "y")));
        assert!(!sd.refresh(false).changed);
        std::fs::write(&f, "- targets: ['a:1', 'b:2']\n").unwrap();
        assert!(sd.refresh(true).changed);
        assert_eq!(sd.targets().count(), 2);
        std::fs::write(&f, "- targets: [\n").unwrap();
        let r = sd.refresh(true);
        assert!(!r.changed);
        assert_eq!(r.errors.len(), 1);
        assert_eq!(sd.targets().count(), 2);
        std::fs::remove_file(&f).unwrap();
        assert!(sd.refresh(false).changed);
        assert_eq!(sd.targets().count(), 0);
    }
}
