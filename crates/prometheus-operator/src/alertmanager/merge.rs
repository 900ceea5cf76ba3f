//! Merging the selected AlertmanagerConfig objects into an Alertmanager's checked base
//! configuration, pure. Each object is judged on its own, as upstream's `OnNamespace`
//! strategy does: its top route gets a `namespace="<ns>"` matcher and `continue: true` and goes
//! first under the root route, its inhibit rules get the same matcher on both sides, and every
//! receiver and time interval name becomes `<ns>/<object>/<name>`. An object that fails its
//! check, or would make the merged configuration fail, is left out with the reason; the base
//! and the other objects are used as if it did not exist.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::SecretKeySelector;
use kube::ResourceExt;
use serde_json::{Map, Value};

use super::config::{self, check, check_matchers, check_route, list};
use crate::config::selector_matches;
use crate::crd::{Alertmanager, AlertmanagerConfigSpec};

/// Whether `am` selects an AlertmanagerConfig of `namespace` labelled `labels`, with
/// upstream's semantics: no `alertmanagerConfigSelector` selects nothing; no
/// `alertmanagerConfigNamespaceSelector` means the Alertmanager's own namespace only.
/// `namespace_labels` are the labels of `namespace` (none when unknown). An invalid selector
/// selects nothing.
pub fn selects(
    am: &Alertmanager,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    namespace_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    let Some(objects) = &am.spec.alertmanager_config_selector else {
        return false;
    };
    let in_scope = match &am.spec.alertmanager_config_namespace_selector {
        None => am.namespace().as_deref() == Some(namespace),
        Some(sel) => {
            let empty = BTreeMap::new();
            selector_matches(sel, namespace_labels.unwrap_or(&empty)).unwrap_or(false)
        }
    };
    in_scope && selector_matches(objects, labels).unwrap_or(false)
}

/// One selected AlertmanagerConfig.
#[derive(Clone, Copy, Debug)]
pub struct Team<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a AlertmanagerConfigSpec,
}

/// An AlertmanagerConfig left out of the merged configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Every problem found, each with its place in the object's spec.
    pub problems: Vec<String>,
}

/// The merged configuration and the verdict on each object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Merged {
    /// alertmanager.yaml with every accepted object in it; it passed `config::check`.
    pub yaml: String,
    /// `(namespace, name)` of each object merged.
    pub accepted: Vec<(String, String)>,
    /// The objects left out.
    pub rejected: Vec<Rejected>,
}

/// `<ns>/<object>/<name>`: a name of one object's tree in the merged configuration.
pub fn prefixed(ns: &str, object: &str, name: &str) -> String {
    format!("{ns}/{object}/{name}")
}

/// The matcher that keeps a team's tree to alerts of its namespace.
pub fn namespace_matcher(ns: &str) -> String {
    format!("namespace=\"{ns}\"")
}

/// Merges `teams` into `base` (a checked alertmanager.yaml) in the order given. `secret`
/// answers the value of a Secret key of a namespace, or why it has none. `Err` only when the
/// base itself does not pass the check.
pub fn merge(
    base: &str,
    teams: &[Team<'_>],
    secret: &dyn Fn(&str, &SecretKeySelector) -> Result<String, String>,
) -> Result<Merged, Vec<String>> {
    check(base)?;
    let mut doc: Map<String, Value> = match serde_yaml_ng::from_str(base) {
        Ok(Value::Object(m)) => m,
        _ => return Err(vec!["the configuration is not a YAML mapping".into()]),
    };
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    // Team routes go first under the root, in the order given: collected, then prepended.
    let base_routes = doc
        .get("route")
        .and_then(|r| r.get("routes"))
        .cloned()
        .map(|r| list(Some(&r)))
        .unwrap_or_default();
    let mut team_routes: Vec<Value> = Vec::new();
    for team in teams {
        let reject = |problems: Vec<String>| Rejected {
            namespace: team.namespace.to_string(),
            name: team.name.to_string(),
            problems,
        };
        let parts = match render_team(team, secret) {
            Ok(p) => p,
            Err(problems) => {
                rejected.push(reject(problems));
                continue;
            }
        };
        let mut candidate = doc.clone();
        let mut routes = team_routes.clone();
        routes.extend(parts.route.clone());
        put_routes(
            &mut candidate,
            routes.iter().chain(&base_routes).cloned().collect(),
        );
        append(&mut candidate, "receivers", parts.receivers);
        append(&mut candidate, "inhibit_rules", parts.inhibit_rules);
        append(&mut candidate, "time_intervals", parts.time_intervals);
        let yaml = to_yaml(&candidate)?;
        match check(&yaml) {
            Ok(()) => {
                doc = candidate;
                team_routes = routes;
                accepted.push((team.namespace.to_string(), team.name.to_string()));
            }
            Err(problems) => rejected.push(reject(
                problems
                    .into_iter()
                    .map(|p| format!("the merged configuration would not pass its check: {p}"))
                    .collect(),
            )),
        }
    }
    Ok(Merged {
        yaml: to_yaml(&doc)?,
        accepted,
        rejected,
    })
}

fn to_yaml(doc: &Map<String, Value>) -> Result<String, Vec<String>> {
    serde_yaml_ng::to_string(&Value::Object(doc.clone())).map_err(|e| vec![e.to_string()])
}

fn put_routes(doc: &mut Map<String, Value>, routes: Vec<Value>) {
    if let Some(Value::Object(root)) = doc.get_mut("route") {
        if routes.is_empty() {
            root.remove("routes");
        } else {
            root.insert("routes".into(), Value::Array(routes));
        }
    }
}

fn append(doc: &mut Map<String, Value>, key: &str, items: Vec<Value>) {
    if items.is_empty() {
        return;
    }
    let mut all = list(doc.get(key));
    all.extend(items);
    doc.insert(key.into(), Value::Array(all));
}

/// One object's contribution, enforced to its namespace and renamed.
struct Parts {
    route: Option<Value>,
    receivers: Vec<Value>,
    inhibit_rules: Vec<Value>,
    time_intervals: Vec<Value>,
}

/// Checks one object on its own (with its own names, so that problems read as in its spec),
/// then renders it enforced and renamed.
fn render_team(
    team: &Team<'_>,
    secret: &dyn Fn(&str, &SecretKeySelector) -> Result<String, String>,
) -> Result<Parts, Vec<String>> {
    let spec = team.spec;
    let ns = team.namespace;
    let mut problems = Vec::new();
    let lookup = |sel: &SecretKeySelector| secret(ns, sel);
    let mut receiver_names = BTreeSet::new();
    let mut receivers = Vec::new();
    for (i, r) in spec.receivers.iter().enumerate() {
        let at = format!("receivers[{i}]");
        if !receiver_names.insert(r.name.clone()) {
            problems.push(format!("{at}: receiver \"{}\" is defined more than once", r.name));
        }
        receivers.push(config::receiver_value(r, &at, &lookup, &mut problems));
    }
    let mut interval_names = BTreeSet::new();
    for (i, t) in spec.mute_time_intervals.iter().enumerate() {
        let at = format!("muteTimeIntervals[{i}]");
        if !interval_names.insert(t.name.clone()) {
            problems.push(format!(
                "{at}: time interval \"{}\" is defined more than once",
                t.name
            ));
        }
        problems.extend(super::config::interval_problems(t, &at));
    }
    let route = spec.route.as_ref().map(|r| {
        if r.receiver.as_deref().is_none_or(str::is_empty) {
            problems.push("route: the top route needs a receiver of this object".into());
        }
        let v = config::route_value(r, "route", &mut problems);
        if let Value::Object(m) = &v {
            let mut found = Vec::new();
            check_route(m, "route", &receiver_names, &interval_names, &mut found);
            problems.extend(found.iter().map(|p| config::spec_names(p)));
        }
        v
    });
    let mut inhibit_rules = Vec::new();
    for (i, rule) in spec.inhibit_rules.iter().enumerate() {
        let v = config::inhibit_value(rule);
        let mut found = Vec::new();
        for key in ["source_matchers", "target_matchers"] {
            check_matchers(v.get(key), &format!("inhibit_rules[{i}].{key}"), &mut found);
        }
        problems.extend(found.iter().map(|p| config::spec_names(p)));
        inhibit_rules.push(v);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let rename = |name: &str| prefixed(ns, team.name, name);
    let route = route.map(|mut r| {
        rename_route(&mut r, &rename);
        if let Value::Object(m) = &mut r {
            let mut matchers = vec![Value::from(namespace_matcher(ns))];
            matchers.extend(list(m.get("matchers")));
            m.insert("matchers".into(), Value::Array(matchers));
            m.insert("continue".into(), Value::Bool(true));
        }
        r
    });
    for r in &mut receivers {
        rename_key(r, "name", &rename);
    }
    for rule in &mut inhibit_rules {
        if let Value::Object(m) = rule {
            for key in ["source_matchers", "target_matchers"] {
                let mut matchers = vec![Value::from(namespace_matcher(ns))];
                matchers.extend(list(m.get(key)));
                m.insert(key.into(), Value::Array(matchers));
            }
        }
    }
    let time_intervals = spec
        .mute_time_intervals
        .iter()
        .map(|t| {
            let mut v = config::time_interval_value(t);
            rename_key(&mut v, "name", &rename);
            v
        })
        .collect();
    Ok(Parts {
        route,
        receivers,
        inhibit_rules,
        time_intervals,
    })
}

fn rename_key(v: &mut Value, key: &str, rename: &dyn Fn(&str) -> String) {
    if let Some(slot) = v.get_mut(key)
        && let Some(name) = slot.as_str()
    {
        *slot = Value::from(rename(name));
    }
}

/// Renames the receiver and time intervals of `route` and of every route below it.
fn rename_route(route: &mut Value, rename: &dyn Fn(&str) -> String) {
    rename_key(route, "receiver", rename);
    for key in ["mute_time_intervals", "active_time_intervals"] {
        if let Some(Value::Array(names)) = route.get_mut(key) {
            for n in names.iter_mut() {
                if let Some(s) = n.as_str() {
                    *n = Value::from(rename(s));
                }
            }
        }
    }
    if let Some(Value::Array(children)) = route.get_mut("routes") {
        for c in children {
            rename_route(c, rename);
        }
    }
}

#[cfg(test)]
mod tests;
