//! Endpoints and EndpointSlices for Services with selectors, from their pods.

use serde_json::{Value, json};

use super::pods::pod_ready;
use super::{Key, Reconciler, is, key_of, opts, rt};
use crate::kubesim::objects::Part;
use crate::kubesim::selectors::LabelSelector;
use crate::kubesim::server::ApiServer;
use crate::kubesim::store::{EventType, WatchEvent};

/// The endpoints controller.
pub struct Endpoints;

/// The port number a Service port's targetPort resolves to on `pod`.
fn resolve_port(target: &Value, port: &Value, pod: &Value) -> Option<i64> {
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse::<i64>().ok().or_else(|| {
            pod.pointer("/spec/containers")?
                .as_array()?
                .iter()
                .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
                .find(|p| p["name"] == *s)
                .and_then(|p| p["containerPort"].as_i64())
        }),
        _ => port.as_i64(),
    }
}

impl Reconciler for Endpoints {
    fn name(&self) -> &'static str {
        "endpoints"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "services")
    }
    fn keys_for(&self, server: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "", "services") {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "", "pods") {
            // Every Service in the namespace whose selector matched before or matches now.
            let Some(svcs) = rt(server, "", "services") else {
                return Vec::new();
            };
            let (services, _) = server.store.list(&svcs.storage_key(), Some(&ev.namespace));
            return services
                .iter()
                .filter(|s| {
                    let Some(sel) = s.pointer("/spec/selector").and_then(Value::as_object) else {
                        return false;
                    };
                    let sel = LabelSelector::from_object(&json!({"matchLabels": sel})).unwrap_or_default();
                    sel.matches_object(&ev.object)
                        || ev.previous.as_deref().is_some_and(|p| sel.matches_object(p))
                })
                .map(|s| key_of(s))
                .collect();
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, name): &Key) {
        let (Some(svcs), Some(pods_rt), Some(eps), Some(slices)) = (
            rt(server, "", "services"),
            rt(server, "", "pods"),
            rt(server, "", "endpoints"),
            rt(server, "discovery.k8s.io", "endpointslices"),
        ) else {
            return;
        };
        let Ok(svc) = server.get(&svcs, ns, name) else {
            // Owned by the Service: the garbage collector removes them.
            return;
        };
        let Some(selector) = svc
            .pointer("/spec/selector")
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        else {
            return;
        };
        let sel = LabelSelector::from_object(&json!({"matchLabels": selector})).unwrap_or_default();
        let publish_not_ready = svc.pointer("/spec/publishNotReadyAddresses") == Some(&json!(true));
        let (pods, _) = server.store.list(&pods_rt.storage_key(), Some(ns));
        let ports: Vec<Value> = svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let owner = json!([{"apiVersion": "v1", "kind": "Service", "name": name, "uid": svc["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}]);

        let mut ready_addrs = Vec::new();
        let mut not_ready_addrs = Vec::new();
        let mut slice_endpoints = Vec::new();
        let mut resolved_ports: Vec<Value> = Vec::new();
        for pod in pods.iter().filter(|p| sel.matches_object(p)) {
            let Some(ip) = pod.pointer("/status/podIP").and_then(Value::as_str) else {
                continue;
            };
            if matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            ) {
                continue;
            }
            let terminating = pod.pointer("/metadata/deletionTimestamp").is_some();
            let ready = pod_ready(pod) && !terminating;
            let mut addr = json!({
                "ip": ip,
                "nodeName": pod.pointer("/spec/nodeName").cloned().unwrap_or(Value::Null),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]},
            });
            let hostname = pod.pointer("/spec/hostname").and_then(Value::as_str);
            let subdomain = pod.pointer("/spec/subdomain").and_then(Value::as_str);
            if let (Some(h), Some(sub)) = (hostname, subdomain)
                && sub == name
            {
                addr["hostname"] = json!(h);
            }
            if resolved_ports.is_empty() {
                resolved_ports = ports
                    .iter()
                    .filter_map(|p| {
                        let port = resolve_port(p.get("targetPort").unwrap_or(&Value::Null), &p["port"], pod)?;
                        let mut e = json!({"port": port, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                        if let Some(n) = p.get("name") {
                            e["name"] = n.clone();
                        }
                        Some(e)
                    })
                    .collect();
            }
            if ready || (publish_not_ready && !terminating) {
                ready_addrs.push(addr.clone());
            } else {
                not_ready_addrs.push(addr.clone());
            }
            let mut ep = json!({
                "addresses": [ip],
                "conditions": {"ready": ready || (publish_not_ready && !terminating), "serving": pod_ready(pod), "terminating": terminating},
                "targetRef": addr["targetRef"],
                "nodeName": addr["nodeName"],
            });
            if let Some(h) = addr.get("hostname") {
                ep["hostname"] = h.clone();
            }
            slice_endpoints.push(ep);
        }
        let subsets = if ready_addrs.is_empty() && not_ready_addrs.is_empty() {
            json!([])
        } else {
            let mut subset = json!({"ports": resolved_ports});
            if !ready_addrs.is_empty() {
                subset["addresses"] = json!(ready_addrs);
            }
            if !not_ready_addrs.is_empty() {
                subset["notReadyAddresses"] = json!(not_ready_addrs);
            }
            json!([subset])
        };
        let labels = json!({"endpoints.kubernetes.io/managed-by": "endpoint-controller"});
        let endpoints = json!({"metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner}, "subsets": subsets});
        write(server, &eps, ns, name, endpoints);
        let slice_name = format!("{name}-kubesim");
        let slice = json!({
            "metadata": {"name": slice_name, "namespace": ns, "ownerReferences": owner,
                         "labels": {"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
            "addressType": "IPv4",
            "endpoints": slice_endpoints,
            "ports": resolved_ports,
        });
        write(server, &slices, ns, &slice_name, slice);
    }
}

fn write(
    server: &ApiServer,
    t: &crate::kubesim::registry::ResourceType,
    ns: &str,
    name: &str,
    desired: Value,
) {
    match server.get(t, ns, name) {
        Ok(current) => {
            let mut next = desired;
            next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            let _ = server.update(t, ns, name, next, Part::Main, &opts());
        }
        Err(_) => {
            let _ = server.create(t, ns, desired, &opts());
        }
    }
    let _ = EventType::Added;
}
