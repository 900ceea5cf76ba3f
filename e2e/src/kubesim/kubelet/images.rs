//! Maps image references to local binaries through `e2e/images.yaml`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::bins;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    repositories: Vec<String>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    any_tag: bool,
    #[serde(default)]
    host: bool,
    files: BTreeMap<String, String>,
    entrypoint: Vec<String>,
    args: Vec<String>,
    working_dir: String,
    /// The image's USER as uid:gid (`0:0` when the image runs as root).
    user: String,
}

#[derive(Debug, Deserialize)]
struct Table {
    images: Vec<Entry>,
}

const TABLE: &str = include_str!("../../../images.yaml");

/// What an image provides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// (path in the container, file on this machine).
    pub files: Vec<(String, PathBuf)>,
    /// The image's ENTRYPOINT.
    pub entrypoint: Vec<String>,
    /// The image's CMD.
    pub args: Vec<String>,
    /// The image's WORKDIR.
    pub working_dir: String,
    /// The image's USER (uid, gid).
    pub user: (u64, u64),
}

/// Splits `repo:tag` (digests and a missing tag count as `latest`).
fn split(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (&image[..i], &image[i + 1..]),
        _ => (image, "latest"),
    }
}

/// Resolves an image reference, or explains why it cannot run here.
pub fn resolve(image: &str) -> Result<ResolvedImage, String> {
    let table: Table =
        serde_yaml_ng::from_str(TABLE).map_err(|e| format!("e2e/images.yaml is invalid: {e}"))?;
    let (repo, tag) = split(image);
    let entry = table
        .images
        .iter()
        .find(|e| e.repositories.iter().any(|r| r == repo))
        .ok_or_else(|| format!("image {image:?} is not in kubesim's image table (e2e/images.yaml)"))?;
    let versions = bins::versions().map_err(|e| e.to_string())?;
    let version = if entry.any_tag || entry.host {
        String::new()
    } else {
        let known: Vec<String> = entry
            .versions
            .iter()
            .filter_map(|k| versions.get(k))
            .cloned()
            .collect();
        let wanted = tag.strip_prefix('v').unwrap_or(tag);
        if !known.iter().any(|v| v == wanted) {
            return Err(format!(
                "image {image:?}: no local binaries for tag {tag:?}; available: {}",
                known
                    .iter()
                    .map(|v| format!("v{v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        wanted.to_string()
    };
    let mut files = Vec::new();
    for (path, source) in &entry.files {
        let host = if let Some(rel) = source.strip_prefix("cache:") {
            bins::bin_dir().join(rel.replace("{version}", &version))
        } else if let Some(name) = source.strip_prefix("target:") {
            bins::own_binary(name).map_err(|e| format!("image {image:?}: {e}"))?
        } else {
            return Err(format!("e2e/images.yaml: bad source {source:?}"));
        };
        // etcd 3.4 has no etcdutl: an absent optional tool is just not there.
        if host.is_file() {
            files.push((path.clone(), host));
        } else if path.ends_with("/etcd") || path.ends_with(".tmpl") || !source.starts_with("cache:") {
            return Err(format!(
                "image {image:?}: {} is missing: run `make test-deps`",
                host.display()
            ));
        }
    }
    let user = entry
        .user
        .split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| format!("e2e/images.yaml: user {:?} is not uid:gid", entry.user))?;
    Ok(ResolvedImage {
        files,
        entrypoint: entry.entrypoint.clone(),
        args: entry.args.clone(),
        working_dir: entry.working_dir.clone(),
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_references() {
        assert_eq!(
            split("quay.io/prometheus/prometheus:v3.5.3"),
            ("quay.io/prometheus/prometheus", "v3.5.3")
        );
        assert_eq!(
            split("steward/etcd-operator"),
            ("steward/etcd-operator", "latest")
        );
        assert_eq!(split("localhost:5000/x"), ("localhost:5000/x", "latest"));
        assert_eq!(split("a/b:1@sha256:abc"), ("a/b", "1"));
    }

    #[test]
    fn unknown_images_are_explained() {
        let err = resolve("nginx:1.27").unwrap_err();
        assert!(err.contains("not in kubesim's image table"), "{err}");
    }
}
