//! Rule files: one per PrometheusRule, and their split into ConfigMaps.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;

use super::names::{is_label_name, is_metric_name};
use super::yaml::Node;
use super::{CONFIGMAP_BUDGET, Problem, Reason, duration, promql, template};
use crate::crd::{PrometheusRule, Rule};

/// The file name of a PrometheusRule's rules, upstream style: `<namespace>-<name>-<uid>.yaml`
/// (without the `-<uid>` part when the object has none).
pub fn rule_file_name(rule: &PrometheusRule) -> String {
    rule_file_name_in(super::Group::Steward, rule)
}

/// [`rule_file_name`] of a rule read from `group`: upstream's get a
/// `monitoring.coreos.com_` prefix (`_` never appears in a Kubernetes name), so rules of both
/// groups with the same namespace and name never share a file.
pub fn rule_file_name_in(group: super::Group, rule: &PrometheusRule) -> String {
    let prefix = match group {
        super::Group::Steward => String::new(),
        super::Group::Upstream => format!("{}_", group.as_str()),
    };
    format!("{prefix}{}", steward_rule_file_name(rule))
}

fn steward_rule_file_name(rule: &PrometheusRule) -> String {
    let ns = rule.namespace().unwrap_or_default();
    match rule.uid() {
        Some(uid) if !uid.is_empty() => format!("{ns}-{}-{uid}.yaml", rule.name_any()),
        _ => format!("{ns}-{}.yaml", rule.name_any()),
    }
}

/// Validates `rule` and renders its rule file. With `enforced_label`, every rule gets that label
/// set to the object's namespace and every selector in its expression is restricted to it.
pub(crate) fn rule_file(rule: &PrometheusRule, enforced_label: Option<&str>) -> Result<String, Problem> {
    let ns = rule.namespace().unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut groups = Vec::with_capacity(rule.spec.groups.len());
    for (gi, group) in rule.spec.groups.iter().enumerate() {
        let field = format!("groups[{gi}]");
        if group.name.is_empty() {
            return Err(Problem::new(
                Reason::InvalidRule,
                format!("{field}.name must not be empty"),
            ));
        }
        if !seen.insert(group.name.as_str()) {
            return Err(Problem::new(
                Reason::InvalidRule,
                format!("{field}: group name {:?} is used twice", group.name),
            ));
        }
        let mut g = Node::map().with("name", group.name.clone());
        if let Some(interval) = group.interval.as_deref().filter(|s| !s.is_empty()) {
            duration_ok(interval, &format!("{field}.interval"))?;
            g.push("interval", interval.to_string());
        }
        let rules = group
            .rules
            .iter()
            .enumerate()
            .map(|(ri, r)| one_rule(r, &format!("{field}.rules[{ri}]"), &ns, enforced_label))
            .collect::<Result<Vec<_>, _>>()?;
        g.push("rules", rules);
        groups.push(g);
    }
    Ok(Node::map().with("groups", groups).to_yaml())
}

fn duration_ok(value: &str, field: &str) -> Result<(), Problem> {
    match duration::parse(value) {
        Some(_) => Ok(()),
        None => Err(Problem::new(
            Reason::InvalidDuration,
            format!("{field}: {value:?} is not a valid duration"),
        )),
    }
}

fn one_rule(r: &Rule, field: &str, ns: &str, enforced_label: Option<&str>) -> Result<Node, Problem> {
    let invalid = |msg: String| Problem::new(Reason::InvalidRule, format!("{field}: {msg}"));
    let record = r.record.as_deref().filter(|s| !s.is_empty());
    let alert = r.alert.as_deref().filter(|s| !s.is_empty());
    let mut node = Node::map();
    match (record, alert) {
        (Some(_), Some(_)) => return Err(invalid("only one of record and alert may be set".into())),
        (None, None) => return Err(invalid("one of record and alert must be set".into())),
        (Some(name), None) => {
            if !is_metric_name(name) {
                return Err(invalid(format!("record {name:?} is not a valid metric name")));
            }
            if !r.annotations.is_empty() {
                return Err(invalid("a recording rule cannot have annotations".into()));
            }
            if r.for_.as_deref().is_some_and(|s| !s.is_empty())
                || r.keep_firing_for.as_deref().is_some_and(|s| !s.is_empty())
            {
                return Err(invalid(
                    "a recording rule cannot have for or keep_firing_for".into(),
                ));
            }
            node.push("record", name.to_string());
        }
        (None, Some(name)) => node.push("alert", name.to_string()),
    }
    let expr = promql::check(&r.expr, enforced_label.map(|l| (l, ns)))
        .map_err(|e| Problem::new(Reason::InvalidPromQL, format!("{field}.expr: {e}")))?;
    node.push("expr", expr);
    if alert.is_some() {
        for (key, value) in [("for", &r.for_), ("keep_firing_for", &r.keep_firing_for)] {
            if let Some(v) = value.as_deref().filter(|s| !s.is_empty()) {
                duration_ok(v, &format!("{field}.{key}"))?;
                node.push(key, v.to_string());
            }
        }
    }
    let mut labels = BTreeMap::new();
    for (k, v) in &r.labels {
        if !is_label_name(k) || k == "__name__" {
            return Err(Problem::new(
                Reason::InvalidLabelName,
                format!("{field}.labels: {k:?} is not a valid label name"),
            ));
        }
        if alert.is_some() {
            template::check(v)
                .map_err(|e| Problem::new(Reason::InvalidTemplate, format!("{field}.labels.{k}: {e}")))?;
        }
        labels.insert(k.clone(), v.clone());
    }
    if let Some(label) = enforced_label {
        labels.insert(label.to_string(), ns.to_string());
    }
    if !labels.is_empty() {
        node.push("labels", string_map(labels));
    }
    if !r.annotations.is_empty() {
        for (k, v) in &r.annotations {
            if !is_label_name(k) {
                return Err(Problem::new(
                    Reason::InvalidLabelName,
                    format!("{field}.annotations: {k:?} is not a valid annotation name"),
                ));
            }
            template::check(v).map_err(|e| {
                Problem::new(Reason::InvalidTemplate, format!("{field}.annotations.{k}: {e}"))
            })?;
        }
        node.push("annotations", string_map(r.annotations.clone()));
    }
    Ok(node)
}

/// A sorted string map as a YAML mapping.
pub(crate) fn string_map(map: BTreeMap<String, String>) -> Node {
    Node::Map(
        map.into_iter()
            .map(|(k, v)| (Cow::Owned(k), Node::from(v)))
            .collect(),
    )
}

/// Packs rule files into ConfigMap data maps, in file-name order, starting a new ConfigMap
/// whenever the next file would push the current one past `budget` bytes. There is always at
/// least one (possibly empty) ConfigMap, so the Prometheus pods' volumes do not change when the
/// last rule goes away.
pub(crate) fn split_into_configmaps(
    files: &BTreeMap<String, String>,
    budget: usize,
) -> Vec<BTreeMap<String, String>> {
    let mut out = vec![BTreeMap::new()];
    let mut size = 0;
    for (name, content) in files {
        let len = name.len() + content.len();
        if size > 0 && size + len > budget {
            out.push(BTreeMap::new());
            size = 0;
        }
        if let Some(last) = out.last_mut() {
            last.insert(name.clone(), content.clone());
        }
        size += len;
    }
    out
}

/// Whether one rule file is small enough to go into a ConfigMap at all.
pub(crate) fn fits(name: &str, content: &str) -> bool {
    name.len() + content.len() <= CONFIGMAP_BUDGET
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_by_budget() {
        let files: BTreeMap<String, String> =
            (0..5).map(|i| (format!("f{i}.yaml"), "x".repeat(40))).collect();
        let maps = split_into_configmaps(&files, 100);
        assert_eq!(maps.iter().map(BTreeMap::len).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert_eq!(
            split_into_configmaps(&BTreeMap::new(), 100),
            vec![BTreeMap::new()]
        );
    }
}
