//! Who may discover targets where (pure).
//!
//! A Prometheus reads Services, Endpoints, EndpointSlices and Pods through its ServiceAccount
//! in the namespaces its monitors (and its Alertmanager endpoints) look in. The operator
//! grants that read by binding one fixed ClusterRole in each such namespace, and only where
//! the namespace agrees:
//!
//! - the Prometheus' own namespace: always (whoever creates the Prometheus can read there);
//! - another namespace: only when it carries the label
//!   `discovery-from.monitoring.steward.dev/<prometheus namespace>: "true"`, or when the
//!   operator runs with `--allow-cross-namespace-discovery` (clusters whose tenants trust each
//!   other);
//! - every namespace (`namespaceSelector.any`): only with `--allow-cluster-wide-discovery`.
//!
//! A monitor asking for more is rejected on its own (`Accepted=False`, reason
//! `DiscoveryNotAllowed` or `NamespaceNotFound`); the rest of the stack keeps working.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::Reason;
use crate::crd::common::NamespaceSelector;

/// Prefix of the namespace label that lets Prometheus objects of another namespace discover
/// targets here; the label's name part is that namespace.
pub const ALLOW_LABEL_PREFIX: &str = "discovery-from.monitoring.steward.dev/";

/// The label a namespace carries (with value `"true"`) to let Prometheus objects of
/// `prometheus_namespace` discover targets in it. Namespace names are valid label name parts
/// (at most 63 characters of `[a-z0-9-]`), so every namespace has one.
pub fn allow_label(prometheus_namespace: &str) -> String {
    format!("{ALLOW_LABEL_PREFIX}{prometheus_namespace}")
}

/// What the cluster admin allows, from the operator's flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `--allow-cross-namespace-discovery`: any existing namespace, without its opt-in label.
    pub cross_namespace: bool,
    /// `--allow-cluster-wide-discovery`: `namespaceSelector.any` (a ClusterRoleBinding).
    pub cluster_wide: bool,
}

/// Where a Prometheus' service discovery reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Every namespace (a ClusterRoleBinding).
    pub cluster_wide: bool,
    /// These namespaces (a RoleBinding in each).
    pub namespaces: BTreeSet<String>,
}

/// Why discovery was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `DiscoveryNotAllowed` or `NamespaceNotFound`.
    pub reason: Reason,
    /// What is refused and what to ask the cluster admin for.
    pub message: String,
}

/// The namespaces a monitor in `monitor_namespace` discovers targets in; `None` for every
/// namespace.
pub fn monitor_namespaces(
    sel: Option<&NamespaceSelector>,
    monitor_namespace: &str,
) -> Option<BTreeSet<String>> {
    match sel {
        Some(s) if s.any => None,
        Some(s) if !s.match_names.is_empty() => Some(s.match_names.iter().cloned().collect()),
        _ => Some(BTreeSet::from([monitor_namespace.to_string()])),
    }
}

/// Whether a Prometheus in `prometheus_namespace` may discover in `wanted` (`None`: every
/// namespace). `namespaces` holds every existing namespace with its labels. `what` names the
/// asking field in messages, e.g. `namespaceSelector.matchNames`.
pub fn check(
    prometheus_namespace: &str,
    wanted: Option<&BTreeSet<String>>,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
    policy: Policy,
    what: &str,
) -> Result<(), Refusal> {
    let Some(wanted) = wanted else {
        if policy.cluster_wide {
            return Ok(());
        }
        return Err(Refusal {
            reason: Reason::DiscoveryNotAllowed,
            message: format!(
                "{what} asks for every namespace, and this operator does not grant cluster-wide \
                 discovery: list the namespaces in namespaceSelector.matchNames instead, or ask the \
                 cluster admin to run the operator with --allow-cluster-wide-discovery"
            ),
        });
    };
    let label = allow_label(prometheus_namespace);
    let mut missing = Vec::new();
    let mut closed = Vec::new();
    for ns in wanted.iter().filter(|ns| ns.as_str() != prometheus_namespace) {
        match namespaces.get(ns) {
            None => missing.push(ns.as_str()),
            Some(_) if policy.cross_namespace => {}
            Some(labels) if labels.get(&label).map(String::as_str) == Some("true") => {}
            Some(_) => closed.push(ns.as_str()),
        }
    }
    if !missing.is_empty() {
        return Err(Refusal {
            reason: Reason::NamespaceNotFound,
            message: format!("{what}: namespace {} does not exist", missing.join(", ")),
        });
    }
    if !closed.is_empty() {
        return Err(Refusal {
            reason: Reason::DiscoveryNotAllowed,
            message: format!(
                "{what}: namespace {} does not allow discovery from Prometheus objects in {prometheus_namespace}; \
                 ask its owner or the cluster admin to label it {label}=true",
                closed.join(", "),
            ),
        });
    }
    Ok(())
}

impl Scope {
    /// Adds what a check allowed (`None`: every namespace).
    pub fn add(&mut self, wanted: Option<BTreeSet<String>>) {
        match wanted {
            None => self.cluster_wide = true,
            Some(nss) => self.namespaces.extend(nss),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nss(list: &[(&str, &[(&str, &str)])]) -> BTreeMap<String, BTreeMap<String, String>> {
        list.iter()
            .map(|(n, l)| {
                (
                    n.to_string(),
                    l.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                )
            })
            .collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn own_namespace_always_others_only_with_their_label() {
        let label = allow_label("team-a");
        assert_eq!(label, "discovery-from.monitoring.steward.dev/team-a");
        let all = nss(&[
            ("team-a", &[]),
            ("apps", &[(label.as_str(), "true")]),
            ("kube-system", &[]),
            (
                "other",
                &[("discovery-from.monitoring.steward.dev/team-b", "true")],
            ),
        ]);
        let p = Policy::default();
        assert!(check("team-a", Some(&set(&["team-a"])), &all, p, "m").is_ok());
        assert!(check("team-a", Some(&set(&["team-a", "apps"])), &all, p, "m").is_ok());
        let r = check("team-a", Some(&set(&["apps", "kube-system"])), &all, p, "m").unwrap_err();
        assert_eq!(r.reason, Reason::DiscoveryNotAllowed);
        assert!(
            r.message.contains("namespace kube-system does not allow"),
            "{}",
            r.message
        );
        assert!(
            r.message
                .contains("label it discovery-from.monitoring.steward.dev/team-a=true"),
            "{}",
            r.message
        );
        // A label naming another namespace does not count.
        assert!(check("team-a", Some(&set(&["other"])), &all, p, "m").is_err());
        // The admin's flag opens every existing namespace, never a missing one.
        let trusted = Policy {
            cross_namespace: true,
            ..Policy::default()
        };
        assert!(check("team-a", Some(&set(&["kube-system"])), &all, trusted, "m").is_ok());
        let r = check("team-a", Some(&set(&["gone"])), &all, trusted, "m").unwrap_err();
        assert_eq!(r.reason, Reason::NamespaceNotFound);
        assert!(r.message.contains("namespace gone does not exist"));
    }

    #[test]
    fn every_namespace_only_with_the_cluster_wide_flag() {
        let all = nss(&[("team-a", &[])]);
        let r = check("team-a", None, &all, Policy::default(), "namespaceSelector.any").unwrap_err();
        assert_eq!(r.reason, Reason::DiscoveryNotAllowed);
        assert!(
            r.message.contains("--allow-cluster-wide-discovery"),
            "{}",
            r.message
        );
        // The cross-namespace flag alone is not enough.
        let trusted = Policy {
            cross_namespace: true,
            cluster_wide: false,
        };
        assert!(check("team-a", None, &all, trusted, "m").is_err());
        let wide = Policy {
            cross_namespace: false,
            cluster_wide: true,
        };
        assert!(check("team-a", None, &all, wide, "m").is_ok());
    }

    #[test]
    fn monitor_scope() {
        let any = NamespaceSelector {
            any: true,
            match_names: vec!["x".into()],
        };
        assert_eq!(monitor_namespaces(Some(&any), "m"), None);
        let names = NamespaceSelector {
            any: false,
            match_names: vec!["x".into(), "y".into()],
        };
        assert_eq!(monitor_namespaces(Some(&names), "m"), Some(set(&["x", "y"])));
        assert_eq!(monitor_namespaces(None, "m"), Some(set(&["m"])));
        let mut s = Scope::default();
        s.add(Some(set(&["a"])));
        s.add(None);
        assert!(s.cluster_wide);
        assert_eq!(s.namespaces, set(&["a"]));
    }
}
