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

mod http;
mod reload;
mod render;
pub mod testing;
#[cfg(test)]
mod tests;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgGroup;
use reqwest::Url;
use steward_core::LogFormat;
use steward_core::runtime::Process;
use tracing::info;

pub use self::http::{ReloaderMetrics, router};
pub use self::reload::{FailureKind, ReloadMetrics, ReloadState, parse_reload_metrics};
use self::render::Renderer;
pub use self::render::{Expanded, decode_config, expand_env, gzip, lookup, write_atomic};
pub use self::watch::DirSnapshot;

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

/// Runs the reloader until SIGTERM or SIGINT (or, with `--once`, renders and returns).
pub async fn run(args: Args) -> anyhow::Result<()> {
    let metrics = ReloaderMetrics::new();
    if args.once {
        let (Some(input), Some(output)) = (&args.config_file, &args.config_envsubst_file) else {
            anyhow::bail!("--once needs --config-file and --config-envsubst-file");
        };
        Renderer::new(input.clone(), Some(output.clone())).render(&metrics)?;
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
        r = watch::watch(args, metrics) => r,
        r = server => r.context("the metrics server stopped"),
    }
}

/// The whole `config-reloader` subcommand: logging, the async runtime and [`run`]; errors
/// are one line on stderr with a failing exit code.
pub fn main(args: Args) -> ExitCode {
    Process {
        name: crate::OPERATOR_NAME,
        log_format: args.log_format,
        log_level: args.log_level.clone(),
        // Two workers: file polling and the reload request never block the metrics endpoint.
        worker_threads: Some(2),
    }
    .main(run(args))
}
