//! RBAC's own admission rules, which kube-apiserver enforces on top of the verbs:
//!
//! - **escalate**: writing a Role or ClusterRole whose rules grant what the writer does not
//!   hold needs the `escalate` verb on it;
//! - **bind**: writing a RoleBinding or ClusterRoleBinding needs the `bind` verb on the role it
//!   references, or every permission that role grants (in the binding's namespace, or
//!   cluster-wide for a ClusterRoleBinding).
//!
//! Refusals carry upstream's message: `... is forbidden: user "u" (groups=["g"]) is attempting
//! to grant RBAC permissions not currently held:` and the missing rules, one per line.

use serde_json::Value;

use super::auth::{self, Attributes, UserInfo};
use super::errors::ApiError;
use super::registry::{ResourceType, StorageKey};
use super::store::Store;

const GROUP: &str = "rbac.authorization.k8s.io";

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// The single-valued rules `rules` expands to, that `user` does not hold in `namespace`
/// ("" for cluster-wide).
fn missing(store: &Store, user: &UserInfo, namespace: &str, rules: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules {
        let verbs = strs(&rule["verbs"]);
        let urls = strs(&rule["nonResourceURLs"]);
        for url in &urls {
            for verb in &verbs {
                let a = Attributes {
                    verb: verb.clone(),
                    path: Some(url.clone()),
                    ..Default::default()
                };
                if !auth::authorize(store, user, &a) {
                    out.push(format!("{{NonResourceURLs:[{url:?}], Verbs:[{verb:?}]}}"));
                }
            }
        }
        let names = strs(&rule["resourceNames"]);
        let names: Vec<Option<String>> = if names.is_empty() {
            vec![None]
        } else {
            names.into_iter().map(Some).collect()
        };
        for group in strs(&rule["apiGroups"]) {
            for resource in strs(&rule["resources"]) {
                let (res, sub) = resource.split_once('/').unwrap_or((&resource, ""));
                for name in &names {
                    for verb in &verbs {
                        let a = Attributes {
                            verb: verb.clone(),
                            group: group.clone(),
                            resource: res.to_string(),
                            subresource: sub.to_string(),
                            namespace: namespace.to_string(),
                            name: name.clone().unwrap_or_default(),
                            path: None,
                        };
                        if !auth::authorize(store, user, &a) {
                            let names = name
                                .as_ref()
                                .map(|n| format!(", ResourceNames:[{n:?}]"))
                                .unwrap_or_default();
                            out.push(format!(
                                "{{APIGroups:[{group:?}], Resources:[{resource:?}]{names}, Verbs:[{verb:?}]}}"
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn refusal(rt: &ResourceType, name: &str, user: &UserInfo, missing: &[String]) -> ApiError {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    ApiError::new(
        403,
        "Forbidden",
        format!(
            "{}.{GROUP} {name:?} is forbidden: user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            rt.plural,
            user.name,
            groups.join(" "),
            missing.join("\n")
        ),
    )
}

/// Checks a write of `obj` (the body of a create, update or patch) to an RBAC kind.
pub fn check_write(
    store: &Store,
    user: &UserInfo,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    if rt.group != GROUP {
        return Ok(());
    }
    let allowed = |verb: &str, resource: &str, namespace: &str, object: &str| {
        auth::authorize(
            store,
            user,
            &Attributes {
                verb: verb.into(),
                group: GROUP.into(),
                resource: resource.into(),
                namespace: namespace.into(),
                name: object.into(),
                ..Default::default()
            },
        )
    };
    match rt.plural.as_str() {
        "roles" | "clusterroles" => {
            let Some(rules) = obj.get("rules").and_then(Value::as_array) else {
                return Ok(());
            };
            if allowed("escalate", &rt.plural, ns, name) {
                return Ok(());
            }
            let gaps = missing(store, user, ns, rules);
            if gaps.is_empty() {
                Ok(())
            } else {
                Err(refusal(rt, name, user, &gaps))
            }
        }
        "rolebindings" | "clusterrolebindings" => {
            let Some(role_ref) = obj.get("roleRef") else {
                return Ok(());
            };
            let kind = role_ref["kind"].as_str().unwrap_or_default();
            let role = role_ref["name"].as_str().unwrap_or_default();
            let (resource, role_ns) = if kind == "Role" {
                ("roles", ns)
            } else {
                ("clusterroles", "")
            };
            if allowed("bind", resource, ns, role) {
                return Ok(());
            }
            let key = StorageKey {
                group: GROUP.into(),
                plural: resource.into(),
            };
            let rules = store
                .get(&key, role_ns, role)
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default();
            let gaps = missing(store, user, ns, &rules);
            if gaps.is_empty() {
                Ok(())
            } else {
                Err(refusal(rt, name, user, &gaps))
            }
        }
        _ => Ok(()),
    }
}
