//! `Alertmanager`: a highly available Alertmanager cluster.

use k8s_openapi::api::core::v1::{
    PodSecurityContext, ResourceRequirements, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ConfigResourceStatus;
use super::{GrafanaDatasource, PrometheusStorage};

/// Default Alertmanager version.
pub const DEFAULT_ALERTMANAGER_VERSION: &str = "0.28.1";
/// Default `--data.retention` (upstream's default).
pub const DEFAULT_ALERTMANAGER_RETENTION: &str = "120h";
/// Key of the user's configuration in `configSecret` when `key` is unset.
pub const DEFAULT_CONFIG_KEY: &str = "alertmanager.yaml";

fn default_replicas() -> i32 {
    3
}

fn default_version() -> String {
    DEFAULT_ALERTMANAGER_VERSION.to_string()
}

fn default_retention() -> String {
    DEFAULT_ALERTMANAGER_RETENTION.to_string()
}

fn default_config_key() -> String {
    DEFAULT_CONFIG_KEY.to_string()
}

const STORAGE_IMMUTABLE_RULE: &str = "(has(self.storage) && has(self.storage.volumeClaimTemplate)) == (has(oldSelf.storage) && has(oldSelf.storage.volumeClaimTemplate)) && (!has(self.storage) || !has(self.storage.volumeClaimTemplate) || self.storage.volumeClaimTemplate == oldSelf.storage.volumeClaimTemplate)";
const STORAGE_IMMUTABLE_MESSAGE: &str = "storage.volumeClaimTemplate cannot be added, removed or changed after creation (StatefulSet volume claim templates are immutable)";
const ONE_CONFIG_RULE: &str = "!(has(self.configSecret) && has(self.config))";
const ONE_CONFIG_MESSAGE: &str = "set at most one of configSecret and config";

/// An Alertmanager cluster: a StatefulSet whose replicas gossip silences and notification
/// state to each other whenever there are two or more.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "Alertmanager",
    plural = "alertmanagers",
    singular = "alertmanager",
    namespaced,
    status = "AlertmanagerStatus",
    shortname = "am",
    category = "steward",
    category = "monitoring",
    doc = "An Alertmanager cluster, highly available by default.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Reconciled",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Reconciled\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(STORAGE_IMMUTABLE_RULE).message(STORAGE_IMMUTABLE_MESSAGE))]
#[x_kube(validation = Rule::new(ONE_CONFIG_RULE).message(ONE_CONFIG_MESSAGE))]
pub struct AlertmanagerSpec {
    /// Number of replicas; with two or more they form one gossip cluster.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10))]
    pub replicas: i32,
    /// Alertmanager version, `0.28.1` by default; 0.33 is also supported.
    #[serde(default = "default_version")]
    #[schemars(regex(pattern = r"^v?[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// Full image reference; `quay.io/prometheus/alertmanager:v<version>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A Secret of this namespace holding a complete alertmanager.yaml. It is checked before
    /// use; an invalid one leaves the last good configuration running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_secret: Option<ConfigSecretRef>,
    /// The configuration written in the object: routes, receivers and inhibit rules.
    /// Credentials come from Secrets of this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<AlertmanagerConfiguration>,
    /// AlertmanagerConfig objects whose routes, receivers, inhibit rules and time intervals are
    /// merged into the configuration, each enforced to its own namespace. Unset selects none;
    /// `{}` selects all (in the namespaces of `alertmanagerConfigNamespaceSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager_config_selector: Option<LabelSelector>,
    /// Namespaces searched for AlertmanagerConfig objects. Unset means this object's
    /// namespace only; `{}` means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alertmanager_config_namespace_selector: Option<LabelSelector>,
    /// How long silences and notification state are kept, e.g. `120h`.
    #[serde(default = "default_retention")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d|w|y))+$"))]
    pub retention: String,
    /// Where silences and the notification log live; an emptyDir when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PrometheusStorage>,
    /// CPU and memory of the Alertmanager container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The URL users reach Alertmanager at (links in notifications, `--web.external-url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_url: Option<String>,
    /// Pod securityContext. By default user and group 65534 (`nobody`), fsGroup 65534 and the
    /// RuntimeDefault seccomp profile (Pod Security "restricted"). When set, it replaces that
    /// default entirely.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    /// securityContext of every container of the pod. By default: no privilege escalation,
    /// every capability dropped, read-only root filesystem. When set, it replaces that default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_security_context: Option<SecurityContext>,
    /// Stops every change to the stack while true.
    #[serde(default)]
    pub paused: bool,
    /// A Grafana datasource for this Alertmanager (type `alertmanager`, Prometheus'
    /// implementation): a ConfigMap of Grafana provisioning YAML, labelled for the Grafana
    /// Helm chart's datasource sidecar, removed with the Alertmanager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grafana_datasource: Option<GrafanaDatasource>,
}

/// A key of a Secret in the Alertmanager's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key holding alertmanager.yaml (`alertmanager.yaml` by default).
    #[serde(default = "default_config_key")]
    pub key: String,
}

/// An Alertmanager configuration written in the object.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerConfiguration {
    /// The root route; it needs a receiver and takes no matchers.
    pub route: Route,
    /// Where notifications go; every receiver a route names must be here.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Alerts that mute others while they fire.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibit_rules: Vec<InhibitRule>,
    /// Named time intervals that routes refer to in `muteTimeIntervals` and
    /// `activeTimeIntervals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<MuteTimeInterval>,
}

/// A routing tree node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Receiver of the alerts this route matches; inherited from the parent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Matchers in Alertmanager's syntax, e.g. `severity="critical"` or `team=~"a|b"`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
    /// Labels to group alerts by; `...` groups by all labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// How long to wait before the first notification of a group, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// How long to wait before notifying about new alerts of a group, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    /// How long to wait before repeating a notification, e.g. `4h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Keep matching the following sibling routes after this one matched.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r#continue: bool,
    /// Names of time intervals during which this route sends nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    /// Names of time intervals outside of which this route sends nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
    /// Child routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "child_routes_schema")]
    pub routes: Vec<serde_json::Value>,
}

/// Child routes are routes too; the schema cannot recurse, so they are kept as objects and
/// read as [`Route`] by the operator (a malformed one is an `InvalidConfiguration`).
fn child_routes_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "description": "Child routes, each with the fields of a route.",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// A notification receiver.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Receiver {
    /// Unique name that routes refer to.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Webhook endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_configs: Vec<WebhookConfig>,
    /// Email notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_configs: Vec<EmailConfig>,
    /// Slack notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slack_configs: Vec<SlackConfig>,
    /// PagerDuty notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pagerduty_configs: Vec<PagerDutyConfig>,
}

/// A webhook; exactly one of `url` and `urlSecret`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookConfig {
    /// The URL to POST to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A Secret key holding the URL (when it carries a token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret: Option<SecretKeySelector>,
    /// Also notify about resolved alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
    /// Most alerts per message; 0 means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_alerts: Option<i32>,
}

/// An email notification.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmailConfig {
    /// Recipient address.
    #[schemars(length(min = 1))]
    pub to: String,
    /// Sender address.
    #[schemars(length(min = 1))]
    pub from: String,
    /// SMTP server as `host:port`.
    #[schemars(length(min = 1))]
    pub smarthost: String,
    /// SMTP user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// A Secret key holding the SMTP password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_password: Option<SecretKeySelector>,
    /// Require STARTTLS (Alertmanager's default is true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_tls: Option<bool>,
    /// Also notify about resolved alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
}

/// A Slack notification.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SlackConfig {
    /// A Secret key holding the incoming-webhook URL.
    pub api_url: SecretKeySelector,
    /// Channel or user to post to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Message title template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Message text template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Also notify about resolved alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
}

/// A PagerDuty notification; exactly one of `routingKey` (Events API v2) and `serviceKey`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PagerDutyConfig {
    /// A Secret key holding the Events API v2 integration key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<SecretKeySelector>,
    /// A Secret key holding the Prometheus integration (service) key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_key: Option<SecretKeySelector>,
    /// Events API URL; PagerDuty's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Incident severity template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Also notify about resolved alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_resolved: Option<bool>,
}

/// Mutes alerts matching `targetMatchers` while an alert matching `sourceMatchers` fires.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InhibitRule {
    /// Matchers of the muting alert, in Alertmanager's syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_matchers: Vec<String>,
    /// Matchers of the muted alerts, in Alertmanager's syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_matchers: Vec<String>,
    /// Labels that must be equal in both alerts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equal: Vec<String>,
}

/// A named set of time intervals, e.g. nights and weekends.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MuteTimeInterval {
    /// Name that routes refer to.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The intervals; a moment in any of them is in the set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_intervals: Vec<TimeInterval>,
}

/// One time interval: a moment is in it when it matches every field that is set.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TimeInterval {
    /// Times of day, in UTC.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    /// Days of the week or ranges of them, in lower case, e.g. `monday:friday` or `saturday`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = r"^(sun|mon|tues|wednes|thurs|fri|satur)day(:(sun|mon|tues|wednes|thurs|fri|satur)day)?$"
    )))]
    pub weekdays: Vec<String>,
    /// Days of the month; negative numbers count from the end of the month.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days_of_month: Vec<DayOfMonthRange>,
    /// Months or ranges of them, by lower-case name or number, e.g. `january:march` or `12`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(
        pattern = r"^(january|february|march|april|may|june|july|august|september|october|november|december|1[0-2]|[1-9])(:(january|february|march|april|may|june|july|august|september|october|november|december|1[0-2]|[1-9]))?$"
    )))]
    pub months: Vec<String>,
    /// Years or ranges of them, e.g. `2026` or `2026:2028`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^2[0-9]{3}(:2[0-9]{3})?$")))]
    pub years: Vec<String>,
}

/// A range of the day, from `startTime` (included) to `endTime` (excluded), as `HH:MM`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TimeRange {
    /// Start, e.g. `09:00`.
    #[schemars(regex(pattern = r"^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)"))]
    pub start_time: String,
    /// End, e.g. `17:00`; `24:00` is the end of the day.
    #[schemars(regex(pattern = r"^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)"))]
    pub end_time: String,
}

/// A range of days of the month, both ends included.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DayOfMonthRange {
    /// First day, 1 to 31, or -31 to -1 counting from the end of the month.
    #[schemars(range(min = -31, max = 31))]
    pub start: i32,
    /// Last day, as `start`.
    #[schemars(range(min = -31, max = 31))]
    pub end: i32,
}

/// Routing for one team: a route tree, receivers, inhibit rules and time intervals that every
/// Alertmanager selecting this object merges into its configuration. The tree only ever sees
/// alerts whose `namespace` label is this object's namespace, and every name in it becomes
/// `<namespace>/<object>/<name>` so that teams never collide.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "AlertmanagerConfig",
    plural = "alertmanagerconfigs",
    singular = "alertmanagerconfig",
    namespaced,
    status = "ConfigResourceStatus",
    shortname = "amcfg",
    category = "steward",
    category = "monitoring",
    doc = "Alert routing for one namespace, merged into the Alertmanagers that select it.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerConfigSpec {
    /// The top route of this namespace's tree. It needs a receiver of this object; it gets a
    /// `namespace="<this namespace>"` matcher and `continue: true`, and goes first under the
    /// Alertmanager's root route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Route>,
    /// Receivers the routes name; Secrets are read from this object's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receivers: Vec<Receiver>,
    /// Inhibit rules; both their source and target matchers get this namespace's matcher.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibit_rules: Vec<InhibitRule>,
    /// Time intervals the routes name in `muteTimeIntervals` and `activeTimeIntervals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<MuteTimeInterval>,
}

/// Observed state of an Alertmanager.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerStatus {
    /// Pods created.
    #[serde(default)]
    pub replicas: i32,
    /// Pods ready.
    #[serde(default)]
    pub available_replicas: i32,
    /// Label selector of the pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Cluster members as each ready pod reports them (`/api/v2/status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_peers: Vec<PodClusterStatus>,
    /// `Reconciled` and `Available`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// What one pod says about its cluster.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodClusterStatus {
    /// Pod name.
    pub pod: String,
    /// Members the pod sees, itself included.
    pub peers: i32,
    /// The pod's cluster status: `ready`, `settling` or `disabled`.
    pub status: String,
}
