//! Which monitors, scrape configs and rules a Prometheus uses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::{Resource, ResourceExt};

use super::{Inputs, Kind, Problem, Reason};
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, PrometheusSpec, ScrapeConfig, ServiceMonitor};

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
        let ok = match (req.operator.as_str(), bad_requirement(req)) {
            (op, Some(BadRequirement::NeedsValues)) => {
                return Err(format!("operator {op} on {:?} needs values", req.key));
            }
            (op, Some(BadRequirement::TakesNoValues)) => {
                return Err(format!("operator {op} on {:?} takes no values", req.key));
            }
            (op, Some(BadRequirement::UnknownOperator)) => {
                return Err(format!("unknown operator {op:?} on {:?}", req.key));
            }
            ("In", None) => value.is_some_and(|v| values.contains(v)),
            ("NotIn", None) => value.is_none_or(|v| !values.contains(v)),
            ("Exists", None) => value.is_some(),
            (_, None) => value.is_none(),
        };
        matched &= ok;
    }
    Ok(matched)
}

const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// What makes one requirement of a selector invalid.
enum BadRequirement {
    NeedsValues,
    TakesNoValues,
    UnknownOperator,
}

fn bad_requirement(req: &LabelSelectorRequirement) -> Option<BadRequirement> {
    let has_values = !req.values.as_deref().unwrap_or_default().is_empty();
    match req.operator.as_str() {
        "In" | "NotIn" if !has_values => Some(BadRequirement::NeedsValues),
        "Exists" | "DoesNotExist" if has_values => Some(BadRequirement::TakesNoValues),
        op if !OPERATORS.contains(&op) => Some(BadRequirement::UnknownOperator),
        _ => None,
    }
}

/// Every problem of one label selector, prefixed by its field path (where
/// [`selector_matches`] stops at the first).
pub fn validate_selector(field: &str, selector: &LabelSelector) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, req) in selector.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let op = &req.operator;
        match bad_requirement(req) {
            Some(BadRequirement::NeedsValues) => {
                problems.push(format!("{path}: operator {op} needs at least one value"))
            }
            Some(BadRequirement::TakesNoValues) => {
                problems.push(format!("{path}: operator {op} takes no values"))
            }
            Some(BadRequirement::UnknownOperator) => problems.push(format!(
                "{path}: unknown operator {op:?}, expected one of {}",
                OPERATORS.join(", ")
            )),
            None => {}
        }
    }
    problems
}

/// The selectors of `spec` for objects of `kind`.
#[derive(Clone, Copy, Debug)]
pub struct Selectors<'a> {
    /// Field name stem: `serviceMonitor` for `serviceMonitorSelector` and
    /// `serviceMonitorNamespaceSelector`.
    pub field: &'static str,
    /// Which objects (unset: none).
    pub objects: Option<&'a LabelSelector>,
    /// In which namespaces (unset: the Prometheus' own).
    pub namespaces: Option<&'a LabelSelector>,
}

/// The selectors `spec` has for `kind`.
pub fn selectors(spec: &PrometheusSpec, kind: Kind) -> Selectors<'_> {
    let (field, objects, namespaces) = match kind {
        Kind::ServiceMonitor => (
            "serviceMonitor",
            &spec.service_monitor_selector,
            &spec.service_monitor_namespace_selector,
        ),
        Kind::PodMonitor => (
            "podMonitor",
            &spec.pod_monitor_selector,
            &spec.pod_monitor_namespace_selector,
        ),
        Kind::ScrapeConfig => (
            "scrapeConfig",
            &spec.scrape_config_selector,
            &spec.scrape_config_namespace_selector,
        ),
        Kind::PrometheusRule => ("rule", &spec.rule_selector, &spec.rule_namespace_selector),
    };
    Selectors {
        field,
        objects: objects.as_ref(),
        namespaces: namespaces.as_ref(),
    }
}

/// Every problem of `spec`'s selectors, with field paths (`spec.ruleSelector.matchExpressions[0]: ...`).
pub fn selector_problems(spec: &PrometheusSpec) -> Vec<String> {
    let mut problems = Vec::new();
    for kind in [
        Kind::ServiceMonitor,
        Kind::PodMonitor,
        Kind::PrometheusRule,
        Kind::ScrapeConfig,
    ] {
        let s = selectors(spec, kind);
        for (suffix, sel) in [("Selector", s.objects), ("NamespaceSelector", s.namespaces)] {
            if let Some(sel) = sel {
                problems.extend(validate_selector(&format!("spec.{}{suffix}", s.field), sel));
            }
        }
    }
    if let Some(fed) = &spec.federation {
        problems.extend(validate_selector(
            "spec.federation.prometheusSelector",
            &fed.prometheus_selector,
        ));
        if let Some(sel) = &fed.prometheus_namespace_selector {
            problems.extend(validate_selector(
                "spec.federation.prometheusNamespaceSelector",
                sel,
            ));
        }
    }
    problems
}

/// Whether `p` selects an object of `kind` in `namespace` with `labels`; `namespace_labels`
/// are the labels of that namespace (`None`: unknown, matched as no labels). The one
/// selection rule: [`select`] and the operator's watch mapping both use it. An invalid
/// selector selects nothing.
pub fn selects(
    p: &Prometheus,
    kind: Kind,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let s = selectors(&p.spec, kind);
    let Some(objects) = s.objects else {
        return false;
    };
    let in_scope = match s.namespaces {
        None => p.namespace().as_deref() == Some(namespace),
        Some(ns_sel) => {
            let empty = BTreeMap::new();
            selector_matches(ns_sel, namespace_labels.unwrap_or(&empty)).unwrap_or(false)
        }
    };
    in_scope && selector_matches(objects, labels).unwrap_or(false)
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
    let ns_labels: BTreeMap<&str, &BTreeMap<String, String>> = inputs
        .namespaces
        .iter()
        .map(|ns: &Namespace| (ns.metadata.name.as_deref().unwrap_or_default(), ns.labels()))
        .collect();
    let p = inputs.prometheus;
    Ok(Selection {
        service_monitors: pick(p, &ns_labels, Kind::ServiceMonitor, inputs.service_monitors)?,
        pod_monitors: pick(p, &ns_labels, Kind::PodMonitor, inputs.pod_monitors)?,
        scrape_configs: pick(p, &ns_labels, Kind::ScrapeConfig, inputs.scrape_configs)?,
        rules: pick(p, &ns_labels, Kind::PrometheusRule, inputs.rules)?,
    })
}

/// The objects of `kind` that `p` selects, sorted by namespace and name; an error when one of
/// its selectors for `kind` is invalid.
fn pick<'a, K: Resource>(
    p: &Prometheus,
    ns_labels: &BTreeMap<&str, &BTreeMap<String, String>>,
    kind: Kind,
    objects: &'a [K],
) -> Result<Vec<&'a K>, Problem> {
    let s = selectors(&p.spec, kind);
    let Some(objects_sel) = s.objects else {
        return Ok(Vec::new());
    };
    // Validate both selectors even when there is nothing to match them against; past this
    // point `selects` cannot meet an invalid selector.
    let invalid =
        |field: &str, e: String| Problem::new(Reason::InvalidSelector, format!("{}{field}: {e}", s.field));
    selector_matches(objects_sel, &BTreeMap::new()).map_err(|e| invalid("Selector", e))?;
    if let Some(ns_sel) = s.namespaces {
        selector_matches(ns_sel, &BTreeMap::new()).map_err(|e| invalid("NamespaceSelector", e))?;
    }
    let empty = BTreeMap::new();
    let mut picked: Vec<&K> = objects
        .iter()
        .filter(|obj| {
            let ns = obj.meta().namespace.as_deref().unwrap_or_default();
            let labels = obj.meta().labels.as_ref().unwrap_or(&empty);
            selects(p, kind, ns, labels, ns_labels.get(ns).copied())
        })
        .collect();
    picked.sort_by(|a, b| (&a.meta().namespace, &a.meta().name).cmp(&(&b.meta().namespace, &b.meta().name)));
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn req(op: &str, values: Option<Vec<&str>>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: "team".into(),
            operator: op.into(),
            values: values.map(|v| v.into_iter().map(String::from).collect()),
        }
    }

    #[test]
    fn selector_rules() {
        let ok = LabelSelector {
            match_expressions: Some(vec![req("In", Some(vec!["a"])), req("Exists", None)]),
            match_labels: None,
        };
        assert!(validate_selector("s", &ok).is_empty());
        let bad = LabelSelector {
            match_expressions: Some(vec![
                req("In", None),
                req("Exists", Some(vec!["x"])),
                req("Like", None),
            ]),
            match_labels: None,
        };
        let p = validate_selector("s", &bad);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[2].contains("unknown operator \"Like\""));
    }

    #[test]
    fn selection_for_watch_mapping() {
        let spec: crate::crd::PrometheusSpec = serde_json::from_value(serde_json::json!({
            "serviceMonitorSelector": {"matchLabels": {"team": "a"}},
            "ruleSelector": {},
            "ruleNamespaceSelector": {"matchLabels": {"tier": "x"}}
        }))
        .unwrap();
        let mut p = Prometheus::new("team-a", spec);
        p.metadata.namespace = Some("mon".into());
        let l = |k: &str, v: &str| labels(&[(k, v)]);
        assert!(selects(&p, Kind::ServiceMonitor, "mon", &l("team", "a"), None));
        assert!(
            !selects(&p, Kind::ServiceMonitor, "other", &l("team", "a"), None),
            "nil namespace selector: own only"
        );
        assert!(!selects(&p, Kind::ServiceMonitor, "mon", &l("team", "b"), None));
        assert!(
            !selects(&p, Kind::PodMonitor, "mon", &l("team", "a"), None),
            "nil selector selects nothing"
        );
        assert!(selects(
            &p,
            Kind::PrometheusRule,
            "x1",
            &BTreeMap::new(),
            Some(&l("tier", "x"))
        ));
        assert!(!selects(&p, Kind::PrometheusRule, "x1", &BTreeMap::new(), None));
    }
}
