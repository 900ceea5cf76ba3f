//! Golden cases of the generator: `testdata/config/<case>/input.yaml`, a multi-document YAML
//! of the Prometheus being configured (the first one), other Prometheus objects it may
//! federate, and the Namespaces, monitors, rules, Secrets and ConfigMaps it sees. The
//! crate's golden tests and the end-to-end promtool checks load them with the same code.
//! Monitors, rules and scrape configs with an `apiVersion` in `monitoring.coreos.com` are read
//! as upstream objects, through the controller's path ([`super::upstream::from_dynamic`]).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::upstream::{HasSpec, from_dynamic};
use super::{Generated, Inputs, Problem, Store, Upstream, generate_with};
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, ScrapeConfig, ServiceMonitor};

/// The objects of one case.
#[derive(Clone, Debug)]
pub struct Case {
    /// The Prometheus being configured (the first in the file).
    pub prometheus: Prometheus,
    /// The other Prometheus objects, for federation.
    pub other_prometheuses: Vec<Prometheus>,
    /// Namespaces.
    pub namespaces: Vec<Namespace>,
    /// ServiceMonitors.
    pub service_monitors: Vec<ServiceMonitor>,
    /// PodMonitors.
    pub pod_monitors: Vec<PodMonitor>,
    /// ScrapeConfigs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// PrometheusRules.
    pub rules: Vec<PrometheusRule>,
    /// Objects of upstream's group.
    pub upstream: UpstreamObjects,
    /// Secrets the objects may reference.
    pub secrets: Vec<Secret>,
    /// ConfigMaps the objects may reference.
    pub config_maps: Vec<ConfigMap>,
}

/// The upstream-group objects of a case, read into our types.
#[derive(Clone, Debug, Default)]
pub struct UpstreamObjects {
    /// ServiceMonitors.
    pub service_monitors: Vec<ServiceMonitor>,
    /// PodMonitors.
    pub pod_monitors: Vec<PodMonitor>,
    /// ScrapeConfigs.
    pub scrape_configs: Vec<ScrapeConfig>,
    /// PrometheusRules.
    pub rules: Vec<PrometheusRule>,
}

impl UpstreamObjects {
    /// Borrowed, as the generator takes them.
    pub fn view(&self) -> Upstream<'_> {
        Upstream {
            service_monitors: &self.service_monitors,
            pod_monitors: &self.pod_monitors,
            scrape_configs: &self.scrape_configs,
            rules: &self.rules,
        }
    }
}

impl Case {
    /// Reads a case from its documents, e.g. `serde_yaml_ng::Deserializer::from_str(text)`
    /// (taking any deserializer keeps YAML a test-only dependency).
    pub fn from_documents<'de, D: serde::Deserializer<'de>>(
        docs: impl IntoIterator<Item = D>,
    ) -> Result<Case, String> {
        fn parse<K: DeserializeOwned>(v: serde_json::Value, into: &mut Vec<K>) -> Result<(), String> {
            into.push(serde_json::from_value(v).map_err(|e| e.to_string())?);
            Ok(())
        }
        fn parse_upstream<K: DeserializeOwned + HasSpec>(
            v: serde_json::Value,
            into: &mut Vec<K>,
        ) -> Result<(), String> {
            let obj = serde_json::from_value(v).map_err(|e| e.to_string())?;
            into.push(from_dynamic(&obj)?.object);
            Ok(())
        }
        let mut prometheus = Vec::new();
        let mut up = UpstreamObjects::default();
        let (mut namespaces, mut service_monitors, mut pod_monitors) = (Vec::new(), Vec::new(), Vec::new());
        let (mut scrape_configs, mut rules, mut secrets, mut config_maps) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for doc in docs {
            let v = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            if v.is_null() {
                continue;
            }
            let kind = v["kind"].as_str().unwrap_or_default().to_string();
            let upstream = v["apiVersion"]
                .as_str()
                .is_some_and(|a| a.starts_with(crate::crd::UPSTREAM_GROUP));
            match kind.as_str() {
                "ServiceMonitor" if upstream => parse_upstream(v, &mut up.service_monitors),
                "PodMonitor" if upstream => parse_upstream(v, &mut up.pod_monitors),
                "ScrapeConfig" if upstream => parse_upstream(v, &mut up.scrape_configs),
                "PrometheusRule" if upstream => parse_upstream(v, &mut up.rules),
                "Prometheus" => parse(v, &mut prometheus),
                "Namespace" => parse(v, &mut namespaces),
                "ServiceMonitor" => parse(v, &mut service_monitors),
                "PodMonitor" => parse(v, &mut pod_monitors),
                "ScrapeConfig" => parse(v, &mut scrape_configs),
                "PrometheusRule" => parse(v, &mut rules),
                "Secret" => parse(v, &mut secrets),
                "ConfigMap" => parse(v, &mut config_maps),
                other => Err(format!("unexpected kind {other:?}")),
            }
            .map_err(|e| format!("{kind}: {e}"))?;
        }
        if prometheus.is_empty() {
            return Err("a case needs a Prometheus".into());
        }
        let other_prometheuses = prometheus.split_off(1);
        let Some(prometheus) = prometheus.pop() else {
            return Err("a case needs a Prometheus".into());
        };
        Ok(Case {
            prometheus,
            other_prometheuses,
            namespaces,
            service_monitors,
            pod_monitors,
            scrape_configs,
            rules,
            upstream: up,
            secrets,
            config_maps,
        })
    }

    /// Generates the case's configuration.
    pub fn generate(&self) -> Result<Generated, Problem> {
        let store = Store::from_objects(&self.secrets, &self.config_maps);
        let inputs = Inputs {
            prometheus: &self.prometheus,
            namespaces: &self.namespaces,
            service_monitors: &self.service_monitors,
            pod_monitors: &self.pod_monitors,
            scrape_configs: &self.scrape_configs,
            rules: &self.rules,
            prometheuses: &self.other_prometheuses,
            store: &store,
        };
        generate_with(&inputs, &self.upstream.view())
    }
}

/// The case directories under `root` (those holding an `input.yaml`), sorted.
pub fn case_dirs(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path.join("input.yaml").is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}
