//! Bundles the front-end (web/) with esbuild from npm into OUT_DIR; `npm ci` runs when
//! node_modules is missing or older than the lock file. Reruns only when web sources change.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let web = manifest.join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    for p in ["src", "package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed={}", web.join(p).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    if let Err(e) = build(&web, &out) {
        panic!("\n\nlookout-ui: building the front-end failed: {e}\n\n");
    }
}

fn modified(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn build(web: &Path, out: &Path) -> Result<(), String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let marker = web.join("node_modules/.package-lock.json");
    let esbuild = web.join("node_modules/.bin/esbuild");
    let stale = match (modified(&marker), modified(&web.join("package-lock.json"))) {
        (Some(m), Some(l)) => m < l,
        _ => true,
    };
    if stale || !esbuild.exists() {
        let status = Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(web)
            .status()
            .map_err(|e| {
                format!(
                    "cannot run `npm` ({e}). Install Node.js and npm (Debian: apt-get install -y nodejs npm) and build again."
                )
            })?;
        if !status.success() {
            return Err(format!("`npm ci` in {} failed ({status})", web.display()));
        }
    }
    let status = Command::new(&esbuild)
        .current_dir(web)
        .args([
            "src/main.js",
            "--bundle",
            "--minify",
            "--format=iife",
            "--target=es2020",
            "--log-level=warning",
            "--loader:.css=css",
        ])
        .arg(format!("--outfile={}", out.join("app.js").display()))
        .status()
        .map_err(|e| format!("cannot run esbuild at {}: {e}", esbuild.display()))?;
    if !status.success() {
        return Err(format!("esbuild failed ({status})"));
    }
    Ok(())
}
