//! Discovery documents: `/api`, `/apis`, `/apis/<group>`, `/api/v1`, `/apis/<group>/<version>`.

use serde_json::{Value, json};

use super::registry::{Registry, ResourceType};

/// The Kubernetes version kubesim reports.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim", "gitCommit": "kubesim",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs.clone(), "preferredVersion": vs.first().cloned().unwrap_or(Value::Null)})
}

/// `/apis`.
pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg.groups().iter().map(|(g, vs)| group_entry(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`.
pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    let (g, vs) = reg.groups().into_iter().find(|(g, _)| g == name)?;
    let mut e = group_entry(&g, &vs);
    e["kind"] = json!("APIGroup");
    e["apiVersion"] = json!("v1");
    Some(e)
}

fn resource_entry(t: &ResourceType) -> Vec<Value> {
    let mut out = vec![json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": t.verbs(),
        "shortNames": t.short_names,
        "categories": t.categories,
    })];
    let sub = |name: &str, kind: &str, verbs: &[&str]| json!({"name": format!("{}/{name}", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": kind, "verbs": verbs});
    if t.status {
        out.push(sub("status", &t.kind, &["get", "patch", "update"]));
    }
    if t.scale.is_some() {
        let mut s = sub("scale", "Scale", &["get", "patch", "update"]);
        s["group"] = json!("autoscaling");
        s["version"] = json!("v1");
        out.push(s);
    }
    for extra in &t.extra_subresources {
        out.push(match *extra {
            "log" => sub("log", "Pod", &["get"]),
            "binding" => sub("binding", "Binding", &["create"]),
            // kubectl drain evicts only when discovery names policy/v1 Eviction (else it
            // deletes); create token looks for authentication.k8s.io/v1 TokenRequest.
            "eviction" => {
                let mut s = sub("eviction", "Eviction", &["create"]);
                s["group"] = json!("policy");
                s["version"] = json!("v1");
                s
            }
            "token" => {
                let mut s = sub("token", "TokenRequest", &["create"]);
                s["group"] = json!("authentication.k8s.io");
                s["version"] = json!("v1");
                s
            }
            other => sub(other, &t.kind, &["get"]),
        });
    }
    if t.group.is_empty() && t.plural == "namespaces" {
        out.push(sub("finalize", "Namespace", &["update"]));
    }
    out
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.group_version(group, version)?;
    let resources: Vec<Value> = types.iter().flat_map(|t| resource_entry(t)).collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

/// `/openapi/v3`: one entry per served group version. Clients (kubectl) use it to learn
/// that the server validates fields itself (`fieldValidation`).
pub fn openapi_v3_root(reg: &Registry) -> Value {
    let mut paths = serde_json::Map::new();
    let mut add = |gv_path: String| {
        paths.insert(
            gv_path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{gv_path}?hash=kubesim")}),
        );
    };
    add("api/v1".into());
    for (g, vs) in reg.groups() {
        for v in vs {
            add(format!("apis/{g}/{v}"));
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/g/v>`: operations with their group-version-kind and the
/// query parameters the server supports. Schemas are not published.
pub fn openapi_v3_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.group_version(group, version)?;
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    let mut paths = serde_json::Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let op = json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}});
        let item = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        paths.insert(item, json!({"get": op, "put": op, "patch": op, "delete": op}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0-kubesim"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
