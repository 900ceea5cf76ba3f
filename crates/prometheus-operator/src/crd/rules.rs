//! `PrometheusRule`: recording and alerting rules.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::ConfigResourceStatus;

/// Groups of recording and alerting rules, loaded by every Prometheus that selects them.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "PrometheusRule",
    plural = "prometheusrules",
    namespaced,
    status = "ConfigResourceStatus",
    shortname = "promrule",
    category = "steward",
    category = "monitoring",
    doc = "Recording and alerting rules for the Prometheus instances that select them.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    /// Rule groups; names must be unique within the object.
    #[serde(default)]
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuleGroup {
    /// Group name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Evaluation interval; the Prometheus default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Rules of the group.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One recording rule (`record`) or alerting rule (`alert`).
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Name of the series a recording rule writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    /// Name of the alert an alerting rule fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// PromQL expression.
    pub expr: String,
    /// How long the expression must hold before the alert fires.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "for")]
    pub for_: Option<String>,
    /// How long an alert keeps firing after its expression stops holding.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "keep_firing_for")]
    pub keep_firing_for: Option<String>,
    /// Labels added to the series or alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the alert.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}
