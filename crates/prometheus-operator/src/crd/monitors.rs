//! `ServiceMonitor` and `PodMonitor`: which Services or Pods to scrape, and how.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ConfigResourceStatus, NamespaceSelector, ScrapeSettings};

/// Scrape targets behind Services selected by labels.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "ServiceMonitor",
    plural = "servicemonitors",
    namespaced,
    status = "ConfigResourceStatus",
    shortname = "smon",
    category = "steward",
    category = "monitoring",
    doc = "Declares how the endpoints of selected Services are scraped.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Services to scrape, by label.
    pub selector: LabelSelector,
    /// Namespaces to look for Services in; the monitor's own namespace by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Service label whose value becomes the `job` label; the Service name by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_label: Option<String>,
    /// Service labels copied onto every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_labels: Vec<String>,
    /// Pod labels copied onto every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_target_labels: Vec<String>,
    /// Per-scrape limit on samples; the scrape fails above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub sample_limit: Option<u64>,
    /// Endpoints to scrape on each selected Service.
    #[schemars(length(min = 1))]
    pub endpoints: Vec<Endpoint>,
}

/// One scraped port of a Service.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Name of the Service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Name or number of the target port of the Pod; used when `port` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// How the endpoint is scraped.
    #[serde(flatten)]
    pub scrape: ScrapeSettings,
}

/// Scrape Pods selected by labels directly, without a Service.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "PodMonitor",
    plural = "podmonitors",
    namespaced,
    status = "ConfigResourceStatus",
    shortname = "pmon",
    category = "steward",
    category = "monitoring",
    doc = "Declares how selected Pods are scraped.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PodMonitorSpec {
    /// Pods to scrape, by label.
    pub selector: LabelSelector,
    /// Namespaces to look for Pods in; the monitor's own namespace by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    /// Pod label whose value becomes the `job` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_label: Option<String>,
    /// Pod labels copied onto every target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_target_labels: Vec<String>,
    /// Per-scrape limit on samples; the scrape fails above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub sample_limit: Option<u64>,
    /// Container ports to scrape on each selected Pod.
    #[schemars(length(min = 1))]
    pub pod_metrics_endpoints: Vec<PodMetricsEndpoint>,
}

/// One scraped port of a Pod.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodMetricsEndpoint {
    /// Name of the container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Name or number of the container port; used when `port` is empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// How the endpoint is scraped.
    #[serde(flatten)]
    pub scrape: ScrapeSettings,
}
