//! Which monitors, scrape configs and rules a Prometheus uses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{Resource, ResourceExt};

use super::{Inputs, Problem, Reason};
use crate::crd::{PodMonitor, PrometheusRule, ScrapeConfig, ServiceMonitor};

/// The objects a Prometheus selects, each list sorted by namespace and name.
#[derive(Debug, Default)]
pub struct Selection<'a> {
    /// Selected ServiceMonitors.
    pub service_monitors: Vec<&'a ServiceMonitor>,
    /// Selected PodMonitors.
    pub pod_monitors: Vec<&'a PodMonitor>,
    /// Selected ScrapeConfigs.
    pub scrape_configs: Vec<&'a ScrapeConfig>,
    /// Selected PrometheusRules.
    pub rules: Vec<&'a PrometheusRule>,
}

/// Whether `labels` satisfy `selector`, with Kubernetes semantics: every `matchLabels` pair
/// must be present, `In` needs the label with one of the values, `NotIn` needs it absent or
/// with another value, `Exists` and `DoesNotExist` test presence. An empty selector (`{}`)
/// matches everything.
///
/// ```
/// # use std::collections::BTreeMap;
/// # use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
/// use prometheus_operator::config::selector_matches;
/// let labels = BTreeMap::from([("team".to_string(), "a".to_string())]);
/// let sel = LabelSelector {
///     match_expressions: Some(vec![LabelSelectorRequirement {
///         key: "team".into(),
///         operator: "NotIn".into(),
///         values: Some(vec!["b".into()]),
///     }]),
///     ..Default::default()
/// };
/// assert_eq!(selector_matches(&sel, &labels), Ok(true));
/// assert_eq!(selector_matches(&LabelSelector::default(), &BTreeMap::new()), Ok(true));
/// ```
///
/// An unknown operator, or values given to `Exists`/`DoesNotExist` or missing for
/// `In`/`NotIn`, is an error: the selector is invalid, not merely unmatched.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> Result<bool, String> {
    let mut matched = true;
    for (k, v) in selector.match_labels.iter().flatten() {
        matched &= labels.get(k) == Some(v);
    }
    for req in selector.match_expressions.iter().flatten() {
        let values = req.values.as_deref().unwrap_or_default();
        let value = labels.get(&req.key);
        let ok = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("operator {} on {:?} needs values", req.operator, req.key));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!(
                    "operator {} on {:?} takes no values",
                    req.operator, req.key
                ));
            }
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            other => return Err(format!("unknown operator {other:?} on {:?}", req.key)),
        };
        matched &= ok;
    }
    Ok(matched)
}

/// Picks the objects `inputs.prometheus` uses, with upstream prometheus-operator's semantics:
///
/// - a resource selector that is unset selects nothing; `{}` selects every object;
/// - a namespace selector that is unset means only the Prometheus' own namespace; `{}` means
///   every namespace; otherwise the namespaces (from `inputs.namespaces`) whose labels match.
///
/// For example, with `serviceMonitorSelector: {matchLabels: {team: a}}` and no
/// `serviceMonitorNamespaceSelector`, a Prometheus in `monitoring` uses only the ServiceMonitors
/// of `monitoring` labelled `team: a`; adding `serviceMonitorNamespaceSelector: {}` extends that
/// to every namespace. An object in a namespace missing from `inputs.namespaces` is matched as
/// if its namespace had no labels.
///
/// An invalid selector on the Prometheus is an error for the whole Prometheus.
pub fn select<'a>(inputs: &Inputs<'a>) -> Result<Selection<'a>, Problem> {
    let spec = &inputs.prometheus.spec;
    let own_ns = inputs.prometheus.namespace().unwrap_or_default();
    let ns_labels: BTreeMap<&str, BTreeMap<String, String>> = inputs
        .namespaces
        .iter()
        .map(|ns: &Namespace| {
            (
                ns.metadata.name.as_deref().unwrap_or_default(),
                ns.labels().clone(),
            )
        })
        .collect();
    let scope = Scope {
        own_ns: &own_ns,
        ns_labels: &ns_labels,
    };
    Ok(Selection {
        service_monitors: scope.pick(
            "serviceMonitor",
            inputs.service_monitors,
            spec.service_monitor_selector.as_ref(),
            spec.service_monitor_namespace_selector.as_ref(),
        )?,
        pod_monitors: scope.pick(
            "podMonitor",
            inputs.pod_monitors,
            spec.pod_monitor_selector.as_ref(),
            spec.pod_monitor_namespace_selector.as_ref(),
        )?,
        scrape_configs: scope.pick(
            "scrapeConfig",
            inputs.scrape_configs,
            spec.scrape_config_selector.as_ref(),
            spec.scrape_config_namespace_selector.as_ref(),
        )?,
        rules: scope.pick(
            "rule",
            inputs.rules,
            spec.rule_selector.as_ref(),
            spec.rule_namespace_selector.as_ref(),
        )?,
    })
}

struct Scope<'s> {
    own_ns: &'s str,
    ns_labels: &'s BTreeMap<&'s str, BTreeMap<String, String>>,
}

impl Scope<'_> {
    fn pick<'a, K>(
        &self,
        what: &str,
        objects: &'a [K],
        selector: Option<&LabelSelector>,
        ns_selector: Option<&LabelSelector>,
    ) -> Result<Vec<&'a K>, Problem>
    where
        K: Resource,
    {
        let invalid =
            |field: &str, e: String| Problem::new(Reason::InvalidSelector, format!("{what}{field}: {e}"));
        let Some(selector) = selector else {
            return Ok(Vec::new());
        };
        // Validate both selectors even when there is nothing to match them against.
        selector_matches(selector, &BTreeMap::new()).map_err(|e| invalid("Selector", e))?;
        if let Some(ns_sel) = ns_selector {
            selector_matches(ns_sel, &BTreeMap::new()).map_err(|e| invalid("NamespaceSelector", e))?;
        }
        let empty = BTreeMap::new();
        let mut picked = Vec::new();
        for obj in objects {
            let ns = obj.meta().namespace.as_deref().unwrap_or_default();
            let ns_ok = match ns_selector {
                None => ns == self.own_ns,
                Some(sel) => selector_matches(sel, self.ns_labels.get(ns).unwrap_or(&empty))
                    .map_err(|e| invalid("NamespaceSelector", e))?,
            };
            let labels = obj.meta().labels.as_ref().unwrap_or(&empty);
            if ns_ok && selector_matches(selector, labels).map_err(|e| invalid("Selector", e))? {
                picked.push(obj);
            }
        }
        picked.sort_by(|a, b| {
            (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name))
        });
        Ok(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_semantics() {
        let l = labels(&[("team", "a"), ("tier", "web")]);
        assert_eq!(selector_matches(&expr("team", "In", &["a", "b"]), &l), Ok(true));
        assert_eq!(selector_matches(&expr("team", "In", &["b"]), &l), Ok(false));
        assert_eq!(selector_matches(&expr("team", "NotIn", &["b"]), &l), Ok(true));
        assert_eq!(selector_matches(&expr("missing", "NotIn", &["b"]), &l), Ok(true));
        assert_eq!(selector_matches(&expr("team", "Exists", &[]), &l), Ok(true));
        assert_eq!(
            selector_matches(&expr("team", "DoesNotExist", &[]), &l),
            Ok(false)
        );
        assert!(selector_matches(&expr("team", "Exists", &["a"]), &l).is_err());
        assert!(selector_matches(&expr("team", "In", &[]), &l).is_err());
        assert!(selector_matches(&expr("team", "Like", &["a"]), &l).is_err());
        let ml = LabelSelector {
            match_labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        };
        assert_eq!(selector_matches(&ml, &l), Ok(true));
        assert_eq!(selector_matches(&ml, &labels(&[("team", "b")])), Ok(false));
    }
}
