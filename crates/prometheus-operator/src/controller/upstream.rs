//! Upstream prometheus-operator's objects (`monitoring.coreos.com`): watched only while their
//! CRDs exist, cached as `DynamicObject`s, read into our types at fetch time.
//!
//! One metadata watch of CustomResourceDefinitions tells which of the four upstream CRDs
//! exist; each kind's watch runs while its CRD does, and its cache is emptied (waking the
//! Prometheus objects that used its objects) when the CRD goes. With no CRD the cache is
//! empty and counts as synced, so a cluster without upstream's CRDs is reconciled as before.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::upstream::{HasSpec, from_dynamic};
use crate::config::{Group, Kind, ObjectRef, Reason, Rejection};
use crate::crd::{UPSTREAM_GROUP, UPSTREAM_KINDS, UpstreamKind};

/// The upstream kinds with the config kind each is read as.
pub(super) fn kinds() -> [(UpstreamKind, Kind); 4] {
    let k = UPSTREAM_KINDS;
    [
        (k[0], Kind::ServiceMonitor),
        (k[1], Kind::PodMonitor),
        (k[2], Kind::PrometheusRule),
        (k[3], Kind::ScrapeConfig),
    ]
}

pub(super) fn api_resource(u: &UpstreamKind) -> ApiResource {
    ApiResource {
        group: UPSTREAM_GROUP.into(),
        version: u.version.into(),
        api_version: format!("{UPSTREAM_GROUP}/{}", u.version),
        kind: u.kind.into(),
        plural: u.plural.into(),
    }
}

/// The upstream caches, one per kind (empty ones when the feature is off).
#[derive(Clone)]
pub(super) struct UpstreamCaches {
    pub service_monitors: Store<DynamicObject>,
    pub pod_monitors: Store<DynamicObject>,
    pub rules: Store<DynamicObject>,
    pub scrape_configs: Store<DynamicObject>,
}

impl UpstreamCaches {
    /// The cache of `kind`.
    pub fn of(&self, kind: Kind) -> &Store<DynamicObject> {
        match kind {
            Kind::ServiceMonitor => &self.service_monitors,
            Kind::PodMonitor => &self.pod_monitors,
            Kind::PrometheusRule => &self.rules,
            Kind::ScrapeConfig => &self.scrape_configs,
        }
    }

    /// Empty caches that are never filled.
    pub fn empty() -> UpstreamCaches {
        let store = |u: &UpstreamKind| reflector::store::Writer::new(api_resource(u)).as_reader();
        let k = UPSTREAM_KINDS;
        UpstreamCaches {
            service_monitors: store(&k[0]),
            pod_monitors: store(&k[1]),
            rules: store(&k[2]),
            scrape_configs: store(&k[3]),
        }
    }
}

/// The selected upstream objects of one kind read into `K`: those that fit, with the spec
/// fields we do not support, and a rejection for each that does not fit our type at all.
pub(super) fn read<K: DeserializeOwned + HasSpec>(
    objects: Vec<DynamicObject>,
    kind: Kind,
    unsupported: &mut Vec<(ObjectRef, Vec<String>)>,
    unreadable: &mut Vec<Rejection>,
) -> Vec<K> {
    let mut out = Vec::with_capacity(objects.len());
    for o in objects {
        let object = ObjectRef {
            group: Group::Upstream,
            kind,
            namespace: o.metadata.namespace.clone().unwrap_or_default(),
            name: o.metadata.name.clone().unwrap_or_default(),
        };
        match from_dynamic::<K>(&o) {
            Ok(read) => {
                if !read.unsupported.is_empty() {
                    unsupported.push((object, read.unsupported));
                }
                out.push(read.object);
            }
            Err(e) => unreadable.push(Rejection {
                object,
                reason: Reason::InvalidField,
                message: format!("the spec does not fit {}: {e}", kind.as_str()),
            }),
        }
    }
    out
}

/// Which upstream CRDs exist: `None` until the CRD watch has listed them.
type Present = watch::Receiver<Option<BTreeSet<String>>>;

/// Starts the CRD watch and one watch per upstream kind. Returns the caches, a stream of
/// every touched object (to wake the Prometheus objects that select it) and the caches to
/// wait for before the first reconcile.
pub(super) fn start(
    client: &kube::Client,
    config: watcher::Config,
) -> (UpstreamCaches, BoxStream<'static, DynamicObject>) {
    let names: BTreeSet<String> = UPSTREAM_KINDS.iter().map(UpstreamKind::crd_name).collect();
    let (present_tx, present_rx) = watch::channel(None);
    tokio::spawn(watch_crds(client.clone(), names, present_tx));
    let (touched_tx, touched_rx) = mpsc::unbounded_channel();
    let mut stores = Vec::new();
    for (u, _) in kinds() {
        let writer = reflector::store::Writer::new(api_resource(&u));
        stores.push(writer.as_reader());
        tokio::spawn(run_kind(
            client.clone(),
            config.clone(),
            u,
            writer,
            present_rx.clone(),
            touched_tx.clone(),
        ));
    }
    let mut s = stores.into_iter();
    let mut next = || {
        s.next()
            .unwrap_or_else(|| UpstreamCaches::empty().service_monitors)
    };
    let caches = UpstreamCaches {
        service_monitors: next(),
        pod_monitors: next(),
        rules: next(),
        scrape_configs: next(),
    };
    let touched = futures::stream::unfold(
        touched_rx,
        |mut rx| async move { rx.recv().await.map(|o| (o, rx)) },
    )
    .boxed();
    (caches, touched)
}

/// Keeps `tx` at the set of `names` whose CRD exists (metadata only).
async fn watch_crds(
    client: kube::Client,
    names: BTreeSet<String>,
    tx: watch::Sender<Option<BTreeSet<String>>>,
) {
    let api: Api<PartialObjectMeta<CustomResourceDefinition>> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let mut listing = BTreeSet::new();
    let mut present = BTreeSet::new();
    // Published only once a full listing is in: a partial view would empty caches for nothing.
    let mut in_listing = true;
    let name_of = |m: &ObjectMeta| m.name.clone().filter(|n| names.contains(n));
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => {
                in_listing = true;
                listing.clear();
            }
            Ok(watcher::Event::InitApply(o)) => listing.extend(name_of(&o.metadata)),
            Ok(watcher::Event::InitDone) => {
                in_listing = false;
                present = std::mem::take(&mut listing);
            }
            Ok(watcher::Event::Apply(o)) => match name_of(&o.metadata) {
                // A CRD being deleted serves no new objects.
                Some(n) if o.metadata.deletion_timestamp.is_some() => {
                    present.remove(&n);
                }
                Some(n) => {
                    present.insert(n);
                }
                None => continue,
            },
            Ok(watcher::Event::Delete(o)) => match name_of(&o.metadata) {
                Some(n) => {
                    present.remove(&n);
                }
                None => continue,
            },
            Err(e) => {
                warn!(error = %e, "watching CustomResourceDefinitions failed");
                // Never listed (no RBAC for CRDs, say): go on without upstream objects rather
                // than hold every reconcile back; a later listing brings them in.
                if tx.borrow().is_none() {
                    tx.send_replace(Some(BTreeSet::new()));
                }
                continue;
            }
        }
        if !in_listing {
            tx.send_if_modified(|cur| {
                let next = Some(present.clone());
                let changed = *cur != next;
                *cur = next;
                changed
            });
        }
    }
}

/// Watches one upstream kind while its CRD exists, keeping `writer`'s cache; empties the
/// cache when the CRD is gone.
async fn run_kind(
    client: kube::Client,
    config: watcher::Config,
    u: UpstreamKind,
    mut writer: reflector::store::Writer<DynamicObject>,
    mut present: Present,
    touched: mpsc::UnboundedSender<DynamicObject>,
) {
    let name = u.crd_name();
    let exists = |p: &Option<BTreeSet<String>>| p.as_ref().map(|s| s.contains(&name));
    loop {
        // Wait for the CRD list; without the CRD the (empty) cache counts as synced.
        let Ok(state) = present.wait_for(|p| p.is_some()).await.map(|p| exists(&p)) else {
            return;
        };
        if state != Some(true) {
            clear(&mut writer, &touched);
            if present.wait_for(|p| exists(p) == Some(true)).await.is_err() {
                return;
            }
        }
        info!(crd = %name, "watching upstream {}", u.kind);
        let api = Api::<DynamicObject>::all_with(client.clone(), &api_resource(&u));
        let mut events = watcher(api, config.clone()).default_backoff().boxed();
        loop {
            tokio::select! {
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        writer.apply_watcher_event(&ev);
                        for o in touched_by(ev) {
                            let _ = touched.send(o);
                        }
                    }
                    Some(Err(e)) => warn!(crd = %name, error = %e, "watching upstream objects failed"),
                    None => break,
                },
                changed = present.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if exists(&present.borrow()) != Some(true) {
                        info!(crd = %name, "CRD gone; dropping upstream {} objects", u.kind);
                        break;
                    }
                }
            }
        }
        clear(&mut writer, &touched);
        // Give a recreated CRD a moment before watching again.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn touched_by(ev: watcher::Event<DynamicObject>) -> Vec<DynamicObject> {
    match ev {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => vec![o],
        watcher::Event::Init | watcher::Event::InitDone => Vec::new(),
    }
}

/// Empties the cache (it then counts as synced) and wakes whoever used what it held.
fn clear(
    writer: &mut reflector::store::Writer<DynamicObject>,
    touched: &mpsc::UnboundedSender<DynamicObject>,
) {
    for o in writer.as_reader().state() {
        let _ = touched.send(o.as_ref().clone());
    }
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
}

/// Stand-ins naming upstream objects in Events (the recorder takes static types).
macro_rules! event_target {
    ($($name:ident = $kind:literal $version:literal $plural:literal;)*) => {$(
        #[derive(Clone, Debug)]
        pub(super) struct $name {
            pub metadata: ObjectMeta,
        }
        impl Resource for $name {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;
            fn kind(_: &()) -> Cow<'_, str> {
                $kind.into()
            }
            fn group(_: &()) -> Cow<'_, str> {
                UPSTREAM_GROUP.into()
            }
            fn version(_: &()) -> Cow<'_, str> {
                $version.into()
            }
            fn plural(_: &()) -> Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    )*};
}
event_target! {
    UpstreamServiceMonitor = "ServiceMonitor" "v1" "servicemonitors";
    UpstreamPodMonitor = "PodMonitor" "v1" "podmonitors";
    UpstreamPrometheusRule = "PrometheusRule" "v1" "prometheusrules";
    UpstreamScrapeConfig = "ScrapeConfig" "v1alpha1" "scrapeconfigs";
}

/// Upstream objects' warnings, keyed by object: the reason and note of each.
pub(super) type Warnings = BTreeMap<ObjectRef, Vec<(String, String)>>;

/// Publishes `warnings` as Warning Events on the upstream objects, found in `caches` (never
/// their status: another operator may own them).
pub(super) async fn warn_objects(
    recorder: &steward_core::EventRecorder,
    caches: &UpstreamCaches,
    warnings: Warnings,
) {
    for (o, notes) in warnings {
        let Some(found) = caches.of(o.kind).get(
            &reflector::ObjectRef::new_with(&o.name, api_resource(&kinds_of(o.kind))).within(&o.namespace),
        ) else {
            continue;
        };
        let metadata = found.metadata.clone();
        for (reason, note) in notes {
            match o.kind {
                Kind::ServiceMonitor => {
                    recorder
                        .warning(
                            &UpstreamServiceMonitor {
                                metadata: metadata.clone(),
                            },
                            &reason,
                            "Validate",
                            note,
                        )
                        .await
                }
                Kind::PodMonitor => {
                    recorder
                        .warning(
                            &UpstreamPodMonitor {
                                metadata: metadata.clone(),
                            },
                            &reason,
                            "Validate",
                            note,
                        )
                        .await
                }
                Kind::PrometheusRule => {
                    recorder
                        .warning(
                            &UpstreamPrometheusRule {
                                metadata: metadata.clone(),
                            },
                            &reason,
                            "Validate",
                            note,
                        )
                        .await
                }
                Kind::ScrapeConfig => {
                    recorder
                        .warning(
                            &UpstreamScrapeConfig {
                                metadata: metadata.clone(),
                            },
                            &reason,
                            "Validate",
                            note,
                        )
                        .await
                }
            }
        }
    }
}

fn kinds_of(kind: Kind) -> UpstreamKind {
    kinds()
        .into_iter()
        .find(|(_, k)| *k == kind)
        .map_or(UPSTREAM_KINDS[0], |(u, _)| u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ServiceMonitor;

    #[test]
    fn read_keeps_what_fits_and_reports_the_rest() {
        let obj = |name: &str, spec: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": spec,
            }))
            .unwrap()
        };
        let objects = vec![
            obj(
                "ok",
                serde_json::json!({"selector": {}, "endpoints": [{"port": "web"}]}),
            ),
            obj(
                "extra",
                serde_json::json!({"selector": {}, "endpoints": [{"port": "web"}], "attachMetadata": {"node": true}}),
            ),
            obj("bad", serde_json::json!({"selector": 1, "endpoints": []})),
        ];
        let (mut unsupported, mut unreadable) = (Vec::new(), Vec::new());
        let read: Vec<ServiceMonitor> =
            read(objects, Kind::ServiceMonitor, &mut unsupported, &mut unreadable);
        assert_eq!(read.len(), 2);
        assert_eq!(unsupported.len(), 1);
        assert_eq!(unsupported[0].0.name, "extra");
        assert_eq!(unsupported[0].0.group, Group::Upstream);
        assert_eq!(unsupported[0].1, ["spec.attachMetadata"]);
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].object.name, "bad");
        assert_eq!(unreadable[0].reason, Reason::InvalidField);
    }

    #[test]
    fn kinds_match_the_crds() {
        for (u, kind) in kinds() {
            assert_eq!(u.kind, kind.as_str());
            assert_eq!(
                api_resource(&u).api_version,
                format!("monitoring.coreos.com/{}", u.version)
            );
        }
    }
}
