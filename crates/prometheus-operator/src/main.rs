//! `prometheus-operator`: runs Prometheus stacks on Kubernetes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use prometheus_operator::OPERATOR_NAME;
use steward_core::{CommonArgs, MetricsBuilder, OperatorInfo};

/// Runs Prometheus stacks on Kubernetes from ServiceMonitors, PodMonitors, PrometheusRules and ScrapeConfigs,
/// and Alertmanager clusters.
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
        /// Image of the config-reloader sidecar next to each Prometheus: this operator's own
        /// image, which also runs `prometheus-operator config-reloader`.
        #[arg(long, env = "STEWARD_CONFIG_RELOADER_IMAGE", default_value = concat!("steward/prometheus-operator:v", env!("CARGO_PKG_VERSION")))]
        config_reloader_image: String,
        /// Let a Prometheus discover targets in any existing namespace its monitors name,
        /// without that namespace's `discovery-from.monitoring.steward.dev/<namespace>=true`
        /// label. Only for clusters whose tenants trust each other.
        #[arg(long, env = "STEWARD_ALLOW_CROSS_NAMESPACE_DISCOVERY", default_value_t = false, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        allow_cross_namespace_discovery: bool,
        /// Let monitors with `namespaceSelector.any` give their Prometheus read of Services,
        /// Endpoints, EndpointSlices and Pods in every namespace (a ClusterRoleBinding). Needs
        /// the extra RBAC in deploy/prometheus-operator/cluster-wide-discovery/.
        #[arg(long, env = "STEWARD_ALLOW_CLUSTER_WIDE_DISCOVERY", default_value_t = false, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        allow_cluster_wide_discovery: bool,
        /// Also read upstream prometheus-operator's `monitoring.coreos.com` ServiceMonitors,
        /// PodMonitors, PrometheusRules and ScrapeConfigs while their CRDs exist.
        #[arg(long, env = "STEWARD_UPSTREAM_MONITORS", default_value_t = true, num_args = 0..=1,
              default_missing_value = "true", action = clap::ArgAction::Set)]
        upstream_monitors: bool,
        /// `key=value` label of the Grafana datasource ConfigMaps (`spec.grafanaDatasource`);
        /// the Grafana Helm chart's sidecar looks for `grafana_datasource=1` by default.
        #[arg(long, env = "STEWARD_GRAFANA_DATASOURCE_LABEL", default_value = prometheus_operator::grafana::DEFAULT_LABEL)]
        grafana_datasource_label: prometheus_operator::grafana::Label,
    },
    /// Sidecar next to Prometheus: render its config (gunzip, `$(VAR)` expansion) into a shared
    /// directory and call `/-/reload` when the config or a rule file changes.
    ConfigReloader(prometheus_operator::reloader::Args),
}

fn main() -> ExitCode {
    let (common, settings) = match Cli::parse().command {
        Command::Run {
            common,
            config_reloader_image,
            allow_cross_namespace_discovery,
            allow_cluster_wide_discovery,
            upstream_monitors,
            grafana_datasource_label,
        } => (
            common,
            prometheus_operator::controller::Settings {
                reloader_image: config_reloader_image,
                policy: prometheus_operator::discovery::Policy {
                    cross_namespace: allow_cross_namespace_discovery,
                    cluster_wide: allow_cluster_wide_discovery,
                },
                upstream_monitors,
                grafana_label: grafana_datasource_label,
            },
        ),
        Command::ConfigReloader(args) => return prometheus_operator::reloader::main(args),
    };
    let info = OperatorInfo {
        name: OPERATOR_NAME,
        version: env!("CARGO_PKG_VERSION"),
    };
    let mut metrics = MetricsBuilder::new(OPERATOR_NAME, info.version);
    let prom_metrics = prometheus_operator::controller::PrometheusMetrics::register(&mut metrics);
    steward_core::runtime::main(info, common, metrics, move |rt| async move {
        let alertmanagers = prometheus_operator::alertmanager::run(
            rt.clone(),
            settings.reloader_image.clone(),
            settings.grafana_label.clone(),
        );
        let prometheuses = prometheus_operator::controller::run(rt, prom_metrics, settings);
        tokio::join!(prometheuses, alertmanagers);
    })
}
