//! `ScrapeConfig`: targets outside Kubernetes (static lists, files, HTTP or EC2 discovery).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ConfigResourceStatus, RelabelConfig};

/// A scrape job for targets outside the cluster's Services and Pods.
#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "monitoring.steward.dev",
    version = "v1alpha1",
    kind = "ScrapeConfig",
    plural = "scrapeconfigs",
    namespaced,
    status = "ConfigResourceStatus",
    shortname = "scfg",
    category = "steward",
    category = "monitoring",
    doc = "A scrape job with static, file, HTTP or EC2 service discovery.",
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ScrapeConfigSpec {
    /// Job name; `scrapeConfig/<namespace>/<name>` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Fixed target lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub static_configs: Vec<StaticConfig>,
    /// Targets read from files.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "fileSDConfigs")]
    pub file_sd_configs: Vec<FileSdConfig>,
    /// Targets fetched from an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "httpSDConfigs")]
    pub http_sd_configs: Vec<HttpSdConfig>,
    /// Targets discovered from EC2 instances.
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "ec2SDConfigs")]
    pub ec2_sd_configs: Vec<Ec2SdConfig>,
    /// Relabelings applied to targets before scraping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<RelabelConfig>,
    /// Relabelings applied to scraped samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabelings: Vec<RelabelConfig>,
    /// HTTP path to scrape; default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    /// Scrape interval; the Prometheus default when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    /// Scrape timeout; must not exceed the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

/// A fixed list of targets.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StaticConfig {
    /// `host:port` targets.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Labels added to every target of the list.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// File-based discovery.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FileSdConfig {
    /// File paths or globs inside the Prometheus container.
    #[schemars(length(min = 1))]
    pub files: Vec<String>,
    /// How often the files are re-read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
}

/// HTTP-based discovery.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpSdConfig {
    /// URL returning the target list.
    #[schemars(length(min = 1))]
    pub url: String,
    /// How often the URL is fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
}

/// EC2 discovery.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ec2SdConfig {
    /// AWS region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Port scraped on each instance; default 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// How often instances are listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_interval: Option<String>,
    /// Instance filters, e.g. `tag:team` = `payments`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Ec2Filter>,
    /// Secret key holding the AWS access key ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<SecretKeySelector>,
    /// Secret key holding the AWS secret access key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<SecretKeySelector>,
}

/// An EC2 DescribeInstances filter.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Ec2Filter {
    /// Filter name.
    pub name: String,
    /// Accepted values.
    pub values: Vec<String>,
}
