//! The garbage collector: ownerReferences with Background, Foreground and Orphan
//! propagation.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::opts;
use crate::kubesim::objects::{DeleteOpts, Part};
use crate::kubesim::registry::ResourceType;
use crate::kubesim::server::ApiServer;
use crate::kubesim::store::EventType;

fn owner_exists(server: &ApiServer, dependent_ns: &str, r: &Value) -> bool {
    let reg = server.registry();
    let (Some(api_version), Some(kind), Some(name), Some(uid)) = (
        r["apiVersion"].as_str(),
        r["kind"].as_str(),
        r["name"].as_str(),
        r["uid"].as_str(),
    ) else {
        return false;
    };
    let Some(t) = reg.by_kind(api_version, kind) else {
        return false;
    };
    let ns = if t.namespaced { dependent_ns } else { "" };
    server
        .store
        .get(&t.storage_key(), ns, name)
        .is_some_and(|o| o.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid))
}

/// Every object, with its type, that lists `uid` among its owners.
fn dependents(server: &ApiServer, uid: &str) -> Vec<(Arc<ResourceType>, Arc<Value>)> {
    let mut out = Vec::new();
    for key in server.store.keys() {
        let Some(t) = server.resource_any(&key.group, &key.plural) else {
            continue;
        };
        for o in server.store.list(&key, None).0 {
            let owned = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid));
            if owned {
                out.push((t.clone(), o));
            }
        }
    }
    out
}

fn remove_finalizer(server: &ApiServer, t: &ResourceType, obj: &Value, finalizer: &str) {
    let mut next = obj.clone();
    if let Some(f) = next
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    {
        f.retain(|x| x != finalizer);
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let _ = server.update(t, ns, name, next, Part::Main, &opts());
}

fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == f))
}

fn meta<'a>(o: &'a Value, field: &str) -> &'a str {
    o.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Handles an owner being deleted with Foreground or Orphan propagation.
fn process_deleting_owner(server: &ApiServer, t: &ResourceType, owner: &Value) {
    let uid = meta(owner, "uid");
    if has_finalizer(owner, "orphan") {
        for (dt, d) in dependents(server, uid) {
            let mut next = (*d).clone();
            if let Some(refs) = next
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r["uid"] != uid);
            }
            let _ = server.update(
                &dt,
                meta(&d, "namespace"),
                meta(&d, "name"),
                next,
                Part::Main,
                &opts(),
            );
        }
        remove_finalizer(server, t, owner, "orphan");
        return;
    }
    if has_finalizer(owner, "foregroundDeletion") {
        let deps = dependents(server, uid);
        let mut blocking = 0;
        for (dt, d) in &deps {
            let blocks = d
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter()
                        .any(|r| r["uid"] == uid && r["blockOwnerDeletion"] == json!(true))
                });
            if blocks {
                blocking += 1;
            }
            if d.pointer("/metadata/deletionTimestamp").is_none() {
                let opts = DeleteOpts {
                    propagation: Some("Foreground".into()),
                    grace_period: Some(0),
                    ..Default::default()
                };
                let _ = server.delete(dt, meta(d, "namespace"), meta(d, "name"), &opts);
            }
        }
        if blocking == 0 {
            remove_finalizer(server, t, owner, "foregroundDeletion");
        }
    }
}

/// Deletes objects whose owners are all gone, and drops references to missing owners when
/// other owners remain.
fn collect_orphans(server: &ApiServer) {
    for key in server.store.keys() {
        let Some(t) = server.resource_any(&key.group, &key.plural) else {
            continue;
        };
        for o in server.store.list(&key, None).0 {
            let Some(refs) = o.pointer("/metadata/ownerReferences").and_then(Value::as_array) else {
                continue;
            };
            if refs.is_empty() || o.pointer("/metadata/deletionTimestamp").is_some() {
                continue;
            }
            let ns = meta(&o, "namespace");
            let alive: Vec<&Value> = refs.iter().filter(|r| owner_exists(server, ns, r)).collect();
            if alive.is_empty() {
                let _ = server.delete(
                    &t,
                    ns,
                    meta(&o, "name"),
                    &DeleteOpts {
                        propagation: Some("Background".into()),
                        ..Default::default()
                    },
                );
            } else if alive.len() < refs.len() {
                let mut next = (*o).clone();
                next["metadata"]["ownerReferences"] = json!(alive);
                let _ = server.update(&t, ns, meta(&o, "name"), next, Part::Main, &opts());
            }
        }
    }
}

/// Runs the garbage collector until `stop` changes.
pub fn spawn(
    server: Arc<ApiServer>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = server.store.subscribe();
        let mut sweep = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = sweep.tick() => collect_orphans(&server),
                ev = rx.recv() => {
                    let Ok(ev) = ev else {
                        collect_orphans(&server);
                        rx = server.store.subscribe();
                        continue;
                    };
                    let Some(t) = server.resource_any(&ev.key.group, &ev.key.plural) else { continue };
                    recheck_owners(&server, &ev.object, &ev.namespace);
                    match ev.type_ {
                        EventType::Deleted => {
                            let uid = meta(&ev.object, "uid").to_string();
                            for (dt, d) in dependents(&server, &uid) {
                                let ns = meta(&d, "namespace").to_string();
                                let refs: Vec<Value> = d.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
                                if refs.iter().all(|r| r["uid"] == uid || !owner_exists(&server, &ns, r)) {
                                    let _ = server.delete(&dt, &ns, meta(&d, "name"), &DeleteOpts { propagation: Some("Background".into()), ..Default::default() });
                                } else {
                                    let mut next = (*d).clone();
                                    next["metadata"]["ownerReferences"] = json!(refs.into_iter().filter(|r| r["uid"] != uid).collect::<Vec<_>>());
                                    let _ = server.update(&dt, &ns, meta(&d, "name"), next, Part::Main, &opts());
                                }
                            }
                        }
                        _ if ev.object.pointer("/metadata/deletionTimestamp").is_some() => process_deleting_owner(&server, &t, &ev.object),
                        _ => {}
                    }
                }
            }
        }
    })
}

/// A dependent changed or went away: owners waiting for it (foreground deletion) may now
/// be able to finish.
fn recheck_owners(server: &ApiServer, obj: &Value, ns: &str) {
    let Some(refs) = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array) else {
        return;
    };
    let reg = server.registry();
    for r in refs {
        let (Some(av), Some(kind), Some(name)) =
            (r["apiVersion"].as_str(), r["kind"].as_str(), r["name"].as_str())
        else {
            continue;
        };
        let Some(ot) = reg.by_kind(av, kind) else { continue };
        let ons = if ot.namespaced { ns } else { "" };
        if let Some(owner) = server.store.get(&ot.storage_key(), ons, name)
            && owner.pointer("/metadata/deletionTimestamp").is_some()
        {
            process_deleting_owner(server, &ot, &owner);
        }
    }
}
