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
        /// Image of this operator, which restore init containers (`restore-fetch`,
        /// `restore-finish`) and the pods of PVC backups (`backup-run`, `backup-delete`) run.
        #[arg(long, env = "STEWARD_OPERATOR_IMAGE", default_value = concat!("steward/etcd-operator:v", env!("CARGO_PKG_VERSION")))]
        operator_image: String,
    },
    /// Take a snapshot from one etcd member into a directory (a backup Pod's volume) and
    /// print the outcome as one JSON line.
    BackupRun(etcd_operator::snapshot::BackupRunArgs),
    /// Delete one stored snapshot from a directory (a pruning Pod's volume).
    BackupDelete(etcd_operator::snapshot::BackupDeleteArgs),
    /// Fetch a stored snapshot to a local file, verifying its sha256, for a restore.
    RestoreFetch(etcd_operator::snapshot::RestoreFetchArgs),
    /// Move a restored data directory into place unless the data directory already holds a
    /// member (the last step of a restore; safe to run again).
    RestoreFinish(etcd_operator::snapshot::RestoreFinishArgs),
}

fn main() -> ExitCode {
    let (common, operator_image) = match Cli::parse().command {
        Command::Run {
            common,
            operator_image,
        } => (common, operator_image),
        Command::BackupRun(args) => return etcd_operator::snapshot::backup_run(args),
        Command::BackupDelete(args) => return etcd_operator::snapshot::backup_delete(args),
        Command::RestoreFetch(args) => return etcd_operator::snapshot::restore_fetch(args),
        Command::RestoreFinish(args) => return etcd_operator::snapshot::restore_finish(args),
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
            etcd_operator::controller::run(rt.clone(), etcd_metrics, operator_image.clone()),
            etcd_operator::backup::run(rt, backup_metrics, operator_image),
        );
    })
}
