//! Test support, shared by the reloader's unit tests and the end-to-end tests against a real
//! Prometheus; the operator itself never calls it.

use std::path::Path;

/// Writes `files` into `dir` the way kubelet updates a ConfigMap or Secret volume: a new
/// timestamped folder, the `..data` symlink swapped to it with a rename, and every visible
/// name a symlink through `..data`. `generation` counts the updates (0 for the first); the
/// previous generation's folder is removed.
pub fn kubelet_write<C: AsRef<[u8]>>(
    dir: &Path,
    generation: u32,
    files: &[(&str, C)],
) -> std::io::Result<()> {
    let folder = |g: u32| format!("..2025_01_01_00_00_{g:02}");
    let current = folder(generation);
    std::fs::create_dir_all(dir.join(&current))?;
    for (name, content) in files {
        std::fs::write(dir.join(&current).join(name), content)?;
    }
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&current, &tmp)?;
    std::fs::rename(&tmp, dir.join("..data"))?;
    for (name, _) in files {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link)?;
        }
    }
    if let Some(previous) = generation.checked_sub(1) {
        std::fs::remove_dir_all(dir.join(folder(previous)))?;
    }
    Ok(())
}
