//! Watch caches of an operator's children: every object of the listed kinds that carries the
//! operator's `app.kubernetes.io/managed-by` label, kept current by one watch per kind (and
//! per watched namespace).
//!
//! They let a steady reconcile run without asking the API server anything: the apply path
//! skips objects that are already as desired and finds orphans in the cache instead of
//! listing, and controllers read their pods and claims from here. The same watch streams wake
//! the owners, so a child that changes or vanishes is noticed at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Resource, ResourceExt};

use crate::apply::OwnedKind;
use crate::controller::ControllerRuntime;

/// A stream of one kind's child objects (applied or deleted), to be polled by a controller,
/// usually through `Controller::owns_stream_with(stream, resource)`.
pub struct ChildStream {
    /// Namespace the stream watches (`None`: every namespace).
    pub namespace: Option<String>,
    /// The kind, as kube-runtime's dynamic type.
    pub resource: ApiResource,
    /// The objects as they change. Polling this is what keeps the cache current.
    pub stream: BoxStream<'static, Result<DynamicObject, watcher::Error>>,
}

impl std::fmt::Debug for ChildStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildStream")
            .field("namespace", &self.namespace)
            .field("kind", &self.resource.kind)
            .finish()
    }
}

struct KindCache {
    kind: OwnedKind,
    stores: Vec<Store<DynamicObject>>,
}

/// The caches; cheap to share behind an `Arc`.
pub struct Children {
    kinds: Vec<KindCache>,
    ready: tokio::sync::watch::Receiver<usize>,
    streams: usize,
}

impl std::fmt::Debug for Children {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Children")
            .field(
                "kinds",
                &self
                    .kinds
                    .iter()
                    .map(|k| &k.kind.resource.kind)
                    .collect::<Vec<_>>(),
            )
            .field("streams", &self.streams)
            .finish()
    }
}

/// What a cache keeps of each object of a kind: objects are trimmed before they are stored,
/// so a controller that reads only some fields does not hold the rest in memory. Metadata
/// (labels, owners, resourceVersion) always stays: the apply path needs it.
pub type Trim = fn(&mut DynamicObject);

/// Keeps the whole object (for objects whose content is read, such as Secrets with keys).
pub fn keep_all(_: &mut DynamicObject) {}

/// Keeps only the metadata.
pub fn metadata_only(o: &mut DynamicObject) {
    o.data = serde_json::Value::Object(serde_json::Map::new());
}

impl Children {
    /// Caches of `kinds` for the objects labelled `managed-by=<managed_by>`, in the runtime's
    /// namespaces: one watch per kind and namespace (so namespaced RBAC is enough). Nothing is
    /// watched until the returned streams are polled.
    pub fn watch(
        rt: &ControllerRuntime,
        managed_by: &str,
        kinds: &[(OwnedKind, Trim)],
    ) -> (Arc<Self>, Vec<ChildStream>) {
        let namespaces: Vec<Option<String>> = if rt.namespaces.is_empty() {
            vec![None]
        } else {
            rt.namespaces.iter().cloned().map(Some).collect()
        };
        Self::start(rt, managed_by, kinds, namespaces, None)
    }

    /// Like [`Children::watch`], but one cluster-wide watch per kind whatever `--namespace`
    /// says, keeping only the runtime's namespaces (for operators that watch everything once).
    pub fn watch_cluster_wide(
        rt: &ControllerRuntime,
        managed_by: &str,
        kinds: &[(OwnedKind, Trim)],
    ) -> (Arc<Self>, Vec<ChildStream>) {
        let keep = (!rt.namespaces.is_empty()).then(|| {
            Arc::new(
                rt.namespaces
                    .iter()
                    .cloned()
                    .collect::<std::collections::BTreeSet<_>>(),
            )
        });
        Self::start(rt, managed_by, kinds, vec![None], keep)
    }

    fn start(
        rt: &ControllerRuntime,
        managed_by: &str,
        kinds: &[(OwnedKind, Trim)],
        namespaces: Vec<Option<String>>,
        keep: Option<Arc<std::collections::BTreeSet<String>>>,
    ) -> (Arc<Self>, Vec<ChildStream>) {
        let config = watcher::Config::default()
            .labels(&format!("{}={managed_by}", crate::labels::MANAGED_BY))
            .any_semantic();
        let (ready_tx, ready) = tokio::sync::watch::channel(0usize);
        let ready_tx = Arc::new(ready_tx);
        let mut caches = Vec::new();
        let mut streams = Vec::new();
        for (kind, trim) in kinds {
            let trim = *trim;
            let mut stores = Vec::new();
            for ns in &namespaces {
                let api: Api<DynamicObject> = match (kind.namespaced, ns) {
                    (true, Some(ns)) => Api::namespaced_with(rt.client.clone(), ns, &kind.resource),
                    _ => Api::all_with(rt.client.clone(), &kind.resource),
                };
                let writer: Writer<DynamicObject> = Writer::new(kind.resource.clone());
                stores.push(writer.as_reader());
                let ready_tx = ready_tx.clone();
                let mut counted = false;
                let keep = keep.clone();
                let in_scope = move |ev: &Result<Event<DynamicObject>, watcher::Error>| {
                    let Some(keep) = &keep else { return true };
                    match ev {
                        Ok(Event::Apply(o) | Event::Delete(o) | Event::InitApply(o)) => {
                            o.namespace().is_some_and(|ns| keep.contains(&ns))
                        }
                        _ => true,
                    }
                };
                let stream = reflector::reflector(
                    writer,
                    watcher::watcher(api, config.clone())
                        .default_backoff()
                        .filter(move |ev| std::future::ready(in_scope(ev)))
                        // Field-manager bookkeeping is never read and is most of an object's size.
                        .modify(move |o: &mut DynamicObject| {
                            o.managed_fields_mut().clear();
                            trim(o);
                        }),
                )
                .inspect_ok(move |event| {
                    if !counted && matches!(event, Event::InitDone) {
                        counted = true;
                        ready_tx.send_modify(|n| *n += 1);
                    }
                })
                .applied_objects()
                .boxed();
                streams.push(ChildStream {
                    namespace: if kind.namespaced { ns.clone() } else { None },
                    resource: kind.resource.clone(),
                    stream,
                });
                if !kind.namespaced {
                    // One cluster-wide watch is enough for a cluster-scoped kind.
                    break;
                }
            }
            caches.push(KindCache {
                kind: kind.clone(),
                stores,
            });
        }
        let count = streams.len();
        (
            Arc::new(Self {
                kinds: caches,
                ready,
                streams: count,
            }),
            streams,
        )
    }

    /// Resolves once every cache has been filled by its first complete list. Reading a cache
    /// before that would show children as missing (and an orphan prune or a member lookup
    /// must never act on that).
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.clone();
        let total = self.streams;
        let _ = rx.wait_for(|n| *n >= total).await;
    }

    /// Whether every cache has been filled.
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() >= self.streams
    }

    /// Whether `kind` is cached here.
    pub fn caches(&self, kind: &OwnedKind) -> bool {
        self.find(kind).is_some()
    }

    fn find(&self, kind: &OwnedKind) -> Option<&KindCache> {
        self.kinds.iter().find(|k| {
            k.kind.resource.api_version == kind.resource.api_version
                && k.kind.resource.kind == kind.resource.kind
        })
    }

    /// The cached object, if the kind is cached and the object carries the operator's label.
    pub fn get(&self, kind: &OwnedKind, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let cache = self.find(kind)?;
        let mut key = ObjectRef::new_with(name, kind.resource.clone());
        if kind.namespaced {
            key = key.within(namespace.unwrap_or_default());
        }
        cache.stores.iter().find_map(|s| s.get(&key))
    }

    /// Cached objects of `kind` in `namespace` (every namespace for `None` or a cluster-scoped
    /// kind) carrying every label of `selector`; `None` when the kind is not cached.
    pub fn list(
        &self,
        kind: &OwnedKind,
        namespace: Option<&str>,
        selector: &BTreeMap<String, String>,
    ) -> Option<Vec<Arc<DynamicObject>>> {
        let cache = self.find(kind)?;
        Some(
            cache
                .stores
                .iter()
                .flat_map(|s| {
                    s.state_filter(|o| {
                        (!kind.namespaced || namespace.is_none() || o.namespace().as_deref() == namespace)
                            && selector.iter().all(|(k, v)| o.labels().get(k) == Some(v))
                    })
                })
                .collect(),
        )
    }

    /// The cached kind of the typed object `K`, if it is cached.
    fn kind_of<K: Resource<DynamicType = ()>>(&self) -> Option<OwnedKind> {
        let resource = ApiResource::erase::<K>(&());
        self.kinds
            .iter()
            .find(|k| {
                k.kind.resource.api_version == resource.api_version && k.kind.resource.kind == resource.kind
            })
            .map(|k| k.kind.clone())
    }

    /// Typed view of [`Children::list`]: objects that do not decode as `K` are skipped.
    pub fn list_as<K>(&self, namespace: Option<&str>, selector: &BTreeMap<String, String>) -> Option<Vec<K>>
    where
        K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let kind = self.kind_of::<K>()?;
        let objects = self.list(&kind, namespace, selector)?;
        Some(
            objects
                .iter()
                .filter_map(|o| o.as_ref().clone().try_parse::<K>().ok())
                .collect(),
        )
    }

    /// Typed view of [`Children::get`]: `None` when the kind is not cached, `Some(None)` when
    /// the object is not in the cache.
    pub fn get_as<K>(&self, namespace: Option<&str>, name: &str) -> Option<Option<K>>
    where
        K: Resource<DynamicType = ()> + serde::de::DeserializeOwned,
    {
        let kind = self.kind_of::<K>()?;
        Some(
            self.get(&kind, namespace, name)
                .and_then(|o| o.as_ref().clone().try_parse::<K>().ok()),
        )
    }
}
