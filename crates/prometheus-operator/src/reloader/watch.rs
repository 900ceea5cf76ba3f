//! The watch loop: every interval, render the config and scan the watched directories, and
//! reload Prometheus when either changed since the content it last accepted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use tracing::{debug, error, info, warn};

use super::http::ReloaderMetrics;
use super::reload::{self, FailureKind, Outcome, RELOAD_TIMEOUT, ReloadState};
use super::render::{Renderer, hash_of};
use super::{Args, ReloadMethod};

/// How deep to follow subdirectories of a watched directory (symlinks can loop).
const MAX_DIR_DEPTH: usize = 8;

/// What the watched directories hold: the content hash of every visible file, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirSnapshot {
    /// Content hash per file path (as reached through the watched directory).
    pub files: BTreeMap<PathBuf, u64>,
    /// Directories or files that could not be read.
    pub problems: Vec<String>,
}

impl DirSnapshot {
    /// Reads every watched directory. Names starting with `.` are skipped (kubelet's
    /// `..data` and timestamped folders), but symlinks are followed, so a file reached through
    /// `..data` is hashed by its current content.
    pub fn scan(dirs: &[PathBuf]) -> DirSnapshot {
        let mut snap = DirSnapshot::default();
        for dir in dirs {
            snap.scan_dir(dir, 0);
        }
        snap
    }

    fn scan_dir(&mut self, dir: &Path, depth: usize) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.problems
                    .push(format!("cannot read directory {}: {e}", dir.display()));
                return;
            }
        };
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| !n.to_string_lossy().starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            // `metadata` follows symlinks; a link dangling during a `..data` swap is skipped
            // now and seen at the next poll.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_dir() => {
                    if depth < MAX_DIR_DEPTH {
                        self.scan_dir(&path, depth + 1);
                    } else {
                        self.problems
                            .push(format!("{} is nested too deeply; not watched", path.display()));
                    }
                }
                Ok(m) if m.is_file() => match std::fs::read(&path) {
                    Ok(content) => {
                        self.files.insert(path, hash_of(&content));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => self.problems.push(format!("cannot read {}: {e}", path.display())),
                },
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => self.problems.push(format!("cannot stat {}: {e}", path.display())),
            }
        }
    }

    /// One hash over every file's path and content.
    pub fn digest(&self) -> u64 {
        hash_of(&self.files)
    }

    /// Human-readable differences from `old`, e.g. `changed /rules/a.yaml`.
    pub fn changes_since(&self, old: &DirSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (path, hash) in &self.files {
            match old.files.get(path) {
                None => out.push(format!("added {}", path.display())),
                Some(h) if h != hash => out.push(format!("changed {}", path.display())),
                Some(_) => {}
            }
        }
        for path in old.files.keys() {
            if !self.files.contains_key(path) {
                out.push(format!("removed {}", path.display()));
            }
        }
        out
    }
}

/// Runs until an error stops it (it never ends otherwise).
pub(super) async fn watch(args: Args, metrics: ReloaderMetrics) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(RELOAD_TIMEOUT)
        // The endpoint is Prometheus in the same pod; a cluster-wide HTTP_PROXY must not apply.
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let ready = reload::ready_url(&args.reload_url);
    let mut renderer = args
        .config_file
        .clone()
        .map(|input| Renderer::new(input, args.config_envsubst_file.clone()));
    let mut config_digest: Option<u64> = None;
    let mut dirs = DirSnapshot::default();
    let mut state = ReloadState::default();
    let mut last_failure = String::new();
    let mut first = true;

    loop {
        let mut reasons = Vec::new();
        if let Some(r) = renderer.as_mut()
            && let Some(digest) = r.poll(&metrics)
        {
            if config_digest.is_some_and(|d| d != digest) {
                reasons.push("config changed".to_string());
            }
            config_digest = Some(digest);
        }

        let snapshot = DirSnapshot::scan(&args.watched_dirs);
        if snapshot.problems != dirs.problems {
            for p in &snapshot.problems {
                warn!(problem = %p, "watched directory problem");
            }
        }
        if !first {
            let changes = snapshot.changes_since(&dirs);
            if !changes.is_empty() {
                info!(changes = %changes.join(", "), "watched files changed");
                reasons.push("rule files changed".to_string());
            }
        }
        metrics
            .watched_files
            .set(i64::try_from(snapshot.files.len()).unwrap_or(i64::MAX));
        dirs = snapshot;
        first = false;

        // Nothing to reload until the config has rendered at least once.
        let ready_to_reload = renderer.is_none() || config_digest.is_some();
        if ready_to_reload {
            let digest = hash_of(&(config_digest, dirs.digest()));
            let now = Instant::now();
            if state.due(digest, now) {
                let reason = if !state.ever_applied() && reasons.is_empty() {
                    "start".to_string()
                } else if reasons.is_empty() {
                    "retry".to_string()
                } else {
                    reasons.join(", ")
                };
                debug!(%reason, url = %args.reload_url, "reloading Prometheus");
                let outcome = match args.reload_method {
                    ReloadMethod::Http => reload::reload(&client, &args.reload_url, ready.as_ref()).await,
                    ReloadMethod::Signal => {
                        reload::reload_by_signal(
                            &client,
                            &args.reload_url,
                            ready.as_ref(),
                            &args.process_name,
                        )
                        .await
                    }
                };
                match outcome {
                    Outcome::Reloaded => {
                        state.succeeded(digest);
                        info!(%reason, "Prometheus reloaded");
                        metrics.reload_succeeded();
                        last_failure.clear();
                    }
                    Outcome::Failed(kind, detail) => {
                        let wait = state.failed(digest, kind, Instant::now(), args.watch_interval);
                        match kind {
                            FailureKind::Rejected => {
                                error!(%reason, response = %detail, retry_in = ?wait, "Prometheus rejected the reload; it keeps its last good config")
                            }
                            // Normal while Prometheus starts: say it once, then quietly retry.
                            FailureKind::Unreachable if last_failure != detail => {
                                warn!(%reason, error = %detail, retry_in = ?wait, "Prometheus is not reachable yet; will retry")
                            }
                            FailureKind::Unreachable => {
                                debug!(error = %detail, retry_in = ?wait, "Prometheus still not reachable")
                            }
                        }
                        // Counted after logging, so whoever sees the count can find the log line.
                        metrics.reload_failed(kind);
                        last_failure = detail;
                    }
                }
            }
        }
        tokio::time::sleep(args.watch_interval).await;
    }
}
