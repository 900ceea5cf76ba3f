//! The one write path for owned objects: server-side apply of the full desired set with a
//! stable field manager and `force`, then deletion of previously owned objects of the listed
//! kinds that are no longer desired.
//!
//! Objects are handled as `DynamicObject`s so one code path serves every kind; typed children
//! are converted with [`Desired::from_typed`], which takes the kind's plural and scope from
//! k8s-openapi or the CRD type rather than guessing them.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions,
};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use tracing::info;

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
}

impl ReconcileError for ApplyError {
    fn reason(&self) -> &'static str {
        match self {
            ApplyError::Api { .. } => "api",
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

/// Applies owned objects as one field manager.
#[derive(Clone)]
pub struct Applier {
    client: kube::Client,
    field_manager: String,
}

impl Applier {
    /// An applier writing as `field_manager` (e.g. `steward.dev/etcd-operator`).
    pub fn new(client: kube::Client, field_manager: &str) -> Self {
        Self {
            client,
            field_manager: field_manager.to_string(),
        }
    }

    /// The field manager name.
    pub fn field_manager(&self) -> &str {
        &self.field_manager
    }

    /// Applies every object in `desired` as a child of `owner`, then deletes objects of the
    /// `prune` kinds that carry `selector`'s labels and a controller reference to `owner`'s UID
    /// but are not in `desired`. Every desired object gets the owner reference and `selector`'s
    /// labels, so the next prune finds it.
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
            let api = self.api(
                &d.kind,
                namespace.as_deref(),
                d.object.metadata.namespace.as_deref(),
            );
            if d.kind.namespaced && d.object.metadata.namespace.is_none() {
                d.object.metadata.namespace = namespace.clone();
            }
            api.patch(&name, &params, &Patch::Apply(&d.object))
                .await
                .map_err(|source| ApplyError::Api {
                    verb: "apply",
                    kind: d.kind.resource.kind.clone(),
                    name: name.clone(),
                    source: Box::new(source),
                })?;
            report.applied.push(format!("{}/{name}", d.kind.resource.kind));
            wanted.entry(kind_key(&d.kind)).or_default().insert(name);
        }

        let lp = ListParams::default().labels(&labels::to_selector(selector));
        for kind in prune {
            let api = self.api(kind, namespace.as_deref(), None);
            let existing = api.list(&lp).await.map_err(|source| ApplyError::Api {
                verb: "list",
                kind: kind.resource.kind.clone(),
                name: String::new(),
                source: Box::new(source),
            })?;
            let keep = wanted.get(&kind_key(kind)).cloned().unwrap_or_default();
            for (name, uid) in orphans(&existing.items, &keep, &owner_ref.uid) {
                let dp = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(uid),
                        resource_version: None,
                    }),
                    ..DeleteParams::background()
                };
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
/// `(name, uid)`. Objects owned by someone else are never returned, even when labels match.
pub fn orphans(
    existing: &[DynamicObject],
    keep: &BTreeSet<String>,
    owner_uid: &str,
) -> Vec<(String, String)> {
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
            (!keep.contains(&name)).then_some((name, uid))
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
            vec![("stale".to_string(), "2".to_string())]
        );
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
