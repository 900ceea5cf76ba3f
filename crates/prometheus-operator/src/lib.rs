//! Steward's Prometheus operator: the `monitoring.steward.dev` API and the controllers that
//! run Prometheus stacks.

pub mod alertmanager;
pub mod config;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod grafana;
pub mod reloader;
pub mod resources;
#[cfg(test)]
mod testing;
pub mod workload;

/// Binary name; also the metrics `operator` label and the Lease name prefix.
pub const OPERATOR_NAME: &str = "prometheus-operator";
/// Field manager of every server-side apply this operator makes.
pub const FIELD_MANAGER: &str = "steward.dev/prometheus-operator";

/// Every CustomResourceDefinition this operator serves.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        crd::Prometheus::crd(),
        crd::Alertmanager::crd(),
        crd::AlertmanagerConfig::crd(),
        crd::ServiceMonitor::crd(),
        crd::PodMonitor::crd(),
        crd::PrometheusRule::crd(),
        crd::ScrapeConfig::crd(),
    ]
}
