//! `kubesim`: a local Kubernetes-compatible cluster for tests and demos.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use e2e::kubesim::{Cluster, NodeMode, Options};

/// A local Kubernetes-compatible cluster whose API real clients (kubectl, kube-rs,
/// Prometheus) talk to over HTTPS.
#[derive(Parser, Debug)]
#[command(name = "kubesim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Scheduled pods are marked Running and Ready at once; nothing runs.
    Instant,
    /// Pods run as real processes in their own namespaces (needs root).
    Process,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a cluster and serve until SIGTERM or SIGINT.
    Up {
        /// Folder for the kubeconfig, ca.crt and cluster data.
        #[arg(long)]
        state_dir: PathBuf,
        /// How pods run.
        #[arg(long, value_enum, default_value_t = Mode::Instant)]
        node_mode: Mode,
        /// Number of nodes.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
        nodes: u16,
        /// API server port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

async fn up(state_dir: PathBuf, mode: Mode, nodes: u16, port: u16) -> anyhow::Result<()> {
    let node_mode = match mode {
        Mode::Instant => NodeMode::Instant,
        Mode::Process => NodeMode::Process,
    };
    // Remove the previous run's files first, so nothing waits on a stale kubeconfig.
    let _ = std::fs::remove_file(state_dir.join("kubeconfig"));
    let cluster = Cluster::start(Options {
        state_dir: state_dir.clone(),
        node_mode,
        nodes: usize::from(nodes),
        port,
    })
    .await?;
    eprintln!(
        "kubesim: serving {} (node mode {mode:?}, {nodes} node(s))",
        cluster.url()
    );
    eprintln!("kubesim: export KUBECONFIG={}", cluster.kubeconfig().display());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("kubesim: shutting down");
    drop(cluster);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KUBESIM_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let Command::Up {
        state_dir,
        node_mode,
        nodes,
        port,
    } = cli.command;
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kubesim: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(up(state_dir, node_mode, nodes, port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kubesim: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
