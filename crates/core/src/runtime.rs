//! The operator process: connect, serve metrics and health, elect a leader, run the
//! controllers while leading, and shut down cleanly on SIGTERM.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tracing::{info, warn};

use crate::cli::CommonArgs;
use crate::controller::{ControllerRuntime, Shutdown};
use crate::leader::{Election, FenceLayer, Leadership, LeaseConfig};
use crate::metrics::{Metrics, MetricsBuilder};
use crate::server::{Readiness, Server};

/// Who is running.
#[derive(Clone, Copy, Debug)]
pub struct OperatorInfo {
    /// Binary name, e.g. `etcd-operator`; also the Lease name prefix and metrics label.
    pub name: &'static str,
    /// Version string.
    pub version: &'static str,
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Loads kubeconfig or in-cluster config and checks that the API server answers.
pub async fn connect(timeout: Duration) -> anyhow::Result<kube::Client> {
    connect_config(timeout).await.map(|(_, client)| client)
}

/// [`connect`], also returning the config, to build further clients (the fenced one).
pub async fn connect_config(timeout: Duration) -> anyhow::Result<(kube::Config, kube::Client)> {
    let config = kube::Config::infer().await.map_err(|e| {
        anyhow!(
            "no Kubernetes cluster configured (kubeconfig or in-cluster): {}",
            one_line(e)
        )
    })?;
    let url = config.cluster_url.clone();
    let client = kube::Client::try_from(config.clone())
        .map_err(|e| anyhow!("cannot build a client for {url}: {}", one_line(e)))?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(v)) => {
            info!(server = %url, version = %v.git_version, "connected to the Kubernetes API");
            Ok((config, client))
        }
        Ok(Err(e)) => bail!("cannot reach the Kubernetes API server at {url}: {}", one_line(e)),
        Err(_) => bail!("cannot reach the Kubernetes API server at {url}: no answer within {timeout:?}"),
    }
}

/// Resolves on SIGTERM or SIGINT (only SIGINT where SIGTERM cannot be watched).
pub async fn termination_signal() {
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
                warn!(error = %e, "cannot watch SIGTERM; only SIGINT stops this process");
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
    let (config, client) = connect_config(Duration::from_secs(10)).await?;
    let metrics: Metrics = metrics.build();
    let readiness = Readiness::new();
    let server = Server::bind(args.metrics_addr, metrics.clone(), readiness.clone()).await?;
    info!(addr = %server.local_addr().context("metrics listener")?, "serving /metrics, /healthz and /readyz");
    let (server_stop, server_shutdown) = Shutdown::new();
    let server_task = tokio::spawn(server.serve(server_shutdown.wait()));

    let signal = termination_signal();
    tokio::pin!(signal);

    // With leader election the controllers write through a fenced client: every mutating
    // request is refused unless the Lease was renewed within the renew deadline. The election
    // itself uses the plain client.
    let mut election = None;
    let mut controller_client = client.clone();
    if args.leader_elect {
        let config_lease = LeaseConfig {
            name: format!("{}-leader", info.name),
            namespace: crate::leader::lease_namespace(args.lease_namespace.as_deref()),
            identity: crate::leader::identity(),
            duration: args.lease_duration(),
            renew_deadline: args.lease_renew_deadline(),
            retry_period: args.lease_retry_period(),
        };
        info!(lease = %config_lease.name, namespace = %config_lease.namespace, identity = %config_lease.identity,
              duration = ?config_lease.duration, renew_deadline = ?config_lease.renew_deadline,
              retry_period = ?config_lease.retry_period, "waiting for the leader lease");
        readiness.set_standby(true);
        let e = Election::start(client.clone(), config_lease).await?;
        controller_client = kube::client::ClientBuilder::try_from(config)
            .map_err(|e| anyhow!("cannot build the controllers' client: {}", one_line(e)))?
            .with_layer(&FenceLayer::new(e.fence.clone()))
            .build();
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

    let (stop, shutdown) = Shutdown::new();
    let rt = ControllerRuntime {
        client: controller_client,
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        namespaces: args.namespaces.clone(),
        concurrency: args.concurrency,
        shutdown: shutdown.clone(),
    };
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
    enum End {
        Signal,
        Lost,
        Controllers(anyhow::Error),
    }
    let end = tokio::select! {
        _ = &mut signal => End::Signal,
        _ = lost => End::Lost,
        r = &mut controllers => End::Controllers(match r {
            Ok(()) => anyhow!("controllers stopped unexpectedly"),
            Err(e) => anyhow!("controllers crashed: {e}"),
        }),
    };
    metrics.set_leader(false);

    if let End::Lost = end {
        // Another replica may lead soon: cancel every reconcile now instead of letting the
        // in-flight ones finish (the fence already refuses their writes), keep the Lease as
        // it is, and exit non-zero like client-go's "leaderelection lost", so the kubelet
        // restarts a clean process that competes as a standby.
        controllers.abort();
        let _ = (&mut controllers).await;
        readiness.clear_caches();
        if let Some(e) = election {
            e.release().await;
        }
        server_stop.trigger();
        let _ = server_task.await;
        return Err(anyhow!(
            "leader election lost: the Lease was not renewed within the renew deadline or another replica holds it; exiting so a fresh process competes again"
        ));
    }

    // Stop taking work, let in-flight reconciles finish, then give the Lease back.
    stop.trigger();
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
    match end {
        End::Controllers(e) => Err(e),
        _ => Ok(()),
    }
}

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
    let process = Process {
        name: info.name,
        log_format: args.log_format,
        log_level: args.log_level.clone(),
        worker_threads: None,
    };
    process.main(run(info, args, metrics, launch))
}

/// How a process of an operator binary starts: [`main`] for the operator itself, and the same
/// for other subcommands (a sidecar) that are not controllers.
#[derive(Clone, Debug)]
pub struct Process {
    /// Binary name, the prefix of the error line.
    pub name: &'static str,
    /// Log output format.
    pub log_format: crate::cli::LogFormat,
    /// Log filter in tracing's EnvFilter syntax.
    pub log_level: String,
    /// Worker threads of the async runtime (`None`: one per core).
    pub worker_threads: Option<usize>,
}

impl Process {
    /// Sets up logging and the async runtime, runs `work` to completion, and turns an error
    /// into one line on stderr and a failing exit code.
    pub fn main(self, work: impl Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
        let name = self.name;
        let fail = |msg: String| {
            eprintln!("{name}: error: {msg}");
            std::process::ExitCode::FAILURE
        };
        if let Err(e) = crate::telemetry::init(self.log_format, &self.log_level) {
            return fail(format!("{e:#}"));
        }
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = self.worker_threads {
            builder.worker_threads(n);
        }
        let runtime = match builder.enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return fail(format!("cannot start the async runtime: {e}")),
        };
        match runtime.block_on(work) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => fail(format!("{e:#}")),
        }
    }
}
