//! Pod volumes on the host: emptyDir folders, PVC folders that outlive pods, and
//! configMap / secret / projected / downwardAPI files kept in sync like a kubelet.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use crate::kubesim::registry::StorageKey;
use crate::kubesim::server::ApiServer;

/// Files of a volume: relative path → (content, mode).
pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

fn key(plural: &str) -> StorageKey {
    StorageKey {
        group: String::new(),
        plural: plural.into(),
    }
}

fn mode(v: &Value, default: u32) -> u32 {
    v.as_u64().map_or(default, |m| m as u32)
}

/// Key → bytes of a ConfigMap (data and binaryData) or a Secret (data, base64).
fn source_data(server: &ApiServer, ns: &str, kind: &str, name: &str) -> Option<BTreeMap<String, Vec<u8>>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match kind {
        "configMap" => {
            let cm = server.store.get(&key("configmaps"), ns, name)?;
            let mut out = BTreeMap::new();
            for (k, v) in cm["data"].as_object().into_iter().flatten() {
                out.insert(k.clone(), v.as_str().unwrap_or_default().as_bytes().to_vec());
            }
            for (k, v) in cm["binaryData"].as_object().into_iter().flatten() {
                out.insert(
                    k.clone(),
                    b64.decode(v.as_str().unwrap_or_default()).unwrap_or_default(),
                );
            }
            Some(out)
        }
        _ => {
            let s = server.store.get(&key("secrets"), ns, name)?;
            Some(
                s["data"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            b64.decode(v.as_str().unwrap_or_default()).unwrap_or_default(),
                        )
                    })
                    .collect(),
            )
        }
    }
}

/// Selected keys (`items`) or all keys of a ConfigMap/Secret as files.
fn key_files(data: &BTreeMap<String, Vec<u8>>, items: &Value, default_mode: u32, out: &mut Files) {
    match items.as_array() {
        Some(items) => {
            for it in items {
                let k = it["key"].as_str().unwrap_or_default();
                if let Some(v) = data.get(k) {
                    out.insert(
                        it["path"].as_str().unwrap_or(k).to_string(),
                        (v.clone(), mode(&it["mode"], default_mode)),
                    );
                }
            }
        }
        None => {
            for (k, v) in data {
                out.insert(k.clone(), (v.clone(), default_mode));
            }
        }
    }
}

/// A downward API field of the pod.
pub fn field_ref(pod: &Value, path: &str) -> Option<String> {
    let v = match path {
        "metadata.name" => pod.pointer("/metadata/name"),
        "metadata.namespace" => pod.pointer("/metadata/namespace"),
        "metadata.uid" => pod.pointer("/metadata/uid"),
        "status.podIP" => pod.pointer("/status/podIP"),
        "status.hostIP" => pod.pointer("/status/hostIP"),
        "spec.nodeName" => pod.pointer("/spec/nodeName"),
        "spec.serviceAccountName" => pod.pointer("/spec/serviceAccountName"),
        "metadata.labels" | "metadata.annotations" => {
            let field = path.trim_start_matches("metadata.");
            let m = pod["metadata"][field].as_object()?;
            return Some(
                m.iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
        }
        other => {
            // metadata.labels['x'] / metadata.annotations['x']
            let (field, rest) = other.split_once('[')?;
            let k = rest.trim_end_matches(']').trim_matches('\'');
            return pod["metadata"][field.trim_start_matches("metadata.")][k]
                .as_str()
                .map(String::from);
        }
    };
    v.and_then(Value::as_str).map(String::from)
}

/// Files of a configMap, secret, projected or downwardAPI volume; `None` when a required
/// source is missing (the pod waits, like a kubelet).
pub fn files_of(server: &ApiServer, pod: &Value, volume: &Value, sa_token: &str) -> Option<Files> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = Files::new();
    if let Some(cm) = volume.get("configMap") {
        let default_mode = mode(&cm["defaultMode"], 0o644);
        match source_data(server, ns, "configMap", cm["name"].as_str().unwrap_or_default()) {
            Some(data) => key_files(&data, &cm["items"], default_mode, &mut out),
            None if cm["optional"] == Value::Bool(true) => {}
            None => return None,
        }
    } else if let Some(s) = volume.get("secret") {
        let default_mode = mode(&s["defaultMode"], 0o644);
        match source_data(server, ns, "secret", s["secretName"].as_str().unwrap_or_default()) {
            Some(data) => key_files(&data, &s["items"], default_mode, &mut out),
            None if s["optional"] == Value::Bool(true) => {}
            None => return None,
        }
    } else if let Some(d) = volume.get("downwardAPI") {
        downward(pod, &d["items"], mode(&d["defaultMode"], 0o644), &mut out);
    } else if let Some(p) = volume.get("projected") {
        let default_mode = mode(&p["defaultMode"], 0o644);
        for src in p["sources"].as_array().into_iter().flatten() {
            if let Some(t) = src.get("serviceAccountToken") {
                let path = t["path"].as_str().unwrap_or("token").to_string();
                out.insert(path, (sa_token.as_bytes().to_vec(), default_mode));
            } else if let Some(cm) = src.get("configMap") {
                match source_data(server, ns, "configMap", cm["name"].as_str().unwrap_or_default()) {
                    Some(data) => key_files(&data, &cm["items"], default_mode, &mut out),
                    None if cm["optional"] == Value::Bool(true) => {}
                    None => return None,
                }
            } else if let Some(s) = src.get("secret") {
                match source_data(server, ns, "secret", s["name"].as_str().unwrap_or_default()) {
                    Some(data) => key_files(&data, &s["items"], default_mode, &mut out),
                    None if s["optional"] == Value::Bool(true) => {}
                    None => return None,
                }
            } else if let Some(d) = src.get("downwardAPI") {
                downward(pod, &d["items"], default_mode, &mut out);
            }
        }
    }
    Some(out)
}

fn downward(pod: &Value, items: &Value, default_mode: u32, out: &mut Files) {
    for it in items.as_array().into_iter().flatten() {
        if let Some(path) = it.pointer("/fieldRef/fieldPath").and_then(Value::as_str)
            && let Some(v) = field_ref(pod, path)
        {
            out.insert(
                it["path"].as_str().unwrap_or_default().to_string(),
                (v.into_bytes(), mode(&it["mode"], default_mode)),
            );
        }
    }
}

/// Writes `files` into `dir` in place (bind mounts keep seeing the same inodes) and removes
/// files no longer present. Returns whether anything changed.
pub fn sync_dir(dir: &Path, files: &Files) -> std::io::Result<bool> {
    std::fs::create_dir_all(dir)?;
    let mut changed = false;
    for (rel, (content, mode)) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if std::fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
            std::fs::write(&path, content)?;
            changed = true;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    for entry in walk(dir) {
        let rel = entry
            .strip_prefix(dir)
            .unwrap_or(&entry)
            .to_string_lossy()
            .to_string();
        if !files.contains_key(&rel) {
            let _ = std::fs::remove_file(&entry);
            changed = true;
        }
    }
    Ok(changed)
}

/// fsGroup ownership, as the kubelet sets it: every file and folder of the volume belongs to
/// `gid`, group-readable (and, unless `read_only`, group-writable), folders setgid so new files
/// inherit the group. With `always` false (fsGroupChangePolicy OnRootMismatch) nothing is
/// done when the volume's root already has the group.
pub fn apply_fs_group(dir: &Path, gid: u32, read_only: bool, always: bool) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(dir)?;
    if !always && root.gid() == gid && root.mode() & 0o2070 == 0o2070 {
        return Ok(());
    }
    let mut paths = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        let p = paths[i].clone();
        i += 1;
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&p, None, Some(gid))?;
        let bits = match (meta.is_dir(), read_only) {
            (true, false) => 0o2770,
            (true, true) => 0o2550,
            (false, false) => 0o660,
            (false, true) => 0o440,
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode((meta.mode() & 0o7777) | bits))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&p)? {
                paths.push(e?.path());
            }
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn downward_fields() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}}, "status": {"podIP": "10.0.0.2"}, "spec": {"nodeName": "node"}});
        assert_eq!(field_ref(&pod, "metadata.name").as_deref(), Some("p"));
        assert_eq!(field_ref(&pod, "status.podIP").as_deref(), Some("10.0.0.2"));
        assert_eq!(field_ref(&pod, "metadata.labels['a']").as_deref(), Some("b"));
        assert_eq!(field_ref(&pod, "metadata.labels").as_deref(), Some("a=\"b\""));
    }

    #[test]
    fn sync_writes_in_place_and_prunes() {
        let dir = std::env::temp_dir().join(format!("ks-vol-{}", std::process::id()));
        let mut files = Files::new();
        files.insert("a".into(), (b"1".to_vec(), 0o644));
        files.insert("sub/b".into(), (b"2".to_vec(), 0o600));
        assert!(sync_dir(&dir, &files).unwrap());
        assert!(!sync_dir(&dir, &files).unwrap(), "unchanged");
        files.remove("a");
        assert!(sync_dir(&dir, &files).unwrap());
        assert!(!dir.join("a").exists() && dir.join("sub/b").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
