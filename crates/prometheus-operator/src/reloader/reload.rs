//! Making Prometheus reload: POST `/-/reload`, or SIGHUP and its reload metrics; and when to
//! try again after a failure.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use reqwest::Url;

/// How much of an error answer from Prometheus to log.
const MAX_LOGGED_BODY: usize = 4096;
/// Longest wait between retries while Prometheus does not answer.
pub(super) const UNREACHABLE_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait before retrying content Prometheus rejected: retrying the same bad config
/// rarely helps, so do it slowly (a changed config is tried at once).
pub(super) const REJECTED_FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait between retries of rejected content.
pub(super) const REJECTED_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Time allowed for one reload request; a large config with many rules can take a while.
pub(super) const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a reload attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Prometheus did not answer, was not ready, or a proxy said it is unavailable.
    Unreachable,
    /// Prometheus answered the reload with an error (usually a bad config or rule file).
    Rejected,
}

impl FailureKind {
    pub(super) fn label(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Rejected => "rejected",
        }
    }

    /// Wait before the `streak`-th retry (1-based) of the same content.
    pub fn backoff(self, streak: u32, interval: Duration) -> Duration {
        let (first, max) = match self {
            FailureKind::Unreachable => (interval, UNREACHABLE_MAX_BACKOFF),
            FailureKind::Rejected => (REJECTED_FIRST_BACKOFF, REJECTED_MAX_BACKOFF),
        };
        let factor = 1u32 << streak.saturating_sub(1).min(16);
        first.saturating_mul(factor).min(max.max(first))
    }
}

#[derive(Debug, Clone, Copy)]
struct Failure {
    digest: u64,
    kind: FailureKind,
    streak: u32,
    retry_at: Instant,
}

/// Which content Prometheus has accepted and when to try again after a failure.
#[derive(Debug, Default)]
pub struct ReloadState {
    applied: Option<u64>,
    failed: Option<Failure>,
}

impl ReloadState {
    /// Whether to POST a reload for content `digest` now: it differs from what Prometheus
    /// accepted, and it is either new or its retry time has come.
    pub fn due(&self, digest: u64, now: Instant) -> bool {
        if self.applied == Some(digest) {
            return false;
        }
        match self.failed {
            Some(f) if f.digest == digest => now >= f.retry_at,
            _ => true,
        }
    }

    /// Prometheus accepted `digest`.
    pub fn succeeded(&mut self, digest: u64) {
        self.applied = Some(digest);
        self.failed = None;
    }

    /// A reload of `digest` failed; returns the wait before retrying the same content.
    pub fn failed(&mut self, digest: u64, kind: FailureKind, now: Instant, interval: Duration) -> Duration {
        let streak = match self.failed {
            Some(f) if f.digest == digest && f.kind == kind => f.streak.saturating_add(1),
            _ => 1,
        };
        let wait = kind.backoff(streak, interval);
        self.failed = Some(Failure {
            digest,
            kind,
            streak,
            retry_at: now + wait,
        });
        wait
    }

    /// Whether Prometheus has accepted some content since the reloader started.
    pub fn ever_applied(&self) -> bool {
        self.applied.is_some()
    }
}

/// `/-/ready` next to a `/-/reload` URL, to check before reloading: a reload sent while
/// Prometheus is still starting blocks until it is up.
pub(super) fn ready_url(reload: &Url) -> Option<Url> {
    sibling_url(reload, "/-/ready")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// How a reload attempt ended.
pub(super) enum Outcome {
    Reloaded,
    Failed(FailureKind, String),
}

/// Whether Prometheus says it is ready (a reload sent while it starts would block).
async fn check_ready(client: &reqwest::Client, ready: Option<&Url>) -> Result<(), String> {
    let Some(ready) = ready else { return Ok(()) };
    match client.get(ready.clone()).send().await {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => Err(format!("{ready} answered {}", resp.status())),
        Err(e) => Err(error_chain(&e)),
    }
}

pub(super) async fn reload(client: &reqwest::Client, url: &Url, ready: Option<&Url>) -> Outcome {
    if let Err(why) = check_ready(client, ready).await {
        return Outcome::Failed(FailureKind::Unreachable, why);
    }
    match client.post(url.clone()).send().await {
        Err(e) => Outcome::Failed(FailureKind::Unreachable, error_chain(&e)),
        Ok(resp) if resp.status().is_success() => Outcome::Reloaded,
        Ok(resp) => {
            let status = resp.status();
            let body = steward_core::events::truncate(
                resp.text().await.unwrap_or_default().trim().to_string(),
                MAX_LOGGED_BODY,
            );
            let kind = match status {
                StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                    FailureKind::Unreachable
                }
                _ => FailureKind::Rejected,
            };
            Outcome::Failed(kind, format!("{status}: {body}"))
        }
    }
}

/// `name` next to the `/-/reload` URL (`/metrics`, `/-/ready`), or `None` for another path.
pub(super) fn sibling_url(reload: &Url, name: &str) -> Option<Url> {
    let prefix = reload.path().strip_suffix("/-/reload")?;
    let mut url = reload.clone();
    url.set_path(&format!("{prefix}{name}"));
    url.set_query(None);
    Some(url)
}

/// Prometheus' own account of its last reload: when it last succeeded (Unix seconds, with
/// fractions) and whether the last attempt succeeded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReloadMetrics {
    /// `prometheus_config_last_reload_success_timestamp_seconds`.
    pub last_success: f64,
    /// `prometheus_config_last_reload_successful` is 1.
    pub ok: bool,
}

/// Reads the two reload metrics from Prometheus' exposition text.
pub fn parse_reload_metrics(text: &str) -> Option<ReloadMetrics> {
    let value = |name: &str| {
        text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest
                .strip_prefix(' ')
                .or_else(|| rest.split_once("} ").map(|(_, v)| v))?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    Some(ReloadMetrics {
        last_success: value("prometheus_config_last_reload_success_timestamp_seconds")?,
        ok: value("prometheus_config_last_reload_successful")? == 1.0,
    })
}

/// The pids of the processes named `name` that this process can see (its own excluded).
fn processes_named(name: &str) -> Vec<i32> {
    let own = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

async fn reload_metrics(client: &reqwest::Client, url: &Url) -> Result<ReloadMetrics, String> {
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    if !resp.status().is_success() {
        return Err(format!("{url} answered {}", resp.status()));
    }
    let text = resp.text().await.map_err(|e| error_chain(&e))?;
    parse_reload_metrics(&text).ok_or_else(|| format!("{url} has no prometheus_config_last_reload_* metrics"))
}

/// SIGHUP to Prometheus, then its reload metrics say whether the new config was taken.
pub(super) async fn reload_by_signal(
    client: &reqwest::Client,
    url: &Url,
    ready: Option<&Url>,
    process: &str,
) -> Outcome {
    if let Err(why) = check_ready(client, ready).await {
        return Outcome::Failed(FailureKind::Unreachable, why);
    }
    let Some(metrics_url) = sibling_url(url, "/metrics") else {
        return Outcome::Failed(
            FailureKind::Unreachable,
            format!("{url} does not end in /-/reload; cannot find /metrics next to it"),
        );
    };
    let before = match reload_metrics(client, &metrics_url).await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(FailureKind::Unreachable, e),
    };
    let pids = processes_named(process);
    let [pid] = pids.as_slice() else {
        return Outcome::Failed(
            FailureKind::Unreachable,
            format!(
                "{} processes named {process:?} are visible (want exactly one; the pod needs shareProcessNamespace: true)",
                pids.len()
            ),
        );
    };
    let signalled = rustix::process::Pid::from_raw(*pid)
        .ok_or_else(|| format!("invalid pid {pid}"))
        .and_then(|p| {
            rustix::process::kill_process(p, rustix::process::Signal::HUP)
                .map_err(|e| format!("cannot send SIGHUP to {process} (pid {pid}): {e}"))
        });
    if let Err(e) = signalled {
        return Outcome::Failed(FailureKind::Unreachable, e);
    }
    // A reload is quick; after an earlier failure a second failure shows only as "no new
    // success", so it is not waited for as long.
    let deadline = Instant::now()
        + if before.ok {
            RELOAD_TIMEOUT
        } else {
            Duration::from_secs(10)
        };
    let mut last = before;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok(now) = reload_metrics(client, &metrics_url).await else {
            continue;
        };
        last = now;
        if now.last_success > before.last_success && now.ok {
            return Outcome::Reloaded;
        }
        if !now.ok && before.ok {
            return Outcome::Failed(
                FailureKind::Rejected,
                "Prometheus rejected the new config (prometheus_config_last_reload_successful is 0; its log says why)"
                    .into(),
            );
        }
    }
    if last.ok {
        Outcome::Failed(
            FailureKind::Unreachable,
            format!("no reload seen within {RELOAD_TIMEOUT:?} of SIGHUP"),
        )
    } else {
        Outcome::Failed(
            FailureKind::Rejected,
            "Prometheus still fails to load its config (prometheus_config_last_reload_successful is 0; its log says why)"
                .into(),
        )
    }
}
