//! Deployment, ReplicaSet, StatefulSet and Job controllers.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::pods::pod_ready;
use super::{Key, Reconciler, is, key_of, opts, owner_keys, rt};
use crate::kubesim::objects::{DeleteOpts, Part};
use crate::kubesim::registry::ResourceType;
use crate::kubesim::selectors::LabelSelector;
use crate::kubesim::server::{ApiServer, now};
use crate::kubesim::store::{EventType, WatchEvent};

/// A short, stable hash of a pod template (FNV-1a), in the apiserver's alphabet.
pub fn template_hash(template: &Value) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in template.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..10)
        .map(|i| ALPHABET[((h >> (i * 6)) % ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn owner_ref(api_version: &str, kind: &str, obj: &Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true})
}

fn controlled_by(obj: &Value, uid: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["uid"] == *uid && r["controller"] == json!(true))
        })
}

fn owned_pods(server: &ApiServer, ns: &str, owner: &Value) -> Vec<Value> {
    let Some(pods) = rt(server, "", "pods") else {
        return Vec::new();
    };
    server
        .store
        .list(&pods.storage_key(), Some(ns))
        .0
        .iter()
        .filter(|p| controlled_by(p, &owner["metadata"]["uid"]))
        .map(|p| (**p).clone())
        .collect()
}

fn terminating(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some()
}

fn finished(p: &Value) -> bool {
    matches!(
        p.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    )
}

fn name(o: &Value) -> String {
    o.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn i64_at(o: &Value, ptr: &str, default: i64) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(default)
}

/// A pod built from a template.
fn pod_from_template(
    template: &Value,
    name: Option<&str>,
    generate: Option<&str>,
    owner: Value,
    extra_labels: &BTreeMap<String, String>,
) -> Value {
    let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
    let labels = crate::kubesim::objects::ensure_object(
        crate::kubesim::objects::ensure_object(&mut meta)
            .entry("labels")
            .or_insert(json!({})),
    );
    for (k, v) in extra_labels {
        labels.insert(k.clone(), json!(v));
    }
    if let Some(n) = name {
        meta["name"] = json!(n);
    }
    if let Some(g) = generate {
        meta["generateName"] = json!(g);
    }
    meta["ownerReferences"] = json!([owner]);
    json!({"metadata": meta, "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

fn set_status(server: &ApiServer, t: &ResourceType, obj: &Value, status: Value) {
    let mut next = obj.clone();
    let mut merged = obj.get("status").cloned().unwrap_or(json!({}));
    if let (Some(m), Some(s)) = (merged.as_object_mut(), status.as_object()) {
        for (k, v) in s {
            m.insert(k.clone(), v.clone());
        }
    }
    next["status"] = merged;
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let _ = server.update(t, ns, &name(obj), next, Part::Status, &opts());
}

fn condition(type_: &str, status: bool, reason: &str, message: &str) -> Value {
    let t = now();
    json!({"type": type_, "status": if status { "True" } else { "False" }, "reason": reason, "message": message, "lastUpdateTime": t, "lastTransitionTime": t})
}

/// A ReplicaSet's `ReplicaFailure` condition (its conditions carry no lastUpdateTime); the
/// transition time stays while the condition holds.
fn replica_failure(rs: &Value, message: &str) -> Value {
    let since = rs
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ReplicaFailure"))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(now()));
    json!({"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": message, "lastTransitionTime": since})
}

/// Keeps a ReplicaSet's pod count.
pub struct ReplicaSets;

impl Reconciler for ReplicaSets {
    fn name(&self) -> &'static str {
        "replicaset"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("apps", "replicasets")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "apps", "replicasets") && ev.type_ != EventType::Deleted {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "", "pods") {
            return owner_keys(&ev.object, "ReplicaSet");
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, rs_name): &Key) {
        let (Some(rss), Some(pods_rt)) = (rt(server, "apps", "replicasets"), rt(server, "", "pods")) else {
            return;
        };
        let Ok(rs) = server.get(&rss, ns, rs_name) else {
            return;
        };
        if terminating(&rs) {
            return;
        }
        let desired = i64_at(&rs, "/spec/replicas", 1).max(0) as usize;
        let pods: Vec<Value> = owned_pods(server, ns, &rs)
            .into_iter()
            .filter(|p| !terminating(p) && !finished(p))
            .collect();
        // As the real controller does, a refused create shows as the ReplicaFailure condition
        // (reason FailedCreate, the API's message) until a create succeeds again.
        let mut failed_create = None;
        if pods.len() < desired {
            let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for _ in pods.len()..desired {
                let pod = pod_from_template(
                    &template,
                    None,
                    Some(&format!("{rs_name}-")),
                    owner_ref("apps/v1", "ReplicaSet", &rs),
                    &BTreeMap::new(),
                );
                if let Err(e) = server.create(&pods_rt, ns, pod, &opts()) {
                    failed_create = Some(e.message);
                }
            }
        } else if pods.len() > desired {
            let mut victims = pods.clone();
            // Not-ready pods go first, then the newest.
            victims.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(
                        p.pointer("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for p in victims.iter().take(pods.len() - desired) {
                let _ = server.delete(&pods_rt, ns, &name(p), &DeleteOpts::default());
            }
        }
        let pods = owned_pods(server, ns, &rs);
        let live: Vec<&Value> = pods.iter().filter(|p| !terminating(p) && !finished(p)).collect();
        let ready = live.iter().filter(|p| pod_ready(p)).count();
        set_status(
            server,
            &rss,
            &rs,
            json!({
                "replicas": live.len(), "fullyLabeledReplicas": live.len(), "readyReplicas": ready, "availableReplicas": ready,
                "observedGeneration": rs["metadata"]["generation"],
                "conditions": failed_create.map(|m| vec![replica_failure(&rs, &m)]).unwrap_or_default(),
            }),
        );
    }
}

/// Rolls Deployments through ReplicaSets.
pub struct Deployments;

impl Reconciler for Deployments {
    fn name(&self) -> &'static str {
        "deployment"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("apps", "deployments")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "apps", "deployments") && ev.type_ != EventType::Deleted {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "apps", "replicasets") {
            return owner_keys(&ev.object, "Deployment");
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, dep_name): &Key) {
        let (Some(deps), Some(rss)) = (
            rt(server, "apps", "deployments"),
            rt(server, "apps", "replicasets"),
        ) else {
            return;
        };
        let Ok(dep) = server.get(&deps, ns, dep_name) else {
            return;
        };
        if terminating(&dep) {
            return;
        }
        let desired = i64_at(&dep, "/spec/replicas", 1).max(0);
        let template = dep.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let new_name = format!("{dep_name}-{hash}");
        let owned: Vec<Value> = server
            .store
            .list(&rss.storage_key(), Some(ns))
            .0
            .iter()
            .filter(|r| controlled_by(r, &dep["metadata"]["uid"]))
            .map(|r| (**r).clone())
            .collect();
        let new_rs = owned.iter().find(|r| name(r) == new_name).cloned();
        match &new_rs {
            None => {
                let mut tpl = template.clone();
                tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = dep.pointer("/spec/selector").cloned().unwrap_or(json!({}));
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                labels["pod-template-hash"] = json!(hash);
                let rs = json!({
                    "metadata": {"name": new_name, "labels": labels, "ownerReferences": [owner_ref("apps/v1", "Deployment", &dep)],
                                 "annotations": {"deployment.kubernetes.io/desired-replicas": desired.to_string()}},
                    "spec": {"replicas": desired, "selector": selector, "template": tpl},
                });
                let _ = server.create(&rss, ns, rs, &opts());
            }
            Some(rs) if i64_at(rs, "/spec/replicas", 0) != desired => {
                let mut next = rs.clone();
                next["spec"]["replicas"] = json!(desired);
                let _ = server.update(&rss, ns, &new_name, next, Part::Main, &opts());
            }
            _ => {}
        }
        let new_available = new_rs
            .as_ref()
            .map_or(0, |r| i64_at(r, "/status/availableReplicas", 0));
        // Old ReplicaSets scale down once the new one is fully available.
        if new_available >= desired {
            for old in owned
                .iter()
                .filter(|r| name(r) != new_name && i64_at(r, "/spec/replicas", 0) != 0)
            {
                let mut next = old.clone();
                next["spec"]["replicas"] = json!(0);
                let _ = server.update(&rss, ns, &name(old), next, Part::Main, &opts());
            }
        }
        let sum = |ptr: &str| owned.iter().map(|r| i64_at(r, ptr, 0)).sum::<i64>();
        let available = sum("/status/availableReplicas");
        set_status(
            server,
            &deps,
            &dep,
            json!({
                "observedGeneration": dep["metadata"]["generation"],
                "replicas": sum("/status/replicas"),
                "updatedReplicas": new_rs.as_ref().map_or(0, |r| i64_at(r, "/status/replicas", 0)),
                "readyReplicas": sum("/status/readyReplicas"),
                "availableReplicas": available,
                "unavailableReplicas": (desired - available).max(0),
                "conditions": [
                    condition("Available", available >= desired, if available >= desired { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }, "Deployment availability"),
                    condition("Progressing", true, if new_available >= desired { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" }, &format!("ReplicaSet \"{new_name}\" is progressing.")),
                ],
            }),
        );
    }
}

/// Runs StatefulSets: ordinal pods, PVCs from claim templates, ordered or parallel
/// management, RollingUpdate with partition, OnDelete.
pub struct StatefulSets;

fn sts_revision(server: &ApiServer, sts: &Value) -> (String, Option<Value>) {
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let rev = format!("{}-{}", name(sts), template_hash(&template));
    // Keep every revision's template so older revisions can be recreated.
    if let Some(crs) = rt(server, "apps", "controllerrevisions") {
        let ns = sts
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if server.get(&crs, ns, &rev).is_err() {
            let n = server
                .store
                .list(&crs.storage_key(), Some(ns))
                .0
                .iter()
                .filter(|c| controlled_by(c, &sts["metadata"]["uid"]))
                .count();
            let mut labels = sts
                .pointer("/spec/selector/matchLabels")
                .cloned()
                .unwrap_or(json!({}));
            labels["controller.kubernetes.io/hash"] = json!(template_hash(&template));
            let cr = json!({
                "metadata": {"name": rev, "labels": labels, "ownerReferences": [owner_ref("apps/v1", "StatefulSet", sts)]},
                "data": {"spec": {"template": template}},
                "revision": n + 1,
            });
            let _ = server.create(&crs, ns, cr, &opts());
        }
    }
    (rev, Some(template))
}

fn revision_template(server: &ApiServer, ns: &str, rev: &str) -> Option<Value> {
    let crs = rt(server, "apps", "controllerrevisions")?;
    server
        .get(&crs, ns, rev)
        .ok()?
        .pointer("/data/spec/template")
        .cloned()
}

impl Reconciler for StatefulSets {
    fn name(&self) -> &'static str {
        "statefulset"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("apps", "statefulsets")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "apps", "statefulsets") && ev.type_ != EventType::Deleted {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "", "pods") {
            return owner_keys(&ev.object, "StatefulSet");
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, sts_name): &Key) {
        let (Some(stss), Some(pods_rt), Some(pvcs)) = (
            rt(server, "apps", "statefulsets"),
            rt(server, "", "pods"),
            rt(server, "", "persistentvolumeclaims"),
        ) else {
            return;
        };
        let Ok(sts) = server.get(&stss, ns, sts_name) else {
            return;
        };
        if terminating(&sts) {
            return;
        }
        let sts = (*sts).clone();
        let replicas = i64_at(&sts, "/spec/replicas", 1).max(0) as usize;
        let parallel = sts.pointer("/spec/podManagementPolicy").and_then(Value::as_str) == Some("Parallel");
        let on_delete = sts.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete");
        let partition = i64_at(&sts, "/spec/updateStrategy/rollingUpdate/partition", 0).max(0) as usize;
        let (update_rev, _) = sts_revision(server, &sts);
        let current_rev = sts
            .pointer("/status/currentRevision")
            .and_then(Value::as_str)
            .unwrap_or(&update_rev)
            .to_string();
        let pods: BTreeMap<usize, Value> = owned_pods(server, ns, &sts)
            .into_iter()
            .filter_map(|p| {
                let ord = name(&p)
                    .strip_prefix(&format!("{sts_name}-"))?
                    .parse::<usize>()
                    .ok()?;
                Some((ord, p))
            })
            .collect();
        let running_ready = |p: &Value| pod_ready(p) && !terminating(p);
        let vcts: Vec<Value> = sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let delete_with_set = sts
            .pointer("/spec/persistentVolumeClaimRetentionPolicy/whenDeleted")
            .and_then(Value::as_str)
            == Some("Delete");
        let selector_labels = sts
            .pointer("/spec/selector/matchLabels")
            .cloned()
            .unwrap_or(json!({}));

        // Create missing pods (and their claims).
        for ord in 0..replicas {
            if let Some(p) = pods.get(&ord) {
                if finished(p) && !terminating(p) {
                    let _ = server.delete(&pods_rt, ns, &name(p), &DeleteOpts::default());
                }
                if !parallel && !running_ready(p) {
                    break;
                }
                continue;
            }
            let pod_name = format!("{sts_name}-{ord}");
            for vct in &vcts {
                let claim = format!("{}-{pod_name}", name(vct));
                if server.get(&pvcs, ns, &claim).is_err() {
                    let mut meta = json!({"name": claim, "labels": selector_labels});
                    if delete_with_set {
                        meta["ownerReferences"] = json!([owner_ref("apps/v1", "StatefulSet", &sts)]);
                    }
                    let pvc =
                        json!({"metadata": meta, "spec": vct.get("spec").cloned().unwrap_or(json!({}))});
                    let _ = server.create(&pvcs, ns, pvc, &opts());
                }
            }
            let rev = if on_delete || ord >= partition {
                update_rev.clone()
            } else {
                current_rev.clone()
            };
            let template = revision_template(server, ns, &rev)
                .or_else(|| sts.pointer("/spec/template").cloned())
                .unwrap_or(json!({}));
            let labels = BTreeMap::from([
                ("controller-revision-hash".to_string(), rev.clone()),
                ("statefulset.kubernetes.io/pod-name".to_string(), pod_name.clone()),
                ("apps.kubernetes.io/pod-index".to_string(), ord.to_string()),
            ]);
            let mut pod = pod_from_template(
                &template,
                Some(&pod_name),
                None,
                owner_ref("apps/v1", "StatefulSet", &sts),
                &labels,
            );
            pod["spec"]["hostname"] = json!(pod_name);
            if let Some(svc) = sts
                .pointer("/spec/serviceName")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                pod["spec"]["subdomain"] = json!(svc);
            }
            let volumes = crate::kubesim::objects::ensure_object(&mut pod["spec"])
                .entry("volumes")
                .or_insert(json!([]));
            if let Some(vs) = volumes.as_array_mut() {
                for vct in &vcts {
                    let vname = name(vct);
                    vs.retain(|v| v["name"] != json!(vname));
                    vs.push(json!({"name": vname, "persistentVolumeClaim": {"claimName": format!("{vname}-{pod_name}")}}));
                }
            }
            let _ = server.create(&pods_rt, ns, pod, &opts());
            if !parallel {
                break;
            }
        }
        // Remove pods above the desired count: highest ordinal first.
        let extra: Vec<&Value> = pods
            .iter()
            .filter(|(o, _)| **o >= replicas)
            .map(|(_, p)| p)
            .rev()
            .collect();
        if parallel {
            for p in &extra {
                if !terminating(p) {
                    let _ = server.delete(&pods_rt, ns, &name(p), &DeleteOpts::default());
                }
            }
        } else if let Some(p) = extra.first() {
            let others_ready = pods
                .iter()
                .filter(|(o, _)| **o < replicas)
                .all(|(_, p)| running_ready(p));
            if !terminating(p) && others_ready {
                let _ = server.delete(&pods_rt, ns, &name(p), &DeleteOpts::default());
            }
        }
        // Rolling update: one pod at a time, highest ordinal first, down to the partition.
        let all_present = (0..replicas).all(|o| pods.get(&o).is_some_and(running_ready));
        if !on_delete && all_present {
            let stale = (partition..replicas).rev().find(|o| {
                pods.get(o)
                    .and_then(|p| p.pointer("/metadata/labels/controller-revision-hash"))
                    .and_then(Value::as_str)
                    != Some(update_rev.as_str())
            });
            if let Some(o) = stale
                && let Some(p) = pods.get(&o)
            {
                let _ = server.delete(&pods_rt, ns, &name(p), &DeleteOpts::default());
            }
        }
        let pods = owned_pods(server, ns, &sts);
        let count_rev = |r: &str| {
            pods.iter()
                .filter(|p| {
                    p.pointer("/metadata/labels/controller-revision-hash")
                        .and_then(Value::as_str)
                        == Some(r)
                })
                .count()
        };
        let ready = pods.iter().filter(|p| running_ready(p)).count();
        let updated = count_rev(&update_rev);
        let current = if updated == replicas && pods.len() == replicas {
            update_rev.clone()
        } else {
            current_rev.clone()
        };
        set_status(
            server,
            &stss,
            &sts,
            json!({
                "observedGeneration": sts["metadata"]["generation"],
                "replicas": pods.len(),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": count_rev(&current),
                "updatedReplicas": updated,
                "currentRevision": current,
                "updateRevision": update_rev,
                "collisionCount": 0,
            }),
        );
    }
}

/// Runs Jobs to completion.
pub struct Jobs;

impl Reconciler for Jobs {
    fn name(&self) -> &'static str {
        "job"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("batch", "jobs")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "batch", "jobs") && ev.type_ != EventType::Deleted {
            return vec![key_of(&ev.object)];
        }
        if is(ev, "", "pods") {
            return owner_keys(&ev.object, "Job");
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (ns, job_name): &Key) {
        let (Some(jobs), Some(pods_rt)) = (rt(server, "batch", "jobs"), rt(server, "", "pods")) else {
            return;
        };
        let Ok(job) = server.get(&jobs, ns, job_name) else {
            return;
        };
        let done = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
            });
        if done || terminating(&job) || job.pointer("/spec/suspend") == Some(&json!(true)) {
            return;
        }
        let pods = owned_pods(server, ns, &job);
        let succeeded = pods
            .iter()
            .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Succeeded"))
            .count() as i64;
        let failed = pods
            .iter()
            .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
            .count() as i64;
        let active: Vec<&Value> = pods.iter().filter(|p| !finished(p) && !terminating(p)).collect();
        let completions = i64_at(&job, "/spec/completions", 1);
        let parallelism = i64_at(&job, "/spec/parallelism", 1);
        let backoff = i64_at(&job, "/spec/backoffLimit", 6);
        let start = job.pointer("/status/startTime").cloned().unwrap_or(json!(now()));
        let mut status = json!({"active": active.len(), "succeeded": succeeded, "failed": failed, "startTime": start,
                                "ready": active.iter().filter(|p| pod_ready(p)).count()});
        if succeeded >= completions {
            status["completionTime"] = json!(now());
            status["active"] = json!(0);
            status["conditions"] = json!([
                condition(
                    "SuccessCriteriaMet",
                    true,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                condition(
                    "Complete",
                    true,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                )
            ]);
        } else if failed > backoff {
            status["conditions"] = json!([
                condition(
                    "FailureTarget",
                    true,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                ),
                condition(
                    "Failed",
                    true,
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                )
            ]);
        } else {
            let want = parallelism.min(completions - succeeded) - active.len() as i64;
            let template = job.pointer("/spec/template").cloned().unwrap_or(json!({}));
            for _ in 0..want.max(0) {
                let pod = pod_from_template(
                    &template,
                    None,
                    Some(&format!("{job_name}-")),
                    owner_ref("batch/v1", "Job", &job),
                    &BTreeMap::new(),
                );
                let _ = server.create(&pods_rt, ns, pod, &opts());
            }
        }
        set_status(server, &jobs, &job, status);
        let _ = LabelSelector::default();
    }
}
