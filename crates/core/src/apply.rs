//! The one write path for owned objects: server-side apply of the full desired set with a
//! stable field manager and `force`, then deletion of previously owned objects of the listed
//! kinds that are no longer desired.
//!
//! Objects are handled as `DynamicObject`s so one code path serves every kind; typed children
//! are converted with [`Desired::namespaced`] or [`Desired::cluster`], which take the kind's
//! plural and scope from k8s-openapi or the CRD type rather than guessing them.
//!
//! Two rules keep it safe and cheap:
//! - An object that exists and is not controlled by the owner is never changed or deleted: the
//!   whole apply is refused with [`ApplyError::Conflict`], which controllers report in status.
//! - With [`Children`] caches, an object already as desired (same content as our last apply
//!   and the same resourceVersion since) is not sent again, and orphans are found in the
//!   cache, so a steady reconcile costs no API request.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tracing::info;

use crate::children::Children;
use crate::controller::ReconcileError;
use crate::labels;

/// Failure of the apply path.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A desired object could not be converted.
    #[error("cannot serialize {kind} {name}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: String,
        /// Name of the object.
        name: String,
        /// Cause.
        source: serde_json::Error,
    },
    /// A desired object has no name.
    #[error("a desired {kind} has no name")]
    MissingName {
        /// Kind of the object.
        kind: String,
    },
    /// The owner has no name or UID yet (not read back from the API).
    #[error("owner {0} has no uid; it must be read from the API before owning children")]
    OwnerWithoutUid(String),
    /// The API refused a call.
    #[error("{verb} {kind} {name}: {source}")]
    Api {
        /// `apply`, `list` or `delete`.
        verb: &'static str,
        /// Kind of the object.
        kind: String,
        /// Name of the object (empty for lists).
        name: String,
        /// Cause.
        source: Box<kube::Error>,
    },
    /// The owner is gone from the API, replaced by a new object of the same name, or being
    /// deleted: a reconcile that started from an older view must not create children for it
    /// (they would outlive it until the garbage collector finds them).
    #[error("{kind} {name} is gone or being deleted; nothing is created for it")]
    OwnerGone {
        /// Kind of the owner.
        kind: String,
        /// `namespace/name` of the owner.
        name: String,
    },
    /// Objects we would write exist and belong to someone else; nothing was written.
    #[error("{}", .0.iter().map(|c| c.to_string()).collect::<Vec<_>>().join("; "))]
    Conflict(Vec<Conflict>),
}

/// An existing object, with a name we want to use, that is not controlled by our owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Kind of the object.
    pub kind: String,
    /// `namespace/name` or `name`.
    pub name: String,
    /// Who controls it: `Kind/name`, or a note that nobody does.
    pub holder: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} already exists and {}; it is left alone (delete or rename it, or rename this object)",
            self.kind, self.name, self.holder
        )
    }
}

impl ReconcileError for ApplyError {
    fn reason(&self) -> &'static str {
        match self {
            ApplyError::Api { .. } => "api",
            ApplyError::Conflict(_) => "conflict",
            ApplyError::OwnerGone { .. } => "owner_gone",
            _ => "build",
        }
    }
}

/// A kind of object an owner may own, for listing and pruning.
#[derive(Clone, Debug)]
pub struct OwnedKind {
    /// Group, version, kind and plural.
    pub resource: ApiResource,
    /// Whether objects of this kind live in a namespace.
    pub namespaced: bool,
}

impl OwnedKind {
    /// The kind of the namespaced type `K`.
    pub fn namespaced<K>() -> Self
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Self {
            resource: ApiResource::erase::<K>(&()),
            namespaced: true,
        }
    }

    /// The kind of the cluster-scoped type `K`.
    pub fn cluster<K>() -> Self
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>,
    {
        Self {
            resource: ApiResource::erase::<K>(&()),
            namespaced: false,
        }
    }
}

/// One object we want to exist.
#[derive(Clone, Debug)]
pub struct Desired {
    /// Its kind.
    pub kind: OwnedKind,
    /// The object, with apiVersion and kind set.
    pub object: DynamicObject,
}

impl Desired {
    /// Converts a typed namespaced object (a k8s-openapi type or one of our CRDs).
    pub fn namespaced<K>(obj: &K) -> Result<Self, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Serialize,
    {
        Self::convert(OwnedKind::namespaced::<K>(), obj)
    }

    /// Converts a typed cluster-scoped object.
    pub fn cluster<K>(obj: &K) -> Result<Self, ApplyError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope> + Serialize,
    {
        Self::convert(OwnedKind::cluster::<K>(), obj)
    }

    fn convert<K: Resource<DynamicType = ()> + Serialize>(
        kind: OwnedKind,
        obj: &K,
    ) -> Result<Self, ApplyError> {
        let name = obj.meta().name.clone().unwrap_or_default();
        let err = |source| ApplyError::Serialize {
            kind: kind.resource.kind.clone(),
            name: name.clone(),
            source,
        };
        let mut value = serde_json::to_value(obj).map_err(err)?;
        // Typed objects may omit apiVersion/kind; apply needs both.
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), kind.resource.api_version.clone().into());
            map.insert("kind".into(), kind.resource.kind.clone().into());
        }
        let object: DynamicObject = serde_json::from_value(value).map_err(err)?;
        Ok(Self { kind, object })
    }
}

/// What [`Applier::apply_owned`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// `Kind/name` of every applied object.
    pub applied: Vec<String>,
    /// `Kind/name` of every deleted orphan.
    pub deleted: Vec<String>,
}

/// What the applier remembers of its last write of one object.
#[derive(Clone, Debug)]
struct Record {
    hash: u64,
    resource_version: String,
}

/// Applies owned objects as one field manager.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    field_manager: String,
    children: Option<Arc<Children>>,
    records: Arc<Mutex<HashMap<String, Record>>>,
    writes: Arc<Mutex<HashMap<String, Instant>>>,
}

impl Applier {
    /// An applier writing as `field_manager` (e.g. `steward.dev/etcd-operator`).
    pub fn new(client: kube::Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_string(),
            children: None,
            records: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// Reads current children from `children` instead of the API where it can.
    pub fn with_children(mut self, children: Arc<Children>) -> Self {
        self.children = Some(children);
        self
    }

    /// The children caches, if any.
    pub fn children(&self) -> Option<&Arc<Children>> {
        self.children.as_ref()
    }

    /// The field manager name.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// Notes that the object with UID `owner_uid` just had a child written outside this
    /// applier (a pod created or deleted directly), see [`Applier::quiet_for`].
    pub fn touched(&self, owner_uid: &str) {
        if let Ok(mut w) = self.writes.lock() {
            w.insert(owner_uid.to_string(), Instant::now());
        }
    }

    /// Whether nothing was written for `owner_uid` during the last `period` and the caches are
    /// filled: then the caches have long seen our own writes and may stand in for the API.
    /// Right after a write a watch event may still be on its way, and a decision taken on a
    /// cache that misses our own last change (a pod just created) could repeat it.
    pub fn quiet_for(&self, owner_uid: &str, period: Duration) -> bool {
        let cached = self.children.as_ref().is_some_and(|c| c.is_ready());
        let quiet = self
            .writes
            .lock()
            .map(|w| w.get(owner_uid).is_none_or(|at| at.elapsed() >= period))
            .unwrap_or(false);
        cached && quiet
    }

    /// Applies every object in `desired` as a child of `owner`, then deletes objects of the
    /// `prune` kinds that carry `selector`'s labels and a controller reference to `owner`'s UID
    /// but are not in `desired`. Every desired object gets the owner reference and `selector`'s
    /// labels, so the next prune finds it.
    ///
    /// Nothing is written when a desired object exists without our owner as its controller:
    /// the call fails with [`ApplyError::Conflict`] naming every such object.
    pub async fn apply_owned<O>(
        &self,
        owner: &O,
        selector: &BTreeMap<String, String>,
        desired: Vec<Desired>,
        prune: &[OwnedKind],
    ) -> Result<ApplyReport, ApplyError>
    where
        O: Resource<DynamicType = ()>,
    {
        let owner_ref = owner
            .controller_owner_ref(&())
            .ok_or_else(|| ApplyError::OwnerWithoutUid(owner.meta().name.clone().unwrap_or_default()))?;
        let namespace = owner.meta().namespace.clone();
        let mut report = ApplyReport::default();
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let params = PatchParams::apply(&self.field_manager).force();

        // First look at what exists, so a conflict stops the apply before anything is written.
        let mut plan = Vec::with_capacity(desired.len());
        let mut conflicts = Vec::new();
        for mut d in desired {
            adopt(&mut d.object, &owner_ref, selector);
            let name = d
                .object
                .metadata
                .name
                .clone()
                .ok_or_else(|| ApplyError::MissingName {
                    kind: d.kind.resource.kind.clone(),
                })?;
            if d.kind.namespaced && d.object.metadata.namespace.is_none() {
                d.object.metadata.namespace = namespace.clone();
            }
            let ns = if d.kind.namespaced {
                d.object.metadata.namespace.clone()
            } else {
                None
            };
            let live = self.live(&d.kind, ns.as_deref(), &name).await?;
            if let Some(live) = &live
                && let Some(holder) = foreign_holder(live, &owner_ref.uid)
            {
                conflicts.push(Conflict {
                    kind: d.kind.resource.kind.clone(),
                    name: ns.as_ref().map_or(name.clone(), |ns| format!("{ns}/{name}")),
                    holder,
                });
            }
            plan.push((d, name, ns, live));
        }
        if !conflicts.is_empty() {
            return Err(ApplyError::Conflict(conflicts));
        }
        if plan.iter().any(|(_, _, _, live)| live.is_none()) {
            self.confirm_owner(owner).await?;
        }

        for (d, name, ns, live) in plan {
            let key = object_key(&d.kind, ns.as_deref(), &name);
            let hash = content_hash(&d.object);
            wanted.entry(kind_key(&d.kind)).or_default().insert(name.clone());
            let unchanged = live
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone())
                .is_some_and(|rv| {
                    self.records
                        .lock()
                        .ok()
                        .and_then(|r| r.get(&key).cloned())
                        .is_some_and(|rec| rec.hash == hash && rec.resource_version == rv)
                });
            if unchanged {
                continue;
            }
            let api = self.api(&d.kind, namespace.as_deref(), ns.as_deref());
            let applied = api
                .patch(&name, &params, &Patch::Apply(&d.object))
                .await
                .map_err(|source| ApplyError::Api {
                    verb: "apply",
                    kind: d.kind.resource.kind.clone(),
                    name: name.clone(),
                    source: Box::new(source),
                })?;
            self.touched(&owner_ref.uid);
            if let (Some(resource_version), Ok(mut records)) =
                (applied.metadata.resource_version.clone(), self.records.lock())
            {
                records.insert(
                    key,
                    Record {
                        hash,
                        resource_version,
                    },
                );
            }
            report.applied.push(format!("{}/{name}", d.kind.resource.kind));
        }

        let lp = ListParams::default().labels(&labels::to_selector(selector));
        for kind in prune {
            let existing = match self
                .children
                .as_ref()
                .filter(|c| c.is_ready())
                .and_then(|c| c.list(kind, namespace.as_deref(), selector))
            {
                Some(cached) => cached.iter().map(|o| o.as_ref().clone()).collect(),
                None => {
                    let api = self.api(kind, namespace.as_deref(), None);
                    api.list(&lp)
                        .await
                        .map_err(|source| ApplyError::Api {
                            verb: "list",
                            kind: kind.resource.kind.clone(),
                            name: String::new(),
                            source: Box::new(source),
                        })?
                        .items
                }
            };
            let keep = wanted.get(&kind_key(kind)).cloned().unwrap_or_default();
            for (name, uid, ns) in orphans(&existing, &keep, &owner_ref.uid) {
                let api = self.api(kind, namespace.as_deref(), ns.as_deref());
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::background()
                };
                self.touched(&owner_ref.uid);
                match api.delete(&name, &dp).await {
                    Ok(_) => {}
                    // Already gone or replaced by a new object of the same name: nothing to do.
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(source) => {
                        return Err(ApplyError::Api {
                            verb: "delete",
                            kind: kind.resource.kind.clone(),
                            name,
                            source: Box::new(source),
                        });
                    }
                }
                info!(kind = %kind.resource.kind, %name, owner = %owner_ref.name, "deleted orphaned child");
                report.deleted.push(format!("{}/{name}", kind.resource.kind));
            }
        }
        Ok(report)
    }

    /// Fails with [`ApplyError::OwnerGone`] unless `owner` still exists in the API (read
    /// past every cache) with the same UID and is not being deleted. Called before anything
    /// is created for it: a reconcile may run on a cached owner whose deletion the watch has
    /// not delivered yet, while the garbage collector is already removing its children.
    pub async fn confirm_owner<O>(&self, owner: &O) -> Result<(), ApplyError>
    where
        O: Resource<DynamicType = ()>,
    {
        let name = owner.meta().name.clone().unwrap_or_default();
        let ns = owner.meta().namespace.clone();
        let resource = kube::api::ApiResource::erase::<O>(&());
        let api: Api<DynamicObject> = match &ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        };
        let live = api.get_opt(&name).await.map_err(|source| ApplyError::Api {
            verb: "get",
            kind: resource.kind.clone(),
            name: name.clone(),
            source: Box::new(source),
        })?;
        let alive = live
            .is_some_and(|l| l.metadata.uid == owner.meta().uid && l.metadata.deletion_timestamp.is_none());
        if alive {
            Ok(())
        } else {
            Err(ApplyError::OwnerGone {
                kind: resource.kind,
                name: ns.map_or(name.clone(), |ns| format!("{ns}/{name}")),
            })
        }
    }

    /// Server-side applies `desired` as it is, with no owner reference or labels added and
    /// nothing pruned: for objects no single owner can control (in another namespace,
    /// cluster-scoped, or shared by several owners). Callers check ownership themselves.
    pub async fn apply_unowned(&self, desired: &Desired) -> Result<(), ApplyError> {
        let name = desired
            .object
            .metadata
            .name
            .clone()
            .ok_or_else(|| ApplyError::MissingName {
                kind: desired.kind.resource.kind.clone(),
            })?;
        let ns = desired.object.metadata.namespace.as_deref();
        self.api(&desired.kind, ns, ns)
            .patch(
                &name,
                &PatchParams::apply(&self.field_manager).force(),
                &Patch::Apply(&desired.object),
            )
            .await
            .map_err(|source| ApplyError::Api {
                verb: "apply",
                kind: desired.kind.resource.kind.clone(),
                name,
                source: Box::new(source),
            })?;
        Ok(())
    }

    /// Deletes one object written with [`Applier::apply_unowned`]; one already gone is fine.
    pub async fn delete_unowned(
        &self,
        kind: &OwnedKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(), ApplyError> {
        match self
            .api(kind, ns, ns)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(source) => Err(ApplyError::Api {
                verb: "delete",
                kind: kind.resource.kind.clone(),
                name: name.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// [`apply_status`] of a namespaced `obj` as this applier's field manager.
    pub async fn apply_status<K, S>(&self, obj: &K, status: &S) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        S: Serialize,
    {
        let ns = obj.meta().namespace.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
        apply_status(&api, obj, &self.field_manager, status).await
    }

    /// The object as it is now: from the cache when it holds it, otherwise from the API
    /// (an object missing from the cache may still exist without our label).
    async fn live(
        &self,
        kind: &OwnedKind,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<DynamicObject>, ApplyError> {
        if let Some(c) = self.children.as_ref().filter(|c| c.is_ready())
            && let Some(o) = c.get(kind, ns, name)
        {
            return Ok(Some(o.as_ref().clone()));
        }
        self.api(kind, ns, ns)
            .get_opt(name)
            .await
            .map_err(|source| ApplyError::Api {
                verb: "get",
                kind: kind.resource.kind.clone(),
                name: name.to_string(),
                source: Box::new(source),
            })
    }

    fn api(&self, kind: &OwnedKind, owner_ns: Option<&str>, obj_ns: Option<&str>) -> Api<DynamicObject> {
        if kind.namespaced {
            match obj_ns.or(owner_ns) {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
                None => Api::default_namespaced_with(self.client.clone(), &kind.resource),
            }
        } else {
            Api::all_with(self.client.clone(), &kind.resource)
        }
    }
}

/// Owner references (not controller) to every object of `objects` in namespace `ns` that is
/// not being deleted, sorted by UID: for a child several owners share (a governing Service
/// of all the StatefulSets of one kind in a namespace), so it goes with the last of them.
pub fn shared_owners<'a, K>(objects: impl IntoIterator<Item = &'a K>, ns: &str) -> Vec<OwnerReference>
where
    K: Resource<DynamicType = ()> + 'a,
{
    let mut owners: Vec<OwnerReference> = objects
        .into_iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns) && o.meta().deletion_timestamp.is_none())
        .filter_map(|o| {
            let mut r = o.controller_owner_ref(&())?;
            r.controller = None;
            r.block_owner_deletion = None;
            Some(r)
        })
        .collect();
    owners.sort_by(|a, b| a.uid.cmp(&b.uid));
    owners
}

/// Who controls `live` when it is not the owner with UID `owner_uid`; `None` when it is ours.
pub fn foreign_holder<K: Resource>(live: &K, owner_uid: &str) -> Option<String> {
    let controller = live
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true));
    match controller {
        Some(r) if r.uid == owner_uid => None,
        Some(r) => Some(format!("is controlled by {}/{} (uid {})", r.kind, r.name, r.uid)),
        None => Some("has no controller (it was not created by this operator)".to_string()),
    }
}

fn object_key(kind: &OwnedKind, ns: Option<&str>, name: &str) -> String {
    format!("{}/{}/{}", kind_key(kind), ns.unwrap_or_default(), name)
}

/// A hash of the object as we send it; maps serialize in key order, so equal objects hash equal.
fn content_hash(obj: &DynamicObject) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(obj).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// Writes `status` to the status subresource of `obj` by server-side apply as `field_manager`.
/// Only the fields in `status` are owned, so other writers' status fields are kept.
pub async fn apply_status<K, S>(
    api: &Api<K>,
    obj: &K,
    field_manager: &str,
    status: &S,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(field_manager).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn kind_key(kind: &OwnedKind) -> String {
    format!("{}/{}", kind.resource.api_version, kind.resource.kind)
}

/// Gives `obj` a controller reference to the owner (replacing any other controller
/// reference) and the owner's selector labels.
pub fn adopt(obj: &mut DynamicObject, owner: &OwnerReference, selector: &BTreeMap<String, String>) {
    let refs = obj.metadata.owner_references.get_or_insert_with(Vec::new);
    refs.retain(|r| r.uid != owner.uid && r.controller != Some(true));
    refs.push(owner.clone());
    let labels = obj.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in selector {
        labels.insert(k.clone(), v.clone());
    }
}

/// Objects in `existing` controlled by `owner_uid` whose names are not in `keep`, as
/// `(name, uid, namespace)`. Objects owned by someone else are never returned, even when
/// labels match.
pub fn orphans(
    existing: &[DynamicObject],
    keep: &BTreeSet<String>,
    owner_uid: &str,
) -> Vec<(String, String, Option<String>)> {
    existing
        .iter()
        .filter(|o| {
            o.owner_references()
                .iter()
                .any(|r| r.uid == owner_uid && r.controller == Some(true))
        })
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter_map(|o| {
            let name = o.metadata.name.clone()?;
            let uid = o.metadata.uid.clone()?;
            (!keep.contains(&name)).then_some((name, uid, o.metadata.namespace.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn owner_ref(uid: &str) -> OwnerReference {
        OwnerReference {
            api_version: "example.dev/v1".into(),
            kind: "Widget".into(),
            name: "w".into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn child(name: &str, uid: &str, owner: Option<&str>, controller: bool) -> DynamicObject {
        let ar = ApiResource::erase::<ConfigMap>(&());
        let mut o = DynamicObject::new(name, &ar);
        o.metadata.uid = Some(uid.into());
        if let Some(owner) = owner {
            let mut r = owner_ref(owner);
            r.controller = Some(controller);
            o.metadata.owner_references = Some(vec![r]);
        }
        o
    }

    #[test]
    fn orphans_only_of_this_owner_and_not_desired() {
        let existing = vec![
            child("keep", "1", Some("owner"), true),
            child("stale", "2", Some("owner"), true),
            child("foreign", "3", Some("other"), true),
            child("unowned", "4", None, false),
            child("not-controller", "5", Some("owner"), false),
        ];
        let keep = BTreeSet::from(["keep".to_string()]);
        assert_eq!(
            orphans(&existing, &keep, "owner"),
            vec![("stale".to_string(), "2".to_string(), None)]
        );
    }

    #[test]
    fn only_objects_controlled_by_the_owner_are_ours() {
        assert_eq!(
            foreign_holder(&child("x", "1", Some("owner"), true), "owner"),
            None
        );
        let other = foreign_holder(&child("x", "1", Some("other"), true), "owner").unwrap_or_default();
        assert!(other.contains("controlled by Widget/w (uid other)"), "{other}");
        // Owned but not controlled, or not owned at all: someone else made it.
        for o in [
            child("x", "1", Some("owner"), false),
            child("x", "1", None, false),
        ] {
            let h = foreign_holder(&o, "owner").unwrap_or_default();
            assert!(h.contains("has no controller"), "{h}");
        }
    }

    #[test]
    fn equal_objects_hash_equal_and_changes_show() {
        let ar = ApiResource::erase::<ConfigMap>(&());
        let mut a = DynamicObject::new("c", &ar).data(serde_json::json!({"data": {"b": "2", "a": "1"}}));
        let b = DynamicObject::new("c", &ar).data(serde_json::json!({"data": {"a": "1", "b": "2"}}));
        assert_eq!(content_hash(&a), content_hash(&b));
        a.data["data"]["a"] = "changed".into();
        assert_ne!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn adopt_sets_single_controller_ref_and_labels() {
        let ar = ApiResource::erase::<ConfigMap>(&());
        let mut o = DynamicObject::new("c", &ar);
        o.metadata.owner_references = Some(vec![owner_ref("someone-else")]);
        o.metadata.labels = Some(BTreeMap::from([("keep".to_string(), "me".to_string())]));
        let selector = BTreeMap::from([("app.kubernetes.io/instance".to_string(), "w".to_string())]);
        adopt(&mut o, &owner_ref("owner"), &selector);
        adopt(&mut o, &owner_ref("owner"), &selector);
        let refs = o.metadata.owner_references.unwrap();
        assert_eq!(refs.len(), 1);
        assert_eq!(refs[0].uid, "owner");
        let labels = o.metadata.labels.unwrap();
        assert_eq!(labels["keep"], "me");
        assert_eq!(labels["app.kubernetes.io/instance"], "w");
    }

    #[test]
    fn typed_objects_convert_with_type_meta() {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some("cfg".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
            ..Default::default()
        };
        let d = Desired::namespaced(&cm).unwrap();
        let types = d.object.types.clone().unwrap();
        assert_eq!(types.api_version, "v1");
        assert_eq!(types.kind, "ConfigMap");
        assert_eq!(d.kind.resource.plural, "configmaps");
        assert!(d.kind.namespaced);
        assert_eq!(d.object.data["data"]["a"], "b");
    }
}
