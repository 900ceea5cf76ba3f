//! Grafana datasources: for a Prometheus or an Alertmanager that asks for one
//! (`spec.grafanaDatasource`), a ConfigMap of Grafana provisioning YAML, labelled so that the
//! Grafana Helm chart's datasource sidecar (`sidecar.datasources`) picks it up. It is an owned
//! child: it goes with its owner, and when the datasource is turned off.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;

use crate::alertmanager::build as am_build;
use crate::config::DEFAULT_SCRAPE_INTERVAL;
use crate::config::yaml::Node;
use crate::crd::{Alertmanager, Prometheus};
use crate::resources::{self, WEB_PORT};

/// The label the Grafana Helm chart's sidecar looks for by default.
pub const DEFAULT_LABEL: &str = "grafana_datasource=1";

/// Grafana's limit on the length of a datasource uid.
const MAX_UID: usize = 40;

/// The `key=value` label every datasource ConfigMap carries (operator flag
/// `--grafana-datasource-label`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    /// Label key, e.g. `grafana_datasource`.
    pub key: String,
    /// Label value, e.g. `1`.
    pub value: String,
}

impl std::str::FromStr for Label {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(Label {
                key: k.to_string(),
                value: v.to_string(),
            }),
            _ => Err(format!("{s:?} is not key=value")),
        }
    }
}

impl Default for Label {
    fn default() -> Self {
        Label {
            key: "grafana_datasource".into(),
            value: "1".into(),
        }
    }
}

/// Name of the datasource ConfigMap: `prometheus-<name>-grafana-datasource`.
pub fn configmap_name(p: &Prometheus) -> String {
    format!("{}-grafana-datasource", resources::base_name(p))
}

/// A uid that stays the same for the same object across operator restarts and re-creations
/// (dashboards refer to datasources by uid): `<kind>-<namespace>-<name>`, or, when that is
/// longer than Grafana allows, its start and a hash of the whole.
pub fn uid(kind: &str, namespace: &str, name: &str) -> String {
    let full = format!("{kind}-{namespace}-{name}");
    if full.len() <= MAX_UID {
        return full;
    }
    // FNV-1a: stable across Rust releases, unlike the std hasher.
    let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut cut = MAX_UID - 17;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}-{hash:016x}", &full[..cut])
}

/// The datasource ConfigMap of `p`, or `None` when it has asked for none.
pub fn prometheus_datasource(p: &Prometheus, label: &Label) -> Option<ConfigMap> {
    let ds = p.spec.grafana_datasource.as_ref().filter(|d| d.enabled)?;
    let (ns, name) = (p.namespace().unwrap_or_default(), p.name_any());
    let interval = p
        .spec
        .scrape_interval
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_SCRAPE_INTERVAL.to_string());
    let base = resources::base_name(p);
    Some(configmap(
        Source {
            kind: "prometheus",
            namespace: ns.clone(),
            name: name.clone(),
            display: ds.name.clone().unwrap_or_else(|| format!("{ns}/{name}")),
            url: format!("http://{base}.{ns}.svc:{WEB_PORT}"),
            is_default: ds.is_default,
            json_data: Node::map().with("timeInterval", interval),
        },
        configmap_name(p),
        resources::labels(p, "grafana-datasource"),
        label,
    ))
}

/// The datasource ConfigMap of an Alertmanager (`alertmanager-<name>-grafana-datasource`,
/// Grafana type `alertmanager`, Prometheus' implementation), or `None` when it has asked for
/// none. Its default name says "alertmanager" so it never collides with a Prometheus of the
/// same name.
pub fn alertmanager_datasource(am: &Alertmanager, label: &Label) -> Option<ConfigMap> {
    let ds = am.spec.grafana_datasource.as_ref().filter(|d| d.enabled)?;
    let (ns, name) = (am.namespace().unwrap_or_default(), am.name_any());
    let base = am_build::base_name(am);
    Some(configmap(
        Source {
            kind: "alertmanager",
            namespace: ns.clone(),
            name: name.clone(),
            display: ds
                .name
                .clone()
                .unwrap_or_else(|| format!("{ns}/{name} alertmanager")),
            url: format!("http://{base}.{ns}.svc:{}", am_build::WEB_PORT),
            is_default: ds.is_default,
            json_data: Node::map()
                .with("implementation", "prometheus")
                .with("handleGrafanaManagedAlerts", false),
        },
        format!("{base}-grafana-datasource"),
        am_build::labels(am, "grafana-datasource"),
        label,
    ))
}

/// One datasource as Grafana provisions it.
struct Source {
    kind: &'static str,
    namespace: String,
    name: String,
    display: String,
    url: String,
    is_default: bool,
    json_data: Node,
}

fn configmap(src: Source, cm_name: String, mut labels: BTreeMap<String, String>, label: &Label) -> ConfigMap {
    let source = Node::map()
        .with("name", src.display)
        .with("type", src.kind)
        .with("uid", uid(src.kind, &src.namespace, &src.name))
        .with("access", "proxy")
        .with("url", src.url)
        .with("isDefault", src.is_default)
        .with("editable", false)
        .with("jsonData", src.json_data);
    let yaml = Node::map()
        .with("apiVersion", 1_i64)
        .with("datasources", Node::Seq(vec![source]))
        .to_yaml();
    labels.insert(label.key.clone(), label.value.clone());
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(cm_name),
            namespace: Some(src.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            format!("{}-{}-{}.yaml", src.kind, src.namespace, src.name),
            yaml,
        )])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn prometheus(spec: serde_json::Value) -> Prometheus {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1",
            "kind": "Prometheus",
            "metadata": {"name": "team", "namespace": "team-a", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn provisioning_yaml_for_the_sidecar() {
        let p = prometheus(
            serde_json::json!({"scrapeInterval": "15s", "grafanaDatasource": {"isDefault": true}}),
        );
        let cm = prometheus_datasource(&p, &Label::default()).unwrap();
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some("prometheus-team-grafana-datasource")
        );
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["grafana_datasource"], "1");
        assert_eq!(labels["app.kubernetes.io/instance"], "team");
        let data = cm.data.unwrap();
        let text = &data["prometheus-team-a-team.yaml"];
        let parsed: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "apiVersion": 1,
                "datasources": [{
                    "name": "team-a/team",
                    "type": "prometheus",
                    "uid": "prometheus-team-a-team",
                    "access": "proxy",
                    "url": "http://prometheus-team.team-a.svc:9090",
                    "isDefault": true,
                    "editable": false,
                    "jsonData": {"timeInterval": "15s"},
                }],
            })
        );
    }

    #[test]
    fn off_unless_asked_and_named_as_asked() {
        assert!(prometheus_datasource(&prometheus(serde_json::json!({})), &Label::default()).is_none());
        let off = prometheus(serde_json::json!({"grafanaDatasource": {"enabled": false}}));
        assert!(prometheus_datasource(&off, &Label::default()).is_none());
        let named = prometheus(serde_json::json!({"grafanaDatasource": {"name": "Team A"}}));
        let label: Label = "grafana/datasource=yes".parse().unwrap();
        let cm = prometheus_datasource(&named, &label).unwrap();
        assert_eq!(cm.metadata.labels.unwrap()["grafana/datasource"], "yes");
        let text = cm.data.unwrap().into_values().next().unwrap();
        let parsed: serde_json::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(parsed["datasources"][0]["name"], "Team A");
        assert_eq!(parsed["datasources"][0]["isDefault"], false);
        assert_eq!(parsed["datasources"][0]["jsonData"]["timeInterval"], "30s");
        assert!("novalue".parse::<Label>().is_err());
        assert!("=v".parse::<Label>().is_err());
    }

    #[test]
    fn alertmanager_datasource_for_the_sidecar() {
        let am: Alertmanager = serde_json::from_value(serde_json::json!({
            "apiVersion": "monitoring.steward.dev/v1alpha1",
            "kind": "Alertmanager",
            "metadata": {"name": "main", "namespace": "team-a", "uid": "u2"},
            "spec": {"grafanaDatasource": {}},
        }))
        .unwrap();
        let cm = alertmanager_datasource(&am, &Label::default()).unwrap();
        assert_eq!(
            cm.metadata.name.as_deref(),
            Some("alertmanager-main-grafana-datasource")
        );
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels["grafana_datasource"], "1");
        assert_eq!(labels["app.kubernetes.io/name"], "alertmanager");
        let data = cm.data.unwrap();
        let parsed: serde_json::Value =
            serde_yaml_ng::from_str(&data["alertmanager-team-a-main.yaml"]).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "apiVersion": 1,
                "datasources": [{
                    "name": "team-a/main alertmanager",
                    "type": "alertmanager",
                    "uid": "alertmanager-team-a-main",
                    "access": "proxy",
                    "url": "http://alertmanager-main.team-a.svc:9093",
                    "isDefault": false,
                    "editable": false,
                    "jsonData": {"implementation": "prometheus", "handleGrafanaManagedAlerts": false},
                }],
            })
        );
        let mut off = am.clone();
        off.spec.grafana_datasource = None;
        assert!(alertmanager_datasource(&off, &Label::default()).is_none());
    }

    #[test]
    fn uids_are_stable_and_fit_grafana() {
        assert_eq!(uid("prometheus", "a", "b"), "prometheus-a-b");
        let long = uid("prometheus", &"n".repeat(63), &"m".repeat(63));
        assert_eq!(long.len(), MAX_UID);
        assert_eq!(long, uid("prometheus", &"n".repeat(63), &"m".repeat(63)));
        assert_ne!(long, uid("prometheus", &"n".repeat(63), &"m".repeat(62)));
    }
}
