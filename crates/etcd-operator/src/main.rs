//! `etcd-operator`: runs etcd clusters on Kubernetes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use etcd_operator::OPERATOR_NAME;
use steward_core::{CommonArgs, MetricsBuilder, OperatorInfo};

/// Runs etcd clusters on Kubernetes: bootstrap, quorum-safe scaling, healing, upgrades and TLS.
#[derive(Parser, Debug)]
#[command(name = "etcd-operator", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the operator against the cluster from kubeconfig or the in-cluster config.
    Run {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Take a snapshot from one etcd member into a directory (a backup Pod's volume) and
    /// print the outcome as one JSON line.
    BackupRun(etcd_operator::snapshot::BackupRunArgs),
    /// Fetch a stored snapshot to a local file, verifying its sha256, for a restore.
    RestoreFetch(etcd_operator::snapshot::RestoreFetchArgs),
}

fn main() -> ExitCode {
    let common = match Cli::parse().command {
        Command::Run { common } => common,
        Command::BackupRun(args) => return etcd_operator::snapshot::backup_run(args),
        Command::RestoreFetch(args) => return etcd_operator::snapshot::restore_fetch(args),
    };
    let info = OperatorInfo {
        name: OPERATOR_NAME,
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut metrics = MetricsBuilder::new(OPERATOR_NAME, info.version);
    let etcd_metrics = etcd_operator::controller::EtcdMetrics::register(&mut metrics);
    let backup_metrics = etcd_operator::backup::BackupMetrics::register(&mut metrics);
    steward_core::runtime::main(info, common, metrics, move |rt| async move {
        futures::join!(
            etcd_operator::controller::run(rt.clone(), etcd_metrics),
            etcd_operator::backup::run(rt, backup_metrics),
        );
    })
}
