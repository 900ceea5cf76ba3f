//! The upstream prometheus-operator API group, `monitoring.coreos.com`, served from our own
//! types: `crdgen --compat` prints these CRDs for clusters that have none, so Helm charts with
//! `serviceMonitor.enabled: true` install unchanged, and the controller reads objects of that
//! group into the same Rust types (see `config::Group`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{GROUP, PodMonitor, PrometheusRule, ScrapeConfig, ServiceMonitor};

/// API group of upstream prometheus-operator's resources.
pub const UPSTREAM_GROUP: &str = "monitoring.coreos.com";

/// One upstream kind we read: its kind, plural, short name and API version (upstream's names,
/// from prometheus-operator's `example/prometheus-operator-crd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamKind {
    /// Kind, e.g. `ServiceMonitor`.
    pub kind: &'static str,
    /// Plural resource name, e.g. `servicemonitors`.
    pub plural: &'static str,
    /// Upstream's short name, e.g. `smon`.
    pub short_name: &'static str,
    /// Upstream's served version.
    pub version: &'static str,
}

impl UpstreamKind {
    /// The CRD's name, e.g. `servicemonitors.monitoring.coreos.com`.
    pub fn crd_name(&self) -> String {
        format!("{}.{UPSTREAM_GROUP}", self.plural)
    }
}

/// The upstream kinds the operator reads, in crdgen's order.
pub const UPSTREAM_KINDS: [UpstreamKind; 4] = [
    UpstreamKind {
        kind: "ServiceMonitor",
        plural: "servicemonitors",
        short_name: "smon",
        version: "v1",
    },
    UpstreamKind {
        kind: "PodMonitor",
        plural: "podmonitors",
        short_name: "pmon",
        version: "v1",
    },
    UpstreamKind {
        kind: "PrometheusRule",
        plural: "prometheusrules",
        short_name: "promrule",
        version: "v1",
    },
    UpstreamKind {
        kind: "ScrapeConfig",
        plural: "scrapeconfigs",
        short_name: "scfg",
        version: "v1alpha1",
    },
];

/// The `monitoring.coreos.com` CRDs with our schemas: only the group, names, categories and
/// version name differ from [`crate::crds`]. The `Accepted` printer column is left out because
/// we never write status into this group's objects (another operator may own them).
pub fn compat_crds() -> Vec<CustomResourceDefinition> {
    [
        ServiceMonitor::crd(),
        PodMonitor::crd(),
        PrometheusRule::crd(),
        ScrapeConfig::crd(),
    ]
    .into_iter()
    .zip(UPSTREAM_KINDS)
    .map(|(crd, upstream)| to_upstream(crd, &upstream))
    .collect()
}

fn to_upstream(mut crd: CustomResourceDefinition, upstream: &UpstreamKind) -> CustomResourceDefinition {
    debug_assert_eq!(crd.spec.group, GROUP);
    debug_assert_eq!(crd.spec.names.kind, upstream.kind);
    crd.metadata.name = Some(upstream.crd_name());
    crd.spec.group = UPSTREAM_GROUP.to_string();
    crd.spec.names.plural = upstream.plural.to_string();
    crd.spec.names.short_names = Some(vec![upstream.short_name.to_string()]);
    crd.spec.names.categories = Some(vec!["prometheus-operator".to_string()]);
    for version in &mut crd.spec.versions {
        version.name = upstream.version.to_string();
        if let Some(columns) = &mut version.additional_printer_columns {
            columns.retain(|c| c.name != "Accepted");
        }
    }
    crd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_group_and_names_differ() {
        let ours = [
            ServiceMonitor::crd(),
            PodMonitor::crd(),
            PrometheusRule::crd(),
            ScrapeConfig::crd(),
        ];
        for (ours, theirs) in ours.iter().zip(compat_crds()) {
            let kind = &ours.spec.names.kind;
            assert_eq!(theirs.spec.group, UPSTREAM_GROUP);
            assert_eq!(theirs.spec.names.kind, *kind);
            assert_eq!(theirs.spec.names.plural, ours.spec.names.plural);
            assert_eq!(theirs.spec.scope, ours.spec.scope);
            assert_eq!(theirs.spec.versions.len(), 1);
            let (a, b) = (&ours.spec.versions[0], &theirs.spec.versions[0]);
            assert_eq!(a.schema, b.schema, "{kind}: schema");
            assert_eq!(a.subresources, b.subresources, "{kind}: subresources");
        }
    }
}
