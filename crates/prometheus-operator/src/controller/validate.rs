//! Validate (pure): what the CRD schema cannot check of a Prometheus, and which discovery it
//! may have. A problem with the Prometheus stops the reconcile (reported in its status); a
//! monitor that would discover where this Prometheus may not is rejected alone.

use std::collections::{BTreeMap, BTreeSet};

use kube::{Resource, ResourceExt};

use super::fetch::Fetched;
use crate::config::{self, Group, Kind, Rejection};
use crate::crd::common::NamespaceSelector;
use crate::crd::{PodMonitor, Prometheus, ServiceMonitor};
use crate::discovery::{self, Policy};
use crate::resources;

/// Namespace name → labels, for the discovery checks.
type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;
/// Where each admitted monitor discovers (`None`: every namespace).
pub(super) type Wanted = BTreeMap<(Group, Kind, String, String), Option<BTreeSet<String>>>;

/// Checks what the CRD schema cannot express.
pub fn validate(obj: &Prometheus) -> Vec<String> {
    config::selector_problems(&obj.spec)
        .into_iter()
        .chain(resources::binding_name_problem(obj))
        .collect()
}

/// What passed validation: the fetched objects less the monitors refused for their
/// discovery, and where the rest discover.
#[derive(Debug)]
pub(super) struct Admitted {
    /// The fetched objects; the monitors only those admitted.
    pub fetched: Fetched,
    /// Where each admitted monitor discovers.
    pub wanted: Wanted,
    /// Monitors refused for their discovery.
    pub refused: Vec<Rejection>,
    /// Namespaces of the Alertmanager endpoints.
    pub alerting: BTreeSet<String>,
    /// Why selected Prometheus objects are left out of the federation (discovery refused).
    pub federation_refused: Vec<String>,
}

/// Validates `obj` and admits the fetched monitors. `Err` holds the problems that stop the
/// reconcile: none when the Prometheus is paused, which stops it too.
pub(super) fn admit(obj: &Prometheus, mut fetched: Fetched, policy: Policy) -> Result<Admitted, Vec<String>> {
    let problems = validate(obj);
    if !problems.is_empty() || obj.spec.paused {
        return Err(problems);
    }
    let ns_labels: NamespaceLabels = fetched
        .namespaces
        .iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect();
    let alerting = alerting_namespaces(obj, &ns_labels, policy).map_err(|p| vec![p])?;
    let prom_ns = obj.namespace().unwrap_or_default();
    let adm = Admission {
        prom_ns: &prom_ns,
        namespaces: &ns_labels,
        policy,
    };
    let mut wanted = Wanted::new();
    let mut refused = Vec::new();
    fetched.service_monitors = adm.admit(
        std::mem::take(&mut fetched.service_monitors),
        Group::Steward,
        Kind::ServiceMonitor,
        |m: &ServiceMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
    fetched.pod_monitors = adm.admit(
        std::mem::take(&mut fetched.pod_monitors),
        Group::Steward,
        Kind::PodMonitor,
        |m: &PodMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
    // Upstream monitors get exactly the same discovery checks.
    fetched.upstream.service_monitors = adm.admit(
        std::mem::take(&mut fetched.upstream.service_monitors),
        Group::Upstream,
        Kind::ServiceMonitor,
        |m: &ServiceMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
    fetched.upstream.pod_monitors = adm.admit(
        std::mem::take(&mut fetched.upstream.pod_monitors),
        Group::Upstream,
        Kind::PodMonitor,
        |m: &PodMonitor| m.spec.namespace_selector.as_ref(),
        &mut wanted,
        &mut refused,
    );
    let federation_refused = adm.admit_federated(&mut fetched.prometheuses);
    Ok(Admitted {
        fetched,
        wanted,
        refused,
        alerting,
        federation_refused,
    })
}

/// What discovery a Prometheus in `prom_ns` may have.
struct Admission<'a> {
    prom_ns: &'a str,
    namespaces: &'a NamespaceLabels,
    policy: Policy,
}

impl Admission<'_> {
    /// Keeps the federated Prometheus objects whose namespace this Prometheus may discover
    /// pods in (the monitors' rule); says why each other one is left out.
    fn admit_federated(&self, prometheuses: &mut Vec<Prometheus>) -> Vec<String> {
        let mut refused = Vec::new();
        prometheuses.retain(|p| {
            let ns = p.namespace().unwrap_or_default();
            let want = BTreeSet::from([ns.clone()]);
            let what = "spec.federation.prometheusNamespaceSelector";
            match discovery::check(self.prom_ns, Some(&want), self.namespaces, self.policy, what) {
                Ok(()) => true,
                Err(r) => {
                    refused.push(format!(
                        "Prometheus {ns}/{} is not federated: {}: {}",
                        p.name_any(),
                        r.reason.as_str(),
                        r.message
                    ));
                    false
                }
            }
        });
        refused
    }

    /// Keeps the monitors whose discovery is allowed; the others become rejections.
    fn admit<K: Resource>(
        &self,
        monitors: Vec<K>,
        group: Group,
        kind: Kind,
        selector: impl Fn(&K) -> Option<&NamespaceSelector>,
        wanted: &mut Wanted,
        refused: &mut Vec<Rejection>,
    ) -> Vec<K> {
        let mut kept = Vec::with_capacity(monitors.len());
        for m in monitors {
            let ns = m.meta().namespace.clone().unwrap_or_default();
            let name = m.meta().name.clone().unwrap_or_default();
            let sel = selector(&m);
            let what = match sel {
                Some(s) if s.any => "namespaceSelector.any",
                Some(s) if !s.match_names.is_empty() => "namespaceSelector.matchNames",
                _ => "the monitor's own namespace",
            };
            let want = discovery::monitor_namespaces(sel, &ns);
            match discovery::check(self.prom_ns, want.as_ref(), self.namespaces, self.policy, what) {
                Ok(()) => {
                    wanted.insert((group, kind, ns, name), want);
                    kept.push(m);
                }
                Err(r) => refused.push(Rejection {
                    object: config::ObjectRef {
                        group,
                        kind,
                        namespace: ns,
                        name,
                    },
                    reason: r.reason,
                    message: r.message,
                }),
            }
        }
        kept
    }
}

/// The namespaces of `p`'s Alertmanager endpoints, or why it may not discover there.
fn alerting_namespaces(
    p: &Prometheus,
    namespaces: &NamespaceLabels,
    policy: Policy,
) -> Result<BTreeSet<String>, String> {
    let own = p.namespace().unwrap_or_default();
    let mut out = BTreeSet::new();
    let ams = p
        .spec
        .alerting
        .as_ref()
        .map(|a| a.alertmanagers.as_slice())
        .unwrap_or_default();
    for (i, am) in ams.iter().enumerate() {
        let ns = am
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| own.clone());
        let want = BTreeSet::from([ns]);
        let what = format!("alerting.alertmanagers[{i}].namespace");
        discovery::check(&own, Some(&want), namespaces, policy, &what)
            .map_err(|r| format!("{}: {}", r.reason.as_str(), r.message))?;
        out.extend(want);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;

    use super::*;
    use crate::controller::tests::prom;

    fn namespace(name: &str, labels: &[(&str, &str)]) -> Namespace {
        let mut n = Namespace::default();
        n.metadata.name = Some(name.into());
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n
    }

    fn other(ns: &str) -> Prometheus {
        let mut p = prom(serde_json::json!({}));
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some("team".into());
        p
    }

    #[test]
    fn federation_follows_the_discovery_rules_of_monitors() {
        let global = prom(serde_json::json!({"federation": {
            "prometheusSelector": {}, "prometheusNamespaceSelector": {}, "match": ["up"]
        }}));
        let fetched = || Fetched {
            namespaces: vec![
                namespace("mon", &[]),
                namespace("open", &[("discovery-from.monitoring.steward.dev/mon", "true")]),
                namespace("closed", &[]),
            ],
            prometheuses: vec![other("mon"), other("open"), other("closed")],
            ..Fetched::default()
        };
        let admitted = admit(&global, fetched(), Policy::default()).unwrap();
        let kept: Vec<String> = admitted
            .fetched
            .prometheuses
            .iter()
            .filter_map(|p| p.namespace())
            .collect();
        assert_eq!(kept, ["mon", "open"]);
        assert_eq!(admitted.federation_refused.len(), 1);
        let why = &admitted.federation_refused[0];
        assert!(why.contains("Prometheus closed/team is not federated"), "{why}");
        assert!(why.contains("DiscoveryNotAllowed"), "{why}");
        // The admin's flag opens every existing namespace.
        let trusted = Policy {
            cross_namespace: true,
            ..Policy::default()
        };
        let admitted = admit(&global, fetched(), trusted).unwrap();
        assert_eq!(admitted.fetched.prometheuses.len(), 3);
        assert!(admitted.federation_refused.is_empty());
    }

    #[test]
    fn federation_selectors_are_validated() {
        let bad = prom(serde_json::json!({"federation": {
            "prometheusSelector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]},
            "match": ["up"]
        }}));
        let problems = validate(&bad);
        assert!(
            problems
                .iter()
                .any(|p| p.contains("spec.federation.prometheusSelector")),
            "{problems:?}"
        );
    }
}
