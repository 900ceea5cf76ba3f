//! `prometheus-operator config-reloader`: the sidecar that keeps a running Prometheus in step
//! with its configuration Secret and rule ConfigMaps, without restarting it.
//!
//! Every `--watch-interval` it reads the config (gunzipping a `*.gz` file), expands `$(VAR)`
//! from its own environment, writes the result atomically where Prometheus reads it, hashes
//! the files in the watched rule directories, and POSTs to Prometheus' `/-/reload` when
//! anything changed since the last reload Prometheus accepted.
//!
//! It polls instead of using inotify: kubelet updates ConfigMap and Secret volumes by swapping
//! a `..data` symlink, which file watches report poorly, while comparing contents catches
//! every change and costs little at a few seconds' interval.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::ArgGroup;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use reqwest::Url;
use steward_core::LogFormat;
use steward_core::metrics::OPENMETRICS_CONTENT_TYPE;
use tracing::{debug, error, info, warn};

/// Largest config accepted after gunzip. The Secret holding it is capped at 1 MiB, so this
/// only guards against a corrupt or hostile file filling memory.
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;
/// How deep to follow subdirectories of a watched directory (symlinks can loop).
const MAX_DIR_DEPTH: usize = 8;
/// How much of an error answer from Prometheus to log.
const MAX_LOGGED_BODY: usize = 4096;
/// Longest wait between retries while Prometheus does not answer.
const UNREACHABLE_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// First wait before retrying content Prometheus rejected: retrying the same bad config
/// rarely helps, so do it slowly (a changed config is tried at once).
const REJECTED_FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait between retries of rejected content.
const REJECTED_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Time allowed for one reload request; a large config with many rules can take a while.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags of `prometheus-operator config-reloader`.
#[derive(Clone, Debug, clap::Args)]
#[command(group(
    ArgGroup::new("input")
        .required(true)
        .multiple(true)
        .args(["config_file", "watched_dirs"])
))]
pub struct Args {
    /// The config as mounted from the Secret, e.g. /etc/prometheus/config/prometheus.yaml.gz.
    /// A name ending in `.gz` is gunzipped.
    #[arg(long, value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Where to write the rendered config (an emptyDir shared with Prometheus), e.g.
    /// /etc/prometheus/config_out/prometheus.env.yaml. `$(VAR)` is replaced by the environment
    /// variable VAR, `$$(VAR)` writes a literal `$(VAR)`, and unknown variables stay as written.
    #[arg(long, value_name = "PATH", requires = "config_file")]
    pub config_envsubst_file: Option<PathBuf>,

    /// A directory of rule files to watch, e.g. a mounted ConfigMap; repeat for several.
    /// Contents are compared (following symlinks, skipping dotfiles), so kubelet's `..data`
    /// symlink swaps are seen.
    #[arg(long = "watched-dir", value_name = "DIR")]
    pub watched_dirs: Vec<PathBuf>,

    /// Prometheus' reload endpoint, POSTed when the rendered config or a watched file changed
    /// (and once at start). When it ends in `/-/reload`, the sibling `/-/ready` is checked first.
    /// With `--reload-method=signal` only its siblings `/-/ready` and `/metrics` are used.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090/-/reload")]
    pub reload_url: Url,

    /// How to make Prometheus reload: `http` POSTs the reload URL (Prometheus then needs
    /// `--web.enable-lifecycle`, which also opens `/-/quit` to anyone who reaches its port);
    /// `signal` sends SIGHUP to the process named `--process-name`, which needs a pod with
    /// `shareProcessNamespace: true`, and reads Prometheus' own reload metrics to learn the
    /// outcome.
    #[arg(long, value_enum, default_value_t = ReloadMethod::Http)]
    pub reload_method: ReloadMethod,

    /// The process to signal with `--reload-method=signal` (its name as /proc/PID/comm shows
    /// it).
    #[arg(long, value_name = "NAME", default_value = "prometheus")]
    pub process_name: String,

    /// How often to check the config and the watched directories, e.g. `3s` or `500ms`.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_interval)]
    pub watch_interval: Duration,

    /// Address serving /metrics (OpenMetrics) and /healthz; `:8080` means every interface.
    #[arg(long, value_name = "ADDR", default_value = ":8080", value_parser = parse_listen_address)]
    pub listen_address: SocketAddr,

    /// Render the config once and exit without reloading; for an init container, so
    /// Prometheus finds its config when it starts.
    #[arg(long)]
    pub once: bool,

    /// Log output format.
    #[arg(long, env = "STEWARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax, e.g. `info` or `debug`.
    #[arg(long, env = "STEWARD_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

/// How the reloader asks Prometheus to reload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReloadMethod {
    /// POST to `/-/reload`.
    Http,
    /// SIGHUP to the Prometheus process in the pod's shared process namespace.
    Signal,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = steward_core::duration::parse(s)?;
    if d.is_zero() {
        return Err("the watch interval must be above zero".to_string());
    }
    Ok(d)
}

/// Accepts `host:port`, `[v6]:port`, or Go's `:port` meaning every interface.
fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    let full = match s.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => s.to_string(),
    };
    full.parse()
        .map_err(|e| format!("invalid listen address {s:?} (want host:port or :port): {e}"))
}

// ---------------------------------------------------------------------------------------
// Pure parts: env expansion, config decoding, directory snapshots, retry bookkeeping.
// ---------------------------------------------------------------------------------------

/// The result of [`expand_env`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    /// The text with every known `$(VAR)` replaced.
    pub text: String,
    /// Names referenced as `$(NAME)` that `lookup` did not know; left as written.
    pub unknown: BTreeSet<String>,
}

/// Length of the variable name starting at `start` when it is followed by `)`.
fn reference_name(bytes: &[u8], start: usize) -> Option<usize> {
    let first = *bytes.get(start)?;
    if !(first.is_ascii_alphabetic() || first == b'_') {
        return None;
    }
    let len = bytes[start..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    (bytes.get(start + len) == Some(&b')')).then_some(len)
}

/// Expands Kubernetes-style `$(NAME)` references (NAME: letters, digits and `_`, not starting
/// with a digit). `$$(NAME)` is an escape for a literal `$(NAME)`; every other `$` is kept, so
/// Prometheus' own `$1` and `${1}` pass through untouched.
pub fn expand_env(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Expanded {
    let bytes = input.as_bytes();
    let mut text = String::with_capacity(input.len());
    let mut unknown = BTreeSet::new();
    let mut copied = 0;
    let mut i = 0;
    // Indices only ever land on ASCII `$`, `(` and `)`, so every slice is on a char boundary.
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'$')
            && bytes.get(i + 2) == Some(&b'(')
            && let Some(len) = reference_name(bytes, i + 3)
        {
            // Drop one `$` and copy the reference literally.
            text.push_str(&input[copied..i]);
            let end = i + 3 + len + 1;
            text.push_str(&input[i + 1..end]);
            copied = end;
            i = end;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'(')
            && let Some(len) = reference_name(bytes, i + 2)
        {
            let name = &input[i + 2..i + 2 + len];
            let end = i + 2 + len + 1;
            text.push_str(&input[copied..i]);
            match lookup(name) {
                Some(value) => text.push_str(&value),
                None => {
                    text.push_str(&input[i..end]);
                    unknown.insert(name.to_string());
                }
            }
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    text.push_str(&input[copied..]);
    Expanded { text, unknown }
}

/// The config text from the file's bytes: gunzipped when the name ends in `.gz`.
pub fn decode_config(path: &Path, raw: &[u8]) -> anyhow::Result<String> {
    let gzipped = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".gz"));
    let bytes = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("cannot gunzip {}", path.display()))?;
        if out.len() as u64 > MAX_CONFIG_BYTES {
            anyhow::bail!(
                "{} is larger than {MAX_CONFIG_BYTES} bytes once gunzipped",
                path.display()
            );
        }
        out
    } else {
        raw.to_vec()
    };
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Gzips a config the way [`decode_config`] expects it (for the controller that writes the
/// Secret, and for tests).
pub fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}

fn hash_of(value: &impl Hash) -> u64 {
    // SipHash with fixed keys: stable within the process, which is all change detection needs.
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

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

/// Why a reload attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Prometheus did not answer, was not ready, or a proxy said it is unavailable.
    Unreachable,
    /// Prometheus answered the reload with an error (usually a bad config or rule file).
    Rejected,
}

impl FailureKind {
    fn label(self) -> &'static str {
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
fn ready_url(reload: &Url) -> Option<Url> {
    let prefix = reload.path().strip_suffix("/-/reload")?;
    let mut url = reload.clone();
    url.set_path(&format!("{prefix}/-/ready"));
    url.set_query(None);
    Some(url)
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

/// Writes `data` to `path` through a temporary file in the same directory and a rename, so
/// Prometheus never reads a half-written config.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config".to_string());
    let tmp = dir.join(format!(".{name}.tmp"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

// ---------------------------------------------------------------------------------------
// Metrics and the HTTP endpoint.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

/// The reloader's own metrics.
#[derive(Clone, Debug)]
pub struct ReloaderMetrics {
    registry: Arc<Registry>,
    reloads: Counter,
    failures: Family<ReasonLabels, Counter>,
    last_success: Gauge<f64, AtomicU64>,
    last_successful: Gauge,
    config_writes: Counter,
    config_errors: Counter,
    watched_files: Gauge,
}

impl Default for ReloaderMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReloaderMetrics {
    /// Registers every family.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reloads = Counter::default();
        registry.register(
            "steward_reloader_reloads",
            "Reloads Prometheus accepted",
            reloads.clone(),
        );
        let failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "steward_reloader_reload_failures",
            "Failed reload attempts, by reason: rejected (Prometheus answered with an error, e.g. a bad config) or unreachable",
            failures.clone(),
        );
        // Both series exist from the start, so rate() and increase() see the first failure.
        for kind in [FailureKind::Rejected, FailureKind::Unreachable] {
            let _ = failures.get_or_create(&ReasonLabels {
                reason: kind.label().to_string(),
            });
        }
        let last_success = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "steward_reloader_last_reload_success_timestamp",
            "Unix time of the last reload Prometheus accepted",
            Unit::Seconds,
            last_success.clone(),
        );
        let last_successful = Gauge::default();
        registry.register(
            "steward_reloader_last_reload_successful",
            "1 when the last reload attempt succeeded, else 0",
            last_successful.clone(),
        );
        let config_writes = Counter::default();
        registry.register(
            "steward_reloader_config_apply",
            "Times a changed rendered config was written",
            config_writes.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "steward_reloader_config_apply_errors",
            "Polls where the config could not be read, decoded or written",
            config_errors.clone(),
        );
        let watched_files = Gauge::default();
        registry.register(
            "steward_reloader_watched_files",
            "Files currently found in the watched directories",
            watched_files.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reloads,
            failures,
            last_success,
            last_successful,
            config_writes,
            config_errors,
            watched_files,
        }
    }

    fn reload_succeeded(&self) {
        self.reloads.inc();
        self.last_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.last_success.set(now);
    }

    fn reload_failed(&self, kind: FailureKind) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: kind.label().to_string(),
            })
            .inc();
        self.last_successful.set(0);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

async fn metrics_handler(State(metrics): State<ReloaderMetrics>) -> Response {
    match metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}\n"),
        )
            .into_response(),
    }
}

/// `/metrics` and `/healthz`.
pub fn router(metrics: ReloaderMetrics) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics)
}

// ---------------------------------------------------------------------------------------
// The process: render, watch, reload.
// ---------------------------------------------------------------------------------------

/// Reads, expands and writes the config; remembers what it already warned about.
struct Renderer {
    input: PathBuf,
    output: Option<PathBuf>,
    warned_unknown: HashSet<String>,
    last_error: Option<String>,
}

impl Renderer {
    /// Renders the config and writes it when it changed; returns a hash of the rendered text.
    fn render(&mut self, metrics: &ReloaderMetrics) -> anyhow::Result<u64> {
        let raw = std::fs::read(&self.input)
            .with_context(|| format!("cannot read --config-file {}", self.input.display()))?;
        let text = decode_config(&self.input, &raw)?;
        let expanded = expand_env(&text, |name| std::env::var(name).ok());
        for name in expanded.unknown {
            if self.warned_unknown.insert(name.clone()) {
                warn!(variable = %name, "the config references $({name}), which is not in the environment; left as written");
            }
        }
        if let Some(out) = &self.output {
            let current = std::fs::read(out).ok();
            if current.as_deref() != Some(expanded.text.as_bytes()) {
                write_atomic(out, expanded.text.as_bytes())
                    .with_context(|| format!("cannot write --config-envsubst-file {}", out.display()))?;
                metrics.config_writes.inc();
                info!(path = %out.display(), bytes = expanded.text.len(), "wrote the rendered config");
            }
        }
        Ok(hash_of(&expanded.text))
    }

    /// [`Renderer::render`], logging a failure once per distinct error.
    fn poll(&mut self, metrics: &ReloaderMetrics) -> Option<u64> {
        match self.render(metrics) {
            Ok(digest) => {
                if self.last_error.take().is_some() {
                    info!("the config renders again");
                }
                Some(digest)
            }
            Err(e) => {
                metrics.config_errors.inc();
                let msg = format!("{e:#}");
                if self.last_error.as_deref() != Some(msg.as_str()) {
                    error!(error = %msg, "cannot render the config; keeping the last rendered one");
                } else {
                    debug!(error = %msg, "config still cannot be rendered");
                }
                self.last_error = Some(msg);
                None
            }
        }
    }
}

enum Outcome {
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

async fn reload(client: &reqwest::Client, url: &Url, ready: Option<&Url>) -> Outcome {
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
fn sibling_url(reload: &Url, name: &str) -> Option<Url> {
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
async fn reload_by_signal(
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

async fn watch(args: Args, metrics: ReloaderMetrics) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(RELOAD_TIMEOUT)
        // The endpoint is Prometheus in the same pod; a cluster-wide HTTP_PROXY must not apply.
        .no_proxy()
        .build()
        .context("cannot build the HTTP client")?;
    let ready = ready_url(&args.reload_url);
    let mut renderer = args.config_file.clone().map(|input| Renderer {
        input,
        output: args.config_envsubst_file.clone(),
        warned_unknown: HashSet::new(),
        last_error: None,
    });
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
                    ReloadMethod::Http => reload(&client, &args.reload_url, ready.as_ref()).await,
                    ReloadMethod::Signal => {
                        reload_by_signal(&client, &args.reload_url, ready.as_ref(), &args.process_name).await
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

/// Runs the reloader until SIGTERM or SIGINT (or, with `--once`, renders and returns).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let metrics = ReloaderMetrics::new();
    if args.once {
        let (Some(input), Some(output)) = (&args.config_file, &args.config_envsubst_file) else {
            anyhow::bail!("--once needs --config-file and --config-envsubst-file");
        };
        let mut renderer = Renderer {
            input: input.clone(),
            output: Some(output.clone()),
            warned_unknown: HashSet::new(),
            last_error: None,
        };
        renderer.render(&metrics)?;
        return Ok(());
    }

    let listener = tokio::net::TcpListener::bind(args.listen_address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --listen-address {}: {e}", args.listen_address))?;
    info!(
        addr = %listener.local_addr().context("metrics listener")?,
        reload_url = %args.reload_url,
        interval = ?args.watch_interval,
        "config reloader started; serving /metrics and /healthz"
    );
    let app = router(metrics.clone());
    let server = async move { axum::serve(listener, app).await };

    tokio::select! {
        _ = steward_core::runtime::termination_signal() => Ok(()),
        r = watch(args, metrics) => r,
        r = server => r.context("the metrics server stopped"),
    }
}

/// The whole `config-reloader` subcommand: logging, the async runtime and [`run`]; errors
/// are one line on stderr with a failing exit code.
pub fn main(args: Args) -> ExitCode {
    let fail = |msg: String| {
        eprintln!("{}: error: {msg}", crate::OPERATOR_NAME);
        ExitCode::FAILURE
    };
    if let Err(e) = steward_core::telemetry::init(args.log_format, &args.log_level) {
        return fail(format!("{e:#}"));
    }
    // Two workers: file polling and the reload request never block the metrics endpoint.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use clap::Parser;

    fn env(name: &str) -> Option<String> {
        match name {
            "POD_NAME" => Some("prom-0".into()),
            "POD_NAMESPACE" => Some("monitoring".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_known_variables() {
        let e = expand_env("pod: $(POD_NAME)\nns: $(POD_NAMESPACE)/$(POD_NAME)$(EMPTY)", env);
        assert_eq!(e.text, "pod: prom-0\nns: monitoring/prom-0");
        assert!(e.unknown.is_empty());
    }

    #[test]
    fn unknown_variables_stay_and_are_reported() {
        let e = expand_env("a: $(NOPE) b: $(POD_NAME) c: $(NOPE) d: $(ALSO_NOT)", env);
        assert_eq!(e.text, "a: $(NOPE) b: prom-0 c: $(NOPE) d: $(ALSO_NOT)");
        assert_eq!(
            e.unknown.into_iter().collect::<Vec<_>>(),
            vec!["ALSO_NOT".to_string(), "NOPE".to_string()]
        );
    }

    #[test]
    fn other_dollars_pass_through() {
        for s in [
            "replacement: $1",
            "replacement: ${1}:$2",
            "regex: (.+)$",
            "regex: a$(b|c)",
            "x: $(1ABC)",
            "x: $(POD_NAME",
            "x: $()",
            "trailing $",
            "x: $$1 $$",
            "ünïcödé $ (POD_NAME) ✓",
        ] {
            let e = expand_env(s, env);
            assert_eq!(e.text, s);
            assert!(e.unknown.is_empty(), "{s}");
        }
    }

    #[test]
    fn double_dollar_escapes_a_reference() {
        let e = expand_env("$$(POD_NAME) $(POD_NAME) $$$(POD_NAME) $$(NOPE)", env);
        assert_eq!(e.text, "$(POD_NAME) prom-0 $$(POD_NAME) $(NOPE)");
        assert!(e.unknown.is_empty());
    }

    #[test]
    fn decodes_plain_and_gzipped_configs() {
        let text = "global:\n  external_labels:\n    pod: $(POD_NAME)\n";
        let plain = decode_config(Path::new("/c/prometheus.yaml"), text.as_bytes()).unwrap();
        assert_eq!(plain, text);
        let gz = gzip(text.as_bytes()).unwrap();
        assert_ne!(gz, text.as_bytes());
        let unzipped = decode_config(Path::new("/c/prometheus.yaml.gz"), &gz).unwrap();
        assert_eq!(unzipped, text);
        let err = decode_config(Path::new("/c/prometheus.yaml.gz"), text.as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("cannot gunzip"), "{err:#}");
        let err = decode_config(Path::new("/c/p.yaml"), &[0xff, 0xfe]).unwrap_err();
        assert!(format!("{err:#}").contains("not UTF-8"), "{err:#}");
    }

    /// Lays out `dir` as kubelet does for a ConfigMap volume: the files live in a timestamped
    /// folder, `..data` points at it, and each visible name links through `..data`.
    fn kubelet_write(dir: &Path, generation: u32, files: &[(&str, &str)]) {
        let folder = format!("..gen_{generation}");
        std::fs::create_dir_all(dir.join(&folder)).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(&folder).join(name), content).unwrap();
        }
        let tmp = dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&folder, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
        for (name, _) in files {
            let link = dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
            }
        }
        if generation > 0 {
            let _ = std::fs::remove_dir_all(dir.join(format!("..gen_{}", generation - 1)));
        }
    }

    #[test]
    fn snapshots_follow_kubelet_symlink_swaps() {
        let tmp = tempfile::tempdir().unwrap();
        let rules = tmp.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        kubelet_write(&rules, 0, &[("a.yaml", "groups: []\n")]);
        let first = DirSnapshot::scan(std::slice::from_ref(&rules));
        assert_eq!(first.files.len(), 1, "{first:?}");
        assert!(
            first.files.contains_key(&rules.join("a.yaml")),
            "dotfiles skipped: {first:?}"
        );
        assert!(first.problems.is_empty());

        // Same content again: nothing changed, even though the target folder did.
        kubelet_write(&rules, 1, &[("a.yaml", "groups: []\n")]);
        let same = DirSnapshot::scan(std::slice::from_ref(&rules));
        assert_eq!(same.digest(), first.digest());
        assert!(same.changes_since(&first).is_empty());

        // New content behind the same name, with the mtime of the visible link unchanged.
        kubelet_write(&rules, 2, &[("a.yaml", "groups: [{name: x, rules: []}]\n")]);
        let changed = DirSnapshot::scan(std::slice::from_ref(&rules));
        assert_ne!(changed.digest(), first.digest());
        assert_eq!(
            changed.changes_since(&first),
            vec![format!("changed {}", rules.join("a.yaml").display())]
        );

        // A file added next to it, one removed.
        std::fs::write(rules.join("b.yaml"), "groups: []\n").unwrap();
        std::fs::remove_file(rules.join("a.yaml")).unwrap();
        let later = DirSnapshot::scan(std::slice::from_ref(&rules));
        assert_eq!(
            later.changes_since(&changed),
            vec![
                format!("added {}", rules.join("b.yaml").display()),
                format!("removed {}", rules.join("a.yaml").display()),
            ]
        );
    }

    #[test]
    fn snapshots_report_missing_dirs_and_skip_dangling_links() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink("nowhere", dir.join("dangling.yaml")).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub").join("r.yaml"), "x").unwrap();
        std::fs::write(dir.join(".hidden.yaml"), "x").unwrap();
        let snap = DirSnapshot::scan(&[dir.clone(), tmp.path().join("missing")]);
        assert_eq!(
            snap.files.keys().cloned().collect::<Vec<_>>(),
            vec![dir.join("sub").join("r.yaml")]
        );
        assert_eq!(snap.problems.len(), 1, "{snap:?}");
        assert!(snap.problems[0].contains("missing"), "{snap:?}");
    }

    #[test]
    fn reload_state_retries_slowly_and_new_content_at_once() {
        let interval = Duration::from_millis(200);
        let t0 = Instant::now();
        let mut s = ReloadState::default();
        assert!(s.due(1, t0), "first content is reloaded at start");

        // Prometheus not up yet: retry at the watch interval, doubling, capped.
        let w = s.failed(1, FailureKind::Unreachable, t0, interval);
        assert_eq!(w, interval);
        assert!(!s.due(1, t0));
        assert!(s.due(1, t0 + interval));
        assert_eq!(s.failed(1, FailureKind::Unreachable, t0, interval), interval * 2);
        assert_eq!(
            FailureKind::Unreachable.backoff(40, interval),
            UNREACHABLE_MAX_BACKOFF
        );

        s.succeeded(1);
        assert!(
            !s.due(1, t0 + Duration::from_secs(3600)),
            "accepted content is not resent"
        );
        assert!(s.ever_applied());

        // A bad config: the same content waits long; fixed content goes at once.
        let w = s.failed(2, FailureKind::Rejected, t0, interval);
        assert_eq!(w, REJECTED_FIRST_BACKOFF);
        assert!(!s.due(2, t0 + Duration::from_secs(1)));
        assert!(s.due(2, t0 + REJECTED_FIRST_BACKOFF));
        assert!(s.due(3, t0), "changed content is tried immediately");
        assert_eq!(
            s.failed(2, FailureKind::Rejected, t0, interval),
            REJECTED_FIRST_BACKOFF * 2
        );
        assert_eq!(FailureKind::Rejected.backoff(10, interval), REJECTED_MAX_BACKOFF);
        // Going back to what Prometheus runs needs no reload.
        assert!(!s.due(1, t0));
    }

    #[test]
    fn reload_metrics_are_read_from_the_exposition() {
        let text = "# HELP prometheus_config_last_reload_successful Whether the last configuration reload attempt was successful.\n\
                    # TYPE prometheus_config_last_reload_successful gauge\n\
                    prometheus_config_last_reload_successful 0\n\
                    prometheus_config_last_reload_success_timestamp_seconds 1.7335e+09\n\
                    prometheus_config_last_reload_success_timestamp_seconds_other 3\n";
        assert_eq!(
            parse_reload_metrics(text),
            Some(ReloadMetrics {
                last_success: 1.7335e9,
                ok: false
            })
        );
        assert_eq!(parse_reload_metrics("up 1\n"), None);
        assert_eq!(
            sibling_url(
                &Url::parse("http://127.0.0.1:9090/prom/-/reload").unwrap(),
                "/metrics"
            )
            .map(|u| u.to_string()),
            Some("http://127.0.0.1:9090/prom/metrics".to_string())
        );
    }

    #[test]
    fn ready_url_sits_next_to_the_reload_url() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            ready_url(&u("http://127.0.0.1:9090/-/reload")),
            Some(u("http://127.0.0.1:9090/-/ready"))
        );
        assert_eq!(
            ready_url(&u("http://localhost:9090/prom/-/reload")),
            Some(u("http://localhost:9090/prom/-/ready"))
        );
        assert_eq!(ready_url(&u("http://localhost:9090/reload")), None);
    }

    #[test]
    fn writes_atomically_without_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("prometheus.env.yaml");
        write_atomic(&out, b"one").unwrap();
        write_atomic(&out, b"two").unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("prometheus.env.yaml")]);
    }

    #[test]
    fn metrics_use_conventional_names() {
        let m = ReloaderMetrics::new();
        m.reload_succeeded();
        m.reload_failed(FailureKind::Rejected);
        m.config_writes.inc();
        let text = m.encode().unwrap();
        for want in [
            "steward_reloader_reloads_total 1",
            r#"steward_reloader_reload_failures_total{reason="rejected"} 1"#,
            r#"steward_reloader_reload_failures_total{reason="unreachable"} 0"#,
            "# TYPE steward_reloader_last_reload_success_timestamp_seconds gauge",
            "steward_reloader_last_reload_successful 0",
            "steward_reloader_config_apply_total 1",
            "steward_reloader_config_apply_errors_total 0",
            "steward_reloader_watched_files 0",
        ] {
            assert!(text.contains(want), "{want} missing:\n{text}");
        }
    }

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_and_defaults() {
        let cli = Cli::try_parse_from(["r", "--config-file", "/c/p.yaml.gz"]).unwrap();
        let a = cli.args;
        assert_eq!(a.reload_url.as_str(), "http://127.0.0.1:9090/-/reload");
        assert_eq!(a.watch_interval, Duration::from_secs(3));
        assert_eq!(a.listen_address.to_string(), "0.0.0.0:8080");
        assert_eq!(a.log_format, LogFormat::Text);
        assert!(!a.once);

        let cli = Cli::try_parse_from([
            "r",
            "--config-file=/c/p.yaml.gz",
            "--config-envsubst-file=/o/p.env.yaml",
            "--watched-dir=/r/0",
            "--watched-dir",
            "/r/1",
            "--reload-url=http://localhost:9091/-/reload",
            "--watch-interval=200ms",
            "--listen-address=127.0.0.1:0",
            "--log-format=json",
        ])
        .unwrap();
        assert_eq!(
            cli.args.watched_dirs,
            vec![PathBuf::from("/r/0"), PathBuf::from("/r/1")]
        );
        assert_eq!(cli.args.watch_interval, Duration::from_millis(200));
        assert_eq!(cli.args.listen_address.to_string(), "127.0.0.1:0");

        assert!(
            Cli::try_parse_from(["r"]).is_err(),
            "needs a config file or a watched dir"
        );
        assert!(Cli::try_parse_from(["r", "--watched-dir=/r"]).is_ok());
        assert!(Cli::try_parse_from(["r", "--config-envsubst-file=/o", "--watched-dir=/r"]).is_err());
        assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--watch-interval=0s"]).is_err());
        assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--listen-address=8080"]).is_err());
        assert!(Cli::try_parse_from(["r", "--watched-dir=/r", "--reload-url=not a url"]).is_err());
    }
}
