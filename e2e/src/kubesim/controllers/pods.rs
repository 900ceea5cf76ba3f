//! The scheduler, and the instant-mode kubelet that marks scheduled pods Running and Ready
//! without running anything (like kwok).

use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::{Value, json};

use super::{Key, Reconciler, is, key_of, opts, rt};
use crate::kubesim::objects::Part;
use crate::kubesim::selectors::labels_of;
use crate::kubesim::server::{ApiServer, NodeMode, now};
use crate::kubesim::store::{EventType, WatchEvent};

/// Binds pending pods to nodes.
pub struct Scheduler;

fn node_fits(node: &Value, pod: &Value) -> bool {
    let labels = labels_of(node);
    let selector_ok = pod
        .pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| {
            sel.iter()
                .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
        });
    let unschedulable = node.pointer("/spec/unschedulable") == Some(&json!(true));
    selector_ok && !unschedulable
}

impl Reconciler for Scheduler {
    fn name(&self) -> &'static str {
        "scheduler"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "pods")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "", "pods") && ev.type_ == EventType::Added && ev.object.pointer("/spec/nodeName").is_none()
        {
            return vec![key_of(&ev.object)];
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, name): &Key) {
        let (Some(pods), Some(nodes_rt)) = (rt(server, "", "pods"), rt(server, "", "nodes")) else {
            return;
        };
        let Ok(pod) = server.get(&pods, ns, name) else {
            return;
        };
        if pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
            || pod.pointer("/metadata/deletionTimestamp").is_some()
            || pod
                .pointer("/spec/schedulerName")
                .and_then(Value::as_str)
                .is_some_and(|s| s != "default-scheduler")
        {
            return;
        }
        let (nodes, _) = server.store.list(&nodes_rt.storage_key(), None);
        let (all_pods, _) = server.store.list(&pods.storage_key(), None);
        let load = |node: &str| {
            all_pods
                .iter()
                .filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
                .count()
        };
        let best = nodes
            .iter()
            .filter(|n| node_fits(n, &pod))
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str))
            .min_by_key(|n| load(n));
        match best {
            Some(node) => {
                let _ = server.bind_pod(ns, name, node);
            }
            None => {
                let mut next = (*pod).clone();
                next["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": format!("0/{} nodes are available: node(s) didn't match Pod's node affinity/selector.", nodes.len()), "lastProbeTime": null, "lastTransitionTime": now()}]);
                let _ = server.update(&pods, ns, name, next, Part::Status, &opts());
            }
        }
    }
}

/// Marks scheduled pods Running and Ready (or Succeeded, for run-to-completion pods).
pub struct InstantKubelet;

static NEXT_IP: AtomicU32 = AtomicU32::new(2);

impl Reconciler for InstantKubelet {
    fn name(&self) -> &'static str {
        "instant-kubelet"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "pods")
    }
    fn keys_for(&self, server: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if server.node_mode == NodeMode::Instant
            && is(ev, "", "pods")
            && ev.type_ != EventType::Deleted
            && ev.object.pointer("/spec/nodeName").is_some()
            && ev.object.pointer("/status/phase").and_then(Value::as_str) == Some("Pending")
        {
            return vec![key_of(&ev.object)];
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, name): &Key) {
        if server.node_mode != NodeMode::Instant {
            return;
        }
        let Some(pods) = rt(server, "", "pods") else {
            return;
        };
        let Ok(pod) = server.get(&pods, ns, name) else {
            return;
        };
        if pod.pointer("/spec/nodeName").is_none()
            || pod.pointer("/status/phase").and_then(Value::as_str) != Some("Pending")
        {
            return;
        }
        let t = now();
        let completes = pod
            .pointer("/spec/restartPolicy")
            .and_then(Value::as_str)
            .is_some_and(|p| p != "Always");
        let n = NEXT_IP.fetch_add(1, Ordering::SeqCst);
        let ip = format!("10.244.{}.{}", (n >> 8) & 0xff, n & 0xff);
        let statuses: Vec<Value> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        let state = if completes {
                            json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": t, "finishedAt": t}})
                        } else {
                            json!({"running": {"startedAt": t}})
                        };
                        json!({
                            "name": c["name"], "image": c["image"], "imageID": format!("kubesim://{}", c["image"].as_str().unwrap_or_default()),
                            "containerID": format!("kubesim://{ns}-{name}-{}", c["name"].as_str().unwrap_or_default()),
                            "ready": !completes, "started": !completes, "restartCount": 0, "state": state,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ready = if completes { "False" } else { "True" };
        let mut next = (*pod).clone();
        next["status"] = json!({
            "phase": if completes { "Succeeded" } else { "Running" },
            "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": t,
            "qosClass": pod.pointer("/status/qosClass").cloned().unwrap_or(json!("BestEffort")),
            "conditions": [
                {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
                {"type": "Ready", "status": ready, "lastProbeTime": null, "lastTransitionTime": t},
                {"type": "ContainersReady", "status": ready, "lastProbeTime": null, "lastTransitionTime": t},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": t},
            ],
            "containerStatuses": statuses,
        });
        let _ = server.update(&pods, ns, name, next, Part::Status, &opts());
    }
}

/// Whether a pod counts as ready (its Ready condition is True).
pub fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}
