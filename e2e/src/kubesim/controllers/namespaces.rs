//! Namespace setup (default ServiceAccount, kube-root-ca.crt) and namespace deletion.

use serde_json::{Value, json};

use super::{Key, Reconciler, is, key_of, opts, rt};
use crate::kubesim::objects::{DeleteOpts, Part};
use crate::kubesim::server::ApiServer;
use crate::kubesim::store::{EventType, WatchEvent};

/// Gives each namespace its `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
pub struct NamespaceSetup;

impl Reconciler for NamespaceSetup {
    fn name(&self) -> &'static str {
        "namespace-setup"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "namespaces")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "", "namespaces") && ev.type_ == EventType::Added {
            return vec![key_of(&ev.object)];
        }
        // Recreate them when deleted.
        if ev.type_ == EventType::Deleted && (is(ev, "", "serviceaccounts") || is(ev, "", "configmaps")) {
            return vec![(String::new(), ev.namespace.clone())];
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (_, ns): &Key) {
        let (Some(nss), Some(sas), Some(cms)) = (
            rt(server, "", "namespaces"),
            rt(server, "", "serviceaccounts"),
            rt(server, "", "configmaps"),
        ) else {
            return;
        };
        let Ok(namespace) = server.get(&nss, "", ns) else {
            return;
        };
        if namespace.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        if server.get(&sas, ns, "default").is_err() {
            let _ = server.create(&sas, ns, json!({"metadata": {"name": "default"}}), &opts());
        }
        if server.get(&cms, ns, "kube-root-ca.crt").is_err() {
            let _ = server.create(
                &cms,
                ns,
                json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}}, "data": {"ca.crt": server.ca_pem}}),
                &opts(),
            );
        }
    }
}

/// Empties a deleted namespace, then finalizes it.
pub struct NamespaceDeletion;

impl Reconciler for NamespaceDeletion {
    fn name(&self) -> &'static str {
        "namespace-deletion"
    }
    fn primary(&self) -> (&'static str, &'static str) {
        ("", "namespaces")
    }
    fn keys_for(&self, _s: &ApiServer, ev: &WatchEvent) -> Vec<Key> {
        if is(ev, "", "namespaces") && ev.object.pointer("/metadata/deletionTimestamp").is_some() {
            return vec![key_of(&ev.object)];
        }
        if ev.type_ == EventType::Deleted && !ev.namespace.is_empty() {
            return vec![(String::new(), ev.namespace.clone())];
        }
        Vec::new()
    }
    fn reconcile(&self, server: &ApiServer, (_, ns): &Key) {
        let Some(nss) = rt(server, "", "namespaces") else {
            return;
        };
        let Ok(namespace) = server.get(&nss, "", ns) else {
            return;
        };
        if namespace.pointer("/metadata/deletionTimestamp").is_none() {
            return;
        }
        let mut remaining = 0;
        for key in server.store.keys() {
            let Some(t) = rt(server, &key.group, &key.plural) else {
                continue;
            };
            if !t.namespaced {
                continue;
            }
            let (items, _) = server.store.list(&key, Some(ns));
            for item in items {
                remaining += 1;
                if item.pointer("/metadata/deletionTimestamp").is_none() {
                    let name = item
                        .pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let _ = server.delete(
                        &t,
                        ns,
                        name,
                        &DeleteOpts {
                            grace_period: Some(0),
                            ..Default::default()
                        },
                    );
                }
            }
        }
        if remaining == 0 {
            let mut next = (*namespace).clone();
            next["spec"]["finalizers"] = json!([]);
            let _ = server.update(&nss, "", ns, next, Part::Finalize, &opts());
        }
    }
}
