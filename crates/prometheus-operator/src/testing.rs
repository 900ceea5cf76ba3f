//! Test helpers shared by the crate's unit tests.

use std::path::Path;

/// Whether golden files are being rewritten (`UPDATE_GOLDEN=1`).
pub(crate) fn updating_golden() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some()
}

/// The one golden-file check: `actual` must equal the file at `path`; with `UPDATE_GOLDEN=1`
/// the file is rewritten first.
pub(crate) fn assert_golden(path: &Path, actual: &str) {
    if updating_golden() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, actual).unwrap();
    }
    let want = std::fs::read_to_string(path)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", path.display()));
    pretty_assertions::assert_eq!(want, actual, "{}", path.display());
}
