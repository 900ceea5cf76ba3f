//! The one place tests find real binaries.
//!
//! `hack/test-deps.sh` (run by `make test-deps`) fills `.cache/bin/` and records the versions
//! it fetched in `.cache/bin/versions`; tests ask for "the current Prometheus" or "the oldest
//! etcd" and get a path, never a hard-coded patch version. A missing binary is an error that
//! names `make test-deps`: tests fail, they never skip.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The repository root (the workspace holding this crate).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// `.cache/bin`, or `$STEWARD_BIN_DIR` when set.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("STEWARD_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".cache").join("bin"),
    }
}

fn missing(what: &str, path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} not found at {}: run `make test-deps` first",
        path.display()
    )
}

/// The versions `make test-deps` fetched, e.g. `PROMETHEUS_CURRENT=3.5.3`.
pub fn versions() -> anyhow::Result<BTreeMap<String, String>> {
    let path = bin_dir().join("versions");
    let text = std::fs::read_to_string(&path).map_err(|_| missing("the versions file", &path))?;
    Ok(parse_versions(&text))
}

fn parse_versions(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// The version recorded under `key` (e.g. `ETCD_CURRENT`).
pub fn version(key: &str) -> anyhow::Result<String> {
    versions()?.remove(key).with_context(|| {
        format!(
            "{key} missing from {}: run `make test-deps`",
            bin_dir().join("versions").display()
        )
    })
}

fn existing(path: PathBuf, what: &str) -> anyhow::Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(missing(what, &path))
    }
}

/// Which release of a tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The older supported line (etcd 3.4, Prometheus 2.53, Alertmanager 0.28).
    Old,
    /// The line we default to (etcd 3.5.16, Prometheus 3.5, Alertmanager 0.33).
    Current,
    /// The newest patch release available (etcd only).
    Newest,
}

impl Release {
    fn suffix(self) -> &'static str {
        match self {
            Release::Old => "OLD",
            Release::Current => "CURRENT",
            Release::Newest => "NEWEST",
        }
    }
}

/// A tool binary inside a versioned folder, e.g. `etcd-3.5.16/etcdctl`.
fn versioned(tool: &str, key: &str, release: Release, binary: &str) -> anyhow::Result<PathBuf> {
    if release == Release::Newest && tool != "etcd" {
        bail!("only etcd has a NEWEST release");
    }
    let v = version(&format!("{key}_{}", release.suffix()))?;
    existing(
        bin_dir().join(format!("{tool}-{v}")).join(binary),
        &format!("{binary} {v}"),
    )
}

/// `etcd` of a release.
pub fn etcd(release: Release) -> anyhow::Result<PathBuf> {
    versioned("etcd", "ETCD", release, "etcd")
}

/// `etcdctl` of a release.
pub fn etcdctl(release: Release) -> anyhow::Result<PathBuf> {
    versioned("etcd", "ETCD", release, "etcdctl")
}

/// `etcdutl` of a release (3.5 and newer).
pub fn etcdutl(release: Release) -> anyhow::Result<PathBuf> {
    versioned("etcd", "ETCD", release, "etcdutl")
}

/// `prometheus` of a release.
pub fn prometheus(release: Release) -> anyhow::Result<PathBuf> {
    versioned("prometheus", "PROMETHEUS", release, "prometheus")
}

/// `alertmanager` of a release.
pub fn alertmanager(release: Release) -> anyhow::Result<PathBuf> {
    versioned("alertmanager", "ALERTMANAGER", release, "alertmanager")
}

/// The newest `promtool`.
pub fn promtool() -> anyhow::Result<PathBuf> {
    existing(bin_dir().join("promtool"), "promtool")
}

/// The newest `amtool`.
pub fn amtool() -> anyhow::Result<PathBuf> {
    existing(bin_dir().join("amtool"), "amtool")
}

/// `s3s-fs`, the S3 server on a directory the backup tests store snapshots in.
pub fn s3s_fs() -> anyhow::Result<PathBuf> {
    existing(bin_dir().join("s3s-fs"), "s3s-fs")
}

/// `kubectl`.
pub fn kubectl() -> anyhow::Result<PathBuf> {
    existing(bin_dir().join("kubectl"), "kubectl")
}

/// One of our own binaries (`etcd-operator`, `prometheus-operator`, `kubesim`) from the
/// cargo target folder of the current profile. `cargo test --workspace` builds them first.
pub fn own_binary(name: &str) -> anyhow::Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} not found: build it with `cargo build -p {name}` (make unit does)",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_file() {
        let v = parse_versions("# fetched\nETCD_OLD=3.4.23\n\nPROMETHEUS_CURRENT=\"3.5.3\"\n");
        assert_eq!(v["ETCD_OLD"], "3.4.23");
        assert_eq!(v["PROMETHEUS_CURRENT"], "3.5.3");
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn missing_binary_names_test_deps() {
        let err = existing(PathBuf::from("/nonexistent/etcd"), "etcd").unwrap_err();
        assert!(err.to_string().contains("make test-deps"), "{err}");
    }
}
