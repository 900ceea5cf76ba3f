//! `Prometheus`: one Prometheus stack for a team.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, PodSecurityContext, ResourceRequirements, SecretKeySelector, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{BasicAuth, RelabelConfig, SafeAuthorization};

/// Default Prometheus version: the current 3.5 LTS line.
pub const DEFAULT_VERSION: &str = "3.5.3";

fn default_replicas() -> i32 {
    1
}

fn default_shards() -> i32 {
    1
}

fn default_version() -> String {
    DEFAULT_VERSION.to_string()
}

/// CEL transition rule: `storage.volumeClaimTemplate` keeps its presence and value.
const STORAGE_IMMUTABLE_RULE: &str = "(has(self.storage) && has(self.storage.volumeClaimTemplate)) == (has(oldSelf.storage) && has(oldSelf.storage.volumeClaimTemplate)) && (!has(self.storage) || !has(self.storage.volumeClaimTemplate) || self.storage.volumeClaimTemplate == oldSelf.storage.volumeClaimTemplate)";
const STORAGE_IMMUTABLE_MESSAGE: &str = "storage.volumeClaimTemplate cannot be added, removed or changed after creation (StatefulSet volume claim templates are immutable): to grow the volumes, expand each PVC data-prometheus-<name>-<i> (if its StorageClass allows it) and set retentionSize; for another StorageClass, create a new Prometheus";

/// A Prometheus server whose configuration is generated from the monitors, rules and scrape
/// configs its selectors pick.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "Prometheus",
    plural = "prometheuses",
    singular = "prometheus",
    namespaced,
    status = "PrometheusStatus",
    shortname = "prom",
    category = "steward",
    category = "monitoring",
    doc = "A Prometheus deployment configured from ServiceMonitors, PodMonitors, PrometheusRules and ScrapeConfigs.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
// A StatefulSet's volumeClaimTemplates cannot change: refusing the edit here tells the user at
// once, where accepting it would leave every later reconcile failing with 422.
#[x_kube(validation = Rule::new(STORAGE_IMMUTABLE_RULE).message(STORAGE_IMMUTABLE_MESSAGE))]
pub struct PrometheusSpec {
    /// Number of identical Prometheus replicas.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// Number of shards: one StatefulSet of `replicas` pods each (`prometheus-<name>`, then
    /// `prometheus-<name>-shard-<n>`), each scraping only its part of every job's targets (by a
    /// hash of `__address__`). Lowering it deletes the extra StatefulSets; their PVCs and the
    /// samples in them stay, and series already scraped stay with the shard that scraped them.
    #[serde(default = "default_shards")]
    #[schemars(range(min = 1, max = 100))]
    pub shards: i32,
    /// Prometheus version, e.g. `3.5.3`; 2.53 is also supported.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// Full image reference; `quay.io/prometheus/prometheus:v<version>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// ServiceMonitors to use, by label. Unset selects none; `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_selector: Option<LabelSelector>,
    /// Namespaces to take ServiceMonitors from. Unset means only this object's namespace;
    /// `{}` means all namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor_namespace_selector: Option<LabelSelector>,
    /// PodMonitors to use, by label. Unset selects none; `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_monitor_selector: Option<LabelSelector>,
    /// Namespaces to take PodMonitors from; unset means only this namespace, `{}` all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_monitor_namespace_selector: Option<LabelSelector>,
    /// PrometheusRules to load, by label. Unset selects none; `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_selector: Option<LabelSelector>,
    /// Namespaces to take PrometheusRules from; unset means only this namespace, `{}` all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_namespace_selector: Option<LabelSelector>,
    /// ScrapeConfigs to use, by label. Unset selects none; `{}` selects all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_config_selector: Option<LabelSelector>,
    /// Namespaces to take ScrapeConfigs from; unset means only this namespace, `{}` all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_config_namespace_selector: Option<LabelSelector>,
    /// Default scrape interval, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    /// Default scrape timeout; must not exceed the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    /// Rule evaluation interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<String>,
    /// Labels added to every series and alert leaving this Prometheus.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub external_labels: BTreeMap<String, String>,
    /// When set, every target and rule gets a label of this name holding the namespace of
    /// the object that defined it, so a team cannot read another team's series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_namespace_label: Option<String>,
    /// How long samples are kept, e.g. `15d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Largest size of the TSDB, e.g. `8GB`. When unset and `storage.volumeClaimTemplate.size`
    /// is set, the operator uses 80% of the volume (room for the WAL and compaction).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_size: Option<String>,
    /// Where the TSDB lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PrometheusStorage>,
    /// CPU and memory of the Prometheus container. With a memory limit the operator sets
    /// `GOMEMLIMIT` to 90% of it, so Go collects garbage before the kernel kills the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// `GOMEMLIMIT` for Prometheus in Go's syntax (bytes, or a number with `KiB`, `MiB`,
    /// `GiB` or `TiB`); wins over the 90%-of-the-memory-limit default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(B|KiB|MiB|GiB|TiB)?$"))]
    pub go_mem_limit: Option<String>,
    /// Node labels a Prometheus pod's node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations of Prometheus pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity of Prometheus pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod securityContext. By default Prometheus runs as user and group 65534 (the image's
    /// `nobody`) with fsGroup 65534 and the RuntimeDefault seccomp profile, which passes Pod
    /// Security "restricted". When set, it replaces that default entirely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// securityContext of every container of the pod (Prometheus, the config reloader and its
    /// init container). By default: no privilege escalation, every capability dropped,
    /// read-only root filesystem. When set, it replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// ServiceAccount the pods run as; the operator creates `prometheus-<name>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Where alerts are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerting: Option<AlertingSpec>,
    /// Remote write destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_write: Vec<RemoteWriteSpec>,
    /// Scrape the `/federate` endpoint of other Prometheus objects (one replica of each of their
    /// shards), for one global view of team or shard Prometheus servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federation: Option<FederationSpec>,
    /// Stops every change to the stack while true.
    #[serde(default)]
    pub paused: bool,
    /// A Grafana datasource for this Prometheus: a ConfigMap of Grafana provisioning YAML,
    /// labelled for the Grafana Helm chart's datasource sidecar (see the operator's
    /// `--grafana-datasource-label`), removed with the Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_datasource: Option<GrafanaDatasource>,
}

fn default_true() -> bool {
    true
}

/// The Grafana datasource of a Prometheus or an Alertmanager.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GrafanaDatasource {
    /// Whether the datasource ConfigMap exists (default true); false removes it and keeps
    /// these settings.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Name Grafana shows; by default `<namespace>/<name>` for a Prometheus and
    /// `<namespace>/<name> alertmanager` for an Alertmanager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 190))]
    pub name: Option<String>,
    /// Whether Grafana uses this datasource by default (default false). A Grafana accepts
    /// one default datasource only.
    #[serde(default)]
    pub is_default: bool,
}

/// Which Prometheus objects to federate, and what to take from them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FederationSpec {
    /// Prometheus objects to federate, by label; `{}` selects all. This Prometheus itself is
    /// never federated.
    pub prometheus_selector: LabelSelector,
    /// Namespaces to take Prometheus objects from; unset means only this object's namespace,
    /// `{}` all. Another namespace must allow discovery from this one, as for monitors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_namespace_selector: Option<LabelSelector>,
    /// Series selectors sent as `match[]` to `/federate`, e.g. `{__name__=~"job:.*"}`; at
    /// least one (Prometheus answers nothing without).
    #[serde(rename = "match")]
    #[schemars(length(min = 1), inner(length(min = 1)))]
    pub match_: Vec<String>,
    /// How often to federate, e.g. `1m`; the global scrape interval when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// TSDB storage.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusStorage {
    /// A PVC per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_claim_template: Option<PrometheusVolumeClaimTemplate>,
    /// Data in an emptyDir, lost with the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<PrometheusEmptyDir>,
}

/// PVC settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusVolumeClaimTemplate {
    /// Requested size, e.g. `20Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// StorageClass; the cluster default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// emptyDir settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusEmptyDir {
    /// `Memory` for tmpfs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    /// Size limit, e.g. `2Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// Alerting settings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertingSpec {
    /// Alertmanagers to send alerts to, each an Alertmanager object or a Service.
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerEndpoint>,
}

const ONE_TARGET_RULE: &str = "has(self.alertmanager) != (has(self.name) && self.name != '')";
const ONE_TARGET_MESSAGE: &str =
    "set exactly one of alertmanager (an Alertmanager object) and name (a Service)";
const PORT_RULE: &str = "has(self.alertmanager) || has(self.port)";
const PORT_MESSAGE: &str = "port is required with name (a Service)";

/// Where alerts go: an Alertmanager object of this operator (`alertmanager`) or any Service
/// (`name` and `port`). Either way Prometheus discovers every pod behind it from the
/// Service's EndpointSlices and sends to each one itself, never through the Service's
/// load-balanced address: Alertmanager replicas deduplicate among themselves only when every
/// one of them receives every alert.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(ONE_TARGET_RULE).message(ONE_TARGET_MESSAGE))]
#[x_kube(validation = Rule::new(PORT_RULE).message(PORT_MESSAGE))]
pub struct AlertmanagerEndpoint {
    /// Namespace of the Alertmanager or Service; this object's namespace when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of an Alertmanager object. Its pods are discovered through the Service
    /// `alertmanager-<alertmanager>` the operator creates for it, on its `web` port (or
    /// `port` when set); the Service's name never needs to be known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager: Option<String>,
    /// Service name, when not naming an Alertmanager object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Service port name or number; `web` for an Alertmanager object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// Alertmanager API version; `v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

/// A remote write destination.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteWriteSpec {
    /// Endpoint URL.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Basic authentication from Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<SafeAuthorization>,
    /// Deprecated upstream form of a bearer token Secret; prefer `authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret: Option<SecretKeySelector>,
    /// Relabelings applied to series before sending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write_relabel_configs: Vec<RelabelConfig>,
}

/// Observed state of a Prometheus.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusStatus {
    /// Pods created.
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pods of the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods not ready.
    #[serde(default)]
    pub unavailable_replicas: i32,
    /// Shards in the spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<i32>,
    /// The replicas of each shard (the top-level counts are their sums).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shard_statuses: Vec<ShardStatus>,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Available` and `Reconciled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Selected and rejected objects per kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected_resources: Vec<SelectedResources>,
    /// The `--storage.tsdb.retention.size` in effect: `spec.retentionSize`, or 80% of the
    /// volume size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_size: Option<String>,
    /// The `GOMEMLIMIT` (bytes) given to Prometheus: 90% of its memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go_mem_limit: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The replicas of one shard's StatefulSet.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShardStatus {
    /// The shard number, from `0`.
    #[serde(rename = "shardID")]
    pub shard_id: String,
    /// Pods of the shard.
    pub replicas: i32,
    /// Pods of the shard's current pod template.
    pub updated_replicas: i32,
    /// Pods of the shard ready.
    pub available_replicas: i32,
    /// Pods of the shard not ready.
    pub unavailable_replicas: i32,
}

/// How many objects of one kind a Prometheus uses.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SelectedResources {
    /// `ServiceMonitor`, `PodMonitor`, `PrometheusRule` or `ScrapeConfig`.
    pub kind: String,
    /// Selected and valid.
    pub accepted: i32,
    /// Selected but invalid, left out of the configuration.
    pub rejected: i32,
}
