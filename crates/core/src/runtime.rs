//! The operator process: connect, serve metrics and health, elect a leader, run the
//! controllers while leading, and shut down cleanly on SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tracing::{info, warn};

use crate::cli::CommonArgs;
use crate::controller::{ControllerRuntime, Shutdown};
use crate::leader::{Election, Leadership, LeaseConfig};
use crate::metrics::{Metrics, MetricsBuilder};
use crate::server::{Readiness, Server};

/// Who is running.
#[derive(Clone, Copy, Debug)]
pub struct OperatorInfo {
    /// Binary name, e.g. `etcd-operator`; also the Lease name prefix and metrics label.
    pub name: &'static str,
    /// Version string.
    pub version: &'static str,
    /// Server-side apply field manager, e.g. `steward.dev/etcd-operator`.
    pub field_manager: &'static str,
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Loads kubeconfig or in-cluster config and checks that the API server answers.
pub async fn connect(timeout: Duration) -> anyhow::Result<kube::Client> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow!(
            "no Kubernetes cluster configured (kubeconfig or in-cluster): {}",
            one_line(e)
        )
    })?;
    let url = config.cluster_url.clone();
    let client = kube::Client::try_from(config)
        .map_err(|e| anyhow!("cannot build a client for {url}: {}", one_line(e)))?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(v)) => {
            info!(server = %url, version = %v.git_version, "connected to the Kubernetes API");
            Ok(client)
        }
        Ok(Err(e)) => bail!("cannot reach the Kubernetes API server at {url}: {}", one_line(e)),
        Err(_) => bail!("cannot reach the Kubernetes API server at {url}: no answer within {timeout:?}"),
    }
}

async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => info!("received SIGTERM"),
                    _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops the operator");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs an operator until SIGTERM/SIGINT. `launch` starts every controller on the given
/// runtime and returns once they have all stopped (after the runtime's shutdown signal).
pub async fn run<L, Fut>(
    info: OperatorInfo,
    args: CommonArgs,
    metrics: MetricsBuilder,
    launch: L,
) -> anyhow::Result<()>
where
    L: FnOnce(ControllerRuntime) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let client = connect(Duration::from_secs(10)).await?;
    let metrics: Metrics = metrics.build();
    let readiness = Readiness::new();
    let server = Server::bind(args.metrics_addr, metrics.clone(), readiness.clone()).await?;
    info!(addr = %server.local_addr().context("metrics listener")?, "serving /metrics, /healthz and /readyz");
    let (server_stop, server_shutdown) = Shutdown::new();
    let server_task = tokio::spawn(server.serve(server_shutdown.wait()));

    let (stop, shutdown) = Shutdown::new();
    let rt = ControllerRuntime {
        client: client.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        namespaces: args.namespaces.clone(),
        concurrency: args.concurrency,
        shutdown: shutdown.clone(),
    };

    let signal = termination_signal();
    tokio::pin!(signal);

    let mut election = None;
    if args.leader_elect {
        let config = LeaseConfig {
            name: format!("{}-leader", info.name),
            namespace: crate::leader::lease_namespace(args.lease_namespace.as_deref()),
            identity: crate::leader::identity(),
            duration: args.lease_duration(),
        };
        info!(lease = %config.name, namespace = %config.namespace, identity = %config.identity, "waiting for the leader lease");
        readiness.set_standby(true);
        let e = Election::start(client.clone(), config).await?;
        let mut state = e.state.clone();
        let acquired = tokio::select! {
            _ = &mut signal => false,
            r = state.wait_for(|s| *s != Leadership::Standby) => matches!(r.as_deref(), Ok(Leadership::Leading)),
        };
        if !acquired {
            e.release().await;
            server_stop.trigger();
            let _ = server_task.await;
            return Ok(());
        }
        readiness.set_standby(false);
        election = Some(e);
    }
    metrics.set_leader(true);

    let controllers = tokio::spawn(launch(rt));
    tokio::pin!(controllers);
    let lost = async {
        match &election {
            Some(e) => {
                let mut state = e.state.clone();
                let _ = state.wait_for(|s| *s == Leadership::Lost).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    let outcome: anyhow::Result<()> = tokio::select! {
        _ = &mut signal => Ok(()),
        _ = lost => Err(anyhow!("lost the leader lease; exiting so a fresh process can compete again")),
        r = &mut controllers => match r {
            Ok(()) => Err(anyhow!("controllers stopped unexpectedly")),
            Err(e) => Err(anyhow!("controllers crashed: {e}")),
        },
    };

    // Stop taking work, let in-flight reconciles finish, then give the Lease back.
    stop.trigger();
    metrics.set_leader(false);
    if !controllers.is_finished() {
        match tokio::time::timeout(args.shutdown_timeout(), &mut controllers).await {
            Ok(_) => info!("controllers stopped"),
            Err(_) => {
                warn!(timeout = ?args.shutdown_timeout(), "controllers did not stop in time; aborting them");
                controllers.abort();
            }
        }
    }
    readiness.clear_caches();
    if let Some(e) = election {
        e.release().await;
    }
    server_stop.trigger();
    let _ = server_task.await;
    outcome
}

/// Shared handle type for controllers that need the readiness tracker directly.
pub type SharedReadiness = Arc<Readiness>;

/// The whole `run` subcommand of an operator binary: logging, the async runtime, [`run`], and
/// a one-line error on stderr with a failing exit code.
pub fn main<L, Fut>(
    info: OperatorInfo,
    args: CommonArgs,
    metrics: MetricsBuilder,
    launch: L,
) -> std::process::ExitCode
where
    L: FnOnce(ControllerRuntime) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = info.name;
    let fail = |msg: String| {
        eprintln!("{name}: error: {msg}");
        std::process::ExitCode::FAILURE
    };
    if let Err(e) = crate::telemetry::init(args.log_format, &args.log_level) {
        return fail(format!("{e:#}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(run(info, args, metrics, launch)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => fail(format!("{e:#}")),
    }
}
