//! In-process controllers: what kube-controller-manager, the scheduler and (in instant mode)
//! the kubelet do. Each reacts to store events and is also resynced periodically.

mod gc;
mod namespaces;
mod pods;
mod serviceaccounts;
mod services;
mod storage;
mod workloads;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::objects::WriteOpts;
use super::registry::{ResourceType, StorageKey};
use super::server::ApiServer;
use super::store::WatchEvent;

/// Identity of the in-process controllers' writes.
pub fn opts() -> WriteOpts {
    WriteOpts::system("kube-controller-manager")
}

/// (namespace, name).
pub type Key = (String, String);

/// A level-based controller: maps events to keys of its primary resource and reconciles keys.
pub trait Reconciler: Send + Sync + 'static {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// The primary resource (group, plural).
    fn primary(&self) -> (&'static str, &'static str);
    /// Keys of primary objects affected by an event.
    fn keys_for(&self, server: &ApiServer, ev: &WatchEvent) -> Vec<Key>;
    /// Brings one primary object (which may be gone) to its desired state.
    fn reconcile(&self, server: &ApiServer, key: &Key);
}

/// The resource type stored under (group, plural), preferred version.
pub fn rt(server: &ApiServer, group: &str, plural: &str) -> Option<Arc<ResourceType>> {
    server.resource_any(group, plural)
}

/// Whether an event concerns (group, plural).
pub fn is(ev: &WatchEvent, group: &str, plural: &str) -> bool {
    ev.key
        == StorageKey {
            group: group.into(),
            plural: plural.into(),
        }
}

/// The key of the object in an event.
pub fn key_of(obj: &Value) -> Key {
    (
        obj.pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        obj.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

/// Keys of the controller owners of `obj` of the given kind.
pub fn owner_keys(obj: &Value, kind: &str) -> Vec<Key> {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter(|r| r["kind"] == kind && r["controller"] == Value::Bool(true))
                .filter_map(|r| r["name"].as_str().map(|n| (ns.clone(), n.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn spawn(
    server: Arc<ApiServer>,
    c: Arc<dyn Reconciler>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut rx = server.store.subscribe();
        let resync_all = |server: &ApiServer, c: &dyn Reconciler| -> BTreeSet<Key> {
            let (g, p) = c.primary();
            let key = StorageKey {
                group: g.into(),
                plural: p.into(),
            };
            server
                .store
                .list(&key, None)
                .0
                .iter()
                .map(|o| key_of(o))
                .collect()
        };
        let mut dirty = resync_all(&server, c.as_ref());
        let mut resync = tokio::time::interval(Duration::from_secs(5));
        loop {
            // Drain what is queued, then reconcile each affected key once.
            for key in std::mem::take(&mut dirty) {
                c.reconcile(&server, &key);
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = resync.tick() => dirty.extend(resync_all(&server, c.as_ref())),
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        dirty.extend(c.keys_for(&server, &ev));
                        while let Ok(ev) = rx.try_recv() {
                            dirty.extend(c.keys_for(&server, &ev));
                        }
                    }
                    Err(RecvError::Lagged(_)) => dirty.extend(resync_all(&server, c.as_ref())),
                    Err(RecvError::Closed) => return,
                },
            }
        }
    })
}

/// Starts every controller.
pub fn spawn_all(
    server: Arc<ApiServer>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let controllers: Vec<Arc<dyn Reconciler>> = vec![
        Arc::new(namespaces::NamespaceSetup),
        Arc::new(namespaces::NamespaceDeletion),
        Arc::new(serviceaccounts::TokenSecrets),
        Arc::new(pods::Scheduler),
        Arc::new(pods::InstantKubelet),
        Arc::new(workloads::Deployments),
        Arc::new(workloads::ReplicaSets),
        Arc::new(workloads::StatefulSets),
        Arc::new(workloads::Jobs),
        Arc::new(services::Endpoints),
        Arc::new(storage::VolumeBinder),
    ];
    let mut tasks: Vec<_> = controllers
        .into_iter()
        .map(|c| spawn(server.clone(), c, stop.clone()))
        .collect();
    tasks.push(gc::spawn(server, stop));
    tasks
}
