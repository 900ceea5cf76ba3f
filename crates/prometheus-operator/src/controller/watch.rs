//! The watches: one per kind, each feeding a cache and waking the Prometheus objects a change
//! concerns.
//!
//! One set of watches whatever `--namespace` says: Prometheus objects of other namespaces are
//! dropped from the watch before they reach the cache, while monitors, rules, scrape configs,
//! namespaces, Secrets and ConfigMaps are watched everywhere (a Prometheus may select them in
//! any namespace).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use steward_core::ControllerRuntime;
use steward_core::children::Children;

use super::caches::{Caches, cached_kinds};
use crate::OPERATOR_NAME;
use crate::config::Kind;
use crate::crd::{PodMonitor, Prometheus, PrometheusRule, ScrapeConfig, ServiceMonitor};

fn wc() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Keeps watch events of Prometheus objects in `scope` (every namespace when `None`).
fn in_scope(scope: &Option<BTreeSet<String>>, ev: &watcher::Event<Prometheus>) -> bool {
    let Some(scope) = scope else { return true };
    match ev {
        watcher::Event::Apply(p) | watcher::Event::Delete(p) | watcher::Event::InitApply(p) => {
            p.namespace().is_some_and(|ns| scope.contains(&ns))
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// Watch caches keep no managedFields: nothing here reads them and they are most of an
/// object's size.
fn drop_managed_fields<K: Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// Secrets and ConfigMaps are watched as metadata only, and only what tells a change: names,
/// labels, resourceVersions.
fn thin<K>(o: &mut PartialObjectMeta<K>) {
    o.metadata.managed_fields = None;
    o.metadata.annotations = None;
}

/// A cache of every `K` in the cluster (filtered by `config`), kept by its watch stream.
fn cached<K>(
    client: &kube::Client,
    config: watcher::Config,
    trim: fn(&mut K),
) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .touched_objects()
        .boxed();
    (store, stream)
}

/// Marks `flag` once `store` has listed its objects; false when it never will (its writer
/// is gone).
async fn wait_ready<K>(store: Store<K>, flag: Arc<AtomicBool>) -> bool
where
    K: kube::runtime::reflector::Lookup + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // The readiness signal wakes only its latest waiter and others wait on some of these
    // stores too: poll again now and then instead of waiting once.
    loop {
        match tokio::time::timeout(Duration::from_millis(250), store.wait_until_ready()).await {
            Ok(Ok(())) => {
                flag.store(true, Ordering::SeqCst);
                return true;
            }
            Ok(Err(_)) => return false,
            Err(_) => {}
        }
    }
}

/// Starts every watch: returns the caches, the children caches and the controller, wired so
/// each change wakes the Prometheus objects it concerns, and so everything is reconciled once
/// every cache has listed its objects (nothing is reconciled before).
/// With `upstream`, upstream prometheus-operator's objects are watched too, while their CRDs
/// exist.
pub(super) fn start(
    rt: &ControllerRuntime,
    upstream: bool,
) -> (Caches, Arc<Children>, Controller<Prometheus>) {
    let client = rt.client.clone();
    let scope: Option<BTreeSet<String>> =
        (!rt.namespaces.is_empty()).then(|| rt.namespaces.iter().cloned().collect());
    let (prometheuses, prom_w) = reflector::store();
    // Each changed Prometheus also goes here, to wake those that federate it.
    let (changed_tx, changed_rx) = futures::channel::mpsc::unbounded::<Prometheus>();
    let prom_stream = watcher(Api::<Prometheus>::all(client.clone()), wc())
        .default_backoff()
        .filter(move |ev| std::future::ready(ev.as_ref().map_or(true, |ev| in_scope(&scope, ev))))
        .modify(drop_managed_fields)
        .reflect(prom_w)
        .inspect(move |ev| {
            // Deletions too: a federator must drop the jobs of a Prometheus that is gone.
            if let Ok(watcher::Event::Apply(p) | watcher::Event::Delete(p)) = ev {
                let _ = changed_tx.unbounded_send(p.clone());
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(prom_stream, prometheuses.clone());
    let (namespaces, ns_stream) = cached::<Namespace>(&client, wc(), drop_managed_fields);
    let (service_monitors, smon_stream) = cached::<ServiceMonitor>(&client, wc(), drop_managed_fields);
    let (pod_monitors, pmon_stream) = cached::<PodMonitor>(&client, wc(), drop_managed_fields);
    let (rules, rule_stream) = cached::<PrometheusRule>(&client, wc(), drop_managed_fields);
    let (scrape_configs, scfg_stream) = cached::<ScrapeConfig>(&client, wc(), drop_managed_fields);
    let ours = format!("{}={OPERATOR_NAME}", steward_core::labels::MANAGED_BY);
    let (role_bindings, rb_stream) = cached::<RoleBinding>(&client, wc().labels(&ours), drop_managed_fields);
    let (secret_meta, secret_stream) = cached::<PartialObjectMeta<Secret>>(&client, wc(), thin);
    // ConfigMaps feed the configuration too (TLS CAs, for instance).
    let (config_map_meta, cm_stream) = cached::<PartialObjectMeta<ConfigMap>>(&client, wc(), thin);
    let (upstream_caches, upstream_stream) = if upstream {
        let (c, s) = super::upstream::start(&client, wc());
        (c, Some(s))
    } else {
        (super::upstream::UpstreamCaches::empty(), None)
    };
    let (ready_tx, ready_rx) = tokio::sync::watch::channel(false);
    let caches = Caches {
        prometheuses,
        namespaces,
        service_monitors,
        pod_monitors,
        rules,
        scrape_configs,
        role_bindings,
        secret_meta,
        config_map_meta,
        upstream: upstream_caches,
        last: Arc::default(),
        cluster_unbound: Arc::default(),
        ready: ready_rx.clone(),
    };
    // Every cache shows in /readyz, and the first reconcile waits for all of them.
    let track = |name: &str| rt.readiness.register_cache(&format!("prometheus/{name}"));
    let c = &caches;
    let mut waits = vec![
        tokio::spawn(wait_ready(c.prometheuses.clone(), track("prometheuses"))),
        tokio::spawn(wait_ready(c.namespaces.clone(), track("namespaces"))),
        tokio::spawn(wait_ready(c.service_monitors.clone(), track("servicemonitors"))),
        tokio::spawn(wait_ready(c.pod_monitors.clone(), track("podmonitors"))),
        tokio::spawn(wait_ready(c.rules.clone(), track("prometheusrules"))),
        tokio::spawn(wait_ready(c.scrape_configs.clone(), track("scrapeconfigs"))),
        tokio::spawn(wait_ready(c.role_bindings.clone(), track("rolebindings"))),
        tokio::spawn(wait_ready(c.secret_meta.clone(), track("secrets"))),
        tokio::spawn(wait_ready(c.config_map_meta.clone(), track("configmaps"))),
    ];
    if upstream {
        for (u, kind) in super::upstream::kinds() {
            let name = format!("{}.{}", u.plural, crate::crd::UPSTREAM_GROUP);
            waits.push(tokio::spawn(wait_ready(
                c.upstream.of(kind).clone(),
                track(&name),
            )));
        }
    }
    tokio::spawn(async move {
        let mut all = true;
        for w in waits {
            all &= w.await.unwrap_or(false);
        }
        if all {
            let _ = ready_tx.send(true);
        }
        // Keep the sender, so the receivers never see the channel closed.
        ready_tx.closed().await;
    });
    let mut all_ready = ready_rx;
    let reconcile_all = futures::stream::once(async move {
        let _ = all_ready.wait_for(|r| *r).await;
    });

    // Our children wake their Prometheus and fill the caches a steady reconcile reads.
    let (children, child_streams) = Children::watch_cluster_wide(rt, OPERATOR_NAME, &cached_kinds());
    let mut controller = controller;
    for s in child_streams {
        controller = controller.owns_stream_with(s.stream, s.resource);
    }
    let mapped = |kind: Kind| {
        let c = caches.clone();
        move |m: &kube::api::ObjectMeta| {
            c.who_selects(
                kind,
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default(),
                m.labels.as_ref().unwrap_or(&BTreeMap::new()),
            )
        }
    };
    let (f_smon, f_pmon, f_rule, f_scfg) = (
        mapped(Kind::ServiceMonitor),
        mapped(Kind::PodMonitor),
        mapped(Kind::PrometheusRule),
        mapped(Kind::ScrapeConfig),
    );
    let (c_ns, c_rb, c_secret, c_cm) = (caches.clone(), caches.clone(), caches.clone(), caches.clone());
    let mut controller = controller;
    if let Some(stream) = upstream_stream {
        let c_up = caches.clone();
        // Every upstream kind's changes come on one stream; the kind is in the object.
        let wake = move |o: DynamicObject| {
            let kind = o.types.as_ref().and_then(|t| {
                super::upstream::kinds()
                    .into_iter()
                    .find(|(u, _)| u.kind == t.kind)
                    .map(|(_, k)| k)
            });
            match kind {
                Some(kind) => c_up.who_selects(
                    kind,
                    o.metadata.namespace.as_deref().unwrap_or_default(),
                    o.metadata.name.as_deref().unwrap_or_default(),
                    o.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()),
                ),
                // Without its type the object could be anything: re-render everything.
                None => c_up.all(),
            }
        };
        let dyntype = super::upstream::api_resource(&crate::crd::UPSTREAM_KINDS[0]);
        controller = controller.watches_stream_with(stream.map(Ok::<_, watcher::Error>), wake, dyntype);
    }
    let c_fed = caches.clone();
    let federators = changed_rx.flat_map(move |p| futures::stream::iter(c_fed.federating(&p)));
    let controller = controller
        .reconcile_all_on(reconcile_all)
        .reconcile_on(federators)
        .watches_stream(ns_stream, move |_: Namespace| c_ns.all())
        .watches_stream(smon_stream, move |o: ServiceMonitor| f_smon(&o.metadata))
        .watches_stream(pmon_stream, move |o: PodMonitor| f_pmon(&o.metadata))
        .watches_stream(rule_stream, move |o: PrometheusRule| f_rule(&o.metadata))
        .watches_stream(scfg_stream, move |o: ScrapeConfig| f_scfg(&o.metadata))
        .watches_stream(rb_stream, move |b: RoleBinding| c_rb.binding_owner(&b.metadata))
        .watches_stream(secret_stream, move |s: PartialObjectMeta<Secret>| {
            c_secret.reading_input(&s.metadata)
        })
        .watches_stream(cm_stream, move |s: PartialObjectMeta<ConfigMap>| {
            c_cm.reading_input(&s.metadata)
        });
    (caches, children, controller)
}
