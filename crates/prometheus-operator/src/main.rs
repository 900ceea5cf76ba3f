//! `prometheus-operator`: runs Prometheus stacks on Kubernetes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prometheus_operator::{FIELD_MANAGER, OPERATOR_NAME};
use steward_core::{CommonArgs, MetricsBuilder, OperatorInfo};

/// Runs Prometheus stacks on Kubernetes from ServiceMonitors, PodMonitors, PrometheusRules and ScrapeConfigs.
#[derive(Parser, Debug)]
#[command(name = "prometheus-operator", version, about, propagate_version = true)]
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
}

fn main() -> ExitCode {
    let Command::Run { common } = Cli::parse().command;
    let info = OperatorInfo {
        name: OPERATOR_NAME,
        version: env!("CARGO_PKG_VERSION"),
        field_manager: FIELD_MANAGER,
    };
    let metrics = MetricsBuilder::new(OPERATOR_NAME, info.version);
    steward_core::runtime::main(info, common, metrics, prometheus_operator::controller::run)
}
