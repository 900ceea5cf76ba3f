//! Authentication (bearer tokens) and RBAC authorization, answering like the real API server.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde_json::Value;

use super::registry::StorageKey;
use super::store::Store;

/// Who is making a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `system:serviceaccount:ns:name`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
    /// Extra attributes; pod-bound ServiceAccount tokens carry the pod's name and UID under
    /// upstream's keys (`authentication.kubernetes.io/pod-name`, `.../pod-uid`).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The user of a ServiceAccount.
    pub fn service_account(ns: &str, name: &str) -> Self {
        UserInfo {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            extra: BTreeMap::new(),
        }
    }

    /// The pod a pod-bound token was issued for.
    pub fn pod_name(&self) -> Option<&str> {
        self.extra
            .get(POD_NAME_EXTRA)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The user-info extra key naming the pod of a pod-bound token (as upstream sets it).
pub const POD_NAME_EXTRA: &str = "authentication.kubernetes.io/pod-name";

/// Known bearer tokens.
pub struct Tokens {
    admin: String,
    issued: RwLock<HashMap<String, UserInfo>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").finish_non_exhaustive()
    }
}

/// A random token string.
pub fn random_token(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}.{hex}")
}

impl Tokens {
    /// A token table with a fresh admin token.
    pub fn new() -> Self {
        Tokens {
            admin: random_token("kubesim-admin"),
            issued: RwLock::new(HashMap::new()),
        }
    }

    /// The admin (system:masters) token.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// Issues a token for a ServiceAccount.
    pub fn issue_service_account(&self, ns: &str, name: &str) -> String {
        let token = random_token(&format!("kubesim-sa.{ns}.{name}"));
        self.register(&token, UserInfo::service_account(ns, name));
        token
    }

    /// Issues a ServiceAccount token bound to a pod, as the kubelet's projected token is:
    /// requests made with it name the pod (audit log).
    pub fn issue_pod_bound(&self, ns: &str, sa: &str, pod: &str, pod_uid: &str) -> String {
        let token = random_token(&format!("kubesim-sa.{ns}.{sa}"));
        let mut user = UserInfo::service_account(ns, sa);
        user.extra.insert(POD_NAME_EXTRA.into(), vec![pod.to_string()]);
        user.extra.insert(
            "authentication.kubernetes.io/pod-uid".into(),
            vec![pod_uid.to_string()],
        );
        self.register(&token, user);
        token
    }

    /// Makes `token` authenticate as `user`.
    pub fn register(&self, token: &str, user: UserInfo) {
        if let Ok(mut m) = self.issued.write() {
            m.insert(token.to_string(), user);
        }
    }

    /// Forgets a token.
    pub fn revoke(&self, token: &str) {
        if let Ok(mut m) = self.issued.write() {
            m.remove(token);
        }
    }

    /// The user a bearer token stands for.
    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        if token == self.admin {
            return Some(UserInfo {
                name: "kubesim-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                extra: BTreeMap::new(),
            });
        }
        self.issued.read().ok()?.get(token).cloned()
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

/// What a request wants to do.
#[derive(Clone, Debug, Default)]
pub struct Attributes {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, e.g. `status`, `log`.
    pub subresource: String,
    /// Namespace ("" for cluster scope).
    pub namespace: String,
    /// Object name, if any.
    pub name: String,
    /// Non-resource path, e.g. `/metrics`; set instead of resource.
    pub path: Option<String>,
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(&rule["verbs"]);
    if !verbs.iter().any(|v| *v == "*" || *v == a.verb) {
        return false;
    }
    if let Some(path) = &a.path {
        return strs(&rule["nonResourceURLs"]).iter().any(|u| {
            *u == "*" || u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
        });
    }
    if !strs(&rule["apiGroups"])
        .iter()
        .any(|g| *g == "*" || *g == a.group)
    {
        return false;
    }
    let wanted = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resources = strs(&rule["resources"]);
    let resource_ok = resources.iter().any(|r| {
        *r == "*" || *r == wanted || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
    });
    if !resource_ok {
        return false;
    }
    let names = strs(&rule["resourceNames"]);
    names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str()))
}

fn subject_matches(subject: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn key(plural: &str) -> StorageKey {
    StorageKey {
        group: "rbac.authorization.k8s.io".into(),
        plural: plural.into(),
    }
}

/// Non-resource paths every authenticated user may read (the real cluster's
/// system:discovery and system:public-info-viewer roles).
fn public_path(path: &str) -> bool {
    [
        "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
    ]
    .iter()
    .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Whether RBAC allows `user` to do `a`, reading Roles and bindings from `store`.
pub fn authorize(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.is_master() {
        return true;
    }
    if a.path.as_deref().is_some_and(public_path) && a.verb == "get" {
        return true;
    }
    // Self-inspection every authenticated user has in a real cluster.
    if a.group == "authorization.k8s.io" && a.resource.starts_with("selfsubject") && a.verb == "create" {
        return true;
    }
    let role_rules = |kind: &str, name: &str, ns: &str| -> Vec<Value> {
        let obj = match kind {
            "ClusterRole" => store.get(&key("clusterroles"), "", name),
            "Role" => store.get(&key("roles"), ns, name),
            _ => None,
        };
        obj.and_then(|o| o["rules"].as_array().cloned())
            .unwrap_or_default()
    };
    let (crbs, _) = store.list(&key("clusterrolebindings"), None);
    for b in crbs {
        if strs_objs(&b["subjects"])
            .iter()
            .any(|s| subject_matches(s, user, ""))
        {
            let r = &b["roleRef"];
            let rules = role_rules(
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                "",
            );
            if rules.iter().any(|rule| rule_allows(rule, a)) {
                return true;
            }
        }
    }
    if a.namespace.is_empty() || a.path.is_some() {
        return false;
    }
    let (rbs, _) = store.list(&key("rolebindings"), Some(&a.namespace));
    for b in rbs {
        if strs_objs(&b["subjects"])
            .iter()
            .any(|s| subject_matches(s, user, &a.namespace))
        {
            let r = &b["roleRef"];
            let rules = role_rules(
                r["kind"].as_str().unwrap_or_default(),
                r["name"].as_str().unwrap_or_default(),
                &a.namespace,
            );
            if rules.iter().any(|rule| rule_allows(rule, a)) {
                return true;
            }
        }
    }
    false
}

fn strs_objs(v: &Value) -> Vec<&Value> {
    v.as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

/// The real API server's message for a denied request.
pub fn forbidden_message(user: &UserInfo, a: &Attributes) -> String {
    if let Some(path) = &a.path {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{path}\"",
            user.name, a.verb
        );
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let qualified = if a.group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.group)
    };
    let subject = if a.name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{}\"", a.name)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, resource: &str, sub: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: None,
        }
    }

    #[test]
    fn rules_match_verbs_resources_subresources_and_names() {
        let rule = json!({"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]});
        assert!(rule_allows(&rule, &attrs("get", "pods", "", "n", "p")));
        assert!(rule_allows(&rule, &attrs("get", "pods", "log", "n", "p")));
        assert!(!rule_allows(&rule, &attrs("get", "pods", "status", "n", "p")));
        assert!(!rule_allows(&rule, &attrs("delete", "pods", "", "n", "p")));
        let named =
            json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"], "verbs": ["get"]});
        assert!(rule_allows(&named, &attrs("get", "configmaps", "", "n", "a")));
        assert!(!rule_allows(&named, &attrs("get", "configmaps", "", "n", "b")));
        let nonres = json!({"nonResourceURLs": ["/metrics", "/logs/*"], "verbs": ["get"]});
        let mut a = attrs("get", "", "", "", "");
        a.path = Some("/logs/x".into());
        assert!(rule_allows(&nonres, &a));
    }

    #[test]
    fn forbidden_messages_match_the_apiserver() {
        let u = UserInfo::service_account("default", "sa");
        assert_eq!(
            forbidden_message(&u, &attrs("list", "pods", "", "default", "")),
            "pods is forbidden: User \"system:serviceaccount:default:sa\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let mut a = attrs("get", "etcdclusters", "status", "", "x");
        a.group = "etcd.steward.dev".into();
        assert_eq!(
            forbidden_message(&u, &a),
            "etcdclusters.etcd.steward.dev \"x\" is forbidden: User \"system:serviceaccount:default:sa\" cannot get resource \"etcdclusters/status\" in API group \"etcd.steward.dev\" at the cluster scope"
        );
    }
}
